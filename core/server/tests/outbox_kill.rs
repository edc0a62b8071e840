//! A real `lockgate serve` killed with SIGKILL in the middle of background work. Outbox
//! dispatch loses no notification: after a restart on the same database every message
//! reaches the SMTP peer (the `email-notifier` plugin over STARTTLS), at most the one in
//! flight twice, and every outbox row ends delivered. A directory sync (the `directory-sync`
//! plugin against slapd, run as a `directory.sync` queue job) writes nothing when killed
//! mid-sync, and the restarted gateway runs it again to completion.

#![cfg(unix)]

mod common;

use common::{Gateway, TempDir, free_port};

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use lockgate_jobs::{NewJob, Queue, QueueConfig};
use lockgate_store::{ConnectOptions, Store};
use lockgate_test_peers::{LdapPerson, Slapd, SmtpOptions, SmtpPeer};
use serde_json::json;
use sqlx::Row;

const MESSAGES: usize = 40;
const HELLO: &str = "gw.example.com";
/// Mails that must have arrived before the kill (and fewer than all of them).
const KILL_AFTER: usize = 3;

fn config(dir: &Path, port: u16, peer: &SmtpPeer) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
shutdown_grace_seconds = 2

[database]
url = "sqlite://{db}"

[log]
level = "info"
format = "json"

[plugins]
cache_dir = "{cache}"
cache_key_file = "{cache}.key"

[plugins.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "starttls"
ca_file = "{ca}"
from = "Lockgate <lockgate@example.com>"
hello_name = "{HELLO}"
timeout_ms = 5000

[plugins.instances.email-notifier]
grants = {{ log = true, config = true, kv = true, smtp = true }}

[plugins.instances.email-notifier.config]
admin_recipients = ["security@example.com"]

[background]
notifier = "email-notifier"
concurrency = 1
# A claimed batch the killed gateway held is claimable again once its lease expires; each
# delivery may take a third of it.
lease = "12s"
retry_base = "1s"
reconcile_every = "30d"
overdue_check_every = "30d"
purge_every = "30d"
licence_check_every = "30d"
directory_sync_every = "30d"
job_retention_days = 31
"#,
        db = dir.join("lockgate.db").display(),
        cache = dir.join("plugin-cache").display(),
        smtp_port = peer.port(),
        ca = peer.ca_pem_path().display(),
    )
}

fn message_id(n: usize) -> String {
    format!("outbox-kill-{n:02}")
}

