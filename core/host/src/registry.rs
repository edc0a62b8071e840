//! [`PluginHost`]: loads plugins from a directory of manifests, checks
//! grants (and, before every call, the licence feature a manifest names), keeps one `InstancePre` per plugin, runs every call in
//! a fresh store under the configured limits, classifies faults (trap,
//! deadline, memory, table, stack), counts calls, latency and faults, backs a
//! faulting plugin off, and reports all of it as a serializable status.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::component::{InstancePre, Linker};
use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap, UpdateDeadline};

use crate::bindings::exports::lockgate::connector::{
    content_provider, device_handler, directory_source, event_sink, http_handler,
    identity_provider, notification_sink, plugin,
};
use crate::cache::{CacheOutcome, ComponentCache};
use crate::config::{Capabilities, HostConfig};
use crate::engine::{Allocator, EpochTicker, build_engine};
use crate::manifest::{Manifest, World};
use crate::providers::{DeviceBinding, Gateway, KvStore, MqttPublisher, WebServiceClient};
use crate::state::{ConnectorSlot, Connectors, HostState, MqttSlot, PluginContext};
use crate::types::{
    Command, ContentItem, Device, Event, FrameAnswer, Identity, IdpSummary, LoginRequest,
    Notification, NotifyError, PluginError, PluginInfo, Request, Response, ServiceProvider,
    SyncReport,
};
use crate::{HostError, error_chain, now_ms};

/// Latencies kept per plugin for the percentiles.
const LATENCY_WINDOW: usize = 1_024;
/// Extra wall-clock time beyond the deadline before a call stuck in a host
/// await is abandoned (the epoch only interrupts running wasm).
const HOST_AWAIT_GRACE: Duration = Duration::from_millis(250);

/// What went wrong in a faulting call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// A trap: `unreachable` (a Rust panic), out-of-bounds access, ...
    Trap,
    /// The call ran past its deadline.
    Deadline,
    /// Linear memory would exceed the limit.
    MemoryLimit,
    /// A table would exceed the limit.
    TableLimit,
    /// The wasm stack was exhausted.
    StackOverflow,
    /// Instantiation failed.
    Instantiation,
}

/// A fault, with its cause chain and what the guest wrote to stderr.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    /// The class of fault.
    pub kind: FaultKind,
    /// One line for administrators.
    pub message: String,
    /// The full error chain, outermost first (includes the wasm backtrace).
    pub causes: Vec<String>,
    /// The guest's stderr (e.g. a panic message), when it wrote any.
    pub guest_stderr: Option<String>,
    /// When it happened (ms since the Unix epoch).
    pub at_ms: i64,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.guest_stderr {
            write!(f, " (guest stderr: {})", s.trim())?;
        }
        Ok(())
    }
}

/// A plugin's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum PluginState {
    /// Loaded and callable (unless backing off).
    Enabled,
    /// Not running by decision: configuration or an administrator.
    Disabled {
        /// Why.
        reason: String,
    },
    /// Refused by policy: its imports exceed its grants, or it does not
    /// implement its world.
    Refused {
        /// Why.
        reason: String,
    },
    /// Could not be loaded: unreadable or malformed manifest or component.
    Failed {
        /// The error.
        error: String,
        /// The cause chain.
        causes: Vec<String>,
    },
}

/// Call statistics of one plugin.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatsView {
    /// Calls attempted (including refused-while-backing-off ones).
    pub calls: u64,
    /// Calls that returned normally (`ok` or an expected error).
    pub completed: u64,
    /// Completed calls whose result was an expected error.
    pub expected_errors: u64,
    /// Calls that faulted.
    pub faults: u64,
    /// Calls refused because the plugin was backing off.
    pub rejected_backing_off: u64,
    /// Faults since the last completed call.
    pub consecutive_faults: u32,
    /// Calls are refused until then (ms since the Unix epoch).
    pub backing_off_until_ms: Option<i64>,
    /// Latency percentiles over the last calls, microseconds.
    pub latency_p50_us: Option<u64>,
    /// 99th percentile.
    pub latency_p99_us: Option<u64>,
    /// Slowest of the last calls.
    pub latency_max_us: Option<u64>,
}

/// The status of one plugin (for `GET /api/v1/plugins`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginStatus {
    /// Plugin name (the manifest file stem when the manifest is unreadable).
    pub name: String,
    /// The manifest file.
    pub manifest_path: PathBuf,
    /// Version from the manifest.
    pub version: Option<String>,
    /// World from the manifest.
    pub world: Option<World>,
    /// The licence feature the manifest names: every call is refused unless the locking
    /// system the plugin acts for holds it at that moment.
    pub licence_feature: Option<String>,
    /// Description from the manifest.
    pub description: Option<String>,
    /// Current state.
    #[serde(flatten)]
    pub state: PluginState,
    /// What the manifest requests.
    pub requested: Option<Capabilities>,
    /// What the configuration grants.
    pub granted: Capabilities,
    /// Requested capabilities that are not granted (calls using them fail).
    pub ungranted_requests: Vec<String>,
    /// The component's imports.
    pub imports: Vec<String>,
    /// Whether the compiled component came from the cache.
    pub cache: Option<CacheOutcome>,
    /// Call statistics.
    pub stats: StatsView,
    /// The last fault.
    pub last_fault: Option<Fault>,
}

/// The status of the whole host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostStatus {
    /// The instance allocator in use.
    pub allocator: Allocator,
    /// Every plugin, by name.
    pub plugins: Vec<PluginStatus>,
}

/// Export indices of the kind-specific interface.
#[derive(Clone)]
enum KindIndices {
    DirectorySync(directory_source::GuestIndices),
    Sso(identity_provider::GuestIndices),
    WebService(http_handler::GuestIndices),
    Notifier(notification_sink::GuestIndices),
    ContentSource(content_provider::GuestIndices),
    DeviceProtocol(device_handler::GuestIndices),
    EventBridge(event_sink::GuestIndices),
}

/// A loaded plugin: ready to instantiate.
struct Loaded {
    ctx: PluginContext,
    world: World,
    pre: InstancePre<HostState>,
    plugin: plugin::GuestIndices,
    kind: KindIndices,
}

#[derive(Default)]
struct Stats {
    view: StatsView,
    backoff_until: Option<Instant>,
    /// Half-open circuit: after a back-off ends, one trial call runs (until it
    /// ends, or at the latest until this instant) while the others are refused.
    trial_until: Option<Instant>,
    latencies_us: VecDeque<u64>,
}

