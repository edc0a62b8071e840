//! HR pull benchmark: the fake HR system (`tests/peers/hr/fake_hr.py`) with
//! `LOCKGATE_BENCH_PERSONS` persons (default 10 000), the bundled `hr-pull` plugin over the
//! host's outbound HTTP, the real core.
//!
//! Prints, per database (`LOCKGATE_BENCH_DB=sqlite|postgres` runs one), each pull next to
//! its floor: `curl` fetching the same pages (same URLs, or the same SOAP envelopes) from
//! the same server in the same run, to /dev/null, in one process (one kept-alive
//! connection), the median of three runs:
//! - a full JSON pull into an empty database (every person created);
//! - a full JSON pull of the unchanged data;
//! - an incremental JSON pull after 100 changes;
//! - a full SOAP pull of the same data (unchanged);
//! - the process's peak RSS.
//!
//! Run: `cargo bench -p lockgate-tests --bench hr_pull`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lockgate::config::PluginsConfig;
use lockgate_api::licence::LicenceConfig;
use lockgate_host::PluginHost;
use lockgate_host::types::SyncReport;
use lockgate_test_peers::FakeHr;
use lockgate_tests::{Db, TestApp};
use serde_json::json;

use common::{databases, db_name, ms, print_peak_rss, runtime};

const PAGE: usize = 1_000;
const SOAP_ACTION: &str = "urn:lockgate:fake-hr#ListEmployees";

/// The SOAP request template; the plugin fills in the placeholders.
fn envelope_template() -> &'static str {
    r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:hr="urn:lockgate:fake-hr"><soap:Body><hr:ListEmployees><hr:Page>{page}</hr:Page><hr:PageSize>{page_size}</hr:PageSize><hr:ChangedSince>{changed_since}</hr:ChangedSince></hr:ListEmployees></soap:Body></soap:Envelope>"#
}

/// The envelope of one page, as the plugin sends it.
fn envelope(page: usize, since: &str) -> String {
    envelope_template()
        .replace("{page}", &page.to_string())
        .replace("{page_size}", &PAGE.to_string())
        .replace("{changed_since}", since)
}

/// The JSON URL of one page, as the plugin builds it.
fn json_url(hr: &FakeHr, page: usize, since: Option<&str>) -> String {
    let mut url = format!("{}?page_size={PAGE}&page={page}", hr.json_url());
    if let Some(since) = since {
        url.push_str("&changed_since=");
        url.push_str(&since.replace(':', "%3A"));
    }
    url
}

/// One `curl` fetching every URL (GET, or POST with the matching envelope) to /dev/null
/// over one kept-alive connection; the median of three runs.
fn curl(urls: &[String], posts: Option<&[String]>) -> Duration {
    let mut times: Vec<Duration> = (0..3)
        .map(|_| {
            let mut cmd = Command::new("curl");
            cmd.args(["-sS", "--fail"]);
            for (i, url) in urls.iter().enumerate() {
                if i > 0 {
                    cmd.arg("--next");
                    cmd.args(["-sS", "--fail"]);
                }
                if let Some(bodies) = posts {
                    cmd.args([
                        "-H",
                        "Content-Type: text/xml; charset=utf-8",
                        "-H",
                        &format!("SOAPAction: \"{SOAP_ACTION}\""),
                        "--data-binary",
                        &bodies[i],
                    ]);
                }
                cmd.args(["-o", "/dev/null", url]);
            }
            let started = Instant::now();
            let status = cmd
                .stdout(Stdio::null())
                .status()
                .expect("curl runs (apt-get install curl)");
            assert!(status.success(), "curl failed: {status}");
            started.elapsed()
        })
        .collect();
    times.sort();
    times[1]
}

async fn host(app: &TestApp, hr: &FakeHr) -> PluginHost {
    let cfg: PluginsConfig = toml::from_str(&format!(
        r#"
        [instances.hr-pull]
        deadline_ms = 1800000
        grants = {{ log = true, config = true, kv = true, gateway = ["sync-persons"], http = {{ hosts = ["{host}"], allow_private = true }} }}
        [instances.hr-pull.config]
        url = "{url}"
        page_size = {PAGE}
        items = "data.employees"
        next = "paging.has_more"
        changed_field = "changed"
        active_field = "status"
        active_values = ["active"]
        domain = "People"
        max_deletions = 1000
        [instances.hr-pull.config.fields]
        identifier = "id"
        first_name = "name.given"
        surname = "name.family"
        email = "email"
        phone = "phone"
        department = "department"
        "#,
        host = hr.host(),
        url = hr.json_url(),
    ))
    .expect("config");
    lockgate::plugins::start(&cfg, &app.store, &LicenceConfig::default(), None, None)
        .await
        .expect("host")
        .expect("enabled")
}

