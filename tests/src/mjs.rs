//! mongo-java-server: the test server with change streams.
//!
//! FerretDB has no change streams. mongo-java-server 1.47.0 (an in-memory MongoDB wire-protocol
//! server in Java) implements them over its own oplog, and the Rust driver talks to it (see
//! docs/STREAMS.md for what it does and does not do). `cargo xtask setup` installs it into
//! `.tools/mjs/`; [`change_stream_uri`] starts one per test binary, lazily, only for the tests
//! that need change streams, on a free loopback port, and stops it when the process exits.
//! When `POLYMONGO_TEST_URI` is set, that server is used instead (a replica set, for real
//! change streams).

use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use super::{die_with_parent, workspace_root, TEST_URI_ENV};

/// The mongo-java-server version the project pins (tests/mjs/pom.xml).
pub const MJS_VERSION: &str = "1.47.0";
/// Where `cargo xtask setup` installs it, relative to the workspace root.
pub const MJS_DIR: &str = ".tools/mjs";
/// Environment variable overriding the install folder (with `lib/` and `classes/`).
pub const MJS_HOME_ENV: &str = "POLYMONGO_MJS_HOME";

/// The install folder: `POLYMONGO_MJS_HOME` or `<root>/.tools/mjs`.
pub fn mjs_home() -> PathBuf {
    std::env::var_os(MJS_HOME_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(MJS_DIR))
}

/// A mongo-java-server process (in-memory, oplog on) on a loopback port.
pub struct MongoJavaServer {
    child: Option<Child>,
    /// Closing it stops the server (the launcher exits when its stdin closes).
    stdin: Option<ChildStdin>,
    port: u16,
}

impl MongoJavaServer {
    /// Starts a server on a free loopback port and waits until it listens.
    pub fn start() -> io::Result<Self> {
        let home = mjs_home();
        let classes = home.join("classes");
        if !classes.join("PolymongoMjs.class").exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "mongo-java-server not found in {} — run `cargo xtask setup` (or set {MJS_HOME_ENV}, or {TEST_URI_ENV} to use another server)",
                    home.display()
                ),
            ));
        }
        let log = std::env::temp_dir().join(format!("polymongo-mjs-{}.log", std::process::id()));
        let mut command = Command::new("java");
        command
            // Small and quick to start: the tests keep little data, and the machine is shared.
            .args(["-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
            .arg("-cp")
            .arg(format!(
                "{}/*:{}",
                home.join("lib").display(),
                classes.display()
            ))
            .args(["PolymongoMjs", "127.0.0.1", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?);
        die_with_parent(&mut command);
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|_| line.starts_with("polymongo-mjs listening on "));
        match port {
            Some(port) => Ok(Self {
                child: Some(child),
                stdin,
                port,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                Err(io::Error::other(format!(
                    "mongo-java-server did not start (first line {line:?}); its log:\n{tail}"
                )))
            }
        }
    }

    /// The connection string.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server.
    pub fn stop(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MongoJavaServer {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: OnceLock<Result<String, String>> = OnceLock::new();
static SHARED_PID: AtomicU32 = AtomicU32::new(0);

/// The URI of a server with change streams: `POLYMONGO_TEST_URI` if set, else this test
/// binary's mongo-java-server, started on first use and stopped when the process exits.
///
/// # Panics
/// If mongo-java-server cannot be started: the message says why and how to fix it.
pub fn change_stream_uri() -> String {
    if let Ok(uri) = std::env::var(TEST_URI_ENV) {
        if !uri.is_empty() {
            return uri;
        }
    }
    match SHARED.get_or_init(start_shared) {
        Ok(uri) => uri.clone(),
        Err(e) => panic!("cannot start mongo-java-server: {e}"),
    }
}

/// Whether the change-stream tests run against mongo-java-server (not `POLYMONGO_TEST_URI`).
pub fn using_mjs() -> bool {
    std::env::var(TEST_URI_ENV).map_or(true, |v| v.is_empty())
}

fn start_shared() -> Result<String, String> {
    // Spawned from a thread that lives as long as the process, so PDEATHSIG fires only when
    // the whole test binary dies.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("mjs-owner".into())
        .spawn(move || match MongoJavaServer::start() {
            Ok(mut server) => {
                SHARED_PID.store(server.pid().unwrap_or(0), Ordering::SeqCst);
                // SAFETY: registering a plain extern "C" function.
                unsafe { libc::atexit(stop_shared) };
                let _ = tx.send(Ok(server.uri()));
                // Keep the owner thread (and the server's stdin) alive until the process exits.
                if let Some(child) = server.child.as_mut() {
                    let _ = child.wait();
                }
                std::mem::forget(server);
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
            }
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())?
}

extern "C" fn stop_shared() {
    let pid = SHARED_PID.load(Ordering::SeqCst);
    if pid != 0 {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}
