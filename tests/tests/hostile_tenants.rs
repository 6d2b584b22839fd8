//! The noisy tenant and tenant-name abuse (issue #13, items 3, 4, 9 and the tenant part of
//! 10): a tenant header cannot name a database outside the tenant namespace, names MongoDB
//! treats as one are one tenant, forbidden names are refused by the host, a burst of made-up
//! tenants cannot exceed the pool cap nor churn every pool, and one tenant's slow requests or
//! idle cursors cannot starve the others. Every test also checks that another tenant is still
//! served and that no data crossed between tenants.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use bson::{doc, Document};
use polymongo::plugins::PluginStatus;
use polymongo::pool::{OpenRateLimits, Protection};
use polymongo_tests::{fixture_wasm, test_uri, unique_db};
use serde_json::{json, Value};

mod common;

use common::{eventually, parse, Host, Options, TOKEN};

/// A hostile plugin with room for many concurrent requests and long sleeps.
const ROOMY: &str = r#"
[limits]
deadline_ms = 20000
max_concurrent = 200
max_open_cursors = 4
"#;

/// Sends `GET path` for `tenant` as if from `client` (the address the server would record).
async fn get_from(
    host: &Host,
    client: Option<IpAddr>,
    tenant: &str,
    path: &str,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let mut request = Request::builder()
        .uri(path)
        .header("x-tenant-id", tenant)
        .body(Body::empty())
        .unwrap();
    if let Some(ip) = client {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
    }
    let (status, body, headers) = host.send(request).await;
    (status, parse(&body), headers)
}

