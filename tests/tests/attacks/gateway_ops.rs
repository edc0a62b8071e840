//! Gateway-wide operations need a gateway-wide right: plugins and dead letters span every
//! locking system, so only a super administrator of the operator system acts on them, never
//! an administrator holding system settings at Full in some system.

use axum::http::Method;
use lockgate_tests::{TestApp, attack::Tally, fixed};
use serde_json::json;

use crate::common::{DBS, on};

const GATEWAY_WIDE: [(&str, &str); 5] = [
    ("POST", "/api/v1/plugins/event-bridge/enable"),
    ("POST", "/api/v1/plugins/event-bridge/disable"),
    ("POST", "/api/v1/plugins/event-bridge/reload"),
    ("GET", "/api/v1/background/dead-letters"),
    ("POST", "/api/v1/background/dead-letters/1/requeue"),
];

fn method(m: &str) -> Method {
    if m == "GET" {
        Method::GET
    } else {
        Method::POST
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_wide_operations_need_the_operator() {
    for db in DBS {
        let app = TestApp::new(db).await;
        let mut t = Tally::new(on("gateway-wide operations", db));
        let (_s, settings_admin) = app
            .admin_with(
                "G1",
                json!({ "system_settings": "full" }),
                &[app.default_domain],
            )
            .await;
        let body = Some(json!({ "source": "queue" }));
        for (m, p) in GATEWAY_WIDE {
            let r = app
                .call(method(m), p, Some(&settings_admin), body.clone())
                .await;
            t.status(
                format!("{m} {p} with system settings at Full"),
                r.status.as_u16(),
                &[403],
            );
        }
        // A second locking system on the same gateway: its super administrator is not the
        // operator, and with two systems and no operator system configured neither is the first's.
        let other = app
            .store
            .init_system("Other site", fixed(true))
            .await
            .expect("second system");
        for (m, p) in GATEWAY_WIDE {
            let r = app
                .call(method(m), p, Some(&other.token), body.clone())
                .await;
            t.status(
                format!("{m} {p} by another system's super administrator"),
                r.status.as_u16(),
                &[403],
            );
            let r = app.call(method(m), p, Some(&app.token), body.clone()).await;
            t.status(
                format!("{m} {p} by a super administrator with no operator system configured"),
                r.status.as_u16(),
                &[403],
            );
        }
        t.finish();
    }
}
