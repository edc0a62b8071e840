//! Persons and privacy: deactivate / reactivate, delete permanently or mark as deleted,
//! restore, and the employee CSV import and export.

use std::collections::HashMap;

use chrono::Utc;
use lockgate_model::{
    ObjectKind, Resource,
    domain::Domain,
    employee_csv::{self, CsvRowError},
    event::diff,
    person::{Person, PersonState},
    system::{LockingSystem, PersonDeletion},
    validation::FieldError,
};
use serde::Serialize;
use sqlx::{Any, Row, Transaction};

use crate::{
    Edit, Result, Store, StoreError, WriteContext,
    events::EventDraft,
    fold,
    objects::{Actor, Scope, Stored},
    sql::Sql,
    ts,
};

/// Today's date as used in generated identifiers.
pub fn today() -> String {
    Utc::now().format("%Y-%m-%d").to_string()
}

/// A row the import left alone on purpose.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SkippedRow {
    pub line: usize,
    pub identifier: Option<String>,
    pub reason: String,
}

/// What an import does when some rows cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportAtomicity {
    /// The valid rows are applied; invalid and skipped rows are reported (the CSV import).
    PerRow,
    /// One invalid row writes nothing; skipped rows are reported (a connector's upsert).
    InvalidRefuses,
    /// One invalid or skipped row writes nothing (the HR web service: the caller sends the
    /// batch and can fix it).
    InvalidOrSkippedRefuses,
}

/// What an import did (or, on a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    pub delimiter: char,
    /// Rows that passed every check.
    pub valid_rows: usize,
    pub created: usize,
    pub updated: usize,
    /// Valid rows identical to the stored person.
    pub unchanged: usize,
    pub skipped: Vec<SkippedRow>,
    pub invalid: Vec<CsvRowError>,
}

enum Plan {
    Create(Person),
    Update {
        id: i64,
        version: i64,
        before: Box<Person>,
        after: Box<Person>,
    },
}

struct Existing {
    id: i64,
    version: i64,
    domain_id: Option<i64>,
    body: Person,
}

impl Store {
    async fn person_holds_keys(
        conn: &mut sqlx::AnyConnection,
        id: i64,
    ) -> Result<Vec<(ObjectKind, i64, String)>> {
        Self::referrers_in(conn, id, 5).await
    }

    /// Change a person's lifecycle state (deactivate, reactivate, mark deleted, restore).
    async fn set_lifecycle(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
        (from, to, action): (PersonState, PersonState, &str),
        expected_version: Option<i64>,
    ) -> Result<Stored<Person>> {
        let mut tx = self.write_tx().await?;
        let s = Self::set_lifecycle_in(
            &mut tx,
            cx,
            kind,
            id,
            (from, to, action),
            expected_version,
            false,
        )
        .await?;
        tx.commit().await?;
        Ok(s)
    }

    /// [`Store::set_lifecycle`] inside a transaction; `by_source`: the directory source that
    /// maintains the person moves it (only it may deactivate or delete a synced person).
    pub(crate) async fn set_lifecycle_in(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
        (from, to, action): (PersonState, PersonState, &str),
        expected_version: Option<i64>,
        by_source: bool,
    ) -> Result<Stored<Person>> {
        let (sys, scope) = (&cx.system, &cx.scope);
        let current: Stored<Person> = Self::get_in(tx, sys.id, kind, id, scope).await?;
        if let Some(v) = expected_version
            && v != current.version
        {
            return Err(StoreError::VersionMismatch {
                current: current.version,
            });
        }
        if current.body.lifecycle != from {
            return Err(StoreError::Refused {
                message: format!(
                    "person {id} is {}, not {}",
                    current.body.lifecycle.as_str(),
                    from.as_str()
                ),
            });
        }
        if to != PersonState::Active {
            if current.body.synced_from.is_some() && !by_source {
                return Err(StoreError::Refused {
                    message: format!("person {id} is maintained by a directory sync"),
                });
            }
            let users = Self::person_holds_keys(tx, id).await?;
            if !users.is_empty() {
                let list: Vec<String> = users
                    .iter()
                    .map(|(k, i, n)| format!("{} {i} '{n}'", k.as_str()))
                    .collect();
                return Err(StoreError::InUse {
                    message: format!(
                        "person {id} still holds or is referenced by {}",
                        list.join(", ")
                    ),
                });
            }
        }
        Self::update_in(
            tx,
            cx,
            kind,
            id,
            Edit {
                expected_version: None,
                action,
                trusted: true,
            },
            |p: &mut Person| {
                p.lifecycle = to;
                Ok(())
            },
        )
        .await
    }