struct Entry {
    manifest_path: PathBuf,
    manifest: Option<Manifest>,
    state: PluginState,
    loaded: Option<Arc<Loaded>>,
    imports: Vec<String>,
    cache: Option<CacheOutcome>,
    stats: Stats,
    last_fault: Option<Fault>,
}

struct Inner {
    engine: Engine,
    allocator: Allocator,
    linker: Linker<HostState>,
    cache: ComponentCache,
    /// Replaced as a whole by [`PluginHost::reconfigure`]; engine-level settings in it
    /// (allocator, epoch tick, cache directory, instance pool) keep their start-up values.
    config: std::sync::RwLock<Arc<HostConfig>>,
    kv: Arc<dyn KvStore>,
    gateway: Arc<dyn Gateway>,
    mqtt: MqttSlot,
    connectors: ConnectorSlot,
    plugins: Mutex<BTreeMap<String, Entry>>,
    _ticker: EpochTicker,
}

/// The plugin host: cheap to clone, shared by every request handler.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("allocator", &self.inner.allocator)
            .finish_non_exhaustive()
    }
}

/// One frame of a PD for a device-protocol plugin, with the PD it is bound to.
struct DeviceFrame {
    binding: DeviceBinding,
    device: Device,
    session: Vec<u8>,
    frame: Vec<u8>,
}

/// One call into a plugin.
enum Call {
    Describe,
    Sync { full: bool, dry_run: bool },
    ReadMetadata(String),
    FetchMetadata(String),
    SpMetadata(Box<ServiceProvider>),
    BeginLogin(Box<ServiceProvider>, String),
    CompleteLogin(Box<ServiceProvider>, Request),
    Handle(Option<WebServiceClient>, Request),
    Notify(Notification),
    ListContent,
    FetchContent(String),
    HandleFrame(Box<DeviceFrame>),
    Publish(Event),
    Command(Command),
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Describe => "describe",
            Call::Sync { .. } => "sync",
            Call::ReadMetadata(_) => "read-metadata",
            Call::FetchMetadata(_) => "fetch-metadata",
            Call::SpMetadata(_) => "sp-metadata",
            Call::BeginLogin(..) => "begin-login",
            Call::CompleteLogin(..) => "complete-login",
            Call::Handle(..) => "handle",
            Call::Notify(_) => "notify",
            Call::ListContent => "list-items",
            Call::FetchContent(_) => "fetch",
            Call::HandleFrame(..) => "handle-frame",
            Call::Publish(_) => "publish",
            Call::Command(_) => "handle-command",
        }
    }

    fn world(&self) -> Option<World> {
        Some(match self {
            Call::Describe => return None,
            Call::Sync { .. } => World::DirectorySync,
            Call::ReadMetadata(_)
            | Call::FetchMetadata(_)
            | Call::SpMetadata(_)
            | Call::BeginLogin(..)
            | Call::CompleteLogin(..) => World::Sso,
            Call::Handle(..) => World::WebService,
            Call::Notify(_) => World::Notifier,
            Call::ListContent | Call::FetchContent(_) => World::ContentSource,
            Call::HandleFrame(..) => World::DeviceProtocol,
            Call::Publish(_) | Call::Command(_) => World::EventBridge,
        })
    }
}

enum Reply {
    Describe(PluginInfo),
    Sync(Result<SyncReport, PluginError>),
    IdpSummary(Result<IdpSummary, PluginError>),
    BeginLogin(Result<LoginRequest, PluginError>),
    CompleteLogin(Result<Identity, PluginError>),
    Handle(Response),
    Unit(Result<(), PluginError>),
    ListContent(Result<Vec<ContentItem>, PluginError>),
    Bytes(Result<Vec<u8>, PluginError>),
    Frames(Result<FrameAnswer, PluginError>),
    Notify(Result<(), NotifyError>),
    Text(Result<String, PluginError>),
}

impl Reply {
    fn is_expected_error(&self) -> bool {
        match self {
            Reply::Describe(_) | Reply::Handle(_) => false,
            Reply::Sync(r) => r.is_err(),
            Reply::IdpSummary(r) => r.is_err(),
            Reply::BeginLogin(r) => r.is_err(),
            Reply::CompleteLogin(r) => r.is_err(),
            Reply::Unit(r) => r.is_err(),
            Reply::ListContent(r) => r.is_err(),
            Reply::Bytes(r) => r.is_err(),
            Reply::Frames(r) => r.is_err(),
            Reply::Notify(r) => r.is_err(),
            Reply::Text(r) => r.is_err(),
        }
    }
}

macro_rules! expect_reply {
    ($self:ident, $name:expr, $call:expr, $pat:pat => $out:expr) => {
        match $self.invoke($name, $call).await? {
            $pat => Ok($out),
            _ => unreachable!("a call returns its own reply kind"),
        }
    };
}

impl PluginHost {
    /// Builds the engine, the linker and the epoch thread. No plugin is loaded yet.
    pub fn new(
        config: HostConfig,
        kv: Arc<dyn KvStore>,
        gateway: Arc<dyn Gateway>,
    ) -> Result<Self, HostError> {
        config.validate()?;
        let (engine, allocator) = build_engine(&config)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        let err = |e: wasmtime::Error| HostError::Engine(error_chain(&e));
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(err)?;
        crate::bindings::Host_::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(err)?;
        let connectors = Connectors::from_config(&config)?;
        let cache = ComponentCache::new(
            &engine,
            config.cache_dir.as_deref(),
            config.cache_key_file.as_deref(),
        );
        let ticker =
            EpochTicker::start(engine.clone(), Duration::from_millis(config.epoch_tick_ms))?;
        tracing::info!(?allocator, "plugin host ready");
        Ok(PluginHost {
            inner: Arc::new(Inner {
                engine,
                allocator,
                linker,
                cache,
                config: std::sync::RwLock::new(Arc::new(config)),
                kv,
                gateway,
                mqtt: MqttSlot::default(),
                connectors: Arc::new(std::sync::RwLock::new(Arc::new(connectors))),
                plugins: Mutex::new(BTreeMap::new()),
                _ticker: ticker,
            }),
        })
    }

    /// Sets the publisher behind the `mqtt` capability (builder style; see
    /// [`PluginHost::set_mqtt`]).
    pub fn with_mqtt(self, publisher: Arc<dyn MqttPublisher>) -> Self {
        self.set_mqtt(Some(publisher));
        self
    }

