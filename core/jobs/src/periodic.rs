//! Periodic tasks: every replica runs the scheduler; each inserts the job of the current slot
//! (`slot = floor(now / interval)`) with `ON CONFLICT DO NOTHING` against
//! `UNIQUE (periodic_task, slot)`, so a slot gets exactly one job however many replicas run.
//! Missed slots (all replicas down) are not back-filled: the next run is the current slot.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::queue::{InsertRow, Queue, check_name, insert, payload_text};
use crate::{JobsError, Result};

/// Most periodic tasks one scheduler run handles.
pub const MAX_PERIODIC: usize = 256;

/// A periodic task definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Periodic {
    /// Unique name of the task (the slot key); several tasks may share a kind.
    pub name: String,
    /// Handler kind of the jobs it creates.
    pub kind: String,
    /// Slot length (at least 1 ms).
    pub interval: Duration,
    pub payload: Value,
    /// Attempts of each slot's job (default: the queue's retry policy).
    pub max_attempts: Option<u32>,
}

impl Periodic {
    pub fn new(name: impl Into<String>, kind: impl Into<String>, interval: Duration) -> Self {
        Periodic {
            name: name.into(),
            kind: kind.into(),
            interval,
            payload: Value::Null,
            max_attempts: None,
        }
    }

    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }

    fn interval_ms(&self) -> Result<i64> {
        match i64::try_from(self.interval.as_millis()) {
            Ok(ms) if ms > 0 => Ok(ms),
            _ => Err(JobsError::Invalid(format!(
                "periodic task '{}': interval must be 1 ms..",
                self.name
            ))),
        }
    }

    /// The slot `now` falls in, and when that slot starts.
    pub fn slot_at(&self, now: DateTime<Utc>) -> Result<(i64, DateTime<Utc>)> {
        let ms = self.interval_ms()?;
        let slot = now.timestamp_millis().div_euclid(ms);
        let start =
            DateTime::<Utc>::from_timestamp_millis(slot.saturating_mul(ms)).ok_or_else(|| {
                JobsError::Invalid(format!("periodic task '{}': slot out of range", self.name))
            })?;
        Ok((slot, start))
    }
}

impl Queue {
    /// Create the current slot's job of every task that has none yet (one write transaction);
    /// how many jobs this call created. Safe to run on every replica at any frequency.
    pub async fn schedule_periodic(&self, tasks: &[Periodic], now: DateTime<Utc>) -> Result<usize> {
        if tasks.len() > MAX_PERIODIC {
            return Err(JobsError::Invalid(format!(
                "at most {MAX_PERIODIC} periodic tasks"
            )));
        }
        let mut rows = Vec::with_capacity(tasks.len());
        for t in tasks {
            check_name("periodic task name", &t.name)?;
            check_name("kind", &t.kind)?;
            let (slot, start) = t.slot_at(now)?;
            rows.push(InsertRow {
                kind: &t.kind,
                payload: payload_text(&t.payload)?,
                max_attempts: t
                    .max_attempts
                    .unwrap_or(self.config().retry.max_attempts)
                    .clamp(1, crate::retry::MAX_ATTEMPTS_LIMIT),
                run_at: start,
                unique_key: None,
                periodic: Some((&t.name, slot)),
                now,
            });
        }
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.store().write_tx().await?;
        let mut created = 0;
        for row in rows {
            if insert(&mut tx, row).await?.is_some() {
                created += 1;
            }
        }
        tx.commit().await?;
        if created > 0 {
            self.wake().notify_waiters();
        }
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_floor_of_now_over_interval() {
        let t = Periodic::new("sync", "ldap_sync", Duration::from_secs(60));
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("ts")
                .with_timezone(&Utc)
        };
        let (a, start) = t.slot_at(at("2030-01-01T00:00:59.999Z")).expect("slot");
        let (b, _) = t.slot_at(at("2030-01-01T00:01:00Z")).expect("slot");
        assert_eq!(b, a + 1);
        assert_eq!(start, at("2030-01-01T00:00:00Z"));
        let zero = Periodic::new("x", "x", Duration::from_micros(10));
        assert!(zero.slot_at(Utc::now()).is_err());
    }
}
