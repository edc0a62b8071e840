//! The employee CSV format: parsing and checking an import file, and writing an export.
//!
//! UTF-8, comma or semicolon separated, quoted fields, a header row naming the
//! 21 columns in a fixed order (English or German), at most 7 MiB and 10 000
//! data rows. An export adds a trailing `Tags` column, which an import ignores.

use serde::Serialize;

use crate::{person::Person, validation::FieldError};

/// Largest import file accepted, in bytes (7 MiB).
pub const MAX_FILE_BYTES: usize = 7 * 1024 * 1024;
/// Most data rows in one import file.
pub const MAX_ROWS: usize = 10_000;

/// Column headers in order, English.
pub const HEADER_EN: [&str; 21] = [
    "Identifier",
    "Title",
    "First name",
    "Last name",
    "Domain",
    "Email",
    "Phone",
    "Organisation",
    "Department",
    "Street",
    "Postcode",
    "Language",
    "Region",
    "Job",
    "City",
    "State",
    "Country",
    "Company address",
    "Location",
    "Mobile phone",
    "GMD text",
];

/// Column headers in order, German.
pub const HEADER_DE: [&str; 21] = [
    "Kennung",
    "Titel",
    "Vorname",
    "Nachname",
    "Domäne",
    "E-Mail",
    "Telefon",
    "Organisation",
    "Abteilung",
    "Straße",
    "Postleitzahl",
    "Sprache",
    "Region",
    "Beruf",
    "Stadt",
    "Bundesland",
    "Land",
    "Firmenadresse",
    "Standort",
    "Mobiltelefon",
    "GMD-Text",
];

/// The extra column an export writes and an import ignores.
pub const TAGS_HEADER: [&str; 2] = ["Tags", "Tags"];

/// Why a whole file was refused (nothing is imported).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("the file is {size} bytes; at most {MAX_FILE_BYTES} bytes (7 MiB) are accepted")]
    TooLarge { size: usize },
    #[error("line {line}: the file is not UTF-8 text")]
    NotUtf8 { line: usize },
    #[error("the file is empty; the first line must be the header")]
    Empty,
    #[error(
        "line 1: the header does not match: column {column} is '{found}', expected '{expected}'"
    )]
    Header {
        column: usize,
        found: String,
        expected: String,
    },
    #[error("line 1: the header has {found} columns; expected 21 (or 22 with Tags)")]
    HeaderColumns { found: usize },
    #[error("the file has more than {MAX_ROWS} data rows")]
    TooManyRows,
    #[error("line {line}: {message}")]
    Malformed { line: usize, message: String },
}

/// One data row that parsed and checked out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CsvPerson {
    /// 1-based line number in the file where the row starts.
    pub line: usize,
    /// The person; `domain_id` is left 0 and resolved from `domain` by the caller.
    pub person: Person,
    /// Domain name from the file, if any.
    pub domain: Option<String>,
}

/// A row that was refused, with every reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CsvRowError {
    pub line: usize,
    pub errors: Vec<FieldError>,
}

/// The outcome of parsing a whole file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParsedFile {
    /// `,` or `;`.
    pub delimiter: char,
    pub valid: Vec<CsvPerson>,
    pub invalid: Vec<CsvRowError>,
}

fn opt(s: &str) -> Option<String> {
    let t = unsanitize_cell(s.trim());
    (!t.is_empty()).then(|| t.to_string())
}

/// 1-based line of byte `pos`.
fn line_of(bytes: &[u8], pos: usize) -> usize {
    1 + bytes[..pos.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// Line numbers of records, counted incrementally (records arrive in file order,
/// so the whole file is scanned once, not once per row).
struct LineCounter<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            pos: 0,
            line: 1,
        }
    }

    /// Line where a record starts: the reader reports the end of the previous
    /// record, so skip the blank lines it passed over.
    fn record_line(&mut self, pos: u64) -> usize {
        let bytes = self.bytes;
        let mut p = usize::try_from(pos).unwrap_or(usize::MAX).min(bytes.len());
        while p < bytes.len() && (bytes[p] == b'\n' || bytes[p] == b'\r') {
            p += 1;
        }
        if p < self.pos {
            return line_of(bytes, p);
        }
        self.line += bytes[self.pos..p].iter().filter(|b| **b == b'\n').count();
        self.pos = p;
        self.line
    }
}

