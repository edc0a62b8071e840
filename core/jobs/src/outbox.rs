//! The transactional outbox: outbound side effects (email, MQTT, …) are inserted in the
//! caller's transaction, the same one as the change that causes them, so a message exists
//! exactly when that change commits. A [`Dispatcher`] claims undelivered messages with a lease
//! and a fencing token (as the queue does), hands each to a [`Deliver`] implementation and
//! marks it delivered: at least once, always under the same stable `message_id`, which
//! receivers use to drop duplicates.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lockgate_store::{Backend, Store};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use tokio::sync::watch;

use crate::lease::{Arg, Claim, Fence, LeaseTable, fail_outcome};
use crate::queue::{FailOutcome, MAX_BATCH, MIN_LEASE};
use crate::retry::RetryPolicy;
use crate::sql::{after, clip, get_json, get_opt_ts, get_ts, get_u32, render, ts};
use crate::{JobsError, Result};

/// A new stable message id in UUID (version 4) form.
pub fn new_message_id() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b)
        .map_err(|e| JobsError::Failed(format!("no randomness for a message id: {e}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// Insert a message in the caller's transaction; its new stable message id.
pub async fn insert(
    tx: &mut Transaction<'static, Any>,
    topic: &str,
    payload: &Value,
) -> Result<String> {
    let id = new_message_id()?;
    insert_with_id(tx, &id, topic, payload).await?;
    Ok(id)
}

/// Insert a message under a message id the caller chose (e.g. derived from the event it
/// reports); `false` when a message with that id already exists (nothing inserted). The
/// writer is the store's ([`lockgate_store::outbox::insert_outbox`]), so store operations
/// write the outbox in their own transactions too.
pub async fn insert_with_id(
    tx: &mut Transaction<'static, Any>,
    message_id: &str,
    topic: &str,
    payload: &Value,
) -> Result<bool> {
    Ok(lockgate_store::outbox::insert_outbox(tx, message_id, topic, payload).await?)
}

/// A claimed message, as the deliverer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub id: i64,
    /// Stable across attempts and dispatchers: the receiver's deduplication key.
    pub message_id: String,
    pub topic: String,
    pub payload: Value,
    /// This attempt, from 1.
    pub attempt: u32,
    pub fencing: i64,
    pub lease_expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A message as stored (dead letters, diagnostics).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub id: i64,
    pub message_id: String,
    pub topic: String,
    pub payload: Value,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub dead_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// Hands a message to the outside world (mail server, MQTT broker, …).
#[async_trait]
pub trait Deliver: Send + Sync {
    /// Deliver once. Must tolerate a repeat of the same `message_id` (at least once).
    /// [`JobsError::Permanent`] sends the message to the dead letters at once.
    async fn deliver(&self, message: &OutboxMessage) -> Result<()>;
}

/// Settings of a [`Dispatcher`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchConfig {
    pub lease: Duration,
    pub retry: RetryPolicy,
    /// Messages claimed at once (≤ 500).
    pub batch: u32,
    /// Idle wait between polls.
    pub poll_interval: Duration,
    /// One delivery may take this long (less than `lease`); longer is a failed attempt.
    pub deliver_timeout: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            lease: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            batch: 32,
            poll_interval: Duration::from_secs(1),
            deliver_timeout: Duration::from_secs(20),
        }
    }
}

/// What dispatch runs did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchReport {
    pub claimed: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead: u64,
    /// Deliveries whose lease was lost before they could be marked (another dispatcher owns them).
    pub lost: u64,
}

impl DispatchReport {
    fn add(&mut self, o: DispatchReport) {
        self.claimed += o.claimed;
        self.delivered += o.delivered;
        self.retried += o.retried;
        self.dead += o.dead;
        self.lost += o.lost;
    }
}

/// Claims and delivers outbox messages; run one per replica.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Store,
    config: DispatchConfig,
    owner: String,
}

/// The outbox's leases: a message is held until it is delivered or dead.
const OUTBOX: LeaseTable = LeaseTable {
    table: "outbox",
    what: "outbox message",
    holder: "dispatcher",
    held: "dispatched_at IS NULL AND dead_at IS NULL",
    claimed: "",
    dead: "dead_at = ?",
    touch: "",
};

fn fence(m: &OutboxMessage) -> Fence {
    Fence {
        id: m.id,
        fencing: m.fencing,
    }
}

const RECORD_COLUMNS: &str =
    "id, message_id, topic, payload, attempts, created_at, dispatched_at, dead_at, last_error";

fn record(row: &AnyRow) -> Result<OutboxRecord> {
    Ok(OutboxRecord {
        id: row.try_get("id")?,
        message_id: row.try_get("message_id")?,
        topic: row.try_get("topic")?,
        payload: get_json(row, "payload")?,
        attempts: get_u32(row, "attempts")?,
        created_at: get_ts(row, "created_at")?,
        dispatched_at: get_opt_ts(row, "dispatched_at")?,
        dead_at: get_opt_ts(row, "dead_at")?,
        last_error: row.try_get("last_error")?,
    })
}