/// Adds a note for `tenant` and returns the notes its database holds (and the database).
async fn note(host: &Host, client: Option<IpAddr>, tenant: &str, v: &str) -> (String, Vec<String>) {
    let (status, body, _) = get_from(host, client, tenant, &format!("/hostile/note?v={v}")).await;
    assert_eq!(status, StatusCode::OK, "{tenant}: {body}");
    let notes = body["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    (body["db"].as_str().unwrap().to_string(), notes)
}

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_header_cannot_name_a_granted_shared_or_default_database() {
    let shared = unique_db("shared-catalog");
    let grant = format!("databases = [\"{shared}\"]\n");
    let host = Host::start(
        &[
            ("granted", fixture_wasm("hostile")),
            ("hostile", fixture_wasm("hostile")),
        ],
        &[("granted", grant.as_str())],
    )
    .await;
    let client = mongodb::Client::with_uri_str(test_uri()).await.unwrap();
    client
        .database(&shared)
        .collection::<Document>("x")
        .insert_one(doc! { "catalog": 1 })
        .await
        .unwrap();
    let bystander = unique_db("bystander");
    note(&host, None, &bystander, "mine").await;

    // The plugin without a grant, with the shared database's name as tenant: it gets a
    // database of its own in the tenant namespace, never the granted one.
    let marker = unique_db("intruder");
    let (db, notes) = note(&host, None, &shared, &marker).await;
    assert_ne!(db, shared);
    assert!(host.manager.namespace().contains(&db), "{db}");
    assert_eq!(notes, std::slice::from_ref(&marker));
    let names = client
        .database(&shared)
        .list_collection_names()
        .await
        .unwrap();
    assert_eq!(
        names,
        ["x"],
        "nothing was written into the granted database"
    );

    // The same for the default database (`Default-DB`, not a reserved name on main).
    let (db, _) = note(&host, None, "Default-DB", &marker).await;
    assert_ne!(db.to_ascii_lowercase(), "default-db");
    let leaked = client
        .database("Default-DB")
        .collection::<Document>("notes")
        .count_documents(doc! { "v": &marker })
        .await
        .unwrap();
    assert_eq!(leaked, 0, "nothing was written into the default database");

    // The plugin with the grant still reaches the shared database; the bystander still
    // sees exactly its own data.
    let (status, body, _) = get_from(
        &host,
        None,
        &unique_db("reader"),
        &format!("/granted/other-tenant?db={shared}"),
    )
    .await;
    assert_eq!(
        (status, &body["open"]),
        (StatusCode::OK, &json!("ok")),
        "{body}"
    );
    let (_, notes) = note(&host, None, &bystander, "again").await;
    assert_eq!(notes, ["again", "mine"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_inside_the_tenant_namespace_is_refused_at_load() {
    let inside = format!("t_{}", unique_db("victim"));
    let grant = format!("databases = [\"{inside}\"]\n");
    let host = Host::start(
        &[
            ("greedy", fixture_wasm("hostile")),
            ("hostile", fixture_wasm("hostile")),
        ],
        &[("greedy", grant.as_str())],
    )
    .await;
    let greedy = host
        .registry
        .list()
        .into_iter()
        .find(|p| p.name == "greedy")
        .unwrap();
    assert_eq!(greedy.status, PluginStatus::Error, "{greedy:?}");
    assert!(
        greedy
            .last_error
            .unwrap_or_default()
            .contains("tenant database prefix"),
        "the load error explains why"
    );
    let (status, _, _) = get_from(&host, None, "victim", "/greedy/other-tenant?db=x").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the plugin does not serve");
    let (status, body, _) = get_from(&host, None, &unique_db("other"), "/hostile/ok").await;
    assert_eq!((status, body), (StatusCode::OK, json!("ok")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_differ_only_in_case_are_one_tenant() {
    let host = Host::start(&[("hostile", fixture_wasm("hostile"))], &[]).await;
    let lower = unique_db("acme");
    let upper = lower.to_ascii_uppercase();
    let other = unique_db("globex");
    let (db_upper, _) = note(&host, None, &upper, "from-upper").await;
    let (db_lower, notes) = note(&host, None, &lower, "from-lower").await;
    assert_eq!(db_upper, db_lower, "one database");
    assert_eq!(
        notes,
        ["from-lower", "from-upper"],
        "one tenant, one data set"
    );
    let pools: Vec<String> = host
        .manager
        .stats()
        .into_iter()
        .map(|s| s.db_name)
        .filter(|n| n.eq_ignore_ascii_case(&db_lower))
        .collect();
    assert_eq!(pools, std::slice::from_ref(&db_lower), "one pool");
    // Plugins see the canonical tenant name.
    let (_, other_notes) = note(&host, None, &other, "globex-only").await;
    assert_eq!(other_notes, ["globex-only"], "no data crossed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_mongodb_forbids_are_refused_by_the_host_on_every_path() {
    let host = Host::start(&[("hostile", fixture_wasm("hostile"))], &[]).await;
    let before = host.manager.summary();
    // Characters MongoDB (or FerretDB) refuses in database names, and a name whose prefixed
    // database would exceed 63 bytes.
    let too_long = "x".repeat(62);
    for tenant in [
        "a.b", "a$b", "a/b", "a\\b", "a\"b", "a*b", "a<b", "a>b", "a:b", "a|b", "a?b", "a@b",
        "a#b", "a%b", "a+b", "a,b", "a=b", "a b", &too_long,
    ] {
        let (status, body, _) = get_from(&host, None, tenant, "/hostile/note?v=x").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{tenant:?}: {body}");
        assert_eq!(body["kind"], json!("invalid_tenant"), "{tenant:?}: {body}");
    }
    let after = host.manager.summary();
    assert_eq!(
        (after.opens, after.open_failures, after.misses),
        (before.opens, before.open_failures, before.misses),
        "no name reached the server"
    );
    // The admin API names databases; a forbidden name is a 400 on every route.
    for path in [
        "/admin/priorities/a.b",
        "/admin/priorities/a$b",
        "/admin/pools/a.b/open",
        "/admin/pools/a.b/close",
    ] {
        let method = if path.starts_with("/admin/pools") {
            "POST"
        } else {
            "GET"
        };
        let (status, body) = host.admin(method, path, Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
    let (status, body) = host
        .admin(
            "PUT",
            "/admin/priorities/a.b",
            Some(TOKEN),
            Some(json!({"priority": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A valid tenant is still served, with its own data only.
    let (_, notes) = note(&host, None, &unique_db("valid"), "ok").await;
    assert_eq!(notes, ["ok"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_made_up_tenants_stays_under_the_default_cap_and_is_rate_limited() {
    let host = Arc::new(
        Host::with(Options {
            plugins: vec![("hostile".into(), fixture_wasm("hostile"))],
            manifests: vec![("hostile".into(), ROOMY.into())],
            ..Options::default()
        })
        .await,
    );
    let cap = host
        .manager
        .summary()
        .max_connections
        .expect("pools are capped by default");
    let established = unique_db("established");
    let (_, notes) = note(&host, ip(1), &established, "before").await;
    assert_eq!(notes, ["before"]);

    // One client cycles 100 made-up tenant names at once.
    let peak = Arc::new(AtomicUsize::new(0));
    let burst: Vec<_> = (0..100)
        .map(|i| {
            let (host, peak) = (host.clone(), peak.clone());
            tokio::spawn(async move {
                let tenant = unique_db(&format!("madeup{i}"));
                let (status, body, headers) =
                    get_from(&host, ip(66), &tenant, &format!("/hostile/note?v={tenant}")).await;
                peak.fetch_max(host.manager.open_pools(), Ordering::SeqCst);
                (tenant, status, body, headers)
            })
        })
        .collect();
    let mut limited = 0;
    for task in burst {
        let (tenant, status, body, headers) = task.await.unwrap();
        match status {
            StatusCode::OK => {
                assert_eq!(body["notes"], json!([tenant]), "no data crossed: {body}")
            }
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["kind"], json!("open_rate_limited"), "{body}");
                assert!(headers.contains_key("retry-after"), "{headers:?}");
                limited += 1;
            }
            other => panic!("{tenant}: unexpected {other}: {body}"),
        }
        // The established tenant keeps answering during the burst, from another client.
        let (_, notes) = note(&host, ip(1), &established, "during").await;
        assert!(
            notes.iter().all(|n| n == "before" || n == "during"),
            "{notes:?}"
        );
    }
    assert!(limited > 0, "storm control refused part of the burst");
    assert!(
        peak.load(Ordering::SeqCst) <= cap && host.manager.open_pools() <= cap,
        "open pools never exceed the cap of {cap}"
    );
    let (_, notes) = note(&host, ip(1), &established, "after").await;
    assert_eq!(notes.len(), 102, "{notes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_open_no_pool_cost_no_open_tokens() {
    // A burst of 8 per client and no refill to speak of, so that the count is exact however
    // slow the machine.
    let burst = 8;
    let host = Host::with(Options {
        plugins: vec![("hostile".into(), fixture_wasm("hostile"))],
        manifests: vec![("hostile".into(), ROOMY.into())],
        manager: Box::new(move |b| {
            b.open_rate(OpenRateLimits {
                per_client_per_sec: 0.0001,
                per_client_burst: burst as u32,
                ..OpenRateLimits::default()
            })
        }),
        ..Options::default()
    })
    .await;
    // Far more made-up tenants than the client's burst, on a route whose plugin never uses
    // the database: nothing is opened, so nothing is refused.
    for i in 0..burst * 3 {
        let tenant = unique_db(&format!("nodb{i}"));
        let (status, _, _) = get_from(&host, ip(77), &tenant, "/hostile/ok").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "request {i} opened no pool: not limited"
        );
    }
    assert_eq!(host.manager.open_pools(), 0, "no pool was opened");
    // The same client's tokens are all there: tenants that do open pools get exactly the
    // burst before the client is limited.
    let mut served = 0;
    for i in 0..burst * 2 {
        let tenant = unique_db(&format!("opens{i}"));
        let (status, body, _) =
            get_from(&host, ip(77), &tenant, &format!("/hostile/note?v={i}")).await;
        match status {
            StatusCode::OK => served += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["kind"], json!("open_rate_limited"), "{body}");
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(
        served, burst,
        "the whole burst was available, then the client was limited"
    );
    // Another client is unaffected.
    let (_, notes) = note(&host, ip(78), &unique_db("other"), "ok").await;
    assert_eq!(notes, ["ok"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_slow_requests_leave_the_plugin_to_the_others() {
    // max_concurrent 4: by default a tenant may run a quarter of it, one instance.
    let manifest = "[limits]\ndeadline_ms = 20000\nmax_concurrent = 4\n";
    let host = Arc::new(
        Host::start(
            &[("hostile", fixture_wasm("hostile"))],
            &[("hostile", manifest)],
        )
        .await,
    );
    let noisy = unique_db("noisy");
    let done = Arc::new(AtomicUsize::new(0));
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let (host, noisy, done) = (host.clone(), noisy.clone(), done.clone());
            tokio::spawn(async move {
                let reply = get_from(&host, None, &noisy, "/hostile/sleep?ms=8000").await;
                done.fetch_add(1, Ordering::SeqCst);
                reply
            })
        })
        .collect();
    // Every slow request is either running or already refused.
    let plugin = host.registry.get("hostile").unwrap();
    eventually(
        Duration::from_secs(10),
        "the noisy requests are placed",
        || plugin.in_flight() as usize + done.load(Ordering::SeqCst) == 4,
    )
    .await;
    // Another tenant is served while the noisy one holds its share.
    let quiet = unique_db("quiet");
    let (_, notes) = note(&host, None, &quiet, "served").await;
    assert_eq!(notes, ["served"], "no data crossed");
    let mut outcomes = Vec::new();
    for task in slow {
        let (status, body, headers) = task.await.unwrap();
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["kind"], json!("tenant_busy"), "{body}");
            assert!(headers.contains_key("retry-after"));
        }
        outcomes.push(status);
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "the noisy tenant got its share (1 of 4) and no more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_holding_idle_cursors_cannot_starve_a_fifth_tenant() {
    let host = Arc::new(
        Host::with(Options {
            plugins: vec![("hostile".into(), fixture_wasm("hostile"))],
            manifests: vec![("hostile".into(), ROOMY.into())],
            manager: Box::new(|b| {
                b.max_connections(4)
                    .acquire_timeout(Duration::from_secs(3))
                    .cursor_grace(Duration::from_millis(300))
            }),
            ..Options::default()
        })
        .await,
    );
    // Four tenants each hold a cursor, unused, for longer than the fifth would wait.
    let holders: Vec<_> = (0..4)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move {
                let tenant = unique_db(&format!("holder{i}"));
                get_from(&host, None, &tenant, "/hostile/hold-cursor?ms=8000").await
            })
        })
        .collect();
    eventually(
        Duration::from_secs(10),
        "four pools held by cursors",
        || {
            let stats = host.manager.stats();
            stats.len() == 4
                && stats
                    .iter()
                    .all(|s| s.open_cursors == 1 && s.in_flight == 0)
        },
    )
    .await;
    let stats = host.manager.stats();
    assert!(
        stats
            .iter()
            .all(|s| s.protected != Some(Protection::Pinned)),
        "{stats:?}"
    );

    // The fifth tenant gets a slot: a pool held only by an idle cursor is evictable.
    let fifth = unique_db("fifth");
    let (_, notes) = note(&host, None, &fifth, "served").await;
    assert_eq!(notes, ["served"], "no data crossed");
    assert!(host.manager.open_pools() <= 4);

    // The holders finish cleanly: a cursor whose pool was taken reports `unavailable`.
    let mut unavailable = 0;
    for task in holders {
        let (status, body, _) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["first"], json!(1), "{body}");
        match &body["rest"] {
            Value::Number(n) => assert_eq!(n.as_u64(), Some(2), "{body}"),
            kind => {
                assert_eq!(kind, &json!("unavailable"), "{body}");
                unavailable += 1;
            }
        }
    }
    assert!(
        unavailable >= 1,
        "a held cursor's pool was given to the fifth tenant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tenant_is_refused_by_the_gateway_on_every_tenant_route_and_never_a_500() {
    // The gateway resolves the tenant's database once, before the plugin is looked up or the
    // body read; the runtime is handed that database and does not check the name again.
    let prefixed = Host::start(&[("hostile", fixture_wasm("hostile"))], &[]).await;
    // Without a prefix the system and metadata databases are names a tenant could send.
    let meta = unique_db("bare-meta");
    let bare_meta = meta.clone();
    let bare = Host::with(Options {
        plugins: vec![("hostile".into(), fixture_wasm("hostile"))],
        manager: Box::new(move |b| b.tenant_db_prefix("").metadata_db(bare_meta)),
        ..Options::default()
    })
    .await;
    // Too long for a database name with or without the prefix.
    let too_long = "x".repeat(64);
    let bad_everywhere = ["a.b", "a$b", "a b", "", too_long.as_str()];
    let reserved_without_prefix = ["admin", "local", "config", meta.as_str()];
    let routes = [
        ("GET", "/hostile"),
        ("GET", "/hostile/"),
        ("GET", "/hostile/note?v=x"),
        ("POST", "/hostile/note?v=x"),
        ("GET", "/no-such-plugin/x"),
    ];
    for (host, names) in [
        (&prefixed, bad_everywhere.to_vec()),
        (&bare, bad_everywhere.to_vec()),
        (&bare, reserved_without_prefix.to_vec()),
    ] {
        let before = host.manager.summary();
        for tenant in names {
            for (method, path) in routes {
                let body = (method == "POST").then(|| json!({ "x": 1 }));
                let (status, reply) = host.call(tenant, method, path, body).await;
                assert_ne!(
                    status,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "{tenant:?} {method} {path}: {reply}"
                );
                assert_eq!(
                    status,
                    StatusCode::BAD_REQUEST,
                    "{tenant:?} {method} {path}: {reply}"
                );
                assert_eq!(
                    reply["kind"],
                    json!("invalid_tenant"),
                    "{tenant:?} {method} {path}: {reply}"
                );
            }
        }
        let after = host.manager.summary();
        assert_eq!(
            (after.opens, after.open_failures, after.misses),
            (before.opens, before.open_failures, before.misses),
            "no refused name reached the server"
        );
    }
    // A valid tenant is served by both hosts.
    for host in [&prefixed, &bare] {
        let (status, reply) = host
            .call(&unique_db("valid"), "GET", "/hostile/note?v=ok", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    // Once the connection manager is shut down, a valid tenant is told the service is
    // unavailable (503), not that the host failed.
    prefixed.manager.destroy().await.expect("destroy");
    let (status, reply) = prefixed
        .call(&unique_db("late"), "GET", "/hostile/note?v=x", None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reply}");
}
