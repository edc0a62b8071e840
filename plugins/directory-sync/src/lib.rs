//! Plugin `directory-sync`: synchronises persons from an LDAP directory
//! (OpenLDAP, Active Directory, Apache Directory) into lockgate.
//!
//! One `sync` reads the directory page by page (RFC 2696 paged results) and
//! stages every mapped entry with the core; the core then applies the whole
//! batch, the deletions and the watermark in one transaction
//! (`gateway.sync-persons`). A sync cut off anywhere (connection lost
//! mid-page, deadline, gateway killed) therefore changes nothing.
//!
//! Incremental syncs read only what changed since the watermark kept in the
//! plugin's key-value store: `modifyTimestamp` (OpenLDAP, Apache Directory)
//! or `uSNChanged` (Active Directory, whose `highestCommittedUSN` is read
//! from the root DSE before the search). The watermark is written by the core
//! in the same transaction as the changes. Deletions are found on full syncs
//! only (by set difference), plus entries an incremental sync sees disabled.
//!
//! Configuration (the plugin's `config` section; see docs/connectors/ldap.md):
//! `directory` (required: a name of `[plugins.ldap.NAME]` in the grant),
//! `flavour` (`openldap` | `active-directory` | `apache-ds`), `base_dn`,
//! `filter`, `page_size`, `source`, `domain`, `max_deletions`,
//! `max_deletion_percent` and `attributes` (person field → LDAP attribute).

use lockgate_plugin_sdk::gateway::{self, SyncReport, SyncRequest, SyncSkip};
use lockgate_plugin_sdk::ldap::{self, Entry, Search, SearchScope};
use lockgate_plugin_sdk::{Error, Person, ldap_escape, log, settings, store};
use lockgate_plugin_sdk::{directory_source, plugin};
use serde_json::Value;

/// kv key of the watermark.
const WATERMARK_KEY: &str = "watermark";
/// Most entries one sync reads (the core's batch limit).
const MAX_ENTRIES: usize = 1_000_000;
/// Most skipped entries listed in the report (all are counted in the log).
const MAX_LISTED_SKIPS: usize = 1_000;
/// The optional person fields an attribute can be mapped to.
const OPTIONAL_FIELDS: [&str; 17] = lockgate_plugin_sdk::PERSON_FIELDS;

/// Which directory server: decides the watermark and the "disabled" test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    OpenLdap,
    ActiveDirectory,
    ApacheDs,
}

/// The plugin's configuration, checked before anything is read.
#[derive(Debug)]
struct Config {
    directory: String,
    flavour: Flavour,
    base_dn: String,
    filter: String,
    page_size: u32,
    source: String,
    domain: Option<String>,
    max_deletions: u32,
    max_deletion_percent: u8,
    /// Person field → attribute: `identifier`, `first_name`, `surname`, then optional ones.
    attributes: Vec<(String, String)>,
}

fn text(key: &str, default: Option<&str>) -> Result<String, Error> {
    match settings::value(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None if default.is_some() => Ok(default.unwrap_or_default().to_owned()),
        None => Err(Error::invalid(format!("config `{key}` is missing"))),
        Some(_) => Err(Error::invalid(format!(
            "config `{key}` must be a non-empty string"
        ))),
    }
}

fn number(key: &str, default: u64, max: u64) -> Result<u64, Error> {
    match settings::value(key) {
        None => Ok(default),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= max => Ok(v),
            _ => Err(Error::invalid(format!("config `{key}` must be 0-{max}"))),
        },
        Some(_) => Err(Error::invalid(format!("config `{key}` must be a number"))),
    }
}