impl Dispatcher {
    pub fn new(store: Store, config: DispatchConfig) -> Result<Dispatcher> {
        config.retry.validate()?;
        if config.lease < MIN_LEASE {
            return Err(JobsError::Invalid(format!(
                "lease must be at least {MIN_LEASE:?}"
            )));
        }
        if config.deliver_timeout.is_zero() || config.deliver_timeout >= config.lease {
            return Err(JobsError::Invalid(
                "deliver_timeout must be positive and shorter than the lease".into(),
            ));
        }
        if config.batch == 0 || config.batch > MAX_BATCH {
            return Err(JobsError::Invalid(format!("batch must be 1..={MAX_BATCH}")));
        }
        Ok(Dispatcher {
            store,
            config,
            owner: crate::owner_id("outbox"),
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn sqlite(&self) -> bool {
        self.store.backend() == Backend::Sqlite
    }

    /// Claim up to `limit` undelivered messages that are due and not leased (or whose lease
    /// expired), oldest first. An expired lease on the last attempt makes the message dead.
    pub async fn claim(&self, limit: u32) -> Result<Vec<OutboxMessage>> {
        if limit == 0 || limit > MAX_BATCH {
            return Err(JobsError::Invalid(format!("limit must be 1..={MAX_BATCH}")));
        }
        let max_attempts = self.config.retry.max_attempts;
        let claimed = OUTBOX
            .claim(
                &self.store,
                Claim {
                    columns: "id, attempts, lease_expires_at",
                    due: "dispatched_at IS NULL AND dead_at IS NULL AND next_attempt_at <= ? \
                          AND (lease_expires_at IS NULL OR lease_expires_at <= ?)"
                        .into(),
                    args: vec![Arg::Now, Arg::Now],
                    order: "id",
                    limit: i64::from(limit),
                    owner: &self.owner,
                    lease: self.config.lease,
                    returning: "id, message_id, topic, payload, attempts, fencing, created_at",
                },
                |row| {
                    let leased = get_opt_ts(row, "lease_expires_at")?.is_some();
                    Ok(leased && get_u32(row, "attempts")? >= max_attempts)
                },
                |row, expires| {
                    Ok(OutboxMessage {
                        id: row.try_get("id")?,
                        message_id: row.try_get("message_id")?,
                        topic: row.try_get("topic")?,
                        payload: get_json(row, "payload")?,
                        attempt: get_u32(row, "attempts")?,
                        fencing: row.try_get("fencing")?,
                        lease_expires_at: expires,
                        created_at: get_ts(row, "created_at")?,
                    })
                },
            )
            .await?;
        let mut out = claimed.rows;
        out.sort_by_key(|m| m.id);
        Ok(out)
    }

    /// Mark a claimed message delivered; `LeaseLost` when another dispatcher claimed it since.
    pub async fn mark_delivered(&self, m: &OutboxMessage) -> Result<()> {
        let now = Utc::now();
        OUTBOX
            .release(
                &self.store,
                fence(m),
                now,
                "dispatched_at = ?",
                vec![Arg::Text(Some(ts(now)))],
            )
            .await
    }

    /// Record a failed delivery: due again after the backoff, or dead after the last attempt
    /// (or on [`JobsError::Permanent`]).
    pub async fn mark_failed(&self, m: &OutboxMessage, error: &JobsError) -> Result<FailOutcome> {
        let now = Utc::now();
        let outcome = fail_outcome(
            &self.config.retry,
            m.attempt,
            self.config.retry.max_attempts,
            error,
            now,
        );
        let (next, dead_at) = match outcome {
            FailOutcome::Dead => (None, Some(ts(now))),
            FailOutcome::Retry { run_at } => (Some(ts(run_at)), None),
        };
        OUTBOX
            .release(
                &self.store,
                fence(m),
                now,
                "next_attempt_at = COALESCE(?, next_attempt_at), dead_at = ?, last_error = ?",
                vec![
                    Arg::Text(next),
                    Arg::Text(dead_at),
                    Arg::Text(Some(clip(&error.to_string()))),
                ],
            )
            .await?;
        Ok(outcome)
    }

    /// Extend a claimed message's lease to now + lease.
    pub async fn extend(&self, m: &mut OutboxMessage) -> Result<()> {
        m.lease_expires_at = OUTBOX
            .extend(&self.store, fence(m), self.config.lease)
            .await?;
        Ok(())
    }

    /// Claim one batch and deliver it in order.
    pub async fn dispatch_once(&self, deliver: &dyn Deliver) -> Result<DispatchReport> {
        let batch = self.claim(self.config.batch).await?;
        let mut report = DispatchReport {
            claimed: batch.len() as u64,
            ..DispatchReport::default()
        };
        for mut m in batch {
            // Never start a delivery that could outlive the lease: extend first.
            if after(Utc::now(), self.config.deliver_timeout) >= m.lease_expires_at {
                match self.extend(&mut m).await {
                    Ok(()) => {}
                    Err(e) if e.is_lease_lost() => {
                        report.lost += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let result = match tokio::time::timeout(
                self.config.deliver_timeout,
                deliver.deliver(&m),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(JobsError::failed(format!(
                    "delivery timed out after {:?}",
                    self.config.deliver_timeout
                ))),
            };
            let marked = match &result {
                Ok(()) => self.mark_delivered(&m).await.map(|()| None),
                Err(e) => {
                    tracing::warn!(message_id = %m.message_id, topic = %m.topic, attempt = m.attempt, error = %e, "outbox delivery failed");
                    self.mark_failed(&m, e).await.map(Some)
                }
            };
            match marked {
                Ok(None) => report.delivered += 1,
                Ok(Some(FailOutcome::Retry { .. })) => report.retried += 1,
                Ok(Some(FailOutcome::Dead)) => report.dead += 1,
                Err(e) if e.is_lease_lost() => report.lost += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Dispatch until `shutdown` turns true (or its sender is dropped); what it did in all.
    pub async fn run(
        &self,
        deliver: &dyn Deliver,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<DispatchReport> {
        let mut total = DispatchReport::default();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let full = match self.dispatch_once(deliver).await {
                Ok(r) => {
                    total.add(r);
                    r.claimed == u64::from(self.config.batch)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox dispatch failed; retrying after the poll interval");
                    false
                }
            };
            if full {
                continue;
            }
            tokio::select! {
                changed = shutdown.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        Ok(total)
    }

    /// One message by its stable id.
    pub async fn get(&self, message_id: &str) -> Result<Option<OutboxRecord>> {
        let sql = render(
            self.sqlite(),
            &format!("SELECT {RECORD_COLUMNS} FROM outbox WHERE message_id = ?"),
        )
        .into_owned();
        sqlx::query(&sql)
            .bind(message_id.to_string())
            .fetch_optional(self.store.pool())
            .await?
            .as_ref()
            .map(record)
            .transpose()
    }

    /// Messages given up on, oldest first, `limit` (≤ 500) after `after_id`.
    pub async fn dead_letters(
        &self,
        after_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>> {
        if limit == 0 || limit > MAX_BATCH {
            return Err(JobsError::Invalid(format!("limit must be 1..={MAX_BATCH}")));
        }
        let sql = render(
            self.sqlite(),
            &format!(
                "SELECT {RECORD_COLUMNS} FROM outbox WHERE dead_at IS NOT NULL AND id > ? \
                 ORDER BY id LIMIT ?"
            ),
        )
        .into_owned();
        sqlx::query(&sql)
            .bind(after_id.unwrap_or(0))
            .bind(i64::from(limit))
            .fetch_all(self.store.pool())
            .await?
            .iter()
            .map(record)
            .collect()
    }

    /// Give a dead message new attempts, due now. `NotFound` when no dead message has that id.
    pub async fn requeue(&self, id: i64) -> Result<()> {
        let sql = render(
            self.sqlite(),
            "UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = ? \
             WHERE id = ? AND dead_at IS NOT NULL AND dispatched_at IS NULL",
        );
        let n = sqlx::query(&sql)
            .bind(ts(Utc::now()))
            .bind(id)
            .execute(self.store.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(JobsError::NotFound {
                what: "dead outbox message",
                id,
            });
        }
        Ok(())
    }

    /// Messages not yet delivered nor dead.
    pub async fn pending(&self) -> Result<u64> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM outbox WHERE dispatched_at IS NULL AND dead_at IS NULL",
        )
        .fetch_one(self.store.pool())
        .await?
        .try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Delete up to `limit` messages delivered more than `older_than` ago; how many.
    pub async fn purge_delivered(&self, older_than: Duration, limit: u32) -> Result<u64> {
        if limit == 0 || limit > MAX_BATCH {
            return Err(JobsError::Invalid(format!("limit must be 1..={MAX_BATCH}")));
        }
        let cutoff = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|d| Utc::now().checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let sql = render(
            self.sqlite(),
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox \
             WHERE dispatched_at IS NOT NULL AND dispatched_at < ? ORDER BY dispatched_at LIMIT ?)",
        );
        Ok(sqlx::query(&sql)
            .bind(ts(cutoff))
            .bind(i64::from(limit))
            .execute(self.store.pool())
            .await?
            .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_look_like_uuid_v4() {
        let id = new_message_id().expect("id");
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, new_message_id().expect("id"));
    }
}
