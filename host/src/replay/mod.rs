//! Eviction replay: how well an eviction policy keeps the right pools open, without a
//! database.
//!
//! - [`generate`]: a seeded synthetic trace of tenant traffic ([`TraceSpec`]);
//! - [`read_trace`]: an external trace, one key per line (the LIRS format; `.gz` accepted);
//! - [`simulate`]: drives any [`EvictionPolicy`](crate::pool::EvictionPolicy) with capacity
//!   K the way the connection manager does;
//! - [`belady`]: Bélády's optimal MIN on the same trace, the upper bound;
//! - [`WTinyLfuPolicy`]: W-TinyLFU with Caffeine's hill-climbing window, a reference policy
//!   ([`WTinyLfu`] the cache, [`FrequencySketch`] its sketch, [`Follower`] the adapter from
//!   the manager's pool events to a cache policy's decisions);
//! - [`ScorerLoader`]: compiles a scorer component (`.wasm`) into policies, without a
//!   connection manager;
//! - [`Suite`]: several traces at several capacities in one table, with the share of the
//!   gap closed and how each policy fares against LRU and W-TinyLFU;
//! - [`Report`]: pool hit ratios, opens, closes and the share of the LRU→MIN gap each policy
//!   closes, as a markdown table.

mod density;
mod disrupt;
mod experts;
mod file;
mod follow;
mod hyper;
mod leader;
mod lfu;
mod lirs;
mod min;
mod reference;
mod report;
mod rng;
mod s3fifo;
mod sampled;
mod sim;
mod sketch;
mod suite;
mod trace;
mod visits2;
mod vote;
mod wasm;
mod wtinylfu;

pub use density::HitDensity;
pub use disrupt::{DisruptedAt, Disruption};
pub use experts::{Arc as ArcPolicy, Expert, Lru};
pub use file::{read_trace, read_trace_from, write_trace};
pub use follow::{FastHasher, FastMap, Follower};
pub use hyper::Hyperbolic;
pub use leader::LeaderRule;
pub use lfu::PerfectLfu;
pub use lirs::Lirs;
pub use min::{belady, belady_recording, held_out_lfu};
pub use reference::{WTinyLfuPolicy, HYBRID_EXPERTS, WTINYLFU};
pub use report::{gap_closed, Report, Row};
pub use rng::Rng;
pub use s3fifo::S3Fifo;
pub use sim::{simulate, SimConfig, SimResult};
pub use sketch::{java_hash, FrequencySketch};
pub use suite::{Suite, SuiteRow, Verdict};
pub use trace::{generate, Trace, TraceSpec};
pub use visits2::{Config as Visits2Config, Visits2Expert};
pub use wasm::ScorerLoader;
pub use wtinylfu::{Region, WTinyLfu};
