//! Events: the record of every administrative change, per object.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::common::ObjectId;

/// One administrative change recorded on one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub id: ObjectId,
    pub at: DateTime<Utc>,
    /// C-key of the administrator who made the change (absent for system actions).
    pub actor_id: Option<ObjectId>,
    /// Name of the actor at the time; "N/A" after the actor was deleted permanently.
    pub actor: String,
    /// What happened, e.g. `created`, `updated`, `deleted`, `deactivated`, `imported`.
    pub action: String,
    pub object_kind: String,
    pub object_id: Option<ObjectId>,
    /// Label of the object at the time; "N/A" once a person is deleted permanently or deactivated.
    pub object_label: String,
    /// Changed fields: `{ "field": { "from": ..., "to": ... } }`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub changes: serde_json::Value,
    /// Events written by one operation share this id.
    pub correlation_id: String,
}

/// Field-level difference between two JSON documents (top-level fields).
pub fn diff(
    before: Option<&serde_json::Value>,
    after: Option<&serde_json::Value>,
) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let empty = Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.and_then(Value::as_object).unwrap_or(&empty);
    let mut out = Map::new();
    let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    for k in keys {
        let (x, y) = (b.get(k), a.get(k));
        if x != y {
            out.insert(k.clone(), json!({ "from": x, "to": y }));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_lists_changed_fields_only() {
        let d = diff(
            Some(&json!({"a": 1, "b": 2})),
            Some(&json!({"a": 1, "b": 3, "c": true})),
        );
        assert_eq!(
            d,
            json!({"b": {"from": 2, "to": 3}, "c": {"from": null, "to": true}})
        );
        assert_eq!(diff(None, None), json!({}));
    }
}
