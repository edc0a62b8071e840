//! The bundled `directory-sync` plugin end to end: a private OpenLDAP (`slapd`, TLS from a
//! test CA), the host's `ldap` capability over StartTLS and LDAPS, the core's
//! `sync-persons` on both databases. Full and incremental syncs, deletions by set
//! difference, the mass-deletion guard, synced persons read-only through the API, a
//! connection cut mid-page and a sync cut off by its deadline (both change nothing).

use std::time::Duration;

use lockgate::config::PluginsConfig;
use lockgate_api::licence::LicenceConfig;
use lockgate_host::PluginHost;
use lockgate_host::types::{PluginError, SyncReport};
use lockgate_test_peers::{CutProxy, LdapPerson, Slapd};
use lockgate_tests::*;
use serde_json::json;

const PLUGIN: &str = "directory-sync";

fn person(i: usize) -> LdapPerson {
    LdapPerson::new(
        &format!("p{i:05}"),
        &format!("Given{i}"),
        &format!("Surname{i}"),
    )
    .mail(&format!("p{i}@example.com"))
    .department("Operations")
}

async fn slapd(n: usize) -> Slapd {
    tokio::task::spawn_blocking(move || Slapd::start((0..n).map(person)))
        .await
        .expect("slapd")
}

/// A plugin host with the bundled plugins and `directory-sync` granted directory `corp`
/// at `url`; `extra` is appended to the plugin's `config` table.
async fn host(
    app: &TestApp,
    slapd: &Slapd,
    url: &str,
    extra: &str,
    deadline_ms: u64,
) -> PluginHost {
    let cfg: PluginsConfig = toml::from_str(&format!(
        r#"
        cache_dir = "{cache}"
        cache_key_file = "{cache}.key"
        [ldap.corp]
        url = "{url}"
        ca_file = "{ca}"
        bind_dn = "{bind_dn}"
        bind_password = "{password}"
        base_dn = "{base}"
        timeout_ms = 5000

        [instances.directory-sync]
        deadline_ms = {deadline_ms}
        grants = {{ log = true, config = true, clock = true, kv = true, ldap = ["corp"], gateway = ["sync-persons"] }}
        [instances.directory-sync.config]
        directory = "corp"
        base_dn = "{base}"
        page_size = 7
        domain = "People"
        {extra}
        "#,
        cache = plugin_cache().display(),
        ca = slapd.ca_pem_path().display(),
        bind_dn = slapd.bind_dn(),
        password = slapd.bind_password(),
        base = slapd.base_dn(),
    ))
    .expect("plugins config");
    lockgate::plugins::start(&cfg, &app.store, &LicenceConfig::default(), None, None)
        .await
        .expect("plugin host")
        .expect("enabled")
}

async fn sync(host: &PluginHost, full: bool) -> Result<SyncReport, PluginError> {
    host.sync(PLUGIN, full, false)
        .await
        .expect("the plugin ran")
}

on_both!(
    full_and_incremental_sync_over_starttls,
    |app: TestApp| async move {
        let app = app;
        app.domain("People").await;
        let slapd = slapd(20).await;
        let host = host(&app, &slapd, &slapd.ldap_url(), "", 30_000).await;

        let first = sync(&host, true).await.expect("full sync");
        assert_eq!(
            (first.staged, first.created, first.deleted),
            (20, 20, 0),
            "{first:?}"
        );
        let people = app.employee_bodies().await;
        assert_eq!(people.len(), 20);
        let p3 = find_person(&people, "p00003").expect("p00003 synced");
        assert_eq!(p3["first_name"], "Given3");
        assert_eq!(p3["email"], "p3@example.com");
        assert_eq!(p3["department"], "Operations");

        // A second full sync of an unchanged directory changes nothing.
        let again = sync(&host, true).await.expect("full sync");
        assert_eq!(
            (again.created, again.updated, again.unchanged),
            (0, 0, 20),
            "{again:?}"
        );

        // Synced persons are read-only except domain and tags, and cannot be deleted locally.
        let id = p3["id"].as_i64().unwrap();
        let refused = app
            .patch(
                &format!("/api/v1/employees/{id}"),
                json!({ "surname": "Local" }),
            )
            .await;
        assert_eq!(refused.status, 422, "{:?}", refused.body);
        app.patch(
            &format!("/api/v1/employees/{id}"),
            json!({ "tags": ["vip"] }),
        )
        .await
        .expect(200);
        let delete = app.delete(&format!("/api/v1/employees/{id}")).await;
        assert!(
            delete.status == 409 || delete.status == 422,
            "{:?}",
            delete.body
        );

        // Incremental: a changed mail and a new person; a deleted entry is only noticed by a
        // full sync (set difference).
        let (s, ()) = tokio::task::spawn_blocking(move || {
            slapd.modify_mail("p00004", "new4@example.com");
            slapd.add(&person(20));
            slapd.delete("p00005");
            (slapd, ())
        })
        .await
        .unwrap();
        let slapd = s;
        let inc = sync(&host, false).await.expect("incremental sync");
        assert_eq!(
            (inc.created, inc.updated, inc.deleted),
            (1, 1, 0),
            "{inc:?}"
        );
        assert!(
            inc.staged < 21,
            "an incremental sync reads only changes: {inc:?}"
        );
        let people = app.employee_bodies().await;
        assert_eq!(
            find_person(&people, "p00004").unwrap()["email"],
            "new4@example.com"
        );
        assert!(
            find_person(&people, "p00005").is_some(),
            "incremental syncs do not delete"
        );
        // The local tag survived the updates of the synced fields.
        assert_eq!(
            find_person(&people, "p00003").unwrap()["tags"],
            json!(["vip"])
        );

        let full = sync(&host, true).await.expect("full sync");
        assert_eq!(
            (full.deleted, full.deleted_identifiers.clone()),
            (1, vec!["p00005".to_owned()])
        );
        assert!(find_person(&app.employee_bodies().await, "p00005").is_none());
        drop(slapd);
    }
);

