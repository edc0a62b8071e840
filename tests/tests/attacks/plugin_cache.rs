//! The compiled-plugin cache as a way to run code in the gateway: someone who can write the
//! cache directory plants files there (garbage, another key's artifact, another plugin's
//! artifact, a raw wasmtime artifact, an altered one, files with loose modes or another
//! owner). Each is refused (the plugin is recompiled, not loaded from the file) and the plugin
//! still works; a cache that cannot be written still loads plugins.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lockgate_host::types::Event;
use lockgate_host::{CacheOutcome, HostConfig, MemoryKv, NoGateway, PluginHost, PluginState};
use lockgate_tests::attack::Tally;
use sha2::{Digest, Sha256};

/// A fresh private directory for one test.
fn scratch(name: &str) -> PathBuf {
    let mut b = [0u8; 6];
    getrandom::getrandom(&mut b).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "lockgate-attack-cache-{name}-{}-{}",
        std::process::id(),
        hex::encode(b)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A plugin directory with the test plugins `noop` (works) and `trap` (panics when called).
fn plugins(root: &Path) -> PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let built = PathBuf::from(lockgate_host::TEST_PLUGINS_DIR);
    for name in ["noop", "trap"] {
        for ext in ["wasm", "toml"] {
            let file = format!("{name}.{ext}");
            std::fs::copy(built.join(&file), dir.join(&file)).unwrap();
        }
    }
    dir
}

fn config(cache: &Path, key: &Path) -> HostConfig {
    let mut cfg: HostConfig = toml::from_str(
        r#"
        [plugins.noop.grants]
        log = true
        kv = true
        [plugins.trap.grants]
        "#,
    )
    .unwrap();
    cfg.cache_dir = Some(cache.to_owned());
    cfg.cache_key_file = Some(key.to_owned());
    cfg.max_concurrent_instances = 4;
    cfg
}

fn host(cfg: &HostConfig, plugins: &Path) -> PluginHost {
    let host = PluginHost::new(
        cfg.clone(),
        Arc::new(MemoryKv::default()),
        Arc::new(NoGateway),
    )
    .unwrap();
    host.load_dir(plugins).unwrap();
    host
}

fn outcome(host: &PluginHost, name: &str) -> Option<CacheOutcome> {
    host.status_of(name).unwrap().cache
}

/// Whether `noop` is enabled and a call to it succeeds (the `trap` code would panic).
async fn noop_works(host: &PluginHost) -> bool {
    let event = Event {
        kind: "log".into(),
        object_kind: "key".into(),
        object_id: Some(1),
        at: 1_700_000_000_000,
        payload: "{}".into(),
    };
    host.status_of("noop").unwrap().state == PluginState::Enabled
        && matches!(host.publish("noop", event).await, Ok(Ok(())))
}

/// The cache file of the component `name` (under the engine's subdirectory of `cache`).
fn cache_file(cache: &Path, plugins: &Path, name: &str) -> PathBuf {
    let digest = hex::encode(Sha256::digest(
        std::fs::read(plugins.join(format!("{name}.wasm"))).unwrap(),
    ));
    let engine_dirs: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(engine_dirs.len(), 1, "one engine directory in {cache:?}");
    engine_dirs[0].join(format!("{digest}.cwasm"))
}

/// One environment: plugins compiled into a fresh cache under `key`.
struct Setup {
    root: PathBuf,
    plugins: PathBuf,
    cache: PathBuf,
    key: PathBuf,
}

