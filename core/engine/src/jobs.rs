//! The job lifecycle (`DOMAIN.md` §4): states and transitions, approvals, loading a
//! cylinder programming job onto a C-key (permission and capability rules, the cylinder
//! "locked by" rule, assignment to another administrator's C-key), blocking jobs carried
//! by user keys, and failed jobs recreated on return.

use std::collections::BTreeSet;

use lockgate_model::{
    FirmwareVersion, ObjectId,
    ckey::CKeyKind,
    key::{Generation, KeyType},
};
use serde::{Deserialize, Serialize};

use crate::reconcile::CylinderAction;

/// What a job does (`DOMAIN.md` §4). Stored as its [`JobKind::as_str`] text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Written to a key at a remote PD (access list, validity, schedule, PIN, firmware).
    RemoteUpdate,
    /// Written to a cylinder by a C-key (or a user key carrying a block).
    CylinderProgramming,
    /// Reading the audit trail of a key (at a remote PD) or of a cylinder (by a C-key).
    AuditTrail,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [
        JobKind::RemoteUpdate,
        JobKind::CylinderProgramming,
        JobKind::AuditTrail,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            JobKind::RemoteUpdate => "remote_update",
            JobKind::CylinderProgramming => "cylinder_programming",
            JobKind::AuditTrail => "audit_trail",
        }
    }

    /// Parse a stored kind; an unknown text is an error, never a fallback.
    pub fn parse(s: &str) -> Result<Self, UnknownValue> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownValue::new("job kind", s))
    }
}

/// What a job is about: a key (programmed at a PD) or a cylinder (programmed by a C-key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobTarget {
    Key,
    Cylinder,
}

impl JobTarget {
    pub const fn as_str(self) -> &'static str {
        match self {
            JobTarget::Key => "key",
            JobTarget::Cylinder => "cylinder",
        }
    }

    pub fn parse(s: &str) -> Result<Self, UnknownValue> {
        match s {
            "key" => Ok(JobTarget::Key),
            "cylinder" => Ok(JobTarget::Cylinder),
            other => Err(UnknownValue::new("job target", other)),
        }
    }
}

/// A stored text that names no known value (a kind, a state, a priority).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("unknown {what} '{value}'")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

impl UnknownValue {
    pub fn new(what: &'static str, value: &str) -> Self {
        Self {
            what,
            value: value.chars().take(40).collect(),
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    Created,
    /// Audit-trail requests wait for an approver when approvals are on.
    AwaitingApproval,
    /// On a C-key (cylinder jobs); the cylinder is then locked by that C-key.
    Loaded {
        c_key: ObjectId,
    },
    /// A block job carried to its cylinder by a user key ("block lost key with user keys").
    Carried {
        key: ObjectId,
    },
    Finished,
    Failed {
        reason: String,
    },
    Cancelled,
    /// A newer job for the same key or cylinder took over.
    Replaced {
        by: ObjectId,
    },
}

/// The names of the job states, as stored and as plugins see them (`wit/connector`).
pub const JOB_STATE_NAMES: [&str; 8] = [
    "created",
    "awaiting_approval",
    "loaded",
    "carried",
    "finished",
    "failed",
    "cancelled",
    "replaced",
];

impl JobState {
    /// Finished, failed, cancelled or replaced: nothing more happens to the job.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobState::Finished
                | JobState::Failed { .. }
                | JobState::Cancelled
                | JobState::Replaced { .. }
        )
    }

    /// On its way to the hardware (on a C-key or carried by a user key): the cylinder is
    /// locked, and reconciliation neither replaces nor cancels the job.
    pub fn is_out(&self) -> bool {
        matches!(self, JobState::Loaded { .. } | JobState::Carried { .. })
    }

