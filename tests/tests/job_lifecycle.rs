//! The typed job lifecycle through the application layer, on both databases: each test is
//! a defect the old split between store, API and engine caused (issue "one owner for every
//! change"), and fails on the code before it.

use axum::http::Method;
use lockgate_tests::*;
use serde_json::{Value, json};
use sqlx::Row;

/// A cylinder admitting a dynamic key group, a dynamic key in that group, all jobs executed.
struct Site {
    group: i64,
    cylinder: i64,
    key: i64,
}

async fn site(app: &TestApp) -> Site {
    let group = app.key_group("Dynamic", "dynamic").await;
    let cylinder = app
        .post("/api/v1/cylinders", json!({ "name": "Door", "marking": "C-1", "side_a": "electronic", "firmware": "10.2", "access_list": { "key_groups": [{ "key_group_id": group }] } }))
        .await
        .expect(201)
        .id();
    let key = app
        .post("/api/v1/keys", json!({ "name": "Dyn", "marking": "D-1", "type": "dynamic", "generation": "2", "firmware": "12.7", "key_group_id": group }))
        .await
        .expect(201)
        .id();
    app.execute_open_jobs().await;
    Site {
        group,
        cylinder,
        key,
    }
}

async fn open_jobs(app: &TestApp) -> Vec<Value> {
    app.get("/api/v1/jobs?open=true&limit=1000")
        .await
        .expect(200)
        .body["items"]
        .as_array()
        .expect("items")
        .clone()
}

/// The cylinder admits the key individually instead of its group: the id of the cylinder
/// programming job that change plans.
async fn admit_key_individually(app: &TestApp, s: &Site) -> i64 {
    app.patch(
        &format!("/api/v1/cylinders/{}", s.cylinder),
        json!({ "access_list": { "key_groups": [], "key_ids": [s.key] } }),
    )
    .await
    .expect(200);
    open_jobs(app)
        .await
        .into_iter()
        .find(|j| j["target_id"] == s.cylinder && j["kind"] == "cylinder_programming")
        .expect("a cylinder programming job")["id"]
        .as_i64()
        .expect("id")
}

