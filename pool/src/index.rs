//! An ordered index of open pools by a policy's stable key, for fast victim choice.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A total order on `f64` keys (NaN sorts last, so it is never picked before a real score).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Key(f64);

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self.0.is_nan(), other.0.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            (false, false) => self.0.total_cmp(&other.0),
        }
    }
}

/// Open pools ordered by (stable key, open sequence): the first evictable entry is the victim
/// (lowest score; ties to the pool opened earliest, which has the smaller sequence number).
#[derive(Debug, Default)]
pub struct EvictionIndex {
    entries: BTreeMap<(Key, u64), Arc<str>>,
}

impl EvictionIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of indexed pools.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no pool is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a pool with its key and open sequence number.
    pub fn insert(&mut self, key: f64, seq: u64, name: Arc<str>) {
        self.entries.insert((Key(key), seq), name);
    }

    /// Removes the pool indexed under `(key, seq)`.
    pub fn remove(&mut self, key: f64, seq: u64) {
        self.entries.remove(&(Key(key), seq));
    }

    /// Moves a pool from its old key to a new one.
    pub fn update(&mut self, old_key: f64, new_key: f64, seq: u64) {
        if old_key.to_bits() == new_key.to_bits() {
            return;
        }
        if let Some(name) = self.entries.remove(&(Key(old_key), seq)) {
            self.entries.insert((Key(new_key), seq), name);
        }
    }

    /// The lowest-ranked pool for which `evictable` holds.
    pub fn choose(&self, mut evictable: impl FnMut(&str) -> bool) -> Option<Arc<str>> {
        self.entries.values().find(|name| evictable(name)).cloned()
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_lowest_key_then_oldest() {
        let mut index = EvictionIndex::new();
        index.insert(5.0, 1, "b".into());
        index.insert(1.0, 3, "c".into());
        index.insert(1.0, 2, "a".into());
        assert_eq!(index.choose(|_| true).as_deref(), Some("a"));
        assert_eq!(index.choose(|n| n != "a").as_deref(), Some("c"));
        index.update(1.0, 9.0, 2);
        assert_eq!(index.choose(|_| true).as_deref(), Some("c"));
        index.remove(1.0, 3);
        assert_eq!(index.choose(|_| true).as_deref(), Some("b"));
        assert_eq!(index.choose(|_| false), None);
    }

    #[test]
    fn nan_keys_sort_last() {
        let mut index = EvictionIndex::new();
        index.insert(f64::NAN, 1, "nan".into());
        index.insert(1e300, 2, "big".into());
        assert_eq!(index.choose(|_| true).as_deref(), Some("big"));
    }
}
