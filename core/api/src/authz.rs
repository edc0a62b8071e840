//! Authentication (bearer API tokens) and authorisation (function levels, domains, hierarchy).

use axum::{extract::FromRequestParts, http::request::Parts};
use lockgate_model::{
    ObjectKind,
    ckey::{CKey, CKeyStatus},
    permission::{Function, Level, PermissionSet, Role, effective, fn_name},
    system::LockingSystem,
};
use lockgate_store::{Actor, Scope, Stored, objects::new_correlation_id, tokens::TokenPurpose};

use crate::{
    AppState,
    problem::{ApiResult, Problem},
};

/// The authenticated administrator of a request.
#[derive(Debug, Clone)]
pub struct Admin {
    pub system: LockingSystem,
    pub c_key: Stored<CKey>,
    pub permissions: PermissionSet,
    pub scope: Scope,
    pub actor: Actor,
    pub token_id: i64,
    /// When the presented token expires (a token it mints never outlives it).
    pub token_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The C-key whose administrator issued the token (the token's own C-key if self-issued).
    pub token_issued_by: i64,
    /// How the administrator logged in: with the C-key (an API token) or by SSO (a session).
    pub method: LoginMethod,
    /// The SSO session of the request, if it came with the session cookie.
    pub session_id: Option<i64>,
    /// That session's CSRF token (sent back in `X-CSRF-Token` on every changing request).
    pub csrf_token: Option<String>,
}

/// How an administrator logged in (manual §3.3, §8.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginMethod {
    /// C-key certificate and PIN; through the API, a token issued to the C-key.
    CKey,
    /// Single sign-on: a session opened by the identity provider's answer.
    Sso,
}

impl Admin {
    /// The write context of this administrator's request, at the application's clock.
    pub fn cx(&self, app: &lockgate_app::App) -> lockgate_app::WriteContext {
        app.context(&self.system, &self.scope, &self.actor)
    }

    /// The level this administrator holds for a function.
    pub fn level(&self, f: Function) -> Level {
        self.permissions.get(&f).copied().unwrap_or_default()
    }

    /// Require at least `level` on `f`.
    pub fn require(&self, f: Function, level: Level) -> ApiResult<()> {
        if self.level(f) >= level {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this needs permission '{}' at {level:?} or above; your roles grant {:?}",
                fn_name(f),
                self.level(f)
            ))
            .with_extra(serde_json::json!({ "function": fn_name(f), "required_level": level })))
        }
    }

    /// The domains within which this administrator *sees* objects of `kind`: their own,
    /// except that administrators of the default domain see every temporary access group
    /// (manual §8.2.5). Writes always use [`Admin::scope`].
    pub fn read_scope(&self, kind: ObjectKind) -> lockgate_store::Scope {
        let default_domain = self.system.default_domain_id;
        if kind == ObjectKind::TemporaryAccessGroup
            && default_domain.is_some()
            && self.scope.allows_exactly(default_domain)
        {
            lockgate_store::Scope::all()
        } else {
            self.scope.clone()
        }
    }

    /// Require at least `level` on the function governing a collection.
    pub fn require_kind(&self, kind: ObjectKind, level: Level) -> ApiResult<()> {
        self.require(kind.function(), level)
    }

    /// Refuses a C-key-only operation (`DOMAIN.md` §10, manual §8.10: local cylinder
    /// programming, copy key configuration, C-key PIN and unlock, ...) in an SSO session.
    pub fn require_c_key_login(&self, what: &str) -> ApiResult<()> {
        match self.method {
            LoginMethod::CKey => Ok(()),
            LoginMethod::Sso => Err(Problem::new(
                axum::http::StatusCode::FORBIDDEN,
                "c-key-login-required",
                format!("{what} needs a login with the C-key; an SSO session cannot do it"),
            )),
        }
    }

    /// Whether this C-key is the system's master C-key.
    pub fn is_master(&self) -> bool {
        self.c_key.body.kind == lockgate_model::ckey::CKeyKind::Master
    }
}

/// The session cookie's secret, if the request carries one.
fn session_cookie(parts: &Parts) -> Option<&str> {
    cookie(&parts.headers, crate::sso::SESSION_COOKIE)
}

