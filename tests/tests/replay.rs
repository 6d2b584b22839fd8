//! Eviction replay (no database): the seed-formula scorer agrees with the built-in policy,
//! hostile scorers fall back to the seed formula on every decision, MIN bounds the others,
//! and external traces are read as the LIRS format says.
//!
//! Needs the guest components: `cargo xtask build-plugins`.

use std::io::Write;
use std::time::Duration;

use polymongo::pool::{EvictionPolicy, LruPolicy, PoolStats, SeedPolicy};
use polymongo::replay::{
    belady, generate, read_trace, simulate, write_trace, ScorerLoader, SimConfig, SimResult, Trace,
    TraceSpec,
};
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

fn loader() -> ScorerLoader {
    ScorerLoader::new(Duration::from_millis(1)).expect("engine")
}

#[test]
fn seed_scorer_chooses_what_the_builtin_chooses() {
    let loader = loader();
    let component = loader
        .load_file(&bundled_wasm("scorer-seed"))
        .expect("scorer-seed loads");
    for (seed, capacity) in [(1, 40), (2, 120)] {
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
        let first_difference = builtin
            .victims
            .iter()
            .zip(&wasm.victims)
            .position(|(a, b)| a != b);
        assert_eq!(
            first_difference, None,
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
        let scorer = loader.policy(&component, Duration::from_millis(2));
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
    }
}

#[test]
fn min_is_never_worse_than_lru_or_seed() {
    let loader = loader();
    let adaptive = loader
        .load_file(&bundled_wasm("scorer-adaptive"))
        .expect("scorer-adaptive loads");
    for seed in 1..=3 {
        let trace = small_trace(seed, 1_000, 40_000);
        for capacity in [10, 50, 200] {
            let min = belady(&trace, capacity);
            let lru = replay(&trace, &LruPolicy, capacity);
            let seed_policy = replay(&trace, &SeedPolicy, capacity);
            let scorer = loader.policy(&adaptive, Duration::from_secs(5));
            let adaptive_result = replay(&trace, &scorer, capacity);
            assert_eq!(min.requests, lru.requests);
            assert_eq!(min.hits + min.opens, min.requests);
            for (name, other) in [
                ("lru", &lru),
                ("seed", &seed_policy),
                ("adaptive", &adaptive_result),
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
