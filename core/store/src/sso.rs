//! Single sign-on: per-system SAML settings, the SSO identities C-keys enrolled, requests
//! awaiting the identity provider's answer, the replay cache of assertion ids, and the
//! server-side sessions of administrators logged in by SSO.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Result, Store, StoreError, events::EventDraft, objects::Actor, opt_ts, parse_ts, ts};

/// Prefix of session secrets (recognisable to secret scanners).
pub const SESSION_PREFIX: &str = "lgs_";

/// One locking system's SSO settings (manual §6.4 "Single sign on").
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SsoSettings {
    /// SSO login offered (set by the super administrator).
    pub enabled: bool,
    /// The identity provider's metadata document, as imported.
    #[serde(skip)]
    pub idp_metadata: Option<String>,
    /// Where the metadata was imported from, when from a URL (refreshed from there).
    pub idp_metadata_url: Option<String>,
    /// The identity provider's entity id (read from the metadata).
    pub idp_entity_id: Option<String>,
    /// When the metadata was last imported.
    pub idp_metadata_loaded_at: Option<DateTime<Utc>>,
    /// The assertion attribute naming the subject; none: the NameID.
    pub subject_attribute: Option<String>,
    /// The service provider's certificate (PEM), published in its metadata.
    #[serde(skip)]
    pub sp_certificate_pem: Option<String>,
    /// When the SP certificate was (re)created.
    pub sp_certificate_created_at: Option<DateTime<Utc>>,
}

/// Why a request was sent to the identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SsoPurpose {
    /// An administrator logs in.
    Login,
    /// An administrator logged in with the C-key enrols its SSO identity (manual §8.10).
    Enrol,
}

impl SsoPurpose {
    fn as_str(self) -> &'static str {
        match self {
            SsoPurpose::Login => "login",
            SsoPurpose::Enrol => "enrol",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "login" => Ok(SsoPurpose::Login),
            "enrol" => Ok(SsoPurpose::Enrol),
            other => Err(StoreError::Corrupt(format!(
                "sso_requests.purpose '{other}'"
            ))),
        }
    }
}

/// An SSO identity a C-key enrolled.
#[derive(Debug, Clone, Serialize)]
pub struct SsoIdentity {
    pub c_key_id: i64,
    pub subject: String,
    pub enrolled_at: DateTime<Utc>,
}

/// What a verified response did.
#[derive(Debug, Clone)]
pub enum SsoOutcome {
    /// A session for this C-key: the cookie's secret (shown once) and its CSRF token.
    LoggedIn {
        c_key_id: i64,
        session: NewSession,
        return_to: Option<String>,
    },
    /// The C-key enrolled this subject.
    Enrolled {
        c_key_id: i64,
        return_to: Option<String>,
    },
}

/// A session just opened.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub secret: String,
    pub csrf_token: String,
    pub absolute_expires_at: DateTime<Utc>,
}

/// Who a presented session cookie authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAuth {
    pub session_id: i64,
    pub system_id: i64,
    pub c_key_id: i64,
    pub csrf_token: String,
    pub absolute_expires_at: DateTime<Utc>,
}

/// A verified identity-provider answer, as the core hands it to the store.
#[derive(Debug, Clone)]
pub struct VerifiedAssertion<'a> {
    pub request_id: &'a str,
    pub assertion_id: &'a str,
    pub not_on_or_after: DateTime<Utc>,
    pub subject: &'a str,
    /// The login-state cookie's secret the answer came with (a login must bring the one its
    /// request was started with).
    pub browser_secret: Option<&'a str>,
}

/// An authentication request sent to the identity provider, awaiting its answer.
#[derive(Debug, Clone, Copy)]
pub struct AwaitedRequest<'a> {
    /// The request's ID (the answer's `InResponseTo`).
    pub request_id: &'a str,
    pub purpose: SsoPurpose,
    /// The enrolling C-key (enrolment only).
    pub c_key_id: Option<i64>,
    /// Where the browser goes after the answer (a path of this gateway).
    pub return_to: Option<&'a str>,
    /// The secret of the login-state cookie of the browser that started a login.
    pub browser_secret: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
    /// Most requests of the system awaiting an answer at once (the login endpoint is public:
    /// its rows are bounded); beyond, the request is refused.
    pub max_awaited: usize,
}

