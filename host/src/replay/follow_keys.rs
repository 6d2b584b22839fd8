//! Database names to key numbers, and bounded memory: the [`Follower`] and its experts keep
//! state per key number (dense vectors), so a host that sees millions of distinct databases
//! over its life would grow them without end (a scorer component would hit its memory limit
//! and be restarted, losing what it had learnt). Once the names reach [`FIRST_SWEEP`], every
//! new name also moves a sweep cursor over [`SWEEP_STEP`] key numbers: a key nothing holds —
//! no open or pinned pool, no expert that
//! [`knows`](super::super::experts::Expert::knows) it (cached, a ghost, a history) — loses its
//! name and its number goes to a new one. The sweep is spread over the names that make it
//! needed, so no call does more than a few lookups for it; a pass over N numbers takes
//! N / [`SWEEP_STEP`] new names, so the numbers stay near `SWEEP_STEP / (SWEEP_STEP − 1)`
//! times the larger of what is held and [`FIRST_SWEEP`].
//! Experts that cannot tell (the default) keep every key. Below [`FIRST_SWEEP`] names
//! nothing changes, and a key all experts forgot is as new to them when it comes back, so a
//! sweep changes no decision, only which number a returning name gets (`visits2` breaks ties
//! between equal ranks by key number: there a decision could differ).

use super::super::sketch::java_hash;
use super::{FastMap, Follower};

/// Names interned before sweeping starts: few enough that the name table never grows (a
/// rehash of every name) past 2^17 slots, a few milliseconds in one call.
pub(super) const FIRST_SWEEP: usize = 1 << 16;

/// Key numbers the sweep cursor looks at for each new name.
pub(super) const SWEEP_STEP: usize = 4;

/// The names with a key number, the name of each number, the numbers free for new names,
/// and the sweep's cursor.
#[derive(Default)]
pub(super) struct KeyNames {
    numbers: FastMap<Box<str>, u32>,
    pub(super) name_of: Vec<Option<Box<str>>>,
    pub(super) free: Vec<u32>,
    /// Names from which the sweep runs ([`FIRST_SWEEP`], or a test's value).
    floor: usize,
    cursor: usize,
}

impl KeyNames {
    /// No names yet; sweeping from [`FIRST_SWEEP`] names on.
    pub(super) fn new() -> Self {
        Self {
            floor: FIRST_SWEEP,
            ..Self::default()
        }
    }
}

impl Follower {
    /// The key number of database `name`, given a free or a new one the first time.
    pub(super) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&key) = self.names.numbers.get(name) {
            return key;
        }
        if self.names.numbers.len() >= self.names.floor {
            self.sweep_step();
        }
        let hash = java_hash(name);
        let key = match self.names.free.pop() {
            Some(key) => {
                let k = key as usize;
                self.hashes[k] = hash;
                self.last_use[k] = 0;
                self.pinned[k] = false;
                self.offered_at[k] = 0;
                self.pool_of[k] = None;
                self.open_pools[k] = 0;
                self.names.name_of[k] = Some(name.into());
                key
            }
            None => {
                self.hashes.push(hash);
                self.last_use.push(0);
                self.pinned.push(false);
                self.offered_at.push(0);
                self.pool_of.push(None);
                self.open_pools.push(0);
                self.names.name_of.push(Some(name.into()));
                (self.hashes.len() - 1) as u32
            }
        };
        self.names.numbers.insert(name.into(), key);
        key
    }

    /// Moves the sweep cursor over [`SWEEP_STEP`] key numbers, freeing those nothing holds.
    fn sweep_step(&mut self) {
        // Until the warm-up is over the recorded requests refer to key numbers, and the
        // blend (an experiment) cannot tell what it holds: no sweep then.
        if !self.started || self.warming() || self.blend.is_some() {
            return;
        }
        let n = self.hashes.len();
        for _ in 0..SWEEP_STEP.min(n) {
            let k = self.names.cursor % n;
            self.names.cursor = (k + 1) % n;
            if self.names.name_of[k].is_none() || self.is_held(k as u32) {
                continue; // already free, or held
            }
            if let Some(name) = self.names.name_of[k].take() {
                self.names.numbers.remove(&name);
            }
            for expert in &mut self.experts {
                expert.forget(k as u32);
            }
            self.names.free.push(k as u32);
        }
    }

    /// Whether anything holds key `k`: an open (or pinned) pool, or an expert that knows it.
    fn is_held(&self, k: u32) -> bool {
        let i = k as usize;
        self.open_pools[i] > 0
            || self.pinned[i]
            || self.pool_of[i].is_some()
            || self.experts.iter().any(|e| e.knows(k))
    }

    /// Number of database names with a key number now.
    pub fn names(&self) -> usize {
        self.names.numbers.len()
    }

    /// Number of key numbers ever given (the size of the per-key state).
    pub fn key_numbers(&self) -> usize {
        self.hashes.len()
    }

    /// Sweeps from `names` names on instead of [`FIRST_SWEEP`] (for tests).
    pub fn sweep_from(&mut self, names: usize) {
        self.names.floor = names;
    }
}
