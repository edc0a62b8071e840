//! SCIM users and groups to lockgate: a user's attributes become an employee's fields (the
//! table in docs/connectors/scim.md), a group becomes the tag on its members; every refusal
//! names the SCIM attribute.

use lockgate_model::person::Person;
use lockgate_scim::{
    ScimError, ScimType,
    schema::{ENTERPRISE_USER_URN, ResourceType, USER_URN},
};
use lockgate_store::scim::{ScimGroupWrite, ScimUserWrite};
use serde_json::{Map, Value};

/// Longest `userName`, `externalId` or group `displayName` kept, characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest first name or surname of an employee (the model's limit).
const MAX_PERSON_NAME: usize = 49;
/// Most members one group lists.
pub const MAX_MEMBERS: usize = 20_000;
/// Most values of a user's multi-valued attribute (`emails`, `phoneNumbers`, `addresses`).
pub const MAX_VALUES: usize = 100;
/// Largest stored user, bytes of JSON (lists and searches hold many at once).
pub const MAX_USER_BYTES: usize = 64 * 1024;

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidValue, detail)
}

/// The SCIM attribute an employee field comes from (for error messages).
pub fn scim_attribute_of(person_field: &str) -> String {
    let base = person_field
        .split(['.', '['])
        .next()
        .unwrap_or(person_field);
    match base {
        "identifier" | "marking" => format!("{ENTERPRISE_USER_URN}:employeeNumber"),
        "first_name" => "name.givenName".into(),
        "surname" => "name.familyName".into(),
        "title" => "name.honorificPrefix".into(),
        "job" => "title".into(),
        "email" => "emails".into(),
        "phone" | "mobile_phone" => "phoneNumbers".into(),
        "organisation" => format!("{ENTERPRISE_USER_URN}:organization"),
        "department" => format!("{ENTERPRISE_USER_URN}:department"),
        "street" => "addresses.streetAddress".into(),
        "postcode" => "addresses.postalCode".into(),
        "city" => "addresses.locality".into(),
        "state" => "addresses.region".into(),
        "country" => "addresses.country".into(),
        "language" => "preferredLanguage".into(),
        "tags" => "displayName".into(),
        other => other.into(),
    }
}

/// Member `name` of an object, case-insensitively (RFC 7643 §2.1).
pub fn member<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    o.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn text(o: &Map<String, Value>, name: &str, path: &str) -> Result<Option<String>, ScimError> {
    match member(o, name) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(invalid(format!("{path}: must be a string"))),
    }
}

fn object<'a>(
    o: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, ScimError> {
    match member(o, name) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(invalid(format!("{path}: must be an object"))),
    }
}

/// The element of a multi-valued attribute that counts: the primary one, else the first
/// with one of `types` (in that order), else the first.
fn pick<'a>(
    o: &'a Map<String, Value>,
    name: &str,
    types: &[&str],
    exclude: &[&str],
) -> Result<Option<&'a Map<String, Value>>, ScimError> {
    let items = match member(o, name) {
        None => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid(format!("{name}: must be an array"))),
    };
    let mut elems = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        match v {
            Value::Object(m) => elems.push(m),
            _ => return Err(invalid(format!("{name}[{i}]: must be an object"))),
        }
    }
    let type_of = |m: &Map<String, Value>| {
        member(m, "type")
            .and_then(Value::as_str)
            .map(str::to_lowercase)
            .unwrap_or_default()
    };
    let usable: Vec<&Map<String, Value>> = elems
        .into_iter()
        .filter(|m| !exclude.contains(&type_of(m).as_str()))
        .collect();
    if let Some(p) = usable
        .iter()
        .find(|m| member(m, "primary").and_then(Value::as_bool) == Some(true))
    {
        return Ok(Some(p));
    }
    for t in types {
        if let Some(m) = usable.iter().find(|m| type_of(m) == *t) {
            return Ok(Some(m));
        }
    }
    Ok(usable.first().copied())
}

fn limit(path: &str, s: &str, max: usize) -> Result<(), ScimError> {
    if s.chars().count() > max {
        Err(invalid(format!("{path}: at most {max} characters")))
    } else {
        Ok(())
    }
}

