//! Background consumers of plugins' `[[subscriptions]]` (`host/src/consumers/`), against a
//! server with change streams (mongo-java-server, `polymongo_tests::mjs`, or the server of
//! `POLYMONGO_TEST_URI`). The `subscriber` fixture upserts every delivered event into the
//! tenant's `received` collection keyed by its resume token, so `received` holds each event
//! once however often it was delivered; a `{_id: "fail"}` in `control` makes it fail.
//! `subscriber-js` and `subscriber-py` do the same through the JavaScript and Python SDKs and
//! run the delivery, restart and back-off scenarios too. Caps, protection from eviction, hot
//! reloads and a plugin without the export are in `lifecycle.rs`.

#[path = "../common/mod.rs"]
mod common;
mod lifecycle;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use common::{Host, Options};
use polymongo::consumers::{ConsumerInfo, ConsumerState, ConsumersConfig};
use polymongo::pool::{Collection, ConsumerKey, LruPolicy, PolyMongo, Protection};
use polymongo_tests::mjs::change_stream_uri;
use polymongo_tests::{fixture_wasm, unique_db, workspace_root};
use serde_json::json;

/// Generous for a slow, loaded machine: nothing here measures time.
const PATIENCE: Duration = Duration::from_secs(60);

/// Short back-offs, so that the tests see several tries.
fn config() -> ConsumersConfig {
    ConsumersConfig {
        max_batch: 10,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        max_per_tenant: 4,
    }
}

/// A manifest with one subscription per (name, collection), each for `tenants`.
fn manifest(subscriptions: &[(&str, &str)], tenants: &[&str]) -> String {
    let tenants: Vec<String> = tenants.iter().map(|t| format!("{t:?}")).collect();
    let mut text = String::from("[limits]\ndeadline_ms = 30000\n");
    for (name, collection) in subscriptions {
        text.push_str(&format!(
            "\n[[subscriptions]]\nname = {name:?}\ncollection = {collection:?}\ntenants = [{}]\nfull_document = true\n",
            tenants.join(", ")
        ));
    }
    text
}

/// A host on the change-stream server serving `subscriber` with `manifest` and running its
/// consumers, on metadata database `meta`.
async fn host(manifest: &str, meta: &str, max_connections: usize, watch: bool) -> Host {
    host_for("subscriber", manifest, meta, max_connections, watch).await
}

/// The same, serving the fixture `plugin` (`subscriber`, `subscriber-js` or `subscriber-py`),
/// with the tests' compile cache (a JavaScript or Python component takes 10-20 s to compile).
async fn host_for(
    plugin: &str,
    manifest: &str,
    meta: &str,
    max_connections: usize,
    watch: bool,
) -> Host {
    Host::with(Options {
        plugins: vec![(plugin.into(), fixture_wasm(plugin))],
        manifests: vec![(plugin.into(), manifest.into())],
        cache_dir: Some(workspace_root().join("target/compile-cache-tests")),
        manager: Box::new(move |b| {
            b.max_connections(max_connections)
                .policy(Arc::new(LruPolicy))
        }),
        uri: Some(change_stream_uri()),
        metadata_db: Some(meta.into()),
        consumers: Some(config()),
        watch,
        ..Options::default()
    })
    .await
}

/// Polls `condition` every 20 ms until it holds, failing after [`PATIENCE`] with `what`.
async fn until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn consumer(host: &Host, subscription: &str, tenant: &str) -> Option<ConsumerInfo> {
    consumer_of(host, "subscriber", subscription, tenant)
}

fn consumer_of(
    host: &Host,
    plugin: &str,
    subscription: &str,
    tenant: &str,
) -> Option<ConsumerInfo> {
    host.registry
        .consumer_board()
        .get(&ConsumerKey::new(plugin, subscription, tenant))
}

async fn wait_running(host: &Host, subscription: &str, tenant: &str) {
    wait_running_of(host, "subscriber", subscription, tenant).await;
}

async fn wait_running_of(host: &Host, plugin: &str, subscription: &str, tenant: &str) {
    until(
        &format!("{plugin}/{subscription} for {tenant} to run"),
        || async {
            consumer_of(host, plugin, subscription, tenant)
                .is_some_and(|c| c.state == ConsumerState::Running)
        },
    )
    .await;
}

fn coll(pm: &PolyMongo, tenant: &str, name: &str) -> Collection<Document> {
    pm.tenant_db(tenant).unwrap().collection::<Document>(name)
}

