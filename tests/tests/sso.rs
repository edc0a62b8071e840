//! SAML single sign-on for administrators, end to end (docs/connectors/saml.md): the bundled
//! `saml-sso` plugin behind the API, a real third-party identity provider (pysaml2, run by
//! `tests/peers/saml/idp.py`) answering the login the gateway starts, and an attack corpus
//! signed by an independent implementation (signxml, `tests/peers/saml/corpus.py`) and then
//! mutated: every mutation must be refused, and nothing written for it.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use lockgate_tests::sso::{
    TEST_BROWSER_SECRET, await_sso_request, enrol_sso, form_encode, post_acs, post_acs_from,
    saml_peers, start_login_as_test_browser,
};
use lockgate_tests::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PUBLIC_URL: &str = SSO_PUBLIC_URL;

/// The identity provider process; killed when dropped.
struct Idp {
    child: Child,
    port: u16,
    key: PathBuf,
    cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts pysaml2's identity provider for the SP metadata given.
fn start_idp(sp_metadata: &str, subject: &str, port: u16) -> Idp {
    let dir = tempfile::tempdir().expect("tempdir");
    let sp = dir.path().join("sp.xml");
    std::fs::write(&sp, sp_metadata).expect("write SP metadata");
    let (key, cert) = (dir.path().join("idp.key"), dir.path().join("idp.crt"));
    let mut child = Command::new("python3")
        .arg(saml_peers().join("idp.py"))
        .args([
            "--port",
            &port.to_string(),
            "--generate",
            "--subject",
            subject,
        ])
        .arg("--key")
        .arg(&key)
        .arg("--cert")
        .arg(&cert)
        .arg("--sp-metadata")
        .arg(&sp)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs tests/peers/saml/idp.py (tests/run.sh installs pysaml2 and xmlsec1)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the IdP's first line");
    assert_eq!(line.trim(), "READY", "the identity provider did not start");
    Idp {
        child,
        port,
        key,
        cert,
        _dir: dir,
    }
}

/// A plain HTTP/1.1 exchange with the identity provider on loopback: (status, body).
async fn http(method: &str, url: &str, body: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect to the IdP");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of `attr` in the first `<input …>` whose name is `name`.
fn form_input(html: &str, name: &str) -> Option<String> {
    html.split("<input").skip(1).find_map(|tag| {
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        let attr = |a: &str| {
            let start = tag.find(&format!("{a}=\""))? + a.len() + 2;
            Some(tag[start..start + tag[start..].find('"')?].to_string())
        };
        (attr("name").as_deref() == Some(name)).then(|| attr("value").unwrap_or_default())
    })
}

fn unescape(s: &str) -> String {
    s.replace("&#x2B;", "+")
        .replace("&#43;", "+")
        .replace("&#x3D;", "=")
        .replace("&#61;", "=")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The SSO site: the app with the `saml-sso` plugin behind its router, a certificate, the
/// identity provider's metadata imported and SSO enabled.
struct Site {
    app: TestApp,
    idp: Idp,
}

async fn site(db: Db, subject: &str) -> Site {
    let port = free_port();
    let app = TestApp::new(db)
        .await
        .with_sso(&format!("127.0.0.1:{port}"));
    let sys = app.system_id;
    // Enabling needs metadata and a certificate first, and says which is missing.
    let r = app
        .call(
            Method::PUT,
            "/api/v1/sso/settings",
            Some(&app.token),
            Some(json!({ "enabled": true })),
        )
        .await
        .expect(409);
    assert!(
        r.body["detail"].as_str().unwrap().contains("metadata"),
        "{:?}",
        r.body
    );
    // The SP certificate (the manual's verification certificate), then its metadata.
    let pem = app
        .call(
            Method::POST,
            "/api/v1/sso/certificate",
            Some(&app.token),
            None,
        )
        .await
        .expect(201);
    assert!(
        pem.body
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    let download = app.get("/api/v1/sso/certificate").await.expect(200);
    assert_eq!(download.body, pem.body);
    let sp = app
        .call(Method::GET, &format!("/sso/{sys}/metadata"), None, None)
        .await
        .expect(200);
    let sp = sp.body.as_str().expect("SP metadata").to_string();
    assert!(
        sp.contains(&format!("entityID=\"{PUBLIC_URL}/sso/{sys}/metadata\"")),
        "{sp}"
    );
    assert!(
        sp.contains(&format!("Location=\"{PUBLIC_URL}/sso/{sys}/acs\"")),
        "{sp}"
    );
    let idp = start_idp(&sp, subject, port);
    let (status, metadata) = http(
        "GET",
        &format!("http://127.0.0.1:{}/idp/metadata", idp.port),
        "",
    )
    .await;
    assert_eq!(status, 200, "{metadata}");
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/sso/idp-metadata")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token))
        .header(header::CONTENT_TYPE, "application/samlmetadata+xml")
        .body(Body::from(metadata))
        .expect("request");
    let imported = app.send(req).await.expect(200);
    assert_eq!(
        imported.body["idp_entity_id"],
        json!(format!("http://127.0.0.1:{}/idp/metadata", idp.port))
    );
    app.call(
        Method::PUT,
        "/api/v1/sso/settings",
        Some(&app.token),
        Some(json!({ "enabled": true })),
    )
    .await
    .expect(200);
    Site { app, idp }
}

/// Follows a redirect to the identity provider like a browser and posts its form back to
/// the ACS: the ACS's answer.
async fn round_trip(site: &Site, idp_url: &str) -> (Resp, String) {
    assert!(
        idp_url.starts_with(&format!(
            "http://127.0.0.1:{}/sso/redirect?SAMLRequest=",
            site.idp.port
        )),
        "{idp_url}"
    );
    let (status, html) = http("GET", idp_url, "").await;
    assert_eq!(status, 200, "{html}");
    let response =
        unescape(&form_input(&html, "SAMLResponse").expect("SAMLResponse in the IdP's form"));
    let relay = unescape(&form_input(&html, "RelayState").unwrap_or_default());
    let body = format!(
        "SAMLResponse={}&RelayState={}",
        form_encode(&response),
        form_encode(&relay)
    );
    (post_acs(&site.app, &body).await, body)
}

/// The browser's first step: the gateway's redirect to the identity provider. The test
/// browser already holds its login-state cookie, which the gateway keeps using.
async fn start_login(app: &TestApp, query: &str) -> String {
    let r = start_login_as_test_browser(app, query).await.expect(303);
    let set = r.headers[header::SET_COOKIE].to_str().expect("cookie");
    assert_eq!(
        set.split(';').next(),
        Some(
            format!(
                "{}={TEST_BROWSER_SECRET}",
                lockgate_api::sso::LOGIN_STATE_COOKIE
            )
            .as_str()
        ),
        "the login-state cookie: {set}"
    );
    for attr in ["HttpOnly", "Secure", "SameSite=None", "Path=/"] {
        assert!(
            set.contains(attr),
            "the login-state cookie lacks {attr}: {set}"
        );
    }
    r.headers[header::LOCATION]
        .to_str()
        .expect("location")
        .to_string()
}

fn cookie_of(r: &Resp) -> String {
    let set = r.headers[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attr), "the session cookie lacks {attr}: {set}");
    }
    set.split(';').next().expect("name=value").to_string()
}

async fn with_cookie(
    app: &TestApp,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::COOKIE, cookie);
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    app.send(req).await
}

on_both!(login_through_pysaml2, |_app: TestApp| async move {
    let db = _app.db;
    drop(_app);
    let site = site(db, "alice@example.com").await;
    let app = &site.app;
    // The metadata again, from its URL (the plugin's granted outbound HTTP), then refreshed.
    let url = format!("http://127.0.0.1:{}/idp/metadata", site.idp.port);
    let r = app
        .post("/api/v1/sso/idp-metadata", json!({ "url": url }))
        .await
        .expect(200);
    assert_eq!(r.body["idp_metadata_url"], json!(url));
    let r = app
        .post("/api/v1/sso/idp-metadata/refresh", json!({}))
        .await
        .expect(200);
    assert_eq!(r.body["idp_entity_id"], json!(url));
    // A host the grant does not name is never contacted.
    let r = app
        .post(
            "/api/v1/sso/idp-metadata",
            json!({ "url": "http://127.0.0.1:9/metadata" }),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    app.post(
        "/api/v1/sso/idp-metadata",
        json!({ "url": "file:///etc/passwd" }),
    )
    .await
    .expect_field(422, "url");
    // The keys every login is verified with never come over plain http from the network.
    app.post(
        "/api/v1/sso/idp-metadata",
        json!({ "url": "http://idp.example.com/metadata" }),
    )
    .await
    .expect_field(422, "url");
    // Before enrolment the subject maps to no C-key: refused, never created.
    let url = start_login(app, "").await;
    let (r, _) = round_trip(&site, &url).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains("enrol"),
        "{:?}",
        r.body
    );
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    // Enrolment needs the C-key's own token, not one another administrator issued for it.
    let (_, issued) = app
        .admin_with("SSO-T", json!({ "c_key": "view" }), &[])
        .await;
    app.call(
        Method::POST,
        "/api/v1/sso/enrolment",
        Some(&issued),
        Some(json!({})),
    )
    .await
    .expect(403);
    // The administrator logged in with the C-key (a token) enrols the SSO identity.
    let e = app
        .call(
            Method::POST,
            "/api/v1/sso/enrolment",
            Some(&app.token),
            Some(json!({})),
        )
        .await
        .expect(201);
    let (r, _) = round_trip(&site, e.body["redirect_url"].as_str().unwrap()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["c_key_id"], json!(app.master_c_key_id));
    let ids = app.get("/api/v1/sso/identities").await.expect(200);
    assert_eq!(ids.body["items"][0]["subject"], json!("alice@example.com"));
    // Login: a session cookie and a redirect to the path asked for.
    let url = start_login(app, "?return_to=/api/v1/me").await;
    let (r, replay) = round_trip(&site, &url).await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    assert_eq!(r.headers[header::LOCATION], "/api/v1/me");
    let cookie = cookie_of(&r);
    assert!(
        cookie.starts_with("__Host-lockgate_session=lgs_"),
        "{cookie}"
    );
    // The same response again: refused (its request is used up, its assertion id known).
    let again = post_acs(app, &replay).await;
    assert_eq!(again.status, 403, "{:?}", again.body);
    assert!(again.headers.get(header::SET_COOKIE).is_none());
    // The session works like the C-key's token for reading, and says it is SSO.
    let s = with_cookie(app, Method::GET, "/api/v1/session", &cookie, None, None)
        .await
        .expect(200);
    assert_eq!(s.body["method"], json!("sso"));
    assert_eq!(s.body["c_key_id"], json!(app.master_c_key_id));
    let csrf = s.body["csrf_token"].as_str().unwrap().to_string();
    with_cookie(app, Method::GET, "/api/v1/me", &cookie, None, None)
        .await
        .expect(200);
    // A change needs the session's CSRF token.
    let domain = json!({ "name": "Annex" });
    with_cookie(
        app,
        Method::POST,
        "/api/v1/domains",
        &cookie,
        None,
        Some(domain.clone()),
    )
    .await
    .expect(403);
    with_cookie(
        app,
        Method::POST,
        "/api/v1/domains",
        &cookie,
        Some("0000"),
        Some(domain.clone()),
    )
    .await
    .expect(403);
    with_cookie(
        app,
        Method::POST,
        "/api/v1/domains",
        &cookie,
        Some(&csrf),
        Some(domain),
    )
    .await
    .expect(201);
    // C-key-only operations stay refused in an SSO session (DOMAIN.md §10).
    let r = with_cookie(
        app,
        Method::POST,
        "/api/v1/tokens",
        &cookie,
        Some(&csrf),
        Some(json!({ "name": "x" })),
    )
    .await
    .expect(403);
    assert_eq!(
        r.body["type"]
            .as_str()
            .map(|t| t.ends_with("c-key-login-required")),
        Some(true),
        "{:?}",
        r.body
    );
    let r = with_cookie(
        app,
        Method::POST,
        "/api/v1/keys/1/copy-configuration",
        &cookie,
        Some(&csrf),
        Some(json!({ "target_key_id": 2 })),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = with_cookie(
        app,
        Method::POST,
        "/api/v1/jobs/1/load",
        &cookie,
        Some(&csrf),
        Some(json!({ "c_key_id": app.master_c_key_id })),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = with_cookie(
        app,
        Method::POST,
        "/api/v1/sso/enrolment",
        &cookie,
        Some(&csrf),
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // An SSO session changes neither SSO itself nor makes PD credentials.
    let r = with_cookie(
        app,
        Method::PUT,
        "/api/v1/sso/settings",
        &cookie,
        Some(&csrf),
        Some(json!({ "enabled": false })),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = with_cookie(
        app,
        Method::POST,
        "/api/v1/remote-pds/1/enrolment-code",
        &cookie,
        Some(&csrf),
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // Unlocking a C-key and switching its automatic audit trail are C-key-only too.
    let (ck, _) = app
        .admin_with("SSO-U", json!({ "c_key": "view" }), &[])
        .await;
    app.patch(&format!("/api/v1/c-keys/{ck}"), json!({ "blocked": true }))
        .await
        .expect(200);
    for change in [
        json!({ "blocked": false }),
        json!({ "capabilities": { "automatic_audit_trail": true } }),
    ] {
        let req = Request::builder()
            .method(Method::PATCH)
            .uri(format!("/api/v1/c-keys/{ck}"))
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", &csrf)
            .header(header::CONTENT_TYPE, "application/merge-patch+json")
            .body(Body::from(change.to_string()))
            .expect("request");
        let r = app.send(req).await;
        assert_eq!(r.status, 403, "{change}: {:?}", r.body);
        assert!(
            r.body["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("c-key-login-required")),
            "{change}: {:?}",
            r.body
        );
    }
    // Logout ends the session on the server.
    let out = with_cookie(
        app,
        Method::DELETE,
        "/api/v1/session",
        &cookie,
        Some(&csrf),
        None,
    )
    .await
    .expect(204);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    with_cookie(app, Method::GET, "/api/v1/session", &cookie, None, None)
        .await
        .expect(401);
    // Another subject, unknown to the system, is refused.
    http(
        "POST",
        &format!("http://127.0.0.1:{}/control/subject", site.idp.port),
        "bob@example.com",
    )
    .await;
    let url = start_login(app, "").await;
    let (r, _) = round_trip(&site, &url).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // The return path is this gateway's only: no open redirect.
    app.call(
        Method::GET,
        &format!(
            "/sso/{}/login?return_to=https://evil.example/",
            app.system_id
        ),
        None,
        None,
    )
    .await
    .expect(422);
    app.call(
        Method::GET,
        &format!("/sso/{}/login?return_to=//evil.example/", app.system_id),
        None,
        None,
    )
    .await
    .expect(422);
    // Removing the identity ends its sessions and the next login is refused.
    app.delete(&format!("/api/v1/sso/identities/{}", app.master_c_key_id))
        .await
        .expect(204);
    let actions = app
        .event_actions(&format!("/api/v1/c-keys/{}", app.master_c_key_id))
        .await;
    for a in ["sso_identity_enrolled", "sso_login", "sso_identity_removed"] {
        assert!(actions.iter().any(|x| x == a), "{a} missing in {actions:?}");
    }
});

// Sessions end after the idle time and after the absolute lifetime; an expired request and a
// replayed assertion id are refused by the store.
on_both!(session_lifetimes, |app: TestApp| async move {
    use lockgate_store::sso::{SsoPurpose, VerifiedAssertion};
    let now = chrono::Utc::now();
    let sys = app.system_id;
    await_sso_request(
        &app,
        "_r1",
        SsoPurpose::Enrol,
        Some(app.master_c_key_id),
        now + chrono::Duration::minutes(5),
    )
    .await;
    let answer = VerifiedAssertion {
        request_id: "_r1",
        assertion_id: "_a1",
        not_on_or_after: now + chrono::Duration::minutes(5),
        browser_secret: Some(TEST_BROWSER_SECRET),
        subject: "carol",
    };
    app.store
        .complete_sso(sys, &answer, chrono::Duration::hours(1), now)
        .await
        .expect("enrolled");
    await_sso_request(
        &app,
        "_r2",
        SsoPurpose::Login,
        None,
        now + chrono::Duration::minutes(5),
    )
    .await;
    let login = VerifiedAssertion {
        request_id: "_r2",
        assertion_id: "_a2",
        ..answer.clone()
    };
    let out = app
        .store
        .complete_sso(sys, &login, chrono::Duration::hours(1), now)
        .await
        .expect("login");
    let lockgate_store::sso::SsoOutcome::LoggedIn { session, .. } = out else {
        panic!("not a login")
    };
    let idle = chrono::Duration::minutes(30);
    let auth = |at| app.store.authenticate_session(&session.secret, idle, at);
    assert!(
        auth(now + chrono::Duration::minutes(29))
            .await
            .unwrap()
            .is_some()
    );
    // Used at +29 min (moves the idle clock): still alive at +58, not at +90 (idle),
    assert!(
        auth(now + chrono::Duration::minutes(58))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        auth(now + chrono::Duration::minutes(90))
            .await
            .unwrap()
            .is_none()
    );
    // and never past the absolute lifetime, however used.
    assert!(
        auth(now + chrono::Duration::minutes(61))
            .await
            .unwrap()
            .is_none()
    );
    // An expired request is refused and an assertion id is refused a second time.
    await_sso_request(
        &app,
        "_r3",
        SsoPurpose::Login,
        None,
        now - chrono::Duration::seconds(1),
    )
    .await;
    let late = VerifiedAssertion {
        request_id: "_r3",
        assertion_id: "_a3",
        ..answer.clone()
    };
    assert!(
        app.store
            .complete_sso(sys, &late, chrono::Duration::hours(1), now)
            .await
            .is_err()
    );
    await_sso_request(
        &app,
        "_r4",
        SsoPurpose::Login,
        None,
        now + chrono::Duration::minutes(5),
    )
    .await;
    let replay = VerifiedAssertion {
        request_id: "_r4",
        assertion_id: "_a2",
        ..answer.clone()
    };
    let e = app
        .store
        .complete_sso(sys, &replay, chrono::Duration::hours(1), now)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("replay"), "{e}");
    // The same answer posted twice at the same moment: one login, one clean refusal.
    await_sso_request(
        &app,
        "_race",
        SsoPurpose::Login,
        None,
        now + chrono::Duration::minutes(5),
    )
    .await;
    let race = VerifiedAssertion {
        request_id: "_race",
        assertion_id: "_race_a",
        ..answer.clone()
    };
    let (a, b) = tokio::join!(
        app.store
            .complete_sso(sys, &race, chrono::Duration::hours(1), now),
        app.store
            .complete_sso(sys, &race, chrono::Duration::hours(1), now)
    );
    let outcomes = [a, b];
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(lockgate_store::StoreError::Refused { .. }))),
        "the loser must be refused, not fail: {outcomes:?}"
    );
    // Another subject attribute means other identities: every enrolment is forgotten and
    // every session ends; disabling SSO ends the sessions too.
    let mut settings = app.store.sso_settings(sys).await.expect("settings");
    settings.subject_attribute = Some("uid".into());
    app.store
        .put_sso_settings(sys, &settings, &lockgate_store::Actor::system())
        .await
        .expect("settings");
    assert!(
        app.store
            .sso_identities(sys)
            .await
            .expect("identities")
            .is_empty()
    );
    assert!(
        auth(now + chrono::Duration::minutes(1))
            .await
            .unwrap()
            .is_none()
    );
    // A C-key leaving its holder ends its SSO sessions and forgets its SSO identity (the next
    // holder enrols their own), as it revokes its tokens.
    let holder = app
        .post(
            "/api/v1/employees",
            json!({ "first_name": "Dora", "surname": "Holm", "email": "dora@example.com" }),
        )
        .await
        .expect(201)
        .id();
    let (ck, _) = app
        .admin_with("SSO-1", json!({ "c_key": "view" }), &[])
        .await;
    app.patch(
        &format!("/api/v1/c-keys/{ck}"),
        json!({ "status": "handed_out", "holder_id": holder }),
    )
    .await
    .expect(200);
    let t = chrono::Utc::now();
    for (req, assertion, purpose) in [
        ("_h1", "_ha1", SsoPurpose::Enrol),
        ("_h2", "_ha2", SsoPurpose::Login),
    ] {
        await_sso_request(
            &app,
            req,
            purpose,
            Some(ck),
            t + chrono::Duration::minutes(5),
        )
        .await;
        let a = VerifiedAssertion {
            request_id: req,
            assertion_id: assertion,
            not_on_or_after: t + chrono::Duration::minutes(5),
            browser_secret: Some(TEST_BROWSER_SECRET),
            subject: "dora",
        };
        app.store
            .complete_sso(sys, &a, chrono::Duration::hours(1), t)
            .await
            .expect("enrol, then login");
    }
    let secret: String =
        sqlx::query_scalar("SELECT session_hash FROM admin_sessions WHERE c_key_id = $1")
            .bind(ck)
            .fetch_one(app.store.pool())
            .await
            .expect("a session");
    assert!(!secret.is_empty());
    app.patch(
        &format!("/api/v1/c-keys/{ck}"),
        json!({ "status": "in_stock", "holder_id": null }),
    )
    .await
    .expect(200);
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM admin_sessions WHERE c_key_id = $1 AND ended_at IS NULL",
    )
    .bind(ck)
    .fetch_one(app.store.pool())
    .await
    .expect("count");
    assert_eq!(live, 0, "the handed-in C-key's session still lives");
    assert!(
        app.store
            .sso_identities(sys)
            .await
            .expect("identities")
            .iter()
            .all(|i| i.c_key_id != ck),
        "the handed-in C-key keeps its SSO identity"
    );
});

/// The attack corpus: signed by signxml, then mutated; each case posted to the ACS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_corpus_is_refused() {
    let site = site(Db::Sqlite, "alice@example.com").await;
    let app = &site.app;
    let sys = app.system_id;
    // Two logins awaited; their request ids, as the store keeps them.
    start_login(app, "").await;
    start_login(app, "").await;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT request_id FROM sso_requests WHERE system_id = $1 ORDER BY created_at, request_id",
    )
    .bind(sys)
    .fetch_all(app.store.pool())
    .await
    .expect("requests");
    assert_eq!(ids.len(), 2);
    // The corpus's valid subject is enrolled for the master C-key.
    enrol_sso(
        app,
        app.master_c_key_id,
        "alice@example.com",
        "_enrol",
        "_enrolment",
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new("python3")
        .arg(saml_peers().join("corpus.py"))
        .arg("--key")
        .arg(&site.idp.key)
        .arg("--cert")
        .arg(&site.idp.cert)
        .arg("--attacker-key")
        .arg(dir.path().join("attacker.key"))
        .arg("--attacker-cert")
        .arg(dir.path().join("attacker.crt"))
        .args([
            "--idp-entity-id",
            &format!("http://127.0.0.1:{}/idp/metadata", site.idp.port),
            "--sp-entity-id",
            &format!("{PUBLIC_URL}/sso/{sys}/metadata"),
            "--acs",
            &format!("{PUBLIC_URL}/sso/{sys}/acs"),
            "--request-id",
            &ids[0],
            "--other-request-id",
            &ids[1],
            "--subject",
            "alice@example.com",
            "--now",
            &chrono::Utc::now().timestamp().to_string(),
        ])
        .output()
        .expect("python3 runs tests/peers/saml/corpus.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let corpus: serde_json::Map<String, Value> =
        serde_json::from_slice(&out.stdout).expect("corpus JSON");
    let post = |case: &str| {
        let response = corpus[case]["response"]
            .as_str()
            .unwrap_or_else(|| panic!("case {case}"))
            .to_string();
        async move { post_acs(app, &format!("SAMLResponse={}", form_encode(&response))).await }
    };
    let sessions = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM admin_sessions")
            .fetch_one(app.store.pool())
            .await
            .expect("count")
    };
    let mut tally = lockgate_tests::attack::Tally::new("saml responses (sqlite)");
    let attacks: Vec<&String> = corpus
        .keys()
        .filter(|k| !matches!(k.as_str(), "valid" | "valid_other_request" | "replay"))
        .collect();
    assert!(
        attacks.len() >= 20,
        "the corpus has {} attack cases",
        attacks.len()
    );
    for case in attacks {
        let r = post(case).await;
        let refused = matches!(r.status.as_u16(), 403 | 413 | 422)
            && r.headers.get(header::SET_COOKIE).is_none();
        // Refused for its own flaw, not for an incidental one.
        let reason = match case.as_str() {
            c if c.starts_with("xsw") => "Assertion",
            "comment_injection" => "NameID",
            "doctype" => "DOCTYPE",
            "with_comments" | "xpath_transform" => "is not allowed",
            "duplicate_id" => "duplicate ID",
            "unsigned" => "not signed",
            "tampered" | "attacker_keyinfo" => "signature does not verify",
            "wrong_audience" => "Audience",
            "wrong_recipient" => "Recipient",
            "wrong_destination" => "Destination",
            "wrong_in_response_to" => "InResponseTo",
            "wrong_issuer" => "Issuer",
            "expired" => "expired",
            "not_yet_valid" => "not valid yet",
            "oversized" => "bytes",
            "deflate_bomb" => "never compressed",
            "encrypted_assertion" => "encrypted",
            "no_authn_statement" => "AuthnStatement",
            "unknown_condition" => "does not understand",
            "wrong_version" => "SAML 2.0",
            other => panic!("case {other} has no expected reason here"),
        };
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(reason),
            "{case}: expected a refusal naming '{reason}', got {detail}"
        );
        assert!(
            r.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{case}: {:?}",
            r.body
        );
        println!("saml attack {case}: {} {}", r.status, r.body["detail"]);
        tally.case(format!("{case} ({})", r.status), refused);
    }
    assert_eq!(sessions().await, 0, "an attack opened a session");
    // Login CSRF: a valid response pushed into a browser that did not start the login (no
    // login-state cookie, or another browser's) is refused, and uses nothing up.
    let valid = format!(
        "SAMLResponse={}",
        form_encode(corpus["valid"]["response"].as_str().expect("valid"))
    );
    for (case, secret) in [
        ("login_csrf_no_cookie", None),
        (
            "login_csrf_other_browser",
            Some("fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"),
        ),
    ] {
        let r = post_acs_from(app, &valid, secret).await;
        assert!(
            r.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("another browser")),
            "{case}: {:?}",
            r.body
        );
        tally.status(case, r.status.as_u16(), &[403]);
    }
    assert_eq!(sessions().await, 0, "a pushed login opened a session");
    // The valid response logs in; the same assertion for the other request is a replay;
    // that request is still good for a fresh assertion.
    let r = post("valid").await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    let r = post("replay").await;
    tally.status("replay", r.status.as_u16(), &[403]);
    assert!(
        r.body["detail"].as_str().unwrap().contains("replay"),
        "{:?}",
        r.body
    );
    let r = post("valid_other_request").await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    assert_eq!(sessions().await, 2);
    tally.finish();
}

// The public login endpoint keeps a row per call until it expires: the rows one system keeps
// at once are bounded, and expired ones make room again.
on_both!(awaited_requests_are_bounded, |app: TestApp| async move {
    use lockgate_store::sso::{AwaitedRequest, SsoPurpose};
    let now = chrono::Utc::now();
    let request = |id: &'static str, expires_at| AwaitedRequest {
        request_id: id,
        purpose: SsoPurpose::Login,
        c_key_id: None,
        return_to: None,
        browser_secret: Some(TEST_BROWSER_SECRET),
        expires_at,
        max_awaited: 3,
    };
    let soon = now + chrono::Duration::seconds(2);
    for id in ["_q1", "_q2", "_q3"] {
        app.store
            .create_sso_request(app.system_id, &request(id, soon))
            .await
            .expect("room");
    }
    let full = app
        .store
        .create_sso_request(
            app.system_id,
            &request("_q4", now + chrono::Duration::minutes(5)),
        )
        .await
        .unwrap_err();
    assert!(full.to_string().contains("the most it keeps"), "{full}");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    app.store
        .create_sso_request(
            app.system_id,
            &request("_q4", now + chrono::Duration::minutes(5)),
        )
        .await
        .expect("the expired ones made room");
});
