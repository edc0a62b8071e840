//! Lifecycle flows and views (`DOMAIN.md` §6 and the administrators' views): hand out,
//! hand in, lost, found, replacement by a clone, copy configuration, redundant and
//! key-side authorisations, key-group schedules; accessible cylinders, keys with access,
//! profiles giving access, key update history.

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::Utc;
use lockgate_model::{
    ObjectKind,
    cylinder::Cylinder,
    key::Key,
    key_group::KeyGroup,
    permission::{Function, Level},
    schedule::{Schedule, ScheduleTemplate},
};
use lockgate_store::{
    Stored,
    lifecycle::{HandOut, LostRequest},
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    authz::Admin,
    extract::{PathId, StrictQuery, json_body},
    problem::{ApiResult, Problem},
    resources::object_response,
};

fn body_or_default<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<T> {
    if body.is_empty() {
        Ok(T::default())
    } else {
        json_body(headers, body)
    }
}

fn key_done(s: Stored<Key>) -> ApiResult<Response> {
    Ok(object_response(StatusCode::OK, &s))
}

async fn hand_out(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require(Function::KeyHandInOut, Level::Full)?;
    let h: HandOut = json_body(&headers, &body)?;
    if let Some(v) = &h.validity {
        admin.require(Function::KeyValidity, Level::Full)?;
        // PIN validation and revalidation are licensed, whichever path sets them.
        let key: Stored<Key> = state
            .store
            .get(admin.system.id, ObjectKind::Key, id, &admin.scope)
            .await?;
        let before = serde_json::json!({ "validity": key.body.validity });
        let after = serde_json::json!({ "validity": v });
        crate::licence::gate_write(&state, &admin, ObjectKind::Key, Some(&before), &after).await?;
    }
    if h.schedule.is_some() {
        admin.require(Function::KeySchedule, Level::Full)?;
    }
    let s = state.app.hand_out_key(&admin.cx(&state.app), id, h).await?;
    key_done(s)
}

async fn hand_in(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require(Function::KeyHandInOut, Level::Full)?;
    let s = state.app.hand_in_key(&admin.cx(&state.app), id).await?;
    key_done(s)
}

async fn lost(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require(Function::Key, Level::Full)?;
    let req: LostRequest = body_or_default(&headers, &body)?;
    let s = state
        .app
        .report_key_lost(&admin.cx(&state.app), id, req)
        .await?;
    Ok(object_response(StatusCode::OK, &s))
}

