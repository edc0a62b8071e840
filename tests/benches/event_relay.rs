//! The event relay end to end against the machine's Mosquitto (127.0.0.1:1883):
//! rows of the `events` outbox read by `lockgate::event_relay` (production
//! `RelayConfig` defaults: batches of 500, 32 in flight, durable cursor in
//! `plugin_kv`), handed to the bundled `event-bridge` plugin through
//! `PluginHost::publish`, published at QoS 1 through `RumqttPublisher` (each
//! publish waits for its PUBACK) and counted by a QoS 1 subscriber.
//!
//! Per database: `LOCKGATE_BENCH_EVENTS` (default 5000) `person.updated`
//! events with a realistic field-level diff are inserted (untimed, multi-row
//! INSERTs) after the relay's cursor, then a relay is started and timed until
//! the subscriber has received every event (events/s end to end). Two shapes:
//! every event about a different person (the relay runs 32 at a time) and all
//! events about one person (one lane: strictly in order, 1 at a time). As the
//! reference in the same run, the same events handed to the same bridge by
//! the bench itself, 32 in flight, without the database (`bridge direct`).
//! `person` events update no retained state topic and discovery is off, so
//! nothing retained is left on the broker.
//!
//! Run: `cargo bench -p lockgate-tests --bench event_relay`;
//! `LOCKGATE_BENCH_DB=sqlite|postgres` runs one database only.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use lockgate::event_relay::{self, CURSOR_NAMESPACE, RelayConfig};
use lockgate::gateway::CoreGateway;
use lockgate::plugins::DbKv;
use lockgate_host::mqtt::{CommandSubscriber, InboundMessage};
use lockgate_host::types::Event;
use lockgate_host::{HostConfig, MqttConfig, PluginHost, RumqttPublisher};
use lockgate_store::Store;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

const BRIDGE: &str = "event-bridge";
/// How long the subscriber may take to see every event of a run.
const DEADLINE: Duration = Duration::from_secs(120);

fn mqtt(client_id: &str) -> MqttConfig {
    MqttConfig {
        client_id: client_id.into(),
        queue_capacity: 1024,
        ..MqttConfig::default()
    }
}

