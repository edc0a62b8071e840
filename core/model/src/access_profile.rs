//! Access profiles (roles such as "cleaning") and temporary access groups.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    common::{ExternalLink, ObjectId, validate_links, validate_tags},
    permission::Function,
    resource::{ObjectKind, Projection, Reference, Resource, ValidationContext},
    validation::ValidationErrors,
};

/// Most cylinders / groups / keys in one profile or temporary group.
pub const MAX_MEMBERS: usize = 20_000;

fn member_refs(
    r: &mut Vec<Reference>,
    field: &str,
    kind: ObjectKind,
    ids: &[ObjectId],
    relation: &'static str,
    same_domain: bool,
) {
    for (i, id) in ids.iter().enumerate() {
        let mut reference = Reference::new(format!("{field}[{i}]"), kind, *id, relation);
        if same_domain {
            reference = reference.same_domain();
        }
        r.push(reference);
    }
}

fn check_members(e: &mut ValidationErrors, field: &str, ids: &[ObjectId]) {
    if ids.len() > MAX_MEMBERS {
        e.push(field, format!("at most {MAX_MEMBERS} entries"));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        if !seen.insert(id) {
            e.push(format!("{field}[{i}]"), "listed twice");
        }
    }
}

/// A set of cylinders and cylinder groups in one domain, given to persons or keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AccessProfile {
    /// Unique name, 1–50 characters.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub domain_id: ObjectId,
    /// Cylinders in the profile (same domain as the profile).
    #[serde(default)]
    pub cylinder_ids: Vec<ObjectId>,
    /// Cylinder groups in the profile (same domain as the profile).
    #[serde(default)]
    pub cylinder_group_ids: Vec<ObjectId>,
    /// Flexible revalidation: overrides a group's interval for keys holding this profile (hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revalidation_interval_hours: Option<u32>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub links: Vec<ExternalLink>,
}

impl Resource for AccessProfile {
    const KIND: ObjectKind = ObjectKind::AccessProfile;

    fn validate(&self, ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        e.text("name", &self.name, 1, 50);
        e.opt_text("description", &self.description, 500);
        validate_tags(&mut e, &self.tags);
        validate_links(&mut e, &self.links, ctx.settings.link_root_url.is_some());
        check_members(&mut e, "cylinder_ids", &self.cylinder_ids);
        check_members(&mut e, "cylinder_group_ids", &self.cylinder_group_ids);
        if !self.cylinder_group_ids.is_empty() && !ctx.fixed.cylinder_groups {
            e.push(
                "cylinder_group_ids",
                "this locking system has no cylinder groups",
            );
        }
        crate::key::check_revalidation_hours(
            &mut e,
            "revalidation_interval_hours",
            self.revalidation_interval_hours,
        );
        e.into_result()
    }

    fn projection(&self) -> Projection {
        Projection {
            name: self.name.trim().to_string(),
            domain_id: Some(self.domain_id),
            unique_name: true,
            ..Projection::default()
        }
    }

    fn references(&self) -> Vec<Reference> {
        let mut r = Vec::new();
        member_refs(
            &mut r,
            "cylinder_ids",
            ObjectKind::Cylinder,
            &self.cylinder_ids,
            "profile_member",
            true,
        );
        member_refs(
            &mut r,
            "cylinder_group_ids",
            ObjectKind::CylinderGroup,
            &self.cylinder_group_ids,
            "profile_member",
            true,
        );
        r
    }

    fn field_function(field: &str) -> Option<Function> {
        match field {
            "cylinder_ids" | "cylinder_group_ids" => Some(Function::AccessProfileAuthorisation),
            "revalidation_interval_hours" => Some(Function::FlexibleRevalidation),
            _ => None,
        }
    }

    crate::tags_and_domain!();
}

/// Access profiles and cylinders given to a set of keys between two instants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TemporaryAccessGroup {
    /// Unique name, 1–50 characters.
    pub name: String,
    #[serde(default)]
    pub domain_id: ObjectId,
    /// Access profiles, all in the group's domain.
    #[serde(default)]
    pub access_profile_ids: Vec<ObjectId>,
    #[serde(default)]
    pub cylinder_ids: Vec<ObjectId>,
    #[serde(default)]
    pub cylinder_group_ids: Vec<ObjectId>,
    /// Keys that get the access during the dates.
    #[serde(default)]
    pub key_ids: Vec<ObjectId>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Resource for TemporaryAccessGroup {
    const KIND: ObjectKind = ObjectKind::TemporaryAccessGroup;

    fn validate(&self, ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        e.text("name", &self.name, 1, 50);
        validate_tags(&mut e, &self.tags);
        for (f, ids) in [
            ("access_profile_ids", &self.access_profile_ids),
            ("cylinder_ids", &self.cylinder_ids),
            ("cylinder_group_ids", &self.cylinder_group_ids),
            ("key_ids", &self.key_ids),
        ] {
            check_members(&mut e, f, ids);
        }
        if !self.cylinder_group_ids.is_empty() && !ctx.fixed.cylinder_groups {
            e.push(
                "cylinder_group_ids",
                "this locking system has no cylinder groups",
            );
        }
        if self.end <= self.start {
            e.push("end", "must be after start");
        }
        e.into_result()
    }

    fn projection(&self) -> Projection {
        Projection {
            name: self.name.trim().to_string(),
            domain_id: Some(self.domain_id),
            unique_name: true,
            ..Projection::default()
        }
    }

    fn references(&self) -> Vec<Reference> {
        let mut r = Vec::new();
        member_refs(
            &mut r,
            "access_profile_ids",
            ObjectKind::AccessProfile,
            &self.access_profile_ids,
            "group_profile",
            true,
        );
        member_refs(
            &mut r,
            "cylinder_ids",
            ObjectKind::Cylinder,
            &self.cylinder_ids,
            "group_member",
            false,
        );
        member_refs(
            &mut r,
            "cylinder_group_ids",
            ObjectKind::CylinderGroup,
            &self.cylinder_group_ids,
            "group_member",
            false,
        );
        member_refs(
            &mut r,
            "key_ids",
            ObjectKind::Key,
            &self.key_ids,
            "group_key",
            false,
        );
        // Manual §4.7.2: temporary access groups apply to dynamic keys only.
        for k in r.iter_mut().filter(|x| x.target == ObjectKind::Key) {
            k.allowed_types = &["dynamic"];
        }
        r
    }

    crate::tags_and_domain!();
}
