//! Shared helpers for the plugin host tests: a plugin directory with chosen
//! bundled plugins, a recording gateway and host construction.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use lockgate_host::types::{
    Cylinder, Event, Job, Key, Person, PluginError, SyncReport, SyncRequest, UpsertReport,
};
use lockgate_host::{Gateway, HostConfig, MemoryKv, PluginHost};

/// The plugins `core/host/build.rs` built.
pub const BUNDLED: &str = env!("LOCKGATE_TEST_PLUGINS_DIR");

/// A fresh directory with the named bundled plugins (and fixtures) copied in.
pub fn plugin_dir(names: &[&str]) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lockgate-host-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for name in names {
        let from = if fixtures.join(format!("{name}.toml")).is_file() {
            fixtures.clone()
        } else {
            PathBuf::from(BUNDLED)
        };
        for ext in ["wasm", "toml"] {
            let file = format!("{name}.{ext}");
            std::fs::copy(from.join(&file), dir.join(&file))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }
    dir
}

/// A cache directory shared by the tests of one run (compiles each plugin once per engine kind).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
}

/// The key file of [`cache_dir`] (beside it, as the key must be outside the cache).
pub fn cache_key_file() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache.key")
}

/// A test configuration: short deadline, small memory, the given plugin grants.
pub fn config(grants: &str) -> HostConfig {
    let mut cfg: HostConfig = toml::from_str(grants).unwrap();
    cfg.cache_dir = Some(cache_dir());
    cfg.cache_key_file = Some(cache_key_file());
    cfg.limits.deadline_ms = 300;
    cfg.limits.memory_bytes = 16 << 20;
    cfg.backoff.base_ms = 60_000;
    cfg.max_concurrent_instances = 8;
    cfg
}

/// A gateway that records what plugins send it.
#[derive(Debug, Default)]
pub struct RecordingGateway {
    pub upserts: Mutex<Vec<(String, String, Vec<Person>)>>,
    pub events: Mutex<Vec<(String, Event)>>,
    /// `(plugin, operation, argument)` of the command operations.
    pub commands: Mutex<Vec<(String, String, String)>>,
    /// The licence features the gateway holds now (none by default).
    pub licensed: Mutex<Vec<String>>,
    /// How many times the host asked whether a plugin is licensed.
    pub licence_checks: std::sync::atomic::AtomicUsize,
}

impl RecordingGateway {
    fn command(&self, plugin: &str, op: &str, arg: String) {
        self.commands
            .lock()
            .unwrap()
            .push((plugin.into(), op.into(), arg));
    }
}

#[async_trait::async_trait]
impl Gateway for RecordingGateway {
    async fn upsert_employees(
        &self,
        plugin: &str,
        domain: &str,
        persons: Vec<Person>,
    ) -> Result<UpsertReport, PluginError> {
        let created = persons.len() as u32;
        self.upserts
            .lock()
            .unwrap()
            .push((plugin.into(), domain.into(), persons));
        Ok(UpsertReport {
            created,
            updated: 0,
            unchanged: 0,
        })
    }
    async fn read_keys(&self, _: &str, _: Option<String>) -> Result<Vec<Key>, PluginError> {
        Ok(vec![])
    }
    async fn read_cylinders(&self, _: &str, _: &str) -> Result<Vec<Cylinder>, PluginError> {
        Ok(vec![])
    }
    async fn pending_jobs(&self, _: &str, _: u64) -> Result<Vec<Job>, PluginError> {
        Ok(vec![])
    }
    async fn emit_event(&self, plugin: &str, event: Event) -> Result<(), PluginError> {
        self.events.lock().unwrap().push((plugin.into(), event));
        Ok(())
    }
    async fn sync_persons(
        &self,
        plugin: &str,
        request: SyncRequest,
        persons: Vec<Person>,
    ) -> Result<SyncReport, PluginError> {
        let staged = persons.len() as u32;
        self.command(plugin, "sync-persons", request.source.clone());
        Ok(SyncReport {
            staged,
            created: staged,
            updated: 0,
            unchanged: 0,
            deleted: 0,
            deleted_identifiers: vec![],
            skipped: vec![],
            dry_run: request.dry_run,
            guard: None,
        })
    }
    async fn request_directory_sync(
        &self,
        plugin: &str,
        target: &str,
        full: bool,
    ) -> Result<u64, PluginError> {
        self.command(
            plugin,
            "request-directory-sync",
            format!("{target} full={full}"),
        );
        Ok(1)
    }
    async fn request_key_update(&self, plugin: &str, key_id: u64) -> Result<Vec<Job>, PluginError> {
        self.command(plugin, "request-key-update", key_id.to_string());
        Ok(vec![])
    }
    async fn report_key_lost(&self, plugin: &str, key_id: u64) -> Result<(), PluginError> {
        self.command(plugin, "report-key-lost", key_id.to_string());
        Ok(())
    }
    async fn licensed(&self, _: &str, feature: &str) -> Result<(), PluginError> {
        self.licence_checks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.licensed.lock().unwrap().iter().any(|f| f == feature) {
            Ok(())
        } else {
            Err(PluginError::Denied(format!(
                "the licence does not include `{feature}`"
            )))
        }
    }
}

