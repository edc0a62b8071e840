//! SCIM 2.0 protocol (RFC 7643, RFC 7644) over JSON resources: the schemas lockgate serves,
//! filter expressions, PATCH operations, `attributes` / `excludedAttributes` projection and
//! sorting. Pure: no I/O, no HTTP; `lockgate-api` mounts it under `/scim/v2`.

pub mod filter;
pub mod patch;
pub mod project;
pub mod schema;

use serde::Serialize;

/// URN of SCIM error responses (RFC 7644 §3.12).
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// URN of list responses.
pub const LIST_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// URN of PATCH requests.
pub const PATCH_OP_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// URN of search requests (`POST /.search`).
pub const SEARCH_REQUEST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// Longest filter expression, characters.
pub const MAX_FILTER_CHARS: usize = 4096;
/// Deepest nesting of a filter (parentheses, `not`, value filters).
pub const MAX_FILTER_DEPTH: usize = 16;
/// Most operations one PATCH request carries.
pub const MAX_PATCH_OPERATIONS: usize = 1000;
/// Deepest nesting of a JSON request body.
pub const MAX_JSON_DEPTH: usize = 16;

/// The `scimType` of a 400 error (RFC 7644 §3.12, table 9), plus 409 `uniqueness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
}

/// A SCIM error: HTTP status, optional `scimType` and a detail naming the attribute or rule.
/// One error type at this crate's boundary; `lockgate-api` renders it as the SCIM error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<ScimType>,
    pub detail: String,
}

impl ScimError {
    /// A 400 with its `scimType`.
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self {
            status: 400,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    pub fn status(status: u16, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// The SCIM error body (RFC 7644 §3.12): `status` is a string there.
    pub fn body(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "schemas": [ERROR_URN],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            v["scimType"] = serde_json::to_value(t).unwrap_or_default();
        }
        v
    }
}

pub type Result<T, E = ScimError> = std::result::Result<T, E>;

/// Whether a JSON value nests deeper than `max` (arrays and objects).
pub fn too_deep(v: &serde_json::Value, max: usize) -> bool {
    match v {
        serde_json::Value::Array(a) => max == 0 || a.iter().any(|x| too_deep(x, max - 1)),
        serde_json::Value::Object(o) => max == 0 || o.values().any(|x| too_deep(x, max - 1)),
        _ => false,
    }
}
