//! The generic collection endpoints every object kind gets: search, create, read, patch, delete, events.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use lockgate_model::{
    ObjectKind, Resource,
    permission::{Function, Level},
    person::{Person, PersonState},
};
use lockgate_store::{SearchQuery, Sort, StoreError, Stored};
use serde_json::{Map, Value};

use crate::{
    AppState,
    authz::Admin,
    extract::{
        StrictQuery, from_value, if_match, parse_bool, parse_id, parse_int, parse_json_value,
        query_pairs,
    },
    policy,
    problem::{ApiResult, Problem},
};

/// Fields of the envelope around every object body.
pub const ENVELOPE_FIELDS: [&str; 4] = ["id", "version", "created_at", "updated_at"];

/// Render a stored object: its body with the envelope fields added.
pub fn envelope<R: Resource>(s: &Stored<R>) -> Value {
    let mut v = serde_json::to_value(&s.body).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), s.id.into());
        m.insert("version".into(), s.version.into());
        m.insert(
            "created_at".into(),
            Value::String(s.created_at.to_rfc3339()),
        );
        m.insert(
            "updated_at".into(),
            Value::String(s.updated_at.to_rfc3339()),
        );
    }
    v
}

/// A 200/201 response carrying an object and its ETag.
pub fn object_response<R: Resource>(status: StatusCode, s: &Stored<R>) -> Response {
    let mut resp = (status, Json(envelope(s))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", s.version)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// RFC 7396 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Permission checks for the fields a write sets or changes.
fn require_fields<R: Resource>(
    admin: &Admin,
    fields: impl IntoIterator<Item = String>,
) -> ApiResult<()> {
    for f in fields {
        if let Some(func) = R::field_function(&f) {
            admin.require(func, Level::Full)?;
        }
    }
    Ok(())
}

fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    b.keys()
        .chain(a.keys())
        .filter(|k| b.get(*k) != a.get(*k))
        .cloned()
        .collect()
}

/// Parse the search query string of a collection.
pub fn parse_search(query: Option<&str>) -> ApiResult<SearchQuery> {
    let mut q = SearchQuery {
        limit: 50,
        ..SearchQuery::default()
    };
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "q" => {
                if v.chars().count() > 100 {
                    return Err(Problem::bad_request(
                        "query parameter 'q' must be at most 100 characters",
                    ));
                }
                q.q = Some(v);
            }
            "tag" => {
                if q.tags.len() >= 10 {
                    return Err(Problem::bad_request("at most 10 'tag' parameters"));
                }
                q.tags.push(v);
            }
            "domain_id" => q.domain_id = Some(parse_int("domain_id", &v, 1, i64::MAX)?),
            "status" => q.status.extend(
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .take(10)
                    .map(str::to_string),
            ),
            "type" => q.type_ = Some(v),
            "include_hidden" => q.include_hidden = parse_bool("include_hidden", &v)?,
            "with_body" => q.with_body = parse_bool("with_body", &v)?,
            "limit" => q.limit = parse_int("limit", &v, 1, 1000)?,
            "offset" => q.offset = parse_int("offset", &v, 0, 10_000_000)?,
            "sort" => {
                let (desc, name) = match v.strip_prefix('-') {
                    Some(n) => (true, n),
                    None => (false, v.as_str()),
                };
                q.descending = desc;
                q.sort = match name {
                    "name" => Sort::Name,
                    "marking" | "identifier" => Sort::Marking,
                    "id" => Sort::Id,
                    "updated_at" => Sort::UpdatedAt,
                    _ => {
                        return Err(Problem::bad_request(
                            "query parameter 'sort' must be name, marking, id or updated_at (prefix - for descending)",
                        ));
                    }
                };
            }
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown query parameter '{}'; known: q, tag, domain_id, status, type, include_hidden, with_body, limit, offset, sort",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    Ok(q)
}

/// Search a collection.
pub async fn search<R: Resource>(
    kind: ObjectKind,
    state: AppState,
    admin: Admin,
    raw: Option<String>,
) -> ApiResult<Response> {
    // Manual §6.6.5: every administrator may list the domains they hold (to choose one
    // when moving an object); the scope keeps the others out.
    if kind != ObjectKind::Domain {
        admin.require_kind(kind, Level::List)?;
    }
    let q = parse_search(raw.as_deref())?;
    if q.with_body {
        admin.require_kind(kind, Level::View)?;
    }
    if kind.is_person()
        && (q.include_hidden
            || q.status
                .iter()
                .any(|s| s == "deactivated" || s == "deleted"))
    {
        admin.require(Function::KeyHolderDeactivate, Level::Full)?;
    }
    let page = state
        .store
        .search(admin.system.id, kind, &admin.read_scope(kind), &q)
        .await?;
    Ok(Json(page).into_response())
}

/// Create an object.
pub async fn create<R: Resource>(
    kind: ObjectKind,
    state: AppState,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require_kind(kind, Level::Full)?;
    let value = parse_json_value(&headers, &body)?;
    let Value::Object(map) = &value else {
        return Err(Problem::field("body", "must be a JSON object"));
    };
    require_fields::<R>(
        &admin,
        map.iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k.clone()),
    )?;
    let mut value = value;
    if kind.is_person() && value.get("identifier").is_none_or(Value::is_null) {
        // Persons created without an identifier get "YYYY-MM-DD:N".
        let n = state
            .store
            .next_generated_identifier(admin.system.id, kind)
            .await?;
        value["identifier"] = Value::String(format!("{}:{n}", lockgate_store::persons::today()));
    }
    let obj: R = from_value(value)?;
    let licensed = serde_json::to_value(&obj).unwrap_or_default();
    crate::licence::gate_write(&state, &admin, kind, None, &licensed).await?;
    policy::check_write(
        &state,
        &admin,
        kind,
        None,
        None,
        &serde_json::to_value(&obj).unwrap_or_default(),
    )
    .await?;
    let stored = state
        .app
        .create_object(&admin.cx(&state.app), kind, obj)
        .await?;
    policy::after_create(&state, &admin, kind, stored.id).await?;
    let mut resp = object_response(StatusCode::CREATED, &stored);
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/v1/{}/{}", kind.collection(), stored.id))
    {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

/// Read one object.
pub async fn read<R: Resource>(
    kind: ObjectKind,
    state: AppState,
    admin: Admin,
    id: String,
) -> ApiResult<Response> {
    if kind != ObjectKind::Domain {
        admin.require_kind(kind, Level::View)?;
    }
    let id = parse_id(&id)?;
    let s: Stored<R> = state
        .store
        .get(admin.system.id, kind, id, &admin.read_scope(kind))
        .await?;
    refuse_if_hidden_person(&admin, kind, id, &s.body)?;
    Ok(object_response(StatusCode::OK, &s))
}

/// Deactivated and deleted persons stay hidden (a 404, as if absent) from administrators
/// without the key-holder-deactivate permission.
fn refuse_if_hidden_person<R: Resource>(
    admin: &Admin,
    kind: ObjectKind,
    id: i64,
    body: &R,
) -> ApiResult<()> {
    if !kind.is_person() || admin.level(Function::KeyHolderDeactivate) >= Level::Full {
        return Ok(());
    }
    let hidden = serde_json::to_value(body)
        .ok()
        .and_then(|v| serde_json::from_value::<Person>(v).ok())
        .is_some_and(|p| p.lifecycle != PersonState::Active);
    if hidden {
        return Err(StoreError::NotFound {
            kind: kind.as_str(),
            id,
        }
        .into());
    }
    Ok(())
}

/// Apply a JSON merge patch to an object.
pub async fn patch<R: Resource>(
    kind: ObjectKind,
    state: AppState,
    admin: Admin,
    id: String,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require_kind(kind, Level::Full)?;
    let id = parse_id(&id)?;
    let mut patch = parse_json_value(&headers, &body)?;
    let Value::Object(map) = &mut patch else {
        return Err(Problem::field(
            "body",
            "must be a JSON object (merge patch)",
        ));
    };
    let mut expected = if_match(&headers)?;
    // Envelope fields may be echoed back: id must match, version acts as If-Match.
    if let Some(v) = map.remove("id")
        && v.as_i64() != Some(id)
    {
        return Err(Problem::field("id", "does not match the id in the path"));
    }
    if let Some(v) = map.remove("version") {
        let v = v
            .as_i64()
            .ok_or_else(|| Problem::field("version", "must be an integer"))?;
        expected = expected.or(Some(v));
    }
    map.remove("created_at");
    map.remove("updated_at");
    // Read, patch, check, then write conditionally on the version read; without an
    // If-Match a concurrent change is merged by re-reading (no write is lost).
    let attempts: u32 = if expected.is_some() { 1 } else { 10 };
    for attempt in 1..=attempts {
        let current: Stored<R> = state
            .store
            .get(admin.system.id, kind, id, &admin.scope)
            .await?;
        if let Some(v) = expected
            && v != current.version
        {
            return Err(StoreError::VersionMismatch {
                current: current.version,
            }
            .into());
        }
        let before = serde_json::to_value(&current.body).map_err(|_| Problem::internal())?;
        let mut after = before.clone();
        merge_patch(&mut after, &patch);
        require_fields::<R>(&admin, changed_fields(&before, &after))?;
        let next: R = from_value(after.clone())?;
        crate::licence::gate_write(&state, &admin, kind, Some(&before), &after).await?;
        policy::check_write(&state, &admin, kind, Some(id), Some(&before), &after).await?;
        let result = state
            .app
            .update_object::<R, _>(
                &admin.cx(&state.app),
                kind,
                id,
                Some(current.version),
                |b: &mut R| {
                    *b = next;
                    Ok(())
                },
            )
            .await;
        match result {
            Ok(s) => return Ok(object_response(StatusCode::OK, &s)),
            Err(lockgate_app::AppError::Store(StoreError::VersionMismatch { .. }))
                if attempt < attempts =>
            {
                // Back off a little, with jitter, before merging again.
                let jitter = u64::from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.subsec_nanos())
                        .unwrap_or(0)
                        % 5,
                );
                tokio::time::sleep(std::time::Duration::from_millis(
                    u64::from(attempt) * 2 + jitter,
                ))
                .await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Problem::new(
        StatusCode::CONFLICT,
        "contention",
        "the object is being changed by others; try again",
    ))
}

/// `DELETE` query: `detach=true` confirms deleting an access profile still held by
/// persons, keys or temporary access groups (manual §4.6.2).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    pub detach: bool,
}

/// Delete an object (persons: as the deletion setting says).
pub async fn delete<R: Resource>(
    kind: ObjectKind,
    state: AppState,
    admin: Admin,
    id: String,
    headers: HeaderMap,
    q: DeleteQuery,
) -> ApiResult<Response> {
    admin.require_kind(kind, Level::Full)?;
    if q.detach && kind != ObjectKind::AccessProfile {
        return Err(Problem::field(
            "detach",
            "only an access profile is detached from its holders on deletion",
        ));
    }
    if q.detach {
        // Taking the profile from persons and keys changes their authorisations.
        admin.require(Function::AccessProfileAuthorisation, Level::Full)?;
        admin.require(Function::KeyAuthorisation, Level::Full)?;
    }
    let id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    policy::check_delete(&state, &admin, kind, id).await?;
    state
        .app
        .delete_object::<R>(&admin.cx(&state.app), kind, id, expected, q.detach)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Events recorded on one object, newest first.
pub async fn events<R: Resource>(
    kind: ObjectKind,
    state: AppState,
    admin: Admin,
    id: String,
    raw: Option<String>,
) -> ApiResult<Response> {
    admin.require_kind(kind, Level::View)?;
    let id = parse_id(&id)?;
    let mut limit = 100i64;
    let mut before = None;
    for (k, v) in query_pairs(raw.as_deref()) {
        match k.as_str() {
            "limit" => limit = parse_int("limit", &v, 1, 1000)?,
            "before_id" => before = Some(parse_int("before_id", &v, 1, i64::MAX)?),
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown query parameter '{}'; known: limit, before_id",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    let s: Stored<R> = state
        .store
        .get(admin.system.id, kind, id, &admin.scope)
        .await?;
    refuse_if_hidden_person(&admin, kind, id, &s.body)?;
    let mut events = state
        .store
        .events_for(admin.system.id, kind, id, limit, before)
        .await?;
    if kind.is_person() {
        // A deactivated person shows as N/A until reactivated.
        let p: Option<Person> = serde_json::to_value(&s.body)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok());
        if p.is_some_and(|p| p.lifecycle == PersonState::Deactivated) {
            for e in &mut events {
                e.object_label = "N/A".into();
                e.changes = serde_json::json!({});
            }
        }
    }
    Ok(Json(serde_json::json!({ "items": events })).into_response())
}

/// The routes of one collection.
pub fn routes<R: Resource>(kind: ObjectKind) -> Router<AppState> {
    let base = format!("/api/v1/{}", kind.collection());
    Router::new()
        .route(
            &base,
            get(
                move |State(s): State<AppState>, admin: Admin, RawQuery(q): RawQuery| {
                    search::<R>(kind, s, admin, q)
                },
            )
            .post(
                move |State(s): State<AppState>, admin: Admin, headers: HeaderMap, body: Bytes| {
                    create::<R>(kind, s, admin, headers, body)
                },
            ),
        )
        .route(
            &format!("{base}/{{id}}"),
            get(
                move |State(s): State<AppState>, admin: Admin, Path(id): Path<String>| {
                    read::<R>(kind, s, admin, id)
                },
            )
            .patch(
                move |State(s): State<AppState>,
                      admin: Admin,
                      Path(id): Path<String>,
                      headers: HeaderMap,
                      body: Bytes| {
                    patch::<R>(kind, s, admin, id, headers, body)
                },
            )
            .delete(
                move |State(s): State<AppState>,
                      admin: Admin,
                      Path(id): Path<String>,
                      headers: HeaderMap,
                      StrictQuery(q): StrictQuery<DeleteQuery>| {
                    delete::<R>(kind, s, admin, id, headers, q)
                },
            ),
        )
        .route(
            &format!("{base}/{{id}}/events"),
            get(
                move |State(s): State<AppState>,
                      admin: Admin,
                      Path(id): Path<String>,
                      RawQuery(q): RawQuery| events::<R>(kind, s, admin, id, q),
            ),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7396_examples() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1, 2]});
        merge_patch(&mut t, &json!({"a": [3]}));
        assert_eq!(t, json!({"a": [3]}));
    }

    #[test]
    fn search_query_refuses_unknown_and_out_of_range() {
        assert!(parse_search(Some("q=ab*&tag=x&tag=y&limit=10&sort=-marking")).is_ok());
        assert!(
            parse_search(Some("colour=red"))
                .unwrap_err()
                .detail
                .contains("colour")
        );
        assert!(
            parse_search(Some("limit=0"))
                .unwrap_err()
                .detail
                .contains("limit")
        );
        assert!(parse_search(Some("sort=height")).is_err());
    }
}
