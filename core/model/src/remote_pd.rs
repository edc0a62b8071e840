//! Remote programming devices (wall PDs, CLIQ mobile PDs) and their settings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    common::{ExternalLink, validate_links, validate_tags},
    firmware::FirmwareVersion,
    resource::{ObjectKind, Projection, Resource, ValidationContext},
    validation::{ValidationErrors, check_mac},
};

/// Kind of remote PD (the Connect mobile PD is not system-specific and not listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RemotePdType {
    WallGen1,
    WallGen2,
    CliqMobile,
}

impl RemotePdType {
    pub fn as_str(self) -> &'static str {
        match self {
            RemotePdType::WallGen1 => "wall_gen1",
            RemotePdType::WallGen2 => "wall_gen2",
            RemotePdType::CliqMobile => "cliq_mobile",
        }
    }
}

/// Inventory status of a remote PD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PdInventoryStatus {
    #[default]
    InStock,
    Installed,
    HandedOut,
    Lost,
}

impl PdInventoryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PdInventoryStatus::InStock => "in_stock",
            PdInventoryStatus::Installed => "installed",
            PdInventoryStatus::HandedOut => "handed_out",
            PdInventoryStatus::Lost => "lost",
        }
    }
}

/// Operational status of a remote PD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PdOperationalStatus {
    #[default]
    Operational,
    Broken,
}

/// Log level of a generation 2 wall PD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PdLogLevel {
    Critical,
    #[default]
    General,
    Detailed,
    None,
}

/// Offline update limits (wall and CLIQ mobile PDs, key firmware ≥ 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OfflineUpdate {
    /// Offline updates per key since its last online one (≤ 255).
    pub max_updates_since_online: u32,
    /// Maximum days since the key's last online update.
    pub max_days_since_online: u32,
    /// Offline revalidation period in days (≤ 730).
    pub revalidation_days: u32,
}

/// Network and behaviour settings delivered to a PD on heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct PdSettings {
    /// Heartbeat interval in minutes (1–1440, default 15).
    pub heartbeat_minutes: u32,
    pub service_url: Option<String>,
    pub alternative_url: Option<String>,
    pub hostname: Option<String>,
    /// Static IPv4/IPv6 address; DHCP when absent.
    pub static_ip: Option<String>,
    pub proxy: Option<String>,
    pub diagnostic_mode: bool,
    /// Generation 2 wall PDs only.
    pub log_level: Option<PdLogLevel>,
    /// Generation 1 wall PDs: upgrades gen 1 keys (one such PD at a time).
    pub key_updater_mode: bool,
    pub offline_update: Option<OfflineUpdate>,
}

impl Default for PdSettings {
    fn default() -> Self {
        Self {
            heartbeat_minutes: 15,
            service_url: None,
            alternative_url: None,
            hostname: None,
            static_ip: None,
            proxy: None,
            diagnostic_mode: false,
            log_level: None,
            key_updater_mode: false,
            offline_update: None,
        }
    }
}

/// Connection state reported by the PD; maintained by lockgate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct PdConnection {
    pub online: bool,
    pub last_connection: Option<DateTime<Utc>>,
    pub last_ip: Option<String>,
}

/// A remote PD where keys pick up their jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RemotePd {
    /// Name, 1–50 characters.
    pub name: String,
    /// Marking; unique among the system's PDs.
    pub marking: String,
    #[serde(rename = "type")]
    pub pd_type: RemotePdType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<FirmwareVersion>,
    /// Boot-loader firmware (generation 1 wall PDs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootloader_firmware: Option<FirmwareVersion>,
    #[serde(default)]
    pub inventory_status: PdInventoryStatus,
    #[serde(default)]
    pub operational_status: PdOperationalStatus,
    #[serde(default)]
    pub settings: PdSettings,
    /// Read-only.
    #[serde(default)]
    pub connection: PdConnection,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub links: Vec<ExternalLink>,
}

