//! Ed25519-signed licence files: verification, the install rule, expiry states and feature gating (`DOMAIN.md` §11).
//!
//! A licence belongs to one system and carries a number; only a licence with a
//! strictly higher number (for the same system) can replace the installed one
//! ([`check_install`]). After its *soft expiry* the system keeps working in a
//! warning state (super administrators are emailed); after its *hard expiry*
//! the system is locked at start-up ([`state`], [`locked_at_startup`]). The
//! licence lists the [`LicenceFeature`]s it unlocks ([`require`]).
//!
//! Everything here is pure: no I/O and no clock reads; the caller passes `now`.
//!
//! # File format
//!
//! A licence file is a UTF-8 JSON object with exactly three string fields
//! (a leading UTF-8 byte-order mark is tolerated, unknown fields are refused):
//!
//! ```json
//! {
//!   "payload":   "<base64url of the payload bytes>",
//!   "signature": "<base64url of the 64-byte Ed25519 signature over exactly those bytes>",
//!   "key_id":    "<id of the trusted key that made the signature>"
//! }
//! ```
//!
//! * base64url is the URL-safe alphabet of RFC 4648 §5 (`-` and `_`); [`sign`]
//!   writes it without padding, readers accept it with or without padding.
//! * The payload bytes are the JSON serialisation of a [`Licence`], as written
//!   by [`sign`]. The signature covers those exact bytes: a reader never
//!   re-serialises the JSON before verifying, and parses the payload only
//!   after the signature has been verified.
//! * The signature is checked with [`VerifyingKey::verify_strict`] against the
//!   key that the *reader's* [`TrustedKeys`] hold for the envelope's `key_id`.
//!   A key carried by the file itself is never used; an unknown `key_id` is an
//!   error. The payload's own `key_id` must equal the envelope's.
//! * Files larger than [`MAX_LICENCE_FILE_BYTES`] are refused before parsing.
//!
//! The payload, for example:
//!
//! ```json
//! {
//!   "system_name": "campus-north",
//!   "number": 7,
//!   "issued_at": "2026-01-05T00:00:00Z",
//!   "soft_expiry": "2026-12-01T00:00:00Z",
//!   "hard_expiry": "2027-01-01T00:00:00Z",
//!   "features": ["remote", "cylinder_groups", "connect_plus"],
//!   "max_keys": 5000,
//!   "key_id": "ops-2026"
//! }
//! ```
//!
//! # Trusted keys
//!
//! [`TrustedKeys::from_config`] reads entries of the form
//! `"<key_id>:<base64url public key>"`, e.g.
//! `"ops-2026:11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"`. Operators who run
//! their own trust root create a key pair with [`generate_key_pair_from_seed`]
//! and sign licences with [`sign`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Utc};
use ed25519_dalek::{
    PUBLIC_KEY_LENGTH, SIGNATURE_LENGTH, Signature, Signer as _, SigningKey, VerifyingKey,
};
use serde::{Deserialize, Serialize};

/// Largest licence file accepted by [`verify`], in bytes (64 KiB).
pub const MAX_LICENCE_FILE_BYTES: usize = 64 * 1024;

/// Longest accepted key id, in characters.
pub const MAX_KEY_ID_LEN: usize = 64;

/// base64url (RFC 4648 §5): written without padding, read with or without.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A feature a licence can unlock (`DOMAIN.md` §11). Serialised in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenceFeature {
    /// Remote programming devices and remote update jobs.
    Remote,
    /// Domains (partitioning of the system between administrators).
    Domains,
    /// Access profiles.
    AccessProfiles,
    /// Temporary access groups.
    TemporaryAccessGroups,
    /// Key revalidation.
    Revalidation,
    /// Flexible revalidation (intervals per cylinder group and profile).
    FlexibleRevalidation,
    /// Cylinder groups.
    CylinderGroups,
    /// Web services for HR and other systems.
    WebServices,
    /// PIN validation of keys.
    PinValidation,
    /// LDAP integration.
    LdapIntegration,
    /// Extended audit-trail and event archive (up to 3660 days instead of 366).
    ExtendedAuditTrail,
    /// Connect+.
    ConnectPlus,
}

impl LicenceFeature {
    /// Every feature, in declaration order.
    pub const ALL: [LicenceFeature; 12] = [
        LicenceFeature::Remote,
        LicenceFeature::Domains,
        LicenceFeature::AccessProfiles,
        LicenceFeature::TemporaryAccessGroups,
        LicenceFeature::Revalidation,
        LicenceFeature::FlexibleRevalidation,
        LicenceFeature::CylinderGroups,
        LicenceFeature::WebServices,
        LicenceFeature::PinValidation,
        LicenceFeature::LdapIntegration,
        LicenceFeature::ExtendedAuditTrail,
        LicenceFeature::ConnectPlus,
    ];

    /// The name used in licence files (snake_case).
    pub fn as_str(self) -> &'static str {
        match self {
            LicenceFeature::Remote => "remote",
            LicenceFeature::Domains => "domains",
            LicenceFeature::AccessProfiles => "access_profiles",
            LicenceFeature::TemporaryAccessGroups => "temporary_access_groups",
            LicenceFeature::Revalidation => "revalidation",
            LicenceFeature::FlexibleRevalidation => "flexible_revalidation",
            LicenceFeature::CylinderGroups => "cylinder_groups",
            LicenceFeature::WebServices => "web_services",
            LicenceFeature::PinValidation => "pin_validation",
            LicenceFeature::LdapIntegration => "ldap_integration",
            LicenceFeature::ExtendedAuditTrail => "extended_audit_trail",
            LicenceFeature::ConnectPlus => "connect_plus",
        }
    }

    /// A human-readable name, e.g. `"Connect+"`.
    pub fn label(self) -> &'static str {
        match self {
            LicenceFeature::Remote => "remote",
            LicenceFeature::Domains => "domains",
            LicenceFeature::AccessProfiles => "access profiles",
            LicenceFeature::TemporaryAccessGroups => "temporary access groups",
            LicenceFeature::Revalidation => "revalidation",
            LicenceFeature::FlexibleRevalidation => "flexible revalidation",
            LicenceFeature::CylinderGroups => "cylinder groups",
            LicenceFeature::WebServices => "web services",
            LicenceFeature::PinValidation => "PIN validation",
            LicenceFeature::LdapIntegration => "LDAP integration",
            LicenceFeature::ExtendedAuditTrail => "extended audit-trail and event archive",
            LicenceFeature::ConnectPlus => "Connect+",
        }
    }
}

