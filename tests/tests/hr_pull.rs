//! The bundled `hr-pull` plugin end to end: the fake HR system (`tests/peers/hr/fake_hr.py`,
//! started by each test on a free loopback port), the host's outbound HTTP (`wasi:http`,
//! granted `127.0.0.1:<port>` with `allow_private`), the core's `sync-persons` on both
//! databases. Full and incremental pulls over REST/JSON and SOAP, the watermark, deletions
//! under both deletion settings, the mass-deletion guard, dry runs, `on_invalid`, pages that
//! cannot be read (malformed, DOCTYPE, too deep, SOAP fault, 503), credentials, cursor
//! paging and the sync-now endpoint.

use lockgate::config::PluginsConfig;
use lockgate_api::licence::LicenceConfig;
use lockgate_host::PluginHost;
use lockgate_host::types::{PluginError, SyncReport};
use lockgate_test_peers::FakeHr;
use lockgate_tests::*;
use serde_json::json;

const PLUGIN: &str = "hr-pull";

/// The JSON settings for the fake HR system's REST endpoint.
fn json_config(hr: &FakeHr) -> String {
    format!(
        r#"
        url = "{url}"
        page_size = 7
        items = "data.employees"
        next = "paging.has_more"
        changed_field = "changed"
        "#,
        url = hr.json_url()
    )
}

/// The SOAP settings for the fake HR system's SOAP endpoint (the server's watermark token).
fn soap_config(hr: &FakeHr) -> String {
    format!(
        r#"
        format = "soap"
        url = "{url}"
        page_size = 7
        soap_action = "urn:lockgate:fake-hr#ListEmployees"
        soap_envelope = '''<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:hr="urn:lockgate:fake-hr">
  <soap:Body><hr:ListEmployees><hr:Page>{{page}}</hr:Page><hr:PageSize>{{page_size}}</hr:PageSize><hr:ChangedSince>{{changed_since}}</hr:ChangedSince></hr:ListEmployees></soap:Body>
</soap:Envelope>'''
        items = "ListEmployeesResponse.Employees.Employee"
        next = "ListEmployeesResponse.HasMore"
        watermark_path = "ListEmployeesResponse.Watermark"
        "#,
        url = hr.soap_url()
    )
}

const JSON_FIELDS: &str = r#"
        [instances.hr-pull.config.fields]
        identifier = "id"
        first_name = "name.given"
        surname = "name.family"
        email = "email"
        phone = "phone"
        department = "department"
"#;

const SOAP_FIELDS: &str = r#"
        [instances.hr-pull.config.fields]
        identifier = "Id"
        first_name = "GivenName"
        surname = "FamilyName"
        email = "Email"
        phone = "Phone"
        department = "Department"
"#;

/// A plugin host with the bundled plugins and `hr-pull` granted the fake HR system;
/// `settings` are the plugin's config keys (before `fields`), `on_invalid` the source's.
async fn host_with(
    app: &TestApp,
    hr: &FakeHr,
    settings: &str,
    fields: &str,
    on_invalid: &str,
) -> PluginHost {
    let cfg: PluginsConfig = toml::from_str(&format!(
        r#"
        cache_dir = "{cache}"
        cache_key_file = "{cache}.key"
        [sources.hr-pull]
        on_invalid = "{on_invalid}"
        [instances.hr-pull]
        deadline_ms = 60000
        grants = {{ log = true, config = true, kv = true, gateway = ["sync-persons"], http = {{ hosts = ["{host}"], allow_private = true }} }}
        [instances.hr-pull.config]
        domain = "People"
        active_field = "{active}"
        active_values = ["active"]
        {settings}
        {fields}
        "#,
        cache = plugin_cache().display(),
        host = hr.host(),
        active = if fields == SOAP_FIELDS { "Status" } else { "status" },
    ))
    .expect("plugins config");
    lockgate::plugins::start(&cfg, &app.store, &LicenceConfig::default(), None, None)
        .await
        .expect("plugin host")
        .expect("enabled")
}

async fn json_host(app: &TestApp, hr: &FakeHr, extra: &str) -> PluginHost {
    let settings = format!("{}\n{extra}", json_config(hr));
    host_with(app, hr, &settings, JSON_FIELDS, "skip").await
}

