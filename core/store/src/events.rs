//! Events: writing one per touched object inside the change's transaction, and reading them back.

use chrono::Utc;
use lockgate_model::{ObjectKind, event::Event, person::PersonState};
use sqlx::{AnyConnection, Row};

use crate::{Result, Store, objects::Actor, parse_ts, ts};

/// An event about to be written.
#[derive(Debug, Clone)]
pub struct EventDraft {
    pub object_kind: String,
    pub object_id: Option<i64>,
    pub object_label: String,
    pub action: String,
    pub changes: serde_json::Value,
}

impl EventDraft {
    pub fn new(
        kind: ObjectKind,
        id: Option<i64>,
        label: &str,
        action: &str,
        changes: serde_json::Value,
    ) -> Self {
        Self {
            object_kind: kind.as_str().to_string(),
            object_id: id,
            object_label: label.to_string(),
            action: action.to_string(),
            changes,
        }
    }

    /// Write the event in the caller's transaction.
    pub async fn insert(
        &self,
        conn: &mut AnyConnection,
        system_id: i64,
        actor: &Actor,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO events (system_id, at, actor_id, actor, action, object_kind, object_id, object_label, changes, correlation_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(system_id)
        .bind(ts(Utc::now()))
        .bind(actor.c_key_id)
        .bind(&actor.label)
        .bind(&self.action)
        .bind(&self.object_kind)
        .bind(self.object_id)
        .bind(&self.object_label)
        .bind(self.changes.to_string())
        .bind(&actor.correlation_id)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// One entry of the employees' change feed: an event on an employee, with the employee's
/// identifier while the person exists.
#[derive(Debug, Clone, PartialEq)]
pub struct EmployeeChange {
    /// The event's id: the feed's position.
    pub event_id: i64,
    pub person_id: i64,
    /// The event's action (`created`, `updated`, `deactivated`, `marked_deleted`, ...).
    pub action: String,
    pub at: chrono::DateTime<Utc>,
    /// None once the person is deleted permanently.
    pub identifier: Option<String>,
}

/// A page of the employees' change feed.
#[derive(Debug, Clone, PartialEq)]
pub struct EmployeeChanges {
    pub changes: Vec<EmployeeChange>,
    /// The last event the page looked at (continue after it); `after` when there was none.
    pub last_event_id: i64,
    /// Whether more events follow right away.
    pub more: bool,
}

impl Store {
    /// The change feed of a system's employees: events on employees after event `after`,
    /// oldest first, at most `limit` looked at. Passed over (the page still moves past
    /// them): events on persons outside `scope`'s domains; without `sees_hidden`, events on
    /// persons deactivated or marked as deleted now; events on persons deleted permanently
    /// but their deletion, which is reported by id only and only to a client that sees
    /// every domain (the person's domain went with it).
    pub async fn employee_changes(
        &self,
        system_id: i64,
        after: i64,
        limit: i64,
        scope: &crate::Scope,
        sees_hidden: bool,
    ) -> Result<EmployeeChanges> {
        let rows = sqlx::query(
            "SELECT e.id, e.object_id, e.action, e.at, e.changes, o.marking, o.domain_id, o.status \
             FROM events e \
             LEFT JOIN objects o ON o.id = e.object_id AND o.system_id = e.system_id \
             WHERE e.system_id = $1 AND e.object_kind = 'employee' AND e.id > $2 \
             AND e.object_id IS NOT NULL ORDER BY e.id LIMIT $3",
        )
        .bind(system_id)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(self.pool())
        .await?;
        let more = rows.len() as i64 > limit;
        let mut out = EmployeeChanges {
            changes: Vec::new(),
            last_event_id: after,
            more,
        };
        for r in rows.iter().take(limit as usize) {
            let event_id: i64 = r.try_get("id")?;
            out.last_event_id = event_id;
            let domain: Option<i64> = r.try_get("domain_id")?;
            let identifier: Option<String> = r.try_get("marking")?;
            let status: Option<String> = r.try_get("status")?;
            let mut action: String = r.try_get("action")?;
            let exists = domain.is_some();
            let passed_over = if exists {
                !scope.allows_exactly(domain)
                    || (!sees_hidden
                        && status.as_deref().is_some_and(|s| {
                            s == PersonState::Deactivated.as_str()
                                || s == PersonState::Deleted.as_str()
                        }))
            } else {
                action != "deleted" || scope.domains.is_some()
            };
            if passed_over {
                continue;
            }
            // The import writes `imported` for both: a creation records no changes.
            if action == "imported" {
                let changes: String = r.try_get("changes")?;
                action = if changes.trim() == "{}" {
                    "created".into()
                } else {
                    "updated".into()
                };
            }
            out.changes.push(EmployeeChange {
                event_id,
                person_id: r.try_get("object_id")?,
                action,
                at: parse_ts(&r.try_get::<String, _>("at")?)?,
                identifier: identifier.filter(|_| exists),
            });
        }
        Ok(out)
    }

    /// Events recorded on one object, newest first.
    pub async fn events_for(
        &self,
        system_id: i64,
        kind: ObjectKind,
        object_id: i64,
        limit: i64,
        before_id: Option<i64>,
    ) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT id, at, actor_id, actor, action, object_kind, object_id, object_label, changes, correlation_id \
             FROM events WHERE system_id = $1 AND object_id = $2 AND id < $3 AND object_kind = $5 ORDER BY id DESC LIMIT $4",
        )
        .bind(system_id)
        .bind(object_id)
        .bind(before_id.unwrap_or(i64::MAX))
        .bind(limit)
        .bind(kind.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Event {
                    id: r.try_get("id")?,
                    at: parse_ts(&r.try_get::<String, _>("at")?)?,
                    actor_id: r.try_get("actor_id")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    object_kind: r.try_get("object_kind")?,
                    object_id: r.try_get("object_id")?,
                    object_label: r.try_get("object_label")?,
                    changes: serde_json::from_str(&r.try_get::<String, _>("changes")?)
                        .unwrap_or_default(),
                    correlation_id: r.try_get("correlation_id")?,
                })
            })
            .collect()
    }

    /// Delete up to `limit` (1–10 000) of a system's events recorded before `before`, oldest
    /// first; how many were deleted. Callers loop until fewer than `limit` come back.
    pub async fn purge_events_before(
        &self,
        system_id: i64,
        before: chrono::DateTime<Utc>,
        limit: i64,
    ) -> Result<u64> {
        let limit = limit.clamp(1, 10_000);
        let mut tx = self.write_tx().await?;
        let n = sqlx::query(
            "DELETE FROM events WHERE id IN (SELECT id FROM events \
             WHERE system_id = $1 AND at < $2 ORDER BY at, id LIMIT $3)",
        )
        .bind(system_id)
        .bind(ts(before))
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Make a person's events anonymous (permanent deletion): labels read N/A, changed values are dropped.
    pub(crate) async fn anonymise_events(
        conn: &mut AnyConnection,
        system_id: i64,
        object_id: i64,
    ) -> Result<()> {
        sqlx::query("UPDATE events SET object_label = 'N/A', changes = '{}' WHERE system_id = $1 AND object_id = $2")
            .bind(system_id)
            .bind(object_id)
            .execute(conn)
            .await?;
        Ok(())
    }
}
