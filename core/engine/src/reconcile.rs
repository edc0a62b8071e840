//! Reconciliation: compare the defined state with the actual state and decide the
//! minimal jobs (`DOMAIN.md` §4) — remote update jobs for keys, cylinder programming
//! jobs for cylinders — taking the jobs already pending into account.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lockgate_model::ObjectId;
use serde::{Deserialize, Serialize};

use crate::{
    defined::DefinedState,
    state::{CylinderProgram, KeyProgram},
};

/// What the hardware last confirmed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualState {
    pub keys: HashMap<ObjectId, KeyProgram>,
    pub cylinders: HashMap<ObjectId, CylinderProgram>,
}

/// What a cylinder programming job changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CylinderAction {
    /// Key groups, exceptions or individual keys change.
    AccessList,
    /// Keys are added to the blocked list.
    Block,
    /// Keys leave the blocked list (a lost key was found).
    Unblock,
    /// The cylinder moves between cylinder groups (needs the group-programming capability).
    GroupChange,
    /// The time-zone offset changes.
    TimeZoneOffset,
    /// Requested by an administrator, never planned by the reconciler: memory wiped
    /// (audit trail included), then access list, blocked list and offset restored.
    Reprogram,
    /// Requested by an administrator, never planned by the reconciler: the C-key reads the
    /// cylinder's audit trail (manual §8.5: a cylinder programming job like any other).
    AuditTrail,
}

impl CylinderAction {
    /// Actions an administrator requests, which the reconciler never plans: they survive
    /// the replacement of their job by a newer program.
    pub const REQUESTED: [CylinderAction; 2] =
        [CylinderAction::Reprogram, CylinderAction::AuditTrail];
}

/// Which jobs a target needs: the actions to bring `actual` to `defined`.
pub fn cylinder_actions(
    actual: &CylinderProgram,
    defined: &CylinderProgram,
) -> BTreeSet<CylinderAction> {
    let mut a = BTreeSet::new();
    if actual.key_groups != defined.key_groups || actual.keys != defined.keys {
        a.insert(CylinderAction::AccessList);
    }
    if !defined.blocked.is_subset(&actual.blocked) {
        a.insert(CylinderAction::Block);
    }
    if !actual.blocked.is_subset(&defined.blocked) {
        a.insert(CylinderAction::Unblock);
    }
    if actual.cylinder_group != defined.cylinder_group {
        a.insert(CylinderAction::GroupChange);
    }
    if actual.time_zone_offset_minutes != defined.time_zone_offset_minutes {
        a.insert(CylinderAction::TimeZoneOffset);
    }
    a
}

/// A job not yet finished, as the reconciler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingJob<P> {
    pub id: ObjectId,
    /// The program the job writes.
    pub target: P,
}

/// Jobs still pending, per key and per cylinder (at most one each: a newer job replaces an older).
#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub keys: HashMap<ObjectId, PendingJob<KeyProgram>>,
    pub cylinders: HashMap<ObjectId, PendingJob<CylinderProgram>>,
    /// Cylinders whose pending job an administrator requested (reprogramming, audit-trail
    /// read): it stays even when nothing else differs.
    pub requested: BTreeSet<ObjectId>,
}

/// One decision of the reconciler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision<P> {
    /// Create a job writing `target`.
    Create { target: P },
    /// A pending job writes something else: replace it by a job writing `target`.
    Replace { old: ObjectId, target: P },
    /// The pending job is no longer needed (defined state equals actual state again).
    Cancel { old: ObjectId },
}

/// The plan for a set of keys and cylinders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub keys: BTreeMap<ObjectId, Decision<KeyProgram>>,
    pub cylinders: BTreeMap<ObjectId, (Decision<CylinderProgram>, BTreeSet<CylinderAction>)>,
    /// Keys whose update is held back because it exceeds their access-list capacity.
    pub capacity_exceeded: BTreeSet<ObjectId>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.cylinders.is_empty()
    }
}

fn decide<P: Clone + PartialEq>(
    actual: Option<&P>,
    defined: &P,
    pending: Option<&PendingJob<P>>,
    default: &P,
) -> Option<Decision<P>> {
    let actual = actual.unwrap_or(default);
    match pending {
        Some(p) if p.target == *defined => None,
        Some(p) if actual == defined => Some(Decision::Cancel { old: p.id }),
        Some(p) => Some(Decision::Replace {
            old: p.id,
            target: defined.clone(),
        }),
        None if actual == defined => None,
        None => Some(Decision::Create {
            target: defined.clone(),
        }),
    }
}

