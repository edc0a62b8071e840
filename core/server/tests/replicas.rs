//! Two real `lockgate serve` replicas on one PostgreSQL database share the durable background
//! queue: a few hundred jobs enqueued into the database are each run exactly once (one claim,
//! one handler run, no lease lost), none is lost, and both replicas take part.

#![cfg(unix)]

mod common;

use common::{Gateway, TempDir, free_port, unique_suffix};

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use lockgate_jobs::{NewJob, Queue, QueueConfig};
use lockgate_store::{ConnectOptions, Store};
use serde_json::json;
use sqlx::Row;

/// The handler kind the jobs are for: a full reconciliation of the (one, empty) locking
/// system: harmless, quick and idempotent.
const KIND: &str = "reconcile.full";
/// What the `reconcile.full` handler logs (debug, target `lockgate::background`) per run.
const RAN: &str = "periodic full reconciliation done";
/// Jobs enqueued (one `enqueue_many`, at most 500).
const JOBS: usize = 400;

fn pg_admin_url() -> String {
    std::env::var("LOCKGATE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database, dropped (with its connections) when the guard goes.
struct PgDatabase {
    name: String,
    url: String,
}

impl PgDatabase {
    fn create(rt: &tokio::runtime::Runtime) -> PgDatabase {
        let name = format!("lockgate_replicas_{}", unique_suffix());
        rt.block_on(async {
            sqlx::any::install_default_drivers();
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&pg_admin_url())
                .await
                .expect("PostgreSQL on 127.0.0.1:5432 (LOCKGATE_TEST_PG)");
            sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("create database");
        });
        let base = pg_admin_url();
        let url = format!(
            "{}/{name}",
            base.rsplit_once('/').map(|(b, _)| b).unwrap_or(&base)
        );
        PgDatabase { name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A fresh runtime on another thread: this may run while the test's runtime unwinds.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut c) =
                    <sqlx::AnyConnection as sqlx::Connection>::connect(&pg_admin_url()).await
                {
                    let _ = sqlx::Executor::execute(
                        &mut c,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

fn config(url: &str, port: u16) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
shutdown_grace_seconds = 2

[database]
url = "{url}"
max_connections = 4

[log]
level = "info,lockgate::background=debug"
format = "json"

[plugins]
enabled = false

[background]
concurrency = 2
lease = "30s"
reconcile_every = "30d"
overdue_check_every = "30d"
purge_every = "30d"
licence_check_every = "30d"
directory_sync_every = "30d"
job_retention_days = 31
"#
    )
}

/// One row of `queue_jobs`.
#[derive(Debug)]
struct JobRow {
    id: i64,
    state: String,
    attempts: i64,
    fencing: i64,
    lease_owner: Option<String>,
    last_error: Option<String>,
}

async fn rows(store: &Store, ids: &[i64]) -> Vec<JobRow> {
    let all = sqlx::query(
        "SELECT id, state, attempts, fencing, lease_owner, last_error FROM queue_jobs \
         WHERE kind = $1 AND periodic_task IS NULL ORDER BY id",
    )
    .bind(KIND)
    .fetch_all(store.pool())
    .await
    .expect("queue_jobs");
    let rows: Vec<JobRow> = all
        .iter()
        .map(|r| JobRow {
            id: r.get("id"),
            state: r.get("state"),
            attempts: r.get("attempts"),
            fencing: r.get("fencing"),
            lease_owner: r.get("lease_owner"),
            last_error: r.get("last_error"),
        })
        .collect();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids,
        "exactly the enqueued jobs, none lost, none added"
    );
    rows
}

#[test]
fn two_replicas_run_each_queued_job_exactly_once() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let db = PgDatabase::create(&rt);
    let dir = TempDir::new("lockgate-replicas");

    // Replica A migrates the empty database and bootstraps the first system.
    let port_a = free_port();
    let path_a = dir.0.join("replica-a.toml");
    std::fs::write(&path_a, config(&db.url, port_a)).expect("config");
    let mut a = Gateway::start("replica-a", &dir.0, &path_a, port_a);
    let started = Instant::now();
    let owner_a = a.wait_ready();
    assert!(
        a.token.lock().expect("token").is_some(),
        "replica A bootstraps and prints the token once"
    );
    // Replica B on the same database: the system exists, no second bootstrap.
    let port_b = free_port();
    let path_b = dir.0.join("replica-b.toml");
    std::fs::write(&path_b, config(&db.url, port_b)).expect("config");
    let mut b = Gateway::start("replica-b", &dir.0, &path_b, port_b);
    let owner_b = b.wait_ready();
    eprintln!("both replicas ready after {:?}", started.elapsed());
    assert_ne!(owner_a, owner_b, "distinct worker owners");
    assert!(
        b.token.lock().expect("token").is_none(),
        "replica B must not bootstrap again"
    );
    assert!(b.logged("created the first locking system").is_empty());

    let store = rt.block_on(async {
        Store::connect(&ConnectOptions::new(&db.url))
            .await
            .expect("connect")
    });
    let systems: i64 = rt.block_on(async {
        sqlx::query("SELECT COUNT(*) AS n FROM locking_systems")
            .fetch_one(store.pool())
            .await
            .expect("count systems")
            .get("n")
    });
    assert_eq!(systems, 1, "one system bootstrapped across both replicas");

    // A few hundred jobs straight into the database (neither replica is woken: both poll).
    let queue = Queue::new(store.clone(), QueueConfig::default()).expect("queue");
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|n| NewJob::new(KIND, json!({ "n": n })).max_attempts(3))
        .collect();
    let enqueued = Instant::now();
    let ids: Vec<i64> = rt
        .block_on(queue.enqueue_many(&jobs))
        .expect("enqueue")
        .into_iter()
        .map(|id| id.expect("no unique key: always inserted"))
        .collect();
    assert_eq!(ids.len(), JOBS);

    // While they run, sample the leased rows: the lease owner is the only worker id the
    // schema keeps, and only while a job is leased (complete clears it).
    let mut seen: HashMap<String, HashSet<i64>> = HashMap::new();
    let final_rows = loop {
        let rows = rt.block_on(rows(&store, &ids));
        for r in rows.iter().filter(|r| r.state == "leased") {
            if let Some(o) = &r.lease_owner {
                seen.entry(o.clone()).or_default().insert(r.id);
            }
        }
        if rows.iter().all(|r| r.state == "done" || r.state == "dead") {
            break rows;
        }
        assert!(
            enqueued.elapsed() < Duration::from_secs(180),
            "jobs not done within 180 s: {} done\nA:\n{}\nB:\n{}",
            rows.iter().filter(|r| r.state == "done").count(),
            a.log_text(),
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = enqueued.elapsed();

    // Every job done, by exactly one claim: attempts = 1 and fencing = 1 (the fencing token
    // moves on with every claim, so no job was ever claimed twice, not even after an
    // expired lease), nothing failed, no lease left.
    for r in &final_rows {
        assert_eq!(r.state, "done", "{r:?}");
        assert_eq!(r.attempts, 1, "claimed once: {r:?}");
        assert_eq!(r.fencing, 1, "one claim, one fencing token: {r:?}");
        assert_eq!(r.last_error, None, "{r:?}");
        assert_eq!(r.lease_owner, None, "{r:?}");
    }

    // Each handler run logs one line. Across both replicas there are exactly as many runs as
    // done `reconcile.full` jobs (the enqueued ones plus the periodic slot's): no job's
    // handler ran twice, not even one whose result was then refused by the fencing token.
    // Give the logs a moment to reach the pipes.
    let done_all: i64 = rt.block_on(async {
        sqlx::query("SELECT COUNT(*) AS n FROM queue_jobs WHERE kind = $1 AND state = 'done'")
            .bind(KIND)
            .fetch_one(store.pool())
            .await
            .expect("count")
            .get("n")
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let (ran_a, ran_b) = loop {
        let (ra, rb) = (a.logged(RAN).len(), b.logged(RAN).len());
        if ra + rb >= usize::try_from(done_all).unwrap_or(0) || Instant::now() > deadline {
            break (ra, rb);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "{JOBS} jobs done in {took:?}; handler runs: A {ran_a}, B {ran_b} \
         ({done_all} done reconcile.full jobs incl. periodic); jobs seen leased: A {}, B {}",
        seen.get(&owner_a).map_or(0, HashSet::len),
        seen.get(&owner_b).map_or(0, HashSet::len),
    );
    assert_eq!(
        (ran_a + ran_b) as i64,
        done_all,
        "one handler run per done job, none twice"
    );
    let lease_lost = a.logged("lease lost before the result was written").len()
        + b.logged("lease lost before the result was written").len()
        + a.logged("lease lost while running; abandoning the attempt")
            .len()
        + b.logged("lease lost while running; abandoning the attempt")
            .len();
    assert_eq!(lease_lost, 0, "no stale lease");

    // Both replicas did work.
    assert!(ran_a > 0 && ran_b > 0, "A ran {ran_a}, B ran {ran_b}");
    for o in seen.keys() {
        assert!(
            *o == owner_a || *o == owner_b,
            "lease owner {o} is one of the replicas' workers"
        );
    }
    if let (Some(sa), Some(sb)) = (seen.get(&owner_a), seen.get(&owner_b)) {
        assert!(sa.is_disjoint(sb), "no job leased by both replicas");
    }

    // Nothing else on the queue died (the periodic tasks of both replicas).
    let dead: Vec<(String, Option<String>)> = rt.block_on(async {
        sqlx::query("SELECT kind, last_error FROM queue_jobs WHERE state = 'dead'")
            .fetch_all(store.pool())
            .await
            .expect("dead")
            .iter()
            .map(|r| (r.get("kind"), r.get("last_error")))
            .collect()
    });
    if !dead.is_empty() {
        eprintln!("dead jobs (periodic tasks): {dead:?}");
    }

    rt.block_on(store.close());
    drop(a);
    drop(b);
    drop(db);
}
