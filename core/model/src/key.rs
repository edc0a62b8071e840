//! User keys: types, generations, firmware, status, validity, revalidation, PIN and schedule.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    common::{ExternalLink, ObjectId, validate_links, validate_tags},
    firmware::FirmwareVersion,
    permission::Function,
    resource::{ObjectKind, Projection, Reference, Resource, ValidationContext},
    schedule::Schedule,
    validation::ValidationErrors,
};

/// What a user key can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    /// No electronics; tracked only.
    Mechanical,
    /// E1: opens cylinders whose access list admits it; no clock.
    Normal,
    /// E2: normal plus a clock (validity, revalidation, schedule, audit trail).
    Quartz,
    /// E3: quartz plus its own key access list.
    Dynamic,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Mechanical => "mechanical",
            KeyType::Normal => "normal",
            KeyType::Quartz => "quartz",
            KeyType::Dynamic => "dynamic",
        }
    }

    /// Has a clock (validity dates, revalidation, schedules).
    pub fn has_clock(self) -> bool {
        matches!(self, KeyType::Quartz | KeyType::Dynamic)
    }
}

/// Hardware generation of a key or device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Generation {
    #[serde(rename = "1")]
    Gen1,
    #[serde(rename = "2")]
    Gen2,
}

/// Inventory status of a user key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    #[default]
    InStock,
    HandedOut,
    Lost,
    Broken,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::InStock => "in_stock",
            KeyStatus::HandedOut => "handed_out",
            KeyStatus::Lost => "lost",
            KeyStatus::Broken => "broken",
        }
    }
}

/// The activation setting of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Activation {
    Inactive,
    #[default]
    AlwaysActive,
    /// Active between two instants (quartz and dynamic keys only).
    Between {
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

/// Revalidation: the key must be revalidated at an update point within the interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Revalidation {
    /// Interval in hours (1 hour – 3660 days).
    pub interval_hours: u32,
    /// Revalidate once at the next update only.
    #[serde(default)]
    pub one_time_update: bool,
}

/// Longest revalidation interval in hours.
pub const MAX_REVALIDATION_HOURS: u32 = 3660 * 24;

/// Check an optional flexible-revalidation interval (hours): 1 hour to 3660 days.
pub fn check_revalidation_hours(e: &mut ValidationErrors, field: &str, hours: Option<u32>) {
    if let Some(h) = hours
        && (h == 0 || h > MAX_REVALIDATION_HOURS)
    {
        e.push(field, "must be 1 hour to 3660 days");
    }
}

/// PIN validation (Connect keys only): the holder enters the PIN within the interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PinValidation {
    /// Interval in minutes, 1 minute to 45 days.
    pub interval_minutes: u32,
}

/// Longest PIN validation interval: 45 days in minutes.
pub const MAX_PIN_MINUTES: u32 = 45 * 24 * 60;

/// The validity a key is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Validity {
    #[serde(default)]
    pub activation: Activation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revalidation: Option<Revalidation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<PinValidation>,
}

