//! A hostile HTTP client, and a plugin forging the HTTP framing, against the real gateway on a
//! real TCP listener (issue #13, items 2, 5 and 10). Every test also checks that the host
//! keeps serving other tenants and that no data crossed between tenants.
//!
//! No test measures speed: the timeouts under test are set to about a second, and each wait
//! for the server is bounded by [`GUARD`] only so that a regression fails instead of hanging.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use polymongo::gateway::{
    self, AppState, ConnectionLimits, GatewayConfig, Listeners, RouterOptions, ServeError,
};
use polymongo_tests::{fixture_wasm, unique_db};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

#[path = "../common/mod.rs"]
mod common;
mod trace;

use common::raw_http::*;
use common::{eventually, Host, TOKEN};

/// A body for the `forger` fixture: answer with exactly this status, headers and body.
fn forged(status: u16, headers: &[(&str, &str)], body: &str) -> String {
    json!({ "status": status, "headers": headers, "body": body }).to_string()
}

/// A complete HTTP response, as a forged body would carry it.
const SMUGGLED: &str = "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nforged!";

// Item 2: a plugin cannot forge the framing of the connection it answers on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_forge_the_framing_of_the_next_response() {
    let served = Served::start(Setup::default()).await;
    let tenants = Tenants::create(served.addr).await;
    let cases: Vec<(&str, String)> = vec![
        (
            "content-length: 0",
            forged(200, &[("content-length", "0")], SMUGGLED),
        ),
        (
            "a content-length too large",
            forged(200, &[("Content-Length", "100000")], "short"),
        ),
        (
            "transfer-encoding: chunked",
            forged(
                200,
                &[("transfer-encoding", "chunked")],
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
        ),
        (
            "connection: close and keep-alive",
            forged(
                200,
                &[("connection", "close"), ("keep-alive", "timeout=1")],
                "x",
            ),
        ),
        (
            "status 101 with upgrade",
            forged(
                101,
                &[("connection", "upgrade"), ("upgrade", "websocket")],
                SMUGGLED,
            ),
        ),
        ("status 999", forged(999, &[], SMUGGLED)),
        ("status 100", forged(100, &[], SMUGGLED)),
        (
            "CR/LF in a header value",
            forged(
                200,
                &[("x-a", "1\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK")],
                "body",
            ),
        ),
    ];
    for (case, body) in cases {
        // The forging request (tenant a) and an innocent one (tenant b), pipelined on one
        // keep-alive connection.
        let mut conn = Conn::open(served.addr).await;
        let mut bytes = request(
            "POST",
            "/forger/forge",
            Some(&tenants.a),
            Some(&body),
            false,
        );
        bytes.extend(request(
            "GET",
            "/forger/whoami",
            Some(&tenants.b),
            None,
            true,
        ));
        conn.send(&bytes).await;
        let first = conn
            .next_reply()
            .await
            .expect("the forged request's response");
        let sent: Value = serde_json::from_str(&body).unwrap();
        let status = sent["status"].as_u64().unwrap() as u16;
        if (200..=599).contains(&status) {
            assert_eq!(first.status, status, "{case}");
            assert_eq!(
                first.body,
                sent["body"].as_str().unwrap().as_bytes(),
                "{case}: the whole body, framed by the host"
            );
        } else {
            assert_eq!(first.status, 502, "{case}");
            assert_eq!(first.json()["kind"], "invalid_response", "{case}");
        }
        for owned in ["connection", "upgrade", "keep-alive", "transfer-encoding"] {
            assert!(
                first.header(owned).is_none(),
                "{case}: {owned} reached the client"
            );
        }
        let second = conn
            .next_reply()
            .await
            .unwrap_or_else(|| panic!("{case}: the second request got no response"));
        assert_eq!(
            (
                second.status,
                String::from_utf8_lossy(&second.body).into_owned()
            ),
            (200, tenants.b.clone()),
            "{case}: the second request gets its own real answer"
        );
        assert!(
            conn.closed_by_server().await,
            "{case}: nothing after the second response"
        );
    }
    tenants.assert_isolated(served.addr).await;
    served.stop().await;
}

