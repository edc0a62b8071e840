//! The plugins' `gateway` capability over the core: the operations a grant names
//! (`upsert-employees`, `read-keys`, `read-cylinders`, `pending-jobs`, `emit-event`,
//! `sync-persons`, `request-directory-sync`, `request-key-update`, `report-key-lost`), run
//! against the store as lockgate itself, recorded in events under the plugin's name.
//!
//! The host checks the grant before any of these run; this layer validates the arguments
//! (sizes, the domain, the locking system) and never hands store errors to the plugin (they
//! go to the log; the plugin sees `invalid` or `unavailable`).

use async_trait::async_trait;
use lockgate_host::types::{
    AuditEntry, Cylinder, DeliverableJob, DeviceHeartbeat, Event, HeartbeatAnswer, Job, JobOutcome,
    JobReport, Key, Person, PluginError, RenewedCertificate, ReportTaken, SyncReport, SyncRequest,
    SyncSkip, UpsertReport,
};
use lockgate_host::types::{
    Employee, EmployeeChange, EmployeeChangeKind, EmployeeChangePage, EmployeeState,
    EmployeesUpsertError, EmployeesUpsertOutcome, InvalidPerson,
};
use lockgate_host::{DeviceBinding, Gateway, WebServiceClient};
use lockgate_jobs::{JobsError, NewJob, Queue};
use lockgate_model::{
    ObjectKind,
    cylinder::Cylinder as StoredCylinder,
    domain::Domain,
    key::{BlockChoice, Key as StoredKey, KeyStatus},
    person::{Person as StoredPerson, PersonState},
    system::LockingSystem,
};
use lockgate_store::{
    Actor, DirectorySync, Scope, Store, StoreError, SyncedPerson, directory::MAX_SYNC_PERSONS,
    events::EventDraft, lifecycle::LostRequest,
};

/// Most persons one `upsert-employees` call takes (the CSV import's row limit).
pub const MAX_UPSERT: usize = 10_000;
/// Most keys or cylinders one read returns.
pub const MAX_READ: usize = 10_000;
/// Keys read from the database per page by `read-keys` (never every person and key at once).
const READ_PAGE: i64 = 500;
/// Longest event payload a plugin may record.
pub const MAX_EVENT_PAYLOAD: usize = 64 * 1024;
/// Longest directory source name a plugin may give (`[A-Za-z0-9._-]`).
pub const MAX_SOURCE_CHARS: usize = 64;

/// [`Gateway`] over the store. It serves an installation with one locking system (the
/// usual case); with several, the operations answer `unavailable` until a grant can name
/// the system.
#[derive(Debug, Clone)]
pub struct CoreGateway {
    store: Store,
    /// Every change goes through the application layer.
    app: lockgate_app::App,
    /// The background queue `request-directory-sync` enqueues on; none: `unavailable`.
    queue: Option<Queue>,
    /// The licence configuration plugin writes are judged by, per locking system.
    licence: lockgate_api::licence::LicenceConfig,
    /// Per directory-source plugin: what an invalid entry does (`[plugins.sources.NAME]`);
    /// unnamed plugins skip invalid entries.
    on_invalid: std::collections::HashMap<String, lockgate_store::directory::OnInvalid>,
}

impl CoreGateway {
    pub fn new(store: Store) -> Self {
        CoreGateway {
            app: lockgate_app::App::new(store.clone()),
            store,
            queue: None,
            licence: lockgate_api::licence::LicenceConfig::default(),
            on_invalid: std::collections::HashMap::new(),
        }
    }

    /// What an invalid directory entry does, per directory-source plugin.
    pub fn with_on_invalid(
        mut self,
        on_invalid: std::collections::HashMap<String, lockgate_store::directory::OnInvalid>,
    ) -> Self {
        self.on_invalid = on_invalid;
        self
    }

    /// Judge plugin writes by this licence configuration (`[licence]`).
    pub fn with_licence(mut self, licence: lockgate_api::licence::LicenceConfig) -> Self {
        self.licence = licence;
        self
    }

    /// Architecture invariant: a plugin's write obeys the licence of the locking system it
    /// writes to, now (not the features of every system at start-up): nothing after the hard
    /// expiry, and an operation's own feature (any one of `features`; none: no feature) only
    /// while the licence holds it.
    async fn licensed_write(
        &self,
        plugin: &str,
        sys: &LockingSystem,
        features: &[lockgate_api::licence::LicenceFeature],
    ) -> Result<(), PluginError> {
        let now = self
            .store
            .record_clock(sys.id, chrono::Utc::now())
            .await
            .map_err(|e| unavailable(plugin, e))?;
        let status = lockgate_api::licence::load_status(&self.store, &self.licence, sys.id, now)
            .await
            .map_err(|e| unavailable(plugin, e))?;
        if let Some(since) = status.locked_since() {
            return Err(PluginError::Unavailable(format!(
                "the licence of the locking system expired for good at {since}: nothing is changed"
            )));
        }
        let available = status.available();
        if !features.is_empty() && !features.iter().any(|f| available.contains(f)) {
            let names: Vec<String> = features.iter().map(|f| f.to_string()).collect();
            return Err(PluginError::Unavailable(format!(
                "the licence of the locking system does not include the feature {}",
                names.join(" or ")
            )));
        }
        Ok(())
    }