on_both!(
    ldaps_and_the_mass_deletion_guard,
    |app: TestApp| async move {
        let app = app;
        app.domain("People").await;
        let slapd = slapd(30).await;
        let host = host(
            &app,
            &slapd,
            &slapd.ldaps_url(),
            "max_deletions = 5\nmax_deletion_percent = 50",
            30_000,
        )
        .await;
        sync(&host, true).await.expect("full sync over LDAPS");
        // Ten leave at once: more than max_deletions.
        let slapd = tokio::task::spawn_blocking(move || {
            for i in 0..10 {
                slapd.delete(&format!("p{i:05}"));
            }
            slapd
        })
        .await
        .unwrap();
        let dry = host
            .sync(PLUGIN, true, true)
            .await
            .unwrap()
            .expect("a dry run reports");
        assert!(dry.dry_run);
        assert_eq!(dry.deleted, 10, "{dry:?}");
        assert_eq!(
            app.employee_bodies().await.len(),
            30,
            "a dry run changes nothing"
        );
        match sync(&host, true).await {
            Err(PluginError::Invalid(m)) => assert!(m.contains("10"), "{m}"),
            other => panic!("the guard must refuse the sync: {other:?}"),
        }
        assert_eq!(
            app.employee_bodies().await.len(),
            30,
            "a refused sync changes nothing"
        );
        drop(slapd);
    }
);

