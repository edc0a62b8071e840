//! lockgate REST API: axum routers under `/api/v1`, problem+json errors, OpenAPI, authorisation.
//!
//! Only this crate knows HTTP and JSON. Every endpoint authenticates a bearer
//! token, checks the caller's function levels and domains, then calls the store.

pub mod admin;
pub mod authz;
pub mod background;
pub mod devices;
pub mod extract;
pub mod jobs;
pub mod licence;
pub mod lifecycle;
pub mod openapi;
pub mod persons;
pub mod plugins;
pub mod policy;
pub mod problem;
pub mod resources;
pub mod scim;
pub mod sso;
pub mod web_services;

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use lockgate_model::{
    ObjectKind,
    access_profile::{AccessProfile, TemporaryAccessGroup},
    ckey::CKey,
    cylinder::{Cylinder, CylinderGroup},
    domain::Domain,
    key::Key,
    key_group::KeyGroup,
    permission::Role,
    person::Person,
    remote_pd::RemotePd,
    schedule::ScheduleTemplate,
};
use lockgate_store::Store;

use crate::problem::Problem;

/// Limits the API enforces.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest JSON request body in bytes.
    pub max_body_bytes: usize,
    /// Trusted licence keys and enforcement (`[licence]`; default: no keys, open mode).
    pub licence: licence::LicenceConfig,
    /// Longest lifetime of an API token issued through the API (`[access]`); a token asked
    /// for without an expiry gets this one.
    pub max_token_lifetime: chrono::Duration,
    /// The locking system whose super administrators are the gateway's operators: they alone
    /// enable, disable and reload plugins and read and requeue dead letters (`[access]`).
    /// `None`: the only locking system's, when the gateway holds exactly one.
    pub operator_system_id: Option<i64>,
    /// A whole request, from its head to the handler's answer; later ones get 408.
    pub request_timeout: Duration,
    /// `Strict-Transport-Security: max-age` on every response (the listener serves TLS);
    /// none: no HSTS header.
    pub hsts_max_age: Option<Duration>,
    /// Single sign-on (`[sso]`); none: SSO endpoints answer 404 and no session is accepted.
    pub sso: Option<sso::SsoConfig>,
    /// SCIM provisioning (`[scim]`); none: `/scim/v2` answers 404.
    pub scim: Option<scim::ScimConfig>,
    /// Web services mounted under `/ws` (`[web_services]`); no mounts: `/ws/...` answers 404.
    pub web_services: web_services::WebServicesConfig,
}

/// Default longest lifetime of an API token: 90 days.
pub const DEFAULT_MAX_TOKEN_LIFETIME_DAYS: u32 = 90;

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            licence: licence::LicenceConfig::default(),
            max_token_lifetime: chrono::Duration::days(DEFAULT_MAX_TOKEN_LIFETIME_DAYS.into()),
            operator_system_id: None,
            request_timeout: Duration::from_secs(60),
            hsts_max_age: None,
            sso: None,
            scim: None,
            web_services: web_services::WebServicesConfig::default(),
        }
    }
}

/// Shared state of all handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    /// The application layer: every change goes through it.
    pub app: lockgate_app::App,
    pub config: ApiConfig,
    /// The plugin host, when the gateway runs one (`GET /api/v1/plugins` lists nothing without).
    pub plugins: Option<Arc<dyn plugins::PluginAdmin>>,
    /// The `sso` plugin, when the gateway runs one.
    pub sso: Option<Arc<dyn sso::SsoProvider>>,
    /// The plugin host behind `/ws`, when the gateway mounts web services.
    pub web_services: Option<Arc<dyn web_services::WebServiceHost>>,
    openapi: Arc<String>,
}

impl AppState {
    pub fn new(store: Store, config: ApiConfig) -> Self {
        Self::with_app(lockgate_app::App::new(store), config)
    }

    /// The state over an application layer built by the caller (a test clock, say).
    pub fn with_app(app: lockgate_app::App, config: ApiConfig) -> Self {
        let doc = serde_json::to_string(&openapi::document()).unwrap_or_else(|_| "{}".into());
        Self {
            store: app.store().clone(),
            app,
            config,
            plugins: None,
            sso: None,
            web_services: None,
            openapi: Arc::new(doc),
        }
    }

