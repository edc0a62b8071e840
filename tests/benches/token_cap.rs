//! Cost of the per-request token cap (issue 12): a token issued by another C-key
//! (`api_tokens.issued_by` set to that C-key) is capped at the issuer's current rights and
//! domains on every request by the `Admin` extractor (`core/api/src/authz.rs`): the issuer's
//! C-key and roles are read and the permissions and scopes intersected. A self-issued token
//! skips that step. This benchmark measures what the cap adds to a request.
//!
//! Set-up per database (a SQLite file and a PostgreSQL database on 127.0.0.1:5432, made by
//! `lockgate_tests::TestApp`): 2 000 keys seeded through `Store::create_batch`, a normal
//! C-key holding the pre-defined super-administrator role, and two tokens, both minted
//! through `POST /api/v1/tokens`:
//!
//! - **self-issued**: the master mints a token for its own C-key (not capped);
//! - **capped**: the master mints a token for the other super-administrator C-key
//!   (`issued_by` = the master, so every request is capped at the master's rights).
//!
//! Both see the same keys. The timed request is `GET /api/v1/keys?q=Bench&limit=50` (a
//! prefix search matching every seeded key, first page) sent through the real router with
//! `oneshot`, body read in full; the two tokens alternate (ABBA order) so that drift of the
//! machine or the database affects both alike. After a warm-up, p50/p99/mean per token and
//! the difference are printed.
//!
//! Run: `cargo bench -p lockgate-tests --bench token_cap`.
//! `LOCKGATE_BENCH_DB=sqlite|postgres` runs one database only; `LOCKGATE_BENCH_REQUESTS`
//! sets the requests per token (default 2000).

mod common;

use std::time::{Duration, Instant};

use axum::http::Method;
use common::{databases, db_name, ms, percentile, print_table, runtime};
use lockgate_model::{ObjectKind, key::Key};
use lockgate_store::{Actor, Scope};
use lockgate_tests::{Db, TestApp};
use serde_json::json;

const KEYS: usize = 2_000;
const CHUNK: usize = 500;
const WARMUP: usize = 100;
const QUERY: &str = "/api/v1/keys?q=Bench&limit=50";

/// Timings of one token, sorted.
struct Samples {
    sorted: Vec<Duration>,
}

impl Samples {
    fn new(mut v: Vec<Duration>) -> Samples {
        v.sort_unstable();
        Samples { sorted: v }
    }

    fn p(&self, p: f64) -> Duration {
        percentile(&self.sorted, p)
    }

    fn mean(&self) -> Duration {
        self.sorted.iter().sum::<Duration>() / self.sorted.len().max(1) as u32
    }
}

/// Mint a token through the API with the master's token (`c_key_id` None: for the master).
async fn mint(app: &TestApp, name: &str, c_key_id: Option<i64>) -> String {
    let mut body = json!({ "name": name });
    if let Some(id) = c_key_id {
        body["c_key_id"] = json!(id);
    }
    let r = app.post("/api/v1/tokens", body).await.expect(201);
    println!("  token {name:<12} info {}", r.body["info"]);
    r.body["token"].as_str().expect("token").to_string()
}

/// One timed request; the item count of the page (a sanity check that both see the same).
async fn timed(app: &TestApp, token: &str) -> (Duration, usize) {
    let started = Instant::now();
    let r = app.call(Method::GET, QUERY, Some(token), None).await;
    let took = started.elapsed();
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    (took, r.body["items"].as_array().map_or(0, Vec::len))
}

