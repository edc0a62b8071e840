//! Tests of the whole request path (`soap::handle`) against a fake of the host's employee
//! operations: every operation, the faults, the header rules and the bounds.

use std::cell::RefCell;

use lockgate_plugin_sdk::employees::{
    Change, ChangeKind, ChangePage, Employee, EmployeeState, InvalidPerson, UpsertError,
    UpsertOutcome,
};
use lockgate_plugin_sdk::{Error, Person};

use crate::ops::{Employees, TNS};
use crate::settings::Settings;
use crate::soap::{self, Handled, HttpRequest, SOAP11_ENV, SOAP12_ENV, WSSE};
use crate::xml::{Element, Limits, parse};

/// Records every call; answers as configured.
#[derive(Default)]
struct Fake {
    calls: RefCell<Vec<String>>,
    upserted: RefCell<Option<(Option<String>, Vec<Person>)>>,
    invalid: Vec<InvalidPerson>,
    error: Option<Error>,
    mark_deleted: bool,
}

fn employee(identifier: &str, state: EmployeeState) -> Employee {
    Employee {
        id: 42,
        person: Person {
            identifier: identifier.into(),
            first_name: "Ada".into(),
            surname: "Lovelace & <Byron>".into(),
            // Host order differs from the schema's; the output follows the schema.
            fields: vec![
                ("mobile_phone".into(), "+44 1".into()),
                ("email".into(), "ada@example.com".into()),
                ("unknown_future_field".into(), "x".into()),
            ],
            active: state == EmployeeState::Active,
        },
        state,
        domain: "Staff".into(),
        synced_from: None,
        version: 3,
        updated_at: 1_772_353_800_250,
    }
}

impl Fake {
    fn fail(&self, call: String) -> Result<(), Error> {
        self.calls.borrow_mut().push(call);
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl Employees for Fake {
    fn upsert(
        &self,
        domain: Option<String>,
        persons: Vec<Person>,
    ) -> Result<UpsertOutcome, UpsertError> {
        self.fail(format!("upsert {}", persons.len()))
            .map_err(UpsertError::Failed)?;
        if !self.invalid.is_empty() {
            return Err(UpsertError::InvalidPersons(self.invalid.clone()));
        }
        let n = persons.len() as u32;
        *self.upserted.borrow_mut() = Some((domain, persons));
        Ok(UpsertOutcome {
            created: n,
            updated: 0,
            unchanged: 0,
        })
    }
    fn get(&self, identifier: &str) -> Result<Employee, Error> {
        self.fail(format!("get {identifier}"))?;
        Ok(employee(identifier, EmployeeState::Active))
    }
    fn deactivate(&self, identifier: &str) -> Result<Employee, Error> {
        self.fail(format!("deactivate {identifier}"))?;
        Ok(employee(identifier, EmployeeState::Deactivated))
    }
    fn delete(&self, identifier: &str) -> Result<Option<Employee>, Error> {
        self.fail(format!("delete {identifier}"))?;
        Ok(self
            .mark_deleted
            .then(|| employee(identifier, EmployeeState::MarkedDeleted)))
    }
    fn list_changes(&self, since: &str, limit: u32) -> Result<ChangePage, Error> {
        self.fail(format!("list_changes '{since}' {limit}"))?;
        Ok(ChangePage {
            changes: vec![
                Change {
                    id: 7,
                    identifier: Some("E-1".into()),
                    kind: ChangeKind::Created,
                    at: 0,
                },
                Change {
                    id: 8,
                    identifier: None,
                    kind: ChangeKind::Deleted,
                    at: 1000,
                },
            ],
            next_token: "t-8".into(),
            more: false,
        })
    }
}

fn settings() -> Result<Settings, String> {
    Ok(Settings {
        endpoint: "https://lockgate.example/ws/hr".into(),
    })
}

fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<s:Envelope xmlns:s=\"{SOAP11_ENV}\" xmlns:h=\"{TNS}\"><s:Body>{body}</s:Body></s:Envelope>"
    )
}

fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    fake: &Fake,
) -> Handled {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    soap::handle(
        &HttpRequest {
            method,
            path,
            headers: &headers,
            body,
        },
        &settings(),
        fake,
    )
}

