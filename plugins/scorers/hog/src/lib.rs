//! `scorer-hog` (test fixture): keeps 32 MiB more memory on every call and answers like LRU
//! (the pool idle longest scores lowest), until the memory limit of its instance makes an
//! allocation fail and it traps. The host must replace the instance and go on: only the
//! calls that trap fall back, and the host's own memory stays bounded by the limit.

wit_bindgen::generate!({ world: "scorer", path: "../../../wit" });

use std::cell::RefCell;

use exports::polymongo::plugin::scoring::{Event, Guest, PoolStats};

/// Memory kept on every call (written, so that it is really used).
const CHUNK: usize = 32 << 20;

thread_local! {
    static HOARD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

struct Hog;

impl Guest for Hog {
    fn score_all(
        _events: Vec<Event>,
        _dropped: u64,
        pools: Vec<PoolStats>,
        _now_ms: u64,
    ) -> Vec<f64> {
        HOARD.with(|hoard| hoard.borrow_mut().push(vec![1u8; CHUNK]));
        pools.iter().map(|p| -(p.idle_ms as f64)).collect()
    }
}

export!(Hog);
