//! `scorer-trap` (test fixture): traps on every call. The host must fall back to its built-in
//! policy for every decision.

wit_bindgen::generate!({ world: "scorer", path: "../../../wit" });

use exports::polymongo::plugin::scoring::{Event, Guest, PoolStats};

struct Trap;

impl Guest for Trap {
    fn score_all(
        _events: Vec<Event>,
        _dropped: u64,
        _pools: Vec<PoolStats>,
        _now_ms: u64,
    ) -> Vec<f64> {
        // With `panic = "abort"` this is a wasm `unreachable` trap.
        panic!("scorer-trap traps on purpose")
    }
}

export!(Trap);
