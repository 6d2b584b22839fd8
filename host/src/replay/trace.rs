//! Traces of tenant traffic: which database each request uses, in order.

use std::sync::Arc;

use super::rng::Rng;
use crate::pool::{DEFAULT_PRIORITY, PINNED_PRIORITY};

/// A sequence of requests, each naming one database (a key).
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Database name of each key.
    pub names: Vec<Arc<str>>,
    /// Priority of each key (`-1` pins it: never evicted).
    pub priorities: Vec<i32>,
    /// The requests: key indices into `names`.
    pub requests: Vec<u32>,
}

impl Trace {
    /// Number of distinct keys.
    pub fn keys(&self) -> usize {
        self.names.len()
    }

    /// Keys that are pinned (priority -1).
    pub fn pinned(&self) -> usize {
        self.priorities
            .iter()
            .filter(|&&p| p == PINNED_PRIORITY)
            .count()
    }

    /// Keys that appear in the requests.
    pub fn distinct_requested(&self) -> usize {
        let mut seen = vec![false; self.names.len()];
        self.requests.iter().for_each(|&k| seen[k as usize] = true);
        seen.iter().filter(|&&s| s).count()
    }

    /// Builds a trace from keys given as strings (interned in order of first appearance), all
    /// at the default priority.
    pub fn from_keys<S: AsRef<str>>(keys: impl IntoIterator<Item = S>) -> Self {
        let mut trace = Trace::default();
        let mut ids: std::collections::HashMap<Arc<str>, u32> = Default::default();
        for key in keys {
            let key = key.as_ref();
            let id = match ids.get(key) {
                Some(&id) => id,
                None => {
                    let name: Arc<str> = Arc::from(key);
                    let id = trace.names.len() as u32;
                    trace.names.push(name.clone());
                    trace.priorities.push(DEFAULT_PRIORITY);
                    ids.insert(name, id);
                    id
                }
            };
            trace.requests.push(id);
        }
        trace
    }
}

/// Parameters of a synthetic tenant-traffic trace ([`generate`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSpec {
    /// Tenants (databases), `tenant-00000` …
    pub tenants: usize,
    /// Requests (operations) in the trace.
    pub requests: usize,
    /// Seed: the trace depends on nothing else.
    pub seed: u64,
    /// Zipf exponent of tenant popularity (rank r is chosen with weight `1 / r^s`); ranks are
    /// assigned to tenants by a seeded shuffle.
    pub zipf_exponent: f64,
    /// Sessions running at once; each request continues one of them, picked at random.
    pub concurrent_sessions: usize,
    /// Mean operations per session (geometric, at least 1).
    pub mean_session_ops: f64,
    /// Where the full scan starts, as a fraction of the trace.
    pub scan_at: f64,
    /// Share of requests that belong to the scan while it runs (one operation per tenant,
    /// every tenant in turn); the rest is ordinary traffic.
    pub scan_share: f64,
    /// Where tenant popularity is reshuffled, as a fraction of the trace.
    pub shift_at: f64,
    /// Bursts of cold tenants, at seeded random points.
    pub bursts: usize,
    /// Sessions per burst that go to cold tenants (uniform over the less popular half).
    pub burst_sessions: usize,
    /// Tenants pinned (priority -1), picked at random: never evicted, they hold capacity.
    pub pinned: usize,
}

impl Default for TraceSpec {
    fn default() -> Self {
        Self {
            tenants: 10_000,
            requests: 1_000_000,
            seed: 1,
            zipf_exponent: 1.0,
            concurrent_sessions: 32,
            mean_session_ops: 6.0,
            scan_at: 0.25,
            scan_share: 0.5,
            shift_at: 0.5,
            bursts: 10,
            burst_sessions: 200,
            pinned: 10,
        }
    }
}

impl TraceSpec {
    /// A one-paragraph description, for reports.
    pub fn describe(&self) -> String {
        let scan = if self.scan_at < 1.0 {
            format!(
                "a full scan of every tenant (one operation each) from {:.0}% of the trace, taking \
                 {:.0}% of the requests while it runs",
                self.scan_at * 100.0,
                self.scan_share * 100.0
            )
        } else {
            "no scan".into()
        };
        let shift = if self.shift_at < 1.0 {
            format!("popularity reshuffled at {:.0}%", self.shift_at * 100.0)
        } else {
            "no popularity shift".into()
        };
        format!(
            "{} requests over {} tenants (seed {}): Zipf popularity (s = {}) over ranks shuffled by \
             the seed; {} concurrent sessions of {} operations on average (geometric), each \
             request continuing a random one; {scan}; {shift}; {} bursts in which the next {} \
             sessions go to cold tenants (uniform over the less popular half); {} tenants pinned \
             (priority -1), the others at priority {}.",
            self.requests,
            self.tenants,
            self.seed,
            self.zipf_exponent,
            self.concurrent_sessions,
            self.mean_session_ops,
            self.bursts,
            self.burst_sessions,
            self.pinned,
            DEFAULT_PRIORITY,
        )
    }
}

