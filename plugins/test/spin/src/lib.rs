//! Test plugin `spin`: Never returns and never yields (an infinite loop).

#[allow(unused_imports)]
use lockgate_plugin_sdk::{Error, Event};
use lockgate_plugin_sdk::{event_sink, plugin};

struct Plugin;

impl plugin::Guest for Plugin {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "spin".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Never returns and never yields (an infinite loop).".into(),
        }
    }
}

impl event_sink::Guest for Plugin {
    fn publish(event: Event) -> Result<(), Error> {
        let mut n = 0u64;
        loop {
            n = std::hint::black_box(n.wrapping_add(event.at as u64));
        }
    }

    fn handle_command(_command: event_sink::Command) -> Result<String, Error> {
        Err(Error::invalid("no commands"))
    }
}

lockgate_plugin_sdk::export_event_bridge!(Plugin);
