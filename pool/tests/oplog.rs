//! The oplog change feed (`change_feed = "auto"` / `"oplog"`) against a real FerretDB that
//! keeps an oplog (`--repl-set-name` and a capped `local.oplog.rs`), which has no change
//! streams: events of one collection only, in order, resumable from a token, never across
//! oplog truncation, and the pool watch-protected while a feed lives.

use std::sync::OnceLock;
use std::time::Duration;

use bson::{doc, Bson, Document, RawDocumentBuf, Timestamp};
use mongodb::change_stream::event::ResumeToken;
use mongodb::options::{ChangeStreamOptions, FullDocumentType};
use polymongo_pool::{ChangeFeed, ChangeFeedMode, Error, PolyMongo, OPLOG_TOKEN_FIELD};
use polymongo_tests::{start_process_wide, unique_db, FerretDb};

/// A FerretDB of this test binary that keeps an oplog.
fn oplog_server() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| {
        let uri = start_process_wide(&["--repl-set-name=rs0"])
            .expect("start FerretDB with a replica set name");
        format!("{uri}?directConnection=true")
    })
}

/// Creates `local.oplog.rs` (FerretDB keeps an oplog only once it exists).
async fn ensure_oplog(uri: &str) {
    let client = mongodb::Client::with_uri_str(uri).await.expect("client");
    let local = client.database("local");
    let names = local.list_collection_names().await.expect("list local");
    if !names.iter().any(|n| n == "oplog.rs") {
        // Two tests may race to create it; the loser's "already exists" is fine.
        let _ = local
            .create_collection("oplog.rs")
            .capped(true)
            .size(64 * 1024 * 1024)
            .await;
    }
}

async fn manager(uri: &str, mode: ChangeFeedMode) -> PolyMongo {
    PolyMongo::builder(uri)
        .metadata_db(unique_db("meta"))
        .no_idle_timeout()
        .change_feed(mode)
        .build()
        .await
        .expect("manager")
}

fn options(token: Option<ResumeToken>) -> ChangeStreamOptions {
    ChangeStreamOptions::builder()
        .full_document(Some(FullDocumentType::UpdateLookup))
        .resume_after(token)
        .build()
}

/// The next event, failing the test after a generous wait.
async fn next_event(feed: &mut ChangeFeed) -> Document {
    let event = tokio::time::timeout(Duration::from_secs(15), feed.next())
        .await
        .expect("an event within 15 s")
        .expect("the feed is open")
        .expect("no error");
    event.to_document().expect("a readable event")
}

/// Whether the feed yields anything within `wait`.
async fn quiet_for(feed: &mut ChangeFeed, wait: Duration) -> Option<RawDocumentBuf> {
    match tokio::time::timeout(wait, feed.next()).await {
        Ok(Some(Ok(event))) => Some(event),
        _ => None,
    }
}

#[tokio::test]
async fn the_feed_delivers_one_collections_changes_in_order_and_nothing_else() {
    let uri = oplog_server();
    ensure_oplog(uri).await;
    let pm = manager(uri, ChangeFeedMode::Auto).await;
    let (mine, other) = (unique_db("oplog-a"), unique_db("oplog-b"));
    let items = pm.db(&mine).unwrap().collection::<Document>("items");
    let mut feed = items
        .watch_events(Vec::new(), options(None))
        .await
        .expect("an oplog feed on a server without change streams");
    assert_eq!(feed.mode(), ChangeFeedMode::Oplog);

    items.insert_one(doc! { "_id": 1, "n": 1 }).await.unwrap();
    // Another tenant's database and another collection of this one: never seen.
    let theirs = pm.db(&other).unwrap().collection::<Document>("items");
    theirs
        .insert_one(doc! { "_id": 1, "secret": true })
        .await
        .unwrap();
    let notes = pm.db(&mine).unwrap().collection::<Document>("notes");
    notes.insert_one(doc! { "_id": 9 }).await.unwrap();
    items
        .update_one(doc! { "_id": 1 }, doc! { "$set": { "n": 2 } }, None)
        .await
        .unwrap();
    items.delete_one(doc! { "_id": 1 }).await.unwrap();

    let insert = next_event(&mut feed).await;
    assert_eq!(insert.get_str("operationType"), Ok("insert"));
    assert_eq!(insert.get_document("documentKey"), Ok(&doc! { "_id": 1 }));
    assert_eq!(
        insert.get_document("fullDocument"),
        Ok(&doc! { "_id": 1, "n": 1 })
    );
    let ns = insert.get_document("ns").unwrap();
    assert_eq!(ns, &doc! { "db": mine.as_str(), "coll": "items" });
    assert!(insert
        .get_document("_id")
        .unwrap()
        .contains_key(OPLOG_TOKEN_FIELD));

    let update = next_event(&mut feed).await;
    assert_eq!(update.get_str("operationType"), Ok("update"));
    assert_eq!(update.get_document("documentKey"), Ok(&doc! { "_id": 1 }));
    let delete = next_event(&mut feed).await;
    assert_eq!(delete.get_str("operationType"), Ok("delete"));
    assert_eq!(delete.get_document("documentKey"), Ok(&doc! { "_id": 1 }));

    let stray = quiet_for(&mut feed, Duration::from_millis(800)).await;
    assert!(stray.is_none(), "an event of another namespace: {stray:?}");
    pm.destroy().await.expect("destroy");
}

