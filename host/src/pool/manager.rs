//! The connection manager: a logical pool per tenant database (on a shared or dedicated
//! driver client, see [`clients`](super::clients)), a hard cap on open pools,
//! single-flight opens, eviction by policy, idle closing, priorities and lifecycle events.
//!
//! All bookkeeping lives in one [`State`] behind a `std::sync::Mutex` that is never held
//! across an `.await`. Slow work (connecting, closing) runs outside the lock; opens run in
//! their own task so that a cancelled request never leaves a half-opened slot behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bson::doc;
use mongodb::event::cmap::CmapEvent;
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use tokio::sync::{broadcast, watch, Notify, Semaphore};

use super::admission::{OpenAdmission, OpenRateLimits};
use super::clients::{self, ClientSharing, SharedClients};
use super::clock::{Clock, SystemClock};
use super::config::Config;
use super::db::Db;
use super::error::{Error, Result};
use super::events::{CloseReason, PoolEvent, PoolEventKind};
use super::handle::{KeepAlive, Lease, PoolHandle, SlotSignal, SlotWaiter};
use super::index::EvictionIndex;
use super::metadata::MetadataStore;
use super::name;
use super::namespace::TenantNamespace;
use super::policy::{
    has_stable_key, lowest_score, EvictionPolicy, PoolStats, SeedPolicy, DEFAULT_PRIORITY,
    PINNED_PRIORITY,
};
use super::routing::{RouteRule, Routes, Target};
use super::secret::{Redactor, SecretUri};
use super::stats::{ConnectionStats, ManagerStats, Protection, Usage};

/// Capacity of the event channel; slow subscribers miss old events rather than block.
const EVENT_CAPACITY: usize = 4096;

/// The multi-database connection manager. Cheap to clone: clones share one manager.
///
/// ```no_run
/// # async fn demo() -> polymongo::pool::Result<()> {
/// use polymongo::pool::PolyMongo;
/// use bson::{doc, Document};
/// use std::time::Duration;
///
/// let manager = PolyMongo::builder("mongodb://127.0.0.1:27017")
///     .max_connections(100)
///     .idle_timeout(Duration::from_secs(600))
///     .build()
///     .await?;
/// let users = manager.db("tenant-acme")?.collection::<Document>("users");
/// users.insert_one(&doc! { "name": "Alice" }).await?;
/// manager.set_priority("tenant-acme", 5).await?;
/// for pool in manager.stats() {
///     println!("{} used {} times, score {}", pool.db_name, pool.use_count, pool.score);
/// }
/// manager.destroy().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PolyMongo {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PolyMongo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolyMongo")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Builds a [`PolyMongo`] manager; every setting but the URI is optional.
pub struct Builder {
    config: Config,
    clock: Arc<dyn Clock>,
    policy: Arc<dyn EvictionPolicy>,
    command_events: Option<EventHandler<CommandEvent>>,
    cmap_events: Option<EventHandler<CmapEvent>>,
}

impl Builder {
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