/// The actions of the `job` events of job `id`, oldest first.
async fn job_events(app: &TestApp, id: i64) -> Vec<String> {
    sqlx::query(
        "SELECT action FROM events WHERE object_kind = 'job' AND object_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(app.store.pool())
    .await
    .expect("events")
    .iter()
    .map(|r| r.try_get::<String, _>("action").expect("action"))
    .collect()
}

async fn set_approvals(app: &TestApp, on: bool) {
    // A fixed setting: written directly, as an installation would have chosen it.
    let row = sqlx::query("SELECT fixed FROM locking_systems WHERE id = $1")
        .bind(app.system_id)
        .fetch_one(app.store.pool())
        .await
        .expect("system");
    let mut fixed: Value =
        serde_json::from_str(&row.try_get::<String, _>("fixed").expect("fixed")).expect("json");
    fixed["audit_trail_approvals"] = json!(on);
    sqlx::query("UPDATE locking_systems SET fixed = $1 WHERE id = $2")
        .bind(fixed.to_string())
        .bind(app.system_id)
        .execute(app.store.pool())
        .await
        .expect("update");
}

on_both!(
    approvals_and_rejections_record_their_own_events,
    |app: TestApp| async move {
        let s = site(&app).await;
        set_approvals(&app, true).await;
        let approved = app
            .post(
                &format!("/api/v1/keys/{}/audit-trail-request", s.key),
                json!({}),
            )
            .await
            .expect(201)
            .id();
        // The approver role (never combined with others); its token is issued by the
        // operator, as `lockgate token` does, since it reaches beyond the super administrator.
        let role = app.get("/api/v1/roles?q=approver").await.body["items"][0]["id"]
            .as_i64()
            .expect("approver role");
        let group = app.get("/api/v1/key-groups?type=normal_c_key").await.body["items"][0]["id"]
            .as_i64()
            .expect("C-key group");
        let ck = app
            .post("/api/v1/c-keys", json!({ "name": "Approver", "marking": "AP-1", "kind": "normal", "key_group_id": group, "role_ids": [role], "domain_ids": [app.default_domain] }))
            .await
            .expect(201)
            .id();
        let approver = app
            .store
            .create_token(app.system_id, ck, ck, "approver", None)
            .await
            .expect("token")
            .1;
        let r = app
            .call(
                Method::POST,
                &format!("/api/v1/jobs/{approved}/approve"),
                Some(&approver),
                Some(json!({ "approved": true })),
            )
            .await
            .expect(200);
        assert_eq!(r.body["state"], "created");
        assert_eq!(job_events(&app, approved).await, ["approved"]);
        // Once decided, a decision is refused with the rule, and nothing is written.
        let again = app
            .call(
                Method::POST,
                &format!("/api/v1/jobs/{approved}/approve"),
                Some(&approver),
                Some(json!({ "approved": false })),
            )
            .await
            .expect(409);
        assert!(
            again.body["rule"]
                .as_str()
                .unwrap_or("")
                .contains("awaiting approval")
        );
        assert_eq!(job_events(&app, approved).await, ["approved"]);

        let cylinder_request = app
            .post(
                &format!("/api/v1/cylinders/{}/audit-trail-request", s.cylinder),
                json!({}),
            )
            .await
            .expect(201)
            .id();
        app.call(
            Method::POST,
            &format!("/api/v1/jobs/{cylinder_request}/approve"),
            Some(&approver),
            Some(json!({ "approved": false })),
        )
        .await
        .expect(200);
        assert_eq!(job_events(&app, cylinder_request).await, ["rejected"]);

        // A cylinder request awaiting its approver holds nothing up: a change of the
        // cylinder still gets its programming job.
        let waiting = app
            .post(
                &format!("/api/v1/cylinders/{}/audit-trail-request", s.cylinder),
                json!({}),
            )
            .await
            .expect(201);
        assert_eq!(waiting.body["state"], "awaiting_approval");
        let programming = admit_key_individually(&app, &s).await;
        // Approved, the read joins that programming job (manual §8.5), which a C-key
        // loads; the request is replaced by it.
        let decided = app
            .call(
                Method::POST,
                &format!("/api/v1/jobs/{}/approve", waiting.id()),
                Some(&approver),
                Some(json!({ "approved": true })),
            )
            .await
            .expect(200);
        assert_eq!(decided.body["state"], "replaced", "{}", decided.body);
        assert_eq!(decided.body["replaced_by"], programming, "{}", decided.body);
        let joined = open_jobs(&app)
            .await
            .into_iter()
            .find(|j| j["id"] == programming)
            .expect("the programming job");
        assert_eq!(joined["actions"], json!(["access_list", "audit_trail"]));
    }
);

on_both!(
    confirming_follows_the_lifecycle_rules,
    |app: TestApp| async move {
        let s = site(&app).await;
        // A cylinder job nobody loaded cannot be reported executed.
        let id = admit_key_individually(&app, &s).await;
        let r = app
            .post(&format!("/api/v1/jobs/{id}/confirm"), json!({}))
            .await
            .expect(409);
        assert_eq!(
            r.body["type"],
            "urn:lockgate:problem:job-transition-refused"
        );
        assert!(
            r.body["rule"]
                .as_str()
                .unwrap_or("")
                .contains("load it first")
        );
        // Nothing was written: the job is still created, the cylinder's actual state unchanged.
        let still = app
            .get(&format!("/api/v1/jobs?target_id={}&open=true", s.cylinder))
            .await
            .expect(200);
        assert_eq!(still.body["items"][0]["state"], "created");
        assert_eq!(still.body["items"][0]["id"], id);
        // Loaded onto the master C-key: only that C-key reports it.
        app.post(
            &format!("/api/v1/jobs/{id}/load"),
            json!({ "c_key_id": app.master_c_key_id }),
        )
        .await
        .expect(200);
        let (_, other) = app
            .admin_with(
                "P-9",
                json!({ "cylinder": "list", "cylinder_programming": "full" }),
                &[app.default_domain],
            )
            .await;
        app.call(
            Method::POST,
            &format!("/api/v1/jobs/{id}/confirm"),
            Some(&other),
            None,
        )
        .await
        .expect(409);
        let done = app
            .post(&format!("/api/v1/jobs/{id}/confirm"), json!({}))
            .await
            .expect(200);
        assert_eq!(done.body["state"], "finished");
        assert_eq!(job_events(&app, id).await, ["loaded", "finished"]);

        // An audit-trail request awaiting approval cannot be confirmed.
        set_approvals(&app, true).await;
        let request = app
            .post(
                &format!("/api/v1/keys/{}/audit-trail-request", s.key),
                json!({}),
            )
            .await
            .expect(201)
            .id();
        let r = app
            .post(&format!("/api/v1/jobs/{request}/confirm"), json!({}))
            .await
            .expect(409);
        assert!(r.body["rule"].as_str().unwrap_or("").contains("approver"));
        assert!(job_events(&app, request).await.is_empty());
    }
);

on_both!(
    a_cylinder_locked_by_a_c_key_refuses_every_other_change,
    |app: TestApp| async move {
        let s = site(&app).await;
        let programming = admit_key_individually(&app, &s).await;
        app.post(
            &format!("/api/v1/jobs/{programming}/load"),
            json!({ "c_key_id": app.master_c_key_id }),
        )
        .await
        .expect(200);
        // The cylinder is locked by the master's C-key (manual §4.4.13.1): another C-key
        // cannot take its job, its audit trail cannot be requested, its authorisation
        // settings cannot be edited, reprogramming waits, and reconciliation leaves the
        // loaded job alone.
        let (ck, token) = app
            .admin_with(
                "P-2",
                json!({ "cylinder": "list", "cylinder_programming": "full" }),
                &[app.default_domain],
            )
            .await;
        let r = app
            .call(
                Method::POST,
                &format!("/api/v1/jobs/{programming}/load"),
                Some(&token),
                Some(json!({ "c_key_id": ck })),
            )
            .await
            .expect(409);
        assert_eq!(r.body["reason"], "not_loadable", "{}", r.body);
        let r = app
            .post(
                &format!("/api/v1/cylinders/{}/audit-trail-request", s.cylinder),
                json!({}),
            )
            .await
            .expect(409);
        assert!(
            r.body["detail"].as_str().unwrap_or("").contains("locked"),
            "{}",
            r.body
        );
        let r = app
            .patch(&format!("/api/v1/cylinders/{}", s.cylinder), json!({ "access_list": { "key_groups": [{ "key_group_id": s.group }], "key_ids": [] } }))
            .await
            .expect(409);
        assert!(
            r.body["detail"].as_str().unwrap_or("").contains("locked"),
            "{}",
            r.body
        );
        app.patch(
            &format!("/api/v1/cylinders/{}", s.cylinder),
            json!({ "location": "Hall" }),
        )
        .await
        .expect(200);
        app.post(
            &format!("/api/v1/cylinders/{}/reprogram", s.cylinder),
            json!({}),
        )
        .await
        .expect(409);
        let loaded = app
            .get(&format!("/api/v1/jobs?target_id={}&open=true", s.cylinder))
            .await
            .expect(200);
        assert!(
            loaded.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|j| j["id"] == programming && j["state"] == "loaded")
        );
        // Once the job reports, the cylinder is free: its audit-trail read is a cylinder
        // programming job (manual §8.5) that the other C-key may load.
        app.post(&format!("/api/v1/jobs/{programming}/confirm"), json!({}))
            .await
            .expect(200);
        let read = app
            .post(
                &format!("/api/v1/cylinders/{}/audit-trail-request", s.cylinder),
                json!({}),
            )
            .await
            .expect(201);
        assert_eq!(read.body["kind"], "cylinder_programming");
        assert_eq!(read.body["actions"], json!(["audit_trail"]));
        app.call(
            Method::POST,
            &format!("/api/v1/jobs/{}/load", read.id()),
            Some(&token),
            Some(json!({ "c_key_id": ck })),
        )
        .await
        .expect(200);
    }
);