/// A new secret for a browser's login-state cookie.
pub fn new_browser_secret() -> Result<String> {
    random_hex(32)
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    getrandom::getrandom(&mut b).map_err(|e| StoreError::Refused {
        message: format!("no randomness for a session: {e}"),
    })?;
    Ok(hex::encode(b))
}

impl Store {
    /// A system's SSO settings (all off when never set).
    pub async fn sso_settings(&self, system_id: i64) -> Result<SsoSettings> {
        let row = sqlx::query(
            "SELECT enabled, idp_metadata, idp_metadata_url, idp_entity_id, idp_metadata_loaded_at, subject_attribute, sp_certificate_pem, sp_certificate_created_at FROM sso_settings WHERE system_id = $1",
        )
        .bind(system_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else {
            return Ok(SsoSettings::default());
        };
        Ok(SsoSettings {
            enabled: r.try_get::<i64, _>("enabled")? != 0,
            idp_metadata: r.try_get("idp_metadata")?,
            idp_metadata_url: r.try_get("idp_metadata_url")?,
            idp_entity_id: r.try_get("idp_entity_id")?,
            idp_metadata_loaded_at: opt_ts(r.try_get("idp_metadata_loaded_at")?)?,
            subject_attribute: r.try_get("subject_attribute")?,
            sp_certificate_pem: r.try_get("sp_certificate_pem")?,
            sp_certificate_created_at: opt_ts(r.try_get("sp_certificate_created_at")?)?,
        })
    }

    /// Writes a system's SSO settings with an `sso_settings_changed` event naming what changed
    /// (never the metadata or certificate text). Architecture invariant: an enrolled subject
    /// means "this subject at this identity provider": another identity provider (entity id)
    /// or another subject attribute forgets every SSO identity of the system and ends its
    /// sessions (each administrator enrols again); disabling SSO ends the sessions.
    pub async fn put_sso_settings(
        &self,
        system_id: i64,
        new: &SsoSettings,
        actor: &Actor,
    ) -> Result<()> {
        let before = self.sso_settings(system_id).await?;
        let mut tx = self.write_tx().await?;
        let other_provider = before.idp_entity_id != new.idp_entity_id
            || before.subject_attribute != new.subject_attribute;
        if other_provider {
            sqlx::query("DELETE FROM sso_identities WHERE system_id = $1")
                .bind(system_id)
                .execute(&mut *tx)
                .await?;
        }
        if other_provider || !new.enabled {
            sqlx::query(
                "UPDATE admin_sessions SET ended_at = $1 WHERE system_id = $2 AND ended_at IS NULL",
            )
            .bind(ts(Utc::now()))
            .bind(system_id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM sso_settings WHERE system_id = $1")
            .bind(system_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sso_settings (system_id, enabled, idp_metadata, idp_metadata_url, idp_entity_id, idp_metadata_loaded_at, subject_attribute, sp_certificate_pem, sp_certificate_created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(system_id)
        .bind(i64::from(new.enabled))
        .bind(new.idp_metadata.clone())
        .bind(new.idp_metadata_url.clone())
        .bind(new.idp_entity_id.clone())
        .bind(new.idp_metadata_loaded_at.map(ts))
        .bind(new.subject_attribute.clone())
        .bind(new.sp_certificate_pem.clone())
        .bind(new.sp_certificate_created_at.map(ts))
        .bind(ts(Utc::now()))
        .execute(&mut *tx)
        .await?;
        let b = serde_json::to_value(&before).ok();
        let a = serde_json::to_value(new).ok();
        let label: String = sqlx::query("SELECT name FROM locking_systems WHERE id = $1")
            .bind(system_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("name")?;
        EventDraft {
            object_kind: "locking_system".into(),
            object_id: None,
            object_label: label,
            action: "sso_settings_changed".into(),
            changes: lockgate_model::event::diff(b.as_ref(), a.as_ref()),
        }
        .insert(&mut tx, system_id, actor)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The SSO identities enrolled in a system.
    pub async fn sso_identities(&self, system_id: i64) -> Result<Vec<SsoIdentity>> {
        let rows = sqlx::query(
            "SELECT c_key_id, subject, enrolled_at FROM sso_identities WHERE system_id = $1 ORDER BY c_key_id",
        )
        .bind(system_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SsoIdentity {
                    c_key_id: r.try_get("c_key_id")?,
                    subject: r.try_get("subject")?,
                    enrolled_at: parse_ts(&r.try_get::<String, _>("enrolled_at")?)?,
                })
            })
            .collect()
    }

    /// Forgets a C-key's SSO identity (it must enrol again before its next SSO login) and ends
    /// its SSO sessions; `false` when it had none.
    pub async fn remove_sso_identity(
        &self,
        system_id: i64,
        c_key_id: i64,
        actor: &Actor,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let gone = sqlx::query("DELETE FROM sso_identities WHERE system_id = $1 AND c_key_id = $2")
            .bind(system_id)
            .bind(c_key_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE admin_sessions SET ended_at = $1 WHERE c_key_id = $2 AND ended_at IS NULL",
        )
        .bind(ts(Utc::now()))
        .bind(c_key_id)
        .execute(&mut *tx)
        .await?;
        Self::c_key_event(
            &mut tx,
            system_id,
            c_key_id,
            "sso_identity_removed",
            Some(actor),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// An event on a C-key, by `actor` or, without one, by the C-key itself (an SSO login or
    /// enrolment is the administrator's own act).
    async fn c_key_event(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
        c_key_id: i64,
        action: &str,
        actor: Option<&Actor>,
    ) -> Result<()> {
        let label = Self::c_key_label(&mut *conn, system_id, c_key_id).await?;
        let own = Actor {
            c_key_id: Some(c_key_id),
            label: label.clone(),
            correlation_id: crate::objects::new_correlation_id(),
        };
        EventDraft::new(
            lockgate_model::ObjectKind::CKey,
            Some(c_key_id),
            &label,
            action,
            serde_json::json!({}),
        )
        .insert(conn, system_id, actor.unwrap_or(&own))
        .await
    }

    async fn c_key_label(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
        c_key_id: i64,
    ) -> Result<String> {
        let row = sqlx::query(
            "SELECT name FROM objects WHERE id = $1 AND system_id = $2 AND kind = 'c_key'",
        )
        .bind(c_key_id)
        .bind(system_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound {
            kind: "c_key",
            id: c_key_id,
        })?;
        Ok(row.try_get("name")?)
    }

    /// Records an authentication request sent to the identity provider.
    pub async fn create_sso_request(&self, system_id: i64, r: &AwaitedRequest<'_>) -> Result<()> {
        let now = Utc::now();
        let mut tx = self.write_tx().await?;
        // Requests never answered are forgotten once expired.
        sqlx::query("DELETE FROM sso_requests WHERE expires_at < $1")
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        let awaited: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM sso_requests WHERE system_id = $1")
                .bind(system_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        if usize::try_from(awaited).unwrap_or(usize::MAX) >= r.max_awaited {
            return Err(StoreError::Refused {
                message: format!(
                    "{awaited} logins of this locking system already await the identity provider's answer, the most it keeps; try again in a few minutes"
                ),
            });
        }
        sqlx::query(
            "INSERT INTO sso_requests (request_id, system_id, purpose, c_key_id, return_to, created_at, expires_at, browser_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(r.request_id)
        .bind(system_id)
        .bind(r.purpose.as_str())
        .bind(r.c_key_id)
        .bind(r.return_to)
        .bind(ts(now))
        .bind(ts(r.expires_at))
        .bind(r.browser_secret.map(hash))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies a verified identity-provider answer in one transaction: the request it answers
    /// is used up (it must exist in this system, unexpired), the assertion id enters the replay
    /// cache (a replay is refused), then the login opens a session for the C-key that enrolled
    /// the subject, or the enrolment binds the subject to the requesting C-key. Refusals write
    /// nothing (`Refused` names the rule).
    pub async fn complete_sso(
        &self,
        system_id: i64,
        answer: &VerifiedAssertion<'_>,
        session_lifetime: Duration,
        now: DateTime<Utc>,
    ) -> Result<SsoOutcome> {
        let refused = |m: &str| StoreError::Refused {
            message: m.to_string(),
        };
        let mut tx = self.write_tx().await?;
        let req = sqlx::query(
            "SELECT purpose, c_key_id, return_to, expires_at, browser_hash FROM sso_requests WHERE request_id = $1 AND system_id = $2",
        )
        .bind(answer.request_id)
        .bind(system_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| refused("the response answers no request of this system that is still awaited (InResponseTo unknown, already used or of another system)"))?;
        if parse_ts(&req.try_get::<String, _>("expires_at")?)? < now {
            return Err(refused(
                "the request this response answers has expired; log in again",
            ));
        }
        // Architecture invariant: a login is completed only in the browser that started it
        // (its login-state cookie), so nobody can push their own login into another browser.
        let purpose = SsoPurpose::parse(&req.try_get::<String, _>("purpose")?)?;
        let bound: Option<String> = req.try_get("browser_hash")?;
        let same_browser = match (&bound, answer.browser_secret) {
            (Some(h), Some(secret)) => {
                let got = hash(secret);
                got.len() == h.len()
                    && got
                        .bytes()
                        .zip(h.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            }
            (Some(_), None) => false,
            (None, _) => purpose == SsoPurpose::Enrol,
        };
        if !same_browser {
            return Err(refused(
                "this login was started in another browser (its login-state cookie is missing or different); start the login again here",
            ));
        }
        // Architecture invariant: a request is answered once. Two posts of one response race
        // here: the second DELETE waits for the first transaction and then finds nothing.
        let taken = sqlx::query("DELETE FROM sso_requests WHERE request_id = $1")
            .bind(answer.request_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if taken == 0 {
            return Err(refused(
                "the request this response answers was already used",
            ));
        }
        sqlx::query("DELETE FROM sso_assertions WHERE not_on_or_after < $1")
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        let seen = sqlx::query(
            "SELECT 1 AS one FROM sso_assertions WHERE system_id = $1 AND assertion_id = $2",
        )
        .bind(system_id)
        .bind(answer.assertion_id)
        .fetch_optional(&mut *tx)
        .await?;
        if seen.is_some() {
            return Err(refused("this assertion was already used (replay)"));
        }
        sqlx::query(
            "INSERT INTO sso_assertions (system_id, assertion_id, not_on_or_after) VALUES ($1, $2, $3)",
        )
        .bind(system_id)
        .bind(answer.assertion_id)
        .bind(ts(answer.not_on_or_after))
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            // The same assertion posted for another request at the same moment.
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                refused("this assertion was already used (replay)")
            }
            _ => e.into(),
        })?;
        let return_to: Option<String> = req.try_get("return_to")?;
        let outcome = match purpose {
            SsoPurpose::Login => {
                let c_key_id: i64 = sqlx::query(
                    "SELECT c_key_id FROM sso_identities WHERE system_id = $1 AND subject = $2",
                )
                .bind(system_id)
                .bind(answer.subject)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| refused("no C-key of this system has enrolled this SSO identity; log in with the C-key and enrol it first"))?
                .try_get("c_key_id")?;
                let session =
                    Self::open_session(&mut tx, system_id, c_key_id, session_lifetime, now).await?;
                Self::c_key_event(&mut tx, system_id, c_key_id, "sso_login", None).await?;
                SsoOutcome::LoggedIn {
                    c_key_id,
                    session,
                    return_to,
                }
            }
            SsoPurpose::Enrol => {
                let c_key_id: i64 =
                    req.try_get::<Option<i64>, _>("c_key_id")?.ok_or_else(|| {
                        StoreError::Corrupt("an enrolment request without its C-key".into())
                    })?;
                let other = sqlx::query(
                    "SELECT c_key_id FROM sso_identities WHERE system_id = $1 AND subject = $2 AND c_key_id <> $3",
                )
                .bind(system_id)
                .bind(answer.subject)
                .bind(c_key_id)
                .fetch_optional(&mut *tx)
                .await?;
                if other.is_some() {
                    return Err(refused(
                        "this SSO identity is already enrolled by another C-key; remove it there first",
                    ));
                }
                sqlx::query("DELETE FROM sso_identities WHERE c_key_id = $1")
                    .bind(c_key_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO sso_identities (c_key_id, system_id, subject, enrolled_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(c_key_id)
                .bind(system_id)
                .bind(answer.subject)
                .bind(ts(now))
                .execute(&mut *tx)
                .await?;
                Self::c_key_event(&mut tx, system_id, c_key_id, "sso_identity_enrolled", None)
                    .await?;
                SsoOutcome::Enrolled {
                    c_key_id,
                    return_to,
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn open_session(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
        c_key_id: i64,
        lifetime: Duration,
        now: DateTime<Utc>,
    ) -> Result<NewSession> {
        let secret = format!("{SESSION_PREFIX}{}", random_hex(32)?);
        let csrf_token = random_hex(16)?;
        let absolute_expires_at = now + lifetime;
        sqlx::query(
            "INSERT INTO admin_sessions (session_hash, system_id, c_key_id, method, csrf_token, created_at, last_seen_at, absolute_expires_at) VALUES ($1, $2, $3, 'sso', $4, $5, $5, $6)",
        )
        .bind(hash(&secret))
        .bind(system_id)
        .bind(c_key_id)
        .bind(&csrf_token)
        .bind(ts(now))
        .bind(ts(absolute_expires_at))
        .execute(&mut *conn)
        .await?;
        Ok(NewSession {
            secret,
            csrf_token,
            absolute_expires_at,
        })
    }

    /// The session a cookie's secret names, if it has not ended, is within its absolute
    /// lifetime and was used within `idle`; using it moves its idle clock (at most once a
    /// minute, to spare writes).
    pub async fn authenticate_session(
        &self,
        secret: &str,
        idle: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionAuth>> {
        if !secret.starts_with(SESSION_PREFIX) || secret.len() > 128 {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT id, system_id, c_key_id, csrf_token, last_seen_at, absolute_expires_at FROM admin_sessions WHERE session_hash = $1 AND ended_at IS NULL",
        )
        .bind(hash(secret))
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let last_seen = parse_ts(&r.try_get::<String, _>("last_seen_at")?)?;
        let absolute = parse_ts(&r.try_get::<String, _>("absolute_expires_at")?)?;
        if absolute <= now || last_seen + idle <= now {
            return Ok(None);
        }
        let id: i64 = r.try_get("id")?;
        if now - last_seen > Duration::seconds(60) {
            sqlx::query("UPDATE admin_sessions SET last_seen_at = $1 WHERE id = $2")
                .bind(ts(now))
                .bind(id)
                .execute(self.pool())
                .await?;
        }
        Ok(Some(SessionAuth {
            session_id: id,
            system_id: r.try_get("system_id")?,
            c_key_id: r.try_get("c_key_id")?,
            csrf_token: r.try_get("csrf_token")?,
            absolute_expires_at: absolute,
        }))
    }

    /// Ends a session (logout); `false` when it had already ended.
    pub async fn end_session(&self, session_id: i64) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE admin_sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL",
        )
        .bind(ts(Utc::now()))
        .bind(session_id)
        .execute(self.pool())
        .await?
        .rows_affected()
            > 0)
    }
}
