//! Load benchmark of the HTTP gateway over many tenants (issue 17): the bundled `users`
//! plugin answering GET-by-id (and, in the mixed run, PATCH-by-id) for tenants drawn from a
//! Zipf(0.9) distribution, through real loopback HTTP/1.1 keep-alive connections, with each
//! client-sharing mode in the same run.
//!
//! Each scenario starts a fresh connection manager, runtime and gateway (on 127.0.0.1, a free
//! port) against the harness's FerretDB (or `POLYMONGO_TEST_URI`), warms up, then drives it
//! from `LOAD_CLIENTS` tasks (default 32) for `LOAD_SECS` seconds (default 8), and prints
//! req/s, p50/p99 latency, the peak of established TCP sockets from this process to the
//! server (sampled from /proc/net/tcp every 20 ms: pooled *and* monitoring sockets), and the
//! pool opens and evictions during the measured window.
//!
//! Run (dev profile, optimized; the release profile's fat LTO takes too long on small
//! machines): `CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo bench --profile dev -p polymongo-host
//! --bench load` after `cargo xtask build-plugins`. Tenants: `LOAD_TENANTS` (default 1000);
//! `LOAD_ONLY=zipf` (or `hot-1`, `zipf-80/20`) runs one workload in both modes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, DateTime};
use polymongo::gateway::{self, AppState, GatewayConfig};
use polymongo::plugins::PluginRegistry;
use polymongo::pool::{ClientSharing, OpenRateLimits, PolyMongo, PoolEventKind};
use polymongo::runtime::{Runtime, RuntimeConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The cap on open tenant pools in every scenario (the setting).
const MAX_CONNECTIONS: usize = 100;
/// The plugin's concurrency limits: high enough that the pool, not the plugin, is measured.
const MANIFEST: &str = "[limits]\nmax_concurrent = 512\nmax_concurrent_per_tenant = 512\n";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One scenario's workload.
#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    sharing: ClientSharing,
    /// Draw tenants from all of them (Zipf) or use only the first.
    hot_only: bool,
    /// Percent of requests that are writes (PATCH).
    write_percent: u32,
}

/// What one scenario measured.
struct Outcome {
    requests: u64,
    errors: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_sockets: usize,
    opens: u64,
    evictions: u64,
    budget: usize,
    /// Mean time of a pool open (connect, handshake, ping) in the measured window.
    open_ms: f64,
}

/// xorshift64*: a small, fast, seedable generator (no dependency needed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Cumulative Zipf(s) weights over `n` ranks.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=n)
        .map(|k| {
            acc += 1.0 / (k as f64).powf(s);
            acc
        })
        .collect();
    for w in &mut cdf {
        *w /= acc;
    }
    cdf
}

fn sample(cdf: &[f64], rng: &mut Rng) -> usize {
    let u = rng.unit();
    cdf.partition_point(|&w| w < u).min(cdf.len() - 1)
}

/// Established TCP sockets whose remote port is `port` (this machine; the bench is the only
/// client of the server, which listens on loopback).
fn sockets_to(port: u16) -> usize {
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state)) = (fields.get(2), fields.get(3)) else {
                continue;
            };
            let remote_port = remote
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == "01" && remote_port == Some(port) {
                count += 1;
            }
        }
    }
    count
}

fn server_port(uri: &str) -> u16 {
    let rest = uri.split("://").nth(1).unwrap_or(uri);
    let host = rest.split(['/', '?', ',']).next().unwrap_or(rest);
    let host = host.rsplit('@').next().unwrap_or(host);
    host.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(27017)
}

/// A keep-alive HTTP/1.1 connection to the gateway.
struct Conn {
    reader: BufReader<TcpStream>,
    line: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream),
            line: String::new(),
        })
    }

    /// Sends one request and reads the whole response; returns the status.
    async fn send(&mut self, head: &str, body: &[u8]) -> std::io::Result<u16> {
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        self.line.clear();
        self.reader.read_line(&mut self.line).await?;
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {:?}", self.line)))?;
        let mut length = 0usize;
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await?;
        Ok(status)
    }
}

/// The seeded tenants: tenant name and the id of its one user.
struct Tenants {
    names: Vec<String>,
    ids: Vec<String>,
}

