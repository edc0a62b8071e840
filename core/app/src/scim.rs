//! SCIM provisioning use cases: a provisioning client's users and groups written with the
//! employees and tags they maintain, each in one transaction of the store.
//!
//! Nothing is reconciled: SCIM never changes an employee's access profiles (the only person
//! fields a key's defined program reads), deactivating or deleting an employee who holds a
//! key is refused, and tags are read by no program.

use lockgate_store::scim::{ScimGroupWrite, ScimRecord, ScimResourceType, ScimUserWrite};

use crate::{App, Result, WriteContext};

impl App {
    /// Create a user and the employee it maintains.
    pub async fn scim_create_user(
        &self,
        cx: &WriteContext,
        w: ScimUserWrite,
    ) -> Result<ScimRecord> {
        Ok(self.store.scim_create_user(cx, w).await?)
    }

    /// Replace a user (if `expected_version` still holds); `None`: no such user.
    pub async fn scim_replace_user(
        &self,
        cx: &WriteContext,
        id: &str,
        expected_version: Option<i64>,
        w: ScimUserWrite,
    ) -> Result<Option<ScimRecord>> {
        Ok(self
            .store
            .scim_replace_user(cx, id, expected_version, w)
            .await?)
    }

    /// Create a group: its tag goes onto its members.
    pub async fn scim_create_group(
        &self,
        cx: &WriteContext,
        w: ScimGroupWrite,
    ) -> Result<ScimRecord> {
        Ok(self.store.scim_create_group(cx, w).await?)
    }

    /// Replace a group (if `expected_version` still holds); `None`: no such group.
    pub async fn scim_replace_group(
        &self,
        cx: &WriteContext,
        id: &str,
        expected_version: Option<i64>,
        w: ScimGroupWrite,
    ) -> Result<Option<ScimRecord>> {
        Ok(self
            .store
            .scim_replace_group(cx, id, expected_version, w)
            .await?)
    }

    /// Delete a user (its employee as the deletion setting says) or a group (its tag);
    /// `false`: no such resource.
    pub async fn scim_delete(
        &self,
        cx: &WriteContext,
        rt: ScimResourceType,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<bool> {
        Ok(self.store.scim_delete(cx, rt, id, expected_version).await?)
    }
}
