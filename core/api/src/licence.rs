//! Licences through the API (`DOMAIN.md` §11, `docs/licences.md`): reading and installing the
//! signed licence file of the caller's locking system, and the feature gating of writes.
//!
//! Trust comes only from the configuration: a licence file is verified against the
//! [`LicenceConfig::trusted_keys`] each time it is installed *and* each time it is read back
//! from the database, never against a key carried by the file.
//!
//! Gating, per locking system:
//! * no licence installed and [`LicenceConfig::enforce`] off: open mode, every feature available;
//! * a licence installed (or `enforce` on): only the features the licence lists;
//! * an installed licence past its hard expiry: every write answers 403 `licence-locked`
//!   (except `PUT /api/v1/licence`, which installs a newer licence), see [`guard`];
//! * an installed file that no longer verifies (e.g. its key was removed from the
//!   configuration): no licensed feature is available until a verifiable licence is installed.

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{DateTime, Utc};
use lockgate_model::{
    FieldError, ObjectKind,
    permission::{Function, Level},
};
use lockgate_store::{Store, StoreError, licences::InstalledLicence};
use serde_json::{Value, json};

pub use lockgate_engine::licence::{
    Licence, LicenceError, LicenceFeature, LicenceState, MAX_LICENCE_FILE_BYTES, TrustedKeys,
    check_install, generate_key_pair_from_seed, locked_at_startup, sign, state, verify,
};

use crate::{
    AppState,
    authz::Admin,
    problem::{ApiResult, Problem},
};

/// Path of the licence endpoints.
pub const LICENCE_PATH: &str = "/api/v1/licence";

/// Problem type slug of a refused feature (`urn:lockgate:problem:licence-feature-missing`).
pub const FEATURE_MISSING: &str = "licence-feature-missing";

/// Problem type slug of a write refused after the hard expiry (`urn:lockgate:problem:licence-locked`).
pub const LOCKED: &str = "licence-locked";

/// The `[licence]` configuration the API works with.
#[derive(Debug, Clone, Default)]
pub struct LicenceConfig {
    /// The only keys licence files are verified against.
    pub trusted_keys: TrustedKeys,
    /// Gate features even when no licence is installed (default: open mode).
    pub enforce: bool,
}

/// What is installed for a system, judged against the configuration.
#[derive(Debug, Clone)]
pub enum Installed {
    /// No licence row.
    Nothing,
    /// A file that verifies against the trusted keys.
    Verified {
        licence: Licence,
        record: InstalledLicence,
    },
    /// A file that does not (any more) verify against the trusted keys.
    Unverifiable {
        error: LicenceError,
        record: InstalledLicence,
    },
}

/// The licence situation of one system at one instant.
#[derive(Debug, Clone)]
pub struct LicenceStatus {
    pub installed: Installed,
    pub enforce: bool,
    pub now: DateTime<Utc>,
}

/// The licence situation of a system: its row, verified against the trusted keys.
pub async fn load_status(
    store: &Store,
    config: &LicenceConfig,
    system_id: i64,
    now: DateTime<Utc>,
) -> Result<LicenceStatus, StoreError> {
    // Architecture invariant: expiry is judged at the latest time the gateway has seen, so
    // setting the clock back never revives an expired licence.
    let now = match store.clock_high_water(system_id).await? {
        Some(seen) if seen > now => seen,
        _ => now,
    };
    let installed = match store.installed_licence_record(system_id).await? {
        None => Installed::Nothing,
        Some(record) => match verify(record.file.as_bytes(), &config.trusted_keys) {
            Ok(licence) => Installed::Verified { licence, record },
            Err(error) => Installed::Unverifiable { error, record },
        },
    };
    Ok(LicenceStatus {
        installed,
        enforce: config.enforce,
        now,
    })
}

impl LicenceStatus {
    /// The verified licence, if any.
    pub fn licence(&self) -> Option<&Licence> {
        match &self.installed {
            Installed::Verified { licence, .. } => Some(licence),
            _ => None,
        }
    }

