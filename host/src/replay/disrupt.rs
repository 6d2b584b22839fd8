//! A wasm scorer disrupted once during a replay, as in a host: restarted (as after a trap) or
//! replaced by a new version of itself (a redeploy), for `polymongo replay --restart-at` and
//! `--reload-at`: what each costs the scorer's decisions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::pool::{EvictionPolicy, PoolStats};
use crate::runtime::WasmScorer;

/// What happens to the scorer at the chosen request.
pub enum Disruption {
    /// [`WasmScorer::restart`]: the instance is dropped; the next call starts a fresh one
    /// given the latest `scorer_replay_events` events.
    Restart,
    /// A new scorer from this factory takes over, as when a new version is deployed under
    /// the active scorer's name: it inherits the old one's events
    /// ([`WasmScorer::inherit_from`]; none with `scorer_replay_events` 0).
    Reload(Box<dyn Fn() -> WasmScorer + Send + Sync>),
}

/// A wasm scorer disrupted once, when the replay reaches request `at` (counted from 0).
pub struct DisruptedAt {
    label: String,
    current: ArcSwap<WasmScorer>,
    /// The scorer before a reload, kept for its counts.
    replaced: Mutex<Option<Arc<WasmScorer>>>,
    disruption: Disruption,
    at: u64,
    requests: AtomicU64,
}

impl DisruptedAt {
    /// `scorer`, disrupted by `disruption` at request `at`.
    pub fn new(scorer: Arc<WasmScorer>, disruption: Disruption, at: u64) -> Self {
        Self {
            label: scorer.name().to_string(),
            current: ArcSwap::new(scorer),
            replaced: Mutex::new(None),
            disruption,
            at,
            requests: AtomicU64::new(0),
        }
    }

    /// Decisions that fell back, over both scorers of a reload.
    pub fn failures(&self) -> u64 {
        self.scorers().iter().map(|s| s.failures()).sum()
    }

    /// The longest call of either scorer.
    pub fn slowest_call(&self) -> Duration {
        self.scorers()
            .iter()
            .map(|s| s.slowest_call())
            .max()
            .unwrap_or_default()
    }

    fn scorers(&self) -> Vec<Arc<WasmScorer>> {
        let replaced = self.replaced.lock().unwrap_or_else(|p| p.into_inner());
        replaced
            .iter()
            .cloned()
            .chain(std::iter::once(self.current.load_full()))
            .collect()
    }

    /// Counts a request (a hit's `on_access` or a miss's `on_open`, after the scorer got it);
    /// disrupts at the `at`-th.
    fn request(&self) {
        if self.requests.fetch_add(1, Ordering::Relaxed) != self.at {
            return;
        }
        match &self.disruption {
            Disruption::Restart => self.current.load().restart(),
            Disruption::Reload(make) => {
                let next = Arc::new(make());
                // As in the host: the new scorer gets every later event, then inherits.
                let previous = self.current.swap(next.clone());
                next.inherit_from(&previous);
                *self.replaced.lock().unwrap_or_else(|p| p.into_inner()) = Some(previous);
            }
        }
    }
}

impl EvictionPolicy for DisruptedAt {
    fn name(&self) -> &str {
        &self.label
    }

    fn score(&self, pool: &PoolStats<'_>, now_ms: u64) -> f64 {
        self.current.load().score(pool, now_ms)
    }

    fn stable_key(&self, pool: &PoolStats<'_>) -> Option<f64> {
        self.current.load().stable_key(pool)
    }

    fn score_all(&self, pools: &[PoolStats<'_>], now_ms: u64) -> Vec<f64> {
        self.current.load().score_all(pools, now_ms)
    }

    fn on_access(&self, pool_id: u64, db: &str, now_ms: u64) {
        self.current.load().on_access(pool_id, db, now_ms);
        self.request();
    }

    fn on_open(&self, pool_id: u64, db: &str, now_ms: u64) {
        self.current.load().on_open(pool_id, db, now_ms);
        self.request();
    }

    fn on_close(&self, pool_id: u64, db: &str, now_ms: u64) {
        self.current.load().on_close(pool_id, db, now_ms);
    }
}
