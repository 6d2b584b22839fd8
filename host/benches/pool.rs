//! Connection-manager micro benchmarks (criterion).
//!
//! - `victim/*`: choosing an eviction victim among 10,000 open pools, as the manager does it
//!   (ordered index of the policy's stable keys, each candidate checked for protection through
//!   a map lookup and two atomic loads), and, for comparison, the full scan an unordered policy
//!   needs.
//! - `lease/*`: acquiring and releasing a lease on an already-open pool, through the real
//!   manager against FerretDB (started by the test harness, or POLYMONGO_TEST_URI); `_recording`:
//!   the same with the request stream recorded to a trace file (`[trace]`).
//!
//! Run: `cargo xtask bench` (or `cargo bench -p polymongo-host --bench pool`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use polymongo::pool::{EvictionIndex, EvictionPolicy, PoolStats, SeedPolicy};
use polymongo::recording::{TraceNames, TraceOptions, TraceRecorder};

#[path = "support/setup.rs"]
mod setup;

#[path = "support/pools.rs"]
mod pools;

use pools::synthetic_pools;

const POOLS: usize = 10_000;

struct FakePool {
    stats: PoolStats<'static>,
    in_flight: AtomicU32,
    guards: AtomicU32,
    pinned: bool,
}

fn fake_pools(protected_low: usize) -> (Vec<Arc<str>>, HashMap<Arc<str>, FakePool>) {
    let mut names = Vec::with_capacity(POOLS);
    let mut pools = HashMap::with_capacity(POOLS);
    for (i, stats) in synthetic_pools(POOLS, 0x1234_5678).into_iter().enumerate() {
        let name: Arc<str> = Arc::from(format!("tenant-{i:05}"));
        names.push(name.clone());
        pools.insert(
            name,
            FakePool {
                stats,
                in_flight: AtomicU32::new(0),
                guards: AtomicU32::new(0),
                pinned: false,
            },
        );
    }
    // Protect the `protected_low` lowest-ranked pools, so the victim search has to skip them.
    let mut ranked: Vec<(f64, Arc<str>)> = pools
        .iter()
        .map(|(n, p)| (SeedPolicy.stable_key(&p.stats).unwrap(), n.clone()))
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (_, name) in ranked.iter().take(protected_low) {
        pools
            .get(name)
            .unwrap()
            .in_flight
            .store(1, Ordering::Relaxed);
    }
    (names, pools)
}

fn victim_choice(c: &mut Criterion) {
    let mut group = c.benchmark_group("victim");
    for protected in [0usize, 100] {
        let (names, pools) = fake_pools(protected);
        let mut index = EvictionIndex::new();
        for (seq, name) in names.iter().enumerate() {
            let key = SeedPolicy.stable_key(&pools[name].stats).unwrap();
            index.insert(key, seq as u64, name.clone());
        }
        group.bench_function(format!("indexed_10k_pools_{protected}_protected"), |b| {
            b.iter(|| {
                let victim = index.choose(|n| {
                    pools.get(n).is_some_and(|p| {
                        !p.pinned
                            && p.in_flight.load(Ordering::SeqCst) == 0
                            && p.guards.load(Ordering::SeqCst) == 0
                    })
                });
                black_box(victim)
            })
        });
    }
    // What an unordered policy costs: score every evictable pool, take the minimum.
    let (names, pools) = fake_pools(0);
    group.bench_function("full_scan_10k_pools", |b| {
        b.iter(|| {
            let stats: Vec<PoolStats<'_>> = names
                .iter()
                .filter_map(|n| pools.get(n))
                .filter(|p| p.in_flight.load(Ordering::SeqCst) == 0)
                .map(|p| p.stats)
                .collect();
            let scores = SeedPolicy.score_all(&stats, 1_700_000_700_000);
            black_box(
                scores
                    .iter()
                    .copied()
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(&b.1)),
            )
        })
    });
    // Keeping the index current: one pool's key moves after an operation.
    let (names, pools) = fake_pools(0);
    let mut index = EvictionIndex::new();
    let mut keys = Vec::with_capacity(POOLS);
    for (seq, name) in names.iter().enumerate() {
        let key = SeedPolicy.stable_key(&pools[name].stats).unwrap();
        index.insert(key, seq as u64, name.clone());
        keys.push(key);
    }
    let mut i = 0usize;
    group.bench_function("index_update_10k_pools", |b| {
        b.iter(|| {
            i = (i + 7919) % POOLS;
            let new_key = keys[i] + 0.001;
            index.update(keys[i], new_key, i as u64);
            keys[i] = new_key;
        })
    });
    group.finish();
}

fn hot_lease(c: &mut Criterion) {
    let rt = setup::tokio_runtime();
    let uri = polymongo_tests::test_uri();
    let mut group = c.benchmark_group("lease");
    let trace_dir = std::env::temp_dir().join(format!("polymongo-bench-{}", std::process::id()));
    for (open_pools, recording) in [(1usize, false), (100, false), (1, true)] {
        let (pm, target) = rt.block_on(async {
            let pm = setup::manager(&uri).await;
            let names: Vec<String> = (0..open_pools)
                .map(|i| polymongo_tests::unique_db(&format!("bench{i}")))
                .collect();
            for n in &names {
                pm.open_connection(n).await.expect("open");
            }
            (pm, names[0].clone())
        });
        // The same with the request stream recorded to a trace file (`[trace]`).
        let recorder = recording.then(|| {
            std::fs::create_dir_all(&trace_dir).expect("trace folder");
            let recorder = TraceRecorder::start(TraceOptions {
                path: trace_dir.join("trace.lirs"),
                max_bytes: 1 << 30,
                names: TraceNames::Hashed,
            })
            .expect("trace file");
            pm.set_access_recorder(Some(recorder.clone()));
            recorder
        });
        let suffix = if recording { "_recording" } else { "" };
        group.bench_function(
            format!("acquire_release_open_pool_{open_pools}_open{suffix}"),
            |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let lease = pm.lease(black_box(&target)).await.expect("lease");
                            drop(black_box(lease));
                        }
                        start.elapsed()
                    })
                })
            },
        );
        rt.block_on(pm.destroy()).expect("destroy");
        if let Some(recorder) = recorder {
            recorder.finish();
            println!(
                "trace: {} requests recorded, {} dropped",
                recorder.recorded(),
                recorder.dropped()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&trace_dir);
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = victim_choice, hot_lease
}
criterion_main!(benches);
