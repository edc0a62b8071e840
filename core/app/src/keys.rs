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
        let lost = self
            .store
            .report_key_lost(&cx.system, key_id, &cx.scope, &cx.actor, req, cx.now)
            .await?;
        self.reconcile_after(cx, ObjectKind::Key, &[lost.id]).await;
        Ok(lost)
    }

    /// A lost key is found: executed blocks are reversed by reconciliation.
    pub async fn report_key_found(&self, cx: &WriteContext, key_id: i64) -> Result<Stored<Key>> {
        let found = self
            .store
            .report_key_found(&cx.system, key_id, &cx.scope, &cx.actor)
            .await?;
        self.reconcile_after(cx, ObjectKind::Key, &[found.id]).await;
        Ok(found)
    }
}
