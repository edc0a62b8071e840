//! RFC 9457 problem documents: the one error type of the API, and its mapping from store errors.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use lockgate_model::{FieldError, ValidationErrors};
use lockgate_store::StoreError;
use serde::Serialize;

/// Media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An API error, rendered as `application/problem+json`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// URI naming the kind of problem (`urn:lockgate:problem:<slug>`).
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Field-level reasons (validation, conflicts, import rows).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Extra members (e.g. the current version on a version mismatch).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub extra: Option<Box<serde_json::Value>>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Problem {
            type_: format!("urn:lockgate:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            extra: None,
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(Box::new(extra));
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// A 422 naming one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let e = ValidationErrors::single(field, message);
        Self::from_validation(e)
    }

    pub fn from_validation(e: ValidationErrors) -> Self {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-error",
            e.to_string(),
        )
        .with_errors(e.errors)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; see the gateway log",
        )
    }
}

impl From<ValidationErrors> for Problem {
    fn from(e: ValidationErrors) -> Self {
        Problem::from_validation(e)
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, id } => {
                Problem::not_found(format!("no {} {id}", kind.replace('_', " ")))
            }
            StoreError::Invalid(v) => Problem::from_validation(v),
            StoreError::Conflict { field, message } => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{field}: {message}"),
            )
            .with_errors(vec![FieldError { field, message }]),
            StoreError::VersionMismatch { current } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "version-mismatch",
                format!("the object was changed meanwhile; it is now at version {current}"),
            )
            .with_extra(serde_json::json!({ "current_version": current })),
            StoreError::InUse { message } => Problem::new(StatusCode::CONFLICT, "in-use", message),
            StoreError::Refused { message } => {
                Problem::new(StatusCode::CONFLICT, "rule-violation", message)
            }
            StoreError::JobRefused(refused) => Problem::new(
                StatusCode::CONFLICT,
                "job-transition-refused",
                refused.to_string(),
            )
            .with_extra(
                serde_json::json!({ "rule": refused.rule, "from": refused.from, "to": refused.to }),
            ),
            StoreError::ImportFile(f) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "import-file",
                f.to_string(),
            ),
            other => {
                tracing::error!(error = %other, "store error");
                Problem::internal()
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"lockgate\""),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, Problem>;

impl From<lockgate_app::AppError> for Problem {
    fn from(e: lockgate_app::AppError) -> Self {
        use lockgate_app::AppError;
        match e {
            AppError::Store(e) => e.into(),
            AppError::NotLoadable(refusal) => Problem::new(
                StatusCode::CONFLICT,
                "job-not-loadable",
                refusal.to_string(),
            )
            .with_extra(serde_json::to_value(&refusal).unwrap_or_default()),
            AppError::NotCarriable(refusal) => Problem::new(
                StatusCode::CONFLICT,
                "job-not-carriable",
                refusal.to_string(),
            ),
            AppError::Field { field, message } => Problem::field(field, message),
            AppError::SettingOff(message) => {
                Problem::new(StatusCode::CONFLICT, "setting-off", message)
            }
            AppError::NotFound(message) => Problem::not_found(message),
        }
    }
}
