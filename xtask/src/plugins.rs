//! Building the guest components: the bundled plugins and the test fixtures.
//!
//! The guests form their own cargo workspace (`plugins/Cargo.toml`, with the SDK
//! `guest-sdk/` as a path dependency), built for `wasm32-wasip2` into `target/guests`.
//! A plain `cdylib` built for that target is already a component. After the build:
//!
//! - the bundled plugins go to the default deploy folder, `plugins/deploy/<name>.wasm`;
//! - the fixtures go to `target/plugins-test/<name>.wasm` (see [`fixture_path`]).
//!
//! Files are replaced atomically (`x.wasm.tmp`, then a rename) and only when their content
//! changed, so a watcher on the deploy folder sees nothing when nothing changed; cargo is
//! incremental, so a build with no change takes about a second.
//!
//! Then the JavaScript and Python guests ([`JS_GUESTS`], [`PY_GUESTS`]), each with its
//! toolchain installed locally and pinned, on first use:
//!
//! - JavaScript: `npm ci` in `guest-sdk/js` (esbuild, componentize-js, bson, jco; versions in
//!   its `package-lock.json`), then `node guest-sdk/js/build.mjs ENTRY -o OUT` (esbuild bundle
//!   + componentize-js without wasi:http).
//! - Python: a venv `.tools/py` with `guest-sdk/python/requirements.txt` (componentize-py,
//!   pymongo for its pure-Python `bson`), then `.tools/py/bin/python guest-sdk/python/build.py
//!   DIR -o OUT` (componentize-py with the plugin folder, the SDK and `bson` on the path).
//!
//! Both are skipped when their inputs did not change (a hash of every input file, stamped
//! beside the build output): componentizing takes 7–15 s per component.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The guests' target triple.
pub const TARGET: &str = "wasm32-wasip2";

/// The bundled plugins and scorers, copied into the deploy folder.
pub const BUNDLED: &[&str] = &[
    "users",
    "scorer-seed",
    "scorer-lru",
    "scorer-adaptive",
    "scorer-hybrid",
];

/// The test fixtures, copied into `target/plugins-test/`.
pub const FIXTURES: &[&str] = &[
    "hostile",
    "hostile-input",
    "exerciser",
    "bench",
    "scorer-trap",
    "scorer-hog",
    "scorer-loop",
    "scorer-nan",
    "scorer-short",
    "version-a",
    "version-b",
    "wrong-world",
    "forger",
    "log-flood",
    "scorer-counter",
    "streamer",
    "subscriber",
    "transactor",
];

/// The file cargo writes for crate `name` (a cdylib's file name uses `_` for `-`).
fn artifact(name: &str) -> String {
    format!("{}.wasm", name.replace('-', "_"))
}

/// The guests' cargo workspace: `<root>/plugins`.
pub fn guests_workspace(root: &Path) -> PathBuf {
    root.join("plugins")
}

/// The guests' target dir: `<root>/target/guests`.
pub fn guests_target_dir(root: &Path) -> PathBuf {
    root.join("target").join("guests")
}

/// The default deploy folder of the host: `<root>/plugins/deploy`.
pub fn deploy_dir(root: &Path) -> PathBuf {
    guests_workspace(root).join("deploy")
}

/// Where the fixture `name` (`hostile`, `exerciser`, `bench`) is after [`build_plugins`]:
/// `<root>/target/plugins-test/<name>.wasm`.
pub fn fixture_path(root: &Path, name: &str) -> PathBuf {
    root.join("target")
        .join("plugins-test")
        .join(format!("{name}.wasm"))
}

/// Where a built guest goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// A bundled plugin: [`deploy_dir`].
    Deploy,
    /// A test fixture: [`fixture_path`].
    Fixture,
}

