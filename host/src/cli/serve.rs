//! `polymongo serve`: the host serving the plugins folder over HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use polymongo::config::{self, ServeConfig};
use polymongo::consumers::Consumers;
use polymongo::gateway::{self, AppState};
use polymongo::plugins::{ComponentKind, PluginRegistry, WatchConfig};
use polymongo::pool::PolyMongo;
use polymongo::recording::TraceRecorder;
use polymongo::runtime::Runtime;

/// Options of `serve` (and `config check`). Precedence: the file, then `POLYMONGO_*`
/// environment variables (one per key, e.g. `POLYMONGO_POOL_MAX_CONNECTIONS`), then these flags.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Configuration file (TOML). Env: POLYMONGO_CONFIG.
    #[arg(long, short, env = "POLYMONGO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080). Env: POLYMONGO_LISTEN.
    #[arg(long)]
    pub listen: Option<String>,
    /// MongoDB base URI. Env: POLYMONGO_MONGO_URI.
    #[arg(long)]
    pub mongo_uri: Option<String>,
    /// Plugins folder (default plugins/deploy). Env: POLYMONGO_PLUGINS_DIR.
    #[arg(long)]
    pub plugins_dir: Option<PathBuf>,
    /// Bearer token for the admin API (required to serve it on a non-loopback address).
    /// Env: POLYMONGO_ADMIN_TOKEN.
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Separate address for /admin, /admin/ui and /metrics. Env: POLYMONGO_ADMIN_LISTEN.
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Header naming the tenant (default x-tenant-id). Env: POLYMONGO_TENANT_HEADER.
    #[arg(long)]
    pub tenant_header: Option<String>,
    /// Most database pools open at once. Env: POLYMONGO_POOL_MAX_CONNECTIONS.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Eviction policy: `seed`, `lru`, or a scorer component's name (e.g. `scorer-hybrid`).
    /// Env: POLYMONGO_SCORER.
    #[arg(long)]
    pub scorer: Option<String>,
    /// Folder for compiled components (default .cache/polymongo). Env: POLYMONGO_CACHE_DIR.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Do not watch the plugins folder (no hot reload). Env: POLYMONGO_WATCH=false.
    #[arg(long)]
    pub no_watch: bool,
    /// Sets any configuration key, e.g. `--set pool.idle_timeout_secs=60` or
    /// `--set 'routes=[{pattern="eu-*", uri="mongodb://eu/"}]'` (values in TOML syntax).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ServeArgs {
    /// The effective configuration: file, environment, then flags.
    pub fn effective_config(&self) -> Result<ServeConfig> {
        let mut config = config::load(self.config.as_deref(), std::env::vars(), &self.set)?;
        let flag = |v: &Option<String>| v.clone();
        if let Some(v) = flag(&self.listen) {
            config.listen = Some(v);
        }
        if let Some(v) = flag(&self.mongo_uri) {
            config.mongo_uri = Some(v);
        }
        if let Some(v) = &self.plugins_dir {
            config.plugins_dir = Some(v.clone());
        }
        if let Some(v) = flag(&self.admin_token) {
            config.admin_token = Some(v);
        }
        if let Some(v) = flag(&self.admin_listen) {
            config.admin_listen = Some(v);
        }
        if let Some(v) = flag(&self.tenant_header) {
            config.tenant_header = Some(v);
        }
        if let Some(v) = self.max_connections {
            config.pool.max_connections = Some(v);
        }
        if let Some(v) = flag(&self.scorer) {
            config.scorer = Some(v);
        }
        if let Some(v) = &self.cache_dir {
            config.cache_dir = Some(v.clone());
        }
        if self.no_watch {
            config.watch = Some(false);
        }
        Ok(config)
    }
}

/// Runs the server until SIGTERM or ctrl-c, then drains requests and closes pools.
pub async fn run(args: ServeArgs) -> Result<()> {
    let config = args.effective_config()?;
    config.check()?;
    let manager = PolyMongo::builder("unused")
        .config(config.pool_config()?)
        .build()
        .await
        .context("starting the connection manager")?;
    let recorder = match config.trace_options()? {
        Some(options) => {
            let path = options.path.clone();
            let recorder = TraceRecorder::start(options)
                .with_context(|| format!("starting the trace file {}", path.display()))?;
            manager.set_access_recorder(Some(recorder.clone()));
            println!("recording the request stream to {}", path.display());
            Some(recorder)
        }
        None => None,
    };
    let runtime = Runtime::new(manager.clone(), config.runtime_config())
        .context("starting the wasm runtime")?;
    let dir = config.plugins_dir();
    let registry = Arc::new(
        PluginRegistry::new(runtime, &dir)
            .with_active_scorer(config.scorer.clone())
            .with_reserved_names(polymongo::gateway::RESERVED_ROUTES),
    );
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
    let consumers = config
        .consumers_enabled()
        .then(|| Consumers::start(registry.clone(), config.consumers_config()));
    let failed = registry
        .list()
        .iter()
        .filter(|p| p.last_error.is_some())
        .count();
    let listener = tokio::net::TcpListener::bind(config.listen())
        .await
        .with_context(|| format!("listening on {}", config.listen()))?;
    let admin_listener = match config.admin_listen() {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} (admin_listen)"))?,
        ),
        None => None,
    };
    println!(
        "polymongo serving {loaded} plugin(s) from {} on http://{} ({failed} failed to load)",
        dir.display(),
        listener.local_addr()?
    );
    if let Some(admin) = &admin_listener {
        println!(
            "admin API, dashboard and metrics on http://{}",
            admin.local_addr()?
        );
    }
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
    let listeners = gateway::Listeners {
        public: listener,
        admin: admin_listener,
    };
    gateway::serve_with(
        listeners,
        state,
        gateway::RouterOptions {
            trace: recorder.clone(),
            ..config.router_options()
        },
        config.http.connection_limits(),
        shutdown_signal(),
    )
    .await?;
    if let Some(consumers) = &consumers {
        println!("shutting down: stopping background consumers");
        consumers.shutdown().await;
    }
    println!("shutting down: closing database pools");
    manager.destroy().await?;
    if let Some(recorder) = recorder {
        manager.set_access_recorder(None);
        recorder.finish();
    }
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
