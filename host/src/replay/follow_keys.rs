//! Database names to key numbers, and bounded memory: the [`Follower`] and its experts keep
//! state per key number (dense vectors), so a host that sees millions of distinct databases
//! over its life would grow them without end (a scorer component would hit its memory limit
//! and be restarted, losing what it had learnt). When the names reach [`FIRST_SWEEP`], or
//! twice what the last sweep kept if that is more, a sweep finds the keys nothing holds —
//! no open or pinned pool, no expert that
//! [`knows`](super::super::experts::Expert::knows) them (cached, a ghost, a history) —
//! forgets their names and gives their numbers to new ones. Experts that cannot tell (the default) keep
//! every key. Below [`FIRST_SWEEP`] names nothing changes, and a key all experts forgot is
//! as new to them when it comes back, so a sweep changes no decision, only which number a
//! returning name gets (`visits2` breaks ties between equal ranks by key number: there a
//! decision could differ).

use super::super::sketch::java_hash;
use super::Follower;

/// Names interned before the first sweep (a few tens of MiB of state at most).
pub(super) const FIRST_SWEEP: usize = 1 << 18;

impl Follower {
    /// The key number of database `name`, given a free or a new one the first time.
    pub(super) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&key) = self.names.get(name) {
            return key;
        }
        if self.names.len() >= self.next_sweep {
            self.sweep();
        }
        let hash = java_hash(name);
        let key = match self.free.pop() {
            Some(key) => {
                let k = key as usize;
                self.hashes[k] = hash;
                self.last_use[k] = 0;
                self.pinned[k] = false;
                self.offered_at[k] = 0;
                self.pool_of[k] = None;
                key
            }
            None => {
                self.hashes.push(hash);
                self.last_use.push(0);
                self.pinned.push(false);
                self.offered_at.push(0);
                self.pool_of.push(None);
                (self.hashes.len() - 1) as u32
            }
        };
        self.names.insert(name.to_string(), key);
        key
    }

    /// Frees the numbers of the keys nothing holds (see the module documentation); the next
    /// sweep runs when the names reach twice what this one kept (or [`FIRST_SWEEP`]).
    fn sweep(&mut self) {
        // Before the first decision the recorded requests refer to key numbers, and the
        // blend (an experiment) cannot tell what it holds: no sweep then.
        if self.started && self.blend.is_none() {
            let n = self.hashes.len();
            let mut held = vec![false; n];
            for &k in &self.free {
                held[k as usize] = true;
            }
            for &k in self.pools.values() {
                held[k as usize] = true;
            }
            for (k, h) in held.iter_mut().enumerate() {
                *h = *h
                    || self.pinned[k]
                    || self.pool_of[k].is_some()
                    || self.experts.iter().any(|e| e.knows(k as u32));
            }
            self.names.retain(|_, &mut k| held[k as usize]);
            for (k, &h) in held.iter().enumerate() {
                if !h {
                    for expert in &mut self.experts {
                        expert.forget(k as u32);
                    }
                    self.free.push(k as u32);
                }
            }
        }
        self.next_sweep = self.sweep_floor.max(2 * self.names.len());
    }

    /// Number of database names with a key number now.
    pub fn names(&self) -> usize {
        self.names.len()
    }

    /// Number of key numbers ever given (the size of the per-key state).
    pub fn key_numbers(&self) -> usize {
        self.hashes.len()
    }

    /// Sweeps from `names` names on instead of [`FIRST_SWEEP`] (for tests).
    pub fn sweep_from(&mut self, names: usize) {
        self.sweep_floor = names;
        self.next_sweep = names;
    }
}
