//! Eviction policies: which open pool is worth least when a slot is needed.
//!
//! A policy scores pools (higher = keep). The manager evicts the evictable pool with the
//! lowest score, ties going to the pool opened earliest. Pools with priority -1, a live
//! keep-alive guard (change stream) or an operation in flight are never offered to a policy.

use std::sync::Arc;

/// Priority given to databases that have none set.
pub const DEFAULT_PRIORITY: i32 = 100;

/// Priority that pins a pool: never evicted, never idle-closed.
pub const PINNED_PRIORITY: i32 = -1;

/// What a policy knows about one open pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolStats<'a> {
    /// The pool's id: stable while it stays open (a reopened database gets a new one).
    pub pool_id: u64,
    /// The database name.
    pub db_name: &'a str,
    /// Its priority (lower = more important; -1 = pinned).
    pub priority: i32,
    /// Operations run on it since it was opened.
    pub use_count: u64,
    /// Mean milliseconds between its operations (0 until there were two).
    pub avg_interval_ms: f64,
    /// When it was last used, in epoch milliseconds.
    pub last_used_ms: u64,
    /// When it was opened, in epoch milliseconds.
    pub opened_at_ms: u64,
    /// Operations running on it now.
    pub in_flight: u32,
    /// Live keep-alive guards (change streams) on it.
    pub watch_count: u32,
}

impl PoolStats<'_> {
    /// Milliseconds since the last use, at `now_ms`.
    pub fn idle_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_used_ms)
    }
}

/// Decides which pool to close when a new one needs a slot. Higher score = keep.
pub trait EvictionPolicy: Send + Sync + 'static {
    /// A short name for logs, events and metrics.
    fn name(&self) -> &str;

    /// The pool's score at `now_ms`; higher means more worth keeping.
    fn score(&self, pool: &PoolStats<'_>, now_ms: u64) -> f64;

    /// A time-independent ranking key, for policies whose ordering of pools does not change
    /// while the pools sit idle (the score is `key(pool) - g(now)` for some `g` shared by all
    /// pools). When a policy returns `Some`, the manager keeps an ordered index and picks a
    /// victim in logarithmic time instead of scoring every pool.
    fn stable_key(&self, _pool: &PoolStats<'_>) -> Option<f64> {
        None
    }

    /// Scores a batch of pools; one call per eviction decision. Must return one finite score
    /// per pool, in order.
    fn score_all(&self, pools: &[PoolStats<'_>], now_ms: u64) -> Vec<f64> {
        pools.iter().map(|p| self.score(p, now_ms)).collect()
    }

    /// Called after every operation on pool `pool_id` (database `db`), for stateful policies.
    fn on_access(&self, _pool_id: u64, _db: &str, _now_ms: u64) {}

    /// Called when pool `pool_id` has been opened for `db`.
    fn on_open(&self, _pool_id: u64, _db: &str, _now_ms: u64) {}

    /// Called when pool `pool_id` (database `db`) has been closed for any reason.
    fn on_close(&self, _pool_id: u64, _db: &str, _now_ms: u64) {}
}

/// The original library's formula (the default):
/// `use_count * 10 / avg_interval - idle_time * 0.001 - priority`, where an `avg_interval`
/// of 0 contributes no frequency term.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeedPolicy;

impl SeedPolicy {
    /// The frequency term `use_count * 10 / avg_interval` (0 while the interval is unknown).
    pub fn frequency_term(pool: &PoolStats<'_>) -> f64 {
        if pool.avg_interval_ms > 0.0 {
            pool.use_count as f64 * 10.0 / pool.avg_interval_ms
        } else {
            0.0
        }
    }
}

impl EvictionPolicy for SeedPolicy {
    fn name(&self) -> &str {
        "seed"
    }

    fn score(&self, pool: &PoolStats<'_>, now_ms: u64) -> f64 {
        Self::frequency_term(pool) - pool.idle_ms(now_ms) as f64 * 0.001 - f64::from(pool.priority)
    }

    fn stable_key(&self, pool: &PoolStats<'_>) -> Option<f64> {
        // score = key - now * 0.001, so ordering by key is ordering by score at any `now`.
        Some(
            Self::frequency_term(pool) + pool.last_used_ms as f64 * 0.001
                - f64::from(pool.priority),
        )
    }
}

/// Least recently used: the pool idle longest goes first. Priorities other than -1 are
/// ignored.
#[derive(Debug, Default, Clone, Copy)]
pub struct LruPolicy;

impl EvictionPolicy for LruPolicy {
    fn name(&self) -> &str {
        "lru"
    }

    fn score(&self, pool: &PoolStats<'_>, now_ms: u64) -> f64 {
        -(pool.idle_ms(now_ms) as f64)
    }

    fn stable_key(&self, pool: &PoolStats<'_>) -> Option<f64> {
        Some(pool.last_used_ms as f64)
    }
}

/// Whether `policy` ranks pools by a stable key (see [`EvictionPolicy::stable_key`]).
pub fn has_stable_key(policy: &dyn EvictionPolicy) -> bool {
    let probe = PoolStats {
        pool_id: 0,
        db_name: "",
        priority: DEFAULT_PRIORITY,
        use_count: 0,
        avg_interval_ms: 0.0,
        last_used_ms: 0,
        opened_at_ms: 0,
        in_flight: 0,
        watch_count: 0,
    };
    policy.stable_key(&probe).is_some()
}

/// The outcome of one scored eviction decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// Index of the victim in the candidates.
    pub index: usize,
    /// Its score (the seed formula's when the policy's answer was unusable).
    pub score: f64,
    /// Whether the policy's answer was unusable (wrong length, NaN) and the seed formula chose.
    pub fell_back: bool,
}

