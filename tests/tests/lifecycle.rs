//! Key lifecycle flows and the access views, through the API on both databases.

use lockgate_tests::*;
use serde_json::{Value, json};

struct Site {
    dynamic_group: i64,
    person: i64,
    profile: i64,
    cylinders: Vec<i64>,
    key: i64,
}

async fn site(app: &TestApp) -> Site {
    let dynamic_group = app.key_group("Dynamic", "dynamic").await;
    let mut cylinders = Vec::new();
    for i in 0..4 {
        let status = if i < 2 { "installed" } else { "in_stock" };
        let c = app
            .post("/api/v1/cylinders", json!({ "name": format!("Door {i}"), "marking": format!("C-{i}"), "side_a": "electronic", "status": status, "access_list": { "key_groups": [{ "key_group_id": dynamic_group }] } }))
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
    let person = app
        .post(
            "/api/v1/employees",
            json!({ "first_name": "Anna", "surname": "Berg", "access_profile_ids": [profile] }),
        )
        .await
        .expect(201)
        .id();
    let key = app
        .post("/api/v1/keys", json!({ "name": "Dyn", "marking": "D-1", "type": "dynamic", "generation": "2", "firmware": "12.7", "key_group_id": dynamic_group }))
        .await
        .expect(201)
        .id();
    app.execute_open_jobs().await;
    Site {
        dynamic_group,
        person,
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

fn access(r: &Resp) -> Vec<(i64, bool, bool)> {
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["cylinder_id"].as_i64().unwrap_or(0),
                i["actual"] == true,
                i["defined"] == true,
            )
        })
        .collect()
}

on_both!(
    hand_out_and_in_follow_the_holder,
    |app: TestApp| async move {
        let s = site(&app).await;
        let k = format!("/api/v1/keys/{}", s.key);
        let r = app.post(&format!("{k}/hand-out"), json!({ "holder_id": s.person, "cylinder_ids": [s.cylinders[1]], "date_in": "2027-01-31" })).await.expect(200);
        assert_eq!(r.body["status"], "handed_out");
        // The receipt names holder, key, return date, the holder's profile and both
        // cylinders (pending until the key is updated).
        let receipt = app.get(&format!("{k}/receipt")).await.expect(200).body;
        assert_eq!(receipt["holder"]["surname"], "Berg");
        assert_eq!(receipt["key"]["marking"], "D-1");
        assert_eq!(receipt["date_in"], "2027-01-31");
        assert_eq!(receipt["access_profiles"][0]["id"], s.profile);
        let cylinders: Vec<(i64, bool)> = receipt["cylinders"]
            .as_array()
            .expect("cylinders")
            .iter()
            .map(|c| (c["id"].as_i64().unwrap_or(0), c["pending"] == true))
            .collect();
        assert_eq!(cylinders, [(s.cylinders[0], true), (s.cylinders[1], true)]);
        // The holder's profile and the explicit cylinder: pending until the key is updated.
        let v = app
            .get(&format!("{k}/accessible-cylinders"))
            .await
            .expect(200);
        assert_eq!(
            access(&v),
            [(s.cylinders[0], false, true), (s.cylinders[1], false, true)]
        );
        app.execute_open_jobs().await;
        let v = app
            .get(&format!("{k}/accessible-cylinders"))
            .await
            .expect(200);
        assert_eq!(
            access(&v),
            [(s.cylinders[0], true, true), (s.cylinders[1], true, true)]
        );
        let who = app
            .get(&format!(
                "/api/v1/cylinders/{}/keys-with-access",
                s.cylinders[0]
            ))
            .await
            .expect(200);
        assert_eq!(who.body["items"][0]["key_id"], s.key);
        let profiles = app
            .get(&format!(
                "/api/v1/cylinders/{}/access-profiles",
                s.cylinders[0]
            ))
            .await
            .expect(200);
        assert_eq!(profiles.body["access_profile_ids"], json!([s.profile]));
        // Handing out twice is refused.
        app.post(&format!("{k}/hand-out"), json!({ "holder_id": s.person }))
            .await
            .expect(409);
        // Hand in: no holder, no key-tied access; the key is updated to hold nothing.
        app.post(&format!("{k}/hand-in"), json!({}))
            .await
            .expect(200);
        app.get(&format!("{k}/receipt")).await.expect(409);
        let v = app
            .get(&format!("{k}/accessible-cylinders"))
            .await
            .expect(200);
        assert_eq!(
            access(&v),
            [(s.cylinders[0], true, false), (s.cylinders[1], true, false)]
        );
        let history = app.get(&format!("{k}/update-history")).await.expect(200);
        assert!(history.body["items"].as_array().expect("items").len() >= 2);
    }
);