on_both!(
    lost_key_custom_blocks_stay_in_the_callers_domains,
    |app: TestApp| async move {
        let s = site(&app).await;
        let other_domain = app
            .post("/api/v1/domains", json!({ "name": "Domain B" }))
            .await
            .expect(201)
            .id();
        let foreign = app
            .post("/api/v1/cylinders", json!({ "name": "B door", "marking": "B-1", "side_a": "electronic", "firmware": "10.2", "domain_id": other_domain, "access_list": { "key_groups": [{ "key_group_id": s.group }] } }))
            .await
            .expect(201)
            .id();
        let stranger = app
            .post("/api/v1/cylinders", json!({ "name": "Store room", "marking": "C-2", "side_a": "electronic", "firmware": "10.2" }))
            .await
            .expect(201)
            .id();
        app.execute_open_jobs().await;
        let (_, token) = app
            .admin_with(
                "A-1",
                json!({ "key": "full", "cylinder": "view" }),
                &[app.default_domain],
            )
            .await;
        let lost = format!("/api/v1/keys/{}/lost", s.key);
        // Domain B's door is not this administrator's to block.
        let r = app
            .call(
                Method::POST,
                &lost,
                Some(&token),
                Some(json!({ "block": "custom", "cylinder_ids": [s.cylinder, foreign] })),
            )
            .await
            .expect(422);
        assert_eq!(r.body["errors"][0]["field"], "cylinder_ids[1]");
        // A door the key never opened cannot be blocked for it.
        let r = app
            .call(
                Method::POST,
                &lost,
                Some(&token),
                Some(json!({ "block": "custom", "cylinder_ids": [stranger] })),
            )
            .await
            .expect(422);
        assert_eq!(r.body["errors"][0]["field"], "cylinder_ids[0]");
        assert!(
            open_jobs(&app).await.is_empty(),
            "a refused report plans nothing"
        );
        assert_eq!(
            app.get(&format!("/api/v1/keys/{}", s.key)).await.body["status"],
            "in_stock"
        );
        // Its own door: one high-priority block job, there only.
        app.call(
            Method::POST,
            &lost,
            Some(&token),
            Some(json!({ "block": "custom", "cylinder_ids": [s.cylinder] })),
        )
        .await
        .expect(200);
        let blocks: Vec<Value> = open_jobs(&app)
            .await
            .into_iter()
            .filter(|j| j["actions"] == json!(["block"]))
            .collect();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0]["target_id"], s.cylinder);
        assert_eq!(blocks[0]["priority"], "high");
    }
);