// Item 5: unfinished headers do not stay open forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_headers_are_closed_after_the_header_read_timeout() {
    let served = Served::start(Setup {
        limits: ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            ..ConnectionLimits::default()
        },
        ..Setup::default()
    })
    .await;
    let tenants = Tenants::create(served.addr).await;
    let mut slowloris = Conn::open(served.addr).await;
    slowloris
        .send(b"GET /forger/whoami HTTP/1.1\r\nhost: test\r\nx-tenant-id: ")
        .await;
    // An idle keep-alive connection waiting for its next request is bounded the same way.
    let mut idle = Conn::open(served.addr).await;
    idle.send(&request("GET", "/healthz", None, None, false))
        .await;
    assert_eq!(idle.next_reply().await.map(|r| r.status), Some(200));
    tenants.assert_isolated(served.addr).await;
    assert!(
        slowloris.closed_by_server().await,
        "unfinished headers are cut off"
    );
    assert!(
        idle.closed_by_server().await,
        "an idle keep-alive connection is closed"
    );
    tenants.assert_isolated(served.addr).await;
    served.stop().await;
}

// Item 5 and the per-client fairness: connection limits, global and per client IP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limits_are_refused_and_other_clients_still_served() {
    let served = Served::start(Setup {
        limits: ConnectionLimits {
            max_connections: 6,
            max_connections_per_ip: 3,
            // Long enough that the hog's idle connections stay open for the whole test.
            header_read_timeout: Duration::from_secs(300),
            ..ConnectionLimits::default()
        },
        ..Setup::default()
    })
    .await;
    let tenants = Tenants::create(served.addr).await;
    // Client 127.0.0.2 holds three keep-alive connections.
    let mut hog = Vec::new();
    for _ in 0..3 {
        hog.push(admitted_from("127.0.0.2", served.addr).await);
    }
    let mut refused = Conn::open_from("127.0.0.2", served.addr).await;
    let reply = refused.next_reply().await.expect("a 503 before the close");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["kind"], "too_many_connections");
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(refused.closed_by_server().await);
    // Another client is still served, and tenants still see only their own data.
    tenants.assert_isolated_from("127.0.0.3", served.addr).await;
    // Three keep-alive connections from 127.0.0.5 fill the total of 6.
    for _ in 0..3 {
        hog.push(admitted_from("127.0.0.5", served.addr).await);
    }
    let over = call_from("127.0.0.4", served.addr, "GET", "/healthz", None, None).await;
    assert_eq!(over.status, 503, "over the total");
    // Closing the hog's connections gives the slots back.
    hog.clear();
    let _ = admitted_from("127.0.0.4", served.addr).await;
    tenants.assert_isolated_from("127.0.0.4", served.addr).await;
    served.stop().await;
}

