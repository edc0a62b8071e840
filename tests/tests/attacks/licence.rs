//! The licence cannot be sidestepped: PIN validation and revalidation set through hand-out or
//! bulk validity need their features, and a clock set back does not revive an expired licence.

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use chrono::{Duration, Utc};
use lockgate_api::{
    ApiConfig, AppState,
    licence::{
        Licence, LicenceConfig, LicenceFeature, TrustedKeys, generate_key_pair_from_seed, sign,
    },
};
use lockgate_tests::{TestApp, attack::Tally};
use serde_json::json;

use crate::common::{DBS, on};

const SEED: [u8; 32] = [21; 32];
const KEY_ID: &str = "attack-2026";

fn enforcing(mut app: TestApp) -> TestApp {
    let (_, public) = generate_key_pair_from_seed(SEED);
    let config = ApiConfig {
        licence: LicenceConfig {
            trusted_keys: TrustedKeys::from_config([format!("{KEY_ID}:{public}")]).expect("key"),
            enforce: true,
        },
        ..ApiConfig::default()
    };
    app.router = lockgate_api::router(AppState::new(app.store.clone(), config));
    app
}

fn licence_without(missing: &[LicenceFeature], hard_in_days: i64) -> String {
    numbered_licence_without(7, missing, hard_in_days)
}

fn numbered_licence_without(number: u64, missing: &[LicenceFeature], hard_in_days: i64) -> String {
    let now = Utc::now();
    let lic = Licence {
        system_name: "Test site".to_owned(),
        number,
        issued_at: now - Duration::days(30),
        soft_expiry: Some(now + Duration::days(hard_in_days - 10)),
        hard_expiry: Some(now + Duration::days(hard_in_days)),
        features: LicenceFeature::ALL
            .into_iter()
            .filter(|f| !missing.contains(f))
            .collect(),
        max_keys: None,
        max_cylinders: None,
        key_id: KEY_ID.to_owned(),
    };
    sign(&lic, &generate_key_pair_from_seed(SEED).0, KEY_ID)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_licence_cannot_be_sidestepped() {
    for db in DBS {
        let app = enforcing(TestApp::new(db).await);
        let mut t = Tally::new(on("licence", db));
        let req = Request::builder()
            .method(Method::PUT)
            .uri("/api/v1/licence")
            .header(header::AUTHORIZATION, format!("Bearer {}", app.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(licence_without(
                &[LicenceFeature::PinValidation, LicenceFeature::Revalidation],
                100,
            )))
            .expect("request");
        app.send(req).await.expect(200);
        let group = app.key_group("Staff", "normal").await;
        let key = app
            .post("/api/v1/keys", json!({ "name": "K", "marking": "K-1", "type": "quartz", "generation": "2", "connect": true, "key_group_id": group, "domain_id": app.default_domain }))
            .await
            .expect(201)
            .id();
        let person = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "Lena", "surname": "Licence" }),
            )
            .await
            .expect(201)
            .id();
        for (what, validity) in [
            (
                "hand-out sets PIN validation",
                json!({ "pin": { "interval_minutes": 60 } }),
            ),
            (
                "hand-out sets revalidation",
                json!({ "revalidation": { "interval_hours": 24 } }),
            ),
        ] {
            let r = app
                .post(
                    &format!("/api/v1/keys/{key}/hand-out"),
                    json!({ "holder_id": person, "validity": validity }),
                )
                .await;
            t.status(what, r.status.as_u16(), &[403]);
        }
        for (what, validity) in [
            (
                "bulk validity sets PIN validation",
                json!({ "pin": { "interval_minutes": 60 } }),
            ),
            (
                "bulk validity sets revalidation",
                json!({ "revalidation": { "interval_hours": 24 } }),
            ),
        ] {
            let r = app
                .post(
                    "/api/v1/bulk/key-validity",
                    json!({ "ids": [key], "validity": validity }),
                )
                .await;
            t.status(what, r.status.as_u16(), &[403]);
        }
        let k = app.get(&format!("/api/v1/keys/{key}")).await.expect(200);
        assert!(
            k.body["validity"]["pin"].is_null() && k.body["holder_id"].is_null(),
            "nothing written: {}",
            k.body
        );
        // The gateway saw a time past the hard expiry; the clock is then set back.
        app.store
            .record_clock(app.system_id, Utc::now() + Duration::days(200))
            .await
            .expect("clock");
        let status = app.get("/api/v1/licence").await.expect(200);
        t.case(
            "a clock set back revives an expired licence",
            status.body["state"] == "hard_expired",
        );
        let r = app
            .post("/api/v1/domains", json!({ "name": "After expiry" }))
            .await;
        t.status(
            "licensed write after the hard expiry, clock set back",
            r.status.as_u16(),
            &[403],
        );
        // Plugins write through the gateway operations: they obey the same lock.
        let (_, public) = generate_key_pair_from_seed(SEED);
        let gw =
            lockgate::gateway::CoreGateway::new(app.store.clone()).with_licence(LicenceConfig {
                trusted_keys: TrustedKeys::from_config([format!("{KEY_ID}:{public}")])
                    .expect("key"),
                enforce: true,
            });
        let r = lockgate_host::Gateway::report_key_lost(&gw, "event-bridge", key as u64).await;
        let by_licence = |r: &Result<_, lockgate_host::types::PluginError>| matches!(r, Err(lockgate_host::types::PluginError::Unavailable(m)) if m.contains("licence"));
        t.case(
            "plugin reports a key lost after the hard expiry",
            by_licence(&r.map(|_| ())),
        );
        let r = lockgate_host::Gateway::request_key_update(&gw, "event-bridge", key as u64).await;
        t.case(
            "plugin requests a key update after the hard expiry",
            by_licence(&r.map(|_| ())),
        );
        let k = app.get(&format!("/api/v1/keys/{key}")).await.expect(200);
        assert_ne!(k.body["status"], "lost", "nothing written: {}", k.body);
        t.finish();
    }
}

