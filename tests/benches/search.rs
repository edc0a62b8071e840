//! Search latency benchmark: a locking system with 100 000 keys and 20 000 cylinders
//! (plus 5 000 employees holding keys), then `Store::search` latencies for prefix searches
//! with a tag filter, prefix-only searches and `*` wildcard searches, on a SQLite file
//! database and on PostgreSQL.
//!
//! Run with `cargo bench -p lockgate-tests --bench search`.
//! `LOCKGATE_BENCH_DB=sqlite|postgres` runs one database only;
//! `LOCKGATE_BENCH_EXPLAIN=1` also prints the query plans of representative searches and
//! times alternative SQL for them (on the throw-away database; the store is not changed).
//!
//! Seeding: the first 5 000 keys and 2 000 cylinders go through `Store::create_batch`
//! (its rate is reported); the rest are written by multi-row SQL INSERTs producing the
//! same rows (objects, object_refs, object_tags, a `created` event), checked against
//! the store-written rows. `LOCKGATE_BENCH_SEED=store` writes everything through the store.

mod common;

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use common::*;
use lockgate_model::{
    ObjectKind, Resource,
    cylinder::Cylinder,
    domain::Domain,
    key::Key,
    key_group::{KeyGroup, KeyGroupKind},
    person::Person,
    system::LockingSystem,
};
use lockgate_store::{Actor, Scope, SearchQuery, Store, fold};
use lockgate_tests::Db;
use serde_json::json;
use sqlx::Row;

const KEYS: usize = 100_000;
const CYLINDERS: usize = 20_000;
const EMPLOYEES: usize = 5_000;
const CHUNK: usize = 1_000;
/// Objects of each kind written through `Store::create_batch` (the rest by direct SQL,
/// unless LOCKGATE_BENCH_SEED=store asks for everything through the store).
const STORE_KEYS: usize = 5_000;
const STORE_CYLINDERS: usize = 2_000;
/// Rows per multi-row INSERT when seeding by SQL.
const QUERIES: usize = 500;
const SIDE_QUERIES: usize = 200;
const WARMUP: usize = 50;
const LIMIT: u32 = 50;

const KEY_TAGS: &[&str] = &[
    "Night shift",
    "Cleaning",
    "Facility",
    "IT",
    "Management",
    "Visitor pool",
    "Contractor",
    "Security",
    "HR",
    "Finance",
    "Lab",
    "Warehouse",
];
const CYLINDER_TAGS: &[&str] = &[
    "Entrance",
    "Office",
    "Server room",
    "Fire door",
    "Outdoor",
    "Lab",
    "Storage",
    "Restricted",
    "Ground floor",
    "1st floor",
    "2nd floor",
    "Basement",
];
/// (domain name, marking prefix)
const SITES: &[(&str, &str)] = &[
    ("Default", "GEN"),
    ("Headquarters", "HQ"),
    ("Plant 2", "P2"),
    ("Warehouse", "WH"),
    ("Lab Campus", "LAB"),
];
const KEY_PURPOSES: &[&str] = &[
    "Spare",
    "Pool",
    "Cleaning",
    "Caretaker",
    "Emergency",
    "Courier",
    "Service",
    "Workshop",
    "Reception",
    "Night watch",
];
const ROOM_KINDS: &[&str] = &[
    "Office",
    "Meeting room",
    "Server room",
    "Storage",
    "Kitchen",
    "Entrance",
    "Stairwell",
    "Archive",
    "Lab",
    "Workshop",
    "Garage",
    "Plant room",
    "Toilet",
    "Canteen",
];

/// What the benchmark knows about one seeded object, to build queries from.
#[derive(Debug, Clone)]
struct Seeded {
    name: String,
    marking: String,
}

/// How one kind was seeded.
#[derive(Debug, Default)]
struct SeedTimes {
    /// Objects written by `create_batch` and the time it took.
    store_n: usize,
    store: Duration,
    /// Objects written by direct SQL and the time it took.
    sql_n: usize,
    sql: Duration,
    /// Ids written each way (for the row check).
    store_ids: Vec<i64>,
    sql_ids: Vec<i64>,
}

impl SeedTimes {
    fn store_rate(&self) -> String {
        if self.store_n == 0 {
            "-".into()
        } else {
            format!("{:.0}/s", self.store_n as f64 / self.store.as_secs_f64())
        }
    }
    fn total(&self) -> Duration {
        self.store + self.sql
    }
}

/// The seeded system and what was written.
struct World {
    f: Fresh,
    keys: Vec<Seeded>,
    cylinders: Vec<Seeded>,
    seed_keys: SeedTimes,
    seed_cylinders: SeedTimes,
    seed_other: Duration,
}

