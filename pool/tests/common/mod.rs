//! Helpers shared by the connection manager's integration tests (each test file is its own
//! binary and uses some of them).
#![allow(dead_code)]

use std::time::Duration;

use bson::{doc, Document};
use polymongo_pool::{Builder, PolyMongo, PoolEvent, PoolEventKind};
use polymongo_tests::{test_uri, unique_db};
use tokio::sync::broadcast;

/// A manager on the test server with its own metadata database and no background sweeper.
pub fn builder() -> Builder {
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

pub fn drain(rx: &mut broadcast::Receiver<PoolEvent>) -> Vec<PoolEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

pub fn evicted(events: &[PoolEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| matches!(e.kind, PoolEventKind::Evicted { .. }))
        .map(|e| e.db.clone())
        .collect()
}

pub async fn touch(pm: &PolyMongo, db: &str) {
    pm.db(db)
        .unwrap()
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await
        .unwrap_or_else(|e| panic!("operation on {db} failed: {e}"));
}

pub async fn count_in(pm: &PolyMongo, db: &str) -> polymongo_pool::Result<u64> {
    pm.db(db)?
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await
}
