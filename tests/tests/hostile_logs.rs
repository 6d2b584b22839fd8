//! Hostile tests of the host's logs (issue #13, items 7 and 11): a plugin flooding the log is
//! rate-limited per plugin and tenant (drops counted), a log output nobody reads does not
//! stall the host, and plugin text cannot forge log lines or colour a terminal. (How a slow or
//! trapping eviction scorer keeps what it learnt: `scorer_calls.rs`.)
//!
//! The tests of the log output run the real `polymongo` binary (built on first use with the
//! cargo that runs the tests) with its stderr on a pipe; the others use the in-process host.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::Host;
use polymongo_tests::{bundled_wasm, fixture_wasm, free_port, test_uri, unique_db};
use serde_json::{json, Value};

// ---- in-process: the rate limit ---------------------------------------------------------

/// Everything the test's `tracing` subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Lines of plugin `log-flood` for `tenant` whose message is `what` repeated.
    fn plugin_lines(&self, tenant: &str, what: char) -> usize {
        let tag = format!("tenant=\"{tenant}\"");
        self.text()
            .lines()
            .filter(|l| l.contains("log-flood") && l.contains(&tag))
            .filter(|l| l.contains(&what.to_string().repeat(50)))
            .count()
    }
}

/// Asserts that `tenant` is served by `users` and sees exactly its own documents.
async fn assert_tenant_served_alone(host: &Host, tenant: &str, others: &[&str]) {
    let email = format!("{tenant}@example.test");
    let (status, _) = host
        .call(
            tenant,
            "POST",
            "/users/users",
            Some(json!({"name": tenant, "email": email})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant} is still served");
    let (status, list) = host.call(tenant, "GET", "/users/users", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 1, "{tenant} sees only its own user: {list}");
    assert_eq!(list["users"][0]["email"], email.as_str());
    for other in others {
        let (status, list) = host.call(other, "GET", "/users/users", None).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let crossed = list["users"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|u| u["email"] == email.as_str());
        assert!(!crossed, "{tenant}'s data reached {other}: {list}");
    }
}

#[tokio::test]
async fn a_log_flood_is_rate_limited_per_plugin_and_tenant_and_drops_are_counted() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runs on one thread (current-thread runtime): plugin calls log on it.
    let _guard = tracing::subscriber::set_default(subscriber);
    let host = Host::start(
        &[
            ("log-flood", fixture_wasm("log-flood")),
            ("users", bundled_wasm("users")),
        ],
        &[],
    )
    .await;
    let limits = host.registry.runtime().log_limiter().limits();
    let (a, b) = (unique_db("flooder"), unique_db("quiet"));

    // Tenant a logs 2,000 lines at once: the burst passes, most of the rest is dropped.
    let n = 2_000;
    let (status, body) = host
        .call(&a, "GET", &format!("/log-flood/flood?n={n}&size=60"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let admitted = captured.plugin_lines(&a, 'x');
    assert!(
        admitted >= limits.burst_lines as usize,
        "the burst is logged: {admitted}"
    );
    assert!(
        admitted < n,
        "a flood is cut: {admitted} of {n} lines logged"
    );
    let dropped = host.registry.runtime().log_limiter().dropped("log-flood");
    assert_eq!(
        dropped,
        (n - admitted) as u64,
        "every line is logged or counted"
    );
    assert!(
        captured
            .text()
            .contains(&format!("plugin log rate limit: {dropped} lines dropped")),
        "a summary line says how many were dropped"
    );

    // Captured stdout goes under the same limit (tenant a's bucket is used up).
    let (status, body) = host.call(&a, "GET", "/log-flood/stdout?n=500", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        captured.plugin_lines(&a, 'z') < 500,
        "stdout is rate-limited too"
    );
    assert!(host.registry.runtime().log_limiter().dropped("log-flood") > dropped);

    // Tenant b has a budget of its own: its few lines all get through, none is dropped.
    let before = host.registry.runtime().log_limiter().dropped("log-flood");
    let (status, _) = host
        .call(&b, "GET", "/log-flood/flood?n=20&size=60", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(captured.plugin_lines(&b, 'x'), 20);
    assert_eq!(
        host.registry.runtime().log_limiter().dropped("log-flood"),
        before
    );

    // The drops are on /metrics, by plugin.
    let (status, bytes, _) = host
        .send(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let metrics = String::from_utf8(bytes).unwrap();
    assert!(
        metrics.contains(&format!(
            "polymongo_plugin_log_lines_dropped_total{{plugin=\"log-flood\"}} {before}"
        )),
        "{metrics}"
    );

    // The host keeps serving another tenant, and no data crossed.
    assert_tenant_served_alone(&host, &b, &[&a]).await;
}

// ---- the real binary: the log output ----------------------------------------------------

/// The `polymongo` binary of this build, built (once per test run) with the cargo running
/// the tests, into the same target directory.
fn polymongo_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // This test is target/<profile>/deps/hostile_logs-HASH.
            let exe = std::env::current_exe().expect("test executable");
            let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
            let target_dir = profile_dir.parent().expect("target dir");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
            let status = Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "polymongo-host",
                    "--bin",
                    "polymongo",
                ])
                .env("CARGO_TARGET_DIR", target_dir)
                .current_dir(polymongo_tests::workspace_root())
                .status()
                .expect("running cargo build");
            assert!(status.success(), "building the polymongo binary failed");
            let binary = profile_dir.join("polymongo");
            assert!(binary.exists(), "no binary at {}", binary.display());
            binary
        })
        .clone()
}

