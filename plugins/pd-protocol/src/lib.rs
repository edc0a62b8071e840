//! The PD wire protocol the lockgate device-protocol plugins share (`docs/pds/protocol.md`):
//! an 8-byte header (magic, version, message type, message id) and a JSON body, inside the
//! listener's length-prefixed frames. Each generation's plugin is a [`Generation`]: its
//! magic, the versions it speaks, and its quirks (what it adds to the settings it sends,
//! which keys it lets update offline, whether several keys update at once). This crate
//! turns frames into calls of the host's `device` interface, which acts for the PD of the
//! connection; it changes nothing itself.

use lockgate_plugin_sdk::Error;
use lockgate_plugin_sdk::device::{
    self, AuditEntry, CylinderAuditEntry, DeliverableJob, HeartbeatReport, JobOutcome, JobReport,
    ReportTaken,
};
use lockgate_plugin_sdk::device_handler::{Device, FrameAnswer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Bytes of the header before the JSON body.
pub const HEADER_BYTES: usize = 8;

/// The message types (`docs/pds/protocol.md`, "Messages").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    Hello = 0x01,
    Heartbeat = 0x02,
    KeyInserted = 0x03,
    JobReport = 0x04,
    AuditTrail = 0x05,
    Log = 0x06,
    KrlRequest = 0x07,
    CKeyInserted = 0x08,
    Renew = 0x09,
    Welcome = 0x81,
    Settings = 0x82,
    Jobs = 0x83,
    ReportAck = 0x84,
    AuditAck = 0x85,
    LogAck = 0x86,
    Krl = 0x87,
    Certificate = 0x89,
    Error = 0xFF,
}

impl MessageType {
    fn from_byte(b: u8) -> Option<Self> {
        use MessageType::*;
        Some(match b {
            0x01 => Hello,
            0x02 => Heartbeat,
            0x03 => KeyInserted,
            0x04 => JobReport,
            0x05 => AuditTrail,
            0x06 => Log,
            0x07 => KrlRequest,
            0x08 => CKeyInserted,
            0x09 => Renew,
            0x81 => Welcome,
            0x82 => Settings,
            0x83 => Jobs,
            0x84 => ReportAck,
            0x85 => AuditAck,
            0x86 => LogAck,
            0x87 => Krl,
            0x89 => Certificate,
            0xFF => Error,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub version: u8,
    pub kind: MessageType,
    pub message_id: u32,
    pub body: Value,
}

/// Why a frame cannot be read: the code of the `ERROR` message and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
    /// The connection is closed after the error is sent.
    pub close: bool,
}

impl FrameError {
    fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        FrameError {
            code,
            message: message.into(),
            close: true,
        }
    }
    fn refused(code: &'static str, message: impl Into<String>) -> Self {
        FrameError {
            code,
            message: message.into(),
            close: false,
        }
    }
}

/// Encodes one frame.
pub fn encode(
    magic: [u8; 2],
    version: u8,
    kind: MessageType,
    message_id: u32,
    body: &Value,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&magic);
    out.push(version);
    out.push(kind as u8);
    out.extend_from_slice(&message_id.to_be_bytes());
    out.extend_from_slice(body.to_string().as_bytes());
    out
}

