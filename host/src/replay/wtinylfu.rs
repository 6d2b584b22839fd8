//! W-TinyLFU with Caffeine's adaptive window (hill climbing), on dense integer keys.
//!
//! The structure is Caffeine's `BoundedLocalCache` (version 3) for entries of weight 1:
//!
//! - an admission **window** (LRU), initially 1% of the maximum, where new keys enter;
//! - a **main** region, SLRU: **probation** and **protected** (80% of the main region);
//!   a hit in probation promotes the key to protected, overflow of protected is demoted to
//!   the probation's MRU end;
//! - eviction (`evictFromMain`): the window's overflow moves to the probation's MRU end and
//!   becomes the *candidate*; it competes with the probation's LRU *victim* by TinyLFU
//!   frequency ([`FrequencySketch`]): the candidate wins only with a strictly higher
//!   frequency (or, at frequency ≥ 6, with probability 1/128 against hash flooding);
//! - **hill climbing** (`climb`): every `10 × maximum` requests (the sketch's sample size),
//!   the hit ratio of the sample is compared with the previous one; the window grows or
//!   shrinks by a step (6.25% of the maximum after a change of 5 points or more, otherwise
//!   the previous step × 0.98, reversing direction when the hit ratio fell).
//!
//! **One deviation, forced by the connection manager** (every requested database is opened;
//! a policy only chooses which open pool to close, before the new one opens): the eviction is
//! decided *before* the new key is inserted, by [`choose_victim`](WTinyLfu::choose_victim),
//! which first moves the window's overflow as the insertion would, then runs Caffeine's
//! candidate/victim selection. The new key's own sketch increment therefore comes after the
//! decision instead of before it (it changes the decision only through a counter shared by
//! hash collision), and a new key can never be the candidate (Caffeine's window has at least
//! one entry, so the candidate is the new key only when the window holds nothing else; here
//! the window's LRU among the other keys, or the victim, goes instead).
//!
//! No dependency beyond `core` and `alloc` types of std, so that a scorer component can
//! include this file and make exactly the reference policy's decisions.

use super::sketch::FrequencySketch;

/// Share of the maximum given to the main region at start (the window gets the rest).
const PERCENT_MAIN: f64 = 0.99;
/// Share of the main region given to its protected segment.
const PERCENT_MAIN_PROTECTED: f64 = 0.80;
/// A change of the sample hit ratio at least this large restarts the climber's step.
const HILL_CLIMBER_RESTART_THRESHOLD: f64 = 0.05;
/// The restarted step, as a share of the maximum.
const HILL_CLIMBER_STEP_PERCENT: f64 = 0.0625;
/// Decay of the step between samples.
const HILL_CLIMBER_STEP_DECAY_RATE: f64 = 0.98;
/// At most this many entries move between regions per adjustment.
const QUEUE_TRANSFER_THRESHOLD: usize = 1000;
/// Candidates this frequent are admitted at random (1 in 128) when they lose.
const ADMIT_HASHDOS_THRESHOLD: u32 = 6;

const NIL: u32 = u32::MAX;

/// Which region a key is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// Not in the cache.
    Absent,
    /// The admission window.
    Window,
    /// Main region, probation segment.
    Probation,
    /// Main region, protected segment.
    Protected,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    prev: u32,
    next: u32,
    region: Region,
    hash: i32,
}

impl Default for Node {
    fn default() -> Self {
        Self {
            prev: NIL,
            next: NIL,
            region: Region::Absent,
            hash: 0,
        }
    }
}

/// An LRU list threaded through the nodes: `head` is the least recently used.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: u64,
}