    /// The same state with an SSO plugin behind the SSO endpoints.
    pub fn with_sso(mut self, sso: Arc<dyn sso::SsoProvider>) -> Self {
        self.sso = Some(sso);
        self
    }

    /// The same state with a plugin host behind the web services (`/ws`).
    pub fn with_web_services(mut self, host: Arc<dyn web_services::WebServiceHost>) -> Self {
        self.web_services = Some(host);
        self
    }

    /// The same state with a plugin host behind the plugin endpoints.
    pub fn with_plugins(mut self, plugins: Arc<dyn plugins::PluginAdmin>) -> Self {
        self.plugins = Some(plugins);
        self
    }
}

async fn openapi_json(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.openapi.as_str().to_owned(),
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "the database does not answer",
            )
            .into_response()
        }
    }
}

async fn not_found() -> Response {
    Problem::not_found("no such endpoint; see /api/v1/openapi.json").into_response()
}

/// Errors axum's own extractors answer in plain text (a body over the limit: 413) become
/// problem documents, like every other error of the API.
async fn problem_for_plain_errors(resp: Response) -> Response {
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if resp.status() == StatusCode::REQUEST_TIMEOUT && plain {
        return Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            "the request took longer than the gateway allows",
        )
        .into_response();
    }
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && plain {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "the request body is larger than the gateway accepts",
        )
        .into_response();
    }
    resp
}

/// The span of one request: method, route and path, never the query string (it can carry
/// names, e-mail addresses or tokens) nor any header. An unmatched path (anything a client
/// typed) is not logged, only that it matched no route.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    match req.extensions().get::<axum::extract::MatchedPath>() {
        Some(route) => tracing::debug_span!(
            "request",
            method = %req.method(),
            route = route.as_str(),
            path = %req.uri().path(),
        ),
        None => tracing::debug_span!("request", method = %req.method(), route = "(no route)"),
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let max = state.config.max_body_bytes;
    let hsts = state.config.hsts_max_age.map(|age| {
        header::HeaderValue::from_str(&format!("max-age={}", age.as_secs()))
            .expect("a number is a header value")
    });
    let timeout = state.config.request_timeout;
    Router::new()
        .merge(resources::routes::<Domain>(ObjectKind::Domain))
        .merge(resources::routes::<Person>(ObjectKind::Employee))
        .merge(resources::routes::<Person>(ObjectKind::Visitor))
        .merge(resources::routes::<Key>(ObjectKind::Key))
        .merge(resources::routes::<CKey>(ObjectKind::CKey))
        .merge(resources::routes::<KeyGroup>(ObjectKind::KeyGroup))
        .merge(resources::routes::<Cylinder>(ObjectKind::Cylinder))
        .merge(resources::routes::<CylinderGroup>(
            ObjectKind::CylinderGroup,
        ))
        .merge(resources::routes::<AccessProfile>(
            ObjectKind::AccessProfile,
        ))
        .merge(resources::routes::<TemporaryAccessGroup>(
            ObjectKind::TemporaryAccessGroup,
        ))
        .merge(resources::routes::<ScheduleTemplate>(
            ObjectKind::ScheduleTemplate,
        ))
        .merge(resources::routes::<RemotePd>(ObjectKind::RemotePd))
        .merge(resources::routes::<Role>(ObjectKind::Role))
        .merge(persons::routes())
        .merge(admin::routes())
        .merge(jobs::routes())
        .merge(devices::routes())
        .merge(licence::routes())
        .merge(lifecycle::routes())
        .merge(plugins::routes())
        .merge(background::routes())
        .merge(sso::routes())
        .merge(scim::routes())
        .merge(web_services::routes().layer(DefaultBodyLimit::max(
            state.config.web_services.max_body_bytes,
        )))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            licence::guard,
        ))
        .layer(DefaultBodyLimit::max(max))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::map_response(problem_for_plain_errors))
        .layer(axum::middleware::map_response(move |mut resp: Response| {
            let hsts = hsts.clone();
            async move {
                if let Some(v) = hsts {
                    resp.headers_mut()
                        .insert(header::STRICT_TRANSPORT_SECURITY, v);
                }
                resp
            }
        }))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}
