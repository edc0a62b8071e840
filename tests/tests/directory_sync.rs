//! Directory sync (DOMAIN §9, §12): `Store::sync_directory` applies a whole batch in one
//! transaction (creates, updates, adoption, skips, deletions under both deletion settings,
//! the mass-deletion guard, dry runs, the watermark), synced persons are read-only locally,
//! and the gateway operations over it (`sync-persons`, `request-directory-sync`,
//! `request-key-update`, `report-key-lost`) answer as their WIT contract says.

use std::time::Instant;

use lockgate::gateway::CoreGateway;
use lockgate_host::{
    Gateway,
    types::{Person as WitPerson, PluginError, SyncRequest},
};
use lockgate_jobs::{Queue, QueueConfig};
use lockgate_model::person::Person;
use lockgate_store::{
    Actor, DirectorySync, DirectorySyncReport, StoreError, SyncedPerson,
    directory::{OnInvalid, SyncSkip},
};
use lockgate_tests::*;
use serde_json::json;
use sqlx::Row;

fn person(identifier: &str, surname: &str) -> SyncedPerson {
    SyncedPerson {
        person: Person {
            identifier: Some(identifier.into()),
            first_name: "Test".into(),
            surname: surname.into(),
            email: Some(format!("{}@example.com", identifier.to_lowercase())),
            ..Person::default()
        },
        active: true,
    }
}

fn inactive(identifier: &str) -> SyncedPerson {
    SyncedPerson {
        active: false,
        ..person(identifier, "Gone")
    }
}

fn request<'a>(source: &'a str, full: bool, persons: Vec<SyncedPerson>) -> DirectorySync<'a> {
    DirectorySync {
        source,
        domain: None,
        full,
        dry_run: false,
        max_deletions: 1_000_000,
        max_deletion_percent: 100,
        watermark: None,
        on_invalid: OnInvalid::Refuse,
        persons,
    }
}

fn actor() -> Actor {
    Actor {
        label: "plugin ldap".into(),
        ..Actor::system()
    }
}

async fn sync(app: &TestApp, req: DirectorySync<'_>) -> Result<DirectorySyncReport, StoreError> {
    let sys = app.store.system(app.system_id).await.expect("system");
    app.store.sync_directory(&sys, &actor(), req).await
}

/// Rows in `objects` and `events` (what a refused or dry sync must not change).
async fn counts(app: &TestApp) -> (i64, i64, String) {
    let pool = app.store.pool();
    let objects: i64 = sqlx::query("SELECT COUNT(*) AS n FROM objects")
        .fetch_one(pool)
        .await
        .expect("count")
        .try_get("n")
        .expect("n");
    let events: i64 = sqlx::query("SELECT COUNT(*) AS n FROM events")
        .fetch_one(pool)
        .await
        .expect("count")
        .try_get("n")
        .expect("n");
    // Every person body, so an update in place is seen too.
    let bodies: Vec<String> =
        sqlx::query("SELECT body FROM objects WHERE kind = 'employee' ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("bodies")
            .iter()
            .map(|r| r.try_get("body").expect("body"))
            .collect();
    (objects, events, bodies.join("\n"))
}

/// The employee with this identifier, through the API (`None`: no such employee).
async fn employee(app: &TestApp, identifier: &str) -> Option<serde_json::Value> {
    let r = app
        .get(&format!(
            "/api/v1/employees?q={identifier}&with_body=true&include_hidden=true"
        ))
        .await
        .expect(200);
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["body"]["identifier"] == identifier)
        .cloned()
}

async fn employee_id(app: &TestApp, identifier: &str) -> i64 {
    employee(app, identifier).await.expect("employee")["id"]
        .as_i64()
        .expect("id")
}

fn skip_reason<'a>(skipped: &'a [SyncSkip], identifier: &str) -> &'a str {
    skipped
        .iter()
        .find(|s| s.identifier == identifier)
        .map(|s| s.reason.as_str())
        .unwrap_or_else(|| panic!("{identifier} not skipped: {skipped:?}"))
}

