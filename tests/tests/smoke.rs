//! Smoke test of the harness and the basic flow on both databases.

use lockgate_tests::*;
use serde_json::json;

on_both!(
    create_read_patch_delete_employee,
    |app: TestApp| async move {
        let created = app
            .post(
                "/api/v1/employees",
                json!({ "first_name": "Anna", "surname": "Berg", "identifier": "E1" }),
            )
            .await
            .expect(201);
        let id = created.id();
        assert_eq!(created.headers["etag"], "\"1\"");
        let got = app
            .get(&format!("/api/v1/employees/{id}"))
            .await
            .expect(200);
        assert_eq!(got.body["surname"], "Berg");
        let patched = app
            .patch(
                &format!("/api/v1/employees/{id}"),
                json!({ "email": "anna@example.com" }),
            )
            .await
            .expect(200);
        assert_eq!(patched.body["version"], 2);
        assert_eq!(patched.body["first_name"], "Anna");
        let events = app
            .get(&format!("/api/v1/employees/{id}/events"))
            .await
            .expect(200);
        let actions: Vec<_> = events.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["action"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(actions, ["updated", "created"]);
        assert_eq!(
            events.body["items"][0]["changes"]["email"]["to"],
            "anna@example.com"
        );
        app.delete(&format!("/api/v1/employees/{id}"))
            .await
            .expect(204);
        app.get(&format!("/api/v1/employees/{id}"))
            .await
            .expect(404);
    }
);
