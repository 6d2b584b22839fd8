//! A variant of the session-aware expert ([`super::visits::VisitsExpert`]), `visits2`:
//!
//! - **continuation by position**: the chance that a visit goes on is learnt after its 1st,
//!   2nd and 3rd-or-later operation, `q(1)`, `q(2)`, `q(3+)`, with fast-decaying counts
//!   (a memory of about 1,000 requests), instead of one slow average; a key idle after its
//!   `n`-th operation is valued with `q(n)`;
//! - **one-off visits weighted**: a new visit counts in the popularity memory with weight
//!   `min(1, q(1)/q(2))`, the chance that it is a real session rather than a single
//!   operation, topped up to 1 when its second operation comes. In steady traffic the weight
//!   is about 1; while something touches many keys once each (a scan, a crawler) `q(1)`
//!   collapses, and so do both the weight of those visits and the protection of a key after
//!   its first operation: they go first and hardly disturb the popularity memory;
//! - **a shift detector with fewer false alarms**: a visit whose key was used within 4 visit
//!   spans gives no evidence (a session split in two by one long gap made the short memory
//!   "predict" its second half: each burst of cold tenants fired the detector), the short
//!   memory holds at least 300 visits (at small capacities its 3 × K requests held a few
//!   dozen, and chance repeats fired it), and, with these, the threshold is 12 nats instead
//!   of 30, so real shifts are caught sooner.
//!
//! Everything else is the model of `visits.rs`: the visit span (8 × the median reuse gap),
//! the mean gap within a visit, the long popularity memory replaced by the short one when
//! the detector fires, the branch-and-bound victim search. [`Config`] holds the switches of
//! the variant and of the experiments tried with it (names `visits2:switch[=value]:…`).
//!
//! No dependency beyond std, so that a scorer component can include this file.

use std::collections::BTreeSet;

use super::experts::Expert;
use super::follow::FastMap;

/// Reuses closer than this many times the median reuse gap continue a visit.
const SPAN_FACTOR: f64 = 8.0;
/// Visit span until enough reuse gaps were seen.
const INITIAL_SPAN: u64 = 200;
/// Idle time, in mean gaps within a visit, after which a visit is over for sure.
const FORGOTTEN_VISIT_GAPS: f64 = 50.0;
/// Weight of one observation in the running estimates of the visit model.
const VISIT_MODEL_RATE: f64 = 1e-4;
/// Half-life of the long memory of visit counts, in requests per unit of capacity.
const LONG_HALF_LIFE_PER_SLOT: f64 = 1000.0;
/// Keys with a visit history, per unit of capacity.
const HISTORY_PER_SLOT: usize = 64;
/// Operation positions with a continuation chance of their own (the last one stands for
/// every later position).
const POSITIONS: usize = 3;