fn post_raw(body: &str, fake: &Fake) -> Handled {
    request(
        "POST",
        "",
        &[
            ("Content-Type", "text/xml; charset=utf-8"),
            ("SOAPAction", "\"\""),
        ],
        body.as_bytes(),
        fake,
    )
}

fn post(body: &str, fake: &Fake) -> Handled {
    post_raw(&envelope(body), fake)
}

/// The parsed response body's single element (the operation response or the Fault).
fn answer(h: &Handled) -> Element {
    let env = parse(&h.body, &Limits::REQUEST).expect("the response is well-formed");
    assert!(env.is(SOAP11_ENV, "Envelope"));
    let body = env
        .children
        .iter()
        .find(|c| c.is(SOAP11_ENV, "Body"))
        .unwrap();
    assert_eq!(body.children.len(), 1);
    body.children[0].clone()
}

fn child<'a>(e: &'a Element, name: &str) -> &'a Element {
    e.children
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} in {}", e.name))
}

/// (faultcode, faultstring, detail element) of a fault answer, checking HTTP 500.
fn fault(h: &Handled) -> (String, String, Option<Element>) {
    assert_eq!(h.status, 500, "faults are HTTP 500");
    let f = answer(h);
    assert!(f.is(SOAP11_ENV, "Fault"), "not a fault: {}", f.name);
    let detail = f
        .children
        .iter()
        .find(|c| c.name == "detail")
        .map(|d| d.children[0].clone());
    (
        child(&f, "faultcode").text.clone(),
        child(&f, "faultstring").text.clone(),
        detail,
    )
}

const ROW: &str = "<h:employee><h:identifier>E-1</h:identifier><h:firstName>Ada</h:firstName><h:lastName>Lovelace</h:lastName></h:employee>";

#[test]
fn get_employee_answers_every_field_in_schema_order() {
    let fake = Fake::default();
    let h = post(
        "<h:GetEmployee><h:identifier> E-1 </h:identifier></h:GetEmployee>",
        &fake,
    );
    assert_eq!(h.status, 200);
    assert_eq!(h.headers[0].1, "text/xml; charset=utf-8");
    assert_eq!(*fake.calls.borrow(), ["get E-1"]);
    let r = answer(&h);
    assert!(r.is(TNS, "GetEmployeeResponse"));
    let e = child(&r, "employee");
    let names: Vec<&str> = e.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "identifier",
            "firstName",
            "lastName",
            "email",
            "mobilePhone",
            "status",
            "domain",
            "version",
            "updatedAt"
        ]
    );
    assert!(e.children.iter().all(|c| c.ns.as_deref() == Some(TNS)));
    assert_eq!(child(e, "lastName").text, "Lovelace & <Byron>");
    assert_eq!(child(e, "status").text, "active");
    assert_eq!(child(e, "updatedAt").text, "2026-03-01T08:30:00.250Z");
    assert_eq!(h.log, "GetEmployee: ok");
}

#[test]
fn deactivate_and_delete_answer_the_outcome() {
    let fake = Fake::default();
    let r = answer(&post(
        "<h:DeactivateEmployee><h:identifier>E-2</h:identifier></h:DeactivateEmployee>",
        &fake,
    ));
    assert!(r.is(TNS, "DeactivateEmployeeResponse"));
    assert_eq!(child(child(&r, "employee"), "status").text, "deactivated");

    let r = answer(&post(
        "<h:DeleteEmployee><h:identifier>E-3</h:identifier></h:DeleteEmployee>",
        &fake,
    ));
    assert_eq!(child(&r, "outcome").text, "deleted");
    assert_eq!(r.children.len(), 1);

    let marking = Fake {
        mark_deleted: true,
        ..Fake::default()
    };
    let r = answer(&post(
        "<h:DeleteEmployee><h:identifier>E-3</h:identifier></h:DeleteEmployee>",
        &marking,
    ));
    assert_eq!(child(&r, "outcome").text, "markedDeleted");
    assert_eq!(child(child(&r, "employee"), "status").text, "markedDeleted");
    assert_eq!(*fake.calls.borrow(), ["deactivate E-2", "delete E-3"]);
}