async fn found(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require(Function::Key, Level::Full)?;
    let s = state
        .app
        .report_key_found(&admin.cx(&state.app), id)
        .await?;
    Ok(object_response(StatusCode::OK, &s))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyRequest {
    target_key_id: i64,
}

async fn copy(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require_c_key_login("copying a key's configuration")?;
    for f in [
        Function::KeyAuthorisation,
        Function::KeyValidity,
        Function::KeySchedule,
    ] {
        admin.require(f, Level::Full)?;
    }
    let req: CopyRequest = json_body(&headers, &body)?;
    // Manual §4.2.16: the copy also lists the target key on the cylinders that list the
    // source individually, which is a change of those cylinders' authorisations.
    if !state
        .store
        .cylinders_listing_key(admin.system.id, id)
        .await?
        .is_empty()
    {
        admin.require(Function::CylinderAuthorisation, Level::Full)?;
    }
    let s = state
        .app
        .copy_key_configuration(&admin.cx(&state.app), id, req.target_key_id)
        .await?;
    key_done(s)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloneRequest {
    /// Marking of the factory clone.
    marking: String,
    #[serde(default)]
    name: Option<String>,
}

async fn replace(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require(Function::Key, Level::Full)?;
    admin.require(Function::KeyAuthorisation, Level::Full)?;
    let req: CloneRequest = json_body(&headers, &body)?;
    let s = state
        .app
        .replace_key_with_clone(&admin.cx(&state.app), id, req.marking, req.name)
        .await?;
    Ok(object_response(StatusCode::CREATED, &s))
}

async fn remove_redundant(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require(Function::KeyAuthorisation, Level::Full)?;
    let s = state
        .app
        .remove_redundant_authorisations(&admin.cx(&state.app), id)
        .await?;
    key_done(s)
}

async fn remove_key_side(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    for f in [
        Function::KeyAuthorisation,
        Function::AccessProfileAuthorisation,
        Function::TemporaryAccessGroups,
    ] {
        admin.require(f, Level::Full)?;
    }
    let n = state
        .app
        .remove_key_side_authorisations(&admin.cx(&state.app), id)
        .await?;
    Ok(Json(serde_json::json!({ "updated": n })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupSchedule {
    #[serde(default)]
    schedule: Option<Schedule>,
    #[serde(default)]
    schedule_template_id: Option<i64>,
}

async fn group_schedule(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require(Function::KeySchedule, Level::Full)?;
    let group = id;
    let _: Stored<KeyGroup> = state
        .store
        .get(admin.system.id, ObjectKind::KeyGroup, group, &admin.scope)
        .await?;
    let req: GroupSchedule = json_body(&headers, &body)?;
    let schedule = match (req.schedule, req.schedule_template_id) {
        (Some(s), None) => s,
        (None, Some(t)) => {
            admin.require(Function::ScheduleTemplatesApply, Level::Full)?;
            let tpl: Stored<ScheduleTemplate> = state
                .store
                .get(
                    admin.system.id,
                    ObjectKind::ScheduleTemplate,
                    t,
                    &admin.scope,
                )
                .await
                .map_err(|_| {
                    Problem::field("schedule_template_id", format!("no schedule template {t}"))
                })?;
            tpl.body.schedule
        }
        _ => {
            return Err(Problem::field(
                "schedule",
                "give either schedule or schedule_template_id",
            ));
        }
    };
    let n = state
        .app
        .apply_schedule_to_key_group(&admin.cx(&state.app), group, schedule)
        .await?;
    Ok(Json(serde_json::json!({ "updated": n })).into_response())
}

/// The data of a hand-out receipt: who holds which key since when and until when, with
/// which validity, profiles and cylinders (as defined; `pending` where jobs still run).
async fn receipt(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require(Function::KeyHandInOut, Level::View)?;
    // The receipt is printed from the receipt templates (manual §6.9).
    admin.require(Function::ReceiptTemplates, Level::View)?;
    let key: Stored<Key> = state
        .store
        .get(admin.system.id, ObjectKind::Key, id, &admin.scope)
        .await?;
    let k = &key.body;
    let Some(holder_id) = k.holder_id else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "not-handed-out",
            format!("key {id} is not handed out: there is no receipt"),
        ));
    };
    let kind = state
        .store
        .kind_of(admin.system.id, holder_id)
        .await?
        .unwrap_or(ObjectKind::Employee);
    let holder: Stored<lockgate_model::person::Person> = state
        .store
        .get(admin.system.id, kind, holder_id, &admin.scope)
        .await?;
    let mut profiles = Vec::new();
    let mut profile_ids = k.access_profile_ids.clone();
    profile_ids.extend(holder.body.access_profile_ids.iter().copied());
    profile_ids.sort_unstable();
    profile_ids.dedup();
    // Objects outside the administrator's domains are counted, not named.
    let mut hidden = 0;
    for p in profile_ids {
        match state
            .store
            .get::<lockgate_model::access_profile::AccessProfile>(
                admin.system.id,
                ObjectKind::AccessProfile,
                p,
                &admin.scope,
            )
            .await
        {
            Ok(p) => profiles.push(serde_json::json!({ "id": p.id, "name": p.body.name })),
            Err(_) => hidden += 1,
        }
    }
    let mut cylinders = Vec::new();
    for v in state
        .store
        .access_for_key(&admin.system, id, Utc::now())
        .await?
        .into_iter()
        .filter(|v| v.defined)
    {
        match state
            .store
            .get::<Cylinder>(admin.system.id, ObjectKind::Cylinder, v.id, &admin.scope)
            .await
        {
            Ok(c) => cylinders.push(serde_json::json!({ "id": c.id, "name": c.body.name, "marking": c.body.marking, "pending": v.pending() })),
            Err(_) => hidden += 1,
        }
    }
    let h = &holder.body;
    Ok(Json(serde_json::json!({
        "locking_system": admin.system.name,
        "key": { "id": key.id, "name": k.name, "marking": k.marking, "type": k.key_type.as_str() },
        "holder": { "id": holder.id, "kind": kind.as_str(), "first_name": h.first_name, "surname": h.surname, "identifier": h.identifier, "department": h.department },
        "date_out": k.date_out,
        "date_in": k.date_in,
        "validity": k.validity,
        "schedule": k.schedule.is_some(),
        "access_profiles": profiles,
        "cylinders": cylinders,
        "hidden_outside_domains": hidden,
        "issued_by_c_key": admin.c_key.id,
        "generated_at": Utc::now(),
    }))
    .into_response())
}

async fn key_access(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require(Function::Key, Level::View)?;
    admin.require(Function::Cylinder, Level::List)?;
    let _: Stored<Key> = state
        .store
        .get(admin.system.id, ObjectKind::Key, id, &admin.scope)
        .await?;
    let items = state
        .store
        .access_for_key(&admin.system, id, Utc::now())
        .await?;
    visible_access(&state, &admin, items, ObjectKind::Cylinder, "cylinder_id").await
}

/// Which state an opening decision is judged on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpeningState {
    /// What the key and the cylinder hold now (confirmed jobs only).
    #[default]
    Actual,
    /// Once every pending job has run.
    Defined,
}

/// `GET /api/v1/keys/{id}/can-open` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanOpenQuery {
    /// The cylinder.
    pub cylinder: i64,
    /// The instant (RFC 3339); now when absent.
    pub at: Option<chrono::DateTime<Utc>>,
    /// The cylinder side the key is inserted in.
    #[serde(default)]
    pub side: Option<SideName>,
    /// `actual` (default) or `defined`.
    #[serde(default)]
    pub state: OpeningState,
}