    /// The stored name (one of [`JOB_STATE_NAMES`]).
    pub const fn name(&self) -> &'static str {
        match self {
            JobState::Created => "created",
            JobState::AwaitingApproval => "awaiting_approval",
            JobState::Loaded { .. } => "loaded",
            JobState::Carried { .. } => "carried",
            JobState::Finished => "finished",
            JobState::Failed { .. } => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Replaced { .. } => "replaced",
        }
    }

    /// Rebuild a state from its stored name and the columns that carry its data. An
    /// unknown name, or a state without the column it needs, is an error.
    pub fn from_stored(
        name: &str,
        loaded_on: Option<ObjectId>,
        carried_by: Option<ObjectId>,
        replaced_by: Option<ObjectId>,
        reason: Option<&str>,
    ) -> Result<Self, UnknownValue> {
        let missing = |what| UnknownValue::new(what, name);
        Ok(match name {
            "created" => JobState::Created,
            "awaiting_approval" => JobState::AwaitingApproval,
            "loaded" => JobState::Loaded {
                c_key: loaded_on.ok_or_else(|| missing("loaded job without its C-key"))?,
            },
            "carried" => JobState::Carried {
                key: carried_by.ok_or_else(|| missing("carried job without its key"))?,
            },
            "finished" => JobState::Finished,
            "failed" => JobState::Failed {
                reason: reason.unwrap_or_default().to_owned(),
            },
            "cancelled" => JobState::Cancelled,
            "replaced" => JobState::Replaced {
                by: replaced_by.unwrap_or_default(),
            },
            other => return Err(UnknownValue::new("job state", other)),
        })
    }
}

/// Who reports a job executed or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Reporter {
    /// A key at a remote PD (its own remote update or audit-trail read).
    Key,
    /// The C-key a cylinder job is loaded on.
    CKey { id: ObjectId },
    /// The user key carrying a block job.
    CarryingKey { id: ObjectId },
}

/// Every way a job changes. The store applies the state [`next_state`] returns and
/// records the transition's [`Transition::event`]; nothing else changes a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transition", rename_all = "snake_case")]
pub enum Transition {
    /// An approver allows an audit-trail request.
    Approve,
    /// An approver refuses an audit-trail request.
    Reject,
    /// Onto a C-key (after [`can_load`] said yes).
    Load { c_key: ObjectId },
    /// Onto a user key carrying a block (after [`can_carry_block`] said yes).
    Carry { key: ObjectId },
    /// Prepared for pick-up by another administrator's C-key; the state does not change.
    Assign { c_key: ObjectId },
    /// The hardware reports the job executed.
    Finish { reporter: Reporter },
    /// The hardware reports the job failed.
    Fail { reporter: Reporter, reason: String },
    /// Nothing more is needed (reconciliation, a rejected request, a lost key).
    Cancel,
    /// A newer job for the same target takes over.
    Replace { by: ObjectId },
}

impl Transition {
    /// The action of the job event this transition records.
    pub const fn event(&self) -> &'static str {
        match self {
            Transition::Approve => "approved",
            Transition::Reject => "rejected",
            Transition::Load { .. } => "loaded",
            Transition::Carry { .. } => "carried",
            Transition::Assign { .. } => "assigned",
            Transition::Finish { .. } => "finished",
            Transition::Fail { .. } => "failed",
            Transition::Cancel => "cancelled",
            Transition::Replace { .. } => "replaced",
        }
    }
}

/// The rule a refused transition breaks (the API answers 409 with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("a {from} {kind} job cannot be {to}: {rule}")]
pub struct TransitionRefused {
    pub kind: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub rule: &'static str,
}

/// Whether a job of `kind` about `target` is executed by a C-key at the cylinder.
pub fn runs_on_c_key(kind: JobKind, target: JobTarget) -> bool {
    target == JobTarget::Cylinder && kind != JobKind::RemoteUpdate
}