/// Decodes one frame of a generation with `magic`. The body must be a JSON object.
pub fn decode(magic: [u8; 2], bytes: &[u8]) -> Result<Frame, FrameError> {
    if bytes.len() < HEADER_BYTES {
        return Err(FrameError::fatal(
            "bad-frame",
            format!(
                "a frame has at least {HEADER_BYTES} bytes, this one {}",
                bytes.len()
            ),
        ));
    }
    if bytes[..2] != magic {
        return Err(FrameError::fatal(
            "bad-frame",
            format!(
                "the frame starts with {:02x}{:02x}, not this generation's magic {}",
                bytes[0],
                bytes[1],
                String::from_utf8_lossy(&magic)
            ),
        ));
    }
    let kind = MessageType::from_byte(bytes[3]).ok_or_else(|| {
        FrameError::fatal(
            "bad-frame",
            format!("unknown message type 0x{:02x}", bytes[3]),
        )
    })?;
    let message_id = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let body_bytes = &bytes[HEADER_BYTES..];
    let body: Value = if body_bytes.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body_bytes)
            .map_err(|e| FrameError::fatal("bad-frame", format!("the body is not JSON: {e}")))?
    };
    if !body.is_object() {
        return Err(FrameError::fatal(
            "bad-frame",
            "the body is not a JSON object",
        ));
    }
    Ok(Frame {
        version: bytes[2],
        kind,
        message_id,
        body,
    })
}

/// One PD generation: what differs between the plugins.
pub trait Generation {
    /// The two bytes every frame of this generation starts with.
    const MAGIC: [u8; 2];
    /// The protocol versions this plugin speaks, lowest first.
    const VERSIONS: &'static [u8];
    /// The device generation this plugin serves (`device.generation`).
    const GENERATION: &'static str;

    /// Checks what the PD said in its heartbeat (e.g. a boot loader version).
    fn check_heartbeat(_version: u8, _hb: &HeartbeatBody) -> Result<(), FrameError> {
        Ok(())
    }

    /// The members of the PD's settings this generation understands; `SETTINGS` carries
    /// only these.
    const SETTINGS: &'static [&'static str];

    /// Fills in or changes settings before they are sent (defaults the generation needs).
    fn adjust_settings(_settings: &mut Value) {}

    /// The keys this PD may update offline: `"all"`, or a list of key ids.
    fn offline_keys(_device: &Device) -> Result<Value, Error> {
        Ok(json!("all"))
    }

    /// The `SETTINGS` body sent back at heartbeat, from the core's answer.
    fn settings_body(
        device: &Device,
        answer: &device::HeartbeatAnswer,
        settings: Value,
        krl: Value,
    ) -> Result<Value, Error> {
        let mut settings = only(settings, Self::SETTINGS);
        Self::adjust_settings(&mut settings);
        Ok(json!({
            "interval_minutes": answer.interval_minutes,
            "settings": settings,
            "krl": krl,
            "offline_keys": Self::offline_keys(device)?,
        }))
    }

    /// The keys of one `KEY_INSERTED`: one, or (where the generation updates keys in
    /// parallel) several.
    fn inserted_keys(version: u8, body: &KeyInsertedBody) -> Result<Vec<u64>, FrameError> {
        let _ = version;
        match (&body.key_id, &body.key_ids) {
            (Some(k), None) => Ok(vec![*k]),
            _ => Err(FrameError::refused(
                "bad-message",
                "KEY_INSERTED names one key: `key_id`",
            )),
        }
    }

    /// Called after the core answered a key's jobs at this PD (an online update).
    fn key_updated(_device: &Device, _key_id: u64) -> Result<(), Error> {
        Ok(())
    }
}

/// `HELLO`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloBody {
    /// The versions the PD speaks.
    pub versions: Vec<u8>,
}

/// `HEARTBEAT`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatBody {
    pub firmware: Option<String>,
    pub bootloader: Option<String>,
}

/// `KEY_INSERTED`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInsertedBody {
    pub key_id: Option<u64>,
    /// Several keys at once (generations that update in parallel).
    pub key_ids: Option<Vec<u64>>,
}

/// `JOB_REPORT`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobReportBody {
    pub job_id: u64,
    pub outcome: ReportOutcome,
    pub program_hash: Option<String>,
    pub reason: Option<String>,
    pub report_key: String,
    /// A C-key's report of a cylinder job: the cylinder's audit trail it read there.
    #[serde(default)]
    pub cylinder_audit_trail: Vec<CylinderAuditRecord>,
}

/// `CKEY_INSERTED`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CKeyInsertedBody {
    pub c_key_id: u64,
}

