//! Remote PD identity endpoints: one-time enrolment codes on a PD's record, the PD's own
//! enrolment with a certificate signing request (authenticated by the code alone), the
//! gateway CA's certificate, a PD's certificates, uploading one issued elsewhere,
//! revocation, and a PD's status (liveness, firmware, certificate expiry). Each calls the application layer.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use lockgate_engine::licence::LicenceFeature;
use lockgate_model::permission::{Function, Level};
use lockgate_store::devices::PdCertificate;
use serde::Deserialize;
use serde_json::json;

use crate::{
    AppState,
    authz::Admin,
    extract::{JsonBody, PathId},
    problem::{ApiResult, Problem},
};

/// Longest enrolment code or reason accepted, characters.
const MAX_SHORT_TEXT: usize = 200;

fn certificate_view(c: &PdCertificate) -> serde_json::Value {
    json!({
        "id": c.id,
        "pd_id": c.pd_id,
        "serial": c.serial,
        "fingerprint": c.fingerprint,
        "source": c.source,
        "not_before": c.not_before,
        "not_after": c.not_after,
        "created_at": c.created_at,
        "revoked_at": c.revoked_at,
        "revocation_reason": c.revocation_reason,
        "certificate_pem": c.certificate_pem,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeRequest {
    /// Minutes the code is valid (default 60).
    #[serde(default = "default_code_minutes")]
    valid_minutes: i64,
}

fn default_code_minutes() -> i64 {
    60
}

/// `POST /api/v1/remote-pds/{id}/enrolment-code` (body `{}` or `{"valid_minutes": N}`): a
/// one-time code, shown once.
async fn create_code(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    JsonBody(req): JsonBody<CodeRequest>,
) -> ApiResult<Response> {
    // A PD credential outlives the session that would make it.
    admin.require_c_key_login("creating a PD enrolment code")?;
    admin.require(Function::RemotePds, Level::Full)?;
    crate::licence::require_feature(&state, &admin, LicenceFeature::Remote).await?;
    let minutes = req.valid_minutes;
    let code = state
        .app
        .create_enrolment_code(&admin.cx(&state.app), id, minutes)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "pd_id": code.pd_id,
            "code": code.code,
            "expires_at": code.expires_at,
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolRequest {
    code: String,
    csr_pem: String,
}

/// `POST /api/v1/pd-enrolment`: a PD enrols with its one-time code and a PEM certificate
/// signing request; it gets its certificate and the gateway CA's. No token: the code is
/// the credential, and its PD is the certificate's identity.
async fn enrol(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<EnrolRequest>,
) -> ApiResult<Response> {
    if req.code.chars().count() > MAX_SHORT_TEXT {
        return Err(Problem::field("code", "too long to be an enrolment code"));
    }
    if req.csr_pem.len() > lockgate_devices::ca::MAX_PEM_BYTES {
        return Err(Problem::field(
            "csr_pem",
            format!("larger than {} bytes", lockgate_devices::ca::MAX_PEM_BYTES),
        ));
    }
    let enrolled = state.app.enrol_device(&req.code, &req.csr_pem).await?;
    let c = &enrolled.certificate;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "pd_id": c.pd_id,
            "serial": c.serial,
            "fingerprint": c.fingerprint,
            "not_after": c.not_after,
            "certificate_pem": c.certificate_pem,
            "ca_pem": enrolled.ca_pem,
            "krl_public_key": state.app.pd_trust_anchors()?.1,
        })),
    )
        .into_response())
}

/// `GET /api/v1/pd-ca`: the gateway CA's certificate (what PDs trust the listener by) and
/// the public key PDs verify key revocation lists with.
async fn ca(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    admin.require(Function::RemotePds, Level::View)?;
    let (pem, krl) = state.app.pd_trust_anchors()?;
    Ok(Json(json!({ "certificate_pem": pem, "krl_public_key": krl })).into_response())
}

