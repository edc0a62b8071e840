//! Reconciliation benchmark on real databases (SQLite file, PostgreSQL): one access-profile
//! change that affects 20 000 dynamic keys, end to end, against the floor of writing the
//! same 20 000 job rows with bulk INSERTs.
//!
//! Per database:
//!
//! 1. Seed a system: 5 domains, key groups, 100 cylinder groups, 2 000 cylinders, 200 access
//!    profiles, 5 000 employees (0–2 profiles each), 20 000 dynamic keys that all hold the
//!    profile "All staff" (a quarter also hold a second one, 60 % are handed out), 2 000
//!    quartz / normal keys the change does not touch, and 10 temporary access groups in force.
//!    Small kinds go through the store (`create` / `create_batch`); the keys through
//!    multi-row SQL INSERTs of the rows `create_batch` would write (as `search.rs` does).
//! 2. Reconcile once with `Store::reconcile` (≈ 24 000 jobs), then confirm every job
//!    **by SQL in bulk**: the programs of the open jobs are copied into `key_actual` /
//!    `cylinder_actual` and the jobs set to `finished`. That is what `Store::confirm_job`
//!    does per job, minus the `last_remote_update` stamp on each key body and its event,
//!    which the defined state does not read. A second `Store::reconcile` must then find
//!    nothing to do: the actual state equals the defined state.
//! 3. Measured, `RUNS` times: `PATCH /api/v1/access-profiles/{id}` through the real router
//!    (`TestApp::router` via `oneshot`, super-administrator token) adding one cylinder to
//!    "All staff". The handler writes the profile, then runs `Store::reconcile_scope` (the
//!    keys the profile reaches) before it answers, so the time until the response is the
//!    time until the 20 000 remote update jobs are committed; the bench then checks there
//!    are exactly 20 000 new open remote update jobs, one per dynamic key, and no cylinder
//!    job. Between runs the jobs are deleted and the profile reverted by SQL /
//!    `Store::update` (untimed).
//! 4. Floor, after each run on the same database: the same 20 000 rows (same columns and
//!    values, the programs the run wrote) inserted into `jobs` with multi-row INSERTs of
//!    `FLOOR_ROWS` rows in one committed transaction, then deleted again.
//! 5. Breakdown, after each run (so load from other processes on the shared machine hits
//!    run, floor and replay alike): the change applied with `Store::update`, then the
//!    public steps of `Store::reconcile_scope` timed from the bench (`scope_of_change`,
//!    `configuration_for` that scope, `defined::compute`, JSON encoding of the defined key
//!    programs), then the production `Store::reconcile_scope` on the same change (what the
//!    PATCH runs) and, after deleting its jobs, the production full `Store::reconcile`.
//!
//! Run with `cargo bench -p lockgate-tests --bench reconcile`;
//! `LOCKGATE_BENCH_DB=sqlite|postgres` runs one database only.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::*;
use lockgate_engine::defined;
use lockgate_model::{
    ObjectKind, Resource,
    access_profile::{AccessProfile, TemporaryAccessGroup},
    cylinder::{Cylinder, CylinderGroup},
    domain::Domain,
    key::Key,
    key_group::{KeyGroup, KeyGroupKind},
    person::Person,
    system::LockingSystem,
};
use lockgate_store::{Actor, Scope, Store, reconciliation::KeyTargets};
use lockgate_tests::{Db, TestApp};
use serde_json::json;
use sqlx::Row;

const DYNAMIC_KEYS: usize = 20_000;
const OTHER_KEYS: usize = 2_000;
const CYLINDERS: usize = 2_000;
const CYLINDER_GROUPS: usize = 100;
const PROFILES: usize = 200;
const EMPLOYEES: usize = 5_000;
const TEMPORARY_GROUPS: usize = 10;
/// Measured profile changes per database.
const RUNS: usize = 3;
/// Rows per multi-row INSERT, for the floor and for seeding.
const FLOOR_ROWS: usize = 500;
const CHUNK: usize = 1_000;
/// Target: the change costs at most this many times the floor.
const TARGET_RATIO: f64 = 2.0;

