//! Compiled components, cached on disk: precompiled artifacts are keyed by
//! the engine's `precompile_compatibility_hash` and the SHA-256 of the
//! component bytes, so a new wasmtime, other engine settings or a changed
//! plugin all miss the cache, and an unchanged plugin starts without
//! compiling. Without a cache directory components are compiled in memory.
//!
//! A cached artifact is native code, so the cache must never become a way to run code in
//! the gateway:
//!
//! - each artifact carries an HMAC-SHA256 under a key kept outside the cache directory
//!   (`cache_key_file`, or `LOCKGATE_PLUGIN_CACHE_KEY`, or a key of this process only), over
//!   the engine's hash, the component's SHA-256 and the artifact, and is deserialised only
//!   after the tag verifies: a planted file, a file of another key or another plugin's
//!   artifact under this plugin's name is recompiled and rewritten;
//! - cache files and directories not owned by the gateway's effective user, or writable by
//!   group or others, are refused (the file is recompiled; a refused directory is not used);
//! - a cache that cannot be written (a read-only file system, e.g. systemd's
//!   `ProtectSystem=strict`) falls back to the component compiled in memory, logged once;
//!   it never fails the plugin.

use std::fs::{DirBuilder, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::HostError;

/// The environment variable that may hold the cache key (64 hex digits); it takes precedence
/// over `cache_key_file`.
pub const CACHE_KEY_ENV: &str = "LOCKGATE_PLUGIN_CACHE_KEY";

/// Largest cache file read, bytes (compiled plugins are a few MiB).
const MAX_ARTIFACT_BYTES: u64 = 256 << 20;
/// The first bytes of a cache file (format version 1: magic, 32-byte tag, artifact).
const MAGIC: &[u8; 8] = b"LGCWASM1";
const TAG_BYTES: usize = 32;

/// Where the component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// Loaded from a precompiled artifact whose tag verified.
    Hit,
    /// Compiled now and stored for next time (a refused entry is also replaced so).
    Miss,
    /// Compiled now; no cache directory is configured.
    Disabled,
    /// Compiled now and kept in memory: the cache directory was refused or could not be
    /// written (logged).
    Bypassed,
}

