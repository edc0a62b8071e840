//! Host configuration: engine and allocator choice, per-call resource limits,
//! back-off, licensed features and the per-plugin grants and settings.
//! Everything is deny-by-default: a plugin gets no capability that its
//! grants (`[plugins.instances.NAME]` in the gateway configuration) do not list.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::HostError;

/// The plugin host's configuration (the `[plugins]` part of the gateway's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct HostConfig {
    /// Where precompiled components are cached; `None` compiles on every start.
    /// Must be writable by the gateway only (its files are loaded as native code).
    pub cache_dir: Option<PathBuf>,
    /// The file holding the key that authenticates cache files (64 hex digits; generated,
    /// mode 0600, when missing). Keep it outside `cache_dir`. The environment variable
    /// `LOCKGATE_PLUGIN_CACHE_KEY` takes precedence; with neither, a key of the process
    /// authenticates the cache (compiled plugins are then not reused after a restart).
    pub cache_key_file: Option<PathBuf>,
    /// Instance allocator: `auto` tries pooling and falls back to on-demand.
    pub allocator: AllocatorChoice,
    /// Pooling allocator: how many plugin instances may be alive at once.
    pub max_concurrent_instances: u32,
    /// How often the epoch ticker thread advances the engine's epoch.
    pub epoch_tick_ms: u64,
    /// Limits applied to every call.
    pub limits: Limits,
    /// Back-off after faults.
    pub backoff: Backoff,
    /// Per-plugin settings, by plugin name.
    pub plugins: BTreeMap<String, PluginSettings>,
    /// The directories behind the `ldap` capability, by name (`[plugins.ldap.NAME]`).
    pub ldap: BTreeMap<String, crate::ldap::LdapDirectoryConfig>,
    /// The relay behind the `smtp` capability (`[plugins.smtp]`); none: `smtp`
    /// cannot be granted.
    pub smtp: Option<crate::smtp::SmtpConfig>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache_dir: None,
            cache_key_file: None,
            allocator: AllocatorChoice::Auto,
            max_concurrent_instances: 64,
            epoch_tick_ms: 10,
            limits: Limits::default(),
            backoff: Backoff::default(),
            plugins: BTreeMap::new(),
            ldap: BTreeMap::new(),
            smtp: None,
        }
    }
}

impl HostConfig {
    /// Checks the values before anything starts.
    pub fn validate(&self) -> Result<(), HostError> {
        let bad = |m: &str| Err(HostError::Config(m.to_owned()));
        if self.epoch_tick_ms == 0 || self.epoch_tick_ms > 1_000 {
            return bad("epoch_tick_ms must be 1..=1000");
        }
        if self.max_concurrent_instances == 0 {
            return bad("max_concurrent_instances must be at least 1");
        }
        let l = &self.limits;
        if l.memory_bytes < 64 * 1024 || l.memory_bytes > 4 << 30 {
            return bad("limits.memory_bytes must be 64 KiB..=4 GiB");
        }
        if l.wasm_stack_bytes < 64 * 1024 || l.wasm_stack_bytes > 64 << 20 {
            return bad("limits.wasm_stack_bytes must be 64 KiB..=64 MiB");
        }
        if l.deadline_ms == 0 {
            return bad("limits.deadline_ms must be positive");
        }
        if let (Some(dir), Some(key)) = (&self.cache_dir, &self.cache_key_file)
            && key.starts_with(dir)
        {
            return bad(
                "cache_key_file must be outside cache_dir (whoever writes the cache must not read its key)",
            );
        }
        if l.instances == 0 || l.tables == 0 || l.memories == 0 || l.table_elements == 0 {
            return bad("limits.instances, tables, memories and table_elements must be positive");
        }
        if l.http_response_bytes == 0 {
            return bad("limits.http_response_bytes must be positive");
        }
        if l.staged_persons_bytes == 0 || l.kv_max_entries == 0 || l.kv_max_bytes == 0 {
            return bad(
                "limits.staged_persons_bytes, kv_max_entries and kv_max_bytes must be positive",
            );
        }
        if self.backoff.max_ms < self.backoff.base_ms {
            return bad("backoff.max_ms must be at least backoff.base_ms");
        }
        for (name, p) in &self.plugins {
            crate::manifest::check_name(name).map_err(HostError::Config)?;
            for op in &p.grants.gateway {
                if !crate::GATEWAY_OPERATIONS.contains(&op.as_str()) {
                    return Err(HostError::Config(format!(
                        "plugins.{name}.grants.gateway: unknown operation `{op}` (known: {})",
                        crate::GATEWAY_OPERATIONS.join(", ")
                    )));
                }
            }
            p.grants
                .http
                .validate()
                .map_err(|e| HostError::Config(format!("plugins.{name}.grants.http: {e}")))?;
            p.grants
                .mqtt
                .validate()
                .map_err(|e| HostError::Config(format!("plugins.{name}.grants.mqtt: {e}")))?;
            if let Some(d) = p.grants.ldap.iter().find(|d| !self.ldap.contains_key(*d)) {
                return Err(HostError::Config(format!(
                    "plugins.{name}.grants.ldap: no directory `{d}` is configured (add [plugins.ldap.{d}])"
                )));
            }
            if p.grants.smtp && self.smtp.is_none() {
                return Err(HostError::Config(format!(
                    "plugins.{name}.grants.smtp: no relay is configured (add [plugins.smtp])"
                )));
            }
            p.check_env_settings(name).map_err(HostError::Config)?;
            if let Some(ms) = p.deadline_ms
                && (ms == 0 || ms > MAX_PLUGIN_DEADLINE_MS)
            {
                return Err(HostError::Config(format!(
                    "plugins.{name}.deadline_ms must be 1..={MAX_PLUGIN_DEADLINE_MS}"
                )));
            }
        }
        self.check_command_prefixes()?;
        for (name, d) in &self.ldap {
            d.validate(name)?;
        }
        if let Some(smtp) = &self.smtp {
            smtp.validate()?;
        }
        Ok(())
    }

