//! The durable background runtime (lockgate-jobs) on both databases: claims and fencing
//! tokens, retries with backoff into the dead letters and back, periodic slots under
//! concurrent schedulers, the transactional outbox and its dispatcher, and two workers on
//! separate connection pools sharing one queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use lockgate_jobs::{
    Deliver, DispatchConfig, Dispatcher, FailOutcome, Handler, Job, JobState, JobsError, NewJob,
    OutboxMessage, Periodic, Queue, QueueConfig, RetryPolicy, Worker, WorkerConfig, async_trait,
    outbox,
};
use lockgate_store::{ConnectOptions, Store};
use lockgate_tests::*;
use serde_json::json;
use sqlx::Row;
use tokio::sync::watch;

fn queue(store: &Store, lease_ms: u64, retry: RetryPolicy) -> Queue {
    Queue::new(
        store.clone(),
        QueueConfig {
            lease: Duration::from_millis(lease_ms),
            retry,
        },
    )
    .expect("queue config")
}

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(40),
        cap: Duration::from_millis(80),
        max_attempts,
    }
}

fn kinds(k: &str) -> Vec<String> {
    vec![k.to_string()]
}

/// Another `Store` (its own connection pool) on the test's database, as a second replica.
async fn replica(app: &TestApp) -> Store {
    let url = match app.db {
        Db::Sqlite => {
            let rows = sqlx::query("PRAGMA database_list")
                .fetch_all(app.store.pool())
                .await
                .expect("database list");
            let file = rows
                .iter()
                .find(|r| r.try_get::<String, _>("name").ok().as_deref() == Some("main"))
                .and_then(|r| r.try_get::<String, _>("file").ok())
                .expect("main database file");
            format!("sqlite://{file}")
        }
        Db::Postgres => {
            let name: String = sqlx::query("SELECT current_database()::text AS name")
                .fetch_one(app.store.pool())
                .await
                .expect("database name")
                .try_get("name")
                .expect("name");
            let base = pg_admin_url();
            format!(
                "{}/{name}",
                base.rsplit_once('/').map(|(b, _)| b).unwrap_or(&base)
            )
        }
    };
    Store::connect(&ConnectOptions::new(url))
        .await
        .expect("second pool")
}