/// (domain name, marking prefix)
const SITES: &[(&str, &str)] = &[
    ("Default", "GEN"),
    ("Headquarters", "HQ"),
    ("Plant 2", "P2"),
    ("Warehouse", "WH"),
    ("Lab Campus", "LAB"),
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
    "Canteen",
];
const ROLES: &[&str] = &[
    "Cleaning",
    "Facility",
    "IT",
    "Management",
    "Night shift",
    "Lab staff",
    "Warehouse",
    "Reception",
    "Security",
    "Finance",
    "HR",
    "Contractors",
];

/// `create_batch` in chunks of `CHUNK`; the ids in order.
async fn create_all<R: Resource>(
    store: &Store,
    sys: &LockingSystem,
    kind: ObjectKind,
    bodies: Vec<R>,
) -> Vec<i64> {
    let mut ids = Vec::with_capacity(bodies.len());
    let mut rest = bodies.into_iter().peekable();
    while rest.peek().is_some() {
        let chunk: Vec<R> = rest.by_ref().take(CHUNK).collect();
        ids.extend(
            store
                .create_batch(sys, kind, &Scope::all(), &Actor::system(), chunk)
                .await
                .expect("create_batch"),
        );
    }
    ids
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .expect("count")
        .try_get::<i64, _>(0)
        .expect("count value")
}

async fn execute(store: &Store, sql: &str) {
    sqlx::query(sql).execute(store.pool()).await.expect(sql);
}

/// The seeded system.
struct World {
    app: TestApp,
    sys: LockingSystem,
    /// "All staff": held by every dynamic key.
    profile: i64,
    profile_cylinders: Vec<i64>,
    /// A cylinder of the profile's domain not in the profile: the one the change adds.
    extra_cylinder: i64,
    dynamic_keys: Vec<i64>,
    seed: Duration,
}

