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
}

/// Priority of a job (lost-key blocks are usually high).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
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
            state: state_name(&job.state),
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

fn state_name(s: &JobState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v["state"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Why a transition is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("a {from} job cannot be {to}")]
pub struct TransitionRefused {
    pub from: String,
    pub to: &'static str,
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

    fn refuse(&self, to: &'static str) -> TransitionRefused {
        TransitionRefused {
            from: state_name(&self.state),
            to,
        }
    }

    /// An approver's decision on an audit-trail request.
    pub fn decide_approval(&mut self, approved: bool) -> Result<(), TransitionRefused> {
        if self.state != JobState::AwaitingApproval {
            return Err(self.refuse(if approved { "approved" } else { "rejected" }));
        }
        self.state = if approved {
            JobState::Created
        } else {
            JobState::Cancelled
        };
        Ok(())
    }

    /// Load onto a C-key after [`can_load`] said yes.
    pub fn load(
        &mut self,
        c_key: &LoadingCKey,
        locked_by: Option<ObjectId>,
    ) -> Result<(), LoadRefusal> {
        can_load(self, c_key, locked_by)?;
        self.state = JobState::Loaded { c_key: c_key.id };
        Ok(())
    }

    /// The C-key reports the job executed at the cylinder.
    pub fn finish(&mut self) -> Result<(), TransitionRefused> {
        match self.state {
            JobState::Loaded { .. } => {
                self.state = JobState::Finished;
                Ok(())
            }
            _ => Err(self.refuse("finished")),
        }
    }

    /// The C-key reports the job failed at the cylinder.
    pub fn fail(&mut self, reason: impl Into<String>) -> Result<(), TransitionRefused> {
        match self.state {
            JobState::Loaded { .. } => {
                self.state = JobState::Failed {
                    reason: reason.into(),
                };
                Ok(())
            }
            _ => Err(self.refuse("failed")),
        }
    }

    /// Cancel a job that has not been executed.
    pub fn cancel(&mut self) -> Result<(), TransitionRefused> {
        if self.state.is_final() {
            return Err(self.refuse("cancelled"));
        }
        self.state = JobState::Cancelled;
        Ok(())
    }

    /// A newer job for the same cylinder takes over.
    pub fn replace(&mut self, by: ObjectId) -> Result<(), TransitionRefused> {
        if self.state.is_final() {
            return Err(self.refuse("replaced"));
        }
        self.state = JobState::Replaced { by };
        Ok(())
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
