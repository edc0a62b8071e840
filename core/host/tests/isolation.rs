//! Fault isolation: each misbehaving test plugin (trap, infinite loop, memory
//! bomb, table bomb, deep recursion, ungranted capability, malformed component) is
//! contained with a clear reason, counted and backed off, while the other
//! plugins keep working.

mod common;

use std::time::Duration;

use common::{config, event, host, plugin_dir};
use lockgate_host::types::{PluginError, PluginInfo};
use lockgate_host::{FaultKind, HostError, PluginHost, PluginState};

const GRANTS: &str = r#"
[plugins.noop.grants]
log = true
kv = true
"#;

fn fault_of(r: Result<Result<(), PluginError>, HostError>) -> lockgate_host::Fault {
    match r {
        Err(HostError::Fault { fault, .. }) => *fault,
        other => panic!("expected a fault, got {other:?}"),
    }
}

async fn noop_still_works(host: &PluginHost) {
    for kind in ["log", "kv", "other"] {
        host.publish("noop", event(kind)).await.unwrap().unwrap();
    }
}

/// Checks one misbehaving plugin: the fault kind, that it is counted and
/// backed off, that the next call is refused without running, and that
/// `noop` is unaffected.
async fn contained(plugin: &str, kind: FaultKind, reason: &str) -> lockgate_host::Fault {
    let dir = plugin_dir(&["noop", plugin]);
    contained_in(&dir, config(GRANTS), plugin, kind, reason).await
}

