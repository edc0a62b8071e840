//! Template lockgate plugin: a directory sync whose "directory" is its own
//! configuration section (`domain` and a `persons` list). Copy this crate,
//! rename it in `Cargo.toml` and `plugin.toml`, and replace `read_source`.

#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        world: "lockgate:connector/directory-sync",
        path: ["../../wit/host", "../../wit/connector"],
        with: {
            "lockgate:host/types@0.1.0": lockgate_plugin_sdk::host::types,
            "lockgate:host/log@0.1.0": lockgate_plugin_sdk::host::log,
            "lockgate:host/config@0.1.0": lockgate_plugin_sdk::host::config,
            "lockgate:host/clock@0.1.0": lockgate_plugin_sdk::host::clock,
            "lockgate:host/kv@0.1.0": lockgate_plugin_sdk::host::kv,
            "lockgate:host/gateway@0.1.0": lockgate_plugin_sdk::host::gateway,
        },
    });
}

use bindings::exports::lockgate::connector::{directory_source, plugin};
use lockgate_plugin_sdk::{Error, Person, clock, gateway, log, settings, store};

struct Template;

impl plugin::Guest for Template {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "template".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Template directory sync".into(),
        }
    }
}

impl directory_source::Guest for Template {
    fn sync(full: bool) -> Result<directory_source::SyncReport, Error> {
        let domain = settings::string("domain")?;
        let persons = read_source()?;
        let last = store::get_u64("last-sync")?;
        log::info(&format!(
            "sync (full: {full}, last: {last:?}): {} persons into {domain}",
            persons.len()
        ));
        let report = gateway::upsert_employees(&domain, &persons)?;
        store::set_u64("last-sync", clock::now() as u64)?;
        Ok(directory_source::SyncReport {
            read: persons.len() as u32,
            created: report.created,
            updated: report.updated,
            deactivated: 0,
        })
    }
}

/// Reads the persons from the source: here, the `persons` configuration list.
fn read_source() -> Result<Vec<Person>, Error> {
    let Some(serde_json::Value::Array(items)) = settings::value("persons") else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|item| {
            let field = |name: &str| item.get(name).and_then(|v| v.as_str()).map(str::to_owned);
            Ok(Person {
                identifier: field("identifier")
                    .ok_or_else(|| Error::invalid("person without identifier"))?,
                first_name: field("first_name").unwrap_or_default(),
                surname: field("surname").unwrap_or_default(),
                email: field("email"),
                phone: field("phone"),
                department: field("department"),
                active: item.get("active").and_then(|v| v.as_bool()).unwrap_or(true),
            })
        })
        .collect()
}

bindings::export!(Template with_types_in bindings);
