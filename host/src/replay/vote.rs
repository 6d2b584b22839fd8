//! Deciding each eviction by a weighted vote of the experts (an experiment switch of the
//! [`Follower`](super::follow::Follower), `LeaderRule::vote`), instead of following one
//! leader.
//!
//! Every expert `e` has a weight `w_e = e^(−(best − r_e) / scale)` from its decayed hit
//! ratio `r_e` (the best counts 1, one `scale` behind ≈ 0.37). Evicting a real pool `c`
//! costs expert `e` nothing when `e` does not hold `c` (to `e` it is a stray) or when `c` is
//! `e`'s own next victim, and `w_e` otherwise; the pool the experts, so weighted, mind least
//! goes (ties to the least recently used). When one expert is clearly best and the real pools
//! are its cache, that is exactly its own victim; when two are close, what both would drop
//! goes first, so the real pools become a blend of the close experts instead of migrating
//! from one to the other at each change of leader.
//!
//! No dependency beyond std, so that a scorer component can include this file.

use super::experts::{Expert, Lru};

/// The index in `keys` (the real evictable pools) of the pool the weighted experts mind
/// least. `ratios`: each expert's decayed hit ratio; `last_use`: each key's last request.
///
/// `within`: when set, only the pools that expert does not hold or would evict next are
/// candidates (the vote then only chooses among the moves that follow that expert).
pub fn least_minded(
    experts: &mut [Box<dyn Expert + Send>],
    ratios: &[f64],
    scale: f64,
    keys: &[u32],
    last_use: &[u64],
    within: Option<usize>,
) -> Option<usize> {
    let weights = weights(ratios, scale);
    let victims: Vec<Option<u32>> = experts.iter_mut().map(|e| e.next_victim()).collect();
    let mut chosen: Option<(f64, u64, usize)> = None;
    for (i, &k) in keys.iter().enumerate() {
        if let Some(l) = within {
            if victims[l] != Some(k) && experts[l].contains(k) {
                continue;
            }
        }
        let cost = minded(experts, &weights, &victims, k);
        let used = last_use[k as usize];
        if chosen.is_none_or(|(c, u, _)| (cost, used) < (c, u)) {
            chosen = Some((cost, used, i));
        }
    }
    chosen.map(|(_, _, i)| i)
}

/// Weights of the experts from their decayed hit ratios (see the module documentation).
pub fn weights(ratios: &[f64], scale: f64) -> Vec<f64> {
    let best = ratios.iter().copied().fold(0.0, f64::max);
    ratios
        .iter()
        .map(|&r| (-(best - r) / scale).exp())
        .collect()
}

/// How much the weighted experts mind losing `key`: each expert holding it, unless it is
/// that expert's own next victim, adds its weight.
fn minded(
    experts: &[Box<dyn Expert + Send>],
    weights: &[f64],
    victims: &[Option<u32>],
    key: u32,
) -> f64 {
    experts
        .iter()
        .zip(weights)
        .zip(victims)
        .filter(|((e, _), &v)| v != Some(key) && e.contains(key))
        .map(|((_, &w), _)| w)
        .sum()
}

/// The weighted vote as a virtual cache of its own (an expert the follower can follow when
/// the blend does better than any single expert): on a miss, among the experts' own next
/// victims it holds and its `SAMPLE` least recently used keys, the key the experts mind least
/// goes (ties to the least recently used).
#[derive(Debug, Clone)]
pub struct Blend {
    lru: Lru,
    maximum: u64,
    scale: f64,
    candidates: Vec<u32>,
}

/// How many of its least recently used keys the blend considers besides the nominees.
const SAMPLE: usize = 64;
/// ... and of its most recently used keys (a key every expert dropped at once, a scan).
const NEWEST: usize = 16;

impl Blend {
    /// An empty blend; `scale` as in [`weights`].
    pub fn new(scale: f64) -> Self {
        Self {
            lru: Lru::new(),
            maximum: 0,
            scale,
            candidates: Vec::new(),
        }
    }

    /// Whether `key` is cached.
    pub fn contains(&self, key: u32) -> bool {
        self.lru.contains(key)
    }

