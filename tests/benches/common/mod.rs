//! Shared pieces of the lockgate benchmarks: a deterministic random source, realistic
//! employee data (names, e-mails, addresses) in the import CSV format, a fresh store on
//! a fresh database, seeding rows exactly as the store writes them, timing statistics and
//! peak memory.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use sqlx::Row;

use chrono::{SecondsFormat, Utc};
use lockgate_model::{
    ObjectKind, Resource, employee_csv::HEADER_EN, resource::ValidationContext,
    system::LockingSystem,
};
use lockgate_store::{Actor, Backend, Bootstrap, ConnectOptions, Store, fold};
use lockgate_tests::{Db, TestDatabase, fixed};

/// A small deterministic generator (xorshift64*), so every run and database sees the same data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `n` distinct items of `items`, in random order.
    pub fn pick_distinct<T: Clone>(&mut self, items: &[T], n: usize) -> Vec<T> {
        let mut idx: Vec<usize> = (0..items.len()).collect();
        for i in 0..n.min(idx.len()) {
            let j = i + self.below(idx.len() - i);
            idx.swap(i, j);
        }
        idx.into_iter().take(n).map(|i| items[i].clone()).collect()
    }
}

pub const FIRST_NAMES: &[&str] = &[
    "Anna",
    "Lukas",
    "Sophie",
    "Maximilian",
    "Marie",
    "Leon",
    "Emma",
    "Paul",
    "Mia",
    "Jonas",
    "Hannah",
    "Felix",
    "Lea",
    "Elias",
    "Lena",
    "Noah",
    "Laura",
    "Ben",
    "Julia",
    "Finn",
    "Sarah",
    "Tim",
    "Katharina",
    "Jan",
    "Johanna",
    "Niklas",
    "Clara",
    "David",
    "Charlotte",
    "Moritz",
    "Amelie",
    "Tobias",
    "Zoë",
    "Sebastian",
    "Ines",
    "Björn",
    "Chloé",
    "Jürgen",
    "Olivia",
    "Mehmet",
    "Aylin",
    "Piotr",
    "Agnieszka",
    "Luca",
    "Giulia",
    "Mateo",
    "Lucía",
    "James",
    "Oliver",
    "Emily",
    "William",
    "Grace",
    "Henrik",
    "Ingrid",
    "Søren",
    "Astrid",
    "Yusuf",
    "Fatma",
    "Dmitri",
    "Olga",
];

pub const SURNAMES: &[&str] = &[
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Bauer",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hofmann",
    "Hartmann",
    "Lange",
    "Schmitt",
    "Werner",
    "Schmitz",
    "Krause",
    "Meier",
    "Lehmann",
    "Schmid",
    "Schulze",
    "Maier",
    "Köhler",
    "Herrmann",
    "König",
    "Walter",
    "Mayer",
    "Huber",
    "Kaiser",
    "Fuchs",
    "Peters",
    "Lang",
    "Scholz",
    "Möller",
    "Weiß",
    "Jung",
    "Hahn",
    "Schubert",
    "Vogel",
    "Friedrich",
    "Keller",
    "Günther",
    "Frank",
    "Berger",
    "Winkler",
    "Roth",
    "Beck",
    "Lorenz",
    "Baumann",
    "Franke",
    "Albrecht",
    "Schuster",
    "Simon",
    "Ludwig",
    "Böhm",
    "Winter",
    "Kraus",
    "Martin",
    "Yılmaz",
    "Kowalski",
    "Nowak",
    "Rossi",
    "García",
    "Smith",
    "Jones",
    "Andersen",
    "Johansson",
    "Ivanov",
    "van der Berg",
    "O'Connor",
    "de la Cruz",
];

