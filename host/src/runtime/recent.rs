//! The components loaded most recently, kept compiled in memory by content hash.
//!
//! A redeploy of a version this process loaded a moment ago (a rollback, or the A/B flip of a
//! canary) then skips even the compile cache's deserialization, which for a large JS or
//! Python component costs a few milliseconds. Entries are cheap handles to code the engine
//! already holds while any version built from it is alive; the bound keeps retired versions
//! from accumulating.

use std::collections::VecDeque;
use std::sync::Mutex;

use wasmtime::component::Component;

use super::content_hash::ContentHash;

/// A small least-recently-used set of compiled components.
pub(crate) struct RecentComponents {
    capacity: usize,
    entries: Mutex<VecDeque<(ContentHash, Component)>>,
}

impl RecentComponents {
    /// Keeps at most `capacity` components (0 disables the set).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    /// The component compiled from bytes with `hash`, if it is among the recent ones (it
    /// becomes the most recent).
    pub fn get(&self, hash: &ContentHash) -> Option<Component> {
        let mut entries = self.lock();
        let at = entries.iter().position(|(h, _)| h == hash)?;
        let entry = entries.remove(at)?;
        let component = entry.1.clone();
        entries.push_front(entry);
        Some(component)
    }

    /// Records `component` as the most recent, dropping the least recent beyond capacity.
    pub fn insert(&self, hash: ContentHash, component: &Component) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        entries.retain(|(h, _)| *h != hash);
        entries.push_front((hash, component.clone()));
        entries.truncate(self.capacity);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(ContentHash, Component)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty component (magic, component-model version and layer), filed under the hash
    /// of `[n]`: the set is keyed by hash, so entries may share the component.
    fn component(engine: &wasmtime::Engine, n: u8) -> (ContentHash, Component) {
        const EMPTY: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        let component = Component::from_binary(engine, &EMPTY).expect("empty component");
        (ContentHash::of(&[n]), component)
    }

    #[test]
    fn keeps_the_most_recent_within_capacity() {
        let engine = wasmtime::Engine::default();
        let recent = RecentComponents::new(2);
        let (a, ca) = component(&engine, 1);
        let (b, cb) = component(&engine, 2);
        let (c, cc) = component(&engine, 3);
        recent.insert(a, &ca);
        recent.insert(b, &cb);
        assert!(recent.get(&a).is_some(), "a is now the most recent");
        recent.insert(c, &cc);
        assert!(recent.get(&b).is_none(), "b was the least recent");
        assert!(recent.get(&a).is_some());
        assert!(recent.get(&c).is_some());
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let engine = wasmtime::Engine::default();
        let recent = RecentComponents::new(0);
        let (a, ca) = component(&engine, 1);
        recent.insert(a, &ca);
        assert!(recent.get(&a).is_none());
    }
}