    /// A request for `key`, after the experts have seen it; returns whether it was a hit.
    pub fn request(
        &mut self,
        key: u32,
        experts: &mut [Box<dyn Expert + Send>],
        ratios: &[f64],
    ) -> bool {
        if self.lru.contains(key) {
            self.lru.request(key, 0);
            return true;
        }
        if self.lru.len() >= self.maximum {
            if let Some(victim) = self.next_victim(experts, ratios) {
                self.lru.remove(victim);
            }
        }
        self.lru.request(key, 0);
        false
    }

    /// The key the next miss would evict.
    pub fn next_victim(
        &mut self,
        experts: &mut [Box<dyn Expert + Send>],
        ratios: &[f64],
    ) -> Option<u32> {
        let weights = weights(ratios, self.scale);
        let victims: Vec<Option<u32>> = experts.iter_mut().map(|e| e.next_victim()).collect();
        self.candidates.clear();
        self.lru.oldest(SAMPLE, &mut self.candidates);
        let mut chosen: Option<(f64, usize, u32)> = None;
        let nominees: Vec<u32> = victims
            .iter()
            .flatten()
            .copied()
            .filter(|&v| self.lru.contains(v))
            .collect();
        self.candidates.extend(nominees);
        self.lru.newest(NEWEST, &mut self.candidates);
        // Rank: the oldest keys by age, then the nominees, then the newest keys.
        for (rank, &k) in self.candidates.iter().enumerate() {
            let cost = minded(experts, &weights, &victims, k);
            if chosen.is_none_or(|(c, r, _)| (cost, rank) < (c, r)) {
                chosen = Some((cost, rank, k));
            }
        }
        chosen.map(|(_, _, k)| k)
    }

    /// Drops `key`.
    pub fn remove(&mut self, key: u32) {
        self.lru.remove(key);
    }

    /// Sets the maximum size (the follower resizes the experts first).
    pub fn resize(&mut self, maximum: u64) {
        self.maximum = maximum;
        self.lru.resize(maximum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lru(keys: &[u32], maximum: u64) -> Box<dyn Expert + Send> {
        let mut e = Lru::new();
        e.resize(maximum);
        for &k in keys {
            e.request(k, 0);
        }
        Box::new(e)
    }

    #[test]
    fn a_clearly_best_expert_decides_alone_and_agreement_goes_first() {
        // Expert 0 holds 1, 2 (victim 1); expert 1 holds 2, 3 (victim 2).
        let mut experts = vec![lru(&[1, 2], 2), lru(&[2, 3], 2)];
        let keys = [1, 2, 3];
        let last_use = [0, 1, 2, 3];
        // Expert 0 far ahead: its own victim (key 1), though expert 1 would keep 2 and 3.
        let pick = least_minded(&mut experts, &[0.5, 0.1], 0.01, &keys, &last_use, None);
        assert_eq!(pick, Some(0));
        // Equal: key 1 costs expert 0 nothing (its victim) and expert 1 nothing (not held);
        // key 2 is expert 1's victim but expert 0 keeps it; key 3 only expert 1 keeps.
        let pick = least_minded(&mut experts, &[0.3, 0.3], 0.01, &keys, &last_use, None);
        assert_eq!(pick, Some(0));
        // Only among expert 1's moves (its victim 2, or 1 which it does not hold).
        let pick = least_minded(&mut experts, &[0.3, 0.3], 0.01, &keys, &last_use, Some(1));
        assert_eq!(pick, Some(0));
        let mut blend = Blend::new(0.01);
        blend.resize(2);
        assert!(!blend.request(2, &mut experts, &[0.3, 0.3]));
        assert!(!blend.request(3, &mut experts, &[0.3, 0.3]));
        assert!(blend.request(2, &mut experts, &[0.3, 0.3]));
        // Full with 2 and 3: each costs 1 (2 is kept by expert 0 and is expert 1's victim, 3
        // is kept by expert 1 only): the tie goes to the least recently used, 3.
        assert_eq!(blend.next_victim(&mut experts, &[0.3, 0.3]), Some(3));
    }
}