/// Seed `bodies`: the first `through_store` by `create_batch` in chunks, the rest by SQL.
async fn seed_kind<R: Resource>(
    store: &Store,
    sys: &LockingSystem,
    kind: ObjectKind,
    bodies: Vec<R>,
    through_store: usize,
) -> SeedTimes {
    let mut t = SeedTimes::default();
    let all = Scope::all();
    let actor = Actor::system();
    let mut bodies = bodies.into_iter();
    let via_store: Vec<R> = bodies.by_ref().take(through_store).collect();
    let rest: Vec<R> = bodies.collect();
    let started = Instant::now();
    t.store_n = via_store.len();
    let mut pending = via_store.into_iter().peekable();
    while pending.peek().is_some() {
        let chunk: Vec<R> = pending.by_ref().take(CHUNK).collect();
        let ids = store
            .create_batch(sys, kind, &all, &actor, chunk)
            .await
            .expect("create_batch");
        t.store_ids.extend(ids);
    }
    t.store = started.elapsed();
    let started = Instant::now();
    t.sql_n = rest.len();
    for part in rest.chunks(10 * CHUNK) {
        t.sql_ids
            .extend(insert_direct(store, sys, kind, part).await);
    }
    t.sql = started.elapsed();
    t
}

/// Check that rows written by SQL look exactly like rows written by the store: the
/// projection columns derive from the body as the store derives them, the body is the
/// model's serde_json form, version 1, RFC 3339 timestamps, folded tags and references.
async fn check_rows<R: Resource>(store: &Store, sys_id: i64, kind: ObjectKind, ids: &[i64]) {
    for id in ids {
        let r = sqlx::query(
            "SELECT system_id, kind, domain_id, name, name_fold, marking, marking_fold, unique_name, \
             status, type, body, version, created_at, updated_at FROM objects WHERE id = $1",
        )
        .bind(*id)
        .fetch_one(store.pool())
        .await
        .expect("row");
        let body_s: String = r.try_get("body").expect("body");
        let body: R = serde_json::from_str(&body_s).expect("body decodes");
        assert_eq!(
            serde_json::to_string(&body).expect("json"),
            body_s,
            "{kind:?} {id}: body"
        );
        let p = body.projection();
        let s = |c: &str| r.try_get::<Option<String>, _>(c).expect("text column");
        assert_eq!(r.try_get::<i64, _>("system_id").expect("sys"), sys_id);
        assert_eq!(s("kind").as_deref(), Some(kind.as_str()));
        assert_eq!(
            r.try_get::<Option<i64>, _>("domain_id").expect("domain"),
            p.domain_id
        );
        assert_eq!(s("name"), Some(p.name.clone()), "{kind:?} {id}: name");
        assert_eq!(s("name_fold"), Some(fold(&p.name)));
        assert_eq!(s("marking"), p.marking.clone());
        assert_eq!(s("marking_fold"), p.marking.as_deref().map(fold));
        assert_eq!(s("unique_name"), p.unique_name.then(|| fold(&p.name)));
        assert_eq!(s("status").as_deref(), p.status);
        assert_eq!(s("type").as_deref(), p.type_);
        assert_eq!(r.try_get::<i64, _>("version").expect("version"), 1);
        let (c, u) = (
            s("created_at").expect("created"),
            s("updated_at").expect("updated"),
        );
        assert_eq!(c, u);
        let parsed = chrono::DateTime::parse_from_rfc3339(&c).expect("RFC 3339");
        assert_eq!(
            parsed
                .with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            c
        );
        let mut tags: Vec<String> = sqlx::query(
            "SELECT tag_fold FROM object_tags WHERE object_id = $1 AND system_id = $2 AND kind = $3",
        )
        .bind(*id)
        .bind(sys_id)
        .bind(kind.as_str())
        .fetch_all(store.pool())
        .await
        .expect("tags")
        .iter()
        .map(|r| r.try_get("tag_fold").expect("tag"))
        .collect();
        tags.sort();
        let mut want: Vec<String> = body.tags().iter().map(|t| fold(t)).collect();
        want.sort();
        want.dedup();
        assert_eq!(tags, want, "{kind:?} {id}: tags");
        let mut refs: Vec<(String, i64)> =
            sqlx::query("SELECT relation, to_id FROM object_refs WHERE from_id = $1")
                .bind(*id)
                .fetch_all(store.pool())
                .await
                .expect("refs")
                .iter()
                .map(|r| {
                    (
                        r.try_get("relation").expect("rel"),
                        r.try_get("to_id").expect("to"),
                    )
                })
                .collect();
        refs.sort();
        let mut want: Vec<(String, i64)> = body
            .references()
            .iter()
            .map(|r| (r.relation.to_string(), r.id))
            .collect();
        want.sort();
        want.dedup();
        assert_eq!(refs, want, "{kind:?} {id}: references");
        let events: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM events WHERE system_id = $1 AND object_id = $2 AND action = 'created'",
        )
        .bind(sys_id)
        .bind(*id)
        .fetch_one(store.pool())
        .await
        .expect("events")
        .try_get("n")
        .expect("n");
        assert_eq!(events, 1, "{kind:?} {id}: created event");
    }
}

