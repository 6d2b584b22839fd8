//! The plugin runtime: wasmtime, the `polymongo:plugin` bindings, and the host side of the
//! WIT interfaces over the connection manager.
//!
//! Doors run one way: the gateway calls the runtime, the runtime calls the pool.

mod batch;
mod bindings;
mod bson_scan;
mod compile_cache;
mod content_hash;
mod convert;
mod deliver;
mod engine;
mod error;
mod fairness;
mod host_db;
mod host_error;
mod host_log;
mod input;
#[cfg(test)]
mod input_fuzz;
mod invoke;
mod load;
mod log_limit;
mod manifest;
mod recent;
mod sandbox;
mod scorer;
mod scorer_flight;
mod scorer_jobs;
mod scorer_times;
mod scorer_worker;
mod state;
mod streams;
mod subscription;
mod transactions;
mod tx_options;
mod warm;

pub use bindings::tenant::exports::polymongo::plugin0_1_0::handler::{Request, Response};
pub use content_hash::{ContentHash, Probe};
pub use deliver::DeliverError;
pub use engine::{new_engine, spawn_epoch_ticker, Runtime, RuntimeConfig};
pub use error::{InvokeError, LoadError};
pub use invoke::InvokeTimings;
pub use load::{valid_plugin_name, HashedFile, Loaded, Plugin};
pub use log_limit::{LogLimiter, LogLimits};
pub use manifest::{LimitOverrides, Limits, Manifest};
pub use scorer::{ScorerComponent, ScorerLimits, WasmScorer, DELIVER_AHEAD_EVENTS};
pub use subscription::{ResolvedSubscription, Subscription};
