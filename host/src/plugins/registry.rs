//! The set of loaded plugins, swapped atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::runtime::{valid_plugin_name, LoadError, Plugin, Runtime};

/// Whether a deployed file is serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginStatus {
    /// Loaded and serving.
    Ok,
    /// The latest file failed to load; the last good version (if any) keeps serving.
    Error,
}

/// What the admin API shows about one plugin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    /// The plugin name (URL prefix).
    pub name: String,
    /// `ok`, or `error` when the latest file failed to load.
    pub status: PluginStatus,
    /// SHA-256 of the serving version, if one serves.
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
}

/// Loaded plugins by name, plus the last load error of each file.
pub struct PluginRegistry {
    runtime: Runtime,
    dir: PathBuf,
    plugins: ArcSwap<HashMap<String, Arc<Plugin>>>,
    errors: Mutex<BTreeMap<String, String>>,
}

impl PluginRegistry {
    /// An empty registry over `dir`.
    pub fn new(runtime: Runtime, dir: impl Into<PathBuf>) -> Self {
        Self {
            runtime,
            dir: dir.into(),
            plugins: ArcSwap::from_pointee(HashMap::new()),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// The plugins folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The runtime plugins run in.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The serving version of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        self.plugins.load().get(name).cloned()
    }

    /// Loads every `*.wasm` in the folder. A file that fails keeps its error (shown by
    /// [`list`](Self::list)) and does not stop the others. Returns how many loaded.
    pub async fn load_all(&self) -> std::io::Result<usize> {
        let mut loaded = 0;
        let mut entries = tokio::fs::read_dir(&self.dir).await?;
        let mut files = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) == Some("wasm") {
                files.push(path);
            }
        }
        files.sort();
        for path in files {
            if self.load_path(&path).await.is_ok() {
                loaded += 1;
            }
        }
        Ok(loaded)
    }

    /// Loads (or reloads) one file; on failure the previous version keeps serving.
    pub async fn load_path(&self, path: &Path) -> Result<(), LoadError> {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let result = if valid_plugin_name(&name) {
            self.runtime.load_file(&name, path).await
        } else {
            Err(LoadError::InvalidName(name.clone()))
        };
        match result {
            Ok(plugin) => {
                tracing::info!(plugin = %name, version = plugin.sha256(), size = plugin.size(), "plugin loaded");
                self.publish(plugin);
                self.lock_errors().remove(&name);
                Ok(())
            }
            Err(e) => {
                tracing::error!(plugin = %name, file = %path.display(), error = %e, "plugin failed to load");
                self.lock_errors().insert(name, e.to_string());
                Err(e)
            }
        }
    }

    /// Makes `plugin` the serving version of its name (atomically; requests in flight finish
    /// on the version they started with).
    pub fn publish(&self, plugin: Plugin) {
        let plugin = Arc::new(plugin);
        self.plugins.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(plugin.name().to_string(), plugin.clone());
            next
        });
    }

    /// Stops serving `name`. Requests in flight finish on the version they hold.
    pub fn unload(&self, name: &str) -> bool {
        let mut removed = false;
        self.plugins.rcu(|current| {
            let mut next = HashMap::clone(current);
            removed = next.remove(name).is_some();
            next
        });
        self.lock_errors().remove(name);
        removed
    }

    /// Every plugin with a serving version or a load error, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        let plugins = self.plugins.load();
        let errors = self.lock_errors().clone();
        let mut names: Vec<&String> = plugins.keys().chain(errors.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let plugin = plugins.get(name);
                let error = errors.get(name).cloned();
                PluginInfo {
                    name: name.clone(),
                    status: if error.is_some() {
                        PluginStatus::Error
                    } else {
                        PluginStatus::Ok
                    },
                    version: plugin.map(|p| p.sha256().to_string()),
                    size: plugin.map(|p| p.size()),
                    loaded_at_ms: plugin.map(|p| epoch_ms(p.loaded_at())),
                    last_error: error,
                    grants: plugin.map(|p| p.grants().to_vec()).unwrap_or_default(),
                    in_flight: plugin.map(|p| p.in_flight()).unwrap_or(0),
                }
            })
            .collect()
    }

    fn lock_errors(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
