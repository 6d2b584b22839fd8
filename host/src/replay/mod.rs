//! Eviction replay: how well an eviction policy keeps the right pools open, without a
//! database.
//!
//! - [`generate`]: a seeded synthetic trace of tenant traffic ([`TraceSpec`]);
//! - [`read_trace`]: an external trace, one key per line (the LIRS format; `.gz` accepted);
//! - [`simulate`]: drives any [`EvictionPolicy`](crate::pool::EvictionPolicy) with capacity
//!   K the way the connection manager does;
//! - [`belady`]: Bélády's optimal MIN on the same trace, the upper bound;
//! - [`ScorerLoader`]: compiles a scorer component (`.wasm`) into policies, without a
//!   connection manager;
//! - [`Report`]: pool hit ratios, opens, closes and the share of the LRU→MIN gap each policy
//!   closes, as a markdown table.

mod file;
mod min;
mod report;
mod rng;
mod sim;
mod trace;
mod wasm;

pub use file::{read_trace, read_trace_from, write_trace};
pub use min::belady;
pub use report::{gap_closed, Report, Row};
pub use rng::Rng;
pub use sim::{simulate, SimConfig, SimResult};
pub use trace::{generate, Trace, TraceSpec};
pub use wasm::ScorerLoader;
