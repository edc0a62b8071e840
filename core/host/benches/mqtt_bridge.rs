//! Events per second delivered to the machine's Mosquitto (127.0.0.1:1883) at
//! QoS 1 through the event bridge, printed as figures:
//!
//! - **bridge**: the bundled `event-bridge` plugin called through
//!   `PluginHost::publish` (fresh instance per event, settings read, JSON
//!   document built in the guest), publishing through the host's `mqtt`
//!   capability and `RumqttPublisher`, which answers once the broker's PUBACK
//!   arrived;
//! - **publisher**: `RumqttPublisher` called directly with the same document
//!   (the host's publisher without the plugin);
//! - **floor**: a plain rumqttc client publishing the same document at QoS 1,
//!   each publish waiting for its own PUBACK.
//!
//! Each path runs sequentially (1 in flight) and concurrently (32 in flight).
//! A QoS 1 subscriber on a topic root unique to the run counts arrivals:
//! "delivered" means the subscriber got the event, so events/s is the number
//! of events over the time from the first publish to the last arrival. The
//! latencies are per event: `ack` is the publish call (until the PUBACK),
//! `delivery` from the start of the call to the arrival at the subscriber.
//! The bridge publishes `bench.*` events only (no retained state topics,
//! discovery off) and the publishers have no status topic, so nothing
//! retained is left on the broker.
//!
//! "MISSING" counts events acknowledged to the publisher that the subscriber
//! never received. Mosquitto queues at most `max_queued_messages` (default
//! 1000) QoS 1 messages per subscriber beyond the 20 in flight and drops the
//! rest (`$SYS/broker/publish/messages/dropped` counts them): a subscriber
//! that falls behind loses messages the broker did acknowledge. The test
//! `tests/mqtt_qos1.rs` checks the publisher's guarantee against a private
//! Mosquitto with an unbounded queue.
//!
//! Run: `cargo bench -p lockgate-host --bench mqtt_bridge`
//! (events per path and mode: `LOCKGATE_BENCH_EVENTS`, default 5000).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockgate_host::types::{Event, PluginError};
use lockgate_host::{
    HostConfig, MemoryKv, MqttConfig, MqttPublisher, NoGateway, PluginHost, RumqttPublisher,
};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

const BROKER: (&str, u16) = ("127.0.0.1", 1883);
const CONCURRENCY: usize = 32;
const WARMUP: usize = 200;
/// How long the subscriber may lag behind the last acknowledged publish.
const DRAIN: Duration = Duration::from_secs(30);

/// One arrival at the subscriber: topic, event id, when.
type Arrival = (String, u64, Instant);

/// The details of event `id` (what the core's relay hands the bridge: the
/// event row with its field-level diff).
fn details(id: u64) -> String {
    json!({
        "id": id,
        "system_id": 1,
        "actor": "bench",
        "label": "E-1001 Jane Example",
        "changes": {
            "status": {"old": "handed_out", "new": "lost"},
            "validity": {"old": null, "new": {"until": "2026-12-31T23:59:59Z"}},
        },
        "correlation_id": "bench-0000000000000000",
    })
    .to_string()
}

fn event(phase: &str, id: u64) -> Event {
    Event {
        kind: format!("bench.{phase}"),
        object_kind: "bench".into(),
        object_id: Some(id),
        at: 1_700_000_000_000,
        payload: details(id),
    }
}

/// The document the bridge publishes for `event` (same fields, same size).
fn document(event: &Event) -> Vec<u8> {
    let details: Value = serde_json::from_str(&event.payload).unwrap();
    json!({
        "id": details["id"],
        "kind": event.kind,
        "object_kind": event.object_kind,
        "object_id": event.object_id,
        "at": event.at,
        "payload": details,
    })
    .to_string()
    .into_bytes()
}

