//! The web services under `/ws` (the HR SOAP service, docs/connectors/hr-web-services.md):
//! hostile XML (external entities, entity expansion, depth, element counts, size, other
//! encodings), credentials where they do not belong (in the Body, twice, as a digest, over a
//! connection that is not TLS, tokens of another purpose, a C-key that lost its role or is
//! blocked), and a client reaching employees outside its domains. Nothing may be read or
//! written by any of them.

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use lockgate_tests::{TestApp, attack::Tally};
use serde_json::json;

use crate::common::{DBS, on, predefined_role};

const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";

fn envelope(header: &str, body: &str) -> String {
    format!(
        "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:wsse=\"{WSSE}\" \
         xmlns:hr=\"urn:lockgate:hr:1\"><soap:Header>{header}</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"
    )
}

fn get(identifier: &str) -> String {
    format!("<hr:GetEmployee><hr:identifier>{identifier}</hr:identifier></hr:GetEmployee>")
}

fn username_token(user: &str, password: &str, kind: &str) -> String {
    format!(
        "<wsse:Security><wsse:UsernameToken><wsse:Username>{user}</wsse:Username>\
         <wsse:Password Type=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#{kind}\">{password}</wsse:Password>\
         </wsse:UsernameToken></wsse:Security>"
    )
}

/// Posts `body` to `/ws/hr` with an optional bearer token; status and text.
async fn post(app: &TestApp, token: Option<&str>, body: impl Into<Body>) -> (u16, String) {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/ws/hr")
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let r = app.send(req.body(body.into()).expect("request")).await;
    (
        r.status.as_u16(),
        r.body
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| r.body.to_string()),
    )
}