#[test]
fn list_changes_passes_token_and_limit() {
    let fake = Fake::default();
    let r = answer(&post(
        "<h:ListChanges><h:sinceToken>t-6</h:sinceToken><h:limit>50</h:limit></h:ListChanges>",
        &fake,
    ));
    assert!(r.is(TNS, "ListChangesResponse"));
    let changes: Vec<&Element> = r.children.iter().filter(|c| c.name == "change").collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(child(changes[0], "kind").text, "created");
    assert_eq!(child(changes[0], "identifier").text, "E-1");
    assert!(changes[1].children.iter().all(|c| c.name != "identifier"));
    assert_eq!(child(changes[1], "kind").text, "deleted");
    assert_eq!(child(&r, "nextToken").text, "t-8");
    assert_eq!(child(&r, "more").text, "false");
    // Defaults: from the start, 100 per page.
    post("<h:ListChanges/>", &fake);
    assert_eq!(
        *fake.calls.borrow(),
        ["list_changes 't-6' 50", "list_changes '' 100"]
    );
    for bad in ["0", "1001", "ten", "-1"] {
        let (code, msg, detail) = fault(&post(
            &format!("<h:ListChanges><h:limit>{bad}</h:limit></h:ListChanges>"),
            &fake,
        ));
        assert_eq!(code, "soap:Client");
        assert!(
            msg.contains("`limit` must be a whole number from 1 to 1000"),
            "{msg}"
        );
        assert_eq!(detail.unwrap().attribute(None, "element"), Some("limit"));
    }
    assert_eq!(
        fake.calls.borrow().len(),
        2,
        "a refused call reaches no host operation"
    );
}

#[test]
fn upsert_maps_every_element_to_its_host_field() {
    let fake = Fake::default();
    let body = format!(
        "<h:UpsertEmployees><h:domain>Staff</h:domain>{ROW}<h:employee><h:identifier>E-2</h:identifier><h:lastName>Hopper</h:lastName><h:firstName>Grace</h:firstName><h:gmdText>g</h:gmdText><h:email>grace@example.com</h:email><h:companyAddress>c &amp; d</h:companyAddress><h:mobilePhone/></h:employee></h:UpsertEmployees>"
    );
    let h = post(&body, &fake);
    assert_eq!(h.status, 200, "{}", String::from_utf8_lossy(&h.body));
    let r = answer(&h);
    assert!(r.is(TNS, "UpsertEmployeesResponse"));
    assert_eq!(child(&r, "created").text, "2");
    assert_eq!(child(&r, "unchanged").text, "0");
    let (domain, persons) = fake.upserted.borrow().clone().unwrap();
    assert_eq!(domain.as_deref(), Some("Staff"));
    assert_eq!(persons[0].identifier, "E-1");
    assert_eq!(persons[0].surname, "Lovelace");
    assert!(persons[0].fields.is_empty() && persons[0].active);
    assert_eq!(
        (persons[1].first_name.as_str(), persons[1].surname.as_str()),
        ("Grace", "Hopper")
    );
    let fields: Vec<(&str, &str)> = persons[1]
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("email", "grace@example.com"),
            ("company_address", "c & d"),
            ("mobile_phone", ""),
            ("gmd_text", "g")
        ]
    );
    // No domain element: none.
    post(
        &format!("<h:UpsertEmployees>{ROW}</h:UpsertEmployees>"),
        &fake,
    );
    assert_eq!(fake.upserted.borrow().as_ref().unwrap().0, None);
}