fn key_body(
    rng: &mut Rng,
    n: usize,
    domains: &[i64],
    normal_groups: &[i64],
    dynamic_groups: &[i64],
    holders: &[(i64, String)],
) -> Key {
    let site = rng.below(SITES.len());
    let (_, code) = SITES[site];
    let ty = match rng.below(100) {
        0..50 => "normal",
        50..85 => "quartz",
        _ => "dynamic",
    };
    let group = if ty == "dynamic" {
        *rng.pick(dynamic_groups)
    } else {
        *rng.pick(normal_groups)
    };
    let status = match rng.below(100) {
        0..60 => "handed_out",
        60..88 => "in_stock",
        88..95 => "lost",
        _ => "broken",
    };
    let holder = match status {
        "handed_out" => Some(rng.pick(holders).clone()),
        "lost" | "broken" if rng.chance(50) => Some(rng.pick(holders).clone()),
        _ => None,
    };
    let name = match &holder {
        Some((_, person)) if rng.chance(80) => person.clone(),
        _ => format!(
            "{} key {code} {}",
            rng.pick(KEY_PURPOSES),
            1 + rng.below(400)
        ),
    };
    let gen2 = rng.chance(70);
    let ntags = 2 + rng.below(3); // 2–4, ~3 on average
    let mut body = json!({
        "name": name,
        "marking": format!("{code}-{:06}", n + 1),
        "type": ty,
        "key_group_id": group,
        "generation": if gen2 { "2" } else { "1" },
        "firmware": if gen2 { "12.2.0" } else { "6.3.1" },
        "connect": ty != "normal" && gen2 && rng.chance(30),
        "status": status,
        "domain_id": domains[site],
        "tags": rng.pick_distinct(KEY_TAGS, ntags),
    });
    if let Some((id, _)) = holder {
        body["holder_id"] = json!(id);
        body["date_out"] = json!(format!(
            "20{:02}-{:02}-{:02}",
            18 + rng.below(7),
            1 + rng.below(12),
            1 + rng.below(28)
        ));
    }
    if ty == "dynamic" {
        body["access_list_capacity"] = json!(500);
    }
    if ty != "normal" && rng.chance(20) {
        body["validity"] =
            json!({ "revalidation": { "interval_hours": 24 * (1 + rng.below(30)) } });
    }
    serde_json::from_value(body).expect("key body")
}

fn cylinder_body(rng: &mut Rng, n: usize, domains: &[i64], groups: &[i64]) -> Cylinder {
    let site = rng.below(SITES.len());
    let (site_name, code) = SITES[site];
    let building = (b'A' + rng.below(6) as u8) as char;
    let floor = rng.below(6);
    let room = 1 + rng.below(60);
    let kind = *rng.pick(ROOM_KINDS);
    let electronic = rng.chance(85);
    let side_b = match rng.below(100) {
        0..55 => None,
        55..80 => Some("electronic"),
        _ => Some("mechanical"),
    };
    let status = match rng.below(100) {
        0..80 => "installed",
        80..95 => "in_stock",
        _ => "broken",
    };
    let ntags = 2 + rng.below(3);
    let mut body = json!({
        "name": format!("{code} {building}{floor}.{room:02} {kind}"),
        "marking": format!("{code}-C{:05}", n + 1),
        "status": status,
        "location": format!("{site_name}, Building {building}, Floor {floor}"),
        "model": if side_b.is_some() { "Double cylinder" } else { "Half cylinder" },
        "length": format!("{}/{}", 30 + 5 * rng.below(4), 30 + 5 * rng.below(4)),
        "side_a": if electronic { "electronic" } else { "mechanical" },
        "domain_id": domains[site],
        "tags": rng.pick_distinct(CYLINDER_TAGS, ntags),
    });
    if let Some(b) = side_b {
        body["side_b"] = json!(b);
    }
    if electronic || side_b == Some("electronic") {
        body["firmware"] = json!("12.1.0");
        let n = 1 + rng.below(2);
        let entries: Vec<_> = rng
            .pick_distinct(groups, n)
            .into_iter()
            .map(|g| json!({ "key_group_id": g }))
            .collect();
        body["access_list"] = json!({ "key_groups": entries });
    }
    serde_json::from_value(body).expect("cylinder body")
}

fn seeded_of<R: lockgate_model::Resource>(b: &R) -> Seeded {
    let p = b.projection();
    Seeded {
        name: p.name,
        marking: p.marking.unwrap_or_default(),
    }
}

