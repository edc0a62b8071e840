//! Defined state → jobs → confirmations → actual state, through the API on both databases.

use chrono::Utc;
use lockgate_engine::{
    opening::{CylinderSide, OpeningContext, can_open},
    state::{CylinderFacts, KeyClock, KeyFacts, Side},
};
use lockgate_model::{cylinder::FactoryFeatures, cylinder::SideKind};
use lockgate_tests::*;
use serde_json::{Value, json};

struct Site {
    dynamic_group: i64,
    profile: i64,
    cylinders: Vec<i64>,
    key: i64,
}

async fn site(app: &TestApp) -> Site {
    let dynamic_group = app.key_group("Dynamic", "dynamic").await;
    let mut cylinders = Vec::new();
    for i in 0..3 {
        // A typical remote system: every cylinder admits the dynamic key group.
        let c = app
            .post("/api/v1/cylinders", json!({ "name": format!("Door {i}"), "marking": format!("C-{i}"), "side_a": "electronic", "firmware": "10.2", "access_list": { "key_groups": [{ "key_group_id": dynamic_group }] } }))
            .await
            .expect(201)
            .id();
        cylinders.push(c);
    }
    let profile = app
        .post(
            "/api/v1/access-profiles",
            json!({ "name": "Office", "cylinder_ids": [cylinders[0]] }),
        )
        .await
        .expect(201)
        .id();
    let key = app
        .post("/api/v1/keys", json!({ "name": "Dyn", "marking": "D-1", "type": "dynamic", "generation": "2", "firmware": "12.7", "key_group_id": dynamic_group, "access_list_capacity": 2, "access_profile_ids": [profile] }))
        .await
        .expect(201)
        .id();
    Site {
        dynamic_group,
        profile,
        cylinders,
        key,
    }
}

async fn open_jobs(app: &TestApp) -> Vec<Value> {
    app.get("/api/v1/jobs?open=true").await.expect(200).body["items"]
        .as_array()
        .expect("items")
        .clone()
}

