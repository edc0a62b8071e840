//! Remote PD use cases: identity (one-time enrolment codes, enrolment from a certificate
//! signing request, certificates issued elsewhere, revocation) and the jobs a PD writes to
//! keys (what an inserted key gets, and the PD's report that closes a job). Each writes its
//! change and its event together (the store's transactions).

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
    /// How long a PD may rely on a key revocation list after it was issued.
    pub krl_validity: Duration,
    /// A PD may renew its certificate in this time before it expires (and is warned about
    /// it when this time begins).
    pub renew_before: Duration,
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

/// The PD a device operation comes from, as the PD listener identified it from the
/// connection's verified certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRef {
    pub system_id: i64,
    pub pd_id: i64,
}

/// A job a PD may write to the inserted key, with the hash of its program: the PD reports
/// that hash back when the key holds the program.
#[derive(Debug, Clone)]
pub struct DeliverableJob {
    pub job: lockgate_store::reconciliation::JobRecord,
    pub program_hash: String,
}

/// What a PD reports about a job it delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceOutcome {
    /// The key holds the program with this hash.
    Done { program_hash: String },
    /// The job could not be written.
    Failed { reason: String },
}

/// How a PD's report was taken.
#[derive(Debug, Clone)]
pub enum DeviceReport {
    /// The report closed the job.
    Applied(crate::JobReport),
    /// The job was closed by this report before (a retransmission): nothing changed.
    AlreadyApplied,
}

/// The hash of a job's program as a PD reports it: SHA-256 of its JSON (keys sorted).
pub fn program_hash(program: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(program.to_string().as_bytes()))
}

/// Whether a C-key takes its cylinder jobs at remote PDs: firmware 12.0.0 or later (remote
/// C-key update). Unknown firmware is not assumed to.
pub fn updated_remotely(c_key: &lockgate_model::ckey::CKey) -> bool {
    use lockgate_engine::capability::{Device, Feature, supports};
    c_key.firmware.is_some()
        && supports(
            Feature::RemoteCKeyUpdate,
            Device::CKey,
            c_key.firmware.as_ref(),
        )
}

/// Longest idempotency key of a report, characters.
pub const MAX_REPORT_KEY: usize = 128;

impl App {
    /// The write context of a PD's operation: lockgate itself, named after the PD.
    async fn device_context(&self, device: DeviceRef) -> Result<WriteContext> {
        let system = self.store.system(device.system_id).await?;
        let actor = lockgate_store::Actor {
            label: format!("remote PD {}", device.pd_id),
            ..lockgate_store::Actor::system()
        };
        Ok(self.context(&system, &lockgate_store::Scope::all(), &actor))
    }

    /// The record of the PD a device operation acts for.
    async fn device_pd(
        &self,
        cx: &WriteContext,
        device: DeviceRef,
    ) -> Result<lockgate_store::Stored<lockgate_model::remote_pd::RemotePd>> {
        Ok(self
            .store
            .get(
                cx.system.id,
                ObjectKind::RemotePd,
                device.pd_id,
                &lockgate_store::Scope::all(),
            )
            .await?)
    }

    /// A key is inserted in the PD: its jobs the PD may write now (open remote-update jobs
    /// of the key, not waiting for an approval), each recorded as delivered by this PD with
    /// its program hash.
    pub async fn key_inserted(
        &self,
        device: DeviceRef,
        key_id: i64,
    ) -> Result<Vec<DeliverableJob>> {
        let cx = self.device_context(device).await?;
        if self
            .store
            .kind_of(cx.system.id, key_id)
            .await?
            .is_none_or(|k| k != ObjectKind::Key)
        {
            return Err(AppError::NotFound(format!("no key {key_id}")));
        }
        let jobs = self
            .store
            .jobs(cx.system.id, Some(key_id), true, 100)
            .await?;
        self.deliver(&cx, device, jobs, |job| {
            job.target == crate::JobTarget::Key && job.state == crate::JobState::Created
        })
        .await
    }

    /// The jobs among `jobs` that `deliverable` accepts, each recorded as delivered by the
    /// PD with its program hash.
    async fn deliver(
        &self,
        cx: &WriteContext,
        device: DeviceRef,
        jobs: Vec<lockgate_store::reconciliation::JobRecord>,
        deliverable: impl Fn(&lockgate_store::reconciliation::JobRecord) -> bool,
    ) -> Result<Vec<DeliverableJob>> {
        let mut out = Vec::new();
        for job in jobs.into_iter().filter(|j| deliverable(j)) {
            let hash = program_hash(&job.program);
            self.store
                .record_delivery(cx.system.id, device.pd_id, job.id, &hash, cx.now)
                .await?;
            out.push(DeliverableJob {
                job,
                program_hash: hash,
            });
        }
        Ok(out)
    }

