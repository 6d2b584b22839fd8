//! Plugin-runtime benchmarks, each beside a baseline measured in the same run.
//!
//! - `boundary/*`: one guest-to-host call carrying 1 KiB (the `bench` fixture's `/log-loop`
//!   makes N `log` calls with a 1 KiB message), through polymongo's runtime and through a bare
//!   wasmtime host (same engine, same component, a typed `log` import that does nothing). Reported
//!   per call: (time of n=N − time of n=0) / N, computed from the two measurements.
//! - `request/*`: one request to `/ping` (fresh instance per request, no host calls):
//!   polymongo's `Runtime::invoke` (store, WASI context, limiter, deadline callback,
//!   concurrency permits, tenant binding) versus a bare wasmtime instantiate + call.
//! - `find_one/*`: a plugin request doing a find-one by `_id` versus the same find-one through
//!   the driver directly, both against FerretDB.
//!
//! Run: `cargo xtask bench -- --bench runtime` (needs `cargo xtask build-plugins` first; the
//! xtask does it).

use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, Document};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use polymongo::pool::PolyMongo;
use polymongo::runtime::{Runtime, RuntimeConfig};
use wasmtime::component::Component;

#[path = "support/bare.rs"]
mod bare;

use bare::{request, Bare};

const LOG_CALLS: u32 = 1000;

/// Measures `f` `iters` times inside the runtime and returns the total elapsed time.
fn timed<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, f: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            f().await;
        }
        start.elapsed()
    })
}

fn runtime_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let uri = polymongo_tests::test_uri();
    let wasm = std::fs::read(polymongo_tests::fixture_wasm("bench")).expect("bench.wasm");
    let tenant = polymongo_tests::unique_db("bench-rt");
    let (manager, runtime, plugin) = rt.block_on(async {
        let manager = PolyMongo::builder(&uri)
            .metadata_db(polymongo_tests::unique_db("bench-meta"))
            .build()
            .await
            .expect("manager");
        let runtime = Runtime::new(manager.clone(), RuntimeConfig::default()).expect("runtime");
        let plugin = match runtime.load_bytes("bench", &wasm, None).expect("load") {
            polymongo::runtime::Loaded::Tenant(plugin) => plugin,
            polymongo::runtime::Loaded::Scorer(_) => panic!("bench.wasm is a tenant plugin"),
        };
        (manager, runtime, plugin)
    });
    let bare = Bare::new(
        runtime.engine(),
        &Component::from_binary(runtime.engine(), &wasm).expect("component"),
    );

    // Sanity: both hosts answer.
    rt.block_on(async {
        let ours = runtime
            .invoke(&plugin, request(&tenant, "/ping", ""))
            .await
            .expect("ping");
        assert_eq!(ours.status, 200);
        assert_eq!(bare.call(request(&tenant, "/ping", "")).await, 200);
    });

    let mut group = c.benchmark_group("request");
    group.bench_function("ping_polymongo", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || async {
                black_box(
                    runtime
                        .invoke(&plugin, request(&tenant, "/ping", ""))
                        .await
                        .expect("ping"),
                );
            })
        })
    });
    group.bench_function("ping_bare_wasmtime", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || async {
                black_box(bare.call(request(&tenant, "/ping", "")).await);
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("boundary");
    let loop_query = format!("n={LOG_CALLS}");
    for (label, query) in [
        ("log_0_calls", "n=0".to_string()),
        (&*format!("log_{LOG_CALLS}_calls_1kib"), loop_query.clone()),
    ] {
        group.bench_function(format!("{label}_polymongo"), |b| {
            b.iter_custom(|iters| {
                timed(&rt, iters, || async {
                    black_box(
                        runtime
                            .invoke(&plugin, request(&tenant, "/log-loop", &query))
                            .await
                            .expect("log-loop"),
                    );
                })
            })
        });
        group.bench_function(format!("{label}_bare_wasmtime"), |b| {
            b.iter_custom(|iters| {
                timed(&rt, iters, || async {
                    black_box(bare.call(request(&tenant, "/log-loop", &query)).await);
                })
            })
        });
    }
    group.finish();

    // find-one by _id: plugin request vs the driver directly.
    let id = ObjectId::new();
    let client = rt.block_on(async {
        let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
        let payload = "x".repeat(1000);
        client
            .database(&tenant)
            .collection::<Document>("items")
            .insert_one(doc! { "_id": id, "payload": payload })
            .await
            .expect("insert");
        client
    });
    let query = format!("id={}", id.to_hex());
    rt.block_on(async {
        let r = runtime
            .invoke(&plugin, request(&tenant, "/find-one", &query))
            .await
            .expect("find-one");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    });
    let items = client.database(&tenant).collection::<Document>("items");
    let mut group = c.benchmark_group("find_one");
    group.bench_function("plugin_request", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || async {
                black_box(
                    runtime
                        .invoke(&plugin, request(&tenant, "/find-one", &query))
                        .await
                        .expect("find-one"),
                );
            })
        })
    });
    // A find-one that matches nothing: the same round trip without a document to carry back.
    let missing = format!("id={}", ObjectId::new().to_hex());
    group.bench_function("plugin_request_no_match", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || async {
                black_box(
                    runtime
                        .invoke(&plugin, request(&tenant, "/find-one", &missing))
                        .await
                        .expect("find-one"),
                );
            })
        })
    });
    // The same find-one through the connection manager without wasm (lease + driver).
    let managed = manager
        .db(&tenant)
        .expect("db")
        .collection::<Document>("items");
    group.bench_function("manager_direct", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || async {
                black_box(
                    managed
                        .find_one(doc! { "_id": id }, None)
                        .await
                        .expect("find_one"),
                );
            })
        })
    });
    group.bench_function("driver_direct", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || async {
                black_box(items.find_one(doc! { "_id": id }).await.expect("find_one"));
            })
        })
    });
    group.finish();
    rt.block_on(manager.destroy()).expect("destroy");
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1)).sample_size(50);
    targets = runtime_benches
}
criterion_main!(benches);
