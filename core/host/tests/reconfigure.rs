//! A configuration reload (`PluginHost::reconfigure`, what `SIGHUP` runs in the gateway)
//! applies per-plugin settings without a restart, picks up new plugins, keeps the settings
//! the engine was built with, and changes nothing when the new configuration is invalid.

mod common;

use common::{config, host, plugin_dir};
use lockgate_host::{AllocatorChoice, PluginState};

const GRANTED: &str = "[plugins.noop.grants]\nlog = true\nkv = true\n";

fn state(host: &lockgate_host::PluginHost, name: &str) -> PluginState {
    host.status_of(name).expect("known plugin").state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_plugin_settings_without_a_restart() {
    let dir = plugin_dir(&["noop"]);
    let (host, _, _) = host(config(GRANTED), &dir);
    assert_eq!(state(&host, "noop"), PluginState::Enabled);

    // Disabled in the configuration.
    let off = config("[plugins.noop]\nenabled = false\ngrants = { log = true, kv = true }\n");
    assert!(host.reconfigure(off, &[]).expect("reload").is_empty());
    assert!(matches!(state(&host, "noop"), PluginState::Disabled { .. }));

    // A grant taken away: the plugin imports kv, so it is refused.
    let revoked = config("[plugins.noop.grants]\nlog = true\n");
    host.reconfigure(revoked, &[]).expect("reload");
    match state(&host, "noop") {
        PluginState::Refused { reason } => assert!(reason.contains("kv"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Granted again, and a plugin copied into the directory meanwhile is picked up.
    std::fs::copy(dir.join("noop.wasm"), dir.join("noop2.wasm")).expect("copy");
    let manifest = std::fs::read_to_string(dir.join("noop.toml")).expect("manifest");
    std::fs::write(
        dir.join("noop2.toml"),
        manifest.replace("name = \"noop\"", "name = \"noop2\""),
    )
    .expect("write");
    let both = config(&format!(
        "{GRANTED}[plugins.noop2.grants]\nlog = true\nkv = true\n"
    ));
    host.reconfigure(both, std::slice::from_ref(&dir))
        .expect("reload");
    assert_eq!(state(&host, "noop"), PluginState::Enabled);
    assert_eq!(state(&host, "noop2"), PluginState::Enabled);
    host.describe("noop2").await.expect("callable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_settings_need_a_restart_and_invalid_configurations_change_nothing() {
    let dir = plugin_dir(&["noop"]);
    let (host, _, _) = host(config(GRANTED), &dir);
    let mut other = config(GRANTED);
    other.allocator = AllocatorChoice::OnDemand;
    other.epoch_tick_ms += 1;
    let kept = host.reconfigure(other, &[]).expect("reload");
    assert!(kept.contains(&"allocator".to_owned()), "{kept:?}");
    assert!(kept.contains(&"epoch_tick_ms".to_owned()), "{kept:?}");
    assert_eq!(state(&host, "noop"), PluginState::Enabled);

    let mut invalid = config("[plugins.noop]\nenabled = false\n");
    invalid.epoch_tick_ms = 0;
    assert!(host.reconfigure(invalid, &[]).is_err());
    assert_eq!(
        state(&host, "noop"),
        PluginState::Enabled,
        "an invalid configuration changes nothing"
    );
}
