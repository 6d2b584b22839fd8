//! Plugin-runtime benchmarks, each beside a baseline measured in the same run.
//!
//! - `boundary/*`: one guest-to-host call carrying 1 KiB (the `bench` fixture's `/log-loop`
//!   makes N `log` calls with a 1 KiB message), through polymongo's runtime and through a bare
//!   wasmtime host (same engine, same component, a typed `log` import that does nothing). Reported
//!   per call: (time of n=N − time of n=0) / N, computed from the two measurements.
//! - `request/*`: one request to `/ping` (fresh instance per request, no host calls):
//!   polymongo's `Runtime::invoke` (store, WASI context, limiter, deadline callback,
//!   concurrency permits, tenant binding) versus a bare wasmtime instantiate + call; and the
//!   same with the twelve headers of a typical browser request (each string of the request
//!   record is copied into the guest through a call of its `realloc`). `ping_polymongo_resolving`
//!   also resolves the tenant's database per request, as the gateway does before `invoke`.
//! - `find_one/*`: a plugin request doing a find-one by `_id` (typed, as the SDK recommends;
//!   and untyped, `Document` to relaxed extended JSON) versus the same find-one through the
//!   driver directly, both against FerretDB.
//!
//! Every measured loop runs as a task on the runtime's worker threads, as the gateway's
//! request handlers do (not on the thread that blocks on the runtime).
//!
//! Run: `cargo xtask bench -- --bench runtime` (needs `cargo xtask build-plugins` first; the
//! xtask does it).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, Document, RawDocumentBuf};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use polymongo::pool;
use polymongo::runtime::{Plugin, Runtime, RuntimeConfig};
use wasmtime::component::Component;

#[path = "support/setup.rs"]
mod setup;

#[path = "support/bare.rs"]
mod bare;

use bare::{request, Bare};

const LOG_CALLS: u32 = 1000;

/// What the measured loops use, shared with the tasks that run them.
struct Fixture {
    runtime: Runtime,
    plugin: Plugin,
    bare: Bare,
    tenant: String,
    /// The tenant's database, resolved once as the gateway does.
    tenant_db: pool::Db,
    /// The connection manager, to resolve the tenant per request (`ping_polymongo_resolving`).
    manager: pool::PolyMongo,
    /// `id=<hex>` of the stored item.
    query: String,
    /// `id=<hex>` of an item that does not exist.
    missing: String,
    id: ObjectId,
    /// The items collection through the connection manager.
    managed: pool::Collection<RawDocumentBuf>,
    /// The items collection through the driver alone.
    items: mongodb::Collection<Document>,
    /// `maxTimeMS` the driver's find-one sends, as the host sends the plugin's remaining
    /// deadline on every database call: set by `POLYMONGO_BENCH_DRIVER_MAX_TIME=1`, so that
    /// both sides ask the server for the same work (see docs/BENCHMARKS.md).
    driver_max_time: Option<Duration>,
    /// A runtime that makes no instances ahead, and the plugin loaded in it.
    cold_runtime: Runtime,
    cold_plugin: Plugin,
}

/// Runs `f` `iters` times in one task on the runtime's workers and returns the elapsed time.
fn timed<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, fixture: &Arc<Fixture>, f: F) -> Duration
where
    F: Fn(Arc<Fixture>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let fixture = fixture.clone();
    rt.block_on(rt.spawn(async move {
        let start = Instant::now();
        for _ in 0..iters {
            f(fixture.clone()).await;
        }
        start.elapsed()
    }))
    .expect("benchmark task")
}

/// A plugin request to `path?query` (the query taken from the fixture by `query`).
async fn invoke(fx: Arc<Fixture>, path: &str, query: fn(&Fixture) -> &str) {
    let req = request(&fx.tenant, path, query(&fx));
    invoke_request(&fx, req).await;
}

/// `req` sent to the fixture's plugin through polymongo's runtime.
async fn invoke_request(fx: &Fixture, req: polymongo::runtime::Request) {
    let response = fx
        .runtime
        .invoke(&fx.plugin, fx.tenant_db.clone(), req)
        .await
        .expect("invoke");
    black_box(response);
}

