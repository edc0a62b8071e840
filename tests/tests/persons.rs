//! Persons and privacy (DOMAIN §9): permanent deletion with anonymised events, marking as
//! deleted and restoring, deactivation (hidden, N/A, reversible, its own permission), the
//! switch rules of the "when deleting persons" setting, generated identifiers, and holders.

use axum::http::Method;
use lockgate_model::ObjectKind;
use lockgate_tests::*;
use serde_json::{Value, json};

/// Create an employee and return its id.
async fn employee(app: &TestApp, first: &str, last: &str, identifier: Option<&str>) -> i64 {
    let mut body = json!({ "first_name": first, "surname": last });
    if let Some(i) = identifier {
        body["identifier"] = json!(i);
    }
    app.post("/api/v1/employees", body).await.expect(201).id()
}

/// Switch the "when deleting persons" setting.
async fn set_deletion(app: &TestApp, mode: &str) -> Resp {
    app.patch(
        "/api/v1/system/settings",
        json!({ "person_deletion": mode }),
    )
    .await
}

async fn deletion_setting(app: &TestApp) -> String {
    app.get("/api/v1/system").await.expect(200).body["settings"]["person_deletion"]
        .as_str()
        .expect("person_deletion")
        .to_string()
}

/// Ids found by an employee search with the given query string.
async fn search_ids(app: &TestApp, query: &str) -> Vec<i64> {
    let r = app
        .get(&format!("/api/v1/employees?{query}"))
        .await
        .expect(200);
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect()
}

/// Events of a person through the API (newest first).
async fn api_events(app: &TestApp, id: i64) -> Vec<Value> {
    app.get(&format!("/api/v1/employees/{id}/events"))
        .await
        .expect(200)
        .body["items"]
        .as_array()
        .expect("items")
        .clone()
}

fn actions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap_or("").to_string())
        .collect()
}

fn is_empty_changes(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(|m| m.is_empty())
}

/// A normal key group and a key handed out to `holder`; returns the key id.
async fn hand_out_key(app: &TestApp, holder: i64, marking: &str) -> i64 {
    let group = app.key_group(&format!("Staff {marking}"), "normal").await;
    app.post(
        "/api/v1/keys",
        json!({
            "name": format!("Key {marking}"),
            "marking": marking,
            "type": "normal",
            "generation": "1",
            "key_group_id": group,
            "status": "handed_out",
            "holder_id": holder,
        }),
    )
    .await
    .expect(201)
    .id()
}

on_both!(
    delete_permanently_removes_person_and_anonymises_events,
    |app: TestApp| async move {
        assert_eq!(deletion_setting(&app).await, "delete_permanently");
        let id = employee(&app, "Anna", "Berg", Some("P-100")).await;
        let other = employee(&app, "Ben", "Ode", Some("P-101")).await;
        app.patch(
            &format!("/api/v1/employees/{id}"),
            json!({ "email": "anna.berg@example.com", "phone": "030 1234" }),
        )
        .await
        .expect(200);
        // Before deletion the events carry the name and the changed values.
        let before = app
            .store
            .events_for(app.system_id, ObjectKind::Employee, id, 100, None)
            .await
            .expect("events");
        assert!(before.iter().any(|e| e.object_label == "Berg, Anna"));
        assert!(before.iter().any(|e| !is_empty_changes(&e.changes)));

        app.delete(&format!("/api/v1/employees/{id}"))
            .await
            .expect(204);
        app.get(&format!("/api/v1/employees/{id}"))
            .await
            .expect(404);
        // Gone for every search, including hidden and explicitly deleted ones.
        assert_eq!(search_ids(&app, "").await, [other]);
        assert_eq!(search_ids(&app, "include_hidden=true").await, [other]);
        assert!(search_ids(&app, "status=deleted").await.is_empty());
        assert!(search_ids(&app, "q=Berg").await.is_empty());

        let after = app
            .store
            .events_for(app.system_id, ObjectKind::Employee, id, 100, None)
            .await
            .expect("events");
        assert!(
            after.len() >= before.len(),
            "events must be kept (anonymised), not dropped: {after:?}"
        );
        for e in &after {
            assert_eq!(e.object_label, "N/A", "event {} keeps a label: {e:?}", e.id);
            assert!(
                is_empty_changes(&e.changes),
                "event {} keeps changes: {e:?}",
                e.id
            );
            let text = serde_json::to_string(e).expect("json");
            for secret in ["Berg", "Anna", "anna.berg@example.com", "030 1234", "P-100"] {
                assert!(
                    !text.contains(secret),
                    "event still names '{secret}': {text}"
                );
            }
        }
        // The other person's events are untouched.
        let others = app
            .store
            .events_for(app.system_id, ObjectKind::Employee, other, 100, None)
            .await
            .expect("events");
        assert!(others.iter().all(|e| e.object_label == "Ode, Ben"));
        // The identifier is free again.
        employee(&app, "Anna", "Berg", Some("P-100")).await;
    }
);

