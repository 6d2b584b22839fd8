//! Hot-swap benchmarks (a bench binary printing a markdown report):
//!
//! - time from the rename of a new version into the plugins folder until that version serves
//!   (watcher + rescan + hash + load + publish), for a small Rust component and large JS and
//!   Python ones, alternating two versions: `recent` (the version was loaded a moment ago and
//!   is among the runtime's recent components: a rollback), `cached` (only the compile cache
//!   on disk knows it, as after a restart: the recent set is disabled), `uncached` (compiled).
//!   The new version is written and flushed (`fsync`) to `svc.wasm.tmp` first, as a durable
//!   deploy does (otherwise ext4 flushes the data inside `rename`, ~10 ms for 19 MB). The
//!   `rename` call itself is timed apart: on ext4 it also frees the replaced file's blocks
//!   (~4 ms for 19 MB) while holding the folder's lock, which stalls the host's rescan too;
//!   the reload time is from the return of `rename` to serving (the host's part);
//! - the cost of one eviction-scoring decision at 1,000 and 10,000 evictable pools: the
//!   built-in seed policy (the manager's ordered index, and a full `score_all` scan for
//!   comparison) and wasm scorers (`scorer-seed`, `scorer-adaptive`, `scorer-hybrid`).
//!
//! Run: `cargo xtask bench -- --bench hotswap` (after `cargo xtask build-plugins`).
//! Needs a database only for the manager's metadata (FerretDB from the test harness).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use polymongo::plugins::{PluginRegistry, WatchConfig};
use polymongo::pool::{EvictionIndex, EvictionPolicy, PolyMongo, SeedPolicy};
use polymongo::runtime::{ContentHash, Loaded, Runtime, RuntimeConfig};

#[path = "support/setup.rs"]
mod setup;

#[path = "support/pools.rs"]
mod pools;

use pools::synthetic_pools;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us >= 1.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.0} ns", us * 1000.0)
    }
}

fn version(bytes: &[u8]) -> String {
    ContentHash::of(bytes).to_hex()
}

/// Times of one reload: the `rename` call itself, and from its return to serving.
struct Reload {
    rename: Duration,
    serving: Duration,
}

/// Alternates `a` and `b` as `svc.wasm` in a watched folder and times each reload.
///
/// The watcher runs on `rt`; this thread polls the registry every 50 µs while sleeping in
/// between, so that the observer takes no CPU from the reload it measures (the machine has
/// two cores, and hashing uses both).
fn reload_times(
    rt: &tokio::runtime::Runtime,
    manager: &PolyMongo,
    a: &Path,
    b: &Path,
    cache: Option<PathBuf>,
    recent_components: usize,
    rounds: usize,
) -> Vec<Reload> {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(
        manager.clone(),
        RuntimeConfig {
            cache_dir: cache,
            recent_components,
            ..RuntimeConfig::default()
        },
    )
    .expect("runtime");
    let registry = Arc::new(PluginRegistry::new(runtime, dir.path()));
    let versions = [std::fs::read(a).expect("a"), std::fs::read(b).expect("b")];
    let versions_served = [version(&versions[0]), version(&versions[1])];
    std::fs::write(dir.path().join("svc.wasm"), &versions[0]).expect("deploy a");
    rt.block_on(registry.load_all()).expect("load");
    let _watcher = {
        let _context = rt.enter();
        registry.watch(WatchConfig::default()).expect("watch")
    };
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let next = (round + 1) % 2;
        let tmp = dir.path().join("svc.wasm.tmp");
        write_durably(&tmp, &versions[next]);
        let started = Instant::now();
        std::fs::rename(&tmp, dir.path().join("svc.wasm")).expect("rename");
        let renamed = Instant::now();
        loop {
            let serving = registry
                .get("svc")
                .map(|p| p.version() == versions_served[next])
                .unwrap_or(false)
                || registry
                    .scorer("svc")
                    .map(|s| s.version() == versions_served[next])
                    .unwrap_or(false);
            if serving {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "version never served"
            );
            std::thread::sleep(Duration::from_micros(50));
        }
        times.push(Reload {
            rename: renamed - started,
            serving: renamed.elapsed(),
        });
    }
    times
}

/// Writes `bytes` to `path` and flushes them to disk.
fn write_durably(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create tmp");
    file.write_all(bytes).expect("write tmp");
    file.sync_all().expect("fsync tmp");
}

fn time_per_call(iters: usize, mut f: impl FnMut()) -> Duration {
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let started = Instant::now();
        f();
        samples.push(started.elapsed());
    }
    samples.sort();
    percentile(&samples, 0.5)
}

