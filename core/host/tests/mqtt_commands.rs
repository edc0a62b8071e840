//! The `event-bridge` plugin beyond plain events: command handling
//! (validation, per-operation authorisation by the gateway grant,
//! de-duplication by command id), retained state topics and Home Assistant
//! discovery against the machine's Mosquitto, and delivery across a broker
//! restart against a private Mosquitto started by the test: a QoS 1 publish
//! answers `ok` only once the broker acknowledged it, so a caller that
//! retries until `ok` loses nothing.

use std::collections::BTreeSet;
use std::process::{Child, Command as Process};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockgate_host::types::{
    Command, Cylinder, Event, Job, Key, Person, PluginError, SyncReport, SyncRequest, UpsertReport,
};
use lockgate_host::{
    Gateway, HostConfig, KvStore, MemoryKv, MqttConfig, PluginHost, RumqttPublisher,
};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// Helpers like `tests/common` (kept here so this suite builds on its own).
mod common {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    use lockgate_host::HostConfig;
    use lockgate_host::types::Event;

    /// A fresh directory with the named bundled plugins copied in.
    pub fn plugin_dir(names: &[&str]) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lockgate-mqtt-cmd-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in names {
            for ext in ["wasm", "toml"] {
                let file = format!("{name}.{ext}");
                std::fs::copy(
                    PathBuf::from(env!("LOCKGATE_TEST_PLUGINS_DIR")).join(&file),
                    dir.join(&file),
                )
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            }
        }
        dir
    }

    /// A test configuration with the given grants.
    pub fn config(grants: &str) -> HostConfig {
        let mut cfg: HostConfig = toml::from_str(grants).unwrap();
        cfg.cache_dir = Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"));
        cfg.cache_key_file =
            Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache.key"));
        cfg.limits.memory_bytes = 16 << 20;
        cfg.backoff.base_ms = 60_000;
        cfg.max_concurrent_instances = 8;
        cfg
    }

    /// An event with a kind, about key 7.
    pub fn event(kind: &str) -> Event {
        Event {
            kind: kind.into(),
            object_kind: "key".into(),
            object_id: Some(7),
            at: 1_700_000_000_000,
            payload: "{}".into(),
        }
    }
}

use common::{event, plugin_dir};

fn unique_root() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("lockgate-cmd-test-{}-{nanos}", std::process::id())
}

/// A gateway that records the command operations.
#[derive(Debug, Default)]
struct CommandGateway {
    calls: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Gateway for CommandGateway {
    async fn upsert_employees(
        &self,
        _: &str,
        _: &str,
        _: Vec<Person>,
    ) -> Result<UpsertReport, PluginError> {
        Err(PluginError::Other("not used".into()))
    }
    async fn read_keys(&self, _: &str, _: Option<String>) -> Result<Vec<Key>, PluginError> {
        Ok(vec![Key {
            id: 7,
            name: "K7".into(),
            marking: "M7".into(),
            status: "handed-out".into(),
            holder: Some("E-1".into()),
        }])
    }
    async fn read_cylinders(&self, _: &str, _: &str) -> Result<Vec<Cylinder>, PluginError> {
        Ok(vec![])
    }
    async fn pending_jobs(&self, _: &str, _: u64) -> Result<Vec<Job>, PluginError> {
        Ok(vec![])
    }
    async fn emit_event(&self, _: &str, _: Event) -> Result<(), PluginError> {
        Ok(())
    }
    async fn sync_persons(
        &self,
        _: &str,
        _: SyncRequest,
        _: Vec<Person>,
    ) -> Result<SyncReport, PluginError> {
        Err(PluginError::Other("not used".into()))
    }
    async fn request_directory_sync(
        &self,
        _: &str,
        target: &str,
        full: bool,
    ) -> Result<u64, PluginError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("sync:{target}:{full}"));
        Ok(42)
    }
    async fn request_key_update(&self, _: &str, key_id: u64) -> Result<Vec<Job>, PluginError> {
        self.calls.lock().unwrap().push(format!("update:{key_id}"));
        Ok(vec![Job {
            id: 9,
            kind: "remote-update".into(),
            target_kind: "key".into(),
            target_id: key_id,
            state: "open".into(),
        }])
    }
    async fn report_key_lost(&self, _: &str, key_id: u64) -> Result<(), PluginError> {
        self.calls.lock().unwrap().push(format!("lost:{key_id}"));
        Ok(())
    }
    async fn licensed(&self, _: &str, feature: &str) -> Result<(), PluginError> {
        Err(PluginError::Denied(format!("`{feature}` is not licensed")))
    }
}

