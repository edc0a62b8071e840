//! Job use cases (`DOMAIN.md` §4): load onto a C-key, carry by a user key, assign to another
//! administrator's C-key, report executed or failed, decide an audit-trail approval, and
//! request a reprogramming or an audit-trail read. Each reads the job inside the write
//! transaction that holds the system's change lock, asks the engine, writes the
//! transition with its event and messages, and reconciles what the outcome changes.

use lockgate_engine::{
    jobs::{
        CylinderJob, JobKind, JobState, JobTarget, LoadingCKey, Reporter, Transition,
        can_carry_block, can_load, runs_on_c_key,
    },
    reconcile::CylinderAction,
    state::CylinderProgram,
};
use lockgate_model::{
    ObjectKind,
    ckey::{CKey, CKeyKind},
    key::{Key, KeyStatus},
    key_group::{KeyGroup, KeyGroupKind},
};
use lockgate_store::{
    Scope, Store, Stored,
    reconciliation::{JobRecord, ReconcileReport},
};

use crate::{App, AppError, Result, WriteContext};

/// Why a user key cannot carry a block job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error(
    "key {key} cannot carry job {job}: only block jobs, carried by generation 2 dynamic keys with firmware 12.2 or later and free memory ({free} free entries)"
)]
pub struct CarryRefusal {
    pub job: i64,
    pub key: i64,
    pub free: u32,
}

/// A job after a report from the hardware, and what reconciliation then planned (a failed
/// job is recreated this way).
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobReport {
    pub job: JobRecord,
    pub reconciliation: Option<ReconcileReport>,
}

fn object_kind(target: JobTarget) -> ObjectKind {
    match target {
        JobTarget::Key => ObjectKind::Key,
        JobTarget::Cylinder => ObjectKind::Cylinder,
    }
}

impl App {
    /// The job `id`, if the caller may see its key or cylinder.
    pub async fn visible_job(&self, cx: &WriteContext, id: i64) -> Result<JobRecord> {
        let job = self
            .store
            .job(cx.system.id, id)
            .await
            .map_err(|e| match e {
                lockgate_store::StoreError::NotFound { .. } => {
                    AppError::NotFound(format!("no job {id}"))
                }
                other => other.into(),
            })?;
        if !self
            .store
            .kind_visible(
                cx.system.id,
                object_kind(job.target),
                job.target_id,
                &cx.scope,
            )
            .await?
        {
            return Err(AppError::NotFound(format!("no job {id}")));
        }
        Ok(job)
    }

    /// The job `id` if it is executed at a cylinder by a C-key, visible to the caller.
    async fn cylinder_job(&self, cx: &WriteContext, id: i64) -> Result<JobRecord> {
        let job = self.visible_job(cx, id).await?;
        if !runs_on_c_key(job.kind, job.target) {
            return Err(AppError::NotFound(format!("no cylinder job {id}")));
        }
        Ok(job)
    }

