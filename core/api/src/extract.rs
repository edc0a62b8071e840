//! Request extraction: JSON bodies with field-naming errors, ids, If-Match versions, query strings.

use axum::{
    body::Bytes,
    http::{HeaderMap, header},
};
use serde::de::DeserializeOwned;

use crate::problem::{ApiResult, Problem};

/// The request's media type, lower-cased, without parameters.
pub fn media_type(headers: &HeaderMap) -> String {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Refuse (415) a body whose media type `accept` does not take; `expected` names what is.
pub fn require_media(
    headers: &HeaderMap,
    accept: impl Fn(&str) -> bool,
    expected: &str,
) -> ApiResult<()> {
    let mime = media_type(headers);
    if accept(&mime) {
        Ok(())
    } else {
        Err(Problem::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!(
                "Content-Type must be {expected}, got '{}'",
                mime.chars().take(80).collect::<String>()
            ),
        ))
    }
}

/// Check the Content-Type names JSON (`application/json`, `application/merge-patch+json` or `+json`).
pub fn require_json(headers: &HeaderMap) -> ApiResult<()> {
    require_media(
        headers,
        |m| m == "application/json" || m.ends_with("+json"),
        "application/json",
    )
}

/// Parse a JSON document, reporting syntax errors with line and column.
pub fn parse_json_value(headers: &HeaderMap, body: &Bytes) -> ApiResult<serde_json::Value> {
    require_json(headers)?;
    serde_json::from_slice(body).map_err(|e| {
        Problem::bad_request(format!(
            "malformed JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
    })
}

/// Deserialize a JSON value into `T`, naming the offending field on failure (422).
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> ApiResult<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        Problem::field(field, e.inner().to_string())
    })
}

/// Parse a JSON request body into `T` (400 for syntax, 422 naming the field for content).
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> ApiResult<T> {
    from_value(parse_json_value(headers, body)?)
}

/// Parse a path id.
pub fn parse_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        Problem::bad_request(format!(
            "'{}' is not an object id (a positive integer)",
            raw.chars().take(40).collect::<String>()
        ))
    })
}

/// The version an `If-Match` header names (`"3"`, `W/"3"` or `3`), if any.
pub fn if_match(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    if s == "*" {
        return Ok(None);
    }
    let t = s.trim_start_matches("W/").trim_matches('"');
    t.parse::<i64>().map(Some).map_err(|_| {
        Problem::bad_request(format!("If-Match must be an ETag like \"3\", got '{s}'"))
    })
}

/// Query parameters as ordered pairs; unknown names are refused by the caller.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .take(200)
        .collect()
}

/// Parse a boolean query value.
pub fn parse_bool(name: &str, v: &str) -> ApiResult<bool> {
    match v {
        "true" | "1" | "yes" | "" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(Problem::bad_request(format!(
            "query parameter '{name}' must be true or false"
        ))),
    }
}

/// Parse an integer query value in a range.
pub fn parse_int<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    name: &str,
    v: &str,
    min: T,
    max: T,
) -> ApiResult<T> {
    match v.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(Problem::bad_request(format!(
            "query parameter '{name}' must be an integer from {min} to {max}"
        ))),
    }
}

/// The `{id}` path segment as an object id; anything else is a 400 problem document.
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub i64);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathId {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| Problem::bad_request(e.body_text()))?;
        parse_id(&raw).map(PathId)
    }
}

/// A JSON request body: 415 without a JSON media type, 400 for syntax (line, column), 422
/// naming the field for content; unknown fields are refused by the target type.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let body = <Bytes as axum::extract::FromRequest<S>>::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                // Over the body limit: 413 as a problem document, not axum's plain text.
                axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                    Problem::new(e.status(), "payload-too-large", e.body_text())
                }
                _ => Problem::bad_request(e.body_text()),
            })?;
        json_body(&headers, &body).map(JsonBody)
    }
}

/// A query string parsed strictly into `T` (which declares `#[serde(deny_unknown_fields)]`):
/// an unknown parameter, a missing one or a malformed value is a 400 problem document
/// naming it, never axum's plain-text rejection.
#[derive(Debug, Clone)]
pub struct StrictQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for StrictQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| StrictQuery(q.0))
            .map_err(|e| Problem::bad_request(format!("query string: {}", e.body_text())))
    }
}