/// `polymongo serve` on a free port, serving `log-flood` and `users`; killed when dropped.
struct Served {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Starts the host with `stderr` as its stderr, `POLYMONGO_LOG=info` and `extra` flags.
    fn start(stderr: Stdio, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        std::fs::copy(fixture_wasm("log-flood"), plugins.join("log-flood.wasm")).unwrap();
        std::fs::copy(bundled_wasm("users"), plugins.join("users.wasm")).unwrap();
        // A flood request ends at its deadline: the test needs many of them.
        std::fs::write(
            plugins.join("log-flood.toml"),
            "[limits]\ndeadline_ms = 500\n",
        )
        .unwrap();
        let port = free_port().unwrap();
        let child = Command::new(polymongo_binary())
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--mongo-uri", &test_uri()])
            .args(["--plugins-dir", &plugins.to_string_lossy()])
            .args(["--cache-dir", &dir.path().join("cache").to_string_lossy()])
            .arg("--no-watch")
            .args(["--set", &format!("pool.metadata_db={}", unique_db("meta"))])
            .args(extra)
            .env("POLYMONGO_LOG", "info")
            .env_remove("POLYMONGO_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting polymongo serve");
        let mut served = Self {
            child,
            port,
            _dir: dir,
        };
        let give_up = Instant::now() + Duration::from_secs(180);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                served.child.try_wait().unwrap().is_none(),
                "polymongo serve exited"
            );
            assert!(Instant::now() < give_up, "polymongo serve did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }

    /// One HTTP/1.1 request; (status, body). A read that takes minutes fails the test (a
    /// guard against a stalled host, not a timing assertion).
    fn request(
        &self,
        method: &str,
        path: &str,
        tenant: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, String) {
        request(self.port, method, path, tenant, body)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request(
    port: u16,
    method: &str,
    path: &str,
    tenant: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(t) = tenant {
        head.push_str(&format!("x-tenant-id: {t}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("content-type: application/json\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("{method} {path}: no complete answer ({e}): the host stalled"));
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `tenant` is served by `users` through the real host and sees only its own user; the
/// others do not see it.
fn assert_served_alone(served: &Served, tenant: &str, others: &[&str]) {
    let email = format!("{tenant}@example.test");
    let (status, body) = served.request(
        "POST",
        "/users/users",
        Some(tenant),
        Some(&json!({"name": tenant, "email": email})),
    );
    assert_eq!(status, 201, "{tenant} is still served: {body}");
    let (status, body) = served.request("GET", "/users/users", Some(tenant), None);
    assert_eq!(status, 200, "{body}");
    // The body may be chunked: find the JSON object in it.
    let json_text = &body[body.find('{').unwrap_or(0)..=body.rfind('}').unwrap_or(0)];
    let list: Value = serde_json::from_str(json_text).unwrap_or(Value::Null);
    assert_eq!(list["total"], 1, "{tenant} sees only its own user: {body}");
    for other in others {
        let (status, body) = served.request("GET", "/users/users", Some(other), None);
        assert_eq!(status, 200, "{body}");
        assert!(
            !body.contains(&email),
            "{tenant}'s data reached {other}: {body}"
        );
    }
}

#[test]
fn a_stderr_nobody_reads_does_not_stall_the_host() {
    // stderr on a pipe that is never read: once its buffer (64 KiB) is full, a blocking write
    // to it never returns. Rate limits raised so the flood really reaches the sink.
    let (_never_read, stderr) = std::io::pipe().expect("pipe");
    let served = Served::start(
        stderr.into(),
        &[
            "--set",
            "logs.plugin_lines_per_sec=1000000",
            "--set",
            "logs.plugin_burst_lines=1000000",
            "--set",
            "logs.plugin_bytes_per_sec=1000000000",
            "--set",
            "logs.plugin_burst_bytes=1000000000",
        ],
    );
    let (flooder, quiet) = (unique_db("flooder"), unique_db("quiet"));
    // One flood request to its deadline: its 8 KiB lines fill the pipe many times over.
    let (status, body) = served.request("GET", "/log-flood/forever", Some(&flooder), None);
    assert_eq!(status, 504, "the flood runs to its deadline: {body}");
    // Two more floods keep going while the host is checked.
    let stop = Arc::new(AtomicBool::new(false));
    let floods: Vec<_> = (0..2)
        .map(|_| {
            let (stop, port, tenant) = (stop.clone(), served.port, flooder.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) =
                        request(port, "GET", "/log-flood/forever", Some(&tenant), None);
                    assert_eq!(status, 504, "{body}");
                    n += 1;
                }
                n
            })
        })
        .collect();
    for _ in 0..5 {
        let (status, body) = served.request("GET", "/healthz", None, None);
        assert_eq!(status, 200, "/healthz answers during the flood: {body}");
    }
    assert_served_alone(&served, &quiet, &[&flooder]);
    stop.store(true, Ordering::Relaxed);
    for flood in floods {
        let ran = flood.join().expect("flood thread");
        assert!(ran >= 1, "the flood ran while the host was checked");
    }
    // And the lines that did not fit are counted.
    let (status, metrics) = served.request("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("polymongo_log_lines_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no polymongo_log_lines_dropped_total: {metrics}"));
    assert!(dropped > 0, "lines that did not fit the queue are counted");
}

#[test]
fn plugin_text_cannot_forge_log_lines_or_colour_the_log() {
    let (mut stderr_reader, stderr) = std::io::pipe().expect("pipe");
    let served = Served::start(stderr.into(), &[]);
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr_reader.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    });
    let (tenant, other) = (unique_db("forger"), unique_db("bystander"));
    let tag = "t7x";
    let (status, body) = served.request(
        "GET",
        &format!("/log-flood/forge?tag={tag}"),
        Some(&tenant),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_served_alone(&served, &other, &[&tenant]);
    drop(served); // ends the host, closing the pipe
    let log = reader.join().expect("reader");
    let forged = format!("FORGED-{tag}");
    let carrying: Vec<&str> = log.lines().filter(|l| l.contains(&forged)).collect();
    // The log import's message, on one line with its newline escaped; and the stdout line
    // (stdout is split at newlines, each line logged as the plugin's).
    assert_eq!(carrying.len(), 2, "{log}");
    assert!(
        carrying
            .iter()
            .any(|l| l.contains("innocent\\n2026-01-01") && l.contains("\\r")),
        "the newline and carriage return are escaped inside the plugin's line: {log}"
    );
    for line in &carrying {
        assert!(
            line.contains("plugin=") && line.contains(&format!("tenant=\"{tenant}\"")),
            "every line is the plugin's: {line}"
        );
        assert!(
            !line.starts_with("2026-01-01T00:00:00.000000Z"),
            "no line is forged: {line}"
        );
        assert!(line.contains("\\u{1b}[31mred"), "ESC is escaped: {line}");
    }
    assert!(
        !log.contains('\x1b'),
        "no ANSI escapes when stderr is not a terminal: {log:?}"
    );
}
