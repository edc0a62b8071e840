//! The five operations: the one mapping table between XML element names and the person
//! fields of the host (REST / CSV names), the [`Employees`] trait the operations call (the
//! host's `employees` interface in the component, a fake in the tests), reading each
//! request element and writing each response element.

use lockgate_plugin_sdk::employees::{
    ChangeKind, ChangePage, Employee, EmployeeState, UpsertError, UpsertOutcome,
};
use lockgate_plugin_sdk::{Error, Person};

use crate::soap::{Detail, Fault, RowError};
use crate::xml::{Element, escape_text};

/// The service's target namespace (WSDL, schema, every body element).
pub const TNS: &str = "urn:lockgate:hr:1";

/// Employees per `UpsertEmployees` call, at most.
pub const MAX_BATCH: usize = 500;
/// Characters of one field value (identifier, name, optional field, domain, token), at most.
/// The core's own rules are stricter per field (e.g. 100 for the optional fields).
pub const MAX_FIELD_CHARS: usize = 1024;
/// `ListChanges` page size: default and largest.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// The optional person fields: XML element name and the host's (REST / CSV) name, in the
/// order of the schema's sequence.
pub const OPTIONAL_FIELDS: [(&str, &str); 17] = [
    ("title", "title"),
    ("email", "email"),
    ("phone", "phone"),
    ("organisation", "organisation"),
    ("department", "department"),
    ("street", "street"),
    ("postcode", "postcode"),
    ("language", "language"),
    ("region", "region"),
    ("job", "job"),
    ("city", "city"),
    ("state", "state"),
    ("country", "country"),
    ("companyAddress", "company_address"),
    ("location", "location"),
    ("mobilePhone", "mobile_phone"),
    ("gmdText", "gmd_text"),
];

/// The XML element name of a host field name (`first_name` → `firstName`); a name outside
/// the table is returned unchanged.
pub fn xml_field_name(host: &str) -> &str {
    match host {
        "identifier" => "identifier",
        "first_name" | "first-name" => "firstName",
        "surname" | "last_name" => "lastName",
        "domain" => "domain",
        other => OPTIONAL_FIELDS
            .iter()
            .find(|(_, h)| *h == other)
            .map_or(other, |(x, _)| x),
    }
}

/// The employee operations of the host, as the web-service client the host authenticated.
pub trait Employees {
    /// All or nothing; see `lockgate:host/employees.upsert`.
    fn upsert(
        &self,
        domain: Option<String>,
        persons: Vec<Person>,
    ) -> Result<UpsertOutcome, UpsertError>;
    fn get(&self, identifier: &str) -> Result<Employee, Error>;
    fn deactivate(&self, identifier: &str) -> Result<Employee, Error>;
    /// None: deleted permanently; some: marked as deleted.
    fn delete(&self, identifier: &str) -> Result<Option<Employee>, Error>;
    fn list_changes(&self, since: &str, limit: u32) -> Result<ChangePage, Error>;
}

/// The operations, by their body element (and wrapper) name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    UpsertEmployees,
    DeactivateEmployee,
    DeleteEmployee,
    GetEmployee,
    ListChanges,
}

impl Operation {
    pub const ALL: [Operation; 5] = [
        Operation::UpsertEmployees,
        Operation::DeactivateEmployee,
        Operation::DeleteEmployee,
        Operation::GetEmployee,
        Operation::ListChanges,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::UpsertEmployees => "UpsertEmployees",
            Operation::DeactivateEmployee => "DeactivateEmployee",
            Operation::DeleteEmployee => "DeleteEmployee",
            Operation::GetEmployee => "GetEmployee",
            Operation::ListChanges => "ListChanges",
        }
    }

    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.name() == name)
    }

    /// The `SOAPAction` of the operation (`urn:lockgate:hr:1/GetEmployee`).
    pub fn action(self) -> String {
        format!("{TNS}/{}", self.name())
    }
}

