//! The event relay and the MQTT command listener of event-bridge plugins.
//!
//! **Relay** ([`spawn`]): the `events` table is the transactional outbox (the
//! core writes one row per change in the change's transaction). One task per
//! bridge plugin reads the rows after its cursor in id order, hands each to
//! the plugin (`event-sink.publish`, which for `event-bridge` returns only
//! after the broker acknowledged at QoS 1) and advances a durable cursor
//! (`plugin_kv`, plugin `@event-relay`, key `cursor/<bridge>`) only past
//! events the plugin accepted. A failure holds the cursor and retries with
//! back-off, one event at a time until one is accepted (after a plugin fault
//! the host's back-off decides when, and the retry is its one trial call),
//! so nothing is skipped; a restart redelivers what was delivered
//! but not yet recorded: delivery is **at least once** (subscribers
//! de-duplicate by the event `id`).
//!
//! Order and gaps: events are delivered in id order per object (events of
//! different objects run concurrently, at most `concurrency` at a time; all
//! job events share one lane so the pending-jobs count stays right).
//! PostgreSQL allocates ids before commit, so a later id can become visible
//! before an earlier one: the relay never passes a missing id until it has
//! been missing for `gap_grace` (then it is taken as a rolled-back
//! transaction or a purged row). Set the grace above the longest write
//! transaction.
//!
//! **Commands** ([`spawn_commands`]): one MQTT connection subscribed with
//! QoS 1 to `<prefix>#` for every command prefix the bridges' grants name.
//! A message goes only to the bridges whose grant covers its topic (deny by
//! default), and only when it is signed with that bridge's secret, fresh and
//! not replayed (`lockgate_host::command_auth`; refusals are answered with
//! the reason and never reach the plugin), through
//! `event-sink.handle-command`; the answer is published on `<topic>/reply`
//! and the message is acknowledged after that, so a command cut off by a
//! gateway kill is delivered again (the plugin de-duplicates by command id).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use lockgate_host::command_auth::CommandAuth;
use lockgate_host::mqtt::{CommandSubscriber, InboundMessage};
use lockgate_host::types::{Command, Event, PluginError};
use lockgate_host::{HostError, MqttConfig, PluginHost};
use lockgate_store::Store;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// The `plugin_kv` namespace of the relay's cursors (not a valid plugin name).
pub const CURSOR_NAMESPACE: &str = "@event-relay";
/// Largest command payload handed to a plugin, bytes.
pub const MAX_COMMAND_BYTES: usize = 64 << 10;
/// Event details above this size are replaced by `{"truncated": true}` (MQTT payload limit).
pub const MAX_DETAILS_BYTES: usize = 192 << 10;

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The event-bridge plugins to feed (each has its own cursor).
    pub bridges: Vec<String>,
    /// Pause when there is nothing new.
    pub poll_interval: Duration,
    /// How long a missing id holds the cursor before it is passed.
    pub gap_grace: Duration,
    /// Rows read per query (1..=10 000).
    pub batch: i64,
    /// Events of different objects handed to a plugin at the same time (1..=256).
    pub concurrency: usize,
    /// A bridge without a cursor starts after the newest event (true) or
    /// with the oldest one still in the table (false).
    pub start_at_end: bool,
    /// Longest pause between retries of a failing delivery.
    pub max_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            bridges: vec!["event-bridge".into()],
            poll_interval: Duration::from_millis(200),
            gap_grace: Duration::from_secs(5),
            batch: 500,
            concurrency: 32,
            start_at_end: true,
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Starts one relay task per bridge; the handle runs them all (aborting it
/// stops them, like a gateway kill: the cursors stay where they were).
pub fn spawn(store: Store, host: PluginHost, cfg: RelayConfig) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut set = JoinSet::new();
        for bridge in cfg.bridges.clone() {
            set.spawn(relay(store.clone(), host.clone(), cfg.clone(), bridge));
        }
        while set.join_next().await.is_some() {}
    })
}

