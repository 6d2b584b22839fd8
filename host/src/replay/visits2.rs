//! The session-aware expert `visits2`, and with [`Config::as_visits`] its predecessor
//! `visits` (once a file of its own, `visits.rs`); `visits2` adds:
//!
//! - **continuation by position**: the chance that a visit goes on is learnt after its 1st,
//!   2nd and 3rd-or-later operation, `q(1)`, `q(2)`, `q(3+)`, with fast-decaying counts
//!   (a memory of about 1,000 requests), instead of one slow average; a key idle after its
//!   `n`-th operation is valued with `q(n)`;
//! - **one-off visits weighted**: a new visit counts in the popularity memory with weight
//!   `min(1, q(1)/q(2))`, the chance that it is a real session rather than a single
//!   operation, topped up to 1 when its second operation comes. In steady traffic the weight
//!   is about 1; while something touches many keys once each (a scan, a crawler) `q(1)`
//!   collapses, and so do both the weight of those visits and the protection of a key after
//!   its first operation: they go first and hardly disturb the popularity memory;
//! - **a shift detector with fewer false alarms**: a visit whose key was used within 4 visit
//!   spans gives no evidence (a session split in two by one long gap made the short memory
//!   "predict" its second half: each burst of cold tenants fired the detector), the short
//!   memory holds at least 300 visits (at small capacities its 3 × K requests held a few
//!   dozen, and chance repeats fired it), and, with these, the threshold is 12 nats instead
//!   of 30, so real shifts are caught sooner.
//!
//! Everything else is the model of `visits` (and of `scorer-adaptive` until 2026-12-07;
//! that scorer is now this policy alone): the visit span (8 × the median reuse gap),
//! the mean gap within a visit, the long popularity memory replaced by the short one when
//! the detector fires, the branch-and-bound victim search. [`Config`] holds the switches of
//! the variant and of the experiments tried with it (names `visits2:switch[=value]:…`).
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
/// Keys with a visit history, per unit of capacity.
const HISTORY_PER_SLOT: usize = 64;
/// Operation positions with a continuation chance of their own (the last one stands for
/// every later position).
const POSITIONS: usize = 3;

#[path = "visits2_config.rs"]
mod config;
pub use config::Config;

/// `value` decayed over `since` requests with half-life `half_life`.
fn decay(value: f64, since: u64, half_life: f64) -> f64 {
    value * (-(since as f64) / half_life).exp2()
}

#[path = "visits2_history.rs"]
mod history;
use history::{Counts, History};

#[path = "visits2_model.rs"]
mod model;
use model::Visits;

/// What the expert knows of a key.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    counts: Counts,
    last_use: u64,
    /// [`History::rank`] of `counts`, while cached.
    rank: f64,
    cached: bool,
    /// Operations in the key's current visit.
    ops: u32,
    /// Weight of the current visit not counted yet (added at its second operation).
    pending: f64,
    /// The key's finished first operations, and those its visit went on after (decayed by
    /// halving both).
    firsts: f32,
    seconds: f32,
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

