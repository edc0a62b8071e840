//! Forged MQTT commands against the real command listener (`event_relay::spawn_commands`) on
//! the machine's Mosquitto (127.0.0.1:1883): someone who can publish on the command topic but
//! does not hold the bridge's secret tries unsigned, wrongly signed, tampered, stale, early and
//! replayed commands. Each must be answered `unauthenticated` on `<topic>/reply` without reaching
//! the plugin; a correctly signed command is the control that does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lockgate::event_relay;
use lockgate_host::command_auth::{envelope, sign, unix_now};
use lockgate_host::mqtt::{CommandSubscriber, InboundMessage};
use lockgate_host::{
    CommandSecret, HostConfig, MemoryKv, MqttConfig, NoGateway, PluginHost, RumqttPublisher,
};
use lockgate_tests::attack::Tally;
use serde_json::{Value, json};

const SECRET: &str = "attack-suite-bridge-secret-0123456789";
const WINDOW: u64 = 60;

fn mqtt(client_id: &str) -> MqttConfig {
    MqttConfig {
        client_id: client_id.into(),
        ..MqttConfig::default()
    }
}

fn unique_root() -> String {
    let mut b = [0u8; 6];
    getrandom::getrandom(&mut b).unwrap();
    format!("lockgate-attack-cmd-{}", hex::encode(b))
}

async fn bridge(root: &str) -> PluginHost {
    let dir = std::env::temp_dir().join(format!("{root}-plugins"));
    std::fs::create_dir_all(&dir).unwrap();
    for ext in ["wasm", "toml"] {
        let f = format!("event-bridge.{ext}");
        std::fs::copy(
            PathBuf::from(lockgate_host::TEST_PLUGINS_DIR).join(&f),
            dir.join(&f),
        )
        .unwrap();
    }
    let mut cfg: HostConfig = toml::from_str(&format!(
        r#"
[plugins.event-bridge]
config = {{ prefix = "{root}/", discovery_prefix = false }}
[plugins.event-bridge.grants]
log = true
config = true
kv = true
gateway = ["report-key-lost", "request-directory-sync", "read-keys"]
mqtt = {{ prefixes = ["{root}/events/", "{root}/state/"], commands = ["{root}/cmd/"] }}
"#
    ))
    .unwrap();
    cfg.limits.deadline_ms = 15_000;
    let host = PluginHost::new(cfg, Arc::new(MemoryKv::default()), Arc::new(NoGateway)).unwrap();
    host.load_dir(&dir).unwrap();
    let publisher = RumqttPublisher::start(&mqtt(&format!("{root}-pub"))).unwrap();
    assert!(publisher.wait_connected(Duration::from_secs(10)).await);
    host.with_mqtt(Arc::new(publisher))
}

/// Publishes `payload` on `topic` and returns the answer on `<topic>/reply`.
async fn send(
    client: &CommandSubscriber,
    replies: &mut tokio::sync::mpsc::Receiver<InboundMessage>,
    topic: &str,
    payload: Vec<u8>,
) -> Value {
    client.reply(topic, payload).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(15), replies.recv())
        .await
        .expect("an answer on the reply topic")
        .unwrap();
    client.ack(&m).await;
    assert_eq!(m.topic, format!("{topic}/reply"));
    serde_json::from_slice(&m.payload).unwrap()
}

