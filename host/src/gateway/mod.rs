//! HTTP: tenant routes to plugins, the admin API and health checks.
//!
//! - `/{plugin}/{rest...}`: runs `plugin` for the tenant named by the tenant header.
//! - `/admin/...`: stats, priorities, open/close, plugin list (bearer token when configured).
//! - `/admin/ui`: the live dashboard (static page; every data request it makes carries the
//!   admin token).
//! - `/metrics`: Prometheus metrics (open unless [`RouterOptions::metrics_token`] is set).
//! - `/healthz`: liveness.
//!
//! With a separate admin listener ([`Listeners::admin`]), `/admin/...` and `/metrics` are
//! served only there, and the public listener answers them with 404.

mod activity;
mod admin;
mod framing;
#[cfg(test)]
mod framing_props;
mod intake;
mod metrics;
mod reply;
mod server;
mod tenancy;
mod tenant;
mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use axum::{Extension, Router};
use tokio::net::TcpListener;

pub use server::ConnectionLimits;

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
    /// Time for a tenant request's body to arrive once its tenant and plugin are checked
    /// (408 after it).
    pub body_read_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            tenant_header: "x-tenant-id".into(),
            admin_token: None,
            max_body_bytes: 8 << 20,
            body_read_timeout: Duration::from_secs(30),
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
    /// The request trace being recorded, for its metrics (`[trace]`; none: no trace).
    pub trace: Option<Arc<crate::recording::TraceRecorder>>,
}

/// First path segments the gateway routes itself: no plugin may be named so (give them to
/// `PluginRegistry::with_reserved_names`), since its tenant routes would never be reached.
pub const RESERVED_ROUTES: &[&str] = &["admin", "healthz", "metrics"];

/// The gateway's router, with default [`RouterOptions`].
pub fn router(state: AppState) -> Router {
    router_with(state, RouterOptions::default())
}

/// The gateway's router: tenant routes, the admin API, `/metrics` and `/healthz`.
pub fn router_with(state: AppState, options: RouterOptions) -> Router {
    warn_if_admin_open(&state);
    let routes = admin_routes(&state).merge(tenant_routes());
    finish(routes, state, options)
}

/// The public listener's router when the admin API has its own listener: tenant routes and
/// `/healthz`; `/admin/...` and `/metrics` are 404 here.
pub fn public_router(state: AppState, options: RouterOptions) -> Router {
    let not_here = || async {
        reply::error(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "served on the admin listener only",
        )
    };
    let routes = tenant_routes()
        .route("/metrics", any(not_here))
        .route("/admin", any(not_here))
        .route("/admin/", any(not_here))
        .route("/admin/{*rest}", any(not_here));
    finish(routes, state, options)
}

/// The admin listener's router: the admin API, the dashboard, `/metrics` and `/healthz`.
pub fn admin_router(state: AppState, options: RouterOptions) -> Router {
    warn_if_admin_open(&state);
    finish(admin_routes(&state), state, options)
}

fn warn_if_admin_open(state: &AppState) {
    if state.config.admin_token.is_none() {
        tracing::warn!(
            "no admin token configured: the /admin API is open to anyone who can reach this port"
        );
    }
}

fn tenant_routes() -> Router<AppState> {
    Router::new()
        .route("/{plugin}", any(tenant::invoke_root))
        .route("/{plugin}/", any(tenant::invoke_root))
        .route("/{plugin}/{*rest}", any(tenant::invoke))
}

fn admin_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics::scrape))
        .nest("/admin", admin::router(state.clone()))
}

fn finish(routes: Router<AppState>, state: AppState, options: RouterOptions) -> Router {
    let metrics = Arc::new(Metrics::with_trace(
        state.manager.clone(),
        state.registry.clone(),
        options.trace.clone(),
    ));
    routes
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(Extension(metrics))
        .layer(Extension(Arc::new(options)))
        .with_state(state)
}

/// Errors serving the gateway.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Accepting or serving connections failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    /// The admin API would be reachable beyond this machine without a token.
    #[error(
        "refusing to serve the admin API on {0} without an admin token: set admin_token, \
         or serve it on a loopback address (admin_listen)"
    )]
    OpenAdmin(std::net::SocketAddr),
}

/// Where the gateway listens.
#[derive(Debug)]
pub struct Listeners {
    /// Tenant routes and `/healthz` (and the admin API and `/metrics` when `admin` is none).
    pub public: TcpListener,
    /// The admin API, the dashboard, `/metrics` and `/healthz`, when served apart.
    pub admin: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(public: TcpListener) -> Self {
        Self {
            public,
            admin: None,
        }
    }
}

/// Serves `state` on `listener` with default limits until `shutdown` resolves, then finishes
/// in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with(
        listener.into(),
        state,
        RouterOptions::default(),
        ConnectionLimits::default(),
        shutdown,
    )
    .await
}

/// Serves `state` on `listeners` (each with its own connection `limits`) until `shutdown`
/// resolves, then finishes in-flight requests. Refuses ([`ServeError::OpenAdmin`]) to serve
/// the admin API on a non-loopback address without an admin token.
pub async fn serve_with(
    listeners: Listeners,
    state: AppState,
    options: RouterOptions,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let admin_addr = listeners
        .admin
        .as_ref()
        .unwrap_or(&listeners.public)
        .local_addr()?;
    if state.config.admin_token.is_none() && !admin_addr.ip().is_loopback() {
        return Err(ServeError::OpenAdmin(admin_addr));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    match listeners.admin {
        None => {
            let app = router_with(state, options);
            server::serve_listener(listeners.public, app, limits, stopped).await?;
        }
        Some(admin) => {
            let public = public_router(state.clone(), options.clone());
            let admin_app = admin_router(state, options);
            tokio::try_join!(
                server::serve_listener(listeners.public, public, limits.clone(), stopped.clone()),
                server::serve_listener(admin, admin_app, limits, stopped),
            )?;
        }
    }
    Ok(())
}
