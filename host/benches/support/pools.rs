//! Synthetic pool statistics for the eviction benchmarks: `n` pools with pseudo-random use
//! counts, intervals and last uses (xorshift from `seed`, so every run sees the same pools).

use polymongo::pool::PoolStats;

/// `n` pools with ids `0..n`, priority 100, nothing in flight.
pub fn synthetic_pools(n: usize, seed: u64) -> Vec<PoolStats<'static>> {
    let mut x = seed;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            PoolStats {
                pool_id: i as u64,
                db_name: "",
                priority: 100,
                use_count: 1 + x % 500,
                avg_interval_ms: 1.0 + (x % 10_000) as f64,
                last_used_ms: 1_700_000_000_000 + (x >> 20) % 600_000,
                opened_at_ms: 1_700_000_000_000,
                in_flight: 0,
                watch_count: 0,
            }
        })
        .collect()
}
