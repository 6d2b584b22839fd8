//! The same plugin in Rust, JavaScript and Python: what each language costs the host.
//!
//! The `bench` fixture (`plugins/fixtures/bench`, Rust) and its JavaScript and Python twins
//! (`plugins/fixtures/bench-js`, `bench-py`: same routes) are loaded through one polymongo
//! `Runtime` (the host's engine: pooling allocator, epoch interruption, compile cache) and
//! measured, each beside a bare wasmtime baseline in the same run (same engine and component,
//! a minimal host: WASI, a no-op `log`, traps for the database):
//!
//! - size of the component, and of its compiled artifact;
//! - first load: `Runtime::load_bytes` with an empty compile cache (Cranelift compile,
//!   `instantiate_pre`, artifact written to the cache);
//! - restart: `Runtime::load_bytes` of the same bytes again (compile-cache hit), and the bare
//!   `Component::deserialize` of the artifact alone;
//! - one request to `/ping` (fresh instance, no host call): `Runtime::invoke` and bare, p50;
//! - one request doing a find-one by `_id` (`/find-one`), p50: back to back; 10 ms after the
//!   previous one (the host idle meanwhile: a plugin slow to instantiate has an instance made
//!   ahead by then), and the same on a runtime that makes none ahead; the driver alone;
//! - one guest-to-host call with 1 KiB (`/log-loop?n=N` minus `n=0`, divided by N).
//!
//! Run: `cargo bench -p polymongo-host --bench languages` after `cargo xtask build-plugins`
//! (which builds the three fixtures); it starts FerretDB through the test harness. The table
//! is printed and written to `target/languages-bench.md`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, Document};
use polymongo::pool::Db;
use polymongo::runtime::{Loaded, Plugin, Runtime, RuntimeConfig};
use wasmtime::component::Component;

#[path = "support/setup.rs"]
mod setup;

#[path = "support/bare.rs"]
mod bare;

use bare::{request, Bare};

/// (language, fixture, `log` calls per `/log-loop` request).
const LANGUAGES: &[(&str, &str, u32)] = &[
    ("Rust", "bench", 1000),
    ("JavaScript", "bench-js", 200),
    ("Python", "bench-py", 1000),
];

