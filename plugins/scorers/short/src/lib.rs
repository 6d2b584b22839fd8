//! `scorer-short` (test fixture): answers with one score fewer than there are pools (finite
//! scores otherwise). The host must reject the list and fall back to the built-in policy.

wit_bindgen::generate!({ world: "scorer", path: "../../../wit" });

use exports::polymongo::plugin::scoring::{Event, Guest, PoolStats};

struct Short;

impl Guest for Short {
    fn score_all(
        _events: Vec<Event>,
        _dropped: u64,
        pools: Vec<PoolStats>,
        _now_ms: u64,
    ) -> Vec<f64> {
        pools.iter().skip(1).map(|p| -(p.idle_ms as f64)).collect()
    }
}

export!(Short);