    /// With the PD certificate authority, for the `device` operations (the revocation
    /// list is signed with its key).
    pub fn with_pd_authority(
        mut self,
        authority: std::sync::Arc<lockgate_app::PdAuthority>,
    ) -> Self {
        self.app = self.app.with_pd_authority(authority);
        self
    }

    /// With the background queue, so `request-directory-sync` can enqueue.
    pub fn with_queue(mut self, queue: Queue) -> Self {
        self.queue = Some(queue);
        self
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

    /// The key `key_id` of the system, or `not-found`.
    async fn key(
        &self,
        plugin: &str,
        sys: &LockingSystem,
        key_id: u64,
    ) -> Result<(i64, StoredKey), PluginError> {
        let id = i64::try_from(key_id)
            .map_err(|_| PluginError::Invalid(format!("key-id {key_id} out of range")))?;
        match self
            .store
            .get::<StoredKey>(sys.id, ObjectKind::Key, id, &Scope::all())
            .await
        {
            Ok(k) => Ok((id, k.body)),
            Err(StoreError::NotFound { .. }) => {
                Err(PluginError::NotFound(format!("no key {key_id}")))
            }
            Err(e) => Err(unavailable(plugin, e)),
        }
    }

    /// The locking system and write context of an `employees` operation: the bound
    /// web-service client as actor, within its domains, while the licence includes web
    /// services (reads too: the feature switches the whole service).
    async fn client_context(
        &self,
        plugin: &str,
        client: &WebServiceClient,
    ) -> Result<lockgate_app::WriteContext, PluginError> {
        let sys = self
            .store
            .system(client.system_id)
            .await
            .map_err(|e| unavailable(plugin, e))?;
        self.licensed_write(
            plugin,
            &sys,
            &[lockgate_api::licence::LicenceFeature::WebServices],
        )
        .await?;
        let scope = Scope {
            domains: client.domains.as_ref().map(|d| d.iter().copied().collect()),
            home: client.home,
        };
        let actor = Actor {
            c_key_id: Some(client.c_key_id),
            label: client.label.clone(),
            correlation_id: client.correlation_id.clone(),
        };
        Ok(self.app.context(&sys, &scope, &actor))
    }

    /// The employee with `identifier` in the client's domains, or `not-found`; deactivated
    /// and marked-deleted ones only for a client that sees hidden persons (as the REST API).
    async fn employee(
        &self,
        plugin: &str,
        cx: &lockgate_app::WriteContext,
        client: &WebServiceClient,
        identifier: &str,
    ) -> Result<lockgate_store::Stored<StoredPerson>, PluginError> {
        if identifier.trim().is_empty() || identifier.chars().count() > MAX_IDENTIFIER_CHARS {
            return Err(PluginError::Invalid(format!(
                "identifier: 1 to {MAX_IDENTIFIER_CHARS} characters"
            )));
        }
        let ids = self
            .store
            .persons_with_identifier(cx.system.id, identifier)
            .await
            .map_err(|e| unavailable(plugin, e))?;
        for id in ids {
            match self
                .store
                .get::<StoredPerson>(cx.system.id, ObjectKind::Employee, id, &cx.scope)
                .await
            {
                Ok(p) if client.sees_hidden_persons || p.body.lifecycle == PersonState::Active => {
                    return Ok(p);
                }
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(unavailable(plugin, e)),
            }
        }
        Err(PluginError::NotFound(format!(
            "no employee with identifier '{identifier}'"
        )))
    }

    /// An employee as the `employees` interface returns it.
    async fn employee_view(
        &self,
        plugin: &str,
        sys_id: i64,
        p: lockgate_store::Stored<StoredPerson>,
    ) -> Result<Employee, PluginError> {
        let domain = self
            .store
            .get::<Domain>(sys_id, ObjectKind::Domain, p.body.domain_id, &Scope::all())
            .await
            .map_err(|e| unavailable(plugin, e))?;
        Ok(Employee {
            id: p.id.unsigned_abs(),
            person: plugin_person(&p.body),
            state: match p.body.lifecycle {
                PersonState::Active => EmployeeState::Active,
                PersonState::Deactivated => EmployeeState::Deactivated,
                PersonState::Deleted => EmployeeState::MarkedDeleted,
            },
            domain: domain.body.name,
            synced_from: p.body.synced_from.clone(),
            version: p.version.unsigned_abs(),
            updated_at: p.updated_at.timestamp_millis(),
        })
    }

    /// The write context of an operation of `plugin` (lockgate itself, named after it).
    fn cx(&self, plugin: &str, sys: &LockingSystem) -> lockgate_app::WriteContext {
        self.app.context(sys, &Scope::all(), &Self::actor(plugin))
    }
}

/// An application-layer refusal as the plugin sees it.
fn app_unavailable(plugin: &str, e: lockgate_app::AppError) -> PluginError {
    match e {
        lockgate_app::AppError::Store(e) => unavailable(plugin, e),
        lockgate_app::AppError::NotFound(m) => PluginError::NotFound(m),
        other => PluginError::Invalid(other.to_string()),
    }
}

/// A job as a PD gets it.
fn deliverable(d: lockgate_app::DeliverableJob) -> DeliverableJob {
    DeliverableJob {
        id: d.job.id.unsigned_abs(),
        kind: d.job.kind.as_str().replace('_', "-"),
        program: d.job.program.to_string(),
        program_hash: d.program_hash,
    }
}

/// Milliseconds since the epoch as an instant, or `invalid` naming `field`.
fn instant(ms: i64, field: &str) -> Result<chrono::DateTime<chrono::Utc>, PluginError> {
    chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| PluginError::Invalid(format!("{field}: {ms} is no instant")))
}

