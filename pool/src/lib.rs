//! The connection manager: one MongoDB connection pool per tenant database.
//!
//! This layer knows MongoDB and nothing of wasm. [`PolyMongo`] keeps at most
//! `max_connections` per-database driver clients open, opens each at most once however many
//! requests ask for it at the same moment, evicts the least valuable pool (by an
//! [`EvictionPolicy`]) when a new one needs a slot, closes idle pools, and never closes a pool
//! that is pinned (priority -1), watched (a live [`KeepAlive`] or change stream) or busy
//! (a live [`Lease`]).
//!
//! ```no_run
//! # async fn demo() -> polymongo_pool::Result<()> {
//! use bson::{doc, Document};
//! use polymongo_pool::PolyMongo;
//!
//! let manager = PolyMongo::builder("mongodb://127.0.0.1:27017")
//!     .max_connections(10)
//!     .build()
//!     .await?;
//! let orders = manager.db("tenant-acme")?.collection::<Document>("orders");
//! orders.insert_one(doc! { "item": "book", "qty": 2 }).await?;
//! let open = orders.count_documents(doc! {}).await?;
//! assert_eq!(open, 1);
//! # Ok(()) }
//! ```

mod admission;
mod clients;
mod clock;
mod collection;
mod config;
mod cursor;
mod db;
mod error;
mod events;
mod feed;
mod handle;
mod index;
mod manager;
mod metadata;
pub mod name;
mod namespace;
mod oplog;
mod policy;
mod ranking;
mod recorder;
mod routing;
mod secret;
mod stats;
mod support;
mod tenants;
mod timed_writes;
mod transaction;

pub use admission::{OpenRateLimits, OpenRefused, OpenScope};
pub use clients::ClientSharing;
pub use clock::{Clock, ManualClock, SystemClock};
pub use collection::Collection;
pub use config::{Config, DEFAULT_MAX_CONNECTIONS, DEFAULT_SHARED_MAX_POOL_SIZE};
pub use cursor::{ChangeStream, Cursor};
pub use db::Db;
pub use error::{Error, Result};
pub use events::{CloseReason, PoolEvent, PoolEventKind};
pub use feed::{ChangeFeed, ChangeFeedMode};
pub use handle::{KeepAlive, Lease};
pub use index::EvictionIndex;
pub use manager::{Builder, ConsumerKey, PolyMongo, SUBSCRIPTIONS_COLLECTION};
pub use metadata::DATABASES_COLLECTION;
pub use namespace::{TenantNamespace, DEFAULT_TENANT_DB_PREFIX};
pub use oplog::{OplogFeed, OPLOG_TOKEN_FIELD, POLL_INTERVAL as OPLOG_POLL_INTERVAL};
pub use policy::{
    builtin_policy, has_stable_key, lowest_score, Choice, EvictionPolicy, LruPolicy, PoolStats,
    SeedPolicy, DEFAULT_PRIORITY, PINNED_PRIORITY,
};
pub use ranking::Ranked;
pub use recorder::AccessRecorder;
pub use routing::{RouteRule, Routes, Target};
pub use secret::{Redactor, SecretUri, MASK};
pub use stats::{ConnectionStats, ManagerStats, Protection, Usage};
pub use timed_writes::WriteOutcome;
pub use transaction::{
    Transaction, TransactionError, TransactionResult, TRANSIENT_TRANSACTION_ERROR,
    UNKNOWN_TRANSACTION_COMMIT_RESULT,
};
