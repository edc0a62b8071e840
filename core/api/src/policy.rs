//! Rules on administrators themselves: the hierarchy, own roles and domains, the approver role.

use lockgate_model::{
    ObjectKind,
    ckey::{CKey, CKeyKind},
    permission::{Function, Level, PermissionSet, Role, exceeds, fn_name},
};
use lockgate_store::{Scope, Stored};
use serde_json::Value;

use crate::{
    AppState,
    authz::Admin,
    problem::{ApiResult, Problem},
};

fn field<T: serde::de::DeserializeOwned + Default>(v: Option<&Value>, name: &str) -> T {
    v.and_then(|v| v.get(name))
        .and_then(|f| serde_json::from_value(f.clone()).ok())
        .unwrap_or_default()
}

fn above_own(admin: &Admin, perms: &PermissionSet, what: &str) -> ApiResult<()> {
    if !admin.system.settings.hierarchical_administrators {
        return Ok(());
    }
    let over = exceeds(perms, &admin.permissions);
    if over.is_empty() {
        Ok(())
    } else {
        let names: Vec<String> = over.into_iter().map(fn_name).collect();
        Err(Problem::forbidden(format!(
            "hierarchical administrators: {what} grants more than you hold for {}",
            names.join(", ")
        )))
    }
}

/// Check a create (`before` = None) or update of an object against the rules on administrators.
pub async fn check_write(
    state: &AppState,
    admin: &Admin,
    kind: ObjectKind,
    id: Option<i64>,
    before: Option<&Value>,
    after: &Value,
) -> ApiResult<()> {
    match kind {
        ObjectKind::Role => {
            let new: PermissionSet = field(Some(after), "permissions");
            above_own(admin, &new, "this role")?;
            if let Some(before) = before {
                let old: PermissionSet = field(Some(before), "permissions");
                above_own(admin, &old, "the role being edited")?;
                let name_old: String = field(Some(before), "name");
                let own = admin.c_key.body.role_ids.iter().copied();
                let mut own_names = Vec::new();
                for id in own {
                    if let Ok(r) = state
                        .store
                        .get::<Role>(admin.system.id, ObjectKind::Role, id, &Scope::all())
                        .await
                    {
                        own_names.push(r.body.name);
                    }
                }
                if own_names.contains(&name_old)
                    && (old != new || field::<String>(Some(after), "name") != name_old)
                {
                    return Err(Problem::forbidden(
                        "you cannot edit your own role, apart from its description",
                    ));
                }
            }
            Ok(())
        }
        ObjectKind::CKey => {
            if let Some(before) = before {
                let target: CKey =
                    serde_json::from_value(before.clone()).map_err(|_| Problem::internal())?;
                check_target_c_key(state, admin, &target, "change").await?;
            }
            let own = id == Some(admin.c_key.id);
            if own && !admin.is_master() {
                for (name, what) in [("kind", "kind"), ("capabilities", "capabilities")] {
                    if before.and_then(|b| b.get(name)) != after.get(name) {
                        return Err(Problem::forbidden(format!(
                            "you cannot change the {what} of the C-key you are using"
                        )));
                    }
                }
            }
            let auto = |v: Option<&Value>| {
                v.and_then(|v| v.pointer("/capabilities/automatic_audit_trail"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            };
            if auto(before) != auto(Some(after)) {
                // Manual §6.11.13: switching automatic audit-trail retrieval needs its permission.
                admin.require(Function::AutomaticAuditTrail, Level::Full)?;
                // Manual §8.10: a C-key-only operation.
                admin.require_c_key_login("switching a C-key's automatic audit-trail retrieval")?;
            }
            let blocked = |v: Option<&Value>| {
                v.and_then(|v| v.get("blocked"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            };
            let status = |v: Option<&Value>| v.and_then(|v| v.get("status")).cloned();
            let out_of_use = |v: Option<Value>| v.is_some_and(|s| s == "lost" || s == "broken");
            let back_in_use = out_of_use(status(before)) && !out_of_use(status(Some(after)));
            if (blocked(before) && !blocked(Some(after))) || back_in_use {
                // Manual §8.10: unlocking a C-key needs a login with a C-key.
                admin.require_c_key_login("unlocking a C-key")?;
            }
            let new_roles: Vec<i64> = field(Some(after), "role_ids");
            let old_roles: Vec<i64> = field(before, "role_ids");
            let new_domains: Vec<i64> = field(Some(after), "domain_ids");
            let old_domains: Vec<i64> = field(before, "domain_ids");
            if own && new_roles != old_roles {
                return Err(Problem::forbidden(
                    "you cannot change the roles of the C-key you are using",
                ));
            }
            if own && new_domains != old_domains && !admin.is_master() {
                return Err(Problem::forbidden(
                    "you cannot change the domains of the C-key you are using",
                ));
            }
            if new_roles != old_roles {
                let mut roles = Vec::new();
                for (i, id) in new_roles.iter().enumerate() {
                    match state
                        .store
                        .get::<Role>(admin.system.id, ObjectKind::Role, *id, &Scope::all())
                        .await
                    {
                        Ok(r) => roles.push(r.body),
                        Err(_) => {
                            return Err(Problem::field(
                                format!("role_ids[{i}]"),
                                format!("no role {id}"),
                            ));
                        }
                    }
                }
                if roles.len() > 1 && roles.iter().any(Role::is_approver) {
                    return Err(Problem::field(
                        "role_ids",
                        "the approver role is never combined with other roles",
                    ));
                }
                for r in &roles {
                    above_own(admin, &r.permissions, &format!("role '{}'", r.name))?;
                }
            }
            Ok(())
        }
        ObjectKind::RemotePd => {
            // Firmware and the key firmware upgrade (key updater) mode are the firmware
            // function's (manual §6.15), not every remote-PD administrator's.
            for pointer in [
                "/firmware",
                "/bootloader_firmware",
                "/settings/key_updater_mode",
            ] {
                let was = before.and_then(|b| b.pointer(pointer));
                let now = after.pointer(pointer);
                let unset =
                    |v: Option<&Value>| v.is_none_or(|v| v.is_null() || v == &Value::Bool(false));
                if was != now && !(unset(was) && unset(now)) {
                    admin.require(Function::Firmware, Level::Full)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// No administrator acts on a more powerful one, with or without the hierarchy setting:
/// only the master changes the master, and nobody changes, blocks, re-roles or deletes (or
/// issues a token for) a C-key that holds rights or domains they do not hold themselves.
pub async fn check_target_c_key(
    state: &AppState,
    admin: &Admin,
    target: &CKey,
    verb: &str,
) -> ApiResult<()> {
    if admin.is_master() {
        // The master holds every right in effect (approvals are kept apart by the approver
        // rule, not by the master's roles).
        return Ok(());
    }
    if target.kind == CKeyKind::Master {
        return Err(Problem::forbidden(format!(
            "only the master C-key may {verb} the master C-key"
        )));
    }
    let theirs = crate::authz::load_permissions(state, admin.system.id, target).await?;
    let over = exceeds(&theirs, &admin.permissions);
    if !over.is_empty() {
        let names: Vec<String> = over.into_iter().map(fn_name).collect();
        return Err(Problem::forbidden(format!(
            "you cannot {verb} a C-key that holds more than you for {}",
            names.join(", ")
        )));
    }
    if let Some(own) = &admin.scope.domains
        && target.domain_ids.iter().any(|d| !own.contains(d))
    {
        return Err(Problem::forbidden(format!(
            "you cannot {verb} a C-key that administers domains you do not"
        )));
    }
    Ok(())
}

/// Rules before deleting.
pub async fn check_delete(
    state: &AppState,
    admin: &Admin,
    kind: ObjectKind,
    id: i64,
) -> ApiResult<()> {
    if kind == ObjectKind::CKey && id == admin.c_key.id {
        return Err(Problem::forbidden(
            "you cannot delete the C-key you are using",
        ));
    }
    if kind == ObjectKind::CKey {
        let target: Stored<CKey> = state
            .store
            .get(admin.system.id, kind, id, &admin.scope)
            .await?;
        check_target_c_key(state, admin, &target.body, "delete").await?;
    }
    if kind == ObjectKind::Role && admin.c_key.body.role_ids.contains(&id) {
        return Err(Problem::forbidden("you cannot delete your own role"));
    }
    Ok(())
}

/// Follow-ups after a create: a new domain is administered by the C-key that created it.
pub async fn after_create(
    state: &AppState,
    admin: &Admin,
    kind: ObjectKind,
    id: i64,
) -> ApiResult<()> {
    if kind == ObjectKind::Domain
        && admin
            .scope
            .domains
            .as_ref()
            .is_some_and(|d| !d.contains(&id))
    {
        let cx = state
            .app
            .context(&admin.system, &Scope::all(), &admin.actor);
        let _: Stored<CKey> = state
            .app
            .update_object(
                &cx,
                ObjectKind::CKey,
                admin.c_key.id,
                None,
                |c: &mut CKey| {
                    c.domain_ids.push(id);
                    Ok(())
                },
            )
            .await?;
    }
    Ok(())
}
