//! The `smtp` capability: sending email through the relay of the gateway
//! configuration (`[plugins.smtp]`) with `lettre`'s SMTP connection, one
//! connection per message.
//!
//! The sender, relay, TLS and credentials come from the configuration; a
//! plugin names only recipients and content. STARTTLS is required unless the
//! configuration sets `tls = "implicit"` (TLS from the first byte) or, for a
//! relay on the same host, `tls = "none"`.
//!
//! Every header value and address is refused when it holds CR, LF or NUL
//! (header injection), before anything is sent. The outcome says what the
//! relay knows: a 4xx answer or a failure before the data was sent is
//! `transient` (retry), a 5xx answer is `permanent`, and a connection lost
//! after the data was sent is `unknown` (the relay may have the message;
//! resending blindly could deliver it twice).

use std::path::PathBuf;
use std::time::Duration;

use lettre::address::{Address, Envelope};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use serde::{Deserialize, Serialize};

use crate::HostError;
use crate::types::{Email, SendError};

/// Most recipients of one message.
pub const SMTP_MAX_RECIPIENTS: usize = 50;
/// Largest text or HTML body, bytes.
pub const SMTP_MAX_BODY_BYTES: usize = 1 << 20;
/// Longest subject, bytes.
pub const SMTP_MAX_SUBJECT_BYTES: usize = 998;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpTls {
    /// Plain connect, then STARTTLS; a relay that does not offer it is refused.
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS (a relay on the same host only).
    None,
}

/// The relay (`[plugins.smtp]`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Relay host name or IP address.
    pub host: String,
    /// Relay port (587 submission, 465 implicit TLS, 25).
    pub port: u16,
    /// Connection protection; `starttls` unless the site says otherwise.
    pub tls: SmtpTls,
    /// PEM file with the CA certificates of the relay; none: the web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// The sender of every message, e.g. `Lockgate <lockgate@example.com>`.
    pub from: String,
    /// Name sent with EHLO.
    pub hello_name: String,
    /// User name for AUTH PLAIN/LOGIN; none: no authentication.
    pub username: Option<String>,
    /// Password (prefer `password_env`).
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// Name of the environment variable holding the password.
    pub password_env: Option<String>,
    /// Time limit of each step (connect, each command, the data), milliseconds.
    pub timeout_ms: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: String::new(),
            port: 587,
            tls: SmtpTls::Starttls,
            ca_file: None,
            from: String::new(),
            hello_name: "localhost".into(),
            username: None,
            password: None,
            password_env: None,
            timeout_ms: 30_000,
        }
    }
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("from", &self.from)
            .field("hello_name", &self.hello_name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl SmtpConfig {
    /// Checks the values (the CA file is read when the host starts: [`SmtpConfig::relay`]).
    pub fn validate(&self) -> Result<(), HostError> {
        self.check().map(|_| ())
    }

    fn check(&self) -> Result<Mailbox, HostError> {
        let bad = |m: String| Err(HostError::Config(format!("smtp: {m}")));
        if self.host.trim().is_empty() || self.host.contains(['/', ' ']) {
            return bad(format!("host `{}` is not a host name", self.host));
        }
        if self.port == 0 {
            return bad("port must be positive".into());
        }
        let from: Mailbox = match self.from.parse() {
            Ok(m) => m,
            Err(e) => return bad(format!("from `{}`: {e}", self.from)),
        };
        if self.hello_name.is_empty() || !self.hello_name.chars().all(|c| c.is_ascii_graphic()) {
            return bad("hello_name must be a host name".into());
        }
        if self.password.is_some() && self.password_env.is_some() {
            return bad("set password or password_env, not both".into());
        }
        if (self.password.is_some() || self.password_env.is_some()) && self.username.is_none() {
            return bad("a password needs a username".into());
        }
        if self.timeout_ms == 0 {
            return bad("timeout_ms must be positive".into());
        }
        Ok(from)
    }

    /// The ready-to-use relay: the values checked and the CA file loaded.
    pub fn relay(&self) -> Result<SmtpRelay, HostError> {
        let from = self.check()?;
        let tls = match self.tls {
            SmtpTls::None => None,
            SmtpTls::Starttls | SmtpTls::Implicit => {
                let mut builder = TlsParameters::builder(self.host.clone());
                if let Some(ca) = &self.ca_file {
                    let pem = std::fs::read(ca).map_err(|e| {
                        HostError::Config(format!("smtp.ca_file `{}`: {e}", ca.display()))
                    })?;
                    let cert = Certificate::from_pem(&pem).map_err(|e| {
                        HostError::Config(format!("smtp.ca_file `{}`: {e}", ca.display()))
                    })?;
                    builder = builder.add_root_certificate(cert);
                }
                Some(
                    builder
                        .build_rustls()
                        .map_err(|e| HostError::Config(format!("smtp: TLS: {e}")))?,
                )
            }
        };
        Ok(SmtpRelay {
            config: self.clone(),
            from,
            tls,
        })
    }

    fn credentials(&self) -> Result<Option<Credentials>, SendError> {
        let Some(user) = &self.username else {
            return Ok(None);
        };
        let password = match (&self.password, &self.password_env) {
            (Some(p), _) => p.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                SendError::Transient(format!("the SMTP password variable `{var}` is not set"))
            })?,
            (None, None) => String::new(),
        };
        Ok(Some(Credentials::new(user.clone(), password)))
    }
}