impl Config {
    fn read() -> Result<Config, Error> {
        let flavour = match text("flavour", Some("openldap"))?.as_str() {
            "openldap" => Flavour::OpenLdap,
            "active-directory" => Flavour::ActiveDirectory,
            "apache-ds" => Flavour::ApacheDs,
            other => {
                return Err(Error::invalid(format!(
                    "config `flavour`: `{other}` is not openldap, active-directory or apache-ds"
                )));
            }
        };
        let defaults: &[(&str, &str)] = match flavour {
            Flavour::ActiveDirectory => &[
                ("identifier", "sAMAccountName"),
                ("first_name", "givenName"),
                ("surname", "sn"),
                ("email", "mail"),
                ("phone", "telephoneNumber"),
                ("department", "department"),
            ],
            Flavour::OpenLdap | Flavour::ApacheDs => &[
                ("identifier", "uid"),
                ("first_name", "givenName"),
                ("surname", "sn"),
                ("email", "mail"),
                ("phone", "telephoneNumber"),
                ("department", "departmentNumber"),
                ("language", "preferredLanguage"),
            ],
        };
        let attributes = match settings::value("attributes") {
            None => defaults
                .iter()
                .map(|(f, a)| ((*f).to_owned(), (*a).to_owned()))
                .collect(),
            Some(Value::Object(map)) => {
                let mut out = Vec::with_capacity(map.len());
                for (field, attr) in map {
                    let Value::String(attr) = attr else {
                        return Err(Error::invalid(format!(
                            "config `attributes.{field}` must be an attribute name"
                        )));
                    };
                    let known = ["identifier", "first_name", "surname"].contains(&field.as_str())
                        || OPTIONAL_FIELDS.contains(&field.as_str());
                    if !known {
                        return Err(Error::invalid(format!(
                            "config `attributes.{field}`: not a person field"
                        )));
                    }
                    out.push((field, attr));
                }
                out
            }
            Some(_) => {
                return Err(Error::invalid(
                    "config `attributes` must map person fields to attribute names",
                ));
            }
        };
        for required in ["identifier", "first_name", "surname"] {
            if !attributes.iter().any(|(f, _)| f == required) {
                return Err(Error::invalid(format!(
                    "config `attributes.{required}` is missing"
                )));
            }
        }
        let default_filter = match flavour {
            Flavour::ActiveDirectory => "(&(objectCategory=person)(objectClass=user))",
            Flavour::OpenLdap | Flavour::ApacheDs => "(objectClass=inetOrgPerson)",
        };
        let filter = text("filter", Some(default_filter))?;
        if !(filter.starts_with('(') && filter.ends_with(')')) {
            return Err(Error::invalid(
                "config `filter` must be a parenthesised LDAP filter",
            ));
        }
        let directory = text("directory", None)?;
        Ok(Config {
            source: text("source", Some(&directory))?,
            directory,
            flavour,
            base_dn: text("base_dn", None)?,
            filter,
            page_size: number("page_size", 500, 5_000)?.max(1) as u32,
            domain: match settings::value("domain") {
                None => None,
                Some(Value::String(d)) => Some(d),
                Some(_) => return Err(Error::invalid("config `domain` must be a string")),
            },
            max_deletions: number("max_deletions", 100, u64::from(u32::MAX))? as u32,
            max_deletion_percent: number("max_deletion_percent", 10, 100)? as u8,
            attributes,
        })
    }

    fn attribute(&self, field: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, a)| a.as_str())
    }

    /// Attributes to ask for: the mapped ones plus what the watermark and the
    /// disabled test need.
    fn requested(&self) -> Vec<String> {
        let mut attrs: Vec<String> = self.attributes.iter().map(|(_, a)| a.clone()).collect();
        match self.flavour {
            Flavour::ActiveDirectory => {
                attrs.push("uSNChanged".into());
                attrs.push("userAccountControl".into());
            }
            Flavour::OpenLdap | Flavour::ApacheDs => attrs.push("modifyTimestamp".into()),
        }
        attrs.sort();
        attrs.dedup();
        attrs
    }
}

/// The first value of an attribute (names compare case-insensitively).
fn first<'a>(entry: &'a Entry, attribute: &str) -> Option<&'a str> {
    entry
        .attributes
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .and_then(|(_, values)| values.first())
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

/// Maps one entry to a person; `Err` is the reason it is skipped (no identifier: nothing to
/// match it with). A missing first name or surname is staged empty, so the core judges the
/// entry as `on_invalid` says (listed with field and reason, and its stored person kept, or
/// the whole sync refused) instead of the person vanishing from a full sync.
fn person(cfg: &Config, entry: &Entry) -> Result<Person, String> {
    let value = |field: &str| {
        let attr = cfg.attribute(field).unwrap_or(field);
        first(entry, attr).map(|v| v.trim().to_owned())
    };
    let identifier = value("identifier").ok_or_else(|| {
        format!(
            "no `{}` attribute (identifier)",
            cfg.attribute("identifier").unwrap_or("identifier")
        )
    })?;
    let first_name = value("first_name").unwrap_or_default();
    let surname = value("surname").unwrap_or_default();
    let fields = OPTIONAL_FIELDS
        .iter()
        .filter_map(|field| {
            let attr = cfg.attribute(field)?;
            first(entry, attr).map(|v| ((*field).to_owned(), v.trim().to_owned()))
        })
        .collect();
    // Active Directory: bit 2 of userAccountControl is ACCOUNTDISABLE.
    let active = match cfg.flavour {
        Flavour::ActiveDirectory => first(entry, "userAccountControl")
            .and_then(|v| v.parse::<u64>().ok())
            .is_none_or(|uac| uac & 2 == 0),
        Flavour::OpenLdap | Flavour::ApacheDs => true,
    };
    Ok(Person {
        identifier,
        first_name,
        surname,
        fields,
        active,
    })
}