/// A plugin's licence feature is judged for its locking system at every call, not once for
/// the union of all systems at start-up: a licence installed later takes effect at the next
/// call, one without the feature refuses it, and a manifest naming no real feature is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_licence_features_follow_the_system_licence_at_every_call() {
    use lockgate_host::Gateway as _;
    for db in DBS {
        let app = enforcing(TestApp::new(db).await);
        let mut t = Tally::new(on("plugin licence per call", db));
        let (_, public) = generate_key_pair_from_seed(SEED);
        let gw =
            lockgate::gateway::CoreGateway::new(app.store.clone()).with_licence(LicenceConfig {
                trusted_keys: TrustedKeys::from_config([format!("{KEY_ID}:{public}")])
                    .expect("key"),
                enforce: true,
            });
        let sync = "directory-sync";
        t.case(
            "plugin runs with no licence installed (enforced)",
            gw.licensed(sync, "ldap_integration").await.is_err(),
        );
        let install = |file: String| {
            Request::builder()
                .method(Method::PUT)
                .uri("/api/v1/licence")
                .header(header::AUTHORIZATION, format!("Bearer {}", app.token))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(file))
                .expect("request")
        };
        app.send(install(licence_without(
            &[LicenceFeature::LdapIntegration],
            100,
        )))
        .await
        .expect(200);
        t.case(
            "plugin runs with a licence lacking its feature",
            gw.licensed(sync, "ldap_integration").await.is_err(),
        );
        t.case(
            "manifest names a feature that does not exist",
            gw.licensed(sync, "everything").await.is_err(),
        );
        // The same gateway, no restart: the feature installed now is honoured now.
        app.send(install(numbered_licence_without(8, &[], 100)))
            .await
            .expect(200);
        assert!(
            gw.licensed(sync, "ldap_integration").await.is_ok(),
            "the installed feature is honoured at the next call"
        );
        // Past the hard expiry nothing runs, whatever the features.
        app.store
            .record_clock(app.system_id, Utc::now() + Duration::days(200))
            .await
            .expect("clock");
        t.case(
            "plugin runs after the hard expiry",
            gw.licensed(sync, "ldap_integration").await.is_err(),
        );
        t.finish();
    }
}
