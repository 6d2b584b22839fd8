//! The popularity memory of [`Visits2Expert`](super::Visits2Expert): per-key visit counts
//! with a long and a short memory, and the shift detector that replaces the long one by the
//! short one.

use super::*;

/// A key's visit counts in both memories, as of request `at`.
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct Counts {
    pub(super) long: f64,
    pub(super) short: f64,
    pub(super) at: u64,
}

/// Per-key visit counts with a long and a short memory, and the shift detector.
#[derive(Debug)]
pub(super) struct History {
    pub(super) map: FastMap<u32, Counts>,
    pub(super) total: Counts,
    pub(super) long_half_life: f64,
    pub(super) short_half_life: f64,
    pub(super) evidence: f64,
    pub(super) reset_at: u64,
    pub(super) limit: usize,
    pub(super) short_per_slot: f64,
    pub(super) min_short: f64,
    pub(super) hold: f64,
    pub(super) mix: f64,
    pub(super) oracle: u64,
    pub(super) shift_evidence: f64,
}

impl History {
    pub(super) fn new(config: &Config) -> Self {
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
    pub(super) fn set_short_floor(&mut self, requests: f64, slots: usize) {
        let half_life = (self.short_per_slot * slots.max(16) as f64)
            .max(self.min_short)
            .max(requests);
        self.short_half_life = half_life;
    }

    pub(super) fn set_capacity(&mut self, capacity: usize) {
        let slots = capacity.max(16);
        self.long_half_life = LONG_HALF_LIFE_PER_SLOT * slots as f64;
        self.short_half_life = (self.short_per_slot * slots as f64).max(self.min_short);
        self.limit = HISTORY_PER_SLOT * slots;
    }

    pub(super) fn short(&self, counts: Counts, now: u64) -> f64 {
        decay(counts.short, now - counts.at, self.short_half_life)
    }

    /// The long-memory count (the short one at the last reset if the long one is stale).
    pub(super) fn long(&self, counts: Counts, now: u64) -> f64 {
        if counts.at < self.reset_at {
            let at_reset = self.short(counts, self.reset_at);
            decay(at_reset, now - self.reset_at, self.long_half_life)
        } else {
            decay(counts.long, now - counts.at, self.long_half_life)
        }
    }

    /// A number that orders keys as their long-memory counts do at any one time, and does
    /// not change as time passes: `log2` of the count, plus the time in half-lives.
    pub(super) fn rank(&self, counts: Counts) -> f64 {
        if counts.at < self.reset_at {
            self.short(counts, self.reset_at).log2() + self.reset_at as f64 / self.long_half_life
        } else {
            counts.long.log2() + counts.at as f64 / self.long_half_life
        }
    }

    pub(super) fn at(&self, counts: Counts, now: u64) -> Counts {
        Counts {
            long: self.long(counts, now),
            short: self.short(counts, now),
            at: now,
        }
    }

    pub(super) fn counts(&self, key: u32, now: u64) -> Counts {
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
    pub(super) fn visit(
        &mut self,
        key: u32,
        now: u64,
        weight: f64,
        evidence_weight: f64,
    ) -> Counts {
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
    pub(super) fn add(&mut self, key: u32, now: u64, weight: f64) -> Counts {
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
    pub(super) fn detect(&mut self, counts: Counts, total: Counts, now: u64, weight: f64) {
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
    pub(super) fn forget(&mut self, now: u64) {
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
