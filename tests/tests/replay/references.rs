//! The reference policies against an independent implementation.
//!
//! `Independent` below is written from Caffeine's description (BoundedLocalCache and
//! FrequencySketch, version 3), not from the replay tool's code: plain vectors for the three
//! LRU lists (index 0 = least recently used), linear searches, the cache's maximum known
//! from the start instead of learnt at the first decision, and the eviction decided on the
//! miss itself. Only what is specification is shared: the sketch's hashing and aging, the
//! hill climber's constants and the deterministic random numbers of the hash-flooding guard
//! (xorshift64*, seed 0x9e3779b97f4a7c15, admit when bits 32..39 of the output are 0).

use super::*;

/// Removes `key` from `list` (a linear search); whether it was there.
fn take(list: &mut Vec<u32>, key: u32) -> bool {
    match list.iter().position(|&k| k == key) {
        Some(i) => {
            list.remove(i);
            true
        }
        None => false,
    }
}

struct Independent {
    maximum: usize,
    window: Vec<u32>,
    probation: Vec<u32>,
    protected: Vec<u32>,
    window_max: usize,
    protected_max: usize,
    table: Vec<u64>,
    sample_size: u32,
    additions: u32,
    hits_in_sample: u64,
    misses_in_sample: u64,
    previous_rate: f64,
    step: f64,
    adjustment: i64,
    rng: u64,
    hashes: Vec<i32>,
}

impl Independent {
    fn new(maximum: usize, hashes: Vec<i32>) -> Self {
        let window_max = maximum - (0.99 * maximum as f64) as usize;
        Self {
            maximum,
            window: Vec::new(),
            probation: Vec::new(),
            protected: Vec::new(),
            window_max,
            protected_max: (0.8 * (maximum - window_max) as f64) as usize,
            table: Vec::new(),
            sample_size: 0,
            additions: 0,
            hits_in_sample: 0,
            misses_in_sample: 0,
            previous_rate: 0.0,
            step: -0.0625 * maximum as f64,
            adjustment: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            hashes,
        }
    }

    fn counters(&self, key: u32) -> Vec<(usize, u32)> {
        let mut x = self.hashes[key as usize] as u32;
        x ^= x >> 17;
        x = x.wrapping_mul(0xed5a_d4bb);
        x ^= x >> 11;
        x = x.wrapping_mul(0xac4c_1b51);
        x ^= x >> 15;
        let block_hash = x;
        let mut c = block_hash.wrapping_mul(0x3184_8bab);
        c ^= c >> 14;
        let blocks = (self.table.len() / 8) as u32;
        let block = ((block_hash & (blocks - 1)) * 8) as usize;
        (0..4)
            .map(|i| {
                let h = c >> (8 * i);
                (block + (h & 1) as usize + 2 * i as usize, (h >> 1) & 15)
            })
            .collect()
    }

    fn frequency(&self, key: u32) -> u32 {
        if self.table.is_empty() {
            return 0;
        }
        self.counters(key)
            .into_iter()
            .map(|(w, i)| ((self.table[w] >> (4 * i)) & 15) as u32)
            .min()
            .unwrap()
    }

    fn increment(&mut self, key: u32) {
        if self.table.is_empty() {
            return;
        }
        let mut added = false;
        for (w, i) in self.counters(key) {
            if (self.table[w] >> (4 * i)) & 15 != 15 {
                self.table[w] += 1 << (4 * i);
                added = true;
            }
        }
        if added {
            self.additions += 1;
            if self.additions == self.sample_size {
                let mut odd = 0;
                for w in &mut self.table {
                    odd += (*w & 0x1111_1111_1111_1111).count_ones();
                    *w = (*w >> 1) & 0x7777_7777_7777_7777;
                }
                self.additions = (self.additions - odd / 4) / 2;
            }
        }
    }

    fn len(&self) -> usize {
        self.window.len() + self.probation.len() + self.protected.len()
    }

