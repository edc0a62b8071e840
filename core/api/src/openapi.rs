//! The OpenAPI 3.1 document: every route the router serves, with the schema of every
//! response it gives, and the problem documents (RFC 9457) each operation can answer with.
//!
//! Model schemas come from the `ToSchema` derives of `lockgate-model` (feature `openapi`) and
//! of this crate's own request and response types. What is defined by crates that do not
//! know utoipa (the store's and the application layer's records, the engine's enums) is
//! described here by hand, next to the operations that return it. `tests/tests/openapi.rs`
//! walks the router and fails on any route missing from this document (and on any documented
//! route nobody serves), and checks real responses against these schemas.

use lockgate_model::ObjectKind;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::problem::PROBLEM_JSON;

/// The collections and the schema of their bodies, in the router's order.
pub const COLLECTIONS: [(ObjectKind, &str); 13] = [
    (ObjectKind::Domain, "Domain"),
    (ObjectKind::Employee, "Person"),
    (ObjectKind::Visitor, "Person"),
    (ObjectKind::Key, "Key"),
    (ObjectKind::CKey, "CKey"),
    (ObjectKind::KeyGroup, "KeyGroup"),
    (ObjectKind::Cylinder, "Cylinder"),
    (ObjectKind::CylinderGroup, "CylinderGroup"),
    (ObjectKind::AccessProfile, "AccessProfile"),
    (ObjectKind::TemporaryAccessGroup, "TemporaryAccessGroup"),
    (ObjectKind::ScheduleTemplate, "ScheduleTemplate"),
    (ObjectKind::RemotePd, "RemotePd"),
    (ObjectKind::Role, "Role"),
];

/// The envelope fields every stored object carries besides its body.
const ENVELOPE: [(&str, &str); 4] = [
    ("id", "Object id (global across locking systems)"),
    ("version", "Version, incremented by every change; the ETag"),
    ("created_at", "When the object was created"),
    ("updated_at", "When the object last changed"),
];

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn int64() -> Value {
    json!({ "type": "integer", "format": "int64" })
}

/// An object id: a positive 64-bit integer (larger numbers are not ids, whatever JSON allows).
fn id_schema() -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": 1, "maximum": i64::MAX })
}

fn nullable_id() -> Value {
    json!({ "type": ["integer", "null"], "format": "int64" })
}

fn count() -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": 0 })
}

fn text() -> Value {
    json!({ "type": "string" })
}

fn date_time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn nullable_date_time() -> Value {
    json!({ "type": ["string", "null"], "format": "date-time" })
}

fn nullable(schema: Value) -> Value {
    json!({ "oneOf": [{ "type": "null" }, schema] })
}

/// `schema`, also admitting null (unless it does already).
fn or_null(mut schema: Value) -> Value {
    match schema.get_mut("type") {
        Some(Value::String(t)) if t != "null" => {
            let t = t.clone();
            schema["type"] = json!([t, "null"]);
            schema
        }
        Some(Value::Array(types)) => {
            if !types.contains(&json!("null")) {
                types.push(json!("null"));
            }
            schema
        }
        _ => {
            let admits_null = schema["oneOf"]
                .as_array()
                .is_some_and(|alts| alts.iter().any(|a| a["type"] == "null"));
            if admits_null {
                schema
            } else {
                nullable(schema)
            }
        }
    }
}

