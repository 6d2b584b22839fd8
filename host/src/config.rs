//! The host's configuration (`polymongo serve`): one TOML file, every key overridable by a
//! `POLYMONGO_*` environment variable and by a flag (`--set key=value` for any key).
//!
//! Precedence: file < environment < flags. Environment names are the key paths upper-cased
//! with `_` between the parts: `mongo_uri` → `POLYMONGO_MONGO_URI`, `pool.max_connections` →
//! `POLYMONGO_POOL_MAX_CONNECTIONS`, `limits.memory_mb` → `POLYMONGO_LIMITS_MEMORY_MB`.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! mongo_uri = "mongodb://127.0.0.1:27017"
//! plugins_dir = "plugins/deploy"
//! tenant_header = "x-tenant-id"
//! admin_token = "change-me"
//! admin_listen = "127.0.0.1:8081"   # optional: /admin, /admin/ui and /metrics only here
//! scorer = "seed"            # or "lru", or a scorer component's name, e.g. "scorer-hybrid"
//!
//! [pool]
//! max_connections = 64       # the default; sockets <= max_connections x (max_pool_size + 2)
//! idle_timeout_secs = 600
//! max_pool_size = 5
//! client_sharing = "cluster"  # the default: one driver client per target, shared by its databases
//! shared_max_pool_size = 100 # sockets of each shared client
//! tenant_db_prefix = "t_"    # tenant acme -> database t_acme (the default)
//! change_feed = "streams"    # or "auto": the oplog feed where a server has no change streams
//!
//! [http]                     # connection limits and timeouts (config/http.rs)
//! max_connections = 1024
//! max_connections_per_ip = 64
//!
//! [limits]                   # defaults for plugins without a manifest
//! memory_mb = 64
//! deadline_ms = 5000
//!
//! [consumers]                # background consumers of plugins' [[subscriptions]]
//! enabled = true             # false: this host runs none (one host per metadata database)
//! max_batch = 100            # events per delivery
//! backoff_min_ms = 500       # first wait after a failed delivery, doubling up to
//! backoff_max_ms = 60000     # this
//!
//! [logs]                     # plugin log rate limits, per plugin and tenant
//! plugin_lines_per_sec = 100
//! plugin_bytes_per_sec = 65536
//!
//! [trace]                    # record the request stream for `polymongo replay --trace`
//! file = "trace.lirs"        # off unless set; an existing file becomes trace.lirs.previous
//! max_mb = 256               # the file stops growing here
//! names = "hashed"           # or "plain"
//!
//! [[routes]]                 # databases matching a pattern go to another cluster
//! pattern = "eu-*"
//! uri = "mongodb://eu-cluster.internal:27017"
//!
//! [[routes]]                 # per-tenant credentials from the environment
//! pattern = "vip-*"
//! uri = "mongodb://{db}:${VIP_PASSWORD_{db}}@vip-cluster.internal/?authSource=admin"
//! ```

mod check;
mod http;
mod layers;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use http::HttpSection;
pub use layers::{env_name, load, KEYS};

use crate::consumers::ConsumersConfig;
use crate::gateway::GatewayConfig;
use crate::pool::{Config as PoolConfig, RouteRule, SecretUri, MASK};
use crate::runtime::{LimitOverrides, Limits, LogLimits, RuntimeConfig};

