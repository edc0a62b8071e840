//! Events: writing one per touched object inside the change's transaction, and reading them back.

use chrono::Utc;
use lockgate_model::{ObjectKind, event::Event};
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

impl Store {
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
