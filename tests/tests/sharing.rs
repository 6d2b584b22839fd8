//! Client sharing (issue 17) against a real server: many tenant pools on one shared driver
//! client, the socket budget that holds whatever the number of tenants, evictions that never
//! close the shared client, and the per-database bound that keeps a noisy tenant from holding
//! every shared socket.
//!
//! Sockets are counted with the driver's connection-pool (CMAP) events: `ConnectionCreated`
//! minus `ConnectionClosed` is the number of pooled sockets the host holds to the server
//! (the driver's monitoring sockets are not pooled and not counted; they are 2 per client).

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Document};
use mongodb::event::cmap::CmapEvent;
use mongodb::event::EventHandler;
use polymongo::pool::{Builder, ClientSharing, Error, PolyMongo, PoolEventKind};
use polymongo_tests::{test_uri, unique_db};

/// Counts the sockets and driver pools of every tenant client from CMAP events.
#[derive(Default)]
struct SocketCounter {
    open: AtomicI64,
    peak: AtomicI64,
    created: AtomicUsize,
    pools_created: AtomicUsize,
    pools_closed: AtomicUsize,
}

impl SocketCounter {
    fn handler(self: &Arc<Self>) -> EventHandler<CmapEvent> {
        let me = self.clone();
        EventHandler::callback(move |event| match event {
            CmapEvent::ConnectionCreated(_) => {
                me.created.fetch_add(1, SeqCst);
                let now = me.open.fetch_add(1, SeqCst) + 1;
                me.peak.fetch_max(now, SeqCst);
            }
            CmapEvent::ConnectionClosed(_) => {
                me.open.fetch_sub(1, SeqCst);
            }
            CmapEvent::PoolCreated(_) => {
                me.pools_created.fetch_add(1, SeqCst);
            }
            CmapEvent::PoolClosed(_) => {
                me.pools_closed.fetch_add(1, SeqCst);
            }
            _ => {}
        })
    }
}

/// A manager with client sharing on (whatever the environment says) and generous timeouts.
fn sharing_builder(counter: &Arc<SocketCounter>) -> Builder {
    PolyMongo::builder(test_uri())
        .client_sharing(ClientSharing::Cluster)
        .metadata_db(unique_db("meta"))
        .no_idle_timeout()
        .acquire_timeout(Duration::from_secs(20))
        .server_selection_timeout(Duration::from_secs(10))
        .cmap_event_handler(counter.handler())
}

