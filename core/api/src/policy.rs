//! Rules on administrators themselves: the hierarchy, own roles and domains, the approver role.

use lockgate_model::{
    ObjectKind,
    ckey::CKey,
    permission::{PermissionSet, Role, exceeds, fn_name},
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
            let new_roles: Vec<i64> = field(Some(after), "role_ids");
            let old_roles: Vec<i64> = field(before, "role_ids");
            let new_domains: Vec<i64> = field(Some(after), "domain_ids");
            let old_domains: Vec<i64> = field(before, "domain_ids");
            let own = id == Some(admin.c_key.id);
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
        _ => Ok(()),
    }
}

/// Rules before deleting.
pub async fn check_delete(
    _state: &AppState,
    admin: &Admin,
    kind: ObjectKind,
    id: i64,
) -> ApiResult<()> {
    if kind == ObjectKind::CKey && id == admin.c_key.id {
        return Err(Problem::forbidden(
            "you cannot delete the C-key you are using",
        ));
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
