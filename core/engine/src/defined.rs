//! The defined state: what every key and cylinder should hold, computed from the
//! administrators' configuration (`DOMAIN.md` §3, §5).
//!
//! Dynamic keys carry their own key access list: explicit entries on the key, plus the
//! implicit entries of the access profiles tied to the key, to its holder, and of the
//! temporary access groups the key is in while their dates run. Cylinders carry their
//! access list (key groups with exceptions, individual keys), their blocked list, their
//! cylinder group and time-zone offset.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use lockgate_model::{
    ObjectId,
    key::{Activation, KeyType, PinValidation, Revalidation},
    schedule::Schedule,
};
use serde::Serialize;

use crate::{
    revalidation::effective_interval,
    state::{AccessTarget, CylinderProgram, KeyFacts, KeyProgram},
};

/// A user key as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    pub facts: KeyFacts,
    pub activation: Activation,
    pub revalidation: Option<Revalidation>,
    pub pin: Option<PinValidation>,
    pub schedule: Option<Schedule>,
    /// Holder (person) whose access profiles the key inherits.
    pub holder: Option<ObjectId>,
    /// Access profiles tied directly to the key.
    pub profiles: Vec<ObjectId>,
    /// Explicit entries on the key's own access list.
    pub cylinders: Vec<ObjectId>,
    pub cylinder_groups: Vec<ObjectId>,
    /// Reported lost: the key cannot be reached, so no update is planned for it (its
    /// pending updates are cancelled); blocked lists keep it out.
    pub lost: bool,
}

/// A cylinder as configured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CylinderConfig {
    pub id: ObjectId,
    pub electronic: bool,
    pub key_groups: BTreeMap<ObjectId, BTreeSet<ObjectId>>,
    pub keys: BTreeSet<ObjectId>,
    /// Keys to block here (lost keys, as the lost-key flow chose).
    pub blocked: BTreeSet<ObjectId>,
    /// Lost keys that go into the blocked list here silently: no job of their own, but
    /// every job this cylinder gets for another reason (or a reprogramming) writes them.
    pub silently_blocked: BTreeSet<ObjectId>,
    pub cylinder_group: Option<ObjectId>,
    pub time_zone_offset_minutes: i32,
}

/// An access profile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfileConfig {
    pub cylinders: Vec<ObjectId>,
    pub cylinder_groups: Vec<ObjectId>,
    /// Flexible revalidation interval (hours).
    pub revalidation_hours: Option<u32>,
}

/// A temporary access group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporaryGroupConfig {
    pub profiles: Vec<ObjectId>,
    pub cylinders: Vec<ObjectId>,
    pub cylinder_groups: Vec<ObjectId>,
    pub keys: Vec<ObjectId>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Everything the defined state depends on.
#[derive(Debug, Clone, Default)]
pub struct Configuration {
    /// Flexible revalidation is licensed and switched on.
    pub flexible_revalidation: bool,
    pub keys: Vec<KeyConfig>,
    pub cylinders: Vec<CylinderConfig>,
    /// Cylinder group → flexible revalidation interval (hours).
    pub cylinder_groups: HashMap<ObjectId, Option<u32>>,
    /// Cylinder → its cylinder group, for every cylinder in a group (filled when flexible
    /// revalidation is on): a cylinder takes its group's interval (manual §8.1.6).
    pub cylinder_group_of: HashMap<ObjectId, ObjectId>,
    pub profiles: HashMap<ObjectId, ProfileConfig>,
    /// Person → the access profiles tied to them.
    pub persons: HashMap<ObjectId, Vec<ObjectId>>,
    pub temporary_groups: Vec<TemporaryGroupConfig>,
    /// Key group of keys that are not in `keys` (a scoped configuration that computes
    /// cylinders without loading every key): cylinder programs need every key's group.
    pub other_key_groups: HashMap<ObjectId, Option<ObjectId>>,
}

/// The computed defined state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DefinedState {
    pub keys: HashMap<ObjectId, KeyProgram>,
    pub cylinders: HashMap<ObjectId, CylinderProgram>,
    /// Keys whose defined access list exceeds their capacity, with (entries, capacity).
    pub over_capacity: BTreeMap<ObjectId, (usize, u32)>,
    /// Keys reported lost: no update is planned for them.
    pub lost: BTreeSet<ObjectId>,
    /// Per cylinder, the silent blocked-list entries its program holds (see
    /// [`CylinderConfig::silently_blocked`]): they never cause a job themselves.
    pub silently_blocked: HashMap<ObjectId, BTreeSet<ObjectId>>,
}