/// The PD a device operation acts for, as the application layer names it.
fn device_ref(d: &DeviceBinding) -> lockgate_app::DeviceRef {
    lockgate_app::DeviceRef {
        system_id: d.system_id,
        pd_id: d.pd_id,
    }
}

/// A store failure as the plugin sees it: validation problems and refusals are `invalid`, a
/// missing object `not-found`, the rest
/// `unavailable` with the details in the log only.
fn unavailable(plugin: &str, e: StoreError) -> PluginError {
    match e {
        StoreError::Invalid(v) => PluginError::Invalid(v.to_string()),
        e @ StoreError::NotFound { .. } => PluginError::NotFound(e.to_string()),
        StoreError::Refused { message } | StoreError::Conflict { message, .. } => {
            PluginError::Invalid(message)
        }
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

/// The optional person fields by their REST / CSV names, as the model holds them (one table
/// for both directions between plugin and model).
fn person_fields(m: &mut StoredPerson) -> [(&'static str, &mut Option<String>); 17] {
    [
        ("title", &mut m.title),
        ("email", &mut m.email),
        ("phone", &mut m.phone),
        ("organisation", &mut m.organisation),
        ("department", &mut m.department),
        ("street", &mut m.street),
        ("postcode", &mut m.postcode),
        ("language", &mut m.language),
        ("region", &mut m.region),
        ("job", &mut m.job),
        ("city", &mut m.city),
        ("state", &mut m.state),
        ("country", &mut m.country),
        ("company_address", &mut m.company_address),
        ("location", &mut m.location),
        ("mobile_phone", &mut m.mobile_phone),
        ("gmd_text", &mut m.gmd_text),
    ]
}

/// A plugin's person as the model has it (`index`: its position in the call, for errors).
/// Empty field values are absent values.
fn model_person(index: usize, p: Person) -> Result<(StoredPerson, bool), PluginError> {
    let mut m = StoredPerson {
        identifier: Some(p.identifier),
        first_name: p.first_name,
        surname: p.surname,
        ..Default::default()
    };
    let mut seen = std::collections::HashSet::new();
    for (name, value) in p.fields {
        let mut slots = person_fields(&mut m);
        let Some((_, slot)) = slots.iter_mut().find(|(n, _)| *n == name) else {
            let shown: String = name.chars().take(64).collect();
            return Err(PluginError::Invalid(format!(
                "persons[{index}].fields: unknown field `{shown}`"
            )));
        };
        if !seen.insert(name.clone()) {
            return Err(PluginError::Invalid(format!(
                "persons[{index}].fields: `{name}` given twice"
            )));
        }
        **slot = (!value.trim().is_empty()).then_some(value);
    }
    Ok((m, p.active))
}

/// A stored person as plugins see it (the fields that hold a value).
fn plugin_person(m: &StoredPerson) -> Person {
    let mut copy = m.clone();
    Person {
        identifier: m.identifier.clone().unwrap_or_default(),
        first_name: m.first_name.clone(),
        surname: m.surname.clone(),
        fields: person_fields(&mut copy)
            .into_iter()
            .filter_map(|(name, v)| v.take().map(|v| (name.to_owned(), v)))
            .collect(),
        active: m.lifecycle == PersonState::Active,
    }
}

/// Longest identifier the `employees` operations look up.
pub const MAX_IDENTIFIER_CHARS: usize = 256;

/// The text of a plugin error (the variant is the caller's business, not the row's).
fn error_text(e: PluginError) -> String {
    match e {
        PluginError::Invalid(m)
        | PluginError::NotFound(m)
        | PluginError::Denied(m)
        | PluginError::Unavailable(m)
        | PluginError::Other(m) => m,
    }
}

/// The change feed's token after event `id`: opaque to clients (`c` and the position).
fn change_token(id: i64) -> String {
    format!("c{id}")
}

/// A change token back to its position ("" is the start).
fn parse_change_token(token: &str) -> Result<i64, PluginError> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix('c')
        .filter(|d| d.len() <= 19 && !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<i64>().ok())
        .ok_or_else(|| {
            PluginError::Invalid(
                "since: not a change token this service issued (pass \"\" to start from the beginning)"
                    .into(),
            )
        })
}

/// A directory source name: 1-64 characters of `A-Z a-z 0-9 . _ -`.
fn check_source(source: &str) -> Result<(), PluginError> {
    let ok = !source.is_empty()
        && source.len() <= MAX_SOURCE_CHARS
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PluginError::Invalid(format!(
            "source: 1-{MAX_SOURCE_CHARS} characters of A-Z, a-z, 0-9, '.', '_', '-'"
        )))
    }
}

