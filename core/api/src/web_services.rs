//! Web services mounted at `/ws/{mount}` (e.g. an HR system's SOAP endpoint): each mount is
//! answered by one `web-service` plugin. This layer authenticates the caller, checks its
//! rights on every request and binds it to the plugin call; the plugin speaks the protocol.
//!
//! A `POST` needs a token issued for `web_service` (`POST /api/v1/tokens`, only to a C-key
//! holding the pre-defined Web service role), presented either as `Authorization: Bearer`
//! or as the password of a WS-Security UsernameToken (PasswordText, over TLS or from a
//! loopback peer only; the username is the token's C-key's name). Every request re-checks
//! the token, the C-key, the role, Employee permission Full and the licence feature web
//! services. A `GET` (the WSDL) is answered without credentials and the plugin can call no
//! `employees` operation in it. Failures before the plugin are SOAP 1.1 faults.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, Method, StatusCode, Uri, header, request::Parts},
    response::{IntoResponse, Response},
    routing::any,
};
use lockgate_model::permission::{Function, Level};
use lockgate_store::tokens::TokenPurpose;
use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use crate::{AppState, licence::LicenceFeature, problem::Problem};

/// Default largest request body of a web service, bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Deepest element nesting read while looking for the WS-Security header.
const MAX_HEADER_DEPTH: usize = 32;
/// Most elements read while looking for the WS-Security header.
const MAX_HEADER_ELEMENTS: usize = 1_000;
/// Longest username or password taken from a UsernameToken, bytes.
const MAX_CREDENTIAL_BYTES: usize = 1_024;

/// The WS-Security 1.0 namespace (OASIS 2004).
pub const WSSE_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// The UsernameToken profile's password type this service takes.
pub const PASSWORD_TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";
const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// `[web_services]`: which plugin answers which mount, and the body limit.
#[derive(Debug, Clone)]
pub struct WebServicesConfig {
    /// Mount name (the path segment after `/ws/`) → the `web-service` plugin answering it.
    pub mounts: BTreeMap<String, String>,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Accept a UsernameToken password from a loopback peer on a plain-HTTP listener (a
    /// TLS-terminating proxy on the same host); off: only over the listener's own TLS.
    pub loopback_passwords: bool,
}

impl Default for WebServicesConfig {
    fn default() -> Self {
        WebServicesConfig {
            mounts: BTreeMap::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            loopback_passwords: false,
        }
    }
}

/// How the request's connection reached the gateway, set by the listener on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// The listener served TLS.
    pub tls: bool,
    /// The peer's address.
    pub peer: SocketAddr,
}

impl Transport {
    /// Whether a password may travel in the request: over TLS, or, when `loopback` allows
    /// it, from this host (a TLS-terminating proxy beside the gateway).
    fn protects_passwords(&self, loopback: bool) -> bool {
        self.tls || (loopback && self.peer.ip().is_loopback())
    }
}

/// The authenticated caller a plugin call acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebServiceCaller {
    pub system_id: i64,
    pub c_key_id: i64,
    /// The C-key's name (the actor events name).
    pub label: String,
    /// The request id, shared by the events the call writes.
    pub correlation_id: String,
    /// The domains the caller sees; none: all.
    pub domains: Option<Vec<i64>>,
    pub home: Option<i64>,
    /// Holds key-holder-deactivate at Full (deactivates, sees hidden persons).
    pub sees_hidden_persons: bool,
}

/// A request as the plugin gets it.
#[derive(Debug, Clone)]
pub struct WebRequest {
    pub method: String,
    /// The path below the mount point, with the query string (`/?wsdl`).
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The plugin's answer.
#[derive(Debug, Clone)]
pub struct WebResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A boxed future of the host.
pub type WebFuture = Pin<Box<dyn Future<Output = Result<WebResponse, String>> + Send>>;

/// What the API needs from the plugin host (implemented by the server).
pub trait WebServiceHost: std::fmt::Debug + Send + Sync + 'static {
    /// One request to `plugin`; an error is why the plugin could not answer (disabled,
    /// failed), for the log and a Server fault.
    fn handle(
        &self,
        plugin: String,
        caller: Option<WebServiceCaller>,
        request: WebRequest,
    ) -> WebFuture;
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ws/{mount}", any(serve))
        .route("/ws/{mount}/{*rest}", any(serve))
}

