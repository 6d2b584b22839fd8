//! `scorer-counter` (test fixture): a scorer whose learnt state is the number of events it
//! has seen, given back as every pool's score, so a test can tell whether its state survived.
//! A pool with priority P >= 1000 makes the call spin (without calling the host) for P
//! milliseconds of wall-clock time after counting the call's events: a slow decision. A pool
//! with priority 999 makes it trap after counting them.

wit_bindgen::generate!({ world: "scorer", path: "../../../wit" });

use std::cell::Cell;
use std::time::{Duration, Instant};

use exports::polymongo::plugin::scoring::{Event, Guest, PoolStats};

/// Priorities from this one up are a number of milliseconds to spin.
const SLOW_FROM: i32 = 1000;

/// The priority that makes the call trap.
const TRAP: i32 = 999;

thread_local! {
    static SEEN: Cell<u64> = const { Cell::new(0) };
}

struct Counter;

impl Guest for Counter {
    fn score_all(
        events: Vec<Event>,
        dropped: u64,
        pools: Vec<PoolStats>,
        _now_ms: u64,
    ) -> Vec<f64> {
        let seen = SEEN.with(|s| {
            s.set(s.get() + events.len() as u64 + dropped);
            s.get()
        });
        if pools.iter().any(|p| p.priority == TRAP) {
            panic!("scorer-counter: deliberate trap after {seen} events");
        }
        if let Some(ms) = pools
            .iter()
            .map(|p| p.priority)
            .filter(|p| *p >= SLOW_FROM)
            .max()
        {
            let until = Instant::now() + Duration::from_millis(ms as u64);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        vec![seen as f64; pools.len()]
    }
}

export!(Counter);
