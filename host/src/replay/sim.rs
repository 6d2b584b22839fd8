//! The replayer: drives an [`EvictionPolicy`] over a trace with capacity K, deciding as the
//! connection manager does (the `polymongo-pool` crate, whose [`Ranked`] it uses):
//!
//! - a request for an open pool is a hit: its usage is recorded, it is re-filed in the
//!   ordered index, and the policy's `on_access` hook runs;
//! - a miss with K pools open closes one first (`on_close`), then opens the requested pool
//!   with one use recorded (`on_open`; the first operation is not an `on_access`);
//! - the victim is the evictable pool with the lowest score, ties to the pool opened first:
//!   through the policy's `stable_key` ordered index ([`EvictionIndex`]) when it has one, else
//!   one `score_all` call over the evictable pools; an answer of the wrong length or with NaN
//!   falls back to the seed formula for that decision (and is counted);
//! - pinned pools (priority -1) are never evicted and hold capacity; nothing is ever busy or
//!   watched (one operation at a time);
//! - time advances by a fixed step per request, so idle times mean something.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::trace::Trace;
use crate::pool::{
    has_stable_key, lowest_score, EvictionIndex, EvictionPolicy, PoolStats, Ranked, Usage,
};

/// How to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Most pools open at once (K).
    pub capacity: usize,
    /// Milliseconds between consecutive requests.
    pub step_ms: u64,
    /// Clock at the first request, epoch milliseconds.
    pub start_ms: u64,
    /// Keep the sequence of evicted keys in [`SimResult::victims`].
    pub record_victims: bool,
    /// Keep whether each request was a hit in [`SimResult::hit_flags`] (analysis: the gap
    /// closed by phase of a trace).
    pub record_hits: bool,
}

impl SimConfig {
    /// Capacity `capacity`, 10 ms per request, starting at 2023-11-14T22:13:20Z.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            step_ms: 10,
            start_ms: 1_700_000_000_000,
            record_victims: false,
            record_hits: false,
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimResult {
    /// Requests replayed.
    pub requests: u64,
    /// Requests that found their pool open.
    pub hits: u64,
    /// Pools opened (= misses).
    pub opens: u64,
    /// Pools closed to make room.
    pub closes: u64,
    /// Decisions in which the policy's answer was unusable and the seed formula decided.
    pub policy_fallbacks: u64,
    /// Misses with K pools open and none evictable (all pinned): opened over capacity.
    pub over_capacity: u64,
    /// Evicted keys, in order (when asked for).
    pub victims: Vec<u32>,
    /// Whether each request was a hit, in order (when asked for).
    pub hit_flags: Vec<bool>,
    /// Wall-clock time of the replay.
    pub elapsed: Duration,
    /// The longest time one request took (the replayer's bookkeeping, the policy's hooks
    /// and, on a miss, its decision), and the request's index: where a policy's one-off
    /// costs (a table growing, a re-sort) show.
    pub slowest_request: (Duration, u64),
}

impl SimResult {
    /// Records that request `index` took `took`, if it is the slowest so far.
    fn note_request(&mut self, index: u64, took: Duration) {
        if took > self.slowest_request.0 {
            self.slowest_request = (took, index);
        }
    }

    /// Hits per request (0 for an empty trace).
    pub fn hit_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.hits as f64 / self.requests as f64
        }
    }
}

/// An open pool: its ranking kept by the manager's own [`Ranked`] (usage arithmetic, policy
/// statistics, index entry), and where it is in the dense list of open keys.
#[derive(Debug, Clone, Copy)]
struct Open {
    rank: Ranked,
    /// Position in the dense list of open keys.
    pos: usize,
}

impl Open {
    /// Nothing is ever busy or watched in a replay.
    fn stats<'a>(&self, name: &'a str) -> PoolStats<'a> {
        self.rank.stats(name, 0, 0)
    }
}

struct Sim<'t> {
    trace: &'t Trace,
    policy: &'t dyn EvictionPolicy,
    ordered: bool,
    open: Vec<Option<Open>>,
    dense: Vec<u32>,
    index: EvictionIndex,
    key_of: HashMap<Arc<str>, u32>,
    next_seq: u64,
}

