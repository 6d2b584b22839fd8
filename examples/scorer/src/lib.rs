//! `decay-scorer`: a custom eviction scorer. Each database earns one point per operation, and
//! its points halve every `HALF_LIFE_MS` (set at build time, `SCORER_HALF_LIFE_MS`, default
//! 60 s): a pool busy long ago is worth less than one busy now, and a database keeps its points
//! when its pool is evicted and reopened (the scorer's instance lives between calls, and the
//! `opened` event names the database). Higher score = kept; the lowest is evicted.
//! Walkthrough: examples/README.md.

use std::collections::HashMap;
use std::sync::Mutex;

wit_bindgen::generate!({ world: "scorer", path: "../../wit" });

use exports::polymongo::plugin::scoring::{Event, EventKind, Guest, PoolStats};

/// Points halve every this many milliseconds.
const HALF_LIFE_MS: f64 = match option_env!("SCORER_HALF_LIFE_MS") {
    Some(v) => parse_ms(v),
    None => 60_000.0,
};

/// `const` parsing of the build-time half-life (digits only; anything else is a build error).
const fn parse_ms(v: &str) -> f64 {
    let bytes = v.as_bytes();
    let mut i = 0;
    let mut n: u64 = 0;
    while i < bytes.len() {
        assert!(
            bytes[i].is_ascii_digit(),
            "SCORER_HALF_LIFE_MS must be digits"
        );
        n = n * 10 + (bytes[i] - b'0') as u64;
        i += 1;
    }
    assert!(n > 0, "SCORER_HALF_LIFE_MS must be positive");
    n as f64
}

/// Decayed points of one database, as of `at_ms`.
#[derive(Clone, Copy)]
struct Points {
    value: f64,
    at_ms: u64,
}

impl Points {
    fn at(self, now_ms: u64) -> f64 {
        let age = now_ms.saturating_sub(self.at_ms) as f64;
        self.value * (-age * std::f64::consts::LN_2 / HALF_LIFE_MS).exp()
    }
}

/// What the scorer remembers between calls.
#[derive(Default)]
struct State {
    /// Database of each open pool (from `opened` events).
    db_of_pool: HashMap<u64, String>,
    /// Points per database, also for databases whose pool is closed.
    points: HashMap<String, Points>,
}

impl State {
    fn apply(&mut self, event: Event) {
        match event.kind {
            EventKind::Opened(db) => {
                self.db_of_pool.insert(event.pool_id, db.clone());
                self.add_point(&db, event.at_ms);
            }
            EventKind::Accessed => {
                if let Some(db) = self.db_of_pool.get(&event.pool_id).cloned() {
                    self.add_point(&db, event.at_ms);
                }
            }
            EventKind::Closed => {
                self.db_of_pool.remove(&event.pool_id);
            }
        }
    }

    fn add_point(&mut self, db: &str, at_ms: u64) {
        let now = self.points.get(db).map_or(0.0, |p| p.at(at_ms));
        self.points.insert(
            db.to_string(),
            Points {
                value: now + 1.0,
                at_ms,
            },
        );
    }

    fn score(&self, pool: &PoolStats, now_ms: u64) -> f64 {
        let learnt = self
            .db_of_pool
            .get(&pool.pool_id)
            .and_then(|db| self.points.get(db))
            .map(|p| p.at(now_ms));
        // A pool whose events were dropped (a very busy host) falls back to its own stats.
        let points = learnt.unwrap_or(pool.use_count as f64);
        // Lower priority number = more important: priority 0 doubles the points, 200 halves them.
        points * (2f64).powf((100.0 - pool.priority as f64) / 100.0)
    }
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

struct DecayScorer;

impl Guest for DecayScorer {
    fn score_all(
        events: Vec<Event>,
        _dropped: u64,
        pools: Vec<PoolStats>,
        now_ms: u64,
    ) -> Vec<f64> {
        let mut guard = STATE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = guard.get_or_insert_with(State::default);
        for event in events {
            state.apply(event);
        }
        // Forget databases whose points decayed to nothing, so memory stays bounded.
        state.points.retain(|_, p| p.at(now_ms) > 1e-3);
        pools.iter().map(|p| state.score(p, now_ms)).collect()
    }
}

export!(DecayScorer);
