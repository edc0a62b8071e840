//! Authorisation as a matrix: every endpoint × every permission level of the function that
//! governs it, domain scoping of domain elements, authentication (missing, wrong and revoked
//! tokens) and the rules on administrators themselves (hierarchy, own C-key, approver role).
//!
//! The expectations are hand-written tables below — which function and level each endpoint
//! needs, which levels each function offers, which dependencies a role must satisfy — and are
//! deliberately NOT derived from the production code (`ObjectKind::function`,
//! `Function::requires`, ...), so a wrong mapping in production shows up as a failed cell.
//!
//! Every test collects all failed cells and reports them together at the end, so one run
//! shows every deviation rather than the first.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use lockgate_tests::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Hand-written tables
// ---------------------------------------------------------------------------------------------

/// A permission level; each includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Lv {
    None,
    List,
    View,
    Full,
}

const LEVELS: [Lv; 4] = [Lv::None, Lv::List, Lv::View, Lv::Full];

impl Lv {
    fn as_str(self) -> &'static str {
        match self {
            Lv::None => "none",
            Lv::List => "list",
            Lv::View => "view",
            Lv::Full => "full",
        }
    }
}

const ALL4: &[Lv] = &[Lv::None, Lv::List, Lv::View, Lv::Full];
const NVF: &[Lv] = &[Lv::None, Lv::View, Lv::Full];
const NF: &[Lv] = &[Lv::None, Lv::Full];
const NV: &[Lv] = &[Lv::None, Lv::View];

/// The levels each function used by the matrix offers; a role granting another level is refused.
const OFFERED: &[(&str, &[Lv])] = &[
    ("domain", NF),
    ("employee", ALL4),
    ("visitor", ALL4),
    ("key", ALL4),
    ("c_key", NVF),
    ("cylinder", ALL4),
    ("access_profiles", NVF),
    ("temporary_access_groups", NVF),
    ("schedule_templates_edit", NVF),
    ("remote_pds", ALL4),
    ("roles", NVF),
    ("system_settings", NVF),
    ("key_holder_deactivate", NF),
    ("employee_import", NF),
    ("key_validity", NF),
    ("key_authorisation", NVF),
    ("key_hand_in_out", NF),
    ("cylinder_authorisation", NVF),
    ("access_profile_authorisation", NVF),
    ("flexible_revalidation", NF),
    ("c_key_hand_in_out", NF),
    ("automatic_audit_trail", NVF),
    ("firmware", NF),
    ("statistics", NV),
    ("system_status", NV),
    ("maintenance", NF),
];

fn offered(f: &str) -> &'static [Lv] {
    OFFERED
        .iter()
        .find(|(n, _)| *n == f)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| panic!("function {f} missing from OFFERED"))
}

/// The minimum other levels a role needs to hold `f` at `l` (for the functions of the matrix).
fn minimum_dependencies(f: &str, l: Lv) -> &'static [(&'static str, Lv)] {
    if l == Lv::None {
        return &[];
    }
    match f {
        "key_holder_deactivate" => &[("employee", Lv::Full), ("visitor", Lv::Full)],
        "employee_import" => &[("employee", Lv::Full)],
        "key_validity" => &[("key", Lv::View)],
        "key_authorisation" => &[("key", Lv::View), ("cylinder", Lv::List)],
        "key_hand_in_out" => &[
            ("employee", Lv::List),
            ("visitor", Lv::List),
            ("key", Lv::View),
            ("cylinder", Lv::List),
            ("key_authorisation", Lv::Full),
        ],
        "cylinder_authorisation" => &[("cylinder", Lv::View), ("key", Lv::List)],
        "access_profile_authorisation" => &[("access_profiles", Lv::View)],
        "c_key_hand_in_out" => &[("employee", Lv::List), ("c_key", Lv::View)],
        "automatic_audit_trail" => &[("c_key", Lv::View)],
        "firmware" => &[("remote_pds", Lv::Full)],
        "system_status" => &[("remote_pds", Lv::List)],
        _ => &[],
    }
}

/// Permissions granting each of `base`, and `f` at exactly `l` with its minimum
/// dependencies (the higher level wins where they overlap, never above `l` for `f`).
fn permissions_with(base: &[(&str, Lv)], f: &str, l: Lv) -> Value {
    let mut m: std::collections::BTreeMap<String, Lv> = std::collections::BTreeMap::new();
    for (g, gl) in base.iter().chain(minimum_dependencies(f, l)) {
        let e = m.entry(g.to_string()).or_insert(Lv::None);
        *e = (*e).max(*gl);
    }
    m.insert(f.to_string(), l);
    Value::Object(m.into_iter().map(|(k, v)| (k, json!(v.as_str()))).collect())
}

/// Fields whose change needs a function of its own at Full, besides the collection's function
/// at Full: (collection, merge patch, field function, the base the administrator holds).
type FieldPatch = fn(&Fx) -> Value;
#[allow(clippy::type_complexity)]
const FIELD_ROWS: &[(&str, &str, FieldPatch, &str, &[(&str, Lv)])] = &[
    (
        "keys",
        "validity",
        |_| json!({ "validity": { "activation": { "mode": "inactive" } } }),
        "key_validity",
        &[("key", Lv::Full)],
    ),
    (
        "keys",
        "access_profile_ids",
        |fx| json!({ "access_profile_ids": [fx.ids["access-profiles"]] }),
        "key_authorisation",
        &[("key", Lv::Full)],
    ),
    (
        "keys",
        "holder_id",
        |fx| json!({ "status": "handed_out", "holder_id": fx.ids["employees"], "date_out": "2030-01-02" }),
        "key_hand_in_out",
        &[("key", Lv::Full)],
    ),
    (
        "cylinders",
        "access_list",
        |fx| json!({ "access_list": { "key_ids": [fx.ids["keys"]] } }),
        "cylinder_authorisation",
        &[("cylinder", Lv::Full)],
    ),
    (
        "cylinder-groups",
        "revalidation_interval_hours",
        |_| json!({ "revalidation_interval_hours": 24 }),
        "flexible_revalidation",
        &[("cylinder", Lv::Full)],
    ),
    (
        "access-profiles",
        "cylinder_ids",
        |fx| json!({ "cylinder_ids": [fx.ids["cylinders"]] }),
        "access_profile_authorisation",
        &[("access_profiles", Lv::Full)],
    ),
    (
        "access-profiles",
        "revalidation_interval_hours",
        |_| json!({ "revalidation_interval_hours": 48 }),
        "flexible_revalidation",
        &[("access_profiles", Lv::Full)],
    ),
    (
        "employees",
        "access_profile_ids",
        |fx| json!({ "access_profile_ids": [fx.ids["access-profiles"]] }),
        "access_profile_authorisation",
        &[("employee", Lv::Full)],
    ),
    (
        "visitors",
        "access_profile_ids",
        |fx| json!({ "access_profile_ids": [fx.ids["access-profiles"]] }),
        "access_profile_authorisation",
        &[("visitor", Lv::Full)],
    ),
    (
        "c-keys",
        "role_ids",
        |fx| json!({ "role_ids": [fx.ids["roles"]] }),
        "roles",
        &[("c_key", Lv::Full)],
    ),
    (
        "c-keys",
        "domain_ids",
        |fx| json!({ "domain_ids": [fx.a] }),
        "domain",
        &[("c_key", Lv::Full)],
    ),
    (
        "c-keys",
        "holder_id",
        |fx| json!({ "status": "handed_out", "holder_id": fx.ids["employees"] }),
        "c_key_hand_in_out",
        &[("c_key", Lv::Full)],
    ),
    (
        "c-keys",
        "capabilities.automatic_audit_trail",
        |_| json!({ "capabilities": { "automatic_audit_trail": true } }),
        "automatic_audit_trail",
        &[("c_key", Lv::Full)],
    ),
    (
        "remote-pds",
        "firmware",
        |_| json!({ "firmware": "4.2" }),
        "firmware",
        &[("remote_pds", Lv::Full)],
    ),
];

/// Permissions of a role granting exactly `l` on `f`, plus the minimum dependencies.
fn role_permissions(f: &str, l: Lv) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(f.to_string(), json!(l.as_str()));
    for (dep, dl) in minimum_dependencies(f, l) {
        m.insert(dep.to_string(), json!(dl.as_str()));
    }
    Value::Object(m)
}

/// A collection under `/api/v1`: its path, its object kind (as bulk requests name it) and the
/// function governing it.
#[derive(Debug)]
struct Coll {
    path: &'static str,
    kind: &'static str,
    function: &'static str,
}

const COLLS: &[Coll] = &[
    Coll {
        path: "domains",
        kind: "domain",
        function: "domain",
    },
    Coll {
        path: "employees",
        kind: "employee",
        function: "employee",
    },
    Coll {
        path: "visitors",
        kind: "visitor",
        function: "visitor",
    },
    Coll {
        path: "keys",
        kind: "key",
        function: "key",
    },
    Coll {
        path: "c-keys",
        kind: "c_key",
        function: "c_key",
    },
    Coll {
        path: "key-groups",
        kind: "key_group",
        function: "key",
    },
    Coll {
        path: "cylinders",
        kind: "cylinder",
        function: "cylinder",
    },
    Coll {
        path: "cylinder-groups",
        kind: "cylinder_group",
        function: "cylinder",
    },
    Coll {
        path: "access-profiles",
        kind: "access_profile",
        function: "access_profiles",
    },
    Coll {
        path: "temporary-access-groups",
        kind: "temporary_access_group",
        function: "temporary_access_groups",
    },
    Coll {
        path: "schedule-templates",
        kind: "schedule_template",
        function: "schedule_templates_edit",
    },
    Coll {
        path: "remote-pds",
        kind: "remote_pd",
        function: "remote_pds",
    },
    Coll {
        path: "roles",
        kind: "role",
        function: "roles",
    },
];

fn coll(path: &str) -> &'static Coll {
    COLLS
        .iter()
        .find(|c| c.path == path)
        .unwrap_or_else(|| panic!("no collection {path}"))
}

/// What a matrix row calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// GET /{coll}
    Search,
    /// GET /{coll}?with_body=true (bodies are details: View)
    SearchBodies,
    /// GET /{coll}/{id}
    Read,
    /// GET /{coll}/{id}/events
    Events,
    /// POST /{coll}
    Create,
    /// PATCH /{coll}/{id}
    Patch,
    /// DELETE /{coll}/{id}
    Delete,
    /// POST /{coll}/{id}/deactivate
    Deactivate,
    /// POST /{coll}/{id}/reactivate
    Reactivate,
    /// POST /{coll}/{id}/restore (a person marked as deleted)
    Restore,
    /// POST /employees/import?dry_run=true
    Import,
    /// GET /employees/export
    Export,
    /// GET /system
    System,
    /// PATCH /system/settings
    Settings,
    /// POST /bulk/tags for the collection's kind
    BulkTags,
    /// POST /bulk/domain for the collection's kind
    BulkDomain,
    /// POST /bulk/key-validity
    BulkValidity,
    /// GET /statistics
    Statistics,
    /// GET /system/status
    SystemStatus,
    /// PUT /system/maintenance (a lock an hour ahead, so the matrix goes on)
    MaintenanceLock,
    /// DELETE /system/maintenance
    MaintenanceUnlock,
    /// POST /remote-pds/{id}/enrolment-code
    PdEnrolmentCode,
    /// GET /remote-pds/{id}/certificates
    PdCertificates,
    /// POST /remote-pds/{id}/certificates/revoke
    PdRevoke,
    /// GET /pd-ca
    PdCa,
    /// GET /remote-pds/{id}/status
    PdStatus,
    /// GET /pd-krl
    PdKrl,
}