async fn count(pm: &PolyMongo, tenant: &str, name: &str) -> u64 {
    coll(pm, tenant, name)
        .count_documents(doc! {})
        .await
        .unwrap()
}

/// The `n` of every document in `received`, sorted.
async fn received_ns(pm: &PolyMongo, tenant: &str) -> Vec<i64> {
    let mut cursor = coll(pm, tenant, "received")
        .find(doc! {}, None)
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(d) = cursor.next().await {
        let d = d.unwrap();
        out.push(
            d.get_i64("n")
                .or_else(|_| d.get_i32("n").map(i64::from))
                .unwrap_or(-1),
        );
    }
    out.sort_unstable();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_delivers_inserts_to_the_plugin() {
    delivers_inserts("subscriber").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_delivers_inserts_to_a_javascript_plugin() {
    delivers_inserts("subscriber-js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_delivers_inserts_to_a_python_plugin() {
    delivers_inserts("subscriber-py").await;
}

/// Five inserts reach `plugin`'s `deliver`, each once; the admin API shows the consumer.
async fn delivers_inserts(plugin: &str) {
    let tenant = unique_db("deliver");
    let host = host_for(
        plugin,
        &manifest(&[("feed", "events")], &[&tenant]),
        &unique_db("meta"),
        10,
        false,
    )
    .await;
    let pm = host.manager.clone();
    wait_running_of(&host, plugin, "feed", &tenant).await;
    for n in 0..5_i64 {
        coll(&pm, &tenant, "events")
            .insert_one(doc! { "n": n })
            .await
            .unwrap();
    }
    until("5 events received", || async {
        count(&pm, &tenant, "received").await == 5
    })
    .await;
    assert_eq!(received_ns(&pm, &tenant).await, vec![0, 1, 2, 3, 4]);
    let inserts = coll(&pm, &tenant, "received")
        .count_documents(doc! { "op": "insert", "subscription": "feed" })
        .await
        .unwrap();
    assert_eq!(
        inserts, 5,
        "each event's operationType and subscription recorded"
    );
    // The plugin's write is visible before the host counts the delivery that made it.
    until("the last delivery counted", || async {
        consumer_of(&host, plugin, "feed", &tenant).is_some_and(|i| i.delivered >= 5)
    })
    .await;
    let info = consumer_of(&host, plugin, "feed", &tenant).unwrap();
    assert_eq!(info.delivered, 5, "{info:?}");
    assert_eq!(info.collection, "events");
    // The admin API shows it.
    let (status, body) = host
        .admin("GET", "/admin/consumers", Some(common::TOKEN), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let shown = &body["consumers"][0];
    assert_eq!(shown["tenant"], json!(tenant), "{body}");
    assert_eq!(shown["state"], json!("running"), "{body}");
    assert_eq!(shown["delivered"], json!(5), "{body}");
    assert!(
        body["deliveries"]["events"].as_u64().unwrap_or(0) >= 5,
        "{body}"
    );
    host.consumers.as_ref().unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_host_restart_the_consumer_loses_no_event() {
    restart_loses_no_event("subscriber").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_host_restart_a_javascript_consumer_loses_no_event() {
    restart_loses_no_event("subscriber-js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_host_restart_a_python_consumer_loses_no_event() {
    restart_loses_no_event("subscriber-py").await;
}

/// One event delivered to `plugin`, the host stopped, 40 inserted, a new host on the same
/// metadata database: exactly those 40 arrive, each once.
async fn restart_loses_no_event(plugin: &str) {
    const N: i64 = 40;
    let tenant = unique_db("restart");
    let meta = unique_db("meta");
    let text = manifest(&[("feed", "events")], &[&tenant]);

    // A first host delivers one event, then stops (its consumer finishes and stores the
    // token after that delivery).
    let first = host_for(plugin, &text, &meta, 10, false).await;
    wait_running_of(&first, plugin, "feed", &tenant).await;
    coll(&first.manager, &tenant, "events")
        .insert_one(doc! { "n": 0_i64 })
        .await
        .unwrap();
    until("the first event", || async {
        count(&first.manager, &tenant, "received").await == 1
    })
    .await;
    first.consumers.as_ref().unwrap().shutdown().await;
    first.manager.destroy().await.unwrap();
    drop(first);

    // While no consumer runs, N events happen.
    let pm = PolyMongo::builder(change_stream_uri())
        .build()
        .await
        .unwrap();
    for n in 1..=N {
        coll(&pm, &tenant, "events")
            .insert_one(doc! { "n": n })
            .await
            .unwrap();
    }

    // A new host on the same metadata database resumes from the stored token: all N arrive,
    // each exactly once in `received`, and nothing before the token is delivered again.
    let second = host_for(plugin, &text, &meta, 10, false).await;
    until("all events after the restart", || async {
        count(&pm, &tenant, "received").await == (N + 1) as u64
    })
    .await;
    assert_eq!(received_ns(&pm, &tenant).await, (0..=N).collect::<Vec<_>>());
    // The plugin's write is visible before the host counts the delivery that made it.
    until("the last delivery counted", || async {
        consumer_of(&second, plugin, "feed", &tenant).is_some_and(|i| i.delivered >= N as u64)
    })
    .await;
    let info = consumer_of(&second, plugin, "feed", &tenant).unwrap();
    assert_eq!(
        info.delivered, N as u64,
        "only the events after the token: {info:?}"
    );
    second.consumers.as_ref().unwrap().shutdown().await;
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_delivery_backs_off_and_is_delivered_again() {
    failing_delivery_backs_off("subscriber", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_subscriber_that_throws_is_delivered_the_same_events_again() {
    failing_delivery_backs_off("subscriber-js", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_subscriber_that_returns_an_error_is_delivered_the_same_events_again() {
    failing_delivery_backs_off("subscriber-js", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_subscriber_that_raises_is_delivered_the_same_events_again() {
    failing_delivery_backs_off("subscriber-py", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_subscriber_that_returns_an_exception_is_delivered_the_same_events_again() {
    failing_delivery_backs_off("subscriber-py", true).await;
}

/// While `plugin` fails (`control/fail`), the consumer backs off within its bounds and shows
/// the plugin's message; healed, the same events arrive, none lost. With `returns`, the JS and
/// Python fixtures return their error instead of throwing it (the Rust one always returns it).
async fn failing_delivery_backs_off(plugin: &str, returns: bool) {
    let tenant = unique_db("backoff");
    let host = host_for(
        plugin,
        &manifest(&[("feed", "events")], &[&tenant]),
        &unique_db("meta"),
        10,
        false,
    )
    .await;
    let pm = host.manager.clone();
    wait_running_of(&host, plugin, "feed", &tenant).await;
    coll(&pm, &tenant, "control")
        .insert_one(doc! { "_id": "fail", "returns": returns })
        .await
        .unwrap();
    for n in 0..3_i64 {
        coll(&pm, &tenant, "events")
            .insert_one(doc! { "n": n })
            .await
            .unwrap();
    }
    until("several failed tries", || async {
        count(&pm, &tenant, "attempts").await >= 3
    })
    .await;
    let info = consumer_of(&host, plugin, "feed", &tenant).unwrap();
    assert_eq!(info.state, ConsumerState::BackingOff, "{info:?}");
    // The plugin's own message, returned as `err` (not a trap): what the SDKs make of a
    // thrown or raised error.
    assert!(
        info.last_error
            .as_deref()
            .unwrap_or("")
            .contains("refused the events: told to fail (control/fail)"),
        "{info:?}"
    );
    assert!(
        info.retry_in_ms.is_some_and(|ms| (100..=400).contains(&ms)),
        "{info:?}"
    );
    assert_eq!(count(&pm, &tenant, "received").await, 0);

    // Healed: the same events are delivered, none lost.
    coll(&pm, &tenant, "control")
        .delete_many(doc! {})
        .await
        .unwrap();
    until("the events after healing", || async {
        count(&pm, &tenant, "received").await == 3
    })
    .await;
    assert_eq!(received_ns(&pm, &tenant).await, vec![0, 1, 2]);
    let info = consumer_of(&host, plugin, "feed", &tenant).unwrap();
    assert_eq!(info.state, ConsumerState::Running, "{info:?}");
    assert!(info.failures >= 3, "{info:?}");
    let (status, metrics) = host.admin("GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap_or_default();
    let failed = text
        .lines()
        .find(|l| l.starts_with("polymongo_consumer_deliveries_total{outcome=\"failed\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(failed >= 3.0, "{text}");
    assert!(
        text.contains("polymongo_consumers{state=\"running\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("polymongo_consumer_events_delivered_total 3"),
        "{text}"
    );
    host.consumers.as_ref().unwrap().shutdown().await;
}
