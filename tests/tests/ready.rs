//! Instances made ahead of their requests (`RuntimeConfig::ready_instances`): a request that
//! takes one is bound to its own tenant and gets its full deadline, however long the instance
//! waited; JavaScript plugins are made ahead too; with the reserve at 0 every request
//! instantiates its own.

use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId};
use polymongo::pool::PolyMongo;
use polymongo::runtime::{
    InvokeError, InvokeTimings, Loaded, Manifest, Plugin, Request, Response, Runtime, RuntimeConfig,
};
use polymongo_tests::{fixture_wasm, test_uri, unique_db};

mod common;

use common::eventually;

async fn manager() -> PolyMongo {
    PolyMongo::builder(test_uri())
        .metadata_db(unique_db("ready-meta"))
        .build()
        .await
        .expect("manager")
}

fn load(runtime: &Runtime, fixture: &str, manifest: Option<&str>) -> Plugin {
    let wasm = std::fs::read(fixture_wasm(fixture)).expect("fixture wasm");
    let manifest = manifest.map(|m| Manifest::parse(m).expect("manifest"));
    match runtime.load_bytes(fixture, &wasm, manifest).expect("load") {
        Loaded::Tenant(plugin) => plugin,
        Loaded::Scorer(_) => panic!("{fixture} is a tenant plugin"),
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

async fn invoke(
    runtime: &Runtime,
    plugin: &Plugin,
    request: Request,
) -> (Result<Response, InvokeError>, InvokeTimings) {
    // The tenant's database is resolved (validated) by the caller, as the gateway does.
    let tenant = runtime
        .manager()
        .tenant_db(&request.tenant)
        .expect("tenant db");
    runtime.invoke_timed(plugin, tenant, request).await
}

fn body(response: &Response) -> serde_json::Value {
    serde_json::from_slice(&response.body).expect("JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_made_ahead_serves_the_tenant_of_the_request_that_takes_it() {
    let manager = manager().await;
    let runtime = Runtime::new(manager.clone(), RuntimeConfig::default()).expect("runtime");
    let plugin = load(&runtime, "bench", None);

    // The same _id in two tenants' databases, with different payloads.
    let id = ObjectId::new();
    let (a, b) = (unique_db("ready-a"), unique_db("ready-b"));
    for (tenant, payload) in [(&a, "of tenant a"), (&b, "of tenant b")] {
        manager
            .tenant_db(tenant)
            .expect("db")
            .collection::<bson::Document>("items")
            .insert_one(doc! { "_id": id, "payload": payload })
            .await
            .expect("insert");
    }
    let query = format!("id={}", id.to_hex());

    // The first request instantiates its own; the next instance is made after it.
    let (first, timings) = invoke(&runtime, &plugin, request(&a, "/find-one", &query)).await;
    let first = first.expect("first request");
    assert_eq!(body(&first)["payload"], "of tenant a");
    assert!(
        !timings.ready,
        "the first request had no instance made ahead"
    );
    assert!(timings.instantiate.is_some());

    // Alternate tenants: each request takes the instance made ahead and sees its own data.
    for (tenant, payload) in [
        (&b, "of tenant b"),
        (&a, "of tenant a"),
        (&b, "of tenant b"),
    ] {
        eventually(Duration::from_secs(5), "an instance made ahead", || {
            plugin.has_ready_instance()
        })
        .await;
        let (response, timings) =
            invoke(&runtime, &plugin, request(tenant, "/find-one", &query)).await;
        let response = response.expect("request");
        assert!(timings.ready, "the request took the instance made ahead");
        assert!(timings.instantiate.is_none(), "and did not instantiate");
        assert_eq!(body(&response)["payload"], payload, "tenant {tenant}");
    }
    manager.destroy().await.expect("destroy");
}

const HOSTILE_MANIFEST: &str = r#"
[limits]
deadline_ms = 400
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_made_ahead_gets_the_full_deadline_and_loops_are_still_stopped() {
    let manager = manager().await;
    let runtime = Runtime::new(manager.clone(), RuntimeConfig::default()).expect("runtime");
    let plugin = load(&runtime, "hostile", Some(HOSTILE_MANIFEST));
    let tenant = unique_db("ready-deadline");

    let (first, timings) = invoke(&runtime, &plugin, request(&tenant, "/ok", "")).await;
    assert_eq!(first.expect("first request").status, 200);
    assert!(!timings.ready);
    eventually(Duration::from_secs(5), "an instance made ahead", || {
        plugin.has_ready_instance()
    })
    .await;

    // The instance waits longer than a deadline; its request still gets a whole one.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (ok, timings) = invoke(&runtime, &plugin, request(&tenant, "/ok", "")).await;
    assert!(timings.ready, "the request took the instance made ahead");
    assert_eq!(ok.expect("ok after waiting").status, 200);

    // An endless loop in an instance made ahead is stopped at the request's deadline, not
    // at one counted from when the instance was made.
    eventually(Duration::from_secs(5), "an instance made ahead", || {
        plugin.has_ready_instance()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let started = Instant::now();
    let (looped, timings) = invoke(&runtime, &plugin, request(&tenant, "/loop", "")).await;
    let elapsed = started.elapsed();
    assert!(
        timings.ready,
        "the looping request took the instance made ahead"
    );
    assert!(
        matches!(looped, Err(InvokeError::Timeout(400))),
        "{looped:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(350),
        "the loop ran for its request's deadline, stopped after {elapsed:?}"
    );

    // And the plugin keeps serving.
    let (ok, _) = invoke(&runtime, &plugin, request(&tenant, "/ok", "")).await;
    assert_eq!(ok.expect("ok after the loop").status, 200);
    manager.destroy().await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_reserve_every_request_instantiates_its_own() {
    let manager = manager().await;
    let config = RuntimeConfig {
        ready_instances: 0,
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(manager.clone(), config).expect("runtime");
    let plugin = load(&runtime, "bench", None);
    let tenant = unique_db("ready-none");
    let query = format!("id={}", ObjectId::new().to_hex());
    for _ in 0..3 {
        let (response, timings) =
            invoke(&runtime, &plugin, request(&tenant, "/find-one", &query)).await;
        assert_eq!(response.expect("request").status, 404, "no such item");
        assert!(!timings.ready);
        assert!(timings.instantiate.is_some());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!plugin.has_ready_instance());
    }
    manager.destroy().await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_is_made_ahead_too() {
    let manager = manager().await;
    let runtime = Runtime::new(manager.clone(), RuntimeConfig::default()).expect("runtime");
    // The JavaScript twin of the bench fixture: milliseconds to instantiate.
    let plugin = load(&runtime, "bench-js", None);
    let tenant = unique_db("ready-js");
    let (ping, timings) = invoke(&runtime, &plugin, request(&tenant, "/ping", "")).await;
    assert_eq!(ping.expect("ping").status, 200);
    assert!(
        timings.instantiate.is_some(),
        "the first request instantiated"
    );
    eventually(Duration::from_secs(10), "an instance made ahead", || {
        plugin.has_ready_instance()
    })
    .await;
    let (ping, timings) = invoke(&runtime, &plugin, request(&tenant, "/ping", "")).await;
    assert_eq!(ping.expect("ping").status, 200);
    assert!(
        timings.ready,
        "the second request took the instance made ahead"
    );
    manager.destroy().await.expect("destroy");
}