/// The one place job states change (`DOMAIN.md` §4): the state a job in `state` moves to
/// by `t`, or the rule that refuses it.
///
/// Architecture invariant: every job state change in lockgate goes through this function;
/// the store writes the state it returns, conditional on the state it was computed from.
pub fn next_state(
    kind: JobKind,
    target: JobTarget,
    state: &JobState,
    t: &Transition,
) -> Result<JobState, TransitionRefused> {
    let refuse = |rule: &'static str| TransitionRefused {
        kind: kind.as_str(),
        from: state.name(),
        to: t.event(),
        rule,
    };
    if state.is_final() {
        return Err(refuse("the job is closed"));
    }
    let on_c_key = runs_on_c_key(kind, target);
    match t {
        Transition::Approve | Transition::Reject => {
            if *state != JobState::AwaitingApproval {
                return Err(refuse("only a request awaiting approval is decided"));
            }
            Ok(if matches!(t, Transition::Approve) {
                JobState::Created
            } else {
                JobState::Cancelled
            })
        }
        Transition::Load { c_key } => {
            if !on_c_key {
                return Err(refuse("only cylinder jobs are loaded onto a C-key"));
            }
            if *state != JobState::Created {
                return Err(refuse("only a created job is loaded"));
            }
            Ok(JobState::Loaded { c_key: *c_key })
        }
        Transition::Carry { key } => {
            if kind != JobKind::CylinderProgramming {
                return Err(refuse("only cylinder programming (block) jobs are carried"));
            }
            if *state != JobState::Created {
                return Err(refuse("only a created job is carried"));
            }
            Ok(JobState::Carried { key: *key })
        }
        Transition::Assign { .. } => {
            if !on_c_key {
                return Err(refuse("only cylinder jobs are assigned to a C-key"));
            }
            if !matches!(state, JobState::Created | JobState::AwaitingApproval) {
                return Err(refuse("a job on its way to the cylinder is not reassigned"));
            }
            Ok(state.clone())
        }
        Transition::Finish { reporter } | Transition::Fail { reporter, .. } => {
            let reported_by_holder = match (state, reporter) {
                (JobState::AwaitingApproval, _) => {
                    return Err(refuse("the request awaits an approver's decision"));
                }
                (JobState::Created, Reporter::Key) => !on_c_key,
                (JobState::Created, _) if on_c_key => {
                    return Err(refuse(
                        "a cylinder job is executed by the C-key it is loaded on; load it first",
                    ));
                }
                (JobState::Loaded { c_key }, Reporter::CKey { id }) => c_key == id,
                (JobState::Carried { key }, Reporter::CarryingKey { id }) => key == id,
                _ => false,
            };
            if !reported_by_holder {
                return Err(refuse(
                    "only the key or C-key holding the job reports on it",
                ));
            }
            Ok(match t {
                Transition::Fail { reason, .. } => JobState::Failed {
                    reason: reason.clone(),
                },
                _ => JobState::Finished,
            })
        }
        Transition::Cancel => {
            if state.is_out() {
                return Err(refuse(
                    "the job is on its way to the cylinder; it finishes or fails there",
                ));
            }
            Ok(JobState::Cancelled)
        }
        Transition::Replace { by } => {
            if state.is_out() {
                return Err(refuse(
                    "the job is on its way to the cylinder; the cylinder is locked until it reports",
                ));
            }
            Ok(JobState::Replaced { by: *by })
        }
    }
}

/// Priority of a job (lost-key blocks are high).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }

    pub fn parse(s: &str) -> Result<Self, UnknownValue> {
        match s {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            other => Err(UnknownValue::new("job priority", other)),
        }
    }
}

/// A cylinder programming job as far as the lifecycle rules need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CylinderJob {
    pub id: ObjectId,
    pub cylinder: ObjectId,
    pub actions: BTreeSet<CylinderAction>,
    /// Reprogramming: memory wiped (incl. audit trail), then access list, blocked list and offset restored.
    pub reprogram: bool,
    /// Read the cylinder's audit trail.
    pub audit_trail: bool,
    /// The access change touches C-key groups (only the master may execute it).
    pub changes_c_key_access: bool,
    pub priority: Priority,
    pub state: JobState,
    /// Prepared for pick-up by this C-key at a remote PD.
    pub assigned_to: Option<ObjectId>,
}

/// The C-key (and its administrator's rights) trying to load a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadingCKey {
    pub id: ObjectId,
    pub kind: CKeyKind,
    pub blocked: bool,
    /// The administrator holds cylinder programming at Full.
    pub programming_permission: bool,
    pub reprogramming_right: bool,
    pub group_programming: bool,
}

/// Why a job cannot be loaded on a C-key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum LoadRefusal {
    #[error("the job is {state}, not waiting to be loaded")]
    NotLoadable { state: String },
    #[error("the C-key is blocked")]
    CKeyBlocked,
    #[error("the administrator lacks the cylinder-programming permission")]
    NoProgrammingPermission,
    #[error("the cylinder is locked by C-key {by}, which holds its pending job")]
    LockedByOther { by: ObjectId },
    #[error("the job is assigned to C-key {to}")]
    AssignedToOther { to: ObjectId },
    #[error("changing C-key access needs the master C-key")]
    NeedsMaster,
    #[error("a cylinder-group change needs a C-key with the group-programming capability")]
    NeedsGroupProgramming,
    #[error("reprogramming needs the master C-key or a C-key with the reprogramming right")]
    NeedsReprogrammingRight,
}

