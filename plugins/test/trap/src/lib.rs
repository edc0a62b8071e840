//! Test plugin `trap`: Traps: panics, or executes `unreachable` for kind `unreachable`.

#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        world: "lockgate:connector/event-bridge",
        path: ["../../../wit/host", "../../../wit/connector"],
        with: {
            "lockgate:host/types@0.1.0": lockgate_plugin_sdk::host::types,
            "lockgate:host/log@0.1.0": lockgate_plugin_sdk::host::log,
            "lockgate:host/config@0.1.0": lockgate_plugin_sdk::host::config,
            "lockgate:host/clock@0.1.0": lockgate_plugin_sdk::host::clock,
            "lockgate:host/kv@0.1.0": lockgate_plugin_sdk::host::kv,
            "lockgate:host/gateway@0.1.0": lockgate_plugin_sdk::host::gateway,
            "lockgate:host/mqtt@0.1.0": lockgate_plugin_sdk::host::mqtt,
        },
        generate_all,
    });
}

use bindings::exports::lockgate::connector::{event_sink, plugin};
#[allow(unused_imports)]
use lockgate_plugin_sdk::{Error, Event};

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

bindings::export!(Plugin with_types_in bindings);
