//! Deciding like a cache policy from the connection manager's pool events.
//!
//! A policy ("expert": W-TinyLFU, LRU, …) is simulated as a *virtual cache* on the stream of
//! requests the events describe (`opened(db)` and `accessed` are requests; closes are the
//! manager's business). At each eviction decision, the [`Follower`] makes the real open pools
//! converge to the contents of the *leader*, the expert with the most (exponentially decayed)
//! virtual hits lately ([`LeaderRule`]). The migration is lazy by default: the leader's own
//! next victim goes when it is open; otherwise a real pool the leader does not hold goes (the
//! one the other experts, weighted by how close they are to the best, want least; ties to
//! the least recently used). When the real pools are exactly the leader's cache, the real
//! pools make exactly the leader's decisions. With a single expert this *is* that policy (how
//! the replay tool runs its W-TinyLFU and LIRS references).
//!
//! - The capacity is learnt: at each decision it is the number of pools offered (the open,
//!   evictable ones). Before the first decision the requests are only recorded, then replayed
//!   into the experts once the capacity is known (nothing was evicted before, so they end
//!   up as if they had known it all along), at most [`WARM_UP_STEP`] per call
//!   (`follow_warm_up.rs`).
//! - Pools open but not offered (pinned) are left out of the experts (they hold room, as in
//!   the manager); if such a pool is offered later it is counted again.
//!
//! No dependency beyond std, so that a scorer component can include this file.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::experts::Expert;
use super::leader::LeaderRule;
use super::vote::{least_minded, Blend};

#[path = "follow_keys.rs"]
mod keys;
#[path = "follow_switch.rs"]
mod switch;
#[path = "follow_warm_up.rs"]
mod warm_up;

pub use warm_up::WARM_UP_STEP;

/// FxHash-like hasher for small integer and short string keys (the default SipHash is
/// several times slower, and decisions look up every offered pool).
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A hash map with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Follows the best of several virtual caches (see the module documentation).
pub struct Follower {
    /// Names to key numbers and back (`follow_keys.rs`).
    names: keys::KeyNames,
    hashes: Vec<i32>,
    pools: FastMap<u64, u32>,
    /// The open pool of each key, and how many pools are open for it.
    pool_of: Vec<Option<u64>>,
    open_pools: Vec<u32>,
    last_use: Vec<u64>,
    pinned: Vec<bool>,
    offered_at: Vec<u64>,
    history: Vec<u32>,
    /// How many of `history` the experts were fed (the warm-up's progress).
    history_fed: usize,
    /// The most requests replayed per call during the warm-up ([`WARM_UP_STEP`]).
    warm_up_step: usize,
    started: bool,
    maximum: u64,
    decisions: u64,
    unoffered: usize,
    clock: u64,
    experts: Vec<Box<dyn Expert + Send>>,
    /// The weighted vote as a virtual cache (index `experts.len()`), when on.
    blend: Option<Blend>,
    hits: Vec<f64>,
    /// Decayed sums of `hit_i − hit_j` and of its square, for every pair (row-major).
    lead: Vec<f64>,
    lead_squares: Vec<f64>,
    outcomes: Vec<bool>,
    /// CUSUM of each expert's excess hits over the leader's, and the number of real pools it
    /// did not hold when last counted.
    excess: Vec<f64>,
    missing: Vec<usize>,
    /// The decision at which `missing` was last counted (the learnt-cost rule).
    counted_at: Vec<u64>,
    weight: f64,
    decay: f64,
    /// Decayed real hits (the vote's fallback test), and whether the vote fell back to
    /// following the leader.
    real_hits: f64,
    vote_off: bool,
    leader: usize,
    /// Since the last switch: the leader's virtual hits minus the real hits.
    regret: f64,
    /// Over the finished switches: their regret, and the real pools the new leader did not
    /// hold when it took over (the current switch's count is `switch_missing`).
    past_regret: f64,
    past_missing: f64,
    switch_missing: f64,
    /// Whether a switch is in progress (its regret counts in the estimate).
    switched: bool,
    rule: LeaderRule,
}

