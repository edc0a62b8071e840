//! No administrator acts on a more powerful one, with or without the hierarchy setting: the
//! master is changed only by the master, a C-key holding rights or domains the administrator
//! lacks is neither blocked, re-roled, changed nor deleted, and nobody grants their own C-key
//! capabilities or a kind.

use axum::http::Method;
use lockgate_tests::{TestApp, attack::Tally};
use serde_json::{Value, json};

use crate::common::{DBS, junior_rights, on, super_admin_c_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_administrator_acts_on_a_more_powerful_one() {
    for db in DBS {
        for hierarchy in [false, true] {
            let app = TestApp::new(db).await;
            let class = on(&format!("c-key targets, hierarchy {hierarchy}"), db);
            let mut t = Tally::new(class);
            let d = app.default_domain;
            let b = app.domain("Plant B").await;
            let (junior, tok) = app.admin_with("J1", junior_rights(), &[d]).await;
            let sup = super_admin_c_key(&app, "S1").await;
            let (peer_other_domain, _) = app
                .admin_with("P1", json!({ "employee": "list" }), &[d, b])
                .await;
            app.patch(
                "/api/v1/system/settings",
                json!({ "hierarchical_administrators": hierarchy }),
            )
            .await
            .expect(200);
            let master = app.master_c_key_id;
            let call = |m: Method, p: String, body: Option<Value>| {
                let tok = tok.clone();
                let app = &app;
                async move { app.call(m, &p, Some(&tok), body).await.status.as_u16() }
            };
            let refused = &[403, 404];
            for (target, who) in [
                (master, "master"),
                (sup, "super administrator"),
                (peer_other_domain, "administrator of another domain"),
            ] {
                let path = format!("/api/v1/c-keys/{target}");
                for (what, patch) in [
                    ("block", json!({ "blocked": true })),
                    ("un-role", json!({ "role_ids": [] })),
                    (
                        "re-role",
                        json!({ "role_ids": [app.get(&format!("/api/v1/c-keys/{junior}")).await.body["role_ids"][0]] }),
                    ),
                    (
                        "change capabilities",
                        json!({ "capabilities": { "cylinder_reprogramming": true } }),
                    ),
                    ("rename", json!({ "name": "pwned" })),
                    ("report lost", json!({ "status": "lost" })),
                ] {
                    t.status(
                        format!("{what} the {who}"),
                        call(Method::PATCH, path.clone(), Some(patch)).await,
                        refused,
                    );
                }
                t.status(
                    format!("delete the {who}"),
                    call(Method::DELETE, path.clone(), None).await,
                    refused,
                );
                t.status(
                    format!("issue a token for the {who}"),
                    call(
                        Method::POST,
                        "/api/v1/tokens".into(),
                        Some(json!({ "name": "x", "c_key_id": target })),
                    )
                    .await,
                    refused,
                );
            }
            let own = format!("/api/v1/c-keys/{junior}");
            for (what, patch) in [
                (
                    "grant own C-key cylinder reprogramming",
                    json!({ "capabilities": { "cylinder_reprogramming": true } }),
                ),
                (
                    "grant own C-key group programming",
                    json!({ "capabilities": { "cylinder_group_programming": true } }),
                ),
                (
                    "make own C-key a sub-master",
                    json!({ "kind": "sub_master" }),
                ),
            ] {
                t.status(
                    what,
                    call(Method::PATCH, own.clone(), Some(patch)).await,
                    refused,
                );
            }
            // The master still changes everything, and the junior a weaker C-key.
            app.patch(&format!("/api/v1/c-keys/{sup}"), json!({ "blocked": true }))
                .await
                .expect(200);
            let (weak, _) = app
                .admin_with("W1", json!({ "employee": "list" }), &[d])
                .await;
            assert_eq!(
                call(
                    Method::PATCH,
                    format!("/api/v1/c-keys/{weak}"),
                    Some(json!({ "blocked": true }))
                )
                .await,
                200
            );
            // Nothing of the refused attempts was written.
            let m = app
                .get(&format!("/api/v1/c-keys/{master}"))
                .await
                .expect(200);
            assert_eq!(m.body["blocked"], false, "{}", m.body);
            t.finish();
        }
    }
}
