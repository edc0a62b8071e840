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
use lockgate_store::{Scope, Stored};
use serde::Deserialize;

use crate::{
    AppState,
    authz::Admin,
    extract::{PathId, from_value, if_match, json_body, parse_json_value},
    problem::{ApiResult, Problem},
    resources::merge_patch,
};

/// Path of the maintenance lock: the one write allowed while the system is locked.
pub const MAINTENANCE_PATH: &str = "/api/v1/system/maintenance";

/// `GET /api/v1/system`: the locking system with fixed and adjustable settings.
async fn system(admin: Admin) -> ApiResult<Response> {
    admin.require(Function::SystemSettings, Level::View)?;
    Ok(Json(&admin.system).into_response())
}

/// `PATCH /api/v1/system/settings`: merge patch on the adjustable settings.
///
/// The patch is merged into the settings as they are *now* and written only if they are
/// still at that version, so a concurrent PATCH is never silently reverted: with `If-Match`
/// a changed version is a 412, without one the patch is merged again onto the new version.
async fn patch_settings(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require(Function::SystemSettings, Level::Full)?;
    let patch = parse_json_value(&headers, &body)?;
    let expected = if_match(&headers)?;
    let attempts: u32 = if expected.is_some() { 1 } else { 10 };
    let mut is_super = None;
    for attempt in 1..=attempts {
        let system = state.store.system(admin.system.id).await?;
        if let Some(v) = expected
            && v != system.version
        {
            return Err(lockgate_store::StoreError::VersionMismatch {
                current: system.version,
            }
            .into());
        }
        let mut current =
            serde_json::to_value(&system.settings).map_err(|_| Problem::internal())?;
        merge_patch(&mut current, &patch);
        let new: SystemSettings = from_value(current)?;
        let old = &system.settings;
        // Manual §6.4 / §8.8: only a super administrator switches the hierarchy.
        if new.hierarchical_administrators != old.hierarchical_administrators {
            if is_super.is_none() {
                is_super = Some(is_super_administrator(&state, &admin).await?);
            }
            if is_super != Some(true) {
                return Err(Problem::forbidden(
                    "only a super administrator switches hierarchical administrators",
                ));
            }
        }
        // Manual §6.6.3: an initial domain is chosen among the administrator's own domains.
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
        let cx = state.app.context(&system, &admin.scope, &admin.actor);
        match state
            .app
            .update_settings(&cx, Some(system.version), new)
            .await
        {
            Ok(sys) => return Ok(Json(sys).into_response()),
            Err(lockgate_app::AppError::Store(lockgate_store::StoreError::VersionMismatch {
                ..
            })) if attempt < attempts => {
                tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt) * 3)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Problem::new(
        StatusCode::CONFLICT,
        "contention",
        "the settings are being changed by others; try again",
    ))
}

/// The master C-key, or a C-key holding the pre-defined Super administrator role, acting
/// through a token it issued itself or that another super administrator issued to it (a token
/// capped at a lesser issuer's rights is not a super administrator's).
pub(crate) async fn is_super_administrator(state: &AppState, admin: &Admin) -> ApiResult<bool> {
    if !c_key_is_super(state, admin.system.id, &admin.c_key.body).await? {
        return Ok(false);
    }
    if admin.token_issued_by == admin.c_key.id {
        return Ok(true);
    }
    let issuer: Stored<CKey> = state
        .store
        .get(
            admin.system.id,
            ObjectKind::CKey,
            admin.token_issued_by,
            &lockgate_store::Scope::all(),
        )
        .await?;
    c_key_is_super(state, admin.system.id, &issuer.body).await
}

/// Gateway-wide operations (plugins, dead letters) span every locking system: only the super
/// administrators of the operator system (`[access] operator_system_id`, or the only system)
/// perform them. A 403 naming the rule otherwise.
pub(crate) async fn require_operator(state: &AppState, admin: &Admin) -> ApiResult<()> {
    let operator_system = match state.config.operator_system_id {
        Some(id) => Some(id),
        None => {
            let systems = state.store.systems().await?;
            (systems.len() == 1).then(|| systems[0].id)
        }
    };
    if operator_system == Some(admin.system.id) && is_super_administrator(state, admin).await? {
        return Ok(());
    }
    Err(Problem::forbidden(
        "this is a gateway-wide operation: only a super administrator of the operator locking system (access.operator_system_id) performs it",
    ))
}