/// The JavaScript guests: (name, entry module relative to the root, destination).
pub const JS_GUESTS: &[(&str, &str, Dest)] = &[
    ("users-js", "plugins/users-js/src/index.js", Dest::Deploy),
    (
        "bench-js",
        "plugins/fixtures/bench-js/index.js",
        Dest::Fixture,
    ),
    (
        "insert-js",
        "plugins/fixtures/insert-js/index.js",
        Dest::Fixture,
    ),
    (
        "streamer-js",
        "plugins/fixtures/streamer-js/index.js",
        Dest::Fixture,
    ),
    (
        "transactor-js",
        "plugins/fixtures/transactor-js/index.js",
        Dest::Fixture,
    ),
    (
        "subscriber-js",
        "plugins/fixtures/subscriber-js/index.js",
        Dest::Fixture,
    ),
];

/// The Python guests: (name, folder with `app.py` relative to the root, destination).
pub const PY_GUESTS: &[(&str, &str, Dest)] = &[
    ("users-py", "plugins/users-py", Dest::Deploy),
    ("bench-py", "plugins/fixtures/bench-py", Dest::Fixture),
    ("streamer-py", "plugins/fixtures/streamer-py", Dest::Fixture),
    (
        "transactor-py",
        "plugins/fixtures/transactor-py",
        Dest::Fixture,
    ),
    (
        "subscriber-py",
        "plugins/fixtures/subscriber-py",
        Dest::Fixture,
    ),
];

/// Builds every guest and copies the components into place: bundled plugins into
/// [`deploy_dir`], fixtures to [`fixture_path`]. Rust first, then JavaScript and Python.
pub fn build_plugins(root: &Path) -> Result<()> {
    build_rust(root)?;
    build_js(root)?;
    build_python(root)?;
    Ok(())
}

fn destination(root: &Path, name: &str, dest: Dest) -> PathBuf {
    match dest {
        Dest::Deploy => deploy_dir(root).join(format!("{name}.wasm")),
        Dest::Fixture => fixture_path(root, name),
    }
}

/// Builds the Rust guests (release, `wasm32-wasip2`).
fn build_rust(root: &Path) -> Result<()> {
    let workspace = guests_workspace(root);
    let target_dir = guests_target_dir(root);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        // Run from the guests' workspace so that its .cargo/config.toml applies, and pass
        // the target dir explicitly in case the caller's environment names another one.
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .with_context(|| format!("running {} build for the guests", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!(
            "building the guest plugins failed ({status}); is the {TARGET} target installed? \
             (`rustup target add {TARGET}`, or `cargo xtask setup`)"
        );
    }

    let built = target_dir.join(TARGET).join("release");
    for name in BUNDLED {
        let from = built.join(artifact(name));
        install(&from, &deploy_dir(root).join(format!("{name}.wasm")))?;
    }
    for name in FIXTURES {
        let from = built.join(artifact(name));
        install(&from, &fixture_path(root, name))?;
    }
    Ok(())
}

/// Copies `from` to `to` atomically (through `to.tmp` and a rename), unless `to` already
/// has the same content.
fn install(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if std::fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let dir = to.parent().context("destination without a parent folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, to)
        .with_context(|| format!("renaming {} to {}", tmp.display(), to.display()))?;
    Ok(())
}

// ---- JavaScript -------------------------------------------------------------------------

/// The JavaScript SDK and toolchain folder: `<root>/guest-sdk/js`.
fn js_sdk(root: &Path) -> PathBuf {
    root.join("guest-sdk").join("js")
}

/// Checks that `program --version` runs; the error says what to install.
fn require_tool(program: &str, what: &str) -> Result<String> {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
        _ => bail!(
            "`{program}` was not found (or does not run): it is needed to build the {what} \
             plugins. Install it (e.g. `apt-get install nodejs npm` / `apt-get install python3 \
             python3-venv`) and run the command again."
        ),
    }
}

/// Installs the pinned JavaScript toolchain (`npm ci` in `guest-sdk/js`) unless
/// `node_modules` already matches `package-lock.json`.
pub fn ensure_js_toolchain(root: &Path) -> Result<()> {
    let node = require_tool("node", "JavaScript")?;
    require_tool("npm", "JavaScript")?;
    let major: u32 = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        bail!("node {node} is too old to build the JavaScript plugins: need node 20 or newer");
    }
    let sdk = js_sdk(root);
    let lock = std::fs::read(sdk.join("package-lock.json"))
        .with_context(|| format!("reading {}/package-lock.json", sdk.display()))?;
    let stamp = sdk.join("node_modules").join(".polymongo-lock.json");
    if std::fs::read(&stamp).is_ok_and(|old| old == lock) {
        return Ok(());
    }
    eprintln!(
        "installing the JavaScript plugin toolchain (npm ci in {})",
        sdk.display()
    );
    let started = Instant::now();
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&sdk)
        .status()
        .context("running npm ci")?;
    if !status.success() {
        bail!("`npm ci` in {} failed ({status})", sdk.display());
    }
    std::fs::write(&stamp, &lock).with_context(|| format!("writing {}", stamp.display()))?;
    eprintln!(
        "JavaScript toolchain installed in {:.0?}",
        started.elapsed()
    );
    Ok(())
}

