//! Cache policies simulated on the request stream ("experts" of a
//! [`Follower`](super::follow::Follower)): the [`Expert`] trait, LRU ([`Lru`]) and ARC
//! ([`Arc`]). W-TinyLFU ([`WTinyLfu`]) implements it here too.
//!
//! No dependency beyond std, so that a scorer component can include this file.

use super::wtinylfu::WTinyLfu;

/// A cache policy simulated on the request stream.
pub trait Expert {
    /// A short name.
    fn name(&self) -> &'static str;
    /// A request for `key` (hash `hash`): a hit, or a miss that evicts if the cache is full
    /// and inserts. Returns whether it was a hit.
    fn request(&mut self, key: u32, hash: i32) -> bool;
    /// Whether `key` is cached.
    fn contains(&self, key: u32) -> bool;
    /// The key the next miss would evict (asking again without a change gives the same key).
    fn next_victim(&mut self) -> Option<u32>;
    /// Drops `key` (it became unevictable).
    fn remove(&mut self, key: u32);
    /// Sets the maximum size, evicting down to it.
    fn resize(&mut self, maximum: u64);
    /// Whether the expert keeps anything about `key` (cached, a ghost, a history). When it
    /// does not, the [`Follower`](super::follow::Follower) may give `key`'s number to another
    /// database name; the default, `true`, never lets it.
    fn knows(&self, _key: u32) -> bool {
        true
    }
    /// `key`, which the expert does not know, will name another database from now on: clear
    /// what is left of it (nothing, by default).
    fn forget(&mut self, _key: u32) {}
}

impl Expert for WTinyLfu {
    fn name(&self) -> &'static str {
        "w-tinylfu"
    }

    fn request(&mut self, key: u32, hash: i32) -> bool {
        if self.contains(key) {
            self.access(key);
            return true;
        }
        if self.len() >= self.maximum() {
            if let Some(victim) = self.choose_victim() {
                WTinyLfu::remove(self, victim);
            }
        }
        self.insert(key, hash);
        false
    }

    fn contains(&self, key: u32) -> bool {
        WTinyLfu::contains(self, key)
    }

    fn next_victim(&mut self) -> Option<u32> {
        self.choose_victim()
    }

    fn remove(&mut self, key: u32) {
        WTinyLfu::remove(self, key);
    }

    fn resize(&mut self, maximum: u64) {
        WTinyLfu::resize(self, maximum);
    }

    fn knows(&self, key: u32) -> bool {
        // The frequency sketch is keyed by the name's hash, not by the number.
        WTinyLfu::contains(self, key)
    }
}

const NIL: u32 = u32::MAX;
/// List number of keys in no list.
pub(super) const NONE: u8 = u8::MAX;

/// Several LRU lists threaded through per-key links; each key is in at most one list.
/// `head` is the least recently used end.
#[derive(Debug, Clone)]
pub(super) struct Lists {
    links: Vec<(u32, u32)>,
    list_of: Vec<u8>,
    heads: Vec<u32>,
    tails: Vec<u32>,
    lens: Vec<u64>,
}

impl Lists {
    pub(super) fn new(n: usize) -> Self {
        Self {
            links: Vec::new(),
            list_of: Vec::new(),
            heads: vec![NIL; n],
            tails: vec![NIL; n],
            lens: vec![0; n],
        }
    }

    pub(super) fn list(&self, key: u32) -> u8 {
        self.list_of.get(key as usize).copied().unwrap_or(NONE)
    }

    pub(super) fn len(&self, list: u8) -> u64 {
        self.lens[list as usize]
    }

    pub(super) fn head(&self, list: u8) -> Option<u32> {
        let h = self.heads[list as usize];
        (h != NIL).then_some(h)
    }

    pub(super) fn unlink(&mut self, key: u32) {
        let list = self.list(key);
        if list == NONE {
            return;
        }
        let l = list as usize;
        let (prev, next) = self.links[key as usize];
        if prev != NIL {
            self.links[prev as usize].1 = next;
        } else {
            self.heads[l] = next;
        }
        if next != NIL {
            self.links[next as usize].0 = prev;
        } else {
            self.tails[l] = prev;
        }
        self.lens[l] -= 1;
        self.list_of[key as usize] = NONE;
    }