/// One endpoint of the matrix and the permission it needs.
#[derive(Debug, Clone, Copy)]
struct Row {
    op: Op,
    coll: &'static str,
    function: &'static str,
    needs: Lv,
}

fn rows() -> Vec<Row> {
    let mut v = Vec::new();
    for c in COLLS {
        for (op, needs) in [
            (Op::Search, Lv::List),
            (Op::SearchBodies, Lv::View),
            (Op::Read, Lv::View),
            (Op::Events, Lv::View),
            (Op::Create, Lv::Full),
            (Op::Patch, Lv::Full),
            (Op::Delete, Lv::Full),
        ] {
            // Every administrator lists and reads the domains they hold (manual §6.6.5).
            let needs = if c.path == "domains" && matches!(op, Op::Search | Op::Read) {
                Lv::None
            } else {
                needs
            };
            v.push(Row {
                op,
                coll: c.path,
                function: c.function,
                needs,
            });
        }
    }
    let extra = |op, coll, function, needs| Row {
        op,
        coll,
        function,
        needs,
    };
    for p in ["employees", "visitors"] {
        v.push(extra(Op::Deactivate, p, "key_holder_deactivate", Lv::Full));
        v.push(extra(Op::Reactivate, p, "key_holder_deactivate", Lv::Full));
    }
    v.push(extra(Op::Import, "employees", "employee_import", Lv::Full));
    v.push(extra(Op::Export, "employees", "employee", Lv::View));
    v.push(extra(Op::System, "", "system_settings", Lv::View));
    v.push(extra(Op::Settings, "", "system_settings", Lv::Full));
    v.push(extra(Op::Statistics, "", "statistics", Lv::View));
    v.push(extra(Op::SystemStatus, "", "system_status", Lv::View));
    v.push(extra(Op::MaintenanceLock, "", "maintenance", Lv::Full));
    v.push(extra(Op::MaintenanceUnlock, "", "maintenance", Lv::Full));
    v.push(extra(
        Op::PdEnrolmentCode,
        "remote-pds",
        "remote_pds",
        Lv::Full,
    ));
    v.push(extra(
        Op::PdCertificates,
        "remote-pds",
        "remote_pds",
        Lv::View,
    ));
    v.push(extra(Op::PdRevoke, "remote-pds", "remote_pds", Lv::Full));
    v.push(extra(Op::PdCa, "", "remote_pds", Lv::View));
    v.push(extra(Op::PdStatus, "remote-pds", "remote_pds", Lv::View));
    v.push(extra(Op::PdKrl, "", "remote_pds", Lv::View));
    for (p, f) in [
        ("employees", "employee"),
        ("visitors", "visitor"),
        ("keys", "key"),
        ("key-groups", "key"),
        ("cylinders", "cylinder"),
        ("cylinder-groups", "cylinder"),
        ("access-profiles", "access_profiles"),
        ("temporary-access-groups", "temporary_access_groups"),
        ("remote-pds", "remote_pds"),
        ("c-keys", "c_key"),
    ] {
        v.push(extra(Op::BulkTags, p, f, Lv::Full));
    }
    for (p, f) in [
        ("employees", "employee"),
        ("visitors", "visitor"),
        ("keys", "key"),
        ("cylinders", "cylinder"),
        ("cylinder-groups", "cylinder"),
        ("access-profiles", "access_profiles"),
        ("temporary-access-groups", "temporary_access_groups"),
    ] {
        v.push(extra(Op::BulkDomain, p, f, Lv::Full));
    }
    v.push(extra(Op::BulkValidity, "keys", "key_validity", Lv::Full));
    v
}

/// Rows that need persons marked as deleted (setting "mark as deleted"), run last.
fn late_rows() -> Vec<Row> {
    vec![
        Row {
            op: Op::Restore,
            coll: "employees",
            function: "employee",
            needs: Lv::Full,
        },
        Row {
            op: Op::Restore,
            coll: "visitors",
            function: "visitor",
            needs: Lv::Full,
        },
    ]
}

/// Roles that break a dependency are refused (422 naming the function); with the dependencies
/// they are accepted. (function, level, dependencies satisfying it, a too-low variant if any)
#[allow(clippy::type_complexity)]
const DEPENDENCIES: &[(&str, Lv, &[(&str, Lv)], Option<(&str, Lv)>)] = &[
    (
        "key_validity",
        Lv::Full,
        &[("key", Lv::View)],
        Some(("key", Lv::List)),
    ),
    (
        "employee_import",
        Lv::Full,
        &[("employee", Lv::Full)],
        Some(("employee", Lv::View)),
    ),
    (
        "key_holder_deactivate",
        Lv::Full,
        &[("employee", Lv::Full), ("visitor", Lv::Full)],
        Some(("visitor", Lv::View)),
    ),
    (
        "key_authorisation",
        Lv::View,
        &[("key", Lv::View), ("cylinder", Lv::List)],
        Some(("key", Lv::List)),
    ),
    (
        "cylinder_authorisation",
        Lv::Full,
        &[("cylinder", Lv::View), ("key", Lv::List)],
        Some(("cylinder", Lv::List)),
    ),
    (
        "access_profile_authorisation",
        Lv::View,
        &[("access_profiles", Lv::View)],
        None,
    ),
    ("key_update_history", Lv::View, &[("key", Lv::View)], None),
    (
        "firmware",
        Lv::Full,
        &[("remote_pds", Lv::Full)],
        Some(("remote_pds", Lv::View)),
    ),
    ("system_status", Lv::View, &[("remote_pds", Lv::List)], None),
    (
        "c_key_hand_in_out",
        Lv::Full,
        &[("employee", Lv::List), ("c_key", Lv::View)],
        None,
    ),
    (
        "cylinder_programming",
        Lv::Full,
        &[("cylinder", Lv::List)],
        None,
    ),
    (
        "automatic_audit_trail",
        Lv::View,
        &[("c_key", Lv::View)],
        None,
    ),
    (
        "ldap_integration",
        Lv::View,
        &[("system_settings", Lv::View)],
        None,
    ),
    (
        "schedule_templates_apply",
        Lv::Full,
        &[("key", Lv::View)],
        Some(("key", Lv::List)),
    ),
    (
        "key_schedule",
        Lv::Full,
        &[("schedule_templates_apply", Lv::Full), ("key", Lv::View)],
        None,
    ),
    (
        "key_hand_in_out",
        Lv::Full,
        &[
            ("employee", Lv::List),
            ("visitor", Lv::List),
            ("key", Lv::View),
            ("cylinder", Lv::List),
            ("key_authorisation", Lv::Full),
        ],
        None,
    ),
];

/// The English header of the employee CSV format.
const CSV_HEADER: &str = "Identifier,Title,First name,Last name,Domain,Email,Phone,Organisation,Department,Street,Postcode,Language,Region,Job,City,State,Country,Company address,Location,Mobile phone,GMD text";

fn csv_row(identifier: &str, first: &str, last: &str, domain: &str) -> String {
    format!("{identifier},,{first},{last},{domain}{}", ",".repeat(16))
}

// ---------------------------------------------------------------------------------------------
// Checking helpers
// ---------------------------------------------------------------------------------------------

/// Collected results of one test: all failures are reported together.
#[derive(Debug, Default)]
struct Checks {
    cells: usize,
    failures: Vec<String>,
}

impl Checks {
    fn record(&mut self, what: &str, result: Result<(), String>) {
        self.cells += 1;
        if let Err(e) = result {
            self.failures.push(format!("{what}: {e}"));
        }
    }

    fn status(&mut self, what: &str, r: &Resp, status: u16) {
        self.record(what, want_status(r, status));
    }

    /// A 404 problem document.
    fn not_found(&mut self, what: &str, r: &Resp) {
        self.record(what, want_status(r, 404).and_then(|()| want_problem(r)));
    }

    /// A 403 problem document.
    fn forbidden(&mut self, what: &str, r: &Resp) {
        self.record(what, want_status(r, 403).and_then(|()| want_problem(r)));
    }

    /// A 422 problem document naming `field` among its errors.
    fn invalid(&mut self, what: &str, r: &Resp, field: &str) {
        self.record(what, want_invalid(r, field));
    }

    fn unauthorized(&mut self, what: &str, r: &Resp) {
        self.record(what, want_unauthorized(r));
    }

    fn truth(&mut self, what: &str, ok: bool, detail: impl FnOnce() -> String) {
        self.record(what, if ok { Ok(()) } else { Err(detail()) });
    }

    fn finish(self, test: &str, db: Db) {
        eprintln!(
            "{test} on {db:?}: {} checks, {} failed",
            self.cells,
            self.failures.len()
        );
        assert!(
            self.failures.is_empty(),
            "{test} on {db:?}: {} of {} checks failed:\n  - {}",
            self.failures.len(),
            self.cells,
            self.failures.join("\n  - ")
        );
    }
}

fn short(body: &Value) -> String {
    let s = body.to_string();
    if s.chars().count() > 400 {
        format!("{}…", s.chars().take(400).collect::<String>())
    } else {
        s
    }
}

fn want_status(r: &Resp, status: u16) -> Result<(), String> {
    if r.status.as_u16() == status {
        Ok(())
    } else {
        Err(format!(
            "expected {status}, got {}: {}",
            r.status.as_u16(),
            short(&r.body)
        ))
    }
}

fn content_type(r: &Resp) -> &str {
    r.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn want_problem(r: &Resp) -> Result<(), String> {
    if content_type(r).starts_with("application/problem+json") {
        Ok(())
    } else {
        Err(format!(
            "expected Content-Type application/problem+json, got '{}'",
            content_type(r)
        ))
    }
}

fn want_invalid(r: &Resp, field: &str) -> Result<(), String> {
    want_status(r, 422)?;
    want_problem(r)?;
    if r.error_fields().iter().any(|f| f == field) {
        Ok(())
    } else {
        Err(format!(
            "422 does not name field '{field}': {}",
            short(&r.body)
        ))
    }
}

/// A 403 problem document naming the function (its `function` member or its detail).
fn want_forbidden_naming(r: &Resp, function: &str) -> Result<(), String> {
    want_status(r, 403)?;
    want_problem(r)?;
    let named = r.body["function"].as_str() == Some(function)
        || r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("'{function}'")));
    if named {
        Ok(())
    } else {
        Err(format!(
            "403 does not name function '{function}': {}",
            short(&r.body)
        ))
    }
}

fn want_unauthorized(r: &Resp) -> Result<(), String> {
    want_status(r, 401)?;
    want_problem(r)?;
    match r.headers.get(header::WWW_AUTHENTICATE) {
        Some(v) if v.to_str().unwrap_or("").starts_with("Bearer") => Ok(()),
        Some(v) => Err(format!(
            "WWW-Authenticate is {v:?}, expected a Bearer challenge"
        )),
        None => Err("401 without a WWW-Authenticate header".into()),
    }
}

fn ids_of(r: &Resp) -> Vec<i64> {
    r.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["id"].as_i64()).collect())
        .unwrap_or_default()
}

/// Send a request with a raw `Authorization` header value and an optional body with its type.
async fn send_raw(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<(&str, String)>,
) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    let req = match body {
        Some((ct, b)) => req.header(header::CONTENT_TYPE, ct).body(Body::from(b)),
        None => req.body(Body::empty()),
    }
    .expect("request");
    app.send(req).await
}

