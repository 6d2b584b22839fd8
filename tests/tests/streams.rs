//! Change streams for plugins (`polymongo:plugin@0.2.0`), against a server that has them:
//! mongo-java-server, which the harness starts beside FerretDB (`polymongo_tests::mjs`), or
//! the server of `POLYMONGO_TEST_URI`. The `streamer` fixture drives the WIT through the Rust
//! SDK; `streamer-js` and `streamer-py` run the loop-cap and resume scenarios through the
//! JavaScript and Python SDKs. The last test serves the same scenario from the host's oplog
//! feed on a FerretDB that keeps an oplog (`pool.change_feed = "auto"`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Document};
use common::{eventually, Host, Options};
use polymongo::pool::{ChangeFeedMode, Error, LruPolicy, PolyMongo, Protection};
use polymongo_tests::mjs::change_stream_uri;
use polymongo_tests::{fixture_wasm, unique_db, FerretDb};
use serde_json::{json, Value};

/// Generous for a slow, loaded machine: nothing here measures time.
const PATIENCE: Duration = Duration::from_secs(60);

/// A host on the change-stream server serving `streamer` with `manifest`, and a pool cap
/// (LRU eviction, so that which pool goes next is plain).
async fn host(manifest: &str, max_connections: usize) -> Host {
    host_for("streamer", manifest, max_connections).await
}

/// The same, serving the fixture `plugin` (`streamer`, `streamer-js` or `streamer-py`).
async fn host_for(plugin: &str, manifest: &str, max_connections: usize) -> Host {
    Host::with(Options {
        plugins: vec![(plugin.into(), fixture_wasm(plugin))],
        manifests: vec![(plugin.into(), manifest.into())],
        manager: Box::new(move |b| {
            b.max_connections(max_connections)
                .policy(Arc::new(LruPolicy))
        }),
        uri: Some(change_stream_uri()),
        ..Options::default()
    })
    .await
}

fn stats_of(pm: &PolyMongo, db: &str) -> Option<polymongo::pool::ConnectionStats> {
    pm.stats().into_iter().find(|s| s.db_name == db)
}

async fn count(pm: &PolyMongo, db: &str, coll: &str) -> u64 {
    pm.db(db)
        .unwrap()
        .collection::<Document>(coll)
        .count_documents(doc! {})
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_sees_its_inserts_and_updates_with_the_full_document() {
    let host = host("[limits]\ndeadline_ms = 30000\n", 10).await;
    sees_its_inserts_and_update(&host, &unique_db("self")).await;
}

/// `/streamer/self` for `tenant`: the plugin's stream shows its three inserts in order, then
/// its update with the full document.
async fn sees_its_inserts_and_update(host: &Host, tenant: &str) {
    let (status, report) = host
        .call(
            tenant,
            "POST",
            "/streamer/self",
            Some(json!({"coll": "c", "count": 3})),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["ops"],
        json!(["insert", "insert", "insert", "update"])
    );
    assert_eq!(
        report["n"],
        json!([0, 1, 2, 0]),
        "inserts in order, then the update's full document"
    );
    assert_eq!(report["updated_full"], json!({"n": 0, "updated": true}));
}

/// A request to `/streamer/hold` for `tenant` (opens a stream, marks `ready`, waits up to
/// `wait_ms` for one event), running in the background: its status and JSON body.
fn spawn_hold(
    host: &Host,
    tenant: &str,
    wait_ms: u32,
) -> tokio::task::JoinHandle<(axum::http::StatusCode, Value)> {
    let app = host.app.clone();
    let tenant = tenant.to_string();
    tokio::spawn(async move {
        let request = axum::http::Request::builder()
            .method("POST")
            .uri("/streamer/hold")
            .header("x-tenant-id", &tenant)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                json!({"coll": "feed", "wait_ms": wait_ms}).to_string(),
            ))
            .unwrap();
        let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, common::parse(&bytes))
    })
}