/// Compiled components shared by the tests (keyed by engine and component hash).
fn plugin_cache() -> std::path::PathBuf {
    std::env::temp_dir().join("lockgate-test-plugin-cache")
}

async fn sync(host: &PluginHost, full: bool) -> Result<SyncReport, PluginError> {
    host.sync(PLUGIN, full, false)
        .await
        .expect("the plugin ran")
}

async fn dry_run(host: &PluginHost, full: bool) -> SyncReport {
    host.sync(PLUGIN, full, true)
        .await
        .expect("the plugin ran")
        .expect("a dry run reports")
}

/// The fake server with `n` persons, started off the async runtime.
async fn fake_hr(n: usize, token: Option<&'static str>) -> FakeHr {
    tokio::task::spawn_blocking(move || FakeHr::start_with(n, token))
        .await
        .expect("fake HR")
}

/// Runs a blocking control call of the fake server.
async fn on_hr<T: Send + 'static>(
    hr: &std::sync::Arc<FakeHr>,
    f: impl FnOnce(&FakeHr) -> T + Send + 'static,
) -> T {
    let hr = hr.clone();
    tokio::task::spawn_blocking(move || f(&hr))
        .await
        .expect("fake HR control")
}

async fn watermark(app: &TestApp) -> Option<String> {
    app.store
        .plugin_kv_get(PLUGIN, "watermark")
        .await
        .expect("kv")
        .map(|v| String::from_utf8(v).expect("UTF-8 watermark"))
}

on_both!(full_and_incremental_json_pull, |app: TestApp| async move {
    let app = app;
    app.domain("People").await;
    let hr = std::sync::Arc::new(fake_hr(20, None).await);
    let host = json_host(&app, &hr, "").await;

    let first = sync(&host, true).await.expect("full sync");
    assert_eq!(
        (first.staged, first.created, first.deleted),
        (20, 20, 0),
        "{first:?}"
    );
    let people = app.employee_bodies().await;
    assert_eq!(people.len(), 20);
    let p3 = find_person(&people, "E000003").expect("E000003 pulled");
    assert_eq!(
        (
            p3["first_name"].as_str(),
            p3["surname"].as_str(),
            p3["email"].as_str(),
            p3["department"].as_str(),
            p3["phone"].as_str()
        ),
        (
            Some("Given3"),
            Some("Surname3"),
            Some("e3@example.com"),
            Some("Operations"),
            Some("+41 44 000 0003")
        ),
        "{p3}"
    );
    // Three pages of 7: the page parameter counted up, the page size was sent.
    let requests = on_hr(&hr, |hr| hr.requests()).await;
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(
        requests[2].contains("page=3") && requests[2].contains("page_size=7"),
        "{requests:?}"
    );
    assert!(
        !requests[0].contains("changed_since"),
        "a full pull asks for everything"
    );
    let mark = on_hr(&hr, |hr| hr.watermark()).await;
    assert_eq!(
        watermark(&app).await.as_deref(),
        Some(mark.as_str()),
        "the largest `changed` is the watermark"
    );

    let again = sync(&host, true).await.expect("full sync");
    assert_eq!(
        (again.created, again.updated, again.unchanged),
        (0, 0, 20),
        "{again:?}"
    );

    // Changes: a new email, a new person, one leaves (inactive), one disappears.
    on_hr(&hr, |hr| {
        hr.clear();
        hr.update(&[("E000004", json!({ "email": "new4@example.com" }))]);
        hr.add(vec![
            json!({ "id": "E000020", "given": "New", "family": "Person" }),
        ]);
        hr.deactivate(&["E000005"]);
        hr.remove(&["E000006"]);
    })
    .await;
    let inc = sync(&host, false).await.expect("incremental sync");
    // Changed since the watermark (inclusive): E000004, E000005, E000020 and E000019, whose
    // `changed` was the watermark.
    assert_eq!(inc.staged, 4, "{inc:?}");
    assert_eq!(
        (inc.created, inc.updated, inc.unchanged, inc.deleted),
        (1, 1, 1, 1),
        "{inc:?}"
    );
    assert_eq!(inc.deleted_identifiers, ["E000005"]);
    let requests = on_hr(&hr, |hr| hr.requests()).await;
    let since = format!("changed_since={}", mark.replace(':', "%3A"));
    assert!(
        !requests.is_empty() && requests.iter().all(|r| r.contains(&since)),
        "{requests:?} should all carry {since}"
    );
    let people = app.employee_bodies().await;
    assert_eq!(
        find_person(&people, "E000004").unwrap()["email"],
        "new4@example.com"
    );
    assert!(find_person(&people, "E000020").is_some());
    assert!(
        find_person(&people, "E000005").is_none(),
        "inactive: deleted (delete permanently)"
    );
    assert!(
        find_person(&people, "E000006").is_some(),
        "an incremental pull cannot see removals"
    );
    let new_mark = on_hr(&hr, |hr| hr.watermark()).await;
    assert_ne!(new_mark, mark);
    assert_eq!(
        watermark(&app).await.as_deref(),
        Some(new_mark.as_str()),
        "the watermark advanced"
    );

    // Nothing changed since: an incremental pull reads only the person at the watermark.
    // (E000005, inactive and already deleted).
    let quiet = sync(&host, false).await.expect("incremental sync");
    assert_eq!(
        (quiet.staged, quiet.created, quiet.updated, quiet.deleted),
        (1, 0, 0, 0),
        "{quiet:?}"
    );

    let full = sync(&host, true).await.expect("full sync");
    assert_eq!(
        (full.deleted, full.deleted_identifiers.clone()),
        (1, vec!["E000006".to_owned()])
    );
    assert!(find_person(&app.employee_bodies().await, "E000006").is_none());
});

