//! The background runtime's dead letters through the API: queue jobs that failed their last
//! attempt and outbox messages given up on, and putting them back.
//!
//! The queue and the outbox are gateway-wide (not per locking system), like the plugins:
//! reading and requeueing are the gateway operator's (`admin::require_operator`: a super
//! administrator of `[access] operator_system_id`), since the errors can name persons of any
//! system. Payloads are not shown; kind or topic, attempts, the last error and the timestamps are.
//!
//! * `GET /api/v1/background/dead-letters?source=queue|outbox&after=ID&limit=N`: both sources
//!   (or one), oldest first, at most `limit` (1–500, default 100) of each; `after` pages
//!   through one `source`.
//! * `POST /api/v1/background/dead-letters/{id}/requeue` with `{"source": "queue"}` or
//!   `{"source": "outbox"}`: the job (ready now) or message (due now) gets its attempts anew.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use lockgate_jobs::{
    DispatchConfig, Dispatcher, JobsError, Queue, QueueConfig, outbox::OutboxRecord,
    queue::JobRecord,
};
use lockgate_model::permission::{Function, Level};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    AppState,
    authz::Admin,
    extract::{PathId, json_body, parse_int, query_pairs},
    problem::{ApiResult, Problem},
};

/// Path of the dead-letter list.
pub const DEAD_LETTERS_PATH: &str = "/api/v1/background/dead-letters";

/// Where a dead letter lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A job of the durable queue.
    Queue,
    /// An outbound message of the outbox.
    Outbox,
}

/// Body of `POST /api/v1/background/dead-letters/{id}/requeue`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Requeue {
    /// Whether `{id}` is a queue job or an outbox message.
    pub source: Source,
}

/// One dead letter as listed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub source: Source,
    /// Id within its source (the `{id}` to requeue).
    pub id: i64,
    /// Handler kind (queue) or topic (outbox).
    pub kind: String,
    /// Stable message id (outbox only).
    pub message_id: Option<String>,
    pub attempts: u32,
    /// Attempts it had (queue only; the outbox uses the configured maximum).
    pub max_attempts: Option<u32>,
    pub last_error: Option<String>,
    /// Periodic task that created the job, if any.
    pub periodic_task: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was given up on (queue: its last update).
    pub dead_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<JobRecord> for DeadLetter {
    fn from(j: JobRecord) -> Self {
        DeadLetter {
            source: Source::Queue,
            id: j.id,
            kind: j.kind,
            message_id: None,
            attempts: j.attempts,
            max_attempts: Some(j.max_attempts),
            last_error: j.last_error,
            periodic_task: j.periodic_task,
            created_at: j.created_at,
            dead_at: Some(j.updated_at),
        }
    }
}

impl From<OutboxRecord> for DeadLetter {
    fn from(m: OutboxRecord) -> Self {
        DeadLetter {
            source: Source::Outbox,
            id: m.id,
            kind: m.topic,
            message_id: Some(m.message_id),
            attempts: m.attempts,
            max_attempts: None,
            last_error: m.last_error,
            periodic_task: None,
            created_at: m.created_at,
            dead_at: m.dead_at,
        }
    }
}

impl From<JobsError> for Problem {
    fn from(e: JobsError) -> Self {
        match e {
            JobsError::NotFound { .. } => Problem::not_found(e.to_string()),
            JobsError::Conflict(m) => Problem::new(StatusCode::CONFLICT, "conflict", m),
            JobsError::Invalid(m) => Problem::bad_request(m),
            other => {
                tracing::error!(error = %other, "background runtime error");
                Problem::internal()
            }
        }
    }
}

fn queue(state: &AppState) -> ApiResult<Queue> {
    // Listing and requeueing do not depend on the lease or retry settings.
    Ok(Queue::new(state.store.clone(), QueueConfig::default())?)
}

fn dispatcher(state: &AppState) -> ApiResult<Dispatcher> {
    Ok(Dispatcher::new(
        state.store.clone(),
        DispatchConfig::default(),
    )?)
}

fn parse_source(v: &str) -> ApiResult<Source> {
    match v {
        "queue" => Ok(Source::Queue),
        "outbox" => Ok(Source::Outbox),
        _ => Err(Problem::bad_request(
            "query parameter 'source' must be queue or outbox",
        )),
    }
}

/// `GET /api/v1/background/dead-letters`.
async fn list(
    State(state): State<AppState>,
    admin: Admin,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    admin.require(Function::SystemSettings, Level::View)?;
    // Dead letters of every locking system, whose errors can name persons: the operator's.
    crate::admin::require_operator(&state, &admin).await?;
    let mut source = None;
    let mut after = None;
    let mut limit = 100u32;
    for (k, v) in query_pairs(query.as_deref()) {
        match k.as_str() {
            "source" => source = Some(parse_source(&v)?),
            "after" => after = Some(parse_int("after", &v, 0i64, i64::MAX)?),
            "limit" => limit = parse_int("limit", &v, 1u32, 500)?,
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown query parameter '{}'",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    if after.is_some() && source.is_none() {
        return Err(Problem::bad_request(
            "query parameter 'after' pages through one source: add source=queue or source=outbox",
        ));
    }
    let mut items: Vec<DeadLetter> = Vec::new();
    if source != Some(Source::Outbox) {
        items.extend(
            queue(&state)?
                .dead_letters(None, after, limit)
                .await?
                .into_iter()
                .map(DeadLetter::from),
        );
    }
    if source != Some(Source::Queue) {
        items.extend(
            dispatcher(&state)?
                .dead_letters(after, limit)
                .await?
                .into_iter()
                .map(DeadLetter::from),
        );
    }
    Ok(Json(json!({ "items": items })).into_response())
}

/// `POST /api/v1/background/dead-letters/{id}/requeue`.
async fn requeue(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require(Function::SystemSettings, Level::Full)?;
    crate::admin::require_operator(&state, &admin).await?;
    let req: Requeue = json_body(&headers, &body)?;
    match req.source {
        Source::Queue => queue(&state)?.requeue(id).await?,
        Source::Outbox => dispatcher(&state)?.requeue(id).await?,
    }
    tracing::info!(source = ?req.source, id, c_key_id = admin.c_key.id, "dead letter requeued");
    Ok(Json(json!({ "source": req.source, "id": id, "requeued": true })).into_response())
}

/// The dead-letter endpoints.
pub fn routes() -> Router<AppState> {
    Router::new().route(DEAD_LETTERS_PATH, get(list)).route(
        "/api/v1/background/dead-letters/{id}/requeue",
        post(requeue),
    )
}
