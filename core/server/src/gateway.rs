//! The plugins' `gateway` capability over the core: the operations a grant names
//! (`upsert-employees`, `read-keys`, `read-cylinders`, `pending-jobs`, `emit-event`), run
//! against the store as lockgate itself, recorded in events under the plugin's name.
//!
//! The host checks the grant before any of these run; this layer validates the arguments
//! (sizes, the domain, the locking system) and never hands store errors to the plugin (they
//! go to the log; the plugin sees `invalid` or `unavailable`).

use async_trait::async_trait;
use lockgate_host::Gateway;
use lockgate_host::types::{Cylinder, Event, Job, Key, Person, PluginError, UpsertReport};
use lockgate_model::{
    ObjectKind,
    cylinder::Cylinder as StoredCylinder,
    domain::Domain,
    employee_csv::{ExportRow, write_export},
    key::Key as StoredKey,
    person::Person as StoredPerson,
    system::LockingSystem,
};
use lockgate_store::{Actor, Scope, Store, StoreError, events::EventDraft};

/// Most persons one `upsert-employees` call takes (the CSV import's row limit).
pub const MAX_UPSERT: usize = 10_000;
/// Most keys or cylinders one read returns.
pub const MAX_READ: usize = 10_000;
/// Longest event payload a plugin may record.
pub const MAX_EVENT_PAYLOAD: usize = 64 * 1024;

/// [`Gateway`] over the store. It serves an installation with one locking system (the
/// usual case); with several, the operations answer `unavailable` until a grant can name
/// the system.
#[derive(Debug, Clone)]
pub struct CoreGateway {
    store: Store,
}

impl CoreGateway {
    pub fn new(store: Store) -> Self {
        CoreGateway { store }
    }

    async fn system(&self, plugin: &str) -> Result<LockingSystem, PluginError> {
        let mut systems = self
            .store
            .systems()
            .await
            .map_err(|e| unavailable(plugin, e))?;
        match systems.len() {
            1 => Ok(systems.remove(0)),
            0 => Err(PluginError::Unavailable("no locking system yet".into())),
            n => Err(PluginError::Unavailable(format!(
                "{n} locking systems: the gateway capability serves one"
            ))),
        }
    }

    fn actor(plugin: &str) -> Actor {
        Actor {
            label: format!("plugin {plugin}"),
            ..Actor::system()
        }
    }
}

/// A store failure as the plugin sees it: validation problems are `invalid`, the rest
/// `unavailable` with the details in the log only.
fn unavailable(plugin: &str, e: StoreError) -> PluginError {
    match e {
        StoreError::Invalid(v) => PluginError::Invalid(v.to_string()),
        e => {
            tracing::warn!(plugin, error = %e, "gateway operation failed");
            PluginError::Unavailable("the core could not complete the operation".into())
        }
    }
}

fn key_view(id: i64, k: &StoredKey, holder: Option<String>) -> Key {
    Key {
        id: id.unsigned_abs(),
        name: k.name.clone(),
        marking: k.marking.clone(),
        status: k.status.as_str().replace('_', "-"),
        holder,
    }
}

/// What an applied import did, as the plugin sees it.
fn upsert_report(report: &lockgate_store::persons::ImportReport, inactive: usize) -> UpsertReport {
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    UpsertReport {
        created: n(report.created),
        updated: n(report.updated),
        unchanged: n(report.unchanged + report.skipped.len() + inactive),
    }
}

/// The first invalid person of an import, named by its index in the call.
fn refuse_invalid(report: &lockgate_store::persons::ImportReport) -> Result<(), PluginError> {
    let Some(bad) = report.invalid.first() else {
        return Ok(());
    };
    // Rows are numbered from the header: row 2 is the first person.
    let index = bad.line.saturating_sub(2);
    let fields: Vec<String> = bad
        .errors
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect();
    Err(PluginError::Invalid(format!(
        "persons[{index}]: {}",
        fields.join("; ")
    )))
}

#[async_trait]
impl Gateway for CoreGateway {
    async fn upsert_employees(
        &self,
        plugin: &str,
        domain: &str,
        persons: Vec<Person>,
    ) -> Result<UpsertReport, PluginError> {
        if persons.len() > MAX_UPSERT {
            return Err(PluginError::Invalid(format!(
                "{} persons in one call; at most {MAX_UPSERT}",
                persons.len()
            )));
        }
        let sys = self.system(plugin).await?;
        let domains = self
            .store
            .list_all::<Domain>(sys.id, ObjectKind::Domain, &Scope::all(), 100_000)
            .await
            .map_err(|e| unavailable(plugin, e))?;
        let Some(domain) = domains
            .iter()
            .find(|d| d.body.name.eq_ignore_ascii_case(domain.trim()))
        else {
            return Err(PluginError::Invalid(format!("no domain '{domain}'")));
        };
        // Persons marked as having left are not created or changed here.
        let skipped_inactive = persons.iter().filter(|p| !p.active).count();
        let rows: Vec<StoredPerson> = persons
            .into_iter()
            .filter(|p| p.active)
            .map(|p| StoredPerson {
                identifier: Some(p.identifier),
                first_name: p.first_name,
                surname: p.surname,
                email: p.email,
                phone: p.phone,
                department: p.department,
                domain_id: domain.id,
                ..Default::default()
            })
            .collect();
        // Through the employee import: the same validation, matching by identifier and
        // all-or-nothing transaction as a CSV upload, with an event per touched person.
        let mut csv = Vec::new();
        write_export(
            &mut csv,
            b';',
            rows.iter().map(|person| ExportRow {
                person,
                domain: &domain.body.name,
            }),
        )
        .map_err(|e| PluginError::Invalid(format!("persons: {e}")))?;
        // A dry run first: one invalid person refuses the whole call, nothing written.
        let actor = Self::actor(plugin);
        let all = Scope::all();
        let import = |dry_run: bool| {
            self.store.import_persons(
                &sys,
                ObjectKind::Employee,
                &all,
                &actor,
                &csv,
                dry_run,
                &|_, _| {},
            )
        };
        let checked = import(true).await.map_err(|e| unavailable(plugin, e))?;
        refuse_invalid(&checked)?;
        let applied = import(false).await.map_err(|e| unavailable(plugin, e))?;
        refuse_invalid(&applied)?;
        Ok(upsert_report(&applied, skipped_inactive))
    }

