//! The durable background runtime inside the gateway (`[background]`): one lockgate-jobs
//! [`Worker`] with the gateway's handlers and periodic tasks (directory syncs by the
//! directory-sync plugins among them), and the outbox [`Dispatcher`] with a pluggable
//! [`Deliver`]: the notifier plugin ([`PluginDeliver`]) or the tracing log ([`LogDeliver`]).
//!
//! Periodic tasks are scheduled by every replica and run once per slot across all of them
//! (the queue's `UNIQUE (periodic_task, slot)`). Handlers are idempotent (delivery is at
//! least once): reconciliation decides the same jobs again, outbox messages have message ids
//! derived from what they report (the job, or the system and ISO week), purges delete what
//! is still there.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use lockgate_api::licence::{LicenceConfig, LicenceState, load_status};
use lockgate_host::types::{Notification, NotifyError, PluginError};
use lockgate_host::{HostError, PluginHost, PluginState, World};
use lockgate_jobs::{
    Deliver, DispatchConfig, Dispatcher, Handler, Job, JobsError, OutboxMessage, Periodic, Queue,
    QueueConfig, RetryPolicy, Worker, WorkerConfig, async_trait, outbox,
};
use lockgate_model::{ObjectKind, key::Key, person::Person, system::LockingSystem};
use lockgate_store::{Actor, Scope, Store, StoreError};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use lockgate_store::outbox::Topic;

use crate::config::BackgroundConfig;

/// Full reconciliation of every locking system.
pub const RECONCILE_FULL: &str = "reconcile.full";
/// Overdue-key notifications.
pub const KEYS_OVERDUE: &str = "keys.overdue";
/// Retention purge: events, done jobs, delivered outbox messages.
pub const EVENTS_PURGE: &str = "events.purge";
/// Licence soft-expiry notifications.
pub const LICENCE_CHECK: &str = "licence.check";
/// A directory sync: payload `{"plugin": name, "full": bool}`, or null for a full sync by
/// every enabled directory-sync plugin (the periodic task).
pub const DIRECTORY_SYNC: &str = "directory.sync";
/// Remote PDs that missed their heartbeats go offline; PD certificates about to expire are
/// announced.
pub const PD_LIVENESS: &str = "pds.liveness";

/// Tracing target of [`LogDeliver`].
pub const OUTBOX_LOG_TARGET: &str = "lockgate::outbox";

/// Rows one purge statement deletes.
const PURGE_BATCH: u32 = 500;
/// Most purge statements per table and run (the next run continues).
const MAX_PURGE_BATCHES: usize = 2_000;
/// Most keys one overdue notification lists (the count is always complete).
pub const MAX_LISTED_KEYS: usize = 1_000;

/// What the handlers work with.
#[derive(Debug, Clone)]
pub struct Context {
    pub store: Store,
    pub queue: Queue,
    pub dispatcher: Dispatcher,
    /// The trusted licence keys (a licence is verified each time it is read).
    pub licence: LicenceConfig,
    /// Events older than this many days are purged; 0 keeps them.
    pub event_retention_days: u32,
    /// How long done jobs and delivered outbox messages are kept.
    pub job_retention: Duration,
    /// The plugin host (directory syncs); none when plugins are disabled.
    pub plugins: Option<PluginHost>,
    /// Heartbeats a remote PD may miss before it counts as offline.
    pub pd_missed_heartbeats: u32,
    /// PD certificates expiring within this are announced (`[pds] renew_before_days`).
    pub pd_renew_before: chrono::Duration,
}

impl Context {
    pub fn new(
        store: Store,
        cfg: &BackgroundConfig,
        licence: LicenceConfig,
        plugins: Option<PluginHost>,
    ) -> Result<Context, JobsError> {
        Ok(Context {
            queue: Queue::new(store.clone(), queue_config(cfg))?,
            dispatcher: Dispatcher::new(store.clone(), dispatch_config(cfg))?,
            store,
            licence,
            event_retention_days: cfg.event_retention_days,
            job_retention: Duration::from_secs(u64::from(cfg.job_retention_days) * 86_400),
            plugins,
            pd_missed_heartbeats: cfg.pd_missed_heartbeats,
            pd_renew_before: chrono::Duration::days(30),
        })
    }
}

fn retry(cfg: &BackgroundConfig) -> RetryPolicy {
    RetryPolicy {
        base: cfg.retry_base.0,
        cap: cfg.retry_cap.0,
        max_attempts: cfg.max_attempts,
    }
}

