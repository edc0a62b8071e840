//! SCIM 2.0 server (RFC 7643, RFC 7644) under `/scim/v2`: users are employees, groups are
//! tags on them (docs/connectors/scim.md). The protocol (schemas, filters, PATCH,
//! projection) is `lockgate-scim`; the writes go through the application layer.
//!
//! Architecture invariant: every SCIM request authenticates a bearer token issued for the
//! `scim` purpose to a C-key holding the Web service role and Employee at Full, within the
//! licence's web services feature, checked on every request; nothing else opens `/scim/v2`.

pub mod mapping;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{FromRequestParts, Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use lockgate_model::permission::{Function, Level};
use lockgate_scim::{
    LIST_RESPONSE_URN, MAX_JSON_DEPTH, PATCH_OP_URN, SEARCH_REQUEST_URN, ScimError, ScimType,
    filter, patch, project,
    schema::{self, RESOURCE_TYPES, ResourceType, SCHEMAS},
};
use lockgate_store::{
    StoreError,
    scim::{ScimRecord, ScimResourceType},
    tokens::TokenPurpose,
};
use serde_json::{Value, json};

use crate::{AppState, authz::Admin, licence::LicenceFeature, problem::Problem};

/// Media type of SCIM messages.
pub const SCIM_JSON: &str = "application/scim+json";
/// Most resources one list or search response carries (`filter.maxResults`).
pub const MAX_RESULTS: usize = 1000;
/// Most operations one bulk request would carry (bulk is not supported).
const PATH_PREFIX: &str = "/scim/v2";

/// SCIM settings (`[scim]`).
#[derive(Debug, Clone)]
pub struct ScimConfig {
    /// The gateway's public base URL: `meta.location` and `$ref` values derive from it.
    pub public_url: String,
}

/// A SCIM error as a response.
#[derive(Debug)]
pub struct ScimFailure(pub ScimError);

impl From<ScimError> for ScimFailure {
    fn from(e: ScimError) -> Self {
        Self(e)
    }
}

impl From<Problem> for ScimFailure {
    fn from(p: Problem) -> Self {
        Self(ScimError::status(p.status, p.detail))
    }
}

impl From<StoreError> for ScimFailure {
    fn from(e: StoreError) -> Self {
        Self(match e {
            StoreError::Conflict { field, message } => ScimError {
                status: 409,
                scim_type: Some(ScimType::Uniqueness),
                detail: format!("{}: {message}", mapping::scim_attribute_of(&field)),
            },
            StoreError::VersionMismatch { current } => ScimError::status(
                412,
                format!(
                    "If-Match does not match: the resource is at version {}",
                    etag(current)
                ),
            ),
            // The employee number of another employee: a uniqueness conflict (409).
            StoreError::Invalid(v)
                if v.errors.iter().any(|e| {
                    mapping::scim_attribute_of(&e.field).ends_with(":employeeNumber")
                        && e.message.contains("already used")
                }) =>
            {
                ScimError {
                    status: 409,
                    scim_type: Some(ScimType::Uniqueness),
                    detail: v
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", mapping::scim_attribute_of(&e.field), e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                }
            }
            StoreError::Invalid(v) => ScimError::bad(
                ScimType::InvalidValue,
                v.errors
                    .iter()
                    .map(|e| format!("{}: {}", mapping::scim_attribute_of(&e.field), e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            StoreError::InUse { message } | StoreError::Refused { message } => {
                ScimError::status(409, message)
            }
            StoreError::NotFound { kind, id } => {
                ScimError::status(404, format!("{kind} {id} not found"))
            }
            other => {
                tracing::error!(error = %other, "SCIM request failed");
                ScimError::status(500, "the gateway could not complete the request")
            }
        })
    }
}

impl From<lockgate_app::AppError> for ScimFailure {
    fn from(e: lockgate_app::AppError) -> Self {
        match e {
            lockgate_app::AppError::Store(s) => s.into(),
            other => Self(ScimError::status(409, other.to_string())),
        }
    }
}

impl IntoResponse for ScimFailure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(self.0.body())).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        r
    }
}

type ScimResult<T> = Result<T, ScimFailure>;

/// The authenticated provisioning client of a request and the absolute `/scim/v2` URL.
#[derive(Debug)]
pub struct ScimClient {
    pub admin: Admin,
    pub base: String,
}

impl FromRequestParts<AppState> for ScimClient {
    type Rejection = ScimFailure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ScimResult<Self> {
        let Some(config) = state.config.scim.as_ref() else {
            return Err(ScimError::status(404, "SCIM is not configured on this gateway").into());
        };
        let admin = crate::authz::authenticate(parts, state, TokenPurpose::Scim).await?;
        if !crate::authz::holds_web_service_role(state, admin.system.id, &admin.c_key.body).await? {
            return Err(ScimError::status(
                403,
                "SCIM provisioning needs a C-key holding the Web service role",
            )
            .into());
        }
        admin.require(Function::Employee, Level::Full)?;
        crate::licence::require_feature(state, &admin, LicenceFeature::WebServices).await?;
        Ok(ScimClient {
            admin,
            base: format!("{}{PATH_PREFIX}", config.public_url.trim_end_matches('/')),
        })
    }
}

/// A weak entity tag of a version (RFC 7232).
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The versions an entity-tag list names (`W/"3", "4"`; weak comparison, RFC 7232 §2.3.2);
/// `None` for `*`. A tag that is no version of ours names none.
fn tag_versions(v: &str) -> Option<Vec<i64>> {
    let v = v.trim();
    if v == "*" {
        return None;
    }
    Some(
        v.split(',')
            .take(32)
            .filter_map(|t| {
                t.trim()
                    .trim_start_matches("W/")
                    .trim_matches('"')
                    .parse::<i64>()
                    .ok()
            })
            .collect(),
    )
}

/// What `If-Match` asks: nothing (absent or `*`) or the version the resource must be at now.
/// `current` is the stored version when the caller has read it; without it, a list of tags
/// keeps its first (the write then checks it in its transaction).
fn if_match(headers: &HeaderMap, current: Option<i64>) -> ScimResult<Option<i64>> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| ScimError::bad(ScimType::InvalidValue, "If-Match: not ASCII"))?;
    let Some(versions) = tag_versions(v) else {
        return Ok(None);
    };
    Ok(Some(match current {
        Some(c) if versions.contains(&c) => c,
        _ => versions.first().copied().unwrap_or(-1),
    }))
}