fn bridge_host(
    root: &str,
    gateway_ops: &str,
    extra_prefix: &str,
) -> (PluginHost, Arc<CommandGateway>) {
    bridge_host_with(root, gateway_ops, extra_prefix, Arc::default(), |_| {})
}

/// [`bridge_host`] over `kv`, with `edit` applied to the configuration.
fn bridge_host_with(
    root: &str,
    gateway_ops: &str,
    extra_prefix: &str,
    kv: Arc<MemoryKv>,
    edit: impl FnOnce(&mut HostConfig),
) -> (PluginHost, Arc<CommandGateway>) {
    let mut cfg: HostConfig = common::config(&format!(
        r#"
[plugins.event-bridge.grants]
log = true
config = true
kv = true
gateway = [{gateway_ops}]
mqtt = {{ prefixes = ["{root}/events/", "{root}/state/", "{root}/ha/"{extra_prefix}], commands = ["{root}/cmd/"] }}
[plugins.event-bridge.config]
prefix = "{root}/"
status_topic = "{root}/status"
discovery_prefix = "{root}/ha/"
node_id = "site_a"
"#
    ));
    cfg.limits.deadline_ms = 15_000;
    edit(&mut cfg);
    let gw = Arc::new(CommandGateway::default());
    let host = PluginHost::new(cfg, kv, gw.clone()).unwrap();
    host.load_dir(&plugin_dir(&["event-bridge"])).unwrap();
    (host, gw)
}