on_both!(
    mark_as_deleted_hides_shows_with_status_and_restores,
    |app: TestApp| async move {
        set_deletion(&app, "mark_as_deleted").await.expect(200);
        assert_eq!(deletion_setting(&app).await, "mark_as_deleted");
        let id = employee(&app, "Clara", "Schmidt", Some("P-200")).await;
        let other = employee(&app, "Dieter", "Vogel", Some("P-201")).await;

        app.delete(&format!("/api/v1/employees/{id}"))
            .await
            .expect(204);
        let got = app
            .get(&format!("/api/v1/employees/{id}"))
            .await
            .expect(200);
        assert_eq!(got.body["lifecycle"], "deleted");
        assert_eq!(got.body["surname"], "Schmidt");

        // Hidden from the default search, counted as hidden, shown with status=deleted.
        let page = app.get("/api/v1/employees").await.expect(200);
        let ids: Vec<i64> = page.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(ids, [other]);
        assert_eq!(page.body["hidden"]["by_status"], 1, "{}", page.body);
        assert!(search_ids(&app, "q=Schmidt").await.is_empty());
        let deleted = app
            .get("/api/v1/employees?status=deleted")
            .await
            .expect(200);
        let items = deleted.body["items"].as_array().expect("items");
        assert_eq!(items.len(), 1, "{}", deleted.body);
        assert_eq!(items[0]["id"], id);
        assert_eq!(items[0]["status"], "deleted");

        // A marked person cannot be edited or deleted again, only restored.
        let r = app
            .patch(
                &format!("/api/v1/employees/{id}"),
                json!({ "email": "c@example.com" }),
            )
            .await;
        assert!(r.status.is_client_error(), "{} {}", r.status, r.body);
        let r = app.delete(&format!("/api/v1/employees/{id}")).await;
        assert!(r.status.is_client_error(), "{} {}", r.status, r.body);
        // Restoring an active person is refused.
        let r = app
            .post(&format!("/api/v1/employees/{other}/restore"), json!({}))
            .await;
        assert_eq!(r.status.as_u16(), 409, "{}", r.body);

        let restored = app
            .post(&format!("/api/v1/employees/{id}/restore"), json!({}))
            .await
            .expect(200);
        assert_eq!(restored.body["lifecycle"], "active");
        assert_eq!(restored.body["identifier"], "P-200");
        let mut all = search_ids(&app, "").await;
        all.sort();
        assert_eq!(all, [id, other]);
        assert!(search_ids(&app, "status=deleted").await.is_empty());
        // The events stay readable with the person's name.
        let ev = api_events(&app, id).await;
        assert_eq!(
            actions(&ev)[..2],
            ["restored".to_string(), "marked_deleted".to_string()]
        );
        assert!(ev.iter().all(|e| e["object_label"] == "Schmidt, Clara"));
        app.patch(
            &format!("/api/v1/employees/{id}"),
            json!({ "email": "clara@example.com" }),
        )
        .await
        .expect(200);
    }
);