async fn set_deletion(app: &TestApp, mode: &str) {
    app.patch(
        "/api/v1/system/settings",
        json!({ "person_deletion": mode }),
    )
    .await
    .expect(200);
}

on_both!(
    creates_updates_and_leaves_unchanged,
    |app: TestApp| async move {
        let app = app;
        let batch = || {
            vec![
                person("E-1", "One"),
                person("E-2", "Two"),
                person("E-3", "Three"),
            ]
        };
        let r = sync(&app, request("ldap:corp", false, batch()))
            .await
            .expect("sync");
        assert_eq!(
            (r.staged, r.created, r.updated, r.unchanged, r.deleted),
            (3, 3, 0, 0, 0)
        );
        let one = employee(&app, "E-1").await.expect("created");
        assert_eq!(one["body"]["synced_from"], "ldap:corp");
        assert_eq!(
            one["body"]["domain_id"], app.default_domain,
            "initial domain"
        );
        let id = one["id"].as_i64().expect("id");
        let events = app
            .get(&format!("/api/v1/employees/{id}/events"))
            .await
            .expect(200);
        assert_eq!(events.body["items"][0]["action"], "synced");
        assert_eq!(events.body["items"][0]["actor"], "plugin ldap");

        // Unchanged: nothing written, no event.
        let before = counts(&app).await;
        let r = sync(&app, request("ldap:corp", false, batch()))
            .await
            .expect("sync");
        assert_eq!((r.created, r.updated, r.unchanged), (0, 0, 3));
        assert_eq!(
            counts(&app).await,
            before,
            "an unchanged sync writes nothing"
        );

        // Domain and tags are the administrator's: a sync keeps them.
        let other = app.domain("Other").await;
        app.patch(
            &format!("/api/v1/employees/{id}"),
            json!({ "domain_id": other, "tags": ["vip"] }),
        )
        .await
        .expect(200);
        let mut changed = batch();
        changed[0].person.surname = "Uno".into();
        changed[0].person.department = Some("Facilities".into());
        let r = sync(&app, request("ldap:corp", false, changed))
            .await
            .expect("sync");
        assert_eq!((r.created, r.updated, r.adopted, r.unchanged), (0, 1, 0, 2));
        let one = employee(&app, "E-1").await.expect("kept");
        assert_eq!(one["body"]["surname"], "Uno");
        assert_eq!(one["body"]["department"], "Facilities");
        assert_eq!(one["body"]["domain_id"], other);
        assert_eq!(one["body"]["tags"], json!(["vip"]));

        // A named domain for new persons; an unknown one is refused, naming `domain`.
        let mut req = request("ldap:corp", false, vec![person("E-4", "Four")]);
        req.domain = Some("other");
        sync(&app, req).await.expect("sync");
        assert_eq!(
            employee(&app, "E-4").await.expect("created")["body"]["domain_id"],
            other
        );
        let mut req = request("ldap:corp", false, vec![person("E-5", "Five")]);
        req.domain = Some("Nowhere");
        let e = sync(&app, req).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid(v) if v.errors[0].field == "domain"),
            "{e:?}"
        );
        assert!(employee(&app, "E-5").await.is_none());
    }
);