/// A `Hasher` that feeds SHA-256 (a stable digest of an `impl Hash`).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The key that authenticates cache files (never logged).
#[derive(Clone)]
struct CacheKey([u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

/// The compile cache of one engine.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    /// The configured directory and its per-engine subdirectory; none without a cache.
    dirs: Option<(PathBuf, PathBuf)>,
    engine_hash: String,
    /// None when no usable key could be had (logged): the cache is then not used.
    key: Option<CacheKey>,
    /// Whether an unwritable cache was logged already.
    write_failure_logged: Arc<AtomicBool>,
}

impl ComponentCache {
    /// A cache under `dir/<engine hash>/`, or none, authenticated with the key of
    /// [`CACHE_KEY_ENV`], else of `key_file` (created with mode 0600 when missing), else a
    /// key of this process only (the cache then lasts as long as the process).
    pub fn new(engine: &Engine, dir: Option<&Path>, key_file: Option<&Path>) -> Self {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_hash = hex::encode(h.0.finalize())[..32].to_owned();
        let key = dir.and_then(|d| {
            cache_key(key_file)
                .inspect_err(|reason| {
                    tracing::warn!(dir = %d.display(), reason, "plugin cache not used: no usable cache key; plugins are compiled at every start")
                })
                .ok()
        });
        ComponentCache {
            dirs: dir.map(|d| (d.to_owned(), d.join(&engine_hash))),
            engine_hash,
            key,
            write_failure_logged: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The component for `bytes`: from the cache when present and authentic, compiled otherwise.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome), HostError> {
        let compile_err = |e: wasmtime::Error| HostError::Component(crate::error_chain(&e));
        let Some((root, dir)) = &self.dirs else {
            return Component::new(engine, bytes)
                .map(|c| (c, CacheOutcome::Disabled))
                .map_err(compile_err);
        };
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let path = dir.join(format!("{}.cwasm", hex::encode(digest)));
        let Some(key) = &self.key else {
            let artifact = engine.precompile_component(bytes).map_err(compile_err)?;
            return deserialize_trusted(engine, &artifact)
                .map(|c| (c, CacheOutcome::Bypassed))
                .map_err(compile_err);
        };
        let exists = match ensure_private_dir(root).and_then(|_| ensure_private_dir(dir)) {
            Ok(exists) => exists,
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), reason, "plugin cache directory refused; compiling in memory");
                let artifact = engine.precompile_component(bytes).map_err(compile_err)?;
                return deserialize_trusted(engine, &artifact)
                    .map(|c| (c, CacheOutcome::Bypassed))
                    .map_err(compile_err);
            }
        };
        match if exists {
            self.read_verified(key, &path, &digest)
        } else {
            Ok(None)
        } {
            Ok(Some(artifact)) => match deserialize_trusted(engine, &artifact) {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %crate::error_chain(&e), "discarding unusable cache entry")
                }
            },
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(path = %path.display(), reason, "cache entry refused; recompiling")
            }
        }
        let artifact = engine.precompile_component(bytes).map_err(compile_err)?;
        let outcome = match self.write(key, &path, &digest, &artifact) {
            Ok(()) => CacheOutcome::Miss,
            Err(e) => {
                if !self.write_failure_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the plugin cache; compiled plugins are kept in memory only");
                }
                CacheOutcome::Bypassed
            }
        };
        deserialize_trusted(engine, &artifact)
            .map(|c| (c, outcome))
            .map_err(compile_err)
    }

    /// The tag of an artifact: HMAC-SHA256 over the engine hash, the component digest and
    /// the artifact, so a file is valid only for this key, engine and component.
    fn tag(&self, key: &CacheKey, digest: &[u8; 32], artifact: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes a key of any length");
        mac.update(b"lockgate plugin cache v1\0");
        mac.update(self.engine_hash.as_bytes());
        mac.update(digest);
        mac.update(artifact);
        mac
    }

    /// The artifact of a cache file whose owner, mode and tag are right; `None` when there is
    /// no file, `Err` (the reason) when the file is refused.
    fn read_verified(
        &self,
        key: &CacheKey,
        path: &Path,
        digest: &[u8; 32],
    ) -> Result<Option<Vec<u8>>, String> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open: {e}")),
        };
        let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        check_owner_and_mode(&meta)?;
        if meta.len() > MAX_ARTIFACT_BYTES {
            return Err(format!("larger than {MAX_ARTIFACT_BYTES} bytes"));
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_ARTIFACT_BYTES)
            .read_to_end(&mut data)
            .map_err(|e| format!("cannot read: {e}"))?;
        let header = MAGIC.len() + TAG_BYTES;
        if data.len() < header || &data[..MAGIC.len()] != MAGIC {
            return Err("not a lockgate cache file (bad header)".into());
        }
        let artifact = data.split_off(header);
        self.tag(key, digest, &artifact)
            .verify_slice(&data[MAGIC.len()..])
            .map_err(|_| {
                "authentication tag does not verify (other key, plugin or engine, or altered)"
                    .to_owned()
            })?;
        Ok(Some(artifact))
    }

    /// Writes the tagged artifact beside `path` and renames it into place, mode 0600.
    fn write(
        &self,
        key: &CacheKey,
        path: &Path,
        digest: &[u8; 32],
        artifact: &[u8],
    ) -> std::io::Result<()> {
        // A name of its own per write: several threads (or replicas sharing the directory)
        // may compile the same component at once; each renames its own complete file, so a
        // concurrent reader never sees half a file.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        let tag = self.tag(key, digest, artifact).finalize().into_bytes();
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&tag)?;
            f.write_all(artifact)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// Deserialises an artifact: the crate's only `unsafe`.
