//! What administrators look at: which cylinders a key reaches and which keys reach a
//! cylinder, on the actual state and on the defined state (the difference is pending).

use lockgate_model::{ObjectId, key::KeyType};
use serde::Serialize;

use crate::state::{AccessTarget, CylinderProgram, KeyFacts, KeyProgram};

/// Whether a key's program and a cylinder's program grant access, leaving out time
/// (validity, revalidation, schedule) and factory features: the access-list rules of
/// `DOMAIN.md` §2 items 3–5.
pub fn grants(
    key: &KeyFacts,
    program: &KeyProgram,
    cylinder: ObjectId,
    cylinder_program: &CylinderProgram,
) -> bool {
    if key.key_type == KeyType::Mechanical || cylinder_program.blocked.contains(&key.id) {
        return false;
    }
    let admitted = cylinder_program.keys.contains(&key.id)
        || key
            .key_group
            .and_then(|g| cylinder_program.key_groups.get(&g))
            .is_some_and(|exceptions| !exceptions.contains(&key.id));
    if !admitted {
        return false;
    }
    key.key_type != KeyType::Dynamic
        || program
            .access
            .contains_key(&AccessTarget::Cylinder(cylinder))
        || cylinder_program
            .cylinder_group
            .is_some_and(|g| program.access.contains_key(&AccessTarget::CylinderGroup(g)))
}

/// Access between one key and one cylinder, now and once pending jobs are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AccessView {
    pub id: ObjectId,
    /// Granted by what the hardware holds now.
    pub actual: bool,
    /// Granted once every pending job is executed.
    pub defined: bool,
}

impl AccessView {
    /// Access changes once pending jobs run.
    pub fn pending(&self) -> bool {
        self.actual != self.defined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockgate_model::key::Generation;

    fn facts(ty: KeyType) -> KeyFacts {
        KeyFacts {
            id: 1,
            key_type: ty,
            generation: Some(Generation::Gen2),
            firmware: None,
            connect: false,
            key_group: Some(9),
            cutting: None,
            capacity: None,
            online_open: false,
            override_key: false,
        }
    }

    #[test]
    fn access_list_rules() {
        let admits_group = CylinderProgram {
            key_groups: [(9, Default::default())].into_iter().collect(),
            cylinder_group: Some(70),
            ..Default::default()
        };
        let key_list = |t: AccessTarget| KeyProgram {
            access: [(t, None)].into_iter().collect(),
            ..Default::default()
        };
        let q = facts(KeyType::Quartz);
        let d = facts(KeyType::Dynamic);
        assert!(grants(&q, &KeyProgram::default(), 5, &admits_group));
        assert!(
            !grants(&d, &KeyProgram::default(), 5, &admits_group),
            "dynamic key without the cylinder on its list"
        );
        assert!(grants(
            &d,
            &key_list(AccessTarget::Cylinder(5)),
            5,
            &admits_group
        ));
        assert!(grants(
            &d,
            &key_list(AccessTarget::CylinderGroup(70)),
            5,
            &admits_group
        ));
        let mut excepted = admits_group.clone();
        excepted.key_groups.insert(9, [1].into_iter().collect());
        assert!(!grants(&q, &KeyProgram::default(), 5, &excepted));
        excepted.keys.insert(1);
        assert!(
            grants(&q, &KeyProgram::default(), 5, &excepted),
            "individually admitted"
        );
        excepted.blocked.insert(1);
        assert!(
            !grants(&q, &KeyProgram::default(), 5, &excepted),
            "blocked wins"
        );
        assert!(!grants(
            &facts(KeyType::Mechanical),
            &KeyProgram::default(),
            5,
            &admits_group
        ));
        let v = AccessView {
            id: 5,
            actual: false,
            defined: true,
        };
        assert!(v.pending());
    }
}
