//! Hot reload of the plugins folder and hot-swappable eviction scorers, end to end (real
//! components, a real watcher on a real folder, a real server).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use bson::{doc, Document};
use polymongo::plugins::{ComponentKind, PluginStatus};
use polymongo::pool::{ManualClock, PoolEventKind};
use polymongo::runtime::Probe;
use polymongo_tests::{bundled_wasm, fixture_wasm, unique_db};
use serde_json::json;

mod common;

use common::{eventually, metric_sample, scorer_pool, Host, Options};

const SETTLE: Duration = Duration::from_secs(10);

async fn watched(plugins: &[(&str, &str)]) -> Host {
    Host::with(Options {
        plugins: plugins
            .iter()
            .map(|(n, f)| (n.to_string(), fixture_wasm(f)))
            .collect(),
        watch: true,
        ..Options::default()
    })
    .await
}

/// One tenant for every version check: made-up tenants in a loop would be (rightly) refused
/// by the storm control of pool opens.
static VERSION_TENANT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| unique_db("v"));

async fn version(host: &Host) -> (StatusCode, serde_json::Value) {
    host.call(&VERSION_TENANT, "GET", "/svc/version", None)
        .await
}

fn serving(host: &Host, name: &str) -> Option<String> {
    host.registry.get(name).map(|p| p.version().to_string())
}

