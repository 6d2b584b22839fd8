//! Tests of the follower (`follow.rs`).

use super::super::experts::Lru;
use super::*;

#[test]
fn lru_follower_evicts_least_recently_used() {
    let mut f = Follower::new(vec![Box::new(Lru::new())], LeaderRule::default());
    f.opened(1, "a");
    f.opened(2, "b");
    f.accessed(1);
    // Full at 2: b is the LRU.
    assert_eq!(f.decide(&[1, 2]), Some(1));
    f.closed(2);
    f.opened(3, "c");
    // a (used at 3) is older than c (used at 4).
    assert_eq!(f.decide(&[1, 3]), Some(0));
    // A pool never heard of goes first.
    assert_eq!(f.decide(&[1, 3, 9]), Some(2));
}

#[test]
fn switch_cost_is_the_leaders_hits_the_real_pools_missed() {
    let experts: Vec<Box<dyn Expert + Send>> = vec![Box::new(Lru::new()), Box::new(Lru::new())];
    let mut f = Follower::new(experts, LeaderRule::default());
    f.opened(1, "a");
    f.opened(2, "b");
    assert_eq!(f.decide(&[1, 2]), Some(0));
    assert_eq!(
        f.cost_per_missing_pool(),
        0.0,
        "nothing is assumed before a switch"
    );
    // A switch to an expert missing one real pool.
    f.switch_to(1, Some(1.0));
    // The real pool of a closes while the leader still holds a: reopening it is a real
    // miss the leader hits (one miss of the switch); b is a hit for both (no cost).
    f.closed(1);
    f.opened(3, "a");
    f.accessed(2);
    assert_eq!(f.cost_per_missing_pool(), 1.0);
    // A miss for both costs nothing either; a later switch missing three pools that
    // costs nothing halves the estimate: (1 + 0) / (1 + 3) per pool.
    f.opened(4, "c");
    assert_eq!(f.cost_per_missing_pool(), 1.0);
    f.switch_to(0, Some(3.0));
    assert_eq!(f.cost_per_missing_pool(), 0.25);
}