on_both!(
    deactivate_hides_shows_na_refuses_edits_and_reactivates,
    |app: TestApp| async move {
        let id = employee(&app, "Emil", "Novak", Some("P-300")).await;
        let other = employee(&app, "Frida", "Lang", Some("P-301")).await;
        app.patch(
            &format!("/api/v1/employees/{id}"),
            json!({ "email": "emil.novak@example.com" }),
        )
        .await
        .expect(200);

        let r = app
            .post(&format!("/api/v1/employees/{id}/deactivate"), json!({}))
            .await
            .expect(200);
        assert_eq!(r.body["lifecycle"], "deactivated");

        // Hidden by default, found with status=deactivated.
        assert_eq!(search_ids(&app, "").await, [other]);
        assert!(search_ids(&app, "q=Novak").await.is_empty());
        assert_eq!(search_ids(&app, "status=deactivated").await, [id]);

        // Its events show N/A and no changed values.
        let ev = api_events(&app, id).await;
        assert!(ev.len() >= 3, "{ev:?}");
        assert_eq!(actions(&ev)[0], "deactivated");
        for e in &ev {
            assert_eq!(e["object_label"], "N/A", "{e}");
            assert!(is_empty_changes(&e["changes"]), "{e}");
            let text = e.to_string();
            assert!(
                !text.contains("Novak") && !text.contains("emil.novak@example.com"),
                "{text}"
            );
        }

        // Never edited while deactivated, nor deleted, nor deactivated twice.
        let r = app
            .patch(
                &format!("/api/v1/employees/{id}"),
                json!({ "email": "other@example.com" }),
            )
            .await;
        assert!(r.status.is_client_error(), "{} {}", r.status, r.body);
        let r = app.delete(&format!("/api/v1/employees/{id}")).await;
        assert!(r.status.is_client_error(), "{} {}", r.status, r.body);
        let r = app
            .post(&format!("/api/v1/employees/{id}/deactivate"), json!({}))
            .await;
        assert_eq!(r.status.as_u16(), 409, "{}", r.body);
        // Restore is for persons marked as deleted, not deactivated ones.
        let r = app
            .post(&format!("/api/v1/employees/{id}/restore"), json!({}))
            .await;
        assert!(r.status.is_client_error(), "{} {}", r.status, r.body);

        let r = app
            .post(&format!("/api/v1/employees/{id}/reactivate"), json!({}))
            .await
            .expect(200);
        assert_eq!(r.body["lifecycle"], "active");
        assert_eq!(r.body["email"], "emil.novak@example.com");
        let mut all = search_ids(&app, "").await;
        all.sort();
        assert_eq!(all, [id, other]);
        let ev = api_events(&app, id).await;
        assert_eq!(actions(&ev)[..2], ["reactivated", "deactivated"]);
        assert!(ev.iter().all(|e| e["object_label"] == "Novak, Emil"));
        assert!(
            ev.iter()
                .any(|e| e["changes"]["email"]["to"] == "emil.novak@example.com")
        );
        app.patch(
            &format!("/api/v1/employees/{id}"),
            json!({ "email": "emil@example.com" }),
        )
        .await
        .expect(200);
        // Reactivating an active person is refused.
        let r = app
            .post(&format!("/api/v1/employees/{id}/reactivate"), json!({}))
            .await;
        assert_eq!(r.status.as_u16(), 409, "{}", r.body);
    }
);