async fn count_in(pm: &PolyMongo, db: &str) -> Result<u64, Error> {
    pm.db(db)?
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tenants_stay_within_the_shared_socket_budget() {
    const SHARED_SOCKETS: u32 = 6;
    const TENANTS: usize = 60;
    const WORKERS: usize = 8;
    let counter = Arc::new(SocketCounter::default());
    let pm = sharing_builder(&counter)
        .max_connections(4)
        .max_pool_size(2)
        .shared_max_pool_size(SHARED_SOCKETS)
        .build()
        .await
        .unwrap();
    let mut events = pm.subscribe();
    let prefix = unique_db("sock");
    let dbs: Arc<Vec<String>> = Arc::new((0..TENANTS).map(|i| format!("{prefix}-{i}")).collect());

    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let pm = pm.clone();
        let dbs = dbs.clone();
        workers.push(tokio::spawn(async move {
            for i in 0..dbs.len() {
                let db = &dbs[(i * 7 + w * 13) % dbs.len()];
                count_in(&pm, db)
                    .await
                    .unwrap_or_else(|e| panic!("operation on {db} failed: {e}"));
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }

    let summary = pm.summary();
    assert!(
        summary.opens >= TENANTS as u64,
        "every tenant's pool was opened at least once: {summary:?}"
    );
    assert!(
        summary.evictions >= (TENANTS - 4) as u64,
        "far more tenants than the cap forced evictions: {summary:?}"
    );
    assert_eq!(pm.shared_clients(), 1, "one client for the one target");
    let peak = counter.peak.load(SeqCst);
    assert!(
        peak >= 1 && peak <= i64::from(SHARED_SOCKETS),
        "sockets peaked at {peak}, budget {SHARED_SOCKETS}"
    );
    assert!(
        counter.created.load(SeqCst) <= SHARED_SOCKETS as usize * 4,
        "sockets are reused, not made per open: {} created for {} opens",
        counter.created.load(SeqCst),
        summary.opens
    );
    assert_eq!(counter.pools_created.load(SeqCst), 1, "one driver pool");
    assert_eq!(
        counter.pools_closed.load(SeqCst),
        0,
        "no eviction closed the shared client"
    );
    let mut evicted = 0;
    while let Ok(event) = events.try_recv() {
        evicted += usize::from(matches!(event.kind, PoolEventKind::Evicted { .. }));
    }
    assert!(evicted >= TENANTS - 4, "eviction events: {evicted}");

    pm.destroy().await.unwrap();
    assert_eq!(
        counter.pools_closed.load(SeqCst),
        1,
        "destroy shuts the shared client down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operations_of_other_tenants_survive_an_eviction_storm() {
    let counter = Arc::new(SocketCounter::default());
    let pm = sharing_builder(&counter)
        .max_connections(3)
        .max_pool_size(2)
        .shared_max_pool_size(8)
        .build()
        .await
        .unwrap();
    let prefix = unique_db("storm");
    // A tenant with a slow-ish stream of work: a cursor read batch by batch while the storm
    // evicts pool after pool on the same shared client.
    let steady = format!("{prefix}-steady");
    let coll = pm.db(&steady).unwrap().collection::<Document>("c");
    let docs: Vec<Document> = (0..40).map(|i| doc! { "i": i }).collect();
    coll.insert_many(docs).await.unwrap();

    let storm = {
        let pm = pm.clone();
        let prefix = prefix.clone();
        tokio::spawn(async move {
            for round in 0..3 {
                for i in 0..20 {
                    let db = format!("{prefix}-s{i}");
                    count_in(&pm, &db).await.unwrap_or_else(|e| {
                        panic!("storm operation on {db} (round {round}) failed: {e}")
                    });
                }
            }
        })
    };
    let mut reads = 0;
    while !storm.is_finished() {
        let found = coll
            .count_documents(doc! { "i": { "$gte": 0 } })
            .await
            .expect("the steady tenant is served during the storm");
        assert_eq!(found, 40);
        reads += 1;
    }
    storm.await.unwrap();
    assert!(reads >= 1);
    let summary = pm.summary();
    assert!(summary.evictions >= 20, "a storm happened: {summary:?}");
    assert_eq!(counter.pools_closed.load(SeqCst), 0);
    // The steady tenant still works on the same shared client afterwards.
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 40);
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_noisy_tenant_cannot_hold_every_shared_socket() {
    let counter = Arc::new(SocketCounter::default());
    let pm = sharing_builder(&counter)
        .max_connections(10)
        .max_pool_size(2)
        .shared_max_pool_size(4)
        .acquire_timeout(Duration::from_millis(600))
        .build()
        .await
        .unwrap();
    let prefix = unique_db("noisy");
    let noisy = pm.db(&format!("{prefix}-noisy")).unwrap();
    let quiet = format!("{prefix}-quiet");

    // The noisy tenant takes its whole share (max_pool_size operations at once).
    let first = noisy.lease().await.unwrap();
    let second = noisy.lease().await.unwrap();

    // A third operation of the noisy tenant waits for its share and then fails clearly.
    let refused = noisy.lease().await.expect_err("over its share");
    assert!(
        matches!(&refused, Error::Timeout(m) if m.contains("max_pool_size")),
        "{refused:?}"
    );

    // Another tenant is served while every noisy operation is still held.
    for _ in 0..5 {
        assert_eq!(count_in(&pm, &quiet).await.unwrap(), 0);
    }
    assert_eq!(noisy.name(), first.db_name());

    // A waiting noisy operation goes ahead as soon as one of its own finishes.
    let waiting = {
        let noisy = noisy.clone();
        tokio::spawn(async move { noisy.lease().await.map(|l| l.db_name().to_string()) })
    };
    drop(first);
    let third = waiting.await.unwrap();
    assert_eq!(third.as_deref().ok(), Some(noisy.name()));
    drop(second);
    assert!(counter.peak.load(SeqCst) <= 4);
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_mode_gives_each_database_its_own_client() {
    let counter = Arc::new(SocketCounter::default());
    let pm = sharing_builder(&counter)
        .client_sharing(ClientSharing::Database)
        .max_connections(2)
        .build()
        .await
        .unwrap();
    let prefix = unique_db("dedicated");
    for i in 0..4 {
        count_in(&pm, &format!("{prefix}-{i}")).await.unwrap();
    }
    assert_eq!(pm.shared_clients(), 0);
    assert_eq!(
        counter.pools_created.load(SeqCst),
        4,
        "one driver pool per open"
    );
    assert!(
        counter.pools_closed.load(SeqCst) >= 2,
        "evictions close dedicated clients"
    );
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_pool_on_a_healthy_shared_client_sends_no_ping() {
    use mongodb::event::command::CommandEvent;
    let pings = Arc::new(AtomicUsize::new(0));
    let counter = Arc::new(SocketCounter::default());
    let seen = pings.clone();
    let pm = sharing_builder(&counter)
        .max_connections(3)
        .command_event_handler(EventHandler::callback(move |event| {
            if let CommandEvent::Started(started) = event {
                if started.command_name == "ping" {
                    seen.fetch_add(1, SeqCst);
                }
            }
        }))
        .build()
        .await
        .unwrap();
    let prefix = unique_db("ping");
    for i in 0..20 {
        count_in(&pm, &format!("{prefix}-{i}")).await.unwrap();
    }
    let summary = pm.summary();
    assert!(summary.opens >= 20, "{summary:?}");
    assert!(
        pings.load(SeqCst) < 5,
        "{} pings for {} opens: only opens before monitoring reports the server ping",
        pings.load(SeqCst),
        summary.opens
    );
    pm.destroy().await.unwrap();
}
