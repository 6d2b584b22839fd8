//! Hyperbolic caching (Blankstein, Sen and Freedman, USENIX ATC 2017) as an expert: every
//! cached key is valued by its hits since it entered divided by its time in the cache (an
//! estimate of its request rate that needs no decay), and a miss evicts the lowest of a
//! sample of the cache. Frequency without LFU's pollution (an old count is diluted by age)
//! and recency without LRU's blindness to frequency.
//!
//! No dependency beyond std, so that a scorer component can include this file.

use super::experts::Expert;
use super::sampled::SampledKeys;

/// Hyperbolic caching with sampled eviction (a seeded xorshift, so replays repeat).
#[derive(Debug, Clone)]
pub struct Hyperbolic {
    /// Cached keys (64 sampled per eviction, as in the paper).
    cached: SampledKeys,
    hits: Vec<u32>,
    since: Vec<u64>,
    clock: u64,
    maximum: u64,
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
            cached: SampledKeys::new(),
            hits: Vec::new(),
            since: Vec::new(),
            clock: 0,
            maximum: 0,
            pending: None,
        }
    }

    fn insert(&mut self, key: u32) {
        let k = key as usize;
        if self.hits.len() <= k {
            self.hits.resize(k + 1, 0);
            self.since.resize(k + 1, 0);
        }
        self.cached.insert(key);
        self.hits[k] = 1;
        self.since[k] = self.clock;
    }

    fn drop_key(&mut self, key: u32) {
        if self.cached.remove(key) {
            self.pending = None;
        }
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
        if self.cached.len() as u64 >= self.maximum {
            if let Some(victim) = self.next_victim() {
                self.drop_key(victim);
            }
        }
        self.insert(key);
        self.pending = None;
        false
    }

    fn contains(&self, key: u32) -> bool {
        self.cached.contains(key)
    }

    fn next_victim(&mut self) -> Option<u32> {
        if self.pending.is_some() || self.cached.len() == 0 {
            return self.pending;
        }
        // Hits per unit of time in the cache, the longest cached first on a tie.
        let (hits, since, clock) = (&self.hits, &self.since, self.clock);
        self.pending = self.cached.lowest(|key| {
            let k = key as usize;
            (f64::from(hits[k]) / (clock - since[k] + 1) as f64, since[k])
        });
        self.pending
    }

    fn remove(&mut self, key: u32) {
        self.drop_key(key);
    }

    fn resize(&mut self, maximum: u64) {
        self.maximum = maximum;
        while self.cached.len() as u64 > maximum {
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
