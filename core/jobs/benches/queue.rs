//! Queue throughput on real databases: jobs per second claimed and completed by 4 workers,
//! on SQLite (a temp file) and on PostgreSQL (its own database on 127.0.0.1:5432, created
//! and dropped here; `LOCKGATE_TEST_PG` overrides the admin URL as for the tests).
//!
//! Per database, `JOBS` no-op jobs are enqueued (untimed, in batches of 500), then measured:
//!
//! 1. *runtime*: 4 [`Worker`]s, each on its own connection pool (as 4 replicas would be),
//!    concurrency 4 and claim batch 16, run until every job is done;
//! 2. *claim/complete*: 4 tasks (own pools) looping `claim(16)` → `complete` per job, the
//!    floor the runtime adds its task and lease bookkeeping to;
//! 3. *single claims*: the same with `claim(1)`, i.e. one claim transaction per job.
//!
//! Run with `cargo bench -p lockgate-jobs --bench queue`; `LOCKGATE_BENCH_DB=sqlite|postgres`
//! runs one database only, `LOCKGATE_BENCH_JOBS=n` changes the job count (default 4000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lockgate_jobs::{Handler, Job, NewJob, Queue, QueueConfig, Worker, WorkerConfig};
use lockgate_store::{ConnectOptions, Store};
use serde_json::json;
use tokio::sync::watch;

const WORKERS: usize = 4;
const KIND: &str = "bench";

struct Noop;

#[async_trait]
impl Handler for Noop {
    async fn run(&self, _job: &Job) -> lockgate_jobs::Result<()> {
        Ok(())
    }
}