/// The switches of the variant (the default is `visits2`) and of the experiments tried
/// with it; `visits2:name[=value]:…` sets them ([`Config::parse`]; a switch without a value
/// is on, `=0` is off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// `pos`: learn the continuation chance by position (else one slow average, as
    /// `visits`).
    pub by_position: bool,
    /// `rate`: decay of the position counts per request (their memory is about `1 / rate`).
    pub position_rate: f64,
    /// `weigh`: count a new visit with weight `min(1, q(1)/q(2))`, topped up at its second
    /// operation.
    pub weigh_visits: bool,
    /// `wdet`: the shift detector weighs each visit's evidence by its weight.
    pub weighted_detector: bool,
    /// `reopen`: a reopened key within the visit span of its last use continues its visit
    /// (else, as in `visits`, every miss starts a visit).
    pub reopen_continues: bool,
    /// `wrate`: visits per request in the popularity term from the weighted visit counts
    /// (else from the unweighted share of requests that start a visit).
    pub weighted_visit_rate: bool,
    /// `shift`: evidence (nats) deemed a popularity shift.
    pub shift_evidence: f64,
    /// `short`: half-life of the short memory, in requests per unit of capacity.
    pub short_half_life: f64,
    /// `minshort`: ... and at least this many requests.
    pub min_short_half_life: f64,
    /// `minvisits`: ... and at least this many visits (this over the share of requests that
    /// start a visit, in requests).
    pub min_short_visits: f64,
    /// `near`: a visit whose key was used within this many visit spans gives no evidence of
    /// a shift (it may be the rest of a session split by a long gap; 0: every visit counts).
    pub near: f64,
    /// `hold`: no evidence is gathered for this many short half-lives after a reset.
    pub hold: f64,
    /// `mix`: the short memory's prediction is mixed with the long one's, with this weight
    /// on the long (0: the short memory alone).
    pub mix: f64,
    /// `oracle`: analysis only — no detector; the long memory is replaced once, at the
    /// first visit from this request on (0: never; `u64::MAX`: the detector decides).
    pub oracle: u64,
    /// `hazard`: the chance that a visit is still going on after an idle time, and the rate
    /// of its next operation, from the learnt distribution of gaps within visits (else:
    /// exponential with the mean gap).
    pub learnt_gaps: bool,
    /// `perkey`: when above 0, the chance that a key's new visit goes on past its first
    /// operation is the key's own record (its visits that went on, of its visits), shrunk
    /// towards the global `q(1)` with this weight in visits.
    pub per_key: f64,
    /// `gaprate`: weight of one gap in the running mean gap within a visit.
    pub gap_rate: f64,
    /// `young`: the popularity term is scaled by `n / (n + young)`, `n` the visits in the
    /// long memory (a young memory's shares are noisy; 0: no scaling).
    pub young: f64,
    /// `bayes`: the chance that a key's new visit is a real session is `w·π / (w·π +
    /// (1 − w)·u)`, with `w = min(1, q(1)/q(2))`, `π` the key's share of the long memory (at
    /// least `u`) and `u` one over the keys seen (one-off visits taken as spread evenly): it
    /// weighs the visit and, times `q(2)`, protects the key after its first operation.
    pub bayes: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            by_position: true,
            position_rate: 1e-3,
            weigh_visits: true,
            weighted_detector: false,
            reopen_continues: false,
            weighted_visit_rate: false,
            shift_evidence: 12.0,
            short_half_life: 3.0,
            min_short_half_life: 0.0,
            min_short_visits: 300.0,
            near: 4.0,
            hold: 0.0,
            mix: 0.0,
            oracle: u64::MAX,
            learnt_gaps: false,
            per_key: 0.0,
            gap_rate: VISIT_MODEL_RATE,
            young: 0.0,
            bayes: false,
        }
    }
}

impl Config {
    /// The settings under which the variant makes the decisions of `visits`
    /// (`visits2:pos=0:weigh=0:shift=30:minvisits=0:near=0`).
    pub fn as_visits() -> Self {
        Self {
            by_position: false,
            weigh_visits: false,
            shift_evidence: 30.0,
            min_short_visits: 0.0,
            near: 0.0,
            ..Self::default()
        }
    }

    /// The first port, continuation by position and weighted visits with the detector of
    /// `visits` (`visits2:shift=30:minvisits=0:near=0`).
    pub fn port() -> Self {
        Self {
            shift_evidence: 30.0,
            min_short_visits: 0.0,
            near: 0.0,
            ..Self::default()
        }
    }

    /// Parses `visits2[:switch[=value]…]` (an experiment name; `None` for other names).
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("visits2")?;
        let mut config = Self::default();
        let rest = match rest.strip_prefix(':') {
            Some(r) => r,
            None if rest.is_empty() => return Some(config),
            None => return None,
        };
        for item in rest.split(':').filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=').unwrap_or((item, "1"));
            let on = v != "0";
            match k {
                "port" => config = Self::port(),
                "asvisits" => config = Self::as_visits(),
                "pos" => config.by_position = on,
                "rate" => config.position_rate = v.parse().ok()?,
                "weigh" => config.weigh_visits = on,
                "wdet" => config.weighted_detector = on,
                "reopen" => config.reopen_continues = on,
                "wrate" => config.weighted_visit_rate = on,
                "shift" => config.shift_evidence = v.parse().ok()?,
                "short" => config.short_half_life = v.parse().ok()?,
                "minshort" => config.min_short_half_life = v.parse().ok()?,
                "hold" => config.hold = v.parse().ok()?,
                "mix" => config.mix = v.parse().ok()?,
                "oracle" => config.oracle = v.parse().ok()?,
                "near" => config.near = v.parse().ok()?,
                "minvisits" => config.min_short_visits = v.parse().ok()?,
                "hazard" => config.learnt_gaps = on,
                "perkey" => config.per_key = v.parse().ok()?,
                "gaprate" => config.gap_rate = v.parse().ok()?,
                "young" => config.young = v.parse().ok()?,
                "bayes" => config.bayes = on,
                _ => return None,
            }
        }
        Some(config)
    }
}

/// `value` decayed over `since` requests with half-life `half_life`.
fn decay(value: f64, since: u64, half_life: f64) -> f64 {
    value * (-(since as f64) / half_life).exp2()
}

/// A key's visit counts in both memories, as of request `at`.
#[derive(Clone, Copy, Default, Debug)]
struct Counts {
    long: f64,
    short: f64,
    at: u64,
}

