//! polymongo: a host that owns pooled MongoDB connections for many tenant databases and runs
//! tenant logic as sandboxed WebAssembly components.
//!
//! - [`pool`]: the connection manager (one pool per tenant database, eviction, priorities).
//! - [`runtime`]: wasmtime and the `polymongo:plugin` WIT host implementation.
//! - [`plugins`]: the registry of deployed plugins.
//! - [`gateway`]: HTTP routes to plugins, the admin API, `/metrics`, the dashboard.
//! - [`metrics`]: Prometheus metrics of the manager, the registry and plugin requests.
//! - [`replay`]: eviction replay on traces (no database), with LRU and MIN as bounds.
//! - [`config`]: the `polymongo serve` configuration file.
//! - [`logging`]: the host's log output (non-blocking, escaped).

pub mod config;
pub mod consumers;
pub mod gateway;
pub mod logging;
pub mod metrics;
pub mod plugins;
pub mod recording;
/// The connection manager, the `polymongo-pool` crate (re-exported so `polymongo::pool` keeps working).
pub use polymongo_pool as pool;
pub mod replay;
pub mod runtime;
