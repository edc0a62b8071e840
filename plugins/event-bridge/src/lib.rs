//! Plugin `event-bridge`: publishes the core's events as JSON to the
//! gateway's MQTT broker for building management systems, keeps retained
//! state topics, announces itself to Home Assistant (MQTT discovery) and
//! takes commands. The full description (topics, payloads, commands) is
//! `docs/connectors/mqtt.md`.
//!
//! Topics, under the configured `prefix` (default `lockgate/`, must lie
//! inside the plugin's `mqtt` grant):
//! - `<prefix>events/<kind with '.' as '/'>`: every event, QoS 1, not
//!   retained: `{"id", "kind", "object_kind", "object_id", "at", "payload"}`.
//! - `<prefix>state/keys/<id>` (retained): the last lifecycle event of a key
//!   (`{"status", "event", "event_id", "at"}`); cleared when the key is deleted.
//! - `<prefix>state/jobs/pending` (retained): number of open jobs, as text.
//! - `<prefix>state/pds/<id>` (retained): a remote PD's liveness (`{"state": "online" |
//!   "offline", "event", "event_id", "at"}`); cleared when the PD is deleted.
//! - `<prefix>state/licence` and `<prefix>state/plugins/<name>` (retained):
//!   the last licence / plugin event.
//! - Home Assistant discovery (retained, under `discovery_prefix`, default
//!   `homeassistant/`): a `binary_sensor` for the gateway's connection and a
//!   `sensor` for the pending jobs, sent on the first event after a start or
//!   a configuration change and on the `discovery` command.
//!
//! Commands (`handle-command`): `{"id", "op", "args"}`; answers
//! `{"id", "ok": true, "result"}` or `{"id", "ok": false, "error": {"kind",
//! "message"}}`. An `id` seen before gets the stored answer again (with
//! `"duplicate": true`) and is not executed twice; the last 500 answers are kept
//! (older ones are pruned, so the plugin's kv stays bounded). Each operation is a
//! gateway operation the host authorises by the plugin's `gateway` grant.

use lockgate_plugin_sdk::{Error, Event, Job, Key, gateway, kv, log, mqtt, settings};
use lockgate_plugin_sdk::{event_sink, plugin};
use serde_json::{Value, json};

/// Topic prefix when the configuration has none.
const DEFAULT_PREFIX: &str = "lockgate/";
/// Home Assistant discovery prefix when the configuration has none.
const DEFAULT_DISCOVERY_PREFIX: &str = "homeassistant/";
/// Home Assistant node id (and device identifier) when the configuration has none.
const DEFAULT_NODE_ID: &str = "lockgate";
/// QoS of every message (at least once).
const QOS: u8 = 1;
/// Largest command payload, bytes.
const MAX_COMMAND_BYTES: usize = 64 << 10;
/// Longest command id.
const MAX_ID_LEN: usize = 128;
/// Most list entries a command answer carries.
const MAX_ANSWER_ITEMS: usize = 500;
/// Open jobs counted at most (the kv lists at most this many keys at once).
const MAX_PENDING_COUNT: u32 = 1_000;
/// kv key of the discovery fingerprint (what was last announced).
const KV_DISCOVERY: &str = "ha/discovery";
/// kv prefix of the open jobs (one key per job).
const KV_PENDING: &str = "pending/";
/// kv prefix of the answered commands (one key per command id).
const KV_COMMAND: &str = "cmd/";
/// kv prefix of the answers' order: `cmd-seq/<20-digit number>` holds a command id.
const KV_COMMAND_ORDER: &str = "cmd-seq/";
/// kv key of the next answer's number.
const KV_COMMAND_NEXT: &str = "cmd-next";
/// Answers kept for de-duplication; older ones are pruned (a command re-sent after
/// this many newer ones runs again).
const KEPT_ANSWERS: usize = 500;
/// Most old answers one command prunes (the excess is at most one per command).
const PRUNE_PER_COMMAND: u32 = 16;