impl Validity {
    /// Check the validity against the key it is set on.
    pub fn validate_for(
        &self,
        prefix: &str,
        key_type: KeyType,
        connect: bool,
        fw: Option<&FirmwareVersion>,
    ) -> ValidationErrors {
        let mut e = ValidationErrors::new();
        if let Activation::Between { from, until } = &self.activation {
            if !key_type.has_clock() {
                e.push(
                    format!("{prefix}.activation"),
                    "dates need a quartz or dynamic key",
                );
            }
            if until <= from {
                e.push(format!("{prefix}.activation.until"), "must be after 'from'");
            }
        }
        if let Some(r) = &self.revalidation {
            if !key_type.has_clock() {
                e.push(
                    format!("{prefix}.revalidation"),
                    "revalidation needs a quartz or dynamic key",
                );
            }
            if r.interval_hours == 0 || r.interval_hours > MAX_REVALIDATION_HOURS {
                e.push(
                    format!("{prefix}.revalidation.interval_hours"),
                    format!("must be 1–{MAX_REVALIDATION_HOURS} hours"),
                );
            }
            if let Some(fw) = fw
                && fw.major() < 3
            {
                e.push(
                    format!("{prefix}.revalidation"),
                    format!("key firmware {fw} cannot revalidate (needs 3.0)"),
                );
            }
        }
        if let Some(p) = &self.pin {
            if !connect {
                e.push(
                    format!("{prefix}.pin"),
                    "PIN validation needs a CLIQ Connect key",
                );
            }
            if p.interval_minutes == 0 || p.interval_minutes > MAX_PIN_MINUTES {
                e.push(
                    format!("{prefix}.pin.interval_minutes"),
                    format!("must be 1 minute to 45 days ({MAX_PIN_MINUTES} minutes)"),
                );
            }
            if let Some(fw) = fw
                && *fw < FirmwareVersion::new(&[16])
            {
                e.push(
                    format!("{prefix}.pin"),
                    format!("key firmware {fw} cannot validate a PIN (needs 16.0.0)"),
                );
            }
        }
        e
    }
}

/// Which cylinders block a lost key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BlockChoice {
    /// Every cylinder that admits the key.
    #[default]
    All,
    /// Only installed cylinders that admit the key.
    Installed,
    /// The cylinders listed.
    Custom,
    /// None: the key is not blocked.
    None,
}

/// How a key was reported lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LostReport {
    pub block: BlockChoice,
    /// Cylinders for `custom`.
    #[serde(default)]
    pub cylinder_ids: Vec<ObjectId>,
    pub reported_at: DateTime<Utc>,
}

/// Factory-only features of a user key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct KeyFactory {
    /// The key must be updated online just before every opening (Connect keys).
    pub online_open: bool,
    /// Exempt from cylinders' online-open requirement.
    pub override_key: bool,
}

/// A user key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// Name, 1–50 characters.
    pub name: String,
    /// Marking engraved on the key; unique among the system's keys.
    pub marking: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_marking: Option<String>,
    /// Mechanical cutting code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutting: Option<String>,
    #[serde(rename = "type")]
    pub key_type: KeyType,
    /// Key group (none for mechanical keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_group_id: Option<ObjectId>,
    /// Hardware generation (electronic keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<Generation>,
    /// Firmware version (electronic keys): gen 1 ≤ 6.x, gen 2 ≥ 10.x.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<FirmwareVersion>,
    /// CLIQ Connect (Bluetooth) capable; never for normal keys.
    #[serde(default)]
    pub connect: bool,
    #[serde(default)]
    pub status: KeyStatus,
    /// Person holding the key (employee or visitor id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_id: Option<ObjectId>,
    /// Person the key was pre-ordered for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preordered_for_id: Option<ObjectId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_out: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_in: Option<NaiveDate>,
    /// Domain; the system's initial key domain when omitted.
    #[serde(default)]
    pub domain_id: ObjectId,
    /// Most entries the key access list can hold (dynamic keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_list_capacity: Option<u32>,
    #[serde(default)]
    pub validity: Validity,
    /// Schedule (quartz and dynamic keys); the whole week when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Access profiles tied directly to this key.
    #[serde(default)]
    pub access_profile_ids: Vec<ObjectId>,
    /// Explicit access: cylinders on the key's own access list (dynamic keys).
    #[serde(default)]
    pub cylinder_ids: Vec<ObjectId>,
    /// Explicit access: cylinder groups on the key's own access list (dynamic keys).
    #[serde(default)]
    pub cylinder_group_ids: Vec<ObjectId>,
    /// Factory features of the key (set at import, not by administrators).
    #[serde(default)]
    pub factory: KeyFactory,
    /// Last confirmed remote update; maintained by lockgate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_remote_update: Option<DateTime<Utc>>,
    /// How the key was reported lost (set by the lost-key flow; maintained by lockgate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_report: Option<LostReport>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub links: Vec<ExternalLink>,
}

/// Largest key access list capacity accepted.
pub const MAX_ACCESS_LIST_CAPACITY: u32 = 10_000;