/// The cursor of `bridge`: the last event id it accepted (none: not started yet).
pub async fn cursor(
    store: &Store,
    bridge: &str,
) -> Result<Option<i64>, lockgate_store::StoreError> {
    let raw = store
        .plugin_kv_get(CURSOR_NAMESPACE, &format!("cursor/{bridge}"))
        .await?;
    Ok(raw.and_then(|v| String::from_utf8(v).ok()?.parse().ok()))
}

async fn save_cursor(
    store: &Store,
    bridge: &str,
    id: i64,
) -> Result<(), lockgate_store::StoreError> {
    store
        .plugin_kv_set(
            CURSOR_NAMESPACE,
            &format!("cursor/{bridge}"),
            id.to_string().as_bytes(),
        )
        .await
}

/// One row of `events` as the bridge sees it.
#[derive(Debug, Clone)]
struct Row0 {
    id: i64,
    lane: String,
    event: Event,
}

async fn max_id(store: &Store) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT MAX(id) AS m FROM events")
        .fetch_one(store.pool())
        .await?;
    Ok(row.try_get::<Option<i64>, _>("m")?.unwrap_or(0))
}

async fn fetch(store: &Store, after: i64, limit: i64) -> Result<Vec<Row0>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, system_id, at, actor, action, object_kind, object_id, object_label, changes, correlation_id \
         FROM events WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(to_event).collect()
}

fn to_event(r: &sqlx::any::AnyRow) -> Result<Row0, sqlx::Error> {
    let id: i64 = r.try_get("id")?;
    let object_kind: String = r.try_get("object_kind")?;
    let object_id: Option<i64> = r.try_get("object_id")?;
    let action: String = r.try_get("action")?;
    let at: String = r.try_get("at")?;
    let at = chrono::DateTime::parse_from_rfc3339(&at)
        .map(|d| d.timestamp_millis())
        .unwrap_or(0);
    let changes: String = r.try_get("changes")?;
    let changes = if changes.len() > MAX_DETAILS_BYTES {
        json!({ "truncated": true })
    } else {
        serde_json::from_str(&changes).unwrap_or(Value::String(changes))
    };
    let payload = json!({
        "id": id,
        "system_id": r.try_get::<i64, _>("system_id")?,
        "actor": r.try_get::<String, _>("actor")?,
        "label": r.try_get::<String, _>("object_label")?,
        "changes": changes,
        "correlation_id": r.try_get::<String, _>("correlation_id")?,
    });
    // Job events share one lane (the pending count); others are ordered per object.
    let lane = match (object_kind.as_str(), object_id) {
        ("job", _) => "job".to_owned(),
        (k, Some(o)) => format!("{k}/{o}"),
        (k, None) => k.to_owned(),
    };
    Ok(Row0 {
        id,
        lane,
        event: Event {
            kind: format!("{object_kind}.{action}"),
            object_kind,
            object_id: object_id.and_then(|i| u64::try_from(i).ok()),
            at,
            payload: payload.to_string(),
        },
    })
}

/// Tracks a missing id at the head of the unread events.
#[derive(Debug, Default)]
struct Gap {
    /// The missing id and when it was first seen missing.
    seen: Option<(i64, Instant)>,
}

impl Gap {
    /// The contiguous prefix of `rows` after `cursor` (a head gap older than
    /// `grace` is passed).
    fn accept(&mut self, cursor: i64, rows: Vec<Row0>, grace: Duration) -> Vec<Row0> {
        let mut expected = cursor + 1;
        let mut out = Vec::new();
        for row in rows {
            if row.id != expected {
                if !out.is_empty() {
                    break;
                }
                match self.seen {
                    Some((missing, since)) if missing == expected && since.elapsed() >= grace => {
                        tracing::info!(
                            missing_from = expected,
                            missing_to = row.id - 1,
                            "event relay: passing ids missing for longer than the grace"
                        );
                    }
                    Some((missing, _)) if missing == expected => break,
                    _ => {
                        self.seen = Some((expected, Instant::now()));
                        break;
                    }
                }
            }
            expected = row.id + 1;
            out.push(row);
        }
        if !out.is_empty() {
            self.seen = None;
        }
        out
    }
}