/// The notification id in a mail's `Message-ID: <id.0@hello>` header.
fn notification_of(raw: &str) -> String {
    let header = raw
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("message-id"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Message-ID in\n{raw}"));
    let inner = header
        .strip_prefix('<')
        .and_then(|h| h.strip_suffix(&format!(".0@{HELLO}>")))
        .unwrap_or_else(|| panic!("unexpected Message-ID {header}"));
    inner.to_string()
}

/// Mails per notification id.
fn arrivals(peer: &SmtpPeer) -> HashMap<String, usize> {
    let mut by_id = HashMap::new();
    for m in peer.messages() {
        assert_eq!(m.rcpt_tos, ["security@example.com"]);
        *by_id.entry(notification_of(&m.raw)).or_default() += 1;
    }
    by_id
}

#[derive(Debug)]
struct OutboxRow {
    message_id: String,
    attempts: i64,
    dispatched: bool,
    dead: bool,
    last_error: Option<String>,
}

async fn outbox(store: &Store) -> Vec<OutboxRow> {
    sqlx::query(
        "SELECT message_id, attempts, dispatched_at, dead_at, last_error FROM outbox \
         ORDER BY id",
    )
    .fetch_all(store.pool())
    .await
    .expect("outbox")
    .iter()
    .map(|r| OutboxRow {
        message_id: r.get("message_id"),
        attempts: r.get("attempts"),
        dispatched: r.get::<Option<String>, _>("dispatched_at").is_some(),
        dead: r.get::<Option<String>, _>("dead_at").is_some(),
        last_error: r.get("last_error"),
    })
    .collect()
}

#[test]
fn sigkill_during_outbox_dispatch_loses_no_notification() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let peer = SmtpPeer::start(SmtpOptions::default());
    let dir = TempDir::new("lockgate-outbox-kill");
    let port = free_port();
    let config_path = dir.0.join("lockgate.toml");
    std::fs::write(&config_path, config(&dir.0, port, &peer)).expect("config");

    let started = Instant::now();
    let mut gw = Gateway::start("first", &dir.0, &config_path, port);
    gw.wait_ready();
    eprintln!("gateway ready after {:?}", started.elapsed());

    // 40 notifications in one transaction while the gateway runs.
    let store = rt.block_on(async {
        let store = Store::connect(&ConnectOptions::new(format!(
            "sqlite://{}",
            dir.0.join("lockgate.db").display()
        )))
        .await
        .expect("connect");
        let mut tx = store.write_tx().await.expect("tx");
        for n in 0..MESSAGES {
            let payload = json!({
                "system_name": "Site",
                "messaging_language": "en",
                "number": n,
                "soft_expiry": "2026-11-01",
                "hard_expiry": "2026-12-01",
            });
            let inserted = lockgate_store::outbox::insert_outbox(
                &mut tx,
                &message_id(n),
                "notify.licence_expiry",
                &payload,
            )
            .await
            .expect("insert");
            assert!(inserted);
        }
        tx.commit().await.expect("commit");
        store
    });
    let inserted = Instant::now();

    // SIGKILL once some but not all mails arrived.
    loop {
        let n = peer.messages().len();
        if n >= KILL_AFTER {
            break;
        }
        if let Some(status) = gw.child.try_wait().expect("wait") {
            panic!("the gateway exited ({status}):\n{}", gw.log_text());
        }
        assert!(
            inserted.elapsed() < Duration::from_secs(120),
            "no {KILL_AFTER} mails within 120 s:\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    gw.child.kill().expect("SIGKILL");
    gw.child.wait().expect("reaped");
    let killed_after = inserted.elapsed();
    // Let a transfer the peer was finishing land.
    std::thread::sleep(Duration::from_millis(500));
    let at_kill = arrivals(&peer);
    let mails_at_kill: usize = at_kill.values().sum();
    let rows_at_kill = rt.block_on(outbox(&store));
    let dispatched_at_kill = rows_at_kill.iter().filter(|r| r.dispatched).count();
    eprintln!(
        "killed after {killed_after:?}: {mails_at_kill} mails ({} notifications), \
         {dispatched_at_kill} rows marked delivered",
        at_kill.len()
    );
    assert!(
        at_kill.len() < MESSAGES,
        "the kill must land mid-stream (all {MESSAGES} had arrived already)"
    );
    // Delivered before marked: every row marked delivered has its mail; at most the one
    // delivery in flight (the dispatcher delivers one message at a time) is sent unmarked.
    for r in rows_at_kill.iter().filter(|r| r.dispatched) {
        assert!(
            at_kill.contains_key(&r.message_id),
            "{} marked delivered without a mail",
            r.message_id
        );
    }
    assert!(
        at_kill.len() <= dispatched_at_kill + 1,
        "at most one mail in flight at the kill: {} mails, {dispatched_at_kill} marked",
        at_kill.len()
    );
    drop(gw);

    // Restart on the same database: the rest arrives.
    let restarted = Instant::now();
    let mut gw = Gateway::start("restarted", &dir.0, &config_path, port);
    gw.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(180);
    let rows = loop {
        let rows = rt.block_on(outbox(&store));
        if rows.iter().all(|r| r.dispatched || r.dead) {
            break rows;
        }
        if let Some(status) = gw.child.try_wait().expect("wait") {
            panic!(
                "the restarted gateway exited ({status}):\n{}",
                gw.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "outbox not drained within 180 s of the restart: {rows:?}\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let drained = restarted.elapsed();
    // Give the last mail's files a moment (the row is marked after the relay's 250).
    std::thread::sleep(Duration::from_millis(200));
    let after = arrivals(&peer);
    let total: usize = after.values().sum();
    let duplicates: Vec<(&String, &usize)> = after.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "after the restart: drained in {drained:?}, {total} mails for {} notifications, \
         duplicates {duplicates:?}",
        after.len()
    );

    let retried: Vec<(&str, i64, Option<&str>)> = rows
        .iter()
        .filter(|r| r.attempts > 1)
        .map(|r| (r.message_id.as_str(), r.attempts, r.last_error.as_deref()))
        .collect();
    eprintln!("rows delivered on a later attempt (message id, attempts, last error): {retried:?}");
    assert_eq!(rows.len(), MESSAGES);
    for r in &rows {
        assert!(r.dispatched && !r.dead, "delivered, not dead: {r:?}");
        assert!(r.attempts >= 1, "{r:?}");
    }
    for n in 0..MESSAGES {
        assert!(
            after.contains_key(&message_id(n)),
            "notification {} lost",
            message_id(n)
        );
    }
    assert_eq!(after.len(), MESSAGES, "no mail for anything else");
    assert!(
        duplicates.len() <= 1 && duplicates.iter().all(|(_, n)| **n == 2),
        "at most the one in flight twice: {duplicates:?}"
    );
    // A duplicate can only be a notification that was mailed but not marked at the kill.
    for (id, _) in &duplicates {
        assert!(
            at_kill.contains_key(*id)
                && !rows_at_kill
                    .iter()
                    .any(|r| r.dispatched && &r.message_id == *id),
            "duplicate {id} was not in flight at the kill"
        );
    }
    rt.block_on(store.close());
}

/// Persons in the directory: enough for a sync (page by page) to take a while.
const PERSONS: usize = 3_000;

fn ldap_config(dir: &Path, port: u16, slapd: &Slapd) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
shutdown_grace_seconds = 2

[database]
url = "sqlite://{db}"

[log]
level = "info"
format = "json"

[plugins]
cache_dir = "{cache}"
cache_key_file = "{cache}.key"

[plugins.ldap.corp]
url = "{url}"
ca_file = "{ca}"
bind_dn = "{bind_dn}"
bind_password = "{password}"
base_dn = "{base}"
timeout_ms = 10000

[plugins.instances.directory-sync]
deadline_ms = 300000
grants = {{ log = true, config = true, clock = true, kv = true, ldap = ["corp"], gateway = ["sync-persons"] }}

[plugins.instances.directory-sync.config]
directory = "corp"
base_dn = "{base}"
page_size = 10

[background]
concurrency = 1
# The killed gateway's job is claimable again this long after its last extension.
lease = "4s"
reconcile_every = "30d"
overdue_check_every = "30d"
purge_every = "30d"
licence_check_every = "30d"
directory_sync_every = "30d"
job_retention_days = 31
"#,
        db = dir.join("lockgate.db").display(),
        cache = dir.join("plugin-cache").display(),
        url = slapd.ldap_url(),
        ca = slapd.ca_pem_path().display(),
        bind_dn = slapd.bind_dn(),
        password = slapd.bind_password(),
        base = slapd.base_dn(),
    )
}

async fn employees(store: &Store) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM objects WHERE kind = 'employee'")
        .fetch_one(store.pool())
        .await
        .expect("count employees")
        .get("n")
}

/// `(id, state, attempts, periodic)` of the `directory.sync` jobs.
async fn sync_jobs(store: &Store) -> Vec<(i64, String, i64, bool)> {
    sqlx::query(
        "SELECT id, state, attempts, periodic_task FROM queue_jobs \
         WHERE kind = 'directory.sync' ORDER BY id",
    )
    .fetch_all(store.pool())
    .await
    .expect("queue_jobs")
    .iter()
    .map(|r| {
        (
            r.get("id"),
            r.get("state"),
            r.get("attempts"),
            r.get::<Option<String>, _>("periodic_task").is_some(),
        )
    })
    .collect()
}

#[test]
fn sigkill_during_a_directory_sync_writes_nothing_and_the_restart_completes_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let slapd = Slapd::start((0..PERSONS).map(|i| {
        LdapPerson::new(
            &format!("p{i:05}"),
            &format!("Given{i}"),
            &format!("Surname{i}"),
        )
        .mail(&format!("p{i}@example.com"))
    }));
    let dir = TempDir::new("lockgate-sync-kill");
    let port = free_port();
    let config_path = dir.0.join("lockgate.toml");
    std::fs::write(&config_path, ldap_config(&dir.0, port, &slapd)).expect("config");

    let mut gw = Gateway::start("first", &dir.0, &config_path, port);
    gw.wait_ready();
    let store = rt.block_on(async {
        Store::connect(&ConnectOptions::new(format!(
            "sqlite://{}",
            dir.0.join("lockgate.db").display()
        )))
        .await
        .expect("connect")
    });
    // A sync on demand through the queue (the gateway may also run its periodic slot's
    // full sync by every enabled directory-sync plugin: the same plugin, the same effect).
    let queue = Queue::new(store.clone(), QueueConfig::default()).expect("queue");
    let job = rt
        .block_on(queue.enqueue(&NewJob::new(
            "directory.sync",
            json!({ "plugin": "directory-sync", "full": true }),
        )))
        .expect("enqueue")
        .expect("inserted");

    // Kill while a directory.sync job is leased (the plugin is paging through slapd).
    let start = Instant::now();
    let leased_at = loop {
        if rt
            .block_on(sync_jobs(&store))
            .iter()
            .any(|(_, state, _, _)| state == "leased")
        {
            break Instant::now();
        }
        if let Some(status) = gw.child.try_wait().expect("wait") {
            panic!("the gateway exited ({status}):\n{}", gw.log_text());
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no directory.sync job leased within 60 s: {:?}\n{}",
            rt.block_on(sync_jobs(&store)),
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    gw.child.kill().expect("SIGKILL");
    gw.child.wait().expect("reaped");
    let synced_logs = gw.logged("directory sync done");
    let at_kill = rt.block_on(employees(&store));
    let jobs_at_kill = rt.block_on(sync_jobs(&store));
    eprintln!(
        "killed {:?} after the lease: {at_kill} employees, jobs {jobs_at_kill:?}",
        leased_at.elapsed()
    );
    assert!(
        synced_logs.is_empty() && jobs_at_kill.iter().all(|(_, s, _, _)| s != "done"),
        "the kill must land mid-sync (a sync already finished): {synced_logs:?}"
    );
    assert_eq!(at_kill, 0, "a killed sync writes nothing");
    drop(gw);

    // Restart: the job (claimable again once the dead gateway's lease expired) syncs all.
    let restarted = Instant::now();
    let mut gw = Gateway::start("restarted", &dir.0, &config_path, port);
    gw.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(300);
    let jobs = loop {
        let jobs = rt.block_on(sync_jobs(&store));
        if jobs.iter().all(|(_, s, _, _)| s == "done" || s == "dead") {
            break jobs;
        }
        if let Some(status) = gw.child.try_wait().expect("wait") {
            panic!(
                "the restarted gateway exited ({status}):\n{}",
                gw.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "sync jobs not done within 300 s: {jobs:?}\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let count = rt.block_on(employees(&store));
    eprintln!(
        "after the restart ({:?}): {count} employees, jobs {jobs:?}",
        restarted.elapsed()
    );
    assert!(
        jobs.iter().all(|(_, s, _, _)| s == "done"),
        "every sync job done: {jobs:?}"
    );
    let ours = jobs.iter().find(|(id, ..)| *id == job).expect("our job");
    assert!(ours.2 >= 1, "{ours:?}");
    assert_eq!(count, PERSONS as i64, "every person arrived");
    let distinct: i64 = rt.block_on(async {
        sqlx::query("SELECT COUNT(DISTINCT marking_fold) AS n FROM objects WHERE kind = 'employee'")
            .fetch_one(store.pool())
            .await
            .expect("distinct")
            .get("n")
    });
    assert_eq!(distinct, PERSONS as i64, "each person once");
    rt.block_on(store.close());
}