struct Plugin;

impl plugin::Guest for Plugin {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "event-bridge".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Publishes core events as JSON to MQTT (events, retained state, Home Assistant discovery) and takes commands.".into(),
        }
    }
}

/// The plugin's settings, from its configuration section.
struct Settings {
    prefix: String,
    status_topic: String,
    discovery_prefix: Option<String>,
    node_id: String,
}

fn string_setting(key: &str, default: &str) -> Result<String, Error> {
    match settings::value(key) {
        None => Ok(default.to_owned()),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Error::invalid(format!("config `{key}` must be a string"))),
    }
}

impl Settings {
    fn load() -> Result<Settings, Error> {
        let prefix = string_setting("prefix", DEFAULT_PREFIX)?;
        let status_topic = string_setting("status_topic", &format!("{prefix}status"))?;
        let discovery_prefix = match settings::value("discovery_prefix") {
            None => Some(DEFAULT_DISCOVERY_PREFIX.to_owned()),
            Some(Value::Bool(false)) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                return Err(Error::invalid(
                    "config `discovery_prefix` must be a string or false",
                ));
            }
        };
        let node_id = string_setting("node_id", DEFAULT_NODE_ID)?;
        if node_id.is_empty()
            || node_id.len() > 64
            || !node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Error::invalid(
                "config `node_id` must be 1-64 characters [A-Za-z0-9_-]",
            ));
        }
        Ok(Settings {
            prefix,
            status_topic,
            discovery_prefix,
            node_id,
        })
    }

    fn pending_topic(&self) -> String {
        format!("{}state/jobs/pending", self.prefix)
    }
}

/// The topic of an event: `<prefix>events/<kind with '.' as '/'>`.
fn topic(prefix: &str, kind: &str) -> Result<String, Error> {
    if kind.is_empty() {
        return Err(Error::invalid("the event has no kind"));
    }
    Ok(format!("{prefix}events/{}", kind.replace('.', "/")))
}

/// The event's details as JSON (a string when they are not valid JSON).
fn details(event: &Event) -> Value {
    serde_json::from_str(&event.payload).unwrap_or_else(|_| Value::String(event.payload.clone()))
}

/// The JSON document published for an event.
fn document(event: &Event, details: &Value) -> Value {
    json!({
        "id": details.get("id").cloned().unwrap_or(Value::Null),
        "kind": event.kind,
        "object_kind": event.object_kind,
        "object_id": event.object_id,
        "at": event.at,
        "payload": details,
    })
}

/// The event's action: the part of the kind after the object kind.
fn action(event: &Event) -> &str {
    event
        .kind
        .rsplit_once('.')
        .map_or(event.kind.as_str(), |(_, a)| a)
}

fn publish_retained(topic: &str, body: &[u8]) -> Result<(), Error> {
    mqtt::publish(topic, body, QOS, true)
}

/// The Home Assistant discovery messages: (topic, config).
fn discovery_messages(s: &Settings, disc: &str) -> Vec<(String, Value)> {
    let node = &s.node_id;
    let device = json!({
        "identifiers": [format!("lockgate_{node}")],
        "name": format!("lockgate {node}"),
        "manufacturer": "lockgate",
        "model": "access control gateway",
    });
    vec![
        (
            format!("{disc}binary_sensor/{node}/online/config"),
            json!({
                "name": "Gateway online",
                "unique_id": format!("lockgate_{node}_online"),
                "object_id": format!("lockgate_{node}_online"),
                "device_class": "connectivity",
                "state_topic": s.status_topic,
                "payload_on": "online",
                "payload_off": "offline",
                "availability_topic": s.status_topic,
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": device,
            }),
        ),
        (
            format!("{disc}sensor/{node}/pending_jobs/config"),
            json!({
                "name": "Pending jobs",
                "unique_id": format!("lockgate_{node}_pending_jobs"),
                "object_id": format!("lockgate_{node}_pending_jobs"),
                "icon": "mdi:key-chain",
                "state_topic": s.pending_topic(),
                "unit_of_measurement": "jobs",
                "state_class": "measurement",
                "availability_topic": s.status_topic,
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": device,
            }),
        ),
    ]
}

