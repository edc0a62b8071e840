//! SCIM 2.0 provisioning end to end (docs/connectors/scim.md): users become employees and
//! groups tags, filters, sorting, paging, PATCH, ETags, the token's purpose and role, SCIM
//! error bodies with nothing written, and the external conformance checker `scim2-tester`
//! (pip, `tests/peers/scim`) run against a listening gateway.

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use lockgate_tests::*;
use serde_json::{Value, json};

const BASE: &str = "https://lockgate.test";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A SCIM request with the provisioning token and optional extra headers.
async fn scim(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Resp {
    app.scim_call(token, method, path, body.as_ref(), headers)
        .await
}

fn user(name: &str, given: &str, family: &str, number: &str) -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "userName": name,
        "externalId": format!("ext-{name}"),
        "name": { "givenName": given, "familyName": family, "honorificPrefix": "Dr." },
        "title": "Engineer",
        "preferredLanguage": "de-CH",
        "active": true,
        "emails": [
            { "value": format!("{name}@home.example"), "type": "home" },
            { "value": format!("{name}@corp.example"), "type": "work", "primary": true }
        ],
        "phoneNumbers": [
            { "value": "+41 44 000 00 00", "type": "work" },
            { "value": "+41 79 000 00 00", "type": "mobile" }
        ],
        "addresses": [{ "streetAddress": "Bahnhofstrasse 1", "locality": "Zürich", "postalCode": "8001", "country": "CH", "type": "work", "primary": true }],
        ENTERPRISE: { "employeeNumber": number, "department": "R&D", "organization": "ACME", "manager": { "value": "someone" } }
    })
}

/// The employee with this identifier as the REST API shows it (its body with `id` and
/// `status`), or null.
async fn employee(app: &TestApp, identifier: &str) -> Value {
    let r = app
        .get(&format!(
            "/api/v1/employees?q={identifier}&with_body=true&include_hidden=true"
        ))
        .await
        .expect(200);
    let Some(item) = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["body"]["identifier"] == identifier)
        .cloned()
    else {
        return Value::Null;
    };
    let mut b = item["body"].clone();
    b["id"] = item["id"].clone();
    b["status"] = item["status"].clone();
    b
}

/// Every employee, hidden ones included, as the REST API lists them.
async fn employees(app: &TestApp) -> Value {
    app.get("/api/v1/employees?include_hidden=true&limit=1000&with_body=true")
        .await
        .expect(200)
        .body["items"]
        .clone()
}