on_both!(claim_and_complete, |app: TestApp| async move {
    // Own the whole app (edition 2021 closures capture only the fields they use, and
    // dropping the rest would drop the test database).
    let app = app;
    let q = queue(&app.store, 5_000, RetryPolicy::default());
    let id = q
        .enqueue(&NewJob::new("mail", json!({ "to": "a@example.org" })))
        .await
        .expect("enqueue")
        .expect("new job");
    // Not yet due: a job for later is not claimable now.
    q.enqueue(&NewJob::new("mail", json!({})).at(Utc::now() + chrono::Duration::hours(1)))
        .await
        .expect("enqueue later");

    let jobs = q.claim("w1", &kinds("mail"), 10).await.expect("claim");
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!((job.id, job.attempt, job.fencing), (id, 1, 1));
    assert_eq!(job.payload["to"], "a@example.org");
    assert!(job.lease_expires_at > Utc::now());
    // Leased: nobody else gets it; other kinds are not claimed.
    assert!(
        q.claim("w2", &kinds("mail"), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    assert!(
        q.claim("w2", &kinds("other"), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let rec = q.get(id).await.expect("get").expect("exists");
    assert_eq!(rec.state, JobState::Leased);
    assert_eq!(rec.lease_owner.as_deref(), Some("w1"));

    q.complete(job).await.expect("complete");
    let rec = q.get(id).await.expect("get").expect("exists");
    assert_eq!(
        (rec.state, rec.attempts, rec.fencing),
        (JobState::Done, 1, 1)
    );
    assert_eq!(rec.lease_owner, None);
    // Completing twice is refused and changes nothing.
    assert!(q.complete(job).await.expect_err("twice").is_lease_lost());

    // Unique keys: one open job per (kind, key); a new one once the first is done.
    let a = q
        .enqueue(&NewJob::new("sync", json!(1)).unique("dir-1"))
        .await
        .expect("enqueue");
    assert!(a.is_some());
    let dup = q
        .enqueue(&NewJob::new("sync", json!(2)).unique("dir-1"))
        .await
        .expect("enqueue dup");
    assert_eq!(dup, None);
    let other = q
        .enqueue(&NewJob::new("sync", json!(3)).unique("dir-2"))
        .await
        .expect("enqueue other key");
    assert!(other.is_some());
    for j in q.claim("w1", &kinds("sync"), 10).await.expect("claim") {
        q.complete(&j).await.expect("complete");
    }
    assert!(
        q.enqueue(&NewJob::new("sync", json!(4)).unique("dir-1"))
            .await
            .expect("enqueue again")
            .is_some()
    );
    let s = q.stats().await.expect("stats");
    assert_eq!((s.done, s.ready, s.leased, s.dead), (3, 2, 0, 0));
});

on_both!(
    fencing_refuses_a_worker_whose_lease_expired,
    |app: TestApp| async move {
        // Own the whole app (edition 2021 closures capture only the fields they use, and
        // dropping the rest would drop the test database).
        let app = app;
        let q = queue(&app.store, 200, RetryPolicy::default());
        let id = q
            .enqueue(&NewJob::new("report", json!({})))
            .await
            .expect("enqueue")
            .expect("id");
        let first = q
            .claim("slow", &kinds("report"), 1)
            .await
            .expect("claim")
            .remove(0);
        assert_eq!(first.fencing, 1);
        tokio::time::sleep(Duration::from_millis(350)).await;

        // The lease expired: another worker claims the job again, with a newer token.
        let second = q
            .claim("fast", &kinds("report"), 1)
            .await
            .expect("reclaim")
            .remove(0);
        assert_eq!((second.id, second.fencing, second.attempt), (id, 2, 2));

        // The first worker can neither complete, fail nor extend: LeaseLost, nothing written.
        match q.complete(&first).await {
            Err(JobsError::LeaseLost {
                id: lost, fencing, ..
            }) => assert_eq!((lost, fencing), (id, 1)),
            other => panic!("expected LeaseLost, got {other:?}"),
        }
        assert!(
            q.fail(&first, &JobsError::failed("late"))
                .await
                .expect_err("fail")
                .is_lease_lost()
        );
        assert!(q.extend(&first).await.expect_err("extend").is_lease_lost());
        let rec = q.get(id).await.expect("get").expect("exists");
        assert_eq!(rec.state, JobState::Leased);
        assert_eq!(rec.lease_owner.as_deref(), Some("fast"));
        assert_eq!((rec.fencing, rec.last_error), (2, None));

        // The current holder extends and completes.
        let until = q.extend(&second).await.expect("extend");
        assert!(until > Utc::now());
        q.complete(&second).await.expect("complete");
        assert_eq!(
            q.get(id).await.expect("get").expect("exists").state,
            JobState::Done
        );
    }
);

on_both!(
    retries_back_off_then_dead_letter_and_requeue,
    |app: TestApp| async move {
        // Own the whole app (edition 2021 closures capture only the fields they use, and
        // dropping the rest would drop the test database).
        let app = app;
        // Long enough that "not claimable before its backoff" holds on a loaded machine
        // (a claim round trip can take longer than the 20 ms fast_retry allows).
        let retry = RetryPolicy {
            base: Duration::from_millis(300),
            cap: Duration::from_millis(600),
            max_attempts: 3,
        };
        let q = queue(&app.store, 5_000, retry);
        let id = q
            .enqueue(&NewJob::new("mqtt", json!({ "topic": "doors" })))
            .await
            .expect("enqueue")
            .expect("id");

        for attempt in 1..=3u32 {
            let job = loop {
                // Not due before its backoff: poll until it is (bounded).
                let mut got = q.claim("w", &kinds("mqtt"), 1).await.expect("claim");
                if let Some(j) = got.pop() {
                    break j;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            assert_eq!(job.attempt, attempt);
            let before = Utc::now();
            let outcome = q
                .fail(&job, &JobsError::failed(format!("broker down {attempt}")))
                .await
                .expect("fail");
            if attempt < 3 {
                let FailOutcome::Retry { run_at } = outcome else {
                    panic!("attempt {attempt} should be retried, got {outcome:?}");
                };
                // Exponential backoff with equal jitter: [backoff/2, backoff] after the failure.
                let wait = (run_at - before).to_std().expect("in the future");
                let full = retry.backoff(attempt);
                assert!(
                    wait >= full / 2 - Duration::from_millis(5)
                        && wait <= full + Duration::from_millis(50),
                    "attempt {attempt}: waited {wait:?}, backoff {full:?}"
                );
                assert!(
                    q.claim("w", &kinds("mqtt"), 1)
                        .await
                        .expect("claim")
                        .is_empty()
                );
            } else {
                assert_eq!(outcome, FailOutcome::Dead);
            }
        }

        let dead = q.dead_letters(None, None, 50).await.expect("dead letters");
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].id, dead[0].attempts, dead[0].state),
            (id, 3, JobState::Dead)
        );
        assert_eq!(dead[0].last_error.as_deref(), Some("broker down 3"));
        assert!(
            q.dead_letters(Some("mail"), None, 50)
                .await
                .expect("by kind")
                .is_empty()
        );
        assert_eq!(
            q.dead_letters(Some("mqtt"), None, 50)
                .await
                .expect("by kind")
                .len(),
            1
        );
        assert!(
            q.dead_letters(None, Some(id), 50)
                .await
                .expect("after")
                .is_empty()
        );
        assert!(
            q.claim("w", &kinds("mqtt"), 1)
                .await
                .expect("claim")
                .is_empty()
        );

        // Requeue: ready at once, attempts from zero, then it can succeed.
        q.requeue(id).await.expect("requeue");
        assert!(matches!(
            q.requeue(id).await,
            Err(JobsError::NotFound { .. })
        ));
        let job = q
            .claim("w", &kinds("mqtt"), 1)
            .await
            .expect("claim")
            .remove(0);
        assert_eq!((job.id, job.attempt), (id, 1));
        assert_eq!(job.fencing, 4, "the token keeps growing across requeues");
        q.complete(&job).await.expect("complete");
        assert!(
            q.dead_letters(None, None, 50)
                .await
                .expect("dead")
                .is_empty()
        );

        // A permanent failure skips the remaining attempts.
        let p = q
            .enqueue(&NewJob::new("mqtt", json!({})))
            .await
            .expect("enqueue")
            .expect("id");
        let job = q
            .claim("w", &kinds("mqtt"), 1)
            .await
            .expect("claim")
            .remove(0);
        assert_eq!(
            q.fail(&job, &JobsError::permanent("bad payload"))
                .await
                .expect("fail"),
            FailOutcome::Dead
        );
        assert_eq!(
            q.get(p)
                .await
                .expect("get")
                .expect("exists")
                .last_error
                .as_deref(),
            Some("permanent failure: bad payload")
        );

        // A worker that dies on the last attempt: once its lease expires the job is dead, not retried.
        let short = queue(&app.store, 150, fast_retry(1));
        let d = short
            .enqueue(&NewJob::new("crash", json!({})))
            .await
            .expect("enqueue")
            .expect("id");
        let _lost = short
            .claim("dies", &kinds("crash"), 1)
            .await
            .expect("claim");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            short
                .claim("w", &kinds("crash"), 1)
                .await
                .expect("claim")
                .is_empty()
        );
        let rec = short.get(d).await.expect("get").expect("exists");
        assert_eq!(rec.state, JobState::Dead);
        assert!(rec.last_error.expect("error").contains("lease"));
    }
);

on_both!(
    periodic_slot_created_once_by_concurrent_schedulers,
    |app: TestApp| async move {
        // Own the whole app (edition 2021 closures capture only the fields they use, and
        // dropping the rest would drop the test database).
        let app = app;
        let tasks = vec![
            Periodic::new("ldap-sync", "ldap_sync", Duration::from_secs(60)),
            Periodic::new("purge", "archive_purge", Duration::from_secs(3600))
                .with_payload(json!({ "days": 30 })),
        ];
        let stores = [app.store.clone(), replica(&app).await, replica(&app).await];
        let now = Utc::now();
        let mut handles = Vec::new();
        for i in 0..9 {
            let q = queue(&stores[i % stores.len()], 5_000, RetryPolicy::default());
            let tasks = tasks.clone();
            handles.push(tokio::spawn(async move {
                q.schedule_periodic(&tasks, now).await.expect("schedule")
            }));
        }
        let mut created = 0;
        for h in handles {
            created += h.await.expect("join");
        }
        assert_eq!(
            created, 2,
            "one job per task and slot, however many schedulers"
        );

        let q = queue(&app.store, 5_000, RetryPolicy::default());
        let rows = sqlx::query(
        "SELECT periodic_task, slot, COUNT(*) AS n FROM queue_jobs GROUP BY periodic_task, slot",
    )
    .fetch_all(app.store.pool())
    .await
    .expect("rows");
        assert_eq!(rows.len(), 2);
        for r in &rows {
            assert_eq!(r.try_get::<i64, _>("n").expect("n"), 1);
        }
        let (slot, start) = tasks[0].slot_at(now).expect("slot");
        assert_eq!(slot, now.timestamp_millis().div_euclid(60_000));
        assert!(start <= now);

        // Running it again in the same slot creates nothing; the next slot gets its job.
        assert_eq!(q.schedule_periodic(&tasks, now).await.expect("again"), 0);
        let later = now + chrono::Duration::seconds(60);
        assert_eq!(
            q.schedule_periodic(&tasks, later).await.expect("next slot"),
            1
        );
        let job = q
            .claim("w", &kinds("archive_purge"), 5)
            .await
            .expect("claim");
        assert_eq!(job.len(), 1);
        assert_eq!(job[0].payload["days"], 30);
        for s in stores.iter().skip(1) {
            s.close().await;
        }
    }
);

on_both!(
    outbox_row_follows_the_callers_transaction,
    |app: TestApp| async move {
        // Own the whole app (edition 2021 closures capture only the fields they use, and
        // dropping the rest would drop the test database).
        let app = app;
        let d = Dispatcher::new(app.store.clone(), DispatchConfig::default()).expect("dispatcher");
        let q = queue(&app.store, 5_000, RetryPolicy::default());

        // Committed: the message (and a job enqueued in the same transaction) exist.
        let mut tx = app.store.write_tx().await.expect("tx");
        let committed = outbox::insert(&mut tx, "mail", &json!({ "subject": "Key lost" }))
            .await
            .expect("insert");
        q.enqueue_in(&mut tx, &NewJob::new("notify", json!({})))
            .await
            .expect("enqueue in tx");
        tx.commit().await.expect("commit");
        let rec = d
            .get(&committed)
            .await
            .expect("get")
            .expect("committed message");
        assert_eq!((rec.topic.as_str(), rec.attempts), ("mail", 0));
        assert_eq!(rec.payload["subject"], "Key lost");
        assert_eq!(rec.dispatched_at, None);

        // Rolled back: neither exists.
        let mut tx = app.store.write_tx().await.expect("tx");
        let rolled = outbox::insert(&mut tx, "mail", &json!({ "subject": "never" }))
            .await
            .expect("insert");
        q.enqueue_in(&mut tx, &NewJob::new("notify", json!({ "never": true })))
            .await
            .expect("enqueue in tx");
        tx.rollback().await.expect("rollback");
        assert!(d.get(&rolled).await.expect("get").is_none());
        assert_eq!(d.pending().await.expect("pending"), 1);
        assert_eq!(q.stats().await.expect("stats").ready, 1);

        // A caller-chosen id is inserted once.
        let mut tx = app.store.write_tx().await.expect("tx");
        assert!(
            outbox::insert_with_id(&mut tx, "event-42", "mqtt", &json!(1))
                .await
                .expect("insert")
        );
        assert!(
            !outbox::insert_with_id(&mut tx, "event-42", "mqtt", &json!(2))
                .await
                .expect("insert dup")
        );
        tx.commit().await.expect("commit");
        assert_eq!(d.pending().await.expect("pending"), 2);
    }
);

/// Records every delivery; fails the first attempt of topics listed in `flaky`.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, u32)>>,
    flaky: Vec<&'static str>,
}

#[async_trait]
impl Deliver for Recorder {
    async fn deliver(&self, m: &OutboxMessage) -> lockgate_jobs::Result<()> {
        self.seen
            .lock()
            .expect("lock")
            .push((m.message_id.clone(), m.attempt));
        if m.attempt == 1 && self.flaky.contains(&m.topic.as_str()) {
            return Err(JobsError::failed("broker unavailable"));
        }
        Ok(())
    }
}

on_both!(
    dispatcher_delivers_at_least_once_with_a_stable_id,
    |app: TestApp| async move {
        // Own the whole app (edition 2021 closures capture only the fields they use, and
        // dropping the rest would drop the test database).
        let app = app;
        let config = DispatchConfig {
            lease: Duration::from_millis(300),
            retry: fast_retry(5),
            batch: 10,
            poll_interval: Duration::from_millis(20),
            deliver_timeout: Duration::from_millis(200),
        };
        let mut tx = app.store.write_tx().await.expect("tx");
        let ok = outbox::insert(&mut tx, "mail", &json!({ "n": 1 }))
            .await
            .expect("insert");
        let flaky = outbox::insert(&mut tx, "mqtt", &json!({ "n": 2 }))
            .await
            .expect("insert");
        tx.commit().await.expect("commit");

        let d = Dispatcher::new(app.store.clone(), config).expect("dispatcher");
        let rec = Recorder {
            flaky: vec!["mqtt"],
            ..Recorder::default()
        };
        let r = d.dispatch_once(&rec).await.expect("dispatch");
        assert_eq!((r.claimed, r.delivered, r.retried), (2, 1, 1));
        assert!(
            d.get(&ok)
                .await
                .expect("get")
                .expect("ok")
                .dispatched_at
                .is_some()
        );
        let f = d.get(&flaky).await.expect("get").expect("flaky");
        assert_eq!((f.dispatched_at, f.attempts), (None, 1));
        assert_eq!(f.last_error.as_deref(), Some("broker unavailable"));

        // The retry runs after its backoff, under the same message id.
        let (tx_stop, rx_stop) = watch::channel(false);
        let runner = {
            let d = d.clone();
            let rec = Arc::new(rec);
            let rec2 = rec.clone();
            (
                tokio::spawn(async move { d.run(&*rec2, rx_stop).await.expect("run") }),
                rec,
            )
        };
        for _ in 0..200 {
            if d.pending().await.expect("pending") == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tx_stop.send(true).expect("stop");
        runner.0.await.expect("join");
        let seen = runner.1.seen.lock().expect("lock").clone();
        let of = |id: &str| {
            seen.iter()
                .filter(|(m, _)| m == id)
                .map(|(_, a)| *a)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            of(&ok),
            vec![1],
            "delivered once, never again after it was marked"
        );
        assert_eq!(
            of(&flaky),
            vec![1, 2],
            "failed, then delivered again with the same id"
        );
        assert!(
            d.get(&flaky)
                .await
                .expect("get")
                .expect("flaky")
                .dispatched_at
                .is_some()
        );

        // A dispatcher that stops after delivering but before marking: once its lease expires
        // another dispatcher delivers the same message id again; the first can no longer mark it.
        let mut tx = app.store.write_tx().await.expect("tx");
        let twice = outbox::insert(&mut tx, "mail", &json!({ "n": 3 }))
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        let crashed = Dispatcher::new(app.store.clone(), config).expect("dispatcher");
        let stale = crashed.claim(10).await.expect("claim").remove(0);
        assert_eq!(stale.message_id, twice);
        let other = Dispatcher::new(replica(&app).await, config).expect("dispatcher");
        assert!(other.claim(10).await.expect("claim").is_empty(), "leased");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let rec = Recorder::default();
        let r = other.dispatch_once(&rec).await.expect("dispatch");
        assert_eq!(r.delivered, 1);
        assert_eq!(rec.seen.lock().expect("lock")[0], (twice.clone(), 2));
        assert!(
            crashed
                .mark_delivered(&stale)
                .await
                .expect_err("stale")
                .is_lease_lost()
        );
        assert_eq!(d.pending().await.expect("pending"), 0);
    }
);

/// Counts runs per job id; fails the first attempt of every seventh job; sleeps a little.
#[derive(Default)]
struct Counting {
    runs: Mutex<HashMap<i64, u32>>,
    successes: Mutex<HashMap<i64, u32>>,
    sleep_ms: u64,
}

#[async_trait]
impl Handler for Counting {
    async fn run(&self, job: &Job) -> lockgate_jobs::Result<()> {
        *self.runs.lock().expect("lock").entry(job.id).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        if job.attempt == 1 && job.payload["n"].as_i64().unwrap_or(0) % 7 == 0 {
            return Err(JobsError::failed("transient"));
        }
        *self
            .successes
            .lock()
            .expect("lock")
            .entry(job.id)
            .or_default() += 1;
        Ok(())
    }
}

on_both!(
    two_workers_share_a_queue_without_loss_or_duplicates,
    |app: TestApp| async move {
        // Own the whole app (edition 2021 closures capture only the fields they use, and
        // dropping the rest would drop the test database).
        let app = app;
        const JOBS: usize = 300;
        let q = queue(&app.store, 5_000, fast_retry(3));
        for chunk in (0..JOBS).collect::<Vec<_>>().chunks(100) {
            let batch: Vec<NewJob> = chunk
                .iter()
                .map(|n| NewJob::new("work", json!({ "n": n })))
                .collect();
            q.enqueue_many(&batch).await.expect("enqueue");
        }
        let handler = Arc::new(Counting {
            sleep_ms: 2,
            ..Counting::default()
        });
        let (stop, rx) = watch::channel(false);
        let mut workers = Vec::new();
        for (i, store) in [app.store.clone(), replica(&app).await]
            .into_iter()
            .enumerate()
        {
            let mut w = Worker::new(
                queue(&store, 5_000, fast_retry(3)),
                WorkerConfig {
                    concurrency: 4,
                    claim_batch: 4,
                    poll_interval: Duration::from_millis(20),
                    owner: Some(format!("replica-{i}")),
                    ..WorkerConfig::default()
                },
            )
            .expect("worker");
            w.register("work", handler.clone()).expect("register");
            workers.push(tokio::spawn(w.run(rx.clone())));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let s = q.stats().await.expect("stats");
            if s.done as usize == JOBS {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not all done: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).expect("stop");
        let mut reports = Vec::new();
        for w in workers {
            reports.push(w.await.expect("join").expect("worker"));
        }

        let successes = handler.successes.lock().expect("lock").clone();
        let runs = handler.runs.lock().expect("lock").clone();
        assert_eq!(successes.len(), JOBS, "no job lost");
        assert!(successes.values().all(|&n| n == 1), "no job done twice");
        let retried = JOBS.div_ceil(7);
        assert_eq!(
            runs.values().map(|&n| n as usize).sum::<usize>(),
            JOBS + retried
        );
        let completed: u64 = reports.iter().map(|r| r.completed).sum();
        assert_eq!(completed as usize, JOBS);
        assert_eq!(
            reports.iter().map(|r| r.retried).sum::<u64>() as usize,
            retried
        );
        assert!(
            reports.iter().all(|r| r.lease_lost == 0 && r.dead == 0),
            "{reports:?}"
        );
        assert!(
            reports.iter().all(|r| r.claimed > 0),
            "both replicas worked: {reports:?}"
        );
        let s = q.stats().await.expect("stats");
        assert_eq!((s.ready, s.leased, s.dead), (0, 0, 0));
    }
);

on_both!(long_jobs_keep_their_lease, |app: TestApp| async move {
    // Own the whole app (edition 2021 closures capture only the fields they use, and
    // dropping the rest would drop the test database).
    let app = app;
    // Lease 200 ms, handler 700 ms: the worker extends the lease, the other never steals it.
    let q = queue(&app.store, 200, fast_retry(3));
    let id = q
        .enqueue(&NewJob::new("slow", json!({ "n": 1 })))
        .await
        .expect("enqueue")
        .expect("id");
    let handler = Arc::new(Counting {
        sleep_ms: 700,
        ..Counting::default()
    });
    let (stop, rx) = watch::channel(false);
    let mut workers = Vec::new();
    for store in [app.store.clone(), replica(&app).await] {
        let mut w = Worker::new(
            queue(&store, 200, fast_retry(3)),
            WorkerConfig {
                poll_interval: Duration::from_millis(20),
                ..WorkerConfig::default()
            },
        )
        .expect("worker");
        w.register("slow", handler.clone()).expect("register");
        workers.push(tokio::spawn(w.run(rx.clone())));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while q.get(id).await.expect("get").expect("exists").state != JobState::Done {
        assert!(tokio::time::Instant::now() < deadline, "job not done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).expect("stop");
    for w in workers {
        let r = w.await.expect("join").expect("worker");
        assert_eq!(r.lease_lost, 0);
    }
    assert_eq!(handler.runs.lock().expect("lock").get(&id), Some(&1));
    let rec = q.get(id).await.expect("get").expect("exists");
    assert_eq!((rec.attempts, rec.fencing), (1, 1));
});

on_both!(
    workers_run_a_periodic_task_once_per_slot,
    |app: TestApp| async move {
        let app = app;
        // Every replica's worker schedules the same daily task: one job, one run.
        let tasks = vec![Periodic::new(
            "expire-groups",
            "expire",
            Duration::from_secs(86_400),
        )];
        let handler = Arc::new(Counting::default());
        let (stop, rx) = watch::channel(false);
        let mut workers = Vec::new();
        for store in [app.store.clone(), replica(&app).await, replica(&app).await] {
            let mut w = Worker::new(
                queue(&store, 5_000, fast_retry(3)),
                WorkerConfig {
                    poll_interval: Duration::from_millis(20),
                    schedule_every: Duration::from_millis(30),
                    ..WorkerConfig::default()
                },
            )
            .expect("worker")
            .with_periodic(tasks.clone())
            .expect("periodic");
            w.register("expire", handler.clone()).expect("register");
            workers.push(tokio::spawn(w.run(rx.clone())));
        }
        let q = queue(&app.store, 5_000, fast_retry(3));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while q.stats().await.expect("stats").done == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "periodic job not run"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the schedulers run a few more rounds in the same slot.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(true).expect("stop");
        let mut completed = 0;
        for w in workers {
            completed += w.await.expect("join").expect("worker").completed;
        }
        assert_eq!(completed, 1);
        let s = q.stats().await.expect("stats");
        assert_eq!((s.done, s.ready, s.leased), (1, 0, 0));
        assert_eq!(handler.runs.lock().expect("lock").len(), 1);
    }
);
