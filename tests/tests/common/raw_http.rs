//! A raw HTTP/1.1 client over TCP and a host served on real loopback listeners, for the hostile
//! HTTP tests (`hostile_http/`): requests written byte by byte, responses framed by hand, so a
//! test sees exactly what the gateway sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use polymongo::gateway::{
    self, AppState, ConnectionLimits, GatewayConfig, Listeners, RouterOptions, ServeError,
};
use polymongo::recording::TraceRecorder;
use polymongo_tests::{bundled_wasm, fixture_wasm, unique_db};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{parse, Host, Options, TOKEN};

/// The longest any step waits for the server before the test fails.
pub const GUARD: Duration = Duration::from_secs(30);

/// A host serving on real loopback listeners.
pub struct Served {
    pub host: Host,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<Result<(), ServeError>>>,
}

/// How a test host is served.
pub struct Setup {
    pub limits: ConnectionLimits,
    pub config: GatewayConfig,
    pub admin_listener: bool,
    pub manifests: Vec<(String, String)>,
    /// A request trace to record, wired as `polymongo serve` wires `[trace]`.
    pub trace: Option<Arc<TraceRecorder>>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            limits: ConnectionLimits::default(),
            config: GatewayConfig {
                admin_token: Some(TOKEN.into()),
                ..GatewayConfig::default()
            },
            admin_listener: false,
            manifests: Vec::new(),
            trace: None,
        }
    }
}