/// A configured relay, ready to send.
#[derive(Clone)]
pub struct SmtpRelay {
    config: SmtpConfig,
    from: Mailbox,
    tls: Option<TlsParameters>,
}

impl std::fmt::Debug for SmtpRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpRelay")
            .field("host", &self.config.host)
            .field("port", &self.config.port)
            .field("tls", &self.config.tls)
            .finish_non_exhaustive()
    }
}

/// Refuses CR, LF and NUL in a header value or address.
fn clean(field: &str, value: &str) -> Result<(), SendError> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(SendError::Invalid(format!(
            "{field} contains CR, LF or NUL"
        )));
    }
    Ok(())
}

/// Builds the message and its envelope, refusing anything unsafe first.
fn compose(from: &Mailbox, hello: &str, email: &Email) -> Result<(Envelope, Vec<u8>), SendError> {
    let invalid = |m: String| Err(SendError::Invalid(m));
    if email.to.is_empty() || email.to.len() > SMTP_MAX_RECIPIENTS {
        return invalid(format!("to must list 1-{SMTP_MAX_RECIPIENTS} addresses"));
    }
    clean("subject", &email.subject)?;
    if email.subject.len() > SMTP_MAX_SUBJECT_BYTES {
        return invalid(format!("subject over {SMTP_MAX_SUBJECT_BYTES} bytes"));
    }
    if email.text.len() > SMTP_MAX_BODY_BYTES
        || email
            .html
            .as_ref()
            .is_some_and(|h| h.len() > SMTP_MAX_BODY_BYTES)
    {
        return invalid(format!(
            "bodies must be at most {SMTP_MAX_BODY_BYTES} bytes"
        ));
    }
    if email.text.contains('\0') || email.html.as_ref().is_some_and(|h| h.contains('\0')) {
        return invalid("a body contains NUL".into());
    }
    if email.message_id.is_empty()
        || email.message_id.len() > 128
        || !email
            .message_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return invalid("message-id must be 1-128 of A-Z a-z 0-9 . - _ :".into());
    }
    let mut recipients = Vec::with_capacity(email.to.len());
    for (i, to) in email.to.iter().enumerate() {
        clean(&format!("to[{i}]"), to)?;
        let address: Address = to
            .parse()
            .map_err(|e| SendError::Invalid(format!("to[{i}] `{to}`: {e}")))?;
        recipients.push(address);
    }
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(email.subject.clone())
        .message_id(Some(format!("<{}@{hello}>", email.message_id)));
    for r in &recipients {
        builder = builder.to(Mailbox::new(None, r.clone()));
    }
    let message = match &email.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            html.clone(),
        )),
        None => builder.singlepart(SinglePart::plain(email.text.clone())),
    };
    let mut message = message.map_err(|e| SendError::Invalid(e.to_string()))?;
    if let Some(lang) = &email.language {
        clean("language", lang)?;
        if lang.is_empty()
            || lang.len() > 35
            || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return invalid(format!("language `{lang}` is not a language tag"));
        }
        message.headers_mut().insert_raw(HeaderValue::new(
            HeaderName::new_from_ascii_str("Content-Language"),
            lang.clone(),
        ));
    }
    let envelope = Envelope::new(Some(from.email.clone()), recipients)
        .map_err(|e| SendError::Invalid(e.to_string()))?;
    Ok((envelope, message.formatted()))
}

/// A failure before the data went out: nothing was delivered.
fn before_data(e: &lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::Permanent(e.to_string())
    } else {
        SendError::Transient(e.to_string())
    }
}

impl SmtpRelay {
    /// Sends one message (see the module documentation for the outcomes).
    pub async fn send(&self, email: &Email) -> Result<(), SendError> {
        let cfg = &self.config;
        let (envelope, bytes) = compose(&self.from, &cfg.hello_name, email)?;
        let step = Duration::from_millis(cfg.timeout_ms);
        let timed_out = || {
            SendError::Transient(format!(
                "the relay did not answer within {} ms",
                cfg.timeout_ms
            ))
        };
        let hello = ClientId::Domain(cfg.hello_name.clone());
        let implicit = (cfg.tls == SmtpTls::Implicit)
            .then(|| self.tls.clone())
            .flatten();
        let mut conn = tokio::time::timeout(
            step,
            AsyncSmtpConnection::connect_tokio1(
                (cfg.host.as_str(), cfg.port),
                Some(step),
                &hello,
                implicit,
                None,
            ),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| before_data(&e))?;
        let outcome = self
            .exchange(&mut conn, &hello, &envelope, &bytes, step)
            .await;
        match &outcome {
            Ok(()) => {
                let _ = tokio::time::timeout(step, conn.quit()).await;
            }
            Err(_) => conn.abort().await,
        }
        outcome
    }