/// `GET /api/v1/pd-krl`: the caller's system's signed key revocation list, as PDs get it,
/// with its content.
async fn krl(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    admin.require(Function::RemotePds, Level::View)?;
    let (list, signed) = state.app.key_revocation_list(admin.system.id).await?;
    let (_, public_key) = state.app.pd_trust_anchors()?;
    Ok(Json(json!({ "list": list, "signed": signed, "public_key": public_key })).into_response())
}

/// `GET /api/v1/remote-pds/{id}/certificates`.
async fn list(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require(Function::RemotePds, Level::View)?;
    let certs = state.app.pd_certificates(&admin.cx(&state.app), id).await?;
    let items: Vec<_> = certs.iter().map(certificate_view).collect();
    Ok(Json(json!({ "items": items })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadRequest {
    certificate_pem: String,
}

/// `POST /api/v1/remote-pds/{id}/certificates`: a PD certificate issued elsewhere.
async fn upload(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    JsonBody(req): JsonBody<UploadRequest>,
) -> ApiResult<Response> {
    admin.require_c_key_login("uploading a PD certificate")?;
    admin.require(Function::RemotePds, Level::Full)?;
    crate::licence::require_feature(&state, &admin, LicenceFeature::Remote).await?;
    let c = state
        .app
        .upload_pd_certificate(&admin.cx(&state.app), id, &req.certificate_pem)
        .await?;
    Ok((StatusCode::CREATED, Json(certificate_view(&c))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    /// One certificate; absent: every certificate of the PD.
    #[serde(default)]
    certificate_id: Option<i64>,
    reason: String,
}

/// `POST /api/v1/remote-pds/{id}/certificates/revoke`.
async fn revoke(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    JsonBody(req): JsonBody<RevokeRequest>,
) -> ApiResult<Response> {
    admin.require(Function::RemotePds, Level::Full)?;
    let n = state
        .app
        .revoke_pd_certificates(&admin.cx(&state.app), id, req.certificate_id, &req.reason)
        .await?;
    Ok(Json(json!({ "revoked": n })).into_response())
}

/// `GET /api/v1/remote-pds/{id}/status`: online, last seen, the firmware it reported, when
/// its newest unrevoked certificate expires.
async fn status(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
) -> ApiResult<Response> {
    admin.require(Function::RemotePds, Level::View)?;
    let certs = state.app.pd_certificates(&admin.cx(&state.app), id).await?;
    let live = state.store.pd_liveness(admin.system.id, id).await?;
    let expires = certs
        .iter()
        .filter(|c| c.revoked_at.is_none())
        .map(|c| c.not_after)
        .max();
    Ok(Json(json!({
        "pd_id": id,
        "online": live.as_ref().is_some_and(|l| l.online),
        "last_seen": live.as_ref().map(|l| l.last_seen),
        "offline_since": live.as_ref().and_then(|l| l.offline_since),
        "firmware": live.as_ref().and_then(|l| l.firmware.clone()),
        "bootloader": live.as_ref().and_then(|l| l.bootloader.clone()),
        "certificate_expires_at": expires,
        "krl_issued_at": live.as_ref().and_then(|l| l.krl_issued_at),
        "krl_age_minutes": live
            .as_ref()
            .and_then(|l| l.krl_issued_at)
            .map(|at| (state.app.now() - at).num_minutes().max(0)),
    }))
    .into_response())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/remote-pds/{id}/status", get(status))
        .route("/api/v1/remote-pds/{id}/enrolment-code", post(create_code))
        .route(
            "/api/v1/remote-pds/{id}/certificates",
            get(list).post(upload),
        )
        .route("/api/v1/remote-pds/{id}/certificates/revoke", post(revoke))
        .route("/api/v1/pd-ca", get(ca))
        .route("/api/v1/pd-krl", get(krl))
        .route("/api/v1/pd-enrolment", post(enrol))
}
