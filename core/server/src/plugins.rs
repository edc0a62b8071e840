//! Wiring of the plugin host: the database-backed `kv` capability ([`DbKv`]), start-up from `[plugins]` ([`start`]) and the API's view of
//! the host ([`HostAdmin`], which implements `lockgate_api::plugins::PluginAdmin`).

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use lockgate_api::licence::LicenceConfig;
use lockgate_api::plugins::{PluginAdmin, PluginAdminError, PluginFault, PluginStats, PluginView};
use lockgate_host::types::PluginError;
use lockgate_host::{HostError, KvStore, KvUsage, PluginHost, PluginState, PluginStatus};
use lockgate_store::{Store, StoreError};

use crate::config::PluginsConfig;

/// The plugins' `kv` capability over the gateway's database (table `plugin_kv`).
#[derive(Debug, Clone)]
pub struct DbKv {
    store: Store,
}

impl DbKv {
    /// A key-value store over `store`.
    pub fn new(store: Store) -> Self {
        DbKv { store }
    }
}

/// A store error as the plugin sees it: bad input is `invalid`, the rest `unavailable`
/// (the details go to the log, not to the plugin).
fn kv_error(plugin: &str, e: StoreError) -> PluginError {
    match e {
        StoreError::Invalid(v) => PluginError::Invalid(v.to_string()),
        e => {
            tracing::warn!(plugin, error = %e, "plugin kv storage failed");
            PluginError::Unavailable("the key-value storage is unavailable".into())
        }
    }
}

#[async_trait]
impl KvStore for DbKv {
    async fn usage(&self, plugin: &str, except_key: &str) -> Result<KvUsage, PluginError> {
        let (entries, bytes) = self
            .store
            .plugin_kv_usage(plugin, except_key)
            .await
            .map_err(|e| kv_error(plugin, e))?;
        Ok(KvUsage { entries, bytes })
    }

    async fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, PluginError> {
        self.store
            .plugin_kv_get(plugin, key)
            .await
            .map_err(|e| kv_error(plugin, e))
    }

    async fn set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), PluginError> {
        self.store
            .plugin_kv_set(plugin, key, &value)
            .await
            .map_err(|e| kv_error(plugin, e))
    }

    async fn delete(&self, plugin: &str, key: &str) -> Result<(), PluginError> {
        self.store
            .plugin_kv_delete(plugin, key)
            .await
            .map(drop)
            .map_err(|e| kv_error(plugin, e))
    }

    async fn list_keys(
        &self,
        plugin: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, PluginError> {
        self.store
            .plugin_kv_list(plugin, prefix, limit)
            .await
            .map_err(|e| kv_error(plugin, e))
    }
}

/// Read the configuration file again and apply its `[plugins]` section to a running host
/// (`SIGHUP`). Returns the settings that need a restart and were kept.
pub async fn reconfigure(
    host: &PluginHost,
    config_path: Option<&std::path::Path>,
) -> anyhow::Result<Vec<String>> {
    let cfg = crate::config::Config::load(config_path, std::env::vars())
        .context("reading the configuration")?;
    let dirs: Vec<std::path::PathBuf> = cfg
        .plugins
        .directories()
        .into_iter()
        .filter(|d| d.is_dir())
        .collect();
    let plugins = cfg.plugins;
    let config = plugins.host_config();
    let reloading = host.clone();
    let kept = tokio::task::spawn_blocking(move || reloading.reconfigure(config, &dirs))
        .await
        .context("reloading plugins")?
        .context("applying the plugin configuration")?;
    log_unconfigured(host, &plugins);
    Ok(kept)
}

/// Plugins that are not enabled only because they have no `[plugins.instances.NAME]` section
/// ([`lockgate_host::registry::is_unconfigured`]): the names of those from `bundled_dir`, and
/// the others with the reason they are not enabled.
pub fn unconfigured(
    plugins: &[PluginStatus],
    cfg: &PluginsConfig,
    bundled_dir: &std::path::Path,
) -> (Vec<String>, Vec<(String, String)>) {
    let mut bundled = Vec::new();
    let mut others = Vec::new();
    for p in plugins {
        if !lockgate_host::registry::is_unconfigured(&p.state, cfg.instances.contains_key(&p.name))
        {
            continue;
        }
        if p.manifest_path.parent() == Some(bundled_dir) {
            bundled.push(p.name.clone());
        } else {
            let reason = match &p.state {
                PluginState::Refused { reason } | PluginState::Disabled { reason } => {
                    reason.clone()
                }
                _ => String::new(),
            };
            others.push((p.name.clone(), reason));
        }
    }
    (bundled, others)
}