fn resource_type(rt: ScimResourceType) -> &'static ResourceType {
    match rt {
        ScimResourceType::User => &schema::USER_TYPE,
        ScimResourceType::Group => &schema::GROUP_TYPE,
    }
}

/// A stored resource as the client reads it: its body with `id` and `meta`.
fn render(rec: &ScimRecord, base: &str) -> Value {
    let rt = resource_type(rec.resource_type);
    let mut v = rec.body.clone();
    v["id"] = json!(rec.id);
    v["meta"] = json!({
        "resourceType": rt.name,
        "created": rec.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "lastModified": rec.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "location": format!("{base}{}/{}", rt.endpoint, rec.id),
        "version": etag(rec.version),
    });
    v
}

fn scim_json(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    r
}

/// A single resource response with its `ETag` and, on create, its `Location`.
fn resource_response(status: StatusCode, rec: &ScimRecord, base: &str, body: Value) -> Response {
    let mut r = scim_json(status, body);
    if let Ok(v) = HeaderValue::from_str(&etag(rec.version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{base}{}/{}",
            resource_type(rec.resource_type).endpoint,
            rec.id
        ))
    {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A JSON request body: `application/scim+json` or `application/json`, bounded in depth.
fn json_body(headers: &HeaderMap, body: &Bytes) -> ScimResult<Value> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(SCIM_JSON) && !media.eq_ignore_ascii_case("application/json") {
        return Err(ScimError::status(
            415,
            format!("Content-Type must be {SCIM_JSON} or application/json"),
        )
        .into());
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ScimError::bad(
            ScimType::InvalidSyntax,
            format!("the body is not JSON: {e}"),
        )
    })?;
    if lockgate_scim::too_deep(&v, MAX_JSON_DEPTH) {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            format!("the body nests deeper than {MAX_JSON_DEPTH} levels"),
        )
        .into());
    }
    Ok(v)
}

/// `attributes` / `excludedAttributes` of a request.
#[derive(Debug, Default)]
struct Projection {
    attributes: Vec<String>,
    excluded: Vec<String>,
}

impl Projection {
    /// From the `attributes` / `excludedAttributes` query parameters.
    fn of_query(q: &[(String, String)]) -> ScimResult<Self> {
        Self::from_strings(param(q, "attributes"), param(q, "excludedAttributes"))
    }

