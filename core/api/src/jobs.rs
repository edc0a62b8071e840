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
    key::Key,
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
pub async fn after_change(state: &AppState, admin: &Admin, kind: ObjectKind) {
    if !RECONCILED_KINDS.contains(&kind) {
        return;
    }
    if let Err(e) = state
        .store
        .reconcile(&admin.system, &admin.actor, Utc::now())
        .await
    {
        tracing::error!(error = %e, system_id = admin.system.id, "reconciliation after a change failed; it runs again on the next change");
    }
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
    let (mut target, mut open, mut limit) = (None, false, 100i64);
    for (k, v) in query_pairs(raw.as_deref()) {
        match k.as_str() {
            "target_id" => target = Some(parse_int("target_id", &v, 1, i64::MAX)?),
            "open" => open = parse_bool("open", &v)?,
            "limit" => limit = parse_int("limit", &v, 1, 1000)?,
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown query parameter '{}'; known: target_id, open, limit",
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
    for j in jobs.drain(..) {
        let kind = if j.kind == "remote_update" {
            ObjectKind::Key
        } else {
            ObjectKind::Cylinder
        };
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
    let job = state
        .store
        .jobs(admin.system.id, None, false, 100_000)
        .await?
        .into_iter()
        .find(|j| j.id == id)
        .ok_or_else(|| Problem::not_found(format!("no job {id}")))?;
    let kind = if job.kind == "remote_update" {
        admin.require(Function::KeyAuthorisation, Level::Full)?;
        ObjectKind::Key
    } else {
        admin.require(Function::CylinderProgramming, Level::Full)?;
        ObjectKind::Cylinder
    };
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
            "/api/v1/reconcile",
            post(|State(s): State<AppState>, a: Admin| run(s, a)),
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
