//! Directory sync benchmark: a private slapd with `LOCKGATE_BENCH_ENTRIES` persons (default
//! 100 000), the bundled `directory-sync` plugin over LDAPS, the real core.
//!
//! Prints, per database (`LOCKGATE_BENCH_DB=sqlite|postgres` runs one):
//! - the floor: `ldapsearch` with paging dumping the same entries to /dev/null;
//! - the first full sync (every person created) and a full re-sync of the unchanged
//!   directory, with the ratio to the floor (target: within 1.5×);
//! - an incremental sync after 100 changes (target: under 1 s);
//! - the process's peak RSS.
//!
//! Run: `cargo bench -p lockgate-tests --bench ldap_sync`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lockgate::config::PluginsConfig;
use lockgate_api::licence::LicenceConfig;
use lockgate_test_peers::{LdapPerson, Slapd};
use lockgate_tests::{Db, TestApp};

const PAGE: u32 = 1_000;

fn person(i: usize) -> LdapPerson {
    LdapPerson::new(
        &format!("u{i:06}"),
        &format!("Given{i}"),
        &format!("Surname{i}"),
    )
    .mail(&format!("u{i}@example.com"))
    .telephone("+41 44 000 00 00")
    .department("Operations")
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// `ldapsearch` with paging over LDAPS, output to /dev/null: the floor.
fn floor(slapd: &Slapd) -> Duration {
    let started = Instant::now();
    let status = Command::new("ldapsearch")
        .env("LDAPTLS_CACERT", slapd.ca_pem_path())
        .args([
            "-LLL",
            "-x",
            "-H",
            &slapd.ldaps_url(),
            "-D",
            slapd.bind_dn(),
            "-w",
            slapd.bind_password(),
            "-b",
            slapd.base_dn(),
            "-E",
            &format!("pr={PAGE}/noprompt"),
            "(objectClass=inetOrgPerson)",
            "uid",
            "givenName",
            "sn",
            "mail",
            "telephoneNumber",
            "departmentNumber",
            "preferredLanguage",
            "modifyTimestamp",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("ldapsearch (ldap-utils) runs");
    assert!(status.success(), "ldapsearch failed: {status}");
    started.elapsed()
}

async fn run(db: Db, slapd: &Slapd, entries: usize) {
    let app = TestApp::new(db).await;
    app.domain("People").await;
    let cfg: PluginsConfig = toml::from_str(&format!(
        r#"
        [ldap.corp]
        url = "{url}"
        ca_file = "{ca}"
        bind_dn = "{bind_dn}"
        bind_password = "{password}"
        base_dn = "{base}"
        [instances.directory-sync]
        deadline_ms = 1800000
        grants = {{ log = true, config = true, clock = true, kv = true, ldap = ["corp"], gateway = ["sync-persons"] }}
        [instances.directory-sync.config]
        directory = "corp"
        base_dn = "{base}"
        page_size = {PAGE}
        domain = "People"
        max_deletions = 1000
        "#,
        url = slapd.ldaps_url(),
        ca = slapd.ca_pem_path().display(),
        bind_dn = slapd.bind_dn(),
        password = slapd.bind_password(),
        base = slapd.base_dn(),
    ))
    .expect("config");
    let host = lockgate::plugins::start(&cfg, &app.store, &LicenceConfig::default(), None, None)
        .await
        .expect("host")
        .expect("enabled");
    let floor = floor(slapd);
    let sync = |full: bool| {
        let host = host.clone();
        async move {
            let t = Instant::now();
            let r = host
                .sync("directory-sync", full, false)
                .await
                .expect("plugin ran")
                .expect("sync ok");
            (t.elapsed(), r)
        }
    };
    let (first, r) = sync(true).await;
    assert_eq!(r.created as usize, entries, "{r:?}");
    let (resync, r) = sync(true).await;
    assert_eq!(r.unchanged as usize, entries, "{r:?}");
    // 100 changes, then an incremental sync.
    let ldif: String = (0..100)
        .map(|i| {
            format!(
                "dn: {}\nchangetype: modify\nreplace: mail\nmail: changed{i}-{db:?}@example.com\n\n",
                slapd.person_dn(&format!("u{:06}", i * (entries / 100).max(1)))
            )
        })
        .collect();
    slapd.ldapmodify(&ldif);
    let (incremental, r) = sync(false).await;
    assert_eq!(r.updated, 100, "{r:?}");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("database: {db:?}, {entries} entries, page size {PAGE}");
    println!(
        "  floor (ldapsearch, paged, LDAPS, to /dev/null): {:>9.0} ms",
        ms(floor)
    );
    println!(
        "  full sync, first (all created):                 {:>9.0} ms  ({:.2}x floor)",
        ms(first),
        ms(first) / ms(floor)
    );
    println!(
        "  full sync, unchanged directory:                  {:>9.0} ms  ({:.2}x floor, target <= 1.5x)",
        ms(resync),
        ms(resync) / ms(floor)
    );
    println!(
        "  incremental sync after 100 changes:              {:>9.0} ms  (target < 1000 ms)",
        ms(incremental)
    );
    println!("  peak RSS so far: {:.0} MiB", peak_rss_mib());
}

fn main() {
    let entries: usize = std::env::var("LOCKGATE_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let only = std::env::var("LOCKGATE_BENCH_DB").ok();
    let started = Instant::now();
    let slapd = Slapd::start((0..entries).map(person));
    println!(
        "slapd with {entries} entries ready in {:.1} s (slapadd {:.1} s)",
        started.elapsed().as_secs_f64(),
        slapd.load_time().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for db in [Db::Sqlite, Db::Postgres] {
        let name = format!("{db:?}").to_lowercase();
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        // Each run starts from an empty database; the directory is reset by a fresh slapd.
        rt.block_on(run(db, &slapd, entries));
    }
}