async fn c_key_is_super(state: &AppState, system_id: i64, c_key: &CKey) -> ApiResult<bool> {
    use lockgate_model::{
        ckey::CKeyKind,
        permission::{PredefinedRole, Role},
    };
    if c_key.kind == CKeyKind::Master {
        return Ok(true);
    }
    for id in &c_key.role_ids {
        let role: Stored<Role> = state
            .store
            .get(
                system_id,
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
    /// `api` (default): the REST API; `scim`: only SCIM provisioning under `/scim/v2`, for a
    /// C-key holding the Web service role.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub purpose: Option<lockgate_store::tokens::TokenPurpose>,
}

async fn create_token(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    // A token is a C-key credential that outlives the session: not minted by SSO.
    admin.require_c_key_login("issuing an API token")?;
    let req: NewToken = json_body(&headers, &body)?;
    if admin.token_issued_by != admin.c_key.id {
        // A token capped below its C-key's rights by its issuer cannot mint: a new token would
        // be capped at this C-key's rights only, and so carry more than the minting one.
        let own =
            crate::authz::load_permissions(&state, admin.system.id, &admin.c_key.body).await?;
        if own != admin.permissions || crate::authz::own_scope(&admin.c_key.body) != admin.scope {
            return Err(Problem::forbidden(
                "this token's issuer holds less than its C-key: it cannot issue tokens",
            ));
        }
    }
    let c_key_id = req.c_key_id.unwrap_or(admin.c_key.id);
    if c_key_id == admin.c_key.id {
        if !admin.is_master() {
            admin.require(Function::ApiTokens, Level::Full)?;
        }
    } else {
        // A token acts as its C-key: issuing one for another C-key is impersonation, so it
        // needs C-key and roles at Full and never reaches beyond the issuer's own rights
        // (at issue here, and on every request through the issuer cap in `authz`).
        admin.require(Function::CKey, Level::Full)?;
        admin.require(Function::Roles, Level::Full)?;
        let target: Stored<CKey> = state
            .store
            .get(admin.system.id, ObjectKind::CKey, c_key_id, &admin.scope)
            .await
            .map_err(|_| Problem::field("c_key_id", format!("no C-key {c_key_id}")))?;
        crate::policy::check_target_c_key(&state, &admin, &target.body, "issue a token for")
            .await?;
        // Even the master never acts *as* a C-key holding rights it lacks (an approver's
        // token would let it approve its own requests).
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
    }
    let purpose = req.purpose.unwrap_or_default();
    if purpose != lockgate_store::tokens::TokenPurpose::Api {
        let holder: Stored<CKey> = state
            .store
            .get(admin.system.id, ObjectKind::CKey, c_key_id, &Scope::all())
            .await?;
        if !crate::authz::holds_web_service_role(&state, admin.system.id, &holder.body).await? {
            return Err(Problem::field(
                "purpose",
                format!(
                    "a '{}' token is issued only for a C-key holding the Web service role",
                    purpose.as_str()
                ),
            ));
        }
    }
    let now = Utc::now();
    let longest = now + state.config.max_token_lifetime;
    let expires_at = match req.expires_at {
        Some(t) if t > longest => {
            return Err(Problem::field(
                "expires_at",
                format!(
                    "is beyond the longest token lifetime of {} days",
                    state.config.max_token_lifetime.num_days()
                ),
            ));
        }
        Some(t) => t,
        None => longest,
    };
    if let Some(own) = admin.token_expires_at
        && expires_at > own
        && req.expires_at.is_some()
    {
        return Err(Problem::field(
            "expires_at",
            format!("is after {own}, when the token issuing it expires"),
        ));
    }
    let expires_at = admin
        .token_expires_at
        .map_or(expires_at, |own| expires_at.min(own));
    let (info, secret) = state
        .store
        .create_token_for(
            admin.system.id,
            c_key_id,
            admin.c_key.id,
            &req.name,
            Some(expires_at),
            purpose,
        )
        .await?;
    tracing::info!(
        token_id = info.id,
        c_key_id,
        by = admin.c_key.id,
        "API token issued"
    );
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "token": secret, "info": info, "note": "the token is shown once; store it now" }))).into_response())
}