on_both!(
    deletions_follow_the_deletion_setting,
    |app: TestApp| async move {
        let app = app;
        app.domain("People").await;
        app.patch(
            "/api/v1/system/settings",
            json!({ "person_deletion": "mark_as_deleted" }),
        )
        .await
        .expect(200);
        let hr = std::sync::Arc::new(fake_hr(10, None).await);
        let host = json_host(&app, &hr, "max_deletion_percent = 50").await;
        assert_eq!(sync(&host, true).await.expect("full").created, 10);
        on_hr(&hr, |hr| {
            hr.deactivate(&["E000001"]);
            hr.remove(&["E000002"]);
        })
        .await;
        let r = sync(&host, true).await.expect("full sync");
        assert_eq!(r.deleted, 2, "{r:?}");
        let people = app.employee_bodies().await;
        for id in ["E000001", "E000002"] {
            let p = find_person(&people, id).unwrap_or_else(|| panic!("{id} is kept, marked"));
            assert_eq!(p["lifecycle"], "deleted", "{p}");
        }
        assert_ne!(
            find_person(&people, "E000003").unwrap()["lifecycle"],
            "deleted"
        );
    }
);

on_both!(
    the_guard_refuses_and_dry_runs_change_nothing,
    |app: TestApp| async move {
        let app = app;
        app.domain("People").await;
        let hr = std::sync::Arc::new(fake_hr(30, None).await);
        let host = json_host(&app, &hr, "max_deletions = 5\nmax_deletion_percent = 50").await;

        // A dry run of the first pull reports the creations and writes nothing, not even the
        // watermark.
        let dry = dry_run(&host, true).await;
        assert!(dry.dry_run);
        assert_eq!((dry.staged, dry.created), (30, 30), "{dry:?}");
        assert!(
            app.employee_bodies().await.is_empty(),
            "a dry run wrote persons"
        );
        assert_eq!(watermark(&app).await, None, "a dry run wrote the watermark");

        sync(&host, true).await.expect("full sync");
        let mark = watermark(&app).await.expect("watermark");
        // Ten leave at once (more than max_deletions), one changes.
        on_hr(&hr, |hr| {
            let ids: Vec<String> = (0..10).map(|i| format!("E{i:06}")).collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            hr.remove(&ids);
            hr.update(&[("E000020", json!({ "email": "changed@example.com" }))]);
        })
        .await;
        let dry = dry_run(&host, true).await;
        assert_eq!((dry.deleted, dry.updated), (10, 1), "{dry:?}");
        assert!(
            dry.guard
                .as_deref()
                .is_some_and(|g| g.contains("would delete 10 of the 30 persons")),
            "{dry:?}"
        );
        match sync(&host, true).await {
            Err(PluginError::Invalid(m)) => assert!(m.contains("10"), "{m}"),
            other => panic!("the guard must refuse the sync: {other:?}"),
        }
        let people = app.employee_bodies().await;
        assert_eq!(people.len(), 30, "a refused sync changes nothing");
        assert_eq!(
            find_person(&people, "E000020").unwrap()["email"],
            "e20@example.com"
        );
        assert_eq!(
            watermark(&app).await.as_deref(),
            Some(mark.as_str()),
            "the watermark stays"
        );

        // An incremental dry run sees the change and writes nothing either.
        let dry = dry_run(&host, false).await;
        assert_eq!(dry.updated, 1, "{dry:?}");
        assert_eq!(watermark(&app).await.as_deref(), Some(mark.as_str()));
        // The incremental pull itself is not a mass deletion: it applies the change.
        let inc = sync(&host, false).await.expect("incremental");
        assert_eq!((inc.updated, inc.deleted), (1, 0), "{inc:?}");
        assert_ne!(watermark(&app).await.as_deref(), Some(mark.as_str()));
    }
);

