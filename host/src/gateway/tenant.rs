//! Tenant routes: `/{plugin}/{rest...}` runs the plugin for the tenant in the tenant header.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Extension;

use super::tenancy::{self, ClientAddr};
use super::AppState;
use super::{framing, intake, reply};
use crate::metrics::{Metrics, Outcome};
use crate::runtime::{InvokeError, Request};

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
    body: Body,
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
    body: Body,
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
    body: Body,
) -> Response {
    // Everything that can refuse the request is checked before a byte of the body is read,
    // so a stalled upload to an unknown tenant or plugin costs nothing.
    let tenant = match intake::tenant(&state, &headers) {
        Ok(tenant) => tenant,
        Err(reply) => return *reply,
    };
    let Some(plugin) = state.registry.get(&plugin_name) else {
        return reply::error(
            StatusCode::NOT_FOUND,
            "unknown_plugin",
            format!("no plugin named {plugin_name:?} is deployed"),
        );
    };
    // A tenant over its share of the plugin, or a plugin at its concurrency limit, would be
    // refused anyway: say so before reading the body. The slots themselves are taken by the
    // runtime once the body is read, so a slow upload never holds one.
    let limits = plugin.limits();
    let refused = if plugin.tenant_in_flight(tenant.db.name()) >= limits.tenant_share() {
        Some(InvokeError::TenantBusy(limits.tenant_share()))
    } else if plugin.in_flight() >= limits.max_concurrent {
        Some(InvokeError::Busy(limits.max_concurrent))
    } else {
        None
    };
    if let Some(e) = refused {
        metrics.record_invocation(
            &plugin_name,
            Outcome::Failed(e.kind()),
            Duration::ZERO,
            Default::default(),
        );
        return invoke_error(&plugin_name, &e);
    }
    let charge = match tenancy::admit(&state, &tenant, client) {
        Ok(charge) => charge,
        Err(reply) => return reply,
    };
    let body = match intake::read_body(body, &headers, &state.config).await {
        Ok(body) => body,
        Err(reply) => {
            charge.settle(&state, tenant.db.name());
            return *reply;
        }
    };
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
        body,
        tenant: tenant.name.clone(),
    };
    let started = Instant::now();
    // Every log event of the request carries its tenant and plugin (JSON logs show them).
    let span = tracing::info_span!("request", tenant = %request.tenant, plugin = %plugin_name);
    let (result, timings) = tracing::Instrument::instrument(
        state
            .registry
            .runtime()
            .invoke_timed(&plugin, tenant.db.clone(), request),
        span,
    )
    .await;
    // Only deployed plugins get here, so the `plugin` label stays bounded.
    let outcome = match &result {
        Ok(r) if framing::is_final_status(r.status) => Outcome::Ok,
        Ok(_) => Outcome::InvalidResponse,
        Err(e) => Outcome::Failed(e.kind()),
    };
    metrics.record_invocation(&plugin_name, outcome, started.elapsed(), timings);
    charge.settle(&state, tenant.db.name());
    match result {
        Ok(response) => framing::plugin_response(&plugin_name, response),
        Err(e) => invoke_error(&plugin_name, &e),
    }
}

/// The JSON reply for a failed invocation (503s and 429s carry `retry-after`).
fn invoke_error(plugin_name: &str, e: &InvokeError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut reply = reply::error(status, e.kind(), format!("plugin {plugin_name}: {e}"));
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        reply
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    reply
}