/// A cylinder side, as the API names it.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SideName {
    A,
    B,
}

/// Whether a key opens a cylinder side at an instant (`DOMAIN.md` §2, the manual's §8.1),
/// and the first rule that refuses it: `{key_id, cylinder_id, side, at, state, opens,
/// reason?, message?, ...}` where `reason` is the refusal's snake_case name and the
/// remaining members are its details.
async fn can_open(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    StrictQuery(q): StrictQuery<CanOpenQuery>,
) -> ApiResult<Response> {
    admin.require(Function::Key, Level::View)?;
    admin.require(Function::Cylinder, Level::View)?;
    let _: Stored<Key> = state
        .store
        .get(admin.system.id, ObjectKind::Key, id, &admin.scope)
        .await?;
    let cylinder: Stored<Cylinder> = state
        .store
        .get(
            admin.system.id,
            ObjectKind::Cylinder,
            q.cylinder,
            &admin.scope,
        )
        .await?;
    let at = q.at.unwrap_or_else(|| state.app.now());
    let side = match q.side.unwrap_or(SideName::A) {
        SideName::A => lockgate_engine::state::Side::A,
        SideName::B => lockgate_engine::state::Side::B,
    };
    let decision = state
        .store
        .opening_decision(
            &admin.system,
            id,
            &cylinder,
            side,
            at,
            q.state == OpeningState::Defined,
        )
        .await?;
    let mut out = serde_json::json!({
        "key_id": id,
        "cylinder_id": cylinder.id,
        "side": q.side.unwrap_or(SideName::A),
        "at": at.to_rfc3339(),
        "state": q.state,
        "opens": decision.is_ok(),
    });
    if let (Err(refusal), serde_json::Value::Object(m)) = (&decision, &mut out) {
        m.insert("message".into(), refusal.to_string().into());
        if let Ok(serde_json::Value::Object(r)) = serde_json::to_value(refusal) {
            m.extend(r);
        }
    }
    Ok(Json(out).into_response())
}

