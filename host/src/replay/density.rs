//! Least hit density as an expert: LHD (Beckmann, Chen and Cidon, NSDI 2018) with its
//! statistics taken from the whole request stream rather than from its own cache.
//!
//! A cached key is worth the hits it can still be expected to get per unit of cache room it
//! will still occupy: its *hit density* at its current age (requests since its last use),
//! learnt per *class* of keys. LHD estimates it from the ages at which the cache's own
//! entries ended (hit or evicted), which only ever sees reuses shorter than the policy's own
//! eviction ages. Here the key's history outlives its eviction, so every reuse of every key
//! is an observation: its reuse distance lands in the histogram of the class the key had,
//! and a key not used again within the *horizon* (16 × the capacity) counts as a lifetime
//! that ended there without a hit. The estimate is then the policy's own input, not its
//! output, and no "explorer" entries are needed.
//!
//! - Class: the key's last reuse distance (one class per power of two; a class of its own
//!   for keys seen for the first time or not within the horizon) — the recency of reuse
//!   LIRS ranks by, as a prior on the next one.
//! - Ages and distances in log buckets (four per power of two), so sessions a few dozen
//!   requests apart and loops of thousands are resolved alike.
//! - Densities: for age bucket `b` of class `c`, `hits(≥ b) / expected remaining
//!   lifetime(≥ b)`; sparse classes are shrunk towards the all-classes histogram. Recomputed
//!   every horizon/16 requests from histograms that decay (half-life about 1.4 horizons).
//!
//! So a loop longer than the cache keeps its young keys out (they are far from their hits:
//! MRU-like), a key in a session stays until the session is probably over, and a key whose
//! last reuse was long ago goes before one that came back quickly. Eviction: the lowest
//! density among 64 sampled cached keys (all of them when there are no more), ties to the
//! older. O(1) per request, O(64) per miss, O(classes × buckets) per recomputation.
//!
//! No dependency beyond std, so that a scorer component can include this file.

use std::collections::VecDeque;

use super::experts::Expert;
use super::sampled::SampledKeys;

/// Linear buckets for ages below this, then four per power of two.
const LINEAR: u64 = 8;
/// Age buckets (ages up to 2^33).
const BUCKETS: usize = 8 + 31 * 4;
/// Reuse-distance classes: 0 = no reuse within the horizon, then one per power of two.
const CLASSES: usize = 34;
/// Horizon in units of the capacity.
const HORIZON_FACTOR: u64 = 16;
/// Recomputations per horizon.
const RECOMPUTE_PER_HORIZON: u64 = 16;
/// Decay of the histograms per recomputation.
const DECAY: f64 = 0.97;
/// Pseudo-events from the all-classes histogram added to every class.
const PRIOR_EVENTS: f64 = 8.0;

/// Bucket of an age or distance `a ≥ 0`.
fn bucket(a: u64) -> usize {
    if a < LINEAR {
        return a as usize;
    }
    let e = 63 - u64::from(a.leading_zeros()); // ≥ 3
    let sub = (a >> (e - 2)) & 3;
    ((8 + (e - 3) * 4 + sub) as usize).min(BUCKETS - 1)
}

/// Smallest age of bucket `b`.
fn lower(b: usize) -> f64 {
    if (b as u64) < LINEAR {
        return b as f64;
    }
    let e = 3 + (b as u64 - 8) / 4;
    let sub = (b as u64 - 8) % 4;
    ((4 + sub) << (e - 2)) as f64
}

/// Width of bucket `b`.
fn width(b: usize) -> f64 {
    if b + 1 < BUCKETS {
        lower(b + 1) - lower(b)
    } else {
        lower(b)
    }
}

/// Class of a key whose last reuse distance was `distance` (0: none within the horizon).
fn class_of(distance: u64) -> usize {
    if distance == 0 {
        return 0;
    }
    (1 + (63 - distance.leading_zeros()) as usize).min(CLASSES - 1)
}

/// The least-hit-density expert.
#[derive(Debug, Clone)]
pub struct HitDensity {
    /// Cached keys (64 sampled per eviction, as LHD's associativity).
    cached: SampledKeys,
    /// Last use of each key (0: never).
    last: Vec<u64>,
    /// Class of each key, from its last reuse distance.
    class: Vec<u8>,
    /// Reuses per class and age bucket (decayed).
    hits: Vec<f64>,
    /// Lifetimes ended (reuse or horizon) per class and age bucket (decayed).
    ends: Vec<f64>,
    /// Hit density per class and age bucket, from the last recomputation.
    density: Vec<f64>,
    /// Uses in order, to notice the keys not used again within the horizon.
    uses: VecDeque<(u64, u32)>,
    clock: u64,
    maximum: u64,
    horizon: u64,
    next_recompute: u64,
    pending: Option<u32>,
}

impl Default for HitDensity {
    fn default() -> Self {
        Self::new()
    }
}

impl HitDensity {
    /// An empty cache (maximum 0 until [`Expert::resize`]).
    pub fn new() -> Self {
        Self {
            cached: SampledKeys::new(),
            last: Vec::new(),
            class: Vec::new(),
            hits: vec![0.0; CLASSES * BUCKETS],
            ends: vec![0.0; CLASSES * BUCKETS],
            density: vec![0.0; CLASSES * BUCKETS],
            uses: VecDeque::new(),
            clock: 0,
            maximum: 0,
            horizon: 64,
            next_recompute: 0,
            pending: None,
        }
    }

