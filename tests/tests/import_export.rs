//! Employee CSV import and export through the API (DOMAIN §9): dry run, per-row reports
//! with line numbers, one transaction, updates that keep tags/links/profiles, skipped
//! deactivated persons, delimiters and quoting, file-level refusals, and round trips.

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use lockgate_tests::*;
use serde_json::{Value, json};

/// The realistic fixture: 20 data rows, four of them invalid (lines 6, 9, 14, 18).
const FIXTURE: &str = include_str!("../fixtures/employees.csv");

/// The English import header (21 columns).
const HEADER: [&str; 21] = [
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

// Column indexes.
const ID: usize = 0;
const FIRST: usize = 2;
const LAST: usize = 3;
const DOMAIN: usize = 4;
const EMAIL: usize = 5;
const ORG: usize = 7;
const DEPT: usize = 8;
const STREET: usize = 9;
const JOB: usize = 13;

fn header(sep: &str) -> String {
    HEADER.join(sep)
}

/// A 21-column row with the given cells set (cells are written as given: quote them yourself).
fn row(sep: &str, cells: &[(usize, &str)]) -> String {
    let mut f = vec![""; 21];
    for (i, v) in cells {
        f[*i] = v;
    }
    f.join(sep)
}

fn file(sep: &str, rows: &[String]) -> String {
    let mut s = header(sep);
    for r in rows {
        s.push('\n');
        s.push_str(r);
    }
    s.push('\n');
    s
}

/// POST a body to the import endpoint with a chosen content type.
async fn import_raw(app: &TestApp, query: &str, content_type: Option<&str>, body: Vec<u8>) -> Resp {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/employees/import{query}"))
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token));
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    app.send(req.body(Body::from(body)).expect("request")).await
}

/// Import CSV text as text/csv; a dry run answers 200, a real import 201.
async fn import(app: &TestApp, csv: &str, dry_run: bool) -> Resp {
    let q = if dry_run { "?dry_run=true" } else { "" };
    let r = import_raw(app, q, Some("text/csv"), csv.as_bytes().to_vec()).await;
    r.expect(if dry_run { 200 } else { 201 })
}

/// GET the export; returns the response and its text.
async fn export(app: &TestApp, query: &str) -> (Resp, String) {
    let r = app
        .get(&format!("/api/v1/employees/export{query}"))
        .await
        .expect(200);
    let text = match &r.body {
        Value::String(s) => s.clone(),
        other => panic!("export is not CSV text: {other}"),
    };
    (r, text)
}

/// (line, [fields]) of a report's invalid rows.
fn invalid(report: &Value) -> Vec<(i64, Vec<String>)> {
    report["invalid"]
        .as_array()
        .expect("invalid")
        .iter()
        .map(|r| {
            (
                r["line"].as_i64().expect("line"),
                r["errors"]
                    .as_array()
                    .expect("errors")
                    .iter()
                    .map(|e| e["field"].as_str().expect("field").to_string())
                    .collect(),
            )
        })
        .collect()
}

/// The message of the first error on an invalid line.
fn invalid_message(report: &Value, line: i64) -> String {
    report["invalid"]
        .as_array()
        .expect("invalid")
        .iter()
        .find(|r| r["line"] == line)
        .and_then(|r| r["errors"][0]["message"].as_str())
        .unwrap_or_else(|| panic!("no invalid line {line} in {report}"))
        .to_string()
}

fn counts(report: &Value) -> [i64; 4] {
    [
        report["created"].as_i64().expect("created"),
        report["updated"].as_i64().expect("updated"),
        report["unchanged"].as_i64().expect("unchanged"),
        report["valid_rows"].as_i64().expect("valid_rows"),
    ]
}

/// Every employee (any status) with its body.
async fn persons(app: &TestApp) -> Vec<Value> {
    let r = app
        .get("/api/v1/employees?include_hidden=true&with_body=true&limit=1000&sort=id")
        .await
        .expect(200);
    r.body["items"].as_array().expect("items").clone()
}

