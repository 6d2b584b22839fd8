//! A set of cached keys held densely so that eviction can draw a sample of them: the common
//! part of the sampled experts ([`Hyperbolic`](super::hyper::Hyperbolic),
//! [`HitDensity`](super::density::HitDensity)). The sample comes from a seeded xorshift, so
//! replays repeat.
//!
//! No dependency beyond std, so that a scorer component can include this file.

const NIL: u32 = u32::MAX;
/// Keys sampled per eviction (hyperbolic caching's sample, LHD's associativity).
const SAMPLE: usize = 64;

/// Dense set of keys with O(1) insert, remove and membership, and sampled minimum search.
#[derive(Debug, Clone)]
pub(super) struct SampledKeys {
    /// The keys, densely (sampling draws indices).
    keys: Vec<u32>,
    /// Index in `keys` of each key, or `NIL`.
    at: Vec<u32>,
    state: u64,
}

impl SampledKeys {
    pub(super) fn new() -> Self {
        Self {
            keys: Vec::new(),
            at: Vec::new(),
            state: 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn contains(&self, key: u32) -> bool {
        self.at.get(key as usize).is_some_and(|&i| i != NIL)
    }

    /// Adds `key` (not already in the set).
    pub(super) fn insert(&mut self, key: u32) {
        let k = key as usize;
        if self.at.len() <= k {
            self.at.resize(k + 1, NIL);
        }
        self.at[k] = self.keys.len() as u32;
        self.keys.push(key);
    }

    /// Removes `key`; whether it was in the set.
    pub(super) fn remove(&mut self, key: u32) -> bool {
        let Some(&i) = self.at.get(key as usize) else {
            return false;
        };
        if i == NIL {
            return false;
        }
        let last = self.keys.pop().unwrap_or(key);
        if last != key {
            self.keys[i as usize] = last;
            self.at[last as usize] = i;
        }
        self.at[key as usize] = NIL;
        true
    }

    fn random(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// The key with the lowest `rank` among all keys when there are at most 64, else among
    /// 64 drawn at random (with replacement); the first drawn wins a tie.
    pub(super) fn lowest<R: PartialOrd>(&mut self, rank: impl Fn(u32) -> R) -> Option<u32> {
        let n = self.keys.len();
        let mut best: Option<(R, u32)> = None;
        let mut consider = |key: u32| {
            let r = rank(key);
            if best.as_ref().is_none_or(|(b, _)| r < *b) {
                best = Some((r, key));
            }
        };
        if n <= SAMPLE {
            self.keys.iter().for_each(|&key| consider(key));
        } else {
            for _ in 0..SAMPLE {
                let i = (self.random() % n as u64) as usize;
                consider(self.keys[i]);
            }
        }
        best.map(|(_, key)| key)
    }
}