async fn seed(db: Db) -> World {
    let started = Instant::now();
    let app = TestApp::new(db).await;
    let store = &app.store;
    let sys = store.system(app.system_id).await.expect("system");
    let all = Scope::all();
    let mut rng = Rng::new(0x5EC0_4C11);

    let mut domains = vec![app.default_domain];
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
    let mut dynamic_groups = Vec::new();
    let mut normal_groups = Vec::new();
    for (i, name) in ["Staff", "Management", "Facility", "Contractors"]
        .iter()
        .enumerate()
    {
        for (kind, list) in [
            (KeyGroupKind::Dynamic, &mut dynamic_groups),
            (KeyGroupKind::Normal, &mut normal_groups),
        ] {
            let g = store
                .create(
                    &lockgate_store::WriteContext::system(&sys, chrono::Utc::now()),
                    ObjectKind::KeyGroup,
                    KeyGroup {
                        name: format!("{name} {kind:?} {i}"),
                        kind,
                        tags: vec![],
                    },
                )
                .await
                .expect("key group");
            list.push(g.id);
        }
    }
    let all_key_groups: Vec<i64> = dynamic_groups
        .iter()
        .chain(&normal_groups)
        .copied()
        .collect();

    // Cylinder groups, 20 per domain.
    let group_bodies: Vec<CylinderGroup> = (0..CYLINDER_GROUPS)
        .map(|i| {
            serde_json::from_value(json!({
                "name": format!("{} group {:03}", SITES[i % SITES.len()].0, i),
                "domain_id": domains[i % SITES.len()],
                "tags": [rng.pick(ROOM_KINDS)],
            }))
            .expect("group body")
        })
        .collect();
    let group_ids = create_all(store, &sys, ObjectKind::CylinderGroup, group_bodies).await;
    let mut groups_of_site: Vec<Vec<i64>> = vec![Vec::new(); SITES.len()];
    for (i, g) in group_ids.iter().enumerate() {
        groups_of_site[i % SITES.len()].push(*g);
    }

    // Cylinders: 85 % electronic, 70 % of those in a group of their domain.
    let mut cylinder_sites = Vec::with_capacity(CYLINDERS);
    let mut cylinder_electronic = Vec::with_capacity(CYLINDERS);
    let cylinder_bodies: Vec<Cylinder> = (0..CYLINDERS)
        .map(|n| {
            let site = n % SITES.len();
            let (site_name, code) = SITES[site];
            let building = (b'A' + rng.below(6) as u8) as char;
            let electronic = rng.chance(85);
            let mut body = json!({
                "name": format!("{code} {building}{}.{:02} {}", rng.below(6), 1 + rng.below(60), rng.pick(ROOM_KINDS)),
                "marking": format!("{code}-C{:05}", n + 1),
                "status": if rng.chance(90) { "installed" } else { "in_stock" },
                "location": format!("{site_name}, Building {building}"),
                "side_a": if electronic { "electronic" } else { "mechanical" },
                "domain_id": domains[site],
                "tags": [rng.pick(ROOM_KINDS)],
            });
            if electronic {
                body["firmware"] = json!("12.1.0");
                if rng.chance(70) {
                    body["cylinder_group_id"] = json!(rng.pick(&groups_of_site[site]));
                }
                let n = 1 + rng.below(2);
                body["access_list"] = json!({
                    "key_groups": rng.pick_distinct(&all_key_groups, n).into_iter().map(|g| json!({ "key_group_id": g })).collect::<Vec<_>>()
                });
            }
            cylinder_sites.push(site);
            cylinder_electronic.push(electronic);
            serde_json::from_value(body).expect("cylinder body")
        })
        .collect();
    let cylinder_ids = create_all(store, &sys, ObjectKind::Cylinder, cylinder_bodies).await;
    let mut cylinders_of_site: Vec<Vec<i64>> = vec![Vec::new(); SITES.len()];
    for (i, c) in cylinder_ids.iter().enumerate() {
        if cylinder_electronic[i] {
            cylinders_of_site[cylinder_sites[i]].push(*c);
        }
    }

    // Access profiles: "All staff" (default domain: 12 cylinders, 2 groups), then 5–20
    // cylinders or groups of one domain each.
    // The cylinder the measured change adds is reserved: no profile, key or group lists
    // it, so the change reaches every dynamic key.
    let extra_cylinder = cylinders_of_site[0].pop().expect("an electronic cylinder");
    let staff_cylinders = rng.pick_distinct(&cylinders_of_site[0], 12);
    let explicit_cylinders: Vec<i64> = cylinders_of_site.iter().flatten().copied().collect();
    let mut profile_bodies: Vec<AccessProfile> = vec![
        serde_json::from_value(json!({
            "name": "All staff",
            "description": "Main entrances, canteen, car park",
            "domain_id": domains[0],
            "cylinder_ids": staff_cylinders,
            "cylinder_group_ids": rng.pick_distinct(&groups_of_site[0], 2),
        }))
        .expect("profile body"),
    ];
    let mut profile_sites = vec![0];
    for i in 1..PROFILES {
        let site = i % SITES.len();
        let n = 5 + rng.below(16);
        let n_groups = (0..n).filter(|_| rng.chance(25)).count();
        profile_sites.push(site);
        profile_bodies.push(
            serde_json::from_value(json!({
                "name": format!("{} {} {:03}", SITES[site].0, rng.pick(ROLES), i),
                "domain_id": domains[site],
                "cylinder_ids": rng.pick_distinct(&cylinders_of_site[site], n - n_groups),
                "cylinder_group_ids": rng.pick_distinct(&groups_of_site[site], n_groups),
            }))
            .expect("profile body"),
        );
    }
    let profile_ids = create_all(store, &sys, ObjectKind::AccessProfile, profile_bodies).await;
    let profile = profile_ids[0];
    let other_profiles = &profile_ids[1..];

    // Employees with 0–2 profiles.
    let person_bodies: Vec<Person> = (0..EMPLOYEES)
        .map(|n| {
            let (first, last) = (rng.pick(FIRST_NAMES), rng.pick(SURNAMES));
            let np = rng.below(3);
            serde_json::from_value(json!({
                "identifier": format!("E{:06}", 100_000 + n),
                "first_name": first,
                "surname": last,
                "email": format!("employee{n}@example-corp.com"),
                "department": rng.pick(ROLES),
                "domain_id": domains[n % SITES.len()],
                "access_profile_ids": rng.pick_distinct(other_profiles, np),
            }))
            .expect("person body")
        })
        .collect();
    let employees = create_all(store, &sys, ObjectKind::Employee, person_bodies).await;

    // Keys: 20 000 dynamic keys holding "All staff" (a quarter a second profile, 10 %
    // explicit cylinders, 20 % revalidation, 60 % handed out), then quartz / normal keys.
    let key_bodies: Vec<Key> = (0..DYNAMIC_KEYS + OTHER_KEYS)
        .map(|n| {
            let site = rng.below(SITES.len());
            let dynamic = n < DYNAMIC_KEYS;
            let ty = if dynamic {
                "dynamic"
            } else if rng.chance(50) {
                "quartz"
            } else {
                "normal"
            };
            let handed_out = rng.chance(60);
            let mut body = json!({
                "name": format!("{} key {}", SITES[site].1, n + 1),
                "marking": format!("{}-K{:06}", SITES[site].1, n + 1),
                "type": ty,
                "key_group_id": if dynamic { rng.pick(&dynamic_groups) } else { rng.pick(&normal_groups) },
                "generation": "2",
                "firmware": "12.2.0",
                "status": if handed_out { "handed_out" } else { "in_stock" },
                "domain_id": domains[site],
                "tags": [rng.pick(ROLES)],
            });
            if handed_out {
                body["holder_id"] = json!(rng.pick(&employees));
                body["date_out"] = json!("2025-09-01");
            }
            if dynamic {
                body["access_list_capacity"] = json!(500);
                let mut profiles = vec![profile];
                if rng.chance(25) {
                    profiles.push(*rng.pick(other_profiles));
                }
                body["access_profile_ids"] = json!(profiles);
                if rng.chance(10) {
                    let n = 1 + rng.below(3);
                    body["cylinder_ids"] = json!(rng.pick_distinct(&explicit_cylinders, n));
                }
            }
            if ty != "normal" && rng.chance(20) {
                body["validity"] = json!({ "revalidation": { "interval_hours": 24 * (7 + rng.below(24)) } });
            }
            serde_json::from_value(body).expect("key body")
        })
        .collect();
    let key_ids = insert_direct(store, &sys, ObjectKind::Key, &key_bodies).await;
    let dynamic_keys = key_ids[..DYNAMIC_KEYS].to_vec();

    // Temporary access groups in force during the whole run.
    let start = Utc::now() - chrono::Duration::days(30);
    let end = Utc::now() + chrono::Duration::days(60);
    let temporary: Vec<TemporaryAccessGroup> = (0..TEMPORARY_GROUPS)
        .map(|i| {
            let p = 1 + rng.below(PROFILES - 1);
            serde_json::from_value(json!({
                "name": format!("Project {i:02}"),
                "domain_id": domains[profile_sites[p]],
                "access_profile_ids": [profile_ids[p]],
                "key_ids": rng.pick_distinct(&dynamic_keys, 50),
                "start": start,
                "end": end,
            }))
            .expect("temporary group body")
        })
        .collect();
    create_all(store, &sys, ObjectKind::TemporaryAccessGroup, temporary).await;

    let staff = store
        .get::<AccessProfile>(sys.id, ObjectKind::AccessProfile, profile, &all)
        .await
        .expect("profile");
    World {
        sys,
        profile,
        profile_cylinders: staff.body.cylinder_ids,
        extra_cylinder,
        dynamic_keys,
        seed: started.elapsed(),
        app,
    }
}