    /// The clock (default: the system clock). Tests inject a [`ManualClock`](super::ManualClock).
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
async fn parse_options(
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

pub(crate) struct Inner {
    pub(crate) config: Config,
    base_options: ClientOptions,
    /// Command monitoring for every tenant pool (see [`Builder::command_event_handler`]).
    command_events: Option<EventHandler<CommandEvent>>,
    /// Connection-pool monitoring for every tenant client (see [`Builder::cmap_event_handler`]).
    cmap_events: Option<EventHandler<CmapEvent>>,
    /// One client per connection target in [`ClientSharing::Cluster`] mode.
    shared_clients: SharedClients,
    routes: Routes,
    /// Parsed options of each route without placeholders (`None` for templates).
    route_options: Vec<Option<ClientOptions>>,
    pub(crate) redactor: Redactor,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    open_permits: Semaphore,
    /// Storm control: how fast requests may make new pools open.
    pub(super) admission: OpenAdmission,
    /// How tenant names map to databases.
    pub(super) namespace: TenantNamespace,
    signal: Arc<SlotSignal>,
    events: broadcast::Sender<PoolEvent>,
    metadata: MetadataStore,
    destroyed: AtomicBool,
    stop_sweeper: Notify,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    opens: AtomicU64,
    open_failures: AtomicU64,
    evictions: AtomicU64,
    idle_closes: AtomicU64,
    closes: AtomicU64,
    limit_reached: AtomicU64,
    slot_waits: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    policy_fallbacks: AtomicU64,
}

struct State {
    slots: HashMap<Arc<str>, Slot>,
    index: EvictionIndex,
    priorities: HashMap<String, i32>,
    policy: Arc<dyn EvictionPolicy>,
    /// Whether `policy` has stable keys (then `index` is maintained).
    ordered: bool,
    next_seq: u64,
    /// Closing slots whose place is already promised to a pool being opened.
    handed_over: usize,
}

enum Slot {
    Opening(Arc<OpenWait>),
    Open(OpenPool),
    Closing(Arc<PoolHandle>, bool),
}

struct OpenPool {
    handle: Arc<PoolHandle>,
    usage: Usage,
    priority: i32,
    seq: u64,
    /// The key under which the pool is in the index, if it is.
    key: Option<f64>,
}

impl OpenPool {
    fn stats<'a>(&'a self, name: &'a str) -> PoolStats<'a> {
        PoolStats {
            pool_id: self.seq,
            db_name: name,
            priority: self.priority,
            use_count: self.usage.use_count,
            avg_interval_ms: self.usage.avg_interval_ms(),
            last_used_ms: self.usage.last_used_ms,
            opened_at_ms: self.handle.opened_at_ms,
            in_flight: self.handle.in_flight(),
            watch_count: self.handle.guards(),
        }
    }

    fn protection(&self) -> Option<Protection> {
        if self.priority == PINNED_PRIORITY {
            Some(Protection::Pinned)
        } else if self.handle.guards() > 0 {
            Some(Protection::Watched)
        } else if self.handle.is_busy() {
            Some(Protection::Busy)
        } else {
            None
        }
    }

    /// Re-files the pool in the index after its stats or priority changed.
    fn reindex(&mut self, index: &mut EvictionIndex, policy: &dyn EvictionPolicy, ordered: bool) {
        let name = self.handle.name.clone();
        let new_key = if ordered && self.priority != PINNED_PRIORITY {
            policy.stable_key(&self.stats(&name))
        } else {
            None
        };
        match (self.key, new_key) {
            (Some(old), Some(new)) => index.update(old, new, self.seq),
            (Some(old), None) => index.remove(old, self.seq),
            (None, Some(new)) => index.insert(new, self.seq, name),
            (None, None) => {}
        }
        self.key = new_key;
    }
}

impl State {
    fn priority_of(&self, db: &str) -> i32 {
        self.priorities.get(db).copied().unwrap_or(DEFAULT_PRIORITY)
    }

    fn live_slots(&self) -> usize {
        self.slots.len() - self.handed_over
    }

    /// Takes an open pool out of service: its slot becomes `Closing`.
    fn begin_close(&mut self, name: &Arc<str>, handed_over: bool) -> Option<Arc<PoolHandle>> {
        let slot = self.slots.get_mut(name)?;
        let Slot::Open(entry) = slot else {
            return None;
        };
        if let Some(key) = entry.key {
            self.index.remove(key, entry.seq);
        }
        let handle = entry.handle.clone();
        handle.mark_closing();
        *slot = Slot::Closing(handle.clone(), handed_over);
        if handed_over {
            self.handed_over += 1;
        }
        Some(handle)
    }

    /// Removes a closing slot once its client is shut down.
    fn finish_close(&mut self, name: &str, handle: &Arc<PoolHandle>) {
        if let Some(Slot::Closing(h, handed_over)) = self.slots.get(name) {
            if Arc::ptr_eq(h, handle) {
                if *handed_over {
                    self.handed_over -= 1;
                }
                self.slots.remove(name);
            }
        }
    }

    fn is_evictable(entry: &OpenPool) -> bool {
        entry.priority != PINNED_PRIORITY && !entry.handle.is_busy() && entry.handle.guards() == 0
    }

    /// The evictable pool with the lowest score (ties to the earliest opened), and its score.
    fn choose_victim(&self, now_ms: u64, fallbacks: &AtomicU64) -> Option<(Arc<str>, f64)> {
        let policy = self.policy.as_ref();
        if self.ordered {
            let name = self.index.choose(
                |n| matches!(self.slots.get(n), Some(Slot::Open(e)) if Self::is_evictable(e)),
            )?;
            let Some(Slot::Open(entry)) = self.slots.get(&name) else {
                return None;
            };
            let score = policy.score(&entry.stats(&name), now_ms);
            return Some((name, score));
        }
        let candidates: Vec<(&Arc<str>, &OpenPool)> = self
            .slots
            .iter()
            .filter_map(|(n, s)| match s {
                Slot::Open(e) if Self::is_evictable(e) => Some((n, e)),
                _ => None,
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let stats: Vec<PoolStats<'_>> = candidates.iter().map(|(n, e)| e.stats(n)).collect();
        let choice = lowest_score(policy, &stats, now_ms)?;
        if choice.fell_back {
            tracing::warn!(
                policy = policy.name(),
                candidates = stats.len(),
                "eviction policy returned an unusable score list; the seed formula decided"
            );
            fallbacks.fetch_add(1, SeqCst);
        }
        Some((candidates[choice.index].0.clone(), choice.score))
    }
}

/// A pool being opened; requests for the same database wait on it (single flight).
struct OpenWait {
    result: watch::Sender<Option<Result<Arc<PoolHandle>>>>,
    /// Waiters that will each receive a lease when the open succeeds (under the state lock).
    registered: AtomicUsize,
    /// Of those, how many are operations (warm-ups do not count as uses).
    uses: AtomicUsize,
    /// Set under the state lock when the result is decided.
    completed: AtomicBool,
}

impl OpenWait {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            result: watch::Sender::new(None),
            registered: AtomicUsize::new(0),
            uses: AtomicUsize::new(0),
            completed: AtomicBool::new(false),
        })
    }
}

/// One waiter's claim on the lease an open will grant it. Dropping an unconsumed ticket
/// gives the claim back, so a cancelled request never leaves a pool marked busy.
struct OpenTicket {
    wait: Arc<OpenWait>,
    inner: Arc<Inner>,
    counts_use: bool,
    consumed: bool,
}

impl OpenTicket {
    /// Registers a waiter. Must be called with the state lock held.
    fn register(wait: &Arc<OpenWait>, inner: &Arc<Inner>, counts_use: bool) -> Self {
        wait.registered.fetch_add(1, SeqCst);
        if counts_use {
            wait.uses.fetch_add(1, SeqCst);
        }
        Self {
            wait: wait.clone(),
            inner: inner.clone(),
            counts_use,
            consumed: false,
        }
    }

