//! Directory sync (LDAP / Active Directory): one batch of persons from a directory applied in one transaction — creates, updates, adoptions, deletions behind a mass-deletion guard, and the plugin's watermark.
//!
//! Persons are matched with the stored employees by identifier (case-folded, as the
//! `marking_fold` column holds it). A synced person carries `synced_from = source`: only a
//! sync from the same source changes or deletes it; locally it is read-only except domain
//! and tags (`Person::check_update`) and cannot be deleted (`Store::delete_person`).
//!
//! Nothing here needs a reconciliation: a sync never touches the access profiles, domain or
//! tags of an existing person (the only person fields a key program reads are the profiles),
//! creates persons without keys, and never deletes a person that holds a key or is otherwise
//! referenced, so no key or cylinder program can change.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use lockgate_model::{
    ObjectKind, Resource, ValidationErrors,
    domain::Domain,
    event::diff,
    person::{Person, PersonState},
    system::{LockingSystem, PersonDeletion},
};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::{
    Result, Store, StoreError,
    objects::{Actor, Scope},
    plugin_kv::{MAX_KEY_BYTES, MAX_PLUGIN_BYTES, MAX_VALUE_BYTES},
    sql::Sql,
    ts,
};

/// Most persons one sync takes.
pub const MAX_SYNC_PERSONS: usize = 1_000_000;
/// Most deleted identifiers and skipped persons a report lists.
pub const MAX_REPORT_LIST: usize = 1_000;
/// Longest source name, characters.
pub const MAX_SOURCE_CHARS: usize = 200;
/// Most field errors one refused batch names.
const MAX_ERRORS: usize = 100;
/// Rows per multi-row INSERT / UPDATE statement.
const ROWS_PER_STATEMENT: usize = 400;
/// Identifiers or ids per `IN (...)` lookup.
const IDS_PER_LOOKUP: usize = 500;
/// Above this many staged persons an incremental sync reads all employees in one scan
/// instead of looking the identifiers up.
const LOOKUP_SCAN_ABOVE: usize = 5_000;
/// Referrers named in a "holds keys" reason.
const REFERRERS_NAMED: usize = 3;

/// One person as the directory has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedPerson {
    /// The synced fields: identifier (required), title, names and the optional fields.
    /// Domain, tags, links, access profiles, lifecycle and `synced_from` are ignored:
    /// the sync maintains them.
    pub person: Person,
    /// False when the directory marks the person as having left (a deletion candidate).
    pub active: bool,
}

/// What a sync does with an entry that fails validation (per source, `on_invalid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    /// Leave the entry out and list it in the report (field and reason); the rest is
    /// applied. A stored person whose entry is invalid stays as it is (a full sync does not
    /// delete them).
    #[default]
    Skip,
    /// Refuse the whole sync, naming every invalid entry (at most 100); nothing is written.
    Refuse,
}

/// One directory sync (see [`Store::sync_directory`]).
#[derive(Debug, Clone)]
pub struct DirectorySync<'a> {
    /// The source mark of synced persons, used exactly as given (the plugin gateway
    /// prefixes the plugin's name).
    pub source: &'a str,
    /// Domain name for created persons; none: the system's initial person domain.
    pub domain: Option<&'a str>,
    /// Full sync: the source's persons missing from the batch are deleted too.
    pub full: bool,
    /// Plan only: report, write nothing (not even the watermark).
    pub dry_run: bool,
    /// Mass-deletion guard: refuse when more persons would be deleted ...
    pub max_deletions: u32,
    /// ... or more than this percentage (0–100) of the source's current persons.
    pub max_deletion_percent: u8,
    /// `(plugin, key, value)` written to the plugin key-value store in the same transaction.
    pub watermark: Option<(&'a str, &'a str, &'a [u8])>,
    /// What an invalid entry does: skipped (default) or the whole sync refused.
    pub on_invalid: OnInvalid,
    pub persons: Vec<SyncedPerson>,
}

