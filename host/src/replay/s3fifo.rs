//! S3-FIFO (Yang, Zhang, Qiu, Yue and Rashmi, SOSP 2023) as an expert: a small FIFO
//! queue (10% of the room) that new keys enter, a main FIFO queue (90%) with lazy
//! reinsertion, and a ghost FIFO of the keys the small queue evicted.
//!
//! Every cached key has a 2-bit use count. The small queue's oldest key moves to the main
//! queue if it was used again while there (otherwise it goes, and is remembered in the
//! ghost queue); the main queue's oldest key is reinserted with its count decremented while
//! the count is above 0, otherwise it goes. A missed key found in the ghost queue enters the
//! main queue directly. One-hit keys (scans, cold bursts) thus leave quickly, through the
//! small queue, without displacing what was reused; the paper reports it ahead of
//! W-TinyLFU, ARC and LIRS on most of 6,594 production traces.
//!
//! [`Expert::next_victim`] performs the queue moves that come before an eviction (they do
//! not change what is cached), so asking again gives the same key.
//!
//! No dependency beyond std, so that a scorer component can include this file.

use super::experts::{Expert, Lists};

const SMALL: u8 = 0;
const MAIN: u8 = 1;
const GHOST: u8 = 2;
/// Highest use count (2 bits).
const MAX_FREQ: u8 = 3;

/// S3-FIFO as a virtual cache.
#[derive(Debug, Clone)]
pub struct S3Fifo {
    lists: Lists,
    freq: Vec<u8>,
    maximum: u64,
    /// The next victim, once the moves before it were made.
    pending: Option<u32>,
}

impl Default for S3Fifo {
    fn default() -> Self {
        Self::new()
    }
}

impl S3Fifo {
    /// An empty cache (maximum 0 until [`Expert::resize`]).
    pub fn new() -> Self {
        Self {
            lists: Lists::new(3),
            freq: Vec::new(),
            maximum: 0,
            pending: None,
        }
    }

    fn small_target(&self) -> u64 {
        (self.maximum / 10).max(1)
    }

    fn len(&self) -> u64 {
        self.lists.len(SMALL) + self.lists.len(MAIN)
    }

    fn freq_mut(&mut self, key: u32) -> &mut u8 {
        let k = key as usize;
        if self.freq.len() <= k {
            self.freq.resize(k + 1, 0);
        }
        &mut self.freq[k]
    }

    /// Evicts the next victim; a key leaving the small queue is remembered as a ghost.
    fn evict(&mut self) {
        let Some(victim) = self.next_victim() else {
            return;
        };
        if self.lists.list(victim) == SMALL {
            self.lists.push_back(victim, GHOST);
            let ghost_room = self.maximum.saturating_sub(self.small_target()).max(1);
            while self.lists.len(GHOST) > ghost_room {
                match self.lists.head(GHOST) {
                    Some(old) => self.lists.unlink(old),
                    None => break,
                }
            }
        } else {
            self.lists.unlink(victim);
        }
        self.pending = None;
    }
}

impl Expert for S3Fifo {
    fn name(&self) -> &'static str {
        "s3-fifo"
    }

    fn request(&mut self, key: u32, _hash: i32) -> bool {
        let list = self.lists.list(key);
        if list == SMALL || list == MAIN {
            let f = self.freq_mut(key);
            *f = (*f + 1).min(MAX_FREQ);
            self.pending = None;
            return true;
        }
        if self.len() >= self.maximum {
            self.evict();
        }
        *self.freq_mut(key) = 0;
        self.lists
            .push_back(key, if list == GHOST { MAIN } else { SMALL });
        self.pending = None;
        false
    }

    fn contains(&self, key: u32) -> bool {
        let list = self.lists.list(key);
        list == SMALL || list == MAIN
    }

    fn next_victim(&mut self) -> Option<u32> {
        if self.pending.is_some() {
            return self.pending;
        }
        // Each pass moves a key from small to main or lowers a main key's count, so this
        // ends within 1 + |small| + 3 × |main| passes.
        loop {
            if self.lists.len(SMALL) >= self.small_target() || self.lists.len(MAIN) == 0 {
                let oldest = self.lists.head(SMALL)?;
                if self.freq.get(oldest as usize).copied().unwrap_or(0) > 0 {
                    *self.freq_mut(oldest) = 0;
                    self.lists.push_back(oldest, MAIN);
                    continue;
                }
                self.pending = Some(oldest);
            } else {
                let oldest = self.lists.head(MAIN)?;
                let f = self.freq_mut(oldest);
                if *f > 0 {
                    *f -= 1;
                    self.lists.push_back(oldest, MAIN);
                    continue;
                }
                self.pending = Some(oldest);
            }
            return self.pending;
        }
    }

    fn remove(&mut self, key: u32) {
        self.lists.unlink(key);
        self.pending = None;
    }

    fn resize(&mut self, maximum: u64) {
        self.maximum = maximum;
        while self.len() > maximum {
            self.evict();
        }
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hit_keys_leave_through_the_small_queue_and_reused_keys_stay() {
        let mut s = S3Fifo::new();
        s.resize(10);
        // Ten keys, each used twice: the small queue's oldest keys move to main when full.
        for key in 0..10 {
            assert!(!s.request(key, 0));
            assert!(s.request(key, 0));
        }
        // A scan of 100 one-hit keys.
        for key in 100..200 {
            assert!(!s.request(key, 0));
        }
        let kept = (0..10).filter(|&k| s.contains(k)).count();
        assert!(kept >= 8, "{kept} of the reused keys survived the scan");
    }

    #[test]
    fn a_key_back_from_the_ghost_queue_enters_main() {
        let mut s = S3Fifo::new();
        s.resize(10);
        for key in 0..11 {
            s.request(key, 0);
        }
        // Key 0 left the small queue unused: it is a ghost now.
        assert!(!s.contains(0));
        assert_eq!(s.lists.list(0), GHOST);
        assert!(!s.request(0, 0));
        assert_eq!(s.lists.list(0), MAIN);
    }

    #[test]
    fn asking_for_the_victim_twice_gives_the_same_key() {
        let mut s = S3Fifo::new();
        s.resize(4);
        for key in [1, 2, 1, 3, 4, 2, 1] {
            s.request(key, 0);
        }
        let first = s.next_victim();
        assert!(first.is_some());
        assert_eq!(s.next_victim(), first);
        assert!(first.is_some_and(|k| s.contains(k)));
    }
}