async fn seed(db: Db) -> World {
    let f = fresh(db).await;
    let store = &f.store;
    let sys = f.boot.system.clone();
    let all = Scope::all();
    let mut rng = Rng::new(0xC0FF_EE00);

    let started = Instant::now();
    let mut domains = vec![f.boot.default_domain_id];
    for (name, _) in &SITES[1..] {
        let d = store
            .create(
                &lockgate_store::WriteContext::system(&sys, chrono::Utc::now()),
                ObjectKind::Domain,
                Domain {
                    name: (*name).into(),
                    description: None,
                },
            )
            .await
            .expect("domain");
        domains.push(d.id);
    }
    let mut normal_groups = Vec::new();
    let mut dynamic_groups = Vec::new();
    for (i, dept) in [
        "Staff",
        "Management",
        "Facility",
        "IT",
        "Cleaning",
        "Security",
        "Lab",
        "Logistics",
        "Sales",
        "Finance",
        "HR",
        "Production",
        "Visitors",
        "Contractors",
        "Canteen",
        "Fleet",
    ]
    .iter()
    .enumerate()
    {
        let (kind, list) = if i % 4 == 3 {
            (KeyGroupKind::Dynamic, &mut dynamic_groups)
        } else {
            (KeyGroupKind::Normal, &mut normal_groups)
        };
        let g = store
            .create(
                &lockgate_store::WriteContext::system(&sys, chrono::Utc::now()),
                ObjectKind::KeyGroup,
                KeyGroup {
                    name: format!("{dept} keys"),
                    kind,
                    tags: vec![],
                },
            )
            .await
            .expect("key group");
        list.push(g.id);
    }
    let site_names: Vec<&str> = SITES.iter().map(|(n, _)| *n).collect();
    let csv = employee_csv(EMPLOYEES, 0xE11E, &site_names);
    let report = store
        .import_persons(
            &lockgate_store::WriteContext::system(&sys, chrono::Utc::now()),
            ObjectKind::Employee,
            csv.as_bytes(),
            false,
            &|_, _| {},
        )
        .await
        .expect("employees");
    assert_eq!(report.created, EMPLOYEES, "{:?}", report.invalid.first());
    let holders: Vec<(i64, String)> = store
        .list_all::<Person>(sys.id, ObjectKind::Employee, &all, 1_000_000)
        .await
        .expect("employees")
        .into_iter()
        .map(|p| (p.id, p.body.display_name()))
        .collect();
    let seed_other = started.elapsed();

    let all_store = std::env::var("LOCKGATE_BENCH_SEED").as_deref() == Ok("store");
    let key_bodies: Vec<Key> = (0..KEYS)
        .map(|n| {
            key_body(
                &mut rng,
                n,
                &domains,
                &normal_groups,
                &dynamic_groups,
                &holders,
            )
        })
        .collect();
    let keys: Vec<Seeded> = key_bodies.iter().map(seeded_of).collect();
    let seed_keys = seed_kind(
        store,
        &sys,
        ObjectKind::Key,
        key_bodies,
        if all_store { KEYS } else { STORE_KEYS },
    )
    .await;

    let groups: Vec<i64> = normal_groups
        .iter()
        .chain(&dynamic_groups)
        .copied()
        .collect();
    let cylinder_bodies: Vec<Cylinder> = (0..CYLINDERS)
        .map(|n| cylinder_body(&mut rng, n, &domains, &groups))
        .collect();
    let cylinders: Vec<Seeded> = cylinder_bodies.iter().map(seeded_of).collect();
    let seed_cylinders = seed_kind(
        store,
        &sys,
        ObjectKind::Cylinder,
        cylinder_bodies,
        if all_store {
            CYLINDERS
        } else {
            STORE_CYLINDERS
        },
    )
    .await;

    if db == Db::Postgres {
        // The test server runs without autovacuum; in production autovacuum analyses a
        // freshly bulk-loaded table within a minute. Analyse now so the figures are those
        // of a settled database and do not depend on timing.
        sqlx::query("ANALYZE")
            .execute(store.pool())
            .await
            .expect("analyze");
    }
    // Rows written either way must look the same.
    let sample = |t: &SeedTimes| -> Vec<i64> {
        t.store_ids
            .iter()
            .step_by(97)
            .chain(t.sql_ids.iter().step_by(997))
            .copied()
            .collect()
    };
    check_rows::<Key>(store, sys.id, ObjectKind::Key, &sample(&seed_keys)).await;
    check_rows::<Cylinder>(
        store,
        sys.id,
        ObjectKind::Cylinder,
        &sample(&seed_cylinders),
    )
    .await;
    eprintln!(
        "  [{}] seeded: other {:.1} s, keys {:.1} s ({} by create_batch in {:.1} s), cylinders {:.1} s ({} by create_batch in {:.1} s)",
        db_name(db),
        seed_other.as_secs_f64(),
        seed_keys.total().as_secs_f64(),
        seed_keys.store_n,
        seed_keys.store.as_secs_f64(),
        seed_cylinders.total().as_secs_f64(),
        seed_cylinders.store_n,
        seed_cylinders.store.as_secs_f64(),
    );
    World {
        f,
        keys,
        cylinders,
        seed_keys,
        seed_cylinders,
        seed_other,
    }
}

/// A search kind the benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    PrefixTag,
    Prefix,
    Wildcard,
}

/// The first `n` characters of the folded text.
fn prefix(s: &str, n: usize) -> String {
    fold(s).chars().take(n).collect()
}

