//! Rate limits on plugin log output: a token bucket of lines and one of bytes per (plugin,
//! tenant), for the `log` import and for captured stdout/stderr alike. What does not fit is
//! dropped and counted per plugin (for `/metrics`), with an occasional summary line.
//!
//! The map of buckets is bounded: when it is full, buckets that have refilled (a full bucket
//! is the same as a new one, so forgetting it grants nothing) are forgotten; if none has, new
//! tenants of that plugin share one overflow bucket. Made-up tenant names cannot grow it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tenant name of the bucket that plugins' tenants share when the map of buckets is full
/// (`*` is never a valid database name, so no tenant has it).
const OVERFLOW_TENANT: &str = "*";

/// Shortest interval between two summary lines of one bucket.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

/// Most summary lines per second across all buckets (the rest wait for a later one).
const SUMMARIES_PER_SEC: u32 = 20;

/// (plugin, tenant).
type BucketKey = (Arc<str>, Box<str>);

/// Limits on plugin log output, per (plugin, tenant). Config keys `logs.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Lines per second (the bucket's refill rate); 0 drops every plugin log line.
    pub lines_per_sec: u32,
    /// Lines that may come at once after a quiet spell (the bucket's size).
    pub burst_lines: u32,
    /// Bytes per second.
    pub bytes_per_sec: u64,
    /// Bytes that may come at once (at least one line's worth, 8 KiB, to be useful).
    pub burst_bytes: u64,
    /// Buckets tracked at once (distinct plugin and tenant pairs).
    pub max_tracked: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            lines_per_sec: 100,
            burst_lines: 200,
            bytes_per_sec: 64 << 10,
            burst_bytes: 128 << 10,
            max_tracked: 4096,
        }
    }
}

/// The buckets of every (plugin, tenant) and the drop counts per plugin. Shared by all
/// requests of a runtime.
#[derive(Debug)]
pub struct LogLimiter {
    limits: LogLimits,
    buckets: Mutex<HashMap<BucketKey, Arc<LogBucket>>>,
    dropped: Mutex<BTreeMap<Arc<str>, Arc<AtomicU64>>>,
    summaries: Mutex<(Instant, u32)>,
}

/// The bucket of one (plugin, tenant).
#[derive(Debug)]
pub(crate) struct LogBucket {
    plugin: Arc<str>,
    tenant: Box<str>,
    plugin_dropped: Arc<AtomicU64>,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    lines: f64,
    bytes: f64,
    refilled: Instant,
    unreported: u64,
    last_summary: Option<Instant>,
}