const TITLES: &[&str] = &["Dr.", "Prof. Dr.", "Dipl.-Ing.", "Mag.", "MSc"];
const DEPARTMENTS: &[&str] = &[
    "Finance",
    "Human Resources",
    "IT",
    "Facility Management",
    "Research & Development",
    "Sales",
    "Marketing",
    "Logistics",
    "Production",
    "Quality Assurance",
    "Legal",
    "Purchasing",
    "Customer Service",
    "Security",
];
const JOBS: &[&str] = &[
    "Accountant",
    "Engineer",
    "Technician",
    "Team Lead",
    "Developer",
    "Caretaker",
    "Sales Representative",
    "Lab Assistant",
    "Warehouse Clerk",
    "Project Manager",
    "Nurse",
    "Receptionist",
    "Security Officer",
    "Controller",
    "Trainee",
];
const STREETS: &[&str] = &[
    "Hauptstraße",
    "Bahnhofstraße",
    "Gartenweg",
    "Schillerstraße",
    "Goethestraße",
    "Lindenallee",
    "Industriestraße",
    "Am Markt",
    "Rosenweg",
    "Kirchplatz",
    "Friedrichstraße",
    "Mühlenweg",
];
/// (city, postcode prefix, state, country, area code)
const CITIES: &[(&str, &str, &str, &str, &str)] = &[
    ("Berlin", "10", "Berlin", "Germany", "30"),
    ("München", "80", "Bayern", "Germany", "89"),
    ("Hamburg", "20", "Hamburg", "Germany", "40"),
    ("Köln", "50", "Nordrhein-Westfalen", "Germany", "221"),
    ("Frankfurt am Main", "60", "Hessen", "Germany", "69"),
    ("Stuttgart", "70", "Baden-Württemberg", "Germany", "711"),
    ("Düsseldorf", "40", "Nordrhein-Westfalen", "Germany", "211"),
    ("Leipzig", "04", "Sachsen", "Germany", "341"),
    ("Wien", "10", "Wien", "Austria", "1"),
    ("Zürich", "80", "Zürich", "Switzerland", "44"),
];
const REGIONS: &[&str] = &["North", "South", "East", "West", "Central"];
const LANGUAGES: &[&str] = &["de", "de", "de", "en", "en", "fr", "it", "tr", "pl"];
const SITES: &[&str] = &["HQ", "Plant 2", "Warehouse", "Lab Campus", "Branch Office"];

/// Quote a CSV field when it needs it (RFC 4180).
fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// One generated employee, as the 21 import columns.
pub fn employee_row(rng: &mut Rng, n: usize, domains: &[&str]) -> [String; 21] {
    let first = *rng.pick(FIRST_NAMES);
    let last = *rng.pick(SURNAMES);
    let (city, plz, state, country, area) = *rng.pick(CITIES);
    let ascii = |s: &str| -> String {
        s.chars()
            .filter_map(|c| match c {
                'ä' | 'Ä' => Some('a'),
                'ö' | 'Ö' => Some('o'),
                'ü' | 'Ü' => Some('u'),
                'ß' => Some('s'),
                'é' | 'ë' => Some('e'),
                'ø' => Some('o'),
                'ı' => Some('i'),
                'í' => Some('i'),
                ' ' | '\'' => None,
                c => Some(c.to_ascii_lowercase()),
            })
            .collect()
    };
    let site = *rng.pick(SITES);
    let dept = *rng.pick(DEPARTMENTS);
    [
        format!("E{:06}", 100_000 + n),
        if rng.chance(12) {
            rng.pick(TITLES).to_string()
        } else {
            String::new()
        },
        first.to_string(),
        last.to_string(),
        if domains.is_empty() {
            String::new()
        } else {
            rng.pick(domains).to_string()
        },
        format!("{}.{}{}@example-corp.com", ascii(first), ascii(last), n),
        format!("+49 {area} {:07}", rng.below(10_000_000)),
        "Example Corp GmbH".to_string(),
        dept.to_string(),
        format!("{} {}", rng.pick(STREETS), 1 + rng.below(180)),
        format!("{plz}{:03}", rng.below(1000)),
        rng.pick(LANGUAGES).to_string(),
        rng.pick(REGIONS).to_string(),
        rng.pick(JOBS).to_string(),
        city.to_string(),
        state.to_string(),
        country.to_string(),
        format!("Example Corp GmbH, {site}, {city}"),
        format!(
            "{site}, Building {}, Floor {}, Room {}",
            (b'A' + rng.below(6) as u8) as char,
            rng.below(8),
            100 + rng.below(400)
        ),
        format!("+49 1{} {:08}", 50 + rng.below(30), rng.below(100_000_000)),
        if rng.chance(30) {
            format!(
                "Badge {:05}; cost centre {}",
                rng.below(100_000),
                4000 + rng.below(900)
            )
        } else {
            String::new()
        },
    ]
}

