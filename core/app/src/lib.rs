//! lockgate's application layer: one method per use case. Each does the write, the
//! reconciliation it causes and the events and outbox messages it produces together, under
//! a [`WriteContext`] (system, scope, actor, now) whose clock is injected.
//!
//! Architecture invariant: the API handlers, the plugin gateway operations, the background
//! tasks and the CLI change a locking system's jobs and lifecycles through [`App`]; they
//! do not call the store's job or lifecycle writes themselves.

mod devices;
mod jobs;
mod keys;
mod objects;
mod persons;
mod scim;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use lockgate_engine::jobs::LoadRefusal;
use lockgate_model::{ObjectKind, system::LockingSystem};
pub use lockgate_store::WriteContext;
use lockgate_store::{
    Actor, Scope, Store, StoreError,
    reconciliation::{RECONCILED_KINDS, ReconcileReport},
};

pub use devices::{
    DeliverableJob, DeviceOutcome, DeviceRef, DeviceReport, Enrolment, EnrolmentCode,
    HeartbeatAnswer, MAX_ENROLMENT_CODE_MINUTES, MAX_KRL_VALIDITY_HOURS, MAX_MISSED_HEARTBEATS,
    MAX_REPORT_KEY, PdAuthority, program_hash,
};
pub use jobs::{CarryRefusal, JobReport};
pub use lockgate_engine::jobs::{JobKind, JobState, JobTarget, Priority, Reporter, Transition};
pub use lockgate_store::reconciliation::JobRecord;
pub use persons::PersonMove;

/// Where the application layer reads the time. Tests set it; the gateway uses the system
/// clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that says what it is told (tests).
#[derive(Debug)]
pub struct FixedClock(Mutex<DateTime<Utc>>);

impl FixedClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a use case was refused. One error type at this crate's boundary.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine's C-key loading rules refuse the job.
    #[error(transparent)]
    NotLoadable(#[from] LoadRefusal),
    /// The job cannot be carried by that user key.
    #[error(transparent)]
    NotCarriable(#[from] CarryRefusal),
    /// A field of the request names something that does not fit.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    /// A system setting switches the use case off.
    #[error("{0}")]
    SettingOff(String),
    /// Nothing by that id in the caller's scope.
    #[error("{0}")]
    NotFound(String),
}

impl AppError {
    pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Field {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// The application layer over one store.
#[derive(Debug, Clone)]
pub struct App {
    store: Store,
    clock: Arc<dyn Clock>,
    /// The PD certificate authority, when remote PD identity is configured.
    pd_authority: Option<Arc<devices::PdAuthority>>,
}

impl App {
    pub fn new(store: Store) -> Self {
        Self::with_clock(store, Arc::new(SystemClock))
    }

    pub fn with_clock(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            pd_authority: None,
        }
    }

    /// The same application layer with the gateway's PD certificate authority (enrolment,
    /// uploaded certificates).
    pub fn with_pd_authority(mut self, authority: Arc<devices::PdAuthority>) -> Self {
        self.pd_authority = Some(authority);
        self
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A write context at the clock's current time.
    pub fn context(&self, system: &LockingSystem, scope: &Scope, actor: &Actor) -> WriteContext {
        WriteContext {
            system: system.clone(),
            scope: scope.clone(),
            actor: actor.clone(),
            now: self.now(),
        }
    }

    /// Reconcile after a committed change of the objects `ids` of `kind` (none: a change
    /// whose reach is not worked out, e.g. a deletion or an import, which reconciles the
    /// whole system). A failed run is logged and repeated by the next change, the periodic
    /// full run or `POST /api/v1/reconcile`: jobs are derived from the stored state, so
    /// nothing is lost.
    pub async fn reconcile_after(&self, cx: &WriteContext, kind: ObjectKind, ids: &[i64]) {
        if !RECONCILED_KINDS.contains(&kind) {
            return;
        }
        let result = async {
            // Under flexible revalidation a key's entry for a cylinder takes the interval
            // of the cylinder's group (manual §8.1.6), so a cylinder change can reach any
            // key: the whole system is reconciled.
            let scope = if kind == ObjectKind::Cylinder && cx.system.settings.flexible_revalidation
            {
                lockgate_store::reconciliation::ReconcileScope::full()
            } else {
                self.store.scope_of_change(cx.system.id, kind, ids).await?
            };
            self.store
                .reconcile_scope(&cx.system, &cx.actor, cx.now, &scope)
                .await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, system_id = cx.system.id, "reconciliation after a change failed; it runs again on the next change");
        }
    }

    /// Reconcile the whole system now.
    pub async fn reconcile(&self, cx: &WriteContext) -> Result<ReconcileReport> {
        Ok(self.store.reconcile(&cx.system, &cx.actor, cx.now).await?)
    }
}
