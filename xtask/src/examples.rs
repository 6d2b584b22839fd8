//! `cargo xtask examples`: runs every example of `examples/` end to end, the way its README
//! tells a user to, against a local FerretDB and a host serving a fresh plugins folder. CI runs
//! it as part of `cargo xtask test`, so the examples cannot rot.
//!
//! 1. `cargo run --example embed` and `--example churn` (the connection manager in a Rust
//!    program);
//! 2. the tenant plugin in Rust, JavaScript and Python, built from its folder and deployed by
//!    copying the `.wasm` into the running host's plugins folder: a note posted for one tenant
//!    is listed for it and not for another;
//! 3. the custom scorer: deployed as the eviction policy of a host capped at 3 pools, traffic
//!    over 8 tenants makes it decide evictions, then a rebuilt version (another half-life) is
//!    hot-swapped in and decides the next ones, with no fallback to the built-in formula;
//! 4. the request trace (docs/EVICTION.md, *Your own traffic*): the host records its request
//!    stream (`trace.file`), stops on SIGTERM (which closes the trace), and
//!    `polymongo replay --trace` replays it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use polymongo_tests::{free_port, FerretDb};
use serde_json::Value;

use crate::plugins::{guests_target_dir, TARGET};
use crate::{build_host, wait_until_listening};

/// The admin token of the example host (it listens on loopback only).
const ADMIN_TOKEN: &str = "examples-admin-token";