/// A name part from the given value, else from a fallback (a word of the display name or the
/// user name), cut to the model's length.
fn name_part(given: Option<String>, fallback: &str) -> String {
    given.unwrap_or_else(|| fallback.chars().take(MAX_PERSON_NAME).collect())
}

/// The boolean `active`, accepting the strings "true" / "false" some clients send.
fn active(o: &Map<String, Value>) -> Result<bool, ScimError> {
    match member(o, "active") {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(invalid("active: must be a boolean")),
    }
}

/// Check `schemas` and keep only what the resource type defines (common `externalId`, the
/// core attributes, the extensions listed in `schemas`); `id` and `meta` are the server's
/// and are dropped (RFC 7644 §3.3: read-only attributes a client sends are ignored).
pub fn normalise(body: Value, rt: &ResourceType) -> Result<Value, ScimError> {
    let Value::Object(o) = body else {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            "the request body must be a JSON object",
        ));
    };
    let schemas: Vec<String> = match member(&o, "schemas") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid("schemas: must be an array of URNs"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(invalid(format!(
                "schemas: required, and must list '{}'",
                rt.schema.id
            )));
        }
    };
    if !schemas.iter().any(|s| s.eq_ignore_ascii_case(rt.schema.id)) {
        return Err(invalid(format!("schemas: must list '{}'", rt.schema.id)));
    }
    for s in &schemas {
        if !rt.schema_urns().any(|u| u.eq_ignore_ascii_case(s)) {
            return Err(invalid(format!(
                "schemas: '{s}' is not a schema of {} resources",
                rt.name
            )));
        }
    }
    let mut out = Map::new();
    out.insert(
        "schemas".into(),
        Value::Array(schemas.iter().map(|s| Value::String(s.clone())).collect()),
    );
    let mut seen = std::collections::HashSet::new();
    for (k, v) in o {
        if k.eq_ignore_ascii_case("schemas") || v.is_null() {
            continue;
        }
        // Attribute names are case-insensitive: one spelling per attribute.
        if !seen.insert(k.to_lowercase()) {
            return Err(invalid(format!(
                "{k}: given twice (attribute names are case-insensitive)"
            )));
        }
        if rt.schema.id == USER_URN
            && let Some(a) = v.as_array()
            && a.len() > MAX_VALUES
        {
            return Err(invalid(format!("{k}: at most {MAX_VALUES} values")));
        }
        if k.eq_ignore_ascii_case("externalId") {
            if !v.is_string() {
                return Err(invalid("externalId: must be a string"));
            }
            out.insert(k, v);
        } else if rt.schema.attribute(&k).is_some() {
            out.insert(k, v);
        } else if let Some(ext) = rt.extension(&k) {
            if !schemas.iter().any(|s| s.eq_ignore_ascii_case(ext.id)) {
                return Err(invalid(format!(
                    "{k}: the extension is not listed in schemas"
                )));
            }
            if !v.is_object() {
                return Err(invalid(format!("{k}: must be an object")));
            }
            out.insert(k, v);
        }
        // id, meta and attributes no schema of the type defines are not kept.
    }
    let out = Value::Object(out);
    if rt.schema.id == USER_URN && out.to_string().len() > MAX_USER_BYTES {
        return Err(invalid(format!(
            "the user is larger than {MAX_USER_BYTES} bytes of JSON"
        )));
    }
    Ok(out)
}

