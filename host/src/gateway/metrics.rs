//! `GET /metrics`: the Prometheus exposition.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::admin::{bearer_matches, unauthorized};
use super::RouterOptions;
use crate::metrics::{Metrics, CONTENT_TYPE};

/// Encodes the metrics; checks the metrics token when one is configured.
pub async fn scrape(
    Extension(metrics): Extension<Arc<Metrics>>,
    Extension(options): Extension<Arc<RouterOptions>>,
    headers: HeaderMap,
) -> Response {
    if let Some(expected) = &options.metrics_token {
        if !bearer_matches(&headers, expected) {
            return unauthorized("/metrics needs a valid bearer token");
        }
    }
    // Encoding reads the manager's state under its lock for a moment: cheap, no blocking I/O.
    let body = metrics.encode();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}
