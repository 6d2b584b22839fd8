//! Consumers over their life: a tenant past its cap gets the fifth subscription refused, a
//! consumer's pool is protected through an eviction storm, hot reloads keep delivering and
//! removal stops the consumer, and a plugin with subscriptions but no `subscriber` export fails
//! to load with a clear error.

use super::*;

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
