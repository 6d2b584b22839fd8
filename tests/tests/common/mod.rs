//! A host serving a temporary plugins folder through the in-process gateway, shared by the
//! integration tests that need plugins.

#![allow(dead_code)]

pub mod raw_http;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use polymongo::consumers::{Consumers, ConsumersConfig};
use polymongo::gateway::{self, AppState, GatewayConfig};
use polymongo::plugins::{FolderWatcher, PluginRegistry, WatchConfig};
use polymongo::pool::{Builder, PolyMongo};
use polymongo::runtime::{Runtime, RuntimeConfig};
use polymongo_tests::{test_uri, unique_db};
use serde_json::Value;
use tower::ServiceExt;

/// The admin token of test hosts.
pub const TOKEN: &str = "test-admin-token";

/// How a test host is set up.
pub struct Options {
    /// Components to deploy: (name, file).
    pub plugins: Vec<(String, PathBuf)>,
    /// Manifests to deploy: (name, TOML).
    pub manifests: Vec<(String, String)>,
    /// Watch the folder (hot reload).
    pub watch: bool,
    /// The active scorer's name.
    pub scorer: Option<String>,
    /// Compile cache folder.
    pub cache_dir: Option<PathBuf>,
    /// Compiled components the runtime keeps in memory (0: every load goes to the cache).
    pub recent_components: usize,
    /// Adjusts the connection manager.
    pub manager: Box<dyn FnOnce(Builder) -> Builder + Send>,
    /// The database server (default: the harness's, `test_uri()`).
    pub uri: Option<String>,
    /// The metadata database (default: a fresh one); a restarted host passes its
    /// predecessor's.
    pub metadata_db: Option<String>,
    /// Run the background consumers of the plugins' subscriptions, with this configuration.
    pub consumers: Option<ConsumersConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            plugins: Vec::new(),
            manifests: Vec::new(),
            watch: false,
            scorer: None,
            cache_dir: None,
            recent_components: RuntimeConfig::default().recent_components,
            manager: Box::new(|b| b),
            uri: None,
            metadata_db: None,
            consumers: None,
        }
    }
}

/// A host serving a temporary plugins folder.
pub struct Host {
    pub manager: PolyMongo,
    pub registry: Arc<PluginRegistry>,
    pub app: Router,
    pub watcher: Option<FolderWatcher>,
    /// The background consumers, when [`Options::consumers`] asked for them.
    pub consumers: Option<Consumers>,
    dir: tempfile::TempDir,
}

impl Host {
    /// Deploys `plugins` (name, component) with optional manifests (name, toml).
    pub async fn start(plugins: &[(&str, PathBuf)], manifests: &[(&str, &str)]) -> Self {
        Self::with(Options {
            plugins: plugins
                .iter()
                .map(|(n, p)| (n.to_string(), p.clone()))
                .collect(),
            manifests: manifests
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            ..Options::default()
        })
        .await
    }

    /// A host set up by `options`.
    pub async fn with(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, path) in &options.plugins {
            std::fs::copy(path, dir.path().join(format!("{name}.wasm"))).unwrap();
        }
        for (name, text) in &options.manifests {
            std::fs::write(dir.path().join(format!("{name}.toml")), text).unwrap();
        }
        let builder = PolyMongo::builder(options.uri.clone().unwrap_or_else(test_uri));
        let builder = match polymongo_tests::test_client_sharing() {
            Some(mode) => builder.client_sharing(mode.parse().expect("client sharing mode")),
            None => builder,
        };
        let metadata_db = options
            .metadata_db
            .clone()
            .unwrap_or_else(|| unique_db("meta"));
        let builder = builder.metadata_db(metadata_db).no_idle_timeout();
        let manager = (options.manager)(builder).build().await.unwrap();
        let runtime = Runtime::new(
            manager.clone(),
            RuntimeConfig {
                cache_dir: options.cache_dir.clone(),
                recent_components: options.recent_components,
                ..RuntimeConfig::default()
            },
        )
        .unwrap();
        let registry = Arc::new(
            PluginRegistry::new(runtime, dir.path())
                .with_active_scorer(options.scorer.clone())
                .with_reserved_names(polymongo::gateway::RESERVED_ROUTES),
        );
        registry.load_all().await.unwrap();
        let watcher = options
            .watch
            .then(|| registry.watch(WatchConfig::default()).unwrap());
        let consumers = options
            .consumers
            .map(|config| Consumers::start(registry.clone(), config));
        let state = AppState {
            manager: manager.clone(),
            registry: registry.clone(),
            config: Arc::new(GatewayConfig {
                admin_token: Some(TOKEN.into()),
                ..GatewayConfig::default()
            }),
        };
        Self {
            manager,
            registry,
            app: gateway::router(state),
            watcher,
            consumers,
            dir,
        }
    }

    /// The plugins folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Deploys `from` as `name.wasm` the safe way: write `name.wasm.tmp`, rename.
    pub fn deploy(&self, name: &str, from: &Path) {
        let tmp = self.dir().join(format!("{name}.wasm.tmp"));
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir().join(format!("{name}.wasm"))).unwrap();
    }

    /// Deploys raw bytes as `name.wasm` (through a rename).
    pub fn deploy_bytes(&self, name: &str, bytes: &[u8]) {
        let tmp = self.dir().join(format!("{name}.wasm.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, self.dir().join(format!("{name}.wasm"))).unwrap();
    }

    /// Sends a request through the gateway.
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Vec<u8>, HeaderMap) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap();
        (status, body.to_vec(), headers)
    }

    /// A tenant request; returns the status and the body parsed as JSON (or as a string).
    pub async fn call(
        &self,
        tenant: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("x-tenant-id", tenant);
        let body = match body {
            Some(v) => {
                request = request.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let (status, bytes, _) = self.send(request.body(body).unwrap()).await;
        (status, parse(&bytes))
    }

    /// An admin request with an optional bearer token.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let body = body
            .map(|v| Body::from(v.to_string()))
            .unwrap_or_else(Body::empty);
        let (status, bytes, _) = self.send(request.body(body).unwrap()).await;
        (status, parse(&bytes))
    }
}

/// The body as JSON, or as a JSON string when it is not JSON.
pub fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Polls `condition` every 10 ms until it holds, failing after `limit` with `what`.
pub async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of the sample `series` (a metric name with its labels, exactly as exposed) in
/// the Prometheus exposition `text`.
pub fn metric_sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| v.trim().parse::<f64>().unwrap())
    })
}

/// Waits until no call runs on `scorer`'s thread (an overrunning call, a delivery of events).
///
/// # Panics
/// If one is still running after two minutes (a guard, not a timing assertion).
pub fn until_scorer_idle(scorer: &polymongo::runtime::WasmScorer) {
    let give_up = Instant::now() + Duration::from_secs(120);
    while scorer.busy() {
        assert!(Instant::now() < give_up, "the scorer's call never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The stats of pool `pool_id` (`tenant`) as a scorer is given them in a decision, with
/// `priority` (the `scorer-counter` fixture spins or traps on some priorities).
pub fn scorer_pool(pool_id: u64, priority: i32) -> polymongo::pool::PoolStats<'static> {
    polymongo::pool::PoolStats {
        pool_id,
        db_name: "tenant",
        priority,
        use_count: 1,
        avg_interval_ms: 0.0,
        last_used_ms: 1,
        opened_at_ms: 1,
        in_flight: 0,
        watch_count: 0,
    }
}