/// Publishes the discovery messages (and the current pending count, so the
/// sensor has a value); returns how many messages were published.
fn announce(s: &Settings) -> Result<usize, Error> {
    let Some(disc) = &s.discovery_prefix else {
        return Ok(0);
    };
    let messages = discovery_messages(s, disc);
    for (topic, config) in &messages {
        publish_retained(topic, config.to_string().as_bytes())?;
    }
    publish_pending(s)?;
    Ok(messages.len())
}

/// What the discovery messages depend on; announced again when it changes.
fn fingerprint(s: &Settings) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        s.prefix,
        s.status_topic,
        s.discovery_prefix.as_deref().unwrap_or(""),
        s.node_id
    )
}

/// Announces to Home Assistant unless the same settings were announced before.
/// A discovery prefix outside the grant is logged, not retried per event.
fn announce_once(s: &Settings) -> Result<(), Error> {
    if s.discovery_prefix.is_none() {
        return Ok(());
    }
    let want = fingerprint(s);
    if kv::get(KV_DISCOVERY)?.as_deref() == Some(want.as_bytes()) {
        return Ok(());
    }
    match announce(s) {
        Ok(_) => {}
        Err(Error::Denied(reason)) => {
            log::warn(&format!(
                "Home Assistant discovery not published (grant the discovery prefix, or set discovery_prefix = false): {reason}"
            ));
        }
        Err(e) => return Err(e),
    }
    kv::set(KV_DISCOVERY, want.as_bytes())
}

/// Publishes the number of open jobs (retained).
fn publish_pending(s: &Settings) -> Result<(), Error> {
    let count = kv::list_keys(KV_PENDING, MAX_PENDING_COUNT)?.len();
    publish_retained(&s.pending_topic(), count.to_string().as_bytes())
}

/// Whether a job action leaves the job open (`Some(true)`), closes it
/// (`Some(false)`) or says nothing about it.
fn job_open(action: &str, details: &Value) -> Option<bool> {
    let state = details
        .pointer("/changes/state/new")
        .or_else(|| details.pointer("/changes/state"))
        .and_then(Value::as_str)
        .unwrap_or(action);
    match state {
        "created" | "awaiting_approval" | "open" | "loaded" | "carried" | "recreated" => Some(true),
        "confirmed" | "failed" | "cancelled" | "finished" | "deleted" | "replaced" => Some(false),
        _ => None,
    }
}

/// Retained state topics an event updates.
fn update_state(s: &Settings, event: &Event, details: &Value) -> Result<(), Error> {
    let action = action(event);
    match (event.object_kind.as_str(), event.object_id) {
        ("key", Some(id)) => {
            let topic = format!("{}state/keys/{id}", s.prefix);
            if action == "deleted" {
                // An empty retained message removes the retained state.
                publish_retained(&topic, b"")
            } else {
                let body = json!({
                    "status": action,
                    "event": event.kind,
                    "event_id": details.get("id").cloned().unwrap_or(Value::Null),
                    "at": event.at,
                });
                publish_retained(&topic, body.to_string().as_bytes())
            }
        }
        ("job", Some(id)) => {
            let key = format!("{KV_PENDING}{id}");
            match job_open(action, details) {
                Some(true) => kv::set(&key, b"1")?,
                Some(false) => kv::delete(&key)?,
                None => return Ok(()),
            }
            publish_pending(s)
        }
        ("remote_pd", Some(id)) => {
            let topic = format!("{}state/pds/{id}", s.prefix);
            match action {
                "deleted" => publish_retained(&topic, b""),
                "online" | "offline" => {
                    let body = json!({
                        "state": action,
                        "event": event.kind,
                        "event_id": details.get("id").cloned().unwrap_or(Value::Null),
                        "at": event.at,
                    });
                    publish_retained(&topic, body.to_string().as_bytes())
                }
                _ => Ok(()),
            }
        }
        ("licence", _) => publish_retained(
            &format!("{}state/licence", s.prefix),
            document(event, details).to_string().as_bytes(),
        ),
        ("plugin", _) => {
            let name = details
                .get("label")
                .and_then(Value::as_str)
                .filter(|n| is_safe_segment(n))
                .map(str::to_owned)
                .or_else(|| event.object_id.map(|i| i.to_string()))
                .unwrap_or_else(|| "unknown".into());
            publish_retained(
                &format!("{}state/plugins/{name}", s.prefix),
                document(event, details).to_string().as_bytes(),
            )
        }
        _ => Ok(()),
    }
}

