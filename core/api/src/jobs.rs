//! Job endpoints: list jobs, report a job executed or failed, load / carry / assign cylinder
//! jobs, approvals, reprogramming and audit-trail requests, run reconciliation, a key's
//! update status. Each handler checks the caller's permissions and calls the application
//! layer (`lockgate-app`), which owns the job lifecycle.

use axum::{
    Json, Router,
    extract::{RawQuery, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use lockgate_app::{JobKind, JobRecord, JobTarget};
use lockgate_model::{
    ObjectKind,
    key::Key,
    permission::{Function, Level},
};
use lockgate_store::Stored;

use crate::{
    AppState,
    authz::Admin,
    extract::{JsonBody, PathId, parse_bool, parse_int, query_pairs},
    problem::{ApiResult, Problem},
};

/// The kind of object a job is about.
fn job_target_kind(j: &JobRecord) -> ObjectKind {
    match j.target {
        JobTarget::Key => ObjectKind::Key,
        JobTarget::Cylinder => ObjectKind::Cylinder,
    }
}

fn require_any_view(admin: &Admin) -> ApiResult<()> {
    if admin.level(Function::Key) >= Level::View || admin.level(Function::Cylinder) >= Level::View {
        Ok(())
    } else {
        admin.require(Function::Key, Level::View)
    }
}

async fn list(
    State(state): State<AppState>,
    admin: Admin,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
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
    // Open jobs waiting for or held by one C-key.
    if let Some(c) = c_key {
        jobs.retain(|j| {
            !j.state.is_final()
                && (j.assigned_to == Some(c)
                    || j.state == lockgate_app::JobState::Loaded { c_key: c })
        });
    }
    // Only jobs whose key or cylinder the caller may see.
    let mut visible = Vec::with_capacity(jobs.len());
    for j in jobs.drain(..) {
        let kind = job_target_kind(&j);
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

/// The permission reporting on a job needs.
fn require_report(admin: &Admin, job: &JobRecord) -> ApiResult<()> {
    match job.kind {
        JobKind::RemoteUpdate => admin.require(Function::KeyAuthorisation, Level::Full),
        JobKind::AuditTrail => admin.require(Function::AuditTrail, Level::View),
        JobKind::CylinderProgramming => admin.require(Function::CylinderProgramming, Level::Full),
    }
}

/// `POST /jobs/{id}/confirm`: the hardware executed the job. A key's job is reported by the
/// key at a PD; a cylinder job by the C-key it is loaded on (yours), or for the user key
/// carrying it.
async fn confirm(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require_c_key_login("confirming a job at the local PD")?;
    let cx = admin.cx(&state.app);
    let job = state.app.visible_job(&cx, id).await?;
    require_report(&admin, &job)?;
    let done = state.app.confirm_by_hand(&cx, id).await?;
    Ok(Json(done.job).into_response())
}

async fn run(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    if admin.level(Function::KeyAuthorisation) < Level::Full {
        admin.require(Function::CylinderAuthorisation, Level::Full)?;
    }
    let report = state.app.reconcile(&admin.cx(&state.app)).await?;
    Ok(Json(report).into_response())
}

/// A local PD (encoder) re-edited the key: its structure is written.
async fn re_edited(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require(Function::Key, Level::Full)?;
    let s = state
        .app
        .confirm_re_edition(&admin.cx(&state.app), id)
        .await?;
    Ok(crate::resources::object_response(StatusCode::OK, &s))
}

async fn update_status(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require(Function::Key, Level::View)?;
    let _: Stored<Key> = state
        .store
        .get(admin.system.id, ObjectKind::Key, id, &admin.scope)
        .await?;
    let status = state
        .store
        .key_update_status(&admin.system, id, state.app.now())
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

async fn load(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    JsonBody(req): JsonBody<CKeyRef>,
) -> ApiResult<Response> {
    admin.require_c_key_login("sending a task to the C-key (local cylinder programming)")?;
    admin.require(Function::CylinderProgramming, Level::Full)?;
    // Only your own C-key: it is in your hands at the local or remote PD.
    if req.c_key_id != admin.c_key.id {
        return Err(Problem::forbidden(
            "jobs are loaded on the C-key you are using",
        ));
    }
    let done = state
        .app
        .load_job(&admin.cx(&state.app), id, &admin.c_key, true)
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
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    JsonBody(req): JsonBody<KeyRef>,
) -> ApiResult<Response> {
    admin.require(Function::CylinderProgramming, Level::Full)?;
    let done = state
        .app
        .carry_job(&admin.cx(&state.app), id, req.key_id)
        .await?;
    Ok(Json(done).into_response())
}

async fn assign(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    JsonBody(req): JsonBody<CKeyRef>,
) -> ApiResult<Response> {
    admin.require(Function::CylinderProgramming, Level::Full)?;
    let (done, waiting) = state
        .app
        .assign_job(&admin.cx(&state.app), id, req.c_key_id)
        .await?;
    let recommended = lockgate_engine::jobs::RECOMMENDED_JOBS_PER_C_KEY;
    let warning = (usize::try_from(waiting).unwrap_or(usize::MAX) > recommended).then(|| {
        format!(
            "C-key {} now holds {waiting} assigned jobs; about {recommended} is the recommended maximum",
            req.c_key_id
        )
    });
    Ok(Json(serde_json::json!({ "job": done, "warning": warning })).into_response())
}

/// `POST /jobs/{id}/fail`: the hardware reports the job failed; reconciliation recreates it.
async fn fail(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    JsonBody(req): JsonBody<FailReport>,
) -> ApiResult<Response> {
    admin.require_c_key_login("removing an unfinished task (reporting a job failed)")?;
    if req.reason.trim().is_empty() {
        return Err(Problem::field("reason", "is required"));
    }
    let cx = admin.cx(&state.app);
    let job = state.app.visible_job(&cx, id).await?;
    require_report(&admin, &job)?;
    let report = state.app.report_job(&cx, id, Some(req.reason)).await?;
    let recreated = report.reconciliation.map_or(0, |r| r.created + r.replaced);
    Ok(Json(serde_json::json!({ "job": report.job, "recreated": recreated })).into_response())
}

async fn reprogram(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require(Function::CylinderAuthorisation, Level::Full)?;
    let job = state
        .app
        .request_reprogramming(&admin.cx(&state.app), id)
        .await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

async fn audit_trail_request(
    state: AppState,
    admin: Admin,
    target: JobTarget,
    id: i64,
) -> ApiResult<Response> {
    admin.require(Function::AuditTrail, Level::Full)?;
    let job = state
        .app
        .request_audit_trail(&admin.cx(&state.app), target, id)
        .await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

async fn key_audit_trail_request(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    audit_trail_request(state, admin, JobTarget::Key, id).await
}

async fn cylinder_audit_trail_request(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    audit_trail_request(state, admin, JobTarget::Cylinder, id).await
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalDecision {
    approved: bool,
}

async fn approve(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    JsonBody(d): JsonBody<ApprovalDecision>,
) -> ApiResult<Response> {
    admin.require(Function::Approvals, Level::Full)?;
    let done = state
        .app
        .decide_approval(&admin.cx(&state.app), id, d.approved)
        .await?;
    Ok(Json(done).into_response())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs", get(list))
        .route("/api/v1/jobs/{id}/confirm", post(confirm))
        .route("/api/v1/jobs/{id}/load", post(load))
        .route("/api/v1/jobs/{id}/assign", post(assign))
        .route("/api/v1/jobs/{id}/carry", post(carry))
        .route("/api/v1/jobs/{id}/fail", post(fail))
        .route("/api/v1/jobs/{id}/approve", post(approve))
        .route("/api/v1/cylinders/{id}/reprogram", post(reprogram))
        .route(
            "/api/v1/cylinders/{id}/audit-trail-request",
            post(cylinder_audit_trail_request),
        )
        .route(
            "/api/v1/keys/{id}/audit-trail-request",
            post(key_audit_trail_request),
        )
        .route("/api/v1/reconcile", post(run))
        .route("/api/v1/keys/{id}/re-edited", post(re_edited))
        .route("/api/v1/keys/{id}/update-status", get(update_status))
}
