//! A tenant request's intake: the tenant header, then the body (bounded in size and time).
//!
//! The tenant header must be present exactly once: with two `x-tenant-id` headers, a proxy in
//! front and the host could each pick a different one (the first, the last, or both joined),
//! so the request is refused (400 `duplicate_tenant`) instead of guessed.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::tenancy::{self, Tenant};
use super::{reply, AppState, GatewayConfig};

/// The request's tenant: its header present once, valid text, a valid tenant name (see
/// [`tenancy::resolve`]).
pub fn tenant(state: &AppState, headers: &HeaderMap) -> Result<Tenant, Box<Response>> {
    let header = &state.config.tenant_header;
    let mut values = headers.get_all(header.as_str()).iter();
    let Some(tenant) = values.next() else {
        return Err(Box::new(reply::error(
            StatusCode::BAD_REQUEST,
            "missing_tenant",
            format!("missing tenant header {header:?}"),
        )));
    };
    if values.next().is_some() {
        return Err(Box::new(reply::error(
            StatusCode::BAD_REQUEST,
            "duplicate_tenant",
            format!("the tenant header {header:?} must be sent once"),
        )));
    }
    let Ok(tenant) = tenant.to_str() else {
        return Err(Box::new(reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            format!("tenant header {header:?} is not valid text"),
        )));
    };
    // The tenant's canonical name and its database in the tenant namespace, or a 400.
    tenancy::resolve(state, tenant).map_err(Box::new)
}

/// Reads the whole body: 413 beyond `max_body_bytes` (at once when `content-length` says
/// so), 408 when it does not arrive within `body_read_timeout`, 400 when the client breaks
/// it off.
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    config: &GatewayConfig,
) -> Result<Vec<u8>, Box<Response>> {
    let max = config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Box::new(too_large(max)));
    }
    let read = Limited::new(body, max).collect();
    let result = match tokio::time::timeout(config.body_read_timeout, read).await {
        Ok(Ok(collected)) => return Ok(collected.to_bytes().to_vec()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => too_large(max),
        Ok(Err(e)) => reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("cannot read the request body: {e}"),
        ),
        Err(_) => reply::error(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} s",
                config.body_read_timeout.as_secs_f64()
            ),
        ),
    };
    Err(Box::new(result))
}

fn too_large(max: usize) -> Response {
    reply::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than {max} bytes"),
    )
}