/// Per-key visit counts with a long and a short memory, and the shift detector.
#[derive(Debug)]
struct History {
    map: FastMap<u32, Counts>,
    total: Counts,
    long_half_life: f64,
    short_half_life: f64,
    evidence: f64,
    reset_at: u64,
    limit: usize,
    short_per_slot: f64,
    min_short: f64,
    hold: f64,
    mix: f64,
    oracle: u64,
    shift_evidence: f64,
}

impl History {
    fn new(config: &Config) -> Self {
        let mut history = Self {
            short_per_slot: config.short_half_life,
            min_short: config.min_short_half_life,
            hold: config.hold,
            mix: config.mix,
            oracle: config.oracle,
            shift_evidence: config.shift_evidence,
            map: FastMap::default(),
            total: Counts::default(),
            long_half_life: 0.0,
            short_half_life: 0.0,
            evidence: 0.0,
            reset_at: 0,
            limit: 0,
        };
        history.set_capacity(16);
        history
    }

    /// The short memory's half-life is at least `requests` (besides its floor in requests).
    fn set_short_floor(&mut self, requests: f64, slots: usize) {
        let half_life = (self.short_per_slot * slots.max(16) as f64)
            .max(self.min_short)
            .max(requests);
        self.short_half_life = half_life;
    }

    fn set_capacity(&mut self, capacity: usize) {
        let slots = capacity.max(16);
        self.long_half_life = LONG_HALF_LIFE_PER_SLOT * slots as f64;
        self.short_half_life = (self.short_per_slot * slots as f64).max(self.min_short);
        self.limit = HISTORY_PER_SLOT * slots;
    }

    fn short(&self, counts: Counts, now: u64) -> f64 {
        decay(counts.short, now - counts.at, self.short_half_life)
    }

    /// The long-memory count (the short one at the last reset if the long one is stale).
    fn long(&self, counts: Counts, now: u64) -> f64 {
        if counts.at < self.reset_at {
            let at_reset = self.short(counts, self.reset_at);
            decay(at_reset, now - self.reset_at, self.long_half_life)
        } else {
            decay(counts.long, now - counts.at, self.long_half_life)
        }
    }

    /// A number that orders keys as their long-memory counts do at any one time, and does
    /// not change as time passes: `log2` of the count, plus the time in half-lives.
    fn rank(&self, counts: Counts) -> f64 {
        if counts.at < self.reset_at {
            self.short(counts, self.reset_at).log2() + self.reset_at as f64 / self.long_half_life
        } else {
            counts.long.log2() + counts.at as f64 / self.long_half_life
        }
    }

    fn at(&self, counts: Counts, now: u64) -> Counts {
        Counts {
            long: self.long(counts, now),
            short: self.short(counts, now),
            at: now,
        }
    }

    fn counts(&self, key: u32, now: u64) -> Counts {
        self.map.get(&key).map_or(
            Counts {
                at: now,
                ..Counts::default()
            },
            |&c| self.at(c, now),
        )
    }

    /// Counts a visit of `key` at request `now` with `weight`, scoring it as a prediction
    /// with `evidence_weight`; returns the key's new counts.
    fn visit(&mut self, key: u32, now: u64, weight: f64, evidence_weight: f64) -> Counts {
        if evidence_weight > 0.0 {
            self.detect(
                self.counts(key, now),
                self.at(self.total, now),
                now,
                evidence_weight,
            );
        }
        self.add(key, now, weight)
    }

    /// Adds `weight` to the counts of `key` (no evidence); returns its new counts.
    fn add(&mut self, key: u32, now: u64, weight: f64) -> Counts {
        let plus = |c: Counts| Counts {
            long: c.long + weight,
            short: c.short + weight,
            at: now,
        };
        let counts = plus(self.counts(key, now));
        self.map.insert(key, counts);
        self.total = plus(self.at(self.total, now));
        if self.map.len() > self.limit {
            self.forget(now);
        }
        counts
    }

    /// CUSUM of the log-likelihood ratio of the short memory's prediction of the visited key
    /// to the long one's; past the threshold the long memory is replaced (lazily).
    fn detect(&mut self, counts: Counts, total: Counts, now: u64, weight: f64) {
        if total.short <= 0.0 {
            return;
        }
        let oracle_fires = now >= self.oracle && self.reset_at < self.oracle;
        if self.oracle != u64::MAX && !oracle_fires {
            return;
        }
        if self.reset_at > 0 && ((now - self.reset_at) as f64) < self.hold * self.short_half_life {
            return;
        }
        let floor = 1.0 / self.limit as f64;
        let long_share = counts.long / total.long;
        let short_share = (counts.short / total.short + self.mix * long_share) / (1.0 + self.mix);
        let long = (long_share + floor).ln();
        let short = (short_share + floor).ln();
        self.evidence = (self.evidence + weight * (short - long)).max(0.0);
        if oracle_fires {
            self.evidence = f64::INFINITY;
        }
        if self.evidence > self.shift_evidence {
            self.evidence = 0.0;
            self.reset_at = now;
            self.total.long = total.short;
            self.total.short = total.short;
            self.total.at = now;
        }
    }