    async fn lease(mut self) -> Result<Lease> {
        let mut rx = self.wait.result.subscribe();
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(value) => value.clone(),
            Err(_) => Some(Err(Error::Driver(
                "the pool open task ended unexpectedly".into(),
            ))),
        };
        self.consumed = true;
        match outcome {
            Some(Ok(handle)) => Ok(Lease::granted(handle)),
            Some(Err(e)) => Err(e),
            None => Err(Error::Driver(
                "the pool open finished without a result".into(),
            )),
        }
    }
}

impl Drop for OpenTicket {
    fn drop(&mut self) {
        if self.consumed {
            return;
        }
        let _state = self.inner.lock_state();
        if !self.wait.completed.load(SeqCst) {
            self.wait.registered.fetch_sub(1, SeqCst);
            if self.counts_use {
                self.wait.uses.fetch_sub(1, SeqCst);
            }
        } else if let Some(Ok(handle)) = &*self.wait.result.borrow() {
            handle.release_op();
        }
    }
}

/// What `acquire` does after looking at the state.
enum Step {
    Ready(Lease),
    AwaitOpen(OpenTicket),
    AwaitClosed(Arc<PoolHandle>),
    AwaitSlot(SlotWaiter),
}

impl Inner {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the bookkeeping half-updated in a way
        // that matters more than refusing all further service, so recover the guard.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    fn check_alive(&self) -> Result<()> {
        if self.destroyed.load(SeqCst) {
            Err(Error::Destroyed)
        } else {
            Ok(())
        }
    }

    fn emit(&self, db: &str, kind: PoolEventKind) {
        match &kind {
            PoolEventKind::OpenFailed { error } => tracing::warn!(db, %error, "pool open failed"),
            PoolEventKind::Evicted {
                policy,
                score,
                for_db,
            } => {
                tracing::info!(db, policy, score, for_db, "pool evicted")
            }
            other => tracing::debug!(db, event = ?other, "pool event"),
        }
        let _ = self.events.send(PoolEvent {
            at_ms: self.now(),
            db: db.to_string(),
            kind,
        });
    }

    /// Gets a lease on `name`'s pool, opening it (and evicting another) if needed.
    async fn acquire(self: &Arc<Self>, name: &str, counts_use: bool) -> Result<Lease> {
        let started = Instant::now();
        let mut missed = false;
        loop {
            let step = self.plan(name, counts_use)?;
            match step {
                Step::Ready(lease) => {
                    let counter = if missed {
                        &self.counters.misses
                    } else {
                        &self.counters.hits
                    };
                    counter.fetch_add(1, SeqCst);
                    return Ok(lease);
                }
                Step::AwaitOpen(ticket) => {
                    self.counters.misses.fetch_add(1, SeqCst);
                    return ticket.lease().await;
                }
                Step::AwaitClosed(handle) => {
                    missed = true;
                    handle.wait_closed().await;
                }
                Step::AwaitSlot(waiter) => {
                    missed = true;
                    self.counters.slot_waits.fetch_add(1, SeqCst);
                    let waited = started.elapsed();
                    let limit = self.config.acquire_timeout;
                    let give_up = || {
                        self.counters.limit_reached.fetch_add(1, SeqCst);
                        Error::LimitReached {
                            max: self.config.max_connections.unwrap_or(usize::MAX),
                            waited: started.elapsed(),
                        }
                    };
                    let Some(remaining) = limit.checked_sub(waited).filter(|d| !d.is_zero()) else {
                        return Err(give_up());
                    };
                    // Cursors left unused stop protecting their pool when their grace period
                    // ends, which no release signals: look again at least that often.
                    let recheck = self.config.cursor_grace.max(Duration::from_millis(50));
                    if tokio::time::timeout(remaining.min(recheck), waiter.wait())
                        .await
                        .is_err()
                        && started.elapsed() >= limit
                    {
                        return Err(give_up());
                    }
                }
            }
        }
    }

    /// Decides, under the state lock, what `acquire` must do next.
    fn plan(self: &Arc<Self>, name: &str, counts_use: bool) -> Result<Step> {
        let now = self.now();
        let mut guard = self.lock_state();
        self.check_alive()?;
        let st = &mut *guard;
        match st.slots.get_mut(name) {
            Some(Slot::Open(entry)) => {
                entry.handle.add_ops(1);
                if counts_use {
                    entry.usage.record(now);
                    entry.reindex(&mut st.index, st.policy.as_ref(), st.ordered);
                    st.policy.on_access(entry.seq, name, now);
                }
                Ok(Step::Ready(Lease::granted(entry.handle.clone())))
            }
            Some(Slot::Opening(wait)) => Ok(Step::AwaitOpen(OpenTicket::register(
                wait, self, counts_use,
            ))),
            Some(Slot::Closing(handle, _)) => Ok(Step::AwaitClosed(handle.clone())),
            None => {
                let has_room = self
                    .config
                    .max_connections
                    .is_none_or(|max| st.live_slots() < max);
                let victim = if has_room {
                    None
                } else {
                    // Register before looking, so a pool freed meanwhile still wakes us.
                    let waiter = self.signal.register();
                    match st.choose_victim(now, &self.counters.policy_fallbacks) {
                        Some((victim, score)) => {
                            drop(waiter);
                            let handle = st
                                .begin_close(&victim, true)
                                .expect("victim chosen among open slots under the same lock");
                            Some(Victim {
                                name: victim,
                                handle,
                                score,
                                policy: st.policy.name().to_string(),
                            })
                        }
                        None => return Ok(Step::AwaitSlot(waiter)),
                    }
                };
                let wait = OpenWait::new();
                let ticket = OpenTicket::register(&wait, self, counts_use);
                let name: Arc<str> = Arc::from(name);
                st.slots.insert(name.clone(), Slot::Opening(wait.clone()));
                tokio::spawn(self.clone().open_pool(name, wait, victim));
                Ok(Step::AwaitOpen(ticket))
            }
        }
    }

    /// Runs one open to completion: closes the victim (if any), connects, publishes the result.
    async fn open_pool(
        self: Arc<Self>,
        name: Arc<str>,
        wait: Arc<OpenWait>,
        victim: Option<Victim>,
    ) {
        if let Some(victim) = victim {
            self.evict(victim, &name).await;
        }
        let started = Instant::now();
        let connected = self.connect(&name).await;
        let now = self.now();
        let outcome = {
            let mut guard = self.lock_state();
            let st = &mut *guard;
            wait.completed.store(true, SeqCst);
            let registered = wait.registered.load(SeqCst);
            let uses = wait.uses.load(SeqCst);
            match connected {
                Ok(handle) if !self.destroyed.load(SeqCst) => {
                    handle.add_ops(u32::try_from(registered).unwrap_or(u32::MAX));
                    let mut usage = Usage::new(now);
                    for _ in 0..uses {
                        usage.record(now);
                    }
                    let mut entry = OpenPool {
                        handle: handle.clone(),
                        usage,
                        priority: st.priority_of(&name),
                        seq: st.next_seq,
                        key: None,
                    };
                    st.next_seq += 1;
                    handle.set_pool_id(entry.seq);
                    entry.reindex(&mut st.index, st.policy.as_ref(), st.ordered);
                    st.policy.on_open(entry.seq, &name, now);
                    st.slots.insert(name.clone(), Slot::Open(entry));
                    Ok(handle)
                }
                Ok(handle) => {
                    st.slots.remove(&name);
                    tokio::spawn(async move { handle.shutdown_client().await });
                    Err(Error::Destroyed)
                }
                Err(e) => {
                    st.slots.remove(&name);
                    Err(e)
                }
            }
        };
        match &outcome {
            Ok(_) => {
                self.counters.opens.fetch_add(1, SeqCst);
                self.emit(
                    &name,
                    PoolEventKind::Opened {
                        took: started.elapsed(),
                    },
                );
            }
            Err(error) => {
                self.counters.open_failures.fetch_add(1, SeqCst);
                self.emit(
                    &name,
                    PoolEventKind::OpenFailed {
                        error: error.clone(),
                    },
                );
                self.signal.notify();
            }
        }
        wait.result.send_replace(Some(outcome));
    }

    /// Closes an evicted pool and gives its slot to the pool being opened.
    async fn evict(&self, victim: Victim, for_db: &str) {
        victim.handle.wait_drained().await;
        victim.handle.shutdown_client().await;
        self.lock_state().finish_close(&victim.name, &victim.handle);
        victim.handle.mark_closed();
        self.counters.evictions.fetch_add(1, SeqCst);
        self.lock_state()
            .policy
            .on_close(victim.handle.pool_id(), &victim.name, self.now());
        self.emit(
            &victim.name,
            PoolEventKind::Evicted {
                policy: victim.policy,
                score: victim.score,
                for_db: for_db.to_string(),
            },
        );
    }

    /// Creates the client for one database and (optionally) checks that the server answers.
    async fn connect(&self, name: &str) -> Result<Arc<PoolHandle>> {
        let _permit = self
            .open_permits
            .acquire()
            .await
            .map_err(|_| Error::Destroyed)?;
        self.check_alive()?;
        let target = self.routes.target(name)?;
        let shared = clients::shared_target(&target, self.config.client_sharing);
        let mut options = match target {
            Target::Default => self.base_options.clone(),
            Target::Static(i) => match self.route_options.get(i).cloned().flatten() {
                Some(options) => options,
                None => {
                    return Err(Error::Config(format!(
                        "route {} has no parsed options",
                        i + 1
                    )))
                }
            },
            Target::Rendered(_, uri) => {
                self.redactor.add(&uri);
                parse_options(&uri, &self.config, &self.redactor).await?
            }
        };
        if let Some(handler) = &self.command_events {
            options.command_event_handler = Some(handler.clone());
        }
        if let Some(handler) = &self.cmap_events {
            options.cmap_event_handler = Some(handler.clone());
        }
        let chosen =
            self.shared_clients
                .client_for(shared, options, name, &self.config, &self.redactor)?;
        let mut handle = PoolHandle::new(
            Arc::from(name),
            chosen.client,
            self.now(),
            self.signal.clone(),
            self.config.cursor_grace,
        );
        if let Some(permits) = chosen.op_permits {
            handle = handle.on_shared_client(permits);
        }
        let handle = Arc::new(handle);
        if self.config.verify_on_open && !chosen.healthy {
            let limit = self.config.server_selection_timeout + Duration::from_secs(2);
            let ping =
                tokio::time::timeout(limit, handle.database.run_command(doc! { "ping": 1 })).await;
            let failure = match ping {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(Error::from_driver(e, &self.redactor)),
                Err(_) => Some(Error::Unavailable(format!(
                    "no answer to ping within {limit:?}"
                ))),
            };
            if let Some(error) = failure {
                handle.shutdown_client().await;
                return Err(error);
            }
        }
        Ok(handle)
    }

    /// Closes one pool after its in-flight operations finish (bounded by `drain_limit`).
    async fn close_pool(
        &self,
        name: &Arc<str>,
        handle: &Arc<PoolHandle>,
        drain_limit: Option<Duration>,
    ) {
        match drain_limit {
            Some(limit) => {
                if tokio::time::timeout(limit, handle.wait_drained())
                    .await
                    .is_err()
                {
                    tracing::warn!(db = %name, in_flight = handle.in_flight(),
                        "closing pool with operations still running after {limit:?}");
                }
            }
            None => handle.wait_drained().await,
        }
        handle.shutdown_client().await;
        self.lock_state().finish_close(name, handle);
        handle.mark_closed();
        self.lock_state()
            .policy
            .on_close(handle.pool_id(), name, self.now());
        self.signal.notify();
    }

    async fn sweep_idle(&self) -> Vec<String> {
        let Some(idle_timeout) = self.config.idle_timeout else {
            return Vec::new();
        };
        let idle_ms = u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let now = self.now();
        let closing: Vec<(Arc<str>, Arc<PoolHandle>, u64)> = {
            let mut st = self.lock_state();
            let idle: Vec<(Arc<str>, u64)> = st
                .slots
                .iter()
                .filter_map(|(n, s)| match s {
                    Slot::Open(e) if State::is_evictable(e) => {
                        let idle = now.saturating_sub(e.usage.last_used_ms);
                        (idle > idle_ms).then(|| (n.clone(), idle))
                    }
                    _ => None,
                })
                .collect();
            idle.into_iter()
                .filter_map(|(n, idle)| st.begin_close(&n, false).map(|h| (n, h, idle)))
                .collect()
        };
        let mut closed = Vec::with_capacity(closing.len());
        for (name, handle, idle) in closing {
            self.close_pool(&name, &handle, None).await;
            self.counters.idle_closes.fetch_add(1, SeqCst);
            self.emit(&name, PoolEventKind::IdleClosed { idle_ms: idle });
            closed.push(name.to_string());
        }
        closed
    }
}

