//! The gateway's configuration: one TOML file, environment overrides, validated before anything starts.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Why a configuration was refused; always names the key and, for the file, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: `{key}`: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("`{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("{0}")]
    Tls(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub bootstrap: BootstrapConfig,
    pub licence: LicenceConfig,
    pub plugins: PluginsConfig,
    pub background: BackgroundConfig,
    pub access: AccessConfig,
    pub pds: PdsConfig,
    pub sso: SsoConfig,
    pub scim: ScimConfig,
    pub web_services: WebServicesConfig,
}

/// `[plugins.sources.NAME]`: the core's policy for one directory-source plugin's syncs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// An entry that fails validation: `skip` (default; listed in the report with field and
    /// reason, the rest applied) or `refuse` (the whole sync refused, nothing written).
    pub on_invalid: lockgate_store::directory::OnInvalid,
}

/// `[web_services]`: `web-service` plugins mounted under `/ws`
/// (docs/connectors/hr-web-services.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebServicesConfig {
    /// Mount name → the plugin answering it: `mounts = { hr = "hr-soap" }` serves `/ws/hr`.
    pub mounts: std::collections::BTreeMap<String, String>,
    /// Largest request body of a web service, bytes (1 KiB to 64 MiB; default 4 MiB).
    pub max_body_bytes: usize,
    /// Accept a WS-Security UsernameToken password from a loopback peer over plain HTTP (a
    /// TLS-terminating proxy on this host). Off (default): only over the listener's own TLS.
    /// Leave it off where a port forwarder makes remote clients appear as 127.0.0.1.
    pub loopback_passwords: bool,
}

impl Default for WebServicesConfig {
    fn default() -> Self {
        WebServicesConfig {
            mounts: Default::default(),
            max_body_bytes: lockgate_api::web_services::DEFAULT_MAX_BODY_BYTES,
            loopback_passwords: false,
        }
    }
}

impl WebServicesConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (mount, plugin) in &self.mounts {
            let ok = (1..=32).contains(&mount.len())
                && mount
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(ConfigError::Invalid {
                    key: format!("web_services.mounts.{mount}"),
                    message: "a mount name is 1-32 characters of a-z, 0-9 and '-'".into(),
                });
            }
            if plugin.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    key: format!("web_services.mounts.{mount}"),
                    message: "names the web-service plugin (under [plugins]) answering the mount"
                        .into(),
                });
            }
        }
        if !(1024..=64 << 20).contains(&self.max_body_bytes) {
            return Err(ConfigError::Invalid {
                key: "web_services.max_body_bytes".into(),
                message: "must be 1024 to 67108864 (64 MiB)".into(),
            });
        }
        Ok(())
    }

    /// The API's view.
    pub fn api(&self) -> lockgate_api::web_services::WebServicesConfig {
        lockgate_api::web_services::WebServicesConfig {
            mounts: self.mounts.clone(),
            max_body_bytes: self.max_body_bytes,
            loopback_passwords: self.loopback_passwords,
        }
    }
}

/// `[scim]`: SCIM 2.0 provisioning under `/scim/v2` (docs/connectors/scim.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScimConfig {
    /// Serve `/scim/v2`; off: it answers 404.
    pub enabled: bool,
    /// The gateway's base URL as provisioning clients reach it (`https://host[:port]`, no
    /// path): every `meta.location` derives from it. `http` only for a loopback host.
    pub public_url: Option<String>,
}

impl ScimConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let Some(public_url) = &self.public_url else {
            return Err(ConfigError::Invalid {
                key: "scim.public_url".into(),
                message: "required when scim.enabled: the base of every meta.location".into(),
            });
        };
        let ok = match url::Url::parse(public_url) {
            Ok(u) => {
                let loopback = match u.host() {
                    Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                    Some(url::Host::Ipv4(a)) => a.is_loopback(),
                    Some(url::Host::Ipv6(a)) => a.is_loopback(),
                    None => false,
                };
                (u.scheme() == "https" || (u.scheme() == "http" && loopback))
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.path().trim_end_matches('/').is_empty()
            }
            Err(_) => false,
        };
        if !ok {
            return Err(ConfigError::Invalid {
                key: "scim.public_url".into(),
                message: "must be the gateway's https base URL, e.g. https://lockgate.example.com (no path, query or fragment; http only for a loopback host)".into(),
            });
        }
        Ok(())
    }

    /// The API's view, when SCIM is enabled.
    pub fn api(&self) -> Option<lockgate_api::scim::ScimConfig> {
        self.public_url
            .as_ref()
            .filter(|_| self.enabled)
            .map(|u| lockgate_api::scim::ScimConfig {
                public_url: u.trim_end_matches('/').to_string(),
            })
    }
}

/// `[sso]`: SAML single sign-on for administrators (docs/connectors/saml.md). Each locking
/// system's identity provider, certificate and switch are set through `/api/v1/sso`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SsoConfig {
    /// The `sso` plugin that speaks the protocol (e.g. "saml-sso"); unset: no SSO.
    pub plugin: Option<String>,
    /// The gateway's public base URL as browsers and the identity provider reach it
    /// (`https://lockgate.example.com`); each system's entity id and ACS derive from it.
    pub public_url: String,
    /// A session unused this long ends (1 minute – 24 hours).
    pub session_idle: Span,
    /// A session ends this long after login, however used (5 minutes – 7 days).
    pub session_absolute: Span,
    /// Clock difference tolerated on an assertion's time conditions (0–600 seconds).
    pub clock_skew_seconds: u32,
    /// How long a login waits for the identity provider's answer (1–60 minutes).
    pub request_lifetime: Span,
    /// Days a service-provider certificate is valid (1–3650).
    pub certificate_days: u32,
}

impl Default for SsoConfig {
    fn default() -> Self {
        Self {
            plugin: None,
            public_url: "https://localhost:8080".into(),
            session_idle: Span::secs(30 * 60),
            session_absolute: Span::secs(8 * 3600),
            clock_skew_seconds: 120,
            request_lifetime: Span::secs(10 * 60),
            certificate_days: 730,
        }
    }
}

impl SsoConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: format!("sso.{key}"),
                message: message.into(),
            })
        };
        if self.plugin.as_ref().is_some_and(|p| p.trim().is_empty()) {
            return invalid("plugin", "name the sso plugin, or leave it unset");
        }
        match url::Url::parse(&self.public_url) {
            Ok(u)
                if u.scheme() == "https"
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.path().trim_end_matches('/').is_empty() => {}
            _ => {
                return invalid(
                    "public_url",
                    "must be the gateway's https base URL, e.g. https://lockgate.example.com (no path, query or fragment): the session cookie is Secure",
                );
            }
        }
        let secs = |s: &Span| s.0.as_secs();
        if !(60..=86_400).contains(&secs(&self.session_idle)) {
            return invalid("session_idle", "must be 1 minute to 24 hours");
        }
        if !(300..=7 * 86_400).contains(&secs(&self.session_absolute)) {
            return invalid("session_absolute", "must be 5 minutes to 7 days");
        }
        if self.session_idle.0 > self.session_absolute.0 {
            return invalid("session_idle", "must not be longer than session_absolute");
        }
        if self.clock_skew_seconds > 600 {
            return invalid("clock_skew_seconds", "must be 0–600");
        }
        if !(60..=3600).contains(&secs(&self.request_lifetime)) {
            return invalid("request_lifetime", "must be 1–60 minutes");
        }
        if !(1..=3650).contains(&self.certificate_days) {
            return invalid("certificate_days", "must be 1–3650");
        }
        Ok(())
    }

    /// The API's view, when an SSO plugin is configured.
    pub fn api(&self) -> Option<lockgate_api::sso::SsoConfig> {
        let to = |s: &Span| chrono::Duration::from_std(s.0).unwrap_or(chrono::Duration::MAX);
        self.plugin.as_ref().map(|_| lockgate_api::sso::SsoConfig {
            public_url: self.public_url.trim_end_matches('/').to_string(),
            session_idle: to(&self.session_idle),
            session_absolute: to(&self.session_absolute),
            clock_skew_seconds: self.clock_skew_seconds,
            request_lifetime: to(&self.request_lifetime),
            certificate_days: i64::from(self.certificate_days),
        })
    }
}

