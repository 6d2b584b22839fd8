//! Background consumers of plugins' `[[subscriptions]]` (`host/src/consumers/`), against a
//! server with change streams (mongo-java-server, `polymongo_tests::mjs`, or the server of
//! `POLYMONGO_TEST_URI`). The `subscriber` fixture upserts every delivered event into the
//! tenant's `received` collection keyed by its resume token, so `received` holds each event
//! once however often it was delivered; a `{_id: "fail"}` in `control` makes it fail.
//! `subscriber-js` and `subscriber-py` do the same through the JavaScript and Python SDKs and
//! run the delivery, restart and back-off scenarios too.

mod common;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_past_its_cap_gets_the_fifth_subscription_refused() {
    let tenant = unique_db("cap");
    let subs: Vec<(String, String)> = (1..=5)
        .map(|i| (format!("s{i}"), format!("c{i}")))
        .collect();
    let subs: Vec<(&str, &str)> = subs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let host = host(&manifest(&subs, &[&tenant]), &unique_db("meta"), 10, false).await;
    for s in ["s1", "s2", "s3", "s4"] {
        wait_running(&host, s, &tenant).await;
    }
    let refused = consumer(&host, "s5", &tenant).expect("the fifth is listed");
    assert_eq!(refused.state, ConsumerState::Refused, "{refused:?}");
    let error = refused.last_error.unwrap_or_default();
    assert!(
        error.contains("already has 4 subscriptions")
            && error.contains("max_subscriptions_per_tenant"),
        "{error}"
    );
    let (_, body) = host
        .admin("GET", "/admin/consumers", Some(common::TOKEN), None)
        .await;
    let states: Vec<&str> = body["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["running", "running", "running", "running", "refused"],
        "{body}"
    );
    // The refused one really does not run: an event on its collection is not delivered,
    // while one on a running subscription's is.
    let pm = host.manager.clone();
    coll(&pm, &tenant, "c5")
        .insert_one(doc! { "n": 5_i64 })
        .await
        .unwrap();
    coll(&pm, &tenant, "c1")
        .insert_one(doc! { "n": 1_i64 })
        .await
        .unwrap();
    until("the running subscription's event", || async {
        count(&pm, &tenant, "received").await >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received_ns(&pm, &tenant).await, vec![1]);
    host.consumers.as_ref().unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumers_pool_is_protected_through_an_eviction_storm() {
    const CAP: usize = 3;
    let tenant = unique_db("storm");
    let host = host(
        &manifest(&[("feed", "events")], &[&tenant]),
        &unique_db("meta"),
        CAP,
        false,
    )
    .await;
    let pm = host.manager.clone();
    let db = pm.tenant_db_name(&tenant).unwrap();
    wait_running(&host, "feed", &tenant).await;
    let stats = pm
        .stats()
        .into_iter()
        .find(|s| s.db_name == db)
        .expect("open");
    assert_eq!(stats.protected, Some(Protection::Watched), "{stats:?}");
    assert!(stats.watch_count >= 1, "{stats:?}");
    let evictions = pm.summary().evictions;
    for i in 0..4 * CAP {
        count(&pm, &unique_db(&format!("other{i}")), "c").await;
        let open = pm.stats();
        assert!(open.len() <= CAP, "cap exceeded: {open:?}");
        assert!(
            open.iter().any(|s| s.db_name == db),
            "the consumer's pool was evicted at step {i}"
        );
    }
    assert!(pm.summary().evictions > evictions, "others were evicted");
    // It still delivers.
    coll(&pm, &tenant, "events")
        .insert_one(doc! { "n": 7_i64 })
        .await
        .unwrap();
    until("the event after the storm", || async {
        count(&pm, &tenant, "received").await == 1
    })
    .await;
    host.consumers.as_ref().unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reloads_keep_delivering_and_removal_stops_the_consumer() {
    let tenant = unique_db("reload");
    let host = host(
        &manifest(&[("feed", "a")], &[&tenant]),
        &unique_db("meta"),
        10,
        true,
    )
    .await;
    let pm = host.manager.clone();
    wait_running(&host, "feed", &tenant).await;
    coll(&pm, &tenant, "a")
        .insert_one(doc! { "n": 0_i64 })
        .await
        .unwrap();
    until("the first event", || async {
        count(&pm, &tenant, "received").await == 1
    })
    .await;

    // A new version with the same subscription: the consumer keeps running and delivers to it.
    let loaded = host.registry.reload_counts().loaded;
    let same = format!("{}\n# v2\n", manifest(&[("feed", "a")], &[&tenant]));
    std::fs::write(host.dir().join("subscriber.toml"), same).unwrap();
    until("the reload", || async {
        host.registry.reload_counts().loaded > loaded
    })
    .await;
    coll(&pm, &tenant, "a")
        .insert_one(doc! { "n": 1_i64 })
        .await
        .unwrap();
    until("the event after the reload", || async {
        count(&pm, &tenant, "received").await == 2
    })
    .await;

    // A version that watches another collection replaces the consumer; it continues.
    let loaded = host.registry.reload_counts().loaded;
    std::fs::write(
        host.dir().join("subscriber.toml"),
        manifest(&[("feed", "b")], &[&tenant]),
    )
    .unwrap();
    until("the second reload", || async {
        host.registry.reload_counts().loaded > loaded
    })
    .await;
    until("the consumer on b", || async {
        consumer(&host, "feed", &tenant)
            .is_some_and(|c| c.collection == "b" && c.state == ConsumerState::Running)
    })
    .await;
    coll(&pm, &tenant, "b")
        .insert_one(doc! { "n": 2_i64 })
        .await
        .unwrap();
    until("the event on b", || async {
        count(&pm, &tenant, "received").await == 3
    })
    .await;
    assert_eq!(received_ns(&pm, &tenant).await, vec![0, 1, 2]);

    // Removing the plugin stops its consumers.
    std::fs::remove_file(host.dir().join("subscriber.wasm")).unwrap();
    until("the consumer to go", || async {
        consumer(&host, "feed", &tenant).is_none()
    })
    .await;
    let watched = || {
        pm.stats()
            .into_iter()
            .find(|s| s.db_name == pm.tenant_db_name(&tenant).unwrap())
    };
    until("the watch guard to go", || async {
        watched().is_none_or(|s| s.watch_count == 0)
    })
    .await;
    coll(&pm, &tenant, "b")
        .insert_one(doc! { "n": 3_i64 })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count(&pm, &tenant, "received").await,
        3,
        "nothing delivered after removal"
    );
    host.consumers.as_ref().unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_with_subscriptions_but_no_subscriber_export_fails_to_load_clearly() {
    let tenant = unique_db("noexport");
    let host = Host::with(Options {
        plugins: vec![("streamer".into(), fixture_wasm("streamer"))],
        manifests: vec![(
            "streamer".into(),
            manifest(&[("feed", "events")], &[&tenant]),
        )],
        uri: Some(change_stream_uri()),
        consumers: Some(config()),
        ..Options::default()
    })
    .await;
    let listed = host.registry.list();
    let error = listed[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("declares [[subscriptions]]")
            && error.contains("does not export polymongo:plugin/subscriber@0.2.0"),
        "{listed:?}"
    );
    assert!(host.registry.get("streamer").is_none(), "not serving");
    assert!(host.registry.consumer_board().list().is_empty());
    host.consumers.as_ref().unwrap().shutdown().await;
}