on_both!(
    changes_become_jobs_and_confirmations_actual_state,
    |app: TestApp| async move {
        let s = site(&app).await;
        let jobs = open_jobs(&app).await;
        let key_jobs: Vec<_> = jobs
            .iter()
            .filter(|j| j["kind"] == "remote_update")
            .collect();
        let cyl_jobs: Vec<_> = jobs
            .iter()
            .filter(|j| j["kind"] == "cylinder_programming")
            .collect();
        assert_eq!(key_jobs.len(), 1);
        assert_eq!(key_jobs[0]["target_id"], s.key);
        assert_eq!(
            key_jobs[0]["program"]["access"].as_array().map(Vec::len),
            Some(1)
        );
        assert_eq!(cyl_jobs.len(), 3, "each cylinder gets its access list");
        assert!(
            cyl_jobs
                .iter()
                .all(|j| j["actions"] == json!(["access_list"]))
        );
        let st = app
            .get(&format!("/api/v1/keys/{}/update-status", s.key))
            .await
            .expect(200);
        assert_eq!(st.body["status"], "update_required");

        app.execute_open_jobs().await;
        let left = open_jobs(&app).await;
        assert!(left.is_empty(), "{left:#?}");
        assert_eq!(
            app.get(&format!("/api/v1/keys/{}/update-status", s.key))
                .await
                .body["status"],
            "up_to_date"
        );
        let key = app.get(&format!("/api/v1/keys/{}", s.key)).await.body;
        assert!(key["last_remote_update"].is_string());
        // A firmware upgrade changes the key's structure: only a local PD can re-edit it.
        let status_path = format!("/api/v1/keys/{}/update-status", s.key);
        app.patch(
            &format!("/api/v1/keys/{}", s.key),
            json!({ "firmware": "12.9" }),
        )
        .await
        .expect(200);
        assert_eq!(
            app.get(&status_path).await.expect(200).body["status"],
            "re_edition_required"
        );
        app.post(&format!("/api/v1/keys/{}/re-edited", s.key), json!({}))
            .await
            .expect(200);
        assert_eq!(
            app.get(&status_path).await.expect(200).body["status"],
            "up_to_date"
        );
        // Nothing changed: a reconciliation run creates nothing.
        let r = app.post("/api/v1/reconcile", json!({})).await.expect(200);
        assert_eq!(
            r.body,
            json!({ "created": 0, "replaced": 0, "cancelled": 0, "capacity_exceeded": [] })
        );

        // The actual state now opens exactly the profile's cylinder.
        let sys = app.store.system(app.system_id).await.expect("system");
        let actual = app.store.actual_state(app.system_id).await.expect("actual");
        let kp = &actual.keys[&s.key];
        let facts = KeyFacts {
            id: s.key,
            key_type: lockgate_model::key::KeyType::Dynamic,
            generation: Some(lockgate_model::key::Generation::Gen2),
            firmware: Some("12.7".parse().expect("fw")),
            connect: false,
            key_group: Some(s.dynamic_group),
            cutting: None,
            capacity: Some(2),
            online_open: false,
            override_key: false,
        };
        let ctx = OpeningContext {
            base_time_zone: &sys.fixed.base_time_zone,
            previous_insertion: None,
        };
        let opens: Vec<bool> = s
            .cylinders
            .iter()
            .map(|c| {
                let cf = CylinderFacts {
                    id: *c,
                    side_a: SideKind::Electronic,
                    side_b: None,
                    cutting: None,
                    firmware: None,
                    time_zone: None,
                    factory: FactoryFeatures::default(),
                };
                can_open(
                    &facts,
                    kp,
                    &KeyClock::default(),
                    &CylinderSide {
                        facts: &cf,
                        program: &actual.cylinders[c],
                        side: Side::A,
                    },
                    Utc::now(),
                    &ctx,
                )
                .is_ok()
            })
            .collect();
        assert_eq!(opens, [true, false, false]);

        // Changing the profile makes a remote update job, not cylinder programming.
        app.patch(
            &format!("/api/v1/access-profiles/{}", s.profile),
            json!({ "cylinder_ids": [s.cylinders[0], s.cylinders[1]] }),
        )
        .await
        .expect(200);
        let jobs = open_jobs(&app).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0]["kind"], "remote_update");
        // A newer change before the key picked it up replaces the pending job.
        app.patch(
            &format!("/api/v1/access-profiles/{}", s.profile),
            json!({ "cylinder_ids": [s.cylinders[1]] }),
        )
        .await
        .expect(200);
        let jobs = open_jobs(&app).await;
        assert_eq!(jobs.len(), 1);
        let all = app
            .get(&format!("/api/v1/jobs?target_id={}", s.key))
            .await
            .body["items"]
            .as_array()
            .expect("items")
            .clone();
        assert_eq!(all.iter().filter(|j| j["state"] == "replaced").count(), 1);
        // Back to what the key holds: the pending job is cancelled.
        app.patch(
            &format!("/api/v1/access-profiles/{}", s.profile),
            json!({ "cylinder_ids": [s.cylinders[0]] }),
        )
        .await
        .expect(200);
        assert!(open_jobs(&app).await.is_empty());
    }
);

on_both!(
    capacity_exceeded_is_flagged_not_written,
    |app: TestApp| async move {
        let s = site(&app).await;
        app.execute_open_jobs().await;
        // Capacity 2: three cylinders do not fit.
        app.patch(
            &format!("/api/v1/keys/{}", s.key),
            json!({ "cylinder_ids": [s.cylinders[1], s.cylinders[2]] }),
        )
        .await
        .expect(200);
        assert_eq!(
            app.get(&format!("/api/v1/keys/{}/update-status", s.key))
                .await
                .body["status"],
            "capacity_exceeded"
        );
        assert!(
            open_jobs(&app)
                .await
                .iter()
                .all(|j| j["target_id"] != s.key)
        );
        let r = app.post("/api/v1/reconcile", json!({})).await.expect(200);
        assert_eq!(r.body["capacity_exceeded"], json!([s.key]));
        // The periodic full reconciliation notifies the administrators, once a day per key.
        for _ in 0..2 {
            lockgate::background::reconcile_all(&app.store, Utc::now())
                .await
                .expect("reconcile");
        }
        let notes = sqlx::query_scalar::<_, String>(
            "SELECT payload FROM outbox WHERE topic = 'notify.capacity_exceeded'",
        )
        .fetch_all(app.store.pool())
        .await
        .unwrap();
        assert_eq!(notes.len(), 1, "once per key and day: {notes:?}");
        let note: Value = serde_json::from_str(&notes[0]).unwrap();
        assert_eq!(note["key_id"], s.key);
    }
);

