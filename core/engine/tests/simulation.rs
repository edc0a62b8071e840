//! Hardware simulation: keys and cylinders that hold an actual state, execute the jobs the
//! reconciler plans, and answer `can_open`. Property tests generate random systems and
//! random administrator operations, run all jobs through the simulation and check that
//! every key opens exactly the cylinders the configuration allows, and that a second
//! reconciliation finds nothing to do.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, TimeZone, Utc};
use lockgate_engine::{
    defined::{
        self, Configuration, CylinderConfig, KeyConfig, ProfileConfig, TemporaryGroupConfig,
    },
    opening::{CylinderSide, OpeningContext, can_open},
    reconcile::{ActualState, Decision, Pending, reconcile},
    state::{CylinderFacts, CylinderProgram, KeyClock, KeyFacts, KeyProgram, Side},
};
use lockgate_model::{
    FirmwareVersion, ObjectId,
    cylinder::{FactoryFeatures, SideKind},
    key::{Activation, Generation, KeyType},
};
use proptest::prelude::*;

/// A simulated key: what it holds and what it remembers.
#[derive(Debug, Clone)]
struct SimKey {
    facts: KeyFacts,
    program: KeyProgram,
    clock: KeyClock,
}

/// A simulated cylinder.
#[derive(Debug, Clone)]
struct SimCylinder {
    facts: CylinderFacts,
    program: CylinderProgram,
}

/// The hardware of a site.
#[derive(Debug, Default)]
struct Site {
    keys: HashMap<ObjectId, SimKey>,
    cylinders: HashMap<ObjectId, SimCylinder>,
    /// Jobs executed so far (to check that unchanged systems produce none).
    executed: usize,
}

impl Site {
    fn actual(&self) -> ActualState {
        ActualState {
            keys: self
                .keys
                .iter()
                .map(|(id, k)| (*id, k.program.clone()))
                .collect(),
            cylinders: self
                .cylinders
                .iter()
                .map(|(id, c)| (*id, c.program.clone()))
                .collect(),
        }
    }

    /// Every key visits a remote PD and every cylinder gets its programming job: pending
    /// jobs run, the key clock is set and the key revalidated.
    fn execute_all(&mut self, cfg: &Configuration, now: DateTime<Utc>) {
        let defined = defined::compute(cfg, now);
        let plan = reconcile(&defined, &self.actual(), &Pending::default());
        for (id, d) in plan.keys {
            if let Decision::Create { target } | Decision::Replace { target, .. } = d {
                // (The reconciler plans nothing for lost keys: they never reach a PD.)
                let k = self.keys.get_mut(&id).expect("known key");
                k.program = target;
                self.executed += 1;
            }
        }
        for (id, (d, _)) in plan.cylinders {
            if let Decision::Create { target } | Decision::Replace { target, .. } = d {
                self.cylinders.get_mut(&id).expect("known cylinder").program = target;
                self.executed += 1;
            }
        }
        let lost: BTreeSet<ObjectId> = cfg
            .keys
            .iter()
            .filter(|k| k.lost)
            .map(|k| k.facts.id)
            .collect();
        for (id, k) in &mut self.keys {
            if !lost.contains(id) {
                k.clock.last_revalidation = Some(now);
            }
        }
    }
}

/// The oracle: what the configuration allows, written directly from DOMAIN.md §2–§3,
/// independently of the engine's defined-state code.
fn allowed(
    cfg: &Configuration,
    key: &KeyConfig,
    cylinder: &CylinderConfig,
    now: DateTime<Utc>,
) -> bool {
    if key.lost || !cylinder.electronic || key.facts.key_type == KeyType::Mechanical {
        return false;
    }
    if cylinder.blocked.contains(&key.facts.id) {
        return false;
    }
    let admitted_by_group = key
        .facts
        .key_group
        .and_then(|g| cylinder.key_groups.get(&g))
        .is_some_and(|exceptions| !exceptions.contains(&key.facts.id));
    if !(admitted_by_group || cylinder.keys.contains(&key.facts.id)) {
        return false;
    }
    if key.facts.key_type != KeyType::Dynamic {
        return true;
    }
    let group = cylinder.cylinder_group;
    let gives = |cyls: &[ObjectId], groups: &[ObjectId]| {
        cyls.contains(&cylinder.id) || group.is_some_and(|g| groups.contains(&g))
    };
    let via_profile = |p: &ObjectId| {
        cfg.profiles
            .get(p)
            .is_some_and(|p| gives(&p.cylinders, &p.cylinder_groups))
    };
    gives(&key.cylinders, &key.cylinder_groups)
        || key.profiles.iter().any(via_profile)
        || key
            .holder
            .and_then(|h| cfg.persons.get(&h))
            .is_some_and(|ps| ps.iter().any(via_profile))
        || cfg.temporary_groups.iter().any(|t| {
            t.keys.contains(&key.facts.id)
                && t.start <= now
                && now < t.end
                && (gives(&t.cylinders, &t.cylinder_groups) || t.profiles.iter().any(via_profile))
        })
}