    fn from_strings(attributes: Option<&str>, excluded: Option<&str>) -> ScimResult<Self> {
        let p = Projection {
            attributes: attributes
                .map(project::parse_attribute_list)
                .transpose()?
                .unwrap_or_default(),
            excluded: excluded
                .map(project::parse_attribute_list)
                .transpose()?
                .unwrap_or_default(),
        };
        if !p.attributes.is_empty() && !p.excluded.is_empty() {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                "attributes and excludedAttributes exclude each other",
            )
            .into());
        }
        Ok(p)
    }

    fn apply(&self, v: &Value, rt: &ResourceType) -> ScimResult<Value> {
        Ok(project::project(v, &self.attributes, &self.excluded, rt)?)
    }
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A list or search request.
#[derive(Debug, Default)]
struct Search {
    filter: Option<String>,
    sort_by: Option<String>,
    descending: bool,
    start_index: usize,
    count: Option<usize>,
    projection: Projection,
}

fn parse_index(name: &str, v: Option<&Value>) -> ScimResult<Option<i64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            ScimError::bad(
                ScimType::InvalidValue,
                format!("{name}: must be an integer"),
            )
            .into()
        }),
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| {
            ScimError::bad(
                ScimType::InvalidValue,
                format!("{name}: must be an integer"),
            )
            .into()
        }),
        Some(_) => Err(ScimError::bad(
            ScimType::InvalidValue,
            format!("{name}: must be an integer"),
        )
        .into()),
    }
}

impl Search {
    fn from_query(q: &[(String, String)]) -> ScimResult<Self> {
        let body = json!({
            "filter": param(q, "filter"),
            "sortBy": param(q, "sortBy"),
            "sortOrder": param(q, "sortOrder"),
            "startIndex": param(q, "startIndex"),
            "count": param(q, "count"),
            "attributes": param(q, "attributes"),
            "excludedAttributes": param(q, "excludedAttributes"),
        });
        Self::from_json(&body)
    }

    /// From a `SearchRequest` body (RFC 7644 §3.4.3), or the query parameters put in one.
    fn from_json(b: &Value) -> ScimResult<Self> {
        let text = |name: &str| -> ScimResult<Option<String>> {
            match b.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::bad(
                    ScimType::InvalidValue,
                    format!("{name}: must be a string"),
                )
                .into()),
            }
        };
        let list = |name: &str| -> ScimResult<Option<String>> {
            match b.get(name) {
                Some(Value::Array(a)) => Ok(Some(
                    a.iter()
                        .map(|x| {
                            x.as_str().map(str::to_string).ok_or_else(|| {
                                ScimFailure(ScimError::bad(
                                    ScimType::InvalidValue,
                                    format!("{name}: must list attribute names"),
                                ))
                            })
                        })
                        .collect::<ScimResult<Vec<_>>>()?
                        .join(","),
                )),
                _ => text(name),
            }
        };
        let descending = match text("sortOrder")?.as_deref() {
            None => false,
            Some(s) if s.eq_ignore_ascii_case("ascending") => false,
            Some(s) if s.eq_ignore_ascii_case("descending") => true,
            Some(other) => {
                return Err(ScimError::bad(
                    ScimType::InvalidValue,
                    format!("sortOrder: 'ascending' or 'descending', not '{other}'"),
                )
                .into());
            }
        };
        let start = parse_index("startIndex", b.get("startIndex"))?.unwrap_or(1);
        let count = parse_index("count", b.get("count"))?;
        Ok(Search {
            filter: text("filter")?,
            sort_by: text("sortBy")?,
            descending,
            // RFC 7644 §3.4.2.4: below 1 counts as 1, a negative count as 0.
            start_index: usize::try_from(start.max(1)).unwrap_or(1),
            count: count.map(|c| usize::try_from(c.max(0)).unwrap_or(0)),
            projection: Projection::from_strings(
                list("attributes")?.as_deref(),
                list("excludedAttributes")?.as_deref(),
            )?,
        })
    }
}

