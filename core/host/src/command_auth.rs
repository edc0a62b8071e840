//! Authentication of inbound MQTT commands (`event-sink.handle-command`): each
//! command travels in a signed envelope, HMAC-SHA256 with the bridge's own
//! secret over a canonical form that names the topic, a timestamp, a nonce
//! and the SHA-256 of the command, checked against a timestamp window and a
//! replay cache of the nonces seen within the window.
//!
//! The envelope (a JSON object, nothing else in it):
//!
//! ```json
//! {"v":1,"ts":1767225600,"nonce":"n-0123456789abcdef","body":"{\"id\":\"c-1\",\"op\":\"discovery\"}","sig":"…64 hex…"}
//! ```
//!
//! - `v`: the scheme version, `1`;
//! - `ts`: when the command was signed, Unix seconds;
//! - `nonce`: 16-64 characters `[A-Za-z0-9._-]`, never reused with the same secret;
//! - `body`: the command (the JSON document the bridge takes) as a string;
//! - `sig`: lowercase hex of `HMAC-SHA256(secret, canonical)` where `canonical` is
//!   the UTF-8 bytes of `lockgate-cmd-v1 LF topic LF ts LF nonce LF hex(SHA-256(body))`
//!   (`ts` in decimal without leading zeros, `hex` lowercase, no trailing LF).
//!
//! `docs/connectors/mqtt.md` gives the same with a worked example that
//! [`tests::documented_test_vector`] checks.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The first line of the canonical form (the scheme and its version).
pub const SCHEME: &str = "lockgate-cmd-v1";
/// Shortest secret accepted, bytes (HMAC-SHA256 wants at least 256 bits of key).
pub const MIN_SECRET_BYTES: usize = 32;
/// Longest envelope accepted, bytes (a 64 KiB command escaped, plus the rest).
pub const MAX_ENVELOPE_BYTES: usize = 160 << 10;
/// Longest command (`body`) accepted, bytes.
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// Nonces remembered per bridge at most; more commands within one window are refused.
pub const MAX_REMEMBERED_NONCES: usize = 100_000;

type HmacSha256 = Hmac<Sha256>;

/// Why a command was refused, as the answer's `error.reason` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an envelope: the payload is not JSON, or a field is missing or malformed.
    Unsigned,
    /// The envelope's version is not `1`.
    UnknownVersion,
    /// The topic cannot be signed (it contains a line feed).
    BadTopic,
    /// The signature does not match (wrong secret, or anything signed was changed).
    BadSignature,
    /// `ts` is older than the window.
    Expired,
    /// `ts` is further ahead than the window.
    FromTheFuture,
    /// The nonce was seen within the window.
    Replayed,
    /// Too many commands within one window (the replay cache is full).
    TooMany,
}

impl Refusal {
    /// The short reason, e.g. `bad-signature`.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::UnknownVersion => "unknown-version",
            Refusal::BadTopic => "bad-topic",
            Refusal::BadSignature => "bad-signature",
            Refusal::Expired => "expired",
            Refusal::FromTheFuture => "from-the-future",
            Refusal::Replayed => "replayed",
            Refusal::TooMany => "too-many",
        }
    }

    /// What an integrator reads (never the secret or the expected signature).
    pub fn message(self, window_secs: u64) -> String {
        match self {
            Refusal::Unsigned => format!(
                "commands must be signed: a JSON envelope {{v, ts, nonce, body, sig}} of at most {MAX_ENVELOPE_BYTES} bytes, body at most {MAX_BODY_BYTES} bytes, nonce 16-64 characters [A-Za-z0-9._-], sig 64 lowercase hex digits (docs/connectors/mqtt.md)"
            ),
            Refusal::UnknownVersion => "unknown envelope version (expected v = 1)".into(),
            Refusal::BadTopic => "the command topic must not contain a line feed".into(),
            Refusal::BadSignature => {
                "the signature does not match this bridge's secret, topic, ts, nonce and body"
                    .into()
            }
            Refusal::Expired => format!("ts is more than {window_secs} s in the past"),
            Refusal::FromTheFuture => format!("ts is more than {window_secs} s in the future"),
            Refusal::Replayed => "this nonce was already used".into(),
            Refusal::TooMany => "too many commands within the time window; retry later".into(),
        }
    }
}

