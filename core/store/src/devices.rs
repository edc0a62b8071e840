//! Remote PD identity: the gateway's PD certificate authority (one row), one-time enrolment
//! codes (hashed, single use, expiring) and every certificate a PD has held, matched to
//! connections by fingerprint.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Result, Store, StoreError, events::EventDraft, objects::Actor, opt_ts, parse_ts, ts};
use lockgate_model::ObjectKind;

/// Where a PD certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateSource {
    /// Issued by the gateway's CA from the PD's request, against an enrolment code.
    Enrolment,
    /// Issued elsewhere (a trusted issuer) and uploaded by an administrator.
    Upload,
    /// Issued by the gateway's CA from the request of a PD that connected with its
    /// certificate shortly before it expired.
    Renewal,
}

impl CertificateSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateSource::Enrolment => "enrolment",
            CertificateSource::Upload => "upload",
            CertificateSource::Renewal => "renewal",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "enrolment" => Ok(CertificateSource::Enrolment),
            "upload" => Ok(CertificateSource::Upload),
            "renewal" => Ok(CertificateSource::Renewal),
            other => Err(StoreError::Corrupt(format!("certificate source '{other}'"))),
        }
    }
}

/// A certificate about to be recorded for a PD.
#[derive(Debug, Clone)]
pub struct NewPdCertificate {
    pub fingerprint: String,
    pub serial: String,
    pub certificate_pem: String,
    pub source: CertificateSource,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// A certificate a PD holds or held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PdCertificate {
    pub id: i64,
    pub system_id: i64,
    pub pd_id: i64,
    pub fingerprint: String,
    pub serial: String,
    pub certificate_pem: String,
    pub source: CertificateSource,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revocation_reason: Option<String>,
}

/// The PD a connection's verified certificate belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRecord {
    pub system_id: i64,
    pub pd_id: i64,
    pub certificate_id: i64,
    pub not_after: DateTime<Utc>,
}

/// The SHA-256 of an enrolment code, as stored: of its letters and digits, upper-cased, so
/// a code typed with or without its dashes, in either case, is the same code.
pub fn code_hash(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    hex::encode(Sha256::digest(normal.as_bytes()))
}

const CERT_COLUMNS: &str = "id, system_id, pd_id, fingerprint, serial, certificate_pem, source, not_before, not_after, created_at, revoked_at, revocation_reason";

fn certificate(r: &sqlx::any::AnyRow) -> Result<PdCertificate> {
    Ok(PdCertificate {
        id: r.try_get("id")?,
        system_id: r.try_get("system_id")?,
        pd_id: r.try_get("pd_id")?,
        fingerprint: r.try_get("fingerprint")?,
        serial: r.try_get("serial")?,
        certificate_pem: r.try_get("certificate_pem")?,
        source: CertificateSource::parse(&r.try_get::<String, _>("source")?)?,
        not_before: parse_ts(&r.try_get::<String, _>("not_before")?)?,
        not_after: parse_ts(&r.try_get::<String, _>("not_after")?)?,
        created_at: parse_ts(&r.try_get::<String, _>("created_at")?)?,
        revoked_at: opt_ts(r.try_get("revoked_at")?)?,
        revocation_reason: r.try_get("revocation_reason")?,
    })
}

