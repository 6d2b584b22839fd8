//! `scorer-adaptive`: a session- and frequency-aware eviction scorer — the replay tool's
//! `visits2` policy, alone, on the host's pool events.
//!
//! Every open pool is valued by the rate at which its database is expected to be used again,
//! and the lowest goes. The rate is the sum of two estimates, both learnt from the events:
//!
//! - **the visit in progress**: operations come in *visits* (a session's operations, close
//!   together); a use within the *visit span* of the previous one (a multiple of the median
//!   reuse gap) belongs to the same visit. The chance that a visit goes on is learnt by
//!   position in the visit, with the mean gap between its operations; a pool idle for a
//!   while is still in its visit with a probability that fades continuously, and while it
//!   is, its next use comes soon. A pool in the middle of a visit is worth much more than its
//!   popularity.
//! - **the popularity of the database**: its share of recent visits (one-off visits counted
//!   at a lower weight), from per-database visit counts with a long memory, kept for closed
//!   databases too (bounded in number). A short memory is kept beside it, and a test on how
//!   well each predicts the next visits detects when popularity has shifted; the long memory
//!   is then replaced by the short one.
//!
//! The model is `host/src/replay/visits2.rs` (with `sketch`, `wtinylfu`, `experts`, `leader`,
//! `vote` and `follow`, which it is driven by), included here, so this scorer makes exactly
//! the replay tool's `follow:visits2` decisions. It is one of the five policies
//! `scorer-hybrid` follows; use that one where traffic is not made of tenant sessions (file
//! or block caches, loops, scans): see docs/EVICTION.md for both on public cache traces.
//! Until 2026-12-07 this crate held its own, older copy of the model (`visits`, tuned on the
//! project's synthetic traffic); the shared one decides better on 31 of the 32 suite rows.
//!
//! The capacity is learnt at the first decision (the number of pools offered), and the
//! requests before it are replayed into the model then, at most [`follow::WARM_UP_STEP`] per
//! call (the least recently used pool closes until the replay is over). Pools the scorer has
//! not heard of (it was restarted, or events were dropped) go first. The answer is 0 for the
//! chosen pool and 1 for every other.

wit_bindgen::generate!({ world: "scorer", path: "../../../wit" });

#[path = "../../../../host/src/replay/sketch.rs"]
pub mod sketch;

#[path = "../../../../host/src/replay/wtinylfu.rs"]
pub mod wtinylfu;

#[path = "../../../../host/src/replay/experts.rs"]
pub mod experts;

#[path = "../../../../host/src/replay/visits2.rs"]
pub mod visits2;

#[path = "../../../../host/src/replay/leader.rs"]
pub mod leader;

#[path = "../../../../host/src/replay/vote.rs"]
pub mod vote;

#[path = "../../../../host/src/replay/follow.rs"]
pub mod follow;

#[path = "../../follower_glue.rs"]
mod glue;

use std::cell::RefCell;

use exports::polymongo::plugin::scoring::{Event, Guest, PoolStats};
use follow::Follower;
use leader::LeaderRule;
use visits2::Visits2Expert;

thread_local! {
    static STATE: RefCell<Follower> = RefCell::new(Follower::new(
        vec![Box::new(Visits2Expert::default())],
        LeaderRule::default(),
    ));
}

struct Adaptive;

impl Guest for Adaptive {
    fn score_all(
        events: Vec<Event>,
        _dropped: u64,
        pools: Vec<PoolStats>,
        _now_ms: u64,
    ) -> Vec<f64> {
        STATE.with(|state| glue::score_all(&mut state.borrow_mut(), events, &pools))
    }
}

export!(Adaptive);
