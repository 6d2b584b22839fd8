//! Watching the plugins folder: file-system events are hints that trigger a rescan.
//!
//! A rename into place (`x.wasm.tmp` → `x.wasm`, the safe way to deploy), a delete or a file
//! closed after writing triggers a rescan at once; a created file or in-place writes (a copy
//! straight onto `x.wasm`) wait for the file to be closed or for a quiet period, so a
//! half-written file is rarely tried. A periodic rescan catches anything the events missed.

use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::registry::PluginRegistry;

/// Timing of the watcher.
#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    /// Quiet period after a rename, create, delete or close-after-write (default none: such a
    /// file is complete, and a later event simply triggers another, cheap, rescan).
    pub settle: Duration,
    /// Quiet period after in-place writes.
    pub write_settle: Duration,
    /// Rescan this often even without events.
    pub periodic: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            settle: Duration::ZERO,
            write_settle: Duration::from_millis(250),
            periodic: Duration::from_secs(10),
        }
    }
}

/// Keeps the folder watched; dropping it stops watching.
pub struct FolderWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FolderWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hint {
    /// The file is complete (renamed, created, deleted, closed after writing).
    Settled,
    /// The file is being written in place.
    Writing,
}

fn classify(event: &Event) -> Option<Hint> {
    let relevant = event.paths.iter().any(|p| {
        matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("wasm") | Some("toml")
        )
    });
    if !relevant {
        return None;
    }
    match event.kind {
        // A new file is usually written next: wait for its close (or for quiet).
        EventKind::Modify(ModifyKind::Data(_)) | EventKind::Create(_) => Some(Hint::Writing),
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Hint::Settled),
        EventKind::Access(_) => None,
        _ => Some(Hint::Settled),
    }
}

impl PluginRegistry {
    /// Starts watching the plugins folder; changes are loaded in the background.
    pub fn watch(self: &Arc<Self>, config: WatchConfig) -> notify::Result<FolderWatcher> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            match event {
                Ok(event) => {
                    if let Some(hint) = classify(&event) {
                        let _ = tx.send(hint);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "plugins folder watch error; the periodic rescan covers it")
                }
            }
        })?;
        watcher.watch(self.dir(), RecursiveMode::NonRecursive)?;
        let task = tokio::spawn(watch_loop(Arc::downgrade(self), rx, config));
        tracing::info!(dir = %self.dir().display(), "watching the plugins folder");
        Ok(FolderWatcher {
            _watcher: watcher,
            task,
        })
    }
}

async fn watch_loop(
    registry: std::sync::Weak<PluginRegistry>,
    mut hints: mpsc::UnboundedReceiver<Hint>,
    config: WatchConfig,
) {
    loop {
        let first = tokio::select! {
            hint = hints.recv() => match hint {
                Some(h) => Some(h),
                None => return,
            },
            _ = tokio::time::sleep(config.periodic) => None,
        };
        if let Some(mut hint) = first {
            // Take the events already queued, then wait for quiet (more events restart the
            // wait). A completed file (rename, create, delete, close) with no settle time
            // configured is loaded at once.
            while let Ok(next) = hints.try_recv() {
                hint = if next == Hint::Writing {
                    Hint::Writing
                } else {
                    hint.min_settled(next)
                };
            }
            loop {
                let quiet = if hint == Hint::Writing {
                    config.write_settle
                } else {
                    config.settle
                };
                if quiet.is_zero() {
                    break;
                }
                match tokio::time::timeout(quiet, hints.recv()).await {
                    Ok(Some(next)) => {
                        hint = if next == Hint::Writing {
                            Hint::Writing
                        } else {
                            hint.min_settled(next)
                        }
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
        }
        let Some(registry) = registry.upgrade() else {
            return;
        };
        if let Err(e) = registry.rescan().await {
            tracing::warn!(dir = %registry.dir().display(), error = %e, "cannot rescan the plugins folder");
        }
    }
}

impl Hint {
    /// After a settled event following writes, the file may still be written: keep the
    /// longer wait only while the latest event is a write.
    fn min_settled(self, next: Hint) -> Hint {
        match (self, next) {
            (_, Hint::Settled) => Hint::Settled,
            (h, Hint::Writing) => h,
        }
    }
}
