//! How a [`Follower`](super::follow::Follower) chooses the expert it follows: the
//! [`LeaderRule`] (hysteresis margin, optional paired test, fixed or learnt switch cost,
//! CUSUM, lazy or eager migration).
//!
//! No dependency beyond std, so that a scorer component can include this file.

/// How the leader is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeaderRule {
    /// Half-life of the virtual hit counts, in requests per unit of capacity.
    pub half_life_per_slot: f64,
    /// Another expert takes the lead when its decayed hit ratio exceeds the leader's by more
    /// than this (hysteresis: switching costs misses while the real pools converge).
    pub margin: f64,
    /// When above 0, the margin is at most this share of the leader's decayed miss ratio
    /// (`min(margin, relative_margin × (1 − leader's hit ratio))`): where nearly every
    /// request hits, a 1-point margin is most of what any policy can gain, and a better
    /// expert would never be followed.
    pub relative_margin: f64,
    /// ... and when its lead over the leader, request by request, is this many standard
    /// errors above zero (a paired test on the decayed hit differences; 0 disables it).
    pub confidence: f64,
    /// ... and when its decayed lead in hits exceeds this many times the number of real pools
    /// it does not hold (what following it would cost in misses at most; 0 disables it).
    pub switch_cost: f64,
    /// Scale of the hit-ratio differences within which the other experts' wishes count when
    /// the real pools converge to the leader's (see `least_supported_stray`; 0: least
    /// recently used first).
    pub support_scale: f64,
    /// When above 0, the leader is chosen by a CUSUM instead: each other expert accumulates
    /// its excess hits over the leader's (never below 0), and takes the lead when they exceed
    /// this many times the number of real pools it does not hold (the most misses the switch
    /// can cost). `margin`, `confidence` and `switch_cost` are then unused.
    pub cusum_cost: f64,
    /// Lazy migration: the leader's own next victim goes first when it is open, the real
    /// pools it does not hold only when it is not (they then converge only as far as the
    /// leader's victims force them).
    pub lazy: bool,
    /// When above 0, a challenger with a clear lead also needs a decayed lead in hits above
    /// this many times the *measured* cost of a switch: the real misses past switches cost
    /// (the new leader's virtual hits minus the real hits, from the switch to the next), per
    /// real pool the new leader did not hold, times the pools the challenger does not hold.
    /// Nothing is assumed before the first switch; the cost is learnt, not tuned.
    pub learnt_cost: f64,
    /// Prior of the learnt cost, in misses per missing pool, worth `maximum` pools of
    /// evidence (0: no prior, the first switch is free).
    pub cost_prior: f64,
    /// When above 0, each eviction is decided by a weighted vote of the experts instead of
    /// following the leader (`vote.rs`); this is the scale of the hit-ratio differences in
    /// the weights.
    pub vote: f64,
    /// The vote only chooses among the leader's own next victim and the real pools the leader
    /// does not hold (so the real pools still converge to the leader's cache).
    pub vote_within: bool,
    /// The vote falls back to following the leader for good once the real pools' decayed
    /// hit ratio is more than `margin` below the best expert's.
    pub vote_fallback: bool,
    /// ... by this much instead of `margin` (when set).
    pub vote_fallback_margin: Option<f64>,
    /// When above 0, the weighted vote is also simulated as a virtual cache of its own (an
    /// expert the follower can follow; `vote.rs`, `Blend`), with this scale.
    pub blend: f64,
}

impl Default for LeaderRule {
    fn default() -> Self {
        Self {
            half_life_per_slot: 10.0,
            margin: 0.01,
            relative_margin: 0.1,
            confidence: 0.0,
            switch_cost: 0.0,
            support_scale: 0.01,
            cusum_cost: 0.0,
            lazy: true,
            learnt_cost: 1.0,
            cost_prior: 0.0,
            vote: 0.0,
            vote_within: false,
            vote_fallback: false,
            vote_fallback_margin: None,
            blend: 0.0,
        }
    }
}

impl LeaderRule {
    /// The lead in decayed hits a challenger needs over the leader before the other tests:
    /// the margin, or less where the leader misses rarely (see [`Self::relative_margin`]).
    /// `weight` is the decayed number of requests, `leader_hits` the leader's decayed hits.
    pub fn margin_in_hits(&self, weight: f64, leader_hits: f64) -> f64 {
        let absolute = self.margin * weight;
        if self.relative_margin > 0.0 {
            absolute.min(self.relative_margin * (weight - leader_hits).max(0.0))
        } else {
            absolute
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_shrinks_where_the_leader_rarely_misses() {
        let rule = LeaderRule::default();
        // 1,000 requests, the leader hits 500: 1 point (10 hits) is less than 10% of 500.
        assert!((rule.margin_in_hits(1000.0, 500.0) - 10.0).abs() < 1e-9);
        // The leader hits 950: 10% of its 50 misses (5 hits) is less than 1 point.
        assert!((rule.margin_in_hits(1000.0, 950.0) - 5.0).abs() < 1e-9);
        // Off: always the absolute margin.
        let absolute = LeaderRule {
            relative_margin: 0.0,
            ..rule
        };
        assert!((absolute.margin_in_hits(1000.0, 950.0) - 10.0).abs() < 1e-9);
    }
}
