//! Settings PATCH is version-checked: concurrent patches of different settings both land (none
//! silently reverts the other), a stale `If-Match` is refused, and the hierarchy switch stays
//! the super administrator's while others patch.

use axum::body::Body;
use axum::http::{Method, Request, header};
use lockgate_tests::{TestApp, attack::Tally};
use serde_json::json;

use crate::common::{DBS, on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_settings_patches_never_revert_each_other() {
    for db in DBS {
        let app = TestApp::new(db).await;
        let mut t = Tally::new(on("settings races", db));
        let (_a, other) = app
            .admin_with(
                "S1",
                json!({ "system_settings": "full" }),
                &[app.default_domain],
            )
            .await;
        for round in 0..8 {
            let lang = if round % 2 == 0 { "de" } else { "fr" };
            let flex = round % 2 == 0;
            let (a, b) = tokio::join!(
                app.call(
                    Method::PATCH,
                    "/api/v1/system/settings",
                    Some(&app.token),
                    Some(json!({ "messaging_language": lang }))
                ),
                app.call(
                    Method::PATCH,
                    "/api/v1/system/settings",
                    Some(&other),
                    Some(json!({ "flexible_revalidation": flex }))
                ),
            );
            assert_eq!(
                (a.status.as_u16(), b.status.as_u16()),
                (200, 200),
                "{} {}",
                a.body,
                b.body
            );
            let now = app.get("/api/v1/system").await.expect(200);
            let s = &now.body["settings"];
            t.case(
                format!("round {round}: a concurrent patch reverted another"),
                s["messaging_language"] == lang && s["flexible_revalidation"] == flex,
            );
        }
        // A stale If-Match is refused, not merged.
        let v = app.get("/api/v1/system").await.body["version"]
            .as_i64()
            .expect("version");
        app.patch(
            "/api/v1/system/settings",
            json!({ "messaging_language": "sv" }),
        )
        .await
        .expect(200);
        let req = Request::builder()
            .method(Method::PATCH)
            .uri("/api/v1/system/settings")
            .header(header::AUTHORIZATION, format!("Bearer {}", app.token))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::IF_MATCH, format!("\"{v}\""))
            .body(Body::from(
                json!({ "messaging_language": "en" }).to_string(),
            ))
            .expect("request");
        let r = app.send(req).await;
        t.status(
            "stale If-Match overwrites a newer version",
            r.status.as_u16(),
            &[409, 412],
        );
        // The hierarchy switch stays the super administrator's.
        let r = app
            .call(
                Method::PATCH,
                "/api/v1/system/settings",
                Some(&other),
                Some(json!({ "hierarchical_administrators": true })),
            )
            .await;
        t.status(
            "non-super administrator switches the hierarchy",
            r.status.as_u16(),
            &[403],
        );
        t.finish();
    }
}
