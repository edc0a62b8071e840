//! The `ldap` capability: paged searches (RFC 2696) on the directories of the
//! gateway configuration (`[plugins.ldap.NAME]`) with `ldap3`, over LDAPS or
//! StartTLS verified against a configured CA (plain LDAP only when the
//! configuration says so), bound as the configured service account.
//!
//! A plugin names a directory its grant lists; it never sees the address, the
//! bind DN or the password. Connections live as long as one plugin call (in
//! the call's [`LdapSessions`]), so a paged-results cookie is only ever used
//! on the connection that issued it, and a call cut off by its deadline drops
//! its connections.
//!
//! While the plugin works on a page, the next one is already requested (on the same
//! connection), so the server's time overlaps the plugin's.
//!
//! Everything the server sends is bounded: entries per page, values per
//! attribute and the size of the answer; `ldap3`'s parsers of entries and of
//! the paged-results control panic on malformed BER, so they run under
//! `catch_unwind` and a malformed answer is an `unavailable` error.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ldap3::controls::{Control, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, ResultEntry, Scope, SearchEntry};
use serde::{Deserialize, Serialize};

use crate::HostError;
use crate::dn::DistinguishedName;
use crate::types::{LdapEntry, LdapPage, LdapSearch, PluginError, SearchScope};

/// Largest page a plugin may ask for.
pub const LDAP_MAX_PAGE_SIZE: u32 = 5_000;
/// Longest filter, bytes.
pub const LDAP_MAX_FILTER_BYTES: usize = 4_096;
/// Most attributes one search may name.
pub const LDAP_MAX_ATTRIBUTES: usize = 64;
/// Most directories one plugin call may hold connections to.
pub const LDAP_MAX_SESSIONS: usize = 4;
/// Most values of one attribute handed to the plugin (the rest are dropped
/// with a warning: directory sync never needs more).
pub const LDAP_MAX_VALUES: usize = 1_000;
/// Largest answer (the sum of DN, attribute and value lengths of one page).
pub const LDAP_MAX_PAGE_BYTES: usize = 64 << 20;
/// The OID of the paged-results control (RFC 2696).
const PAGED_RESULTS_OID: &str = "1.2.840.113556.1.4.319";

/// One directory server (`[plugins.ldap.NAME]`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapDirectoryConfig {
    /// `ldaps://host:636` (TLS from the start) or `ldap://host:389` (StartTLS
    /// unless `allow_plaintext`).
    pub url: String,
    /// For `ldap://` URLs: upgrade with StartTLS (default true).
    pub starttls: bool,
    /// PEM file with the CA certificates that sign the server's certificate;
    /// none: the public web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Allow `ldap://` without StartTLS (passwords and person data in clear
    /// text: only for a directory on the same host).
    pub allow_plaintext: bool,
    /// DN to bind as (a read-only service account); none: anonymous.
    pub bind_dn: Option<String>,
    /// Bind password (prefer `bind_password_env`).
    #[serde(skip_serializing)]
    pub bind_password: Option<String>,
    /// Name of the environment variable holding the bind password.
    pub bind_password_env: Option<String>,
    /// Searches must stay at or below this DN.
    pub base_dn: String,
    /// Connect, bind and per-page time limit, milliseconds.
    pub timeout_ms: u64,
}

impl Default for LdapDirectoryConfig {
    fn default() -> Self {
        LdapDirectoryConfig {
            url: String::new(),
            starttls: true,
            ca_file: None,
            allow_plaintext: false,
            bind_dn: None,
            bind_password: None,
            bind_password_env: None,
            base_dn: String::new(),
            timeout_ms: 30_000,
        }
    }
}

