//! Cylinders (single or double, electronic or mechanical sides) and cylinder groups.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    common::{ExternalLink, ObjectId, validate_links, validate_tags},
    firmware::FirmwareVersion,
    permission::Function,
    resource::{ObjectKind, Projection, Reference, Resource, ValidationContext},
    validation::ValidationErrors,
};

/// Inventory status of a cylinder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CylinderStatus {
    #[default]
    InStock,
    Installed,
    Broken,
}

impl CylinderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CylinderStatus::InStock => "in_stock",
            CylinderStatus::Installed => "installed",
            CylinderStatus::Broken => "broken",
        }
    }
}

/// One side of a cylinder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SideKind {
    Electronic,
    Mechanical,
}

/// A key group admitted by a cylinder, except some of its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupEntry {
    pub key_group_id: ObjectId,
    #[serde(default)]
    pub exceptions: Vec<ObjectId>,
}

/// The cylinder access list: key groups (with exceptions) and individual keys. C-key
/// groups on it decide which C-keys may program the cylinder (changed by the master only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct CylinderAccessList {
    pub key_groups: Vec<GroupEntry>,
    pub key_ids: Vec<ObjectId>,
}

/// Factory-only features of a cylinder (set at import, not by administrators).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct FactoryFeatures {
    /// Two authorised keys within one minute; optionally from different key groups.
    pub sequence_lock: Option<SequenceLock>,
    /// Minutes added to a key's activation and expiry.
    pub delay_lock_minutes: Option<u32>,
    /// The key must be updated online just before opening; override keys exempt.
    pub online_open: bool,
}

/// Sequence lock settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SequenceLock {
    pub different_key_groups: bool,
}

/// Most custom fields on one cylinder.
pub const MAX_CUSTOM_FIELDS: usize = 20;
/// Most entries in one cylinder access list.
pub const MAX_ACCESS_LIST: usize = 5_000;

/// A cylinder (door lock). Double cylinders have a side B.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Cylinder {
    /// Name, 1–50 characters.
    pub name: String,
    /// Marking; unique among the system's cylinders.
    pub marking: String,
    #[serde(default)]
    pub status: CylinderStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Length designation, e.g. `30/35`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<String>,
    pub side_a: SideKind,
    /// Mechanical cutting the cylinder takes; any cutting of the system when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutting: Option<String>,
    /// Present for double cylinders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side_b: Option<SideKind>,
    /// Cylinder group (cylinder-group systems; electronic cylinders only). The cylinder takes its domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cylinder_group_id: Option<ObjectId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<FirmwareVersion>,
    /// Time zone of the cylinder (IANA); the system's base time zone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Offset in minutes from the base time zone (firmware ≥ 10.0.0), −720…+840.
    #[serde(default)]
    pub time_zone_offset_minutes: i32,
    /// Domain; the group's domain when in a group, else the initial cylinder domain when omitted.
    #[serde(default)]
    pub domain_id: ObjectId,
    #[serde(default)]
    pub access_list: CylinderAccessList,
    #[serde(default)]
    pub factory: FactoryFeatures,
    #[serde(default)]
    pub custom_fields: BTreeMap<String, String>,
    /// C-key holding this cylinder's pending programming job; maintained by lockgate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_by_id: Option<ObjectId>,
    /// Keys reported lost and found again that this cylinder was never programmed to
    /// block: they stay on its list of unauthorised keys, so a reprogramming (or any later
    /// job of the cylinder) blocks them (manual §4.2.12.2). Maintained by lockgate; an
    /// administrator's change of the access list (re-authorising, §4.2.12.3) clears it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unauthorised_key_ids: Vec<ObjectId>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub links: Vec<ExternalLink>,
}

impl Cylinder {
    /// At least one side is electronic.
    pub fn is_electronic(&self) -> bool {
        self.side_a == SideKind::Electronic || self.side_b == Some(SideKind::Electronic)
    }
}

impl Resource for Cylinder {
    const KIND: ObjectKind = ObjectKind::Cylinder;