    /// Records a use of `key`: the end of its previous lifetime and its new class.
    fn observe(&mut self, key: u32) {
        let k = key as usize;
        if self.last.len() <= k {
            self.last.resize(k + 1, 0);
            self.class.resize(k + 1, 0);
        }
        // Lifetimes that reached the horizon without a reuse.
        while let Some(&(time, old)) = self.uses.front() {
            if time + self.horizon > self.clock {
                break;
            }
            self.uses.pop_front();
            if self.last[old as usize] == time {
                let at = usize::from(self.class[old as usize]) * BUCKETS + bucket(self.horizon);
                self.ends[at] += 1.0;
            }
        }
        let distance = match self.last[k] {
            0 => 0,
            last if self.clock - last >= self.horizon => 0,
            last => self.clock - last,
        };
        if distance > 0 {
            let at = usize::from(self.class[k]) * BUCKETS + bucket(distance);
            self.hits[at] += 1.0;
            self.ends[at] += 1.0;
        }
        self.class[k] = class_of(distance) as u8;
        self.last[k] = self.clock;
        self.uses.push_back((self.clock, key));
        if self.clock >= self.next_recompute {
            self.recompute();
            self.next_recompute = self.clock + (self.horizon / RECOMPUTE_PER_HORIZON).max(16);
        }
    }

    /// Recomputes the densities from the histograms, then decays them.
    fn recompute(&mut self) {
        let mut all_hits = [0.0; BUCKETS];
        let mut all_ends = [0.0; BUCKETS];
        for c in 0..CLASSES {
            for b in 0..BUCKETS {
                all_hits[b] += self.hits[c * BUCKETS + b];
                all_ends[b] += self.ends[c * BUCKETS + b];
            }
        }
        let all_events: f64 = all_ends.iter().sum();
        let scale = if all_events > 0.0 {
            PRIOR_EVENTS / all_events
        } else {
            0.0
        };
        for c in 0..CLASSES {
            let row = c * BUCKETS;
            let mut hits_above = 0.0; // hits at buckets ≥ b
            let mut ends_above = 0.0; // lifetimes ended at buckets > b
            let mut remaining = 0.0; // Σ over buckets > b of ends × (mid(b') − mid(b))
            for b in (0..BUCKETS).rev() {
                if b + 1 < BUCKETS {
                    let step = (lower(b + 1) + width(b + 1) / 2.0) - (lower(b) + width(b) / 2.0);
                    remaining += ends_above * step;
                }
                let h = self.hits[row + b] + scale * all_hits[b];
                let e = self.ends[row + b] + scale * all_ends[b];
                hits_above += h;
                let life = remaining + e * width(b) / 2.0;
                self.density[row + b] = if life > 0.0 { hits_above / life } else { 0.0 };
                ends_above += e;
            }
        }
        for x in self.hits.iter_mut().chain(self.ends.iter_mut()) {
            *x *= DECAY;
        }
        self.pending = None;
    }

    fn drop_key(&mut self, key: u32) {
        if self.cached.remove(key) {
            self.pending = None;
        }
    }
}

impl Expert for HitDensity {
    fn name(&self) -> &'static str {
        "density"
    }

    fn request(&mut self, key: u32, _hash: i32) -> bool {
        self.clock += 1;
        self.pending = None;
        if self.contains(key) {
            self.observe(key);
            return true;
        }
        // Choose the victim before this use changes the statistics.
        if self.cached.len() as u64 >= self.maximum {
            if let Some(victim) = self.next_victim() {
                self.drop_key(victim);
            }
        }
        self.observe(key);
        self.cached.insert(key);
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
        // The hit density at the key's age in its class, the least recently used first on a
        // tie.
        let (density, class, last, clock) = (&self.density, &self.class, &self.last, self.clock);
        self.pending = self.cached.lowest(|key| {
            let k = key as usize;
            let at = usize::from(class[k]) * BUCKETS + bucket(clock - last[k]);
            (density[at], last[k])
        });
        self.pending
    }

    fn remove(&mut self, key: u32) {
        self.drop_key(key);
    }

    fn resize(&mut self, maximum: u64) {
        self.maximum = maximum;
        self.horizon = (HORIZON_FACTOR * maximum).max(64);
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
    fn buckets_are_ordered_and_cover_every_age() {
        let mut previous = 0;
        for a in 0..100_000u64 {
            let b = bucket(a);
            assert!(b == previous || b == previous + 1, "age {a}");
            assert!(
                lower(b) <= a as f64 && (a as f64) < lower(b) + width(b),
                "age {a}"
            );
            previous = b;
        }
    }

    #[test]
    fn a_loop_longer_than_the_cache_keeps_the_keys_it_already_holds() {
        // A loop over 12 keys in 8 slots: LRU never hits; keeping 8 of them gives 8 hits
        // per lap once the distances are learnt.
        let mut d = HitDensity::new();
        d.resize(8);
        let mut late_hits = 0;
        for lap in 0..200 {
            for key in 0..12 {
                let hit = d.request(key, 0);
                if lap >= 100 && hit {
                    late_hits += 1;
                }
            }
        }
        assert!(
            late_hits >= 100 * 6,
            "{late_hits} hits in the last 100 laps"
        );
    }
}