impl Follower {
    /// A follower of `experts` (the first leads until another does better).
    pub fn new(experts: Vec<Box<dyn Expert + Send>>, rule: LeaderRule) -> Self {
        let blend = (rule.blend > 0.0).then(|| Blend::new(rule.blend));
        let n = experts.len() + usize::from(blend.is_some());
        Self {
            names: keys::KeyNames::new(),
            hashes: Vec::new(),
            pools: FastMap::default(),
            pool_of: Vec::new(),
            open_pools: Vec::new(),
            last_use: Vec::new(),
            pinned: Vec::new(),
            offered_at: Vec::new(),
            history: Vec::new(),
            history_fed: 0,
            warm_up_step: WARM_UP_STEP,
            started: false,
            maximum: 0,
            decisions: 0,
            unoffered: usize::MAX,
            clock: 0,
            experts,
            blend,
            hits: vec![0.0; n],
            lead: vec![0.0; n * n],
            lead_squares: vec![0.0; n * n],
            outcomes: vec![false; n],
            excess: vec![0.0; n],
            missing: vec![0; n],
            counted_at: vec![0; n],
            weight: 0.0,
            decay: 1.0,
            real_hits: 0.0,
            vote_off: false,
            leader: 0,
            regret: 0.0,
            past_regret: 0.0,
            past_missing: 0.0,
            switch_missing: 0.0,
            switched: false,
            rule,
        }
    }

    /// The expert followed now.
    pub fn leader(&self) -> &str {
        if self.leader == self.experts.len() && self.blend.is_some() {
            return "blend";
        }
        self.experts.get(self.leader).map_or("none", |e| e.name())
    }

    /// Whether expert `e` (the blend when `e` is past the experts) holds `key`.
    fn holds(&self, e: usize, key: u32) -> bool {
        match self.experts.get(e) {
            Some(expert) => expert.contains(key),
            None => self.blend.as_ref().is_some_and(|b| b.contains(key)),
        }
    }

    /// The next victim of expert `e` (the blend when `e` is past the experts).
    fn victim_of(&mut self, e: usize) -> Option<u32> {
        if e < self.experts.len() {
            return self.experts[e].next_victim();
        }
        let ratios = self.expert_ratios();
        let blend = self.blend.as_mut()?;
        blend.next_victim(&mut self.experts, &ratios)
    }

