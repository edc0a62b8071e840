//! Device protocol of CLIQ mobile PDs and of the phone update path of Connect keys
//! (`docs/pds/mobile.md`): magic `PM`, version 1, one key at a time. A mobile PD may update
//! offline only the last [`OFFLINE_KEYS`] keys updated online there: the plugin keeps that
//! list per PD in its key-value store (`recent/<pd id>`) and sends it as `offline_keys` in
//! every `SETTINGS`.

use lockgate_pd_protocol::{Generation, device_plugin};
use lockgate_plugin_sdk::device_handler::Device;
use lockgate_plugin_sdk::{Error, kv};
use serde_json::{Value, json};

/// Generation: CLIQ mobile PD.
#[derive(Debug)]
pub struct Mobile;

/// How many of the keys last updated online at a mobile PD it may update offline.
pub const OFFLINE_KEYS: usize = 10;

fn recent_key(device: &Device) -> String {
    format!("recent/{}", device.pd_id)
}

fn recent(device: &Device) -> Result<Vec<u64>, Error> {
    Ok(match kv::get(&recent_key(device))? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        None => Vec::new(),
    })
}

impl Generation for Mobile {
    const MAGIC: [u8; 2] = *b"PM";
    const VERSIONS: &'static [u8] = &[1];
    const GENERATION: &'static str = "cliq-mobile";
    const SETTINGS: &'static [&'static str] =
        &["heartbeat_minutes", "diagnostic_mode", "offline_update"];

    fn offline_keys(device: &Device) -> Result<Value, Error> {
        Ok(json!(recent(device)?))
    }

    fn key_updated(device: &Device, key_id: u64) -> Result<(), Error> {
        let mut keys = recent(device)?;
        keys.retain(|k| *k != key_id);
        keys.push(key_id);
        if keys.len() > OFFLINE_KEYS {
            keys.drain(..keys.len() - OFFLINE_KEYS);
        }
        kv::set(&recent_key(device), json!(keys).to_string().as_bytes())
    }
}

device_plugin!(
    Plugin,
    Mobile,
    "pd-mobile",
    "CLIQ mobile PDs and Connect keys' phone updates: offline updates for the last 10 keys (docs/pds/mobile.md)."
);
