//! JSON error replies shared by the gateway's handlers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A JSON error body `{ "error": message, "kind": kind }` with `status`.
pub fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": message.into(), "kind": kind })),
    )
        .into_response()
}

/// Maps a connection-manager error to an HTTP reply.
pub fn pool_error(e: &crate::pool::Error) -> Response {
    use crate::pool::Error as E;
    let status = match e {
        E::InvalidDatabaseName { .. }
        | E::ReservedDatabase(_)
        | E::InvalidPriority(_)
        | E::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        E::LimitReached { .. } => StatusCode::TOO_MANY_REQUESTS,
        E::Destroyed | E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        E::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        E::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        E::DuplicateKey(_) => StatusCode::CONFLICT,
        E::Server { .. } | E::Driver(_) | E::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.kind_name(), e.to_string())
}
