//! System-wide endpoints: the locking system and its settings, the caller, API tokens, bulk changes.

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use chrono::{DateTime, Utc};
use lockgate_model::{
    ObjectKind, Resource,
    access_profile::{AccessProfile, TemporaryAccessGroup},
    ckey::CKey,
    cylinder::{Cylinder, CylinderGroup},
    key::{Key, Validity},
    key_group::KeyGroup,
    permission::{Function, Level},
    person::Person,
    remote_pd::RemotePd,
    system::SystemSettings,
};
use lockgate_store::Stored;
use serde::Deserialize;

use crate::{
    AppState,
    authz::Admin,
    extract::{PathId, from_value, if_match, json_body, parse_json_value},
    problem::{ApiResult, Problem},
    resources::merge_patch,
};

/// `GET /api/v1/system`: the locking system with fixed and adjustable settings.
async fn system(admin: Admin) -> ApiResult<Response> {
    admin.require(Function::SystemSettings, Level::View)?;
    Ok(Json(&admin.system).into_response())
}

/// `PATCH /api/v1/system/settings`: merge patch on the adjustable settings.
async fn patch_settings(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require(Function::SystemSettings, Level::Full)?;
    let patch = parse_json_value(&headers, &body)?;
    let mut current =
        serde_json::to_value(&admin.system.settings).map_err(|_| Problem::internal())?;
    merge_patch(&mut current, &patch);
    let new: SystemSettings = from_value(current)?;
    // Manual §6.4 / §8.8: only a super administrator switches the hierarchy.
    if new.hierarchical_administrators != admin.system.settings.hierarchical_administrators
        && !is_super_administrator(&state, &admin).await?
    {
        return Err(Problem::forbidden(
            "only a super administrator switches hierarchical administrators",
        ));
    }
    // Manual §6.6.3: an initial domain is chosen among the administrator's own domains.
    let old = &admin.system.settings;
    for (field, was, now) in [
        (
            "initial_person_domain",
            old.initial_person_domain,
            new.initial_person_domain,
        ),
        (
            "initial_key_domain",
            old.initial_key_domain,
            new.initial_key_domain,
        ),
        (
            "initial_cylinder_domain",
            old.initial_cylinder_domain,
            new.initial_cylinder_domain,
        ),
    ] {
        if let Some(d) = now.filter(|d| Some(*d) != was)
            && !admin.scope.allows(Some(d))
        {
            return Err(Problem::field(
                field,
                format!("no domain {d} among your domains"),
            ));
        }
    }
    let sys = state
        .app
        .update_settings(&admin.cx(&state.app), if_match(&headers)?, new)
        .await?;
    Ok(Json(sys).into_response())
}

/// The master C-key, or a C-key holding the pre-defined Super administrator role.
async fn is_super_administrator(state: &AppState, admin: &Admin) -> ApiResult<bool> {
    use lockgate_model::{
        ckey::CKeyKind,
        permission::{PredefinedRole, Role},
    };
    if admin.c_key.body.kind == CKeyKind::Master {
        return Ok(true);
    }
    for id in &admin.c_key.body.role_ids {
        let role: lockgate_store::Stored<Role> = state
            .store
            .get(
                admin.system.id,
                ObjectKind::Role,
                *id,
                &lockgate_store::Scope::all(),
            )
            .await?;
        if role.body.predefined == Some(PredefinedRole::SuperAdministrator) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `GET /api/v1/me`: who the token belongs to, with effective permissions and domains.
async fn me(admin: Admin) -> ApiResult<Response> {
    Ok(Json(serde_json::json!({
        "system_id": admin.system.id,
        "system_name": admin.system.name,
        "c_key_id": admin.c_key.id,
        "c_key_name": admin.c_key.body.name,
        "c_key_kind": admin.c_key.body.kind,
        "domain_ids": admin.c_key.body.domain_ids,
        "permissions": admin.permissions,
        "token_id": admin.token_id,
    }))
    .into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for, 1–100 characters.
    pub name: String,
    /// C-key the token acts as; your own when omitted (another C-key needs C-key at Full).
    #[serde(default)]
    pub c_key_id: Option<i64>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

async fn create_token(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewToken = json_body(&headers, &body)?;
    let c_key_id = req.c_key_id.unwrap_or(admin.c_key.id);
    if c_key_id != admin.c_key.id {
        // A token acts as its C-key: issuing one for another C-key is impersonation, so it
        // needs C-key and roles at Full and never reaches beyond the issuer's own rights.
        admin.require(Function::CKey, Level::Full)?;
        admin.require(Function::Roles, Level::Full)?;
        let target: Stored<CKey> = state
            .store
            .get(admin.system.id, ObjectKind::CKey, c_key_id, &admin.scope)
            .await
            .map_err(|_| Problem::field("c_key_id", format!("no C-key {c_key_id}")))?;
        if target.body.kind == lockgate_model::ckey::CKeyKind::Master && !admin.is_master() {
            return Err(Problem::forbidden(
                "only the master C-key may issue tokens for the master C-key",
            ));
        }
        let theirs = crate::authz::load_permissions(&state, admin.system.id, &target.body).await?;
        let over = lockgate_model::permission::exceeds(&theirs, &admin.permissions);
        if !over.is_empty() {
            let names: Vec<String> = over
                .into_iter()
                .map(lockgate_model::permission::fn_name)
                .collect();
            return Err(Problem::forbidden(format!(
                "that C-key holds more than you for {}",
                names.join(", ")
            )));
        }
        if let Some(own) = &admin.scope.domains
            && target.body.domain_ids.iter().any(|d| !own.contains(d))
        {
            return Err(Problem::forbidden(
                "that C-key administers domains you do not",
            ));
        }
    }
    let (info, secret) = state
        .store
        .create_token(admin.system.id, c_key_id, &req.name, req.expires_at)
        .await?;
    tracing::info!(
        token_id = info.id,
        c_key_id,
        by = admin.c_key.id,
        "API token issued"
    );
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "token": secret, "info": info, "note": "the token is shown once; store it now" }))).into_response())
}