/// Chooses the victim among `candidates` with one `score_all` call: the lowest score, ties
/// to the lowest `pool_id` (the pool opened first). An unusable answer falls back to the seed
/// formula, ranked by its stable key exactly as the built-in seed policy ranks pools.
pub fn lowest_score(
    policy: &dyn EvictionPolicy,
    candidates: &[PoolStats<'_>],
    now_ms: u64,
) -> Option<Choice> {
    if candidates.is_empty() {
        return None;
    }
    let scores = policy.score_all(candidates, now_ms);
    let usable = scores.len() == candidates.len() && !scores.iter().any(|s| s.is_nan());
    let (ranks, scores) = if usable {
        (scores.clone(), scores)
    } else {
        let keys = candidates
            .iter()
            .map(|p| SeedPolicy.stable_key(p).unwrap_or(f64::NAN))
            .collect::<Vec<_>>();
        (keys, SeedPolicy.score_all(candidates, now_ms))
    };
    let index = (0..candidates.len()).min_by(|&a, &b| {
        ranks[a]
            .total_cmp(&ranks[b])
            .then(candidates[a].pool_id.cmp(&candidates[b].pool_id))
    })?;
    Some(Choice {
        index,
        score: scores[index],
        fell_back: !usable,
    })
}

/// Looks up a built-in policy by name (`seed` or `lru`).
pub fn builtin_policy(name: &str) -> Option<Arc<dyn EvictionPolicy>> {
    match name {
        "seed" => Some(Arc::new(SeedPolicy)),
        "lru" => Some(Arc::new(LruPolicy)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(use_count: u64, avg: f64, last_used: u64, priority: i32) -> PoolStats<'static> {
        PoolStats {
            pool_id: 0,
            db_name: "x",
            priority,
            use_count,
            avg_interval_ms: avg,
            last_used_ms: last_used,
            opened_at_ms: 0,
            in_flight: 0,
            watch_count: 0,
        }
    }

    #[test]
    fn seed_formula_matches_the_spec() {
        let p = stats(50, 200.0, 9_000, 100);
        // 50 * 10 / 200 = 2.5; idle 1000 ms -> 1.0; priority 100.
        assert_eq!(SeedPolicy.score(&p, 10_000), 2.5 - 1.0 - 100.0);
        // No interval yet: no frequency term.
        let q = stats(1, 0.0, 10_000, 5);
        assert_eq!(SeedPolicy.score(&q, 10_000), -5.0);
    }

    #[test]
    fn lower_priority_number_scores_higher() {
        let important = stats(1, 0.0, 0, 5);
        let archive = stats(1, 0.0, 0, 150);
        assert!(SeedPolicy.score(&important, 0) > SeedPolicy.score(&archive, 0));
    }

    #[test]
    fn lowest_score_breaks_ties_by_age_and_falls_back_on_bad_answers() {
        struct Constant(Vec<f64>);
        impl EvictionPolicy for Constant {
            fn name(&self) -> &str {
                "constant"
            }
            fn score(&self, _pool: &PoolStats<'_>, _now: u64) -> f64 {
                0.0
            }
            fn score_all(&self, _pools: &[PoolStats<'_>], _now: u64) -> Vec<f64> {
                self.0.clone()
            }
        }
        let mut pools = vec![
            stats(1, 0.0, 900, 100),
            stats(1, 0.0, 500, 100),
            stats(1, 0.0, 800, 100),
        ];
        for (i, p) in pools.iter_mut().enumerate() {
            p.pool_id = [7, 3, 5][i];
        }
        // A tie between the first two: the lower pool id (opened first) goes.
        let c = lowest_score(&Constant(vec![1.0, 1.0, 2.0]), &pools, 1_000).unwrap();
        assert_eq!((c.index, c.fell_back), (1, false));
        // Wrong length or NaN: the seed formula decides (the least recently used here).
        for bad in [vec![1.0], vec![f64::NAN, 0.0, 0.0]] {
            let c = lowest_score(&Constant(bad), &pools, 1_000).unwrap();
            assert_eq!((c.index, c.fell_back), (1, true));
            assert_eq!(c.score, SeedPolicy.score(&pools[1], 1_000));
        }
        assert!(lowest_score(&SeedPolicy, &[], 0).is_none());
    }

    #[test]
    fn stable_keys_order_like_scores() {
        let pools = [
            stats(50, 200.0, 9_000, 100),
            stats(3, 1000.0, 9_990, 100),
            stats(1, 0.0, 5_000, 10),
            stats(80, 20.0, 1_000, 150),
        ];
        for policy in [&SeedPolicy as &dyn EvictionPolicy, &LruPolicy] {
            for now in [10_000, 50_000, 1_000_000] {
                for a in &pools {
                    for b in &pools {
                        let by_score = policy.score(a, now).total_cmp(&policy.score(b, now));
                        let by_key = policy
                            .stable_key(a)
                            .unwrap()
                            .total_cmp(&policy.stable_key(b).unwrap());
                        assert_eq!(by_score, by_key, "{} at {now}", policy.name());
                    }
                }
            }
        }
    }
}