    /// Forgets the half of the keys with the smallest long-memory counts.
    fn forget(&mut self, now: u64) {
        let mut entries: Vec<(u32, Counts)> = self
            .map
            .iter()
            .map(|(&key, &counts)| (key, self.at(counts, now)))
            .collect();
        let keep = entries.len() / 2;
        entries.select_nth_unstable_by(keep, |a, b| b.1.long.total_cmp(&a.1.long));
        entries.truncate(keep);
        self.map = entries.into_iter().collect();
    }
}

/// The visit model: span, chance that a visit goes on (overall and by position), mean gap
/// within a visit.
#[derive(Debug)]
struct Visits {
    buckets: [f64; 64],
    samples: u64,
    span: u64,
    continued: f64,
    gap: f64,
    /// Decayed counts of operations at position 1, 2, …, `POSITIONS` (the last: at that
    /// position or later), and at a position past `POSITIONS`.
    at_position: [f64; POSITIONS + 1],
    /// Decayed weighted visits counted, and requests (for the weighted visit rate).
    weighted: f64,
    requests: f64,
    /// Gaps within visits by `log2` bucket, and from them, at each power of two `t`: the
    /// share of gaps of at least `t` and their mean excess over `t`.
    gaps: [f64; 64],
    gap_samples: u64,
    survival: [f64; 65],
    excess: [f64; 65],
    learnt: bool,
    gap_rate: f64,
}

impl Visits {
    fn new() -> Self {
        Self {
            buckets: [0.0; 64],
            samples: 0,
            span: INITIAL_SPAN,
            continued: 0.5,
            gap: INITIAL_SPAN as f64 / SPAN_FACTOR,
            // A weak prior of 1/2 at every position.
            at_position: [1.0, 0.5, 0.5, 0.25],
            weighted: 0.0,
            requests: 0.0,
            gaps: [0.0; 64],
            gap_samples: 0,
            survival: [0.0; 65],
            excess: [0.0; 65],
            learnt: false,
            gap_rate: VISIT_MODEL_RATE,
        }
    }

    /// A request: ages the position counts.
    fn tick(&mut self, rate: f64) {
        let keep = 1.0 - rate;
        self.at_position.iter_mut().for_each(|c| *c *= keep);
        let keep = 1.0 - VISIT_MODEL_RATE;
        self.weighted *= keep;
        self.requests = self.requests * keep + 1.0;
    }

    /// An operation at `position` (1 for the first of a visit).
    fn position(&mut self, position: u32) {
        let p = position as usize;
        self.at_position[p.min(POSITIONS) - 1] += 1.0;
        if p > POSITIONS {
            self.at_position[POSITIONS] += 1.0;
        }
    }

    /// The chance that a visit with `ops` operations so far goes on.
    fn going_on(&self, ops: u32) -> f64 {
        let p = (ops.max(1) as usize).min(POSITIONS);
        let c = &self.at_position;
        let (next, this) = match p {
            // Operations at exactly position p + 1 (the last count holds every later one).
            _ if p + 1 < POSITIONS => (c[p], c[p - 1]),
            _ if p + 1 == POSITIONS => (c[p] - c[p + 1], c[p - 1]),
            _ => (c[POSITIONS], c[POSITIONS - 1]),
        };
        if this <= 0.0 {
            return self.continued;
        }
        (next / this).clamp(1e-3, 0.999)
    }

    /// The chance that a new visit is a real session: `min(1, q(1)/q(2))`.
    fn weight(&self) -> f64 {
        (self.going_on(1) / self.going_on(2)).min(1.0)
    }

    fn same_visit(&mut self, gap: u64) {
        self.gap += (gap as f64 - self.gap) * self.gap_rate;
        self.gaps[63 - gap.max(1).leading_zeros() as usize] += 1.0;
        self.gap_samples += 1;
        if self.gap_samples.is_multiple_of(1024) {
            self.learn_gaps();
            if self.gap_samples.is_multiple_of(16_384) {
                self.gaps.iter_mut().for_each(|c| *c *= 0.5);
            }
        }
    }

