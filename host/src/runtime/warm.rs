//! Instances made ahead of their requests.
//!
//! Each plugin version may keep one fresh, never-called instance ready in its own store. A
//! request takes it and binds its tenant and deadline to it before calling it; when the
//! request is done, a task makes the next one, while the host is idle. Every request still
//! runs in a store no other request has touched: the instance is only made earlier.
//!
//! Only plugins whose instantiation is slow (`RuntimeConfig::ready_threshold`, 100 µs by
//! default: JavaScript and Python components take milliseconds) are made ahead. A Rust
//! plugin instantiates in ~10 µs, about what starting the task costs; measured, making its
//! instances ahead changed nothing (docs/BENCHMARKS.md).
//!
//! Ready instances occupy slots of the pooling allocator that requests never count on: the
//! engine is sized for `max_instances` requests plus a reserve of `ready_instances`, and a
//! ready instance holds a permit of that reserve until its store is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;

use super::bindings::TenantPlugin;
use super::state::RequestState;

/// An instantiated plugin in a fresh store, not yet bound to a tenant or called.
pub(crate) struct ReadyInstance {
    /// Its store (tenant unbound).
    pub store: Store<RequestState>,
    /// The instance.
    pub instance: TenantPlugin,
    /// Its place in the reserve of ready instances, held until the store is dropped.
    pub reserve: OwnedSemaphorePermit,
}

/// The ready instance of one plugin version, and whether one is being made.
#[derive(Default)]
pub(crate) struct ReadySlot {
    ready: Mutex<Option<ReadyInstance>>,
    making: AtomicBool,
    /// Making one failed: requests of this plugin version instantiate their own.
    failing: AtomicBool,
    /// The last instantiation time seen, in µs.
    instantiate_micros: AtomicU64,
}

impl ReadySlot {
    /// Takes the ready instance, if there is one.
    pub fn take(&self) -> Option<ReadyInstance> {
        self.lock().take()
    }

    /// Whether an instance is ready now.
    pub fn is_ready(&self) -> bool {
        self.lock().is_some()
    }

    /// The right to make the next instance: `None` if one is ready or being made, or making
    /// one ever failed (an instance that cannot be made without its request, say one whose
    /// instantiation uses the database, is not retried for this plugin version).
    pub fn claim(self: &Arc<Self>) -> Option<Claim> {
        if self.failing.load(Ordering::Relaxed) {
            return None;
        }
        self.making
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        let claim = Claim { slot: self.clone() };
        // Dropping the claim releases it.
        self.lock().is_none().then_some(claim)
    }

    /// Records how long a request's instantiation of this plugin took.
    pub fn instantiated(&self, took: Duration) {
        self.instantiate_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Whether instantiating this plugin took at least `threshold` last time: then an
    /// instance made ahead is worth the task that makes it.
    pub fn slow_to_instantiate(&self, threshold: Duration) -> bool {
        self.instantiate_micros.load(Ordering::Relaxed) >= threshold.as_micros() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ReadyInstance>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The right to make a plugin's next ready instance; released when dropped.
pub(crate) struct Claim {
    slot: Arc<ReadySlot>,
}

impl Claim {
    /// Stores the instance made, which took `took` to instantiate.
    pub fn fill(self, instance: ReadyInstance, took: Duration) {
        self.slot
            .instantiate_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
        *self.slot.lock() = Some(instance);
    }

    /// The instance could not be made: no more attempts for this plugin version.
    pub fn fail(self) {
        self.slot.failing.store(true, Ordering::Relaxed);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.slot.making.store(false, Ordering::Release);
    }
}
