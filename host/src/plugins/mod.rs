//! The plugin registry: which components are deployed, their status, and hot reload.
//!
//! The plugins folder holds `NAME.wasm` (and optionally `NAME.toml`, its manifest). A
//! component exporting `handler` is a tenant plugin served at `/NAME/...`; one exporting
//! `scoring` is an eviction scorer. Dropping a file in deploys it, replacing it swaps versions
//! atomically (requests in flight finish on the old one), deleting it unloads it. Deploy by
//! writing `NAME.wasm.tmp` and renaming it to `NAME.wasm`.

mod registry;
mod scan;
mod watcher;

pub use registry::{ComponentKind, PluginInfo, PluginRegistry, PluginStatus, ReloadCounts};
pub use watcher::{FolderWatcher, WatchConfig};