impl std::fmt::Debug for LdapDirectoryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapDirectoryConfig")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("ca_file", &self.ca_file)
            .field("allow_plaintext", &self.allow_plaintext)
            .field("bind_dn", &self.bind_dn)
            .field(
                "bind_password",
                &self.bind_password.as_ref().map(|_| "<redacted>"),
            )
            .field("bind_password_env", &self.bind_password_env)
            .field("base_dn", &self.base_dn)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl LdapDirectoryConfig {
    fn is_ldaps(&self) -> bool {
        self.url.to_ascii_lowercase().starts_with("ldaps://")
    }

    /// Checks the values; `name` is the directory's name for the messages.
    pub fn validate(&self, name: &str) -> Result<(), HostError> {
        let bad = |m: &str| Err(HostError::Config(format!("ldap.{name}: {m}")));
        crate::manifest::check_name(name)
            .map_err(|e| HostError::Config(format!("ldap.{name}: {e}")))?;
        let url = url::Url::parse(&self.url)
            .map_err(|e| HostError::Config(format!("ldap.{name}.url: `{}`: {e}", self.url)))?;
        match url.scheme() {
            "ldaps" => {}
            "ldap" if self.starttls || self.allow_plaintext => {}
            "ldap" => {
                return bad(
                    "url is ldap:// without StartTLS: set starttls = true, use ldaps://, or set allow_plaintext = true",
                );
            }
            other => return bad(&format!("url scheme `{other}` is not ldap or ldaps")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return bad("url has no host");
        }
        if url.path() != "/" && !url.path().is_empty() {
            return bad("url must not have a path (set base_dn instead)");
        }
        if self.is_ldaps() && self.starttls {
            // StartTLS is the default; on ldaps:// it simply does not apply.
        }
        if self.base_dn.trim().is_empty() {
            return bad("base_dn must not be empty");
        }
        if let Err(e) = DistinguishedName::parse(&self.base_dn) {
            return bad(&format!("base_dn is not a DN (RFC 4514): {e}"));
        }
        if self.bind_password.is_some() && self.bind_password_env.is_some() {
            return bad("set bind_password or bind_password_env, not both");
        }
        if (self.bind_password.is_some() || self.bind_password_env.is_some())
            && self.bind_dn.is_none()
        {
            return bad("a bind password needs a bind_dn");
        }
        if self.timeout_ms == 0 {
            return bad("timeout_ms must be positive");
        }
        if self
            .ca_file
            .as_ref()
            .is_some_and(|ca| ca.as_os_str().is_empty())
        {
            return bad("ca_file must not be empty (leave it out instead)");
        }
        // The CA file itself is read when the host starts (`LdapDirectories::new`).
        Ok(())
    }

    fn bind_password(&self, name: &str) -> Result<String, PluginError> {
        match (&self.bind_password, &self.bind_password_env) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                PluginError::Unavailable(format!(
                    "directory `{name}`: the bind password variable `{var}` is not set"
                ))
            }),
            (None, None) => Ok(String::new()),
        }
    }
}

/// Reads the CA certificates of a PEM file into a root store.
pub(crate) fn load_roots(path: &PathBuf) -> Result<rustls::RootCertStore, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("`{}`: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("`{}`: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("`{}` holds no certificate", path.display()));
    }
    Ok(roots)
}

/// The configured directories with their TLS settings, ready to connect.
#[derive(Debug, Default)]
pub struct LdapDirectories {
    directories: BTreeMap<String, Directory>,
}

#[derive(Debug)]
struct Directory {
    config: LdapDirectoryConfig,
    tls: Arc<rustls::ClientConfig>,
}

impl LdapDirectories {
    /// Validates the directories and loads their CA files.
    pub fn new(configs: &BTreeMap<String, LdapDirectoryConfig>) -> Result<Self, HostError> {
        let mut directories = BTreeMap::new();
        for (name, config) in configs {
            config.validate(name)?;
            let roots = match &config.ca_file {
                Some(ca) => load_roots(ca)
                    .map_err(|e| HostError::Config(format!("ldap.{name}.ca_file: {e}")))?,
                None => rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.into(),
                },
            };
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| HostError::Config(format!("ldap.{name}: TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            directories.insert(
                name.clone(),
                Directory {
                    config: config.clone(),
                    tls: Arc::new(tls),
                },
            );
        }
        Ok(LdapDirectories { directories })
    }

    /// True when a directory of this name is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.directories.contains_key(name)
    }
}

/// The connections of one plugin call, by directory name, and the next page of the last
/// search, already requested while the plugin works on the current one.
#[derive(Default)]
pub(crate) struct LdapSessions {
    open: HashMap<String, Ldap>,
    prefetch: Option<Prefetch>,
}

/// A page requested ahead: used when the plugin asks for exactly it (same directory,
/// search and cookie), dropped otherwise.
struct Prefetch {
    directory: String,
    search: LdapSearch,
    cookie: Vec<u8>,
    task: tokio::task::JoinHandle<ldap3::result::Result<ldap3::SearchResult>>,
}

impl Drop for LdapSessions {
    fn drop(&mut self) {
        if let Some(p) = self.prefetch.take() {
            p.task.abort();
        }
    }
}

