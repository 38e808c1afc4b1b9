//! API errors: a status, a stable machine-readable code and a message,
//! always as JSON (`{"error":{"code":"...","message":"..."}}`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadCursor => ApiError::bad_request("cursor is not one this API issued"),
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::Transition { .. } => {
                ApiError::new(StatusCode::CONFLICT, "invalid_transition", e.to_string())
            }
            StoreError::Conflict => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "it already exists")
            }
            e if e.is_outage() => {
                tracing::warn!(error = %e, "api: database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the database is unavailable; try again",
                )
            }
            e => {
                tracing::warn!(error = %e, "api: store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        (self.status, Json(body)).into_response()
    }
}