    /// Moves `key` to the most recently used end of `list`.
    pub(super) fn push_back(&mut self, key: u32, list: u8) {
        self.unlink(key);
        if self.links.len() <= key as usize {
            self.links.resize(key as usize + 1, (NIL, NIL));
            self.list_of.resize(key as usize + 1, NONE);
        }
        let l = list as usize;
        let tail = self.tails[l];
        self.links[key as usize] = (tail, NIL);
        if tail != NIL {
            self.links[tail as usize].1 = key;
        } else {
            self.heads[l] = key;
        }
        self.tails[l] = key;
        self.lens[l] += 1;
        self.list_of[key as usize] = list;
    }
}

/// Least recently used, as a virtual cache.
#[derive(Debug, Clone)]
pub struct Lru {
    lists: Lists,
    maximum: u64,
}

impl Default for Lru {
    fn default() -> Self {
        Self::new()
    }
}

impl Lru {
    /// An empty LRU cache (maximum 0 until [`Expert::resize`]).
    pub fn new() -> Self {
        Self {
            lists: Lists::new(1),
            maximum: 0,
        }
    }
}

impl Lru {
    /// Number of cached keys.
    pub fn len(&self) -> u64 {
        self.lists.len(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `n` of the most recently used keys, newest first.
    pub fn newest(&self, n: usize, out: &mut Vec<u32>) {
        let mut at = self.lists.tails[0];
        let start = out.len();
        while at != NIL && out.len() < start + n {
            out.push(at);
            at = self.lists.links[at as usize].0;
        }
    }

    /// Up to `n` of the least recently used keys, oldest first.
    pub fn oldest(&self, n: usize, out: &mut Vec<u32>) {
        let mut at = self.lists.heads[0];
        while at != NIL && out.len() < n {
            out.push(at);
            at = self.lists.links[at as usize].1;
        }
    }
}

impl Expert for Lru {
    fn name(&self) -> &'static str {
        "lru"
    }

    fn request(&mut self, key: u32, _hash: i32) -> bool {
        let hit = self.contains(key);
        if !hit && self.lists.len(0) >= self.maximum {
            if let Some(victim) = self.lists.head(0) {
                self.lists.unlink(victim);
            }
        }
        self.lists.push_back(key, 0);
        hit
    }

    fn contains(&self, key: u32) -> bool {
        self.lists.list(key) == 0
    }

    fn next_victim(&mut self) -> Option<u32> {
        self.lists.head(0)
    }

    fn remove(&mut self, key: u32) {
        self.lists.unlink(key);
    }

    fn resize(&mut self, maximum: u64) {
        self.maximum = maximum;
        while self.lists.len(0) > maximum {
            match self.lists.head(0) {
                Some(victim) => self.lists.unlink(victim),
                None => break,
            }
        }
    }

    fn knows(&self, key: u32) -> bool {
        self.lists.list(key) != NONE
    }
}

const T1: u8 = 0;
const T2: u8 = 1;
const B1: u8 = 2;
const B2: u8 = 3;

/// ARC (Megiddo and Modha, FAST 2003): recency (T1) and frequency (T2) lists with ghost
/// lists of their evicted keys (B1, B2) steering the target size `p` of T1.
///
/// The connection manager decides before it knows the next key, so
/// [`next_victim`](Expert::next_victim) assumes the next key is not in B2 (REPLACE's only
/// dependence on it, for `|T1| = p`).
#[derive(Debug, Clone)]
pub struct Arc {
    lists: Lists,
    maximum: u64,
    p: f64,
}

impl Default for Arc {
    fn default() -> Self {
        Self::new()
    }
}

impl Arc {
    /// An empty ARC cache (maximum 0 until [`Expert::resize`]).
    pub fn new() -> Self {
        Self {
            lists: Lists::new(4),
            maximum: 0,
            p: 0.0,
        }
    }

    fn cached(&self) -> u64 {
        self.lists.len(T1) + self.lists.len(T2)
    }