on_both!(
    a_cut_connection_or_deadline_changes_nothing,
    |app: TestApp| async move {
        let app = app;
        app.domain("People").await;
        let slapd = slapd(60).await;
        let proxy = CutProxy::start(format!("127.0.0.1:{}", slapd.ldaps_port()).parse().unwrap());
        // LDAPS through the proxy: the certificate names 127.0.0.1, which the proxy is too.
        let url = format!("ldaps://127.0.0.1:{}", proxy.port());
        let host = host(&app, &slapd, &url, "", 30_000).await;
        // Cut after a few pages have passed (TLS handshake, bind and ~3 pages of 7 entries).
        proxy.cut_after_bytes(12_000);
        match sync(&host, true).await {
            Err(PluginError::Unavailable(_)) => {}
            other => panic!("a cut connection must fail the sync: {other:?}"),
        }
        assert!(proxy.cuts() >= 1, "the proxy cut the connection");
        assert!(
            app.employee_bodies().await.is_empty(),
            "nothing of the cut sync was applied"
        );
        assert!(
            app.store
                .plugin_kv_get(PLUGIN, "watermark")
                .await
                .unwrap()
                .is_none(),
            "the watermark did not advance"
        );
        proxy.disarm();
        let report = sync(&host, true).await.expect("the next sync completes");
        assert_eq!(report.created, 60);

        // A sync cut off by its deadline (a 1 ms deadline) also changes nothing.
        let slapd = tokio::task::spawn_blocking(move || {
            slapd.modify_mail("p00001", "changed@example.com");
            slapd
        })
        .await
        .unwrap();
        let hurried = host_with_deadline(&app, &slapd, &url).await;
        assert!(
            hurried.sync(PLUGIN, true, false).await.is_err(),
            "the deadline stops it"
        );
        assert_eq!(
            find_person(&app.employee_bodies().await, "p00001").unwrap()["email"],
            "p1@example.com"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(slapd);
    }
);

async fn host_with_deadline(app: &TestApp, slapd: &Slapd, url: &str) -> PluginHost {
    host(app, slapd, url, "", 1).await
}

/// Compiled components shared by the tests (keyed by engine and component hash).
fn plugin_cache() -> std::path::PathBuf {
    std::env::temp_dir().join("lockgate-test-plugin-cache")
}

on_both!(synchronise_now_through_the_api, |app: TestApp| async move {
    let mut app = app;
    app.domain("People").await;
    let slapd = slapd(5).await;
    let host = host(&app, &slapd, &slapd.ldap_url(), "", 30_000).await;
    app.router = lockgate_api::router(
        lockgate_api::AppState::new(app.store.clone(), lockgate_api::ApiConfig::default())
            .with_plugins(std::sync::Arc::new(lockgate::plugins::HostAdmin(host))),
    );
    let path = format!("/api/v1/plugins/{PLUGIN}/sync");
    // LDAP integration at Full is "update LDAP employees"; View is not enough.
    let (_, viewer) = app
        .admin_with(
            "LV",
            json!({ "ldap_integration": "view", "system_settings": "view" }),
            &[],
        )
        .await;
    app.call(
        axum::http::Method::POST,
        &path,
        Some(&viewer),
        Some(json!({ "full": true })),
    )
    .await
    .expect(403);
    let (_, syncer) = app
        .admin_with(
            "LF",
            json!({ "ldap_integration": "full", "system_settings": "view" }),
            &[],
        )
        .await;
    // A dry run reports and writes nothing.
    let dry = app
        .call(
            axum::http::Method::POST,
            &path,
            Some(&syncer),
            Some(json!({ "full": true, "dry_run": true })),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(
        (
            dry["dry_run"].clone(),
            dry["staged"].clone(),
            dry["created"].clone()
        ),
        (json!(true), json!(5), json!(5)),
        "{dry}"
    );
    assert!(
        app.employee_bodies().await.is_empty(),
        "a dry run wrote persons"
    );
    let done = app
        .call(
            axum::http::Method::POST,
            &path,
            Some(&syncer),
            Some(json!({ "full": true })),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(
        (done["dry_run"].clone(), done["created"].clone()),
        (json!(false), json!(5))
    );
    assert_eq!(app.employee_bodies().await.len(), 5);
    // Unknown plugin: 404; an unknown body field: 422.
    app.post("/api/v1/plugins/nope/sync", json!({}))
        .await
        .expect(404);
    app.post(&path, json!({ "everything": true }))
        .await
        .expect(422);
});

on_both!(
    an_entry_missing_a_required_attribute_is_judged_not_dropped,
    |app: TestApp| async move {
        let app = app;
        app.domain("People").await;
        // Every entry has a displayName but p00002.
        let people = (0..5).map(|i| {
            let p = person(i);
            if i == 2 {
                p
            } else {
                p.attr("displayName", &format!("Shown{i}"))
            }
        });
        let slapd = tokio::task::spawn_blocking(move || Slapd::start(people))
            .await
            .expect("slapd");
        let first = host(&app, &slapd, &slapd.ldap_url(), "", 30_000).await;
        let created = sync(&first, true).await.expect("full sync");
        assert_eq!(created.created, 5, "{created:?}");
        drop(first);

        // The first name now comes from displayName, which p00002 lacks: the entry is staged
        // with an empty first name, so the core skips it (on_invalid = skip, the default),
        // lists it with the field, and keeps its stored person; before, the plugin dropped
        // it and the full sync deleted p00002.
        let by_display =
            "attributes = { identifier = \"uid\", first_name = \"displayName\", surname = \"sn\" }";
        let skip = host(&app, &slapd, &slapd.ldap_url(), by_display, 30_000).await;
        let report = sync(&skip, true).await.expect("full sync");
        assert_eq!((report.deleted, report.updated), (0, 4), "{report:?}");
        let listed = report
            .skipped
            .iter()
            .find(|s| s.identifier == "p00002")
            .unwrap_or_else(|| panic!("p00002 not listed: {report:?}"));
        assert!(listed.reason.contains("first_name"), "{listed:?}");
        let stored = app.employee_bodies().await;
        assert_eq!(
            find_person(&stored, "p00002").expect("kept")["first_name"],
            "Given2"
        );
        assert_eq!(
            find_person(&stored, "p00001").expect("updated")["first_name"],
            "Shown1"
        );
        drop(skip);

        // on_invalid = refuse: the whole sync is refused, naming the entry and the field.
        let refuse = format!("{by_display}\n[sources.directory-sync]\non_invalid = \"refuse\"");
        let strict = host(&app, &slapd, &slapd.ldap_url(), &refuse, 30_000).await;
        let err = strict
            .sync(PLUGIN, true, false)
            .await
            .expect("the plugin ran");
        let message = format!("{err:?}");
        assert!(
            message.contains("first_name"),
            "refused without naming the field: {message}"
        );
        drop(slapd);
    }
);
