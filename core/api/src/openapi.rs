//! The OpenAPI 3 document, generated from the same kind registry the router is built from
//! and from the `ToSchema` derives on the model types.

use lockgate_model::ObjectKind;
use utoipa::{
    ToSchema,
    openapi::{
        ComponentsBuilder, Content, HttpMethod, InfoBuilder, OpenApi, OpenApiBuilder, PathItem,
        PathsBuilder, Ref, RefOr, Required, ResponseBuilder, Schema,
        path::{OperationBuilder, ParameterBuilder, ParameterIn},
        request_body::RequestBodyBuilder,
        schema::{AllOfBuilder, ArrayBuilder, ObjectBuilder, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};

use crate::problem::{PROBLEM_JSON, Problem};

/// Register a schema and everything it refers to.
fn add<T: ToSchema>(c: ComponentsBuilder) -> ComponentsBuilder {
    let mut deps = Vec::new();
    T::schemas(&mut deps);
    c.schema_from::<T>().schemas_from_iter(deps)
}

fn json(schema: impl Into<RefOr<Schema>>) -> Content {
    Content::new(Some(schema))
}

fn problem_response(desc: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(desc)
        .content(PROBLEM_JSON, json(Ref::from_schema_name("Problem")))
        .build()
        .into()
}

fn query(name: &str, ty: Type, desc: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(desc))
        .schema(Some(ObjectBuilder::new().schema_type(ty)))
        .build()
}

fn id_param() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        ))
        .build()
}

fn if_match() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("If-Match")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "ETag (version) the change is based on; 412 when the object moved on",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

fn op(id: String, tag: &str, summary: String) -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some(id))
        .tag(tag)
        .summary(Some(summary))
        .security(SecurityRequirement::new::<&str, [&str; 0], &str>(
            "bearer",
            [],
        ))
        .response("400", problem_response("Malformed request"))
        .response("401", problem_response("Missing or invalid token"))
        .response(
            "403",
            problem_response("Permission missing (names the function and level)"),
        )
}