fn make_query(rng: &mut Rng, shape: Shape, objects: &[Seeded], tags: &[&str]) -> SearchQuery {
    let o = rng.pick(objects);
    let source = if rng.chance(50) { &o.name } else { &o.marking };
    let q = match shape {
        Shape::PrefixTag | Shape::Prefix => prefix(source, 2 + rng.below(2)),
        Shape::Wildcard => {
            // "*abc": three characters from inside a name or marking, anywhere.
            let chars: Vec<char> = fold(source).chars().collect();
            let at = rng.below(chars.len().saturating_sub(3).max(1));
            let mid: String = chars[at..(at + 3).min(chars.len())].iter().collect();
            format!("*{mid}")
        }
    };
    SearchQuery {
        q: Some(q),
        tags: if shape == Shape::PrefixTag {
            vec![rng.pick(tags).to_string()]
        } else {
            vec![]
        },
        limit: LIMIT,
        ..SearchQuery::default()
    }
}

#[derive(Debug, Default)]
struct Stats {
    samples: Vec<Duration>,
    items: u64,
    total: u64,
    empty: u64,
}

impl Stats {
    fn p(&self, pct: f64) -> String {
        format!("{:.2}", ms(percentile(&self.samples, pct)))
    }
    fn max(&self) -> String {
        format!("{:.2}", ms(*self.samples.last().unwrap_or(&Duration::ZERO)))
    }
    fn avg_total(&self) -> String {
        format!(
            "{:.0}",
            self.total as f64 / self.samples.len().max(1) as f64
        )
    }
}

async fn measure(
    store: &Store,
    sys_id: i64,
    kind: ObjectKind,
    shape: Shape,
    objects: &[Seeded],
    tags: &[&str],
    n: usize,
) -> Stats {
    // Same queries on every database.
    let mut rng = Rng::new(0x5EA2C4 ^ (shape as u64) << 8 ^ kind as u64);
    let all = Scope::all();
    for _ in 0..WARMUP {
        let q = make_query(&mut rng, shape, objects, tags);
        store.search(sys_id, kind, &all, &q).await.expect("search");
    }
    let mut st = Stats::default();
    for _ in 0..n {
        let q = make_query(&mut rng, shape, objects, tags);
        let start = Instant::now();
        let page = store.search(sys_id, kind, &all, &q).await.expect("search");
        st.samples.push(start.elapsed());
        st.items += page.items.len() as u64;
        st.total += page.total;
        st.empty += u64::from(page.items.is_empty());
    }
    st.samples.sort_unstable();
    st
}

/// Alternative SQL for the prefix + tag search, timed against `Store::search` on the same
/// queries (diagnostics for LOCKGATE_BENCH_EXPLAIN; nothing here changes the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// `Store::search` as it is.
    Store,
    /// The store's three statements with the tag filter as a correlated EXISTS.
    Exists,
    /// Only the store's page statement (no counts), to split the cost.
    PageOnly,
    /// The page as two ordered range scans (name prefix, marking prefix) merged, and one
    /// statement counting both the total and the hidden matches (tag filter as in the store).
    Split,
    /// Split with the tag filter as a correlated EXISTS.
    SplitExists,
    /// Split, with the count stopping at 1 000 matches ("1000+").
    SplitCapped,
}

const PAGE_COLS: &str =
    "id, kind, name, marking, status, type, domain_id, version, updated_at, name_fold";
const TAG_IN: &str = "id IN (SELECT object_id FROM object_tags WHERE system_id = $1 AND kind = $2 AND tag_fold = $5)";
const TAG_EXISTS: &str =
    "EXISTS (SELECT 1 FROM object_tags t WHERE t.object_id = objects.id AND t.tag_fold = $5)";
const PREFIX: &str =
    "((name_fold >= $3 AND name_fold < $4) OR (marking_fold >= $3 AND marking_fold < $4))";
const SHOWN: &str = "(status IS NULL OR status NOT IN ($6, $7))";

