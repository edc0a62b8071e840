//! SAML single sign-on for administrators (`docs/connectors/saml.md`): each locking system's
//! SSO settings (`/api/v1/sso/...`), the browser endpoints of the service provider
//! (`/sso/{system}/metadata`, `/login`, `/acs`), enrolment of a C-key's SSO identity, and the
//! session the login opens (`/api/v1/session`).
//!
//! The API does not know the plugin host: the protocol is an [`SsoProvider`] the server
//! implements over the `sso` plugin. The core keeps what must not be left to a plugin: which
//! requests are awaited (InResponseTo), the replay cache, the mapping subject → C-key and the
//! sessions (`lockgate_store::sso`).

use std::{future::Future, pin::Pin, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::Duration;
use lockgate_model::permission::{Function, Level};
use lockgate_store::sso::{SsoOutcome, SsoPurpose, SsoSettings, VerifiedAssertion};
use serde::Deserialize;
use serde_json::json;

use crate::{
    AppState,
    authz::Admin,
    extract::json_body,
    problem::{ApiResult, Problem},
};

/// The session cookie (`__Host-`: Secure, Path=/, no Domain).
pub const SESSION_COOKIE: &str = "__Host-lockgate_session";
/// The header carrying a session's CSRF token on every changing request.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Refuses a body whose Content-Type is none of `accepted` (415, naming them).
fn require_media_type(headers: &HeaderMap, accepted: &[&str]) -> ApiResult<()> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if accepted.contains(&media.as_str()) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!("the body must be one of {}", accepted.join(", ")),
        ))
    }
}

/// Largest identity-provider metadata accepted (bytes).
const MAX_METADATA_BYTES: usize = 1024 * 1024;
/// Longest `return_to` path.
const MAX_RETURN_TO: usize = 512;

/// Session and protocol settings (`[sso]`).
#[derive(Debug, Clone)]
pub struct SsoConfig {
    /// The gateway's public base URL (`https://host[:port]`): entity ids and ACS URLs derive from it.
    pub public_url: String,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after login, used or not.
    pub session_absolute: Duration,
    /// Clock difference tolerated on the assertion's time conditions.
    pub clock_skew_seconds: u32,
    /// How long a login or enrolment request waits for the identity provider's answer.
    pub request_lifetime: Duration,
    /// Days a service-provider certificate is valid.
    pub certificate_days: i64,
}

/// The service provider of one locking system, as the plugin gets it.
#[derive(Debug, Clone)]
pub struct ServiceProvider {
    pub entity_id: String,
    pub acs_url: String,
    pub idp_metadata: String,
    pub certificate: String,
    pub subject_attribute: Option<String>,
    pub clock_skew_seconds: u32,
}

/// What identity-provider metadata says.
#[derive(Debug, Clone)]
pub struct IdpSummary {
    pub entity_id: String,
    pub sso_url: String,
    pub signing_certificates: u32,
    pub valid_until: Option<i64>,
}

/// A verified answer of the identity provider.
#[derive(Debug, Clone)]
pub struct VerifiedIdentity {
    pub subject: String,
    pub assertion_id: String,
    pub in_response_to: String,
    pub not_on_or_after: i64,
}

/// Why the provider refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SsoError {
    /// The input (metadata, response) is not acceptable: the message names the rule.
    #[error("{0}")]
    Invalid(String),
    /// No SSO plugin, or it is disabled, failed or faulting.
    #[error("{0}")]
    Unavailable(String),
}

/// A boxed future of the provider.
pub type SsoFuture<T> = Pin<Box<dyn Future<Output = Result<T, SsoError>> + Send>>;

/// What the API needs from the `sso` plugin (implemented by the server).
pub trait SsoProvider: std::fmt::Debug + Send + Sync + 'static {
    fn read_metadata(&self, xml: String) -> SsoFuture<IdpSummary>;
    /// The metadata document at `url`, fetched through the plugin's granted outbound HTTP.
    fn fetch_metadata(&self, url: String) -> SsoFuture<String>;
    fn sp_metadata(&self, sp: ServiceProvider) -> SsoFuture<String>;
    /// The request's ID and the URL to send the browser to.
    fn begin_login(&self, sp: ServiceProvider, relay_state: String) -> SsoFuture<(String, String)>;
    fn complete_login(
        &self,
        sp: ServiceProvider,
        method: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> SsoFuture<VerifiedIdentity>;
}

