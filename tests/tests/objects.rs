//! Every object kind through the API: create, read, patch, delete, with the domain's
//! validation rules, references, uniqueness, optimistic concurrency and bad input.

use lockgate_tests::*;
use serde_json::{Value, json};

/// Fixture: a key group of each user-key kind, a cylinder group, a cylinder, a person.
struct Fixture {
    normal_group: i64,
    dynamic_group: i64,
    cylinder_group: i64,
    cylinder: i64,
    person: i64,
}

async fn fixture(app: &TestApp) -> Fixture {
    let normal_group = app.key_group("Staff", "normal").await;
    let dynamic_group = app.key_group("Dynamic", "dynamic").await;
    let cylinder_group = app
        .post("/api/v1/cylinder-groups", json!({ "name": "Floor 1" }))
        .await
        .expect(201)
        .id();
    let cylinder = app
        .post("/api/v1/cylinders", json!({ "name": "Main door", "marking": "C-001", "side_a": "electronic", "firmware": "10.2", "cylinder_group_id": cylinder_group }))
        .await
        .expect(201)
        .id();
    let person = app
        .post(
            "/api/v1/employees",
            json!({ "first_name": "Anna", "surname": "Berg", "identifier": "E-1" }),
        )
        .await
        .expect(201)
        .id();
    Fixture {
        normal_group,
        dynamic_group,
        cylinder_group,
        cylinder,
        person,
    }
}

fn key(marking: &str, ty: &str, group: i64) -> Value {
    json!({ "name": format!("Key {marking}"), "marking": marking, "type": ty, "generation": "2", "firmware": "12.7.0", "key_group_id": group })
}

on_both!(every_kind_round_trips, |app: TestApp| async move {
    let f = fixture(&app).await;
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "domains",
            json!({ "name": "Lab" }),
            json!({ "description": "research wing" }),
        ),
        (
            "visitors",
            json!({ "first_name": "Vic", "surname": "Tor" }),
            json!({ "organisation": "ACME" }),
        ),
        (
            "keys",
            key("K-100", "quartz", f.normal_group),
            json!({ "second_marking": "spare" }),
        ),
        (
            "key-groups",
            json!({ "name": "Cleaners", "kind": "normal" }),
            json!({ "tags": ["night"] }),
        ),
        (
            "cylinders",
            json!({ "name": "Side door", "marking": "C-002", "side_a": "electronic", "side_b": "mechanical" }),
            json!({ "location": "Building B" }),
        ),
        (
            "cylinder-groups",
            json!({ "name": "Floor 2" }),
            json!({ "revalidation_interval_hours": 168 }),
        ),
        (
            "access-profiles",
            json!({ "name": "Cleaning", "cylinder_ids": [f.cylinder], "cylinder_group_ids": [f.cylinder_group] }),
            json!({ "description": "evening crew" }),
        ),
        (
            "temporary-access-groups",
            json!({ "name": "Fair week", "start": "2026-12-01T00:00:00Z", "end": "2026-12-08T00:00:00Z", "cylinder_ids": [f.cylinder] }),
            json!({ "end": "2026-12-09T00:00:00Z" }),
        ),
        (
            "schedule-templates",
            json!({ "name": "Office hours", "schedule": { "type": "basic", "days": { "monday": { "from": "07:00", "to": "18:00" } } } }),
            json!({ "description": "weekdays" }),
        ),
        (
            "remote-pds",
            json!({ "name": "Wall PD lobby", "marking": "PD-1", "type": "wall_gen2", "mac": "00:1A:2B:3C:4D:5E", "settings": { "log_level": "detailed" } }),
            json!({ "settings": { "heartbeat_minutes": 30 } }),
        ),
        (
            "roles",
            json!({ "name": "Viewer", "permissions": { "key": "list" } }),
            json!({ "description": "read-only" }),
        ),
    ];
    for (coll, body, patch) in cases {
        let created = app.post(&format!("/api/v1/{coll}"), body).await.expect(201);
        let id = created.id();
        assert_eq!(created.headers["location"], format!("/api/v1/{coll}/{id}"));
        let got = app.get(&format!("/api/v1/{coll}/{id}")).await.expect(200);
        assert_eq!(got.body["version"], 1, "{coll}");
        let patched = app
            .patch(&format!("/api/v1/{coll}/{id}"), patch.clone())
            .await
            .expect(200);
        assert_eq!(patched.body["version"], 2, "{coll}");
        for (k, v) in patch.as_object().expect("object") {
            if let Some(inner) = v.as_object() {
                for (ik, iv) in inner {
                    assert_eq!(&patched.body[k][ik], iv, "{coll}.{k}.{ik}");
                }
            } else {
                assert_eq!(&patched.body[k], v, "{coll}.{k}");
            }
        }
        let listed = app
            .get(&format!("/api/v1/{coll}?limit=1000"))
            .await
            .expect(200);
        assert!(
            listed.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|i| i["id"] == id),
            "{coll} listed"
        );
        let events = app
            .get(&format!("/api/v1/{coll}/{id}/events"))
            .await
            .expect(200);
        assert_eq!(
            events.body["items"].as_array().expect("items").len(),
            2,
            "{coll} events"
        );
        app.delete(&format!("/api/v1/{coll}/{id}"))
            .await
            .expect(204);
        app.get(&format!("/api/v1/{coll}/{id}")).await.expect(404);
    }
});