    /// Refuses a publish prefix that overlaps any plugin's command prefix
    /// (one is a prefix of the other): that plugin could publish commands
    /// (and forge their answers on `<topic>/reply`).
    fn check_command_prefixes(&self) -> Result<(), HostError> {
        let commands: Vec<(&String, &String)> = self
            .plugins
            .iter()
            .flat_map(|(n, p)| p.grants.mqtt.commands.iter().map(move |c| (n, c)))
            .collect();
        for (name, p) in &self.plugins {
            for prefix in &p.grants.mqtt.prefixes {
                if let Some((owner, command)) = commands
                    .iter()
                    .find(|(_, c)| c.starts_with(prefix.as_str()) || prefix.starts_with(c.as_str()))
                {
                    return Err(HostError::Config(format!(
                        "plugins.{name}.grants.mqtt: the publish prefix `{prefix}` overlaps the command prefix `{command}` of `{owner}`, so the plugin could publish commands; grant narrower prefixes that leave the command topics out (e.g. `<site>/events/` and `<site>/state/` beside `<site>/cmd/`)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The settings of one plugin (defaults when it has none: enabled, no grants).
    pub fn plugin(&self, name: &str) -> PluginSettings {
        self.plugins.get(name).cloned().unwrap_or_default()
    }
}

/// Which instance allocator the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorChoice {
    /// Pooling when the address space allows it, on-demand otherwise.
    Auto,
    /// Pooling, or fail to start.
    Pooling,
    /// Allocate every instance on demand.
    OnDemand,
}

/// Limits for every call (each call runs in a fresh store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest linear memory, bytes.
    pub memory_bytes: u64,
    /// Most elements in one table.
    pub table_elements: usize,
    /// Most (core and component) instances in one store.
    pub instances: usize,
    /// Most tables in one store.
    pub tables: usize,
    /// Most linear memories in one store.
    pub memories: usize,
    /// Largest wasm stack, bytes.
    pub wasm_stack_bytes: usize,
    /// Wall-clock deadline for one call, milliseconds.
    pub deadline_ms: u64,
    /// Largest response body one outbound HTTP request may read, bytes.
    pub http_response_bytes: u64,
    /// Most bytes of persons one call may stage for `sync-persons` (text bytes plus
    /// [`STAGED_STRING_OVERHEAD`] per string), next to the count cap.
    pub staged_persons_bytes: u64,
    /// Most keys one plugin may hold in its key-value store.
    pub kv_max_entries: u64,
    /// Most bytes (keys plus values) one plugin may hold in its key-value store.
    pub kv_max_bytes: u64,
}

/// What each staged string counts beyond its text towards `staged_persons_bytes`.
pub const STAGED_STRING_OVERHEAD: u64 = 32;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            instances: 32,
            tables: 16,
            memories: 4,
            wasm_stack_bytes: 512 << 10,
            deadline_ms: 5_000,
            http_response_bytes: 4 << 20,
            staged_persons_bytes: 256 << 20,
            kv_max_entries: 100_000,
            kv_max_bytes: 64 << 20,
        }
    }
}

/// Back-off after consecutive faults: `base_ms * 2^(faults - 1)`, at most `max_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    /// Pause after the first fault.
    pub base_ms: u64,
    /// Longest pause.
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 1_000,
            max_ms: 300_000,
        }
    }
}