/// Builds the JavaScript guests whose inputs changed, and the `.d.ts` of the WIT world.
fn build_js(root: &Path) -> Result<()> {
    ensure_js_toolchain(root)?;
    let sdk = js_sdk(root);
    let out_dir = root.join("target").join("js-build");
    let common = [
        root.join("wit"),
        sdk.join("src"),
        sdk.join("build.mjs"),
        sdk.join("package-lock.json"),
    ];
    // TypeScript declarations of the WIT imports and export (jco guest types).
    let types = sdk.join("types");
    let hash = inputs_hash(&common)?;
    if !fresh(&types.join(".polymongo-stamp"), &types, hash) {
        run(
            Command::new("node")
                .arg(sdk.join("build.mjs"))
                .arg("--types")
                .arg(&types)
                .current_dir(root),
            "generating the JavaScript types",
        )?;
        stamp(&types.join(".polymongo-stamp"), hash)?;
    }
    for (name, entry, dest) in JS_GUESTS {
        let entry = root.join(entry);
        let dir = entry.parent().context("entry without a folder")?;
        let mut inputs = common.to_vec();
        inputs.push(dir.to_path_buf());
        let hash = inputs_hash(&inputs)?;
        let out = out_dir.join(format!("{name}.wasm"));
        let stamp_file = out_dir.join(format!("{name}.stamp"));
        if !fresh(&stamp_file, &out, hash) {
            let started = Instant::now();
            run(
                Command::new("node")
                    .arg(sdk.join("build.mjs"))
                    .arg(&entry)
                    .arg("-o")
                    .arg(&out)
                    .current_dir(root),
                &format!("building the JavaScript plugin {name}"),
            )?;
            stamp(&stamp_file, hash)?;
            eprintln!("built {name} in {:.1?}", started.elapsed());
        }
        install(&out, &destination(root, name, *dest))?;
    }
    Ok(())
}

// ---- Python -----------------------------------------------------------------------------

/// The project-local venv with the Python toolchain: `<root>/.tools/py`.
pub fn py_venv(root: &Path) -> PathBuf {
    root.join(".tools").join("py")
}

/// Installs the pinned Python toolchain (a venv in `.tools/py` with
/// `guest-sdk/python/requirements.txt`) unless it is already there.
pub fn ensure_py_toolchain(root: &Path) -> Result<()> {
    let venv = py_venv(root);
    let requirements_file = root.join("guest-sdk/python/requirements.txt");
    let requirements = std::fs::read(&requirements_file)
        .with_context(|| format!("reading {}", requirements_file.display()))?;
    let stamp_file = venv.join(".polymongo-requirements.txt");
    if !std::fs::read(&stamp_file).is_ok_and(|old| old == requirements) {
        require_tool("python3", "Python")?;
        eprintln!(
            "installing the Python plugin toolchain into {}",
            venv.display()
        );
        let started = Instant::now();
        run(
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
            "creating the Python venv (is python3-venv installed?)",
        )?;
        run(
            Command::new(venv.join("bin/pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-deps",
                    "-r",
                ])
                .arg(&requirements_file),
            "installing the Python toolchain with pip",
        )?;
        std::fs::write(&stamp_file, &requirements)
            .with_context(|| format!("writing {}", stamp_file.display()))?;
        eprintln!("Python toolchain installed in {:.0?}", started.elapsed());
    }
    Ok(())
}