    /// The engine's state of the verified licence (`Missing` when none verifies).
    pub fn state(&self) -> LicenceState {
        state(self.licence(), self.now)
    }

    /// Open mode: nothing installed and not enforced, so every feature is available.
    pub fn open_mode(&self) -> bool {
        matches!(self.installed, Installed::Nothing) && !self.enforce
    }

    /// The hard expiry when the licence is past it (the system is locked).
    pub fn locked_since(&self) -> Option<DateTime<Utc>> {
        match self.state() {
            LicenceState::HardExpired { since } => Some(since),
            _ => None,
        }
    }

    /// Whether `feature` may be used now; a 403 problem naming it when not.
    pub fn check(&self, feature: LicenceFeature) -> ApiResult<()> {
        if let Some(since) = self.locked_since() {
            return Err(locked_problem(since));
        }
        match &self.installed {
            Installed::Nothing if !self.enforce => Ok(()),
            Installed::Nothing => Err(feature_problem(
                feature,
                format!(
                    "no licence is installed and licence enforcement is on: the feature {feature} is not available"
                ),
            )),
            Installed::Unverifiable { error, .. } => Err(feature_problem(
                feature,
                format!(
                    "the installed licence does not verify against the trusted licence keys ({error}): the feature {feature} is not available"
                ),
            )),
            Installed::Verified { licence, .. } if licence.has(feature) => Ok(()),
            Installed::Verified { licence, .. } => Err(feature_problem(
                feature,
                format!(
                    "the licence (number {}) does not include the feature {feature}",
                    licence.number
                ),
            )),
        }
    }

    /// The features usable now.
    pub fn available(&self) -> Vec<LicenceFeature> {
        LicenceFeature::ALL
            .into_iter()
            .filter(|f| self.check(*f).is_ok())
            .collect()
    }

    /// The JSON document of `GET /api/v1/licence`.
    pub fn to_json(&self, system_id: i64, system_name: &str) -> Value {
        let (state_name, since) = match (&self.installed, self.state()) {
            (Installed::Unverifiable { .. }, _) => ("invalid", None),
            (_, LicenceState::Valid) => ("valid", None),
            (_, LicenceState::SoftExpired { since }) => ("soft_expired", Some(since)),
            (_, LicenceState::HardExpired { since }) => ("hard_expired", Some(since)),
            (_, LicenceState::Missing) => ("missing", None),
        };
        let record = match &self.installed {
            Installed::Nothing => None,
            Installed::Verified { record, .. } | Installed::Unverifiable { record, .. } => {
                Some(record)
            }
        };
        let mut doc = json!({
            "system_id": system_id,
            "system_name": system_name,
            "state": state_name,
            "since": since,
            "enforce": self.enforce,
            "open_mode": self.open_mode(),
            "features": self.available(),
            "licence": self.licence(),
            "number": record.map(|r| r.number),
            "installed_at": record.map(|r| r.installed_at),
        });
        if let Installed::Unverifiable { error, .. } = &self.installed {
            doc["error"] = Value::String(error.to_string());
        }
        doc
    }
}

/// 403 `licence-feature-missing`, naming the feature.
fn feature_problem(feature: LicenceFeature, detail: String) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, FEATURE_MISSING, detail)
        .with_extra(json!({ "feature": feature.as_str() }))
}

/// 403 `licence-locked`: the licence is past its hard expiry.
fn locked_problem(since: DateTime<Utc>) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        LOCKED,
        format!(
            "the licence expired (hard expiry) at {since}: the system is locked; install a newer licence with PUT {LICENCE_PATH}"
        ),
    )
    .with_extra(json!({ "hard_expiry": since }))
}

/// The licence situation of the caller's system now.
pub async fn status_of(state: &AppState, system_id: i64) -> ApiResult<LicenceStatus> {
    let now = state.store.record_clock(system_id, Utc::now()).await?;
    Ok(load_status(&state.store, &state.config.licence, system_id, now).await?)
}

