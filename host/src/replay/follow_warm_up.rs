//! The follower's warm-up: the requests recorded before the first decision (the capacity was
//! not known) replayed into the experts, at most [`WARM_UP_STEP`] per call (decisions and
//! calls with events only alike), so that a host that ran long before its first eviction does
//! not pay the whole replay in one call. Until the last step, decisions close the least
//! recently used offered pool, new requests queue behind the recorded ones, and no key number
//! is swept (`follow_keys.rs`): the record refers to them.

use super::Follower;

/// The most recorded requests replayed into the experts in one call during the warm-up: a few
/// milliseconds in wasm with five experts.
pub const WARM_UP_STEP: usize = 8192;

impl Follower {
    /// Whether recorded requests are still to be replayed into the experts (the capacity is
    /// known but the warm-up is not over).
    pub(super) fn warming(&self) -> bool {
        self.started && self.history_fed < self.history.len()
    }

    /// Replays the next [`WARM_UP_STEP`] recorded requests into the experts, if a warm-up is
    /// under way; whether one still is after it. After the last, the hit counts start from
    /// zero (what the experts did on the recorded requests is not evidence about the real
    /// pools, which evicted nothing then).
    pub(super) fn warm_up(&mut self) -> bool {
        if !self.warming() {
            return false;
        }
        let end = self
            .history
            .len()
            .min(self.history_fed.saturating_add(self.warm_up_step));
        for at in self.history_fed..end {
            let key = self.history[at];
            if !self.pinned[key as usize] {
                self.feed(key);
            }
        }
        self.history_fed = end;
        if end < self.history.len() {
            return true;
        }
        self.history = Vec::new();
        self.history_fed = 0;
        self.hits.iter_mut().for_each(|h| *h = 0.0);
        self.lead.iter_mut().for_each(|h| *h = 0.0);
        self.lead_squares.iter_mut().for_each(|h| *h = 0.0);
        self.excess.iter_mut().for_each(|h| *h = 0.0);
        self.weight = 0.0;
        self.real_hits = 0.0;
        false
    }

    /// Sets the most recorded requests replayed per call during the warm-up (the default is
    /// [`WARM_UP_STEP`]; at least 1).
    pub fn set_warm_up_step(&mut self, step: usize) {
        self.warm_up_step = step.max(1);
    }
}