#[test]
fn upsert_lists_every_invalid_row_and_writes_nothing() {
    let fake = Fake::default();
    let body = format!(
        "<h:UpsertEmployees>{ROW}\
         <h:employee><h:identifier>E-2</h:identifier><h:firstName>A</h:firstName><h:shoeSize>9</h:shoeSize></h:employee>\
         <h:employee><h:identifier>E-3</h:identifier><h:firstName>B</h:firstName><h:firstName>C</h:firstName><h:lastName> </h:lastName><h:city><h:x/></h:city></h:employee>\
         </h:UpsertEmployees>"
    );
    let (code, msg, detail) = fault(&post(&body, &fake));
    assert!(fake.calls.borrow().is_empty(), "nothing reaches the host");
    assert_eq!(code, "soap:Client");
    assert!(
        msg.starts_with("UpsertEmployees wrote nothing: 5 invalid fields in 2 employees"),
        "{msg}"
    );
    let detail = detail.unwrap();
    assert!(detail.is(TNS, "InvalidEmployees"));
    let rows: Vec<(String, String, String)> = detail
        .children
        .iter()
        .map(|r| {
            assert!(r.is(TNS, "Row"));
            assert!(r.attribute(None, "rule").is_some_and(|s| !s.is_empty()));
            (
                r.attribute(None, "index").unwrap().to_string(),
                r.attribute(None, "identifier").unwrap().to_string(),
                r.attribute(None, "field").unwrap().to_string(),
            )
        })
        .collect();
    let expect = |i: &str, id: &str, f: &str| (i.to_string(), id.to_string(), f.to_string());
    assert_eq!(
        rows,
        [
            expect("1", "E-2", "shoeSize"),
            expect("1", "E-2", "lastName"),
            expect("2", "E-3", "firstName"),
            expect("2", "E-3", "city"),
            expect("2", "E-3", "lastName"),
        ]
    );
}

#[test]
fn host_row_errors_name_the_xml_element() {
    let fake = Fake {
        invalid: vec![
            InvalidPerson {
                index: 0,
                identifier: "E-1".into(),
                field: "email".into(),
                reason: "must be a valid email address".into(),
            },
            InvalidPerson {
                index: 0,
                identifier: "E-1".into(),
                field: "first_name".into(),
                reason: "must be 1 to 49 characters".into(),
            },
            InvalidPerson {
                index: 1,
                identifier: "E-2".into(),
                field: "mobile_phone".into(),
                reason: "must be at most 100 characters".into(),
            },
        ],
        ..Fake::default()
    };
    let (code, msg, detail) = fault(&post(
        &format!("<h:UpsertEmployees>{ROW}{ROW}</h:UpsertEmployees>"),
        &fake,
    ));
    assert_eq!(code, "soap:Client");
    assert!(
        msg.contains("employee[0] (identifier 'E-1') email: must be a valid email address")
            && msg.contains(
                "employee[1] (identifier 'E-2') mobilePhone: must be at most 100 characters"
            ),
        "{msg}"
    );
    let fields: Vec<&str> = detail
        .as_ref()
        .unwrap()
        .children
        .iter()
        .map(|r| r.attribute(None, "field").unwrap())
        .collect();
    assert_eq!(fields, ["email", "firstName", "mobilePhone"]);
}

#[test]
fn host_errors_become_client_or_server_faults() {
    for (error, code, kind) in [
        (
            Error::not_found("no employee with identifier E-9"),
            "soap:Client",
            "notFound",
        ),
        (
            Error::invalid("deactivating needs the setting delete permanently"),
            "soap:Client",
            "invalid",
        ),
        (
            Error::denied("the C-key has no Employee permission"),
            "soap:Client",
            "denied",
        ),
        (
            Error::unavailable("the database is busy"),
            "soap:Server",
            "unavailable",
        ),
        (Error::other("boom"), "soap:Server", "other"),
    ] {
        let message = match &error {
            Error::Invalid(m)
            | Error::NotFound(m)
            | Error::Denied(m)
            | Error::Unavailable(m)
            | Error::Other(m) => m.clone(),
        };
        let fake = Fake {
            error: Some(error),
            ..Fake::default()
        };
        let h = post(
            "<h:GetEmployee><h:identifier>E-9</h:identifier></h:GetEmployee>",
            &fake,
        );
        let (c, m, detail) = fault(&h);
        assert_eq!((c.as_str(), m.as_str()), (code, message.as_str()));
        assert_eq!(detail.unwrap().attribute(None, "kind"), Some(kind));
        assert!(
            !h.log.contains("E-9"),
            "no personal data in the log: {}",
            h.log
        );
        // The batch call maps the same way.
        let (c, ..) = fault(&post(
            &format!("<h:UpsertEmployees>{ROW}</h:UpsertEmployees>"),
            &fake,
        ));
        assert_eq!(c, code);
    }
}

