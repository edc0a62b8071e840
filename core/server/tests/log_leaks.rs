//! No secret or personal data in the log. One real `lockgate serve` at `debug` level, on a
//! PostgreSQL URL with a password in its user-info and in its query, with LDAP, SMTP and
//! MQTT passwords in its configuration, runs the main flows: API calls with the bootstrap
//! token (and a wrong token, and a token in a query string), persons with distinctive names
//! and e-mail addresses created and searched for through the API, validation errors and
//! unknown paths, and the error paths of a directory sync (its LDAP directory does not
//! answer) and of a notification to an administrator's address (its SMTP relay does not
//! answer), each retried by the background queue.
//! Every line the process wrote to stderr is scanned for each planted value; the test
//! prints `attack tally: class="log leaks" tried=N refused=N` like the attack suite.

#![cfg(unix)]

mod common;

use common::{Gateway, TempDir, free_port, unique_suffix};

use std::{
    process::Command,
    time::{Duration, Instant},
};

use lockgate_store::{ConnectOptions, Store};

const DB_USERINFO_PASSWORD: &str = "PlantedDbUserinfoPw7731";
const DB_QUERY_PASSWORD: &str = "PlantedDbQueryPw4452";
const SMTP_PASSWORD: &str = "PlantedSmtpPw9916";
const MQTT_PASSWORD: &str = "PlantedMqttPw2208";
const API_FIRST: &str = "Zebulon";
const API_SURNAME: &str = "Quixotebottom";
const API_EMAIL: &str = "zebulon.quixote@leak-test.example";
const LDAP_PASSWORD: &str = "PlantedLdapBindPw5163";
const ADMIN_EMAIL: &str = "security-officer@leak-test.example";
const WRONG_TOKEN: &str = "lgt_PlantedWrongToken0000000000000000000000000";