/// The environment variable that holds the PD CA sealing key when `[pds] ca_key_file` is unset.
pub const PD_CA_KEY_ENV: &str = "LOCKGATE_PD_CA_KEY";

/// `[pds]`: remote PD identity (the gateway's certificate authority, enrolment) and the PD
/// listener (mutual TLS). `docs/pds/README.md`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PdsConfig {
    /// Run the PD certificate authority and the PD listener.
    pub enabled: bool,
    /// The PD listener's address.
    pub listen: String,
    /// DNS names or IP addresses in the listener's server certificate (what the PDs'
    /// service URL names).
    pub server_names: Vec<String>,
    /// File holding the 32-byte key that seals the CA's private key in the database (64 hex
    /// digits or base64); unset: the environment variable `LOCKGATE_PD_CA_KEY`.
    pub ca_key_file: Option<PathBuf>,
    /// Days a PD certificate issued at enrolment is valid (1–3650).
    pub certificate_days: u32,
    /// CA certificates (PEM files) besides the gateway's own whose PD certificates
    /// administrators may upload (the vendor content server's, say).
    pub trusted_issuer_files: Vec<PathBuf>,
    /// PD connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Span,
    /// A connection with no frame for this long is closed.
    pub idle_timeout: Span,
    /// A frame must arrive (or be written) within this from its first byte.
    pub frame_timeout: Span,
    /// Largest frame, bytes.
    pub max_frame_bytes: usize,
    /// Frames handled by device-protocol plugins at once (the rest wait their turn): keep it
    /// below `[plugins] max_concurrent_instances`, which the other plugins share (1–10000).
    pub max_concurrent_frames: usize,
    /// Hours a PD may rely on a key revocation list after it was issued; then it stops
    /// offline updates until it has a newer one (1–720).
    pub krl_validity_hours: u32,
    /// Days before its expiry from which a PD may renew its certificate over its connection,
    /// and is announced as expiring (1–365).
    pub renew_before_days: u32,
    /// The device-protocol plugin that serves each PD generation.
    pub protocols: PdProtocols,
}

/// `[pds.protocols]`: the device-protocol plugin (its name under `[plugins]`) of each PD
/// generation. A PD whose generation's plugin is not loaded and licensed is disconnected at
/// its first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PdProtocols {
    pub wall_gen1: String,
    pub wall_gen2: String,
    pub cliq_mobile: String,
}

impl Default for PdProtocols {
    fn default() -> Self {
        PdProtocols {
            wall_gen1: "pd-wall-gen1".into(),
            wall_gen2: "pd-wall-gen2".into(),
            cliq_mobile: "pd-mobile".into(),
        }
    }
}

impl PdProtocols {
    /// The plugin of a generation.
    pub fn plugin_for(&self, generation: lockgate_model::remote_pd::RemotePdType) -> &str {
        use lockgate_model::remote_pd::RemotePdType;
        match generation {
            RemotePdType::WallGen1 => &self.wall_gen1,
            RemotePdType::WallGen2 => &self.wall_gen2,
            RemotePdType::CliqMobile => &self.cliq_mobile,
        }
    }
}

impl Default for PdsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "0.0.0.0:7443".into(),
            server_names: vec!["localhost".into()],
            ca_key_file: None,
            certificate_days: 365,
            trusted_issuer_files: Vec::new(),
            max_connections: 4096,
            handshake_timeout: Span::secs(10),
            idle_timeout: Span::secs(120),
            frame_timeout: Span::secs(30),
            max_frame_bytes: 256 << 10,
            max_concurrent_frames: 32,
            krl_validity_hours: 24,
            renew_before_days: 30,
            protocols: PdProtocols::default(),
        }
    }
}

impl PdsConfig {
    /// Checks the values (not the files: [`PdsConfig::sealing_key`] reads the key at start).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: format!("pds.{key}"),
                message: message.into(),
            })
        };
        if self.listen.parse::<SocketAddr>().is_err() {
            return invalid("listen", "must be an address such as 0.0.0.0:7443");
        }
        if self.enabled && self.server_names.is_empty() {
            return invalid("server_names", "name at least one DNS name or address");
        }
        if self
            .server_names
            .iter()
            .any(|n| n.is_empty() || n.len() > 253)
        {
            return invalid("server_names", "names are 1–253 characters");
        }
        if !(1..=3650).contains(&self.certificate_days) {
            return invalid("certificate_days", "must be 1–3650");
        }
        if !(1..=100_000).contains(&self.max_connections) {
            return invalid("max_connections", "must be 1–100000");
        }
        if !(1..=10_000).contains(&self.max_concurrent_frames) {
            return invalid("max_concurrent_frames", "must be 1–10000");
        }
        if !(1..=lockgate_app::MAX_KRL_VALIDITY_HOURS).contains(&i64::from(self.krl_validity_hours))
        {
            return invalid("krl_validity_hours", "must be 1–720");
        }
        if !(1..=365).contains(&self.renew_before_days) {
            return invalid("renew_before_days", "must be 1–365");
        }
        if !(64..=16 << 20).contains(&self.max_frame_bytes) {
            return invalid("max_frame_bytes", "must be 64 bytes to 16 MiB");
        }
        for (key, span) in [
            ("handshake_timeout", self.handshake_timeout),
            ("idle_timeout", self.idle_timeout),
            ("frame_timeout", self.frame_timeout),
        ] {
            if span.0.is_zero() {
                return invalid(key, "must be above zero");
            }
        }
        Ok(())
    }

    /// The CA sealing key from `ca_key_file` or `LOCKGATE_PD_CA_KEY`; the error names where
    /// it looked (never the key).
    pub fn sealing_key(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<lockgate_devices::ca::SealingKey, ConfigError> {
        let (text, key) = match &self.ca_key_file {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                    key: "pds.ca_key_file".into(),
                    message: format!("cannot read {}: {e}", path.display()),
                })?,
                "pds.ca_key_file".to_owned(),
            ),
            None => (
                env(PD_CA_KEY_ENV).ok_or_else(|| ConfigError::Invalid {
                    key: "pds.ca_key_file".into(),
                    message: format!(
                        "the PD listener needs the CA sealing key: set pds.ca_key_file or {PD_CA_KEY_ENV} (32 bytes: 64 hex digits or base64)"
                    ),
                })?,
                PD_CA_KEY_ENV.to_owned(),
            ),
        };
        lockgate_devices::ca::SealingKey::parse(&text).map_err(|e| ConfigError::Invalid {
            key,
            message: e.to_string(),
        })
    }
}