async fn list_tokens(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    let filter = if admin.level(Function::CKey) >= Level::Full {
        None
    } else {
        Some(admin.c_key.id)
    };
    Ok(
        Json(serde_json::json!({ "items": state.store.tokens(admin.system.id, filter).await? }))
            .into_response(),
    )
}

async fn revoke_token(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    let mine = state
        .store
        .tokens(admin.system.id, Some(admin.c_key.id))
        .await?
        .iter()
        .any(|t| t.id == id);
    if !mine {
        admin.require(Function::CKey, Level::Full)?;
    }
    state.store.revoke_token(admin.system.id, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Most objects one bulk request may change.
pub const MAX_BULK: usize = 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkTags {
    pub kind: ObjectKind,
    pub ids: Vec<i64>,
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkDomain {
    pub kind: ObjectKind,
    pub ids: Vec<i64>,
    pub domain_id: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkValidity {
    pub ids: Vec<i64>,
    pub validity: Validity,
}

fn check_ids(ids: &[i64]) -> ApiResult<()> {
    if ids.is_empty() || ids.len() > MAX_BULK {
        return Err(Problem::field("ids", format!("must list 1–{MAX_BULK} ids")));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        if !seen.insert(id) {
            return Err(Problem::field(format!("ids[{i}]"), "listed twice"));
        }
    }
    Ok(())
}

async fn bulk_apply<R: Resource>(
    state: &AppState,
    admin: &Admin,
    kind: ObjectKind,
    ids: &[i64],
    action: &str,
    f: impl Fn(&mut R) + Send + Sync,
) -> ApiResult<usize> {
    let n = state
        .app
        .update_objects::<R, _>(&admin.cx(&state.app), kind, ids, action, |b| {
            f(b);
            Ok(())
        })
        .await?
        .len();
    Ok(n)
}

/// Dispatch a bulk change to the body type of `kind`.
macro_rules! for_kind {
    ($kind:expr, $body:ident, $call:expr, { $($k:ident => $t:ty),* $(,)? }) => {
        match $kind {
            $(ObjectKind::$k => { type $body = $t; $call })*
            other => Err(Problem::field("kind", format!("bulk changes are not available for {}", other.as_str()))),
        }
    };
}

async fn bulk_tags(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: BulkTags = json_body(&headers, &body)?;
    admin.require_kind(req.kind, Level::Full)?;
    check_ids(&req.ids)?;
    if req.add.is_empty() && req.remove.is_empty() {
        return Err(Problem::field("add", "name tags to add or remove"));
    }
    let add = req.add.clone();
    let remove: Vec<String> = req.remove.iter().map(|t| t.trim().to_lowercase()).collect();
    let apply = |tags: &[String]| {
        let mut out: Vec<String> = tags
            .iter()
            .filter(|t| !remove.contains(&t.trim().to_lowercase()))
            .cloned()
            .collect();
        for a in &add {
            if !out.iter().any(|t| t.trim().eq_ignore_ascii_case(a.trim())) {
                out.push(a.trim().to_string());
            }
        }
        out
    };
    let n = for_kind!(req.kind, T, bulk_apply::<T>(&state, &admin, req.kind, &req.ids, "tags_changed", |b| { let t = apply(b.tags()); b.set_tags(t); }).await, {
        Employee => Person, Visitor => Person, Key => Key, KeyGroup => KeyGroup, Cylinder => Cylinder,
        CylinderGroup => CylinderGroup, AccessProfile => AccessProfile, RemotePd => RemotePd, CKey => CKey,
        TemporaryAccessGroup => TemporaryAccessGroup,
    })?;
    Ok(Json(serde_json::json!({ "updated": n })).into_response())
}

async fn bulk_domain(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: BulkDomain = json_body(&headers, &body)?;
    admin.require_kind(req.kind, Level::Full)?;
    check_ids(&req.ids)?;
    let d = req.domain_id;
    let n = for_kind!(req.kind, T, bulk_apply::<T>(&state, &admin, req.kind, &req.ids, "domain_changed", |b| b.set_domain(d)).await, {
        Employee => Person, Visitor => Person, Key => Key, Cylinder => Cylinder, CylinderGroup => CylinderGroup,
        AccessProfile => AccessProfile, TemporaryAccessGroup => TemporaryAccessGroup,
    })?;
    Ok(Json(serde_json::json!({ "updated": n })).into_response())
}

async fn bulk_validity(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: BulkValidity = json_body(&headers, &body)?;
    admin.require(Function::KeyValidity, Level::Full)?;
    check_ids(&req.ids)?;
    let v = req.validity.clone();
    let n = bulk_apply::<Key>(
        &state,
        &admin,
        ObjectKind::Key,
        &req.ids,
        "validity_changed",
        |k| k.validity = v.clone(),
    )
    .await?;
    Ok(Json(serde_json::json!({ "updated": n })).into_response())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/system", get(system))
        .route(
            "/api/v1/system/settings",
            axum::routing::patch(patch_settings),
        )
        .route("/api/v1/me", get(me))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .route("/api/v1/bulk/tags", post(bulk_tags))
        .route("/api/v1/bulk/domain", post(bulk_domain))
        .route("/api/v1/bulk/key-validity", post(bulk_validity))
}
