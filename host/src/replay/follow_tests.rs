//! Tests of the follower (`follow.rs`).

use super::super::experts::Lru;
use super::super::reference::WTinyLfuPolicy;
use super::super::rng::Rng;
use super::super::sim::{simulate, SimConfig, SimResult};
use super::super::trace::Trace;
use super::*;
use crate::pool::DEFAULT_PRIORITY;

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

/// Requests to 40 popular databases (a skewed choice) mixed with one-off ones: about 6,000
/// distinct names in 12,000 requests.
fn many_names() -> Trace {
    let mut rng = Rng::new(7);
    let mut keys: FastMap<String, u32> = FastMap::default();
    let mut trace = Trace {
        names: Vec::new(),
        priorities: Vec::new(),
        requests: Vec::new(),
    };
    for i in 0..12_000 {
        let name = if rng.below(2) == 0 {
            let r = rng.below(1_000);
            format!("hot{}", (r * r) / 25_000)
        } else {
            format!("once{i}")
        };
        let key = *keys.entry(name.clone()).or_insert_with(|| {
            trace.names.push(name.as_str().into());
            trace.priorities.push(DEFAULT_PRIORITY);
            (trace.names.len() - 1) as u32
        });
        trace.requests.push(key);
    }
    trace
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

/// Replays `trace` as the manager would, with room for 20 pools, following `experts`
/// (sweeping from `sweep_from` names when given): the result, with its victims, the key
/// numbers the follower gave, and the names that have one now.
fn replay(
    trace: &Trace,
    experts: Vec<Box<dyn Expert + Send>>,
    sweep_from: Option<usize>,
) -> (SimResult, usize, usize) {
    let policy = WTinyLfuPolicy::following(experts, LeaderRule::default());
    if let Some(names) = sweep_from {
        policy.with(|f| f.sweep_from(names));
    }
    let mut config = SimConfig::new(20);
    config.record_victims = true;
    let result = simulate(trace, &policy, &config);
    let (numbers, names) = policy.with(|f| (f.key_numbers(), f.names()));
    (result, numbers, names)
}

#[test]
fn sweeping_unheld_names_bounds_the_key_numbers_and_changes_no_decision() {
    let trace = many_names();
    let (unbounded, unbounded_numbers, _) = replay(&trace, exact_experts(), None);
    let (swept, swept_numbers, swept_names) = replay(&trace, exact_experts(), Some(100));
    assert!(
        unbounded.victims.len() > 5_000,
        "the trace makes many decisions"
    );
    assert_eq!(swept.victims, unbounded.victims);
    assert_eq!(swept.hits, unbounded.hits);
    // Without sweeps every name seen keeps a number of its own.
    assert!(trace.keys() > 5_000);
    assert_eq!(unbounded_numbers, trace.keys());
    // What the experts hold (20 cached per expert, ARC's and LIRS's ghosts) stays far
    // below the names seen, and so do the key numbers.
    assert!(swept_numbers < 1_000, "{swept_numbers} key numbers");
    assert!(swept_names <= swept_numbers);
}

#[test]
fn the_session_expert_lets_its_old_names_go_too() {
    use super::super::visits2::Visits2Expert;
    let trace = many_names();
    let experts = || -> Vec<Box<dyn Expert + Send>> {
        let mut experts = exact_experts();
        experts.push(Box::new(Visits2Expert::default()));
        experts
    };
    let (unbounded, unbounded_numbers, _) = replay(&trace, experts(), None);
    let (swept, swept_numbers, _) = replay(&trace, experts(), Some(100));
    // Its victims could differ where ranks tie (broken by key number); on this trace none do.
    assert_eq!(swept.victims, unbounded.victims);
    assert_eq!(swept.hits, unbounded.hits);
    // It keeps a popularity history of closed databases, bounded by a multiple of the
    // capacity, and recent ones: more than the others, still far below the names seen.
    assert!(
        swept_numbers < unbounded_numbers / 2,
        "{swept_numbers} key numbers against {unbounded_numbers}"
    );
}

#[test]
fn the_sweep_is_spread_over_new_names_and_keeps_the_key_numbers_bounded() {
    // 20 open pools, an LRU expert (which knows only what it caches), a stream of new
    // databases: every decision closes the oldest pool and opens a new name.
    let mut f = Follower::new(vec![Box::new(Lru::new())], LeaderRule::default());
    f.sweep_from(100);
    let mut open: std::collections::VecDeque<u64> = (0..20).collect();
    for pool in 0..20 {
        f.opened(pool, &format!("db{pool}"));
    }
    let mut most_freed_by_one_name = 0;
    let mut most_numbers = 0;
    for pool in 20..20_000u64 {
        let offered: Vec<u64> = open.iter().copied().collect();
        let victim = f.decide(&offered).expect("pools are offered");
        assert_eq!(victim, 0, "LRU closes the oldest pool");
        let closed = open.pop_front().expect("a pool is open");
        f.closed(closed);
        let names_before = f.names();
        f.opened(pool, &format!("db{pool}"));
        open.push_back(pool);
        // Names only go by the sweep: one new name lets at most SWEEP_STEP go, so no call
        // does a whole sweep at once.
        most_freed_by_one_name = most_freed_by_one_name.max((names_before + 1) - f.names());
        most_numbers = most_numbers.max(f.key_numbers());
    }
    assert!(most_freed_by_one_name >= 1, "the sweep freed names");
    assert!(most_freed_by_one_name <= keys::SWEEP_STEP);
    // 20,000 names seen, 20 held: the numbers stay near where the sweep starts.
    assert!(most_numbers <= 200, "{most_numbers} key numbers");
    assert_eq!(f.names(), f.key_numbers() - f.names.free.len());
}

/// The five experts of `scorer-hybrid`.
fn hybrid_experts() -> Vec<Box<dyn Expert + Send>> {
    use super::super::visits2::Visits2Expert;
    let mut experts = exact_experts();
    experts.push(Box::new(Visits2Expert::default()));
    experts
}

/// 300 pools opened, then 4,700 operations on them (a skewed choice): 5,000 requests
/// recorded before the first decision. Returns the pools, in order of opening.
fn record_before_the_first_decision(f: &mut Follower) -> Vec<u64> {
    let pools: Vec<u64> = (0..300).collect();
    for &pool in &pools {
        f.opened(pool, &format!("db{pool}"));
    }
    let mut rng = Rng::new(11);
    for _ in 0..4_700 {
        let r = rng.below(300);
        f.accessed(((r * r) / 300) as u64);
    }
    pools
}

/// The names each expert of `f` holds (cached, or a ghost the expert reports as held).
fn held_names(f: &Follower) -> Vec<Vec<String>> {
    (0..f.experts.len())
        .map(|e| {
            let mut names: Vec<String> = (0..f.key_numbers() as u32)
                .filter(|&k| f.holds(e, k))
                .filter_map(|k| f.names.name_of[k as usize].as_deref().map(String::from))
                .collect();
            names.sort();
            names
        })
        .collect()
}

/// Two followers of the five experts with the same record before their first decision: one
/// replaying it at once, one `step` requests per call. Returns them and the open pools.
fn whole_and_stepped(step: usize) -> (Follower, Follower, Vec<u64>) {
    let mut whole = Follower::new(hybrid_experts(), LeaderRule::default());
    whole.set_warm_up_step(usize::MAX);
    let mut stepped = Follower::new(hybrid_experts(), LeaderRule::default());
    stepped.set_warm_up_step(step);
    let open = record_before_the_first_decision(&mut whole);
    record_before_the_first_decision(&mut stepped);
    (whole, stepped, open)
}

#[test]
fn a_long_warm_up_is_spread_over_calls_and_ends_as_one_replay_would() {
    let (mut whole, mut stepped, offered) = whole_and_stepped(1_000);

    // The first decision replays 1,000 of the 5,000 recorded requests and, until the rest
    // are replayed, closes the least recently used pool.
    let lru = stepped.oldest(&(0..300).collect::<Vec<u32>>(), |_| true);
    assert_eq!(stepped.decide(&offered), lru);
    assert!(stepped.warming());
    // Calls with events only (deliveries) go on with it, 1,000 at a time.
    for _ in 0..3 {
        assert_eq!(stepped.decide(&[]), None);
        assert!(stepped.warming());
    }
    assert_eq!(stepped.decide(&[]), None);
    assert!(!stepped.warming(), "5,000 requests in five steps");
    assert!(stepped.history.is_empty(), "the record is let go");

    // From there on the two make the same decisions (neither first victim is closed).
    assert!(whole.decide(&offered).is_some());
    assert_eq!(held_names(&whole), held_names(&stepped));
    let mut open = offered;
    let mut rng = Rng::new(5);
    for next in 300..3_300u64 {
        let a = whole.decide(&open).expect("pools are offered");
        let b = stepped.decide(&open).expect("pools are offered");
        assert_eq!(a, b, "decision {next}");
        let closed = open.swap_remove(a);
        let name = format!("db{}", rng.below(2_000));
        for f in [&mut whole, &mut stepped] {
            f.closed(closed);
            f.opened(next, &name);
        }
        open.push(next);
    }
}

#[test]
fn requests_during_the_warm_up_queue_behind_the_recorded_ones() {
    let (mut whole, mut stepped, mut open) = whole_and_stepped(500);

    // The one-off replay decides once before the new requests; the stepped one decides
    // before each new database (closing its LRU pool while it warms up), replaying 500
    // recorded requests each time. After each decision: a new database and five operations
    // on open pools chosen uniformly (many of them untouched since they opened, so an
    // operation fed out of turn would change every expert's order).
    assert!(whole.decide(&open).is_some());
    let mut rng = Rng::new(3);
    let mut decisions = 0;
    let mut next = 300u64;
    while stepped.warming() || decisions == 0 {
        let victim = stepped.decide(&open).expect("pools are offered");
        decisions += 1;
        let closed = open.swap_remove(victim);
        let used: Vec<u64> = (0..5).map(|_| open[rng.below(open.len())]).collect();
        for f in [&mut whole, &mut stepped] {
            f.closed(closed);
            f.opened(next, &format!("new{next}"));
            for &pool in &used {
                f.accessed(pool);
            }
        }
        open.push(next);
        next += 1;
    }
    // 5,000 recorded and 6 more after each decision, 500 replayed per decision: the 11th
    // replays the last (5,000 + 6 × 10 ≤ 500 × 11).
    assert_eq!(decisions, 11);
    // Nothing was lost or reordered: every expert holds what the one-off replay's holds.
    assert_eq!(held_names(&whole), held_names(&stepped));
}

#[test]
fn no_recorded_name_is_swept_before_the_warm_up_replays_it() {
    // Sweeping from 100 names. Before the first decision: 50 pools opened and 6,000
    // operations on them, then 1,000 databases opened and closed (an idle timeout closes
    // pools before any eviction): their names are only in the record, held by nothing until
    // the warm-up replays them, 30 decisions in.
    let followers = || {
        let mut f = Follower::new(exact_experts(), LeaderRule::default());
        f.sweep_from(100);
        f
    };
    let mut whole = followers();
    whole.set_warm_up_step(usize::MAX);
    let mut stepped = followers();
    stepped.set_warm_up_step(200);
    for f in [&mut whole, &mut stepped] {
        for pool in 1_000..1_050u64 {
            f.opened(pool, &format!("db{pool}"));
        }
        for i in 0..6_000u64 {
            f.accessed(1_000 + i % 50);
        }
        for pool in 0..1_000u64 {
            f.opened(pool, &format!("gone{pool}"));
            f.accessed(pool);
            f.closed(pool);
        }
    }
    let mut open: Vec<u64> = (1_000..1_050).collect();
    assert!(whole.decide(&open).is_some());
    // Each new database moves the sweep cursor (a sweep during the warm-up would free the
    // recorded names and give their numbers to these).
    let mut next = 1_050u64;
    while stepped.warming() || next == 1_050 {
        let victim = stepped.decide(&open).expect("pools are offered");
        let closed = open.swap_remove(victim);
        for f in [&mut whole, &mut stepped] {
            f.closed(closed);
            f.opened(next, &format!("new{next}"));
        }
        open.push(next);
        next += 1;
    }
    assert!(next > 1_080, "the warm-up took more than 30 decisions");
    assert_eq!(held_names(&whole), held_names(&stepped));
}
