//! LIRS (Jiang and Zhang, SIGMETRICS 2002) as an expert of a
//! [`Follower`](super::follow::Follower): keys are ranked by their *inter-reference recency*
//! (how many distinct keys were used between their last two uses), not by their recency.
//!
//! Keys with a short reuse distance are *LIR* (99% of the capacity) and stay; the others are
//! *HIR*: resident ones (1%, at least 1) wait in a FIFO queue `Q` and are evicted from its
//! front. The recency stack `S` holds the LIR keys and the HIR keys used since the oldest LIR
//! key, resident or not (non-resident ones are *ghosts*): a HIR key used again while still in
//! `S` has a shorter reuse distance than the oldest LIR key, so it becomes LIR and that one
//! becomes HIR. Ghosts are bounded (2 × capacity, the oldest forgotten first).
//!
//! No dependency beyond std, so that a scorer component can include this file.

use super::experts::{Expert, Lists, NONE};

/// Status of a key.
const LIR: u8 = 0;
const HIR: u8 = 1;
const GHOST: u8 = 2;
const UNKNOWN: u8 = 3;

/// Share of the capacity for resident HIR keys (the LIRS paper's 1%).
const HIR_SHARE: f64 = 0.01;
/// Most ghosts kept, per unit of capacity.
const GHOSTS_PER_SLOT: u64 = 2;

/// LIRS as a virtual cache (see the module documentation).
#[derive(Debug, Clone)]
pub struct Lirs {
    /// The recency stack `S` (head = bottom, the least recent).
    stack: Lists,
    /// The resident HIR keys `Q` (head = the next victim).
    queue: Lists,
    /// Ghosts in the order they became ghosts (head = the first forgotten).
    ghosts: Lists,
    status: Vec<u8>,
    maximum: u64,
    lir_maximum: u64,
    lir_count: u64,
}

impl Default for Lirs {
    fn default() -> Self {
        Self::new()
    }
}

impl Lirs {
    /// An empty cache (maximum 0 until [`Expert::resize`]).
    pub fn new() -> Self {
        Self {
            stack: Lists::new(1),
            queue: Lists::new(1),
            ghosts: Lists::new(1),
            status: Vec::new(),
            maximum: 0,
            lir_maximum: 0,
            lir_count: 0,
        }
    }

    fn status(&self, key: u32) -> u8 {
        self.status.get(key as usize).copied().unwrap_or(UNKNOWN)
    }

    fn set(&mut self, key: u32, status: u8) {
        if self.status.len() <= key as usize {
            self.status.resize(key as usize + 1, UNKNOWN);
        }
        self.status[key as usize] = status;
    }

    fn resident(&self) -> u64 {
        self.lir_count + self.queue.len(0)
    }

    fn in_stack(&self, key: u32) -> bool {
        self.stack.list(key) == 0
    }

    /// Removes HIR keys from the bottom of the stack until a LIR key is there.
    fn prune(&mut self) {
        while let Some(bottom) = self.stack.head(0) {
            match self.status(bottom) {
                LIR => break,
                GHOST => {
                    self.ghosts.unlink(bottom);
                    self.set(bottom, UNKNOWN);
                }
                _ => {}
            }
            self.stack.unlink(bottom);
        }
    }

    /// Makes `key` (in no structure, or a ghost) a LIR key at the top of the stack.
    fn make_lir(&mut self, key: u32) {
        self.ghosts.unlink(key);
        self.queue.unlink(key);
        self.set(key, LIR);
        self.lir_count += 1;
        self.stack.push_back(key, 0);
        self.demote_excess_lirs();
    }

    /// Moves the LIR blocks at the stack's bottom to the resident-HIR queue until at most
    /// `lir_maximum` remain.
    fn demote_excess_lirs(&mut self) {
        while self.lir_count > self.lir_maximum {
            let Some(bottom) = self.stack.head(0) else {
                break;
            };
            self.stack.unlink(bottom);
            self.set(bottom, HIR);
            self.lir_count -= 1;
            self.queue.push_back(bottom, 0);
            self.prune();
        }
    }