async fn run(db: Db, n: usize) -> Vec<Vec<String>> {
    let app = TestApp::new(db).await;
    let sys = app.store.system(app.system_id).await.expect("system");
    // Keys, through the store in a few transactions.
    let group = app.key_group("Staff", "normal").await;
    let seeding = Instant::now();
    let mut made = 0;
    while made < KEYS {
        let chunk: Vec<Key> = (made..(made + CHUNK).min(KEYS))
            .map(|i| {
                serde_json::from_value(json!({
                    "name": format!("Bench key {i:05}"),
                    "marking": format!("BK-{i:05}"),
                    "type": "normal",
                    "generation": "2",
                    "key_group_id": group,
                    "domain_id": app.default_domain,
                }))
                .expect("a key body")
            })
            .collect();
        made += chunk.len();
        app.store
            .create_batch(
                &sys,
                ObjectKind::Key,
                &Scope::all(),
                &Actor::system(),
                chunk,
            )
            .await
            .expect("create_batch");
    }
    println!(
        "{}: {KEYS} keys seeded in {:.0} ms",
        db_name(db),
        ms(seeding.elapsed())
    );
    // A normal C-key with the pre-defined super-administrator role.
    let roles = app
        .get("/api/v1/roles?limit=100&with_body=true")
        .await
        .expect(200);
    let sup_role = roles.body["items"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|r| r["body"]["predefined"] == "super_administrator")
                .and_then(|r| r["id"].as_i64())
        })
        .expect("the pre-defined super-administrator role");
    let ck_group =
        match app.get("/api/v1/key-groups?type=normal_c_key").await.body["items"][0]["id"].as_i64()
        {
            Some(g) => g,
            None => app.key_group("C-keys", "normal_c_key").await,
        };
    let target = app
        .post(
            "/api/v1/c-keys",
            json!({ "name": "Super S1", "marking": "S1", "kind": "normal",
                    "key_group_id": ck_group, "role_ids": [sup_role],
                    "domain_ids": [app.default_domain] }),
        )
        .await
        .expect(201)
        .id();
    let own = mint(&app, "self-issued", None).await;
    let capped = mint(&app, "capped", Some(target)).await;

    let mut a = Vec::with_capacity(n);
    let mut b = Vec::with_capacity(n);
    for _ in 0..WARMUP {
        let (_, ia) = timed(&app, &own).await;
        let (_, ib) = timed(&app, &capped).await;
        assert_eq!(ia, ib, "both tokens see the same page");
    }
    for i in 0..n {
        // ABBA: each token goes first half of the time.
        if i % 2 == 0 {
            a.push(timed(&app, &own).await.0);
            b.push(timed(&app, &capped).await.0);
        } else {
            b.push(timed(&app, &capped).await.0);
            a.push(timed(&app, &own).await.0);
        }
    }
    let (a, b) = (Samples::new(a), Samples::new(b));
    let row = |label: &str, s: &Samples| {
        vec![
            format!("{} {label}", db_name(db)),
            format!("{:.3}", ms(s.p(50.0))),
            format!("{:.3}", ms(s.p(99.0))),
            format!("{:.3}", ms(s.mean())),
        ]
    };
    let diff = |f: &dyn Fn(&Samples) -> Duration| {
        let (x, y) = (ms(f(&a)), ms(f(&b)));
        format!("{:+.3} ({:+.1} %)", y - x, (y - x) / x * 100.0)
    };
    vec![
        row("self-issued", &a),
        row("capped (issued by another C-key)", &b),
        vec![
            format!("{} difference capped - self", db_name(db)),
            diff(&|s| s.p(50.0)),
            diff(&|s| s.p(99.0)),
            diff(&|s| s.mean()),
        ],
    ]
}

fn main() {
    let n: usize = std::env::var("LOCKGATE_BENCH_REQUESTS")
        .ok()
        .map(|v| v.parse().expect("LOCKGATE_BENCH_REQUESTS is a number"))
        .unwrap_or(2_000);
    println!(
        "Token cap: {n} interleaved requests per token (after {WARMUP} warm-up each) of GET {QUERY} over {KEYS} keys"
    );
    let rt = runtime();
    let mut rows = Vec::new();
    for db in databases() {
        rows.extend(rt.block_on(run(db, n)));
    }
    print_table(&["token", "p50 ms", "p99 ms", "mean ms"], &rows);
}
