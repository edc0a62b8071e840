//! Test plugin `trap`: Traps: panics, or executes `unreachable` for kind `unreachable`.

#[allow(unused_imports)]
use lockgate_plugin_sdk::{Error, Event};
use lockgate_plugin_sdk::{event_sink, plugin};

struct Plugin;

impl plugin::Guest for Plugin {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "trap".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Traps: panics, or executes `unreachable` for kind `unreachable`.".into(),
        }
    }
}

impl event_sink::Guest for Plugin {
    fn publish(event: Event) -> Result<(), Error> {
        if event.kind == "unreachable" {
            std::arch::wasm32::unreachable();
        }
        panic!("trap plugin asked to publish {}", event.kind)
    }

    fn handle_command(_command: event_sink::Command) -> Result<String, Error> {
        Err(Error::invalid("no commands"))
    }
}

lockgate_plugin_sdk::export_event_bridge!(Plugin);
