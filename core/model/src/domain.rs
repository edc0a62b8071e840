//! Domains: administrative partitions of persons, keys, cylinders and profiles.

use serde::{Deserialize, Serialize};

use crate::{
    resource::{ObjectKind, Projection, Resource, ValidationContext},
    validation::ValidationErrors,
};

/// An administrative partition; every domain element lives in exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// Unique name, 1–50 characters.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Resource for Domain {
    const KIND: ObjectKind = ObjectKind::Domain;

    fn validate(&self, _ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        e.text("name", &self.name, 1, 50);
        e.opt_text("description", &self.description, 500);
        e.into_result()
    }

    fn projection(&self) -> Projection {
        Projection {
            name: self.name.trim().to_string(),
            unique_name: true,
            ..Projection::default()
        }
    }
}
