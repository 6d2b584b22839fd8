//! Configuration of the connection manager (the options of the original library, plus the
//! knobs a production deployment needs).

use std::time::Duration;

use super::admission::OpenRateLimits;
use super::clients::ClientSharing;
use super::feed::ChangeFeedMode;
use super::namespace::DEFAULT_TENANT_DB_PREFIX;
use super::routing::RouteRule;
use super::secret::SecretUri;

/// Settings of a [`PolyMongo`](super::PolyMongo) manager. Build one with
/// [`PolyMongo::builder`](super::PolyMongo::builder).
#[derive(Debug, Clone)]
pub struct Config {
    /// Base MongoDB URI (`mongodb://` or `mongodb+srv://`); the database is set per pool.
    pub mongo_uri: SecretUri,
    /// Routing rules: database-name patterns mapped to other URIs (first match wins; the
    /// base URI serves the rest and the metadata database).
    pub routes: Vec<RouteRule>,
    /// Most per-database pools open at once (a hard cap); `None` = unlimited. Default
    /// [`DEFAULT_MAX_CONNECTIONS`]: each pool holds up to `max_pool_size` sockets plus the
    /// driver's monitoring sockets, so the cap is what bounds the host's socket count.
    pub max_connections: Option<usize>,
    /// Close a pool idle this long; `None` disables idle closing.
    pub idle_timeout: Option<Duration>,
    /// How often the idle sweeper runs (default: a quarter of the idle timeout, 1 s to 30 s).
    pub sweep_interval: Option<Duration>,
    /// Database holding per-database metadata (priorities).
    pub metadata_db: String,
    /// Database used by [`PolyMongo::default_db`](super::PolyMongo::default_db).
    pub default_db: String,
    /// Sockets per database pool (the driver's `max_pool_size`).
    pub max_pool_size: u32,
    /// Sockets a pool may be establishing at once (the driver's `max_connecting`).
    pub max_connecting: u32,
    /// How long the driver looks for a usable server before failing.
    pub server_selection_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// How long a request waits for a slot when every open pool is protected.
    pub acquire_timeout: Duration,
    /// Pools being opened at once, across all databases (connection-storm control).
    pub max_concurrent_opens: usize,
    /// Ping the server when a pool is opened, so a dead server fails the open clearly.
    pub verify_on_open: bool,
    /// Allow `admin`, `local`, `config` and the metadata database as tenant databases.
    pub allow_reserved_databases: bool,
    /// How long `destroy()` waits for operations in flight before closing anyway.
    pub shutdown_timeout: Duration,
    /// Application name the driver reports to the server.
    pub app_name: String,
    /// Prefix of tenant databases (see [`TenantNamespace`](super::TenantNamespace)); default
    /// `t_`. Empty: a tenant's database is its (lower-cased) name, as before.
    pub tenant_db_prefix: String,
    /// How fast requests may make the host open pools for databases not open (storm control).
    pub open_rate: OpenRateLimits,
    /// How long an open cursor left unused keeps its pool protected from eviction (pool-slot
    /// fairness: idle cursors cannot pin every slot).
    pub cursor_grace: Duration,
    /// Whether databases on one connection target share a driver client (`Cluster`, the
    /// default) or each get their own (`Database`); see [`ClientSharing`].
    pub client_sharing: ClientSharing,
    /// Sockets of each shared client (one per connection target) in `Cluster` mode.
    pub shared_max_pool_size: u32,
    /// How databases without a route of their own watch changes (default: change streams only).
    pub change_feed: ChangeFeedMode,
}

/// The default socket-pool size of a shared client: 100 sockets (+ 2 monitoring) per target.
pub const DEFAULT_SHARED_MAX_POOL_SIZE: u32 = 100;

/// The default cap on open pools: 64 pools x (5 sockets + 2 monitoring) = 448 sockets.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

impl Config {
    /// Defaults for everything but the URI.
    pub fn new(mongo_uri: impl Into<String>) -> Self {
        Self {
            mongo_uri: SecretUri::new(mongo_uri),
            routes: Vec::new(),
            max_connections: Some(DEFAULT_MAX_CONNECTIONS),
            idle_timeout: Some(Duration::from_secs(600)),
            sweep_interval: None,
            metadata_db: "polymongo-metadata".into(),
            default_db: "Default-DB".into(),
            max_pool_size: 5,
            max_connecting: 2,
            server_selection_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            max_concurrent_opens: 8,
            verify_on_open: true,
            allow_reserved_databases: false,
            shutdown_timeout: Duration::from_secs(30),
            app_name: "polymongo".into(),
            tenant_db_prefix: DEFAULT_TENANT_DB_PREFIX.into(),
            open_rate: OpenRateLimits::default(),
            cursor_grace: Duration::from_secs(2),
            client_sharing: ClientSharing::default(),
            shared_max_pool_size: DEFAULT_SHARED_MAX_POOL_SIZE,
            change_feed: ChangeFeedMode::default(),
        }
    }

    /// The effective idle-sweep period.
    pub fn effective_sweep_interval(&self) -> Option<Duration> {
        let idle = self.idle_timeout?;
        Some(
            self.sweep_interval.unwrap_or_else(|| {
                (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
            }),
        )
    }
}
