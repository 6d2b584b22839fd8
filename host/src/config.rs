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
//! scorer = "seed"            # or "lru", or a scorer component's name, e.g. "scorer-adaptive"
//!
//! [pool]
//! max_connections = 64       # the default; sockets <= max_connections x (max_pool_size + 2)
//! idle_timeout_secs = 600
//! max_pool_size = 5
//! client_sharing = "cluster"  # the default: one driver client per target, shared by its databases
//! shared_max_pool_size = 100 # sockets of each shared client
//! tenant_db_prefix = "t_"    # tenant acme -> database t_acme (the default)
//!
//! [http]                     # connection limits and timeouts (config/http.rs)
//! max_connections = 1024
//! max_connections_per_ip = 64
//!
//! [limits]                   # defaults for plugins without a manifest
//! memory_mb = 64
//! deadline_ms = 5000
//!
//! [logs]                     # plugin log rate limits, per plugin and tenant
//! plugin_lines_per_sec = 100
//! plugin_bytes_per_sec = 65536
//!
//! [[routes]]                 # databases matching a pattern go to another cluster
//! pattern = "eu-*"
//! uri = "mongodb://eu-cluster.internal:27017"
//!
//! [[routes]]                 # per-tenant credentials from the environment
//! pattern = "vip-*"
//! uri = "mongodb://{db}:${VIP_PASSWORD_{db}}@vip-cluster.internal/?authSource=admin"
//! ```

mod http;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use http::HttpSection;

use crate::gateway::GatewayConfig;
use crate::pool::{Config as PoolConfig, RouteRule, Routes, SecretUri, MASK};
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
    /// the plugins folder (e.g. `scorer-adaptive`).
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
    /// Default plugin limits.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Routing rules, first match wins.
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
}

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

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// Database-name pattern (`*`, `?`).
    pub pattern: String,
    /// URI or URI template (`{db}`, `${ENV_VAR}`).
    pub uri: String,
}

/// Every key path, for environment variables (`POLYMONGO_` + path with `.` → `_`, upper case).
pub const KEYS: &[&str] = &[
    "listen",
    "mongo_uri",
    "plugins_dir",
    "tenant_header",
    "admin_token",
    "admin_listen",
    "metrics_token",
    "max_body_kb",
    "scorer",
    "cache_dir",
    "ready_instances",
    "watch",
    "log_format",
    "scorer_budget_ms",
    "scorer_hard_limit_ms",
    "scorer_replay_events",
    "logs.queue_lines",
    "logs.queue_kb",
    "logs.plugin_lines_per_sec",
    "logs.plugin_burst_lines",
    "logs.plugin_bytes_per_sec",
    "logs.plugin_burst_bytes",
    "logs.max_tracked",
    "pool.max_connections",
    "pool.idle_timeout_secs",
    "pool.metadata_db",
    "pool.default_db",
    "pool.max_pool_size",
    "pool.max_connecting",
    "pool.server_selection_timeout_ms",
    "pool.acquire_timeout_ms",
    "pool.max_concurrent_opens",
    "pool.allow_reserved_databases",
    "http.max_connections",
    "http.max_connections_per_ip",
    "http.header_read_timeout_secs",
    "http.body_read_timeout_secs",
    "http.idle_timeout_secs",
    "pool.tenant_db_prefix",
    "pool.client_opens_per_sec",
    "pool.client_open_burst",
    "pool.opens_per_sec",
    "pool.open_burst",
    "pool.cursor_grace_ms",
    "pool.client_sharing",
    "pool.shared_max_pool_size",
    "limits.memory_mb",
    "limits.deadline_ms",
    "limits.max_result_kb",
    "limits.max_request_result_kb",
    "limits.max_open_cursors",
    "limits.max_open_streams",
    "limits.max_concurrent",
    "limits.host_memory_mb",
    "limits.max_document_depth",
    "limits.max_query_depth",
    "limits.max_concurrent_per_tenant",
    "routes",
];

