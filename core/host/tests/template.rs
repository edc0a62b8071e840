//! The template plugin loads, syncs through the gateway with its grants, and
//! keeps its watermark in its own kv scope; the engine works with both
//! allocators and the compile cache is hit on the second start.

mod common;

use common::{config, host, plugin_dir};
use lockgate_host::{Allocator, AllocatorChoice, CacheOutcome, KvStore, PluginState, World};

const TEMPLATE_GRANTS: &str = r#"
[plugins.template]
grants = { log = true, config = true, clock = true, kv = true, gateway = ["upsert-employees"] }
config = { domain = "Head office", persons = [
    { identifier = "E-1", first_name = "Anna", surname = "Berg", email = "anna@example.com" },
    { identifier = "E-2", first_name = "Bo", surname = "Lind", active = false },
] }

[plugins.noop.grants]
log = true
kv = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_plugin_loads_and_syncs() {
    let dir = plugin_dir(&["template"]);
    let (host, kv, gw) = host(config(TEMPLATE_GRANTS), &dir);
    let status = host.status_of("template").unwrap();
    assert_eq!(status.state, PluginState::Enabled, "{status:?}");
    assert_eq!(status.world, Some(World::DirectorySync));
    assert!(status.ungranted_requests.is_empty());
    assert!(
        status
            .imports
            .iter()
            .any(|i| i == "lockgate:host/gateway@0.1.0")
    );

    let info = host.describe("template").await.unwrap();
    assert_eq!(info.name, "template");

    let report = host.sync("template", true, false).await.unwrap().unwrap();
    assert_eq!((report.staged, report.created), (2, 2));
    let upserts = gw.upserts.lock().unwrap().clone();
    assert_eq!(upserts.len(), 1);
    let (plugin, domain, persons) = &upserts[0];
    assert_eq!(
        (plugin.as_str(), domain.as_str()),
        ("template", "Head office")
    );
    assert!(
        persons[0]
            .fields
            .contains(&("email".to_owned(), "anna@example.com".to_owned()))
    );
    assert!(!persons[1].active);
    let watermark = kv
        .get("template", "last-sync")
        .await
        .unwrap()
        .expect("watermark stored");
    assert_eq!(watermark.len(), 8);
    assert_eq!(
        kv.get("noop", "last-sync").await.unwrap(),
        None,
        "kv is scoped by plugin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_allocators_run_plugins() {
    let dir = plugin_dir(&["noop"]);
    for (choice, expected) in [
        (AllocatorChoice::OnDemand, Allocator::OnDemand),
        (AllocatorChoice::Pooling, Allocator::Pooling),
    ] {
        let mut cfg = config(TEMPLATE_GRANTS);
        cfg.allocator = choice;
        let (host, _, _) = host(cfg, &dir);
        assert_eq!(host.allocator(), expected);
        for _ in 0..20 {
            host.publish("noop", common::event("kv"))
                .await
                .unwrap()
                .unwrap();
        }
        let stats = host.status_of("noop").unwrap().stats;
        assert_eq!(stats.completed, 20);
        assert!(stats.latency_p50_us.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompiled_components_are_cached_on_disk() {
    let dir = plugin_dir(&["noop"]);
    let mut cfg = config(TEMPLATE_GRANTS);
    cfg.cache_dir =
        Some(std::env::temp_dir().join(format!("lockgate-cache-test-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(cfg.cache_dir.as_ref().unwrap());
    let (first, _, _) = host(cfg.clone(), &dir);
    assert_eq!(
        first.status_of("noop").unwrap().cache,
        Some(CacheOutcome::Miss)
    );
    let (second, _, _) = host(cfg.clone(), &dir);
    assert_eq!(
        second.status_of("noop").unwrap().cache,
        Some(CacheOutcome::Hit)
    );
    second
        .publish("noop", common::event("log"))
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(cfg.cache_dir.as_ref().unwrap());
}