/// The headers of a typical browser GET behind a proxy: what a real request carries into
/// the plugin besides its path and query.
const BROWSER_HEADERS: [(&str, &str); 12] = [
    ("host", "api.example.com"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    ("accept", "application/json, text/plain, */*"),
    ("accept-language", "en-US,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br"),
    ("referer", "https://app.example.com/dashboard"),
    ("origin", "https://app.example.com"),
    ("connection", "keep-alive"),
    ("x-tenant-id", "bench"),
    ("x-request-id", "0b6f2a9c-4d1e-4c59-9a57-2f8f0f3c1d42"),
    ("x-forwarded-for", "203.0.113.7"),
    (
        "authorization",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl",
    ),
];

/// A `/ping` request for `tenant` carrying [`BROWSER_HEADERS`].
fn ping_with_headers(tenant: &str) -> polymongo::runtime::Request {
    let mut req = request(tenant, "/ping", "");
    req.headers = BROWSER_HEADERS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    req
}

/// The bench fixture loaded in `runtime`.
fn load(runtime: &Runtime, wasm: &[u8]) -> Plugin {
    match runtime.load_bytes("bench", wasm, None).expect("load") {
        polymongo::runtime::Loaded::Tenant(plugin) => plugin,
        polymongo::runtime::Loaded::Scorer(_) => panic!("bench.wasm is a tenant plugin"),
    }
}

fn runtime_benches(c: &mut Criterion) {
    let rt = setup::tokio_runtime();
    let uri = polymongo_tests::test_uri();
    let wasm = std::fs::read(polymongo_tests::fixture_wasm("bench")).expect("bench.wasm");
    let tenant = polymongo_tests::unique_db("bench-rt");
    let id = ObjectId::new();
    let (manager, fx) = rt.block_on(async {
        let manager = setup::manager(&uri).await;
        let runtime = Runtime::new(manager.clone(), RuntimeConfig::default()).expect("runtime");
        let plugin = load(&runtime, &wasm);
        let plugin_deadline = plugin.limits().deadline;
        let cold_runtime = Runtime::new(
            manager.clone(),
            RuntimeConfig {
                ready_instances: 0,
                ..RuntimeConfig::default()
            },
        )
        .expect("runtime");
        let cold_plugin = load(&cold_runtime, &wasm);
        let bare = Bare::new(
            runtime.engine(),
            &Component::from_binary(runtime.engine(), &wasm).expect("component"),
        );
        // The plugin reads the tenant's database (in the tenant namespace, e.g. `t_...`).
        let tenant_db = manager.tenant_db_name(&tenant).expect("tenant name");
        let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
        let items = client.database(&tenant_db).collection::<Document>("items");
        items
            .insert_one(doc! { "_id": id, "payload": "x".repeat(1000) })
            .await
            .expect("insert");
        let managed = manager
            .db(&tenant_db)
            .expect("db")
            .collection::<RawDocumentBuf>("items");
        let fx = Fixture {
            runtime,
            plugin,
            bare,
            tenant: tenant.clone(),
            tenant_db: manager.tenant_db(&tenant).expect("tenant db"),
            manager: manager.clone(),
            query: format!("id={}", id.to_hex()),
            missing: format!("id={}", ObjectId::new().to_hex()),
            id,
            managed,
            items,
            driver_max_time: std::env::var_os("POLYMONGO_BENCH_DRIVER_MAX_TIME")
                .map(|_| plugin_deadline),
            cold_runtime,
            cold_plugin,
        };
        (manager, Arc::new(fx))
    });

    // Sanity: both hosts answer, and the plugin finds the item.
    rt.block_on(async {
        let ours = fx
            .runtime
            .invoke(
                &fx.plugin,
                fx.tenant_db.clone(),
                request(&tenant, "/ping", ""),
            )
            .await
            .expect("ping");
        assert_eq!(ours.status, 200);
        assert_eq!(fx.bare.call(request(&tenant, "/ping", "")).await, 200);
        let found = fx
            .runtime
            .invoke(
                &fx.plugin,
                fx.tenant_db.clone(),
                request(&tenant, "/find-one", &fx.query),
            )
            .await
            .expect("find-one");
        assert_eq!(
            found.status,
            200,
            "{}",
            String::from_utf8_lossy(&found.body)
        );
    });

    let mut group = c.benchmark_group("request");
    group.bench_function("ping_polymongo", |b| {
        b.iter_custom(|iters| timed(&rt, iters, &fx, |fx| invoke(fx, "/ping", |_| "")))
    });
    // The gateway resolves the tenant (check, fold, prefix) per request before `invoke`;
    // before 2026-12-06 `invoke` did it. This row includes it, for comparisons with builds
    // of that time.
    group.bench_function("ping_polymongo_resolving", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, &fx, |fx| async move {
                let db = fx.manager.tenant_db(&fx.tenant).expect("tenant");
                let req = request(&fx.tenant, "/ping", "");
                black_box(
                    fx.runtime
                        .invoke(&fx.plugin, db, req)
                        .await
                        .expect("invoke"),
                );
            })
        })
    });
    // Like for like with `ping_bare_wasmtime`: every request instantiates (no instances made
    // ahead, whose timing against a back-to-back loop makes `ping_polymongo` noisy).
    group.bench_function("ping_polymongo_instantiating", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, &fx, |fx| async move {
                let req = request(&fx.tenant, "/ping", "");
                black_box(
                    fx.cold_runtime
                        .invoke(&fx.cold_plugin, fx.tenant_db.clone(), req)
                        .await
                        .expect("invoke"),
                );
            })
        })
    });
    group.bench_function("ping_bare_wasmtime", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, &fx, |fx| async move {
                black_box(fx.bare.call(request(&fx.tenant, "/ping", "")).await);
            })
        })
    });
    group.bench_function("ping_12_headers_polymongo", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, &fx, |fx| async move {
                invoke_request(&fx, ping_with_headers(&fx.tenant)).await
            })
        })
    });
    group.bench_function("ping_12_headers_bare_wasmtime", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, &fx, |fx| async move {
                black_box(fx.bare.call(ping_with_headers(&fx.tenant)).await);
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("boundary");
    for (label, n) in [
        ("log_0_calls".to_string(), 0),
        (format!("log_{LOG_CALLS}_calls_1kib"), LOG_CALLS),
    ] {
        let query = format!("n={n}");
        group.bench_function(format!("{label}_polymongo"), |b| {
            b.iter_custom(|iters| {
                let query = query.clone();
                timed(&rt, iters, &fx, move |fx| {
                    let query = query.clone();
                    async move {
                        invoke_request(&fx, request(&fx.tenant, "/log-loop", &query)).await
                    }
                })
            })
        });
        group.bench_function(format!("{label}_bare_wasmtime"), |b| {
            b.iter_custom(|iters| {
                let query = query.clone();
                timed(&rt, iters, &fx, move |fx| {
                    let query = query.clone();
                    async move {
                        black_box(fx.bare.call(request(&fx.tenant, "/log-loop", &query)).await);
                    }
                })
            })
        });
    }
    group.finish();

    // find-one by _id: plugin requests vs the driver directly.
    let mut group = c.benchmark_group("find_one");
    group.bench_function("plugin_request", |b| {
        b.iter_custom(|iters| timed(&rt, iters, &fx, |fx| invoke(fx, "/find-one", |f| &f.query)))
    });
    // The same document read as an untyped `Document` and answered as relaxed extended JSON.
    group.bench_function("plugin_request_document", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, &fx, |fx| {
                invoke(fx, "/find-one-document", |f| &f.query)
            })
        })
    });
    // A find-one that matches nothing (the server does less work too: not a baseline).
    group.bench_function("plugin_request_no_match", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, &fx, |fx| {
                invoke(fx, "/find-one", |f| &f.missing)
            })
        })
    });
    // The same find-one through the connection manager without wasm (lease + driver, raw
    // BSON as the plugin host reads it).
    group.bench_function("manager_direct", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, &fx, |fx| async move {
                let found = fx
                    .managed
                    .find_one(doc! { "_id": fx.id }, None)
                    .await
                    .expect("find_one");
                black_box(found);
            })
        })
    });
    group.bench_function("driver_direct", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, &fx, |fx| async move {
                let found = fx
                    .items
                    .find_one(doc! { "_id": fx.id })
                    .await
                    .expect("find_one");
                black_box(found);
            })
        })
    });
    group.finish();
    if selected("find_one/paired") {
        paired_find_one(&rt, &fx, 3000);
    }
    rt.block_on(manager.destroy()).expect("destroy");
}

