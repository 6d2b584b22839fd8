//! The connection manager against a real server (FerretDB by default, or POLYMONGO_TEST_URI).
//! One test per rule of the connection manager's behaviour (README.md, "The connection manager").

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Bson, Document};
use mongodb::options::{FindOneAndUpdateOptions, FindOptions, IndexOptions, ReturnDocument};
use mongodb::IndexModel;
use polymongo::pool::{
    Builder, CloseReason, Error, EvictionPolicy, LruPolicy, ManualClock, PolyMongo, PoolEvent,
    PoolEventKind, PoolStats, Protection, SeedPolicy, DATABASES_COLLECTION,
};
use polymongo_tests::{skip_loudly, test_uri, unique_db, using_ferretdb, FerretDb};
use tokio::sync::broadcast;

/// A manager on the test server with its own metadata database and no background sweeper.
fn builder() -> Builder {
    let builder = PolyMongo::builder(test_uri());
    let builder = match polymongo_tests::test_client_sharing() {
        Some(mode) => builder.client_sharing(mode.parse().expect("client sharing mode")),
        None => builder,
    };
    builder
        .metadata_db(unique_db("meta"))
        .no_idle_timeout()
        .acquire_timeout(Duration::from_millis(300))
        .server_selection_timeout(Duration::from_secs(3))
}

fn drain(rx: &mut broadcast::Receiver<PoolEvent>) -> Vec<PoolEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

fn evicted(events: &[PoolEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| matches!(e.kind, PoolEventKind::Evicted { .. }))
        .map(|e| e.db.clone())
        .collect()
}