/// The highest change marker seen: a GeneralizedTime (compared as text, all
/// in `YYYYmmddHHMMSS[.f]Z` form) or a USN.
#[derive(Debug, Default)]
struct Watermark {
    highest: Option<String>,
}

impl Watermark {
    fn see_timestamp(&mut self, value: &str) {
        if self.highest.as_deref().is_none_or(|h| value > h) {
            self.highest = Some(value.to_owned());
        }
    }
}

/// Reads Active Directory's `highestCommittedUSN` from the root DSE.
fn highest_committed_usn(cfg: &Config) -> Result<u64, Error> {
    let page = ldap::search_page(
        &cfg.directory,
        &Search {
            base: String::new(),
            scope: SearchScope::Base,
            filter: "(objectClass=*)".into(),
            attributes: vec!["highestCommittedUSN".into()],
            page_size: 1,
        },
        None,
    )?;
    page.entries
        .first()
        .and_then(|e| first(e, "highestCommittedUSN"))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::unavailable("the root DSE has no highestCommittedUSN"))
}

struct Plugin;

impl plugin::Guest for Plugin {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "directory-sync".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Synchronises persons from an LDAP directory (OpenLDAP, Active Directory, Apache Directory).".into(),
        }
    }
}

impl directory_source::Guest for Plugin {
    fn sync(full: bool, dry_run: bool) -> Result<SyncReport, Error> {
        let cfg = Config::read()?;
        let stored = store::get_string(WATERMARK_KEY)?;
        // Without a watermark an incremental sync has nothing to start from.
        let full = full || stored.is_none();
        let mut filter = cfg.filter.clone();
        let usn_now = match cfg.flavour {
            Flavour::ActiveDirectory => Some(highest_committed_usn(&cfg)?),
            Flavour::OpenLdap | Flavour::ApacheDs => None,
        };
        if !full && let Some(mark) = &stored {
            filter = match cfg.flavour {
                Flavour::ActiveDirectory => {
                    let next = mark.parse::<u64>().map_err(|_| {
                        Error::invalid(format!("stored watermark `{mark}` is not a USN"))
                    })? + 1;
                    format!("(&{filter}(uSNChanged>={next}))")
                }
                Flavour::OpenLdap | Flavour::ApacheDs => format!(
                    "(&{filter}(modifyTimestamp>={}))",
                    ldap_escape::filter_value(mark)
                ),
            };
        }
        log::info(&format!(
            "{} sync of `{}` (dry run: {dry_run})",
            if full { "full" } else { "incremental" },
            cfg.directory
        ));
        let search = Search {
            base: cfg.base_dn.clone(),
            scope: SearchScope::Subtree,
            filter,
            attributes: cfg.requested(),
            page_size: cfg.page_size,
        };
        let mut watermark = Watermark::default();
        let mut skipped: Vec<SyncSkip> = Vec::new();
        let mut skipped_total = 0usize;
        let mut read = 0usize;
        let mut cookie = None;
        loop {
            let page = ldap::search_page(&cfg.directory, &search, cookie.as_deref())?;
            read += page.entries.len();
            if read > MAX_ENTRIES {
                return Err(Error::invalid(format!(
                    "the directory returned more than {MAX_ENTRIES} entries; narrow `filter` or `base_dn`"
                )));
            }
            let mut persons = Vec::with_capacity(page.entries.len());
            for entry in &page.entries {
                if let Some(ts) = first(entry, "modifyTimestamp") {
                    watermark.see_timestamp(ts);
                }
                match person(&cfg, entry) {
                    Ok(p) => persons.push(p),
                    Err(reason) => {
                        skipped_total += 1;
                        if skipped.len() < MAX_LISTED_SKIPS {
                            skipped.push(SyncSkip {
                                identifier: entry.dn.clone(),
                                reason,
                            });
                        }
                    }
                }
            }
            if !persons.is_empty() {
                gateway::stage_persons(&persons)?;
            }
            cookie = page.cookie;
            if cookie.is_none() {
                break;
            }
        }
        if skipped_total > 0 {
            log::warn(&format!(
                "{skipped_total} entries skipped (no identifier attribute)"
            ));
        }
        let mark = match usn_now {
            Some(usn) => Some(usn.to_string()),
            None => watermark.highest.or(stored),
        };
        let mut report = gateway::sync_persons(&SyncRequest {
            source: cfg.source.clone(),
            domain: cfg.domain.clone(),
            full,
            dry_run,
            max_deletions: cfg.max_deletions,
            max_deletion_percent: cfg.max_deletion_percent,
            watermark: mark.map(|m| (WATERMARK_KEY.to_owned(), m.into_bytes())),
        })?;
        report.skipped.extend(
            skipped
                .into_iter()
                .take(MAX_LISTED_SKIPS.saturating_sub(report.skipped.len())),
        );
        log::info(&format!(
            "read {read}, created {}, updated {}, unchanged {}, deleted {}",
            report.created, report.updated, report.unchanged, report.deleted
        ));
        Ok(report)
    }
}

