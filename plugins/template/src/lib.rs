//! Template lockgate plugin: a directory sync whose "directory" is its own
//! configuration section (`domain` and a `persons` list). Copy this crate,
//! rename it in `Cargo.toml` and `plugin.toml`, and replace `read_source`.
//!
//! A plugin is the `Guest` implementations of its world (here
//! `directory-sync`: `plugin` and `directory-source`) plus one macro line at
//! the end (`lockgate_plugin_sdk::export_directory_sync!(Template);`). The
//! configuration section is read into [`Settings`] by
//! `lockgate_plugin_sdk::settings()`, whose errors name the offending key.

use lockgate_plugin_sdk::{
    Error, Person, clock, directory_source, gateway, log, plugin, settings, store,
};
use serde::Deserialize;

struct Template;

/// The configuration section (`[plugins.instances.template.config]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Domain the persons are created in.
    domain: String,
    /// The "directory": the persons to upsert.
    #[serde(default)]
    persons: Vec<Entry>,
}

/// One person of the `persons` list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    identifier: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    surname: String,
    email: Option<String>,
    phone: Option<String>,
    department: Option<String>,
    #[serde(default = "active")]
    active: bool,
}

fn active() -> bool {
    true
}

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
        let Settings { domain, persons } = settings()?;
        let persons = read_source(persons);
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
fn read_source(entries: Vec<Entry>) -> Vec<Person> {
    entries
        .into_iter()
        .map(|e| Person {
            identifier: e.identifier,
            first_name: e.first_name,
            surname: e.surname,
            fields: [
                ("email", e.email),
                ("phone", e.phone),
                ("department", e.department),
            ]
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name.to_owned(), v)))
            .collect(),
            active: e.active,
        })
        .collect()
}

lockgate_plugin_sdk::export_directory_sync!(Template);