/// Confirm every open job by SQL in bulk: its program becomes the actual state.
async fn confirm_all(store: &Store, sys_id: i64) {
    let stamp = ts_now();
    let mut tx = store.write_tx().await.expect("tx");
    for sql in [
        "INSERT INTO key_actual (key_id, system_id, program, clock, confirmed_at) \
         SELECT target_id, system_id, program, '{}', $2 FROM jobs WHERE system_id = $1 AND open = 1 AND kind = 'remote_update'",
        "INSERT INTO cylinder_actual (cylinder_id, system_id, program, confirmed_at) \
         SELECT target_id, system_id, program, $2 FROM jobs WHERE system_id = $1 AND open = 1 AND kind = 'cylinder_programming'",
        "UPDATE jobs SET state = 'finished', open = 0, updated_at = $2 WHERE system_id = $1 AND open = 1",
    ] {
        sqlx::query(sql)
            .bind(sys_id)
            .bind(stamp.clone())
            .execute(&mut *tx)
            .await
            .expect(sql);
    }
    tx.commit().await.expect("commit");
}

async fn max_job_id(store: &Store) -> i64 {
    count(store, "SELECT COALESCE(MAX(id), 0) FROM jobs").await
}

/// Delete the jobs after `baseline` (and let PostgreSQL reclaim them).
async fn drop_jobs_after(w: &World, baseline: i64) {
    let store = &w.app.store;
    sqlx::query("DELETE FROM jobs WHERE id > $1")
        .bind(baseline)
        .execute(store.pool())
        .await
        .expect("delete jobs");
    if w.app.db == Db::Postgres {
        execute(store, "VACUUM ANALYZE jobs").await;
    }
}