impl From<SsoError> for Problem {
    fn from(e: SsoError) -> Self {
        match e {
            SsoError::Invalid(m) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "sso-refused", m)
            }
            SsoError::Unavailable(m) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "sso-unavailable", m)
            }
        }
    }
}

fn provider(state: &AppState) -> ApiResult<(Arc<dyn SsoProvider>, SsoConfig)> {
    match (&state.sso, &state.config.sso) {
        (Some(p), Some(c)) => Ok((p.clone(), c.clone())),
        _ => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "sso-not-configured",
            "single sign-on is not configured on this gateway ([sso] with an sso plugin)",
        )),
    }
}

fn urls(config: &SsoConfig, system_id: i64) -> (String, String) {
    let base = config.public_url.trim_end_matches('/');
    (
        format!("{base}/sso/{system_id}/metadata"),
        format!("{base}/sso/{system_id}/acs"),
    )
}

/// The service provider of a system, once it has metadata and a certificate.
fn service_provider(
    config: &SsoConfig,
    system_id: i64,
    s: &SsoSettings,
) -> ApiResult<ServiceProvider> {
    let (entity_id, acs_url) = urls(config, system_id);
    Ok(ServiceProvider {
        entity_id,
        acs_url,
        idp_metadata: s.idp_metadata.clone().ok_or_else(|| {
            Problem::new(
                StatusCode::CONFLICT,
                "sso-incomplete",
                "no identity-provider metadata is imported (POST /api/v1/sso/idp-metadata)",
            )
        })?,
        certificate: s.sp_certificate_pem.clone().ok_or_else(|| {
            Problem::new(
                StatusCode::CONFLICT,
                "sso-incomplete",
                "the service provider has no certificate yet (POST /api/v1/sso/certificate)",
            )
        })?,
        subject_attribute: s.subject_attribute.clone(),
        clock_skew_seconds: config.clock_skew_seconds,
    })
}

fn view(config: &SsoConfig, system_id: i64, s: &SsoSettings) -> serde_json::Value {
    let (entity_id, acs_url) = urls(config, system_id);
    json!({
        "enabled": s.enabled,
        "subject_attribute": s.subject_attribute,
        "idp_entity_id": s.idp_entity_id,
        "idp_metadata_url": s.idp_metadata_url,
        "idp_metadata_loaded_at": s.idp_metadata_loaded_at,
        "idp_metadata_imported": s.idp_metadata.is_some(),
        "sp_certificate_created_at": s.sp_certificate_created_at,
        "sp_entity_id": entity_id,
        "sp_acs_url": acs_url,
        "login_url": format!("{}/sso/{system_id}/login", config.public_url.trim_end_matches('/')),
    })
}

/// `GET /api/v1/sso/settings` (system settings, View).
async fn get_settings(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    admin.require(Function::SystemSettings, Level::View)?;
    let (_, config) = provider(&state)?;
    let s = state.store.sso_settings(admin.system.id).await?;
    Ok(Json(view(&config, admin.system.id, &s)).into_response())
}

/// What `PUT /api/v1/sso/settings` changes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoSettingsChange {
    /// Offer SSO login (needs imported metadata and a certificate).
    pub enabled: bool,
    /// The assertion attribute whose value is the subject; none: the NameID.
    #[serde(default)]
    pub subject_attribute: Option<String>,
}

/// Only super administrators (every function at Full) change SSO (manual §8.10), and only
/// logged in with the C-key: an SSO session never changes the SSO it rests on.
fn require_super_administrator(admin: &Admin) -> ApiResult<()> {
    admin.require_c_key_login("changing single sign-on")?;
    admin.require(Function::SystemSettings, Level::Full)?;
    admin.require(Function::Roles, Level::Full)?;
    admin.require(Function::CKey, Level::Full)
}