on_both!(
    adopts_local_persons_and_skips_with_reasons,
    |app: TestApp| async move {
        let app = app;
        // A local person with a synced identifier is adopted.
        let local = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "Lo", "surname": "Cal", "identifier": "L-1", "tags": ["t"] }),
            )
            .await
            .expect(201)
            .id();
        // Deactivated persons are never re-imported.
        let deact = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "De", "surname": "Act", "identifier": "D-1" }),
            )
            .await
            .expect(201)
            .id();
        app.post(&format!("/api/v1/employees/{deact}/deactivate"), json!({}))
            .await
            .expect(200);
        // Persons of another source are that source's.
        sync(&app, request("ldap:hr", false, vec![person("H-1", "Hr")]))
            .await
            .expect("sync");

        let r = sync(
            &app,
            request(
                "ldap:corp",
                false,
                vec![
                    person("l-1", "Cal"),
                    person("D-1", "Act"),
                    person("H-1", "Hr"),
                    inactive("H-1x"),
                ],
            ),
        )
        .await
        .expect("sync");
        assert_eq!(
            (r.created, r.updated, r.adopted, r.unchanged, r.inactive),
            (0, 1, 1, 0, 1)
        );
        assert_eq!(r.skipped_total, 2);
        assert_eq!(
            skip_reason(&r.skipped, "D-1"),
            "deactivated persons are never re-imported"
        );
        assert!(
            skip_reason(&r.skipped, "H-1").contains("ldap:hr"),
            "{:?}",
            r.skipped
        );
        let adopted = employee(&app, "L-1").await.expect("adopted");
        assert_eq!(adopted["id"], local);
        assert_eq!(adopted["body"]["synced_from"], "ldap:corp");
        assert_eq!(adopted["body"]["tags"], json!(["t"]));
        assert_eq!(
            adopted["body"]["identifier"], "L-1",
            "the stored identifier stays"
        );
        assert_eq!(
            employee(&app, "H-1").await.expect("kept")["body"]["synced_from"],
            "ldap:hr"
        );

        // Marked as deleted: skipped (switching needs no deactivated persons).
        app.post(&format!("/api/v1/employees/{deact}/reactivate"), json!({}))
            .await
            .expect(200);
        set_deletion(&app, "mark_as_deleted").await;
        let marked = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "Ma", "surname": "Rked", "identifier": "M-1" }),
            )
            .await
            .expect(201)
            .id();
        app.delete(&format!("/api/v1/employees/{marked}"))
            .await
            .expect(204);
        let r = sync(
            &app,
            request("ldap:corp", false, vec![person("M-1", "Rked")]),
        )
        .await
        .expect("sync");
        assert_eq!((r.created, r.updated), (0, 0));
        assert_eq!(
            skip_reason(&r.skipped, "M-1"),
            "the person is marked as deleted"
        );
    }
);

/// Full sync A, B, C, D; D holds a key; then a full sync of A only and an incremental sync
/// staging A inactive. Returns the ids of B, C and A.
async fn deletion_round(app: &TestApp, source: &str, prefix: &str) -> (i64, i64, i64) {
    let id = |s: &str| format!("{prefix}-{s}");
    let r = sync(
        app,
        request(
            source,
            true,
            vec![
                person(&id("A"), "A"),
                person(&id("B"), "B"),
                person(&id("C"), "C"),
                person(&id("D"), "D"),
            ],
        ),
    )
    .await
    .expect("sync");
    assert_eq!(r.created, 4);
    let holder = employee_id(app, &id("D")).await;
    let group = app.key_group(&format!("G {prefix}"), "dynamic").await;
    app.post(
        "/api/v1/keys",
        json!({ "name": format!("K {prefix}"), "marking": format!("K-{prefix}"), "type": "dynamic", "generation": "2", "firmware": "12.7", "key_group_id": group, "status": "handed_out", "holder_id": holder }),
    )
    .await
    .expect(201);
    let (b, c) = (
        employee_id(app, &id("B")).await,
        employee_id(app, &id("C")).await,
    );
    let r = sync(app, request(source, true, vec![person(&id("A"), "A")]))
        .await
        .expect("sync");
    assert_eq!((r.unchanged, r.deleted, r.source_persons), (1, 2, 4));
    assert_eq!(r.deleted_identifiers, [id("B"), id("C")]);
    assert!(
        skip_reason(&r.skipped, &id("D")).starts_with("holds keys"),
        "{:?}",
        r.skipped
    );
    assert!(
        employee(app, &id("D")).await.is_some(),
        "a key holder stays"
    );
    // Incremental: only persons staged inactive go.
    let a = employee_id(app, &id("A")).await;
    let r = sync(app, request(source, false, vec![inactive(&id("A"))]))
        .await
        .expect("sync");
    assert_eq!(
        (r.deleted, r.deleted_identifiers.clone()),
        (1, vec![id("A")])
    );
    (b, c, a)
}