/// Put "All staff" back as seeded (without reconciliation).
async fn revert_profile(w: &World) {
    let cylinders = w.profile_cylinders.clone();
    w.app
        .store
        .update::<AccessProfile, _>(
            &lockgate_store::WriteContext::system(&w.sys, chrono::Utc::now()),
            ObjectKind::AccessProfile,
            w.profile,
            None,
            move |b| {
                b.cylinder_ids = cylinders;
                Ok(())
            },
        )
        .await
        .expect("revert profile");
}

/// The jobs after `baseline`: (open remote update jobs, distinct dynamic keys among their
/// targets, open cylinder jobs), and the (target, program) of the remote update jobs.
async fn new_jobs(w: &World, baseline: i64) -> (usize, usize, usize, Vec<(i64, String)>) {
    let rows = sqlx::query(
        "SELECT kind, target_id, program, open FROM jobs WHERE system_id = $1 AND id > $2",
    )
    .bind(w.sys.id)
    .bind(baseline)
    .fetch_all(w.app.store.pool())
    .await
    .expect("jobs");
    let dynamic: std::collections::HashSet<i64> = w.dynamic_keys.iter().copied().collect();
    let mut keys = Vec::new();
    let mut cylinders = 0;
    for r in rows {
        let open: i64 = r.try_get("open").expect("open");
        let kind: String = r.try_get("kind").expect("kind");
        if open != 1 {
            continue;
        }
        if kind == "remote_update" {
            keys.push((
                r.try_get::<i64, _>("target_id").expect("target"),
                r.try_get::<String, _>("program").expect("program"),
            ));
        } else {
            cylinders += 1;
        }
    }
    let distinct: std::collections::HashSet<i64> = keys
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| dynamic.contains(t))
        .collect();
    (keys.len(), distinct.len(), cylinders, keys)
}

/// The floor: `rows` as job rows (same columns and values as `apply_plan` writes) with
/// multi-row INSERTs in one committed transaction.
async fn floor_insert(w: &World, rows: &[(i64, String)]) -> Duration {
    let store = &w.app.store;
    let stamp = ts_now();
    let c_key = Some(w.app.master_c_key_id);
    let started = Instant::now();
    let mut tx = store.write_tx().await.expect("tx");
    for chunk in rows.chunks(FLOOR_ROWS) {
        let mut ph = Ph::new(store.backend());
        // system_id, kind, target_id, 'created', 1, program, actions, priority, created_by, created_at, updated_at
        let sql = format!(
            "INSERT INTO jobs (system_id, kind, target_id, state, open, program, actions, priority, created_by, created_at, updated_at) VALUES {}",
            ph.rows_with(chunk.len(), 9, 3, ", 'created', 1")
        );
        let mut q = sqlx::query(&sql);
        for (target, program) in chunk {
            q = q
                .bind(w.sys.id)
                .bind("remote_update")
                .bind(*target)
                .bind(program.as_str())
                .bind("[]")
                .bind("normal")
                .bind(c_key)
                .bind(stamp.as_str())
                .bind(stamp.as_str());
        }
        q.execute(&mut *tx).await.expect("floor insert");
    }
    tx.commit().await.expect("commit");
    started.elapsed()
}