/// Check whether `c_key` may load `job`; `locked_by` is the C-key holding another
/// pending job of the same cylinder, if any.
pub fn can_load(
    job: &CylinderJob,
    c_key: &LoadingCKey,
    locked_by: Option<ObjectId>,
) -> Result<(), LoadRefusal> {
    if job.state != JobState::Created {
        return Err(LoadRefusal::NotLoadable {
            state: job.state.name().to_owned(),
        });
    }
    if c_key.blocked {
        return Err(LoadRefusal::CKeyBlocked);
    }
    if !c_key.programming_permission {
        return Err(LoadRefusal::NoProgrammingPermission);
    }
    if let Some(by) = locked_by.filter(|by| *by != c_key.id) {
        return Err(LoadRefusal::LockedByOther { by });
    }
    if let Some(to) = job.assigned_to.filter(|to| *to != c_key.id) {
        return Err(LoadRefusal::AssignedToOther { to });
    }
    let master = c_key.kind == CKeyKind::Master;
    if job.changes_c_key_access && !master {
        return Err(LoadRefusal::NeedsMaster);
    }
    if job.actions.contains(&CylinderAction::GroupChange) && !(master || c_key.group_programming) {
        return Err(LoadRefusal::NeedsGroupProgramming);
    }
    if job.reprogram && !(master || c_key.reprogramming_right) {
        return Err(LoadRefusal::NeedsReprogrammingRight);
    }
    Ok(())
}

impl CylinderJob {
    /// A new job: awaiting approval when it reads an audit trail and approvals are on.
    pub fn initial_state(audit_trail: bool, approvals_on: bool) -> JobState {
        if audit_trail && approvals_on {
            JobState::AwaitingApproval
        } else {
            JobState::Created
        }
    }

    fn kind(&self) -> JobKind {
        if self.audit_trail && self.actions.is_empty() && !self.reprogram {
            JobKind::AuditTrail
        } else {
            JobKind::CylinderProgramming
        }
    }

    /// Apply `t` through [`next_state`].
    pub fn apply(&mut self, t: &Transition) -> Result<(), TransitionRefused> {
        self.state = next_state(self.kind(), JobTarget::Cylinder, &self.state, t)?;
        if let Transition::Assign { c_key } = t {
            self.assigned_to = Some(*c_key);
        }
        Ok(())
    }

    /// An approver's decision on an audit-trail request.
    pub fn decide_approval(&mut self, approved: bool) -> Result<(), TransitionRefused> {
        self.apply(if approved {
            &Transition::Approve
        } else {
            &Transition::Reject
        })
    }

    /// Load onto a C-key: the loading rules ([`can_load`]), then the transition.
    pub fn load(
        &mut self,
        c_key: &LoadingCKey,
        locked_by: Option<ObjectId>,
    ) -> Result<(), LoadRefusal> {
        can_load(self, c_key, locked_by)?;
        self.apply(&Transition::Load { c_key: c_key.id })
            .map_err(|e| LoadRefusal::NotLoadable {
                state: e.from.to_owned(),
            })
    }

    /// The C-key holding the job reports it executed at the cylinder.
    pub fn finish(&mut self) -> Result<(), TransitionRefused> {
        let reporter = self.holder();
        self.apply(&Transition::Finish { reporter })
    }

    /// The C-key holding the job reports it failed at the cylinder.
    pub fn fail(&mut self, reason: impl Into<String>) -> Result<(), TransitionRefused> {
        let reporter = self.holder();
        self.apply(&Transition::Fail {
            reporter,
            reason: reason.into(),
        })
    }

    fn holder(&self) -> Reporter {
        match self.state {
            JobState::Loaded { c_key } => Reporter::CKey { id: c_key },
            JobState::Carried { key } => Reporter::CarryingKey { id: key },
            _ => Reporter::Key,
        }
    }

    /// Cancel a job that has not left for the cylinder.
    pub fn cancel(&mut self) -> Result<(), TransitionRefused> {
        self.apply(&Transition::Cancel)
    }

    /// A newer job for the same cylinder takes over.
    pub fn replace(&mut self, by: ObjectId) -> Result<(), TransitionRefused> {
        self.apply(&Transition::Replace { by })
    }

