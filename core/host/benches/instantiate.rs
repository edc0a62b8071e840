//! Instantiation and call overhead of the plugin host, printed as figures:
//! instantiate + call a no-op export through `PluginHost` (fresh store, limits,
//! epoch deadline) with the pooling and the on-demand allocator; a bare
//! wasmtime instance of the same component as the floor; and the guest→host
//! call overhead (log, kv get). Run: `cargo bench -p lockgate-host`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockgate_host::bindings::exports::lockgate::connector::event_sink;
use lockgate_host::types::Event;
use lockgate_host::{AllocatorChoice, HostConfig, MemoryKv, NoGateway, PluginHost};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

const ITERATIONS: usize = 2_000;
const WARMUP: usize = 100;

fn event(kind: &str) -> Event {
    Event {
        kind: kind.into(),
        object_kind: "key".into(),
        object_id: None,
        at: 0,
        payload: "{}".into(),
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |p: usize| samples[(samples.len() - 1) * p / 100];
    (at(50), at(99))
}

fn print(label: &str, (p50, p99): (Duration, Duration)) {
    println!(
        "{label:<48} p50 {:>8.1} µs   p99 {:>8.1} µs",
        us(p50),
        us(p99)
    );
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn plugin_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lockgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundled = PathBuf::from(env!("LOCKGATE_TEST_PLUGINS_DIR"));
    for file in ["noop.wasm", "noop.toml"] {
        std::fs::copy(bundled.join(file), dir.join(file)).unwrap();
    }
    dir
}

async fn host_calls(host: &PluginHost, kind: &str) -> (Duration, Duration) {
    for _ in 0..WARMUP {
        host.publish("noop", event(kind)).await.unwrap().unwrap();
    }
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let started = Instant::now();
        host.publish("noop", event(kind)).await.unwrap().unwrap();
        samples.push(started.elapsed());
    }
    percentiles(samples)
}

fn bare_floor(wasm: &[u8]) -> (Duration, Duration) {
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config).unwrap();
    let component = Component::new(&engine, wasm).unwrap();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker.define_unknown_imports_as_traps(&component).unwrap();
    let pre = linker.instantiate_pre(&component).unwrap();
    let indices = event_sink::GuestIndices::new(&pre).unwrap();
    let ev = event("other");
    let run = || {
        let mut store = Store::new(&engine, ());
        let instance = pre.instantiate(&mut store).unwrap();
        let sink = indices.load(&mut store, &instance).unwrap();
        let func = sink.func_publish();
        func.call(&mut store, (&ev,)).unwrap().0.unwrap();
    };
    for _ in 0..WARMUP {
        run();
    }
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let started = Instant::now();
        run();
        samples.push(started.elapsed());
    }
    percentiles(samples)
}

fn main() {
    let dir = plugin_dir();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("plugin host: instantiate + call `noop` ({ITERATIONS} calls after {WARMUP} warm-up)");
    for choice in [AllocatorChoice::Pooling, AllocatorChoice::OnDemand] {
        let cfg: HostConfig = toml::from_str("[plugins.noop.grants]\nlog = true\nkv = true\n")
            .map(|c: HostConfig| HostConfig {
                allocator: choice,
                ..c
            })
            .unwrap();
        let host =
            PluginHost::new(cfg, Arc::new(MemoryKv::default()), Arc::new(NoGateway)).unwrap();
        host.load_dir(&dir).unwrap();
        let label = format!("{:?}", host.allocator());
        rt.block_on(async {
            let plain = host_calls(&host, "other").await;
            print(&format!("host, {label}: instantiate + no-op call"), plain);
            let log = host_calls(&host, "log").await;
            print(&format!("host, {label}: ... + one log call"), log);
            let kv = host_calls(&host, "kv").await;
            print(&format!("host, {label}: ... + one kv get"), kv);
            println!(
                "{:<48} log {:>6.1} µs   kv get {:>6.1} µs",
                format!("host, {label}: guest→host overhead (p50 diff)"),
                us(log.0.saturating_sub(plain.0)),
                us(kv.0.saturating_sub(plain.0)),
            );
        });
    }
    let wasm = std::fs::read(dir.join("noop.wasm")).unwrap();
    print(
        "bare wasmtime (sync, on-demand, no limits): floor",
        bare_floor(&wasm),
    );
    let _ = std::fs::remove_dir_all(&dir);
    resident_with_plugins(&rt, 20);
}

/// Resident memory (VmRSS) of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `n` plugins (copies of `noop` under their own names) loaded into a fresh pooling
/// host, each called once, then idle: the process's resident memory before and after.
fn resident_with_plugins(rt: &tokio::runtime::Runtime, n: usize) {
    let dir = std::env::temp_dir().join(format!("lockgate-bench-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundled = PathBuf::from(env!("LOCKGATE_TEST_PLUGINS_DIR"));
    let manifest = std::fs::read_to_string(bundled.join("noop.toml")).unwrap();
    let mut grants = String::new();
    for i in 0..n {
        let name = format!("noop{i:02}");
        std::fs::copy(bundled.join("noop.wasm"), dir.join(format!("{name}.wasm"))).unwrap();
        std::fs::write(
            dir.join(format!("{name}.toml")),
            manifest.replace("name = \"noop\"", &format!("name = \"{name}\"")),
        )
        .unwrap();
        grants.push_str(&format!("[plugins.{name}.grants]\nlog = true\nkv = true\n"));
    }
    let before = rss_kib();
    let cfg: HostConfig = toml::from_str(&grants).unwrap();
    let host = PluginHost::new(cfg, Arc::new(MemoryKv::default()), Arc::new(NoGateway)).unwrap();
    let loaded = host.load_dir(&dir).unwrap();
    rt.block_on(async {
        for name in &loaded {
            host.publish(name, event("other")).await.unwrap().unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_kib();
    println!(
        "resident memory, {} plugins loaded and idle (pooling): process {:.1} MiB, of which the host and its plugins {:.1} MiB",
        loaded.len(),
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0
    );
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);
}