on_both!(
    job_lookups_find_old_jobs_of_busy_targets,
    |app: TestApp| async move {
        let s = site(&app).await;
        let profile = app
            .post(
                "/api/v1/access-profiles",
                json!({ "name": "Office", "cylinder_ids": [s.cylinder] }),
            )
            .await
            .expect(201)
            .id();
        app.patch(
            &format!("/api/v1/keys/{}", s.key),
            json!({ "access_profile_ids": [profile] }),
        )
        .await
        .expect(200);
        let update = open_jobs(&app)
            .await
            .into_iter()
            .find(|j| j["target_id"] == s.key && j["kind"] == "remote_update")
            .expect("the key's update")["id"]
            .as_i64()
            .expect("id");
        // 55 newer jobs of the same key: audit-trail reads, each executed at a PD.
        for _ in 0..55 {
            let read = app
                .post(
                    &format!("/api/v1/keys/{}/audit-trail-request", s.key),
                    json!({}),
                )
                .await
                .expect(201)
                .id();
            app.post(&format!("/api/v1/jobs/{read}/confirm"), json!({}))
                .await
                .expect(200);
        }
        let done = app
            .post(&format!("/api/v1/jobs/{update}/confirm"), json!({}))
            .await
            .expect(200);
        assert_eq!(done.body["id"], update);
        assert_eq!(done.body["state"], "finished");
    }
);

on_both!(
    unknown_stored_job_values_fail_with_the_row_id,
    |app: TestApp| async move {
        let s = site(&app).await;
        let read = app
            .post(
                &format!("/api/v1/keys/{}/audit-trail-request", s.key),
                json!({}),
            )
            .await
            .expect(201)
            .id();
        sqlx::query("UPDATE jobs SET state = 'teleported' WHERE id = $1")
            .bind(read)
            .execute(app.store.pool())
            .await
            .expect("corrupt");
        let err = app
            .store
            .job(app.system_id, read)
            .await
            .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains(&format!("job {read}")) && text.contains("teleported"),
            "{text}"
        );
        // Never read as another state: the API answers 500, it does not cancel the job.
        app.get("/api/v1/jobs").await.expect(500);
    }
);

