//! How the host calls a wasm eviction scorer (issue #13, item 11; the event delivery of
//! issue #15): a slow call does not erase what the scorer learnt, a trapped instance is
//! rebuilt from the events its predecessor had learnt from, and events are delivered ahead of
//! decisions in bounded batches without losing any. The fixture `plugins/scorers/counter`
//! scores every pool with the number of events (and drops) it has seen, spins P ms on a pool
//! of priority P >= 1000 and traps on priority 999.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{scorer_pool, until_scorer_idle};
use polymongo::pool::{EvictionPolicy, PoolStats};
use polymongo::replay::ScorerLoader;
use polymongo::runtime::{ScorerComponent, ScorerLimits, DELIVER_AHEAD_EVENTS};
use polymongo_tests::fixture_wasm;

/// The engine (its epoch ticker runs while it lives) and the `scorer-counter` fixture.
fn counter() -> (ScorerLoader, Arc<ScorerComponent>) {
    let loader = ScorerLoader::new(Duration::from_millis(1)).expect("engine");
    let component = loader
        .load_file(&fixture_wasm("scorer-counter"))
        .expect("scorer-counter loads");
    (loader, component)
}

fn pool(pool_id: u64, priority: i32) -> PoolStats<'static> {
    scorer_pool(pool_id, priority)
}