/// A keep-alive connection from `source` that the server admitted (a `/healthz` answered
/// 200 on it), retrying while slots of just-closed connections are still being released.
async fn admitted_from(source: &str, addr: SocketAddr) -> Conn {
    for _ in 0..1200 {
        let mut conn = Conn::open_from(source, addr).await;
        conn.send(&request("GET", "/healthz", None, None, false))
            .await;
        match conn.next_reply().await {
            Some(reply) if reply.status == 200 => return conn,
            _ => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    panic!("no connection from {source} was admitted");
}

// Item 5: the tenant and the plugin are checked before the body is read, so a stalled upload
// to a wrong tenant or plugin (or a busy plugin) is answered at once and costs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_are_refused_before_their_body_is_read() {
    let served = Served::start(Setup {
        manifests: vec![(
            "hostile".into(),
            "[limits]\nmax_concurrent = 1\ndeadline_ms = 3000\n".into(),
        )],
        ..Setup::default()
    })
    .await;
    let tenants = Tenants::create(served.addr).await;
    // Heads that announce an 8 MiB body which never comes.
    let stalled = |path: &str, tenant_headers: &[&str], length: usize| {
        let mut head =
            format!("POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {length}\r\n");
        for t in tenant_headers {
            head.push_str(&format!("x-tenant-id: {t}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    };
    let max = 8 << 20;
    let (a, b) = (tenants.a.as_str(), tenants.b.as_str());
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "unknown plugin",
            stalled("/nope/x", &[a], max),
            404,
            "unknown_plugin",
        ),
        (
            "no tenant",
            stalled("/forger/forge", &[], max),
            400,
            "missing_tenant",
        ),
        (
            "invalid tenant",
            stalled("/forger/forge", &["a/b"], max),
            400,
            "invalid_tenant",
        ),
        (
            "two tenant headers",
            stalled("/forger/forge", &[a, b], max),
            400,
            "duplicate_tenant",
        ),
        (
            "too large",
            stalled("/forger/forge", &[a], max + 1),
            413,
            "body_too_large",
        ),
    ];
    let mut open = Vec::new();
    for (case, bytes, status, kind) in cases {
        let mut conn = Conn::open(served.addr).await;
        conn.send(&bytes).await;
        let reply = conn
            .next_reply()
            .await
            .unwrap_or_else(|| panic!("{case}: no answer"));
        assert_eq!(
            (reply.status, reply.json()["kind"].clone()),
            (status, json!(kind)),
            "{case}"
        );
        open.push(conn);
    }
    // A plugin at its concurrency limit refuses before reading the body, too.
    let addr = served.addr;
    let tenant_a = tenants.a.clone();
    let looping =
        tokio::spawn(
            async move { call(addr, "GET", "/hostile/loop", Some(&tenant_a), None).await },
        );
    let hostile = served.host.registry.get("hostile").unwrap();
    eventually(GUARD, "the loop runs", || hostile.in_flight() == 1).await;
    let mut busy = Conn::open(served.addr).await;
    busy.send(&stalled("/hostile/ok", &[b], max)).await;
    let reply = busy
        .next_reply()
        .await
        .expect("an answer to the busy plugin");
    assert_eq!(
        (reply.status, reply.header("retry-after")),
        (503, Some("1"))
    );
    // The looping tenant is over its share of the plugin (a quarter of 1, rounded up): its
    // next upload is refused before its body is read, too, with the tenant's own 429.
    let mut over_share = Conn::open(served.addr).await;
    over_share.send(&stalled("/hostile/ok", &[a], max)).await;
    let reply = over_share
        .next_reply()
        .await
        .expect("an answer to the tenant over its share");
    assert_eq!(
        (
            reply.status,
            reply.header("retry-after"),
            reply.json()["kind"].clone()
        ),
        (429, Some("1"), json!("tenant_busy"))
    );
    assert_eq!(looping.await.unwrap().status, 504);
    drop(open);
    drop(busy);
    drop(over_share);
    tenants.assert_isolated(served.addr).await;
    served.stop().await;
}

// Item 5: a body that stops arriving is cut off by the body timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408() {
    let served = Served::start(Setup {
        config: GatewayConfig {
            admin_token: Some(TOKEN.into()),
            body_read_timeout: Duration::from_secs(1),
            ..GatewayConfig::default()
        },
        ..Setup::default()
    })
    .await;
    let tenants = Tenants::create(served.addr).await;
    let mut conn = Conn::open(served.addr).await;
    let head = format!(
        "POST /users/users HTTP/1.1\r\nhost: test\r\nx-tenant-id: {}\r\ncontent-length: 100\r\n\r\n{{\"name\":",
        tenants.a
    );
    conn.send(head.as_bytes()).await;
    let reply = conn.next_reply().await.expect("a 408");
    assert_eq!(
        (reply.status, reply.json()["kind"].clone()),
        (408, json!("body_timeout"))
    );
    tenants.assert_isolated(served.addr).await;
    served.stop().await;
}

// Item 5: a client that stops reading its response does not hold its connection forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_by_the_idle_timeout() {
    let served = Served::start(Setup {
        limits: ConnectionLimits {
            max_connections_per_ip: 1,
            idle_timeout: Duration::from_secs(1),
            header_read_timeout: Duration::from_secs(300),
            ..ConnectionLimits::default()
        },
        ..Setup::default()
    })
    .await;
    let tenants = Tenants::create(served.addr).await;
    // 16 MiB of response, far more than the sockets buffer: the server's writes stall.
    const SIZE: usize = 16 << 20;
    let body = json!({"status": 200, "body": "x", "repeat": SIZE}).to_string();
    let mut reader = Conn::open_from("127.0.0.6", served.addr).await;
    reader
        .send(&request(
            "POST",
            "/forger/forge",
            Some(&tenants.a),
            Some(&body),
            true,
        ))
        .await;
    // 127.0.0.6 may hold one connection: it gets another only once the stalled one is gone.
    let probe = admitted_from("127.0.0.6", served.addr).await;
    drop(probe);
    let mut received = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(GUARD, reader.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received += n,
            Err(_) => panic!("the stalled connection is still open"),
        }
    }
    assert!(
        received < SIZE,
        "the response was cut off ({received} bytes)"
    );
    tenants.assert_isolated(served.addr).await;
    served.stop().await;
}