/// `PUT /api/v1/sso/settings`: enable or disable SSO, set the subject attribute.
async fn put_settings(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    require_super_administrator(&admin)?;
    let (_, config) = provider(&state)?;
    let change: SsoSettingsChange = json_body(&headers, &body)?;
    if let Some(a) = &change.subject_attribute
        && (a.trim().is_empty() || a.len() > 256)
    {
        return Err(Problem::field(
            "subject_attribute",
            "must be 1–256 characters",
        ));
    }
    let mut s = state.store.sso_settings(admin.system.id).await?;
    if change.enabled {
        service_provider(&config, admin.system.id, &s)?;
    }
    s.enabled = change.enabled;
    s.subject_attribute = change.subject_attribute;
    state
        .store
        .put_sso_settings(admin.system.id, &s, &admin.actor)
        .await?;
    Ok(Json(view(&config, admin.system.id, &s)).into_response())
}

/// `POST /api/v1/sso/idp-metadata`: imports the identity provider's metadata: the XML
/// document as the body, or `{"url": "https://…"}` (JSON) to fetch it from there (and refresh
/// it later from the same URL). It is read and checked by the plugin before it is kept.
async fn import_metadata(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    require_super_administrator(&admin)?;
    let (sso, config) = provider(&state)?;
    require_media_type(
        &headers,
        &[
            "application/samlmetadata+xml",
            "application/xml",
            "text/xml",
            "application/json",
        ],
    )?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let (xml, url) = if json {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FromUrl {
            url: String,
        }
        let req: FromUrl = json_body(&headers, &body)?;
        let url = check_metadata_url(&req.url)?;
        (sso.fetch_metadata(url.clone()).await?, Some(url))
    } else {
        if body.len() > MAX_METADATA_BYTES {
            return Err(Problem::field(
                "body",
                format!("the metadata is larger than {MAX_METADATA_BYTES} bytes"),
            ));
        }
        let xml = String::from_utf8(body.to_vec())
            .map_err(|_| Problem::field("body", "the metadata is not UTF-8 text"))?;
        (xml, None)
    };
    keep_metadata(&state, &admin, &*sso, &config, xml, url).await
}

/// `POST /api/v1/sso/idp-metadata/refresh`: fetches the metadata again from the URL it was
/// imported from.
async fn refresh_metadata(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    require_super_administrator(&admin)?;
    let (sso, config) = provider(&state)?;
    let s = state.store.sso_settings(admin.system.id).await?;
    let url = s.idp_metadata_url.ok_or_else(|| {
        Problem::new(
            StatusCode::CONFLICT,
            "sso-no-metadata-url",
            "the metadata was not imported from a URL: import it again (POST /api/v1/sso/idp-metadata)",
        )
    })?;
    let xml = sso.fetch_metadata(url.clone()).await?;
    // A refresh renews keys and endpoints of the same identity provider; another entity id
    // at that URL (which would forget every enrolled identity) needs an explicit import.
    let summary = sso.read_metadata(xml.clone()).await?;
    if s.idp_entity_id.as_deref() != Some(summary.entity_id.as_str()) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "sso-other-identity-provider",
            format!(
                "the metadata at {url} now names another identity provider ('{}'); import it explicitly (POST /api/v1/sso/idp-metadata) if that is intended",
                summary.entity_id
            ),
        ));
    }
    keep_metadata(&state, &admin, &*sso, &config, xml, Some(url)).await
}

/// A metadata URL: https (http only to a loopback host: the metadata carries the keys every
/// login is verified with, so a network attacker must not be able to swap it), at most 2048
/// characters, no credentials.
fn check_metadata_url(url: &str) -> ApiResult<String> {
    let loopback = |u: &url::Url| match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match url::Url::parse(url) {
        Ok(u)
            if (u.scheme() == "https" || (u.scheme() == "http" && loopback(&u)))
                && u.host().is_some()
                && u.username().is_empty()
                && u.password().is_none()
                && url.len() <= 2048 =>
        {
            Ok(u.to_string())
        }
        _ => Err(Problem::field(
            "url",
            "must be an https URL (http only to a loopback host) without credentials, at most 2048 characters",
        )),
    }
}

