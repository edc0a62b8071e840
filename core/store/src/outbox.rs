//! Writing the transactional outbox: a message inserted in the caller's transaction, the
//! same one as the change it reports, so it exists exactly when that change commits. The
//! `outbox` table belongs to this crate's migrations; `lockgate-jobs` claims, dispatches and
//! purges its rows (and re-exports this writer for its callers).

use chrono::Utc;
use lockgate_model::ValidationErrors;
use serde_json::Value;
use sqlx::AnyConnection;

use crate::{Result, ts};

/// The topics of outbox messages (`docs/notifications.md` documents each payload). The
/// dispatcher hands every `notify.*` message to the configured notifier plugin.
///
/// Architecture invariant: outbox topics are this enum, never bare strings; a plugin sees
/// [`Topic::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Topic {
    /// Keys past their return date, once per system and day.
    #[serde(rename = "notify.overdue_keys")]
    OverdueKeys,
    /// The licence is in soft expiry, once per system and ISO week.
    #[serde(rename = "notify.licence_expiry")]
    LicenceExpiry,
    /// The licence passed its hard expiry, once per licence.
    #[serde(rename = "notify.licence_hard_expiry")]
    LicenceHardExpiry,
    /// A job failed at its cylinder or key, with the job's change.
    #[serde(rename = "notify.job_failed")]
    JobFailed,
    /// Jobs wait for another administrator's C-key at a remote PD.
    #[serde(rename = "notify.job_assigned")]
    JobAssigned,
    /// A key's update exceeds its access-list capacity, once per key and day.
    #[serde(rename = "notify.capacity_exceeded")]
    CapacityExceeded,
    /// A remote PD missed its heartbeats and is offline, once per outage.
    #[serde(rename = "notify.pd_offline")]
    PdOffline,
    /// A remote PD's certificate expires soon and was not renewed, once per certificate.
    #[serde(rename = "notify.pd_certificate_expiring")]
    PdCertificateExpiring,
}

impl Topic {
    pub const ALL: [Topic; 8] = [
        Topic::OverdueKeys,
        Topic::LicenceExpiry,
        Topic::LicenceHardExpiry,
        Topic::JobFailed,
        Topic::JobAssigned,
        Topic::CapacityExceeded,
        Topic::PdOffline,
        Topic::PdCertificateExpiring,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Topic::OverdueKeys => "notify.overdue_keys",
            Topic::LicenceExpiry => "notify.licence_expiry",
            Topic::LicenceHardExpiry => "notify.licence_hard_expiry",
            Topic::JobFailed => "notify.job_failed",
            Topic::JobAssigned => "notify.job_assigned",
            Topic::CapacityExceeded => "notify.capacity_exceeded",
            Topic::PdOffline => "notify.pd_offline",
            Topic::PdCertificateExpiring => "notify.pd_certificate_expiring",
        }
    }

    /// The prefix of every notification topic.
    pub const NOTIFY_PREFIX: &'static str = "notify.";

    /// The topic of a stored message, if it is one of ours.
    pub fn parse(s: &str) -> Option<Topic> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether messages of this topic go to the notifier plugin.
    pub fn is_notification(self) -> bool {
        self.as_str().starts_with(Self::NOTIFY_PREFIX)
    }
}

/// Longest message id or topic, bytes.
pub const MAX_NAME_LEN: usize = 200;
/// Largest payload (its JSON text), bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

fn check_name(what: &str, s: &str) -> Result<()> {
    if s.trim().is_empty() || s.len() > MAX_NAME_LEN {
        return Err(
            ValidationErrors::single(what, format!("must be 1..={MAX_NAME_LEN} bytes")).into(),
        );
    }
    Ok(())
}

/// Inserts a message under `message_id` (derived from what it reports, so a repeat of the
/// same change writes nothing twice); `false` when that id already exists.
pub async fn insert_outbox(
    conn: &mut AnyConnection,
    message_id: &str,
    topic: &str,
    payload: &Value,
) -> Result<bool> {
    check_name("message_id", message_id)?;
    check_name("topic", topic)?;
    let text = payload.to_string();
    if text.len() > MAX_PAYLOAD_BYTES {
        return Err(ValidationErrors::single(
            "payload",
            format!("is {} bytes, at most {MAX_PAYLOAD_BYTES}", text.len()),
        )
        .into());
    }
    let now = ts(Utc::now());
    let n = sqlx::query(
        "INSERT INTO outbox (message_id, topic, payload, created_at, next_attempt_at, attempts, fencing) \
         VALUES ($1, $2, $3, $4, $5, 0, 0) ON CONFLICT DO NOTHING",
    )
    .bind(message_id)
    .bind(topic)
    .bind(text)
    .bind(&now)
    .bind(&now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n > 0)
}
