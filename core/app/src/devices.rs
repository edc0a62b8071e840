//! Remote PD identity use cases: one-time enrolment codes, enrolment from a certificate
//! signing request, certificates issued elsewhere, and revocation. Each writes its change
//! and its event together (the store's transactions).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use lockgate_devices::ca::{CertificateAuthority, CertificateFacts, DeviceSubject};
use lockgate_model::{ObjectKind, validation::ValidationErrors};
use lockgate_store::{
    StoreError,
    devices::{CertificateSource, NewPdCertificate, PdCertificate},
};
use rustls_pki_types::CertificateDer;

use crate::{App, AppError, Result, WriteContext};

/// Longest validity of an enrolment code.
pub const MAX_ENROLMENT_CODE_MINUTES: i64 = 7 * 24 * 60;

/// What the gateway's PD identity needs: its CA, the other issuers whose device certificates
/// administrators may upload, and how long issued certificates last.
#[derive(Debug)]
pub struct PdAuthority {
    pub ca: CertificateAuthority,
    /// Issuers (CA certificates) besides the gateway's own whose PD certificates may be
    /// uploaded (the vendor content server's, say).
    pub trusted_issuers: Vec<CertificateDer<'static>>,
    /// Days an issued PD certificate is valid.
    pub certificate_days: u32,
}

impl PdAuthority {
    /// Every issuer a PD certificate may chain to: the gateway's CA first.
    pub fn issuers(&self) -> Vec<CertificateDer<'static>> {
        let mut all = vec![self.ca.certificate_der().clone()];
        all.extend(self.trusted_issuers.iter().cloned());
        all
    }
}

/// A one-time enrolment code, shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentCode {
    pub pd_id: i64,
    /// The code in groups of four characters (a PD accepts it with or without the dashes).
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

/// What an enrolled PD receives.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub certificate: PdCertificate,
    /// The gateway CA's certificate (the PD trusts the listener by it).
    pub ca_pem: String,
}

fn new_code() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b)
        .map_err(|e| AppError::SettingOff(format!("no randomness for a code: {e}")))?;
    let hex = hex::encode_upper(b);
    Ok(hex
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("-"))
}

fn new_certificate(facts: CertificateFacts, source: CertificateSource) -> NewPdCertificate {
    NewPdCertificate {
        fingerprint: facts.fingerprint,
        serial: facts.serial,
        certificate_pem: facts.pem,
        source,
        not_before: facts.not_before,
        not_after: facts.not_after,
    }
}

fn field_error(field: &str, message: impl Into<String>) -> StoreError {
    StoreError::Invalid(ValidationErrors::single(field, message))
}

impl App {
    /// The gateway's PD authority, or why PD identity is unavailable.
    fn pd_authority(&self) -> Result<&Arc<PdAuthority>> {
        self.pd_authority.as_ref().ok_or_else(|| {
            AppError::SettingOff(
                "remote PD identity is not configured: set [pds] enabled and its CA key".into(),
            )
        })
    }

    /// The PD `pd_id`, if the caller sees it.
    async fn visible_pd(&self, cx: &WriteContext, pd_id: i64) -> Result<()> {
        if self
            .store
            .kind_visible(cx.system.id, ObjectKind::RemotePd, pd_id, &cx.scope)
            .await?
        {
            Ok(())
        } else {
            Err(AppError::NotFound(format!("no remote PD {pd_id}")))
        }
    }

    /// Creates a one-time enrolment code for the PD, valid `minutes` (1 to a week); the PD's
    /// earlier unused codes stop working.
    pub async fn create_enrolment_code(
        &self,
        cx: &WriteContext,
        pd_id: i64,
        minutes: i64,
    ) -> Result<EnrolmentCode> {
        self.pd_authority()?;
        if !(1..=MAX_ENROLMENT_CODE_MINUTES).contains(&minutes) {
            return Err(AppError::field(
                "valid_minutes",
                format!("must be 1 to {MAX_ENROLMENT_CODE_MINUTES} minutes"),
            ));
        }
        self.visible_pd(cx, pd_id).await?;
        let code = new_code()?;
        let expires_at = cx.now + Duration::minutes(minutes);
        self.store
            .create_pd_enrolment_code(cx.system.id, pd_id, &code, expires_at, &cx.actor)
            .await?;
        Ok(EnrolmentCode {
            pd_id,
            code,
            expires_at,
        })
    }