impl Key {
    /// Firmware supports a time-zone offset (≥ 10.0.0).
    pub fn supports_time_zone_offset(&self) -> bool {
        self.firmware.as_ref().is_some_and(|f| f.major() >= 10)
    }
}

/// Check that a generation and firmware agree: gen 1 ≤ 6.x, gen 2 ≥ 10.x.
pub fn check_generation_firmware(
    e: &mut ValidationErrors,
    generation: Option<Generation>,
    fw: Option<&FirmwareVersion>,
) {
    if let (Some(g), Some(fw)) = (generation, fw) {
        match g {
            Generation::Gen1 if fw.major() > 6 => e.push(
                "firmware",
                format!("generation 1 firmware is at most 6.x, got {fw}"),
            ),
            Generation::Gen2 if fw.major() < 10 => e.push(
                "firmware",
                format!("generation 2 firmware is 10.x or later, got {fw}"),
            ),
            _ => {}
        }
    }
}

impl Resource for Key {
    const KIND: ObjectKind = ObjectKind::Key;

    fn validate(&self, ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        e.text("name", &self.name, 1, 50);
        e.text("marking", &self.marking, 1, 50);
        e.opt_text("second_marking", &self.second_marking, 50);
        e.opt_text("cutting", &self.cutting, 100);
        validate_tags(&mut e, &self.tags);
        validate_links(&mut e, &self.links, ctx.settings.link_root_url.is_some());
        let electronic = self.key_type != KeyType::Mechanical;
        if electronic {
            if self.generation.is_none() {
                e.push("generation", "is required for electronic keys");
            }
            if self.key_group_id.is_none() {
                e.push("key_group_id", "electronic keys belong to a key group");
            }
        } else {
            for (f, set) in [
                ("key_group_id", self.key_group_id.is_some()),
                ("generation", self.generation.is_some()),
                ("firmware", self.firmware.is_some()),
                ("connect", self.connect),
                ("schedule", self.schedule.is_some()),
                ("access_list_capacity", self.access_list_capacity.is_some()),
            ] {
                if set {
                    e.push(f, "mechanical keys have no electronics");
                }
            }
        }
        if self.connect && self.key_type == KeyType::Normal {
            e.push("connect", "normal keys are never CLIQ Connect keys");
        }
        check_generation_firmware(&mut e, self.generation, self.firmware.as_ref());
        if self.status == KeyStatus::HandedOut && self.holder_id.is_none() {
            e.push("holder_id", "a handed-out key needs a holder");
        }
        if self.status == KeyStatus::InStock && self.holder_id.is_some() {
            e.push("holder_id", "a key in stock has no holder");
        }
        if let (Some(o), Some(i)) = (self.date_out, self.date_in)
            && i < o
        {
            e.push("date_in", "must not be before date_out");
        }
        if self.key_type == KeyType::Mechanical && self.validity != Validity::default() {
            e.push("validity", "mechanical keys have no validity settings");
        } else {
            for err in self
                .validity
                .validate_for(
                    "validity",
                    self.key_type,
                    self.connect,
                    self.firmware.as_ref(),
                )
                .errors
            {
                e.errors.push(err);
            }
        }
        if let Some(s) = &self.schedule {
            if !self.key_type.has_clock() {
                e.push("schedule", "schedules need a quartz or dynamic key");
            }
            if let Some(fw) = &self.firmware
                && !s.supported_by(fw)
            {
                e.push(
                    "schedule",
                    format!("key firmware {fw} holds basic schedules only"),
                );
            }
            e.errors.extend(s.validate("schedule").errors);
        }
        if self.key_type != KeyType::Dynamic {
            // Manual §4.9.6: access profiles apply to dynamic keys only.
            if !self.access_profile_ids.is_empty() {
                e.push(
                    "access_profile_ids",
                    "only dynamic keys take access profiles",
                );
            }
            if !self.cylinder_ids.is_empty() {
                e.push(
                    "cylinder_ids",
                    "only dynamic keys have their own access list",
                );
            }
            if !self.cylinder_group_ids.is_empty() {
                e.push(
                    "cylinder_group_ids",
                    "only dynamic keys have their own access list",
                );
            }
        } else {
            if !self.cylinder_group_ids.is_empty() && !ctx.fixed.cylinder_groups {
                e.push(
                    "cylinder_group_ids",
                    "this locking system has no cylinder groups",
                );
            } else if let Some(fw) = &self.firmware
                && !self.cylinder_group_ids.is_empty()
                && *fw < FirmwareVersion::new(&[6, 3, 1])
            {
                e.push(
                    "cylinder_group_ids",
                    format!("key firmware {fw} cannot hold cylinder groups (needs 6.3.1)"),
                );
            }
            if let Some(cap) = self.access_list_capacity
                && (cap == 0 || cap > MAX_ACCESS_LIST_CAPACITY)
            {
                e.push(
                    "access_list_capacity",
                    format!("must be 1–{MAX_ACCESS_LIST_CAPACITY}"),
                );
            }
        }
        if self.key_type != KeyType::Dynamic && self.access_list_capacity.is_some() {
            e.push(
                "access_list_capacity",
                "only dynamic keys have a key access list",
            );
        }
        e.into_result()
    }

