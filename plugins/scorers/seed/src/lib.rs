//! `scorer-seed`: the host's built-in `seed` eviction formula as a scorer component.
//!
//! The seed score is `use_count * 10 / avg_interval - idle_ms * 0.001 - priority`, where an
//! `avg_interval` of 0 contributes no frequency term. With the built-in policy the connection
//! manager does not compare those scores, though: it keeps pools in an index ordered by the
//! policy's *stable key* `use_count * 10 / avg_interval + last_used_ms * 0.001 - priority`
//! (the score plus `now * 0.001`, the same for every pool) and closes the first evictable
//! one, ties to the pool opened first. Mathematically the two orders are the same; in `f64`
//! they are not quite: `last_used_ms * 0.001` is about 1.7e9 for an epoch timestamp, so the
//! key is rounded to about 2.4e-7 and near-ties break differently (the replay test found such
//! a decision within the first 700). To choose *exactly* what the built-in policy chooses,
//! this scorer returns the stable key, computed with the same `f64` operations in the same
//! order as `SeedPolicy::stable_key` (pool/src/policy.rs); the host then picks the lowest,
//! ties to the pool opened first, as the index does.

wit_bindgen::generate!({ world: "scorer", path: "../../../wit" });

use exports::polymongo::plugin::scoring::{Event, Guest, PoolStats};

struct Seed;

impl Guest for Seed {
    fn score_all(
        _events: Vec<Event>,
        _dropped: u64,
        pools: Vec<PoolStats>,
        _now_ms: u64,
    ) -> Vec<f64> {
        pools.iter().map(score).collect()
    }
}

/// `SeedPolicy::stable_key`: the seed score plus `now_ms * 0.001`.
fn score(pool: &PoolStats) -> f64 {
    let frequency = if pool.avg_interval_ms > 0.0 {
        pool.use_count as f64 * 10.0 / pool.avg_interval_ms
    } else {
        0.0
    };
    frequency + pool.last_used_ms as f64 * 0.001 - f64::from(pool.priority)
}

export!(Seed);
