//! The plugin runtime: wasmtime, the `polymongo:plugin` bindings, and the host side of the
//! WIT interfaces over the connection manager.
//!
//! Doors run one way: the gateway calls the runtime, the runtime calls the pool.

mod bindings;
mod engine;
mod error;
mod host_db;
mod host_log;
mod manifest;
mod state;

pub use bindings::exports::polymongo::plugin::handler::{Request, Response};
pub use engine::{valid_plugin_name, Plugin, Runtime, RuntimeConfig};
pub use error::{InvokeError, LoadError};
pub use manifest::{LimitOverrides, Limits, Manifest};