fn check_url(e: &mut ValidationErrors, field: &str, v: &Option<String>) {
    if let Some(u) = v {
        match url::Url::parse(u) {
            Ok(p) if p.scheme() == "https" || p.scheme() == "http" => {}
            _ => e.push(field, "must be an absolute http(s) URL"),
        }
    }
}

impl Resource for RemotePd {
    const KIND: ObjectKind = ObjectKind::RemotePd;

    fn validate(&self, ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        e.text("name", &self.name, 1, 50);
        e.text("marking", &self.marking, 1, 50);
        // Manual §6.5.4: a wall PD is installed, a CLIQ mobile PD handed out.
        match (self.pd_type, self.inventory_status) {
            (RemotePdType::CliqMobile, PdInventoryStatus::Installed) => e.push(
                "inventory_status",
                "a CLIQ mobile PD is handed out, not installed",
            ),
            (RemotePdType::WallGen1 | RemotePdType::WallGen2, PdInventoryStatus::HandedOut) => {
                e.push("inventory_status", "a wall PD is installed, not handed out")
            }
            _ => {}
        }
        validate_tags(&mut e, &self.tags);
        validate_links(&mut e, &self.links, ctx.settings.link_root_url.is_some());
        if let Some(m) = &self.mac
            && let Err(msg) = check_mac(m)
        {
            e.push("mac", msg);
        }
        if self.bootloader_firmware.is_some() && self.pd_type != RemotePdType::WallGen1 {
            e.push(
                "bootloader_firmware",
                "only generation 1 wall PDs have boot-loader firmware",
            );
        }
        let s = &self.settings;
        if s.heartbeat_minutes == 0 || s.heartbeat_minutes > 1440 {
            e.push("settings.heartbeat_minutes", "must be 1–1440");
        }
        check_url(&mut e, "settings.service_url", &s.service_url);
        check_url(&mut e, "settings.alternative_url", &s.alternative_url);
        check_url(&mut e, "settings.proxy", &s.proxy);
        e.opt_text("settings.hostname", &s.hostname, 253);
        if let Some(ip) = &s.static_ip
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            e.push("settings.static_ip", format!("'{ip}' is not an IP address"));
        }
        if s.log_level.is_some() && self.pd_type != RemotePdType::WallGen2 {
            e.push(
                "settings.log_level",
                "only generation 2 wall PDs have a log level",
            );
        }
        if s.key_updater_mode && self.pd_type != RemotePdType::WallGen1 {
            e.push(
                "settings.key_updater_mode",
                "only generation 1 wall PDs have key updater mode",
            );
        }
        if let Some(o) = &s.offline_update {
            if o.max_updates_since_online > 255 {
                e.push(
                    "settings.offline_update.max_updates_since_online",
                    "must be at most 255",
                );
            }
            if o.revalidation_days == 0 || o.revalidation_days > 730 {
                e.push(
                    "settings.offline_update.revalidation_days",
                    "must be 1–730 days",
                );
            }
            if o.max_days_since_online == 0 || o.max_days_since_online > 3660 {
                e.push(
                    "settings.offline_update.max_days_since_online",
                    "must be 1–3660 days",
                );
            }
        }
        e.into_result()
    }

    fn projection(&self) -> Projection {
        Projection {
            name: self.name.trim().to_string(),
            marking: Some(self.marking.trim().to_string()),
            status: Some(self.inventory_status.as_str()),
            type_: Some(self.pd_type.as_str()),
            domain_id: None,
            unique_name: false,
        }
    }

    fn keep_system_fields(&mut self, previous: Option<&Self>) {
        self.connection = previous.map(|p| p.connection.clone()).unwrap_or_default();
    }

    fn tags(&self) -> &[String] {
        &self.tags
    }

    fn set_tags(&mut self, tags: Vec<String>) {
        self.tags = tags;
    }
}