impl Backoff {
    /// The pause after `faults` consecutive faults.
    pub fn delay_ms(&self, faults: u32) -> u64 {
        if faults == 0 {
            return 0;
        }
        let shift = (faults - 1).min(30);
        self.base_ms.saturating_mul(1u64 << shift).min(self.max_ms)
    }
}

/// Longest per-plugin deadline (`deadline_ms`), one hour.
pub const MAX_PLUGIN_DEADLINE_MS: u64 = 3_600_000;

/// One plugin's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// False keeps the plugin loaded-but-disabled.
    pub enabled: bool,
    /// What the plugin may use.
    pub grants: Capabilities,
    /// The plugin's own configuration section, handed to it through the
    /// `config` capability as JSON.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// This plugin's wall-clock deadline per call, milliseconds, instead of
    /// `limits.deadline_ms` (e.g. a directory sync of a large directory).
    pub deadline_ms: Option<u64>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            enabled: true,
            grants: Capabilities::default(),
            config: serde_json::Map::new(),
            deadline_ms: None,
        }
    }
}

/// Suffix of a plugin setting whose value names an environment variable:
/// `token_env = "HOOK_TOKEN"` gives the plugin `token` with that variable's value.
pub const ENV_SUFFIX: &str = "_env";

impl PluginSettings {
    /// The settings of the plugin's `config` section that name environment
    /// variables: (setting, what the plugin sees, variable), e.g.
    /// (`token_env`, `token`, `HOOK_TOKEN`). Only top-level keys count.
    fn env_settings(&self) -> impl Iterator<Item = (&str, &str, &serde_json::Value)> {
        self.config.iter().filter_map(|(key, value)| {
            key.strip_suffix(ENV_SUFFIX)
                .map(|target| (key.as_str(), target, value))
        })
    }

    /// Checks the `*_env` settings without reading the environment (the
    /// gateway may be checked where the secrets are not set): each names a
    /// variable (a non-empty string without `=` or NUL) and a setting that is
    /// not also given directly. Errors name the setting.
    pub(crate) fn check_env_settings(&self, plugin: &str) -> Result<(), String> {
        for (key, target, value) in self.env_settings() {
            let at = format!("plugins.{plugin}.config.{key}");
            if target.is_empty() {
                return Err(format!(
                    "{at}: name the setting before `{ENV_SUFFIX}` (e.g. `token{ENV_SUFFIX}`)"
                ));
            }
            match value {
                serde_json::Value::String(var) if !var.is_empty() && !var.contains(['=', '\0']) => {
                }
                _ => {
                    return Err(format!(
                        "{at}: must be the name of an environment variable (a non-empty string without `=`)"
                    ));
                }
            }
            if self.config.contains_key(target) {
                return Err(format!("{at}: set `{target}` or `{key}`, not both"));
            }
        }
        Ok(())
    }

    /// The `config` section as the plugin sees it: every `foo_env = "VAR"`
    /// replaced by `foo` with the value of the environment variable `VAR`,
    /// read now (at load and reload). An unset or non-UTF-8 variable is an
    /// error naming the setting and the variable, never a value; the values
    /// are not logged and stay out of [`HostConfig`].
    pub fn resolved_config(
        &self,
        plugin: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        self.resolve_config_with(plugin, |var| std::env::var(var))
    }