/// `RENEW`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    pub csr_pem: String,
}

/// One record of a cylinder's audit trail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CylinderAuditRecord {
    pub key_id: u64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub opened: bool,
}

/// What became of a job.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReportOutcome {
    Done,
    Failed,
}

/// `AUDIT_TRAIL`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditTrailBody {
    pub key_id: u64,
    pub entries: Vec<AuditRecord>,
}

/// One audit-trail record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    pub cylinder_id: u64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub opened: bool,
}

/// `LOG`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogBody {
    pub lines: Vec<String>,
}

/// The connection's state between frames (the `session` bytes): the negotiated version,
/// or nothing before `HELLO`.
fn negotiated(session: &[u8]) -> Option<u8> {
    session.first().copied()
}

fn body<T: serde::de::DeserializeOwned>(frame: &Frame) -> Result<T, FrameError> {
    serde_json::from_value(frame.body.clone())
        .map_err(|e| FrameError::refused("bad-message", format!("{:?} body: {e}", frame.kind)))
}

/// How a core refusal reads on the wire: a refusal keeps the connection, an unavailable
/// core asks the PD to retry.
fn core_error(e: Error) -> FrameError {
    match e {
        Error::Invalid(m) | Error::NotFound(m) => FrameError::refused("refused", m),
        Error::Denied(m) => FrameError::fatal("denied", m),
        Error::Unavailable(m) => FrameError::refused("unavailable", m),
        Error::Other(m) => FrameError::refused("failed", m),
    }
}

/// Handles one frame for generation `G`: the device-handler's `handle-frame`.
pub fn handle_frame<G: Generation>(
    device: Device,
    session: Vec<u8>,
    bytes: Vec<u8>,
) -> Result<FrameAnswer, Error> {
    let version = negotiated(&session).unwrap_or(G::VERSIONS[0]);
    let frame = match decode(G::MAGIC, &bytes) {
        Ok(f) => f,
        Err(e) => return Ok(error_answer::<G>(version, 0, e, session)),
    };
    match answer::<G>(&device, negotiated(&session), &frame) {
        Ok((frames, session_out)) => Ok(FrameAnswer {
            frames,
            session: session_out.unwrap_or(session),
            close: false,
        }),
        Err(e) => Ok(error_answer::<G>(version, frame.message_id, e, session)),
    }
}

fn error_answer<G: Generation>(
    version: u8,
    id: u32,
    e: FrameError,
    session: Vec<u8>,
) -> FrameAnswer {
    FrameAnswer {
        frames: vec![encode(
            G::MAGIC,
            version,
            MessageType::Error,
            id,
            &json!({"code": e.code, "message": e.message}),
        )],
        session,
        close: e.close,
    }
}

type Answer = (Vec<Vec<u8>>, Option<Vec<u8>>);