/// Subscribes to `<root>#` at QoS 1; returns once the broker acknowledged the
/// subscription, with the arrivals (topic, the document's `id`, when).
async fn subscriber(root: &str) -> mpsc::UnboundedReceiver<Arrival> {
    let mut options = MqttOptions::new(
        format!("lockgate-bench-{}-sub", std::process::id()),
        BROKER.0,
        BROKER.1,
    );
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client
        .subscribe(format!("{root}#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    tokio::spawn(async move {
        let _client = client;
        let mut ready = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    let at = Instant::now();
                    let id = serde_json::from_slice::<Value>(&p.payload)
                        .ok()
                        .and_then(|v| v["id"].as_u64());
                    if let Some(id) = id {
                        let _ = tx.send((p.topic.clone(), id, at));
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("subscriber connection to Mosquitto failed: {e}"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), ready_rx)
        .await
        .expect("Mosquitto on 127.0.0.1:1883 acknowledges the subscription")
        .unwrap();
    rx
}

/// A plain rumqttc client whose publishes each wait for their own PUBACK
/// (QoS 1): requests are handed to the client in order under a lock, the
/// event loop's outgoing publishes take the waiters in that order and the
/// broker's PUBACKs answer them by packet id.
#[derive(Clone)]
struct PlainPublisher {
    client: AsyncClient,
    waiters: Arc<Mutex<Waiters>>,
}

#[derive(Default)]
struct Waiters {
    queued: VecDeque<oneshot::Sender<()>>,
    inflight: HashMap<u16, oneshot::Sender<()>>,
}

impl PlainPublisher {
    async fn start(client_id: String) -> PlainPublisher {
        let mut options = MqttOptions::new(client_id, BROKER.0, BROKER.1);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(1 << 20, 1 << 20);
        options.set_inflight(100);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let w = waiters.clone();
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid))) => {
                        let mut w = w.lock().unwrap();
                        let tx = w.queued.pop_front().expect("a waiter per publish");
                        w.inflight.insert(pkid, tx);
                    }
                    Ok(MqttEvent::Outgoing(Outgoing::AwaitAck(_))) => {
                        panic!("floor: packet id collision (out-of-order acks)")
                    }
                    Ok(MqttEvent::Incoming(Packet::PubAck(ack))) => {
                        if let Some(tx) = w.lock().unwrap().inflight.remove(&ack.pkid) {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => panic!("floor publisher connection to Mosquitto failed: {e}"),
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .expect("Mosquitto on 127.0.0.1:1883 accepts the floor publisher")
            .unwrap();
        PlainPublisher { client, waiters }
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>) {
        let rx = loop {
            let mut w = self.waiters.lock().unwrap();
            match self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, payload.clone())
            {
                Ok(()) => {
                    let (tx, rx) = oneshot::channel();
                    w.queued.push_back(tx);
                    break rx;
                }
                Err(rumqttc::ClientError::TryRequest(_)) => {
                    drop(w);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => panic!("floor publish: {e}"),
            }
        };
        rx.await.expect("the floor's event loop is running");
    }
}

/// The three ways an event reaches the broker.
#[derive(Clone)]
enum Path {
    Bridge(PluginHost),
    Publisher(Arc<RumqttPublisher>),
    Floor(PlainPublisher),
}

impl Path {
    async fn send(&self, root: &str, phase: &str, id: u64) {
        let ev = event(phase, id);
        match self {
            Path::Bridge(host) => host
                .publish("event-bridge", ev)
                .await
                .expect("the bridge is loaded")
                .expect("the bridge publishes"),
            Path::Publisher(p) => {
                let topic = format!("{root}events/bench/{phase}");
                p.publish("bench", &topic, document(&ev), 1, false)
                    .await
                    .unwrap_or_else(|e: PluginError| panic!("publisher: {e:?}"));
            }
            Path::Floor(f) => {
                let topic = format!("{root}events/bench/{phase}");
                f.publish(&topic, document(&ev)).await;
            }
        }
    }
}

struct Figures {
    rate: f64,
    ack: (Duration, Duration),
    delivery: (Duration, Duration),
    missing: usize,
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    samples.sort_unstable();
    let at = |p: usize| samples[(samples.len() - 1) * p / 100];
    (at(50), at(99))
}

/// Sends `n` events over `path` with `concurrency` in flight and waits until
/// the subscriber received each of them.
async fn run(
    path: &Path,
    root: &str,
    phase: &str,
    n: usize,
    concurrency: usize,
    arrivals: &mut mpsc::UnboundedReceiver<Arrival>,
) -> Figures {
    let topic = format!("{root}events/bench/{phase}");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (path, root, phase, next) = (
            path.clone(),
            root.to_owned(),
            phase.to_owned(),
            next.clone(),
        );
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= n {
                    return done;
                }
                let sent = Instant::now();
                path.send(&root, &phase, id as u64).await;
                done.push((id, sent, sent.elapsed()));
            }
        });
    }
    let mut sent = vec![None; n];
    let mut acks = Vec::with_capacity(n);
    while let Some(done) = workers.join_next().await {
        for (id, at, ack) in done.expect("a publishing task") {
            sent[id] = Some(at);
            acks.push(ack);
        }
    }
    let mut arrived: Vec<Option<Instant>> = vec![None; n];
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + DRAIN;
    while count < n {
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some((t, id, at))) if t == topic => {
                let slot = &mut arrived[id as usize];
                if slot.is_none() {
                    *slot = Some(at);
                    count += 1;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let last = arrived.iter().flatten().max().copied().unwrap_or(started);
    let delivery = arrived
        .iter()
        .zip(&sent)
        .filter_map(|(a, s)| Some(a.as_ref()?.saturating_duration_since((*s)?)))
        .collect();
    Figures {
        rate: count as f64 / last.duration_since(started).as_secs_f64(),
        ack: percentiles(acks),
        delivery: percentiles(delivery),
        missing: n - count,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print(label: &str, f: &Figures) {
    println!(
        "{label:<36} {:>9.0} ev/s   ack p50 {:>7.3} ms p99 {:>7.3} ms   delivery p50 {:>7.3} ms p99 {:>7.3} ms{}",
        f.rate,
        ms(f.ack.0),
        ms(f.ack.1),
        ms(f.delivery.0),
        ms(f.delivery.1),
        if f.missing > 0 {
            format!("   MISSING {}", f.missing)
        } else {
            String::new()
        }
    );
}

fn plugin_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lockgate-bench-mqtt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundled = PathBuf::from(lockgate_host::BUNDLED_PLUGINS_DIR);
    for file in ["event-bridge.wasm", "event-bridge.toml"] {
        std::fs::copy(bundled.join(file), dir.join(file))
            .unwrap_or_else(|e| panic!("{file} in {}: {e}", bundled.display()));
    }
    dir
}

fn main() {
    let n: usize = std::env::var("LOCKGATE_BENCH_EVENTS")
        .ok()
        .map(|v| v.parse().expect("LOCKGATE_BENCH_EVENTS is a number"))
        .unwrap_or(5_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let tag = format!("{}-{nanos}", std::process::id());
    let root = format!("lockgate-bench/{tag}/");
    let dir = plugin_dir();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut arrivals = subscriber(&root).await;
        let grants = format!(
            r#"
[plugins.event-bridge.grants]
log = true
config = true
kv = true
gateway = ["read-keys"]
mqtt = {{ prefixes = ["{root}"] }}
[plugins.event-bridge.config]
prefix = "{root}"
discovery_prefix = false
"#
        );
        let mut cfg: HostConfig = toml::from_str(&grants).unwrap();
        cfg.cache_dir = Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"));
        cfg.cache_key_file =
            Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache.key"));
        let host =
            PluginHost::new(cfg, Arc::new(MemoryKv::default()), Arc::new(NoGateway)).unwrap();
        host.load_dir(&dir).unwrap();
        let publisher = Arc::new(
            RumqttPublisher::start(&MqttConfig {
                client_id: format!("lockgate-bench-{tag}-pub"),
                status_topic: None,
                ..MqttConfig::default()
            })
            .unwrap(),
        );
        assert!(
            publisher.wait_connected(Duration::from_secs(5)).await,
            "the publisher connects to Mosquitto on 127.0.0.1:1883"
        );
        let host = host.with_mqtt(publisher.clone());
        let floor = PlainPublisher::start(format!("lockgate-bench-{tag}-floor")).await;
        let size = document(&event("bridge_seq", 0)).len();
        println!(
            "MQTT QoS 1 to Mosquitto {}:{}, {n} events per run after {WARMUP} warm-up, {size}-byte documents, topic root {root}",
            BROKER.0, BROKER.1
        );
        let paths = [
            ("bridge", "plugin + RumqttPublisher", Path::Bridge(host)),
            ("publisher", "RumqttPublisher direct", Path::Publisher(publisher)),
            ("floor", "plain rumqttc", Path::Floor(floor)),
        ];
        for (name, _, path) in &paths {
            run(path, &root, &format!("{name}_warmup"), WARMUP, 8, &mut arrivals).await;
        }
        for (mode, concurrency) in [("sequential", 1), ("concurrent", CONCURRENCY)] {
            println!("-- {mode}: {concurrency} in flight");
            let mut rates = HashMap::new();
            for (name, what, path) in &paths {
                let phase = format!("{name}_{mode}");
                let f = run(path, &root, &phase, n, concurrency, &mut arrivals).await;
                print(&format!("{name} ({what})"), &f);
                rates.insert(*name, f.rate);
            }
            println!(
                "ratio bridge/floor {:.2}   publisher/floor {:.2}   bridge/publisher {:.2}",
                rates["bridge"] / rates["floor"],
                rates["publisher"] / rates["floor"],
                rates["bridge"] / rates["publisher"],
            );
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