    /// [`PluginSettings::resolved_config`] over any variable lookup.
    pub(crate) fn resolve_config_with(
        &self,
        plugin: &str,
        lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        self.check_env_settings(plugin)?;
        let mut out = self.config.clone();
        for (key, target, value) in self.env_settings() {
            let var = value.as_str().unwrap_or_default();
            let resolved = lookup(var).map_err(|e| {
                let why = match e {
                    std::env::VarError::NotPresent => "is not set",
                    std::env::VarError::NotUnicode(_) => "is not valid UTF-8",
                };
                format!("plugins.{plugin}.config.{key}: the environment variable `{var}` {why}")
            })?;
            out.remove(key);
            out.insert(target.to_owned(), serde_json::Value::String(resolved));
        }
        Ok(out)
    }
}

/// A set of host capabilities with their scope: what a manifest requests and
/// what the configuration grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capabilities {
    /// `lockgate:host/log`.
    pub log: bool,
    /// `lockgate:host/config` (the plugin's own section only).
    pub config: bool,
    /// `lockgate:host/clock`.
    pub clock: bool,
    /// `lockgate:host/kv` (scoped to the plugin).
    pub kv: bool,
    /// `lockgate:host/gateway`: the operations allowed (e.g. `upsert-employees`).
    pub gateway: Vec<String>,
    /// Outbound HTTP through `wasi:http/outgoing-handler`: the hosts the plugin
    /// may reach and whether private addresses are allowed (see [`HttpGrant`]).
    pub http: HttpGrant,
    /// `lockgate:host/mqtt`: the topic prefixes the plugin may publish to
    /// (see [`MqttGrant`]).
    pub mqtt: MqttGrant,
    /// `lockgate:host/ldap`: the directories (names of `[plugins.ldap.NAME]`)
    /// the plugin may search.
    pub ldap: Vec<String>,
    /// `lockgate:host/smtp`: sending email through `[plugins.smtp]`.
    pub smtp: bool,
    /// `lockgate:host/device`: the operations of the PD whose frame a device-protocol
    /// plugin handles (only ever that PD, and only in `handle-frame`).
    pub device: bool,
    /// `lockgate:host/employees`: employees as the web-service client the host authenticated
    /// for a `handle` call (only ever that client, and only in `handle`).
    pub employees: bool,
}

/// The `mqtt` capability: `mqtt = { prefixes = ["lockgate/site-a/"] }` (or
/// just the list, `mqtt = ["lockgate/site-a/"]`), optionally with the command
/// topics the plugin takes commands from:
/// `mqtt = { prefixes = ["lockgate/site-a/"], commands = ["lockgate/site-a/cmd/"] }`.
///
/// A plugin may publish only to topics that start with one of the prefixes,
/// and receives (through `event-sink.handle-command`) only messages on topics
/// that start with one of its `commands` prefixes (none by default). A prefix
/// is 1-1024 bytes, contains no wildcard (`+`, `#`) and no NUL, and does not
/// start with `$` (broker-reserved topics such as `$SYS/`); a command prefix
/// also ends with `/` (the host subscribes to `<prefix>#`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "MqttGrantRepr")]
pub struct MqttGrant {
    /// Topic prefixes, compared byte-wise (`"a/b/"` allows `a/b/c`, not `a/bc`).
    pub prefixes: Vec<String>,
    /// Command topic prefixes (see [`MqttGrant::takes_command`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MqttGrantRepr {
    Prefixes(Vec<String>),
    Table(MqttGrantTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttGrantTable {
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    commands: Vec<String>,
}

impl From<MqttGrantRepr> for MqttGrant {
    fn from(r: MqttGrantRepr) -> Self {
        match r {
            MqttGrantRepr::Prefixes(prefixes) => MqttGrant {
                prefixes,
                commands: Vec::new(),
            },
            MqttGrantRepr::Table(MqttGrantTable { prefixes, commands }) => {
                MqttGrant { prefixes, commands }
            }
        }
    }
}

impl MqttGrant {
    /// True when no prefix is granted (MQTT publishing is refused).
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// Checks every prefix; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        let check = |what: &str, p: &str| -> Result<(), String> {
            if p.is_empty() || p.starts_with('$') {
                return Err(format!(
                    "invalid mqtt {what} `{p}`: must be non-empty and not start with `$`"
                ));
            }
            check_mqtt_topic(p).map_err(|e| format!("invalid mqtt {what} `{p}`: {e}"))
        };
        for p in &self.prefixes {
            check("prefix", p)?;
        }
        for p in &self.commands {
            check("command prefix", p)?;
            if !p.ends_with('/') {
                return Err(format!(
                    "invalid mqtt command prefix `{p}`: must end with `/`"
                ));
            }
        }
        Ok(())
    }