/// A host over `cfg` with an in-memory kv and a recording gateway, plugins loaded from `dir`.
pub fn host(
    cfg: HostConfig,
    dir: &std::path::Path,
) -> (PluginHost, Arc<MemoryKv>, Arc<RecordingGateway>) {
    let kv = Arc::new(MemoryKv::default());
    let gw = Arc::new(RecordingGateway::default());
    let host = PluginHost::new(cfg, kv.clone(), gw.clone()).unwrap();
    host.load_dir(dir).unwrap();
    (host, kv, gw)
}

/// An event with a kind.
pub fn event(kind: &str) -> Event {
    Event {
        kind: kind.into(),
        object_kind: "key".into(),
        object_id: Some(7),
        at: 1_700_000_000_000,
        payload: "{}".into(),
    }
}

/// Turns a core module in WebAssembly text into a component of the connector
/// world `world` (e.g. `event-bridge`), for test plugins that stable Rust
/// cannot express. The module must export the world's functions under their
/// canonical ABI names (`lockgate:connector/plugin@0.1.0#describe`, ...),
/// `memory` and `cabi_realloc`; wit-component checks the core signatures.
pub fn component_from_wat(wat: &str, world: &str) -> Vec<u8> {
    let wit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let mut resolve = wit_parser::Resolve::new();
    resolve.push_dir(wit.join("host")).expect("wit/host");
    let (connector, _) = resolve
        .push_dir(wit.join("connector"))
        .expect("wit/connector");
    let world = resolve
        .select_world(&[connector], Some(world))
        .expect("connector world");
    let mut module = wat::parse_str(wat).expect("the test module's WAT parses");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("component metadata embeds");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("the module matches the world")
        .validate(true)
        .encode()
        .expect("the component encodes")
}

/// Writes a plugin (`NAME.wasm` and its manifest `NAME.toml`) into `dir`.
pub fn write_plugin(dir: &std::path::Path, name: &str, component: &[u8], manifest: &str) {
    std::fs::write(dir.join(format!("{name}.wasm")), component).unwrap();
    std::fs::write(dir.join(format!("{name}.toml")), manifest).unwrap();
}

/// A minimal HTTP/1.1 server on 127.0.0.1 for outbound-HTTP tests: `/` answers
/// 200 `ok`, `/big` a body of `big` bytes (with `Content-Length`), `/stream`
/// the same without a length (read until the connection closes), anything
/// else 404. Returns its address and the number of requests it received.
pub async fn http_server(big: usize) -> (std::net::SocketAddr, Arc<AtomicU32>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = match path {
                    "/" => ("200 OK", b"ok".to_vec()),
                    "/big" | "/stream" => ("200 OK", vec![b'x'; big]),
                    _ => ("404 Not Found", b"nope".to_vec()),
                };
                let length = if path == "/stream" {
                    String::new()
                } else {
                    format!("Content-Length: {}\r\n", body.len())
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n{length}Connection: close\r\n\r\n"
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.write_all(&body).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (addr, hits)
}
