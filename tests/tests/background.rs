//! The background runtime wired into the gateway (`lockgate::background`) on both databases:
//! the periodic full reconciliation picks up a temporary access group that just started,
//! overdue keys become one outbox message, the purge keeps recent events, and the dead-letter
//! endpoints list and requeue what exhausted its attempts.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use chrono::Utc;
use lockgate::background::{self, Context, LogDeliver};
use lockgate::config::BackgroundConfig;
use lockgate_api::licence::LicenceConfig;
use lockgate_jobs::{
    Deliver, DispatchConfig, Dispatcher, JobState, JobsError, NewJob, OutboxMessage, Queue,
    QueueConfig, RetryPolicy, async_trait, outbox,
};
use lockgate_tests::*;
use serde_json::{Value, json};
use sqlx::Row;

fn context(app: &TestApp) -> Context {
    Context::new(
        app.store.clone(),
        &BackgroundConfig::default(),
        LicenceConfig::default(),
        None,
    )
    .expect("context")
}

/// Enqueue a job of `kind`, claim it and run the gateway's handler for it, then complete it.
async fn run_task(ctx: Context, kind: &str) {
    let queue = ctx.queue.clone();
    let id = queue
        .enqueue(&NewJob::new(kind, Value::Null))
        .await
        .expect("enqueue")
        .expect("new job");
    let jobs = queue
        .claim("test", &[kind.to_string()], 1)
        .await
        .expect("claim");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, id);
    let handler = background::handler(Arc::new(ctx), kind).expect("handler registered");
    handler.run(&jobs[0]).await.expect("handler succeeds");
    queue.complete(&jobs[0]).await.expect("complete");
}

async fn open_jobs(app: &TestApp) -> Vec<Value> {
    app.get("/api/v1/jobs?open=true").await.expect(200).body["items"]
        .as_array()
        .expect("items")
        .clone()
}

async fn outbox_rows(app: &TestApp) -> Vec<(String, String, Value)> {
    sqlx::query("SELECT message_id, topic, payload FROM outbox ORDER BY id")
        .fetch_all(app.store.pool())
        .await
        .expect("outbox")
        .iter()
        .map(|r| {
            (
                r.try_get("message_id").expect("message_id"),
                r.try_get("topic").expect("topic"),
                serde_json::from_str(&r.try_get::<String, _>("payload").expect("payload"))
                    .expect("json"),
            )
        })
        .collect()
}

