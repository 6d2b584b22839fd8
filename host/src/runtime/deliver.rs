//! Delivering a batch of change events to a plugin's `subscriber` export (background
//! consumers, `crate::consumers`): a fresh instance bound to the tenant's database, under the
//! same deadline (epoch interruption), memory limit and sandbox as a request.

use std::time::Instant;

use wasmtime::component::ResourceTable;

use super::engine::Runtime;
use super::error::{trap_detail, InvokeError};
use super::invoke::HOST_GRACE;
use super::load::Plugin;
use crate::pool::Db;

/// Why a delivery failed (the consumer backs off and delivers the same events again).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliverError {
    /// The plugin's `deliver` returned an error.
    #[error("the plugin refused the events: {0}")]
    Refused(String),
    /// The plugin failed to run (trap, deadline, memory limit).
    #[error(transparent)]
    Failed(#[from] InvokeError),
    /// This version of the plugin does not export `subscriber`.
    #[error("plugin {0} does not export polymongo:plugin/subscriber@0.2.0")]
    NotASubscriber(String),
}

impl DeliverError {
    /// A short, stable name of the failure (for metrics and the admin API).
    pub fn kind(&self) -> &'static str {
        match self {
            DeliverError::Refused(_) => "refused",
            DeliverError::Failed(e) => e.kind(),
            DeliverError::NotASubscriber(_) => "not_a_subscriber",
        }
    }
}

impl Runtime {
    /// Delivers `events` (BSON change events) of `subscription` for `tenant` (canonical name;
    /// `tenant_db` is its database) to `plugin`'s `subscriber.deliver`, in a fresh instance.
    /// Waits for an instance slot (the runtime's `max_instances`) rather than failing: a
    /// consumer is not in a hurry. Does not take the plugin's request permits.
    pub async fn deliver(
        &self,
        plugin: &Plugin,
        tenant_db: Db,
        tenant: &str,
        subscription: &str,
        events: &[Vec<u8>],
    ) -> Result<(), DeliverError> {
        let pre = plugin
            .subscriber
            .as_ref()
            .ok_or_else(|| DeliverError::NotASubscriber(plugin.name.to_string()))?;
        let limits = plugin.scope.limits;
        let _instance = self
            .inner
            .instances
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| InvokeError::Busy(self.inner.config.max_instances))?;
        let deadline = Instant::now() + limits.deadline;
        let mut store = self.new_store(&plugin.scope, deadline);
        store.data_mut().bind(tenant_db, tenant, deadline);
        let run = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .polymongo_plugin0_2_0_subscriber()
                .call_deliver(&mut store, tenant, subscription, events)
                .await
        };
        let outcome = tokio::time::timeout(limits.deadline + HOST_GRACE, run).await;
        store.data_mut().flush_output();
        let state = store.data();
        let timeout = || InvokeError::Timeout(limits.deadline.as_millis() as u64);
        let result = match outcome {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(message))) => Err(DeliverError::Refused(message)),
            Err(_) => Err(timeout().into()),
            Ok(Err(_)) if state.timed_out => Err(timeout().into()),
            Ok(Err(_)) if state.limiter.exceeded => {
                Err(InvokeError::MemoryLimit(limits.memory_bytes).into())
            }
            Ok(Err(e)) => {
                let detail = trap_detail(&e);
                Err(InvokeError::Trap(detail).into())
            }
        };
        // What the plugin held (cursors, streams, database handles) goes with the delivery.
        store.data_mut().table = ResourceTable::new();
        result
    }
}
