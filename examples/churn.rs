//! The churn demo: many tenants, a small cap, and a live account of what the connection
//! manager does (opens, evictions, the pinned database that stays).
//!
//! ```sh
//! cargo xtask demo                                  # starts a local FerretDB and runs this
//! cargo run --example churn -- --tenants 100 --max-connections 10   # against $MONGODB_URI
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bson::{doc, Document};
use clap::Parser;
use polymongo_pool::{PolyMongo, PoolEventKind};

/// Options of the demo.
#[derive(Parser, Debug)]
struct DemoArgs {
    /// MongoDB URI (default: `$MONGODB_URI`, else the local FerretDB of `cargo xtask db`).
    #[arg(long, default_value_t = polymongo_examples::mongo_uri())]
    uri: String,
    /// Number of tenant databases.
    #[arg(long, default_value_t = 40)]
    tenants: usize,
    /// Most pools open at once.
    #[arg(long, default_value_t = 5)]
    max_connections: usize,
    /// Operations to run in total.
    #[arg(long, default_value_t = 400)]
    operations: usize,
    /// Concurrent workers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seed of the traffic generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// A small deterministic generator (xorshift64*), enough for demo traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A tenant index with Zipf-like popularity (tenant i has weight 1/(i+1)).
    fn zipf(&mut self, weights: &[f64], total: f64) -> usize {
        let mut x = (self.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = DemoArgs::parse();
    let pm = PolyMongo::builder(&args.uri)
        .max_connections(args.max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .await
        .context("starting the connection manager")?;
    let tenants: Arc<Vec<String>> = Arc::new(
        (0..args.tenants)
            .map(|i| format!("demo-tenant-{i:03}"))
            .collect(),
    );
    println!(
        "churn demo: {} tenants, max_connections {}, {} operations from {} workers",
        args.tenants, args.max_connections, args.operations, args.concurrency
    );
    pm.set_priority(&tenants[0], -1).await?;
    println!(
        "{} is pinned (priority -1): it is never evicted",
        tenants[0]
    );

    let mut events = pm.subscribe();
    let printer = tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            match event.kind {
                PoolEventKind::Opened { took } => println!("  open    {} ({took:.1?})", event.db),
                PoolEventKind::Evicted {
                    score,
                    for_db,
                    policy,
                } => println!(
                    "  evict   {} (lowest {policy} score {score:.3}) to make room for {for_db}",
                    event.db
                ),
                PoolEventKind::IdleClosed { idle_ms } => {
                    println!("  idle    {} closed after {idle_ms} ms", event.db)
                }
                PoolEventKind::Closed { reason } => println!("  close   {} ({reason:?})", event.db),
                PoolEventKind::OpenFailed { error } => println!("  FAILED  {}: {error}", event.db),
            }
        }
    });

    let weights: Arc<Vec<f64>> =
        Arc::new((0..args.tenants).map(|i| 1.0 / (i as f64 + 1.0)).collect());
    let total: f64 = weights.iter().sum();
    let per_worker = args.operations.div_ceil(args.concurrency.max(1));
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|w| {
            let (pm, tenants, weights) = (pm.clone(), tenants.clone(), weights.clone());
            let mut rng = Rng(args.seed.wrapping_add((w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
            tokio::spawn(async move {
                for op in 0..per_worker {
                    let tenant = &tenants[rng.zipf(&weights, total)];
                    let orders = pm.db(tenant)?.collection::<Document>("orders");
                    orders
                        .insert_one(doc! { "worker": w as i64, "op": op as i64, "at": bson::DateTime::now() })
                        .await?;
                    orders.count_documents(doc! {}).await?;
                }
                Ok::<_, polymongo_pool::Error>(())
            })
        })
        .collect();
    for w in workers {
        w.await.context("worker panicked")??;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    println!(
        "\nopen pools ({} of at most {}):",
        pm.open_pools(),
        args.max_connections
    );
    println!(
        "  {:<18} {:>8} {:>6} {:>12} {:>9} {:>10}  protected",
        "database", "priority", "uses", "avg_interval", "idle_ms", "score"
    );
    for s in pm.stats() {
        println!(
            "  {:<18} {:>8} {:>6} {:>12.1} {:>9} {:>10.3}  {}",
            s.db_name,
            s.priority,
            s.use_count,
            s.avg_interval,
            s.idle_time,
            s.score,
            s.protected.map(|p| format!("{p:?}")).unwrap_or_default()
        );
    }
    let summary = pm.summary();
    println!(
        "\nopens {}, evictions {}, idle closes {}, hits {}, misses {}, hit ratio {:.1}%",
        summary.opens,
        summary.evictions,
        summary.idle_closes,
        summary.hits,
        summary.misses,
        100.0 * summary.hits as f64 / (summary.hits + summary.misses).max(1) as f64
    );
    pm.destroy().await?;
    printer.abort();
    Ok(())
}