fn pg_admin_url() -> String {
    std::env::var("LOCKGATE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database, dropped when the guard goes.
struct PgDatabase {
    name: String,
}

impl PgDatabase {
    fn create(rt: &tokio::runtime::Runtime) -> PgDatabase {
        let name = format!("lockgate_leaks_{}", unique_suffix());
        rt.block_on(async {
            sqlx::any::install_default_drivers();
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&pg_admin_url())
                .await
                .expect("PostgreSQL on 127.0.0.1:5432 (LOCKGATE_TEST_PG)");
            sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("create database");
        });
        PgDatabase { name }
    }

    /// The plain URL (the test's own connections).
    fn url(&self) -> String {
        let base = pg_admin_url();
        let root = base.rsplit_once('/').map(|(b, _)| b).unwrap_or(&base);
        format!("{root}/{}", self.name)
    }

    /// The gateway's URL: the same database with passwords planted in the user-info and
    /// the query (the server trusts local connections, so neither is checked).
    fn planted_url(&self) -> String {
        format!(
            "postgres://postgres:{DB_USERINFO_PASSWORD}@127.0.0.1:5432/{}?sslmode=disable&password={DB_QUERY_PASSWORD}",
            self.name
        )
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
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

fn config(dir: &std::path::Path, port: u16, db: &PgDatabase, dead_port: u16) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
shutdown_grace_seconds = 2

[database]
url = "{url}"
max_connections = 4

[log]
level = "debug"
format = "json"

[plugins]
cache_dir = "{cache}"

[plugins.mqtt]
host = "127.0.0.1"
port = 1883
client_id = "lockgate-leaks-{port}"
username = "lockgate-leaks"
password = "{MQTT_PASSWORD}"

[plugins.ldap.corp]
url = "ldap://127.0.0.1:{dead_port}"
bind_dn = "cn=lockgate,ou=services,dc=example,dc=com"
bind_password = "{LDAP_PASSWORD}"
base_dn = "ou=people,dc=example,dc=com"
timeout_ms = 2000

[plugins.smtp]
host = "127.0.0.1"
port = {dead_port}
tls = "starttls"
from = "Lockgate <lockgate@example.com>"
hello_name = "gw.example.com"
username = "lockgate"
password = "{SMTP_PASSWORD}"
timeout_ms = 5000

[plugins.instances.directory-sync]
grants = {{ log = true, config = true, clock = true, kv = true, ldap = ["corp"], gateway = ["sync-persons"] }}

[plugins.instances.directory-sync.config]
directory = "corp"
base_dn = "ou=people,dc=example,dc=com"

[plugins.instances.email-notifier]
grants = {{ log = true, config = true, kv = true, smtp = true }}

[plugins.instances.email-notifier.config]
admin_recipients = ["{ADMIN_EMAIL}"]

[background]
notifier = "email-notifier"
concurrency = 1
retry_base = "1s"
reconcile_every = "30d"
overdue_check_every = "30d"
purge_every = "30d"
licence_check_every = "30d"
directory_sync_every = "30d"
job_retention_days = 31
"#,
        url = db.planted_url(),
        cache = dir.join("plugin-cache").display(),
    )
}

/// `curl` a request; the status and the body.
fn curl(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--max-time",
        "30",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    cmd.arg(format!("http://127.0.0.1:{port}{path}"));
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// Wait until `done` holds (polling every 100 ms), at most `secs`.
fn wait_for(gw: &mut Gateway, secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if let Some(status) = gw.child.try_wait().expect("wait") {
            panic!("the gateway exited ({status}):\n{}", gw.log_text());
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what} not within {secs} s:\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn no_secret_or_personal_data_reaches_the_log_at_debug_level() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let db = PgDatabase::create(&rt);
    let dir = TempDir::new("lockgate-log-leaks");
    let port = free_port();
    let config_path = dir.0.join("lockgate.toml");
    // Nothing listens on this port: the LDAP directory and the SMTP relay do not answer.
    let dead_port = free_port();
    std::fs::write(&config_path, config(&dir.0, port, &db, dead_port)).expect("config");

    let mut gw = Gateway::start("leaks", &dir.0, &config_path, port);
    gw.wait_ready();
    let token = gw
        .token
        .lock()
        .expect("token")
        .clone()
        .expect("bootstrap token printed");
    let store = rt.block_on(async {
        Store::connect(&ConnectOptions::new(db.url()))
            .await
            .expect("connect")
    });

    // The API: persons with distinctive names, searched for by name and e-mail (query
    // strings), a duplicate (an error that names the value), a wrong token, a token in the
    // query, an unknown path.
    let person = format!(
        r#"{{"first_name":"{API_FIRST}","surname":"{API_SURNAME}","email":"{API_EMAIL}","identifier":"{API_SURNAME}-1"}}"#
    );
    let (status, body) = curl(
        port,
        "POST",
        "/api/v1/employees",
        Some(&token),
        Some(&person),
    );
    assert_eq!(status, 201, "{body}");
    let (status, _) = curl(
        port,
        "POST",
        "/api/v1/employees",
        Some(&token),
        Some(&person),
    );
    assert!(
        status >= 400,
        "a duplicate identifier is refused ({status})"
    );
    let (status, body) = curl(
        port,
        "GET",
        &format!("/api/v1/employees?q={API_SURNAME}"),
        Some(&token),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(API_SURNAME),
        "the search finds the person: {body}"
    );
    let (status, _) = curl(
        port,
        "GET",
        &format!("/api/v1/employees?q={API_EMAIL}&colour={API_FIRST}"),
        Some(&token),
        None,
    );
    assert!(
        status >= 400,
        "an unknown search parameter is refused ({status})"
    );
    let bad = format!(
        r#"{{"first_name":"{API_FIRST}","surname":"{API_SURNAME}","email":"not-an-email-{API_SURNAME}"}}"#
    );
    let (status, _) = curl(port, "POST", "/api/v1/employees", Some(&token), Some(&bad));
    assert!(
        status >= 400,
        "an invalid e-mail address is refused ({status})"
    );
    let (status, _) = curl(port, "GET", "/api/v1/me", Some(WRONG_TOKEN), None);
    assert_eq!(status, 401);
    let (status, _) = curl(
        port,
        "GET",
        &format!("/api/v1/me?access_token={token}"),
        None,
        None,
    );
    assert_eq!(status, 401);
    let (status, _) = curl(
        port,
        "GET",
        &format!("/api/v1/{API_SURNAME}?email={API_EMAIL}"),
        Some(&token),
        None,
    );
    assert_eq!(status, 404);

    // A directory sync and a notification through the background queue; both fail (the
    // directory and the relay do not answer) and are retried.
    let queue = lockgate_jobs::Queue::new(store.clone(), lockgate_jobs::QueueConfig::default())
        .expect("queue");
    rt.block_on(queue.enqueue(&lockgate_jobs::NewJob::new(
        "directory.sync",
        serde_json::json!({ "plugin": "directory-sync", "full": true }),
    )))
    .expect("enqueue");
    rt.block_on(async {
        let mut tx = store.write_tx().await.expect("tx");
        let payload = serde_json::json!({
            "system_name": "Site",
            "messaging_language": "en",
            "soft_expiry": "2026-11-01",
            "hard_expiry": "2026-12-01",
        });
        lockgate_store::outbox::insert_outbox(
            &mut tx,
            "leak-test-1",
            "notify.licence_expiry",
            &payload,
        )
        .await
        .expect("insert");
        tx.commit().await.expect("commit");
    });
    let logs = gw.logs.clone();
    let count = |what: &str| {
        logs.lock()
            .expect("logs")
            .iter()
            .filter(|v| v.to_string().contains(what))
            .count()
    };
    wait_for(
        &mut gw,
        120,
        "two failed syncs and two failed deliveries",
        || count("job failed") >= 2 && count("outbox delivery failed") >= 2,
    );
    // Let the last log lines arrive, then stop.
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(gw.child.id().to_string())
        .status();
    let _ = gw.child.wait();
    std::thread::sleep(Duration::from_millis(300));
    rt.block_on(store.close());

    let log: Vec<String> = gw
        .logs
        .lock()
        .expect("logs")
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert!(log.len() > 50, "a debug-level log: {} lines", log.len());
    assert!(
        log.iter().any(|l| l.contains("/api/v1/employees")),
        "requests are logged (with their paths)"
    );
    let mut tried = 0;
    let mut leaked = Vec::new();
    for (name, value) in [
        (
            "database password in the URL's user-info",
            DB_USERINFO_PASSWORD,
        ),
        ("database password in the URL's query", DB_QUERY_PASSWORD),
        ("the bootstrap API token", token.as_str()),
        (
            "the secret part of the bootstrap token",
            &token[token.len() - 16..],
        ),
        ("a wrong API token", WRONG_TOKEN),
        ("the LDAP bind password", LDAP_PASSWORD),
        ("the SMTP password", SMTP_PASSWORD),
        ("the MQTT password", MQTT_PASSWORD),
        ("a person's surname (API)", API_SURNAME),
        ("a person's e-mail address (API)", API_EMAIL),
        ("an administrator's e-mail address", ADMIN_EMAIL),
    ] {
        tried += 1;
        let lines: Vec<&String> = log.iter().filter(|l| l.contains(value)).collect();
        if !lines.is_empty() {
            leaked.push(format!(
                "{name}: {} lines, first: {}",
                lines.len(),
                lines[0].chars().take(600).collect::<String>()
            ));
        }
    }
    println!(
        "attack tally: class=\"log leaks\" tried={tried} refused={}",
        tried - leaked.len()
    );
    assert!(
        leaked.is_empty(),
        "planted values in the log:\n{}",
        leaked.join("\n")
    );
}
