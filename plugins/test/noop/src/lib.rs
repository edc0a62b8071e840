//! Test plugin `noop`: Does nothing; kind `log` logs once, kind `kv` reads one key (benchmarks).

#[allow(unused_imports)]
use lockgate_plugin_sdk::{Error, Event};
use lockgate_plugin_sdk::{event_sink, plugin};

struct Plugin;

impl plugin::Guest for Plugin {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "noop".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Does nothing; kind `log` logs once, kind `kv` reads one key (benchmarks).".into(),
        }
    }
}

impl event_sink::Guest for Plugin {
    fn publish(event: Event) -> Result<(), Error> {
        match event.kind.as_str() {
            "log" => lockgate_plugin_sdk::log::debug("noop"),
            "kv" => {
                lockgate_plugin_sdk::kv::get("noop")?;
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_command(_command: event_sink::Command) -> Result<String, Error> {
        Err(Error::invalid("no commands"))
    }
}

lockgate_plugin_sdk::export_event_bridge!(Plugin);