struct Victim {
    name: Arc<str>,
    handle: Arc<PoolHandle>,
    score: f64,
    policy: String,
}

async fn run_sweeper(inner: Weak<Inner>, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        tokio::select! {
            _ = ticker.tick() => {}
            _ = strong.stop_sweeper.notified() => return,
        }
        if strong.destroyed.load(SeqCst) {
            return;
        }
        strong.sweep_idle().await;
    }
}

impl PolyMongo {
    /// Starts building a manager for the given base URI.
    pub fn builder(mongo_uri: impl Into<String>) -> Builder {
        Builder {
            config: Config::new(mongo_uri),
            clock: Arc::new(SystemClock),
            policy: Arc::new(SeedPolicy),
            command_events: None,
            cmap_events: None,
        }
    }

    /// A handle on database `name` (validated now; opened on first use).
    pub fn db(&self, name: &str) -> Result<Db> {
        self.inner.check_alive()?;
        name::validate_tenant(
            name,
            &self.inner.config.metadata_db,
            self.inner.config.allow_reserved_databases,
        )?;
        Ok(Db::new(self.clone(), Arc::from(name)))
    }

    /// A handle on the configured default database.
    pub fn default_db(&self) -> Result<Db> {
        self.inner.check_alive()?;
        Ok(Db::new(
            self.clone(),
            Arc::from(self.inner.config.default_db.as_str()),
        ))
    }

