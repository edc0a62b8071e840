//! The services behind the host capabilities that the core supplies: the
//! plugin-scoped key-value store ([`KvStore`], with [`MemoryKv`] for tests
//! and single-process use), the gateway operations ([`Gateway`]) and MQTT
//! publishing ([`MqttPublisher`]). The host
//! checks grants and sizes before it calls them; implementations see only
//! permitted calls, with the calling plugin's name for scoping and audit.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::types::{
    AuditEntry, Cylinder, DeliverableJob, DeviceHeartbeat, Employee, EmployeeChangePage,
    EmployeesUpsertError, EmployeesUpsertOutcome, Event, HeartbeatAnswer, Job, JobReport, Key,
    Person, PluginError, RenewedCertificate, ReportTaken, SyncReport, SyncRequest, UpsertReport,
};

/// Longest kv key, bytes.
pub const KV_MAX_KEY_BYTES: usize = 512;
/// Largest kv value, bytes.
pub const KV_MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one `list-keys` returns.
pub const KV_MAX_LIST: u32 = 1_000;

/// What one plugin holds in its key-value store (for the quota).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvUsage {
    /// Keys.
    pub entries: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// Durable key-value storage scoped by plugin name. Keys of different plugins
/// never collide.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// What `plugin` holds, leaving out `except_key` (the key about to be replaced).
    async fn usage(&self, plugin: &str, except_key: &str) -> Result<KvUsage, PluginError>;
    /// The value under `key` for `plugin`.
    async fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, PluginError>;
    /// Stores `value` under `key` for `plugin`.
    async fn set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), PluginError>;
    /// Removes `key` for `plugin` (missing keys are fine).
    async fn delete(&self, plugin: &str, key: &str) -> Result<(), PluginError>;
    /// `plugin`'s keys starting with `prefix`, sorted, at most `limit`.
    async fn list_keys(
        &self,
        plugin: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, PluginError>;
}

/// An in-memory [`KvStore`] (tests, benchmarks, a single process without a database).
#[derive(Debug, Default)]
pub struct MemoryKv {
    map: Mutex<BTreeMap<(String, String), Vec<u8>>>,
}

impl MemoryKv {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Vec<u8>>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl KvStore for MemoryKv {
    async fn usage(&self, plugin: &str, except_key: &str) -> Result<KvUsage, PluginError> {
        let map = self.lock();
        Ok(map
            .range((plugin.to_owned(), String::new())..)
            .take_while(|((p, _), _)| p == plugin)
            .filter(|((_, k), _)| k != except_key)
            .fold(KvUsage::default(), |u, ((_, k), v)| KvUsage {
                entries: u.entries + 1,
                bytes: u.bytes + (k.len() + v.len()) as u64,
            }))
    }

    async fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, PluginError> {
        Ok(self
            .lock()
            .get(&(plugin.to_owned(), key.to_owned()))
            .cloned())
    }

    async fn set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), PluginError> {
        self.lock()
            .insert((plugin.to_owned(), key.to_owned()), value);
        Ok(())
    }

    async fn delete(&self, plugin: &str, key: &str) -> Result<(), PluginError> {
        self.lock().remove(&(plugin.to_owned(), key.to_owned()));
        Ok(())
    }

