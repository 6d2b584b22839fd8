//! HTTP: tenant routes to plugins, the admin API and health checks.
//!
//! - `/{plugin}/{rest...}`: runs `plugin` for the tenant named by the tenant header.
//! - `/admin/...`: stats, priorities, open/close, plugin list (bearer token when configured).
//! - `/healthz`: liveness.

mod admin;
mod reply;
mod tenant;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use axum::Router;

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

/// The gateway's router.
pub fn router(state: AppState) -> Router {
    if state.config.admin_token.is_none() {
        tracing::warn!(
            "no admin token configured: the /admin API is open to anyone who can reach this port"
        );
    }
    let admin = admin::router(state.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .nest("/admin", admin)
        .route("/{plugin}", any(tenant::invoke_root))
        .route("/{plugin}/", any(tenant::invoke_root))
        .route("/{plugin}/{*rest}", any(tenant::invoke))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
