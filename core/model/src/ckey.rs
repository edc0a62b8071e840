//! C-keys: the administrators' keys, with their roles, domains and factory capabilities.

use serde::{Deserialize, Serialize};

use crate::{
    common::{ObjectId, validate_tags},
    firmware::FirmwareVersion,
    key::{Generation, check_generation_firmware},
    permission::Function,
    resource::{ObjectKind, Projection, Reference, Resource, ValidationContext},
    validation::ValidationErrors,
};

/// Rank of a C-key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CKeyKind {
    /// One per system; the only one that changes other C-keys' PINs, runs C-key access jobs,
    /// reports a lost C-key found and activates initial imports.
    Master,
    SubMaster,
    Normal,
}

impl CKeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CKeyKind::Master => "master",
            CKeyKind::SubMaster => "sub_master",
            CKeyKind::Normal => "normal",
        }
    }
}

/// When the C-key's certificate may be enrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EnrolmentPolicy {
    Always,
    #[default]
    Once,
    Never,
}

/// Factory capabilities of a C-key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct CKeyCapabilities {
    /// May reprogram cylinders (the master always may).
    pub cylinder_reprogramming: bool,
    /// May program cylinder-group changes.
    pub cylinder_group_programming: bool,
    pub remote_support: bool,
    /// Automatic audit-trail retrieval switched on.
    pub automatic_audit_trail: bool,
}

/// Inventory status of a C-key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CKeyStatus {
    #[default]
    InStock,
    HandedOut,
    Lost,
    Broken,
}

impl CKeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CKeyStatus::InStock => "in_stock",
            CKeyStatus::HandedOut => "handed_out",
            CKeyStatus::Lost => "lost",
            CKeyStatus::Broken => "broken",
        }
    }
}

/// An administrator key. Never opens cylinders; belongs to no domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CKey {
    /// Name, 1–50 characters.
    pub name: String,
    /// Marking; unique among the system's C-keys.
    pub marking: String,
    pub kind: CKeyKind,
    /// C-key group (master C-key group for the master, normal C-key group otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_group_id: Option<ObjectId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<Generation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<FirmwareVersion>,
    /// Roles held by the administrator using this C-key.
    #[serde(default)]
    pub role_ids: Vec<ObjectId>,
    /// Domains this C-key may administer.
    #[serde(default)]
    pub domain_ids: Vec<ObjectId>,
    /// Person the C-key is handed out to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_id: Option<ObjectId>,
    #[serde(default)]
    pub status: CKeyStatus,
    #[serde(default)]
    pub certificate_enrolment: EnrolmentPolicy,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub capabilities: CKeyCapabilities,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Most roles and domains one C-key may hold.
pub const MAX_CKEY_LIST: usize = 200;

impl CKey {
    /// May reprogram cylinders: the master, or a C-key with the reprogramming right.
    pub fn may_reprogram(&self) -> bool {
        self.kind == CKeyKind::Master || self.capabilities.cylinder_reprogramming
    }
}

impl Resource for CKey {
    const KIND: ObjectKind = ObjectKind::CKey;
    const SINGLETON_TYPE: Option<&'static str> = Some("master");

    fn validate(&self, _ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        e.text("name", &self.name, 1, 50);
        e.text("marking", &self.marking, 1, 50);
        validate_tags(&mut e, &self.tags);
        check_generation_firmware(&mut e, self.generation, self.firmware.as_ref());
        for (f, list) in [
            ("role_ids", &self.role_ids),
            ("domain_ids", &self.domain_ids),
        ] {
            if list.len() > MAX_CKEY_LIST {
                e.push(f, format!("at most {MAX_CKEY_LIST} entries"));
            }
            let mut seen = std::collections::HashSet::new();
            for (i, id) in list.iter().enumerate() {
                if !seen.insert(id) {
                    e.push(format!("{f}[{i}]"), "listed twice");
                }
            }
        }
        if self.status == CKeyStatus::HandedOut && self.holder_id.is_none() {
            e.push("holder_id", "a handed-out C-key needs a holder");
        }
        e.into_result()
    }

    fn projection(&self) -> Projection {
        Projection {
            name: self.name.trim().to_string(),
            marking: Some(self.marking.trim().to_string()),
            status: Some(self.status.as_str()),
            type_: Some(self.kind.as_str()),
            domain_id: None,
            unique_name: false,
        }
    }

    fn references(&self) -> Vec<Reference> {
        let mut r = Vec::new();
        if let Some(g) = self.key_group_id {
            let t: &'static [&'static str] = if self.kind == CKeyKind::Master {
                &["master_c_key"]
            } else {
                &["normal_c_key"]
            };
            r.push(
                Reference::new("key_group_id", ObjectKind::KeyGroup, g, "key_group").of_types(t),
            );
        }
        for (i, id) in self.role_ids.iter().enumerate() {
            r.push(Reference::new(
                format!("role_ids[{i}]"),
                ObjectKind::Role,
                *id,
                "role",
            ));
        }
        for (i, id) in self.domain_ids.iter().enumerate() {
            r.push(Reference::new(
                format!("domain_ids[{i}]"),
                ObjectKind::Domain,
                *id,
                "administers",
            ));
        }
        if let Some(h) = self.holder_id {
            r.push(Reference::new("holder_id", ObjectKind::Employee, h, "holder").person());
        }
        r
    }

    fn check_delete(&self) -> Result<(), String> {
        if self.kind == CKeyKind::Master {
            return Err("the master C-key cannot be deleted".into());
        }
        Ok(())
    }

    fn check_update(&self, previous: &Self) -> Result<(), ValidationErrors> {
        if (self.kind == CKeyKind::Master) != (previous.kind == CKeyKind::Master) {
            return Err(ValidationErrors::single(
                "kind",
                "a C-key cannot become or stop being the master",
            ));
        }
        Ok(())
    }

    fn field_function(field: &str) -> Option<Function> {
        match field {
            "role_ids" => Some(Function::Roles),
            "domain_ids" => Some(Function::Domain),
            "holder_id" | "status" => Some(Function::CKeyHandInOut),
            _ => None,
        }
    }

    fn tags(&self) -> &[String] {
        &self.tags
    }

    fn set_tags(&mut self, tags: Vec<String>) {
        self.tags = tags;
    }
}
