//! Project tasks: `cargo xtask setup | db | test | demo | bench`.
//!
//! Everything a fresh machine needs is installed here, idempotently: FerretDB (into the
//! git-ignored `.tools/` folder) and the `wasm32-wasip2` Rust target.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

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
    /// Install what development and tests need (FerretDB, the wasm32-wasip2 target).
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
    /// Set up, start a local FerretDB and run the host's demo against it.
    Demo {
        /// Extra arguments for `polymongo demo`.
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
        Task::Test { args } => {
            setup(&root)?;
            let skips = root.join("target/test-skips.txt");
            let _ = std::fs::remove_file(&skips);
            let status = cargo(&root, &["test", "--workspace"], &args)?;
            if let Ok(text) = std::fs::read_to_string(&skips) {
                eprintln!("\n==== SKIPPED TEST PARTS (see reasons) ====\n{text}==========================================");
            }
            exit_with(status)
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
                    "polymongo-host",
                    "--bin",
                    "polymongo",
                    "--",
                    "demo",
                ],
                &demo_args,
            )?;
            drop(db);
            exit_with(status)
        }
        Task::Bench { args } => exit_with(cargo(&root, &["bench", "-p", "polymongo-host"], &args)?),
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

/// Installs FerretDB and the wasm target if they are missing. Quick when already done.
fn setup(root: &Path) -> Result<()> {
    install_ferretdb(root)?;
    add_wasm_target()?;
    Ok(())
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
