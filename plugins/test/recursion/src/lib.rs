//! Test plugin `recursion`: Recurses without bound (stack exhaustion).

#[allow(unused_imports)]
use lockgate_plugin_sdk::{Error, Event};
use lockgate_plugin_sdk::{event_sink, plugin};

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

lockgate_plugin_sdk::export_event_bridge!(Plugin);