/// Runs one page of a paged search on its own handle (handles share the connection).
async fn run_search(
    mut ldap: Ldap,
    search: LdapSearch,
    cookie: Vec<u8>,
    timeout: Duration,
) -> ldap3::result::Result<ldap3::SearchResult> {
    let control = PagedResults {
        size: i32::try_from(search.page_size).unwrap_or(i32::MAX),
        cookie,
    };
    let attributes: Vec<&str> = search.attributes.iter().map(String::as_str).collect();
    ldap.with_controls(control)
        .with_timeout(timeout)
        .search(
            &search.base,
            scope(search.scope),
            &search.filter,
            attributes,
        )
        .await
}

impl std::fmt::Debug for LdapSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSessions")
            .field("open", &self.open.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// True when `dn` is `base` or below it, both parsed per RFC 4514 (see [`crate::dn`]):
/// escaped separators stay in their values, types and case-ignoring values compare without
/// case. An unparsable DN is refused, naming where it is malformed.
fn within(dn: &str, base: &str) -> Result<bool, String> {
    let dn = DistinguishedName::parse(dn).map_err(|e| format!("base is not a DN: {e}"))?;
    let base = DistinguishedName::parse(base)
        .map_err(|e| format!("the directory's base_dn is not a DN: {e}"))?;
    Ok(dn.is_within(&base))
}

fn check_search(search: &LdapSearch, base_dn: &str) -> Result<(), PluginError> {
    let invalid = |m: String| Err(PluginError::Invalid(m));
    if search.page_size == 0 || search.page_size > LDAP_MAX_PAGE_SIZE {
        return invalid(format!("page-size must be 1-{LDAP_MAX_PAGE_SIZE}"));
    }
    if search.filter.is_empty() || search.filter.len() > LDAP_MAX_FILTER_BYTES {
        return invalid(format!(
            "the filter must be 1-{LDAP_MAX_FILTER_BYTES} bytes"
        ));
    }
    if search.attributes.len() > LDAP_MAX_ATTRIBUTES {
        return invalid(format!("at most {LDAP_MAX_ATTRIBUTES} attributes"));
    }
    if let Some(a) = search
        .attributes
        .iter()
        .find(|a| a.is_empty() || a.len() > 128 || !a.chars().all(attribute_char))
    {
        return invalid(format!("attribute `{a}` is not an attribute description"));
    }
    let root_dse = search.base.is_empty() && search.scope == SearchScope::Base;
    if !root_dse && !within(&search.base, base_dn).map_err(PluginError::Invalid)? {
        return Err(PluginError::Denied(format!(
            "base `{}` is outside the directory's base DN",
            search.base
        )));
    }
    Ok(())
}

fn attribute_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | ';' | '.' | '+' | '*')
}

fn scope(s: SearchScope) -> Scope {
    match s {
        SearchScope::Base => Scope::Base,
        SearchScope::OneLevel => Scope::OneLevel,
        SearchScope::Subtree => Scope::Subtree,
    }
}

fn unavailable(directory: &str, what: &str, e: impl std::fmt::Display) -> PluginError {
    tracing::warn!(directory, error = %e, "ldap {what} failed");
    PluginError::Unavailable(format!("directory `{directory}`: {what} failed: {e}"))
}