/// The access views the administrator may see (the other side in their domains), as
/// `{items: [{<id_field>, actual, defined, pending}]}`.
async fn visible_access(
    state: &AppState,
    admin: &Admin,
    items: Vec<lockgate_engine::views::AccessView>,
    other: ObjectKind,
    id_field: &str,
) -> ApiResult<Response> {
    let mut visible = Vec::with_capacity(items.len());
    for v in items {
        if state
            .store
            .kind_visible(admin.system.id, other, v.id, &admin.scope)
            .await?
        {
            visible.push(serde_json::json!({ id_field: v.id, "actual": v.actual, "defined": v.defined, "pending": v.pending() }));
        }
    }
    Ok(Json(serde_json::json!({ "items": visible })).into_response())
}

async fn cylinder_access(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require(Function::Cylinder, Level::View)?;
    admin.require(Function::Key, Level::List)?;
    let _: Stored<Cylinder> = state
        .store
        .get(admin.system.id, ObjectKind::Cylinder, id, &admin.scope)
        .await?;
    let items = state
        .store
        .access_for_cylinder(&admin.system, id, Utc::now())
        .await?;
    visible_access(&state, &admin, items, ObjectKind::Key, "key_id").await
}

async fn cylinder_profiles(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require(Function::Cylinder, Level::View)?;
    admin.require(Function::AccessProfiles, Level::View)?;
    let _: Stored<Cylinder> = state
        .store
        .get(admin.system.id, ObjectKind::Cylinder, id, &admin.scope)
        .await?;
    let mut ids = Vec::new();
    for p in state.store.profiles_for_cylinder(&admin.system, id).await? {
        if state
            .store
            .kind_visible(admin.system.id, ObjectKind::AccessProfile, p, &admin.scope)
            .await?
        {
            ids.push(p);
        }
    }
    Ok(Json(serde_json::json!({ "access_profile_ids": ids })).into_response())
}

async fn update_history(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require(Function::KeyUpdateHistory, Level::View)?;
    let _: Stored<Key> = state
        .store
        .get(admin.system.id, ObjectKind::Key, id, &admin.scope)
        .await?;
    let jobs = state
        .store
        .jobs(admin.system.id, Some(id), false, 1000)
        .await?;
    Ok(Json(serde_json::json!({ "items": jobs })).into_response())
}

async fn overdue(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    admin.require(Function::Key, Level::List)?;
    let items: Vec<serde_json::Value> = state
        .store
        .overdue_keys(&admin.system, &admin.scope, Utc::now())
        .await?
        .into_iter()
        .map(|(id, why)| serde_json::json!({ "key_id": id, "overdue_by": why }))
        .collect();
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

pub fn routes() -> Router<AppState> {
    let k = "/api/v1/keys/{id}";
    Router::new()
        .route("/api/v1/keys/overdue", get(overdue))
        .route(&format!("{k}/hand-out"), post(hand_out))
        .route(&format!("{k}/hand-in"), post(hand_in))
        .route(&format!("{k}/lost"), post(lost))
        .route(&format!("{k}/found"), post(found))
        .route(&format!("{k}/copy-configuration"), post(copy))
        .route(&format!("{k}/replace-with-clone"), post(replace))
        .route(
            &format!("{k}/remove-redundant-authorisations"),
            post(remove_redundant),
        )
        .route(&format!("{k}/accessible-cylinders"), get(key_access))
        .route(&format!("{k}/can-open"), get(can_open))
        .route(&format!("{k}/receipt"), get(receipt))
        .route(&format!("{k}/update-history"), get(update_history))
        .route(
            "/api/v1/cylinders/{id}/remove-key-side-authorisations",
            post(remove_key_side),
        )
        .route(
            "/api/v1/cylinders/{id}/keys-with-access",
            get(cylinder_access),
        )
        .route(
            "/api/v1/cylinders/{id}/access-profiles",
            get(cylinder_profiles),
        )
        .route("/api/v1/key-groups/{id}/schedule", post(group_schedule))
}