on_both!(
    soap_pull_with_the_server_watermark,
    |app: TestApp| async move {
        let app = app;
        app.domain("People").await;
        let hr = std::sync::Arc::new(fake_hr(20, None).await);
        let host = host_with(&app, &hr, &soap_config(&hr), SOAP_FIELDS, "skip").await;
        let first = sync(&host, true).await.expect("full SOAP sync");
        assert_eq!((first.staged, first.created), (20, 20), "{first:?}");
        let people = app.employee_bodies().await;
        let p7 = find_person(&people, "E000007").expect("E000007");
        assert_eq!(
            (p7["surname"].as_str(), p7["email"].as_str()),
            (Some("Surname7"), Some("e7@example.com"))
        );
        let requests = on_hr(&hr, |hr| hr.requests()).await;
        assert_eq!(requests.len(), 3, "{requests:?}");
        assert!(requests[1].contains("<hr:Page>2</hr:Page><hr:PageSize>7</hr:PageSize><hr:ChangedSince></hr:ChangedSince>"), "{}", requests[1]);
        let mark = on_hr(&hr, |hr| hr.watermark()).await;
        assert_eq!(
            watermark(&app).await.as_deref(),
            Some(mark.as_str()),
            "the server's token is the watermark"
        );

        on_hr(&hr, |hr| {
            hr.clear();
            hr.update(&[("E000011", json!({ "department": "Finance" }))]);
            hr.deactivate(&["E000012"]);
        })
        .await;
        let inc = sync(&host, false).await.expect("incremental SOAP sync");
        assert_eq!((inc.updated, inc.deleted), (1, 1), "{inc:?}");
        assert!(inc.staged <= 3, "only the changes were read: {inc:?}");
        let requests = on_hr(&hr, |hr| hr.requests()).await;
        assert!(
            requests[0].contains(&format!("<hr:ChangedSince>{mark}</hr:ChangedSince>")),
            "{requests:?}"
        );
        let people = app.employee_bodies().await;
        assert_eq!(
            find_person(&people, "E000011").unwrap()["department"],
            "Finance"
        );
        assert!(find_person(&people, "E000012").is_none());
        let new_mark = on_hr(&hr, |hr| hr.watermark()).await;
        assert_eq!(watermark(&app).await.as_deref(), Some(new_mark.as_str()));
    }
);

