//! Person endpoints beyond the collection: deactivate, reactivate, restore, CSV import and export.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use lockgate_model::{
    ObjectKind,
    employee_csv::{self, ExportRow, MAX_FILE_BYTES},
    permission::{Function, Level},
};

use crate::{
    AppState,
    authz::Admin,
    extract::{parse_bool, parse_id, query_pairs, require_media},
    problem::{ApiResult, Problem},
    resources::object_response,
};

async fn lifecycle(
    kind: ObjectKind,
    op: &'static str,
    state: AppState,
    admin: Admin,
    id: String,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let to = match op {
        "deactivate" => {
            admin.require(Function::KeyHolderDeactivate, Level::Full)?;
            lockgate_app::PersonMove::Deactivate
        }
        "reactivate" => {
            admin.require(Function::KeyHolderDeactivate, Level::Full)?;
            lockgate_app::PersonMove::Reactivate
        }
        _ => {
            admin.require_kind(kind, Level::Full)?;
            lockgate_app::PersonMove::Restore
        }
    };
    let s = state
        .app
        .move_person(&admin.cx(&state.app), kind, id, to)
        .await?;
    Ok(object_response(StatusCode::OK, &s))
}

/// `POST /api/v1/employees/import?dry_run=true` with a `text/csv` body.
pub async fn import(
    state: AppState,
    admin: Admin,
    raw: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require(Function::EmployeeImport, Level::Full)?;
    admin.require(Function::Employee, Level::Full)?;
    let mut dry_run = false;
    for (k, v) in query_pairs(raw.as_deref()) {
        match k.as_str() {
            "dry_run" => dry_run = parse_bool("dry_run", &v)?,
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown query parameter '{}'; known: dry_run",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    require_media(
        &headers,
        |m| m == "text/csv" || m == "application/octet-stream",
        "text/csv",
    )?;
    let report = state
        .app
        .import_persons(
            &admin.cx(&state.app),
            ObjectKind::Employee,
            &body,
            dry_run,
            &|_, _| {},
        )
        .await?;
    let status = if dry_run {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(report)).into_response())
}

/// `GET /api/v1/employees/export?delimiter=semicolon`: the import format plus Tags.
pub async fn export(state: AppState, admin: Admin, raw: Option<String>) -> ApiResult<Response> {
    admin.require(Function::Employee, Level::View)?;
    let mut delimiter = b',';
    for (k, v) in query_pairs(raw.as_deref()) {
        match (k.as_str(), v.as_str()) {
            ("delimiter", "comma" | ",") => delimiter = b',',
            ("delimiter", "semicolon" | ";") => delimiter = b';',
            ("delimiter", _) => {
                return Err(Problem::bad_request(
                    "query parameter 'delimiter' must be comma or semicolon",
                ));
            }
            (other, _) => {
                return Err(Problem::bad_request(format!(
                    "unknown query parameter '{}'; known: delimiter",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    let rows = state
        .store
        .export_persons(&admin.system, ObjectKind::Employee, &admin.scope)
        .await?;
    let mut out = Vec::new();
    employee_csv::write_export(
        &mut out,
        delimiter,
        rows.iter().map(|(p, d)| ExportRow {
            person: p,
            domain: d,
        }),
    )
    .map_err(|_| Problem::internal())?;
    let mut resp = (StatusCode::OK, out).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    resp.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"employees.csv\""),
    );
    Ok(resp)
}

/// Person-specific routes for employees and visitors.
pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for kind in [ObjectKind::Employee, ObjectKind::Visitor] {
        let base = format!("/api/v1/{}/{{id}}", kind.collection());
        for op in ["deactivate", "reactivate", "restore"] {
            r = r.route(
                &format!("{base}/{op}"),
                post(
                    move |State(s): State<AppState>, admin: Admin, Path(id): Path<String>| {
                        lifecycle(kind, op, s, admin, id)
                    },
                ),
            );
        }
    }
    r.route(
        "/api/v1/employees/import",
        post(
            |State(s): State<AppState>,
             admin: Admin,
             RawQuery(q): RawQuery,
             headers: HeaderMap,
             body: Bytes| import(s, admin, q, headers, body),
        )
        .layer(DefaultBodyLimit::max(MAX_FILE_BYTES + 64 * 1024)),
    )
    .route(
        "/api/v1/employees/export",
        get(|State(s): State<AppState>, admin: Admin, RawQuery(q): RawQuery| export(s, admin, q)),
    )
}