/// [`contained`] over a prepared plugin directory (`noop` and `plugin`) and
/// configuration.
async fn contained_in(
    dir: &std::path::Path,
    cfg: lockgate_host::HostConfig,
    plugin: &str,
    kind: FaultKind,
    reason: &str,
) -> lockgate_host::Fault {
    let (host, _, _) = host(cfg, dir);
    noop_still_works(&host).await;
    let fault = fault_of(host.publish(plugin, event("boom")).await);
    assert_eq!(fault.kind, kind, "{plugin}: {fault:?}");
    let text = format!("{fault} {:?}", fault.causes);
    assert!(text.contains(reason), "{plugin}: `{reason}` not in {text}");

    // Backed off: the next call is refused without instantiating the plugin.
    match host.publish(plugin, event("again")).await {
        Err(HostError::BackingOff {
            faults: 1,
            retry_in_ms,
            ..
        }) => assert!(retry_in_ms > 50_000),
        other => panic!("{plugin}: expected back-off, got {other:?}"),
    }
    noop_still_works(&host).await;

    let status = host.status_of(plugin).unwrap();
    assert_eq!(status.state, PluginState::Enabled);
    assert_eq!(
        (
            status.stats.calls,
            status.stats.faults,
            status.stats.rejected_backing_off
        ),
        (2, 1, 1)
    );
    assert_eq!(status.stats.consecutive_faults, 1);
    assert!(status.stats.backing_off_until_ms.is_some());
    assert_eq!(status.last_fault.as_ref(), Some(&fault));
    let noop = host.status_of("noop").unwrap();
    assert_eq!(
        (noop.stats.calls, noop.stats.completed, noop.stats.faults),
        (6, 6, 0)
    );
    // The status serializes for the API.
    let json = serde_json::to_value(host.status()).unwrap();
    assert_eq!(json["plugins"].as_array().unwrap().len(), 2);

    // An administrator's reload clears the back-off.
    host.reload(plugin).unwrap();
    assert!(matches!(
        host.publish(plugin, event("boom")).await,
        Err(HostError::Fault { .. })
    ));
    fault
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_trap_with_the_panic_message() {
    let fault = contained("trap", FaultKind::Trap, "unreachable").await;
    let stderr = fault.guest_stderr.expect("the panic message is captured");
    assert!(
        stderr.contains("trap plugin asked to publish boom"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_is_a_trap() {
    let dir = plugin_dir(&["trap"]);
    let (host, _, _) = host(config(GRANTS), &dir);
    let fault = fault_of(host.publish("trap", event("unreachable")).await);
    assert_eq!(fault.kind, FaultKind::Trap);
    assert!(fault.guest_stderr.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_hits_the_deadline() {
    contained("spin", FaultKind::Deadline, "deadline of 300 ms").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_does_not_stall_the_others() {
    let dir = plugin_dir(&["noop", "spin"]);
    let mut cfg = config(GRANTS);
    cfg.limits.deadline_ms = 3_000;
    let (host, _, _) = host(cfg, &dir);
    let spinning = {
        let host = host.clone();
        tokio::spawn(async move { host.publish("spin", event("x")).await })
    };
    while host.status_of("spin").unwrap().stats.calls == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // While `spin` occupies one worker thread, `noop` is served on the other.
    noop_still_works(&host).await;
    assert!(
        !spinning.is_finished(),
        "noop had to wait for spin's deadline"
    );
    assert_eq!(fault_of(spinning.await.unwrap()).kind, FaultKind::Deadline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_hits_the_memory_limit() {
    contained("memory-bomb", FaultKind::MemoryLimit, "growing memory").await;
}

/// The `table-bomb` plugin's description (component and manifest).
const TABLE_BOMB_DESCRIPTION: &str = "Grows a funcref table until something stops it.";
/// What `table-bomb` reports if `table.grow` fails without trapping.
const TABLE_BOMB_NOT_STOPPED: &str = "table.grow returned -1 without trapping";

/// The `table-bomb` test plugin: stable Rust cannot emit `table.grow`, so it
/// is a core module in WebAssembly text, made a component of the
/// `event-bridge` world at test time. `describe` answers normally; `publish`
/// grows a funcref table (declared without a maximum, so only the host's
/// limit can stop it) one element at a time, forever. Should `table.grow`
/// ever fail without trapping, `publish` returns `err(other(..))` instead.
///
/// Core signatures (canonical ABI): `describe: () -> i32` (a pointer to the
/// three-string `plugin-info`); `publish` takes the flattened `event` (kind
/// ptr/len, object-kind ptr/len, object-id discriminant and u64, `at` as s64,
/// payload ptr/len) and returns a pointer to its `result<_, error>`.
fn table_bomb_component() -> Vec<u8> {
    let (name, version) = ("table-bomb", "0.1.0");
    let wat = format!(
        r#"
(module
  (memory (export "memory") 1)
  (table $bomb 1 funcref)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 16) "{name}")
  (data (i32.const 64) "{version}")
  (data (i32.const 128) "{TABLE_BOMB_DESCRIPTION}")
  (data (i32.const 256) "{TABLE_BOMB_NOT_STOPPED}")

  ;; plugin-info at 512: name, version, description (ptr, len each).
  (func (export "lockgate:connector/plugin@0.1.0#describe") (result i32)
    (i32.store (i32.const 512) (i32.const 16))
    (i32.store (i32.const 516) (i32.const {name_len}))
    (i32.store (i32.const 520) (i32.const 64))
    (i32.store (i32.const 524) (i32.const {version_len}))
    (i32.store (i32.const 528) (i32.const 128))
    (i32.store (i32.const 532) (i32.const {description_len}))
    (i32.const 512))

  (func (export "lockgate:connector/event-sink@0.1.0#publish")
    (param $kind i32) (param $kind_len i32)
    (param $object_kind i32) (param $object_kind_len i32)
    (param $has_object_id i32) (param $object_id i64)
    (param $at i64)
    (param $payload i32) (param $payload_len i32)
    (result i32)
    (block $failed
      (loop $grow
        (br_if $failed
          (i32.eq (table.grow $bomb (ref.null func) (i32.const 1)) (i32.const -1)))
        (br $grow)))
    ;; result<_, error> at 544: err (1), error::other (4) with its string.
    (i32.store8 (i32.const 544) (i32.const 1))
    (i32.store8 (i32.const 548) (i32.const 4))
    (i32.store (i32.const 552) (i32.const 256))
    (i32.store (i32.const 556) (i32.const {not_stopped_len}))
    (i32.const 544))

  ;; handle-command (unused here): result<string, error> at 576: err (1), error::other (4).
  (func (export "lockgate:connector/event-sink@0.1.0#handle-command")
    (param $topic i32) (param $topic_len i32)
    (param $payload i32) (param $payload_len i32)
    (result i32)
    (i32.store8 (i32.const 576) (i32.const 1))
    (i32.store8 (i32.const 580) (i32.const 4))
    (i32.store (i32.const 584) (i32.const 256))
    (i32.store (i32.const 588) (i32.const {not_stopped_len}))
    (i32.const 576))

  ;; A bump allocator for the host's arguments.
  (func (export "cabi_realloc")
    (param $old i32) (param $old_size i32) (param $align i32) (param $size i32)
    (result i32)
    (local $ptr i32) (local $pages i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
    (local.set $pages
      (i32.shr_u (i32.add (global.get $heap) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then unreachable))))
    (if (local.get $old)
      (then
        (memory.copy (local.get $ptr) (local.get $old)
          (select (local.get $old_size) (local.get $size)
            (i32.lt_u (local.get $old_size) (local.get $size))))))
    (local.get $ptr))
)
"#,
        name_len = name.len(),
        version_len = version.len(),
        description_len = TABLE_BOMB_DESCRIPTION.len(),
        not_stopped_len = TABLE_BOMB_NOT_STOPPED.len(),
    );
    common::component_from_wat(&wat, "event-bridge")
}

/// Writes `table-bomb.wasm` and its manifest into `dir`.
fn write_table_bomb(dir: &std::path::Path) {
    let manifest = format!(
        "# Manifest shipped beside the component: table-bomb.toml next to table-bomb.wasm.\n\
         name = \"table-bomb\"\n\
         version = \"0.1.0\"\n\
         world = \"event-bridge\"\n\
         description = \"{TABLE_BOMB_DESCRIPTION}\"\n\
         \n\
         [capabilities]\n"
    );
    common::write_plugin(dir, "table-bomb", &table_bomb_component(), &manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_bomb_hits_the_table_limit() {
    let dir = plugin_dir(&["noop"]);
    write_table_bomb(&dir);
    let mut cfg = config(GRANTS);
    cfg.limits.table_elements = 1_000;
    let fault = contained_in(
        &dir,
        cfg,
        "table-bomb",
        FaultKind::TableLimit,
        "growing table to 1001 elements",
    )
    .await;
    assert!(
        fault.message.starts_with("table limit exceeded"),
        "{fault:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_table_limit_is_what_stops_a_table_bomb() {
    let dir = plugin_dir(&[]);
    write_table_bomb(&dir);
    for limit in [100, 2_500] {
        let mut cfg = config(GRANTS);
        cfg.limits.table_elements = limit;
        let (host, _, _) = host(cfg, &dir);
        // The component is well-formed: only `publish` misbehaves.
        assert_eq!(
            host.describe("table-bomb").await.unwrap(),
            PluginInfo {
                name: "table-bomb".into(),
                version: "0.1.0".into(),
                description: TABLE_BOMB_DESCRIPTION.into(),
            }
        );
        let fault = fault_of(host.publish("table-bomb", event("boom")).await);
        assert_eq!(fault.kind, FaultKind::TableLimit, "{fault:?}");
        // The table starts with one element and grows by one: it is stopped
        // exactly when it would exceed the configured limit.
        let expected = format!("growing table to {} elements", limit + 1);
        assert!(fault.message.contains(&expected), "{expected}: {fault:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_overflows_the_stack() {
    contained("recursion", FaultKind::StackOverflow, "stack").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ungranted_import_is_refused_at_load() {
    let dir = plugin_dir(&["noop", "ungranted"]);
    let (host, _, gw) = host(config(GRANTS), &dir);
    let status = host.status_of("ungranted").unwrap();
    match &status.state {
        PluginState::Refused { reason } => {
            assert!(
                reason.contains("lockgate:host/gateway@0.1.0") && reason.contains("not granted"),
                "{reason}"
            )
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    assert_eq!(status.ungranted_requests, ["gateway:emit-event"]);
    match host.publish("ungranted", event("x")).await {
        Err(HostError::NotLoaded { reason, .. }) => assert!(reason.contains("not granted")),
        other => panic!("expected NotLoaded, got {other:?}"),
    }
    assert!(gw.events.lock().unwrap().is_empty());
    noop_still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ungranted_operation_is_denied_at_call_time() {
    let grants = format!("{GRANTS}\n[plugins.ungranted.grants]\ngateway = [\"read-keys\"]\n");
    let dir = plugin_dir(&["ungranted"]);
    let (host, _, gw) = host(config(&grants), &dir);
    match host.publish("ungranted", event("x")).await {
        Ok(Err(PluginError::Denied(reason))) => assert!(reason.contains("emit-event"), "{reason}"),
        other => panic!("expected a denial, got {other:?}"),
    }
    assert!(gw.events.lock().unwrap().is_empty());
    // An expected error is not a fault: no back-off.
    let s = host.status_of("ungranted").unwrap().stats;
    assert_eq!(
        (
            s.completed,
            s.expected_errors,
            s.faults,
            s.consecutive_faults
        ),
        (1, 1, 0, 0)
    );

    // Granted, the same call goes through to the gateway.
    let grants = format!("{GRANTS}\n[plugins.ungranted.grants]\ngateway = [\"emit-event\"]\n");
    let (host, _, gw) = host_with(&grants, &dir);
    host.publish("ungranted", event("key.lost"))
        .await
        .unwrap()
        .unwrap();
    let events = gw.events.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].0.as_str(), events[0].1.kind.as_str()),
        ("ungranted", "key.lost")
    );
}

fn host_with(
    grants: &str,
    dir: &std::path::Path,
) -> (
    PluginHost,
    std::sync::Arc<lockgate_host::MemoryKv>,
    std::sync::Arc<common::RecordingGateway>,
) {
    host(config(grants), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_component_fails_to_load_alone() {
    let dir = plugin_dir(&["noop", "malformed"]);
    let (host, _, _) = host(config(GRANTS), &dir);
    match host.status_of("malformed").unwrap().state {
        PluginState::Failed { error, .. } => {
            assert!(error.contains("invalid component"), "{error}")
        }
        other => panic!("expected failure, got {other:?}"),
    }
    assert!(matches!(
        host.publish("malformed", event("x")).await,
        Err(HostError::NotLoaded { .. })
    ));
    noop_still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_off_grows_and_resets_after_success() {
    let dir = plugin_dir(&["trap"]);
    let mut cfg = config(GRANTS);
    cfg.backoff.base_ms = 40;
    let (host, _, _) = host(cfg, &dir);
    for n in 1..=3u32 {
        let _ = fault_of(host.publish("trap", event("x")).await);
        let s = host.status_of("trap").unwrap().stats;
        assert_eq!(s.consecutive_faults, n);
        assert!(matches!(
            host.publish("trap", event("x")).await,
            Err(HostError::BackingOff { .. })
        ));
        tokio::time::sleep(Duration::from_millis(40 << (n - 1))).await;
    }
    // `describe` works (the plugin only traps in publish): a success resets the count.
    assert_eq!(host.describe("trap").await.unwrap().name, "trap");
    let s = host.status_of("trap").unwrap().stats;
    assert_eq!(
        (s.consecutive_faults, s.faults, s.backing_off_until_ms),
        (0, 3, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licence_is_judged_at_every_call_and_configuration_can_disable_a_plugin() {
    let dir = plugin_dir(&["noop", "trap"]);
    // `noop` names a licence feature; `trap` is disabled in the configuration.
    let manifest = dir.join("noop.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            "[capabilities]",
            "licence-feature = \"connector.test\"\n\n[capabilities]",
        ),
    )
    .unwrap();
    let cfg = config(&format!("{GRANTS}\n[plugins.trap]\nenabled = false\n"));
    let (host, _, gw) = host(cfg, &dir);
    let state = |n| host.status_of(n).unwrap().state;
    // Loaded whatever the licence says: the licence is not judged once at start-up.
    assert_eq!(state("noop"), PluginState::Enabled);
    assert_eq!(
        host.status_of("noop").unwrap().licence_feature.as_deref(),
        Some("connector.test")
    );
    assert_eq!(
        state("trap"),
        PluginState::Disabled {
            reason: "disabled in configuration".into()
        }
    );
    // Without the feature every call is refused before the plugin runs.
    let calls_before = host.status_of("noop").unwrap().stats.calls;
    match host.publish("noop", event("x")).await {
        Err(HostError::Unlicensed {
            feature, reason, ..
        }) => {
            assert_eq!(feature, "connector.test");
            assert!(reason.contains("does not include"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(host.status_of("noop").unwrap().stats.calls, calls_before);
    // A licence installed later takes effect at the next call, without a reload...
    gw.licensed.lock().unwrap().push("connector.test".into());
    noop_still_works(&host).await;
    // ...and one withdrawn stops the next call.
    gw.licensed.lock().unwrap().clear();
    assert!(matches!(
        host.publish("noop", event("x")).await,
        Err(HostError::Unlicensed { .. })
    ));
    assert!(gw.licence_checks.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    // A plugin without a licence feature is never asked about.
    let checks = gw.licence_checks.load(std::sync::atomic::Ordering::SeqCst);
    let _ = host.publish("trap", event("x")).await;
    assert_eq!(
        gw.licence_checks.load(std::sync::atomic::Ordering::SeqCst),
        checks
    );

    gw.licensed.lock().unwrap().push("connector.test".into());
    host.disable("noop", "maintenance").unwrap();
    assert!(matches!(
        host.publish("noop", event("x")).await,
        Err(HostError::Disabled { .. })
    ));
    host.enable("noop").unwrap();
    noop_still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_outside_the_world_are_unsupported() {
    let dir = plugin_dir(&["noop"]);
    let (host, _, _) = host(config(GRANTS), &dir);
    match host.sync("noop", true, false).await {
        Err(HostError::Unsupported {
            world: "event-bridge",
            call: "sync",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        host.publish("nobody", event("x")).await,
        Err(HostError::NotFound(_))
    ));
}