/// Refused: an error status and no employee data in the answer.
fn refused((status, text): &(u16, String)) -> bool {
    *status >= 400 && !text.contains("Secret-Surname") && !text.contains("root:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_services_refuse_hostile_xml_and_misplaced_credentials() {
    for db in DBS {
        let app = TestApp::new(db)
            .await
            .with_hr_web_service("https://lockgate.test/ws/hr");
        let mut t = Tally::new(on("web services", db));
        let d = app.default_domain;
        let other = app.domain("Plant B").await;
        let (_, token) = app.web_service_client("WS1", &[d], "web_service").await;
        // An employee in another domain, and one in the client's.
        app.post(
            "/api/v1/employees",
            json!({ "identifier": "B-1", "first_name": "Bea", "surname": "Secret-Surname", "domain_id": other }),
        )
        .await
        .expect(201);
        app.post(
            "/api/v1/employees",
            json!({ "identifier": "A-1", "first_name": "Abe", "surname": "Visible", "domain_id": d }),
        )
        .await
        .expect(201);

        // Hostile XML.
        let xxe = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}",
            envelope("", &get("&e;"))
        );
        t.case(
            "external entity",
            refused(&post(&app, Some(&token), xxe).await),
        );
        let laughs = format!(
            "<!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]>{}",
            envelope("", &get("&c;"))
        );
        t.case(
            "entity expansion",
            refused(&post(&app, Some(&token), laughs).await),
        );
        let lower = format!(
            "<!doctype x SYSTEM \"http://127.0.0.1:9/x.dtd\">{}",
            envelope("", &get("A-1"))
        );
        t.case(
            "lower-case doctype",
            refused(&post(&app, Some(&token), lower).await),
        );
        let deep = envelope(
            "",
            &format!("{}{}", "<hr:x>".repeat(10_000), "</hr:x>".repeat(10_000)),
        );
        t.case(
            "10 000 levels deep",
            refused(&post(&app, Some(&token), deep).await),
        );
        let many = envelope(
            "",
            &format!(
                "<hr:UpsertEmployees>{}</hr:UpsertEmployees>",
                "<hr:a/>".repeat(100_000)
            ),
        );
        t.case(
            "100 000 elements",
            refused(&post(&app, Some(&token), many).await),
        );
        let big = vec![b' '; 5 * 1024 * 1024];
        let r = post(&app, Some(&token), big).await;
        t.status("5 MiB body", r.0, &[413]);
        let utf16: Vec<u8> = envelope("", &get("A-1"))
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        t.case(
            "UTF-16 body",
            refused(&post(&app, Some(&token), utf16).await),
        );
        let soap12 = format!(
            "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\"><env:Body>{}</env:Body></env:Envelope>",
            get("A-1").replace(
                "<hr:GetEmployee>",
                "<hr:GetEmployee xmlns:hr=\"urn:lockgate:hr:1\">"
            )
        );
        t.case(
            "SOAP 1.2 envelope",
            refused(&post(&app, Some(&token), soap12).await),
        );

        // Credentials where they do not belong.
        let r = post(
            &app,
            None,
            envelope(
                "",
                &format!(
                    "{}{}",
                    username_token("Provisioning WS1", &token, "PasswordText"),
                    get("A-1")
                ),
            ),
        )
        .await;
        t.status("UsernameToken in the Body", r.0, &[401]);
        let twice = username_token("Provisioning WS1", &token, "PasswordText").repeat(2);
        let r = post(&app, None, envelope(&twice, &get("A-1"))).await;
        t.case("two Security headers, no TLS", refused(&r));
        let r = post(
            &app,
            None,
            envelope(
                &username_token("Provisioning WS1", &token, "PasswordText"),
                &get("A-1"),
            ),
        )
        .await;
        t.status("UsernameToken without TLS", r.0, &[403]);
        let r = post(
            &app,
            None,
            envelope(
                &username_token("Provisioning WS1", &token, "PasswordDigest"),
                &get("A-1"),
            ),
        )
        .await;
        t.status("password digest", r.0, &[400]);
        let r = post(&app, Some(&app.token), envelope("", &get("A-1"))).await;
        t.status("a REST token", r.0, &[403]);
        let (_, scim) = app.web_service_client("WS2", &[d], "scim").await;
        let r = post(&app, Some(&scim), envelope("", &get("A-1"))).await;
        t.status("a SCIM token", r.0, &[403]);
        let r = post(&app, Some("not-a-token"), envelope("", &get("A-1"))).await;
        t.status("an unknown token", r.0, &[401]);
        // The role taken away after the token was issued.
        let (ck, lost_role) = app.web_service_client("WS3", &[d], "web_service").await;
        let receptionist = predefined_role(&app, "receptionist").await;
        app.patch(
            &format!("/api/v1/c-keys/{ck}"),
            json!({ "role_ids": [receptionist] }),
        )
        .await
        .expect(200);
        let r = post(&app, Some(&lost_role), envelope("", &get("A-1"))).await;
        t.status("the Web service role removed after issue", r.0, &[403]);
        // A blocked C-key.
        let (ck, blocked) = app.web_service_client("WS4", &[d], "web_service").await;
        app.patch(&format!("/api/v1/c-keys/{ck}"), json!({ "blocked": true }))
            .await
            .expect(200);
        let r = post(&app, Some(&blocked), envelope("", &get("A-1"))).await;
        t.status("a blocked C-key", r.0, &[401, 403]);
        // A GET carries no client: a SOAP call in it reads nothing.
        let r = app
            .send(
                Request::builder()
                    .method(Method::GET)
                    .uri("/ws/hr")
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Body::from(envelope("", &get("B-1"))))
                    .expect("request"),
            )
            .await;
        let text = r.body.as_str().map(str::to_owned).unwrap_or_default();
        t.case(
            "a SOAP call in a GET",
            r.status.as_u16() == 400
                && !text.contains("Secret-Surname")
                && !text.contains("Visible"),
        );

        // Hidden persons: without key-holder deactivate, a deactivated employee is not read,
        // and nobody is deactivated.
        let hidden = app
            .post(
                "/api/v1/employees",
                json!({ "identifier": "A-2", "first_name": "Hid", "surname": "Secret-Surname", "domain_id": d }),
            )
            .await
            .expect(201)
            .id();
        app.post(&format!("/api/v1/employees/{hidden}/deactivate"), json!({}))
            .await
            .expect(200);
        let r = post(&app, Some(&token), envelope("", &get("A-2"))).await;
        t.case(
            "read a deactivated employee without the permission",
            refused(&r),
        );
        let r = post(
            &app,
            Some(&token),
            envelope(
                "",
                "<hr:DeactivateEmployee><hr:identifier>A-1</hr:identifier></hr:DeactivateEmployee>",
            ),
        )
        .await;
        t.case("deactivate without the permission", refused(&r));
        let a1 = app.get("/api/v1/employees?q=A-1&with_body=true").await;
        t.case(
            "the employee stays active",
            a1.body.to_string().contains("\"lifecycle\":\"active\""),
        );

        // Employees outside the client's domains.
        let r = post(&app, Some(&token), envelope("", &get("B-1"))).await;
        t.case("read another domain's employee", refused(&r));
        let update = "<hr:UpsertEmployees><hr:employee><hr:identifier>B-1</hr:identifier><hr:firstName>Bea</hr:firstName><hr:lastName>Overwritten</hr:lastName></hr:employee></hr:UpsertEmployees>";
        let _ = post(&app, Some(&token), envelope("", update)).await;
        let b = app
            .get("/api/v1/employees?q=B-1&with_body=true&include_hidden=true")
            .await;
        t.case(
            "overwrite another domain's employee",
            !b.body.to_string().contains("Overwritten"),
        );
        for op in ["DeleteEmployee", "DeactivateEmployee"] {
            let body = format!("<hr:{op}><hr:identifier>B-1</hr:identifier></hr:{op}>");
            let r = post(&app, Some(&token), envelope("", &body)).await;
            t.case(format!("{op} in another domain"), refused(&r));
        }
        let b = app.get("/api/v1/employees?q=B-1&with_body=true").await;
        t.case(
            "another domain's employee untouched",
            b.body.to_string().contains("Secret-Surname"),
        );
        t.finish();
    }
}