/// Parse and check an import file. File-level problems refuse the whole file;
/// row-level problems are reported per row with their line numbers.
pub fn parse(bytes: &[u8]) -> Result<ParsedFile, FileError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(FileError::TooLarge { size: bytes.len() });
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return Err(FileError::NotUtf8 {
                line: line_of(bytes, e.valid_up_to()),
            });
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first_line = text.lines().next().ok_or(FileError::Empty)?;
    if first_line.trim().is_empty() {
        return Err(FileError::Empty);
    }
    let delimiter = if first_line.matches(';').count() > first_line.matches(',').count() {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            return Err(FileError::Malformed {
                line: 1,
                message: e.to_string(),
            });
        }
        None => return Err(FileError::Empty),
    };
    check_header(&header)?;

    let mut lines = LineCounter::new(text.as_bytes());
    let mut valid = Vec::new();
    let mut invalid = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (count, rec) in records.enumerate() {
        if count >= MAX_ROWS {
            return Err(FileError::TooManyRows);
        }
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e
                    .position()
                    .map(|p| lines.record_line(p.byte()))
                    .unwrap_or(0);
                return Err(FileError::Malformed {
                    line,
                    message: e.to_string(),
                });
            }
        };
        let line = rec
            .position()
            .map(|p| lines.record_line(p.byte()))
            .unwrap_or(count + 2);
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue; // blank line
        }
        if rec.len() != 21 && rec.len() != 22 {
            invalid.push(CsvRowError {
                line,
                errors: vec![FieldError {
                    field: "row".into(),
                    message: format!("has {} fields; expected 21 (or 22 with Tags)", rec.len()),
                }],
            });
            continue;
        }
        let f = |i: usize| rec.get(i).unwrap_or("");
        let person = Person {
            identifier: opt(f(0)),
            title: opt(f(1)),
            first_name: unsanitize_cell(f(2).trim()).to_string(),
            surname: unsanitize_cell(f(3).trim()).to_string(),
            domain_id: 0,
            email: opt(f(5)),
            phone: opt(f(6)),
            organisation: opt(f(7)),
            department: opt(f(8)),
            street: opt(f(9)),
            postcode: opt(f(10)),
            language: opt(f(11)),
            region: opt(f(12)),
            job: opt(f(13)),
            city: opt(f(14)),
            state: opt(f(15)),
            country: opt(f(16)),
            company_address: opt(f(17)),
            location: opt(f(18)),
            mobile_phone: opt(f(19)),
            gmd_text: opt(f(20)),
            ..Person::default()
        };
        let mut errors = person.validate_fields(false);
        let domain = opt(f(4));
        if let Some(d) = &domain {
            errors.text("domain", d, 1, 50);
        }
        if let Some(id) = &person.identifier {
            if let Some(first) = seen.get(&id.to_lowercase()) {
                errors.push(
                    "identifier",
                    format!("'{id}' already appears on line {first}"),
                );
            } else {
                seen.insert(id.to_lowercase(), line);
            }
        }
        if errors.is_empty() {
            valid.push(CsvPerson {
                line,
                person,
                domain,
            });
        } else {
            invalid.push(CsvRowError {
                line,
                errors: errors.errors,
            });
        }
    }
    Ok(ParsedFile {
        delimiter: delimiter as char,
        valid,
        invalid,
    })
}

