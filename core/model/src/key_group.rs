//! Key groups: normal, dynamic, normal C-key and master C-key groups.

use serde::{Deserialize, Serialize};

use crate::{
    common::validate_tags,
    resource::{ObjectKind, Projection, Resource, ValidationContext},
    validation::ValidationErrors,
};

/// What a key group holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyGroupKind {
    /// Normal and quartz user keys.
    Normal,
    /// Dynamic user keys.
    Dynamic,
    /// Normal and sub-master C-keys.
    NormalCKey,
    /// The master C-key.
    MasterCKey,
}

impl KeyGroupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyGroupKind::Normal => "normal",
            KeyGroupKind::Dynamic => "dynamic",
            KeyGroupKind::NormalCKey => "normal_c_key",
            KeyGroupKind::MasterCKey => "master_c_key",
        }
    }
}

/// A group of keys a cylinder access list can admit as a whole. Belongs to no domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyGroup {
    /// Unique name, 1–50 characters.
    pub name: String,
    pub kind: KeyGroupKind,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Resource for KeyGroup {
    const KIND: ObjectKind = ObjectKind::KeyGroup;

    fn validate(&self, _ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        e.text("name", &self.name, 1, 50);
        validate_tags(&mut e, &self.tags);
        e.into_result()
    }

    fn projection(&self) -> Projection {
        Projection {
            name: self.name.trim().to_string(),
            type_: Some(self.kind.as_str()),
            unique_name: true,
            ..Projection::default()
        }
    }

    fn tags(&self) -> &[String] {
        &self.tags
    }

    fn set_tags(&mut self, tags: Vec<String>) {
        self.tags = tags;
    }
}