fn variant_sql(v: Variant) -> Vec<String> {
    let base = "FROM objects WHERE system_id = $1 AND kind = $2";
    match v {
        Variant::Store => vec![],
        Variant::PageOnly => vec![format!(
            "SELECT {PAGE_COLS} {base} AND {PREFIX} AND {TAG_IN} AND {SHOWN} ORDER BY name_fold ASC, id ASC LIMIT 50 OFFSET 0"
        )],
        Variant::Exists => vec![
            format!(
                "SELECT {PAGE_COLS} {base} AND {PREFIX} AND {TAG_EXISTS} AND {SHOWN} ORDER BY name_fold ASC, id ASC LIMIT 50 OFFSET 0"
            ),
            format!("SELECT COUNT(*) AS n {base} AND {PREFIX} AND {TAG_EXISTS} AND {SHOWN}"),
            format!(
                "SELECT COUNT(*) AS n {base} AND {PREFIX} AND {TAG_EXISTS} AND status IN ($6, $7)"
            ),
        ],
        Variant::Split | Variant::SplitExists | Variant::SplitCapped => {
            let tag = if v == Variant::SplitExists {
                TAG_EXISTS
            } else {
                TAG_IN
            };
            let counted = format!("{base} AND {PREFIX} AND {tag}");
            let from = if v == Variant::SplitCapped {
                format!("FROM (SELECT status {counted} LIMIT 1001) AS m")
            } else {
                counted
            };
            vec![
                format!(
                    "SELECT * FROM (SELECT {PAGE_COLS} {base} AND name_fold >= $3 AND name_fold < $4 AND {tag} AND {SHOWN} ORDER BY name_fold, id LIMIT 50) AS a \
                     UNION SELECT * FROM (SELECT {PAGE_COLS} {base} AND marking_fold >= $3 AND marking_fold < $4 AND {tag} AND {SHOWN} ORDER BY name_fold, id LIMIT 50) AS b \
                     ORDER BY name_fold, id LIMIT 50"
                ),
                format!(
                    "SELECT COALESCE(SUM(CASE WHEN status IN ($6, $7) THEN 0 ELSE 1 END), 0) AS n, \
                     COALESCE(SUM(CASE WHEN status IN ($6, $7) THEN 1 ELSE 0 END), 0) AS hidden {from}"
                ),
            ]
        }
    }
}

/// Run one search the variant's way; returns the total it found.
async fn run_variant(w: &World, kind: ObjectKind, v: Variant, q: &SearchQuery) -> u64 {
    let sys = w.f.boot.system.id;
    if v == Variant::Store {
        return w
            .f
            .store
            .search(sys, kind, &Scope::all(), q)
            .await
            .expect("search")
            .total;
    }
    let text = q.q.clone().unwrap_or_default();
    let upper = format!("{text}\u{10FFFF}");
    let hidden = lockgate_store::objects::hidden_statuses(kind);
    let (h1, h2) = (
        hidden.first().copied().unwrap_or("-"),
        hidden.get(1).copied().unwrap_or("-"),
    );
    let mut conn = w.f.store.pool().acquire().await.expect("conn");
    let mut total = 0;
    for (i, sql) in variant_sql(v).iter().enumerate() {
        let rows = sqlx::query(sql)
            .bind(sys)
            .bind(kind.as_str())
            .bind(text.clone())
            .bind(upper.clone())
            .bind(fold(&q.tags[0]))
            .bind(h1)
            .bind(h2)
            .fetch_all(&mut *conn)
            .await
            .expect("variant");
        if i == 0 && rows.len() < q.limit as usize {
            // The store skips the total when the first page is not full.
            total = rows.len() as u64;
            if matches!(
                v,
                Variant::Split | Variant::SplitExists | Variant::SplitCapped
            ) {
                continue;
            }
        } else if i == 1 {
            total = rows[0].try_get::<i64, _>("n").expect("n") as u64;
        }
    }
    total
}

/// Time the variants on the same prefix + tag queries, before and after adding covering
/// indexes to this (throw-away) database, and print them with their plans.
async fn what_if(w: &World) {
    let db = w.f.db.db;
    let n = 150;
    let mut out = Vec::new();
    let states: &[&str] = match db {
        Db::Sqlite => &["as migrated", "+ ANALYZE", "+ covering indexes"],
        Db::Postgres => &["as migrated", "+ covering indexes"],
    };
    for state in states {
        if *state == "+ ANALYZE" {
            sqlx::query("ANALYZE")
                .execute(w.f.store.pool())
                .await
                .expect("analyze");
        }
        if *state == "+ covering indexes" {
            let stmts: &[&str] = match db {
                Db::Sqlite => &[
                    "CREATE INDEX bench_name_cov ON objects(system_id, kind, name_fold, id, marking_fold, status)",
                    "CREATE INDEX bench_marking_cov ON objects(system_id, kind, marking_fold, name_fold, id, status)",
                ],
                Db::Postgres => &[
                    "CREATE INDEX bench_name_cov ON objects(system_id, kind, name_fold, id) INCLUDE (marking_fold, status)",
                    "CREATE INDEX bench_marking_cov ON objects(system_id, kind, marking_fold, name_fold, id) INCLUDE (status)",
                    "VACUUM (ANALYZE) objects",
                    "VACUUM (ANALYZE) object_tags",
                ],
            };
            for s in stmts {
                sqlx::query(s)
                    .execute(w.f.store.pool())
                    .await
                    .expect("index");
            }
        }
        for (kind, objects, tags) in [
            (ObjectKind::Key, &w.keys, KEY_TAGS),
            (ObjectKind::Cylinder, &w.cylinders, CYLINDER_TAGS),
        ] {
            for v in [
                Variant::Store,
                Variant::PageOnly,
                Variant::Exists,
                Variant::Split,
                Variant::SplitExists,
                Variant::SplitCapped,
            ] {
                let mut rng = Rng::new(0xA1B2 ^ kind as u64);
                let mut samples = Vec::new();
                let mut totals = 0;
                for i in 0..n + 10 {
                    let q = make_query(&mut rng, Shape::PrefixTag, objects, tags);
                    let start = Instant::now();
                    let total = run_variant(w, kind, v, &q).await;
                    if i >= 10 {
                        samples.push(start.elapsed());
                        totals += total;
                    }
                }
                samples.sort_unstable();
                out.push(vec![
                    kind.as_str().to_string(),
                    state.to_string(),
                    format!("{v:?}"),
                    format!("{:.2}", ms(percentile(&samples, 50.0))),
                    format!("{:.2}", ms(percentile(&samples, 99.0))),
                    if v == Variant::PageOnly {
                        "-".to_string()
                    } else {
                        totals.to_string()
                    },
                ]);
            }
        }
    }
    println!("
What-if on {} ({n} prefix+tag queries each; Store = current Store::search; checksum = sum of totals, equal across uncapped variants):", db_name(db));
    print_table(
        &["kind", "schema", "variant", "p50 ms", "p99 ms", "checksum"],
        &out,
    );
    // Plans of the split variant with the covering indexes, for one late-alphabet prefix.
    let sys = w.f.boot.system.id;
    for sql in variant_sql(Variant::Split) {
        let text = match db {
            Db::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
            Db::Postgres => format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}"),
        };
        let rows = sqlx::query(&text)
            .bind(sys)
            .bind("key")
            .bind("sc")
            .bind("sc\u{10FFFF}")
            .bind("night shift")
            .bind("lost")
            .bind("broken")
            .fetch_all(w.f.store.pool())
            .await
            .expect("explain");
        println!("  [split variant, keys, q = 'sc', tag = 'night shift']");
        for r in rows {
            let line: String = match db {
                Db::Sqlite => r.try_get("detail").expect("detail"),
                Db::Postgres => r.try_get(0).expect("plan"),
            };
            println!("    {line}");
        }
    }
}