/// The environment variable for a key path.
pub fn env_name(key: &str) -> String {
    format!("POLYMONGO_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Builds a configuration from layers: an optional file, then environment variables, then
/// `key=value` overrides (values in TOML syntax; bare words are strings).
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[String],
) -> Result<ServeConfig, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            text.parse::<toml::Table>()
                .map_err(|e| ConfigError::Parse {
                    origin: path.display().to_string(),
                    message: e.to_string(),
                })?
        }
        None => toml::Table::new(),
    };
    let env: std::collections::HashMap<String, String> = env.into_iter().collect();
    for key in KEYS {
        if let Some(value) = env.get(&env_name(key)) {
            set(&mut table, key, value, &env_name(key))?;
        }
    }
    for item in overrides {
        let (key, value) = item.split_once('=').ok_or_else(|| ConfigError::Parse {
            origin: format!("--set {item}"),
            message: "expected key=value".into(),
        })?;
        let key = key.trim();
        if !KEYS.contains(&key) {
            return Err(ConfigError::Parse {
                origin: format!("--set {item}"),
                message: format!("unknown key {key:?}; known keys: {}", KEYS.join(", ")),
            });
        }
        set(&mut table, key, value, &format!("--set {key}"))?;
    }
    let origin = file.map_or_else(
        || "environment and flags".to_string(),
        |p| format!("{} + environment and flags", p.display()),
    );
    table
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            origin,
            message: e.to_string(),
        })
}

/// Sets `key` (a dotted path) in `table` to `raw`, parsed as a TOML value when it is one.
fn set(table: &mut toml::Table, key: &str, raw: &str, origin: &str) -> Result<(), ConfigError> {
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or(key);
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| ConfigError::Parse {
            origin: origin.to_string(),
            message: format!("{part} is not a table"),
        })?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

