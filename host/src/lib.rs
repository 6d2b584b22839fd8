//! polymongo: a host that owns pooled MongoDB connections for many tenant databases and runs
//! tenant logic as sandboxed WebAssembly components.
//!
//! - [`pool`]: the connection manager (one pool per tenant database, eviction, priorities).

pub mod pool;