impl Store {
    /// The stored PD CA: `(certificate PEM, sealed key, sealed KRL signing key)`.
    pub async fn pd_ca(&self) -> Result<Option<(String, String, String)>> {
        let row = sqlx::query(
            "SELECT certificate_pem, sealed_key, sealed_krl_key FROM pd_ca WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                r.try_get("certificate_pem")?,
                r.try_get("sealed_key")?,
                r.try_get("sealed_krl_key")?,
            ))
        })
        .transpose()
    }

    /// Stores a newly created PD CA unless one exists, and returns the stored one (so two
    /// replicas starting together end up with the same CA).
    pub async fn init_pd_ca(
        &self,
        certificate_pem: &str,
        sealed_key: &str,
        sealed_krl_key: &str,
    ) -> Result<(String, String, String)> {
        sqlx::query(
            "INSERT INTO pd_ca (id, certificate_pem, sealed_key, sealed_krl_key, created_at) VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(certificate_pem)
        .bind(sealed_key)
        .bind(sealed_krl_key)
        .bind(ts(Utc::now()))
        .execute(&self.pool)
        .await?;
        self.pd_ca()
            .await?
            .ok_or_else(|| StoreError::Corrupt("the PD CA row vanished".into()))
    }

    /// The PD `pd_id` of `system_id` with its marking, or not found.
    async fn pd_marking(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
        pd_id: i64,
    ) -> Result<String> {
        let row = sqlx::query(
            "SELECT name, marking FROM objects WHERE id = $1 AND system_id = $2 AND kind = $3",
        )
        .bind(pd_id)
        .bind(system_id)
        .bind(ObjectKind::RemotePd.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found(ObjectKind::RemotePd, pd_id))?;
        Ok(row
            .try_get::<Option<String>, _>("marking")?
            .unwrap_or(row.try_get("name")?))
    }

    /// Records a new one-time enrolment code (by its hash) for a PD, valid until
    /// `expires_at`; unused codes the PD had before stop working. One event.
    pub async fn create_pd_enrolment_code(
        &self,
        system_id: i64,
        pd_id: i64,
        code: &str,
        expires_at: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let marking = Self::pd_marking(&mut tx, system_id, pd_id).await?;
        sqlx::query("DELETE FROM pd_enrolment_codes WHERE pd_id = $1 AND used_at IS NULL")
            .bind(pd_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO pd_enrolment_codes (system_id, pd_id, code_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(system_id)
        .bind(pd_id)
        .bind(code_hash(code))
        .bind(ts(Utc::now()))
        .bind(ts(expires_at))
        .execute(&mut *tx)
        .await?;
        EventDraft::new(
            ObjectKind::RemotePd,
            Some(pd_id),
            &marking,
            "enrolment_code_created",
            serde_json::json!({ "expires_at": ts(expires_at) }),
        )
        .insert(&mut tx, system_id, actor)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Redeems the enrolment code `code` at `now` and records the certificate `issue` makes
    /// for the PD it names, in one transaction: the code is used only if the certificate is
    /// recorded. `Ok(None)`: no such code, or it is used or expired (indistinguishable to
    /// the caller on purpose).
    pub async fn enrol_pd<F>(
        &self,
        code: &str,
        now: DateTime<Utc>,
        issue: F,
    ) -> Result<Option<PdCertificate>>
    where
        F: FnOnce(i64, i64, &str) -> Result<NewPdCertificate>,
    {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "UPDATE pd_enrolment_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING system_id, pd_id",
        )
        .bind(ts(now))
        .bind(code_hash(code))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let system_id: i64 = row.try_get("system_id")?;
        let pd_id: i64 = row.try_get("pd_id")?;
        let marking = Self::pd_marking(&mut tx, system_id, pd_id).await?;
        let new = issue(system_id, pd_id, &marking)?;
        let id = Self::insert_pd_certificate(&mut tx, system_id, pd_id, &new).await?;
        EventDraft::new(
            ObjectKind::RemotePd,
            Some(pd_id),
            &marking,
            "enrolled",
            serde_json::json!({ "serial": new.serial, "fingerprint": new.fingerprint, "not_after": ts(new.not_after) }),
        )
        .insert(&mut tx, system_id, &Actor::system())
        .await?;
        tx.commit().await?;
        self.pd_certificate(system_id, id).await
    }

    async fn insert_pd_certificate(
        tx: &mut sqlx::AnyConnection,
        system_id: i64,
        pd_id: i64,
        new: &NewPdCertificate,
    ) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO pd_certificates (system_id, pd_id, fingerprint, serial, certificate_pem, source, not_before, not_after, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(system_id)
        .bind(pd_id)
        .bind(&new.fingerprint)
        .bind(&new.serial)
        .bind(&new.certificate_pem)
        .bind(new.source.as_str())
        .bind(ts(new.not_before))
        .bind(ts(new.not_after))
        .bind(ts(Utc::now()))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.message().to_lowercase().contains("unique") => {
                StoreError::Conflict {
                    field: "certificate".into(),
                    message: "this certificate is already recorded".into(),
                }
            }
            _ => StoreError::Db(e),
        })?;
        Ok(row.try_get("id")?)
    }

    /// Records a certificate issued elsewhere for a PD (already checked against a trusted
    /// issuer by the caller). One event.
    pub async fn add_pd_certificate(
        &self,
        system_id: i64,
        pd_id: i64,
        new: &NewPdCertificate,
        actor: &Actor,
    ) -> Result<PdCertificate> {
        let mut tx = self.write_tx().await?;
        let marking = Self::pd_marking(&mut tx, system_id, pd_id).await?;
        let id = Self::insert_pd_certificate(&mut tx, system_id, pd_id, new).await?;
        let action = match new.source {
            CertificateSource::Renewal => "certificate_renewed",
            _ => "certificate_uploaded",
        };
        EventDraft::new(
            ObjectKind::RemotePd,
            Some(pd_id),
            &marking,
            action,
            serde_json::json!({ "serial": new.serial, "fingerprint": new.fingerprint, "not_after": ts(new.not_after) }),
        )
        .insert(&mut tx, system_id, actor)
        .await?;
        tx.commit().await?;
        self.pd_certificate(system_id, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a certificate just recorded vanished".into()))
    }

    /// One certificate of the system, by id.
    pub async fn pd_certificate(&self, system_id: i64, id: i64) -> Result<Option<PdCertificate>> {
        let row = sqlx::query(&format!(
            "SELECT {CERT_COLUMNS} FROM pd_certificates WHERE id = $1 AND system_id = $2"
        ))
        .bind(id)
        .bind(system_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(certificate).transpose()
    }

    /// Every certificate of a PD, newest first.
    pub async fn pd_certificates(&self, system_id: i64, pd_id: i64) -> Result<Vec<PdCertificate>> {
        let rows = sqlx::query(&format!(
            "SELECT {CERT_COLUMNS} FROM pd_certificates WHERE system_id = $1 AND pd_id = $2 ORDER BY id DESC"
        ))
        .bind(system_id)
        .bind(pd_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(certificate).collect()
    }

    /// Revokes the certificate `id` of a PD (or every unrevoked one when `id` is `None`).
    /// Returns how many were revoked. One event when any was.
    pub async fn revoke_pd_certificates(
        &self,
        system_id: i64,
        pd_id: i64,
        id: Option<i64>,
        reason: &str,
        actor: &Actor,
    ) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let marking = Self::pd_marking(&mut tx, system_id, pd_id).await?;
        let sql = "UPDATE pd_certificates SET revoked_at = $1, revocation_reason = $2 \
                   WHERE system_id = $3 AND pd_id = $4 AND revoked_at IS NULL";
        let with_id = format!("{sql} AND id = $5");
        let query = match id {
            Some(id) => sqlx::query(&with_id)
                .bind(ts(Utc::now()))
                .bind(reason)
                .bind(system_id)
                .bind(pd_id)
                .bind(id),
            None => sqlx::query(sql)
                .bind(ts(Utc::now()))
                .bind(reason)
                .bind(system_id)
                .bind(pd_id),
        };
        let done = query.execute(&mut *tx).await?.rows_affected();
        if done > 0 {
            EventDraft::new(
                ObjectKind::RemotePd,
                Some(pd_id),
                &marking,
                "certificate_revoked",
                serde_json::json!({ "certificate_id": id, "count": done, "reason": reason }),
            )
            .insert(&mut tx, system_id, actor)
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// The PD whose unrevoked certificate has this fingerprint, if any (expiry is the TLS
    /// verifier's to judge, and is returned for the caller).
    pub async fn device_by_fingerprint(&self, fingerprint: &str) -> Result<Option<DeviceRecord>> {
        let row = sqlx::query(
            "SELECT id, system_id, pd_id, not_after FROM pd_certificates WHERE fingerprint = $1 AND revoked_at IS NULL",
        )
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(DeviceRecord {
                system_id: r.try_get("system_id")?,
                pd_id: r.try_get("pd_id")?,
                certificate_id: r.try_get("id")?,
                not_after: parse_ts(&r.try_get::<String, _>("not_after")?)?,
            })
        })
        .transpose()
    }

    /// Whether the system has a PD with an unrevoked certificate (its jobs are then closed by
    /// PD reports).
    pub async fn has_enrolled_pds(&self, system_id: i64) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM pd_certificates WHERE system_id = $1 AND revoked_at IS NULL LIMIT 1",
        )
        .bind(system_id)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// The fingerprints of every unrevoked PD certificate, for the listener's handshake check.
    pub async fn active_device_fingerprints(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT fingerprint FROM pd_certificates WHERE revoked_at IS NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("fingerprint")?))
            .collect()
    }
}

