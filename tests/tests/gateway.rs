//! The plugins' `gateway` capability over the real core (`lockgate::gateway::CoreGateway`):
//! the bundled `template` directory-sync plugin upserts employees through it end to end, and
//! each operation validates its arguments and answers what the store holds.

use std::path::PathBuf;
use std::sync::Arc;

use lockgate::{gateway::CoreGateway, plugins::DbKv};
use lockgate_host::{
    Gateway, HostConfig, PluginHost,
    types::{Event, Person, PluginError},
};
use lockgate_tests::*;
use serde_json::json;

fn person(identifier: &str, surname: &str) -> Person {
    Person {
        identifier: identifier.into(),
        first_name: "Test".into(),
        surname: surname.into(),
        fields: vec![("department".into(), "Facilities".into())],
        active: true,
    }
}

async fn employees(app: &TestApp) -> Vec<(String, String)> {
    let r = app
        .get("/api/v1/employees?sort=id&limit=100&with_body=true")
        .await
        .expect(200);
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| {
            (
                p["body"]["identifier"].as_str().unwrap_or("").to_string(),
                p["body"]["surname"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

on_both!(
    template_plugin_syncs_through_the_core,
    |app: TestApp| async move {
        let app = app;
        let domain = app
            .get(&format!("/api/v1/domains/{}", app.default_domain))
            .await
            .expect(200)
            .body["name"]
            .as_str()
            .expect("domain name")
            .to_string();
        let dir = std::env::temp_dir().join(format!(
            "lockgate-gateway-{}-{}",
            std::process::id(),
            app.system_id
        ));
        std::fs::create_dir_all(&dir).expect("plugin dir");
        let bundled = PathBuf::from(lockgate_host::BUNDLED_PLUGINS_DIR);
        for ext in ["wasm", "toml"] {
            std::fs::copy(
                bundled.join(format!("template.{ext}")),
                dir.join(format!("template.{ext}")),
            )
            .expect("bundled template plugin");
        }
        let cfg: HostConfig = toml::from_str(&format!(
            r#"
[plugins.template]
grants = {{ log = true, config = true, clock = true, kv = true, gateway = ["upsert-employees"] }}
config = {{ domain = "{domain}", persons = [
    {{ identifier = "E-1", first_name = "Anna", surname = "Berg", email = "anna@example.com" }},
    {{ identifier = "E-2", first_name = "Bo", surname = "Lind" }},
    {{ identifier = "E-3", first_name = "Cai", surname = "Moe", active = false }},
] }}
"#
        ))
        .expect("host config");
        let host = PluginHost::new(
            cfg,
            Arc::new(DbKv::new(app.store.clone())),
            Arc::new(CoreGateway::new(app.store.clone())),
        )
        .expect("host");
        host.load_dir(&dir).expect("load");
        let report = host
            .sync("template", true, false)
            .await
            .expect("call")
            .expect("sync");
        assert_eq!((report.staged, report.created, report.updated), (3, 2, 0));
        assert_eq!(
            employees(&app).await,
            [("E-1".into(), "Berg".into()), ("E-2".into(), "Lind".into())],
            "the inactive person is not created"
        );
        // A second run changes nothing.
        let report = host
            .sync("template", true, false)
            .await
            .expect("call")
            .expect("sync");
        assert_eq!((report.created, report.updated), (0, 0));
        // The plugin's writes are events under its name.
        let anna = app.get("/api/v1/employees?q=Berg").await.expect(200).body["items"][0]["id"]
            .as_i64()
            .expect("id");
        let events = app
            .get(&format!("/api/v1/employees/{anna}/events"))
            .await
            .expect(200);
        assert!(
            events.body["items"][0]["actor"]
                .as_str()
                .unwrap_or("")
                .contains("template"),
            "{}",
            events.body
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
);

on_both!(
    gateway_operations_validate_and_answer,
    |app: TestApp| async move {
        let app = app;
        let gw = CoreGateway::new(app.store.clone());
        let domain = app
            .get(&format!("/api/v1/domains/{}", app.default_domain))
            .await
            .expect(200)
            .body["name"]
            .as_str()
            .expect("domain name")
            .to_string();
        // Unknown domain, invalid person (named by index): nothing written.
        let e = gw
            .upsert_employees("p", "No such domain", vec![person("E-9", "Nine")])
            .await
            .unwrap_err();
        assert!(
            matches!(e, PluginError::Invalid(ref m) if m.contains("No such domain")),
            "{e:?}"
        );
        let e = gw
            .upsert_employees("p", &domain, vec![person("E-1", "One"), person("E-2", "")])
            .await
            .unwrap_err();
        assert!(
            matches!(e, PluginError::Invalid(ref m) if m.starts_with("persons[1]")),
            "{e:?}"
        );
        assert!(employees(&app).await.is_empty(), "all or nothing");
        let r = gw
            .upsert_employees(
                "p",
                &domain,
                vec![person("E-1", "One"), person("E-2", "Two")],
            )
            .await
            .expect("upsert");
        assert_eq!((r.created, r.updated, r.unchanged), (2, 0, 0));
        let r = gw
            .upsert_employees(
                "p",
                &domain,
                vec![person("E-1", "Uno"), person("E-2", "Two")],
            )
            .await
            .expect("upsert");
        assert_eq!((r.created, r.updated, r.unchanged), (0, 1, 1));

        // Keys, by holder identifier; cylinders by prefix; pending jobs of a key.
        let holder = app.get("/api/v1/employees?q=Uno").await.expect(200).body["items"][0]["id"]
            .as_i64()
            .expect("id");
        let group = app.key_group("Dynamic", "dynamic").await;
        let cylinder = app
        .post("/api/v1/cylinders", json!({ "name": "Main door", "marking": "C-1", "side_a": "electronic", "firmware": "10.2", "access_list": { "key_groups": [{ "key_group_id": group }] } }))
        .await
        .expect(201)
        .id();
        let key = app
        .post("/api/v1/keys", json!({ "name": "Dyn", "marking": "D-1", "type": "dynamic", "generation": "2", "firmware": "12.7", "key_group_id": group, "status": "handed_out", "holder_id": holder, "cylinder_ids": [cylinder] }))
        .await
        .expect(201)
        .id();
        app.post("/api/v1/keys", json!({ "name": "Spare", "marking": "D-2", "type": "dynamic", "generation": "2", "firmware": "12.7", "key_group_id": group }))
        .await
        .expect(201);
        let keys = gw.read_keys("p", Some("E-1".into())).await.expect("keys");
        assert_eq!(keys.len(), 1);
        assert_eq!(
            (keys[0].id, keys[0].status.as_str()),
            (key.unsigned_abs(), "handed-out")
        );
        assert_eq!(gw.read_keys("p", None).await.expect("keys").len(), 2);
        // The holder is matched exactly (the lookup goes through the folded identifier).
        for other in ["e-1", "E-1 ", "nobody"] {
            assert!(
                gw.read_keys("p", Some(other.into()))
                    .await
                    .expect("keys")
                    .is_empty(),
                "{other}"
            );
        }
        let all = gw.read_keys("p", None).await.expect("keys");
        assert_eq!(
            all.iter().map(|k| k.holder.as_deref()).collect::<Vec<_>>(),
            [Some("E-1"), None]
        );
        let cylinders = gw.read_cylinders("p", "main").await.expect("cylinders");
        assert_eq!(cylinders.len(), 1);
        assert!(
            gw.read_cylinders("p", "zzz")
                .await
                .expect("cylinders")
                .is_empty()
        );
        let jobs = gw
            .pending_jobs("p", key.unsigned_abs())
            .await
            .expect("jobs");
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            (jobs[0].kind.as_str(), jobs[0].state.as_str()),
            ("remote-update", "created")
        );
        assert!(matches!(
            gw.pending_jobs("p", 999_999).await.unwrap_err(),
            PluginError::NotFound(_)
        ));

        // Events: validated, then recorded under the plugin's name.
        let event = |kind: &str, payload: &str| Event {
            kind: kind.into(),
            object_kind: "key".into(),
            object_id: Some(key.unsigned_abs()),
            at: 0,
            payload: payload.into(),
        };
        assert!(matches!(
            gw.emit_event("bms", event("door.forced", "not json"))
                .await
                .unwrap_err(),
            PluginError::Invalid(_)
        ));
        assert!(matches!(
            gw.emit_event("bms", event("bad kind!", "{}"))
                .await
                .unwrap_err(),
            PluginError::Invalid(_)
        ));
        gw.emit_event("bms", event("door.forced", r#"{"door":"C-1"}"#))
            .await
            .expect("event");
        let events = app
            .get(&format!("/api/v1/keys/{key}/events"))
            .await
            .expect(200);
        assert!(
            events.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|e| e["action"] == "plugin.door.forced"),
            "{}",
            events.body
        );
    }
);