/// Whether the benchmark filter given on the command line (if any) selects `name`.
fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// Which find-one a round of [`paired_find_one`] times.
#[derive(Clone, Copy)]
enum Contender {
    /// A plugin request (instances made ahead, the default).
    Plugin,
    /// A plugin request on a runtime that makes no instances ahead (`ready_instances = 0`).
    PluginInstantiating,
    /// The driver alone.
    Driver,
}

impl Contender {
    const ALL: [Contender; 3] = [
        Contender::Plugin,
        Contender::PluginInstantiating,
        Contender::Driver,
    ];

    fn label(self) -> &'static str {
        match self {
            Contender::Plugin => "plugin_request",
            Contender::PluginInstantiating => "plugin_request_instantiating",
            Contender::Driver => "driver_direct",
        }
    }

    async fn once(self, fx: &Fixture) -> Duration {
        let request = || request(&fx.tenant, "/find-one", &fx.query);
        let started = Instant::now();
        match self {
            Contender::Plugin => {
                let response = fx
                    .runtime
                    .invoke(&fx.plugin, fx.tenant_db.clone(), request())
                    .await;
                black_box(response.expect("invoke"));
            }
            Contender::PluginInstantiating => {
                let response = fx
                    .cold_runtime
                    .invoke(&fx.cold_plugin, fx.tenant_db.clone(), request())
                    .await;
                black_box(response.expect("invoke"));
            }
            Contender::Driver => {
                let find = fx.items.find_one(doc! { "_id": fx.id });
                let found = match fx.driver_max_time {
                    Some(limit) => find.max_time(limit).await,
                    None => find.await,
                };
                black_box(found.expect("find_one"));
            }
        }
        started.elapsed()
    }
}

