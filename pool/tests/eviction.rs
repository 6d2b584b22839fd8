//! The connection cap and eviction against a real server (FerretDB by default, or
//! POLYMONGO_TEST_URI): single-flight opens, churn under the cap, the seed formula's victim,
//! ties, protection of pinned, watched, busy pools and of cursors, pluggable policies.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use mongodb::options::FindOptions;
use polymongo_pool::{
    CloseReason, Error, EvictionPolicy, LruPolicy, ManualClock, PoolEventKind, PoolStats,
    Protection, SeedPolicy,
};
use polymongo_tests::unique_db;

mod common;
use common::{builder, count_in, drain, evicted, touch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_first_uses_open_exactly_one_pool() {
    let pm = builder().build().await.unwrap();
    let mut events = pm.subscribe();
    let name = unique_db("single");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let pm = pm.clone();
            let name = name.clone();
            tokio::spawn(async move { touch(&pm, &name).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let opened = drain(&mut events)
        .into_iter()
        .filter(|e| e.db == name && matches!(e.kind, PoolEventKind::Opened { .. }))
        .count();
    assert_eq!(opened, 1);
    assert_eq!(pm.summary().opens, 1);
    let stats = pm.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].use_count, 50, "every waiter's operation counted");
    assert_eq!(stats[0].in_flight, 0, "every granted lease was released");
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_200_databases_never_exceeds_the_cap_of_10() {
    let pm = builder()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap();
    let names: Arc<Vec<String>> =
        Arc::new((0..200).map(|i| unique_db(&format!("churn{i}"))).collect());
    let max_seen = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (pm, max_seen, stop) = (pm.clone(), max_seen.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                max_seen.fetch_max(pm.open_pools(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (pm, names, max_seen) = (pm.clone(), names.clone(), max_seen.clone());
            tokio::spawn(async move {
                for step in 0..40usize {
                    // A mix of popular and cold tenants.
                    let i = if step % 3 == 0 {
                        (w + step) % 5
                    } else {
                        (w * 37 + step * 11) % 200
                    };
                    touch(&pm, &names[i]).await;
                    max_seen.fetch_max(pm.open_pools(), Ordering::SeqCst);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    let summary = pm.summary();
    assert!(
        max_seen.load(Ordering::SeqCst) <= 10,
        "saw {} open pools",
        max_seen.load(Ordering::SeqCst)
    );
    assert!(summary.open_pools <= 10);
    assert!(summary.evictions > 50, "churn must evict: {summary:?}");
    assert_eq!(summary.limit_reached, 0);
    assert_eq!(summary.in_flight, 0);
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicts_the_pool_the_seed_formula_picks() {
    let clock = Arc::new(ManualClock::new(10_000_000));
    let pm = builder()
        .max_connections(3)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let mut events = pm.subscribe();
    let (busy, rare, stale, newcomer) = (
        unique_db("busy"),
        unique_db("rare"),
        unique_db("stale"),
        unique_db("new"),
    );
    // busy: 6 uses 100 ms apart; rare: 2 uses 2 s apart; stale: 3 uses 10 ms apart, then silence.
    for _ in 0..3 {
        touch(&pm, &stale).await;
        clock.advance(10);
    }
    touch(&pm, &rare).await;
    for _ in 0..6 {
        touch(&pm, &busy).await;
        clock.advance(100);
    }
    clock.advance(1_400);
    touch(&pm, &rare).await;
    clock.advance(30_000);

    // Expected victim: the lowest seed score among the three, computed independently.
    let now = 10_000_000 + 30 + 600 + 1_400 + 30_000;
    let stats = pm.stats();
    let expected = stats
        .iter()
        .map(|s| (SeedPolicy.score(&s.as_pool_stats(), now), s.db_name.clone()))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap()
        .1;
    // By hand: busy 6*10/100 - 31.5 - 100 = -130.9; rare 2*10/2000 - 30 - 100 = -129.99;
    // stale 3*10/10 - 32.01 - 100 = -129.01. Frequency does not save `busy`: it has been idle
    // long enough for the idle term to dominate, while `stale`'s high frequency keeps it.
    assert_eq!(expected, busy);
    drain(&mut events);

    touch(&pm, &newcomer).await;
    let events = drain(&mut events);
    assert_eq!(evicted(&events), std::slice::from_ref(&busy));
    let Some(PoolEventKind::Evicted {
        score,
        for_db,
        policy,
    }) = events.iter().find(|e| e.db == busy).map(|e| e.kind.clone())
    else {
        panic!("no eviction event")
    };
    assert_eq!(for_db, newcomer);
    assert_eq!(policy, "seed");
    assert!((score - (-130.9)).abs() < 1e-6, "score {score}");
    assert!(!pm.is_open(&busy));
    assert_eq!(pm.open_pools(), 3);

    // Priorities shift the decision: make `rare` unimportant and it goes next.
    pm.set_priority(&rare, 200).await.unwrap();
    touch(&pm, &unique_db("another")).await;
    assert!(!pm.is_open(&rare));
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_ties_evict_the_pool_opened_first() {
    let clock = Arc::new(ManualClock::new(5_000_000));
    let pm = builder()
        .max_connections(3)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let names: Vec<String> = (0..3).map(|i| unique_db(&format!("tie{i}"))).collect();
    for n in &names {
        pm.open_connection(n).await.unwrap();
    }
    let scores: HashSet<u64> = pm.stats().iter().map(|s| s.score.to_bits()).collect();
    assert_eq!(scores.len(), 1, "all three scores are equal");
    let mut events = pm.subscribe();
    touch(&pm, &unique_db("tie-new")).await;
    assert_eq!(evicted(&drain(&mut events)), [names[0].clone()]);
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_and_watched_pools_are_never_evicted_and_the_cap_holds() {
    let pm = builder().max_connections(2).build().await.unwrap();
    let (pinned, watched, third) = (
        unique_db("pinned"),
        unique_db("watched"),
        unique_db("third"),
    );
    pm.set_priority(&pinned, -1).await.unwrap();
    touch(&pm, &pinned).await;
    let guard = pm.keep_alive(&watched).await.unwrap();

    let stats = pm.stats();
    let find = |n: &str| stats.iter().find(|s| s.db_name == n).unwrap().clone();
    assert_eq!(find(&pinned).protected, Some(Protection::Pinned));
    assert_eq!(find(&watched).protected, Some(Protection::Watched));
    assert!(find(&watched).has_watch);

    let started = Instant::now();
    let err = count_in(&pm, &third).await.unwrap_err();
    assert!(matches!(err, Error::LimitReached { max: 2, .. }), "{err:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited the acquire timeout"
    );
    assert!(err.to_string().contains("connection limit reached"));
    assert_eq!(pm.open_pools(), 2, "the cap was not exceeded");
    assert_eq!(pm.summary().limit_reached, 1);

    // A waiter is admitted as soon as the guard drops.
    let waiter = {
        let pm = pm.clone();
        let third = third.clone();
        tokio::spawn(async move { count_in(&pm, &third).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(guard);
    waiter.await.unwrap().unwrap();
    assert!(pm.is_open(&pinned), "the pinned pool survived");
    assert!(!pm.is_open(&watched));
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_protection_is_counted_not_boolean() {
    let pm = builder().max_connections(1).build().await.unwrap();
    let (watched, other) = (unique_db("w2"), unique_db("other"));
    let first = pm.keep_alive(&watched).await.unwrap();
    let second = pm.db(&watched).unwrap().keep_alive().await.unwrap();
    assert_eq!(pm.stats()[0].watch_count, 2);
    drop(first);
    let err = count_in(&pm, &other).await.unwrap_err();
    assert!(
        matches!(err, Error::LimitReached { .. }),
        "still protected by one guard: {err:?}"
    );
    drop(second);
    count_in(&pm, &other).await.unwrap();
    assert!(!pm.is_open(&watched));
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_in_flight_delays_close_and_blocks_eviction() {
    let pm = builder().max_connections(1).build().await.unwrap();
    let mut events = pm.subscribe();
    let (busy, other) = (unique_db("inflight"), unique_db("waiting"));
    let lease = pm.lease(&busy).await.unwrap();
    assert_eq!(pm.stats()[0].protected, Some(Protection::Busy));

    // Eviction cannot take a busy pool: the other tenant waits, then gets the slot.
    let waiter = {
        let pm = pm.clone();
        let other = other.clone();
        tokio::spawn(async move { count_in(&pm, &other).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());
    assert!(pm.is_open(&busy));
    drop(lease);
    waiter.await.unwrap().unwrap();
    assert_eq!(evicted(&drain(&mut events)), std::slice::from_ref(&busy));

    // close_connection waits for the operation in flight.
    let lease = pm.lease(&other).await.unwrap();
    let closer = {
        let pm = pm.clone();
        let other = other.clone();
        tokio::spawn(async move { pm.close_connection(&other).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!closer.is_finished(), "close must wait for the lease");
    // The lease still works while the close waits.
    lease
        .database()
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await
        .unwrap();
    drop(lease);
    assert!(closer.await.unwrap().unwrap());
    assert_eq!(pm.open_pools(), 0);
    let closed = drain(&mut events).into_iter().any(|e| {
        e.db == other
            && e.kind
                == PoolEventKind::Closed {
                    reason: CloseReason::Requested,
                }
    });
    assert!(closed);
    assert!(
        !pm.close_connection(&other).await.unwrap(),
        "nothing left to close"
    );
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_keep_their_pool_busy() {
    // Within the cursor grace period (after it, see hostile_tenants.rs).
    let pm = builder()
        .max_connections(1)
        .cursor_grace(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let name = unique_db("cursor");
    let coll = pm.db(&name).unwrap().collection::<Document>("c");
    coll.insert_many((0..10).map(|i| doc! { "i": i }))
        .await
        .unwrap();
    let mut cursor = coll
        .find(doc! {}, FindOptions::builder().batch_size(2).build())
        .await
        .unwrap();
    assert_eq!(cursor.next_batch(3).await.unwrap().len(), 3);
    let err = count_in(&pm, &unique_db("blocked")).await.unwrap_err();
    assert!(matches!(err, Error::LimitReached { .. }), "{err:?}");
    assert_eq!(cursor.next_batch(100).await.unwrap().len(), 7);
    drop(cursor);
    count_in(&pm, &unique_db("admitted")).await.unwrap();
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lru_and_custom_policies_plug_in() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let pm = builder()
        .max_connections(2)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    pm.set_policy(Arc::new(LruPolicy));
    let (old, recent) = (unique_db("lru-old"), unique_db("lru-recent"));
    pm.set_priority(&old, 0).await.unwrap(); // would be kept by the seed formula
    touch(&pm, &old).await;
    clock.advance(10);
    touch(&pm, &recent).await;
    clock.advance(10);
    let mut events = pm.subscribe();
    touch(&pm, &unique_db("lru-third")).await;
    assert_eq!(evicted(&drain(&mut events)), std::slice::from_ref(&old));
    assert_eq!(pm.summary().policy, "lru");

    /// A stateless, unordered policy that prefers to keep databases with long names.
    struct LongNames;
    impl EvictionPolicy for LongNames {
        fn name(&self) -> &str {
            "long-names"
        }
        fn score(&self, pool: &PoolStats<'_>, _now: u64) -> f64 {
            pool.db_name.len() as f64
        }
    }
    pm.set_policy(Arc::new(LongNames));
    let short = unique_db("s");
    touch(&pm, &short).await; // evicts one of the two open pools
    touch(&pm, &unique_db("a-much-longer-name")).await;
    assert!(!pm.is_open(&short), "the shortest name is evicted");

    /// A broken policy: NaN scores make the decision fall back to the seed formula.
    struct Broken;
    impl EvictionPolicy for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn score(&self, _pool: &PoolStats<'_>, _now: u64) -> f64 {
            f64::NAN
        }
    }
    pm.set_policy(Arc::new(Broken));
    touch(&pm, &unique_db("fallback")).await;
    assert_eq!(pm.policy_fallbacks(), 1);
    assert_eq!(pm.open_pools(), 2);
    pm.destroy().await.unwrap();
}
