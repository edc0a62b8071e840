//! The WebAssembly plugins through the API: their status, and enabling, disabling and reloading
//! them (`docs/plugins.md`).
//!
//! The API does not know the plugin host: it talks to a [`PluginAdmin`] that the server
//! implements over it, so this crate stays free of wasmtime. Without one (no plugin host
//! configured) the list is empty and every plugin is "not found". Reading needs
//! `system_settings` at View; changing is the gateway operator's (`admin::require_operator`):
//! plugins are gateway-wide, not per system.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use lockgate_model::permission::{Function, Level};
use serde::Serialize;
use serde_json::json;

use crate::{
    AppState,
    authz::Admin,
    problem::{ApiResult, Problem},
};

/// Path of the plugin list.
pub const PLUGINS_PATH: &str = "/api/v1/plugins";

/// One plugin as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PluginView {
    /// The plugin's name (its manifest's).
    pub name: String,
    /// Version from the manifest.
    pub version: Option<String>,
    /// World (`directory-sync`, `notifier`, ...) from the manifest.
    pub world: Option<String>,
    /// The licence feature the manifest names (none: the plugin needs no feature). The
    /// host asks before every call whether the locking system holds it then.
    pub licence_feature: Option<String>,
    /// Whether the caller's locking system holds `licence_feature` now (none when the
    /// plugin names no feature).
    pub licensed: Option<bool>,
    /// Description from the manifest.
    pub description: Option<String>,
    /// `enabled`, `disabled`, `refused` or `failed`.
    pub state: String,
    /// Why it is not enabled (disabled, refused or failed).
    pub reason: Option<String>,
    /// The cause chain of a load failure, outermost first.
    pub causes: Vec<String>,
    /// What the manifest requests.
    #[schema(value_type = Option<Object>)]
    pub requested: Option<serde_json::Value>,
    /// What the configuration grants (capabilities with their scope).
    #[schema(value_type = Object)]
    pub grants: serde_json::Value,
    /// Requested capabilities that are not granted.
    pub ungranted_requests: Vec<String>,
    /// The component's imports.
    pub imports: Vec<String>,
    /// Call counts and latencies.
    pub stats: PluginStats,
    /// The last fault (trap, deadline, resource limit) with its cause chain.
    pub last_error: Option<PluginFault>,
}

/// Call counts and latency percentiles of one plugin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PluginStats {
    /// Calls attempted.
    pub calls: u64,
    /// Calls that returned (`ok` or an expected error).
    pub completed: u64,
    /// Completed calls that returned an expected error.
    pub expected_errors: u64,
    /// Calls that faulted.
    pub faults: u64,
    /// Calls refused while backing off.
    pub rejected_backing_off: u64,
    /// Faults since the last completed call.
    pub consecutive_faults: u32,
    /// Calls are refused until then (ms since the Unix epoch).
    pub backing_off_until_ms: Option<i64>,
    /// Median latency over the last calls, microseconds.
    pub latency_p50_us: Option<u64>,
    /// 99th percentile latency, microseconds.
    pub latency_p99_us: Option<u64>,
    /// Slowest of the last calls, microseconds.
    pub latency_max_us: Option<u64>,
}

/// A plugin fault.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PluginFault {
    /// `trap`, `deadline`, `memory-limit`, ...
    pub kind: String,
    /// One line for administrators.
    pub message: String,
    /// The full error chain, outermost first.
    pub causes: Vec<String>,
    /// What the guest wrote to stderr (e.g. a panic message).
    pub guest_stderr: Option<String>,
    /// When it happened (ms since the Unix epoch).
    pub at_ms: i64,
}

/// Why a plugin operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginAdminError {
    /// No plugin has this name.
    #[error("no plugin named `{0}`")]
    NotFound(String),
    /// The plugin's locking system lacks the licence feature its manifest names.
    #[error("{0}")]
    Unlicensed(String),
    /// The plugin refused the request (invalid configuration, the mass-deletion guard).
    #[error("{0}")]
    Refused(String),
    /// Anything else (the plugin host's message).
    #[error("{0}")]
    Failed(String),
}

/// What a directory sync did or, on a dry run, would do (the plugin's report).
pub type SyncOutcome = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<serde_json::Value, PluginAdminError>> + Send>,
>;

/// What the API needs from the plugin host (implemented by the server).
///
/// `enable` and `reload` may compile a component: handlers run them off the async workers.
pub trait PluginAdmin: std::fmt::Debug + Send + Sync + 'static {
    /// Every plugin, sorted by name.
    fn list(&self) -> Vec<PluginView>;
    /// Enables a plugin (reloads it; configuration and licence still apply).
    fn enable(&self, name: &str) -> Result<PluginView, PluginAdminError>;
    /// Disables a plugin: its calls are refused with `reason` until it is enabled.
    fn disable(&self, name: &str, reason: &str) -> Result<PluginView, PluginAdminError>;
    /// Reloads a plugin from its manifest and component; clears its back-off.
    fn reload(&self, name: &str) -> Result<PluginView, PluginAdminError>;
    /// Runs a directory-sync plugin's sync now (full or incremental, dry run or not) and
    /// answers its report.
    fn sync(&self, name: &str, full: bool, dry_run: bool) -> SyncOutcome;
}