/// The queue's settings from `[background]`.
pub fn queue_config(cfg: &BackgroundConfig) -> QueueConfig {
    QueueConfig {
        lease: cfg.lease.0,
        retry: retry(cfg),
    }
}

/// The dispatcher's settings from `[background]`: one delivery may take a third of the lease.
pub fn dispatch_config(cfg: &BackgroundConfig) -> DispatchConfig {
    DispatchConfig {
        lease: cfg.lease.0,
        retry: retry(cfg),
        deliver_timeout: cfg.lease.0 / 3,
        ..DispatchConfig::default()
    }
}

/// The periodic tasks (task name = handler kind).
pub fn periodic_tasks(cfg: &BackgroundConfig) -> Vec<Periodic> {
    [
        (RECONCILE_FULL, cfg.reconcile_every),
        (KEYS_OVERDUE, cfg.overdue_check_every),
        (EVENTS_PURGE, cfg.purge_every),
        (LICENCE_CHECK, cfg.licence_check_every),
        (DIRECTORY_SYNC, cfg.directory_sync_every),
        (PD_LIVENESS, cfg.pd_liveness_every),
    ]
    .into_iter()
    .map(|(kind, every)| Periodic::new(kind, kind, every.0))
    .collect()
}

#[derive(Debug, Clone, Copy)]
enum Task {
    ReconcileFull,
    KeysOverdue,
    Purge,
    LicenceCheck,
    DirectorySync,
    PdLiveness,
}

/// One of the gateway's handlers.
#[derive(Debug)]
struct TaskHandler {
    ctx: Arc<Context>,
    task: Task,
}

#[async_trait]
impl Handler for TaskHandler {
    async fn run(&self, job: &Job) -> lockgate_jobs::Result<()> {
        let now = Utc::now();
        match self.task {
            Task::ReconcileFull => {
                let n = reconcile_all(&self.ctx.store, now).await?;
                tracing::debug!(systems = n, "periodic full reconciliation done");
            }
            Task::KeysOverdue => {
                let n =
                    notify_overdue_keys(&self.ctx.store, &format!("job-{}", job.id), now).await?;
                tracing::debug!(messages = n, "overdue-key check done");
            }
            Task::Purge => {
                let r = purge(&self.ctx, now).await?;
                tracing::info!(
                    events = r.events,
                    jobs = r.jobs,
                    outbox = r.outbox,
                    "retention purge done"
                );
            }
            Task::LicenceCheck => {
                let n = check_licences(&self.ctx.store, &self.ctx.licence, now).await?;
                tracing::debug!(messages = n, "licence check done");
            }
            Task::DirectorySync => directory_sync(self.ctx.plugins.as_ref(), &job.payload).await?,
            Task::PdLiveness => {
                let app = lockgate_app::App::new(self.ctx.store.clone());
                let n = app
                    .mark_silent_pds_offline(self.ctx.pd_missed_heartbeats)
                    .await
                    .map_err(|e| JobsError::failed(e.to_string()))?;
                if n > 0 {
                    tracing::info!(offline = n, "remote PDs missed their heartbeats");
                }
                let n = app
                    .warn_expiring_pd_certificates(self.ctx.pd_renew_before)
                    .await
                    .map_err(|e| JobsError::failed(e.to_string()))?;
                if n > 0 {
                    tracing::info!(certificates = n, "remote PD certificates expire soon");
                }
            }
        }
        Ok(())
    }
}

/// The gateway's handlers by kind.
pub fn handlers(ctx: Arc<Context>) -> Vec<(&'static str, Arc<dyn Handler>)> {
    [
        (RECONCILE_FULL, Task::ReconcileFull),
        (KEYS_OVERDUE, Task::KeysOverdue),
        (EVENTS_PURGE, Task::Purge),
        (LICENCE_CHECK, Task::LicenceCheck),
        (DIRECTORY_SYNC, Task::DirectorySync),
        (PD_LIVENESS, Task::PdLiveness),
    ]
    .into_iter()
    .map(|(kind, task)| {
        let h: Arc<dyn Handler> = Arc::new(TaskHandler {
            ctx: ctx.clone(),
            task,
        });
        (kind, h)
    })
    .collect()
}

/// The handler of one kind (for tests and manual runs).
pub fn handler(ctx: Arc<Context>, kind: &str) -> Option<Arc<dyn Handler>> {
    handlers(ctx)
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, h)| h)
}

