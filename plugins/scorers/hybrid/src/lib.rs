//! `scorer-hybrid`: five cache policies simulated side by side on the host's pool events —
//! W-TinyLFU with Caffeine's adaptive window, LRU, ARC, LIRS and a session-aware policy
//! (`visits2`, which alone is `scorer-adaptive`: a visit model with continuation by
//! position, one-off visits weighted down and a popularity-shift detector) — and the real
//! pools follow whichever had more hits lately, once their lead pays for what switching has
//! cost so far ([`leader`]).
//!
//! The policies are the replay tool's own code (`host/src/replay/{sketch,wtinylfu,experts,
//! visits2,lirs,leader,vote,follow}.rs`, included here; `vote` holds experiment switches of
//! the follower, off here), so while this scorer follows W-TinyLFU it makes exactly the
//! decisions of the replay tool's W-TinyLFU reference (but for a long warm-up: more than
//! [`follow::WARM_UP_STEP`] requests before the first eviction are replayed into the policies
//! that many per call, and until then the least recently used pool closes). See [`follow`]
//! for how the real pools follow a virtual cache.
//!
//! The answer is 0 for the pool to close and 1 for every other. Per event O(1) per policy
//! (the session-aware policy O(log K) per visit plus its victim search); per decision, when
//! the leader's victim is open and nothing was pinned since the last one, one pass comparing
//! pool ids (otherwise one hash-map lookup per offered pool), plus the answer itself.

wit_bindgen::generate!({ world: "scorer", path: "../../../wit" });

#[path = "../../../../host/src/replay/sketch.rs"]
pub mod sketch;

#[path = "../../../../host/src/replay/wtinylfu.rs"]
pub mod wtinylfu;

#[path = "../../../../host/src/replay/experts.rs"]
pub mod experts;

#[path = "../../../../host/src/replay/visits2.rs"]
pub mod visits2;

#[path = "../../../../host/src/replay/lirs.rs"]
pub mod lirs;

#[path = "../../../../host/src/replay/leader.rs"]
pub mod leader;

#[path = "../../../../host/src/replay/vote.rs"]
pub mod vote;

#[path = "../../../../host/src/replay/follow.rs"]
pub mod follow;

#[path = "../../follower_glue.rs"]
mod glue;

use std::cell::RefCell;

use experts::{Arc, Lru};
use exports::polymongo::plugin::scoring::{Event, Guest, PoolStats};
use follow::Follower;
use leader::LeaderRule;
use lirs::Lirs;
use visits2::Visits2Expert;
use wtinylfu::WTinyLfu;

thread_local! {
    static STATE: RefCell<Follower> = RefCell::new(Follower::new(
        vec![
            Box::new(WTinyLfu::new(0)),
            Box::new(Lru::new()),
            Box::new(Arc::new()),
            Box::new(Visits2Expert::default()),
            Box::new(Lirs::new()),
        ],
        LeaderRule::default(),
    ));
}

struct Hybrid;

impl Guest for Hybrid {
    fn score_all(
        events: Vec<Event>,
        _dropped: u64,
        pools: Vec<PoolStats>,
        _now_ms: u64,
    ) -> Vec<f64> {
        STATE.with(|state| glue::score_all(&mut state.borrow_mut(), events, &pools))
    }
}

export!(Hybrid);
