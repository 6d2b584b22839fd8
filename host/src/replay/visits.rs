//! A session-aware expert ([`VisitsExpert`]): the model of `scorer-adaptive` as a virtual
//! cache, so that a [`Follower`](super::follow::Follower) can follow it where sessions
//! matter (the synthetic traces) and leave it where they do not.
//!
//! Every cached key is valued by the rate at which it is expected to be used again (uses per
//! request), and the lowest goes. The rate is the sum of two terms learnt from the requests:
//!
//! - **the visit in progress** ([`Visits`]): requests to a key come in *visits* (a session's
//!   operations); a reuse within the *visit span* (8 × the median reuse gap) continues the
//!   visit. The share `q` of requests followed by another of the same visit and their mean
//!   gap `g` are learnt; a key idle for `t` requests is still in its visit with probability
//!   `q·e^(−t/g) / (q·e^(−t/g) + 1 − q)`, and is then used again at a rate of about `1/g`;
//! - **the key's popularity** ([`History`]): its share of the visits in a long exponential
//!   memory (half-life 1000 × capacity requests), replaced by a short one (3 × capacity)
//!   when a CUSUM test on the log-likelihood ratio of their predictions says popularity
//!   shifted.
//!
//! No dependency beyond std, so that a scorer component can include this file.

use std::collections::BTreeSet;

use super::experts::Expert;
use super::follow::FastMap;

/// Reuses closer than this many times the median reuse gap continue a visit.
const SPAN_FACTOR: f64 = 8.0;
/// Visit span until enough reuse gaps were seen.
const INITIAL_SPAN: u64 = 200;
/// Idle time, in mean gaps within a visit, after which a visit is over for sure.
const FORGOTTEN_VISIT_GAPS: f64 = 50.0;
/// Weight of one observation in the running estimates of the visit model.
const VISIT_MODEL_RATE: f64 = 1e-4;
/// Half-life of the long memory of visit counts, in requests per unit of capacity.
const LONG_HALF_LIFE_PER_SLOT: f64 = 1000.0;
/// Half-life of the short memory of visit counts, in requests per unit of capacity.
const SHORT_HALF_LIFE_PER_SLOT: f64 = 3.0;
/// Evidence (nats) that the short memory predicts visits better, deemed a popularity shift.
const SHIFT_EVIDENCE: f64 = 30.0;
/// Keys with a visit history, per unit of capacity.
const HISTORY_PER_SLOT: usize = 64;

/// `value` decayed over `since` requests with half-life `half_life`.
fn decay(value: f64, since: u64, half_life: f64) -> f64 {
    value * (-(since as f64) / half_life).exp2()
}

/// A key's visit counts in both memories, as of request `at`.
#[derive(Clone, Copy, Default, Debug)]
struct Counts {
    long: f64,
    short: f64,
    at: u64,
}

/// Per-key visit counts with a long and a short memory, and the shift detector.
#[derive(Debug)]
struct History {
    map: FastMap<u32, Counts>,
    total: Counts,
    long_half_life: f64,
    short_half_life: f64,
    evidence: f64,
    reset_at: u64,
    limit: usize,
}