on_both!(
    deactivation_needs_its_own_permission,
    |app: TestApp| async move {
        let id = employee(&app, "Gerd", "Huber", Some("P-350")).await;
        let (_, token) = app
            .admin_with(
                "A-350",
                json!({ "employee": "full" }),
                &[app.default_domain],
            )
            .await;
        let r = app
            .call(
                Method::POST,
                &format!("/api/v1/employees/{id}/deactivate"),
                Some(&token),
                Some(json!({})),
            )
            .await;
        assert_eq!(r.status.as_u16(), 403, "{}", r.body);
        let r = app
            .call(
                Method::GET,
                "/api/v1/employees?status=deactivated",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(r.status.as_u16(), 403, "{}", r.body);
        let got = app
            .get(&format!("/api/v1/employees/{id}"))
            .await
            .expect(200);
        assert_eq!(got.body["lifecycle"], "active");
    }
);

on_both!(
    deactivation_refused_while_person_holds_a_key,
    |app: TestApp| async move {
        let p = employee(&app, "Hanna", "Ilić", Some("P-400")).await;
        let key = hand_out_key(&app, p, "K-400").await;
        let r = app
            .post(&format!("/api/v1/employees/{p}/deactivate"), json!({}))
            .await;
        assert_eq!(r.status.as_u16(), 409, "{}", r.body);
        let detail = r.body["detail"].as_str().unwrap_or("");
        assert!(detail.contains(&key.to_string()), "{}", r.body);
        let got = app.get(&format!("/api/v1/employees/{p}")).await.expect(200);
        assert_eq!(got.body["lifecycle"], "active");
        assert_eq!(search_ids(&app, "").await, [p]);

        // Once the key is back in stock the person can be deactivated.
        app.patch(
            &format!("/api/v1/keys/{key}"),
            json!({ "status": "in_stock", "holder_id": null }),
        )
        .await
        .expect(200);
        app.post(&format!("/api/v1/employees/{p}/deactivate"), json!({}))
            .await
            .expect(200);
    }
);

on_both!(
    deactivation_only_with_delete_permanently,
    |app: TestApp| async move {
        set_deletion(&app, "mark_as_deleted").await.expect(200);
        let p = employee(&app, "Ida", "Jung", Some("P-450")).await;
        let r = app
            .post(&format!("/api/v1/employees/{p}/deactivate"), json!({}))
            .await;
        assert!(r.status.is_client_error(), "{} {}", r.status, r.body);
        assert_eq!(
            app.get(&format!("/api/v1/employees/{p}"))
                .await
                .expect(200)
                .body["lifecycle"],
            "active"
        );
    }
);

on_both!(
    switch_to_mark_as_deleted_refused_while_someone_is_deactivated,
    |app: TestApp| async move {
        let p = employee(&app, "Jan", "Kraus", Some("P-500")).await;
        app.post(&format!("/api/v1/employees/{p}/deactivate"), json!({}))
            .await
            .expect(200);
        let r = set_deletion(&app, "mark_as_deleted").await.expect(409);
        assert!(
            r.error_fields().iter().any(|f| f == "person_deletion")
                || r.body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("person_deletion")),
            "{}",
            r.body
        );
        assert_eq!(deletion_setting(&app).await, "delete_permanently");
        // The person is untouched.
        assert_eq!(search_ids(&app, "status=deactivated").await, [p]);

        app.post(&format!("/api/v1/employees/{p}/reactivate"), json!({}))
            .await
            .expect(200);
        set_deletion(&app, "mark_as_deleted").await.expect(200);
        assert_eq!(deletion_setting(&app).await, "mark_as_deleted");
        assert_eq!(search_ids(&app, "").await, [p]);
    }
);

