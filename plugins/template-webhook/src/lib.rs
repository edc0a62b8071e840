//! Template lockgate plugin: an event bridge that forwards the core's events
//! to a webhook, one HTTP `POST` with a JSON body per event. Copy this crate,
//! rename it in `Cargo.toml` and `plugin.toml`, and change [`body`] (what is
//! sent) and [`decide`] (what an answer means).
//!
//! The event relay calls `publish` for every new event, in id order per
//! object, at least once: a receiver de-duplicates by the body's `id` (also
//! sent as `x-lockgate-event-id`). The answer decides what happens next:
//!
//! - 2xx: delivered; the relay moves on.
//! - 400, 413, 415, 422: the receiver refuses this event as it is and would
//!   refuse it again, so it is logged and skipped (retrying would hold every
//!   later event).
//! - any other status (5xx, 429, but also 401, 403, 404: a wrong token or
//!   URL), no answer (connection refused, timeout) or a host refusal (the
//!   URL's host is not in `grants.http`, a private address without
//!   `allow_private`): an error; the relay keeps the event and retries with
//!   back-off, so nothing is lost while the receiver or the configuration is
//!   being fixed.
//!
//! Configuration (`[plugins.instances.template-webhook.config]`, read by
//! `lockgate_plugin_sdk::settings()`): `url` (required), `token` (sent as
//! `Authorization: Bearer`; write `token_env = "VAR"` to keep it in the
//! environment), `headers` (extra headers), `kinds` (event kinds to forward,
//! exact or a prefix ending in `.`; empty: all), `timeout_ms`.

use std::collections::BTreeMap;
use std::time::Duration;

use lockgate_plugin_sdk::http::Request;
use lockgate_plugin_sdk::{Error, Event, event_sink, log, plugin, settings};
use serde::Deserialize;
use serde_json::{Value, json};

/// Timeout of one request when the configuration sets none (the call's
/// deadline, `limits.deadline_ms`, caps it anyway).
const DEFAULT_TIMEOUT_MS: u64 = 5_000;

struct Plugin;

/// The configuration section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Where events are posted: `http(s)://host[:port]/path`; the host must
    /// be granted (`grants.http`).
    url: String,
    /// Bearer token (`token_env = "VAR"` in the gateway configuration).
    #[serde(default)]
    token: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Event kinds to forward (`key.lost`) or prefixes ending in `.` (`job.`); empty: all.
    #[serde(default)]
    kinds: Vec<String>,
    /// Timeout of one request, milliseconds.
    #[serde(default)]
    timeout_ms: Option<u64>,
}

impl plugin::Guest for Plugin {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "template-webhook".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Template event bridge: forwards core events to a webhook as JSON.".into(),
        }
    }
}

impl event_sink::Guest for Plugin {
    fn publish(event: Event) -> Result<(), Error> {
        let s: Settings = settings()?;
        if !wanted(&s.kinds, &event.kind) {
            return Ok(());
        }
        let body = body(&event);
        let mut request = Request::post(&s.url)
            .timeout(Duration::from_millis(
                s.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            ))
            .json(&body)?;
        if let Some(id) = body["id"].as_i64() {
            request = request.header("x-lockgate-event-id", id.to_string());
        }
        if let Some(token) = &s.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in &s.headers {
            request = request.header(name, value);
        }
        let response = request.send()?;
        match decide(response.status) {
            Decision::Delivered => Ok(()),
            Decision::Skip => {
                log::error(&format!(
                    "webhook refused event {} ({}) with status {}; skipped",
                    body["id"], event.kind, response.status
                ));
                Ok(())
            }
            Decision::Retry => response.error_for_status().map(|_| ()),
        }
    }

    fn handle_command(_command: event_sink::Command) -> Result<String, Error> {
        Err(Error::invalid("this bridge takes no commands"))
    }
}

/// Whether an event of `kind` is forwarded: every kind when `kinds` is
/// empty, else an exact kind or a prefix ending in `.`.
fn wanted(kinds: &[String], kind: &str) -> bool {
    kinds.is_empty()
        || kinds
            .iter()
            .any(|k| k == kind || (k.ends_with('.') && kind.starts_with(k.as_str())))
}

/// The JSON body for one event: its id (from the relay's payload), kind,
/// object, time (ms since the epoch) and the details.
fn body(event: &Event) -> Value {
    let payload: Value = serde_json::from_str(&event.payload)
        .unwrap_or_else(|_| Value::String(event.payload.clone()));
    json!({
        "id": payload.get("id").cloned().unwrap_or(Value::Null),
        "kind": event.kind,
        "object_kind": event.object_kind,
        "object_id": event.object_id,
        "at": event.at,
        "payload": payload,
    })
}

/// What the receiver's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Accepted.
    Delivered,
    /// Refused for good: log and go on.
    Skip,
    /// Try again later.
    Retry,
}

fn decide(status: u16) -> Decision {
    match status {
        200..=299 => Decision::Delivered,
        400 | 413 | 415 | 422 => Decision::Skip,
        _ => Decision::Retry,
    }
}

lockgate_plugin_sdk::export_event_bridge!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_filter_exactly_or_by_prefix() {
        let kinds = vec!["key.".to_owned(), "job.failed".to_owned()];
        assert!(wanted(&[], "anything"));
        assert!(wanted(&kinds, "key.lost"));
        assert!(wanted(&kinds, "job.failed"));
        assert!(!wanted(&kinds, "job.finished"));
        assert!(!wanted(&kinds, "keyring.x"));
    }

    #[test]
    fn the_body_carries_the_event() {
        let event = Event {
            kind: "key.handed_out".into(),
            object_kind: "key".into(),
            object_id: Some(7),
            at: 1_700_000_000_000,
            payload: r#"{"id":42,"label":"K-7"}"#.into(),
        };
        let b = body(&event);
        assert_eq!(b["id"], 42);
        assert_eq!(b["kind"], "key.handed_out");
        assert_eq!(b["object_id"], 7);
        assert_eq!(b["payload"]["label"], "K-7");
        let odd = body(&Event {
            payload: "not json".into(),
            object_id: None,
            ..event
        });
        assert_eq!(odd["id"], Value::Null);
        assert_eq!(odd["payload"], "not json");
        assert_eq!(odd["object_id"], Value::Null);
    }

    #[test]
    fn answers_decide_delivery() {
        assert_eq!(decide(200), Decision::Delivered);
        assert_eq!(decide(204), Decision::Delivered);
        for s in [301, 401, 403, 404, 408, 429, 500, 503] {
            assert_eq!(decide(s), Decision::Retry, "{s}");
        }
        for s in [400, 413, 415, 422] {
            assert_eq!(decide(s), Decision::Skip, "{s}");
        }
    }
}