/// A normalised user as the employee it maintains.
pub fn user_write(body: Value) -> Result<ScimUserWrite, ScimError> {
    let Value::Object(o) = &body else {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            "a user must be an object",
        ));
    };
    let user_name =
        text(o, "userName", "userName")?.ok_or_else(|| invalid("userName: required"))?;
    limit("userName", &user_name, MAX_NAME_CHARS)?;
    let external_id = text(o, "externalId", "externalId")?;
    if let Some(e) = &external_id {
        limit("externalId", e, MAX_NAME_CHARS)?;
    }
    let name = object(o, "name", "name")?;
    let given = match name {
        Some(n) => text(n, "givenName", "name.givenName")?,
        None => None,
    };
    let family = match name {
        Some(n) => text(n, "familyName", "name.familyName")?,
        None => None,
    };
    let prefix = match name {
        Some(n) => text(n, "honorificPrefix", "name.honorificPrefix")?,
        None => None,
    };
    // Without a given or family name, the display name's words (else the user name) stand in:
    // an employee always has both.
    let display = text(o, "displayName", "displayName")?.unwrap_or_else(|| user_name.clone());
    let (first_word, last_word) = match display.rsplit_once(' ') {
        Some((a, b)) => (a.trim().to_string(), b.trim().to_string()),
        None => (display.clone(), display.clone()),
    };
    let ext = match member(o, ENTERPRISE_USER_URN) {
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(invalid(format!("{ENTERPRISE_USER_URN}: must be an object"))),
        None => None,
    };
    let ext_text = |name: &str| -> Result<Option<String>, ScimError> {
        match ext {
            Some(m) => text(m, name, &format!("{ENTERPRISE_USER_URN}:{name}")),
            None => Ok(None),
        }
    };
    let email = pick(o, "emails", &["work"], &[])?
        .map(|m| text(m, "value", "emails.value"))
        .transpose()?
        .flatten();
    let phone = pick(o, "phoneNumbers", &["work"], &["mobile"])?
        .map(|m| text(m, "value", "phoneNumbers.value"))
        .transpose()?
        .flatten();
    let mobile = match member(o, "phoneNumbers").and_then(Value::as_array) {
        Some(a) => a
            .iter()
            .filter_map(Value::as_object)
            .find(|m| {
                member(m, "type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("mobile"))
            })
            .map(|m| text(m, "value", "phoneNumbers.value"))
            .transpose()?
            .flatten(),
        None => None,
    };
    let address = pick(o, "addresses", &["work"], &[])?;
    let addr = |name: &str| -> Result<Option<String>, ScimError> {
        match address {
            Some(m) => text(m, name, &format!("addresses.{name}")),
            None => Ok(None),
        }
    };
    let person = Person {
        identifier: ext_text("employeeNumber")?,
        title: prefix,
        first_name: name_part(given, &first_word),
        surname: name_part(family, &last_word),
        email,
        phone,
        mobile_phone: mobile,
        organisation: ext_text("organization")?,
        department: ext_text("department")?,
        street: addr("streetAddress")?,
        postcode: addr("postalCode")?,
        language: text(o, "preferredLanguage", "preferredLanguage")?,
        job: text(o, "title", "title")?,
        city: addr("locality")?,
        state: addr("region")?,
        country: addr("country")?,
        ..Person::default()
    };
    let errors = person.validate_fields(false);
    if let Some(e) = errors.errors.first() {
        return Err(invalid(format!(
            "{}: {}",
            scim_attribute_of(&e.field),
            e.message
        )));
    }
    Ok(ScimUserWrite {
        active: active(o)?,
        body,
        user_name,
        external_id,
        person,
    })
}

/// A normalised group: its name (the tag) and its members' ids.
pub fn group_write(body: Value) -> Result<ScimGroupWrite, ScimError> {
    let Value::Object(o) = &body else {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            "a group must be an object",
        ));
    };
    let display_name =
        text(o, "displayName", "displayName")?.ok_or_else(|| invalid("displayName: required"))?;
    // The name is the tag on the members' employees: a tag's length.
    limit("displayName", &display_name, 50)?;
    let external_id = text(o, "externalId", "externalId")?;
    if let Some(e) = &external_id {
        limit("externalId", e, MAX_NAME_CHARS)?;
    }
    let mut member_ids: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    match member(o, "members") {
        None => {}
        Some(Value::Array(a)) => {
            if a.len() > MAX_MEMBERS {
                return Err(invalid(format!("members: at most {MAX_MEMBERS}")));
            }
            for (i, m) in a.iter().enumerate() {
                let Value::Object(m) = m else {
                    return Err(invalid(format!("members[{i}]: must be an object")));
                };
                if let Some(t) = text(m, "type", &format!("members[{i}].type"))?
                    && !t.eq_ignore_ascii_case("User")
                {
                    return Err(invalid(format!(
                        "members[{i}].type: only users are members of groups here, not '{t}'"
                    )));
                }
                let v = text(m, "value", &format!("members[{i}].value"))?
                    .ok_or_else(|| invalid(format!("members[{i}].value: required")))?;
                if seen.insert(v.clone()) {
                    member_ids.push(v);
                }
            }
        }
        Some(_) => return Err(invalid("members: must be an array")),
    }
    Ok(ScimGroupWrite {
        body,
        display_name,
        external_id,
        member_ids,
    })
}
