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
use polymongo::runtime::{Request, Runtime, RuntimeConfig};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceTable, ResourceType};
use wasmtime::Store;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

const LOG_CALLS: u32 = 1000;

/// The WIT `log.level` enum, for the baseline's typed `log` import.
#[allow(dead_code)] // constructed by the lifting code only
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
enum Level {
    #[component(name = "trace")]
    Trace,
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
}

struct BareState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for BareState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The minimal wasmtime host for the same component: WASI, a no-op `log`, traps for the rest.
struct Bare {
    engine: wasmtime::Engine,
    pre: wasmtime::component::InstancePre<BareState>,
    handle: wasmtime::component::ComponentExportIndex,
}

impl Bare {
    fn new(engine: &wasmtime::Engine, bytes: &[u8]) -> Self {
        let component = Component::from_binary(engine, bytes).expect("component");
        let mut linker: Linker<BareState> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
        linker
            .instance("polymongo:plugin/log@0.1.0")
            .expect("log instance")
            .func_wrap("log", |_store, (_level, _message): (Level, String)| Ok(()))
            .expect("log func");
        // The database imports are stubbed (the baseline routes make no database calls).
        // (`define_unknown_imports_as_traps` would also stub WASI interfaces imported at a
        // newer patch version, clashing with the real ones.)
        for (name, item) in component.component_type().imports(engine) {
            if !name.starts_with("polymongo:plugin/database") {
                continue;
            }
            let ComponentItem::ComponentInstance(instance) = item.ty else {
                continue;
            };
            let mut stubs = linker.instance(name).expect("database instance");
            for (export, item) in instance.exports(engine) {
                match item.ty {
                    ComponentItem::ComponentFunc(_) => stubs
                        .func_new(export, |_store, _ty, _params, _results| {
                            Err(wasmtime::Error::msg("the bare baseline has no database"))
                        })
                        .expect("stub func"),
                    ComponentItem::Resource(_) => stubs
                        .resource(export, ResourceType::host::<u32>(), |_, _| Ok(()))
                        .expect("stub resource"),
                    _ => {}
                }
            }
        }
        let pre = linker.instantiate_pre(&component).expect("instantiate_pre");
        let iface = component
            .get_export_index(None, "polymongo:plugin/handler@0.1.0")
            .expect("handler export");
        let handle = component
            .get_export_index(Some(&iface), "handle")
            .expect("handle export");
        Self {
            engine: engine.clone(),
            pre,
            handle,
        }
    }

    async fn call(&self, request: Request) -> u16 {
        let state = BareState {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        let func = instance
            .get_typed_func::<(Request,), (polymongo::runtime::Response,)>(&mut store, &self.handle)
            .expect("typed handle");
        let (response,) = func.call_async(&mut store, (request,)).await.expect("call");
        response.status
    }
}

fn request(tenant: &str, path: &str, query: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        query: query.into(),
        headers: Vec::new(),
        body: Vec::new(),
        tenant: tenant.into(),
    }
}

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
    let bare = Bare::new(runtime.engine(), &wasm);

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