fn refused(answer: &Value, reason: &str) -> bool {
    answer["ok"] == false
        && answer["error"]["kind"] == "unauthenticated"
        && answer["error"]["reason"] == reason
        && !answer.to_string().contains(SECRET)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_mqtt_commands_are_refused() {
    let root = unique_root();
    let host = bridge(&root).await;
    let mut gw = mqtt(&format!("{root}-gw"));
    gw.command_window_secs = WINDOW;
    gw.command_secrets.insert(
        "event-bridge".into(),
        CommandSecret {
            secret: Some(SECRET.into()),
            secret_env: None,
        },
    );
    let listener = event_relay::spawn_commands(host.clone(), &gw, vec!["event-bridge".into()])
        .unwrap()
        .expect("a command prefix is granted");
    let topic = format!("{root}/cmd/ops");
    let (client, mut replies) = CommandSubscriber::start(
        &mqtt(&format!("{root}-attacker")),
        "",
        vec![format!("{topic}/reply")],
    )
    .unwrap();
    assert!(client.wait_subscribed(Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let s = SECRET.as_bytes();
    let lost = r#"{"id":"atk-1","op":"report-key-lost","args":{"key_id":7}}"#;
    let sync =
        r#"{"id":"atk-2","op":"request-directory-sync","args":{"plugin":"ldap","full":true}}"#;
    let now = unix_now();
    let w = WINDOW as i64;
    let mut tally = Tally::new("mqtt commands");

    // Control: a correctly signed command reaches the plugin (which answers itself).
    let control = envelope(
        s,
        &topic,
        now,
        "control-nonce-000001",
        r#"{"id":"ok-1","op":"discovery"}"#,
    );
    let answer = send(&client, &mut replies, &topic, control.clone().into_bytes()).await;
    assert_eq!(answer["ok"], true, "the signed control runs: {answer}");

    let mut cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("unsigned command", "unsigned", lost.as_bytes().to_vec()),
        (
            "wrong secret",
            "bad-signature",
            envelope(
                b"guessed-secret-guessed-secret-000",
                &topic,
                now,
                "attack-nonce-000002",
                lost,
            )
            .into_bytes(),
        ),
        (
            "tampered body (report-key-lost swapped for a full sync)",
            "bad-signature",
            envelope(s, &topic, now, "attack-nonce-000003", lost)
                .replace(&lost.replace('"', "\\\""), &sync.replace('"', "\\\""))
                .into_bytes(),
        ),
        (
            "tampered topic (signed for another command topic)",
            "bad-signature",
            envelope(
                s,
                &format!("{root}/cmd/other"),
                now,
                "attack-nonce-000004",
                lost,
            )
            .into_bytes(),
        ),
        (
            "tampered timestamp (signature of an older ts)",
            "bad-signature",
            json!({"v": 1, "ts": now, "nonce": "attack-nonce-000005", "body": lost,
                   "sig": sign(s, &topic, now - 3 * w, "attack-nonce-000005", lost.as_bytes())})
            .to_string()
            .into_bytes(),
        ),
        (
            "tampered nonce",
            "bad-signature",
            json!({"v": 1, "ts": now, "nonce": "attack-nonce-000006", "body": lost,
                   "sig": sign(s, &topic, now, "attack-nonce-000007", lost.as_bytes())})
            .to_string()
            .into_bytes(),
        ),
        (
            "expired timestamp",
            "expired",
            envelope(s, &topic, now - w - 30, "attack-nonce-000008", lost).into_bytes(),
        ),
        (
            "future timestamp",
            "from-the-future",
            envelope(s, &topic, now + w + 30, "attack-nonce-000009", lost).into_bytes(),
        ),
        (
            "replay of an accepted command",
            "replayed",
            control.into_bytes(),
        ),
        (
            "truncated signature",
            "unsigned",
            json!({"v": 1, "ts": now, "nonce": "attack-nonce-000010", "body": lost,
                   "sig": &sign(s, &topic, now, "attack-nonce-000010", lost.as_bytes())[..32]})
            .to_string()
            .into_bytes(),
        ),
        (
            "empty signature",
            "unsigned",
            json!({"v": 1, "ts": now, "nonce": "attack-nonce-000011", "body": lost, "sig": ""})
                .to_string()
                .into_bytes(),
        ),
        (
            "short nonce",
            "unsigned",
            envelope(s, &topic, now, "n1", lost).into_bytes(),
        ),
        (
            "unknown version",
            "unknown-version",
            envelope(s, &topic, now, "attack-nonce-000012", lost)
                .replace("\"v\":1", "\"v\":2")
                .into_bytes(),
        ),
        (
            "extra field beside the envelope",
            "unsigned",
            json!({"v": 1, "ts": now, "nonce": "attack-nonce-000013", "body": lost,
                   "sig": sign(s, &topic, now, "attack-nonce-000013", lost.as_bytes()),
                   "op": "report-key-lost"})
            .to_string()
            .into_bytes(),
        ),
        (
            "command object instead of a signed string body",
            "unsigned",
            json!({"v": 1, "ts": now, "nonce": "attack-nonce-000014",
                   "body": {"id": "atk-3", "op": "report-key-lost", "args": {"key_id": 7}},
                   "sig": sign(s, &topic, now, "attack-nonce-000014", lost.as_bytes())})
            .to_string()
            .into_bytes(),
        ),
        (
            "oversized envelope",
            "unsigned",
            envelope(
                s,
                &topic,
                now,
                "attack-nonce-000015",
                &"x".repeat(200 << 10),
            )
            .into_bytes(),
        ),
        ("not JSON", "unsigned", b"\xff\xfe garbage".to_vec()),
    ];
    // A replay with the nonce of the control but a different (unsigned) body.
    cases.push((
        "nonce of an accepted command with another body",
        "bad-signature",
        json!({"v": 1, "ts": now, "nonce": "control-nonce-000001", "body": lost,
               "sig": sign(s, &topic, now, "control-nonce-000001", br#"{"id":"ok-1","op":"discovery"}"#)})
        .to_string()
        .into_bytes(),
    ));
    for (name, reason, payload) in cases {
        let answer = send(&client, &mut replies, &topic, payload).await;
        let ok = refused(&answer, reason);
        tally.case(
            if ok {
                name.to_owned()
            } else {
                format!("{name}: {answer}")
            },
            ok,
        );
    }
    tally.finish();
    listener.abort();
}
