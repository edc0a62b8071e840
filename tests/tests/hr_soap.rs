//! The inbound HR web service end to end (docs/connectors/hr-web-services.md): the bundled
//! `hr-soap` plugin mounted at `/ws/hr`, called by the third-party SOAP client zeep
//! (`tests/peers/hr/soap_client.py`, which loads the WSDL and builds every call), against a
//! gateway listening on loopback. Authentication (token header or WS-Security
//! UsernameToken), the caller's rights and domains, all-or-nothing upserts with every
//! invalid row in the fault, the deletion setting, and faults for bad input.

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use lockgate_tests::*;
use serde_json::{Value, json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/hr/soap_client.py");

/// Runs the zeep client against `base` (the gateway's URL) with `auth` arguments and the
/// commands (or `--scenario`), returning one JSON value per printed line.
async fn zeep(
    base: &str,
    auth: &[&str],
    commands: Option<Value>,
    scenario: Option<&str>,
) -> Vec<Value> {
    let mut args: Vec<String> = vec![SCRIPT.into(), format!("{base}/ws/hr?wsdl")];
    args.extend(auth.iter().map(|s| s.to_string()));
    if let Some(s) = scenario {
        args.extend(["--scenario".to_string(), s.to_string()]);
    }
    let input = commands.map(|c| c.to_string()).unwrap_or_default();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("python3")
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write commands");
        child.wait_with_output().expect("zeep client output")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the zeep client failed: {}\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The app with the service mounted and served on loopback; returns its URL.
async fn serving(app: TestApp) -> (TestApp, String) {
    let (listener, url) = loopback_listener().await;
    let app = app.with_hr_web_service(&format!("{url}/ws/hr"));
    app.serve(listener);
    (app, url)
}

fn bearer(token: &str) -> [String; 2] {
    ["--token".into(), token.into()]
}

/// The stored employee with this identifier (REST), if any.
async fn employee(app: &TestApp, identifier: &str) -> Option<Value> {
    let r = app
        .get(&format!(
            "/api/v1/employees?limit=10&with_body=true&q={identifier}"
        ))
        .await
        .expect(200);
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["body"]["identifier"] == identifier)
        .cloned()
}

/// A SOAP request by hand (what zeep would not send), through the router.
async fn raw(app: &TestApp, token: Option<&str>, body: &str) -> Resp {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/ws/hr")
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .header("SOAPAction", "\"urn:lockgate:hr:1/GetEmployee\"");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    app.send(req.body(Body::from(body.to_owned())).expect("request"))
        .await
}

fn get_employee_envelope(header_xml: &str, identifier: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:wsse=\"{}\" xmlns:hr=\"urn:lockgate:hr:1\"><soap:Header>{header_xml}</soap:Header>\
         <soap:Body><hr:GetEmployee><hr:identifier>{identifier}</hr:identifier></hr:GetEmployee></soap:Body></soap:Envelope>",
        lockgate_api::web_services::WSSE_NS
    )
}

/// A web-service client (the pre-defined Web service role) that also holds key-holder
/// deactivate at Full, as deactivating needs; returns its token.
async fn deactivating_client(app: &TestApp, marking: &str) -> String {
    let (ck, token) = app
        .web_service_client(marking, &[app.default_domain], "web_service")
        .await;
    let roles: Vec<Value> = app
        .get(&format!("/api/v1/c-keys/{ck}"))
        .await
        .expect(200)
        .body["role_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let extra = app
        .post(
            "/api/v1/roles",
            json!({ "name": format!("Deactivation {marking}"), "permissions": {
                "employee": "full", "visitor": "full", "key_holder_deactivate": "full" } }),
        )
        .await
        .expect(201)
        .id();
    let mut all = roles;
    all.push(json!(extra));
    app.patch(&format!("/api/v1/c-keys/{ck}"), json!({ "role_ids": all }))
        .await
        .expect(200);
    token
}

/// The zeep client's line is a SOAP fault whose message contains `needle`.
#[track_caller]
fn assert_fault(line: &Value, needle: &str) {
    assert_eq!(line["ok"], false, "{line}");
    assert!(
        line["fault"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(needle)),
        "the fault does not name `{needle}`: {line}"
    );
}

fn text(r: &Resp) -> String {
    r.body
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| r.body.to_string())
}