    /// The manager's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Acquires a lease on `db`'s pool for one operation (opening the pool if needed).
    /// The pool is not closed while the lease lives. Counts as one use.
    /// On a shared client, the lease also holds one of the database's `max_pool_size`
    /// operation permits (waiting up to `acquire_timeout` for one).
    pub async fn lease(&self, db: &str) -> Result<Lease> {
        self.validate(db)?;
        self.lease_validated(db).await
    }

    pub(crate) async fn lease_validated(&self, db: &str) -> Result<Lease> {
        let lease = self.inner.acquire(db, true).await?;
        lease
            .with_op_permit(self.inner.config.acquire_timeout)
            .await
    }

    /// Driver clients shared by several databases now (0 in `database` sharing mode).
    pub fn shared_clients(&self) -> usize {
        self.inner.shared_clients.len()
    }

    /// A counted guard that keeps `db`'s pool open and protected until dropped.
    pub async fn keep_alive(&self, db: &str) -> Result<KeepAlive> {
        self.validate(db)?;
        self.keep_alive_validated(db).await
    }

    pub(crate) async fn keep_alive_validated(&self, db: &str) -> Result<KeepAlive> {
        let lease = self.inner.acquire(db, false).await?;
        let handle = lease.handle().clone();
        {
            let _st = self.inner.lock_state();
            handle.add_guard();
        }
        drop(lease);
        Ok(KeepAlive::granted(handle))
    }

