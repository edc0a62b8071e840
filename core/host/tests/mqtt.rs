//! The `mqtt` capability against the machine's Mosquitto on 127.0.0.1:1883:
//! the bundled `event-bridge` plugin publishes an event as JSON to
//! `<prefix>events/<kind as path>` and a subscriber receives it; a topic
//! outside the granted prefixes is denied, a plugin importing `mqtt` without
//! a grant is refused at load, a host without a publisher answers
//! `unavailable`, and the other plugins keep working.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{event, host, plugin_dir};
use lockgate_host::types::{Event, PluginError};
use lockgate_host::{HostConfig, MqttConfig, PluginHost, PluginState, RumqttPublisher};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};

const BROKER: (&str, u16) = ("127.0.0.1", 1883);
const WAIT: Duration = Duration::from_secs(5);

/// A topic root no other run uses.
fn unique_root() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("lockgate-test-{}-{nanos}", std::process::id())
}

fn config_for(grants: &str) -> HostConfig {
    let mut cfg = common::config(grants);
    cfg.limits.deadline_ms = 5_000;
    cfg
}

/// A subscriber to `filter`; returns once the subscription is acknowledged,
/// with a channel of (topic, payload).
async fn subscriber(filter: &str) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let mut options = MqttOptions::new(format!("{filter}-sub"), BROKER.0, BROKER.1);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("queue the subscription");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
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
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(e) => panic!("subscriber connection to Mosquitto failed: {e}"),
            }
        }
    });
    tokio::time::timeout(WAIT, ready_rx)
        .await
        .expect("Mosquitto on 127.0.0.1:1883 acknowledges the subscription")
        .unwrap();
    rx
}

async fn publisher(root: &str) -> Arc<RumqttPublisher> {
    let cfg = MqttConfig {
        host: BROKER.0.into(),
        port: BROKER.1,
        client_id: format!("{root}-pub"),
        status_topic: Some(format!("{root}/status")),
        ..MqttConfig::default()
    };
    let p = Arc::new(RumqttPublisher::start(&cfg).unwrap());
    assert!(p.wait_connected(WAIT).await, "the publisher connects");
    p
}

fn grants(root: &str, bridge: &str) -> String {
    format!(
        r#"
[plugins.noop.grants]
log = true
kv = true
[plugins.event-bridge.grants]
log = true
config = true
kv = true
gateway = ["read-keys"]
{bridge}
[plugins.event-bridge.config]
prefix = "{root}/site-a/"
"#
    )
}

async fn noop_still_works(host: &PluginHost) {
    for kind in ["log", "kv", "other"] {
        host.publish("noop", event(kind)).await.unwrap().unwrap();
    }
    assert_eq!(host.status_of("noop").unwrap().state, PluginState::Enabled);
}

async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    topic: &str,
) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (t, payload) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no message on {topic} within {WAIT:?}"))
            .expect("the subscriber is running");
        if t == topic {
            return payload;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_bridge_publishes_events_as_json() {
    let root = unique_root();
    let mut rx = subscriber(&format!("{root}/#")).await;
    let cfg = config_for(&grants(
        &root,
        &format!("mqtt = {{ prefixes = [\"{root}/site-a/\"] }}"),
    ));
    let (host, _, _) = host(cfg, &plugin_dir(&["noop", "event-bridge"]));
    let host = host.with_mqtt(publisher(&root).await);
    assert_eq!(
        host.status_of("event-bridge").unwrap().state,
        PluginState::Enabled
    );
    // The publisher announced itself on its status topic.
    assert_eq!(next(&mut rx, &format!("{root}/status")).await, b"online");

    let ev = Event {
        payload: r#"{"holder":"E-1001"}"#.into(),
        ..event("key.lost")
    };
    host.publish("event-bridge", ev).await.unwrap().unwrap();
    let got = next(&mut rx, &format!("{root}/site-a/events/key/lost")).await;
    let json: serde_json::Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "id": null,
            "kind": "key.lost",
            "object_kind": "key",
            "object_id": 7,
            "at": 1_700_000_000_000_i64,
            "payload": {"holder": "E-1001"},
        })
    );
    noop_still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_outside_the_grant_and_bad_topics_are_refused() {
    let root = unique_root();
    // Granted a different prefix than the one the plugin is configured with.
    let cfg = config_for(&grants(&root, &format!("mqtt = [\"{root}/site-b/\"]")));
    let (host, _, _) = host(cfg, &plugin_dir(&["noop", "event-bridge"]));
    let host = host.with_mqtt(publisher(&root).await);
    match host
        .publish("event-bridge", event("key.lost"))
        .await
        .unwrap()
    {
        Err(PluginError::Denied(m)) => assert!(m.contains("site-a/events/key/lost"), "{m}"),
        other => panic!("expected denied, got {other:?}"),
    }
    // A wildcard in the topic (from the event kind) is invalid, not published.
    match host.publish("event-bridge", event("key.+")).await.unwrap() {
        Err(PluginError::Invalid(m)) => assert!(m.contains("wildcards"), "{m}"),
        other => panic!("expected invalid, got {other:?}"),
    }
    // Expected errors are not faults.
    let status = host.status_of("event-bridge").unwrap();
    assert_eq!(status.state, PluginState::Enabled);
    assert_eq!(status.stats.faults, 0);
    noop_still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_import_without_a_grant_is_refused_at_load() {
    let root = unique_root();
    let cfg = config_for(&grants(&root, ""));
    let (host, _, _) = host(cfg, &plugin_dir(&["noop", "event-bridge"]));
    match host.status_of("event-bridge").unwrap().state {
        PluginState::Refused { reason } => assert!(
            reason.contains("lockgate:host/mqtt") && reason.contains("`mqtt` is not granted"),
            "{reason}"
        ),
        other => panic!("expected refused, got {other:?}"),
    }
    noop_still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_publisher_mqtt_is_unavailable() {
    let root = unique_root();
    let cfg = config_for(&grants(&root, &format!("mqtt = [\"{root}/site-a/\"]")));
    let (host, _, _) = host(cfg, &plugin_dir(&["noop", "event-bridge"]));
    match host
        .publish("event-bridge", event("key.lost"))
        .await
        .unwrap()
    {
        Err(PluginError::Unavailable(m)) => assert!(m.contains("MQTT"), "{m}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    noop_still_works(&host).await;
}