/// A job a PD delivered to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub job_id: i64,
    pub pd_id: i64,
    pub program_hash: String,
    pub delivered_at: DateTime<Utc>,
    pub reported_at: Option<DateTime<Utc>>,
    /// `finished` or `failed`, once reported.
    pub outcome: Option<String>,
    /// The idempotency key of the report that closed it.
    pub report_key: Option<String>,
}

impl Store {
    /// Records that the PD delivered the job with this program (again: the time and hash of
    /// the newest delivery; an earlier report stays).
    pub async fn record_delivery(
        &self,
        system_id: i64,
        pd_id: i64,
        job_id: i64,
        program_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO pd_deliveries (job_id, pd_id, system_id, program_hash, delivered_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (job_id, pd_id) DO UPDATE SET program_hash = excluded.program_hash, delivered_at = excluded.delivered_at \
             WHERE pd_deliveries.reported_at IS NULL",
        )
        .bind(job_id)
        .bind(pd_id)
        .bind(system_id)
        .bind(program_hash)
        .bind(ts(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The PD's delivery of the job, if it made one.
    pub async fn delivery(
        &self,
        system_id: i64,
        pd_id: i64,
        job_id: i64,
    ) -> Result<Option<Delivery>> {
        let row = sqlx::query(
            "SELECT job_id, pd_id, program_hash, delivered_at, reported_at, outcome, report_key FROM pd_deliveries \
             WHERE system_id = $1 AND pd_id = $2 AND job_id = $3",
        )
        .bind(system_id)
        .bind(pd_id)
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Delivery {
                job_id: r.try_get("job_id")?,
                pd_id: r.try_get("pd_id")?,
                program_hash: r.try_get("program_hash")?,
                delivered_at: parse_ts(&r.try_get::<String, _>("delivered_at")?)?,
                reported_at: opt_ts(r.try_get("reported_at")?)?,
                outcome: r.try_get("outcome")?,
                report_key: r.try_get("report_key")?,
            })
        })
        .transpose()
    }