    fn projection(&self) -> Projection {
        Projection {
            name: self.name.trim().to_string(),
            marking: Some(self.marking.trim().to_string()),
            status: Some(self.status.as_str()),
            type_: Some(self.key_type.as_str()),
            domain_id: Some(self.domain_id),
            unique_name: false,
        }
    }

    fn references(&self) -> Vec<Reference> {
        let mut r = Vec::new();
        if let Some(g) = self.key_group_id {
            let types: &'static [&'static str] = match self.key_type {
                KeyType::Dynamic => &["dynamic"],
                _ => &["normal"],
            };
            r.push(
                Reference::new("key_group_id", ObjectKind::KeyGroup, g, "key_group")
                    .of_types(types),
            );
        }
        for (field, id) in [
            ("holder_id", self.holder_id),
            ("preordered_for_id", self.preordered_for_id),
        ] {
            if let Some(id) = id {
                r.push(Reference::new(field, ObjectKind::Employee, id, "holder").person());
            }
        }
        for (i, id) in self.access_profile_ids.iter().enumerate() {
            r.push(Reference::new(
                format!("access_profile_ids[{i}]"),
                ObjectKind::AccessProfile,
                *id,
                "access_profile",
            ));
        }
        for (i, id) in self.cylinder_ids.iter().enumerate() {
            r.push(Reference::new(
                format!("cylinder_ids[{i}]"),
                ObjectKind::Cylinder,
                *id,
                "explicit_access",
            ));
        }
        for (i, id) in self.cylinder_group_ids.iter().enumerate() {
            r.push(Reference::new(
                format!("cylinder_group_ids[{i}]"),
                ObjectKind::CylinderGroup,
                *id,
                "explicit_access",
            ));
        }
        if let Some(s) = &self.schedule {
            r.extend(s.references("schedule"));
        }
        r
    }

    fn field_function(field: &str) -> Option<Function> {
        match field {
            "validity" => Some(Function::KeyValidity),
            "schedule" => Some(Function::KeySchedule),
            "access_profile_ids" | "cylinder_ids" | "cylinder_group_ids" => {
                Some(Function::KeyAuthorisation)
            }
            "holder_id" | "date_out" | "date_in" => Some(Function::KeyHandInOut),
            _ => None,
        }
    }

    /// Manual §8.1.9–8.1.11: factory features come with the key (creation or import);
    /// they are never changed afterwards.
    fn check_update(&self, previous: &Self) -> Result<(), ValidationErrors> {
        crate::validation::factory_unchanged(&self.factory, &previous.factory)
    }

    fn keep_system_fields(&mut self, previous: Option<&Self>) {
        self.last_remote_update = previous.and_then(|p| p.last_remote_update);
        self.lost_report = previous.and_then(|p| p.lost_report.clone());
    }

    crate::tags_and_domain!();
}
