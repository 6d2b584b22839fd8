//! Hyperbolic caching (Blankstein, Sen and Freedman, USENIX ATC 2017) as an expert: every
//! cached key is valued by its hits since it entered divided by its time in the cache (an
//! estimate of its request rate that needs no decay), and a miss evicts the lowest of a
//! sample of the cache. Frequency without LFU's pollution (an old count is diluted by age)
//! and recency without LRU's blindness to frequency.
//!
//! No dependency beyond std, so that a scorer component can include this file.

use super::experts::Expert;

const NIL: u32 = u32::MAX;
/// Keys sampled per eviction (the paper uses 64).
const SAMPLE: usize = 64;

/// Hyperbolic caching with sampled eviction (a seeded xorshift, so replays repeat).
#[derive(Debug, Clone)]
pub struct Hyperbolic {
    /// Cached keys, densely (sampling draws indices).
    keys: Vec<u32>,
    /// Index in `keys` of each key, or `NIL`.
    at: Vec<u32>,
    hits: Vec<u32>,
    since: Vec<u64>,
    clock: u64,
    maximum: u64,
    state: u64,
    pending: Option<u32>,
}

impl Default for Hyperbolic {
    fn default() -> Self {
        Self::new()
    }
}

impl Hyperbolic {
    /// An empty cache (maximum 0 until [`Expert::resize`]).
    pub fn new() -> Self {
        Self {
            keys: Vec::new(),
            at: Vec::new(),
            hits: Vec::new(),
            since: Vec::new(),
            clock: 0,
            maximum: 0,
            state: 0x9e37_79b9_7f4a_7c15,
            pending: None,
        }
    }

    fn random(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    fn priority(&self, key: u32) -> f64 {
        let k = key as usize;
        f64::from(self.hits[k]) / (self.clock - self.since[k] + 1) as f64
    }

    fn insert(&mut self, key: u32) {
        let k = key as usize;
        if self.at.len() <= k {
            self.at.resize(k + 1, NIL);
            self.hits.resize(k + 1, 0);
            self.since.resize(k + 1, 0);
        }
        self.at[k] = self.keys.len() as u32;
        self.keys.push(key);
        self.hits[k] = 1;
        self.since[k] = self.clock;
    }

    fn drop_key(&mut self, key: u32) {
        let Some(&i) = self.at.get(key as usize) else {
            return;
        };
        if i == NIL {
            return;
        }
        let last = self.keys.pop().unwrap_or(key);
        if last != key {
            self.keys[i as usize] = last;
            self.at[last as usize] = i;
        }
        self.at[key as usize] = NIL;
        self.pending = None;
    }
}

impl Expert for Hyperbolic {
    fn name(&self) -> &'static str {
        "hyperbolic"
    }

    fn request(&mut self, key: u32, _hash: i32) -> bool {
        self.clock += 1;
        self.pending = None;
        if self.contains(key) {
            self.hits[key as usize] += 1;
            return true;
        }
        if self.keys.len() as u64 >= self.maximum {
            if let Some(victim) = self.next_victim() {
                self.drop_key(victim);
            }
        }
        self.insert(key);
        self.pending = None;
        false
    }

    fn contains(&self, key: u32) -> bool {
        self.at.get(key as usize).is_some_and(|&i| i != NIL)
    }

    fn next_victim(&mut self) -> Option<u32> {
        if self.pending.is_some() || self.keys.is_empty() {
            return self.pending;
        }
        let n = self.keys.len();
        let mut best: Option<(f64, u64, u32)> = None;
        let consider = |this: &Self, key: u32, best: &mut Option<(f64, u64, u32)>| {
            let p = this.priority(key);
            let since = this.since[key as usize];
            if best.is_none_or(|(bp, bs, _)| (p, since) < (bp, bs)) {
                *best = Some((p, since, key));
            }
        };
        if n <= SAMPLE {
            for i in 0..n {
                consider(self, self.keys[i], &mut best);
            }
        } else {
            for _ in 0..SAMPLE {
                let i = (self.random() % n as u64) as usize;
                consider(self, self.keys[i], &mut best);
            }
        }
        self.pending = best.map(|(_, _, k)| k);
        self.pending
    }

    fn remove(&mut self, key: u32) {
        self.drop_key(key);
    }

    fn resize(&mut self, maximum: u64) {
        self.maximum = maximum;
        while self.keys.len() as u64 > maximum {
            self.pending = None;
            match self.next_victim() {
                Some(victim) => self.drop_key(victim),
                None => break,
            }
        }
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_lowest_hits_per_time_in_cache() {
        let mut h = Hyperbolic::new();
        h.resize(2);
        assert!(!h.request(1, 0));
        assert!(!h.request(2, 0));
        assert!(h.request(1, 0));
        assert!(h.request(1, 0));
        // Key 1: 3 hits in 4 ticks; key 2: 1 hit in 3 ticks.
        assert_eq!(h.next_victim(), Some(2));
        assert!(!h.request(3, 0));
        assert!(h.contains(1) && h.contains(3) && !h.contains(2));
    }
}
