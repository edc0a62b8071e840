//! The one wasmtime [`Engine`]: component model, async host calls, epoch
//! interruption, the pooling instance allocator when the address space allows
//! it (on-demand otherwise), and the dedicated OS thread that ticks the epoch.
//! At each tick a running guest yields to tokio (the registry's epoch callback)
//! and is trapped once its deadline has passed, so a guest that never yields
//! still meets its deadline without stalling tokio's workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::HostError;
use crate::config::{AllocatorChoice, HostConfig};

/// The allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allocator {
    /// Pooling instance allocator (slots reserved up front).
    Pooling,
    /// Instances allocated on demand.
    OnDemand,
}

fn base_config(cfg: &HostConfig) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    c.epoch_interruption(true);
    c.max_wasm_stack(cfg.limits.wasm_stack_bytes);
    // Host functions run on the same fiber stack as the guest: leave them room.
    c.async_stack_size(cfg.limits.wasm_stack_bytes + (1 << 20));
    c
}

fn pooling(cfg: &HostConfig) -> PoolingAllocationConfig {
    let n = cfg.max_concurrent_instances;
    let l = &cfg.limits;
    let per = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let mut p = PoolingAllocationConfig::default();
    p.total_component_instances(n)
        .total_core_instances(n.saturating_mul(per(l.instances).min(16)))
        .total_memories(n.saturating_mul(per(l.memories).min(4)))
        .total_tables(n.saturating_mul(per(l.tables).min(8)))
        .total_stacks(n)
        .max_core_instances_per_component(per(l.instances))
        .max_memories_per_component(per(l.memories))
        .max_tables_per_component(per(l.tables))
        .max_memory_size(usize::try_from(l.memory_bytes).unwrap_or(usize::MAX))
        .table_elements(l.table_elements);
    p
}

/// Builds the engine as configured; `auto` falls back to on-demand when the
/// pooling allocator cannot reserve its address space.
pub fn build_engine(cfg: &HostConfig) -> Result<(Engine, Allocator), HostError> {
    let on_demand = || {
        let mut c = base_config(cfg);
        c.allocation_strategy(InstanceAllocationStrategy::OnDemand);
        Engine::new(&c)
            .map(|e| (e, Allocator::OnDemand))
            .map_err(|e| HostError::Engine(crate::error_chain(&e)))
    };
    match cfg.allocator {
        AllocatorChoice::OnDemand => on_demand(),
        AllocatorChoice::Pooling | AllocatorChoice::Auto => {
            let mut c = base_config(cfg);
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(cfg)));
            match Engine::new(&c) {
                Ok(e) => Ok((e, Allocator::Pooling)),
                Err(e) if cfg.allocator == AllocatorChoice::Auto => {
                    tracing::warn!(error = %crate::error_chain(&e), "pooling allocator unavailable; allocating on demand");
                    on_demand()
                }
                Err(e) => Err(HostError::Engine(crate::error_chain(&e))),
            }
        }
    }
}

/// Advances an engine's epoch every `tick` on its own OS thread; stops when dropped.
#[derive(Debug)]
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the ticker thread.
    pub fn start(engine: Engine, tick: Duration) -> Result<Self, HostError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("lockgate-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| HostError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(EpochTicker {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