fn answer<G: Generation>(
    device: &Device,
    version: Option<u8>,
    frame: &Frame,
) -> Result<Answer, FrameError> {
    if frame.kind == MessageType::Hello {
        if version.is_some() {
            return Err(FrameError::fatal("order", "HELLO was sent already"));
        }
        let hello: HelloBody = body(frame)?;
        let Some(v) = G::VERSIONS
            .iter()
            .rev()
            .find(|v| hello.versions.contains(v))
            .copied()
        else {
            return Err(FrameError::fatal(
                "version",
                format!(
                    "no common protocol version: this gateway speaks {:?} for {}",
                    G::VERSIONS,
                    G::GENERATION
                ),
            ));
        };
        let out = encode(
            G::MAGIC,
            v,
            MessageType::Welcome,
            frame.message_id,
            &json!({"version": v, "pd_id": device.pd_id, "marking": device.marking}),
        );
        return Ok((vec![out], Some(vec![v])));
    }
    let Some(version) = version else {
        return Err(FrameError::fatal("order", "the first frame must be HELLO"));
    };
    if frame.version != version {
        return Err(FrameError::fatal(
            "version",
            format!(
                "this connection speaks version {version}, the frame says {}",
                frame.version
            ),
        ));
    }
    let reply =
        |kind: MessageType, body: Value| encode(G::MAGIC, version, kind, frame.message_id, &body);
    let frames = match frame.kind {
        MessageType::Heartbeat => {
            let hb: HeartbeatBody = body(frame)?;
            G::check_heartbeat(version, &hb)?;
            let answer = device::heartbeat(&HeartbeatReport {
                firmware: hb.firmware,
                bootloader: hb.bootloader,
            })
            .map_err(core_error)?;
            let settings: Value = serde_json::from_str(&answer.settings)
                .map_err(|e| FrameError::refused("failed", format!("settings: {e}")))?;
            let krl: Value = serde_json::from_str(&answer.revocation_list)
                .map_err(|e| FrameError::refused("failed", format!("revocation list: {e}")))?;
            let out = G::settings_body(device, &answer, settings, krl).map_err(core_error)?;
            vec![reply(MessageType::Settings, out)]
        }
        MessageType::KeyInserted => {
            let b: KeyInsertedBody = body(frame)?;
            let keys = G::inserted_keys(version, &b)?;
            let mut frames = Vec::with_capacity(keys.len());
            for key_id in keys {
                let jobs = device::key_inserted(key_id).map_err(core_error)?;
                G::key_updated(device, key_id).map_err(core_error)?;
                frames.push(reply(
                    MessageType::Jobs,
                    json!({"key_id": key_id, "jobs": jobs.iter().map(job_json).collect::<Vec<_>>()}),
                ));
            }
            frames
        }
        MessageType::CKeyInserted => {
            let b: CKeyInsertedBody = body(frame)?;
            let jobs = device::c_key_inserted(b.c_key_id).map_err(core_error)?;
            vec![reply(
                MessageType::Jobs,
                json!({"c_key_id": b.c_key_id, "jobs": jobs.iter().map(job_json).collect::<Vec<_>>()}),
            )]
        }
        MessageType::JobReport => {
            let b: JobReportBody = body(frame)?;
            let outcome = match (b.outcome, b.program_hash, b.reason) {
                (ReportOutcome::Done, Some(hash), None) => JobOutcome::Done(hash),
                (ReportOutcome::Failed, None, Some(reason)) => JobOutcome::Failed(reason),
                (ReportOutcome::Done, _, _) => {
                    return Err(FrameError::refused(
                        "bad-message",
                        "a `done` report carries `program_hash` and no `reason`",
                    ));
                }
                (ReportOutcome::Failed, _, _) => {
                    return Err(FrameError::refused(
                        "bad-message",
                        "a `failed` report carries `reason` and no `program_hash`",
                    ));
                }
            };
            let trail = b
                .cylinder_audit_trail
                .iter()
                .map(|r| CylinderAuditEntry {
                    key_id: r.key_id,
                    at: r.at,
                    opened: r.opened,
                })
                .collect();
            let taken = device::report_job(&JobReport {
                job_id: b.job_id,
                outcome,
                report_key: b.report_key,
                cylinder_audit_trail: trail,
            })
            .map_err(core_error)?;
            let taken = match taken {
                ReportTaken::Applied => "applied",
                ReportTaken::AlreadyApplied => "already_applied",
            };
            vec![reply(
                MessageType::ReportAck,
                json!({"job_id": b.job_id, "taken": taken}),
            )]
        }
        MessageType::AuditTrail => {
            let b: AuditTrailBody = body(frame)?;
            let entries: Vec<AuditEntry> = b
                .entries
                .iter()
                .map(|r| AuditEntry {
                    cylinder_id: r.cylinder_id,
                    at: r.at,
                    opened: r.opened,
                })
                .collect();
            let new = device::upload_audit_trail(b.key_id, &entries).map_err(core_error)?;
            vec![reply(
                MessageType::AuditAck,
                json!({"key_id": b.key_id, "new": new}),
            )]
        }
        MessageType::Log => {
            let b: LogBody = body(frame)?;
            device::upload_log(&b.lines).map_err(core_error)?;
            vec![reply(MessageType::LogAck, json!({"lines": b.lines.len()}))]
        }
        MessageType::Renew => {
            let b: RenewBody = body(frame)?;
            let c = device::renew_certificate(&b.csr_pem).map_err(core_error)?;
            vec![reply(
                MessageType::Certificate,
                json!({"certificate_pem": c.certificate_pem, "not_after": c.not_after, "ca_pem": c.ca_pem}),
            )]
        }
        MessageType::KrlRequest => {
            let krl = device::revocation_list().map_err(core_error)?;
            let krl: Value = serde_json::from_str(&krl)
                .map_err(|e| FrameError::refused("failed", format!("revocation list: {e}")))?;
            vec![reply(MessageType::Krl, json!({"krl": krl}))]
        }
        other => {
            return Err(FrameError::fatal(
                "bad-frame",
                format!("{other:?} is sent by the gateway, not by a PD"),
            ));
        }
    };
    Ok((frames, None))
}