on_both!(
    switch_to_delete_permanently_purges_marked_persons,
    |app: TestApp| async move {
        set_deletion(&app, "mark_as_deleted").await.expect(200);
        let gone = employee(&app, "Karl", "Lenz", Some("P-600")).await;
        let gone2 = employee(&app, "Lea", "Mohr", Some("P-601")).await;
        let kept = employee(&app, "Mia", "Nagel", Some("P-602")).await;
        app.patch(
            &format!("/api/v1/employees/{gone}"),
            json!({ "email": "karl@example.com" }),
        )
        .await
        .expect(200);
        app.delete(&format!("/api/v1/employees/{gone}"))
            .await
            .expect(204);
        app.delete(&format!("/api/v1/employees/{gone2}"))
            .await
            .expect(204);
        let mut marked = search_ids(&app, "status=deleted").await;
        marked.sort();
        assert_eq!(marked, [gone, gone2]);

        set_deletion(&app, "delete_permanently").await.expect(200);
        assert_eq!(deletion_setting(&app).await, "delete_permanently");
        for id in [gone, gone2] {
            app.get(&format!("/api/v1/employees/{id}"))
                .await
                .expect(404);
            let ev = app
                .store
                .events_for(app.system_id, ObjectKind::Employee, id, 100, None)
                .await
                .expect("events");
            assert!(!ev.is_empty());
            for e in &ev {
                assert_eq!(e.object_label, "N/A", "{e:?}");
                assert!(is_empty_changes(&e.changes), "{e:?}");
            }
        }
        assert!(search_ids(&app, "status=deleted").await.is_empty());
        assert_eq!(search_ids(&app, "include_hidden=true").await, [kept]);
        let k = app
            .get(&format!("/api/v1/employees/{kept}"))
            .await
            .expect(200);
        assert_eq!(k.body["lifecycle"], "active");
        // From now on deleting removes the person at once.
        app.delete(&format!("/api/v1/employees/{kept}"))
            .await
            .expect(204);
        app.get(&format!("/api/v1/employees/{kept}"))
            .await
            .expect(404);
    }
);

/// `YYYY-MM-DD:N` with today's date (UTC); returns N.
fn generated_number(identifier: &str) -> u64 {
    let (date, n) = identifier
        .split_once(':')
        .unwrap_or_else(|| panic!("'{identifier}' is not YYYY-MM-DD:N"));
    assert!(
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok() && date.len() == 10,
        "'{identifier}' does not start with a YYYY-MM-DD date"
    );
    let today = chrono::Utc::now().date_naive();
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").expect("date");
    assert!(
        d == today || d == today.pred_opt().expect("yesterday"),
        "'{identifier}' is not today's date {today}"
    );
    n.parse()
        .unwrap_or_else(|_| panic!("'{identifier}': '{n}' is not a number"))
}

on_both!(
    identifier_generated_when_missing,
    |app: TestApp| async move {
        let a = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "Nina", "surname": "Ott" }),
            )
            .await
            .expect(201);
        let ia = a.body["identifier"]
            .as_str()
            .expect("identifier")
            .to_string();
        let na = generated_number(&ia);
        let b = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "Olaf", "surname": "Pohl", "identifier": null }),
            )
            .await
            .expect(201);
        let ib = b.body["identifier"]
            .as_str()
            .expect("identifier")
            .to_string();
        let nb = generated_number(&ib);
        assert_ne!(ia, ib);
        assert_eq!(nb, na + 1, "{ia} then {ib}");
        // The generated identifier is the person's marking and searchable.
        let found = app
            .get(&format!("/api/v1/employees?q={ib}"))
            .await
            .expect(200);
        assert_eq!(found.body["items"][0]["id"], b.id(), "{}", found.body);
        assert_eq!(found.body["items"][0]["marking"], ib.as_str());
        // Numbering continues after the highest number used today.
        let date = ia.split_once(':').expect("date").0.to_string();
        employee(&app, "Paul", "Quast", Some(&format!("{date}:41"))).await;
        let c = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "Rita", "surname": "Roth" }),
            )
            .await
            .expect(201);
        assert_eq!(c.body["identifier"], format!("{date}:42"));
        // An explicit identifier is kept as given.
        let d = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "Sven", "surname": "Stein", "identifier": "HR-7" }),
            )
            .await
            .expect(201);
        assert_eq!(d.body["identifier"], "HR-7");
    }
);