impl fmt::Display for LicenceFeature {
    /// `label (file_name)`, e.g. `Connect+ (connect_plus)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.label(), self.as_str())
    }
}

/// The signed content of a licence file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Licence {
    /// The system the licence is for; an installed licence is only replaced by
    /// one for the same system.
    pub system_name: String,
    /// Licence number; only a strictly higher number installs.
    pub number: u64,
    /// When the licence was issued.
    pub issued_at: DateTime<Utc>,
    /// From this instant on the licence is in the warning state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_expiry: Option<DateTime<Utc>>,
    /// From this instant on the system is locked at start-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_expiry: Option<DateTime<Utc>>,
    /// The features unlocked.
    pub features: BTreeSet<LicenceFeature>,
    /// Maximum number of keys, when limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u32>,
    /// Maximum number of cylinders, when limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cylinders: Option<u32>,
    /// The trusted key that signed this licence; equals the file's `key_id`.
    pub key_id: String,
}

impl Licence {
    /// Whether the licence lists `feature` (expiry not considered; see [`require`]).
    pub fn has(&self, feature: LicenceFeature) -> bool {
        self.features.contains(&feature)
    }

    /// Consistency checks applied by [`verify`] after the signature.
    fn validate(&self) -> Result<(), LicenceError> {
        if self.system_name.trim().is_empty() {
            return Err(LicenceError::InvalidPayload(
                "system_name is empty".to_owned(),
            ));
        }
        if let (Some(soft), Some(hard)) = (self.soft_expiry, self.hard_expiry)
            && soft > hard
        {
            return Err(LicenceError::InvalidPayload(format!(
                "soft_expiry {soft} is after hard_expiry {hard}"
            )));
        }
        for (name, at) in [
            ("soft_expiry", self.soft_expiry),
            ("hard_expiry", self.hard_expiry),
        ] {
            if let Some(at) = at
                && at < self.issued_at
            {
                return Err(LicenceError::InvalidPayload(format!(
                    "{name} {at} is before issued_at {}",
                    self.issued_at
                )));
            }
        }
        Ok(())
    }
}

/// Why a licence file, trusted key or licence operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenceError {
    /// The file exceeds [`MAX_LICENCE_FILE_BYTES`].
    #[error("licence file is {size} bytes; the limit is {max} bytes")]
    TooLarge {
        /// Size of the file.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The file is not the expected JSON envelope.
    #[error("licence file is not a valid licence envelope: {0}")]
    MalformedFile(String),
    /// A field of the envelope is not valid base64url.
    #[error("licence file field `{field}` is not valid base64url: {reason}")]
    Base64 {
        /// `"payload"` or `"signature"`.
        field: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// The signature does not decode to 64 bytes.
    #[error("licence signature is {len} bytes; an Ed25519 signature is 64 bytes")]
    SignatureLength {
        /// Decoded length.
        len: usize,
    },
    /// The envelope names a key id that is not trusted.
    #[error("licence is signed with key id `{0}`, which is not a trusted licence key")]
    UnknownKeyId(String),
    /// The signature does not verify against the trusted key.
    #[error("licence signature does not verify against trusted key `{key_id}`")]
    BadSignature {
        /// The trusted key that was used.
        key_id: String,
    },
    /// The (correctly signed) payload is not a valid licence.
    #[error("licence payload is not a valid licence: {0}")]
    MalformedPayload(String),
    /// The (correctly signed) payload is inconsistent.
    #[error("licence payload is inconsistent: {0}")]
    InvalidPayload(String),
    /// The payload's `key_id` differs from the envelope's.
    #[error("licence payload names key id `{payload}` but the file is signed with `{envelope}`")]
    KeyIdMismatch {
        /// Key id of the envelope (the one verified).
        envelope: String,
        /// Key id written in the payload.
        payload: String,
    },
    /// A trusted-key configuration entry is invalid.
    #[error("trusted licence key entry #{index} (`{entry}`) is invalid: {reason}")]
    InvalidTrustedKey {
        /// Zero-based position of the entry in the configuration.
        index: usize,
        /// The entry (shortened when long).
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two trusted keys share an id.
    #[error("trusted licence key id `{0}` is configured more than once")]
    DuplicateKeyId(String),
    /// The new licence's number is not higher than the installed one's.
    #[error(
        "licence number {new} cannot replace installed licence number {current}: only a higher number installs"
    )]
    NotNewer {
        /// Number of the installed licence.
        current: u64,
        /// Number of the offered licence.
        new: u64,
    },
    /// The new licence is for another system.
    #[error("licence is for system `{new}`, but this system is `{current}`")]
    SystemMismatch {
        /// System name of the installed licence.
        current: String,
        /// System name of the offered licence.
        new: String,
    },
    /// No licence is installed.
    #[error("no licence is installed")]
    Missing,
    /// The licence passed its hard expiry.
    #[error("the licence expired (hard expiry) at {since}")]
    HardExpired {
        /// The hard-expiry instant.
        since: DateTime<Utc>,
    },
    /// The licence does not include a feature.
    #[error("the licence does not include the feature {0}")]
    FeatureMissing(LicenceFeature),
}

/// Shortens untrusted text echoed in error messages.
fn clip(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

/// Checks a key id: 1 to [`MAX_KEY_ID_LEN`] ASCII letters, digits, `.`, `_` or `-`.
fn check_key_id(key_id: &str) -> Result<(), String> {
    if key_id.is_empty() {
        return Err("the key id is empty".to_owned());
    }
    if key_id.len() > MAX_KEY_ID_LEN {
        return Err(format!(
            "the key id is longer than {MAX_KEY_ID_LEN} characters"
        ));
    }
    if !key_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("the key id may only hold ASCII letters, digits, '.', '_' and '-'".to_owned());
    }
    Ok(())
}

