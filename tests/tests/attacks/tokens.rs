//! Tokens never outgrow their issuer: rights and domains capped on every request, own tokens
//! need a permission and a bounded lifetime, no token outlives the one that minted it, and
//! only owners, issuers and the super administrator list and revoke them.

use axum::http::Method;
use chrono::{Duration, Utc};
use lockgate_tests::{TestApp, attack::Tally};
use serde_json::json;

use crate::common::{DBS, junior_rights, on, predefined_role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_outgrow_their_issuer() {
    for db in DBS {
        let app = TestApp::new(db).await;
        let mut t = Tally::new(on("tokens", db));
        let d = app.default_domain;
        let other_domain = app.domain("Plant B").await;
        // A junior administrator, and a weaker C-key they issue a token for.
        let (junior, junior_token) = app.admin_with("J1", junior_rights(), &[d]).await;
        let weak_role = app
            .post(
                "/api/v1/roles",
                json!({ "name": "weak", "permissions": { "employee": "list" } }),
            )
            .await
            .expect(201)
            .id();
        let group = app.get("/api/v1/key-groups?type=normal_c_key").await.body["items"][0]["id"]
            .as_i64()
            .expect("group");
        let x = app
            .post(
                "/api/v1/c-keys",
                json!({ "name": "X", "marking": "X1", "kind": "normal", "key_group_id": group,
                        "role_ids": [weak_role], "domain_ids": [d] }),
            )
            .await
            .expect(201)
            .id();
        let r = app
            .call(
                Method::POST,
                "/api/v1/tokens",
                Some(&junior_token),
                Some(json!({ "name": "for X", "c_key_id": x })),
            )
            .await
            .expect(201);
        let x_token = r.body["token"].as_str().expect("token").to_string();
        assert_eq!(r.body["info"]["issued_by"], junior, "{}", r.body);
        // The junior attaches the super-administrator role to X (no hierarchy setting).
        let sup = predefined_role(&app, "super_administrator").await;
        app.call(
            Method::PATCH,
            &format!("/api/v1/c-keys/{x}"),
            Some(&junior_token),
            Some(json!({ "role_ids": [sup] })),
        )
        .await
        .expect(200);
        // ... and adds a domain the junior does not administer (through the master).
        app.patch(
            &format!("/api/v1/c-keys/{x}"),
            json!({ "domain_ids": [d, other_domain] }),
        )
        .await
        .expect(200);
        let cyl = app
            .post("/api/v1/cylinders", json!({ "name": "Vault", "marking": "V-1", "side_a": "electronic", "domain_id": other_domain }))
            .await
            .expect(201)
            .id();
        let as_x = |m: Method, p: String, b: Option<serde_json::Value>| {
            let tok = x_token.clone();
            let app = &app;
            async move { app.call(m, &p, Some(&tok), b).await.status.as_u16() }
        };
        t.status(
            "token carries a role attached after issue: read system settings",
            as_x(Method::GET, "/api/v1/system".into(), None).await,
            &[403],
        );
        t.status(
            "token carries a role attached after issue: switch settings",
            as_x(
                Method::PATCH,
                "/api/v1/system/settings".into(),
                Some(json!({ "messaging_language": "de" })),
            )
            .await,
            &[403],
        );
        t.status(
            "token carries a domain added after issue",
            as_x(Method::GET, format!("/api/v1/cylinders/{cyl}"), None).await,
            &[403, 404],
        );
        t.status(
            "capped token mints an uncapped token for its own C-key",
            as_x(
                Method::POST,
                "/api/v1/tokens".into(),
                Some(json!({ "name": "escape" })),
            )
            .await,
            &[403],
        );
        t.status(
            "capped token lists every token as a super administrator",
            {
                let r = app
                    .call(Method::GET, "/api/v1/tokens", Some(&x_token), None)
                    .await;
                let all = r.body["items"].as_array().map_or(0, Vec::len);
                if r.status == 200 && all > 1 { 200 } else { 403 }
            },
            &[403],
        );
        // The issuer loses its rights: the token follows at once.
        app.patch(
            &format!("/api/v1/c-keys/{junior}"),
            json!({ "blocked": true }),
        )
        .await
        .expect(200);
        t.status(
            "token of a blocked issuer",
            as_x(Method::GET, "/api/v1/c-keys".into(), None).await,
            &[401, 403],
        );
        app.patch(
            &format!("/api/v1/c-keys/{junior}"),
            json!({ "blocked": false }),
        )
        .await
        .expect(200);

        // Own tokens need the api_tokens permission.
        let (_k, key_admin) = app
            .admin_with("K1", json!({ "key": "full", "cylinder": "list" }), &[d])
            .await;
        t.status(
            "own token without the api_tokens permission",
            app.call(
                Method::POST,
                "/api/v1/tokens",
                Some(&key_admin),
                Some(json!({ "name": "mine" })),
            )
            .await
            .status
            .as_u16(),
            &[403],
        );
        // Lifetimes: bounded, and never beyond the minting token.
        let far = (Utc::now() + Duration::days(3650)).to_rfc3339();
        t.status(
            "own token for ten years",
            app.call(
                Method::POST,
                "/api/v1/tokens",
                Some(&app.token),
                Some(json!({ "name": "forever", "expires_at": far })),
            )
            .await
            .status
            .as_u16(),
            &[422],
        );
        let soon = (Utc::now() + Duration::days(1)).to_rfc3339();
        let short = app
            .post(
                "/api/v1/tokens",
                json!({ "name": "short", "expires_at": soon }),
            )
            .await
            .expect(201)
            .body["token"]
            .as_str()
            .expect("token")
            .to_string();
        let later = (Utc::now() + Duration::days(30)).to_rfc3339();
        t.status(
            "token minted to outlive its minting token",
            app.call(
                Method::POST,
                "/api/v1/tokens",
                Some(&short),
                Some(json!({ "name": "longer", "expires_at": later })),
            )
            .await
            .status
            .as_u16(),
            &[422],
        );
        let r = app
            .call(
                Method::POST,
                "/api/v1/tokens",
                Some(&short),
                Some(json!({ "name": "default" })),
            )
            .await
            .expect(201);
        let exp = r.body["info"]["expires_at"]
            .as_str()
            .expect("an expiry")
            .to_string();
        t.case(
            "token minted without an expiry outlives its minting token",
            chrono::DateTime::parse_from_rfc3339(&exp).expect("rfc3339")
                <= chrono::DateTime::parse_from_rfc3339(&soon).expect("rfc3339"),
        );
        // Listing and revoking: owners, issuers and the super administrator only.
        let (_c, ck_admin) = app
            .admin_with("C1", json!({ "c_key": "full", "roles": "view" }), &[d])
            .await;
        let listed = app
            .call(Method::GET, "/api/v1/tokens", Some(&ck_admin), None)
            .await
            .expect(200);
        let foreign = listed.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|i| i["c_key_id"] != listed.body["items"][0]["c_key_id"])
            .count();
        t.case("C-key administrator lists others' tokens", foreign == 0);
        let master_tokens = app.get("/api/v1/tokens").await.expect(200);
        let bootstrap = master_tokens.body["items"][0]["id"]
            .as_i64()
            .expect("bootstrap token");
        t.status(
            "C-key administrator revokes the master's token",
            app.call(
                Method::DELETE,
                &format!("/api/v1/tokens/{bootstrap}"),
                Some(&ck_admin),
                None,
            )
            .await
            .status
            .as_u16(),
            &[403, 404],
        );
        // Controls: the super administrator sees every token and revokes X's.
        let all = master_tokens.body["items"].as_array().map_or(0, Vec::len);
        assert!(
            all >= 5,
            "the super administrator lists every token: {}",
            master_tokens.body
        );
        t.finish();
    }
}
