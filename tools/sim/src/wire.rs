//! The PD wire protocol as `docs/pds/protocol.md` writes it, implemented here on its own
//! (not shared with the plugins), so the simulator checks the document as much as the
//! plugins: a 4-byte big-endian length, then an 8-byte header (magic, version, message
//! type, message id) and a JSON object.

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Message types (`docs/pds/protocol.md`, "Messages").
pub mod kind {
    pub const HELLO: u8 = 0x01;
    pub const HEARTBEAT: u8 = 0x02;
    pub const KEY_INSERTED: u8 = 0x03;
    pub const JOB_REPORT: u8 = 0x04;
    pub const AUDIT_TRAIL: u8 = 0x05;
    pub const LOG: u8 = 0x06;
    pub const KRL_REQUEST: u8 = 0x07;
    pub const CKEY_INSERTED: u8 = 0x08;
    pub const RENEW: u8 = 0x09;
    pub const WELCOME: u8 = 0x81;
    pub const SETTINGS: u8 = 0x82;
    pub const JOBS: u8 = 0x83;
    pub const REPORT_ACK: u8 = 0x84;
    pub const AUDIT_ACK: u8 = 0x85;
    pub const LOG_ACK: u8 = 0x86;
    pub const KRL: u8 = 0x87;
    pub const CERTIFICATE: u8 = 0x89;
    pub const ERROR: u8 = 0xFF;
}

/// A PD generation as the wire sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    WallGen1,
    WallGen2,
    Mobile,
}

impl Generation {
    pub const ALL: [Generation; 3] = [
        Generation::WallGen1,
        Generation::WallGen2,
        Generation::Mobile,
    ];

    /// The two bytes its frames start with.
    pub fn magic(self) -> [u8; 2] {
        match self {
            Generation::WallGen1 => *b"G1",
            Generation::WallGen2 => *b"G2",
            Generation::Mobile => *b"PM",
        }
    }

    /// The protocol versions its PDs speak.
    pub fn versions(self) -> &'static [u8] {
        match self {
            Generation::WallGen1 | Generation::Mobile => &[1],
            Generation::WallGen2 => &[1, 2],
        }
    }

    /// The PD `type` of the REST API.
    pub fn api_type(self) -> &'static str {
        match self {
            Generation::WallGen1 => "wall_gen1",
            Generation::WallGen2 => "wall_gen2",
            Generation::Mobile => "cliq_mobile",
        }
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub magic: [u8; 2],
    pub version: u8,
    pub kind: u8,
    pub id: u32,
    pub body: Value,
}

impl Message {
    /// The frame's bytes (without the transport's length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.magic);
        out.push(self.version);
        out.push(self.kind);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(self.body.to_string().as_bytes());
        out
    }

    /// Reads a frame's bytes.
    pub fn decode(bytes: &[u8]) -> anyhow::Result<Message> {
        if bytes.len() < 8 {
            bail!("a frame of {} bytes has no header", bytes.len());
        }
        let body = if bytes.len() == 8 {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes[8..]).context("the body is not JSON")?
        };
        Ok(Message {
            magic: [bytes[0], bytes[1]],
            version: bytes[2],
            kind: bytes[3],
            id: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            body,
        })
    }
}

/// Writes one length-prefixed frame.
pub async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(4 + bytes.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
    w.write_all(&buf).await?;
    w.flush().await
}

/// Writes only the first `cut` bytes of a length-prefixed frame (a connection dropped
/// mid-frame, for fault injection).
pub async fn write_partial_frame<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    bytes: &[u8],
    cut: usize,
) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(4 + bytes.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
    buf.truncate(cut.min(buf.len()));
    w.write_all(&buf).await?;
    w.flush().await
}

/// Reads one length-prefixed frame of at most `max` bytes; `None` at a clean end.
pub async fn read_frame<R: AsyncReadExt + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::other(format!("a frame of {len} bytes")));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

/// The hash a PD reports for a program: SHA-256 (lower-case hex) of its JSON with the
/// members of every object sorted by name and no white space.
pub fn program_hash(program: &Value) -> String {
    use sha2::{Digest, Sha256};
    let mut text = String::new();
    canonical(program, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// `v` as JSON with object members sorted by name, whatever order the parser kept.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_back() {
        let m = Message {
            magic: *b"G2",
            version: 2,
            kind: kind::JOBS,
            id: 7,
            body: serde_json::json!({"b": 1, "a": [true]}),
        };
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        assert!(Message::decode(b"G2\x01").is_err());
    }

    #[test]
    fn the_program_hash_sorts_members() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":1}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":1,"y":2},"b":1}"#).unwrap();
        assert_eq!(program_hash(&a), program_hash(&b));
        assert_eq!(program_hash(&a).len(), 64);
    }
}
