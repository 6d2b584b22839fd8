//! What the admin API and the metrics show of background consumers: one entry per
//! (plugin, subscription, tenant), and totals since start.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::pool::ConsumerKey;

/// What a consumer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsumerState {
    /// Opening its change stream (or waiting for the consumer it replaces to finish).
    Starting,
    /// Reading events and delivering them.
    Running,
    /// A delivery or the change stream failed; it waits before trying again.
    BackingOff,
    /// Not run: its tenant already has `limits.max_subscriptions_per_tenant` consumers.
    Refused,
}

impl ConsumerState {
    /// Every state, for metrics that show zeros rather than absent series.
    pub const ALL: [ConsumerState; 4] = [
        ConsumerState::Starting,
        ConsumerState::Running,
        ConsumerState::BackingOff,
        ConsumerState::Refused,
    ];

    /// The state's name (as in the admin API).
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerState::Starting => "starting",
            ConsumerState::Running => "running",
            ConsumerState::BackingOff => "backing-off",
            ConsumerState::Refused => "refused",
        }
    }
}

/// One consumer as `GET /admin/consumers` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsumerInfo {
    /// The plugin.
    pub plugin: String,
    /// The subscription (from the plugin's manifest).
    pub subscription: String,
    /// The tenant (canonical name).
    pub tenant: String,
    /// The collection watched in the tenant's database.
    pub collection: String,
    /// What it is doing.
    pub state: ConsumerState,
    /// Events delivered (acknowledged by the plugin) since the host started.
    pub delivered: u64,
    /// Successful deliveries (batches) since the host started.
    pub deliveries: u64,
    /// Failed deliveries and change-stream errors since the host started.
    pub failures: u64,
    /// The latest error (kept after a recovery, with `last_error_at_ms`).
    pub last_error: Option<String>,
    /// When the latest error happened (epoch ms).
    pub last_error_at_ms: Option<u64>,
    /// While backing off: the wait before the next try, in ms.
    pub retry_in_ms: Option<u64>,
    /// Version (hex BLAKE3) of the plugin that took the latest delivery.
    pub version: Option<String>,
    /// Since when it is in `state` (epoch ms).
    pub since_ms: u64,
}

/// Outcomes of deliveries, for `polymongo_consumer_deliveries_total{outcome}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    /// Deliveries the plugin acknowledged.
    pub ok: u64,
    /// Deliveries that failed (refused by the plugin, trap, deadline, memory).
    pub failed: u64,
    /// Events in acknowledged deliveries.
    pub events: u64,
}

/// The consumers' entries and totals, shared by the supervisor, its tasks, the admin API and
/// the metrics.
#[derive(Debug, Default)]
pub struct ConsumerBoard {
    entries: Mutex<BTreeMap<ConsumerKey, ConsumerInfo>>,
    ok: AtomicU64,
    failed: AtomicU64,
    events: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl ConsumerBoard {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<ConsumerKey, ConsumerInfo>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every consumer, ordered by plugin, subscription and tenant.
    pub fn list(&self) -> Vec<ConsumerInfo> {
        self.lock().values().cloned().collect()
    }

    /// The entry of `key`, if the host knows that consumer.
    pub fn get(&self, key: &ConsumerKey) -> Option<ConsumerInfo> {
        self.lock().get(key).cloned()
    }

    /// Consumers per state (every state present).
    pub fn states(&self) -> BTreeMap<ConsumerState, u64> {
        let mut out: BTreeMap<ConsumerState, u64> =
            ConsumerState::ALL.iter().map(|s| (*s, 0)).collect();
        for info in self.lock().values() {
            *out.entry(info.state).or_default() += 1;
        }
        out
    }

    /// Delivery totals since start.
    pub fn deliveries(&self) -> DeliveryCounts {
        DeliveryCounts {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
        }
    }

    /// Sets `key`'s state (creating its entry), returning the previous state. For the
    /// supervisor, which decides which consumers exist.
    pub(super) fn set_state(
        &self,
        key: &ConsumerKey,
        collection: &str,
        state: ConsumerState,
        error: Option<String>,
    ) -> Option<ConsumerState> {
        let mut entries = self.lock();
        let now = now_ms();
        let previous = entries.get(key).map(|e| e.state);
        let entry = entries.entry(key.clone()).or_insert_with(|| ConsumerInfo {
            plugin: key.plugin.clone(),
            subscription: key.subscription.clone(),
            tenant: key.tenant.clone(),
            collection: collection.to_string(),
            state,
            delivered: 0,
            deliveries: 0,
            failures: 0,
            last_error: None,
            last_error_at_ms: None,
            retry_in_ms: None,
            version: None,
            since_ms: now,
        });
        if entry.state != state {
            entry.state = state;
            entry.since_ms = now;
        }
        entry.collection = collection.to_string();
        if state != ConsumerState::BackingOff {
            entry.retry_in_ms = None;
        }
        if let Some(error) = error {
            entry.last_error = Some(error);
            entry.last_error_at_ms = Some(now);
        }
        previous
    }

    /// Marks a known consumer running (its stream open), optionally noting an error; a
    /// consumer the supervisor has forgotten meanwhile stays forgotten.
    pub(super) fn running(&self, key: &ConsumerKey, error: Option<String>) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(key) {
            let now = now_ms();
            if entry.state != ConsumerState::Running {
                entry.state = ConsumerState::Running;
                entry.since_ms = now;
            }
            entry.retry_in_ms = None;
            if let Some(error) = error {
                entry.last_error = Some(error);
                entry.last_error_at_ms = Some(now);
            }
        }
    }

