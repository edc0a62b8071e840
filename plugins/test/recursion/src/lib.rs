//! Test plugin `recursion`: Recurses without bound (stack exhaustion).

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
            name: "recursion".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Recurses without bound (stack exhaustion).".into(),
        }
    }
}

impl event_sink::Guest for Plugin {
    fn publish(event: Event) -> Result<(), Error> {
        deep(std::hint::black_box(u64::MAX >> 1 | event.at as u64));
        Ok(())
    }

    fn handle_command(_command: event_sink::Command) -> Result<String, Error> {
        Err(Error::invalid("no commands"))
    }
}

/// Recursion the compiler cannot turn into a loop: work after the call.
#[inline(never)]
fn deep(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    std::hint::black_box(deep(std::hint::black_box(n - 1))).wrapping_add(n)
}

bindings::export!(Plugin with_types_in bindings);
