//! Licences end to end (docs/licences.md): installation through `PUT /api/v1/licence` with the
//! install rule kept in the database (also across a new connection and under concurrency),
//! refusal of untrusted, tampered and foreign files, feature gating of writes, soft and hard
//! expiry, enforcement without a licence, and the start-up check.

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use chrono::{DateTime, Duration, Utc};
use lockgate_api::{
    ApiConfig, AppState,
    licence::{LicenceConfig, check_at_startup},
};
use lockgate_engine::licence::{
    Licence, LicenceFeature, TrustedKeys, generate_key_pair_from_seed, sign,
};
use lockgate_store::{Actor, ConnectOptions, Store, StoreError};
use lockgate_tests::*;
use serde_json::{Value, json};

/// Seed of the key the test configuration trusts (under `TEST_KEY_ID`).
const SEED: [u8; 32] = [11; 32];
/// Seed of a key nobody trusts.
const UNTRUSTED_SEED: [u8; 32] = [12; 32];
const TEST_KEY_ID: &str = "test-2026";
/// The name `TestApp` gives its locking system.
const SYSTEM: &str = "Test site";

use LicenceFeature as F;

fn trusted() -> TrustedKeys {
    let (_, public) = generate_key_pair_from_seed(SEED);
    TrustedKeys::from_config([format!("{TEST_KEY_ID}:{public}")]).expect("trusted key")
}

fn config(enforce: bool) -> ApiConfig {
    ApiConfig {
        licence: LicenceConfig {
            trusted_keys: trusted(),
            enforce,
        },
        ..ApiConfig::default()
    }
}

/// The app's router rebuilt with a configuration that trusts the test key.
fn with_config(mut app: TestApp, enforce: bool) -> TestApp {
    app.router = lockgate_api::router(AppState::new(app.store.clone(), config(enforce)));
    app
}

/// A licence for the test system, issued a while ago, expiring in about a year.
fn licence(number: u64, features: &[LicenceFeature]) -> Licence {
    let now = Utc::now();
    Licence {
        system_name: SYSTEM.to_owned(),
        number,
        issued_at: now - Duration::days(30),
        soft_expiry: Some(now + Duration::days(300)),
        hard_expiry: Some(now + Duration::days(330)),
        features: features.iter().copied().collect(),
        max_keys: Some(5000),
        max_cylinders: None,
        key_id: TEST_KEY_ID.to_owned(),
    }
}

fn expiring(
    number: u64,
    features: &[LicenceFeature],
    soft: DateTime<Utc>,
    hard: DateTime<Utc>,
) -> Licence {
    Licence {
        issued_at: soft - Duration::days(60),
        soft_expiry: Some(soft),
        hard_expiry: Some(hard),
        ..licence(number, features)
    }
}

/// The signed file, by the trusted key.
fn file(lic: &Licence) -> String {
    sign(lic, &generate_key_pair_from_seed(SEED).0, TEST_KEY_ID)
}

/// Every feature but the ones named.
fn all_but(missing: &[LicenceFeature]) -> Vec<LicenceFeature> {
    LicenceFeature::ALL
        .into_iter()
        .filter(|f| !missing.contains(f))
        .collect()
}

async fn put_licence(app: &TestApp, text: &str) -> Resp {
    let req = Request::builder()
        .method(Method::PUT)
        .uri("/api/v1/licence")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(text.to_owned()))
        .expect("request");
    app.send(req).await
}

#[track_caller]
fn assert_problem(r: &Resp, status: u16, slug: &str, needle: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    assert_eq!(
        r.body["type"],
        format!("urn:lockgate:problem:{slug}"),
        "{}",
        r.body
    );
    let detail = r.body["detail"].as_str().unwrap_or("");
    assert!(detail.contains(needle), "{needle:?} not in {detail}");
}

#[track_caller]
fn assert_feature_missing(r: &Resp, feature: &str) {
    assert_problem(r, 403, "licence-feature-missing", feature);
    assert_eq!(r.body["feature"], feature, "{}", r.body);
}