/// One measured run: the PATCH, its check, the reset, then the floor on the same rows.
async fn run_once(w: &World) -> (Duration, Duration) {
    let store = &w.app.store;
    let baseline = max_job_id(store).await;
    let mut cylinders = w.profile_cylinders.clone();
    cylinders.push(w.extra_cylinder);
    let path = format!("/api/v1/access-profiles/{}", w.profile);
    let started = Instant::now();
    w.app
        .patch(&path, json!({ "cylinder_ids": cylinders }))
        .await
        .expect(200);
    let change = started.elapsed();
    let (keys, distinct, cyl, rows) = new_jobs(w, baseline).await;
    assert_eq!(
        (keys, distinct, cyl),
        (DYNAMIC_KEYS, DYNAMIC_KEYS, 0),
        "one open remote update job per dynamic key and no cylinder job"
    );
    let extra = format!(r#"{{"kind":"cylinder","id":{}}}"#, w.extra_cylinder);
    assert!(
        rows.iter().all(|(_, p)| p.contains(&extra)),
        "every job writes the added cylinder"
    );
    drop_jobs_after(w, baseline).await;
    revert_profile(w).await;

    let baseline = max_job_id(store).await;
    let floor = floor_insert(w, &rows).await;
    let (keys, distinct, _, _) = new_jobs(w, baseline).await;
    assert_eq!((keys, distinct), (DYNAMIC_KEYS, DYNAMIC_KEYS), "floor rows");
    drop_jobs_after(w, baseline).await;
    (change, floor)
}

/// Times of the steps of one reconciliation, replayed from the bench.
#[derive(Debug, Default)]
struct Breakdown {
    update: Duration,
    /// `Store::scope_of_change`: the keys the profile reaches, through object_refs.
    scope: Duration,
    scope_keys: usize,
    /// `Store::configuration_for` that scope.
    configuration: Duration,
    compute: Duration,
    /// Canonical JSON of every defined key program (what is compared and written).
    encode: Duration,
    /// The production `Store::reconcile_scope` on the same change (what the PATCH runs).
    scoped: Duration,
    /// The production full `Store::reconcile` on the same change, for comparison.
    full: Duration,
}

async fn breakdown(w: &World) -> Breakdown {
    let store = &w.app.store;
    let sys = &w.sys;
    let actor = Actor {
        c_key_id: Some(w.app.master_c_key_id),
        ..Actor::system()
    };
    let mut b = Breakdown::default();
    let baseline = max_job_id(store).await;
    let mut cylinders = w.profile_cylinders.clone();
    cylinders.push(w.extra_cylinder);

    // The write the PATCH does before reconciling.
    let t = Instant::now();
    store
        .update::<AccessProfile, _>(
            &lockgate_store::WriteContext::system(sys, chrono::Utc::now()),
            ObjectKind::AccessProfile,
            w.profile,
            None,
            move |p| {
                p.cylinder_ids = cylinders;
                Ok(())
            },
        )
        .await
        .expect("update profile");
    b.update = t.elapsed();

    // The steps of Store::reconcile_scope that are public, replayed.
    let t = Instant::now();
    let scope = store
        .scope_of_change(sys.id, ObjectKind::AccessProfile, &[w.profile])
        .await
        .expect("scope");
    b.scope = t.elapsed();
    b.scope_keys = match &scope.keys {
        KeyTargets::Only(ids) => ids.len(),
        KeyTargets::All => usize::MAX,
    };
    assert!(!scope.cylinders, "a profile change reaches no cylinder");
    let t = Instant::now();
    let cfg = store
        .configuration_for(sys, &scope)
        .await
        .expect("configuration");
    b.configuration = t.elapsed();
    let t = Instant::now();
    let defined_state = defined::compute(&cfg, Utc::now());
    b.compute = t.elapsed();
    let t = Instant::now();
    let encoded: Vec<String> = defined_state
        .keys
        .values()
        .map(|p| serde_json::to_string(p).expect("json"))
        .collect();
    b.encode = t.elapsed();
    drop((cfg, defined_state, encoded));

    // The production runs on the same change.
    let t = Instant::now();
    let report = store
        .reconcile_scope(sys, &actor, Utc::now(), &scope)
        .await
        .expect("reconcile");
    b.scoped = t.elapsed();
    assert_eq!(report.created, DYNAMIC_KEYS, "{report:?}");
    drop_jobs_after(w, baseline).await;
    let t = Instant::now();
    let report = store
        .reconcile(sys, &actor, Utc::now())
        .await
        .expect("reconcile");
    b.full = t.elapsed();
    assert_eq!(report.created, DYNAMIC_KEYS, "{report:?}");
    let (keys, distinct, cyl, _) = new_jobs(w, baseline).await;
    assert_eq!((keys, distinct, cyl), (DYNAMIC_KEYS, DYNAMIC_KEYS, 0));
    drop_jobs_after(w, baseline).await;
    revert_profile(w).await;
    b
}

/// Everything measured on one database.
struct Outcome {
    db: Db,
    seed: Duration,
    initial: Duration,
    initial_jobs: usize,
    confirm: Duration,
    noop: Duration,
    changes: Vec<Duration>,
    floors: Vec<Duration>,
    /// One replay per run, interleaved with the runs.
    breakdowns: Vec<Breakdown>,
    rss_kb: Option<u64>,
}

async fn bench(db: Db) -> Outcome {
    let w = seed(db).await;
    let store = &w.app.store;
    let actor = Actor::system();
    eprintln!(
        "  [{}] seeded in {:.1} s",
        db_name(db),
        w.seed.as_secs_f64()
    );

    let t = Instant::now();
    let initial = store
        .reconcile(&w.sys, &actor, Utc::now())
        .await
        .expect("initial reconcile");
    let initial_time = t.elapsed();
    assert_eq!(initial.replaced + initial.cancelled, 0);
    assert!(initial.created >= DYNAMIC_KEYS, "{initial:?}");
    assert!(initial.capacity_exceeded.is_empty());
    let t = Instant::now();
    confirm_all(store, w.sys.id).await;
    let confirm = t.elapsed();
    if db == Db::Postgres {
        execute(store, "ANALYZE").await;
    }
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM jobs WHERE open = 1").await,
        0
    );
    let t = Instant::now();
    let noop = store
        .reconcile(&w.sys, &actor, Utc::now())
        .await
        .expect("no-op reconcile");
    let noop_time = t.elapsed();
    assert_eq!(
        (noop.created, noop.replaced, noop.cancelled),
        (0, 0, 0),
        "the actual state equals the defined state"
    );
    eprintln!(
        "  [{}] initial reconcile {:.1} s ({} jobs), bulk confirm {:.2} s, no-op reconcile {:.2} s",
        db_name(db),
        initial_time.as_secs_f64(),
        initial.created,
        confirm.as_secs_f64(),
        noop_time.as_secs_f64()
    );

    let mut changes = Vec::new();
    let mut floors = Vec::new();
    let mut breakdowns = Vec::new();
    for run in 1..=RUNS {
        // PATCH, floor and replay back to back, so load from other processes on the
        // machine affects all three alike.
        let (change, floor) = run_once(&w).await;
        let b = breakdown(&w).await;
        eprintln!(
            "  [{}] run {run}: PATCH {:.0} ms, floor {:.0} ms, scoped reconcile {:.0} ms, full {:.0} ms",
            db_name(db),
            ms(change),
            ms(floor),
            ms(b.scoped),
            ms(b.full)
        );
        changes.push(change);
        floors.push(floor);
        breakdowns.push(b);
    }
    Outcome {
        db,
        seed: w.seed,
        initial: initial_time,
        initial_jobs: initial.created,
        confirm,
        noop: noop_time,
        changes,
        floors,
        breakdowns,
        rss_kb: peak_rss_kb(),
    }
}

