//! Writing the transactional outbox: a message inserted in the caller's transaction, the
//! same one as the change it reports, so it exists exactly when that change commits. The
//! `outbox` table belongs to this crate's migrations; `lockgate-jobs` claims, dispatches and
//! purges its rows (and re-exports this writer for its callers).

use chrono::Utc;
use lockgate_model::ValidationErrors;
use serde_json::Value;
use sqlx::AnyConnection;

use crate::{Result, ts};

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
