//! Authentication (bearer API tokens) and authorisation (function levels, domains, hierarchy).

use axum::{extract::FromRequestParts, http::request::Parts};
use lockgate_model::{
    ObjectKind,
    ckey::{CKey, CKeyStatus},
    permission::{Function, Level, PermissionSet, Role, effective, fn_name},
    system::LockingSystem,
};
use lockgate_store::{Actor, Scope, Stored, objects::new_correlation_id};

use crate::{
    AppState,
    problem::{ApiResult, Problem},
};

/// The authenticated administrator of a request.
#[derive(Debug, Clone)]
pub struct Admin {
    pub system: LockingSystem,
    pub c_key: Stored<CKey>,
    pub permissions: PermissionSet,
    pub scope: Scope,
    pub actor: Actor,
    pub token_id: i64,
}

impl Admin {
    /// The write context of this administrator's request, at the application's clock.
    pub fn cx(&self, app: &lockgate_app::App) -> lockgate_app::WriteContext {
        app.context(&self.system, &self.scope, &self.actor)
    }

    /// The level this administrator holds for a function.
    pub fn level(&self, f: Function) -> Level {
        self.permissions.get(&f).copied().unwrap_or_default()
    }

    /// Require at least `level` on `f`.
    pub fn require(&self, f: Function, level: Level) -> ApiResult<()> {
        if self.level(f) >= level {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this needs permission '{}' at {level:?} or above; your roles grant {:?}",
                fn_name(f),
                self.level(f)
            ))
            .with_extra(serde_json::json!({ "function": fn_name(f), "required_level": level })))
        }
    }

    /// The domains within which this administrator *sees* objects of `kind`: their own,
    /// except that administrators of the default domain see every temporary access group
    /// (manual §8.2.5). Writes always use [`Admin::scope`].
    pub fn read_scope(&self, kind: ObjectKind) -> lockgate_store::Scope {
        let default_domain = self.system.default_domain_id;
        if kind == ObjectKind::TemporaryAccessGroup
            && default_domain.is_some()
            && self.scope.allows_exactly(default_domain)
        {
            lockgate_store::Scope::all()
        } else {
            self.scope.clone()
        }
    }

    /// Require at least `level` on the function governing a collection.
    pub fn require_kind(&self, kind: ObjectKind, level: Level) -> ApiResult<()> {
        self.require(kind.function(), level)
    }

    /// Whether this C-key is the system's master C-key.
    pub fn is_master(&self) -> bool {
        self.c_key.body.kind == lockgate_model::ckey::CKeyKind::Master
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Load an administrator's effective permissions from the roles on their C-key.
pub async fn load_permissions(
    state: &AppState,
    system_id: i64,
    c_key: &CKey,
) -> ApiResult<PermissionSet> {
    let mut roles: Vec<Role> = Vec::with_capacity(c_key.role_ids.len());
    for id in &c_key.role_ids {
        let r: Stored<Role> = state
            .store
            .get(system_id, ObjectKind::Role, *id, &Scope::all())
            .await?;
        roles.push(r.body);
    }
    let refs: Vec<&PermissionSet> = roles.iter().map(|r| &r.permissions).collect();
    Ok(effective(&refs))
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(|| {
            Problem::unauthorized("an 'Authorization: Bearer <token>' header is required")
        })?;
        let auth = state
            .store
            .authenticate(token)
            .await?
            .ok_or_else(|| Problem::unauthorized("the token is unknown, expired or revoked"))?;
        let system = state.store.system(auth.system_id).await?;
        let c_key: Stored<CKey> = state
            .store
            .get(
                auth.system_id,
                ObjectKind::CKey,
                auth.c_key_id,
                &Scope::all(),
            )
            .await
            .map_err(|_| Problem::unauthorized("the token's C-key no longer exists"))?;
        if c_key.body.blocked || matches!(c_key.body.status, CKeyStatus::Lost | CKeyStatus::Broken)
        {
            return Err(Problem::forbidden(
                "the token's C-key is blocked, lost or broken",
            ));
        }
        let permissions = load_permissions(state, auth.system_id, &c_key.body).await?;
        let scope = Scope::domains(c_key.body.domain_ids.iter().copied());
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .map(str::to_string)
            .unwrap_or_else(new_correlation_id);
        let actor = Actor {
            c_key_id: Some(c_key.id),
            label: c_key.body.name.clone(),
            correlation_id: request_id,
        };
        Ok(Admin {
            system,
            c_key,
            permissions,
            scope,
            actor,
            token_id: auth.token_id,
        })
    }
}
