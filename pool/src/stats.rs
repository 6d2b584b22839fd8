//! Usage statistics of open pools, and the snapshots `stats()` returns.

use serde::Serialize;

use super::policy::PoolStats;

/// Running usage of one open pool: the counts the eviction policies score (shared by the
/// manager and the replay tool, so both rank pools with the same arithmetic).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Operations counted so far.
    pub use_count: u64,
    /// Epoch milliseconds of the first counted operation (of the opening until then).
    pub first_used_ms: u64,
    /// Epoch milliseconds of the latest counted operation.
    pub last_used_ms: u64,
}

impl Usage {
    /// A pool opened at `now_ms`, not used yet.
    pub fn new(now_ms: u64) -> Self {
        Self {
            use_count: 0,
            first_used_ms: now_ms,
            last_used_ms: now_ms,
        }
    }

    /// Counts one operation at `now_ms`.
    pub fn record(&mut self, now_ms: u64) {
        if self.use_count == 0 {
            self.first_used_ms = now_ms;
        }
        self.use_count += 1;
        self.last_used_ms = self.last_used_ms.max(now_ms);
    }

    /// Mean milliseconds between consecutive operations (0 until there were two).
    pub fn avg_interval_ms(&self) -> f64 {
        if self.use_count < 2 {
            0.0
        } else {
            self.last_used_ms.saturating_sub(self.first_used_ms) as f64
                / (self.use_count - 1) as f64
        }
    }
}

/// Why a pool cannot be evicted right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// Priority -1.
    Pinned,
    /// At least one live change stream or keep-alive guard.
    Watched,
    /// Operations are running on it.
    Busy,
}

/// A snapshot of one open pool, as `stats()` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionStats {
    /// The pool's id (changes when the database is reopened).
    pub pool_id: u64,
    /// The database name.
    pub db_name: String,
    /// Its priority (lower = more important; -1 = pinned).
    pub priority: i32,
    /// Operations since the pool was opened.
    pub use_count: u64,
    /// Mean milliseconds between operations.
    pub avg_interval: f64,
    /// Last use, epoch milliseconds.
    pub last_used: u64,
    /// Milliseconds since the last use.
    pub idle_time: u64,
    /// Whether a change stream (or other keep-alive guard) is live.
    pub has_watch: bool,
    /// How many keep-alive guards are live.
    pub watch_count: u32,
    /// Operations running now.
    pub in_flight: u32,
    /// Cursors open now (a cursor protects its pool while in use and for `cursor_grace`
    /// after each use).
    pub open_cursors: u32,
    /// When the pool was opened, epoch milliseconds.
    pub opened_at: u64,
    /// The active policy's score (higher = keep).
    pub score: f64,
    /// Why it cannot be evicted now, if it cannot.
    pub protected: Option<Protection>,
}

impl ConnectionStats {
    /// The policy view of this snapshot.
    pub fn as_pool_stats(&self) -> PoolStats<'_> {
        PoolStats {
            pool_id: self.pool_id,
            db_name: &self.db_name,
            priority: self.priority,
            use_count: self.use_count,
            avg_interval_ms: self.avg_interval,
            last_used_ms: self.last_used,
            opened_at_ms: self.opened_at,
            in_flight: self.in_flight,
            watch_count: self.watch_count,
        }
    }
}

/// Manager-wide counters since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ManagerStats {
    /// Pools open now (including ones being closed).
    pub open_pools: usize,
    /// The configured cap, if any.
    pub max_connections: Option<usize>,
    /// Name of the active eviction policy.
    pub policy: String,
    /// Pools opened.
    pub opens: u64,
    /// Opens that failed.
    pub open_failures: u64,
    /// Pools evicted to make room.
    pub evictions: u64,
    /// Pools closed for idleness.
    pub idle_closes: u64,
    /// Pools closed on request.
    pub closes: u64,
    /// Requests that failed with `LimitReached`.
    pub limit_reached: u64,
    /// Requests that had to wait for a slot.
    pub slot_waits: u64,
    /// Operations that found their pool open.
    pub hits: u64,
    /// Operations that had to open (or wait for) their pool.
    pub misses: u64,
    /// Operations running now, across all pools.
    pub in_flight: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_interval_is_the_mean_gap() {
        let mut u = Usage::new(1_000);
        assert_eq!(u.avg_interval_ms(), 0.0);
        u.record(1_000);
        assert_eq!(u.avg_interval_ms(), 0.0);
        u.record(1_100);
        u.record(1_400);
        // gaps 100 and 300 -> mean 200
        assert_eq!(u.avg_interval_ms(), 200.0);
        assert_eq!(u.use_count, 3);
        assert_eq!(u.last_used_ms, 1_400);
    }
}
