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

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The guests' target triple.
pub const TARGET: &str = "wasm32-wasip2";

/// The bundled plugins, copied into the deploy folder.
pub const BUNDLED: &[&str] = &["users"];

/// The test fixtures, copied into `target/plugins-test/`.
pub const FIXTURES: &[&str] = &["hostile", "exerciser", "bench"];

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

/// Builds every guest (release, `wasm32-wasip2`) and copies the components into place:
/// bundled plugins into [`deploy_dir`], fixtures to [`fixture_path`].
pub fn build_plugins(root: &Path) -> Result<()> {
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
        let from = built.join(format!("{name}.wasm"));
        install(&from, &deploy_dir(root).join(format!("{name}.wasm")))?;
    }
    for name in FIXTURES {
        let from = built.join(format!("{name}.wasm"));
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
