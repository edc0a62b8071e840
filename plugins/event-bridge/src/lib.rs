//! Plugin `event-bridge`: publishes every core event it is given as a JSON
//! document to the gateway's MQTT broker, for building management systems
//! and other subscribers.
//!
//! Topic: `<prefix>events/<event kind with '.' replaced by '/'>`, e.g.
//! `lockgate/site-a/events/key/lost`; QoS 1, not retained. `prefix` comes
//! from the plugin's configuration (default `lockgate/`) and must lie inside
//! the plugin's `mqtt` grant. Payload:
//! `{"kind", "object_kind", "object_id", "at", "payload"}`, where `payload` is
//! the event's details as JSON (a string when they are not valid JSON).

#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        world: "lockgate:connector/event-bridge",
        path: ["../../wit/host", "../../wit/connector"],
        with: {
            "lockgate:host/types@0.1.0": lockgate_plugin_sdk::host::types,
            "lockgate:host/log@0.1.0": lockgate_plugin_sdk::host::log,
            "lockgate:host/config@0.1.0": lockgate_plugin_sdk::host::config,
            "lockgate:host/clock@0.1.0": lockgate_plugin_sdk::host::clock,
            "lockgate:host/kv@0.1.0": lockgate_plugin_sdk::host::kv,
            "lockgate:host/gateway@0.1.0": lockgate_plugin_sdk::host::gateway,
            "lockgate:host/mqtt@0.1.0": lockgate_plugin_sdk::host::mqtt,
        },
        generate_all,
    });
}

use bindings::exports::lockgate::connector::{event_sink, plugin};
use lockgate_plugin_sdk::{Error, Event, mqtt, settings};

/// Topic prefix when the configuration has none.
const DEFAULT_PREFIX: &str = "lockgate/";
/// QoS of the event messages (at least once).
const QOS: u8 = 1;

struct Plugin;

impl plugin::Guest for Plugin {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "event-bridge".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Publishes core events as JSON to MQTT: <prefix>events/<kind with '.' as '/'>, QoS 1.".into(),
        }
    }
}

/// The topic of an event: `<prefix>events/<kind with '.' as '/'>`.
fn topic(prefix: &str, kind: &str) -> Result<String, Error> {
    if kind.is_empty() {
        return Err(Error::invalid("the event has no kind"));
    }
    Ok(format!("{prefix}events/{}", kind.replace('.', "/")))
}

/// The JSON document published for an event.
fn document(event: &Event) -> serde_json::Value {
    let details = serde_json::from_str(&event.payload)
        .unwrap_or_else(|_| serde_json::Value::String(event.payload.clone()));
    serde_json::json!({
        "kind": event.kind,
        "object_kind": event.object_kind,
        "object_id": event.object_id,
        "at": event.at,
        "payload": details,
    })
}

impl event_sink::Guest for Plugin {
    fn publish(event: Event) -> Result<(), Error> {
        let prefix = match settings::value("prefix") {
            None => DEFAULT_PREFIX.to_owned(),
            Some(serde_json::Value::String(p)) => p,
            Some(_) => return Err(Error::invalid("config `prefix` must be a string")),
        };
        let topic = topic(&prefix, &event.kind)?;
        let body = document(&event).to_string();
        mqtt::publish(&topic, body.as_bytes(), QOS, false)
    }
}

bindings::export!(Plugin with_types_in bindings);