on_both!(key_rules_are_enforced, |app: TestApp| async move {
    let f = fixture(&app).await;
    // (body, field named in the 422)
    let mut mech_in_group = key("K-1", "mechanical", f.normal_group);
    mech_in_group["generation"] = Value::Null;
    mech_in_group["firmware"] = Value::Null;
    let mut normal_connect = key("K-2", "normal", f.normal_group);
    normal_connect["connect"] = json!(true);
    let mut gen1_fw12 = key("K-3", "quartz", f.normal_group);
    gen1_fw12["generation"] = json!("1");
    let mut schedule_on_normal = key("K-4", "normal", f.normal_group);
    schedule_on_normal["schedule"] = json!({ "type": "basic", "days": {} });
    let mut multi_on_fw5 = key("K-5", "quartz", f.normal_group);
    multi_on_fw5["generation"] = json!("1");
    multi_on_fw5["firmware"] = json!("5.2");
    multi_on_fw5["schedule"] = json!({ "type": "multiple_time_windows", "windows": [] });
    let mut pin_not_connect = key("K-6", "quartz", f.normal_group);
    pin_not_connect["validity"] = json!({ "pin": { "interval_minutes": 60 } });
    let mut pin_too_long = key("K-7", "dynamic", f.dynamic_group);
    pin_too_long["connect"] = json!(true);
    pin_too_long["firmware"] = json!("16.1");
    pin_too_long["validity"] = json!({ "pin": { "interval_minutes": 45 * 24 * 60 + 1 } });
    let dynamic_in_normal_group = key("K-8", "dynamic", f.normal_group);
    let mut explicit_on_quartz = key("K-9", "quartz", f.normal_group);
    explicit_on_quartz["cylinder_ids"] = json!([f.cylinder]);
    let mut handed_out_no_holder = key("K-10", "quartz", f.normal_group);
    handed_out_no_holder["status"] = json!("handed_out");
    let mut holder_not_person = key("K-11", "quartz", f.normal_group);
    holder_not_person["holder_id"] = json!(f.cylinder);
    holder_not_person["status"] = json!("handed_out");
    let mut dates_on_normal = key("K-12", "normal", f.normal_group);
    dates_on_normal["validity"] = json!({ "activation": { "mode": "between", "from": "2026-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z" } });
    let mut groups_on_fw6_2 = key("K-13", "dynamic", f.dynamic_group);
    groups_on_fw6_2["generation"] = json!("1");
    groups_on_fw6_2["firmware"] = json!("6.2");
    groups_on_fw6_2["cylinder_group_ids"] = json!([f.cylinder_group]);
    let cases: Vec<(Value, &str)> = vec![
        (groups_on_fw6_2, "cylinder_group_ids"),
        (mech_in_group, "key_group_id"),
        (normal_connect, "connect"),
        (gen1_fw12, "firmware"),
        (schedule_on_normal, "schedule"),
        (multi_on_fw5, "schedule"),
        (pin_not_connect, "validity.pin"),
        (pin_too_long, "validity.pin.interval_minutes"),
        (dynamic_in_normal_group, "key_group_id"),
        (explicit_on_quartz, "cylinder_ids"),
        (handed_out_no_holder, "holder_id"),
        (holder_not_person, "holder_id"),
        (dates_on_normal, "validity.activation"),
    ];
    for (body, field) in cases {
        let r = app.post("/api/v1/keys", body.clone()).await.expect(422);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert!(
            r.error_fields().iter().any(|f| f == field),
            "expected {field} in {:?} for {body}",
            r.error_fields()
        );
    }
    assert_eq!(
        app.get("/api/v1/keys?include_hidden=true").await.body["total"],
        0,
        "nothing written"
    );

    // A valid dynamic Connect key with PIN, flexible schedule and explicit access.
    let mut ok = key("K-20", "dynamic", f.dynamic_group);
    ok["connect"] = json!(true);
    ok["firmware"] = json!("16.0.0");
    ok["holder_id"] = json!(f.person);
    ok["status"] = json!("handed_out");
    ok["cylinder_ids"] = json!([f.cylinder]);
    ok["validity"] = json!({ "activation": { "mode": "between", "from": "2026-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z" }, "revalidation": { "interval_hours": 336 }, "pin": { "interval_minutes": 1440 } });
    ok["schedule"] = json!({ "type": "multiple_time_windows", "windows": [{ "start_day": "friday", "start": "22:00", "end_day": "monday", "end": "06:00" }], "per_cylinder": [{ "cylinder_id": f.cylinder, "windows": [] }] });
    let k = app.post("/api/v1/keys", ok).await.expect(201);
    // The key references the person and the cylinder: neither can be deleted now.
    app.delete(&format!("/api/v1/employees/{}", f.person))
        .await
        .expect(409);
    let r = app
        .delete(&format!("/api/v1/cylinders/{}", f.cylinder))
        .await
        .expect(409);
    assert!(
        r.body["detail"].as_str().unwrap_or("").contains("K-20")
            || r.body["detail"]
                .as_str()
                .unwrap_or("")
                .contains(&k.id().to_string()),
        "{}",
        r.body
    );
});