    /// A C-key is inserted in the PD: the cylinder-programming jobs loaded on it, each
    /// recorded as delivered by this PD with its program hash. Only C-keys with firmware
    /// 12.0.0 or later are updated at remote PDs (remote C-key update); older ones are
    /// refused and keep the manual confirmation.
    pub async fn c_key_inserted(
        &self,
        device: DeviceRef,
        c_key_id: i64,
    ) -> Result<Vec<DeliverableJob>> {
        let cx = self.device_context(device).await?;
        let c_key: lockgate_store::Stored<lockgate_model::ckey::CKey> = self
            .store
            .get(
                cx.system.id,
                ObjectKind::CKey,
                c_key_id,
                &lockgate_store::Scope::all(),
            )
            .await
            .map_err(|_| AppError::NotFound(format!("no C-key {c_key_id}")))?;
        if !updated_remotely(&c_key.body) {
            return Err(AppError::field(
                "c_key_id",
                "this C-key's firmware is older than 12.0.0 (or unknown): it is not updated at \
                 remote PDs; its jobs are confirmed by hand",
            ));
        }
        let jobs = self.store.jobs(cx.system.id, None, true, 10_000).await?;
        self.deliver(&cx, device, jobs, |job| {
            job.target == crate::JobTarget::Cylinder
                && job.state == (crate::JobState::Loaded { c_key: c_key_id })
        })
        .await
    }

    /// A PD reports a job it delivered. Architecture invariant: only the PD that delivered
    /// the job confirms it, and only for the program it delivered (the hash); a report
    /// repeated with its idempotency key, or after the job closed by it, changes nothing.
    pub async fn device_job_report(
        &self,
        device: DeviceRef,
        job_id: i64,
        outcome: DeviceOutcome,
        report_key: &str,
        cylinder_audit_trail: &[lockgate_store::devices::AuditRecord],
    ) -> Result<DeviceReport> {
        // `cylinder_audit_trail`: the cylinder's audit trail a C-key read where it executed a
        // cylinder job (the records' cylinder is the job's).
        if report_key.is_empty() || report_key.chars().count() > MAX_REPORT_KEY {
            return Err(AppError::field(
                "report_key",
                format!("must be 1 to {MAX_REPORT_KEY} characters"),
            ));
        }
        let mut cx = self.device_context(device).await?;
        let Some(delivery) = self
            .store
            .delivery(cx.system.id, device.pd_id, job_id)
            .await?
        else {
            return Err(AppError::field(
                "job_id",
                "this PD did not deliver that job",
            ));
        };
        if delivery.reported_at.is_some() {
            return if delivery.report_key.as_deref() == Some(report_key) {
                Ok(DeviceReport::AlreadyApplied)
            } else {
                Err(AppError::field(
                    "job_id",
                    "the job was reported already, with another report",
                ))
            };
        }
        let (name, failure) = match &outcome {
            DeviceOutcome::Done { program_hash } if *program_hash != delivery.program_hash => {
                return Err(AppError::field(
                    "program_hash",
                    "the key holds another program than the one this PD delivered for the job",
                ));
            }
            DeviceOutcome::Done { .. } => ("finished", None),
            DeviceOutcome::Failed { reason } => ("failed", Some(reason.clone())),
        };
        // A report whose job closed meanwhile by this very delivery (a crash between the
        // two writes below) is taken as applied.
        let job = self.store.job(cx.system.id, job_id).await?;
        if job.state == crate::JobState::Finished && failure.is_none() {
            self.store
                .mark_delivery_reported(
                    cx.system.id,
                    device.pd_id,
                    job_id,
                    name,
                    report_key,
                    cx.now,
                )
                .await?;
            return Ok(DeviceReport::AlreadyApplied);
        }
        // A cylinder job is reported by the C-key that carried it (it holds the job).
        if let crate::JobState::Loaded { c_key } = job.state {
            cx.actor.c_key_id = Some(c_key);
        }
        if !cylinder_audit_trail.is_empty() {
            if job.target != crate::JobTarget::Cylinder {
                return Err(AppError::field(
                    "cylinder_audit_trail",
                    "only a cylinder job's report carries that cylinder's audit trail",
                ));
            }
            // The records are the job's cylinder's, whatever they say.
            let records: Vec<_> = cylinder_audit_trail
                .iter()
                .map(|r| lockgate_store::devices::AuditRecord {
                    cylinder_id: job.target_id,
                    ..r.clone()
                })
                .collect();
            self.store_audit_trail(&cx, device, (ObjectKind::Cylinder, job.target_id), &records)
                .await?;
        }
        let report = self.report_job(&cx, job_id, failure).await?;
        self.store
            .mark_delivery_reported(cx.system.id, device.pd_id, job_id, name, report_key, cx.now)
            .await?;
        Ok(DeviceReport::Applied(report))
    }
}

