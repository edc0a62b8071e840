//! Job endpoints: list jobs, confirm a job from a device, run reconciliation, a key's
//! update status; and the reconciliation that follows every change to the defined state.

use axum::{
    Json, Router,
    extract::{Path, RawQuery, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::Utc;
use lockgate_model::{
    ObjectKind,
    key::{Key, KeyStatus},
    permission::{Function, Level},
};
use lockgate_store::{Stored, reconciliation::RECONCILED_KINDS};

use crate::{
    AppState,
    authz::Admin,
    extract::{parse_bool, parse_id, parse_int, query_pairs},
    problem::{ApiResult, Problem},
};

/// Recompute jobs after a change of `kind`. The change is already committed; a failed run
/// is logged and repeated by the next change or `POST /api/v1/reconcile` (jobs are derived
/// from the stored state, so nothing is lost).
/// Reconcile after a change of the objects `ids` of `kind` (none: a change whose reach
/// is not worked out, e.g. a deletion or an import, which reconciles the whole system).
pub async fn after_change(state: &AppState, admin: &Admin, kind: ObjectKind, ids: &[i64]) {
    if !RECONCILED_KINDS.contains(&kind) {
        return;
    }
    let store = &state.store;
    let result = async {
        let scope = store.scope_of_change(admin.system.id, kind, ids).await?;
        store
            .reconcile_scope(&admin.system, &admin.actor, Utc::now(), &scope)
            .await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, system_id = admin.system.id, "reconciliation after a change failed; it runs again on the next change");
    }
}

/// The kind of object a job is about.
async fn job_target_kind(
    state: &AppState,
    admin: &Admin,
    j: &lockgate_store::reconciliation::JobRecord,
) -> ApiResult<ObjectKind> {
    Ok(match j.kind.as_str() {
        "remote_update" => ObjectKind::Key,
        "cylinder_programming" => ObjectKind::Cylinder,
        _ => state
            .store
            .kind_of(admin.system.id, j.target_id)
            .await?
            .unwrap_or(ObjectKind::Cylinder),
    })
}

fn require_any_view(admin: &Admin) -> ApiResult<()> {
    if admin.level(Function::Key) >= Level::View || admin.level(Function::Cylinder) >= Level::View {
        Ok(())
    } else {
        admin.require(Function::Key, Level::View)
    }
}

async fn list(state: AppState, admin: Admin, raw: Option<String>) -> ApiResult<Response> {
    require_any_view(&admin)?;
    let (mut target, mut open, mut limit, mut c_key) = (None, false, 100i64, None);
    for (k, v) in query_pairs(raw.as_deref()) {
        match k.as_str() {
            "target_id" => target = Some(parse_int("target_id", &v, 1, i64::MAX)?),
            "c_key_id" => c_key = Some(parse_int("c_key_id", &v, 1, i64::MAX)?),
            "open" => open = parse_bool("open", &v)?,
            "limit" => limit = parse_int("limit", &v, 1, 1000)?,
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown query parameter '{}'; known: target_id, c_key_id, open, limit",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    let mut jobs = state
        .store
        .jobs(admin.system.id, target, open, limit)
        .await?;
    // Only jobs whose key or cylinder the caller may see.
    let mut visible = Vec::with_capacity(jobs.len());
    // Jobs waiting for or held by one C-key.
    if let Some(c) = c_key {
        jobs.retain(|j| j.assigned_to == Some(c) || j.loaded_on == Some(c));
    }
    for j in jobs.drain(..) {
        let kind = job_target_kind(&state, &admin, &j).await?;
        if admin.level(kind.function()) >= Level::View
            && state
                .store
                .kind_visible(admin.system.id, kind, j.target_id, &admin.scope)
                .await?
        {
            visible.push(j);
        }
    }
    Ok(Json(serde_json::json!({ "items": visible })).into_response())
}

async fn confirm(state: AppState, admin: Admin, id: String) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let job = state.store.job(admin.system.id, id).await?;
    let kind = job_target_kind(&state, &admin, &job).await?;
    match job.kind.as_str() {
        "remote_update" => admin.require(Function::KeyAuthorisation, Level::Full)?,
        "audit_trail" => admin.require(Function::AuditTrail, Level::View)?,
        _ => admin.require(Function::CylinderProgramming, Level::Full)?,
    }
    if !state
        .store
        .kind_visible(admin.system.id, kind, job.target_id, &admin.scope)
        .await?
    {
        return Err(Problem::not_found(format!("no job {id}")));
    }
    let done = state
        .store
        .confirm_job(&admin.system, id, Utc::now())
        .await?;
    Ok(Json(done).into_response())
}

async fn run(state: AppState, admin: Admin) -> ApiResult<Response> {
    if admin.level(Function::KeyAuthorisation) < Level::Full {
        admin.require(Function::CylinderAuthorisation, Level::Full)?;
    }
    let report = state
        .store
        .reconcile(&admin.system, &admin.actor, Utc::now())
        .await?;
    Ok(Json(report).into_response())
}

/// A local PD (encoder) re-edited the key: its structure is written.
async fn re_edited(state: AppState, admin: Admin, id: String) -> ApiResult<Response> {
    admin.require(Function::Key, Level::Full)?;
    let s = state
        .store
        .confirm_re_edition(
            &admin.system,
            parse_id(&id)?,
            &admin.scope,
            &admin.actor,
            Utc::now(),
        )
        .await?;
    Ok(crate::resources::object_response(
        axum::http::StatusCode::OK,
        &s,
    ))
}

async fn update_status(state: AppState, admin: Admin, id: String) -> ApiResult<Response> {
    admin.require(Function::Key, Level::View)?;
    let id = parse_id(&id)?;
    let _: Stored<Key> = state
        .store
        .get(admin.system.id, ObjectKind::Key, id, &admin.scope)
        .await?;
    let status = state
        .store
        .key_update_status(&admin.system, id, Utc::now())
        .await?;
    let open = state.store.jobs(admin.system.id, Some(id), true, 1).await?;
    Ok(
        Json(serde_json::json!({ "key_id": id, "status": status, "open_job": open.first() }))
            .into_response(),
    )
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CKeyRef {
    c_key_id: i64,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FailReport {
    reason: String,
}

/// The cylinder job `id`, visible to the caller, with its engine view.
async fn cylinder_job(
    state: &AppState,
    admin: &Admin,
    id: i64,
) -> ApiResult<(
    lockgate_store::reconciliation::JobRecord,
    lockgate_engine::jobs::CylinderJob,
)> {
    let job = state.store.job(admin.system.id, id).await?;
    if job.kind != "cylinder_programming"
        || !state
            .store
            .kind_visible(
                admin.system.id,
                ObjectKind::Cylinder,
                job.target_id,
                &admin.scope,
            )
            .await?
    {
        return Err(Problem::not_found(format!(
            "no cylinder programming job {id}"
        )));
    }
    // Only the master executes a job that changes which C-key groups the cylinder admits.
    let target: lockgate_engine::state::CylinderProgram =
        serde_json::from_value(job.program.clone()).unwrap_or_default();
    let actual = state
        .store
        .cylinder_actual(admin.system.id, job.target_id)
        .await?
        .unwrap_or_default();
    let mut changed_groups: Vec<i64> = target
        .key_groups
        .keys()
        .chain(actual.key_groups.keys())
        .copied()
        .collect();
    changed_groups.retain(|g| target.key_groups.get(g) != actual.key_groups.get(g));
    let mut changes_c_key_access = false;
    for g in changed_groups {
        if let Ok(kg) = state
            .store
            .get::<lockgate_model::key_group::KeyGroup>(
                admin.system.id,
                ObjectKind::KeyGroup,
                g,
                &lockgate_store::Scope::all(),
            )
            .await
        {
            use lockgate_model::key_group::KeyGroupKind;
            changes_c_key_access |= matches!(
                kg.body.kind,
                KeyGroupKind::NormalCKey | KeyGroupKind::MasterCKey
            );
        }
    }
    let engine_job = lockgate_engine::jobs::CylinderJob {
        id: job.id,
        cylinder: job.target_id,
        actions: job.actions.iter().copied().collect(),
        reprogram: job
            .actions
            .contains(&lockgate_engine::reconcile::CylinderAction::Reprogram),
        audit_trail: false,
        changes_c_key_access,
        priority: if job.priority == "high" {
            lockgate_engine::jobs::Priority::High
        } else {
            lockgate_engine::jobs::Priority::Normal
        },
        state: match job.state.as_str() {
            "created" => lockgate_engine::jobs::JobState::Created,
            "loaded" => lockgate_engine::jobs::JobState::Loaded {
                c_key: job.loaded_on.unwrap_or_default(),
            },
            "awaiting_approval" => lockgate_engine::jobs::JobState::AwaitingApproval,
            _ => lockgate_engine::jobs::JobState::Cancelled,
        },
        assigned_to: job.assigned_to,
    };
    Ok((job, engine_job))
}

async fn load(
    state: AppState,
    admin: Admin,
    id: String,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    admin.require(Function::CylinderProgramming, Level::Full)?;
    let id = parse_id(&id)?;
    let req: CKeyRef = crate::extract::json_body(&headers, &body)?;
    // Only your own C-key: it is in your hands at the local or remote PD.
    if req.c_key_id != admin.c_key.id {
        return Err(Problem::forbidden(
            "jobs are loaded on the C-key you are using",
        ));
    }
    let (_, job) = cylinder_job(&state, &admin, id).await?;
    let c = &admin.c_key.body;
    let loading = lockgate_engine::jobs::LoadingCKey {
        id: admin.c_key.id,
        kind: c.kind,
        blocked: c.blocked,
        programming_permission: true,
        reprogramming_right: c.capabilities.cylinder_reprogramming,
        group_programming: c.capabilities.cylinder_group_programming,
    };
    lockgate_engine::jobs::can_load(&job, &loading, None).map_err(|e| {
        Problem::new(
            axum::http::StatusCode::CONFLICT,
            "job-not-loadable",
            e.to_string(),
        )
        .with_extra(serde_json::to_value(&e).unwrap_or_default())
    })?;
    let done = state
        .store
        .load_job(admin.system.id, id, admin.c_key.id)
        .await?;
    Ok(Json(done).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRef {
    key_id: i64,
}

/// "Block lost key with user keys": a generation 2 dynamic user key carries a block job
/// to its cylinder.
async fn carry(
    state: AppState,
    admin: Admin,
    id: String,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    admin.require(Function::CylinderProgramming, Level::Full)?;
    let id = parse_id(&id)?;
    let req: KeyRef = crate::extract::json_body(&headers, &body)?;
    if !admin.system.settings.block_lost_keys_with_user_keys {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            "setting-off",
            "blocking lost keys with user keys is off (system setting block_lost_keys_with_user_keys)",
        ));
    }
    let (_, job) = cylinder_job(&state, &admin, id).await?;
    let key: Stored<Key> = state
        .store
        .get(admin.system.id, ObjectKind::Key, req.key_id, &admin.scope)
        .await
        .map_err(|_| Problem::field("key_id", format!("no key {}", req.key_id)))?;
    let k = &key.body;
    if matches!(k.status, KeyStatus::Lost | KeyStatus::Broken) {
        return Err(Problem::field(
            "key_id",
            format!(
                "key {} is {} and cannot carry jobs",
                key.id,
                k.status.as_str()
            ),
        ));
    }
    let free = state
        .store
        .key_free_slots(key.id, k.access_list_capacity)
        .await?;
    if !lockgate_engine::jobs::can_carry_block(
        &job,
        k.key_type,
        k.generation,
        k.firmware.as_ref(),
        free,
    ) {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            "job-not-carriable",
            format!(
                "key {} cannot carry job {id}: only block jobs, carried by generation 2 dynamic keys with firmware 12.2 or later and free memory ({free} free entries)",
                key.id
            ),
        ));
    }
    let done = state.store.carry_job(admin.system.id, id, key.id).await?;
    Ok(Json(done).into_response())
}

async fn assign(
    state: AppState,
    admin: Admin,
    id: String,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    admin.require(Function::CylinderProgramming, Level::Full)?;
    let id = parse_id(&id)?;
    let req: CKeyRef = crate::extract::json_body(&headers, &body)?;
    let _ = cylinder_job(&state, &admin, id).await?;
    let target: Stored<lockgate_model::ckey::CKey> = state
        .store
        .get(
            admin.system.id,
            ObjectKind::CKey,
            req.c_key_id,
            &admin.scope,
        )
        .await
        .map_err(|_| Problem::field("c_key_id", format!("no C-key {}", req.c_key_id)))?;
    if target.body.blocked {
        return Err(Problem::field("c_key_id", "that C-key is blocked"));
    }
    let assigned = state
        .store
        .jobs(admin.system.id, None, true, 100_000)
        .await?
        .iter()
        .filter(|j| j.assigned_to == Some(req.c_key_id))
        .count();
    let done = state
        .store
        .assign_job(admin.system.id, id, req.c_key_id)
        .await?;
    let warning = (assigned + 1 > lockgate_engine::jobs::RECOMMENDED_JOBS_PER_C_KEY).then(|| {
        format!(
            "C-key {} now holds {} assigned jobs; about {} is the recommended maximum",
            req.c_key_id,
            assigned + 1,
            lockgate_engine::jobs::RECOMMENDED_JOBS_PER_C_KEY
        )
    });
    Ok(Json(serde_json::json!({ "job": done, "warning": warning })).into_response())
}

async fn fail(
    state: AppState,
    admin: Admin,
    id: String,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    admin.require(Function::CylinderProgramming, Level::Full)?;
    let id = parse_id(&id)?;
    let req: FailReport = crate::extract::json_body(&headers, &body)?;
    if req.reason.trim().is_empty() {
        return Err(Problem::field("reason", "is required"));
    }
    let _ = cylinder_job(&state, &admin, id).await?;
    let failed = state
        .store
        .fail_job(admin.system.id, id, &req.reason)
        .await?;
    // A failed job brought back is recreated.
    let report = state
        .store
        .reconcile(&admin.system, &admin.actor, Utc::now())
        .await?;
    Ok(Json(serde_json::json!({ "job": failed, "recreated": report.created })).into_response())
}

async fn reprogram(state: AppState, admin: Admin, id: String) -> ApiResult<Response> {
    admin.require(Function::CylinderAuthorisation, Level::Full)?;
    let id = parse_id(&id)?;
    let _: Stored<lockgate_model::cylinder::Cylinder> = state
        .store
        .get(admin.system.id, ObjectKind::Cylinder, id, &admin.scope)
        .await?;
    let job = state
        .store
        .request_reprogramming(&admin.system, id, &admin.actor, Utc::now())
        .await?;
    Ok((axum::http::StatusCode::CREATED, Json(job)).into_response())
}

async fn audit_trail_request(
    state: AppState,
    admin: Admin,
    kind: ObjectKind,
    id: String,
) -> ApiResult<Response> {
    admin.require(Function::AuditTrail, Level::Full)?;
    let id = parse_id(&id)?;
    if kind == ObjectKind::Key {
        let k: Stored<Key> = state
            .store
            .get(admin.system.id, kind, id, &admin.scope)
            .await?;
        if !k.body.key_type.has_clock() {
            return Err(Problem::new(
                axum::http::StatusCode::CONFLICT,
                "rule-violation",
                "only quartz and dynamic keys store an audit trail",
            ));
        }
    } else if !state
        .store
        .kind_visible(admin.system.id, kind, id, &admin.scope)
        .await?
    {
        return Err(Problem::not_found(format!("no cylinder {id}")));
    }
    let job = state
        .store
        .request_audit_trail(&admin.system, id, &admin.actor, Utc::now())
        .await?;
    Ok((axum::http::StatusCode::CREATED, Json(job)).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalDecision {
    approved: bool,
}

async fn approve(
    state: AppState,
    admin: Admin,
    id: String,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    admin.require(Function::Approvals, Level::Full)?;
    let id = parse_id(&id)?;
    let d: ApprovalDecision = crate::extract::json_body(&headers, &body)?;
    let job = state.store.job(admin.system.id, id).await?;
    if job.kind != "audit_trail" {
        return Err(Problem::not_found(format!("no audit-trail request {id}")));
    }
    let kind = job_target_kind(&state, &admin, &job).await?;
    if !state
        .store
        .kind_visible(admin.system.id, kind, job.target_id, &admin.scope)
        .await?
    {
        return Err(Problem::not_found(format!("no audit-trail request {id}")));
    }
    let done = state
        .store
        .decide_audit_trail(&admin.system, id, d.approved, &admin.actor)
        .await?;
    Ok(Json(done).into_response())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/jobs",
            get(|State(s): State<AppState>, a: Admin, RawQuery(q): RawQuery| list(s, a, q)),
        )
        .route(
            "/api/v1/jobs/{id}/confirm",
            post(|State(s): State<AppState>, a: Admin, Path(id): Path<String>| confirm(s, a, id)),
        )
        .route(
            "/api/v1/jobs/{id}/load",
            post(
                |State(s): State<AppState>,
                 a: Admin,
                 Path(id): Path<String>,
                 h: axum::http::HeaderMap,
                 b: axum::body::Bytes| load(s, a, id, h, b),
            ),
        )
        .route(
            "/api/v1/jobs/{id}/assign",
            post(
                |State(s): State<AppState>,
                 a: Admin,
                 Path(id): Path<String>,
                 h: axum::http::HeaderMap,
                 b: axum::body::Bytes| assign(s, a, id, h, b),
            ),
        )
        .route(
            "/api/v1/jobs/{id}/carry",
            post(
                |State(s): State<AppState>,
                 a: Admin,
                 Path(id): Path<String>,
                 h: axum::http::HeaderMap,
                 b: axum::body::Bytes| carry(s, a, id, h, b),
            ),
        )
        .route(
            "/api/v1/jobs/{id}/fail",
            post(
                |State(s): State<AppState>,
                 a: Admin,
                 Path(id): Path<String>,
                 h: axum::http::HeaderMap,
                 b: axum::body::Bytes| fail(s, a, id, h, b),
            ),
        )
        .route(
            "/api/v1/jobs/{id}/approve",
            post(
                |State(s): State<AppState>,
                 a: Admin,
                 Path(id): Path<String>,
                 h: axum::http::HeaderMap,
                 b: axum::body::Bytes| approve(s, a, id, h, b),
            ),
        )
        .route(
            "/api/v1/cylinders/{id}/reprogram",
            post(|State(s): State<AppState>, a: Admin, Path(id): Path<String>| reprogram(s, a, id)),
        )
        .route(
            "/api/v1/cylinders/{id}/audit-trail-request",
            post(
                |State(s): State<AppState>, a: Admin, Path(id): Path<String>| {
                    audit_trail_request(s, a, ObjectKind::Cylinder, id)
                },
            ),
        )
        .route(
            "/api/v1/keys/{id}/audit-trail-request",
            post(
                |State(s): State<AppState>, a: Admin, Path(id): Path<String>| {
                    audit_trail_request(s, a, ObjectKind::Key, id)
                },
            ),
        )
        .route(
            "/api/v1/reconcile",
            post(|State(s): State<AppState>, a: Admin| run(s, a)),
        )
        .route(
            "/api/v1/keys/{id}/re-edited",
            post(|State(s): State<AppState>, a: Admin, Path(id): Path<String>| re_edited(s, a, id)),
        )
        .route(
            "/api/v1/keys/{id}/update-status",
            get(
                |State(s): State<AppState>, a: Admin, Path(id): Path<String>| {
                    update_status(s, a, id)
                },
            ),
        )
}