    /// The C-key holding the cylinder's pending job, if loaded.
    pub fn locked_by(&self) -> Option<ObjectId> {
        match self.state {
            JobState::Loaded { c_key } => Some(c_key),
            _ => None,
        }
    }

    /// A failed job brought back to a remote PD is recreated as a new job with `new_id`.
    pub fn recreate_failed(&self, new_id: ObjectId) -> Option<CylinderJob> {
        matches!(self.state, JobState::Failed { .. }).then(|| CylinderJob {
            id: new_id,
            state: JobState::Created,
            ..self.clone()
        })
    }
}

/// Whether a user key may carry a block job to its cylinder ("block lost key with user
/// keys"): generation 2 dynamic keys with firmware 12.2 or later and free memory.
pub fn can_carry_block(
    job: &CylinderJob,
    key_type: KeyType,
    generation: Option<Generation>,
    firmware: Option<&FirmwareVersion>,
    free_slots: u32,
) -> bool {
    let only_blocks = !job.actions.is_empty()
        && job.actions.iter().all(|a| *a == CylinderAction::Block)
        && !job.reprogram
        && !job.audit_trail;
    only_blocks
        && key_type == KeyType::Dynamic
        && generation == Some(Generation::Gen2)
        && firmware.is_some_and(|f| *f >= FirmwareVersion::new(&[12, 2]))
        && free_slots > 0
}

/// Recommended most jobs on one C-key assigned for pick-up.
pub const RECOMMENDED_JOBS_PER_C_KEY: usize = 30;

#[cfg(test)]
mod tests {
    use super::*;

    fn job(actions: &[CylinderAction]) -> CylinderJob {
        CylinderJob {
            id: 1,
            cylinder: 10,
            actions: actions.iter().copied().collect(),
            reprogram: false,
            audit_trail: false,
            changes_c_key_access: false,
            priority: Priority::Normal,
            state: JobState::Created,
            assigned_to: None,
        }
    }

    fn ckey(id: ObjectId, kind: CKeyKind) -> LoadingCKey {
        LoadingCKey {
            id,
            kind,
            blocked: false,
            programming_permission: true,
            reprogramming_right: false,
            group_programming: false,
        }
    }

