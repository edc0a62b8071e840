//! Person use cases for connectors: employees a plugin hands over, upserted all-or-nothing
//! through the same matching and validation as the CSV import, then reconciled.

use lockgate_model::{
    ObjectKind,
    employee_csv::{CsvPerson, CsvRowError, ParsedFile},
    person::Person,
};
use lockgate_store::persons::{ImportAtomicity, ImportReport};

use crate::{App, Result, WriteContext};

impl App {
    /// Upsert employees, new ones into the domain named `domain` (none: the system's initial
    /// person domain) (create, or update by identifier), all or nothing as `atomicity` says
    /// (one invalid person, and with `InvalidOrSkippedRefuses` one the import leaves alone,
    /// writes nothing); the report lists every such person, numbered by its index in
    /// `persons`. `dry_run`: judge only, write nothing.
    ///
    /// Nothing is reconciled: an upsert keeps each person's lifecycle and access profiles
    /// (the import never takes them from outside), and those are the only person fields a
    /// key's defined program reads.
    pub async fn upsert_employees(
        &self,
        cx: &WriteContext,
        domain: Option<&str>,
        persons: Vec<(usize, Person)>,
        atomicity: ImportAtomicity,
        dry_run: bool,
    ) -> Result<ImportReport> {
        let mut parsed = ParsedFile {
            delimiter: ';',
            valid: Vec::with_capacity(persons.len()),
            invalid: Vec::new(),
        };
        for (index, person) in persons {
            let errors = person.validate_fields(false);
            if errors.is_empty() {
                parsed.valid.push(CsvPerson {
                    line: index,
                    person,
                    domain: domain.map(str::to_owned),
                });
            } else {
                parsed.invalid.push(CsvRowError {
                    line: index,
                    errors: errors.errors,
                });
            }
        }
        Ok(self
            .store
            .import_parsed(
                cx,
                ObjectKind::Employee,
                parsed,
                atomicity,
                dry_run,
                &|_, _| {},
            )
            .await?)
    }
}

/// A person's lifecycle move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonMove {
    Deactivate,
    Reactivate,
    Restore,
}

impl App {
    /// Deactivate, reactivate or restore a person; the keys they hold are reconciled.
    pub async fn move_person(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
        to: PersonMove,
    ) -> Result<lockgate_store::Stored<Person>> {
        let s = match to {
            PersonMove::Deactivate => self.store.deactivate_person(cx, kind, id).await?,
            PersonMove::Reactivate => self.store.reactivate_person(cx, kind, id).await?,
            PersonMove::Restore => self.store.restore_person(cx, kind, id).await?,
        };
        self.reconcile_after(cx, kind, &[id]).await;
        Ok(s)
    }

    /// Import a CSV file of persons (`dry_run`: report only); an applied import reconciles
    /// the whole system.
    pub async fn import_persons(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        bytes: &[u8],
        dry_run: bool,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<ImportReport> {
        let parsed =
            lockgate_model::employee_csv::parse(bytes).map_err(lockgate_store::StoreError::from)?;
        let report = self
            .store
            .import_parsed(cx, kind, parsed, ImportAtomicity::PerRow, dry_run, progress)
            .await?;
        if !dry_run {
            self.reconcile_after(cx, kind, &[]).await;
        }
        Ok(report)
    }
}

impl App {
    /// Apply one directory sync (LDAP / AD / HR source) in one transaction with its
    /// watermark. Persons it deletes or deactivates lose what their profiles gave their
    /// keys, so such a sync reconciles the whole system; creates and updates keep each
    /// person's lifecycle and profiles and reconcile nothing.
    pub async fn sync_directory(
        &self,
        cx: &WriteContext,
        req: lockgate_store::DirectorySync<'_>,
    ) -> Result<lockgate_store::DirectorySyncReport> {
        let report = self
            .store
            .sync_directory(&cx.system, &cx.actor, req)
            .await?;
        if !report.dry_run && report.deleted + report.inactive > 0 {
            self.reconcile_after(cx, ObjectKind::Employee, &[]).await;
        }
        Ok(report)
    }
}