// Item 10: two tenant headers are refused, whatever they say, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenant_headers_are_refused() {
    let served = Served::start(Setup::default()).await;
    let tenants = Tenants::create(served.addr).await;
    for pair in [
        [&tenants.a, &tenants.b],
        [&tenants.b, &tenants.a],
        [&tenants.a, &tenants.a],
    ] {
        let body = json!({"name": "mallory", "email": "mallory@example.test"}).to_string();
        let bytes = format!(
            "POST /users/users HTTP/1.1\r\nhost: test\r\nx-tenant-id: {}\r\nX-Tenant-Id: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            pair[0],
            pair[1],
            body.len()
        );
        let mut conn = Conn::open(served.addr).await;
        conn.send(bytes.as_bytes()).await;
        let reply = conn.next_reply().await.expect("an answer");
        assert_eq!(
            (reply.status, reply.json()["kind"].clone()),
            (400, json!("duplicate_tenant"))
        );
    }
    tenants.assert_isolated(served.addr).await;
    served.stop().await;
}

// Item 10: a separate admin listener; the public one does not serve the admin API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_and_metrics_are_served_only_on_the_admin_listener() {
    let served = Served::start(Setup {
        admin_listener: true,
        ..Setup::default()
    })
    .await;
    let admin = served.admin.unwrap();
    let tenants = Tenants::create(served.addr).await;
    for path in [
        "/admin/stats",
        "/admin/plugins",
        "/admin/ui",
        "/metrics",
        "/admin",
    ] {
        let reply = call(served.addr, "GET", path, None, None).await;
        assert_eq!(reply.status, 404, "{path} on the public listener");
    }
    let mut conn = Conn::open(admin).await;
    conn.send(format!("GET /admin/stats HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n").as_bytes()).await;
    let stats = conn.next_reply().await.unwrap();
    assert_eq!(stats.status, 200);
    assert!(stats.json()["summary"].is_object());
    assert_eq!(
        call(admin, "GET", "/admin/stats", None, None).await.status,
        401
    );
    assert_eq!(call(admin, "GET", "/metrics", None, None).await.status, 200);
    assert_eq!(
        call(admin, "GET", "/admin/ui", None, None).await.status,
        200
    );
    assert_eq!(call(admin, "GET", "/healthz", None, None).await.status, 200);
    // Tenant routes are not on the admin listener.
    let on_admin = call(admin, "GET", "/forger/whoami", Some(&tenants.a), None).await;
    assert_eq!(on_admin.status, 404);
    tenants.assert_isolated(served.addr).await;
    served.stop().await;
}

// Item 10: the library refuses to serve an open admin API beyond loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_api_without_a_token_is_never_served_beyond_loopback() {
    let host = Host::start(&[("forger", fixture_wasm("forger"))], &[]).await;
    let state = || AppState {
        manager: host.manager.clone(),
        registry: host.registry.clone(),
        config: Arc::new(GatewayConfig::default()),
    };
    let everywhere = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let result = gateway::serve_with(
        everywhere.into(),
        state(),
        RouterOptions::default(),
        ConnectionLimits::default(),
        async {},
    )
    .await;
    assert!(
        matches!(result, Err(ServeError::OpenAdmin(_))),
        "{result:?}"
    );
    // The public port everywhere, the admin API on loopback: served.
    let public = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", public.local_addr().unwrap().port())
        .parse()
        .unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(gateway::serve_with(
        Listeners {
            public,
            admin: Some(admin),
        },
        state(),
        RouterOptions::default(),
        ConnectionLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let tenant = unique_db("open-admin");
    let reply = call(addr, "GET", "/forger/whoami", Some(&tenant), None).await;
    assert_eq!((reply.status, reply.body), (200, tenant.into_bytes()));
    let _ = stop.send(());
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