    /// Marks the PD's delivery of the job reported (once: a later call changes nothing).
    pub async fn mark_delivery_reported(
        &self,
        system_id: i64,
        pd_id: i64,
        job_id: i64,
        outcome: &str,
        report_key: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE pd_deliveries SET reported_at = $1, outcome = $2, report_key = $3 \
             WHERE system_id = $4 AND pd_id = $5 AND job_id = $6 AND reported_at IS NULL",
        )
        .bind(ts(at))
        .bind(outcome)
        .bind(report_key)
        .bind(system_id)
        .bind(pd_id)
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// A PD's liveness as the gateway saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PdLiveness {
    pub pd_id: i64,
    pub online: bool,
    pub last_seen: DateTime<Utc>,
    pub offline_since: Option<DateTime<Utc>>,
    /// The firmware the PD reported at its last heartbeat.
    pub firmware: Option<String>,
    /// The boot-loader firmware it reported (generation 1 wall PDs).
    pub bootloader: Option<String>,
    /// When the newest key revocation list the PD was given was issued.
    pub krl_issued_at: Option<DateTime<Utc>>,
}

fn liveness(r: &sqlx::any::AnyRow) -> Result<PdLiveness> {
    Ok(PdLiveness {
        pd_id: r.try_get("pd_id")?,
        online: r.try_get::<i64, _>("online")? != 0,
        last_seen: parse_ts(&r.try_get::<String, _>("last_seen")?)?,
        offline_since: opt_ts(r.try_get("offline_since")?)?,
        firmware: r.try_get("firmware")?,
        bootloader: r.try_get("bootloader")?,
        krl_issued_at: opt_ts(r.try_get("krl_issued_at")?)?,
    })
}