    /// Deactivate (setting "delete permanently" only): hidden, shown as N/A, reversible.
    pub async fn deactivate_person(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
    ) -> Result<Stored<Person>> {
        let sys = &cx.system;
        if sys.settings.person_deletion != PersonDeletion::DeletePermanently {
            return Err(StoreError::Refused {
                message: "deactivation is only available when persons are deleted permanently"
                    .into(),
            });
        }
        self.set_lifecycle(
            cx,
            kind,
            id,
            (PersonState::Active, PersonState::Deactivated, "deactivated"),
            None,
        )
        .await
    }

    pub async fn reactivate_person(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
    ) -> Result<Stored<Person>> {
        self.set_lifecycle(
            cx,
            kind,
            id,
            (PersonState::Deactivated, PersonState::Active, "reactivated"),
            None,
        )
        .await
    }

    pub async fn restore_person(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
    ) -> Result<Stored<Person>> {
        self.set_lifecycle(
            cx,
            kind,
            id,
            (PersonState::Deleted, PersonState::Active, "restored"),
            None,
        )
        .await
    }

    /// Delete a person as the system setting says: permanently (events anonymised) or marked as deleted.
    pub async fn delete_person(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
        expected_version: Option<i64>,
    ) -> Result<()> {
        let (sys, scope) = (&cx.system, &cx.scope);
        match sys.settings.person_deletion {
            PersonDeletion::MarkAsDeleted => {
                self.set_lifecycle(
                    cx,
                    kind,
                    id,
                    (PersonState::Active, PersonState::Deleted, "marked_deleted"),
                    expected_version,
                )
                .await?;
            }
            PersonDeletion::DeletePermanently => {
                let mut tx = self.write_tx().await?;
                let current: Stored<Person> =
                    Self::get_in(&mut tx, sys.id, kind, id, scope).await?;
                if current.body.synced_from.is_some() {
                    return Err(StoreError::Refused {
                        message: format!("person {id} is maintained by a directory sync"),
                    });
                }
                if current.body.lifecycle == PersonState::Deactivated {
                    return Err(StoreError::Refused {
                        message: format!("person {id} is deactivated; reactivate first"),
                    });
                }
                Self::delete_permanently(&mut tx, cx, kind, id, expected_version).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn delete_permanently(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
        expected_version: Option<i64>,
    ) -> Result<()> {
        Self::delete_in::<Person>(tx, cx, kind, id, expected_version, "deleted").await?;
        Self::anonymise_events(tx, cx.system.id, id).await
    }

    /// Delete permanently every person marked as deleted (switching the setting).
    pub(crate) async fn purge_marked_persons(
        tx: &mut Transaction<'static, Any>,
        sys: &LockingSystem,
        actor: &Actor,
    ) -> Result<usize> {
        let rows = sqlx::query("SELECT id, kind FROM objects WHERE system_id = $1 AND kind IN ('employee', 'visitor') AND status = 'deleted'")
            .bind(sys.id)
            .fetch_all(&mut **tx)
            .await?;
        let cx = WriteContext {
            system: sys.clone(),
            scope: Scope::all(),
            actor: actor.clone(),
            now: Utc::now(),
        };
        for r in &rows {
            let k: String = r.try_get("kind")?;
            let kind =
                ObjectKind::from_str_opt(&k).ok_or_else(|| StoreError::Corrupt(k.clone()))?;
            Self::delete_permanently(tx, &cx, kind, r.try_get("id")?, None).await?;
        }
        Ok(rows.len())
    }

    /// Import employees (or visitors) from CSV. File-level errors refuse everything;
    /// valid rows are applied in one transaction, invalid and skipped rows are reported.
    pub async fn import_persons(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        bytes: &[u8],
        dry_run: bool,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<ImportReport> {
        let parsed = employee_csv::parse(bytes)?;
        self.import_parsed(cx, kind, parsed, ImportAtomicity::PerRow, dry_run, progress)
            .await
    }

    /// Import persons already parsed (a CSV file, or persons a plugin hands over), each
    /// with the line (or index) its errors name. `atomicity` says whether rows that cannot be
    /// applied stop the others; the report lists every one either way.
    pub async fn import_parsed(
        &self,
        cx: &crate::WriteContext,
        kind: ObjectKind,
        parsed: employee_csv::ParsedFile,
        atomicity: ImportAtomicity,
        dry_run: bool,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<ImportReport> {
        let (sys, scope, actor) = (&cx.system, &cx.scope, &cx.actor);
        let mut report = ImportReport {
            dry_run,
            delimiter: parsed.delimiter,
            valid_rows: 0,
            created: 0,
            updated: 0,
            unchanged: 0,
            skipped: Vec::new(),
            invalid: parsed.invalid,
        };
        let domains: HashMap<String, (i64, Option<i64>)> = self
            .list_all::<Domain>(sys.id, ObjectKind::Domain, &Scope::all(), 100_000)
            .await?
            .into_iter()
            .map(|d| (fold(&d.body.name), (d.id, Some(d.id))))
            .collect();

        // Existing persons with the identifiers in the file.
        let idents: Vec<String> = parsed
            .valid
            .iter()
            .filter_map(|r| r.person.identifier.as_deref().map(fold))
            .collect();
        let mut existing: HashMap<String, Existing> = HashMap::new();
        for chunk in idents.chunks(500) {
            let mut q = Sql::new(
                "SELECT id, version, domain_id, marking_fold, body FROM objects WHERE system_id = ",
            );
            q.bind(sys.id)
                .push(" AND kind = ")
                .bind(kind.as_str())
                .push(" AND marking_fold IN (")
                .bind_list(chunk.iter().cloned())
                .push(")");
            let mut conn = self.pool().acquire().await?;
            for r in q.fetch_all(&mut conn).await? {
                let body: String = r.try_get("body")?;
                existing.insert(
                    r.try_get("marking_fold")?,
                    Existing {
                        id: r.try_get("id")?,
                        version: r.try_get("version")?,
                        domain_id: r.try_get("domain_id")?,
                        body: serde_json::from_str(&body)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    },
                );
            }
        }

        let mut next_generated = self.next_generated_identifier(sys.id, kind).await?;
        let in_file: std::collections::HashSet<String> = idents.iter().cloned().collect();
        let today = today();
        let mut plans: Vec<(usize, Plan)> = Vec::new();
        for row in parsed.valid {
            let reject = |report: &mut ImportReport, field: &str, message: String| {
                report.invalid.push(CsvRowError {
                    line: row.line,
                    errors: vec![FieldError {
                        field: field.into(),
                        message,
                    }],
                });
            };
            let domain_id = match &row.domain {
                Some(name) => match domains.get(&fold(name)) {
                    Some((id, d)) if scope.allows(*d) => Some(*id),
                    _ => {
                        reject(
                            &mut report,
                            "domain",
                            format!("no domain '{name}' among your domains"),
                        );
                        continue;
                    }
                },
                None => None,
            };
            let found = row
                .person
                .identifier
                .as_deref()
                .map(fold)
                .and_then(|i| existing.get(&i));
            match found {
                Some(ex) => {
                    let reason = match ex.body.lifecycle {
                        PersonState::Deactivated => Some("the person is deactivated"),
                        PersonState::Deleted => Some("the person is marked as deleted"),
                        PersonState::Active if ex.body.synced_from.is_some() => {
                            Some("the person is maintained by a directory sync")
                        }
                        PersonState::Active => None,
                    };
                    if let Some(reason) = reason {
                        report.skipped.push(SkippedRow {
                            line: row.line,
                            identifier: row.person.identifier.clone(),
                            reason: reason.into(),
                        });
                        continue;
                    }
                    if !scope.allows(ex.domain_id) {
                        reject(
                            &mut report,
                            "identifier",
                            "belongs to a person outside your domains".into(),
                        );
                        continue;
                    }
                    let mut after = row.person.clone();
                    after.domain_id = domain_id.unwrap_or(ex.body.domain_id);
                    after.access_profile_ids = ex.body.access_profile_ids.clone();
                    after.tags = ex.body.tags.clone();
                    after.links = ex.body.links.clone();
                    after.lifecycle = ex.body.lifecycle;
                    after.identifier = ex.body.identifier.clone();
                    report.valid_rows += 1;
                    if after == ex.body {
                        report.unchanged += 1;
                    } else {
                        report.updated += 1;
                        plans.push((
                            row.line,
                            Plan::Update {
                                id: ex.id,
                                version: ex.version,
                                before: Box::new(ex.body.clone()),
                                after: Box::new(after),
                            },
                        ));
                    }
                }
                None => {
                    let Some(d) = domain_id.or(sys
                        .settings
                        .initial_person_domain
                        .filter(|d| scope.allows(Some(*d))))
                    else {
                        reject(
                            &mut report,
                            "domain",
                            "is required: no initial person domain among your domains".into(),
                        );
                        continue;
                    };
                    let mut p = row.person.clone();
                    p.domain_id = d;
                    if p.identifier.is_none() {
                        // Skip numbers an identifier in the file already uses.
                        let generated = loop {
                            let candidate = format!("{today}:{next_generated}");
                            next_generated += 1;
                            if !in_file.contains(&fold(&candidate)) {
                                break candidate;
                            }
                        };
                        p.identifier = Some(generated);
                    }
                    report.valid_rows += 1;
                    report.created += 1;
                    plans.push((row.line, Plan::Create(p)));
                }
            }
        }
        report.invalid.sort_by_key(|r| r.line);
        let refused = match atomicity {
            ImportAtomicity::PerRow => false,
            ImportAtomicity::InvalidRefuses => !report.invalid.is_empty(),
            ImportAtomicity::InvalidOrSkippedRefuses => {
                !report.invalid.is_empty() || !report.skipped.is_empty()
            }
        };
        if dry_run || plans.is_empty() || refused {
            return Ok(report);
        }

        let total = plans.len();
        let mut tx = self.write_tx().await?;
        let now = ts(cx.now);
        let mut done = 0usize;
        let (creates, updates): (Vec<_>, Vec<_>) = plans
            .into_iter()
            .partition(|(_, p)| matches!(p, Plan::Create(_)));
        let creates: Vec<Person> = creates
            .into_iter()
            .filter_map(|(_, p)| {
                if let Plan::Create(p) = p {
                    Some(p)
                } else {
                    None
                }
            })
            .collect();
        for chunk in creates.chunks(400) {
            let mut q = Sql::new(
                "INSERT INTO objects (system_id, kind, domain_id, name, name_fold, marking, marking_fold, status, body, version, created_at, updated_at)",
            );
            let mut encoded = Vec::with_capacity(chunk.len());
            for p in chunk {
                encoded.push(
                    serde_json::to_string(p).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
            q.values(chunk.iter().zip(encoded), |q, (p, json)| {
                let proj = p.projection();
                q.bind(sys.id)
                    .bind(kind.as_str())
                    .bind(p.domain_id)
                    .bind(proj.name.clone())
                    .bind(fold(&proj.name))
                    .bind(proj.marking.clone())
                    .bind(proj.marking.as_deref().map(fold))
                    .bind("active")
                    .bind(json)
                    .bind(1_i64)
                    .bind(now.clone())
                    .bind(now.clone());
            });
            // The new ids come back with the insert (no lookup: inside this transaction the
            // planner's statistics do not know the new rows yet).
            q.push(" RETURNING id, name");
            let rows = q.fetch_all(&mut tx).await.map_err(|e| match e {
                StoreError::Db(d) => {
                    crate::map_unique(d, "identifier", "an identifier in this file")
                }
                other => other,
            })?;
            let mut ev = Sql::new(
                "INSERT INTO events (system_id, at, actor_id, actor, action, object_kind, object_id, object_label, changes, correlation_id)",
            );
            let mut ids = Vec::with_capacity(rows.len());
            for r in &rows {
                ids.push((r.try_get::<i64, _>("id")?, r.try_get::<String, _>("name")?));
            }
            if !ids.is_empty() {
                ev.values(ids, |q, (id, name)| {
                    q.bind(sys.id)
                        .bind(now.clone())
                        .bind(actor.c_key_id)
                        .bind(actor.label.clone())
                        .bind("imported")
                        .bind(kind.as_str())
                        .bind(id)
                        .bind(name)
                        .bind("{}")
                        .bind(actor.correlation_id.clone());
                });
                ev.execute(&mut tx).await?;
            }
            done += chunk.len();
            progress(done, total);
        }
        for (_, plan) in updates {
            if let Plan::Update {
                id,
                version,
                before,
                after,
            } = plan
            {
                let proj = after.projection();
                let json = serde_json::to_string(&*after)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let res = sqlx::query(
                    "UPDATE objects SET domain_id = $1, name = $2, name_fold = $3, body = $4, version = version + 1, updated_at = $5 \
                     WHERE id = $6 AND version = $7",
                )
                .bind(after.domain_id)
                .bind(&proj.name)
                .bind(fold(&proj.name))
                .bind(json)
                .bind(&now)
                .bind(id)
                .bind(version)
                .execute(&mut *tx)
                .await?;
                if res.rows_affected() != 1 {
                    return Err(StoreError::VersionMismatch {
                        current: version + 1,
                    });
                }
                let changes = diff(
                    serde_json::to_value(&*before).ok().as_ref(),
                    serde_json::to_value(&*after).ok().as_ref(),
                );
                EventDraft::new(kind, Some(id), &proj.name, "imported", changes)
                    .insert(&mut tx, sys.id, actor)
                    .await?;
                done += 1;
                if done.is_multiple_of(200) || done == total {
                    progress(done, total);
                }
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Next running number for identifiers generated today ("YYYY-MM-DD:N"), used when
    /// a person is created without an identifier.
    pub async fn next_generated_identifier(&self, sys_id: i64, kind: ObjectKind) -> Result<u64> {
        let prefix = format!("{}:", Utc::now().format("%Y-%m-%d"));
        let rows = sqlx::query("SELECT marking FROM objects WHERE system_id = $1 AND kind = $2 AND marking_fold >= $3 AND marking_fold < $4")
            .bind(sys_id)
            .bind(kind.as_str())
            .bind(&prefix)
            .bind(format!("{prefix}\u{10FFFF}"))
            .fetch_all(self.pool())
            .await?;
        let mut max = 0u64;
        for r in rows {
            let m: String = r.try_get("marking")?;
            if let Some(n) = m.strip_prefix(&prefix).and_then(|s| s.parse::<u64>().ok()) {
                max = max.max(n);
            }
        }
        Ok(max + 1)
    }

    /// Persons to export (active only; deactivated and deleted persons are never exported), with domain names.
    pub async fn export_persons(
        &self,
        sys: &LockingSystem,
        kind: ObjectKind,
        scope: &Scope,
    ) -> Result<Vec<(Person, String)>> {
        let domains: HashMap<i64, String> = self
            .list_all::<Domain>(sys.id, ObjectKind::Domain, &Scope::all(), 100_000)
            .await?
            .into_iter()
            .map(|d| (d.id, d.body.name))
            .collect();
        let persons = self
            .list_all::<Person>(sys.id, kind, scope, 1_000_000)
            .await?;
        Ok(persons
            .into_iter()
            .filter(|p| p.body.lifecycle == PersonState::Active)
            .map(|p| {
                let d = domains.get(&p.body.domain_id).cloned().unwrap_or_default();
                (p.body, d)
            })
            .collect())
    }
}