    /// Every transition from every state, for every kind and target, against `DOMAIN.md`
    /// §4: approvals first, cylinder jobs only through the C-key (or user key) holding
    /// them, nothing replaces or cancels a job on its way to the cylinder, closed is closed.
    #[test]
    fn transition_table() {
        use JobKind::*;
        use JobTarget::{Cylinder as Cyl, Key as K};
        let loaded = JobState::Loaded { c_key: 5 };
        let carried = JobState::Carried { key: 9 };
        let by_ckey = |id| Reporter::CKey { id };
        let fin = |reporter| Transition::Finish { reporter };
        let fail = |reporter| Transition::Fail {
            reporter,
            reason: "no answer".into(),
        };
        type Row = (JobKind, JobTarget, JobState, Transition, Option<JobState>);
        let rows: Vec<Row> = vec![
            // Approvals decide only requests awaiting them.
            (
                AuditTrail,
                Cyl,
                JobState::AwaitingApproval,
                Transition::Approve,
                Some(JobState::Created),
            ),
            (
                AuditTrail,
                K,
                JobState::AwaitingApproval,
                Transition::Reject,
                Some(JobState::Cancelled),
            ),
            (AuditTrail, K, JobState::Created, Transition::Approve, None),
            (
                CylinderProgramming,
                Cyl,
                JobState::Created,
                Transition::Reject,
                None,
            ),
            // Awaiting approval: nothing else happens to it.
            (
                AuditTrail,
                Cyl,
                JobState::AwaitingApproval,
                Transition::Load { c_key: 5 },
                None,
            ),
            (
                AuditTrail,
                K,
                JobState::AwaitingApproval,
                fin(Reporter::Key),
                None,
            ),
            (
                AuditTrail,
                Cyl,
                JobState::AwaitingApproval,
                fin(by_ckey(5)),
                None,
            ),
            // Loading: cylinder jobs only, created only.
            (
                CylinderProgramming,
                Cyl,
                JobState::Created,
                Transition::Load { c_key: 5 },
                Some(loaded.clone()),
            ),
            (
                AuditTrail,
                Cyl,
                JobState::Created,
                Transition::Load { c_key: 5 },
                Some(loaded.clone()),
            ),
            (
                RemoteUpdate,
                K,
                JobState::Created,
                Transition::Load { c_key: 5 },
                None,
            ),
            (
                AuditTrail,
                K,
                JobState::Created,
                Transition::Load { c_key: 5 },
                None,
            ),
            (
                CylinderProgramming,
                Cyl,
                loaded.clone(),
                Transition::Load { c_key: 6 },
                None,
            ),
            // Carrying: created cylinder programming jobs only.
            (
                CylinderProgramming,
                Cyl,
                JobState::Created,
                Transition::Carry { key: 9 },
                Some(carried.clone()),
            ),
            (
                AuditTrail,
                Cyl,
                JobState::Created,
                Transition::Carry { key: 9 },
                None,
            ),
            (
                CylinderProgramming,
                Cyl,
                loaded.clone(),
                Transition::Carry { key: 9 },
                None,
            ),
            // Assignment keeps the state.
            (
                CylinderProgramming,
                Cyl,
                JobState::Created,
                Transition::Assign { c_key: 6 },
                Some(JobState::Created),
            ),
            (
                CylinderProgramming,
                Cyl,
                loaded.clone(),
                Transition::Assign { c_key: 6 },
                None,
            ),
            (
                RemoteUpdate,
                K,
                JobState::Created,
                Transition::Assign { c_key: 6 },
                None,
            ),
            // Finishing: keys report their own jobs; cylinder jobs by their holder only.
            (
                RemoteUpdate,
                K,
                JobState::Created,
                fin(Reporter::Key),
                Some(JobState::Finished),
            ),
            (
                AuditTrail,
                K,
                JobState::Created,
                fin(Reporter::Key),
                Some(JobState::Finished),
            ),
            (RemoteUpdate, K, JobState::Created, fin(by_ckey(5)), None),
            (
                CylinderProgramming,
                Cyl,
                JobState::Created,
                fin(Reporter::Key),
                None,
            ),
            (
                CylinderProgramming,
                Cyl,
                JobState::Created,
                fin(by_ckey(5)),
                None,
            ),
            (
                CylinderProgramming,
                Cyl,
                loaded.clone(),
                fin(by_ckey(5)),
                Some(JobState::Finished),
            ),
            (
                CylinderProgramming,
                Cyl,
                loaded.clone(),
                fin(by_ckey(6)),
                None,
            ),
            (
                AuditTrail,
                Cyl,
                loaded.clone(),
                fin(by_ckey(5)),
                Some(JobState::Finished),
            ),
            (
                CylinderProgramming,
                Cyl,
                carried.clone(),
                fin(Reporter::CarryingKey { id: 9 }),
                Some(JobState::Finished),
            ),
            (
                CylinderProgramming,
                Cyl,
                carried.clone(),
                fin(by_ckey(5)),
                None,
            ),
            // Failing: the same reporters.
            (
                CylinderProgramming,
                Cyl,
                loaded.clone(),
                fail(by_ckey(5)),
                Some(JobState::Failed {
                    reason: "no answer".into(),
                }),
            ),
            (
                CylinderProgramming,
                Cyl,
                JobState::Created,
                fail(by_ckey(5)),
                None,
            ),
            (
                RemoteUpdate,
                K,
                JobState::Created,
                fail(Reporter::Key),
                Some(JobState::Failed {
                    reason: "no answer".into(),
                }),
            ),
            // Cancelling and replacing: never a job on its way to the cylinder.
            (
                CylinderProgramming,
                Cyl,
                JobState::Created,
                Transition::Cancel,
                Some(JobState::Cancelled),
            ),
            (
                AuditTrail,
                K,
                JobState::AwaitingApproval,
                Transition::Cancel,
                Some(JobState::Cancelled),
            ),
            (
                CylinderProgramming,
                Cyl,
                loaded.clone(),
                Transition::Cancel,
                None,
            ),
            (
                CylinderProgramming,
                Cyl,
                carried.clone(),
                Transition::Cancel,
                None,
            ),
            (
                RemoteUpdate,
                K,
                JobState::Created,
                Transition::Replace { by: 7 },
                Some(JobState::Replaced { by: 7 }),
            ),
            (
                CylinderProgramming,
                Cyl,
                loaded.clone(),
                Transition::Replace { by: 7 },
                None,
            ),
        ];
        let mut rows = rows;
        // Closed is closed: every transition from every final state is refused.
        for closed in [
            JobState::Finished,
            JobState::Failed { reason: "x".into() },
            JobState::Cancelled,
            JobState::Replaced { by: 3 },
        ] {
            for t in [
                Transition::Approve,
                Transition::Load { c_key: 5 },
                Transition::Carry { key: 9 },
                Transition::Assign { c_key: 5 },
                fin(Reporter::Key),
                fin(by_ckey(5)),
                Transition::Cancel,
                Transition::Replace { by: 4 },
            ] {
                rows.push((CylinderProgramming, Cyl, closed.clone(), t, None));
            }
        }
        for (kind, target, from, t, expected) in rows {
            let got = next_state(kind, target, &from, &t);
            match (&got, &expected) {
                (Ok(s), Some(e)) => assert_eq!(s, e, "{kind:?} {target:?} {from:?} by {t:?}"),
                (Err(refused), None) => {
                    assert_eq!(refused.from, from.name());
                    assert_eq!(refused.to, t.event());
                    assert!(!refused.rule.is_empty());
                }
                _ => panic!(
                    "{kind:?} {target:?} {from:?} by {t:?}: got {got:?}, expected {expected:?}"
                ),
            }
        }
    }

