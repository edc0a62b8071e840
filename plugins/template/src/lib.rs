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
            "lockgate:host/ldap@0.1.0": lockgate_plugin_sdk::host::ldap,
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
    fn sync(full: bool, dry_run: bool) -> Result<gateway::SyncReport, Error> {
        let domain = settings::string("domain")?;
        let persons = read_source()?;
        let last = store::get_u64("last-sync")?;
        log::info(&format!(
            "sync (full: {full}, dry run: {dry_run}, last: {last:?}): {} persons into {domain}",
            persons.len()
        ));
        if dry_run {
            return Ok(gateway::SyncReport {
                staged: persons.len() as u32,
                created: 0,
                updated: 0,
                unchanged: 0,
                deleted: 0,
                deleted_identifiers: Vec::new(),
                skipped: Vec::new(),
                dry_run,
                guard: None,
            });
        }
        let report = gateway::upsert_employees(&domain, &persons)?;
        store::set_u64("last-sync", clock::now() as u64)?;
        Ok(gateway::SyncReport {
            staged: persons.len() as u32,
            created: report.created,
            updated: report.updated,
            unchanged: report.unchanged,
            deleted: 0,
            deleted_identifiers: Vec::new(),
            skipped: Vec::new(),
            dry_run,
            guard: None,
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
                fields: ["email", "phone", "department"]
                    .into_iter()
                    .filter_map(|name| field(name).map(|v| (name.to_owned(), v)))
                    .collect(),
                active: item.get("active").and_then(|v| v.as_bool()).unwrap_or(true),
            })
        })
        .collect()
}

bindings::export!(Template with_types_in bindings);