async fn seed(uri: &str, count: usize) -> Tenants {
    let client = mongodb::Client::with_uri_str(uri)
        .await
        .expect("seed client");
    let run = polymongo_tests::unique_db("ld").replace(['-', '_'], "");
    let mut names = Vec::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("{run}n{i}");
        let id = ObjectId::new();
        client
            .database(&format!("t_{name}"))
            .collection("users")
            .insert_one(doc! {
                "_id": id, "name": "Load", "email": format!("u{i}@load.test"),
                "created_at": DateTime::now(),
            })
            .await
            .expect("seed user");
        names.push(name);
        ids.push(id.to_hex());
    }
    client.shutdown().await;
    Tenants { names, ids }
}

async fn run_scenario(uri: &str, tenants: &Arc<Tenants>, w: Workload) -> Outcome {
    let clients: usize = env_or("LOAD_CLIENTS", 32);
    let secs: u64 = env_or("LOAD_SECS", 8);
    let port = server_port(uri);
    let manager = PolyMongo::builder(uri)
        .metadata_db(polymongo_tests::unique_db("ld-meta"))
        .max_connections(MAX_CONNECTIONS)
        .client_sharing(w.sharing)
        .open_rate(OpenRateLimits {
            per_client_per_sec: 1e9,
            per_client_burst: 0,
            global_per_sec: 1e9,
            global_burst: 0,
        })
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .await
        .expect("manager");
    let config = manager.config().clone();
    let budget = match w.sharing {
        ClientSharing::Cluster => config.shared_max_pool_size as usize + 2 + 4,
        ClientSharing::Database => MAX_CONNECTIONS * (config.max_pool_size as usize + 2) + 4,
    };
    let dir = tempfile::tempdir().expect("plugins dir");
    std::fs::copy(
        polymongo_tests::bundled_wasm("users"),
        dir.path().join("users.wasm"),
    )
    .expect("copy users.wasm");
    std::fs::write(dir.path().join("users.toml"), MANIFEST).expect("manifest");
    let runtime = Runtime::new(manager.clone(), RuntimeConfig::default()).expect("runtime");
    let registry = Arc::new(PluginRegistry::new(runtime, dir.path()));
    registry.load_all().await.expect("load users");
    let state = AppState {
        manager: manager.clone(),
        registry,
        config: Arc::new(GatewayConfig::default()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let addr = listener.local_addr().expect("address");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway::serve(listener, state, async move {
        let _ = stop_rx.await;
    }));

    let cdf = Arc::new(zipf_cdf(tenants.names.len(), 0.9));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, measuring, peak) = (stop.clone(), measuring.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Relaxed) {
                if measuring.load(Relaxed) {
                    peak.fetch_max(sockets_to(port) as u64, Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let opens_timer = {
        let (stop, measuring) = (stop.clone(), measuring.clone());
        let mut events = manager.subscribe();
        tokio::spawn(async move {
            let (mut total, mut count) = (Duration::ZERO, 0u32);
            while !stop.load(Relaxed) {
                match tokio::time::timeout(Duration::from_millis(100), events.recv()).await {
                    Ok(Ok(event)) => {
                        if let (true, PoolEventKind::Opened { took }) =
                            (measuring.load(Relaxed), event.kind)
                        {
                            total += took;
                            count += 1;
                        }
                    }
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
                    Ok(Err(_)) | Err(_) => {}
                }
            }
            total.as_secs_f64() * 1000.0 / f64::from(count.max(1))
        })
    };
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (tenants, cdf, measuring, stop, errors) = (
            tenants.clone(),
            cdf.clone(),
            measuring.clone(),
            stop.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1).wrapping_mul(0xA24B_AED4));
            let mut latencies = Vec::new();
            let mut conn = Conn::open(addr).await.expect("connect to the gateway");
            while !stop.load(Relaxed) {
                let t = if w.hot_only { 0 } else { sample(&cdf, &mut rng) };
                let (name, id) = (&tenants.names[t], &tenants.ids[t]);
                let write = (rng.next() % 100) < u64::from(w.write_percent);
                let body = if write {
                    format!("{{\"age\":{}}}", rng.next() % 100)
                } else {
                    String::new()
                };
                let head = if write {
                    format!(
                        "PATCH /users/users/{id} HTTP/1.1\r\nhost: load\r\nx-tenant-id: {name}\r\n\
                         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    )
                } else {
                    format!("GET /users/users/{id} HTTP/1.1\r\nhost: load\r\nx-tenant-id: {name}\r\n\r\n")
                };
                let started = Instant::now();
                let status = match conn.send(&head, body.as_bytes()).await {
                    Ok(status) => status,
                    Err(_) => {
                        errors.fetch_add(1, Relaxed);
                        conn = Conn::open(addr).await.expect("reconnect to the gateway");
                        continue;
                    }
                };
                if measuring.load(Relaxed) {
                    if status == 200 {
                        latencies.push(started.elapsed());
                    } else {
                        errors.fetch_add(1, Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    // Warm-up: the hot tenants' pools open and the instances are ready.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = manager.summary();
    let started = Instant::now();
    measuring.store(true, Relaxed);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    measuring.store(false, Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let after = manager.summary();
    stop.store(true, Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    sampler.await.expect("sampler");
    let open_ms = opens_timer.await.expect("open timer");
    let _ = stop_tx.send(());
    let _ = server.await;
    manager.destroy().await.expect("destroy");
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Outcome {
        requests: latencies.len() as u64,
        errors: errors.load(Relaxed),
        secs: elapsed,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        peak_sockets: peak.load(Relaxed) as usize,
        opens: after.opens - before.opens,
        evictions: after.evictions - before.evictions,
        budget,
        open_ms,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a test run (`cargo test --benches`) passes nothing: skip.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let uri = polymongo_tests::test_uri();
    let count: usize = env_or("LOAD_TENANTS", 1000);
    let scenarios = [
        Workload {
            name: "zipf",
            sharing: ClientSharing::Database,
            hot_only: false,
            write_percent: 0,
        },
        Workload {
            name: "zipf",
            sharing: ClientSharing::Cluster,
            hot_only: false,
            write_percent: 0,
        },
        Workload {
            name: "hot-1",
            sharing: ClientSharing::Database,
            hot_only: true,
            write_percent: 0,
        },
        Workload {
            name: "hot-1",
            sharing: ClientSharing::Cluster,
            hot_only: true,
            write_percent: 0,
        },
        Workload {
            name: "zipf-80/20",
            sharing: ClientSharing::Database,
            hot_only: false,
            write_percent: 20,
        },
        Workload {
            name: "zipf-80/20",
            sharing: ClientSharing::Cluster,
            hot_only: false,
            write_percent: 20,
        },
    ];
    rt.block_on(async {
        let seeded = Instant::now();
        let tenants = Arc::new(seed(&uri, count).await);
        println!(
            "load: {count} tenants seeded in {:.1} s; {} clients, {} s per scenario, cap {MAX_CONNECTIONS}",
            seeded.elapsed().as_secs_f64(),
            env_or("LOAD_CLIENTS", 32usize),
            env_or("LOAD_SECS", 8u64),
        );
        println!(
            "| round | scenario | client_sharing | req/s | p50 ms | p99 ms | p99/p50 | peak sockets | socket budget | opens | evictions | open ms | errors |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        // Rates summed over rounds; each round swaps which mode of a pair runs first, so
        // neither mode always gets the machine right after the other's load.
        let mut rates: HashMap<(&str, &str), f64> = HashMap::new();
        let only = std::env::var("LOAD_ONLY").ok();
        let rounds: usize = env_or("LOAD_ROUNDS", 2);
        for round in 0..rounds {
            let mut order = scenarios.to_vec();
            if round % 2 == 1 {
                for pair in order.chunks_mut(2) {
                    pair.reverse();
                }
            }
            for w in order {
            if only.as_deref().is_some_and(|o| o != w.name) {
                continue;
            }
            let o = run_scenario(&uri, &tenants, w).await;
            let rate = o.requests as f64 / o.secs;
            *rates.entry((w.name, w.sharing.as_str())).or_default() += rate;
            println!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} | {:.1} | {} |",
                round + 1,
                w.name,
                w.sharing,
                rate,
                o.p50_ms,
                o.p99_ms,
                if o.p50_ms > 0.0 { o.p99_ms / o.p50_ms } else { 0.0 },
                o.peak_sockets,
                o.budget,
                o.opens,
                o.evictions,
                o.open_ms,
                o.errors
            );
            }
        }
        for name in ["zipf", "hot-1", "zipf-80/20"] {
            if let (Some(c), Some(d)) = (
                rates.get(&(name, "cluster")),
                rates.get(&(name, "database")),
            ) {
                println!("{name}: cluster / database req/s over all rounds = {:.2}", c / d);
            }
        }
    });
}