    async fn list_keys(
        &self,
        plugin: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, PluginError> {
        let map = self.lock();
        Ok(map
            .range((plugin.to_owned(), prefix.to_owned())..)
            .take_while(|((p, k), _)| p == plugin && k.starts_with(prefix))
            .take(limit as usize)
            .map(|((_, k), _)| k.clone())
            .collect())
    }
}

/// The core operations plugins may call (each needs a grant, which the host
/// checks before calling). `plugin` is the caller, for audit.
#[async_trait]
pub trait Gateway: Send + Sync + 'static {
    /// `upsert-employees`: creates or updates persons in `domain` by identifier.
    async fn upsert_employees(
        &self,
        plugin: &str,
        domain: &str,
        persons: Vec<Person>,
    ) -> Result<UpsertReport, PluginError>;
    /// `read-keys`: keys, optionally only those held by `holder`.
    async fn read_keys(
        &self,
        plugin: &str,
        holder: Option<String>,
    ) -> Result<Vec<Key>, PluginError>;
    /// `read-cylinders`: cylinders whose name or marking starts with `prefix`.
    async fn read_cylinders(
        &self,
        plugin: &str,
        prefix: &str,
    ) -> Result<Vec<Cylinder>, PluginError>;
    /// `pending-jobs`: open jobs for a key.
    async fn pending_jobs(&self, plugin: &str, key_id: u64) -> Result<Vec<Job>, PluginError>;
    /// `emit-event`: records an event raised by the plugin.
    async fn emit_event(&self, plugin: &str, event: Event) -> Result<(), PluginError>;
    /// `sync-persons`: applies one directory sync in one transaction: the
    /// persons the plugin staged during its call, deletions as `request` says
    /// (behind the mass-deletion guard) and the watermark (a key of the
    /// plugin's kv) in the same transaction.
    async fn sync_persons(
        &self,
        plugin: &str,
        request: SyncRequest,
        persons: Vec<Person>,
    ) -> Result<SyncReport, PluginError>;
    /// `request-directory-sync`: queues a sync by the directory-sync plugin
    /// `target`; returns the queue job id.
    async fn request_directory_sync(
        &self,
        plugin: &str,
        target: &str,
        full: bool,
    ) -> Result<u64, PluginError>;
    /// `request-key-update`: reconciles one key now; returns its open jobs.
    async fn request_key_update(&self, plugin: &str, key_id: u64) -> Result<Vec<Job>, PluginError>;
    /// `report-key-lost`: reports a handed-out key lost (a lost key: no-op).
    async fn report_key_lost(&self, plugin: &str, key_id: u64) -> Result<(), PluginError>;
    /// Whether `plugin`, whose manifest names the licence feature `feature`, may run now:
    /// the host asks before every call into such a plugin (not once at load), so the
    /// answer follows the licence of the locking system the plugin acts for as it is
    /// installed, expires or is replaced. An error names why not.
    async fn licensed(&self, plugin: &str, feature: &str) -> Result<(), PluginError>;

    /// `employees.upsert` for the bound web-service client: all or nothing.
    async fn employees_upsert(
        &self,
        _plugin: &str,
        _client: &WebServiceClient,
        _domain: Option<String>,
        _persons: Vec<Person>,
    ) -> Result<EmployeesUpsertOutcome, EmployeesUpsertError> {
        Err(EmployeesUpsertError::Failed(unwired_error()))
    }
    /// `employees.get`.
    async fn employees_get(
        &self,
        _plugin: &str,
        _client: &WebServiceClient,
        _identifier: &str,
    ) -> Result<Employee, PluginError> {
        unwired()
    }
    /// `employees.deactivate`.
    async fn employees_deactivate(
        &self,
        _plugin: &str,
        _client: &WebServiceClient,
        _identifier: &str,
    ) -> Result<Employee, PluginError> {
        unwired()
    }
    /// `employees.delete`: none when deleted permanently.
    async fn employees_delete(
        &self,
        _plugin: &str,
        _client: &WebServiceClient,
        _identifier: &str,
    ) -> Result<Option<Employee>, PluginError> {
        unwired()
    }
    /// `employees.list-changes` (`limit` already within 1..=[`MAX_CHANGES_PAGE`]).
    async fn employees_changes(
        &self,
        _plugin: &str,
        _client: &WebServiceClient,
        _since: &str,
        _limit: u32,
    ) -> Result<EmployeeChangePage, PluginError> {
        unwired()
    }