fn check_site(cfg: &Configuration, site: &Site, now: DateTime<Utc>) -> Result<(), TestCaseError> {
    let ctx = OpeningContext {
        base_time_zone: "Europe/Berlin",
        previous_insertion: None,
    };
    for key in &cfg.keys {
        let k = &site.keys[&key.facts.id];
        for c in &cfg.cylinders {
            let cyl = &site.cylinders[&c.id];
            let opens = can_open(
                &k.facts,
                &k.program,
                &k.clock,
                &CylinderSide {
                    facts: &cyl.facts,
                    program: &cyl.program,
                    side: Side::A,
                },
                now,
                &ctx,
            )
            .is_ok();
            prop_assert_eq!(
                opens,
                allowed(cfg, key, c, now),
                "key {} cylinder {} at {}",
                key.facts.id,
                c.id,
                now
            );
        }
    }
    // Everything executed: nothing left to do.
    let again = reconcile(
        &defined::compute(cfg, now),
        &site.actual(),
        &Pending::default(),
    );
    prop_assert!(
        again.is_empty(),
        "jobs after executing everything: {:?}",
        again
    );
    Ok(())
}

// --- random systems -------------------------------------------------------------------

const KEY_GROUPS: [ObjectId; 2] = [900, 901];
const DYNAMIC_GROUP: ObjectId = 902;
const CYLINDER_GROUPS: [ObjectId; 3] = [800, 801, 802];

fn key_facts(id: ObjectId, key_type: KeyType, group: ObjectId) -> KeyFacts {
    KeyFacts {
        id,
        key_type,
        generation: Some(Generation::Gen2),
        firmware: Some(FirmwareVersion::new(&[12, 7])),
        connect: false,
        key_group: Some(group),
        cutting: None,
        capacity: None,
        online_open: false,
        override_key: false,
    }
}

fn cylinder_facts(id: ObjectId) -> CylinderFacts {
    CylinderFacts {
        id,
        side_a: SideKind::Electronic,
        side_b: None,
        cutting: None,
        firmware: Some(FirmwareVersion::new(&[10, 2])),
        time_zone: None,
        factory: FactoryFeatures::default(),
    }
}

