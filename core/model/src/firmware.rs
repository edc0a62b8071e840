//! Firmware versions of keys, C-keys, cylinders and PDs, compared numerically.

use std::{cmp::Ordering, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A dotted numeric firmware version such as `6.3.1` or `12.2`.
///
/// Missing trailing components count as zero, so `12.2 == 12.2.0` and
/// `6.3.1 < 12.0.0` (compared as numbers, not strings).
#[derive(Debug, Clone, Eq)]
pub struct FirmwareVersion {
    parts: Vec<u32>,
}

/// Why a firmware version string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{input}' is not a firmware version like 12.2.0: {reason}")]
pub struct FirmwareParseError {
    input: String,
    reason: &'static str,
}

impl FirmwareVersion {
    /// Build from numeric components.
    pub fn new(parts: &[u32]) -> Self {
        Self {
            parts: parts.to_vec(),
        }
    }

    /// The major component (e.g. 12 for 12.2.0).
    pub fn major(&self) -> u32 {
        self.parts.first().copied().unwrap_or(0)
    }

    fn component(&self, i: usize) -> u32 {
        self.parts.get(i).copied().unwrap_or(0)
    }

    /// True when this version is at least `min`.
    pub fn at_least(&self, min: &FirmwareVersion) -> bool {
        self >= min
    }
}

impl FromStr for FirmwareVersion {
    type Err = FirmwareParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| FirmwareParseError {
            input: s.chars().take(40).collect(),
            reason,
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(err("empty"));
        }
        let pieces: Vec<&str> = t.split('.').collect();
        if pieces.len() > 4 {
            return Err(err("at most four components"));
        }
        let mut parts = Vec::with_capacity(pieces.len());
        for p in pieces {
            if p.is_empty() || p.len() > 6 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("components must be numbers"));
            }
            parts.push(p.parse().map_err(|_| err("component too large"))?);
        }
        Ok(Self { parts })
    }
}

impl PartialEq for FirmwareVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Ord for FirmwareVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        (0..n)
            .map(|i| self.component(i).cmp(&other.component(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for FirmwareVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: Vec<String> = self.parts.iter().map(u32::to_string).collect();
        f.write_str(&s.join("."))
    }
}

impl Serialize for FirmwareVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FirmwareVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for FirmwareVersion {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^\d{1,6}(\.\d{1,6}){0,3}$"))
            .examples([serde_json::json!("12.2.0")])
            .description(Some(
                "Dotted numeric firmware version, compared numerically.",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for FirmwareVersion {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> FirmwareVersion {
        s.parse().expect("valid version")
    }

    #[test]
    fn numeric_not_lexical() {
        assert!(v("6.3.1") < v("12.0.0"));
        assert!(v("10.1") > v("9.99.99"));
        assert_eq!(v("12.2"), v("12.2.0"));
        assert!(v("12.2.0").at_least(&v("12.2")));
        assert!(!v("12.1.9").at_least(&v("12.2")));
        assert_eq!(v("06.3").to_string(), "6.3");
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "a.b", "1..2", "1.2.3.4.5", "-1", "1.2-beta", "1234567"] {
            assert!(bad.parse::<FirmwareVersion>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn order_matches_tuple_order(a in proptest::collection::vec(0u32..200, 1..4), b in proptest::collection::vec(0u32..200, 1..4)) {
            let pad = |x: &Vec<u32>| { let mut p = x.clone(); p.resize(4, 0); p };
            let fa = FirmwareVersion::new(&a);
            let fb = FirmwareVersion::new(&b);
            prop_assert_eq!(fa.cmp(&fb), pad(&a).cmp(&pad(&b)));
            prop_assert_eq!(v(&fa.to_string()), fa);
        }
    }
}