/// What a sync did, as the plugin sees it (adoptions count as updates).
fn sync_report(r: lockgate_store::DirectorySyncReport) -> SyncReport {
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    SyncReport {
        staged: n(r.staged),
        created: n(r.created),
        updated: n(r.updated),
        unchanged: n(r.unchanged),
        deleted: n(r.deleted),
        deleted_identifiers: r.deleted_identifiers,
        skipped: r
            .skipped
            .into_iter()
            .map(|s| SyncSkip {
                identifier: s.identifier,
                reason: s.reason,
            })
            .collect(),
        dry_run: r.dry_run,
        guard: r.guard,
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

/// Every invalid person of a refused upsert, each named by its index in the call.
fn refuse_invalid(report: &lockgate_store::persons::ImportReport) -> Result<(), PluginError> {
    if report.invalid.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = report
        .invalid
        .iter()
        .take(20)
        .map(|bad| {
            let fields: Vec<String> = bad
                .errors
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect();
            format!("persons[{}]: {}", bad.line, fields.join("; "))
        })
        .collect();
    let more = report.invalid.len().saturating_sub(rows.len());
    Err(PluginError::Invalid(if more > 0 {
        format!("{} (and {more} more)", rows.join(" | "))
    } else {
        rows.join(" | ")
    }))
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
        self.licensed_write(
            plugin,
            &sys,
            &[lockgate_api::licence::LicenceFeature::WebServices],
        )
        .await?;
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
        let mut skipped_inactive = 0;
        let mut rows: Vec<(usize, StoredPerson)> = Vec::with_capacity(persons.len());
        for (i, p) in persons.into_iter().enumerate() {
            let (mut person, active) = model_person(i, p)?;
            if !active {
                skipped_inactive += 1;
                continue;
            }
            person.domain_id = domain.id;
            rows.push((i, person));
        }
        // Through the application layer's upsert: the employee import's matching by
        // identifier and validation, all-or-nothing, with an event per touched person.
        let applied = self
            .app
            .upsert_employees(
                &self.cx(plugin, &sys),
                Some(&domain.body.name),
                rows,
                lockgate_store::persons::ImportAtomicity::InvalidRefuses,
                false,
            )
            .await
            .map_err(|e| app_unavailable(plugin, e))?;
        refuse_invalid(&applied)?;
        Ok(upsert_report(&applied, skipped_inactive))
    }

    async fn employees_upsert(
        &self,
        plugin: &str,
        client: &WebServiceClient,
        domain: Option<String>,
        persons: Vec<Person>,
    ) -> Result<EmployeesUpsertOutcome, EmployeesUpsertError> {
        let cx = self
            .client_context(plugin, client)
            .await
            .map_err(EmployeesUpsertError::Failed)?;
        let mut rows: Vec<(usize, StoredPerson)> = Vec::with_capacity(persons.len());
        let mut invalid = Vec::new();
        let mut identifiers = Vec::with_capacity(persons.len());
        // Each identifier once per call (compared as the store compares them).
        let mut first_row: std::collections::HashMap<String, usize> =
            std::collections::HashMap::new();
        for (i, p) in persons.into_iter().enumerate() {
            identifiers.push(p.identifier.clone());
            let row = |field: &str, reason: String| InvalidPerson {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                identifier: identifiers[i].clone(),
                field: field.to_owned(),
                reason,
            };
            if p.identifier.trim().is_empty() {
                invalid.push(row(
                    "identifier",
                    "is required: the web service matches employees by identifier".into(),
                ));
                continue;
            }
            if let Some(first) = first_row.insert(p.identifier.trim().to_lowercase(), i) {
                invalid.push(row(
                    "identifier",
                    format!("is given more than once in this call (also employee {first})"),
                ));
                continue;
            }
            match model_person(i, p) {
                Ok((person, _active)) => rows.push((i, person)),
                Err(e) => invalid.push(row("fields", error_text(e))),
            }
        }
        // Through the application layer's upsert: the employee import's matching by
        // identifier and validation, all-or-nothing, an event per touched person. With rows
        // already refused here it only judges the others (so every problem is listed).
        let report = self
            .app
            .upsert_employees(
                &cx,
                domain.as_deref(),
                rows,
                lockgate_store::persons::ImportAtomicity::InvalidOrSkippedRefuses,
                !invalid.is_empty(),
            )
            .await
            .map_err(|e| EmployeesUpsertError::Failed(app_unavailable(plugin, e)))?;
        // A row the import leaves alone (a deactivated or marked-deleted person, one a
        // directory maintains) is not applied: in an all-or-nothing call that is a refusal.
        for skip in &report.skipped {
            invalid.push(InvalidPerson {
                index: u32::try_from(skip.line).unwrap_or(u32::MAX),
                identifier: identifiers.get(skip.line).cloned().unwrap_or_default(),
                field: "identifier".into(),
                reason: skip.reason.clone(),
            });
        }
        for bad in &report.invalid {
            for f in &bad.errors {
                invalid.push(InvalidPerson {
                    index: u32::try_from(bad.line).unwrap_or(u32::MAX),
                    identifier: identifiers.get(bad.line).cloned().unwrap_or_default(),
                    field: f.field.clone(),
                    reason: f.message.clone(),
                });
            }
        }
        if !invalid.is_empty() {
            invalid.sort_by_key(|r| r.index);
            return Err(EmployeesUpsertError::InvalidPersons(invalid));
        }
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Ok(EmployeesUpsertOutcome {
            created: n(report.created),
            updated: n(report.updated),
            unchanged: n(report.unchanged),
        })
    }

    async fn employees_get(
        &self,
        plugin: &str,
        client: &WebServiceClient,
        identifier: &str,
    ) -> Result<Employee, PluginError> {
        let cx = self.client_context(plugin, client).await?;
        let p = self.employee(plugin, &cx, client, identifier).await?;
        self.employee_view(plugin, cx.system.id, p).await
    }

    async fn employees_deactivate(
        &self,
        plugin: &str,
        client: &WebServiceClient,
        identifier: &str,
    ) -> Result<Employee, PluginError> {
        let cx = self.client_context(plugin, client).await?;
        if !client.sees_hidden_persons {
            return Err(PluginError::Denied(
                "deactivating an employee needs the key-holder deactivate permission at Full"
                    .into(),
            ));
        }
        let p = self.employee(plugin, &cx, client, identifier).await?;
        let p = if p.body.lifecycle == PersonState::Deactivated {
            p
        } else {
            self.app
                .move_person(
                    &cx,
                    ObjectKind::Employee,
                    p.id,
                    lockgate_app::PersonMove::Deactivate,
                )
                .await
                .map_err(|e| app_unavailable(plugin, e))?
        };
        self.employee_view(plugin, cx.system.id, p).await
    }

    async fn employees_delete(
        &self,
        plugin: &str,
        client: &WebServiceClient,
        identifier: &str,
    ) -> Result<Option<Employee>, PluginError> {
        let cx = self.client_context(plugin, client).await?;
        let p = self.employee(plugin, &cx, client, identifier).await?;
        let id = p.id;
        self.app
            .delete_object::<StoredPerson>(&cx, ObjectKind::Employee, id, None, false)
            .await
            .map_err(|e| app_unavailable(plugin, e))?;
        match self
            .store
            .get::<StoredPerson>(cx.system.id, ObjectKind::Employee, id, &cx.scope)
            .await
        {
            Ok(marked) => Ok(Some(
                self.employee_view(plugin, cx.system.id, marked).await?,
            )),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable(plugin, e)),
        }
    }

    async fn employees_changes(
        &self,
        plugin: &str,
        client: &WebServiceClient,
        since: &str,
        limit: u32,
    ) -> Result<EmployeeChangePage, PluginError> {
        let cx = self.client_context(plugin, client).await?;
        let after = parse_change_token(since)?;
        let page = self
            .store
            .employee_changes(
                cx.system.id,
                after,
                i64::from(limit),
                &cx.scope,
                client.sees_hidden_persons,
            )
            .await
            .map_err(|e| unavailable(plugin, e))?;
        Ok(EmployeeChangePage {
            changes: page
                .changes
                .into_iter()
                .map(|c| EmployeeChange {
                    id: c.person_id.unsigned_abs(),
                    kind: match c.action.as_str() {
                        "created" => EmployeeChangeKind::Created,
                        "deactivated" => EmployeeChangeKind::Deactivated,
                        "reactivated" => EmployeeChangeKind::Reactivated,
                        "marked_deleted" => EmployeeChangeKind::MarkedDeleted,
                        "restored" => EmployeeChangeKind::Restored,
                        "deleted" => EmployeeChangeKind::Deleted,
                        _ if c.identifier.is_none() => EmployeeChangeKind::Deleted,
                        _ => EmployeeChangeKind::Updated,
                    },
                    identifier: c.identifier,
                    at: c.at.timestamp_millis(),
                })
                .collect(),
            next_token: change_token(page.last_event_id),
            more: page.more,
        })
    }

    async fn read_keys(
        &self,
        plugin: &str,
        holder: Option<String>,
    ) -> Result<Vec<Key>, PluginError> {
        let sys = self.system(plugin).await?;
        let err = |e| unavailable(plugin, e);
        if let Some(want) = holder {
            // The holder's keys through the reference index: no scan of persons or keys.
            let persons = self
                .store
                .persons_with_identifier(sys.id, &want)
                .await
                .map_err(err)?;
            let keys = self
                .store
                .keys_of_persons::<StoredKey>(sys.id, &persons, MAX_READ as i64)
                .await
                .map_err(err)?;
            return Ok(keys
                .iter()
                .filter(|k| k.body.holder_id.is_some_and(|h| persons.contains(&h)))
                .map(|k| key_view(k.id, &k.body, Some(want.clone())))
                .collect());
        }
        // Every key, one page at a time, with the identifiers of that page's holders.
        let mut out = Vec::new();
        let mut after = 0;
        while out.len() < MAX_READ {
            let page = self
                .store
                .list_page::<StoredKey>(sys.id, ObjectKind::Key, after, READ_PAGE)
                .await
                .map_err(err)?;
            let Some(last) = page.last() else { break };
            after = last.id;
            let mut holders: Vec<i64> = page.iter().filter_map(|k| k.body.holder_id).collect();
            holders.sort_unstable();
            holders.dedup();
            let identifiers = self
                .store
                .markings_of(sys.id, &holders)
                .await
                .map_err(err)?;
            out.extend(page.iter().take(MAX_READ - out.len()).map(|k| {
                let h = k.body.holder_id.and_then(|h| identifiers.get(&h).cloned());
                key_view(k.id, &k.body, h)
            }));
            if (page.len() as i64) < READ_PAGE {
                break;
            }
        }
        Ok(out)
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
        let (id, _) = self.key(plugin, &sys, key_id).await?;
        let jobs = self
            .store
            .jobs(sys.id, Some(id), true, 1_000)
            .await
            .map_err(|e| unavailable(plugin, e))?;
        Ok(jobs
            .into_iter()
            .map(|j| Job {
                id: j.id.unsigned_abs(),
                kind: j.kind.as_str().replace('_', "-"),
                target_kind: j.target.as_str().into(),
                target_id: j.target_id.unsigned_abs(),
                state: j.state.name().replace('_', "-"),
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
        self.licensed_write(plugin, &sys, &[]).await?;
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

    async fn sync_persons(
        &self,
        plugin: &str,
        request: SyncRequest,
        persons: Vec<Person>,
    ) -> Result<SyncReport, PluginError> {
        check_source(&request.source)?;
        if persons.len() > MAX_SYNC_PERSONS {
            return Err(PluginError::Invalid(format!(
                "{} persons in one sync; at most {MAX_SYNC_PERSONS}",
                persons.len()
            )));
        }
        let mut staged = Vec::with_capacity(persons.len());
        for (i, p) in persons.into_iter().enumerate() {
            let (person, active) = model_person(i, p)?;
            staged.push(SyncedPerson { person, active });
        }
        let sys = self.system(plugin).await?;
        self.licensed_write(
            plugin,
            &sys,
            // A directory sync is an LDAP or a web-services (HR) integration; the plugin's
            // manifest names which, and the host checks that feature before every call.
            &[
                lockgate_api::licence::LicenceFeature::LdapIntegration,
                lockgate_api::licence::LicenceFeature::WebServices,
            ],
        )
        .await?;
        // Synced persons are marked with the plugin's name: another plugin's source of the
        // same name is another source.
        let source = format!("{plugin}:{}", request.source);
        let req = DirectorySync {
            source: &source,
            domain: request.domain.as_deref(),
            full: request.full,
            dry_run: request.dry_run,
            max_deletions: request.max_deletions,
            max_deletion_percent: request.max_deletion_percent,
            // The watermark is a key of the calling plugin's own kv.
            watermark: request
                .watermark
                .as_ref()
                .map(|(key, value)| (plugin, key.as_str(), value.as_slice())),
            on_invalid: self.on_invalid.get(plugin).copied().unwrap_or_default(),
            persons: staged,
        };
        let report = self
            .app
            .sync_directory(&self.cx(plugin, &sys), req)
            .await
            .map_err(|e| match e {
                lockgate_app::AppError::Store(StoreError::Refused { message }) => {
                    PluginError::Invalid(message)
                }
                lockgate_app::AppError::Store(StoreError::Invalid(v)) => PluginError::Invalid(
                    v.errors
                        .iter()
                        .map(|f| format!("{}: {}", f.field, f.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                e => app_unavailable(plugin, e),
            })?;
        // A dry run reports what the guard would refuse (a real sync was refused above).
        Ok(sync_report(report))
    }

    async fn request_directory_sync(
        &self,
        plugin: &str,
        target: &str,
        full: bool,
    ) -> Result<u64, PluginError> {
        lockgate_host::manifest::check_name(target).map_err(PluginError::Invalid)?;
        let Some(queue) = &self.queue else {
            return Err(PluginError::Unavailable(
                "the background runtime is not running".into(),
            ));
        };
        let mode = if full { "full" } else { "incremental" };
        // One queued or running sync per plugin and mode: a repeated request is not stacked.
        let job = NewJob::new(
            crate::background::DIRECTORY_SYNC,
            serde_json::json!({ "plugin": target, "full": full }),
        )
        .unique(format!("{target}:{mode}"));
        match queue.enqueue(&job).await {
            Ok(Some(id)) => {
                tracing::info!(plugin, target, full, job_id = id, "directory sync queued");
                Ok(id.unsigned_abs())
            }
            Ok(None) => Err(PluginError::Unavailable(format!(
                "a {mode} directory sync by `{target}` is already queued or running"
            ))),
            Err(JobsError::Store(e)) => Err(unavailable(plugin, e)),
            Err(e) => {
                tracing::warn!(plugin, error = %e, "queueing a directory sync failed");
                Err(PluginError::Unavailable(
                    "the core could not queue the sync".into(),
                ))
            }
        }
    }

    async fn request_key_update(&self, plugin: &str, key_id: u64) -> Result<Vec<Job>, PluginError> {
        let sys = self.system(plugin).await?;
        self.licensed_write(plugin, &sys, &[]).await?;
        let (id, _) = self.key(plugin, &sys, key_id).await?;
        self.app
            .reconcile_after(&self.cx(plugin, &sys), ObjectKind::Key, &[id])
            .await;
        self.pending_jobs(plugin, key_id).await
    }

    async fn report_key_lost(&self, plugin: &str, key_id: u64) -> Result<(), PluginError> {
        let sys = self.system(plugin).await?;
        self.licensed_write(plugin, &sys, &[]).await?;
        let (id, key) = self.key(plugin, &sys, key_id).await?;
        if key.status == KeyStatus::Lost {
            return Ok(());
        }
        let lost = LostRequest {
            block: BlockChoice::All,
            cylinder_ids: Vec::new(),
        };
        match self
            .app
            .report_key_lost(&self.cx(plugin, &sys), id, lost)
            .await
        {
            Ok(_) => {}
            Err(lockgate_app::AppError::Store(StoreError::Refused { message })) => {
                // Lost meanwhile (another report won the race): not an error.
                let (_, now) = self.key(plugin, &sys, key_id).await?;
                if now.status == KeyStatus::Lost {
                    return Ok(());
                }
                return Err(PluginError::Invalid(message));
            }
            Err(e) => return Err(app_unavailable(plugin, e)),
        }
        Ok(())
    }

    async fn device_heartbeat(
        &self,
        plugin: &str,
        device: &DeviceBinding,
        report: DeviceHeartbeat,
    ) -> Result<HeartbeatAnswer, PluginError> {
        let d = device_ref(device);
        let answer = self
            .app
            .device_heartbeat(d, report.firmware.as_deref(), report.bootloader.as_deref())
            .await
            .map_err(|e| app_unavailable(plugin, e))?;
        let settings = serde_json::to_string(&answer.settings)
            .map_err(|e| PluginError::Other(format!("settings: {e}")))?;
        Ok(HeartbeatAnswer {
            interval_minutes: answer.heartbeat_minutes,
            settings,
            revocation_list: self.device_revocation_list(plugin, device).await?,
        })
    }

    async fn device_key_inserted(
        &self,
        plugin: &str,
        device: &DeviceBinding,
        key_id: u64,
    ) -> Result<Vec<DeliverableJob>, PluginError> {
        let key_id =
            i64::try_from(key_id).map_err(|_| PluginError::NotFound(format!("no key {key_id}")))?;
        let jobs = self
            .app
            .key_inserted(device_ref(device), key_id)
            .await
            .map_err(|e| app_unavailable(plugin, e))?;
        Ok(jobs.into_iter().map(deliverable).collect())
    }

    async fn device_c_key_inserted(
        &self,
        plugin: &str,
        device: &DeviceBinding,
        c_key_id: u64,
    ) -> Result<Vec<DeliverableJob>, PluginError> {
        let c_key_id = i64::try_from(c_key_id)
            .map_err(|_| PluginError::NotFound(format!("no C-key {c_key_id}")))?;
        let jobs = self
            .app
            .c_key_inserted(device_ref(device), c_key_id)
            .await
            .map_err(|e| app_unavailable(plugin, e))?;
        Ok(jobs.into_iter().map(deliverable).collect())
    }

    async fn device_report_job(
        &self,
        plugin: &str,
        device: &DeviceBinding,
        report: JobReport,
    ) -> Result<ReportTaken, PluginError> {
        let job_id = i64::try_from(report.job_id)
            .map_err(|_| PluginError::NotFound(format!("no job {}", report.job_id)))?;
        let outcome = match report.outcome {
            JobOutcome::Done(program_hash) => lockgate_app::DeviceOutcome::Done { program_hash },
            JobOutcome::Failed(reason) => lockgate_app::DeviceOutcome::Failed { reason },
        };
        let mut trail = Vec::with_capacity(report.cylinder_audit_trail.len());
        for (i, e) in report.cylinder_audit_trail.iter().enumerate() {
            trail.push(lockgate_store::devices::AuditRecord {
                key_id: i64::try_from(e.key_id)
                    .map_err(|_| PluginError::NotFound(format!("no key {}", e.key_id)))?,
                cylinder_id: 0,
                at: instant(e.at, &format!("cylinder_audit_trail[{i}].at"))?,
                opened: e.opened,
            });
        }
        // The cylinder is the job's: the application layer fills it in and checks it.
        match self
            .app
            .device_job_report(
                device_ref(device),
                job_id,
                outcome,
                &report.report_key,
                &trail,
            )
            .await
            .map_err(|e| app_unavailable(plugin, e))?
        {
            lockgate_app::DeviceReport::Applied(_) => Ok(ReportTaken::Applied),
            lockgate_app::DeviceReport::AlreadyApplied => Ok(ReportTaken::AlreadyApplied),
        }
    }

    async fn device_revocation_list(
        &self,
        plugin: &str,
        device: &DeviceBinding,
    ) -> Result<String, PluginError> {
        let signed = self
            .app
            .device_revocation_list(device_ref(device))
            .await
            .map_err(|e| app_unavailable(plugin, e))?;
        serde_json::to_string(&signed).map_err(|e| PluginError::Other(format!("the list: {e}")))
    }

    async fn device_upload_audit_trail(
        &self,
        plugin: &str,
        device: &DeviceBinding,
        key_id: u64,
        entries: Vec<AuditEntry>,
    ) -> Result<u32, PluginError> {
        let key_id =
            i64::try_from(key_id).map_err(|_| PluginError::NotFound(format!("no key {key_id}")))?;
        let mut records = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let cylinder_id = i64::try_from(e.cylinder_id)
                .map_err(|_| PluginError::NotFound(format!("no cylinder {}", e.cylinder_id)))?;
            let at = instant(e.at, &format!("entries[{i}].at"))?;
            records.push(lockgate_store::devices::AuditRecord {
                key_id,
                cylinder_id,
                at,
                opened: e.opened,
            });
        }
        self.app
            .device_audit_trail(device_ref(device), key_id, &records)
            .await
            .map_err(|e| app_unavailable(plugin, e))
    }

    async fn device_renew_certificate(
        &self,
        plugin: &str,
        device: &DeviceBinding,
        csr_pem: String,
    ) -> Result<RenewedCertificate, PluginError> {
        let renewed = self
            .app
            .renew_device_certificate(device_ref(device), device.certificate_id, &csr_pem)
            .await
            .map_err(|e| app_unavailable(plugin, e))?;
        Ok(RenewedCertificate {
            certificate_pem: renewed.certificate.certificate_pem,
            not_after: renewed.certificate.not_after.timestamp_millis(),
            ca_pem: renewed.ca_pem,
        })
    }

    async fn device_upload_log(
        &self,
        plugin: &str,
        device: &DeviceBinding,
        lines: Vec<String>,
    ) -> Result<(), PluginError> {
        self.app
            .device_log(device_ref(device), &lines)
            .await
            .map_err(|e| app_unavailable(plugin, e))
    }

    /// The feature a plugin's manifest names, judged for the locking system the gateway
    /// serves at this moment (the clock's high-water mark, the installed licence): the host
    /// asks before every call into the plugin.
    async fn licensed(&self, plugin: &str, feature: &str) -> Result<(), PluginError> {
        let feature = lockgate_api::licence::LicenceFeature::ALL
            .into_iter()
            .find(|f| f.as_str() == feature)
            .ok_or_else(|| {
                PluginError::Denied(format!(
                    "the manifest names `{feature}`, which is no licence feature"
                ))
            })?;
        let sys = self.system(plugin).await?;
        self.licensed_write(plugin, &sys, &[feature]).await
    }
}