/// `[access]`: API tokens and the gateway's operators (docs/security.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Longest lifetime of an API token issued through the API, in days (1–3650).
    pub max_token_lifetime_days: u32,
    /// The locking system whose super administrators operate the gateway (plugins, dead
    /// letters). Unset: the only locking system's, when there is exactly one.
    pub operator_system_id: Option<i64>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            max_token_lifetime_days: lockgate_api::DEFAULT_MAX_TOKEN_LIFETIME_DAYS,
            operator_system_id: None,
        }
    }
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub max_body_bytes: usize,
    pub shutdown_grace_seconds: u64,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
    pub allow_plain_http: bool,
    /// A whole request, from its head to the handler's answer.
    pub request_timeout: Span,
    /// Reading a request head (also how long an idle keep-alive connection stays open).
    pub header_read_timeout: Span,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// Most header fields in one request.
    pub max_headers: usize,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// `[server.tls]`: serve HTTPS; none: plain HTTP.
    pub tls: Option<ServerTlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            shutdown_grace_seconds: 10,
            allow_plain_http: false,
            request_timeout: Span::secs(60),
            header_read_timeout: Span::secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_connections: 1024,
            tls: None,
        }
    }
}

/// `[server.tls]`: the API listener's certificate and key (PEM), HSTS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// The certificate chain, leaf first (PEM).
    pub cert_file: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// `Strict-Transport-Security: max-age` sent on every response; `0s` tells browsers
    /// to forget an earlier one.
    #[serde(default = "default_hsts_max_age")]
    pub hsts_max_age: Span,
    /// How long a client may take to complete the TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: Span,
}

fn default_hsts_max_age() -> Span {
    Span::secs(365 * 86_400)
}

fn default_handshake_timeout() -> Span {
    Span::secs(10)
}

impl ServerTlsConfig {
    /// The rustls configuration of the API listener (HTTP/1.1 only); errors name the key
    /// and the file.
    pub fn server_config(&self) -> Result<std::sync::Arc<rustls::ServerConfig>, ConfigError> {
        crate::tls::server_config(
            &crate::tls::PemFile::new("server.tls.cert_file", &self.cert_file),
            &crate::tls::PemFile::new("server.tls.key_file", &self.key_file),
            None,
            &[b"http/1.1"],
        )
        .map_err(|e| ConfigError::Tls(e.to_string()))
    }
}

impl ServerConfig {
    /// Check the section; errors name the key path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| {
            Err(ConfigError::Invalid {
                key: key.into(),
                message,
            })
        };
        let Ok(addr) = self.listen.parse::<SocketAddr>() else {
            return invalid(
                "server.listen",
                format!("'{}' is not an address like 127.0.0.1:8080", self.listen),
            );
        };
        if self.tls.is_none() && !self.allow_plain_http && !addr.ip().is_loopback() {
            return invalid(
                "server.listen",
                format!(
                    "'{}' is not a loopback address, and plain HTTP is served only on \
                     loopback: configure [server.tls] (cert_file, key_file), or set \
                     server.allow_plain_http = true behind a TLS-terminating proxy",
                    self.listen
                ),
            );
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            return invalid("server.max_body_bytes", "must be 1 KiB to 64 MiB".into());
        }
        let ms = |s: Span| s.0.as_millis();
        if !(1_000..=3_600_000).contains(&ms(self.request_timeout)) {
            return invalid("server.request_timeout", "must be 1s to 1h".into());
        }
        if !(100..=300_000).contains(&ms(self.header_read_timeout)) {
            return invalid("server.header_read_timeout", "must be 100ms to 5m".into());
        }
        if !(8 * 1024..=1024 * 1024).contains(&self.max_header_bytes) {
            return invalid("server.max_header_bytes", "must be 8 KiB to 1 MiB".into());
        }
        if !(8..=1000).contains(&self.max_headers) {
            return invalid("server.max_headers", "must be 8–1000".into());
        }
        if !(1..=100_000).contains(&self.max_connections) {
            return invalid("server.max_connections", "must be 1–100000".into());
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [
                ("server.tls.cert_file", &tls.cert_file),
                ("server.tls.key_file", &tls.key_file),
            ] {
                if path.as_os_str().is_empty() {
                    return invalid(key, "must name a PEM file".into());
                }
            }
            if tls.hsts_max_age > Span::secs(2 * 365 * 86_400) {
                return invalid("server.tls.hsts_max_age", "must be 0s to 730d".into());
            }
            if !(100..=300_000).contains(&ms(tls.handshake_timeout)) {
                return invalid("server.tls.handshake_timeout", "must be 100ms to 5m".into());
            }
        }
        Ok(())
    }

    /// What the HTTP listener needs; loads the TLS certificate and key when configured.
    pub fn listener_options(&self) -> Result<crate::serve::HttpOptions, ConfigError> {
        Ok(crate::serve::HttpOptions {
            tls: match &self.tls {
                Some(t) => Some((t.server_config()?, t.handshake_timeout.0)),
                None => None,
            },
            header_read_timeout: self.header_read_timeout.0,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            max_connections: self.max_connections,
            shutdown_grace: std::time::Duration::from_secs(self.shutdown_grace_seconds),
        })
    }
}

/// `[database]`: SQLite file or PostgreSQL server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_seconds: u64,
    pub migrate_on_start: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://lockgate.db".into(),
            max_connections: 8,
            acquire_timeout_seconds: 10,
            migrate_on_start: true,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `lockgate=debug,tower_http=info`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `[bootstrap]`: the locking system `serve` creates when the database has none.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    pub enabled: bool,
    pub system_name: String,
    pub remote: bool,
    pub cylinder_groups: bool,
    pub base_time_zone: String,
    pub audit_trail_approvals: bool,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            system_name: "Main site".into(),
            remote: true,
            cylinder_groups: true,
            base_time_zone: "UTC".into(),
            audit_trail_approvals: false,
        }
    }
}

/// `[licence]`: which keys licence files are verified against, and whether features are
/// gated when no licence is installed (see docs/licences.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LicenceConfig {
    /// `"<key_id>:<base64url Ed25519 public key>"` entries; the only keys trusted.
    pub trusted_keys: Vec<String>,
    /// Gate licensed features even when no licence is installed (default: open mode).
    pub enforce: bool,
}

impl LicenceConfig {
    /// The trusted keys, or an error naming the offending entry.
    pub fn trusted(&self) -> Result<lockgate_api::licence::TrustedKeys, ConfigError> {
        lockgate_api::licence::TrustedKeys::from_config(&self.trusted_keys).map_err(|e| {
            ConfigError::Invalid {
                key: "licence.trusted_keys".into(),
                message: e.to_string(),
            }
        })
    }

    /// What the API needs.
    pub fn api(&self) -> Result<lockgate_api::licence::LicenceConfig, ConfigError> {
        Ok(lockgate_api::licence::LicenceConfig {
            trusted_keys: self.trusted()?,
            enforce: self.enforce,
        })
    }
}

