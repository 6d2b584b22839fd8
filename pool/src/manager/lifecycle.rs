//! A pool's life after the builder: acquiring a lease (a hit, a wait on an open, a wait for a
//! slot, or an eviction), closing, idle sweeping, and lifecycle events.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::events::PoolEventKind;
use crate::handle::{Lease, PoolHandle, SlotWaiter};

use super::opening::{OpenTicket, OpenWait};
use super::slots::{Slot, State};
use super::Inner;

/// What `acquire` does after looking at the state.
enum Step {
    Ready(Lease),
    AwaitOpen(OpenTicket),
    AwaitClosed(Arc<PoolHandle>),
    AwaitSlot(SlotWaiter),
}

impl Inner {
    /// Gets a lease on `name`'s pool, opening it (and evicting another) if needed.
    pub(super) async fn acquire(self: &Arc<Self>, name: &str, counts_use: bool) -> Result<Lease> {
        let started = Instant::now();
        let mut missed = false;
        let mut record = counts_use;
        loop {
            let step = self.plan(name, counts_use, record)?;
            record = false;
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

    /// Decides, under the state lock, what `acquire` must do next; `record`: tell the access
    /// recorder of this use (once per `acquire`, not again when it loops).
    fn plan(self: &Arc<Self>, name: &str, counts_use: bool, record: bool) -> Result<Step> {
        let now = self.now();
        let mut guard = self.lock_state();
        self.check_alive()?;
        let st = &mut *guard;
        if record {
            if let Some(recorder) = &st.recorder {
                recorder.record(name);
            }
        }
        match st.slots.get_mut(name) {
            Some(Slot::Open(entry)) => {
                entry.handle.add_ops(1);
                if counts_use {
                    entry.rank.usage.record(now);
                    entry.reindex(&mut st.index, st.policy.as_ref(), st.ordered);
                    st.policy.on_access(entry.rank.seq, name, now);
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

    /// Closes an evicted pool and gives its slot to the pool being opened.
    pub(super) async fn evict(&self, victim: Victim, for_db: &str) {
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

    /// Closes one pool after its in-flight operations finish (bounded by `drain_limit`).
    pub(super) async fn close_pool(
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

    pub(super) async fn sweep_idle(&self) -> Vec<String> {
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
                        let idle = now.saturating_sub(e.rank.usage.last_used_ms);
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

pub(super) struct Victim {
    name: Arc<str>,
    handle: Arc<PoolHandle>,
    score: f64,
    policy: String,
}

pub(super) async fn run_sweeper(inner: Weak<Inner>, period: Duration) {
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