on_both!(
    full_reconciliation_starts_temporary_groups,
    |app: TestApp| async move {
        let app = app;
        let group = app.key_group("Dynamic", "dynamic").await;
        let cylinder = app
            .post("/api/v1/cylinders", json!({ "name": "Lab", "marking": "C-1", "side_a": "electronic", "access_list": { "key_groups": [{ "key_group_id": group }] } }))
            .await
            .expect(201)
            .id();
        let key = app
            .post("/api/v1/keys", json!({ "name": "Dyn", "marking": "D-1", "type": "dynamic", "generation": "2", "firmware": "12.7", "key_group_id": group }))
            .await
            .expect(201)
            .id();
        app.execute_open_jobs().await;
        // A temporary group that starts in a moment: creating it changes nothing yet.
        let start = Utc::now() + chrono::Duration::milliseconds(1200);
        app.post(
            "/api/v1/temporary-access-groups",
            json!({ "name": "Visit", "key_ids": [key], "cylinder_ids": [cylinder], "start": start, "end": start + chrono::Duration::days(1) }),
        )
        .await
        .expect(201);
        assert!(
            open_jobs(&app).await.is_empty(),
            "nothing is due before the group starts"
        );
        let wait = (start - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait + Duration::from_millis(100)).await;
        // No change happened, so only the periodic full reconciliation notices the start.
        assert!(open_jobs(&app).await.is_empty());
        run_task(context(&app), background::RECONCILE_FULL).await;
        let jobs = open_jobs(&app).await;
        let update = jobs
            .iter()
            .find(|j| j["kind"] == "remote_update" && j["target_id"] == key)
            .unwrap_or_else(|| panic!("a remote update for the key: {jobs:?}"));
        assert!(
            update["program"]["access"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "{update}"
        );
        // A second run plans nothing new.
        let before = jobs.len();
        run_task(context(&app), background::RECONCILE_FULL).await;
        assert_eq!(open_jobs(&app).await.len(), before);
    }
);

on_both!(
    overdue_keys_become_one_outbox_message,
    |app: TestApp| async move {
        let app = app;
        let group = app.key_group("Dynamic", "dynamic").await;
        let person = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "Anna", "surname": "Berg" }),
            )
            .await
            .expect(201)
            .id();
        let key = app
        .post("/api/v1/keys", json!({ "name": "Dyn", "marking": "D-1", "type": "dynamic", "generation": "2", "firmware": "12.7", "key_group_id": group }))
        .await
        .expect(201)
        .id();
        // A key that is not overdue.
        app.post("/api/v1/keys", json!({ "name": "Spare", "marking": "D-2", "type": "dynamic", "generation": "2", "firmware": "12.7", "key_group_id": group }))
        .await
        .expect(201);
        let today = Utc::now().date_naive();
        app.post(
        &format!("/api/v1/keys/{key}/hand-out"),
        json!({ "holder_id": person, "date_out": today - chrono::Duration::days(10), "date_in": today - chrono::Duration::days(2) }),
    )
    .await
    .expect(200);
        let ctx = context(&app);
        run_task(ctx.clone(), background::KEYS_OVERDUE).await;
        let rows = outbox_rows(&app).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        let (message_id, topic, payload) = &rows[0];
        assert_eq!(topic, lockgate_store::outbox::Topic::OverdueKeys.as_str());
        assert!(message_id.starts_with(&format!("overdue-keys:{}:", app.system_id)));
        assert_eq!(payload["system_id"], app.system_id);
        assert_eq!(payload["count"], 1);
        let k = &payload["keys"][0];
        assert_eq!(k["key_id"], key);
        assert_eq!(k["name"], "Dyn");
        assert_eq!(k["overdue_by"], json!(["date_in"]));
        assert_eq!(k["holder"]["person_id"], person);
        assert_eq!(k["holder"]["surname"], "Berg");
        // A retried run of the same job writes nothing twice.
        assert_eq!(
            background::notify_overdue_keys(
                &app.store,
                message_id.rsplit(':').next().expect("run"),
                Utc::now()
            )
            .await
            .expect("rerun"),
            0
        );
        assert_eq!(outbox_rows(&app).await.len(), 1);
        // The log deliverer delivers it, and only then is it marked delivered.
        let report = ctx
            .dispatcher
            .dispatch_once(&LogDeliver)
            .await
            .expect("dispatch");
        assert_eq!(report.delivered, 1);
        let m = ctx
            .dispatcher
            .get(message_id)
            .await
            .expect("get")
            .expect("message");
        assert!(m.dispatched_at.is_some());
    }
);

