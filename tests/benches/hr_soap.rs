//! HR web service benchmark (docs/connectors/hr-web-services.md): `LOCKGATE_BENCH_USERS`
//! employees (default 10 000) created through `UpsertEmployees` of the bundled `hr-soap`
//! plugin at `/ws/hr`, in batches of `LOCKGATE_BENCH_BATCH` (default 500), on SQLite, against
//! the floor measured in the same run: the employee CSV import of the same persons
//! (`Store::import_persons`, one transaction). Then the same batches again (every employee
//! unchanged: the matching cost alone).
//!
//! Requests go through the router in process (no TCP, no TLS): the figures are the gateway's
//! cost per batch (token and role check, the plugin's SOAP parsing and mapping in wasm, the
//! host call, one all-or-nothing transaction per batch).
//!
//! Run: `cargo bench -p lockgate-tests --bench hr_soap`.

mod common;

use std::time::{Duration, Instant};

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use common::*;
use lockgate_tests::{Db, TestApp};

/// The XML elements of the optional fields and their columns in `employee_row`.
const FIELDS: [(&str, usize); 17] = [
    ("title", 1),
    ("email", 5),
    ("phone", 6),
    ("organisation", 7),
    ("department", 8),
    ("street", 9),
    ("postcode", 10),
    ("language", 11),
    ("region", 12),
    ("job", 13),
    ("city", 14),
    ("state", 15),
    ("country", 16),
    ("companyAddress", 17),
    ("location", 18),
    ("mobilePhone", 19),
    ("gmdText", 20),
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One `UpsertEmployees` envelope of these rows.
fn envelope(rows: &[[String; 21]]) -> String {
    let mut out = String::from(
        "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:hr=\"urn:lockgate:hr:1\"><soap:Body><hr:UpsertEmployees>",
    );
    for r in rows {
        out.push_str("<hr:employee>");
        for (name, col) in [("identifier", 0), ("firstName", 2), ("lastName", 3)]
            .into_iter()
            .chain(FIELDS)
        {
            if !r[col].is_empty() {
                out.push_str(&format!("<hr:{name}>{}</hr:{name}>", escape(&r[col])));
            }
        }
        out.push_str("</hr:employee>");
    }
    out.push_str("</hr:UpsertEmployees></soap:Body></soap:Envelope>");
    out
}

/// The number in `<...:NAME>N</...:NAME>` (or unprefixed) of a response.
fn count(text: &str, name: &str) -> usize {
    text.split(&format!("{name}>"))
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

async fn upsert(app: &TestApp, token: &str, body: &str) -> (Duration, String) {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/ws/hr")
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .header("SOAPAction", "\"urn:lockgate:hr:1/UpsertEmployees\"")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body.to_owned()))
        .expect("request");
    let start = Instant::now();
    let r = app.send(req).await;
    let took = start.elapsed();
    let text = r.body.as_str().map(str::to_owned).unwrap_or_default();
    assert_eq!(r.status.as_u16(), 200, "{text}");
    (took, text)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::var("LOCKGATE_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let batch: usize = std::env::var("LOCKGATE_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let mut rng = Rng::new(7);
    let rows: Vec<[String; 21]> = (0..n).map(|i| employee_row(&mut rng, i, &[])).collect();
    let bodies: Vec<String> = rows.chunks(batch).map(envelope).collect();

    // Floor: the CSV import of the same persons, one transaction.
    let csv_rate = csv_import_floor(n).await;

    let (listener, url) = lockgate_tests::loopback_listener().await;
    drop(listener);
    let app = TestApp::new(Db::Sqlite)
        .await
        .with_hr_web_service(&format!("{url}/ws/hr"));
    let (_, token) = app
        .web_service_client("BENCH", &[app.default_domain], "web_service")
        .await;
    // One small call first: the plugin's instance is compiled and warm.
    let warm_up = employee_row(&mut Rng::new(99), n + 1, &[]);
    upsert(&app, &token, &envelope(&[warm_up])).await;

    for (round, counted) in [("create", "created"), ("unchanged", "unchanged")] {
        let start = Instant::now();
        let mut times = Vec::with_capacity(bodies.len());
        let mut done = 0;
        for body in &bodies {
            let (took, text) = upsert(&app, &token, body).await;
            done += count(&text, counted);
            times.push(took);
        }
        assert_eq!(done, n, "every employee {counted}");
        let total = start.elapsed();
        let rate = n as f64 / total.as_secs_f64();
        rate_report(
            &format!("UpsertEmployees, batches of {batch}, {round}"),
            times,
            total,
        );
        println!(
            "  = {rate:.0} employees/s; the CSV import is {:.1}x faster",
            csv_rate / rate
        );
    }
    print_peak_rss();
}
