//! Employees and visitors: the holders of keys.

use serde::{Deserialize, Serialize};

use crate::{
    common::{ExternalLink, ObjectId, validate_links, validate_tags},
    permission::Function,
    resource::{ObjectKind, Projection, Reference, Resource, ValidationContext},
    validation::ValidationErrors,
};

/// Whether a person is usable, hidden by deactivation, or marked as deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PersonState {
    #[default]
    Active,
    /// Hidden, shown as N/A, never edited, exported or re-imported; reversible.
    Deactivated,
    /// Marked as deleted (setting "mark as deleted"); restorable.
    Deleted,
}

impl PersonState {
    pub fn as_str(self) -> &'static str {
        match self {
            PersonState::Active => "active",
            PersonState::Deactivated => "deactivated",
            PersonState::Deleted => "deleted",
        }
    }
}

/// A key holder: an employee or a visitor (the collection decides which).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// Unique identifier (1–50), e.g. the personnel number. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// First name, 1–49 characters.
    pub first_name: String,
    /// Surname, 1–49 characters.
    pub surname: String,
    /// Domain id; the system's initial person domain when omitted.
    #[serde(default)]
    pub domain_id: ObjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
    /// Preferred language for messages (language tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gmd_text: Option<String>,
    /// Access profiles associated with the person (inherited by all their keys).
    #[serde(default)]
    pub access_profile_ids: Vec<ObjectId>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub links: Vec<ExternalLink>,
    /// Lifecycle state; changed only through deactivate / reactivate / delete / restore.
    #[serde(default)]
    pub lifecycle: PersonState,
    /// Set when the person is maintained by a directory sync (read-only except domain and tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_from: Option<String>,
}

/// Maximum length of the optional free-text person fields.
pub const PERSON_TEXT_MAX: usize = 100;

impl Person {
    /// Display name "Surname, First name".
    pub fn display_name(&self) -> String {
        format!("{}, {}", self.surname.trim(), self.first_name.trim())
    }

    /// The optional text fields with their names, in CSV column order after the mandatory ones.
    pub fn optional_fields(&self) -> [(&'static str, &Option<String>); 17] {
        [
            ("title", &self.title),
            ("email", &self.email),
            ("phone", &self.phone),
            ("organisation", &self.organisation),
            ("department", &self.department),
            ("street", &self.street),
            ("postcode", &self.postcode),
            ("language", &self.language),
            ("region", &self.region),
            ("job", &self.job),
            ("city", &self.city),
            ("state", &self.state),
            ("country", &self.country),
            ("company_address", &self.company_address),
            ("location", &self.location),
            ("mobile_phone", &self.mobile_phone),
            ("gmd_text", &self.gmd_text),
        ]
    }

    /// Check the person's own fields (shared by the API and the CSV import).
    pub fn validate_fields(&self, has_link_root: bool) -> ValidationErrors {
        let mut e = ValidationErrors::new();
        e.opt_text("identifier", &self.identifier, 50);
        e.text("first_name", &self.first_name, 1, 49);
        e.text("surname", &self.surname, 1, 49);
        for (name, value) in self.optional_fields() {
            if name == "email" {
                e.opt_email(name, value);
            } else {
                e.opt_text(name, value, PERSON_TEXT_MAX);
            }
        }
        validate_tags(&mut e, &self.tags);
        validate_links(&mut e, &self.links, has_link_root);
        e
    }
}

impl Resource for Person {
    // Employees and visitors share the type; the store keys them by collection.
    const KIND: ObjectKind = ObjectKind::Employee;

    fn validate(&self, ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
        self.validate_fields(ctx.settings.link_root_url.is_some())
            .into_result()
    }

    fn projection(&self) -> Projection {
        Projection {
            name: self.display_name(),
            marking: self.identifier.as_ref().map(|s| s.trim().to_string()),
            status: Some(self.lifecycle.as_str()),
            domain_id: Some(self.domain_id),
            ..Projection::default()
        }
    }

    fn references(&self) -> Vec<Reference> {
        self.access_profile_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                Reference::new(
                    format!("access_profile_ids[{i}]"),
                    ObjectKind::AccessProfile,
                    *id,
                    "access_profile",
                )
            })
            .collect()
    }

    fn keep_system_fields(&mut self, previous: Option<&Self>) {
        self.lifecycle = previous.map(|p| p.lifecycle).unwrap_or_default();
        self.synced_from = previous.and_then(|p| p.synced_from.clone());
    }

    fn check_update(&self, previous: &Self) -> Result<(), ValidationErrors> {
        match previous.lifecycle {
            PersonState::Deactivated => {
                return Err(ValidationErrors::single(
                    "lifecycle",
                    "a deactivated person cannot be edited; reactivate first",
                ));
            }
            PersonState::Deleted => {
                return Err(ValidationErrors::single(
                    "lifecycle",
                    "a person marked as deleted cannot be edited; restore first",
                ));
            }
            PersonState::Active => {}
        }
        if previous.synced_from.is_some() {
            // Synced persons are read-only except domain and tags.
            let mut same = self.clone();
            same.domain_id = previous.domain_id;
            same.tags = previous.tags.clone();
            if same != *previous {
                return Err(ValidationErrors::single(
                    "synced_from",
                    "persons from a directory sync are read-only except domain and tags",
                ));
            }
        }
        Ok(())
    }

    fn field_function(field: &str) -> Option<Function> {
        match field {
            "access_profile_ids" => Some(Function::AccessProfileAuthorisation),
            _ => None,
        }
    }

    crate::tags_and_domain!();
}
