//! The [`Resource`] contract every administrable object implements, and the kinds of objects.

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    common::ObjectId,
    permission::Function,
    system::{FixedSettings, SystemSettings},
    validation::ValidationErrors,
};

/// The kinds of administrable objects; each has its own collection under `/api/v1`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Domain,
    Employee,
    Visitor,
    Key,
    CKey,
    KeyGroup,
    Cylinder,
    CylinderGroup,
    AccessProfile,
    TemporaryAccessGroup,
    ScheduleTemplate,
    RemotePd,
    Role,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 13] = [
        ObjectKind::Domain,
        ObjectKind::Employee,
        ObjectKind::Visitor,
        ObjectKind::Key,
        ObjectKind::CKey,
        ObjectKind::KeyGroup,
        ObjectKind::Cylinder,
        ObjectKind::CylinderGroup,
        ObjectKind::AccessProfile,
        ObjectKind::TemporaryAccessGroup,
        ObjectKind::ScheduleTemplate,
        ObjectKind::RemotePd,
        ObjectKind::Role,
    ];

    /// Stable name stored in the database and used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Domain => "domain",
            ObjectKind::Employee => "employee",
            ObjectKind::Visitor => "visitor",
            ObjectKind::Key => "key",
            ObjectKind::CKey => "c_key",
            ObjectKind::KeyGroup => "key_group",
            ObjectKind::Cylinder => "cylinder",
            ObjectKind::CylinderGroup => "cylinder_group",
            ObjectKind::AccessProfile => "access_profile",
            ObjectKind::TemporaryAccessGroup => "temporary_access_group",
            ObjectKind::ScheduleTemplate => "schedule_template",
            ObjectKind::RemotePd => "remote_pd",
            ObjectKind::Role => "role",
        }
    }

    /// Parse the stored name.
    pub fn from_str_opt(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Collection path segment under `/api/v1`.
    pub fn collection(self) -> &'static str {
        match self {
            ObjectKind::Domain => "domains",
            ObjectKind::Employee => "employees",
            ObjectKind::Visitor => "visitors",
            ObjectKind::Key => "keys",
            ObjectKind::CKey => "c-keys",
            ObjectKind::KeyGroup => "key-groups",
            ObjectKind::Cylinder => "cylinders",
            ObjectKind::CylinderGroup => "cylinder-groups",
            ObjectKind::AccessProfile => "access-profiles",
            ObjectKind::TemporaryAccessGroup => "temporary-access-groups",
            ObjectKind::ScheduleTemplate => "schedule-templates",
            ObjectKind::RemotePd => "remote-pds",
            ObjectKind::Role => "roles",
        }
    }

    /// The permission function that governs this collection.
    pub fn function(self) -> Function {
        match self {
            ObjectKind::Domain => Function::Domain,
            ObjectKind::Employee => Function::Employee,
            ObjectKind::Visitor => Function::Visitor,
            ObjectKind::Key | ObjectKind::KeyGroup => Function::Key,
            ObjectKind::CKey => Function::CKey,
            ObjectKind::Cylinder | ObjectKind::CylinderGroup => Function::Cylinder,
            ObjectKind::AccessProfile => Function::AccessProfiles,
            ObjectKind::TemporaryAccessGroup => Function::TemporaryAccessGroups,
            ObjectKind::ScheduleTemplate => Function::ScheduleTemplatesEdit,
            ObjectKind::RemotePd => Function::RemotePds,
            ObjectKind::Role => Function::Roles,
        }
    }

    /// Objects of this kind belong to a domain (domains themselves, key groups, C-keys,
    /// roles, schedule templates and remote PDs do not).
    pub fn has_domain(self) -> bool {
        !matches!(
            self,
            ObjectKind::Domain
                | ObjectKind::KeyGroup
                | ObjectKind::CKey
                | ObjectKind::Role
                | ObjectKind::ScheduleTemplate
                | ObjectKind::RemotePd
        )
    }

    /// Persons (employees and visitors).
    pub fn is_person(self) -> bool {
        matches!(self, ObjectKind::Employee | ObjectKind::Visitor)
    }
}

/// What the store indexes of an object for search and uniqueness.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    /// Display name (sortable, prefix-searchable).
    pub name: String,
    /// Marking, or a person's identifier; unique per kind and system when present.
    pub marking: Option<String>,
    /// Status (lifecycle state) when the kind has one.
    pub status: Option<&'static str>,
    /// Type / kind discriminator (key type, key-group kind, PD type...).
    pub type_: Option<&'static str>,
    /// Domain the object belongs to, for kinds with a domain.
    pub domain_id: Option<ObjectId>,
    /// Names are unique per kind and system (case-insensitive).
    pub unique_name: bool,
}

