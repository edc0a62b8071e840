//! Test plugin `ungranted`: Calls gateway.emit-event, which a test does not grant.

#[allow(unused_imports)]
use lockgate_plugin_sdk::{Error, Event};
use lockgate_plugin_sdk::{event_sink, plugin};

struct Plugin;

impl plugin::Guest for Plugin {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "ungranted".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Calls gateway.emit-event, which a test does not grant.".into(),
        }
    }
}

impl event_sink::Guest for Plugin {
    fn publish(event: Event) -> Result<(), Error> {
        lockgate_plugin_sdk::gateway::emit_event(&event)
    }

    fn handle_command(_command: event_sink::Command) -> Result<String, Error> {
        Err(Error::invalid("no commands"))
    }
}

lockgate_plugin_sdk::export_event_bridge!(Plugin);