fn check_header(h: &csv::StringRecord) -> Result<(), FileError> {
    if h.len() != 21 && h.len() != 22 {
        return Err(FileError::HeaderColumns { found: h.len() });
    }
    let norm = |s: &str| s.trim().trim_start_matches('\u{feff}').to_lowercase();
    let matches = |set: &[&str; 21], tags: &str| {
        set.iter()
            .enumerate()
            .all(|(i, e)| norm(h.get(i).unwrap_or("")) == norm(e))
            && (h.len() == 21 || norm(h.get(21).unwrap_or("")) == norm(tags))
    };
    if matches(&HEADER_EN, TAGS_HEADER[0]) || matches(&HEADER_DE, TAGS_HEADER[1]) {
        return Ok(());
    }
    // Report the first column that differs from the English header.
    let expected_all: Vec<&str> = HEADER_EN.iter().copied().chain([TAGS_HEADER[0]]).collect();
    for (i, expected) in expected_all.iter().enumerate().take(h.len()) {
        let found = h.get(i).unwrap_or("");
        if norm(found) != norm(expected) {
            return Err(FileError::Header {
                column: i + 1,
                found: found.to_string(),
                expected: (*expected).to_string(),
            });
        }
    }
    Err(FileError::HeaderColumns { found: h.len() })
}

/// A person as exported: the import columns, the domain name and tags.
#[derive(Debug, Clone)]
pub struct ExportRow<'a> {
    pub person: &'a Person,
    pub domain: &'a str,
}

/// Write persons in the import format plus a Tags column (tags joined with `|`).
pub fn write_export<'a, W: std::io::Write>(
    out: W,
    delimiter: u8,
    rows: impl IntoIterator<Item = ExportRow<'a>>,
) -> Result<(), csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .from_writer(out);
    let mut header: Vec<&str> = HEADER_EN.to_vec();
    header.push(TAGS_HEADER[0]);
    w.write_record(&header)?;
    for r in rows {
        let p = r.person;
        let s = |o: &Option<String>| o.clone().unwrap_or_default();
        let tags = p.tags.join("|");
        let rec = [
            s(&p.identifier),
            s(&p.title),
            p.first_name.clone(),
            p.surname.clone(),
            r.domain.to_string(),
            s(&p.email),
            s(&p.phone),
            s(&p.organisation),
            s(&p.department),
            s(&p.street),
            s(&p.postcode),
            s(&p.language),
            s(&p.region),
            s(&p.job),
            s(&p.city),
            s(&p.state),
            s(&p.country),
            s(&p.company_address),
            s(&p.location),
            s(&p.mobile_phone),
            s(&p.gmd_text),
            tags,
        ];
        w.write_record(rec.iter().map(|v| sanitize_cell(v)))?;
    }
    w.flush()?;
    Ok(())
}

/// First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Neutralise formula injection on export: such a cell gets a leading apostrophe.
fn sanitize_cell(v: &str) -> String {
    if v.starts_with(FORMULA_START) {
        format!("'{v}")
    } else {
        v.to_string()
    }
}