    /// REPLACE: demotes T1's or T2's LRU key to its ghost list.
    fn replace(&mut self, in_b2: bool) {
        let t1 = self.lists.len(T1) as f64;
        let from_t1 = t1 >= 1.0 && (t1 > self.p || (in_b2 && t1 == self.p));
        let from = if from_t1 { T1 } else { T2 };
        if let Some(key) = self
            .lists
            .head(from)
            .or_else(|| self.lists.head(T1 + T2 - from))
        {
            let to = if self.lists.list(key) == T1 { B1 } else { B2 };
            self.lists.push_back(key, to);
        }
    }
}

impl Expert for Arc {
    fn name(&self) -> &'static str {
        "arc"
    }

    fn request(&mut self, key: u32, _hash: i32) -> bool {
        let c = self.maximum as f64;
        let full = self.cached() >= self.maximum;
        match self.lists.list(key) {
            T1 | T2 => {
                self.lists.push_back(key, T2);
                return true;
            }
            B1 => {
                let (b1, b2) = (self.lists.len(B1) as f64, self.lists.len(B2) as f64);
                self.p = (self.p + (b2 / b1).max(1.0)).min(c);
                if full {
                    self.replace(false);
                }
                self.lists.push_back(key, T2);
            }
            B2 => {
                let (b1, b2) = (self.lists.len(B1) as f64, self.lists.len(B2) as f64);
                self.p = (self.p - (b1 / b2).max(1.0)).max(0.0);
                if full {
                    self.replace(true);
                }
                self.lists.push_back(key, T2);
            }
            _ => {
                let l1 = self.lists.len(T1) + self.lists.len(B1);
                let total = l1 + self.lists.len(T2) + self.lists.len(B2);
                if l1 >= self.maximum {
                    if self.lists.len(T1) < self.maximum {
                        if let Some(g) = self.lists.head(B1) {
                            self.lists.unlink(g);
                        }
                        if full {
                            self.replace(false);
                        }
                    } else if let Some(v) = self.lists.head(T1) {
                        self.lists.unlink(v);
                    }
                } else if total >= self.maximum {
                    if total >= 2 * self.maximum {
                        if let Some(g) = self.lists.head(B2) {
                            self.lists.unlink(g);
                        }
                    }
                    if full {
                        self.replace(false);
                    }
                }
                self.lists.push_back(key, T1);
            }
        }
        false
    }

    fn contains(&self, key: u32) -> bool {
        matches!(self.lists.list(key), T1 | T2)
    }

    fn next_victim(&mut self) -> Option<u32> {
        let t1 = self.lists.len(T1);
        if t1 >= self.maximum {
            return self.lists.head(T1);
        }
        if t1 >= 1 && t1 as f64 > self.p {
            self.lists.head(T1)
        } else {
            self.lists.head(T2).or_else(|| self.lists.head(T1))
        }
    }

    fn remove(&mut self, key: u32) {
        self.lists.unlink(key);
    }

    fn resize(&mut self, maximum: u64) {
        self.maximum = maximum;
        self.p = self.p.min(maximum as f64);
        while self.cached() > maximum {
            self.replace(false);
        }
        while self.lists.len(B1) + self.lists.len(T1) > maximum {
            match self.lists.head(B1) {
                Some(g) => self.lists.unlink(g),
                None => break,
            }
        }
        while self.cached() + self.lists.len(B1) + self.lists.len(B2) > 2 * maximum {
            match self.lists.head(B2).or_else(|| self.lists.head(B1)) {
                Some(g) => self.lists.unlink(g),
                None => break,
            }
        }
    }

    fn knows(&self, key: u32) -> bool {
        // Cached (T1, T2) or a ghost (B1, B2).
        self.lists.list(key) != NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arc_keeps_the_frequent_key_through_a_scan() {
        let mut arc = Arc::new();
        arc.resize(3);
        // x is used twice (T2); a scan of cold keys goes through T1 only.
        assert!(!arc.request(100, 0));
        assert!(arc.request(100, 0));
        for k in 0..20 {
            arc.request(k, 0);
        }
        assert!(arc.contains(100));
        let mut lru = Lru::new();
        lru.resize(3);
        lru.request(100, 0);
        lru.request(100, 0);
        for k in 0..20 {
            lru.request(k, 0);
        }
        assert!(!lru.contains(100));
    }
}