/// Where the bundled plugins are: `LOCKGATE_BUNDLED_PLUGINS_DIR` when set at run time (an
/// installed gateway, e.g. the container image's `/usr/lib/lockgate/plugins`), else the
/// directory the build put them in (`lockgate_host::BUNDLED_PLUGINS_DIR`).
pub fn bundled_plugins_dir() -> PathBuf {
    std::env::var_os("LOCKGATE_BUNDLED_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(lockgate_host::BUNDLED_PLUGINS_DIR))
}

/// `[plugins]`: the WebAssembly plugin host (see docs/plugins.md). Everything is
/// deny-by-default: a plugin gets only the capabilities its `[plugins.instances.NAME]`
/// section grants.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Run the plugin host; false: no plugin runs and `GET /api/v1/plugins` lists nothing.
    pub enabled: bool,
    /// A directory of extra plugins (`NAME.toml` manifests beside `NAME.wasm`).
    pub directory: Option<PathBuf>,
    /// Load the plugins built with the gateway (`lockgate_host::BUNDLED_PLUGINS_DIR`).
    pub load_bundled: bool,
    /// Where compiled components are cached (writable by the gateway only); none: compile at every start.
    pub cache_dir: Option<PathBuf>,
    /// The key file authenticating the cache's files (outside `cache_dir`; generated, mode
    /// 0600, when missing); none: `LOCKGATE_PLUGIN_CACHE_KEY`, else a key of the process.
    pub cache_key_file: Option<PathBuf>,
    /// Instance allocator: `auto`, `pooling` or `on-demand`.
    pub allocator: lockgate_host::AllocatorChoice,
    /// Pooling allocator: plugin instances alive at once.
    pub max_concurrent_instances: u32,
    /// How often the deadline clock ticks, milliseconds.
    pub epoch_tick_ms: u64,
    /// Per-call limits.
    pub limits: lockgate_host::Limits,
    /// Back-off after faults.
    pub backoff: lockgate_host::Backoff,
    /// Per-plugin settings by plugin name: `enabled`, `grants`, `config`.
    pub instances: BTreeMap<String, lockgate_host::PluginSettings>,
    /// `[plugins.mqtt]`: the broker behind the `mqtt` capability; none: MQTT
    /// publishes answer `unavailable`. Read at start-up only.
    pub mqtt: Option<lockgate_host::MqttConfig>,
    /// `[plugins.sources.NAME]`: how the core applies the persons the directory-source plugin
    /// NAME hands over (`on_invalid`). Read at start-up.
    pub sources: BTreeMap<String, SourceConfig>,
    /// `[plugins.ldap.NAME]`: the directories behind the `ldap` capability
    /// (a grant names them). Reloaded on SIGHUP.
    pub ldap: BTreeMap<String, lockgate_host::LdapDirectoryConfig>,
    /// `[plugins.smtp]`: the relay behind the `smtp` capability. Reloaded on SIGHUP.
    pub smtp: Option<lockgate_host::SmtpConfig>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        let host = lockgate_host::HostConfig::default();
        Self {
            enabled: true,
            directory: None,
            load_bundled: true,
            cache_dir: host.cache_dir,
            cache_key_file: host.cache_key_file,
            allocator: host.allocator,
            max_concurrent_instances: host.max_concurrent_instances,
            epoch_tick_ms: host.epoch_tick_ms,
            limits: host.limits,
            backoff: host.backoff,
            instances: BTreeMap::new(),
            sources: BTreeMap::new(),
            mqtt: None,
            ldap: BTreeMap::new(),
            smtp: None,
        }
    }
}

impl PluginsConfig {
    /// The plugin host's configuration (licences are judged at each call, by the gateway).
    pub fn host_config(&self) -> lockgate_host::HostConfig {
        lockgate_host::HostConfig {
            cache_dir: self.cache_dir.clone(),
            cache_key_file: self.cache_key_file.clone(),
            allocator: self.allocator,
            max_concurrent_instances: self.max_concurrent_instances,
            epoch_tick_ms: self.epoch_tick_ms,
            limits: self.limits.clone(),
            backoff: self.backoff.clone(),
            plugins: self.instances.clone(),
            ldap: self.ldap.clone(),
            smtp: self.smtp.clone(),
        }
    }

    /// The plugin directories to load, in order: the bundled one (when loaded), then `directory`.
    pub fn directories(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if self.load_bundled {
            dirs.push(bundled_plugins_dir());
        }
        dirs.extend(self.directory.clone());
        dirs
    }

    /// Check the section; errors name the key path (`plugins.instances.ldap.grants.gateway`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| Err(ConfigError::Invalid { key, message });
        for (key, dir) in [
            ("plugins.directory", &self.directory),
            ("plugins.cache_dir", &self.cache_dir),
            ("plugins.cache_key_file", &self.cache_key_file),
        ] {
            if dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
                return invalid(
                    key.into(),
                    "must not be empty (leave it out instead)".into(),
                );
            }
        }
        for (name, p) in &self.instances {
            let base = format!("plugins.instances.{name}");
            if let Err(message) = lockgate_host::manifest::check_name(name) {
                return invalid(base, message);
            }
            for op in &p.grants.gateway {
                if !lockgate_host::GATEWAY_OPERATIONS.contains(&op.as_str()) {
                    return invalid(
                        format!("{base}.grants.gateway"),
                        format!(
                            "unknown operation `{op}` (known: {})",
                            lockgate_host::GATEWAY_OPERATIONS.join(", ")
                        ),
                    );
                }
            }
        }
        if let Some(mqtt) = &self.mqtt {
            if let Err(e) = mqtt.validate() {
                return invalid("plugins.mqtt".into(), e.to_string());
            }
            // Commands run only when signed with the bridge's secret: no secret, no listener.
            for (name, p) in &self.instances {
                if !p.grants.mqtt.commands.is_empty() && !mqtt.command_secrets.contains_key(name) {
                    return invalid(
                        format!("plugins.mqtt.command_secrets.{name}"),
                        format!(
                            "the plugin `{name}` takes MQTT commands (grants.mqtt.commands) but has no command secret: add [plugins.mqtt.command_secrets.{name}] with secret_env (docs/connectors/mqtt.md)"
                        ),
                    );
                }
            }
        }
        // The remaining checks are the host's; its messages start with the key below `plugins`.
        if let Err(e) = self.host_config().validate() {
            let message = match e {
                lockgate_host::HostError::Config(m) => m,
                other => other.to_string(),
            };
            let (key, rest) = match message.split_once(' ') {
                Some((k, rest))
                    if k.chars()
                        .all(|c| c.is_ascii_lowercase() || "_.".contains(c)) =>
                {
                    (format!("plugins.{k}"), rest.to_string())
                }
                _ => ("plugins".to_string(), message.clone()),
            };
            return invalid(key, rest);
        }
        Ok(())
    }
}

/// A duration written as an integer with a unit: `500ms`, `30s`, `15m`, `24h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub std::time::Duration);

impl Span {
    pub const fn secs(s: u64) -> Span {
        Span(std::time::Duration::from_secs(s))
    }