    /// One request; returns whether it hit.
    fn request(&mut self, key: u32) -> bool {
        let hit = if take(&mut self.window, key) {
            self.window.push(key);
            true
        } else if take(&mut self.probation, key) {
            if self.protected_max == 0 {
                self.probation.push(key);
            } else {
                self.protected.push(key);
            }
            true
        } else if take(&mut self.protected, key) {
            self.protected.push(key);
            true
        } else {
            false
        };
        if hit {
            self.increment(key);
            self.hits_in_sample += 1;
        } else {
            if self.len() >= self.maximum {
                self.evict_one();
            }
            self.window.push(key);
            if self.len() >= self.maximum / 2 && self.table.is_empty() {
                let words = self.maximum.next_power_of_two().max(8);
                self.table = vec![0; words];
                self.sample_size = 10 * self.maximum as u32;
            }
            self.increment(key);
            self.misses_in_sample += 1;
        }
        while self.window.len() > self.window_max {
            let k = self.window.remove(0);
            self.probation.push(k);
        }
        self.climb();
        hit
    }

    fn evict_one(&mut self) {
        // The incoming key will enter the window: its overflow moves to probation first.
        while self.window.len() + 1 > self.window_max && !self.window.is_empty() {
            let k = self.window.remove(0);
            self.probation.push(k);
        }
        let candidate = self.probation.last().or(self.window.first()).copied();
        let victim = self
            .probation
            .first()
            .or(self.protected.first())
            .or(self.window.first())
            .copied();
        let loser = match (candidate, victim) {
            (Some(c), Some(v)) if c != v => {
                let (cf, vf) = (self.frequency(c), self.frequency(v));
                let admit = cf > vf || (cf >= 6 && self.random() & 127 == 0);
                if admit {
                    v
                } else {
                    c
                }
            }
            (Some(c), _) => c,
            (None, Some(v)) => v,
            (None, None) => return,
        };
        for list in [&mut self.window, &mut self.probation, &mut self.protected] {
            take(list, loser);
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32
    }

    fn demote(&mut self) {
        while self.protected.len() > self.protected_max && !self.protected.is_empty() {
            let k = self.protected.remove(0);
            self.probation.push(k);
        }
    }

    fn climb(&mut self) {
        if self.table.is_empty() {
            self.previous_rate = 0.0;
            self.hits_in_sample = 0;
            self.misses_in_sample = 0;
        } else {
            let requests = self.hits_in_sample + self.misses_in_sample;
            if requests >= u64::from(self.sample_size) {
                let rate = self.hits_in_sample as f64 / requests as f64;
                let change = rate - self.previous_rate;
                let amount = if change >= 0.0 { self.step } else { -self.step };
                self.step = if change.abs() >= 0.05 {
                    0.0625 * self.maximum as f64 * amount.signum()
                } else {
                    0.98 * amount
                };
                self.previous_rate = rate;
                self.adjustment = amount as i64;
                self.hits_in_sample = 0;
                self.misses_in_sample = 0;
            }
        }
        self.demote();
        if self.adjustment > 0 && self.protected_max > 0 {
            // Grow the window: take from probation first, then protected (their LRU ends).
            let mut quota = (self.adjustment as usize).min(self.protected_max);
            self.protected_max -= quota;
            self.window_max += quota;
            self.demote();
            while quota > 0 {
                let k = if !self.probation.is_empty() {
                    self.probation.remove(0)
                } else if !self.protected.is_empty() {
                    self.protected.remove(0)
                } else {
                    break;
                };
                self.window.push(k);
                quota -= 1;
            }
            self.protected_max += quota;
            self.window_max -= quota;
            self.adjustment = quota as i64;
        } else if self.adjustment < 0 && self.window_max > 1 {
            let mut quota = (-self.adjustment as usize).min(self.window_max - 1);
            self.protected_max += quota;
            self.window_max -= quota;
            while quota > 0 && !self.window.is_empty() {
                let k = self.window.remove(0);
                self.probation.push(k);
                quota -= 1;
            }
            self.protected_max -= quota;
            self.window_max += quota;
            self.adjustment = -(quota as i64);
        }
    }
}

/// Independent LRU: a vector, most recent last.
fn independent_lru(trace: &Trace, capacity: usize) -> u64 {
    let mut cache: Vec<u32> = Vec::new();
    let mut hits = 0;
    for &k in &trace.requests {
        if let Some(i) = cache.iter().position(|&c| c == k) {
            hits += 1;
            cache.remove(i);
        } else if cache.len() == capacity {
            cache.remove(0);
        }
        cache.push(k);
    }
    hits
}

/// Independent MIN: at each miss, scan forward for the cached key used farthest ahead.
fn independent_min(trace: &Trace, capacity: usize) -> u64 {
    let mut cache: Vec<u32> = Vec::new();
    let mut hits = 0;
    let reqs = &trace.requests;
    for (i, &k) in reqs.iter().enumerate() {
        if cache.contains(&k) {
            hits += 1;
            continue;
        }
        if cache.len() == capacity {
            let next_use = |c: u32| {
                reqs[i + 1..]
                    .iter()
                    .position(|&r| r == c)
                    .unwrap_or(usize::MAX)
            };
            let far = (0..cache.len())
                .max_by_key(|&j| next_use(cache[j]))
                .unwrap();
            cache.remove(far);
        }
        cache.push(k);
    }
    hits
}

fn independent_wtinylfu(trace: &Trace, capacity: usize) -> u64 {
    let hashes = trace.names.iter().map(|n| java_hash(n)).collect();
    let mut cache = Independent::new(capacity, hashes);
    trace.requests.iter().filter(|&&k| cache.request(k)).count() as u64
}

/// A trace without pinned keys (the independent versions do not model them), with
/// sessions, a scan, a popularity shift and bursts.
fn unpinned_trace(seed: u64, tenants: usize, requests: usize) -> Trace {
    let mut trace = small_trace(seed, tenants, requests);
    trace.priorities.iter_mut().for_each(|p| *p = 100);
    trace
}

#[test]
fn reference_policies_agree_with_an_independent_implementation() {
    // By hand first: K=2 on a b a c b a (LRU: 1 hit, the second a).
    let trace = Trace::from_keys(["a", "b", "a", "c", "b", "a"]);
    assert_eq!(replay(&trace, &LruPolicy, 2).hits, 1);
    assert_eq!(independent_lru(&trace, 2), 1);
    // MIN: a b a (hit) c (evicts a, next used after b) b (hit) a (miss): 2 hits.
    assert_eq!(belady(&trace, 2).hits, 2);
    assert_eq!(independent_min(&trace, 2), 2);

    let mut climbed = false;
    for (seed, tenants, capacity) in [(1, 300, 20), (2, 600, 60), (3, 1_000, 150)] {
        let trace = unpinned_trace(seed, tenants, 40_000);
        assert_eq!(trace.pinned(), 0);
        let lru = replay(&trace, &LruPolicy, capacity);
        assert_eq!(
            lru.hits,
            independent_lru(&trace, capacity),
            "LRU, K={capacity}"
        );
        let min = belady(&trace, capacity);
        assert_eq!(
            min.hits,
            independent_min(&trace, capacity),
            "MIN, K={capacity}"
        );
        let policy = WTinyLfuPolicy::new();
        let w = replay(&trace, &policy, capacity);
        assert_eq!(w.policy_fallbacks, 0);
        assert_eq!(
            w.hits,
            independent_wtinylfu(&trace, capacity),
            "W-TinyLFU, K={capacity}"
        );
        assert!(w.hits <= min.hits);
        // The trace is long enough for the hill climber to move the window (40,000
        // requests, a sample every 10 × K).
        let mut probe =
            Independent::new(capacity, trace.names.iter().map(|n| java_hash(n)).collect());
        let start = probe.window_max;
        for &k in &trace.requests {
            probe.request(k);
            climbed |= probe.window_max != start;
        }
    }
    assert!(
        climbed,
        "the climber never moved the window: the check would miss it"
    );
}

/// Independent LIRS, written from the paper with plain vectors (O(n) per request): LIR keys
/// take all but 1% of the room (at least 1 slot for resident HIR keys); ghosts (non-resident
/// HIR keys still in the stack) are bounded at 2 × capacity, the oldest forgotten first, as
/// in the expert.
struct IndependentLirs {
    /// The recency stack, bottom first.
    stack: Vec<u32>,
    /// Resident HIR keys, the next victim first.
    queue: Vec<u32>,
    lir: Vec<u32>,
    /// Ghosts in the order they became ghosts.
    ghosts: Vec<u32>,
    capacity: usize,
    lir_max: usize,
}

impl IndependentLirs {
    fn new(capacity: usize) -> Self {
        let hir = (capacity / 100).max(1);
        Self {
            stack: Vec::new(),
            queue: Vec::new(),
            lir: Vec::new(),
            ghosts: Vec::new(),
            capacity,
            lir_max: capacity.saturating_sub(hir),
        }
    }

