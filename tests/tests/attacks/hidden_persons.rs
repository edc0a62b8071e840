//! Deactivated and deleted persons stay hidden from administrators without the
//! key-holder-deactivate permission: not by GET, not by search on their status, not by events.

use axum::http::Method;
use lockgate_tests::{TestApp, attack::Tally};
use serde_json::json;

use crate::common::{DBS, on};

/// Try every way of reading the hidden person `id` (in state `who`) as the holder of `tok`.
async fn try_reads(app: &TestApp, tok: &str, t: &mut Tally, who: &str, id: i64) {
    let r = app
        .call(
            Method::GET,
            &format!("/api/v1/employees/{id}"),
            Some(tok),
            None,
        )
        .await;
    t.status(
        format!("GET a {who} person"),
        r.status.as_u16(),
        &[403, 404],
    );
    let r = app
        .call(
            Method::GET,
            &format!("/api/v1/employees/{id}/events"),
            Some(tok),
            None,
        )
        .await;
    t.status(
        format!("events of a {who} person"),
        r.status.as_u16(),
        &[403, 404],
    );
    let r = app
        .call(
            Method::GET,
            &format!("/api/v1/employees?status={who}"),
            Some(tok),
            None,
        )
        .await;
    t.status(format!("search status={who}"), r.status.as_u16(), &[403]);
    let r = app
        .call(
            Method::GET,
            "/api/v1/employees?q=Person&with_body=true",
            Some(tok),
            None,
        )
        .await;
    let leaked = r.body["items"]
        .as_array()
        .is_some_and(|a| a.iter().any(|i| i["id"] == id));
    t.case(format!("default search returns a {who} person"), !leaked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivated_and_deleted_persons_stay_hidden() {
    for db in DBS {
        let app = TestApp::new(db).await;
        let mut t = Tally::new(on("hidden persons", db));
        let (_r, tok) = app
            .admin_with(
                "R1",
                json!({ "employee": "full", "visitor": "full" }),
                &[app.default_domain],
            )
            .await;
        let person = |first: &'static str| {
            let app = &app;
            async move {
                app.post("/api/v1/employees", json!({ "first_name": first, "surname": "Person", "email": format!("{first}@example.org") }))
                    .await
                    .expect(201)
                    .id()
            }
        };
        // Deactivation exists while persons are deleted permanently (the default).
        let away = person("Away").await;
        app.post(&format!("/api/v1/employees/{away}/deactivate"), json!({}))
            .await
            .expect(200);
        try_reads(&app, &tok, &mut t, "deactivated", away).await;
        app.get(&format!("/api/v1/employees/{away}"))
            .await
            .expect(200);
        app.post(&format!("/api/v1/employees/{away}/reactivate"), json!({}))
            .await
            .expect(200);
        // Marking as deleted, under the other deletion setting.
        app.patch(
            "/api/v1/system/settings",
            json!({ "person_deletion": "mark_as_deleted" }),
        )
        .await
        .expect(200);
        let gone = person("Gone").await;
        app.delete(&format!("/api/v1/employees/{gone}"))
            .await
            .expect(204);
        try_reads(&app, &tok, &mut t, "deleted", gone).await;
        // The master (holding the permission) still sees them.
        app.get(&format!("/api/v1/employees/{gone}"))
            .await
            .expect(200);
        app.get("/api/v1/employees?status=deleted")
            .await
            .expect(200);
        t.finish();
    }
}