/// How one delivery went.
#[derive(Debug, Default, PartialEq, Eq)]
struct Delivered {
    /// How many events (a prefix of the rows) the bridge accepted.
    accepted: usize,
    /// The bridge is backing off after a fault: when its next (trial) call is allowed.
    retry_in: Option<Duration>,
}

/// Hands `rows` to `bridge` in waves of distinct lanes (at most `concurrency` events each)
/// and stops at the first wave with a refusal. Logs at most one line per wave: a bridge
/// that is backing off is not logged here at all (the host logged its fault once).
async fn deliver(host: &PluginHost, bridge: &str, rows: &[Row0], concurrency: usize) -> Delivered {
    let mut out = Delivered::default();
    while out.accepted < rows.len() {
        let mut lanes = HashSet::new();
        let mut wave = Vec::new();
        for row in &rows[out.accepted..] {
            if wave.len() >= concurrency || !lanes.insert(row.lane.as_str()) {
                break;
            }
            wave.push(row);
        }
        let mut set = JoinSet::new();
        for (i, row) in wave.iter().enumerate() {
            let host = host.clone();
            let bridge = bridge.to_owned();
            let event = row.event.clone();
            set.spawn(async move { (i, host.publish(&bridge, event).await) });
        }
        let mut ok = vec![false; wave.len()];
        let mut failed = 0usize;
        let mut first_failure: Option<(i64, String)> = None;
        while let Some(joined) = set.join_next().await {
            let Ok((i, result)) = joined else { continue };
            let error = match result {
                Ok(Ok(())) => {
                    ok[i] = true;
                    continue;
                }
                Err(HostError::BackingOff { retry_in_ms, .. }) => {
                    let retry = Duration::from_millis(retry_in_ms);
                    out.retry_in = Some(out.retry_in.map_or(retry, |r| r.max(retry)));
                    continue;
                }
                Ok(Err(e)) => format!("the bridge refused the event: {e}"),
                Err(e) => format!("the bridge cannot be called: {e}"),
            };
            failed += 1;
            if first_failure
                .as_ref()
                .is_none_or(|(id, _)| wave[i].id < *id)
            {
                first_failure = Some((wave[i].id, error));
            }
        }
        if let Some((event_id, error)) = first_failure {
            tracing::warn!(bridge, event_id, failed, "event relay: {error}; retrying");
        } else if out.retry_in.is_some() {
            tracing::debug!(bridge, "event relay: the bridge is backing off; waiting");
        }
        let accepted = ok.iter().take_while(|o| **o).count();
        out.accepted += accepted;
        if accepted < wave.len() {
            break;
        }
    }
    out
}

async fn relay(store: Store, host: PluginHost, cfg: RelayConfig, bridge: String) {
    let batch = cfg.batch.clamp(1, 10_000);
    let concurrency = cfg.concurrency.clamp(1, 256);
    let mut backoff = cfg.poll_interval;
    // The starting cursor (retried until the database answers).
    let mut cursor = loop {
        let loaded = match cursor(&store, &bridge).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => {
                let start = if cfg.start_at_end {
                    max_id(&store).await.map_err(|e| e.to_string())
                } else {
                    Ok(0)
                };
                match start {
                    Ok(c) => save_cursor(&store, &bridge, c)
                        .await
                        .map(|()| c)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        match loaded {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(%bridge, error = %e, "event relay: cannot read the cursor; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cfg.max_backoff);
            }
        }
    };
    tracing::info!(%bridge, cursor, "event relay started");
    let mut gap = Gap::default();
    // After a refusal the next delivery is a single event (a trial), not a wave.
    let mut trial = false;
    loop {
        let rows = match fetch(&store, cursor, batch).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(%bridge, error = %e, "event relay: cannot read events; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cfg.max_backoff);
                continue;
            }
        };
        let full = rows.len() as i64 >= batch;
        let rows = gap.accept(cursor, rows, cfg.gap_grace);
        if rows.is_empty() {
            tokio::time::sleep(cfg.poll_interval).await;
            continue;
        }
        let wave = if trial { 1 } else { concurrency };
        let Delivered { accepted, retry_in } = deliver(&host, &bridge, &rows, wave).await;
        if accepted > 0 {
            let last = rows[accepted - 1].id;
            match save_cursor(&store, &bridge, last).await {
                Ok(()) => cursor = last,
                Err(e) => {
                    // Redelivered after the retry: at least once.
                    tracing::warn!(%bridge, error = %e, "event relay: cannot save the cursor");
                }
            }
        }
        if accepted < rows.len() {
            trial = true;
            if let Some(retry_in) = retry_in {
                // The host lets one trial call through when its back-off ends.
                tokio::time::sleep(retry_in.min(cfg.max_backoff)).await;
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cfg.max_backoff);
            }
        } else {
            trial = false;
            backoff = cfg.poll_interval;
            if !full {
                tokio::time::sleep(cfg.poll_interval).await;
            }
        }
    }
}

