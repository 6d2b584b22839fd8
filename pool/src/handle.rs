//! An open pool's shared handle, and the guards that keep it from being closed:
//! [`Lease`] (an operation in flight) and [`KeepAlive`] (a change stream or caller pin).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::{Client, Database};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Notify, OnceCell, OwnedSemaphorePermit, Semaphore};

use super::support::ServerCaps;

/// Wake-ups for requests waiting for a free slot.
///
/// A waiter registers (increments `waiters` and enables its notification) *before* it looks
/// for an evictable pool; a releaser decrements its counter *before* it reads `waiters`. With
/// sequentially consistent atomics at least one of the two sees the other, so no wake-up is lost.
#[derive(Debug, Default)]
pub(crate) struct SlotSignal {
    waiters: AtomicUsize,
    freed: Arc<Notify>,
}

impl SlotSignal {
    /// Wakes every registered waiter, if there is any.
    pub fn notify(&self) {
        if self.waiters.load(SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// Wakes every registered waiter unconditionally.
    pub fn notify_all(&self) {
        self.freed.notify_waiters();
    }

    /// Registers a waiter; it is woken by the next `notify` after this call.
    pub fn register(self: &Arc<Self>) -> SlotWaiter {
        let mut notified = Box::pin(self.freed.clone().notified_owned());
        notified.as_mut().enable();
        self.waiters.fetch_add(1, SeqCst);
        SlotWaiter {
            notified,
            signal: self.clone(),
        }
    }
}

/// A registered wait for a free slot.
pub(crate) struct SlotWaiter {
    notified: Pin<Box<OwnedNotified>>,
    signal: Arc<SlotSignal>,
}

impl SlotWaiter {
    /// Resolves at the next notification.
    pub async fn wait(mut self) {
        self.notified.as_mut().await;
    }
}

impl Drop for SlotWaiter {
    fn drop(&mut self) {
        self.signal.waiters.fetch_sub(1, SeqCst);
    }
}

/// One open database pool: the driver client and the counters that protect it.
pub(crate) struct PoolHandle {
    pub name: Arc<str>,
    pub client: Client,
    pub database: Database,
    pub opened_at_ms: u64,
    pool_id: AtomicU64,
    in_flight: AtomicU32,
    guards: AtomicU32,
    /// Open cursors (each a [`CursorLease`]), cursor calls running now, and when a cursor
    /// was last used (ms since `created`).
    cursors: AtomicU32,
    cursor_calls: AtomicU32,
    cursor_used_ms: AtomicU64,
    /// How long an unused cursor keeps the pool protected.
    cursor_grace: Duration,
    created: Instant,
    closing: AtomicBool,
    closed: AtomicBool,
    drained: Notify,
    closed_notify: Notify,
    caps: OnceCell<ServerCaps>,
    signal: Arc<SlotSignal>,
    /// Whether `client` is shared with other databases (then closing this pool leaves it open).
    shared: bool,
    /// Bound on this database's concurrent operations on a shared client.
    op_permits: Option<Arc<Semaphore>>,
}

impl PoolHandle {
    pub fn new(
        name: Arc<str>,
        client: Client,
        opened_at_ms: u64,
        signal: Arc<SlotSignal>,
        cursor_grace: Duration,
    ) -> Self {
        let database = client.database(&name);
        Self {
            name,
            client,
            database,
            opened_at_ms,
            pool_id: AtomicU64::new(u64::MAX),
            in_flight: AtomicU32::new(0),
            guards: AtomicU32::new(0),
            cursors: AtomicU32::new(0),
            cursor_calls: AtomicU32::new(0),
            cursor_used_ms: AtomicU64::new(0),
            cursor_grace,
            created: Instant::now(),
            closing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            drained: Notify::new(),
            closed_notify: Notify::new(),
            caps: OnceCell::new(),
            signal,
            shared: false,
            op_permits: None,
        }
    }

    /// Marks the client as shared: closing this pool will not shut it down, and at most
    /// `op_permits` operations of this database run on it at once.
    pub fn on_shared_client(mut self, op_permits: Arc<Semaphore>) -> Self {
        self.shared = true;
        self.op_permits = Some(op_permits);
        self
    }

    /// The pool's id (its open sequence number), set when it is published.
    pub fn pool_id(&self) -> u64 {
        self.pool_id.load(SeqCst)
    }

    /// Sets the pool's id.
    pub fn set_pool_id(&self, id: u64) {
        self.pool_id.store(id, SeqCst);
    }

    /// Operations running now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(SeqCst)
    }

    /// Whether work protects the pool from eviction and idle closing: an operation in
    /// flight, a cursor call running, or an open cursor used within the cursor grace period.
    /// An open cursor left unused for longer does not protect its pool (pool-slot fairness):
    /// if the pool is then evicted, the cursor's next call fails as `unavailable`.
    pub fn is_busy(&self) -> bool {
        self.in_flight() > 0
            || self.cursor_calls.load(SeqCst) > 0
            || (self.cursors.load(SeqCst) > 0 && self.cursor_idle() < self.cursor_grace)
    }

    fn since_created_ms(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn cursor_idle(&self) -> Duration {
        let used = self.cursor_used_ms.load(SeqCst);
        Duration::from_millis(self.since_created_ms().saturating_sub(used))
    }

    /// Cursors open now.
    pub fn open_cursors(&self) -> u32 {
        self.cursors.load(SeqCst)
    }

    /// Whether the pool is closing or closed (its cursors are dead).
    pub fn is_closing(&self) -> bool {
        self.closing.load(SeqCst)
    }

    /// Live keep-alive guards.
    pub fn guards(&self) -> u32 {
        self.guards.load(SeqCst)
    }

    /// Adds `n` operations (called under the manager's state lock).
    pub fn add_ops(&self, n: u32) {
        self.in_flight.fetch_add(n, SeqCst);
    }

    /// Adds a keep-alive guard (called under the manager's state lock).
    pub fn add_guard(&self) {
        self.guards.fetch_add(1, SeqCst);
    }

    /// Ends one operation.
    pub fn release_op(&self) {
        if self.in_flight.fetch_sub(1, SeqCst) == 1 {
            if self.closing.load(SeqCst) {
                self.drained.notify_waiters();
            }
            self.signal.notify();
        }
    }

    fn release_guard(&self) {
        if self.guards.fetch_sub(1, SeqCst) == 1 {
            self.signal.notify();
        }
    }

    /// Marks the pool as closing: no new work is admitted by the manager.
    pub fn mark_closing(&self) {
        self.closing.store(true, SeqCst);
    }

    /// Waits until no operation is in flight.
    pub async fn wait_drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Marks the pool closed and wakes whoever waits for that.
    pub fn mark_closed(&self) {
        self.closed.store(true, SeqCst);
        self.closed_notify.notify_waiters();
    }

    /// Waits until the pool is closed.
    pub async fn wait_closed(&self) {
        loop {
            let notified = self.closed_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.closed.load(SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Closes the driver client without waiting for handles the manager does not track; a
    /// shared client stays open (only the manager's `destroy` shuts it down).
    pub async fn shutdown_client(&self) {
        if self.shared {
            return;
        }
        self.client.clone().shutdown().immediate(true).await;
    }

    /// The server's capabilities, asked once per pool.
    pub async fn caps(&self, redactor: &super::secret::Redactor) -> super::Result<ServerCaps> {
        self.caps
            .get_or_try_init(|| ServerCaps::detect(&self.database, redactor))
            .await
            .copied()
    }
}

/// An operation in flight on a pool. While any lease is alive the pool is neither evicted nor
/// closed; dropping the last one lets a waiting close proceed.
pub struct Lease {
    handle: Arc<PoolHandle>,
    /// This operation's share of its database's operations on a shared client.
    permit: Option<OwnedSemaphorePermit>,
}

impl Lease {
    /// Wraps a handle whose in-flight count already includes this lease.
    pub(crate) fn granted(handle: Arc<PoolHandle>) -> Self {
        Self {
            handle,
            permit: None,
        }
    }

    /// Takes one of the database's operation permits when its pool runs on a shared client,
    /// waiting up to `limit`; a [`Timeout`](super::Error::Timeout) error names the bound.
    pub(crate) async fn with_op_permit(mut self, limit: Duration) -> super::Result<Self> {
        let Some(permits) = self.handle.op_permits.clone() else {
            return Ok(self);
        };
        let started = Instant::now();
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match tokio::time::timeout(limit, permits.acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(super::Error::Destroyed),
                Err(_) => {
                    let (name, waited) = (&self.handle.name, started.elapsed());
                    return Err(super::Error::Timeout(format!(
                        "database {name} has all its operation slots on the shared \
                         connection pool in use (max_pool_size); waited {waited:?}"
                    )));
                }
            },
        };
        self.permit = Some(permit);
        Ok(self)
    }

    /// The database this lease is for (a driver handle bound to the tenant's database).
    pub fn database(&self) -> &Database {
        &self.handle.database
    }

    /// The database name.
    pub fn db_name(&self) -> &str {
        &self.handle.name
    }

    pub(crate) fn handle(&self) -> &Arc<PoolHandle> {
        &self.handle
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.handle.release_op();
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("db", &&*self.handle.name)
            .finish()
    }
}

/// An open cursor's hold on its pool: it protects the pool while the cursor is in use and
/// for the cursor grace period after each use, not beyond (see [`PoolHandle::is_busy`]).
pub(crate) struct CursorLease {
    handle: Arc<PoolHandle>,
}

impl CursorLease {
    /// Turns the lease of the operation that opened a cursor into the cursor's hold.
    pub fn from_lease(mut lease: Lease) -> Self {
        let handle = lease.handle.clone();
        // An idle cursor holds no socket: its operation permit goes back now.
        lease.permit = None;
        // Counted before the lease goes, so the pool is never seen unprotected in between.
        handle.cursors.fetch_add(1, SeqCst);
        handle
            .cursor_used_ms
            .store(handle.since_created_ms(), SeqCst);
        drop(lease);
        Self { handle }
    }

    /// Marks a cursor call as running until the returned guard drops; `None` if the pool is
    /// closing or closed (the cursor is dead).
    pub fn begin_call(&self) -> Option<CursorCall<'_>> {
        self.handle.cursor_calls.fetch_add(1, SeqCst);
        let call = CursorCall { lease: self };
        if self.handle.is_closing() {
            return None;
        }
        Some(call)
    }
}

impl Drop for CursorLease {
    fn drop(&mut self) {
        if self.handle.cursors.fetch_sub(1, SeqCst) == 1 {
            self.handle.signal.notify();
        }
    }
}

/// A cursor call in progress (see [`CursorLease::begin_call`]).
pub(crate) struct CursorCall<'a> {
    lease: &'a CursorLease,
}

impl Drop for CursorCall<'_> {
    fn drop(&mut self) {
        let handle = &self.lease.handle;
        handle
            .cursor_used_ms
            .store(handle.since_created_ms(), SeqCst);
        handle.cursor_calls.fetch_sub(1, SeqCst);
    }
}

/// Keeps a pool protected from eviction and idle closing while alive. Guards are counted: the
/// pool stays protected until the last one drops. Every change stream holds one.
pub struct KeepAlive {
    handle: Arc<PoolHandle>,
}

impl KeepAlive {
    /// Wraps a handle whose guard count already includes this guard.
    pub(crate) fn granted(handle: Arc<PoolHandle>) -> Self {
        Self { handle }
    }

    /// The database this guard protects.
    pub fn db_name(&self) -> &str {
        &self.handle.name
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.handle.release_guard();
    }
}

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeepAlive")
            .field("db", &&*self.handle.name)
            .finish()
    }
}