fn print_breakdown(o: &Outcome, change: Duration, floor: Duration) {
    let med = |f: fn(&Breakdown) -> Duration| median(o.breakdowns.iter().map(f).collect());
    let scoped = med(|b| b.scoped);
    let rows: Vec<Vec<String>> = [
        (
            "Store::update (profile row, refs, event)",
            med(|b| b.update),
        ),
        (
            "Store::scope_of_change (object_refs: keys reached)",
            med(|b| b.scope),
        ),
        (
            "Store::configuration_for (keys in scope, holders, profiles)",
            med(|b| b.configuration),
        ),
        ("defined::compute", med(|b| b.compute)),
        (
            "JSON encoding of the defined key programs",
            med(|b| b.encode),
        ),
        (
            "production Store::reconcile_scope (what PATCH runs)",
            scoped,
        ),
        (
            "production full Store::reconcile, same change",
            med(|b| b.full),
        ),
        ("PATCH through the router (median of the runs)", change),
        ("floor (median of the runs)", floor),
    ]
    .into_iter()
    .map(|(label, d)| vec![label.to_string(), format!("{:.0}", ms(d))])
    .collect();
    println!(
        "\n{} breakdown (median of {} replays, ms; the scope held {} keys):",
        db_name(o.db),
        o.breakdowns.len(),
        o.breakdowns.first().map_or(0, |b| b.scope_keys)
    );
    print_table(&["step", "ms"], &rows);
}