on_both!(
    lost_with_block_choices_and_found,
    |app: TestApp| async move {
        let s = site(&app).await;
        let k = format!("/api/v1/keys/{}", s.key);
        // Installed only: cylinders 0 and 1 get high-priority block jobs.
        app.post(&format!("{k}/lost"), json!({ "block": "installed" }))
            .await
            .expect(200);
        let targets: Vec<i64> = open_jobs(&app)
            .await
            .iter()
            .map(|j| j["target_id"].as_i64().unwrap_or(0))
            .collect();
        assert_eq!(targets.len(), 2);
        assert!(targets.contains(&s.cylinders[0]) && targets.contains(&s.cylinders[1]));
        app.post(&format!("{k}/lost"), json!({})).await.expect(409);
        // Found before execution: the block jobs are cancelled.
        app.post(&format!("{k}/found"), json!({})).await.expect(200);
        assert!(open_jobs(&app).await.is_empty());
        // Custom, then none.
        app.post(
            &format!("{k}/lost"),
            json!({ "block": "custom", "cylinder_ids": [s.cylinders[3]] }),
        )
        .await
        .expect(200);
        let jobs = open_jobs(&app).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0]["target_id"], s.cylinders[3]);
        app.post(&format!("{k}/found"), json!({})).await.expect(200);
        app.post(&format!("{k}/lost"), json!({ "block": "none" }))
            .await
            .expect(200);
        assert!(open_jobs(&app).await.is_empty());
        // Silently in the blocked list: the next job cylinder 0 gets for another reason
        // writes the block too (and names only that other reason).
        app.patch(
            &format!("/api/v1/cylinders/{}", s.cylinders[0]),
            json!({ "firmware": "10.2", "time_zone_offset_minutes": 60 }),
        )
        .await
        .expect(200);
        let jobs = open_jobs(&app).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0]["target_id"], s.cylinders[0]);
        assert_eq!(jobs[0]["program"]["blocked"], json!([s.key]));
        assert_eq!(jobs[0]["actions"], json!(["time_zone_offset"]));
        app.patch(
            &format!("/api/v1/cylinders/{}", s.cylinders[0]),
            json!({ "time_zone_offset_minutes": 0 }),
        )
        .await
        .expect(200);
        assert!(
            open_jobs(&app).await.is_empty(),
            "silent entries alone plan nothing"
        );
        let r = app
            .post(
                &format!("{k}/lost"),
                json!({ "block": "all", "cylinder_ids": [1] }),
            )
            .await
            .expect(422);
        assert_eq!(r.error_fields(), ["cylinder_ids"]);
        let r = app.post(&format!("{k}/lost"), json!({})).await.expect(409);
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap_or("")
                .contains("already lost")
        );
    }
);

on_both!(
    copy_and_clean_up_authorisations,
    |app: TestApp| async move {
        let s = site(&app).await;
        let normal_group = app.key_group("Staff", "normal").await;
        let quartz = app.post("/api/v1/keys", json!({ "name": "Q", "marking": "Q-1", "type": "quartz", "generation": "2", "firmware": "12.7", "key_group_id": normal_group })).await.expect(201).id();
        let other = app.post("/api/v1/keys", json!({ "name": "Dyn 2", "marking": "D-2", "type": "dynamic", "generation": "2", "firmware": "12.7", "key_group_id": s.dynamic_group })).await.expect(201).id();
        app.patch(&format!("/api/v1/keys/{}", s.key), json!({ "cylinder_ids": [s.cylinders[0], s.cylinders[2]], "access_profile_ids": [s.profile], "validity": { "revalidation": { "interval_hours": 48 } } })).await.expect(200);
        // Dynamic → quartz is refused.
        let r = app
            .post(
                &format!("/api/v1/keys/{}/copy-configuration", s.key),
                json!({ "target_key_id": quartz }),
            )
            .await
            .expect(422);
        assert_eq!(r.error_fields(), ["target_key_id"]);
        let copied = app
            .post(
                &format!("/api/v1/keys/{}/copy-configuration", s.key),
                json!({ "target_key_id": other }),
            )
            .await
            .expect(200);
        assert_eq!(
            copied.body["cylinder_ids"],
            json!([s.cylinders[0], s.cylinders[2]])
        );
        assert_eq!(
            copied.body["validity"]["revalidation"]["interval_hours"],
            48
        );
        // Cylinder 0 comes through the profile as well: the explicit entry is redundant.
        let cleaned = app
            .post(
                &format!("/api/v1/keys/{}/remove-redundant-authorisations", s.key),
                json!({}),
            )
            .await
            .expect(200);
        assert_eq!(cleaned.body["cylinder_ids"], json!([s.cylinders[2]]));
        // Remove cylinder 0 from every key, profile and temporary group.
        let r = app
            .post(
                &format!(
                    "/api/v1/cylinders/{}/remove-key-side-authorisations",
                    s.cylinders[0]
                ),
                json!({}),
            )
            .await
            .expect(200);
        assert_eq!(r.body["updated"], 2, "the profile and the copied key");
        assert_eq!(
            app.get(&format!("/api/v1/access-profiles/{}", s.profile))
                .await
                .body["cylinder_ids"],
            json!([])
        );
        assert_eq!(
            app.get(&format!("/api/v1/keys/{other}")).await.body["cylinder_ids"],
            json!([s.cylinders[2]])
        );
    }
);