async fn touch(pm: &PolyMongo, db: &str) {
    pm.db(db)
        .unwrap()
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await
        .unwrap_or_else(|e| panic!("operation on {db} failed: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_operations_round_trip_and_keep_bson_types() {
    let pm = builder().build().await.unwrap();
    let db = pm.db(&unique_db("crud")).unwrap();
    let users = db.collection::<Document>("users");

    let oid = bson::oid::ObjectId::new();
    let when = bson::DateTime::from_millis(1_700_000_000_000);
    let id = users
        .insert_one(doc! { "_id": oid, "name": "Alice", "age": 30, "joined": when })
        .await
        .unwrap();
    assert_eq!(id, Bson::ObjectId(oid));
    let ids = users
        .insert_many([
            doc! { "name": "Bob", "age": 25 },
            doc! { "name": "Carol", "age": 35 },
            doc! { "name": "Dan", "age": 35 },
        ])
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);

    let alice = users
        .find_one(doc! { "_id": oid }, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.get_object_id("_id").unwrap(), oid, "ObjectId kept");
    assert_eq!(alice.get_datetime("joined").unwrap(), &when, "Date kept");

    let sorted = users
        .find(
            doc! { "age": { "$gte": 30 } },
            FindOptions::builder()
                .sort(doc! { "name": -1 })
                .skip(1)
                .limit(5)
                .build(),
        )
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    let names: Vec<&str> = sorted.iter().map(|d| d.get_str("name").unwrap()).collect();
    assert_eq!(names, ["Carol", "Alice"]);

    let updated = users
        .update_many(doc! { "age": 35 }, doc! { "$inc": { "age": 1 } }, None)
        .await
        .unwrap();
    assert_eq!(updated.modified_count, 2);
    let upserted = users
        .update_one(
            doc! { "name": "Eve" },
            doc! { "$set": { "age": 22 } },
            mongodb::options::UpdateOptions::builder()
                .upsert(true)
                .build(),
        )
        .await
        .unwrap();
    assert!(upserted.upserted_id.is_some());
    let replaced = users
        .replace_one(
            doc! { "name": "Bob" },
            doc! { "name": "Bob", "age": 26 },
            None,
        )
        .await
        .unwrap();
    assert_eq!(replaced.matched_count, 1);
    let after = users
        .find_one_and_update(
            doc! { "name": "Bob" },
            doc! { "$set": { "vip": true } },
            FindOneAndUpdateOptions::builder()
                .return_document(ReturnDocument::After)
                .build(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(after.get_bool("vip").unwrap());

    assert_eq!(users.count_documents(doc! {}).await.unwrap(), 5);
    let mut ages = users.distinct("age", doc! {}).await.unwrap();
    ages.sort_by_key(|b| b.as_i32());
    assert_eq!(
        ages,
        [
            Bson::Int32(22),
            Bson::Int32(26),
            Bson::Int32(30),
            Bson::Int32(36)
        ]
    );
    let groups = users
        .aggregate([
            doc! { "$match": { "age": { "$gte": 30 } } },
            doc! { "$group": { "_id": "$age", "n": { "$sum": 1 } } },
            doc! { "$sort": { "_id": 1 } },
        ])
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(
        groups,
        [doc! { "_id": 30, "n": 1 }, doc! { "_id": 36, "n": 2 }]
    );

    let index = users
        .create_index(
            IndexModel::builder()
                .keys(doc! { "name": 1 })
                .options(IndexOptions::builder().unique(true).build())
                .build(),
        )
        .await
        .unwrap();
    assert_eq!(index, "name_1");
    let dup = users
        .insert_one(doc! { "name": "Alice" })
        .await
        .unwrap_err();
    assert!(matches!(dup, Error::DuplicateKey(_)), "{dup:?}");

    assert_eq!(users.delete_one(doc! { "name": "Eve" }).await.unwrap(), 1);
    assert_eq!(users.delete_many(doc! { "age": 36 }).await.unwrap(), 2);
    assert_eq!(users.count_documents(doc! {}).await.unwrap(), 2);
    let names = db.list_collection_names().await.unwrap();
    assert!(names.contains(&"users".to_string()));
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_updates_usage_stats() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let pm = builder().clock(clock.clone()).build().await.unwrap();
    let name = unique_db("stats");
    let coll = pm.db(&name).unwrap().collection::<Document>("c");
    coll.insert_one(doc! { "x": 1 }).await.unwrap();
    clock.advance(100);
    coll.count_documents(doc! {}).await.unwrap();
    clock.advance(300);
    coll.find_one(doc! {}, None).await.unwrap();
    clock.advance(50);

    let stats = pm.stats();
    let s = stats
        .iter()
        .find(|s| s.db_name == name)
        .expect("pool listed");
    assert_eq!(s.use_count, 3);
    assert_eq!(s.avg_interval, 200.0, "gaps of 100 and 300 ms");
    assert_eq!(s.last_used, 1_000_400);
    assert_eq!(s.idle_time, 50);
    assert_eq!(s.priority, 100);
    assert!(!s.has_watch);
    assert_eq!(s.in_flight, 0);
    assert_eq!(s.protected, None);
    let expected = 3.0 * 10.0 / 200.0 - 50.0 * 0.001 - 100.0;
    assert!(
        (s.score - expected).abs() < 1e-9,
        "score {} != {expected}",
        s.score
    );
    pm.destroy().await.unwrap();
}

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

async fn count_in(pm: &PolyMongo, db: &str) -> polymongo::pool::Result<u64> {
    pm.db(db)?
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await
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
async fn idle_pools_are_closed_unless_protected() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let pm = builder()
        .idle_timeout(Duration::from_secs(60))
        .sweep_interval(Duration::from_secs(3600))
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let mut events = pm.subscribe();
    let (idle, pinned, watched, fresh) = (
        unique_db("idle"),
        unique_db("pin"),
        unique_db("watch"),
        unique_db("fresh"),
    );
    pm.set_priority(&pinned, -1).await.unwrap();
    for n in [&idle, &pinned] {
        touch(&pm, n).await;
    }
    let _guard = pm.keep_alive(&watched).await.unwrap();
    clock.advance(59_000);
    touch(&pm, &fresh).await;
    assert!(
        pm.sweep_idle().await.unwrap().is_empty(),
        "nothing idle for over 60 s yet"
    );
    clock.advance(2_000);
    let closed = pm.sweep_idle().await.unwrap();
    assert_eq!(closed, std::slice::from_ref(&idle));
    assert!(pm.is_open(&pinned) && pm.is_open(&watched) && pm.is_open(&fresh));
    let idle_event = drain(&mut events)
        .into_iter()
        .find(|e| e.db == idle && matches!(e.kind, PoolEventKind::IdleClosed { .. }))
        .expect("an idle-closed event");
    assert_eq!(
        idle_event.kind,
        PoolEventKind::IdleClosed { idle_ms: 61_000 }
    );
    assert_eq!(pm.summary().idle_closes, 1);
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sweeper_closes_idle_pools() {
    let pm = builder()
        .idle_timeout(Duration::from_millis(200))
        .sweep_interval(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let name = unique_db("bg-idle");
    touch(&pm, &name).await;
    assert!(pm.is_open(&name));
    let deadline = Instant::now() + Duration::from_secs(10);
    while pm.is_open(&name) {
        assert!(
            Instant::now() < deadline,
            "the sweeper never closed the idle pool"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_persist_and_survive_a_new_manager() {
    let meta = unique_db("meta-persist");
    let name = unique_db("prio");
    let pm = builder().metadata_db(&meta).build().await.unwrap();
    assert_eq!(pm.priority(&name), 100, "default priority");
    pm.set_priority(&name, 7).await.unwrap();
    assert_eq!(
        pm.priority(&name),
        7,
        "effective at once, before the pool is open"
    );
    touch(&pm, &name).await;
    assert_eq!(pm.stats()[0].priority, 7);
    pm.set_priority(&name, 3).await.unwrap();
    touch(&pm, &name).await;
    assert_eq!(
        pm.stats()[0].priority,
        3,
        "operations do not undo set_priority"
    );
    let err = pm.set_priority(&name, -2).await.unwrap_err();
    assert_eq!(err, Error::InvalidPriority(-2));
    pm.destroy().await.unwrap();

    // Stored with upsert in the metadata database.
    let client = mongodb::Client::with_uri_str(test_uri()).await.unwrap();
    let stored = client
        .database(&meta)
        .collection::<Document>(DATABASES_COLLECTION)
        .find_one(doc! { "_id": &name })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_i32("priority").unwrap(), 3);

    let again = builder().metadata_db(&meta).build().await.unwrap();
    assert_eq!(again.priority(&name), 3, "survives a restart");
    touch(&again, &name).await;
    assert_eq!(again.stats()[0].priority, 3);
    again.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_reserved_database_names_are_rejected() {
    let pm = builder()
        .metadata_db("pm-meta-names")
        .build()
        .await
        .unwrap();
    let too_long = "x".repeat(64);
    for bad in [
        "", "a/b", "a\\b", "a.b", "a b", "a\"b", "$x", "a*b", "a<b", "a>b", "a:b", "a|b", "a?",
        "a\0b", &too_long,
    ] {
        let err = pm.db(bad).unwrap_err();
        assert!(
            matches!(err, Error::InvalidDatabaseName { .. }),
            "{bad:?}: {err:?}"
        );
        assert!(pm.set_priority(bad, 1).await.is_err());
        assert!(pm.open_connection(bad).await.is_err());
    }
    for reserved in ["admin", "local", "config", "pm-meta-names"] {
        assert_eq!(
            pm.db(reserved).unwrap_err(),
            Error::ReservedDatabase(reserved.into())
        );
    }
    assert_eq!(pm.open_pools(), 0, "nothing reached the server");
    pm.destroy().await.unwrap();

    let permissive = builder()
        .allow_reserved_databases(true)
        .build()
        .await
        .unwrap();
    permissive
        .db("admin")
        .unwrap()
        .run_command(doc! { "ping": 1 })
        .await
        .unwrap();
    permissive.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_destroy_every_call_fails_clearly() {
    let pm = builder().build().await.unwrap();
    let name = unique_db("destroy");
    let coll = pm.db(&name).unwrap().collection::<Document>("c");
    coll.insert_one(doc! { "a": 1 }).await.unwrap();
    let mut events = pm.subscribe();
    pm.destroy().await.unwrap();
    assert_eq!(pm.open_pools(), 0);
    assert!(drain(&mut events).iter().any(|e| e.db == name
        && e.kind
            == PoolEventKind::Closed {
                reason: CloseReason::Destroyed
            }));
    assert_eq!(
        coll.count_documents(doc! {}).await.unwrap_err(),
        Error::Destroyed
    );
    assert_eq!(pm.db("x").unwrap_err(), Error::Destroyed);
    assert_eq!(pm.open_connection("x").await.unwrap_err(), Error::Destroyed);
    assert_eq!(
        pm.close_connection("x").await.unwrap_err(),
        Error::Destroyed
    );
    assert_eq!(pm.set_priority("x", 1).await.unwrap_err(), Error::Destroyed);
    assert_eq!(pm.sweep_idle().await.unwrap_err(), Error::Destroyed);
    assert_eq!(pm.lease("x").await.unwrap_err(), Error::Destroyed);
    assert!(Error::Destroyed.to_string().contains("destroyed"));
    assert!(pm.is_destroyed());
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connection_warms_without_counting_a_use() {
    let pm = builder().build().await.unwrap();
    let mut events = pm.subscribe();
    let name = unique_db("warm");
    pm.open_connection(&name).await.unwrap();
    assert!(pm.is_open(&name));
    assert_eq!(pm.stats()[0].use_count, 0);
    pm.open_connection(&name).await.unwrap();
    touch(&pm, &name).await;
    assert_eq!(pm.stats()[0].use_count, 1);
    let opened = drain(&mut events)
        .iter()
        .filter(|e| matches!(e.kind, PoolEventKind::Opened { .. }))
        .count();
    assert_eq!(opened, 1);
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tenants_never_see_each_others_data() {
    let pm = builder()
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap();
    let tenants: Vec<String> = (0..6).map(|i| unique_db(&format!("iso{i}"))).collect();
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let pm = pm.clone();
            let tenant = tenants[i % tenants.len()].clone();
            tokio::spawn(async move {
                pm.db(&tenant)
                    .unwrap()
                    .collection::<Document>("items")
                    .insert_one(doc! { "owner": &tenant, "i": i as i32 })
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for tenant in &tenants {
        let docs = pm
            .db(tenant)
            .unwrap()
            .collection::<Document>("items")
            .find(doc! {}, None)
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        assert_eq!(docs.len(), 10);
        assert!(
            docs.iter().all(|d| d.get_str("owner").unwrap() == tenant),
            "cross-tenant leak in {tenant}"
        );
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_fails_clearly_and_a_restarted_one_serves_again() {
    let mut server = match FerretDb::start_temp() {
        Ok(s) => s,
        Err(e) if !using_ferretdb() => {
            skip_loudly(
                "a_killed_server_fails_clearly_and_a_restarted_one_serves_again",
                &format!("needs a local FerretDB to kill and restart, and none could start: {e}"),
            );
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let pm = PolyMongo::builder(server.uri())
        .no_idle_timeout()
        .server_selection_timeout(Duration::from_millis(1500))
        .build()
        .await
        .unwrap();
    let mut events = pm.subscribe();
    let (name, cold) = ("killed".to_string(), "cold-after-kill".to_string());
    let coll = pm.db(&name).unwrap().collection::<Document>("c");
    coll.insert_one(doc! { "a": 1 }).await.unwrap();

    server.kill();
    let err = coll.count_documents(doc! {}).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("unavailable"), "{err}");
    let err = count_in(&pm, &cold).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(drain(&mut events)
        .iter()
        .any(|e| e.db == cold && matches!(e.kind, PoolEventKind::OpenFailed { .. })));
    assert!(!pm.is_open(&cold), "a failed open frees its slot");

    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match coll.count_documents(doc! {}).await {
            Ok(n) => {
                assert_eq!(n, 1, "data survived the restart");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("server restarted but operations still fail: {e}"),
        }
    }
    count_in(&pm, &cold).await.unwrap();
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_streams_and_transactions_need_a_replica_set() {
    let pm = builder().max_connections(1).build().await.unwrap();
    let db = pm.db(&unique_db("watch")).unwrap();
    let coll = db.collection::<Document>("events");
    match coll.watch().await {
        Err(Error::Unsupported(msg)) => {
            // FerretDB: the clear error. The behaviour below runs for real against
            // mongo-java-server in tests/streams.rs
            // (the_pool_api_watch_protects_its_pool_on_a_server_with_change_streams).
            assert!(msg.contains("replica set"), "{msg}");
            assert_eq!(
                pm.stats()[0].watch_count,
                0,
                "a failed watch leaves no guard behind"
            );
        }
        Err(e) => panic!("unexpected error: {e:?}"),
        Ok(mut stream) => {
            // A real replica set: the stream sees changes and protects its pool.
            coll.insert_one(doc! { "x": 1 }).await.unwrap();
            let change = stream.next().await.unwrap().unwrap();
            assert_eq!(change.full_document.unwrap().get_i32("x").unwrap(), 1);
            let err = count_in(&pm, &unique_db("blocked")).await.unwrap_err();
            assert!(matches!(err, Error::LimitReached { .. }));
            drop(stream);
            count_in(&pm, &unique_db("admitted")).await.unwrap();
        }
    }
    let db = pm.db(&unique_db("txn")).unwrap();
    match db.start_transaction().await {
        Err(Error::Unsupported(msg)) => {
            assert!(msg.contains("replica set"), "{msg}");
            skip_loudly(
                "change_streams_and_transactions_need_a_replica_set (transaction behaviour)",
                &format!("this server has no transactions ({msg}); only the clear `unsupported` error was checked. No server the harness starts has them (mongo-java-server 1.47 has no sessions): set POLYMONGO_TEST_URI to a replica set to run it."),
            );
        }
        Err(e) => panic!("unexpected error: {e:?}"),
        Ok(mut txn) => {
            let coll = txn.collection::<Document>("t");
            coll.insert_one(doc! { "x": 1 })
                .session(txn.session())
                .await
                .unwrap();
            txn.abort().await.unwrap();
            assert_eq!(
                db.collection::<Document>("t")
                    .count_documents(doc! {})
                    .await
                    .unwrap(),
                0
            );
        }
    }
    pm.destroy().await.unwrap();
}

/// A `MakeWriter` that collects log output in memory.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_uri_password_never_appears_in_logs_errors_or_debug() {
    const PASSWORD: &str = "Sup3rS3cretPa55";
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let port = polymongo_tests::free_port().unwrap();
    // A dead server: every path that reports the URI or a driver error is exercised.
    let uri = format!("mongodb://alice:{PASSWORD}@127.0.0.1:{port}/?authSource=admin");
    let err = PolyMongo::builder(&uri)
        .server_selection_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains(PASSWORD), "{err}");
    assert!(!format!("{err:?}").contains(PASSWORD));

    // A live server that does not know the user: the authentication error is scrubbed too.
    let base = test_uri();
    let with_creds = base.replacen("mongodb://", &format!("mongodb://alice:{PASSWORD}@"), 1);
    let result = PolyMongo::builder(&with_creds)
        .server_selection_timeout(Duration::from_secs(2))
        .metadata_db(unique_db("meta"))
        .build()
        .await;
    match result {
        Err(e) => {
            assert!(!e.to_string().contains(PASSWORD), "{e}");
        }
        Ok(pm) => {
            let debug = format!("{pm:?} {:?}", pm.config());
            assert!(!debug.contains(PASSWORD), "{debug}");
            assert!(debug.contains("alice:****@"), "{debug}");
            pm.destroy().await.unwrap();
        }
    }
    let config = polymongo::pool::Config::new(&uri);
    assert!(!format!("{config:?}").contains(PASSWORD));
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("alice:****@") || !text.contains("alice:"),
        "logs mention the URI only masked"
    );
    assert!(
        !text.contains(PASSWORD),
        "password leaked into logs:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_are_clear() {
    let err = PolyMongo::builder(test_uri())
        .max_connections(0)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("max_connections")),
        "{err:?}"
    );
    let err = PolyMongo::builder("http://nope").build().await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let err = PolyMongo::builder(test_uri())
        .metadata_db("a.b")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("metadata_db")),
        "{err:?}"
    );
}