impl Setup {
    async fn new(name: &str) -> Setup {
        let root = scratch(name);
        let plugins = plugins(&root);
        let (cache, key) = (root.join("cache"), root.join("cache.key"));
        let first = host(&config(&cache, &key), &plugins);
        assert_eq!(outcome(&first, "noop"), Some(CacheOutcome::Miss));
        assert!(noop_works(&first).await);
        let second = host(&config(&cache, &key), &plugins);
        assert_eq!(outcome(&second, "noop"), Some(CacheOutcome::Hit));
        assert_eq!(outcome(&second, "trap"), Some(CacheOutcome::Hit));
        Setup {
            root,
            plugins,
            cache,
            key,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        cache_file(&self.cache, &self.plugins, name)
    }

    /// Loads again after tampering: refused when `noop` was not taken from the cache and
    /// still works.
    async fn refused(&self) -> (bool, PluginHost) {
        let h = host(&config(&self.cache, &self.key), &self.plugins);
        let refused = outcome(&h, "noop") != Some(CacheOutcome::Hit) && noop_works(&h).await;
        (refused, h)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn euid_is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_cache_files_are_refused_and_the_plugin_still_works() {
    let mut tally = Tally::new("plugin cache");

    // Garbage under the plugin's name.
    let s = Setup::new("garbage").await;
    std::fs::write(s.file("noop"), b"\x7fELF not an artifact at all").unwrap();
    let (refused, _) = s.refused().await;
    tally.case("garbage file", refused);
    // The refused file was replaced by an authentic one: the next start hits the cache.
    let again = host(&config(&s.cache, &s.key), &s.plugins);
    assert_eq!(outcome(&again, "noop"), Some(CacheOutcome::Hit));
    assert_eq!(
        std::fs::metadata(s.file("noop")).unwrap().mode() & 0o777,
        0o600
    );
    drop(s);

    // A valid artifact of the same plugin, written under another key.
    let s = Setup::new("other-key").await;
    let other = Setup::new("other-key-source").await;
    std::fs::copy(other.file("noop"), s.file("noop")).unwrap();
    tally.case("artifact of another key", s.refused().await.0);
    drop((s, other));

    // Another plugin's authentic artifact (same key) under this plugin's name: before the tag
    // bound the component's digest, `noop` ran `trap`'s code.
    let s = Setup::new("swap").await;
    std::fs::copy(s.file("trap"), s.file("noop")).unwrap();
    tally.case(
        "another plugin's artifact under its name",
        s.refused().await.0,
    );
    drop(s);

    // A raw wasmtime artifact for this very engine (the authentic file without its header
    // and tag), as someone with wasmtime at hand would plant it.
    let s = Setup::new("raw").await;
    let data = std::fs::read(s.file("trap")).unwrap();
    std::fs::write(s.file("noop"), &data[40..]).unwrap();
    tally.case("raw wasmtime artifact", s.refused().await.0);
    drop(s);

    // The authentic file with one byte of its code altered.
    let s = Setup::new("altered").await;
    let mut data = std::fs::read(s.file("noop")).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x01;
    std::fs::write(s.file("noop"), &data).unwrap();
    tally.case("altered artifact", s.refused().await.0);
    drop(s);

    // Authentic files with loose modes: whoever else could write them could have planted them.
    for mode in [0o620, 0o602, 0o666] {
        let s = Setup::new("mode").await;
        std::fs::set_permissions(s.file("noop"), std::fs::Permissions::from_mode(mode)).unwrap();
        tally.case(format!("cache file mode {mode:o}"), s.refused().await.0);
        drop(s);
    }

    // A cache directory others may write: not used at all.
    for mode in [0o770, 0o707, 0o777] {
        let s = Setup::new("dir-mode").await;
        let engine_dir = s.file("noop").parent().unwrap().to_owned();
        std::fs::set_permissions(&engine_dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let (refused, h) = s.refused().await;
        assert_eq!(outcome(&h, "noop"), Some(CacheOutcome::Bypassed));
        tally.case(format!("cache directory mode {mode:o}"), refused);
        drop(s);
    }

    // Files and directories of another user (testable as root: chown to nobody).
    if euid_is_root() {
        let s = Setup::new("owner").await;
        std::os::unix::fs::chown(s.file("noop"), Some(65534), Some(65534)).unwrap();
        tally.case("cache file owned by another user", s.refused().await.0);
        drop(s);
        let s = Setup::new("dir-owner").await;
        std::os::unix::fs::chown(&s.cache, Some(65534), Some(65534)).unwrap();
        tally.case("cache directory owned by another user", s.refused().await.0);
        drop(s);
    }

    // A key file others can read (they could tag their own artifacts): the cache is not used.
    let s = Setup::new("key-mode").await;
    std::fs::set_permissions(&s.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (refused, h) = s.refused().await;
    assert_eq!(outcome(&h, "noop"), Some(CacheOutcome::Bypassed));
    tally.case("key file readable by others", refused);
    drop(s);

    // A key file inside the cache directory is refused by the configuration.
    let s = Setup::new("key-inside").await;
    let cfg = config(&s.cache, &s.cache.join("cache.key"));
    tally.case(
        "key file inside the cache directory",
        PluginHost::new(cfg, Arc::new(MemoryKv::default()), Arc::new(NoGateway)).is_err(),
    );
    drop(s);

    tally.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_cache_still_loads_plugins() {
    let root = scratch("unwritable");
    let plugins = plugins(&root);
    // A cache directory that cannot be created (its parent is a file): as a read-only file
    // system (systemd's ProtectSystem=strict), every write fails. Root ignores modes, so a
    // mode 0500 directory would not show it here.
    std::fs::write(root.join("file"), b"").unwrap();
    let cache = root.join("file").join("cache");
    let key = root.join("cache.key");
    for _ in 0..2 {
        let h = host(&config(&cache, &key), &plugins);
        assert_eq!(outcome(&h, "noop"), Some(CacheOutcome::Bypassed));
        assert_eq!(outcome(&h, "trap"), Some(CacheOutcome::Bypassed));
        assert!(noop_works(&h).await, "the plugin works without a cache");
    }
    if !euid_is_root() {
        // Not root: a directory without write permission is read-only for the gateway.
        let ro = root.join("ro");
        std::fs::create_dir_all(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
        let h = host(&config(&ro.join("cache"), &key), &plugins);
        assert_eq!(outcome(&h, "noop"), Some(CacheOutcome::Bypassed));
        assert!(noop_works(&h).await);
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let _ = std::fs::remove_dir_all(&root);
}