/// The same plugin pointed at the SOAP endpoint (a second host, the same database).
async fn soap_host(app: &TestApp, hr: &FakeHr) -> PluginHost {
    let cfg: PluginsConfig = toml::from_str(&format!(
        r#"
        [instances.hr-pull]
        deadline_ms = 1800000
        grants = {{ log = true, config = true, kv = true, gateway = ["sync-persons"], http = {{ hosts = ["{host}"], allow_private = true }} }}
        [instances.hr-pull.config]
        format = "soap"
        url = "{url}"
        page_size = {PAGE}
        soap_action = "{SOAP_ACTION}"
        soap_envelope = '{template}'
        items = "ListEmployeesResponse.Employees.Employee"
        next = "ListEmployeesResponse.HasMore"
        changed_field = "Changed"
        active_field = "Status"
        active_values = ["active"]
        domain = "People"
        max_deletions = 1000
        [instances.hr-pull.config.fields]
        identifier = "Id"
        first_name = "GivenName"
        surname = "FamilyName"
        email = "Email"
        phone = "Phone"
        department = "Department"
        "#,
        host = hr.host(),
        url = hr.soap_url(),
        template = envelope_template(),
    ))
    .expect("config");
    lockgate::plugins::start(&cfg, &app.store, &LicenceConfig::default(), None, None)
        .await
        .expect("host")
        .expect("enabled")
}

async fn pull(host: &PluginHost, full: bool) -> (Duration, SyncReport) {
    let started = Instant::now();
    let report = host
        .sync("hr-pull", full, false)
        .await
        .expect("plugin ran")
        .expect("pull ok");
    (started.elapsed(), report)
}

fn line(what: &str, took: Duration, floor: Duration) {
    println!(
        "  {what:<44} {:>8.0} ms   floor (curl, same pages) {:>6.0} ms   {:>5.1}x floor",
        ms(took),
        ms(floor),
        ms(took) / ms(floor).max(0.001)
    );
}

async fn run(db: Db, persons: usize) {
    let hr = tokio::task::spawn_blocking(move || FakeHr::start(persons))
        .await
        .expect("fake HR");
    let app = TestApp::new(db).await;
    app.domain("People").await;
    let host = host(&app, &hr).await;
    let pages = persons.div_ceil(PAGE).max(1);
    let all: Vec<String> = (1..=pages).map(|p| json_url(&hr, p, None)).collect();
    println!(
        "database: {}, {persons} persons, page size {PAGE}, {pages} pages",
        db_name(db)
    );

    let floor = curl(&all, None);
    let (first, r) = pull(&host, true).await;
    assert_eq!(r.created as usize, persons, "{r:?}");
    line("full JSON pull, first (all created):", first, floor);

    let floor = curl(&all, None);
    let (resync, r) = pull(&host, true).await;
    assert_eq!(r.unchanged as usize, persons, "{r:?}");
    line("full JSON pull, unchanged:", resync, floor);

    // 100 changes, then an incremental pull: one page of the changes and the person at the
    // watermark (the filter is inclusive).
    let since = hr.watermark();
    let step = (persons / 100).max(1);
    let changes: Vec<(String, serde_json::Value)> = (0..100.min(persons))
        .map(|i| {
            (
                format!("E{:06}", i * step),
                json!({ "email": format!("changed{i}@example.com") }),
            )
        })
        .collect();
    let refs: Vec<(&str, serde_json::Value)> = changes
        .iter()
        .map(|(id, v)| (id.as_str(), v.clone()))
        .collect();
    hr.update(&refs);
    let floor = curl(&[json_url(&hr, 1, Some(&since))], None);
    let (incremental, r) = pull(&host, false).await;
    assert_eq!(r.updated as usize, changes.len(), "{r:?}");
    line(
        "incremental JSON pull after 100 changes:",
        incremental,
        floor,
    );

    let soap = soap_host(&app, &hr).await;
    let bodies: Vec<String> = (1..=pages).map(|p| envelope(p, "")).collect();
    let soap_urls: Vec<String> = (1..=pages).map(|_| hr.soap_url()).collect();
    let floor = curl(&soap_urls, Some(&bodies));
    let (soap_full, r) = pull(&soap, true).await;
    assert_eq!(r.unchanged as usize, persons, "{r:?}");
    line("full SOAP pull, unchanged:", soap_full, floor);
    print_peak_rss();
}

fn main() {
    let persons: usize = std::env::var("LOCKGATE_BENCH_PERSONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = runtime();
    for db in databases() {
        // Each database gets a fresh fake HR system and an empty database.
        rt.block_on(run(db, persons));
    }
}