/// A SOAP 1.1 fault answered before the plugin is called.
struct Fault {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Fault {
    fn client(status: StatusCode, message: impl Into<String>) -> Self {
        Fault {
            status,
            code: "soap:Client",
            message: message.into(),
        }
    }

    fn server(message: impl Into<String>) -> Self {
        Fault {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "soap:Server",
            message: message.into(),
        }
    }
}

impl From<Problem> for Fault {
    fn from(p: Problem) -> Self {
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Fault {
            status,
            code: if status.is_server_error() {
                "soap:Server"
            } else {
                "soap:Client"
            },
            message: p.detail,
        }
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"{SOAP11_NS}\"><soap:Body><soap:Fault><faultcode>{}</faultcode><faultstring>{}</faultstring></soap:Fault></soap:Body></soap:Envelope>\n",
            self.code,
            escape(&self.message)
        );
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            body,
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"lockgate web services\""),
            );
        }
        resp
    }
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The credentials of a WS-Security UsernameToken, and where the password's text is in the
/// body (so it can be cut out before the plugin sees the request).
#[derive(PartialEq, Eq)]
struct UsernameToken {
    username: String,
    password: String,
    password_at: std::ops::Range<usize>,
}

impl std::fmt::Debug for UsernameToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsernameToken").finish_non_exhaustive()
    }
}

