//! Domains cannot be orphaned or hidden: the master sees and assigns every domain, including
//! one a sub-administrator created, and still does after that administrator's C-key is gone.

use axum::http::Method;
use lockgate_tests::{TestApp, attack::Tally};
use serde_json::json;

use crate::common::{DBS, on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_cannot_be_orphaned_or_hidden() {
    for db in DBS {
        let app = TestApp::new(db).await;
        let mut t = Tally::new(on("domains", db));
        let d = app.default_domain;
        let (sub, tok) = app
            .admin_with(
                "D1",
                json!({ "domain": "full", "cylinder": "full", "c_key": "view" }),
                &[d],
            )
            .await;
        let hidden = app
            .call(
                Method::POST,
                "/api/v1/domains",
                Some(&tok),
                Some(json!({ "name": "Hidden wing" })),
            )
            .await
            .expect(201)
            .id();
        app.call(Method::POST, "/api/v1/cylinders", Some(&tok),
                 Some(json!({ "name": "Hidden door", "marking": "H-1", "side_a": "electronic", "domain_id": hidden })))
            .await
            .expect(201);
        let (one, listed, cyl) = sees(&app, hidden).await;
        t.case(
            "domain created by a sub-administrator hidden from the master (GET)",
            one,
        );
        t.case(
            "domain created by a sub-administrator hidden from the master (search)",
            listed,
        );
        t.case("objects in it hidden from the master", cyl);
        // The master assigns it to another administrator.
        let (other, _) = app
            .admin_with("D2", json!({ "cylinder": "list" }), &[d])
            .await;
        let r = app
            .patch(
                &format!("/api/v1/c-keys/{other}"),
                json!({ "domain_ids": [d, hidden] }),
            )
            .await;
        t.case(
            "master cannot assign the sub-administrator's domain",
            r.status == 200,
        );
        // The sub-administrator's C-key goes: the domain stays the master's.
        app.delete(&format!("/api/v1/c-keys/{sub}"))
            .await
            .expect(204);
        let (one, listed, cyl) = sees(&app, hidden).await;
        t.case(
            "domain orphaned when its last administrator's C-key is deleted (GET)",
            one,
        );
        t.case(
            "domain orphaned when its last administrator's C-key is deleted (search)",
            listed,
        );
        t.case("objects orphaned with it", cyl);
        t.finish();
    }
}

/// Whether the master sees the domain (by GET and in search) and the objects in it.
async fn sees(app: &TestApp, hidden: i64) -> (bool, bool, bool) {
    let one = app
        .get(&format!("/api/v1/domains/{hidden}"))
        .await
        .status
        .as_u16();
    let list = app.get("/api/v1/domains?limit=100").await;
    let listed = list.body["items"]
        .as_array()
        .is_some_and(|a| a.iter().any(|i| i["id"] == hidden));
    let cyl = app.get("/api/v1/cylinders?q=Hidden").await;
    let cyl_listed = cyl.body["items"].as_array().is_some_and(|a| !a.is_empty());
    (one == 200, listed, cyl_listed)
}
