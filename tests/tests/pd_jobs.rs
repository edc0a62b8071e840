//! Hardware closes jobs (issue 13, item 6), through the application layer on both databases:
//! a key inserted in a remote PD gets its remote-update job with the program's hash; only
//! the PD that delivered the job confirms it, only for that program; a retransmitted report
//! changes nothing; a key pulled out before the report leaves the job open; a failure report
//! follows the failure rules (the job is planned again). Heartbeats keep a PD online; missed
//! ones mark it offline, each change with its event.

use lockgate_app::{DeviceOutcome, DeviceRef, DeviceReport};
use lockgate_tests::*;
use serde_json::json;

async fn remote_pd(app: &TestApp, marking: &str) -> i64 {
    app.post(
        "/api/v1/remote-pds",
        json!({ "name": marking, "marking": marking, "type": "wall_gen2" }),
    )
    .await
    .expect(201)
    .id()
}

async fn key_job_count(app: &TestApp, key: i64) -> usize {
    app.get(&format!("/api/v1/jobs?open=true&target_id={key}"))
        .await
        .expect(200)
        .body["items"]
        .as_array()
        .map_or(0, Vec::len)
}

on_both!(
    only_the_delivering_pd_closes_a_job,
    |app: TestApp| async move {
        let group = app.key_group("Dynamic", "dynamic").await;
        let door = app.post("/api/v1/cylinders", json!({ "name": "Door", "marking": "C-1", "side_a": "electronic", "firmware": "10.2", "access_list": { "key_groups": [{ "key_group_id": group }] } }))
        .await
        .expect(201)
        .id();
        let profile = app
            .post(
                "/api/v1/access-profiles",
                json!({ "name": "Office", "cylinder_ids": [door] }),
            )
            .await
            .expect(201)
            .id();
        let key = app
        .post("/api/v1/keys", json!({ "name": "Dyn", "marking": "D-1", "type": "dynamic", "generation": "2", "firmware": "12.7", "key_group_id": group, "access_list_capacity": 2, "access_profile_ids": [profile] }))
        .await
        .expect(201)
        .id();
        let lobby = DeviceRef {
            system_id: app.system_id,
            pd_id: remote_pd(&app, "PD-1").await,
        };
        let yard = DeviceRef {
            system_id: app.system_id,
            pd_id: remote_pd(&app, "PD-2").await,
        };
        let core = lockgate_app::App::new(app.store.clone());

        // Inserted at the lobby PD: the key's remote update, with its program's hash.
        let jobs = core.key_inserted(lobby, key).await.expect("inserted");
        assert_eq!(jobs.len(), 1, "one remote update job");
        let job = jobs[0].job.id;
        assert_eq!(
            jobs[0].program_hash,
            lockgate_app::program_hash(&jobs[0].job.program)
        );
        let hash = jobs[0].program_hash.clone();
        // Pulled out before the report: nothing changes.
        assert_eq!(key_job_count(&app, key).await, 1);
        let status = format!("/api/v1/keys/{key}/update-status");
        assert_eq!(app.get(&status).await.body["status"], "update_required");

        // Another PD did not deliver it; the lobby PD must name the program it wrote.
        let done = DeviceOutcome::Done {
            program_hash: hash.clone(),
        };
        let refused = core
            .device_job_report(yard, job, done.clone(), "r-1", &[])
            .await
            .expect_err("a PD that did not deliver the job confirms it");
        assert!(refused.to_string().contains("did not deliver"), "{refused}");
        let wrong = DeviceOutcome::Done {
            program_hash: "00".repeat(32),
        };
        let refused = core
            .device_job_report(lobby, job, wrong, "r-1", &[])
            .await
            .expect_err("another program confirms the job");
        assert!(refused.to_string().contains("program"), "{refused}");
        assert_eq!(key_job_count(&app, key).await, 1, "nothing closed yet");
        assert!(
            core.device_job_report(lobby, job, done.clone(), "", &[])
                .await
                .is_err()
        );

        // The right report closes it; the actual state follows.
        match core
            .device_job_report(lobby, job, done.clone(), "r-1", &[])
            .await
            .expect("report")
        {
            DeviceReport::Applied(r) => assert_eq!(r.job.state.name(), "finished"),
            other => panic!("{other:?}"),
        }
        assert_eq!(key_job_count(&app, key).await, 0);
        assert_eq!(app.get(&status).await.body["status"], "up_to_date");
        let events = |app: &TestApp| {
            let app = app.store.clone();
            async move {
                sqlx::query(
                    "SELECT COUNT(*) AS n FROM events WHERE object_kind = 'job' AND object_id = $1",
                )
                .bind(job)
                .fetch_one(app.pool())
                .await
                .map(|r| sqlx::Row::try_get::<i64, _>(&r, "n").expect("n"))
                .expect("count")
            }
        };
        let before = events(&app).await;
        // Retransmitted: harmless. Another report for the closed job: refused.
        assert!(matches!(
            core.device_job_report(lobby, job, done.clone(), "r-1", &[])
                .await,
            Ok(DeviceReport::AlreadyApplied)
        ));
        assert_eq!(events(&app).await, before, "a retransmission wrote events");
        assert!(
            core.device_job_report(lobby, job, done, "r-2", &[])
                .await
                .is_err()
        );

        // A failure report follows the failure rules: the job fails and is planned again.
        app.patch(
            &format!("/api/v1/keys/{key}"),
            json!({ "access_profile_ids": [] }),
        )
        .await
        .expect(200);
        let jobs = core.key_inserted(yard, key).await.expect("inserted");
        assert_eq!(jobs.len(), 1);
        let second = jobs[0].job.id;
        match core
            .device_job_report(
                yard,
                second,
                DeviceOutcome::Failed {
                    reason: "key removed during the write".into(),
                },
                "y-1",
                &[],
            )
            .await
            .expect("report")
        {
            DeviceReport::Applied(r) => assert_eq!(r.job.state.name(), "failed"),
            other => panic!("{other:?}"),
        }
        let again = core.key_inserted(yard, key).await.expect("inserted");
        assert_eq!(again.len(), 1, "the failed job is planned again");
        assert_ne!(again[0].job.id, second);
        // Unknown key: not found.
        assert!(core.key_inserted(yard, 999_999).await.is_err());
    }
);