on_both!(
    group_schedule_and_clone_replacement,
    |app: TestApp| async move {
        let s = site(&app).await;
        let tpl = app.post("/api/v1/schedule-templates", json!({ "name": "Office hours", "schedule": { "type": "basic", "days": { "monday": { "from": "07:00", "to": "18:00" } } } })).await.expect(201).id();
        let r = app
            .post(
                &format!("/api/v1/key-groups/{}/schedule", s.dynamic_group),
                json!({ "schedule_template_id": tpl }),
            )
            .await
            .expect(200);
        assert_eq!(r.body["updated"], 1);
        assert_eq!(
            app.get(&format!("/api/v1/keys/{}", s.key)).await.body["schedule"]["type"],
            "basic"
        );
        app.post(
            &format!("/api/v1/key-groups/{}/schedule", s.dynamic_group),
            json!({}),
        )
        .await
        .expect(422);
        // A broken key replaced by its factory clone keeps its configuration and holder.
        app.post(
            &format!("/api/v1/keys/{}/hand-out", s.key),
            json!({ "holder_id": s.person }),
        )
        .await
        .expect(200);
        let clone = app
            .post(
                &format!("/api/v1/keys/{}/replace-with-clone", s.key),
                json!({ "marking": "D-1b" }),
            )
            .await
            .expect(201);
        assert_eq!(clone.body["holder_id"], s.person);
        assert_eq!(clone.body["schedule"]["type"], "basic");
        assert_eq!(
            app.get(&format!("/api/v1/keys/{}", s.key)).await.body["status"],
            "broken"
        );
        let jobs = open_jobs(&app).await;
        assert!(
            jobs.iter().any(|j| j["target_id"] == clone.id()),
            "the clone gets its authorisations by a remote update"
        );
    }
);

on_both!(
    overdue_keys_by_date_and_validity,
    |app: TestApp| async move {
        let s = site(&app).await;
        let group = app.key_group("Staff", "normal").await;
        let quartz = app.post("/api/v1/keys", json!({ "name": "Q", "marking": "Q-1", "type": "quartz", "generation": "2", "key_group_id": group })).await.expect(201).id();
        app.post(
            &format!("/api/v1/keys/{}/hand-out", s.key),
            json!({ "holder_id": s.person, "date_out": "2026-01-01", "date_in": "2026-02-01" }),
        )
        .await
        .expect(200);
        app.post(
        &format!("/api/v1/keys/{quartz}/hand-out"),
        json!({ "holder_id": s.person, "validity": { "activation": { "mode": "between", "from": "2025-01-01T00:00:00Z", "until": "2025-12-31T00:00:00Z" } } }),
    )
    .await
    .expect(200);
        let r = app.get("/api/v1/keys/overdue").await.expect(200);
        let items = r.body["items"].as_array().expect("items");
        assert_eq!(items.len(), 2);
        assert!(
            items
                .iter()
                .any(|i| i["key_id"] == s.key && i["overdue_by"] == json!(["date_in"]))
        );
        assert!(
            items
                .iter()
                .any(|i| i["key_id"] == quartz && i["overdue_by"] == json!(["validity"]))
        );
        // Jobs waiting for one C-key: a new cylinder needs programming.
        app.post("/api/v1/cylinders", json!({ "name": "New door", "marking": "C-9", "side_a": "electronic", "access_list": { "key_groups": [{ "key_group_id": s.dynamic_group }] } })).await.expect(201);
        let job = open_jobs(&app)
            .await
            .into_iter()
            .find(|j| j["kind"] == "cylinder_programming")
            .expect("a programming job");
        app.post(
            &format!("/api/v1/jobs/{}/assign", job["id"]),
            json!({ "c_key_id": app.master_c_key_id }),
        )
        .await
        .expect(200);
        let mine = app
            .get(&format!("/api/v1/jobs?c_key_id={}", app.master_c_key_id))
            .await
            .expect(200);
        assert_eq!(mine.body["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(mine.body["items"][0]["id"], job["id"]);
    }
);