on_both!(domain_rules, |app: TestApp| async move {
    let f = fixture(&app).await;
    let other = app.domain("Annex").await;
    // An access profile in another domain cannot hold a cylinder of the default domain.
    let r = app
        .post(
            "/api/v1/access-profiles",
            json!({ "name": "Annex staff", "domain_id": other, "cylinder_ids": [f.cylinder] }),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), ["cylinder_ids[0]"]);
    // A cylinder in a group takes the group's domain.
    let g = app
        .post(
            "/api/v1/cylinder-groups",
            json!({ "name": "Annex floor", "domain_id": other }),
        )
        .await
        .expect(201)
        .id();
    let c = app.post("/api/v1/cylinders", json!({ "name": "Annex door", "marking": "C-900", "side_a": "electronic", "cylinder_group_id": g })).await.expect(201);
    assert_eq!(c.body["domain_id"], other);
    // Mechanical cylinders are in no group.
    let r = app.post("/api/v1/cylinders", json!({ "name": "Shed", "marking": "C-901", "side_a": "mechanical", "cylinder_group_id": g })).await.expect(422);
    assert_eq!(r.error_fields(), ["cylinder_group_id"]);
    // A domain in use cannot be deleted; an empty one can.
    app.delete(&format!("/api/v1/domains/{other}"))
        .await
        .expect(409);
    let empty = app.domain("Empty").await;
    app.delete(&format!("/api/v1/domains/{empty}"))
        .await
        .expect(204);
    // Unknown domain id.
    let r = app
        .post(
            "/api/v1/employees",
            json!({ "first_name": "A", "surname": "B", "domain_id": 999_999 }),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), ["domain_id"]);
});