/// Runs all examples; fails on the first that does not do what its README says.
pub fn run_all(root: &Path) -> Result<()> {
    let started = Instant::now();
    let db = FerretDb::start_temp().context("starting FerretDB for the examples")?;
    let uri = db.uri();
    run_manager_examples(root, &uri)?;

    let artifacts = build_guest_examples(root)?;
    let plugins_dir = tempfile_dir(root, "examples-plugins")?;
    let trace = tempfile_dir(root, "examples-trace")?.join("trace.lirs");
    let mut host = Host::start(root, &uri, &plugins_dir, &trace)?;
    let result = exercise_host(&host, &plugins_dir, &artifacts);
    let stopped = host.stop_gracefully();
    result?;
    stopped?;
    replay_the_trace(root, &host.binary, &trace)?;
    println!(
        "examples: all passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo run --example embed`, `cargo run --example churn`, against `uri`.
fn run_manager_examples(root: &Path, uri: &str) -> Result<()> {
    for (example, args) in [("embed", &[][..]), ("churn", &["--operations", "200"][..])] {
        println!("examples: cargo run --example {example}");
        let status = Command::new(cargo())
            .current_dir(root)
            .args([
                "run",
                "--quiet",
                "-p",
                "polymongo-examples",
                "--example",
                example,
                "--",
            ])
            .args(args)
            .env("MONGODB_URI", uri)
            .status()
            .with_context(|| format!("running example {example}"))?;
        ensure!(status.success(), "example {example} failed ({status})");
    }
    Ok(())
}

/// The built guest examples.
struct GuestArtifacts {
    /// `(plugin name = URL prefix, component)` of the three tenant plugins.
    plugins: Vec<(&'static str, PathBuf)>,
    /// The scorer as its README builds it, and a second build with another half-life.
    scorer_v1: PathBuf,
    scorer_v2: PathBuf,
}

/// Builds the plugin examples (Rust, JavaScript, Python) and the scorer, twice.
fn build_guest_examples(root: &Path) -> Result<GuestArtifacts> {
    let examples = root.join("examples");
    let out = tempfile_dir(root, "examples-wasm")?;
    let built = |name: &str| {
        guests_target_dir(root)
            .join(TARGET)
            .join("release")
            .join(name)
    };

    println!("examples: building plugin-rust");
    build_rust_guest(root, &examples.join("plugin-rust"), &[])?;
    let notes = out.join("notes.wasm");
    std::fs::copy(built("notes.wasm"), &notes)?;

    println!("examples: building plugin-js (npm install, npm run build)");
    let js = examples.join("plugin-js");
    run(Command::new("npm")
        .current_dir(&js)
        .args(["install", "--no-audit", "--no-fund"]))?;
    run(Command::new("npm").current_dir(&js).args(["run", "build"]))?;
    let notes_js = out.join("notes-js.wasm");
    std::fs::rename(js.join("notes-js.wasm"), &notes_js)?;

    println!("examples: building plugin-python");
    let python = root.join(".tools/py/bin/python");
    let notes_py = out.join("notes-py.wasm");
    run(Command::new(&python)
        .current_dir(examples.join("plugin-python"))
        .arg(root.join("guest-sdk/python/build.py"))
        .arg("-o")
        .arg(&notes_py))?;

    println!("examples: building the scorer (and a second version for the hot swap)");
    let scorer = examples.join("scorer");
    build_rust_guest(root, &scorer, &[])?;
    let scorer_v1 = out.join("decay-scorer-v1.wasm");
    std::fs::copy(built("decay_scorer.wasm"), &scorer_v1)?;
    build_rust_guest(root, &scorer, &[("SCORER_HALF_LIFE_MS", "5000")])?;
    let scorer_v2 = out.join("decay-scorer-v2.wasm");
    std::fs::copy(built("decay_scorer.wasm"), &scorer_v2)?;
    ensure!(
        std::fs::read(&scorer_v1)? != std::fs::read(&scorer_v2)?,
        "the two scorer builds are identical: SCORER_HALF_LIFE_MS had no effect"
    );

    Ok(GuestArtifacts {
        plugins: vec![
            ("notes", notes),
            ("notes-js", notes_js),
            ("notes-py", notes_py),
        ],
        scorer_v1,
        scorer_v2,
    })
}

/// `cargo build --release --target wasm32-wasip2` in `dir` (a project of its own), sharing the
/// guests' target dir so the SDK and its dependencies are compiled once.
fn build_rust_guest(root: &Path, dir: &Path, env: &[(&str, &str)]) -> Result<()> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(dir)
        .args(["build", "--quiet", "--release", "--target", TARGET])
        .env("CARGO_TARGET_DIR", guests_target_dir(root));
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// Deploys the plugins and the scorer into the running host and checks what each example's
/// README promises.
fn exercise_host(host: &Host, plugins_dir: &Path, artifacts: &GuestArtifacts) -> Result<()> {
    let run_id = std::process::id();
    for (name, wasm) in &artifacts.plugins {
        // Tenants of their own: the three plugins would share a tenant's `notes` collection.
        let (acme, globex) = (
            format!("acme-{run_id}-{name}"),
            format!("globex-{run_id}-{name}"),
        );
        deploy(plugins_dir, name, wasm)?;
        let version = host.wait_for_version(name, None)?;
        println!("examples: {name} deployed (version {})", short(&version));
        let text = format!("hello from {name}");
        let (status, body) = host.request(
            "POST",
            &format!("/{name}/notes"),
            &acme,
            Some(&format!(r#"{{"text":"{text}"}}"#)),
        )?;
        ensure!(status == 201, "{name}: POST /notes gave {status}: {body}");
        let (status, body) = host.request("GET", &format!("/{name}/notes"), &acme, None)?;
        let listed: Value = serde_json::from_str(&body)
            .with_context(|| format!("{name}: GET /notes is not JSON: {body}"))?;
        ensure!(
            status == 200 && listed == serde_json::json!([{ "text": text }]),
            "{name}: {acme} should list exactly its note, got {status}: {body}"
        );
        let (status, body) = host.request("GET", &format!("/{name}/notes"), &globex, None)?;
        ensure!(
            status == 200 && body.trim() == "[]",
            "{name}: {globex} must not see {acme}'s note, got {status}: {body}"
        );
    }

    // The scorer: the host was started with `--scorer decay-scorer --max-connections 3`.
    deploy(plugins_dir, "decay-scorer", &artifacts.scorer_v1)?;
    let v1 = host.wait_for_version("decay-scorer", None)?;
    ensure!(
        host.plugin("decay-scorer")?["active_scorer"] == Value::Bool(true),
        "decay-scorer is deployed but not the active eviction policy"
    );
    let evictions_before = host.metric("polymongo_pool_evictions_total")?;
    drive_tenants(host, "v1", run_id)?;
    let evictions_v1 = host.metric("polymongo_pool_evictions_total")?;
    ensure!(
        evictions_v1 > evictions_before,
        "8 tenants through 3 slots made no eviction"
    );

    deploy(plugins_dir, "decay-scorer", &artifacts.scorer_v2)?;
    let v2 = host.wait_for_version("decay-scorer", Some(&v1))?;
    println!(
        "examples: decay-scorer hot-swapped {} -> {}",
        short(&v1),
        short(&v2)
    );
    drive_tenants(host, "v2", run_id)?;
    let evictions_v2 = host.metric("polymongo_pool_evictions_total")?;
    ensure!(
        evictions_v2 > evictions_v1,
        "no eviction after the hot swap"
    );
    let fallbacks = host.metric("polymongo_scorer_fallbacks_total")?;
    ensure!(
        fallbacks == 0.0,
        "the scorer failed {fallbacks} decision(s): the built-in formula had to decide"
    );
    // v2 took over the pool events v1 had learnt from, and relearnt them.
    let inherited = host.metric("polymongo_scorer_inherited_events_total")?;
    ensure!(
        inherited > 0.0,
        "the new version relearnt none of the old version's events"
    );
    println!(
        "examples: decay-scorer decided {} evictions before and {} after the swap, no fallback; v2 relearnt {inherited} events from v1",
        evictions_v1 - evictions_before,
        evictions_v2 - evictions_v1
    );
    Ok(())
}

/// Posts a note for each of 8 tenants, twice, through `notes` (3 pool slots: evictions).
fn drive_tenants(host: &Host, round: &str, run_id: u32) -> Result<()> {
    for pass in 0..2 {
        for t in 0..8 {
            let tenant = format!("scorer-{run_id}-{t}");
            let body = format!(r#"{{"text":"{round} pass {pass}"}}"#);
            let (status, text) = host.request("POST", "/notes/notes", &tenant, Some(&body))?;
            ensure!(status == 201, "scorer traffic: {status}: {text}");
        }
    }
    Ok(())
}

/// The host's trace of the traffic above: closed at shutdown, and replayed by
/// `polymongo replay --trace` at the example's capacity.
fn replay_the_trace(root: &Path, binary: &Path, trace: &Path) -> Result<()> {
    let text = std::fs::read_to_string(trace)
        .with_context(|| format!("the host wrote no trace at {}", trace.display()))?;
    let records: Vec<&str> = text.lines().filter(|l| !l.starts_with('*')).collect();
    let mut distinct = records.clone();
    distinct.sort_unstable();
    distinct.dedup();
    // drive_tenants: 8 tenants, 2 passes, 2 rounds, at least one database use each.
    ensure!(
        records.len() >= 32 && distinct.len() >= 8,
        "the trace holds {} requests over {} databases; the examples made at least 32 over 8",
        records.len(),
        distinct.len()
    );
    ensure!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("* end of trace:")),
        "the trace was not closed at shutdown"
    );
    let output = Command::new(binary)
        .current_dir(root)
        .args(["replay", "--capacity", "3", "--policies", "seed"])
        .arg("--trace")
        .arg(trace)
        .output()
        .context("running polymongo replay")?;
    let printed = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success() && printed.contains("seed"),
        "polymongo replay --trace failed: {printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "examples: the host's trace ({} requests over {} databases) replays",
        records.len(),
        distinct.len()
    );
    Ok(())
}

/// Copies `wasm` into the plugins folder as `NAME.wasm`, atomically (write `.tmp`, rename), as
/// the README says to publish.
fn deploy(plugins_dir: &Path, name: &str, wasm: &Path) -> Result<()> {
    let tmp = plugins_dir.join(format!("{name}.wasm.tmp"));
    std::fs::copy(wasm, &tmp).with_context(|| format!("copying {}", wasm.display()))?;
    std::fs::rename(&tmp, plugins_dir.join(format!("{name}.wasm")))?;
    Ok(())
}

/// The host binary serving a plugins folder on a free loopback port.
struct Host {
    child: Child,
    base: String,
    /// The host binary (`polymongo`), also run for `replay`.
    binary: PathBuf,
}

impl Host {
    fn start(root: &Path, uri: &str, plugins_dir: &Path, trace: &Path) -> Result<Self> {
        let binary = build_host(root)?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let cache = tempfile_dir(root, "examples-cache")?;
        let mut child = Command::new(&binary)
            .current_dir(root)
            .args(["serve", "--listen", &listen, "--mongo-uri", uri])
            .arg("--plugins-dir")
            .arg(plugins_dir)
            .arg("--cache-dir")
            .arg(&cache)
            .args(["--admin-token", ADMIN_TOKEN])
            .args(["--max-connections", "3", "--scorer", "decay-scorer"])
            .arg("--set")
            .arg(format!("trace.file={:?}", trace.display().to_string()))
            .spawn()
            .context("starting the host")?;
        wait_until_listening(&mut child, &listen, Duration::from_secs(120))?;
        Ok(Host {
            child,
            base: format!("http://{listen}"),
            binary,
        })
    }

    /// `(status, body)` of one request for `tenant`.
    fn request(
        &self,
        method: &str,
        path: &str,
        tenant: &str,
        body: Option<&str>,
    ) -> Result<(u16, String)> {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", "120", "-X", method])
            .args(["-H", &format!("x-tenant-id: {tenant}")])
            .args(["-w", "\n%{http_code}"]);
        if let Some(body) = body {
            cmd.args(["-H", "content-type: application/json", "-d", body]);
        }
        curl(cmd.arg(format!("{}{path}", self.base)))
    }

    /// The admin API's entry for plugin `name` (`Value::Null` if not listed).
    fn plugin(&self, name: &str) -> Result<Value> {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", "30", "-w", "\n%{http_code}"])
            .args(["-H", &format!("authorization: Bearer {ADMIN_TOKEN}")])
            .arg(format!("{}/admin/plugins", self.base));
        let (status, body) = curl(&mut cmd)?;
        ensure!(status == 200, "/admin/plugins gave {status}: {body}");
        let list: Value = serde_json::from_str(&body).context("/admin/plugins is not JSON")?;
        Ok(list["plugins"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Waits until plugin `name` serves a version other than `previous`; returns it. Fails
    /// with the load error if the host refused the file.
    fn wait_for_version(&self, name: &str, previous: Option<&str>) -> Result<String> {
        // A Python component takes 10-15 s to compile on first load (longer on a slow machine).
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let info = self.plugin(name)?;
            if let Some(version) = info["version"].as_str() {
                if Some(version) != previous && info["status"] == "ok" {
                    return Ok(version.to_string());
                }
            }
            if let Some(error) = info["last_error"].as_str() {
                bail!("{name} failed to load: {error}");
            }
            ensure!(
                Instant::now() < deadline,
                "{name} was not serving a new version after 300 s: {info}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The sum of a Prometheus metric's samples on `/metrics` (0 if absent).
    fn metric(&self, name: &str) -> Result<f64> {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", "30", "-w", "\n%{http_code}"])
            .arg(format!("{}/metrics", self.base));
        let (status, body) = curl(&mut cmd)?;
        ensure!(status == 200, "/metrics gave {status}");
        Ok(body
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// SIGTERM, as a service manager stops it; killed if it is still running after 60 s.
    fn stop_gracefully(&mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        // The shell's own `kill`: a machine without procps has no kill binary.
        let signalled = Command::new("sh")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while signalled.as_ref().is_ok_and(|s| s.success()) && Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "the host exited with {status} on SIGTERM");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("the host did not stop within 60 s of SIGTERM")
    }
}

/// Runs curl (its `-w "\n%{http_code}"` appends the status) and splits status from body.
fn curl(cmd: &mut Command) -> Result<(u16, String)> {
    let out = cmd.output().context("running curl (is it installed?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = status
        .trim()
        .parse()
        .with_context(|| format!("curl gave no status: {text}"))?;
    Ok((status, body.to_string()))
}

/// Runs `cmd`, failing with its status.
fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(())
}

/// A fresh folder under `target/`, emptied if it existed.
fn tempfile_dir(root: &Path, name: &str) -> Result<PathBuf> {
    let dir = root.join("target").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The first 12 characters of a version hash.
fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// The cargo that runs xtask.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}