fn pascal(s: &str) -> String {
    s.split(['_', '-'])
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn object_schema(body: &str) -> Schema {
    AllOfBuilder::new()
        .item(Ref::from_schema_name("Envelope"))
        .item(Ref::from_schema_name(body))
        .into()
}

/// Paths of one collection.
fn collection_paths(paths: PathsBuilder, kind: ObjectKind, body: &str) -> PathsBuilder {
    let tag = kind.collection();
    let name = pascal(kind.as_str());
    let base = format!("/api/v1/{}", kind.collection());
    let page = ObjectBuilder::new()
        .property(
            "items",
            ArrayBuilder::new().items(Ref::from_schema_name("Summary")),
        )
        .property("total", ObjectBuilder::new().schema_type(Type::Integer))
        .property("offset", ObjectBuilder::new().schema_type(Type::Integer))
        .property("limit", ObjectBuilder::new().schema_type(Type::Integer))
        .property("hidden", Ref::from_schema_name("HiddenCounts"));
    let search = op(
        format!("search{name}s"),
        tag,
        format!("Search {}", kind.collection()),
    )
    .parameters(Some([
        query("q", Type::String, "Name or marking prefix; * is a wildcard"),
        query("tag", Type::String, "Tag (repeatable; all must match)"),
        query("domain_id", Type::Integer, "Domain"),
        query(
            "status",
            Type::String,
            "Status (comma-separated or repeated); shows hidden statuses too",
        ),
        query("type", Type::String, "Type"),
        query(
            "include_hidden",
            Type::Boolean,
            "Include lost/broken keys and inactive persons",
        ),
        query(
            "with_body",
            Type::Boolean,
            "Return full objects (needs View)",
        ),
        query(
            "sort",
            Type::String,
            "name, marking, id or updated_at; prefix - for descending",
        ),
        query("limit", Type::Integer, "1–1000, default 50"),
        query("offset", Type::Integer, "Rows to skip"),
    ]))
    .response(
        "200",
        ResponseBuilder::new()
            .description("One page")
            .content("application/json", json(page))
            .build(),
    );
    let create = op(
        format!("create{name}"),
        tag,
        format!("Create a {}", kind.as_str().replace('_', " ")),
    )
    .request_body(Some(
        RequestBodyBuilder::new()
            .required(Some(Required::True))
            .content("application/json", json(Ref::from_schema_name(body)))
            .build(),
    ))
    .response(
        "201",
        ResponseBuilder::new()
            .description("Created")
            .content("application/json", json(object_schema(body)))
            .build(),
    )
    .response(
        "409",
        problem_response("Duplicate marking, identifier or name"),
    )
    .response(
        "422",
        problem_response("Invalid field (named in errors[].field)"),
    );
    let read = op(
        format!("get{name}"),
        tag,
        format!("Read a {}", kind.as_str().replace('_', " ")),
    )
    .parameter(id_param())
    .response(
        "200",
        ResponseBuilder::new()
            .description("The object; ETag carries its version")
            .content("application/json", json(object_schema(body)))
            .build(),
    )
    .response("404", problem_response("No such object in your domains"));
    let patch = op(
        format!("patch{name}"),
        tag,
        format!(
            "Change a {} (JSON merge patch)",
            kind.as_str().replace('_', " ")
        ),
    )
    .parameter(id_param())
    .parameter(if_match())
    .request_body(Some(
        RequestBodyBuilder::new()
            .required(Some(Required::True))
            .content("application/merge-patch+json", json(ObjectBuilder::new()))
            .build(),
    ))
    .response(
        "200",
        ResponseBuilder::new()
            .description("Changed")
            .content("application/json", json(object_schema(body)))
            .build(),
    )
    .response("404", problem_response("No such object in your domains"))
    .response("409", problem_response("Conflict or rule violation"))
    .response("412", problem_response("Version mismatch"))
    .response("422", problem_response("Invalid field"));
    let delete = op(
        format!("delete{name}"),
        tag,
        format!("Delete a {}", kind.as_str().replace('_', " ")),
    )
    .parameter(id_param())
    .parameter(if_match())
    .response("204", ResponseBuilder::new().description("Deleted").build())
    .response("404", problem_response("No such object in your domains"))
    .response("409", problem_response("Still in use"));
    let events = op(
        format!("events{name}"),
        tag,
        "Events recorded on the object, newest first".into(),
    )
    .parameter(id_param())
    .parameter(query("limit", Type::Integer, "1–1000, default 100"))
    .parameter(query(
        "before_id",
        Type::Integer,
        "Page backwards from this event id",
    ))
    .response(
        "200",
        ResponseBuilder::new()
            .description("Events")
            .content(
                "application/json",
                json(ObjectBuilder::new().property(
                    "items",
                    ArrayBuilder::new().items(Ref::from_schema_name("Event")),
                )),
            )
            .build(),
    );
    let mut coll = PathItem::new(HttpMethod::Get, search);
    coll.post = Some(create.build());
    let mut item = PathItem::new(HttpMethod::Get, read);
    item.patch = Some(patch.build());
    item.delete = Some(delete.build());
    paths
        .path(&base, coll)
        .path(format!("{base}/{{id}}"), item)
        .path(
            format!("{base}/{{id}}/events"),
            PathItem::new(HttpMethod::Get, events),
        )
}

fn simple(
    paths: PathsBuilder,
    path: &str,
    method: HttpMethod,
    id: &str,
    tag: &str,
    summary: &str,
    req: Option<(&str, RefOr<Schema>)>,
    ok: (&str, &str),
) -> PathsBuilder {
    let mut b = op(id.into(), tag, summary.into())
        .response(ok.0, ResponseBuilder::new().description(ok.1).build());
    if let Some((ct, schema)) = req {
        b = b.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(ct, Content::new(Some(schema)))
                .build(),
        ));
        b = b.response("422", problem_response("Invalid input"));
    }
    paths.path(path, PathItem::new(method, b))
}