/// The find-one of a plugin request (with instances made ahead, and instantiating per
/// request) and of the
/// driver alone, interleaved one by one in one task (the order rotating every round), each
/// timed on its own: all see the same server latency at the same moment, so the ratios are
/// not moved by FerretDB's drift between criterion's groups. Prints medians, p90s and means,
/// and each plugin row's ratios to the driver's.
fn paired_find_one(rt: &tokio::runtime::Runtime, fx: &Arc<Fixture>, rounds: usize) {
    let fx = fx.clone();
    let samples = rt
        .block_on(rt.spawn(async move {
            let mut samples = vec![Vec::with_capacity(rounds); Contender::ALL.len()];
            for _ in 0..200 {
                for c in Contender::ALL {
                    c.once(&fx).await;
                }
            }
            for round in 0..rounds {
                for k in 0..Contender::ALL.len() {
                    let i = (round + k) % Contender::ALL.len();
                    samples[i].push(Contender::ALL[i].once(&fx).await);
                }
            }
            samples
        }))
        .expect("paired task");
    let summaries: Vec<Summary> = samples.into_iter().map(Summary::of).collect();
    let driver = &summaries[2];
    println!("find_one/paired ({rounds} rounds, interleaved one by one)");
    for (c, s) in Contender::ALL.iter().zip(&summaries) {
        println!(
            "  {:<29} p50 {:>7.1} µs  p90 {:>7.1} µs  mean {:>7.1} µs  ratio p50 {:.3}×  mean {:.3}×",
            c.label(),
            s.p50,
            s.p90,
            s.mean,
            s.p50 / driver.p50,
            s.mean / driver.mean
        );
    }
}

/// Median, 90th percentile and mean of latencies, in µs.
struct Summary {
    p50: f64,
    p90: f64,
    mean: f64,
}

impl Summary {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let at = |q: f64| us(samples[((samples.len() - 1) as f64 * q) as usize]);
        Self {
            p50: at(0.5),
            p90: at(0.9),
            mean: samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64,
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1)).sample_size(50);
    targets = runtime_benches
}
criterion_main!(benches);