/// Errors reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file, a variable or a `--set` is not valid for this schema.
    #[error("invalid configuration ({origin}): {message}")]
    Parse {
        /// Where the bad value came from (a file, an environment variable, a flag).
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A required value is missing.
    #[error("missing setting: {0}")]
    Missing(&'static str),
    /// A value is present but unusable.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Everything `polymongo serve` needs; every key optional in the file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on (default 127.0.0.1:8080).
    pub listen: Option<String>,
    /// MongoDB base URI (required).
    pub mongo_uri: Option<String>,
    /// The plugins folder (default `plugins/deploy`).
    pub plugins_dir: Option<PathBuf>,
    /// Header naming the tenant (default `x-tenant-id`).
    pub tenant_header: Option<String>,
    /// Bearer token for `/admin` (required when the admin API is served on a non-loopback
    /// address; never empty).
    pub admin_token: Option<String>,
    /// A separate address for `/admin`, `/admin/ui` and `/metrics` (none: served on `listen`).
    pub admin_listen: Option<String>,
    /// Bearer token for `/metrics` (none: `/metrics` is open, like `/healthz`).
    pub metrics_token: Option<String>,
    /// Largest request body, in KiB (default 8192).
    pub max_body_kb: Option<usize>,
    /// The eviction policy: `seed` (default) or `lru`, or the name of a scorer component in
    /// the plugins folder (e.g. `scorer-hybrid`).
    pub scorer: Option<String>,
    /// Folder for compiled components (default `.cache/polymongo`); must be writable only
    /// by the host.
    pub cache_dir: Option<PathBuf>,
    /// Plugins that may keep a fresh instance made ahead of their next request (default 16;
    /// 0 disables it). Each keeps its memory resident while it waits.
    pub ready_instances: Option<u32>,
    /// Watch the plugins folder and hot-reload changes (default true).
    pub watch: Option<bool>,
    /// Log format: `text` (default) or `json`.
    pub log_format: Option<String>,
    /// Time one eviction-scoring call may take before its decision falls back, ms (default 20).
    pub scorer_budget_ms: Option<u64>,
    /// Time an overrunning scoring call may go on before it is stopped and the scorer
    /// restarted, ms (default 1000; at least `scorer_budget_ms`).
    pub scorer_hard_limit_ms: Option<u64>,
    /// Latest events a scorer is given again in a fresh instance after a trap (default
    /// 65536; 0: it restarts empty).
    pub scorer_replay_events: Option<usize>,
    /// Log output and plugin log limits.
    #[serde(default)]
    pub logs: LogsSection,
    /// Connection-manager settings.
    #[serde(default)]
    pub pool: PoolSection,
    /// HTTP connection limits and timeouts.
    #[serde(default)]
    pub http: HttpSection,
    /// Background consumers of plugins' subscriptions.
    #[serde(default)]
    pub consumers: ConsumersSection,
    /// Default plugin limits (and `max_subscriptions_per_tenant`, a host-only limit).
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Routing rules, first match wins.
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
    /// Recording the request stream to a trace file (off unless `trace.file` is set).
    #[serde(default)]
    pub trace: TraceSection,
}

/// The `[trace]` section: a trace of the request stream, for `polymongo replay --trace`
/// (`recording.rs`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSection {
    /// The trace file (none: nothing is recorded); an existing one is moved to
    /// `FILE.previous` at start.
    pub file: Option<PathBuf>,
    /// The file stops growing at this size, MiB (default 256, at least 1).
    pub max_mb: Option<u64>,
    /// `hashed` (default: keyed hashes, the tenants' names cannot be read back) or `plain`.
    pub names: Option<String>,
}

/// Default size limit of a trace file, MiB.
pub const DEFAULT_TRACE_MAX_MB: u64 = 256;

/// The `[pool]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// Most pools open at once.
    pub max_connections: Option<usize>,
    /// Close pools idle this long (0 = never).
    pub idle_timeout_secs: Option<u64>,
    /// Metadata database.
    pub metadata_db: Option<String>,
    /// Database of `default_db()`.
    pub default_db: Option<String>,
    /// Sockets per database pool.
    pub max_pool_size: Option<u32>,
    /// Sockets being established at once per pool.
    pub max_connecting: Option<u32>,
    /// Driver server-selection timeout, ms.
    pub server_selection_timeout_ms: Option<u64>,
    /// How long a request waits for a slot when all pools are protected, ms.
    pub acquire_timeout_ms: Option<u64>,
    /// Pools opened at once (connection-storm control).
    pub max_concurrent_opens: Option<usize>,
    /// Allow `admin`, `local`, `config` as tenant databases.
    pub allow_reserved_databases: Option<bool>,
    /// Prefix of tenant databases (default `t_`; `""` keeps database = tenant name).
    pub tenant_db_prefix: Option<String>,
    /// New pools one client may make the host open per second (default 5).
    pub client_opens_per_sec: Option<f64>,
    /// New pools one client may make the host open in a burst (default 32; 0 = no limit).
    pub client_open_burst: Option<u32>,
    /// New pools all clients may make the host open per second (default 50).
    pub opens_per_sec: Option<f64>,
    /// New pools all clients may make the host open in a burst (default 128; 0 = no limit).
    pub open_burst: Option<u32>,
    /// How long an unused open cursor keeps its pool from eviction, ms (default 2000).
    pub cursor_grace_ms: Option<u64>,
    /// `"cluster"` (default: one shared driver client per connection target) or
    /// `"database"` (one client per database).
    pub client_sharing: Option<String>,
    /// Sockets of each shared client in `cluster` mode (default 100).
    pub shared_max_pool_size: Option<u32>,
    /// How plugins' change streams are served where no route says otherwise: `"streams"`
    /// (default: the server's change streams only), `"auto"` (the host's oplog feed where the
    /// server has no change streams but keeps an oplog) or `"oplog"` (always the oplog feed).
    pub change_feed: Option<String>,
}