fn array(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

/// A closed object: every listed property is required unless named in `optional`.
fn object(properties: Value, optional: &[&str]) -> Value {
    let required: Vec<&str> = properties
        .as_object()
        .map(|m| {
            m.keys()
                .map(String::as_str)
                .filter(|k| !optional.contains(k))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// `{"items": [<items>]}`, the shape of every listing.
fn items_of(items: Value) -> Value {
    object(json!({ "items": array(items) }), &[])
}

fn described(mut schema: Value, description: &str) -> Value {
    schema["description"] = Value::String(description.into());
    schema
}

fn string_enum(values: &[&str], description: &str) -> Value {
    json!({ "type": "string", "enum": values, "description": description })
}

/// Register a derived schema and everything it refers to.
fn add<T: ToSchema>(schemas: &mut Map<String, Value>) {
    let mut deps = Vec::new();
    T::schemas(&mut deps);
    for (name, schema) in deps {
        schemas.insert(name, serde_json::to_value(schema).unwrap_or_default());
    }
    schemas.insert(
        T::name().into_owned(),
        serde_json::to_value(T::schema()).unwrap_or_default(),
    );
}

/// `Stored<Body>`: the body's schema with the envelope fields added (a body refuses unknown
/// fields, so an `allOf` with a separate envelope schema could never validate).
fn stored(schemas: &Map<String, Value>, body: &str) -> Value {
    let envelope = json!({
        "id": described(id_schema(), ENVELOPE[0].1),
        "version": described(json!({ "type": "integer", "format": "int64", "minimum": 1 }), ENVELOPE[1].1),
        "created_at": described(date_time(), ENVELOPE[2].1),
        "updated_at": described(date_time(), ENVELOPE[3].1),
    });
    let mut s = schemas.get(body).cloned().unwrap_or_else(|| json!({}));
    match s.get_mut("properties").and_then(Value::as_object_mut) {
        Some(props) => {
            for (k, v) in envelope.as_object().into_iter().flatten() {
                props.insert(k.clone(), v.clone());
            }
            let required = s
                .as_object_mut()
                .map(|m| m.entry("required").or_insert_with(|| json!([])));
            if let Some(Value::Array(r)) = required {
                for (k, _) in ENVELOPE {
                    r.push(Value::String(k.into()));
                }
            }
            s["description"] = Value::String(format!(
                "A stored {body}: its body with the envelope fields id, version, created_at and updated_at."
            ));
            s
        }
        None => json!({ "allOf": [
            schema_ref(body),
            object(envelope, &[]),
        ]}),
    }
}

/// The schemas the API describes by hand: records of the store and the application layer,
/// the engine's enums, and the JSON shapes the handlers build.
fn hand_written(s: &mut Map<String, Value>) {
    let mut put = |name: &str, schema: Value| {
        s.insert(name.into(), schema);
    };
    put(
        "Summary",
        object(
            json!({
                "id": id_schema(),
                "kind": schema_ref("ObjectKind"),
                "name": text(),
                "marking": { "type": ["string", "null"] },
                "status": { "type": ["string", "null"] },
                "type": { "type": ["string", "null"] },
                "domain_id": nullable_id(),
                "version": int64(),
                "updated_at": date_time(),
                "body": described(json!({ "type": "object" }), "The whole object (with_body=true)"),
            }),
            &["body"],
        ),
    );
    put(
        "HiddenCounts",
        object(
            json!({
                "by_status": described(count(), "Left out by the default filters (include_hidden=false): lost or broken keys, broken cylinders, mechanical keys and cylinders, inactive persons"),
                "outside_domains": described(count(), "Matches in domains you cannot see"),
            }),
            &[],
        ),
    );
    put(
        "SearchPage",
        object(
            json!({
                "items": array(schema_ref("Summary")),
                "total": count(),
                "offset": count(),
                "limit": count(),
                "hidden": schema_ref("HiddenCounts"),
            }),
            &[],
        ),
    );
    put("EventList", items_of(schema_ref("Event")));
    put(
        "Count",
        object(
            json!({ "updated": described(count(), "Objects changed") }),
            &[],
        ),
    );

    // Jobs (the store's JobRecord, the engine's enums).
    put(
        "JobKind",
        string_enum(
            &["remote_update", "cylinder_programming", "audit_trail"],
            "What a job does",
        ),
    );
    put(
        "JobTarget",
        string_enum(&["key", "cylinder"], "What a job is about"),
    );
    put(
        "JobState",
        string_enum(
            &lockgate_engine::jobs::JOB_STATE_NAMES,
            "Where a job is in its life",
        ),
    );
    put(
        "JobPriority",
        string_enum(
            &["low", "normal", "high"],
            "Priority (lost-key blocks are high)",
        ),
    );
    put(
        "CylinderAction",
        string_enum(
            &[
                "access_list",
                "block",
                "unblock",
                "group_change",
                "time_zone_offset",
                "reprogram",
                "audit_trail",
            ],
            "What a cylinder programming job changes",
        ),
    );
    put(
        "Job",
        described(
            object(
                json!({
                    "id": id_schema(),
                    "kind": schema_ref("JobKind"),
                    "target": schema_ref("JobTarget"),
                    "target_id": described(id_schema(), "The key or cylinder"),
                    "state": schema_ref("JobState"),
                    "program": described(json!({ "type": "object" }), "What the job writes: the key's or the cylinder's program ({} for audit-trail reads)"),
                    "actions": described(array(schema_ref("CylinderAction")), "Cylinder programming jobs: what changes"),
                    "priority": schema_ref("JobPriority"),
                    "loaded_on": described(nullable_id(), "The C-key the job is (or was) loaded on"),
                    "carried_by": described(nullable_id(), "The user key carrying (or that carried) a block job"),
                    "assigned_to": described(nullable_id(), "The C-key the job is prepared for"),
                    "replaced_by": described(nullable_id(), "The job that replaced this one"),
                    "reason": described(json!({ "type": ["string", "null"] }), "Why the job failed"),
                    "created_at": date_time(),
                    "updated_at": date_time(),
                }),
                &[],
            ),
            "A remote update, cylinder programming or audit-trail job",
        ),
    );
    put("JobList", items_of(schema_ref("Job")));
    put(
        "ReconcileReport",
        object(
            json!({
                "created": count(),
                "replaced": count(),
                "cancelled": count(),
                "capacity_exceeded": described(array(id_schema()), "Keys whose update exceeds their access-list capacity and is held back"),
            }),
            &[],
        ),
    );
    put(
        "KeyUpdateStatus",
        object(
            json!({
                "key_id": id_schema(),
                "status": string_enum(
                    &["up_to_date", "update_required", "re_edition_required", "capacity_exceeded"],
                    "Derived from the open job and the key's capacity",
                ),
                "open_job": nullable(schema_ref("Job")),
            }),
            &[],
        ),
    );
    put(
        "AssignResult",
        object(
            json!({
                "job": schema_ref("Job"),
                "warning": described(json!({ "type": ["string", "null"] }), "Set when the C-key holds more assigned jobs than recommended"),
            }),
            &[],
        ),
    );
    put(
        "FailResult",
        object(
            json!({
                "job": schema_ref("Job"),
                "recreated": described(count(), "Jobs the reconciliation created or replaced"),
            }),
            &[],
        ),
    );
    put("CKeyRef", object(json!({ "c_key_id": id_schema() }), &[]));
    put("KeyRef", object(json!({ "key_id": id_schema() }), &[]));
    put(
        "FailReport",
        object(
            json!({ "reason": {
                "type": "string", "pattern": "\\S", "description": "What went wrong (not blank)",
            }}),
            &[],
        ),
    );
    put(
        "ApprovalDecision",
        object(json!({ "approved": { "type": "boolean" } }), &[]),
    );

    // Key flows and views.
    put(
        "HandOut",
        described(
            object(
                json!({
                    "holder_id": described(id_schema(), "Employee or visitor receiving the key"),
                    "date_out": { "type": ["string", "null"], "format": "date" },
                    "date_in": described(json!({ "type": ["string", "null"], "format": "date" }), "Expected return date"),
                    "access_profile_ids": { "type": ["array", "null"], "items": id_schema() },
                    "cylinder_ids": { "type": ["array", "null"], "items": id_schema() },
                    "cylinder_group_ids": { "type": ["array", "null"], "items": id_schema() },
                    "validity": nullable(schema_ref("Validity")),
                    "schedule": nullable(schema_ref("Schedule")),
                }),
                &[
                    "date_out",
                    "date_in",
                    "access_profile_ids",
                    "cylinder_ids",
                    "cylinder_group_ids",
                    "validity",
                    "schedule",
                ],
            ),
            "What a hand-out sets besides the holder",
        ),
    );
    put(
        "LostRequest",
        object(
            json!({
                "block": schema_ref("BlockChoice"),
                "cylinder_ids": described(array(id_schema()), "Cylinders to block with `custom`"),
            }),
            &["block", "cylinder_ids"],
        ),
    );
    put(
        "CopyRequest",
        object(json!({ "target_key_id": id_schema() }), &[]),
    );
    put(
        "CloneRequest",
        object(
            json!({
                "marking": described(text(), "Marking of the factory clone"),
                "name": { "type": ["string", "null"] },
            }),
            &["name"],
        ),
    );
    put(
        "GroupSchedule",
        json!({
            "description": "Either a schedule or a schedule template",
            "oneOf": [
                object(json!({ "schedule": schema_ref("Schedule") }), &[]),
                object(json!({ "schedule_template_id": id_schema() }), &[]),
            ],
        }),
    );
    let access = |other: &str| {
        items_of(object(
            json!({
                other: id_schema(),
                "actual": described(json!({ "type": "boolean" }), "Granted by what the hardware holds now"),
                "defined": described(json!({ "type": "boolean" }), "Granted once every pending job is executed"),
                "pending": described(json!({ "type": "boolean" }), "Access changes once pending jobs run"),
            }),
            &[],
        ))
    };
    put("AccessibleCylinders", access("cylinder_id"));
    put("KeysWithAccess", access("key_id"));
    put(
        "OpeningDecision",
        object(
            json!({
                "key_id": id_schema(),
                "cylinder_id": id_schema(),
                "side": string_enum(&["a", "b"], "The cylinder side"),
                "at": date_time(),
                "state": string_enum(&["actual", "defined"], "The state judged"),
                "opens": { "type": "boolean", "description": "The key opens the side at that instant" },
                "reason": string_enum(
                    &[
                        "no_such_side", "cutting_does_not_fit", "mechanical_key_on_electronic_side",
                        "key_inactive", "before_validity_start", "after_validity_end",
                        "revalidation_expired", "pin_validation_expired", "not_admitted",
                        "excepted_from_key_group", "blocked", "not_in_key_access_list",
                        "outside_schedule", "unknown_time_zone", "delay_lock",
                        "online_open_required", "sequence_lock_awaiting_second_key",
                    ],
                    "The first rule that refuses the key (absent when it opens)",
                ),
                "message": described(text(), "The refusal in words"),
            }),
            &["reason", "message"],
        ),
    );
    put(
        "CylinderAccessProfiles",
        object(json!({ "access_profile_ids": array(id_schema()) }), &[]),
    );
    put(
        "OverdueKeys",
        items_of(object(
            json!({
                "key_id": id_schema(),
                "overdue_by": array(string_enum(&["date_in", "validity", "revalidation"], "What is past")),
            }),
            &[],
        )),
    );
    put(
        "Receipt",
        object(
            json!({
                "locking_system": text(),
                "key": object(json!({
                    "id": id_schema(),
                    "name": text(),
                    "marking": text(),
                    "type": schema_ref("KeyType"),
                }), &[]),
                "holder": object(json!({
                    "id": id_schema(),
                    "kind": string_enum(&["employee", "visitor"], "The holder's collection"),
                    "first_name": text(),
                    "surname": text(),
                    "identifier": { "type": ["string", "null"] },
                    "department": { "type": ["string", "null"] },
                }), &[]),
                "date_out": { "type": ["string", "null"], "format": "date" },
                "date_in": { "type": ["string", "null"], "format": "date" },
                "validity": schema_ref("Validity"),
                "schedule": described(json!({ "type": "boolean" }), "Whether the key has a schedule"),
                "access_profiles": array(object(json!({ "id": id_schema(), "name": text() }), &[])),
                "cylinders": array(object(json!({
                    "id": id_schema(),
                    "name": text(),
                    "marking": text(),
                    "pending": { "type": "boolean" },
                }), &[])),
                "hidden_outside_domains": described(count(), "Profiles and cylinders outside your domains (counted, not named)"),
                "issued_by_c_key": id_schema(),
                "generated_at": date_time(),
            }),
            &[],
        ),
    );

    // Persons.
    put(
        "SkippedRow",
        object(
            json!({
                "line": count(),
                "identifier": { "type": ["string", "null"] },
                "reason": text(),
            }),
            &[],
        ),
    );
    put(
        "CsvRowError",
        object(
            json!({ "line": count(), "errors": array(schema_ref("FieldError")) }),
            &[],
        ),
    );
    put(
        "ImportReport",
        object(
            json!({
                "dry_run": { "type": "boolean" },
                "delimiter": string_enum(&[",", ";"], "The delimiter found"),
                "valid_rows": described(count(), "Rows that passed every check"),
                "created": count(),
                "updated": count(),
                "unchanged": described(count(), "Valid rows identical to the stored person"),
                "skipped": array(schema_ref("SkippedRow")),
                "invalid": array(schema_ref("CsvRowError")),
            }),
            &[],
        ),
    );

    // The system, the caller and tokens.
    put(
        "Caller",
        object(
            json!({
                "system_id": id_schema(),
                "system_name": text(),
                "c_key_id": id_schema(),
                "c_key_name": text(),
                "c_key_kind": schema_ref("CKeyKind"),
                "domain_ids": array(id_schema()),
                "permissions": described(schema_ref("BTreeMap"), "Effective level per function"),
                "token_id": id_schema(),
            }),
            &[],
        ),
    );
    put(
        "TokenInfo",
        object(
            json!({
                "id": id_schema(),
                "c_key_id": id_schema(),
                "issued_by": described(id_schema(), "The C-key whose administrator issued the token; its rights and domains cap the token's on every request"),
                "name": text(),
                "created_at": date_time(),
                "expires_at": nullable_date_time(),
                "last_used_at": nullable_date_time(),
                "revoked_at": nullable_date_time(),
                "purpose": described(json!({ "type": "string", "enum": ["api", "scim", "web_service"] }), "api: the REST API; scim: only SCIM provisioning under /scim/v2; web_service: only the web services under /ws"),
            }),
            &[],
        ),
    );
    put("TokenList", items_of(schema_ref("TokenInfo")));
    put(
        "IssuedToken",
        object(
            json!({
                "token": described(text(), "The secret, shown once"),
                "info": schema_ref("TokenInfo"),
                "note": text(),
            }),
            &[],
        ),
    );

    // Licences (the engine's licence, the status the API derives).
    put(
        "LicenceFeature",
        string_enum(
            &lockgate_engine::licence::LicenceFeature::ALL.map(|f| f.as_str()),
            "A licensed feature",
        ),
    );
    put(
        "Licence",
        object(
            json!({
                "system_name": text(),
                "number": count(),
                "issued_at": date_time(),
                "soft_expiry": date_time(),
                "hard_expiry": date_time(),
                "features": array(schema_ref("LicenceFeature")),
                "max_keys": count(),
                "max_cylinders": count(),
                "key_id": text(),
            }),
            &["soft_expiry", "hard_expiry", "max_keys", "max_cylinders"],
        ),
    );
    put(
        "LicenceStatus",
        object(
            json!({
                "system_id": id_schema(),
                "system_name": text(),
                "state": string_enum(&["valid", "soft_expired", "hard_expired", "missing", "invalid"], "The installed licence's state"),
                "since": described(nullable_date_time(), "The expiry instant in the two expired states"),
                "enforce": { "type": "boolean" },
                "open_mode": described(json!({ "type": "boolean" }), "Nothing installed and not enforced: every feature is available"),
                "features": described(array(schema_ref("LicenceFeature")), "What is usable now"),
                "licence": nullable(schema_ref("Licence")),
                "number": nullable_id(),
                "installed_at": nullable_date_time(),
                "error": described(text(), "Why the installed file does not verify (state invalid)"),
            }),
            &["error"],
        ),
    );
    put(
        "LicenceFile",
        described(
            object(
                json!({
                    "payload": described(text(), "base64url of the payload bytes"),
                    "signature": described(text(), "base64url of the Ed25519 signature over the payload bytes"),
                    "key_id": described(text(), "Id of the trusted key that made the signature"),
                }),
                &[],
            ),
            "A signed licence file (docs/licences.md)",
        ),
    );

    // Plugins, dead letters, health.
    put("PluginList", items_of(schema_ref("PluginView")));
    put("DeadLetterList", items_of(schema_ref("DeadLetter")));
    put(
        "Requeued",
        object(
            json!({
                "source": schema_ref("Source"),
                "id": id_schema(),
                "requeued": { "type": "boolean", "enum": [true] },
            }),
            &[],
        ),
    );
    put(
        "Health",
        object(
            json!({ "status": string_enum(&["ok"], "The process answers") }),
            &[],
        ),
    );
    put(
        "Readiness",
        object(
            json!({ "status": string_enum(&["ready"], "The database answers") }),
            &[],
        ),
    );
}

/// One operation being described.
struct Op {
    method: &'static str,
    path: String,
    body: Map<String, Value>,
    parameters: Vec<Value>,
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": { PROBLEM_JSON: { "schema": schema_ref("Problem") } },
    })
}

impl Op {
    /// An operation of an authenticated caller: 401 without a valid token, 403 when a
    /// permission (named in the problem) or the licence is missing. Path parameters are
    /// taken from the path: `{id}` (400 when not a positive integer) and `{name}`.
    fn new(method: &'static str, path: &str, id: &str, tag: &str, summary: &str) -> Op {
        let mut op = Op::public(method, path, id, tag, summary);
        op.body.insert("security".into(), json!([{ "bearer": [] }]));
        op.problem(401, "Missing, unknown, expired or revoked token")
            .problem(
                403,
                "Permission missing (names the function and level), C-key blocked, or the licence refuses",
            )
    }

    /// An operation anyone may call.
    fn public(method: &'static str, path: &str, id: &str, tag: &str, summary: &str) -> Op {
        let mut body = Map::new();
        body.insert("operationId".into(), json!(id));
        body.insert("tags".into(), json!([tag]));
        body.insert("summary".into(), json!(summary));
        body.insert("responses".into(), json!({}));
        let mut op = Op {
            method,
            path: path.into(),
            body,
            parameters: Vec::new(),
        };
        if path.contains("{id}") {
            op.parameters.push(json!({
                "name": "id", "in": "path", "required": true, "schema": id_schema(),
            }));
            op = op.problem(400, "Malformed request (the id is not a positive integer)");
        }
        if path.contains("{name}") {
            op.parameters.push(json!({
                "name": "name", "in": "path", "required": true, "description": "The plugin's name",
                "schema": { "type": "string", "minLength": 1 },
            }));
        }
        op
    }

    fn response(mut self, status: u16, response: Value) -> Op {
        if let Some(Value::Object(r)) = self.body.get_mut("responses") {
            r.insert(status.to_string(), response);
        }
        self
    }

    fn problem(self, status: u16, description: &str) -> Op {
        self.response(status, problem(description))
    }

    fn not_found(self, what: &str) -> Op {
        self.problem(404, &format!("No such {what} (or outside your domains)"))
    }

    /// A JSON response.
    fn ok(self, status: u16, description: &str, schema: Value) -> Op {
        self.response(
            status,
            json!({
                "description": description,
                "content": { "application/json": { "schema": schema } },
            }),
        )
    }

    /// A stored object with its version as the ETag.
    fn object(self, status: u16, description: &str, body: &str) -> Op {
        self.response(
            status,
            json!({
                "description": description,
                "headers": { "ETag": {
                    "description": "The object's version, for If-Match",
                    "schema": { "type": "string" },
                }},
                "content": { "application/json": { "schema": schema_ref(&format!("Stored{body}")) } },
            }),
        )
    }

    fn no_content(self, description: &str) -> Op {
        self.response(204, json!({ "description": description }))
    }

    fn query(mut self, name: &str, schema: Value, description: &str) -> Op {
        // A flag may be given without a value (`?open`), which means true.
        let flag = schema["type"] == "boolean";
        let mut p = json!({
            "name": name, "in": "query", "required": false,
            "description": description, "schema": schema,
        });
        if flag {
            p["allowEmptyValue"] = json!(true);
        }
        self.parameters.push(p);
        self.problem(
            400,
            "Malformed request (unknown or invalid query parameter)",
        )
    }

    /// A query parameter the operation cannot do without.
    fn required_query(mut self, name: &str, schema: Value, description: &str) -> Op {
        self = self.query(name, schema, description);
        if let Some(p) = self.parameters.last_mut() {
            p["required"] = json!(true);
        }
        self
    }

    fn if_match(mut self) -> Op {
        self.parameters.push(json!({
            "name": "If-Match", "in": "header", "required": false,
            "description": "ETag (version) the change is based on: \"3\", W/\"3\", 3, or * for any",
            "schema": { "type": "string", "pattern": "^(\\*|(W/)?\"?[+-]?[0-9]{1,18}\"?)$" },
        }));
        self.problem(400, "Malformed request (If-Match is not an ETag)")
            .problem(
                412,
                "The object moved on: its current version is in the problem",
            )
    }

    /// A JSON request body: 415 for another media type, 400 for malformed JSON, 422 naming
    /// the field for content.
    fn json_body(self, schema: Value, required: bool) -> Op {
        self.body_as("application/json", schema, required)
            .problem(400, "Malformed JSON (line and column named)")
            .problem(415, "The body is not JSON")
            .problem(422, "Invalid field or a duplicate marking, identifier or name (named in errors[].field)")
    }

    fn body_as(mut self, media_type: &str, schema: Value, required: bool) -> Op {
        let content = self
            .body
            .entry("requestBody")
            .or_insert_with(|| json!({ "required": required, "content": {} }));
        content["content"][media_type] = json!({ "schema": schema });
        self
    }
}

/// The operations of one collection.
fn collection(ops: &mut Vec<Op>, kind: ObjectKind, body: &str) {
    let tag = kind.collection();
    let name: String = kind
        .as_str()
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let noun = kind.as_str().replace('_', " ");
    let base = format!("/api/v1/{}", kind.collection());
    let item = format!("{base}/{{id}}");
    let int = |min: i64, max: i64| json!({ "type": "integer", "format": "int64", "minimum": min, "maximum": max });
    let boolean = json!({ "type": "boolean" });
    let sort: Vec<String> = ["name", "marking", "identifier", "id", "updated_at"]
        .iter()
        .flat_map(|s| [s.to_string(), format!("-{s}")])
        .collect();
    ops.push(
        Op::new(
            "get",
            &base,
            &format!("search{name}s"),
            tag,
            &format!("Search {tag}"),
        )
        .query(
            "q",
            json!({ "type": "string", "maxLength": 100 }),
            "Name or marking prefix; * is a wildcard",
        )
        .query(
            "tag",
            json!({ "type": "array", "items": { "type": "string" }, "maxItems": 10 }),
            "Tag (repeatable; all must match)",
        )
        .query("domain_id", id_schema(), "Domain")
        .query(
            "status",
            text(),
            "Status (comma-separated or repeated); shows hidden statuses too",
        )
        .query("type", text(), "Type")
        .query(
            "include_hidden",
            boolean.clone(),
            "Include lost/broken keys and inactive persons (persons: needs key-holder deactivate)",
        )
        .query("with_body", boolean, "Return full objects (needs View)")
        .query(
            "sort",
            json!({ "type": "string", "enum": sort }),
            "name, marking, id or updated_at; prefix - for descending",
        )
        .query("limit", int(1, 1000), "Page size, default 50")
        .query("offset", int(0, 10_000_000), "Rows to skip")
        .ok(200, "One page", schema_ref("SearchPage")),
    );
    ops.push(
        Op::new(
            "post",
            &base,
            &format!("create{name}"),
            tag,
            &format!("Create a {noun}"),
        )
        .json_body(schema_ref(body), true)
        .object(201, "Created; Location names it", body)
        .problem(
            404,
            "A referenced object does not exist (or is outside your domains)",
        )
        .problem(
            409,
            "A rule refuses the object, or a concurrent change took its unique name",
        ),
    );
    ops.push(
        Op::new(
            "get",
            &item,
            &format!("get{name}"),
            tag,
            &format!("Read a {noun}"),
        )
        .object(200, "The object", body)
        .not_found(&noun),
    );
    ops.push(
        Op::new(
            "patch",
            &item,
            &format!("patch{name}"),
            tag,
            &format!("Change a {noun} (JSON merge patch, RFC 7396)"),
        )
        .if_match()
        .body_as(
            "application/merge-patch+json",
            schema_ref(&format!("{body}Patch")),
            true,
        )
        .json_body(schema_ref(&format!("{body}Patch")), true)
        .object(200, "Changed", body)
        .not_found(&noun)
        .problem(409, "Conflict, duplicate or rule violation"),
    );
    ops.push(
        Op::new(
            "delete",
            &item,
            &format!("delete{name}"),
            tag,
            &format!("Delete a {noun}"),
        )
        .if_match()
        .query(
            "detach",
            json!({ "type": "boolean" }),
            "Access profiles: confirm deleting a profile persons, keys or temporary access groups still hold (they lose it); refused for other kinds",
        )
        .no_content("Deleted")
        .not_found(&noun)
        .problem(409, "Still in use (references name the users)")
        .problem(422, "detach given for a kind other than access profiles"),
    );
    ops.push(
        Op::new(
            "get",
            &format!("{item}/events"),
            &format!("events{name}"),
            tag,
            "Events recorded on the object, newest first",
        )
        .query("limit", int(1, 1000), "At most this many, default 100")
        .query(
            "before_id",
            id_schema(),
            "Page backwards from this event id",
        )
        .ok(200, "Events", schema_ref("EventList"))
        .not_found(&noun),
    );
}

/// Single sign-on (docs/connectors/saml.md).
fn sso_operations(ops: &mut Vec<Op>) {
    let settings = || {
        object(
            json!({
                "enabled": { "type": "boolean" },
                "subject_attribute": { "type": ["string", "null"] },
                "idp_entity_id": { "type": ["string", "null"] },
                "idp_metadata_url": { "type": ["string", "null"] },
                "idp_metadata_loaded_at": { "type": ["string", "null"], "format": "date-time" },
                "idp_metadata_imported": { "type": "boolean" },
                "sp_certificate_created_at": { "type": ["string", "null"], "format": "date-time" },
                "sp_entity_id": text(),
                "sp_acs_url": text(),
                "login_url": text(),
                "idp_sso_url": text(),
                "idp_signing_certificates": { "type": "integer" },
            }),
            &["idp_sso_url", "idp_signing_certificates"],
        )
    };
    let off = "Single sign-on is not configured on this gateway ([sso] plugin)";
    ops.push(
        Op::new(
            "get",
            "/api/v1/sso/settings",
            "getSsoSettings",
            "sso",
            "This system's SSO settings (system settings, View)",
        )
        .ok(200, "The settings and the SP's URLs", settings())
        .problem(404, off),
    );
    ops.push(
        Op::new("put", "/api/v1/sso/settings", "putSsoSettings", "sso", "Enable or disable SSO and set the subject attribute (super administrator)")
            .json_body(
                object(
                    json!({ "enabled": { "type": "boolean" }, "subject_attribute": { "type": ["string", "null"] } }),
                    &["subject_attribute"],
                ),
                true,
            )
            .ok(200, "The settings", settings())
            .problem(404, off)
            .problem(409, "Enabling needs imported identity-provider metadata and an SP certificate")
            .problem(422, "subject_attribute empty or too long"),
    );
    ops.push(
        Op::new("post", "/api/v1/sso/idp-metadata", "importIdpMetadata", "sso", "Import the identity provider's SAML metadata (the XML document as the body; super administrator)")
            .body_as("application/samlmetadata+xml", json!({ "type": "string" }), true)
            .body_as("application/json", object(json!({ "url": text() }), &[]), true)
            .problem(400, "Malformed request")
            .problem(415, "The body is not of the documented media type")
            .ok(200, "The settings with what the metadata says", settings())
            .problem(404, off)
            .problem(422, "The metadata is not usable (names the element or rule), too large or expired")
            .problem(503, "The sso plugin is unavailable"),
    );
    ops.push(
        Op::new(
            "post",
            "/api/v1/sso/idp-metadata/refresh",
            "refreshIdpMetadata",
            "sso",
            "Fetch the identity provider's metadata again from the URL it was imported from (super administrator)",
        )
        .ok(200, "The settings with what the metadata says", settings())
        .problem(404, off)
        .problem(409, "The metadata was not imported from a URL, or the URL now names another identity provider")
        .problem(422, "The metadata is not usable, or the URL's host is not granted to the plugin")
        .problem(503, "The identity provider or the sso plugin is unavailable"),
    );
    ops.push(
        Op::new("post", "/api/v1/sso/certificate", "createSpCertificate", "sso", "Create or recreate the service provider's certificate (super administrator); answers it as PEM")
            .response(201, json!({ "description": "The new certificate", "content": { "application/x-pem-file": { "schema": { "type": "string" } } } }))
            .problem(404, off),
    );
    ops.push(
        Op::new("get", "/api/v1/sso/certificate", "getSpCertificate", "sso", "Download the service provider's certificate (PEM; system settings, View)")
            .response(200, json!({ "description": "The certificate", "content": { "application/x-pem-file": { "schema": { "type": "string" } } } }))
            .problem(404, "No certificate yet"),
    );
    ops.push(
        Op::new("get", "/api/v1/sso/identities", "listSsoIdentities", "sso", "The SSO identities C-keys enrolled (C-key, View)")
            .ok(
                200,
                "Identities",
                object(json!({ "items": { "type": "array", "items": object(json!({ "c_key_id": id_schema(), "subject": text(), "enrolled_at": date_time() }), &[]) } }), &[]),
            ),
    );
    ops.push(
        Op::new(
            "delete",
            "/api/v1/sso/identities/{id}",
            "removeSsoIdentity",
            "sso",
            "Forget a C-key's SSO identity and end its sessions (C-key, Full)",
        )
        .no_content("Removed")
        .not_found("SSO identity"),
    );
    ops.push(
        Op::new("post", "/api/v1/sso/enrolment", "enrolSsoIdentity", "sso", "Enrol the caller's SSO identity: only with the C-key's token, never in an SSO session; follow redirect_url through the identity provider")
            .json_body(object(json!({ "return_to": text() }), &["return_to"]), false)
            .ok(201, "Where to send the browser", object(json!({ "redirect_url": text() }), &[]))
            .problem(404, "SSO not configured, or not enabled for this system")
            .problem(409, "Metadata or certificate missing")
            .problem(422, "return_to is not a path of this gateway"),
    );
    ops.push(
        Op::new("get", "/api/v1/session", "getSession", "sso", "The caller's login: method (c_key or sso), C-key, and an SSO session's CSRF token (send it as X-CSRF-Token on changes)")
            .ok(200, "The session", object(json!({ "system_id": id_schema(), "c_key_id": id_schema(), "c_key_name": text(), "method": { "type": "string", "enum": ["c_key", "sso"] }, "csrf_token": { "type": ["string", "null"] }, "expires_at": { "type": ["string", "null"], "format": "date-time" } }), &[])),
    );
    ops.push(
        Op::new(
            "delete",
            "/api/v1/session",
            "logout",
            "sso",
            "Log out: end the SSO session and clear its cookie",
        )
        .no_content("Logged out")
        .problem(
            400,
            "The request is authenticated by a token, not a session",
        ),
    );
    ops.push(
        Op::public(
            "get",
            "/sso/{id}/login",
            "ssoLogin",
            "sso",
            "Browser: start an SSO login at the locking system's identity provider (303 to it)",
        )
        .query(
            "return_to",
            text(),
            "A path of this gateway to return to after login",
        )
        .response(
            303,
            json!({ "description": "To the identity provider (HTTP-Redirect binding)" }),
        )
        .problem(404, "SSO not enabled for this locking system")
        .problem(409, "Metadata or certificate missing")
        .problem(422, "return_to is not a path of this gateway"),
    );
    ops.push(
        Op::public("post", "/sso/{id}/acs", "ssoAcs", "sso", "Browser: the identity provider's response (HTTP-POST binding). A login sets the session cookie (HttpOnly, Secure, SameSite=Lax) and redirects; an enrolment records the identity")
            .body_as("application/x-www-form-urlencoded", object(json!({ "SAMLResponse": text(), "RelayState": text() }), &["RelayState"]), true)
            .problem(400, "Malformed request")
            .problem(415, "The body is not of the documented media type")
            .response(303, json!({ "description": "Logged in: the session cookie is set" }))
            .ok(200, "Enrolled", object(json!({ "enrolled": { "type": "boolean" }, "c_key_id": id_schema() }), &[]))
            .problem(403, "The response answers no awaited request, is a replay, or names no enrolled identity")
            .problem(404, "SSO not enabled for this locking system")
            .problem(409, "Metadata or certificate missing")
            .problem(422, "The response is refused (names the rule: signature, audience, recipient, time, ...)")
            .problem(503, "The sso plugin is unavailable"),
    );
    ops.push(
        Op::public("get", "/sso/{id}/metadata", "spMetadata", "sso", "The service provider's SAML metadata for this locking system")
            .response(200, json!({ "description": "SP metadata", "content": { "application/samlmetadata+xml": { "schema": { "type": "string" } } } }))
            .problem(404, "No SP certificate yet, or SSO not configured"),
    );
}

fn operations() -> Vec<Op> {
    let mut ops = Vec::new();
    for (kind, body) in COLLECTIONS {
        collection(&mut ops, kind, body);
    }
    let flag = || json!({ "type": "boolean" });

    // Persons.
    for coll in ["employees", "visitors"] {
        let name = if coll == "employees" {
            "Employee"
        } else {
            "Visitor"
        };
        for (action, summary) in [
            (
                "deactivate",
                "Deactivate (hidden, shown as N/A; needs key-holder deactivate)",
            ),
            ("reactivate", "Reactivate a deactivated person"),
            ("restore", "Restore a person marked as deleted"),
        ] {
            ops.push(
                Op::new(
                    "post",
                    &format!("/api/v1/{coll}/{{id}}/{action}"),
                    &format!("{action}{name}"),
                    coll,
                    summary,
                )
                .object(200, "The person", "Person")
                .not_found("person")
                .problem(409, "The person is not in a state that allows this"),
            );
        }
    }
    ops.push(
        Op::new(
            "post",
            "/api/v1/employees/import",
            "importEmployees",
            "employees",
            "Import employees from CSV (all or nothing)",
        )
        .query(
            "dry_run",
            flag(),
            "Report what the import would do without writing",
        )
        .body_as("text/csv", json!({ "type": "string" }), true)
        .body_as(
            "application/octet-stream",
            json!({ "type": "string", "description": "The same CSV text (UTF-8)" }),
            true,
        )
        .ok(
            200,
            "Dry run: what the import would do",
            schema_ref("ImportReport"),
        )
        .ok(
            201,
            "Imported: created, updated, unchanged, skipped and invalid rows with line numbers",
            schema_ref("ImportReport"),
        )
        .problem(
            404,
            "A referenced object does not exist (or is outside your domains)",
        )
        .problem(409, "A row conflicts with a stored person")
        .problem(415, "The body is not text/csv")
        .problem(422, "The file cannot be imported (invalid rows are named)"),
    );
    ops.push(
        Op::new(
            "get",
            "/api/v1/employees/export",
            "exportEmployees",
            "employees",
            "Export employees as CSV, with a Tags column",
        )
        .query(
            "delimiter",
            json!({ "type": "string", "enum": ["comma", "semicolon", ",", ";"] }),
            "Field delimiter, default comma",
        )
        .response(
            200,
            json!({
                "description": "The import format plus Tags (attachment employees.csv)",
                "content": { "text/csv": { "schema": { "type": "string" } } },
            }),
        ),
    );

    // The system, the caller, tokens, bulk changes.
    ops.push(
        Op::new(
            "get",
            "/api/v1/system",
            "getSystem",
            "system",
            "The locking system and its settings",
        )
        .ok(200, "The locking system", schema_ref("LockingSystem")),
    );
    ops.push(
        Op::new(
            "patch",
            "/api/v1/system/settings",
            "patchSettings",
            "system",
            "Change the adjustable settings (JSON merge patch)",
        )
        .if_match()
        .body_as(
            "application/merge-patch+json",
            schema_ref("SystemSettingsPatch"),
            true,
        )
        .json_body(schema_ref("SystemSettingsPatch"), true)
        .ok(
            200,
            "The locking system with its new settings",
            schema_ref("LockingSystem"),
        )
        .problem(409, "A rule refuses the change"),
    );
    ops.push(
        Op::new(
            "get",
            "/api/v1/system/status",
            "getSystemStatus",
            "system",
            "System status: maintenance lock, licence state, open jobs, remote PDs online (needs system_status)",
        )
        .ok(200, "The status", json!({ "type": "object" })),
    );
    ops.push(
        Op::new(
            "get",
            "/api/v1/statistics",
            "getStatistics",
            "system",
            "Basic statistics: objects by kind, status and domain in your domains, and open jobs (needs statistics)",
        )
        .ok(200, "The counts", json!({ "type": "object" })),
    );
    ops.push(
        Op::new(
            "put",
            "/api/v1/system/maintenance",
            "lockForMaintenance",
            "system",
            "Lock the locking system for maintenance from a time at least 10 minutes ahead (needs maintenance); while locked every change but the unlock is refused with 423",
        )
        .json_body(
            object(json!({ "from": date_time() }), &["from"]),
            true,
        )
        .ok(200, "The locking system", schema_ref("LockingSystem")),
    );
    ops.push(
        Op::new(
            "delete",
            "/api/v1/system/maintenance",
            "unlockMaintenance",
            "system",
            "Unlock the locking system after maintenance (needs maintenance)",
        )
        .ok(200, "The locking system", schema_ref("LockingSystem")),
    );
    let pd_certificate = || {
        object(
            json!({
                "id": id_schema(),
                "pd_id": id_schema(),
                "serial": text(),
                "fingerprint": text(),
                "source": { "type": "string", "enum": ["enrolment", "upload"] },
                "not_before": date_time(),
                "not_after": date_time(),
                "created_at": date_time(),
                "revoked_at": nullable_date_time(),
                "revocation_reason": { "type": ["string", "null"] },
                "certificate_pem": text(),
            }),
            &[],
        )
    };
    let pd_identity_off = "Remote PD identity is not configured ([pds] enabled, CA key)";
    ops.push(
        Op::new(
            "post",
            "/api/v1/remote-pds/{id}/enrolment-code",
            "createPdEnrolmentCode",
            "remote-pds",
            "A one-time enrolment code for the PD, shown once (needs remote_pds Full and the remote licence feature); earlier unused codes stop working",
        )
        .json_body(
            object(json!({ "valid_minutes": { "type": "integer", "minimum": 1, "maximum": 10080 } }), &["valid_minutes"]),
            true,
        )
        .ok(
            201,
            "The code",
            object(json!({ "pd_id": id_schema(), "code": text(), "expires_at": date_time() }), &[]),
        )
        .not_found("remote PD")
        .problem(409, pd_identity_off)
        .problem(422, "valid_minutes out of range"),
    );
    ops.push(
        Op::public(
            "post",
            "/api/v1/pd-enrolment",
            "enrolPd",
            "remote-pds",
            "A PD enrols: its one-time code and a PEM certificate signing request give it a client certificate for the PD the code was made for, and the gateway CA's certificate. No token: the code is the credential",
        )
        .json_body(object(json!({ "code": text(), "csr_pem": text() }), &[]), true)
        .ok(
            201,
            "The PD's certificate",
            object(
                json!({
                    "pd_id": id_schema(),
                    "serial": text(),
                    "fingerprint": text(),
                    "not_after": date_time(),
                    "certificate_pem": text(),
                    "ca_pem": text(),
                    "krl_public_key": text(),
                }),
                &[],
            ),
        )
        .problem(400, "Malformed JSON")
        .problem(409, pd_identity_off)
        .problem(422, "The code is unknown, used or expired (field code), or the request is unusable (field csr_pem)"),
    );
    ops.push(
        Op::new(
            "get",
            "/api/v1/pd-ca",
            "getPdCa",
            "remote-pds",
            "The gateway's PD CA certificate (PDs trust the PD listener by it; needs remote_pds View)",
        )
        .ok(
            200,
            "The CA certificate and the key revocation list key",
            object(json!({ "certificate_pem": text(), "krl_public_key": text() }), &[]),
        )
        .problem(409, pd_identity_off),
    );
    ops.push(
        Op::new(
            "get",
            "/api/v1/pd-krl",
            "getPdKrl",
            "remote-pds",
            "Your system's key revocation list (its lost keys), Ed25519-signed as PDs fetch it, with its content (needs remote_pds View)",
        )
        .ok(
            200,
            "The list",
            object(
                json!({
                    "list": object(
                        json!({
                            "version": count(),
                            "system_id": id_schema(),
                            "issued_at": date_time(),
                            "valid_until": date_time(),
                            "keys": { "type": "array", "items": object(json!({ "key_id": id_schema(), "marking": text() }), &[]) },
                        }),
                        &[],
                    ),
                    "signed": object(json!({ "list": text(), "signature": text() }), &[]),
                    "public_key": text(),
                }),
                &[],
            ),
        )
        .problem(409, pd_identity_off),
    );
    ops.push(
        Op::new(
            "get",
            "/api/v1/remote-pds/{id}/status",
            "getPdStatus",
            "remote-pds",
            "The PD's status: online (heartbeats), last seen, offline since, the firmware it reported, when its newest unrevoked certificate expires, the age of the key revocation list it was last given (needs remote_pds View)",
        )
        .ok(
            200,
            "The status",
            object(
                json!({
                    "pd_id": id_schema(),
                    "online": { "type": "boolean" },
                    "last_seen": nullable_date_time(),
                    "offline_since": nullable_date_time(),
                    "firmware": { "type": ["string", "null"] },
                    "bootloader": { "type": ["string", "null"] },
                    "certificate_expires_at": nullable_date_time(),
                    "krl_issued_at": nullable_date_time(),
                    "krl_age_minutes": { "type": ["integer", "null"], "minimum": 0 },
                }),
                &[],
            ),
        )
        .not_found("remote PD"),
    );
    ops.push(
        Op::new(
            "get",
            "/api/v1/remote-pds/{id}/certificates",
            "listPdCertificates",
            "remote-pds",
            "The PD's certificates, newest first (needs remote_pds View)",
        )
        .ok(
            200,
            "Certificates",
            object(
                json!({ "items": { "type": "array", "items": pd_certificate() } }),
                &[],
            ),
        )
        .not_found("remote PD"),
    );
    ops.push(
        Op::new(
            "post",
            "/api/v1/remote-pds/{id}/certificates",
            "uploadPdCertificate",
            "remote-pds",
            "Record a PD certificate issued elsewhere: a client certificate of the gateway CA or a configured trusted issuer, valid now (needs remote_pds Full)",
        )
        .json_body(object(json!({ "certificate_pem": text() }), &[]), true)
        .ok(201, "The certificate", pd_certificate())
        .not_found("remote PD")
        .problem(409, "Already recorded, or remote PD identity is not configured")
        .problem(422, "Not a certificate of a trusted issuer, or not valid now (field certificate_pem)"),
    );
    ops.push(
        Op::new(
            "post",
            "/api/v1/remote-pds/{id}/certificates/revoke",
            "revokePdCertificates",
            "remote-pds",
            "Revoke one certificate of the PD (certificate_id) or all; the next connection with it fails (needs remote_pds Full)",
        )
        .json_body(
            object(json!({ "certificate_id": id_schema(), "reason": text() }), &["certificate_id"]),
            true,
        )
        .ok(200, "How many were revoked", object(json!({ "revoked": count() }), &[]))
        .not_found("remote PD")
        .problem(422, "reason missing or too long"),
    );
    sso_operations(&mut ops);
    ops.push(
        Op::new(
            "get",
            "/api/v1/me",
            "me",
            "system",
            "Who the token belongs to: C-key, effective permissions, domains",
        )
        .ok(200, "The caller", schema_ref("Caller")),
    );
    ops.push(
        Op::new(
            "get",
            "/api/v1/tokens",
            "listTokens",
            "tokens",
            "API tokens (never their secrets): yours and those you issued; a super administrator sees all",
        )
        .ok(200, "Tokens", schema_ref("TokenList")),
    );
    ops.push(
        Op::new(
            "post",
            "/api/v1/tokens",
            "createToken",
            "tokens",
            "Issue a token (the secret is shown once)",
        )
        .json_body(schema_ref("NewToken"), true)
        .ok(201, "The secret and its info", schema_ref("IssuedToken")),
    );
    ops.push(
        Op::new(
            "delete",
            "/api/v1/tokens/{id}",
            "revokeToken",
            "tokens",
            "Revoke a token",
        )
        .no_content("Revoked")
        .not_found("token"),
    );
    for (path, id, summary, schema) in [
        (
            "/api/v1/bulk/tags",
            "bulkTags",
            "Add and remove tags on many objects (all or nothing)",
            "BulkTags",
        ),
        (
            "/api/v1/bulk/domain",
            "bulkDomain",
            "Move many objects to a domain (all or nothing)",
            "BulkDomain",
        ),
        (
            "/api/v1/bulk/key-validity",
            "bulkKeyValidity",
            "Set the validity of many keys (all or nothing)",
            "BulkValidity",
        ),
    ] {
        ops.push(
            Op::new("post", path, id, "bulk", summary)
                .json_body(schema_ref(schema), true)
                .ok(200, "How many objects changed", schema_ref("Count"))
                .problem(
                    404,
                    "One of the objects does not exist (or is outside your domains)",
                )
                .problem(
                    409,
                    "A rule refuses one of the changes (nothing is written)",
                )
                .problem(
                    412,
                    "One of the objects changed meanwhile (nothing is written)",
                ),
        );
    }

    // Jobs.
    let int = |min: i64, max: i64| json!({ "type": "integer", "format": "int64", "minimum": min, "maximum": max });
    ops.push(
        Op::new(
            "get",
            "/api/v1/jobs",
            "listJobs",
            "jobs",
            "Remote update, cylinder programming and audit-trail jobs, newest first",
        )
        .query("target_id", id_schema(), "Jobs of this key or cylinder")
        .query(
            "c_key_id",
            id_schema(),
            "Open jobs loaded on or assigned to this C-key",
        )
        .query("open", flag(), "Only jobs not yet finished")
        .query("limit", int(1, 1000), "At most this many, default 100")
        .ok(200, "Jobs you may see", schema_ref("JobList")),
    );
    // Path, operation id, summary, request body, success status, response schema.
    type JobAction = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        u16,
        &'static str,
    );
    let job_ops: [JobAction; 9] = [
        (
            "/api/v1/jobs/{id}/confirm",
            "confirmJob",
            "The hardware executed the job: its program becomes the actual state. Refused (409) for a key's job once the system has an enrolled PD, and for a cylinder job on a C-key with firmware 12.0.0 or later: their PD reports close them",
            None,
            200,
            "Job",
        ),
        (
            "/api/v1/jobs/{id}/load",
            "loadJob",
            "Load a cylinder programming job on your C-key",
            Some("CKeyRef"),
            200,
            "Job",
        ),
        (
            "/api/v1/jobs/{id}/assign",
            "assignJob",
            "Prepare a job for another administrator's C-key",
            Some("CKeyRef"),
            200,
            "AssignResult",
        ),
        (
            "/api/v1/jobs/{id}/carry",
            "carryJob",
            "Give a block job to a generation 2 dynamic user key that carries it to the cylinder",
            Some("KeyRef"),
            200,
            "Job",
        ),
        (
            "/api/v1/jobs/{id}/fail",
            "failJob",
            "The hardware reports the job failed; reconciliation recreates it",
            Some("FailReport"),
            200,
            "FailResult",
        ),
        (
            "/api/v1/jobs/{id}/approve",
            "approveAuditTrail",
            "An approver decides an audit-trail request",
            Some("ApprovalDecision"),
            200,
            "Job",
        ),
        (
            "/api/v1/cylinders/{id}/reprogram",
            "requestReprogramming",
            "Request reprogramming: memory wiped, defined program restored",
            None,
            201,
            "Job",
        ),
        (
            "/api/v1/cylinders/{id}/audit-trail-request",
            "requestCylinderAuditTrail",
            "Request the cylinder's audit trail (waits for approval when approvals are on)",
            None,
            201,
            "Job",
        ),
        (
            "/api/v1/keys/{id}/audit-trail-request",
            "requestKeyAuditTrail",
            "Request a quartz or dynamic key's audit trail",
            None,
            201,
            "Job",
        ),
    ];
    for (path, id, summary, body, status, schema) in job_ops {
        let what = if path.starts_with("/api/v1/jobs") {
            "job"
        } else if path.starts_with("/api/v1/keys") {
            "key"
        } else {
            "cylinder"
        };
        let mut op = Op::new("post", path, id, "jobs", summary);
        if let Some(b) = body {
            op = op.json_body(schema_ref(b), true);
        }
        ops.push(
            op.ok(status, "The job", schema_ref(schema))
                .not_found(what)
                .problem(
                    409,
                    "The job's state or a loading rule refuses (the rule is named)",
                ),
        );
    }
    ops.push(
        Op::new(
            "post",
            "/api/v1/reconcile",
            "reconcile",
            "jobs",
            "Recompute the defined state and create, replace or cancel jobs",
        )
        .ok(200, "What the run did", schema_ref("ReconcileReport")),
    );
    ops.push(
        Op::new(
            "post",
            "/api/v1/keys/{id}/re-edited",
            "keyReEdited",
            "keys",
            "A local PD re-edited the key: its structure and firmware are written",
        )
        .object(200, "The key", "Key")
        .not_found("key")
        .problem(409, "The key cannot be re-edited"),
    );
    ops.push(
        Op::new(
            "get",
            "/api/v1/keys/{id}/update-status",
            "keyUpdateStatus",
            "keys",
            "Derived update status and the open job",
        )
        .ok(200, "The status", schema_ref("KeyUpdateStatus"))
        .not_found("key"),
    );

    // Licence.
    ops.push(
        Op::new(
            "get",
            crate::licence::LICENCE_PATH,
            "getLicence",
            "system",
            "The installed licence, its state and the features usable now",
        )
        .ok(200, "Licence status", schema_ref("LicenceStatus")),
    );
    ops.push(
        Op::new(
            "put",
            crate::licence::LICENCE_PATH,
            "putLicence",
            "system",
            "Install a signed licence file (any content type); only a higher number installs",
        )
        .body_as("application/json", schema_ref("LicenceFile"), true)
        .ok(
            200,
            "Licence status after installation",
            schema_ref("LicenceStatus"),
        )
        .problem(
            409,
            "licence-not-newer: the installed licence has the same or a higher number",
        )
        .problem(413, "licence-too-large: the file exceeds 64 KiB")
        .problem(
            422,
            "The file is malformed, signed by an unknown key, forged, or for another system",
        ),
    );

    // Key flows and views.
    let k = "/api/v1/keys/{id}";
    // Action, operation id, summary, request body (and whether it is required), success status.
    type KeyFlow = (
        &'static str,
        &'static str,
        &'static str,
        Option<(&'static str, bool)>,
        u16,
    );
    let key_flows: [KeyFlow; 7] = [
        (
            "hand-out",
            "handOutKey",
            "Hand a key out (holder, dates, profiles, explicit access, validity, schedule)",
            Some(("HandOut", true)),
            200,
        ),
        ("hand-in", "handInKey", "Take a key back", None, 200),
        (
            "lost",
            "reportKeyLost",
            "Report a key lost (block: all | installed | custom | none; all without a body)",
            Some(("LostRequest", false)),
            200,
        ),
        (
            "found",
            "reportKeyFound",
            "A lost key is found: blocks reversed, unexecuted blocks cancelled",
            None,
            200,
        ),
        (
            "copy-configuration",
            "copyKeyConfiguration",
            "Copy validity, schedule, access list and profiles to another key",
            Some(("CopyRequest", true)),
            200,
        ),
        (
            "replace-with-clone",
            "replaceKeyWithClone",
            "Replace a broken key by its factory clone (the clone is created)",
            Some(("CloneRequest", true)),
            201,
        ),
        (
            "remove-redundant-authorisations",
            "removeRedundantAuthorisations",
            "Drop explicit entries also given by profiles",
            None,
            200,
        ),
    ];
    for (action, id, summary, body, status) in key_flows {
        let mut op = Op::new("post", &format!("{k}/{action}"), id, "lifecycle", summary);
        if let Some((b, required)) = body {
            op = op.json_body(schema_ref(b), required);
        }
        ops.push(
            op.object(
                status,
                if status == 201 {
                    "The clone"
                } else {
                    "The key"
                },
                "Key",
            )
            .not_found("key")
            .problem(409, "The key's state does not allow this"),
        );
    }
    for (path, id, summary, schema, what) in [
        (
            "/api/v1/keys/{id}/accessible-cylinders",
            "accessibleCylinders",
            "Cylinders the key reaches: actual, defined, pending",
            "AccessibleCylinders",
            "key",
        ),
        (
            "/api/v1/keys/{id}/update-history",
            "keyUpdateHistory",
            "All jobs of the key, newest first",
            "JobList",
            "key",
        ),
        (
            "/api/v1/cylinders/{id}/keys-with-access",
            "keysWithAccess",
            "Keys reaching the cylinder: actual, defined, pending",
            "KeysWithAccess",
            "cylinder",
        ),
        (
            "/api/v1/cylinders/{id}/access-profiles",
            "cylinderAccessProfiles",
            "Access profiles giving access to the cylinder",
            "CylinderAccessProfiles",
            "cylinder",
        ),
    ] {
        ops.push(
            Op::new("get", path, id, "lifecycle", summary)
                .ok(200, "The view", schema_ref(schema))
                .not_found(what),
        );
    }
    ops.push(
        Op::new(
            "get",
            "/api/v1/keys/{id}/can-open",
            "canOpen",
            "lifecycle",
            "Whether the key opens a cylinder side at an instant, and the rule that refuses it",
        )
        .required_query("cylinder", id_schema(), "The cylinder")
        .query("at", date_time(), "The instant (RFC 3339); now when absent")
        .query(
            "side",
            string_enum(&["a", "b"], "Side; a when absent"),
            "The cylinder side",
        )
        .query(
            "state",
            string_enum(&["actual", "defined"], "actual when absent"),
            "Judge the state the hardware holds, or the state once pending jobs ran",
        )
        .ok(200, "The decision", schema_ref("OpeningDecision"))
        .not_found("key or cylinder"),
    );
    ops.push(
        Op::new(
            "get",
            "/api/v1/keys/{id}/receipt",
            "keyReceipt",
            "lifecycle",
            "Hand-out receipt data: holder, key, dates, validity, profiles and cylinders",
        )
        .ok(200, "The receipt", schema_ref("Receipt"))
        .not_found("key")
        .problem(409, "The key is not handed out"),
    );
    ops.push(
        Op::new(
            "get",
            "/api/v1/keys/overdue",
            "overdueKeys",
            "lifecycle",
            "Handed-out keys past date in, validity or revalidation",
        )
        .ok(200, "Overdue keys", schema_ref("OverdueKeys")),
    );
    ops.push(
        Op::new(
            "post",
            "/api/v1/cylinders/{id}/remove-key-side-authorisations",
            "removeKeySideAuthorisations",
            "lifecycle",
            "Remove the cylinder from every key, profile and temporary group",
        )
        .ok(200, "How many objects changed", schema_ref("Count"))
        .not_found("cylinder")
        .problem(409, "A rule refuses one of the changes"),
    );
    ops.push(
        Op::new(
            "post",
            "/api/v1/key-groups/{id}/schedule",
            "keyGroupSchedule",
            "lifecycle",
            "One schedule (or template) for every quartz and dynamic key of the group",
        )
        .json_body(schema_ref("GroupSchedule"), true)
        .ok(200, "How many keys changed", schema_ref("Count"))
        .not_found("key group")
        .problem(409, "A rule refuses one of the changes"),
    );

    // Plugins (docs/plugins.md).
    ops.push(
        Op::new("get", crate::plugins::PLUGINS_PATH, "listPlugins", "plugins", "Every WebAssembly plugin: version, world, grants, state with its reason, call counts, latencies and the last error")
            .ok(200, "Plugins by name", schema_ref("PluginList")),
    );
    for (action, id, summary) in [
        (
            "enable",
            "enablePlugin",
            "Enable a plugin (reloads it; configuration grants and the licence still apply)",
        ),
        (
            "disable",
            "disablePlugin",
            "Disable a plugin: its calls are refused until it is enabled",
        ),
        (
            "reload",
            "reloadPlugin",
            "Reload a plugin from its manifest and component; clears its back-off",
        ),
    ] {
        ops.push(
            Op::new(
                "post",
                &format!("/api/v1/plugins/{{name}}/{action}"),
                id,
                "plugins",
                summary,
            )
            .ok(200, "The plugin's status", schema_ref("PluginView"))
            .problem(404, "No plugin has this name")
            .problem(409, "The plugin host refused (its message)"),
        );
    }
    ops.push(
        Op::new(
            "post",
            "/api/v1/plugins/{name}/sync",
            "syncPluginNow",
            "plugins",
            "Synchronise now: run a directory-sync plugin's sync (full or incremental, dry run or not) and answer its report (needs ldap_integration Full; the plugin's licence feature)",
        )
        .json_body(
            object(json!({ "full": { "type": "boolean" }, "dry_run": { "type": "boolean" } }), &["full", "dry_run"]),
            true,
        )
        .ok(
            200,
            "The sync report",
            object(
                json!({
                    "plugin": text(),
                    "full": { "type": "boolean" },
                    "dry_run": { "type": "boolean" },
                    "staged": count(),
                    "created": count(),
                    "updated": count(),
                    "unchanged": count(),
                    "deleted": count(),
                    "deleted_identifiers": { "type": "array", "items": text() },
                    "skipped": { "type": "array", "items": object(json!({ "identifier": text(), "reason": text() }), &[]) },
                    "guard": { "type": ["string", "null"] },
                }),
                &[],
            ),
        )
        .problem(404, "No plugin has this name")
        .problem(409, "The plugin failed or is not a directory-sync plugin (its message)")
        .problem(422, "The plugin refused the sync (invalid configuration, the mass-deletion guard) or an unknown field"),
    );

    // The background runtime's dead letters (gateway-wide, like the plugins).
    ops.push(
        Op::new("get", crate::background::DEAD_LETTERS_PATH, "listDeadLetters", "background", "Queue jobs that failed their last attempt and outbox messages given up on, oldest first (without payloads)")
            .query("source", json!({ "type": "string", "enum": ["queue", "outbox"] }), "Only one source (needed with after)")
            .query("after", int(0, i64::MAX), "Page after this id of one source")
            .query("limit", int(1, 500), "At most this many of each source, default 100")
            .ok(200, "Dead letters", schema_ref("DeadLetterList")),
    );
    ops.push(
        Op::new(
            "post",
            "/api/v1/background/dead-letters/{id}/requeue",
            "requeueDeadLetter",
            "background",
            "Give a dead queue job or outbox message new attempts, due now",
        )
        .json_body(schema_ref("Requeue"), true)
        .ok(200, "Requeued", schema_ref("Requeued"))
        .problem(404, "No dead letter with this id in that source")
        .problem(409, "The job's unique key has another open job meanwhile"),
    );

    // Unauthenticated.
    ops.push(
        Op::public(
            "get",
            "/api/v1/openapi.json",
            "openapi",
            "meta",
            "This document",
        )
        .ok(
            200,
            "The OpenAPI document",
            json!({ "type": "object", "required": ["openapi", "paths"] }),
        ),
    );
    ops.push(
        Op::public(
            "get",
            "/healthz",
            "healthz",
            "meta",
            "Liveness: the process answers",
        )
        .ok(200, "Alive", schema_ref("Health")),
    );
    ops.push(
        Op::public(
            "get",
            "/readyz",
            "readyz",
            "meta",
            "Readiness: the database answers",
        )
        .ok(200, "Ready", schema_ref("Readiness"))
        .problem(503, "The database does not answer"),
    );
    link(&mut ops);
    ops
}

/// OpenAPI links, so clients and stateful testers find the id an operation needs: from a
/// created object to every operation on it, and from the job list to every job operation.
fn link(ops: &mut [Op]) {
    let on_item: Vec<(String, String)> = ops
        .iter()
        .filter(|o| o.path.contains("/{id}"))
        .map(|o| {
            (
                o.path.clone(),
                o.body["operationId"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for op in ops.iter_mut() {
        let (status, pointer) = match op.method {
            "post" if op.path == "/api/v1/tokens" => ("201", "$response.body#/info/id"),
            "post" if op.path.matches('/').count() == 3 && !op.path.contains('{') => {
                ("201", "$response.body#/id")
            }
            "get" if op.path == "/api/v1/jobs" => ("200", "$response.body#/items/0/id"),
            _ => continue,
        };
        let item = format!("{}/{{id}}", op.path);
        let mut links = Map::new();
        for (path, id) in &on_item {
            if path == &item || path.starts_with(&format!("{item}/")) {
                links.insert(
                    id.clone(),
                    json!({ "operationId": id, "parameters": { "id": pointer } }),
                );
            }
        }
        if let Some(r) = op.body["responses"].get_mut(status)
            && !links.is_empty()
        {
            r["links"] = Value::Object(links);
        }
    }
}

/// The component schemas: derived ones, the stored objects, and the hand-written ones.
fn schemas() -> Map<String, Value> {
    use lockgate_model::{
        access_profile::*, ckey::*, cylinder::*, domain::Domain, event::Event, key::*,
        key_group::*, permission::*, person::*, remote_pd::*, schedule::*, system::*,
        validation::FieldError,
    };
    let mut s = Map::new();
    add::<Domain>(&mut s);
    add::<Person>(&mut s);
    add::<Key>(&mut s);
    add::<CKey>(&mut s);
    add::<KeyGroup>(&mut s);
    add::<Cylinder>(&mut s);
    add::<CylinderGroup>(&mut s);
    add::<AccessProfile>(&mut s);
    add::<TemporaryAccessGroup>(&mut s);
    add::<ScheduleTemplate>(&mut s);
    add::<RemotePd>(&mut s);
    add::<Role>(&mut s);
    add::<Event>(&mut s);
    add::<LockingSystem>(&mut s);
    add::<FieldError>(&mut s);
    add::<ObjectKind>(&mut s);
    add::<BlockChoice>(&mut s);
    add::<Validity>(&mut s);
    add::<Schedule>(&mut s);
    add::<KeyType>(&mut s);
    add::<CKeyKind>(&mut s);
    add::<crate::problem::Problem>(&mut s);
    add::<crate::admin::NewToken>(&mut s);
    add::<crate::admin::BulkTags>(&mut s);
    add::<crate::admin::BulkDomain>(&mut s);
    add::<crate::admin::BulkValidity>(&mut s);
    add::<crate::background::Requeue>(&mut s);
    add::<crate::background::DeadLetter>(&mut s);
    add::<crate::plugins::PluginView>(&mut s);
    add::<SystemSettings>(&mut s);
    let mut bodies: std::collections::BTreeSet<&str> =
        COLLECTIONS.iter().map(|(_, b)| *b).collect();
    for body in &bodies {
        let schema = stored(&s, body);
        s.insert(format!("Stored{body}"), schema);
    }
    bodies.insert("SystemSettings");
    for body in bodies {
        let schema = merge_patch(&s, body);
        s.insert(format!("{body}Patch"), schema);
    }
    // Ids are positive 64-bit integers.
    if let Some(id) = s.get_mut("i64") {
        id["maximum"] = json!(i64::MAX);
    }
    // Bulk changes list 1–1000 distinct objects.
    for bulk in ["BulkTags", "BulkDomain", "BulkValidity"] {
        if let Some(ids) = s.get_mut(bulk).map(|b| &mut b["properties"]["ids"]) {
            *ids = json!({
                "type": "array", "items": id_schema(), "minItems": 1,
                "maxItems": crate::admin::MAX_BULK, "uniqueItems": true,
            });
        }
    }
    hand_written(&mut s);
    s
}

/// A JSON merge patch (RFC 7396) of `body`: any of its fields; null removes a field that may
/// be absent (it gets its default), and removes nothing for a name the body does not have.
fn merge_patch(schemas: &Map<String, Value>, body: &str) -> Value {
    let b = schemas.get(body).cloned().unwrap_or_else(|| json!({}));
    let required: Vec<&str> = b["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut props = Map::new();
    for (name, schema) in b["properties"].as_object().into_iter().flatten() {
        let schema = if required.contains(&name.as_str()) {
            schema.clone()
        } else {
            or_null(schema.clone())
        };
        props.insert(name.clone(), schema);
    }
    if body != "SystemSettings" {
        // Envelope fields may be echoed back: id must be the path's, version acts as If-Match.
        props.insert(
            "id".into(),
            described(id_schema(), "Must be the id in the path"),
        );
        props.insert(
            "version".into(),
            described(int64(), "The version the change is based on (as If-Match)"),
        );
        props.insert("created_at".into(), described(json!({}), "Ignored"));
        props.insert("updated_at".into(), described(json!({}), "Ignored"));
    }
    json!({
        "type": "object",
        "description": format!("A JSON merge patch of {body}: the fields to change; null removes an optional field"),
        "properties": props,
        // Removing a member the object does not have changes nothing.
        "additionalProperties": { "type": "null" },
    })
}

/// Build the whole document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for op in operations() {
        let Op {
            method,
            path,
            mut body,
            parameters,
        } = op;
        if !parameters.is_empty() {
            body.insert("parameters".into(), Value::Array(parameters));
        }
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[method] = Value::Object(body);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "lockgate API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Management API of lockgate: the lock data model of an offline electromechanical locking system. Errors are RFC 9457 problem documents (application/problem+json).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "API token from `lockgate init`, the first `serve`, or POST /api/v1/tokens",
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap_or("");
            assert!(schemas.contains_key(name), "unresolved $ref {name}");
        }
        assert!(doc["paths"]["/api/v1/keys/{id}"]["patch"].is_object());
    }

    #[test]
    fn stored_objects_carry_the_envelope() {
        let doc = document();
        let key = &doc["components"]["schemas"]["StoredKey"];
        assert_eq!(key["additionalProperties"], false);
        for (f, _) in ENVELOPE {
            assert!(key["properties"][f].is_object(), "{f}");
            assert!(
                key["required"]
                    .as_array()
                    .is_some_and(|r| r.contains(&json!(f))),
                "{f} required"
            );
        }
        assert!(key["properties"]["marking"].is_object());
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for op in operations() {
            let id = op.body["operationId"].as_str().unwrap_or("").to_string();
            assert!(seen.insert(id.clone()), "operationId {id} twice");
        }
    }
}