/// The command topic filters of `bridges`' grants (`<prefix>#`), deduplicated.
pub fn command_filters(host: &PluginHost, bridges: &[String]) -> Vec<String> {
    let mut filters: Vec<String> = bridges
        .iter()
        .filter_map(|b| host.status_of(b).ok())
        .flat_map(|s| s.granted.mqtt.commands)
        .map(|p| format!("{p}#"))
        .collect();
    filters.sort();
    filters.dedup();
    filters
}

/// Starts the command listener for `bridges` on the broker of `mqtt` (a
/// second connection, client id `<client_id>-commands`). `Ok(None)` when no
/// bridge is granted a command prefix; an error when a bridge that is has
/// no command secret (`[plugins.mqtt.command_secrets.<bridge>]`).
pub fn spawn_commands(
    host: PluginHost,
    mqtt: &MqttConfig,
    bridges: Vec<String>,
) -> Result<Option<JoinHandle<()>>, HostError> {
    let filters = command_filters(&host, &bridges);
    if filters.is_empty() {
        return Ok(None);
    }
    let mut auth = HashMap::new();
    for bridge in &bridges {
        if host
            .status_of(bridge)
            .is_ok_and(|s| !s.granted.mqtt.commands.is_empty())
        {
            auth.insert(bridge.clone(), mqtt.command_auth(bridge)?);
        }
    }
    tracing::info!(?filters, "mqtt command listener subscribing");
    let (subscriber, mut messages) = CommandSubscriber::start(mqtt, "-commands", filters)?;
    Ok(Some(tokio::spawn(async move {
        while let Some(message) = messages.recv().await {
            handle_message(&host, &subscriber, &bridges, &auth, &message).await;
            subscriber.ack(&message).await;
        }
    })))
}

/// The command id, when the payload is a JSON object with a string `id`.
fn command_id(payload: &[u8]) -> Value {
    serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .filter(Value::is_string)
        .unwrap_or(Value::Null)
}

fn failure(id: Value, kind: &str, message: &str) -> String {
    json!({ "id": id, "ok": false, "error": { "kind": kind, "message": message } }).to_string()
}

/// The answer to a command refused before it reached the plugin.
fn refusal(nonce: Option<&str>, reason: &str, message: &str) -> String {
    json!({
        "id": Value::Null,
        "ok": false,
        "nonce": nonce,
        "error": { "kind": "unauthenticated", "reason": reason, "message": message },
    })
    .to_string()
}