on_both!(zeep_calls_every_operation, |app: TestApp| async move {
    let (app, url) = serving(app).await;
    let token = deactivating_client(&app, "HR1").await;
    let lines = zeep(
        &url,
        &bearer(&token).each_ref().map(String::as_str),
        None,
        Some("all"),
    )
    .await;
    let ops: Vec<&str> = lines
        .iter()
        .map(|l| l["op"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        ops,
        [
            "UpsertEmployees",
            "UpsertEmployees",
            "GetEmployee",
            "DeactivateEmployee",
            "DeleteEmployee",
            "ListChanges",
            "GetEmployee"
        ],
        "{lines:#?}"
    );
    // 1. Two employees created.
    assert_eq!(lines[0]["ok"], true, "{}", lines[0]);
    assert_eq!(lines[0]["result"]["created"], 2, "{}", lines[0]);
    let ada = employee(&app, "HR-1").await.expect("HR-1 stored");
    assert_eq!(ada["body"]["email"], "ada@example.com");
    assert_eq!(ada["body"]["mobile_phone"], "+44 20 7946 0000");
    // 2. A batch with invalid rows: a Client fault listing every one, nothing written.
    let fault = &lines[1]["fault"];
    assert_eq!(lines[1]["ok"], false, "{}", lines[1]);
    assert!(
        fault["code"].as_str().unwrap_or("").ends_with("Client"),
        "{fault}"
    );
    let rows = fault["detail"]["rows"].as_array().expect("rows");
    let named: Vec<(i64, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["index"].as_i64().unwrap_or(-1),
                r["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(named.contains(&(1, "email")), "{fault}");
    assert!(named.contains(&(2, "firstName")), "{fault}");
    assert!(
        rows.iter()
            .all(|r| r["rule"].as_str().is_some_and(|m| !m.is_empty()))
    );
    assert!(
        employee(&app, "HR-3").await.is_none(),
        "the valid row of a refused batch was written"
    );
    // 3. Get returns what was written.
    assert_eq!(lines[2]["ok"], true, "{}", lines[2]);
    let got = lines[2]["result"].to_string();
    assert!(
        got.contains("Lovelace") && got.contains("Engineering"),
        "{got}"
    );
    // 4. Deactivate, 5. delete (the default setting deletes permanently: a deactivated
    // person is refused; reactivating is an administrator's decision).
    assert_eq!(lines[3]["ok"], true, "{}", lines[3]);
    assert!(
        lines[3]["result"].to_string().contains("deactivated"),
        "{}",
        lines[3]
    );
    let grace = employee(&app, "HR-2").await;
    assert!(
        grace.is_none() || grace.as_ref().unwrap()["body"]["lifecycle"] == "deactivated",
        "{grace:?}"
    );
    assert_fault(&lines[4], "deactivated");
    // 6. The change feed lists the creations and the deactivation, with a next token.
    assert_eq!(lines[5]["ok"], true, "{}", lines[5]);
    let feed = lines[5]["result"].to_string();
    assert!(
        feed.contains("HR-1") && feed.contains("deactivated"),
        "{feed}"
    );
    assert!(
        lines[5]["result"]["nextToken"]
            .as_str()
            .is_some_and(|t| t.starts_with('c'))
    );
    let changes = lines[5]["result"]["change"].as_array().expect("changes");
    assert!(
        changes
            .iter()
            .any(|c| c["identifier"] == "HR-1" && c["kind"] == "created"),
        "an upserted employee's change is `created`: {feed}"
    );
    // 7. An unknown identifier: a Client fault naming it.
    assert_fault(&lines[6], "HR-does-not-exist");

    // A batch naming a deactivated employee (left alone by an update) or an identifier twice
    // is refused as a whole, each row named; the valid row is not written.
    let lines = zeep(
        &url,
        &bearer(&token).each_ref().map(String::as_str),
        Some(json!([{ "op": "UpsertEmployees", "args": { "employee": [
            { "identifier": "HR-9", "firstName": "Nia", "lastName": "New" },
            { "identifier": "HR-2", "firstName": "Grace", "lastName": "Hopper" },
            { "identifier": "HR-1", "firstName": "Ada", "lastName": "Lovelace" },
            { "identifier": "hr-1", "firstName": "Ada", "lastName": "Again" } ] } }])),
        None,
    )
    .await;
    let rows = lines[0]["fault"]["detail"]["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let indexes: Vec<i64> = rows.iter().filter_map(|r| r["index"].as_i64()).collect();
    assert_eq!(indexes, [1, 3], "{}", lines[0]);
    assert!(
        employee(&app, "HR-9").await.is_none(),
        "a refused batch wrote a row"
    );
});

on_both!(username_token_and_rights, |app: TestApp| async move {
    let (app, url) = serving(app).await;
    let (_, token) = app
        .web_service_client("HR2", &[app.default_domain], "web_service")
        .await;
    let upsert = json!([{ "op": "UpsertEmployees", "args": { "employee": [
        { "identifier": "U-1", "firstName": "Ute", "lastName": "Ulm" } ] } }]);
    // WS-Security UsernameToken (PasswordText) from a loopback peer: the C-key's name and
    // the token.
    let lines = zeep(
        &url,
        &["--username", "Provisioning HR2", "--password", &token],
        Some(upsert.clone()),
        None,
    )
    .await;
    assert_eq!(lines[0]["ok"], true, "{}", lines[0]);
    assert!(employee(&app, "U-1").await.is_some());
    // The pre-defined Web service role alone does not deactivate (key-holder deactivate),
    // and does not see deactivated employees.
    let lines = zeep(
        &url,
        &bearer(&token).each_ref().map(String::as_str),
        Some(json!([{ "op": "DeactivateEmployee", "args": { "identifier": "U-1" } }])),
        None,
    )
    .await;
    assert_fault(&lines[0], "key-holder deactivate");
    let u1 = employee(&app, "U-1").await.expect("U-1")["id"]
        .as_i64()
        .expect("id");
    app.post(&format!("/api/v1/employees/{u1}/deactivate"), json!({}))
        .await
        .expect(200);
    let lines = zeep(
        &url,
        &bearer(&token).each_ref().map(String::as_str),
        Some(
            json!([{ "op": "GetEmployee", "args": { "identifier": "U-1" } },
                     { "op": "ListChanges", "args": { "limit": 100 } }]),
        ),
        None,
    )
    .await;
    assert_fault(&lines[0], "U-1");
    assert!(
        !lines[1]["result"].to_string().contains("U-1"),
        "a hidden employee in the feed: {}",
        lines[1]
    );
    app.post(&format!("/api/v1/employees/{u1}/reactivate"), json!({}))
        .await
        .expect(200);
    // Another username with the same token: refused.
    let lines = zeep(
        &url,
        &["--username", "Somebody", "--password", &token],
        Some(upsert.clone()),
        None,
    )
    .await;
    assert_fault(&lines[0], "username");
    // A token for the REST API is not a web-service token.
    let lines = zeep(
        &url,
        &bearer(&app.token).each_ref().map(String::as_str),
        Some(upsert.clone()),
        None,
    )
    .await;
    assert_fault(&lines[0], "web_service");
    // No credentials at all: 401 with a SOAP fault.
    let r = raw(&app, None, &get_employee_envelope("", "U-1")).await;
    assert_eq!(r.status.as_u16(), 401);
    assert!(text(&r).contains("faultcode") && text(&r).contains("credentials"));
    // A UsernameToken over a connection that is neither TLS nor loopback-proven (the
    // in-process router has no transport): refused before the token is looked at.
    let ut = format!(
        "<wsse:Security><wsse:UsernameToken><wsse:Username>Provisioning HR2</wsse:Username>\
         <wsse:Password>{token}</wsse:Password></wsse:UsernameToken></wsse:Security>"
    );
    let r = raw(&app, None, &get_employee_envelope(&ut, "U-1")).await;
    assert_eq!(r.status.as_u16(), 403, "{}", text(&r));
    assert!(text(&r).contains("TLS"), "{}", text(&r));
    // A password digest cannot be checked against a token.
    let digest = ut.replace(
        "<wsse:Password>",
        "<wsse:Password Type=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest\">",
    );
    let r = raw(&app, None, &get_employee_envelope(&digest, "U-1")).await;
    assert_eq!(r.status.as_u16(), 400, "{}", text(&r));
    // The header token through the router works, and a revoked or role-less caller does not.
    let r = raw(&app, Some(&token), &get_employee_envelope("", "U-1")).await;
    assert_eq!(r.status.as_u16(), 200, "{}", text(&r));
    assert!(text(&r).contains("Ulm"));
    // A DOCTYPE is refused (by the plugin's parser, as a SOAP fault).
    let r = raw(
        &app,
        Some(&token),
        &format!(
            "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}",
            get_employee_envelope("", "&e;")
        ),
    )
    .await;
    assert!(r.status.as_u16() >= 400, "{}", text(&r));
    assert!(text(&r).contains("DOCTYPE"), "{}", text(&r));
    assert!(!text(&r).contains("root:"), "{}", text(&r));
    // A client whose C-key is in another domain does not see the employee.
    let other = app.domain("Elsewhere").await;
    let (_, elsewhere) = app.web_service_client("HR3", &[other], "web_service").await;
    let r = raw(&app, Some(&elsewhere), &get_employee_envelope("", "U-1")).await;
    assert_eq!(r.status.as_u16(), 500, "{}", text(&r));
    assert!(
        text(&r).contains("U-1") && text(&r).contains("Client"),
        "{}",
        text(&r)
    );
    // The WSDL is public and names the configured endpoint.
    let r = app
        .send(
            Request::builder()
                .uri("/ws/hr?wsdl")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200);
    assert!(
        text(&r).contains(&format!("location=\"{url}/ws/hr\"")),
        "{}",
        text(&r)
    );
    // Nothing is mounted elsewhere.
    let r = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/ws/payroll")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::from("<x/>"))
                .expect("request"),
        )
        .await;
    assert_eq!(r.status.as_u16(), 404, "{}", text(&r));
});

on_both!(mark_as_deleted_setting, |app: TestApp| async move {
    let (app, url) = serving(app).await;
    app.patch(
        "/api/v1/system/settings",
        json!({ "person_deletion": "mark_as_deleted" }),
    )
    .await
    .expect(200);
    let token = deactivating_client(&app, "HR4").await;
    let lines = zeep(
        &url,
        &bearer(&token).each_ref().map(String::as_str),
        Some(json!([
            { "op": "UpsertEmployees", "args": { "employee": [
                { "identifier": "M-1", "firstName": "Mia", "lastName": "Marx" } ] } },
            { "op": "DeleteEmployee", "args": { "identifier": "M-1" } },
            { "op": "DeactivateEmployee", "args": { "identifier": "M-1" } },
        ])),
        None,
    )
    .await;
    assert_eq!(lines[0]["ok"], true, "{}", lines[0]);
    assert_eq!(lines[1]["ok"], true, "{}", lines[1]);
    assert!(
        lines[1]["result"].to_string().contains("markedDeleted"),
        "{}",
        lines[1]
    );
    let m = employee(&app, "M-1").await;
    assert!(
        m.is_none() || m.as_ref().unwrap()["body"]["lifecycle"] == "deleted",
        "{m:?}"
    );
    // Deactivation exists only under "delete permanently".
    assert_eq!(lines[2]["ok"], false, "{}", lines[2]);
});