/// The tokens an administrator may list and revoke: those of their C-key and those they
/// issued; the super administrator's are all of the system's.
async fn manageable_tokens(
    state: &AppState,
    admin: &Admin,
) -> ApiResult<Vec<lockgate_store::tokens::TokenInfo>> {
    let filter = if is_super_administrator(state, admin).await? {
        None
    } else {
        Some(admin.c_key.id)
    };
    Ok(state.store.tokens(admin.system.id, filter).await?)
}

async fn list_tokens(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    let items = manageable_tokens(&state, &admin).await?;
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

async fn revoke_token(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    if !manageable_tokens(&state, &admin)
        .await?
        .iter()
        .any(|t| t.id == id)
    {
        return Err(Problem::not_found(format!(
            "no token {id} of yours or issued by you"
        )));
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
    // PIN validation and revalidation are licensed on every path that sets them.
    let after = serde_json::json!({ "validity": req.validity });
    crate::licence::gate_write(&state, &admin, ObjectKind::Key, None, &after).await?;
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

/// `GET /api/v1/statistics`: counts of the system's objects by kind, status and domain (in
/// the caller's domains), and its open jobs (manual §6.14).
async fn statistics(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    admin.require(Function::Statistics, Level::View)?;
    let mut stats = state.store.statistics(admin.system.id).await?;
    stats.objects.retain(|c| admin.scope.allows(c.domain_id));
    Ok(Json(stats).into_response())
}

/// `GET /api/v1/system/status`: what is online and what holds the system (manual §6.13): the
/// maintenance lock, the licence state, open jobs, and the remote PDs' connection state.
async fn system_status(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    admin.require(Function::SystemStatus, Level::View)?;
    let now = state.app.now();
    let licence = crate::licence::status_of(&state, admin.system.id).await?;
    let stats = state.store.statistics(admin.system.id).await?;
    let pds: Vec<Stored<RemotePd>> = if admin.level(Function::RemotePds) >= Level::List {
        state
            .store
            .list_all(admin.system.id, ObjectKind::RemotePd, &admin.scope, 10_000)
            .await?
    } else {
        Vec::new()
    };
    let remote_pds: Vec<serde_json::Value> = pds
        .iter()
        .map(|p| {
            serde_json::json!({
                "id": p.id,
                "name": p.body.name,
                "online": p.body.connection.online,
                "last_connection": p.body.connection.last_connection,
                "firmware": p.body.firmware,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "maintenance_from": admin.system.maintenance_from,
        "in_maintenance": admin.system.in_maintenance(now),
        "licence": licence.state(),
        "open_jobs": stats.open_jobs,
        "remote_pds": remote_pds,
    }))
    .into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceLock {
    /// When the lock takes effect: at least 10 minutes from now (manual §6.2).
    pub from: DateTime<Utc>,
}

/// `PUT /api/v1/system/maintenance`: lock the system for maintenance from a time at least
/// 10 minutes ahead; `DELETE` unlocks. Both need `maintenance` at Full.
async fn lock_for_maintenance(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require(Function::Maintenance, Level::Full)?;
    let req: MaintenanceLock = json_body(&headers, &body)?;
    if req.from < state.app.now() + chrono::Duration::minutes(10) {
        return Err(Problem::field(
            "from",
            "must be at least 10 minutes from now",
        ));
    }
    let sys = state
        .store
        .set_maintenance(&admin.system, &admin.actor, Some(req.from))
        .await?;
    Ok(Json(sys).into_response())
}

async fn unlock_maintenance(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    admin.require(Function::Maintenance, Level::Full)?;
    let sys = state
        .store
        .set_maintenance(&admin.system, &admin.actor, None)
        .await?;
    Ok(Json(sys).into_response())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/system", get(system))
        .route("/api/v1/system/status", get(system_status))
        .route(
            MAINTENANCE_PATH,
            axum::routing::put(lock_for_maintenance).delete(unlock_maintenance),
        )
        .route("/api/v1/statistics", get(statistics))
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
