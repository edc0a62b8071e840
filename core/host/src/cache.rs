//! Compiled components, cached on disk: precompiled artifacts are keyed by
//! the engine's `precompile_compatibility_hash` and the SHA-256 of the
//! component bytes, so a new wasmtime, other engine settings or a changed
//! plugin all miss the cache, and an unchanged plugin starts without
//! compiling. Without a cache directory components are compiled in memory.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::HostError;

/// Where the component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// Loaded from a precompiled artifact.
    Hit,
    /// Compiled now and stored for next time.
    Miss,
    /// Compiled now; no cache directory is configured.
    Disabled,
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

/// The compile cache of one engine.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    /// A cache under `dir/<engine hash>/`, or none.
    pub fn new(engine: &Engine, dir: Option<&Path>) -> Self {
        let dir = dir.map(|d| {
            let mut h = ShaHasher(Sha256::new());
            engine.precompile_compatibility_hash().hash(&mut h);
            d.join(&hex::encode(h.0.finalize())[..32])
        });
        ComponentCache { dir }
    }

    /// The component for `bytes`: from the cache when present, compiled otherwise.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome), HostError> {
        let compile_err = |e: wasmtime::Error| HostError::Component(crate::error_chain(&e));
        let Some(dir) = &self.dir else {
            return Component::new(engine, bytes)
                .map(|c| (c, CacheOutcome::Disabled))
                .map_err(compile_err);
        };
        let path = dir.join(format!("{}.cwasm", hex::encode(Sha256::digest(bytes))));
        if path.is_file() {
            match load_precompiled(engine, &path) {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %crate::error_chain(&e), "discarding unusable cache entry")
                }
            }
        }
        let artifact = engine.precompile_component(bytes).map_err(compile_err)?;
        let io = |source| HostError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        // Write beside and rename, so a concurrent reader never sees half a file.
        // A name of its own per write: several threads (or replicas sharing the directory)
        // may compile the same component at once; each renames its own complete file.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        std::fs::write(&tmp, &artifact).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        load_precompiled(engine, &path)
            .map(|c| (c, CacheOutcome::Miss))
            .map_err(compile_err)
    }
}

/// Loads a precompiled component: the crate's only `unsafe`.
#[allow(unsafe_code)]
fn load_precompiled(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts the file to be an artifact produced by
    // `Engine::precompile_component` (it is mapped and run as native code).
    // Files under the cache directory are written only by `ComponentCache::load`
    // above, from `precompile_component` of an engine with the same
    // compatibility hash (part of the directory name); wasmtime additionally
    // checks the artifact's header against the engine and refuses a mismatch.
    // The cache directory must be writable by the gateway alone (documented
    // on `HostConfig::cache_dir`).
    unsafe { Component::deserialize_file(engine, path) }
}
