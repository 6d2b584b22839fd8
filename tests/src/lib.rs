//! The FerretDB test harness.
//!
//! Tests never mock the driver: they talk to a real MongoDB-compatible server. By default
//! that is FerretDB 1.24.2 with its SQLite backend, installed by `cargo xtask setup` into
//! `.tools/bin/` and started here once per test binary on a free loopback port with a
//! temporary data directory, which is removed (and the server stopped) when the test binary
//! exits. When `POLYMONGO_TEST_URI` is set, tests use that server instead (e.g. a real mongod).
//!
//! [`FerretDb`] is also used on its own: by tests that kill and restart a server, and by
//! `cargo xtask db` / `cargo xtask demo` to run a local development database.
//!
//! Tests of change streams use [`mjs::change_stream_uri`] instead: mongo-java-server, started
//! lazily beside FerretDB (FerretDB has no change streams). Tests of transactions use
//! [`wire::WireServer`], a scripted server answering as MongoDB 7.0 (no server here has
//! transactions).

pub mod mjs;
pub mod wire;

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Environment variable naming an external test server (replaces FerretDB).
pub const TEST_URI_ENV: &str = "POLYMONGO_TEST_URI";
/// Environment variable overriding the FerretDB binary path.
pub const FERRETDB_ENV: &str = "POLYMONGO_FERRETDB";
/// The FerretDB version the project installs and tests against.
pub const FERRETDB_VERSION: &str = "v1.24.2";

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where `cargo xtask setup` installs FerretDB (or `POLYMONGO_FERRETDB`).
pub fn ferretdb_binary() -> PathBuf {
    std::env::var_os(FERRETDB_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/bin/ferretdb"))
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// A FerretDB process (SQLite backend) on a loopback port.
pub struct FerretDb {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    owns_dir: bool,
    /// Further command-line flags (e.g. `--repl-set-name=rs0`).
    extra_args: Vec<String>,
}

impl FerretDb {
    /// Starts FerretDB on a free port with a fresh temporary data directory (removed on drop).
    pub fn start_temp() -> io::Result<Self> {
        Self::start_temp_with(&[])
    }

    /// Like [`start_temp`](Self::start_temp), with further command-line flags, e.g.
    /// `--repl-set-name=rs0` for a server whose oplog (`local.oplog.rs`) clients may tail.
    pub fn start_temp_with(args: &[&str]) -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("polymongo-ferretdb-")
            .tempdir()?
            .keep();
        let mut db = Self::new(dir, free_port()?);
        db.owns_dir = true;
        db.extra_args = args.iter().map(|a| a.to_string()).collect();
        db.spawn()?;
        Ok(db)
    }

    /// Starts FerretDB on `port` with data kept in `data_dir` (kept on drop).
    pub fn start_in(data_dir: impl Into<PathBuf>, port: u16) -> io::Result<Self> {
        let mut db = Self::new(data_dir.into(), port);
        db.spawn()?;
        Ok(db)
    }

    fn new(data_dir: PathBuf, port: u16) -> Self {
        Self {
            child: None,
            port,
            data_dir,
            owns_dir: false,
            extra_args: Vec::new(),
        }
    }

    /// The connection string.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Waits for the process to exit (for a foreground `xtask db`).
    pub fn wait(&mut self) -> io::Result<()> {
        if let Some(child) = self.child.as_mut() {
            child.wait()?;
        }
        Ok(())
    }

    fn spawn(&mut self) -> io::Result<()> {
        let child = spawn_ferretdb(&self.data_dir, self.port, &self.extra_args)?;
        self.child = Some(child);
        if let Err(e) = wait_until_listening(self.port, Duration::from_secs(30)) {
            self.kill();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "FerretDB did not start listening on port {}: {e}\n--- log tail ---\n{}",
                    self.port,
                    log_tail(&self.data_dir)
                ),
            ));
        }
        Ok(())
    }
}

impl Drop for FerretDb {
    fn drop(&mut self) {
        self.kill();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

fn spawn_ferretdb(data_dir: &Path, port: u16, extra_args: &[String]) -> io::Result<Child> {
    let binary = ferretdb_binary();
    if !binary.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "FerretDB not found at {} — run `cargo xtask setup` (or set {FERRETDB_ENV}, or {TEST_URI_ENV} to use another server)",
                binary.display()
            ),
        ));
    }
    let sqlite = data_dir.join("sqlite");
    let state = data_dir.join("state");
    std::fs::create_dir_all(&sqlite)?;
    std::fs::create_dir_all(&state)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("ferretdb.log"))?;
    let mut command = Command::new(binary);
    command
        .arg("--handler=sqlite")
        .arg(format!("--sqlite-url=file:{}/", sqlite.display()))
        .arg(format!("--listen-addr=127.0.0.1:{port}"))
        .arg(format!("--state-dir={}", state.display()))
        .arg("--telemetry=disable")
        .arg("--debug-addr=-")
        .arg("--log-level=warn")
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    die_with_parent(&mut command);
    command.spawn()
}