/// The body of the employee with this identifier.
async fn by_identifier(app: &TestApp, identifier: &str) -> Value {
    persons(app)
        .await
        .into_iter()
        .find(|p| p["marking"] == identifier)
        .map(|p| {
            let mut b = p["body"].clone();
            b["id"] = p["id"].clone();
            b["version"] = p["version"].clone();
            b
        })
        .unwrap_or_else(|| panic!("no employee {identifier}"))
}

/// A minimal RFC 4180 reader for checking exports.
fn parse_csv(text: &str, sep: char) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' {
            quoted = true;
        } else if c == sep {
            row.push(std::mem::take(&mut field));
        } else if c == '\n' {
            row.push(std::mem::take(&mut field));
            rows.push(std::mem::take(&mut row));
        } else if c != '\r' {
            field.push(c);
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

async fn assert_no_employees(app: &TestApp) {
    let all = persons(app).await;
    assert!(all.is_empty(), "nothing may be written: {all:?}");
}

on_both!(
    dry_run_reports_every_row_and_writes_nothing,
    |app: TestApp| async move {
        app.domain("Berlin HQ").await;
        let r = import(&app, FIXTURE, true).await;
        let b = &r.body;
        assert_eq!(b["dry_run"], true);
        assert_eq!(b["delimiter"], ",");
        assert_eq!(counts(b), [16, 0, 0, 16], "{b}");
        assert_eq!(b["skipped"], json!([]));
        assert_eq!(
            invalid(b),
            [
                (6, vec!["email".to_string()]),
                (9, vec!["first_name".to_string()]),
                (14, vec!["identifier".to_string()]),
                (18, vec!["domain".to_string()]),
            ],
            "{b}"
        );
        assert!(
            invalid_message(b, 6).contains("jonas.weber(at)example.com"),
            "{b}"
        );
        assert!(invalid_message(b, 14).contains("E1002"), "{b}");
        assert!(invalid_message(b, 14).contains("line 3"), "{b}");
        assert!(invalid_message(b, 18).contains("Atlantis"), "{b}");
        assert_no_employees(&app).await;
        // A dry run twice gives the same answer: nothing was written by the first.
        let again = import(&app, FIXTURE, true).await;
        assert_eq!(counts(&again.body), [16, 0, 0, 16]);
        assert_no_employees(&app).await;
    }
);

on_both!(
    import_applies_valid_rows_and_reports,
    |app: TestApp| async move {
        let hq = app.domain("Berlin HQ").await;
        let r = import(&app, FIXTURE, false).await;
        let b = &r.body;
        assert_eq!(b["dry_run"], false);
        assert_eq!(counts(b), [16, 0, 0, 16], "{b}");
        assert_eq!(
            invalid(b).iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            [6, 9, 14, 18]
        );
        let all = persons(&app).await;
        assert_eq!(all.len(), 16);
        let names: Vec<&str> = all
            .iter()
            .map(|p| p["name"].as_str().unwrap_or(""))
            .collect();
        for absent in [
            "Weber, Jonas",
            "Fischer, ",
            "Kowalski, Benjamin",
            "Lang, Greta",
        ] {
            assert!(!names.contains(&absent), "{absent} was imported: {names:?}");
        }

        let anna = by_identifier(&app, "E1001").await;
        assert_eq!(anna["title"], "Dr.");
        assert_eq!(anna["first_name"], "Anna");
        assert_eq!(anna["surname"], "Berg");
        assert_eq!(anna["domain_id"], hq);
        assert_eq!(anna["email"], "anna.berg@example.com");
        assert_eq!(anna["phone"], "+49 30 1234501");
        assert_eq!(anna["organisation"], "Müller, Schmidt & Partner GmbH");
        assert_eq!(anna["company_address"], "Hauptstraße 5, 10115 Berlin");
        assert_eq!(anna["mobile_phone"], "+49 171 1234501");
        assert_eq!(anna["gmd_text"], "Master key holder");
        assert_eq!(anna["lifecycle"], "active");
        // The first of two rows with one identifier wins.
        assert_eq!(by_identifier(&app, "E1002").await["first_name"], "Ben");
        // Domain names match case-insensitively; an empty domain means the initial domain.
        assert_eq!(by_identifier(&app, "E1010").await["domain_id"], hq);
        let dieter = by_identifier(&app, "E1004").await;
        assert_eq!(dieter["domain_id"], app.default_domain);
        assert_eq!(dieter["job"], "Guard, night shift");
        assert_eq!(by_identifier(&app, "E1011").await["surname"], "Ilić");
        // Rows without identifier got generated, distinct ones.
        let generated: Vec<String> = all
            .iter()
            .filter(|p| ["Novak, Emil", "Lenz, Karl"].contains(&p["name"].as_str().unwrap_or("")))
            .map(|p| {
                p["marking"]
                    .as_str()
                    .expect("generated identifier")
                    .to_string()
            })
            .collect();
        assert_eq!(generated.len(), 2, "{all:?}");
        assert_ne!(generated[0], generated[1]);
        for g in &generated {
            let (date, n) = g.split_once(':').expect("YYYY-MM-DD:N");
            assert!(
                chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
                "{g}"
            );
            assert!(n.parse::<u64>().is_ok(), "{g}");
        }
        // Imports are recorded as events.
        let ev = app
            .get(&format!("/api/v1/employees/{}/events", anna["id"]))
            .await
            .expect(200);
        assert_eq!(ev.body["items"][0]["action"], "imported", "{}", ev.body);

        // Importing the same file again changes nothing; rows without identifier are new persons.
        let again = import(&app, FIXTURE, false).await;
        assert_eq!(counts(&again.body), [2, 0, 14, 16], "{}", again.body);
        assert_eq!(invalid(&again.body).len(), 4);
        assert_eq!(persons(&app).await.len(), 18);
        assert_eq!(
            by_identifier(&app, "E1001").await["version"],
            anna["version"]
        );
    }
);

on_both!(
    reimport_of_an_export_is_all_unchanged,
    |app: TestApp| async move {
        app.domain("Berlin HQ").await;
        import(&app, FIXTURE, false).await;
        let anna = by_identifier(&app, "E1001").await;
        assert_eq!(anna["phone"], "+49 30 1234501");
        for (query, sep) in [("", ','), ("?delimiter=semicolon", ';')] {
            let before = persons(&app).await;
            let (_, text) = export(&app, query).await;
            let r = import(&app, &text, false).await;
            let b = &r.body;
            let after = persons(&app).await;
            let changed: Vec<String> = after
                .iter()
                .filter(|p| {
                    before
                        .iter()
                        .any(|q| q["id"] == p["id"] && q["body"] != p["body"])
                })
                .map(|p| format!("{} {}", p["marking"], p["body"]))
                .collect();
            assert!(
                changed.is_empty(),
                "{sep}: re-importing the export changed {changed:#?}"
            );
            assert_eq!(b["delimiter"], sep.to_string());
            assert_eq!(invalid(b), [], "{sep}: {b}");
            assert_eq!(b["skipped"], json!([]), "{b}");
            assert_eq!(counts(b), [0, 0, 16, 16], "{sep}: {b}");
        }
        assert_eq!(persons(&app).await.len(), 16);
        let anna = by_identifier(&app, "E1001").await;
        assert_eq!(anna["phone"], "+49 30 1234501");
        assert_eq!(anna["mobile_phone"], "+49 171 1234501");
    }
);

on_both!(
    round_trip_keeps_tags_and_plain_values,
    |app: TestApp| async move {
        let csv = file(
            ",",
            &[
                row(
                    ",",
                    &[
                        (ID, "R1"),
                        (FIRST, "Ada"),
                        (LAST, "Lovelace"),
                        (EMAIL, "ada@example.com"),
                        (ORG, "\"Analytical, Engines Ltd\""),
                    ],
                ),
                row(
                    ",",
                    &[
                        (ID, "R2"),
                        (FIRST, "Alan"),
                        (LAST, "Turing"),
                        (JOB, "\"Codebreaker \"\"Bombe\"\"\""),
                    ],
                ),
            ],
        );
        import(&app, &csv, false).await;
        let r1 = by_identifier(&app, "R1").await;
        app.patch(
            &format!("/api/v1/employees/{}", r1["id"]),
            json!({ "tags": ["night", "vip"] }),
        )
        .await
        .expect(200);
        for query in ["", "?delimiter=semicolon"] {
            let (_, text) = export(&app, query).await;
            let b = import(&app, &text, false).await.body;
            assert_eq!(counts(&b), [0, 0, 2, 2], "{b}");
        }
        let after = by_identifier(&app, "R1").await;
        assert_eq!(after["tags"], json!(["night", "vip"]));
        assert_eq!(after["organisation"], "Analytical, Engines Ltd");
        assert_eq!(
            by_identifier(&app, "R2").await["job"],
            "Codebreaker \"Bombe\""
        );
    }
);

on_both!(
    changed_row_updates_and_keeps_tags_links_and_profiles,
    |app: TestApp| async move {
        let first = file(
            ",",
            &[
                row(
                    ",",
                    &[
                        (ID, "E1"),
                        (FIRST, "Anna"),
                        (LAST, "Berg"),
                        (EMAIL, "anna@example.com"),
                        (DEPT, "IT"),
                    ],
                ),
                row(",", &[(ID, "E2"), (FIRST, "Ben"), (LAST, "Ode")]),
            ],
        );
        import(&app, &first, false).await;
        let e1 = by_identifier(&app, "E1").await;
        let id = e1["id"].as_i64().expect("id");
        let profile = app
            .post(
                "/api/v1/access-profiles",
                json!({ "name": "Office", "domain_id": app.default_domain }),
            )
            .await
            .expect(201)
            .id();
        let links = json!([{ "name": "HR file", "url": "https://hr.example.com/e1" }]);
        app.patch(
            &format!("/api/v1/employees/{id}"),
            json!({ "tags": ["night-shift"], "links": links, "access_profile_ids": [profile] }),
        )
        .await
        .expect(200);
        let before = by_identifier(&app, "E1").await;

        // Changed email and department; the identifier matches case-insensitively; an
        // export-style Tags column is ignored.
        let mut changed = header(",");
        changed.push_str(",Tags\n");
        changed.push_str(&row(
            ",",
            &[
                (ID, "e1"),
                (FIRST, "Anna"),
                (LAST, "Berg"),
                (EMAIL, "anna.berg@example.com"),
                (DEPT, "Security"),
            ],
        ));
        changed.push_str(",other-tag\n");
        changed.push_str(&row(",", &[(ID, "E2"), (FIRST, "Ben"), (LAST, "Ode")]));
        changed.push_str(",\n");
        let dry = import(&app, &changed, true).await;
        assert_eq!(counts(&dry.body), [0, 1, 1, 2], "{}", dry.body);
        assert_eq!(
            by_identifier(&app, "E1").await["version"],
            before["version"]
        );
        let r = import(&app, &changed, false).await;
        assert_eq!(counts(&r.body), [0, 1, 1, 2], "{}", r.body);

        let after = by_identifier(&app, "E1").await;
        assert_eq!(after["id"], id);
        assert_eq!(after["identifier"], "E1");
        assert_eq!(after["email"], "anna.berg@example.com");
        assert_eq!(after["department"], "Security");
        assert_eq!(after["tags"], json!(["night-shift"]));
        assert_eq!(after["links"], links);
        assert_eq!(after["access_profile_ids"], json!([profile]));
        assert_eq!(after["domain_id"], before["domain_id"]);
        assert_eq!(
            after["version"].as_i64().expect("version"),
            before["version"].as_i64().expect("version") + 1
        );
        assert_eq!(persons(&app).await.len(), 2);
        // The tag search still finds the person (tags index untouched).
        let tagged = app
            .get("/api/v1/employees?tag=night-shift")
            .await
            .expect(200);
        assert_eq!(tagged.body["items"][0]["id"], id, "{}", tagged.body);
        let ev = app
            .get(&format!("/api/v1/employees/{id}/events"))
            .await
            .expect(200);
        let newest = &ev.body["items"][0];
        assert_eq!(newest["action"], "imported");
        assert_eq!(
            newest["changes"]["email"]["from"], "anna@example.com",
            "{newest}"
        );
        assert_eq!(newest["changes"]["email"]["to"], "anna.berg@example.com");
    }
);

on_both!(
    deactivated_and_deleted_persons_are_skipped,
    |app: TestApp| async move {
        let csv = |email: &str| {
            file(
                ",",
                &[
                    row(
                        ",",
                        &[(ID, "E1"), (FIRST, "Anna"), (LAST, "Berg"), (EMAIL, email)],
                    ),
                    row(
                        ",",
                        &[(ID, "E2"), (FIRST, "Ben"), (LAST, "Ode"), (EMAIL, email)],
                    ),
                ],
            )
        };
        import(&app, &csv("old@example.com"), false).await;
        let e1 = by_identifier(&app, "E1").await["id"].as_i64().expect("id");
        let e2 = by_identifier(&app, "E2").await["id"].as_i64().expect("id");
        app.post(&format!("/api/v1/employees/{e1}/deactivate"), json!({}))
            .await
            .expect(200);

        for dry_run in [true, false] {
            let b = import(&app, &csv("new@example.com"), dry_run).await.body;
            assert_eq!(counts(&b), [0, 1, 0, 1], "{b}");
            let skipped = b["skipped"].as_array().expect("skipped");
            assert_eq!(skipped.len(), 1, "{b}");
            assert_eq!(skipped[0]["line"], 2);
            assert_eq!(skipped[0]["identifier"], "E1");
            assert!(
                skipped[0]["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("deactivated"),
                "{b}"
            );
        }
        let p1 = by_identifier(&app, "E1").await;
        assert_eq!(p1["lifecycle"], "deactivated");
        assert_eq!(p1["email"], "old@example.com");
        assert_eq!(by_identifier(&app, "E2").await["email"], "new@example.com");
        assert_eq!(persons(&app).await.len(), 2);

        // Marked as deleted: skipped as well.
        app.post(&format!("/api/v1/employees/{e1}/reactivate"), json!({}))
            .await
            .expect(200);
        app.patch(
            "/api/v1/system/settings",
            json!({ "person_deletion": "mark_as_deleted" }),
        )
        .await
        .expect(200);
        app.delete(&format!("/api/v1/employees/{e2}"))
            .await
            .expect(204);
        let b = import(&app, &csv("newer@example.com"), false).await.body;
        assert_eq!(counts(&b), [0, 1, 0, 1], "{b}");
        let skipped = b["skipped"].as_array().expect("skipped");
        assert_eq!(skipped.len(), 1, "{b}");
        assert_eq!(skipped[0]["line"], 3);
        assert_eq!(skipped[0]["identifier"], "E2");
        assert!(
            skipped[0]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("deleted"),
            "{b}"
        );
        let p2 = by_identifier(&app, "E2").await;
        assert_eq!(p2["lifecycle"], "deleted");
        assert_eq!(p2["email"], "new@example.com");
    }
);

on_both!(
    comma_and_semicolon_files_with_quoted_fields,
    |app: TestApp| async move {
        let semi = file(
            ";",
            &[
                row(
                    ";",
                    &[
                        (ID, "S1"),
                        (FIRST, "Anna"),
                        (LAST, "Berg"),
                        (ORG, "\"Berg; Partner\""),
                        (STREET, "Ring 1, back door"),
                        (JOB, "\"The \"\"Boss\"\"\""),
                    ],
                ),
                row(
                    ";",
                    &[
                        (ID, "S2"),
                        (FIRST, "\"Ben; Jr.\""),
                        (LAST, "Ode"),
                        (EMAIL, "ben@example.com"),
                    ],
                ),
            ],
        );
        let dry = import(&app, &semi, true).await;
        assert_eq!(dry.body["delimiter"], ";");
        assert_eq!(counts(&dry.body), [2, 0, 0, 2], "{}", dry.body);
        let r = import(&app, &semi, false).await;
        assert_eq!(counts(&r.body), [2, 0, 0, 2], "{}", r.body);
        let s1 = by_identifier(&app, "S1").await;
        assert_eq!(s1["organisation"], "Berg; Partner");
        assert_eq!(s1["street"], "Ring 1, back door");
        assert_eq!(s1["job"], "The \"Boss\"");
        assert_eq!(by_identifier(&app, "S2").await["first_name"], "Ben; Jr.");

        let comma = file(
            ",",
            &[
                row(
                    ",",
                    &[
                        (ID, "C1"),
                        (FIRST, "Clara"),
                        (LAST, "\"Schmidt, née Vogel\""),
                        (ORG, "\"Müller, Schmidt & Partner\""),
                        (STREET, "Ring 2; rear"),
                    ],
                ),
                // Blank lines are ignored and do not disturb line numbers.
                String::new(),
                row(
                    ",",
                    &[
                        (ID, "C2"),
                        (FIRST, "Dieter"),
                        (LAST, "Vogel"),
                        (EMAIL, "\"dieter, vogel@example.com\""),
                    ],
                ),
            ],
        );
        let r = import(&app, &comma, false).await;
        assert_eq!(r.body["delimiter"], ",");
        assert_eq!(counts(&r.body), [1, 0, 0, 1], "{}", r.body);
        assert_eq!(
            invalid(&r.body),
            [(4, vec!["email".to_string()])],
            "{}",
            r.body
        );
        let c1 = by_identifier(&app, "C1").await;
        assert_eq!(c1["surname"], "Schmidt, née Vogel");
        assert_eq!(c1["organisation"], "Müller, Schmidt & Partner");
        assert_eq!(c1["street"], "Ring 2; rear");
        assert_eq!(persons(&app).await.len(), 3);

        // A CRLF file with a byte-order mark, as spreadsheet programs write it.
        let crlf = format!(
            "\u{feff}{}\r\n{}\r\n",
            header(";"),
            row(
                ";",
                &[
                    (ID, "W1"),
                    (FIRST, "Wanda"),
                    (LAST, "Wolf"),
                    (EMAIL, "wanda@example.com")
                ]
            )
        );
        let r = import(&app, &crlf, false).await;
        assert_eq!(counts(&r.body), [1, 0, 0, 1], "{}", r.body);
        let w1 = by_identifier(&app, "W1").await;
        assert_eq!(w1["email"], "wanda@example.com");
    }
);

on_both!(
    header_mismatch_refused_naming_the_column,
    |app: TestApp| async move {
        let mut h = HEADER.to_vec();
        h[3] = "Surname";
        let bad = format!(
            "{}\n{}\n",
            h.join(","),
            row(",", &[(ID, "H1"), (FIRST, "Anna"), (LAST, "Berg")])
        );
        for dry_run in [true, false] {
            let q = if dry_run { "?dry_run=true" } else { "" };
            let r = import_raw(&app, q, Some("text/csv"), bad.as_bytes().to_vec())
                .await
                .expect(422);
            assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
            let detail = r.body["detail"].as_str().unwrap_or("");
            assert!(
                detail.contains("Surname") && detail.contains("Last name") && detail.contains('4'),
                "{}",
                r.body
            );
        }
        // Too few columns.
        let short = format!(
            "{}\n{}\n",
            HEADER[..20].join(","),
            row(",", &[(ID, "H1"), (FIRST, "Anna"), (LAST, "Berg")])
        );
        let r = import_raw(&app, "", Some("text/csv"), short.into_bytes())
            .await
            .expect(422);
        assert!(
            r.body["detail"].as_str().unwrap_or("").contains("20"),
            "{}",
            r.body
        );
        // An empty file.
        import_raw(&app, "", Some("text/csv"), Vec::new())
            .await
            .expect(422);
        assert_no_employees(&app).await;

        // The German header (UI language) is accepted.
        let de = [
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
        let german = format!(
            "{}\n{}\n",
            de.join(";"),
            row(";", &[(ID, "D1"), (FIRST, "Jürgen"), (LAST, "Groß")])
        );
        let r = import(&app, &german, false).await;
        assert_eq!(counts(&r.body), [1, 0, 0, 1], "{}", r.body);
    }
);

on_both!(
    more_than_10000_rows_refused_whole,
    |app: TestApp| async move {
        // 10 001 valid (short) rows. One request per database: the parser's cost grows
        // with the file, and the limit is a property of the file, not of the backend.
        let rows: Vec<String> = (0..=10_000)
            .map(|i| row(",", &[(ID, &i.to_string()), (FIRST, "A"), (LAST, "B")]))
            .collect();
        let big = file(",", &rows);
        let started = std::time::Instant::now();
        let r = import_raw(&app, "", Some("text/csv"), big.into_bytes())
            .await
            .expect(422);
        let elapsed = started.elapsed();
        let detail = r.body["detail"].as_str().unwrap_or("");
        assert!(
            detail.contains("10000") || detail.contains("10 000"),
            "{}",
            r.body
        );
        assert_no_employees(&app).await;
        // Checking a 350 kB file must not take long: line numbers must not be recounted
        // from the start of the file for every row (quadratic in the file size).
        assert!(
            elapsed < std::time::Duration::from_secs(5),
            "checking 10 001 rows (350 kB) took {elapsed:?}"
        );
    }
);

on_both!(
    non_utf8_refused_naming_the_line,
    |app: TestApp| async move {
        let mut bytes = format!(
            "{}\n{}\n",
            header(","),
            row(",", &[(ID, "U1"), (FIRST, "Anna"), (LAST, "Berg")])
        )
        .into_bytes();
        // "Müller" in Latin-1 on line 3.
        bytes.extend_from_slice(b"U2,,Hans,M\xfcller");
        bytes.extend_from_slice(&[b','; 17]);
        bytes.push(b'\n');
        for q in ["", "?dry_run=true"] {
            let r = import_raw(&app, q, Some("text/csv"), bytes.clone())
                .await
                .expect(422);
            let detail = r.body["detail"].as_str().unwrap_or("");
            assert!(detail.contains("line 3"), "{}", r.body);
            assert!(detail.contains("UTF-8"), "{}", r.body);
        }
        assert_no_employees(&app).await;
    }
);

on_both!(
    wrong_content_type_and_parameters_refused,
    |app: TestApp| async move {
        let csv = file(
            ",",
            &[row(",", &[(ID, "T1"), (FIRST, "Anna"), (LAST, "Berg")])],
        );
        for ct in [Some("application/json"), Some("text/plain"), None] {
            let r = import_raw(&app, "", ct, csv.as_bytes().to_vec()).await;
            assert_eq!(r.status.as_u16(), 415, "{ct:?}: {}", r.body);
        }
        import_raw(
            &app,
            "?dry_run=maybe",
            Some("text/csv"),
            csv.as_bytes().to_vec(),
        )
        .await
        .expect(400);
        import_raw(
            &app,
            "?dryrun=true",
            Some("text/csv"),
            csv.as_bytes().to_vec(),
        )
        .await
        .expect(400);
        assert_no_employees(&app).await;
        let r = import_raw(
            &app,
            "?dry_run=true",
            Some("text/csv; charset=utf-8"),
            csv.as_bytes().to_vec(),
        )
        .await
        .expect(200);
        assert_eq!(counts(&r.body), [1, 0, 0, 1]);
        app.get("/api/v1/employees/export?delimiter=tab")
            .await
            .expect(400);
    }
);

on_both!(
    import_needs_the_import_permission,
    |app: TestApp| async move {
        let csv = file(
            ",",
            &[row(",", &[(ID, "P1"), (FIRST, "Anna"), (LAST, "Berg")])],
        );
        let (_, token) = app
            .admin_with(
                "A-IMP",
                json!({ "employee": "full" }),
                &[app.default_domain],
            )
            .await;
        let req = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/employees/import")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "text/csv")
            .body(Body::from(csv))
            .expect("request");
        let r = app.send(req).await;
        assert_eq!(r.status.as_u16(), 403, "{}", r.body);
        assert_no_employees(&app).await;
    }
);

on_both!(
    export_format_tags_and_hidden_persons,
    |app: TestApp| async move {
        let hq = app.domain("Berlin HQ").await;
        let anna = app
            .post(
                "/api/v1/employees",
                json!({
                    "identifier": "X1", "first_name": "Anna", "surname": "Berg", "domain_id": hq,
                    "email": "anna@example.com", "organisation": "Berg, Partner; Co",
                    "tags": ["night", "vip"],
                }),
            )
            .await
            .expect(201)
            .id();
        let ben = app
            .post(
                "/api/v1/employees",
                json!({ "identifier": "X2", "first_name": "Ben", "surname": "Ode" }),
            )
            .await
            .expect(201)
            .id();
        let gone = app
            .post(
                "/api/v1/employees",
                json!({ "identifier": "X3", "first_name": "Carl", "surname": "Hidden" }),
            )
            .await
            .expect(201)
            .id();
        app.post(&format!("/api/v1/employees/{gone}/deactivate"), json!({}))
            .await
            .expect(200);

        let (r, text) = export(&app, "").await;
        assert!(
            r.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap_or("")
                .starts_with("text/csv"),
            "{:?}",
            r.headers
        );
        let first_line = text.lines().next().expect("header");
        assert_eq!(first_line, format!("{},Tags", header(",")));
        let rows = parse_csv(&text, ',');
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows.iter().all(|r| r.len() == 22), "{rows:?}");
        let a = rows.iter().find(|r| r[ID] == "X1").expect("X1 exported");
        assert_eq!(a[FIRST], "Anna");
        assert_eq!(a[LAST], "Berg");
        assert_eq!(a[DOMAIN], "Berlin HQ");
        assert_eq!(a[EMAIL], "anna@example.com");
        assert_eq!(a[ORG], "Berg, Partner; Co");
        assert_eq!(a[21], "night|vip");
        let b = rows.iter().find(|r| r[ID] == "X2").expect("X2 exported");
        assert_eq!(b[DOMAIN], "Default");
        assert_eq!(b[21], "");
        assert!(!text.contains("Hidden") && !text.contains("X3"), "{text}");

        let (_, semi) = export(&app, "?delimiter=semicolon").await;
        assert_eq!(
            semi.lines().next().expect("header"),
            format!("{};Tags", header(";"))
        );
        let rows = parse_csv(&semi, ';');
        assert_eq!(rows.len(), 3, "{semi}");
        let a = rows.iter().find(|r| r[ID] == "X1").expect("X1 exported");
        assert_eq!(a[ORG], "Berg, Partner; Co");
        assert_eq!(a[21], "night|vip");
        let (_, explicit) = export(&app, "?delimiter=comma").await;
        assert_eq!(explicit, text);

        // Once reactivated the person is exported again.
        app.post(&format!("/api/v1/employees/{gone}/reactivate"), json!({}))
            .await
            .expect(200);
        let (_, text) = export(&app, "").await;
        assert_eq!(parse_csv(&text, ',').len(), 4);
        let _ = (anna, ben);
    }
);

on_both!(
    export_leaves_out_persons_marked_as_deleted,
    |app: TestApp| async move {
        app.patch(
            "/api/v1/system/settings",
            json!({ "person_deletion": "mark_as_deleted" }),
        )
        .await
        .expect(200);
        let id = app
            .post(
                "/api/v1/employees",
                json!({ "identifier": "Y1", "first_name": "Dora", "surname": "Deleted" }),
            )
            .await
            .expect(201)
            .id();
        app.delete(&format!("/api/v1/employees/{id}"))
            .await
            .expect(204);
        let (_, text) = export(&app, "").await;
        assert_eq!(parse_csv(&text, ',').len(), 1, "{text}");
    }
);

on_both!(
    generated_identifiers_do_not_collide_with_identifiers_in_the_file,
    |app: TestApp| async move {
        // The first row has no identifier; the second carries the one a naive generator
        // would hand out for it.
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let explicit = format!("{today}:1");
        let csv = file(
            ",",
            &[
                row(",", &[(FIRST, "Nora"), (LAST, "Neu")]),
                row(",", &[(ID, &explicit), (FIRST, "Otto"), (LAST, "Alt")]),
            ],
        );
        let r = import_raw(&app, "", Some("text/csv"), csv.into_bytes()).await;
        if r.status.as_u16() != 201 {
            // Whatever went wrong, the import is one transaction: nothing was written.
            assert_no_employees(&app).await;
            panic!("a valid file was refused ({}): {}", r.status, r.body);
        }
        assert_eq!(counts(&r.body), [2, 0, 0, 2], "{}", r.body);
        let all = persons(&app).await;
        assert_eq!(all.len(), 2);
        assert_eq!(by_identifier(&app, &explicit).await["surname"], "Alt");
        let nora = all
            .iter()
            .find(|p| p["name"] == "Neu, Nora")
            .expect("Nora imported");
        assert_ne!(nora["marking"], explicit.as_str());
    }
);
