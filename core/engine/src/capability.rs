//! What a firmware version can do: the lowest versions per feature (`DOMAIN.md` §11).

use lockgate_model::FirmwareVersion;
use serde::Serialize;

/// Features that depend on firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Automatic audit-trail retrieval (key and C-key).
    AutomaticAuditTrail,
    /// Connect mobile PD compatibility (key).
    ConnectMobilePd,
    /// Cylinder groups (key 6.3.1, cylinder 5.3.1).
    CylinderGroups,
    /// Flexible revalidation (key).
    FlexibleRevalidation,
    /// Key firmware information through a remote PD (key).
    KeyFirmwareInfo,
    /// Offline update at PDs (key).
    OfflineUpdate,
    /// PIN validation (key).
    PinValidation,
    /// Remote update (key 3.0, C-key 12.0.0).
    Remote,
    /// Revalidation (key).
    Revalidation,
    /// Time-zone offset (key, C-key, cylinder).
    TimeZoneOffset,
    /// Firmware upgrade of generation 2 user keys.
    Gen2KeyFirmwareUpgrade,
    /// Carrying block jobs to cylinders (generation 2 dynamic keys).
    BlockingKeyJobs,
    /// Remote C-key update (C-key).
    RemoteCKeyUpdate,
}

/// Which device a firmware version belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    Key,
    CKey,
    Cylinder,
}

/// Lowest firmware version supporting `feature` on `device`; `None` when the device never does.
pub fn minimum(feature: Feature, device: Device) -> Option<FirmwareVersion> {
    use Device as D;
    use Feature as F;
    let v = |p: &[u32]| Some(FirmwareVersion::new(p));
    match (feature, device) {
        (F::AutomaticAuditTrail, D::Key | D::CKey) => v(&[12, 7, 0]),
        (F::ConnectMobilePd, D::Key) => v(&[12, 3]),
        (F::CylinderGroups, D::Key) => v(&[6, 3, 1]),
        (F::CylinderGroups, D::Cylinder) => v(&[5, 3, 1]),
        (F::FlexibleRevalidation, D::Key) => v(&[6, 3, 1]),
        (F::KeyFirmwareInfo, D::Key) => v(&[12, 3]),
        (F::OfflineUpdate, D::Key) => v(&[6, 3, 1]),
        (F::PinValidation, D::Key) => v(&[16, 0, 0]),
        (F::Remote, D::Key) => v(&[3, 0]),
        (F::Remote | F::RemoteCKeyUpdate, D::CKey) => v(&[12, 0, 0]),
        (F::Revalidation, D::Key) => v(&[3, 0]),
        (F::TimeZoneOffset, D::Key | D::CKey | D::Cylinder) => v(&[10, 0, 0]),
        (F::Gen2KeyFirmwareUpgrade, D::Key) => v(&[10, 1]),
        (F::BlockingKeyJobs, D::Key) => v(&[12, 2]),
        _ => None,
    }
}

/// Whether firmware `fw` of `device` supports `feature`. Unknown firmware supports nothing
/// that needs a minimum.
pub fn supports(feature: Feature, device: Device, fw: Option<&FirmwareVersion>) -> bool {
    match (minimum(feature, device), fw) {
        (Some(min), Some(fw)) => *fw >= min,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fw(s: &str) -> FirmwareVersion {
        s.parse().expect("version")
    }

    #[test]
    fn table_of_domain_section_11() {
        use Device as D;
        use Feature as F;
        let rows: &[(Feature, Device, &str, bool)] = &[
            (F::AutomaticAuditTrail, D::Key, "12.7.0", true),
            (F::AutomaticAuditTrail, D::CKey, "12.6.9", false),
            (F::CylinderGroups, D::Key, "6.3.1", true),
            (F::CylinderGroups, D::Key, "6.3.0", false),
            (F::CylinderGroups, D::Cylinder, "5.3.1", true),
            (F::CylinderGroups, D::Cylinder, "5.3", false),
            (F::FlexibleRevalidation, D::Key, "10.0", true),
            (F::OfflineUpdate, D::Key, "6.3", false),
            (F::PinValidation, D::Key, "16.0.0", true),
            (F::PinValidation, D::Key, "15.9", false),
            (F::Remote, D::Key, "3.0", true),
            (F::Remote, D::Key, "2.9", false),
            (F::Remote, D::CKey, "12.0.0", true),
            (F::Remote, D::CKey, "11.4", false),
            (F::Revalidation, D::Key, "3.0", true),
            (F::TimeZoneOffset, D::Cylinder, "10.0.0", true),
            (F::TimeZoneOffset, D::Cylinder, "6.9", false),
            (F::Gen2KeyFirmwareUpgrade, D::Key, "10.1", true),
            (F::BlockingKeyJobs, D::Key, "12.2", true),
            (F::BlockingKeyJobs, D::Key, "12.1.9", false),
            (F::PinValidation, D::Cylinder, "99", false),
        ];
        for (f, d, v, expected) in rows {
            assert_eq!(supports(*f, *d, Some(&fw(v))), *expected, "{f:?} {d:?} {v}");
        }
        assert!(!supports(Feature::Remote, Device::Key, None));
    }
}