/// A person a sync left alone, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SyncSkip {
    pub identifier: String,
    pub reason: String,
}

/// What a sync did (or, on a dry run, would do).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DirectorySyncReport {
    pub dry_run: bool,
    /// Persons in the batch.
    pub staged: usize,
    pub created: usize,
    /// Changed persons, adoptions included.
    pub updated: usize,
    /// Local persons with a staged identifier that the source now maintains (in `updated`).
    pub adopted: usize,
    /// Active staged persons identical to the stored ones.
    pub unchanged: usize,
    /// Staged inactive persons with nothing to delete (unknown or already gone).
    pub inactive: usize,
    pub deleted: usize,
    /// Identifiers of the deleted persons (at most [`MAX_REPORT_LIST`]).
    pub deleted_identifiers: Vec<String>,
    /// Persons left alone (at most [`MAX_REPORT_LIST`]).
    pub skipped: Vec<SyncSkip>,
    pub skipped_total: usize,
    /// Entries left out because they failed validation (`on_invalid = "skip"`; in `skipped`
    /// with the field and reason).
    pub invalid: usize,
    /// Active persons of the source before the sync (the base of the percentage guard;
    /// counted only when something would be deleted or on a full sync).
    pub source_persons: usize,
    /// Dry run only: why the mass-deletion guard would refuse this sync.
    pub guard: Option<String>,
}

impl DirectorySyncReport {
    fn skip(&mut self, identifier: &str, reason: String) {
        self.skipped_total += 1;
        if self.skipped.len() < MAX_REPORT_LIST {
            self.skipped.push(SyncSkip {
                identifier: identifier.to_string(),
                reason,
            });
        }
    }
}

/// A stored employee with an identifier.
struct Existing {
    id: i64,
    version: i64,
    body: Person,
}

/// A row rewrite: new body, status and name under an optimistic version check.
struct Rewrite {
    id: i64,
    version: i64,
    before: Person,
    after: Person,
}

/// Whether a source name is acceptable.
fn check_source(source: &str) -> Result<()> {
    let n = source.chars().count();
    if n == 0
        || n > MAX_SOURCE_CHARS
        || source.trim() != source
        || source.chars().any(char::is_control)
    {
        return Err(ValidationErrors::single(
            "source",
            format!("must be 1–{MAX_SOURCE_CHARS} characters without surrounding spaces"),
        )
        .into());
    }
    Ok(())
}

fn check_watermark(plugin: &str, key: &str, value: &[u8]) -> Result<()> {
    let mut e = ValidationErrors::new();
    if plugin.is_empty() || plugin.len() > MAX_PLUGIN_BYTES {
        e.push(
            "watermark.plugin",
            format!("must be 1-{MAX_PLUGIN_BYTES} bytes"),
        );
    }
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        e.push("watermark.key", format!("must be 1-{MAX_KEY_BYTES} bytes"));
    }
    if value.len() > MAX_VALUE_BYTES {
        e.push(
            "watermark.value",
            format!("must be at most {MAX_VALUE_BYTES} bytes"),
        );
    }
    Ok(e.into_result()?)
}

/// A validated batch: the case-folded identifier of every entry, and the entries that failed
/// (`on_invalid = "skip"`: index, identifier or `persons[i]`, and the reasons).
struct Batch {
    folded: Vec<String>,
    invalid: Vec<(usize, String, String)>,
}

