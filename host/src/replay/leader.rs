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