on_both!(
    full_sync_deletes_by_set_difference_under_both_settings,
    |app: TestApp| async move {
        let app = app;
        // Delete permanently (the default): rows gone, their events anonymised.
        let (b, c, a) = deletion_round(&app, "ldap:corp", "P").await;
        for id in [b, c, a] {
            app.get(&format!("/api/v1/employees/{id}"))
                .await
                .expect(404);
        }
        let labels: Vec<String> =
            sqlx::query("SELECT object_label FROM events WHERE object_id = $1")
                .bind(b)
                .fetch_all(app.store.pool())
                .await
                .expect("events")
                .iter()
                .map(|r| r.try_get("object_label").expect("label"))
                .collect();
        assert!(labels.len() >= 2, "{labels:?}");
        assert!(labels.iter().all(|l| l == "N/A"), "{labels:?}");

        // Mark as deleted: restorable, status deleted.
        set_deletion(&app, "mark_as_deleted").await;
        let (b, c, a) = deletion_round(&app, "ldap:other", "M").await;
        for id in [b, c, a] {
            let p = app
                .get(&format!("/api/v1/employees/{id}"))
                .await
                .expect(200);
            assert_eq!(p.body["lifecycle"], "deleted", "{}", p.body);
        }
        // Staging a marked person again skips it; a further full sync deletes nothing more.
        let r = sync(&app, request("ldap:other", true, vec![person("M-B", "B")]))
            .await
            .expect("sync");
        assert_eq!(r.deleted, 0);
        assert_eq!(
            skip_reason(&r.skipped, "M-B"),
            "the person is marked as deleted"
        );
    }
);

on_both!(
    guard_dry_run_and_watermark_are_all_or_nothing,
    |app: TestApp| async move {
        let app = app;
        let ten: Vec<SyncedPerson> = (0..10)
            .map(|i| person(&format!("G-{i}"), "Guard"))
            .collect();
        let mut req = request("ldap:corp", true, ten.clone());
        req.watermark = Some(("ldap", "usn", b"100"));
        sync(&app, req).await.expect("sync");
        let watermark = || async { app.store.plugin_kv_get("ldap", "usn").await.expect("kv") };
        assert_eq!(watermark().await.as_deref(), Some(&b"100"[..]));

        // 8 of 10 would go: more than 5 and more than 50 %.
        let before = counts(&app).await;
        let two = || ten[..2].to_vec();
        for (max, pct) in [(5, 100), (1_000, 50)] {
            let mut req = request("ldap:corp", true, two());
            req.max_deletions = max;
            req.max_deletion_percent = pct;
            req.watermark = Some(("ldap", "usn", b"200"));
            let e = sync(&app, req).await.unwrap_err();
            let StoreError::Refused { message } = &e else {
                panic!("{e:?}")
            };
            assert!(
                message.contains("delete 8 of the 10")
                    && message.contains(&format!("at most {max} persons"))
                    && message.contains(&format!("at most {pct} %")),
                "{message}"
            );
            assert_eq!(counts(&app).await, before, "a refused sync changes nothing");
            assert_eq!(watermark().await.as_deref(), Some(&b"100"[..]));
        }

        // A dry run reports the guard and writes nothing, not even the watermark.
        let mut req = request("ldap:corp", true, two());
        req.max_deletions = 5;
        req.dry_run = true;
        req.watermark = Some(("ldap", "usn", b"300"));
        let r = sync(&app, req).await.expect("dry run");
        assert!(r.dry_run);
        assert_eq!(r.deleted, 8);
        assert!(r.guard.as_deref().is_some_and(|g| g.contains("delete 8")));
        // A dry run with creates, updates and deletions that the guard allows.
        let mut batch = two();
        batch[0].person.surname = "Changed".into();
        batch.push(person("G-new", "New"));
        let mut req = request("ldap:corp", true, batch.clone());
        req.dry_run = true;
        req.watermark = Some(("ldap", "usn", b"300"));
        let r = sync(&app, req).await.expect("dry run");
        assert_eq!(
            (
                r.created,
                r.updated,
                r.unchanged,
                r.deleted,
                r.guard.clone()
            ),
            (1, 1, 1, 8, None)
        );
        assert_eq!(counts(&app).await, before, "a dry run writes nothing");
        assert_eq!(watermark().await.as_deref(), Some(&b"100"[..]));

        // Applied: everything and the watermark together.
        let mut req = request("ldap:corp", true, batch);
        req.watermark = Some(("ldap", "usn", b"400"));
        let r = sync(&app, req).await.expect("sync");
        assert_eq!((r.created, r.updated, r.deleted), (1, 1, 8));
        assert_eq!(watermark().await.as_deref(), Some(&b"400"[..]));
    }
);

