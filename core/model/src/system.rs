//! Locking systems (tenants) and their settings: fixed at creation, and adjustable.

use serde::{Deserialize, Serialize};

use crate::{common::ObjectId, validation::ValidationErrors};

/// Settings chosen when a locking system is created; they never change afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FixedSettings {
    /// Remote system: keys are updated at remote PDs.
    pub remote: bool,
    /// Cylinder-group system: cylinders can be grouped.
    pub cylinder_groups: bool,
    /// Base time zone (IANA name, e.g. `Europe/Berlin`).
    pub base_time_zone: String,
    /// Audit-trail requests need an approver's decision.
    pub audit_trail_approvals: bool,
}

impl FixedSettings {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        if self.base_time_zone.parse::<chrono_tz::Tz>().is_err() {
            e.push(
                "base_time_zone",
                format!(
                    "'{}' is not an IANA time zone such as Europe/Berlin",
                    self.base_time_zone
                ),
            );
        }
        e.into_result()
    }
}

/// What deleting a person does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PersonDeletion {
    /// The person is removed; references in events and audit trails read N/A.
    #[default]
    DeletePermanently,
    /// The person is marked as deleted and can be restored.
    MarkAsDeleted,
}

/// Settings an administrator with system-settings permission may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct SystemSettings {
    /// What deleting a person does.
    pub person_deletion: PersonDeletion,
    /// Nobody grants or edits a permission level above their own.
    pub hierarchical_administrators: bool,
    /// Domain given to new or imported persons when none is named.
    pub initial_person_domain: Option<ObjectId>,
    /// Domain given to new or imported keys when none is named.
    pub initial_key_domain: Option<ObjectId>,
    /// Domain given to new or imported cylinders when none is named.
    pub initial_cylinder_domain: Option<ObjectId>,
    /// Root URL prefixed to relative external links.
    pub link_root_url: Option<String>,
    /// Language of system messages (BCP 47 tag, e.g. `en`, `de`).
    pub messaging_language: String,
    /// Flexible revalidation: intervals per cylinder group and access profile (licensed).
    pub flexible_revalidation: bool,
    /// Block jobs for lost keys may be carried to their cylinders by generation 2 dynamic
    /// user keys (firmware 12.2 or later, with free memory).
    pub block_lost_keys_with_user_keys: bool,
}

impl Default for SystemSettings {
    fn default() -> Self {
        Self {
            person_deletion: PersonDeletion::default(),
            hierarchical_administrators: false,
            flexible_revalidation: false,
            block_lost_keys_with_user_keys: false,
            initial_person_domain: None,
            initial_key_domain: None,
            initial_cylinder_domain: None,
            link_root_url: None,
            messaging_language: "en".into(),
        }
    }
}

impl SystemSettings {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        if let Some(root) = &self.link_root_url {
            match url::Url::parse(root) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => e.push("link_root_url", "must be an absolute http(s) URL"),
            }
        }
        let lang = &self.messaging_language;
        if lang.is_empty()
            || lang.len() > 35
            || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            e.push(
                "messaging_language",
                "must be a language tag such as en or de-CH",
            );
        }
        e.into_result()
    }
}

/// A locking system: one tenant's keys, cylinders and PDs, administered together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LockingSystem {
    pub id: ObjectId,
    pub name: String,
    pub fixed: FixedSettings,
    pub settings: SystemSettings,
    pub version: i64,
    /// The domain created with the system; its administrators see every temporary access
    /// group (manual §8.2.5).
    #[serde(default)]
    pub default_domain_id: Option<ObjectId>,
    /// Locked for maintenance from then on (manual §6.2): while locked, nothing is changed
    /// through the API except unlocking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_from: Option<chrono::DateTime<chrono::Utc>>,
}

impl LockingSystem {
    /// Whether the system is locked for maintenance at `now`.
    pub fn in_maintenance(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.maintenance_from.is_some_and(|t| t <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zone_checked() {
        let mut f = FixedSettings {
            remote: true,
            cylinder_groups: true,
            base_time_zone: "Europe/Berlin".into(),
            audit_trail_approvals: false,
        };
        assert!(f.validate().is_ok());
        f.base_time_zone = "Mars/Olympus".into();
        assert_eq!(f.validate().unwrap_err().errors[0].field, "base_time_zone");
    }
}