impl Default for List {
    fn default() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

fn first(list: &List) -> Option<u32> {
    (list.head != NIL).then_some(list.head)
}

fn last(list: &List) -> Option<u32> {
    (list.tail != NIL).then_some(list.tail)
}

/// The policy's state (see the module documentation). Keys are small integers (indices);
/// each key's 32-bit hash, given at insertion, feeds the sketch.
#[derive(Debug, Clone)]
pub struct WTinyLfu {
    nodes: Vec<Node>,
    window: List,
    probation: List,
    protected: List,
    maximum: u64,
    window_maximum: u64,
    protected_maximum: u64,
    sketch: FrequencySketch,
    hits_in_sample: u64,
    misses_in_sample: u64,
    previous_sample_hit_rate: f64,
    step_size: f64,
    adjustment: i64,
    rng: u64,
    /// The victim chosen by the last [`WTinyLfu::choose_victim`], until the cache changes
    /// (so asking twice gives the same answer and draws no second random number).
    pending: Option<u32>,
}

impl WTinyLfu {
    /// An empty cache for `maximum` keys (Caffeine's `setMaximumSize`).
    pub fn new(maximum: u64) -> Self {
        let mut cache = Self {
            nodes: Vec::new(),
            window: List::default(),
            probation: List::default(),
            protected: List::default(),
            maximum: 0,
            window_maximum: 0,
            protected_maximum: 0,
            sketch: FrequencySketch::new(),
            hits_in_sample: 0,
            misses_in_sample: 0,
            previous_sample_hit_rate: 0.0,
            step_size: 0.0,
            adjustment: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            pending: None,
        };
        cache.set_maximum(maximum);
        cache
    }

    /// Caffeine's `setMaximumSize`: the window back to 1%, protected 80% of the rest, the
    /// climber's step back to its start.
    pub fn set_maximum(&mut self, maximum: u64) {
        let window = maximum - (PERCENT_MAIN * maximum as f64) as u64;
        self.maximum = maximum;
        self.window_maximum = window;
        self.protected_maximum = (PERCENT_MAIN_PROTECTED * (maximum - window) as f64) as u64;
        self.hits_in_sample = 0;
        self.misses_in_sample = 0;
        self.step_size = -HILL_CLIMBER_STEP_PERCENT * maximum as f64;
        if self.sketch.is_initialized() && self.len() >= maximum >> 1 {
            self.sketch.ensure_capacity(maximum);
        }
    }

    /// Changes the maximum size keeping the adapted window (clamped to the new maximum), as
    /// when pinned pools take or give back room; evicts down to the new maximum. The first
    /// call on a cache of maximum 0 is [`set_maximum`](Self::set_maximum).
    pub fn resize(&mut self, maximum: u64) {
        if self.maximum == 0 {
            self.set_maximum(maximum);
            return;
        }
        self.maximum = maximum;
        self.window_maximum = self.window_maximum.clamp(maximum.min(1), maximum);
        self.protected_maximum =
            (PERCENT_MAIN_PROTECTED * (maximum - self.window_maximum) as f64) as u64;
        if self.len() >= maximum >> 1 {
            self.sketch.ensure_capacity(maximum);
        }
        self.pending = None;
        while self.len() > maximum {
            match self.select(0) {
                Some(key) => self.remove(key),
                None => break,
            }
        }
        self.demote_from_main_protected();
    }

    /// The maximum size.
    pub fn maximum(&self) -> u64 {
        self.maximum
    }

    /// The window's current maximum size (what the climber adapts).
    pub fn window_maximum(&self) -> u64 {
        self.window_maximum
    }

    /// Keys in the cache.
    pub fn len(&self) -> u64 {
        self.window.len + self.probation.len + self.protected.len
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where `key` is.
    pub fn region(&self, key: u32) -> Region {
        self.nodes
            .get(key as usize)
            .map_or(Region::Absent, |n| n.region)
    }

    /// Whether `key` is in the cache.
    pub fn contains(&self, key: u32) -> bool {
        self.region(key) != Region::Absent
    }

    /// The sketch's estimate for `key` (0 for a key never inserted).
    pub fn frequency(&self, key: u32) -> u32 {
        self.nodes
            .get(key as usize)
            .map_or(0, |n| self.sketch.frequency(n.hash))
    }

    fn list(&mut self, region: Region) -> &mut List {
        match region {
            Region::Window => &mut self.window,
            Region::Probation => &mut self.probation,
            Region::Protected => &mut self.protected,
            Region::Absent => unreachable!("no list for absent keys"),
        }
    }

    fn unlink(&mut self, key: u32) {
        let Node {
            prev, next, region, ..
        } = self.nodes[key as usize];
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        } else {
            self.list(region).head = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        } else {
            self.list(region).tail = prev;
        }
        self.list(region).len -= 1;
        let node = &mut self.nodes[key as usize];
        node.prev = NIL;
        node.next = NIL;
        node.region = Region::Absent;
    }