/// The key half of [`reconcile`], over any representation `P` of a key program that
/// compares like the program itself: the typed [`KeyProgram`], or its canonical JSON
/// encoding (what the store compares, so it never parses the programs keys hold).
/// `programs` holds the defined program of each key to decide, in that representation;
/// `defined` says which of them are lost or over capacity.
/// Returns the decisions and the keys held back for capacity.
pub fn key_decisions<P: Clone + PartialEq>(
    programs: &HashMap<ObjectId, P>,
    defined: &DefinedState,
    actual: &HashMap<ObjectId, P>,
    pending: &HashMap<ObjectId, PendingJob<P>>,
    empty: &P,
) -> (BTreeMap<ObjectId, Decision<P>>, BTreeSet<ObjectId>) {
    let mut decisions = BTreeMap::new();
    let mut capacity_exceeded = BTreeSet::new();
    for (id, d) in programs {
        let held_back = if defined.lost.contains(id) {
            // A lost key cannot be reached: its pending updates are cancelled.
            true
        } else if defined.over_capacity.contains_key(id) {
            capacity_exceeded.insert(*id);
            true
        } else {
            false
        };
        if held_back {
            if let Some(p) = pending.get(id) {
                decisions.insert(*id, Decision::Cancel { old: p.id });
            }
            continue;
        }
        if let Some(decision) = decide(actual.get(id), d, pending.get(id), empty) {
            decisions.insert(*id, decision);
        }
    }
    (decisions, capacity_exceeded)
}

