//! `/metrics`: the Prometheus exposition after real traffic through the gateway (real
//! plugins, the real connection manager on FerretDB).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use polymongo::gateway::{self, AppState, GatewayConfig, RouterOptions};
use polymongo::recording::{TraceNames, TraceOptions, TraceRecorder};
use polymongo_tests::{bundled_wasm, fixture_wasm, unique_db};
use tower::ServiceExt;

mod common;

use common::{metric_sample, Host, Options, TOKEN};

/// The exposition text, checking the status and content type.
async fn scrape(host: &Host) -> String {
    let request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let (status, body, headers) = host.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        polymongo::metrics::CONTENT_TYPE
    );
    String::from_utf8(body).unwrap()
}

/// The value of the sample `series` (name with its labels, exactly as exposed).
fn value(text: &str, series: &str) -> f64 {
    metric_sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// The value of a counter `series` that has no sample until it is first counted.
fn optional_value(text: &str, series: &str) -> f64 {
    metric_sample(text, series).unwrap_or(0.0)
}

/// Checks Prometheus naming conventions on every family: prefix, `_total` on counters, base
/// units on histograms.
fn check_conventions(text: &str) {
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line["# TYPE ".len()..].split(' ');
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(name.starts_with("polymongo_"), "{line}");
        match kind {
            "counter" => assert!(name.ends_with("_total"), "{line}"),
            "histogram" => assert!(name.ends_with("_seconds"), "{line}"),
            "gauge" => assert!(!name.ends_with("_total"), "{line}"),
            other => panic!("unexpected type {other}: {line}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_pool_opens_and_plugin_outcomes_without_tenant_names() {
    let host = Host::start(
        &[
            ("users", bundled_wasm("users")),
            ("hostile", fixture_wasm("hostile")),
        ],
        &[],
    )
    .await;
    let tenants = [unique_db("metrics-a"), unique_db("metrics-b")];
    for tenant in &tenants {
        for _ in 0..2 {
            let (status, body) = host.call(tenant, "GET", "/users/users", None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    let (status, body) = host.call(&tenants[0], "GET", "/hostile/ok", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = host.call(&tenants[1], "GET", "/hostile/trap", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["kind"], "trap");
    // Unknown plugins are 404 and must not become label values.
    let (status, _) = host
        .call(&tenants[0], "GET", "/no-such-plugin/x", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let text = scrape(&host).await;
    check_conventions(&text);
    for tenant in &tenants {
        assert!(
            !text.contains(tenant.as_str()),
            "tenant name {tenant} leaked into the metrics:\n{text}"
        );
    }
    assert!(!text.contains("no-such-plugin"), "{text}");
    assert!(!text.contains("mongodb://"), "no URI in the metrics");

    assert!(value(&text, "polymongo_pool_opens_total") >= 2.0, "{text}");
    assert_eq!(value(&text, "polymongo_pools_open"), 2.0, "{text}");
    assert_eq!(value(&text, "polymongo_pool_open_failures_total"), 0.0);
    assert_eq!(value(&text, "polymongo_pool_limit_reached_total"), 0.0);
    assert_eq!(value(&text, "polymongo_operations_in_flight"), 0.0);
    let (hits, misses) = (
        value(&text, "polymongo_pool_hits_total"),
        value(&text, "polymongo_pool_misses_total"),
    );
    assert!(misses >= 2.0 && hits >= 2.0, "hits {hits} misses {misses}");
    let ratio = value(&text, "polymongo_pool_hit_ratio");
    assert!((ratio - hits / (hits + misses)).abs() < 1e-9, "{ratio}");
    assert_eq!(
        value(
            &text,
            r#"polymongo_plugin_invocations_total{plugin="users",outcome="ok"}"#
        ),
        4.0
    );
    assert_eq!(
        value(
            &text,
            r#"polymongo_plugin_invocations_total{plugin="hostile",outcome="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"polymongo_plugin_invocations_total{plugin="hostile",outcome="trap"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"polymongo_plugin_request_duration_seconds_count{plugin="users"}"#
        ),
        4.0
    );
    let latency = value(
        &text,
        r#"polymongo_plugin_request_duration_seconds_sum{plugin="users"}"#,
    );
    assert!(latency > 0.0 && latency < 60.0, "{latency}");
    let inst = value(
        &text,
        r#"polymongo_plugin_instantiation_duration_seconds_sum{plugin="users"}"#,
    );
    assert!(inst > 0.0 && inst < 10.0, "{inst}");
    // Every request either instantiated its component or took an instance made ahead of it
    // (which one depends on how fast the plugin instantiates on this machine).
    for (plugin, requests) in [("users", 4.0), ("hostile", 2.0)] {
        let instantiated = value(
            &text,
            &format!(
                r#"polymongo_plugin_instantiation_duration_seconds_count{{plugin="{plugin}"}}"#
            ),
        );
        let ready = optional_value(
            &text,
            &format!(r#"polymongo_plugin_ready_instance_requests_total{{plugin="{plugin}"}}"#),
        );
        assert_eq!(instantiated + ready, requests, "{plugin}: {text}");
        assert!(
            instantiated >= 1.0,
            "the first {plugin} request instantiated"
        );
    }
    assert_eq!(
        value(&text, r#"polymongo_plugin_reloads_total{outcome="loaded"}"#),
        2.0
    );
    assert_eq!(
        value(&text, r#"polymongo_plugin_reloads_total{outcome="failed"}"#),
        0.0
    );
    assert_eq!(
        value(&text, r#"polymongo_plugins{kind="tenant",status="ok"}"#),
        2.0
    );
    assert_eq!(
        value(&text, r#"polymongo_plugin_in_flight{plugin="users"}"#),
        0.0
    );
    assert_eq!(value(&text, "polymongo_scorer_fallbacks_total"), 0.0);
    assert_eq!(
        value(&text, r#"polymongo_eviction_policy{policy="seed"}"#),
        1.0
    );
    // Pool open times come from the manager's event stream.
    assert!(value(&text, "polymongo_pool_open_duration_seconds_count") >= 2.0);

    // The counters are the manager's own (read at scrape time, not duplicated).
    let summary = host.manager.summary();
    assert_eq!(
        value(&text, "polymongo_pool_opens_total"),
        summary.opens as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_evictions_by_policy_under_a_cap() {
    let host = Host::with(Options {
        plugins: vec![("users".into(), bundled_wasm("users"))],
        manager: Box::new(|b| b.max_connections(2)),
        ..Options::default()
    })
    .await;
    let tenants: Vec<String> = (0..5).map(|i| unique_db(&format!("churn{i}"))).collect();
    for tenant in &tenants {
        let (status, body) = host.call(tenant, "GET", "/users/users", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // The event task counts evictions asynchronously; the total is exact either way.
    let text = scrape(&host).await;
    check_conventions(&text);
    assert_eq!(value(&text, "polymongo_pools_max"), 2.0);
    assert!(value(&text, "polymongo_pools_open") <= 2.0, "{text}");
    assert!(value(&text, "polymongo_pool_opens_total") >= 5.0, "{text}");
    assert!(
        value(&text, r#"polymongo_pool_evictions_total{policy="seed"}"#) >= 3.0,
        "{text}"
    );
    for tenant in &tenants {
        assert!(!text.contains(tenant.as_str()), "{tenant} leaked:\n{text}");
    }

    // A requested close is counted apart from evictions.
    let open = host.manager.stats()[0].db_name.clone();
    let (status, _) = host
        .admin(
            "POST",
            &format!("/admin/pools/{open}/close"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = scrape(&host).await;
    assert_eq!(value(&text, "polymongo_pool_closes_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_their_own_token_and_the_dashboard_page_needs_none() {
    let host = Host::start(&[], &[]).await;
    let app = gateway::router_with(
        AppState {
            manager: host.manager.clone(),
            registry: host.registry.clone(),
            config: Arc::new(GatewayConfig {
                admin_token: Some(TOKEN.into()),
                ..GatewayConfig::default()
            }),
        },
        RouterOptions {
            metrics_token: Some("scrape-token".into()),
            ..RouterOptions::default()
        },
    );
    let get = |uri: &str, token: Option<&str>| {
        let mut r = Request::builder().uri(uri);
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.body(Body::empty()).unwrap()
    };
    let status = |r: Request<Body>| {
        let app = app.clone();
        async move { app.oneshot(r).await.unwrap().status() }
    };
    assert_eq!(
        status(get("/metrics", None)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(get("/metrics", Some(TOKEN))).await,
        StatusCode::UNAUTHORIZED,
        "the admin token is not the metrics token"
    );
    assert_eq!(
        status(get("/metrics", Some("scrape-token"))).await,
        StatusCode::OK
    );

    // The dashboard's static files are public; its data is not.
    let page = app.clone().oneshot(get("/admin/ui", None)).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .is_some());
    let html = axum::body::to_bytes(page.into_body(), 1 << 20)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&html).contains("/admin/ui/app.js"));
    assert_eq!(status(get("/admin/ui/app.js", None)).await, StatusCode::OK);
    assert_eq!(
        status(get("/admin/stats", None)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(get("/admin/stats", Some(TOKEN))).await,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_trace_counts_are_exposed_while_it_records() {
    let host = Host::start(&[], &[]).await;
    assert!(
        metric_sample(&scrape(&host).await, "polymongo_trace_records_total").is_none(),
        "no trace, no trace metrics"
    );
    let dir = tempfile::tempdir().unwrap();
    let recorder = TraceRecorder::start(TraceOptions {
        path: dir.path().join("trace.lirs"),
        max_bytes: 1 << 20,
        names: TraceNames::Hashed,
    })
    .unwrap();
    host.manager.set_access_recorder(Some(recorder.clone()));
    let app = gateway::router_with(
        AppState {
            manager: host.manager.clone(),
            registry: host.registry.clone(),
            config: Arc::new(GatewayConfig::default()),
        },
        RouterOptions {
            trace: Some(recorder.clone()),
            ..RouterOptions::default()
        },
    );
    let db = unique_db("traced");
    for _ in 0..3 {
        host.manager
            .db(&db)
            .unwrap()
            .collection::<bson::Document>("c")
            .count_documents(bson::doc! {})
            .await
            .unwrap();
    }
    recorder.finish();
    let request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let text = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&text);
    assert_eq!(value(&text, "polymongo_trace_records_total"), 3.0);
    assert_eq!(value(&text, "polymongo_trace_dropped_total"), 0.0);
    check_conventions(&text);
}