/// An administrator operation.
#[derive(Debug, Clone)]
enum Op {
    GiveProfileToKey {
        key: usize,
        profile: usize,
    },
    TakeProfileFromKey {
        key: usize,
    },
    GiveProfileToPerson {
        person: usize,
        profile: usize,
    },
    AddCylinderToProfile {
        profile: usize,
        cylinder: usize,
    },
    RemoveCylinderFromProfile {
        profile: usize,
        cylinder: usize,
    },
    AddGroupToProfile {
        profile: usize,
        group: usize,
    },
    ExplicitCylinder {
        key: usize,
        cylinder: usize,
    },
    AdmitGroupOnCylinder {
        cylinder: usize,
        group: usize,
    },
    ExceptKey {
        cylinder: usize,
        key: usize,
    },
    AdmitKeyIndividually {
        cylinder: usize,
        key: usize,
    },
    RemoveGroupFromCylinder {
        cylinder: usize,
    },
    MoveCylinderToGroup {
        cylinder: usize,
        group: Option<usize>,
    },
    BlockKeyEverywhere {
        key: usize,
    },
    UnblockKey {
        key: usize,
    },
    LoseKey {
        key: usize,
    },
    FindKey {
        key: usize,
    },
    TemporaryGroup {
        key: usize,
        cylinder: usize,
        days: i64,
    },
    AdvanceDays {
        days: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let i = || 0usize..4;
    prop_oneof![
        (i(), 0usize..3).prop_map(|(key, profile)| Op::GiveProfileToKey { key, profile }),
        i().prop_map(|key| Op::TakeProfileFromKey { key }),
        (0usize..3, 0usize..3)
            .prop_map(|(person, profile)| Op::GiveProfileToPerson { person, profile }),
        (0usize..3, i())
            .prop_map(|(profile, cylinder)| Op::AddCylinderToProfile { profile, cylinder }),
        (0usize..3, i())
            .prop_map(|(profile, cylinder)| Op::RemoveCylinderFromProfile { profile, cylinder }),
        (0usize..3, 0usize..3)
            .prop_map(|(profile, group)| Op::AddGroupToProfile { profile, group }),
        (i(), i()).prop_map(|(key, cylinder)| Op::ExplicitCylinder { key, cylinder }),
        (i(), 0usize..3).prop_map(|(cylinder, group)| Op::AdmitGroupOnCylinder { cylinder, group }),
        (i(), i()).prop_map(|(cylinder, key)| Op::ExceptKey { cylinder, key }),
        (i(), i()).prop_map(|(cylinder, key)| Op::AdmitKeyIndividually { cylinder, key }),
        i().prop_map(|cylinder| Op::RemoveGroupFromCylinder { cylinder }),
        (i(), proptest::option::of(0usize..3))
            .prop_map(|(cylinder, group)| Op::MoveCylinderToGroup { cylinder, group }),
        i().prop_map(|key| Op::BlockKeyEverywhere { key }),
        i().prop_map(|key| Op::UnblockKey { key }),
        i().prop_map(|key| Op::LoseKey { key }),
        i().prop_map(|key| Op::FindKey { key }),
        (i(), i(), 1i64..5).prop_map(|(key, cylinder, days)| Op::TemporaryGroup {
            key,
            cylinder,
            days
        }),
        (1i64..4).prop_map(|days| Op::AdvanceDays { days }),
    ]
}

fn apply(cfg: &mut Configuration, op: &Op, now: &mut DateTime<Utc>) {
    let key_id = |i: usize| cfg.keys[i % cfg.keys.len()].facts.id;
    let cyl = |i: usize| i % 8;
    let all_groups = [KEY_GROUPS[0], KEY_GROUPS[1], DYNAMIC_GROUP];
    match *op {
        Op::GiveProfileToKey { key, profile } => {
            let k = key % cfg.keys.len();
            cfg.keys[k].profiles = vec![500 + profile as ObjectId];
        }
        Op::TakeProfileFromKey { key } => {
            let k = key % cfg.keys.len();
            cfg.keys[k].profiles.clear();
        }
        Op::GiveProfileToPerson { person, profile } => {
            cfg.persons
                .insert(700 + person as ObjectId, vec![500 + profile as ObjectId]);
        }
        Op::AddCylinderToProfile { profile, cylinder } => {
            let c = cfg.cylinders[cyl(cylinder)].id;
            let p = cfg.profiles.entry(500 + profile as ObjectId).or_default();
            if !p.cylinders.contains(&c) {
                p.cylinders.push(c);
            }
        }
        Op::RemoveCylinderFromProfile { profile, cylinder } => {
            let c = cfg.cylinders[cyl(cylinder)].id;
            cfg.profiles
                .entry(500 + profile as ObjectId)
                .or_default()
                .cylinders
                .retain(|x| *x != c);
        }
        Op::AddGroupToProfile { profile, group } => {
            let g = CYLINDER_GROUPS[group];
            let p = cfg.profiles.entry(500 + profile as ObjectId).or_default();
            if !p.cylinder_groups.contains(&g) {
                p.cylinder_groups.push(g);
            }
        }
        Op::ExplicitCylinder { key, cylinder } => {
            let c = cfg.cylinders[cyl(cylinder)].id;
            let k = key % cfg.keys.len();
            if !cfg.keys[k].cylinders.contains(&c) {
                cfg.keys[k].cylinders.push(c);
            }
        }
        Op::AdmitGroupOnCylinder { cylinder, group } => {
            cfg.cylinders[cyl(cylinder)]
                .key_groups
                .entry(all_groups[group])
                .or_default();
        }
        Op::ExceptKey { cylinder, key } => {
            let id = key_id(key);
            let g = cfg
                .keys
                .iter()
                .find(|k| k.facts.id == id)
                .and_then(|k| k.facts.key_group);
            if let Some(g) = g
                && let Some(ex) = cfg.cylinders[cyl(cylinder)].key_groups.get_mut(&g)
            {
                ex.insert(id);
            }
        }
        Op::AdmitKeyIndividually { cylinder, key } => {
            let id = key_id(key);
            cfg.cylinders[cyl(cylinder)].keys.insert(id);
        }
        Op::RemoveGroupFromCylinder { cylinder } => {
            let c = &mut cfg.cylinders[cyl(cylinder)];
            let first = c.key_groups.keys().next().copied();
            if let Some(g) = first {
                c.key_groups.remove(&g);
            }
        }
        Op::MoveCylinderToGroup { cylinder, group } => {
            cfg.cylinders[cyl(cylinder)].cylinder_group = group.map(|g| CYLINDER_GROUPS[g]);
        }
        Op::BlockKeyEverywhere { key } => {
            // Custom blocks (the lost flow blocks through LoseKey).
            let id = key_id(key);
            for c in &mut cfg.cylinders {
                c.blocked.insert(id);
            }
        }
        Op::UnblockKey { key } => {
            // A lost key stays blocked until it is found.
            let k = key % cfg.keys.len();
            if !cfg.keys[k].lost {
                let id = cfg.keys[k].facts.id;
                for c in &mut cfg.cylinders {
                    c.blocked.remove(&id);
                }
            }
        }
        Op::LoseKey { key } => {
            // The default lost-key flow: blocked silently on every cylinder.
            let k = key % cfg.keys.len();
            cfg.keys[k].lost = true;
            let id = cfg.keys[k].facts.id;
            for c in &mut cfg.cylinders {
                c.blocked.insert(id);
            }
        }
        Op::FindKey { key } => {
            // Found: back in stock, the blocks are reversed.
            let k = key % cfg.keys.len();
            if cfg.keys[k].lost {
                cfg.keys[k].lost = false;
                let id = cfg.keys[k].facts.id;
                for c in &mut cfg.cylinders {
                    c.blocked.remove(&id);
                }
            }
        }
        Op::TemporaryGroup {
            key,
            cylinder,
            days,
        } => {
            let (k, c) = (key_id(key), cfg.cylinders[cyl(cylinder)].id);
            cfg.temporary_groups.push(TemporaryGroupConfig {
                profiles: vec![],
                cylinders: vec![c],
                cylinder_groups: vec![],
                keys: vec![k],
                start: *now,
                end: *now + Duration::days(days),
            });
        }
        Op::AdvanceDays { days } => *now += Duration::days(days),
    }
}

fn initial(types: &[KeyType], holders: &[Option<usize>]) -> (Configuration, Site) {
    let mut cfg = Configuration::default();
    let mut site = Site::default();
    for (i, ty) in types.iter().enumerate() {
        let id = 100 + i as ObjectId;
        let group = if *ty == KeyType::Dynamic {
            DYNAMIC_GROUP
        } else {
            KEY_GROUPS[i % 2]
        };
        let facts = key_facts(id, *ty, group);
        cfg.keys.push(KeyConfig {
            facts: facts.clone(),
            activation: Activation::AlwaysActive,
            revalidation: None,
            pin: None,
            schedule: None,
            holder: holders
                .get(i)
                .copied()
                .flatten()
                .map(|p| 700 + p as ObjectId),
            profiles: vec![],
            cylinders: vec![],
            cylinder_groups: vec![],
            lost: false,
        });
        site.keys.insert(
            id,
            SimKey {
                facts,
                program: KeyProgram::default(),
                clock: KeyClock::default(),
            },
        );
    }
    for i in 0..8 {
        let id = 200 + i as ObjectId;
        cfg.cylinders.push(CylinderConfig {
            id,
            electronic: true,
            cylinder_group: Some(CYLINDER_GROUPS[i % 3]),
            ..Default::default()
        });
        site.cylinders.insert(
            id,
            SimCylinder {
                facts: cylinder_facts(id),
                program: CylinderProgram::default(),
            },
        );
    }
    for p in 0..3 {
        cfg.profiles.insert(500 + p, ProfileConfig::default());
    }
    (cfg, site)
}

fn key_type() -> impl Strategy<Value = KeyType> {
    prop_oneof![
        Just(KeyType::Normal),
        Just(KeyType::Quartz),
        Just(KeyType::Dynamic),
        Just(KeyType::Dynamic)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// After every operation and all its jobs, each key opens exactly what the configuration allows.
    #[test]
    fn keys_open_exactly_what_is_defined(
        types in proptest::collection::vec(key_type(), 1..8),
        holders in proptest::collection::vec(proptest::option::of(0usize..3), 8),
        ops in proptest::collection::vec(op(), 1..25),
    ) {
        let (mut cfg, mut site) = initial(&types, &holders);
        let mut now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).single().expect("date");
        site.execute_all(&cfg, now);
        check_site(&cfg, &site, now)?;
        for op in &ops {
            apply(&mut cfg, op, &mut now);
            site.execute_all(&cfg, now);
            check_site(&cfg, &site, now)?;
        }
    }

    /// With nothing changed, no job is emitted however often the reconciler runs.
    #[test]
    fn no_change_no_job(
        types in proptest::collection::vec(key_type(), 1..8),
        ops in proptest::collection::vec(op(), 0..15),
    ) {
        let (mut cfg, mut site) = initial(&types, &[]);
        let mut now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).single().expect("date");
        for op in &ops {
            // Keep the clock still: temporary groups must not expire between the runs.
            if !matches!(op, Op::AdvanceDays { .. }) {
                apply(&mut cfg, op, &mut now);
            }
        }
        site.execute_all(&cfg, now);
        let executed = site.executed;
        for _ in 0..3 {
            site.execute_all(&cfg, now);
        }
        prop_assert_eq!(site.executed, executed);
    }
}