/// Reports the plugins nobody configured after a start or a reload: the bundled ones in one
/// info line (shipping a plugin is not asking for it), each other one as a warning (it was
/// put into the plugin directory, so someone meant to run it).
fn log_unconfigured(host: &PluginHost, cfg: &PluginsConfig) {
    let (bundled, others) = unconfigured(
        &host.status().plugins,
        cfg,
        &crate::config::bundled_plugins_dir(),
    );
    if !bundled.is_empty() {
        tracing::info!(
            plugins = ?bundled,
            "bundled plugins not configured; to use one, grant it in [plugins.instances.NAME]"
        );
    }
    for (plugin, reason) in others {
        tracing::warn!(
            plugin = %plugin,
            %reason,
            "plugin not enabled and not configured (no [plugins.instances.NAME] section)"
        );
    }
}

/// Builds the plugin host from `[plugins]` with the database `kv` and loads the plugins of
/// the configured directories. `None` when `[plugins] enabled = false`. A plugin that cannot
/// load is recorded with its reason and never stops the gateway; an unreadable `directory`
/// does (a missing bundled directory is only logged: the build may have skipped it).
pub async fn start(
    cfg: &PluginsConfig,
    store: &Store,
    licence: &LicenceConfig,
    queue: Option<lockgate_jobs::Queue>,
    pd_authority: Option<Arc<lockgate_app::PdAuthority>>,
) -> anyhow::Result<Option<PluginHost>> {
    if !cfg.enabled {
        tracing::info!("plugin host disabled in the configuration");
        return Ok(None);
    }
    let mut gateway = crate::gateway::CoreGateway::new(store.clone())
        .with_licence(licence.clone())
        .with_on_invalid(
            cfg.sources
                .iter()
                .map(|(name, source)| (name.clone(), source.on_invalid))
                .collect(),
        );
    if let Some(q) = queue {
        gateway = gateway.with_queue(q);
    }
    if let Some(a) = pd_authority {
        gateway = gateway.with_pd_authority(a);
    }
    let host = PluginHost::new(
        cfg.host_config(),
        Arc::new(DbKv::new(store.clone())),
        Arc::new(gateway),
    )
    .context("starting the plugin host")?;
    let host = match &cfg.mqtt {
        Some(mqtt) => host.with_mqtt(Arc::new(
            lockgate_host::RumqttPublisher::start(mqtt).context("starting the MQTT publisher")?,
        )),
        None => host,
    };
    let bundled = crate::config::bundled_plugins_dir();
    for dir in cfg.directories() {
        if dir == bundled && !dir.is_dir() {
            tracing::warn!(dir = %dir.display(), "no bundled plugins directory; skipping it");
            continue;
        }
        let host = host.clone();
        let d = dir.clone();
        let names = tokio::task::spawn_blocking(move || host.load_dir(&d))
            .await
            .context("loading plugins")?
            .with_context(|| format!("loading the plugins in {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), plugins = ?names, "plugins loaded");
    }
    log_unconfigured(&host, cfg);
    Ok(Some(host))
}

/// The API's handle on the plugin host.
#[derive(Debug, Clone)]
pub struct HostAdmin(pub PluginHost);

fn admin_error(e: HostError) -> PluginAdminError {
    match e {
        HostError::NotFound(name) => PluginAdminError::NotFound(name),
        e => PluginAdminError::Failed(e.to_string()),
    }
}

/// The API's view of one plugin's status.
pub fn view(s: PluginStatus) -> PluginView {
    let to_json = |v: &lockgate_host::Capabilities| {
        serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
    };
    let (state, reason, causes) = match s.state {
        PluginState::Enabled => ("enabled", None, Vec::new()),
        PluginState::Disabled { reason } => ("disabled", Some(reason), Vec::new()),
        PluginState::Refused { reason } => ("refused", Some(reason), Vec::new()),
        PluginState::Failed { error, causes } => ("failed", Some(error), causes),
    };
    let st = s.stats;
    PluginView {
        name: s.name,
        version: s.version,
        world: s.world.map(|w| w.name().to_owned()),
        licence_feature: s.licence_feature,
        licensed: None,
        description: s.description,
        state: state.to_owned(),
        reason,
        causes,
        requested: s.requested.as_ref().map(to_json),
        grants: to_json(&s.granted),
        ungranted_requests: s.ungranted_requests,
        imports: s.imports,
        stats: PluginStats {
            calls: st.calls,
            completed: st.completed,
            expected_errors: st.expected_errors,
            faults: st.faults,
            rejected_backing_off: st.rejected_backing_off,
            consecutive_faults: st.consecutive_faults,
            backing_off_until_ms: st.backing_off_until_ms,
            latency_p50_us: st.latency_p50_us,
            latency_p99_us: st.latency_p99_us,
            latency_max_us: st.latency_max_us,
        },
        last_error: s.last_fault.map(|f| PluginFault {
            kind: serde_json::to_value(f.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            message: f.message,
            causes: f.causes,
            guest_stderr: f.guest_stderr,
            at_ms: f.at_ms,
        }),
    }
}

impl PluginAdmin for HostAdmin {
    fn list(&self) -> Vec<PluginView> {
        self.0.status().plugins.into_iter().map(view).collect()
    }

    fn enable(&self, name: &str) -> Result<PluginView, PluginAdminError> {
        self.0.enable(name).map(view).map_err(admin_error)
    }

    fn disable(&self, name: &str, reason: &str) -> Result<PluginView, PluginAdminError> {
        self.0.disable(name, reason).map(view).map_err(admin_error)
    }

    fn reload(&self, name: &str) -> Result<PluginView, PluginAdminError> {
        self.0.reload(name).map(view).map_err(admin_error)
    }

    fn sync(&self, name: &str, full: bool, dry_run: bool) -> lockgate_api::plugins::SyncOutcome {
        let host = self.0.clone();
        let name = name.to_owned();
        Box::pin(async move {
            match host.sync(&name, full, dry_run).await {
                Ok(Ok(r)) => Ok(serde_json::json!({
                    "plugin": name,
                    "full": full,
                    "dry_run": r.dry_run,
                    "staged": r.staged,
                    "created": r.created,
                    "updated": r.updated,
                    "unchanged": r.unchanged,
                    "deleted": r.deleted,
                    "deleted_identifiers": r.deleted_identifiers,
                    "skipped": r.skipped.iter().map(|s| serde_json::json!({ "identifier": s.identifier, "reason": s.reason })).collect::<Vec<_>>(),
                    "guard": r.guard,
                })),
                Ok(Err(PluginError::Invalid(m))) => Err(PluginAdminError::Refused(m)),
                Ok(Err(e)) => Err(PluginAdminError::Failed(crate::background::plugin_error(
                    &e,
                ))),
                Err(HostError::NotFound(n)) => Err(PluginAdminError::NotFound(n)),
                Err(e @ HostError::Unlicensed { .. }) => {
                    Err(PluginAdminError::Unlicensed(e.to_string()))
                }
                Err(e) => Err(PluginAdminError::Failed(e.to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn status(dir: &str, name: &str, state: PluginState) -> PluginStatus {
        PluginStatus {
            name: name.into(),
            manifest_path: PathBuf::from(dir).join(format!("{name}.toml")),
            version: Some("0.1.0".into()),
            world: None,
            description: None,
            state,
            requested: None,
            granted: Default::default(),
            ungranted_requests: Vec::new(),
            imports: Vec::new(),
            licence_feature: None,
            cache: None,
            stats: Default::default(),
            last_fault: None,
        }
    }

    #[test]
    fn bundled_plugins_nobody_configured_are_reported_together() {
        let refused = || PluginState::Refused {
            reason: "capability `log` is not granted".into(),
        };
        let plugins = [
            status("/bundled", "directory-sync", refused()),
            status(
                "/bundled",
                "email-notifier",
                PluginState::Disabled {
                    reason: "disabled in configuration".into(),
                },
            ),
            // Configured: its own warning, from the host, says what is wrong.
            status("/bundled", "event-bridge", refused()),
            // Enabled, or broken: not merely unconfigured.
            status("/bundled", "template", PluginState::Enabled),
            status(
                "/bundled",
                "broken",
                PluginState::Failed {
                    error: "cannot read component".into(),
                    causes: vec![],
                },
            ),
            // The operator's own directory: someone meant to run it.
            status("/srv/plugins", "hr-export", refused()),
        ];
        let mut cfg = PluginsConfig::default();
        cfg.instances
            .insert("event-bridge".into(), Default::default());
        let (bundled, others) = unconfigured(&plugins, &cfg, Path::new("/bundled"));
        assert_eq!(bundled, ["directory-sync", "email-notifier"]);
        assert_eq!(
            others,
            [(
                "hr-export".to_string(),
                "capability `log` is not granted".to_string()
            )]
        );
    }
}

/// The API's handle on the `web-service` plugins mounted under `/ws`.
#[derive(Debug, Clone)]
pub struct HostWebServices(pub PluginHost);

impl lockgate_api::web_services::WebServiceHost for HostWebServices {
    fn handle(
        &self,
        plugin: String,
        caller: Option<lockgate_api::web_services::WebServiceCaller>,
        request: lockgate_api::web_services::WebRequest,
    ) -> lockgate_api::web_services::WebFuture {
        let host = self.0.clone();
        Box::pin(async move {
            let client = caller.map(|c| lockgate_host::WebServiceClient {
                system_id: c.system_id,
                c_key_id: c.c_key_id,
                label: c.label,
                correlation_id: c.correlation_id,
                domains: c.domains,
                home: c.home,
                sees_hidden_persons: c.sees_hidden_persons,
            });
            let request = lockgate_host::types::Request {
                method: request.method,
                path: request.path,
                headers: request.headers,
                body: request.body,
            };
            host.handle(&plugin, client, request)
                .await
                .map(|r| lockgate_api::web_services::WebResponse {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                })
                .map_err(|e| e.to_string())
        })
    }
}

/// The API's handle on the `sso` plugin named in `[sso] plugin`.
#[derive(Debug, Clone)]
pub struct HostSso {
    pub host: PluginHost,
    pub plugin: String,
}

fn sso_error(e: Result<PluginError, HostError>) -> lockgate_api::sso::SsoError {
    use lockgate_api::sso::SsoError;
    match e {
        Ok(PluginError::Invalid(m)) | Ok(PluginError::NotFound(m)) | Ok(PluginError::Denied(m)) => {
            SsoError::Invalid(m)
        }
        Ok(PluginError::Unavailable(m)) | Ok(PluginError::Other(m)) => SsoError::Unavailable(m),
        Err(e) => {
            tracing::warn!(error = %e, "the sso plugin failed");
            SsoError::Unavailable(format!("the sso plugin is unavailable: {e}"))
        }
    }
}

fn to_plugin_sp(sp: lockgate_api::sso::ServiceProvider) -> lockgate_host::types::ServiceProvider {
    lockgate_host::types::ServiceProvider {
        entity_id: sp.entity_id,
        acs_url: sp.acs_url,
        idp_metadata: sp.idp_metadata,
        certificate: sp.certificate,
        subject_attribute: sp.subject_attribute,
        clock_skew_seconds: sp.clock_skew_seconds,
    }
}

/// Runs one plugin call, mapping both failure layers into the API's error.
macro_rules! sso_call {
    ($self:ident, $call:expr) => {{
        let host = $self.host.clone();
        let name = $self.plugin.clone();
        Box::pin(async move {
            match $call(host, name).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(sso_error(Ok(e))),
                Err(e) => Err(sso_error(Err(e))),
            }
        })
    }};
}

impl lockgate_api::sso::SsoProvider for HostSso {
    fn read_metadata(
        &self,
        xml: String,
    ) -> lockgate_api::sso::SsoFuture<lockgate_api::sso::IdpSummary> {
        sso_call!(self, |host: PluginHost, name: String| async move {
            host.read_idp_metadata(&name, xml).await.map(|r| {
                r.map(|s| lockgate_api::sso::IdpSummary {
                    entity_id: s.entity_id,
                    sso_url: s.sso_url,
                    signing_certificates: s.signing_certificates,
                    valid_until: s.valid_until,
                })
            })
        })
    }

    fn fetch_metadata(&self, url: String) -> lockgate_api::sso::SsoFuture<String> {
        sso_call!(self, |host: PluginHost, name: String| async move {
            host.fetch_idp_metadata(&name, url).await
        })
    }

    fn sp_metadata(
        &self,
        sp: lockgate_api::sso::ServiceProvider,
    ) -> lockgate_api::sso::SsoFuture<String> {
        sso_call!(self, |host: PluginHost, name: String| async move {
            host.sp_metadata(&name, to_plugin_sp(sp)).await
        })
    }

    fn begin_login(
        &self,
        sp: lockgate_api::sso::ServiceProvider,
        relay_state: String,
    ) -> lockgate_api::sso::SsoFuture<(String, String)> {
        sso_call!(self, |host: PluginHost, name: String| async move {
            host.begin_login(&name, to_plugin_sp(sp), &relay_state)
                .await
                .map(|r| r.map(|l| (l.id, l.redirect_url)))
        })
    }

    fn complete_login(
        &self,
        sp: lockgate_api::sso::ServiceProvider,
        method: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> lockgate_api::sso::SsoFuture<lockgate_api::sso::VerifiedIdentity> {
        sso_call!(self, |host: PluginHost, name: String| async move {
            let request = lockgate_host::types::Request {
                method,
                path: String::from("/acs"),
                headers,
                body,
            };
            host.complete_login(&name, to_plugin_sp(sp), request)
                .await
                .map(|r| {
                    r.map(|i| lockgate_api::sso::VerifiedIdentity {
                        subject: i.subject,
                        assertion_id: i.assertion_id,
                        in_response_to: i.in_response_to,
                        not_on_or_after: i.not_on_or_after,
                    })
                })
        })
    }
}