    /// Parse `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
    pub fn parse(text: &str) -> Result<Span, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let bad = || format!("'{text}' is not a duration such as 500ms, 30s, 15m, 24h or 7d");
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let ms_per = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        n.checked_mul(ms_per)
            .map(|ms| Span(std::time::Duration::from_millis(ms)))
            .ok_or_else(bad)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        for (unit, per) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms > 0 && ms.is_multiple_of(per) {
                return write!(f, "{}{unit}", ms / per);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let text = String::deserialize(d)?;
        Span::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `[background]`: the durable background runtime (lockgate-jobs): one job queue in the
/// database with leased workers, the periodic tasks, and the outbox dispatcher.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackgroundConfig {
    /// Run the worker, the periodic tasks and the outbox dispatcher in this process.
    pub enabled: bool,
    /// Jobs run at once by this replica.
    pub concurrency: usize,
    /// How long a claim holds a job or outbox message (extended while it runs).
    pub lease: Span,
    /// Delay before the second attempt; doubles per attempt up to `retry_cap`.
    pub retry_base: Span,
    /// Longest delay between two attempts.
    pub retry_cap: Span,
    /// Attempts in all before a job or message goes to the dead letters.
    pub max_attempts: u32,
    /// Full reconciliation of every locking system.
    pub reconcile_every: Span,
    /// Overdue-key notifications.
    pub overdue_check_every: Span,
    /// Retention purge (events, done jobs, delivered outbox messages).
    pub purge_every: Span,
    /// Events older than this many days are deleted; 0 keeps them forever.
    pub event_retention_days: u32,
    /// Done jobs and delivered outbox messages are kept this many days.
    pub job_retention_days: u32,
    /// Licence soft-expiry check.
    pub licence_check_every: Span,
    /// Full sync by every enabled directory-sync plugin (also on demand).
    pub directory_sync_every: Span,
    /// Remote PD liveness check: PDs that missed `pd_missed_heartbeats` heartbeats go offline.
    pub pd_liveness_every: Span,
    /// Heartbeats a remote PD may miss before it counts as offline (1–100).
    pub pd_missed_heartbeats: u32,
    /// The notifier plugin that delivers the outbox's `notify.*` messages
    /// (e.g. `email-notifier`); none: they are logged (metadata only).
    pub notifier: Option<String>,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 4,
            lease: Span::secs(60),
            retry_base: Span::secs(2),
            retry_cap: Span::secs(15 * 60),
            max_attempts: 8,
            reconcile_every: Span::secs(15 * 60),
            overdue_check_every: Span::secs(24 * 3600),
            purge_every: Span::secs(24 * 3600),
            event_retention_days: 0,
            job_retention_days: 7,
            licence_check_every: Span::secs(24 * 3600),
            directory_sync_every: Span::secs(24 * 3600),
            pd_liveness_every: Span::secs(60),
            pd_missed_heartbeats: 3,
            notifier: None,
        }
    }
}

impl BackgroundConfig {
    /// The periodic task intervals with their key paths.
    pub fn intervals(&self) -> [(&'static str, Span); 6] {
        [
            ("background.reconcile_every", self.reconcile_every),
            ("background.overdue_check_every", self.overdue_check_every),
            ("background.purge_every", self.purge_every),
            ("background.licence_check_every", self.licence_check_every),
            ("background.directory_sync_every", self.directory_sync_every),
            ("background.pd_liveness_every", self.pd_liveness_every),
        ]
    }

    /// Check the section; errors name the key path (`background.retry_cap`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=lockgate_app::MAX_MISSED_HEARTBEATS).contains(&self.pd_missed_heartbeats) {
            return Err(ConfigError::Invalid {
                key: "background.pd_missed_heartbeats".into(),
                message: format!("must be 1–{}", lockgate_app::MAX_MISSED_HEARTBEATS),
            });
        }
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.into(),
                message: message.into(),
            })
        };
        if !(1..=64).contains(&self.concurrency) {
            return invalid("background.concurrency", "must be 1–64");
        }
        if !(Span::secs(1)..=Span::secs(3600)).contains(&self.lease) {
            return invalid("background.lease", "must be 1s to 1h");
        }
        if !(Span(std::time::Duration::from_millis(10))..=Span::secs(3600))
            .contains(&self.retry_base)
        {
            return invalid("background.retry_base", "must be 10ms to 1h");
        }
        if self.retry_cap < self.retry_base || self.retry_cap > Span::secs(7 * 86_400) {
            return invalid(
                "background.retry_cap",
                "must be at least retry_base and at most 7d",
            );
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return invalid("background.max_attempts", "must be 1–1000");
        }
        for (key, every) in self.intervals() {
            if !(Span::secs(60)..=Span::secs(30 * 86_400)).contains(&every) {
                return invalid(key, "must be 1m to 30d");
            }
        }
        if self.event_retention_days > 36_500 {
            return invalid(
                "background.event_retention_days",
                "must be 0 (keep forever) to 36500",
            );
        }
        // A done periodic job is what keeps its slot from running twice: keep it longer than
        // the longest interval.
        let longest = self.intervals().into_iter().map(|(_, s)| s).max();
        let kept = Span::secs(u64::from(self.job_retention_days) * 86_400);
        if self.job_retention_days == 0
            || self.job_retention_days > 3650
            || longest.is_some_and(|l| kept <= l)
        {
            return invalid(
                "background.job_retention_days",
                "must be 1–3650 and longer than the longest periodic interval",
            );
        }
        Ok(())
    }
}

/// Prefix of environment overrides: `LOCKGATE__SECTION__KEY=value`, more `__KEY` parts for
/// nested keys (`LOCKGATE__PLUGINS__LIMITS__DEADLINE_MS=2000`).
pub const ENV_PREFIX: &str = "LOCKGATE__";

/// One `LOCKGATE__...` variable being applied.
#[derive(Debug)]
struct EnvOverride {
    var: String,
    /// The key path, lower-cased (`["plugins", "limits", "deadline_ms"]`).
    path: Vec<String>,
    value: String,
    /// Parsed as TOML for a key the configuration did not have yet.
    guessed: bool,
    /// Why the TOML value was refused, when it was then tried as a string.
    refused_as_toml: Option<String>,
}

/// `text` as a TOML value (`3`, `true`, `"x"`, `[1, 2]`, `{ a = 1 }`), if it is one.
fn parse_toml_value(text: &str) -> Option<toml::Value> {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
}