/// The scorer's answer for `pools`, asking again while it is busy (an overrunning call is
/// finishing) or overruns; gives up after minutes (a guard, not a timing assertion).
fn answer(scorer: &dyn EvictionPolicy, pools: &[PoolStats<'_>]) -> Vec<f64> {
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        let scores = scorer.score_all(pools, 2);
        if !scores.is_empty() {
            return scores;
        }
        assert!(Instant::now() < give_up, "the scorer never answered");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `count` operations on pool 1 (`tenant`), one per millisecond from `from_ms` on.
fn accesses(scorer: &dyn EvictionPolicy, count: u64, from_ms: u64) {
    for t in 0..count {
        scorer.on_access(1, "tenant", from_ms + t);
    }
}

/// Opens pool 1 and runs 9 operations on it: the scorer answers that it saw ten events.
fn ten_events_seen(scorer: &dyn EvictionPolicy) {
    scorer.on_open(1, "tenant", 1);
    accesses(scorer, 9, 2);
    assert_eq!(answer(scorer, &[pool(1, 0)]), vec![10.0], "ten events seen");
}

#[test]
fn a_slow_scorer_call_keeps_what_the_scorer_learnt() {
    let (loader, component) = counter();
    // No replay after a trap: the state must survive the slow call itself. A hard limit far
    // above the slow call's 1 s, so that only the budget is in play.
    let scorer = loader.policy_with_limits(
        &component,
        ScorerLimits {
            budget: Duration::from_millis(20),
            hard_limit: Duration::from_secs(60),
            replay_events: 0,
        },
    );
    // 1 open + 9 accesses.
    ten_events_seen(&scorer);

    // Five more events, then a decision whose call spins 1 s (priority 1000): past its 20 ms
    // budget, it falls back to the seed formula.
    accesses(&scorer, 5, 20);
    let failures = scorer.failures();
    assert!(
        scorer.score_all(&[pool(1, 1000)], 30).is_empty(),
        "the slow decision fell back"
    );
    assert_eq!(scorer.failures(), failures + 1);

    // Seven more events. Once the slow call is over, the scorer still knows all 22: its
    // state was not thrown away with the slow decision.
    accesses(&scorer, 7, 40);
    assert_eq!(
        answer(&scorer, &[pool(1, 0)]),
        vec![22.0],
        "the scorer kept what it learnt (10 + 5 + 7 events)"
    );
    assert_eq!(scorer.restarts(), 0, "the instance was kept");
}

#[test]
fn a_trapped_scorer_is_rebuilt_from_the_events_it_had_learnt_from() {
    let (loader, component) = counter();
    // A generous budget: this test is about the trap, not about time.
    let scorer = loader.policy(&component, Duration::from_secs(30));
    ten_events_seen(&scorer);
    // Five more events go with a call that traps: the decision falls back.
    accesses(&scorer, 5, 20);
    assert!(scorer.score_all(&[pool(1, 999)], 30).is_empty());
    accesses(&scorer, 7, 40);
    // The fresh instance was given the ten events the trapped one had learnt from; the five
    // that went with the trapping call are reported to it as dropped; then the seven new ones.
    assert_eq!(answer(&scorer, &[pool(1, 0)]), vec![22.0]);
    assert_eq!(scorer.restarts(), 1);
    assert_eq!(scorer.replays(), 1);
}

#[test]
fn events_are_delivered_ahead_of_a_decision_and_none_is_lost() {
    let (loader, component) = counter();
    let scorer = loader.policy(&component, Duration::from_secs(30));
    // Many events and no decision: they go to the scorer in calls with no pools as they
    // pile up, instead of all with the next decision.
    let events = 3 * DELIVER_AHEAD_EVENTS as u64 + 5;
    scorer.on_open(1, "tenant", 1);
    accesses(&scorer, events - 1, 2);
    until_scorer_idle(&scorer);
    // One more event: with the scorer idle, a full batch waiting goes at once.
    scorer.on_access(1, "tenant", events + 1);
    until_scorer_idle(&scorer);
    assert!(scorer.deliveries() >= 1, "events were delivered ahead");
    assert!(
        scorer.queued_events() < DELIVER_AHEAD_EVENTS,
        "the decision carries less than a batch: {} waiting",
        scorer.queued_events()
    );
    assert_eq!(scorer.calls(), 0, "no decision was asked yet");
    // The decision's answer: every event, delivered ahead or with it, was seen once.
    assert_eq!(
        answer(&scorer, &[pool(1, 0)]),
        vec![(events + 1) as f64],
        "no event lost or repeated"
    );
    assert_eq!(scorer.calls(), 1);
    assert_eq!(scorer.failures(), 0, "the decision did not fall back");
}

#[test]
fn a_decision_waits_for_a_delivery_within_its_budget() {
    let (loader, component) = counter();
    // A generous budget: a decision right after a batch waits for its delivery and answers
    // (it would fall back at once if it did not wait).
    let scorer = loader.policy(&component, Duration::from_secs(30));
    scorer.on_open(1, "tenant", 1);
    accesses(&scorer, DELIVER_AHEAD_EVENTS as u64 - 1, 2);
    assert_eq!(scorer.deliveries(), 1, "the batch went as it filled");
    let scores = scorer.score_all(&[pool(1, 0)], 2);
    assert_eq!(
        scores,
        vec![DELIVER_AHEAD_EVENTS as f64],
        "answered, not fallen back"
    );
    assert_eq!(scorer.failures(), 0);
}

#[test]
fn a_restart_on_request_rebuilds_the_scorer_from_its_latest_events() {
    let (loader, component) = counter();
    // Only the latest 4 delivered events are kept for a fresh instance.
    let scorer = loader.policy_with_limits(
        &component,
        ScorerLimits {
            budget: Duration::from_secs(30),
            hard_limit: Duration::from_secs(60),
            replay_events: 4,
        },
    );
    ten_events_seen(&scorer);
    accesses(&scorer, 5, 20);
    scorer.restart();
    // The fresh instance was given the latest 4 of the ten events delivered, then the five
    // that were still queued (without the restart it would have seen 15).
    assert_eq!(answer(&scorer, &[pool(1, 0)]), vec![9.0]);
    assert_eq!(scorer.restarts(), 1);
    assert_eq!(scorer.replays(), 1);
}

#[test]
fn a_new_version_continues_from_what_the_previous_one_learnt() {
    let (loader, component) = counter();
    let old = loader.policy(&component, Duration::from_secs(30));
    ten_events_seen(&old);
    // Five more events are still queued for the old version when it is replaced.
    accesses(&old, 5, 20);
    // The new version gets events (and makes a decision) before the handover reaches it, as
    // it may once the manager has it.
    let new = loader.policy(&component, Duration::from_secs(30));
    accesses(&new, 3, 40);
    assert_eq!(answer(&new, &[pool(1, 0)]), vec![3.0]);
    accesses(&new, 2, 50);
    new.inherit_from(&old);
    // Relearnt in order: the old version's 10 delivered and 5 queued events, then the new
    // one's 3 delivered ones, then its 2 queued ones.
    assert_eq!(answer(&new, &[pool(1, 0)]), vec![20.0]);
    assert_eq!(new.inherited(), 15);
    assert_eq!(new.replays(), 1, "one fresh instance relearnt them");
    assert_eq!(new.failures(), 0, "no decision fell back");
}

#[test]
fn handovers_keep_the_latest_events_and_chain_across_quick_redeploys() {
    let (loader, component) = counter();
    let limits = ScorerLimits {
        budget: Duration::from_secs(30),
        hard_limit: Duration::from_secs(60),
        replay_events: 12,
    };
    let v1 = loader.policy_with_limits(&component, limits);
    ten_events_seen(&v1);
    // Five events go with a call that traps: they are lost, and handed over as dropped.
    accesses(&v1, 5, 20);
    assert!(v1.score_all(&[pool(1, 999)], 30).is_empty());
    accesses(&v1, 4, 40);
    // Two deploys in a row: v2 hands over before it has even taken over from v1.
    let v2 = loader.policy_with_limits(&component, limits);
    v2.inherit_from(&v1);
    let v3 = loader.policy_with_limits(&component, limits);
    v3.inherit_from(&v2);
    accesses(&v3, 2, 60);
    // v3 relearns the latest 12 of v1's 14 events (10 delivered, 4 queued), told of the 5
    // lost, then sees its own 2: 12 + 5 + 2.
    assert_eq!(answer(&v3, &[pool(1, 0)]), vec![19.0]);
    assert_eq!(v3.inherited(), 12);
    assert_eq!(v2.inherited(), 12);

    // With no events kept for relearning, a new version starts empty.
    let none = ScorerLimits {
        replay_events: 0,
        ..limits
    };
    let v4 = loader.policy_with_limits(&component, none);
    v4.inherit_from(&v3);
    accesses(&v4, 2, 80);
    assert_eq!(answer(&v4, &[pool(1, 0)]), vec![2.0]);
    assert_eq!(v4.inherited(), 0);
}

#[test]
fn a_broken_version_in_between_loses_nothing_its_predecessor_learnt() {
    let (loader, counter) = counter();
    // One version that traps on every call, one that loops until the hard limit stops it.
    for broken in ["scorer-trap", "scorer-loop"] {
        let broken_component = loader
            .load_file(&fixture_wasm(broken))
            .expect("the fixture loads");
        let v1 = loader.policy(&counter, Duration::from_secs(30));
        ten_events_seen(&v1);
        // Relearning v1's events fails in v2, and so does every decision.
        let limits = ScorerLimits {
            budget: Duration::from_millis(100),
            hard_limit: Duration::from_millis(200),
            replay_events: 1 << 16,
        };
        let v2 = loader.policy_with_limits(&broken_component, limits);
        v2.inherit_from(&v1);
        accesses(&v2, 3, 20);
        assert!(
            v2.score_all(&[pool(1, 0)], 30).is_empty(),
            "{broken}: v2 falls back"
        );
        // Rolled back: v3 relearns v1's ten events and is told of the three v2 lost (once
        // v2's call has failed: the handover comes after it).
        let v3 = loader.policy(&counter, Duration::from_secs(30));
        v3.inherit_from(&v2);
        assert_eq!(answer(&v3, &[pool(1, 0)]), vec![13.0], "{broken}");
        assert_eq!(v3.inherited(), 10, "{broken}");
        assert_eq!(v2.inherited(), 0, "{broken}: v2 relearnt nothing");
        assert_eq!(v2.replays(), 0, "{broken}");
    }
}

#[test]
fn a_handover_comes_after_the_old_versions_running_call_and_keeps_its_events() {
    let (loader, component) = counter();
    let old = loader.policy_with_limits(
        &component,
        ScorerLimits {
            budget: Duration::from_millis(20),
            hard_limit: Duration::from_secs(60),
            replay_events: 1 << 16,
        },
    );
    ten_events_seen(&old);
    // Five more events go with a decision whose call spins 1 s: it falls back, and the call
    // goes on while the new version is deployed.
    accesses(&old, 5, 20);
    assert!(old.score_all(&[pool(1, 1000)], 30).is_empty());
    let new = loader.policy(&component, Duration::from_secs(30));
    new.inherit_from(&old);
    // The handover waited for the slow call, which learnt its five events: 10 + 5.
    assert_eq!(answer(&new, &[pool(1, 0)]), vec![15.0]);
    assert_eq!(new.inherited(), 15);
}
