//! Durable key-value storage of the WebAssembly plugins (`lockgate:host/kv`), scoped by plugin name.
//!
//! Every operation takes the calling plugin's name and touches only that plugin's rows, so
//! keys of different plugins never collide and one plugin cannot read another's. The rows are
//! gateway-wide (plugins are not per locking system). Keys compare bytewise on both databases
//! (SQLite `BINARY`, PostgreSQL `COLLATE "C"`), so a prefix listing is one ordered range scan
//! and returns the same order everywhere. The plugin host checks grants and sizes before it
//! calls here; the limits are checked again so the table never holds what the host refuses.

use chrono::Utc;
use lockgate_model::ValidationErrors;
use sqlx::Row;

use crate::{Result, Store, ts};

/// Longest plugin name, bytes.
pub const MAX_PLUGIN_BYTES: usize = 128;
/// Longest key, bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value, bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one listing returns.
pub const MAX_LIST: u32 = 1_000;

fn check(plugin: &str, key: Option<&str>) -> Result<()> {
    if plugin.is_empty() || plugin.len() > MAX_PLUGIN_BYTES {
        return Err(ValidationErrors::single(
            "plugin",
            format!("must be 1-{MAX_PLUGIN_BYTES} bytes"),
        )
        .into());
    }
    if let Some(key) = key
        && (key.is_empty() || key.len() > MAX_KEY_BYTES)
    {
        return Err(
            ValidationErrors::single("key", format!("must be 1-{MAX_KEY_BYTES} bytes")).into(),
        );
    }
    Ok(())
}

impl Store {
    /// The value under `key` for `plugin`.
    pub async fn plugin_kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        check(plugin, Some(key))?;
        let row = sqlx::query("SELECT value FROM plugin_kv WHERE plugin = $1 AND key = $2")
            .bind(plugin)
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get::<Vec<u8>, _>("value")).transpose()?)
    }

    /// Stores `value` under `key` for `plugin` (an existing value is replaced).
    pub async fn plugin_kv_set(&self, plugin: &str, key: &str, value: &[u8]) -> Result<()> {
        check(plugin, Some(key))?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(ValidationErrors::single(
                "value",
                format!("must be at most {MAX_VALUE_BYTES} bytes"),
            )
            .into());
        }
        sqlx::query(
            "INSERT INTO plugin_kv (plugin, key, value, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(plugin)
        .bind(key)
        .bind(value.to_vec())
        .bind(ts(Utc::now()))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// How many keys `plugin` holds and their bytes (keys plus values), leaving out
    /// `except_key` (the key a write is about to replace): what the host's kv quota counts.
    pub async fn plugin_kv_usage(&self, plugin: &str, except_key: &str) -> Result<(u64, u64)> {
        check(plugin, None)?;
        let bytes = match self.backend() {
            crate::Backend::Sqlite => "LENGTH(CAST(key AS BLOB)) + LENGTH(value)",
            crate::Backend::Postgres => "OCTET_LENGTH(key) + OCTET_LENGTH(value)",
        };
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM({bytes}), 0) AS BIGINT) AS b \
             FROM plugin_kv WHERE plugin = $1 AND key <> $2"
        ))
        .bind(plugin)
        .bind(except_key)
        .fetch_one(self.pool())
        .await?;
        let n: i64 = row.try_get("n")?;
        let b: i64 = row.try_get("b")?;
        Ok((n.unsigned_abs(), b.unsigned_abs()))
    }

    /// Removes `key` for `plugin`; a missing key is fine. Returns whether a row was removed.
    pub async fn plugin_kv_delete(&self, plugin: &str, key: &str) -> Result<bool> {
        check(plugin, Some(key))?;
        let done = sqlx::query("DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2")
            .bind(plugin)
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// `plugin`'s keys starting with `prefix`, sorted bytewise, at most `limit` (capped at
    /// [`MAX_LIST`]).
    pub async fn plugin_kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>> {
        check(plugin, None)?;
        let limit = limit.min(MAX_LIST);
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Keys with the prefix are contiguous from `prefix` on in bytewise order: read the
        // range from there and stop at the first key without it.
        let rows = sqlx::query(
            "SELECT key FROM plugin_kv WHERE plugin = $1 AND key >= $2 ORDER BY key LIMIT $3",
        )
        .bind(plugin)
        .bind(prefix)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let key: String = r.try_get("key")?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push(key);
        }
        Ok(out)
    }
}