/// Runs `op` on its request element; `Ok` is the response element (in the target namespace).
pub fn call(op: Operation, request: &Element, backend: &dyn Employees) -> Result<String, Fault> {
    match op {
        Operation::UpsertEmployees => upsert(request, backend),
        Operation::GetEmployee => {
            let id = single_identifier(op, request)?;
            let e = backend.get(&id).map_err(host_fault)?;
            Ok(wrap(op, &employee_xml("employee", &e)))
        }
        Operation::DeactivateEmployee => {
            let id = single_identifier(op, request)?;
            let e = backend.deactivate(&id).map_err(host_fault)?;
            Ok(wrap(op, &employee_xml("employee", &e)))
        }
        Operation::DeleteEmployee => {
            let id = single_identifier(op, request)?;
            let inner = match backend.delete(&id).map_err(host_fault)? {
                None => "<outcome>deleted</outcome>".to_string(),
                Some(e) => format!(
                    "<outcome>markedDeleted</outcome>{}",
                    employee_xml("employee", &e)
                ),
            };
            Ok(wrap(op, &inner))
        }
        Operation::ListChanges => list_changes(request, backend),
    }
}

/// A host error as a fault: `invalid`, `not-found` and `denied` are the caller's
/// (`soap:Client`), `unavailable` and `other` the server's.
pub fn host_fault(e: Error) -> Fault {
    match e {
        Error::Invalid(m) => Fault::client(m, Detail::error("invalid", None)),
        Error::NotFound(m) => Fault::client(m, Detail::error("notFound", None)),
        Error::Denied(m) => Fault::client(m, Detail::error("denied", None)),
        Error::Unavailable(m) => Fault::server(m, Detail::error("unavailable", None)),
        Error::Other(m) => Fault::server(m, Detail::error("other", None)),
    }
}

fn wrap(op: Operation, inner: &str) -> String {
    format!(
        "<{name}Response xmlns=\"{TNS}\">{inner}</{name}Response>",
        name = op.name()
    )
}

fn invalid(op: Operation, element: &str, message: String) -> Fault {
    Fault::client(
        format!("{}: {message}", op.name()),
        Detail::error("invalid", Some(element.to_string())),
    )
}

