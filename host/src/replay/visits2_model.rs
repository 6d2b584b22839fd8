//! The visit model of `visits2` (`visits2.rs`): the visit span, the chance that a visit goes
//! on (overall and by position), and the gaps within a visit.

use super::{FORGOTTEN_VISIT_GAPS, INITIAL_SPAN, POSITIONS, SPAN_FACTOR, VISIT_MODEL_RATE};

/// The visit model: span, chance that a visit goes on (overall and by position), mean gap
/// within a visit.
#[derive(Debug)]
pub(super) struct Visits {
    pub(super) buckets: [f64; 64],
    pub(super) samples: u64,
    pub(super) span: u64,
    pub(super) continued: f64,
    pub(super) gap: f64,
    /// Decayed counts of operations at position 1, 2, …, `POSITIONS` (the last: at that
    /// position or later), and at a position past `POSITIONS`.
    pub(super) at_position: [f64; POSITIONS + 1],
    /// Decayed weighted visits counted, and requests (for the weighted visit rate).
    pub(super) weighted: f64,
    pub(super) requests: f64,
    /// Gaps within visits by `log2` bucket, and from them, at each power of two `t`: the
    /// share of gaps of at least `t` and their mean excess over `t`.
    pub(super) gaps: [f64; 64],
    pub(super) gap_samples: u64,
    pub(super) survival: [f64; 65],
    pub(super) excess: [f64; 65],
    pub(super) learnt: bool,
    pub(super) gap_rate: f64,
}

impl Visits {
    pub(super) fn new() -> Self {
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
    pub(super) fn tick(&mut self, rate: f64) {
        let keep = 1.0 - rate;
        self.at_position.iter_mut().for_each(|c| *c *= keep);
        let keep = 1.0 - VISIT_MODEL_RATE;
        self.weighted *= keep;
        self.requests = self.requests * keep + 1.0;
    }

    /// An operation at `position` (1 for the first of a visit).
    pub(super) fn position(&mut self, position: u32) {
        let p = position as usize;
        self.at_position[p.min(POSITIONS) - 1] += 1.0;
        if p > POSITIONS {
            self.at_position[POSITIONS] += 1.0;
        }
    }

    /// The chance that a visit with `ops` operations so far goes on.
    pub(super) fn going_on(&self, ops: u32) -> f64 {
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
    pub(super) fn weight(&self) -> f64 {
        (self.going_on(1) / self.going_on(2)).min(1.0)
    }

    pub(super) fn same_visit(&mut self, gap: u64) {
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
    pub(super) fn learn_gaps(&mut self) {
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
    pub(super) fn tail(&self, idle: u64) -> (f64, f64) {
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

    pub(super) fn operation(&mut self, continued: bool) {
        let value = if continued { 1.0 } else { 0.0 };
        self.continued += (value - self.continued) * VISIT_MODEL_RATE;
    }

    pub(super) fn record_gap(&mut self, gap: u64) {
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
    pub(super) fn rate(&self, idle: u64, q: f64, learnt: bool) -> f64 {
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