/// Replace the value at `path` (whose tables exist).
fn set_path(root: &mut toml::Value, path: &[String], value: toml::Value) {
    let Some((leaf, tables)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for part in tables {
        match node.get_mut(part.as_str()) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Some(t) = node.as_table_mut() {
        t.insert(leaf.clone(), value);
    }
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

impl Config {
    /// Parse a file's text; errors name the key path, line and column.
    pub fn parse(path: &str, src: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(src);
        serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let (line, column) = inner
                .span()
                .map(|s| line_col(src, s.start))
                .unwrap_or((0, 0));
            ConfigError::Parse {
                path: path.into(),
                line,
                column,
                key,
                message: inner.message().to_string(),
            }
        })
    }

    /// Read the file (or take defaults when `path` is None), apply environment overrides, validate.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (cfg, file) = match path {
            Some(p) => {
                let src = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                let cfg = Config::parse(&p.display().to_string(), &src)?;
                // The overrides go onto the file as written, so nothing the file says is
                // lost on the way (secrets are never serialised back, for one).
                let file = toml::from_str::<toml::Table>(&src).map_err(|e| ConfigError::Parse {
                    path: p.display().to_string(),
                    line: 0,
                    column: 0,
                    key: String::new(),
                    message: e.message().to_string(),
                })?;
                (cfg, toml::Value::Table(file))
            }
            None => (Config::default(), toml::Value::Table(toml::Table::new())),
        };
        let cfg = match cfg.overlay_env(file, env)? {
            Some(overridden) => overridden,
            None => cfg,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Apply `LOCKGATE__A__B__...=value` overrides: the path below `LOCKGATE__`, split at
    /// `__` and lower-cased, names a key at any depth (`LOCKGATE__DATABASE__URL`,
    /// `LOCKGATE__PLUGINS__LIMITS__DEADLINE_MS`,
    /// `LOCKGATE__PLUGINS__INSTANCES__TEMPLATE__GRANTS__KV`). Missing sections on the way
    /// are created, so a plugin's section or an optional table (`[plugins.mqtt]`) can come
    /// from the environment alone; the result is checked like the file (unknown keys
    /// refused, naming the variable). The value is taken as a string when the option is a
    /// string; otherwise it is parsed as a TOML value (`3`, `true`, `["a", "b"]`,
    /// `{ kv = true }`). For a key this configuration does not have yet, a value that is
    /// not TOML, or a number or boolean where the option wants a string, is a string.
    pub fn with_env(
        self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let base = toml::Value::try_from(&self).map_err(|e| ConfigError::Invalid {
            key: "config".into(),
            message: e.to_string(),
        })?;
        Ok(self.overlay_env(base, env)?.unwrap_or(self))
    }

    /// The configuration `base` (a TOML document) says with the overrides of `env` applied,
    /// or `None` when `env` has none. `self` (the same configuration, defaults filled in)
    /// tells which options exist and which are strings.
    fn overlay_env(
        &self,
        mut base: toml::Value,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Option<Config>, ConfigError> {
        let reference = toml::Value::try_from(self).map_err(|e| ConfigError::Invalid {
            key: "config".into(),
            message: e.to_string(),
        })?;
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(var, _)| var.starts_with(ENV_PREFIX))
            .collect();
        // Deterministic, and a whole table (`..__SMTP`) before the keys inside it.
        vars.sort();
        let mut overrides: Vec<EnvOverride> = Vec::with_capacity(vars.len());
        for (var, value) in vars {
            let env_error = |message: String| ConfigError::Env {
                var: var.clone(),
                message,
            };
            let path: Vec<String> = var[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect();
            if path.len() < 2 || path.iter().any(String::is_empty) {
                return Err(env_error(
                    "must be LOCKGATE__SECTION__KEY (more __KEY parts for nested keys)".into(),
                ));
            }
            if reference.get(path[0].as_str()).is_none() {
                return Err(env_error(format!("unknown section `{}`", path[0])));
            }
            // What the configuration has at the path (defaults included), if anything.
            let mut known = Some(&reference);
            let mut node = &mut base;
            for depth in 0..path.len() - 1 {
                let part = &path[depth];
                known = known.and_then(|k| k.get(part.as_str()));
                let not_section =
                    || env_error(format!("`{}` is not a section", path[..=depth].join(".")));
                if known.is_some_and(|k| !k.is_table()) {
                    return Err(not_section());
                }
                let table = node.as_table_mut().ok_or_else(not_section)?;
                node = table
                    .entry(part.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !node.is_table() {
                    return Err(not_section());
                }
            }
            let leaf = &path[path.len() - 1];
            let key = path.join(".");
            let (parsed, guessed) = match known.and_then(|k| k.get(leaf.as_str())) {
                Some(toml::Value::String(_)) => (toml::Value::String(value.clone()), false),
                Some(_) => (
                    parse_toml_value(&value).ok_or_else(|| {
                        env_error(format!("`{value}` is not a valid value for `{key}`"))
                    })?,
                    false,
                ),
                None => match parse_toml_value(&value) {
                    Some(v) => (v, true),
                    None => (toml::Value::String(value.clone()), false),
                },
            };
            if let Some(table) = node.as_table_mut() {
                table.insert(leaf.clone(), parsed);
            }
            overrides.push(EnvOverride {
                var,
                path,
                value,
                guessed,
                refused_as_toml: None,
            });
        }
        if overrides.is_empty() {
            return Ok(None);
        }
        // Each round either succeeds, fails, or turns one guessed value into a string.
        loop {
            let e = match serde_path_to_error::deserialize::<_, Config>(base.clone()) {
                Ok(cfg) => return Ok(Some(cfg)),
                Err(e) => e,
            };
            let error_path = e.path().to_string();
            let mut message = e.into_inner().message().to_string();
            // The variable that set the refused key (or a table around it) ...
            let culprit = overrides
                .iter()
                .enumerate()
                .filter(|(_, o)| {
                    let p = o.path.join(".");
                    error_path == p || error_path.starts_with(&format!("{p}."))
                })
                .max_by_key(|(_, o)| o.path.len())
                .map(|(i, _)| i);
            if let Some(i) = culprit
                && overrides[i].guessed
                && overrides[i].path.join(".") == error_path
                && message.starts_with("invalid type")
            {
                let o = &mut overrides[i];
                o.guessed = false;
                o.refused_as_toml = Some(message);
                set_path(&mut base, &o.path, toml::Value::String(o.value.clone()));
                continue;
            }
            // Not as TOML and not as a string: say what the TOML value was refused for.
            if let Some(i) = culprit
                && overrides[i].path.join(".") == error_path
                && let Some(first) = overrides[i].refused_as_toml.take()
            {
                message = first;
            }
            // ... else one that set a key inside the refused table (an unknown key is
            // reported at its table).
            let var = culprit
                .map(|i| &overrides[i])
                .or_else(|| {
                    overrides
                        .iter()
                        .filter(|o| {
                            error_path.is_empty()
                                || error_path == "."
                                || o.path.join(".").starts_with(&format!("{error_path}."))
                        })
                        .max_by_key(|o| o.path.len())
                })
                .map(|o| o.var.clone())
                .unwrap_or_else(|| {
                    format!(
                        "{ENV_PREFIX}{}",
                        error_path.replace('.', "__").to_ascii_uppercase()
                    )
                });
            let at = if error_path.is_empty() || error_path == "." {
                String::new()
            } else {
                format!("`{error_path}`: ")
            };
            return Err(ConfigError::Env {
                var,
                message: format!("{at}{message}"),
            });
        }
    }

    /// Check values that parse but make no sense, before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| {
            Err(ConfigError::Invalid {
                key: key.into(),
                message,
            })
        };
        self.server.validate()?;
        self.pds.validate()?;
        self.sso.validate()?;
        self.scim.validate()?;
        self.web_services.validate()?;
        if !(1..=3650).contains(&self.access.max_token_lifetime_days) {
            return invalid("access.max_token_lifetime_days", "must be 1–3650".into());
        }
        if self.access.operator_system_id.is_some_and(|id| id < 1) {
            return invalid(
                "access.operator_system_id",
                "must be a locking system id (1 or above)".into(),
            );
        }
        if let Err(e) = lockgate_store::backend_of(&self.database.url) {
            return invalid("database.url", e.to_string());
        }
        if !(1..=512).contains(&self.database.max_connections) {
            return invalid("database.max_connections", "must be 1–512".into());
        }
        if self.database.acquire_timeout_seconds == 0 {
            return invalid(
                "database.acquire_timeout_seconds",
                "must be at least 1".into(),
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid(
                "log.level",
                format!(
                    "'{}' is not a log filter such as info or lockgate=debug",
                    self.log.level
                ),
            );
        }
        let b = &self.bootstrap;
        if b.enabled {
            if b.system_name.trim().is_empty() || b.system_name.chars().count() > 100 {
                return invalid("bootstrap.system_name", "must be 1–100 characters".into());
            }
            if b.base_time_zone.parse::<chrono_tz::Tz>().is_err() {
                return invalid(
                    "bootstrap.base_time_zone",
                    format!("'{}' is not an IANA time zone", b.base_time_zone),
                );
            }
        }
        self.licence.trusted()?;
        self.plugins.validate()?;
        self.background.validate()?;
        Ok(())
    }

    /// The database URL with any password replaced, for logs.
    pub fn redacted_database_url(&self) -> String {
        redact_url(&self.database.url)
    }
}

pub use crate::redact::redact_url;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_named_with_line() {
        let src = "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n";
        let e = Config::parse("x.toml", src).unwrap_err().to_string();
        assert!(e.starts_with("x.toml:3:"), "{e}");
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn wrong_type_named() {
        let e = Config::parse("x.toml", "[database]\nmax_connections = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("database.max_connections") && e.contains(":2:"),
            "{e}"
        );
    }

    #[test]
    fn env_overrides_and_validation() {
        let cfg = Config::default()
            .with_env([
                (
                    "LOCKGATE__DATABASE__MAX_CONNECTIONS".to_string(),
                    "3".to_string(),
                ),
                ("LOCKGATE__SERVER__LISTEN".into(), "0.0.0.0:9".into()),
            ])
            .expect("valid");
        assert_eq!(cfg.database.max_connections, 3);
        assert_eq!(cfg.server.listen, "0.0.0.0:9");
        let e = Config::default()
            .with_env([(
                "LOCKGATE__DATABASE__MAX_CONNECTIONS".to_string(),
                "lots".to_string(),
            )])
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("LOCKGATE__DATABASE__MAX_CONNECTIONS"),
            "{e}"
        );
        let e = Config::default()
            .with_env([("LOCKGATE__DATABASE__NOPE".to_string(), "1".to_string())])
            .unwrap_err();
        assert!(e.to_string().contains("database.nope"), "{e}");
        let mut bad = Config::default();
        bad.database.url = "mysql://x".into();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("database.url")
        );
        bad = Config::default();
        bad.bootstrap.base_time_zone = "Nowhere/City".into();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("bootstrap.base_time_zone")
        );
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_reach_nested_keys() {
        let cfg = Config::load(
            None,
            env(&[
                ("LOCKGATE__PLUGINS__LIMITS__DEADLINE_MS", "2000"),
                ("LOCKGATE__PLUGINS__BACKOFF__MAX_MS", "60000"),
                ("LOCKGATE__PLUGINS__INSTANCES__TEMPLATE__GRANTS__KV", "true"),
                (
                    "LOCKGATE__PLUGINS__INSTANCES__TEMPLATE__GRANTS__GATEWAY",
                    "[\"upsert-employees\"]",
                ),
                (
                    "LOCKGATE__PLUGINS__INSTANCES__TEMPLATE__CONFIG__DOMAIN",
                    "Head office",
                ),
                (
                    "LOCKGATE__PLUGINS__INSTANCES__EVENT-BRIDGE__ENABLED",
                    "false",
                ),
                // Optional values and tables the defaults do not have.
                ("LOCKGATE__BACKGROUND__NOTIFIER", "email-notifier"),
                ("LOCKGATE__PLUGINS__MQTT__HOST", "broker.internal"),
                ("LOCKGATE__PLUGINS__MQTT__PORT", "8883"),
                // A number where the option is a string stays the string.
                ("LOCKGATE__PLUGINS__MQTT__USERNAME", "4711"),
                ("LOCKGATE__PLUGINS__MQTT__PASSWORD", "1234"),
                ("LOCKGATE__PLUGINS__MQTT__CLIENT_ID", "007"),
                ("OTHER__VARIABLE", "ignored"),
            ]),
        )
        .expect("valid");
        assert_eq!(cfg.plugins.limits.deadline_ms, 2000);
        assert_eq!(cfg.plugins.backoff.max_ms, 60000);
        let template = &cfg.plugins.instances["template"];
        assert!(template.enabled && template.grants.kv && !template.grants.log);
        assert_eq!(template.grants.gateway, ["upsert-employees"]);
        assert_eq!(template.config["domain"], "Head office");
        assert!(!cfg.plugins.instances["event-bridge"].enabled);
        assert_eq!(cfg.background.notifier.as_deref(), Some("email-notifier"));
        let mqtt = cfg
            .plugins
            .mqtt
            .as_ref()
            .expect("mqtt from the environment");
        assert_eq!((mqtt.host.as_str(), mqtt.port), ("broker.internal", 8883));
        assert_eq!(mqtt.username.as_deref(), Some("4711"));
        assert_eq!(mqtt.password.as_deref(), Some("1234"));
        assert_eq!(mqtt.client_id, "007");
        assert_eq!(mqtt.keep_alive_secs, 30, "the rest of the table defaults");
    }

    #[test]
    fn env_overrides_keep_the_file_and_its_secrets() {
        let dir = std::env::temp_dir().join(format!("lockgate-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("lockgate.toml");
        std::fs::write(
            &file,
            "[plugins.mqtt]\nhost = \"broker\"\nusername = \"u\"\npassword = \"secret\"\n\
             [plugins.instances.template]\ngrants = { log = true }\n",
        )
        .expect("write");
        let cfg = Config::load(
            Some(&file),
            env(&[
                ("LOCKGATE__DATABASE__MAX_CONNECTIONS", "3"),
                ("LOCKGATE__PLUGINS__INSTANCES__TEMPLATE__GRANTS__KV", "true"),
            ]),
        )
        .expect("valid");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(cfg.database.max_connections, 3);
        let mqtt = cfg.plugins.mqtt.expect("mqtt");
        assert_eq!(mqtt.host, "broker");
        assert_eq!(mqtt.password.as_deref(), Some("secret"));
        let grants = &cfg.plugins.instances["template"].grants;
        assert!(grants.log && grants.kv, "file and environment merged");
    }

    #[test]
    fn env_overrides_refuse_what_the_file_would() {
        let refused = |vars: &[(&str, &str)]| {
            Config::load(None, env(vars))
                .expect_err("refused")
                .to_string()
        };
        for (var, value, expect) in [
            ("LOCKGATE__PLUGINS__LIMITS__NOPE", "1", "nope"),
            ("LOCKGATE__PLUGINS__INSTANCES__X__ENABEL", "true", "enabel"),
            ("LOCKGATE__PLUGINS__LIMITS__DEADLINE_MS", "soon", "soon"),
            ("LOCKGATE__PLUGINS__INSTANCES__X__GRANTS__KV", "3", "kv"),
            ("LOCKGATE__NOPE__X", "1", "unknown section `nope`"),
            (
                "LOCKGATE__SERVER__LISTEN__PORT",
                "1",
                "`server.listen` is not a section",
            ),
            ("LOCKGATE__SERVER", "1", "LOCKGATE__SECTION__KEY"),
            ("LOCKGATE__PLUGINS____X", "1", "LOCKGATE__SECTION__KEY"),
        ] {
            let e = refused(&[(var, value)]);
            assert!(e.contains(var) && e.contains(expect), "{var}: {e}");
        }
        // Validation runs after the overrides: errors name the key path.
        let e = refused(&[(
            "LOCKGATE__PLUGINS__INSTANCES__X__GRANTS__GATEWAY",
            "[\"drop-tables\"]",
        )]);
        assert!(
            e.contains("plugins.instances.x.grants.gateway") && e.contains("drop-tables"),
            "{e}"
        );
    }

    #[test]
    fn licence_section_validated_and_overridable() {
        let good = "ops-2026:11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let cfg = Config::parse(
            "x.toml",
            &format!("[licence]\ntrusted_keys = [\"{good}\"]\nenforce = true\n"),
        )
        .expect("parses");
        assert!(cfg.licence.enforce);
        assert_eq!(cfg.licence.api().expect("valid").trusted_keys.len(), 1);
        assert!(!Config::default().licence.enforce);
        let mut bad = Config::default();
        bad.licence.trusted_keys = vec![good.into(), "backup:AAAA".into()];
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("licence.trusted_keys") && e.contains("#1"),
            "{e}"
        );
        let cfg = Config::default()
            .with_env([
                (
                    "LOCKGATE__LICENCE__TRUSTED_KEYS".to_string(),
                    format!("[\"{good}\"]"),
                ),
                ("LOCKGATE__LICENCE__ENFORCE".into(), "true".into()),
            ])
            .expect("valid");
        assert_eq!(cfg.licence.trusted_keys, [good]);
        assert!(cfg.licence.enforce);
    }

    #[test]
    fn plugins_section_maps_onto_the_host_and_names_bad_keys() {
        let cfg = Config::parse(
            "x.toml",
            "[plugins]\nload_bundled = false\ndirectory = \"/srv/plugins\"\nallocator = \"on-demand\"\n\
             [plugins.limits]\ndeadline_ms = 200\n\
             [plugins.instances.ldap]\nenabled = false\ngrants = { kv = true, gateway = [\"read-keys\"] }\n\
             config = { url = \"ldaps://dir.example\" }\n",
        )
        .expect("parses");
        cfg.validate().expect("valid");
        assert_eq!(cfg.plugins.directories(), [PathBuf::from("/srv/plugins")]);
        let host = cfg.plugins.host_config();
        assert_eq!(host.allocator, lockgate_host::AllocatorChoice::OnDemand);
        assert_eq!(host.limits.deadline_ms, 200);
        let ldap = host.plugin("ldap");
        assert!(!ldap.enabled && ldap.grants.kv && !ldap.grants.log);
        assert_eq!(ldap.config["url"], "ldaps://dir.example");
        // Defaults: the host runs and loads the bundled plugins.
        let d = Config::default().plugins;
        assert!(d.enabled && d.load_bundled);
        assert_eq!(
            d.directories(),
            [PathBuf::from(lockgate_host::BUNDLED_PLUGINS_DIR)]
        );
        // Environment overrides reach the section.
        let cfg = Config::default()
            .with_env([(
                "LOCKGATE__PLUGINS__ENABLED".to_string(),
                "false".to_string(),
            )])
            .expect("valid");
        assert!(!cfg.plugins.enabled);
        // Errors name the key path.
        let e = Config::parse(
            "x.toml",
            "[plugins.instances.x.grants]\ngateway = [\"drop-tables\"]\n",
        )
        .expect("parses")
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("plugins.instances.x.grants.gateway") && e.contains("drop-tables"),
            "{e}"
        );
        let e = Config::parse("x.toml", "[plugins.instances.Bad_Name]\n")
            .expect("parses")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("plugins.instances.Bad_Name"), "{e}");
        let e = Config::parse("x.toml", "[plugins.limits]\nmemory_bytes = 1\n")
            .expect("parses")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("`plugins.limits.memory_bytes`"), "{e}");
        let e = Config::parse("x.toml", "[plugins.instances.x]\nenabeld = true\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("plugins.instances.x") && e.contains("enabeld"),
            "{e}"
        );
    }

    #[test]
    fn background_section_parses_validates_and_names_bad_keys() {
        let cfg = Config::parse(
            "x.toml",
            "[background]\nconcurrency = 2\nlease = \"30s\"\nreconcile_every = \"5m\"\n\
             event_retention_days = 365\nretry_base = \"500ms\"\n",
        )
        .expect("parses");
        cfg.validate().expect("valid");
        let b = &cfg.background;
        assert_eq!(b.reconcile_every.0, std::time::Duration::from_secs(300));
        assert_eq!(b.retry_base.0, std::time::Duration::from_millis(500));
        assert_eq!(b.event_retention_days, 365);
        let d = Config::default().background;
        assert!(d.enabled);
        assert_eq!(d.reconcile_every.to_string(), "15m");
        assert_eq!(d.overdue_check_every.to_string(), "1d");
        assert_eq!(d.event_retention_days, 0);
        let e = Config::parse("x.toml", "[background]\nlease = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("background.lease") && e.contains(":2:"), "{e}");
        for (src, key) in [
            (
                "retry_base = \"2m\"\nretry_cap = \"1m\"",
                "background.retry_cap",
            ),
            ("purge_every = \"10s\"", "background.purge_every"),
            ("concurrency = 0", "background.concurrency"),
            ("max_attempts = 0", "background.max_attempts"),
            (
                "job_retention_days = 1\nlicence_check_every = \"2d\"",
                "background.job_retention_days",
            ),
        ] {
            let e = Config::parse("x.toml", &format!("[background]\n{src}\n"))
                .expect("parses")
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("`{key}`")), "{src}: {e}");
        }
        let cfg = Config::default()
            .with_env([(
                "LOCKGATE__BACKGROUND__RECONCILE_EVERY".to_string(),
                "1h".to_string(),
            )])
            .expect("valid");
        assert_eq!(cfg.background.reconcile_every, Span::secs(3600));
    }

    #[test]
    fn passwords_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn mqtt_command_topics_stay_apart_and_need_a_secret() {
        let check = |prefixes: &str, secret: bool| {
            let src = format!(
                "[plugins.instances.bridge]\n\
                 grants = {{ mqtt = {{ prefixes = [{prefixes}], commands = [\"site/cmd/\"] }} }}\n\
                 [plugins.mqtt]\nhost = \"broker\"\n{}",
                if secret {
                    "[plugins.mqtt.command_secrets.bridge]\nsecret_env = \"BRIDGE_SECRET\"\n"
                } else {
                    ""
                }
            );
            Config::parse("x.toml", &src)
                .expect("parses")
                .validate()
                .map_err(|e| e.to_string())
        };
        check(r#""site/events/", "site/state/""#, true).unwrap();
        // The shipped example's old grant: the site prefix covers the command prefix.
        let e = check(r#""site/""#, true).unwrap_err();
        assert!(
            e.contains("plugins.bridge.grants.mqtt")
                && e.contains("`site/` overlaps the command prefix `site/cmd/`"),
            "{e}"
        );
        let e = check(r#""site/cmd/x/""#, true).unwrap_err();
        assert!(e.contains("overlaps the command prefix"), "{e}");
        let e = check(r#""site/events/""#, false).unwrap_err();
        assert!(e.contains("plugins.mqtt.command_secrets.bridge"), "{e}");
        // Another plugin publishing into the command topics is refused too.
        let e = Config::parse(
            "x.toml",
            "[plugins.instances.bridge]\n\
             grants = { mqtt = { prefixes = [\"site/events/\"], commands = [\"site/cmd/\"] } }\n\
             [plugins.instances.other]\ngrants = { mqtt = [\"site/\"] }\n",
        )
        .expect("parses")
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("plugins.other.grants.mqtt"), "{e}");
    }

    #[test]
    fn every_file_in_config_parses_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut seen = 0;
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("config dir") {
                let p = entry.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "toml") {
                    Config::load(Some(&p), std::iter::empty())
                        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    seen += 1;
                }
            }
        }
        assert!(seen >= 2, "expected config/lockgate.toml and examples");
    }
}
