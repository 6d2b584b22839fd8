//! Single-flight opening: the first request for a closed database starts one open task;
//! every request that arrives meanwhile waits on it and receives its own lease.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::doc;
use tokio::sync::watch;

use crate::clients::{self};
use crate::error::{Error, Result};
use crate::events::PoolEventKind;
use crate::handle::{Lease, PoolHandle};
use crate::ranking::Ranked;
use crate::routing::Target;
use crate::stats::Usage;

use super::builder::parse_options;
use super::lifecycle::Victim;
use super::slots::{OpenPool, Slot};
use super::Inner;

/// A pool being opened; requests for the same database wait on it (single flight).
pub(super) struct OpenWait {
    pub(super) result: watch::Sender<Option<Result<Arc<PoolHandle>>>>,
    /// Waiters that will each receive a lease when the open succeeds (under the state lock).
    pub(super) registered: AtomicUsize,
    /// Of those, how many are operations (warm-ups do not count as uses).
    pub(super) uses: AtomicUsize,
    /// Set under the state lock when the result is decided.
    pub(super) completed: AtomicBool,
}

impl OpenWait {
    pub(super) fn new() -> Arc<Self> {
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
pub(super) struct OpenTicket {
    wait: Arc<OpenWait>,
    inner: Arc<Inner>,
    counts_use: bool,
    consumed: bool,
}

impl OpenTicket {
    /// Registers a waiter. Must be called with the state lock held.
    pub(super) fn register(wait: &Arc<OpenWait>, inner: &Arc<Inner>, counts_use: bool) -> Self {
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

    pub(super) async fn lease(mut self) -> Result<Lease> {
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

impl Inner {
    /// Runs one open to completion: closes the victim (if any), connects, publishes the result.
    pub(super) async fn open_pool(
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
                    let rank = Ranked::new(
                        st.next_seq,
                        st.priority_of(&name),
                        handle.opened_at_ms,
                        usage,
                    );
                    let mut entry = OpenPool {
                        handle: handle.clone(),
                        rank,
                    };
                    st.next_seq += 1;
                    handle.set_pool_id(entry.rank.seq);
                    entry.reindex(&mut st.index, st.policy.as_ref(), st.ordered);
                    st.policy.on_open(entry.rank.seq, &name, now);
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

    /// Creates the client for one database and (optionally) checks that the server answers.
    pub(super) async fn connect(&self, name: &str) -> Result<Arc<PoolHandle>> {
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
}