impl LdapSessions {
    async fn connect(&mut self, name: &str, dir: &Directory) -> Result<&mut Ldap, PluginError> {
        if !self.open.contains_key(name) {
            if self.open.len() >= LDAP_MAX_SESSIONS {
                return Err(PluginError::Invalid(format!(
                    "at most {LDAP_MAX_SESSIONS} directories per call"
                )));
            }
            let cfg = &dir.config;
            let timeout = Duration::from_millis(cfg.timeout_ms);
            let settings = LdapConnSettings::new()
                .set_conn_timeout(timeout)
                .set_config(dir.tls.clone())
                .set_starttls(cfg.starttls && !cfg.is_ldaps());
            let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &cfg.url)
                .await
                .map_err(|e| unavailable(name, "connecting", e))?;
            // The connection task ends when the last `Ldap` handle is dropped.
            tokio::spawn(async move {
                if let Err(e) = conn.drive().await {
                    tracing::debug!(error = %e, "ldap connection ended");
                }
            });
            if let Some(dn) = &cfg.bind_dn {
                let password = cfg.bind_password(name)?;
                let bound = tokio::time::timeout(timeout, ldap.simple_bind(dn, &password))
                    .await
                    .map_err(|_| unavailable(name, "binding", "timed out"))?
                    .map_err(|e| unavailable(name, "binding", e))?;
                if bound.rc != 0 {
                    return Err(unavailable(
                        name,
                        "binding",
                        format!("result code {} {}", bound.rc, bound.text),
                    ));
                }
            }
            self.open.insert(name.to_owned(), ldap);
        }
        self.open
            .get_mut(name)
            .ok_or_else(|| PluginError::Other("ldap session vanished".into()))
    }

    /// One page of a paged search (see the WIT `ldap.search-page`).
    pub(crate) async fn search_page(
        &mut self,
        directories: &LdapDirectories,
        name: &str,
        search: &LdapSearch,
        cookie: Option<Vec<u8>>,
    ) -> Result<LdapPage, PluginError> {
        let dir = directories.directories.get(name).ok_or_else(|| {
            PluginError::Unavailable(format!("directory `{name}` is not configured"))
        })?;
        check_search(search, &dir.config.base_dn)?;
        if cookie.is_some() && !self.open.contains_key(name) {
            return Err(PluginError::Invalid(
                "a cookie continues a search of the same call; start without one".into(),
            ));
        }
        let timeout = Duration::from_millis(dir.config.timeout_ms);
        let cookie = cookie.unwrap_or_default();
        let ahead = match self.prefetch.take() {
            Some(p) if p.directory == name && p.search == *search && p.cookie == cookie => {
                Some(p.task)
            }
            Some(p) => {
                p.task.abort();
                None
            }
            None => None,
        };
        let ldap = self.connect(name, dir).await?.clone();
        let result = match ahead {
            Some(task) => match task.await {
                Ok(r) => r,
                Err(e) => {
                    self.open.remove(name);
                    return Err(unavailable(name, "searching", e));
                }
            },
            None => run_search(ldap.clone(), search.clone(), cookie, timeout).await,
        };
        let result = match result {
            Ok(r) => r,
            Err(ldap3::LdapError::FilterParsing) => {
                return Err(PluginError::Invalid(format!(
                    "`{}` is not an LDAP filter (RFC 4515)",
                    search.filter
                )));
            }
            Err(e) => {
                // The connection may be broken: the next call reconnects.
                self.open.remove(name);
                return Err(unavailable(name, "searching", e));
            }
        };
        let ldap3::SearchResult(raw_entries, outcome) = result;
        match outcome.rc {
            0 => {}
            32 => {
                return Err(PluginError::NotFound(format!(
                    "directory `{name}`: no entry `{}`",
                    search.base
                )));
            }
            // protocolError / unwillingToPerform: e.g. a cookie the server no
            // longer knows or a filter it refuses.
            2 | 53 | 87 => {
                return Err(PluginError::Invalid(format!(
                    "directory `{name}` refused the search: result code {} {}",
                    outcome.rc, outcome.text
                )));
            }
            rc => {
                return Err(unavailable(
                    name,
                    "searching",
                    format!("result code {rc} {}", outcome.text),
                ));
            }
        }
        let entries = entries(name, raw_entries, search.page_size)?;
        let cookie = next_cookie(name, &outcome.ctrls)?;
        if let Some(next) = &cookie {
            // Ask for the next page now: the server works while the plugin maps this one.
            self.prefetch = Some(Prefetch {
                directory: name.to_owned(),
                search: search.clone(),
                cookie: next.clone(),
                task: tokio::spawn(run_search(ldap, search.clone(), next.clone(), timeout)),
            });
        }
        Ok(LdapPage { entries, cookie })
    }
}

/// The entries of one page, referrals left out, bounded in count and size.
fn entries(
    name: &str,
    raw: Vec<ResultEntry>,
    page_size: u32,
) -> Result<Vec<LdapEntry>, PluginError> {
    // A server may return a little more than asked; much more is not paging.
    let most = usize::try_from(page_size)
        .unwrap_or(usize::MAX)
        .saturating_mul(2);
    if raw.len() > most {
        return Err(unavailable(
            name,
            "searching",
            format!("{} entries for a page of {page_size}", raw.len()),
        ));
    }
    let mut bytes = 0usize;
    let mut out = Vec::with_capacity(raw.len());
    for re in raw {
        if re.is_ref() || re.is_intermediate() {
            continue;
        }
        let entry = std::panic::catch_unwind(move || SearchEntry::construct(re))
            .map_err(|_| unavailable(name, "reading an entry", "malformed entry"))?;
        bytes += entry.dn.len();
        let mut attributes = Vec::with_capacity(entry.attrs.len() + entry.bin_attrs.len());
        for (attr, values) in entry.attrs {
            bytes += attr.len() + values.iter().map(String::len).sum::<usize>();
            attributes.push((attr, cap_values(name, values)));
        }
        for (attr, values) in entry.bin_attrs {
            let values: Vec<String> = values
                .iter()
                .map(|v| base64::engine::general_purpose::STANDARD.encode(v))
                .collect();
            bytes += attr.len() + values.iter().map(String::len).sum::<usize>();
            attributes.push((format!("{attr};binary"), cap_values(name, values)));
        }
        if bytes > LDAP_MAX_PAGE_BYTES {
            return Err(unavailable(
                name,
                "searching",
                format!("a page over {LDAP_MAX_PAGE_BYTES} bytes"),
            ));
        }
        attributes.sort();
        out.push(LdapEntry {
            dn: entry.dn,
            attributes,
        });
    }
    Ok(out)
}

