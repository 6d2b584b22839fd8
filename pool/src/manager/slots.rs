//! Slot bookkeeping under the manager's lock: which databases are opening, open or closing,
//! their usage and priority, the ordered eviction index, and the choice of a victim.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use crate::handle::PoolHandle;
use crate::index::EvictionIndex;
use crate::policy::{lowest_score, EvictionPolicy, PoolStats, DEFAULT_PRIORITY};
use crate::ranking::Ranked;
use crate::recorder::AccessRecorder;
use crate::stats::Protection;

use super::opening::OpenWait;

#[derive(Default)]
pub(super) struct Counters {
    pub(super) opens: AtomicU64,
    pub(super) open_failures: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) idle_closes: AtomicU64,
    pub(super) closes: AtomicU64,
    pub(super) limit_reached: AtomicU64,
    pub(super) slot_waits: AtomicU64,
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) policy_fallbacks: AtomicU64,
}

pub(super) struct State {
    pub(super) slots: HashMap<Arc<str>, Slot>,
    pub(super) index: EvictionIndex,
    pub(super) priorities: HashMap<String, i32>,
    pub(super) policy: Arc<dyn EvictionPolicy>,
    /// Whether `policy` has stable keys (then `index` is maintained).
    pub(super) ordered: bool,
    pub(super) next_seq: u64,
    /// Closing slots whose place is already promised to a pool being opened.
    pub(super) handed_over: usize,
    /// Told of every counted use, when a trace is being recorded.
    pub(super) recorder: Option<Arc<dyn AccessRecorder>>,
}

pub(super) enum Slot {
    Opening(Arc<OpenWait>),
    Open(OpenPool),
    Closing(Arc<PoolHandle>, bool),
}

/// An open pool: its client handle and its place in the eviction ranking.
pub(super) struct OpenPool {
    pub(super) handle: Arc<PoolHandle>,
    pub(super) rank: Ranked,
}

impl OpenPool {
    /// The statistics a policy scores (with the pool's live operations and guards).
    pub(super) fn stats<'a>(&self, name: &'a str) -> PoolStats<'a> {
        self.rank
            .stats(name, self.handle.in_flight(), self.handle.guards())
    }

    pub(super) fn protection(&self) -> Option<Protection> {
        if self.rank.is_pinned() {
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
    pub(super) fn reindex(
        &mut self,
        index: &mut EvictionIndex,
        policy: &dyn EvictionPolicy,
        ordered: bool,
    ) {
        let activity = (self.handle.in_flight(), self.handle.guards());
        self.rank
            .reindex(index, policy, ordered, &self.handle.name, activity);
    }
}

impl State {
    pub(super) fn priority_of(&self, db: &str) -> i32 {
        self.priorities.get(db).copied().unwrap_or(DEFAULT_PRIORITY)
    }

    pub(super) fn live_slots(&self) -> usize {
        self.slots.len() - self.handed_over
    }

    /// Takes an open pool out of service: its slot becomes `Closing`.
    pub(super) fn begin_close(
        &mut self,
        name: &Arc<str>,
        handed_over: bool,
    ) -> Option<Arc<PoolHandle>> {
        let slot = self.slots.get_mut(name)?;
        let Slot::Open(entry) = slot else {
            return None;
        };
        entry.rank.unindex(&mut self.index);
        let handle = entry.handle.clone();
        handle.mark_closing();
        *slot = Slot::Closing(handle.clone(), handed_over);
        if handed_over {
            self.handed_over += 1;
        }
        Some(handle)
    }

    /// Removes a closing slot once its client is shut down.
    pub(super) fn finish_close(&mut self, name: &str, handle: &Arc<PoolHandle>) {
        if let Some(Slot::Closing(h, handed_over)) = self.slots.get(name) {
            if Arc::ptr_eq(h, handle) {
                if *handed_over {
                    self.handed_over -= 1;
                }
                self.slots.remove(name);
            }
        }
    }

    pub(super) fn is_evictable(entry: &OpenPool) -> bool {
        !entry.rank.is_pinned() && !entry.handle.is_busy() && entry.handle.guards() == 0
    }

    /// The evictable pool with the lowest score (ties to the earliest opened), and its score.
    pub(super) fn choose_victim(
        &self,
        now_ms: u64,
        fallbacks: &AtomicU64,
    ) -> Option<(Arc<str>, f64)> {
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
