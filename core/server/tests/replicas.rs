//! Two real `lockgate serve` replicas on one PostgreSQL database share the durable background
//! queue: a few hundred jobs enqueued into the database are each run exactly once (one claim,
//! one handler run, no lease lost), none is lost, and both replicas take part.

#![cfg(unix)]

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use lockgate_jobs::{NewJob, Queue, QueueConfig};
use lockgate_store::{ConnectOptions, Store};
use serde_json::{Value, json};
use sqlx::Row;

const BIN: &str = env!("CARGO_BIN_EXE_lockgate");
/// The handler kind the jobs are for: a full reconciliation of the (one, empty) locking
/// system: harmless, quick and idempotent.
const KIND: &str = "reconcile.full";
/// What the `reconcile.full` handler logs (debug, target `lockgate::background`) per run.
const RAN: &str = "periodic full reconciliation done";
/// Jobs enqueued (one `enqueue_many`, at most 500).
const JOBS: usize = 400;

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}_{nanos}", std::process::id())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

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

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `lockgate serve`: its JSON log lines (stderr) and the token it printed (stdout).
/// Drop kills it.
struct Gateway {
    name: &'static str,
    child: Child,
    port: u16,
    logs: Arc<Mutex<Vec<Value>>>,
    token: Arc<Mutex<Option<String>>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start(name: &'static str, dir: &Path, config: &str, port: u16) -> Gateway {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).expect("config");
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("LOCKGATE") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .current_dir(dir)
            .arg("--config")
            .arg(&path)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lockgate serve");
        let token = Arc::new(Mutex::new(None));
        let stdout = child.stdout.take().expect("stdout");
        let t = token.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let line = line.trim();
                if line.starts_with("lgt_") {
                    *t.lock().expect("token") = Some(line.to_string());
                }
            }
        });
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let l = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                l.lock().expect("logs").push(v);
            }
        });
        Gateway {
            name,
            child,
            port,
            logs,
            token,
        }
    }

    /// The log lines whose message is `message`.
    fn logged(&self, message: &str) -> Vec<Value> {
        self.logs
            .lock()
            .expect("logs")
            .iter()
            .filter(|v| v["fields"]["message"] == message)
            .cloned()
            .collect()
    }

    fn log_text(&self) -> String {
        let logs = self.logs.lock().expect("logs");
        let start = logs.len().saturating_sub(40);
        logs[start..]
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until the HTTP port answers and the background worker started; its worker owner id.
    fn wait_ready(&mut self) -> String {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!(
                    "{} exited during start ({status}):\n{}",
                    self.name,
                    self.log_text()
                );
            }
            let listening = TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            let owner = self
                .logged("background worker started")
                .first()
                .and_then(|v| v["fields"]["owner"].as_str().map(str::to_string));
            if listening && let Some(owner) = owner {
                return owner;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "{} not ready within 180 s:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
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
    let mut a = Gateway::start("replica-a", &dir.0, &config(&db.url, port_a), port_a);
    let started = Instant::now();
    let owner_a = a.wait_ready();
    assert!(
        a.token.lock().expect("token").is_some(),
        "replica A bootstraps and prints the token once"
    );
    // Replica B on the same database: the system exists, no second bootstrap.
    let port_b = free_port();
    let mut b = Gateway::start("replica-b", &dir.0, &config(&db.url, port_b), port_b);
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
