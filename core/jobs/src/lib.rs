//! lockgate's durable background runtime: one job queue in the database for all background
//! work (leases with fencing tokens, retries with backoff and jitter, dead letters, unique
//! periodic slots), a transactional outbox for outbound side effects, and the worker loop.
//!
//! Claims use `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL and a `BEGIN IMMEDIATE` write
//! transaction on SQLite. Every claim increments the job's fencing token; completing,
//! failing or extending a lease is `UPDATE … WHERE id = ? AND fencing = ?`, so a worker whose
//! lease expired and whose job was claimed again gets [`JobsError::LeaseLost`] and changes
//! nothing. That protocol lives once, in `lease` (the queue and the outbox only name their
//! columns). Delivery is at least once: handlers and receivers must be idempotent (the fencing
//! token and the outbox message id are what they dedupe on).

mod lease;
pub mod outbox;
pub mod periodic;
pub mod queue;
pub mod retry;
mod sql;
pub mod worker;

use lockgate_store::StoreError;

/// Re-exported so handler and deliverer implementations need no dependency of their own.
pub use async_trait::async_trait;

pub use outbox::{Deliver, DispatchConfig, DispatchReport, Dispatcher, OutboxMessage};
pub use periodic::Periodic;
pub use queue::{FailOutcome, Job, JobRecord, JobState, NewJob, Queue, QueueConfig, QueueStats};
pub use retry::RetryPolicy;
pub use worker::{Handler, Worker, WorkerConfig, WorkerReport};

/// Everything that can go wrong at the crate boundary, including a handler's own failure.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// The lease is no longer ours: it expired and the row was claimed again (fencing token
    /// moved on), or the row left the leased state. Nothing was written.
    #[error("lease lost on {what} {id}: fencing token {fencing} is no longer current")]
    LeaseLost {
        what: &'static str,
        id: i64,
        fencing: i64,
    },
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: i64 },
    #[error("{0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    /// A handler or deliverer failed; the job is retried with backoff until its last attempt.
    #[error("{0}")]
    Failed(String),
    /// A handler failed in a way retrying cannot fix: the job goes to the dead letters at once.
    #[error("permanent failure: {0}")]
    Permanent(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl JobsError {
    /// A retryable handler failure.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        JobsError::Failed(message.to_string())
    }

    /// A handler failure that sends the job to the dead letters without further attempts.
    pub fn permanent(message: impl std::fmt::Display) -> Self {
        JobsError::Permanent(message.to_string())
    }

    /// Whether this error is [`JobsError::LeaseLost`].
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, JobsError::LeaseLost { .. })
    }
}

pub type Result<T, E = JobsError> = std::result::Result<T, E>;

/// A worker identity for leases: process id plus random bits (unique across replicas).
pub fn owner_id(prefix: &str) -> String {
    let mut b = [0u8; 6];
    // No randomness is not fatal: the pid and the time still make owners distinct enough
    // for diagnostics (fencing, not the owner, is what guards writes).
    if getrandom::getrandom(&mut b).is_err() {
        b.copy_from_slice(
            &chrono::Utc::now()
                .timestamp_nanos_opt()
                .unwrap_or_default()
                .to_le_bytes()[..6],
        );
    }
    format!("{prefix}-{}-{}", std::process::id(), hex::encode(b))
}
