//! Defined-state benchmark (pure, no database): a large generated `Configuration`
//! (100 000 keys, 20 000 cylinders, 1 000 cylinder groups, 2 000 access profiles,
//! 100 000 persons, temporary access groups), then
//!
//! * `defined::compute` wall time, single-threaded (median of 5 after a warm-up run), and
//! * `reconcile::reconcile` of that defined state against an actual state equal to it
//!   except for 1 % of the keys (median of 5 after a warm-up run),
//!
//! with the peak resident set size (VmHWM). Target: the defined state in under 2 s on one core.
//!
//! Run with `cargo bench -p lockgate-engine --bench defined_state`.
//!
//! Domains (50 here) are not an input of the engine: they only decide which cylinders and
//! cylinder groups a profile may list (the store checks that), so the generator uses them
//! to keep every profile within one domain and otherwise ignores them.

use std::{
    collections::BTreeSet,
    hint::black_box,
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeZone, Utc};
use lockgate_engine::{
    defined::{
        self, Configuration, CylinderConfig, DefinedState, KeyConfig, ProfileConfig,
        TemporaryGroupConfig,
    },
    reconcile::{self, ActualState, Pending},
    state::{AccessTarget, KeyFacts},
};
use lockgate_model::{
    FirmwareVersion, ObjectId,
    key::{Activation, Generation, KeyType, PinValidation, Revalidation},
};

const KEYS: usize = 100_000;
const CYLINDERS: usize = 20_000;
const CYLINDER_GROUPS: usize = 1_000;
const PROFILES: usize = 2_000;
const DOMAINS: usize = 50;
const PERSONS: usize = 100_000;
const TEMPORARY_GROUPS: usize = 200;
/// Key groups (half dynamic, half normal).
const KEY_GROUPS: usize = 40;
/// Share of keys whose actual state differs from the defined one, in per mille.
const CHANGED_PER_MILLE: usize = 10;
const RUNS: usize = 5;
const TARGET: Duration = Duration::from_secs(2);

/// Id ranges per kind, so ids never collide across kinds (as in the `objects` table).
const KEY_BASE: ObjectId = 1_000_000;
const CYLINDER_BASE: ObjectId = 2_000_000;
const CYLINDER_GROUP_BASE: ObjectId = 3_000_000;
const PROFILE_BASE: ObjectId = 4_000_000;
const PERSON_BASE: ObjectId = 5_000_000;
const KEY_GROUP_BASE: ObjectId = 6_000_000;

/// A small deterministic generator (xorshift64*), so every run sees the same data.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// `lo..=hi` (uniform) distinct items of `items`.
    fn pick_some<T: Copy>(&mut self, items: &[T], lo: usize, hi: usize) -> Vec<T> {
        let n = self.between(lo, hi);
        self.pick_distinct(items, n)
    }

    /// `n` distinct items of `items` (all of them when `n` is larger).
    fn pick_distinct<T: Copy>(&mut self, items: &[T], n: usize) -> Vec<T> {
        let n = n.min(items.len());
        if n * 4 <= items.len() {
            // Few of many: draw indices until `n` distinct ones (cheap for small `n`).
            let mut idx: Vec<usize> = Vec::with_capacity(n);
            while idx.len() < n {
                let i = self.below(items.len());
                if !idx.contains(&i) {
                    idx.push(i);
                }
            }
            return idx.into_iter().map(|i| items[i]).collect();
        }
        let mut idx: Vec<usize> = (0..items.len()).collect();
        for i in 0..n {
            let j = i + self.below(idx.len() - i);
            idx.swap(i, j);
        }
        idx[..n].iter().map(|&i| items[i]).collect()
    }
}

fn at(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, 12, 0, 0)
        .single()
        .expect("valid date")
}

/// The instant the defined state is computed at.
fn now() -> DateTime<Utc> {
    at(2026, 3, 15)
}

/// What the generator produced, for the report.
#[derive(Debug, Default)]
struct Shape {
    dynamic: usize,
    quartz: usize,
    normal: usize,
    with_holder: usize,
    lost: usize,
    electronic_cylinders: usize,
    persons_with_profiles: usize,
    temporary_in_force: usize,
}