/// Checks metadata with the plugin and keeps it (with the URL it came from, if any).
async fn keep_metadata(
    state: &AppState,
    admin: &Admin,
    sso: &dyn SsoProvider,
    config: &SsoConfig,
    xml: String,
    url: Option<String>,
) -> ApiResult<Response> {
    let summary = sso.read_metadata(xml.clone()).await?;
    let now = state.app.now();
    if let Some(until) = summary.valid_until
        && until < now.timestamp()
    {
        return Err(Problem::field(
            "body",
            format!("the metadata expired (validUntil {until})"),
        ));
    }
    let mut s = state.store.sso_settings(admin.system.id).await?;
    s.idp_metadata = Some(xml);
    s.idp_metadata_url = url;
    s.idp_entity_id = Some(summary.entity_id.clone());
    s.idp_metadata_loaded_at = Some(now);
    state
        .store
        .put_sso_settings(admin.system.id, &s, &admin.actor)
        .await?;
    let mut v = view(config, admin.system.id, &s);
    v["idp_sso_url"] = json!(summary.sso_url);
    v["idp_signing_certificates"] = json!(summary.signing_certificates);
    Ok(Json(v).into_response())
}

/// `POST /api/v1/sso/certificate`: creates (or recreates) the SP certificate.
async fn recreate_certificate(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    require_super_administrator(&admin)?;
    let (_, config) = provider(&state)?;
    let (entity_id, _) = urls(&config, admin.system.id);
    let now = state.app.now();
    let pem = lockgate_devices::ca::service_provider_certificate(
        &entity_id,
        now,
        config.certificate_days,
    )
    .map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "certificate-failed",
            e.to_string(),
        )
    })?;
    let mut s = state.store.sso_settings(admin.system.id).await?;
    s.sp_certificate_pem = Some(pem.clone());
    s.sp_certificate_created_at = Some(now);
    state
        .store
        .put_sso_settings(admin.system.id, &s, &admin.actor)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        pem,
    )
        .into_response())
}

/// `GET /api/v1/sso/certificate`: downloads the SP certificate (PEM).
async fn download_certificate(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    admin.require(Function::SystemSettings, Level::View)?;
    let s = state.store.sso_settings(admin.system.id).await?;
    let pem = s.sp_certificate_pem.ok_or_else(|| {
        Problem::not_found(
            "the service provider has no certificate yet (POST /api/v1/sso/certificate)",
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"lockgate-sp.pem\"",
            ),
        ],
        pem,
    )
        .into_response())
}

/// `GET /api/v1/sso/identities` (C-key, View).
async fn identities(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    admin.require(Function::CKey, Level::View)?;
    let list = state.store.sso_identities(admin.system.id).await?;
    Ok(Json(json!({ "items": list })).into_response())
}

/// `DELETE /api/v1/sso/identities/{c_key_id}` (C-key, Full): the C-key must enrol again.
async fn remove_identity(
    State(state): State<AppState>,
    admin: Admin,
    Path(c_key_id): Path<i64>,
) -> ApiResult<Response> {
    admin.require(Function::CKey, Level::Full)?;
    if state
        .store
        .remove_sso_identity(admin.system.id, c_key_id, &admin.actor)
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::not_found(format!(
            "C-key {c_key_id} has no SSO identity enrolled"
        )))
    }
}

/// A `return_to` after login: a path of this gateway only (never another site: no open redirect).
fn check_return_to(r: Option<String>) -> ApiResult<Option<String>> {
    match r {
        None => Ok(None),
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= MAX_RETURN_TO
                && p.chars().all(|c| c.is_ascii_graphic()) =>
        {
            Ok(Some(p))
        }
        Some(_) => Err(Problem::field(
            "return_to",
            "must be a path on this gateway, starting with a single '/' (at most 512 characters)",
        )),
    }
}

/// The SSO-enabled system of a browser endpoint; an unknown or disabled system is a 404 that
/// says no more.
async fn enabled_system(state: &AppState, system_id: i64) -> ApiResult<SsoSettings> {
    let s = state.store.sso_settings(system_id).await?;
    if !s.enabled {
        return Err(Problem::not_found(
            "single sign-on is not enabled for this locking system",
        ));
    }
    Ok(s)
}

