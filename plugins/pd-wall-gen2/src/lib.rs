//! Device protocol of generation 2 wall PDs (`docs/pds/wall-gen2.md`): magic `G2`, versions
//! 1 and 2. Version 2 updates keys in parallel: one `KEY_INSERTED` may name up to
//! [`MAX_PARALLEL_KEYS`] keys (`key_ids`), answered by one `JOBS` frame per key. A gen-2 PD
//! has no boot loader; its settings carry the log level (default `general`) and no
//! key-updater mode (gen 2 PDs cannot upgrade gen-1 keys).

use lockgate_pd_protocol::{FrameError, Generation, KeyInsertedBody, device_plugin};
use serde_json::{Value, json};

/// Generation 2 wall PDs.
#[derive(Debug)]
pub struct WallGen2;

/// Most keys one version-2 `KEY_INSERTED` names (the PD's slots).
pub const MAX_PARALLEL_KEYS: usize = 8;

impl Generation for WallGen2 {
    const MAGIC: [u8; 2] = *b"G2";
    const VERSIONS: &'static [u8] = &[1, 2];
    const GENERATION: &'static str = "wall-gen2";
    const SETTINGS: &'static [&'static str] = &[
        "heartbeat_minutes",
        "service_url",
        "alternative_url",
        "hostname",
        "static_ip",
        "proxy",
        "diagnostic_mode",
        "log_level",
        "offline_update",
    ];

    fn adjust_settings(settings: &mut Value) {
        if settings.get("log_level").is_none_or(Value::is_null) {
            settings["log_level"] = json!("general");
        }
    }

    fn inserted_keys(version: u8, body: &KeyInsertedBody) -> Result<Vec<u64>, FrameError> {
        let refused = |message: String| FrameError {
            code: "bad-message",
            message,
            close: false,
        };
        match (&body.key_id, &body.key_ids) {
            (Some(k), None) => Ok(vec![*k]),
            (None, Some(keys)) if version >= 2 => {
                if keys.is_empty() || keys.len() > MAX_PARALLEL_KEYS {
                    return Err(refused(format!(
                        "`key_ids` names 1 to {MAX_PARALLEL_KEYS} keys, not {}",
                        keys.len()
                    )));
                }
                let mut seen = keys.clone();
                seen.sort_unstable();
                seen.dedup();
                if seen.len() != keys.len() {
                    return Err(refused("`key_ids` names a key twice".into()));
                }
                Ok(keys.clone())
            }
            (None, Some(_)) => Err(refused(
                "parallel updates (`key_ids`) need protocol version 2".into(),
            )),
            _ => Err(refused("KEY_INSERTED names `key_id` or `key_ids`".into())),
        }
    }
}

device_plugin!(
    Plugin,
    WallGen2,
    "pd-wall-gen2",
    "Generation 2 wall PDs: parallel key updates, log level (docs/pds/wall-gen2.md)."
);
