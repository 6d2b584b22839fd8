//! Building a manager: the [`Builder`], configuration checks, and the driver options each
//! connection target gets.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::event::cmap::CmapEvent;
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use tokio::sync::{broadcast, Notify, Semaphore};

use crate::admission::{OpenAdmission, OpenRateLimits};
use crate::clients::{ClientSharing, SharedClients};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::feed::ChangeFeedMode;
use crate::handle::SlotSignal;
use crate::index::EvictionIndex;
use crate::metadata::MetadataStore;
use crate::name;
use crate::namespace::TenantNamespace;
use crate::policy::{has_stable_key, EvictionPolicy, SeedPolicy};
use crate::routing::{RouteRule, Routes};
use crate::secret::{Redactor, SecretUri};

use super::lifecycle::run_sweeper;
use super::slots::{Counters, State};
use super::{Inner, PolyMongo};

/// Capacity of the event channel; slow subscribers miss old events rather than block.
const EVENT_CAPACITY: usize = 4096;

/// Builds a [`PolyMongo`] manager; every setting but the URI is optional.
pub struct Builder {
    config: Config,
    clock: Arc<dyn Clock>,
    policy: Arc<dyn EvictionPolicy>,
    command_events: Option<EventHandler<CommandEvent>>,
    cmap_events: Option<EventHandler<CmapEvent>>,
}

impl Builder {
    /// Default settings for the base URI `mongo_uri`.
    pub(super) fn new(mongo_uri: impl Into<String>) -> Self {
        Self {
            config: Config::new(mongo_uri),
            clock: Arc::new(SystemClock),
            policy: Arc::new(SeedPolicy),
            command_events: None,
            cmap_events: None,
        }
    }

    /// Most pools open at once (a hard cap).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = Some(max);
        self
    }

    /// Close pools idle this long.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = Some(timeout);
        self
    }

    /// Never close pools for idleness.
    pub fn no_idle_timeout(mut self) -> Self {
        self.config.idle_timeout = None;
        self
    }

    /// How often the idle sweeper runs.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.config.sweep_interval = Some(interval);
        self
    }

    /// Database for per-database metadata.
    pub fn metadata_db(mut self, name: impl Into<String>) -> Self {
        self.config.metadata_db = name.into();
        self
    }

    /// Database used by [`PolyMongo::default_db`].
    pub fn default_db(mut self, name: impl Into<String>) -> Self {
        self.config.default_db = name.into();
        self
    }

    /// Sockets per database pool.
    pub fn max_pool_size(mut self, size: u32) -> Self {
        self.config.max_pool_size = size;
        self
    }

    /// Sockets a pool may be establishing at once.
    pub fn max_connecting(mut self, n: u32) -> Self {
        self.config.max_connecting = n;
        self
    }

    /// How long the driver looks for a server before failing.
    pub fn server_selection_timeout(mut self, timeout: Duration) -> Self {
        self.config.server_selection_timeout = timeout;
        self
    }

    /// How long a request waits for a slot when all pools are protected.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.config.acquire_timeout = timeout;
        self
    }

    /// Pools opened at once across all databases.
    pub fn max_concurrent_opens(mut self, n: usize) -> Self {
        self.config.max_concurrent_opens = n;
        self
    }

    /// Whether to ping the server when opening a pool.
    pub fn verify_on_open(mut self, verify: bool) -> Self {
        self.config.verify_on_open = verify;
        self
    }

    /// Allow system and metadata databases as tenant databases.
    pub fn allow_reserved_databases(mut self, allow: bool) -> Self {
        self.config.allow_reserved_databases = allow;
        self
    }

    /// How long `destroy()` waits for in-flight operations.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Routes databases matching `pattern` (`*`, `?` wildcards) to `uri`, which may be a
    /// template with `{db}` and `${ENV_VAR}` placeholders (see [`RouteRule`]).
    pub fn route(mut self, pattern: impl Into<String>, uri: impl Into<String>) -> Self {
        self.config.routes.push(RouteRule::new(pattern, uri));
        self
    }

    /// Like [`route`](Self::route), with the route's own change feed mode.
    pub fn route_with_change_feed(
        mut self,
        pattern: impl Into<String>,
        uri: impl Into<String>,
        mode: ChangeFeedMode,
    ) -> Self {
        self.config
            .routes
            .push(RouteRule::new(pattern, uri).with_change_feed(mode));
        self
    }

    /// How databases watch changes where no route says otherwise (default
    /// [`ChangeFeedMode::Streams`]).
    pub fn change_feed(mut self, mode: ChangeFeedMode) -> Self {
        self.config.change_feed = mode;
        self
    }

    /// Prefix of tenant databases (default `t_`; empty keeps database = tenant name).
    pub fn tenant_db_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.tenant_db_prefix = prefix.into();
        self
    }

    /// How fast requests may make the host open new pools (storm control).
    pub fn open_rate(mut self, limits: OpenRateLimits) -> Self {
        self.config.open_rate = limits;
        self
    }

    /// How long an unused cursor keeps its pool protected (default 2 s).
    pub fn cursor_grace(mut self, grace: Duration) -> Self {
        self.config.cursor_grace = grace;
        self
    }

    /// Replaces the whole configuration (the URI included).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The clock (default: the system clock). Tests inject a [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Receives the driver's command monitoring events of every tenant pool (commands
    /// started, succeeded, failed), e.g. to audit what is sent to the server.
    pub fn command_event_handler(mut self, handler: EventHandler<CommandEvent>) -> Self {
        self.command_events = Some(handler);
        self
    }

    /// Whether databases on one connection target share a driver client (default
    /// [`ClientSharing::Cluster`]) or each get their own.
    pub fn client_sharing(mut self, mode: ClientSharing) -> Self {
        self.config.client_sharing = mode;
        self
    }

    /// Sockets of each shared client (in [`ClientSharing::Cluster`] mode).
    pub fn shared_max_pool_size(mut self, size: u32) -> Self {
        self.config.shared_max_pool_size = size;
        self
    }

    /// Receives the driver's connection-pool (CMAP) events of every tenant client, shared or
    /// not (connections created, closed, checked out), e.g. to count sockets to the server.
    pub fn cmap_event_handler(mut self, handler: EventHandler<CmapEvent>) -> Self {
        self.cmap_events = Some(handler);
        self
    }

    /// The eviction policy (default: [`SeedPolicy`]).
    pub fn policy(mut self, policy: Arc<dyn EvictionPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Validates the configuration, loads stored priorities and starts the idle sweeper.
    /// Must be called inside a Tokio runtime.
    pub async fn build(self) -> Result<PolyMongo> {
        let config = self.config;
        let namespace = validate_config(&config)?;
        let redactor = config.mongo_uri.redactor();
        let mut options = ClientOptions::parse(config.mongo_uri.expose())
            .await
            .map_err(|e| match Error::from_driver(e, &redactor) {
                Error::InvalidArgument(m) | Error::Driver(m) => {
                    Error::Config(format!("mongo_uri {}: {m}", config.mongo_uri.redacted()))
                }
                other => other,
            })?;
        apply_pool_settings(&mut options, &config);
        let routes = Routes::new(config.routes.clone())?;
        let mut route_options = Vec::with_capacity(routes.rules().len());
        for (i, rule) in routes.rules().iter().enumerate() {
            redactor.add(&rule.uri);
            route_options.push(match routes.is_template_rule(i) {
                true => None,
                false => Some(parse_options(&rule.uri, &config, &redactor).await?),
            });
        }

        let metadata = MetadataStore::new(options.clone(), &config.metadata_db, redactor.clone())?;
        let priorities = metadata.load_priorities().await?;

        let ordered = has_stable_key(self.policy.as_ref());
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let inner = Arc::new(Inner {
            open_permits: Semaphore::new(config.max_concurrent_opens),
            admission: OpenAdmission::new(config.open_rate),
            namespace,
            config,
            base_options: options,
            command_events: self.command_events,
            cmap_events: self.cmap_events,
            shared_clients: SharedClients::default(),
            routes,
            route_options,
            redactor,
            clock: self.clock,
            state: Mutex::new(State {
                slots: HashMap::new(),
                index: EvictionIndex::new(),
                priorities,
                policy: self.policy,
                ordered,
                next_seq: 0,
                handed_over: 0,
                recorder: None,
            }),
            signal: Arc::new(SlotSignal::default()),
            events,
            metadata,
            destroyed: AtomicBool::new(false),
            stop_sweeper: Notify::new(),
            counters: Counters::default(),
        });
        if let Some(period) = inner.config.effective_sweep_interval() {
            tokio::spawn(run_sweeper(Arc::downgrade(&inner), period));
        }
        tracing::info!(uri = %inner.config.mongo_uri, max_connections = ?inner.config.max_connections,
            "polymongo connection manager started");
        Ok(PolyMongo { inner })
    }
}

