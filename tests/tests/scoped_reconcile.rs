//! Scoped reconciliation: after each change through the API (which reconciles only the
//! keys and cylinders the change can reach), a full reconciliation of the whole system
//! must find nothing left to do, and the scoped run must have planned jobs where the
//! change reaches.

use chrono::{Duration, Utc};
use lockgate_store::{
    Actor,
    reconciliation::{KeyTargets, ReconcileReport},
};
use lockgate_tests::*;
use serde_json::json;

struct Site {
    dynamic_group: i64,
    cylinders: Vec<i64>,
    profiles: Vec<i64>,
    persons: Vec<i64>,
    keys: Vec<i64>,
}

/// Open jobs per kind, as (target, job id) pairs.
async fn open(app: &TestApp, kind: &str) -> Vec<(i64, i64)> {
    let jobs = app
        .get("/api/v1/jobs?open=true&limit=1000")
        .await
        .expect(200);
    let mut out: Vec<(i64, i64)> = jobs.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|j| j["kind"] == kind)
        .map(|j| {
            (
                j["target_id"].as_i64().expect("t"),
                j["id"].as_i64().expect("id"),
            )
        })
        .collect();
    out.sort_unstable();
    out
}

async fn full_reconcile(app: &TestApp) -> ReconcileReport {
    let sys = app.store.system(app.system_id).await.expect("system");
    app.store
        .reconcile(&sys, &Actor::system(), Utc::now())
        .await
        .expect("full reconcile")
}

/// The scoped run after the last change left nothing for a full run to do.
async fn assert_complete(app: &TestApp, after: &str) {
    assert_eq!(
        full_reconcile(app).await,
        ReconcileReport::default(),
        "a full reconciliation still found work after: {after}"
    );
}

async fn site(app: &TestApp) -> Site {
    let dynamic_group = app.key_group("Dynamic", "dynamic").await;
    let mut cylinders = Vec::new();
    for i in 0..4 {
        let c = app
            .post("/api/v1/cylinders", json!({ "name": format!("Door {i}"), "marking": format!("C-{i}"), "side_a": "electronic", "firmware": "10.2", "access_list": { "key_groups": [{ "key_group_id": dynamic_group }] } }))
            .await
            .expect(201)
            .id();
        cylinders.push(c);
    }
    let mut profiles = Vec::new();
    for (i, c) in cylinders.iter().take(3).enumerate() {
        profiles.push(
            app.post(
                "/api/v1/access-profiles",
                json!({ "name": format!("Profile {i}"), "cylinder_ids": [c] }),
            )
            .await
            .expect(201)
            .id(),
        );
    }
    let mut persons = Vec::new();
    for (i, p) in profiles.iter().take(2).enumerate() {
        persons.push(
            app.post(
                "/api/v1/employees",
                json!({ "first_name": "P", "surname": format!("Person {i}"), "access_profile_ids": [p] }),
            )
            .await
            .expect(201)
            .id(),
        );
    }
    let mut keys = Vec::new();
    for i in 0..4 {
        let mut body = json!({ "name": format!("Key {i}"), "marking": format!("K-{i}"), "type": "dynamic", "generation": "2", "firmware": "12.7", "key_group_id": dynamic_group });
        if let Some(holder) = persons.get(i) {
            body["holder_id"] = json!(holder);
            body["status"] = json!("handed_out");
        }
        if i == 2 {
            body["access_profile_ids"] = json!([profiles[2]]);
        }
        keys.push(app.post("/api/v1/keys", body).await.expect(201).id());
    }
    app.execute_open_jobs().await;
    assert_complete(app, "building the site").await;
    Site {
        dynamic_group,
        cylinders,
        profiles,
        persons,
        keys,
    }
}

on_both!(
    profile_change_reaches_holders_keys_and_temporary_groups,
    |app: TestApp| async move {
        let s = site(&app).await;
        // A temporary group in force gives profile 0 to key 3 too.
        let now = Utc::now();
        app.post(
            "/api/v1/temporary-access-groups",
            json!({ "name": "Fair", "access_profile_ids": [s.profiles[0]], "key_ids": [s.keys[3]], "start": now - Duration::hours(1), "end": now + Duration::days(1) }),
        )
        .await
        .expect(201);
        assert_complete(&app, "creating a temporary group").await;
        app.execute_open_jobs().await;
        // Profile 0 reaches key 0 (through its holder) and key 3 (temporary group).
        app.patch(
            &format!("/api/v1/access-profiles/{}", s.profiles[0]),
            json!({ "cylinder_ids": [s.cylinders[0], s.cylinders[3]] }),
        )
        .await
        .expect(200);
        let updated: Vec<i64> = open(&app, "remote_update")
            .await
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(updated, vec![s.keys[0], s.keys[3]]);
        assert!(open(&app, "cylinder_programming").await.is_empty());
        assert_complete(&app, "changing a profile").await;
        // Changing it again replaces the pending jobs instead of adding to them.
        let before = open(&app, "remote_update").await;
        app.patch(
            &format!("/api/v1/access-profiles/{}", s.profiles[0]),
            json!({ "cylinder_ids": [s.cylinders[3]] }),
        )
        .await
        .expect(200);
        let after = open(&app, "remote_update").await;
        assert_eq!(after.len(), 2);
        assert!(
            after.iter().all(|a| !before.contains(a)),
            "pending jobs replaced"
        );
        assert_complete(&app, "changing a profile again").await;
        // Back to the programs the keys hold: the pending jobs are cancelled.
        app.patch(
            &format!("/api/v1/access-profiles/{}", s.profiles[0]),
            json!({ "cylinder_ids": [s.cylinders[0]] }),
        )
        .await
        .expect(200);
        assert!(open(&app, "remote_update").await.is_empty());
        assert_complete(&app, "reverting a profile").await;
    }
);

