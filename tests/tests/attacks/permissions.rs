//! Every permission of the model is enforced: an administrator without the function is
//! refused on its endpoint or field (automatic audit trail, firmware, statistics, system
//! status, maintenance, receipt templates), and a system locked for maintenance takes no change.

use axum::http::Method;
use lockgate_store::Actor;
use lockgate_tests::{TestApp, attack::Tally};
use serde_json::{Value, json};

use crate::common::{DBS, on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_permission_is_enforced() {
    for db in DBS {
        let app = TestApp::new(db).await;
        let mut t = Tally::new(on("unenforced permissions", db));
        let d = app.default_domain;
        // Broad rights, but none of the functions under test.
        let broad = json!({
            "c_key": "full", "remote_pds": "full", "key": "full", "cylinder": "full",
            "employee": "full", "visitor": "full", "key_authorisation": "full",
            "key_hand_in_out": "full", "system_settings": "full",
        });
        let (_b, tok) = app.admin_with("B1", broad, &[d]).await;
        let (weak, _) = app
            .admin_with("W1", json!({ "employee": "list" }), &[d])
            .await;
        let pd = app
            .post(
                "/api/v1/remote-pds",
                json!({ "name": "Wall 1", "marking": "PD-1", "type": "wall_gen2" }),
            )
            .await
            .expect(201)
            .id();
        let group = app.key_group("Staff", "normal").await;
        let key = app
            .post("/api/v1/keys", json!({ "name": "K", "marking": "K-1", "type": "quartz", "generation": "2", "connect": true, "key_group_id": group, "domain_id": d }))
            .await
            .expect(201)
            .id();
        let person = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "Rita", "surname": "Receipt" }),
            )
            .await
            .expect(201)
            .id();
        app.post(
            &format!("/api/v1/keys/{key}/hand-out"),
            json!({ "holder_id": person }),
        )
        .await
        .expect(200);
        let call = |m: Method, p: String, b: Option<Value>| {
            let tok = tok.clone();
            let app = &app;
            async move { app.call(m, &p, Some(&tok), b).await.status.as_u16() }
        };
        let from = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        for (what, m, p, b) in [
            (
                "switch automatic audit-trail retrieval without its permission",
                Method::PATCH,
                format!("/api/v1/c-keys/{weak}"),
                Some(json!({ "capabilities": { "automatic_audit_trail": true } })),
            ),
            (
                "switch a PD to key updater mode without the firmware permission",
                Method::PATCH,
                format!("/api/v1/remote-pds/{pd}"),
                Some(json!({ "settings": { "key_updater_mode": true } })),
            ),
            (
                "read statistics without the statistics permission",
                Method::GET,
                "/api/v1/statistics".into(),
                None,
            ),
            (
                "read system status without its permission",
                Method::GET,
                "/api/v1/system/status".into(),
                None,
            ),
            (
                "lock the system for maintenance without the maintenance permission",
                Method::PUT,
                "/api/v1/system/maintenance".into(),
                Some(json!({ "from": from })),
            ),
            (
                "unlock maintenance without the maintenance permission",
                Method::DELETE,
                "/api/v1/system/maintenance".into(),
                None,
            ),
            (
                "print a hand-out receipt without the receipt-templates permission",
                Method::GET,
                format!("/api/v1/keys/{key}/receipt"),
                None,
            ),
        ] {
            t.status(what, call(m, p, b).await, &[403]);
        }
        // A system locked for maintenance takes no change but the unlock.
        let sys = app.store.system(app.system_id).await.expect("system");
        app.store
            .set_maintenance(
                &sys,
                &Actor::system(),
                Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
            )
            .await
            .expect("lock");
        let r = app.post("/api/v1/cylinders", json!({ "name": "During", "marking": "M-1", "side_a": "electronic", "domain_id": d })).await;
        t.status(
            "create a cylinder while locked for maintenance",
            r.status.as_u16(),
            &[423],
        );
        let r = app
            .patch(&format!("/api/v1/keys/{key}"), json!({ "name": "renamed" }))
            .await;
        t.status(
            "change a key while locked for maintenance",
            r.status.as_u16(),
            &[423],
        );
        app.get("/api/v1/keys").await.expect(200);
        app.delete("/api/v1/system/maintenance").await.expect(200);
        app.post(
            "/api/v1/cylinders",
            json!({ "name": "After", "marking": "M-2", "side_a": "electronic", "domain_id": d }),
        )
        .await
        .expect(201);
        t.finish();
    }
}
