//! The key revocation list a remote PD enforces: the lost keys of one locking system, with
//! when the list was issued and until when a PD may rely on it, signed with the gateway's
//! Ed25519 key so a PD can verify it offline.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::DevicesError;

/// A key a PD must refuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedKey {
    pub key_id: i64,
    pub marking: String,
}

/// The list as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRevocationList {
    /// Format version: 1.
    pub version: u32,
    pub system_id: i64,
    pub issued_at: DateTime<Utc>,
    /// After this a PD stops offline updates until it has a newer list.
    pub valid_until: DateTime<Utc>,
    /// Sorted by key id.
    pub keys: Vec<RevokedKey>,
}

/// A signed list as a PD receives it: the list's exact JSON bytes (base64) and the Ed25519
/// signature over them (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedKrl {
    pub list: String,
    pub signature: String,
}

/// The gateway's KRL signing key, from 32 secret bytes.
pub fn signing_key(secret: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(secret)
}

/// The public key PDs verify lists with, base64.
pub fn public_key(key: &SigningKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes())
}

/// Signs the list.
pub fn sign(list: &KeyRevocationList, key: &SigningKey) -> Result<SignedKrl, DevicesError> {
    let bytes = serde_json::to_vec(list)
        .map_err(|e| DevicesError::Certificate(format!("key revocation list: {e}")))?;
    let signature = key.sign(&bytes);
    let b64 = &base64::engine::general_purpose::STANDARD;
    Ok(SignedKrl {
        list: b64.encode(&bytes),
        signature: b64.encode(signature.to_bytes()),
    })
}

/// Verifies a signed list with the gateway's public key (base64) and returns it: what a PD
/// does before it trusts a list.
pub fn verify(signed: &SignedKrl, public_key: &str) -> Result<KeyRevocationList, DevicesError> {
    let bad = |m: &str| DevicesError::Certificate(format!("key revocation list: {m}"));
    let b64 = &base64::engine::general_purpose::STANDARD;
    let key: [u8; 32] = b64
        .decode(public_key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| bad("the public key is not 32 bytes of base64"))?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("not an Ed25519 public key"))?;
    let bytes = b64
        .decode(&signed.list)
        .map_err(|_| bad("the list is not base64"))?;
    let signature: [u8; 64] = b64
        .decode(&signed.signature)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| bad("the signature is not 64 bytes of base64"))?;
    key.verify(&bytes, &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| bad("the signature does not verify"))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(&format!("unreadable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_list_verifies_and_a_changed_one_does_not() {
        let key = signing_key(&[7; 32]);
        let list = KeyRevocationList {
            version: 1,
            system_id: 1,
            issued_at: Utc::now(),
            valid_until: Utc::now() + chrono::Duration::hours(24),
            keys: vec![RevokedKey {
                key_id: 5,
                marking: "K-5".into(),
            }],
        };
        let signed = sign(&list, &key).unwrap();
        assert_eq!(verify(&signed, &public_key(&key)).unwrap(), list);
        // Another key, a changed list, a changed signature: refused.
        assert!(verify(&signed, &public_key(&signing_key(&[8; 32]))).is_err());
        let mut other = list.clone();
        other.keys.clear();
        let forged = SignedKrl {
            list: sign(&other, &key).unwrap().list,
            signature: signed.signature.clone(),
        };
        assert!(verify(&forged, &public_key(&key)).is_err());
        let mut sig = base64::engine::general_purpose::STANDARD
            .decode(&signed.signature)
            .unwrap();
        sig[0] ^= 1;
        let tampered = SignedKrl {
            list: signed.list.clone(),
            signature: base64::engine::general_purpose::STANDARD.encode(sig),
        };
        assert!(verify(&tampered, &public_key(&key)).is_err());
    }
}