/// Tenant popularity: a Zipf law over ranks, ranks mapped to tenants by a permutation.
struct Popularity {
    cdf: Vec<f64>,
    tenant_of_rank: Vec<u32>,
}

impl Popularity {
    fn new(tenants: usize, exponent: f64, rng: &mut Rng) -> Self {
        let mut cdf = Vec::with_capacity(tenants);
        let mut total = 0.0;
        for rank in 1..=tenants {
            total += 1.0 / (rank as f64).powf(exponent);
            cdf.push(total);
        }
        cdf.iter_mut().for_each(|c| *c /= total);
        let mut tenant_of_rank: Vec<u32> = (0..tenants as u32).collect();
        rng.shuffle(&mut tenant_of_rank);
        Self {
            cdf,
            tenant_of_rank,
        }
    }

    fn reshuffle(&mut self, rng: &mut Rng) {
        rng.shuffle(&mut self.tenant_of_rank);
    }

    fn sample(&self, rng: &mut Rng) -> u32 {
        let u = rng.next_f64();
        let rank = self
            .cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1);
        self.tenant_of_rank[rank]
    }

    /// A tenant from the less popular half, uniformly.
    fn cold(&self, rng: &mut Rng) -> u32 {
        let half = self.cdf.len() / 2;
        self.tenant_of_rank[half + rng.below(self.cdf.len() - half)]
    }
}

/// Generates the trace described by `spec`.
///
/// # Panics
/// If `spec.tenants` is 0 or exceeds `u32::MAX`, or `spec.pinned > spec.tenants`.
pub fn generate(spec: &TraceSpec) -> Trace {
    assert!(spec.tenants > 0 && spec.tenants <= u32::MAX as usize);
    assert!(spec.pinned <= spec.tenants);
    let mut rng = Rng::new(spec.seed);
    let n = spec.tenants;
    let width = (n - 1).to_string().len().max(5);
    let names: Vec<Arc<str>> = (0..n)
        .map(|i| Arc::from(format!("tenant-{i:0width$}")))
        .collect();
    let mut priorities = vec![DEFAULT_PRIORITY; n];
    let mut ids: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut ids);
    for &i in ids.iter().take(spec.pinned) {
        priorities[i] = PINNED_PRIORITY;
    }

    let mut popularity = Popularity::new(n, spec.zipf_exponent, &mut rng);
    let p_end = 1.0 / spec.mean_session_ops.max(1.0);
    let session_ops = |rng: &mut Rng| -> u32 {
        if p_end >= 1.0 {
            return 1;
        }
        let u = 1.0 - rng.next_f64(); // (0, 1]
        1 + (u.ln() / (1.0 - p_end).ln()).floor().min(1e6) as u32
    };
    let mut cold_sessions = 0usize;
    let new_session = |rng: &mut Rng, popularity: &Popularity, cold: &mut usize| {
        let tenant = if *cold > 0 {
            *cold -= 1;
            popularity.cold(rng)
        } else {
            popularity.sample(rng)
        };
        (tenant, session_ops(rng))
    };

    let total = spec.requests;
    let scan_start = (spec.scan_at * total as f64) as usize;
    let shift = (spec.shift_at * total as f64) as usize;
    let mut burst_starts: Vec<usize> = (0..spec.bursts).map(|_| rng.below(total.max(1))).collect();
    burst_starts.sort_unstable();
    let mut next_burst = 0;

    let mut sessions: Vec<(u32, u32)> = (0..spec.concurrent_sessions.max(1))
        .map(|_| new_session(&mut rng, &popularity, &mut cold_sessions))
        .collect();
    let mut scanned = 0usize;
    let mut requests = Vec::with_capacity(total);
    for i in 0..total {
        if i == shift && i > 0 {
            popularity.reshuffle(&mut rng);
        }
        while next_burst < burst_starts.len() && burst_starts[next_burst] <= i {
            cold_sessions += spec.burst_sessions;
            next_burst += 1;
        }
        if i >= scan_start && scanned < n && rng.next_f64() < spec.scan_share {
            requests.push(scanned as u32);
            scanned += 1;
            continue;
        }
        let j = rng.below(sessions.len());
        let (tenant, left) = sessions[j];
        requests.push(tenant);
        sessions[j] = if left > 1 {
            (tenant, left - 1)
        } else {
            new_session(&mut rng, &popularity, &mut cold_sessions)
        };
    }
    Trace {
        names,
        priorities,
        requests,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_trace() {
        let spec = TraceSpec {
            tenants: 500,
            requests: 20_000,
            ..TraceSpec::default()
        };
        let a = generate(&spec);
        let b = generate(&spec);
        assert_eq!(a.requests, b.requests);
        assert_eq!(a.pinned(), spec.pinned);
        let c = generate(&TraceSpec { seed: 2, ..spec });
        assert_ne!(a.requests, c.requests);
        // The scan touches every tenant.
        assert_eq!(a.distinct_requested(), 500);
    }
}
