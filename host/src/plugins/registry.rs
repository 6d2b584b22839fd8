//! The set of loaded components (tenant plugins and scorers), swapped atomically.
//!
//! [`PluginRegistry::rescan`] makes the registry match the plugins folder: it hashes every
//! `NAME.wasm` (with its `NAME.toml` manifest), loads what changed, keeps the last good
//! version of anything that fails to load (and reports the error), and unloads what was
//! deleted. Requests hold an `Arc` of the version they started with, so a swap never cuts
//! one short.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;

use super::scan::{self, Changed, Stamp};
use crate::consumers::ConsumerBoard;
use crate::pool::{builtin_policy, EvictionPolicy, SeedPolicy};
use crate::runtime::{
    valid_plugin_name, LoadError, Loaded, Manifest, Plugin, Runtime, ScorerComponent, WasmScorer,
};

/// Whether a deployed file is serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginStatus {
    /// Loaded and serving.
    Ok,
    /// The latest file failed to load; the last good version (if any) keeps serving.
    Error,
}

/// What a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// Answers tenant requests (`handler` export).
    Tenant,
    /// Scores pools for eviction (`scoring` export).
    Scorer,
}

/// What the admin API shows about one deployed component.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    /// The name (URL prefix for tenant plugins).
    pub name: String,
    /// Tenant plugin or scorer (of the serving version; `None` if none serves).
    pub kind: Option<ComponentKind>,
    /// `ok`, or `error` when the latest file failed to load.
    pub status: PluginStatus,
    /// Hex BLAKE3 of the serving version's bytes, if one serves.
    pub version: Option<String>,
    /// Size of the serving component in bytes.
    pub size: Option<usize>,
    /// When the serving version was loaded (epoch ms).
    pub loaded_at_ms: Option<u64>,
    /// The last load error, if the latest file failed.
    pub last_error: Option<String>,
    /// Databases granted by the manifest.
    pub grants: Vec<String>,
    /// Requests running now.
    pub in_flight: u32,
    /// Whether this scorer is the active eviction policy.
    pub active_scorer: bool,
}

/// Reload counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReloadCounts {
    /// Versions loaded and published.
    pub loaded: u64,
    /// Files that failed to load (the previous version kept serving).
    pub failed: u64,
    /// Components unloaded because their file was deleted.
    pub unloaded: u64,
}

struct LoadedScorer {
    component: Arc<ScorerComponent>,
    loaded_at: SystemTime,
}

/// What the registry last saw of one file.
struct FileState {
    /// Size, modification time and inode of the wasm file and its manifest when last read:
    /// a file whose stamp did not change is not read again.
    stamp: Option<Stamp>,
    /// Hash of the wasm bytes and the manifest text last tried.
    fingerprint: String,
    /// The error of that try, if it failed.
    error: Option<String>,
}

/// Loaded components by name, and the state of each file.
pub struct PluginRegistry {
    runtime: Runtime,
    dir: PathBuf,
    plugins: ArcSwap<HashMap<String, Arc<Plugin>>>,
    scorers: ArcSwap<HashMap<String, Arc<LoadedScorer>>>,
    files: Mutex<BTreeMap<String, FileState>>,
    active_scorer: Option<String>,
    /// The wasm scorer deciding evictions now, when the active scorer is a component.
    active_wasm: ArcSwapOption<WasmScorer>,
    /// Names no plugin may take (routes of the gateway that serves them).
    reserved_names: Vec<String>,
    scan_lock: tokio::sync::Mutex<()>,
    loaded: AtomicU64,
    failed: AtomicU64,
    unloaded: AtomicU64,
    /// Bumped whenever a version is published or a component unloaded.
    changes: tokio::sync::watch::Sender<u64>,
    /// The background consumers of the plugins' subscriptions (see `crate::consumers`).
    consumers: Arc<ConsumerBoard>,
}

