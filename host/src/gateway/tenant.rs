//! Tenant routes: `/{plugin}/{rest...}` runs the plugin for the tenant in the tenant header.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::reply;
use super::tenancy::{self, ClientAddr};
use super::AppState;
use crate::metrics::{Metrics, Outcome};
use crate::runtime::Request;

/// `/{plugin}` and `/{plugin}/`.
#[allow(clippy::too_many_arguments)] // axum extractors
pub async fn invoke_root(
    State(state): State<AppState>,
    Extension(metrics): Extension<Arc<Metrics>>,
    client: ClientAddr,
    Path(plugin): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rest = String::new();
    run(
        state, &metrics, client, plugin, rest, method, uri, headers, body,
    )
    .await
}

/// `/{plugin}/{rest...}`.
#[allow(clippy::too_many_arguments)] // axum extractors
pub async fn invoke(
    State(state): State<AppState>,
    Extension(metrics): Extension<Arc<Metrics>>,
    client: ClientAddr,
    Path((plugin, rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(
        state, &metrics, client, plugin, rest, method, uri, headers, body,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn run(
    state: AppState,
    metrics: &Metrics,
    client: ClientAddr,
    plugin_name: String,
    rest: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = &state.config.tenant_header;
    let Some(tenant) = headers.get(header.as_str()) else {
        return reply::error(
            StatusCode::BAD_REQUEST,
            "missing_tenant",
            format!("missing tenant header {header:?}"),
        );
    };
    let Ok(tenant) = tenant.to_str() else {
        return reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            format!("tenant header {header:?} is not valid text"),
        );
    };
    let tenant = match tenancy::resolve(&state, tenant) {
        Ok(tenant) => tenant,
        Err(reply) => return reply,
    };
    let Some(plugin) = state.registry.get(&plugin_name) else {
        return reply::error(
            StatusCode::NOT_FOUND,
            "unknown_plugin",
            format!("no plugin named {plugin_name:?} is deployed"),
        );
    };
    if let Err(reply) = tenancy::admit(&state, &tenant, client) {
        return reply;
    }
    let request = Request {
        method: method.as_str().to_string(),
        path: format!("/{rest}"),
        query: uri.query().unwrap_or_default().to_string(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_string(), v.to_string()))
            })
            .collect(),
        body: body.to_vec(),
        tenant: tenant.name,
    };
    let started = Instant::now();
    // Every log event of the request carries its tenant and plugin (JSON logs show them).
    let span = tracing::info_span!("request", tenant = %request.tenant, plugin = %plugin_name);
    let (result, timings) = tracing::Instrument::instrument(
        state.registry.runtime().invoke_timed(&plugin, request),
        span,
    )
    .await;
    // Only deployed plugins get here, so the `plugin` label stays bounded.
    let outcome = match &result {
        Ok(r) if StatusCode::from_u16(r.status).is_ok() => Outcome::Ok,
        Ok(_) => Outcome::InvalidResponse,
        Err(e) => Outcome::Failed(e.kind()),
    };
    metrics.record_invocation(&plugin_name, outcome, started.elapsed(), timings);
    match result {
        Ok(response) => into_http(&plugin_name, response),
        Err(e) => {
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut reply = reply::error(status, e.kind(), format!("plugin {plugin_name}: {e}"));
            if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS
            {
                reply
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
            }
            reply
        }
    }
}

fn into_http(plugin: &str, response: crate::runtime::Response) -> Response {
    let Ok(status) = StatusCode::from_u16(response.status) else {
        return reply::error(
            StatusCode::BAD_GATEWAY,
            "invalid_response",
            format!(
                "plugin {plugin} answered with invalid status {}",
                response.status
            ),
        );
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &response.headers {
        match (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            (Ok(k), Ok(v)) => {
                headers.append(k, v);
            }
            _ => {
                tracing::warn!(plugin, header = %k, "dropping an invalid response header from the plugin")
            }
        }
    }
    // A plain body: the plugin's own headers decide the content type (a `Vec<u8>` would add
    // `application/octet-stream`, even to a 204).
    (status, headers, axum::body::Body::from(response.body)).into_response()
}
