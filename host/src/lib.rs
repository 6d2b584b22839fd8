//! polymongo: a host that owns pooled MongoDB connections for many tenant databases and runs
//! tenant logic as sandboxed WebAssembly components.
//!
//! - [`pool`]: the connection manager (one pool per tenant database, eviction, priorities).
//! - [`runtime`]: wasmtime and the `polymongo:plugin` WIT host implementation.
//! - [`plugins`]: the registry of deployed plugins.
//! - [`gateway`]: HTTP routes to plugins, the admin API.
//! - [`config`]: the `polymongo serve` configuration file.

pub mod config;
pub mod gateway;
pub mod plugins;
pub mod pool;
pub mod runtime;