on_both!(uniqueness_and_bad_input, |app: TestApp| async move {
    let f = fixture(&app).await;
    app.post("/api/v1/keys", key("K-1", "quartz", f.normal_group))
        .await
        .expect(201);
    let r = app
        .post("/api/v1/keys", key("k-1", "quartz", f.normal_group))
        .await
        .expect(422);
    assert_eq!(
        r.error_fields(),
        ["marking"],
        "case-insensitive duplicate marking"
    );
    let r = app
        .post(
            "/api/v1/employees",
            json!({ "first_name": "X", "surname": "Y", "identifier": "e-1" }),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), ["identifier"]);
    let r = app
        .post(
            "/api/v1/key-groups",
            json!({ "name": "STAFF", "kind": "normal" }),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), ["name"]);
    // Only one master C-key.
    let r = app
        .post(
            "/api/v1/c-keys",
            json!({ "name": "Second master", "marking": "M-2", "kind": "master" }),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), ["kind"]);

    // Malformed JSON, wrong types, unknown fields, wrong media type, out-of-range lengths.
    let raw = |body: &str, ct: &str| {
        axum::http::Request::builder()
            .method("POST")
            .uri("/api/v1/employees")
            .header("authorization", format!("Bearer {}", app.token))
            .header("content-type", ct)
            .body(axum::body::Body::from(body.to_string()))
            .expect("request")
    };
    let r = app
        .send(raw("{\"first_name\": \"A\",", "application/json"))
        .await
        .expect(400);
    assert!(r.body["detail"].as_str().unwrap_or("").contains("line 1"));
    app.send(raw("{}", "text/plain")).await.expect(415);
    let r = app
        .post(
            "/api/v1/employees",
            json!({ "first_name": 5, "surname": "B" }),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), ["first_name"]);
    let r = app
        .post(
            "/api/v1/employees",
            json!({ "first_name": "A", "surname": "B", "shoe_size": 44 }),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), ["shoe_size"]);
    let r = app
        .post(
            "/api/v1/employees",
            json!({ "first_name": "A".repeat(50), "surname": "" }),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), ["first_name", "surname"]);
    let r = app.post("/api/v1/employees", json!({ "first_name": "A", "surname": "B", "links": [{ "name": "x", "url": "javascript:alert(1)" }] })).await.expect(422);
    assert_eq!(r.error_fields(), ["links[0].url"]);
    app.get("/api/v1/employees/abc").await.expect(400);
    app.get("/api/v1/employees?colour=red").await.expect(400);
    app.get("/api/v1/no-such-thing").await.expect(404);
    // An id of another kind is not found in this collection.
    app.get(&format!("/api/v1/keys/{}", f.cylinder))
        .await
        .expect(404);
    assert_eq!(
        app.get("/api/v1/employees").await.body["total"],
        1,
        "nothing written by bad input"
    );
});

on_both!(ids_of_another_locking_system, |app: TestApp| async move {
    let f = fixture(&app).await;
    let other = app
        .store
        .init_system("Other site", fixed(true))
        .await
        .expect("second system");
    let other_group = app
        .store
        .search(
            other.system.id,
            lockgate_model::ObjectKind::KeyGroup,
            &lockgate_store::Scope::all(),
            &lockgate_store::SearchQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("search")
        .items[0]
        .id;
    // Reading, changing, deleting another system's objects: not found.
    app.get(&format!("/api/v1/key-groups/{other_group}"))
        .await
        .expect(404);
    app.patch(
        &format!("/api/v1/key-groups/{other_group}"),
        json!({ "name": "x" }),
    )
    .await
    .expect(404);
    app.delete(&format!("/api/v1/key-groups/{other_group}"))
        .await
        .expect(404);
    // Referencing them: a field error.
    let r = app
        .post("/api/v1/keys", key("K-1", "quartz", other_group))
        .await
        .expect(422);
    assert_eq!(r.error_fields(), ["key_group_id"]);
    // The other system's token sees nothing of this one.
    let r = app
        .call(
            axum::http::Method::GET,
            &format!("/api/v1/cylinders/{}", f.cylinder),
            Some(&other.token),
            None,
        )
        .await;
    assert_eq!(r.status.as_u16(), 404);
});

on_both!(optimistic_concurrency, |app: TestApp| async move {
    let id = app
        .post(
            "/api/v1/employees",
            json!({ "first_name": "Anna", "surname": "Berg" }),
        )
        .await
        .expect(201)
        .id();
    let path = format!("/api/v1/employees/{id}");
    // If-Match on a stale version: 412 naming the current version, nothing written.
    app.patch(&path, json!({ "city": "Bonn" }))
        .await
        .expect(200);
    let stale = axum::http::Request::builder()
        .method("PATCH")
        .uri(&path)
        .header("authorization", format!("Bearer {}", app.token))
        .header("content-type", "application/merge-patch+json")
        .header("if-match", "\"1\"")
        .body(axum::body::Body::from(
            json!({ "city": "Köln" }).to_string(),
        ))
        .expect("request");
    let r = app.send(stale).await.expect(412);
    assert_eq!(r.body["current_version"], 2);
    assert_eq!(app.get(&path).await.body["city"], "Bonn");
    // Many concurrent patches of different fields: none is lost.
    let fields = [
        "phone", "street", "postcode", "region", "job", "state", "country", "location",
    ];
    let mut handles = Vec::new();
    let app = std::sync::Arc::new(app);
    for (i, f) in fields.iter().enumerate() {
        let app = app.clone();
        let path = path.clone();
        let f = f.to_string();
        handles.push(tokio::spawn(async move {
            app.patch(&path, json!({ f: format!("v{i}") })).await.status
        }));
    }
    for h in handles {
        assert_eq!(h.await.expect("task").as_u16(), 200);
    }
    let after = app.get(&path).await.body;
    for (i, f) in fields.iter().enumerate() {
        assert_eq!(after[*f], format!("v{i}"), "{f} kept");
    }
    assert_eq!(after["version"], 2 + fields.len() as i64);
});

on_both!(roles_and_c_keys, |app: TestApp| async move {
    // Pre-defined read-only roles cannot be edited or deleted.
    let roles = app
        .get("/api/v1/roles?q=super&with_body=true")
        .await
        .expect(200);
    let sa = roles.body["items"][0]["id"]
        .as_i64()
        .expect("super administrator role");
    // The master holds that role: editing one's own role is refused first.
    app.patch(
        &format!("/api/v1/roles/{sa}"),
        json!({ "permissions": { "key": "list" } }),
    )
    .await
    .expect(403);
    // Another administrator with roles at Full meets the read-only rule.
    let (_, roles_admin) = app
        .admin_with("R-1", json!({ "roles": "full" }), &[app.default_domain])
        .await;
    let r = app
        .call(
            axum::http::Method::PATCH,
            &format!("/api/v1/roles/{sa}"),
            Some(&roles_admin),
            Some(json!({ "permissions": { "key": "list" } })),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), ["permissions"]);
    app.delete(&format!("/api/v1/roles/{sa}")).await.expect(403); // own role
    let admin_role = app.get("/api/v1/roles?q=administrator").await.body["items"][0]["id"]
        .as_i64()
        .expect("administrator role");
    app.delete(&format!("/api/v1/roles/{admin_role}"))
        .await
        .expect(409); // pre-defined
    // A role breaking a permission dependency is refused, naming the function.
    let r = app
        .post(
            "/api/v1/roles",
            json!({ "name": "Broken", "permissions": { "key_validity": "full" } }),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), ["permissions.key_validity"]);
    // The master C-key cannot be deleted; a role in use cannot be deleted.
    app.delete(&format!("/api/v1/c-keys/{}", app.master_c_key_id))
        .await
        .expect(403);
    let (ck, _) = app
        .admin_with("A-1", json!({ "key": "list" }), &[app.default_domain])
        .await;
    let ck_body = app
        .get(&format!("/api/v1/c-keys/{ck}"))
        .await
        .expect(200)
        .body;
    let role = ck_body["role_ids"][0].as_i64().expect("role");
    app.delete(&format!("/api/v1/roles/{role}"))
        .await
        .expect(409);
    app.delete(&format!("/api/v1/c-keys/{ck}"))
        .await
        .expect(204);
    app.delete(&format!("/api/v1/roles/{role}"))
        .await
        .expect(204);
});

