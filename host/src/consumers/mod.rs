//! Background consumers: long-lived change-stream subscriptions that the host runs for
//! plugins, one per (plugin, subscription, tenant) their manifests declare
//! (`[[subscriptions]]`, see `runtime::Subscription`).
//!
//! - delivery is **at least once**: the resume token after a batch is stored in the metadata
//!   database (`subscriptions` collection) only once the plugin's `deliver` acknowledged it;
//! - a failed delivery or a broken stream **backs off** exponentially
//!   (`consumers.backoff_min_ms` .. `consumers.backoff_max_ms`) and delivers the same events
//!   again;
//! - a tenant runs at most `limits.max_subscriptions_per_tenant` consumers (over all plugins);
//!   the rest are **refused**, logged and shown in `GET /admin/consumers`;
//! - on a **hot reload** each delivery goes to the serving version (the one in flight finishes
//!   on its version); a version that changes a subscription (collection, pipeline, ...)
//!   replaces its consumers, which continue from the stored token; removing the plugin stops
//!   them.
//!
//! The change stream holds a keep-alive guard of the tenant's pool, so a consumer's pool is
//! watch-protected from eviction while the consumer runs.
//!
//! [`board`] holds what the admin API and the metrics show, [`consumer`] one consumer's loop,
//! [`supervisor`] the reconciliation.

mod board;
mod consumer;
mod supervisor;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use board::{ConsumerBoard, ConsumerInfo, ConsumerState, DeliveryCounts};

use crate::plugins::PluginRegistry;

/// Settings of the background consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumersConfig {
    /// Most events per delivery (`consumers.max_batch`, default 100).
    pub max_batch: u32,
    /// First wait after a failure (`consumers.backoff_min_ms`, default 500 ms).
    pub backoff_min: Duration,
    /// Longest wait between tries (`consumers.backoff_max_ms`, default 60 s).
    pub backoff_max: Duration,
    /// Consumers one tenant may run at once over all plugins
    /// (`limits.max_subscriptions_per_tenant`, default 4).
    pub max_per_tenant: u32,
}

impl Default for ConsumersConfig {
    fn default() -> Self {
        Self {
            max_batch: 100,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            max_per_tenant: 4,
        }
    }
}

/// The running supervisor of background consumers.
pub struct Consumers {
    board: Arc<ConsumerBoard>,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Consumers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumers").finish_non_exhaustive()
    }
}

impl Consumers {
    /// Starts the supervisor over `registry`'s plugins (on the current tokio runtime). Its
    /// state is shown through `registry.consumer_board()`.
    pub fn start(registry: Arc<PluginRegistry>, config: ConsumersConfig) -> Self {
        let board = registry.consumer_board().clone();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(consumer::Context {
            registry,
            config,
            board: board.clone(),
        });
        let task = tokio::spawn(supervisor::supervise(ctx, shutdown_rx));
        Self {
            board,
            shutdown,
            task: Mutex::new(Some(task)),
        }
    }

    /// What the consumers are doing.
    pub fn board(&self) -> &Arc<ConsumerBoard> {
        &self.board
    }

    /// Stops every consumer (a delivery in flight finishes first; its batch is acknowledged
    /// and its token stored, or it is delivered again after a restart) and waits for them.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for Consumers {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