fn main() {
    // `cargo bench` passes `--bench`; other arguments are words that select rows: a row runs
    // when each word is a word of "<component> <cache>" (or of "decision" for the scoring
    // section), e.g. `-- Python cached`.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |row: &str| {
        let words: Vec<&str> = row.split(|c: char| !c.is_alphanumeric()).collect();
        filter.iter().all(|f| words.contains(&f.as_str()))
    };
    let rt = setup::tokio_runtime();
    let uri = polymongo_tests::test_uri();
    let manager = rt.block_on(setup::manager(&uri));

    println!("## Hot reload: rename → new version serving\n");
    println!(
        "| component | size | cache | rounds | rename returned → serving, p50 | min | max | `rename` call, p50 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let pairs: Vec<(&str, PathBuf, PathBuf)> = vec![
        (
            "small Rust (version-a/b)",
            polymongo_tests::fixture_wasm("version-a"),
            polymongo_tests::fixture_wasm("version-b"),
        ),
        (
            "large JS (users-js/bench-js)",
            polymongo_tests::bundled_wasm("users-js"),
            polymongo_tests::fixture_wasm("bench-js"),
        ),
        (
            "large Python (users-py/bench-py)",
            polymongo_tests::bundled_wasm("users-py"),
            polymongo_tests::fixture_wasm("bench-py"),
        ),
    ];
    for (label, a, b) in &pairs {
        let modes = ["recent", "cached", "uncached"];
        if !modes.iter().any(|mode| wanted(&format!("{label} {mode}"))) {
            continue;
        }
        let size = std::fs::metadata(a).map(|m| m.len()).unwrap_or(0);
        let cache = tempfile::tempdir().expect("cache dir");
        // Warm the cache with both versions.
        reload_times(&rt, &manager, a, b, Some(cache.path().to_path_buf()), 0, 2);
        let warm = Some(cache.path().to_path_buf());
        for (mode, cache_dir, recent, rounds) in [
            ("recent", warm.clone(), 8, 20),
            ("cached", warm, 0, 20),
            ("uncached", None, 0, if size > 5 << 20 { 3 } else { 10 }),
        ] {
            if !wanted(&format!("{label} {mode}")) {
                continue;
            }
            let reloads = reload_times(&rt, &manager, a, b, cache_dir, recent, rounds);
            let mut serving: Vec<Duration> = reloads.iter().map(|r| r.serving).collect();
            let mut rename: Vec<Duration> = reloads.iter().map(|r| r.rename).collect();
            serving.sort();
            rename.sort();
            println!(
                "| {label} | {:.1} MB | {mode} | {rounds} | {} | {} | {} | {} |",
                size as f64 / 1e6,
                fmt(percentile(&serving, 0.5)),
                fmt(serving[0]),
                fmt(serving[serving.len() - 1]),
                fmt(percentile(&rename, 0.5)),
            );
        }
    }

    if !wanted("decision") {
        rt.block_on(manager.destroy()).expect("destroy");
        return;
    }
    println!("\n## One eviction decision\n");
    println!("| policy | evictable pools | p50 per decision |");
    println!("|---|---|---|");
    let runtime = Runtime::new(manager.clone(), RuntimeConfig::default()).expect("runtime");
    let scorer_policy = |name: &str| {
        let bytes = std::fs::read(polymongo_tests::bundled_wasm(name)).expect("scorer");
        match runtime.load_bytes(name, &bytes, None).expect("load scorer") {
            Loaded::Scorer(s) => {
                let config = runtime.config();
                Arc::new(s).policy(config.scorer_budget * 50, config.epoch_tick)
            }
            Loaded::Tenant(_) => panic!("{name} is not a scorer"),
        }
    };
    for n in [1_000usize, 10_000] {
        // Fresh scorers for each size: the follower-based ones learn the capacity (the
        // number of evictable pools) at their first decision, as on a host.
        let wasm_seed = scorer_policy("scorer-seed");
        let wasm_adaptive = scorer_policy("scorer-adaptive");
        let wasm_hybrid = scorer_policy("scorer-hybrid");
        let stats = synthetic_pools(n, 0x9E37_79B9_7F4A_7C15);
        let now = 1_700_000_700_000;
        let mut index = EvictionIndex::new();
        for p in &stats {
            index.insert(
                SeedPolicy.stable_key(p).expect("key"),
                p.pool_id,
                Arc::from("x"),
            );
        }
        let indexed = time_per_call(2_000, || {
            std::hint::black_box(index.choose(|_| true));
        });
        let scan = time_per_call(200, || {
            std::hint::black_box(SeedPolicy.score_all(&stats, now));
        });
        // Each pool its own database (the follower-based scorers keep state per database).
        for p in &stats {
            let db = format!("db{}", p.pool_id);
            wasm_adaptive.on_open(p.pool_id, &db, p.opened_at_ms);
            wasm_hybrid.on_open(p.pool_id, &db, p.opened_at_ms);
        }
        let seed = time_per_call(100, || {
            let scores = wasm_seed.score_all(&stats, now);
            assert_eq!(scores.len(), n);
        });
        let adaptive = time_per_call(100, || {
            let scores = wasm_adaptive.score_all(&stats, now);
            assert_eq!(scores.len(), n);
        });
        let hybrid = time_per_call(100, || {
            let scores = wasm_hybrid.score_all(&stats, now);
            assert_eq!(scores.len(), n);
        });
        println!(
            "| built-in seed, ordered index (what the manager does) | {n} | {} |",
            fmt(indexed)
        );
        println!(
            "| built-in seed, full `score_all` scan | {n} | {} |",
            fmt(scan)
        );
        println!("| wasm `scorer-seed` | {n} | {} |", fmt(seed));
        println!("| wasm `scorer-adaptive` | {n} | {} |", fmt(adaptive));
        println!("| wasm `scorer-hybrid` | {n} | {} |", fmt(hybrid));
    }
    rt.block_on(manager.destroy()).expect("destroy");
}