/// A reference from one object to another, checked by the store before writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Field path in the referring object, for error messages.
    pub field: String,
    /// Kind the target must be.
    pub target: ObjectKind,
    /// Target id.
    pub id: ObjectId,
    /// The target must be in the same domain as the referring object.
    pub same_domain: bool,
    /// When non-empty, the target's type must be one of these.
    pub allowed_types: &'static [&'static str],
    /// Name of the relation, stored with the reference (deletion protection, "where used").
    pub relation: &'static str,
    /// The target may be an employee or a visitor (`target` is then `Employee`).
    pub any_person: bool,
    /// The referring object takes the target's domain (a cylinder in a cylinder group).
    pub takes_domain: bool,
}

impl Reference {
    pub fn new(
        field: impl Into<String>,
        target: ObjectKind,
        id: ObjectId,
        relation: &'static str,
    ) -> Self {
        Self {
            field: field.into(),
            target,
            id,
            same_domain: false,
            allowed_types: &[],
            relation,
            any_person: false,
            takes_domain: false,
        }
    }

    /// Accept an employee or a visitor as target.
    pub fn person(mut self) -> Self {
        self.any_person = true;
        self
    }

    /// The referring object takes the target's domain.
    pub fn takes_domain(mut self) -> Self {
        self.takes_domain = true;
        self
    }

    /// Require the target in the referring object's domain.
    pub fn same_domain(mut self) -> Self {
        self.same_domain = true;
        self
    }

    /// Require the target's type to be one of `types`.
    pub fn of_types(mut self, types: &'static [&'static str]) -> Self {
        self.allowed_types = types;
        self
    }
}

/// Everything an object's validation may depend on besides itself.
#[derive(Debug, Clone, Copy)]
pub struct ValidationContext<'a> {
    pub fixed: &'a FixedSettings,
    pub settings: &'a SystemSettings,
}

/// An administrable object stored by lockgate.
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The object kind.
    const KIND: ObjectKind;

    /// At most one object of the kind may have this type (the master C-key).
    const SINGLETON_TYPE: Option<&'static str> = None;

    /// Top-level fields the hardware holds (written by programming jobs): while a job for
    /// the object is loaded onto a C-key or carried by a key, they are locked from editing
    /// (manual §4.4.13.1 and §9.3.5, "Locked by").
    const PROGRAMMED_FIELDS: &'static [&'static str] = &[];

    /// Check the object on its own (lengths, ranges, combinations of fields).
    fn validate(&self, ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors>;

    /// What the store indexes.
    fn projection(&self) -> Projection;

    /// Other objects this one refers to.
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }

    /// Tags on this object.
    fn tags(&self) -> &[String] {
        &[]
    }

    /// Set the object's domain (used by bulk domain change and defaults).
    fn set_domain(&mut self, _domain: ObjectId) {}

    /// Key groups and individual keys on the object's access list, when it has one where
    /// a group makes its members' individual entries redundant (a cylinder access list,
    /// manual §8.1.2): `(groups, individual keys)`.
    fn grouped_members(&self) -> Option<(Vec<ObjectId>, Vec<ObjectId>)> {
        None
    }

    /// Drop these individual entries, which a group on the same list already admits.
    fn drop_members(&mut self, _redundant: &std::collections::BTreeSet<ObjectId>) {}

    /// Replace the tags (used by bulk tagging).
    fn set_tags(&mut self, _tags: Vec<String>) {}

    /// Reset fields lockgate maintains itself (last update, locked by...) to
    /// their previous values, or their defaults on creation; clients cannot set them.
    fn keep_system_fields(&mut self, _previous: Option<&Self>) {}

    /// Refuse a change the domain forbids given the previous state (e.g. editing a read-only role).
    fn check_update(&self, _previous: &Self) -> Result<(), ValidationErrors> {
        Ok(())
    }

    /// Refuse deleting this object for a reason of its own (e.g. the master C-key).
    fn check_delete(&self) -> Result<(), String> {
        Ok(())
    }

    /// Extra permission functions a change of the given top-level field needs
    /// at Full, beyond the collection's own function.
    fn field_function(_field: &str) -> Option<Function> {
        None
    }
}

/// Implement the tag and domain accessors for a struct with `tags: Vec<String>` and `domain_id: ObjectId`.
#[macro_export]
macro_rules! tags_and_domain {
    () => {
        fn tags(&self) -> &[String] {
            &self.tags
        }
        fn set_tags(&mut self, tags: Vec<String>) {
            self.tags = tags;
        }
        fn set_domain(&mut self, domain: $crate::common::ObjectId) {
            self.domain_id = domain;
        }
    };
}
