//! `scorer-adaptive`: a frequency-aware eviction scorer aiming at the best pool hit ratio.
//!
//! It scores every offered pool by the rate at which its database is expected to be used
//! again, and the host closes the lowest. The rate is the sum of two estimates, both learnt
//! from the host's pool events:
//!
//! - **the visit in progress** ([`Visits`]): operations come in *visits* (a session's
//!   operations, close together); a use within the *visit span* of the previous one (8 times
//!   the median reuse gap) belongs to the same visit. From the events the scorer learns the
//!   share of operations followed by another one in the same visit (`q`) and the mean gap
//!   between them (`g`); a pool idle for `t` requests is then still in its visit with
//!   probability `q·e^(−t/g) / (q·e^(−t/g) + 1 − q)`, and while it is, its next use comes
//!   within about `g` requests. A pool in the middle of a visit is worth much more than its
//!   popularity, and the protection fades continuously (a pool of a popular database is kept
//!   anyway; an unpopular one is let go as soon as its visit is probably over).
//! - **the popularity of the database** ([`History`]): its share of recent visits, from
//!   per-database visit counts with exponential decay, kept for closed databases too (keyed
//!   by name, so a reopened database keeps its history; bounded in number). A long memory
//!   (half-life `1000 × capacity` requests) is needed to tell apart the databases near the
//!   capacity boundary, which come back only a few times in that span — but a long memory
//!   is slow to forget yesterday's favourites when popularity shifts. So a short memory
//!   (half-life `3 × capacity`) is kept beside it, and each new visit scores both as
//!   predictions (the log-likelihood of the visited database under each); a CUSUM test on
//!   the log-likelihood ratio detects when the short memory has become the better predictor
//!   (popularity shifted), and the long memory is then replaced by the short one (lazily,
//!   per database). Decisions use the long memory.
//!
//! The capacity is learnt as the largest number of pools seen open at once. Pools the scorer
//! has not heard of (it was restarted, or events were dropped) have no history and go first,
//! least recently used first. The answer is 0 for the chosen pool and 1 for every other.
//! Cost per decision is one hash-map lookup and two exponentials per offered pool; per
//! event, O(1) amortized.

wit_bindgen::generate!({ world: "scorer", path: "../../../wit" });

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use exports::polymongo::plugin::scoring::{Event, EventKind, Guest, PoolStats};

/// Uses of a pool closer than this many times the median reuse gap to its previous use belong
/// to the same visit (a session's operations) and are not counted as a new visit (LRU-K's
/// "correlated reference period").
const SPAN_FACTOR: f64 = 8.0;
/// Visit span used until enough reuse gaps were seen.
const INITIAL_SPAN: u64 = 200;
/// Idle time, in mean gaps within a visit, after which a visit is over for sure (its
/// probability, below `e^-50`, is not worth an exponential per pool and decision).
const FORGOTTEN_VISIT_GAPS: f64 = 50.0;
/// Weight of one observation in the running estimates of the visit model.
const VISIT_MODEL_RATE: f64 = 1e-4;

/// Half-life of the long memory of visit counts, in requests per unit of capacity.
const LONG_HALF_LIFE_PER_SLOT: f64 = 1000.0;
/// Half-life of the short memory of visit counts, in requests per unit of capacity.
const SHORT_HALF_LIFE_PER_SLOT: f64 = 3.0;
/// Evidence (in nats: accumulated log-likelihood ratio) that the short memory predicts visits
/// better than the long one, above which popularity is deemed to have shifted.
const SHIFT_EVIDENCE: f64 = 30.0;
/// Databases with a visit history, per unit of capacity.
const HISTORY_PER_SLOT: usize = 64;

