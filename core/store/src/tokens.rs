//! API tokens: random secrets shown once, stored as SHA-256 hashes, bound to a C-key.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use crate::{Result, Store, StoreError, opt_ts, parse_ts, ts};

/// Prefix that makes lockgate tokens recognisable (e.g. to secret scanners).
pub const TOKEN_PREFIX: &str = "lgt_";

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPurpose {
    /// The REST API under `/api/v1`.
    #[default]
    Api,
    /// Only SCIM provisioning under `/scim/v2` (a C-key holding the Web service role).
    Scim,
    /// Only the web services mounted under `/ws` (a C-key holding the Web service role).
    WebService,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Api => "api",
            TokenPurpose::Scim => "scim",
            TokenPurpose::WebService => "web_service",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "api" => Ok(TokenPurpose::Api),
            "scim" => Ok(TokenPurpose::Scim),
            "web_service" => Ok(TokenPurpose::WebService),
            other => Err(StoreError::Corrupt(format!("token purpose '{other}'"))),
        }
    }
}

/// A token as listed (never with its secret).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub c_key_id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The C-key whose administrator issued the token (its own C-key when it issued it itself).
    pub issued_by: i64,
    pub purpose: TokenPurpose,
}

/// Who a presented token authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenAuth {
    pub token_id: i64,
    pub system_id: i64,
    pub c_key_id: i64,
    /// The C-key whose administrator issued the token: the request's rights and domains are
    /// capped at that C-key's on every request. Equal to `c_key_id` for a token issued to oneself.
    pub issued_by: i64,
    /// When the token stops working; a token it mints never outlives it.
    pub expires_at: Option<DateTime<Utc>>,
    /// What the token may be used for; checked on every request.
    pub purpose: TokenPurpose,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| StoreError::Refused {
        message: format!("no randomness for a token: {e}"),
    })?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(b)))
}

impl Store {
    pub(crate) async fn insert_token(
        conn: &mut AnyConnection,
        system_id: i64,
        c_key_id: i64,
        issued_by: Option<i64>,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
        purpose: TokenPurpose,
    ) -> Result<String> {
        let secret = new_secret()?;
        sqlx::query(
            "INSERT INTO api_tokens (system_id, c_key_id, issued_by, name, token_hash, created_at, expires_at, purpose) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(system_id)
        .bind(c_key_id)
        .bind(issued_by.filter(|i| *i != c_key_id))
        .bind(name)
        .bind(hash(&secret))
        .bind(ts(Utc::now()))
        .bind(expires_at.map(ts))
        .bind(purpose.as_str())
        .execute(conn)
        .await?;
        Ok(secret)
    }

    /// Issue a token for a C-key on behalf of the administrator of `issued_by`; the secret is
    /// returned once and only its hash is kept.
    pub async fn create_token(
        &self,
        system_id: i64,
        c_key_id: i64,
        issued_by: i64,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(TokenInfo, String)> {
        self.create_token_for(
            system_id,
            c_key_id,
            issued_by,
            name,
            expires_at,
            TokenPurpose::Api,
        )
        .await
    }

    /// [`Store::create_token`] for a purpose (`scim`: provisioning only).
    pub async fn create_token_for(
        &self,
        system_id: i64,
        c_key_id: i64,
        issued_by: i64,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
        purpose: TokenPurpose,
    ) -> Result<(TokenInfo, String)> {
        let mut e = lockgate_model::ValidationErrors::new();
        e.text("name", name, 1, 100);
        if expires_at.is_some_and(|t| t <= Utc::now()) {
            e.push("expires_at", "must be in the future");
        }
        e.into_result()?;
        let mut tx = self.write_tx().await?;
        let secret = Self::insert_token(
            &mut tx,
            system_id,
            c_key_id,
            Some(issued_by),
            name.trim(),
            expires_at,
            purpose,
        )
        .await?;
        let row = sqlx::query("SELECT id FROM api_tokens WHERE token_hash = $1")
            .bind(hash(&secret))
            .fetch_one(&mut *tx)
            .await?;
        let id: i64 = row.try_get("id")?;
        tx.commit().await?;
        let info = self
            .tokens(system_id, None)
            .await?
            .into_iter()
            .find(|t| t.id == id);
        let info = info.ok_or(StoreError::NotFound { kind: "token", id })?;
        Ok((info, secret))
    }

    /// Resolve a presented secret to its C-key, if the token is valid now.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<TokenAuth>> {
        if !secret.starts_with(TOKEN_PREFIX) || secret.len() > 200 {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT id, system_id, c_key_id, issued_by, expires_at, revoked_at, last_used_at, purpose FROM api_tokens WHERE token_hash = $1",
        )
        .bind(hash(secret))
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let now = Utc::now();
        if row.try_get::<Option<String>, _>("revoked_at")?.is_some() {
            return Ok(None);
        }
        let expires_at = opt_ts(row.try_get("expires_at")?)?;
        if expires_at.is_some_and(|t| t <= now) {
            return Ok(None);
        }
        let c_key_id: i64 = row.try_get("c_key_id")?;
        let auth = TokenAuth {
            token_id: row.try_get("id")?,
            system_id: row.try_get("system_id")?,
            c_key_id,
            issued_by: row
                .try_get::<Option<i64>, _>("issued_by")?
                .unwrap_or(c_key_id),
            expires_at,
            purpose: TokenPurpose::parse(&row.try_get::<String, _>("purpose")?)?,
        };
        // Record use at most once a minute, so reads stay reads.
        let last = opt_ts(row.try_get("last_used_at")?)?;
        if last.is_none_or(|t| now - t > chrono::Duration::minutes(1)) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(ts(now))
                .bind(auth.token_id)
                .execute(self.pool())
                .await?;
        }
        Ok(Some(auth))
    }

    /// Tokens of a system (optionally those a C-key holds or issued).
    pub async fn tokens(&self, system_id: i64, c_key_id: Option<i64>) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT id, c_key_id, issued_by, name, created_at, expires_at, last_used_at, revoked_at, purpose FROM api_tokens \
             WHERE system_id = $1 AND ($2 = 0 OR c_key_id = $2 OR issued_by = $2) ORDER BY id LIMIT 10000",
        )
        .bind(system_id)
        .bind(c_key_id.unwrap_or(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let c_key_id: i64 = r.try_get("c_key_id")?;
                Ok(TokenInfo {
                    id: r.try_get("id")?,
                    c_key_id,
                    issued_by: r
                        .try_get::<Option<i64>, _>("issued_by")?
                        .unwrap_or(c_key_id),
                    name: r.try_get("name")?,
                    created_at: parse_ts(&r.try_get::<String, _>("created_at")?)?,
                    expires_at: opt_ts(r.try_get("expires_at")?)?,
                    last_used_at: opt_ts(r.try_get("last_used_at")?)?,
                    revoked_at: opt_ts(r.try_get("revoked_at")?)?,
                    purpose: TokenPurpose::parse(&r.try_get::<String, _>("purpose")?)?,
                })
            })
            .collect()
    }

    /// Revoke a token; returns the C-key it belonged to.
    pub async fn revoke_token(&self, system_id: i64, token_id: i64) -> Result<i64> {
        let row = sqlx::query("SELECT c_key_id FROM api_tokens WHERE id = $1 AND system_id = $2")
            .bind(token_id)
            .bind(system_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound {
                kind: "token",
                id: token_id,
            })?;
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(ts(Utc::now()))
            .bind(token_id)
            .execute(self.pool())
            .await?;
        Ok(row.try_get("c_key_id")?)
    }
}