fn build(rng: &mut Rng) -> (Configuration, Shape) {
    let mut shape = Shape::default();
    let dynamic_groups: Vec<ObjectId> = (0..KEY_GROUPS / 2)
        .map(|i| KEY_GROUP_BASE + i as ObjectId)
        .collect();
    let normal_groups: Vec<ObjectId> = (KEY_GROUPS / 2..KEY_GROUPS)
        .map(|i| KEY_GROUP_BASE + i as ObjectId)
        .collect();
    let all_key_groups: Vec<ObjectId> = dynamic_groups
        .iter()
        .chain(&normal_groups)
        .copied()
        .collect();

    // Cylinder groups and cylinders, partitioned into domains.
    let mut cfg = Configuration {
        flexible_revalidation: true,
        ..Default::default()
    };
    let mut groups_of_domain: Vec<Vec<ObjectId>> = vec![Vec::new(); DOMAINS];
    for i in 0..CYLINDER_GROUPS {
        let id = CYLINDER_GROUP_BASE + i as ObjectId;
        groups_of_domain[i % DOMAINS].push(id);
        let interval = rng.chance(20).then(|| 24 * rng.pick(&[1u32, 3, 7, 14, 30]));
        cfg.cylinder_groups.insert(id, interval);
    }
    let key_ids: Vec<ObjectId> = (0..KEYS).map(|i| KEY_BASE + i as ObjectId).collect();
    let mut cylinders_of_domain: Vec<Vec<ObjectId>> = vec![Vec::new(); DOMAINS];
    let mut all_cylinders = Vec::with_capacity(CYLINDERS);
    for i in 0..CYLINDERS {
        let id = CYLINDER_BASE + i as ObjectId;
        let domain = i % DOMAINS;
        cylinders_of_domain[domain].push(id);
        all_cylinders.push(id);
        let electronic = rng.chance(85);
        let mut c = CylinderConfig {
            id,
            electronic,
            ..Default::default()
        };
        if electronic {
            shape.electronic_cylinders += 1;
            if rng.chance(75) {
                c.cylinder_group = Some(rng.pick(&groups_of_domain[domain]));
            }
            for g in rng.pick_some(&all_key_groups, 1, 3) {
                let exceptions: BTreeSet<ObjectId> = if rng.chance(10) {
                    (0..rng.between(1, 3)).map(|_| rng.pick(&key_ids)).collect()
                } else {
                    BTreeSet::new()
                };
                c.key_groups.insert(g, exceptions);
            }
            if rng.chance(30) {
                c.keys = (0..rng.between(1, 10))
                    .map(|_| rng.pick(&key_ids))
                    .collect();
            }
            if rng.chance(2) {
                c.time_zone_offset_minutes = 60;
            }
        }
        cfg.cylinders.push(c);
    }

    // Access profiles: 5–20 cylinders or cylinder groups of one domain.
    let profile_ids: Vec<ObjectId> = (0..PROFILES)
        .map(|i| PROFILE_BASE + i as ObjectId)
        .collect();
    for (i, id) in profile_ids.iter().enumerate() {
        let domain = i % DOMAINS;
        let n = rng.between(5, 20);
        let n_groups = (0..n).filter(|_| rng.chance(30)).count();
        cfg.profiles.insert(
            *id,
            ProfileConfig {
                cylinders: rng.pick_distinct(&cylinders_of_domain[domain], n - n_groups),
                cylinder_groups: rng.pick_distinct(&groups_of_domain[domain], n_groups),
                revalidation_hours: rng.chance(20).then(|| 24 * rng.pick(&[2u32, 5, 10, 20])),
            },
        );
    }

    // Persons with 0–3 profiles (the store lists only persons holding at least one).
    let person_ids: Vec<ObjectId> = (0..PERSONS).map(|i| PERSON_BASE + i as ObjectId).collect();
    for id in &person_ids {
        let n = rng.below(4);
        if n > 0 {
            cfg.persons.insert(*id, rng.pick_distinct(&profile_ids, n));
        }
    }
    shape.persons_with_profiles = cfg.persons.len();

    // Keys: mostly dynamic, some quartz and normal; ~30 % held by a person.
    for id in &key_ids {
        let key_type = match rng.below(100) {
            0..80 => KeyType::Dynamic,
            80..92 => KeyType::Quartz,
            _ => KeyType::Normal,
        };
        let gen2 = rng.chance(75);
        let connect = key_type != KeyType::Normal && gen2 && rng.chance(25);
        let dynamic = key_type == KeyType::Dynamic;
        let holder = rng.chance(30).then(|| rng.pick(&person_ids));
        let lost = rng.chance(1) && rng.chance(50);
        let mut k = KeyConfig {
            facts: KeyFacts {
                id: *id,
                key_type,
                generation: Some(if gen2 {
                    Generation::Gen2
                } else {
                    Generation::Gen1
                }),
                firmware: Some(if gen2 {
                    FirmwareVersion::new(&[16, 2])
                } else {
                    FirmwareVersion::new(&[6, 3])
                }),
                connect,
                key_group: Some(if dynamic {
                    rng.pick(&dynamic_groups)
                } else {
                    rng.pick(&normal_groups)
                }),
                cutting: None,
                capacity: dynamic.then(|| if rng.chance(3) { 16 } else { 500 }),
                online_open: false,
                override_key: false,
            },
            activation: match rng.below(100) {
                0 => Activation::Inactive,
                1..6 => Activation::Between {
                    from: at(2026, 1, 1),
                    until: at(2026, 12, 31),
                },
                _ => Activation::AlwaysActive,
            },
            revalidation: (key_type.has_clock() && rng.chance(40)).then(|| Revalidation {
                interval_hours: 24 * rng.pick(&[7u32, 14, 30]),
                one_time_update: false,
            }),
            pin: (connect && rng.chance(10)).then_some(PinValidation {
                interval_minutes: 24 * 60,
            }),
            schedule: None,
            holder,
            profiles: Vec::new(),
            cylinders: Vec::new(),
            cylinder_groups: Vec::new(),
            lost,
        };
        if dynamic {
            if rng.chance(50) {
                k.profiles = rng.pick_some(&profile_ids, 1, 2);
            }
            if rng.chance(15) {
                k.cylinders = rng.pick_some(&all_cylinders, 1, 5);
            }
            if rng.chance(5) {
                let d = rng.below(DOMAINS);
                k.cylinder_groups = rng.pick_some(&groups_of_domain[d], 1, 2);
            }
        }
        match key_type {
            KeyType::Dynamic => shape.dynamic += 1,
            KeyType::Quartz => shape.quartz += 1,
            _ => shape.normal += 1,
        }
        shape.with_holder += usize::from(holder.is_some());
        shape.lost += usize::from(lost);
        cfg.keys.push(k);
    }

    // A lost key goes into the blocked list of every cylinder that admits it (as the store does).
    let lost: Vec<(ObjectId, Option<ObjectId>)> = cfg
        .keys
        .iter()
        .filter(|k| k.lost)
        .map(|k| (k.facts.id, k.facts.key_group))
        .collect();
    for c in cfg.cylinders.iter_mut().filter(|c| c.electronic) {
        c.blocked = lost
            .iter()
            .filter(|(k, g)| {
                c.keys.contains(k)
                    || g.is_some_and(|g| c.key_groups.get(&g).is_some_and(|ex| !ex.contains(k)))
            })
            .map(|(k, _)| *k)
            .collect();
    }

    // Temporary access groups: 60 % in force now, 20 % ended, 20 % to come.
    let dynamic_keys: Vec<ObjectId> = cfg
        .keys
        .iter()
        .filter(|k| k.facts.key_type == KeyType::Dynamic)
        .map(|k| k.facts.id)
        .collect();
    for _ in 0..TEMPORARY_GROUPS {
        let (start, end) = match rng.below(10) {
            0..6 => (at(2026, 3, 1), at(2026, 4, 1)),
            6..8 => (at(2026, 1, 1), at(2026, 2, 1)),
            _ => (at(2026, 6, 1), at(2026, 7, 1)),
        };
        shape.temporary_in_force += usize::from(start <= now() && now() < end);
        let d = rng.below(DOMAINS);
        cfg.temporary_groups.push(TemporaryGroupConfig {
            profiles: rng.pick_some(&profile_ids, 1, 2),
            cylinders: rng.pick_some(&cylinders_of_domain[d], 0, 5),
            cylinder_groups: rng.pick_some(&groups_of_domain[d], 0, 1),
            keys: rng.pick_some(&dynamic_keys, 20, 300),
            start,
            end,
        });
    }
    (cfg, shape)
}