on_both!(heartbeats_keep_a_pd_online, |app: TestApp| async move {
    let pd = app
        .post(
            "/api/v1/remote-pds",
            json!({ "name": "Lobby", "marking": "PD-9", "type": "wall_gen2", "settings": { "heartbeat_minutes": 5 } }),
        )
        .await
        .expect(201)
        .id();
    let device = DeviceRef {
        system_id: app.system_id,
        pd_id: pd,
    };
    let start = chrono::Utc::now();
    let clock = std::sync::Arc::new(lockgate_app::FixedClock::new(start));
    let core = lockgate_app::App::with_clock(app.store.clone(), clock.clone());
    let status = format!("/api/v1/remote-pds/{pd}/status");
    let s = app.get(&status).await.expect(200).body;
    assert_eq!(s["online"], false);
    assert!(s["last_seen"].is_null());

    // A heartbeat: online, with the firmware it reported and its settings in the answer.
    let answer = core
        .device_heartbeat(device, Some("2.4.1"), None)
        .await
        .expect("heartbeat");
    assert_eq!(answer.heartbeat_minutes, 5);
    let s = app.get(&status).await.expect(200).body;
    assert_eq!(s["online"], true, "{s}");
    assert_eq!(s["firmware"], "2.4.1");
    assert!(core.device_heartbeat(device, Some(""), None).await.is_err());

    // Two missed heartbeats are not three: still online. Three are.
    clock.set(start + chrono::Duration::minutes(14));
    assert_eq!(core.mark_silent_pds_offline(3).await.expect("sweep"), 0);
    clock.set(start + chrono::Duration::minutes(16));
    assert_eq!(core.mark_silent_pds_offline(3).await.expect("sweep"), 1);
    assert_eq!(
        core.mark_silent_pds_offline(3).await.expect("sweep"),
        0,
        "once"
    );
    let s = app.get(&status).await.expect(200).body;
    assert_eq!(s["online"], false, "{s}");
    assert!(s["offline_since"].is_string());
    // One notification for the outage, for the configured recipients (docs/notifications.md).
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT topic, payload FROM outbox WHERE topic = 'notify.pd_offline'")
            .fetch_all(app.store.pool())
            .await
            .expect("outbox");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let payload: serde_json::Value = serde_json::from_str(&rows[0].1).expect("payload");
    assert_eq!(payload["pd_id"], json!(pd));
    assert_eq!(payload["missed_heartbeats"], 3);
    let instant = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a time")).expect("RFC 3339")
    };
    assert_eq!(
        instant(&payload["offline_since"]),
        instant(&s["offline_since"])
    );

    // Heard from again: online, firmware kept when not reported.
    core.device_heartbeat(device, None, None)
        .await
        .expect("heartbeat");
    let s = app.get(&status).await.expect(200).body;
    assert_eq!(
        (s["online"].clone(), s["firmware"].clone()),
        (json!(true), json!("2.4.1"))
    );
    let actions = app.event_actions(&format!("/api/v1/remote-pds/{pd}")).await;
    let count = |a: &str| actions.iter().filter(|x| *x == a).count();
    assert_eq!((count("online"), count("offline")), (2, 1), "{actions:?}");
});