    /// Opens `db`'s pool now (warm-up) without counting a use. Returns once it is open.
    pub async fn open_connection(&self, db: &str) -> Result<()> {
        self.validate(db)?;
        self.inner.acquire(db, false).await.map(drop)
    }

    /// Closes `db`'s pool now, after its in-flight operations finish. Returns whether a pool
    /// was open. Live change streams on it end with an error.
    pub async fn close_connection(&self, db: &str) -> Result<bool> {
        self.validate(db)?;
        loop {
            let step = {
                let mut st = self.inner.lock_state();
                self.inner.check_alive()?;
                let key = st.slots.get_key_value(db).map(|(k, _)| k.clone());
                match (key, st.slots.get(db)) {
                    (None, _) | (_, None) => return Ok(false),
                    (Some(_), Some(Slot::Opening(wait))) => Err(wait.clone()),
                    (Some(_), Some(Slot::Closing(handle, _))) => Ok(Err(handle.clone())),
                    (Some(name), Some(Slot::Open(_))) => {
                        let handle = st.begin_close(&name, false).expect("slot is open");
                        Ok(Ok((name, handle)))
                    }
                }
            };
            match step {
                Ok(Ok((name, handle))) => {
                    self.inner.close_pool(&name, &handle, None).await;
                    self.inner.counters.closes.fetch_add(1, SeqCst);
                    self.inner.emit(
                        &name,
                        PoolEventKind::Closed {
                            reason: CloseReason::Requested,
                        },
                    );
                    return Ok(true);
                }
                Ok(Err(handle)) => {
                    handle.wait_closed().await;
                    return Ok(true);
                }
                Err(wait) => {
                    let mut rx = wait.result.subscribe();
                    let _ = rx.wait_for(Option::is_some).await;
                }
            }
        }
    }