    /// Recomputes the survival and mean excess of the gaps within visits at each power of
    /// two (a bucket's gaps taken at its middle, 1.5 × its lower bound).
    fn learn_gaps(&mut self) {
        let total: f64 = self.gaps.iter().sum();
        if total <= 0.0 {
            return;
        }
        // From the top bucket down: the count and the sum of the gaps of at least 2^b.
        let (mut count, mut sum) = (0.0, 0.0);
        self.survival[64] = 0.0;
        self.excess[64] = 0.0;
        for b in (0..64).rev() {
            let low = (b as f64).exp2();
            count += self.gaps[b];
            sum += self.gaps[b] * 1.5 * low;
            self.survival[b] = count / total;
            self.excess[b] = if count > 0.0 { sum / count - low } else { 0.0 };
        }
        self.learnt = true;
    }

    /// The share of gaps within visits longer than `idle`, and their mean excess over it.
    fn tail(&self, idle: u64) -> (f64, f64) {
        if idle == 0 {
            return (1.0, self.excess[0] + 1.0);
        }
        let b = 63 - idle.leading_zeros() as usize;
        let low = (b as f64).exp2();
        let f = (idle as f64 - low) / low;
        let survival = self.survival[b] + (self.survival[b + 1] - self.survival[b]) * f;
        let excess = self.excess[b] + (self.excess[b + 1] - self.excess[b]) * f;
        (survival, excess.max(1.0))
    }

    fn operation(&mut self, continued: bool) {
        let value = if continued { 1.0 } else { 0.0 };
        self.continued += (value - self.continued) * VISIT_MODEL_RATE;
    }

    fn record_gap(&mut self, gap: u64) {
        self.buckets[63 - gap.max(1).leading_zeros() as usize] += 1.0;
        self.samples += 1;
        if self.samples.is_multiple_of(1024) {
            let total: f64 = self.buckets.iter().sum();
            let mut seen = 0.0;
            for (b, &count) in self.buckets.iter().enumerate() {
                seen += count;
                if seen * 2.0 >= total {
                    let median = (b as f64 + 0.5).exp2();
                    self.span = (median * SPAN_FACTOR).round().max(2.0) as u64;
                    break;
                }
            }
            if self.samples.is_multiple_of(16_384) {
                self.buckets.iter_mut().for_each(|c| *c *= 0.5);
            }
        }
    }

    /// Expected uses per request of a key idle for `idle` requests, from its visit, which
    /// goes on with chance `q` after its last operation.
    fn rate(&self, idle: u64, q: f64, learnt: bool) -> f64 {
        if learnt && self.learnt {
            let (survival, excess) = self.tail(idle);
            if survival <= 0.0 {
                return 0.0;
            }
            let going_on = q * survival;
            return going_on / (going_on + 1.0 - q) / excess;
        }
        let gap = self.gap.max(1.0);
        if idle as f64 > FORGOTTEN_VISIT_GAPS * gap {
            return 0.0;
        }
        let going_on = q * (-(idle as f64) / gap).exp();
        going_on / (going_on + 1.0 - q) / gap
    }
}

/// What the expert knows of a key.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    counts: Counts,
    last_use: u64,
    /// [`History::rank`] of `counts`, while cached.
    rank: f64,
    cached: bool,
    /// Operations in the key's current visit.
    ops: u32,
    /// Weight of the current visit not counted yet (added at its second operation).
    pending: f64,
    /// The key's finished first operations, and those its visit went on after (decayed by
    /// halving both).
    firsts: f32,
    seconds: f32,
}

/// An `f64` ordered by `total_cmp`, for the popularity index.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rank(f64);

impl Eq for Rank {}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Rank {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The variant of the session-aware expert (see the module documentation); the victim
/// search is the branch and bound of `visits.rs`.
#[derive(Debug)]
pub struct Visits2Expert {
    config: Config,
    visits: Visits,
    history: History,
    entries: Vec<Entry>,
    cached: u64,
    /// Cached keys by popularity rank.
    by_rank: BTreeSet<(Rank, u32)>,
    maximum: u64,
    clock: u64,
    /// The victim computed at `clock` (a decision and the miss after it share one search).
    memo: Option<(u64, u32)>,
}

impl Default for Visits2Expert {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

/// The expert named `name` when it is a `visits2[:…]` variant.
pub fn expert_variant(name: &str) -> Option<Box<dyn Expert + Send>> {
    Config::parse(name).map(|c| Box::new(Visits2Expert::new(c)) as Box<dyn Expert + Send>)
}

impl Visits2Expert {
    /// An empty cache (maximum 0 until [`Expert::resize`]).
    pub fn new(config: Config) -> Self {
        Self {
            config,
            visits: Visits {
                gap_rate: config.gap_rate,
                ..Visits::new()
            },
            history: History::new(&config),
            entries: Vec::new(),
            cached: 0,
            by_rank: BTreeSet::new(),
            maximum: 0,
            clock: 0,
            memo: None,
        }
    }

