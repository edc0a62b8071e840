//! Device protocol of generation 1 wall PDs (`docs/pds/wall-gen1.md`): magic `G1`, version
//! 1 only, one key at a time. A gen-1 PD has a boot loader: it reports the boot loader's
//! version at every heartbeat (a heartbeat without it is refused), because the boot loader
//! is upgraded before the firmware. Its settings carry key-updater mode (gen 1 only; the
//! core allows one gen-1 PD in that mode per locking system) and no log level.

use lockgate_pd_protocol::{FrameError, Generation, HeartbeatBody, device_plugin};

/// Generation 1 wall PDs.
#[derive(Debug)]
pub struct WallGen1;

impl Generation for WallGen1 {
    const MAGIC: [u8; 2] = *b"G1";
    const VERSIONS: &'static [u8] = &[1];
    const GENERATION: &'static str = "wall-gen1";
    const SETTINGS: &'static [&'static str] = &[
        "heartbeat_minutes",
        "service_url",
        "alternative_url",
        "hostname",
        "static_ip",
        "proxy",
        "diagnostic_mode",
        "key_updater_mode",
        "offline_update",
    ];

    fn check_heartbeat(_: u8, hb: &HeartbeatBody) -> Result<(), FrameError> {
        if hb.bootloader.as_deref().is_none_or(str::is_empty) {
            return Err(FrameError {
                code: "bad-message",
                message: "a generation 1 PD reports `bootloader` at every heartbeat".into(),
                close: false,
            });
        }
        Ok(())
    }
}

device_plugin!(
    Plugin,
    WallGen1,
    "pd-wall-gen1",
    "Generation 1 wall PDs: boot loader, key-updater mode (docs/pds/wall-gen1.md)."
);
