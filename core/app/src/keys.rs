//! Key lifecycle use cases that reach cylinders: a key reported lost (where it is blocked)
//! and found again, each followed by the reconciliation it causes.

use lockgate_model::{
    ObjectKind,
    cylinder::Cylinder,
    key::{BlockChoice, Key},
};
use lockgate_store::{Stored, lifecycle::LostRequest};

use crate::{App, AppError, Result, WriteContext};

/// Most cylinders one lost-key report may name.
pub const MAX_CUSTOM_BLOCKS: usize = 10_000;

impl App {
    /// Report a key lost. With `block = "custom"`, every cylinder named must be in the
    /// caller's domains and admit the key (by its key group or individually): nobody blocks
    /// doors they do not administer, and a block job on a door the key never opened is
    /// refused rather than planned.
    pub async fn report_key_lost(
        &self,
        cx: &WriteContext,
        key_id: i64,
        req: LostRequest,
    ) -> Result<Stored<Key>> {
        let key: Stored<Key> = self
            .store
            .get(cx.system.id, ObjectKind::Key, key_id, &cx.scope)
            .await?;
        if req.block == BlockChoice::Custom {
            if req.cylinder_ids.len() > MAX_CUSTOM_BLOCKS {
                return Err(AppError::field(
                    "cylinder_ids",
                    format!("at most {MAX_CUSTOM_BLOCKS} cylinders"),
                ));
            }
            for (i, &cylinder_id) in req.cylinder_ids.iter().enumerate() {
                let field = format!("cylinder_ids[{i}]");
                let c: Stored<Cylinder> = self
                    .store
                    .get(cx.system.id, ObjectKind::Cylinder, cylinder_id, &cx.scope)
                    .await
                    .map_err(|_| {
                        AppError::field(
                            &field,
                            format!("no cylinder {cylinder_id} in your domains"),
                        )
                    })?;
                let list = &c.body.access_list;
                let admits = list.key_ids.contains(&key.id)
                    || key.body.key_group_id.is_some_and(|g| {
                        list.key_groups
                            .iter()
                            .any(|e| e.key_group_id == g && !e.exceptions.contains(&key.id))
                    });
                if !admits {
                    return Err(AppError::field(
                        field,
                        format!(
                            "cylinder {cylinder_id} does not admit key {key_id}; only cylinders the key opens can block it"
                        ),
                    ));
                }
            }
        }
        let lost = self.store.report_key_lost(cx, key_id, req).await?;
        self.reconcile_after(cx, ObjectKind::Key, &[lost.id]).await;
        Ok(lost)
    }

    /// A lost key is found: executed blocks are reversed by reconciliation.
    pub async fn report_key_found(&self, cx: &WriteContext, key_id: i64) -> Result<Stored<Key>> {
        let found = self.store.report_key_found(cx, key_id).await?;
        self.reconcile_after(cx, ObjectKind::Key, &[found.id]).await;
        Ok(found)
    }
}

/// The key flows of `DOMAIN.md` §6 that change one key, each followed by the
/// reconciliation of that key (and the cylinders that admit it).
impl App {
    async fn key_changed(&self, cx: &WriteContext, key: Stored<Key>) -> Result<Stored<Key>> {
        self.reconcile_after(cx, ObjectKind::Key, &[key.id]).await;
        Ok(key)
    }

    /// Hand a key out to a person.
    pub async fn hand_out_key(
        &self,
        cx: &WriteContext,
        id: i64,
        h: lockgate_store::lifecycle::HandOut,
    ) -> Result<Stored<Key>> {
        let k = self.store.hand_out_key(cx, id, h).await?;
        let k = self.key_changed(cx, k).await?;
        self.read_audit_trail_on_hand_out(cx, &k).await?;
        Ok(k)
    }

    /// Manual §8.6: handing out a quartz or dynamic key that supports remote updates, in
    /// a remote system without audit-trail approvals, requests a remote read of its audit
    /// trail. A read already requested is left as it is.
    async fn read_audit_trail_on_hand_out(&self, cx: &WriteContext, k: &Stored<Key>) -> Result<()> {
        use lockgate_engine::capability::{Device, Feature, supports};
        let fixed = &cx.system.fixed;
        if !fixed.remote
            || fixed.audit_trail_approvals
            || !k.body.key_type.has_clock()
            || !supports(Feature::Remote, Device::Key, k.body.firmware.as_ref())
        {
            return Ok(());
        }
        match self
            .store
            .request_audit_trail(
                &cx.system,
                lockgate_engine::jobs::JobTarget::Key,
                k.id,
                &cx.actor,
                cx.now,
            )
            .await
        {
            Ok(_) | Err(lockgate_store::StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Take a key back in.
    pub async fn hand_in_key(&self, cx: &WriteContext, id: i64) -> Result<Stored<Key>> {
        let k = self.store.hand_in_key(cx, id).await?;
        let k = self.key_changed(cx, k).await?;
        // DOMAIN.md §6: the remote audit-trail read that hand-out switched on goes off.
        for job in self.store.jobs(cx.system.id, Some(id), true, 10).await? {
            if job.kind == lockgate_engine::jobs::JobKind::AuditTrail && !job.state.is_out() {
                self.transition(cx, job.id, &lockgate_engine::jobs::Transition::Cancel)
                    .await?;
            }
        }
        Ok(k)
    }

    /// Copy validity, schedule, revalidation, explicit access and profiles to another key.
    pub async fn copy_key_configuration(
        &self,
        cx: &WriteContext,
        from: i64,
        to: i64,
    ) -> Result<Stored<Key>> {
        let k = self.store.copy_key_configuration(cx, from, to).await?;
        self.key_changed(cx, k).await
    }

    /// Drop a key's individual entries its profiles already give.
    pub async fn remove_redundant_authorisations(
        &self,
        cx: &WriteContext,
        id: i64,
    ) -> Result<Stored<Key>> {
        let k = self.store.remove_redundant_authorisations(cx, id).await?;
        self.key_changed(cx, k).await
    }

    /// Replace a key by its factory clone (the old one is blocked everywhere it opened).
    pub async fn replace_key_with_clone(
        &self,
        cx: &WriteContext,
        id: i64,
        marking: String,
        name: Option<String>,
    ) -> Result<Stored<Key>> {
        let k = self
            .store
            .replace_key_with_clone(cx, id, marking, name)
            .await?;
        self.reconcile_after(cx, ObjectKind::Key, &[]).await;
        Ok(k)
    }

    /// Remove every key-side authorisation of a cylinder; how many keys changed.
    pub async fn remove_key_side_authorisations(
        &self,
        cx: &WriteContext,
        cylinder: i64,
    ) -> Result<usize> {
        let n = self
            .store
            .remove_key_side_authorisations(cx, cylinder)
            .await?;
        self.reconcile_after(cx, ObjectKind::Key, &[]).await;
        Ok(n)
    }

    /// Give every key of a key group a schedule; how many keys changed.
    pub async fn apply_schedule_to_key_group(
        &self,
        cx: &WriteContext,
        group: i64,
        schedule: lockgate_model::schedule::Schedule,
    ) -> Result<usize> {
        let n = self
            .store
            .apply_schedule_to_key_group(cx, group, schedule)
            .await?;
        self.reconcile_after(cx, ObjectKind::Key, &[]).await;
        Ok(n)
    }

    /// A local PD re-edited the key: its current structure is what it holds.
    pub async fn confirm_re_edition(&self, cx: &WriteContext, id: i64) -> Result<Stored<Key>> {
        Ok(self.store.confirm_re_edition(cx, id).await?)
    }
}