/// What a PD gets at its heartbeat: its interval and its settings (delivered at heartbeat).
#[derive(Debug, Clone)]
pub struct HeartbeatAnswer {
    pub heartbeat_minutes: u32,
    pub settings: lockgate_model::remote_pd::PdSettings,
}

/// Most heartbeats a PD may miss before it counts as offline (`[background]
/// pd_missed_heartbeats` is 1 to this).
pub const MAX_MISSED_HEARTBEATS: u32 = 100;

impl App {
    /// A PD's heartbeat: it is online (an `online` event when it was not), its reported
    /// firmware is kept, and it gets its settings.
    pub async fn device_heartbeat(
        &self,
        device: DeviceRef,
        firmware: Option<&str>,
        bootloader: Option<&str>,
    ) -> Result<HeartbeatAnswer> {
        for (field, v) in [("firmware", firmware), ("bootloader", bootloader)] {
            if v.is_some_and(|f| f.is_empty() || f.len() > 32) {
                return Err(AppError::field(field, "must be 1 to 32 characters"));
            }
        }
        let cx = self.device_context(device).await?;
        let pd = self.device_pd(&cx, device).await?;
        self.store
            .record_heartbeat(
                cx.system.id,
                device.pd_id,
                cx.now,
                firmware,
                bootloader,
                &cx.actor,
            )
            .await?;
        Ok(HeartbeatAnswer {
            heartbeat_minutes: pd.body.settings.heartbeat_minutes,
            settings: pd.body.settings,
        })
    }

    /// Marks offline every online PD that missed `missed` heartbeats by now (its own
    /// interval each); returns how many. Each gets an `offline` event.
    pub async fn mark_silent_pds_offline(&self, missed: u32) -> Result<usize> {
        let now = self.now();
        let missed = missed.clamp(1, MAX_MISSED_HEARTBEATS);
        let mut marked = 0;
        for (system_id, live, body) in self.store.online_pds().await? {
            let minutes = serde_json::from_str::<lockgate_model::remote_pd::RemotePd>(&body)
                .map(|pd| pd.settings.heartbeat_minutes)
                .unwrap_or(15);
            let silence = Duration::minutes(i64::from(minutes) * i64::from(missed));
            if live.last_seen + silence < now
                && self
                    .store
                    .mark_pd_offline(system_id, live.pd_id, live.last_seen, now, missed)
                    .await?
            {
                marked += 1;
            }
        }
        Ok(marked)
    }
}

/// A renewed certificate as the PD gets it.
pub type Renewal = Enrolment;

impl App {
    /// A PD connected with certificate `certificate_id` asks for a new one for the key of
    /// `csr_pem`. Allowed once the certificate is within `renew_before` of its expiry, once
    /// per certificate (not when the PD holds an unrevoked certificate recorded later). The new
    /// certificate is the PD's (its subject is the gateway's, as at enrolment); the old one
    /// stays valid until it expires or is revoked.
    pub async fn renew_device_certificate(
        &self,
        device: DeviceRef,
        certificate_id: i64,
        csr_pem: &str,
    ) -> Result<Renewal> {
        let authority = self.pd_authority()?.clone();
        let cx = self.device_context(device).await?;
        let current = self
            .store
            .pd_certificate(cx.system.id, certificate_id)
            .await?
            .filter(|c| c.pd_id == device.pd_id && c.revoked_at.is_none())
            .ok_or_else(|| AppError::NotFound("the connection's certificate is revoked".into()))?;
        if current.not_after - cx.now > authority.renew_before {
            return Err(AppError::field(
                "csr_pem",
                format!(
                    "the certificate is valid until {}; it is renewed from {} on",
                    current.not_after,
                    current.not_after - authority.renew_before
                ),
            ));
        }
        let newer = self
            .store
            .pd_certificates(cx.system.id, device.pd_id)
            .await?
            .into_iter()
            .any(|c| c.revoked_at.is_none() && c.id > current.id);
        if newer {
            return Err(AppError::field(
                "csr_pem",
                "the PD holds a newer certificate already: connect with it",
            ));
        }
        let pd = self.device_pd(&cx, device).await?;
        let subject = DeviceSubject {
            system_id: cx.system.id,
            pd_id: device.pd_id,
            marking: if pd.body.marking.is_empty() {
                pd.body.name.clone()
            } else {
                pd.body.marking.clone()
            },
        };
        let facts = authority
            .ca
            .issue_device(csr_pem, &subject, cx.now, authority.certificate_days)
            .map_err(|e| AppError::field("csr_pem", e.to_string()))?;
        let certificate = self
            .store
            .add_pd_certificate(
                cx.system.id,
                device.pd_id,
                &new_certificate(facts, CertificateSource::Renewal),
                &cx.actor,
            )
            .await?;
        Ok(Enrolment {
            certificate,
            ca_pem: authority.ca.certificate_pem().to_owned(),
        })
    }