    /// Appends `key` at the MRU end of `region`.
    fn push_back(&mut self, key: u32, region: Region) {
        let tail = self.list(region).tail;
        {
            let node = &mut self.nodes[key as usize];
            node.prev = tail;
            node.next = NIL;
            node.region = region;
        }
        if tail != NIL {
            self.nodes[tail as usize].next = key;
        } else {
            self.list(region).head = key;
        }
        let list = self.list(region);
        list.tail = key;
        list.len += 1;
    }

    fn move_to(&mut self, key: u32, region: Region) {
        self.unlink(key);
        self.push_back(key, region);
    }

    /// A hit on `key` (in the cache): Caffeine's `onAccess`, then its maintenance.
    pub fn access(&mut self, key: u32) {
        self.pending = None;
        let node = self.nodes[key as usize];
        self.sketch.increment(node.hash);
        match node.region {
            Region::Window => self.move_to(key, Region::Window),
            Region::Protected => self.move_to(key, Region::Protected),
            Region::Probation => {
                if self.protected_maximum == 0 {
                    self.move_to(key, Region::Probation);
                } else {
                    self.move_to(key, Region::Protected);
                }
            }
            Region::Absent => return,
        }
        self.hits_in_sample += 1;
        self.evict_from_window(0);
        self.climb();
    }

    /// A miss: `key` (not in the cache, room already made) enters the window; Caffeine's
    /// `AddTask`, then its maintenance.
    pub fn insert(&mut self, key: u32, hash: i32) {
        self.pending = None;
        if self.contains(key) {
            self.access(key);
            return;
        }
        if self.nodes.len() <= key as usize {
            self.nodes.resize(key as usize + 1, Node::default());
        }
        self.nodes[key as usize].hash = hash;
        self.push_back(key, Region::Window);
        if self.len() >= self.maximum >> 1 {
            self.sketch.ensure_capacity(self.maximum);
        }
        self.sketch.increment(hash);
        self.misses_in_sample += 1;
        self.evict_from_window(0);
        self.climb();
    }

    /// Removes `key` (evicted, or closed for another reason).
    pub fn remove(&mut self, key: u32) {
        self.pending = None;
        if self.contains(key) {
            self.unlink(key);
        }
    }

