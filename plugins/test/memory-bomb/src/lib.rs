//! Test plugin `memory-bomb`: Allocates linear memory until something stops it.

#[allow(unused_imports)]
use lockgate_plugin_sdk::{Error, Event};
use lockgate_plugin_sdk::{event_sink, plugin};

struct Plugin;

impl plugin::Guest for Plugin {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "memory-bomb".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Allocates linear memory until something stops it.".into(),
        }
    }
}

impl event_sink::Guest for Plugin {
    fn publish(event: Event) -> Result<(), Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![event.kind.len() as u8; 1 << 20]));
            std::hint::black_box(&hoard);
        }
    }

    fn handle_command(_command: event_sink::Command) -> Result<String, Error> {
        Err(Error::invalid("no commands"))
    }
}

lockgate_plugin_sdk::export_event_bridge!(Plugin);
