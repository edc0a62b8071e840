//! Per-call store data and the host side of the `lockgate:host` interfaces:
//! logging into `tracing`, the plugin's configuration, the clock, the
//! plugin-scoped key-value store and the gateway operations (grant-checked
//! here, before delegating to the [`Gateway`]), MQTT publishing (grant, topic
//! and size checked here, then the [`MqttPublisher`]), and the `wasi:http` view whose
//! hooks enforce the plugin's `http` grant. The `ldap` capability keeps the
//! call's directory connections ([`LdapSessions`]) and `sync-persons` the
//! call's staged persons here, so both end with the call.

use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::lockgate::host::{
    clock, config, device, employees, gateway, kv, ldap, log, mqtt, smtp, types,
};
use crate::config::{Capabilities, STAGED_STRING_OVERHEAD};
use crate::http::HttpPolicy;
use crate::ldap::{LdapDirectories, LdapSessions};
use crate::providers::{
    DeviceBinding, Gateway, KV_MAX_KEY_BYTES, KV_MAX_LIST, KV_MAX_VALUE_BYTES, KvStore,
    MAX_AUDIT_ENTRIES, MAX_CHANGES_PAGE, MAX_EMPLOYEES_UPSERT, MAX_LOG_LINE_BYTES, MAX_LOG_LINES,
    MQTT_MAX_PAYLOAD_BYTES, MqttPublisher, WebServiceClient,
};
use crate::smtp::SmtpRelay;
use crate::types::{
    AuditEntry, Cylinder, DeliverableJob, DeviceHeartbeat, Email, Employee, EmployeeChangePage,
    EmployeesUpsertError, EmployeesUpsertOutcome, Event, HeartbeatAnswer, Job, JobReport, Key,
    LdapPage, LdapSearch, Person, PluginError, ReportTaken, SendError, SyncReport, SyncRequest,
    UpsertReport,
};

/// Most persons one call may stage for `sync-persons`.
pub const MAX_STAGED_PERSONS: usize = 1_000_000;

/// The per-call caps taken from `[plugins.limits]` that the host functions enforce.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallQuota {
    /// `limits.staged_persons_bytes`.
    pub staged_persons_bytes: u64,
    /// `limits.kv_max_entries`.
    pub kv_max_entries: u64,
    /// `limits.kv_max_bytes`.
    pub kv_max_bytes: u64,
}

impl From<&crate::config::Limits> for CallQuota {
    fn from(l: &crate::config::Limits) -> Self {
        CallQuota {
            staged_persons_bytes: l.staged_persons_bytes,
            kv_max_entries: l.kv_max_entries,
            kv_max_bytes: l.kv_max_bytes,
        }
    }
}

/// What a staged person counts towards `limits.staged_persons_bytes`: its text plus
/// [`STAGED_STRING_OVERHEAD`] per string.
fn staged_bytes(p: &Person) -> u64 {
    let s = |t: &str| t.len() as u64 + STAGED_STRING_OVERHEAD;
    s(&p.identifier)
        + s(&p.first_name)
        + s(&p.surname)
        + p.fields.iter().map(|(k, v)| s(k) + s(v)).sum::<u64>()
}

/// Largest certificate signing request a PD may send for a renewal, bytes.
const MAX_CSR_BYTES: usize = 16 * 1024;

/// Longest log message kept, bytes (longer ones are cut).
const LOG_MAX_BYTES: usize = 8 * 1024;
/// Guest stderr kept per call (panic messages), bytes.
pub(crate) const STDERR_CAPTURE_BYTES: usize = 16 * 1024;

/// What one plugin may see and use; shared by all its calls.
#[derive(Clone)]
pub(crate) struct PluginContext {
    pub name: Arc<str>,
    pub grants: Arc<Capabilities>,
    pub config: Arc<serde_json::Map<String, serde_json::Value>>,
    pub kv: Arc<dyn KvStore>,
    pub gateway: Arc<dyn Gateway>,
    /// The host's MQTT publisher, read at call time (it can be set after loading).
    pub mqtt: MqttSlot,
    /// The configured LDAP directories and SMTP relay, read at call time
    /// (a reconfiguration replaces them).
    pub connectors: ConnectorSlot,
    /// This plugin's deadline per call, when it has its own.
    pub deadline_ms: Option<u64>,
    /// The licence feature the plugin's manifest names (checked before every call).
    pub licence_feature: Option<Arc<str>>,
}