fn plugin_dir(tag: &str) -> PathBuf {
    let bundled = PathBuf::from(lockgate_host::BUNDLED_PLUGINS_DIR);
    let dir = std::env::temp_dir().join(format!("lockgate-bench-relay-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    for ext in ["wasm", "toml"] {
        let f = format!("{BRIDGE}.{ext}");
        std::fs::copy(bundled.join(&f), dir.join(&f)).unwrap();
    }
    dir
}

/// The bridge as the server wires it: kv in the database, the core gateway.
async fn bridge(store: &Store, root: &str, dir: &Path, client_id: &str) -> PluginHost {
    let cfg: HostConfig = toml::from_str(&format!(
        r#"
[plugins.event-bridge]
config = {{ prefix = "{root}", discovery_prefix = false }}
[plugins.event-bridge.grants]
log = true
config = true
kv = true
gateway = ["read-keys"]
mqtt = {{ prefixes = ["{root}"] }}
"#
    ))
    .unwrap();
    let host = PluginHost::new(
        cfg,
        Arc::new(DbKv::new(store.clone())),
        Arc::new(CoreGateway::new(store.clone())),
    )
    .unwrap();
    host.load_dir(dir).unwrap();
    let publisher = RumqttPublisher::start(&mqtt(client_id)).unwrap();
    assert!(
        publisher.wait_connected(Duration::from_secs(10)).await,
        "the publisher connects to Mosquitto on 127.0.0.1:1883"
    );
    host.with_mqtt(Arc::new(publisher))
}

/// The field-level diff of a person change, as the store records it.
fn changes(i: usize) -> String {
    json!({
        "email": {"old": format!("p{i}@old.example"), "new": format!("p{i}@example.com")},
        "phone": {"old": null, "new": "+49 30 1234567"},
    })
    .to_string()
}

/// Inserts `n` `person.updated` events (object `object(i)`); returns their ids.
async fn insert_events(
    store: &Store,
    system_id: i64,
    n: usize,
    object: impl Fn(usize) -> i64,
) -> Vec<i64> {
    let backend = store.backend();
    let mut tx = store.write_tx().await.expect("tx");
    let mut ids = Vec::with_capacity(n);
    let at = ts_now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(SQL_ROWS) {
        let mut ph = Ph::new(backend);
        let sql = format!(
            "INSERT INTO events (system_id, at, actor_id, actor, action, object_kind, object_id, object_label, changes, correlation_id) \
             VALUES {} RETURNING id",
            ph.rows(chunk.len(), 10)
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for &i in chunk {
            q = q
                .bind(system_id)
                .bind(at.clone())
                .bind(None::<i64>)
                .bind("bench")
                .bind("updated")
                .bind("person")
                .bind(object(i))
                .bind(format!("E-{i:05} Jane Example"))
                .bind(changes(i))
                .bind(format!("bench-{i:016}"));
        }
        ids.extend(q.fetch_all(&mut *tx).await.expect("insert events"));
    }
    tx.commit().await.expect("commit");
    ids
}

/// Counts the subscriber's arrivals of `want` (acknowledging each); returns
/// when the last one arrived, and how many never did.
async fn arrivals(
    rx: &mut mpsc::Receiver<InboundMessage>,
    sub: &CommandSubscriber,
    want: &[i64],
) -> (Instant, usize) {
    let mut missing: HashSet<i64> = want.iter().copied().collect();
    let mut last = Instant::now();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !missing.is_empty() {
        let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            break;
        };
        sub.ack(&m).await;
        if let Some(id) = serde_json::from_slice::<Value>(&m.payload)
            .ok()
            .and_then(|v| v["id"].as_i64())
            && missing.remove(&id)
        {
            last = Instant::now();
        }
    }
    (last, missing.len())
}

/// Relays `ids` (already in the table after the cursor) and times it until
/// the subscriber has them all.
async fn relayed(
    store: &Store,
    host: &PluginHost,
    rx: &mut mpsc::Receiver<InboundMessage>,
    sub: &CommandSubscriber,
    ids: &[i64],
) -> (f64, usize) {
    let started = Instant::now();
    let relay = event_relay::spawn(
        store.clone(),
        host.clone(),
        RelayConfig {
            bridges: vec![BRIDGE.into()],
            start_at_end: false,
            ..RelayConfig::default()
        },
    );
    let (last, missing) = arrivals(rx, sub, ids).await;
    // The cursor is saved after the batch's last publish was acknowledged,
    // which can be after the subscriber got it: wait for it before stopping.
    let deadline = Instant::now() + Duration::from_secs(10);
    while event_relay::cursor(store, BRIDGE).await.unwrap() != ids.last().copied() {
        assert!(
            Instant::now() < deadline,
            "the cursor reaches the last event"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.abort();
    let _ = relay.await;
    (
        (ids.len() - missing) as f64 / last.duration_since(started).as_secs_f64(),
        missing,
    )
}

/// Offset of the ids of the direct run (they must not collide with relayed ones).
const DIRECT_IDS: i64 = 1 << 40;

/// The same events handed to the bridge by the bench, 32 in flight (no
/// database), under ids `DIRECT_IDS + id`.
async fn direct(
    host: &PluginHost,
    rx: &mut mpsc::Receiver<InboundMessage>,
    sub: &CommandSubscriber,
    system_id: i64,
    ids: &[i64],
) -> (f64, usize) {
    let ids: Vec<i64> = ids.iter().map(|id| DIRECT_IDS + id).collect();
    let events: Arc<Vec<Event>> = Arc::new(
        ids.iter()
            .enumerate()
            .map(|(i, &id)| Event {
                kind: "person.updated".into(),
                object_kind: "person".into(),
                object_id: Some(i as u64 + 1),
                at: 1_700_000_000_000,
                payload: json!({
                    "id": id,
                    "system_id": system_id,
                    "actor": "bench",
                    "label": format!("E-{i:05} Jane Example"),
                    "changes": serde_json::from_str::<Value>(&changes(i)).unwrap(),
                    "correlation_id": format!("bench-{i:016}"),
                })
                .to_string(),
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..32 {
        let (host, events, next) = (host.clone(), events.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(ev) = events.get(i) else { return };
                host.publish(BRIDGE, ev.clone())
                    .await
                    .expect("the bridge is loaded")
                    .expect("the bridge publishes");
            }
        });
    }
    let (last, missing) = arrivals(rx, sub, &ids).await;
    while workers.join_next().await.is_some() {}
    (
        (ids.len() - missing) as f64 / last.duration_since(started).as_secs_f64(),
        missing,
    )
}

fn row(label: String, (rate, missing): (f64, usize)) -> Vec<String> {
    vec![
        label,
        format!("{rate:.0}"),
        if missing > 0 {
            format!("{missing} MISSING")
        } else {
            "0".into()
        },
    ]
}

fn main() {
    let n: usize = std::env::var("LOCKGATE_BENCH_EVENTS")
        .ok()
        .map(|v| v.parse().expect("LOCKGATE_BENCH_EVENTS is a number"))
        .unwrap_or(5_000);
    let mut tag = [0u8; 6];
    getrandom::getrandom(&mut tag).unwrap();
    let tag = format!("{}-{}", std::process::id(), hex::encode(tag));
    let dir = plugin_dir(&tag);
    let rt = runtime();
    println!(
        "event relay → event-bridge → Mosquitto 127.0.0.1:1883 (QoS 1), {n} events per run, delivered = received by a QoS 1 subscriber"
    );
    let mut rows = Vec::new();
    for db in databases() {
        rt.block_on(async {
            let name = db_name(db);
            let root = format!("lockgate-bench/{tag}-{name}/");
            let f = fresh(db).await;
            let system_id = f.boot.system.id;
            let (sub, mut rx) = CommandSubscriber::start(
                &mqtt(&format!("lockgate-bench-{tag}-{name}")),
                "-sub",
                vec![format!("{root}events/#")],
            )
            .unwrap();
            assert!(sub.wait_subscribed(Duration::from_secs(10)).await);
            let host = bridge(
                &f.store,
                &root,
                &dir,
                &format!("lockgate-bench-{tag}-{name}-pub"),
            )
            .await;
            // The bootstrap's own events are not part of the run.
            let start: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
                .fetch_one(f.store.pool())
                .await
                .unwrap();
            f.store
                .plugin_kv_set(
                    CURSOR_NAMESPACE,
                    &format!("cursor/{BRIDGE}"),
                    start.to_string().as_bytes(),
                )
                .await
                .unwrap();
            // Warm-up: instantiate the bridge, connect the pool.
            let warm = insert_events(&f.store, system_id, 100, |i| i as i64 + 1).await;
            relayed(&f.store, &host, &mut rx, &sub, &warm).await;

            let ids = insert_events(&f.store, system_id, n, |i| i as i64 + 1).await;
            let r = relayed(&f.store, &host, &mut rx, &sub, &ids).await;
            rows.push(row(
                format!("{name}: relay, {n} different persons (32 in flight)"),
                r,
            ));
            let ids = insert_events(&f.store, system_id, n, |_| 1).await;
            let r = relayed(&f.store, &host, &mut rx, &sub, &ids).await;
            rows.push(row(
                format!("{name}: relay, {n} events of one person (in order)"),
                r,
            ));
            let r = direct(&host, &mut rx, &sub, system_id, &ids).await;
            rows.push(row(
                format!("{name}: bridge direct, no database (32 in flight)"),
                r,
            ));
        });
    }
    print_table(&["path", "events/s delivered", "missing"], &rows);
    let _ = std::fs::remove_dir_all(&dir);
}