    /// Whether a cylinder job changes which C-key groups the cylinder admits (only the
    /// master C-key executes such a job).
    async fn changes_c_key_access(&self, cx: &WriteContext, job: &JobRecord) -> Result<bool> {
        if job.kind != JobKind::CylinderProgramming {
            return Ok(false);
        }
        let target: CylinderProgram = serde_json::from_value(job.program.clone())
            .map_err(|e| lockgate_store::StoreError::Corrupt(format!("job {}: {e}", job.id)))?;
        let actual = self
            .store
            .cylinder_actual(cx.system.id, job.target_id)
            .await?
            .unwrap_or_default();
        let mut changed: Vec<i64> = target
            .key_groups
            .keys()
            .chain(actual.key_groups.keys())
            .copied()
            .collect();
        changed.retain(|g| target.key_groups.get(g) != actual.key_groups.get(g));
        for g in changed {
            if let Ok(kg) = self
                .store
                .get::<KeyGroup>(cx.system.id, ObjectKind::KeyGroup, g, &Scope::all())
                .await
                && matches!(
                    kg.body.kind,
                    KeyGroupKind::NormalCKey | KeyGroupKind::MasterCKey
                )
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The engine's view of a cylinder job for the loading rules.
    fn engine_view(job: &JobRecord, changes_c_key_access: bool) -> CylinderJob {
        CylinderJob {
            id: job.id,
            cylinder: job.target_id,
            actions: job.actions.iter().copied().collect(),
            reprogram: job.actions.contains(&CylinderAction::Reprogram),
            audit_trail: job.kind == JobKind::AuditTrail
                || job.actions.contains(&CylinderAction::AuditTrail),
            changes_c_key_access,
            priority: job.priority,
            state: job.state.clone(),
            assigned_to: job.assigned_to,
        }
    }

    /// Load a cylinder job onto the caller's C-key: the engine's loading rules (state,
    /// blocked C-key, permission, "locked by" another C-key, assignment, master-only C-key
    /// access, group programming, reprogramming right), then the transition.
    pub async fn load_job(
        &self,
        cx: &WriteContext,
        id: i64,
        c_key: &Stored<CKey>,
        programming_permission: bool,
    ) -> Result<JobRecord> {
        let job = self.cylinder_job(cx, id).await?;
        let changes_c_key_access = self.changes_c_key_access(cx, &job).await?;
        let loading = LoadingCKey {
            id: c_key.id,
            kind: c_key.body.kind,
            blocked: c_key.body.blocked,
            programming_permission,
            reprogramming_right: c_key.body.capabilities.cylinder_reprogramming,
            // Manual §8.5 / §7.2.4: in a system delivered with cylinder groups every
            // C-key has the group-programming capability.
            group_programming: c_key.body.capabilities.cylinder_group_programming
                || cx.system.fixed.cylinder_groups,
        };
        let mut tx = self.store.write_tx().await?;
        Store::lock_system(&mut tx, cx.system.id).await?;
        let job = Store::job_in(&mut tx, cx.system.id, job.id).await?;
        let locked_by = Store::locked_by(&mut tx, cx.system.id, &job).await?;
        can_load(
            &Self::engine_view(&job, changes_c_key_access),
            &loading,
            locked_by,
        )?;
        let done = Store::transition_job(
            &mut tx,
            &cx.system,
            &job,
            &Transition::Load { c_key: c_key.id },
            &cx.actor,
            cx.now,
        )
        .await?;
        tx.commit()
            .await
            .map_err(lockgate_store::StoreError::from)?;
        Ok(done)
    }

    /// "Block lost key with user keys": a generation 2 dynamic user key carries a block job
    /// to its cylinder.
    pub async fn carry_job(&self, cx: &WriteContext, id: i64, key_id: i64) -> Result<JobRecord> {
        if !cx.system.settings.block_lost_keys_with_user_keys {
            return Err(AppError::SettingOff(
                "blocking lost keys with user keys is off (system setting block_lost_keys_with_user_keys)".into(),
            ));
        }
        let job = self.cylinder_job(cx, id).await?;
        let key: Stored<Key> = self
            .store
            .get(cx.system.id, ObjectKind::Key, key_id, &cx.scope)
            .await
            .map_err(|_| AppError::field("key_id", format!("no key {key_id}")))?;
        let k = &key.body;
        if matches!(k.status, KeyStatus::Lost | KeyStatus::Broken) {
            return Err(AppError::field(
                "key_id",
                format!(
                    "key {} is {} and cannot carry jobs",
                    key.id,
                    k.status.as_str()
                ),
            ));
        }
        let free = self
            .store
            .key_free_slots(key.id, k.access_list_capacity)
            .await?;
        if !can_carry_block(
            &Self::engine_view(&job, false),
            k.key_type,
            k.generation,
            k.firmware.as_ref(),
            free,
        ) {
            return Err(CarryRefusal {
                job: id,
                key: key.id,
                free,
            }
            .into());
        }
        self.transition(cx, id, &Transition::Carry { key: key.id })
            .await
    }

    /// Prepare a cylinder job for pick-up by another administrator's C-key at a remote PD;
    /// also how many open jobs now wait for that C-key.
    pub async fn assign_job(
        &self,
        cx: &WriteContext,
        id: i64,
        c_key_id: i64,
    ) -> Result<(JobRecord, i64)> {
        self.cylinder_job(cx, id).await?;
        let target: Stored<CKey> = self
            .store
            .get(cx.system.id, ObjectKind::CKey, c_key_id, &cx.scope)
            .await
            .map_err(|_| AppError::field("c_key_id", format!("no C-key {c_key_id}")))?;
        if target.body.blocked {
            return Err(AppError::field("c_key_id", "that C-key is blocked"));
        }
        if matches!(
            target.body.status,
            lockgate_model::ckey::CKeyStatus::Lost | lockgate_model::ckey::CKeyStatus::Broken
        ) {
            return Err(AppError::field(
                "c_key_id",
                format!("that C-key is {}", target.body.status.as_str()),
            ));
        }
        let done = self
            .transition(cx, id, &Transition::Assign { c_key: c_key_id })
            .await?;
        let waiting = self.store.jobs_assigned_to(cx.system.id, c_key_id).await?;
        Ok((done, waiting))
    }

    /// An approver's decision on an audit-trail request. An approved cylinder request
    /// becomes the audit-trail action of the cylinder's programming job (manual §8.5) and
    /// is replaced by that job, in the decision's transaction; while the cylinder is locked
    /// the decision is refused, and the request keeps waiting.
    pub async fn decide_approval(
        &self,
        cx: &WriteContext,
        id: i64,
        approved: bool,
    ) -> Result<JobRecord> {
        let job = self.visible_job(cx, id).await?;
        if job.kind != JobKind::AuditTrail {
            return Err(AppError::NotFound(format!("no audit-trail request {id}")));
        }
        let t = if approved {
            Transition::Approve
        } else {
            Transition::Reject
        };
        let mut tx = self.store.write_tx().await?;
        Store::lock_system(&mut tx, cx.system.id).await?;
        let job = Store::job_in(&mut tx, cx.system.id, job.id).await?;
        let mut done =
            Store::transition_job(&mut tx, &cx.system, &job, &t, &cx.actor, cx.now).await?;
        if approved && done.target == JobTarget::Cylinder {
            let by = Store::join_cylinder_audit_trail(
                &mut tx,
                &cx.system,
                done.target_id,
                &cx.actor,
                cx.now,
            )
            .await?;
            done = Store::transition_job(
                &mut tx,
                &cx.system,
                &done,
                &Transition::Replace { by },
                &cx.actor,
                cx.now,
            )
            .await?;
        }
        tx.commit()
            .await
            .map_err(lockgate_store::StoreError::from)?;
        Ok(done)
    }

    /// The hardware reports a job executed (`failure: None`) or failed, as relayed by the
    /// caller: a key's own job by the key at a PD, a loaded cylinder job by the C-key it
    /// is loaded on (the caller's), a carried block by its user key. A finished job's
    /// program becomes the actual state; then reconciliation plans what is still missing
    /// (a failed job is recreated).
    /// An administrator confirms a job by hand (`POST /jobs/{id}/confirm`).
    /// Architecture invariant: hardware closes jobs. A key's job, once the system has an enrolled PD, and
    /// a cylinder job loaded on a C-key that is updated at remote PDs (firmware 12.0.0 or
    /// later, in a remote system) are closed only by the delivering PD's report; the manual
    /// confirmation stays for older C-keys and for systems without PDs.
    pub async fn confirm_by_hand(&self, cx: &WriteContext, id: i64) -> Result<JobReport> {
        let job = self.visible_job(cx, id).await?;
        // A key's job is written by a remote PD, which reports it: once the system has a PD
        // with an unrevoked certificate, only that report closes it.
        if job.target == JobTarget::Key
            && !matches!(job.state, JobState::Carried { .. })
            && self.store.has_enrolled_pds(cx.system.id).await?
        {
            return Err(lockgate_store::StoreError::Refused {
                message: format!(
                    "job {id} is written to its key at a remote PD, which reports it: it is not \
                     confirmed by hand while the locking system has enrolled PDs"
                ),
            }
            .into());
        }
        if let JobState::Loaded { c_key } = job.state
            && cx.system.fixed.remote
        {
            let holder: Stored<CKey> = self
                .store
                .get(cx.system.id, ObjectKind::CKey, c_key, &Scope::all())
                .await?;
            if crate::devices::updated_remotely(&holder.body) {
                return Err(lockgate_store::StoreError::Refused {
                    message: format!(
                        "job {id} is loaded on C-key {c_key}, whose firmware (12.0.0 or later) \
                         reports it at a remote PD: it is not confirmed by hand"
                    ),
                }
                .into());
            }
        }
        self.report_job(cx, id, None).await
    }

    pub async fn report_job(
        &self,
        cx: &WriteContext,
        id: i64,
        failure: Option<String>,
    ) -> Result<JobReport> {
        let job = self.visible_job(cx, id).await?;
        let changes_c_key_access = self.changes_c_key_access(cx, &job).await?;
        let mut tx = self.store.write_tx().await?;
        Store::lock_system(&mut tx, cx.system.id).await?;
        let job = Store::job_in(&mut tx, cx.system.id, job.id).await?;
        let reporter = match (&job.state, job.target) {
            (JobState::Carried { key }, _) => Reporter::CarryingKey { id: *key },
            (_, JobTarget::Key) => Reporter::Key,
            (_, JobTarget::Cylinder) => Reporter::CKey {
                id: cx.actor.c_key_id.unwrap_or_default(),
            },
        };
        // Defence in depth: a change of C-key access is only ever executed by the master.
        if let JobState::Loaded { c_key } = job.state
            && changes_c_key_access
            && failure.is_none()
        {
            let holder: Stored<CKey> = self
                .store
                .get(cx.system.id, ObjectKind::CKey, c_key, &Scope::all())
                .await?;
            if holder.body.kind != CKeyKind::Master {
                return Err(lockgate_engine::jobs::LoadRefusal::NeedsMaster.into());
            }
        }
        let t = match failure {
            None => Transition::Finish { reporter },
            Some(reason) => Transition::Fail { reporter, reason },
        };
        let done = Store::transition_job(&mut tx, &cx.system, &job, &t, &cx.actor, cx.now).await?;
        tx.commit()
            .await
            .map_err(lockgate_store::StoreError::from)?;
        let reconciliation = if done.kind == JobKind::AuditTrail {
            None
        } else {
            let scope = self
                .store
                .scope_of_change(cx.system.id, object_kind(done.target), &[done.target_id])
                .await?;
            Some(
                self.store
                    .reconcile_scope(&cx.system, &cx.actor, cx.now, &scope)
                    .await?,
            )
        };
        Ok(JobReport {
            job: done,
            reconciliation,
        })
    }

    /// One transition of a visible job, read and written under the change lock.
    pub(crate) async fn transition(
        &self,
        cx: &WriteContext,
        id: i64,
        t: &Transition,
    ) -> Result<JobRecord> {
        let mut tx = self.store.write_tx().await?;
        Store::lock_system(&mut tx, cx.system.id).await?;
        let job = Store::job_in(&mut tx, cx.system.id, id).await?;
        let done = Store::transition_job(&mut tx, &cx.system, &job, t, &cx.actor, cx.now).await?;
        tx.commit()
            .await
            .map_err(lockgate_store::StoreError::from)?;
        Ok(done)
    }

    /// Request reprogramming of a cylinder in the caller's scope.
    pub async fn request_reprogramming(
        &self,
        cx: &WriteContext,
        cylinder: i64,
    ) -> Result<JobRecord> {
        let _: Stored<lockgate_model::cylinder::Cylinder> = self
            .store
            .get(cx.system.id, ObjectKind::Cylinder, cylinder, &cx.scope)
            .await?;
        Ok(self
            .store
            .request_reprogramming(&cx.system, cylinder, &cx.actor, cx.now)
            .await?)
    }

    /// Request reading the audit trail of a key (quartz and dynamic keys keep one) or a
    /// cylinder in the caller's scope.
    pub async fn request_audit_trail(
        &self,
        cx: &WriteContext,
        target: JobTarget,
        id: i64,
    ) -> Result<JobRecord> {
        match target {
            JobTarget::Key => {
                let k: Stored<Key> = self
                    .store
                    .get(cx.system.id, ObjectKind::Key, id, &cx.scope)
                    .await?;
                if !k.body.key_type.has_clock() {
                    return Err(lockgate_store::StoreError::Refused {
                        message: "only quartz and dynamic keys store an audit trail".into(),
                    }
                    .into());
                }
            }
            JobTarget::Cylinder => {
                if !self
                    .store
                    .kind_visible(cx.system.id, ObjectKind::Cylinder, id, &cx.scope)
                    .await?
                {
                    return Err(AppError::NotFound(format!("no cylinder {id}")));
                }
            }
        }
        Ok(self
            .store
            .request_audit_trail(&cx.system, target, id, &cx.actor, cx.now)
            .await?)
    }
}