/// Builds the Python guests whose inputs changed, and the typed bindings of the WIT world.
fn build_python(root: &Path) -> Result<()> {
    ensure_py_toolchain(root)?;
    let componentize_py = py_venv(root).join("bin/componentize-py");
    let sdk = root.join("guest-sdk/python");
    let out_dir = root.join("target").join("py-build");
    let common = [
        root.join("wit"),
        sdk.join("src"),
        sdk.join("build.py"),
        sdk.join("requirements.txt"),
    ];
    // Type hints of the WIT world for editors and type checkers (componentize-py bindings).
    let bindings = sdk.join("bindings");
    let hash = inputs_hash(&common)?;
    if !fresh(&bindings.join(".polymongo-stamp"), &bindings, hash) {
        let _ = std::fs::remove_dir_all(&bindings);
        run(
            Command::new(&componentize_py)
                .args(["-d", "wit", "-w", "tenant-plugin", "bindings"])
                .arg(&bindings)
                .current_dir(root),
            "generating the Python bindings",
        )?;
        stamp(&bindings.join(".polymongo-stamp"), hash)?;
    }
    for (name, dir, dest) in PY_GUESTS {
        let dir = root.join(dir);
        let mut inputs = common.to_vec();
        inputs.push(dir.clone());
        let hash = inputs_hash(&inputs)?;
        let out = out_dir.join(format!("{name}.wasm"));
        let stamp_file = out_dir.join(format!("{name}.stamp"));
        if !fresh(&stamp_file, &out, hash) {
            let started = Instant::now();
            run(
                Command::new(py_venv(root).join("bin/python"))
                    .arg(sdk.join("build.py"))
                    .arg(&dir)
                    .arg("-o")
                    .arg(&out)
                    .current_dir(root),
                &format!("building the Python plugin {name}"),
            )?;
            stamp(&stamp_file, hash)?;
            eprintln!("built {name} in {:.1?}", started.elapsed());
        }
        install(&out, &destination(root, name, *dest))?;
    }
    Ok(())
}

// ---- helpers ----------------------------------------------------------------------------

fn run(command: &mut Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("{what}: cannot run {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// A hash of every file under `paths` (names and contents, in a stable order), skipping
/// `__pycache__`, `node_modules` and dot-files.
fn inputs_hash(paths: &[PathBuf]) -> Result<u64> {
    fn walk(path: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "__pycache__" || name == "node_modules" || name.starts_with('.') {
            return Ok(());
        }
        if path.is_dir() {
            for entry in
                std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?
            {
                walk(&entry?.path(), files)?;
            }
        } else if path.is_file() {
            files.push(path.to_path_buf());
        }
        Ok(())
    }
    let mut files = Vec::new();
    for path in paths {
        walk(path, &mut files)?;
    }
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        hasher.write(file.to_string_lossy().as_bytes());
        hasher.write(&std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?);
    }
    Ok(hasher.finish())
}

/// Whether `output` exists and `stamp_file` records `hash`.
fn fresh(stamp_file: &Path, output: &Path, hash: u64) -> bool {
    output.exists()
        && std::fs::read_to_string(stamp_file).is_ok_and(|s| s.trim() == format!("{hash:016x}"))
}

fn stamp(stamp_file: &Path, hash: u64) -> Result<()> {
    if let Some(dir) = stamp_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(stamp_file, format!("{hash:016x}\n"))
        .with_context(|| format!("writing {}", stamp_file.display()))
}