on_both!(
    lost_key_is_blocked_and_found_key_unblocked,
    |app: TestApp| async move {
        let s = site(&app).await;
        app.execute_open_jobs().await;
        app.patch(
            &format!("/api/v1/keys/{}", s.key),
            json!({ "status": "lost" }),
        )
        .await
        .expect(200);
        let jobs = open_jobs(&app).await;
        assert_eq!(
            jobs.len(),
            3,
            "a block job on every cylinder admitting the key"
        );
        assert!(jobs.iter().all(|j| j["kind"] == "cylinder_programming"
            && j["actions"] == json!(["block"])
            && j["priority"] == "high"));
        // Found before the blocks were executed: the block jobs are cancelled.
        app.patch(
            &format!("/api/v1/keys/{}", s.key),
            json!({ "status": "in_stock" }),
        )
        .await
        .expect(200);
        assert!(open_jobs(&app).await.is_empty());
        // Lost again, blocks executed, then found: the blocks are reversed by programming.
        app.patch(
            &format!("/api/v1/keys/{}", s.key),
            json!({ "status": "lost" }),
        )
        .await
        .expect(200);
        app.execute_open_jobs().await;
        app.patch(
            &format!("/api/v1/keys/{}", s.key),
            json!({ "status": "in_stock" }),
        )
        .await
        .expect(200);
        let jobs = open_jobs(&app).await;
        assert_eq!(jobs.len(), 3);
        assert!(jobs.iter().all(|j| j["actions"] == json!(["unblock"])));
    }
);

on_both!(
    block_jobs_are_carried_by_capable_user_keys,
    |app: TestApp| async move {
        let s = site(&app).await;
        app.execute_open_jobs().await;
        let carrier = app
            .post("/api/v1/keys", json!({ "name": "Carrier", "marking": "D-2", "type": "dynamic", "generation": "2", "firmware": "12.7", "key_group_id": s.dynamic_group, "access_list_capacity": 5 }))
            .await
            .expect(201)
            .id();
        let old_fw = app
            .post("/api/v1/keys", json!({ "name": "Old", "marking": "D-3", "type": "dynamic", "generation": "2", "firmware": "12.1", "key_group_id": s.dynamic_group }))
            .await
            .expect(201)
            .id();
        app.execute_open_jobs().await;
        app.post(&format!("/api/v1/keys/{}/lost", s.key), json!({}))
            .await
            .expect(200);
        let block = open_jobs(&app).await[0]["id"].as_i64().expect("job id");
        let carry = format!("/api/v1/jobs/{block}/carry");
        // Off by default.
        let r = app
            .post(&carry, json!({ "key_id": carrier }))
            .await
            .expect(409);
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap_or("")
                .contains("block_lost_keys_with_user_keys")
        );
        app.patch(
            "/api/v1/system/settings",
            json!({ "block_lost_keys_with_user_keys": true }),
        )
        .await
        .expect(200);
        // Firmware before 12.2 cannot carry; the lost key itself cannot either.
        app.post(&carry, json!({ "key_id": old_fw }))
            .await
            .expect(409);
        app.post(&carry, json!({ "key_id": s.key }))
            .await
            .expect(422);
        let r = app
            .post(&carry, json!({ "key_id": carrier }))
            .await
            .expect(200);
        assert_eq!(r.body["state"], "carried");
        assert_eq!(r.body["carried_by"], carrier);
        // Carried once: not again.
        app.post(&carry, json!({ "key_id": carrier }))
            .await
            .expect(409);
        app.post(&format!("/api/v1/jobs/{block}/confirm"), json!({}))
            .await
            .expect(200);
    }
);

