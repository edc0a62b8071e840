//! Shared set-up of the administration attacks: administrators with chosen rights, made
//! through the API exactly as a site would make them.

use lockgate_tests::{Db, TestApp};
use serde_json::{Value, json};

/// Both databases: the administration rules run in the store's transactions.
pub const DBS: [Db; 2] = [Db::Sqlite, Db::Postgres];

/// A label for a tally on one database.
pub fn on(class: &str, db: Db) -> String {
    format!(
        "{class} ({})",
        if db == Db::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    )
}

/// The rights of a junior administrator who manages C-keys and roles (and nothing above).
pub fn junior_rights() -> Value {
    json!({ "c_key": "full", "roles": "full", "domain": "full", "employee": "list" })
}

/// Id of the pre-defined role with this `predefined` name.
pub async fn predefined_role(app: &TestApp, name: &str) -> i64 {
    let roles = app
        .get("/api/v1/roles?limit=100&with_body=true")
        .await
        .expect(200);
    roles.body["items"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|r| r["body"]["predefined"] == name)
                .and_then(|r| r["id"].as_i64())
        })
        .unwrap_or_else(|| panic!("no pre-defined role {name}: {}", roles.body))
}

/// A normal C-key (not the master) holding the pre-defined super-administrator role.
pub async fn super_admin_c_key(app: &TestApp, marking: &str) -> i64 {
    let role = predefined_role(app, "super_administrator").await;
    let group = app.get("/api/v1/key-groups?type=normal_c_key").await.body["items"][0]["id"]
        .as_i64()
        .expect("a normal C-key group (made by admin_with)");
    app.post(
        "/api/v1/c-keys",
        json!({ "name": format!("Super {marking}"), "marking": marking, "kind": "normal",
                "key_group_id": group, "role_ids": [role], "domain_ids": [app.default_domain] }),
    )
    .await
    .expect(201)
    .id()
}
