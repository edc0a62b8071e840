//! The job queue: enqueue (optionally deduplicated, optionally inside the caller's
//! transaction), claim with a lease and a fencing token, complete / fail / extend guarded by
//! that token, retries with backoff, dead letters and their requeue, retention.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lockgate_store::{Backend, Store};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};
use tokio::sync::Notify;

use crate::lease::{Arg, Claim, Fence, LeaseTable, fail_outcome};
use crate::retry::{MAX_ATTEMPTS_LIMIT, RetryPolicy};
use crate::sql::{clip, get_json, get_opt_ts, get_ts, get_u32, is_sqlite, list, render, ts};
use crate::{JobsError, Result};

/// Most rows one call claims, enqueues, lists or purges.
pub const MAX_BATCH: u32 = 500;
/// Most kinds one claim asks for.
pub const MAX_KINDS: usize = 64;
/// Longest kind, task name or unique key.
pub const MAX_NAME_LEN: usize = 200;
/// Largest payload (serialised JSON).
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Shortest lease accepted (shorter ones cannot be extended in time).
pub const MIN_LEASE: Duration = Duration::from_millis(50);

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting for `run_at`, then claimable.
    Ready,
    /// Held by a worker until `lease_expires_at` (claimable again after it).
    Leased,
    /// Completed.
    Done,
    /// Failed its last attempt (or failed permanently): kept with `last_error` until requeued.
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Leased => "leased",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "ready" => JobState::Ready,
            "leased" => JobState::Leased,
            "done" => JobState::Done,
            "dead" => JobState::Dead,
            _ => return None,
        })
    }
}

/// Settings of a [`Queue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// How long a claim holds a job; workers extend it while the handler runs.
    pub lease: Duration,
    /// Backoff and attempts for jobs that do not name their own `max_attempts`.
    pub retry: RetryPolicy,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            lease: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

impl QueueConfig {
    fn validate(&self) -> Result<()> {
        if self.lease < MIN_LEASE {
            return Err(JobsError::Invalid(format!(
                "lease must be at least {MIN_LEASE:?}"
            )));
        }
        self.retry.validate()
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    /// Not claimable before (default: now).
    pub run_at: Option<DateTime<Utc>>,
    /// Default: the queue's retry policy.
    pub max_attempts: Option<u32>,
    /// At most one ready or leased job per (kind, unique key): a second enqueue is a no-op.
    pub unique_key: Option<String>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        NewJob {
            kind: kind.into(),
            payload,
            run_at: None,
            max_attempts: None,
            unique_key: None,
        }
    }

    pub fn unique(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    pub fn at(mut self, run_at: DateTime<Utc>) -> Self {
        self.run_at = Some(run_at);
        self
    }

    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }
}

/// A claimed job: what the handler sees, and the lease (id + fencing token) that completes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
    /// This attempt, from 1.
    pub attempt: u32,
    pub max_attempts: u32,
    /// Fencing token of this claim: strictly greater than any earlier claim of the job.
    /// Pass it to external systems that can reject stale writers.
    pub fencing: i64,
    pub lease_owner: String,
    pub lease_expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A job row as stored (for listings, dead letters, diagnostics).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub fencing: i64,
    pub last_error: Option<String>,
    pub unique_key: Option<String>,
    pub periodic_task: Option<String>,
    pub slot: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What [`Queue::fail`] did with the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Ready again from `run_at` (backoff with jitter).
    Retry { run_at: DateTime<Utc> },
    /// Moved to the dead letters.
    Dead,
}

/// Jobs per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub ready: u64,
    pub leased: u64,
    pub done: u64,
    pub dead: u64,
}

/// The durable job queue over the store's database.
#[derive(Debug, Clone)]
pub struct Queue {
    store: Store,
    config: QueueConfig,
    /// Wakes this process's idle workers when it enqueues (other replicas poll).
    wake: Arc<Notify>,
}

/// The queue's leases: a job is held while `leased`; every write stamps `updated_at`.
const QUEUE: LeaseTable = LeaseTable {
    table: "queue_jobs",
    what: "job",
    holder: "worker",
    held: "state = 'leased'",
    claimed: "state = 'leased', updated_at = ?",
    dead: "state = 'dead', updated_at = ?",
    touch: "updated_at = ?",
};

fn fence(job: &Job) -> Fence {
    Fence {
        id: job.id,
        fencing: job.fencing,
    }
}

const RECORD_COLUMNS: &str = "id, kind, payload, state, attempts, max_attempts, run_at, \
    lease_owner, lease_expires_at, fencing, last_error, unique_key, periodic_task, slot, \
    created_at, updated_at";

