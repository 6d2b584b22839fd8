//! The `score-all` of a scorer that follows virtual caches (the replay tool's
//! [`Follower`](crate::follow::Follower)): the events go to the follower, then the answer is 0
//! for its victim and 1 for every other pool. Included (`#[path]`) by `scorer-hybrid` and
//! `scorer-adaptive`, which differ only in the caches they simulate.

use crate::exports::polymongo::plugin::scoring::{Event, EventKind, PoolStats};
use crate::follow::Follower;

/// Feeds `events` to `follower` and scores `pools`: 0 for the one to close, 1 for the others.
pub fn score_all(follower: &mut Follower, events: Vec<Event>, pools: &[PoolStats]) -> Vec<f64> {
    for event in events {
        match event.kind {
            EventKind::Opened(name) => follower.opened(event.pool_id, &name),
            EventKind::Accessed => follower.accessed(event.pool_id),
            EventKind::Closed => follower.closed(event.pool_id),
        }
    }
    let ids: Vec<u64> = pools.iter().map(|p| p.pool_id).collect();
    let victim = follower.decide(&ids);
    (0..pools.len())
        .map(|i| if Some(i) == victim { 0.0 } else { 1.0 })
        .collect()
}
