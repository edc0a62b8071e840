//! Object use cases: create, change, change many and delete any administrable object, and
//! the locking system's settings; each reconciles what the change reaches.

use lockgate_model::{ObjectKind, Resource, system::SystemSettings};
use lockgate_store::Stored;

use crate::{App, Result, WriteContext};

impl App {
    /// Create an object and reconcile what it reaches.
    pub async fn create_object<R: Resource>(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        body: R,
    ) -> Result<Stored<R>> {
        let stored = self.store.create(cx, kind, body).await?;
        self.reconcile_after(cx, kind, &[stored.id]).await;
        Ok(stored)
    }

    /// Change an object (conditional on `expected_version` when given) and reconcile.
    pub async fn update_object<R: Resource, F>(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
        expected_version: Option<i64>,
        change: F,
    ) -> Result<Stored<R>>
    where
        F: FnOnce(&mut R) -> lockgate_store::Result<()>,
    {
        let stored = self
            .store
            .update(cx, kind, id, expected_version, change)
            .await?;
        self.reconcile_after(cx, kind, &[stored.id]).await;
        Ok(stored)
    }

    /// Apply one change to many objects, all or nothing, and reconcile them.
    pub async fn update_objects<R: Resource, F>(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        ids: &[i64],
        action: &str,
        change: F,
    ) -> Result<Vec<Stored<R>>>
    where
        F: Fn(&mut R) -> lockgate_store::Result<()>,
    {
        let changed = self
            .store
            .update_many(cx, kind, ids, action, change)
            .await?;
        self.reconcile_after(cx, kind, ids).await;
        Ok(changed)
    }

    /// Delete an object (persons as the system's deletion setting says) and reconcile the
    /// whole system (what a deletion reaches is not worked out). `detach` confirms deleting
    /// an access profile that persons, keys or temporary access groups still hold: it is
    /// taken from them in the same transaction.
    pub async fn delete_object<R: Resource>(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
        expected_version: Option<i64>,
        detach: bool,
    ) -> Result<()> {
        if kind.is_person() {
            self.store
                .delete_person(cx, kind, id, expected_version)
                .await?;
        } else {
            self.store
                .delete::<R>(cx, kind, id, expected_version, detach)
                .await?;
        }
        self.reconcile_after(cx, kind, &[]).await;
        Ok(())
    }

    /// Change the system's adjustable settings (conditional on `expected_version`); flexible
    /// revalidation changes what keys hold, so the whole system is reconciled with the new
    /// settings.
    pub async fn update_settings(
        &self,
        cx: &WriteContext,
        expected_version: Option<i64>,
        new: SystemSettings,
    ) -> Result<lockgate_model::system::LockingSystem> {
        let sys = self
            .store
            .update_settings(&cx.system, &cx.actor, expected_version, new)
            .await?;
        let after = WriteContext {
            system: sys.clone(),
            ..cx.clone()
        };
        if let Err(e) = self.reconcile(&after).await {
            tracing::error!(error = %e, system_id = sys.id, "reconciliation after a settings change failed; it runs again on the next change");
        }
        Ok(sys)
    }
}