/// The licence-signing public keys this installation trusts, by key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: BTreeMap<String, VerifyingKey>,
}

impl TrustedKeys {
    /// An empty set (every licence is then refused with [`LicenceError::UnknownKeyId`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the set from configuration entries `"<key_id>:<base64url public key>"`.
    ///
    /// Whitespace around the entry, the id and the key is ignored. Errors name
    /// the offending entry: a missing `:`, a malformed id, a key that is not
    /// base64url of 32 bytes, not a valid Ed25519 point, or a weak (small-order)
    /// key; a repeated id is [`LicenceError::DuplicateKeyId`].
    pub fn from_config<I, S>(entries: I) -> Result<Self, LicenceError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut keys = Self::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let entry = entry.as_ref();
            let invalid = |reason: String| LicenceError::InvalidTrustedKey {
                index,
                entry: clip(entry.trim()),
                reason,
            };
            let (key_id, public) = entry
                .trim()
                .split_once(':')
                .ok_or_else(|| invalid("expected `<key_id>:<base64url public key>`".to_owned()))?;
            let key_id = key_id.trim();
            check_key_id(key_id).map_err(&invalid)?;
            let key = parse_public_key(public.trim()).map_err(&invalid)?;
            keys.insert(key_id, key)?;
        }
        Ok(keys)
    }

    /// Adds one key. The id must be 1–[`MAX_KEY_ID_LEN`] ASCII letters, digits,
    /// `.`, `_` or `-`, and not present yet; weak (small-order) keys are refused.
    pub fn insert(&mut self, key_id: &str, key: VerifyingKey) -> Result<(), LicenceError> {
        let invalid = |reason: String| LicenceError::InvalidTrustedKey {
            index: self.keys.len(),
            entry: clip(key_id),
            reason,
        };
        check_key_id(key_id).map_err(invalid)?;
        if key.is_weak() {
            return Err(invalid(
                "the public key is a weak (small-order) Ed25519 key".to_owned(),
            ));
        }
        if self.keys.contains_key(key_id) {
            return Err(LicenceError::DuplicateKeyId(key_id.to_owned()));
        }
        self.keys.insert(key_id.to_owned(), key);
        Ok(())
    }

    /// The key trusted under `key_id`.
    pub fn get(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.keys.get(key_id)
    }

    /// The trusted key ids, sorted.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Number of trusted keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Decodes a base64url Ed25519 public key (32 bytes, a valid point).
fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = B64
        .decode(text)
        .map_err(|e| format!("the public key is not valid base64url: {e}"))?;
    let bytes: [u8; PUBLIC_KEY_LENGTH] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "the public key is {} bytes; an Ed25519 public key is {PUBLIC_KEY_LENGTH} bytes",
            bytes.len()
        )
    })?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "the public key is not a valid Ed25519 point".to_owned())?;
    if key.is_weak() {
        return Err("the public key is a weak (small-order) Ed25519 key".to_owned());
    }
    Ok(key)
}

/// The JSON envelope of a licence file (see the module documentation).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    payload: String,
    signature: String,
    key_id: String,
}

/// Verifies a licence file and returns its payload.
///
/// Steps, in order: size limit; envelope JSON; the trusted key for the
/// envelope's `key_id` (never a key from the file); base64url decoding;
/// [`VerifyingKey::verify_strict`] over the exact payload bytes; only then the
/// payload JSON; the payload's `key_id` must equal the envelope's; the dates
/// must be consistent (`issued_at` ≤ `soft_expiry` ≤ `hard_expiry`).
///
/// Expiry is not judged here: an expired licence verifies; see [`state`].
pub fn verify(file_bytes: &[u8], trusted: &TrustedKeys) -> Result<Licence, LicenceError> {
    if file_bytes.len() > MAX_LICENCE_FILE_BYTES {
        return Err(LicenceError::TooLarge {
            size: file_bytes.len(),
            max: MAX_LICENCE_FILE_BYTES,
        });
    }
    let file_bytes = file_bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(file_bytes);
    let envelope: Envelope = serde_json::from_slice(file_bytes)
        .map_err(|e| LicenceError::MalformedFile(e.to_string()))?;

    let key = trusted
        .get(&envelope.key_id)
        .ok_or_else(|| LicenceError::UnknownKeyId(clip(&envelope.key_id)))?;

    let signature = B64
        .decode(&envelope.signature)
        .map_err(|e| LicenceError::Base64 {
            field: "signature",
            reason: e.to_string(),
        })?;
    let signature: [u8; SIGNATURE_LENGTH] =
        signature
            .as_slice()
            .try_into()
            .map_err(|_| LicenceError::SignatureLength {
                len: signature.len(),
            })?;
    let signature = Signature::from_bytes(&signature);

    let payload = B64
        .decode(&envelope.payload)
        .map_err(|e| LicenceError::Base64 {
            field: "payload",
            reason: e.to_string(),
        })?;

    key.verify_strict(&payload, &signature)
        .map_err(|_| LicenceError::BadSignature {
            key_id: envelope.key_id.clone(),
        })?;

    let licence: Licence = serde_json::from_slice(&payload)
        .map_err(|e| LicenceError::MalformedPayload(e.to_string()))?;
    if licence.key_id != envelope.key_id {
        return Err(LicenceError::KeyIdMismatch {
            envelope: envelope.key_id,
            payload: clip(&licence.key_id),
        });
    }
    licence.validate()?;
    Ok(licence)
}

/// Whether `new` may replace `current`: nothing installed yet, or the same
/// system (exact `system_name`) and a strictly higher `number`.
///
/// Checks neither signature (use [`verify`] first) nor expiry.
pub fn check_install(current: Option<&Licence>, new: &Licence) -> Result<(), LicenceError> {
    let Some(current) = current else {
        return Ok(());
    };
    if current.system_name != new.system_name {
        return Err(LicenceError::SystemMismatch {
            current: current.system_name.clone(),
            new: new.system_name.clone(),
        });
    }
    if new.number <= current.number {
        return Err(LicenceError::NotNewer {
            current: current.number,
            new: new.number,
        });
    }
    Ok(())
}

