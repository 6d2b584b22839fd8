//! HTTP: tenant routes to plugins, the admin API and health checks.
//!
//! - `/{plugin}/{rest...}`: runs `plugin` for the tenant named by the tenant header.
//! - `/admin/...`: stats, priorities, open/close, plugin list (bearer token when configured).
//! - `/admin/ui`: the live dashboard (static page; every data request it makes carries the
//!   admin token).
//! - `/metrics`: Prometheus metrics (open unless [`RouterOptions::metrics_token`] is set).
//! - `/healthz`: liveness.

mod admin;
mod metrics;
mod reply;
mod tenancy;
mod tenant;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use axum::{Extension, Router};

use crate::metrics::Metrics;
use crate::plugins::PluginRegistry;
use crate::pool::PolyMongo;

/// Settings of the HTTP gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Header naming the tenant (lower case).
    pub tenant_header: String,
    /// Bearer token required by `/admin` (none = admin API open; a warning is logged).
    pub admin_token: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            tenant_header: "x-tenant-id".into(),
            admin_token: None,
            max_body_bytes: 8 << 20,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The connection manager.
    pub manager: PolyMongo,
    /// Deployed plugins.
    pub registry: Arc<PluginRegistry>,
    /// Gateway settings.
    pub config: Arc<GatewayConfig>,
}

/// Settings of the router beyond [`GatewayConfig`].
#[derive(Debug, Clone, Default)]
pub struct RouterOptions {
    /// Bearer token `/metrics` requires. `None` (the default): `/metrics` is open, like
    /// `/healthz` — it holds aggregate counts and plugin names, never tenant names or
    /// secrets. A separate token from the admin token, so that the scraper's configuration
    /// does not hold admin rights.
    pub metrics_token: Option<String>,
}

/// The gateway's router, with default [`RouterOptions`].
pub fn router(state: AppState) -> Router {
    router_with(state, RouterOptions::default())
}

/// The gateway's router.
pub fn router_with(state: AppState, options: RouterOptions) -> Router {
    if state.config.admin_token.is_none() {
        tracing::warn!(
            "no admin token configured: the /admin API is open to anyone who can reach this port"
        );
    }
    let metrics = Arc::new(Metrics::new(state.manager.clone(), state.registry.clone()));
    let admin = admin::router(state.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics::scrape))
        .nest("/admin", admin)
        .route("/{plugin}", any(tenant::invoke_root))
        .route("/{plugin}/", any(tenant::invoke_root))
        .route("/{plugin}/{*rest}", any(tenant::invoke))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(Extension(metrics))
        .layer(Extension(Arc::new(options)))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, RouterOptions::default(), shutdown).await
}

/// [`serve`] with [`RouterOptions`].
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    options: RouterOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The client's address feeds per-client storm control (see `tenancy::ClientAddr`).
    let app = router_with(state, options).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