/// The envelope's nonce when it is well-formed (echoed in a refusal).
fn envelope_nonce(payload: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(payload)
        .ok()?
        .get("nonce")?
        .as_str()
        .filter(|n| {
            (16..=64).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .map(str::to_owned)
}

async fn handle_message(
    host: &PluginHost,
    subscriber: &CommandSubscriber,
    bridges: &[String],
    auth: &HashMap<String, CommandAuth>,
    message: &InboundMessage,
) {
    // Current grants (a reconfiguration can revoke a prefix).
    let targets: Vec<&String> = bridges
        .iter()
        .filter(|b| {
            host.status_of(b)
                .is_ok_and(|s| s.granted.mqtt.takes_command(&message.topic))
        })
        .collect();
    if targets.is_empty() {
        tracing::debug!(topic = %message.topic, "mqtt: no bridge takes commands on this topic");
        return;
    }
    let reply_topic = format!("{}/reply", message.topic);
    for bridge in targets {
        // Deny by default: a bridge granted commands only after the start has no secret here.
        let verified = match auth.get(bridge.as_str()) {
            Some(a) => a
                .verify(
                    &message.topic,
                    &message.payload,
                    lockgate_host::command_auth::unix_now(),
                )
                .map_err(|r| (r.reason(), r.message(a.window_secs()))),
            None => Err((
                "no-secret",
                "this bridge has no command secret; restart the gateway with one".to_owned(),
            )),
        };
        let body = match verified {
            Ok(v) => v.body,
            Err((reason, text)) => {
                tracing::warn!(%bridge, topic = %message.topic, reason, "mqtt: command refused");
                let answer = refusal(envelope_nonce(&message.payload).as_deref(), reason, &text);
                if let Err(e) = subscriber.reply(&reply_topic, answer.into_bytes()).await {
                    tracing::warn!(%bridge, topic = %reply_topic, error = %e, "mqtt: cannot publish a command answer");
                }
                continue;
            }
        };
        let answer = if body.len() > MAX_COMMAND_BYTES {
            failure(
                Value::Null,
                "invalid",
                &format!("a command is at most {MAX_COMMAND_BYTES} bytes"),
            )
        } else {
            let command = Command {
                topic: message.topic.clone(),
                payload: body.clone(),
            };
            match host.handle_command(bridge, command).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    let (kind, text) = plugin_error(&e);
                    failure(command_id(&body), kind, &text)
                }
                Err(e) => failure(
                    command_id(&body),
                    "unavailable",
                    &format!("the bridge {bridge} cannot be called: {e}"),
                ),
            }
        };
        if let Err(e) = subscriber.reply(&reply_topic, answer.into_bytes()).await {
            tracing::warn!(%bridge, topic = %reply_topic, error = %e, "mqtt: cannot publish a command answer");
        }
    }
}

fn plugin_error(e: &PluginError) -> (&'static str, String) {
    match e {
        PluginError::Invalid(m) => ("invalid", m.clone()),
        PluginError::NotFound(m) => ("not-found", m.clone()),
        PluginError::Denied(m) => ("denied", m.clone()),
        PluginError::Unavailable(m) => ("unavailable", m.clone()),
        PluginError::Other(m) => ("other", m.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64) -> Row0 {
        Row0 {
            id,
            lane: format!("key/{id}"),
            event: Event {
                kind: "key.lost".into(),
                object_kind: "key".into(),
                object_id: Some(1),
                at: 0,
                payload: "{}".into(),
            },
        }
    }

    #[test]
    fn gaps_hold_the_cursor_until_the_grace_passes() {
        let mut gap = Gap::default();
        let ids = |v: Vec<Row0>| v.iter().map(|r| r.id).collect::<Vec<_>>();
        // Contiguous prefix only.
        assert_eq!(
            ids(gap.accept(0, vec![row(1), row(2), row(4)], Duration::from_secs(60))),
            [1, 2]
        );
        // A head gap waits...
        assert!(
            gap.accept(2, vec![row(4)], Duration::from_secs(60))
                .is_empty()
        );
        assert!(
            gap.accept(2, vec![row(4)], Duration::from_secs(60))
                .is_empty()
        );
        // ...and is passed once older than the grace.
        assert_eq!(
            ids(gap.accept(2, vec![row(4), row(5)], Duration::ZERO)),
            [4, 5]
        );
        assert!(gap.seen.is_none());
    }
}