/// The licence's state at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LicenceState {
    /// Installed and before any expiry.
    Valid,
    /// Past the soft expiry: warning state, super administrators are emailed.
    SoftExpired {
        /// The soft-expiry instant.
        since: DateTime<Utc>,
    },
    /// Past the hard expiry: the system is locked at start-up.
    HardExpired {
        /// The hard-expiry instant.
        since: DateTime<Utc>,
    },
    /// No licence installed.
    Missing,
}

/// The state of `licence` at `now`.
///
/// An expiry instant is the first instant of its state: at `now == soft_expiry`
/// the licence is [`LicenceState::SoftExpired`], at `now == hard_expiry` it is
/// [`LicenceState::HardExpired`]. Hard expiry wins over soft expiry.
pub fn state(licence: Option<&Licence>, now: DateTime<Utc>) -> LicenceState {
    let Some(licence) = licence else {
        return LicenceState::Missing;
    };
    match (licence.hard_expiry, licence.soft_expiry) {
        (Some(hard), _) if now >= hard => LicenceState::HardExpired { since: hard },
        (_, Some(soft)) if now >= soft => LicenceState::SoftExpired { since: soft },
        _ => LicenceState::Valid,
    }
}

/// Whether the system must refuse to start: only after hard expiry.
///
/// A missing licence does not lock the system by itself; every licensed
/// feature is then refused by [`require`].
pub fn locked_at_startup(state: LicenceState) -> bool {
    matches!(state, LicenceState::HardExpired { .. })
}

/// Whether `feature` may be used at `now`.
///
/// Refused when no licence is installed ([`LicenceError::Missing`]), after hard
/// expiry ([`LicenceError::HardExpired`]) or when the licence does not list the
/// feature ([`LicenceError::FeatureMissing`]). Soft expiry does not refuse.
pub fn require(
    licence: Option<&Licence>,
    now: DateTime<Utc>,
    feature: LicenceFeature,
) -> Result<(), LicenceError> {
    let Some(lic) = licence else {
        return Err(LicenceError::Missing);
    };
    if let LicenceState::HardExpired { since } = state(licence, now) {
        return Err(LicenceError::HardExpired { since });
    }
    if !lic.has(feature) {
        return Err(LicenceError::FeatureMissing(feature));
    }
    Ok(())
}

/// Signs `payload` and returns the licence file text (see the module documentation).
///
/// The payload's `key_id` is set to `key_id` in the signed bytes, so the file
/// verifies against any [`TrustedKeys`] holding this signing key's public key
/// under `key_id`.
pub fn sign(payload: &Licence, signing_key: &SigningKey, key_id: &str) -> String {
    let mut payload = payload.clone();
    payload.key_id = key_id.to_owned();
    let bytes = serde_json::to_vec(&payload).expect("a licence always serialises to JSON");
    seal(&bytes, signing_key, key_id)
}

/// The envelope for exact payload bytes.
fn seal(payload: &[u8], signing_key: &SigningKey, key_id: &str) -> String {
    let signature = signing_key.sign(payload);
    let envelope = Envelope {
        payload: B64.encode(payload),
        signature: B64.encode(signature.to_bytes()),
        key_id: key_id.to_owned(),
    };
    serde_json::to_string_pretty(&envelope).expect("an envelope always serialises to JSON")
}

