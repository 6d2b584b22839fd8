//! Eviction replay (no database): the seed-formula scorer agrees with the built-in policy,
//! hostile scorers fall back to the seed formula on every decision, MIN bounds the others,
//! external traces are read as the LIRS format says, the follower scorers decide as the
//! replay tool's follower natively (a long warm-up too), and the reference policies agree
//! with independent implementations (`references.rs`).
//!
//! Needs the guest components: `cargo xtask build-plugins`.

#[path = "../common/mod.rs"]
mod common;
mod references;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use common::until_scorer_idle;
use polymongo::pool::{EvictionPolicy, LruPolicy, PoolStats, SeedPolicy};
use polymongo::replay::{
    belady, generate, java_hash, read_trace, simulate, write_trace, DisruptedAt, Disruption,
    LeaderRule, ScorerLoader, SimConfig, SimResult, Trace, TraceSpec, WTinyLfuPolicy,
    HYBRID_EXPERTS,
};
use polymongo::runtime::ScorerLimits;
use polymongo_tests::{bundled_wasm, fixture_wasm};

fn small_trace(seed: u64, tenants: usize, requests: usize) -> Trace {
    generate(&TraceSpec {
        tenants,
        requests,
        seed,
        concurrent_sessions: 8,
        bursts: 3,
        burst_sessions: 20,
        pinned: 3,
        ..TraceSpec::default()
    })
}

fn replay(trace: &Trace, policy: &dyn EvictionPolicy, capacity: usize) -> SimResult {
    let mut config = SimConfig::new(capacity);
    config.record_victims = true;
    simulate(trace, policy, &config)
}

/// The seed formula decided by comparing scores (`score_all`), as the manager does when a
/// scorer's answer is unusable. (With [`SeedPolicy`] itself the manager uses its stable-key
/// index instead, whose `f64` rounding can break near-ties differently.)
struct SeedByScore;

impl EvictionPolicy for SeedByScore {
    fn name(&self) -> &str {
        "seed-by-score"
    }

    fn score(&self, pool: &PoolStats<'_>, now_ms: u64) -> f64 {
        SeedPolicy.score(pool, now_ms)
    }
}

