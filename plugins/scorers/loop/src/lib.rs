//! `scorer-loop` (test fixture): loops forever on every call, without calling the host. The
//! host's deadline must stop it and the decision must fall back to the built-in policy.

wit_bindgen::generate!({ world: "scorer", path: "../../../wit" });

use exports::polymongo::plugin::scoring::{Event, Guest, PoolStats};

struct Loop;

impl Guest for Loop {
    fn score_all(
        _events: Vec<Event>,
        _dropped: u64,
        pools: Vec<PoolStats>,
        _now_ms: u64,
    ) -> Vec<f64> {
        let mut spins = 0u64;
        loop {
            spins = std::hint::black_box(spins.wrapping_add(pools.len() as u64 + 1));
            if std::hint::black_box(spins) == u64::MAX {
                // Never reached in practice; keeps the loop observable to the optimiser.
                return vec![0.0; pools.len()];
            }
        }
    }
}

export!(Loop);
