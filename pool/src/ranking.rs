//! One open pool's place in the eviction ranking: its open sequence, priority and usage, the
//! [`PoolStats`] a policy scores, and its entry in the ordered [`EvictionIndex`].
//!
//! The connection manager keeps every open pool's ranking with [`Ranked`], and so does the
//! replay tool (`polymongo::replay`), so a replay ranks pools with the manager's own code.

use std::sync::Arc;

use crate::index::EvictionIndex;
use crate::policy::{EvictionPolicy, PoolStats, PINNED_PRIORITY};
use crate::stats::Usage;

/// What an eviction policy ranks an open pool by, and where the pool is in the index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// The pool's open sequence number (its pool id; score ties go to the smaller).
    pub seq: u64,
    /// Its priority (lower = more important; -1 = pinned, never evicted).
    pub priority: i32,
    /// Its operations so far.
    pub usage: Usage,
    /// When it was opened, in epoch milliseconds.
    pub opened_at_ms: u64,
    /// The key under which it is in the index, if it is.
    index_key: Option<f64>,
}

impl Ranked {
    /// A pool opened at `opened_at_ms` with open sequence `seq`, not in the index yet.
    pub fn new(seq: u64, priority: i32, opened_at_ms: u64, usage: Usage) -> Self {
        Self {
            seq,
            priority,
            usage,
            opened_at_ms,
            index_key: None,
        }
    }

    /// Whether the priority pins the pool (it is never evicted nor idle-closed).
    pub fn is_pinned(&self) -> bool {
        self.priority == PINNED_PRIORITY
    }

    /// The statistics a policy scores, with the pool's current operations and guards.
    pub fn stats<'a>(&self, name: &'a str, in_flight: u32, watch_count: u32) -> PoolStats<'a> {
        PoolStats {
            pool_id: self.seq,
            db_name: name,
            priority: self.priority,
            use_count: self.usage.use_count,
            avg_interval_ms: self.usage.avg_interval_ms(),
            last_used_ms: self.usage.last_used_ms,
            opened_at_ms: self.opened_at_ms,
            in_flight,
            watch_count,
        }
    }

    /// Re-files the pool named `name` in `index` after its usage or priority changed: under
    /// the policy's stable key when `ordered` (the policy has stable keys) and the pool is not
    /// pinned, else out of the index. `activity` is its (in-flight operations, guards).
    pub fn reindex(
        &mut self,
        index: &mut EvictionIndex,
        policy: &dyn EvictionPolicy,
        ordered: bool,
        name: &Arc<str>,
        activity: (u32, u32),
    ) {
        let new_key = if ordered && !self.is_pinned() {
            policy.stable_key(&self.stats(name, activity.0, activity.1))
        } else {
            None
        };
        match (self.index_key, new_key) {
            (Some(old), Some(new)) => index.update(old, new, self.seq),
            (Some(old), None) => index.remove(old, self.seq),
            (None, Some(new)) => index.insert(new, self.seq, name.clone()),
            (None, None) => {}
        }
        self.index_key = new_key;
    }

    /// Takes the pool out of `index` (it is closing).
    pub fn unindex(&mut self, index: &mut EvictionIndex) {
        if let Some(key) = self.index_key.take() {
            index.remove(key, self.seq);
        }
    }

    /// Forgets the index entry without touching an index (after the index was cleared).
    pub fn forget_index_key(&mut self) {
        self.index_key = None;
    }
}