/// One row to insert (enqueue and periodic scheduling share it).
pub(crate) struct InsertRow<'a> {
    pub kind: &'a str,
    pub payload: String,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
    pub unique_key: Option<&'a str>,
    pub periodic: Option<(&'a str, i64)>,
    pub now: DateTime<Utc>,
}

pub(crate) fn check_name(what: &str, s: &str) -> Result<()> {
    if s.trim().is_empty() || s.len() > MAX_NAME_LEN {
        return Err(JobsError::Invalid(format!(
            "{what} must be 1..={MAX_NAME_LEN} bytes"
        )));
    }
    Ok(())
}

pub(crate) fn payload_text(payload: &Value) -> Result<String> {
    let text = payload.to_string();
    if text.len() > MAX_PAYLOAD_BYTES {
        return Err(JobsError::Invalid(format!(
            "payload is {} bytes, at most {MAX_PAYLOAD_BYTES}",
            text.len()
        )));
    }
    Ok(text)
}

/// Insert unless a unique key or periodic slot already has its job; the new id, or `None`.
pub(crate) async fn insert(conn: &mut AnyConnection, row: InsertRow<'_>) -> Result<Option<i64>> {
    let sql = render(
        is_sqlite(conn),
        "INSERT INTO queue_jobs (kind, payload, state, attempts, max_attempts, run_at, fencing, \
         unique_key, periodic_task, slot, created_at, updated_at) \
         VALUES (?, ?, 'ready', 0, ?, ?, 0, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
    )
    .into_owned();
    let now = ts(row.now);
    let id = sqlx::query(&sql)
        .bind(row.kind.to_string())
        .bind(row.payload)
        .bind(i64::from(row.max_attempts))
        .bind(ts(row.run_at))
        .bind(row.unique_key.map(str::to_string))
        .bind(row.periodic.map(|(t, _)| t.to_string()))
        .bind(row.periodic.map(|(_, s)| s))
        .bind(now.clone())
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get::<i64, _>("id"))
        .transpose()?;
    Ok(id)
}

fn record(row: &AnyRow) -> Result<JobRecord> {
    let state: String = row.try_get("state")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        payload: get_json(row, "payload")?,
        state: JobState::parse(&state)
            .ok_or_else(|| JobsError::Corrupt(format!("job state '{state}'")))?,
        attempts: get_u32(row, "attempts")?,
        max_attempts: get_u32(row, "max_attempts")?,
        run_at: get_ts(row, "run_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: get_opt_ts(row, "lease_expires_at")?,
        fencing: row.try_get("fencing")?,
        last_error: row.try_get("last_error")?,
        unique_key: row.try_get("unique_key")?,
        periodic_task: row.try_get("periodic_task")?,
        slot: row.try_get("slot")?,
        created_at: get_ts(row, "created_at")?,
        updated_at: get_ts(row, "updated_at")?,
    })
}

fn check_limit(limit: u32) -> Result<i64> {
    if limit == 0 || limit > MAX_BATCH {
        return Err(JobsError::Invalid(format!("limit must be 1..={MAX_BATCH}")));
    }
    Ok(i64::from(limit))
}

impl Queue {
    /// A queue over `store` (migrated: the `queue_jobs` table comes with the store's migrations).
    pub fn new(store: Store, config: QueueConfig) -> Result<Queue> {
        config.validate()?;
        Ok(Queue {
            store,
            config,
            wake: Arc::new(Notify::new()),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    pub(crate) fn wake(&self) -> &Notify {
        &self.wake
    }

    fn sqlite(&self) -> bool {
        self.store.backend() == Backend::Sqlite
    }

    fn sql<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        render(self.sqlite(), text)
    }

    fn insert_row<'a>(&self, job: &'a NewJob, now: DateTime<Utc>) -> Result<InsertRow<'a>> {
        check_name("kind", &job.kind)?;
        if let Some(k) = &job.unique_key {
            check_name("unique_key", k)?;
        }
        let max_attempts = job.max_attempts.unwrap_or(self.config.retry.max_attempts);
        if max_attempts == 0 || max_attempts > MAX_ATTEMPTS_LIMIT {
            return Err(JobsError::Invalid(format!(
                "max_attempts must be 1..={MAX_ATTEMPTS_LIMIT}"
            )));
        }
        Ok(InsertRow {
            kind: &job.kind,
            payload: payload_text(&job.payload)?,
            max_attempts,
            run_at: job.run_at.unwrap_or(now),
            unique_key: job.unique_key.as_deref(),
            periodic: None,
            now,
        })
    }