/// Median of `f`'s durations: 3 warm-up runs, then runs until `budget` is spent (at least 5,
/// at most `max`).
async fn p50<F, Fut>(budget: Duration, max: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..3 {
        f().await;
    }
    let mut samples = Vec::new();
    let started = Instant::now();
    while samples.len() < 5 || (started.elapsed() < budget && samples.len() < max) {
        let t = Instant::now();
        f().await;
        samples.push(t.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

/// `bytes` loaded into `runtime` as tenant plugin `fixture`.
fn load(runtime: &Runtime, fixture: &str, bytes: &[u8]) -> Plugin {
    match runtime.load_bytes(fixture, bytes, None).expect("load") {
        Loaded::Tenant(plugin) => plugin,
        _ => panic!("{fixture} is not a tenant plugin"),
    }
}

/// The pause before each request of the spaced find-one row.
const REQUEST_GAP: Duration = Duration::from_millis(10);

/// A find-one request (`/find-one?<query>`) for `tenant` to `plugin` in `runtime`.
async fn find_one_request(
    runtime: &Runtime,
    plugin: &Plugin,
    (tenant, db): (&str, &Db),
    query: &str,
) {
    runtime
        .invoke(plugin, db.clone(), request(tenant, "/find-one", query))
        .await
        .expect("find-one");
}

/// Median of `runs` timings of `f`, each started `gap` after the previous one ended (the
/// pause is not timed).
async fn p50_spaced<F, Fut>(gap: Duration, runs: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        tokio::time::sleep(gap).await;
        let t = Instant::now();
        f().await;
        samples.push(t.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn p50_sync(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn mib(n: usize) -> String {
    if n < 1 << 20 {
        format!("{:.0} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / 1048576.0)
    }
}

#[derive(Default)]
struct Row {
    size: usize,
    artifact: usize,
    first_load: Duration,
    restart: Duration,
    deserialize: Duration,
    ping: Duration,
    ping_bare: Duration,
    find_one: Duration,
    find_one_spaced: Duration,
    find_one_spaced_instantiating: Duration,
    driver: Duration,
    call: Duration,
    call_bare: Duration,
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter here.
    let rt = setup::tokio_runtime();
    let uri = polymongo_tests::test_uri();
    // An empty compile cache, so that the first load of each fixture compiles.
    let cache = polymongo_tests::workspace_root().join("target/languages-bench-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let tenant = polymongo_tests::unique_db("bench-lang");
    let (manager, runtime, cold_runtime) = rt.block_on(async {
        let manager = setup::manager(&uri).await;
        let config = RuntimeConfig {
            cache_dir: Some(cache.clone()),
            // "restart" loads the same bytes again: it must find them in the compile cache,
            // as a new process would, not among the components this one loaded.
            recent_components: 0,
            ..RuntimeConfig::default()
        };
        // The same, making no instances ahead of requests.
        let cold_runtime = Runtime::new(
            manager.clone(),
            RuntimeConfig {
                ready_instances: 0,
                ..config.clone()
            },
        )
        .expect("runtime");
        let runtime = Runtime::new(manager.clone(), config).expect("runtime");
        (manager, runtime, cold_runtime)
    });
    let engine = runtime.engine().clone();

    // One document to find, ~1 KiB.
    let id = ObjectId::new();
    // The plugins read the tenant's database (in the tenant namespace, e.g. `t_...`).
    let tenant_db = manager.tenant_db_name(&tenant).expect("tenant name");
    // Resolved once, as the gateway does.
    let tenant_handle = manager.tenant_db(&tenant).expect("tenant db");
    let client = rt.block_on(async {
        let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
        client
            .database(&tenant_db)
            .collection::<Document>("items")
            .insert_one(doc! { "_id": id, "payload": "x".repeat(1000) })
            .await
            .expect("insert");
        client
    });
    let items = client.database(&tenant_db).collection::<Document>("items");
    let find_query = format!("id={}", id.to_hex());

    // Extra components to compare, e.g. another JavaScript engine's build of the same fixture:
    // LANGUAGES_BENCH_EXTRA="QuickJS=/tmp/bench-qjs.wasm,..." (same routes as `bench`);
    // LANGUAGES_BENCH_ONLY_EXTRA=1 measures those alone.
    let only_extra = std::env::var_os("LANGUAGES_BENCH_ONLY_EXTRA").is_some();
    let mut cases: Vec<(String, String, std::path::PathBuf, u32)> = LANGUAGES
        .iter()
        .filter(|_| !only_extra)
        .map(|(l, f, n)| {
            (
                l.to_string(),
                f.to_string(),
                polymongo_tests::fixture_wasm(f),
                *n,
            )
        })
        .collect();
    for extra in std::env::var("LANGUAGES_BENCH_EXTRA")
        .unwrap_or_default()
        .split(',')
    {
        if let Some((label, path)) = extra.split_once('=') {
            cases.push((label.into(), "extra".into(), path.into(), 200));
        }
    }

    let mut rows = Vec::new();
    for (language, fixture, path, calls) in &cases {
        let fixture = fixture.as_str();
        eprintln!("languages: {language} ({fixture})");
        let wasm = std::fs::read(path).expect("fixture");
        let mut row = Row {
            size: wasm.len(),
            ..Row::default()
        };
        let t = Instant::now();
        let plugin = load(&runtime, fixture, &wasm);
        row.first_load = t.elapsed();
        let cold_plugin = load(&cold_runtime, fixture, &wasm);
        row.restart = p50_sync(5, || drop(load(&runtime, fixture, &wasm)));
        let artifact_path = std::fs::read_dir(&cache)
            .expect("cache dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(plugin.version()) && n.ends_with(".cwasm"))
            })
            .expect("the compile cache has the artifact");
        let artifact = std::fs::read(&artifact_path).expect("artifact");
        row.artifact = artifact.len();
        let mut component = None;
        row.deserialize = p50_sync(10, || {
            // SAFETY: the artifact was just serialized by this engine (the host's cache).
            component =
                Some(unsafe { Component::deserialize(&engine, &artifact) }.expect("deserialize"));
        });
        let bare = Bare::new(&engine, &component.expect("component"));

        rt.block_on(async {
            let r = runtime
                .invoke(
                    &plugin,
                    tenant_handle.clone(),
                    request(&tenant, "/ping", ""),
                )
                .await
                .expect("ping");
            assert_eq!(r.status, 200, "{fixture} /ping");
            assert_eq!(bare.call(request(&tenant, "/ping", "")).await, 200);
            let r = runtime
                .invoke(
                    &plugin,
                    tenant_handle.clone(),
                    request(&tenant, "/find-one", &find_query),
                )
                .await
                .expect("find-one");
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let budget = Duration::from_secs(3);
            row.ping = p50(budget, 2000, || async {
                runtime
                    .invoke(
                        &plugin,
                        tenant_handle.clone(),
                        request(&tenant, "/ping", ""),
                    )
                    .await
                    .expect("ping");
            })
            .await;
            row.ping_bare = p50(budget, 2000, || async {
                bare.call(request(&tenant, "/ping", "")).await;
            })
            .await;
            row.find_one = p50(budget, 1000, || {
                find_one_request(&runtime, &plugin, (&tenant, &tenant_handle), &find_query)
            })
            .await;
            // Requests with a pause between them, as most tenants send them: the instance a
            // request runs in was made ahead while the host was idle.
            row.find_one_spaced = p50_spaced(REQUEST_GAP, 150, || {
                find_one_request(&runtime, &plugin, (&tenant, &tenant_handle), &find_query)
            })
            .await;
            row.find_one_spaced_instantiating = p50_spaced(REQUEST_GAP, 150, || {
                find_one_request(
                    &cold_runtime,
                    &cold_plugin,
                    (&tenant, &tenant_handle),
                    &find_query,
                )
            })
            .await;
            row.driver = p50(budget, 1000, || async {
                items.find_one(doc! { "_id": id }).await.expect("find_one");
            })
            .await;
            let loop_n = format!("n={calls}");
            let base = p50(budget, 500, || async {
                runtime
                    .invoke(
                        &plugin,
                        tenant_handle.clone(),
                        request(&tenant, "/log-loop", "n=0"),
                    )
                    .await
                    .expect("log-loop");
            })
            .await;
            let full = p50(budget, 500, || async {
                runtime
                    .invoke(
                        &plugin,
                        tenant_handle.clone(),
                        request(&tenant, "/log-loop", &loop_n),
                    )
                    .await
                    .expect("log-loop");
            })
            .await;
            row.call = full.saturating_sub(base) / *calls;
            let base = p50(budget, 500, || async {
                bare.call(request(&tenant, "/log-loop", "n=0")).await;
            })
            .await;
            let full = p50(budget, 500, || async {
                bare.call(request(&tenant, "/log-loop", &loop_n)).await;
            })
            .await;
            row.call_bare = full.saturating_sub(base) / *calls;
        });
        rows.push((language, fixture, row));
    }
    rt.block_on(manager.destroy()).expect("destroy");

    let mut out = String::new();
    let _ = writeln!(
        out,
        "| | {} |",
        rows.iter()
            .map(|(l, f, _)| format!("{l} (`{f}`)"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(out, "|---|{}", "---|".repeat(rows.len()));
    let line = |out: &mut String, label: &str, f: &dyn Fn(&Row) -> String| {
        let cells: Vec<String> = rows.iter().map(|(_, _, r)| f(r)).collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    };
    line(&mut out, "component size", &|r| mib(r.size));
    line(&mut out, "compiled artifact size", &|r| mib(r.artifact));
    line(
        &mut out,
        "first load: compile (`Runtime::load_bytes`, empty cache)",
        &|r| ms(r.first_load),
    );
    line(
        &mut out,
        "restart: `Runtime::load_bytes`, compile-cache hit (p50)",
        &|r| ms(r.restart),
    );
    line(
        &mut out,
        "`Component::deserialize` of the artifact alone (p50)",
        &|r| ms(r.deserialize),
    );
    line(&mut out, "request `/ping`, `Runtime::invoke` (p50)", &|r| {
        us(r.ping)
    });
    line(&mut out, "request `/ping`, bare wasmtime (p50)", &|r| {
        us(r.ping_bare)
    });
    line(&mut out, "request doing a find-one (p50)", &|r| {
        us(r.find_one)
    });
    line(
        &mut out,
        "request doing a find-one, 10 ms after the previous one (p50)",
        &|r| us(r.find_one_spaced),
    );
    line(
        &mut out,
        "the same, no instances made ahead (`ready_instances = 0`, p50)",
        &|r| us(r.find_one_spaced_instantiating),
    );
    line(&mut out, "the same find-one, driver alone (p50)", &|r| {
        us(r.driver)
    });
    line(&mut out, "guest→host call, 1 KiB, polymongo", &|r| {
        us(r.call)
    });
    line(&mut out, "guest→host call, 1 KiB, bare wasmtime", &|r| {
        us(r.call_bare)
    });
    println!("\n{out}");
    let path = polymongo_tests::workspace_root().join("target/languages-bench.md");
    let _ = std::fs::write(&path, &out);
    eprintln!("written to {}", path.display());
}
