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

/// Drives `follower` as the manager would with room for `capacity` pools: the victims it
/// chose, in order, and the hits.
fn drive(follower: &mut Follower, names: &[String], capacity: usize) -> (Vec<String>, usize) {
    let mut open: Vec<(u64, String)> = Vec::new();
    let mut next_pool = 0;
    let mut victims = Vec::new();
    let mut hits = 0;
    for name in names {
        if let Some(&(pool, _)) = open.iter().find(|(_, n)| n == name) {
            follower.accessed(pool);
            hits += 1;
            continue;
        }
        if open.len() == capacity {
            let ids: Vec<u64> = open.iter().map(|&(p, _)| p).collect();
            let i = follower.decide(&ids).expect("a victim");
            let (pool, victim) = open.remove(i);
            follower.closed(pool);
            victims.push(victim);
        }
        next_pool += 1;
        follower.opened(next_pool, name);
        open.push((next_pool, name.clone()));
    }
    (victims, hits)
}

/// Requests to 40 popular databases (a skewed choice) mixed with one-off ones: 6,000 distinct
/// names in 12,000 requests.
fn many_names() -> Vec<String> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..12_000)
        .map(|i| {
            if next() % 2 == 0 {
                let r = next() % 1_000;
                format!("hot{}", (r * r) / 25_000)
            } else {
                format!("once{i}")
            }
        })
        .collect()
}

fn exact_experts() -> Vec<Box<dyn Expert + Send>> {
    use super::super::experts::Arc;
    use super::super::lirs::Lirs;
    use super::super::wtinylfu::WTinyLfu;
    vec![
        Box::new(WTinyLfu::new(0)),
        Box::new(Lru::new()),
        Box::new(Arc::new()),
        Box::new(Lirs::new()),
    ]
}

#[test]
fn sweeping_unheld_names_bounds_the_key_numbers_and_changes_no_decision() {
    let names = many_names();
    let mut unbounded = Follower::new(exact_experts(), LeaderRule::default());
    let mut swept = Follower::new(exact_experts(), LeaderRule::default());
    swept.sweep_from(100);
    let (victims, hits) = drive(&mut unbounded, &names, 20);
    let (swept_victims, swept_hits) = drive(&mut swept, &names, 20);
    assert!(victims.len() > 5_000, "the trace makes many decisions");
    assert_eq!(swept_victims, victims);
    assert_eq!(swept_hits, hits);
    assert!(unbounded.key_numbers() > 6_000);
    // What the experts hold (20 cached per expert, ARC's and LIRS's ghosts) stays far
    // below the names seen, and so do the key numbers.
    assert!(
        swept.key_numbers() < 1_000,
        "{} key numbers",
        swept.key_numbers()
    );
    assert!(swept.names() <= swept.key_numbers());
}

#[test]
fn the_session_expert_lets_its_old_names_go_too() {
    use super::super::visits2::Visits2Expert;
    let names = many_names();
    let experts = || -> Vec<Box<dyn Expert + Send>> {
        let mut experts = exact_experts();
        experts.push(Box::new(Visits2Expert::default()));
        experts
    };
    let mut unbounded = Follower::new(experts(), LeaderRule::default());
    let mut swept = Follower::new(experts(), LeaderRule::default());
    swept.sweep_from(100);
    let (victims, hits) = drive(&mut unbounded, &names, 20);
    let (swept_victims, swept_hits) = drive(&mut swept, &names, 20);
    // Its victims could differ where ranks tie (broken by key number); on this trace none do.
    assert_eq!(swept_victims, victims);
    assert_eq!(swept_hits, hits);
    // It keeps a popularity history of closed databases, bounded by a multiple of the
    // capacity, and recent ones: more than the others, still far below the names seen.
    assert!(
        swept.key_numbers() < unbounded.key_numbers() / 2,
        "{} key numbers against {}",
        swept.key_numbers(),
        unbounded.key_numbers()
    );
}