on_both!(
    invalid_batches_name_index_and_field_and_change_nothing,
    |app: TestApp| async move {
        let app = app;
        sync(
            &app,
            request("ldap:corp", false, vec![person("V-0", "Zero")]),
        )
        .await
        .expect("sync");
        let before = counts(&app).await;
        let fields = |e: StoreError| match e {
            StoreError::Invalid(v) => v
                .errors
                .into_iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let mut bad_email = person("V-2", "Two");
        bad_email.person.email = Some("not an address".into());
        let mut no_ident = person("x", "Three");
        no_ident.person.identifier = Some("  ".into());
        let mut req = request(
            "ldap:corp",
            false,
            vec![
                person("V-1", "One"),
                bad_email,
                no_ident,
                person("v-1", "Again"),
                person("V-4", ""),
            ],
        );
        req.watermark = Some(("ldap", "usn", b"1"));
        let errors = fields(sync(&app, req).await.unwrap_err());
        for want in [
            "persons[1].email",
            "persons[2].identifier",
            "persons[3].identifier: 'v-1' is already staged as persons[0]",
            "persons[4].surname",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "{want} not in {errors:?}"
            );
        }
        assert_eq!(counts(&app).await, before, "nothing written");
        assert!(
            app.store
                .plugin_kv_get("ldap", "usn")
                .await
                .expect("kv")
                .is_none()
        );
        for source in ["", " padded"] {
            let e = sync(&app, request(source, false, vec![]))
                .await
                .unwrap_err();
            assert!(fields(e)[0].starts_with("source"));
        }
    }
);

on_both!(
    synced_persons_are_read_only_locally,
    |app: TestApp| async move {
        let app = app;
        sync(
            &app,
            request("ldap:corp", false, vec![person("R-1", "Read")]),
        )
        .await
        .expect("sync");
        let id = employee_id(&app, "R-1").await;
        let r = app
            .patch(
                &format!("/api/v1/employees/{id}"),
                json!({ "surname": "Other" }),
            )
            .await
            .expect(422);
        assert!(
            r.error_fields().iter().any(|f| f == "synced_from"),
            "{}",
            r.body
        );
        app.patch(
            &format!("/api/v1/employees/{id}"),
            json!({ "tags": ["ok"] }),
        )
        .await
        .expect(200);
        app.delete(&format!("/api/v1/employees/{id}"))
            .await
            .expect(409);
        set_deletion(&app, "mark_as_deleted").await;
        app.delete(&format!("/api/v1/employees/{id}"))
            .await
            .expect(409);
        assert!(employee(&app, "R-1").await.is_some());
    }
);

fn wit_person(identifier: &str, fields: &[(&str, &str)], active: bool) -> WitPerson {
    WitPerson {
        identifier: identifier.into(),
        first_name: "Wit".into(),
        surname: "Person".into(),
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        active,
    }
}

fn wit_request(source: &str, full: bool) -> SyncRequest {
    SyncRequest {
        source: source.into(),
        domain: None,
        full,
        dry_run: false,
        max_deletions: 100,
        max_deletion_percent: 100,
        watermark: Some(("usn".into(), b"42".to_vec())),
    }
}

