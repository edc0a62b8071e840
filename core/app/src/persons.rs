//! Person use cases for connectors: employees a plugin hands over, upserted all-or-nothing
//! through the same matching and validation as the CSV import, then reconciled.

use lockgate_model::{
    ObjectKind,
    employee_csv::{CsvPerson, CsvRowError, ParsedFile},
    person::Person,
};
use lockgate_store::persons::ImportReport;

use crate::{App, Result, WriteContext};

impl App {
    /// Upsert employees into the domain named `domain` (create, or update by identifier),
    /// all-or-nothing: one invalid person writes nothing and the report lists every invalid
    /// one, numbered by its index in `persons`.
    ///
    /// Nothing is reconciled: an upsert keeps each person's lifecycle and access profiles
    /// (the import never takes them from outside), and those are the only person fields a
    /// key's defined program reads.
    pub async fn upsert_employees(
        &self,
        cx: &WriteContext,
        domain: &str,
        persons: Vec<(usize, Person)>,
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
                    domain: Some(domain.to_owned()),
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
            .import_parsed(cx, ObjectKind::Employee, parsed, true, false, &|_, _| {})
            .await?)
    }
}