/// The envelope as it arrives.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    v: u32,
    ts: i64,
    nonce: String,
    body: String,
    sig: String,
}

/// A verified command: its body (what the bridge receives) and nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The command, as signed.
    pub body: Vec<u8>,
    /// The envelope's nonce.
    pub nonce: String,
}

/// The canonical form that is signed (see the module documentation).
pub fn canonical(topic: &str, ts: i64, nonce: &str, body: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(body));
    format!("{SCHEME}\n{topic}\n{ts}\n{nonce}\n{digest}")
}

/// The signature of a command: lowercase hex of HMAC-SHA256 over [`canonical`].
pub fn sign(secret: &[u8], topic: &str, ts: i64, nonce: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(canonical(topic, ts, nonce, body).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A complete envelope for `body` on `topic` (what an integrator publishes).
pub fn envelope(secret: &[u8], topic: &str, ts: i64, nonce: &str, body: &str) -> String {
    serde_json::json!({
        "v": 1,
        "ts": ts,
        "nonce": nonce,
        "body": body,
        "sig": sign(secret, topic, ts, nonce, body.as_bytes()),
    })
    .to_string()
}

fn valid_nonce(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The verifier of one bridge: its secret, the window and the nonces seen.
pub struct CommandAuth {
    secret: Vec<u8>,
    window_secs: u64,
    /// Nonce → the Unix second after which it may be forgotten (its `ts` plus the window).
    seen: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for CommandAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandAuth")
            .field("secret", &"<redacted>")
            .field("window_secs", &self.window_secs)
            .finish_non_exhaustive()
    }
}

impl CommandAuth {
    /// A verifier with `secret` (at least [`MIN_SECRET_BYTES`]) and a window of
    /// `window_secs` either side of the gateway's clock.
    pub fn new(secret: &[u8], window_secs: u64) -> Result<CommandAuth, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "a command secret must be at least {MIN_SECRET_BYTES} bytes"
            ));
        }
        Ok(CommandAuth {
            secret: secret.to_vec(),
            window_secs,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// The window, seconds.
    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }

    /// Checks the envelope `payload` that arrived on `topic` at `now` (Unix
    /// seconds) and remembers its nonce; the command inside when it holds.
    pub fn verify(&self, topic: &str, payload: &[u8], now: i64) -> Result<Verified, Refusal> {
        if payload.len() > MAX_ENVELOPE_BYTES {
            return Err(Refusal::Unsigned);
        }
        let env: Envelope = serde_json::from_slice(payload).map_err(|_| Refusal::Unsigned)?;
        if env.v != 1 {
            return Err(Refusal::UnknownVersion);
        }
        if env.body.len() > MAX_BODY_BYTES
            || !valid_nonce(&env.nonce)
            || env.sig.len() != 64
            || !env
                .sig
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(Refusal::Unsigned);
        }
        if topic.contains('\n') {
            return Err(Refusal::BadTopic);
        }
        let sig = hex::decode(&env.sig).map_err(|_| Refusal::Unsigned)?;
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(canonical(topic, env.ts, &env.nonce, env.body.as_bytes()).as_bytes());
        // Constant time.
        mac.verify_slice(&sig).map_err(|_| Refusal::BadSignature)?;
        let window = i64::try_from(self.window_secs).unwrap_or(i64::MAX);
        if env.ts < now.saturating_sub(window) {
            return Err(Refusal::Expired);
        }
        if env.ts > now.saturating_add(window) {
            return Err(Refusal::FromTheFuture);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains_key(&env.nonce) {
            return Err(Refusal::Replayed);
        }
        if seen.len() >= MAX_REMEMBERED_NONCES {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= MAX_REMEMBERED_NONCES {
                return Err(Refusal::TooMany);
            }
        }
        seen.insert(env.nonce.clone(), env.ts.saturating_add(window));
        Ok(Verified {
            body: env.body.into_bytes(),
            nonce: env.nonce,
        })
    }
}

