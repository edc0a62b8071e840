//! Employee CSV import benchmark: `Store::import_persons` of a 10 000-row file into a fresh
//! database, against the floor of loading the same file into a bare table with the
//! database's own CLI (`sqlite3 .import`, `psql \copy`). SQLite file database and PostgreSQL.
//!
//! Run with `cargo bench -p lockgate-tests --bench import`.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use lockgate_model::ObjectKind;
use lockgate_tests::{Db, TestDatabase};
use sqlx::Row;

const ROWS: usize = 10_000;
const RUNS: usize = 3;
const TARGET_RATIO: f64 = 3.0;

/// One timed `import_persons` into a fresh database with an initialised locking system.
async fn lockgate_import(db: Db, bytes: &[u8]) -> Duration {
    let f = fresh(db).await;
    let start = Instant::now();
    let report = f
        .store
        .import_persons(
            &lockgate_store::WriteContext::system(&f.boot.system, chrono::Utc::now()),
            ObjectKind::Employee,
            bytes,
            false,
            &|_, _| {},
        )
        .await
        .expect("import");
    let took = start.elapsed();
    assert_eq!(
        (report.created, report.invalid.len(), report.skipped.len()),
        (ROWS, 0, 0),
        "every row is created: {:?}",
        report.invalid.first()
    );
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM objects WHERE kind = 'employee'")
        .fetch_one(f.store.pool())
        .await
        .expect("count")
        .try_get("n")
        .expect("n");
    assert_eq!(n as usize, ROWS);
    f.store.close().await;
    took
}

fn run(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd.output().expect("start CLI");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{cmd:?} complained: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn query_one(cmd: &mut Command) -> String {
    let out = cmd.output().expect("start CLI");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `sqlite3 fresh.db ".mode csv" ".import FILE bare"` (the table is created from the header).
async fn sqlite_bare(file: &str) -> Duration {
    let database = TestDatabase::create(Db::Sqlite).await;
    let path = database
        .url
        .strip_prefix("sqlite://")
        .expect("sqlite url")
        .to_string();
    let took = run(Command::new("sqlite3")
        .arg(&path)
        .arg(".mode csv")
        .arg(format!(".import {file} bare")));
    let n = query_one(
        Command::new("sqlite3")
            .arg(&path)
            .arg("SELECT COUNT(*) FROM bare"),
    );
    assert_eq!(n, ROWS.to_string(), "sqlite3 imported every row");
    took
}

/// `psql -c "\copy bare FROM 'FILE' CSV HEADER"` into a bare 21-text-column table in a fresh database.
async fn postgres_bare(file: &str) -> Duration {
    let database = TestDatabase::create(Db::Postgres).await;
    let cols: Vec<String> = (1..=21).map(|i| format!("c{i} text")).collect();
    run(Command::new("psql")
        .arg(&database.url)
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("CREATE TABLE bare ({})", cols.join(", "))));
    let took = run(Command::new("psql")
        .arg(&database.url)
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("\\copy bare FROM '{file}' CSV HEADER")));
    let n = query_one(Command::new("psql").arg(&database.url).args([
        "-At",
        "-c",
        "SELECT COUNT(*) FROM bare",
    ]));
    assert_eq!(n, ROWS.to_string(), "psql copied every row");
    took
}

fn fmt_runs(v: &[Duration]) -> String {
    v.iter()
        .map(|d| format!("{:.0}", ms(*d)))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Median wall time of `employee_csv::parse` alone (the first step of `import_persons`).
fn parse_time(bytes: &[u8]) -> Duration {
    let mut v = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let parsed = lockgate_model::employee_csv::parse(bytes).expect("parses");
        v.push(start.elapsed());
        assert_eq!(parsed.valid.len(), ROWS);
    }
    median(v)
}

fn main() {
    let wall = Instant::now();
    let csv = employee_csv(ROWS, 0x5EED_1234, &["Default"]);
    let file = TempFile::write("employees.csv", csv.as_bytes());
    let file_s = file.path.display().to_string();
    assert!(!file_s.contains('\''), "temp path must not contain quotes");
    println!(
        "lockgate import benchmark: {ROWS} employees, 21 columns, {:.2} MiB CSV at {file_s}",
        csv.len() as f64 / (1024.0 * 1024.0)
    );
    println!("median of {RUNS} runs, each into a fresh database; times in ms\n");

    let parse = parse_time(csv.as_bytes());
    let rt = runtime();
    let mut rows = Vec::new();
    let mut detail = Vec::new();
    for db in databases() {
        let mut ours = Vec::new();
        let mut bare = Vec::new();
        for _ in 0..RUNS {
            ours.push(rt.block_on(lockgate_import(db, csv.as_bytes())));
            bare.push(rt.block_on(async {
                match db {
                    Db::Sqlite => sqlite_bare(&file_s).await,
                    Db::Postgres => postgres_bare(&file_s).await,
                }
            }));
        }
        detail.push(vec![
            db_name(db).to_string(),
            fmt_runs(&ours),
            fmt_runs(&bare),
        ]);
        let (o, b) = (median(ours), median(bare));
        let ratio = o.as_secs_f64() / b.as_secs_f64();
        rows.push(vec![
            db_name(db).to_string(),
            ROWS.to_string(),
            format!("{:.0}", ms(o)),
            format!("{:.0}", ms(b)),
            format!("{ratio:.2}x"),
            if ratio <= TARGET_RATIO {
                format!("ok (<= {TARGET_RATIO}x)")
            } else {
                format!("MISSED (> {TARGET_RATIO}x)")
            },
            format!("{:.0}", ROWS as f64 / o.as_secs_f64()),
            format!("{:.0}", ms(parse)),
            format!("{:.0}", ms(o.saturating_sub(parse))),
        ]);
    }
    print_table(
        &[
            "database",
            "rows",
            "lockgate ms",
            "bare ms",
            "ratio",
            "target",
            "lockgate rows/s",
            "of which CSV parse ms",
            "rest ms",
        ],
        &rows,
    );
    println!();
    println!(
        "bare = sqlite3 \".mode csv\" \".import FILE bare\" / psql \"\\copy bare FROM 'FILE' CSV HEADER\","
    );
    println!("       whole CLI command timed (process start included)");
    println!(
        "CSV parse = lockgate_model::employee_csv::parse alone (median of {RUNS}), the first step of import_persons"
    );
    println!();
    print_table(&["database", "lockgate runs ms", "bare runs ms"], &detail);
    println!();

    drop(rt);
    drop(file);
    print_peak_rss();
    println!(
        "Total bench wall time: {:.1} s",
        wall.elapsed().as_secs_f64()
    );
}