fn version_of(path: &std::path::Path) -> String {
    polymongo::runtime::ContentHash::of(&std::fs::read(path).unwrap()).to_hex()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_plugin_under_load_loses_no_request() {
    let host = Arc::new(watched(&[("svc", "version-a")]).await);
    assert_eq!(version(&host).await, (StatusCode::OK, json!("a")));

    // A slow request in flight on version a while the file is replaced.
    let slow = {
        let host = host.clone();
        tokio::spawn(async move {
            host.call(&unique_db("slow"), "GET", "/svc/slow?ms=600", None)
                .await
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..6)
        .map(|_| {
            let (host, stop) = (host.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    answers.push(version(&host).await);
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let b = fixture_wasm("version-b");
    host.deploy("svc", &b);
    let b_version = version_of(&b);
    eventually(SETTLE, "version b serving", || {
        serving(&host, "svc").as_deref() == Some(&b_version)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::SeqCst);

    let mut seen_a = 0;
    let mut seen_b = 0;
    for task in load {
        let answers = task.await.unwrap();
        let mut switched = false;
        for (status, body) in answers {
            assert_eq!(status, StatusCode::OK, "every request was answered: {body}");
            match body.as_str() {
                Some("a") => {
                    assert!(!switched, "a worker saw version a again after version b");
                    seen_a += 1;
                }
                Some("b") => {
                    switched = true;
                    seen_b += 1;
                }
                other => panic!("unexpected answer {other:?}"),
            }
        }
    }
    assert!(
        seen_a > 0 && seen_b > 0,
        "load ran across the swap: a={seen_a} b={seen_b}"
    );
    assert_eq!(
        slow.await.unwrap(),
        (StatusCode::OK, json!("a")),
        "the request in flight finished on the old version"
    );
    assert_eq!(version(&host).await, (StatusCode::OK, json!("b")));
    let counts = host.registry.reload_counts();
    assert_eq!((counts.loaded, counts.failed), (2, 0), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_files_keep_the_last_good_version_serving() {
    let host = watched(&[("svc", "version-a")]).await;
    let good = serving(&host, "svc").unwrap();
    let users = std::fs::read(bundled_wasm("users")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("corrupt", b"\0asm but not really a component".to_vec()),
        ("truncated", users[..users.len() / 3].to_vec()),
        (
            "wrong world",
            std::fs::read(fixture_wasm("wrong-world")).unwrap(),
        ),
        ("empty", Vec::new()),
    ];
    for (i, (what, bytes)) in cases.into_iter().enumerate() {
        host.deploy_bytes("svc", &bytes);
        eventually(SETTLE, what, || {
            host.registry.reload_counts().failed == i as u64 + 1
        })
        .await;
        let info = host
            .registry
            .list()
            .into_iter()
            .find(|p| p.name == "svc")
            .unwrap();
        assert_eq!(info.status, PluginStatus::Error, "{what}");
        assert!(info.last_error.is_some(), "{what}");
        assert_eq!(
            info.version.as_deref(),
            Some(good.as_str()),
            "{what}: the old version is still listed as serving"
        );
        assert_eq!(
            version(&host).await,
            (StatusCode::OK, json!("a")),
            "{what}: the old version still serves"
        );
    }

    // A good file clears the error.
    host.deploy("svc", &fixture_wasm("version-b"));
    eventually(SETTLE, "version b", || {
        host.registry
            .list()
            .iter()
            .any(|p| p.name == "svc" && p.status == PluginStatus::Ok)
    })
    .await;
    assert_eq!(version(&host).await, (StatusCode::OK, json!("b")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_world_component_is_refused_with_a_clear_error() {
    let host = watched(&[]).await;
    host.deploy("weird", &fixture_wasm("wrong-world"));
    eventually(SETTLE, "load attempt", || {
        host.registry.reload_counts().failed == 1
    })
    .await;
    let info = host
        .registry
        .list()
        .into_iter()
        .find(|p| p.name == "weird")
        .unwrap();
    let error = info.last_error.unwrap();
    assert!(
        error.contains("neither a tenant plugin") && error.contains("nor a scorer"),
        "{error}"
    );
    let (status, _) = host.call("acme", "GET", "/weird/x", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_plugin_unloads_it_after_in_flight_requests_finish() {
    let host = Arc::new(watched(&[("svc", "version-a")]).await);
    let slow = {
        let host = host.clone();
        tokio::spawn(async move {
            host.call(&unique_db("slow"), "GET", "/svc/slow?ms=500", None)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::remove_file(host.dir().join("svc.wasm")).unwrap();
    eventually(SETTLE, "unloaded", || host.registry.get("svc").is_none()).await;
    let (status, body) = version(&host).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        slow.await.unwrap(),
        (StatusCode::OK, json!("a")),
        "the in-flight request drained"
    );
    assert_eq!(host.registry.reload_counts().unloaded, 1);
    assert!(host.registry.list().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_file_in_deploys_it_and_a_manifest_change_reloads_it() {
    let host = watched(&[]).await;
    let (status, _) = version(&host).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    host.deploy("svc", &fixture_wasm("version-a"));
    eventually(SETTLE, "deployed", || host.registry.get("svc").is_some()).await;
    assert_eq!(version(&host).await, (StatusCode::OK, json!("a")));
    assert_eq!(
        host.registry.get("svc").unwrap().limits().deadline,
        Duration::from_secs(5)
    );
    std::fs::write(
        host.dir().join("svc.toml"),
        "[limits]\ndeadline_ms = 1234\n",
    )
    .unwrap();
    eventually(SETTLE, "manifest applied", || {
        host.registry
            .get("svc")
            .is_some_and(|p| p.limits().deadline == Duration::from_millis(1234))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compile_cache_serves_known_components_and_survives_corruption() {
    let cache = tempfile::tempdir().unwrap();
    let options = || Options {
        plugins: vec![("svc".to_string(), fixture_wasm("version-a"))],
        cache_dir: Some(cache.path().to_path_buf()),
        ..Options::default()
    };
    let first = Host::with(options()).await;
    assert_eq!(version(&first).await, (StatusCode::OK, json!("a")));
    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(entries.len(), 1, "one compiled artifact: {entries:?}");
    let probe = Probe::of_file(&fixture_wasm("version-a")).unwrap();
    assert_eq!(
        std::fs::read_to_string(cache.path().join("hints").join(probe.to_string())).unwrap(),
        version_of(&fixture_wasm("version-a")),
        "a hint names the artifact of a file with this size, head and tail"
    );
    let artifact = entries[0].clone();
    let name = artifact.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&version_of(&fixture_wasm("version-a"))) && name.ends_with(".cwasm"),
        "{name}"
    );

    // A restart with the same file loads the artifact (it is not rewritten).
    let modified = std::fs::metadata(&artifact).unwrap().modified().unwrap();
    let second = Host::with(options()).await;
    assert_eq!(version(&second).await, (StatusCode::OK, json!("a")));
    assert_eq!(
        std::fs::metadata(&artifact).unwrap().modified().unwrap(),
        modified
    );

    // A corrupt cache entry is discarded and the component recompiled. (Entries are only
    // ever replaced by a rename: the running hosts map them.)
    drop((first, second));
    let tmp = artifact.with_extension("corrupt");
    std::fs::write(&tmp, b"garbage").unwrap();
    std::fs::rename(&tmp, &artifact).unwrap();
    let third = Host::with(options()).await;
    assert_eq!(version(&third).await, (StatusCode::OK, json!("a")));
    assert!(
        std::fs::read(&artifact).unwrap().len() > 1000,
        "the artifact was rewritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_compile_cache_hint_costs_nothing_but_a_wasted_load() {
    let cache = tempfile::tempdir().unwrap();
    // Without recently loaded components in memory, so that the hint is acted upon.
    let options = || Options {
        plugins: vec![("svc".to_string(), fixture_wasm("version-a"))],
        cache_dir: Some(cache.path().to_path_buf()),
        watch: true,
        recent_components: 0,
        ..Options::default()
    };
    // Compile both versions into the cache, then make b's hint name a's artifact.
    drop(Host::with(options()).await);
    drop(
        Host::with(Options {
            plugins: vec![("svc".to_string(), fixture_wasm("version-b"))],
            ..options()
        })
        .await,
    );
    let hint_b = cache.path().join("hints").join(
        Probe::of_file(&fixture_wasm("version-b"))
            .unwrap()
            .to_string(),
    );
    std::fs::write(&hint_b, version_of(&fixture_wasm("version-a"))).unwrap();
    let runtime = Host::with(options()).await.registry.runtime().clone();
    let hashed = runtime.hash_file(&fixture_wasm("version-b")).unwrap();
    assert!(!hashed.preloaded(), "a's artifact is not b's");
    assert_eq!(hashed.hash.to_hex(), version_of(&fixture_wasm("version-b")));

    let host = Host::with(options()).await;
    assert_eq!(version(&host).await, (StatusCode::OK, json!("a")));
    host.deploy("svc", &fixture_wasm("version-b"));
    let b_version = version_of(&fixture_wasm("version-b"));
    eventually(SETTLE, "version b serving despite the wrong hint", || {
        serving(&host, "svc").as_deref() == Some(&b_version)
    })
    .await;
    assert_eq!(version(&host).await, (StatusCode::OK, json!("b")));
    assert_eq!(
        std::fs::read_to_string(&hint_b).unwrap(),
        version_of(&fixture_wasm("version-b")),
        "the hint is corrected"
    );
    let hashed = runtime.hash_file(&fixture_wasm("version-b")).unwrap();
    assert!(
        hashed.preloaded(),
        "b's artifact is mapped while b is hashed"
    );
}

/// Three pools whose seed scores and LRU order disagree: `hot` was used often but not
/// lately, `recent` once a moment ago, `middle` once in between. The seed formula keeps
/// `hot` (its frequency term) and evicts `middle`; LRU evicts `hot`.
async fn contested_eviction(host: &Host, clock: &ManualClock) -> String {
    let (hot, middle, recent) = (unique_db("hot"), unique_db("middle"), unique_db("recent"));
    let touch = |db: String| async move {
        host.manager
            .db(&db)
            .unwrap()
            .collection::<Document>("c")
            .count_documents(doc! {})
            .await
            .unwrap();
    };
    for _ in 0..20 {
        touch(hot.clone()).await;
        clock.advance(5);
    }
    clock.advance(10_000);
    touch(middle.clone()).await;
    clock.advance(10_000);
    touch(recent.clone()).await;
    clock.advance(10);
    let mut events = host.manager.subscribe();
    touch(unique_db("newcomer")).await;
    let mut evicted = Vec::new();
    while let Ok(e) = events.try_recv() {
        if matches!(e.kind, PoolEventKind::Evicted { .. }) {
            evicted.push(e.db);
        }
    }
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    let victim = evicted.remove(0);
    if victim == hot {
        "hot".into()
    } else if victim == middle {
        "middle".into()
    } else {
        victim
    }
}

async fn scorer_host(scorer_file: std::path::PathBuf, clock: Arc<ManualClock>) -> Host {
    Host::with(Options {
        plugins: vec![("policy".to_string(), scorer_file)],
        watch: true,
        scorer: Some("policy".into()),
        manager: Box::new(move |b| b.max_connections(3).clock(clock)),
        ..Options::default()
    })
    .await
}

/// The value of `polymongo_scorer_<name>` for the active scorer `policy` in the host's
/// metrics, `None` when the metrics show no wasm scorer.
fn scorer_metric(host: &Host, name: &str) -> Option<f64> {
    let metrics = polymongo::metrics::Metrics::new(host.manager.clone(), host.registry.clone());
    let series = format!("polymongo_scorer_{name}{{policy=\"wasm:policy\"}}");
    metric_sample(&metrics.encode(), &series)
}

async fn close_all(host: &Host) {
    for pool in host.manager.stats() {
        host.manager.close_connection(&pool.db_name).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploying_a_scorer_changes_eviction_decisions() {
    let clock = Arc::new(ManualClock::new(10_000_000));
    let host = scorer_host(bundled_wasm("scorer-seed"), clock.clone()).await;
    let info = host
        .registry
        .list()
        .into_iter()
        .find(|p| p.name == "policy")
        .unwrap();
    assert_eq!(info.kind, Some(ComponentKind::Scorer));
    assert!(info.active_scorer);
    assert_eq!(host.manager.summary().policy, "wasm:policy");
    assert_eq!(
        contested_eviction(&host, &clock).await,
        "middle",
        "the seed scorer keeps the frequent pool"
    );

    // Deploy the LRU scorer under the active name: the next decision uses it.
    let lru = bundled_wasm("scorer-lru");
    let lru_version = version_of(&lru);
    host.deploy("policy", &lru);
    eventually(SETTLE, "LRU scorer loaded", || {
        host.registry
            .scorer("policy")
            .is_some_and(|s| s.version() == lru_version)
    })
    .await;
    close_all(&host).await;
    assert_eq!(
        contested_eviction(&host, &clock).await,
        "hot",
        "LRU evicts the least recently used"
    );
    assert_eq!(host.manager.policy_fallbacks(), 0);
    assert!(
        scorer_metric(&host, "calls_total").is_some_and(|calls| calls >= 1.0),
        "the active scorer's calls are in the metrics"
    );
    assert_eq!(
        scorer_metric(&host, "deliveries_total"),
        Some(0.0),
        "and its deliveries of events ahead of decisions (none: fewer than 4096 events)"
    );

    // Deleting the active scorer falls back to the built-in seed formula.
    std::fs::remove_file(host.dir().join("policy.wasm")).unwrap();
    eventually(SETTLE, "scorer unloaded", || {
        host.manager.summary().policy == "seed"
    })
    .await;
    close_all(&host).await;
    assert_eq!(contested_eviction(&host, &clock).await, "middle");
    assert_eq!(
        scorer_metric(&host, "calls_total"),
        None,
        "no wasm scorer metrics once a built-in policy decides"
    );
    assert_eq!(scorer_metric(&host, "deliveries_total"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scorers_fall_back_to_the_seed_formula() {
    for hostile in ["scorer-trap", "scorer-loop", "scorer-nan", "scorer-short"] {
        let clock = Arc::new(ManualClock::new(10_000_000));
        let host = scorer_host(fixture_wasm(hostile), clock.clone()).await;
        assert_eq!(host.manager.summary().policy, "wasm:policy", "{hostile}");
        let before = host.manager.policy_fallbacks();
        assert_eq!(
            contested_eviction(&host, &clock).await,
            "middle",
            "{hostile}: the seed formula decided"
        );
        assert!(
            host.manager.policy_fallbacks() > before,
            "{hostile}: the fallback was counted"
        );
        assert!(host.manager.open_pools() <= 3, "{hostile}: the cap held");
        // What went wrong is in the metrics: the trap as a restart, the loop as an overrun
        // whose call ran (or still runs) past the budget (20 ms; half of it is checked, as
        // the call may have started a moment after the decision began to wait).
        let metric = |name: &str| {
            scorer_metric(&host, name).unwrap_or_else(|| panic!("{hostile}: no {name}"))
        };
        assert!(metric("calls_total") >= 1.0, "{hostile}: calls");
        match hostile {
            "scorer-trap" => assert!(metric("restarts_total") >= 1.0, "{hostile}"),
            "scorer-loop" => {
                assert!(metric("overruns_total") >= 1.0, "{hostile}");
                assert!(metric("slowest_call_seconds") >= 0.01, "{hostile}");
            }
            _ => assert_eq!(
                metric("restarts_total"),
                0.0,
                "{hostile}: answers are checked by the host, not trapped"
            ),
        }
    }
}

/// `bytes`, a wasm component, with a custom section appended: the same code, another version.
fn with_custom_section(bytes: &[u8], payload: &[u8]) -> Vec<u8> {
    let name = b"polymongo-test";
    let size = 1 + name.len() + payload.len();
    assert!(size < 128, "a one-byte LEB128 size");
    let mut out = bytes.to_vec();
    out.extend([0, size as u8, name.len() as u8]);
    out.extend(name);
    out.extend(payload);
    out
}

/// What the active scorer `policy` (the `scorer-counter` fixture) has seen: it scores every
/// pool with its count of events.
fn events_seen(host: &Host) -> f64 {
    let scorer = host.registry.active_wasm_scorer().expect("a wasm scorer");
    let pool = scorer_pool(1, 0);
    let scores = polymongo::pool::EvictionPolicy::score_all(scorer.as_ref(), &[pool], 2);
    assert_eq!(scores.len(), 1, "the scorer answered");
    scores[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeployed_scorer_keeps_what_its_previous_version_learnt() {
    let clock = Arc::new(ManualClock::new(10_000_000));
    let counter = fixture_wasm("scorer-counter");
    let host = scorer_host(counter.clone(), clock.clone()).await;
    // Traffic, and one eviction decided by the scorer.
    contested_eviction(&host, &clock).await;
    let seen = events_seen(&host);
    assert!(seen >= 24.0, "opens, uses and a close were seen: {seen}");

    // A new version under the same name (the counter with a custom section).
    let bytes = with_custom_section(&std::fs::read(&counter).unwrap(), b"v2");
    let v2 = polymongo::runtime::ContentHash::of(&bytes).to_hex();
    host.deploy_bytes("policy", &bytes);
    // v2 decides once the registry has handed it to the manager (just after listing it).
    eventually(SETTLE, "v2 decides", || {
        host.registry
            .active_wasm_scorer()
            .is_some_and(|s| s.component().version() == v2)
    })
    .await;
    assert_eq!(
        events_seen(&host),
        seen,
        "v2 relearnt every event v1 had seen, and has seen nothing else"
    );
    assert_eq!(scorer_metric(&host, "inherited_events_total"), Some(seen));
    assert_eq!(host.manager.policy_fallbacks(), 0);
}