/// Where to start (and remember) an identity-provider round trip.
async fn begin(
    state: &AppState,
    system_id: i64,
    purpose: SsoPurpose,
    c_key_id: Option<i64>,
    return_to: Option<String>,
    browser_secret: Option<&str>,
) -> ApiResult<String> {
    let (sso, config) = provider(state)?;
    let s = enabled_system(state, system_id).await?;
    let sp = service_provider(&config, system_id, &s)?;
    let (id, url) = sso.begin_login(sp, String::new()).await?;
    let expires_at = state.app.now() + config.request_lifetime;
    state
        .store
        .create_sso_request(
            system_id,
            &lockgate_store::sso::AwaitedRequest {
                request_id: &id,
                purpose,
                c_key_id,
                return_to: return_to.as_deref(),
                browser_secret,
                expires_at,
                max_awaited: MAX_AWAITED_REQUESTS,
            },
        )
        .await
        .map_err(|e| match e {
            lockgate_store::StoreError::Refused { message } => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "sso-busy", message)
            }
            other => other.into(),
        })?;
    Ok(url)
}

#[derive(Debug, Deserialize)]
struct ReturnTo {
    return_to: Option<String>,
}

/// Most logins and enrolments of one locking system awaiting the identity provider at once
/// (`/sso/{id}/login` is public, and each call keeps a row until it expires); beyond, 429.
pub const MAX_AWAITED_REQUESTS: usize = 10_000;

/// The login-state cookie: binds a login to the browser that started it. `SameSite=None`
/// because the identity provider's answer arrives as a cross-site POST.
pub const LOGIN_STATE_COOKIE: &str = "__Host-lockgate_sso_login";

/// `GET /sso/{system}/login?return_to=/path`: the browser goes to the identity provider, with
/// a login-state cookie the ACS will require (a browser with one keeps it, so logins started
/// in two tabs both complete).
async fn login(
    State(state): State<AppState>,
    Path(system_id): Path<i64>,
    Query(q): Query<ReturnTo>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let return_to = check_return_to(q.return_to)?;
    let secret = match crate::authz::cookie(&headers, LOGIN_STATE_COOKIE)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Some(v) => v.to_string(),
        None => lockgate_store::sso::new_browser_secret()?,
    };
    let url = begin(
        &state,
        system_id,
        SsoPurpose::Login,
        None,
        return_to,
        Some(&secret),
    )
    .await?;
    let (_, config) = provider(&state)?;
    let mut resp = redirect(&url);
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{LOGIN_STATE_COOKIE}={secret}; Path=/; HttpOnly; Secure; SameSite=None; Max-Age={}",
            config.request_lifetime.num_seconds()
        ))
        .expect("cookie is ASCII"),
    );
    Ok(resp)
}

/// `POST /api/v1/sso/enrolment`: the administrator logged in with the C-key (a token, not an
/// SSO session) binds its SSO identity: the answer's `redirect_url` leads through the identity
/// provider back to the ACS, which records the subject for this C-key.
async fn enrol(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require_c_key_login("enrolling an SSO identity")?;
    // Only with the C-key's own token: a token another administrator issued (capped at that
    // administrator's rights, expiring with it) must not turn into an SSO login of the C-key.
    if admin.token_issued_by != admin.c_key.id {
        return Err(Problem::forbidden(
            "an SSO identity is enrolled with a token the C-key issued itself, not one another administrator issued for it",
        ));
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Enrol {
        #[serde(default)]
        return_to: Option<String>,
    }
    let req: Enrol = if body.is_empty() {
        Enrol { return_to: None }
    } else {
        json_body(&headers, &body)?
    };
    let return_to = check_return_to(req.return_to)?;
    let url = begin(
        &state,
        admin.system.id,
        SsoPurpose::Enrol,
        Some(admin.c_key.id),
        return_to,
        None,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "redirect_url": url }))).into_response())
}

fn redirect(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => Problem::new(
            StatusCode::BAD_GATEWAY,
            "sso-refused",
            "the identity provider's URL is not a valid header value",
        )
        .into_response(),
    }
}