on_both!(
    person_key_and_cylinder_changes_reach_what_they_should,
    |app: TestApp| async move {
        let s = site(&app).await;
        // A person's profiles reach the key they hold, and only that key.
        app.patch(
            &format!("/api/v1/employees/{}", s.persons[1]),
            json!({ "access_profile_ids": [s.profiles[1], s.profiles[2]] }),
        )
        .await
        .expect(200);
        let updated: Vec<i64> = open(&app, "remote_update")
            .await
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(updated, vec![s.keys[1]]);
        assert_complete(&app, "changing a person's profiles").await;
        app.execute_open_jobs().await;
        // Taking the profiles away from the person takes them from the key.
        app.patch(
            &format!("/api/v1/employees/{}", s.persons[1]),
            json!({ "access_profile_ids": [] }),
        )
        .await
        .expect(200);
        let updated: Vec<i64> = open(&app, "remote_update")
            .await
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(updated, vec![s.keys[1]]);
        assert_complete(&app, "clearing a person's profiles").await;
        app.execute_open_jobs().await;
        // A key's own access.
        app.patch(
            &format!("/api/v1/keys/{}", s.keys[3]),
            json!({ "cylinder_ids": [s.cylinders[2]] }),
        )
        .await
        .expect(200);
        assert_eq!(open(&app, "remote_update").await.len(), 1);
        assert_complete(&app, "changing a key's access").await;
        app.execute_open_jobs().await;
        // Moving a key to another group: cylinders list groups, not keys, so only a
        // cylinder with an individual entry for the key changes (the entry is no
        // longer redundant and must be written).
        let other_group = app.key_group("Dynamic B", "dynamic").await;
        app.patch(
            &format!("/api/v1/cylinders/{}", s.cylinders[0]),
            json!({ "access_list": { "key_groups": [{ "key_group_id": s.dynamic_group }], "key_ids": [s.keys[2]] } }),
        )
        .await
        .expect(200);
        // Redundant: key 2 is in the admitted group, so its individual entry is dropped
        // (manual §8.1.2) and nothing changes on the cylinder.
        assert!(open(&app, "cylinder_programming").await.is_empty());
        assert_complete(&app, "adding a redundant individual entry").await;
        app.patch(
            &format!("/api/v1/keys/{}", s.keys[2]),
            json!({ "key_group_id": other_group }),
        )
        .await
        .expect(200);
        let cylinders: Vec<i64> = open(&app, "cylinder_programming")
            .await
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert!(
            cylinders.is_empty(),
            "the dropped individual entry does not come back: the key leaves with its group ({cylinders:?})"
        );
        assert_complete(&app, "moving a key out of its group").await;
        app.execute_open_jobs().await;
        // A cylinder's own access list: that cylinder only, no key.
        app.patch(
            &format!("/api/v1/cylinders/{}", s.cylinders[3]),
            json!({ "access_list": { "key_groups": [] } }),
        )
        .await
        .expect(200);
        assert_eq!(open(&app, "cylinder_programming").await.len(), 1);
        assert!(open(&app, "remote_update").await.is_empty());
        assert_complete(&app, "changing a cylinder's access list").await;
        app.execute_open_jobs().await;
        // A lost key is blocked on the cylinders admitting it; its own updates stop.
        app.post(
            &format!("/api/v1/keys/{}/lost", s.keys[0]),
            json!({ "block": "all" }),
        )
        .await
        .expect(200);
        let blocked: Vec<i64> = open(&app, "cylinder_programming")
            .await
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            blocked,
            vec![s.cylinders[0], s.cylinders[1], s.cylinders[2]]
        );
        assert_complete(&app, "reporting a key lost").await;
    }
);

on_both!(
    scope_of_change_names_the_reached_targets,
    |app: TestApp| async move {
        let s = site(&app).await;
        let scope = app
            .store
            .scope_of_change(
                app.system_id,
                lockgate_model::ObjectKind::AccessProfile,
                &[s.profiles[2]],
            )
            .await
            .expect("scope");
        assert_eq!(
            scope.keys,
            KeyTargets::Only([s.keys[2]].into_iter().collect())
        );
        assert!(!scope.cylinders);
        let scope = app
            .store
            .scope_of_change(
                app.system_id,
                lockgate_model::ObjectKind::Employee,
                &[s.persons[0]],
            )
            .await
            .expect("scope");
        assert_eq!(
            scope.keys,
            KeyTargets::Only([s.keys[0]].into_iter().collect())
        );
        let scope = app
            .store
            .scope_of_change(
                app.system_id,
                lockgate_model::ObjectKind::Cylinder,
                &[s.cylinders[0]],
            )
            .await
            .expect("scope");
        assert_eq!(scope.keys, KeyTargets::Only(Default::default()));
        assert!(scope.cylinders);
    }
);