    /// Replaces the publisher behind the `mqtt` capability; `None` makes
    /// `publish` answer `unavailable`. Takes effect for the next call of
    /// every plugin, loaded or not.
    pub fn set_mqtt(&self, publisher: Option<Arc<dyn MqttPublisher>>) {
        match self.inner.mqtt.write() {
            Ok(mut m) => *m = publisher,
            Err(poisoned) => *poisoned.into_inner() = publisher,
        }
    }

    /// The engine (for benchmarks and tools).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The allocator in use.
    pub fn allocator(&self) -> Allocator {
        self.inner.allocator
    }

    fn plugins(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.inner.plugins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads every `*.toml` manifest in `dir` (sorted by file name) and
    /// returns the names found. A plugin that cannot be loaded is recorded
    /// with its state and reason; it never stops the others.
    pub fn load_dir(&self, dir: &Path) -> Result<Vec<String>, HostError> {
        let io = |source| HostError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut manifests: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
            .collect();
        manifests.sort();
        let mut names = Vec::new();
        for path in manifests {
            names.push(self.load_manifest(&path));
        }
        Ok(names)
    }

    /// Loads (or reloads) the plugin described by one manifest file and
    /// returns its name.
    pub fn load_manifest(&self, manifest_path: &Path) -> String {
        let (name, entry) = self.load_entry(manifest_path);
        let configured = self.config().plugins.contains_key(&name);
        match &entry.state {
            PluginState::Enabled => tracing::info!(plugin = %name, "plugin loaded"),
            // The embedder reports these together (a bundled plugin nobody configured is
            // expected, not a problem).
            state if is_unconfigured(state, configured) => {
                tracing::debug!(plugin = %name, ?state, "plugin not configured")
            }
            state => tracing::warn!(plugin = %name, ?state, "plugin not enabled"),
        }
        let mut plugins = self.plugins();
        if let Some(old) = plugins.get(&name)
            && old.manifest_path != entry.manifest_path
        {
            let other = old.manifest_path.display().to_string();
            drop(plugins);
            tracing::error!(plugin = %name, first = %other, "duplicate plugin name");
            let dup_name = format!("{name}@{}", manifest_path.display());
            let mut plugins = self.plugins();
            plugins.insert(
                dup_name.clone(),
                Entry::failed(
                    manifest_path,
                    None,
                    format!("duplicate plugin name `{name}` (also in {other})"),
                    vec![],
                ),
            );
            return dup_name;
        }
        plugins.insert(name.clone(), entry);
        name
    }

    fn load_entry(&self, manifest_path: &Path) -> (String, Entry) {
        let stem = manifest_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = match std::fs::read_to_string(manifest_path) {
            Ok(t) => t,
            Err(e) => {
                return (
                    stem,
                    Entry::failed(
                        manifest_path,
                        None,
                        format!("cannot read manifest: {e}"),
                        vec![],
                    ),
                );
            }
        };
        let manifest = match Manifest::parse(&text) {
            Ok(m) => m,
            Err(e) => {
                return (
                    stem,
                    Entry::failed(
                        manifest_path,
                        None,
                        format!("invalid manifest: {e}"),
                        vec![],
                    ),
                );
            }
        };
        let name = manifest.name.clone();
        let config = self.config();
        let settings = config.plugin(&name);
        let mut entry = Entry::failed(manifest_path, Some(manifest.clone()), String::new(), vec![]);
        if !settings.enabled {
            entry.state = PluginState::Disabled {
                reason: "disabled in configuration".into(),
            };
            return (name, entry);
        }
        // `*_env` settings are read from the environment now (load, reload, SIGHUP).
        let mut settings = settings;
        match settings.resolved_config(&name) {
            Ok(resolved) => settings.config = resolved,
            Err(error) => {
                entry.state = failed(error, vec![]);
                return (name, entry);
            }
        }
        let wasm = manifest.component_path(manifest_path);
        let bytes = match std::fs::read(&wasm) {
            Ok(b) => b,
            Err(e) => {
                entry.state = failed(
                    format!("cannot read component {}: {e}", wasm.display()),
                    vec![],
                );
                return (name, entry);
            }
        };
        let (component, outcome) = match self.inner.cache.load(&self.inner.engine, &bytes) {
            Ok(c) => c,
            Err(e) => {
                entry.state = failed(format!("{}: {e}", wasm.display()), vec![]);
                return (name, entry);
            }
        };
        entry.cache = Some(outcome);
        let ty = component.component_type();
        entry.imports = ty
            .imports(&self.inner.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let exports: Vec<String> = ty
            .exports(&self.inner.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        if let Err(reason) = check_imports(&entry.imports, &settings.grants) {
            entry.state = PluginState::Refused { reason };
            return (name, entry);
        }
        for needed in [
            "lockgate:connector/plugin@0.1.0",
            manifest.world.export_interface(),
        ] {
            if !exports.iter().any(|e| e == needed) {
                entry.state = PluginState::Refused {
                    reason: format!(
                        "does not export `{needed}`, which world `{}` requires",
                        manifest.world.name()
                    ),
                };
                return (name, entry);
            }
        }
        match self.prepare(&name, &manifest, settings, &component) {
            Ok(loaded) => {
                entry.loaded = Some(Arc::new(loaded));
                entry.state = PluginState::Enabled;
            }
            Err(e) => {
                entry.state = failed(
                    format!("cannot prepare instance: {}", error_chain(&e)),
                    chain(&e),
                )
            }
        }
        (name, entry)
    }

    fn prepare(
        &self,
        name: &str,
        manifest: &Manifest,
        settings: crate::config::PluginSettings,
        component: &wasmtime::component::Component,
    ) -> wasmtime::Result<Loaded> {
        let pre = self.inner.linker.instantiate_pre(component)?;
        let plugin = plugin::GuestIndices::new(&pre)?;
        let kind = match manifest.world {
            World::DirectorySync => {
                KindIndices::DirectorySync(directory_source::GuestIndices::new(&pre)?)
            }
            World::Sso => KindIndices::Sso(identity_provider::GuestIndices::new(&pre)?),
            World::WebService => KindIndices::WebService(http_handler::GuestIndices::new(&pre)?),
            World::Notifier => KindIndices::Notifier(notification_sink::GuestIndices::new(&pre)?),
            World::ContentSource => {
                KindIndices::ContentSource(content_provider::GuestIndices::new(&pre)?)
            }
            World::DeviceProtocol => {
                KindIndices::DeviceProtocol(device_handler::GuestIndices::new(&pre)?)
            }
            World::EventBridge => KindIndices::EventBridge(event_sink::GuestIndices::new(&pre)?),
        };
        let ctx = PluginContext {
            name: name.into(),
            grants: Arc::new(settings.grants),
            config: Arc::new(settings.config),
            kv: self.inner.kv.clone(),
            gateway: self.inner.gateway.clone(),
            mqtt: self.inner.mqtt.clone(),
            connectors: self.inner.connectors.clone(),
            deadline_ms: settings.deadline_ms,
            licence_feature: manifest.licence_feature.as_deref().map(Arc::from),
        };
        Ok(Loaded {
            ctx,
            world: manifest.world,
            pre,
            plugin,
            kind,
        })
    }

    /// The configuration in force.
    fn config(&self) -> Arc<HostConfig> {
        match self.inner.config.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Applies a new configuration without a restart (`SIGHUP`): per-plugin settings
    /// (enabled, grants, the plugin's own config) and limits take
    /// effect; every known plugin is reloaded and the directories are scanned again for
    /// new ones. Settings the engine was built with (allocator, epoch tick, cache
    /// directory, instance pool) need a restart: they keep their values and are named in
    /// the answer. An invalid configuration changes nothing.
    pub fn reconfigure(
        &self,
        config: HostConfig,
        dirs: &[PathBuf],
    ) -> Result<Vec<String>, HostError> {
        config.validate()?;
        let old = self.config();
        let mut needs_restart = Vec::new();
        if config.allocator != old.allocator {
            needs_restart.push("allocator".to_owned());
        }
        if config.epoch_tick_ms != old.epoch_tick_ms {
            needs_restart.push("epoch_tick_ms".to_owned());
        }
        if config.cache_dir != old.cache_dir {
            needs_restart.push("cache_dir".to_owned());
        }
        if config.cache_key_file != old.cache_key_file {
            needs_restart.push("cache_key_file".to_owned());
        }
        if config.max_concurrent_instances != old.max_concurrent_instances {
            needs_restart.push("max_concurrent_instances".to_owned());
        }
        if self.inner.allocator == crate::engine::Allocator::Pooling && config.limits != old.limits
        {
            // The pool's slots were sized from the start-up limits.
            needs_restart.push("limits".to_owned());
        }
        let connectors = Connectors::from_config(&config)?;
        match self.inner.connectors.write() {
            Ok(mut c) => *c = Arc::new(connectors),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(connectors),
        }
        let mut next = config;
        next.allocator = old.allocator;
        next.epoch_tick_ms = old.epoch_tick_ms;
        next.cache_dir = old.cache_dir.clone();
        next.cache_key_file = old.cache_key_file.clone();
        next.max_concurrent_instances = old.max_concurrent_instances;
        if needs_restart.iter().any(|k| k == "limits") {
            next.limits = old.limits.clone();
        }
        match self.inner.config.write() {
            Ok(mut c) => *c = Arc::new(next),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
        }
        let known: Vec<PathBuf> = self
            .plugins()
            .values()
            .map(|e| e.manifest_path.clone())
            .collect();
        for path in known {
            self.load_manifest(&path);
        }
        for dir in dirs {
            self.load_dir(dir)?;
        }
        if !needs_restart.is_empty() {
            tracing::warn!(settings = ?needs_restart, "plugin settings that need a restart were kept");
        }
        Ok(needs_restart)
    }

    /// Reloads a plugin from its manifest (configuration and component are
    /// read again); clears its back-off and fault counters.
    pub fn reload(&self, name: &str) -> Result<PluginStatus, HostError> {
        let path = self.plugins().get(name).map(|e| e.manifest_path.clone());
        let path = path.ok_or_else(|| HostError::NotFound(name.to_owned()))?;
        let new_name = self.load_manifest(&path);
        self.status_of(&new_name)
    }

    /// Enables a plugin that an administrator disabled (a reload).
    pub fn enable(&self, name: &str) -> Result<PluginStatus, HostError> {
        self.reload(name)
    }

    /// Disables a plugin: calls are refused with `reason` until it is enabled.
    pub fn disable(&self, name: &str, reason: &str) -> Result<PluginStatus, HostError> {
        {
            let mut plugins = self.plugins();
            let entry = plugins
                .get_mut(name)
                .ok_or_else(|| HostError::NotFound(name.to_owned()))?;
            entry.loaded = None;
            entry.state = PluginState::Disabled {
                reason: reason.to_owned(),
            };
        }
        tracing::info!(plugin = name, reason, "plugin disabled");
        self.status_of(name)
    }

    /// The status of one plugin.
    pub fn status_of(&self, name: &str) -> Result<PluginStatus, HostError> {
        let plugins = self.plugins();
        let entry = plugins
            .get(name)
            .ok_or_else(|| HostError::NotFound(name.to_owned()))?;
        Ok(self.status_view(name, entry))
    }

    /// The status of the host and every plugin.
    pub fn status(&self) -> HostStatus {
        let plugins = self.plugins();
        HostStatus {
            allocator: self.inner.allocator,
            plugins: plugins
                .iter()
                .map(|(n, e)| self.status_view(n, e))
                .collect(),
        }
    }

    fn status_view(&self, name: &str, e: &Entry) -> PluginStatus {
        let granted = self
            .config()
            .plugin(e.manifest.as_ref().map_or(name, |m| m.name.as_str()))
            .grants;
        let mut stats = e.stats.view.clone();
        if e.stats.backoff_until.is_none_or(|t| t <= Instant::now()) {
            stats.backing_off_until_ms = None;
        }
        let mut sorted: Vec<u64> = e.stats.latencies_us.iter().copied().collect();
        sorted.sort_unstable();
        let pct = |p: usize| (!sorted.is_empty()).then(|| sorted[(sorted.len() - 1) * p / 100]);
        stats.latency_p50_us = pct(50);
        stats.latency_p99_us = pct(99);
        stats.latency_max_us = sorted.last().copied();
        PluginStatus {
            name: name.to_owned(),
            manifest_path: e.manifest_path.clone(),
            version: e.manifest.as_ref().map(|m| m.version.clone()),
            world: e.manifest.as_ref().map(|m| m.world),
            licence_feature: e.manifest.as_ref().and_then(|m| m.licence_feature.clone()),
            description: e.manifest.as_ref().map(|m| m.description.clone()),
            state: e.state.clone(),
            requested: e.manifest.as_ref().map(|m| m.capabilities.clone()),
            ungranted_requests: e
                .manifest
                .as_ref()
                .map(|m| m.capabilities.not_covered_by(&granted))
                .unwrap_or_default(),
            granted,
            imports: e.imports.clone(),
            cache: e.cache,
            stats,
            last_fault: e.last_fault.clone(),
        }
    }

    /// `plugin.describe`.
    pub async fn describe(&self, name: &str) -> Result<PluginInfo, HostError> {
        expect_reply!(self, name, Call::Describe, Reply::Describe(r) => r)
    }

    /// `directory-source.sync` (directory-sync plugins).
    pub async fn sync(
        &self,
        name: &str,
        full: bool,
        dry_run: bool,
    ) -> Result<Result<SyncReport, PluginError>, HostError> {
        expect_reply!(self, name, Call::Sync { full, dry_run }, Reply::Sync(r) => r)
    }

    /// `identity-provider.read-metadata` (sso plugins).
    pub async fn read_idp_metadata(
        &self,
        name: &str,
        xml: String,
    ) -> Result<Result<IdpSummary, PluginError>, HostError> {
        expect_reply!(self, name, Call::ReadMetadata(xml), Reply::IdpSummary(r) => r)
    }

    /// `identity-provider.fetch-metadata` (sso plugins).
    pub async fn fetch_idp_metadata(
        &self,
        name: &str,
        url: String,
    ) -> Result<Result<String, PluginError>, HostError> {
        expect_reply!(self, name, Call::FetchMetadata(url), Reply::Text(r) => r)
    }

    /// `identity-provider.sp-metadata` (sso plugins).
    pub async fn sp_metadata(
        &self,
        name: &str,
        sp: ServiceProvider,
    ) -> Result<Result<String, PluginError>, HostError> {
        expect_reply!(self, name, Call::SpMetadata(Box::new(sp)), Reply::Text(r) => r)
    }

    /// `identity-provider.begin-login` (sso plugins).
    pub async fn begin_login(
        &self,
        name: &str,
        sp: ServiceProvider,
        relay_state: &str,
    ) -> Result<Result<LoginRequest, PluginError>, HostError> {
        expect_reply!(self, name, Call::BeginLogin(Box::new(sp), relay_state.to_owned()), Reply::BeginLogin(r) => r)
    }

    /// `identity-provider.complete-login` (sso plugins).
    pub async fn complete_login(
        &self,
        name: &str,
        sp: ServiceProvider,
        callback: Request,
    ) -> Result<Result<Identity, PluginError>, HostError> {
        expect_reply!(self, name, Call::CompleteLogin(Box::new(sp), callback), Reply::CompleteLogin(r) => r)
    }

    /// `http-handler.handle` (web-service plugins): one request, whose `employees`
    /// operations act as `client` (the caller the embedder authenticated; none: they are
    /// denied).
    pub async fn handle(
        &self,
        name: &str,
        client: Option<WebServiceClient>,
        request: Request,
    ) -> Result<Response, HostError> {
        expect_reply!(self, name, Call::Handle(client, request), Reply::Handle(r) => r)
    }

    /// `notification-sink.notify` (notifier plugins).
    pub async fn notify(
        &self,
        name: &str,
        notification: Notification,
    ) -> Result<Result<(), NotifyError>, HostError> {
        expect_reply!(self, name, Call::Notify(notification), Reply::Notify(r) => r)
    }

    /// `content-provider.list-items` (content-source plugins).
    pub async fn list_content(
        &self,
        name: &str,
    ) -> Result<Result<Vec<ContentItem>, PluginError>, HostError> {
        expect_reply!(self, name, Call::ListContent, Reply::ListContent(r) => r)
    }

    /// `content-provider.fetch` (content-source plugins).
    pub async fn fetch_content(
        &self,
        name: &str,
        id: &str,
    ) -> Result<Result<Vec<u8>, PluginError>, HostError> {
        expect_reply!(self, name, Call::FetchContent(id.to_owned()), Reply::Bytes(r) => r)
    }

    /// `device-handler.handle-frame` (device-protocol plugins): one frame of the PD
    /// `binding` (from the connection's verified certificate), whose `device` operations
    /// act for that PD only. The connection's `session` goes in and the next one comes
    /// back in the answer; an answer whose session is larger than
    /// [`crate::providers::MAX_DEVICE_SESSION_BYTES`] is an `invalid` error.
    pub async fn handle_frame(
        &self,
        name: &str,
        binding: DeviceBinding,
        device: Device,
        session: Vec<u8>,
        frame: Vec<u8>,
    ) -> Result<Result<FrameAnswer, PluginError>, HostError> {
        let call = Call::HandleFrame(Box::new(DeviceFrame {
            binding,
            device,
            session,
            frame,
        }));
        let answer = expect_reply!(self, name, call, Reply::Frames(r) => r)?;
        Ok(answer.and_then(|a| {
            if a.session.len() > crate::providers::MAX_DEVICE_SESSION_BYTES {
                Err(PluginError::Invalid(format!(
                    "the plugin's connection state is {} bytes; at most {} are kept",
                    a.session.len(),
                    crate::providers::MAX_DEVICE_SESSION_BYTES
                )))
            } else {
                Ok(a)
            }
        }))
    }

    /// `event-sink.publish` (event-bridge plugins).
    pub async fn publish(
        &self,
        name: &str,
        event: Event,
    ) -> Result<Result<(), PluginError>, HostError> {
        expect_reply!(self, name, Call::Publish(event), Reply::Unit(r) => r)
    }

    /// `event-sink.handle-command` (event-bridge plugins): returns the JSON answer.
    pub async fn handle_command(
        &self,
        name: &str,
        command: Command,
    ) -> Result<Result<String, PluginError>, HostError> {
        expect_reply!(self, name, Call::Command(command), Reply::Text(r) => r)
    }

    /// Looks the plugin up and checks that it may be called now.
    fn ready(&self, name: &str, call: &Call) -> Result<Arc<Loaded>, HostError> {
        let mut plugins = self.plugins();
        let entry = plugins
            .get_mut(name)
            .ok_or_else(|| HostError::NotFound(name.to_owned()))?;
        let loaded = match (&entry.state, &entry.loaded) {
            (PluginState::Enabled, Some(l)) => l.clone(),
            (PluginState::Disabled { reason }, _) => {
                return Err(HostError::Disabled {
                    name: name.to_owned(),
                    reason: reason.clone(),
                });
            }
            (PluginState::Refused { reason }, _)
            | (PluginState::Failed { error: reason, .. }, _) => {
                return Err(HostError::NotLoaded {
                    name: name.to_owned(),
                    reason: reason.clone(),
                });
            }
            (PluginState::Enabled, None) => {
                return Err(HostError::NotLoaded {
                    name: name.to_owned(),
                    reason: "not prepared".into(),
                });
            }
        };
        if let Some(w) = call.world()
            && w != loaded.world
        {
            return Err(HostError::Unsupported {
                name: name.to_owned(),
                world: loaded.world.name(),
                call: call.name(),
            });
        }
        entry.stats.view.calls += 1;
        if let Some(until) = entry.stats.backoff_until {
            let now = Instant::now();
            // Closed until the back-off ends; then half-open: one trial call runs and
            // the others are refused until it ends (a fault backs off again).
            let busy_until = match entry.stats.trial_until {
                Some(trial) if trial > now => Some(trial),
                _ if until > now => Some(until),
                _ => None,
            };
            if let Some(busy_until) = busy_until {
                entry.stats.view.rejected_backing_off += 1;
                return Err(HostError::BackingOff {
                    name: name.to_owned(),
                    faults: entry.stats.view.consecutive_faults,
                    retry_in_ms: u64::try_from((busy_until - now).as_millis())
                        .unwrap_or(u64::MAX)
                        .max(1),
                });
            }
            entry.stats.trial_until = Some(
                now + Duration::from_millis(deadline_ms(&self.config(), &loaded))
                    + HOST_AWAIT_GRACE,
            );
        }
        Ok(loaded)
    }

    /// Architecture invariant: a plugin whose manifest names a licence feature is loaded
    /// whatever the licences say, and every call into it first asks the core
    /// ([`Gateway::licensed`]) whether the locking system it acts for holds that feature
    /// now. Nothing judges licences once at start-up.
    async fn check_licence(&self, name: &str) -> Result<(), HostError> {
        let feature = {
            let plugins = self.plugins();
            let entry = plugins
                .get(name)
                .ok_or_else(|| HostError::NotFound(name.to_owned()))?;
            entry
                .manifest
                .as_ref()
                .and_then(|m| m.licence_feature.clone())
        };
        let Some(feature) = feature else {
            return Ok(());
        };
        self.inner
            .gateway
            .licensed(name, &feature)
            .await
            .map_err(|e| HostError::Unlicensed {
                name: name.to_owned(),
                feature,
                reason: e.to_string(),
            })
    }

    async fn invoke(&self, name: &str, call: Call) -> Result<Reply, HostError> {
        if !matches!(call, Call::Describe) {
            self.check_licence(name).await?;
        }
        let loaded = self.ready(name, &call)?;
        let call_name = call.name();
        let cfg = self.config();
        let mut limits = cfg.limits.clone();
        limits.deadline_ms = deadline_ms(&cfg, &loaded);
        let limits = &limits;
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX))
            .table_elements(limits.table_elements)
            .instances(limits.instances)
            .tables(limits.tables)
            .memories(limits.memories)
            .trap_on_grow_failure(true)
            .build();
        let started = Instant::now();
        let http = crate::http::HttpPolicy::new(
            loaded.ctx.name.clone(),
            loaded.ctx.grants.http.clone(),
            tokio::time::Instant::now() + Duration::from_millis(limits.deadline_ms),
            limits.http_response_bytes,
        );
        let mut state = HostState::new(loaded.ctx.clone(), store_limits, http, limits.into());
        match &call {
            Call::HandleFrame(f) => state.bind_device(f.binding),
            Call::Handle(Some(client), _) => state.bind_web_service_client(client.clone()),
            _ => {}
        }
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limits);
        // Guest code yields to the runtime at every epoch tick, so a plugin that never
        // returns holds a worker thread for one tick at a time, never for its whole
        // deadline; once the deadline has passed, the next tick traps (`Interrupt`).
        let trap_at = started + Duration::from_millis(limits.deadline_ms);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= trap_at {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        let deadline = Duration::from_millis(limits.deadline_ms) + HOST_AWAIT_GRACE;
        let outcome = tokio::time::timeout(deadline, run(&mut store, &loaded, call)).await;
        let elapsed = started.elapsed();
        let stderr = store.data().stderr.contents();
        let stderr = (!stderr.is_empty()).then(|| String::from_utf8_lossy(&stderr).into_owned());
        let result = match outcome {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(classify(&e, limits.deadline_ms, stderr)),
            Err(_) => Err(Fault {
                kind: FaultKind::Deadline,
                message: format!(
                    "deadline of {} ms exceeded while waiting on the host",
                    limits.deadline_ms
                ),
                causes: vec![],
                guest_stderr: stderr,
                at_ms: now_ms(),
            }),
        };
        if let Err(f) = &result
            && f.kind == FaultKind::Instantiation
            && f.causes.iter().any(|c| {
                c.contains("concurrent") || c.contains("maximum") && c.contains("instances")
            })
        {
            if let Some(entry) = self.plugins().get_mut(name) {
                entry.stats.trial_until = None;
            }
            return Err(HostError::Busy(f.message.clone()));
        }
        self.record(name, call_name, elapsed, &result);
        result.map_err(|fault| HostError::Fault {
            name: name.to_owned(),
            call: call_name,
            fault: Box::new(fault),
        })
    }

    fn record(
        &self,
        name: &str,
        call: &'static str,
        elapsed: Duration,
        result: &Result<Reply, Fault>,
    ) {
        let mut plugins = self.plugins();
        let Some(entry) = plugins.get_mut(name) else {
            return;
        };
        let s = &mut entry.stats;
        s.trial_until = None;
        if s.latencies_us.len() == LATENCY_WINDOW {
            s.latencies_us.pop_front();
        }
        s.latencies_us
            .push_back(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        match result {
            Ok(reply) => {
                s.view.completed += 1;
                s.view.expected_errors += u64::from(reply.is_expected_error());
                s.view.consecutive_faults = 0;
                s.backoff_until = None;
                s.view.backing_off_until_ms = None;
            }
            Err(fault) => {
                s.view.faults += 1;
                s.view.consecutive_faults = s.view.consecutive_faults.saturating_add(1);
                let delay = self.config().backoff.delay_ms(s.view.consecutive_faults);
                s.backoff_until = Some(Instant::now() + Duration::from_millis(delay));
                s.view.backing_off_until_ms =
                    Some(now_ms().saturating_add(i64::try_from(delay).unwrap_or(i64::MAX)));
                tracing::error!(
                    plugin = name,
                    call,
                    kind = ?fault.kind,
                    causes = ?fault.causes,
                    guest_stderr = fault.guest_stderr.as_deref().unwrap_or(""),
                    consecutive = s.view.consecutive_faults,
                    backoff_ms = delay,
                    "plugin fault: {}",
                    fault.message
                );
                entry.last_fault = Some(fault.clone());
            }
        }
    }
}

/// The call deadline of `loaded`: its own, or the configured one.
fn deadline_ms(cfg: &HostConfig, loaded: &Loaded) -> u64 {
    loaded.ctx.deadline_ms.unwrap_or(cfg.limits.deadline_ms)
}

async fn run(store: &mut Store<HostState>, l: &Loaded, call: Call) -> wasmtime::Result<Reply> {
    let instance = l
        .pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| e.context(INSTANTIATION))?;
    let s = &mut *store;
    Ok(match (call, &l.kind) {
        (Call::Describe, _) => {
            Reply::Describe(l.plugin.load(&mut *s, &instance)?.call_describe(s).await?)
        }
        (Call::Sync { full, dry_run }, KindIndices::DirectorySync(i)) => Reply::Sync(
            i.load(&mut *s, &instance)?
                .call_sync(s, full, dry_run)
                .await?,
        ),
        (Call::ReadMetadata(xml), KindIndices::Sso(i)) => Reply::IdpSummary(
            i.load(&mut *s, &instance)?
                .call_read_metadata(s, &xml)
                .await?,
        ),
        (Call::FetchMetadata(url), KindIndices::Sso(i)) => Reply::Text(
            i.load(&mut *s, &instance)?
                .call_fetch_metadata(s, &url)
                .await?,
        ),
        (Call::SpMetadata(sp), KindIndices::Sso(i)) => {
            Reply::Text(i.load(&mut *s, &instance)?.call_sp_metadata(s, &sp).await?)
        }
        (Call::BeginLogin(sp, relay), KindIndices::Sso(i)) => Reply::BeginLogin(
            i.load(&mut *s, &instance)?
                .call_begin_login(s, &sp, &relay)
                .await?,
        ),
        (Call::CompleteLogin(sp, req), KindIndices::Sso(i)) => Reply::CompleteLogin(
            i.load(&mut *s, &instance)?
                .call_complete_login(s, &sp, &req)
                .await?,
        ),
        (Call::Handle(_, req), KindIndices::WebService(i)) => {
            Reply::Handle(i.load(&mut *s, &instance)?.call_handle(s, &req).await?)
        }
        (Call::Notify(msg), KindIndices::Notifier(i)) => {
            Reply::Notify(i.load(&mut *s, &instance)?.call_notify(s, &msg).await?)
        }
        (Call::ListContent, KindIndices::ContentSource(i)) => {
            Reply::ListContent(i.load(&mut *s, &instance)?.call_list_items(s).await?)
        }
        (Call::FetchContent(id), KindIndices::ContentSource(i)) => {
            Reply::Bytes(i.load(&mut *s, &instance)?.call_fetch(s, &id).await?)
        }
        (Call::HandleFrame(f), KindIndices::DeviceProtocol(i)) => Reply::Frames(
            i.load(&mut *s, &instance)?
                .call_handle_frame(s, &f.device, &f.session, &f.frame)
                .await?,
        ),
        (Call::Publish(ev), KindIndices::EventBridge(i)) => {
            Reply::Unit(i.load(&mut *s, &instance)?.call_publish(s, &ev).await?)
        }
        (Call::Command(cmd), KindIndices::EventBridge(i)) => Reply::Text(
            i.load(&mut *s, &instance)?
                .call_handle_command(s, &cmd)
                .await?,
        ),
        (call, _) => wasmtime::bail!("`{}` is not part of this plugin's world", call.name()),
    })
}

const INSTANTIATION: &str = "instantiation failed";

fn chain(e: &wasmtime::Error) -> Vec<String> {
    e.chain().map(|c| c.to_string()).collect()
}

fn failed(error: String, causes: Vec<String>) -> PluginState {
    PluginState::Failed { error, causes }
}

impl Entry {
    fn failed(
        path: &Path,
        manifest: Option<Manifest>,
        error: String,
        causes: Vec<String>,
    ) -> Entry {
        Entry {
            manifest_path: path.to_owned(),
            manifest,
            state: failed(error, causes),
            loaded: None,
            imports: vec![],
            cache: None,
            stats: Stats::default(),
            last_fault: None,
        }
    }
}

/// Classifies a failed call.
fn classify(e: &wasmtime::Error, deadline_ms: u64, guest_stderr: Option<String>) -> Fault {
    let causes = chain(e);
    let text = causes.join(": ");
    let (kind, message) = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => (
            FaultKind::Deadline,
            format!("deadline of {deadline_ms} ms exceeded (interrupted)"),
        ),
        Some(Trap::StackOverflow) => (
            FaultKind::StackOverflow,
            "wasm stack exhausted (call stack too deep)".to_owned(),
        ),
        Some(Trap::UnreachableCodeReached) => (
            FaultKind::Trap,
            "trap: unreachable executed (a panic or abort in the plugin)".to_owned(),
        ),
        Some(trap) => (FaultKind::Trap, format!("trap: {trap}")),
        None if text.contains("growing memory") => (
            FaultKind::MemoryLimit,
            format!(
                "memory limit exceeded ({})",
                last_cause(&causes, "growing memory")
            ),
        ),
        None if text.contains("growing table") => (
            FaultKind::TableLimit,
            format!(
                "table limit exceeded ({})",
                last_cause(&causes, "growing table")
            ),
        ),
        None if causes.first().is_some_and(|c| c == INSTANTIATION) => (
            FaultKind::Instantiation,
            format!("instantiation failed: {}", causes.get(1).map_or("", |s| s)),
        ),
        None => (FaultKind::Trap, format!("call failed: {text}")),
    };
    Fault {
        kind,
        message,
        causes,
        guest_stderr,
        at_ms: now_ms(),
    }
}

fn last_cause<'a>(causes: &'a [String], needle: &str) -> &'a str {
    causes
        .iter()
        .rev()
        .find(|c| c.contains(needle))
        .map_or("", |s| s.as_str())
}

