//! TinyLFU's frequency sketch, as Caffeine implements it (`FrequencySketch`, Caffeine 3): a
//! count-min sketch of 4-bit counters with periodic aging.
//!
//! The table holds `ceil_pow2(maximum)` 64-bit words (at least 8), sixteen 4-bit counters
//! each, in blocks of 8 words (one cache line); a key's four counters live in one block. Every
//! `10 × maximum` successful increments, all counters are halved (aging), so the sketch
//! estimates a key's *recent* frequency (0..=15). Hashes are 32-bit, like Java's
//! `hashCode()`; [`java_hash`] gives them for database names.
//!
//! This file has no dependency beyond `core`, so that a scorer component can include it and
//! keep exactly the reference policy's frequencies.

/// Words with the low bit of every 4-bit counter set.
const ONE_MASK: u64 = 0x1111_1111_1111_1111;
/// Words with the three low bits of every 4-bit counter set (halving mask).
const RESET_MASK: u64 = 0x7777_7777_7777_7777;

/// The hash Caffeine would see for a key: `Long.hashCode()` when the name is an integer (the
/// simulator's trace keys), else `String.hashCode()`.
pub fn java_hash(name: &str) -> i32 {
    if let Ok(v) = name.parse::<i64>() {
        let v = v as u64;
        return (v ^ (v >> 32)) as u32 as i32;
    }
    let mut h: i32 = 0;
    for unit in name.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    h
}

/// Count-min sketch of 4-bit counters with aging (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct FrequencySketch {
    table: Vec<u64>,
    sample_size: u32,
    block_mask: u32,
    size: u32,
}

fn spread(x: i32) -> i32 {
    let mut x = x as u32;
    x ^= x >> 17;
    x = x.wrapping_mul(0xed5a_d4bb);
    x ^= x >> 11;
    x = x.wrapping_mul(0xac4c_1b51);
    x ^= x >> 15;
    x as i32
}

fn rehash(x: i32) -> i32 {
    let mut x = (x as u32).wrapping_mul(0x3184_8bab);
    x ^= x >> 14;
    x as i32
}

impl FrequencySketch {
    /// An uninitialised sketch: every frequency is 0 and increments are ignored until
    /// [`ensure_capacity`](Self::ensure_capacity).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the table has been allocated.
    pub fn is_initialized(&self) -> bool {
        !self.table.is_empty()
    }

    /// Sizes the table for `maximum` entries (only grows; resets the counters when it does).
    pub fn ensure_capacity(&mut self, maximum: u64) {
        let maximum = maximum.min(u64::from(i32::MAX as u32 >> 1)) as u32;
        if self.table.len() >= maximum as usize && self.is_initialized() {
            return;
        }
        let len = maximum.max(1).next_power_of_two().max(8);
        self.table = vec![0; len as usize];
        self.sample_size = if maximum == 0 { 10 } else { 10 * maximum };
        self.block_mask = (len >> 3) - 1;
        self.size = 0;
    }

    /// Increments between two agings.
    pub fn sample_size(&self) -> u32 {
        self.sample_size
    }

    fn slots(&self, hash: i32) -> [(usize, u32); 4] {
        let block_hash = spread(hash);
        let counter_hash = rehash(block_hash) as u32;
        let block = ((block_hash as u32 & self.block_mask) << 3) as usize;
        let mut out = [(0usize, 0u32); 4];
        for (i, slot) in out.iter_mut().enumerate() {
            let h = counter_hash >> (i << 3);
            let index = (h >> 1) & 15;
            let offset = (h & 1) as usize;
            *slot = (block + offset + (i << 1), index);
        }
        out
    }

    /// The estimated recent frequency (0..=15) of the key with hash `hash`.
    pub fn frequency(&self, hash: i32) -> u32 {
        if !self.is_initialized() {
            return 0;
        }
        self.slots(hash)
            .iter()
            .map(|&(word, index)| ((self.table[word] >> (index << 2)) & 0xf) as u32)
            .min()
            .unwrap_or(0)
    }

    /// Counts one use of the key with hash `hash` (ages the sketch every `sample_size`
    /// successful increments).
    pub fn increment(&mut self, hash: i32) {
        if !self.is_initialized() {
            return;
        }
        let mut added = false;
        for (word, index) in self.slots(hash) {
            let offset = index << 2;
            let mask = 0xfu64 << offset;
            if self.table[word] & mask != mask {
                self.table[word] += 1u64 << offset;
                added = true;
            }
        }
        if added {
            self.size += 1;
            if self.size == self.sample_size {
                self.reset();
            }
        }
    }

    fn reset(&mut self) {
        let mut count = 0u32;
        for word in &mut self.table {
            count += (*word & ONE_MASK).count_ones();
            *word = (*word >> 1) & RESET_MASK;
        }
        self.size = (self.size - (count >> 2)) >> 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hashes() {
        // String.hashCode("abc") = 96354; Long.hashCode(5) = 5; Long.hashCode(-1) = 0.
        assert_eq!(java_hash("abc"), 96354);
        assert_eq!(java_hash("5"), 5);
        assert_eq!(java_hash("-1"), 0);
    }

    #[test]
    fn counts_saturate_and_age() {
        let mut s = FrequencySketch::new();
        s.increment(7);
        assert_eq!(s.frequency(7), 0, "uninitialised: nothing counted");
        s.ensure_capacity(64);
        for _ in 0..20 {
            s.increment(7);
        }
        assert_eq!(s.frequency(7), 15, "4-bit counters saturate");
        // Fill up to the sample size with other keys: the counters are halved once.
        let mut k = 1000;
        while s.frequency(7) == 15 && k < 100_000 {
            s.increment(k);
            k += 1;
        }
        assert_eq!(s.frequency(7), 7);
    }
}