impl From<PluginAdminError> for Problem {
    fn from(e: PluginAdminError) -> Self {
        match e {
            PluginAdminError::NotFound(_) => Problem::not_found(e.to_string()),
            PluginAdminError::Failed(m) => Problem::new(StatusCode::CONFLICT, "plugin-failed", m),
            PluginAdminError::Unlicensed(m) => {
                Problem::new(StatusCode::FORBIDDEN, "licence-feature-missing", m)
            }
            PluginAdminError::Refused(m) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "sync-refused", m)
            }
        }
    }
}

/// `GET /api/v1/plugins`: every plugin with its state, grants, counts and last error.
async fn list(state: AppState, admin: Admin) -> ApiResult<Response> {
    admin.require(Function::SystemSettings, Level::View)?;
    let mut items = state.plugins.as_ref().map(|p| p.list()).unwrap_or_default();
    if items.iter().any(|p| p.licence_feature.is_some()) {
        let available = crate::licence::status_of(&state, admin.system.id)
            .await?
            .available();
        for p in &mut items {
            p.licensed = p
                .licence_feature
                .as_deref()
                .map(|f| available.iter().any(|a| a.as_str() == f));
        }
    }
    Ok(Json(json!({ "items": items })).into_response())
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Enable,
    Disable,
    Reload,
}

/// `POST /api/v1/plugins/{name}/{enable|disable|reload}`.
async fn act(state: AppState, admin: Admin, name: String, action: Action) -> ApiResult<Response> {
    admin.require(Function::SystemSettings, Level::Full)?;
    // Plugins serve every locking system: changing one is the operator's.
    crate::admin::require_operator(&state, &admin).await?;
    let Some(host) = state.plugins.clone() else {
        return Err(PluginAdminError::NotFound(name).into());
    };
    let reason = format!(
        "disabled by administrator '{}' (C-key {})",
        admin.c_key.body.name, admin.c_key.id
    );
    tracing::info!(plugin = %name, ?action, c_key_id = admin.c_key.id, "plugin administration");
    let host: Arc<dyn PluginAdmin> = host;
    let view = tokio::task::spawn_blocking(move || match action {
        Action::Enable => host.enable(&name),
        Action::Disable => host.disable(&name, &reason),
        Action::Reload => host.reload(&name),
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "plugin administration task failed");
        Problem::internal()
    })??;
    Ok(Json(view).into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SyncRequest {
    /// A full sync (deletions considered) instead of an incremental one.
    full: bool,
    /// Report what would change, change nothing.
    dry_run: bool,
}

/// `POST /api/v1/plugins/{name}/sync` ("update LDAP employees" / "synchronise now"): runs a
/// directory-sync plugin's sync now and answers its report. Needs LDAP integration at Full.
async fn sync_now(
    state: AppState,
    admin: Admin,
    name: String,
    req: SyncRequest,
) -> ApiResult<Response> {
    admin.require(Function::LdapIntegration, Level::Full)?;
    let Some(host) = state.plugins.clone() else {
        return Err(PluginAdminError::NotFound(name).into());
    };
    tracing::info!(plugin = %name, full = req.full, dry_run = req.dry_run, c_key_id = admin.c_key.id, "directory sync on demand");
    let report = host.sync(&name, req.full, req.dry_run).await?;
    Ok(Json(report).into_response())
}

/// The plugin endpoints.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/plugins/{name}/sync",
            post(
                |State(s): State<AppState>,
                 a: Admin,
                 Path(n): Path<String>,
                 crate::extract::JsonBody(r): crate::extract::JsonBody<SyncRequest>| {
                    sync_now(s, a, n, r)
                },
            ),
        )
        .route(
            PLUGINS_PATH,
            get(|State(s): State<AppState>, a: Admin| list(s, a)),
        )
        .route(
            "/api/v1/plugins/{name}/enable",
            post(
                |State(s): State<AppState>, a: Admin, Path(n): Path<String>| {
                    act(s, a, n, Action::Enable)
                },
            ),
        )
        .route(
            "/api/v1/plugins/{name}/disable",
            post(
                |State(s): State<AppState>, a: Admin, Path(n): Path<String>| {
                    act(s, a, n, Action::Disable)
                },
            ),
        )
        .route(
            "/api/v1/plugins/{name}/reload",
            post(
                |State(s): State<AppState>, a: Admin, Path(n): Path<String>| {
                    act(s, a, n, Action::Reload)
                },
            ),
        )
}
