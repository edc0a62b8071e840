//! Helpers of the SAML single sign-on tests and benchmark (`tests/tests/sso.rs`,
//! `tests/benches/saml_acs.rs`): the Python peers' folder, form encoding, the ACS post, and an
//! SSO identity enrolled straight through the store.

use std::path::PathBuf;

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use lockgate_store::sso::{AwaitedRequest, SsoPurpose, VerifiedAssertion};

use crate::{Resp, TestApp};

/// `tests/peers/saml`: the identity provider (`idp.py`) and the corpus signer (`corpus.py`).
pub fn saml_peers() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/saml")
}

/// Percent-encodes a form value (RFC 3986 unreserved characters kept).
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The login-state secret of the test browser: logins [`await_sso_request`] records are
/// bound to it, and [`post_acs`] sends it in the login-state cookie.
pub const TEST_BROWSER_SECRET: &str =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// `GET /sso/{system}/login{query}` from the test browser, which already holds its login-state
/// cookie (the gateway keeps using it).
pub async fn start_login_as_test_browser(app: &TestApp, query: &str) -> Resp {
    app.send(
        Request::builder()
            .uri(format!("/sso/{}/login{query}", app.system_id))
            .header(
                header::COOKIE,
                format!(
                    "{}={TEST_BROWSER_SECRET}",
                    lockgate_api::sso::LOGIN_STATE_COOKIE
                ),
            )
            .body(Body::empty())
            .expect("request"),
    )
    .await
}

/// Posts a form body to the system's ACS, as the test browser does (with its login-state
/// cookie).
pub async fn post_acs(app: &TestApp, body: &str) -> Resp {
    post_acs_from(app, body, Some(TEST_BROWSER_SECRET)).await
}

/// Posts a form body to the system's ACS from a browser holding this login-state secret
/// (none: a browser without the cookie).
pub async fn post_acs_from(app: &TestApp, body: &str, browser_secret: Option<&str>) -> Resp {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("/sso/{}/acs", app.system_id))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(s) = browser_secret {
        req = req.header(
            header::COOKIE,
            format!("{}={s}", lockgate_api::sso::LOGIN_STATE_COOKIE),
        );
    }
    app.send(req.body(Body::from(body.to_string())).expect("request"))
        .await
}

/// Records an authentication request awaiting the identity provider's answer, as the login
/// (`c_key_id` none) or enrolment endpoints do.
pub async fn await_sso_request(
    app: &TestApp,
    request_id: &str,
    purpose: SsoPurpose,
    c_key_id: Option<i64>,
    expires_at: chrono::DateTime<chrono::Utc>,
) {
    app.store
        .create_sso_request(
            app.system_id,
            &AwaitedRequest {
                request_id,
                purpose,
                c_key_id,
                return_to: None,
                browser_secret: (purpose == SsoPurpose::Login).then_some(TEST_BROWSER_SECRET),
                expires_at,
                max_awaited: lockgate_api::sso::MAX_AWAITED_REQUESTS,
            },
        )
        .await
        .expect("request");
}

/// Enrols `subject` for `c_key_id` through the store, as a verified enrolment answer does
/// (request `request_id`, assertion `assertion_id`).
pub async fn enrol_sso(
    app: &TestApp,
    c_key_id: i64,
    subject: &str,
    request_id: &str,
    assertion_id: &str,
) {
    let now = chrono::Utc::now();
    await_sso_request(
        app,
        request_id,
        SsoPurpose::Enrol,
        Some(c_key_id),
        now + chrono::Duration::minutes(5),
    )
    .await;
    app.store
        .complete_sso(
            app.system_id,
            &VerifiedAssertion {
                request_id,
                assertion_id,
                not_on_or_after: now + chrono::Duration::minutes(5),
                subject,
                browser_secret: None,
            },
            chrono::Duration::hours(1),
            now,
        )
        .await
        .expect("enrolled");
}