    /// Enrols a PD: redeems `code` and issues a certificate for the PD the code was made for
    /// from the PEM request `csr_pem`. The device's identity is the PD of the code, whatever
    /// the request says. A bad request leaves the code unused.
    pub async fn enrol_device(&self, code: &str, csr_pem: &str) -> Result<Enrolment> {
        let authority = self.pd_authority()?.clone();
        let now = self.now();
        let issued = self
            .store
            .enrol_pd(code, now, |system_id, pd_id, marking| {
                let subject = DeviceSubject {
                    system_id,
                    pd_id,
                    marking: marking.to_owned(),
                };
                authority
                    .ca
                    .issue_device(csr_pem, &subject, now, authority.certificate_days)
                    .map(|f| new_certificate(f, CertificateSource::Enrolment))
                    .map_err(|e| field_error("csr_pem", e.to_string()))
            })
            .await?;
        match issued {
            Some(certificate) => Ok(Enrolment {
                certificate,
                ca_pem: authority.ca.certificate_pem().to_owned(),
            }),
            None => Err(AppError::field(
                "code",
                "unknown, already used or expired enrolment code",
            )),
        }
    }

    /// Records a PD certificate issued elsewhere: it must be a client certificate of the
    /// gateway CA or of a configured trusted issuer, and valid now.
    pub async fn upload_pd_certificate(
        &self,
        cx: &WriteContext,
        pd_id: i64,
        pem: &str,
    ) -> Result<PdCertificate> {
        let authority = self.pd_authority()?;
        self.visible_pd(cx, pd_id).await?;
        let facts = lockgate_devices::ca::inspect_pem(pem)
            .map_err(|e| AppError::field("certificate_pem", e.to_string()))?;
        let mut reasons = Vec::new();
        let trusted = authority.issuers().iter().any(|issuer| {
            match lockgate_devices::ca::is_client_certificate_of(&facts.der, issuer) {
                Ok(()) => true,
                Err(e) => {
                    reasons.push(e.to_string());
                    false
                }
            }
        });
        if !trusted {
            return Err(AppError::field(
                "certificate_pem",
                format!(
                    "not a PD certificate of a trusted issuer: {}",
                    reasons.first().cloned().unwrap_or_default()
                ),
            ));
        }
        if facts.not_after <= cx.now || facts.not_before > cx.now + Duration::minutes(5) {
            return Err(AppError::field(
                "certificate_pem",
                format!(
                    "not valid now (valid {} to {})",
                    facts.not_before, facts.not_after
                ),
            ));
        }
        Ok(self
            .store
            .add_pd_certificate(
                cx.system.id,
                pd_id,
                &new_certificate(facts, CertificateSource::Upload),
                &cx.actor,
            )
            .await?)
    }

    /// The PD's certificates, newest first.
    pub async fn pd_certificates(
        &self,
        cx: &WriteContext,
        pd_id: i64,
    ) -> Result<Vec<PdCertificate>> {
        self.visible_pd(cx, pd_id).await?;
        Ok(self.store.pd_certificates(cx.system.id, pd_id).await?)
    }

    /// Revokes one certificate of the PD (`certificate_id`) or all of them; the PD's next
    /// connection with a revoked certificate fails. Returns how many were revoked.
    pub async fn revoke_pd_certificates(
        &self,
        cx: &WriteContext,
        pd_id: i64,
        certificate_id: Option<i64>,
        reason: &str,
    ) -> Result<u64> {
        self.visible_pd(cx, pd_id).await?;
        if reason.trim().is_empty() || reason.chars().count() > 200 {
            return Err(AppError::field("reason", "must be 1 to 200 characters"));
        }
        Ok(self
            .store
            .revoke_pd_certificates(
                cx.system.id,
                pd_id,
                certificate_id,
                reason.trim(),
                &cx.actor,
            )
            .await?)
    }
}