    fn move_to_top(&mut self, key: u32) {
        take(&mut self.stack, key);
        self.stack.push(key);
    }

    /// Drops HIR keys (resident or ghosts) from the bottom until a LIR key is there.
    fn prune(&mut self) {
        while let Some(&bottom) = self.stack.first() {
            if self.lir.contains(&bottom) {
                break;
            }
            self.stack.remove(0);
            take(&mut self.ghosts, bottom);
        }
    }

    /// While there are too many LIR keys, the bottom one becomes a resident HIR key.
    fn demote(&mut self) {
        while self.lir.len() > self.lir_max && !self.stack.is_empty() {
            let bottom = self.stack.remove(0);
            take(&mut self.lir, bottom);
            self.queue.push(bottom);
            self.prune();
        }
    }

    fn evict(&mut self) {
        if !self.queue.is_empty() {
            let victim = self.queue.remove(0);
            if self.stack.contains(&victim) {
                self.ghosts.push(victim);
                while self.ghosts.len() > 2 * self.capacity {
                    let oldest = self.ghosts.remove(0);
                    take(&mut self.stack, oldest);
                }
                self.prune();
            }
        } else if !self.stack.is_empty() {
            let bottom = self.stack.remove(0);
            take(&mut self.lir, bottom);
            self.prune();
        }
    }