    fn cached(&self) -> u64 {
        self.cached
    }

    /// The chance that the visit of a key with `ops` operations so far goes on.
    fn going_on(&self, ops: u32) -> f64 {
        if self.config.by_position {
            self.visits.going_on(ops)
        } else {
            self.visits.continued
        }
    }

    /// The chance that the visit of `entry`, at its first operation, goes on: the key's own
    /// record shrunk towards `global`.
    fn own_going_on(&self, entry: &Entry, global: f64) -> f64 {
        let prior = self.config.per_key;
        ((f64::from(entry.seconds) + prior * global) / (f64::from(entry.firsts) + prior))
            .clamp(1e-3, 0.999)
    }

    /// The chance that a new visit of a key with long-memory count `long` is a real session
    /// (see [`Config::bayes`]), when the share of new visits that are is `w`.
    fn real_chance(&self, long: f64, total_long: f64, w: f64) -> f64 {
        let u = 1.0 / self.entries.len().max(1) as f64;
        let share = if total_long > 0.0 {
            (long / total_long).max(u)
        } else {
            u
        };
        if w >= 1.0 {
            return 1.0;
        }
        w * share / (w * share + (1.0 - w) * u)
    }

    /// New visits per request, as counted in the popularity memory.
    fn visits_per_request(&self) -> f64 {
        if self.config.weighted_visit_rate && self.visits.requests > 0.0 {
            self.visits.weighted / self.visits.requests
        } else {
            1.0 - self.visits.continued
        }
    }

    /// The lowest-valued cached key.
    fn lowest(&mut self) -> Option<u32> {
        if let Some((clock, key)) = self.memo {
            if clock == self.clock && self.contains(key) {
                return Some(key);
            }
        }
        let now = self.clock;
        let total_long = self.history.long(self.history.total, now);
        let per_visit = if total_long > 0.0 {
            self.visits_per_request() / total_long * total_long / (total_long + self.config.young)
        } else {
            0.0
        };
        let mut q = [0.0; POSITIONS + 1];
        for (ops, q) in q.iter_mut().enumerate() {
            *q = self.going_on(ops as u32);
        }
        // Every value is at least the key's popularity term, and the keys are visited by
        // increasing popularity: once that term alone reaches the best value, no key left
        // can beat it.
        let w = self.visits.weight();
        let mut best: Option<(f64, u32)> = None;
        for &(_, key) in &self.by_rank {
            let entry = &self.entries[key as usize];
            let long = self.history.long(entry.counts, now);
            let popularity = long * per_visit;
            if best.is_some_and(|(b, _)| popularity >= b) {
                break;
            }
            let going_on = if entry.ops <= 1 && self.config.bayes {
                q[1].max(self.real_chance(long, total_long, w) * q[2])
            } else if entry.ops <= 1 && self.config.per_key > 0.0 {
                self.own_going_on(entry, q[1])
            } else {
                q[(entry.ops as usize).min(POSITIONS)]
            };
            let value = self
                .visits
                .rate(now - entry.last_use, going_on, self.config.learnt_gaps)
                + popularity;
            if best.is_none_or(|(b, _)| value < b) {
                best = Some((value, key));
            }
        }
        let key = best.map(|(_, k)| k)?;
        self.memo = Some((now, key));
        Some(key)
    }

    fn evict(&mut self, key: u32) {
        let Some(entry) = self.entries.get_mut(key as usize) else {
            return;
        };
        if entry.cached {
            entry.cached = false;
            self.by_rank.remove(&(Rank(entry.rank), key));
            self.cached -= 1;
        }
    }

    /// Files `key` (cached from now on) with `counts` in the popularity index; after a
    /// popularity shift every cached key is re-filed.
    fn file(&mut self, key: u32, counts: Counts, reset_at: u64) {
        let entry = &mut self.entries[key as usize];
        if entry.cached {
            self.by_rank.remove(&(Rank(entry.rank), key));
        }
        entry.counts = counts;
        entry.cached = true;
        entry.rank = self.history.rank(counts);
        self.by_rank.insert((Rank(entry.rank), key));
        if self.history.reset_at != reset_at {
            self.rerank();
        }
    }

    /// Recomputes every cached key's rank (after the half-life or the reset point changed).
    fn rerank(&mut self) {
        self.by_rank.clear();
        for (key, entry) in self.entries.iter_mut().enumerate() {
            if entry.cached {
                entry.rank = self.history.rank(entry.counts);
                self.by_rank.insert((Rank(entry.rank), key as u32));
            }
        }
    }
}

impl Expert for Visits2Expert {
    fn name(&self) -> &'static str {
        "visits2"
    }