on_both!(
    the_key_revocation_list_is_signed_and_follows_key_losses,
    |app: TestApp| async move {
        let app = app.with_pd_authority().await;
        let group = app.key_group("Normal", "normal").await;
        let key = app
        .post("/api/v1/keys", json!({ "name": "K", "marking": "K-LOST", "type": "quartz", "generation": "2", "key_group_id": group }))
        .await
        .expect(201)
        .id();
        let person = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "Lu", "surname": "Loss" }),
            )
            .await
            .expect(201)
            .id();
        app.post(
            &format!("/api/v1/keys/{key}/hand-out"),
            json!({ "holder_id": person }),
        )
        .await
        .expect(200);
        let public_key = app.get("/api/v1/pd-ca").await.expect(200).body["krl_public_key"]
            .as_str()
            .expect("key")
            .to_owned();

        let before = app.get("/api/v1/pd-krl").await.expect(200).body;
        assert_eq!(before["list"]["keys"], json!([]));
        let signed: lockgate_devices::krl::SignedKrl =
            serde_json::from_value(before["signed"].clone()).expect("signed");
        let verified = lockgate_devices::krl::verify(&signed, &public_key).expect("verifies");
        assert_eq!(verified.system_id, app.system_id);
        let hours = (verified.valid_until - verified.issued_at).num_hours();
        assert_eq!(hours, 24);

        // A key loss reissues the list at once, with the key.
        app.post(
            &format!("/api/v1/keys/{key}/lost"),
            json!({ "block": "all" }),
        )
        .await
        .expect(200);
        let after = app.get("/api/v1/pd-krl").await.expect(200).body;
        let signed: lockgate_devices::krl::SignedKrl =
            serde_json::from_value(after["signed"].clone()).expect("signed");
        let list = lockgate_devices::krl::verify(&signed, &public_key).expect("verifies");
        assert_eq!(list.keys.len(), 1, "{after}");
        assert_eq!(list.keys[0].key_id, key);
        assert_eq!(list.keys[0].marking, "K-LOST");
        assert!(
            list.issued_at > verified.issued_at,
            "not reissued on the loss"
        );
        // The list a PD gets cannot be changed on the way.
        let mut forged = list.clone();
        forged.keys.clear();
        let tampered = lockgate_devices::krl::SignedKrl {
            list: {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .encode(serde_json::to_vec(&forged).unwrap())
            },
            signature: signed.signature.clone(),
        };
        assert!(lockgate_devices::krl::verify(&tampered, &public_key).is_err());
    }
);