on_both!(
    keys_cannot_be_held_by_deactivated_or_deleted_persons,
    |app: TestApp| async move {
        let p = employee(&app, "Tom", "Ulm", Some("P-700")).await;
        app.post(&format!("/api/v1/employees/{p}/deactivate"), json!({}))
            .await
            .expect(200);
        let group = app.key_group("Staff", "normal").await;
        let key = |marking: &str, holder: Option<i64>| {
            let mut k = json!({
                "name": format!("Key {marking}"),
                "marking": marking,
                "type": "normal",
                "generation": "1",
                "key_group_id": group,
            });
            if let Some(h) = holder {
                k["status"] = json!("handed_out");
                k["holder_id"] = json!(h);
            }
            k
        };
        let r = app
            .post("/api/v1/keys", key("K-701", Some(p)))
            .await
            .expect(422);
        assert!(
            r.error_fields().iter().any(|f| f == "holder_id"),
            "{}",
            r.body
        );
        // Nor can an existing key be handed out to them.
        let k = app
            .post("/api/v1/keys", key("K-702", None))
            .await
            .expect(201)
            .id();
        let r = app
            .patch(
                &format!("/api/v1/keys/{k}"),
                json!({ "status": "handed_out", "holder_id": p }),
            )
            .await
            .expect(422);
        assert!(
            r.error_fields().iter().any(|f| f == "holder_id"),
            "{}",
            r.body
        );
        // After reactivation the person can hold keys again.
        app.post(&format!("/api/v1/employees/{p}/reactivate"), json!({}))
            .await
            .expect(200);
        app.post("/api/v1/keys", key("K-703", Some(p)))
            .await
            .expect(201);

        // A person marked as deleted cannot hold keys either.
        set_deletion(&app, "mark_as_deleted").await.expect(200);
        let q = employee(&app, "Uwe", "Voss", Some("P-701")).await;
        app.delete(&format!("/api/v1/employees/{q}"))
            .await
            .expect(204);
        let r = app
            .post("/api/v1/keys", key("K-704", Some(q)))
            .await
            .expect(422);
        assert!(
            r.error_fields().iter().any(|f| f == "holder_id"),
            "{}",
            r.body
        );
    }
);

/// DELETE with an If-Match header.
async fn delete_if_match(app: &TestApp, id: i64, version: i64) -> Resp {
    let req = axum::http::Request::builder()
        .method(Method::DELETE)
        .uri(format!("/api/v1/employees/{id}"))
        .header(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {}", app.token),
        )
        .header(axum::http::header::IF_MATCH, format!("\"{version}\""))
        .body(axum::body::Body::empty())
        .expect("request");
    app.send(req).await
}

on_both!(
    delete_honours_if_match_in_both_modes,
    |app: TestApp| async move {
        // Delete permanently: a stale version is refused, the current one deletes.
        let a = employee(&app, "Vera", "Wirth", Some("P-800")).await;
        app.patch(
            &format!("/api/v1/employees/{a}"),
            json!({ "email": "vera@example.com" }),
        )
        .await
        .expect(200);
        delete_if_match(&app, a, 1).await.expect(412);
        app.get(&format!("/api/v1/employees/{a}")).await.expect(200);
        delete_if_match(&app, a, 2).await.expect(204);

        // Mark as deleted: the same precondition applies.
        set_deletion(&app, "mark_as_deleted").await.expect(200);
        let b = employee(&app, "Walter", "Xaver", Some("P-801")).await;
        app.patch(
            &format!("/api/v1/employees/{b}"),
            json!({ "email": "walter@example.com" }),
        )
        .await
        .expect(200);
        delete_if_match(&app, b, 1).await.expect(412);
        let got = app.get(&format!("/api/v1/employees/{b}")).await.expect(200);
        assert_eq!(got.body["lifecycle"], "active", "stale delete applied");
        delete_if_match(&app, b, 2).await.expect(204);
        let got = app.get(&format!("/api/v1/employees/{b}")).await.expect(200);
        assert_eq!(got.body["lifecycle"], "deleted");
    }
);