    /// Records a delivery of `events` events the plugin (version `version`) acknowledged.
    pub(super) fn delivered(&self, key: &ConsumerKey, events: usize, version: &str) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(key) {
            entry.delivered += events as u64;
            entry.deliveries += 1;
            entry.version = Some(version.to_string());
            if entry.state != ConsumerState::Running {
                entry.state = ConsumerState::Running;
                entry.since_ms = now_ms();
                entry.retry_in_ms = None;
            }
        }
    }

    /// Records a failure (a delivery when `delivery`, else the change stream) and the
    /// back-off that follows it.
    pub(super) fn failed(&self, key: &ConsumerKey, error: &str, delivery: bool, retry_in_ms: u64) {
        if delivery {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(key) {
            let now = now_ms();
            entry.failures += 1;
            entry.last_error = Some(error.to_string());
            entry.last_error_at_ms = Some(now);
            entry.retry_in_ms = Some(retry_in_ms);
            if entry.state != ConsumerState::BackingOff {
                entry.state = ConsumerState::BackingOff;
                entry.since_ms = now;
            }
        }
    }

    /// Forgets consumers for which `keep` is false.
    pub(super) fn retain(&self, mut keep: impl FnMut(&ConsumerKey) -> bool) {
        self.lock().retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_made_by_the_supervisor_and_only_updated_by_consumers() {
        let board = ConsumerBoard::default();
        let key = ConsumerKey::new("p", "s", "t");
        // A consumer cannot bring back an entry the supervisor forgot.
        board.running(&key, None);
        board.delivered(&key, 3, "v1");
        assert!(board.list().is_empty());
        assert_eq!(board.deliveries().events, 3);

        assert_eq!(
            board.set_state(&key, "c", ConsumerState::Starting, None),
            None
        );
        board.running(&key, None);
        board.failed(&key, "boom", true, 500);
        let info = board.get(&key).expect("known");
        assert_eq!(info.state, ConsumerState::BackingOff);
        assert_eq!(info.retry_in_ms, Some(500));
        assert_eq!(info.last_error.as_deref(), Some("boom"));
        board.delivered(&key, 2, "v2");
        let info = board.get(&key).expect("known");
        assert_eq!(
            (info.state, info.delivered, info.failures, info.retry_in_ms),
            (ConsumerState::Running, 2, 1, None)
        );
        assert_eq!(info.version.as_deref(), Some("v2"));
        let states = board.states();
        assert_eq!(states[&ConsumerState::Running], 1);
        assert_eq!(states[&ConsumerState::Refused], 0);
        assert_eq!(
            board.deliveries(),
            DeliveryCounts {
                ok: 2,
                failed: 1,
                events: 5
            }
        );
        board.retain(|_| false);
        assert!(board.list().is_empty());
    }
}
