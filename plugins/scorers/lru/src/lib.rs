//! `scorer-lru`: least recently used as a scorer component. The score is `-(idle_ms)`: the
//! pool idle longest is closed first (ties to the pool opened first, by the host).

wit_bindgen::generate!({ world: "scorer", path: "../../../wit" });

use exports::polymongo::plugin::scoring::{Event, Guest, PoolStats};

struct Lru;

impl Guest for Lru {
    fn score_all(
        _events: Vec<Event>,
        _dropped: u64,
        pools: Vec<PoolStats>,
        _now_ms: u64,
    ) -> Vec<f64> {
        pools.iter().map(|p| -(p.idle_ms as f64)).collect()
    }
}

export!(Lru);
