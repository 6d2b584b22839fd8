//! Loading the configuration in layers: the TOML file, then `POLYMONGO_*` environment
//! variables, then `--set key=value` flags.

use std::path::Path;

use super::{ConfigError, ServeConfig};

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
    "pool.change_feed",
    "limits.memory_mb",
    "limits.deadline_ms",
    "limits.max_result_kb",
    "limits.max_request_result_kb",
    "limits.max_open_cursors",
    "limits.max_open_streams",
    "limits.stream_lifetime_ms",
    "limits.max_open_transactions",
    "limits.max_concurrent",
    "limits.host_memory_mb",
    "limits.max_document_depth",
    "limits.max_query_depth",
    "limits.max_concurrent_per_tenant",
    "limits.max_subscriptions_per_tenant",
    "consumers.enabled",
    "consumers.max_batch",
    "consumers.backoff_min_ms",
    "consumers.backoff_max_ms",
    "trace.file",
    "trace.max_mb",
    "trace.names",
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
}