#[tokio::test]
async fn resuming_from_a_token_loses_and_repeats_no_event() {
    let uri = oplog_server();
    ensure_oplog(uri).await;
    let pm = manager(uri, ChangeFeedMode::Oplog).await;
    let db = unique_db("oplog-resume");
    let items = pm.db(&db).unwrap().collection::<Document>("items");
    let mut feed = items.watch_events(Vec::new(), options(None)).await.unwrap();
    items.insert_one(doc! { "_id": 0 }).await.unwrap();
    assert_eq!(
        next_event(&mut feed).await.get_document("documentKey"),
        Ok(&doc! { "_id": 0 })
    );
    let token = feed.resume_token().expect("a token after an event");
    drop(feed);

    // Written while nobody watches.
    for i in 1..=5 {
        items.insert_one(doc! { "_id": i }).await.unwrap();
    }
    let mut feed = items
        .watch_events(Vec::new(), options(Some(token)))
        .await
        .unwrap();
    for i in 1..=5 {
        let event = next_event(&mut feed).await;
        assert_eq!(event.get_document("documentKey"), Ok(&doc! { "_id": i }));
    }
    let stray = quiet_for(&mut feed, Duration::from_millis(800)).await;
    assert!(stray.is_none(), "a repeated or extra event: {stray:?}");
    pm.destroy().await.expect("destroy");
}

#[tokio::test]
async fn a_resume_point_the_oplog_no_longer_holds_is_an_error_not_a_gap() {
    let uri = oplog_server();
    ensure_oplog(uri).await;
    let pm = manager(uri, ChangeFeedMode::Oplog).await;
    let db = unique_db("oplog-lost");
    let items = pm.db(&db).unwrap().collection::<Document>("items");
    // Something in the oplog newer than the token.
    items.insert_one(doc! { "_id": 1 }).await.unwrap();
    let ancient: ResumeToken = bson::from_bson(Bson::Document(
        doc! { OPLOG_TOKEN_FIELD: Timestamp { time: 1, increment: 1 } },
    ))
    .unwrap();
    let err = items
        .watch_events(Vec::new(), options(Some(ancient)))
        .await
        .expect_err("the resume point was truncated away");
    match &err {
        Error::Server {
            code, code_name, ..
        } => {
            assert_eq!(*code, 286);
            assert_eq!(code_name.as_deref(), Some("ChangeStreamHistoryLost"));
        }
        other => panic!("expected ChangeStreamHistoryLost, got {other:?}"),
    }
    // A change stream's token cannot resume an oplog feed either.
    let foreign: ResumeToken = bson::from_bson(Bson::Document(doc! { "_data": "826B15" })).unwrap();
    let err = items
        .watch_events(Vec::new(), options(Some(foreign)))
        .await
        .expect_err("not an oplog token");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    pm.destroy().await.expect("destroy");
}

#[tokio::test]
async fn the_pool_is_watch_protected_while_a_feed_lives() {
    let uri = oplog_server();
    ensure_oplog(uri).await;
    let pm = manager(uri, ChangeFeedMode::Auto).await;
    let db = unique_db("oplog-protect");
    let items = pm.db(&db).unwrap().collection::<Document>("items");
    let feed = items.watch_events(Vec::new(), options(None)).await.unwrap();
    let watched = |pm: &PolyMongo| {
        pm.stats()
            .into_iter()
            .find(|s| s.db_name == db)
            .map(|s| s.watch_count)
    };
    assert_eq!(watched(&pm), Some(1));
    drop(feed);
    assert_eq!(watched(&pm), Some(0));
    pm.destroy().await.expect("destroy");
}

#[tokio::test]
async fn the_oplog_feed_refuses_a_pipeline_and_streams_mode_stays_unsupported() {
    let uri = oplog_server();
    ensure_oplog(uri).await;
    let pm = manager(uri, ChangeFeedMode::Oplog).await;
    let items = pm
        .db(&unique_db("oplog-pipe"))
        .unwrap()
        .collection::<Document>("items");
    let pipeline = vec![doc! { "$match": { "operationType": "insert" } }];
    let err = items
        .watch_events(pipeline, options(None))
        .await
        .expect_err("no pipeline on the oplog feed");
    assert!(
        matches!(&err, Error::Unsupported(m) if m.contains("pipeline")),
        "{err:?}"
    );
    pm.destroy().await.expect("destroy");

    // The default mode never falls back: FerretDB has no change streams.
    let pm = manager(uri, ChangeFeedMode::Streams).await;
    let items = pm
        .db(&unique_db("oplog-strict"))
        .unwrap()
        .collection::<Document>("items");
    let err = items
        .watch_events(Vec::new(), options(None))
        .await
        .expect_err("streams only");
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    pm.destroy().await.expect("destroy");
}

#[tokio::test]
async fn auto_on_a_server_without_an_oplog_says_why_it_is_unsupported() {
    // A server of its own that never gets a `local.oplog.rs`.
    let server = FerretDb::start_temp().expect("start FerretDB");
    let pm = manager(&server.uri(), ChangeFeedMode::Auto).await;
    let items = pm
        .db(&unique_db("no-oplog"))
        .unwrap()
        .collection::<Document>("items");
    let err = items
        .watch_events(Vec::new(), options(None))
        .await
        .expect_err("neither change streams nor an oplog");
    assert!(
        matches!(&err, Error::Unsupported(m) if m.contains("oplog")),
        "{err:?}"
    );
    pm.destroy().await.expect("destroy");
}
