//! Per-tenant shares of a plugin's concurrency: one tenant may run at most
//! `max_concurrent_per_tenant` instances of a plugin at once, so that a tenant holding slow
//! requests cannot take every one of the plugin's `max_concurrent` slots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The instances each tenant runs now, for one plugin version.
#[derive(Debug, Default)]
pub(crate) struct TenantShares {
    running: Mutex<HashMap<Arc<str>, u32>>,
}

impl TenantShares {
    /// Takes one of `tenant`'s `share` slots, or `None` when the tenant already runs `share`
    /// instances. The slot is given back when the returned guard drops.
    pub fn try_acquire(self: &Arc<Self>, tenant: &str, share: u32) -> Option<TenantSlot> {
        let mut running = self.lock();
        let count = running.get(tenant).copied().unwrap_or(0);
        if count >= share {
            return None;
        }
        let key: Arc<str> = Arc::from(tenant);
        running.insert(key.clone(), count + 1);
        Some(TenantSlot {
            shares: self.clone(),
            tenant: key,
        })
    }

    /// Instances `tenant` runs now.
    pub fn running(&self, tenant: &str) -> u32 {
        self.lock().get(tenant).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, u32>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One running instance of a tenant; gives its slot back when dropped.
pub(crate) struct TenantSlot {
    shares: Arc<TenantShares>,
    tenant: Arc<str>,
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut running = self.shares.lock();
        // Entries of tenants with nothing running are removed, so the map stays as small as
        // the set of tenants with requests in flight.
        if let Some(count) = running.get_mut(&*self.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&*self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_gets_at_most_its_share_and_others_are_unaffected() {
        let shares = Arc::new(TenantShares::default());
        let a1 = shares.try_acquire("a", 2).unwrap();
        let _a2 = shares.try_acquire("a", 2).unwrap();
        assert!(shares.try_acquire("a", 2).is_none());
        let _b = shares.try_acquire("b", 2).unwrap();
        drop(a1);
        assert_eq!(shares.running("a"), 1);
        let _a3 = shares.try_acquire("a", 2).unwrap();
        assert_eq!(shares.running("a"), 2);
    }

    #[test]
    fn idle_tenants_leave_no_entry() {
        let shares = Arc::new(TenantShares::default());
        drop(shares.try_acquire("gone", 1).unwrap());
        assert!(shares.lock().is_empty());
    }
}