    async fn read_keys(
        &self,
        plugin: &str,
        holder: Option<String>,
    ) -> Result<Vec<Key>, PluginError> {
        let sys = self.system(plugin).await?;
        let all = Scope::all();
        let mut identifiers = std::collections::HashMap::new();
        for kind in [ObjectKind::Employee, ObjectKind::Visitor] {
            for p in self
                .store
                .list_all::<StoredPerson>(sys.id, kind, &all, 1_000_000)
                .await
                .map_err(|e| unavailable(plugin, e))?
            {
                if let Some(i) = p.body.identifier {
                    identifiers.insert(p.id, i);
                }
            }
        }
        let keys = self
            .store
            .list_all::<StoredKey>(sys.id, ObjectKind::Key, &all, 1_000_000)
            .await
            .map_err(|e| unavailable(plugin, e))?;
        Ok(keys
            .iter()
            .filter_map(|k| {
                let h = k.body.holder_id.and_then(|h| identifiers.get(&h).cloned());
                match &holder {
                    Some(want) if h.as_deref() != Some(want.as_str()) => None,
                    _ => Some(key_view(k.id, &k.body, h)),
                }
            })
            .take(MAX_READ)
            .collect())
    }

    async fn read_cylinders(
        &self,
        plugin: &str,
        prefix: &str,
    ) -> Result<Vec<Cylinder>, PluginError> {
        let sys = self.system(plugin).await?;
        let prefix = prefix.to_lowercase();
        Ok(self
            .store
            .list_all::<StoredCylinder>(sys.id, ObjectKind::Cylinder, &Scope::all(), 1_000_000)
            .await
            .map_err(|e| unavailable(plugin, e))?
            .into_iter()
            .filter(|c| {
                c.body.name.to_lowercase().starts_with(&prefix)
                    || c.body.marking.to_lowercase().starts_with(&prefix)
            })
            .take(MAX_READ)
            .map(|c| Cylinder {
                id: c.id.unsigned_abs(),
                name: c.body.name,
                marking: c.body.marking,
            })
            .collect())
    }

    async fn pending_jobs(&self, plugin: &str, key_id: u64) -> Result<Vec<Job>, PluginError> {
        let sys = self.system(plugin).await?;
        let id = i64::try_from(key_id)
            .map_err(|_| PluginError::Invalid(format!("key-id {key_id} out of range")))?;
        match self
            .store
            .get::<StoredKey>(sys.id, ObjectKind::Key, id, &Scope::all())
            .await
        {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                return Err(PluginError::NotFound(format!("no key {key_id}")));
            }
            Err(e) => return Err(unavailable(plugin, e)),
        }
        let jobs = self
            .store
            .jobs(sys.id, Some(id), true, 1_000)
            .await
            .map_err(|e| unavailable(plugin, e))?;
        Ok(jobs
            .into_iter()
            .map(|j| Job {
                id: j.id.unsigned_abs(),
                kind: j.kind.replace('_', "-"),
                target_kind: if j.kind == "remote_update" {
                    "key".into()
                } else {
                    "cylinder".into()
                },
                target_id: j.target_id.unsigned_abs(),
                state: if j.state == "created" {
                    "open".into()
                } else {
                    j.state
                },
            })
            .collect())
    }

    async fn emit_event(&self, plugin: &str, event: Event) -> Result<(), PluginError> {
        if event.payload.len() > MAX_EVENT_PAYLOAD {
            return Err(PluginError::Invalid(format!(
                "payload: {} bytes; at most {MAX_EVENT_PAYLOAD}",
                event.payload.len()
            )));
        }
        let payload: serde_json::Value = serde_json::from_str(&event.payload)
            .map_err(|e| PluginError::Invalid(format!("payload: not JSON: {e}")))?;
        let kind_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        if !kind_ok(&event.kind) || !kind_ok(&event.object_kind) {
            return Err(PluginError::Invalid(
                "kind and object-kind: 1–64 characters of a-z, 0-9, '.', '_', '-'".into(),
            ));
        }
        let sys = self.system(plugin).await?;
        let object_id = event
            .object_id
            .map(|id| {
                i64::try_from(id)
                    .map_err(|_| PluginError::Invalid(format!("object-id {id} out of range")))
            })
            .transpose()?;
        let draft = EventDraft {
            object_kind: event.object_kind.clone(),
            object_id,
            object_label: format!("plugin {plugin}"),
            action: format!("plugin.{}", event.kind),
            changes: serde_json::json!({ "plugin": plugin, "at": event.at, "payload": payload }),
        };
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(|e| unavailable(plugin, e.into()))?;
        draft
            .insert(&mut conn, sys.id, &Self::actor(plugin))
            .await
            .map_err(|e| unavailable(plugin, e))
    }
}
