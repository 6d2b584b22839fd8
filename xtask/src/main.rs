//! Project tasks: `cargo xtask setup | db | test | examples | demo | bench`.
//!
//! Everything a fresh machine needs is installed here, idempotently: FerretDB and
//! mongo-java-server (into the git-ignored `.tools/` folder) and the `wasm32-wasip2` Rust target.

mod examples;
mod mjs;
mod plugins;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use polymongo_tests::{free_port, workspace_root, FerretDb, FERRETDB_VERSION};

#[derive(Parser)]
#[command(name = "xtask", about = "polymongo project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what development and tests need (FerretDB, mongo-java-server, the wasm32-wasip2
    /// target).
    Setup,
    /// Run a local FerretDB in the foreground and print its URI.
    Db {
        /// Port to listen on (default 27017, or a free one if that is taken).
        #[arg(long)]
        port: Option<u16>,
        /// Data folder (default .data/ferretdb).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Set up, then run every test of the workspace against a real FerretDB.
    Test {
        /// Extra arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the bundled plugins and test fixtures for wasm32-wasip2.
    BuildPlugins,
    /// The main job: set up, start a local FerretDB, build the plugins and serve them over
    /// HTTP; shows two tenants' isolated data with curl, then serves until ctrl-c.
    Serve {
        /// Address for the host to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Do not run the curl walkthrough.
        #[arg(long)]
        quiet: bool,
    },
    /// Set up, then run every example of `examples/` end to end (as `test` does after the
    /// tests).
    Examples,
    /// Set up, start a local FerretDB and run the connection-manager demo against it.
    Demo {
        /// Extra arguments for the churn example (`examples/churn.rs`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the criterion benchmarks.
    Bench {
        /// Extra arguments for `cargo bench`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.task {
        Task::Setup => setup(&root),
        Task::Db { port, data } => {
            setup(&root)?;
            let data = data.unwrap_or_else(|| root.join(".data/ferretdb"));
            let mut db = start_db(&data, port)?;
            println!("FerretDB {FERRETDB_VERSION} listening: {}", db.uri());
            println!("data in {}; press ctrl-c to stop", data.display());
            db.wait()?;
            Ok(())
        }
        Task::BuildPlugins => plugins::build_plugins(&root),
        Task::Examples => {
            setup(&root)?;
            plugins::build_plugins(&root)?;
            examples::run_all(&root)
        }
        Task::Serve { listen, quiet } => serve(&root, &listen, quiet),
        Task::Test { args } => {
            setup(&root)?;
            plugins::build_plugins(&root)?;
            let skips = root.join("target/test-skips.txt");
            let _ = std::fs::remove_file(&skips);
            let host_tests = cargo(&root, &["test", "--workspace"], &args)?;
            // The guest SDK lives in its own workspace; its unit and doc tests run natively.
            let sdk_tests = cargo(&root.join("guest-sdk"), &["test"], &[])?;
            let status = if host_tests.success() {
                sdk_tests
            } else {
                host_tests
            };
            if let Ok(text) = std::fs::read_to_string(&skips) {
                eprintln!("\n==== SKIPPED TEST PARTS (see reasons) ====\n{text}==========================================");
            }
            if !status.success() {
                exit_with(status)?;
            }
            // The examples, as their READMEs tell users to run them.
            examples::run_all(&root)
        }
        Task::Demo { args } => {
            setup(&root)?;
            let data = root.join(".data/ferretdb");
            let db = start_db(&data, None)?;
            println!("FerretDB {FERRETDB_VERSION} listening: {}", db.uri());
            let mut demo_args = vec!["--uri".to_string(), db.uri()];
            demo_args.extend(args);
            let status = cargo(
                &root,
                &[
                    "run",
                    "--quiet",
                    "-p",
                    "polymongo-examples",
                    "--example",
                    "churn",
                    "--",
                ],
                &demo_args,
            )?;
            drop(db);
            exit_with(status)
        }
        Task::Bench { args } => exit_with(cargo(&root, &["bench", "-p", "polymongo-host"], &args)?),
    }
}

/// Starts FerretDB and the host serving `plugins/deploy`, walks through the users plugin with
/// curl for two tenants, then waits until the host exits (ctrl-c).
fn serve(root: &Path, listen: &str, quiet: bool) -> Result<()> {
    setup(root)?;
    plugins::build_plugins(root)?;
    let binary = build_host(root)?;
    let data = root.join(".data/ferretdb");
    let db = start_db(&data, None)?;
    println!("FerretDB {FERRETDB_VERSION} listening: {}", db.uri());
    let mut host = Command::new(&binary)
        .current_dir(root)
        .args(["serve", "--listen", listen, "--mongo-uri", &db.uri()])
        .args([
            "--plugins-dir",
            &plugins::deploy_dir(root).to_string_lossy(),
        ])
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let base = format!("http://{listen}");
    wait_until_listening(&mut host, listen, Duration::from_secs(60))?;
    if !quiet {
        walkthrough(&base);
    }
    println!("\nserving on {base} — press ctrl-c to stop");
    let status = host.wait()?;
    drop(db);
    exit_with(status)
}

/// Builds the host binary (dev profile) and returns its path.
pub(crate) fn build_host(root: &Path) -> Result<PathBuf> {
    let status = cargo(
        root,
        &[
            "build",
            "--quiet",
            "-p",
            "polymongo-host",
            "--bin",
            "polymongo",
        ],
        &[],
    )?;
    if !status.success() {
        bail!("building the host failed");
    }
    Ok(root.join("target/debug/polymongo"))
}

/// Waits until `host` accepts connections on `listen`; kills it and fails if it exits first or
/// `timeout` passes.
pub(crate) fn wait_until_listening(
    host: &mut Child,
    listen: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(listen).is_err() {
        if Instant::now() > deadline || host.try_wait()?.is_some() {
            let _ = host.kill();
            let _ = host.wait();
            bail!("the host did not start listening on {listen}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Shows two tenants' isolated data through the users plugin, with the curl commands.
fn walkthrough(base: &str) {
    // Fresh tenant names each run, so the walkthrough starts from empty databases even
    // though the local FerretDB keeps its data between runs.
    let run = std::process::id();
    let (acme, globex) = (format!("acme-{run}"), format!("globex-{run}"));
    let steps: Vec<(&str, &str, &str, Option<&str>)> = vec![
        (
            &acme,
            "POST",
            "/users/users",
            Some(r#"{"name":"Alice","email":"alice@acme.test","age":31}"#),
        ),
        (
            &acme,
            "POST",
            "/users/users",
            Some(r#"{"name":"Bob","email":"bob@acme.test"}"#),
        ),
        (
            &globex,
            "POST",
            "/users/users",
            Some(r#"{"name":"Gina","email":"gina@globex.test"}"#),
        ),
        (&acme, "GET", "/users/users", None),
        (&globex, "GET", "/users/users", None),
        (&acme, "GET", "/users/users/count", None),
        (&globex, "GET", "/users/users?name=Alice", None),
    ];
    println!("\nTwo tenants, one plugin, isolated databases:");
    for (tenant, method, path, body) in &steps {
        let url = format!("{base}{path}");
        let mut args = vec![
            "-s".to_string(),
            "-X".into(),
            method.to_string(),
            "-H".into(),
            format!("x-tenant-id: {tenant}"),
        ];
        if let Some(body) = body {
            args.extend([
                "-H".into(),
                "content-type: application/json".into(),
                "-d".into(),
                body.to_string(),
            ]);
        }
        args.push(url);
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                if a.contains(' ') || a.contains('{') {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect();
        println!("\n$ curl {}", shown.join(" "));
        match Command::new("curl").args(&args).output() {
            Ok(out) => println!("{}", String::from_utf8_lossy(&out.stdout)),
            Err(e) => {
                println!("(curl is not installed: {e})");
                return;
            }
        }
    }
    println!("\n$ curl -s {base}/admin/stats   # pools, uses, scores");
    if let Ok(out) = Command::new("curl")
        .args(["-s", &format!("{base}/admin/stats")])
        .output()
    {
        println!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

fn exit_with(status: ExitStatus) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        std::process::exit(status.code().unwrap_or(1))
    }
}

fn cargo(root: &Path, base: &[&str], extra: &[String]) -> Result<ExitStatus> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .current_dir(root)
        .args(base)
        .args(extra)
        .status()
        .context("running cargo")
}

fn start_db(data: &Path, port: Option<u16>) -> Result<FerretDb> {
    std::fs::create_dir_all(data)?;
    let port = match port {
        Some(p) => p,
        None if std::net::TcpListener::bind(("127.0.0.1", 27017)).is_ok() => 27017,
        None => free_port()?,
    };
    FerretDb::start_in(data, port).context("starting FerretDB")
}

/// Installs FerretDB, mongo-java-server, the wasm target and Chromium (for the dashboard test) if they are
/// missing. Quick when already done.
fn setup(root: &Path) -> Result<()> {
    install_ferretdb(root)?;
    mjs::install_mjs(root)?;
    add_wasm_target()?;
    install_chromium();
    Ok(())
}

/// Whether Debian packages can be installed here: running as root with apt-get (as on a fresh
/// CI machine).
pub(crate) fn can_apt_install() -> bool {
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    root_user && Command::new("apt-get").arg("--version").output().is_ok()
}

/// `apt-get update` then `apt-get install -y packages`, non-interactively; whether both
/// succeeded.
pub(crate) fn apt_install(packages: &[&str]) -> bool {
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    apt(&["update", "-qq"]) && apt(&[&["install", "-y", "-qq"], packages].concat())
}

/// Debian's `chromium`, which the dashboard's end-to-end test drives headless. Installed with
/// apt-get when missing and running as root; otherwise a warning says how (the test itself
/// then fails with the same advice rather than passing silently).
fn install_chromium() {
    const CHROMIUM: &str = "/usr/bin/chromium";
    if Path::new(CHROMIUM).exists() || std::env::var_os("POLYMONGO_CHROMIUM").is_some() {
        return;
    }
    if !can_apt_install() {
        eprintln!(
            "warning: {CHROMIUM} is missing; the dashboard test needs it: \
             `sudo apt-get update && sudo apt-get install -y chromium` (or set POLYMONGO_CHROMIUM)"
        );
        return;
    }
    eprintln!("installing Debian's chromium for the dashboard test (apt-get) ...");
    if !apt_install(&["chromium"]) {
        eprintln!("warning: `apt-get install -y chromium` failed; the dashboard test will fail");
    }
}

fn install_ferretdb(root: &Path) -> Result<()> {
    let tools = root.join(".tools");
    let binary = tools.join("bin/ferretdb");
    if installed_version(&binary).as_deref() == Some(FERRETDB_VERSION) {
        return Ok(());
    }
    if Command::new("go").arg("version").output().is_err() {
        bail!(
            "Go is needed to install FerretDB {FERRETDB_VERSION} but `go` was not found on PATH.\n\
             Install Go 1.22 or newer (https://go.dev/doc/install, or your package manager's `golang`), then run `cargo xtask setup` again."
        );
    }
    eprintln!(
        "installing FerretDB {FERRETDB_VERSION} into {} ...",
        binary.display()
    );
    let module = format!("github.com/FerretDB/FerretDB@{FERRETDB_VERSION}");
    let modcache = tools.join("gomod");
    let go = |args: &[&str]| {
        let mut c = Command::new("go");
        c.args(args)
            .env("GOMODCACHE", &modcache)
            .env("GOFLAGS", "-modcacherw")
            .env("GOBIN", tools.join("bin"));
        c
    };
    // The module as published has an empty build/version/version.txt, and a binary built from
    // it panics at start ("Invalid build/version/version.txt"); FerretDB's docs say to create
    // that file. So: download the module into a project-local module cache, write the file,
    // then `go install` the command from that cache.
    let out = go(&["mod", "download", "-json", &module])
        .output()
        .context("go mod download")?;
    if !out.status.success() {
        bail!(
            "go mod download {module} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = json_field(&String::from_utf8_lossy(&out.stdout), "Dir")
        .context("go mod download printed no module directory")?;
    std::fs::write(
        Path::new(&dir).join("build/version/version.txt"),
        format!("{FERRETDB_VERSION}\n"),
    )
    .context("writing FerretDB's version.txt")?;
    let target = format!("github.com/FerretDB/FerretDB/cmd/ferretdb@{FERRETDB_VERSION}");
    let status = go(&["install", &target]).status().context("go install")?;
    if !status.success() {
        bail!("`go install {target}` failed");
    }
    match installed_version(&binary) {
        Some(v) if v == FERRETDB_VERSION => {
            eprintln!("FerretDB {v} installed");
            Ok(())
        }
        other => bail!("installed FerretDB reports version {other:?}, expected {FERRETDB_VERSION}"),
    }
}

/// The version `ferretdb --version` reports, if the binary runs.
fn installed_version(binary: &Path) -> Option<String> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("version:"))
        .map(|v| v.trim().to_string())
}

fn json_field(json: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\":");
    let start = json.find(&key)? + key.len();
    let rest = json[start..].trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].replace("\\\\", "\\"))
}

fn add_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2") =>
        {
            Ok(())
        }
        Ok(_) => {
            let status = Command::new("rustup")
                .args(["target", "add", "wasm32-wasip2"])
                .status()?;
            if !status.success() {
                bail!("`rustup target add wasm32-wasip2` failed");
            }
            Ok(())
        }
        Err(_) => {
            eprintln!("warning: rustup not found; make sure the wasm32-wasip2 target is installed");
            Ok(())
        }
    }
}