impl LogLimiter {
    /// A limiter with `limits`.
    pub fn new(limits: LogLimits) -> Self {
        Self {
            limits,
            buckets: Mutex::default(),
            dropped: Mutex::default(),
            summaries: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Its limits.
    pub fn limits(&self) -> LogLimits {
        self.limits
    }

    /// Log lines dropped by the rate limit, per plugin, since start.
    pub fn dropped_by_plugin(&self) -> Vec<(String, u64)> {
        let dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        dropped
            .iter()
            .map(|(plugin, n)| (plugin.to_string(), n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Log lines of `plugin` dropped by the rate limit since start.
    pub fn dropped(&self, plugin: &str) -> u64 {
        let dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        dropped.get(plugin).map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Buckets tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The bucket of (`plugin`, `tenant`), made if needed.
    pub(crate) fn bucket(&self, plugin: &Arc<str>, tenant: &str) -> Arc<LogBucket> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let key = (plugin.clone(), Box::<str>::from(tenant));
        if let Some(bucket) = buckets.get(&key) {
            return bucket.clone();
        }
        let key = if buckets.len() < self.limits.max_tracked {
            key
        } else {
            // Forget buckets nobody holds that have refilled: they are as good as new.
            buckets.retain(|_, b| Arc::strong_count(b) > 1 || !b.is_full(&self.limits, now));
            if buckets.len() < self.limits.max_tracked {
                key
            } else {
                (plugin.clone(), Box::from(OVERFLOW_TENANT))
            }
        };
        let plugin_dropped = self.plugin_counter(plugin);
        buckets
            .entry(key)
            .or_insert_with_key(|(plugin, tenant)| {
                Arc::new(LogBucket {
                    plugin: plugin.clone(),
                    tenant: tenant.clone(),
                    plugin_dropped,
                    state: Mutex::new(BucketState {
                        lines: f64::from(self.limits.burst_lines),
                        bytes: self.limits.burst_bytes as f64,
                        refilled: now,
                        unreported: 0,
                        last_summary: None,
                    }),
                })
            })
            .clone()
    }

    fn plugin_counter(&self, plugin: &Arc<str>) -> Arc<AtomicU64> {
        let mut dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        dropped.entry(plugin.clone()).or_default().clone()
    }

    /// Takes one line of `bytes` from `bucket`: whether it may be logged. A dropped line is
    /// counted; a summary line is written at most every second per bucket while dropping.
    pub(crate) fn admit(&self, bucket: &LogBucket, bytes: usize) -> bool {
        let now = Instant::now();
        let (admitted, summary) = {
            let mut state = bucket.state.lock().unwrap_or_else(|p| p.into_inner());
            state.refill(&self.limits, now);
            let bytes = bytes as f64;
            let admitted = state.lines >= 1.0 && state.bytes >= bytes;
            if admitted {
                state.lines -= 1.0;
                state.bytes -= bytes;
            } else {
                state.unreported += 1;
                bucket.plugin_dropped.fetch_add(1, Ordering::Relaxed);
            }
            let due = state
                .last_summary
                .is_some_and(|at| now.duration_since(at) >= SUMMARY_EVERY);
            (admitted, state.take_summary(due, now))
        };
        if let Some(n) = summary {
            self.summarize(bucket, n, now);
        }
        admitted
    }

    /// At the end of a request: reports the bucket's unreported drops, unless a summary of
    /// it was written less than a second ago (then a later one will).
    pub(crate) fn report(&self, bucket: &LogBucket) {
        let now = Instant::now();
        let summary = {
            let mut state = bucket.state.lock().unwrap_or_else(|p| p.into_inner());
            let due = state
                .last_summary
                .is_none_or(|at| now.duration_since(at) >= SUMMARY_EVERY);
            state.take_summary(due, now)
        };
        if let Some(n) = summary {
            self.summarize(bucket, n, now);
        }
    }

    fn summarize(&self, bucket: &LogBucket, dropped: u64, now: Instant) {
        {
            let mut window = self.summaries.lock().unwrap_or_else(|p| p.into_inner());
            if now.duration_since(window.0) >= Duration::from_secs(1) {
                *window = (now, 0);
            }
            if window.1 >= SUMMARIES_PER_SEC {
                // Too many summaries this second: give the count back for a later one.
                let mut state = bucket.state.lock().unwrap_or_else(|p| p.into_inner());
                state.unreported += dropped;
                state.last_summary = None;
                return;
            }
            window.1 += 1;
        }
        tracing::warn!(
            plugin = %bucket.plugin,
            tenant = %bucket.tenant,
            dropped,
            "plugin log rate limit: {dropped} lines dropped"
        );
    }
}

impl LogBucket {
    fn is_full(&self, limits: &LogLimits, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.refill(limits, now);
        state.unreported == 0
            && state.lines >= f64::from(limits.burst_lines)
            && state.bytes >= limits.burst_bytes as f64
    }
}

impl BucketState {
    fn refill(&mut self, limits: &LogLimits, now: Instant) {
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.lines = (self.lines + elapsed * f64::from(limits.lines_per_sec))
            .min(f64::from(limits.burst_lines));
        self.bytes =
            (self.bytes + elapsed * limits.bytes_per_sec as f64).min(limits.burst_bytes as f64);
    }

    fn take_summary(&mut self, due: bool, now: Instant) -> Option<u64> {
        if !due || self.unreported == 0 {
            return None;
        }
        self.last_summary = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_tracked: usize) -> LogLimits {
        LogLimits {
            // No refill: what the tests see does not depend on time.
            lines_per_sec: 0,
            bytes_per_sec: 0,
            burst_lines: 3,
            burst_bytes: 1000,
            max_tracked,
        }
    }

    #[test]
    fn each_plugin_and_tenant_has_its_own_budget_and_drops_are_counted() {
        let limiter = LogLimiter::new(limits(16));
        let plugin: Arc<str> = Arc::from("p");
        let a = limiter.bucket(&plugin, "a");
        let admitted = (0..10).filter(|_| limiter.admit(&a, 10)).count();
        assert_eq!(admitted, 3);
        assert_eq!(limiter.dropped("p"), 7);
        let b = limiter.bucket(&plugin, "b");
        assert!(limiter.admit(&b, 10), "tenant b is not limited by tenant a");
        assert!(!limiter.admit(&b, 991), "bytes are limited too");
        assert_eq!(limiter.dropped_by_plugin(), vec![("p".to_string(), 8)]);
    }

    #[test]
    fn the_map_of_buckets_stays_bounded() {
        let limiter = LogLimiter::new(limits(8));
        let plugin: Arc<str> = Arc::from("p");
        for i in 0..1000 {
            let bucket = limiter.bucket(&plugin, &format!("made-up-{i}"));
            // Each bucket is used up, so none may be forgotten.
            while limiter.admit(&bucket, 1) {}
        }
        assert!(limiter.tracked() <= 9, "tracked {}", limiter.tracked());
        // New tenants share the overflow bucket, which is used up too.
        let late = limiter.bucket(&plugin, "late");
        assert!(!limiter.admit(&late, 1));
    }
}
