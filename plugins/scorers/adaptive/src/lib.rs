//! `scorer-adaptive`: a frequency-aware eviction scorer aiming at the best pool hit ratio.
//!
//! It is W-TinyLFU with an adaptive window (the design of Caffeine's cache), driven by the
//! host's pool events, with three changes that the replay trace (docs/EVICTION.md) rewarded:
//!
//! - frequency means *visits*, not operations: each database has a visit count decaying
//!   exponentially (half-life `60 × capacity` requests; kept for closed databases too, keyed by
//!   name, so a reopened database keeps its history). It is fed by `opened` (a miss) and
//!   `accessed` (a hit) events; a use within the *visit span* of the previous one is part of
//!   the same visit (a session's operations) and is not counted again. The visit span is 8
//!   times the median reuse gap observed in the events. (Exact counts instead of a count-min
//!   sketch: the number of databases is modest, and a decaying count ages smoothly instead of
//!   halving in steps.)
//! - open pools sit in three LRU lists: a small *window* that every newly opened pool enters,
//!   and a main segmented LRU (*probation*, *protected*: a pool used again while in probation
//!   is promoted to protected, protected overflow is demoted back to probation);
//! - at each eviction decision, when the window is full, its LRU pool (the candidate) is
//!   compared with the main segment's victim: the loser is closed and a winning candidate moves
//!   to probation. The host always opens the requested database, so this is TinyLFU's
//!   admission test deferred by one decision. The main victim is the least frequent pool of
//!   probation (not just its LRU end), and in both choices a pool in the middle of a visit
//!   loses only to another one;
//! - the window's share of the capacity (1% at first) is tuned by hill climbing on the hit
//!   rate observed in the events (hits = `accessed`, misses = `opened`) over samples of
//!   `30 × capacity` requests: a step (1% of the capacity) in one direction is kept while the
//!   hit rate improves and reversed when it worsens, with a decaying step. Caffeine's larger
//!   steps (6.25%) made the window wander on the replay trace and cost hits.
//!
//! The capacity is learnt as the largest number of pools seen open at once. Pools the host
//! does not offer (pinned, busy, watched) are parked out of the lists until they are used
//! again. Pools the scorer has not heard of (it was restarted, or events were dropped) are
//! adopted into probation in last-use order.
//!
//! The answer is 0 for the chosen pool and 1 for every other: the host closes the lowest.
//! Cost per decision is one hash-map lookup per offered pool plus one pass over probation.

wit_bindgen::generate!({ world: "scorer", path: "../../../wit" });

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use exports::polymongo::plugin::scoring::{Event, EventKind, Guest, PoolStats};

/// Initial share of the capacity given to the window.
const INITIAL_WINDOW: f64 = 0.01;
/// Largest share the window may grow to.
const MAX_WINDOW: f64 = 0.8;
/// Share of the main segment reserved for protected pools.
const PROTECTED_SHARE: f64 = 0.2;
/// Hill-climbing step, as a share of the capacity.
const STEP: f64 = 0.01;
/// Step decay when the hit rate barely moved.
const STEP_DECAY: f64 = 0.98;
/// A hit-rate change at least this large restarts the climb with a full step.
const RESTART_THRESHOLD: f64 = 0.05;
/// Requests per hill-climbing sample, per unit of capacity.
const CLIMB_SAMPLES_PER_SLOT: u64 = 30;

/// Uses of a pool closer than this many times the median reuse gap to its previous use belong
/// to the same visit (a session's operations): they are not counted again, and a pool in the
/// middle of a visit is not closed while another can be (LRU-K's "correlated reference
/// period"). With exponentially distributed gaps inside a visit, 8 medians cover 99.6% of them.
const CRP_FACTOR: f64 = 8.0;
/// Visit span used until enough reuse gaps were seen.
const INITIAL_CRP: u64 = 200;

/// Half-life of visit counts, in requests per unit of capacity.
const HALF_LIFE_PER_SLOT: f64 = 60.0;

const NIL: u32 = u32::MAX;