    async fn exchange(
        &self,
        conn: &mut AsyncSmtpConnection,
        hello: &ClientId,
        envelope: &Envelope,
        bytes: &[u8],
        step: Duration,
    ) -> Result<(), SendError> {
        let cfg = &self.config;
        let timed_out = || {
            SendError::Transient(format!(
                "the relay did not answer within {} ms",
                cfg.timeout_ms
            ))
        };
        if cfg.tls == SmtpTls::Starttls {
            if !conn.can_starttls() {
                // Required: never fall back to clear text.
                return Err(SendError::Transient(
                    "the relay does not offer STARTTLS".into(),
                ));
            }
            let tls = self
                .tls
                .clone()
                .ok_or_else(|| SendError::Denied("no TLS parameters".into()))?;
            tokio::time::timeout(step, conn.starttls(tls, hello))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| before_data(&e))?;
        }
        if let Some(credentials) = cfg.credentials()? {
            tokio::time::timeout(
                step,
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials),
            )
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| before_data(&e))?;
        }
        let mut mail_options = Vec::new();
        if !bytes.is_ascii() {
            mail_options.push(lettre::transport::smtp::extension::MailParameter::Body(
                lettre::transport::smtp::extension::MailBodyParameter::EightBitMime,
            ));
        }
        for command in
            std::iter::once(Mail::new(envelope.from().cloned(), mail_options).to_string())
                .chain(
                    envelope
                        .to()
                        .iter()
                        .map(|to| Rcpt::new(to.clone(), Vec::new()).to_string()),
                )
                .chain(std::iter::once(Data.to_string()))
        {
            tokio::time::timeout(step, conn.command(command))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| before_data(&e))?;
        }
        // From here on the relay may have the message.
        match tokio::time::timeout(step, conn.message(bytes)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_transient() => Err(SendError::Transient(e.to_string())),
            Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Ok(Err(e)) => Err(SendError::Unknown(format!(
                "the connection failed after the message data was sent ({e}); the relay may have accepted it"
            ))),
            Err(_) => Err(SendError::Unknown(format!(
                "no answer within {} ms after the message data was sent; the relay may have accepted it",
                cfg.timeout_ms
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email {
            to: vec!["ada@example.com".into()],
            subject: "Key overdue".into(),
            text: "Please return key K-1.".into(),
            html: None,
            language: Some("en".into()),
            message_id: "outbox-42".into(),
        }
    }

    fn from() -> Mailbox {
        "Lockgate <lockgate@example.com>".parse().unwrap()
    }

    #[test]
    fn a_clean_message_is_composed_with_its_headers() {
        let (envelope, bytes) = compose(&from(), "gw.example.com", &email()).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(envelope.to().len(), 1);
        assert!(
            text.contains("Message-ID: <outbox-42@gw.example.com>"),
            "{text}"
        );
        assert!(text.contains("Content-Language: en"), "{text}");
        assert!(text.contains("Subject: Key overdue"), "{text}");
    }

    #[test]
    fn header_injection_is_refused() {
        for (field, mutate) in [
            (
                "subject",
                (|e: &mut Email| e.subject = "Hi\r\nBcc: x@evil.test".into()) as fn(&mut Email),
            ),
            ("to[0]", |e: &mut Email| {
                e.to = vec!["a@b.test\r\nRCPT TO:<x@evil.test>".into()]
            }),
            ("language", |e: &mut Email| {
                e.language = Some("en\nX-Evil: 1".into())
            }),
            ("subject", |e: &mut Email| e.subject = "nul\0".into()),
        ] {
            let mut e = email();
            mutate(&mut e);
            match compose(&from(), "gw", &e) {
                Err(SendError::Invalid(m)) => assert!(m.contains(field), "{field}: {m}"),
                other => panic!("{field}: expected invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn bad_recipients_and_ids_are_refused() {
        let mut e = email();
        e.to = vec!["not an address".into()];
        assert!(matches!(
            compose(&from(), "gw", &e),
            Err(SendError::Invalid(_))
        ));
        e.to = (0..51).map(|i| format!("p{i}@example.com")).collect();
        assert!(matches!(
            compose(&from(), "gw", &e),
            Err(SendError::Invalid(_))
        ));
        let mut e = email();
        e.message_id = "<x>".into();
        assert!(matches!(
            compose(&from(), "gw", &e),
            Err(SendError::Invalid(_))
        ));
    }

    #[test]
    fn the_relay_configuration_is_checked() {
        let ok = SmtpConfig {
            host: "127.0.0.1".into(),
            from: "lockgate@example.com".into(),
            ..SmtpConfig::default()
        };
        assert!(ok.validate().is_ok());
        let bad_from = SmtpConfig {
            from: "lockgate".into(),
            ..ok.clone()
        };
        assert!(
            bad_from
                .validate()
                .unwrap_err()
                .to_string()
                .contains("from")
        );
        let secret = SmtpConfig {
            username: Some("u".into()),
            password: Some("s3cret".into()),
            ..ok
        };
        assert!(!format!("{secret:?}").contains("s3cret"));
    }
}