/// Waits until the `hold` plugin has marked `ready` in `db` (its stream is open).
async fn wait_until_ready(pm: &PolyMongo, db: &str) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while count(pm, db, "ready").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the plugin never opened its stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_protection_survives_an_eviction_storm_and_ends_with_the_request() {
    const CAP: usize = 3;
    let host = host("[limits]\ndeadline_ms = 120000\n", CAP).await;
    let pm = host.manager.clone();
    let watched = unique_db("watched");
    let watched_db = pm.tenant_db_name(&watched).unwrap();

    // A request that opens a stream and then waits on it (up to 100 s) for one event.
    let holder = spawn_hold(&host, &watched, 100_000);
    // The plugin marks `ready` once its stream is open.
    wait_until_ready(&pm, &watched_db).await;
    let stats = stats_of(&pm, &watched_db).expect("the watched pool is open");
    assert_eq!(stats.protected, Some(Protection::Watched), "{stats:?}");
    assert!(stats.has_watch && stats.watch_count >= 1, "{stats:?}");
    // The admin API (and the dashboard, which polls it) shows it as watched.
    let (status, body) = host
        .admin("GET", "/admin/stats", Some(common::TOKEN), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let shown = body["pools"]
        .as_array()
        .and_then(|pools| pools.iter().find(|p| p["db_name"] == json!(watched_db)))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(shown["protected"], json!("watched"), "{body}");

    // The storm: many tenants at the cap, each needing a slot.
    let evictions_before = pm.summary().evictions;
    for i in 0..4 * CAP {
        let other = unique_db(&format!("storm{i}"));
        count(&pm, &other, "c").await;
        let open = pm.stats();
        assert!(open.len() <= CAP, "cap exceeded: {} pools open", open.len());
        assert!(
            open.iter().any(|s| s.db_name == watched_db),
            "the watched pool was evicted at storm step {i}"
        );
    }
    assert!(
        pm.summary().evictions - evictions_before >= (4 * CAP - (CAP - 1)) as u64,
        "the others were evicted to make room: {:?}",
        pm.summary()
    );
    assert!(!holder.is_finished(), "the plugin still holds its stream");

    // An event ends the plugin's wait; the request ends and its stream with it.
    pm.db(&watched_db)
        .unwrap()
        .collection::<Document>("feed")
        .insert_one(doc! { "wake": 1 })
        .await
        .unwrap();
    let (status, report) = tokio::time::timeout(PATIENCE, holder)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["events"], json!(1));
    eventually(PATIENCE, "the watch guard to go with the request", || {
        stats_of(&pm, &watched_db).is_none_or(|s| s.watch_count == 0 && s.protected.is_none())
    })
    .await;
    // Released: the next tenants at the cap evict it (it is the least recently used).
    for i in 0..CAP {
        count(&pm, &unique_db(&format!("after{i}")), "c").await;
    }
    assert!(
        !pm.is_open(&watched_db),
        "the unwatched pool is evictable again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_with_its_lifetime_and_its_pools_protection_with_it() {
    // The manifest gives streams 1.5 s; the plugin waits up to 100 s for an event that never
    // comes, in a request allowed 120 s.
    let host = host(
        "[limits]\ndeadline_ms = 120000\nstream_lifetime_ms = 1500\n",
        10,
    )
    .await;
    let pm = host.manager.clone();
    let tenant = unique_db("lifetime");
    let db = pm.tenant_db_name(&tenant).unwrap();
    let holder = spawn_hold(&host, &tenant, 100_000);
    wait_until_ready(&pm, &db).await;
    // Open and protected until the lifetime runs out (if the machine is slow enough that it
    // already ran out, the request below has ended and this check is moot).
    if !holder.is_finished() {
        let stats = stats_of(&pm, &db).expect("pool open");
        assert!(
            stats.protected == Some(Protection::Watched) || holder.is_finished(),
            "{stats:?}"
        );
    }
    // The host ends the stream long before the plugin's 100 s wait or the 120 s deadline.
    let (status, report) = tokio::time::timeout(PATIENCE, holder)
        .await
        .expect("the stream outlived its lifetime")
        .unwrap();
    assert_eq!(status, 500, "{report}");
    assert_eq!(report["error"], json!("limit-reached"), "{report}");
    let message = report["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("stream_lifetime_ms") && message.contains("resume"),
        "{message}"
    );
    eventually(PATIENCE, "the protection to end with the stream", || {
        stats_of(&pm, &db).is_none_or(|s| s.watch_count == 0 && s.protected.is_none())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_opening_streams_in_a_loop_hits_its_cap_with_a_clear_error() {
    loop_hits_the_cap("streamer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_opening_streams_in_a_loop_hits_its_cap_too() {
    loop_hits_the_cap("streamer-js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_opening_streams_in_a_loop_hits_its_cap_too() {
    loop_hits_the_cap("streamer-py").await;
}

async fn loop_hits_the_cap(plugin: &str) {
    let host = host_for(
        plugin,
        "[limits]\nmax_open_streams = 3\ndeadline_ms = 30000\n",
        10,
    )
    .await;
    let tenant = unique_db("loop");
    for round in 0..2 {
        let (status, report) = host
            .call(
                &tenant,
                "POST",
                &format!("/{plugin}/loop"),
                Some(json!({"coll": "c", "max": 50})),
            )
            .await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["opened"], json!(3), "round {round}: {report}");
        assert_eq!(report["error"], json!("limit-reached"), "{report}");
        let message = report["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("at most 3 change streams") && message.contains("max_open_streams"),
            "{message}"
        );
        // The request is over: its streams (and their slots and guards) are gone.
        let stats = stats_of(
            &host.manager,
            &host.manager.tenant_db_name(&tenant).unwrap(),
        )
        .expect("pool open");
        assert_eq!(stats.watch_count, 0, "round {round}: {stats:?}");
    }
}

/// Events a `/collect` call returned, as the `n` of their documents.
fn ns(report: &Value) -> Vec<i64> {
    report["n"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {report}"))
        .iter()
        .map(|v| v.as_i64().unwrap_or(-1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_a_stored_token_after_a_host_restart_loses_no_event() {
    resume_after_restart("streamer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_resumes_from_a_stored_token_too() {
    resume_after_restart("streamer-js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_resumes_from_a_stored_token_too() {
    resume_after_restart("streamer-py").await;
}

async fn resume_after_restart(plugin: &str) {
    const N: i64 = 25;
    let manifest = "[limits]\ndeadline_ms = 60000\n";
    let path = format!("/{plugin}/collect");
    let tenant = unique_db("resume");
    let collect = |resume_after: Value, want: i64| {
        json!({"coll": "c", "want": want, "wait_ms": 5000, "full_document": true,
               "only_inserts": true, "resume_after": resume_after})
    };

    // A first host: the consumer reads one event (`n: 0`) and stores the token. Marker events
    // are inserted every 200 ms until it has one, as its stream may open after the first.
    let first = host_for(plugin, manifest, 10).await;
    let writer = first
        .manager
        .tenant_db(&tenant)
        .unwrap()
        .collection::<Document>("c");
    let (status, report) = {
        let call = first.call(&tenant, "POST", &path, Some(collect(Value::Null, 1)));
        tokio::pin!(call);
        loop {
            tokio::select! {
                reply = &mut call => break reply,
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    writer.insert_one(doc! { "n": 0_i64 }).await.unwrap();
                }
            }
        }
    };
    assert_eq!(status, 200, "{report}");
    assert_eq!(ns(&report), vec![0], "{report}");
    let token = report["token"].clone();
    assert!(token.is_object(), "a resume token: {report}");
    drop(first);

    // While no consumer runs, N events happen.
    let pm = PolyMongo::builder(change_stream_uri())
        .build()
        .await
        .unwrap();
    let coll = pm.tenant_db(&tenant).unwrap().collection::<Document>("c");
    for n in 1..=N {
        coll.insert_one(doc! { "n": n }).await.unwrap();
    }
    pm.destroy().await.unwrap();

    // A new host (a restart): the consumer resumes from the stored token and gets all N, in
    // order, after any marker events that followed the one it had seen.
    let second = host_for(plugin, manifest, 10).await;
    let mut seen: Vec<i64> = Vec::new();
    let mut token = token;
    while (seen.iter().filter(|&&n| n != 0).count() as i64) < N {
        let (status, report) = second
            .call(&tenant, "POST", &path, Some(collect(token.clone(), 10)))
            .await;
        assert_eq!(status, 200, "{report}");
        let batch = ns(&report);
        assert!(!batch.is_empty(), "events lost after {seen:?}");
        seen.extend(batch);
        token = report["token"].clone();
    }
    let markers = seen.iter().take_while(|&&n| n == 0).count();
    assert_eq!(seen[markers..], (1..=N).collect::<Vec<_>>(), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_api_watch_protects_its_pool_on_a_server_with_change_streams() {
    // The change-stream part of pool.rs's replica-set test, for real.
    let pm = PolyMongo::builder(change_stream_uri())
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let coll = pm
        .db(&unique_db("watch"))
        .unwrap()
        .collection::<Document>("events");
    let mut stream = coll
        .watch()
        .await
        .expect("mongo-java-server has change streams");
    coll.insert_one(doc! { "x": 1 }).await.unwrap();
    let change = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(change.full_document.unwrap().get_i32("x").unwrap(), 1);
    assert!(stream.resume_token().is_some());
    let blocked = pm
        .db(&unique_db("blocked"))
        .unwrap()
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await;
    assert!(
        matches!(blocked, Err(Error::LimitReached { .. })),
        "{blocked:?}"
    );
    drop(stream);
    count(&pm, &unique_db("admitted"), "c").await;
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_resume_token_is_a_clear_error_and_the_host_keeps_serving() {
    let host = host("[limits]\ndeadline_ms = 30000\n", 10).await;
    let tenant = unique_db("garbage");
    let (status, report) = host
        .call(
            &tenant,
            "POST",
            "/streamer/collect",
            Some(json!({"coll": "c", "want": 1, "wait_ms": 100, "resume_after": {"_data": 42}})),
        )
        .await;
    assert_eq!(status, 500, "{report}");
    let kind = report["error"].as_str().unwrap_or_default();
    assert!(
        ["server", "invalid-argument"].contains(&kind),
        "a clear database error: {report}"
    );
    let stats = stats_of(
        &host.manager,
        &host.manager.tenant_db_name(&tenant).unwrap(),
    )
    .expect("pool open");
    assert_eq!(
        stats.watch_count, 0,
        "a failed watch leaves no guard: {stats:?}"
    );
    let (status, report) = host
        .call(
            &tenant,
            "POST",
            "/streamer/self",
            Some(json!({"coll": "d", "count": 1})),
        )
        .await;
    assert_eq!(status, 200, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_server_without_change_streams_a_plugin_gets_unsupported() {
    // The harness's FerretDB (or POLYMONGO_TEST_URI, which may have change streams).
    let host = Host::with(Options {
        plugins: vec![("streamer".into(), fixture_wasm("streamer"))],
        ..Options::default()
    })
    .await;
    let tenant = unique_db("nostreams");
    let (status, report) = host
        .call(
            &tenant,
            "POST",
            "/streamer/collect",
            Some(json!({"coll": "c", "want": 1, "wait_ms": 100})),
        )
        .await;
    if polymongo_tests::using_ferretdb() {
        assert_eq!(status, 500, "{report}");
        assert_eq!(report["error"], json!("unsupported"), "{report}");
        let message = report["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("replica set") && message.contains("FerretDB"),
            "{message}"
        );
        let stats = stats_of(
            &host.manager,
            &host.manager.tenant_db_name(&tenant).unwrap(),
        )
        .expect("pool open");
        assert_eq!(stats.watch_count, 0, "{stats:?}");
    } else {
        assert_eq!(
            status, 200,
            "the external server has change streams: {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_ferretdb_with_an_oplog_the_auto_feed_serves_a_plugin_the_same_events() {
    // FerretDB keeps an oplog once `local.oplog.rs` exists (with a replica set name); it has no
    // change streams, so `change_feed = "auto"` serves the plugin from the host's oplog feed.
    let server = FerretDb::start_temp_with(&["--repl-set-name=rs0"]).expect("start FerretDB");
    let uri = format!("{}?directConnection=true", server.uri());
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    client
        .database("local")
        .create_collection("oplog.rs")
        .capped(true)
        .size(64 * 1024 * 1024)
        .await
        .unwrap();
    let host = Host::with(Options {
        plugins: vec![("streamer".into(), fixture_wasm("streamer"))],
        manifests: vec![("streamer".into(), "[limits]\ndeadline_ms = 30000\n".into())],
        manager: Box::new(|b| b.change_feed(ChangeFeedMode::Auto)),
        uri: Some(uri),
        ..Options::default()
    })
    .await;
    let tenant = unique_db("oplog");
    sees_its_inserts_and_update(&host, &tenant).await;
    let db = host.manager.tenant_db_name(&tenant).unwrap();
    let stats = stats_of(&host.manager, &db).expect("pool open");
    assert_eq!(stats.watch_count, 0, "the feed ended with the request");
}