/// A lost key that is found again: the blocks that reached cylinders are reversed, and
/// the key's access comes back only through its configuration.
#[test]
fn lost_and_found_round_trip() {
    let (mut cfg, mut site) = initial(&[KeyType::Dynamic], &[]);
    let now = Utc
        .with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("date");
    let mut t = now;
    apply(
        &mut cfg,
        &Op::ExplicitCylinder {
            key: 0,
            cylinder: 0,
        },
        &mut t,
    );
    apply(
        &mut cfg,
        &Op::AdmitGroupOnCylinder {
            cylinder: 0,
            group: 2,
        },
        &mut t,
    );
    site.execute_all(&cfg, now);
    check_site(&cfg, &site, now).expect("opens");
    assert!(allowed(&cfg, &cfg.keys[0], &cfg.cylinders[0], now));
    apply(&mut cfg, &Op::LoseKey { key: 0 }, &mut t);
    site.execute_all(&cfg, now);
    check_site(&cfg, &site, now).expect("blocked");
    let blocked: BTreeSet<_> = site
        .cylinders
        .values()
        .filter(|c| c.program.blocked.contains(&100))
        .map(|c| c.facts.id)
        .collect();
    assert_eq!(blocked.len(), 8);
    apply(&mut cfg, &Op::FindKey { key: 0 }, &mut t);
    site.execute_all(&cfg, now);
    check_site(&cfg, &site, now).expect("found");
    assert!(
        site.cylinders
            .values()
            .all(|c| c.program.blocked.is_empty())
    );
}

/// A key excepted from its group but admitted individually opens; adding its group makes
/// an individual entry redundant only while the key is not excepted.
#[test]
fn exception_and_individual_entry() {
    let (mut cfg, mut site) = initial(&[KeyType::Quartz], &[]);
    let now = Utc
        .with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("date");
    let mut t = now;
    for op in [
        Op::AdmitGroupOnCylinder {
            cylinder: 0,
            group: 0,
        },
        Op::ExceptKey {
            cylinder: 0,
            key: 0,
        },
    ] {
        apply(&mut cfg, &op, &mut t);
    }
    site.execute_all(&cfg, now);
    check_site(&cfg, &site, now).expect("excepted");
    assert!(!allowed(&cfg, &cfg.keys[0], &cfg.cylinders[0], now));
    apply(
        &mut cfg,
        &Op::AdmitKeyIndividually {
            cylinder: 0,
            key: 0,
        },
        &mut t,
    );
    site.execute_all(&cfg, now);
    check_site(&cfg, &site, now).expect("individually admitted");
    assert!(allowed(&cfg, &cfg.keys[0], &cfg.cylinders[0], now));
}