#[allow(unsafe_code)]
fn deserialize_trusted(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` trusts its bytes to be an artifact produced by
    // `Engine::precompile_component` (they become native code). Every caller passes either
    // the output of `precompile_component` from this process, or bytes read from the cache
    // whose HMAC-SHA256 tag verified under the cache key (which is kept outside the cache
    // directory and never written into it) for this engine's compatibility hash and this
    // component's SHA-256, i.e. bytes this gateway's own `precompile_component` produced for
    // this very component and wrote. wasmtime additionally checks the artifact's header
    // against the engine and refuses a mismatch.
    unsafe { Component::deserialize(engine, artifact) }
}

/// Whether a cache directory exists (created mode 0700 when missing); `Err` when it is not
/// one that only the gateway's user can write. One that cannot be created is not an error
/// here: the write that follows fails and is handled as a write failure.
fn ensure_private_dir(dir: &Path) -> Result<bool, String> {
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(_) => {
            let _ = DirBuilder::new().recursive(true).mode(0o700).create(dir);
            match std::fs::metadata(dir) {
                Ok(meta) => meta,
                Err(_) => return Ok(false),
            }
        }
    };
    if !meta.is_dir() {
        return Err("not a directory".into());
    }
    check_owner_and_mode(&meta).map(|()| true)
}

/// Refuses what another user owns or what group or others may write.
fn check_owner_and_mode(meta: &std::fs::Metadata) -> Result<(), String> {
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(format!(
            "owned by uid {}, not the gateway's uid {euid}",
            meta.uid()
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "writable by group or others (mode {:o})",
            meta.permissions().mode() & 0o7777
        ));
    }
    Ok(())
}

/// A key of this process only (random, never stored).
fn process_key() -> CacheKey {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    CacheKey(*KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k).expect("the operating system's random source");
        k
    }))
}

/// The cache key: from [`CACHE_KEY_ENV`], else `key_file` (generated when missing), else
/// [`process_key`]. `Err` names why no key could be had.
fn cache_key(key_file: Option<&Path>) -> Result<CacheKey, String> {
    if let Ok(hex_key) = std::env::var(CACHE_KEY_ENV) {
        return parse_key(&hex_key).map_err(|e| format!("{CACHE_KEY_ENV}: {e}"));
    }
    let Some(path) = key_file else {
        tracing::info!(
            "no plugins.cache_key_file: the plugin cache is authenticated with a key of this process only, so compiled plugins are not reused after a restart"
        );
        return Ok(process_key());
    };
    match read_key_file(path) {
        Err(KeyFile::Missing) => {}
        Err(KeyFile::Refused(reason)) => return Err(reason),
        Ok(key) => return Ok(key),
    }
    let shown = path.display();
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).map_err(|e| format!("no random source: {e}"))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| format!("{}: cannot create: {e}", parent.display()))?;
    }
    // Written whole beside it, then linked into place: a gateway (or test) starting at the
    // same moment either links first or reads the complete file of the one that did.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            tracing::info!(path = %shown, "generated the plugin cache key");
            Ok(CacheKey(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read_key_file(path) {
            Ok(key) => Ok(key),
            Err(KeyFile::Missing) => Err(format!("{shown}: vanished while being created")),
            Err(KeyFile::Refused(reason)) => Err(reason),
        },
        Err(e) => Err(format!("{shown}: cannot create: {e}")),
    }
}

/// Why a key file gave no key.
enum KeyFile {
    Missing,
    Refused(String),
}

/// The key in an existing key file, which only the gateway's user may read and write.
fn read_key_file(path: &Path) -> Result<CacheKey, KeyFile> {
    let shown = path.display();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KeyFile::Missing),
        Err(e) => return Err(KeyFile::Refused(format!("{shown}: cannot open: {e}"))),
    };
    let refused = |m: String| KeyFile::Refused(format!("{shown}: {m}"));
    let meta = file
        .metadata()
        .map_err(|e| refused(format!("cannot stat: {e}")))?;
    check_owner_and_mode(&meta).map_err(refused)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(refused(format!(
            "readable by group or others (mode {:o}); chmod 600",
            meta.permissions().mode() & 0o7777
        )));
    }
    let mut text = String::new();
    file.take(1024)
        .read_to_string(&mut text)
        .map_err(|e| refused(format!("cannot read: {e}")))?;
    parse_key(&text).map_err(refused)
}

/// 64 hex digits (surrounding blanks ignored).
fn parse_key(text: &str) -> Result<CacheKey, String> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .map_err(|_| "the cache key must be 64 hex digits".to_owned())?;
    Ok(CacheKey(key))
}