/// Print the plans of the statements `Store::search` runs for a prefix + tag search of keys
/// (the page, its total and the count of hidden lost/broken keys), mirroring its SQL.
async fn explain(w: &World, q: &str, tag: &str) {
    let db = w.f.db.db;
    let sys = w.f.boot.system.id;
    let upper = format!("{q}\u{10FFFF}");
    let where_ = "FROM objects WHERE system_id = $1 AND kind = $2 \
         AND ((name_fold >= $3 AND name_fold < $4) OR (marking_fold >= $5 AND marking_fold < $6)) \
         AND id IN (SELECT object_id FROM object_tags WHERE system_id = $7 AND kind = $8 AND tag_fold = $9)";
    let statements = [
        (
            "page",
            format!(
                "SELECT id, kind, name, marking, status, type, domain_id, version, updated_at {where_} \
                 AND (status IS NULL OR status NOT IN ($10, $11)) ORDER BY name_fold ASC, id ASC LIMIT 50 OFFSET 0"
            ),
        ),
        (
            "total",
            format!(
                "SELECT COUNT(*) AS n {where_} AND (status IS NULL OR status NOT IN ($10, $11))"
            ),
        ),
        (
            "hidden",
            format!("SELECT COUNT(*) AS n {where_} AND status IN ($10, $11)"),
        ),
    ];
    println!("\n{} plans, keys, q = '{q}', tag = '{tag}':", db_name(db));
    for (label, sql) in statements {
        let text = match db {
            Db::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
            Db::Postgres => format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"),
        };
        let rows = sqlx::query(&text)
            .bind(sys)
            .bind("key")
            .bind(q.to_string())
            .bind(upper.clone())
            .bind(q.to_string())
            .bind(upper.clone())
            .bind(sys)
            .bind("key")
            .bind(fold(tag))
            .bind("lost")
            .bind("broken")
            .fetch_all(w.f.store.pool())
            .await
            .expect("explain");
        println!("  [{label}]");
        for r in rows {
            let line: String = match db {
                Db::Sqlite => r.try_get("detail").expect("detail"),
                Db::Postgres => r.try_get(0).expect("plan"),
            };
            println!("    {line}");
        }
    }
}