    fn validate(&self, ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        e.text("name", &self.name, 1, 50);
        e.text("marking", &self.marking, 1, 50);
        e.opt_text("location", &self.location, 100);
        e.opt_text("model", &self.model, 100);
        e.opt_text("length", &self.length, 20);
        e.opt_text("cutting", &self.cutting, 100);
        validate_tags(&mut e, &self.tags);
        validate_links(&mut e, &self.links, ctx.settings.link_root_url.is_some());
        if let Some(tz) = &self.time_zone
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            e.push("time_zone", format!("'{tz}' is not an IANA time zone"));
        }
        if !(-720..=840).contains(&self.time_zone_offset_minutes) {
            e.push("time_zone_offset_minutes", "must be between -720 and 840");
        } else if self.time_zone_offset_minutes != 0
            && self.firmware.as_ref().is_none_or(|f| f.major() < 10)
        {
            e.push(
                "time_zone_offset_minutes",
                "a time-zone offset needs cylinder firmware 10.0.0 or later",
            );
        }
        if self.cylinder_group_id.is_some() {
            if !ctx.fixed.cylinder_groups {
                e.push(
                    "cylinder_group_id",
                    "this locking system has no cylinder groups",
                );
            } else if !self.is_electronic() {
                e.push(
                    "cylinder_group_id",
                    "mechanical cylinders are in no cylinder group",
                );
            } else if self
                .firmware
                .as_ref()
                .is_some_and(|f| *f < FirmwareVersion::new(&[5, 3, 1]))
            {
                e.push(
                    "cylinder_group_id",
                    "cylinder groups need cylinder firmware 5.3.1 or later",
                );
            }
        }
        if !self.is_electronic() && self.access_list != CylinderAccessList::default() {
            e.push("access_list", "mechanical cylinders have no access list");
        }
        let n = self.access_list.key_groups.len() + self.access_list.key_ids.len();
        if n > MAX_ACCESS_LIST {
            e.push("access_list", format!("at most {MAX_ACCESS_LIST} entries"));
        }
        if self.custom_fields.len() > MAX_CUSTOM_FIELDS {
            e.push(
                "custom_fields",
                format!("at most {MAX_CUSTOM_FIELDS} fields"),
            );
        }
        for (k, v) in &self.custom_fields {
            e.text(&format!("custom_fields.{k}"), k, 1, 50);
            if v.chars().count() > 200 {
                e.push(
                    format!("custom_fields.{k}"),
                    "value must be at most 200 characters",
                );
            }
        }
        e.into_result()
    }

    fn projection(&self) -> Projection {
        Projection {
            name: self.name.trim().to_string(),
            marking: Some(self.marking.trim().to_string()),
            status: Some(self.status.as_str()),
            type_: Some(match (self.side_a, self.side_b) {
                (SideKind::Mechanical, None | Some(SideKind::Mechanical)) => "mechanical",
                (_, None) => "single",
                _ => "double",
            }),
            domain_id: Some(self.domain_id),
            unique_name: false,
        }
    }

    const PROGRAMMED_FIELDS: &'static [&'static str] = &[
        "access_list",
        "cylinder_group_id",
        "time_zone_offset_minutes",
    ];

    fn grouped_members(&self) -> Option<(Vec<ObjectId>, Vec<ObjectId>)> {
        Some((
            self.access_list
                .key_groups
                .iter()
                .map(|g| g.key_group_id)
                .collect(),
            self.access_list.key_ids.clone(),
        ))
    }

    fn drop_members(&mut self, redundant: &std::collections::BTreeSet<ObjectId>) {
        self.access_list.key_ids.retain(|k| !redundant.contains(k));
    }

    fn references(&self) -> Vec<Reference> {
        let mut r = Vec::new();
        if let Some(g) = self.cylinder_group_id {
            r.push(
                Reference::new(
                    "cylinder_group_id",
                    ObjectKind::CylinderGroup,
                    g,
                    "cylinder_group",
                )
                .takes_domain(),
            );
        }
        for (i, g) in self.access_list.key_groups.iter().enumerate() {
            r.push(
                Reference::new(
                    format!("access_list.key_groups[{i}].key_group_id"),
                    ObjectKind::KeyGroup,
                    g.key_group_id,
                    "admits_group",
                )
                .of_types(&["normal", "dynamic", "normal_c_key", "master_c_key"]),
            );
            for (j, k) in g.exceptions.iter().enumerate() {
                r.push(Reference::new(
                    format!("access_list.key_groups[{i}].exceptions[{j}]"),
                    ObjectKind::Key,
                    *k,
                    "group_exception",
                ));
            }
        }
        for (i, k) in self.access_list.key_ids.iter().enumerate() {
            r.push(Reference::new(
                format!("access_list.key_ids[{i}]"),
                ObjectKind::Key,
                *k,
                "admits_key",
            ));
        }
        r
    }

    fn field_function(field: &str) -> Option<Function> {
        match field {
            "access_list" => Some(Function::CylinderAuthorisation),
            _ => None,
        }
    }

    fn keep_system_fields(&mut self, previous: Option<&Self>) {
        self.locked_by_id = previous.and_then(|p| p.locked_by_id);
        self.unauthorised_key_ids = match previous {
            Some(p) if p.access_list == self.access_list => p.unauthorised_key_ids.clone(),
            _ => Vec::new(),
        };
    }

    /// Manual §8.1.9–8.1.11: sequence lock, delay lock and online open come with the
    /// cylinder (creation or import); they are never changed afterwards.
    fn check_update(&self, previous: &Self) -> Result<(), ValidationErrors> {
        crate::validation::factory_unchanged(&self.factory, &previous.factory)
    }

    crate::tags_and_domain!();
}

/// A group of cylinders administered and authorised together (cylinder-group systems).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CylinderGroup {
    /// Unique name, 1–50 characters.
    pub name: String,
    #[serde(default)]
    pub domain_id: ObjectId,
    /// Flexible revalidation: caps the key's interval for this group (hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revalidation_interval_hours: Option<u32>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Resource for CylinderGroup {
    const KIND: ObjectKind = ObjectKind::CylinderGroup;

    fn validate(&self, ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        if !ctx.fixed.cylinder_groups {
            e.push("name", "this locking system has no cylinder groups");
        }
        e.text("name", &self.name, 1, 50);
        validate_tags(&mut e, &self.tags);
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

    fn field_function(field: &str) -> Option<Function> {
        (field == "revalidation_interval_hours").then_some(Function::FlexibleRevalidation)
    }

    crate::tags_and_domain!();
}