/// True for a plugin that is not enabled only because nobody configured it: it has no
/// `[plugins.instances.NAME]` section (`configured` false) and is refused (its imports need
/// grants) or disabled (e.g. its licence feature is missing). A plugin that failed to load
/// (unreadable manifest or component) is never just unconfigured. [`PluginHost`] logs these
/// at debug level, so the embedder can report them in one line.
pub fn is_unconfigured(state: &PluginState, configured: bool) -> bool {
    !configured
        && matches!(
            state,
            PluginState::Refused { .. } | PluginState::Disabled { .. }
        )
}

/// Refuses imports that are not granted (deny by default).
fn check_imports(imports: &[String], grants: &Capabilities) -> Result<(), String> {
    for import in imports {
        let (iface, version) = import.split_once('@').unwrap_or((import.as_str(), ""));
        let granted = match iface {
            // Records only, no functions: what the `sso` and `web-service` exports take.
            "lockgate:host/types" | "lockgate:connector/http-types" => true,
            "lockgate:host/log" => grants.log,
            "lockgate:host/config" => grants.config,
            "lockgate:host/clock" => grants.clock,
            "lockgate:host/kv" => grants.kv,
            "lockgate:host/gateway" => !grants.gateway.is_empty(),
            "lockgate:host/mqtt" => !grants.mqtt.is_empty(),
            "lockgate:host/ldap" => !grants.ldap.is_empty(),
            "lockgate:host/smtp" => grants.smtp,
            "lockgate:host/device" => grants.device,
            "lockgate:host/employees" => grants.employees,
            // Outbound HTTP: only with granted hosts (each request is checked too).
            _ if iface.starts_with("wasi:http/") => {
                if matches!(iface, "wasi:http/types" | "wasi:http/outgoing-handler")
                    && !grants.http.is_empty()
                {
                    continue;
                }
                if grants.http.is_empty() {
                    return Err(format!(
                        "imports `{import}`, but capability `http` is not granted (no hosts)"
                    ));
                }
                return Err(format!(
                    "imports `{import}`, which this host does not offer"
                ));
            }
            // WASI as an empty sandbox: no files, environment or network.
            _ if [
                "wasi:cli/",
                "wasi:io/",
                "wasi:clocks/",
                "wasi:random/",
                "wasi:filesystem/",
            ]
            .iter()
            .any(|p| iface.starts_with(p)) =>
            {
                continue;
            }
            _ => {
                return Err(format!(
                    "imports `{import}`, which this host does not offer"
                ));
            }
        };
        if (iface.starts_with("lockgate:host/") || iface.starts_with("lockgate:connector/"))
            && version != "0.1.0"
        {
            return Err(format!(
                "imports `{import}`: only lockgate:host@0.1.0 is supported"
            ));
        }
        if !granted {
            let cap = iface.trim_start_matches("lockgate:host/");
            return Err(format!(
                "imports `{import}`, but capability `{cap}` is not granted"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refused_or_disabled_plugins_without_a_section_are_unconfigured() {
        let refused = PluginState::Refused {
            reason: "imports `lockgate:host/log@0.1.0`, but capability `log` is not granted".into(),
        };
        let disabled = PluginState::Disabled {
            reason: "licence feature `ldap_integration` missing".into(),
        };
        let failed = PluginState::Failed {
            error: "cannot read component".into(),
            causes: vec![],
        };
        assert!(is_unconfigured(&refused, false));
        assert!(is_unconfigured(&disabled, false));
        assert!(
            !is_unconfigured(&failed, false),
            "a broken plugin is a problem"
        );
        assert!(!is_unconfigured(&PluginState::Enabled, false));
        for state in [&refused, &disabled, &failed, &PluginState::Enabled] {
            assert!(!is_unconfigured(state, true), "configured: {state:?}");
        }
    }

    #[test]
    fn imports_are_denied_by_default() {
        let imports = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let none = Capabilities::default();
        assert!(
            check_imports(
                &imports(&["wasi:cli/stderr@0.2.6", "lockgate:host/types@0.1.0"]),
                &none
            )
            .is_ok()
        );
        let err = check_imports(&imports(&["lockgate:host/kv@0.1.0"]), &none).unwrap_err();
        assert!(err.contains("capability `kv` is not granted"), "{err}");
        assert!(
            check_imports(&imports(&["wasi:sockets/tcp@0.2.6"]), &none)
                .unwrap_err()
                .contains("does not offer")
        );
        assert!(
            check_imports(
                &imports(&["lockgate:host/log@0.2.0"]),
                &Capabilities {
                    log: true,
                    ..none.clone()
                }
            )
            .is_err()
        );
        let gw = Capabilities {
            gateway: vec!["read-keys".into()],
            ..none.clone()
        };
        assert!(check_imports(&imports(&["lockgate:host/gateway@0.1.0"]), &gw).is_ok());
        let mqtt = imports(&["lockgate:host/mqtt@0.1.0"]);
        let err = check_imports(&mqtt, &none).unwrap_err();
        assert!(err.contains("capability `mqtt` is not granted"), "{err}");
        let granted_mqtt = Capabilities {
            mqtt: crate::config::MqttGrant {
                prefixes: vec!["lockgate/".into()],
                commands: Vec::new(),
            },
            ..none.clone()
        };
        assert!(check_imports(&mqtt, &granted_mqtt).is_ok());
        let http = imports(&["wasi:http/types@0.2.6", "wasi:http/outgoing-handler@0.2.6"]);
        let err = check_imports(&http, &none).unwrap_err();
        assert!(
            err.contains("wasi:http/types") && err.contains("`http` is not granted"),
            "{err}"
        );
        let granted = Capabilities {
            http: crate::config::HttpGrant {
                hosts: vec!["api.example.com".into()],
                allow_private: false,
            },
            ..none
        };
        assert!(check_imports(&http, &granted).is_ok());
        assert!(
            check_imports(&imports(&["wasi:http/incoming-handler@0.2.6"]), &granted)
                .unwrap_err()
                .contains("does not offer")
        );
    }
}