/// Reads the UsernameToken of the SOAP header's `wsse:Security` block, stopping at the
/// Body: none when the envelope's header carries none. DOCTYPE and entity declarations are
/// refused; depth and element count are bounded; only PasswordText is taken.
fn username_token(body: &[u8]) -> Result<Option<UsernameToken>, String> {
    let text =
        std::str::from_utf8(body).map_err(|_| "the request body is not valid UTF-8".to_string())?;
    let mut reader = NsReader::from_str(text);
    // Element path (namespace, local name) from the root down.
    let mut path: Vec<(Option<String>, String)> = Vec::new();
    let mut elements = 0usize;
    let (mut username, mut password, mut password_type) = (None, None, None);
    let mut reading: Option<&'static str> = None;
    let mut value = String::new();
    // Where the Password element's content starts, and the range once it is closed.
    let (mut content_start, mut password_at) = (0usize, None);
    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("the request is not well-formed XML: {e}"))?;
        let ns = match ns {
            ResolveResult::Bound(n) => Some(n.as_ref().to_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => {
                return Err(format!("the prefix `{p}` is not declared"));
            }
        };
        match event {
            Event::DocType(_) => {
                return Err("a DOCTYPE declaration is not allowed in a SOAP message".into());
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                elements += 1;
                if elements > MAX_HEADER_ELEMENTS || path.len() >= MAX_HEADER_DEPTH {
                    return Err(format!(
                        "the SOAP header is too large (at most {MAX_HEADER_ELEMENTS} elements, depth {MAX_HEADER_DEPTH})"
                    ));
                }
                let name = e.local_name().as_ref().to_owned();
                let is_wsse = ns.as_deref() == Some(WSSE_NS);
                // The Body (or anything after the Header) ends the search.
                if path.len() == 1 && !(ns.as_deref() == Some(SOAP11_NS) && name == "Header") {
                    break;
                }
                // Envelope / Header / Security / UsernameToken / (Username | Password).
                let in_token = path.len() == 4
                    && path[2].0.as_deref() == Some(WSSE_NS)
                    && path[2].1 == "Security"
                    && path[3].0.as_deref() == Some(WSSE_NS)
                    && path[3].1 == "UsernameToken";
                if in_token && is_wsse && (name == "Username" || name == "Password") {
                    if name == "Password" {
                        password_type = Some(
                            e.try_get_attribute("Type")
                                .ok()
                                .flatten()
                                .and_then(|a| {
                                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                        .ok()
                                        .map(|v| v.into_owned())
                                })
                                .unwrap_or_else(|| PASSWORD_TEXT.to_owned()),
                        );
                    }
                    reading = Some(if name == "Username" {
                        "Username"
                    } else {
                        "Password"
                    });
                    value.clear();
                    content_start = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
                }
                if matches!(event, Event::Start(_)) {
                    path.push((ns, name));
                } else if let Some(field) = reading.take() {
                    store(field, String::new(), &mut username, &mut password)?;
                }
            }
            Event::End(_) => {
                path.pop();
                if reading == Some("Password") {
                    password_at = Some(content_start..before);
                }
                if let Some(field) = reading.take() {
                    store(
                        field,
                        std::mem::take(&mut value),
                        &mut username,
                        &mut password,
                    )?;
                }
                if path.is_empty() {
                    break;
                }
            }
            Event::Text(t) if reading.is_some() => {
                value.push_str(&t.xml10_content());
                if value.len() > MAX_CREDENTIAL_BYTES {
                    return Err("a UsernameToken value is too long".into());
                }
            }
            Event::GeneralRef(r) if reading.is_some() => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => quick_xml::escape::resolve_predefined_entity(&r)
                        .ok_or("an undefined entity in the UsernameToken")?
                        .to_owned(),
                };
                value.push_str(&c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    match (username, password) {
        (None, None) => Ok(None),
        (Some(username), Some(password)) => {
            if password_type.as_deref() != Some(PASSWORD_TEXT) {
                return Err("the UsernameToken's password must be of type PasswordText (a digest cannot be checked against a token)".into());
            }
            Ok(Some(UsernameToken {
                username,
                password,
                // An empty element (`<Password/>`) has no content to cut.
                password_at: password_at.unwrap_or(0..0),
            }))
        }
        _ => Err("the UsernameToken needs a Username and a Password".into()),
    }
}

fn store(
    field: &str,
    v: String,
    username: &mut Option<String>,
    password: &mut Option<String>,
) -> Result<(), String> {
    let slot = if field == "Username" {
        username
    } else {
        password
    };
    if slot.replace(v.trim().to_owned()).is_some() {
        return Err(format!("the UsernameToken has more than one {field}"));
    }
    Ok(())
}

/// Headers the plugin gets: never the credentials or cookies.
fn forwarded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            )
        })
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// Authenticates a `POST`: the token from the header or the UsernameToken, then the rights.
/// Also returns where a UsernameToken's password is in the body.
async fn caller(
    parts: &Parts,
    state: &AppState,
    body: &[u8],
) -> Result<(WebServiceCaller, Option<std::ops::Range<usize>>), Fault> {
    let has_header = parts.headers.contains_key(header::AUTHORIZATION);
    let token = if has_header {
        None
    } else {
        username_token(body).map_err(|m| Fault::client(StatusCode::BAD_REQUEST, m))?
    };
    if let Some(t) = &token {
        let transport = parts.extensions.get::<Transport>();
        let loopback = state.config.web_services.loopback_passwords;
        if !transport.is_some_and(|t| t.protects_passwords(loopback)) {
            return Err(Fault::client(
                StatusCode::FORBIDDEN,
                "a UsernameToken password is accepted only over TLS: use https, or send the token in 'Authorization: Bearer'",
            ));
        }
        if t.password.is_empty() {
            return Err(Fault::client(
                StatusCode::UNAUTHORIZED,
                "the UsernameToken's password is empty",
            ));
        }
    } else if !has_header {
        return Err(Fault::client(
            StatusCode::UNAUTHORIZED,
            "credentials are required: a WS-Security UsernameToken (PasswordText) or 'Authorization: Bearer <token>', with a token issued for 'web_service'",
        ));
    }
    let admin = match &token {
        Some(t) => {
            crate::authz::authenticate_with(
                parts,
                state,
                TokenPurpose::WebService,
                Some(t.password.as_str()),
            )
            .await?
        }
        None => crate::authz::authenticate(parts, state, TokenPurpose::WebService).await?,
    };
    if let Some(t) = &token
        && t.username != admin.c_key.body.name
    {
        return Err(Fault::client(
            StatusCode::UNAUTHORIZED,
            "the UsernameToken's username is not the name of the token's C-key",
        ));
    }
    if !crate::authz::holds_web_service_role(state, admin.system.id, &admin.c_key.body).await? {
        return Err(Fault::client(
            StatusCode::FORBIDDEN,
            "the web services need a C-key holding the Web service role",
        ));
    }
    admin.require(Function::Employee, Level::Full)?;
    crate::licence::require_feature(state, &admin, LicenceFeature::WebServices).await?;
    let caller = WebServiceCaller {
        system_id: admin.system.id,
        c_key_id: admin.c_key.id,
        label: admin.actor.label.clone(),
        correlation_id: admin.actor.correlation_id.clone(),
        domains: admin
            .scope
            .domains
            .as_ref()
            .map(|d| d.iter().copied().collect()),
        home: admin.scope.home,
        sees_hidden_persons: admin.level(Function::KeyHolderDeactivate) >= Level::Full,
    };
    Ok((caller, token.map(|t| t.password_at)))
}

