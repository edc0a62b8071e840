//! lockgate's WebAssembly plugin host.
//!
//! Plugins are components implementing one world of `lockgate:connector@0.1.0`
//! (see `wit/`). [`PluginHost`] loads them from a directory of manifests,
//! refuses any whose imports exceed the capabilities granted in
//! [`HostConfig`], runs each call in a fresh store with memory, table,
//! instance, stack and deadline limits, and contains faults: a trapping,
//! looping or exhausting plugin is reported with its cause chain, counted and
//! backed off while the others keep working.
//!
//! The core supplies the services behind the capabilities through
//! [`KvStore`] and [`Gateway`], and MQTT publishing through an
//! [`MqttPublisher`] ([`RumqttPublisher`], set with [`PluginHost::with_mqtt`])
//! to the topic prefixes of a plugin's `mqtt` grant; outbound HTTP
//! (`wasi:http`) is offered only to the hosts of a plugin's `http` grant (see
//! the `http` module).

pub mod bindings;
pub mod cache;
pub mod command_auth;
pub mod config;
pub mod dn;
pub mod engine;
mod http;
pub mod ldap;
pub mod manifest;
pub mod mqtt;
pub mod providers;
pub mod registry;
pub mod smtp;
mod state;

use std::path::PathBuf;

pub use cache::CacheOutcome;
pub use config::{
    AllocatorChoice, Backoff, Capabilities, HostConfig, HttpGrant, Limits, MqttGrant,
    PluginSettings,
};
pub use engine::Allocator;
pub use ldap::{LdapDirectories, LdapDirectoryConfig};
pub use manifest::{Manifest, World};
pub use mqtt::{CommandSecret, MqttConfig, RumqttPublisher};
pub use providers::{
    DeviceBinding, Gateway, KvStore, KvUsage, MemoryKv, MqttPublisher, NoGateway, WebServiceClient,
};
pub use registry::{
    Fault, FaultKind, HostStatus, PluginHost, PluginState, PluginStatus, StatsView,
};
pub use smtp::{SmtpConfig, SmtpRelay, SmtpTls};

/// The records plugins and the core exchange (generated from the WIT).
pub mod types {
    pub use crate::bindings::exports::lockgate::connector::content_provider::Item as ContentItem;
    pub use crate::bindings::exports::lockgate::connector::device_handler::{Device, FrameAnswer};
    pub use crate::bindings::exports::lockgate::connector::event_sink::Command;
    pub use crate::bindings::exports::lockgate::connector::identity_provider::{
        Identity, IdpSummary, LoginRequest, ServiceProvider,
    };
    pub use crate::bindings::exports::lockgate::connector::notification_sink::{
        Notification, NotifyError,
    };
    pub use crate::bindings::exports::lockgate::connector::plugin::PluginInfo;
    pub use crate::bindings::lockgate::connector::http_types::{Request, Response};
    pub use crate::bindings::lockgate::host::device::{
        AuditEntry, CylinderAuditEntry, DeliverableJob, HeartbeatAnswer,
        HeartbeatReport as DeviceHeartbeat, JobOutcome, JobReport, RenewedCertificate, ReportTaken,
    };
    pub use crate::bindings::lockgate::host::employees::{
        Change as EmployeeChange, ChangeKind as EmployeeChangeKind,
        ChangePage as EmployeeChangePage, Employee, EmployeeState, InvalidPerson,
        UpsertError as EmployeesUpsertError, UpsertOutcome as EmployeesUpsertOutcome,
    };
    pub use crate::bindings::lockgate::host::gateway::{
        SyncReport, SyncRequest, SyncSkip, UpsertReport,
    };
    pub use crate::bindings::lockgate::host::ldap::{
        Entry as LdapEntry, Page as LdapPage, Search as LdapSearch, SearchScope,
    };
    pub use crate::bindings::lockgate::host::smtp::{Email, SendError};
    /// An expected failure, as a plugin or a capability reports it (WIT `error`).
    pub use crate::bindings::lockgate::host::types::Error as PluginError;
    pub use crate::bindings::lockgate::host::types::{
        Cylinder, Event, Job, Key, Person, Timestamp,
    };
}

/// Where `build.rs` put the plugins of the `plugins/` workspace (`NAME.wasm` + `NAME.toml`),
/// fixed at build time: `LOCKGATE_BUNDLED_PLUGINS_DIR`. Empty when the build skipped them.
pub const BUNDLED_PLUGINS_DIR: &str = env!("LOCKGATE_BUNDLED_PLUGINS_DIR");

/// Every plugin of the `plugins/` workspace, the fault-isolation test plugins of
/// `plugins/test/` included (`LOCKGATE_TEST_PLUGINS_DIR`): for tests and benchmarks only.
pub const TEST_PLUGINS_DIR: &str = env!("LOCKGATE_TEST_PLUGINS_DIR");

/// The gateway operations a grant can name.
pub const GATEWAY_OPERATIONS: &[&str] = &[
    "upsert-employees",
    "read-keys",
    "read-cylinders",
    "pending-jobs",
    "emit-event",
    "sync-persons",
    "request-directory-sync",
    "request-key-update",
    "report-key-lost",
];

/// Errors at the plugin host's boundary.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The host configuration is invalid.
    #[error("plugin host configuration: {0}")]
    Config(String),
    /// The engine could not be built.
    #[error("wasm engine: {0}")]
    Engine(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A component could not be compiled or loaded.
    #[error("invalid component: {0}")]
    Component(String),
    /// No plugin has this name.
    #[error("no plugin named `{0}`")]
    NotFound(String),
    /// The plugin is disabled (by configuration, licence or an administrator).
    #[error("plugin `{name}` is disabled: {reason}")]
    Disabled {
        /// The plugin.
        name: String,
        /// Why.
        reason: String,
    },
    /// The plugin's manifest names a licence feature that the locking system it acts for
    /// does not hold now ([`crate::Gateway::licensed`]); nothing was called.
    #[error("plugin `{name}` needs the licence feature `{feature}`: {reason}")]
    Unlicensed {
        /// The plugin.
        name: String,
        /// The feature its manifest names.
        feature: String,
        /// The gateway's answer.
        reason: String,
    },
    /// The plugin was refused or failed to load.
    #[error("plugin `{name}` is not loaded: {reason}")]
    NotLoaded {
        /// The plugin.
        name: String,
        /// Why.
        reason: String,
    },
    /// The plugin faulted recently and is paused.
    #[error(
        "plugin `{name}` is backing off after {faults} consecutive fault(s); retry in {retry_in_ms} ms"
    )]
    BackingOff {
        /// The plugin.
        name: String,
        /// Consecutive faults so far.
        faults: u32,
        /// Milliseconds until the next call is allowed.
        retry_in_ms: u64,
    },
    /// The plugin's world has no such call.
    #[error("plugin `{name}` ({world}) has no `{call}`")]
    Unsupported {
        /// The plugin.
        name: String,
        /// Its world.
        world: &'static str,
        /// The call asked for.
        call: &'static str,
    },
    /// The call faulted (trap, deadline, resource limit); the plugin is backed off.
    #[error("plugin `{name}` faulted in `{call}`: {fault}")]
    Fault {
        /// The plugin.
        name: String,
        /// The call.
        call: &'static str,
        /// What happened.
        fault: Box<Fault>,
    },
    /// The host has no free instance slot right now (not the plugin's fault).
    #[error("plugin host is at capacity: {0}")]
    Busy(String),
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An error and its causes on one line (`a: b: c`).
pub(crate) fn error_chain(e: &wasmtime::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}