/// `userName eq "x"` (or `displayName eq "x"` for groups), the lookup provisioning clients
/// make before every create: answered from the unique index instead of a scan.
fn exact_name_lookup(expr: &str, rt: ScimResourceType) -> Option<String> {
    let attr = match rt {
        ScimResourceType::User => "userName",
        ScimResourceType::Group => "displayName",
    };
    let rest = expr.trim();
    let (a, rest) = rest.split_once(char::is_whitespace)?;
    if !a.eq_ignore_ascii_case(attr) {
        return None;
    }
    let (op, rest) = rest.trim_start().split_once(char::is_whitespace)?;
    if !op.eq_ignore_ascii_case("eq") {
        return None;
    }
    let lit: Value = serde_json::from_str(rest.trim()).ok()?;
    lit.as_str().map(str::to_string)
}

/// The resources of the given types that match a search, sorted and paged, rendered.
async fn run_search(
    state: &AppState,
    client: &ScimClient,
    types: &[ScimResourceType],
    s: &Search,
) -> ScimResult<Response> {
    let parsed = s.filter.as_deref().map(filter::parse).transpose()?;
    let mut matched: Vec<(Value, &'static ResourceType)> = Vec::new();
    for &t in types {
        let rt = resource_type(t);
        if let Some(f) = &parsed {
            filter::validate(f, rt)?;
        }
        let records = match s.filter.as_deref().and_then(|f| exact_name_lookup(f, t)) {
            Some(name) => state
                .store
                .scim_record_by_name(client.admin.system.id, t, &name, &client.admin.scope)
                .await?
                .into_iter()
                .collect(),
            None => {
                state
                    .store
                    .scim_records(client.admin.system.id, t, &client.admin.scope)
                    .await?
            }
        };
        for rec in &records {
            let v = render(rec, &client.base);
            if parsed.as_ref().is_none_or(|f| filter::matches(f, &v, rt)) {
                matched.push((v, rt));
            }
        }
    }
    if let Some(by) = &s.sort_by {
        filter::parse_attr_path(by)?;
        let mut keyed: Vec<_> = matched
            .into_iter()
            .map(|(v, rt)| (filter::sort_key(&v, by, rt), v, rt))
            .collect();
        // Missing values last, whatever the order (RFC 7644 §3.4.2.3).
        keyed.sort_by(|a, b| match (&a.0, &b.0) {
            (Some(x), Some(y)) if s.descending => y.cmp(x),
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        matched = keyed.into_iter().map(|(_, v, rt)| (v, rt)).collect();
    }
    let total = matched.len();
    let take = s.count.unwrap_or(MAX_RESULTS).min(MAX_RESULTS);
    let page: Vec<Value> = matched
        .into_iter()
        .skip(s.start_index - 1)
        .take(take)
        .map(|(v, rt)| s.projection.apply(&v, rt))
        .collect::<ScimResult<_>>()?;
    Ok(scim_json(
        StatusCode::OK,
        json!({
            "schemas": [LIST_RESPONSE_URN],
            "totalResults": total,
            "startIndex": s.start_index,
            "itemsPerPage": page.len(),
            "Resources": page,
        }),
    ))
}

fn type_of_path(kind: &str) -> ScimResult<ScimResourceType> {
    match kind {
        "Users" => Ok(ScimResourceType::User),
        "Groups" => Ok(ScimResourceType::Group),
        _ => Err(ScimError::status(404, format!("no resource type at /{kind}")).into()),
    }
}

async fn list(
    State(state): State<AppState>,
    client: ScimClient,
    Path(kind): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ScimResult<Response> {
    let t = type_of_path(&kind)?;
    let s = Search::from_query(&q)?;
    run_search(&state, &client, &[t], &s).await
}

/// A protocol message (search request, PATCH) must name its message schema in `schemas`.
fn require_message_schema(message: &Value, urn: &str) -> ScimResult<()> {
    let listed = message
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(urn)));
    if listed {
        Ok(())
    } else {
        Err(ScimError::bad(
            ScimType::InvalidValue,
            format!("schemas: must list '{urn}'"),
        )
        .into())
    }
}

fn search_body(headers: &HeaderMap, body: &Bytes) -> ScimResult<Search> {
    let b = json_body(headers, body)?;
    require_message_schema(&b, SEARCH_REQUEST_URN)?;
    Search::from_json(&b)
}

async fn search_type(
    State(state): State<AppState>,
    client: ScimClient,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let t = type_of_path(&kind)?;
    let s = search_body(&headers, &body)?;
    run_search(&state, &client, &[t], &s).await
}

async fn search_root(
    State(state): State<AppState>,
    client: ScimClient,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let s = search_body(&headers, &body)?;
    run_search(
        &state,
        &client,
        &[ScimResourceType::User, ScimResourceType::Group],
        &s,
    )
    .await
}

/// The version the resource is at now, if the client sees it.
async fn current_version(
    state: &AppState,
    client: &ScimClient,
    t: ScimResourceType,
    id: &str,
) -> ScimResult<Option<i64>> {
    Ok(state
        .store
        .scim_record(client.admin.system.id, t, id, &client.admin.scope)
        .await?
        .map(|r| r.version))
}

fn not_found(t: ScimResourceType, id: &str) -> ScimFailure {
    ScimError::status(404, format!("no {} '{id}'", t.as_str())).into()
}

async fn get_one(
    State(state): State<AppState>,
    client: ScimClient,
    Path((kind, id)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> ScimResult<Response> {
    let t = type_of_path(&kind)?;
    let p = Projection::of_query(&q)?;
    let rec = state
        .store
        .scim_record(client.admin.system.id, t, &id, &client.admin.scope)
        .await?
        .ok_or_else(|| not_found(t, &id))?;
    let tag = etag(rec.version);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| tag_versions(v).is_none_or(|vs| vs.contains(&rec.version)))
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&tag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return Ok(r);
    }
    let body = p.apply(&render(&rec, &client.base), resource_type(t))?;
    Ok(resource_response(StatusCode::OK, &rec, &client.base, body))
}

/// Create or replace: normalise, map and write through the application layer.
async fn write(
    state: &AppState,
    client: &ScimClient,
    t: ScimResourceType,
    target: Option<(&str, Option<i64>)>,
    resource: Value,
) -> ScimResult<Option<ScimRecord>> {
    let rt = resource_type(t);
    let body = mapping::normalise(resource, rt)?;
    let cx = client.admin.cx(&state.app);
    let app = &state.app;
    Ok(match (t, target) {
        (ScimResourceType::User, None) => Some(
            app.scim_create_user(&cx, mapping::user_write(body)?)
                .await?,
        ),
        (ScimResourceType::User, Some((id, v))) => {
            app.scim_replace_user(&cx, id, v, mapping::user_write(body)?)
                .await?
        }
        (ScimResourceType::Group, None) => Some(
            app.scim_create_group(&cx, mapping::group_write(body)?)
                .await?,
        ),
        (ScimResourceType::Group, Some((id, v))) => {
            app.scim_replace_group(&cx, id, v, mapping::group_write(body)?)
                .await?
        }
    })
}

async fn create(
    State(state): State<AppState>,
    client: ScimClient,
    Path(kind): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let t = type_of_path(&kind)?;
    let p = Projection::of_query(&q)?;
    let resource = json_body(&headers, &body)?;
    let rec = write(&state, &client, t, None, resource)
        .await?
        .ok_or_else(|| ScimFailure(ScimError::status(500, "nothing was created")))?;
    let body = p.apply(&render(&rec, &client.base), resource_type(t))?;
    Ok(resource_response(
        StatusCode::CREATED,
        &rec,
        &client.base,
        body,
    ))
}

async fn replace(
    State(state): State<AppState>,
    client: ScimClient,
    Path((kind, id)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let t = type_of_path(&kind)?;
    let p = Projection::of_query(&q)?;
    let expected = if_match(&headers, current_version(&state, &client, t, &id).await?)?;
    let resource = json_body(&headers, &body)?;
    let rec = write(&state, &client, t, Some((&id, expected)), resource)
        .await?
        .ok_or_else(|| not_found(t, &id))?;
    let body = p.apply(&render(&rec, &client.base), resource_type(t))?;
    Ok(resource_response(StatusCode::OK, &rec, &client.base, body))
}

async fn modify(
    State(state): State<AppState>,
    client: ScimClient,
    Path((kind, id)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let t = type_of_path(&kind)?;
    let rt = resource_type(t);
    let p = Projection::of_query(&q)?;
    let request = json_body(&headers, &body)?;
    require_message_schema(&request, PATCH_OP_URN)?;
    let ops = request
        .get("Operations")
        .or_else(|| request.get("operations"))
        .ok_or_else(|| {
            ScimFailure(ScimError::bad(
                ScimType::InvalidValue,
                "Operations: required",
            ))
        })?;
    let current = state
        .store
        .scim_record(client.admin.system.id, t, &id, &client.admin.scope)
        .await?
        .ok_or_else(|| not_found(t, &id))?;
    if let Some(v) = if_match(&headers, Some(current.version))?
        && v != current.version
    {
        return Err(StoreError::VersionMismatch {
            current: current.version,
        }
        .into());
    }
    let mut resource = render(&current, &client.base);
    patch::apply(&mut resource, ops, rt)?;
    // The write is conditional on the version the patch was applied to: a concurrent change
    // in between gets 412, never a lost update.
    let rec = write(
        &state,
        &client,
        t,
        Some((&id, Some(current.version))),
        resource,
    )
    .await?
    .ok_or_else(|| not_found(t, &id))?;
    let body = p.apply(&render(&rec, &client.base), rt)?;
    Ok(resource_response(StatusCode::OK, &rec, &client.base, body))
}

async fn remove(
    State(state): State<AppState>,
    client: ScimClient,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ScimResult<Response> {
    let t = type_of_path(&kind)?;
    let expected = if_match(&headers, current_version(&state, &client, t, &id).await?)?;
    let cx = client.admin.cx(&state.app);
    if state.app.scim_delete(&cx, t, &id, expected).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(t, &id))
    }
}

async fn service_provider_config(client: ScimClient) -> Response {
    scim_json(
        StatusCode::OK,
        json!({
            "schemas": [schema::SERVICE_PROVIDER_CONFIG_URN],
            "documentationUri": "https://example.invalid/lockgate/docs/connectors/scim.md",
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            "filter": { "supported": true, "maxResults": MAX_RESULTS },
            "changePassword": { "supported": false },
            "sort": { "supported": true },
            "etag": { "supported": true },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A lockgate API token issued with purpose 'scim' to a C-key holding the Web service role",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{}/ServiceProviderConfig", client.base),
            },
        }),
    )
}

fn list_of(items: Vec<Value>) -> Response {
    scim_json(
        StatusCode::OK,
        json!({
            "schemas": [LIST_RESPONSE_URN],
            "totalResults": items.len(),
            "startIndex": 1,
            "itemsPerPage": items.len(),
            "Resources": items,
        }),
    )
}

async fn resource_types(client: ScimClient) -> Response {
    list_of(
        RESOURCE_TYPES
            .iter()
            .map(|r| r.to_json(&client.base))
            .collect(),
    )
}

async fn resource_type_one(client: ScimClient, Path(name): Path<String>) -> ScimResult<Response> {
    let rt = RESOURCE_TYPES
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| ScimFailure(ScimError::status(404, format!("no resource type '{name}'"))))?;
    Ok(scim_json(StatusCode::OK, rt.to_json(&client.base)))
}