/// The current time, Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const TOPIC: &str = "lockgate/site-a/cmd/ops";
    const BODY: &str = r#"{"id":"c-1","op":"discovery"}"#;
    const NONCE: &str = "n-0123456789abcdef";
    const TS: i64 = 1_767_225_600;

    /// The worked example of `docs/connectors/mqtt.md`: its digest, canonical
    /// form and signature are what this code computes, and its envelope verifies.
    #[test]
    fn documented_test_vector() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/connectors/mqtt.md"
        ))
        .expect("docs/connectors/mqtt.md");
        let digest = hex::encode(Sha256::digest(BODY.as_bytes()));
        assert_eq!(
            digest,
            "2887f36d7d9b66ea2bea1b3c13e8595277498001a79b63514eb8b2ef3a1c75db"
        );
        assert!(
            doc.contains(&format!("body: `{digest}`")),
            "the doc's digest"
        );
        let sig = sign(SECRET, TOPIC, TS, NONCE, BODY.as_bytes());
        assert_eq!(
            sig,
            "40d1956622a8b6a9c507f0508752c0db221e7ab931f6851299a0a2ec244a7a82"
        );
        assert!(
            doc.contains(&format!("signature: `{sig}`")),
            "the doc's signature"
        );
        let lines: Vec<&str> = doc.lines().map(str::trim).collect();
        let canon = canonical(TOPIC, TS, NONCE, BODY.as_bytes());
        let canon_lines: Vec<&str> = canon.lines().collect();
        assert!(
            lines.windows(5).any(|w| w == canon_lines.as_slice()),
            "the doc shows the canonical form {canon:?}"
        );
        let example = lines
            .iter()
            .find(|l| l.starts_with(r#"{"v":1,"ts":"#))
            .expect("the doc shows the envelope");
        let auth = CommandAuth::new(SECRET, 120).unwrap();
        let v = auth.verify(TOPIC, example.as_bytes(), TS + 5).unwrap();
        assert_eq!(v.body, BODY.as_bytes());
        assert_eq!(v.nonce, NONCE);
        // What `envelope` builds verifies the same way.
        let built = envelope(SECRET, TOPIC, TS, "n-fedcba9876543210", BODY);
        assert!(auth.verify(TOPIC, built.as_bytes(), TS).is_ok());
    }

    #[test]
    fn every_tampering_is_refused() {
        let auth = CommandAuth::new(SECRET, 60).unwrap();
        let good = envelope(SECRET, TOPIC, TS, NONCE, BODY);
        let check = |topic: &str, p: &str, now: i64| auth.verify(topic, p.as_bytes(), now);
        assert_eq!(check(TOPIC, BODY, TS), Err(Refusal::Unsigned));
        let other = envelope(b"another secret of 32 bytes or so!", TOPIC, TS, NONCE, BODY);
        assert_eq!(check(TOPIC, &other, TS), Err(Refusal::BadSignature));
        let tampered = good.replace("discovery", "sync-full");
        assert_eq!(check(TOPIC, &tampered, TS), Err(Refusal::BadSignature));
        assert_eq!(
            check("lockgate/site-b/cmd/ops", &good, TS),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            check(TOPIC, &good.replace("1767225600", "1767225601"), TS),
            Err(Refusal::BadSignature)
        );
        assert_eq!(check(TOPIC, &good, TS + 61), Err(Refusal::Expired));
        assert_eq!(check(TOPIC, &good, TS - 61), Err(Refusal::FromTheFuture));
        assert!(check(TOPIC, &good, TS + 60).is_ok());
        assert_eq!(check(TOPIC, &good, TS), Err(Refusal::Replayed));
        assert_eq!(
            check(TOPIC, &good.replace("\"v\":1", "\"v\":2"), TS),
            Err(Refusal::UnknownVersion)
        );
        assert!(CommandAuth::new(b"short", 60).is_err());
        assert!(!format!("{auth:?}").contains("0123456789abcdef"));
    }
}
