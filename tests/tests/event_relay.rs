//! The event relay (`lockgate::event_relay`) on both databases, against the
//! machine's Mosquitto (127.0.0.1:1883): rows of the `events` outbox reach
//! MQTT through the bundled `event-bridge` plugin; the relay task is dropped
//! mid-stream (a gateway kill) and a new one started, and no event is
//! missing (duplicates allowed: at least once); the durable cursor ends at
//! the last event. The command listener routes a command on a granted topic
//! to the bridge and publishes the answer on `<topic>/reply`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lockgate::event_relay::{self, RelayConfig};
use lockgate::gateway::CoreGateway;
use lockgate::plugins::DbKv;
use lockgate_host::mqtt::{CommandSubscriber, InboundMessage};
use lockgate_host::{HostConfig, MqttConfig, PluginHost, RumqttPublisher};
use lockgate_store::Store;
use lockgate_tests::*;
use serde_json::Value;

fn rand_bytes() -> [u8; 6] {
    let mut b = [0u8; 6];
    getrandom::getrandom(&mut b).unwrap();
    b
}

fn unique_root(db: &str) -> String {
    format!("lockgate-relay-{db}-{}", hex::encode(rand_bytes()))
}

fn mqtt(client_id: &str) -> MqttConfig {
    MqttConfig {
        client_id: client_id.into(),
        ..MqttConfig::default()
    }
}