/// The index of the first decision at which two lists of victims differ, if any (the lists
/// are too long to print).
fn first_difference(a: &[u32], b: &[u32]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

fn loader() -> ScorerLoader {
    ScorerLoader::new(Duration::from_millis(1)).expect("engine")
}

#[test]
fn seed_scorer_chooses_what_the_builtin_chooses() {
    let loader = loader();
    let component = loader
        .load_file(&bundled_wasm("scorer-seed"))
        .expect("scorer-seed loads");
    for (seed, capacity) in [(1, 40), (2, 100)] {
        let trace = small_trace(seed, 400, 30_000);
        // The manager's path for the built-in policy: its stable-key index.
        let builtin = replay(&trace, &SeedPolicy, capacity);
        // A generous budget: a slow machine must not turn a decision into a fallback.
        let scorer = loader.policy(&component, Duration::from_secs(5));
        let wasm = replay(&trace, &scorer, capacity);
        assert!(builtin.closes > 1_000, "the trace must make many decisions");
        assert_eq!(scorer.failures(), 0);
        assert_eq!(wasm.policy_fallbacks, 0);
        assert_eq!(scorer.calls(), wasm.closes, "one call per decision");
        assert_eq!(wasm.closes, builtin.closes);
        assert_eq!(
            first_difference(&builtin.victims, &wasm.victims),
            None,
            "seed {seed}, K={capacity}: the wasm seed scorer chose differently"
        );
        assert_eq!(wasm.hits, builtin.hits);
    }
}

#[test]
fn hostile_scorers_fall_back_to_the_seed_formula_on_every_decision() {
    let loader = loader();
    let trace = small_trace(3, 120, 4_000);
    let capacity = 20;
    let builtin = replay(&trace, &SeedByScore, capacity);
    assert!(builtin.closes > 200);
    // On this trace the index and the scores agree, so this is also the built-in's choice.
    assert_eq!(
        replay(&trace, &SeedPolicy, capacity).victims,
        builtin.victims
    );
    for (name, fails_in_wasm) in [
        ("scorer-trap", true),
        ("scorer-loop", true),
        ("scorer-nan", false),
        ("scorer-short", false),
    ] {
        let component = loader
            .load_file(&fixture_wasm(name))
            .unwrap_or_else(|e| panic!("{name} loads: {e:#}"));
        // The trapping and looping scorers get a short budget (the looping one overruns it
        // every time); the others a generous one, so that a slow machine cannot turn their
        // rejected answers into failed calls.
        let budget = if fails_in_wasm {
            Duration::from_millis(2)
        } else {
            Duration::from_secs(30)
        };
        let scorer = loader.policy(&component, budget);
        let result = replay(&trace, &scorer, capacity);
        assert_eq!(result.victims, builtin.victims, "{name}: victims");
        assert_eq!(result.hits, builtin.hits, "{name}: hits");
        assert_eq!(
            result.policy_fallbacks, result.closes,
            "{name}: every decision falls back"
        );
        assert_eq!(
            scorer.calls(),
            result.closes,
            "{name}: one call per decision"
        );
        let expected_failures = if fails_in_wasm { result.closes } else { 0 };
        assert_eq!(scorer.failures(), expected_failures, "{name}: failed calls");
        if name == "scorer-loop" {
            // Each of its calls runs until the hard limit stops it, past the budget, and the
            // slowest call (what `replay` reports) says so once one has ended: the replay
            // itself can end before the first call has run for a budget (the scorer's thread
            // may start it late on a busy machine).
            until_scorer_idle(&scorer);
            assert!(
                scorer.slowest_call() >= budget,
                "{name}: slowest call {:?}",
                scorer.slowest_call()
            );
        }
    }
}

#[test]
fn a_scorer_that_exhausts_its_memory_is_replaced_and_only_its_trapping_calls_fall_back() {
    let loader = loader();
    let trace = small_trace(4, 120, 4_000);
    let capacity = 20;
    let component = loader
        .load_file(&fixture_wasm("scorer-hog"))
        .expect("scorer-hog loads");
    // A generous budget: each call writes 32 MiB, which a busy machine may make slow, and an
    // overrun would be a fallback of another kind.
    let scorer = loader.policy(&component, Duration::from_secs(30));
    let result = replay(&trace, &scorer, capacity);
    assert!(result.closes > 100, "the trace must make many decisions");
    assert_eq!(scorer.calls(), result.closes, "one call per decision");
    assert_eq!(scorer.overruns(), 0);
    // The instance's 256 MiB hold at most 8 chunks (the replay of the events into a fresh
    // instance keeps one too): it ran out every 8 calls or sooner, and each time a fresh
    // instance took over (given the events its predecessor had seen).
    assert!(
        scorer.restarts() >= result.closes / 10,
        "the memory limit trapped the scorer {} times in {} calls",
        scorer.restarts(),
        result.closes
    );
    assert_eq!(scorer.replays(), scorer.restarts());
    // Only the calls that trapped fell back; every other decision was the scorer's.
    assert_eq!(scorer.failures(), scorer.restarts());
    assert_eq!(result.policy_fallbacks, scorer.failures());
    assert!(result.policy_fallbacks < result.closes / 4);
}

/// The replay tool's follower of `experts`, natively (what the follower scorers run).
fn native_follower(experts: &[&str]) -> WTinyLfuPolicy {
    let experts = experts
        .iter()
        .map(|e| WTinyLfuPolicy::expert(e).expect("expert"))
        .collect();
    WTinyLfuPolicy::following(experts, LeaderRule::default())
}

#[test]
fn min_is_never_worse_than_lru_or_seed() {
    let loader = loader();
    let adaptive = loader
        .load_file(&bundled_wasm("scorer-adaptive"))
        .expect("scorer-adaptive loads");
    let hybrid = loader
        .load_file(&bundled_wasm("scorer-hybrid"))
        .expect("scorer-hybrid loads");
    for seed in 1..=3 {
        let trace = small_trace(seed, 1_000, 40_000);
        for capacity in [10, 50, 200] {
            let min = belady(&trace, capacity);
            let lru = replay(&trace, &LruPolicy, capacity);
            let seed_policy = replay(&trace, &SeedPolicy, capacity);
            let scorer = loader.policy(&adaptive, Duration::from_secs(5));
            let adaptive_result = replay(&trace, &scorer, capacity);
            let hybrid_scorer = loader.policy(&hybrid, Duration::from_secs(5));
            let hybrid_result = replay(&trace, &hybrid_scorer, capacity);
            assert_eq!(hybrid_result.policy_fallbacks, 0);
            // The scorer runs the replay tool's own follower: the same victims natively.
            assert_eq!(
                replay(&trace, &native_follower(&HYBRID_EXPERTS), capacity).victims,
                hybrid_result.victims,
                "seed {seed}, K={capacity}: scorer-hybrid and the native follower differ"
            );
            // scorer-adaptive is the replay tool's visits2 policy alone.
            assert_eq!(adaptive_result.policy_fallbacks, 0);
            assert_eq!(
                replay(&trace, &native_follower(&["visits2"]), capacity).victims,
                adaptive_result.victims,
                "seed {seed}, K={capacity}: scorer-adaptive and the native visits2 differ"
            );
            assert_eq!(min.requests, lru.requests);
            assert_eq!(min.hits + min.opens, min.requests);
            for (name, other) in [
                ("lru", &lru),
                ("seed", &seed_policy),
                ("adaptive", &adaptive_result),
                ("hybrid", &hybrid_result),
            ] {
                assert!(
                    min.hits >= other.hits,
                    "seed {seed}, K={capacity}: MIN {} < {name} {}",
                    min.hits,
                    other.hits
                );
            }
            assert_eq!(adaptive_result.policy_fallbacks, 0);
        }
    }
}

#[test]
fn a_long_warm_up_decides_the_same_in_wasm_and_natively() {
    // 200 databases before the first eviction, 20,000 requests: five used 4,000 times, then
    // the others in turn. The follower scorers replay those requests over three calls,
    // closing the least recently used pool until then (one of the five, which W-TinyLFU,
    // leading when the replay is over, would keep), then a synthetic trace over 1,000 others.
    let mut keys: Vec<String> = (0..4_000).map(|i| format!("hot{}", i % 5)).collect();
    keys.extend((0..16_000).map(|i| format!("early{}", i % 195)));
    let later = small_trace(4, 1_000, 20_000);
    keys.extend(
        later
            .requests
            .iter()
            .map(|&k| later.names[k as usize].to_string()),
    );
    let trace = Trace::from_keys(keys);
    let capacity = 200;
    let loader = loader();
    for (name, experts) in [
        ("scorer-hybrid", &HYBRID_EXPERTS[..]),
        ("scorer-adaptive", &["visits2"][..]),
    ] {
        let component = loader.load_file(&bundled_wasm(name)).expect("scorer loads");
        let wasm = replay(
            &trace,
            &loader.policy(&component, Duration::from_secs(5)),
            capacity,
        );
        assert_eq!(wasm.policy_fallbacks, 0);
        let native = replay(&trace, &native_follower(experts), capacity);
        assert!(native.victims.len() > 1_000, "{name}: the trace evicts");
        // The warm-up's first two calls decided the first two evictions: the least recently
        // used pools, hot0 and hot1 (keys 0 and 1; after a one-off replay `scorer-hybrid`
        // closes hot3 first).
        assert_eq!(native.victims[..2], [0, 1], "{name}");
        assert_eq!(
            first_difference(&native.victims, &wasm.victims),
            None,
            "{name} and its native follower differ"
        );
        assert_eq!(native.victims.len(), wasm.victims.len());
    }
}

#[test]
fn bounds_on_a_hand_checked_trace() {
    // K=2 on a b c a b c ...: LRU misses every request; MIN misses the first two, then every
    // other request (it always keeps the key needed next).
    let keys: Vec<&str> = ["a", "b", "c"].iter().cycle().take(30).copied().collect();
    let trace = Trace::from_keys(keys);
    assert_eq!(replay(&trace, &LruPolicy, 2).hits, 0);
    let min = belady(&trace, 2);
    assert_eq!((min.opens, min.hits, min.closes), (16, 14, 14));
}

const LIRS_TEXT: &str = "* a comment line\n*\n17\n\n42\n  17  \n*another\n99\n\n42\n";

fn check_lirs(trace: &Trace) {
    assert_eq!(trace.requests.len(), 5);
    assert_eq!(trace.keys(), 3);
    let names: Vec<&str> = trace
        .requests
        .iter()
        .map(|&k| &*trace.names[k as usize])
        .collect();
    assert_eq!(names, ["17", "42", "17", "99", "42"]);
}

#[test]
fn external_trace_reader_skips_star_lines_and_blanks() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("trace.txt");
    std::fs::write(&plain, LIRS_TEXT).unwrap();
    check_lirs(&read_trace(&plain).unwrap());
}

