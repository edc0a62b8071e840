//! `GET /api/v1/plugins` and enable/disable/reload against a real plugin host started from a
//! `[plugins]` configuration (the bundled `template` plugin and a licence-gated copy of `noop`).

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::Method;
use lockgate::config::PluginsConfig;
use lockgate::plugins::HostAdmin;
use lockgate_api::{ApiConfig, AppState, licence::LicenceConfig};
use lockgate_tests::*;
use serde_json::{Value, json};

/// A plugin directory with the bundled `template` and `noop` (renamed `gated`, requiring the
/// `ldap_integration` licence feature).
fn plugin_dir() -> PathBuf {
    let bundled = PathBuf::from(lockgate_host::TEST_PLUGINS_DIR);
    let dir = std::env::temp_dir().join(format!(
        "lockgate-plugins-api-{}-{}",
        std::process::id(),
        hex::encode(rand_bytes())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for ext in ["wasm", "toml"] {
        std::fs::copy(
            bundled.join(format!("template.{ext}")),
            dir.join(format!("template.{ext}")),
        )
        .unwrap_or_else(|e| panic!("bundled template.{ext}: {e}"));
    }
    std::fs::copy(bundled.join("noop.wasm"), dir.join("gated.wasm")).unwrap();
    let noop = std::fs::read_to_string(bundled.join("noop.toml")).unwrap();
    let gated = noop.replace("name = \"noop\"", "name = \"gated\"").replace(
        "[capabilities]",
        "licence-feature = \"ldap_integration\"\n\n[capabilities]",
    );
    assert_ne!(gated, noop);
    std::fs::write(dir.join("gated.toml"), gated).unwrap();
    dir
}

fn rand_bytes() -> [u8; 6] {
    let mut b = [0u8; 6];
    getrandom::getrandom(&mut b).unwrap();
    b
}

fn plugin<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {list}"))
}

on_both!(lists_and_toggles_plugins, |app: TestApp| async move {
    // Without a plugin host the list is empty and no plugin exists.
    let empty = app.get("/api/v1/plugins").await.expect(200).body;
    assert_eq!(empty["items"], json!([]));
    app.call(
        Method::POST,
        "/api/v1/plugins/template/disable",
        Some(&app.token),
        None,
    )
    .await
    .expect(404);

    let dir = plugin_dir();
    let cfg: PluginsConfig = toml::from_str(&format!(
        r#"
        load_bundled = false
        directory = "{}"
        [plugins.instances.template]
        grants = {{ log = true, config = true, clock = true, kv = true, gateway = ["upsert-employees"] }}
        config = {{ domain = "Head office" }}
        [plugins.instances.gated]
        grants = {{ log = true, kv = true }}
        "#,
        dir.display()
    )
    .replace("[plugins.instances", "[instances"))
    .unwrap();
    let licence = LicenceConfig {
        enforce: true,
        ..LicenceConfig::default()
    };
    let host = lockgate::plugins::start(&cfg, &app.store, &licence, None, None)
        .await
        .unwrap()
        .expect("a plugin host");
    let mut app = app;
    app.router = lockgate_api::router(
        AppState::new(
            app.store.clone(),
            ApiConfig {
                licence: licence.clone(),
                ..ApiConfig::default()
            },
        )
        .with_plugins(Arc::new(HostAdmin(host.clone()))),
    );

    let list = app.get("/api/v1/plugins").await.expect(200).body;
    let t = plugin(&list, "template");
    assert_eq!(t["state"], "enabled", "{t}");
    assert_eq!(t["version"], "0.1.0");
    assert_eq!(t["world"], "directory-sync");
    assert_eq!(t["grants"]["kv"], true);
    assert_eq!(t["grants"]["gateway"], json!(["upsert-employees"]));
    assert_eq!(t["stats"]["calls"], 0);
    assert!(t["last_error"].is_null());
    assert!(
        t["licence_feature"].is_null() && t["licensed"].is_null(),
        "{t}"
    );
    // The licence (enforced, none installed) lacks the feature: the plugin is loaded, the
    // list says the caller's system does not hold its feature, and every call is refused
    // before the plugin runs (the licence is judged per call, not at start-up).
    let g = plugin(&list, "gated");
    assert_eq!(g["state"], "enabled", "{g}");
    assert_eq!(g["licence_feature"], "ldap_integration", "{g}");
    assert_eq!(g["licensed"], false, "{g}");
    match host
        .publish(
            "gated",
            lockgate_host::types::Event {
                kind: "key.lost".into(),
                object_kind: "key".into(),
                object_id: Some(1),
                at: 0,
                payload: "{}".into(),
            },
        )
        .await
    {
        Err(lockgate_host::HostError::Unlicensed { feature, .. }) => {
            assert_eq!(feature, "ldap_integration")
        }
        other => panic!("an unlicensed plugin was called: {other:?}"),
    }

    let off = app
        .post("/api/v1/plugins/template/disable", json!({}))
        .await
        .expect(200)
        .body;
    assert_eq!(off["state"], "disabled");
    assert!(off["reason"].as_str().unwrap().contains("administrator"));
    let list = app.get("/api/v1/plugins").await.expect(200).body;
    assert_eq!(plugin(&list, "template")["state"], "disabled");

    let on = app
        .post("/api/v1/plugins/template/enable", json!({}))
        .await
        .expect(200)
        .body;
    assert_eq!(on["state"], "enabled", "{on}");
    let list = app.get("/api/v1/plugins").await.expect(200).body;
    assert_eq!(plugin(&list, "template")["state"], "enabled");
    let again = app
        .post("/api/v1/plugins/template/reload", json!({}))
        .await
        .expect(200)
        .body;
    assert_eq!(again["state"], "enabled");
    // Enabling (a reload) does not lift the licence.
    app.post("/api/v1/plugins/gated/enable", json!({}))
        .await
        .expect(200);
    let list = app.get("/api/v1/plugins").await.expect(200).body;
    assert_eq!(plugin(&list, "gated")["licensed"], false);
    app.post("/api/v1/plugins/nope/enable", json!({}))
        .await
        .expect(404);

    // Reading needs system_settings at View, changing at Full.
    let (_, viewer) = app
        .admin_with("V1", json!({ "system_settings": "view" }), &[])
        .await;
    app.call(Method::GET, "/api/v1/plugins", Some(&viewer), None)
        .await
        .expect(200);
    app.call(
        Method::POST,
        "/api/v1/plugins/template/disable",
        Some(&viewer),
        None,
    )
    .await
    .expect(403);
    let (_, nobody) = app.admin_with("N1", json!({}), &[]).await;
    app.call(Method::GET, "/api/v1/plugins", Some(&nobody), None)
        .await
        .expect(403);
    let _ = std::fs::remove_dir_all(dir);
});

on_both!(documented_in_openapi, |app: TestApp| async move {
    let doc = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .expect(200)
        .body;
    assert!(doc["paths"]["/api/v1/plugins"]["get"]["operationId"].is_string());
    for action in ["enable", "disable", "reload"] {
        assert!(
            doc["paths"][format!("/api/v1/plugins/{{name}}/{action}")]["post"]["operationId"]
                .is_string(),
            "{action}"
        );
    }
});
