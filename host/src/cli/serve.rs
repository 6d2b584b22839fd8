//! `polymongo serve`: the host serving the plugins folder over HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use polymongo::config::ServeConfig;
use polymongo::gateway::{self, AppState};
use polymongo::plugins::{ComponentKind, PluginRegistry, WatchConfig};
use polymongo::pool::PolyMongo;
use polymongo::runtime::Runtime;

/// Options of `serve`; each overrides the config file.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(long, short, env = "POLYMONGO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "POLYMONGO_LISTEN")]
    pub listen: Option<String>,
    /// MongoDB base URI.
    #[arg(long, env = "POLYMONGO_MONGO_URI")]
    pub mongo_uri: Option<String>,
    /// Plugins folder.
    #[arg(long, env = "POLYMONGO_PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// Bearer token for the admin API.
    #[arg(long, env = "POLYMONGO_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Header naming the tenant.
    #[arg(long, env = "POLYMONGO_TENANT_HEADER")]
    pub tenant_header: Option<String>,
    /// Most database pools open at once.
    #[arg(long, env = "POLYMONGO_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Eviction policy: `seed`, `lru`, or a scorer component's name (e.g. `scorer-adaptive`).
    #[arg(long, env = "POLYMONGO_SCORER")]
    pub scorer: Option<String>,
    /// Folder for compiled components.
    #[arg(long, env = "POLYMONGO_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not watch the plugins folder (no hot reload).
    #[arg(long)]
    pub no_watch: bool,
}

/// Runs the server until SIGTERM or ctrl-c, then drains requests and closes pools.
pub async fn run(args: ServeArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::from_file(path)?,
        None => ServeConfig::default(),
    };
    config.listen = args.listen.or(config.listen);
    config.mongo_uri = args.mongo_uri.or(config.mongo_uri);
    config.plugins_dir = args.plugins_dir.or(config.plugins_dir);
    config.admin_token = args.admin_token.or(config.admin_token);
    config.tenant_header = args.tenant_header.or(config.tenant_header);
    config.pool.max_connections = args.max_connections.or(config.pool.max_connections);
    config.scorer = args.scorer.or(config.scorer);
    config.cache_dir = args.cache_dir.or(config.cache_dir);
    if args.no_watch {
        config.watch = Some(false);
    }

    let manager = PolyMongo::builder("unused")
        .config(config.pool_config()?)
        .build()
        .await
        .context("starting the connection manager")?;
    let runtime = Runtime::new(manager.clone(), config.runtime_config())
        .context("starting the wasm runtime")?;
    let dir = config.plugins_dir();
    let registry =
        Arc::new(PluginRegistry::new(runtime, &dir).with_active_scorer(config.scorer.clone()));
    let loaded = registry
        .load_all()
        .await
        .with_context(|| format!("reading the plugins folder {}", dir.display()))?;
    let _watcher = if config.watch.unwrap_or(true) {
        Some(
            registry
                .watch(WatchConfig::default())
                .context("watching the plugins folder")?,
        )
    } else {
        None
    };
    let failed = registry
        .list()
        .iter()
        .filter(|p| p.last_error.is_some())
        .count();
    let listener = tokio::net::TcpListener::bind(config.listen())
        .await
        .with_context(|| format!("listening on {}", config.listen()))?;
    println!(
        "polymongo serving {loaded} plugin(s) from {} on http://{} ({failed} failed to load)",
        dir.display(),
        listener.local_addr()?
    );
    for p in registry.list() {
        let version: String = p
            .version
            .as_deref()
            .unwrap_or("?")
            .chars()
            .take(12)
            .collect();
        match (&p.last_error, p.kind) {
            (Some(e), _) => println!("  {}: FAILED: {e}", p.name),
            (None, Some(ComponentKind::Scorer)) => println!(
                "  scorer {} (version {version}){}",
                p.name,
                if p.active_scorer { ", active" } else { "" }
            ),
            (None, _) => println!("  /{}/...  (version {version})", p.name),
        }
    }
    println!("eviction policy: {}", manager.summary().policy);
    let state = AppState {
        manager: manager.clone(),
        registry,
        config: Arc::new(config.gateway_config()),
    };
    gateway::serve(listener, state, shutdown_signal()).await?;
    println!("shutting down: closing database pools");
    manager.destroy().await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for ctrl-c: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