/// Undo [`sanitize_cell`] on import, so an export re-imports unchanged.
fn unsanitize_cell(v: &str) -> &str {
    match v.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_START) => rest,
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(sep: &str) -> String {
        HEADER_EN.join(sep)
    }

    fn row(sep: &str, id: &str, first: &str, last: &str, email: &str) -> String {
        let mut f = vec![""; 21];
        f[0] = id;
        f[2] = first;
        f[3] = last;
        f[5] = email;
        f.join(sep)
    }

    #[test]
    fn comma_and_semicolon_with_line_numbers() {
        for sep in [",", ";"] {
            let file = format!(
                "{}\n{}\n{}\n\n{}\n",
                header(sep),
                row(sep, "E1", "Anna", "Berg", "anna@example.com"),
                row(sep, "E2", "", "Cole", "not-an-email"),
                row(sep, "E1", "Anna", "Again", ""),
            );
            let p = parse(file.as_bytes()).expect("parses");
            assert_eq!(p.delimiter, sep.chars().next().expect("sep"));
            assert_eq!(p.valid.len(), 1);
            assert_eq!(p.valid[0].line, 2);
            assert_eq!(p.invalid.len(), 2);
            assert_eq!(p.invalid[0].line, 3);
            let fields: Vec<_> = p.invalid[0]
                .errors
                .iter()
                .map(|e| e.field.as_str())
                .collect();
            assert_eq!(fields, ["first_name", "email"]);
            assert_eq!(p.invalid[1].line, 5);
            assert!(p.invalid[1].errors[0].message.contains("line 2"));
        }
    }

    #[test]
    fn quoted_fields_keep_delimiters_and_quotes() {
        let mut f = vec![""; 21];
        f[2] = "\"Anna, Maria\"";
        f[3] = "\"Berg \"\"the boss\"\"\"";
        let mut g = vec![""; 21];
        g[2] = "Ben";
        g[3] = "Ode";
        g[9] = "\"Main St. 1\nBack door\"";
        let file = format!(
            "{}\n{}\n{}\n{}\n",
            header(","),
            f.join(","),
            g.join(","),
            f.join(",")
        );
        let p = parse(file.as_bytes()).expect("parses");
        assert_eq!(p.valid[0].person.first_name, "Anna, Maria");
        assert_eq!(p.valid[0].person.surname, "Berg \"the boss\"");
        // A line break inside a quoted field is refused for that field, and lines keep counting.
        assert_eq!(p.invalid[0].line, 3);
        assert_eq!(p.invalid[0].errors[0].field, "street");
        assert_eq!(p.valid[1].line, 5);
    }

    #[test]
    fn header_checked_and_named() {
        let mut h: Vec<&str> = HEADER_EN.to_vec();
        h[3] = "Surname";
        match parse(h.join(",").as_bytes()) {
            Err(FileError::Header {
                column,
                found,
                expected,
            }) => {
                assert_eq!(
                    (column, found.as_str(), expected.as_str()),
                    (4, "Surname", "Last name")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(HEADER_DE.join(";").as_bytes()).is_ok());
        assert_eq!(parse(b"").unwrap_err(), FileError::Empty);
    }

    #[test]
    fn limits_refuse_whole_file() {
        let big = vec![b'a'; MAX_FILE_BYTES + 1];
        assert!(matches!(parse(&big), Err(FileError::TooLarge { .. })));
        let mut file = header(",");
        for i in 0..=MAX_ROWS {
            file.push('\n');
            file.push_str(&row(",", &format!("E{i}"), "A", "B", ""));
        }
        assert_eq!(parse(file.as_bytes()).unwrap_err(), FileError::TooManyRows);
        let mut bad = format!("{}\n", header(",")).into_bytes();
        bad.extend_from_slice(b"x,\xff\xfe\n");
        assert_eq!(parse(&bad).unwrap_err(), FileError::NotUtf8 { line: 2 });
    }

    #[test]
    fn export_round_trips_and_tags_ignored() {
        let p = Person {
            identifier: Some("E7".into()),
            first_name: "Zoë".into(),
            surname: "=cmd".into(),
            tags: vec!["night".into(), "vip".into()],
            ..Person::default()
        };
        let mut out = Vec::new();
        write_export(
            &mut out,
            b';',
            [ExportRow {
                person: &p,
                domain: "HQ",
            }],
        )
        .expect("writes");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.lines().next().expect("header").ends_with(";Tags"));
        assert!(text.contains("'=cmd"));
        let back = parse(text.as_bytes()).expect("re-imports");
        assert_eq!(back.valid[0].person.first_name, "Zoë");
        assert_eq!(
            back.valid[0].person.surname, "=cmd",
            "the guard is undone on import"
        );
        assert_eq!(back.valid[0].domain.as_deref(), Some("HQ"));
        assert!(back.valid[0].person.tags.is_empty());
    }
}
