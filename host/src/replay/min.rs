//! Bélády's optimal MIN: on a miss with the cache full, close the pool whose next use is
//! farthest in the future. No policy can have more hits on the same trace when every requested
//! database must be opened (as the connection manager does).

use std::collections::BinaryHeap;
use std::time::Instant;

use super::sim::SimResult;
use super::trace::Trace;
use crate::pool::PINNED_PRIORITY;

/// Replays `trace` with capacity `capacity` under MIN. Pinned keys are never evicted (they
/// hold capacity as in the manager).
pub fn belady(trace: &Trace, capacity: usize) -> SimResult {
    belady_recording(trace, capacity, false)
}

/// [`belady`], keeping whether each request was a hit in [`SimResult::hit_flags`] when
/// `record_hits`.
pub fn belady_recording(trace: &Trace, capacity: usize, record_hits: bool) -> SimResult {
    let started = Instant::now();
    let n = trace.requests.len();
    const NEVER: usize = usize::MAX;
    let mut next = vec![NEVER; n];
    let mut seen = vec![NEVER; trace.keys()];
    for i in (0..n).rev() {
        let k = trace.requests[i] as usize;
        next[i] = seen[k];
        seen[k] = i;
    }

    let pinned = |k: usize| trace.priorities[k] == PINNED_PRIORITY;
    let mut open = vec![false; trace.keys()];
    let mut next_use = vec![NEVER; trace.keys()];
    // (next use, key), farthest first; entries go stale when a key is used again or closed.
    let mut heap: BinaryHeap<(usize, u32)> = BinaryHeap::new();
    let mut open_count = 0usize;
    let mut result = SimResult {
        requests: n as u64,
        ..SimResult::default()
    };
    for (i, &key) in trace.requests.iter().enumerate() {
        let k = key as usize;
        if record_hits {
            result.hit_flags.push(open[k]);
        }
        if open[k] {
            result.hits += 1;
        } else {
            if open_count >= capacity {
                while let Some((nu, v)) = heap.pop() {
                    let v = v as usize;
                    if open[v] && next_use[v] == nu {
                        open[v] = false;
                        open_count -= 1;
                        result.closes += 1;
                        break;
                    }
                }
            }
            open[k] = true;
            open_count += 1;
            result.opens += 1;
        }
        next_use[k] = next[i];
        if !pinned(k) {
            heap.push((next[i], key));
        }
        if heap.len() > 8 * (capacity + 1024) {
            heap.retain(|&(nu, v)| open[v as usize] && next_use[v as usize] == nu);
        }
    }
    result.elapsed = started.elapsed();
    result
}

/// Held-out LFU, an analysis aid (not a policy anyone can run): on a miss with the cache
/// full, close the pool whose database has the fewest requests in the *other half* of the
/// trace (ties to the least recently used). On a trace of independent requests with fixed
/// probabilities (the independent reference model, e.g. `2_pools`), keeping the most
/// probable keys is the best an online policy can do (Aho, Denning and Ullman's A0), and the
/// other half's counts estimate those probabilities without seeing the requests being
/// replayed (counts from the whole trace would: with ten requests per key, a key's own
/// future requests are much of its count). So on such a trace this approximates the ceiling
/// of online policies; what lies between it and MIN is clairvoyance.
pub fn held_out_lfu(trace: &Trace, capacity: usize) -> SimResult {
    let started = Instant::now();
    let half = trace.requests.len() / 2;
    let mut counts = [vec![0u64; trace.keys()], vec![0u64; trace.keys()]];
    for (i, &key) in trace.requests.iter().enumerate() {
        counts[usize::from(i >= half)][key as usize] += 1;
    }
    let pinned = |k: usize| trace.priorities[k] == PINNED_PRIORITY;
    let mut open = vec![false; trace.keys()];
    let mut last = vec![0usize; trace.keys()];
    // (count in the other half, last use, key): the first entry goes.
    let mut order: std::collections::BTreeSet<(u64, usize, u32)> = Default::default();
    let mut open_count = 0usize;
    let mut result = SimResult {
        requests: trace.requests.len() as u64,
        ..SimResult::default()
    };
    for (i, &key) in trace.requests.iter().enumerate() {
        let other = &counts[usize::from(i < half)];
        if i == half {
            // Re-rank the open pools by the first half's counts.
            order = order
                .into_iter()
                .map(|(_, at, k)| (other[k as usize], at, k))
                .collect();
        }
        let k = key as usize;
        if open[k] {
            result.hits += 1;
            if !pinned(k) {
                order.remove(&(other[k], last[k], key));
            }
        } else {
            if open_count >= capacity {
                if let Some((_, _, victim)) = order.pop_first() {
                    open[victim as usize] = false;
                    open_count -= 1;
                    result.closes += 1;
                }
            }
            open[k] = true;
            open_count += 1;
            result.opens += 1;
        }
        last[k] = i;
        if !pinned(k) {
            order.insert((other[k], i, key));
        }
    }
    result.elapsed = started.elapsed();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_lfu_keeps_the_keys_the_other_half_requests_most() {
        // Keys 0 and 1 are requested twice in each half, 2 to 5 once; 3 slots: every miss
        // after the first three closes the one-off key, never 0 or 1 (3 hits each).
        let trace = Trace::from_keys(["0", "1", "2", "0", "1", "3", "0", "1", "4", "0", "1", "5"]);
        let result = held_out_lfu(&trace, 3);
        assert_eq!(result.hits, 6);
        assert_eq!(result.opens, 6);
    }
}