on_both!(
    invalid_entries_are_skipped_or_refuse_the_sync,
    |app: TestApp| async move {
        let app = app;
        app.domain("People").await;
        let hr = std::sync::Arc::new(fake_hr(10, None).await);
        on_hr(&hr, |hr| {
            hr.update(&[
                ("E000003", json!({ "email": "not-an-email" })),
                ("E000004", json!({ "family": null })),
            ]);
            // No identifier: sorted first, so page 1, item 1.
            hr.add(vec![
                json!({ "id": "", "given": "No", "family": "Identifier" }),
            ]);
        })
        .await;
        // `refuse`: the whole sync is refused, naming every invalid entry; nothing is written.
        let refusing = host_with(&app, &hr, &json_config(&hr), JSON_FIELDS, "refuse").await;
        match sync(&refusing, true).await {
            Err(PluginError::Invalid(m)) => {
                assert!(
                    m.contains("persons[0].identifier (page 1, item 1): is required"),
                    "{m}"
                );
                assert!(m.contains(".email (page 1, item 5)"), "{m}");
                assert!(m.contains(".surname (page 1, item 6): is required"), "{m}");
            }
            other => panic!("on_invalid = refuse must refuse: {other:?}"),
        }
        assert!(
            app.employee_bodies().await.is_empty(),
            "a refused sync wrote persons"
        );
        assert_eq!(
            watermark(&app).await,
            None,
            "a refused sync wrote the watermark"
        );

        // `skip` (the default): the valid ones are applied, each invalid one listed with field
        // and reason.
        let host = json_host(&app, &hr, "").await;
        let r = sync(&host, true).await.expect("sync");
        assert_eq!((r.staged, r.created), (11, 8), "{r:?}");
        let reason = |id: &str| {
            r.skipped
                .iter()
                .find(|s| s.identifier == id)
                .map(|s| s.reason.clone())
                .unwrap_or_else(|| panic!("{id} not skipped: {:?}", r.skipped))
        };
        assert!(
            reason("E000003").starts_with("invalid entry: email:"),
            "{}",
            reason("E000003")
        );
        assert!(
            reason("E000004").starts_with("invalid entry: surname: is required"),
            "{}",
            reason("E000004")
        );
        assert!(
            reason("persons[0] (page 1, item 1)")
                .starts_with("invalid entry: identifier: is required")
        );
        assert_eq!(app.employee_bodies().await.len(), 8);
        assert!(watermark(&app).await.is_some());
    }
);

on_both!(
    unreadable_pages_fail_the_sync_and_change_nothing,
    |app: TestApp| async move {
        let app = app;
        app.domain("People").await;
        let hr = std::sync::Arc::new(fake_hr(20, None).await);
        let json = json_host(&app, &hr, "").await;
        let soap = host_with(&app, &hr, &soap_config(&hr), SOAP_FIELDS, "skip").await;
        // (host, format, fault, the error kind, what the message must say)
        let cases: [(&PluginHost, &str, &str, &str, &str); 9] = [
            (
                &json,
                "json",
                "malformed",
                "invalid",
                "page 2: not JSON: EOF",
            ),
            (
                &json,
                "json",
                "deep",
                "invalid",
                "page 2: nested deeper than 32 levels",
            ),
            (&json, "json", "doctype", "invalid", "page 2: not JSON"),
            (
                &json,
                "json",
                "status-503",
                "unavailable",
                "page 2: HTTP status 503",
            ),
            (
                &soap,
                "soap",
                "doctype",
                "invalid",
                "page 2: a DOCTYPE is not accepted",
            ),
            (
                &soap,
                "soap",
                "deep",
                "invalid",
                "page 2: nested deeper than 32 levels",
            ),
            (
                &soap,
                "soap",
                "malformed",
                "invalid",
                "page 2: not well-formed XML",
            ),
            (
                &soap,
                "soap",
                "soap-fault",
                "unavailable",
                "page 2: SOAP fault `soap:Server`: database offline",
            ),
            (
                &soap,
                "soap",
                "status-503",
                "unavailable",
                "page 2: HTTP status 503",
            ),
        ];
        for (host, format, fault, kind, message) in cases {
            let format = format.to_owned();
            let fault = fault.to_owned();
            on_hr(&hr, move |hr| hr.fault(&fault, Some(&format), Some(2))).await;
            let (got_kind, got) = match sync(host, true).await {
                Err(PluginError::Invalid(m)) => ("invalid", m),
                Err(PluginError::Unavailable(m)) => ("unavailable", m),
                other => panic!("{message}: expected a failure, got {other:?}"),
            };
            assert_eq!(got_kind, kind, "{got}");
            assert!(
                got.starts_with(message),
                "expected `{message}`, got `{got}`"
            );
            assert!(
                app.employee_bodies().await.is_empty(),
                "{message}: page 1 was applied"
            );
            assert_eq!(
                watermark(&app).await,
                None,
                "{message}: the watermark moved"
            );
        }
        // An item whose mapped field holds an object cannot be read: the sync names it.
        on_hr(&hr, |hr| {
            hr.update(&[("E000002", json!({ "email": { "work": "x@example.com" } }))])
        })
        .await;
        match sync(&json, true).await {
            Err(PluginError::Invalid(m)) => assert_eq!(
                m,
                "page 1, item 3 (identifier `E000002`): field `email` (source `email`) must be a string, number or boolean, found an object"
            ),
            other => panic!("an unreadable item must fail the sync: {other:?}"),
        }
        assert!(app.employee_bodies().await.is_empty());
        // Without faults the same pulls go through.
        on_hr(&hr, |hr| {
            hr.update(&[("E000002", json!({ "email": "e2@example.com" }))])
        })
        .await;
        assert_eq!(
            sync(&json, true).await.expect("clean JSON sync").created,
            20
        );
        assert_eq!(
            sync(&soap, true).await.expect("clean SOAP sync").unchanged,
            20
        );
    }
);