    /// `device.heartbeat` of the PD `device` (the host bound it from the connection's
    /// verified certificate; see [`DeviceBinding`]).
    async fn device_heartbeat(
        &self,
        _plugin: &str,
        _device: &DeviceBinding,
        _report: DeviceHeartbeat,
    ) -> Result<HeartbeatAnswer, PluginError> {
        unwired()
    }
    /// `device.key-inserted`.
    async fn device_key_inserted(
        &self,
        _plugin: &str,
        _device: &DeviceBinding,
        _key_id: u64,
    ) -> Result<Vec<DeliverableJob>, PluginError> {
        unwired()
    }
    /// `device.c-key-inserted`.
    async fn device_c_key_inserted(
        &self,
        _plugin: &str,
        _device: &DeviceBinding,
        _c_key_id: u64,
    ) -> Result<Vec<DeliverableJob>, PluginError> {
        unwired()
    }
    /// `device.report-job`.
    async fn device_report_job(
        &self,
        _plugin: &str,
        _device: &DeviceBinding,
        _report: JobReport,
    ) -> Result<ReportTaken, PluginError> {
        unwired()
    }
    /// `device.revocation-list`: the signed list, JSON.
    async fn device_revocation_list(
        &self,
        _plugin: &str,
        _device: &DeviceBinding,
    ) -> Result<String, PluginError> {
        unwired()
    }
    /// `device.upload-audit-trail`: how many records were new.
    async fn device_upload_audit_trail(
        &self,
        _plugin: &str,
        _device: &DeviceBinding,
        _key_id: u64,
        _entries: Vec<AuditEntry>,
    ) -> Result<u32, PluginError> {
        unwired()
    }
    /// `device.renew-certificate` (the connection's certificate is `device.certificate_id`).
    async fn device_renew_certificate(
        &self,
        _plugin: &str,
        _device: &DeviceBinding,
        _csr_pem: String,
    ) -> Result<RenewedCertificate, PluginError> {
        unwired()
    }
    /// `device.upload-log`.
    async fn device_upload_log(
        &self,
        _plugin: &str,
        _device: &DeviceBinding,
        _lines: Vec<String>,
    ) -> Result<(), PluginError> {
        unwired()
    }
}

/// The web-service client a `handle` call acts for, bound by the host from the credentials the
/// embedder authenticated for the request (never from the request body a plugin reads). The
/// `employees` operations of that call act as this client, within its domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebServiceClient {
    /// The client's locking system.
    pub system_id: i64,
    /// The C-key the client's token belongs to (the actor of every change).
    pub c_key_id: i64,
    /// The C-key's name, as events name the actor.
    pub label: String,
    /// Shared by the events of the request (its request id).
    pub correlation_id: String,
    /// The domains the client sees; none: all.
    pub domains: Option<Vec<i64>>,
    /// Where a new object goes when the system has no initial domain for it.
    pub home: Option<i64>,
    /// The client holds the key-holder-deactivate permission at Full: it may deactivate
    /// employees and sees deactivated and marked-deleted ones (hidden from it otherwise).
    pub sees_hidden_persons: bool,
}

/// The PD a `handle-frame` call acts for, bound by the host from the connection's
/// verified client certificate (never from the frame). The `device` operations of that
/// call act for this PD only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceBinding {
    /// The PD's locking system.
    pub system_id: i64,
    /// The PD.
    pub pd_id: i64,
    /// The certificate the connection presented.
    pub certificate_id: i64,
}

/// Most changes one `employees.list-changes` page holds.
pub const MAX_CHANGES_PAGE: u32 = 1_000;
/// Most persons one `employees.upsert` call takes.
pub const MAX_EMPLOYEES_UPSERT: usize = 1_000;

/// Most records one `upload-audit-trail` call takes.
pub const MAX_AUDIT_ENTRIES: usize = 10_000;
/// Most lines one `upload-log` call takes, and the longest line kept, bytes.
pub const MAX_LOG_LINES: usize = 1_000;
/// Longest PD log line kept, bytes (longer ones are cut).
pub const MAX_LOG_LINE_BYTES: usize = 1_024;
/// Largest connection state a device-protocol plugin may keep between frames, bytes.
pub const MAX_DEVICE_SESSION_BYTES: usize = 16 * 1024;