impl Store {
    /// Records a PD's heartbeat at `at`. Returns whether it came online with it (first
    /// heartbeat, or after being offline): then an `online` event is written with it.
    pub async fn record_heartbeat(
        &self,
        system_id: i64,
        pd_id: i64,
        at: DateTime<Utc>,
        firmware: Option<&str>,
        bootloader: Option<&str>,
        actor: &Actor,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let marking = Self::pd_marking(&mut tx, system_id, pd_id).await?;
        let was_online = sqlx::query("SELECT online FROM pd_status WHERE pd_id = $1")
            .bind(pd_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<i64, _>("online"))
            .transpose()?
            .is_some_and(|o| o != 0);
        sqlx::query(
            "INSERT INTO pd_status (pd_id, system_id, online, last_seen, offline_since, firmware, bootloader) VALUES ($1, $2, 1, $3, NULL, $4, $5) \
             ON CONFLICT (pd_id) DO UPDATE SET online = 1, last_seen = excluded.last_seen, offline_since = NULL, \
             firmware = COALESCE(excluded.firmware, pd_status.firmware), \
             bootloader = COALESCE(excluded.bootloader, pd_status.bootloader)",
        )
        .bind(pd_id)
        .bind(system_id)
        .bind(ts(at))
        .bind(firmware)
        .bind(bootloader)
        .execute(&mut *tx)
        .await?;
        if !was_online {
            EventDraft::new(
                ObjectKind::RemotePd,
                Some(pd_id),
                &marking,
                "online",
                serde_json::json!({ "at": ts(at), "firmware": firmware }),
            )
            .insert(&mut tx, system_id, actor)
            .await?;
        }
        tx.commit().await?;
        Ok(!was_online)
    }

    /// A PD's liveness, if it was ever heard from.
    pub async fn pd_liveness(&self, system_id: i64, pd_id: i64) -> Result<Option<PdLiveness>> {
        let row = sqlx::query(
            "SELECT pd_id, online, last_seen, offline_since, firmware, bootloader, krl_issued_at FROM pd_status WHERE system_id = $1 AND pd_id = $2",
        )
        .bind(system_id)
        .bind(pd_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(liveness).transpose()
    }

    /// Records that the PD was given the key revocation list issued at `issued_at` (kept
    /// when it had a newer one).
    pub async fn record_krl_delivery(
        &self,
        system_id: i64,
        pd_id: i64,
        issued_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE pd_status SET krl_issued_at = $1 WHERE system_id = $2 AND pd_id = $3 \
             AND (krl_issued_at IS NULL OR krl_issued_at < $1)",
        )
        .bind(ts(issued_at))
        .bind(system_id)
        .bind(pd_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The PDs counted online, with their system and the body of their record (for the
    /// heartbeat interval).
    pub async fn online_pds(&self) -> Result<Vec<(i64, PdLiveness, String)>> {
        let rows = sqlx::query(
            "SELECT s.pd_id, s.system_id, s.online, s.last_seen, s.offline_since, s.firmware, s.bootloader, s.krl_issued_at, o.body \
             FROM pd_status s JOIN objects o ON o.id = s.pd_id WHERE s.online = 1",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("system_id")?, liveness(r)?, r.try_get("body")?)))
            .collect()
    }

    /// Marks a PD offline from `at`, unless it was heard from after `last_seen` meanwhile.
    /// Returns whether it was marked (then with an `offline` event).
    pub async fn mark_pd_offline(
        &self,
        system_id: i64,
        pd_id: i64,
        last_seen: DateTime<Utc>,
        at: DateTime<Utc>,
        missed: u32,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let marking = Self::pd_marking(&mut tx, system_id, pd_id).await?;
        let done = sqlx::query(
            "UPDATE pd_status SET online = 0, offline_since = $1 WHERE pd_id = $2 AND online = 1 AND last_seen = $3",
        )
        .bind(ts(at))
        .bind(pd_id)
        .bind(ts(last_seen))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done > 0 {
            EventDraft::new(
                ObjectKind::RemotePd,
                Some(pd_id),
                &marking,
                "offline",
                serde_json::json!({ "last_seen": ts(last_seen), "missed_heartbeats": missed }),
            )
            .insert(&mut tx, system_id, &Actor::system())
            .await?;
            // The configured recipients learn of it (the notifier's administrators), in the
            // same transaction: one message per outage.
            let sys = sqlx::query("SELECT name, settings FROM locking_systems WHERE id = $1")
                .bind(system_id)
                .fetch_one(&mut *tx)
                .await?;
            let language = messaging_language(&sys.try_get::<String, _>("settings")?);
            crate::outbox::insert_outbox(
                &mut tx,
                &format!("pd-offline:{pd_id}:{}", ts(at)),
                crate::outbox::Topic::PdOffline.as_str(),
                &serde_json::json!({
                    "system_id": system_id,
                    "system_name": sys.try_get::<String, _>("name")?,
                    "messaging_language": language,
                    "pd_id": pd_id,
                    "marking": marking,
                    "last_seen": ts(last_seen),
                    "offline_since": ts(at),
                    "missed_heartbeats": missed,
                }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done > 0)
    }
}

impl Store {
    /// The lost keys of a system, `(id, marking, when the key last changed)`, by id: what its
    /// key revocation list holds.
    pub async fn lost_keys(&self, system_id: i64) -> Result<Vec<(i64, String, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT id, marking, name, updated_at FROM objects WHERE system_id = $1 AND kind = $2 AND status = 'lost' ORDER BY id",
        )
        .bind(system_id)
        .bind(ObjectKind::Key.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let marking: Option<String> = r.try_get("marking")?;
                Ok((
                    r.try_get("id")?,
                    marking.unwrap_or(r.try_get("name")?),
                    parse_ts(&r.try_get::<String, _>("updated_at")?)?,
                ))
            })
            .collect()
    }
}

/// One audit-trail record: a key was used at a cylinder (read from the key or from the
/// cylinder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub key_id: i64,
    pub cylinder_id: i64,
    pub at: DateTime<Utc>,
    pub opened: bool,
}