    /// Moves the window's LRU entries to the probation's MRU end while the window (plus
    /// `incoming` keys about to enter it) exceeds its maximum (`evictFromWindow`).
    fn evict_from_window(&mut self, incoming: u64) {
        while self.window.len + incoming > self.window_maximum {
            let Some(key) = first(&self.window) else {
                break;
            };
            self.move_to(key, Region::Probation);
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic, so replays are reproducible.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// TinyLFU admission (`admit`): whether `candidate` beats `victim`.
    fn admit(&mut self, candidate: u32, victim: u32) -> bool {
        let victim_freq = self.frequency(victim);
        let candidate_freq = self.frequency(candidate);
        if candidate_freq > victim_freq {
            true
        } else if candidate_freq >= ADMIT_HASHDOS_THRESHOLD {
            (self.next_random() >> 32) & 127 == 0
        } else {
            false
        }
    }

    /// The key to evict to make room for one more (see the module documentation), after
    /// moving the window's overflow to probation as the insertion would. `None` when the
    /// cache is empty. The caller removes the key with [`remove`](Self::remove).
    pub fn choose_victim(&mut self) -> Option<u32> {
        if let Some(key) = self.pending {
            return Some(key);
        }
        self.pending = self.select(1);
        self.pending
    }

    /// Moves the window's overflow (counting `incoming` keys about to enter), then picks the
    /// loser of `evictFromMain` for one entry.
    fn select(&mut self, incoming: u64) -> Option<u32> {
        self.evict_from_window(incoming);
        // evictFromMain, for one entry.
        let mut candidate = last(&self.probation);
        let mut victim = first(&self.probation);
        if candidate.is_none() {
            candidate = first(&self.window);
        }
        if victim.is_none() {
            victim = first(&self.protected).or_else(|| first(&self.window));
        }
        match (candidate, victim) {
            (None, None) => None,
            (Some(c), None) => Some(c),
            (None, Some(v)) => Some(v),
            (Some(c), Some(v)) if c == v => Some(c),
            (Some(c), Some(v)) => Some(if self.admit(c, v) { v } else { c }),
        }
    }

    /// Caffeine's `climb`: adapt the window to the sample hit ratio.
    fn climb(&mut self) {
        self.determine_adjustment();
        self.demote_from_main_protected();
        if self.adjustment > 0 {
            self.increase_window();
        } else if self.adjustment < 0 {
            self.decrease_window();
        }
    }

    fn determine_adjustment(&mut self) {
        if !self.sketch.is_initialized() {
            self.previous_sample_hit_rate = 0.0;
            self.misses_in_sample = 0;
            self.hits_in_sample = 0;
            return;
        }
        let requests = self.hits_in_sample + self.misses_in_sample;
        if requests < u64::from(self.sketch.sample_size()) {
            return;
        }
        let hit_rate = self.hits_in_sample as f64 / requests as f64;
        let change = hit_rate - self.previous_sample_hit_rate;
        let amount = if change >= 0.0 {
            self.step_size
        } else {
            -self.step_size
        };
        let next_step = if change.abs() >= HILL_CLIMBER_RESTART_THRESHOLD {
            let sign = if amount >= 0.0 { 1.0 } else { -1.0 };
            HILL_CLIMBER_STEP_PERCENT * self.maximum as f64 * sign
        } else {
            HILL_CLIMBER_STEP_DECAY_RATE * amount
        };
        self.previous_sample_hit_rate = hit_rate;
        self.adjustment = amount as i64;
        self.step_size = next_step;
        self.misses_in_sample = 0;
        self.hits_in_sample = 0;
    }

    fn demote_from_main_protected(&mut self) {
        for _ in 0..QUEUE_TRANSFER_THRESHOLD {
            if self.protected.len <= self.protected_maximum {
                break;
            }
            let Some(key) = first(&self.protected) else {
                break;
            };
            self.move_to(key, Region::Probation);
        }
    }

    fn increase_window(&mut self) {
        if self.protected_maximum == 0 {
            return;
        }
        let mut quota = (self.adjustment as u64).min(self.protected_maximum);
        self.protected_maximum -= quota;
        self.window_maximum += quota;
        self.demote_from_main_protected();
        for _ in 0..QUEUE_TRANSFER_THRESHOLD {
            if quota == 0 {
                break;
            }
            let Some(key) = first(&self.probation).or_else(|| first(&self.protected)) else {
                break;
            };
            quota -= 1;
            self.move_to(key, Region::Window);
        }
        self.protected_maximum += quota;
        self.window_maximum -= quota;
        self.adjustment = quota as i64;
    }

    fn decrease_window(&mut self) {
        if self.window_maximum <= 1 {
            return;
        }
        let mut quota = self
            .adjustment
            .unsigned_abs()
            .min(self.window_maximum.saturating_sub(1));
        self.protected_maximum += quota;
        self.window_maximum -= quota;
        for _ in 0..QUEUE_TRANSFER_THRESHOLD {
            if quota == 0 {
                break;
            }
            let Some(key) = first(&self.window) else {
                break;
            };
            quota -= 1;
            self.move_to(key, Region::Probation);
        }
        self.protected_maximum -= quota;
        self.window_maximum += quota;
        self.adjustment = -(quota as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_overflow_competes_with_the_probation_victim() {
        // Maximum 100: window 1, protected 79.
        let mut c = WTinyLfu::new(100);
        assert_eq!(c.window_maximum(), 1);
        for k in 0..100 {
            c.insert(k, k as i32);
        }
        // Key 99 is in the window, 0..=98 in probation (nothing was hit).
        assert_eq!(c.region(99), Region::Window);
        assert_eq!(c.region(0), Region::Probation);
        // Make key 99 more frequent than key 0: 99 is the candidate, 0 the victim; 0 goes.
        c.access(99);
        assert_eq!(c.choose_victim(), Some(0));
        c.remove(0);
        c.insert(100, 100);
        // Now 100 is in the window and 99 at probation's MRU end; a hit on 1 promotes it.
        assert_eq!(c.region(99), Region::Probation);
        c.access(1);
        assert_eq!(c.region(1), Region::Protected);
        // Keys 0..=48 entered before the sketch started counting (at half the maximum):
        // candidate 100 (frequency 1) beats victim 2 (frequency 0).
        assert_eq!(c.choose_victim(), Some(2));
        c.remove(2);
        // A key sharing key 3's hash ties with it: on a tie the candidate loses.
        c.insert(101, 3);
        assert_eq!(c.frequency(101), c.frequency(3));
        assert_eq!(c.choose_victim(), Some(101));
        assert_eq!(c.len(), 100);
    }
}