/// The servers behind the `ldap` and `smtp` capabilities.
#[derive(Debug, Default)]
pub(crate) struct Connectors {
    pub ldap: LdapDirectories,
    pub smtp: Option<SmtpRelay>,
}

impl Connectors {
    /// Builds them from the host configuration (CA files are read here).
    pub fn from_config(config: &crate::HostConfig) -> Result<Self, crate::HostError> {
        Ok(Connectors {
            ldap: LdapDirectories::new(&config.ldap)?,
            smtp: config.smtp.as_ref().map(|s| s.relay()).transpose()?,
        })
    }
}

/// The connectors shared by the host and every plugin context.
pub(crate) type ConnectorSlot = Arc<std::sync::RwLock<Arc<Connectors>>>;

/// The MQTT publisher shared by the host and every plugin context (`None`:
/// calls answer `unavailable`).
pub(crate) type MqttSlot = Arc<std::sync::RwLock<Option<Arc<dyn MqttPublisher>>>>;

impl std::fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginContext")
            .field("name", &self.name)
            .field("grants", &self.grants)
            .finish_non_exhaustive()
    }
}

/// The data of one call's store.
pub(crate) struct HostState {
    pub ctx: PluginContext,
    pub limits: StoreLimits,
    pub stderr: MemoryOutputPipe,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_policy: HttpPolicy,
    table: ResourceTable,
    ldap: LdapSessions,
    staged: Vec<Person>,
    /// What `staged` counts towards `quota.staged_persons_bytes`.
    staged_bytes: u64,
    quota: CallQuota,
    /// The PD a `handle-frame` call acts for; `None` in every other call.
    device: Option<DeviceBinding>,
    /// The web-service client a `handle` call acts for; `None` in every other call.
    web_service_client: Option<WebServiceClient>,
}

impl HostState {
    pub fn new(
        ctx: PluginContext,
        limits: StoreLimits,
        http_policy: HttpPolicy,
        quota: CallQuota,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        // WASI is offered as an empty sandbox: no files, no environment, no
        // arguments, no network; stdout is discarded and stderr captured so a
        // panic message can be reported with the fault.
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        HostState {
            ctx,
            limits,
            stderr,
            wasi,
            http: WasiHttpCtx::new(),
            http_policy,
            table: ResourceTable::new(),
            ldap: LdapSessions::default(),
            staged: Vec::new(),
            staged_bytes: 0,
            quota,
            device: None,
            web_service_client: None,
        }
    }

    /// Binds the call to the PD of the connection its frame came from.
    pub fn bind_device(&mut self, device: DeviceBinding) {
        self.device = Some(device);
    }

    /// Architecture invariant: the `device` operations act only for the PD the host bound
    /// to this call from the connection's verified certificate; without one (any call but
    /// `handle-frame`) they are denied.
    fn bound_device(&self) -> Result<DeviceBinding, PluginError> {
        if !self.ctx.grants.device {
            return Err(self.denied("device"));
        }
        self.device.ok_or_else(|| {
            PluginError::Denied(
                "device operations act for the PD of a frame: call them in handle-frame".into(),
            )
        })
    }

    /// Binds a `handle` call to the client the embedder authenticated for its request.
    pub fn bind_web_service_client(&mut self, client: WebServiceClient) {
        self.web_service_client = Some(client);
    }

    /// Architecture invariant: the `employees` operations act only as the web-service client
    /// the host bound to this `handle` call from the request's verified credentials; without
    /// one (any other call, or an unauthenticated request) they are denied.
    fn bound_web_service_client(&self) -> Result<WebServiceClient, PluginError> {
        if !self.ctx.grants.employees {
            return Err(self.denied("employees"));
        }
        self.web_service_client.clone().ok_or_else(|| {
            PluginError::Denied(
                "employees operations act for an authenticated web-service client: call them in \
                 handle, for a request that carried credentials"
                    .into(),
            )
        })
    }