/// Most lines of a PD log kept in one `log_uploaded` event.
pub const MAX_PD_LOG_LINES: usize = 1_000;

impl Store {
    /// Records audit-trail records read at PD `pd_id` from `source` (a key, whose own trail
    /// it is, or a cylinder, whose trail a C-key read); records stored already (the same
    /// key, cylinder and instant) are skipped. Returns how many were new; when any were, one
    /// `audit_trail_uploaded` event on `source`. Every key must be a key of the system and
    /// every cylinder a cylinder of it, or nothing is written.
    pub async fn record_audit_trail(
        &self,
        system_id: i64,
        pd_id: i64,
        source: (ObjectKind, i64),
        records: &[AuditRecord],
        at: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<u32> {
        let mut tx = self.write_tx().await?;
        let pd_marking = Self::pd_marking(&mut tx, system_id, pd_id).await?;
        let mut checked: Vec<(ObjectKind, i64)> = vec![source];
        checked.extend(records.iter().map(|r| (ObjectKind::Key, r.key_id)));
        checked.extend(
            records
                .iter()
                .map(|r| (ObjectKind::Cylinder, r.cylinder_id)),
        );
        checked.sort_unstable_by_key(|(k, id)| (k.as_str(), *id));
        checked.dedup();
        let mut source_label = String::new();
        for (kind, id) in checked {
            let row =
                sqlx::query("SELECT kind, name FROM objects WHERE id = $1 AND system_id = $2")
                    .bind(id)
                    .bind(system_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match row {
                Some(r) if r.try_get::<String, _>("kind")? == kind.as_str() => {
                    if (kind, id) == source {
                        source_label = r.try_get("name")?;
                    }
                }
                _ => return Err(StoreError::not_found(kind, id)),
            }
        }
        let mut new = 0u32;
        for r in records {
            let done = sqlx::query(
                "INSERT INTO audit_trail_entries (system_id, key_id, cylinder_id, at, opened, pd_id, uploaded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(system_id)
            .bind(r.key_id)
            .bind(r.cylinder_id)
            .bind(ts(r.at))
            .bind(i64::from(r.opened))
            .bind(pd_id)
            .bind(ts(at))
            .execute(&mut *tx)
            .await?;
            new += u32::try_from(done.rows_affected()).unwrap_or(0);
        }
        if new > 0 {
            EventDraft::new(
                source.0,
                Some(source.1),
                &source_label,
                "audit_trail_uploaded",
                serde_json::json!({
                    "pd_id": pd_id,
                    "pd": pd_marking,
                    "records": records.len(),
                    "new": new,
                }),
            )
            .insert(&mut tx, system_id, actor)
            .await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    /// Key `key_id`'s audit trail as uploaded from PDs, newest first, at most `limit`.
    pub async fn audit_trail(
        &self,
        system_id: i64,
        key_id: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT key_id, cylinder_id, at, opened FROM audit_trail_entries WHERE system_id = $1 AND key_id = $2 \
             ORDER BY at DESC, cylinder_id LIMIT $3",
        )
        .bind(system_id)
        .bind(key_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    key_id: r.try_get("key_id")?,
                    cylinder_id: r.try_get("cylinder_id")?,
                    at: parse_ts(&r.try_get::<String, _>("at")?)?,
                    opened: r.try_get::<i64, _>("opened")? != 0,
                })
            })
            .collect()
    }

    /// Keeps lines a PD uploaded from its own log as one `log_uploaded` event on the PD
    /// (at most [`MAX_PD_LOG_LINES`]; the caller bounds each line).
    pub async fn record_pd_log(
        &self,
        system_id: i64,
        pd_id: i64,
        lines: &[String],
        actor: &Actor,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let marking = Self::pd_marking(&mut tx, system_id, pd_id).await?;
        let kept = &lines[..lines.len().min(MAX_PD_LOG_LINES)];
        EventDraft::new(
            ObjectKind::RemotePd,
            Some(pd_id),
            &marking,
            "log_uploaded",
            serde_json::json!({ "lines": kept, "cut": lines.len() - kept.len() }),
        )
        .insert(&mut tx, system_id, actor)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A PD certificate that expires soon without a successor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringCertificate {
    pub system_id: i64,
    pub pd_id: i64,
    pub certificate_id: i64,
    pub serial: String,
    pub not_after: DateTime<Utc>,
}

impl Store {
    /// Unrevoked PD certificates that expire by `before` (and have not expired yet at `now`),
    /// not announced yet, whose PD holds no unrevoked certificate recorded after it (a
    /// renewal or an upload).
    pub async fn expiring_pd_certificates(
        &self,
        now: DateTime<Utc>,
        before: DateTime<Utc>,
    ) -> Result<Vec<ExpiringCertificate>> {
        let rows = sqlx::query(
            "SELECT c.id, c.system_id, c.pd_id, c.serial, c.not_after FROM pd_certificates c \
             WHERE c.revoked_at IS NULL AND c.expiry_warned_at IS NULL AND c.not_after > $1 AND c.not_after <= $2 \
             AND NOT EXISTS (SELECT 1 FROM pd_certificates n WHERE n.pd_id = c.pd_id AND n.revoked_at IS NULL \
                             AND n.id > c.id) \
             ORDER BY c.not_after LIMIT 1000",
        )
        .bind(ts(now))
        .bind(ts(before))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ExpiringCertificate {
                    system_id: r.try_get("system_id")?,
                    pd_id: r.try_get("pd_id")?,
                    certificate_id: r.try_get("id")?,
                    serial: r.try_get("serial")?,
                    not_after: parse_ts(&r.try_get::<String, _>("not_after")?)?,
                })
            })
            .collect()
    }

