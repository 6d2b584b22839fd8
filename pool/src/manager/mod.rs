//! The connection manager: a logical pool per tenant database (on a shared or dedicated
//! driver client, see [`clients`](crate::clients)), a hard cap on open pools,
//! single-flight opens, eviction by policy, idle closing, priorities and lifecycle events.
//!
//! All bookkeeping lives in one [`slots::State`] behind a `std::sync::Mutex` that is
//! never held across an `.await`. Slow work (connecting, closing) runs outside the lock; opens
//! run in their own task so that a cancelled request never leaves a half-opened slot behind.
//!
//! - [`builder`]: the [`Builder`], configuration checks and driver options per URI;
//! - [`slots`]: the bookkeeping under the lock (slots, usage, the eviction index, the victim);
//! - [`opening`]: single-flight opens (one task connects, every waiter gets a lease);
//! - [`lifecycle`]: acquiring a lease, evicting, closing, the idle sweeper;
//! - [`resume_tokens`]: background consumers' resume tokens in the metadata database;
//! - this file: the shared core and the public API of [`PolyMongo`].

mod builder;
mod lifecycle;
mod opening;
mod resume_tokens;
mod slots;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};

use mongodb::event::cmap::CmapEvent;
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use tokio::sync::{broadcast, Notify, Semaphore};

use crate::admission::OpenAdmission;
use crate::clients::SharedClients;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::events::{CloseReason, PoolEvent, PoolEventKind};
use crate::feed::ChangeFeedMode;
use crate::handle::{KeepAlive, Lease, PoolHandle, SlotSignal};
use crate::metadata::MetadataStore;
use crate::name;
use crate::namespace::TenantNamespace;
use crate::policy::{has_stable_key, EvictionPolicy, PoolStats, SeedPolicy, PINNED_PRIORITY};
use crate::recorder::AccessRecorder;
use crate::routing::Routes;
use crate::secret::Redactor;
use crate::stats::{ConnectionStats, ManagerStats};

use slots::OpenPool;

pub use builder::Builder;
pub use resume_tokens::{ConsumerKey, SUBSCRIPTIONS_COLLECTION};
use slots::{Counters, Slot, State};

/// The multi-database connection manager. Cheap to clone: clones share one manager.
///
/// ```no_run
/// # async fn demo() -> polymongo_pool::Result<()> {
/// use polymongo_pool::PolyMongo;
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

pub(crate) struct Inner {
    pub(crate) config: Config,
    base_options: ClientOptions,
    /// Command monitoring for every tenant pool (see [`Builder::command_event_handler`]).
    command_events: Option<EventHandler<CommandEvent>>,
    /// Connection-pool monitoring for every tenant client (see [`Builder::cmap_event_handler`]).
    cmap_events: Option<EventHandler<CmapEvent>>,
    /// One client per connection target in [`ClientSharing::Cluster`](crate::ClientSharing::Cluster) mode.
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
}

impl PolyMongo {
    /// Starts building a manager for the given base URI.
    pub fn builder(mongo_uri: impl Into<String>) -> Builder {
        Builder::new(mongo_uri)
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

    /// How `db` watches changes: its route's `change_feed`, else `pool.change_feed`.
    pub fn change_feed_mode(&self, db: &str) -> ChangeFeedMode {
        self.inner
            .routes
            .change_feed(db)
            .unwrap_or(self.inner.config.change_feed)
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
                entry.rank.priority = priority;
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
                entry.rank.forget_index_key();
                entry.reindex(&mut st.index, st.policy.as_ref(), ordered);
            }
        }
        tracing::info!(policy = st.policy.name(), "eviction policy set");
    }

    /// Starts (`Some`) or stops (`None`) telling `recorder` of every counted use of a
    /// database, in order: the request stream a trace of this manager's traffic is made of.
    pub fn set_access_recorder(&self, recorder: Option<Arc<dyn AccessRecorder>>) {
        self.inner.lock_state().recorder = recorder;
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
                pool_id: e.rank.seq,
                db_name: name.to_string(),
                priority: e.rank.priority,
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