/// The driver settings every pool gets, whatever its URI.
fn apply_pool_settings(options: &mut ClientOptions, config: &Config) {
    options.app_name = Some(config.app_name.clone());
    options.max_pool_size = Some(config.max_pool_size);
    options.min_pool_size = Some(0);
    options.max_connecting = Some(config.max_connecting);
    options.server_selection_timeout = Some(config.server_selection_timeout);
    options.connect_timeout = Some(config.connect_timeout);
}

/// Parses a route's URI (resolving `mongodb+srv` records) and applies the pool settings.
pub(super) async fn parse_options(
    uri: &SecretUri,
    config: &Config,
    redactor: &Redactor,
) -> Result<ClientOptions> {
    let mut options =
        ClientOptions::parse(uri.expose()).await.map_err(|e| {
            match Error::from_driver(e, redactor) {
                Error::InvalidArgument(m) | Error::Driver(m) => {
                    Error::Config(format!("URI {}: {m}", uri.redacted()))
                }
                other => other,
            }
        })?;
    apply_pool_settings(&mut options, config);
    Ok(options)
}

fn validate_config(config: &Config) -> Result<TenantNamespace> {
    if config.max_connections == Some(0) {
        return Err(Error::Config("max_connections must be at least 1".into()));
    }
    if config.max_pool_size == 0 {
        return Err(Error::Config("max_pool_size must be at least 1".into()));
    }
    if config.shared_max_pool_size == 0 {
        return Err(Error::Config(
            "shared_max_pool_size must be at least 1".into(),
        ));
    }
    if config.max_connecting == 0 {
        return Err(Error::Config("max_connecting must be at least 1".into()));
    }
    if config.max_concurrent_opens == 0 {
        return Err(Error::Config(
            "max_concurrent_opens must be at least 1".into(),
        ));
    }
    name::validate_syntax(&config.metadata_db)
        .map_err(|e| Error::Config(format!("metadata_db: {e}")))?;
    name::validate_syntax(&config.default_db)
        .map_err(|e| Error::Config(format!("default_db: {e}")))?;
    let namespace = TenantNamespace::new(&config.tenant_db_prefix)?;
    namespace.check_outside("metadata_db", &config.metadata_db)?;
    namespace.check_outside("default_db", &config.default_db)?;
    Ok(namespace)
}