on_both!(
    users_become_read_only_employees,
    |app: TestApp| async move {
        let app = app.with_scim(BASE);
        let (_, token) = app.scim_client("SCIM1").await;
        let r = scim(
            &app,
            &token,
            Method::POST,
            "/scim/v2/Users",
            Some(user("ada", "Ada", "Lovelace", "E-100")),
            &[],
        )
        .await
        .expect(201);
        let id = r.body["id"].as_str().expect("id").to_string();
        assert_eq!(
            r.body["meta"]["location"],
            format!("{BASE}/scim/v2/Users/{id}")
        );
        assert_eq!(
            r.headers[header::LOCATION],
            format!("{BASE}/scim/v2/Users/{id}").as_str()
        );
        assert_eq!(r.headers[header::ETAG], "W/\"1\"");
        assert_eq!(r.body["meta"]["version"], "W/\"1\"");
        assert_eq!(
            r.body[ENTERPRISE]["manager"]["value"], "someone",
            "kept as written"
        );
        let e = employee(&app, "E-100").await;
        assert_eq!(e["first_name"], "Ada");
        assert_eq!(e["surname"], "Lovelace");
        assert_eq!(e["title"], "Dr.");
        assert_eq!(e["job"], "Engineer");
        assert_eq!(e["email"], "ada@corp.example", "the primary address");
        assert_eq!(e["phone"], "+41 44 000 00 00");
        assert_eq!(e["mobile_phone"], "+41 79 000 00 00");
        assert_eq!(e["department"], "R&D");
        assert_eq!(e["organisation"], "ACME");
        assert_eq!(e["city"], "Zürich");
        assert_eq!(e["language"], "de-CH");
        assert_eq!(e["synced_from"], "scim");
        let pid = e["id"].as_i64().expect("employee id");
        // Read-only elsewhere, like directory-synced persons: fields refused, tags allowed.
        app.patch(
            &format!("/api/v1/employees/{pid}"),
            json!({ "first_name": "Eve" }),
        )
        .await
        .expect(422);
        app.patch(
            &format!("/api/v1/employees/{pid}"),
            json!({ "tags": ["local"] }),
        )
        .await
        .expect(200);
        assert_ne!(
            app.delete(&format!("/api/v1/employees/{pid}"))
                .await
                .status
                .as_u16(),
            204
        );
        // A read returns exactly what was written (plus id and meta).
        let got = scim(
            &app,
            &token,
            Method::GET,
            &format!("/scim/v2/Users/{id}"),
            None,
            &[],
        )
        .await
        .expect(200);
        let mut written = user("ada", "Ada", "Lovelace", "E-100");
        written["id"] = json!(id);
        written["meta"] = got.body["meta"].clone();
        assert_eq!(got.body, written);
        // PUT replaces: the employee follows.
        let mut changed = user("ada", "Ada", "King", "E-100");
        changed["emails"] = json!([{ "value": "ada.king@corp.example", "type": "work" }]);
        scim(
            &app,
            &token,
            Method::PUT,
            &format!("/scim/v2/Users/{id}"),
            Some(changed),
            &[],
        )
        .await
        .expect(200);
        let e = employee(&app, "E-100").await;
        assert_eq!(e["surname"], "King");
        assert_eq!(e["email"], "ada.king@corp.example");
        assert_eq!(e["tags"], json!(["local"]), "tags stay lockgate's");
        // DELETE: gone for SCIM, the employee deleted as the system says (permanently here).
        scim(
            &app,
            &token,
            Method::DELETE,
            &format!("/scim/v2/Users/{id}"),
            None,
            &[],
        )
        .await
        .expect(204);
        scim(
            &app,
            &token,
            Method::GET,
            &format!("/scim/v2/Users/{id}"),
            None,
            &[],
        )
        .await
        .expect(404);
        scim(
            &app,
            &token,
            Method::DELETE,
            &format!("/scim/v2/Users/{id}"),
            None,
            &[],
        )
        .await
        .expect(404);
        assert_eq!(employee(&app, "E-100").await, Value::Null);
    }
);

