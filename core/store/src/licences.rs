//! The licence installed per locking system (`DOMAIN.md` §11): the signed file as installed,
//! its number, and the install rule (only a strictly higher number replaces it).
//!
//! The store keeps the file text exactly as installed and never trusts it: readers verify it
//! against the trusted keys of their configuration each time (`lockgate_engine::licence`).
//! The `number` column is what the install rule compares; it is checked inside the writing
//! statement itself (a conditional upsert), so two concurrent installs cannot both win and
//! the rule survives restarts.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{Result, Store, StoreError, events::EventDraft, objects::Actor, parse_ts, ts};

/// The licence row of one system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledLicence {
    pub system_id: i64,
    /// Licence number of the installed file.
    pub number: i64,
    /// The signed licence file exactly as installed.
    pub file: String,
    pub installed_at: DateTime<Utc>,
}

fn decode(r: &sqlx::any::AnyRow) -> Result<InstalledLicence> {
    Ok(InstalledLicence {
        system_id: r.try_get("system_id")?,
        number: r.try_get("number")?,
        file: r.try_get("file")?,
        installed_at: parse_ts(&r.try_get::<String, _>("installed_at")?)?,
    })
}

/// The conflict returned when `new` does not exceed the installed number `current`.
fn not_newer(current: i64, new: i64) -> StoreError {
    StoreError::Conflict {
        field: "number".into(),
        message: format!(
            "licence number {new} cannot replace installed licence number {current}: only a higher number installs"
        ),
    }
}

/// 32 bytes from the operating system's random source (e.g. the seed of a licence signing key).
pub fn random_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| StoreError::Refused {
        message: format!("no randomness from the operating system: {e}"),
    })?;
    Ok(seed)
}

impl Store {
    /// The latest wall-clock time the gateway has recorded for a system: licence expiry is
    /// judged against it, so a clock set back does not revive an expired licence.
    pub async fn clock_high_water(&self, system_id: i64) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query("SELECT clock_high_water FROM locking_systems WHERE id = $1")
            .bind(system_id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => r
                .try_get::<Option<String>, _>("clock_high_water")?
                .as_deref()
                .map(parse_ts)
                .transpose(),
            None => Ok(None),
        }
    }

    /// Record the wall clock `now` as seen for a system (at most one write a minute; never
    /// moves the mark back). Returns the mark: `now`, or a later time seen before.
    pub async fn record_clock(&self, system_id: i64, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let seen = self.clock_high_water(system_id).await?;
        match seen {
            Some(s) if s >= now => return Ok(s),
            Some(s) if now - s < chrono::Duration::minutes(1) => return Ok(now),
            _ => {}
        }
        // Conditional, so concurrent writers never move it back.
        sqlx::query(
            "UPDATE locking_systems SET clock_high_water = $1 WHERE id = $2 AND (clock_high_water IS NULL OR clock_high_water < $1)",
        )
        .bind(ts(now))
        .bind(system_id)
        .execute(self.pool())
        .await?;
        Ok(now)
    }

    /// The signed licence file installed for a system, if any.
    pub async fn installed_licence(&self, system_id: i64) -> Result<Option<String>> {
        Ok(self
            .installed_licence_record(system_id)
            .await?
            .map(|l| l.file))
    }

    /// The licence row of a system (file, number, installation time), if any.
    pub async fn installed_licence_record(
        &self,
        system_id: i64,
    ) -> Result<Option<InstalledLicence>> {
        sqlx::query(
            "SELECT system_id, number, file, installed_at FROM licences WHERE system_id = $1",
        )
        .bind(system_id)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(decode)
        .transpose()
    }

    /// Store `file` (already verified by the caller) as the licence of a system, in one
    /// transaction that refuses a `number` not strictly higher than the installed one with
    /// [`StoreError::Conflict`] on field `number`. The comparison is part of the writing
    /// statement, so it holds under concurrent installs. Records a `licence_installed` event.
    pub async fn install_licence(
        &self,
        system_id: i64,
        file: &str,
        number: i64,
        actor: &Actor,
    ) -> Result<InstalledLicence> {
        if number < 0 {
            return Err(
                lockgate_model::ValidationErrors::single("number", "must not be negative").into(),
            );
        }
        let mut tx = self.write_tx().await?;
        let exists = sqlx::query("SELECT id FROM locking_systems WHERE id = $1")
            .bind(system_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound {
                kind: "locking_system",
                id: system_id,
            });
        }
        let before: Option<i64> = sqlx::query("SELECT number FROM licences WHERE system_id = $1")
            .bind(system_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("number"))
            .transpose()?;
        if let Some(current) = before
            && number <= current
        {
            return Err(not_newer(current, number));
        }
        let installed_at = Utc::now();
        let res = sqlx::query(
            "INSERT INTO licences (system_id, number, file, installed_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (system_id) DO UPDATE SET number = excluded.number, file = excluded.file, installed_at = excluded.installed_at \
             WHERE licences.number < excluded.number",
        )
        .bind(system_id)
        .bind(number)
        .bind(file)
        .bind(ts(installed_at))
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() != 1 {
            // Another install won meanwhile (PostgreSQL, read committed): report its number.
            let current: i64 = sqlx::query("SELECT number FROM licences WHERE system_id = $1")
                .bind(system_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("number")?;
            return Err(not_newer(current, number));
        }
        EventDraft {
            object_kind: "licence".into(),
            object_id: None,
            object_label: format!("licence {number}"),
            action: "licence_installed".into(),
            changes: serde_json::json!({ "number": { "from": before, "to": number } }),
        }
        .insert(&mut tx, system_id, actor)
        .await?;
        tx.commit().await?;
        Ok(InstalledLicence {
            system_id,
            number,
            file: file.to_owned(),
            installed_at,
        })
    }
}