/// A topic segment without wildcards or separators.
fn is_safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl event_sink::Guest for Plugin {
    fn publish(event: Event) -> Result<(), Error> {
        let s = Settings::load()?;
        let topic = topic(&s.prefix, &event.kind)?;
        announce_once(&s)?;
        let details = details(&event);
        let body = document(&event, &details).to_string();
        mqtt::publish(&topic, body.as_bytes(), QOS, false)?;
        update_state(&s, &event, &details)
    }

    fn handle_command(command: event_sink::Command) -> Result<String, Error> {
        Ok(handle(&command.payload)?.to_string())
    }
}

/// A command answer that failed.
fn failure(id: Option<&str>, kind: &str, message: impl Into<String>) -> Value {
    json!({
        "id": id,
        "ok": false,
        "error": { "kind": kind, "message": message.into() },
    })
}

/// An expected error as (kind, message).
fn error_parts(e: &Error) -> (&'static str, String) {
    match e {
        Error::Invalid(m) => ("invalid", m.clone()),
        Error::NotFound(m) => ("not-found", m.clone()),
        Error::Denied(m) => ("denied", m.clone()),
        Error::Unavailable(m) => ("unavailable", m.clone()),
        Error::Other(m) => ("other", m.clone()),
    }
}

/// A valid command id: 1-128 characters `[A-Za-z0-9._-]`.
fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Validates, de-duplicates and runs one command. `Err` only when the
/// plugin's kv is unavailable (the host answers, and the command may be
/// sent again).
fn handle(payload: &[u8]) -> Result<Value, Error> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Ok(failure(
            None,
            "invalid",
            format!("a command is at most {MAX_COMMAND_BYTES} bytes"),
        ));
    }
    let Ok(command) = serde_json::from_slice::<Value>(payload) else {
        return Ok(failure(None, "invalid", "a command is a JSON object"));
    };
    let Some(id) = command.get("id").and_then(Value::as_str) else {
        return Ok(failure(None, "invalid", "`id` (a string) is required"));
    };
    if !valid_id(id) {
        return Ok(failure(
            None,
            "invalid",
            "`id` must be 1-128 characters [A-Za-z0-9._-]",
        ));
    }
    let record = format!("{KV_COMMAND}{id}");
    if let Some(stored) = kv::get(&record)? {
        let mut answer: Value = serde_json::from_slice(&stored)
            .unwrap_or_else(|_| failure(Some(id), "other", "stored answer unreadable"));
        answer["duplicate"] = Value::Bool(true);
        return Ok(answer);
    }
    let Some(op) = command.get("op").and_then(Value::as_str) else {
        return Ok(failure(Some(id), "invalid", "`op` (a string) is required"));
    };
    let args = command.get("args").cloned().unwrap_or_else(|| json!({}));
    let answer = match run(op, &args) {
        Ok(result) => json!({ "id": id, "ok": true, "result": result }),
        // Transient: not recorded, so the same command may be sent again.
        Err(Error::Unavailable(m)) => return Ok(failure(Some(id), "unavailable", m)),
        Err(e) => {
            let (kind, message) = error_parts(&e);
            failure(Some(id), kind, message)
        }
    };
    kv::set(&record, answer.to_string().as_bytes())?;
    remember(id)?;
    Ok(answer)
}