/// Makes the child receive SIGKILL when the thread that spawned it dies (Linux), so an
/// aborted test run never leaves a server behind.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

fn wait_until_listening(port: u16, limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn log_tail(data_dir: &Path) -> String {
    let text = std::fs::read_to_string(data_dir.join("ferretdb.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The shared server of this test binary.
struct Shared {
    uri: String,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
/// Servers that live as long as the test binary: (pid, data dir), stopped at exit.
static PROCESS_WIDE: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());

/// The URI of this test binary's server: `POLYMONGO_TEST_URI` if set, else a FerretDB started
/// on first use and stopped (its data removed) when the process exits.
///
/// # Panics
/// If FerretDB cannot be started: the message says why and how to fix it.
pub fn test_uri() -> String {
    if let Ok(uri) = std::env::var(TEST_URI_ENV) {
        if !uri.is_empty() {
            return uri;
        }
    }
    let shared = SHARED.get_or_init(start_shared);
    match shared {
        Ok(s) => s.uri.clone(),
        Err(e) => panic!("cannot start the test database: {e}"),
    }
}

/// The variable choosing the connection manager's client-sharing mode in the tests
/// (`cluster` or `database`); unset, the manager's default.
pub const CLIENT_SHARING_ENV: &str = "POLYMONGO_TEST_CLIENT_SHARING";

/// The client-sharing mode the tests should use (`POLYMONGO_TEST_CLIENT_SHARING`), if set.
pub fn test_client_sharing() -> Option<String> {
    std::env::var(CLIENT_SHARING_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Whether tests run against FerretDB (not an external `POLYMONGO_TEST_URI` server).
pub fn using_ferretdb() -> bool {
    std::env::var(TEST_URI_ENV).map_or(true, |v| v.is_empty())
}

fn start_shared() -> Result<Shared, String> {
    Ok(Shared {
        uri: start_process_wide(&[])?,
    })
}

/// Starts a FerretDB (with further command-line flags, e.g. `--repl-set-name=rs0`) that lives
/// until the test binary exits, and returns its URI. Use it for a server several tests share
/// through a `OnceLock`: a server a test thread spawns itself dies with that thread.
pub fn start_process_wide(args: &[&str]) -> Result<String, String> {
    // Spawn from a thread that lives as long as the process, so PDEATHSIG (which follows the
    // spawning thread) fires only when the whole test binary dies.
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ferretdb-owner".into())
        .spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match FerretDb::start_temp_with(&args) {
                Ok(mut db) => {
                    let first = {
                        let mut owned = PROCESS_WIDE.lock().unwrap_or_else(PoisonError::into_inner);
                        owned.push((db.pid().unwrap_or(0), db.data_dir().to_path_buf()));
                        owned.len() == 1
                    };
                    if first {
                        // SAFETY: registering a plain extern "C" function.
                        unsafe { libc::atexit(stop_process_wide) };
                    }
                    let _ = tx.send(Ok(db.uri()));
                    // Keep the owner thread (and so the server) alive until the process exits.
                    let _ = db.wait();
                    std::mem::forget(db);
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())?
}

extern "C" fn stop_process_wide() {
    let owned = PROCESS_WIDE.lock().unwrap_or_else(PoisonError::into_inner);
    for (pid, dir) in owned.iter() {
        if *pid != 0 {
            // SAFETY: signalling our own child process.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

static DB_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A database name unique to this test run: `t<pid><n>_<tag>`, at most 63 bytes.
pub fn unique_db(tag: &str) -> String {
    let n = DB_COUNTER.fetch_add(1, Ordering::SeqCst);
    let clean: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("t{}x{n}_{clean}", std::process::id());
    name.truncate(63);
    name
}

/// Says loudly that (part of) a test was skipped, and why: on stderr, and in
/// `target/test-skips.txt`, which `cargo xtask test` prints after the run.
pub fn skip_loudly(test: &str, why: &str) {
    use std::io::Write;
    let bar = "!".repeat(78);
    eprintln!("\n{bar}\n!! SKIPPED: {test}\n!! {why}\n{bar}\n");
    let target = workspace_root().join("target");
    let _ = std::fs::create_dir_all(&target);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target.join("test-skips.txt"))
    {
        let _ = writeln!(f, "SKIPPED: {test}\n  why: {why}");
    }
}

/// A test fixture component built by `cargo xtask build-plugins` (`target/plugins-test/NAME.wasm`).
///
/// # Panics
/// If it has not been built, with the command that builds it.
pub fn fixture_wasm(name: &str) -> PathBuf {
    built(
        workspace_root()
            .join("target/plugins-test")
            .join(format!("{name}.wasm")),
    )
}

/// A bundled plugin built by `cargo xtask build-plugins` (`plugins/deploy/NAME.wasm`).
///
/// # Panics
/// If it has not been built, with the command that builds it.
pub fn bundled_wasm(name: &str) -> PathBuf {
    built(
        workspace_root()
            .join("plugins/deploy")
            .join(format!("{name}.wasm")),
    )
}

fn built(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-plugins` (`cargo xtask test` does it for you)",
        path.display()
    );
    path
}