    fn request(&mut self, key: u32, _hash: i32) -> bool {
        if self.entries.len() <= key as usize {
            self.entries.resize(key as usize + 1, Entry::default());
        }
        let now = self.clock + 1;
        let entry = self.entries[key as usize];
        let hit = entry.cached;
        let gap = now - entry.last_use;
        if !hit && self.cached() >= self.maximum {
            // The victim as of the previous request (what a decision saw).
            if let Some(victim) = self.lowest() {
                self.evict(victim);
            }
        }
        self.clock = now;
        self.visits.tick(self.config.position_rate);
        if hit {
            self.visits.record_gap(gap);
        }
        let seen = entry.last_use > 0;
        let continued = seen && gap <= self.visits.span && (hit || self.config.reopen_continues);
        self.visits.operation(continued);
        let reset_at = self.history.reset_at;
        let ops = if continued { entry.ops + 1 } else { 1 };
        self.visits.position(ops);
        if self.config.per_key > 0.0 && (ops == 2 || (ops == 1 && entry.ops == 1)) {
            // The key's last first operation is settled: its visit went on, or it was alone.
            let e = &mut self.entries[key as usize];
            e.firsts += 1.0;
            if ops == 2 {
                e.seconds += 1.0;
            }
            if e.firsts >= 64.0 {
                e.firsts *= 0.5;
                e.seconds *= 0.5;
            }
        }
        let counts = if continued {
            self.visits.same_visit(gap);
            let pending = entry.pending;
            if ops == 2 && pending > 0.0 {
                self.entries[key as usize].pending = 0.0;
                self.visits.weighted += pending;
                Some(self.history.add(key, now, pending))
            } else {
                None
            }
        } else {
            let weight = if self.config.weigh_visits && self.config.bayes {
                let long = self.history.counts(key, now).long;
                let total = self.history.long(self.history.total, now);
                self.real_chance(long, total, self.visits.weight())
            } else if self.config.weigh_visits && self.config.per_key > 0.0 {
                let own = self.own_going_on(&self.entries[key as usize], self.visits.going_on(1));
                (own / self.visits.going_on(2)).min(1.0)
            } else if self.config.weigh_visits {
                self.visits.weight()
            } else {
                1.0
            };
            let evidence = if seen && (gap as f64) <= self.config.near * self.visits.span as f64 {
                0.0
            } else if self.config.weighted_detector {
                weight
            } else {
                1.0
            };
            if self.config.min_short_visits > 0.0 {
                let rate = (1.0 - self.visits.continued).max(1e-3);
                self.history
                    .set_short_floor(self.config.min_short_visits / rate, self.maximum as usize);
            }
            self.entries[key as usize].pending = 1.0 - weight;
            self.visits.weighted += weight;
            Some(self.history.visit(key, now, weight, evidence))
        };
        let entry = &mut self.entries[key as usize];
        entry.last_use = now;
        entry.ops = ops;
        if !hit {
            self.cached += 1;
        }
        match counts {
            Some(counts) => self.file(key, counts, reset_at),
            None if !hit => {
                let counts = self.history.counts(key, now);
                self.file(key, counts, reset_at);
            }
            None => {}
        }
        hit
    }

    fn contains(&self, key: u32) -> bool {
        self.entries.get(key as usize).is_some_and(|e| e.cached)
    }

    fn next_victim(&mut self) -> Option<u32> {
        self.lowest()
    }

    fn remove(&mut self, key: u32) {
        self.evict(key);
    }