lockgate_plugin_sdk::export_directory_sync!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(flavour: Flavour) -> Config {
        Config {
            directory: "corp".into(),
            flavour,
            base_dn: "ou=people,dc=example,dc=com".into(),
            filter: "(objectClass=inetOrgPerson)".into(),
            page_size: 100,
            source: "corp".into(),
            domain: None,
            max_deletions: 10,
            max_deletion_percent: 10,
            attributes: vec![
                ("identifier".into(), "uid".into()),
                ("first_name".into(), "givenName".into()),
                ("surname".into(), "sn".into()),
                ("email".into(), "mail".into()),
            ],
        }
    }

    fn entry(attrs: &[(&str, &[&str])]) -> Entry {
        Entry {
            dn: "uid=x,ou=people,dc=example,dc=com".into(),
            attributes: attrs
                .iter()
                .map(|(a, v)| ((*a).into(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
        }
    }

    #[test]
    fn entries_map_to_persons_with_their_first_values() {
        let cfg = config(Flavour::OpenLdap);
        let p = person(
            &cfg,
            &entry(&[
                ("uid", &["e-1"]),
                ("givenName", &[" Ada "]),
                ("SN", &["Lovelace"]),
                ("mail", &["ada@example.com", "second@example.com"]),
            ]),
        )
        .unwrap();
        assert_eq!(
            (p.identifier.as_str(), p.first_name.as_str()),
            ("e-1", "Ada")
        );
        assert_eq!(
            p.surname, "Lovelace",
            "attribute names compare case-insensitively"
        );
        assert_eq!(
            p.fields,
            [("email".to_owned(), "ada@example.com".to_owned())]
        );
        assert!(p.active);
        // A missing first name is staged empty: the core judges it (on_invalid).
        let partial = person(&cfg, &entry(&[("uid", &["e-2"]), ("sn", &["X"])])).unwrap();
        assert_eq!(
            (partial.first_name.as_str(), partial.surname.as_str()),
            ("", "X")
        );
        let missing = person(&cfg, &entry(&[("givenName", &["A"]), ("sn", &["X"])])).unwrap_err();
        assert!(missing.contains("uid"), "{missing}");
    }

    #[test]
    fn disabled_active_directory_accounts_are_inactive() {
        let cfg = config(Flavour::ActiveDirectory);
        let base: [(&str, &[&str]); 3] = [("uid", &["e-1"]), ("givenName", &["A"]), ("sn", &["B"])];
        let with = |uac: &str| {
            let uac = [uac];
            let mut attrs: Vec<(&str, &[&str])> = base.to_vec();
            attrs.push(("userAccountControl", &uac));
            person(&cfg, &entry(&attrs)).unwrap().active
        };
        assert!(with("512"));
        assert!(!with("514"));
    }

    #[test]
    fn the_watermark_keeps_the_latest_timestamp() {
        let mut w = Watermark::default();
        for ts in ["20261124060000Z", "20261124070000Z", "20261124065959Z"] {
            w.see_timestamp(ts);
        }
        assert_eq!(w.highest.as_deref(), Some("20261124070000Z"));
    }
}