/// A complete employee import file (English header, comma separated) with `rows` rows.
pub fn employee_csv(rows: usize, seed: u64, domains: &[&str]) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(rows * 320);
    out.push_str(&HEADER_EN.join(","));
    out.push('\n');
    for n in 0..rows {
        let row = employee_row(&mut rng, n, domains);
        for (i, f) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&mut out, f);
        }
        out.push('\n');
    }
    out
}

/// A file in the temp directory removed when dropped.
#[derive(Debug)]
pub struct TempFile {
    pub path: std::path::PathBuf,
}

impl TempFile {
    pub fn write(name: &str, contents: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("lockgate-bench-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile { path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A migrated store with one locking system on a fresh database (dropped with `_db`).
#[derive(Debug)]
pub struct Fresh {
    pub store: Store,
    pub boot: Bootstrap,
    pub db: TestDatabase,
}

pub async fn fresh(db: Db) -> Fresh {
    let database = TestDatabase::create(db).await;
    let store = Store::connect(&ConnectOptions::new(&database.url))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let boot = store
        .init_system("Bench site", fixed(true))
        .await
        .expect("init system");
    Fresh {
        store,
        boot,
        db: database,
    }
}

/// The databases to run on: both, unless LOCKGATE_BENCH_DB names one (`sqlite` or `postgres`).
pub fn databases() -> Vec<Db> {
    match std::env::var("LOCKGATE_BENCH_DB").as_deref() {
        Ok("sqlite") => vec![Db::Sqlite],
        Ok("postgres") => vec![Db::Postgres],
        _ => vec![Db::Sqlite, Db::Postgres],
    }
}

pub fn db_name(db: Db) -> &'static str {
    match db {
        Db::Sqlite => "SQLite",
        Db::Postgres => "PostgreSQL",
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median of a few durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Nearest-rank percentile (0–100) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints the rate and latency of `times` (one per operation) done in `total`; returns the
/// rate per second.
pub fn rate_report(what: &str, mut times: Vec<Duration>, total: Duration) -> f64 {
    times.sort();
    let rate = times.len() as f64 / total.as_secs_f64();
    println!(
        "{what}: {} in {:.2} s = {rate:.1}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times.len(),
        total.as_secs_f64(),
        ms(percentile(&times, 50.0)),
        ms(percentile(&times, 99.0)),
        ms(times.last().copied().unwrap_or_default()),
    );
    rate
}

/// Peak resident set size of this process (VmHWM), in kB.
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn print_peak_rss() {
    match peak_rss_kb() {
        Some(kb) => println!(
            "Peak RSS of the bench process (VmHWM): {:.1} MiB ({kb} kB)",
            kb as f64 / 1024.0
        ),
        None => println!("Peak RSS of the bench process: unavailable (/proc/self/status)"),
    }
}

/// The runtime the benches run on (the machine has 2 cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Print a table with a header row, right-aligning every column but the first.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let cols = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i].saturating_sub(c.chars().count());
            s.push_str("| ");
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
            s.push(' ');
        }
        s.push('|');
        s
    };
    let sep: String = w
        .iter()
        .map(|n| format!("|{}", "-".repeat(n + 2)))
        .collect::<String>()
        + "|";
    println!("{}", line(header.iter().map(|h| h.to_string()).collect()));
    println!("{sep}");
    for r in rows {
        println!("{}", line(r.clone()));
    }
}

/// Rows per multi-row INSERT when seeding directly.
pub const SQL_ROWS: usize = 200;

/// Placeholders for hand-written SQL: `$n` on PostgreSQL; anonymous `?` on SQLite, because
/// sqlx looks up every named SQLite parameter by a linear scan (quadratic in the count).
pub struct Ph {
    backend: Backend,
    n: usize,
}

impl Ph {
    pub fn new(backend: Backend) -> Self {
        Ph { backend, n: 0 }
    }
    pub fn next(&mut self) -> String {
        self.n += 1;
        match self.backend {
            Backend::Sqlite => "?".into(),
            Backend::Postgres => format!("${}", self.n),
        }
    }
    /// `(p, …, p)` rows of `cols` placeholders each, with `inline` text after the
    /// `inline_at`-th placeholder of every row (constant columns, as the store writes them).
    pub fn rows_with(
        &mut self,
        rows: usize,
        cols: usize,
        inline_at: usize,
        inline: &str,
    ) -> String {
        let mut s = String::new();
        for r in 0..rows {
            s.push_str(if r > 0 { ", (" } else { "(" });
            for c in 0..cols {
                if c > 0 {
                    s.push_str(", ");
                }
                s.push_str(&self.next());
                if c + 1 == inline_at {
                    s.push_str(inline);
                }
            }
            s.push(')');
        }
        s
    }
    pub fn rows(&mut self, rows: usize, cols: usize) -> String {
        self.rows_with(rows, cols, 0, "")
    }
}

/// The timestamp format the store writes (RFC 3339, UTC, microseconds).
pub fn ts_now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Write objects the way `Store::create_batch` does (row in `objects` with the projection
/// columns and the serde_json body at version 1, `object_refs`, `object_tags` and a
/// `created` event), with multi-row INSERTs in one transaction. Bodies are validated first;
/// every body needs a distinct marking (ids are matched back by it). From `search.rs`.
pub async fn insert_direct<R: Resource>(
    store: &Store,
    sys: &LockingSystem,
    kind: ObjectKind,
    bodies: &[R],
) -> Vec<i64> {
    let ctx = ValidationContext {
        fixed: &sys.fixed,
        settings: &sys.settings,
    };
    for b in bodies {
        b.validate(&ctx).expect("valid body");
    }
    let backend = store.backend();
    let mut tx = store.write_tx().await.expect("tx");
    let mut ids = Vec::with_capacity(bodies.len());
    for chunk in bodies.chunks(SQL_ROWS) {
        let now = ts_now();
        let mut ph = Ph::new(backend);
        let sql = format!(
            "INSERT INTO objects (system_id, kind, domain_id, name, name_fold, marking, marking_fold, unique_name, \
             status, type, body, version, created_at, updated_at) VALUES {} RETURNING id, marking_fold",
            ph.rows(chunk.len(), 14)
        );
        let mut q = sqlx::query(&sql);
        let mut jsons = Vec::with_capacity(chunk.len());
        for b in chunk {
            let p = b.projection();
            jsons.push(serde_json::to_value(b).expect("json value"));
            q = q
                .bind(sys.id)
                .bind(kind.as_str())
                .bind(p.domain_id)
                .bind(p.name.clone())
                .bind(fold(&p.name))
                .bind(p.marking.clone())
                .bind(p.marking.as_deref().map(fold))
                .bind(p.unique_name.then(|| fold(&p.name)))
                .bind(p.status)
                .bind(p.type_)
                .bind(serde_json::to_string(b).expect("json"))
                .bind(1_i64)
                .bind(now.clone())
                .bind(now.clone());
        }
        let by_marking: HashMap<String, i64> = q
            .fetch_all(&mut *tx)
            .await
            .expect("insert objects")
            .iter()
            .map(|r| {
                (
                    r.try_get::<String, _>("marking_fold").expect("marking"),
                    r.try_get::<i64, _>("id").expect("id"),
                )
            })
            .collect();
        let chunk_ids: Vec<i64> = chunk
            .iter()
            .map(|b| by_marking[&fold(b.projection().marking.as_deref().expect("marking"))])
            .collect();
        let mut refs = Vec::new();
        for (b, id) in chunk.iter().zip(&chunk_ids) {
            let mut seen = std::collections::HashSet::new();
            for r in b.references() {
                if seen.insert((r.relation, r.id)) {
                    refs.push((*id, r.relation, r.id));
                }
            }
        }
        for part in refs.chunks(SQL_ROWS * 2) {
            let mut ph = Ph::new(backend);
            let sql = format!(
                "INSERT INTO object_refs (from_id, relation, to_id) VALUES {}",
                ph.rows(part.len(), 3)
            );
            let mut q = sqlx::query(&sql);
            for (from, rel, to) in part {
                q = q.bind(*from).bind(*rel).bind(*to);
            }
            q.execute(&mut *tx).await.expect("insert refs");
        }
        let mut tags = Vec::new();
        for (b, id) in chunk.iter().zip(&chunk_ids) {
            let mut seen = std::collections::HashSet::new();
            for t in b.tags() {
                let f = fold(t);
                if seen.insert(f.clone()) {
                    tags.push((*id, f));
                }
            }
        }
        for part in tags.chunks(SQL_ROWS * 2) {
            let mut ph = Ph::new(backend);
            let sql = format!(
                "INSERT INTO object_tags (object_id, system_id, kind, tag_fold) VALUES {}",
                ph.rows(part.len(), 4)
            );
            let mut q = sqlx::query(&sql);
            for (id, t) in part {
                q = q.bind(*id).bind(sys.id).bind(kind.as_str()).bind(t.clone());
            }
            q.execute(&mut *tx).await.expect("insert tags");
        }
        let mut ph = Ph::new(backend);
        let sql = format!(
            "INSERT INTO events (system_id, at, actor_id, actor, action, object_kind, object_id, object_label, changes, correlation_id) VALUES {}",
            ph.rows(chunk.len(), 10)
        );
        let actor = Actor::system();
        let mut q = sqlx::query(&sql);
        for ((b, id), after) in chunk.iter().zip(&chunk_ids).zip(&jsons) {
            q = q
                .bind(sys.id)
                .bind(now.clone())
                .bind(actor.c_key_id)
                .bind(actor.label.clone())
                .bind("created")
                .bind(kind.as_str())
                .bind(*id)
                .bind(b.projection().name)
                .bind(lockgate_model::event::diff(None, Some(after)).to_string())
                .bind(actor.correlation_id.clone());
        }
        q.execute(&mut *tx).await.expect("insert events");
        ids.extend(chunk_ids);
    }
    tx.commit().await.expect("commit");
    ids
}

/// The floor of the person benchmarks: the CSV import of `n` generated employees (seed 7, no
/// domains, as `employee_row` makes them) in one transaction on a fresh SQLite database;
/// prints it and returns persons per second.
pub async fn csv_import_floor(n: usize) -> f64 {
    let f = fresh(Db::Sqlite).await;
    let csv = employee_csv(n, 7, &[]);
    let start = Instant::now();
    let imported = f
        .store
        .import_persons(
            &lockgate_store::WriteContext::system(&f.boot.system, chrono::Utc::now()),
            ObjectKind::Employee,
            csv.as_bytes(),
            false,
            &|_, _| {},
        )
        .await
        .expect("import");
    let took = start.elapsed();
    assert_eq!(imported.created, n, "{:?}", imported.invalid.first());
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "floor, CSV import of the same {n} persons: {:.2} s = {rate:.0}/s",
        took.as_secs_f64()
    );
    rate
}