async fn serve(
    State(state): State<AppState>,
    Path(params): Path<BTreeMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let uri = parts.uri.clone();
    match serve_request(&state, &params, &uri, parts, body).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    }
}

async fn serve_request(
    state: &AppState,
    params: &BTreeMap<String, String>,
    uri: &Uri,
    parts: Parts,
    body: axum::body::Body,
) -> Result<Response, Fault> {
    let mount = params.get("mount").map(String::as_str).unwrap_or_default();
    let (Some(host), Some(plugin)) = (
        state.web_services.as_ref(),
        state.config.web_services.mounts.get(mount),
    ) else {
        return Err(Fault::client(
            StatusCode::NOT_FOUND,
            format!("no web service is mounted at /ws/{mount}"),
        ));
    };
    let limit = state.config.web_services.max_body_bytes;
    let body: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        Fault::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        )
    })?;
    let (caller, password_at) = if parts.method == Method::GET || parts.method == Method::HEAD {
        // Unauthenticated: nothing to hand over but the query.
        if !body.is_empty() {
            return Err(Fault::client(
                StatusCode::BAD_REQUEST,
                "a GET or HEAD request has no body",
            ));
        }
        (None, None)
    } else {
        let (c, at) = caller(&parts, state, &body).await?;
        (Some(c), at)
    };
    // Architecture invariant: credentials never reach the plugin: the Authorization header is
    // dropped (`forwarded_headers`) and a UsernameToken's password is cut out of the body.
    let body: Vec<u8> = match password_at {
        Some(at) if at.start <= at.end && at.end <= body.len() => {
            [&body[..at.start], &body[at.end..]].concat()
        }
        _ => body.to_vec(),
    };
    // The path below the mount, from the matched route (decoded), never from the raw URI.
    let below = params
        .get("rest")
        .map(|r| format!("/{r}"))
        .unwrap_or_else(|| "/".to_owned());
    let path = match uri.query() {
        Some(q) => format!("{below}?{q}"),
        None => below,
    };
    let answer = host
        .handle(
            plugin.clone(),
            caller,
            WebRequest {
                method: parts.method.as_str().to_owned(),
                path,
                headers: forwarded_headers(&parts.headers),
                body,
            },
        )
        .await
        .map_err(|reason| {
            tracing::warn!(plugin = %plugin, %reason, "a web service could not answer");
            Fault::server(format!(
                "the web service at /ws/{mount} is unavailable; try again later"
            ))
        })?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, answer.body).into_response();
    for (name, value) in answer.headers {
        let (Ok(name), Ok(value)) = (
            header::HeaderName::try_from(name.as_str()),
            header::HeaderValue::try_from(value.as_str()),
        ) else {
            continue;
        };
        // The gateway's own headers (security, length, cookies) are not the plugin's to set,
        // and it answers only as data: XML, JSON or text, never a page for a browser.
        let allowed = match name.as_str() {
            "content-type" => {
                let media = value.to_str().unwrap_or("").split(';').next().unwrap_or("");
                matches!(
                    media.trim().to_ascii_lowercase().as_str(),
                    "text/xml"
                        | "application/xml"
                        | "application/soap+xml"
                        | "text/plain"
                        | "application/json"
                )
            }
            "cache-control" | "etag" | "last-modified" | "content-language" | "allow" => true,
            _ => false,
        };
        if allowed {
            resp.headers_mut().insert(name, value);
        }
    }
    if !resp.headers().contains_key(header::CONTENT_TYPE) {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/octet-stream"),
        );
    }
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(header: &str) -> Vec<u8> {
        format!(
            "<s:Envelope xmlns:s=\"{SOAP11_NS}\" xmlns:w=\"{WSSE_NS}\"><s:Header>{header}</s:Header><s:Body><x/></s:Body></s:Envelope>"
        )
        .into_bytes()
    }

    #[test]
    fn reads_a_password_text_username_token() {
        let t = username_token(&envelope(
            "<w:Security s:mustUnderstand=\"1\"><w:UsernameToken><w:Username>hr</w:Username><w:Password>a&amp;b</w:Password></w:UsernameToken></w:Security>",
        ))
        .unwrap()
        .unwrap();
        assert_eq!((t.username.as_str(), t.password.as_str()), ("hr", "a&b"));
        let body = envelope(
            "<w:Security s:mustUnderstand=\"1\"><w:UsernameToken><w:Username>hr</w:Username><w:Password>a&amp;b</w:Password></w:UsernameToken></w:Security>",
        );
        assert_eq!(&body[t.password_at.clone()], b"a&amp;b");
    }

    #[test]
    fn no_security_header_is_no_token() {
        assert_eq!(username_token(&envelope("")).unwrap(), None);
        // A UsernameToken in the Body is not a credential.
        let body = format!(
            "<s:Envelope xmlns:s=\"{SOAP11_NS}\" xmlns:w=\"{WSSE_NS}\"><s:Body><w:Security><w:UsernameToken><w:Username>a</w:Username><w:Password>b</w:Password></w:UsernameToken></w:Security></s:Body></s:Envelope>"
        );
        assert_eq!(username_token(body.as_bytes()).unwrap(), None);
    }

    #[test]
    fn refuses_digests_doctypes_and_depth() {
        let digest = username_token(&envelope(
            "<w:Security><w:UsernameToken><w:Username>hr</w:Username><w:Password Type=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest\">x</w:Password></w:UsernameToken></w:Security>",
        ));
        assert!(digest.unwrap_err().contains("PasswordText"));
        let doctype = b"<!DOCTYPE x [<!ENTITY a \"b\">]><x/>";
        assert!(username_token(doctype).unwrap_err().contains("DOCTYPE"));
        let deep = envelope(&"<a>".repeat(40));
        assert!(username_token(&deep).unwrap_err().contains("too large"));
        let twice = envelope(
            "<w:Security><w:UsernameToken><w:Username>a</w:Username><w:Username>b</w:Username><w:Password>c</w:Password></w:UsernameToken></w:Security>",
        );
        assert!(
            username_token(&twice)
                .unwrap_err()
                .contains("more than one")
        );
    }
}