/// Batch validation: the model's checks per person, a required identifier, no identifier
/// twice (case-folded; the later entry is the invalid one). Refusing, errors name the index:
/// `persons[12].email`; skipping, each invalid entry is listed with its fields and reasons.
fn validate_batch(
    sys: &LockingSystem,
    persons: &[SyncedPerson],
    on_invalid: OnInvalid,
) -> Result<Batch> {
    let mut errors = ValidationErrors::new();
    let mut invalid = Vec::new();
    let link_root = sys.settings.link_root_url.is_some();
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(persons.len());
    let mut folded = Vec::with_capacity(persons.len());
    for (i, sp) in persons.iter().enumerate() {
        if on_invalid == OnInvalid::Refuse && errors.errors.len() >= MAX_ERRORS {
            break;
        }
        let mut own = ValidationErrors::new();
        let ident = sp.person.identifier.as_deref().unwrap_or("");
        if ident.trim().is_empty() {
            own.push("identifier", "is required");
        }
        own.errors
            .extend(sp.person.validate_fields(link_root).errors);
        let f = crate::fold(ident);
        if !f.is_empty() {
            match seen.get(&f) {
                Some(first) => own.push(
                    "identifier",
                    format!("'{ident}' is already staged as persons[{first}]"),
                ),
                None => {
                    seen.insert(f.clone(), i);
                }
            }
        }
        if !own.is_empty() {
            match on_invalid {
                OnInvalid::Refuse => errors.extend_prefixed(&format!("persons[{i}]"), own),
                OnInvalid::Skip => {
                    let shown = if ident.trim().is_empty() {
                        format!("persons[{i}]")
                    } else {
                        ident.trim().to_string()
                    };
                    let reasons: Vec<String> = own
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect();
                    invalid.push((i, shown, format!("invalid entry: {}", reasons.join("; "))));
                }
            }
        }
        folded.push(f);
    }
    errors.errors.truncate(MAX_ERRORS);
    errors.into_result()?;
    Ok(Batch { folded, invalid })
}

/// The body a synced person gets from the directory on top of what is stored.
fn merged(incoming: &Person, stored: &Person, source: &str) -> Person {
    Person {
        identifier: stored.identifier.clone(),
        domain_id: stored.domain_id,
        access_profile_ids: stored.access_profile_ids.clone(),
        tags: stored.tags.clone(),
        links: stored.links.clone(),
        lifecycle: stored.lifecycle,
        synced_from: Some(source.to_string()),
        ..incoming.clone()
    }
}

/// Whether the stored person already has what the directory says (the common case of a
/// re-sync; cheaper than building the merged body).
fn same_synced_fields(incoming: &Person, stored: &Person, source: &str) -> bool {
    stored.synced_from.as_deref() == Some(source)
        && incoming.first_name == stored.first_name
        && incoming.surname == stored.surname
        && incoming
            .optional_fields()
            .iter()
            .zip(stored.optional_fields())
            .all(|((_, a), (_, b))| *a == b)
}

