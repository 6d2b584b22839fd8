//! Per-tenant shares of a plugin's concurrency: one tenant may run at most
//! `max_concurrent_per_tenant` instances of a plugin at once, so that a tenant holding slow
//! requests cannot take every one of the plugin's `max_concurrent` slots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Tenant names come from HTTP clients: a seeded hash (foldhash, as hashbrown's default), fast
/// on short keys, so that no client can choose names that collide.
type Map = HashMap<Arc<str>, u32, foldhash::fast::RandomState>;

/// The instances each tenant runs now, for one plugin version.
#[derive(Debug, Default)]
pub(crate) struct TenantShares {
    running: Mutex<Map>,
}

impl TenantShares {
    /// Takes one of `tenant`'s `share` slots, or `None` when the tenant already runs `share`
    /// instances. The slot is given back when the returned guard drops. `tenant` is the
    /// tenant's database name, shared (no copy per request).
    pub fn try_acquire(self: &Arc<Self>, tenant: Arc<str>, share: u32) -> Option<TenantSlot> {
        if share == 0 {
            return None;
        }
        let mut running = self.lock();
        let count = running.entry(tenant.clone()).or_insert(0);
        if *count >= share {
            return None;
        }
        *count += 1;
        Some(TenantSlot {
            shares: self.clone(),
            tenant,
        })
    }

    /// Instances `tenant` runs now.
    pub fn running(&self, tenant: &str) -> u32 {
        self.lock().get(tenant).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
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
        let a1 = shares.try_acquire("a".into(), 2).unwrap();
        let _a2 = shares.try_acquire("a".into(), 2).unwrap();
        assert!(shares.try_acquire("a".into(), 2).is_none());
        let _b = shares.try_acquire("b".into(), 2).unwrap();
        drop(a1);
        assert_eq!(shares.running("a"), 1);
        let _a3 = shares.try_acquire("a".into(), 2).unwrap();
        assert_eq!(shares.running("a"), 2);
    }

    #[test]
    fn idle_tenants_leave_no_entry() {
        let shares = Arc::new(TenantShares::default());
        drop(shares.try_acquire("gone".into(), 1).unwrap());
        assert!(shares.lock().is_empty());
    }
}