/// `POST /sso/{system}/acs`: the identity provider's answer. Verified by the plugin, then the
/// store uses up the request, records the assertion id (replay) and opens the session or
/// records the enrolment, in one transaction.
async fn acs(
    State(state): State<AppState>,
    Path(system_id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (sso, config) = provider(&state)?;
    require_media_type(&headers, &["application/x-www-form-urlencoded"])?;
    let s = enabled_system(&state, system_id).await?;
    let sp = service_provider(&config, system_id, &s)?;
    let hdrs = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .take(64)
        .collect();
    let verified = sso
        .complete_login(sp, "POST".into(), hdrs, body.to_vec())
        .await?;
    let now = state.app.now();
    let not_on_or_after = chrono::DateTime::from_timestamp(verified.not_on_or_after, 0)
        .unwrap_or(now + Duration::minutes(10));
    let outcome = state
        .store
        .complete_sso(
            system_id,
            &VerifiedAssertion {
                request_id: &verified.in_response_to,
                assertion_id: &verified.assertion_id,
                not_on_or_after,
                subject: &verified.subject,
                browser_secret: crate::authz::cookie(&headers, LOGIN_STATE_COOKIE),
            },
            config.session_absolute,
            now,
        )
        .await
        .map_err(|e| match e {
            lockgate_store::StoreError::Refused { message } => {
                Problem::new(StatusCode::FORBIDDEN, "sso-refused", message)
            }
            other => other.into(),
        })?;
    match outcome {
        SsoOutcome::LoggedIn {
            c_key_id,
            session,
            return_to,
        } => {
            let cookie = format!(
                "{SESSION_COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={}",
                session.secret,
                config.session_absolute.num_seconds()
            );
            tracing::info!(system_id, c_key_id, "SSO login");
            let to = return_to.unwrap_or_else(|| "/api/v1/session".into());
            let mut resp = redirect(&to);
            resp.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
            );
            resp.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_str(&format!(
                    "{LOGIN_STATE_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=None; Max-Age=0"
                ))
                .expect("cookie is ASCII"),
            );
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(resp)
        }
        SsoOutcome::Enrolled {
            c_key_id,
            return_to,
        } => {
            tracing::info!(system_id, c_key_id, "SSO identity enrolled");
            match return_to {
                Some(to) => Ok(redirect(&to)),
                None => Ok(Json(json!({ "enrolled": true, "c_key_id": c_key_id })).into_response()),
            }
        }
    }
}

/// `GET /sso/{system}/metadata`: the service provider's metadata (public; there once the SP
/// certificate exists, so the identity provider can be set up before SSO is enabled).
async fn metadata(
    State(state): State<AppState>,
    Path(system_id): Path<i64>,
) -> ApiResult<Response> {
    let (sso, config) = provider(&state)?;
    let mut s = state.store.sso_settings(system_id).await?;
    if s.sp_certificate_pem.is_none() {
        return Err(Problem::not_found(
            "this locking system has no SSO service-provider certificate",
        ));
    }
    s.idp_metadata.get_or_insert_with(String::new);
    let sp = service_provider(&config, system_id, &s)?;
    let xml = sso.sp_metadata(sp).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
        xml,
    )
        .into_response())
}

/// `GET /api/v1/session`: the session of the request (SSO), with its CSRF token.
async fn session(admin: Admin) -> ApiResult<Response> {
    Ok(Json(json!({
        "system_id": admin.system.id,
        "c_key_id": admin.c_key.id,
        "c_key_name": admin.c_key.body.name,
        "method": admin.method,
        "csrf_token": admin.csrf_token,
        "expires_at": admin.token_expires_at,
    }))
    .into_response())
}

/// `DELETE /api/v1/session`: logout; the cookie is cleared.
async fn logout(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    let Some(id) = admin.session_id else {
        return Err(Problem::bad_request(
            "this request is authenticated by a token, not a session; revoke tokens at /api/v1/tokens",
        ));
    };
    state.store.end_session(id).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0"
        ))
        .expect("cookie is ASCII"),
    );
    Ok(resp)
}

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sso/settings", get(get_settings).put(put_settings))
        .route("/api/v1/sso/idp-metadata", post(import_metadata))
        .route("/api/v1/sso/idp-metadata/refresh", post(refresh_metadata))
        .route(
            "/api/v1/sso/certificate",
            get(download_certificate).post(recreate_certificate),
        )
        .route("/api/v1/sso/identities", get(identities))
        .route(
            "/api/v1/sso/identities/{id}",
            axum::routing::delete(remove_identity),
        )
        .route("/api/v1/sso/enrolment", post(enrol))
        .route("/api/v1/session", get(session).delete(logout))
        .route("/sso/{id}/login", get(login))
        .route("/sso/{id}/acs", post(acs))
        .route("/sso/{id}/metadata", get(metadata))
}