impl ServeConfig {
    /// Reads a TOML file (no environment or flags).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        load(Some(path), std::iter::empty(), &[])
    }

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
        c.routes = self
            .routes
            .iter()
            .map(|r| RouteRule::new(&r.pattern, &r.uri))
            .collect();
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

    /// Options of the gateway's router (`/metrics` access).
    pub fn router_options(&self) -> crate::gateway::RouterOptions {
        crate::gateway::RouterOptions {
            metrics_token: self.metrics_token.clone().filter(|t| !t.is_empty()),
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

    /// Checks everything that can be checked without connecting: required keys, URIs and
    /// routing rules (syntax), names, limits, the log format.
    pub fn check(&self) -> Result<(), ConfigError> {
        let pool = self.pool_config()?;
        mongodb::options::ConnectionString::parse(pool.mongo_uri.expose()).map_err(|e| {
            ConfigError::Invalid(format!(
                "mongo_uri {}: {}",
                pool.mongo_uri.redacted(),
                e.kind
            ))
        })?;
        Routes::new(pool.routes.clone()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for (key, name) in [
            ("pool.metadata_db", &pool.metadata_db),
            ("pool.default_db", &pool.default_db),
        ] {
            crate::pool::name::validate_syntax(name)
                .map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))?;
        }
        if pool.max_connections == Some(0) {
            return Err(ConfigError::Invalid(
                "pool.max_connections must be at least 1".into(),
            ));
        }
        let namespace = crate::pool::TenantNamespace::new(&pool.tenant_db_prefix)
            .map_err(|e| ConfigError::Invalid(format!("pool.{e}")))?;
        for (key, name) in [
            ("pool.metadata_db", &pool.metadata_db),
            ("pool.default_db", &pool.default_db),
        ] {
            namespace
                .check_outside(key, name)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        let rate = pool.open_rate;
        if !(rate.per_client_per_sec >= 0.0 && rate.global_per_sec >= 0.0) {
            return Err(ConfigError::Invalid(
                "pool.client_opens_per_sec and pool.opens_per_sec must be 0 or more".into(),
            ));
        }
        let l = &self.limits;
        if l.memory_mb == Some(0)
            || l.deadline_ms == Some(0)
            || l.max_concurrent == Some(0)
            || l.max_concurrent_per_tenant == Some(0)
        {
            return Err(ConfigError::Invalid(
                "limits must be greater than zero".into(),
            ));
        }
        self.http.check()?;
        self.check_listeners()?;
        let runtime = self.runtime_config();
        if runtime.scorer_budget.is_zero() || runtime.scorer_hard_limit < runtime.scorer_budget {
            return Err(ConfigError::Invalid(
                "scorer_budget_ms must be greater than zero and scorer_hard_limit_ms at least as large".into(),
            ));
        }
        if self.log_queue_lines() == 0
            || self.log_queue_kb() == 0
            || runtime.log_limits.max_tracked == 0
        {
            return Err(ConfigError::Invalid(
                "logs.queue_lines, logs.queue_kb and logs.max_tracked must be at least 1".into(),
            ));
        }
        self.limits
            .check()
            .map_err(|e| ConfigError::Invalid(format!("limits: {e}")))?;
        self.json_logs()?;
        Ok(())
    }

    /// The listen addresses parse, and the admin API is not open beyond this machine: a
    /// token, when set, is not empty, and without one the admin API's address is loopback.
    fn check_listeners(&self) -> Result<(), ConfigError> {
        let addr = |key: &str, value: &str| {
            value
                .parse::<std::net::SocketAddr>()
                .map_err(|e| ConfigError::Invalid(format!("{key} {value:?}: {e}")))
        };
        let listen = addr("listen", self.listen())?;
        let admin = match &self.admin_listen {
            Some(a) => {
                let admin = addr("admin_listen", a)?;
                if admin == listen {
                    return Err(ConfigError::Invalid(format!(
                        "admin_listen {a:?} is the same address as listen"
                    )));
                }
                admin
            }
            None => listen,
        };
        for (key, token) in [
            ("admin_token", &self.admin_token),
            ("metrics_token", &self.metrics_token),
        ] {
            if token.as_ref().is_some_and(|t| t.trim().is_empty()) {
                return Err(ConfigError::Invalid(format!(
                    "{key} is empty: set a real token, or remove the key"
                )));
            }
        }
        if self.admin_token.is_none() && !admin.ip().is_loopback() {
            let key = if self.admin_listen.is_some() {
                "admin_listen"
            } else {
                "listen"
            };
            return Err(ConfigError::Invalid(format!(
                "the admin API would be open to the network on {admin} ({key}) without a \
                 token: set admin_token, or serve the admin API on a loopback address \
                 (admin_listen = \"127.0.0.1:8081\")"
            )));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_key_has_an_environment_variable_that_parses() {
        let values = [
            ("listen", "127.0.0.1:9"),
            ("mongo_uri", "mongodb://h/"),
            ("plugins_dir", "p"),
            ("tenant_header", "x-t"),
            ("admin_token", "t"),
            ("admin_listen", "127.0.0.1:10"),
            ("metrics_token", "m"),
            ("max_body_kb", "1"),
            ("scorer", "lru"),
            ("cache_dir", "c"),
            ("ready_instances", "4"),
            ("watch", "false"),
            ("log_format", "json"),
            ("scorer_budget_ms", "30"),
            ("scorer_hard_limit_ms", "3000"),
            ("scorer_replay_events", "500"),
            ("logs.queue_lines", "100"),
            ("logs.queue_kb", "64"),
            ("logs.plugin_lines_per_sec", "5"),
            ("logs.plugin_burst_lines", "10"),
            ("logs.plugin_bytes_per_sec", "1000"),
            ("logs.plugin_burst_bytes", "2000"),
            ("logs.max_tracked", "7"),
            ("pool.max_connections", "3"),
            ("pool.idle_timeout_secs", "0"),
            ("pool.metadata_db", "meta"),
            ("pool.default_db", "def"),
            ("pool.max_pool_size", "2"),
            ("pool.max_connecting", "1"),
            ("pool.server_selection_timeout_ms", "100"),
            ("pool.acquire_timeout_ms", "100"),
            ("pool.max_concurrent_opens", "4"),
            ("pool.allow_reserved_databases", "true"),
            ("http.max_connections", "5"),
            ("http.max_connections_per_ip", "2"),
            ("http.header_read_timeout_secs", "3"),
            ("http.body_read_timeout_secs", "4"),
            ("http.idle_timeout_secs", "6"),
            ("pool.tenant_db_prefix", "tenant-"),
            ("pool.client_opens_per_sec", "2.5"),
            ("pool.client_open_burst", "8"),
            ("pool.opens_per_sec", "20"),
            ("pool.open_burst", "40"),
            ("pool.cursor_grace_ms", "500"),
            ("pool.client_sharing", "database"),
            ("pool.shared_max_pool_size", "12"),
            ("limits.memory_mb", "8"),
            ("limits.deadline_ms", "100"),
            ("limits.max_result_kb", "1"),
            ("limits.max_request_result_kb", "2"),
            ("limits.max_open_cursors", "3"),
            ("limits.max_open_streams", "9"),
            ("limits.max_concurrent", "4"),
            ("limits.host_memory_mb", "5"),
            ("limits.max_document_depth", "6"),
            ("limits.max_query_depth", "7"),
            ("limits.max_concurrent_per_tenant", "2"),
            ("routes", r#"[{ pattern = "eu-*", uri = "mongodb://eu/" }]"#),
        ];
        assert_eq!(values.len(), KEYS.len());
        let vars: Vec<(String, String)> = values
            .iter()
            .map(|(k, v)| (env_name(k), v.to_string()))
            .collect();
        let c = load(None, vars, &[]).unwrap();
        assert_eq!(c.listen(), "127.0.0.1:9");
        assert_eq!(c.watch, Some(false));
        assert_eq!(c.pool.max_connections, Some(3));
        assert_eq!(c.pool.allow_reserved_databases, Some(true));
        assert_eq!(c.limits.max_concurrent, Some(4));
        assert_eq!(c.admin_listen(), Some("127.0.0.1:10"));
        let limits = c.http.connection_limits();
        assert_eq!(
            (limits.max_connections, limits.max_connections_per_ip),
            (5, 2)
        );
        assert_eq!(limits.header_read_timeout, Duration::from_secs(3));
        assert_eq!(limits.idle_timeout, Duration::from_secs(6));
        assert_eq!(c.gateway_config().body_read_timeout, Duration::from_secs(4));
        assert_eq!(c.limits.host_memory_mb, Some(5));
        assert_eq!(c.limits.max_query_depth, Some(7));
        assert_eq!(c.limits.max_concurrent_per_tenant, Some(2));
        let pool = c.pool_config().unwrap();
        assert_eq!(pool.tenant_db_prefix, "tenant-");
        assert_eq!(pool.open_rate.per_client_per_sec, 2.5);
        assert_eq!(pool.open_rate.per_client_burst, 8);
        assert_eq!(pool.open_rate.global_per_sec, 20.0);
        assert_eq!(pool.open_rate.global_burst, 40);
        assert_eq!(pool.cursor_grace, Duration::from_millis(500));
        assert_eq!(c.limits.max_open_streams, Some(9));
        assert_eq!(pool.client_sharing, crate::pool::ClientSharing::Database);
        assert_eq!(pool.shared_max_pool_size, 12);
        assert_eq!(c.routes[0].pattern, "eu-*");
        assert!(c.json_logs().unwrap());
        assert_eq!(c.log_queue_lines(), 100);
        assert_eq!(c.log_queue_kb(), 64);
        let runtime = c.runtime_config();
        assert_eq!(runtime.scorer_budget, Duration::from_millis(30));
        assert_eq!(runtime.scorer_hard_limit, Duration::from_secs(3));
        assert_eq!(runtime.scorer_replay_events, 500);
        assert_eq!(
            runtime.log_limits,
            LogLimits {
                lines_per_sec: 5,
                burst_lines: 10,
                bytes_per_sec: 1000,
                burst_bytes: 2000,
                max_tracked: 7,
            }
        );
        c.check().unwrap();
    }

    #[test]
    fn flags_override_environment_override_file() {
        let dir = tempdir();
        let file = dir.join("polymongo.toml");
        std::fs::write(
            &file,
            "mongo_uri = \"mongodb://file/\"\n[pool]\nmax_connections = 10\nmax_pool_size = 7\n",
        )
        .unwrap();
        let c = load(
            Some(&file),
            env(&[
                ("POLYMONGO_POOL_MAX_CONNECTIONS", "20"),
                ("POLYMONGO_MONGO_URI", "mongodb://env/"),
            ]),
            &["pool.max_connections=30".to_string()],
        )
        .unwrap();
        assert_eq!(c.pool.max_connections, Some(30));
        assert_eq!(c.pool.max_pool_size, Some(7));
        assert_eq!(c.mongo_uri.as_deref(), Some("mongodb://env/"));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn bad_values_say_where_they_came_from() {
        let err = load(
            None,
            env(&[("POLYMONGO_POOL_MAX_CONNECTIONS", "many")]),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_connections"), "{err}");
        let err = load(None, Vec::new(), &["nope=1".to_string()]).unwrap_err();
        assert!(err.to_string().contains("unknown key"), "{err}");
        let c = load(
            None,
            env(&[("POLYMONGO_MONGO_URI", "mongodb://h/")]),
            &["listen=nowhere".to_string()],
        )
        .unwrap();
        assert!(c.check().unwrap_err().to_string().contains("listen"));
        let c = load(None, Vec::new(), &[]).unwrap();
        assert!(matches!(c.check(), Err(ConfigError::Missing(_))));
    }

    #[test]
    fn tenant_defaults_are_safe_and_the_prefix_is_checked() {
        let base = env(&[("POLYMONGO_MONGO_URI", "mongodb://h/")]);
        let c = load(None, base.clone(), &[]).unwrap();
        let pool = c.pool_config().unwrap();
        assert_eq!(
            pool.max_connections,
            Some(crate::pool::DEFAULT_MAX_CONNECTIONS)
        );
        assert_eq!(pool.tenant_db_prefix, "t_");
        c.check().unwrap();
        let c = load(
            None,
            base.clone(),
            &["pool.tenant_db_prefix=\"\"".to_string()],
        )
        .unwrap();
        assert_eq!(c.pool_config().unwrap().tenant_db_prefix, "");
        c.check().unwrap();
        for bad in [
            "pool.tenant_db_prefix=\"T.\"",
            "pool.metadata_db=t_meta",
            "pool.client_opens_per_sec=-1",
            "limits.max_concurrent_per_tenant=0",
        ] {
            let c = load(None, base.clone(), &[bad.to_string()]).unwrap();
            assert!(c.check().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_printed_configuration_masks_secrets() {
        let c = load(
            None,
            env(&[
                ("POLYMONGO_MONGO_URI", "mongodb://u:hunter2@h/"),
                ("POLYMONGO_ADMIN_TOKEN", "tok-secret"),
            ]),
            &[r#"routes=[{ pattern = "eu-*", uri = "mongodb://e:eu-pass@eu/" }]"#.to_string()],
        )
        .unwrap();
        let shown = c.to_masked_toml();
        for secret in ["hunter2", "tok-secret", "eu-pass"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("mongodb://u:****@h/"), "{shown}");
    }

    fn checked(sets: &[&str]) -> Result<(), ConfigError> {
        let mut overrides = vec!["mongo_uri=mongodb://h/".to_string()];
        overrides.extend(sets.iter().map(|s| s.to_string()));
        load(None, Vec::new(), &overrides).unwrap().check()
    }

    #[test]
    fn the_admin_api_is_never_open_to_the_network() {
        checked(&[]).unwrap();
        let err = checked(&["listen=0.0.0.0:8080"]).unwrap_err().to_string();
        assert!(
            err.contains("admin_token") && err.contains("0.0.0.0:8080"),
            "{err}"
        );
        let err = checked(&["listen=[::]:8080"]).unwrap_err().to_string();
        assert!(err.contains("admin_token"), "{err}");
        checked(&["listen=0.0.0.0:8080", "admin_token=s3cret"]).unwrap();
        // The tenant port public, the admin API on loopback only: fine without a token.
        checked(&["listen=0.0.0.0:8080", "admin_listen=127.0.0.1:8081"]).unwrap();
        let err = checked(&["admin_listen=0.0.0.0:8081"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("admin_listen"), "{err}");
        let err = checked(&["admin_listen=127.0.0.1:8080"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("same address"), "{err}");
        let err = checked(&["admin_listen=nowhere"]).unwrap_err().to_string();
        assert!(err.contains("admin_listen"), "{err}");
    }

    #[test]
    fn an_empty_token_is_a_configuration_error() {
        for set in [
            "admin_token=",
            "admin_token=\"\"",
            "admin_token=\"  \"",
            "metrics_token=",
        ] {
            let err = checked(&[set]).unwrap_err().to_string();
            assert!(err.contains("is empty"), "{set}: {err}");
        }
        let err = checked(&["listen=0.0.0.0:8080", "admin_token="])
            .unwrap_err()
            .to_string();
        assert!(err.contains("admin_token is empty"), "{err}");
    }

    #[test]
    fn zero_http_limits_are_refused() {
        for key in [
            "http.max_connections",
            "http.max_connections_per_ip",
            "http.header_read_timeout_secs",
            "http.body_read_timeout_secs",
            "http.idle_timeout_secs",
        ] {
            let err = checked(&[&format!("{key}=0")]).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "polymongo-config-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