on_both!(bulk_changes_are_all_or_nothing, |app: TestApp| async move {
    let f = fixture(&app).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.post(
                "/api/v1/keys",
                key(&format!("B-{i}"), "quartz", f.normal_group),
            )
            .await
            .expect(201)
            .id(),
        );
    }
    let r = app
        .post(
            "/api/v1/bulk/tags",
            json!({ "kind": "key", "ids": ids, "add": ["night", "Spare"] }),
        )
        .await
        .expect(200);
    assert_eq!(r.body["updated"], 5);
    let found = app
        .get("/api/v1/keys?tag=NIGHT&tag=spare")
        .await
        .expect(200);
    assert_eq!(found.body["total"], 5);
    app.post(
        "/api/v1/bulk/tags",
        json!({ "kind": "key", "ids": [ids[0]], "remove": ["night"] }),
    )
    .await
    .expect(200);
    assert_eq!(app.get("/api/v1/keys?tag=night").await.body["total"], 4);
    // Validity for many keys; one invalid id fails the whole batch and names it.
    let validity = json!({ "activation": { "mode": "between", "from": "2026-01-01T00:00:00Z", "until": "2026-12-31T00:00:00Z" } });
    let mut bad = ids.clone();
    bad.push(f.cylinder);
    let r = app
        .post(
            "/api/v1/bulk/key-validity",
            json!({ "ids": bad, "validity": validity }),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), ["ids[5]"]);
    let k0 = app.get(&format!("/api/v1/keys/{}", ids[0])).await.body;
    assert_eq!(
        k0["validity"]["activation"]["mode"], "always_active",
        "nothing applied"
    );
    app.post(
        "/api/v1/bulk/key-validity",
        json!({ "ids": ids, "validity": validity }),
    )
    .await
    .expect(200);
    assert_eq!(
        app.get(&format!("/api/v1/keys/{}", ids[0])).await.body["validity"]["activation"]["mode"],
        "between"
    );
    // Domain change.
    let d = app.domain("Annex").await;
    app.post(
        "/api/v1/bulk/domain",
        json!({ "kind": "key", "ids": ids, "domain_id": d }),
    )
    .await
    .expect(200);
    assert_eq!(
        app.get(&format!("/api/v1/keys?domain_id={d}")).await.body["total"],
        5
    );
    let e = app
        .get(&format!("/api/v1/keys/{}/events", ids[1]))
        .await
        .body;
    let actions: Vec<_> = e["items"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        actions,
        [
            "domain_changed",
            "validity_changed",
            "tags_changed",
            "created"
        ]
    );
});