/// Largest MQTT payload a plugin may publish, bytes.
pub const MQTT_MAX_PAYLOAD_BYTES: usize = 256 << 10;

/// Publishes MQTT messages for the `mqtt` capability (see
/// [`crate::mqtt::RumqttPublisher`]). The host has checked the grant, the
/// topic (a granted prefix, no wildcards, no NUL, at most 1024 bytes), the
/// payload size and `qos` (0 or 1) before it calls; `plugin` is the caller,
/// for audit.
#[async_trait]
pub trait MqttPublisher: Send + Sync + 'static {
    /// Hands one message to the MQTT client. `Ok` does not mean the broker
    /// has it: QoS 1 acknowledgements arrive asynchronously.
    async fn publish(
        &self,
        plugin: &str,
        topic: &str,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
    ) -> Result<(), PluginError>;
}

/// A [`Gateway`] that is not wired to a core: every operation is unavailable.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoGateway;

fn unwired_error() -> PluginError {
    PluginError::Unavailable("the gateway is not wired to a core".into())
}

fn unwired<T>() -> Result<T, PluginError> {
    Err(unwired_error())
}

#[async_trait]
impl Gateway for NoGateway {
    async fn upsert_employees(
        &self,
        _: &str,
        _: &str,
        _: Vec<Person>,
    ) -> Result<UpsertReport, PluginError> {
        unwired()
    }
    async fn read_keys(&self, _: &str, _: Option<String>) -> Result<Vec<Key>, PluginError> {
        unwired()
    }
    async fn read_cylinders(&self, _: &str, _: &str) -> Result<Vec<Cylinder>, PluginError> {
        unwired()
    }
    async fn pending_jobs(&self, _: &str, _: u64) -> Result<Vec<Job>, PluginError> {
        unwired()
    }
    async fn emit_event(&self, _: &str, _: Event) -> Result<(), PluginError> {
        unwired()
    }
    async fn sync_persons(
        &self,
        _: &str,
        _: SyncRequest,
        _: Vec<Person>,
    ) -> Result<SyncReport, PluginError> {
        unwired()
    }
    async fn request_directory_sync(&self, _: &str, _: &str, _: bool) -> Result<u64, PluginError> {
        unwired()
    }
    async fn request_key_update(&self, _: &str, _: u64) -> Result<Vec<Job>, PluginError> {
        unwired()
    }
    async fn report_key_lost(&self, _: &str, _: u64) -> Result<(), PluginError> {
        unwired()
    }
    async fn licensed(&self, _: &str, feature: &str) -> Result<(), PluginError> {
        Err(PluginError::Unavailable(format!(
            "the gateway is not wired to a core: nothing holds the licence feature `{feature}`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_kv_is_scoped_by_plugin() {
        let kv = MemoryKv::default();
        kv.set("a", "k1", b"1".to_vec()).await.unwrap();
        kv.set("a", "k2", b"2".to_vec()).await.unwrap();
        kv.set("b", "k1", b"other".to_vec()).await.unwrap();
        assert_eq!(kv.get("a", "k1").await.unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(
            kv.get("b", "k1").await.unwrap().as_deref(),
            Some(&b"other"[..])
        );
        assert_eq!(kv.get("c", "k1").await.unwrap(), None);
        assert_eq!(kv.list_keys("a", "k", 10).await.unwrap(), ["k1", "k2"]);
        assert_eq!(kv.list_keys("a", "k", 1).await.unwrap(), ["k1"]);
        kv.delete("a", "k1").await.unwrap();
        assert_eq!(kv.list_keys("a", "", 10).await.unwrap(), ["k2"]);
    }
}