/// Build the whole document.
pub fn document() -> OpenApi {
    use lockgate_model::{
        access_profile::*, ckey::*, common::ExternalLink, cylinder::*, domain::Domain,
        event::Event, key::*, key_group::*, permission::*, person::*, remote_pd::*, schedule::*,
        system::*, validation::FieldError,
    };
    let mut c = ComponentsBuilder::new();
    c = add::<Domain>(c);
    c = add::<Person>(c);
    c = add::<Key>(c);
    c = add::<CKey>(c);
    c = add::<KeyGroup>(c);
    c = add::<Cylinder>(c);
    c = add::<CylinderGroup>(c);
    c = add::<AccessProfile>(c);
    c = add::<TemporaryAccessGroup>(c);
    c = add::<ScheduleTemplate>(c);
    c = add::<RemotePd>(c);
    c = add::<Role>(c);
    c = add::<Event>(c);
    c = add::<LockingSystem>(c);
    c = add::<SystemSettings>(c);
    c = add::<FieldError>(c);
    c = add::<ExternalLink>(c);
    c = add::<Problem>(c);
    c = add::<crate::admin::NewToken>(c);
    c = add::<crate::background::Requeue>(c);
    c = add::<crate::admin::BulkTags>(c);
    c = add::<crate::admin::BulkDomain>(c);
    c = add::<crate::admin::BulkValidity>(c);
    c = add::<ObjectKind>(c);
    let int = || ObjectBuilder::new().schema_type(Type::Integer);
    let text = || ObjectBuilder::new().schema_type(Type::String);
    c = c.schema(
        "Envelope",
        ObjectBuilder::new()
            .property("id", int())
            .property("version", int())
            .property(
                "created_at",
                text().format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::DateTime,
                ))),
            )
            .property(
                "updated_at",
                text().format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::DateTime,
                ))),
            )
            .required("id")
            .required("version"),
    );
    c = c.schema(
        "Summary",
        ObjectBuilder::new()
            .property("id", int())
            .property("kind", Ref::from_schema_name("ObjectKind"))
            .property("name", text())
            .property("marking", text())
            .property("status", text())
            .property("type", text())
            .property("domain_id", int())
            .property("version", int())
            .property("updated_at", text())
            .property("body", ObjectBuilder::new()),
    );
    c = c.schema(
        "HiddenCounts",
        ObjectBuilder::new()
            .property("by_status", int())
            .property("outside_domains", int()),
    );
    c = c.security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "API token from `lockgate init` or POST /api/v1/tokens",
                ))
                .build(),
        ),
    );

    let mut p = PathsBuilder::new();
    let kinds: [(ObjectKind, &str); 13] = [
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
    for (kind, body) in kinds {
        p = collection_paths(p, kind, body);
    }
    for coll in ["employees", "visitors"] {
        for (opn, summary) in [
            (
                "deactivate",
                "Deactivate (hidden, N/A; needs key-holder deactivate)",
            ),
            ("reactivate", "Reactivate a deactivated person"),
            ("restore", "Restore a person marked as deleted"),
        ] {
            p = simple(
                p,
                &format!("/api/v1/{coll}/{{id}}/{opn}"),
                HttpMethod::Post,
                &format!("{opn}{}", pascal(coll)),
                coll,
                summary,
                None,
                ("200", "The person"),
            );
        }
    }
    let csv = || RefOr::T(Schema::from(ObjectBuilder::new().schema_type(Type::String)));
    p = simple(
        p,
        "/api/v1/employees/import",
        HttpMethod::Post,
        "importEmployees",
        "employees",
        "Import employees from CSV (?dry_run=true reports without writing)",
        Some(("text/csv", csv())),
        (
            "201",
            "Import report: created, updated, unchanged, skipped and invalid rows with line numbers",
        ),
    );
    p = simple(
        p,
        "/api/v1/employees/export",
        HttpMethod::Get,
        "exportEmployees",
        "employees",
        "Export employees as CSV (?delimiter=comma|semicolon), with a Tags column",
        None,
        ("200", "text/csv"),
    );
    p = simple(
        p,
        "/api/v1/system",
        HttpMethod::Get,
        "getSystem",
        "system",
        "The locking system and its settings",
        None,
        ("200", "LockingSystem"),
    );
    p = simple(
        p,
        "/api/v1/system/settings",
        HttpMethod::Patch,
        "patchSettings",
        "system",
        "Change settings (merge patch)",
        Some((
            "application/merge-patch+json",
            Ref::from_schema_name("SystemSettings").into(),
        )),
        ("200", "LockingSystem"),
    );
    p = simple(
        p,
        "/api/v1/me",
        HttpMethod::Get,
        "me",
        "system",
        "The caller: C-key, effective permissions, domains",
        None,
        ("200", "Caller"),
    );
    let mut tokens = PathItem::new(
        HttpMethod::Get,
        op(
            "listTokens".into(),
            "tokens",
            "List API tokens (never their secrets)".into(),
        )
        .response("200", ResponseBuilder::new().description("Tokens").build()),
    );
    tokens.post = Some(
        op(
            "createToken".into(),
            "tokens",
            "Issue a token (secret shown once)".into(),
        )
        .request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", json(Ref::from_schema_name("NewToken")))
                .build(),
        ))
        .response(
            "201",
            ResponseBuilder::new()
                .description("The secret and its info")
                .build(),
        )
        .build(),
    );
    p = p.path("/api/v1/tokens", tokens);
    p = simple(
        p,
        "/api/v1/tokens/{id}",
        HttpMethod::Delete,
        "revokeToken",
        "tokens",
        "Revoke a token",
        None,
        ("204", "Revoked"),
    );
    p = simple(
        p,
        "/api/v1/bulk/tags",
        HttpMethod::Post,
        "bulkTags",
        "bulk",
        "Add/remove tags on many objects (all or nothing)",
        Some(("application/json", Ref::from_schema_name("BulkTags").into())),
        ("200", "Count updated"),
    );
    p = simple(
        p,
        "/api/v1/bulk/domain",
        HttpMethod::Post,
        "bulkDomain",
        "bulk",
        "Move many objects to a domain (all or nothing)",
        Some((
            "application/json",
            Ref::from_schema_name("BulkDomain").into(),
        )),
        ("200", "Count updated"),
    );
    p = simple(
        p,
        "/api/v1/bulk/key-validity",
        HttpMethod::Post,
        "bulkKeyValidity",
        "bulk",
        "Set the validity of many keys (all or nothing)",
        Some((
            "application/json",
            Ref::from_schema_name("BulkValidity").into(),
        )),
        ("200", "Count updated"),
    );

    p = simple(
        p,
        "/api/v1/jobs",
        HttpMethod::Get,
        "listJobs",
        "jobs",
        "Remote update and cylinder programming jobs (?target_id=&open=true&limit=)",
        None,
        ("200", "Jobs, newest first"),
    );
    p = simple(
        p,
        "/api/v1/jobs/{id}/confirm",
        HttpMethod::Post,
        "confirmJob",
        "jobs",
        "A device confirms a job: its program becomes the actual state",
        None,
        ("200", "The finished job"),
    );
    p = simple(
        p,
        "/api/v1/reconcile",
        HttpMethod::Post,
        "reconcile",
        "jobs",
        "Recompute the defined state and create, replace or cancel jobs",
        None,
        ("200", "What the run did"),
    );
    p = simple(
        p,
        "/api/v1/keys/{id}/update-status",
        HttpMethod::Get,
        "keyUpdateStatus",
        "keys",
        "Derived update status: up_to_date, update_required, re_edition_required, capacity_exceeded",
        None,
        ("200", "Status and the open job"),
    );
    p = simple(
        p,
        "/api/v1/keys/{id}/re-edited",
        HttpMethod::Post,
        "keyReEdited",
        "keys",
        "Record that a local PD re-edited the key (its structure and firmware are written)",
        None,
        ("200", "The key"),
    );

    // Licence (docs/licences.md).
    p = simple(
        p,
        "/api/v1/licence",
        HttpMethod::Get,
        "getLicence",
        "system",
        "The installed licence: payload, state (valid, soft_expired, hard_expired, missing, invalid) and available features",
        None,
        ("200", "Licence status"),
    );
    p = simple(
        p,
        "/api/v1/licence",
        HttpMethod::Put,
        "putLicence",
        "system",
        "Install a signed licence file (the body); verified against the configured trusted keys; only a higher number for this system installs (409 licence-not-newer)",
        Some(("application/json", csv())),
        ("200", "Licence status after installation"),
    );

    for (path, method, id, summary) in [
        (
            "/api/v1/keys/{id}/hand-out",
            HttpMethod::Post,
            "handOutKey",
            "Hand a key out (holder, dates, profiles, explicit access, validity, schedule)",
        ),
        (
            "/api/v1/keys/{id}/hand-in",
            HttpMethod::Post,
            "handInKey",
            "Take a key back",
        ),
        (
            "/api/v1/keys/{id}/lost",
            HttpMethod::Post,
            "reportKeyLost",
            "Report a key lost (block: all | installed | custom | none)",
        ),
        (
            "/api/v1/keys/{id}/found",
            HttpMethod::Post,
            "reportKeyFound",
            "A lost key is found: blocks reversed, unexecuted blocks cancelled",
        ),
        (
            "/api/v1/keys/{id}/copy-configuration",
            HttpMethod::Post,
            "copyKeyConfiguration",
            "Copy validity, schedule, access list and profiles to another key",
        ),
        (
            "/api/v1/keys/{id}/replace-with-clone",
            HttpMethod::Post,
            "replaceKeyWithClone",
            "Replace a broken key by its factory clone",
        ),
        (
            "/api/v1/keys/{id}/remove-redundant-authorisations",
            HttpMethod::Post,
            "removeRedundantAuthorisations",
            "Drop explicit entries also given by profiles",
        ),
        (
            "/api/v1/keys/{id}/accessible-cylinders",
            HttpMethod::Get,
            "accessibleCylinders",
            "Cylinders the key reaches: actual, defined, pending",
        ),
        (
            "/api/v1/keys/{id}/update-history",
            HttpMethod::Get,
            "keyUpdateHistory",
            "All jobs of the key",
        ),
        (
            "/api/v1/keys/overdue",
            HttpMethod::Get,
            "overdueKeys",
            "Handed-out keys past date in, validity or revalidation",
        ),
        (
            "/api/v1/cylinders/{id}/keys-with-access",
            HttpMethod::Get,
            "keysWithAccess",
            "Keys reaching the cylinder: actual, defined, pending",
        ),
        (
            "/api/v1/cylinders/{id}/access-profiles",
            HttpMethod::Get,
            "cylinderAccessProfiles",
            "Access profiles giving access to the cylinder",
        ),
        (
            "/api/v1/cylinders/{id}/remove-key-side-authorisations",
            HttpMethod::Post,
            "removeKeySideAuthorisations",
            "Remove the cylinder from every key, profile and temporary group",
        ),
        (
            "/api/v1/keys/{id}/receipt",
            HttpMethod::Get,
            "keyReceipt",
            "Hand-out receipt data: holder, key, dates, validity, profiles and cylinders",
        ),
        (
            "/api/v1/key-groups/{id}/schedule",
            HttpMethod::Post,
            "keyGroupSchedule",
            "One schedule (or template) for every quartz and dynamic key of the group",
        ),
        (
            "/api/v1/jobs/{id}/load",
            HttpMethod::Post,
            "loadJob",
            "Load a cylinder programming job on your C-key",
        ),
        (
            "/api/v1/jobs/{id}/carry",
            HttpMethod::Post,
            "carryJob",
            "Give a block job to a generation 2 dynamic user key that carries it to the cylinder",
        ),
        (
            "/api/v1/jobs/{id}/assign",
            HttpMethod::Post,
            "assignJob",
            "Prepare a job for another administrator's C-key",
        ),
        (
            "/api/v1/jobs/{id}/fail",
            HttpMethod::Post,
            "failJob",
            "Report a loaded job failed; it is recreated",
        ),
        (
            "/api/v1/jobs/{id}/approve",
            HttpMethod::Post,
            "approveAuditTrail",
            "An approver decides an audit-trail request",
        ),
        (
            "/api/v1/cylinders/{id}/reprogram",
            HttpMethod::Post,
            "requestReprogramming",
            "Request reprogramming: memory wiped, defined program restored",
        ),
        (
            "/api/v1/cylinders/{id}/audit-trail-request",
            HttpMethod::Post,
            "requestCylinderAuditTrail",
            "Request the cylinder's audit trail (waits for approval when approvals are on)",
        ),
        (
            "/api/v1/keys/{id}/audit-trail-request",
            HttpMethod::Post,
            "requestKeyAuditTrail",
            "Request a quartz or dynamic key's audit trail",
        ),
    ] {
        p = simple(
            p,
            path,
            method,
            id,
            "lifecycle",
            summary,
            None,
            ("200", "Result"),
        );
    }

    // Plugins (docs/plugins.md).
    p = simple(
        p,
        "/api/v1/plugins",
        HttpMethod::Get,
        "listPlugins",
        "plugins",
        "Every WebAssembly plugin: version, world, grants, state (enabled, disabled, refused, failed) with its reason, call counts, latencies and the last error with its cause chain",
        None,
        ("200", "Plugins by name"),
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
        p = simple(
            p,
            &format!("/api/v1/plugins/{{name}}/{action}"),
            HttpMethod::Post,
            id,
            "plugins",
            summary,
            None,
            ("200", "The plugin's status"),
        );
    }

    // The background runtime's dead letters (gateway-wide, like the plugins).
    p = simple(
        p,
        crate::background::DEAD_LETTERS_PATH,
        HttpMethod::Get,
        "listDeadLetters",
        "background",
        "Queue jobs that failed their last attempt and outbox messages given up on: source, id, kind or topic, attempts, last error, timestamps (query: source=queue|outbox, after, limit 1-500)",
        None,
        ("200", "Dead letters, oldest first"),
    );
    p = simple(
        p,
        "/api/v1/background/dead-letters/{id}/requeue",
        HttpMethod::Post,
        "requeueDeadLetter",
        "background",
        "Give a dead queue job or outbox message new attempts, due now; the body names the source",
        Some(("application/json", Ref::from_schema_name("Requeue").into())),
        ("200", "Requeued"),
    );

    OpenApiBuilder::new()
        .info(InfoBuilder::new().title("lockgate API").version(env!("CARGO_PKG_VERSION")).description(Some("Management API of lockgate: the lock data model of an offline electromechanical locking system. Errors are RFC 9457 problem documents.")).build())
        .paths(p.build())
        .components(Some(c.build()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_reference_resolves() {
        let doc = serde_json::to_value(document()).expect("serialises");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap_or("");
            assert!(schemas.contains_key(name), "unresolved $ref {name}");
        }
        assert!(doc["paths"]["/api/v1/keys/{id}"]["patch"].is_object());
    }
}