fn plugin_dir() -> PathBuf {
    let bundled = PathBuf::from(lockgate_host::TEST_PLUGINS_DIR);
    let dir = std::env::temp_dir().join(format!(
        "lockgate-relay-{}-{}",
        std::process::id(),
        hex::encode(rand_bytes())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for ext in ["wasm", "toml"] {
        let f = format!("event-bridge.{ext}");
        std::fs::copy(bundled.join(&f), dir.join(&f)).unwrap();
    }
    dir
}

async fn bridge(store: &Store, root: &str, kv: Arc<dyn lockgate_host::KvStore>) -> PluginHost {
    let mut cfg: HostConfig = toml::from_str(&format!(
        r#"
[plugins.event-bridge]
config = {{ prefix = "{root}/", discovery_prefix = false }}
[plugins.event-bridge.grants]
log = true
config = true
kv = true
gateway = ["read-keys"]
mqtt = {{ prefixes = ["{root}/events/", "{root}/state/"], commands = ["{root}/cmd/"] }}
"#
    ))
    .unwrap();
    cfg.limits.deadline_ms = 15_000;
    let host = PluginHost::new(cfg, kv, Arc::new(CoreGateway::new(store.clone()))).unwrap();
    host.load_dir(&plugin_dir()).unwrap();
    let publisher = RumqttPublisher::start(&mqtt(&format!("{root}-pub"))).unwrap();
    assert!(publisher.wait_connected(Duration::from_secs(10)).await);
    host.with_mqtt(Arc::new(publisher))
}

async fn insert_events(app: &TestApp, n: usize) {
    for i in 0..n {
        sqlx::query(
            "INSERT INTO events (system_id, at, actor_id, actor, action, object_kind, object_id, object_label, changes, correlation_id) \
             VALUES ($1, $2, NULL, 'test', 'handed_out', 'key', $3, 'K', '{}', 'c')",
        )
        .bind(app.system_id)
        .bind("2026-01-01T00:00:00.000000Z")
        .bind(i as i64 + 1)
        .execute(app.store.pool())
        .await
        .unwrap();
    }
}

async fn all_ids(app: &TestApp) -> BTreeSet<i64> {
    sqlx::query_scalar::<_, i64>("SELECT id FROM events")
        .fetch_all(app.store.pool())
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Collects the `id` of every event message until `want` are all seen (or 30 s pass).
async fn collect(
    rx: &mut tokio::sync::mpsc::Receiver<InboundMessage>,
    sub: &CommandSubscriber,
    seen: &mut BTreeSet<i64>,
    want: &BTreeSet<i64>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !want.is_subset(seen) {
        let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            break;
        };
        sub.ack(&m).await;
        if let Some(id) = serde_json::from_slice::<Value>(&m.payload)
            .ok()
            .and_then(|v| v["id"].as_i64())
        {
            seen.insert(id);
        }
    }
}

on_both!(relay_survives_a_gateway_kill, |app: TestApp| async move {
    let app = app;
    let root = unique_root(&format!("{:?}", app.db));
    let (sub, mut rx) = CommandSubscriber::start(
        &mqtt(&format!("{root}-sub")),
        "",
        vec![format!("{root}/events/#")],
    )
    .unwrap();
    assert!(sub.wait_subscribed(Duration::from_secs(10)).await);
    let host = bridge(&app.store, &root, Arc::new(DbKv::new(app.store.clone()))).await;
    insert_events(&app, 150).await;
    let cfg = RelayConfig {
        poll_interval: Duration::from_millis(20),
        gap_grace: Duration::from_millis(500),
        batch: 40,
        concurrency: 8,
        start_at_end: false,
        ..RelayConfig::default()
    };
    let first = event_relay::spawn(app.store.clone(), host.clone(), cfg.clone());
    // Kill the relay mid-stream.
    let mut seen = BTreeSet::new();
    let some: BTreeSet<i64> = all_ids(&app).await.into_iter().take(50).collect();
    collect(&mut rx, &sub, &mut seen, &some).await;
    first.abort();
    let _ = first.await;
    let cursor = event_relay::cursor(&app.store, "event-bridge")
        .await
        .unwrap();
    let max = *all_ids(&app).await.last().unwrap();
    assert!(cursor.unwrap_or(0) < max, "killed before the end");

    // More events arrive while it is down; a new relay picks up from the cursor.
    insert_events(&app, 100).await;
    let second = event_relay::spawn(app.store.clone(), host.clone(), cfg);
    let want = all_ids(&app).await;
    collect(&mut rx, &sub, &mut seen, &want).await;
    let missing: Vec<_> = want.difference(&seen).collect();
    assert!(missing.is_empty(), "events never delivered: {missing:?}");
    let max = *want.last().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while event_relay::cursor(&app.store, "event-bridge")
        .await
        .unwrap()
        != Some(max)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cursor reaches the last event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.abort();
});

on_both!(
    commands_are_answered_on_the_reply_topic,
    |app: TestApp| async move {
        // The whole app, not only the fields used: the database lives as long as it.
        let app = app;
        let root = unique_root(&format!("{:?}", app.db));
        let host = bridge(&app.store, &root, Arc::new(DbKv::new(app.store.clone()))).await;
        assert_eq!(
            event_relay::command_filters(&host, &["event-bridge".into()]),
            [format!("{root}/cmd/#")]
        );
        // Without a command secret for the bridge, no listener starts.
        let err = event_relay::spawn_commands(
            host.clone(),
            &mqtt(&format!("{root}-gw")),
            vec!["event-bridge".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("command_secrets.event-bridge"), "{err}");
        const SECRET: &str = "relay-test-secret-0123456789abcdef";
        let mut gw = mqtt(&format!("{root}-gw"));
        gw.command_secrets.insert(
            "event-bridge".into(),
            lockgate_host::CommandSecret {
                secret: Some(SECRET.into()),
                secret_env: None,
            },
        );
        let listener = event_relay::spawn_commands(host.clone(), &gw, vec!["event-bridge".into()])
            .unwrap()
            .expect("a command prefix is granted");
        let (client, mut replies) = CommandSubscriber::start(
            &mqtt(&format!("{root}-bms")),
            "",
            vec![format!("{root}/cmd/ops/reply")],
        )
        .unwrap();
        assert!(client.wait_subscribed(Duration::from_secs(10)).await);
        // Let the listener subscribe before commands go out.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut answers = Vec::new();
        let topic = format!("{root}/cmd/ops");
        let now = lockgate_host::command_auth::unix_now();
        let signed = |nonce: &str, body: &str| {
            lockgate_host::command_auth::envelope(SECRET.as_bytes(), &topic, now, nonce, body)
        };
        for cmd in [
            signed("relay-nonce-0001", r#"{"id":"r-1","op":"discovery"}"#),
            signed("relay-nonce-0002", r#"{"id":"r-1","op":"discovery"}"#),
            signed(
                "relay-nonce-0003",
                r#"{"id":"r-2","op":"report-key-lost","args":{"key_id":1}}"#,
            ),
            signed("relay-nonce-0004", "garbage"),
            r#"{"id":"r-3","op":"report-key-lost","args":{"key_id":1}}"#.to_owned(),
        ] {
            client.reply(&topic, cmd.into_bytes()).await.unwrap();
            let m = tokio::time::timeout(Duration::from_secs(15), replies.recv())
                .await
                .expect("an answer on the reply topic")
                .unwrap();
            client.ack(&m).await;
            answers.push(serde_json::from_slice::<Value>(&m.payload).unwrap());
        }
        assert_eq!(answers[0]["ok"], true, "{}", answers[0]);
        assert_eq!(answers[0]["result"]["published"], 0, "discovery is off");
        assert_eq!(answers[1]["duplicate"], true, "{}", answers[1]);
        assert_eq!(answers[2]["ok"], false);
        assert_eq!(answers[2]["error"]["kind"], "denied", "{}", answers[2]);
        assert_eq!(answers[3]["error"]["kind"], "invalid", "{}", answers[3]);
        assert_eq!(
            answers[4]["error"]["kind"], "unauthenticated",
            "{}",
            answers[4]
        );
        assert_eq!(answers[4]["error"]["reason"], "unsigned", "{}", answers[4]);
        listener.abort();
    }
);