impl Sim<'_> {
    fn reindex(&mut self, k: u32) {
        let entry = self.open[k as usize].as_mut().expect("open");
        let name = &self.trace.names[k as usize];
        entry
            .rank
            .reindex(&mut self.index, self.policy, self.ordered, name, (0, 0));
    }

    /// The victim key, and whether the policy's answer had to be replaced.
    fn choose_victim(&self, now_ms: u64) -> Option<(u32, bool)> {
        if self.ordered {
            let name = self.index.choose(|_| true)?;
            return Some((self.key_of[&name], false));
        }
        let candidates: Vec<u32> = self
            .dense
            .iter()
            .copied()
            .filter(|&k| self.open[k as usize].is_some_and(|e| !e.rank.is_pinned()))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let entries: Vec<Open> = candidates
            .iter()
            .map(|&k| self.open[k as usize].expect("open"))
            .collect();
        let stats: Vec<PoolStats<'_>> = candidates
            .iter()
            .zip(&entries)
            .map(|(&k, e)| e.stats(&self.trace.names[k as usize]))
            .collect();
        let choice = lowest_score(self.policy, &stats, now_ms)?;
        Some((candidates[choice.index], choice.fell_back))
    }

    fn close(&mut self, k: u32, now_ms: u64) {
        let mut entry = self.open[k as usize].take().expect("open");
        entry.rank.unindex(&mut self.index);
        let last = self.dense.pop().expect("dense holds every open key");
        if last != k {
            self.dense[entry.pos] = last;
            self.open[last as usize].as_mut().expect("open").pos = entry.pos;
        }
        self.policy
            .on_close(entry.rank.seq, &self.trace.names[k as usize], now_ms);
    }
}

/// Replays `trace` against `policy` with the settings of `config`.
pub fn simulate(trace: &Trace, policy: &dyn EvictionPolicy, config: &SimConfig) -> SimResult {
    let started = Instant::now();
    let ordered = has_stable_key(policy);
    let mut sim = Sim {
        trace,
        policy,
        ordered,
        open: vec![None; trace.keys()],
        dense: Vec::with_capacity(config.capacity + 1),
        index: EvictionIndex::new(),
        key_of: if ordered {
            trace
                .names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i as u32))
                .collect()
        } else {
            HashMap::new()
        },
        next_seq: 0,
    };
    let mut result = SimResult {
        requests: trace.requests.len() as u64,
        ..SimResult::default()
    };
    let mut request_started = Instant::now();
    for (i, &k) in trace.requests.iter().enumerate() {
        let now_instant = Instant::now();
        if i > 0 {
            result.note_request(i as u64 - 1, now_instant - request_started);
        }
        request_started = now_instant;
        let now = config.start_ms + i as u64 * config.step_ms;
        if config.record_hits {
            result.hit_flags.push(sim.open[k as usize].is_some());
        }
        if let Some(entry) = sim.open[k as usize].as_mut() {
            result.hits += 1;
            entry.rank.usage.record(now);
            let seq = entry.rank.seq;
            sim.reindex(k);
            policy.on_access(seq, &trace.names[k as usize], now);
            continue;
        }
        if sim.dense.len() >= config.capacity {
            match sim.choose_victim(now) {
                Some((victim, fell_back)) => {
                    if fell_back {
                        result.policy_fallbacks += 1;
                    }
                    sim.close(victim, now);
                    result.closes += 1;
                    if config.record_victims {
                        result.victims.push(victim);
                    }
                }
                None => result.over_capacity += 1,
            }
        }
        let mut usage = Usage::new(now);
        usage.record(now);
        let entry = Open {
            rank: Ranked::new(sim.next_seq, trace.priorities[k as usize], now, usage),
            pos: sim.dense.len(),
        };
        sim.next_seq += 1;
        let seq = entry.rank.seq;
        sim.open[k as usize] = Some(entry);
        sim.dense.push(k);
        sim.reindex(k);
        policy.on_open(seq, &trace.names[k as usize], now);
        result.opens += 1;
    }
    if let Some(last) = result.requests.checked_sub(1) {
        result.note_request(last, request_started.elapsed());
    }
    result.elapsed = started.elapsed();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::LruPolicy;

    #[test]
    fn lru_by_hand() {
        // capacity 2: a b a c (evicts b) b (evicts a) a (evicts c)
        let trace = Trace::from_keys(["a", "b", "a", "c", "b", "a"]);
        let mut config = SimConfig::new(2);
        config.record_victims = true;
        let r = simulate(&trace, &LruPolicy, &config);
        assert_eq!(r.hits, 1);
        assert_eq!(r.opens, 5);
        assert_eq!(r.closes, 3);
        assert_eq!(r.victims, vec![1, 0, 2]);
    }

    /// LRU whose hook for one database sleeps: the replay names that request as the slowest.
    struct SlowOn(&'static str);

    impl EvictionPolicy for SlowOn {
        fn name(&self) -> &str {
            "slow-on"
        }
        fn score(&self, pool: &PoolStats<'_>, now_ms: u64) -> f64 {
            LruPolicy.score(pool, now_ms)
        }
        fn on_open(&self, _pool_id: u64, db: &str, _now_ms: u64) {
            if db == self.0 {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    #[test]
    fn the_slowest_request_is_found_wherever_it_is() {
        // capacity 2: a, b open; c closes a: the first, a middle and the last request.
        let trace = Trace::from_keys(["a", "b", "b", "c"]);
        for (db, index) in [("a", 0), ("b", 1), ("c", 3)] {
            let r = simulate(&trace, &SlowOn(db), &SimConfig::new(2));
            assert_eq!(r.slowest_request.1, index, "{db}");
            assert!(r.slowest_request.0 >= Duration::from_millis(50), "{db}");
            assert_eq!(r.closes, 1);
        }
    }
}