/// The value of the cookie `name` a request carries.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// Authenticates an SSO session: the cookie names a live session (idle and absolute
/// lifetime); a changing request must carry the session's CSRF token in `X-CSRF-Token`.
/// Architecture invariant: a session is checked on every request like a token is (its C-key
/// usable, its roles read now), and SSO never authenticates a C-key-only operation
/// ([`Admin::require_c_key_login`]).
async fn session_auth(
    parts: &Parts,
    state: &AppState,
) -> Result<
    (
        lockgate_store::tokens::TokenAuth,
        Option<lockgate_store::sso::SessionAuth>,
    ),
    Problem,
> {
    let Some(secret) = session_cookie(parts) else {
        return Err(Problem::unauthorized(
            "an 'Authorization: Bearer <token>' header or an SSO session cookie is required",
        ));
    };
    let Some(config) = state.config.sso.as_ref() else {
        return Err(Problem::unauthorized(
            "single sign-on is not configured on this gateway",
        ));
    };
    let s = state
        .store
        .authenticate_session(secret, config.session_idle, state.app.now())
        .await?
        .ok_or_else(|| {
            Problem::unauthorized("the session is unknown, has ended or has expired; log in again")
        })?;
    let safe = matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if !safe {
        let sent = parts
            .headers
            .get(crate::sso::CSRF_HEADER)
            .and_then(|v| v.to_str().ok());
        let ok = sent.is_some_and(|t| {
            t.len() == s.csrf_token.len()
                && t.bytes()
                    .zip(s.csrf_token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if !ok {
            return Err(Problem::forbidden(
                "a changing request in an SSO session must carry the session's CSRF token in 'X-CSRF-Token' (GET /api/v1/session)",
            ));
        }
    }
    Ok((
        lockgate_store::tokens::TokenAuth {
            token_id: 0,
            system_id: s.system_id,
            c_key_id: s.c_key_id,
            issued_by: s.c_key_id,
            expires_at: Some(s.absolute_expires_at),
            purpose: lockgate_store::tokens::TokenPurpose::Api,
        },
        Some(s),
    ))
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Load an administrator's effective permissions from the roles on their C-key.
pub async fn load_permissions(
    state: &AppState,
    system_id: i64,
    c_key: &CKey,
) -> ApiResult<PermissionSet> {
    let mut roles: Vec<Role> = Vec::with_capacity(c_key.role_ids.len());
    for id in &c_key.role_ids {
        let r: Stored<Role> = state
            .store
            .get(system_id, ObjectKind::Role, *id, &Scope::all())
            .await?;
        roles.push(r.body);
    }
    let refs: Vec<&PermissionSet> = roles.iter().map(|r| &r.permissions).collect();
    Ok(effective(&refs))
}

/// Whether a C-key holds the pre-defined Web service role (SCIM provisioning needs it).
pub async fn holds_web_service_role(
    state: &AppState,
    system_id: i64,
    c_key: &CKey,
) -> ApiResult<bool> {
    for id in &c_key.role_ids {
        let r: Stored<Role> = state
            .store
            .get(system_id, ObjectKind::Role, *id, &Scope::all())
            .await?;
        if r.body.predefined == Some(lockgate_model::permission::PredefinedRole::WebService) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a C-key may act through a token: not blocked, lost or broken.
fn usable(c: &CKey) -> bool {
    !(c.blocked || matches!(c.status, CKeyStatus::Lost | CKeyStatus::Broken))
}

/// The domains a C-key administers: the master sees and assigns every domain (so no domain
/// can be hidden from it); others their `domain_ids`.
pub fn own_scope(c: &CKey) -> Scope {
    let own = c.domain_ids.iter().copied();
    if c.kind == lockgate_model::ckey::CKeyKind::Master {
        Scope::every_domain_from(own)
    } else {
        Scope::domains(own)
    }
}

/// The domains both scopes hold (where new objects go: the first's choice, if both hold it).
fn intersect(a: &Scope, b: &Scope) -> Scope {
    match (&a.domains, &b.domains) {
        (None, None) => a.clone(),
        (Some(x), None) | (None, Some(x)) => {
            let mut s = Scope::domains(x.iter().copied());
            s.home = a.home.filter(|h| x.contains(h)).or(s.home);
            s
        }
        (Some(x), Some(y)) => Scope::domains(x.intersection(y).copied()),
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, state, TokenPurpose::Api).await
    }
}

/// Authenticate a request for a token purpose: the REST API takes `api` tokens and SSO
/// sessions; SCIM (`/scim/v2`) takes only `scim` tokens.
/// Architecture invariant: a token is accepted only where its purpose says, on every request,
/// so a provisioning token never reaches the REST API and an API token never provisions.
pub async fn authenticate(
    parts: &Parts,
    state: &AppState,
    purpose: TokenPurpose,
) -> Result<Admin, Problem> {
    authenticate_with(parts, state, purpose, bearer(parts)).await
}

/// [`authenticate`] with the token presented some other way than the `Authorization` header
/// (a WS-Security UsernameToken's password); none: the header's, or the session.
pub async fn authenticate_with(
    parts: &Parts,
    state: &AppState,
    purpose: TokenPurpose,
    presented: Option<&str>,
) -> Result<Admin, Problem> {
    {
        let (auth, session) = match presented {
            Some(token) => (
                state.store.authenticate(token).await?.ok_or_else(|| {
                    Problem::unauthorized("the token is unknown, expired or revoked")
                })?,
                None,
            ),
            None if purpose == TokenPurpose::Api => session_auth(parts, state).await?,
            None => {
                return Err(Problem::unauthorized(format!(
                    "an 'Authorization: Bearer <token>' header with a token issued for '{}' is required",
                    purpose.as_str()
                )));
            }
        };
        if auth.purpose != purpose {
            return Err(Problem::forbidden(match auth.purpose {
                TokenPurpose::Scim => {
                    "this token is for SCIM provisioning (/scim/v2) only".to_string()
                }
                TokenPurpose::WebService => {
                    "this token is for the web services (/ws) only".to_string()
                }
                TokenPurpose::Api => format!(
                    "this endpoint needs a token issued for '{}' (POST /api/v1/tokens with \"purpose\": \"{}\")",
                    purpose.as_str(),
                    purpose.as_str()
                ),
            }));
        }
        let system = state.store.system(auth.system_id).await?;
        // Manual §6.2: a system locked for maintenance takes no changes but the unlock.
        // A SCIM search is a POST that reads.
        let read_only = matches!(
            parts.method,
            axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
        ) || (purpose == TokenPurpose::Scim
            && parts.uri.path().ends_with("/.search"));
        if !read_only
            && system.in_maintenance(state.app.now())
            && parts.uri.path() != crate::admin::MAINTENANCE_PATH
        {
            return Err(Problem::new(
                axum::http::StatusCode::LOCKED,
                "locked-for-maintenance",
                format!(
                    "the locking system is locked for maintenance since {}; nothing can be changed until it is unlocked",
                    system
                        .maintenance_from
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default()
                ),
            ));
        }
        let c_key: Stored<CKey> = state
            .store
            .get(
                auth.system_id,
                ObjectKind::CKey,
                auth.c_key_id,
                &Scope::all(),
            )
            .await
            .map_err(|_| Problem::unauthorized("the token's C-key no longer exists"))?;
        if !usable(&c_key.body) {
            return Err(Problem::forbidden(
                "the token's C-key is blocked, lost or broken",
            ));
        }
        let mut permissions = load_permissions(state, auth.system_id, &c_key.body).await?;
        let mut scope = own_scope(&c_key.body);
        // Architecture invariant: a token never carries more than its issuer holds *now*: its
        // rights and domains are capped at the issuer's on every request, so roles attached
        // to the token's C-key after issue, or taken from the issuer, take effect at once.
        if auth.issued_by != auth.c_key_id {
            let issuer: Stored<CKey> = state
                .store
                .get(
                    auth.system_id,
                    ObjectKind::CKey,
                    auth.issued_by,
                    &Scope::all(),
                )
                .await
                .map_err(|_| Problem::unauthorized("the token's issuer no longer exists"))?;
            if !usable(&issuer.body) {
                return Err(Problem::forbidden(
                    "the C-key that issued this token is blocked, lost or broken",
                ));
            }
            let theirs = load_permissions(state, auth.system_id, &issuer.body).await?;
            permissions = lockgate_model::permission::capped(&permissions, &theirs);
            scope = intersect(&scope, &own_scope(&issuer.body));
        }
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .map(str::to_string)
            .unwrap_or_else(new_correlation_id);
        let actor = Actor {
            c_key_id: Some(c_key.id),
            label: c_key.body.name.clone(),
            correlation_id: request_id,
        };
        Ok(Admin {
            system,
            c_key,
            permissions,
            scope,
            actor,
            token_id: auth.token_id,
            token_expires_at: auth.expires_at,
            token_issued_by: auth.issued_by,
            method: if session.is_some() {
                LoginMethod::Sso
            } else {
                LoginMethod::CKey
            },
            session_id: session.as_ref().map(|s| s.session_id),
            csrf_token: session.map(|s| s.csrf_token),
        })
    }
}