/// Peak resident set size of this process (VmHWM), in kB.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "unavailable".into(),
        |kb| format!("{:.1} MiB", kb as f64 / 1024.0),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Run `f` once to warm up, then `RUNS` times; the sorted timings and the last result.
/// Results are dropped outside the timed region.
fn time_runs<T>(mut f: impl FnMut() -> T) -> (Vec<Duration>, T) {
    drop(black_box(f()));
    let mut samples = Vec::with_capacity(RUNS);
    let mut last = None;
    for _ in 0..RUNS {
        // Only one result alive at a time, so the peak RSS is that of one.
        drop(last.take());
        let start = Instant::now();
        let out = black_box(f());
        samples.push(start.elapsed());
        last = Some(out);
    }
    samples.sort_unstable();
    (samples, last.expect("at least one run"))
}

fn summary(samples: &[Duration]) -> String {
    format!(
        "median {:.1} ms (min {:.1}, max {:.1}; {} runs after 1 warm-up)",
        ms(samples[samples.len() / 2]),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
        samples.len()
    )
}

/// An actual state equal to `defined` except for 1 % of the keys, which hold an older
/// program (one access-list entry fewer, or one more when the list is empty). Returns it
/// with the changed key ids.
fn actual_from(defined: &DefinedState, rng: &mut Rng) -> (ActualState, BTreeSet<ObjectId>) {
    let mut actual = ActualState {
        keys: defined.keys.clone(),
        cylinders: defined.cylinders.clone(),
    };
    let mut ids: Vec<ObjectId> = defined.keys.keys().copied().collect();
    ids.sort_unstable();
    let changed: BTreeSet<ObjectId> = rng
        .pick_distinct(&ids, ids.len() * CHANGED_PER_MILLE / 1000)
        .into_iter()
        .collect();
    for id in &changed {
        let p = actual.keys.get_mut(id).expect("key in actual");
        match p.access.keys().next().copied() {
            Some(first) => {
                p.access.remove(&first);
            }
            None => {
                p.access.insert(AccessTarget::Cylinder(CYLINDER_BASE), None);
            }
        }
    }
    (actual, changed)
}

