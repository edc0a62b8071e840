//! The worker runtime: claim → run the kind's [`Handler`] → complete or fail, with bounded
//! concurrency, lease extension while a handler runs, the periodic scheduler, and a graceful
//! shutdown on a `tokio::sync::watch` signal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::periodic::Periodic;
use crate::queue::{FailOutcome, Job, MAX_BATCH, MAX_KINDS, Queue};
use crate::{JobsError, Result};

/// Runs the jobs of one kind.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Run one attempt. Must be idempotent: a job can run again after a lost lease.
    /// `Err(JobsError::Permanent(_))` skips the remaining attempts; any other error retries.
    async fn run(&self, job: &Job) -> Result<()>;
}

/// Settings of a [`Worker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Handlers running at once (also the most jobs held at once).
    pub concurrency: usize,
    /// Most jobs claimed by one claim (≤ 500).
    pub claim_batch: u32,
    /// Idle wait between claims when the queue had nothing (local enqueues wake earlier).
    pub poll_interval: Duration,
    /// After shutdown, how long running handlers may finish before they are aborted
    /// (their leases then expire and the jobs run again elsewhere).
    pub shutdown_grace: Duration,
    /// How often the periodic tasks are scheduled.
    pub schedule_every: Duration,
    /// Lease owner name (default: generated, unique per worker).
    pub owner: Option<String>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 4,
            claim_batch: 16,
            poll_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(10),
            schedule_every: Duration::from_secs(1),
            owner: None,
        }
    }
}

/// What a worker did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub claimed: u64,
    pub completed: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Jobs this worker moved to the dead letters.
    pub dead: u64,
    /// Jobs whose lease was lost while running or when marking them (another worker owns them).
    pub lease_lost: u64,
    /// Handlers still running at the end of the shutdown grace, aborted.
    pub aborted: u64,
}

#[derive(Debug, Default)]
struct Counters {
    claimed: AtomicU64,
    completed: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    lease_lost: AtomicU64,
}

/// Claims and runs jobs of the kinds it has handlers for; run one (or more) per replica.
pub struct Worker {
    queue: Queue,
    config: WorkerConfig,
    owner: String,
    handlers: BTreeMap<String, Arc<dyn Handler>>,
    periodic: Vec<Periodic>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("owner", &self.owner)
            .field("config", &self.config)
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .field("periodic", &self.periodic)
            .finish_non_exhaustive()
    }
}