/// The children of a request element, each in the target namespace and one of `allowed`.
fn check_children(op: Operation, request: &Element, allowed: &[&str]) -> Result<(), Fault> {
    for child in &request.children {
        if child.ns.as_deref() != Some(TNS) || !allowed.contains(&child.name.as_str()) {
            let shown = child.display_name(TNS);
            return Err(invalid(
                op,
                &child.name,
                format!(
                    "the element `{shown}` (line {}) is not part of the request; expected {}",
                    child.line,
                    allowed
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The text of the optional simple element `name` (at most once), trimmed.
fn simple(op: Operation, request: &Element, name: &str) -> Result<Option<String>, Fault> {
    let mut found = request.children.iter().filter(|c| c.name == name);
    let Some(first) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(invalid(
            op,
            name,
            format!("`{name}` is given more than once"),
        ));
    }
    if !first.children.is_empty() {
        return Err(invalid(
            op,
            name,
            format!("`{name}` must hold text, not elements"),
        ));
    }
    let value = first.text.trim();
    if value.chars().count() > MAX_FIELD_CHARS {
        return Err(invalid(
            op,
            name,
            format!("`{name}` is longer than {MAX_FIELD_CHARS} characters"),
        ));
    }
    Ok(Some(value.to_string()))
}

fn single_identifier(op: Operation, request: &Element) -> Result<String, Fault> {
    check_children(op, request, &["identifier"])?;
    match simple(op, request, "identifier")? {
        Some(id) if !id.is_empty() => Ok(id),
        Some(_) => Err(invalid(
            op,
            "identifier",
            "`identifier` must not be empty".into(),
        )),
        None => Err(invalid(op, "identifier", "`identifier` is required".into())),
    }
}

fn upsert(request: &Element, backend: &dyn Employees) -> Result<String, Fault> {
    let op = Operation::UpsertEmployees;
    check_children(op, request, &["domain", "employee"])?;
    let domain = simple(op, request, "domain")?.filter(|d| !d.is_empty());
    let rows: Vec<&Element> = request
        .children
        .iter()
        .filter(|c| c.name == "employee")
        .collect();
    if rows.is_empty() {
        return Err(invalid(
            op,
            "employee",
            "at least one `employee` is required".into(),
        ));
    }
    if rows.len() > MAX_BATCH {
        return Err(Fault::client(
            format!(
                "UpsertEmployees: {} employees in one call; at most {MAX_BATCH} are accepted (nothing was written)",
                rows.len()
            ),
            Detail::error("limit", Some("employee".into())),
        ));
    }
    let mut persons = Vec::with_capacity(rows.len());
    let mut errors = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        match read_person(row) {
            Ok(p) => persons.push(p),
            Err((identifier, mut row_errors)) => {
                for e in &mut row_errors {
                    e.index = index;
                    e.identifier.clone_from(&identifier);
                }
                errors.extend(row_errors);
            }
        }
    }
    if !errors.is_empty() {
        return Err(Fault::invalid_rows(errors));
    }
    match backend.upsert(domain, persons) {
        Ok(o) => Ok(wrap(
            op,
            &format!(
                "<created>{}</created><updated>{}</updated><unchanged>{}</unchanged>",
                o.created, o.updated, o.unchanged
            ),
        )),
        Err(UpsertError::InvalidPersons(list)) if !list.is_empty() => Err(Fault::invalid_rows(
            list.into_iter()
                .map(|p| RowError {
                    index: p.index as usize,
                    identifier: p.identifier,
                    field: xml_field_name(&p.field).to_string(),
                    rule: p.reason,
                })
                .collect(),
        )),
        Err(UpsertError::InvalidPersons(_)) => Err(Fault::client(
            "UpsertEmployees: the employees were refused without a reason (nothing was written)",
            Detail::error("invalid", None),
        )),
        Err(UpsertError::Failed(e)) => Err(host_fault(e)),
    }
}

/// One `employee` element as a person, or its identifier (as sent, or empty) and every
/// problem found in it (index and identifier filled in by the caller).
fn read_person(row: &Element) -> Result<Person, (String, Vec<RowError>)> {
    let mut errors = Vec::new();
    let mut problem = |field: &str, rule: String| {
        errors.push(RowError {
            index: 0,
            identifier: String::new(),
            field: field.to_string(),
            rule,
        });
    };
    let mut identifier = None;
    let mut first_name = None;
    let mut last_name = None;
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for child in &row.children {
        let name = child.name.as_str();
        if child.ns.as_deref() != Some(TNS) {
            problem(
                name,
                format!(
                    "the element `{}` is not part of an employee",
                    child.display_name(TNS)
                ),
            );
            continue;
        }
        let host = match name {
            "identifier" | "firstName" | "lastName" => None,
            _ => match OPTIONAL_FIELDS.iter().find(|(x, _)| *x == name) {
                Some((_, h)) => Some(*h),
                None => {
                    problem(name, format!("`{name}` is not an element of an employee"));
                    continue;
                }
            },
        };
        if seen.contains(&name) {
            problem(name, format!("`{name}` is given more than once"));
            continue;
        }
        seen.push(name);
        if !child.children.is_empty() {
            problem(name, "must hold text, not elements".into());
            continue;
        }
        let value = child.text.trim().to_string();
        if value.chars().count() > MAX_FIELD_CHARS {
            problem(
                name,
                format!("must be at most {MAX_FIELD_CHARS} characters"),
            );
            continue;
        }
        match (name, host) {
            ("identifier", _) => identifier = Some(value),
            ("firstName", _) => first_name = Some(value),
            ("lastName", _) => last_name = Some(value),
            (_, Some(h)) => fields.push((h.to_string(), value)),
            _ => {}
        }
    }
    for (name, value) in [
        ("identifier", &identifier),
        ("firstName", &first_name),
        ("lastName", &last_name),
    ] {
        match value {
            None => problem(name, "is required".into()),
            Some(v) if v.is_empty() => problem(name, "must not be empty".into()),
            Some(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err((identifier.unwrap_or_default(), errors));
    }
    // Keep the schema's order, whatever order the caller sent.
    fields.sort_by_key(|(h, _)| OPTIONAL_FIELDS.iter().position(|(_, f)| f == h));
    Ok(Person {
        identifier: identifier.unwrap_or_default(),
        first_name: first_name.unwrap_or_default(),
        surname: last_name.unwrap_or_default(),
        fields,
        active: true,
    })
}

fn list_changes(request: &Element, backend: &dyn Employees) -> Result<String, Fault> {
    let op = Operation::ListChanges;
    check_children(op, request, &["sinceToken", "limit"])?;
    let since = simple(op, request, "sinceToken")?.unwrap_or_default();
    let limit = match simple(op, request, "limit")? {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(invalid(
                    op,
                    "limit",
                    format!("`limit` must be a whole number from 1 to {MAX_LIMIT}"),
                ));
            }
        },
    };
    let page = backend.list_changes(&since, limit).map_err(host_fault)?;
    let mut inner = String::new();
    for c in &page.changes {
        inner.push_str(&format!("<change><id>{}</id>", c.id));
        if let Some(identifier) = &c.identifier {
            inner.push_str(&format!(
                "<identifier>{}</identifier>",
                escape_text(identifier)
            ));
        }
        inner.push_str(&format!(
            "<kind>{}</kind><at>{}</at></change>",
            change_kind(c.kind),
            date_time(c.at)
        ));
    }
    inner.push_str(&format!(
        "<nextToken>{}</nextToken><more>{}</more>",
        escape_text(&page.next_token),
        page.more
    ));
    Ok(wrap(op, &inner))
}

/// The schema's name of a change kind.
pub fn change_kind(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Created => "created",
        ChangeKind::Updated => "updated",
        ChangeKind::Deactivated => "deactivated",
        ChangeKind::Reactivated => "reactivated",
        ChangeKind::MarkedDeleted => "markedDeleted",
        ChangeKind::Restored => "restored",
        ChangeKind::Deleted => "deleted",
    }
}

/// The schema's name of an employee state.
pub fn employee_status(s: EmployeeState) -> &'static str {
    match s {
        EmployeeState::Active => "active",
        EmployeeState::Deactivated => "deactivated",
        EmployeeState::MarkedDeleted => "markedDeleted",
    }
}

/// An `Employee` element (unprefixed, in the default namespace of its wrapper), its fields in
/// the schema's order; a field the host names that the table does not know is left out.
pub fn employee_xml(element: &str, e: &Employee) -> String {
    let p = &e.person;
    let mut out = format!(
        "<{element}><id>{}</id><identifier>{}</identifier><firstName>{}</firstName><lastName>{}</lastName>",
        e.id,
        escape_text(&p.identifier),
        escape_text(&p.first_name),
        escape_text(&p.surname)
    );
    for (xml, host) in OPTIONAL_FIELDS {
        if let Some((_, v)) = p.fields.iter().find(|(k, _)| k == host) {
            out.push_str(&format!("<{xml}>{}</{xml}>", escape_text(v)));
        }
    }
    out.push_str(&format!(
        "<status>{}</status><domain>{}</domain>",
        employee_status(e.state),
        escape_text(&e.domain)
    ));
    if let Some(s) = &e.synced_from {
        out.push_str(&format!("<syncedFrom>{}</syncedFrom>", escape_text(s)));
    }
    out.push_str(&format!(
        "<version>{}</version><updatedAt>{}</updatedAt></{element}>",
        e.version,
        date_time(e.updated_at)
    ));
    out
}

/// Milliseconds since the Unix epoch as an `xs:dateTime` in UTC
/// (`2026-03-01T08:30:00.250Z`).
pub fn date_time(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapping_table_covers_every_host_field_once() {
        let hosts: Vec<&str> = OPTIONAL_FIELDS.iter().map(|(_, h)| *h).collect();
        for h in lockgate_plugin_sdk::PERSON_FIELDS {
            assert_eq!(hosts.iter().filter(|x| **x == h).count(), 1, "{h}");
        }
        assert_eq!(xml_field_name("first_name"), "firstName");
        assert_eq!(xml_field_name("surname"), "lastName");
        assert_eq!(xml_field_name("last_name"), "lastName");
        assert_eq!(xml_field_name("company_address"), "companyAddress");
        assert_eq!(xml_field_name("gmd_text"), "gmdText");
        assert_eq!(xml_field_name("email"), "email");
        assert_eq!(xml_field_name("tags"), "tags");
    }

    #[test]
    fn date_times_are_utc_iso_8601() {
        assert_eq!(date_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(date_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(date_time(1_772_353_800_250), "2026-03-01T08:30:00.250Z");
        assert_eq!(date_time(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn operations_have_names_and_actions() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.name()), Some(op));
            assert_eq!(op.action(), format!("urn:lockgate:hr:1/{}", op.name()));
        }
        assert_eq!(Operation::from_name("DropTable"), None);
    }
}