impl PluginRegistry {
    /// An empty registry over `dir`.
    pub fn new(runtime: Runtime, dir: impl Into<PathBuf>) -> Self {
        Self {
            runtime,
            dir: dir.into(),
            plugins: ArcSwap::from_pointee(HashMap::new()),
            scorers: ArcSwap::from_pointee(HashMap::new()),
            files: Mutex::new(BTreeMap::new()),
            active_scorer: None,
            active_wasm: ArcSwapOption::empty(),
            reserved_names: Vec::new(),
            scan_lock: tokio::sync::Mutex::new(()),
            loaded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            unloaded: AtomicU64::new(0),
            changes: tokio::sync::watch::Sender::new(0),
            consumers: Arc::default(),
        }
    }

    /// Names the eviction policy: `seed` or `lru` (built in), or the name of a scorer
    /// component in the plugins folder, which becomes the manager's policy whenever a version
    /// of it is loaded (and `seed` decides while none is).
    pub fn with_active_scorer(mut self, name: Option<String>) -> Self {
        self.active_scorer = name;
        self
    }

    /// Names no plugin may take: the first path segments the gateway serving the plugins
    /// routes itself (see `gateway::RESERVED_ROUTES`). A file with such a name fails to load.
    pub fn with_reserved_names(mut self, names: &[&str]) -> Self {
        self.reserved_names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// The plugins folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The runtime plugins run in.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Every serving tenant plugin.
    pub fn tenant_plugins(&self) -> Vec<Arc<Plugin>> {
        self.plugins.load().values().cloned().collect()
    }

    /// Notified whenever a version is published or a component unloaded.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// What the background consumers of the plugins' subscriptions are doing.
    pub fn consumer_board(&self) -> &Arc<ConsumerBoard> {
        &self.consumers
    }

    /// The serving version of tenant plugin `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        self.plugins.load().get(name).cloned()
    }

    /// The loaded version of scorer `name`.
    pub fn scorer(&self, name: &str) -> Option<Arc<ScorerComponent>> {
        self.scorers.load().get(name).map(|s| s.component.clone())
    }

    /// Reload counters since start.
    pub fn reload_counts(&self) -> ReloadCounts {
        ReloadCounts {
            loaded: self.loaded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            unloaded: self.unloaded.load(Ordering::Relaxed),
        }
    }

    /// Loads every component in the folder (the first scan). Returns how many serve.
    pub async fn load_all(&self) -> std::io::Result<usize> {
        self.apply_builtin_policy();
        self.rescan().await?;
        Ok(self.plugins.load().len() + self.scorers.load().len())
    }

    /// Makes the registry match the folder: loads new and changed files, unloads deleted
    /// ones. Files whose bytes and manifest did not change since the last try are skipped,
    /// so a broken file is not recompiled at every scan.
    pub async fn rescan(&self) -> std::io::Result<()> {
        let _serial = self.scan_lock.lock().await;
        let known: HashMap<String, Option<Stamp>> = self
            .lock_files()
            .iter()
            .map(|(name, file)| (name.clone(), file.stamp))
            .collect();
        let dir = self.dir.clone();
        let found = tokio::task::spawn_blocking(move || scan::scan(&dir, &known))
            .await
            .map_err(std::io::Error::other)??;
        for changed in found.changed {
            self.consider(changed).await;
        }
        let gone: Vec<String> = {
            let files = self.lock_files();
            files
                .keys()
                .filter(|n| !found.present.contains(*n))
                .cloned()
                .collect()
        };
        for name in gone {
            self.unload(&name);
        }
        Ok(())
    }

    /// Loads a changed file if its content (bytes or manifest) changed since the last try.
    async fn consider(&self, file: Changed) {
        let known = self
            .lock_files()
            .get(&file.name)
            .map(|f| f.fingerprint.clone());
        let runtime = self.runtime.clone();
        let name = file.name.clone();
        let path = file.path.clone();
        let reserved = self.reserved_names.contains(&file.name);
        let attempt = tokio::task::spawn_blocking(move || {
            load_changed(&runtime, &name, &path, known, reserved)
        })
        .await
        .unwrap_or_else(|e| {
            Attempt::Unreadable(LoadError::Compile(format!("load task failed: {e}")))
        });
        let Changed { name, stamp, .. } = file;
        match attempt {
            Attempt::Gone => {}
            Attempt::Unchanged => {
                if let Some(state) = self.lock_files().get_mut(&name) {
                    state.stamp = stamp;
                }
            }
            // Without a stamp the file is read again at the next scan.
            Attempt::Unreadable(error) => self.record_failure(&name, None, "io".into(), error),
            Attempt::Failed { fingerprint, error } => {
                self.record_failure(&name, stamp, fingerprint, error)
            }
            Attempt::Loaded {
                fingerprint,
                loaded,
            } => {
                self.lock_files().insert(
                    name,
                    FileState {
                        stamp,
                        fingerprint,
                        error: None,
                    },
                );
                self.publish(loaded);
            }
        }
    }