on_both!(
    cylinder_jobs_are_loaded_assigned_failed_and_recreated,
    |app: TestApp| async move {
        let s = site(&app).await;
        let jobs = open_jobs(&app).await;
        let cyl_job = jobs
            .iter()
            .find(|j| j["kind"] == "cylinder_programming")
            .expect("a cylinder job")["id"]
            .as_i64()
            .expect("id");
        let (other_ck, other) = app
            .admin_with(
                "P-1",
                json!({ "cylinder": "list", "cylinder_programming": "full" }),
                &[app.default_domain],
            )
            .await;
        let as_other = |path: String, body: Value| {
            let (app, other) = (&app, other.clone());
            async move {
                app.call(axum::http::Method::POST, &path, Some(&other), Some(body))
                    .await
            }
        };
        // Only onto the C-key you are using.
        as_other(
            format!("/api/v1/jobs/{cyl_job}/load"),
            json!({ "c_key_id": app.master_c_key_id }),
        )
        .await
        .expect(403);
        // Assigned to the other administrator's C-key: the master can no longer load it.
        app.post(
            &format!("/api/v1/jobs/{cyl_job}/assign"),
            json!({ "c_key_id": other_ck }),
        )
        .await
        .expect(200);
        let r = app
            .post(
                &format!("/api/v1/jobs/{cyl_job}/load"),
                json!({ "c_key_id": app.master_c_key_id }),
            )
            .await
            .expect(409);
        assert_eq!(r.body["reason"], "assigned_to_other");
        let loaded = as_other(
            format!("/api/v1/jobs/{cyl_job}/load"),
            json!({ "c_key_id": other_ck }),
        )
        .await
        .expect(200);
        assert_eq!(loaded.body["state"], "loaded");
        assert_eq!(loaded.body["loaded_on"], other_ck);
        // Loaded once: the cylinder is locked by that C-key.
        app.post(
            &format!("/api/v1/jobs/{cyl_job}/load"),
            json!({ "c_key_id": app.master_c_key_id }),
        )
        .await
        .expect(409);
        // It fails at the door and is recreated for the next attempt.
        as_other(
            format!("/api/v1/jobs/{cyl_job}/fail"),
            json!({ "reason": "" }),
        )
        .await
        .expect(422);
        let r = as_other(
            format!("/api/v1/jobs/{cyl_job}/fail"),
            json!({ "reason": "cylinder battery empty" }),
        )
        .await
        .expect(200);
        assert_eq!(r.body["job"]["state"], "failed");
        assert_eq!(r.body["recreated"], 1);
        let target = r.body["job"]["target_id"].as_i64().expect("target");
        let again: Vec<Value> = open_jobs(&app)
            .await
            .into_iter()
            .filter(|j| j["target_id"] == target)
            .collect();
        assert_eq!(again.len(), 1);
        assert_ne!(again[0]["id"], cyl_job);
        assert!(s.cylinders.contains(&target));
        // The failure is an event (for the MQTT bridge) and a notification for the
        // administrators (outbox), both written with the state change.
        let id = cyl_job;
        let notified = sqlx::query_scalar::<_, String>(
            "SELECT payload FROM outbox WHERE message_id = $1 AND topic = 'notify.job_failed'",
        )
        .bind(format!("job-failed:{id}"))
        .fetch_one(app.store.pool())
        .await
        .expect("a notify.job_failed message");
        let notified: Value = serde_json::from_str(&notified).unwrap();
        assert_eq!(notified["reason"], "cylinder battery empty");
        assert_eq!(notified["system_name"], "Test site");
        let actions = sqlx::query_scalar::<_, String>(
            "SELECT action FROM events WHERE object_kind = 'job' AND object_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(app.store.pool())
        .await
        .unwrap();
        assert_eq!(actions, ["assigned", "loaded", "failed"]);
        // The assignment told the other C-key's holder (recipients resolved from its holder).
        let assigned = sqlx::query_scalar::<_, String>(
            "SELECT payload FROM outbox WHERE message_id = $1 AND topic = 'notify.job_assigned'",
        )
        .bind(format!("job-assigned:{id}:{other_ck}"))
        .fetch_one(app.store.pool())
        .await
        .expect("a notify.job_assigned message");
        let assigned: Value = serde_json::from_str(&assigned).unwrap();
        assert!(assigned["recipients"].is_array(), "{assigned}");
        assert_eq!(assigned["target_id"], target);
    }
);

on_both!(
    reprogramming_needs_the_right_and_survives_replacement,
    |app: TestApp| async move {
        let s = site(&app).await;
        app.execute_open_jobs().await;
        let r = app
            .post(
                &format!("/api/v1/cylinders/{}/reprogram", s.cylinders[0]),
                json!({}),
            )
            .await
            .expect(201);
        assert_eq!(r.body["actions"], json!(["reprogram"]));
        let job = r.id();
        // A change while the request is pending replaces the job; the reprogramming stays.
        app.patch(
            &format!("/api/v1/cylinders/{}", s.cylinders[0]),
            json!({ "access_list": { "key_groups": [] } }),
        )
        .await
        .expect(200);
        let open: Vec<Value> = open_jobs(&app)
            .await
            .into_iter()
            .filter(|j| j["target_id"] == s.cylinders[0])
            .collect();
        assert_eq!(open.len(), 1);
        assert_ne!(open[0]["id"], job);
        assert_eq!(open[0]["actions"], json!(["access_list", "reprogram"]));
        // A C-key without the reprogramming right cannot load it; the master can.
        let (ck, token) = app
            .admin_with(
                "P-2",
                json!({ "cylinder": "list", "cylinder_programming": "full" }),
                &[app.default_domain],
            )
            .await;
        let r = app
            .call(
                axum::http::Method::POST,
                &format!("/api/v1/jobs/{}/load", open[0]["id"]),
                Some(&token),
                Some(json!({ "c_key_id": ck })),
            )
            .await
            .expect(409);
        assert_eq!(r.body["reason"], "needs_reprogramming_right");
        app.post(
            &format!("/api/v1/jobs/{}/load", open[0]["id"]),
            json!({ "c_key_id": app.master_c_key_id }),
        )
        .await
        .expect(200);
    }
);

on_both!(
    audit_trail_requests_wait_for_an_approver,
    |app: TestApp| async move {
        let fixed = lockgate_model::system::FixedSettings {
            remote: true,
            cylinder_groups: true,
            base_time_zone: "UTC".into(),
            audit_trail_approvals: true,
        };
        let other = app
            .store
            .init_system("Approvals site", fixed)
            .await
            .expect("system");
        let call = |m: axum::http::Method, path: String, token: String, body: Option<Value>| {
            let app = &app;
            async move { app.call(m, &path, Some(&token), body).await }
        };
        use axum::http::Method;
        let t = other.token.clone();
        let c = call(
            Method::POST,
            "/api/v1/cylinders".into(),
            t.clone(),
            Some(json!({ "name": "Vault", "marking": "V-1", "side_a": "electronic" })),
        )
        .await
        .expect(201)
        .id();
        let req = call(
            Method::POST,
            format!("/api/v1/cylinders/{c}/audit-trail-request"),
            t.clone(),
            Some(json!({})),
        )
        .await
        .expect(201);
        assert_eq!(req.body["state"], "awaiting_approval");
        let job = req.id();
        // One open request per object.
        call(
            Method::POST,
            format!("/api/v1/cylinders/{c}/audit-trail-request"),
            t.clone(),
            Some(json!({})),
        )
        .await
        .expect(409);
        // The super administrator never approves; the approver role does.
        call(
            Method::POST,
            format!("/api/v1/jobs/{job}/approve"),
            t.clone(),
            Some(json!({ "approved": true })),
        )
        .await
        .expect(403);
        let approver_role = call(
            Method::GET,
            "/api/v1/roles?q=approver".into(),
            t.clone(),
            None,
        )
        .await
        .body["items"][0]["id"]
            .as_i64()
            .expect("approver role");
        let group = call(
            Method::GET,
            "/api/v1/key-groups?type=normal_c_key".into(),
            t.clone(),
            None,
        )
        .await
        .body["items"][0]["id"]
            .as_i64()
            .expect("group");
        let ck = call(Method::POST, "/api/v1/c-keys".into(), t.clone(), Some(json!({ "name": "Approver", "marking": "A-1", "kind": "normal", "key_group_id": group, "role_ids": [approver_role], "domain_ids": [other.default_domain_id] }))).await.expect(201).id();
        // The super administrator may not issue a token reaching beyond its own rights (approving):
        // the operator issues it (as `lockgate token` does).
        call(
            Method::POST,
            "/api/v1/tokens".into(),
            t.clone(),
            Some(json!({ "name": "approver", "c_key_id": ck })),
        )
        .await
        .expect(403);
        let approver = app
            .store
            .create_token(other.system.id, ck, ck, "approver", None)
            .await
            .expect("token")
            .1;
        let done = call(
            Method::POST,
            format!("/api/v1/jobs/{job}/approve"),
            approver.clone(),
            Some(json!({ "approved": true })),
        )
        .await
        .expect(200);
        // Approved, the cylinder's read joins its programming job (manual §8.5): the
        // request is replaced by that job, which carries the audit-trail action.
        assert_eq!(done.body["state"], "replaced", "{}", done.body);
        let by = done.body["replaced_by"].as_i64().expect("replaced_by");
        let open = call(
            Method::GET,
            format!("/api/v1/jobs?target_id={c}&open=true"),
            t.clone(),
            None,
        )
        .await
        .expect(200);
        assert!(
            open.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|j| j["id"] == by
                    && j["kind"] == "cylinder_programming"
                    && j["actions"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == "audit_trail"))),
            "{}",
            open.body
        );
        call(
            Method::POST,
            format!("/api/v1/jobs/{job}/approve"),
            approver.clone(),
            Some(json!({ "approved": false })),
        )
        .await
        .expect(409);
        // Without approvals (the harness system), a request is created directly.
        let s = site(&app).await;
        let r = app
            .post(
                &format!("/api/v1/cylinders/{}/audit-trail-request", s.cylinders[0]),
                json!({}),
            )
            .await
            .expect(201);
        assert_eq!(r.body["state"], "created");
        // Normal keys keep no audit trail.
        let g = app.key_group("Staff", "normal").await;
        let n = app.post("/api/v1/keys", json!({ "name": "N", "marking": "N-1", "type": "normal", "generation": "2", "key_group_id": g })).await.expect(201).id();
        app.post(&format!("/api/v1/keys/{n}/audit-trail-request"), json!({}))
            .await
            .expect(409);
    }
);

