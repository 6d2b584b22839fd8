//! The host's configuration file (`polymongo.toml`), for `polymongo serve`.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! mongo_uri = "mongodb://127.0.0.1:27017"
//! plugins_dir = "plugins/deploy"
//! tenant_header = "x-tenant-id"
//! admin_token = "change-me"
//!
//! [pool]
//! max_connections = 100
//! idle_timeout_secs = 600
//! max_pool_size = 5
//!
//! scorer = "seed"   # or "lru", or a scorer component's name, e.g. "scorer-adaptive"
//!
//! [limits]          # defaults for plugins without a manifest
//! memory_mb = 64
//! deadline_ms = 5000
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::gateway::GatewayConfig;
use crate::pool::Config as PoolConfig;
use crate::runtime::{LimitOverrides, Limits, RuntimeConfig};

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
    /// The file is not valid TOML for this schema.
    #[error("invalid configuration in {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A required value is missing.
    #[error("missing setting: {0}")]
    Missing(&'static str),
}

/// Everything `polymongo serve` needs; every key optional in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on (default 127.0.0.1:8080).
    pub listen: Option<String>,
    /// MongoDB base URI (required, here or by flag/env).
    pub mongo_uri: Option<String>,
    /// The plugins folder (default `plugins/deploy`).
    pub plugins_dir: Option<PathBuf>,
    /// Header naming the tenant (default `x-tenant-id`).
    pub tenant_header: Option<String>,
    /// Bearer token for `/admin`.
    pub admin_token: Option<String>,
    /// Largest request body, in KiB (default 8192).
    pub max_body_kb: Option<usize>,
    /// The eviction policy: `seed` (default) or `lru`, or the name of a scorer component in
    /// the plugins folder (e.g. `scorer-adaptive`).
    pub scorer: Option<String>,
    /// Folder for compiled components (default `.cache/polymongo`); must be writable only
    /// by the host.
    pub cache_dir: Option<PathBuf>,
    /// Watch the plugins folder and hot-reload changes (default true).
    pub watch: Option<bool>,
    /// Connection-manager settings.
    #[serde(default)]
    pub pool: PoolSection,
    /// Default plugin limits.
    #[serde(default)]
    pub limits: LimitOverrides,
}

/// The `[pool]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// Most pools open at once.
    pub max_connections: Option<usize>,
    /// Close pools idle this long (0 = never).
    pub idle_timeout_secs: Option<u64>,
    /// Metadata database.
    pub metadata_db: Option<String>,
    /// Sockets per database pool.
    pub max_pool_size: Option<u32>,
    /// Sockets being established at once per pool.
    pub max_connecting: Option<u32>,
    /// Driver server-selection timeout, ms.
    pub server_selection_timeout_ms: Option<u64>,
    /// How long a request waits for a slot when all pools are protected, ms.
    pub acquire_timeout_ms: Option<u64>,
    /// Allow `admin`, `local`, `config` as tenant databases.
    pub allow_reserved_databases: Option<bool>,
}

impl ServeConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
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
        c.max_pool_size = p.max_pool_size.unwrap_or(c.max_pool_size);
        c.max_connecting = p.max_connecting.unwrap_or(c.max_connecting);
        if let Some(ms) = p.server_selection_timeout_ms {
            c.server_selection_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = p.acquire_timeout_ms {
            c.acquire_timeout = Duration::from_millis(ms);
        }
        c.allow_reserved_databases = p.allow_reserved_databases.unwrap_or(false);
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
            ..RuntimeConfig::default()
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
        }
    }
}