on_both!(plugins_see_what_a_job_is_about, |app: TestApp| async move {
    let s = site(&app).await;
    app.post(
        &format!("/api/v1/keys/{}/audit-trail-request", s.key),
        json!({}),
    )
    .await
    .expect(201);
    let gw = lockgate::gateway::CoreGateway::new(app.store.clone());
    let jobs = lockgate_host::Gateway::pending_jobs(&gw, "p", s.key.unsigned_abs())
        .await
        .expect("jobs");
    let read = jobs
        .iter()
        .find(|j| j.kind == "audit-trail")
        .expect("the key's audit-trail read");
    assert_eq!(
        (read.target_kind.as_str(), read.state.as_str()),
        ("key", "created")
    );
    for j in &jobs {
        assert!(
            ["created", "awaiting-approval", "loaded", "carried"].contains(&j.state.as_str()),
            "{} is not an open state the WIT lists",
            j.state
        );
    }
});

on_both!(
    concurrent_reconciliations_never_undo_a_newer_one,
    |app: TestApp| async move {
        let s = site(&app).await;
        let profile = app
            .post(
                "/api/v1/access-profiles",
                json!({ "name": "Office", "cylinder_ids": [s.cylinder] }),
            )
            .await
            .expect(201)
            .id();
        // Grants and revocations, each reconciled by its own request, while full
        // reconciliations run beside them: whatever commits last must match the last change.
        for round in 0..12 {
            let profiles = if round % 2 == 0 {
                json!([profile])
            } else {
                json!([])
            };
            let key_path = format!("/api/v1/keys/{}", s.key);
            let (a, b, c) = tokio::join!(
                app.post("/api/v1/reconcile", json!({})),
                app.patch(&key_path, json!({ "access_profile_ids": profiles })),
                app.post("/api/v1/reconcile", json!({})),
            );
            a.expect(200);
            b.expect(200);
            c.expect(200);
            let check = app.post("/api/v1/reconcile", json!({})).await.expect(200);
            assert_eq!(
                (
                    check.body["created"].as_u64(),
                    check.body["replaced"].as_u64(),
                    check.body["cancelled"].as_u64()
                ),
                (Some(0), Some(0), Some(0)),
                "round {round}: the jobs on record did not match the last change"
            );
        }
    }
);

on_both!(
    the_application_layer_reads_the_injected_clock,
    |app: TestApp| async move {
        use std::sync::Arc;
        let at = chrono::DateTime::parse_from_rfc3339("2031-02-03T04:05:06Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let clock = Arc::new(lockgate_app::FixedClock::new(at));
        let mut app = app;
        app.router = lockgate_api::router(lockgate_api::AppState::with_app(
            lockgate_app::App::with_clock(app.store.clone(), clock.clone()),
            lockgate_api::ApiConfig::default(),
        ));
        let s = site(&app).await;
        let holder = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "Ada", "surname": "Clock" }),
            )
            .await
            .expect(201)
            .id();
        let out = app
            .post(
                &format!("/api/v1/keys/{}/hand-out", s.key),
                json!({ "holder_id": holder }),
            )
            .await
            .expect(200);
        assert_eq!(
            out.body["date_out"], "2031-02-03",
            "hand-out dated by the clock"
        );
        clock.set(at + chrono::TimeDelta::days(1));
        let lost = app
            .post(
                &format!("/api/v1/keys/{}/lost", s.key),
                json!({ "block": "all" }),
            )
            .await
            .expect(200);
        assert_eq!(
            lost.body["lost_report"]["reported_at"],
            "2031-02-04T04:05:06Z"
        );
    }
);

on_both!(
    oversized_bodies_get_a_problem_document,
    |app: TestApp| async move {
        let s = site(&app).await;
        let reason = "x".repeat(2 * 1024 * 1024);
        // A job report (JsonBody extractor) and a generic create (raw body) alike.
        for (path, body) in [
            (
                "/api/v1/jobs/1/fail".to_string(),
                json!({ "reason": reason }),
            ),
            ("/api/v1/domains".to_string(), json!({ "name": reason })),
            (
                format!("/api/v1/keys/{}/lost", s.key),
                json!({ "block": reason }),
            ),
        ] {
            let r = app.post(&path, body).await.expect(413);
            assert_eq!(
                r.headers
                    .get(axum::http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                Some("application/problem+json"),
                "{path}"
            );
            assert_eq!(
                r.body["type"], "urn:lockgate:problem:payload-too-large",
                "{path}"
            );
        }
    }
);