    #[test]
    fn stored_names_round_trip() {
        for s in [
            JobState::Created,
            JobState::AwaitingApproval,
            JobState::Loaded { c_key: 4 },
            JobState::Carried { key: 8 },
            JobState::Finished,
            JobState::Failed { reason: "r".into() },
            JobState::Cancelled,
            JobState::Replaced { by: 2 },
        ] {
            assert!(JOB_STATE_NAMES.contains(&s.name()));
            let (loaded, carried, replaced, reason) = match &s {
                JobState::Loaded { c_key } => (Some(*c_key), None, None, None),
                JobState::Carried { key } => (None, Some(*key), None, None),
                JobState::Replaced { by } => (None, None, Some(*by), None),
                JobState::Failed { reason } => (None, None, None, Some(reason.as_str())),
                _ => (None, None, None, None),
            };
            assert_eq!(
                JobState::from_stored(s.name(), loaded, carried, replaced, reason),
                Ok(s.clone())
            );
        }
        assert_eq!(
            JobState::from_stored("exploded", None, None, None, None),
            Err(UnknownValue::new("job state", "exploded"))
        );
        assert!(JobState::from_stored("loaded", None, None, None, None).is_err());
        assert!(JobKind::parse("remote_update").is_ok());
        assert!(JobKind::parse("teleport").is_err());
        assert!(Priority::parse("urgent").is_err());
        assert!(JobTarget::parse("door").is_err());
    }