/// Refuse (403 `licence-feature-missing`, naming the feature) when the caller's system may
/// not use `feature` now; 403 `licence-locked` after the hard expiry.
pub async fn require_feature(
    state: &AppState,
    admin: &Admin,
    feature: LicenceFeature,
) -> ApiResult<()> {
    status_of(state, admin.system.id).await?.check(feature)
}

/// Whether a JSON value holds a non-null `validity.<name>`.
fn validity_part<'a>(v: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    v?.get("validity")?.get(name).filter(|x| !x.is_null())
}

/// The features a create (`before` = None) or update of an object of `kind` needs.
pub fn features_for_write(
    kind: ObjectKind,
    before: Option<&Value>,
    after: &Value,
) -> Vec<LicenceFeature> {
    match kind {
        ObjectKind::Domain => vec![LicenceFeature::Domains],
        ObjectKind::AccessProfile => vec![LicenceFeature::AccessProfiles],
        ObjectKind::TemporaryAccessGroup => vec![LicenceFeature::TemporaryAccessGroups],
        ObjectKind::CylinderGroup => vec![LicenceFeature::CylinderGroups],
        // Manual §8.13: remote PDs are what the remote feature licenses.
        ObjectKind::RemotePd => vec![LicenceFeature::Remote],
        ObjectKind::Key => {
            // Only setting or changing PIN validation / revalidation needs the feature, so a
            // key configured before a licence was installed can still be edited otherwise.
            let mut out = Vec::new();
            for (name, feature) in [
                ("pin", LicenceFeature::PinValidation),
                ("revalidation", LicenceFeature::Revalidation),
            ] {
                let new = validity_part(Some(after), name);
                if new.is_some() && new != validity_part(before, name) {
                    out.push(feature);
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// Licence check of a create (`before` = None) or update of an object: the features its
/// kind (or, for keys, its validity) needs.
pub async fn gate_write(
    state: &AppState,
    admin: &Admin,
    kind: ObjectKind,
    before: Option<&Value>,
    after: &Value,
) -> ApiResult<()> {
    let needed = features_for_write(kind, before, after);
    if needed.is_empty() {
        return Ok(());
    }
    let status = status_of(state, admin.system.id).await?;
    for feature in needed {
        status.check(feature)?;
    }
    Ok(())
}

/// `GET /api/v1/licence`.
async fn get_licence(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    admin.require(Function::SystemSettings, Level::View)?;
    let status = status_of(&state, admin.system.id).await?;
    Ok(Json(status.to_json(admin.system.id, &admin.system.name)).into_response())
}

/// A 422 (or 409/413) problem for a refused licence file.
pub fn install_problem(e: &LicenceError) -> Problem {
    let (status, slug, field) = match e {
        LicenceError::TooLarge { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "licence-too-large", "body")
        }
        LicenceError::MalformedFile(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "licence-malformed",
            "body",
        ),
        LicenceError::Base64 { field, .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "licence-malformed",
            *field,
        ),
        LicenceError::SignatureLength { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "licence-malformed",
            "signature",
        ),
        LicenceError::UnknownKeyId(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "licence-unknown-key",
            "key_id",
        ),
        LicenceError::BadSignature { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "licence-bad-signature",
            "signature",
        ),
        LicenceError::MalformedPayload(_) | LicenceError::InvalidPayload(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "licence-invalid-payload",
            "payload",
        ),
        LicenceError::KeyIdMismatch { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "licence-invalid-payload",
            "key_id",
        ),
        LicenceError::SystemMismatch { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "licence-other-system",
            "system_name",
        ),
        LicenceError::NotNewer { .. } => (StatusCode::CONFLICT, "licence-not-newer", "number"),
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "licence-refused", "body"),
    };
    let mut p = Problem::new(status, slug, e.to_string()).with_errors(vec![FieldError {
        field: field.into(),
        message: e.to_string(),
    }]);
    match e {
        LicenceError::NotNewer { current, new } => {
            p = p.with_extra(json!({ "installed_number": current, "offered_number": new }));
        }
        LicenceError::SystemMismatch { current, new } => {
            p = p.with_extra(json!({ "system_name": current, "licence_system_name": new }));
        }
        _ => {}
    }
    p
}

/// Verify `file` against the configured keys and check it may be installed for the system
/// named `system_name` whose installed licence number is `installed_number`.
pub fn check_file(
    file: &[u8],
    trusted: &TrustedKeys,
    system_name: &str,
    installed_number: Option<i64>,
) -> Result<Licence, LicenceError> {
    let licence = verify(file, trusted)?;
    if licence.system_name != system_name {
        return Err(LicenceError::SystemMismatch {
            current: system_name.to_owned(),
            new: licence.system_name,
        });
    }
    if let Some(current) = installed_number {
        let current = u64::try_from(current).unwrap_or(0);
        if licence.number <= current {
            return Err(LicenceError::NotNewer {
                current,
                new: licence.number,
            });
        }
    }
    Ok(licence)
}

/// Install a checked licence file; the store re-checks the number in its transaction.
pub async fn install(
    store: &Store,
    trusted: &TrustedKeys,
    system_id: i64,
    system_name: &str,
    file: &[u8],
    actor: &lockgate_store::Actor,
) -> ApiResult<Licence> {
    let installed = store.installed_licence_record(system_id).await?;
    let licence = check_file(
        file,
        trusted,
        system_name,
        installed.as_ref().map(|r| r.number),
    )
    .map_err(|e| install_problem(&e))?;
    let number = i64::try_from(licence.number)
        .map_err(|_| Problem::field("number", format!("must be at most {}", i64::MAX)))?;
    let text = std::str::from_utf8(file)
        .map_err(|_| Problem::field("body", "the licence file is not UTF-8"))?;
    match store.install_licence(system_id, text, number, actor).await {
        Ok(_) => Ok(licence),
        Err(StoreError::Conflict { field, .. }) if field == "number" => {
            let current = store
                .installed_licence_record(system_id)
                .await?
                .map_or(0, |r| u64::try_from(r.number).unwrap_or(0));
            Err(install_problem(&LicenceError::NotNewer {
                current,
                new: licence.number,
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// `PUT /api/v1/licence`: the body is the signed licence file.
async fn put_licence(
    State(state): State<AppState>,
    admin: Admin,
    body: Bytes,
) -> ApiResult<Response> {
    admin.require(Function::SystemSettings, Level::Full)?;
    let licence = install(
        &state.store,
        &state.config.licence.trusted_keys,
        admin.system.id,
        &admin.system.name,
        &body,
        &admin.actor,
    )
    .await?;
    tracing::info!(
        system_id = admin.system.id,
        number = licence.number,
        key_id = %licence.key_id,
        by = admin.c_key.id,
        "licence installed"
    );
    let status = status_of(&state, admin.system.id).await?;
    Ok(Json(status.to_json(admin.system.id, &admin.system.name)).into_response())
}

/// The licence routes.
pub fn routes() -> Router<AppState> {
    Router::new().route(LICENCE_PATH, get(get_licence).put(put_licence))
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware on every request: after the hard expiry every write (other than installing a
/// licence) answers 403 `licence-locked`; `PATCH /api/v1/system/settings` turning on
/// flexible revalidation and `POST /api/v1/bulk/key-validity` setting PIN validation or
/// revalidation need those features. Requests it cannot attribute to a system (no or a bad
/// token) pass on unchanged; the endpoint answers them.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match guard_inner(&state, req).await {
        Ok(req) => next.run(req).await,
        Err(problem) => problem.into_response(),
    }
}

async fn guard_inner(state: &AppState, req: Request) -> ApiResult<Request> {
    let method = req.method().clone();
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
        || !req.uri().path().starts_with("/api/")
        || req.uri().path() == LICENCE_PATH
    {
        return Ok(req);
    }
    let Some(token) = bearer(&req) else {
        return Ok(req);
    };
    let Ok(Some(auth)) = state.store.authenticate(token).await else {
        return Ok(req);
    };
    let status = status_of(state, auth.system_id).await?;
    if let Some(since) = status.locked_since() {
        return Err(locked_problem(since));
    }
    let path = req.uri().path();
    let settings = method == Method::PATCH && path == "/api/v1/system/settings";
    let bulk_validity = method == Method::POST && path == "/api/v1/bulk/key-validity";
    if !(settings || bulk_validity) || status.open_mode() {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!(
                    "the request body exceeds {} bytes",
                    state.config.max_body_bytes
                ),
            )
        })?;
    // Malformed bodies pass on: the endpoint reports them.
    if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
        if settings {
            if v.get("flexible_revalidation") == Some(&Value::Bool(true)) {
                let system = state.store.system(auth.system_id).await?;
                if !system.settings.flexible_revalidation {
                    status.check(LicenceFeature::FlexibleRevalidation)?;
                }
            }
        } else {
            for feature in features_for_write(ObjectKind::Key, None, &v) {
                status.check(feature)?;
            }
        }
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// A system the start-up check refuses to serve.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(
        "locking system {system_id} ('{system_name}'): licence number {number} expired (hard expiry) at {since}; the system is locked. Install a newer licence with `lockgate licence install FILE --system {system_id}`"
    )]
    Locked {
        system_id: i64,
        system_name: String,
        number: u64,
        since: DateTime<Utc>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Start-up check over every locking system: refuses when an installed licence is past its
/// hard expiry ([`locked_at_startup`]); logs a warning for a soft-expired licence and an
/// error for an installed file that no longer verifies against the trusted keys.
pub async fn check_at_startup(
    store: &Store,
    config: &LicenceConfig,
    now: DateTime<Utc>,
) -> Result<(), StartupError> {
    for system in store.systems().await? {
        let status = load_status(store, config, system.id, now).await?;
        match (&status.installed, status.state()) {
            (Installed::Verified { licence, .. }, st) if locked_at_startup(st) => {
                return Err(StartupError::Locked {
                    system_id: system.id,
                    system_name: system.name,
                    number: licence.number,
                    since: status.locked_since().unwrap_or(now),
                });
            }
            (Installed::Verified { licence, .. }, LicenceState::SoftExpired { since }) => {
                tracing::warn!(
                    system_id = system.id,
                    system = %system.name,
                    number = licence.number,
                    soft_expiry = %since,
                    hard_expiry = %licence.hard_expiry.map_or_else(|| "none".to_owned(), |h| h.to_rfc3339()),
                    "the licence is past its soft expiry: install a newer licence before the hard expiry locks the system"
                );
            }
            (Installed::Unverifiable { error, record }, _) => {
                tracing::error!(
                    system_id = system.id,
                    system = %system.name,
                    number = record.number,
                    error = %error,
                    "the installed licence does not verify against [licence] trusted_keys: no licensed feature is available"
                );
            }
            (Installed::Nothing, _) if config.enforce => {
                tracing::warn!(
                    system_id = system.id,
                    system = %system.name,
                    "no licence is installed and [licence] enforce is on: licensed features are refused"
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// base64url without padding, as licence files and trusted keys use it.
const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// A signing key seed as a key-file line: `<key_id>:<base64url seed>`.
pub fn signing_key_line(key_id: &str, seed: &[u8; 32]) -> String {
    use base64::Engine as _;
    format!("{key_id}:{}", B64.encode(seed))
}

/// Parse a key file: `<key_id>:<base64url seed>` or a bare base64url seed (then the key id
/// is `None`). Blank lines and lines starting with `#` are ignored.
pub fn parse_signing_key(text: &str) -> Result<(Option<String>, [u8; 32]), String> {
    use base64::Engine as _;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("the key file is empty")?;
    let (key_id, seed) = match line.split_once(':') {
        Some((id, seed)) => (Some(id.trim().to_owned()), seed.trim()),
        None => (None, line),
    };
    let bytes = B64
        .decode(seed)
        .map_err(|e| format!("the private seed is not valid base64url: {e}"))?;
    let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "the private seed is {} bytes; an Ed25519 seed is 32 bytes",
            bytes.len()
        )
    })?;
    Ok((key_id, seed))
}

/// A new key pair for a trusted-key entry: the public `<key_id>:<base64url public key>`
/// entry for `[licence] trusted_keys` and the private `<key_id>:<base64url seed>` key-file line.
pub fn key_pair_lines(key_id: &str, seed: [u8; 32]) -> Result<(String, String), LicenceError> {
    let (_, public) = generate_key_pair_from_seed(seed);
    let entry = format!("{key_id}:{public}");
    TrustedKeys::from_config([&entry])?;
    Ok((entry, signing_key_line(key_id, &seed)))
}

/// What `lockgate licence sign` puts into a licence (times as RFC 3339 text).
#[derive(Debug, Clone, Default)]
pub struct SignRequest {
    pub system_name: String,
    pub number: u64,
    /// Comma-separated feature names.
    pub features: String,
    /// Default: now.
    pub issued_at: Option<String>,
    pub soft_expiry: Option<String>,
    pub hard_expiry: Option<String>,
    pub max_keys: Option<u32>,
    pub max_cylinders: Option<u32>,
    /// Default: the key id of the key file.
    pub key_id: Option<String>,
}

fn rfc3339(name: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    v.map(|t| {
        DateTime::parse_from_rfc3339(t.trim())
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| {
                format!("{name} '{t}' is not an RFC 3339 instant such as 2027-01-01T00:00:00Z: {e}")
            })
    })
    .transpose()
}

/// Sign a licence with the key of a key file (see [`parse_signing_key`]) and return the
/// licence file text, checked as an installation would check it (key id, dates).
pub fn sign_with_key_file(key_file: &str, req: SignRequest) -> Result<String, String> {
    let (file_id, seed) = parse_signing_key(key_file)?;
    let key_id = req
        .key_id
        .or(file_id)
        .ok_or("the key file holds no key id; name it with --key-id")?;
    let licence = Licence {
        system_name: req.system_name,
        number: req.number,
        issued_at: rfc3339("issued_at", req.issued_at.as_deref())?.unwrap_or_else(Utc::now),
        soft_expiry: rfc3339("soft_expiry", req.soft_expiry.as_deref())?,
        hard_expiry: rfc3339("hard_expiry", req.hard_expiry.as_deref())?,
        features: parse_features(&req.features)?,
        max_keys: req.max_keys,
        max_cylinders: req.max_cylinders,
        key_id: key_id.clone(),
    };
    let (signing, public) = generate_key_pair_from_seed(seed);
    let trusted =
        TrustedKeys::from_config([format!("{key_id}:{public}")]).map_err(|e| e.to_string())?;
    let file = sign(&licence, &signing, &key_id);
    verify(file.as_bytes(), &trusted).map_err(|e| e.to_string())?;
    Ok(file)
}

/// Parse a comma-separated feature list (`remote,domains`); errors name the unknown entry.
pub fn parse_features(list: &str) -> Result<std::collections::BTreeSet<LicenceFeature>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| {
            LicenceFeature::ALL
                .into_iter()
                .find(|x| x.as_str() == f)
                .ok_or_else(|| {
                    let known: Vec<&str> = LicenceFeature::ALL.iter().map(|x| x.as_str()).collect();
                    format!("unknown feature '{f}'; known: {}", known.join(", "))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_for_key_writes() {
        let pin = json!({"validity": {"pin": {"code_length": 4}}});
        let plain = json!({"validity": {"activation": "always"}});
        assert_eq!(
            features_for_write(ObjectKind::Key, None, &pin),
            [LicenceFeature::PinValidation]
        );
        assert!(features_for_write(ObjectKind::Key, None, &plain).is_empty());
        // Unchanged PIN validation needs no licence on update.
        assert!(features_for_write(ObjectKind::Key, Some(&pin), &pin).is_empty());
        assert!(features_for_write(ObjectKind::Key, Some(&pin), &plain).is_empty());
        let reval = json!({"validity": {"revalidation": {"interval_hours": 24}, "pin": null}});
        assert_eq!(
            features_for_write(ObjectKind::Key, Some(&plain), &reval),
            [LicenceFeature::Revalidation]
        );
        assert_eq!(
            features_for_write(ObjectKind::AccessProfile, None, &plain),
            [LicenceFeature::AccessProfiles]
        );
        assert!(features_for_write(ObjectKind::Cylinder, None, &plain).is_empty());
    }

    #[test]
    fn key_file_and_feature_parsing() {
        let line = signing_key_line("ops", &[7; 32]);
        assert_eq!(
            parse_signing_key(&format!("# comment\n\n{line}\n")).unwrap(),
            (Some("ops".to_owned()), [7; 32])
        );
        let bare = line.trim_start_matches("ops:");
        assert_eq!(parse_signing_key(bare).unwrap(), (None, [7; 32]));
        assert!(
            parse_signing_key("ops:AAAA")
                .unwrap_err()
                .contains("3 bytes")
        );
        assert!(parse_signing_key("").is_err());
        assert_eq!(
            parse_features(" remote, access_profiles ,").unwrap(),
            [LicenceFeature::Remote, LicenceFeature::AccessProfiles]
                .into_iter()
                .collect()
        );
        assert!(parse_features("").unwrap().is_empty());
        assert!(
            parse_features("remote,teleport")
                .unwrap_err()
                .contains("teleport")
        );
    }

    #[test]
    fn sign_with_key_file_round_trip() {
        let (entry, private) = key_pair_lines("ops", [9; 32]).unwrap();
        assert!(entry.starts_with("ops:"));
        assert!(key_pair_lines("bad id", [9; 32]).is_err());
        let req = SignRequest {
            system_name: "Main site".into(),
            number: 3,
            features: "remote,domains".into(),
            soft_expiry: Some("2030-01-01T00:00:00Z".into()),
            hard_expiry: Some("2030-02-01T00:00:00+01:00".into()),
            ..SignRequest::default()
        };
        let file = sign_with_key_file(&private, req.clone()).unwrap();
        let trusted = TrustedKeys::from_config([entry]).unwrap();
        let lic = verify(file.as_bytes(), &trusted).unwrap();
        assert_eq!((lic.number, lic.key_id.as_str()), (3, "ops"));
        assert!(lic.has(LicenceFeature::Domains));
        let bad_dates = SignRequest {
            soft_expiry: Some("2031-01-01T00:00:00Z".into()),
            ..req.clone()
        };
        assert!(
            sign_with_key_file(&private, bad_dates)
                .unwrap_err()
                .contains("soft_expiry")
        );
        let bad_time = SignRequest {
            hard_expiry: Some("next year".into()),
            ..req
        };
        assert!(
            sign_with_key_file(&private, bad_time)
                .unwrap_err()
                .contains("hard_expiry")
        );
    }

    #[test]
    fn open_mode_allows_everything_and_enforce_nothing() {
        let mut status = LicenceStatus {
            installed: Installed::Nothing,
            enforce: false,
            now: Utc::now(),
        };
        assert!(status.open_mode());
        assert_eq!(status.available().len(), LicenceFeature::ALL.len());
        status.enforce = true;
        assert!(status.available().is_empty());
        let p = status.check(LicenceFeature::Domains).unwrap_err();
        assert_eq!(p.status, 403);
        assert_eq!(p.type_, "urn:lockgate:problem:licence-feature-missing");
        assert!(p.detail.contains("domains"), "{}", p.detail);
    }
}