on_both!(
    gateway_sync_persons_maps_and_applies,
    |app: TestApp| async move {
        let app = app;
        // This source refuses a sync with an invalid entry (`[plugins.sources.ldap]`).
        let gw = CoreGateway::new(app.store.clone()).with_on_invalid(
            [("ldap".to_string(), OnInvalid::Refuse)]
                .into_iter()
                .collect(),
        );
        let invalid = |e: PluginError| match e {
            PluginError::Invalid(m) => m,
            other => panic!("{other:?}"),
        };
        let m = invalid(
            gw.sync_persons(
                "ldap",
                wit_request("corp", false),
                vec![
                    wit_person("W-1", &[], true),
                    wit_person("W-2", &[("foo", "x")], true),
                ],
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(m, "persons[1].fields: unknown field `foo`");
        let m = invalid(
            gw.sync_persons(
                "ldap",
                wit_request("corp", false),
                vec![wit_person(
                    "W-1",
                    &[("email", "a@b.example"), ("email", "c@d.example")],
                    true,
                )],
            )
            .await
            .unwrap_err(),
        );
        assert!(m.starts_with("persons[0].fields"), "{m}");
        let m = invalid(
            gw.sync_persons(
                "ldap",
                wit_request("corp", false),
                vec![wit_person("W-1", &[("email", "nope")], true)],
            )
            .await
            .unwrap_err(),
        );
        assert!(m.starts_with("persons[0].email: "), "{m}");
        invalid(
            gw.sync_persons("ldap", wit_request("bad source!", false), vec![])
                .await
                .unwrap_err(),
        );
        assert!(
            app.store
                .plugin_kv_get("ldap", "usn")
                .await
                .expect("kv")
                .is_none()
        );

        let r = gw
            .sync_persons(
                "ldap",
                wit_request("corp", true),
                vec![
                    wit_person(
                        "W-1",
                        &[
                            ("email", "w1@example.com"),
                            ("city", "Berlin"),
                            ("phone", ""),
                        ],
                        true,
                    ),
                    wit_person("W-2", &[], true),
                    wit_person("W-3", &[], false),
                ],
            )
            .await
            .expect("sync");
        assert_eq!(
            (r.staged, r.created, r.updated, r.deleted, r.dry_run),
            (3, 2, 0, 0, false)
        );
        let w1 = employee(&app, "W-1").await.expect("created");
        assert_eq!(
            w1["body"]["synced_from"], "ldap:corp",
            "source prefixed with the plugin"
        );
        assert_eq!(w1["body"]["city"], "Berlin");
        assert!(
            w1["body"].get("phone").is_none(),
            "an empty value is no value"
        );
        assert_eq!(
            app.store
                .plugin_kv_get("ldap", "usn")
                .await
                .expect("kv")
                .as_deref(),
            Some(&b"42"[..]),
            "the watermark is the calling plugin's kv key"
        );
        // Another plugin with the same source name is another source.
        let r = gw
            .sync_persons(
                "other",
                wit_request("corp", false),
                vec![wit_person("W-1", &[], true)],
            )
            .await
            .expect("sync");
        assert_eq!(r.skipped.len(), 1);
        assert!(r.skipped[0].reason.contains("ldap:corp"));
        // The guard: `invalid` with the counts; a dry run reports it with the list.
        let mut req = wit_request("corp", true);
        req.max_deletions = 0;
        req.max_deletion_percent = 0;
        let m = invalid(
            gw.sync_persons("ldap", req.clone(), vec![])
                .await
                .unwrap_err(),
        );
        assert!(m.contains("delete 2 of the 2"), "{m}");
        req.dry_run = true;
        let dry = gw.sync_persons("ldap", req, vec![]).await.expect("dry run");
        assert_eq!(dry.deleted_identifiers, ["W-1", "W-2"]);
        assert!(
            dry.guard
                .as_deref()
                .is_some_and(|g| g.contains("delete 2 of the 2"))
        );
        assert!(employee(&app, "W-2").await.is_some());
    }
);

on_both!(
    gateway_commands_queue_reconcile_and_report_lost,
    |app: TestApp| async move {
        let app = app;
        // request-directory-sync: needs the queue; target named like a plugin.
        let gw = CoreGateway::new(app.store.clone());
        assert!(matches!(
            gw.request_directory_sync("ops", "ldap", true)
                .await
                .unwrap_err(),
            PluginError::Unavailable(_)
        ));
        let queue = Queue::new(app.store.clone(), QueueConfig::default()).expect("queue");
        let gw = gw.with_queue(queue.clone());
        assert!(matches!(
            gw.request_directory_sync("ops", "Bad Name", true)
                .await
                .unwrap_err(),
            PluginError::Invalid(_)
        ));
        let id = gw
            .request_directory_sync("ops", "ldap", true)
            .await
            .expect("queued");
        let job = queue
            .get(i64::try_from(id).expect("id"))
            .await
            .expect("get")
            .expect("job");
        assert_eq!(job.kind, "directory.sync");
        assert_eq!(job.payload, json!({ "plugin": "ldap", "full": true }));
        assert!(matches!(
            gw.request_directory_sync("ops", "ldap", true)
                .await
                .unwrap_err(),
            PluginError::Unavailable(_)
        ));
        assert_ne!(
            gw.request_directory_sync("ops", "ldap", false)
                .await
                .expect("an incremental one beside it"),
            id
        );

        // request-key-update: reconciles the key and lists its open jobs.
        let holder = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "Ke", "surname": "Y" }),
            )
            .await
            .expect(201)
            .id();
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
        let jobs = gw
            .request_key_update("ops", key.unsigned_abs())
            .await
            .expect("update");
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(
            (jobs[0].kind.as_str(), jobs[0].state.as_str()),
            ("remote-update", "created")
        );
        assert!(matches!(
            gw.request_key_update("ops", 999_999).await.unwrap_err(),
            PluginError::NotFound(_)
        ));

        // report-key-lost: lost, block jobs follow, a second report is fine.
        gw.report_key_lost("ops", key.unsigned_abs())
            .await
            .expect("lost");
        let k = app.get(&format!("/api/v1/keys/{key}")).await.expect(200);
        assert_eq!(k.body["status"], "lost");
        assert_eq!(k.body["lost_report"]["block"], "all");
        let jobs = app
            .get(&format!("/api/v1/jobs?target_id={cylinder}&open=true"))
            .await
            .expect(200);
        assert_eq!(
            jobs.body["items"].as_array().map(Vec::len),
            Some(1),
            "{}",
            jobs.body
        );
        gw.report_key_lost("ops", key.unsigned_abs())
            .await
            .expect("already lost is fine");
        let events = app
            .get(&format!("/api/v1/keys/{key}/events"))
            .await
            .expect(200);
        assert_eq!(
            events.body["items"][0]["actor"], "plugin ops",
            "{}",
            events.body
        );
        assert!(matches!(
            gw.report_key_lost("ops", 999_999).await.unwrap_err(),
            PluginError::NotFound(_)
        ));
    }
);