/// The `[logs]` section: the log queue and the rate limits of plugin log lines (the `log`
/// import and captured stdout/stderr), per plugin and tenant.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogsSection {
    /// Log lines waiting to be written to stderr before new ones are dropped (default 8192).
    pub queue_lines: Option<usize>,
    /// Bytes of log lines waiting to be written, in KiB (default 8192).
    pub queue_kb: Option<usize>,
    /// Plugin log lines per second per plugin and tenant (default 100; 0 drops them all).
    pub plugin_lines_per_sec: Option<u32>,
    /// Plugin log lines at once after a quiet spell (default 200).
    pub plugin_burst_lines: Option<u32>,
    /// Plugin log bytes per second per plugin and tenant (default 65536).
    pub plugin_bytes_per_sec: Option<u64>,
    /// Plugin log bytes at once after a quiet spell (default 131072).
    pub plugin_burst_bytes: Option<u64>,
    /// (plugin, tenant) pairs tracked at once (default 4096); beyond, a plugin's further
    /// tenants share one budget.
    pub max_tracked: Option<usize>,
}

/// The `[consumers]` section: background consumers of plugins' `[[subscriptions]]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumersSection {
    /// Run the consumers on this host (default true; false on all hosts but one when several
    /// share a metadata database).
    pub enabled: Option<bool>,
    /// Most events per delivery (default 100, at most 10000).
    pub max_batch: Option<u32>,
    /// First wait after a failed delivery or a broken stream, ms (default 500).
    pub backoff_min_ms: Option<u64>,
    /// Longest wait between tries, ms (default 60000; at least `backoff_min_ms`).
    pub backoff_max_ms: Option<u64>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// Database-name pattern (`*`, `?`).
    pub pattern: String,
    /// URI or URI template (`{db}`, `${ENV_VAR}`).
    pub uri: String,
    /// How this route's databases watch changes (`"streams"`, `"auto"`, `"oplog"`); unset
    /// takes `pool.change_feed`.
    pub change_feed: Option<String>,
}

/// A change feed mode from the configuration, or an error naming `key`.
fn parse_change_feed(key: &str, mode: &str) -> Result<crate::pool::ChangeFeedMode, ConfigError> {
    mode.parse()
        .map_err(|e: String| ConfigError::Invalid(format!("{key}: {e}")))
}

impl ServeConfig {
    /// The listen address.
    pub fn listen(&self) -> &str {
        self.listen.as_deref().unwrap_or("127.0.0.1:8080")
    }