    fn request(&mut self, key: u32) -> bool {
        if self.lir.contains(&key) {
            self.move_to_top(key);
            self.prune();
            return true;
        }
        if self.queue.contains(&key) {
            if self.stack.contains(&key) {
                take(&mut self.queue, key);
                self.move_to_top(key);
                self.lir.push(key);
                self.demote();
            } else {
                self.stack.push(key);
                take(&mut self.queue, key);
                self.queue.push(key);
            }
            return true;
        }
        if self.lir.len() + self.queue.len() >= self.capacity {
            self.evict();
        }
        if self.ghosts.contains(&key) || self.lir.len() < self.lir_max {
            take(&mut self.ghosts, key);
            self.move_to_top(key);
            self.lir.push(key);
            self.demote();
        } else {
            self.stack.push(key);
            self.queue.push(key);
        }
        false
    }
}

#[test]
fn lirs_expert_agrees_with_an_independent_implementation() {
    let lirs = || {
        let expert = WTinyLfuPolicy::expert("lirs").expect("lirs expert");
        WTinyLfuPolicy::following(vec![expert], LeaderRule::default())
    };
    // By hand: a loop of 4 keys in 3 slots. a and b become LIR in the warm-up and stay;
    // c and d take turns in the one HIR slot. LRU never hits; LIRS hits a and b from the
    // second round on: 2 hits per round after the first.
    let keys: Vec<&str> = ["a", "b", "c", "d"].repeat(3);
    let trace = Trace::from_keys(keys);
    assert_eq!(replay(&trace, &LruPolicy, 3).hits, 0);
    assert_eq!(replay(&trace, &lirs(), 3).hits, 4);
    let mut independent = IndependentLirs::new(3);
    let hits = trace
        .requests
        .iter()
        .filter(|&&k| independent.request(k))
        .count();
    assert_eq!(hits, 4);

    for (seed, tenants, capacity) in [(1, 300, 20), (2, 600, 60), (3, 1_000, 150)] {
        let trace = unpinned_trace(seed, tenants, 40_000);
        let mut independent = IndependentLirs::new(capacity);
        let expected = trace
            .requests
            .iter()
            .filter(|&&k| independent.request(k))
            .count() as u64;
        let result = replay(&trace, &lirs(), capacity);
        assert_eq!(result.policy_fallbacks, 0);
        assert_eq!(result.hits, expected, "LIRS, seed {seed}, K={capacity}");
        let min = belady(&trace, capacity);
        assert!(result.hits <= min.hits);
    }
}
