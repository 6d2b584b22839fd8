//! The follower's choice of leader: when a challenger's lead is clear and pays for the switch
//! (the margin, the paired test, the learnt switch cost, or the CUSUM rule of [`LeaderRule`]),
//! and what a switch costs, measured over the switches so far.
//!
//! [`LeaderRule`]: super::LeaderRule

use super::Follower;

impl Follower {
    /// Whether expert `challenger` leads the current leader clearly enough to take over.
    pub(super) fn clear_lead(&self, challenger: usize) -> bool {
        let margin = self
            .rule
            .margin_in_hits(self.weight, self.hits[self.leader]);
        if self.hits[challenger] <= self.hits[self.leader] + margin {
            return false;
        }
        if self.rule.confidence <= 0.0 {
            return true;
        }
        let at = challenger * self.hits.len() + self.leader;
        self.lead[at] > self.rule.confidence * self.lead_squares[at].sqrt()
    }

    /// CUSUM rule (see [`LeaderRule::cusum_cost`]).
    pub(super) fn choose_leader_by_excess(&mut self) {
        let mut best: Option<usize> = None;
        for c in 0..self.hits.len() {
            if c == self.leader || self.excess[c] <= self.rule.cusum_cost * self.missing[c] as f64 {
                continue;
            }
            // Count again only when the excess passed the last count (it changes slowly).
            self.missing[c] = self.not_held_by(c);
            if self.excess[c] > self.rule.cusum_cost * self.missing[c] as f64
                && best.is_none_or(|b| self.excess[c] > self.excess[b])
            {
                best = Some(c);
            }
        }
        if let Some(best) = best {
            self.leader = best;
            self.excess.iter_mut().for_each(|e| *e = 0.0);
            self.missing.iter_mut().for_each(|m| *m = 0);
        }
    }

    /// How many of the real evictable pools expert `expert` does not hold (a pass over them).
    pub(super) fn not_held_by(&self, expert: usize) -> usize {
        self.pools
            .values()
            .filter(|&&k| !self.pinned[k as usize] && !self.holds(expert, k))
            .count()
    }

    pub(super) fn choose_leader(&mut self) {
        if self.rule.cusum_cost > 0.0 {
            self.choose_leader_by_excess();
            return;
        }
        let best = (0..self.hits.len())
            .filter(|&c| c != self.leader && self.clear_lead(c))
            .max_by(|&a, &b| self.hits[a].total_cmp(&self.hits[b]));
        if let Some(best) = best {
            let mut missing = None;
            if self.rule.switch_cost > 0.0 || self.rule.learnt_cost > 0.0 {
                let lead = self.hits[best] - self.hits[self.leader];
                let per_pool = self
                    .rule
                    .switch_cost
                    .max(self.rule.learnt_cost * self.cost_per_missing_pool());
                // Counting is a pass over the pools: count again only when the lead passes
                // the threshold of the last count, or once per `maximum` decisions (the
                // count changes slowly), so that a lead too small to pay costs O(1).
                let stale = self.decisions >= self.counted_at[best] + self.maximum;
                if lead <= per_pool * self.missing[best] as f64 && !stale {
                    return;
                }
                self.missing[best] = self.not_held_by(best);
                self.counted_at[best] = self.decisions;
                let count = self.missing[best] as f64;
                if lead <= per_pool * count {
                    return;
                }
                missing = Some(count);
            }
            self.switch_to(best, missing);
        }
    }

    /// Measured misses per real pool a new leader did not hold, over the switches so far
    /// (the one in progress counts with its regret so far); 0 before the first switch.
    pub(super) fn cost_per_missing_pool(&self) -> f64 {
        let prior = if self.rule.cost_prior > 0.0 {
            self.maximum as f64
        } else {
            0.0
        };
        let (regret, missing) = if self.switched {
            (
                self.past_regret + self.regret.max(0.0),
                self.past_missing + self.switch_missing,
            )
        } else {
            (self.past_regret, self.past_missing)
        };
        let (regret, missing) = (regret + self.rule.cost_prior * prior, missing + prior);
        if missing > 0.0 {
            regret / missing
        } else {
            0.0
        }
    }

    /// Makes `leader` the leader; `missing`: the real pools it does not hold, when counted.
    pub(super) fn switch_to(&mut self, leader: usize, missing: Option<f64>) {
        if self.switched {
            self.past_regret += self.regret.max(0.0);
            self.past_missing += self.switch_missing;
        }
        self.leader = leader;
        self.regret = 0.0;
        self.missing.iter_mut().for_each(|m| *m = 0);
        self.switch_missing = missing.unwrap_or(0.0);
        self.switched = true;
    }
}