    /// True when `topic` starts with a granted prefix.
    pub fn allows(&self, topic: &str) -> bool {
        self.prefixes.iter().any(|p| topic.starts_with(p.as_str()))
    }

    /// True when a message on `topic` is a command for the plugin: it starts
    /// with a granted command prefix and is not a reply (`.../reply`, where
    /// the host publishes the answers).
    pub fn takes_command(&self, topic: &str) -> bool {
        !topic.ends_with("/reply") && self.commands.iter().any(|p| topic.starts_with(p.as_str()))
    }
}

/// Longest MQTT topic a plugin may publish to, bytes.
pub const MQTT_MAX_TOPIC_BYTES: usize = 1024;

/// Checks the syntax of a topic to publish to: 1-1024 bytes, no wildcard
/// (`+`, `#`), no NUL.
pub fn check_mqtt_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > MQTT_MAX_TOPIC_BYTES {
        return Err(format!("topics must be 1-{MQTT_MAX_TOPIC_BYTES} bytes"));
    }
    if topic.contains(['+', '#']) {
        return Err("topics to publish to must not contain the wildcards `+` or `#`".into());
    }
    if topic.contains('\0') {
        return Err("topics must not contain NUL".into());
    }
    Ok(())
}

/// The `http` capability: `http = ["api.example.com", "10.0.0.5:8443"]` or
/// `http = { hosts = [...], allow_private = true }`.
///
/// Each host entry is an exact host name or IP literal (IPv6 in brackets),
/// optionally with `:port`; without a port only the scheme's default port (80
/// for `http`, 443 for `https`) is allowed. No wildcards, schemes or paths.
/// The names a host resolves to must all be public addresses unless
/// `allow_private` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "HttpGrantRepr")]
pub struct HttpGrant {
    /// The hosts (`host` or `host:port`) the plugin may send requests to.
    pub hosts: Vec<String>,
    /// Also allow private, loopback, link-local and other non-public
    /// addresses (for hosts on the gateway's own network).
    pub allow_private: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum HttpGrantRepr {
    Hosts(Vec<String>),
    Table(HttpGrantTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpGrantTable {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    allow_private: bool,
}

impl From<HttpGrantRepr> for HttpGrant {
    fn from(r: HttpGrantRepr) -> Self {
        match r {
            HttpGrantRepr::Hosts(hosts) => HttpGrant {
                hosts,
                allow_private: false,
            },
            HttpGrantRepr::Table(HttpGrantTable {
                hosts,
                allow_private,
            }) => HttpGrant {
                hosts,
                allow_private,
            },
        }
    }
}

impl HttpGrant {
    /// True when no host is granted (outbound HTTP is refused).
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Checks every host entry; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        for h in &self.hosts {
            HostEntry::parse(h)?;
        }
        Ok(())
    }
}

/// One parsed `http` host entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostEntry {
    /// Lowercase host name, or an IP literal without brackets.
    pub host: String,
    /// The port; `None`: the scheme's default port only.
    pub port: Option<u16>,
}

impl HostEntry {
    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`.
    pub fn parse(entry: &str) -> Result<HostEntry, String> {
        let bad = |why: &str| {
            Err(format!(
                "invalid http host `{entry}`: {why} (use `host` or `host:port`, no scheme, path or wildcard)"
            ))
        };
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let Some((v6, after)) = rest.split_once(']') else {
                return bad("unclosed `[`");
            };
            if v6.parse::<std::net::Ipv6Addr>().is_err() {
                return bad("not an IPv6 address in brackets");
            }
            match after {
                "" => (v6, None),
                _ => match after.strip_prefix(':') {
                    Some(p) => (v6, Some(p)),
                    None => return bad("unexpected text after `]`"),
                },
            }
        } else {
            match entry.split_once(':') {
                Some((_, p)) if p.contains(':') => {
                    return bad("IPv6 addresses go in brackets");
                }
                Some((h, p)) => (h, Some(p)),
                None => (entry, None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => return bad("bad port"),
            },
        };
        let host = host.to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host).to_owned();
        if host.is_empty() || host.len() > 253 {
            return bad("empty or too long host");
        }
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        if !is_ip
            && !host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
        {
            return bad("not a host name or IP address");
        }
        Ok(HostEntry { host, port })
    }
}

impl Capabilities {
    /// The capabilities in `self` that `grants` does not cover, as readable names.
    pub fn not_covered_by(&self, grants: &Capabilities) -> Vec<String> {
        let mut out = Vec::new();
        for (want, have, name) in [
            (self.log, grants.log, "log"),
            (self.config, grants.config, "config"),
            (self.clock, grants.clock, "clock"),
            (self.kv, grants.kv, "kv"),
            (self.device, grants.device, "device"),
            (self.employees, grants.employees, "employees"),
        ] {
            if want && !have {
                out.push(name.to_owned());
            }
        }
        out.extend(
            self.gateway
                .iter()
                .filter(|op| !grants.gateway.contains(op))
                .map(|op| format!("gateway:{op}")),
        );
        out.extend(
            self.http
                .hosts
                .iter()
                .filter(|h| !grants.http.hosts.contains(h))
                .map(|h| format!("http:{h}")),
        );
        if self.smtp && !grants.smtp {
            out.push("smtp".to_owned());
        }
        out.extend(
            self.ldap
                .iter()
                .filter(|d| !grants.ldap.contains(d))
                .map(|d| format!("ldap:{d}")),
        );
        if self.http.allow_private && !grants.http.allow_private {
            out.push("http:allow_private".to_owned());
        }
        out.extend(
            self.mqtt
                .prefixes
                .iter()
                .filter(|p| !grants.mqtt.allows(p))
                .map(|p| format!("mqtt:{p}")),
        );
        out.extend(
            self.mqtt
                .commands
                .iter()
                .filter(|c| !grants.mqtt.commands.contains(c))
                .map(|c| format!("mqtt-commands:{c}")),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            base_ms: 100,
            max_ms: 1_000,
        };
        let got: Vec<u64> = (0..7).map(|n| b.delay_ms(n)).collect();
        assert_eq!(got, [0, 100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(b.delay_ms(u32::MAX), 1_000);
    }

    fn settings(config: &str) -> PluginSettings {
        toml::from_str(&format!("config = {config}")).unwrap()
    }

    #[test]
    fn env_settings_are_resolved_and_named_in_errors() {
        let env = |var: &str| match var {
            "HOOK_TOKEN" => Ok("s3cret".to_owned()),
            "EMPTY" => Ok(String::new()),
            _ => Err(std::env::VarError::NotPresent),
        };
        let p = settings(
            r#"{ url = "https://h/x", token_env = "HOOK_TOKEN", blank_env = "EMPTY", n = 1 }"#,
        );
        p.check_env_settings("hook").unwrap();
        let c = p.resolve_config_with("hook", env).unwrap();
        assert_eq!(c["token"], "s3cret");
        assert_eq!(c["blank"], "");
        assert_eq!(c["url"], "https://h/x");
        assert_eq!(c["n"], 1);
        assert!(!c.contains_key("token_env") && !c.contains_key("blank_env"));
        // The section itself keeps the variable's name only.
        assert_eq!(p.config["token_env"], "HOOK_TOKEN");
        assert!(!p.config.contains_key("token"));

        let missing = settings(r#"{ token_env = "NOT_SET_ANYWHERE" }"#)
            .resolve_config_with("hook", env)
            .unwrap_err();
        assert_eq!(
            missing,
            "plugins.hook.config.token_env: the environment variable `NOT_SET_ANYWHERE` is not set"
        );
        // Nested tables are the plugin's own business.
        let nested = settings(r#"{ headers = { auth_env = "X" } }"#)
            .resolve_config_with("hook", env)
            .unwrap();
        assert_eq!(nested["headers"]["auth_env"], "X");
    }

    #[test]
    fn env_settings_are_checked_by_validate() {
        for (config, expected) in [
            (
                r#"{ token = "a", token_env = "B" }"#,
                "set `token` or `token_env`, not both",
            ),
            (
                r#"{ token_env = 5 }"#,
                "must be the name of an environment variable",
            ),
            (
                r#"{ token_env = "" }"#,
                "must be the name of an environment variable",
            ),
            (
                r#"{ token_env = "A=B" }"#,
                "must be the name of an environment variable",
            ),
            (r#"{ _env = "A" }"#, "name the setting before `_env`"),
        ] {
            let cfg: HostConfig =
                toml::from_str(&format!("[plugins.hook]\nconfig = {config}")).unwrap();
            let e = cfg.validate().unwrap_err().to_string();
            assert!(
                e.contains("plugins.hook.config.") && e.contains(expected),
                "{config}: {e}"
            );
        }
        // Validation never reads the environment: an unset variable is fine here.
        let cfg: HostConfig =
            toml::from_str("[plugins.hook]\nconfig = { token_env = \"NOT_SET_ANYWHERE\" }")
                .unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn config_parses_from_toml_and_refuses_unknown_keys() {
        let cfg: HostConfig = toml::from_str(
            r#"
            allocator = "on-demand"
            [limits]
            deadline_ms = 200
            [plugins.ldap]
            grants = { log = true, gateway = ["upsert-employees"] }
            config = { url = "ldaps://dir.example", page_size = 500 }
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.allocator, AllocatorChoice::OnDemand);
        assert_eq!(cfg.limits.deadline_ms, 200);
        let ldap = cfg.plugin("ldap");
        assert!(ldap.enabled && ldap.grants.log && !ldap.grants.kv);
        assert_eq!(ldap.config["page_size"], 500);
        assert!(toml::from_str::<HostConfig>("bogus = 1").is_err());
        let bad: HostConfig =
            toml::from_str("[plugins.x.grants]\ngateway = [\"drop-tables\"]").unwrap();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("drop-tables")
        );
    }

    #[test]
    fn requested_capabilities_not_granted_are_named() {
        let want = Capabilities {
            log: true,
            kv: true,
            gateway: vec!["emit-event".into()],
            ..Default::default()
        };
        let have = Capabilities {
            log: true,
            ..Default::default()
        };
        assert_eq!(want.not_covered_by(&have), ["kv", "gateway:emit-event"]);
    }

    #[test]
    fn http_grants_parse_as_a_list_or_a_table() {
        let cfg: HostConfig = toml::from_str(
            r#"
            [plugins.a.grants]
            http = ["api.example.com", "10.0.0.5:8443"]
            [plugins.b.grants]
            http = { hosts = ["[::1]:8080"], allow_private = true }
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        let a = cfg.plugin("a").grants.http;
        assert_eq!(a.hosts, ["api.example.com", "10.0.0.5:8443"]);
        assert!(!a.allow_private);
        let b = cfg.plugin("b").grants.http;
        assert!(b.allow_private && b.hosts == ["[::1]:8080"]);
        assert_eq!(
            HostEntry::parse("[::1]:8080").unwrap(),
            HostEntry {
                host: "::1".into(),
                port: Some(8080)
            }
        );
        assert_eq!(
            HostEntry::parse("API.Example.com.").unwrap(),
            HostEntry {
                host: "api.example.com".into(),
                port: None
            }
        );
        for bad in [
            "*.example.com",
            "https://api.example.com",
            "api.example.com/path",
            "user@host",
            "host:0",
            "host:99999",
            "::1",
            "",
        ] {
            assert!(HostEntry::parse(bad).is_err(), "{bad}");
        }
        let bad: HostConfig =
            toml::from_str("[plugins.x.grants]\nhttp = [\"*.example.com\"]").unwrap();
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("plugins.x.grants.http"), "{err}");
        assert!(toml::from_str::<HostConfig>("[plugins.x.grants]\nhttp = { bogus = 1 }").is_err());
    }

    #[test]
    fn mqtt_grants_parse_and_validate() {
        let cfg: HostConfig = toml::from_str(
            r#"
            [plugins.a.grants]
            mqtt = { prefixes = ["lockgate/site-a/"] }
            [plugins.b.grants]
            mqtt = ["bms/"]
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        let a = cfg.plugin("a").grants.mqtt;
        assert!(a.allows("lockgate/site-a/events/key/lost"));
        assert!(!a.allows("lockgate/site-b/events"));
        assert_eq!(cfg.plugin("b").grants.mqtt.prefixes, ["bms/"]);
        assert!(cfg.plugin("c").grants.mqtt.is_empty());
        for bad in ["", "a/+/", "a/#", "$SYS/", "a\0b"] {
            let g = MqttGrant {
                prefixes: vec![bad.into()],
                commands: Vec::new(),
            };
            assert!(g.validate().is_err(), "{bad:?}");
            let g = MqttGrant {
                prefixes: vec!["ok/".into()],
                commands: vec![bad.into()],
            };
            assert!(g.validate().is_err(), "command {bad:?}");
        }
        assert!(check_mqtt_topic(&"x".repeat(MQTT_MAX_TOPIC_BYTES)).is_ok());
        assert!(check_mqtt_topic(&"x".repeat(MQTT_MAX_TOPIC_BYTES + 1)).is_err());
        let bad: HostConfig = toml::from_str("[plugins.x.grants]\nmqtt = [\"a/#\"]").unwrap();
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("plugins.x.grants.mqtt"), "{err}");
        assert!(toml::from_str::<HostConfig>("[plugins.x.grants]\nmqtt = { bogus = 1 }").is_err());
        let want = Capabilities {
            mqtt: MqttGrant {
                prefixes: vec!["lockgate/".into()],
                commands: Vec::new(),
            },
            ..Default::default()
        };
        let have = Capabilities {
            mqtt: a,
            ..Default::default()
        };
        assert_eq!(want.not_covered_by(&have), ["mqtt:lockgate/"]);
    }

    #[test]
    fn mqtt_command_grants_parse_and_deny_by_default() {
        let cfg: HostConfig = toml::from_str(
            r#"
            [plugins.a.grants]
            mqtt = { prefixes = ["site/events/"], commands = ["site/cmd/"] }
            [plugins.b.grants]
            mqtt = ["site/state/"]
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        let a = cfg.plugin("a").grants.mqtt;
        assert!(a.takes_command("site/cmd/sync"));
        assert!(!a.takes_command("site/cmd/sync/reply"));
        assert!(!a.takes_command("site/other"));
        assert!(!cfg.plugin("b").grants.mqtt.takes_command("site/cmd/sync"));
        let bad: HostConfig = toml::from_str(
            "[plugins.x.grants]\nmqtt = { prefixes = [\"a/\"], commands = [\"a/cmd\"] }",
        )
        .unwrap();
        assert!(bad.validate().is_err(), "a command prefix ends with /");
    }

    #[test]
    fn a_publish_prefix_overlapping_a_command_prefix_is_refused() {
        let check = |a: &str, b: &str| {
            toml::from_str::<HostConfig>(&format!(
                "[plugins.a.grants]\nmqtt = {{ prefixes = [{a}], commands = [\"site/cmd/\"] }}\n\
                 [plugins.b.grants]\nmqtt = [{b}]\n"
            ))
            .unwrap()
            .validate()
            .map_err(|e| e.to_string())
        };
        check(r#""site/events/""#, r#""site/state/", "other/""#).unwrap();
        check(r#""site/cmdx/""#, r#""site/c/""#).unwrap();
        for (a, b, who, prefix) in [
            (r#""site/""#, r#""x/""#, "a", "site/"),
            (r#""x/""#, r#""site/""#, "b", "site/"),
            (r#""x/""#, r#""site/cmd/ops/""#, "b", "site/cmd/ops/"),
            (r#""x/""#, r#""site/cmd""#, "b", "site/cmd"),
            (r#""x/""#, r#""s""#, "b", "s"),
            (r#""site/cmd/""#, r#""x/""#, "a", "site/cmd/"),
        ] {
            let err = check(a, b).unwrap_err();
            assert!(
                err.contains(&format!("plugins.{who}.grants.mqtt"))
                    && err.contains(&format!(
                        "`{prefix}` overlaps the command prefix `site/cmd/` of `a`"
                    )),
                "{err}"
            );
        }
    }
}