#[test]
fn a_batch_above_500_is_refused_whole() {
    let fake = Fake::default();
    let body = format!("<h:UpsertEmployees>{}</h:UpsertEmployees>", ROW.repeat(501));
    let (code, msg, detail) = fault(&post(&body, &fake));
    assert_eq!(code, "soap:Client");
    assert!(
        msg.contains("501 employees in one call; at most 500"),
        "{msg}"
    );
    assert_eq!(detail.unwrap().attribute(None, "kind"), Some("limit"));
    assert!(fake.calls.borrow().is_empty());
    let body = format!("<h:UpsertEmployees>{}</h:UpsertEmployees>", ROW.repeat(500));
    assert_eq!(post(&body, &fake).status, 200);
    let (_, msg, _) = fault(&post("<h:UpsertEmployees/>", &fake));
    assert!(msg.contains("at least one `employee`"), "{msg}");
}

#[test]
fn doctype_depth_count_and_size_are_client_faults() {
    let fake = Fake::default();
    let doctype = format!(
        "<!DOCTYPE s:Envelope [<!ENTITY x \"y\">]>{}",
        envelope("<h:GetEmployee><h:identifier>&x;</h:identifier></h:GetEmployee>")
    );
    let (code, msg, detail) = fault(&post_raw(&doctype, &fake));
    assert_eq!(code, "soap:Client");
    assert!(msg.contains("DOCTYPE declaration is not allowed"), "{msg}");
    assert_eq!(detail.unwrap().attribute(None, "kind"), Some("doctype"));

    let deep = format!(
        "<h:GetEmployee>{}{}</h:GetEmployee>",
        "<h:x>".repeat(40),
        "</h:x>".repeat(40)
    );
    let (_, msg, detail) = fault(&post(&deep, &fake));
    assert!(msg.contains("nested deeper than 32 levels"), "{msg}");
    assert_eq!(detail.unwrap().attribute(None, "kind"), Some("limit"));

    let many = format!(
        "<h:UpsertEmployees>{}</h:UpsertEmployees>",
        "<h:x/>".repeat(20_001)
    );
    let (_, msg, _) = fault(&post(&many, &fake));
    assert!(msg.contains("more than 20000 elements"), "{msg}");

    let big = envelope(&format!("<!--{}-->", "x".repeat(4 * 1024 * 1024)));
    let (_, msg, _) = fault(&post_raw(&big, &fake));
    assert!(msg.contains("at most 4194304 are accepted"), "{msg}");

    let long = format!(
        "<h:GetEmployee><h:identifier>{}</h:identifier></h:GetEmployee>",
        "x".repeat(1025)
    );
    let (_, msg, _) = fault(&post(&long, &fake));
    assert!(msg.contains("longer than 1024 characters"), "{msg}");
    assert!(fake.calls.borrow().is_empty());
}

#[test]
fn bad_xml_names_line_and_column() {
    let fake = Fake::default();
    let (code, msg, detail) = fault(&post_raw(
        &format!(
            "<s:Envelope xmlns:s=\"{SOAP11_ENV}\">\n<s:Body>\n  <a></b>\n</s:Body></s:Envelope>"
        ),
        &fake,
    ));
    assert_eq!(code, "soap:Client");
    assert!(
        msg.contains("not well-formed") && msg.contains("line 3"),
        "{msg}"
    );
    let d = detail.unwrap();
    assert_eq!(d.attribute(None, "kind"), Some("malformed"));
    assert_eq!(d.attribute(None, "line"), Some("3"));
}

#[test]
fn soap_1_2_is_a_version_mismatch() {
    let fake = Fake::default();
    let v12 = format!(
        "<e:Envelope xmlns:e=\"{SOAP12_ENV}\"><e:Body><h:GetEmployee xmlns:h=\"{TNS}\"/></e:Body></e:Envelope>"
    );
    let (code, msg, detail) = fault(&post_raw(&v12, &fake));
    assert_eq!(code, "soap:VersionMismatch");
    assert!(msg.contains("SOAP 1.2 envelope is not supported"), "{msg}");
    assert!(detail.is_none());
    let h = request(
        "POST",
        "",
        &[("content-type", "application/soap+xml; charset=utf-8")],
        v12.as_bytes(),
        &fake,
    );
    assert_eq!(fault(&h).0, "soap:VersionMismatch");
    let (code, msg, _) = fault(&post_raw("<Envelope><Body/></Envelope>", &fake));
    assert_eq!(code, "soap:VersionMismatch");
    assert!(msg.contains("namespace `(none)`"), "{msg}");
}

