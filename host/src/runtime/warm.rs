//! Instances made ahead of their requests.
//!
//! Each plugin version may keep one fresh, never-called instance ready in its own store. A
//! request takes it and binds its tenant and deadline to it before calling it; when the
//! request is done, a task tears its store down and makes the next one while the host is
//! idle. Every request still runs in a store no other request has touched: the instance is
//! only made earlier.
//!
//! When requests of a plugin follow each other so closely that one arrives while its instance
//! is still being made, the task would only compete with them for the cores (and their
//! database): the plugin then skips making instances ahead for its next
//! [`SKIP_AFTER_A_MISS`] requests.
//!
//! Ready instances occupy slots of the pooling allocator that requests never count on: the
//! engine is sized for `max_instances` requests plus a reserve of `ready_instances`, and a
//! ready instance holds a permit of that reserve until its store is dropped.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;

use super::bindings::TenantPlugin;
use super::state::RequestState;

/// Requests of a plugin after which none is made ahead, once a request came while its
/// instance was still being made.
const SKIP_AFTER_A_MISS: u32 = 16;

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
    /// Requests after which no instance is made ahead (set when a request came while its
    /// instance was still being made).
    skip: AtomicU32,
}

impl ReadySlot {
    /// Takes the ready instance, if there is one.
    pub fn take(&self) -> Option<ReadyInstance> {
        let taken = self.lock().take();
        if taken.is_none() && self.making.load(Ordering::Acquire) {
            // The request came while its instance was still being made: requests follow each
            // other closely, and making instances ahead would only compete with them.
            self.skip.store(SKIP_AFTER_A_MISS, Ordering::Relaxed);
        }
        taken
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

    /// Whether to make the next instance ahead now that a request is done: not if a request
    /// recently came while its instance was still being made (requests then follow each
    /// other too closely to gain from it, and making instances would compete with them).
    pub fn worth_making(&self) -> bool {
        let skip = self.skip.load(Ordering::Relaxed);
        if skip > 0 {
            self.skip.store(skip - 1, Ordering::Relaxed);
            return false;
        }
        true
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
    /// Stores the instance made.
    pub fn fill(self, instance: ReadyInstance) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_arriving_while_its_instance_is_made_pauses_making_ahead() {
        let slot = Arc::new(ReadySlot::default());
        assert!(slot.worth_making(), "instances are made ahead at first");
        let claim = slot.claim().expect("nothing is ready or being made");
        assert!(slot.claim().is_none(), "one instance is made at a time");
        assert!(
            slot.take().is_none(),
            "a request came while it was being made"
        );
        drop(claim);
        for _ in 0..SKIP_AFTER_A_MISS {
            assert!(!slot.worth_making());
        }
        assert!(slot.worth_making(), "and then again");
        assert!(slot.claim().is_some(), "a dropped claim is released");
    }

    #[test]
    fn a_failed_attempt_stops_making_ahead_for_the_version() {
        let slot = Arc::new(ReadySlot::default());
        slot.claim().expect("claim").fail();
        assert!(slot.claim().is_none());
        assert!(slot.take().is_none());
    }
}
