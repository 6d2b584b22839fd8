//! The plugin registry: which tenant plugins are deployed, and their status.
//!
//! The plugins folder holds `NAME.wasm` (and optionally `NAME.toml`, its manifest). Each
//! component is compiled once; requests look plugins up by name and run on the version that
//! was current when they started.

mod registry;

pub use registry::{PluginInfo, PluginRegistry, PluginStatus};