on_both!(
    c_key_access_changes_need_the_master,
    |app: TestApp| async move {
        let s = site(&app).await;
        app.execute_open_jobs().await;
        let c_keys = app.get("/api/v1/key-groups?type=normal_c_key").await.body["items"][0]["id"]
            .as_i64()
            .expect("C-key group");
        app.patch(&format!("/api/v1/cylinders/{}", s.cylinders[1]), json!({ "access_list": { "key_groups": [{ "key_group_id": s.dynamic_group }, { "key_group_id": c_keys }] } })).await.expect(200);
        let job = open_jobs(&app)
            .await
            .into_iter()
            .find(|j| j["target_id"] == s.cylinders[1])
            .expect("job")["id"]
            .as_i64()
            .expect("id");
        let (ck, token) = app
            .admin_with(
                "P-3",
                json!({ "cylinder": "list", "cylinder_programming": "full" }),
                &[app.default_domain],
            )
            .await;
        let r = app
            .call(
                axum::http::Method::POST,
                &format!("/api/v1/jobs/{job}/load"),
                Some(&token),
                Some(json!({ "c_key_id": ck })),
            )
            .await
            .expect(409);
        assert_eq!(r.body["reason"], "needs_master");
        app.post(
            &format!("/api/v1/jobs/{job}/load"),
            json!({ "c_key_id": app.master_c_key_id }),
        )
        .await
        .expect(200);
    }
);