    /// Announces every PD certificate that expires within `renew_before` and was not
    /// renewed: an event on the PD and a notification, once per certificate. Returns how
    /// many.
    pub async fn warn_expiring_pd_certificates(&self, renew_before: Duration) -> Result<usize> {
        let now = self.now();
        let mut warned = 0;
        for c in self
            .store
            .expiring_pd_certificates(now, now + renew_before)
            .await?
        {
            if self.store.warn_pd_certificate_expiring(&c, now).await? {
                warned += 1;
            }
        }
        Ok(warned)
    }
}

impl App {
    /// The signed key revocation list as PD `device` is given it (at heartbeat or on
    /// request): its issue time is kept as the PD's list age.
    pub async fn device_revocation_list(
        &self,
        device: DeviceRef,
    ) -> Result<lockgate_devices::krl::SignedKrl> {
        let (list, signed) = self.key_revocation_list(device.system_id).await?;
        self.store
            .record_krl_delivery(device.system_id, device.pd_id, list.issued_at)
            .await?;
        Ok(signed)
    }
}

/// Longest validity of a key revocation list.
pub const MAX_KRL_VALIDITY_HOURS: i64 = 24 * 30;

impl App {
    /// The gateway CA's certificate and the public key PDs verify revocation lists with.
    pub fn pd_trust_anchors(&self) -> Result<(String, String)> {
        let a = self.pd_authority()?;
        Ok((a.ca.certificate_pem().to_owned(), a.ca.krl_public_key()))
    }

    /// The signed key revocation list of a locking system: its lost keys. It is issued at the
    /// start of the current hour, or at the latest change of a listed key after that (a key
    /// loss reissues it at once), and valid `krl_validity` from then.
    pub async fn key_revocation_list(
        &self,
        system_id: i64,
    ) -> Result<(
        lockgate_devices::krl::KeyRevocationList,
        lockgate_devices::krl::SignedKrl,
    )> {
        use chrono::{DurationRound, TimeDelta};
        use lockgate_devices::krl::{KeyRevocationList, RevokedKey, sign};
        let authority = self.pd_authority()?;
        let now = self.now();
        let lost = self.store.lost_keys(system_id).await?;
        let hour = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
        let issued_at = lost
            .iter()
            .map(|(_, _, changed)| *changed)
            .filter(|changed| *changed <= now)
            .fold(hour, DateTime::max);
        let list = KeyRevocationList {
            version: 1,
            system_id,
            issued_at,
            valid_until: issued_at + authority.krl_validity,
            keys: lost
                .into_iter()
                .map(|(key_id, marking, _)| RevokedKey { key_id, marking })
                .collect(),
        };
        let signed =
            sign(&list, authority.ca.krl_key()).map_err(|e| AppError::SettingOff(e.to_string()))?;
        Ok((list, signed))
    }
}

impl App {
    /// Records of a key's audit trail read at the PD: new ones are stored (an event on the
    /// key), ones uploaded before are skipped. Returns how many were new.
    pub async fn device_audit_trail(
        &self,
        device: DeviceRef,
        key_id: i64,
        records: &[lockgate_store::devices::AuditRecord],
    ) -> Result<u32> {
        let cx = self.device_context(device).await?;
        if records.iter().any(|r| r.key_id != key_id) {
            return Err(AppError::field(
                "entries",
                "a key's audit trail holds records of that key only",
            ));
        }
        self.store_audit_trail(&cx, device, (ObjectKind::Key, key_id), records)
            .await
    }

    /// Stores audit-trail records read at a PD from `source` (a key or a cylinder): no record
    /// may lie more than a day in the future (a device clock running ahead).
    async fn store_audit_trail(
        &self,
        cx: &WriteContext,
        device: DeviceRef,
        source: (ObjectKind, i64),
        records: &[lockgate_store::devices::AuditRecord],
    ) -> Result<u32> {
        if let Some(r) = records.iter().find(|r| r.at > cx.now + Duration::days(1)) {
            return Err(AppError::field(
                "entries.at",
                format!("{} lies more than a day in the future", r.at),
            ));
        }
        Ok(self
            .store
            .record_audit_trail(
                cx.system.id,
                device.pd_id,
                source,
                records,
                cx.now,
                &cx.actor,
            )
            .await?)
    }

    /// Lines of the PD's own log, kept as an event on the PD.
    pub async fn device_log(&self, device: DeviceRef, lines: &[String]) -> Result<()> {
        let cx = self.device_context(device).await?;
        Ok(self
            .store
            .record_pd_log(cx.system.id, device.pd_id, lines, &cx.actor)
            .await?)
    }
}
