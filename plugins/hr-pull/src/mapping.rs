//! One item of a page (a JSON object, or a SOAP item element converted to one) to a
//! person: the `fields` mapping, `active`, and the change marker the watermark follows.

use lockgate_plugin_sdk::Person;
use serde_json::Value;

use crate::config::{Config, OPTIONAL_FIELDS, WatermarkSource};
use crate::page::{lookup, scalar};

/// A mapped item.
#[derive(Debug, Clone)]
pub struct Mapped {
    pub person: Person,
    /// The item's change marker (`changed_field`), when configured and present.
    pub changed: Option<String>,
}

/// Maps one item. A required field that is absent, null or empty becomes an empty value,
/// which the core's validation reports per `on_invalid` (the entry is never dropped here);
/// `Err` is an item the plugin cannot read at all: not an object, or a mapped field holding
/// an array or an object.
pub fn person(cfg: &Config, item: &Value) -> Result<Mapped, String> {
    if !item.is_object() {
        let found = match item {
            Value::Array(_) => "an array",
            Value::String(_) => "a string",
            Value::Number(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::Null => "null",
            Value::Object(_) => "an object",
        };
        return Err(format!("the item is {found}, not an object"));
    }
    let text = |field: &str, path: &[String]| -> Result<Option<String>, String> {
        match lookup(item, path) {
            None => Ok(None),
            Some(v) => scalar(v).map_err(|found| {
                format!(
                    "field `{field}` (source `{}`) must be a string, number or boolean, found {found}",
                    path.join(".")
                )
            }),
        }
    };
    let mut identifier = String::new();
    let mut first_name = String::new();
    let mut surname = String::new();
    let mut fields = Vec::new();
    for (field, path) in &cfg.fields {
        let value = text(field, path)?.unwrap_or_default();
        match field.as_str() {
            "identifier" => identifier = value,
            "first_name" => first_name = value,
            "surname" => surname = value,
            other if OPTIONAL_FIELDS.contains(&other) && !value.is_empty() => {
                fields.push((other.to_owned(), value));
            }
            _ => {}
        }
    }
    let active = match &cfg.active_field {
        None => true,
        Some(path) => match text("active", path)? {
            None => true,
            Some(v) => cfg.active_values.contains(&v.to_lowercase()),
        },
    };
    let changed = match &cfg.watermark {
        Some(WatermarkSource::ItemField(path)) => {
            text("changed_field", path)?.filter(|v| !v.is_empty())
        }
        _ => None,
    };
    Ok(Mapped {
        person: Person {
            identifier,
            first_name,
            surname,
            fields,
            active,
        },
        changed,
    })
}

/// The item's identifier for messages, when it has a readable one.
pub fn identifier_of(cfg: &Config, item: &Value) -> Option<String> {
    let path = &cfg.fields.iter().find(|(f, _)| f == "identifier")?.1;
    scalar(lookup(item, path)?)
        .ok()
        .flatten()
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(64).collect())
}

/// Whether change marker `a` is later than `b`: digit strings compare as numbers, anything
/// else as text (ISO 8601 timestamps of one format order correctly as text).
pub fn later(a: &str, b: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if digits(a) && digits(b) {
        let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
        return (a.len(), a) > (b.len(), b);
    }
    a > b
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(extra: &str) -> Config {
        Config::parse(&format!(
            r#"{{"url":"http://h/e","fields":{{"identifier":"id","first_name":"name.first","surname":"name.last","email":"mail","phone":"phones.0"}}{extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn items_map_to_persons() {
        let c =
            cfg(r#","active_field":"status","active_values":["Active"],"changed_field":"changed""#);
        let m = person(
            &c,
            &json!({"id": 17, "name": {"first": " Ada ", "last": "Lovelace"}, "mail": "", "phones": ["+41 1"], "status": "ACTIVE", "changed": "2026-01-02T00:00:00Z"}),
        )
        .unwrap();
        assert_eq!(m.person.identifier, "17", "numbers are read as text");
        assert_eq!(m.person.first_name, "Ada");
        assert_eq!(
            m.person.fields,
            [("phone".to_owned(), "+41 1".to_owned())],
            "empty values are left out"
        );
        assert!(m.person.active, "active values compare case-insensitively");
        assert_eq!(m.changed.as_deref(), Some("2026-01-02T00:00:00Z"));
        let left = person(&c, &json!({"id": "x", "status": "left"})).unwrap();
        assert!(!left.person.active);
        assert_eq!(
            left.person.first_name, "",
            "a missing required field is left for the core to report"
        );
        let no_status = person(&c, &json!({"id": "y"})).unwrap();
        assert!(no_status.person.active, "a missing status counts as active");
    }

    #[test]
    fn unreadable_items_name_the_field_and_the_rule() {
        let c = cfg("");
        assert_eq!(
            person(&c, &json!({"id": "x", "mail": {"a": 1}})).unwrap_err(),
            "field `email` (source `mail`) must be a string, number or boolean, found an object"
        );
        assert_eq!(
            person(&c, &json!([1])).unwrap_err(),
            "the item is an array, not an object"
        );
        assert_eq!(
            identifier_of(&c, &json!({"id": " E1 "})).as_deref(),
            Some("E1")
        );
        assert_eq!(identifier_of(&c, &json!({"id": {}})), None);
    }

    #[test]
    fn markers_compare_as_numbers_or_text() {
        assert!(later("10", "9"));
        assert!(!later("009", "10"));
        assert!(later("2026-01-02T00:00:00Z", "2026-01-01T23:59:59Z"));
        assert!(!later("a", "b"));
    }
}