fn cap_values(name: &str, mut values: Vec<String>) -> Vec<String> {
    if values.len() > LDAP_MAX_VALUES {
        tracing::warn!(
            directory = name,
            values = values.len(),
            "ldap attribute with too many values cut"
        );
        values.truncate(LDAP_MAX_VALUES);
    }
    values
}

/// The cookie of the paged-results response control; none when the search is done.
fn next_cookie(name: &str, controls: &[Control]) -> Result<Option<Vec<u8>>, PluginError> {
    let Some(raw) = controls
        .iter()
        .map(|Control(_, raw)| raw)
        .find(|raw| raw.ctype == PAGED_RESULTS_OID && raw.val.is_some())
    else {
        // A server without paging returns everything at once.
        return Ok(None);
    };
    let raw = raw.clone();
    let paged = std::panic::catch_unwind(move || raw.parse::<PagedResults>())
        .map_err(|_| unavailable(name, "paging", "malformed paged-results control"))?;
    Ok((!paged.cookie.is_empty()).then_some(paged.cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_dn_containment_parses_rfc_4514() {
        let base = "ou=People, dc=Example,dc=com";
        let yes = |dn: &str| within(dn, base).unwrap();
        assert!(yes("OU=people,DC=example,DC=com"));
        assert!(yes("uid=ada,ou=people,dc=example,dc=com"));
        assert!(!yes("ou=services,dc=example,dc=com"));
        assert!(!yes("uid=x,ou=otherpeople,dc=example,dc=com"));
        assert!(!yes("dc=com"));
        // Before RFC 4514 parsing, a suffix match took the escaped comma for a separator.
        assert!(!yes("ou=x\\,ou=people,dc=example,dc=com"));
        assert!(within("cn=a\\", base).is_err());
    }

    fn search(base: &str, scope: SearchScope, page_size: u32) -> LdapSearch {
        LdapSearch {
            base: base.into(),
            scope,
            filter: "(objectClass=*)".into(),
            attributes: vec!["uid".into()],
            page_size,
        }
    }

    #[test]
    fn searches_are_checked_before_they_reach_the_server() {
        let base = "ou=people,dc=example,dc=com";
        assert!(check_search(&search(base, SearchScope::Subtree, 100), base).is_ok());
        assert!(check_search(&search("", SearchScope::Base, 1), base).is_ok());
        assert!(matches!(
            check_search(&search("", SearchScope::Subtree, 1), base),
            Err(PluginError::Denied(_))
        ));
        assert!(matches!(
            check_search(&search("dc=com", SearchScope::Subtree, 1), base),
            Err(PluginError::Denied(_))
        ));
        assert!(matches!(
            check_search(&search(base, SearchScope::Subtree, 0), base),
            Err(PluginError::Invalid(_))
        ));
        assert!(matches!(
            check_search(&search(base, SearchScope::Subtree, 5_001), base),
            Err(PluginError::Invalid(_))
        ));
        let mut s = search(base, SearchScope::Subtree, 10);
        s.attributes = vec!["uid)(cn=*".into()];
        assert!(matches!(
            check_search(&s, base),
            Err(PluginError::Invalid(_))
        ));
    }

    #[test]
    fn plaintext_needs_to_be_asked_for() {
        let mut c = LdapDirectoryConfig {
            url: "ldap://127.0.0.1:389".into(),
            starttls: false,
            base_dn: "dc=example,dc=com".into(),
            ..LdapDirectoryConfig::default()
        };
        let err = c.validate("corp").unwrap_err().to_string();
        assert!(err.contains("allow_plaintext"), "{err}");
        c.allow_plaintext = true;
        assert!(c.validate("corp").is_ok());
        c.url = "http://x".into();
        assert!(c.validate("corp").is_err());
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let c = LdapDirectoryConfig {
            bind_password: Some("s3cret".into()),
            ..LdapDirectoryConfig::default()
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