impl History {
    fn new() -> Self {
        let mut history = Self {
            map: FastMap::default(),
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

    fn short(&self, counts: Counts, now: u64) -> f64 {
        decay(counts.short, now - counts.at, self.short_half_life)
    }

    /// The long-memory count (the short one at the last reset if the long one is stale).
    fn long(&self, counts: Counts, now: u64) -> f64 {
        if counts.at < self.reset_at {
            let at_reset = self.short(counts, self.reset_at);
            decay(at_reset, now - self.reset_at, self.long_half_life)
        } else {
            decay(counts.long, now - counts.at, self.long_half_life)
        }
    }

    /// A number that orders keys as their long-memory counts do at any one time, and does
    /// not change as time passes: `log2` of the count, plus the time in half-lives.
    fn rank(&self, counts: Counts) -> f64 {
        if counts.at < self.reset_at {
            self.short(counts, self.reset_at).log2() + self.reset_at as f64 / self.long_half_life
        } else {
            counts.long.log2() + counts.at as f64 / self.long_half_life
        }
    }

    fn at(&self, counts: Counts, now: u64) -> Counts {
        Counts {
            long: self.long(counts, now),
            short: self.short(counts, now),
            at: now,
        }
    }

    fn counts(&self, key: u32, now: u64) -> Counts {
        self.map.get(&key).map_or(
            Counts {
                at: now,
                ..Counts::default()
            },
            |&c| self.at(c, now),
        )
    }

    /// Counts one visit of `key` at request `now`; returns its new counts.
    fn visit(&mut self, key: u32, now: u64) -> Counts {
        self.detect(self.counts(key, now), self.at(self.total, now), now);
        let plus_one = |c: Counts| Counts {
            long: c.long + 1.0,
            short: c.short + 1.0,
            at: now,
        };
        let counts = plus_one(self.counts(key, now));
        self.map.insert(key, counts);
        self.total = plus_one(self.at(self.total, now));
        if self.map.len() > self.limit {
            self.forget(now);
        }
        counts
    }

    /// CUSUM of the log-likelihood ratio of the short memory's prediction of the visited key
    /// to the long one's; past [`SHIFT_EVIDENCE`] the long memory is replaced (lazily).
    fn detect(&mut self, counts: Counts, total: Counts, now: u64) {
        if total.short <= 0.0 {
            return;
        }
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

    /// Forgets the half of the keys with the smallest long-memory counts.
    fn forget(&mut self, now: u64) {
        let mut entries: Vec<(u32, Counts)> = self
            .map
            .iter()
            .map(|(&key, &counts)| (key, self.at(counts, now)))
            .collect();
        let keep = entries.len() / 2;
        entries.select_nth_unstable_by(keep, |a, b| b.1.long.total_cmp(&a.1.long));
        entries.truncate(keep);
        self.map = entries.into_iter().collect();
    }
}

/// The visit model: span, share of requests continuing a visit, mean gap within a visit.
#[derive(Debug)]
struct Visits {
    buckets: [f64; 64],
    samples: u64,
    span: u64,
    continued: f64,
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

    /// A key was used again `gap` requests after its previous use; returns whether this use
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

    /// Expected uses per request of a key idle for `idle` requests, from its visit.
    fn rate(&self, idle: u64) -> f64 {
        let gap = self.gap.max(1.0);
        if idle as f64 > FORGOTTEN_VISIT_GAPS * gap {
            return 0.0;
        }
        let going_on = self.continued * (-(idle as f64) / gap).exp();
        going_on / (going_on + 1.0 - self.continued) / gap
    }
}

/// What the expert knows of a key.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    counts: Counts,
    last_use: u64,
    /// [`History::rank`] of `counts`, while cached.
    rank: f64,
    cached: bool,
}

/// An `f64` ordered by `total_cmp`, for the popularity index.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rank(f64);

impl Eq for Rank {}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Rank {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The session-aware expert (see the module documentation).
///
/// Finding the lowest value does not scan the cache: the cached keys are ordered by
/// popularity in a `BTreeSet` (by [`History::rank`], which does not change as time passes),
/// and a key's value is at least its popularity term, so the search walks up from the least
/// popular key and stops when that term alone reaches the best value found; a key idle for
/// long (no visit term) ends it at once. It visits the unpopular keys still in a visit.
#[derive(Debug)]
pub struct VisitsExpert {
    visits: Visits,
    history: History,
    entries: Vec<Entry>,
    cached: u64,
    /// Cached keys by popularity rank.
    by_rank: BTreeSet<(Rank, u32)>,
    maximum: u64,
    clock: u64,
    /// The victim computed at `clock` (a decision and the miss after it share one search).
    memo: Option<(u64, u32)>,
}

impl Default for VisitsExpert {
    fn default() -> Self {
        Self::new()
    }
}

impl VisitsExpert {
    /// An empty cache (maximum 0 until [`Expert::resize`]).
    pub fn new() -> Self {
        Self {
            visits: Visits::new(),
            history: History::new(),
            entries: Vec::new(),
            cached: 0,
            by_rank: BTreeSet::new(),
            maximum: 0,
            clock: 0,
            memo: None,
        }
    }

    fn cached(&self) -> u64 {
        self.cached
    }

    /// The lowest-valued cached key.
    fn lowest(&mut self) -> Option<u32> {
        if let Some((clock, key)) = self.memo {
            if clock == self.clock && self.contains(key) {
                return Some(key);
            }
        }
        let now = self.clock;
        let total_long = self.history.long(self.history.total, now);
        let per_visit = if total_long > 0.0 {
            (1.0 - self.visits.continued) / total_long
        } else {
            0.0
        };
        // Every value is at least the key's popularity term, and the keys are visited by
        // increasing popularity: once that term alone reaches the best value, no key left
        // can beat it (an idle key, with no visit term, ends the search at once).
        let mut best: Option<(f64, u32)> = None;
        for &(_, key) in &self.by_rank {
            let entry = &self.entries[key as usize];
            let popularity = self.history.long(entry.counts, now) * per_visit;
            if best.is_some_and(|(b, _)| popularity >= b) {
                break;
            }
            let value = self.visits.rate(now - entry.last_use) + popularity;
            if best.is_none_or(|(b, _)| value < b) {
                best = Some((value, key));
            }
        }
        let key = best.map(|(_, k)| k)?;
        self.memo = Some((now, key));
        Some(key)
    }

    fn evict(&mut self, key: u32) {
        let Some(entry) = self.entries.get_mut(key as usize) else {
            return;
        };
        if entry.cached {
            entry.cached = false;
            self.by_rank.remove(&(Rank(entry.rank), key));
            self.cached -= 1;
        }
    }

    /// Counts a visit of `key` (cached) and re-files it by popularity; after a popularity
    /// shift every cached key is re-filed.
    fn visit(&mut self, key: u32, now: u64) {
        let reset_at = self.history.reset_at;
        let counts = self.history.visit(key, now);
        let entry = &mut self.entries[key as usize];
        if entry.cached {
            self.by_rank.remove(&(Rank(entry.rank), key));
        }
        entry.counts = counts;
        entry.cached = true;
        entry.rank = self.history.rank(counts);
        self.by_rank.insert((Rank(entry.rank), key));
        if self.history.reset_at != reset_at {
            self.rerank();
        }
    }

    /// Recomputes every cached key's rank (after the half-life or the reset point changed).
    fn rerank(&mut self) {
        self.by_rank.clear();
        for (key, entry) in self.entries.iter_mut().enumerate() {
            if entry.cached {
                entry.rank = self.history.rank(entry.counts);
                self.by_rank.insert((Rank(entry.rank), key as u32));
            }
        }
    }
}

impl Expert for VisitsExpert {
    fn name(&self) -> &'static str {
        "visits"
    }

    fn request(&mut self, key: u32, _hash: i32) -> bool {
        if self.entries.len() <= key as usize {
            self.entries.resize(key as usize + 1, Entry::default());
        }
        let now = self.clock + 1;
        let hit = self.entries[key as usize].cached;
        if hit {
            let gap = now - self.entries[key as usize].last_use;
            self.clock = now;
            self.entries[key as usize].last_use = now;
            if self.visits.reused(gap) {
                self.visit(key, now);
            }
        } else {
            if self.cached() >= self.maximum {
                // The victim as of the previous request (what a decision saw).
                if let Some(victim) = self.lowest() {
                    self.evict(victim);
                }
            }
            self.clock = now;
            self.visits.operation(false);
            self.entries[key as usize].last_use = now;
            self.cached += 1;
            self.visit(key, now);
        }
        hit
    }

    fn contains(&self, key: u32) -> bool {
        self.entries.get(key as usize).is_some_and(|e| e.cached)
    }

    fn next_victim(&mut self) -> Option<u32> {
        self.lowest()
    }

    fn remove(&mut self, key: u32) {
        self.evict(key);
    }

    fn resize(&mut self, maximum: u64) {
        self.memo = None;
        self.maximum = maximum;
        self.history.set_capacity(maximum as usize);
        self.rerank();
        while self.cached() > maximum {
            match self.lowest() {
                Some(victim) => self.evict(victim),
                None => break,
            }
            self.memo = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*).
    fn next(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn sessions_on_skewed_keys_beat_lru() {
        // 8 sessions at once, each a few operations on one key, keys drawn with a skew
        // (key = 2000^u, roughly Zipf); the session model keeps the popular keys and the
        // sessions in progress, LRU mixes them up.
        let (mut visits, mut lru) = (VisitsExpert::new(), super::super::experts::Lru::new());
        visits.resize(50);
        lru.resize(50);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut uniform = move || (next(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
        let mut sessions = [(0u32, 0u32); 8];
        let (mut visit_hits, mut lru_hits) = (0u32, 0u32);
        for _ in 0..100_000 {
            let s = (uniform() * 8.0) as usize;
            if sessions[s].1 == 0 {
                sessions[s] = (2000f64.powf(uniform()) as u32, 1 + (uniform() * 8.0) as u32);
            }
            sessions[s].1 -= 1;
            let key = sessions[s].0;
            visit_hits += u32::from(visits.request(key, 0));
            lru_hits += u32::from(lru.request(key, 0));
        }
        assert!(
            visit_hits > lru_hits + 1000,
            "visits {visit_hits} hits, lru {lru_hits}"
        );
        assert!(visits.cached() <= 50);
    }
}