/// A fast multiplicative hasher for `u64` keys (pool ids, name hashes).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// 64-bit FNV-1a, then a finaliser.
fn hash_name(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `value` decayed over `since` requests with half-life `half_life`.
fn decay(value: f64, since: u64, half_life: f64) -> f64 {
    value * (-(since as f64) / half_life).exp2()
}

/// A database's visit counts in both memories, as of request `at`.
#[derive(Clone, Copy, Default)]
struct Counts {
    long: f64,
    short: f64,
    at: u64,
}

/// Per-database visit counts with a long and a short exponential memory, and the detector
/// that replaces the long memory by the short one when popularity shifts.
struct History {
    map: IdMap<Counts>,
    /// Sum of all counts (including forgotten databases).
    total: Counts,
    /// Half-lives in requests (set from the capacity).
    long_half_life: f64,
    short_half_life: f64,
    /// CUSUM of the log-likelihood ratio of the short memory's predictions of the visited
    /// databases to the long one's: evidence that popularity shifted.
    evidence: f64,
    /// Counts last updated before this request hold a stale long memory: it is replaced by
    /// the short one when read.
    reset_at: u64,
    /// Most databases remembered.
    limit: usize,
}

impl History {
    fn new() -> Self {
        let mut history = Self {
            map: IdMap::default(),
            total: Counts::default(),
            long_half_life: 0.0,
            short_half_life: 0.0,
            evidence: 0.0,
            reset_at: 0,
            limit: 0,
        };
        history.set_capacity(16);
        history
    }

    fn set_capacity(&mut self, capacity: usize) {
        let slots = capacity.max(16);
        self.long_half_life = LONG_HALF_LIFE_PER_SLOT * slots as f64;
        self.short_half_life = SHORT_HALF_LIFE_PER_SLOT * slots as f64;
        self.limit = HISTORY_PER_SLOT * slots;
    }

    /// The short-memory count of `counts` at request `now`.
    fn short(&self, counts: Counts, now: u64) -> f64 {
        decay(counts.short, now - counts.at, self.short_half_life)
    }

    /// The long-memory count of `counts` at request `now` (the short memory's count at the
    /// last reset, decayed since, if the long memory is stale).
    fn long(&self, counts: Counts, now: u64) -> f64 {
        if counts.at < self.reset_at {
            let at_reset = self.short(counts, self.reset_at);
            decay(at_reset, now - self.reset_at, self.long_half_life)
        } else {
            decay(counts.long, now - counts.at, self.long_half_life)
        }
    }

    /// `counts` as of request `now`.
    fn at(&self, counts: Counts, now: u64) -> Counts {
        Counts {
            long: self.long(counts, now),
            short: self.short(counts, now),
            at: now,
        }
    }

    /// The counts of `hash` as of request `now` (zero if never seen).
    fn counts(&self, hash: u64, now: u64) -> Counts {
        self.map.get(&hash).map_or(
            Counts {
                at: now,
                ..Counts::default()
            },
            |&c| self.at(c, now),
        )
    }

    /// The long memory's total count at request `now`.
    fn total_long(&self, now: u64) -> f64 {
        self.long(self.total, now)
    }

    /// The share of the visits in the long memory of a database with `counts`, when the
    /// total count is `total_long` ([`History::total_long`]).
    fn share(&self, counts: Counts, now: u64, total_long: f64) -> f64 {
        if total_long > 0.0 {
            self.long(counts, now) / total_long
        } else {
            0.0
        }
    }

    /// Counts one visit of `hash` at request `now`; returns its new counts.
    fn visit(&mut self, hash: u64, now: u64) -> Counts {
        self.detect(self.counts(hash, now), self.at(self.total, now), now);
        let plus_one = |c: Counts| Counts {
            long: c.long + 1.0,
            short: c.short + 1.0,
            at: now,
        };
        let counts = plus_one(self.counts(hash, now));
        self.map.insert(hash, counts);
        self.total = plus_one(self.at(self.total, now));
        if self.map.len() > self.limit {
            self.forget(now);
        }
        counts
    }

    /// Scores both memories' predictions of a visit of a database with `counts` (of
    /// `total`), and replaces the long memory by the short one when the evidence that the
    /// short one predicts better reaches [`SHIFT_EVIDENCE`] (a CUSUM test).
    fn detect(&mut self, counts: Counts, total: Counts, now: u64) {
        if total.short <= 0.0 {
            return;
        }
        // Every remembered database keeps a little probability.
        let floor = 1.0 / self.limit as f64;
        let long = (counts.long / total.long + floor).ln();
        let short = (counts.short / total.short + floor).ln();
        self.evidence = (self.evidence + short - long).max(0.0);
        if self.evidence > SHIFT_EVIDENCE {
            self.evidence = 0.0;
            self.reset_at = now;
            self.total.long = total.short;
            self.total.short = total.short;
            self.total.at = now;
        }
    }

    /// Forgets the half of the databases with the smallest long-memory counts.
    fn forget(&mut self, now: u64) {
        let mut entries: Vec<(u64, Counts)> = self
            .map
            .iter()
            .map(|(&hash, &counts)| (hash, self.at(counts, now)))
            .collect();
        let keep = entries.len() / 2;
        entries.select_nth_unstable_by(keep, |a, b| b.1.long.total_cmp(&a.1.long));
        entries.truncate(keep);
        self.map = entries.into_iter().collect();
    }
}

/// What the events teach about visits: the visit span, the share of operations followed by
/// another in the same visit, and the mean gap between them.
struct Visits {
    /// Decaying histogram of reuse gaps (requests between two uses of a pool), by power of
    /// two.
    buckets: [f64; 64],
    samples: u64,
    /// Uses closer than this (in requests) to the previous one are the same visit.
    span: u64,
    /// Share of operations followed by another one in the same visit.
    continued: f64,
    /// Mean gap between operations of a visit, in requests.
    gap: f64,
}

impl Visits {
    fn new() -> Self {
        Self {
            buckets: [0.0; 64],
            samples: 0,
            span: INITIAL_SPAN,
            continued: 0.5,
            gap: INITIAL_SPAN as f64 / SPAN_FACTOR,
        }
    }

    /// A pool was used again `gap` requests after its previous use; returns whether this use
    /// starts a new visit.
    fn reused(&mut self, gap: u64) -> bool {
        self.record_gap(gap);
        let same_visit = gap <= self.span;
        self.operation(same_visit);
        if same_visit {
            self.gap += (gap as f64 - self.gap) * VISIT_MODEL_RATE;
        }
        !same_visit
    }

    /// An operation ended the previous one's visit (`false`), or continued it.
    fn operation(&mut self, continued: bool) {
        let value = if continued { 1.0 } else { 0.0 };
        self.continued += (value - self.continued) * VISIT_MODEL_RATE;
    }

    fn record_gap(&mut self, gap: u64) {
        self.buckets[63 - gap.max(1).leading_zeros() as usize] += 1.0;
        self.samples += 1;
        if self.samples.is_multiple_of(1024) {
            let total: f64 = self.buckets.iter().sum();
            let mut seen = 0.0;
            for (b, &count) in self.buckets.iter().enumerate() {
                seen += count;
                if seen * 2.0 >= total {
                    let median = (b as f64 + 0.5).exp2();
                    self.span = (median * SPAN_FACTOR).round().max(2.0) as u64;
                    break;
                }
            }
            if self.samples.is_multiple_of(16_384) {
                self.buckets.iter_mut().for_each(|c| *c *= 0.5);
            }
        }
    }

    /// Expected uses per request of a pool idle for `idle` requests, from its visit in
    /// progress (if it still is; after [`FORGOTTEN_VISIT_GAPS`] mean gaps it is not).
    fn rate(&self, idle: u64) -> f64 {
        let gap = self.gap.max(1.0);
        if idle as f64 > FORGOTTEN_VISIT_GAPS * gap {
            return 0.0;
        }
        let going_on = self.continued * (-(idle as f64) / gap).exp();
        going_on / (going_on + 1.0 - self.continued) / gap
    }
}

/// An open pool.
struct Node {
    /// Hash of its database name.
    hash: u64,
    /// Its database's visit counts (as in [`History`], kept here for fast decisions).
    counts: Counts,
    /// Request count at its last use.
    last_use: u64,
}

struct Policy {
    visits: Visits,
    history: History,
    open: IdMap<Node>,
    /// Largest number of pools seen open at once: the capacity.
    capacity: usize,
    /// Requests seen (opened + accessed events).
    requests: u64,
}

impl Policy {
    fn new() -> Self {
        Self {
            visits: Visits::new(),
            history: History::new(),
            open: IdMap::default(),
            capacity: 0,
            requests: 0,
        }
    }

    fn event(&mut self, event: &Event) {
        match &event.kind {
            EventKind::Opened(db) => self.opened(event.pool_id, db),
            EventKind::Accessed => self.accessed(event.pool_id),
            EventKind::Closed => {
                self.open.remove(&event.pool_id);
            }
        }
    }

    fn opened(&mut self, pool_id: u64, db: &str) {
        self.requests += 1;
        let hash = hash_name(db);
        self.visits.operation(false);
        let counts = self.history.visit(hash, self.requests);
        self.open.insert(
            pool_id,
            Node {
                hash,
                counts,
                last_use: self.requests,
            },
        );
        if self.open.len() > self.capacity {
            self.capacity = self.open.len();
            self.history.set_capacity(self.capacity);
        }
    }

    fn accessed(&mut self, pool_id: u64) {
        self.requests += 1;
        let Some(node) = self.open.get_mut(&pool_id) else {
            return;
        };
        let gap = self.requests - node.last_use;
        node.last_use = self.requests;
        if self.visits.reused(gap) {
            node.counts = self.history.visit(node.hash, self.requests);
        }
    }

    /// Expected uses per request of an open pool: its visit in progress plus new visits
    /// (`total_long` is [`History::total_long`] now).
    fn value(&self, node: &Node, total_long: f64) -> f64 {
        let visits_per_request = 1.0 - self.visits.continued;
        let share = self.history.share(node.counts, self.requests, total_long);
        self.visits.rate(self.requests - node.last_use) + share * visits_per_request
    }

    /// Chooses the pool to close among `pools` (not empty); returns its index. Pools not
    /// heard of go first, least recently used first; then the lowest value.
    fn decide(&self, pools: &[PoolStats]) -> usize {
        let total_long = self.history.total_long(self.requests);
        let key = |pool: &PoolStats| match self.open.get(&pool.pool_id) {
            Some(node) => (self.value(node, total_long), 0),
            None => (f64::NEG_INFINITY, u64::MAX - pool.idle_ms),
        };
        let mut best = 0;
        let mut best_key = key(&pools[0]);
        for (i, pool) in pools.iter().enumerate().skip(1) {
            let k = key(pool);
            if k < best_key {
                best = i;
                best_key = k;
            }
        }
        best
    }
}

thread_local! {
    static POLICY: RefCell<Policy> = RefCell::new(Policy::new());
}

struct Adaptive;

impl Guest for Adaptive {
    fn score_all(
        events: Vec<Event>,
        _dropped: u64,
        pools: Vec<PoolStats>,
        _now_ms: u64,
    ) -> Vec<f64> {
        POLICY.with(|policy| {
            let mut policy = policy.borrow_mut();
            for event in &events {
                policy.event(event);
            }
            let mut scores = vec![1.0; pools.len()];
            if !pools.is_empty() {
                let victim = policy.decide(&pools);
                scores[victim] = 0.0;
            }
            scores
        })
    }
}

export!(Adaptive);