    /// Architecture invariant: a directory sync is licensed as the integration it is: the
    /// plugin's manifest names `ldap_integration` or `web_services` (an HR system), the host
    /// checks that feature before every call, and the core's `sync-persons` takes only those
    /// two. A plugin naming neither cannot sync.
    fn check_directory_licence(&self) -> Result<(), PluginError> {
        match self.ctx.licence_feature.as_deref() {
            Some("ldap_integration" | "web_services") => Ok(()),
            _ => Err(PluginError::Denied(format!(
                "plugin `{}`: a directory sync needs `licence-feature = \"ldap_integration\"` or \
                 `\"web_services\"` in the plugin's manifest",
                self.ctx.name
            ))),
        }
    }

    fn denied(&self, what: &str) -> PluginError {
        PluginError::Denied(format!("plugin `{}` is not granted {what}", self.ctx.name))
    }

    fn check_op(&self, op: &str) -> Result<(), PluginError> {
        if self.ctx.grants.gateway.iter().any(|g| g == op) {
            Ok(())
        } else {
            tracing::warn!(plugin = %self.ctx.name, operation = op, "gateway operation denied");
            Err(self.denied(&format!("gateway operation `{op}`")))
        }
    }

    fn connectors(&self) -> Arc<Connectors> {
        match self.ctx.connectors.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn check_kv(&self, key: &str) -> Result<(), PluginError> {
        if !self.ctx.grants.kv {
            return Err(self.denied("kv"));
        }
        if key.is_empty() || key.len() > KV_MAX_KEY_BYTES {
            return Err(PluginError::Invalid(format!(
                "kv keys must be 1-{KV_MAX_KEY_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("plugin", &self.ctx.name)
            .finish_non_exhaustive()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

// Outbound HTTP: linked for every plugin, but a component importing it is
// refused at load unless its grant names hosts, and every request passes the
// plugin's [`HttpPolicy`].
impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_policy,
        }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, mut message: String) {
        if message.len() > LOG_MAX_BYTES {
            let mut cut = LOG_MAX_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let plugin = &*self.ctx.name;
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl config::Host for HostState {
    async fn get_all(&mut self) -> String {
        serde_json::Value::Object((*self.ctx.config).clone()).to_string()
    }

    async fn get(&mut self, key: String) -> Option<String> {
        self.ctx.config.get(&key).map(|v| v.to_string())
    }
}

impl clock::Host for HostState {
    async fn now(&mut self) -> types::Timestamp {
        crate::now_ms()
    }
}

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, PluginError> {
        self.check_kv(&key)?;
        self.ctx.kv.get(&self.ctx.name, &key).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), PluginError> {
        self.check_kv(&key)?;
        if value.len() > KV_MAX_VALUE_BYTES {
            return Err(PluginError::Invalid(format!(
                "kv values must be at most {KV_MAX_VALUE_BYTES} bytes"
            )));
        }
        // The quota: what the plugin holds besides this key, plus this key and value.
        // Concurrent calls of one plugin can overshoot it by at most one value each.
        let held = self.ctx.kv.usage(&self.ctx.name, &key).await?;
        let (entries, bytes) = (
            held.entries + 1,
            held.bytes + (key.len() + value.len()) as u64,
        );
        let q = &self.quota;
        if entries > q.kv_max_entries || bytes > q.kv_max_bytes {
            return Err(PluginError::Denied(format!(
                "kv quota of plugin `{}` exceeded: at most {} keys and {} bytes \
                 (plugins.limits.kv_max_entries, kv_max_bytes); this write would make \
                 {entries} keys and {bytes} bytes; delete keys first",
                self.ctx.name, q.kv_max_entries, q.kv_max_bytes
            )));
        }
        self.ctx.kv.set(&self.ctx.name, &key, value).await
    }

    async fn delete(&mut self, key: String) -> Result<(), PluginError> {
        self.check_kv(&key)?;
        self.ctx.kv.delete(&self.ctx.name, &key).await
    }

    async fn list_keys(&mut self, prefix: String, limit: u32) -> Result<Vec<String>, PluginError> {
        if !self.ctx.grants.kv {
            return Err(self.denied("kv"));
        }
        self.ctx
            .kv
            .list_keys(&self.ctx.name, &prefix, limit.min(KV_MAX_LIST))
            .await
    }
}

impl gateway::Host for HostState {
    async fn upsert_employees(
        &mut self,
        domain: String,
        persons: Vec<Person>,
    ) -> Result<UpsertReport, PluginError> {
        self.check_op("upsert-employees")?;
        self.ctx
            .gateway
            .upsert_employees(&self.ctx.name, &domain, persons)
            .await
    }

    async fn read_keys(&mut self, holder: Option<String>) -> Result<Vec<Key>, PluginError> {
        self.check_op("read-keys")?;
        self.ctx.gateway.read_keys(&self.ctx.name, holder).await
    }

    async fn read_cylinders(&mut self, prefix: String) -> Result<Vec<Cylinder>, PluginError> {
        self.check_op("read-cylinders")?;
        self.ctx
            .gateway
            .read_cylinders(&self.ctx.name, &prefix)
            .await
    }

    async fn pending_jobs(&mut self, key_id: u64) -> Result<Vec<Job>, PluginError> {
        self.check_op("pending-jobs")?;
        self.ctx.gateway.pending_jobs(&self.ctx.name, key_id).await
    }

    async fn emit_event(&mut self, event: Event) -> Result<(), PluginError> {
        self.check_op("emit-event")?;
        self.ctx.gateway.emit_event(&self.ctx.name, event).await
    }

    async fn stage_persons(&mut self, persons: Vec<Person>) -> Result<u32, PluginError> {
        self.check_op("sync-persons")?;
        self.check_directory_licence()?;
        if self.staged.len() + persons.len() > MAX_STAGED_PERSONS {
            return Err(PluginError::Invalid(format!(
                "at most {MAX_STAGED_PERSONS} persons per sync"
            )));
        }
        let bytes = self
            .staged_bytes
            .saturating_add(persons.iter().map(staged_bytes).sum::<u64>());
        if bytes > self.quota.staged_persons_bytes {
            return Err(PluginError::Invalid(format!(
                "at most {} bytes of staged persons per sync (plugins.limits.staged_persons_bytes); \
                 these persons would make {bytes}",
                self.quota.staged_persons_bytes
            )));
        }
        self.staged_bytes = bytes;
        self.staged.extend(persons);
        Ok(u32::try_from(self.staged.len()).unwrap_or(u32::MAX))
    }

    async fn sync_persons(&mut self, request: SyncRequest) -> Result<SyncReport, PluginError> {
        self.check_op("sync-persons")?;
        self.check_directory_licence()?;
        let persons = std::mem::take(&mut self.staged);
        self.staged_bytes = 0;
        self.ctx
            .gateway
            .sync_persons(&self.ctx.name, request, persons)
            .await
    }

    async fn request_directory_sync(
        &mut self,
        plugin: String,
        full: bool,
    ) -> Result<u64, PluginError> {
        self.check_op("request-directory-sync")?;
        self.ctx
            .gateway
            .request_directory_sync(&self.ctx.name, &plugin, full)
            .await
    }

    async fn request_key_update(&mut self, key_id: u64) -> Result<Vec<Job>, PluginError> {
        self.check_op("request-key-update")?;
        self.ctx
            .gateway
            .request_key_update(&self.ctx.name, key_id)
            .await
    }

    async fn report_key_lost(&mut self, key_id: u64) -> Result<(), PluginError> {
        self.check_op("report-key-lost")?;
        self.ctx
            .gateway
            .report_key_lost(&self.ctx.name, key_id)
            .await
    }
}

impl employees::Host for HostState {
    async fn upsert(
        &mut self,
        domain: Option<String>,
        persons: Vec<Person>,
    ) -> Result<EmployeesUpsertOutcome, EmployeesUpsertError> {
        let client = self
            .bound_web_service_client()
            .map_err(EmployeesUpsertError::Failed)?;
        if persons.len() > MAX_EMPLOYEES_UPSERT {
            return Err(EmployeesUpsertError::Failed(PluginError::Invalid(format!(
                "at most {MAX_EMPLOYEES_UPSERT} persons per upsert, not {}",
                persons.len()
            ))));
        }
        self.ctx
            .gateway
            .employees_upsert(&self.ctx.name, &client, domain, persons)
            .await
    }

    async fn get(&mut self, identifier: String) -> Result<Employee, PluginError> {
        let client = self.bound_web_service_client()?;
        self.ctx
            .gateway
            .employees_get(&self.ctx.name, &client, &identifier)
            .await
    }

    async fn deactivate(&mut self, identifier: String) -> Result<Employee, PluginError> {
        let client = self.bound_web_service_client()?;
        self.ctx
            .gateway
            .employees_deactivate(&self.ctx.name, &client, &identifier)
            .await
    }

    async fn delete(&mut self, identifier: String) -> Result<Option<Employee>, PluginError> {
        let client = self.bound_web_service_client()?;
        self.ctx
            .gateway
            .employees_delete(&self.ctx.name, &client, &identifier)
            .await
    }

    async fn list_changes(
        &mut self,
        since: String,
        limit: u32,
    ) -> Result<EmployeeChangePage, PluginError> {
        let client = self.bound_web_service_client()?;
        if !(1..=MAX_CHANGES_PAGE).contains(&limit) {
            return Err(PluginError::Invalid(format!(
                "limit: 1 to {MAX_CHANGES_PAGE} changes per page, not {limit}"
            )));
        }
        self.ctx
            .gateway
            .employees_changes(&self.ctx.name, &client, &since, limit)
            .await
    }
}

impl device::Host for HostState {
    async fn heartbeat(&mut self, report: DeviceHeartbeat) -> Result<HeartbeatAnswer, PluginError> {
        let d = self.bound_device()?;
        self.ctx
            .gateway
            .device_heartbeat(&self.ctx.name, &d, report)
            .await
    }

    async fn key_inserted(&mut self, key_id: u64) -> Result<Vec<DeliverableJob>, PluginError> {
        let d = self.bound_device()?;
        self.ctx
            .gateway
            .device_key_inserted(&self.ctx.name, &d, key_id)
            .await
    }

    async fn c_key_inserted(&mut self, c_key_id: u64) -> Result<Vec<DeliverableJob>, PluginError> {
        let d = self.bound_device()?;
        self.ctx
            .gateway
            .device_c_key_inserted(&self.ctx.name, &d, c_key_id)
            .await
    }

    async fn report_job(&mut self, report: JobReport) -> Result<ReportTaken, PluginError> {
        let d = self.bound_device()?;
        if report.cylinder_audit_trail.len() > MAX_AUDIT_ENTRIES {
            return Err(PluginError::Invalid(format!(
                "at most {MAX_AUDIT_ENTRIES} audit-trail records per report, not {}",
                report.cylinder_audit_trail.len()
            )));
        }
        self.ctx
            .gateway
            .device_report_job(&self.ctx.name, &d, report)
            .await
    }

    async fn revocation_list(&mut self) -> Result<String, PluginError> {
        let d = self.bound_device()?;
        self.ctx
            .gateway
            .device_revocation_list(&self.ctx.name, &d)
            .await
    }

    async fn upload_audit_trail(
        &mut self,
        key_id: u64,
        entries: Vec<AuditEntry>,
    ) -> Result<u32, PluginError> {
        let d = self.bound_device()?;
        if entries.len() > MAX_AUDIT_ENTRIES {
            return Err(PluginError::Invalid(format!(
                "at most {MAX_AUDIT_ENTRIES} audit-trail records per upload, not {}",
                entries.len()
            )));
        }
        self.ctx
            .gateway
            .device_upload_audit_trail(&self.ctx.name, &d, key_id, entries)
            .await
    }

    async fn renew_certificate(
        &mut self,
        csr_pem: String,
    ) -> Result<crate::types::RenewedCertificate, PluginError> {
        let d = self.bound_device()?;
        if csr_pem.len() > MAX_CSR_BYTES {
            return Err(PluginError::Invalid(format!(
                "a certificate signing request has at most {MAX_CSR_BYTES} bytes"
            )));
        }
        self.ctx
            .gateway
            .device_renew_certificate(&self.ctx.name, &d, csr_pem)
            .await
    }

    async fn upload_log(&mut self, mut lines: Vec<String>) -> Result<(), PluginError> {
        let d = self.bound_device()?;
        if lines.len() > MAX_LOG_LINES {
            return Err(PluginError::Invalid(format!(
                "at most {MAX_LOG_LINES} log lines per upload, not {}",
                lines.len()
            )));
        }
        for line in &mut lines {
            if line.len() > MAX_LOG_LINE_BYTES {
                let mut cut = MAX_LOG_LINE_BYTES;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
            }
        }
        self.ctx
            .gateway
            .device_upload_log(&self.ctx.name, &d, lines)
            .await
    }
}

impl ldap::Host for HostState {
    async fn search_page(
        &mut self,
        directory: String,
        search: LdapSearch,
        cookie: Option<Vec<u8>>,
    ) -> Result<LdapPage, PluginError> {
        if !self.ctx.grants.ldap.contains(&directory) {
            tracing::warn!(plugin = %self.ctx.name, %directory, "ldap directory denied");
            return Err(self.denied(&format!("ldap directory `{directory}`")));
        }
        let connectors = self.connectors();
        self.ldap
            .search_page(&connectors.ldap, &directory, &search, cookie)
            .await
    }
}

impl smtp::Host for HostState {
    async fn send(&mut self, email: Email) -> Result<(), SendError> {
        if !self.ctx.grants.smtp {
            return Err(SendError::Denied(format!(
                "plugin `{}` is not granted smtp",
                self.ctx.name
            )));
        }
        let connectors = self.connectors();
        let Some(relay) = &connectors.smtp else {
            return Err(SendError::Denied("no SMTP relay is configured".into()));
        };
        let outcome = relay.send(&email).await;
        match &outcome {
            // Recipients are personal data: the log gets counts and the id only.
            Ok(()) => {
                tracing::info!(plugin = %self.ctx.name, message_id = %email.message_id, recipients = email.to.len(), "email sent")
            }
            Err(e) => {
                tracing::warn!(plugin = %self.ctx.name, message_id = %email.message_id, error = ?e, "email not sent")
            }
        }
        outcome
    }
}

impl mqtt::Host for HostState {
    async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
    ) -> Result<(), PluginError> {
        let grant = &self.ctx.grants.mqtt;
        if grant.is_empty() {
            return Err(self.denied("mqtt"));
        }
        crate::config::check_mqtt_topic(&topic).map_err(PluginError::Invalid)?;
        if !grant.allows(&topic) {
            tracing::warn!(plugin = %self.ctx.name, %topic, "mqtt topic denied");
            return Err(self.denied(&format!("mqtt topic `{topic}`")));
        }
        if payload.len() > MQTT_MAX_PAYLOAD_BYTES {
            return Err(PluginError::Invalid(format!(
                "mqtt payloads must be at most {MQTT_MAX_PAYLOAD_BYTES} bytes"
            )));
        }
        if qos > 1 {
            return Err(PluginError::Invalid(format!(
                "mqtt qos must be 0 or 1, not {qos}"
            )));
        }
        let publisher = match self.ctx.mqtt.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let Some(publisher) = publisher else {
            return Err(PluginError::Unavailable(
                "no MQTT broker is configured".into(),
            ));
        };
        publisher
            .publish(&self.ctx.name, &topic, payload, qos, retain)
            .await
    }
}

impl crate::bindings::lockgate::connector::http_types::Host for HostState {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{MemoryKv, NoGateway};

    /// A call's state for plugin `p` with the `kv` and `sync-persons` grants and `quota`.
    fn state(quota: CallQuota) -> HostState {
        let grants = Capabilities {
            kv: true,
            gateway: vec!["sync-persons".into()],
            ..Capabilities::default()
        };
        let ctx = PluginContext {
            name: "p".into(),
            grants: Arc::new(grants),
            config: Arc::default(),
            kv: Arc::new(MemoryKv::default()),
            gateway: Arc::new(NoGateway),
            mqtt: MqttSlot::default(),
            connectors: ConnectorSlot::default(),
            deadline_ms: None,
            licence_feature: Some("ldap_integration".into()),
        };
        let http = HttpPolicy::new(
            "p".into(),
            crate::config::HttpGrant::default(),
            tokio::time::Instant::now(),
            1,
        );
        HostState::new(
            ctx,
            wasmtime::StoreLimitsBuilder::new().build(),
            http,
            quota,
        )
    }

    fn quota() -> CallQuota {
        CallQuota {
            staged_persons_bytes: u64::MAX,
            kv_max_entries: u64::MAX,
            kv_max_bytes: u64::MAX,
        }
    }

    fn person(id: &str, bytes: usize) -> Person {
        Person {
            identifier: id.into(),
            first_name: "A".into(),
            surname: "x".repeat(bytes),
            fields: vec![("email".into(), "a@example.com".into())],
            active: true,
        }
    }

    #[tokio::test]
    async fn staged_persons_are_capped_in_bytes() {
        let one = staged_bytes(&person("e1", 1_000));
        assert_eq!(one, 2 + 1 + 1_000 + 5 + 13 + 5 * STAGED_STRING_OVERHEAD);
        let mut s = state(CallQuota {
            staged_persons_bytes: 2 * one + 10,
            ..quota()
        });
        use gateway::Host as _;
        assert!(matches!(
            s.stage_persons(vec![person("e1", 1_000)]).await,
            Ok(1)
        ));
        assert!(matches!(
            s.stage_persons(vec![person("e2", 1_000)]).await,
            Ok(2)
        ));
        // A third person of the same size passes the count cap but not the byte cap.
        match s.stage_persons(vec![person("e3", 1_000)]).await {
            Err(PluginError::Invalid(m)) => {
                assert!(m.contains("plugins.limits.staged_persons_bytes"), "{m}");
                assert!(
                    m.contains(&format!("at most {} bytes", 2 * one + 10)),
                    "{m}"
                );
            }
            other => panic!("expected the byte cap, got {other:?}"),
        }
        // Refused persons are not staged; small ones still fit.
        assert_eq!(s.staged.len(), 2);
        assert!(s.stage_persons(vec![person("e4", 0)]).await.is_err());
        assert_eq!(s.staged_bytes, 2 * one);
    }

    #[tokio::test]
    async fn a_directory_sync_needs_a_directory_licence_feature() {
        use gateway::Host as _;
        for (feature, allowed) in [
            (None, false),
            (Some("remote"), false),
            (Some("web_services"), true),
            (Some("ldap_integration"), true),
        ] {
            let mut s = state(quota());
            s.ctx.licence_feature = feature.map(Into::into);
            let staged = s.stage_persons(vec![person("e1", 0)]).await;
            assert_eq!(staged.is_ok(), allowed, "{feature:?}: {staged:?}");
            if !allowed {
                assert!(
                    matches!(&staged, Err(PluginError::Denied(m)) if m.contains("licence-feature")),
                    "{staged:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn kv_has_a_per_plugin_quota() {
        use kv::Host as _;
        let mut s = state(CallQuota {
            kv_max_entries: 2,
            kv_max_bytes: 100,
            ..quota()
        });
        s.set("a".into(), vec![0; 10]).await.unwrap();
        s.set("b".into(), vec![0; 10]).await.unwrap();
        // Replacing a key counts its new size only.
        s.set("a".into(), vec![0; 20]).await.unwrap();
        // A third key exceeds the entries.
        match s.set("c".into(), vec![0; 1]).await {
            Err(PluginError::Denied(m)) => {
                assert!(m.contains("kv quota of plugin `p` exceeded"), "{m}");
                assert!(m.contains("at most 2 keys and 100 bytes"), "{m}");
                assert!(m.contains("plugins.limits.kv_max_entries"), "{m}");
            }
            other => panic!("expected the quota, got {other:?}"),
        }
        // Growing a key beyond the bytes is refused too, and leaves the old value.
        assert!(matches!(
            s.set("b".into(), vec![0; 80]).await,
            Err(PluginError::Denied(_))
        ));
        assert_eq!(s.get("b".into()).await.unwrap().map(|v| v.len()), Some(10));
        // Deleting makes room.
        s.delete("b".into()).await.unwrap();
        s.set("c".into(), vec![0; 1]).await.unwrap();
        // Another plugin's keys do not count.
        let other = s.ctx.kv.usage("q", "").await.unwrap();
        assert_eq!(other, crate::providers::KvUsage::default());
    }
}