    /// Enqueue a job; `None` when its unique key already has a ready or leased job.
    pub async fn enqueue(&self, job: &NewJob) -> Result<Option<i64>> {
        let row = self.insert_row(job, Utc::now())?;
        let mut conn = self.store.pool().acquire().await?;
        let id = insert(&mut conn, row).await?;
        if id.is_some() {
            self.wake.notify_waiters();
        }
        Ok(id)
    }

    /// Enqueue up to [`MAX_BATCH`] jobs in one transaction (all or nothing).
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<Option<i64>>> {
        check_limit(u32::try_from(jobs.len()).unwrap_or(u32::MAX).max(1))?;
        let now = Utc::now();
        let rows = jobs
            .iter()
            .map(|j| self.insert_row(j, now))
            .collect::<Result<Vec<_>>>()?;
        let mut tx = self.store.write_tx().await?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            ids.push(insert(&mut tx, row).await?);
        }
        tx.commit().await?;
        self.wake.notify_waiters();
        Ok(ids)
    }

    /// Enqueue inside the caller's transaction: the job exists exactly when the change that
    /// causes it commits. (Idle local workers find it at their next poll.)
    pub async fn enqueue_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        job: &NewJob,
    ) -> Result<Option<i64>> {
        let row = self.insert_row(job, Utc::now())?;
        insert(tx, row).await
    }

    /// Claim up to `limit` claimable jobs of the given kinds for `owner`: ready jobs whose
    /// `run_at` has come, and leased jobs whose lease expired. Each claim sets the lease,
    /// increments `attempts` and the fencing token. An expired lease on a job's last attempt
    /// is not claimed again: the job goes to the dead letters.
    pub async fn claim(&self, owner: &str, kinds: &[String], limit: u32) -> Result<Vec<Job>> {
        let limit = check_limit(limit)?;
        check_name("owner", owner)?;
        if kinds.is_empty() || kinds.len() > MAX_KINDS {
            return Err(JobsError::Invalid(format!(
                "claim 1..={MAX_KINDS} kinds at once"
            )));
        }
        let claimed = QUEUE
            .claim(
                &self.store,
                Claim {
                    columns: "id, state, attempts, max_attempts",
                    due: format!(
                        "kind IN ({}) AND ((state = 'ready' AND run_at <= ?) \
                         OR (state = 'leased' AND lease_expires_at <= ?))",
                        list(kinds.len())
                    ),
                    args: kinds
                        .iter()
                        .map(|k| Arg::Text(Some(k.clone())))
                        .chain([Arg::Now, Arg::Now])
                        .collect(),
                    order: "run_at, id",
                    limit,
                    owner,
                    lease: self.config.lease,
                    returning: "id, kind, payload, attempts, max_attempts, fencing, created_at, run_at",
                },
                |row| {
                    let state: String = row.try_get("state")?;
                    Ok(state == "leased"
                        && get_u32(row, "attempts")? >= get_u32(row, "max_attempts")?)
                },
                |row, expires| {
                    Ok((
                        get_ts(row, "run_at")?,
                        Job {
                            id: row.try_get("id")?,
                            kind: row.try_get("kind")?,
                            payload: get_json(row, "payload")?,
                            attempt: get_u32(row, "attempts")?,
                            max_attempts: get_u32(row, "max_attempts")?,
                            fencing: row.try_get("fencing")?,
                            lease_owner: owner.to_string(),
                            lease_expires_at: expires,
                            created_at: get_ts(row, "created_at")?,
                        },
                    ))
                },
            )
            .await?;
        if !claimed.dead.is_empty() {
            tracing::warn!(jobs = ?claimed.dead, "jobs dead: lease of the last attempt expired");
        }
        let mut rows = claimed.rows;
        // RETURNING has no order: hand jobs out oldest first.
        rows.sort_by_key(|(run_at, job)| (*run_at, job.id));
        Ok(rows.into_iter().map(|(_, j)| j).collect())
    }

    /// Mark a claimed job done. `LeaseLost` (and nothing written) when the job was claimed
    /// again since (its fencing token moved on) or left the leased state.
    pub async fn complete(&self, job: &Job) -> Result<()> {
        QUEUE
            .release(
                &self.store,
                fence(job),
                Utc::now(),
                "state = 'done'",
                Vec::new(),
            )
            .await
    }

    /// Record a failed attempt: ready again after the backoff, or dead when this was the last
    /// attempt or `error` is [`JobsError::Permanent`]. `last_error` keeps the message.
    pub async fn fail(&self, job: &Job, error: &JobsError) -> Result<FailOutcome> {
        let now = Utc::now();
        let outcome = fail_outcome(
            &self.config.retry,
            job.attempt,
            job.max_attempts,
            error,
            now,
        );
        let (state, run_at) = match outcome {
            FailOutcome::Dead => ("dead", None),
            FailOutcome::Retry { run_at } => ("ready", Some(ts(run_at))),
        };
        QUEUE
            .release(
                &self.store,
                fence(job),
                now,
                "state = ?, run_at = COALESCE(?, run_at), last_error = ?",
                vec![
                    Arg::Text(Some(state.to_string())),
                    Arg::Text(run_at),
                    Arg::Text(Some(clip(&error.to_string()))),
                ],
            )
            .await?;
        Ok(outcome)
    }

    /// Extend the lease to now + lease; the new expiry. `LeaseLost` when claimed again since.
    pub async fn extend(&self, job: &Job) -> Result<DateTime<Utc>> {
        QUEUE
            .extend(&self.store, fence(job), self.config.lease)
            .await
    }

    /// One job as stored.
    pub async fn get(&self, id: i64) -> Result<Option<JobRecord>> {
        let sql = self
            .sql(&format!(
                "SELECT {RECORD_COLUMNS} FROM queue_jobs WHERE id = ?"
            ))
            .into_owned();
        sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.store.pool())
            .await?
            .as_ref()
            .map(record)
            .transpose()
    }

    /// Dead letters oldest first, `limit` (≤ [`MAX_BATCH`]) after `after_id`, optionally of one kind.
    pub async fn dead_letters(
        &self,
        kind: Option<&str>,
        after_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JobRecord>> {
        let limit = check_limit(limit)?;
        let filter = if kind.is_some() { " AND kind = ?" } else { "" };
        let sql = self
            .sql(&format!(
                "SELECT {RECORD_COLUMNS} FROM queue_jobs WHERE state = 'dead' AND id > ?{filter} \
                 ORDER BY id LIMIT ?"
            ))
            .into_owned();
        let mut q = sqlx::query(&sql).bind(after_id.unwrap_or(0));
        if let Some(k) = kind {
            q = q.bind(k.to_string());
        }
        q.bind(limit)
            .fetch_all(self.store.pool())
            .await?
            .iter()
            .map(record)
            .collect()
    }

    /// Put a dead job back: ready now, attempts from zero, `last_error` kept until the next
    /// failure. `NotFound` when there is no dead job with that id; `Conflict` when its unique
    /// key has another ready or leased job meanwhile.
    pub async fn requeue(&self, id: i64) -> Result<()> {
        let now = ts(Utc::now());
        let sql = self.sql(
            "UPDATE queue_jobs SET state = 'ready', attempts = 0, run_at = ?, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = ? WHERE id = ? AND state = 'dead'",
        );
        let n = sqlx::query(&sql)
            .bind(now.clone())
            .bind(now)
            .bind(id)
            .execute(self.store.pool())
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_unique_violation() => {
                    JobsError::Conflict(format!("job {id}: its unique key has another open job"))
                }
                _ => JobsError::Db(e),
            })?
            .rows_affected();
        if n == 0 {
            return Err(JobsError::NotFound {
                what: "dead job",
                id,
            });
        }
        self.wake.notify_waiters();
        Ok(())
    }

    /// Delete up to `limit` done jobs last updated more than `older_than` ago; how many.
    /// Keep `older_than` above the longest periodic interval: a periodic slot's row is what
    /// keeps that slot from running twice.
    pub async fn purge_done(&self, older_than: Duration, limit: u32) -> Result<u64> {
        let limit = check_limit(limit)?;
        let cutoff = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|d| Utc::now().checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let sql = self.sql(
            "DELETE FROM queue_jobs WHERE id IN (SELECT id FROM queue_jobs \
             WHERE state = 'done' AND updated_at < ? ORDER BY updated_at LIMIT ?)",
        );
        Ok(sqlx::query(&sql)
            .bind(ts(cutoff))
            .bind(limit)
            .execute(self.store.pool())
            .await?
            .rows_affected())
    }

    /// Jobs per state.
    pub async fn stats(&self) -> Result<QueueStats> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM queue_jobs GROUP BY state")
            .fetch_all(self.store.pool())
            .await?;
        let mut s = QueueStats::default();
        for row in rows {
            let state: String = row.try_get("state")?;
            let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
            match JobState::parse(&state) {
                Some(JobState::Ready) => s.ready = n,
                Some(JobState::Leased) => s.leased = n,
                Some(JobState::Done) => s.done = n,
                Some(JobState::Dead) => s.dead = n,
                None => return Err(JobsError::Corrupt(format!("job state '{state}'"))),
            }
        }
        Ok(s)
    }
}