/// Replace one base64url character of an envelope field with another valid one.
fn tamper(text: &str, field: &str, at: usize) -> String {
    let mut v: Value = serde_json::from_str(text).expect("envelope");
    let mut chars: Vec<char> = v[field].as_str().expect("field").chars().collect();
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    v[field] = Value::String(chars.into_iter().collect());
    v.to_string()
}

async fn key_group(app: &TestApp) -> i64 {
    app.key_group("Users", "normal").await
}

fn key_body(app: &TestApp, group: i64, marking: &str, validity: Value) -> Value {
    json!({
        "name": format!("Key {marking}"), "marking": marking, "type": "quartz",
        "generation": "2", "key_group_id": group, "domain_id": app.default_domain,
        "connect": true, "validity": validity,
    })
}

on_both!(installs_and_reports, |app: TestApp| async move {
    let app = with_config(app, false);
    let before = app.get("/api/v1/licence").await.expect(200).body;
    assert_eq!(before["state"], "missing");
    assert_eq!(before["open_mode"], true);
    assert_eq!(before["licence"], Value::Null);
    assert_eq!(
        before["features"].as_array().map(Vec::len),
        Some(LicenceFeature::ALL.len())
    );

    let lic = licence(3, &[F::Remote, F::Domains, F::CylinderGroups]);
    let r = put_licence(&app, &file(&lic)).await.expect(200);
    assert_eq!(r.body["state"], "valid");
    assert_eq!(r.body["number"], 3);
    assert_eq!(r.body["open_mode"], false);

    let after = app.get("/api/v1/licence").await.expect(200).body;
    assert_eq!(after["state"], "valid");
    assert_eq!(after["system_name"], SYSTEM);
    assert_eq!(after["licence"]["number"], 3);
    assert_eq!(after["licence"]["key_id"], TEST_KEY_ID);
    assert_eq!(after["licence"]["max_keys"], 5000);
    assert_eq!(
        after["features"],
        json!(["remote", "domains", "cylinder_groups"])
    );
    assert!(after["installed_at"].is_string());
    // The store hands back the file exactly as installed.
    assert_eq!(
        app.store.installed_licence(app.system_id).await.unwrap(),
        Some(file(&lic))
    );
    // A higher number replaces it.
    put_licence(&app, &file(&licence(4, &[F::Remote])))
        .await
        .expect(200);
    assert_eq!(
        app.get("/api/v1/licence").await.body["features"],
        json!(["remote"])
    );
});

on_both!(
    reading_and_installing_need_system_settings,
    |app: TestApp| async move {
        let app = with_config(app, false);
        let (_, viewer) = app
            .admin_with("LV-1", json!({ "system_settings": "view" }), &[])
            .await;
        let (_, nobody) = app.admin_with("LV-2", json!({}), &[]).await;
        app.call(Method::GET, "/api/v1/licence", Some(&viewer), None)
            .await
            .expect(200);
        app.call(Method::GET, "/api/v1/licence", Some(&nobody), None)
            .await
            .expect(403);
        let req = Request::builder()
            .method(Method::PUT)
            .uri("/api/v1/licence")
            .header(header::AUTHORIZATION, format!("Bearer {viewer}"))
            .body(Body::from(file(&licence(1, &[]))))
            .expect("request");
        let r = app.send(req).await.expect(403);
        assert_eq!(r.body["function"], "system_settings", "{}", r.body);
        app.call(Method::GET, "/api/v1/licence", None, None)
            .await
            .expect(401);
    }
);

on_both!(lower_or_equal_number_refused, |app: TestApp| async move {
    let app = with_config(app, false);
    put_licence(&app, &file(&licence(7, &[F::Remote])))
        .await
        .expect(200);
    for n in [7, 6, 0] {
        let r = put_licence(&app, &file(&licence(n, &all_but(&[])))).await;
        assert_problem(&r, 409, "licence-not-newer", &format!("licence number {n}"));
        assert_eq!(r.error_fields(), ["number"]);
        assert_eq!(r.body["installed_number"], 7);
        assert_eq!(r.body["offered_number"], n);
    }
    // Still number 7 with its features.
    let now = app.get("/api/v1/licence").await.body;
    assert_eq!(now["licence"]["number"], 7);
    assert_eq!(now["features"], json!(["remote"]));
});

