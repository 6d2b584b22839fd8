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