#[test]
fn ws_security_is_understood_and_other_must_understand_headers_fault() {
    let fake = Fake::default();
    let with_header = |header: &str| {
        format!(
            "<s:Envelope xmlns:s=\"{SOAP11_ENV}\" xmlns:h=\"{TNS}\"><s:Header>{header}</s:Header><s:Body><h:GetEmployee><h:identifier>E-1</h:identifier></h:GetEmployee></s:Body></s:Envelope>"
        )
    };
    let wsse = format!(
        "<wsse:Security s:mustUnderstand=\"1\" xmlns:wsse=\"{WSSE}\"><wsse:UsernameToken><wsse:Username>hr</wsse:Username><wsse:Password>secret</wsse:Password></wsse:UsernameToken></wsse:Security>"
    );
    let h = post_raw(&with_header(&wsse), &fake);
    assert_eq!(h.status, 200);
    assert!(
        !h.log.contains("secret") && !h.log.contains("hr"),
        "{}",
        h.log
    );
    // Not required to understand: ignored.
    let optional = "<x:Trace xmlns:x=\"urn:other\" s:mustUnderstand=\"0\">1</x:Trace>";
    assert_eq!(post_raw(&with_header(optional), &fake).status, 200);
    // Addressed to another actor: not ours.
    let other_actor =
        "<x:Trace xmlns:x=\"urn:other\" s:mustUnderstand=\"1\" s:actor=\"urn:gateway\">1</x:Trace>";
    assert_eq!(post_raw(&with_header(other_actor), &fake).status, 200);
    let required =
        format!("{wsse}<x:Trace xmlns:x=\"urn:other\" s:mustUnderstand=\"1\">1</x:Trace>");
    let (code, msg, detail) = fault(&post_raw(&with_header(&required), &fake));
    assert_eq!(code, "soap:MustUnderstand");
    assert!(msg.contains("`{urn:other}Trace`"), "{msg}");
    assert!(detail.is_none(), "no detail for header faults");
    assert_eq!(fake.calls.borrow().len(), 3);
}

#[test]
fn unknown_operations_and_bad_requests_are_named() {
    let fake = Fake::default();
    let (code, msg, detail) = fault(&post("<h:DropEmployees/>", &fake));
    assert_eq!(code, "soap:Client");
    assert!(msg.contains("unknown operation `DropEmployees`"), "{msg}");
    let d = detail.unwrap();
    assert_eq!(d.attribute(None, "kind"), Some("unknownOperation"));
    assert_eq!(d.attribute(None, "element"), Some("DropEmployees"));
    // Right name, wrong namespace.
    let (_, msg, _) = fault(&post("<GetEmployee xmlns=\"urn:other\"/>", &fake));
    assert!(
        msg.contains("unknown operation `{urn:other}GetEmployee`"),
        "{msg}"
    );
    // An unqualified child element.
    let (_, msg, detail) = fault(&post(
        "<h:GetEmployee><identifier>E-1</identifier></h:GetEmployee>",
        &fake,
    ));
    assert!(
        msg.contains("`identifier (no namespace)`") && msg.contains("expected `identifier`"),
        "{msg}"
    );
    assert_eq!(
        detail.unwrap().attribute(None, "element"),
        Some("identifier")
    );
    let (_, msg, _) = fault(&post("<h:GetEmployee/>", &fake));
    assert!(msg.contains("`identifier` is required"), "{msg}");
    let (_, msg, _) = fault(&post("<h:GetEmployee/><h:GetEmployee/>", &fake));
    assert!(msg.contains("more than one element"), "{msg}");
    let (_, msg, _) = fault(&post("", &fake));
    assert!(msg.contains("Body is empty"), "{msg}");
    let (_, msg, _) = fault(&post_raw(
        &format!("<s:Envelope xmlns:s=\"{SOAP11_ENV}\"/>"),
        &fake,
    ));
    assert!(msg.contains("no Body"), "{msg}");
    assert!(fake.calls.borrow().is_empty());
}