/// Decide the jobs for every key and cylinder of `defined`. A key or cylinder without a
/// recorded actual state counts as holding the factory default (empty) program.
/// Keys over capacity get no update (it would not be executed) and are listed instead;
/// a pending update for them is cancelled. Lost keys get no update either.
pub fn reconcile(defined: &DefinedState, actual: &ActualState, pending: &Pending) -> Plan {
    let (keys, capacity_exceeded) = key_decisions(
        &defined.keys,
        defined,
        &actual.keys,
        &pending.keys,
        &KeyProgram::default(),
    );
    let mut plan = Plan {
        keys,
        capacity_exceeded,
        ..Default::default()
    };
    let empty_cylinder = CylinderProgram::default();
    for (id, d) in &defined.cylinders {
        let mut a = actual.cylinders.get(id).unwrap_or(&empty_cylinder);
        // Silent blocked-list entries count as written: they never cause a job, but any
        // job the cylinder gets writes them.
        let with_silent;
        if let Some(silent) = defined.silently_blocked.get(id)
            && !silent.is_subset(&a.blocked)
        {
            let mut c = a.clone();
            c.blocked.extend(silent);
            with_silent = c;
            a = &with_silent;
            // Only silent entries differ: a pending job nobody requested is not needed
            // (a lost key found before its block ran, manual §4.2.12.3), even though it
            // would write them.
            if a == d
                && !pending.requested.contains(id)
                && let Some(p) = pending.cylinders.get(id)
            {
                plan.cylinders
                    .insert(*id, (Decision::Cancel { old: p.id }, BTreeSet::new()));
                continue;
            }
        }
        if let Some(decision) = decide(Some(a), d, pending.cylinders.get(id), &empty_cylinder) {
            // A job an administrator requested (reprogramming, audit-trail read) is never
            // cancelled for lack of changes: it is brought to the defined program instead.
            let decision = match decision {
                Decision::Cancel { old } if pending.requested.contains(id) => Decision::Replace {
                    old,
                    target: d.clone(),
                },
                other => other,
            };
            plan.cylinders
                .insert(*id, (decision, cylinder_actions(a, d)));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::AccessTarget;

    fn key_with(cylinders: &[ObjectId]) -> KeyProgram {
        KeyProgram {
            access: cylinders
                .iter()
                .map(|c| (AccessTarget::Cylinder(*c), None))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn nothing_changed_means_no_job() {
        let mut defined = DefinedState::default();
        defined.keys.insert(1, key_with(&[10]));
        let mut actual = ActualState::default();
        actual.keys.insert(1, key_with(&[10]));
        assert!(reconcile(&defined, &actual, &Pending::default()).is_empty());
    }

    #[test]
    fn create_replace_cancel() {
        let mut defined = DefinedState::default();
        defined.keys.insert(1, key_with(&[10, 11]));
        let mut actual = ActualState::default();
        actual.keys.insert(1, key_with(&[10]));
        let plan = reconcile(&defined, &actual, &Pending::default());
        assert_eq!(
            plan.keys[&1],
            Decision::Create {
                target: key_with(&[10, 11])
            }
        );
        // A pending job writing an older target is replaced.
        let mut pending = Pending::default();
        pending.keys.insert(
            1,
            PendingJob {
                id: 77,
                target: key_with(&[12]),
            },
        );
        assert_eq!(
            reconcile(&defined, &actual, &pending).keys[&1],
            Decision::Replace {
                old: 77,
                target: key_with(&[10, 11])
            }
        );
        // A pending job writing the defined target stays.
        pending.keys.insert(
            1,
            PendingJob {
                id: 78,
                target: key_with(&[10, 11]),
            },
        );
        assert!(reconcile(&defined, &actual, &pending).is_empty());
        // Back to what the key holds: the pending job is cancelled.
        defined.keys.insert(1, key_with(&[10]));
        assert_eq!(
            reconcile(&defined, &actual, &pending).keys[&1],
            Decision::Cancel { old: 78 }
        );
    }

    #[test]
    fn over_capacity_gets_no_update() {
        let mut defined = DefinedState::default();
        defined.keys.insert(1, key_with(&[10, 11, 12]));
        defined.over_capacity.insert(1, (3, 2));
        let plan = reconcile(&defined, &ActualState::default(), &Pending::default());
        assert!(plan.keys.is_empty());
        assert!(plan.capacity_exceeded.contains(&1));
    }

    #[test]
    fn cylinder_actions_name_what_changes() {
        let actual = CylinderProgram {
            blocked: [5].into_iter().collect(),
            ..Default::default()
        };
        let defined = CylinderProgram {
            keys: [1].into_iter().collect(),
            blocked: [6].into_iter().collect(),
            cylinder_group: Some(3),
            time_zone_offset_minutes: 60,
            ..Default::default()
        };
        let a: Vec<_> = cylinder_actions(&actual, &defined).into_iter().collect();
        assert_eq!(
            a,
            [
                CylinderAction::AccessList,
                CylinderAction::Block,
                CylinderAction::Unblock,
                CylinderAction::GroupChange,
                CylinderAction::TimeZoneOffset
            ]
        );
        assert!(cylinder_actions(&defined, &defined).is_empty());
    }

    #[test]
    fn silent_blocks_ride_along_with_other_jobs() {
        use crate::defined::{CylinderConfig, cylinder_program};
        let mut cylinder = CylinderConfig {
            id: 10,
            electronic: true,
            keys: [1, 2].into_iter().collect(),
            silently_blocked: [2].into_iter().collect(),
            ..Default::default()
        };
        let define = |c: &CylinderConfig| {
            let mut d = DefinedState::default();
            d.cylinders
                .insert(c.id, cylinder_program(c, &HashMap::new()));
            if !c.silently_blocked.is_empty() {
                d.silently_blocked.insert(c.id, c.silently_blocked.clone());
            }
            d
        };
        let held = CylinderProgram {
            keys: [1, 2].into_iter().collect(),
            ..Default::default()
        };
        let mut actual = ActualState::default();
        actual.cylinders.insert(10, held.clone());
        // The silent entry alone plans nothing.
        assert!(reconcile(&define(&cylinder), &actual, &Pending::default()).is_empty());
        // Another change to the cylinder writes the silent entry too, without a Block action.
        cylinder.keys.insert(3);
        let plan = reconcile(&define(&cylinder), &actual, &Pending::default());
        let (decision, actions) = &plan.cylinders[&10];
        let Decision::Create { target } = decision else {
            panic!("expected a creation, got {decision:?}");
        };
        assert!(target.blocked.contains(&2));
        assert_eq!(
            actions.iter().copied().collect::<Vec<_>>(),
            [CylinderAction::AccessList]
        );
        // Once written and the key found (no longer silently blocked), it is unblocked.
        actual.cylinders.insert(10, target.clone());
        cylinder.silently_blocked.clear();
        let plan = reconcile(&define(&cylinder), &actual, &Pending::default());
        assert!(plan.cylinders[&10].1.contains(&CylinderAction::Unblock));
    }
}