fn main() {
    let wall = Instant::now();
    println!(
        "lockgate defined-state benchmark (pure engine, no database; single-threaded: the bench runs on the main thread and the engine spawns none)"
    );
    let mut rng = Rng::new(0xDEF1_4ED5);
    let started = Instant::now();
    let (cfg, shape) = build(&mut rng);
    let built = started.elapsed();
    let entries_listed: usize = cfg
        .profiles
        .values()
        .map(|p| p.cylinders.len() + p.cylinder_groups.len())
        .sum();
    println!(
        "Configuration (generated in {:.2} s):\n  keys {} (dynamic {}, quartz {}, normal {}; with a holder {} = {:.0} %; lost {})\n  cylinders {} ({} electronic), cylinder groups {}, key groups {}\n  access profiles {} ({:.1} cylinders/groups each on average), domains {} (not an engine input: they only keep each profile within one domain)\n  persons {} ({} with 1–3 profiles; the others hold none and, as in Store::configuration, are not listed)\n  temporary access groups {} ({} in force at {}), flexible revalidation on",
        built.as_secs_f64(),
        cfg.keys.len(),
        shape.dynamic,
        shape.quartz,
        shape.normal,
        shape.with_holder,
        100.0 * shape.with_holder as f64 / cfg.keys.len() as f64,
        shape.lost,
        cfg.cylinders.len(),
        shape.electronic_cylinders,
        cfg.cylinder_groups.len(),
        KEY_GROUPS,
        cfg.profiles.len(),
        entries_listed as f64 / cfg.profiles.len() as f64,
        DOMAINS,
        PERSONS,
        shape.persons_with_profiles,
        cfg.temporary_groups.len(),
        shape.temporary_in_force,
        now().format("%Y-%m-%d"),
    );
    let rss_config = peak_rss_kb();

    // 1. The defined state.
    let (compute_samples, defined) = time_runs(|| defined::compute(&cfg, now()));
    let compute_median = compute_samples[compute_samples.len() / 2];
    let access_entries: usize = defined.keys.values().map(|p| p.access.len()).sum();
    let with_access = defined
        .keys
        .values()
        .filter(|p| !p.access.is_empty())
        .count();
    let max_entries = defined
        .keys
        .values()
        .map(|p| p.access.len())
        .max()
        .unwrap_or(0);
    let cylinder_entries: usize = defined
        .cylinders
        .values()
        .map(|c| c.key_groups.len() + c.keys.len())
        .sum();
    let with_interval: usize = defined
        .keys
        .values()
        .flat_map(|p| p.access.values())
        .filter(|i| i.is_some())
        .count();
    println!(
        "\nDefined state: {} key programs ({} with a non-empty key access list; {} entries, {:.1} per such key, max {}; {} entries with their own revalidation interval), {} cylinder programs ({} access-list entries), {} keys over capacity, {} lost",
        defined.keys.len(),
        with_access,
        access_entries,
        access_entries as f64 / with_access.max(1) as f64,
        max_entries,
        with_interval,
        defined.cylinders.len(),
        cylinder_entries,
        defined.over_capacity.len(),
        defined.lost.len(),
    );
    println!(
        "defined::compute: {}  — target < {:.0} s on one core: {}",
        summary(&compute_samples),
        TARGET.as_secs_f64(),
        if compute_median < TARGET {
            format!(
                "met ({:.1} % of the budget)",
                100.0 * compute_median.as_secs_f64() / TARGET.as_secs_f64()
            )
        } else {
            "MISSED".into()
        }
    );
    let rss_defined = peak_rss_kb();

    // 2. Reconciliation against an actual state that differs in 1 % of the keys.
    let (actual, changed) = actual_from(&defined, &mut rng);
    let pending = Pending::default();
    let expected: BTreeSet<ObjectId> = changed
        .iter()
        .filter(|id| !defined.lost.contains(id) && !defined.over_capacity.contains_key(id))
        .copied()
        .collect();
    let (reconcile_samples, plan) = time_runs(|| reconcile::reconcile(&defined, &actual, &pending));
    let planned: BTreeSet<ObjectId> = plan.keys.keys().copied().collect();
    assert_eq!(
        planned, expected,
        "the plan updates exactly the changed keys that are neither lost nor over capacity"
    );
    assert!(plan.cylinders.is_empty(), "no cylinder changed");
    let creates = plan
        .keys
        .values()
        .filter(|d| matches!(d, reconcile::Decision::Create { .. }))
        .count();
    println!(
        "\nActual state = defined state with {} keys ({} %) holding an older program; no pending jobs",
        changed.len(),
        CHANGED_PER_MILLE as f64 / 10.0
    );
    println!(
        "reconcile::reconcile: {}  — plan: {} remote update jobs to create (the changed keys minus lost / over-capacity ones), {} keys held back over capacity, {} cylinder jobs",
        summary(&reconcile_samples),
        creates,
        plan.capacity_exceeded.len(),
        plan.cylinders.len(),
    );

    // Peak memory.
    println!(
        "\nPeak RSS (VmHWM): {} after building the configuration, {} after the defined-state runs, {} at the end (configuration + defined state + actual state + plan held at once)",
        mib(rss_config),
        mib(rss_defined),
        mib(peak_rss_kb()),
    );
    println!(
        "Total bench wall time: {:.1} s",
        wall.elapsed().as_secs_f64()
    );
}