/// The variant of the session-aware expert (see the module documentation); the victim
/// search is the branch and bound of `visits.rs`.
#[derive(Debug)]
pub struct Visits2Expert {
    config: Config,
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

impl Default for Visits2Expert {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

/// The expert named `name` when it is a `visits2[:…]` variant.
pub fn expert_variant(name: &str) -> Option<Box<dyn Expert + Send>> {
    Config::parse(name).map(|c| Box::new(Visits2Expert::new(c)) as Box<dyn Expert + Send>)
}

impl Visits2Expert {
    /// An empty cache (maximum 0 until [`Expert::resize`]).
    pub fn new(config: Config) -> Self {
        Self {
            config,
            visits: Visits {
                gap_rate: config.gap_rate,
                ..Visits::new()
            },
            history: History::new(&config),
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

    /// The chance that the visit of a key with `ops` operations so far goes on.
    fn going_on(&self, ops: u32) -> f64 {
        if self.config.by_position {
            self.visits.going_on(ops)
        } else {
            self.visits.continued
        }
    }

    /// The chance that the visit of `entry`, at its first operation, goes on: the key's own
    /// record shrunk towards `global`.
    fn own_going_on(&self, entry: &Entry, global: f64) -> f64 {
        let prior = self.config.per_key;
        ((f64::from(entry.seconds) + prior * global) / (f64::from(entry.firsts) + prior))
            .clamp(1e-3, 0.999)
    }

    /// The chance that a new visit of a key with long-memory count `long` is a real session
    /// (see [`Config::bayes`]), when the share of new visits that are is `w`.
    fn real_chance(&self, long: f64, total_long: f64, w: f64) -> f64 {
        let u = 1.0 / self.entries.len().max(1) as f64;
        let share = if total_long > 0.0 {
            (long / total_long).max(u)
        } else {
            u
        };
        if w >= 1.0 {
            return 1.0;
        }
        w * share / (w * share + (1.0 - w) * u)
    }

    /// New visits per request, as counted in the popularity memory.
    fn visits_per_request(&self) -> f64 {
        if self.config.weighted_visit_rate && self.visits.requests > 0.0 {
            self.visits.weighted / self.visits.requests
        } else {
            1.0 - self.visits.continued
        }
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
            self.visits_per_request() / total_long * total_long / (total_long + self.config.young)
        } else {
            0.0
        };
        let mut q = [0.0; POSITIONS + 1];
        for (ops, q) in q.iter_mut().enumerate() {
            *q = self.going_on(ops as u32);
        }
        // Every value is at least the key's popularity term, and the keys are visited by
        // increasing popularity: once that term alone reaches the best value, no key left
        // can beat it.
        let w = self.visits.weight();
        let mut best: Option<(f64, u32)> = None;
        for &(_, key) in &self.by_rank {
            let entry = &self.entries[key as usize];
            let long = self.history.long(entry.counts, now);
            let popularity = long * per_visit;
            if best.is_some_and(|(b, _)| popularity >= b) {
                break;
            }
            let going_on = if entry.ops <= 1 && self.config.bayes {
                q[1].max(self.real_chance(long, total_long, w) * q[2])
            } else if entry.ops <= 1 && self.config.per_key > 0.0 {
                self.own_going_on(entry, q[1])
            } else {
                q[(entry.ops as usize).min(POSITIONS)]
            };
            let value = self
                .visits
                .rate(now - entry.last_use, going_on, self.config.learnt_gaps)
                + popularity;
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

    /// Files `key` (cached from now on) with `counts` in the popularity index; after a
    /// popularity shift every cached key is re-filed.
    fn file(&mut self, key: u32, counts: Counts, reset_at: u64) {
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

impl Expert for Visits2Expert {
    fn name(&self) -> &'static str {
        if self.config == Config::as_visits() {
            "visits"
        } else {
            "visits2"
        }
    }

    fn request(&mut self, key: u32, _hash: i32) -> bool {
        if self.entries.len() <= key as usize {
            self.entries.resize(key as usize + 1, Entry::default());
        }
        let now = self.clock + 1;
        let entry = self.entries[key as usize];
        let hit = entry.cached;
        let gap = now - entry.last_use;
        if !hit && self.cached() >= self.maximum {
            // The victim as of the previous request (what a decision saw).
            if let Some(victim) = self.lowest() {
                self.evict(victim);
            }
        }
        self.clock = now;
        self.visits.tick(self.config.position_rate);
        if hit {
            self.visits.record_gap(gap);
        }
        let seen = entry.last_use > 0;
        let continued = seen && gap <= self.visits.span && (hit || self.config.reopen_continues);
        self.visits.operation(continued);
        let reset_at = self.history.reset_at;
        let ops = if continued { entry.ops + 1 } else { 1 };
        self.visits.position(ops);
        if self.config.per_key > 0.0 && (ops == 2 || (ops == 1 && entry.ops == 1)) {
            // The key's last first operation is settled: its visit went on, or it was alone.
            let e = &mut self.entries[key as usize];
            e.firsts += 1.0;
            if ops == 2 {
                e.seconds += 1.0;
            }
            if e.firsts >= 64.0 {
                e.firsts *= 0.5;
                e.seconds *= 0.5;
            }
        }
        let counts = if continued {
            self.visits.same_visit(gap);
            let pending = entry.pending;
            if ops == 2 && pending > 0.0 {
                self.entries[key as usize].pending = 0.0;
                self.visits.weighted += pending;
                Some(self.history.add(key, now, pending))
            } else {
                None
            }
        } else {
            let weight = if self.config.weigh_visits && self.config.bayes {
                let long = self.history.counts(key, now).long;
                let total = self.history.long(self.history.total, now);
                self.real_chance(long, total, self.visits.weight())
            } else if self.config.weigh_visits && self.config.per_key > 0.0 {
                let own = self.own_going_on(&self.entries[key as usize], self.visits.going_on(1));
                (own / self.visits.going_on(2)).min(1.0)
            } else if self.config.weigh_visits {
                self.visits.weight()
            } else {
                1.0
            };
            let evidence = if seen && (gap as f64) <= self.config.near * self.visits.span as f64 {
                0.0
            } else if self.config.weighted_detector {
                weight
            } else {
                1.0
            };
            if self.config.min_short_visits > 0.0 {
                let rate = (1.0 - self.visits.continued).max(1e-3);
                self.history
                    .set_short_floor(self.config.min_short_visits / rate, self.maximum as usize);
            }
            self.entries[key as usize].pending = 1.0 - weight;
            self.visits.weighted += weight;
            Some(self.history.visit(key, now, weight, evidence))
        };
        let entry = &mut self.entries[key as usize];
        entry.last_use = now;
        entry.ops = ops;
        if !hit {
            self.cached += 1;
        }
        match counts {
            Some(counts) => self.file(key, counts, reset_at),
            None if !hit => {
                let counts = self.history.counts(key, now);
                self.file(key, counts, reset_at);
            }
            None => {}
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

    fn knows(&self, key: u32) -> bool {
        let Some(entry) = self.entries.get(key as usize) else {
            return false;
        };
        if entry.cached || self.history.map.contains_key(&key) {
            return true;
        }
        if self.config.per_key > 0.0 && entry.firsts > 0.0 {
            return true;
        }
        // A visit that may still go on, or a use recent enough that the next one would count
        // differently (within `near` visit spans): kept, with a margin.
        let recent = 2.0 * self.config.near.max(1.0) * self.visits.span as f64;
        entry.last_use > 0 && (self.clock.saturating_sub(entry.last_use) as f64) <= recent
    }

    fn forget(&mut self, key: u32) {
        if let Some(entry) = self.entries.get_mut(key as usize) {
            *entry = Entry::default();
        }
    }
}

#[cfg(test)]
#[path = "visits2_tests.rs"]
mod tests;