    /// Sets `db`'s priority (lower = more important; -1 = never evicted nor idle-closed).
    /// Takes effect at once and is stored in the metadata database, so it survives restarts;
    /// works for databases that are not open.
    pub async fn set_priority(&self, db: &str, priority: i32) -> Result<()> {
        self.inner.check_alive()?;
        if priority < PINNED_PRIORITY {
            return Err(Error::InvalidPriority(priority));
        }
        self.validate(db)?;
        self.inner.metadata.save_priority(db, priority).await?;
        {
            let mut guard = self.inner.lock_state();
            let st = &mut *guard;
            st.priorities.insert(db.to_string(), priority);
            if let Some(Slot::Open(entry)) = st.slots.get_mut(db) {
                entry.priority = priority;
                entry.reindex(&mut st.index, st.policy.as_ref(), st.ordered);
            }
        }
        self.inner.signal.notify();
        tracing::info!(db, priority, "priority set");
        Ok(())
    }

    /// `db`'s current priority (the default, 100, if none was set).
    pub fn priority(&self, db: &str) -> i32 {
        self.inner.lock_state().priority_of(db)
    }

    /// Replaces the eviction policy; the next decision uses the new one.
    pub fn set_policy(&self, policy: Arc<dyn EvictionPolicy>) {
        let ordered = has_stable_key(policy.as_ref());
        let mut guard = self.inner.lock_state();
        let st = &mut *guard;
        st.index.clear();
        st.policy = policy;
        st.ordered = ordered;
        for slot in st.slots.values_mut() {
            if let Slot::Open(entry) = slot {
                entry.key = None;
                entry.reindex(&mut st.index, st.policy.as_ref(), ordered);
            }
        }
        tracing::info!(policy = st.policy.name(), "eviction policy set");
    }

    /// Every open pool's statistics, sorted by database name. Scores come from the active
    /// policy in one batch (as in an eviction decision).
    pub fn stats(&self) -> Vec<ConnectionStats> {
        let now = self.inner.now();
        let st = self.inner.lock_state();
        let mut open: Vec<(&Arc<str>, &OpenPool)> = st
            .slots
            .iter()
            .filter_map(|(name, slot)| match slot {
                Slot::Open(e) => Some((name, e)),
                _ => None,
            })
            .collect();
        open.sort_by(|a, b| a.0.cmp(b.0));
        let stats: Vec<PoolStats<'_>> = open.iter().map(|(n, e)| e.stats(n)).collect();
        let mut scores = st.policy.score_all(&stats, now);
        if scores.len() != stats.len() {
            scores = SeedPolicy.score_all(&stats, now);
        }
        open.iter()
            .zip(stats.iter().zip(scores))
            .map(|((name, e), (stats, score))| ConnectionStats {
                pool_id: e.seq,
                db_name: name.to_string(),
                priority: e.priority,
                use_count: stats.use_count,
                avg_interval: stats.avg_interval_ms,
                last_used: stats.last_used_ms,
                idle_time: stats.idle_ms(now),
                has_watch: stats.watch_count > 0,
                watch_count: stats.watch_count,
                in_flight: stats.in_flight,
                open_cursors: e.handle.open_cursors(),
                opened_at: stats.opened_at_ms,
                score,
                protected: e.protection(),
            })
            .collect()
    }