/// `reconcile.full`: reconcile every locking system as lockgate itself; how many systems.
/// A failing system does not stop the others; the job fails (and is retried) afterwards.
pub async fn reconcile_all(store: &Store, now: DateTime<Utc>) -> Result<usize, JobsError> {
    let mut failed = Vec::new();
    let systems = store.systems().await?;
    for sys in &systems {
        let app = lockgate_app::App::new(store.clone());
        let cx = lockgate_app::WriteContext {
            system: sys.clone(),
            scope: lockgate_store::Scope::all(),
            actor: Actor::system(),
            now,
        };
        match app.reconcile(&cx).await {
            Ok(report) => {
                tracing::debug!(system_id = sys.id, ?report, "full reconciliation");
                notify_capacity_exceeded(store, sys, &report.capacity_exceeded, now).await?;
            }
            Err(e) => {
                tracing::warn!(system_id = sys.id, error = %e, "full reconciliation failed");
                failed.push(format!("system {}: {e}", sys.id));
            }
        }
    }
    if failed.is_empty() {
        Ok(systems.len())
    } else {
        Err(JobsError::failed(failed.join("; ")))
    }
}

/// A `notify.capacity_exceeded` message per key whose update is held back because it
/// exceeds the key's capacity, at most one per key and day (`capacity-exceeded:<key>:<date>`).
pub async fn notify_capacity_exceeded(
    store: &Store,
    sys: &LockingSystem,
    keys: &[i64],
    now: DateTime<Utc>,
) -> Result<usize, JobsError> {
    let mut written = 0;
    let day = now.format("%Y-%m-%d");
    for id in keys.iter().take(MAX_LISTED_KEYS) {
        let key = match store
            .get::<Key>(sys.id, ObjectKind::Key, *id, &Scope::all())
            .await
        {
            Ok(k) => k,
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let payload = json!({
            "system_id": sys.id,
            "system_name": sys.name,
            "messaging_language": sys.settings.messaging_language,
            "key_id": key.id,
            "target_name": key.body.name,
            "marking": key.body.marking,
        });
        let mut tx = store.write_tx().await?;
        let message_id = format!("capacity-exceeded:{}:{day}", key.id);
        if outbox::insert_with_id(
            &mut tx,
            &message_id,
            Topic::CapacityExceeded.as_str(),
            &payload,
        )
        .await?
        {
            written += 1;
        }
        tx.commit().await?;
    }
    Ok(written)
}

async fn holder(store: &Store, system_id: i64, id: i64) -> Result<Option<Value>, StoreError> {
    let Some(kind) = store.kind_of(system_id, id).await? else {
        return Ok(None);
    };
    if !matches!(kind, ObjectKind::Employee | ObjectKind::Visitor) {
        return Ok(None);
    }
    match store
        .get::<Person>(system_id, kind, id, &Scope::all())
        .await
    {
        Ok(p) => Ok(Some(json!({
            "person_id": p.id,
            "kind": kind.as_str(),
            "first_name": p.body.first_name,
            "surname": p.body.surname,
            "email": p.body.email,
            "language": p.body.language,
        }))),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The payload of one system's overdue-key notification; `None` when no key is overdue.
pub async fn overdue_payload(
    store: &Store,
    sys: &LockingSystem,
    now: DateTime<Utc>,
) -> Result<Option<Value>, StoreError> {
    let overdue = store.overdue_keys(sys, &Scope::all(), now).await?;
    if overdue.is_empty() {
        return Ok(None);
    }
    let mut keys = Vec::with_capacity(overdue.len().min(MAX_LISTED_KEYS));
    for (id, why) in overdue.iter().take(MAX_LISTED_KEYS) {
        let key = match store
            .get::<Key>(sys.id, ObjectKind::Key, *id, &Scope::all())
            .await
        {
            Ok(k) => k,
            // Deleted since the query: nothing to remind anyone of.
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let holder = match key.body.holder_id {
            Some(h) => holder(store, sys.id, h).await?,
            None => None,
        };
        keys.push(json!({
            "key_id": key.id,
            "name": key.body.name,
            "marking": key.body.marking,
            "holder": holder,
            "overdue_by": why,
        }));
    }
    Ok(Some(json!({
        "system_id": sys.id,
        "system_name": sys.name,
        "messaging_language": sys.settings.messaging_language,
        "checked_at": now,
        "count": overdue.len(),
        "truncated": overdue.len() > keys.len(),
        "keys": keys,
    })))
}

/// `keys.overdue`: one `notify.overdue_keys` outbox message per system with overdue keys,
/// under the message id `overdue-keys:<system>:<run>` (a retried run writes nothing twice);
/// how many messages were written.
pub async fn notify_overdue_keys(
    store: &Store,
    run: &str,
    now: DateTime<Utc>,
) -> Result<usize, JobsError> {
    let mut written = 0;
    for sys in store.systems().await? {
        let Some(payload) = overdue_payload(store, &sys, now).await? else {
            continue;
        };
        let mut tx = store.write_tx().await?;
        let id = format!("overdue-keys:{}:{run}", sys.id);
        if outbox::insert_with_id(&mut tx, &id, Topic::OverdueKeys.as_str(), &payload).await? {
            written += 1;
        }
        tx.commit().await?;
    }
    Ok(written)
}

/// What a purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub events: u64,
    pub jobs: u64,
    pub outbox: u64,
}

/// Run a bounded batch loop: `batch` until it deletes less than a full batch.
async fn drain<F, Fut>(mut batch: F) -> Result<u64, JobsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, JobsError>>,
{
    let mut total = 0;
    for _ in 0..MAX_PURGE_BATCHES {
        let n = batch().await?;
        total += n;
        if n < u64::from(PURGE_BATCH) {
            break;
        }
    }
    Ok(total)
}

/// `events.purge`: events past `event_retention_days` (when set), done jobs and delivered
/// outbox messages past the job retention, each in bounded batches.
pub async fn purge(ctx: &Context, now: DateTime<Utc>) -> Result<PurgeReport, JobsError> {
    let mut report = PurgeReport::default();
    if ctx.event_retention_days > 0 {
        let cutoff = now - chrono::Duration::days(i64::from(ctx.event_retention_days));
        for sys in ctx.store.systems().await? {
            report.events += drain(|| async {
                Ok(ctx
                    .store
                    .purge_events_before(sys.id, cutoff, i64::from(PURGE_BATCH))
                    .await?)
            })
            .await?;
        }
    }
    report.jobs = drain(|| ctx.queue.purge_done(ctx.job_retention, PURGE_BATCH)).await?;
    report.outbox = drain(|| {
        ctx.dispatcher
            .purge_delivered(ctx.job_retention, PURGE_BATCH)
    })
    .await?;
    Ok(report)
}

/// The message id of a system's licence notification in the ISO week of `now`.
pub fn licence_message_id(system_id: i64, now: DateTime<Utc>) -> String {
    let w = now.iso_week();
    format!("licence-expiry:{system_id}:{}-W{:02}", w.year(), w.week())
}

/// `licence.check`: a `notify.licence_expiry` outbox message for each system whose licence is
/// past its soft expiry, at most one per system and ISO week, and a
/// `notify.licence_hard_expiry` once per system and licence past its hard expiry; how many
/// were written.
pub async fn check_licences(
    store: &Store,
    licence: &LicenceConfig,
    now: DateTime<Utc>,
) -> Result<usize, JobsError> {
    let mut written = 0;
    for sys in store.systems().await? {
        let status = load_status(store, licence, sys.id, now).await?;
        let Some(l) = status.licence() else {
            continue;
        };
        let w = now.iso_week();
        let (id, topic, payload) = match status.state() {
            LicenceState::SoftExpired { since } => (
                licence_message_id(sys.id, now),
                Topic::LicenceExpiry.as_str(),
                json!({
                    "system_id": sys.id,
                    "system_name": sys.name,
                    "messaging_language": sys.settings.messaging_language,
                    "state": "soft_expired",
                    "number": l.number,
                    "soft_expiry": since,
                    "hard_expiry": l.hard_expiry,
                    "iso_week": format!("{}-W{:02}", w.year(), w.week()),
                }),
            ),
            // Once per licence: the system is locked until a new licence is installed.
            LicenceState::HardExpired { since } => (
                format!("licence-hard-expiry:{}:{}", sys.id, l.number),
                Topic::LicenceHardExpiry.as_str(),
                json!({
                    "system_id": sys.id,
                    "system_name": sys.name,
                    "messaging_language": sys.settings.messaging_language,
                    "state": "hard_expired",
                    "number": l.number,
                    "soft_expiry": l.soft_expiry,
                    "hard_expiry": since,
                }),
            ),
            _ => continue,
        };
        let mut tx = store.write_tx().await?;
        if outbox::insert_with_id(&mut tx, &id, topic, &payload).await? {
            written += 1;
        }
        tx.commit().await?;
    }
    Ok(written)
}

/// `directory.sync`: runs the sync of one directory-sync plugin (`{"plugin", "full"}`) or,
/// for the periodic task, a full sync by every enabled directory-sync plugin. An unavailable
/// directory or a busy plugin is retried; a refused sync (invalid configuration, the
/// mass-deletion guard) goes to the dead letters at once, with the reason.
pub async fn directory_sync(
    plugins: Option<&PluginHost>,
    payload: &Value,
) -> Result<(), JobsError> {
    let Some(host) = plugins else {
        // The periodic slot (null payload) has nothing to sync without plugins; only an
        // explicit request for a plugin is an error.
        if payload.is_null() {
            return Ok(());
        }
        return Err(JobsError::Permanent("the plugin host is disabled".into()));
    };
    let targets: Vec<(String, bool)> = match payload {
        Value::Null => host
            .status()
            .plugins
            .into_iter()
            .filter(|p| p.world == Some(World::DirectorySync) && p.state == PluginState::Enabled)
            .map(|p| (p.name, true))
            .collect(),
        Value::Object(o) => {
            let name = o
                .get("plugin")
                .and_then(Value::as_str)
                .ok_or_else(|| JobsError::Permanent("directory.sync without `plugin`".into()))?;
            let full = o.get("full").and_then(Value::as_bool).unwrap_or(false);
            vec![(name.to_owned(), full)]
        }
        _ => {
            return Err(JobsError::Permanent(
                "directory.sync payload is not an object".into(),
            ));
        }
    };
    let mut retry = Vec::new();
    for (name, full) in targets {
        match host.sync(&name, full, false).await {
            Ok(Ok(r)) => tracing::info!(
                plugin = %name,
                full,
                staged = r.staged,
                created = r.created,
                updated = r.updated,
                unchanged = r.unchanged,
                deleted = r.deleted,
                skipped = r.skipped.len(),
                "directory sync done"
            ),
            Ok(Err(PluginError::Unavailable(m))) => retry.push(format!("{name}: {m}")),
            Ok(Err(e)) => {
                return Err(JobsError::Permanent(format!(
                    "{name}: {}",
                    plugin_error(&e)
                )));
            }
            Err(HostError::NotFound(_)) => {
                return Err(JobsError::Permanent(format!("no plugin `{name}`")));
            }
            // The periodic sync passes over a plugin the locking system is not licensed
            // for (it is asked again next period); a sync asked for by name is refused.
            Err(e @ HostError::Unlicensed { .. }) if payload.is_null() => {
                tracing::info!(plugin = %name, reason = %e, "periodic directory sync skipped");
            }
            Err(e @ HostError::Unlicensed { .. }) => {
                return Err(JobsError::Permanent(e.to_string()));
            }
            Err(e) => retry.push(format!("{name}: {e}")),
        }
    }
    if retry.is_empty() {
        Ok(())
    } else {
        Err(JobsError::failed(retry.join("; ")))
    }
}

/// A plugin's error as operators read it (`invalid: ...`, `not found: ...`).
pub fn plugin_error(e: &PluginError) -> String {
    match e {
        PluginError::Invalid(m) => format!("invalid: {m}"),
        PluginError::NotFound(m) => format!("not found: {m}"),
        PluginError::Denied(m) => format!("denied: {m}"),
        PluginError::Unavailable(m) => format!("unavailable: {m}"),
        PluginError::Other(m) => m.clone(),
    }
}

/// Delivers the outbox's `notify.*` messages through a notifier plugin (`[background]
/// notifier`); other topics go to the log. A notification the relay may or may not have
/// accepted (connection lost after the data) goes to the dead letters as `unknown`, so an
/// administrator decides whether to requeue it rather than risk a duplicate.
#[derive(Debug, Clone)]
pub struct PluginDeliver {
    pub host: PluginHost,
    pub notifier: String,
}

#[async_trait]
impl Deliver for PluginDeliver {
    async fn deliver(&self, m: &OutboxMessage) -> lockgate_jobs::Result<()> {
        // Every `notify.*` message goes to the notifier, which refuses topics it does not
        // know (a newer core's topic reaches an older plugin as a dead letter, not a loss).
        if !m.topic.starts_with(Topic::NOTIFY_PREFIX) {
            return LogDeliver.deliver(m).await;
        }
        let notification = Notification {
            id: m.message_id.clone(),
            topic: m.topic.clone(),
            payload: m.payload.to_string(),
        };
        match self.host.notify(&self.notifier, notification).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(NotifyError::RetryLater(why))) => Err(JobsError::failed(why)),
            Ok(Err(NotifyError::Failed(why))) => Err(JobsError::Permanent(why)),
            Ok(Err(NotifyError::Unknown(why))) => Err(JobsError::Permanent(format!(
                "delivery unknown: {why}; check with the recipients before requeueing"
            ))),
            // Disabled, backing off, busy or faulting: try again later.
            Err(e) => Err(JobsError::failed(e.to_string())),
        }
    }
}

/// Delivers outbox messages to the log (target `lockgate::outbox`, level info: topic, id,
/// size; never the payload, which may name persons) until a notifier takes over. A message
/// is marked delivered only after this returns; its row (with the payload) is kept for
/// `job_retention_days`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogDeliver;

#[async_trait]
impl Deliver for LogDeliver {
    async fn deliver(&self, m: &OutboxMessage) -> lockgate_jobs::Result<()> {
        tracing::info!(
            target: "lockgate::outbox",
            message_id = %m.message_id,
            topic = %m.topic,
            attempt = m.attempt,
            created_at = %m.created_at,
            // The payload may name persons (holders, emails): only its size is logged.
            payload_bytes = m.payload.to_string().len(),
            "outbox message"
        );
        Ok(())
    }
}

/// The running worker and dispatcher.
#[derive(Debug)]
pub struct Running {
    stop: watch::Sender<bool>,
    worker: JoinHandle<lockgate_jobs::Result<lockgate_jobs::WorkerReport>>,
    dispatcher: JoinHandle<lockgate_jobs::Result<lockgate_jobs::DispatchReport>>,
    grace: Duration,
}

/// Start the worker (handlers and periodic tasks) and the outbox dispatcher delivering with
/// `deliver`; `None` when `[background] enabled = false`. `grace`: how long running jobs may
/// finish after [`Running::stop`].
pub fn start(
    cfg: &BackgroundConfig,
    grace: Duration,
    store: &Store,
    licence: LicenceConfig,
    deliver: Arc<dyn Deliver>,
    plugins: Option<PluginHost>,
    pd_renew_before: chrono::Duration,
) -> Result<Option<Running>, JobsError> {
    if !cfg.enabled {
        tracing::warn!(
            "background runtime disabled: no periodic reconciliation, notifications or purge on this replica"
        );
        return Ok(None);
    }
    let mut ctx = Context::new(store.clone(), cfg, licence, plugins)?;
    ctx.pd_renew_before = pd_renew_before;
    let ctx = Arc::new(ctx);
    let mut worker = Worker::new(
        ctx.queue.clone(),
        WorkerConfig {
            concurrency: cfg.concurrency,
            claim_batch: u32::try_from(cfg.concurrency).unwrap_or(16).clamp(1, 64),
            shutdown_grace: grace,
            ..WorkerConfig::default()
        },
    )?;
    for (kind, h) in handlers(ctx.clone()) {
        worker.register(kind, h)?;
    }
    let worker = worker.with_periodic(periodic_tasks(cfg))?;
    tracing::info!(owner = %worker.owner(), concurrency = cfg.concurrency, "background worker started");
    let (stop, rx) = watch::channel(false);
    let worker = tokio::spawn(worker.run(rx.clone()));
    let dispatcher = ctx.dispatcher.clone();
    let dispatcher = tokio::spawn(async move { dispatcher.run(deliver.as_ref(), rx).await });
    Ok(Some(Running {
        stop,
        worker,
        dispatcher,
        grace,
    }))
}

impl Running {
    /// A handle that stops the runtime when `true` is sent (e.g. from the shutdown signal).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Stop claiming, let running jobs finish within the grace, and wait for both loops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        match self.worker.await {
            Ok(Ok(r)) => tracing::info!(?r, "background worker stopped"),
            Ok(Err(e)) => tracing::error!(error = %e, "background worker failed"),
            Err(e) => tracing::error!(error = %e, "background worker task ended abnormally"),
        }
        // The dispatcher finishes its current batch (each delivery is bounded by its timeout).
        match tokio::time::timeout(self.grace.max(Duration::from_secs(1)), self.dispatcher).await {
            Ok(Ok(Ok(r))) => tracing::info!(?r, "outbox dispatcher stopped"),
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "outbox dispatcher failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "outbox dispatcher task ended abnormally"),
            Err(_) => tracing::warn!("outbox dispatcher did not stop within the grace"),
        }
    }
}