    fn record_failure(
        &self,
        name: &str,
        stamp: Option<Stamp>,
        fingerprint: String,
        error: LoadError,
    ) {
        tracing::error!(plugin = name, %error, "component failed to load; the previous version (if any) keeps serving");
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.lock_files().insert(
            name.to_string(),
            FileState {
                stamp,
                fingerprint,
                error: Some(error.to_string()),
            },
        );
    }

    /// Makes a loaded component the serving version of its name (atomically).
    pub fn publish(&self, loaded: Loaded) {
        self.loaded.fetch_add(1, Ordering::Relaxed);
        match loaded {
            Loaded::Tenant(plugin) => {
                tracing::info!(
                    plugin = plugin.name(),
                    version = plugin.version(),
                    size = plugin.size(),
                    "tenant plugin published"
                );
                let plugin = Arc::new(plugin);
                let name = plugin.name().to_string();
                self.plugins.rcu(|current| {
                    let mut next = HashMap::clone(current);
                    next.insert(name.clone(), plugin.clone());
                    next
                });
                self.remove_scorer(&name);
            }
            Loaded::Scorer(component) => {
                tracing::info!(
                    scorer = component.name(),
                    version = component.version(),
                    "scorer published"
                );
                let name = component.name().to_string();
                let entry = Arc::new(LoadedScorer {
                    component: Arc::new(component),
                    loaded_at: SystemTime::now(),
                });
                self.scorers.rcu(|current| {
                    let mut next = HashMap::clone(current);
                    next.insert(name.clone(), entry.clone());
                    next
                });
                self.plugins.rcu(|current| {
                    let mut next = HashMap::clone(current);
                    next.remove(&name);
                    next
                });
                if self.active_scorer.as_deref() == Some(name.as_str()) {
                    let policy = Arc::new(entry.component.policy_with_limits(
                        self.runtime.scorer_limits(),
                        self.runtime.config().epoch_tick,
                    ));
                    let previous = self.active_wasm.load_full();
                    self.runtime.manager().set_policy(policy.clone());
                    // The previous version gets no more events: what it learnt from goes on
                    // in the new one (asked before the new one is listed as active, so that
                    // whoever finds it there finds the handover under way).
                    if let Some(previous) = previous {
                        policy.inherit_from(&previous);
                    }
                    self.active_wasm.store(Some(policy));
                }
            }
        }
        self.changes.send_modify(|n| *n += 1);
    }

    /// Stops serving `name` (requests in flight finish on the version they hold).
    pub fn unload(&self, name: &str) -> bool {
        let mut removed = false;
        self.plugins.rcu(|current| {
            let mut next = HashMap::clone(current);
            removed = next.remove(name).is_some();
            next
        });
        removed |= self.remove_scorer(name);
        self.lock_files().remove(name);
        if removed {
            self.unloaded.fetch_add(1, Ordering::Relaxed);
            tracing::info!(plugin = name, "component unloaded (file deleted)");
            self.changes.send_modify(|n| *n += 1);
        }
        removed
    }

    fn remove_scorer(&self, name: &str) -> bool {
        let mut removed = false;
        self.scorers.rcu(|current| {
            let mut next = HashMap::clone(current);
            removed = next.remove(name).is_some();
            next
        });
        if removed && self.active_scorer.as_deref() == Some(name) {
            tracing::warn!(
                scorer = name,
                "the active scorer was removed; the seed formula decides evictions"
            );
            self.active_wasm.store(None);
            self.runtime.manager().set_policy(Arc::new(SeedPolicy));
        }
        removed
    }

    /// The wasm scorer deciding evictions now (`None` when a built-in policy decides): its
    /// calls, overruns, restarts and slowest call, for the metrics.
    pub fn active_wasm_scorer(&self) -> Option<Arc<WasmScorer>> {
        self.active_wasm.load_full()
    }