async fn schemas(client: ScimClient) -> Response {
    list_of(SCHEMAS.iter().map(|s| s.to_json(&client.base)).collect())
}

async fn schema_one(client: ScimClient, Path(id): Path<String>) -> ScimResult<Response> {
    let s = SCHEMAS
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ScimFailure(ScimError::status(404, format!("no schema '{id}'"))))?;
    Ok(scim_json(StatusCode::OK, s.to_json(&client.base)))
}

async fn no_such_endpoint() -> ScimFailure {
    ScimError::status(404, "no such SCIM endpoint").into()
}

/// Errors axum answers in plain text (405 on a discovery endpoint, 413, 422 of an
/// extractor) become SCIM error bodies.
async fn scim_errors(resp: Response) -> Response {
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    let s = resp.status();
    if plain && (s.is_client_error() || s.is_server_error()) {
        let detail = match s {
            StatusCode::METHOD_NOT_ALLOWED => "this endpoint does not take that method",
            StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than the gateway accepts",
            _ => "the request could not be read",
        };
        return ScimFailure(ScimError::status(s.as_u16(), detail)).into_response();
    }
    resp
}

/// The `/scim/v2` router.
pub fn routes() -> Router<AppState> {
    let r = Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{name}", get(resource_type_one))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema_one))
        .route("/.search", post(search_root))
        .route("/{kind}", get(list).post(create))
        .route("/{kind}/.search", post(search_type))
        .route(
            "/{kind}/{id}",
            get(get_one).put(replace).patch(modify).delete(remove),
        )
        .fallback(no_such_endpoint)
        .layer(axum::middleware::map_response(scim_errors));
    Router::new().nest(PATH_PREFIX, r)
}