#[test]
fn soap_action_must_match_or_be_empty() {
    let fake = Fake::default();
    let body = envelope("<h:GetEmployee><h:identifier>E-1</h:identifier></h:GetEmployee>");
    for (action, ok) in [
        ("\"urn:lockgate:hr:1/GetEmployee\"", true),
        ("urn:lockgate:hr:1/GetEmployee", true),
        ("", true),
        ("\"urn:lockgate:hr:1/DeleteEmployee\"", false),
    ] {
        let h = request(
            "POST",
            "",
            &[("content-type", "text/xml"), ("soapaction", action)],
            body.as_bytes(),
            &fake,
        );
        if ok {
            assert_eq!(h.status, 200, "{action}");
        } else {
            let (code, msg, _) = fault(&h);
            assert_eq!(code, "soap:Client");
            assert!(
                msg.contains("does not match the operation GetEmployee"),
                "{msg}"
            );
        }
    }
    assert_eq!(
        fake.calls.borrow().len(),
        3,
        "the mismatching call is refused before the host"
    );
}

#[test]
fn http_level_answers() {
    let fake = Fake::default();
    let h = request("GET", "?wsdl", &[], b"", &fake);
    assert_eq!(h.status, 200);
    assert_eq!(h.headers[0].1, "text/xml; charset=utf-8");
    assert!(
        String::from_utf8_lossy(&h.body).contains("location=\"https://lockgate.example/ws/hr\"")
    );
    assert_eq!(request("GET", "/?WSDL", &[], b"", &fake).status, 200);
    assert_eq!(request("GET", "", &[], b"", &fake).status, 404);
    assert_eq!(request("GET", "/other?wsdl", &[], b"", &fake).status, 404);
    let h = request("PUT", "", &[], b"", &fake);
    assert_eq!(h.status, 405);
    assert!(
        h.headers
            .iter()
            .any(|(k, v)| k == "allow" && v == "GET, POST")
    );
    let body = envelope("<h:GetEmployee><h:identifier>E-1</h:identifier></h:GetEmployee>");
    let (code, msg, _) = fault(&request(
        "POST",
        "",
        &[("content-type", "application/json")],
        body.as_bytes(),
        &fake,
    ));
    assert_eq!(code, "soap:Client");
    assert!(msg.contains("Content-Type must be text/xml"), "{msg}");
    // A misconfigured endpoint is reported, never served.
    let bad: Result<Settings, String> = Err("config `endpoint` ('http://x') uses http://".into());
    let h = soap::handle(
        &HttpRequest {
            method: "GET",
            path: "?wsdl",
            headers: &[],
            body: b"",
        },
        &bad,
        &fake,
    );
    assert_eq!(h.status, 500);
    let hdrs = vec![("content-type".to_string(), "text/xml".to_string())];
    let h = soap::handle(
        &HttpRequest {
            method: "POST",
            path: "",
            headers: &hdrs,
            body: body.as_bytes(),
        },
        &bad,
        &fake,
    );
    let (code, msg, _) = fault(&h);
    assert_eq!(code, "soap:Server");
    assert!(msg.contains("not configured correctly"), "{msg}");
    assert!(fake.calls.borrow().is_empty());
}

#[test]
fn faults_escape_what_they_quote() {
    let fake = Fake {
        error: Some(Error::not_found("no employee `<x>&\"'`")),
        ..Fake::default()
    };
    let (_, msg, _) = fault(&post(
        "<h:GetEmployee><h:identifier>&lt;x&gt;</h:identifier></h:GetEmployee>",
        &fake,
    ));
    assert_eq!(msg, "no employee `<x>&\"'`");
    let fake = Fake {
        invalid: vec![InvalidPerson {
            index: 0,
            identifier: "\"/><evil/>".into(),
            field: "email".into(),
            reason: "a < b & \"c\"".into(),
        }],
        ..Fake::default()
    };
    let (_, _, detail) = fault(&post(
        &format!("<h:UpsertEmployees>{ROW}</h:UpsertEmployees>"),
        &fake,
    ));
    let row = &detail.unwrap().children[0];
    assert_eq!(row.attribute(None, "identifier"), Some("\"/><evil/>"));
    assert_eq!(row.attribute(None, "rule"), Some("a < b & \"c\""));
}