/// The 1, 5 and 15 minute load averages (the machine is shared).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unavailable".into())
}

fn main() {
    let wall = Instant::now();
    let load_before = load_average();
    println!(
        "lockgate reconciliation benchmark: one access-profile change reaching {DYNAMIC_KEYS} dynamic keys, per database"
    );
    println!(
        "System: {DYNAMIC_KEYS} dynamic keys all holding \"All staff\" (+ {OTHER_KEYS} quartz/normal keys), {CYLINDERS} cylinders, {CYLINDER_GROUPS} cylinder groups, {PROFILES} access profiles, {EMPLOYEES} employees, {TEMPORARY_GROUPS} temporary access groups, 5 domains"
    );
    println!(
        "Actual state = defined state: one Store::reconcile, then every job confirmed by SQL in bulk (programs copied into key_actual / cylinder_actual; no last_remote_update stamps)"
    );
    println!(
        "Change: PATCH /api/v1/access-profiles/{{id}} adding one cylinder, through the router (oneshot), timed until the response — the handler commits the profile, then Store::reconcile commits the {DYNAMIC_KEYS} jobs before answering; {RUNS} runs, reset between runs"
    );
    println!(
        "Floor: the same {DYNAMIC_KEYS} job rows (same columns and values) by multi-row INSERTs of {FLOOR_ROWS} rows in one committed transaction, after each run on the same database\n"
    );
    let rt = runtime();
    let mut outcomes = Vec::new();
    for db in databases() {
        let db_wall = Instant::now();
        outcomes.push(rt.block_on(bench(db)));
        eprintln!(
            "  [{}] done in {:.1} s",
            db_name(db),
            db_wall.elapsed().as_secs_f64()
        );
    }

    println!("Setup:");
    let setup: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            vec![
                db_name(o.db).to_string(),
                format!("{:.1}", o.seed.as_secs_f64()),
                format!("{:.2} ({} jobs)", o.initial.as_secs_f64(), o.initial_jobs),
                format!("{:.2}", o.confirm.as_secs_f64()),
                format!("{:.2}", o.noop.as_secs_f64()),
            ]
        })
        .collect();
    print_table(
        &[
            "database",
            "seed s",
            "initial Store::reconcile s",
            "bulk confirm s",
            "no-op Store::reconcile s",
        ],
        &setup,
    );

    println!(
        "\nOne access-profile change reaching {DYNAMIC_KEYS} keys vs the bulk-INSERT floor (ms):"
    );
    let mut rows = Vec::new();
    for o in &outcomes {
        let change = median(o.changes.clone());
        let floor = median(o.floors.clone());
        let ratio = change.as_secs_f64() / floor.as_secs_f64();
        let list = |v: &[Duration]| {
            v.iter()
                .map(|d| format!("{:.0}", ms(*d)))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        rows.push(vec![
            db_name(o.db).to_string(),
            list(&o.changes),
            format!("{:.0}", ms(change)),
            list(&o.floors),
            format!("{:.0}", ms(floor)),
            format!("{ratio:.1}×"),
            if ratio <= TARGET_RATIO {
                "met".into()
            } else {
                format!("MISSED (target ≤ {TARGET_RATIO:.0}×)")
            },
        ]);
    }
    print_table(
        &[
            "database",
            "PATCH runs",
            "PATCH median",
            "floor runs",
            "floor median",
            "ratio",
            "target ≤ 2×",
        ],
        &rows,
    );
    for o in &outcomes {
        print_breakdown(o, median(o.changes.clone()), median(o.floors.clone()));
    }
    println!();
    for o in &outcomes {
        println!(
            "Peak RSS after {} (VmHWM, whole process so far): {}",
            db_name(o.db),
            o.rss_kb.map_or("unavailable".into(), |kb| format!(
                "{:.1} MiB",
                kb as f64 / 1024.0
            ))
        );
    }
    drop(rt);
    println!(
        "Load average (1/5/15 min, {} cores): {load_before} before, {} after",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    print_peak_rss();
    println!(
        "Total bench wall time: {:.1} s",
        wall.elapsed().as_secs_f64()
    );
}
