//! The state a key or a cylinder holds: what the hardware confirmed (actual) or what the
//! administrators' configuration asks for (defined). Both use the same types, so
//! reconciliation is a comparison and the simulation can execute jobs on them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use lockgate_model::{
    FirmwareVersion, ObjectId,
    cylinder::{FactoryFeatures, SideKind},
    key::{Activation, Generation, KeyType, PinValidation, Revalidation},
    schedule::Schedule,
};
use serde::{Deserialize, Serialize};

/// An entry on a dynamic key's own access list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum AccessTarget {
    Cylinder(ObjectId),
    CylinderGroup(ObjectId),
}

/// What a user key is programmed with.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyProgram {
    pub activation: Activation,
    pub revalidation: Option<Revalidation>,
    pub pin: Option<PinValidation>,
    /// `None` is the default schedule: the whole week.
    pub schedule: Option<Schedule>,
    /// Dynamic keys: the key access list, with the effective revalidation interval in
    /// hours per entry under flexible revalidation (`None`: the key's own interval).
    /// In JSON a list of `{ "target": ..., "revalidation_hours": ... }`.
    #[serde(with = "access_list")]
    pub access: BTreeMap<AccessTarget, Option<u32>>,
}

/// JSON form of a key access list (maps with structured keys are not JSON objects).
mod access_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::AccessTarget;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        target: AccessTarget,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revalidation_hours: Option<u32>,
    }

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<AccessTarget, Option<u32>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter().map(|(target, revalidation_hours)| Entry {
            target: *target,
            revalidation_hours: *revalidation_hours,
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<AccessTarget, Option<u32>>, D::Error> {
        let entries = Vec::<Entry>::deserialize(d)?;
        Ok(entries
            .into_iter()
            .map(|e| (e.target, e.revalidation_hours))
            .collect())
    }
}

/// What a cylinder is programmed with.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CylinderProgram {
    /// Key groups admitted, each with the keys of that group excepted.
    pub key_groups: BTreeMap<ObjectId, BTreeSet<ObjectId>>,
    /// Keys admitted individually.
    pub keys: BTreeSet<ObjectId>,
    /// Keys refused whatever the access list says.
    pub blocked: BTreeSet<ObjectId>,
    /// Cylinder group the cylinder belongs to (cylinder-group systems).
    pub cylinder_group: Option<ObjectId>,
    pub time_zone_offset_minutes: i32,
}

/// Facts about a user key that programming does not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFacts {
    pub id: ObjectId,
    pub key_type: KeyType,
    pub generation: Option<Generation>,
    pub firmware: Option<FirmwareVersion>,
    pub connect: bool,
    pub key_group: Option<ObjectId>,
    /// Mechanical cutting code.
    pub cutting: Option<String>,
    /// Most entries the key access list holds.
    pub capacity: Option<u32>,
    /// Factory: the key must be updated online before every opening.
    pub online_open: bool,
    /// Factory: exempt from cylinders' online-open requirement.
    pub override_key: bool,
}

/// Facts about a cylinder that programming does not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CylinderFacts {
    pub id: ObjectId,
    pub side_a: SideKind,
    pub side_b: Option<SideKind>,
    /// Mechanical cutting the cylinder takes; `None` takes every cutting of the system.
    pub cutting: Option<String>,
    pub firmware: Option<FirmwareVersion>,
    /// IANA time zone of the cylinder; the system's base time zone when `None`.
    pub time_zone: Option<String>,
    pub factory: FactoryFeatures,
}

impl CylinderFacts {
    /// The kind of a side (`B` on a single cylinder is `None`).
    pub fn side(&self, side: Side) -> Option<SideKind> {
        match side {
            Side::A => Some(self.side_a),
            Side::B => self.side_b,
        }
    }
}

/// A side of a cylinder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    A,
    B,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_round_trip_through_json() {
        let p = KeyProgram {
            access: [
                (AccessTarget::Cylinder(3), None),
                (AccessTarget::CylinderGroup(4), Some(48)),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let text = serde_json::to_string(&p).expect("serialises");
        assert!(
            text.contains(r#"{"target":{"kind":"cylinder_group","id":4},"revalidation_hours":48}"#),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<KeyProgram>(&text).expect("parses"),
            p
        );
        let c = CylinderProgram {
            key_groups: [(1, [2].into_iter().collect())].into_iter().collect(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::from_str::<CylinderProgram>(&serde_json::to_string(&c).expect("ser"))
                .expect("de"),
            c
        );
    }
}

/// What a key remembers of its last updates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyClock {
    /// Last revalidation at an update point (remote PD, local PD, Bluetooth).
    pub last_revalidation: Option<DateTime<Utc>>,
    /// Last PIN entry (Connect keys with PIN validation).
    pub last_pin_validation: Option<DateTime<Utc>>,
    /// Last online update just before opening (Connect keys, online open).
    pub last_online_update: Option<DateTime<Utc>>,
}