    /// The plugins folder.
    pub fn plugins_dir(&self) -> PathBuf {
        self.plugins_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("plugins/deploy"))
    }

    /// Whether logs are JSON.
    pub fn json_logs(&self) -> Result<bool, ConfigError> {
        match self.log_format.as_deref().unwrap_or("text") {
            "text" => Ok(false),
            "json" => Ok(true),
            other => Err(ConfigError::Invalid(format!(
                "log_format {other:?}: use \"text\" or \"json\""
            ))),
        }
    }

    /// Log lines waiting to be written to stderr before new ones are dropped.
    pub fn log_queue_lines(&self) -> usize {
        self.logs
            .queue_lines
            .unwrap_or(crate::logging::DEFAULT_QUEUE_LINES)
    }

    /// Bytes of log lines waiting to be written, in KiB.
    pub fn log_queue_kb(&self) -> usize {
        self.logs
            .queue_kb
            .unwrap_or(crate::logging::DEFAULT_QUEUE_KB)
    }

    /// Rate limits of plugin log lines.
    pub fn log_limits(&self) -> LogLimits {
        let d = LogLimits::default();
        let l = &self.logs;
        LogLimits {
            lines_per_sec: l.plugin_lines_per_sec.unwrap_or(d.lines_per_sec),
            burst_lines: l.plugin_burst_lines.unwrap_or(d.burst_lines),
            bytes_per_sec: l.plugin_bytes_per_sec.unwrap_or(d.bytes_per_sec),
            burst_bytes: l.plugin_burst_bytes.unwrap_or(d.burst_bytes),
            max_tracked: l.max_tracked.unwrap_or(d.max_tracked),
        }
    }

    /// The connection manager's configuration.
    pub fn pool_config(&self) -> Result<PoolConfig, ConfigError> {
        let uri = self.mongo_uri.clone().ok_or(ConfigError::Missing(
            "mongo_uri (or --mongo-uri / POLYMONGO_MONGO_URI)",
        ))?;
        let mut c = PoolConfig::new(uri);
        let p = &self.pool;
        c.max_connections = p.max_connections.or(c.max_connections);
        if let Some(secs) = p.idle_timeout_secs {
            c.idle_timeout = (secs > 0).then(|| Duration::from_secs(secs));
        }
        if let Some(db) = &p.metadata_db {
            c.metadata_db = db.clone();
        }
        if let Some(db) = &p.default_db {
            c.default_db = db.clone();
        }
        c.max_pool_size = p.max_pool_size.unwrap_or(c.max_pool_size);
        c.max_connecting = p.max_connecting.unwrap_or(c.max_connecting);
        if let Some(ms) = p.server_selection_timeout_ms {
            c.server_selection_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = p.acquire_timeout_ms {
            c.acquire_timeout = Duration::from_millis(ms);
        }
        c.max_concurrent_opens = p.max_concurrent_opens.unwrap_or(c.max_concurrent_opens);
        c.allow_reserved_databases = p.allow_reserved_databases.unwrap_or(false);
        if let Some(prefix) = &p.tenant_db_prefix {
            c.tenant_db_prefix = prefix.clone();
        }
        let r = &mut c.open_rate;
        r.per_client_per_sec = p.client_opens_per_sec.unwrap_or(r.per_client_per_sec);
        r.per_client_burst = p.client_open_burst.unwrap_or(r.per_client_burst);
        r.global_per_sec = p.opens_per_sec.unwrap_or(r.global_per_sec);
        r.global_burst = p.open_burst.unwrap_or(r.global_burst);
        if let Some(ms) = p.cursor_grace_ms {
            c.cursor_grace = Duration::from_millis(ms);
        }
        if let Some(mode) = &p.client_sharing {
            c.client_sharing = mode
                .parse()
                .map_err(|e: crate::pool::Error| ConfigError::Invalid(format!("pool.{e}")))?;
        }
        c.shared_max_pool_size = p.shared_max_pool_size.unwrap_or(c.shared_max_pool_size);
        if let Some(mode) = &p.change_feed {
            c.change_feed = parse_change_feed("pool.change_feed", mode)?;
        }
        c.routes = self
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let rule = RouteRule::new(&r.pattern, &r.uri);
                match &r.change_feed {
                    Some(mode) => {
                        let key = format!("routes[{i}].change_feed");
                        Ok(rule.with_change_feed(parse_change_feed(&key, mode)?))
                    }
                    None => Ok(rule),
                }
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(c)
    }

    /// The runtime's configuration.
    pub fn runtime_config(&self) -> RuntimeConfig {
        RuntimeConfig {
            default_limits: Limits::default().with_overrides(&self.limits),
            cache_dir: Some(
                self.cache_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(".cache/polymongo")),
            ),
            ready_instances: self
                .ready_instances
                .unwrap_or(RuntimeConfig::default().ready_instances),
            scorer_budget: self.scorer_budget_ms.map_or(
                RuntimeConfig::default().scorer_budget,
                Duration::from_millis,
            ),
            scorer_hard_limit: self.scorer_hard_limit_ms.map_or(
                RuntimeConfig::default().scorer_hard_limit,
                Duration::from_millis,
            ),
            scorer_replay_events: self
                .scorer_replay_events
                .unwrap_or(RuntimeConfig::default().scorer_replay_events),
            log_limits: self.log_limits(),
            ..RuntimeConfig::default()
        }
    }

    /// Whether this host runs the background consumers (`consumers.enabled`, default true).
    pub fn consumers_enabled(&self) -> bool {
        self.consumers.enabled.unwrap_or(true)
    }

    /// The trace recording's options, when `trace.file` is set.
    pub fn trace_options(&self) -> Result<Option<crate::recording::TraceOptions>, ConfigError> {
        let Some(path) = &self.trace.file else {
            return Ok(None);
        };
        let max_mb = self.trace.max_mb.unwrap_or(DEFAULT_TRACE_MAX_MB);
        if max_mb == 0 {
            return Err(ConfigError::Invalid(
                "trace.max_mb must be at least 1".into(),
            ));
        }
        let names = match &self.trace.names {
            Some(names) => names
                .parse()
                .map_err(|e| ConfigError::Invalid(format!("trace.names: {e}")))?,
            None => crate::recording::TraceNames::Hashed,
        };
        Ok(Some(crate::recording::TraceOptions {
            path: path.clone(),
            max_bytes: max_mb.saturating_mul(1 << 20),
            names,
        }))
    }

    /// The background consumers' configuration.
    pub fn consumers_config(&self) -> ConsumersConfig {
        let d = ConsumersConfig::default();
        let c = &self.consumers;
        ConsumersConfig {
            max_batch: c.max_batch.unwrap_or(d.max_batch),
            backoff_min: c
                .backoff_min_ms
                .map_or(d.backoff_min, Duration::from_millis),
            backoff_max: c
                .backoff_max_ms
                .map_or(d.backoff_max, Duration::from_millis),
            max_per_tenant: self
                .limits
                .max_subscriptions_per_tenant
                .unwrap_or(d.max_per_tenant),
        }
    }

    /// Options of the gateway's router (`/metrics` access).
    pub fn router_options(&self) -> crate::gateway::RouterOptions {
        crate::gateway::RouterOptions {
            metrics_token: self.metrics_token.clone().filter(|t| !t.is_empty()),
            trace: None,
        }
    }

    /// The gateway's configuration.
    pub fn gateway_config(&self) -> GatewayConfig {
        let defaults = GatewayConfig::default();
        GatewayConfig {
            tenant_header: self
                .tenant_header
                .clone()
                .map(|h| h.to_ascii_lowercase())
                .unwrap_or(defaults.tenant_header),
            admin_token: self.admin_token.clone().filter(|t| !t.is_empty()),
            max_body_bytes: self
                .max_body_kb
                .map(|kb| kb * 1024)
                .unwrap_or(defaults.max_body_bytes),
            body_read_timeout: self.http.body_read_timeout(),
        }
    }

    /// The admin listener's address, when the admin API is served apart.
    pub fn admin_listen(&self) -> Option<&str> {
        self.admin_listen.as_deref()
    }

    /// The effective configuration as TOML, secrets masked (URIs' passwords, the admin token).
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.mongo_uri = shown.mongo_uri.map(|u| SecretUri::new(u).redacted());
        shown.admin_token = shown.admin_token.map(|_| MASK.to_string());
        shown.metrics_token = shown.metrics_token.map(|_| MASK.to_string());
        for route in &mut shown.routes {
            route.uri = SecretUri::new(route.uri.clone()).redacted();
        }
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }
}