/// Ids of a list response's resources, by userName.
fn names(r: &Resp) -> Vec<String> {
    r.body["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .map(|u| u["userName"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn list(app: &TestApp, token: &str, query: &str) -> Resp {
    scim(
        app,
        token,
        Method::GET,
        &format!("/scim/v2/Users?{query}"),
        None,
        &[],
    )
    .await
}

fn q(filter: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("filter", filter)
        .append_pair("sortBy", "userName")
        .finish()
}

on_both!(filters_sorting_and_paging, |app: TestApp| async move {
    let app = app.with_scim(BASE);
    let (_, token) = app.scim_client("SCIM2").await;
    for (n, g, f, num) in [
        ("alice", "Alice", "Adams", "E-1"),
        ("bob", "Bob", "Brown", "E-2"),
        ("carol", "Carol", "Clark", "E-3"),
        ("dave", "Dave", "Dunn", "E-4"),
        ("erin", "Erin", "Evans", "E-5"),
    ] {
        let mut u = user(n, g, f, num);
        if n == "bob" {
            u.as_object_mut().expect("object").remove("title");
        }
        if n == "erin" {
            u["active"] = json!(false);
        }
        scim(&app, &token, Method::POST, "/scim/v2/Users", Some(u), &[])
            .await
            .expect(201);
    }
    for (filter, expected) in [
        (r#"userName eq "CAROL""#, vec!["carol"]),
        (
            r#"userName ne "carol""#,
            vec!["alice", "bob", "dave", "erin"],
        ),
        (r#"name.familyName co "a""#, vec!["alice", "carol", "erin"]),
        (r#"userName sw "a""#, vec!["alice"]),
        (r#"userName ew "e""#, vec!["alice", "dave"]),
        (r#"title pr"#, vec!["alice", "carol", "dave", "erin"]),
        (r#"userName gt "carol""#, vec!["dave", "erin"]),
        (r#"userName ge "carol""#, vec!["carol", "dave", "erin"]),
        (r#"userName lt "bob""#, vec!["alice"]),
        (r#"userName le "bob""#, vec!["alice", "bob"]),
        (
            r#"userName sw "a" or userName sw "d""#,
            vec!["alice", "dave"],
        ),
        (
            r#"title pr and not (userName eq "alice")"#,
            vec!["carol", "dave", "erin"],
        ),
        (r#"active eq false"#, vec!["erin"]),
        (r#"emails[type eq "work" and value co "bob@"]"#, vec!["bob"]),
        (
            r#"emails.value ew "@home.example" and userName eq "dave""#,
            vec!["dave"],
        ),
        (
            &format!("{ENTERPRISE}:employeeNumber eq \"E-4\""),
            vec!["dave"],
        ),
        (
            r#"meta.created gt "2000-01-01T00:00:00Z" and userName lt "b""#,
            vec!["alice"],
        ),
    ] {
        let r = list(&app, &token, &q(filter)).await.expect(200);
        assert_eq!(names(&r), expected, "filter {filter}");
        assert_eq!(r.body["totalResults"], expected.len(), "filter {filter}");
    }
    // Sorting, both ways, and paging: startIndex is 1-based, totals count every match.
    let r = list(&app, &token, "sortBy=name.familyName&sortOrder=descending")
        .await
        .expect(200);
    assert_eq!(names(&r), ["erin", "dave", "carol", "bob", "alice"]);
    let r = list(&app, &token, "sortBy=userName&startIndex=2&count=2")
        .await
        .expect(200);
    assert_eq!(names(&r), ["bob", "carol"]);
    assert_eq!(r.body["totalResults"], 5);
    assert_eq!(r.body["startIndex"], 2);
    assert_eq!(r.body["itemsPerPage"], 2);
    let r = list(&app, &token, "sortBy=userName&startIndex=5&count=10")
        .await
        .expect(200);
    assert_eq!(names(&r), ["erin"]);
    let r = list(&app, &token, "count=0").await.expect(200);
    assert_eq!(r.body["totalResults"], 5);
    assert_eq!(r.body["Resources"], json!([]));
    // attributes / excludedAttributes.
    let r = list(&app, &token, "sortBy=userName&count=1&attributes=userName")
        .await
        .expect(200);
    let first = &r.body["Resources"][0];
    assert_eq!(first["userName"], "alice");
    assert!(first.get("id").is_some(), "id is always returned");
    assert!(first.get("name").is_none(), "{first}");
    let r = list(
        &app,
        &token,
        "sortBy=userName&count=1&excludedAttributes=emails,name",
    )
    .await
    .expect(200);
    let first = &r.body["Resources"][0];
    assert!(
        first.get("emails").is_none()
            && first.get("name").is_none()
            && first.get("title").is_some(),
        "{first}"
    );
    // POST /.search takes the same.
    let r = scim(&app, &token, Method::POST, "/scim/v2/Users/.search", Some(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "userName sw \"d\" or userName sw \"e\"", "sortBy": "userName", "sortOrder": "descending", "attributes": ["userName"]
    })), &[]).await.expect(200);
    assert_eq!(names(&r), ["erin", "dave"]);
    // Bad filters: 400 invalidFilter, naming where.
    for bad in [
        r#"userName eq"#,
        r#"userName xx "a""#,
        r#"(userName eq "a""#,
        r#"active gt true"#,
        r#"userName eq "a" and"#,
    ] {
        let r = list(&app, &token, &q(bad)).await.expect(400);
        assert_eq!(r.body["scimType"], "invalidFilter", "{bad}: {}", r.body);
        assert_eq!(r.body["status"], "400");
        assert_eq!(
            r.body["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
    }
    let long = format!("userName eq \"{}\"", "x".repeat(5000));
    assert_eq!(
        list(&app, &token, &q(&long)).await.expect(400).body["scimType"],
        "invalidFilter"
    );
    let deep = format!("{}userName eq \"a\"{}", "(".repeat(40), ")".repeat(40));
    assert_eq!(
        list(&app, &token, &q(&deep)).await.expect(400).body["scimType"],
        "invalidFilter"
    );
});

on_both!(patch_etags_and_deactivation, |app: TestApp| async move {
    let app = app.with_scim(BASE);
    let (_, token) = app.scim_client("SCIM3").await;
    let r = scim(
        &app,
        &token,
        Method::POST,
        "/scim/v2/Users",
        Some(user("grace", "Grace", "Hopper", "E-7")),
        &[],
    )
    .await
    .expect(201);
    let path = format!("/scim/v2/Users/{}", r.body["id"].as_str().expect("id"));
    let patch = |ops: Value| json!({ "schemas": [PATCH], "Operations": ops });
    // replace with a path, add without one, remove through a value filter.
    let r = scim(&app, &token, Method::PATCH, &path, Some(patch(json!([
        { "op": "replace", "path": "name.familyName", "value": "Murray Hopper" },
        { "op": "add", "value": { "displayName": "Amazing Grace" } },
        { "op": "remove", "path": "emails[type eq \"home\"]" },
        { "op": "replace", "path": "emails[type eq \"work\"].value", "value": "grace@navy.example" },
        { "op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "Navy" }
    ]))), &[]).await.expect(200);
    assert_eq!(r.body["name"]["familyName"], "Murray Hopper");
    assert_eq!(r.body["displayName"], "Amazing Grace");
    assert_eq!(
        r.body["emails"],
        json!([{ "value": "grace@navy.example", "type": "work", "primary": true }])
    );
    assert_eq!(r.headers[header::ETAG], "W/\"2\"");
    let e = employee(&app, "E-7").await;
    assert_eq!(e["surname"], "Murray Hopper");
    assert_eq!(e["email"], "grace@navy.example");
    assert_eq!(e["department"], "Navy");
    // ETags: a stale If-Match is refused with 412 and writes nothing; the current one passes.
    let stale = [("If-Match", "W/\"1\"")];
    let r = scim(
        &app,
        &token,
        Method::PATCH,
        &path,
        Some(patch(
            json!([{ "op": "replace", "path": "title", "value": "x" }]),
        )),
        &stale,
    )
    .await
    .expect(412);
    assert_eq!(r.body["status"], "412");
    scim(
        &app,
        &token,
        Method::PUT,
        &path,
        Some(user("grace", "G", "H", "E-7")),
        &stale,
    )
    .await
    .expect(412);
    scim(&app, &token, Method::DELETE, &path, None, &stale)
        .await
        .expect(412);
    assert_eq!(employee(&app, "E-7").await["surname"], "Murray Hopper");
    scim(
        &app,
        &token,
        Method::GET,
        &path,
        None,
        &[("If-None-Match", "W/\"2\"")],
    )
    .await
    .expect(304);
    scim(
        &app,
        &token,
        Method::PATCH,
        &path,
        Some(patch(
            json!([{ "op": "replace", "path": "title", "value": "Admiral" }]),
        )),
        &[("If-Match", "W/\"2\"")],
    )
    .await
    .expect(200);
    // Entra ID's way: "Replace" with the boolean as a string deactivates the employee.
    let r = scim(
        &app,
        &token,
        Method::PATCH,
        &path,
        Some(patch(
            json!([{ "op": "Replace", "path": "active", "value": "False" }]),
        )),
        &[],
    )
    .await
    .expect(200);
    assert_eq!(r.body["active"], false);
    assert_eq!(employee(&app, "E-7").await["status"], "deactivated");
    let r = scim(
        &app,
        &token,
        Method::PATCH,
        &path,
        Some(patch(
            json!([{ "op": "replace", "value": { "active": true } }]),
        )),
        &[],
    )
    .await
    .expect(200);
    assert_eq!(r.body["active"], true);
    assert_eq!(employee(&app, "E-7").await["status"], "active");
    // PATCH errors: nothing written.
    let before = scim(&app, &token, Method::GET, &path, None, &[])
        .await
        .expect(200)
        .body;
    for (ops, scim_type) in [
        (json!([{ "op": "remove" }]), "noTarget"),
        (
            json!([{ "op": "replace", "path": "bogus", "value": 1 }]),
            "invalidPath",
        ),
        (
            json!([{ "op": "replace", "path": "id", "value": "x" }]),
            "mutability",
        ),
        (
            json!([{ "op": "replace", "path": "title", "value": "ok" }, { "op": "remove", "path": "emails[type eq \"fax\"]" }, { "op": "replace", "path": "emails[type eq \"fax\"].value", "value": "x" }]),
            "noTarget",
        ),
        (
            json!([{ "op": "replace", "path": "active", "value": "maybe" }]),
            "invalidValue",
        ),
    ] {
        let r = scim(
            &app,
            &token,
            Method::PATCH,
            &path,
            Some(patch(ops.clone())),
            &[],
        )
        .await
        .expect(400);
        assert_eq!(r.body["scimType"], scim_type, "{ops}: {}", r.body);
    }
    assert_eq!(
        scim(&app, &token, Method::GET, &path, None, &[])
            .await
            .expect(200)
            .body,
        before
    );
    // The system marks deleted persons: active=false marks the employee deleted.
    app.patch(
        "/api/v1/system/settings",
        json!({ "person_deletion": "mark_as_deleted" }),
    )
    .await
    .expect(200);
    scim(
        &app,
        &token,
        Method::PATCH,
        &path,
        Some(patch(
            json!([{ "op": "replace", "path": "active", "value": false }]),
        )),
        &[],
    )
    .await
    .expect(200);
    assert_eq!(employee(&app, "E-7").await["status"], "deleted");
});

on_both!(tokens_roles_and_errors, |app: TestApp| async move {
    let app = app.with_scim(BASE);
    let (ck, token) = app.scim_client("SCIM4").await;
    // Deny by default: no token, an API token, a SCIM token on the REST API.
    let r = app
        .call(Method::GET, "/scim/v2/Users", None, None)
        .await
        .expect(401);
    assert_eq!(
        r.body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    scim(&app, &app.token, Method::GET, "/scim/v2/Users", None, &[])
        .await
        .expect(403);
    app.call(Method::GET, "/api/v1/employees", Some(&token), None)
        .await
        .expect(403);
    // A SCIM token only for a C-key holding the Web service role.
    let (other, _) = app
        .admin_with("NOWS", json!({ "employee": "full" }), &[app.default_domain])
        .await;
    app.post(
        "/api/v1/tokens",
        json!({ "name": "x", "c_key_id": other, "purpose": "scim" }),
    )
    .await
    .expect_field(422, "purpose");
    // Checked on every request: the role taken away after issue stops the token.
    scim(&app, &token, Method::GET, "/scim/v2/Users", None, &[])
        .await
        .expect(200);
    let roles = app
        .get(&format!("/api/v1/c-keys/{ck}"))
        .await
        .expect(200)
        .body;
    app.patch(
        &format!("/api/v1/c-keys/{ck}"),
        json!({ "role_ids": [], "version": roles["version"] }),
    )
    .await;
    let after = scim(&app, &token, Method::GET, "/scim/v2/Users", None, &[]).await;
    if app.get(&format!("/api/v1/c-keys/{ck}")).await.body["role_ids"] == json!([]) {
        assert_eq!(after.status.as_u16(), 403, "{}", after.body);
    }
    let (_, token) = app.scim_client("SCIM5").await;
    // Bad input: a SCIM error naming the attribute, nothing written.
    let count = employees(&app).await.as_array().map(Vec::len);
    let bad = |f: &dyn Fn(&mut Value)| {
        let mut u = user("x", "X", "Y", "E-9");
        f(&mut u);
        u
    };
    for (body, scim_type, names) in [
        (
            bad(&|u| {
                u.as_object_mut().expect("o").remove("userName");
            }),
            "invalidValue",
            "userName",
        ),
        (
            bad(&|u| u["schemas"] = json!([GROUP])),
            "invalidValue",
            "schemas",
        ),
        (
            bad(&|u| u["name"]["givenName"] = json!("x".repeat(60))),
            "invalidValue",
            "name.givenName",
        ),
        (
            bad(&|u| u["emails"] = json!([{ "value": "not an address", "primary": true }])),
            "invalidValue",
            "emails",
        ),
        (
            bad(&|u| u[ENTERPRISE]["employeeNumber"] = json!("n".repeat(51))),
            "invalidValue",
            "employeeNumber",
        ),
        (bad(&|u| u["active"] = json!(3)), "invalidValue", "active"),
    ] {
        let r = scim(
            &app,
            &token,
            Method::POST,
            "/scim/v2/Users",
            Some(body),
            &[],
        )
        .await
        .expect(400);
        assert_eq!(r.body["scimType"], scim_type, "{}", r.body);
        assert!(
            r.body["detail"].as_str().is_some_and(|d| d.contains(names)),
            "{}",
            r.body
        );
    }
    let r = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/scim/v2/Users")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/scim+json")
                .body(Body::from("{\"userName\": "))
                .expect("request"),
        )
        .await
        .expect(400);
    assert_eq!(r.body["scimType"], "invalidSyntax");
    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    let r = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/scim/v2/Users")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/scim+json")
                .body(Body::from(format!(
                    "{{\"schemas\":[\"{USER}\"],\"userName\":\"d\",\"x\":{deep}}}"
                )))
                .expect("request"),
        )
        .await
        .expect(400);
    assert_eq!(r.body["scimType"], "invalidSyntax");
    assert_eq!(
        employees(&app).await.as_array().map(Vec::len),
        count,
        "nothing written"
    );
    // Uniqueness: userName (case-insensitively) and the employee number.
    scim(
        &app,
        &token,
        Method::POST,
        "/scim/v2/Users",
        Some(user("lin", "Lin", "Wu", "E-20")),
        &[],
    )
    .await
    .expect(201);
    let r = scim(
        &app,
        &token,
        Method::POST,
        "/scim/v2/Users",
        Some(user("LIN", "Lin", "Wu", "E-21")),
        &[],
    )
    .await
    .expect(409);
    assert_eq!(r.body["scimType"], "uniqueness");
    let r = scim(
        &app,
        &token,
        Method::POST,
        "/scim/v2/Users",
        Some(user("lin2", "Lin", "Wu", "E-20")),
        &[],
    )
    .await
    .expect(409);
    assert_eq!(r.body["scimType"], "uniqueness");
    // Discovery: schemas and resource types, 405 on writes, 404 for unknown ids.
    let r = scim(
        &app,
        &token,
        Method::GET,
        "/scim/v2/ServiceProviderConfig",
        None,
        &[],
    )
    .await
    .expect(200);
    assert_eq!(r.body["patch"]["supported"], true);
    assert_eq!(r.body["etag"]["supported"], true);
    let r = scim(&app, &token, Method::GET, "/scim/v2/Schemas", None, &[])
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 3);
    scim(
        &app,
        &token,
        Method::GET,
        &format!("/scim/v2/Schemas/{ENTERPRISE}"),
        None,
        &[],
    )
    .await
    .expect(200);
    scim(
        &app,
        &token,
        Method::GET,
        "/scim/v2/ResourceTypes/User",
        None,
        &[],
    )
    .await
    .expect(200);
    scim(
        &app,
        &token,
        Method::GET,
        "/scim/v2/ResourceTypes/Nope",
        None,
        &[],
    )
    .await
    .expect(404);
    let r = scim(
        &app,
        &token,
        Method::POST,
        "/scim/v2/Schemas",
        Some(json!({})),
        &[],
    )
    .await
    .expect(405);
    assert_eq!(r.body["status"], "405");
    scim(
        &app,
        &token,
        Method::GET,
        "/scim/v2/Users/00000000-0000-4000-8000-000000000000",
        None,
        &[],
    )
    .await
    .expect(404);
    // SCIM not configured: 404.
    let plain = lockgate_api::router(lockgate_api::AppState::new(
        app.store.clone(),
        lockgate_api::ApiConfig::default(),
    ));
    let resp = tower::ServiceExt::oneshot(
        plain,
        Request::builder()
            .uri("/scim/v2/Users")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await
    .expect("response");
    assert_eq!(resp.status().as_u16(), 404);
});

on_both!(groups_are_tags, |app: TestApp| async move {
    let app = app.with_scim(BASE);
    let (_, token) = app.scim_client("SCIM6").await;
    let mut ids = Vec::new();
    for (n, num) in [("kim", "G-1"), ("lee", "G-2"), ("max", "G-3")] {
        let r = scim(
            &app,
            &token,
            Method::POST,
            "/scim/v2/Users",
            Some(user(n, "A", "B", num)),
            &[],
        )
        .await
        .expect(201);
        ids.push(r.body["id"].as_str().expect("id").to_string());
    }
    let tags = |num: &'static str| {
        let app = &app;
        async move { employee(app, num).await["tags"].clone() }
    };
    let r = scim(&app, &token, Method::POST, "/scim/v2/Groups", Some(json!({
        "schemas": [GROUP], "displayName": "Night shift",
        "members": [{ "value": ids[0], "$ref": format!("{BASE}/scim/v2/Users/{}", ids[0]) }, { "value": ids[1] }]
    })), &[]).await.expect(201);
    let group = format!("/scim/v2/Groups/{}", r.body["id"].as_str().expect("id"));
    assert_eq!(tags("G-1").await, json!(["Night shift"]));
    assert_eq!(tags("G-2").await, json!(["Night shift"]));
    assert_eq!(tags("G-3").await, json!([]));
    // Members through PATCH: add one, remove one by value filter; rename.
    scim(
        &app,
        &token,
        Method::PATCH,
        &group,
        Some(json!({ "schemas": [PATCH], "Operations": [
            { "op": "add", "path": "members", "value": [{ "value": ids[2] }] },
            { "op": "remove", "path": format!("members[value eq \"{}\"]", ids[0]) },
            { "op": "replace", "path": "displayName", "value": "Late shift" }
        ]})),
        &[],
    )
    .await
    .expect(200);
    assert_eq!(tags("G-1").await, json!([]));
    assert_eq!(tags("G-2").await, json!(["Late shift"]));
    assert_eq!(tags("G-3").await, json!(["Late shift"]));
    let r = scim(
        &app,
        &token,
        Method::GET,
        &format!(
            "/scim/v2/Groups?filter={}",
            url::form_urlencoded::byte_serialize(
                format!("members[value eq \"{}\"]", ids[2]).as_bytes()
            )
            .collect::<String>()
        ),
        None,
        &[],
    )
    .await
    .expect(200);
    assert_eq!(r.body["totalResults"], 1);
    // An unknown member: 400 naming it, nothing written.
    let r = scim(
        &app,
        &token,
        Method::PATCH,
        &group,
        Some(json!({ "schemas": [PATCH], "Operations": [
            { "op": "add", "path": "members", "value": [{ "value": "no-such-user" }] }
        ]})),
        &[],
    )
    .await
    .expect(400);
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("members")),
        "{}",
        r.body
    );
    assert_eq!(
        scim(&app, &token, Method::GET, &group, None, &[])
            .await
            .expect(200)
            .body["members"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // A deleted user leaves its groups; a deleted group's tag leaves its members.
    scim(
        &app,
        &token,
        Method::DELETE,
        &format!("/scim/v2/Users/{}", ids[1]),
        None,
        &[],
    )
    .await
    .expect(204);
    let g = scim(&app, &token, Method::GET, &group, None, &[])
        .await
        .expect(200);
    assert_eq!(g.body["members"], json!([{ "value": ids[2] }]));
    scim(&app, &token, Method::DELETE, &group, None, &[])
        .await
        .expect(204);
    assert_eq!(tags("G-3").await, json!([]));
    scim(&app, &token, Method::GET, &group, None, &[])
        .await
        .expect(404);
});

on_both!(domains_bounds_and_etag_lists, |app: TestApp| async move {
    let app = app.with_scim(BASE);
    let (_, token) = app.scim_client("SCIM7").await;
    let other_domain = app.domain("Plant 2").await;
    let (_, other) = app.scim_client_in("SCIM8", &[other_domain]).await;
    let r = scim(
        &app,
        &token,
        Method::POST,
        "/scim/v2/Users",
        Some(user("uma", "Uma", "U", "D-1")),
        &[],
    )
    .await
    .expect(201);
    let uid = r.body["id"].as_str().expect("id").to_string();
    let r = scim(
        &app,
        &token,
        Method::POST,
        "/scim/v2/Groups",
        Some(json!({ "schemas": [GROUP], "displayName": "Empty" })),
        &[],
    )
    .await
    .expect(201);
    let group = format!("/scim/v2/Groups/{}", r.body["id"].as_str().expect("id"));
    // Another domain's client sees neither the user nor the (empty) group, and cannot write them.
    let r = scim(&app, &other, Method::GET, "/scim/v2/Groups", None, &[])
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 0, "{}", r.body);
    scim(&app, &other, Method::GET, &group, None, &[])
        .await
        .expect(404);
    scim(&app, &other, Method::DELETE, &group, None, &[])
        .await
        .expect(404);
    scim(
        &app,
        &other,
        Method::GET,
        &format!("/scim/v2/Users/{uid}"),
        None,
        &[],
    )
    .await
    .expect(404);
    assert_eq!(
        scim(&app, &other, Method::GET, "/scim/v2/Users", None, &[])
            .await
            .expect(200)
            .body["totalResults"],
        0
    );
    // Entity-tag lists and weak comparison (RFC 7232).
    let path = format!("/scim/v2/Users/{uid}");
    scim(
        &app,
        &token,
        Method::GET,
        &path,
        None,
        &[("If-None-Match", "\"1\"")],
    )
    .await
    .expect(304);
    scim(
        &app,
        &token,
        Method::PUT,
        &path,
        Some(user("uma", "Uma", "V", "D-1")),
        &[("If-Match", "W/\"7\", W/\"1\"")],
    )
    .await
    .expect(200);
    // Bounds: one spelling per attribute, at most 100 values, at most 64 KiB.
    let mut twice = user("vic", "V", "W", "D-2");
    twice["USERNAME"] = json!("vic2");
    assert_eq!(
        scim(
            &app,
            &token,
            Method::POST,
            "/scim/v2/Users",
            Some(twice),
            &[]
        )
        .await
        .expect(400)
        .body["scimType"],
        "invalidValue"
    );
    let mut many = user("vic", "V", "W", "D-2");
    many["emails"] = json!(
        (0..101)
            .map(|i| json!({ "value": format!("v{i}@x.example") }))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        scim(
            &app,
            &token,
            Method::POST,
            "/scim/v2/Users",
            Some(many),
            &[]
        )
        .await
        .expect(400)
        .body["scimType"],
        "invalidValue"
    );
    let mut big = user("vic", "V", "W", "D-2");
    big["displayName"] = json!("x".repeat(70_000));
    assert_eq!(
        scim(&app, &token, Method::POST, "/scim/v2/Users", Some(big), &[])
            .await
            .expect(400)
            .body["scimType"],
        "invalidValue"
    );
    // A user deleted while persons are marked as deleted leaves its groups' tags behind.
    scim(&app, &token, Method::PATCH, &group, Some(json!({ "schemas": [PATCH], "Operations": [{ "op": "add", "path": "members", "value": [{ "value": uid }] }] })), &[]).await.expect(200);
    assert_eq!(employee(&app, "D-1").await["tags"], json!(["Empty"]));
    app.patch(
        "/api/v1/system/settings",
        json!({ "person_deletion": "mark_as_deleted" }),
    )
    .await
    .expect(200);
    scim(&app, &token, Method::DELETE, &path, None, &[])
        .await
        .expect(204);
    let e = employee(&app, "D-1").await;
    assert_eq!(
        (e["status"].as_str(), e["tags"].clone()),
        (Some("deleted"), json!([])),
        "{e}"
    );
    assert_eq!(
        scim(&app, &token, Method::GET, &group, None, &[])
            .await
            .expect(200)
            .body
            .get("members"),
        None
    );
});

/// The external conformance checker, scim2-tester (through `scim2 ... test`), against a
/// gateway listening on loopback: every check must succeed (a skipped one fails too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_conformance() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = TestApp::new(Db::Sqlite).await.with_scim(&url);
    let (_, token) = app.scim_client("SCIMT").await;
    let router = app.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("scim2")
            .args([
                "--url",
                &format!("{url}/scim/v2"),
                "--header",
                &format!("Authorization: Bearer {token}"),
                "test",
            ])
            .output()
    })
    .await
    .expect("join")
    .expect("run scim2 (pip install -r tests/peers/scim/requirements.txt)");
    server.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scim2 test failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("SUCCESS"), "no check ran:\n{stdout}");
    for bad in ["ERROR", "CRITICAL", "SKIPPED"] {
        assert!(!stdout.contains(bad), "a check ended {bad}:\n{stdout}");
    }
}