/// Where an access-list entry comes from, to choose its revalidation interval.
#[derive(Debug, Default)]
struct Sources {
    /// Intervals of the profiles that give the entry (profiles without one count as none).
    profile_intervals: Vec<u32>,
}

/// Compute the defined state of every key and cylinder at `now` (temporary groups count
/// only between their start and end).
pub fn compute(cfg: &Configuration, now: DateTime<Utc>) -> DefinedState {
    // Temporary groups in force, per key.
    let mut temporary: HashMap<ObjectId, Vec<&TemporaryGroupConfig>> = HashMap::new();
    for g in cfg
        .temporary_groups
        .iter()
        .filter(|g| g.start <= now && now < g.end)
    {
        for k in &g.keys {
            temporary.entry(*k).or_default().push(g);
        }
    }
    let mut out = DefinedState::default();
    for key in &cfg.keys {
        let program = key_program(
            cfg,
            key,
            temporary
                .get(&key.facts.id)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        if let Some(cap) = key.facts.capacity
            && program.access.len() > cap as usize
        {
            out.over_capacity
                .insert(key.facts.id, (program.access.len(), cap));
        }
        if key.lost {
            out.lost.insert(key.facts.id);
        }
        out.keys.insert(key.facts.id, program);
    }
    let mut key_groups = cfg.other_key_groups.clone();
    key_groups.extend(cfg.keys.iter().map(|k| (k.facts.id, k.facts.key_group)));
    for c in cfg.cylinders.iter().filter(|c| c.electronic) {
        out.cylinders.insert(c.id, cylinder_program(c, &key_groups));
        let silent: BTreeSet<ObjectId> =
            c.silently_blocked.difference(&c.blocked).copied().collect();
        if !silent.is_empty() {
            out.silently_blocked.insert(c.id, silent);
        }
    }
    out
}

/// The defined program of one key.
pub fn key_program(
    cfg: &Configuration,
    key: &KeyConfig,
    temporary: &[&TemporaryGroupConfig],
) -> KeyProgram {
    let has_clock = key.facts.key_type.has_clock();
    let mut program = KeyProgram {
        activation: if has_clock || !matches!(key.activation, Activation::Between { .. }) {
            key.activation.clone()
        } else {
            Activation::AlwaysActive
        },
        revalidation: if has_clock {
            key.revalidation.clone()
        } else {
            None
        },
        pin: if key.facts.connect {
            key.pin.clone()
        } else {
            None
        },
        schedule: if has_clock {
            key.schedule.clone()
        } else {
            None
        },
        access: BTreeMap::new(),
    };
    if key.facts.key_type != KeyType::Dynamic {
        return program;
    }
    let mut entries: BTreeMap<AccessTarget, Sources> = BTreeMap::new();
    for c in &key.cylinders {
        entries.entry(AccessTarget::Cylinder(*c)).or_default();
    }
    for g in &key.cylinder_groups {
        entries.entry(AccessTarget::CylinderGroup(*g)).or_default();
    }
    let add_profile = |entries: &mut BTreeMap<AccessTarget, Sources>, id: &ObjectId| {
        if let Some(p) = cfg.profiles.get(id) {
            let targets = p
                .cylinders
                .iter()
                .map(|c| AccessTarget::Cylinder(*c))
                .chain(
                    p.cylinder_groups
                        .iter()
                        .map(|g| AccessTarget::CylinderGroup(*g)),
                );
            for t in targets {
                let s = entries.entry(t).or_default();
                if let Some(h) = p.revalidation_hours {
                    s.profile_intervals.push(h);
                }
            }
        }
    };
    for p in &key.profiles {
        add_profile(&mut entries, p);
    }
    if let Some(h) = key.holder.and_then(|h| cfg.persons.get(&h)) {
        for p in h {
            add_profile(&mut entries, p);
        }
    }
    for g in temporary {
        for p in &g.profiles {
            add_profile(&mut entries, p);
        }
        for c in &g.cylinders {
            entries.entry(AccessTarget::Cylinder(*c)).or_default();
        }
        for cg in &g.cylinder_groups {
            entries.entry(AccessTarget::CylinderGroup(*cg)).or_default();
        }
    }
    let key_interval = program.revalidation.as_ref().map(|r| r.interval_hours);
    // Per-entry intervals need key firmware 6.3.1 (unknown firmware is not held back).
    let flexible = cfg.flexible_revalidation
        && key.facts.firmware.as_ref().is_none_or(|fw| {
            crate::capability::supports(
                crate::capability::Feature::FlexibleRevalidation,
                crate::capability::Device::Key,
                Some(fw),
            )
        });
    for (target, sources) in entries {
        let interval = if flexible && key_interval.is_some() {
            // Manual §8.1.6: a cylinder in a group takes the group's interval, also
            // where the key lists it individually.
            let group = match target {
                AccessTarget::CylinderGroup(g) => Some(g),
                AccessTarget::Cylinder(c) => cfg.cylinder_group_of.get(&c).copied(),
            }
            .and_then(|g| cfg.cylinder_groups.get(&g).copied().flatten());
            effective_interval(key_interval, group, &sources.profile_intervals)
                .filter(|i| Some(*i) != key_interval)
        } else {
            None
        };
        program.access.insert(target, interval);
    }
    program
}

/// The defined program of one cylinder: an individual entry of a key whose group the
/// cylinder admits (and does not except it from) is redundant and dropped.
pub fn cylinder_program(
    c: &CylinderConfig,
    key_groups: &HashMap<ObjectId, Option<ObjectId>>,
) -> CylinderProgram {
    let keys = c
        .keys
        .iter()
        .filter(|k| match key_groups.get(k).copied().flatten() {
            Some(g) => c
                .key_groups
                .get(&g)
                .is_none_or(|exceptions| exceptions.contains(k)),
            None => true,
        })
        .copied()
        .collect();
    CylinderProgram {
        key_groups: c.key_groups.clone(),
        keys,
        blocked: c.blocked.union(&c.silently_blocked).copied().collect(),
        cylinder_group: c.cylinder_group,
        time_zone_offset_minutes: c.time_zone_offset_minutes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use lockgate_model::key::Generation;

    fn facts(id: ObjectId, ty: KeyType) -> KeyFacts {
        KeyFacts {
            id,
            key_type: ty,
            generation: Some(Generation::Gen2),
            firmware: Some(lockgate_model::FirmwareVersion::new(&[12, 7])),
            connect: false,
            key_group: Some(100),
            cutting: None,
            capacity: Some(3),
            online_open: false,
            override_key: false,
        }
    }

    fn key(id: ObjectId) -> KeyConfig {
        KeyConfig {
            facts: facts(id, KeyType::Dynamic),
            activation: Activation::AlwaysActive,
            revalidation: Some(Revalidation {
                interval_hours: 14 * 24,
                one_time_update: false,
            }),
            pin: None,
            schedule: None,
            holder: None,
            profiles: vec![],
            cylinders: vec![],
            cylinder_groups: vec![],
            lost: false,
        }
    }

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0)
            .single()
            .expect("date")
    }

    #[test]
    fn union_of_explicit_profiles_holder_and_temporary_groups() {
        let mut k = key(1);
        k.cylinders = vec![10];
        k.profiles = vec![50];
        k.holder = Some(7);
        let mut cfg = Configuration::default();
        cfg.profiles.insert(
            50,
            ProfileConfig {
                cylinders: vec![11],
                ..Default::default()
            },
        );
        cfg.profiles.insert(
            51,
            ProfileConfig {
                cylinder_groups: vec![200],
                ..Default::default()
            },
        );
        cfg.persons.insert(7, vec![51]);
        cfg.temporary_groups.push(TemporaryGroupConfig {
            profiles: vec![],
            cylinders: vec![12],
            cylinder_groups: vec![],
            keys: vec![1],
            start: t(1),
            end: t(10),
        });
        cfg.keys.push(k);
        let inside = compute(&cfg, t(5));
        let targets: Vec<_> = inside.keys[&1].access.keys().copied().collect();
        assert_eq!(
            targets,
            [
                AccessTarget::Cylinder(10),
                AccessTarget::Cylinder(11),
                AccessTarget::Cylinder(12),
                AccessTarget::CylinderGroup(200)
            ]
        );
        assert_eq!(inside.over_capacity.get(&1), Some(&(4, 3)));
        let after = compute(&cfg, t(10));
        assert!(
            !after.keys[&1]
                .access
                .contains_key(&AccessTarget::Cylinder(12)),
            "the temporary group ended"
        );
        assert!(after.over_capacity.is_empty());
    }

    #[test]
    fn a_profile_on_a_key_is_not_inherited_by_the_holders_other_keys() {
        let mut a = key(1);
        a.holder = Some(7);
        a.profiles = vec![50];
        let mut b = key(2);
        b.holder = Some(7);
        let mut cfg = Configuration::default();
        cfg.profiles.insert(
            50,
            ProfileConfig {
                cylinders: vec![11],
                ..Default::default()
            },
        );
        cfg.keys = vec![a, b];
        let d = compute(&cfg, t(1));
        assert_eq!(d.keys[&1].access.len(), 1);
        assert!(d.keys[&2].access.is_empty());
    }

    #[test]
    fn flexible_revalidation_per_entry() {
        let mut k = key(1);
        k.cylinder_groups = vec![200, 201];
        k.profiles = vec![50];
        let mut cfg = Configuration {
            flexible_revalidation: true,
            ..Default::default()
        };
        cfg.cylinder_groups.insert(200, Some(7 * 24));
        cfg.cylinder_groups.insert(201, Some(30 * 24));
        cfg.profiles.insert(
            50,
            ProfileConfig {
                cylinder_groups: vec![200],
                revalidation_hours: Some(10 * 24),
                ..Default::default()
            },
        );
        cfg.keys.push(k);
        let d = compute(&cfg, t(1));
        let access = &d.keys[&1].access;
        assert_eq!(
            access[&AccessTarget::CylinderGroup(200)],
            Some(10 * 24),
            "profile overrides the group"
        );
        assert_eq!(
            access[&AccessTarget::CylinderGroup(201)],
            None,
            "30 d group capped to the key's own 14 d"
        );
        // Key firmware before 6.3.1 holds no per-entry intervals: the key's own applies.
        cfg.keys[0].facts.firmware = Some(lockgate_model::FirmwareVersion::new(&[6, 2]));
        let d = compute(&cfg, t(1));
        assert!(d.keys[&1].access.values().all(Option::is_none));
        cfg.keys[0].facts.firmware = Some(lockgate_model::FirmwareVersion::new(&[6, 3, 1]));
        let d = compute(&cfg, t(1));
        assert_eq!(
            d.keys[&1].access[&AccessTarget::CylinderGroup(200)],
            Some(10 * 24)
        );
        cfg.flexible_revalidation = false;
        let d = compute(&cfg, t(1));
        assert!(d.keys[&1].access.values().all(Option::is_none));
    }

    #[test]
    fn lost_keys_are_marked_and_non_dynamic_keys_hold_no_key_access_list() {
        let mut lost = key(1);
        lost.cylinders = vec![10];
        lost.lost = true;
        let d = compute(
            &Configuration {
                keys: vec![lost.clone()],
                ..Default::default()
            },
            t(1),
        );
        assert!(d.lost.contains(&1));
        lost.cylinders.clear();
        let mut quartz = key(2);
        quartz.facts.key_type = KeyType::Quartz;
        quartz.cylinders = vec![10];
        let mut normal = key(3);
        normal.facts.key_type = KeyType::Normal;
        normal.schedule = Some(Schedule::whole_week());
        let cfg = Configuration {
            keys: vec![lost, quartz, normal],
            ..Default::default()
        };
        let d = compute(&cfg, t(1));
        assert!(d.keys.values().all(|p| p.access.is_empty()));
        assert_eq!(d.keys[&3].schedule, None, "normal keys hold no schedule");
        assert_eq!(d.keys[&3].revalidation, None);
    }

    #[test]
    fn group_entry_makes_individual_entries_redundant() {
        let mut cfg = Configuration::default();
        let mut a = key(1);
        a.facts.key_group = Some(100);
        let mut b = key(2);
        b.facts.key_group = Some(100);
        let mut c = key(3);
        c.facts.key_group = Some(101);
        cfg.keys = vec![a, b, c];
        cfg.cylinders.push(CylinderConfig {
            id: 10,
            electronic: true,
            key_groups: [(100, [2].into_iter().collect())].into_iter().collect(),
            keys: [1, 2, 3].into_iter().collect(),
            ..Default::default()
        });
        let d = compute(&cfg, t(1));
        let keys: Vec<_> = d.cylinders[&10].keys.iter().copied().collect();
        assert_eq!(
            keys,
            [2, 3],
            "1 is admitted by its group; 2 is excepted from it; 3 is in another group"
        );
    }
}