/// Aborts a spawned handler when the job's task is dropped (shutdown past the grace).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Worker {
    pub fn new(queue: Queue, config: WorkerConfig) -> Result<Worker> {
        if config.concurrency == 0 || config.concurrency > MAX_BATCH as usize {
            return Err(JobsError::Invalid(format!(
                "concurrency must be 1..={MAX_BATCH}"
            )));
        }
        if config.claim_batch == 0 || config.claim_batch > MAX_BATCH {
            return Err(JobsError::Invalid(format!(
                "claim_batch must be 1..={MAX_BATCH}"
            )));
        }
        let owner = match &config.owner {
            Some(o) => o.clone(),
            None => crate::owner_id("worker"),
        };
        Ok(Worker {
            queue,
            config,
            owner,
            handlers: BTreeMap::new(),
            periodic: Vec::new(),
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Run jobs of `kind` with `handler` (replaces an earlier handler of that kind).
    pub fn register(&mut self, kind: impl Into<String>, handler: Arc<dyn Handler>) -> Result<()> {
        let kind = kind.into();
        crate::queue::check_name("kind", &kind)?;
        if !self.handlers.contains_key(&kind) && self.handlers.len() >= MAX_KINDS {
            return Err(JobsError::Invalid(format!(
                "at most {MAX_KINDS} kinds per worker"
            )));
        }
        self.handlers.insert(kind, handler);
        Ok(())
    }

    /// Schedule these periodic tasks from this worker's loop (every replica may do so).
    pub fn with_periodic(mut self, tasks: Vec<Periodic>) -> Result<Worker> {
        if tasks.len() > crate::periodic::MAX_PERIODIC {
            return Err(JobsError::Invalid(format!(
                "at most {} periodic tasks",
                crate::periodic::MAX_PERIODIC
            )));
        }
        self.periodic = tasks;
        Ok(self)
    }

    /// Run until `shutdown` turns true (or its sender is dropped): claim while below the
    /// concurrency limit, run each job in its own task with its lease extended every third
    /// of the lease, then complete or fail it with its fencing token. On shutdown, claims
    /// stop and running handlers get `shutdown_grace` to finish.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<WorkerReport> {
        let kinds: Vec<String> = self.handlers.keys().cloned().collect();
        if kinds.is_empty() {
            return Err(JobsError::Invalid(
                "a worker needs at least one handler".into(),
            ));
        }
        let counters = Arc::new(Counters::default());
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut next_schedule = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "job task ended abnormally");
                }
            }
            if !self.periodic.is_empty() && tokio::time::Instant::now() >= next_schedule {
                if let Err(e) = self
                    .queue
                    .schedule_periodic(&self.periodic, Utc::now())
                    .await
                {
                    tracing::warn!(error = %e, "scheduling periodic tasks failed");
                }
                next_schedule = tokio::time::Instant::now() + self.config.schedule_every;
            }
            let free = self.config.concurrency.saturating_sub(tasks.len());
            // Refill in batches: claim when half the slots are free (or nothing runs), so a
            // busy worker does not pay one claim transaction per finished job.
            let refill = (self
                .config
                .concurrency
                .min(self.config.claim_batch as usize)
                / 2)
            .max(1);
            let want = if free >= refill || tasks.is_empty() {
                u32::try_from(free)
                    .unwrap_or(u32::MAX)
                    .min(self.config.claim_batch)
            } else {
                0
            };
            let mut got = 0;
            if want > 0 {
                match self.queue.claim(&self.owner, &kinds, want).await {
                    Ok(jobs) => {
                        got = jobs.len();
                        counters.claimed.fetch_add(got as u64, Ordering::Relaxed);
                        for job in jobs {
                            let Some(handler) = self.handlers.get(&job.kind).cloned() else {
                                continue;
                            };
                            tasks.spawn(run_one(
                                self.queue.clone(),
                                handler,
                                job,
                                counters.clone(),
                            ));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
                }
            }
            if want > 0 && got == want as usize {
                // A full batch: more may be waiting.
                continue;
            }
            let until_schedule =
                next_schedule.saturating_duration_since(tokio::time::Instant::now());
            let idle = if self.periodic.is_empty() {
                self.config.poll_interval
            } else {
                self.config.poll_interval.min(until_schedule)
            };
            tokio::select! {
                changed = shutdown.changed() => if changed.is_err() { break },
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "job task ended abnormally");
                    }
                }
                () = self.queue.wake().notified(), if want > 0 => {}
                () = tokio::time::sleep(idle) => {}
            }
        }
        let mut aborted = 0;
        let drain = async {
            while let Some(done) = tasks.join_next().await {
                if let Err(e) = done {
                    tracing::error!(error = %e, "job task ended abnormally");
                }
            }
        };
        if tokio::time::timeout(self.config.shutdown_grace, drain)
            .await
            .is_err()
        {
            aborted = tasks.len() as u64;
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            tracing::warn!(
                aborted,
                "shutdown grace over: aborted running jobs (they run again after their lease)"
            );
        }
        Ok(WorkerReport {
            claimed: counters.claimed.load(Ordering::Relaxed),
            completed: counters.completed.load(Ordering::Relaxed),
            retried: counters.retried.load(Ordering::Relaxed),
            dead: counters.dead.load(Ordering::Relaxed),
            lease_lost: counters.lease_lost.load(Ordering::Relaxed),
            aborted,
        })
    }
}

/// One job: the handler in its own task (a panic is a failed attempt), the lease extended
/// while it runs, then complete or fail with the fencing token.
async fn run_one(queue: Queue, handler: Arc<dyn Handler>, job: Job, counters: Arc<Counters>) {
    let shared = Arc::new(job);
    let for_handler = shared.clone();
    let mut handle = AbortOnDrop(tokio::spawn(async move { handler.run(&for_handler).await }));
    let job = shared;
    let every = (queue.config().lease / 3).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            r = &mut handle.0 => break r,
            _ = tick.tick() => match queue.extend(&job).await {
                Ok(_) => {}
                Err(e) if e.is_lease_lost() => {
                    // Someone else owns the job now: stop working on it, write nothing.
                    tracing::warn!(job = job.id, kind = %job.kind, "lease lost while running; abandoning the attempt");
                    counters.lease_lost.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => tracing::warn!(job = job.id, error = %e, "extending the lease failed; retrying"),
            },
        }
    };
    let outcome = match result {
        Ok(Ok(())) => queue.complete(&job).await.map(|()| None),
        Ok(Err(e)) => {
            tracing::warn!(job = job.id, kind = %job.kind, attempt = job.attempt, error = %e, "job failed");
            queue.fail(&job, &e).await.map(Some)
        }
        Err(join) => {
            let e = JobsError::failed(format!("handler panicked: {join}"));
            tracing::error!(job = job.id, kind = %job.kind, error = %e, "job handler panicked");
            queue.fail(&job, &e).await.map(Some)
        }
    };
    let counter = match outcome {
        Ok(None) => &counters.completed,
        Ok(Some(FailOutcome::Retry { .. })) => &counters.retried,
        Ok(Some(FailOutcome::Dead)) => &counters.dead,
        Err(e) if e.is_lease_lost() => {
            tracing::warn!(job = job.id, "lease lost before the result was written");
            &counters.lease_lost
        }
        Err(e) => {
            // The lease will expire and the job run again: at least once.
            tracing::error!(job = job.id, error = %e, "writing the job's result failed");
            return;
        }
    };
    counter.fetch_add(1, Ordering::Relaxed);
}
