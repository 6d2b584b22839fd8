//! Perfect LFU as an expert: every key's requests counted since the start, for keys out of
//! the cache too, and the cached key with the fewest goes (ties to the least recently
//! used).
//!
//! On traffic with stable probabilities (the independent reference model) this converges
//! to keeping the most probable keys, the best an online policy can do there — which
//! W-TinyLFU's sketch, halved every 10 × capacity requests, only approximates when the
//! keys at the boundary come back less often than that. Where popularity moves it holds on
//! to yesterday's favourites; a follower then leaves it.
//!
//! No dependency beyond std, so that a scorer component can include this file.

use std::collections::BTreeSet;

use super::experts::Expert;

/// Perfect LFU as a virtual cache.
#[derive(Debug, Clone, Default)]
pub struct PerfectLfu {
    count: Vec<u64>,
    last: Vec<u64>,
    cached: Vec<bool>,
    /// Cached keys by (count, last use, key): the first goes.
    order: BTreeSet<(u64, u64, u32)>,
    clock: u64,
    maximum: u64,
}

impl PerfectLfu {
    /// An empty cache (maximum 0 until [`Expert::resize`]).
    pub fn new() -> Self {
        Self::default()
    }

    fn grow(&mut self, key: u32) {
        let k = key as usize;
        if self.count.len() <= k {
            self.count.resize(k + 1, 0);
            self.last.resize(k + 1, 0);
            self.cached.resize(k + 1, false);
        }
    }

    fn entry(&self, key: u32) -> (u64, u64, u32) {
        (self.count[key as usize], self.last[key as usize], key)
    }

    fn drop_key(&mut self, key: u32) {
        if self.contains(key) {
            self.order.remove(&self.entry(key));
            self.cached[key as usize] = false;
        }
    }
}

impl Expert for PerfectLfu {
    fn name(&self) -> &'static str {
        "perfect-lfu"
    }

    fn request(&mut self, key: u32, _hash: i32) -> bool {
        self.clock += 1;
        self.grow(key);
        let hit = self.contains(key);
        if hit {
            self.order.remove(&self.entry(key));
        } else if self.order.len() as u64 >= self.maximum {
            if let Some((_, _, victim)) = self.order.pop_first() {
                self.cached[victim as usize] = false;
            }
        }
        self.count[key as usize] += 1;
        self.last[key as usize] = self.clock;
        self.cached[key as usize] = true;
        self.order.insert(self.entry(key));
        hit
    }

    fn contains(&self, key: u32) -> bool {
        self.cached.get(key as usize).copied().unwrap_or(false)
    }

    fn next_victim(&mut self) -> Option<u32> {
        self.order.first().map(|&(_, _, key)| key)
    }

    fn remove(&mut self, key: u32) {
        self.drop_key(key);
    }

    fn resize(&mut self, maximum: u64) {
        self.maximum = maximum;
        while self.order.len() as u64 > maximum {
            if let Some((_, _, victim)) = self.order.pop_first() {
                self.cached[victim as usize] = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outlive_eviction() {
        let mut lfu = PerfectLfu::new();
        lfu.resize(1);
        for _ in 0..3 {
            lfu.request(1, 0);
        }
        lfu.request(2, 0); // evicts 1 (count 3) — the only key
        assert!(!lfu.contains(1));
        lfu.request(1, 0); // 1 comes back with count 4, evicting 2 (count 1)
        lfu.request(2, 0);
        // 2 (count 2) evicted 1 again, but with 2 slots 1 would stay:
        lfu.resize(2);
        lfu.request(1, 0);
        lfu.request(3, 0);
        assert!(lfu.contains(1) && lfu.contains(3) && !lfu.contains(2));
    }
}