on_both!(
    tokens_never_reach_beyond_the_issuer,
    |app: TestApp| async move {
        // An administrator with C-key and roles at Full, but key only at List.
        let (_, issuer) = app
            .admin_with(
                "I-1",
                json!({ "c_key": "full", "roles": "full", "key": "list" }),
                &[app.default_domain],
            )
            .await;
        let (stronger, _) = app
            .admin_with("S-1", json!({ "key": "full" }), &[app.default_domain])
            .await;
        let (weaker, _) = app
            .admin_with("W-1", json!({ "key": "list" }), &[app.default_domain])
            .await;
        let call = |body: serde_json::Value| {
            app.call(
                axum::http::Method::POST,
                "/api/v1/tokens",
                Some(&issuer),
                Some(body),
            )
        };
        call(json!({ "name": "x", "c_key_id": stronger }))
            .await
            .expect(403);
        call(json!({ "name": "x", "c_key_id": app.master_c_key_id }))
            .await
            .expect(403);
        let t = call(json!({ "name": "x", "c_key_id": weaker }))
            .await
            .expect(201);
        let secret = t.body["token"].as_str().expect("token").to_string();
        assert!(secret.starts_with("lgt_") && secret.len() > 60);
        // Listing never shows secrets; revoking stops the token.
        let list = app.get("/api/v1/tokens").await.expect(200);
        assert!(!list.body.to_string().contains(&secret));
        app.call(axum::http::Method::GET, "/api/v1/me", Some(&secret), None)
            .await
            .expect(200);
        let id = t.body["info"]["id"].as_i64().expect("id");
        app.delete(&format!("/api/v1/tokens/{id}"))
            .await
            .expect(204);
        app.call(axum::http::Method::GET, "/api/v1/me", Some(&secret), None)
            .await
            .expect(401);
    }
);

on_both!(
    domains_are_scoped_by_their_own_id,
    |app: TestApp| async move {
        let b = app.domain("Annex").await;
        let (_, admin) = app
            .admin_with(
                "D-1",
                json!({ "domain": "full", "c_key": "full", "roles": "full" }),
                &[app.default_domain],
            )
            .await;
        use axum::http::Method;
        let as_admin = |m: Method, path: String, body: Option<serde_json::Value>| {
            let (app, admin) = (&app, admin.clone());
            async move { app.call(m, &path, Some(&admin), body).await }
        };
        as_admin(Method::GET, format!("/api/v1/domains/{b}"), None)
            .await
            .expect(404);
        as_admin(
            Method::PATCH,
            format!("/api/v1/domains/{b}"),
            Some(json!({ "name": "Mine now" })),
        )
        .await
        .expect(404);
        as_admin(Method::DELETE, format!("/api/v1/domains/{b}"), None)
            .await
            .expect(404);
        let listed = as_admin(Method::GET, "/api/v1/domains".into(), None)
            .await
            .expect(200);
        assert_eq!(listed.body["total"], 1);
        assert_eq!(listed.body["hidden"]["outside_domains"], 1);
        // Nor can it hand domain B to another C-key.
        let group = app.get("/api/v1/key-groups?type=normal_c_key").await.body["items"][0]["id"]
            .as_i64()
            .expect("group");
        let r = as_admin(Method::POST, "/api/v1/c-keys".into(), Some(json!({ "name": "X", "marking": "X-1", "kind": "normal", "key_group_id": group, "domain_ids": [b] }))).await.expect(422);
        assert_eq!(r.error_fields(), ["domain_ids[0]"]);
        // A domain it creates is its own from then on.
        let c = as_admin(
            Method::POST,
            "/api/v1/domains".into(),
            Some(json!({ "name": "Lab" })),
        )
        .await
        .expect(201)
        .id();
        as_admin(Method::GET, format!("/api/v1/domains/{c}"), None)
            .await
            .expect(200);
    }
);
