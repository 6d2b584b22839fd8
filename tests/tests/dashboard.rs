//! The `/admin/ui` dashboard, end to end in headless Chromium: a real HTTP server on a
//! loopback port, the real manager on FerretDB, the page driven by `tests/e2e/dashboard.mjs`
//! (playwright-core, pinned in `tests/e2e/package-lock.json`, with Debian's `chromium`).
//!
//! Needs `chromium` (installed by `cargo xtask setup` with apt-get when missing) and Node.js
//! with npm (`npm ci` in `tests/e2e` is run here when its `node_modules` is missing). Fails
//! with the command to run when either is missing: this test never passes silently.
//! The screenshot is saved to `target/dashboard.png`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use polymongo::gateway::{self, AppState, GatewayConfig};
use polymongo_tests::{bundled_wasm, unique_db, workspace_root};
use serde_json::Value;

mod common;

use common::{Host, Options, TOKEN};

/// The Chromium executable: `$POLYMONGO_CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    let path = std::env::var_os("POLYMONGO_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "the dashboard test needs Chromium at {}, which is missing.\n\
         Install it with `cargo xtask setup` (runs `apt-get update && apt-get install -y chromium` as root),\n\
         or `sudo apt-get install -y chromium`, or point POLYMONGO_CHROMIUM at a Chromium binary.",
        path.display()
    );
    path
}

/// Installs the pinned playwright-core into `tests/e2e/node_modules` unless it is there.
fn ensure_driver(dir: &Path) {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(
        have("node") && have("npm"),
        "the dashboard test needs Node.js >= 20 and npm (e.g. `apt-get install -y nodejs npm`)"
    );
    let wanted: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    let wanted = wanted["dependencies"]["playwright-core"].as_str().unwrap();
    let installed = std::fs::read_to_string(dir.join("node_modules/playwright-core/package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string));
    if installed.as_deref() == Some(wanted) {
        return;
    }
    eprintln!(
        "installing playwright-core {wanted} (npm ci in {})",
        dir.display()
    );
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .expect("running npm ci");
    assert!(
        status.success(),
        "`npm ci` in {} failed ({status})",
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_pools_and_sets_a_priority_in_headless_chromium() {
    let chromium = chromium();
    let e2e = workspace_root().join("tests/e2e");
    ensure_driver(&e2e);

    // A cap below the number of tenants, so the chart shows evictions too.
    let host = Host::with(Options {
        plugins: vec![("users".into(), bundled_wasm("users"))],
        // Without a tenant prefix, the page's rows (database names) are the tenant names.
        manager: Box::new(|b| b.max_connections(4).tenant_db_prefix("")),
        ..Options::default()
    })
    .await;
    let state = AppState {
        manager: host.manager.clone(),
        registry: host.registry.clone(),
        config: Arc::new(GatewayConfig {
            admin_token: Some(TOKEN.into()),
            ..GatewayConfig::default()
        }),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway::serve(listener, state, async {
        let _ = stopped.await;
    }));

    let tenants: Vec<String> = (0..5).map(|i| unique_db(&format!("ui{i}"))).collect();
    let pin = unique_db("ui-pinned");
    let screenshot = workspace_root().join("target/dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let script = e2e.join("dashboard.mjs");
    let envs = [
        ("BASE_URL", format!("http://{addr}")),
        ("ADMIN_TOKEN", TOKEN.to_string()),
        ("TENANTS", tenants.join(",")),
        ("PIN", pin.clone()),
        ("PRIORITY", "-1".to_string()),
        ("SCREENSHOT", screenshot.display().to_string()),
        ("CHROMIUM", chromium.display().to_string()),
    ];
    let dir = e2e.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .current_dir(dir)
            .envs(envs)
            .output()
            .expect("running node")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the browser run failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("unexpected output {stdout:?}: {e}"));
    assert_eq!(report["ok"], true);

    // The page showed the pools the traffic opened...
    let rows: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        rows.contains(&tenants.last().unwrap().as_str()),
        "rows shown: {rows:?}"
    );
    assert!(rows.len() <= 4, "never more rows than the cap: {rows:?}");
    // ...and the priority set on the page reached the manager.
    assert_eq!(host.manager.priority(&pin), -1);
    let pinned = host
        .manager
        .stats()
        .into_iter()
        .find(|p| p.db_name == pin)
        .expect("the pinned pool stays open");
    assert_eq!(pinned.priority, -1);
    assert!(host.manager.summary().evictions >= 1);

    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(png.len() > 20_000, "a real page, {} bytes", png.len());
    eprintln!("dashboard screenshot: {}", screenshot.display());

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