fn main() {
    let wall = Instant::now();
    let explain_plans = std::env::var_os("LOCKGATE_BENCH_EXPLAIN").is_some();
    println!(
        "lockgate search benchmark: {KEYS} keys + {CYLINDERS} cylinders (+ {EMPLOYEES} employees) per database"
    );
    println!(
        "{QUERIES} prefix+tag queries and {SIDE_QUERIES} prefix-only / wildcard queries per kind after {WARMUP} warm-up queries; limit {LIMIT}; times in ms\n"
    );
    let rt = runtime();
    let mut seeding = Vec::new();
    let mut tag_rows = Vec::new();
    let mut results = Vec::new();
    let mut shapes = Vec::new();
    for db in databases() {
        let db_wall = Instant::now();
        let w = rt.block_on(seed(db));
        let sys_id = w.f.boot.system.id;
        let counts: Vec<(String, i64)> = rt.block_on(async {
            sqlx::query("SELECT kind, COUNT(*) AS n FROM objects GROUP BY kind ORDER BY kind")
                .fetch_all(w.f.store.pool())
                .await
                .expect("counts")
                .iter()
                .map(|r| (r.try_get("kind").expect("kind"), r.try_get("n").expect("n")))
                .collect()
        });
        let n_of = |k: &str| {
            counts
                .iter()
                .find(|(c, _)| c == k)
                .map(|c| c.1)
                .unwrap_or(0)
        };
        assert_eq!(n_of("key") as usize, KEYS);
        assert_eq!(n_of("cylinder") as usize, CYLINDERS);
        let tags: i64 = rt
            .block_on(
                sqlx::query("SELECT COUNT(*) AS n FROM object_tags").fetch_one(w.f.store.pool()),
            )
            .expect("tags")
            .try_get("n")
            .expect("n");
        for (kind, t) in [("key", &w.seed_keys), ("cylinder", &w.seed_cylinders)] {
            seeding.push(vec![
                db_name(db).to_string(),
                kind.to_string(),
                n_of(kind).to_string(),
                format!("{} in {:.1} s", t.store_n, t.store.as_secs_f64()),
                t.store_rate(),
                format!("{} in {:.1} s", t.sql_n, t.sql.as_secs_f64()),
                format!("{:.1}", t.total().as_secs_f64()),
            ]);
        }
        tag_rows.push(format!(
            "{}: {} object_tags rows; domains, key groups and {EMPLOYEES} employees (CSV import) in {:.1} s",
            db_name(db),
            tags,
            w.seed_other.as_secs_f64()
        ));
        for (kind, objects, tag_vocab) in [
            (ObjectKind::Key, &w.keys, KEY_TAGS),
            (ObjectKind::Cylinder, &w.cylinders, CYLINDER_TAGS),
        ] {
            let store = &w.f.store;
            let main = rt.block_on(measure(
                store,
                sys_id,
                kind,
                Shape::PrefixTag,
                objects,
                tag_vocab,
                QUERIES,
            ));
            let pre = rt.block_on(measure(
                store,
                sys_id,
                kind,
                Shape::Prefix,
                objects,
                tag_vocab,
                SIDE_QUERIES,
            ));
            let wild = rt.block_on(measure(
                store,
                sys_id,
                kind,
                Shape::Wildcard,
                objects,
                tag_vocab,
                SIDE_QUERIES,
            ));
            results.push(vec![
                db_name(db).to_string(),
                kind.as_str().to_string(),
                main.samples.len().to_string(),
                main.p(50.0),
                main.p(99.0),
                main.max(),
                main.avg_total(),
                pre.p(50.0),
                wild.p(50.0),
            ]);
            for (label, st) in [
                ("prefix + tag", &main),
                ("prefix only", &pre),
                ("wildcard *", &wild),
            ] {
                shapes.push(vec![
                    db_name(db).to_string(),
                    kind.as_str().to_string(),
                    label.to_string(),
                    st.samples.len().to_string(),
                    st.p(50.0),
                    st.p(90.0),
                    st.p(99.0),
                    st.max(),
                    st.avg_total(),
                    st.empty.to_string(),
                ]);
            }
        }
        if explain_plans {
            rt.block_on(explain(&w, "sc", "Night shift"));
            rt.block_on(explain(&w, "hq", "Security"));
            rt.block_on(what_if(&w));
        }
        drop(w);
        eprintln!(
            "  [{}] done in {:.1} s",
            db_name(db),
            db_wall.elapsed().as_secs_f64()
        );
    }
    println!(
        "Seeding (first objects through Store::create_batch, {CHUNK} per call; the rest by multi-row SQL INSERTs of identical rows):"
    );
    print_table(
        &[
            "database",
            "kind",
            "rows",
            "create_batch",
            "create_batch rate",
            "direct SQL",
            "total s",
        ],
        &seeding,
    );
    for t in &tag_rows {
        println!("{t}");
    }
    println!(
        "\nStore::search latency, ms (prefix+tag: 2–3 character prefix of a name or marking + one tag):"
    );
    print_table(
        &[
            "database",
            "kind",
            "queries",
            "prefix+tag p50",
            "p99",
            "max",
            "avg total",
            "prefix-only p50",
            "wildcard p50",
        ],
        &results,
    );
    println!("\nAll shapes (avg total = mean `total` of the page; empty = queries with no match):");
    print_table(
        &[
            "database",
            "kind",
            "shape",
            "queries",
            "p50",
            "p90",
            "p99",
            "max",
            "avg total",
            "empty",
        ],
        &shapes,
    );
    println!();
    drop(rt);
    print_peak_rss();
    println!(
        "Total bench wall time: {:.1} s",
        wall.elapsed().as_secs_f64()
    );
}