    /// Evicts the next victim ([`Expert::next_victim`]).
    fn evict(&mut self) {
        if let Some(victim) = self.queue.head(0) {
            self.queue.unlink(victim);
            if self.in_stack(victim) {
                self.set(victim, GHOST);
                self.ghosts.push_back(victim, 0);
                while self.ghosts.len(0) > GHOSTS_PER_SLOT * self.maximum.max(1) {
                    let Some(oldest) = self.ghosts.head(0) else {
                        break;
                    };
                    self.ghosts.unlink(oldest);
                    self.stack.unlink(oldest);
                    self.set(oldest, UNKNOWN);
                }
                self.prune();
            } else {
                self.set(victim, UNKNOWN);
            }
        } else if let Some(bottom) = self.stack.head(0) {
            self.stack.unlink(bottom);
            self.set(bottom, UNKNOWN);
            self.lir_count -= 1;
            self.prune();
        }
    }
}

impl Expert for Lirs {
    fn name(&self) -> &'static str {
        "lirs"
    }

    fn request(&mut self, key: u32, _hash: i32) -> bool {
        match self.status(key) {
            LIR => {
                let bottom = self.stack.head(0) == Some(key);
                self.stack.push_back(key, 0);
                if bottom {
                    self.prune();
                }
                true
            }
            HIR => {
                if self.in_stack(key) {
                    self.make_lir(key);
                } else {
                    self.stack.push_back(key, 0);
                    self.queue.push_back(key, 0);
                }
                true
            }
            status => {
                if self.resident() >= self.maximum {
                    self.evict();
                }
                // A ghost may have been forgotten by the eviction.
                let ghost = status == GHOST && self.status(key) == GHOST;
                if ghost || self.lir_count < self.lir_maximum {
                    self.make_lir(key);
                } else {
                    self.set(key, HIR);
                    self.stack.push_back(key, 0);
                    self.queue.push_back(key, 0);
                }
                false
            }
        }
    }

    fn contains(&self, key: u32) -> bool {
        matches!(self.status(key), LIR | HIR)
    }

    fn next_victim(&mut self) -> Option<u32> {
        self.queue.head(0).or_else(|| self.stack.head(0))
    }

    fn remove(&mut self, key: u32) {
        match self.status(key) {
            LIR => {
                self.stack.unlink(key);
                self.lir_count -= 1;
                self.prune();
            }
            HIR => {
                self.queue.unlink(key);
                self.stack.unlink(key);
                self.prune();
            }
            _ => return,
        }
        self.set(key, UNKNOWN);
    }

    fn resize(&mut self, maximum: u64) {
        self.maximum = maximum;
        let hir = ((maximum as f64 * HIR_SHARE) as u64).max(1);
        self.lir_maximum = maximum.saturating_sub(hir);
        while self.resident() > maximum {
            self.evict();
        }
        self.demote_excess_lirs();
    }

    fn knows(&self, key: u32) -> bool {
        self.status(key) != UNKNOWN
            || self.stack.list(key) != NONE
            || self.queue.list(key) != NONE
            || self.ghosts.list(key) != NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_slightly_larger_than_the_cache_keeps_most_keys() {
        // A loop over 11 keys with 10 slots: LRU never hits; LIRS keeps 9 LIR keys fixed
        // and hits them on every round after the first ones.
        let mut lirs = Lirs::new();
        lirs.resize(10);
        let mut hits = 0;
        for _ in 0..100 {
            for key in 0..11 {
                hits += u32::from(lirs.request(key, 0));
            }
        }
        assert!(hits >= 9 * 95, "{hits} hits");
        assert!(lirs.resident() <= 10);
    }

    #[test]
    fn the_victim_is_the_key_a_miss_evicts() {
        let mut lirs = Lirs::new();
        lirs.resize(4);
        for key in [1, 2, 3, 1, 4, 5, 2, 6, 1, 7, 3] {
            let victim = lirs.next_victim();
            let full = lirs.resident() >= 4;
            let hit = lirs.request(key, 0);
            if !hit && full {
                let victim = victim.expect("a full cache has a victim");
                assert!(!lirs.contains(victim), "{victim} still cached");
            }
            assert!(lirs.contains(key));
        }
    }
}