/// A gzip member holding `data` in one stored (uncompressed) deflate block, built by hand so
/// the reader is checked against the format, not against the writer.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    assert!(data.len() < 65_536);
    let len = data.len() as u16;
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.push(1); // BFINAL, stored
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[test]
fn external_trace_reader_accepts_gz() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("trace.lirs.gz");
    std::fs::File::create(&gz)
        .unwrap()
        .write_all(&gzip_stored(LIRS_TEXT.as_bytes()))
        .unwrap();
    check_lirs(&read_trace(&gz).unwrap());

    // A generated trace survives a round trip through a compressed file.
    let trace = small_trace(4, 200, 5_000);
    let path = dir.path().join("generated.gz");
    write_trace(&trace, &path).unwrap();
    let back = read_trace(&path).unwrap();
    assert_eq!(back.requests.len(), trace.requests.len());
    let names = |t: &Trace| -> Vec<String> {
        t.requests
            .iter()
            .map(|&k| t.names[k as usize].to_string())
            .collect()
    };
    assert_eq!(names(&back), names(&trace));
}

/// A new version of the active scorer, deployed mid-run, continues from the events its
/// predecessor had learnt from: it decides exactly as the same scorer restarted (as after a
/// trap) at the same request and given the same events, and not as a scorer starting empty.
#[test]
fn a_redeployed_scorer_decides_as_one_restarted_with_its_events() {
    let loader = loader();
    let component = loader
        .load_file(&bundled_wasm("scorer-adaptive"))
        .expect("scorer-adaptive loads");
    let keep_all = ScorerLimits {
        budget: Duration::from_secs(30),
        hard_limit: Duration::from_secs(60),
        replay_events: 1 << 20,
    };
    let run = |trace: &Trace, capacity: usize, limits: ScorerLimits, reload: bool| {
        let scorer = Arc::new(loader.policy_with_limits(&component, limits));
        let disruption = if reload {
            let (component, tick) = (component.clone(), loader.tick());
            Disruption::Reload(Box::new(move || component.policy_with_limits(limits, tick)))
        } else {
            Disruption::Restart
        };
        let disrupted = DisruptedAt::new(scorer, disruption, trace.requests.len() as u64 / 2);
        let result = replay(trace, &disrupted, capacity);
        assert_eq!(disrupted.failures(), 0, "no decision fell back");
        result.victims
    };
    for (seed, capacity) in [(1, 40), (2, 100)] {
        let trace = small_trace(seed, 600, 8_000);
        let restarted = run(&trace, capacity, keep_all, false);
        let redeployed = run(&trace, capacity, keep_all, true);
        assert!(
            restarted.len() > 500,
            "seed {seed}: {} evictions",
            restarted.len()
        );
        assert_eq!(
            first_difference(&restarted, &redeployed),
            None,
            "seed {seed}, K = {capacity}"
        );
        assert_eq!(restarted.len(), redeployed.len());
        let empty = ScorerLimits {
            replay_events: 0,
            ..keep_all
        };
        assert_ne!(
            run(&trace, capacity, empty, true),
            redeployed,
            "seed {seed}, K = {capacity}: a version starting empty decides otherwise"
        );
    }
}
