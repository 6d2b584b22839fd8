//! A pool's life against a real server (FerretDB by default, or POLYMONGO_TEST_URI): idle
//! closing, stored priorities, name checks, destroy, a server that dies and comes back,
//! secrets kept out of logs, and configuration errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use polymongo_pool::{
    CloseReason, ConsumerKey, Error, ManualClock, PolyMongo, PoolEventKind, DATABASES_COLLECTION,
    SUBSCRIPTIONS_COLLECTION,
};
use polymongo_tests::{skip_loudly, test_uri, unique_db, using_ferretdb, FerretDb};

mod common;
use common::{builder, count_in, drain, touch};

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
async fn consumer_resume_tokens_persist_per_consumer_and_survive_a_new_manager() {
    let meta = unique_db("meta-tokens");
    let pm = builder().metadata_db(&meta).build().await.unwrap();
    let key = ConsumerKey::new("orders", "new-orders", "acme");
    let other = ConsumerKey::new("orders", "new-orders", "globex");
    assert_eq!(pm.load_resume_token(&key).await.unwrap(), None, "none yet");
    pm.save_resume_token(&key, &doc! { "_data": "01" })
        .await
        .unwrap();
    pm.save_resume_token(&key, &doc! { "_data": "02" })
        .await
        .unwrap();
    pm.save_resume_token(&other, &doc! { "_data": "g1" })
        .await
        .unwrap();
    assert_eq!(
        pm.load_resume_token(&key).await.unwrap(),
        Some(doc! { "_data": "02" }),
        "the latest token, per consumer"
    );
    pm.destroy().await.unwrap();
    assert!(pm.load_resume_token(&key).await.is_err(), "destroyed");

    let again = builder().metadata_db(&meta).build().await.unwrap();
    assert_eq!(
        again.load_resume_token(&other).await.unwrap(),
        Some(doc! { "_data": "g1" }),
        "survives a restart"
    );
    let client = mongodb::Client::with_uri_str(test_uri()).await.unwrap();
    let stored = client
        .database(&meta)
        .collection::<Document>(SUBSCRIPTIONS_COLLECTION)
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(stored, 2, "one document per consumer");
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
    let config = polymongo_pool::Config::new(&uri);
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