    #[test]
    fn loading_rules_table() {
        use CylinderAction as A;
        let normal = ckey(5, CKeyKind::Normal);
        let master = ckey(1, CKeyKind::Master);
        let mut grouping = ckey(6, CKeyKind::Normal);
        grouping.group_programming = true;
        let mut reprogrammer = ckey(7, CKeyKind::SubMaster);
        reprogrammer.reprogramming_right = true;
        let mut no_perm = ckey(8, CKeyKind::Normal);
        no_perm.programming_permission = false;
        let mut blocked = ckey(9, CKeyKind::Normal);
        blocked.blocked = true;

        let access = job(&[A::AccessList]);
        let group = job(&[A::GroupChange]);
        let mut reprogram = job(&[]);
        reprogram.reprogram = true;
        let mut c_key_access = job(&[A::AccessList]);
        c_key_access.changes_c_key_access = true;
        let mut assigned = job(&[A::AccessList]);
        assigned.assigned_to = Some(6);

        type Row<'a> = (
            &'a CylinderJob,
            &'a LoadingCKey,
            Option<ObjectId>,
            Result<(), LoadRefusal>,
        );
        let rows: Vec<Row<'_>> = vec![
            (&access, &normal, None, Ok(())),
            (
                &access,
                &no_perm,
                None,
                Err(LoadRefusal::NoProgrammingPermission),
            ),
            (&access, &blocked, None, Err(LoadRefusal::CKeyBlocked)),
            (
                &access,
                &normal,
                Some(6),
                Err(LoadRefusal::LockedByOther { by: 6 }),
            ),
            (&access, &normal, Some(5), Ok(())),
            (
                &group,
                &normal,
                None,
                Err(LoadRefusal::NeedsGroupProgramming),
            ),
            (&group, &grouping, None, Ok(())),
            (&group, &master, None, Ok(())),
            (
                &reprogram,
                &normal,
                None,
                Err(LoadRefusal::NeedsReprogrammingRight),
            ),
            (&reprogram, &reprogrammer, None, Ok(())),
            (&reprogram, &master, None, Ok(())),
            (
                &c_key_access,
                &reprogrammer,
                None,
                Err(LoadRefusal::NeedsMaster),
            ),
            (&c_key_access, &master, None, Ok(())),
            (
                &assigned,
                &normal,
                None,
                Err(LoadRefusal::AssignedToOther { to: 6 }),
            ),
            (&assigned, &grouping, None, Ok(())),
        ];
        for (j, k, locked, expected) in rows {
            assert_eq!(
                can_load(j, k, locked),
                expected,
                "job {:?} on C-key {}",
                j.actions,
                k.id
            );
        }
    }

    #[test]
    fn lifecycle_transitions() {
        let mut j = job(&[CylinderAction::AccessList]);
        let k = ckey(5, CKeyKind::Normal);
        assert!(j.finish().is_err(), "not loaded yet");
        j.load(&k, None).expect("loads");
        assert_eq!(j.locked_by(), Some(5));
        assert!(matches!(
            j.load(&k, None),
            Err(LoadRefusal::NotLoadable { .. })
        ));
        j.fail("cylinder did not answer").expect("fails");
        let again = j.recreate_failed(2).expect("recreated");
        assert_eq!((again.id, again.state.clone()), (2, JobState::Created));
        assert!(j.cancel().is_err(), "final states stay");
        let mut r = job(&[CylinderAction::Block]);
        r.replace(3).expect("replaced");
        assert_eq!(r.state, JobState::Replaced { by: 3 });
    }

    #[test]
    fn approvals() {
        assert_eq!(
            CylinderJob::initial_state(true, true),
            JobState::AwaitingApproval
        );
        assert_eq!(CylinderJob::initial_state(true, false), JobState::Created);
        assert_eq!(CylinderJob::initial_state(false, true), JobState::Created);
        let mut j = job(&[]);
        j.audit_trail = true;
        j.state = JobState::AwaitingApproval;
        assert!(matches!(
            j.load(&ckey(1, CKeyKind::Master), None),
            Err(LoadRefusal::NotLoadable { .. })
        ));
        j.decide_approval(true).expect("approved");
        assert_eq!(j.state, JobState::Created);
        assert!(j.decide_approval(true).is_err());
        let mut r = job(&[]);
        r.state = JobState::AwaitingApproval;
        r.decide_approval(false).expect("rejected");
        assert_eq!(r.state, JobState::Cancelled);
    }

    #[test]
    fn blocking_keys() {
        let block = job(&[CylinderAction::Block]);
        let fw = |s: &str| s.parse::<FirmwareVersion>().expect("fw");
        assert!(can_carry_block(
            &block,
            KeyType::Dynamic,
            Some(Generation::Gen2),
            Some(&fw("12.2")),
            3
        ));
        assert!(!can_carry_block(
            &block,
            KeyType::Dynamic,
            Some(Generation::Gen2),
            Some(&fw("12.1")),
            3
        ));
        assert!(!can_carry_block(
            &block,
            KeyType::Quartz,
            Some(Generation::Gen2),
            Some(&fw("12.7")),
            3
        ));
        assert!(!can_carry_block(
            &block,
            KeyType::Dynamic,
            Some(Generation::Gen1),
            Some(&fw("6.3")),
            3
        ));
        assert!(!can_carry_block(
            &block,
            KeyType::Dynamic,
            Some(Generation::Gen2),
            Some(&fw("12.7")),
            0
        ));
        let mixed = job(&[CylinderAction::Block, CylinderAction::AccessList]);
        assert!(!can_carry_block(
            &mixed,
            KeyType::Dynamic,
            Some(Generation::Gen2),
            Some(&fw("12.7")),
            3
        ));
    }
}