on_both!(credentials_and_cursor_paging, |app: TestApp| async move {
    let app = app;
    app.domain("People").await;
    let hr = std::sync::Arc::new(fake_hr(15, Some("s3cret-t0ken")).await);
    // Without the token the server answers 401: `denied`, and the token is not needed to
    // say so.
    let anonymous = json_host(&app, &hr, "").await;
    match sync(&anonymous, true).await {
        Err(PluginError::Denied(m)) => assert!(m.starts_with("page 1: HTTP status 401"), "{m}"),
        other => panic!("a 401 must be denied: {other:?}"),
    }
    let wrong = json_host(&app, &hr, r#"token = "t0ken-x""#).await;
    match sync(&wrong, true).await {
        Err(PluginError::Denied(m)) => assert!(
            m.starts_with("page 1: HTTP status 401") && !m.contains("t0ken-x"),
            "{m}"
        ),
        other => panic!("a wrong token must be denied: {other:?}"),
    }
    // The bearer token, and cursor paging instead of page numbers.
    let settings = format!(
        r#"
        url = "{url}"
        page_size = 4
        token = "s3cret-t0ken"
        paging = "cursor"
        items = "data.employees"
        next = "paging.next_cursor"
        watermark_path = "watermark"
        "#,
        url = hr.json_url()
    );
    let host = host_with(&app, &hr, &settings, JSON_FIELDS, "skip").await;
    on_hr(&hr, |hr| hr.clear()).await;
    let r = sync(&host, true).await.expect("cursor paging");
    assert_eq!((r.staged, r.created), (15, 15), "{r:?}");
    let requests = on_hr(&hr, |hr| hr.requests()).await;
    assert_eq!(requests.len(), 4, "{requests:?}");
    assert!(!requests[0].contains("cursor="), "{requests:?}");
    assert!(requests[3].contains("cursor=c12"), "{requests:?}");
});

on_both!(synchronise_now_through_the_api, |app: TestApp| async move {
    let mut app = app;
    app.domain("People").await;
    let hr = std::sync::Arc::new(fake_hr(5, None).await);
    let host = json_host(&app, &hr, "max_deletions = 1").await;
    app.router = lockgate_api::router(
        lockgate_api::AppState::new(app.store.clone(), lockgate_api::ApiConfig::default())
            .with_plugins(std::sync::Arc::new(lockgate::plugins::HostAdmin(host))),
    );
    let path = format!("/api/v1/plugins/{PLUGIN}/sync");
    let dry = app
        .post(&path, json!({ "full": true, "dry_run": true }))
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
        .post(&path, json!({ "full": true }))
        .await
        .expect(200)
        .body;
    assert_eq!(
        (done["dry_run"].clone(), done["created"].clone()),
        (json!(false), json!(5))
    );
    assert_eq!(app.employee_bodies().await.len(), 5);
    // An incremental pull through the endpoint.
    on_hr(&hr, |hr| {
        hr.update(&[("E000001", json!({ "given": "Renamed" }))])
    })
    .await;
    let inc = app
        .post(&path, json!({ "full": false }))
        .await
        .expect(200)
        .body;
    assert_eq!(inc["updated"], json!(1), "{inc}");
    // The guard's refusal is a 422 with the reason.
    on_hr(&hr, |hr| hr.remove(&["E000002", "E000003"])).await;
    let refused = app.post(&path, json!({ "full": true })).await.expect(422);
    assert!(
        refused
            .body
            .to_string()
            .contains("mass-deletion guard: the sync would delete 2 of the 5 persons"),
        "{}",
        refused.body
    );
    assert_eq!(app.employee_bodies().await.len(), 5);
});