/// Records the order of a stored answer and prunes the oldest beyond [`KEPT_ANSWERS`]
/// (the plugin's kv is bounded: see `plugins.limits.kv_max_entries`).
fn remember(id: &str) -> Result<(), Error> {
    let next = kv::get(KV_COMMAND_NEXT)?
        .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    kv::set(&format!("{KV_COMMAND_ORDER}{next:020}"), id.as_bytes())?;
    kv::set(KV_COMMAND_NEXT, (next + 1).to_string().as_bytes())?;
    let Some(oldest_kept) = (next + 1).checked_sub(KEPT_ANSWERS as u64) else {
        return Ok(());
    };
    // The order keys sort by number: the first ones listed are the oldest.
    for key in kv::list_keys(KV_COMMAND_ORDER, PRUNE_PER_COMMAND)? {
        let n = key[KV_COMMAND_ORDER.len()..].parse::<u64>().unwrap_or(0);
        if n >= oldest_kept {
            break;
        }
        if let Some(old) = kv::get(&key)? {
            kv::delete(&format!("{KV_COMMAND}{}", String::from_utf8_lossy(&old)))?;
        }
        kv::delete(&key)?;
    }
    Ok(())
}

fn key_id(args: &Value) -> Result<u64, Error> {
    args.get("key_id")
        .and_then(Value::as_u64)
        .ok_or_else(|| Error::invalid("`args.key_id` (a positive integer) is required"))
}

fn job_json(j: &Job) -> Value {
    json!({
        "id": j.id, "kind": j.kind, "target_kind": j.target_kind,
        "target_id": j.target_id, "state": j.state,
    })
}

fn key_json(k: &Key) -> Value {
    json!({
        "id": k.id, "name": k.name, "marking": k.marking,
        "status": k.status, "holder": k.holder,
    })
}

/// Runs one operation; the host refuses (`denied`) what the grant does not list.
fn run(op: &str, args: &Value) -> Result<Value, Error> {
    match op {
        "request-directory-sync" => {
            let plugin = args
                .get("plugin")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::invalid("`args.plugin` (a string) is required"))?;
            let full = args.get("full").and_then(Value::as_bool).unwrap_or(false);
            let job = gateway::request_directory_sync(plugin, full)?;
            Ok(json!({ "queue_job": job }))
        }
        "request-key-update" => {
            let jobs = gateway::request_key_update(key_id(args)?)?;
            Ok(
                json!({ "jobs": jobs.iter().take(MAX_ANSWER_ITEMS).map(job_json).collect::<Vec<_>>() }),
            )
        }
        "report-key-lost" => {
            gateway::report_key_lost(key_id(args)?)?;
            Ok(json!({}))
        }
        "pending-jobs" => {
            let jobs = gateway::pending_jobs(key_id(args)?)?;
            Ok(
                json!({ "jobs": jobs.iter().take(MAX_ANSWER_ITEMS).map(job_json).collect::<Vec<_>>() }),
            )
        }
        "read-keys" => {
            let holder = args
                .get("holder")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let keys = gateway::read_keys(holder.as_deref())?;
            Ok(json!({
                "keys": keys.iter().take(MAX_ANSWER_ITEMS).map(key_json).collect::<Vec<_>>(),
                "truncated": keys.len() > MAX_ANSWER_ITEMS,
            }))
        }
        "discovery" => {
            let s = Settings::load()?;
            let n = announce(&s)?;
            kv::set(KV_DISCOVERY, fingerprint(&s).as_bytes())?;
            Ok(json!({ "published": n }))
        }
        other => Err(Error::invalid(format!("unknown op `{other}`"))),
    }
}

lockgate_plugin_sdk::export_event_bridge!(Plugin);