    /// Announces a certificate's coming expiry once: a `certificate_expiring` event on the PD
    /// and a `notify.pd_certificate_expiring` message, in one transaction. `false` when it
    /// was announced already.
    pub async fn warn_pd_certificate_expiring(
        &self,
        c: &ExpiringCertificate,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let marking = Self::pd_marking(&mut tx, c.system_id, c.pd_id).await?;
        let done = sqlx::query(
            "UPDATE pd_certificates SET expiry_warned_at = $1 WHERE id = $2 AND expiry_warned_at IS NULL",
        )
        .bind(ts(at))
        .bind(c.certificate_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        EventDraft::new(
            ObjectKind::RemotePd,
            Some(c.pd_id),
            &marking,
            "certificate_expiring",
            serde_json::json!({ "certificate_id": c.certificate_id, "serial": c.serial, "not_after": ts(c.not_after) }),
        )
        .insert(&mut tx, c.system_id, &Actor::system())
        .await?;
        let sys = sqlx::query("SELECT name, settings FROM locking_systems WHERE id = $1")
            .bind(c.system_id)
            .fetch_one(&mut *tx)
            .await?;
        crate::outbox::insert_outbox(
            &mut tx,
            &format!("pd-certificate-expiring:{}", c.certificate_id),
            crate::outbox::Topic::PdCertificateExpiring.as_str(),
            &serde_json::json!({
                "system_id": c.system_id,
                "system_name": sys.try_get::<String, _>("name")?,
                "messaging_language": messaging_language(&sys.try_get::<String, _>("settings")?),
                "pd_id": c.pd_id,
                "marking": marking,
                "certificate_id": c.certificate_id,
                "serial": c.serial,
                "not_after": ts(c.not_after),
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// The messaging language of a system's settings JSON (`en` when unreadable).
fn messaging_language(settings: &str) -> String {
    serde_json::from_str::<serde_json::Value>(settings)
        .ok()
        .and_then(|s| s["messaging_language"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "en".into())
}