async fn command(host: &PluginHost, payload: &[u8]) -> Value {
    let answer = host
        .handle_command(
            "event-bridge",
            Command {
                topic: "x/cmd/ops".into(),
                payload: payload.to_vec(),
            },
        )
        .await
        .expect("the plugin runs")
        .expect("an answer");
    serde_json::from_str(&answer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_validated_authorised_and_deduplicated() {
    let root = unique_root();
    let (host, gw) = bridge_host(
        &root,
        r#""report-key-lost", "request-key-update", "read-keys""#,
        "",
    );

    // Validation: size, JSON, id, op.
    let big = vec![b' '; 64 * 1024 + 1];
    for (payload, why) in [
        (big.as_slice(), "at most"),
        (b"not json".as_slice(), "JSON"),
        (br#"{"op":"read-keys"}"#.as_slice(), "`id`"),
        (br#"{"id":"a b","op":"read-keys"}"#.as_slice(), "`id`"),
        (
            format!(r#"{{"id":"{}","op":"read-keys"}}"#, "x".repeat(129)).as_bytes(),
            "`id`",
        ),
        (br#"{"id":"c-0"}"#.as_slice(), "`op`"),
    ] {
        let a = command(&host, payload).await;
        assert_eq!(a["ok"], false, "{a}");
        assert_eq!(a["error"]["kind"], "invalid", "{a}");
        assert!(
            a["error"]["message"].as_str().unwrap().contains(why),
            "{a} should mention {why}"
        );
    }

    // A granted operation runs once; the same id answers again without running.
    let lost = br#"{"id":"c-1","op":"report-key-lost","args":{"key_id":7}}"#;
    let a = command(&host, lost).await;
    assert_eq!(a, json!({"id": "c-1", "ok": true, "result": {}}));
    let again = command(&host, lost).await;
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["ok"], true);
    assert_eq!(gw.calls.lock().unwrap().clone(), ["lost:7"]);

    let a = command(
        &host,
        br#"{"id":"c-2","op":"request-key-update","args":{"key_id":7}}"#,
    )
    .await;
    assert_eq!(a["result"]["jobs"][0]["id"], 9, "{a}");
    let a = command(&host, br#"{"id":"c-3","op":"read-keys"}"#).await;
    assert_eq!(a["result"]["keys"][0]["holder"], "E-1", "{a}");

    // Not granted: an error answer, the gateway is never called, the plugin stays enabled.
    let a = command(
        &host,
        br#"{"id":"c-4","op":"request-directory-sync","args":{"plugin":"ldap"}}"#,
    )
    .await;
    assert_eq!(a["ok"], false, "{a}");
    assert_eq!(a["error"]["kind"], "denied", "{a}");
    assert!(
        !gw.calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.starts_with("sync"))
    );
    let a = command(&host, br#"{"id":"c-5","op":"format-disk"}"#).await;
    assert_eq!(a["error"]["kind"], "invalid", "{a}");
    let a = command(&host, br#"{"id":"c-6","op":"report-key-lost","args":{}}"#).await;
    assert_eq!(a["error"]["kind"], "invalid", "{a}");
    assert_eq!(
        host.status_of("event-bridge").unwrap().state,
        lockgate_host::PluginState::Enabled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_command_answers_are_pruned() {
    let root = unique_root();
    let kv = Arc::new(MemoryKv::default());
    let (host, gw) = bridge_host_with(&root, r#""report-key-lost""#, "", kv.clone(), |_| {});
    let lost =
        |i: u32| format!(r#"{{"id":"p-{i}","op":"report-key-lost","args":{{"key_id":{i}}}}}"#);
    for i in 0..520 {
        let a = command(&host, lost(i).as_bytes()).await;
        assert_eq!(a["ok"], true, "{a}");
    }
    // The last 500 answers are kept (with their order keys), the older ones pruned.
    let answers = kv.list_keys("event-bridge", "cmd/", 1_000).await.unwrap();
    assert_eq!(answers.len(), 500);
    assert!(!answers.contains(&"cmd/p-19".to_owned()) && answers.contains(&"cmd/p-20".to_owned()));
    let order = kv
        .list_keys("event-bridge", "cmd-seq/", 1_000)
        .await
        .unwrap();
    assert_eq!(order.len(), 500);
    // A recent id is still a duplicate; a pruned one runs again.
    assert_eq!(
        command(&host, lost(519).as_bytes()).await["duplicate"],
        true
    );
    let again = command(&host, lost(0).as_bytes()).await;
    assert_eq!(again["ok"], true);
    assert!(again.get("duplicate").is_none(), "{again}");
    assert_eq!(gw.calls.lock().unwrap().len(), 521);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kv_quota_reaches_the_plugin_as_a_clear_error() {
    let root = unique_root();
    let kv = Arc::new(MemoryKv::default());
    let (host, _) = bridge_host_with(&root, r#""report-key-lost""#, "", kv.clone(), |cfg| {
        // One answer takes three keys (answer, order, next number).
        cfg.limits.kv_max_entries = 4;
    });
    let a = command(
        &host,
        br#"{"id":"q-1","op":"report-key-lost","args":{"key_id":1}}"#,
    )
    .await;
    assert_eq!(a["ok"], true, "{a}");
    let refused = host
        .handle_command(
            "event-bridge",
            Command {
                topic: "x/cmd/ops".into(),
                payload: br#"{"id":"q-2","op":"report-key-lost","args":{"key_id":2}}"#.to_vec(),
            },
        )
        .await
        .expect("the plugin runs");
    match refused {
        Err(PluginError::Denied(m)) => assert!(
            m.contains("kv quota of plugin `event-bridge` exceeded: at most 4 keys")
                && m.contains("plugins.limits.kv_max_entries"),
            "{m}"
        ),
        other => panic!("expected the quota, got {other:?}"),
    }
    assert_eq!(kv.usage("event-bridge", "").await.unwrap().entries, 4);
}

/// A QoS 1 subscriber with a persistent session (`client_id`), collecting (topic, payload, retain).
async fn subscriber(
    port: u16,
    client_id: &str,
    filter: &str,
) -> Arc<Mutex<Vec<(String, Vec<u8>, bool)>>> {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_clean_session(false);
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let filter = filter.to_owned();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe(filter.as_str(), QoS::AtLeastOnce);
                }
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    sink.lock()
                        .unwrap()
                        .push((p.topic.clone(), p.payload.to_vec(), p.retain));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(WAIT, ready_rx)
        .await
        .expect("the broker acknowledges the subscription")
        .unwrap();
    got
}

async fn wait_for<F: Fn(&[(String, Vec<u8>, bool)]) -> bool>(
    got: &Mutex<Vec<(String, Vec<u8>, bool)>>,
    what: &str,
    done: F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if done(&got.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn publisher(port: u16, root: &str) -> Arc<RumqttPublisher> {
    let cfg = MqttConfig {
        host: "127.0.0.1".into(),
        port,
        client_id: format!("{root}-pub"),
        status_topic: Some(format!("{root}/status")),
        keep_alive_secs: 5,
        ack_timeout_ms: 3_000,
        ..MqttConfig::default()
    };
    let p = Arc::new(RumqttPublisher::start(&cfg).unwrap());
    assert!(p.wait_connected(WAIT).await, "the publisher connects");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_state_and_home_assistant_discovery() {
    let root = unique_root();
    let got = subscriber(1883, &format!("{root}-sub"), &format!("{root}/#")).await;
    let (host, _) = bridge_host(&root, r#""read-keys""#, "");
    let host = host.with_mqtt(publisher(1883, &root).await);

    let lost = Event {
        kind: "key.lost".into(),
        payload: r#"{"id": 11}"#.into(),
        ..event("key.lost")
    };
    host.publish("event-bridge", lost).await.unwrap().unwrap();
    let offline = Event {
        kind: "remote_pd.offline".into(),
        object_kind: "remote_pd".into(),
        object_id: Some(9),
        payload: r#"{"id": 12}"#.into(),
        ..event("remote_pd.offline")
    };
    host.publish("event-bridge", offline)
        .await
        .unwrap()
        .unwrap();
    for (i, kind) in ["job.created", "job.created", "job.confirmed"]
        .iter()
        .enumerate()
    {
        let e = Event {
            kind: (*kind).into(),
            object_kind: "job".into(),
            object_id: Some(100 + (i as u64).min(1)),
            ..event(kind)
        };
        host.publish("event-bridge", e).await.unwrap().unwrap();
    }
    let count = |g: &[(String, Vec<u8>, bool)], v: &[u8]| {
        g.iter()
            .any(|(t, p, _)| t == &format!("{root}/state/jobs/pending") && p == v)
    };
    wait_for(&got, "pending 0 after 2 created and 1 confirmed", |g| {
        count(g, b"2") && count(g, b"1")
    })
    .await;
    let g = got.lock().unwrap().clone();
    let find = |topic: &str| {
        g.iter()
            .find(|(t, _, _)| t == topic)
            .map(|(_, p, _)| serde_json::from_slice::<Value>(p).unwrap())
            .unwrap_or_else(|| panic!("nothing on {topic}"))
    };
    let ev = find(&format!("{root}/events/key/lost"));
    assert_eq!(ev["id"], 11);
    assert_eq!(ev["object_id"], 7);
    let state = find(&format!("{root}/state/keys/7"));
    assert_eq!(state["status"], "lost");
    assert_eq!(state["event_id"], 11);
    let pd = find(&format!("{root}/state/pds/9"));
    assert_eq!(pd["state"], "offline");
    assert_eq!(pd["event_id"], 12);
    let online = find(&format!("{root}/ha/binary_sensor/site_a/online/config"));
    assert_eq!(online["availability_topic"], format!("{root}/status"));
    assert_eq!(online["device_class"], "connectivity");
    let pending = find(&format!("{root}/ha/sensor/site_a/pending_jobs/config"));
    assert_eq!(pending["state_topic"], format!("{root}/state/jobs/pending"));
    // Discovery goes out once, not per event.
    let configs = g.iter().filter(|(t, _, _)| t.ends_with("/config")).count();
    assert_eq!(configs, 2, "discovery published once");

    // A new subscriber sees the retained state.
    let late = subscriber(1883, &format!("{root}-late"), &format!("{root}/state/#")).await;
    wait_for(&late, "retained key state", |g| {
        g.iter()
            .any(|(t, _, r)| *r && t == &format!("{root}/state/keys/7"))
    })
    .await;

    // The `discovery` command announces again.
    let a = command(&host, br#"{"id":"d-1","op":"discovery"}"#).await;
    assert_eq!(a["result"]["published"], 2, "{a}");

    // Clean up the retained messages on the shared broker.
    let cleanup = publisher(1883, &format!("{root}-clean")).await;
    for t in [
        format!("{root}/state/keys/7"),
        format!("{root}/state/pds/9"),
        format!("{root}/state/jobs/pending"),
        format!("{root}/ha/binary_sensor/site_a/online/config"),
        format!("{root}/ha/sensor/site_a/pending_jobs/config"),
        format!("{root}/status"),
    ] {
        use lockgate_host::MqttPublisher;
        let _ = cleanup.publish("test", &t, Vec::new(), 1, true).await;
    }
}

/// A private Mosquitto on a free port with persistence in a temporary directory.
struct Broker {
    port: u16,
    conf: std::path::PathBuf,
    child: Option<Child>,
}

impl Broker {
    fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("lockgate-mosquitto-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nmax_queued_messages 0\nmax_inflight_messages 0\n",
                dir.display()
            ),
        )
        .unwrap();
        let mut b = Broker {
            port,
            conf,
            child: None,
        };
        b.up();
        b
    }

    fn up(&mut self) {
        let child = Process::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("/usr/sbin/mosquitto starts");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the private Mosquitto does not listen on {}", self.port);
    }

    /// Stops it with SIGTERM (it saves its persistence database) and waits.
    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Process::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.conf.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_across_a_broker_restart() {
    const N: u64 = 800;
    const WORKERS: u64 = 8;
    let broker = Broker::start();
    let port = broker.port;
    let root = unique_root();
    let got = subscriber(port, &format!("{root}-sub"), &format!("{root}/events/#")).await;
    let (host, _) = bridge_host(&root, r#""read-keys""#, "");
    let host = host.with_mqtt(publisher(port, &root).await);

    // The broker goes down (SIGTERM) a third of the way through and comes back 1 s later.
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = done.clone();
    let restart = tokio::task::spawn_blocking(move || {
        let mut broker = broker;
        for _ in 0..600 {
            if seen.load(std::sync::atomic::Ordering::SeqCst) >= N / 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        broker.down();
        std::thread::sleep(Duration::from_secs(1));
        broker.up();
        broker
    });

    // Workers retry each event until the bridge answers ok, as the relay does.
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let host = host.clone();
        let done = done.clone();
        let retries = retries.clone();
        workers.spawn(async move {
            for i in (w..N).step_by(WORKERS as usize) {
                let e = Event {
                    payload: format!(r#"{{"id": {i}}}"#),
                    ..event("key.handed_out")
                };
                let mut attempts = 0;
                loop {
                    match host.publish("event-bridge", e.clone()).await {
                        Ok(Ok(())) => break,
                        Ok(Err(_)) | Err(_) => {
                            attempts += 1;
                            retries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            assert!(attempts < 600, "event {i} was never acknowledged");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    while let Some(r) = workers.join_next().await {
        r.unwrap();
    }
    let _broker = restart.await.unwrap();
    assert!(
        retries.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the restart made some publishes fail and retry"
    );
    wait_for(&got, "every event at least once", |g| {
        let ids: BTreeSet<u64> = g
            .iter()
            .filter_map(|(_, p, _)| serde_json::from_slice::<Value>(p).ok()?["id"].as_u64())
            .collect();
        ids.len() as u64 == N
    })
    .await;
}