    /// Sets a built-in policy when the configured scorer names one.
    fn apply_builtin_policy(&self) {
        if let Some(policy) = self.active_scorer.as_deref().and_then(builtin_policy) {
            self.runtime
                .manager()
                .set_policy(policy as Arc<dyn EvictionPolicy>);
        }
    }

    /// Every component with a serving version or a load error, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        let plugins = self.plugins.load();
        let scorers = self.scorers.load();
        let files = self.lock_files();
        let mut names: Vec<&String> = plugins
            .keys()
            .chain(scorers.keys())
            .chain(files.keys())
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let error = files.get(name).and_then(|f| f.error.clone());
                let status = if error.is_some() {
                    PluginStatus::Error
                } else {
                    PluginStatus::Ok
                };
                let base = PluginInfo {
                    name: name.clone(),
                    kind: None,
                    status,
                    version: None,
                    size: None,
                    loaded_at_ms: None,
                    last_error: error,
                    grants: Vec::new(),
                    in_flight: 0,
                    active_scorer: false,
                };
                if let Some(p) = plugins.get(name) {
                    PluginInfo {
                        kind: Some(ComponentKind::Tenant),
                        version: Some(p.version().to_string()),
                        size: Some(p.size()),
                        loaded_at_ms: Some(epoch_ms(p.loaded_at())),
                        grants: p.grants().to_vec(),
                        in_flight: p.in_flight(),
                        ..base
                    }
                } else if let Some(s) = scorers.get(name) {
                    PluginInfo {
                        kind: Some(ComponentKind::Scorer),
                        version: Some(s.component.version().to_string()),
                        size: Some(s.component.size()),
                        loaded_at_ms: Some(epoch_ms(s.loaded_at)),
                        active_scorer: self.active_scorer.as_deref() == Some(name.as_str()),
                        ..base
                    }
                } else {
                    base
                }
            })
            .collect()
    }

    fn lock_files(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FileState>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What came of reading and loading one changed file.
enum Attempt {
    /// The file disappeared meanwhile.
    Gone,
    /// Same bytes and manifest as last tried (only the metadata changed).
    Unchanged,
    /// The file or its manifest could not be read.
    Unreadable(LoadError),
    /// The content with this fingerprint failed to load.
    Failed {
        fingerprint: String,
        error: LoadError,
    },
    /// A new version, ready to publish.
    Loaded { fingerprint: String, loaded: Loaded },
}

/// Reads `path` (hash and manifest) and, unless its fingerprint is `known`, loads it as
/// component `name` (refused if the name is `reserved`). Blocking.
fn load_changed(
    runtime: &Runtime,
    name: &str,
    path: &Path,
    known: Option<String>,
    reserved: bool,
) -> Attempt {
    let manifest_text = match scan::read_manifest(path) {
        Ok(text) => text,
        Err(e) => {
            return Attempt::Unreadable(LoadError::Manifest(format!(
                "{}: {e}",
                path.with_extension("toml").display()
            )))
        }
    };
    let file = match runtime.hash_file(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Attempt::Gone,
        Err(e) => return Attempt::Unreadable(LoadError::Io(format!("{}: {e}", path.display()))),
    };
    let fingerprint = scan::fingerprint(&file.hash, manifest_text.as_deref());
    if known.as_deref() == Some(fingerprint.as_str()) {
        return Attempt::Unchanged;
    }
    let loaded = if !valid_plugin_name(name) {
        Err(LoadError::InvalidName(name.to_string()))
    } else if reserved {
        Err(LoadError::ReservedName(name.to_string()))
    } else {
        match manifest_text.as_deref().map(Manifest::parse).transpose() {
            Err(e) => Err(LoadError::Manifest(format!(
                "{}: {e}",
                path.with_extension("toml").display()
            ))),
            Ok(manifest) => runtime.load_file_hashed(name, path, &file, manifest),
        }
    };
    match loaded {
        Ok(loaded) => Attempt::Loaded {
            fingerprint,
            loaded,
        },
        Err(error) => Attempt::Failed { fingerprint, error },
    }
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
