//! SCIM provisioning benchmark (docs/connectors/scim.md): `LOCKGATE_BENCH_USERS` users
//! (default 10 000) created through `POST /scim/v2/Users` of the real API on SQLite, one at a
//! time and from 8 concurrent clients, against the floor measured in the same run: the
//! employee CSV import of the same persons (`Store::import_persons`, one transaction).
//!
//! Requests go through the router in process (no TCP, no TLS): the figures are the gateway's
//! own cost per user (token and role check, JSON, mapping, one transaction per user).
//!
//! Run: `cargo bench -p lockgate-tests --bench scim_users`.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::http::Method;
use common::*;
use lockgate_tests::{Db, TestApp};
use serde_json::{Value, json};

const CLIENTS: usize = 8;

/// The SCIM user of one generated employee row (the columns of `employee_row`).
fn scim_user(row: &[String; 21]) -> Value {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ],
        "userName": row[5],
        "name": { "givenName": row[2], "familyName": row[3] },
        "title": row[13],
        "preferredLanguage": row[11],
        "emails": [{ "value": row[5], "type": "work", "primary": true }],
        "phoneNumbers": [{ "value": row[6], "type": "work" }, { "value": row[19], "type": "mobile" }],
        "addresses": [{ "streetAddress": row[9], "postalCode": row[10], "locality": row[14], "region": row[15], "country": row[16], "type": "work", "primary": true }],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": row[0], "organization": row[7], "department": row[8]
        }
    })
}

async fn create(app: &TestApp, token: &str, user: &Value) -> Duration {
    let start = Instant::now();
    let r = app
        .scim_call(token, Method::POST, "/scim/v2/Users", Some(user), &[])
        .await;
    let took = start.elapsed();
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    took
}

async fn app() -> (Arc<TestApp>, String) {
    let app = TestApp::new(Db::Sqlite)
        .await
        .with_scim("https://lockgate.bench");
    let (_, token) = app.scim_client("BENCH").await;
    (Arc::new(app), token)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::var("LOCKGATE_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut rng = Rng::new(7);
    let rows: Vec<[String; 21]> = (0..n).map(|i| employee_row(&mut rng, i, &[])).collect();
    let users: Arc<Vec<Value>> = Arc::new(rows.iter().map(scim_user).collect());

    // Floor: the CSV import of the same persons, one transaction.
    let csv_rate = csv_import_floor(n).await;

    // Sequential: one client.
    let (a, token) = app().await;
    let start = Instant::now();
    let mut times = Vec::with_capacity(n);
    for u in users.iter() {
        times.push(create(&a, &token, u).await);
    }
    let seq = rate_report("POST /scim/v2/Users, 1 client", times, start.elapsed());

    // Concurrent: 8 clients, each its share.
    let (a, token) = app().await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (a, token, users) = (a.clone(), token.clone(), users.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for u in users.iter().skip(c).step_by(CLIENTS) {
                times.push(create(&a, &token, u).await);
            }
            times
        }));
    }
    let mut times = Vec::with_capacity(n);
    for t in tasks {
        times.extend(t.await.expect("client"));
    }
    let conc = rate_report(
        &format!("POST /scim/v2/Users, {CLIENTS} clients"),
        times,
        start.elapsed(),
    );
    println!(
        "SCIM vs CSV import: 1 client {:.1}x slower, {CLIENTS} clients {:.1}x slower (a SCIM user is one request and one transaction; the import is one transaction for all)",
        csv_rate / seq,
        csv_rate / conc
    );
}