/// Size of the timing run (`LOCKGATE_SYNC_N`, default 5 000; e.g. 100 000 in release).
fn timing_n() -> usize {
    std::env::var("LOCKGATE_SYNC_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

on_both!(
    large_sync_then_unchanged_resync,
    |app: TestApp| async move {
        let app = app;
        let n = timing_n();
        let batch = || -> Vec<SyncedPerson> {
            (0..n)
                .map(|i| {
                    let mut p = person(&format!("T-{i:07}"), &format!("Surname {i}"));
                    p.person.department = Some(format!("Dept {}", i % 50));
                    p.person.city = Some("Berlin".into());
                    p
                })
                .collect()
        };
        let t = Instant::now();
        let r = sync(&app, request("ldap:big", true, batch()))
            .await
            .expect("sync");
        let create = t.elapsed();
        assert_eq!(r.created, n);
        let t = Instant::now();
        let r = sync(&app, request("ldap:big", true, batch()))
            .await
            .expect("resync");
        let unchanged = t.elapsed();
        assert_eq!((r.unchanged, r.updated, r.deleted), (n, 0, 0));
        let mut changed = batch();
        for p in changed.iter_mut().step_by(10) {
            p.person.city = Some("Hamburg".into());
        }
        let t = Instant::now();
        let r = sync(&app, request("ldap:big", true, changed))
            .await
            .expect("resync");
        let update = t.elapsed();
        assert_eq!(r.updated, n.div_ceil(10));
        eprintln!(
            "directory sync of {n} persons on {:?}: create {create:?}, unchanged {unchanged:?}, 10 % updated {update:?}",
            app.db
        );
    }
);

on_both!(
    invalid_entries_are_skipped_by_default_and_stored_persons_kept,
    |app: TestApp| async move {
        let app = app;
        let sys = app.store.system(app.system_id).await.expect("system");
        let sync = |persons: Vec<SyncedPerson>, full: bool| DirectorySync {
            on_invalid: OnInvalid::Skip,
            ..request("corp", full, persons)
        };
        // First sync: three good persons.
        let r = app
            .store
            .sync_directory(
                &sys,
                &actor(),
                sync(
                    vec![
                        person("S-1", "One"),
                        person("S-2", "Two"),
                        person("S-3", "Three"),
                    ],
                    true,
                ),
            )
            .await
            .expect("sync");
        assert_eq!((r.created, r.invalid), (3, 0));
        // Then S-2's entry turns invalid (bad e-mail), one entry has no identifier and one
        // repeats S-1: with `skip` they are listed with field and reason, the rest is applied,
        // and the full sync deletes neither S-2 (kept as stored) nor anyone else.
        let mut bad = person("S-2", "Two");
        bad.person.email = Some("not-an-address".into());
        let mut nameless = person("", "Nobody");
        nameless.person.identifier = None;
        let r = app
            .store
            .sync_directory(
                &sys,
                &actor(),
                sync(
                    vec![
                        person("S-1", "Uno"),
                        bad,
                        nameless,
                        person("s-1", "Again"),
                        person("S-3", "Three"),
                        person("S-4", "Four"),
                    ],
                    true,
                ),
            )
            .await
            .expect("sync");
        assert_eq!(
            (r.staged, r.created, r.updated, r.deleted, r.invalid),
            (6, 1, 1, 0, 3),
            "{r:?}"
        );
        let reasons: Vec<(String, String)> = r
            .skipped
            .iter()
            .map(|s| (s.identifier.clone(), s.reason.clone()))
            .collect();
        assert!(
            reasons
                .iter()
                .any(|(i, why)| i == "S-2" && why.contains("email")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|(i, why)| i == "persons[2]" && why.contains("identifier: is required")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|(i, why)| i == "s-1" && why.contains("already staged as persons[0]")),
            "{reasons:?}"
        );
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE kind = 'employee' AND system_id = $1 AND status = 'active'")
            .bind(app.system_id)
            .fetch_one(app.store.pool())
            .await
            .expect("count");
        assert_eq!(count, 4, "S-1, S-2 (kept), S-3, S-4");
        // The same batch with `refuse`: nothing written, every invalid entry named.
        let mut bad = person("S-3", "Three");
        bad.person.email = Some("nope".into());
        let err = app
            .store
            .sync_directory(
                &sys,
                &actor(),
                DirectorySync {
                    on_invalid: OnInvalid::Refuse,
                    ..request("corp", true, vec![person("S-5", "Five"), bad])
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid(v) if v.errors.iter().any(|e| e.field == "persons[1].email")),
            "{err:?}"
        );
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM objects WHERE kind = 'employee' AND system_id = $1",
        )
        .bind(app.system_id)
        .fetch_one(app.store.pool())
        .await
        .expect("count");
        assert_eq!(count, 4, "nothing written");
    }
);