async fn as_admin(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Resp {
    app.call(method, path, Some(token), body).await
}

/// Id of the normal C-key group every system has.
async fn c_key_group(app: &TestApp) -> i64 {
    app.get("/api/v1/key-groups?type=normal_c_key")
        .await
        .expect(200)
        .body["items"][0]["id"]
        .as_i64()
        .expect("a normal C-key group")
}

// ---------------------------------------------------------------------------------------------
// Fixtures and bodies
// ---------------------------------------------------------------------------------------------

/// Objects the matrix reads and changes, all created by the super-administrator in domain A.
#[derive(Debug)]
struct Fx {
    a: i64,
    key_group: i64,
    c_key_group: i64,
    /// One object per collection, read, patched and bulk-changed by the cells.
    ids: HashMap<&'static str, i64>,
    /// One object per collection for the Full cell of DELETE.
    doomed: HashMap<&'static str, i64>,
    /// Active persons for the Full cell of deactivate.
    to_deactivate: HashMap<&'static str, i64>,
    /// Deactivated persons for the Full cell of reactivate.
    to_reactivate: HashMap<&'static str, i64>,
    /// Persons marked as deleted for the Full cell of restore (set up before the late rows).
    to_restore: HashMap<&'static str, i64>,
}

impl Fx {
    /// The domains the matrix administrators hold: domain A, and the domain fixtures
    /// themselves (a domain is visible only to those who administer it).
    fn admin_domains(&self) -> Vec<i64> {
        let mut d = vec![self.a];
        d.extend(self.ids.get("domains").copied());
        d.extend(self.doomed.get("domains").copied());
        d
    }

    /// The same, once the doomed domain has been deleted by its cell.
    fn live_domains(&self) -> Vec<i64> {
        let mut d = vec![self.a];
        d.extend(self.ids.get("domains").copied());
        d
    }
}

/// A valid body for creating an object of collection `path`; `tag` makes names unique.
fn create_body(path: &str, tag: &str, fx: &Fx) -> Value {
    let a = fx.a;
    match path {
        "domains" => json!({ "name": format!("Domain {tag}") }),
        "employees" | "visitors" => json!({
            "first_name": "Mia", "surname": format!("Matrix {tag}"),
            "identifier": format!("{path}-{tag}"), "domain_id": a,
            "email": format!("{path}-{tag}@example.com"),
        }),
        // Dynamic: only dynamic keys take access profiles (manual §4.9.6).
        "keys" => json!({
            "name": format!("Key {tag}"), "marking": format!("K-{tag}"), "type": "dynamic",
            "generation": "2", "key_group_id": fx.key_group, "domain_id": a,
        }),
        "c-keys" => json!({
            "name": format!("C-key {tag}"), "marking": format!("CK-{tag}"), "kind": "normal",
            "key_group_id": fx.c_key_group,
        }),
        "key-groups" => json!({ "name": format!("Key group {tag}"), "kind": "normal" }),
        "cylinders" => json!({
            "name": format!("Cylinder {tag}"), "marking": format!("C-{tag}"),
            "side_a": "electronic", "domain_id": a,
        }),
        "cylinder-groups" => json!({ "name": format!("Cylinder group {tag}"), "domain_id": a }),
        "access-profiles" => json!({ "name": format!("Profile {tag}"), "domain_id": a }),
        "temporary-access-groups" => json!({
            "name": format!("Temporary {tag}"), "domain_id": a,
            "start": "2030-01-01T00:00:00Z", "end": "2030-01-31T00:00:00Z",
        }),
        "schedule-templates" => json!({
            "name": format!("Template {tag}"),
            "schedule": { "type": "basic", "days": { "monday": { "from": "07:00:00", "to": "18:00:00" } } },
        }),
        "remote-pds" => json!({
            "name": format!("PD {tag}"), "marking": format!("PD-{tag}"), "type": "wall_gen2",
        }),
        "roles" => json!({ "name": format!("Role {tag}"), "permissions": {} }),
        other => panic!("no body for {other}"),
    }
}

/// A harmless merge patch for an object of collection `path`.
fn patch_body(path: &str) -> Value {
    match path {
        "employees" | "visitors" => json!({ "email": "patched@example.com" }),
        "domains" | "roles" | "schedule-templates" => json!({ "description": "patched" }),
        _ => json!({ "tags": ["patched"] }),
    }
}

async fn fixtures(app: &TestApp) -> Fx {
    let a = app.domain("Domain A").await;
    let mut fx = Fx {
        a,
        key_group: app.key_group("Matrix keys", "dynamic").await,
        c_key_group: c_key_group(app).await,
        ids: HashMap::new(),
        doomed: HashMap::new(),
        to_deactivate: HashMap::new(),
        to_reactivate: HashMap::new(),
        to_restore: HashMap::new(),
    };
    for c in COLLS {
        let path = format!("/api/v1/{}", c.path);
        let id = app
            .post(&path, create_body(c.path, "fixture", &fx))
            .await
            .expect(201)
            .id();
        fx.ids.insert(c.path, id);
        let doomed = app
            .post(&path, create_body(c.path, "doomed", &fx))
            .await
            .expect(201)
            .id();
        fx.doomed.insert(c.path, doomed);
    }
    // (The doomed domain is administered by the master C-key that created it: deleting an
    // empty domain takes it off the C-keys administering it.)
    for p in ["employees", "visitors"] {
        let path = format!("/api/v1/{p}");
        let d = app
            .post(&path, create_body(p, "deactivate", &fx))
            .await
            .expect(201)
            .id();
        fx.to_deactivate.insert(p, d);
        let r = app
            .post(&path, create_body(p, "reactivate", &fx))
            .await
            .expect(201)
            .id();
        app.post(&format!("{path}/{r}/deactivate"), json!({}))
            .await
            .expect(200);
        fx.to_reactivate.insert(p, r);
    }
    fx
}

fn describe(row: &Row) -> String {
    let c = row.coll;
    match row.op {
        Op::Search => format!("GET /{c}"),
        Op::SearchBodies => format!("GET /{c}?with_body=true"),
        Op::Read => format!("GET /{c}/{{id}}"),
        Op::Events => format!("GET /{c}/{{id}}/events"),
        Op::Create => format!("POST /{c}"),
        Op::Patch => format!("PATCH /{c}/{{id}}"),
        Op::Delete => format!("DELETE /{c}/{{id}}"),
        Op::Deactivate => format!("POST /{c}/{{id}}/deactivate"),
        Op::Reactivate => format!("POST /{c}/{{id}}/reactivate"),
        Op::Restore => format!("POST /{c}/{{id}}/restore"),
        Op::Import => "POST /employees/import?dry_run=true".into(),
        Op::Export => "GET /employees/export".into(),
        Op::System => "GET /system".into(),
        Op::Settings => "PATCH /system/settings".into(),
        Op::BulkTags => format!("POST /bulk/tags kind={}", coll(c).kind),
        Op::BulkDomain => format!("POST /bulk/domain kind={}", coll(c).kind),
        Op::BulkValidity => "POST /bulk/key-validity".into(),
        Op::Statistics => "GET /statistics".into(),
        Op::SystemStatus => "GET /system/status".into(),
        Op::MaintenanceLock => "PUT /system/maintenance".into(),
        Op::MaintenanceUnlock => "DELETE /system/maintenance".into(),
        Op::PdEnrolmentCode => "POST /remote-pds/{id}/enrolment-code".into(),
        Op::PdCertificates => "GET /remote-pds/{id}/certificates".into(),
        Op::PdRevoke => "POST /remote-pds/{id}/certificates/revoke".into(),
        Op::PdCa => "GET /pd-ca".into(),
        Op::PdStatus => "GET /remote-pds/{id}/status".into(),
        Op::PdKrl => "GET /pd-krl".into(),
    }
}

/// Call the endpoint of `row` as the administrator holding `token`.
async fn perform(app: &TestApp, token: &str, row: &Row, fx: &Fx, uniq: &str) -> Resp {
    let c = row.coll;
    let id = fx.ids.get(c).copied().unwrap_or(0);
    let base = format!("/api/v1/{c}");
    match row.op {
        Op::Search => as_admin(app, token, Method::GET, &format!("{base}?limit=1000"), None).await,
        Op::SearchBodies => {
            as_admin(
                app,
                token,
                Method::GET,
                &format!("{base}?limit=1000&with_body=true"),
                None,
            )
            .await
        }
        Op::Read => as_admin(app, token, Method::GET, &format!("{base}/{id}"), None).await,
        Op::Events => {
            as_admin(
                app,
                token,
                Method::GET,
                &format!("{base}/{id}/events"),
                None,
            )
            .await
        }
        Op::Create => {
            as_admin(
                app,
                token,
                Method::POST,
                &base,
                Some(create_body(c, uniq, fx)),
            )
            .await
        }
        Op::Patch => {
            as_admin(
                app,
                token,
                Method::PATCH,
                &format!("{base}/{id}"),
                Some(patch_body(c)),
            )
            .await
        }
        Op::Delete => {
            let d = fx.doomed[c];
            as_admin(app, token, Method::DELETE, &format!("{base}/{d}"), None).await
        }
        Op::Deactivate => {
            let p = fx.to_deactivate[c];
            as_admin(
                app,
                token,
                Method::POST,
                &format!("{base}/{p}/deactivate"),
                None,
            )
            .await
        }
        Op::Reactivate => {
            let p = fx.to_reactivate[c];
            as_admin(
                app,
                token,
                Method::POST,
                &format!("{base}/{p}/reactivate"),
                None,
            )
            .await
        }
        Op::Restore => {
            let p = fx.to_restore[c];
            as_admin(
                app,
                token,
                Method::POST,
                &format!("{base}/{p}/restore"),
                None,
            )
            .await
        }
        Op::Import => {
            let csv = format!(
                "{CSV_HEADER}\n{}\n",
                csv_row("IMP-1", "Ina", "Import", "Domain A")
            );
            send_raw(
                app,
                Method::POST,
                "/api/v1/employees/import?dry_run=true",
                Some(&format!("Bearer {token}")),
                Some(("text/csv", csv)),
            )
            .await
        }
        Op::Export => as_admin(app, token, Method::GET, "/api/v1/employees/export", None).await,
        Op::System => as_admin(app, token, Method::GET, "/api/v1/system", None).await,
        Op::Statistics => as_admin(app, token, Method::GET, "/api/v1/statistics", None).await,
        Op::PdEnrolmentCode => {
            let pd = fx.ids["remote-pds"];
            as_admin(
                app,
                token,
                Method::POST,
                &format!("/api/v1/remote-pds/{pd}/enrolment-code"),
                Some(json!({})),
            )
            .await
        }
        Op::PdCertificates => {
            let pd = fx.ids["remote-pds"];
            as_admin(
                app,
                token,
                Method::GET,
                &format!("/api/v1/remote-pds/{pd}/certificates"),
                None,
            )
            .await
        }
        Op::PdRevoke => {
            let pd = fx.ids["remote-pds"];
            as_admin(
                app,
                token,
                Method::POST,
                &format!("/api/v1/remote-pds/{pd}/certificates/revoke"),
                Some(json!({ "reason": "matrix" })),
            )
            .await
        }
        Op::PdCa => as_admin(app, token, Method::GET, "/api/v1/pd-ca", None).await,
        Op::PdKrl => as_admin(app, token, Method::GET, "/api/v1/pd-krl", None).await,
        Op::PdStatus => {
            let pd = fx.ids["remote-pds"];
            as_admin(
                app,
                token,
                Method::GET,
                &format!("/api/v1/remote-pds/{pd}/status"),
                None,
            )
            .await
        }
        Op::SystemStatus => as_admin(app, token, Method::GET, "/api/v1/system/status", None).await,
        Op::MaintenanceLock => {
            let from = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
            as_admin(
                app,
                token,
                Method::PUT,
                "/api/v1/system/maintenance",
                Some(json!({ "from": from })),
            )
            .await
        }
        Op::MaintenanceUnlock => {
            as_admin(
                app,
                token,
                Method::DELETE,
                "/api/v1/system/maintenance",
                None,
            )
            .await
        }
        Op::Settings => {
            as_admin(
                app,
                token,
                Method::PATCH,
                "/api/v1/system/settings",
                Some(json!({ "messaging_language": "en" })),
            )
            .await
        }
        Op::BulkTags => {
            as_admin(
                app,
                token,
                Method::POST,
                "/api/v1/bulk/tags",
                Some(json!({ "kind": coll(c).kind, "ids": [id], "add": ["bulk"] })),
            )
            .await
        }
        Op::BulkDomain => {
            as_admin(
                app,
                token,
                Method::POST,
                "/api/v1/bulk/domain",
                Some(json!({ "kind": coll(c).kind, "ids": [id], "domain_id": fx.a })),
            )
            .await
        }
        Op::BulkValidity => {
            as_admin(
                app,
                token,
                Method::POST,
                "/api/v1/bulk/key-validity",
                Some(json!({ "ids": [fx.ids["keys"]], "validity": {} })),
            )
            .await
        }
    }
}

/// What an administrator holding enough gets.
fn allowed_result(row: &Row, r: &Resp, fx: &Fx) -> Result<(), String> {
    let want = match row.op {
        Op::Create | Op::PdEnrolmentCode => 201,
        Op::Delete => 204,
        _ => 200,
    };
    want_status(r, want)?;
    let id = fx.ids.get(row.coll).copied().unwrap_or(0);
    match row.op {
        Op::Search | Op::SearchBodies => {
            if !ids_of(r).contains(&id) {
                return Err(format!(
                    "the fixture {id} is not listed: {}",
                    short(&r.body)
                ));
            }
            if row.op == Op::SearchBodies
                && !r.body["items"]
                    .as_array()
                    .is_some_and(|a| a.iter().all(|i| i["body"].is_object()))
            {
                return Err("with_body=true returned items without bodies".into());
            }
        }
        Op::Read if r.body["id"].as_i64() != Some(id) => {
            return Err(format!("read returned {}", short(&r.body)));
        }
        Op::Events if r.body["items"].as_array().is_none_or(Vec::is_empty) => {
            return Err(format!("no events: {}", short(&r.body)));
        }
        Op::Deactivate if r.body["lifecycle"] != "deactivated" => {
            return Err(format!("not deactivated: {}", short(&r.body)));
        }
        Op::Reactivate | Op::Restore if r.body["lifecycle"] != "active" => {
            return Err(format!("not reactivated: {}", short(&r.body)));
        }
        Op::Import if r.body["dry_run"] != true || r.body["valid_rows"] != 1 => {
            return Err(format!("unexpected import report: {}", short(&r.body)));
        }
        Op::Export if !content_type(r).starts_with("text/csv") => {
            return Err(format!("export Content-Type '{}'", content_type(r)));
        }
        Op::BulkTags | Op::BulkDomain | Op::BulkValidity if r.body["updated"] != 1 => {
            return Err(format!("bulk change reported {}", short(&r.body)));
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1 + 2: endpoint × level
// ---------------------------------------------------------------------------------------------

async fn authorisation_matrix(app: TestApp) {
    let app = app.with_pd_authority().await;
    let started = Instant::now();
    let db = app.db;
    let mut ck = Checks::default();
    let fx = fixtures(&app).await;
    let rows = rows();

    // One administrator per (function, offered level), all in domain A; None is a role
    // granting nothing. A level the function does not offer cannot be put in a role.
    let (_, nothing) = app
        .admin_with("MX-none", json!({}), &fx.admin_domains())
        .await;
    let functions: BTreeSet<&str> = rows.iter().map(|r| r.function).collect();
    let mut tokens: HashMap<(&str, Lv), String> = HashMap::new();
    let mut refused_levels = 0;
    for f in functions {
        for l in LEVELS {
            if l == Lv::None {
                tokens.insert((f, l), nothing.clone());
            } else if offered(f).contains(&l) {
                let (_, t) = app
                    .admin_with(
                        &format!("MX-{f}-{}", l.as_str()),
                        role_permissions(f, l),
                        &fx.admin_domains(),
                    )
                    .await;
                tokens.insert((f, l), t);
            } else {
                let r = app
                    .post(
                        "/api/v1/roles",
                        json!({ "name": format!("Not offered {f} {}", l.as_str()), "permissions": role_permissions(f, l) }),
                    )
                    .await;
                ck.invalid(
                    &format!("role granting {f}={} (not offered)", l.as_str()),
                    &r,
                    &format!("permissions.{f}"),
                );
                refused_levels += 1;
            }
        }
    }

    let mut endpoint_cells = 0;
    let late = late_rows();
    let mut fx = fx;
    for (i, row) in rows.iter().chain(late.iter()).enumerate() {
        if i == rows.len() {
            // Late rows: persons are now marked as deleted instead of removed (which needs no
            // deactivated persons left).
            for p in ["employees", "visitors"] {
                for id in [fx.to_deactivate[p], fx.to_reactivate[p]] {
                    let r = app
                        .post(&format!("/api/v1/{p}/{id}/reactivate"), json!({}))
                        .await;
                    assert!(
                        r.status == 200 || r.status == 409,
                        "reactivate: {}",
                        short(&r.body)
                    );
                }
            }
            app.patch(
                "/api/v1/system/settings",
                json!({ "person_deletion": "mark_as_deleted" }),
            )
            .await
            .expect(200);
            for p in ["employees", "visitors"] {
                let id = app
                    .post(&format!("/api/v1/{p}"), create_body(p, "restore", &fx))
                    .await
                    .expect(201)
                    .id();
                app.delete(&format!("/api/v1/{p}/{id}")).await.expect(204);
                fx.to_restore.insert(p, id);
            }
        }
        for l in LEVELS {
            let Some(token) = tokens.get(&(row.function, l)) else {
                continue; // the level is not offered: checked above as a refused role
            };
            endpoint_cells += 1;
            let uniq = format!("cell{endpoint_cells}");
            let r = perform(&app, token, row, &fx, &uniq).await;
            let result = if l >= row.needs {
                allowed_result(row, &r, &fx)
            } else {
                want_forbidden_naming(&r, row.function)
            };
            ck.record(
                &format!(
                    "{} as {}={} (needs {})",
                    describe(row),
                    row.function,
                    l.as_str(),
                    row.needs.as_str()
                ),
                result,
            );
        }
    }

    // The import needs employee at Full besides employee_import: employee alone is not enough.
    let (_, employee_full) = app
        .admin_with(
            "MX-employee-only",
            json!({ "employee": "full" }),
            &fx.live_domains(),
        )
        .await;
    let r = send_raw(
        &app,
        Method::POST,
        "/api/v1/employees/import?dry_run=true",
        Some(&format!("Bearer {employee_full}")),
        Some((
            "text/csv",
            format!(
                "{CSV_HEADER}\n{}\n",
                csv_row("IMP-2", "Ina", "Import", "Domain A")
            ),
        )),
    )
    .await;
    ck.record(
        "POST /employees/import as employee=full without employee_import",
        want_forbidden_naming(&r, "employee_import"),
    );
    // Who am I needs no permission at all.
    let r = as_admin(&app, &nothing, Method::GET, "/api/v1/me", None).await;
    ck.record(
        "GET /me with a role granting nothing",
        want_status(&r, 200).and_then(|()| {
            if r.body["permissions"]
                .as_object()
                .is_some_and(|m| m.values().all(|v| v == "none"))
            {
                Ok(())
            } else {
                Err(format!("permissions: {}", r.body["permissions"]))
            }
        }),
    );
    // Searching deactivated persons is part of deactivating (key_holder_deactivate at Full).
    let (_, persons_full) = app
        .admin_with(
            "MX-persons",
            json!({ "employee": "full", "visitor": "full" }),
            &fx.live_domains(),
        )
        .await;
    for p in ["employees", "visitors"] {
        for q in [
            "include_hidden=true",
            "status=deactivated",
            "status=active,deactivated",
        ] {
            let r = as_admin(
                &app,
                &persons_full,
                Method::GET,
                &format!("/api/v1/{p}?{q}"),
                None,
            )
            .await;
            ck.record(
                &format!("GET /{p}?{q} as {p} at full without key_holder_deactivate"),
                want_forbidden_naming(&r, "key_holder_deactivate"),
            );
        }
    }
    let r = as_admin(
        &app,
        &tokens[&("key_holder_deactivate", Lv::Full)],
        Method::GET,
        "/api/v1/employees?include_hidden=true&limit=1000",
        None,
    )
    .await;
    ck.record(
        "GET /employees?include_hidden=true as key_holder_deactivate=full",
        want_status(&r, 200).and_then(|()| {
            if ids_of(&r).contains(&fx.to_deactivate["employees"]) {
                Ok(())
            } else {
                Err(format!(
                    "the deactivated employee is not listed: {}",
                    short(&r.body)
                ))
            }
        }),
    );

    // Dependencies between functions: broken → 422 naming the function; satisfied → 201.
    // Field-level functions: PATCH with the collection's function at Full, and the field's
    // function at each level it offers.
    let mut field_cells = 0;
    for (i, (c, field, body, f, base)) in FIELD_ROWS.iter().enumerate() {
        let id = fx.ids[c];
        for &l in offered(f) {
            let (_, token) = app
                .admin_with(
                    &format!("FLD-{i}-{}", l.as_str()),
                    permissions_with(base, f, l),
                    &fx.live_domains(),
                )
                .await;
            let r = as_admin(
                &app,
                &token,
                Method::PATCH,
                &format!("/api/v1/{c}/{id}"),
                Some(body(&fx)),
            )
            .await;
            let what = format!(
                "PATCH /{c}/{{id}} setting {field} as {f}={} (needs full)",
                l.as_str()
            );
            if l == Lv::Full {
                ck.status(&what, &r, 200);
            } else {
                ck.record(&what, want_forbidden_naming(&r, f));
            }
            field_cells += 1;
        }
    }

    let mut dependency_cells = 0;
    for (i, (f, l, deps, too_low)) in DEPENDENCIES.iter().enumerate() {
        let mut without = serde_json::Map::new();
        without.insert(f.to_string(), json!(l.as_str()));
        let r = app
            .post(
                "/api/v1/roles",
                json!({ "name": format!("Dep {i} without"), "permissions": without }),
            )
            .await;
        ck.invalid(
            &format!("role {f}={} without its dependencies", l.as_str()),
            &r,
            &format!("permissions.{f}"),
        );
        let mut with = without.clone();
        for (d, dl) in *deps {
            with.insert(d.to_string(), json!(dl.as_str()));
        }
        if let Some((d, dl)) = too_low {
            let mut low = with.clone();
            low.insert(d.to_string(), json!(dl.as_str()));
            let r = app
                .post(
                    "/api/v1/roles",
                    json!({ "name": format!("Dep {i} too low"), "permissions": low }),
                )
                .await;
            ck.invalid(
                &format!("role {f}={} with {d}={} only", l.as_str(), dl.as_str()),
                &r,
                &format!("permissions.{f}"),
            );
            dependency_cells += 1;
        }
        let r = app
            .post(
                "/api/v1/roles",
                json!({ "name": format!("Dep {i} with"), "permissions": with }),
            )
            .await;
        ck.status(
            &format!("role {f}={} with its dependencies", l.as_str()),
            &r,
            201,
        );
        dependency_cells += 2;
    }

    let rows_total = rows.len() + late.len();
    eprintln!(
        "authorisation matrix on {db:?}: {rows_total} rows, {endpoint_cells} endpoint cells, {refused_levels} \
         refused (not offered) levels, {field_cells} field cells, {dependency_cells} dependency cells, {:.1?}",
        started.elapsed()
    );
    ck.finish("authorisation matrix", db);
}

on_both!(endpoint_by_level, |app: TestApp| async move {
    authorisation_matrix(app).await
});

// ---------------------------------------------------------------------------------------------
// 3: domain scoping
// ---------------------------------------------------------------------------------------------

/// Collections whose objects belong to a domain, with a body for one in domain `d` (`t` names it).
fn scoped_body(path: &str, t: &str, d: i64, key_group: i64) -> Value {
    match path {
        // C-keys are handed out to employees with an email address (manual §6.11.7).
        "employees" => {
            json!({ "first_name": t, "surname": "Zeta", "identifier": format!("ZE-{t}"), "domain_id": d, "email": format!("ze-{t}@example.com") })
        }
        "visitors" => {
            json!({ "first_name": t, "surname": "Zeta", "identifier": format!("ZV-{t}"), "domain_id": d })
        }
        // Dynamic: temporary access groups and access profiles take dynamic keys only
        // (manual §4.7.2, §4.9.6).
        "keys" => json!({
            "name": format!("Zeta key {t}"), "marking": format!("ZK-{t}"), "type": "dynamic",
            "generation": "2", "key_group_id": key_group, "domain_id": d,
        }),
        "cylinders" => json!({
            "name": format!("Zeta cylinder {t}"), "marking": format!("ZC-{t}"),
            "side_a": "electronic", "domain_id": d,
        }),
        "cylinder-groups" => json!({ "name": format!("Zeta group {t}"), "domain_id": d }),
        "access-profiles" => json!({ "name": format!("Zeta profile {t}"), "domain_id": d }),
        "temporary-access-groups" => json!({
            "name": format!("Zeta temporary {t}"), "domain_id": d,
            "start": "2030-01-01T00:00:00Z", "end": "2030-01-31T00:00:00Z",
        }),
        other => panic!("{other} has no domain"),
    }
}

/// What the bodies of the reference checks need besides their target.
#[derive(Debug)]
struct RefCtx {
    a: i64,
    kg: i64,
    dkg: i64,
    ckg: i64,
}

const DOMAIN_COLLS: [&str; 7] = [
    "employees",
    "visitors",
    "keys",
    "cylinders",
    "cylinder-groups",
    "access-profiles",
    "temporary-access-groups",
];

async fn domain_scoping(app: TestApp) {
    let started = Instant::now();
    let db = app.db;
    let mut ck = Checks::default();
    let a = app.domain("Domain A").await;
    let b = app.domain("Domain B").await;
    let kg = app.key_group("Zeta keys", "normal").await;
    let dkg = app.key_group("Zeta dynamic keys", "dynamic").await;
    let ckg = c_key_group(&app).await;

    // The same objects in A and in B, created by the super-administrator.
    let mut in_a: HashMap<&str, i64> = HashMap::new();
    let mut in_b: HashMap<&str, i64> = HashMap::new();
    for p in DOMAIN_COLLS {
        let path = format!("/api/v1/{p}");
        in_a.insert(
            p,
            app.post(&path, scoped_body(p, "A", a, dkg))
                .await
                .expect(201)
                .id(),
        );
        in_b.insert(
            p,
            app.post(&path, scoped_body(p, "B", b, dkg))
                .await
                .expect(201)
                .id(),
        );
    }
    // Objects without a domain.
    let shared: Vec<(&str, i64)> = vec![
        ("key-groups", kg),
        (
            "c-keys",
            app.post(
                "/api/v1/c-keys",
                json!({ "name": "Zeta C-key", "marking": "ZCK-1", "kind": "normal", "key_group_id": ckg }),
            )
            .await
            .expect(201)
            .id(),
        ),
        (
            "roles",
            app.post("/api/v1/roles", json!({ "name": "Zeta role", "permissions": {} }))
                .await
                .expect(201)
                .id(),
        ),
        (
            "remote-pds",
            app.post(
                "/api/v1/remote-pds",
                json!({ "name": "Zeta PD", "marking": "ZPD-1", "type": "wall_gen2" }),
            )
            .await
            .expect(201)
            .id(),
        ),
    ];

    // An administrator with broad rights, in domain A only.
    let perms = json!({
        "employee": "full", "visitor": "full", "key": "full", "cylinder": "full",
        "access_profiles": "full", "temporary_access_groups": "full",
        "key_holder_deactivate": "full", "employee_import": "full",
        "access_profile_authorisation": "full", "key_authorisation": "full",
        "cylinder_authorisation": "full", "key_hand_in_out": "full", "key_validity": "full",
        "c_key": "full", "c_key_hand_in_out": "full", "roles": "view", "remote_pds": "view",
    });
    let (_, t) = app.admin_with("SCOPED-A", perms.clone(), &[a]).await;
    let t = t.as_str();
    // The same rights with no domain at all.
    let (_, t0) = app.admin_with("SCOPED-NONE", perms, &[]).await;
    let t0 = t0.as_str();

    for p in DOMAIN_COLLS {
        let (ia, ib) = (in_a[p], in_b[p]);
        let base = format!("/api/v1/{p}");
        // Visible in A (control).
        let r = as_admin(&app, t, Method::GET, &format!("{base}/{ia}"), None).await;
        ck.status(&format!("GET {p} in A"), &r, 200);
        let r = as_admin(&app, t, Method::GET, &format!("{base}/{ia}/events"), None).await;
        ck.status(&format!("GET {p} in A /events"), &r, 200);
        // Invisible in B.
        let r = as_admin(&app, t, Method::GET, &format!("{base}/{ib}"), None).await;
        ck.not_found(&format!("GET {p} in B"), &r);
        let r = as_admin(&app, t, Method::GET, &format!("{base}/{ib}/events"), None).await;
        ck.not_found(&format!("GET {p} in B /events"), &r);
        let r = as_admin(
            &app,
            t,
            Method::PATCH,
            &format!("{base}/{ib}"),
            Some(json!({ "tags": ["mine"] })),
        )
        .await;
        ck.not_found(&format!("PATCH {p} in B"), &r);
        let r = as_admin(&app, t, Method::DELETE, &format!("{base}/{ib}"), None).await;
        ck.not_found(&format!("DELETE {p} in B"), &r);
        // Nothing happened to it.
        let r = app.get(&format!("{base}/{ib}")).await;
        ck.truth(
            &format!("{p} in B unchanged"),
            r.status == 200 && r.body["version"] == 1,
            || format!("{} {}", r.status, short(&r.body)),
        );
        // Search: A listed, B not listed but counted.
        let r = as_admin(
            &app,
            t,
            Method::GET,
            &format!("{base}?q=zeta&limit=1000"),
            None,
        )
        .await;
        let ids = ids_of(&r);
        ck.truth(
            &format!("GET /{p}?q=zeta lists A, not B"),
            r.status == 200 && ids.contains(&ia) && !ids.contains(&ib),
            || format!("{} {}", r.status, short(&r.body)),
        );
        ck.truth(
            &format!("GET /{p}?q=zeta: total counts only A"),
            r.body["total"] == 1,
            || format!("total = {}", r.body["total"]),
        );
        ck.truth(
            &format!("GET /{p}?q=zeta counts B in hidden.outside_domains"),
            r.body["hidden"]["outside_domains"] == 1,
            || format!("hidden = {}", r.body["hidden"]),
        );
        let r = as_admin(
            &app,
            t,
            Method::GET,
            &format!("{base}?domain_id={b}&limit=1000"),
            None,
        )
        .await;
        ck.truth(
            &format!("GET /{p}?domain_id=B lists nothing"),
            r.status == 200 && ids_of(&r).is_empty(),
            || format!("{} {}", r.status, short(&r.body)),
        );
        // The administrator without domains sees neither.
        let r = as_admin(
            &app,
            t0,
            Method::GET,
            &format!("{base}?q=zeta&limit=1000"),
            None,
        )
        .await;
        ck.truth(
            &format!("GET /{p}?q=zeta without domains lists nothing, counts 2 outside"),
            r.status == 200 && ids_of(&r).is_empty() && r.body["hidden"]["outside_domains"] == 2,
            || format!("{} {}", r.status, short(&r.body)),
        );
        let r = as_admin(&app, t0, Method::GET, &format!("{base}/{ia}"), None).await;
        ck.not_found(&format!("GET {p} in A without domains"), &r);
        // Creating in B is refused, naming domain_id.
        let r = as_admin(
            &app,
            t,
            Method::POST,
            &base,
            Some(scoped_body(p, "B2", b, dkg)),
        )
        .await;
        ck.invalid(&format!("POST {p} in B"), &r, "domain_id");
        // Moving an A object to B is refused too.
        let r = as_admin(
            &app,
            t,
            Method::PATCH,
            &format!("{base}/{ia}"),
            Some(json!({ "domain_id": b })),
        )
        .await;
        ck.invalid(&format!("PATCH {p} in A to domain B"), &r, "domain_id");
        // Bulk: B objects cannot be changed, nor moved into A; A objects cannot go to B.
        let kind = coll(p).kind;
        let r = as_admin(
            &app,
            t,
            Method::POST,
            "/api/v1/bulk/tags",
            Some(json!({ "kind": kind, "ids": [ib], "add": ["mine"] })),
        )
        .await;
        ck.invalid(&format!("bulk tags on {p} in B"), &r, "ids[0]");
        let r = as_admin(
            &app,
            t,
            Method::POST,
            "/api/v1/bulk/domain",
            Some(json!({ "kind": kind, "ids": [ib], "domain_id": a })),
        )
        .await;
        ck.invalid(&format!("bulk domain: {p} from B into A"), &r, "ids[0]");
        let r = as_admin(
            &app,
            t,
            Method::POST,
            "/api/v1/bulk/domain",
            Some(json!({ "kind": kind, "ids": [ia], "domain_id": b })),
        )
        .await;
        ck.record(
            &format!("bulk domain: {p} from A into B"),
            want_status(&r, 422).and_then(|()| {
                if r.error_fields().iter().any(|f| f.contains("domain_id")) {
                    Ok(())
                } else {
                    Err(format!("422 does not name domain_id: {}", short(&r.body)))
                }
            }),
        );
        let r = app.get(&format!("{base}/{ib}")).await;
        ck.truth(
            &format!("{p} in B still in B after bulk attempts"),
            r.body["domain_id"] == b && r.body["version"] == 1,
            || short(&r.body),
        );
    }
    let r = as_admin(
        &app,
        t,
        Method::POST,
        "/api/v1/bulk/key-validity",
        Some(json!({ "ids": [in_b["keys"]], "validity": {} })),
    )
    .await;
    ck.invalid("bulk key validity on a key in B", &r, "ids[0]");

    // Person lifecycle on B persons.
    for p in ["employees", "visitors"] {
        let r = as_admin(
            &app,
            t,
            Method::POST,
            &format!("/api/v1/{p}/{}/deactivate", in_b[p]),
            None,
        )
        .await;
        ck.not_found(&format!("deactivate {p} in B"), &r);
    }

    // References from A objects to B objects are refused, naming the field; to A objects they
    // are accepted (control).
    let (ea, eb) = (in_a["employees"], in_b["employees"]);
    let (ca, cb) = (in_a["cylinders"], in_b["cylinders"]);
    let (ka, kb) = (in_a["keys"], in_b["keys"]);
    let (ga, gb) = (in_a["cylinder-groups"], in_b["cylinder-groups"]);
    let (pa, pb) = (in_a["access-profiles"], in_b["access-profiles"]);
    type RefBody = fn(i64, &str, &RefCtx) -> Value;
    let references: &[(&str, &str, RefBody)] = &[
        ("keys", "holder_id", |target, n, x| {
            json!({
                "name": format!("Ref key {n}"), "marking": format!("RK-{n}"), "type": "normal", "generation": "1",
                "key_group_id": x.kg, "domain_id": x.a, "status": "handed_out", "holder_id": target,
            })
        }),
        ("keys", "preordered_for_id", |target, n, x| {
            json!({
                "name": format!("Ref key {n}"), "marking": format!("RK-{n}"), "type": "normal", "generation": "1",
                "key_group_id": x.kg, "domain_id": x.a, "preordered_for_id": target,
            })
        }),
        ("keys", "access_profile_ids[0]", |target, n, x| {
            json!({
                "name": format!("Ref key {n}"), "marking": format!("RK-{n}"), "type": "dynamic", "generation": "2",
                "key_group_id": x.dkg, "domain_id": x.a, "access_profile_ids": [target],
            })
        }),
        ("keys", "cylinder_ids[0]", |target, n, x| {
            json!({
                "name": format!("Ref key {n}"), "marking": format!("RK-{n}"), "type": "dynamic", "generation": "2",
                "key_group_id": x.dkg, "domain_id": x.a, "cylinder_ids": [target],
            })
        }),
        ("keys", "cylinder_group_ids[0]", |target, n, x| {
            json!({
                "name": format!("Ref key {n}"), "marking": format!("RK-{n}"), "type": "dynamic", "generation": "2",
                "key_group_id": x.dkg, "domain_id": x.a, "cylinder_group_ids": [target],
            })
        }),
        ("c-keys", "holder_id", |target, n, x| {
            json!({
                "name": format!("Ref C-key {n}"), "marking": format!("RCK-{n}"), "kind": "normal",
                "key_group_id": x.ckg, "status": "handed_out", "holder_id": target,
            })
        }),
        ("employees", "access_profile_ids[0]", |target, n, x| {
            json!({
                "first_name": "Ref", "surname": n, "identifier": format!("RE-{n}"), "domain_id": x.a,
                "access_profile_ids": [target],
            })
        }),
        ("cylinders", "cylinder_group_id", |target, n, x| {
            json!({
                "name": format!("Ref cylinder {n}"), "marking": format!("RC-{n}"), "side_a": "electronic",
                "domain_id": x.a, "cylinder_group_id": target,
            })
        }),
        ("cylinders", "access_list.key_ids[0]", |target, n, x| {
            json!({
                "name": format!("Ref cylinder {n}"), "marking": format!("RC-{n}"), "side_a": "electronic",
                "domain_id": x.a, "access_list": { "key_ids": [target] },
            })
        }),
        (
            "cylinders",
            "access_list.key_groups[0].exceptions[0]",
            |target, n, x| {
                json!({
                    "name": format!("Ref cylinder {n}"), "marking": format!("RC-{n}"), "side_a": "electronic",
                    "domain_id": x.a, "access_list": { "key_groups": [{ "key_group_id": x.kg, "exceptions": [target] }] },
                })
            },
        ),
        ("access-profiles", "cylinder_ids[0]", |target, n, x| {
            json!({
                "name": format!("Ref profile {n}"), "domain_id": x.a, "cylinder_ids": [target],
            })
        }),
        (
            "access-profiles",
            "cylinder_group_ids[0]",
            |target, n, x| {
                json!({
                    "name": format!("Ref profile {n}"), "domain_id": x.a, "cylinder_group_ids": [target],
                })
            },
        ),
        (
            "temporary-access-groups",
            "access_profile_ids[0]",
            |target, n, x| {
                json!({
                    "name": format!("Ref temporary {n}"), "domain_id": x.a, "access_profile_ids": [target],
                    "start": "2030-01-01T00:00:00Z", "end": "2030-01-31T00:00:00Z",
                })
            },
        ),
        ("temporary-access-groups", "key_ids[0]", |target, n, x| {
            json!({
                "name": format!("Ref temporary {n}"), "domain_id": x.a, "key_ids": [target],
                "start": "2030-01-01T00:00:00Z", "end": "2030-01-31T00:00:00Z",
            })
        }),
        (
            "temporary-access-groups",
            "cylinder_ids[0]",
            |target, n, x| {
                json!({
                    "name": format!("Ref temporary {n}"), "domain_id": x.a, "cylinder_ids": [target],
                    "start": "2030-01-01T00:00:00Z", "end": "2030-01-31T00:00:00Z",
                })
            },
        ),
        (
            "temporary-access-groups",
            "cylinder_group_ids[0]",
            |target, n, x| {
                json!({
                    "name": format!("Ref temporary {n}"), "domain_id": x.a, "cylinder_group_ids": [target],
                    "start": "2030-01-01T00:00:00Z", "end": "2030-01-31T00:00:00Z",
                })
            },
        ),
    ];
    let ctx = RefCtx { a, kg, dkg, ckg };
    let target_of = |field: &str, in_b: bool| -> i64 {
        let pick = |x: (i64, i64)| if in_b { x.1 } else { x.0 };
        if field.starts_with("holder_id") || field.starts_with("preordered_for_id") {
            pick((ea, eb))
        } else if field.starts_with("access_profile_ids") {
            pick((pa, pb))
        } else if field.starts_with("cylinder_group") {
            pick((ga, gb))
        } else if field.starts_with("cylinder_ids") {
            pick((ca, cb))
        } else {
            pick((ka, kb)) // key_ids, access_list.key_ids, exceptions
        }
    };
    for (i, (p, field, body)) in references.iter().enumerate() {
        let path = format!("/api/v1/{p}");
        let r = as_admin(
            &app,
            t,
            Method::POST,
            &path,
            Some(body(target_of(field, true), &format!("B{i}"), &ctx)),
        )
        .await;
        ck.invalid(
            &format!("POST {p} in A with {field} → object in B"),
            &r,
            field,
        );
        let r = as_admin(
            &app,
            t,
            Method::POST,
            &path,
            Some(body(target_of(field, false), &format!("A{i}"), &ctx)),
        )
        .await;
        ck.status(
            &format!("POST {p} in A with {field} → object in A (control)"),
            &r,
            201,
        );
    }
    // Patching a reference to a B object in.
    let r = as_admin(
        &app,
        t,
        Method::PATCH,
        &format!("/api/v1/employees/{ea}"),
        Some(json!({ "access_profile_ids": [pb] })),
    )
    .await;
    ck.invalid(
        "PATCH employee in A with access_profile_ids → profile in B",
        &r,
        "access_profile_ids[0]",
    );
    let r = as_admin(
        &app,
        t,
        Method::PATCH,
        &format!("/api/v1/access-profiles/{pa}"),
        Some(json!({ "cylinder_ids": [cb] })),
    )
    .await;
    ck.invalid(
        "PATCH profile in A with cylinder_ids → cylinder in B",
        &r,
        "cylinder_ids[0]",
    );
    let r = as_admin(
        &app,
        t,
        Method::PATCH,
        &format!("/api/v1/keys/{ka}"),
        Some(json!({ "status": "handed_out", "holder_id": eb })),
    )
    .await;
    ck.invalid(
        "PATCH key in A with holder_id → employee in B",
        &r,
        "holder_id",
    );

    // A B object asked for through a collection without domains is still not found.
    for other in ["key-groups", "c-keys", "roles", "remote-pds"] {
        let r = as_admin(&app, t, Method::GET, &format!("/api/v1/{other}/{eb}"), None).await;
        ck.not_found(&format!("GET /{other}/{{employee in B}}"), &r);
        let r = as_admin(
            &app,
            t,
            Method::GET,
            &format!("/api/v1/{other}/{eb}/events"),
            None,
        )
        .await;
        ck.not_found(&format!("GET /{other}/{{employee in B}}/events"), &r);
    }

    // Tokens act as their C-key: an administrator of A cannot issue one for a C-key that
    // administers B as well.
    let (_, issuer) = app
        .admin_with(
            "SCOPED-ISSUER",
            json!({ "c_key": "full", "roles": "full" }),
            &[a],
        )
        .await;
    let wide = app
        .post("/api/v1/c-keys", json!({ "name": "Zeta wide", "marking": "ZCK-AB", "kind": "normal", "key_group_id": ckg, "domain_ids": [a, b] }))
        .await
        .expect(201)
        .id();
    let narrow = app
        .post("/api/v1/c-keys", json!({ "name": "Zeta narrow", "marking": "ZCK-A", "kind": "normal", "key_group_id": ckg, "domain_ids": [a] }))
        .await
        .expect(201)
        .id();
    let r = as_admin(
        &app,
        &issuer,
        Method::POST,
        "/api/v1/tokens",
        Some(json!({ "name": "wide", "c_key_id": wide })),
    )
    .await;
    ck.forbidden("issuing a token for a C-key administering domain B", &r);
    let r = as_admin(
        &app,
        &issuer,
        Method::POST,
        "/api/v1/tokens",
        Some(json!({ "name": "narrow", "c_key_id": narrow })),
    )
    .await;
    ck.status(
        "issuing a token for a C-key administering domain A only",
        &r,
        201,
    );

    // Objects without a domain are visible to every administrator with the right level.
    for (p, id) in &shared {
        for (who, tok) in [("domain A", t), ("no domain", t0)] {
            let r = as_admin(&app, tok, Method::GET, &format!("/api/v1/{p}/{id}"), None).await;
            ck.status(&format!("GET {p} (no domain) as admin of {who}"), &r, 200);
            let r = as_admin(
                &app,
                tok,
                Method::GET,
                &format!("/api/v1/{p}?limit=1000"),
                None,
            )
            .await;
            ck.truth(
                &format!("GET /{p} as admin of {who} lists it"),
                r.status == 200 && ids_of(&r).contains(id),
                || format!("{} {}", r.status, short(&r.body)),
            );
            ck.truth(
                &format!("GET /{p} as admin of {who}: nothing outside domains"),
                r.body["hidden"]["outside_domains"] == 0,
                || format!("hidden = {}", r.body["hidden"]),
            );
        }
    }

    // Export and import stay inside the domains.
    let r = as_admin(&app, t, Method::GET, "/api/v1/employees/export", None).await;
    let csv = r.body.as_str().unwrap_or("").to_string();
    ck.truth(
        "export lists the employee in A, not the one in B",
        r.status == 200 && csv.contains("ZE-A") && !csv.contains("ZE-B"),
        || format!("{} {csv}", r.status),
    );
    let file = format!(
        "{CSV_HEADER}\n{}\n{}\n{}\n",
        csv_row("ZI-1", "Ina", "Import", "Domain B"),
        csv_row("ZE-B", "B", "Zeta", "Domain A"),
        csv_row("ZI-2", "Ina", "Import", "Domain A"),
    );
    let r = send_raw(
        &app,
        Method::POST,
        "/api/v1/employees/import?dry_run=true",
        Some(&format!("Bearer {t}")),
        Some(("text/csv", file)),
    )
    .await;
    let invalid = |line: u64| -> Vec<String> {
        r.body["invalid"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["line"].as_u64() == Some(line))
            .flat_map(|e| e["errors"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["field"].as_str().map(str::to_string))
            .collect()
    };
    ck.status("import dry run", &r, 200);
    ck.truth(
        "import: a row naming domain B is invalid (domain)",
        invalid(2).contains(&"domain".to_string()),
        || short(&r.body),
    );
    ck.truth(
        "import: a row updating a person in B is invalid (identifier)",
        invalid(3).contains(&"identifier".to_string()),
        || short(&r.body),
    );
    ck.truth(
        "import: the row in domain A is valid",
        r.body["valid_rows"] == 1,
        || short(&r.body),
    );

    eprintln!("domain scoping on {db:?}: {:.1?}", started.elapsed());
    ck.finish("domain scoping", db);
}

on_both!(domain_scoping_of_admins, |app: TestApp| async move {
    domain_scoping(app).await
});

// ---------------------------------------------------------------------------------------------
// 4: authentication
// ---------------------------------------------------------------------------------------------

async fn authentication(app: TestApp) {
    let db = app.db;
    let mut ck = Checks::default();
    let employee = app
        .post(
            "/api/v1/employees",
            json!({ "first_name": "Al", "surname": "Auth", "domain_id": app.default_domain }),
        )
        .await
        .expect(201)
        .id();
    // A syntactically valid token nobody was issued.
    let forged = format!("Bearer lgt_{}", "0".repeat(64));
    let mut tampered = app.token.clone();
    let last = tampered.pop().expect("token");
    tampered.push(if last == '0' { '1' } else { '0' });
    let tampered = format!("Bearer {tampered}");
    let credentials: [(&str, Option<&str>); 6] = [
        ("no Authorization header", None),
        ("unknown token", Some(forged.as_str())),
        ("tampered token", Some(tampered.as_str())),
        ("not a lockgate token", Some("Bearer not-a-token")),
        ("empty bearer", Some("Bearer ")),
        ("Basic scheme", Some("Basic dXNlcjpwYXNz")),
    ];
    type Endpoint = (Method, String, Option<(&'static str, String)>);
    let endpoints: Vec<Endpoint> = vec![
        (Method::GET, "/api/v1/employees".into(), None),
        (Method::GET, format!("/api/v1/employees/{employee}"), None),
        (
            Method::POST,
            "/api/v1/employees".into(),
            Some((
                "application/json",
                json!({ "first_name": "X", "surname": "Y" }).to_string(),
            )),
        ),
        (
            Method::PATCH,
            format!("/api/v1/employees/{employee}"),
            Some((
                "application/json",
                json!({ "email": "x@example.com" }).to_string(),
            )),
        ),
        (
            Method::DELETE,
            format!("/api/v1/employees/{employee}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/employees/{employee}/events"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/employees/{employee}/deactivate"),
            None,
        ),
        (
            Method::POST,
            "/api/v1/employees/import".into(),
            Some(("text/csv", format!("{CSV_HEADER}\n"))),
        ),
        (Method::GET, "/api/v1/employees/export".into(), None),
        (Method::GET, "/api/v1/roles".into(), None),
        (Method::GET, "/api/v1/me".into(), None),
        (Method::GET, "/api/v1/system".into(), None),
        (
            Method::PATCH,
            "/api/v1/system/settings".into(),
            Some((
                "application/json",
                json!({ "hierarchical_administrators": true }).to_string(),
            )),
        ),
        (Method::GET, "/api/v1/tokens".into(), None),
        (
            Method::POST,
            "/api/v1/tokens".into(),
            Some(("application/json", json!({ "name": "x" }).to_string())),
        ),
        (Method::DELETE, "/api/v1/tokens/1".into(), None),
        (
            Method::POST,
            "/api/v1/bulk/tags".into(),
            Some((
                "application/json",
                json!({ "kind": "employee", "ids": [employee], "add": ["x"] }).to_string(),
            )),
        ),
    ];
    for (m, path, body) in &endpoints {
        for (what, auth) in &credentials {
            let r = send_raw(&app, m.clone(), path, *auth, body.clone()).await;
            ck.unauthorized(&format!("{m} {path} with {what}"), &r);
        }
    }
    // Nothing was changed by the refused requests.
    let r = app.get(&format!("/api/v1/employees/{employee}")).await;
    ck.truth(
        "the employee is untouched",
        r.status == 200 && r.body["version"] == 1,
        || short(&r.body),
    );
    let r = app.get("/api/v1/system").await;
    ck.truth(
        "the settings are untouched",
        r.body["settings"]["hierarchical_administrators"] == false,
        || short(&r.body),
    );

    // Revocation: by the owner with another of its tokens, then by the super-administrator.
    let (_, t1) = app
        .admin_with(
            "AUTH-1",
            json!({ "employee": "list", "api_tokens": "full" }),
            &[app.default_domain],
        )
        .await;
    let me = as_admin(&app, &t1, Method::GET, "/api/v1/me", None).await;
    ck.status("GET /me with a fresh token", &me, 200);
    let id1 = me.body["token_id"].as_i64().expect("token_id");
    let second = as_admin(
        &app,
        &t1,
        Method::POST,
        "/api/v1/tokens",
        Some(json!({ "name": "second" })),
    )
    .await;
    ck.status("issue a second token for oneself", &second, 201);
    let t2 = second.body["token"].as_str().expect("token").to_string();
    let id2 = second.body["info"]["id"].as_i64().expect("info.id");
    let r = as_admin(
        &app,
        &t2,
        Method::DELETE,
        &format!("/api/v1/tokens/{id1}"),
        None,
    )
    .await;
    ck.status("revoke one's own first token", &r, 204);
    for path in ["/api/v1/me", "/api/v1/employees"] {
        let r = as_admin(&app, &t1, Method::GET, path, None).await;
        ck.unauthorized(&format!("GET {path} with the revoked token"), &r);
    }
    let r = as_admin(&app, &t2, Method::GET, "/api/v1/employees", None).await;
    ck.status("the second token still works", &r, 200);
    // Someone else's token: only with c_key at Full.
    let (_, other) = app
        .admin_with(
            "AUTH-2",
            json!({ "employee": "full" }),
            &[app.default_domain],
        )
        .await;
    let r = as_admin(
        &app,
        &other,
        Method::DELETE,
        &format!("/api/v1/tokens/{id2}"),
        None,
    )
    .await;
    // Only the token's C-key, its issuer and the super administrator see and revoke it:
    // to anyone else it does not exist.
    ck.status("revoke another C-key's token", &r, 404);
    let r = as_admin(&app, &t2, Method::GET, "/api/v1/me", None).await;
    ck.status("the token survives a refused revocation", &r, 200);
    let other_ck = as_admin(&app, &other, Method::GET, "/api/v1/me", None)
        .await
        .body["c_key_id"]
        .clone();
    let r = as_admin(&app, &other, Method::GET, "/api/v1/tokens", None).await;
    let listed: Vec<&Value> = r.body["items"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    ck.truth(
        "without c_key at Full, GET /tokens lists only one's own tokens",
        r.status == 200 && !listed.is_empty() && listed.iter().all(|t| t["c_key_id"] == other_ck),
        || format!("{} {}", r.status, short(&r.body)),
    );
    ck.truth(
        "token listings never show secrets",
        !r.body.to_string().contains("lgt_"),
        || short(&r.body),
    );
    let r = app.delete(&format!("/api/v1/tokens/{id2}")).await;
    ck.status("super-administrator revokes the token", &r, 204);
    let r = as_admin(&app, &t2, Method::GET, "/api/v1/me", None).await;
    ck.unauthorized(
        "GET /me with the token revoked by the super-administrator",
        &r,
    );
    let r = as_admin(
        &app,
        &t2,
        Method::POST,
        "/api/v1/tokens",
        Some(json!({ "name": "revived" })),
    )
    .await;
    ck.unauthorized("a revoked token cannot issue a new token", &r);
    // The token of a deleted C-key.
    let (ck3, t3) = app
        .admin_with(
            "AUTH-3",
            json!({ "employee": "list" }),
            &[app.default_domain],
        )
        .await;
    let r = as_admin(&app, &t3, Method::GET, "/api/v1/me", None).await;
    ck.status("GET /me before the C-key is deleted", &r, 200);
    let r = app.delete(&format!("/api/v1/c-keys/{ck3}")).await;
    ck.status("delete the C-key", &r, 204);
    let r = as_admin(&app, &t3, Method::GET, "/api/v1/me", None).await;
    ck.unauthorized("GET /me with the token of a deleted C-key", &r);

    // A blocked C-key's token is refused.
    let (ck4, t4) = app
        .admin_with(
            "AUTH-4",
            json!({ "employee": "list" }),
            &[app.default_domain],
        )
        .await;
    let r = app
        .patch(&format!("/api/v1/c-keys/{ck4}"), json!({ "blocked": true }))
        .await;
    ck.status("block a C-key", &r, 200);
    let r = as_admin(&app, &t4, Method::GET, "/api/v1/employees", None).await;
    ck.truth(
        "the token of a blocked C-key is refused (401/403 problem)",
        matches!(r.status.as_u16(), 401 | 403) && want_problem(&r).is_ok(),
        || format!("{} {}", r.status, short(&r.body)),
    );

    ck.finish("authentication", db);
}

on_both!(authentication_and_revocation, |app: TestApp| async move {
    authentication(app).await
});

// ---------------------------------------------------------------------------------------------
// 5: rules on administrators
// ---------------------------------------------------------------------------------------------

async fn set_hierarchy(app: &TestApp, ck: &mut Checks, on: bool) {
    let r = app
        .patch(
            "/api/v1/system/settings",
            json!({ "hierarchical_administrators": on }),
        )
        .await;
    ck.truth(
        &format!("switch hierarchical administrators {on}"),
        r.status == 200 && r.body["settings"]["hierarchical_administrators"] == on,
        || format!("{} {}", r.status, short(&r.body)),
    );
}

async fn administrator_rules(app: TestApp) {
    let db = app.db;
    let mut ck = Checks::default();
    let ckg = c_key_group(&app).await;
    let dom = app.default_domain;
    let new_c_key = |n: &str, roles: Value| json!({ "name": format!("C-key {n}"), "marking": format!("H-{n}"), "kind": "normal", "key_group_id": ckg, "role_ids": roles });

    // The approver role is never combined with another role on one C-key.
    let roles = app.get("/api/v1/roles?limit=1000").await.expect(200);
    let approver = roles.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| r["name"] == "Approver")
        .and_then(|r| r["id"].as_i64())
        .expect("the pre-defined Approver role");
    let key_list = app
        .post(
            "/api/v1/roles",
            json!({ "name": "Keys list", "permissions": { "key": "list" } }),
        )
        .await
        .expect(201)
        .id();
    let key_view = app
        .post(
            "/api/v1/roles",
            json!({ "name": "Keys view", "permissions": { "key": "view" } }),
        )
        .await
        .expect(201)
        .id();
    let r = app
        .post(
            "/api/v1/c-keys",
            new_c_key("approver-mixed", json!([approver, key_list])),
        )
        .await;
    ck.invalid(
        "C-key with the approver role and another role",
        &r,
        "role_ids",
    );
    let r = app
        .post("/api/v1/c-keys", new_c_key("approver", json!([approver])))
        .await;
    ck.status("C-key with the approver role alone", &r, 201);
    if r.status == 201 {
        let id = r.id();
        let r = app
            .patch(
                &format!("/api/v1/c-keys/{id}"),
                json!({ "role_ids": [approver, key_list] }),
            )
            .await;
        ck.invalid("adding a role to the approver's C-key", &r, "role_ids");
        let r = app
            .patch(
                &format!("/api/v1/c-keys/{id}"),
                json!({ "role_ids": [key_list, approver] }),
            )
            .await;
        ck.invalid(
            "adding the approver role after another role",
            &r,
            "role_ids",
        );
    }
    let r = app
        .post("/api/v1/roles", json!({ "name": "Approving keys", "permissions": { "approvals": "full", "key": "list" } }))
        .await;
    ck.invalid(
        "a role approving and doing something else",
        &r,
        "permissions.approvals",
    );

    // An administrator with roles at Full but key only at List.
    let (h_ck, h) = app
        .admin_with(
            "HIER",
            json!({ "roles": "full", "c_key": "full", "key": "list" }),
            &[dom],
        )
        .await;
    let h = h.as_str();
    let own_role = app
        .get(&format!("/api/v1/c-keys/{h_ck}"))
        .await
        .expect(200)
        .body["role_ids"][0]
        .as_i64()
        .expect("own role");
    let target = app
        .post("/api/v1/c-keys", new_c_key("target", json!([])))
        .await
        .expect(201)
        .id();

    // Own C-key: roles never change, whatever the hierarchy setting.
    let own_roles_refused = |ck: &mut Checks, r: &Resp, when: &str| {
        ck.forbidden(
            &format!("changing the roles of one's own C-key ({when})"),
            r,
        );
    };
    let r = as_admin(
        &app,
        h,
        Method::PATCH,
        &format!("/api/v1/c-keys/{h_ck}"),
        Some(json!({ "role_ids": [own_role, key_list] })),
    )
    .await;
    own_roles_refused(&mut ck, &r, "adding, hierarchy off");
    let r = as_admin(
        &app,
        h,
        Method::PATCH,
        &format!("/api/v1/c-keys/{h_ck}"),
        Some(json!({ "role_ids": [] })),
    )
    .await;
    own_roles_refused(&mut ck, &r, "removing, hierarchy off");
    let r = app
        .patch(
            &format!("/api/v1/c-keys/{}", app.master_c_key_id),
            json!({ "role_ids": [key_list] }),
        )
        .await;
    own_roles_refused(&mut ck, &r, "super-administrator on the master C-key");
    let r = as_admin(
        &app,
        h,
        Method::DELETE,
        &format!("/api/v1/roles/{own_role}"),
        None,
    )
    .await;
    ck.forbidden("deleting one's own role", &r);
    let r = as_admin(
        &app,
        h,
        Method::DELETE,
        &format!("/api/v1/c-keys/{h_ck}"),
        None,
    )
    .await;
    ck.forbidden("deleting one's own C-key", &r);
    // One's own role: only its description may change.
    let r = as_admin(
        &app,
        h,
        Method::PATCH,
        &format!("/api/v1/roles/{own_role}"),
        Some(json!({ "permissions": { "roles": "full", "c_key": "full", "key": "full" } })),
    )
    .await;
    ck.forbidden("raising the permissions of one's own role", &r);
    let r = as_admin(
        &app,
        h,
        Method::PATCH,
        &format!("/api/v1/roles/{own_role}"),
        Some(json!({ "description": "mine" })),
    )
    .await;
    ck.status("describing one's own role", &r, 200);
    let r = app.get(&format!("/api/v1/c-keys/{h_ck}")).await;
    ck.truth(
        "own C-key unchanged",
        r.body["role_ids"] == json!([own_role]),
        || short(&r.body),
    );
    let r = app.get(&format!("/api/v1/roles/{own_role}")).await;
    ck.truth(
        "own role's permissions unchanged",
        r.body["permissions"] == json!({ "roles": "full", "c_key": "full", "key": "list" }),
        || short(&r.body),
    );

    // Own C-key: its domains do not change either (only the master C-key's may).
    let other_domain = app.domain("Elsewhere").await;
    let (d_ck, d) = app
        .admin_with(
            "DOMAINS",
            json!({ "c_key": "full", "domain": "full" }),
            &[dom],
        )
        .await;
    let r = as_admin(
        &app,
        &d,
        Method::PATCH,
        &format!("/api/v1/c-keys/{d_ck}"),
        Some(json!({ "domain_ids": [dom, other_domain] })),
    )
    .await;
    ck.forbidden("adding a domain to one's own C-key", &r);
    let r = app.get(&format!("/api/v1/c-keys/{d_ck}")).await;
    ck.truth(
        "own C-key's domains unchanged",
        r.body["domain_ids"] == json!([dom]),
        || short(&r.body),
    );

    // Switching the hierarchy itself needs roles at Full.
    let (_, settings_only) = app
        .admin_with(
            "SETTINGS",
            json!({ "system_settings": "full", "roles": "view" }),
            &[dom],
        )
        .await;
    let r = as_admin(
        &app,
        &settings_only,
        Method::PATCH,
        "/api/v1/system/settings",
        Some(json!({ "hierarchical_administrators": true })),
    )
    .await;
    ck.forbidden(
        "switching hierarchical administrators with roles at view",
        &r,
    );
    let r = app.get("/api/v1/system").await;
    ck.truth(
        "hierarchy still off",
        r.body["settings"]["hierarchical_administrators"] == false,
        || short(&r.body),
    );

    // Hierarchy on: nothing above one's own levels is granted or edited.
    set_hierarchy(&app, &mut ck, true).await;
    let r = as_admin(
        &app,
        h,
        Method::POST,
        "/api/v1/roles",
        Some(json!({ "name": "H key view", "permissions": { "key": "view" } })),
    )
    .await;
    ck.forbidden(
        "hierarchy on: creating a role granting key=view while holding key=list",
        &r,
    );
    let r = as_admin(
        &app,
        h,
        Method::POST,
        "/api/v1/roles",
        Some(json!({ "name": "H key list", "permissions": { "key": "list" } })),
    )
    .await;
    ck.status(
        "hierarchy on: creating a role granting key=list (own level)",
        &r,
        201,
    );
    let r = as_admin(&app, h, Method::POST, "/api/v1/roles", Some(json!({ "name": "H same", "permissions": { "roles": "full", "c_key": "full", "key": "list" } }))).await;
    ck.status("hierarchy on: creating a role equal to one's own", &r, 201);
    let r = as_admin(
        &app,
        h,
        Method::POST,
        "/api/v1/c-keys",
        Some(new_c_key("h-new-view", json!([key_view]))),
    )
    .await;
    ck.forbidden(
        "hierarchy on: creating a C-key holding a role above one's own",
        &r,
    );
    let r = as_admin(
        &app,
        h,
        Method::PATCH,
        &format!("/api/v1/c-keys/{target}"),
        Some(json!({ "role_ids": [key_view] })),
    )
    .await;
    ck.forbidden(
        "hierarchy on: assigning a role above one's own to a C-key",
        &r,
    );
    let r = as_admin(
        &app,
        h,
        Method::PATCH,
        &format!("/api/v1/c-keys/{target}"),
        Some(json!({ "role_ids": [key_list] })),
    )
    .await;
    ck.status(
        "hierarchy on: assigning a role within one's own levels",
        &r,
        200,
    );
    let r = as_admin(
        &app,
        h,
        Method::PATCH,
        &format!("/api/v1/roles/{key_list}"),
        Some(json!({ "permissions": { "key": "view" } })),
    )
    .await;
    ck.forbidden("hierarchy on: raising a role above one's own", &r);
    let r = as_admin(
        &app,
        h,
        Method::PATCH,
        &format!("/api/v1/roles/{key_view}"),
        Some(json!({ "permissions": { "key": "list" } })),
    )
    .await;
    ck.forbidden("hierarchy on: editing a role that is above one's own", &r);
    let r = as_admin(
        &app,
        h,
        Method::PATCH,
        &format!("/api/v1/c-keys/{h_ck}"),
        Some(json!({ "role_ids": [own_role, key_list] })),
    )
    .await;
    own_roles_refused(&mut ck, &r, "hierarchy on");
    // Acting as another C-key is holding its roles: a token for a C-key whose roles exceed
    // one's own would hand the caller those levels.
    let r = as_admin(
        &app,
        h,
        Method::POST,
        "/api/v1/tokens",
        Some(json!({ "name": "escalate", "c_key_id": app.master_c_key_id })),
    )
    .await;
    ck.forbidden(
        "hierarchy on: issuing a token for the master C-key (super-administrator)",
        &r,
    );
    let r = as_admin(
        &app,
        h,
        Method::POST,
        "/api/v1/tokens",
        Some(json!({ "name": "within", "c_key_id": target })),
    )
    .await;
    ck.status(
        "hierarchy on: issuing a token for a C-key within one's own levels",
        &r,
        201,
    );
    let r = app.get(&format!("/api/v1/c-keys/{target}")).await;
    ck.truth(
        "target C-key holds only the permitted role",
        r.body["role_ids"] == json!([key_list]),
        || short(&r.body),
    );
    let r = app.get(&format!("/api/v1/roles/{key_view}")).await;
    ck.truth(
        "the role above stays unchanged",
        r.body["permissions"] == json!({ "key": "view" }),
        || short(&r.body),
    );

    // Hierarchy off: the same requests pass.
    set_hierarchy(&app, &mut ck, false).await;
    let r = as_admin(
        &app,
        h,
        Method::POST,
        "/api/v1/roles",
        Some(json!({ "name": "H key view", "permissions": { "key": "view" } })),
    )
    .await;
    ck.status(
        "hierarchy off: creating a role granting key=view while holding key=list",
        &r,
        201,
    );
    let r = as_admin(
        &app,
        h,
        Method::POST,
        "/api/v1/c-keys",
        Some(new_c_key("h-new-view", json!([key_view]))),
    )
    .await;
    ck.status(
        "hierarchy off: creating a C-key holding a role above one's own",
        &r,
        201,
    );
    let r = as_admin(
        &app,
        h,
        Method::PATCH,
        &format!("/api/v1/c-keys/{target}"),
        Some(json!({ "role_ids": [key_view] })),
    )
    .await;
    ck.status(
        "hierarchy off: assigning a role above one's own to a C-key",
        &r,
        200,
    );
    let r = as_admin(
        &app,
        h,
        Method::PATCH,
        &format!("/api/v1/c-keys/{h_ck}"),
        Some(json!({ "role_ids": [own_role, key_view] })),
    )
    .await;
    own_roles_refused(&mut ck, &r, "hierarchy off, again");

    ck.finish("administrator rules", db);
}

on_both!(
    hierarchy_own_c_key_and_approver,
    |app: TestApp| async move { administrator_rules(app).await }
);