/// A key pair from a fixed 32-byte seed: the signing key and its public key
/// as base64url (unpadded), ready for a `"<key_id>:<public key>"` trusted-key entry.
///
/// The seed is the secret: derive it from a good random source and keep it secret.
pub fn generate_key_pair_from_seed(seed: [u8; 32]) -> (SigningKey, String) {
    let signing_key = SigningKey::from_bytes(&seed);
    let public = B64.encode(signing_key.verifying_key().to_bytes());
    (signing_key, public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    const OPS_SEED: [u8; 32] = [7; 32];
    const OTHER_SEED: [u8; 32] = [42; 32];

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn licence(number: u64) -> Licence {
        Licence {
            system_name: "campus-north".to_owned(),
            number,
            issued_at: at(2026, 1, 5),
            soft_expiry: Some(at(2026, 12, 1)),
            hard_expiry: Some(at(2027, 1, 1)),
            features: [
                LicenceFeature::Remote,
                LicenceFeature::CylinderGroups,
                LicenceFeature::ConnectPlus,
            ]
            .into_iter()
            .collect(),
            max_keys: Some(5000),
            max_cylinders: None,
            key_id: "ops-2026".to_owned(),
        }
    }

    fn ops() -> (SigningKey, TrustedKeys) {
        let (key, public) = generate_key_pair_from_seed(OPS_SEED);
        let trusted = TrustedKeys::from_config([format!("ops-2026:{public}")]).unwrap();
        (key, trusted)
    }

    fn envelope(file: &str) -> serde_json::Value {
        serde_json::from_str(file).unwrap()
    }

    fn field(file: &str, name: &str) -> Vec<u8> {
        B64.decode(envelope(file)[name].as_str().unwrap()).unwrap()
    }

    fn with_field(file: &str, name: &str, bytes: &[u8]) -> Vec<u8> {
        let mut value = envelope(file);
        value[name] = serde_json::Value::String(B64.encode(bytes));
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn round_trip() {
        let (key, trusted) = ops();
        let lic = licence(7);
        let file = sign(&lic, &key, "ops-2026");
        assert_eq!(verify(file.as_bytes(), &trusted), Ok(lic));
    }

    #[test]
    fn file_format_is_the_documented_envelope() {
        let (key, _) = ops();
        let file = sign(&licence(7), &key, "ops-2026");
        let value = envelope(&file);
        let object = value.as_object().unwrap();
        let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["key_id", "payload", "signature"]);
        assert_eq!(object["key_id"], "ops-2026");
        for name in ["payload", "signature"] {
            let text = object[name].as_str().unwrap();
            assert!(!text.contains(['=', '+', '/']), "{name}: {text}");
        }
        assert_eq!(field(&file, "signature").len(), 64);
        let payload: serde_json::Value = serde_json::from_slice(&field(&file, "payload")).unwrap();
        assert_eq!(
            payload["features"],
            serde_json::json!(["remote", "cylinder_groups", "connect_plus"])
        );
        assert_eq!(payload["issued_at"], "2026-01-05T00:00:00Z");
        assert!(payload.get("max_cylinders").is_none());
    }

    #[test]
    fn sign_writes_the_envelope_key_id_into_the_payload() {
        let (key, trusted) = ops();
        let mut lic = licence(7);
        lic.key_id = "something-else".to_owned();
        let verified = verify(sign(&lic, &key, "ops-2026").as_bytes(), &trusted).unwrap();
        assert_eq!(verified.key_id, "ops-2026");
    }

    #[test]
    fn signature_covers_exact_bytes_not_reserialised_json() {
        // Payload bytes that are valid but not what `sign` would write
        // (whitespace, other field order): they verify as signed.
        let (key, trusted) = ops();
        let bytes = br#"{ "key_id": "ops-2026", "features": [ "remote" ],
            "number": 3, "issued_at": "2026-01-05T00:00:00Z", "system_name": "campus-north" }"#;
        let file = seal(bytes, &key, "ops-2026");
        let lic = verify(file.as_bytes(), &trusted).unwrap();
        assert_eq!(lic.number, 3);
        assert_eq!(lic.soft_expiry, None);
        // Re-serialising and keeping the old signature does not verify.
        let reserialised = serde_json::to_vec(&lic).unwrap();
        assert_ne!(reserialised.as_slice(), bytes.as_slice());
        let forged = with_field(&file, "payload", &reserialised);
        assert_eq!(
            verify(&forged, &trusted),
            Err(LicenceError::BadSignature {
                key_id: "ops-2026".to_owned()
            })
        );
    }

    #[test]
    fn tampered_payload_byte_refused() {
        let (key, trusted) = ops();
        let file = sign(&licence(7), &key, "ops-2026");
        let payload = field(&file, "payload");
        for i in 0..payload.len() {
            let mut bytes = payload.clone();
            bytes[i] ^= 0x01;
            let result = verify(&with_field(&file, "payload", &bytes), &trusted);
            assert_eq!(
                result,
                Err(LicenceError::BadSignature {
                    key_id: "ops-2026".to_owned()
                }),
                "byte {i}"
            );
        }
        // A targeted change: a higher licence number.
        let text = String::from_utf8(payload)
            .unwrap()
            .replace("\"number\":7", "\"number\":9");
        let result = verify(&with_field(&file, "payload", text.as_bytes()), &trusted);
        assert!(matches!(result, Err(LicenceError::BadSignature { .. })));
    }

    #[test]
    fn tampered_signature_byte_refused() {
        let (key, trusted) = ops();
        let file = sign(&licence(7), &key, "ops-2026");
        let signature = field(&file, "signature");
        for i in 0..signature.len() {
            let mut bytes = signature.clone();
            bytes[i] ^= 0x01;
            let result = verify(&with_field(&file, "signature", &bytes), &trusted);
            assert!(
                matches!(result, Err(LicenceError::BadSignature { .. })),
                "byte {i}: {result:?}"
            );
        }
    }

    #[test]
    fn signature_by_untrusted_key_refused() {
        let (_, trusted) = ops();
        let (attacker, _) = generate_key_pair_from_seed(OTHER_SEED);
        let file = sign(&licence(7), &attacker, "ops-2026");
        assert_eq!(
            verify(file.as_bytes(), &trusted),
            Err(LicenceError::BadSignature {
                key_id: "ops-2026".to_owned()
            })
        );
    }

    #[test]
    fn embedded_public_key_is_never_used() {
        let (_, trusted) = ops();
        let (attacker, attacker_public) = generate_key_pair_from_seed(OTHER_SEED);

        // Inside the payload: the signature is still checked against the
        // trusted key, and fails, before the payload is even parsed.
        let mut value = serde_json::to_value(licence(7)).unwrap();
        value["public_key"] = serde_json::Value::String(attacker_public.clone());
        let bytes = serde_json::to_vec(&value).unwrap();
        let file = seal(&bytes, &attacker, "ops-2026");
        assert_eq!(
            verify(file.as_bytes(), &trusted),
            Err(LicenceError::BadSignature {
                key_id: "ops-2026".to_owned()
            })
        );

        // Beside the envelope fields: refused as not the licence format.
        let file = sign(&licence(7), &attacker, "ops-2026");
        let mut value = envelope(&file);
        value["public_key"] = serde_json::Value::String(attacker_public);
        let result = verify(&serde_json::to_vec(&value).unwrap(), &trusted);
        match result {
            Err(LicenceError::MalformedFile(message)) => {
                assert!(message.contains("public_key"), "{message}")
            }
            other => panic!("{other:?}"),
        }

        // Even a genuinely signed payload carrying a key field is refused.
        let (key, _) = ops();
        let mut value = serde_json::to_value(licence(7)).unwrap();
        value["public_key"] = serde_json::Value::String("x".to_owned());
        let file = seal(&serde_json::to_vec(&value).unwrap(), &key, "ops-2026");
        assert!(matches!(
            verify(file.as_bytes(), &trusted),
            Err(LicenceError::MalformedPayload(m)) if m.contains("public_key")
        ));
    }

    #[test]
    fn unknown_key_id_refused() {
        let (key, trusted) = ops();
        let file = sign(&licence(7), &key, "ops-2030");
        let err = verify(file.as_bytes(), &trusted).unwrap_err();
        assert_eq!(err, LicenceError::UnknownKeyId("ops-2030".to_owned()));
        assert!(err.to_string().contains("`ops-2030`"));
        // An empty trust set refuses everything.
        let file = sign(&licence(7), &key, "ops-2026");
        assert!(matches!(
            verify(file.as_bytes(), &TrustedKeys::new()),
            Err(LicenceError::UnknownKeyId(_))
        ));
    }

    #[test]
    fn each_trusted_key_verifies_only_its_own_licences() {
        let (ops_key, ops_public) = generate_key_pair_from_seed(OPS_SEED);
        let (other_key, other_public) = generate_key_pair_from_seed(OTHER_SEED);
        let trusted = TrustedKeys::from_config([
            format!("ops-2026:{ops_public}"),
            format!("ops-2027:{other_public}"),
        ])
        .unwrap();
        assert!(verify(sign(&licence(1), &ops_key, "ops-2026").as_bytes(), &trusted).is_ok());
        assert!(
            verify(
                sign(&licence(1), &other_key, "ops-2027").as_bytes(),
                &trusted
            )
            .is_ok()
        );
        // A trusted key claiming the other's id is refused.
        assert!(matches!(
            verify(sign(&licence(1), &other_key, "ops-2026").as_bytes(), &trusted),
            Err(LicenceError::BadSignature { key_id }) if key_id == "ops-2026"
        ));
    }

    #[test]
    fn payload_key_id_must_match_envelope() {
        let (key, trusted) = ops();
        let mut lic = licence(7);
        lic.key_id = "ops-2027".to_owned();
        let file = seal(&serde_json::to_vec(&lic).unwrap(), &key, "ops-2026");
        assert_eq!(
            verify(file.as_bytes(), &trusted),
            Err(LicenceError::KeyIdMismatch {
                envelope: "ops-2026".to_owned(),
                payload: "ops-2027".to_owned(),
            })
        );
    }

    #[test]
    fn oversize_file_refused_before_parsing() {
        let (_, trusted) = ops();
        let big = vec![b'{'; MAX_LICENCE_FILE_BYTES + 1];
        assert_eq!(
            verify(&big, &trusted),
            Err(LicenceError::TooLarge {
                size: MAX_LICENCE_FILE_BYTES + 1,
                max: MAX_LICENCE_FILE_BYTES
            })
        );
        // A valid file padded with whitespace up to the limit still verifies.
        let (key, _) = ops();
        let mut file = sign(&licence(7), &key, "ops-2026").into_bytes();
        file.resize(MAX_LICENCE_FILE_BYTES, b' ');
        assert!(verify(&file, &trusted).is_ok());
        file.push(b' ');
        assert!(matches!(
            verify(&file, &trusted),
            Err(LicenceError::TooLarge { .. })
        ));
    }

    #[test]
    fn malformed_envelope_refused_with_clear_errors() {
        let (_, trusted) = ops();
        for (input, needle) in [
            (&b"not json"[..], "expected"),
            (b"", "EOF"),
            (b"[]", "expected"),
            (br#"{"payload":"", "key_id":"ops-2026"}"#, "signature"),
            (
                br#"{"payload":1, "signature":"", "key_id":"ops-2026"}"#,
                "invalid type",
            ),
            (b"\xff\xfe{}", "expected"),
        ] {
            match verify(input, &trusted) {
                Err(LicenceError::MalformedFile(message)) => {
                    assert!(message.contains(needle), "{message}")
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
            }
        }
        let err = verify(b"not json", &trusted).unwrap_err().to_string();
        assert!(
            err.starts_with("licence file is not a valid licence envelope"),
            "{err}"
        );
    }

    #[test]
    fn utf8_byte_order_mark_tolerated() {
        let (key, trusted) = ops();
        let mut file = b"\xEF\xBB\xBF".to_vec();
        file.extend_from_slice(sign(&licence(7), &key, "ops-2026").as_bytes());
        assert!(verify(&file, &trusted).is_ok());
    }

    #[test]
    fn malformed_base64_refused_with_clear_errors() {
        let (key, trusted) = ops();
        let file = sign(&licence(7), &key, "ops-2026");
        for (name, bad) in [
            ("payload", "not base64!"),
            ("signature", "a+b/"),
            ("signature", "abcde"),
        ] {
            let mut value = envelope(&file);
            value[name] = serde_json::Value::String(bad.to_owned());
            let err = verify(&serde_json::to_vec(&value).unwrap(), &trusted).unwrap_err();
            assert!(
                matches!(&err, LicenceError::Base64 { field, .. } if *field == name),
                "{name}={bad}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
        }
        // Padded base64url is accepted.
        let mut value = envelope(&file);
        let padded = base64::engine::general_purpose::URL_SAFE.encode(field(&file, "signature"));
        assert!(padded.ends_with('='));
        value["signature"] = serde_json::Value::String(padded);
        assert!(verify(&serde_json::to_vec(&value).unwrap(), &trusted).is_ok());
    }

    #[test]
    fn signed_but_malformed_payload_refused_with_clear_errors() {
        let (key, trusted) = ops();
        let mut unknown_feature = serde_json::to_value(licence(7)).unwrap();
        unknown_feature["features"] = serde_json::json!(["remote", "teleportation"]);
        let mut missing_number = serde_json::to_value(licence(7)).unwrap();
        missing_number.as_object_mut().unwrap().remove("number");
        for (bytes, needle) in [
            (b"garbage".to_vec(), "expected"),
            (
                serde_json::to_vec(&unknown_feature).unwrap(),
                "teleportation",
            ),
            (serde_json::to_vec(&missing_number).unwrap(), "number"),
        ] {
            let file = seal(&bytes, &key, "ops-2026");
            match verify(file.as_bytes(), &trusted) {
                Err(LicenceError::MalformedPayload(message)) => {
                    assert!(message.contains(needle), "{message}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn inconsistent_dates_refused() {
        let (key, trusted) = ops();
        let mut soft_after_hard = licence(7);
        soft_after_hard.soft_expiry = Some(at(2027, 2, 1));
        let mut expired_before_issue = licence(7);
        expired_before_issue.soft_expiry = None;
        expired_before_issue.hard_expiry = Some(at(2025, 1, 1));
        let mut empty_system = licence(7);
        empty_system.system_name = " ".to_owned();
        for lic in [soft_after_hard, expired_before_issue, empty_system] {
            let result = verify(sign(&lic, &key, "ops-2026").as_bytes(), &trusted);
            assert!(
                matches!(result, Err(LicenceError::InvalidPayload(_))),
                "{result:?}"
            );
        }
        // Equal soft and hard expiry is consistent.
        let mut same = licence(7);
        same.soft_expiry = same.hard_expiry;
        assert!(verify(sign(&same, &key, "ops-2026").as_bytes(), &trusted).is_ok());
    }

    #[test]
    fn wrong_length_signature_refused() {
        let (key, trusted) = ops();
        let file = sign(&licence(7), &key, "ops-2026");
        let signature = field(&file, "signature");
        for len in [0, 1, 32, 63, 65, 128] {
            let mut bytes = signature.clone();
            bytes.resize(len, 0);
            assert_eq!(
                verify(&with_field(&file, "signature", &bytes), &trusted),
                Err(LicenceError::SignatureLength { len }),
                "len {len}"
            );
        }
    }

    #[test]
    fn all_zero_signature_refused() {
        let (key, trusted) = ops();
        let file = sign(&licence(7), &key, "ops-2026");
        let result = verify(&with_field(&file, "signature", &[0; 64]), &trusted);
        assert!(matches!(result, Err(LicenceError::BadSignature { .. })));
    }

    #[test]
    fn non_canonical_signatures_refused() {
        let (key, trusted) = ops();
        let file = sign(&licence(7), &key, "ops-2026");
        let signature = field(&file, "signature");

        // High bit of s set: s ≥ 2^255 > ℓ.
        let mut high = signature.clone();
        high[63] |= 0x80;
        let result = verify(&with_field(&file, "signature", &high), &trusted);
        assert!(matches!(result, Err(LicenceError::BadSignature { .. })));

        // Malleated s + ℓ (the same signature in a non-canonical encoding).
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut malleated = signature.clone();
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(signature[32 + i]) + u16::from(L[i]) + carry;
            malleated[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        let result = verify(&with_field(&file, "signature", &malleated), &trusted);
        assert!(matches!(result, Err(LicenceError::BadSignature { .. })));

        // Small-order R (the identity point) with s = 0.
        let mut small_order = [0u8; 64];
        small_order[0] = 1;
        let result = verify(&with_field(&file, "signature", &small_order), &trusted);
        assert!(matches!(result, Err(LicenceError::BadSignature { .. })));

        // The untouched signature still verifies.
        assert!(verify(&with_field(&file, "signature", &signature), &trusted).is_ok());
    }

    #[test]
    fn trusted_keys_from_config() {
        let (_, a) = generate_key_pair_from_seed(OPS_SEED);
        let (_, b) = generate_key_pair_from_seed(OTHER_SEED);
        let padded = format!("{a}=");
        let trusted = TrustedKeys::from_config([
            format!("  ops-2026 : {a} "),
            format!("backup.v2_x:{b}"),
            format!("padded:{padded}"),
        ])
        .unwrap();
        assert_eq!(trusted.len(), 3);
        assert!(!trusted.is_empty());
        assert_eq!(
            trusted.key_ids().collect::<Vec<_>>(),
            ["backup.v2_x", "ops-2026", "padded"]
        );
        assert_eq!(
            trusted.get("ops-2026").unwrap().to_bytes(),
            SigningKey::from_bytes(&OPS_SEED).verifying_key().to_bytes()
        );
        assert!(trusted.get("nope").is_none());
        assert!(
            TrustedKeys::from_config(Vec::<String>::new())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn trusted_key_errors_name_the_entry() {
        let (_, good) = generate_key_pair_from_seed(OPS_SEED);
        let identity = B64.encode({
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        });
        let long_id = "k".repeat(MAX_KEY_ID_LEN + 1);
        let cases = [
            (format!("ops-2026{good}"), "expected `<key_id>:"),
            (format!(":{good}"), "empty"),
            (format!("ops 2026:{good}"), "ASCII letters"),
            (format!("{long_id}:{good}"), "longer than"),
            ("ops-2026:not base64!".to_owned(), "not valid base64url"),
            ("ops-2026:AAAA".to_owned(), "3 bytes"),
            (format!("ops-2026:{identity}"), "weak"),
        ];
        for (entry, needle) in cases {
            let err =
                TrustedKeys::from_config([format!("first:{good}"), entry.clone()]).unwrap_err();
            match &err {
                LicenceError::InvalidTrustedKey {
                    index,
                    entry: shown,
                    reason,
                } => {
                    assert_eq!(*index, 1, "{entry}");
                    assert!(reason.contains(needle), "{entry}: {reason}");
                    assert!(entry.trim().starts_with(shown.trim_end_matches('…')));
                }
                other => panic!("{entry}: {other:?}"),
            }
            assert!(err.to_string().contains("entry #1"), "{err}");
        }
        assert_eq!(
            TrustedKeys::from_config([format!("ops:{good}"), format!("ops:{good}")]),
            Err(LicenceError::DuplicateKeyId("ops".to_owned()))
        );
    }

    #[test]
    fn install_rule() {
        let current = licence(7);
        assert_eq!(check_install(None, &current), Ok(()));
        assert_eq!(check_install(Some(&current), &licence(8)), Ok(()));
        assert_eq!(check_install(Some(&current), &licence(1000)), Ok(()));
        assert_eq!(
            check_install(Some(&current), &licence(7)),
            Err(LicenceError::NotNewer { current: 7, new: 7 })
        );
        assert_eq!(
            check_install(Some(&current), &licence(6)),
            Err(LicenceError::NotNewer { current: 7, new: 6 })
        );
        let mut other = licence(8);
        other.system_name = "campus-south".to_owned();
        let err = check_install(Some(&current), &other).unwrap_err();
        assert_eq!(
            err,
            LicenceError::SystemMismatch {
                current: "campus-north".to_owned(),
                new: "campus-south".to_owned()
            }
        );
        assert!(err.to_string().contains("campus-south"));
        // A new system may install any licence.
        assert_eq!(check_install(None, &other), Ok(()));
    }

    #[test]
    fn expiry_states_at_boundaries() {
        let lic = licence(7);
        let soft = lic.soft_expiry.unwrap();
        let hard = lic.hard_expiry.unwrap();
        let second = Duration::seconds(1);
        let nano = Duration::nanoseconds(1);
        assert_eq!(state(Some(&lic), lic.issued_at), LicenceState::Valid);
        assert_eq!(state(Some(&lic), soft - nano), LicenceState::Valid);
        assert_eq!(
            state(Some(&lic), soft),
            LicenceState::SoftExpired { since: soft }
        );
        assert_eq!(
            state(Some(&lic), hard - nano),
            LicenceState::SoftExpired { since: soft }
        );
        assert_eq!(
            state(Some(&lic), hard),
            LicenceState::HardExpired { since: hard }
        );
        assert_eq!(
            state(Some(&lic), hard + Duration::days(3650)),
            LicenceState::HardExpired { since: hard }
        );
        assert_eq!(state(None, hard), LicenceState::Missing);

        // Only a hard expiry.
        let mut hard_only = licence(7);
        hard_only.soft_expiry = None;
        assert_eq!(state(Some(&hard_only), hard - second), LicenceState::Valid);
        assert_eq!(
            state(Some(&hard_only), hard),
            LicenceState::HardExpired { since: hard }
        );
        // Only a soft expiry: never hard-expired.
        let mut soft_only = licence(7);
        soft_only.hard_expiry = None;
        assert_eq!(
            state(Some(&soft_only), soft + Duration::days(36500)),
            LicenceState::SoftExpired { since: soft }
        );
        // No expiry at all.
        let mut perpetual = licence(7);
        perpetual.soft_expiry = None;
        perpetual.hard_expiry = None;
        assert_eq!(state(Some(&perpetual), at(2999, 1, 1)), LicenceState::Valid);
        // Equal soft and hard: hard wins.
        let mut same = licence(7);
        same.soft_expiry = Some(hard);
        assert_eq!(
            state(Some(&same), hard),
            LicenceState::HardExpired { since: hard }
        );
    }

    #[test]
    fn only_hard_expiry_locks_at_startup() {
        let since = at(2027, 1, 1);
        assert!(locked_at_startup(LicenceState::HardExpired { since }));
        assert!(!locked_at_startup(LicenceState::SoftExpired { since }));
        assert!(!locked_at_startup(LicenceState::Valid));
        assert!(!locked_at_startup(LicenceState::Missing));
        let lic = licence(7);
        assert!(!locked_at_startup(state(Some(&lic), at(2026, 12, 31))));
        assert!(locked_at_startup(state(Some(&lic), at(2027, 1, 1))));
    }

    #[test]
    fn state_serialises_with_a_tag() {
        let since = at(2027, 1, 1);
        assert_eq!(
            serde_json::to_value(LicenceState::HardExpired { since }).unwrap(),
            serde_json::json!({"state": "hard_expired", "since": "2027-01-01T00:00:00Z"})
        );
        assert_eq!(
            serde_json::to_value(LicenceState::Valid).unwrap(),
            serde_json::json!({"state": "valid"})
        );
    }

    #[test]
    fn feature_gating() {
        let lic = licence(7);
        let now = at(2026, 6, 1);
        assert_eq!(require(Some(&lic), now, LicenceFeature::Remote), Ok(()));
        assert_eq!(
            require(Some(&lic), now, LicenceFeature::ConnectPlus),
            Ok(())
        );
        let err = require(Some(&lic), now, LicenceFeature::LdapIntegration).unwrap_err();
        assert_eq!(
            err,
            LicenceError::FeatureMissing(LicenceFeature::LdapIntegration)
        );
        assert_eq!(
            err.to_string(),
            "the licence does not include the feature LDAP integration (ldap_integration)"
        );
        // Soft expiry only warns.
        assert_eq!(
            require(Some(&lic), at(2026, 12, 15), LicenceFeature::Remote),
            Ok(())
        );
        // Hard expiry refuses every feature, listed or not.
        for feature in LicenceFeature::ALL {
            assert_eq!(
                require(Some(&lic), at(2027, 1, 1), feature),
                Err(LicenceError::HardExpired {
                    since: at(2027, 1, 1)
                })
            );
            assert_eq!(require(None, now, feature), Err(LicenceError::Missing));
        }
        // Every listed feature, and only those, is granted.
        for feature in LicenceFeature::ALL {
            assert_eq!(
                require(Some(&lic), now, feature).is_ok(),
                lic.features.contains(&feature),
                "{feature}"
            );
        }
    }

    #[test]
    fn feature_names() {
        let distinct: BTreeSet<_> = LicenceFeature::ALL.into_iter().collect();
        assert_eq!(distinct.len(), 12);
        for feature in LicenceFeature::ALL {
            let json = serde_json::to_value(feature).unwrap();
            assert_eq!(json, feature.as_str());
            assert_eq!(
                serde_json::from_value::<LicenceFeature>(json).unwrap(),
                feature
            );
        }
        assert_eq!(LicenceFeature::ConnectPlus.as_str(), "connect_plus");
        assert_eq!(
            LicenceFeature::ExtendedAuditTrail.label(),
            "extended audit-trail and event archive"
        );
        assert!(serde_json::from_str::<LicenceFeature>("\"ConnectPlus\"").is_err());
    }

    #[test]
    fn key_pair_from_seed_is_deterministic() {
        let (a, public_a) = generate_key_pair_from_seed(OPS_SEED);
        let (b, public_b) = generate_key_pair_from_seed(OPS_SEED);
        let (_, public_c) = generate_key_pair_from_seed(OTHER_SEED);
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(public_a, public_b);
        assert_ne!(public_a, public_c);
        assert_eq!(public_a.len(), 43);
        assert_eq!(B64.decode(&public_a).unwrap(), a.verifying_key().to_bytes());
        // Ed25519 signing is deterministic, so the file is too.
        assert_eq!(
            sign(&licence(7), &a, "ops-2026"),
            sign(&licence(7), &b, "ops-2026")
        );
    }

    #[test]
    fn long_untrusted_text_is_clipped_in_errors() {
        let (key, trusted) = ops();
        let long_id = "x".repeat(1000);
        let file = sign(&licence(7), &key, &long_id);
        match verify(file.as_bytes(), &trusted) {
            Err(LicenceError::UnknownKeyId(shown)) => {
                assert!(shown.chars().count() <= 81, "{}", shown.len())
            }
            other => panic!("{other:?}"),
        }
    }
}