fn pg_admin_url() -> String {
    std::env::var("LOCKGATE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database for the bench, removed when dropped.
struct BenchDb {
    url: String,
    sqlite_path: Option<std::path::PathBuf>,
    pg_name: Option<String>,
}

impl BenchDb {
    async fn create(postgres: bool) -> BenchDb {
        let name = format!("lgbench_queue_{}", std::process::id());
        if postgres {
            sqlx::any::install_default_drivers();
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&pg_admin_url())
                .await
                .expect("PostgreSQL on 127.0.0.1:5432");
            sqlx::Executor::execute(
                &mut conn,
                format!("DROP DATABASE IF EXISTS {name}").as_str(),
            )
            .await
            .expect("drop old database");
            sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("create database");
            let base = pg_admin_url();
            let url = format!(
                "{}/{name}",
                base.rsplit_once('/').map(|(b, _)| b).unwrap_or(&base)
            );
            BenchDb {
                url,
                sqlite_path: None,
                pg_name: Some(name),
            }
        } else {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            remove_sqlite(&path);
            BenchDb {
                url: format!("sqlite://{}", path.display()),
                sqlite_path: Some(path),
                pg_name: None,
            }
        }
    }

    async fn drop_it(self) {
        if let Some(p) = &self.sqlite_path {
            remove_sqlite(p);
        }
        if let Some(name) = &self.pg_name
            && let Ok(mut c) =
                <sqlx::AnyConnection as sqlx::Connection>::connect(&pg_admin_url()).await
        {
            let _ = sqlx::Executor::execute(
                &mut c,
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
            )
            .await;
        }
    }
}

fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

async fn store(url: &str, max_connections: u32) -> Store {
    let mut opts = ConnectOptions::new(url);
    opts.max_connections = max_connections;
    Store::connect(&opts).await.expect("connect")
}

async fn fill(queue: &Queue, jobs: usize) {
    let mut left = jobs;
    let mut n = 0;
    while left > 0 {
        let take = left.min(500);
        let batch: Vec<NewJob> = (0..take)
            .map(|i| NewJob::new(KIND, json!({ "n": n + i })))
            .collect();
        queue.enqueue_many(&batch).await.expect("enqueue");
        n += take;
        left -= take;
    }
}

async fn wait_done(queue: &Queue, jobs: usize) {
    loop {
        let s = queue.stats().await.expect("stats");
        if s.done as usize >= jobs {
            assert_eq!(s.ready + s.leased + s.dead, 0, "{s:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn reset(queue: &Queue) {
    sqlx::query("DELETE FROM queue_jobs")
        .execute(queue.store().pool())
        .await
        .expect("reset");
}

fn config() -> QueueConfig {
    QueueConfig {
        lease: Duration::from_secs(30),
        ..QueueConfig::default()
    }
}

async fn runtime(url: &str, main: &Queue, jobs: usize) -> Duration {
    fill(main, jobs).await;
    let (tx, rx) = watch::channel(false);
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..WORKERS {
        let q = Queue::new(store(url, 4).await, config()).expect("queue");
        let mut w = Worker::new(
            q,
            WorkerConfig {
                concurrency: 4,
                claim_batch: 16,
                poll_interval: Duration::from_millis(20),
                owner: Some(format!("bench-{i}")),
                ..WorkerConfig::default()
            },
        )
        .expect("worker");
        w.register(KIND, Arc::new(Noop)).expect("register");
        handles.push(tokio::spawn(w.run(rx.clone())));
    }
    wait_done(main, jobs).await;
    let took = start.elapsed();
    tx.send(true).expect("shutdown");
    let mut completed = 0;
    for h in handles {
        completed += h.await.expect("join").expect("worker").completed;
    }
    assert_eq!(completed as usize, jobs, "each job completed once");
    took
}

async fn claim_complete(url: &str, main: &Queue, jobs: usize, batch: u32) -> Duration {
    fill(main, jobs).await;
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..WORKERS {
        let q = Queue::new(store(url, 2).await, config()).expect("queue");
        handles.push(tokio::spawn(async move {
            let kinds = vec![KIND.to_string()];
            let owner = format!("raw-{i}");
            let mut done = 0usize;
            loop {
                let claimed = q.claim(&owner, &kinds, batch).await.expect("claim");
                if claimed.is_empty() {
                    return done;
                }
                for job in &claimed {
                    q.complete(job).await.expect("complete");
                    done += 1;
                }
            }
        }));
    }
    let mut done = 0;
    for h in handles {
        done += h.await.expect("join");
    }
    let took = start.elapsed();
    assert_eq!(done, jobs);
    took
}

fn rate(jobs: usize, d: Duration) -> String {
    format!(
        "{:>8.0} jobs/s  ({jobs} jobs in {:>7.1} ms)",
        jobs as f64 / d.as_secs_f64(),
        d.as_secs_f64() * 1e3
    )
}

async fn bench(postgres: bool, jobs: usize) {
    let label = if postgres { "PostgreSQL" } else { "SQLite" };
    let db = BenchDb::create(postgres).await;
    let main_store = store(&db.url, 4).await;
    main_store.migrate().await.expect("migrate");
    let main = Queue::new(main_store, config()).expect("queue");

    let t = runtime(&db.url, &main, jobs).await;
    println!(
        "{label:<10} runtime, 4 workers × concurrency 4:  {}",
        rate(jobs, t)
    );
    reset(&main).await;
    let t = claim_complete(&db.url, &main, jobs, 16).await;
    println!(
        "{label:<10} claim(16)/complete, 4 tasks:      {}",
        rate(jobs, t)
    );
    reset(&main).await;
    let t = claim_complete(&db.url, &main, jobs, 1).await;
    println!(
        "{label:<10} claim(1)/complete, 4 tasks:       {}",
        rate(jobs, t)
    );

    main.store().close().await;
    db.drop_it().await;
}

fn main() {
    let jobs = std::env::var("LOCKGATE_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000usize);
    let only = std::env::var("LOCKGATE_BENCH_DB").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if only.is_empty() || only == "sqlite" {
            bench(false, jobs).await;
        }
        if only.is_empty() || only == "postgres" {
            bench(true, jobs).await;
        }
    });
}