    /// Manager-wide counters.
    pub fn summary(&self) -> ManagerStats {
        let c = &self.inner.counters;
        let st = self.inner.lock_state();
        let in_flight = st
            .slots
            .values()
            .map(|s| match s {
                Slot::Open(e) => u64::from(e.handle.in_flight()),
                Slot::Closing(h, _) => u64::from(h.in_flight()),
                Slot::Opening(_) => 0,
            })
            .sum();
        ManagerStats {
            open_pools: st.live_slots(),
            max_connections: self.inner.config.max_connections,
            policy: st.policy.name().to_string(),
            opens: c.opens.load(SeqCst),
            open_failures: c.open_failures.load(SeqCst),
            evictions: c.evictions.load(SeqCst),
            idle_closes: c.idle_closes.load(SeqCst),
            closes: c.closes.load(SeqCst),
            limit_reached: c.limit_reached.load(SeqCst),
            slot_waits: c.slot_waits.load(SeqCst),
            hits: c.hits.load(SeqCst),
            misses: c.misses.load(SeqCst),
            in_flight,
        }
    }

    /// How many times the policy returned an unusable score list and the seed formula decided.
    pub fn policy_fallbacks(&self) -> u64 {
        self.inner.counters.policy_fallbacks.load(SeqCst)
    }

    /// Number of open pools (including ones closing), which never exceeds `max_connections`.
    pub fn open_pools(&self) -> usize {
        self.inner.lock_state().live_slots()
    }

    /// Whether `db` has an open pool.
    pub fn is_open(&self, db: &str) -> bool {
        matches!(self.inner.lock_state().slots.get(db), Some(Slot::Open(_)))
    }

    /// Subscribes to pool lifecycle events.
    pub fn subscribe(&self) -> broadcast::Receiver<PoolEvent> {
        self.inner.events.subscribe()
    }

    /// Closes idle pools now (the background sweeper does this periodically). Returns the
    /// names of the pools closed.
    pub async fn sweep_idle(&self) -> Result<Vec<String>> {
        self.inner.check_alive()?;
        Ok(self.inner.sweep_idle().await)
    }

    /// Closes every pool (waiting up to `shutdown_timeout` for in-flight operations) and stops
    /// background tasks. Afterwards every call fails with [`Error::Destroyed`]. Calling it
    /// again does nothing.
    pub async fn destroy(&self) -> Result<()> {
        if self.inner.destroyed.swap(true, SeqCst) {
            return Ok(());
        }
        self.inner.stop_sweeper.notify_waiters();
        self.inner.signal.notify_all();
        let closing: Vec<(Arc<str>, Arc<PoolHandle>)> = {
            let mut st = self.inner.lock_state();
            let names: Vec<Arc<str>> = st.slots.keys().cloned().collect();
            names
                .into_iter()
                .filter_map(|n| st.begin_close(&n, false).map(|h| (n, h)))
                .collect()
        };
        let limit = self.inner.config.shutdown_timeout;
        let inner = &self.inner;
        futures_util::future::join_all(closing.iter().map(|(name, handle)| async move {
            inner.close_pool(name, handle, Some(limit)).await;
            inner.emit(
                name,
                PoolEventKind::Closed {
                    reason: CloseReason::Destroyed,
                },
            );
        }))
        .await;
        self.inner.shared_clients.shutdown().await;
        self.inner.metadata.shutdown().await;
        tracing::info!("polymongo connection manager destroyed");
        Ok(())
    }

    /// Whether `destroy()` was called.
    pub fn is_destroyed(&self) -> bool {
        self.inner.destroyed.load(SeqCst)
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    fn validate(&self, db: &str) -> Result<()> {
        self.inner.check_alive()?;
        name::validate_tenant(
            db,
            &self.inner.config.metadata_db,
            self.inner.config.allow_reserved_databases,
        )
    }
}