on_both!(install_rule_survives_a_restart, |app: TestApp| async move {
    // A database of its own, so a second connection can be opened on it.
    let db = TestDatabase::create(app.db).await;
    let first = Store::connect(&ConnectOptions::new(&db.url)).await.unwrap();
    first.migrate().await.unwrap();
    let b = first.init_system(SYSTEM, fixed(true)).await.unwrap();
    let mut app = app;
    app.router = lockgate_api::router(AppState::new(first.clone(), config(false)));
    app.token = b.token.clone();
    put_licence(&app, &file(&licence(5, &[F::Remote])))
        .await
        .expect(200);
    first.close().await;

    // "Restart": a new pool on the same database, migrations run again.
    let second = Store::connect(&ConnectOptions::new(&db.url)).await.unwrap();
    second.migrate().await.unwrap();
    app.router = lockgate_api::router(AppState::new(second.clone(), config(false)));
    let r = put_licence(&app, &file(&licence(5, &[F::Remote]))).await;
    assert_problem(&r, 409, "licence-not-newer", "licence number 5");
    let r = put_licence(&app, &file(&licence(4, &[F::Remote]))).await;
    assert_problem(&r, 409, "licence-not-newer", "licence number 4");
    // The store refuses on its own, too (the rule is in the database, not the API).
    match second
        .install_licence(b.system.id, "{}", 5, &Actor::system())
        .await
    {
        Err(StoreError::Conflict { field, message }) => {
            assert_eq!(field, "number");
            assert!(message.contains('5'), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        app.get("/api/v1/licence").await.expect(200).body["number"],
        5
    );
    put_licence(&app, &file(&licence(6, &[F::Remote])))
        .await
        .expect(200);
    second.close().await;
    app.store.close().await;
});

on_both!(
    concurrent_installs_of_one_number_install_once,
    |app: TestApp| async move {
        // Bind the whole app (its database lives as long as it does), not just the fields used.
        let app = app;
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let store = app.store.clone();
            let system = app.system_id;
            tasks.push(tokio::spawn(async move {
                store
                    .install_licence(system, "file", 42, &Actor::system())
                    .await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(_) => won += 1,
                Err(StoreError::Conflict { field, .. }) => assert_eq!(field, "number"),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(won, 1);
        // Distinct numbers racing: the highest always ends up installed.
        let mut tasks = Vec::new();
        for n in 43..=50 {
            let store = app.store.clone();
            let system = app.system_id;
            tasks.push(tokio::spawn(async move {
                store
                    .install_licence(system, &format!("file {n}"), n, &Actor::system())
                    .await
            }));
        }
        for t in tasks {
            let _ = t.await.expect("task");
        }
        let stored = app
            .store
            .installed_licence_record(app.system_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((stored.number, stored.file.as_str()), (50, "file 50"));
    }
);

on_both!(
    untrusted_and_tampered_files_refused,
    |app: TestApp| async move {
        let app = with_config(app, false);
        let lic = licence(1, &[F::Remote]);
        // Signed by a key nobody trusts, under the trusted key's id.
        let forged = sign(
            &lic,
            &generate_key_pair_from_seed(UNTRUSTED_SEED).0,
            TEST_KEY_ID,
        );
        let r = put_licence(&app, &forged).await;
        assert_problem(&r, 422, "licence-bad-signature", TEST_KEY_ID);
        assert_eq!(r.error_fields(), ["signature"]);
        // Signed under a key id the configuration does not know.
        let unknown = sign(
            &lic,
            &generate_key_pair_from_seed(UNTRUSTED_SEED).0,
            "vendor-x",
        );
        let r = put_licence(&app, &unknown).await;
        assert_problem(&r, 422, "licence-unknown-key", "vendor-x");
        // Tampered payload and tampered signature.
        let good = file(&lic);
        for field in ["payload", "signature"] {
            let r = put_licence(&app, &tamper(&good, field, 10)).await;
            assert_problem(&r, 422, "licence-bad-signature", "does not verify");
        }
        // Not a licence file at all.
        let r = put_licence(&app, "hello").await;
        assert_problem(&r, 422, "licence-malformed", "envelope");
        // The default configuration trusts no key at all.
        let mut plain = app;
        plain.router =
            lockgate_api::router(AppState::new(plain.store.clone(), ApiConfig::default()));
        let r = put_licence(&plain, &good).await;
        assert_problem(&r, 422, "licence-unknown-key", TEST_KEY_ID);
        // Nothing was installed.
        assert_eq!(
            plain.get("/api/v1/licence").await.expect(200).body["state"],
            "missing"
        );
    }
);

on_both!(
    licence_for_another_system_refused,
    |app: TestApp| async move {
        let app = with_config(app, false);
        let other = Licence {
            system_name: "Other site".into(),
            ..licence(1, &[F::Remote])
        };
        let r = put_licence(&app, &file(&other)).await;
        assert_problem(&r, 422, "licence-other-system", "Other site");
        assert_eq!(r.error_fields(), ["system_name"]);
        assert_eq!(r.body["system_name"], SYSTEM);
    }
);

on_both!(missing_features_gate_writes, |app: TestApp| async move {
    let app = with_config(app, false);
    let group = key_group(&app).await;
    // Open mode first: a key with PIN validation is accepted.
    let pinned = app
        .post(
            "/api/v1/keys",
            key_body(
                &app,
                group,
                "K-PIN",
                json!({ "pin": { "interval_minutes": 60 } }),
            ),
        )
        .await
        .expect(201)
        .id();
    let profile = app
        .post(
            "/api/v1/access-profiles",
            json!({ "name": "Before", "domain_id": app.default_domain }),
        )
        .await
        .expect(201)
        .id();

    let lacking = all_but(&[
        F::AccessProfiles,
        F::PinValidation,
        F::Revalidation,
        F::FlexibleRevalidation,
        F::TemporaryAccessGroups,
    ]);
    put_licence(&app, &file(&licence(1, &lacking)))
        .await
        .expect(200);

    let r = app
        .post(
            "/api/v1/access-profiles",
            json!({ "name": "After", "domain_id": app.default_domain }),
        )
        .await;
    assert_feature_missing(&r, "access_profiles");
    let r = app
        .patch(
            &format!("/api/v1/access-profiles/{profile}"),
            json!({ "name": "Renamed" }),
        )
        .await;
    assert_feature_missing(&r, "access_profiles");
    let r = app
        .post(
            "/api/v1/temporary-access-groups",
            json!({ "name": "T", "domain_id": app.default_domain,
                    "start": "2030-01-01T00:00:00Z", "end": "2030-01-31T00:00:00Z" }),
        )
        .await;
    assert_feature_missing(&r, "temporary_access_groups");

    // Keys still work; only PIN validation and revalidation are gated.
    app.post("/api/v1/keys", key_body(&app, group, "K-1", json!({})))
        .await
        .expect(201);
    let r = app
        .post(
            "/api/v1/keys",
            key_body(
                &app,
                group,
                "K-2",
                json!({ "pin": { "interval_minutes": 60 } }),
            ),
        )
        .await;
    assert_feature_missing(&r, "pin_validation");
    let r = app
        .post(
            "/api/v1/keys",
            key_body(
                &app,
                group,
                "K-3",
                json!({ "revalidation": { "interval_hours": 24 } }),
            ),
        )
        .await;
    assert_feature_missing(&r, "revalidation");
    // A key configured before keeps its PIN validation and can be edited otherwise...
    app.patch(
        &format!("/api/v1/keys/{pinned}"),
        json!({ "name": "Renamed key" }),
    )
    .await
    .expect(200);
    // ...but not have it changed.
    let r = app
        .patch(
            &format!("/api/v1/keys/{pinned}"),
            json!({ "validity": { "pin": { "interval_minutes": 90 } } }),
        )
        .await;
    assert_feature_missing(&r, "pin_validation");
    let r = app
        .post(
            "/api/v1/bulk/key-validity",
            json!({ "ids": [pinned], "validity": { "revalidation": { "interval_hours": 24 } } }),
        )
        .await;
    assert_feature_missing(&r, "revalidation");

    // Domains are licensed here.
    app.domain("Licensed domain").await;

    // Flexible revalidation cannot be switched on; other settings still change.
    let r = app
        .patch(
            "/api/v1/system/settings",
            json!({ "flexible_revalidation": true }),
        )
        .await;
    assert_feature_missing(&r, "flexible_revalidation");
    app.patch(
        "/api/v1/system/settings",
        json!({ "hierarchical_administrators": true }),
    )
    .await
    .expect(200);
    // Reading is never gated.
    app.get(&format!("/api/v1/access-profiles/{profile}"))
        .await
        .expect(200);
});

on_both!(soft_expired_keeps_working, |app: TestApp| async move {
    let app = with_config(app, false);
    let now = Utc::now();
    let lic = expiring(
        2,
        &all_but(&[]),
        now - Duration::days(1),
        now + Duration::days(29),
    );
    put_licence(&app, &file(&lic)).await.expect(200);
    let status = app.get("/api/v1/licence").await.expect(200).body;
    assert_eq!(status["state"], "soft_expired");
    assert!(status["since"].is_string());
    app.domain("Still works").await;
    app.post(
        "/api/v1/access-profiles",
        json!({ "name": "P", "domain_id": app.default_domain }),
    )
    .await
    .expect(201);
    // Soft expiry does not stop the start.
    check_at_startup(&app.store, &config(false).licence, Utc::now())
        .await
        .expect("starts");
});

on_both!(hard_expired_locks_every_write, |app: TestApp| async move {
    let app = with_config(app, false);
    let group = key_group(&app).await;
    let now = Utc::now();
    let lic = expiring(
        2,
        &all_but(&[]),
        now - Duration::days(10),
        now - Duration::days(1),
    );
    put_licence(&app, &file(&lic)).await.expect(200);
    let status = app.get("/api/v1/licence").await.expect(200).body;
    assert_eq!(status["state"], "hard_expired");
    assert_eq!(status["features"], json!([]));

    let r = app
        .post("/api/v1/keys", key_body(&app, group, "K-1", json!({})))
        .await;
    assert_problem(&r, 403, "licence-locked", "hard expiry");
    let r = app.post("/api/v1/domains", json!({ "name": "D" })).await;
    assert_problem(&r, 403, "licence-locked", "hard expiry");
    let r = app
        .patch(
            "/api/v1/system/settings",
            json!({ "hierarchical_administrators": true }),
        )
        .await;
    assert_problem(&r, 403, "licence-locked", "hard expiry");
    let r = app.delete(&format!("/api/v1/key-groups/{group}")).await;
    assert_problem(&r, 403, "licence-locked", "hard expiry");
    let r = app.post("/api/v1/tokens", json!({ "name": "more" })).await;
    assert_problem(&r, 403, "licence-locked", "hard expiry");
    // Reads still answer.
    app.get("/api/v1/keys").await.expect(200);
    app.get("/api/v1/system").await.expect(200);

    // The start-up check refuses, naming the system.
    let e = check_at_startup(&app.store, &config(false).licence, Utc::now())
        .await
        .expect_err("locked");
    assert!(e.to_string().contains(SYSTEM), "{e}");
    assert!(e.to_string().contains("hard expiry"), "{e}");

    // A newer licence unlocks.
    put_licence(&app, &file(&licence(3, &all_but(&[]))))
        .await
        .expect(200);
    app.post("/api/v1/keys", key_body(&app, group, "K-1", json!({})))
        .await
        .expect(201);
    check_at_startup(&app.store, &config(false).licence, Utc::now())
        .await
        .expect("starts again");
});

on_both!(enforce_without_licence_gates, |app: TestApp| async move {
    let app = with_config(app, true);
    let group = key_group(&app).await;
    let status = app.get("/api/v1/licence").await.expect(200).body;
    assert_eq!(status["state"], "missing");
    assert_eq!(status["enforce"], true);
    assert_eq!(status["open_mode"], false);
    assert_eq!(status["features"], json!([]));
    let r = app
        .post(
            "/api/v1/access-profiles",
            json!({ "name": "P", "domain_id": app.default_domain }),
        )
        .await;
    assert_feature_missing(&r, "access_profiles");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("no licence is installed")
    );
    let r = app.post("/api/v1/domains", json!({ "name": "D" })).await;
    assert_feature_missing(&r, "domains");
    let r = app
        .post(
            "/api/v1/cylinder-groups",
            json!({ "name": "G", "domain_id": app.default_domain }),
        )
        .await;
    assert_feature_missing(&r, "cylinder_groups");
    // Unlicensed kinds are not gated.
    app.post("/api/v1/keys", key_body(&app, group, "K-1", json!({})))
        .await
        .expect(201);
    // Without enforcement the same database is in open mode.
    let open = with_config(app, false);
    open.post("/api/v1/domains", json!({ "name": "D" }))
        .await
        .expect(201);
});

on_both!(
    stored_file_is_verified_on_every_read,
    |app: TestApp| async move {
        let app = with_config(app, false);
        put_licence(&app, &file(&licence(1, &all_but(&[]))))
            .await
            .expect(200);
        // The trusted key is removed from the configuration: the installed file no longer
        // verifies, so nothing licensed is available (and nothing reverts to open mode).
        let mut app = app;
        app.router = lockgate_api::router(AppState::new(app.store.clone(), ApiConfig::default()));
        let status = app.get("/api/v1/licence").await.expect(200).body;
        assert_eq!(status["state"], "invalid");
        assert_eq!(status["open_mode"], false);
        assert!(status["error"].as_str().unwrap().contains(TEST_KEY_ID));
        let r = app.post("/api/v1/domains", json!({ "name": "D" })).await;
        assert_feature_missing(&r, "domains");
        // A file written straight into the database is not trusted either.
        app.store
            .install_licence(
                app.system_id,
                &tamper(&file(&licence(9, &all_but(&[]))), "payload", 10),
                9,
                &Actor::system(),
            )
            .await
            .unwrap();
        let app = with_config(app, false);
        assert_eq!(
            app.get("/api/v1/licence").await.expect(200).body["state"],
            "invalid"
        );
        let r = app.post("/api/v1/domains", json!({ "name": "D" })).await;
        assert_feature_missing(&r, "domains");
    }
);

on_both!(licence_endpoints_documented, |app: TestApp| async move {
    let doc = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .expect(200)
        .body;
    let item = &doc["paths"]["/api/v1/licence"];
    assert!(item["get"]["operationId"].is_string(), "{item}");
    assert!(item["put"]["operationId"].is_string(), "{item}");
});

on_both!(
    licence_check_notifies_soft_expiry_weekly_and_hard_expiry_once,
    |app: TestApp| async move {
        let app = with_config(app, false);
        let now = Utc::now();
        let soft = now + Duration::days(10);
        let hard = now + Duration::days(40);
        put_licence(&app, &file(&expiring(9, &LicenceFeature::ALL, soft, hard)))
            .await
            .expect(200);
        let cfg = LicenceConfig {
            trusted_keys: trusted(),
            enforce: false,
        };
        let check = |at: DateTime<Utc>| {
            let (store, cfg) = (app.store.clone(), cfg.clone());
            async move {
                lockgate::background::check_licences(&store, &cfg, at)
                    .await
                    .expect("licence check")
            }
        };
        assert_eq!(check(now).await, 0, "valid: nothing to say");
        let after_soft = soft + Duration::days(1);
        assert_eq!(check(after_soft).await, 1, "soft-expired: one message");
        assert_eq!(
            check(after_soft + Duration::hours(1)).await,
            0,
            "once per ISO week"
        );
        assert_eq!(
            check(after_soft + Duration::days(7)).await,
            1,
            "and again next week"
        );
        let after_hard = hard + Duration::days(1);
        assert_eq!(check(after_hard).await, 1, "hard-expired: one message");
        assert_eq!(
            check(after_hard + Duration::days(8)).await,
            0,
            "only once per licence"
        );
        let topics = sqlx::query_scalar::<_, String>("SELECT topic FROM outbox ORDER BY id")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
        assert_eq!(
            topics,
            [
                "notify.licence_expiry",
                "notify.licence_expiry",
                "notify.licence_hard_expiry"
            ]
        );
    }
);