    fn resize(&mut self, maximum: u64) {
        self.memo = None;
        self.maximum = maximum;
        self.history.set_capacity(maximum as usize);
        self.rerank();
        while self.cached() > maximum {
            match self.lowest() {
                Some(victim) => self.evict(victim),
                None => break,
            }
            self.memo = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::visits::VisitsExpert;
    use super::*;

    /// A small deterministic generator (xorshift64*), uniform in [0, 1).
    fn uniform(state: &mut u64) -> f64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `requests` requests of 8 concurrent sessions of 1–8 operations on keys drawn with a
    /// skew (key = 2000^u, shuffled by `offset` after `shift`); from `scan` on, every other
    /// request goes to the next of keys 0–4,999, once each (a scan of every key).
    fn trace(requests: usize, scan: usize, shift: usize, offset: u32) -> Vec<u32> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut sessions = [(0u32, 0u32); 8];
        let mut scanned = 0u32;
        let mut out = Vec::with_capacity(requests);
        for i in 0..requests {
            if i >= scan && scanned < 5000 && i % 2 == 0 {
                out.push(scanned);
                scanned += 1;
                continue;
            }
            let s = (uniform(&mut state) * 8.0) as usize;
            if sessions[s].1 == 0 {
                let key = 2000f64.powf(uniform(&mut state)) as u32;
                let key = if i >= shift {
                    (key * 7919 + offset) % 2000
                } else {
                    key
                };
                sessions[s] = (key, 1 + (uniform(&mut state) * 8.0) as u32);
            }
            sessions[s].1 -= 1;
            out.push(sessions[s].0);
        }
        out
    }

    fn hits(expert: &mut dyn Expert, requests: &[u32]) -> u32 {
        requests
            .iter()
            .map(|&k| u32::from(expert.request(k, 0)))
            .sum()
    }

    #[test]
    fn switches_parse() {
        assert_eq!(Config::parse("visits2"), Some(Config::default()));
        assert_eq!(Config::parse("visits"), None);
        assert_eq!(Config::parse("visits2x"), None);
        assert_eq!(Config::parse("visits2:nope"), None);
        assert_eq!(Config::parse("visits2:port"), Some(Config::port()));
        let c = Config::parse("visits2:asvisits:near=2:shift=15:hazard:pos=0").unwrap();
        assert_eq!(c.near, 2.0);
        assert_eq!(c.shift_evidence, 15.0);
        assert!(c.learnt_gaps && !c.by_position && !c.weigh_visits);
    }

    #[test]
    fn as_visits_decides_as_visits() {
        // With its switches off the variant is `visits`: same hits and same next victim at
        // every request, through a scan and a popularity shift.
        let requests = trace(60_000, 20_000, 35_000, 977);
        let mut old = VisitsExpert::new();
        let mut new = Visits2Expert::new(Config::as_visits());
        old.resize(60);
        new.resize(60);
        for (i, &k) in requests.iter().enumerate() {
            assert_eq!(old.request(k, 0), new.request(k, 0), "request {i}");
            assert_eq!(old.next_victim(), new.next_victim(), "request {i}");
        }
    }

    #[test]
    fn sessions_on_skewed_keys_beat_lru() {
        let requests = trace(100_000, usize::MAX, usize::MAX, 0);
        let mut visits = Visits2Expert::default();
        let mut lru = super::super::experts::Lru::new();
        visits.resize(50);
        lru.resize(50);
        let (v, l) = (hits(&mut visits, &requests), hits(&mut lru, &requests));
        assert!(v > l + 1000, "visits2 {v} hits, lru {l}");
        assert!(visits.cached() <= 50);
    }

    #[test]
    fn a_scan_costs_less_than_with_visits() {
        // The synthetic trace with nothing but sessions and a scan of every key: during the
        // scan q(1) collapses, its keys lose their protection after one operation and their
        // visits hardly count, so the cache is less disturbed than with `visits`.
        let spec = super::super::trace::TraceSpec {
            tenants: 10_000,
            requests: 100_000,
            scan_at: 0.5,
            shift_at: 2.0,
            bursts: 0,
            pinned: 0,
            ..Default::default()
        };
        let requests = super::super::trace::generate(&spec).requests;
        let mut old = VisitsExpert::new();
        let mut new = Visits2Expert::default();
        old.resize(100);
        new.resize(100);
        let (mut old_hits, mut new_hits) = (0, 0);
        for (i, &k) in requests.iter().enumerate() {
            let (o, n) = (old.request(k, 0), new.request(k, 0));
            // The scan takes about 20,000 requests from 50,000 on.
            if (50_000..70_000).contains(&i) {
                old_hits += u32::from(o);
                new_hits += u32::from(n);
            }
        }
        assert!(
            new_hits > old_hits + 200,
            "visits2 {new_hits}, visits {old_hits}"
        );
        // The weight of a new visit, after the scan, is back near 1.
        assert!(new.visits.weight() > 0.8, "{}", new.visits.weight());
    }

    #[test]
    fn the_detector_fires_on_the_shift_only() {
        let requests = trace(80_000, usize::MAX, 40_000, 977);
        let mut expert = Visits2Expert::default();
        expert.resize(60);
        let mut resets = Vec::new();
        for &k in &requests {
            let before = expert.history.reset_at;
            expert.request(k, 0);
            if expert.history.reset_at != before {
                resets.push(expert.history.reset_at);
            }
        }
        assert_eq!(resets.len(), 1, "{resets:?}");
        assert!((40_000..50_000).contains(&resets[0]), "{resets:?}");
    }
}
