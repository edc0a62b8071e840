//! A QoS 1 `ok` from the `mqtt` capability means the broker has that very
//! message: 20 000 events through `RumqttPublisher` with 32 in flight, and a
//! QoS 1 subscriber receives every one that was answered `ok`.
//!
//! The subscriber must keep up or the broker drops messages on *its* side:
//! Mosquitto sends a QoS 1 subscriber at most `max_inflight_messages` (20)
//! unacknowledged messages and queues at most `max_queued_messages` (1000)
//! more, then drops (counted in `$SYS/broker/publish/messages/dropped`).
//! So the run uses a private Mosquitto with an unbounded per-client queue,
//! as a production subscriber with a persistent session would want too.

use std::collections::BTreeSet;
use std::process::{Child, Command as Process};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockgate_host::{MqttConfig, MqttPublisher, RumqttPublisher};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};

const EVENTS: u64 = 20_000;
const IN_FLIGHT: u64 = 32;

/// A private Mosquitto on a free port (no persistence, unbounded queues).
struct Broker {
    port: u16,
    dir: std::path::PathBuf,
    child: Child,
}

impl Broker {
    fn start(extra: &str) -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!(
            "lockgate-mosquitto-qos1-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n{extra}"),
        )
        .unwrap();
        let mut child = Process::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("/usr/sbin/mosquitto starts");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Broker { port, dir, child };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the private Mosquitto does not listen on {port}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A QoS 1 subscriber to `filter` collecting the event numbers it receives.
async fn subscriber(port: u16, filter: &str) -> Arc<Mutex<BTreeSet<u64>>> {
    let mut options = MqttOptions::new(format!("{filter}-sub"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let got = Arc::new(Mutex::new(BTreeSet::new()));
    let sink = got.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
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
                    let n: u64 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
                    sink.lock().unwrap().insert(n);
                }
                Ok(_) => {}
                Err(e) => panic!("the subscriber lost its connection: {e}"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("the subscription is acknowledged")
        .unwrap();
    got
}

/// Publishes `EVENTS` numbered events with `IN_FLIGHT` workers; the numbers answered `ok`.
async fn publish_all(publisher: Arc<RumqttPublisher>, topic: &str) -> BTreeSet<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (publisher, next, topic) = (publisher.clone(), next.clone(), topic.to_owned());
        workers.spawn(async move {
            let mut ok = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= EVENTS {
                    return ok;
                }
                if publisher
                    .publish("test", &topic, n.to_string().into_bytes(), 1, false)
                    .await
                    .is_ok()
                {
                    ok.push(n);
                }
            }
        });
    }
    let mut acked = BTreeSet::new();
    while let Some(done) = workers.join_next().await {
        acked.extend(done.unwrap());
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_reaches_a_qos1_subscriber() {
    let broker = Broker::start("max_queued_messages 0\n");
    let port = broker.port;
    let topic = format!("lockgate-qos1-{}/events", std::process::id());
    let got = subscriber(port, &topic).await;
    let publisher = Arc::new(
        RumqttPublisher::start(&MqttConfig {
            port,
            client_id: format!("lockgate-qos1-{}-pub", std::process::id()),
            ..MqttConfig::default()
        })
        .unwrap(),
    );
    assert!(publisher.wait_connected(Duration::from_secs(10)).await);
    let acked = publish_all(publisher, &topic).await;
    assert!(
        acked.len() as u64 > EVENTS * 9 / 10,
        "most publishes are acknowledged: {}",
        acked.len()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let missing: Vec<u64> = acked.difference(&got.lock().unwrap()).copied().collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} acknowledged events never reached the subscriber, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