impl Served {
    pub async fn start(setup: Setup) -> Self {
        let host = Host::with(Options {
            plugins: vec![
                ("forger".into(), fixture_wasm("forger")),
                ("hostile".into(), fixture_wasm("hostile")),
                ("users".into(), bundled_wasm("users")),
            ],
            manifests: setup.manifests,
            ..Options::default()
        })
        .await;
        if let Some(trace) = &setup.trace {
            host.manager.set_access_recorder(Some(trace.clone()));
        }
        let state = AppState {
            manager: host.manager.clone(),
            registry: host.registry.clone(),
            config: Arc::new(setup.config),
        };
        let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = public.local_addr().unwrap();
        let admin = if setup.admin_listener {
            Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        } else {
            None
        };
        let admin_addr = admin.as_ref().map(|l| l.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway::serve_with(
            Listeners { public, admin },
            state,
            RouterOptions {
                trace: setup.trace,
                ..RouterOptions::default()
            },
            setup.limits,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            host,
            addr,
            admin: admin_addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server (SIGTERM's path) and checks it drained and returned cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(GUARD, task)
                .await
                .expect("the server drains and returns")
                .unwrap()
                .unwrap();
        }
    }
}

/// A raw HTTP/1.1 client connection, reading responses as they are framed on the wire.
pub struct Conn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

/// One response as read off the wire.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        parse(&self.body)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Conn {
    /// Connects to `addr` from the loopback address `source` (127.0.0.x: another client IP).
    pub async fn open_from(source: &str, addr: SocketAddr) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn open(addr: SocketAddr) -> Self {
        Self::open_from("127.0.0.1", addr).await
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more bytes; false at end of stream (or a reset).
    pub async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 << 10];
        match tokio::time::timeout(GUARD, self.stream.read(&mut chunk)).await {
            Err(_) => panic!("the server sent nothing for {GUARD:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next response, framed by its `content-length`; `None` if the server closes first.
    pub async fn next_reply(&mut self) -> Option<Reply> {
        loop {
            if let Some((reply, used)) = frame(&self.buf) {
                self.buf.drain(..used);
                return Some(reply);
            }
            if !self.fill().await {
                assert!(
                    self.buf.is_empty(),
                    "the server closed in the middle of a response: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                return None;
            }
        }
    }

    /// Whether the server closes the connection (without sending anything more).
    pub async fn closed_by_server(&mut self) -> bool {
        while self.fill().await {}
        self.buf.is_empty()
    }
}

/// A whole response at the front of `bytes` and how many bytes it took, if there is one.
pub fn frame(bytes: &[u8]) -> Option<(Reply, usize)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 status line: {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    assert!(
        !headers.iter().any(|(k, _)| k == "transfer-encoding"),
        "the host frames with content-length: {head}"
    );
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse::<usize>().expect("a numeric content-length"))
        .unwrap_or(0);
    let start = end + 4;
    (bytes.len() >= start + length).then(|| {
        (
            Reply {
                status,
                headers,
                body: bytes[start..start + length].to_vec(),
            },
            start + length,
        )
    })
}

/// A request's bytes (`connection: close` when `last`).
pub fn request(
    method: &str,
    path: &str,
    tenant: Option<&str>,
    body: Option<&str>,
    last: bool,
) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nhost: test\r\n");
    if let Some(t) = tenant {
        text.push_str(&format!("x-tenant-id: {t}\r\n"));
    }
    if let Some(b) = body {
        text.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            b.len()
        ));
    }
    if last {
        text.push_str("connection: close\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body.unwrap_or_default());
    text.into_bytes()
}

/// One request on a fresh connection from `source`.
pub async fn call_from(
    source: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    tenant: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut conn = Conn::open_from(source, addr).await;
    conn.send(&request(method, path, tenant, body, true)).await;
    conn.next_reply().await.expect("a response")
}

pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    tenant: Option<&str>,
    body: Option<&str>,
) -> Reply {
    call_from("127.0.0.1", addr, method, path, tenant, body).await
}

/// [`call_from`], retried while the server refuses the connection because the slots of
/// this client's just-closed connections are still being released.
pub async fn call_admitted(
    source: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    tenant: Option<&str>,
    body: Option<&str>,
) -> Reply {
    for _ in 0..1200 {
        let reply = call_from(source, addr, method, path, tenant, body).await;
        if reply.status != 503 || reply.json()["kind"] != "too_many_connections" {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no connection from {source} was admitted");
}

/// Two tenants with one user each, created through the server.
pub struct Tenants {
    pub a: String,
    pub b: String,
}

impl Tenants {
    pub async fn create(addr: SocketAddr) -> Self {
        let tenants = Self {
            a: unique_db("hostile-http-a"),
            b: unique_db("hostile-http-b"),
        };
        for (tenant, name) in [(&tenants.a, "alice"), (&tenants.b, "bob")] {
            let body = json!({ "name": name, "email": format!("{name}@example.test") }).to_string();
            // Admitted: with one connection per address, the slot of the previous call's
            // connection may not be released yet (a 503 `too_many_connections`).
            let reply = call_admitted(
                "127.0.0.1",
                addr,
                "POST",
                "/users/users",
                Some(tenant),
                Some(&body),
            )
            .await;
            assert_eq!(reply.status, 201, "{:?}", reply.json());
        }
        tenants
    }

    /// Both tenants are still served (from `source`), each sees only its own user.
    pub async fn assert_isolated_from(&self, source: &str, addr: SocketAddr) {
        for (tenant, name) in [(&self.a, "alice"), (&self.b, "bob")] {
            let reply =
                call_admitted(source, addr, "GET", "/users/users", Some(tenant), None).await;
            assert_eq!(reply.status, 200, "{:?}", reply.json());
            let names: Vec<Value> = reply.json()["users"]
                .as_array()
                .expect("a users list")
                .iter()
                .map(|u| u["name"].clone())
                .collect();
            assert_eq!(
                names,
                vec![json!(name)],
                "tenant {tenant} sees only its own user"
            );
            let whoami =
                call_admitted(source, addr, "GET", "/forger/whoami", Some(tenant), None).await;
            assert_eq!(
                (whoami.status, whoami.body),
                (200, tenant.as_bytes().to_vec())
            );
        }
    }

    pub async fn assert_isolated(&self, addr: SocketAddr) {
        self.assert_isolated_from("127.0.0.1", addr).await;
    }
}
