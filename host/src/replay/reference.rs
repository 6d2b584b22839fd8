//! Built-in reference policies for the replay tool, beside LRU and MIN.
//!
//! [`WTinyLfuPolicy`]: W-TinyLFU with Caffeine's hill-climbing window ([`WTinyLfu`]), fed
//! from the manager's hooks and deciding through [`Follower`] with that single expert, so
//! the real open pools are exactly Caffeine's cache at every decision.

use std::sync::Mutex;

use super::experts::{Arc, Expert, Lru};
use super::follow::Follower;
use super::leader::LeaderRule;
use super::lirs::Lirs;
use super::visits2::{Config as Visits2Config, Visits2Expert};
use super::wtinylfu::WTinyLfu;
use crate::pool::{EvictionPolicy, PoolStats};

/// Name of the W-TinyLFU reference policy (`--policies wtinylfu`).
pub const WTINYLFU: &str = "wtinylfu";

/// The experts of the bundled `scorer-hybrid`, in its order (the first leads at the start):
/// `follow:wtinylfu+lru+arc+visits2+lirs` in the replay tool makes the same decisions.
pub const HYBRID_EXPERTS: [&str; 5] = [WTINYLFU, "lru", "arc", "visits2", "lirs"];

/// W-TinyLFU with Caffeine's adaptive window, as an eviction policy (for replays: its
/// decisions go through `score_all`, 0 for the victim and 1 for every other pool).
pub struct WTinyLfuPolicy {
    follower: Mutex<Follower>,
}

impl std::fmt::Debug for WTinyLfuPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WTinyLfuPolicy").finish_non_exhaustive()
    }
}

impl Default for WTinyLfuPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl WTinyLfuPolicy {
    /// A fresh policy (its capacity is learnt at the first decision, and the requests before
    /// it are replayed then, all at once: a reference has no budget, and a warm-up spread
    /// over several decisions would make its first ones LRU's, not Caffeine's).
    pub fn new() -> Self {
        let policy = Self::following(vec![Box::new(WTinyLfu::new(0))], LeaderRule::default());
        policy.with(|f| f.set_warm_up_step(usize::MAX));
        policy
    }

    /// A policy following the best of `experts` (the scorer `scorer-hybrid` natively, for
    /// experiments: `follow:wtinylfu+lru+arc+visits2+lirs` in the replay tool).
    pub fn following(experts: Vec<Box<dyn Expert + Send>>, rule: LeaderRule) -> Self {
        Self {
            follower: Mutex::new(Follower::new(experts, rule)),
        }
    }

    /// Experts by name: `wtinylfu`, `lru`, `arc`, `visits`, `lirs`; for experiments
    /// `hyperbolic`, `density`, `s3fifo`, `lfu` and `visits2[:switch[=value]…]` (`visits2.rs`,
    /// [`Config`]).
    ///
    /// [`Config`]: super::visits2::Config
    pub fn expert(name: &str) -> Option<Box<dyn Expert + Send>> {
        if let Some(expert) = super::visits2::expert_variant(name) {
            return Some(expert);
        }
        match name {
            WTINYLFU => Some(Box::new(WTinyLfu::new(0))),
            "lru" => Some(Box::new(Lru::new())),
            "arc" => Some(Box::new(Arc::new())),
            "visits" => Some(Box::new(Visits2Expert::new(Visits2Config::as_visits()))),
            "lirs" => Some(Box::new(Lirs::new())),
            "density" => Some(Box::new(super::density::HitDensity::new())),
            "s3fifo" => Some(Box::new(super::s3fifo::S3Fifo::new())),
            "lfu" => Some(Box::new(super::lfu::PerfectLfu::new())),
            "hyperbolic" => Some(Box::new(super::hyper::Hyperbolic::new())),
            _ => None,
        }
    }

    /// Runs `f` on the follower (the policy's hooks, and tests).
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut Follower) -> T) -> T {
        let mut guard = self
            .follower
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

impl EvictionPolicy for WTinyLfuPolicy {
    fn name(&self) -> &str {
        WTINYLFU
    }

    fn score(&self, pool: &PoolStats<'_>, now_ms: u64) -> f64 {
        // Only used on a single pool: fall back to recency.
        -(pool.idle_ms(now_ms) as f64)
    }

    fn score_all(&self, pools: &[PoolStats<'_>], _now_ms: u64) -> Vec<f64> {
        let ids: Vec<u64> = pools.iter().map(|p| p.pool_id).collect();
        let victim = self.with(|f| f.decide(&ids));
        (0..pools.len())
            .map(|i| if Some(i) == victim { 0.0 } else { 1.0 })
            .collect()
    }

    fn on_access(&self, pool_id: u64, _db: &str, _now_ms: u64) {
        self.with(|f| f.accessed(pool_id));
    }

    fn on_open(&self, pool_id: u64, db: &str, _now_ms: u64) {
        self.with(|f| f.opened(pool_id, db));
    }

    fn on_close(&self, pool_id: u64, _db: &str, _now_ms: u64) {
        self.with(|f| f.closed(pool_id));
    }
}