/// `settings` with only the members named in `keep` (what a generation's PDs understand).
pub fn only(settings: Value, keep: &[&str]) -> Value {
    match settings {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .collect(),
        ),
        other => other,
    }
}

fn job_json(j: &DeliverableJob) -> Value {
    json!({
        "job_id": j.id,
        "kind": j.kind,
        "program": serde_json::from_str::<Value>(&j.program).unwrap_or(Value::Null),
        "program_hash": j.program_hash,
    })
}

/// Defines a device-protocol plugin for generation `$gen` named `$name`.
#[macro_export]
macro_rules! device_plugin {
    ($plugin:ident, $gen:ty, $name:expr, $description:expr) => {
        struct $plugin;

        impl lockgate_plugin_sdk::plugin::Guest for $plugin {
            fn describe() -> lockgate_plugin_sdk::plugin::PluginInfo {
                lockgate_plugin_sdk::plugin::PluginInfo {
                    name: $name.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    description: $description.into(),
                }
            }
        }

        impl lockgate_plugin_sdk::device_handler::Guest for $plugin {
            fn handle_frame(
                device: lockgate_plugin_sdk::device_handler::Device,
                session: Vec<u8>,
                frame: Vec<u8>,
            ) -> Result<lockgate_plugin_sdk::device_handler::FrameAnswer, lockgate_plugin_sdk::Error> {
                $crate::handle_frame::<$gen>(device, session, frame)
            }
        }

        lockgate_plugin_sdk::export_device_protocol!($plugin);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f = encode(*b"G2", 2, MessageType::Jobs, 0xDEAD_BEEF, &json!({"a": 1}));
        let d = decode(*b"G2", &f).unwrap();
        assert_eq!(d.kind, MessageType::Jobs);
        assert_eq!(d.message_id, 0xDEAD_BEEF);
        assert_eq!(d.version, 2);
        assert_eq!(d.body, json!({"a": 1}));
    }

    #[test]
    fn foreign_and_short_frames_are_refused() {
        let f = encode(*b"G1", 1, MessageType::Hello, 1, &json!({}));
        assert_eq!(decode(*b"G2", &f).unwrap_err().code, "bad-frame");
        assert_eq!(decode(*b"G2", b"G2\x01").unwrap_err().code, "bad-frame");
        assert_eq!(
            decode(*b"G2", b"G2\x01\x42\0\0\0\x01{}").unwrap_err().code,
            "bad-frame"
        );
        assert_eq!(
            decode(*b"G2", b"G2\x01\x01\0\0\0\x01[1]").unwrap_err().code,
            "bad-frame"
        );
    }
}