fn encode(p: &Person) -> Result<String> {
    serde_json::to_string(p).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode(body: &str) -> Result<Person> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_value(p: &Person) -> Option<serde_json::Value> {
    serde_json::to_value(p).ok()
}

/// An event row for the batched insert.
struct EventRow {
    id: i64,
    label: String,
    action: &'static str,
    changes: String,
}

impl Store {
    /// Apply one directory sync in one transaction, the watermark included: creates and
    /// updates by identifier, adoptions of local persons, deletions (of persons staged
    /// inactive; on a full sync also of the source's persons not staged) as the system's
    /// "when deleting persons" setting says, behind the mass-deletion guard. A dry run
    /// writes nothing; any error writes nothing.
    pub async fn sync_directory(
        &self,
        sys: &LockingSystem,
        actor: &Actor,
        req: DirectorySync<'_>,
    ) -> Result<DirectorySyncReport> {
        if req.persons.len() > MAX_SYNC_PERSONS {
            return Err(ValidationErrors::single(
                "persons",
                format!(
                    "{} persons in one sync; at most {MAX_SYNC_PERSONS}",
                    req.persons.len()
                ),
            )
            .into());
        }
        check_source(req.source)?;
        if req.max_deletion_percent > 100 {
            return Err(ValidationErrors::single("max_deletion_percent", "must be 0–100").into());
        }
        if let Some((plugin, key, value)) = req.watermark {
            check_watermark(plugin, key, value)?;
        }
        let Batch {
            mut folded,
            invalid,
        } = validate_batch(sys, &req.persons, req.on_invalid)?;
        // Invalid entries are left out; their stored persons (if any) are kept as they are.
        let mut req = req;
        let mut protected: HashSet<String> = HashSet::new();
        if !invalid.is_empty() {
            let out: HashSet<usize> = invalid.iter().map(|(i, _, _)| *i).collect();
            for (i, f) in folded.iter().enumerate() {
                if out.contains(&i) && !f.is_empty() {
                    protected.insert(f.clone());
                }
            }
            let mut index = 0;
            req.persons.retain(|_| {
                index += 1;
                !out.contains(&(index - 1))
            });
            let mut index = 0;
            folded.retain(|_| {
                index += 1;
                !out.contains(&(index - 1))
            });
        }
        let note_invalid = |report: &mut DirectorySyncReport| {
            report.staged += invalid.len();
            report.invalid = invalid.len();
            for (_, ident, reason) in &invalid {
                report.skip(ident, reason.clone());
            }
        };
        let domain = match req.domain {
            Some(name) => {
                let want = crate::fold(name);
                let d = self
                    .list_all::<Domain>(sys.id, ObjectKind::Domain, &Scope::all(), 100_000)
                    .await?
                    .into_iter()
                    .find(|d| crate::fold(&d.body.name) == want)
                    .ok_or_else(|| {
                        StoreError::from(ValidationErrors::single(
                            "domain",
                            format!("no domain '{name}'"),
                        ))
                    })?;
                Some(d.id)
            }
            None => sys.settings.initial_person_domain,
        };

        // Plan inside the write transaction (SQLite: `BEGIN IMMEDIATE`, so nothing changes
        // between reading and writing); a dry run reads on a plain connection.
        if req.dry_run {
            let mut conn = self.pool().acquire().await?;
            let (mut report, _) = plan(&mut conn, sys, &req, &folded, &protected, domain).await?;
            note_invalid(&mut report);
            return Ok(report);
        }
        let mut tx = self.write_tx().await?;
        let (mut report, writes) = plan(&mut tx, sys, &req, &folded, &protected, domain).await?;
        note_invalid(&mut report);
        if let Some(message) = &report.guard {
            return Err(StoreError::Refused {
                message: message.clone(),
            });
        }
        apply(&mut tx, sys, actor, writes).await?;
        if let Some((plugin, key, value)) = req.watermark {
            sqlx::query(
                "INSERT INTO plugin_kv (plugin, key, value, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(plugin)
            .bind(key)
            .bind(value.to_vec())
            .bind(ts(Utc::now()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(report)
    }
}

/// What an applied sync writes.
#[derive(Default)]
struct Writes {
    creates: Vec<Person>,
    updates: Vec<Rewrite>,
    deletions: Vec<Rewrite>,
    permanent: bool,
}

/// Read what is stored and decide everything; writes nothing.
async fn plan(
    conn: &mut AnyConnection,
    sys: &LockingSystem,
    req: &DirectorySync<'_>,
    folded: &[String],
    protected: &HashSet<String>,
    domain: Option<i64>,
) -> Result<(DirectorySyncReport, Writes)> {
    let source = req.source;
    let mut report = DirectorySyncReport {
        dry_run: req.dry_run,
        staged: req.persons.len(),
        ..DirectorySyncReport::default()
    };
    let staged: HashSet<&str> = folded.iter().map(String::as_str).collect();
    let scan = req.full || req.persons.len() > LOOKUP_SCAN_ABOVE;
    let (existing, mut source_active) = if scan {
        let (e, s) = load_scan(conn, sys.id, source, &staged).await?;
        (e, Some(s))
    } else {
        (load_lookup(conn, sys.id, folded).await?, None)
    };

    let mut writes = Writes {
        permanent: sys.settings.person_deletion == PersonDeletion::DeletePermanently,
        ..Writes::default()
    };
    // Persons of this source to delete, by id (a person staged inactive on a full sync
    // would otherwise come twice).
    let mut candidates: HashMap<i64, &Existing> = HashMap::new();
    let mut kept_active: HashSet<&str> = HashSet::new();
    for (sp, f) in req.persons.iter().zip(folded) {
        let ident = sp.person.identifier.as_deref().unwrap_or("").trim();
        let Some(ex) = existing.get(f) else {
            if sp.active {
                let mut p = sp.person.clone();
                p.identifier = Some(ident.to_string());
                p.domain_id = domain.unwrap_or_default();
                p.access_profile_ids.clear();
                p.tags.clear();
                p.links.clear();
                p.lifecycle = PersonState::Active;
                p.synced_from = Some(source.to_string());
                writes.creates.push(p);
                report.created += 1;
            } else {
                report.inactive += 1;
            }
            continue;
        };
        let ours = ex.body.synced_from.as_deref() == Some(source);
        if !sp.active {
            match (ex.body.lifecycle, ex.body.synced_from.as_deref()) {
                (PersonState::Active, Some(s)) if s == source => {
                    candidates.insert(ex.id, ex);
                }
                (PersonState::Active, Some(other)) => {
                    report.skip(
                        ident,
                        format!("maintained by the directory source '{other}'"),
                    );
                }
                (PersonState::Active, None) => report.skip(
                    ident,
                    "inactive in the directory, but not maintained by this source: left as is"
                        .into(),
                ),
                // Already gone.
                (PersonState::Deactivated | PersonState::Deleted, _) => report.inactive += 1,
            }
            continue;
        }
        match (ex.body.synced_from.as_deref(), ex.body.lifecycle) {
            (Some(other), _) if other != source => {
                report.skip(
                    ident,
                    format!("maintained by the directory source '{other}'"),
                );
            }
            (_, PersonState::Deactivated) => {
                report.skip(ident, "deactivated persons are never re-imported".into());
            }
            (_, PersonState::Deleted) => {
                report.skip(ident, "the person is marked as deleted".into());
            }
            (_, PersonState::Active) => {
                kept_active.insert(f.as_str());
                if same_synced_fields(&sp.person, &ex.body, source) {
                    debug_assert_eq!(merged(&sp.person, &ex.body, source), ex.body);
                    report.unchanged += 1;
                    continue;
                }
                let after = merged(&sp.person, &ex.body, source);
                if after == ex.body {
                    report.unchanged += 1;
                } else {
                    report.updated += 1;
                    if !ours {
                        report.adopted += 1;
                    }
                    writes.updates.push(Rewrite {
                        id: ex.id,
                        version: ex.version,
                        before: ex.body.clone(),
                        after,
                    });
                }
            }
        }
    }
    if req.full {
        for (f, ex) in &existing {
            if ex.body.synced_from.as_deref() == Some(source)
                && ex.body.lifecycle == PersonState::Active
                && !kept_active.contains(f.as_str())
                && !protected.contains(f.as_str())
            {
                candidates.insert(ex.id, ex);
            }
        }
    }
    if !writes.creates.is_empty() && domain.is_none() {
        return Err(ValidationErrors::single(
            "domain",
            "is required: the sync names no domain and the system has no initial person domain",
        )
        .into());
    }

    // Persons that still hold keys (or are referenced otherwise) are not deleted.
    let mut candidates: Vec<&Existing> = candidates.into_values().collect();
    candidates.sort_by(|a, b| a.body.identifier.cmp(&b.body.identifier));
    let ids: Vec<i64> = candidates.iter().map(|e| e.id).collect();
    let referrers = referrers(conn, &ids).await?;
    for ex in candidates {
        let ident = ex.body.identifier.clone().unwrap_or_default();
        if let Some(users) = referrers.get(&ex.id) {
            let holds = users
                .iter()
                .any(|(k, ..)| matches!(k, ObjectKind::Key | ObjectKind::CKey));
            let named: Vec<String> = users
                .iter()
                .take(REFERRERS_NAMED)
                .map(|(k, id, name)| format!("{} {id} '{name}'", k.as_str()))
                .collect();
            let more = if users.len() > REFERRERS_NAMED {
                ", …"
            } else {
                ""
            };
            let what = if holds { "holds keys" } else { "is referenced" };
            report.skip(
                &ident,
                format!("{what} ({}{more}): not deleted", named.join(", ")),
            );
            continue;
        }
        report.deleted += 1;
        if report.deleted_identifiers.len() < MAX_REPORT_LIST {
            report.deleted_identifiers.push(ident);
        }
        let mut after = ex.body.clone();
        after.lifecycle = PersonState::Deleted;
        writes.deletions.push(Rewrite {
            id: ex.id,
            version: ex.version,
            before: ex.body.clone(),
            after,
        });
    }

    // Mass-deletion guard, against the source's active persons before the sync.
    if report.deleted > 0 && source_active.is_none() {
        let (_, s) = load_scan(conn, sys.id, source, &HashSet::new()).await?;
        source_active = Some(s);
    }
    report.source_persons = source_active.unwrap_or(0);
    let deleted = report.deleted as u128;
    let over_count = deleted > u128::from(req.max_deletions);
    let over_share =
        deleted * 100 > u128::from(req.max_deletion_percent) * report.source_persons as u128;
    if report.deleted > 0 && (over_count || over_share) {
        report.guard = Some(format!(
            "mass-deletion guard: the sync would delete {} of the {} persons of source '{source}' \
             (limits: at most {} persons and at most {} %)",
            report.deleted, report.source_persons, req.max_deletions, req.max_deletion_percent
        ));
    }
    Ok((report, writes))
}

/// Every employee with an identifier, in one scan: the staged ones and those of `source`
/// are decoded; returns them by folded identifier with the number of the source's active
/// persons.
async fn load_scan(
    conn: &mut AnyConnection,
    sys_id: i64,
    source: &str,
    staged: &HashSet<&str>,
) -> Result<(HashMap<String, Existing>, usize)> {
    let rows = sqlx::query(
        "SELECT id, version, marking_fold, body FROM objects \
         WHERE system_id = $1 AND kind = $2 AND marking_fold IS NOT NULL",
    )
    .bind(sys_id)
    .bind(ObjectKind::Employee.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut out = HashMap::with_capacity(rows.len().min(staged.len() * 2 + 1024));
    let mut source_active = 0;
    for r in &rows {
        let f: String = r.try_get("marking_fold")?;
        let body: String = r.try_get("body")?;
        // Only synced bodies carry the key; unsynced persons that are not staged are
        // never needed, so they are not decoded.
        if !staged.contains(f.as_str()) && !body.contains("\"synced_from\":") {
            continue;
        }
        let body = decode(&body)?;
        if body.synced_from.as_deref() == Some(source) && body.lifecycle == PersonState::Active {
            source_active += 1;
        }
        out.insert(
            f,
            Existing {
                id: r.try_get("id")?,
                version: r.try_get("version")?,
                body,
            },
        );
    }
    Ok((out, source_active))
}

/// The employees with the staged identifiers, looked up in chunks.
async fn load_lookup(
    conn: &mut AnyConnection,
    sys_id: i64,
    folded: &[String],
) -> Result<HashMap<String, Existing>> {
    let mut out = HashMap::new();
    for chunk in folded.chunks(IDS_PER_LOOKUP) {
        let mut q =
            Sql::new("SELECT id, version, marking_fold, body FROM objects WHERE system_id = ");
        q.bind(sys_id)
            .push(" AND kind = ")
            .bind(ObjectKind::Employee.as_str())
            .push(" AND marking_fold IN (")
            .bind_list(chunk.iter().cloned())
            .push(")");
        for r in q.fetch_all(&mut *conn).await? {
            let body: String = r.try_get("body")?;
            out.insert(
                r.try_get("marking_fold")?,
                Existing {
                    id: r.try_get("id")?,
                    version: r.try_get("version")?,
                    body: decode(&body)?,
                },
            );
        }
    }
    Ok(out)
}

/// What refers to each of `ids` (keys and C-keys holding them, anything else), in chunks.
async fn referrers(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<(ObjectKind, i64, String)>>> {
    let mut out: HashMap<i64, Vec<(ObjectKind, i64, String)>> = HashMap::new();
    for chunk in ids.chunks(IDS_PER_LOOKUP) {
        let mut q = Sql::new(
            "SELECT r.to_id, o.id, o.kind, o.name FROM object_refs r JOIN objects o ON o.id = r.from_id \
             WHERE r.to_id IN (",
        );
        q.bind_list(chunk.iter().copied())
            .push(") ORDER BY r.to_id, o.id");
        for r in q.fetch_all(&mut *conn).await? {
            let k: String = r.try_get("kind")?;
            let kind =
                ObjectKind::from_str_opt(&k).ok_or_else(|| StoreError::Corrupt(k.clone()))?;
            out.entry(r.try_get("to_id")?).or_default().push((
                kind,
                r.try_get("id")?,
                r.try_get("name")?,
            ));
        }
    }
    Ok(out)
}

/// Write the planned changes with their events.
async fn apply(
    conn: &mut AnyConnection,
    sys: &LockingSystem,
    actor: &Actor,
    writes: Writes,
) -> Result<()> {
    let now = ts(Utc::now());
    insert_persons(conn, sys, actor, &now, &writes.creates).await?;
    rewrite(conn, sys, actor, &now, &writes.updates, "synced").await?;
    if writes.permanent {
        delete_permanently(conn, sys, actor, &now, &writes.deletions).await?;
    } else {
        rewrite(conn, sys, actor, &now, &writes.deletions, "marked_deleted").await?;
    }
    Ok(())
}

/// Create persons in multi-row INSERTs, one event each.
async fn insert_persons(
    conn: &mut AnyConnection,
    sys: &LockingSystem,
    actor: &Actor,
    now: &str,
    creates: &[Person],
) -> Result<()> {
    let kind = ObjectKind::Employee;
    for chunk in creates.chunks(ROWS_PER_STATEMENT) {
        let mut q = Sql::new(
            "INSERT INTO objects (system_id, kind, domain_id, name, name_fold, marking, marking_fold, status, body, version, created_at, updated_at)",
        );
        let mut encoded = Vec::with_capacity(chunk.len());
        for p in chunk {
            encoded.push(encode(p)?);
        }
        q.values(chunk.iter().zip(encoded), |q, (p, json)| {
            let proj = p.projection();
            q.bind(sys.id)
                .bind(kind.as_str())
                .bind(p.domain_id)
                .bind(proj.name.clone())
                .bind(crate::fold(&proj.name))
                .bind(proj.marking.clone())
                .bind(proj.marking.as_deref().map(crate::fold))
                .bind(PersonState::Active.as_str())
                .bind(json)
                .bind(1_i64)
                .bind(now.to_string())
                .bind(now.to_string());
        });
        q.push(" RETURNING id, name");
        let rows = q.fetch_all(&mut *conn).await.map_err(|e| match e {
            StoreError::Db(d) => crate::map_unique(d, "identifier", "a synced identifier"),
            other => other,
        })?;
        // One event per new row, without values (as the import: the created person is its
        // own record).
        let mut events = Vec::with_capacity(rows.len());
        for r in &rows {
            events.push(EventRow {
                id: r.try_get("id")?,
                label: r.try_get("name")?,
                action: "synced",
                changes: "{}".into(),
            });
        }
        insert_events(&mut *conn, sys.id, actor, now, &events).await?;
    }
    Ok(())
}

/// Rewrite persons' bodies (and name and status) in multi-row UPDATEs, optimistic on the
/// version read, one event each with the field-level diff.
async fn rewrite(
    conn: &mut AnyConnection,
    sys: &LockingSystem,
    actor: &Actor,
    now: &str,
    rows: &[Rewrite],
    action: &'static str,
) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = Sql::new("WITH v (id, version, name, name_fold, status, body) AS (");
        let mut encoded = Vec::with_capacity(chunk.len());
        for w in chunk {
            encoded.push(encode(&w.after)?);
        }
        // `VALUES` without its leading space: the builder writes ` VALUES (...)`.
        q.values(chunk.iter().zip(encoded), |q, (w, json)| {
            let name = w.after.display_name();
            q.bind(w.id)
                .bind(w.version)
                .bind(name.clone())
                .bind(crate::fold(&name))
                .bind(w.after.lifecycle.as_str())
                .bind(json);
        });
        q.push(
            ") UPDATE objects SET name = v.name, name_fold = v.name_fold, status = v.status, \
             body = v.body, version = objects.version + 1, updated_at = ",
        );
        q.bind(now.to_string())
            .push(" FROM v WHERE objects.id = v.id AND objects.version = v.version AND objects.system_id = ")
            .bind(sys.id);
        let n = q.execute(&mut *conn).await?;
        if n != chunk.len() as u64 {
            return Err(StoreError::VersionMismatch {
                current: chunk.first().map_or(0, |w| w.version + 1),
            });
        }
        let events: Vec<EventRow> = chunk
            .iter()
            .map(|w| EventRow {
                id: w.id,
                label: w.after.display_name(),
                action,
                changes: diff(to_value(&w.before).as_ref(), to_value(&w.after).as_ref())
                    .to_string(),
            })
            .collect();
        insert_events(&mut *conn, sys.id, actor, now, &events).await?;
    }
    Ok(())
}

/// Delete persons permanently: rows gone (references and tags cascade), their events
/// anonymised (label N/A, no values), as `Store::delete_person` does.
async fn delete_permanently(
    conn: &mut AnyConnection,
    sys: &LockingSystem,
    actor: &Actor,
    now: &str,
    rows: &[Rewrite],
) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = Sql::new("DELETE FROM objects WHERE system_id = ");
        q.bind(sys.id)
            .push(" AND id IN (")
            .bind_list(chunk.iter().map(|w| w.id))
            .push(")");
        let n = q.execute(&mut *conn).await?;
        if n != chunk.len() as u64 {
            return Err(StoreError::VersionMismatch {
                current: chunk.first().map_or(0, |w| w.version + 1),
            });
        }
        let events: Vec<EventRow> = chunk
            .iter()
            .map(|w| EventRow {
                id: w.id,
                label: w.before.display_name(),
                action: "deleted",
                changes: "{}".into(),
            })
            .collect();
        insert_events(&mut *conn, sys.id, actor, now, &events).await?;
        let mut q =
            Sql::new("UPDATE events SET object_label = 'N/A', changes = '{}' WHERE system_id = ");
        q.bind(sys.id)
            .push(" AND object_id IN (")
            .bind_list(chunk.iter().map(|w| w.id))
            .push(")");
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Events in multi-row INSERTs.
async fn insert_events(
    conn: &mut AnyConnection,
    sys_id: i64,
    actor: &Actor,
    now: &str,
    events: &[EventRow],
) -> Result<()> {
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut q = Sql::new(
            "INSERT INTO events (system_id, at, actor_id, actor, action, object_kind, object_id, object_label, changes, correlation_id)",
        );
        q.values(chunk, |q, e| {
            q.bind(sys_id)
                .bind(now.to_string())
                .bind(actor.c_key_id)
                .bind(actor.label.clone())
                .bind(e.action)
                .bind(ObjectKind::Employee.as_str())
                .bind(e.id)
                .bind(e.label.clone())
                .bind(e.changes.clone())
                .bind(actor.correlation_id.clone());
        });
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