on_both!(
    purge_deletes_only_events_past_retention,
    |app: TestApp| async move {
        let app = app;
        for i in 0..3 {
            app.domain(&format!("Wing {i}")).await;
        }
        let count = || async {
            let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM events WHERE system_id = $1")
                .bind(app.system_id)
                .fetch_one(app.store.pool())
                .await
                .expect("count")
                .try_get("n")
                .expect("n");
            n
        };
        let total = count().await;
        assert!(total >= 3);
        // Two events from long ago, one just inside the retention.
        let ids: Vec<i64> = sqlx::query("SELECT id FROM events WHERE system_id = $1 ORDER BY id")
            .bind(app.system_id)
            .fetch_all(app.store.pool())
            .await
            .expect("ids")
            .iter()
            .map(|r| r.try_get("id").expect("id"))
            .collect();
        let stamp = |days: i64| {
            (Utc::now() - chrono::Duration::days(days))
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        for (id, days) in [(ids[0], 400), (ids[1], 31), (ids[2], 29)] {
            sqlx::query("UPDATE events SET at = $1 WHERE id = $2")
                .bind(stamp(days))
                .bind(id)
                .execute(app.store.pool())
                .await
                .expect("age event");
        }
        // Retention off (the default): nothing goes.
        run_task(context(&app), background::EVENTS_PURGE).await;
        assert_eq!(count().await, total);
        let mut ctx = context(&app);
        ctx.event_retention_days = 30;
        run_task(ctx, background::EVENTS_PURGE).await;
        assert_eq!(count().await, total - 2);
        let left: Vec<i64> = sqlx::query("SELECT id FROM events WHERE system_id = $1")
            .bind(app.system_id)
            .fetch_all(app.store.pool())
            .await
            .expect("ids")
            .iter()
            .map(|r| r.try_get("id").expect("id"))
            .collect();
        assert!(!left.contains(&ids[0]) && !left.contains(&ids[1]));
        assert!(left.contains(&ids[2]));
        // Done jobs past their retention go too (the two purge jobs above are done).
        let mut ctx = context(&app);
        ctx.job_retention = Duration::ZERO;
        let report = background::purge(&ctx, Utc::now()).await.expect("purge");
        assert!(report.jobs >= 2, "{report:?}");
    }
);

struct Refuse;

#[async_trait]
impl Deliver for Refuse {
    async fn deliver(&self, _: &OutboxMessage) -> lockgate_jobs::Result<()> {
        Err(JobsError::failed("mail server refused"))
    }
}

on_both!(
    dead_letters_listed_and_requeued,
    |app: TestApp| async move {
        let app = app;
        let one_attempt = RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(10),
            max_attempts: 1,
        };
        let queue = Queue::new(
            app.store.clone(),
            QueueConfig {
                lease: Duration::from_secs(30),
                retry: one_attempt,
            },
        )
        .expect("queue");
        let job_id = queue
            .enqueue(&NewJob::new("test.sync", json!({ "n": 1 })))
            .await
            .expect("enqueue")
            .expect("id");
        let job = queue
            .claim("test", &["test.sync".to_string()], 1)
            .await
            .expect("claim")
            .remove(0);
        queue
            .fail(&job, &JobsError::failed("directory unreachable"))
            .await
            .expect("fail");
        let mut tx = app.store.write_tx().await.expect("tx");
        outbox::insert(&mut tx, "notify.test", &json!({ "to": "ops" }))
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        let dispatcher = Dispatcher::new(
            app.store.clone(),
            DispatchConfig {
                retry: one_attempt,
                ..DispatchConfig::default()
            },
        )
        .expect("dispatcher");
        assert_eq!(
            dispatcher
                .dispatch_once(&Refuse)
                .await
                .expect("dispatch")
                .dead,
            1
        );

        let path = "/api/v1/background/dead-letters";
        let items = app.get(path).await.expect(200).body["items"].clone();
        let items = items.as_array().expect("items");
        assert_eq!(items.len(), 2, "{items:?}");
        let q = items
            .iter()
            .find(|i| i["source"] == "queue")
            .expect("queue item");
        assert_eq!(q["id"], job_id);
        assert_eq!(q["kind"], "test.sync");
        assert_eq!(q["attempts"], 1);
        assert!(
            q["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("directory unreachable")
        );
        assert!(q["created_at"].is_string() && q["dead_at"].is_string());
        assert!(q.get("payload").is_none(), "payloads are not shown");
        let o = items
            .iter()
            .find(|i| i["source"] == "outbox")
            .expect("outbox item");
        assert_eq!(o["kind"], "notify.test");
        assert!(
            o["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("mail server refused")
        );
        let outbox_id = o["id"].as_i64().expect("id");
        let only_queue = app.get(&format!("{path}?source=queue")).await.expect(200);
        assert_eq!(only_queue.body["items"].as_array().map(Vec::len), Some(1));
        app.get(&format!("{path}?after=1")).await.expect(400);
        app.get(&format!("{path}?sauce=queue")).await.expect(400);

        // Dead letters span every locking system: reading and requeueing are the operator's
        // (a super administrator of the operator system), not system settings at any level.
        let (_, nobody) = app.admin_with("N1", json!({}), &[]).await;
        let (_, viewer) = app
            .admin_with("V1", json!({ "system_settings": "full" }), &[])
            .await;
        app.call(Method::GET, path, Some(&nobody), None)
            .await
            .expect(403);
        app.call(Method::GET, path, Some(&viewer), None)
            .await
            .expect(403);
        let requeue = format!("{path}/{job_id}/requeue");
        app.call(
            Method::POST,
            &requeue,
            Some(&viewer),
            Some(json!({ "source": "queue" })),
        )
        .await
        .expect(403);
        app.post(&requeue, json!({})).await.expect(422);
        app.post(&requeue, json!({ "source": "queue" }))
            .await
            .expect(200);
        let rec = queue.get(job_id).await.expect("get").expect("job");
        assert_eq!(rec.state, JobState::Ready);
        assert_eq!(rec.attempts, 0);
        // No longer dead: a second requeue finds nothing.
        app.post(&requeue, json!({ "source": "queue" }))
            .await
            .expect(404);
        app.post(
            &format!("{path}/{outbox_id}/requeue"),
            json!({ "source": "outbox" }),
        )
        .await
        .expect(200);
        assert_eq!(
            app.get(path).await.expect(200).body["items"],
            json!([]),
            "nothing dead any more"
        );
        // The requeued message is delivered now.
        assert_eq!(
            dispatcher
                .dispatch_once(&LogDeliver)
                .await
                .expect("dispatch")
                .delivered,
            1
        );
    }
);
