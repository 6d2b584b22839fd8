//! Embedding the connection manager in your own Rust service (the README's snippet, runnable).
//!
//! ```sh
//! cargo xtask db                      # terminal 1: a local FerretDB on 127.0.0.1:27017
//! cargo run --example embed           # terminal 2 (or MONGODB_URI=mongodb://… cargo run …)
//! ```
//!
//! One pool per tenant database, at most `max_connections` open at once: the third tenant's
//! first operation evicts the pool worth least; a pinned database (priority -1) is never
//! evicted.

use std::time::Duration;

use anyhow::Result;
use bson::{doc, Document};
use polymongo_pool::PolyMongo;

#[tokio::main]
async fn main() -> Result<()> {
    let manager = PolyMongo::builder(polymongo_examples::mongo_uri())
        .max_connections(2) // hard cap on open per-database pools
        .idle_timeout(Duration::from_secs(600)) // close pools idle this long
        .metadata_db("polymongo-metadata") // where priorities persist
        .max_pool_size(5) // sockets per database pool
        .build()
        .await?;

    // Pinned: never evicted, never idle-closed (persists in the metadata database).
    manager.set_priority("example-main", -1).await?;
    let main = manager.db("example-main")?.collection::<Document>("events");
    main.insert_one(doc! { "kind": "started" }).await?;

    for tenant in ["example-acme", "example-globex", "example-initech"] {
        let users = manager.db(tenant)?.collection::<Document>("users");
        users.delete_many(doc! {}).await?;
        users
            .insert_one(doc! { "name": "Alice", "tenant": tenant })
            .await?;
        let count = users.count_documents(doc! {}).await?;
        println!("{tenant}: {count} user(s)");
    }

    // The cap of 2 held: example-main (pinned) and the most recent tenant are open; the
    // earlier tenants were evicted to make room.
    println!("\nopen pools:");
    for pool in manager.stats() {
        println!(
            "  {:<16} uses={} priority={} score={:.2} protected={:?}",
            pool.db_name, pool.use_count, pool.priority, pool.score, pool.protected
        );
    }
    let summary = manager.summary();
    println!(
        "{} open, opens={} evictions={}",
        summary.open_pools, summary.opens, summary.evictions
    );

    manager.set_priority("example-main", 100).await?; // back to the default
    manager.destroy().await?;
    Ok(())
}