/// A fast multiplicative hasher for `u64` keys (pool ids).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// 64-bit FNV-1a, then a finaliser.
fn hash_name(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Per-database visit counts with continuous exponential decay (kept for closed databases
/// too, up to `64 × capacity` of them).
#[derive(Default)]
struct Decayed {
    map: IdMap<(f64, u64)>,
}

impl Decayed {
    fn decay(value: f64, since: u64, half_life: f64) -> f64 {
        value * (-(since as f64) / half_life).exp2()
    }

    /// The rank key of a count `value` at request `at`: `log2(value) + at / half_life`. Keys
    /// order databases as their decayed counts do at any later moment.
    fn key(value: f64, at: u64, half_life: f64) -> f64 {
        value.log2() + at as f64 / half_life
    }

    /// The rank key of `hash` (`-inf` if never seen).
    fn key_of(&self, hash: u64, half_life: f64) -> f64 {
        self.map
            .get(&hash)
            .map_or(f64::NEG_INFINITY, |&(v, at)| Self::key(v, at, half_life))
    }

    /// Counts one visit of `hash` at request `now`; returns its new rank key.
    fn increment(&mut self, hash: u64, now: u64, half_life: f64, capacity: usize) -> f64 {
        let e = self.map.entry(hash).or_insert((0.0, now));
        *e = (Self::decay(e.0, now - e.1, half_life) + 1.0, now);
        let key = Self::key(e.0, now, half_life);
        if self.map.len() > 64 * capacity.max(16) {
            // Forget databases whose count decayed to almost nothing.
            self.map
                .retain(|_, &mut (v, at)| Self::decay(v, now - at, half_life) >= 0.25);
        }
        key
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Seg {
    Window = 0,
    Probation = 1,
    Protected = 2,
}

struct Node {
    hash: u64,
    prev: u32,
    next: u32,
    seg: Seg,
    /// Not in its segment's list (the host did not offer it: pinned, busy or watched).
    parked: bool,
    /// The decision in which the host last offered this pool, and its index there.
    offered: u64,
    slot: u32,
    /// Request count at its last use.
    last_use: u64,
    /// Rank key of the database's decayed visit count ([`Decayed::key`]).
    frequency: f64,
}

#[derive(Clone, Copy)]
struct List {
    /// Least recently used end.
    head: u32,
    /// Most recently used end.
    tail: u32,
    len: usize,
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

/// Hill climbing on the hit rate, moving the window's share of the capacity.
struct Climber {
    hits: u64,
    misses: u64,
    previous: Option<f64>,
    step: f64,
}

impl Climber {
    fn new() -> Self {
        Self {
            hits: 0,
            misses: 0,
            previous: None,
            step: STEP,
        }
    }

    /// Returns the change to the window share when a sampling period ends.
    fn record(&mut self, hit: bool, period: u64) -> f64 {
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        let samples = self.hits + self.misses;
        if samples < period {
            return 0.0;
        }
        let rate = self.hits as f64 / samples as f64;
        self.hits = 0;
        self.misses = 0;
        let Some(previous) = self.previous.replace(rate) else {
            return self.step;
        };
        let change = rate - previous;
        let amount = if change >= 0.0 { self.step } else { -self.step };
        self.step = if change.abs() >= RESTART_THRESHOLD {
            STEP.copysign(amount)
        } else {
            STEP_DECAY * amount
        };
        amount
    }
}

/// The distribution of reuse gaps (requests between two uses of a pool), as a decaying
/// histogram of powers of two; the visit span is [`CRP_FACTOR`] times its median.
struct Gaps {
    buckets: [f64; 64],
    samples: u64,
    crp: u64,
}

impl Gaps {
    fn new() -> Self {
        Self {
            buckets: [0.0; 64],
            samples: 0,
            crp: INITIAL_CRP,
        }
    }

    fn record(&mut self, gap: u64) {
        self.buckets[63 - gap.max(1).leading_zeros() as usize] += 1.0;
        self.samples += 1;
        if self.samples.is_multiple_of(1024) {
            let total: f64 = self.buckets.iter().sum();
            let mut seen = 0.0;
            for (b, &count) in self.buckets.iter().enumerate() {
                seen += count;
                if seen * 2.0 >= total {
                    let median = (b as f64 + 0.5).exp2();
                    self.crp = (median * CRP_FACTOR).round().max(2.0) as u64;
                    break;
                }
            }
            if self.samples.is_multiple_of(16_384) {
                self.buckets.iter_mut().for_each(|c| *c *= 0.5);
            }
        }
    }
}

struct Policy {
    gaps: Gaps,
    nodes: Vec<Node>,
    free: Vec<u32>,
    by_id: IdMap<u32>,
    lists: [List; 3],
    decayed: Decayed,
    climber: Climber,
    /// Largest number of pools seen open at once: the capacity.
    capacity: usize,
    parked: usize,
    window_share: f64,
    decision: u64,
    /// Requests seen (opened + accessed events).
    requests: u64,
}

impl Policy {
    fn new() -> Self {
        Self {
            nodes: Vec::new(),
            free: Vec::new(),
            by_id: IdMap::default(),
            lists: [List::default(); 3],
            decayed: Decayed::default(),
            climber: Climber::new(),
            gaps: Gaps::new(),
            capacity: 0,
            parked: 0,
            window_share: INITIAL_WINDOW,
            decision: 0,
            requests: 0,
        }
    }

    fn open_count(&self) -> usize {
        self.by_id.len()
    }

    /// Slots the lists share (the capacity minus the parked pools).
    fn usable(&self) -> usize {
        self.capacity.saturating_sub(self.parked).max(1)
    }

    fn window_target(&self) -> usize {
        ((self.window_share * self.usable() as f64).round() as usize).max(1)
    }

    fn protected_target(&self) -> usize {
        let main = self.usable().saturating_sub(self.window_target());
        (main as f64 * PROTECTED_SHARE) as usize
    }

    fn grow_capacity(&mut self) {
        let open = self.open_count();
        if open > self.capacity {
            self.capacity = open;
        }
    }

    fn unlink(&mut self, n: u32) {
        let (prev, next, seg) = {
            let node = &self.nodes[n as usize];
            (node.prev, node.next, node.seg)
        };
        let list = &mut self.lists[seg as usize];
        if prev == NIL {
            list.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        list.len -= 1;
        let node = &mut self.nodes[n as usize];
        node.prev = NIL;
        node.next = NIL;
    }

    fn push_mru(&mut self, n: u32, seg: Seg) {
        let list = &mut self.lists[seg as usize];
        let tail = list.tail;
        list.tail = n;
        if tail == NIL {
            list.head = n;
        } else {
            self.nodes[tail as usize].next = n;
        }
        list.len += 1;
        let node = &mut self.nodes[n as usize];
        node.prev = tail;
        node.next = NIL;
        node.seg = seg;
    }

    fn move_to(&mut self, n: u32, seg: Seg) {
        self.unlink(n);
        self.push_mru(n, seg);
    }

    fn add(&mut self, pool_id: u64, hash: u64, seg: Seg) -> u32 {
        let node = Node {
            hash,
            prev: NIL,
            next: NIL,
            seg,
            parked: false,
            offered: 0,
            slot: 0,
            last_use: self.requests,
            frequency: self.decayed.key_of(hash, self.half_life()),
        };
        let n = match self.free.pop() {
            Some(n) => {
                self.nodes[n as usize] = node;
                n
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        if let Some(old) = self.by_id.insert(pool_id, n) {
            // The same pool id opened twice (should not happen): forget the old node.
            self.detach(old);
            self.free.push(old);
        }
        self.push_mru(n, seg);
        n
    }

    /// Takes a node out of its list (or out of the parked set).
    fn detach(&mut self, n: u32) {
        if self.nodes[n as usize].parked {
            self.nodes[n as usize].parked = false;
            self.parked -= 1;
        } else {
            self.unlink(n);
        }
    }

    fn remove(&mut self, pool_id: u64) {
        if let Some(n) = self.by_id.remove(&pool_id) {
            self.detach(n);
            self.free.push(n);
        }
    }

    /// Moves window overflow (least recent first) to probation.
    fn trim_window(&mut self) {
        let target = self.window_target();
        while self.lists[Seg::Window as usize].len > target {
            let n = self.lists[Seg::Window as usize].head;
            self.move_to(n, Seg::Probation);
        }
    }

    fn trim_protected(&mut self) {
        let target = self.protected_target();
        while self.lists[Seg::Protected as usize].len > target {
            let n = self.lists[Seg::Protected as usize].head;
            self.move_to(n, Seg::Probation);
        }
    }

    fn record(&mut self, hit: bool) {
        let period = CLIMB_SAMPLES_PER_SLOT * self.capacity.max(16) as u64;
        let delta = self.climber.record(hit, period);
        if delta != 0.0 {
            self.window_share = (self.window_share + delta).clamp(0.0, MAX_WINDOW);
        }
    }

    fn opened(&mut self, pool_id: u64, db: &str) {
        self.requests += 1;
        let hash = hash_name(db);
        self.count(hash); // before `add`, which reads the new count
        self.record(false);
        self.add(pool_id, hash, Seg::Window);
        self.grow_capacity();
        self.trim_window();
    }

    fn accessed(&mut self, pool_id: u64) {
        self.requests += 1;
        let Some(&n) = self.by_id.get(&pool_id) else {
            return;
        };
        let hash = self.nodes[n as usize].hash;
        let gap = self.requests - self.nodes[n as usize].last_use;
        self.nodes[n as usize].last_use = self.requests;
        self.gaps.record(gap);
        if gap > self.gaps.crp {
            self.nodes[n as usize].frequency = self.count(hash);
        }
        self.record(true);
        let node = &mut self.nodes[n as usize];
        if node.parked {
            node.parked = false;
            self.parked -= 1;
            let seg = node.seg;
            self.push_mru(n, seg);
        }
        match self.nodes[n as usize].seg {
            Seg::Window => self.move_to(n, Seg::Window),
            Seg::Probation | Seg::Protected => {
                self.move_to(n, Seg::Protected);
                self.trim_protected();
            }
        }
    }

    fn event(&mut self, event: &Event) {
        match &event.kind {
            EventKind::Opened(db) => self.opened(event.pool_id, db),
            EventKind::Accessed => self.accessed(event.pool_id),
            EventKind::Closed => self.remove(event.pool_id),
        }
    }

    /// The least recently used offered pool of `seg`; pools not offered are parked.
    fn lru_offered(&mut self, seg: Seg) -> Option<u32> {
        loop {
            let n = self.lists[seg as usize].head;
            if n == NIL {
                return None;
            }
            if self.nodes[n as usize].offered == self.decision {
                return Some(n);
            }
            self.unlink(n);
            self.nodes[n as usize].parked = true;
            self.parked += 1;
        }
    }

    fn half_life(&self) -> f64 {
        HALF_LIFE_PER_SLOT * self.capacity.max(16) as f64
    }

    fn count(&mut self, hash: u64) -> f64 {
        let half_life = self.half_life();
        self.decayed
            .increment(hash, self.requests, half_life, self.capacity)
    }

    /// Among the offered pools from `start` towards the most recent end, the one to close:
    /// not in the middle of a visit if possible, then the least frequent (the least recent on
    /// ties).
    fn least_frequent_from(&self, start: u32) -> u32 {
        let mut best = start;
        let mut best_key = (self.is_active(start), self.frequency(start));
        let mut n = self.nodes[start as usize].next;
        while n != NIL {
            if self.nodes[n as usize].offered == self.decision {
                let key = (self.is_active(n), self.frequency(n));
                if key < best_key {
                    best = n;
                    best_key = key;
                }
            }
            n = self.nodes[n as usize].next;
        }
        best
    }

    /// Whether pool `n` is in the middle of a visit (used less than the visit span ago).
    fn is_active(&self, n: u32) -> bool {
        self.requests - self.nodes[n as usize].last_use < self.gaps.crp
    }

    fn frequency(&self, n: u32) -> f64 {
        self.nodes[n as usize].frequency
    }

    /// Chooses the pool to close among `pools`; returns its index.
    fn decide(&mut self, pools: &[PoolStats]) -> usize {
        self.decision += 1;
        let mut strangers: Vec<usize> = Vec::new();
        for (i, pool) in pools.iter().enumerate() {
            match self.by_id.get(&pool.pool_id) {
                Some(&n) => {
                    let node = &mut self.nodes[n as usize];
                    node.offered = self.decision;
                    node.slot = i as u32;
                    if node.parked {
                        node.parked = false;
                        self.parked -= 1;
                        let seg = node.seg;
                        self.push_mru(n, seg);
                    }
                }
                None => strangers.push(i),
            }
        }
        if !strangers.is_empty() {
            // Pools opened before this instance started (or whose events were dropped):
            // adopt them into probation, least recently used first.
            strangers.sort_by_key(|&i| pools[i].last_used_ms);
            for i in strangers {
                let n = self.add(pools[i].pool_id, mix(pools[i].pool_id), Seg::Probation);
                let node = &mut self.nodes[n as usize];
                node.offered = self.decision;
                node.slot = i as u32;
            }
            self.grow_capacity();
        }

        let candidate = if self.lists[Seg::Window as usize].len >= self.window_target() {
            self.lru_offered(Seg::Window)
        } else {
            None
        };
        let victim = match self.lru_offered(Seg::Probation) {
            Some(v) => Some(self.least_frequent_from(v)),
            None => self.lru_offered(Seg::Protected),
        };
        let chosen = match (candidate, victim) {
            (Some(c), Some(v)) => {
                if (self.is_active(c), self.frequency(c)) > (self.is_active(v), self.frequency(v)) {
                    self.move_to(c, Seg::Probation);
                    v
                } else {
                    c
                }
            }
            (Some(c), None) => c,
            (None, Some(v)) => v,
            (None, None) => match self.lru_offered(Seg::Window) {
                Some(n) => n,
                None => return 0,
            },
        };
        self.nodes[chosen as usize].slot as usize
    }
}

thread_local! {
    static POLICY: RefCell<Policy> = RefCell::new(Policy::new());
}

struct Adaptive;

impl Guest for Adaptive {
    fn score_all(
        events: Vec<Event>,
        _dropped: u64,
        pools: Vec<PoolStats>,
        _now_ms: u64,
    ) -> Vec<f64> {
        POLICY.with(|policy| {
            let mut policy = policy.borrow_mut();
            for event in &events {
                policy.event(event);
            }
            let mut scores = vec![1.0; pools.len()];
            if !pools.is_empty() {
                let victim = policy.decide(&pools);
                scores[victim] = 0.0;
            }
            scores
        })
    }
}

export!(Adaptive);
