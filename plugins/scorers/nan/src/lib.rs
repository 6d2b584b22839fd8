//! `scorer-nan` (test fixture): answers with the right number of scores, all NaN. The host
//! must reject the list and fall back to the built-in policy.

wit_bindgen::generate!({ world: "scorer", path: "../../../wit" });

use exports::polymongo::plugin::scoring::{Event, Guest, PoolStats};

struct Nan;

impl Guest for Nan {
    fn score_all(
        _events: Vec<Event>,
        _dropped: u64,
        pools: Vec<PoolStats>,
        _now_ms: u64,
    ) -> Vec<f64> {
        vec![f64::NAN; pools.len()]
    }
}

export!(Nan);