    /// Decayed virtual hit ratio of each expert, without the blend.
    fn expert_ratios(&self) -> Vec<f64> {
        let n = self.experts.len();
        self.hits[..n]
            .iter()
            .map(|h| {
                if self.weight > 0.0 {
                    h / self.weight
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Decayed virtual hit ratio of each expert.
    pub fn hit_ratios(&self) -> Vec<(&'static str, f64)> {
        self.experts
            .iter()
            .map(|e| e.name())
            .chain(self.blend.iter().map(|_| "blend"))
            .zip(&self.hits)
            .map(|(name, h)| {
                (
                    name,
                    if self.weight > 0.0 {
                        h / self.weight
                    } else {
                        0.0
                    },
                )
            })
            .collect()
    }

    /// Pool `pool` was opened for database `name` (a request).
    pub fn opened(&mut self, pool: u64, name: &str) {
        let key = self.intern(name);
        match self.pools.insert(pool, key) {
            Some(old) if old == key => {}
            Some(old) => {
                let count = &mut self.open_pools[old as usize];
                *count = count.saturating_sub(1);
                self.open_pools[key as usize] += 1;
            }
            None => self.open_pools[key as usize] += 1,
        }
        self.pool_of[key as usize] = Some(pool);
        self.request(key, false);
    }

    /// An operation ran on pool `pool` (a request).
    pub fn accessed(&mut self, pool: u64) {
        if let Some(&key) = self.pools.get(&pool) {
            self.request(key, true);
        }
    }

    /// Pool `pool` was closed.
    pub fn closed(&mut self, pool: u64) {
        if let Some(key) = self.pools.remove(&pool) {
            self.open_pools[key as usize] = self.open_pools[key as usize].saturating_sub(1);
            if self.pool_of[key as usize] == Some(pool) {
                self.pool_of[key as usize] = None;
            }
        }
    }

    fn request(&mut self, key: u32, real_hit: bool) {
        self.clock += 1;
        self.last_use[key as usize] = self.clock;
        if self.pinned[key as usize] {
            return;
        }
        if !self.started || self.warming() {
            self.history.push(key);
            return;
        }
        self.feed(key);
        self.real_hits = self.real_hits * self.decay + f64::from(u8::from(real_hit));
        if self.switched {
            let leader_hit = f64::from(u8::from(self.outcomes[self.leader]));
            self.regret += leader_hit - f64::from(u8::from(real_hit));
        }
    }

    fn feed(&mut self, key: u32) {
        let hash = self.hashes[key as usize];
        self.weight = self.weight * self.decay + 1.0;
        for ((expert, hits), outcome) in self
            .experts
            .iter_mut()
            .zip(&mut self.hits)
            .zip(&mut self.outcomes)
        {
            let hit = expert.request(key, hash);
            *hits = *hits * self.decay + if hit { 1.0 } else { 0.0 };
            *outcome = hit;
        }
        if self.blend.is_some() {
            let ratios = self.expert_ratios();
            let n = self.experts.len();
            if let Some(blend) = self.blend.as_mut() {
                let hit = blend.request(key, &mut self.experts, &ratios);
                self.hits[n] = self.hits[n] * self.decay + if hit { 1.0 } else { 0.0 };
                self.outcomes[n] = hit;
            }
        }
        if self.rule.cusum_cost > 0.0 {
            let leader = f64::from(u8::from(self.outcomes[self.leader]));
            for (excess, &hit) in self.excess.iter_mut().zip(&self.outcomes) {
                *excess = (*excess + f64::from(u8::from(hit)) - leader).max(0.0);
            }
        }
        if self.rule.confidence > 0.0 {
            let n = self.outcomes.len();
            for i in 0..n {
                for j in 0..n {
                    let d = f64::from(u8::from(self.outcomes[i]))
                        - f64::from(u8::from(self.outcomes[j]));
                    let at = i * n + j;
                    self.lead[at] = self.lead[at] * self.decay + d;
                    self.lead_squares[at] = self.lead_squares[at] * self.decay + d * d;
                }
            }
        }
    }

    fn set_maximum(&mut self, maximum: u64) {
        self.maximum = maximum;
        for expert in &mut self.experts {
            expert.resize(maximum);
        }
        if let Some(blend) = self.blend.as_mut() {
            blend.resize(maximum);
        }
        let half_life = (self.rule.half_life_per_slot * maximum as f64).max(1.0);
        self.decay = 0.5f64.powf(1.0 / half_life);
    }

    /// Among the real pools the leader does not hold, the index of the one the other experts
    /// want least: each expert holding it adds `e^(−(best − its hit ratio) / support_scale)`
    /// (an expert as good as the best counts 1, a clearly worse one nearly 0), ties to the
    /// least recently used. So while the real pools converge to a new leader's cache, what a
    /// close runner-up also holds stays, and switching back costs fewer misses.
    fn least_supported_stray(&self, keys: &[u32]) -> Option<usize> {
        let ratios = self.hit_ratios();
        let best = ratios.iter().map(|&(_, r)| r).fold(0.0, f64::max);
        let weights: Vec<f64> = ratios
            .iter()
            .map(|&(_, r)| (-(best - r) / self.rule.support_scale).exp())
            .collect();
        let mut chosen: Option<(f64, u64, usize)> = None;
        for (i, &k) in keys.iter().enumerate() {
            if self.holds(self.leader, k) {
                continue;
            }
            let support: f64 = weights
                .iter()
                .enumerate()
                .filter(|&(e, _)| self.holds(e, k))
                .map(|(_, w)| w)
                .sum();
            let last_use = self.last_use[k as usize];
            if chosen.is_none_or(|(s, u, _)| (support, last_use) < (s, u)) {
                chosen = Some((support, last_use, i));
            }
        }
        chosen.map(|(_, _, i)| i)
    }

    /// The index, in `offered` (the evictable open pools), of the pool to close; `None` when
    /// nothing is offered.
    pub fn decide(&mut self, offered: &[u64]) -> Option<usize> {
        if offered.is_empty() {
            // A call with events only: a step of the warm-up, if one is under way.
            self.warm_up();
            return None;
        }
        self.decisions += 1;
        // Fast path: nothing was pinned or unpinned since the last decision (as many pools
        // offered and open as then) and the leader's next victim is open: one pass comparing
        // pool ids, no lookup per offered pool.
        let unchanged = self.started
            && !self.warming()
            && offered.len() as u64 == self.maximum
            && self.pools.len().saturating_sub(offered.len()) == self.unoffered;
        if unchanged && self.rule.lazy && self.rule.vote <= 0.0 {
            self.choose_leader();
            if let Some(i) = self.leader_victim_in(offered) {
                return Some(i);
            }
        }
        let stamp = self.decisions;
        // Pools the follower never heard of (events lost, or a restart) go first.
        let mut keys = Vec::with_capacity(offered.len());
        for (i, pool) in offered.iter().enumerate() {
            match self.pools.get(pool) {
                Some(&key) => keys.push(key),
                None => return Some(i),
            }
        }
        for &key in &keys {
            self.offered_at[key as usize] = stamp;
            if self.pinned[key as usize] {
                self.pinned[key as usize] = false;
            }
        }
        // Open pools not offered are pinned. Scanning every open pool costs as much as the
        // rest of the decision, so only when their number changed since the last scan.
        let unoffered = self.pools.len().saturating_sub(offered.len());
        let newly_pinned: Vec<u32> = if unoffered == self.unoffered {
            Vec::new()
        } else {
            self.unoffered = unoffered;
            self.pools
                .values()
                .copied()
                .filter(|&k| self.offered_at[k as usize] != stamp && !self.pinned[k as usize])
                .collect()
        };
        for key in newly_pinned {
            self.pinned[key as usize] = true;
            for expert in &mut self.experts {
                expert.remove(key);
            }
            if let Some(blend) = self.blend.as_mut() {
                blend.remove(key);
            }
        }
        let maximum = offered.len() as u64;
        if !self.started {
            self.started = true;
            self.set_maximum(maximum);
        } else if maximum != self.maximum {
            self.set_maximum(maximum);
        }
        if self.warm_up() {
            return self.oldest(&keys, |_| true);
        }
        if !(unchanged && self.rule.lazy && self.rule.vote <= 0.0) {
            self.choose_leader();
        }
        if self.rule.vote > 0.0 && !self.vote_off {
            // Until the real pools do worse than the best expert (`vote_fallback`).
            let best = self.hits[..self.experts.len()]
                .iter()
                .fold(0.0, |b, &h| h.max(b));
            let margin = self.rule.vote_fallback_margin.unwrap_or(self.rule.margin);
            self.vote_off = self.rule.vote_fallback && self.real_hits < best - margin * self.weight;
        }
        if self.rule.vote > 0.0 && !self.vote_off {
            let ratios = self.expert_ratios();
            let within = Some(self.leader).filter(|&l| self.rule.vote_within && l < ratios.len());
            let scale = self.rule.vote;
            return least_minded(
                &mut self.experts,
                &ratios,
                scale,
                &keys,
                &self.last_use,
                within,
            );
        }

        if self.rule.lazy {
            if let Some(victim) = self.victim_of(self.leader) {
                if let Some(i) = keys.iter().position(|&k| k == victim) {
                    return Some(i);
                }
            }
        }
        let stray = if self.rule.support_scale > 0.0 && self.hits.len() > 2 {
            self.least_supported_stray(&keys)
        } else {
            self.oldest(&keys, |k| !self.holds(self.leader, k))
        };
        if let Some(i) = stray {
            return Some(i);
        }
        if let Some(victim) = self.victim_of(self.leader) {
            if let Some(i) = keys.iter().position(|&k| k == victim) {
                return Some(i);
            }
        }
        self.oldest(&keys, |_| true)
    }

    /// The index in `offered` of the leader's next victim, when it is open.
    fn leader_victim_in(&mut self, offered: &[u64]) -> Option<usize> {
        let victim = self.victim_of(self.leader)?;
        let pool = self.pool_of.get(victim as usize).copied().flatten()?;
        offered.iter().position(|&p| p == pool)
    }

    /// The index of the least recently used of `keys` that `pick` accepts.
    fn oldest(&self, keys: &[u32], pick: impl Fn(u32) -> bool) -> Option<usize> {
        keys.iter()
            .enumerate()
            .filter(|&(_, &k)| pick(k))
            .min_by_key(|&(_, &k)| self.last_use[k as usize])
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
#[path = "follow_tests.rs"]
mod tests;
