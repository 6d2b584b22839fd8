//! Change-stream delivery from insert to plugin, measured (docs/STREAMS.md, "Measured"):
//! events per second and latency p50/p99, through the `streamer` fixture, beside the driver's
//! own change stream in this process as the baseline. Against mongo-java-server (the harness
//! starts it) or `POLYMONGO_TEST_URI`.
//!
//! ```sh
//! cargo xtask build-plugins
//! cargo run -p polymongo-tests --example stream_rate            # dev profile, like the tests
//! ```
//!
//! Two runs per path: a burst (`BURST` inserts back to back: throughput, latency includes
//! queueing) and a paced run (`PACED` inserts 10 ms apart: latency of a lone event).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bson::{doc, Document};
use common::{Host, Options};
use polymongo::pool::PolyMongo;
use polymongo_tests::mjs::change_stream_uri;
use polymongo_tests::{fixture_wasm, unique_db};
use serde_json::{json, Value};

const BURST: usize = 2000;
const PACED: usize = 200;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// p50 and p99 of `v` (µs), as ms.
fn percentiles(mut v: Vec<i64>) -> (f64, f64) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    (at(0.50), at(0.99))
}

async fn insert_all(pm: &PolyMongo, db: &str, n: usize, gap: Option<Duration>) -> i64 {
    let coll = pm.db(db).unwrap().collection::<Document>("c");
    let start = now_us();
    for i in 0..n {
        coll.insert_one(doc! { "i": i as i64, "t": now_us() })
            .await
            .unwrap();
        if let Some(gap) = gap {
            tokio::time::sleep(gap).await;
        }
    }
    start
}

/// Through a plugin: (events/s, p50 ms, p99 ms).
async fn through_plugin(host: &Host, n: usize, gap: Option<Duration>) -> (f64, f64, f64) {
    let db = unique_db("rate");
    let call = host.call(
        &db,
        "POST",
        "/streamer/rate",
        Some(json!({"coll": "c", "count": n, "wait_ms": 20_000})),
    );
    let write = async {
        let ready = host
            .manager
            .db(&db)
            .unwrap()
            .collection::<Document>("ready");
        while ready.count_documents(doc! {}).await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        insert_all(&host.manager, &db, n, gap).await
    };
    let ((status, report), start) = tokio::join!(call, write);
    assert_eq!(status, 200, "{report}");
    let latencies: Vec<i64> = report["latencies_us"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert_eq!(latencies.len(), n, "every event delivered");
    let last = report["last_delivery_us"].as_i64().unwrap();
    let rate = n as f64 / ((last - start) as f64 / 1e6);
    let (p50, p99) = percentiles(latencies);
    (rate, p50, p99)
}

/// The driver's own change stream in this process (pool API): (events/s, p50 ms, p99 ms).
async fn through_driver(pm: &PolyMongo, n: usize, gap: Option<Duration>) -> (f64, f64, f64) {
    let db = unique_db("rate-driver");
    let mut stream = pm
        .db(&db)
        .unwrap()
        .collection::<Document>("c")
        .watch()
        .await
        .unwrap();
    let read = async {
        let mut latencies = Vec::with_capacity(n);
        let mut last = 0;
        while latencies.len() < n {
            let event = stream.next().await.unwrap().unwrap();
            last = now_us();
            let t = event.full_document.unwrap().get_i64("t").unwrap();
            latencies.push(last - t);
        }
        (latencies, last)
    };
    let ((latencies, last), start) = tokio::join!(read, insert_all(pm, &db, n, gap));
    let rate = n as f64 / ((last - start) as f64 / 1e6);
    let (p50, p99) = percentiles(latencies);
    (rate, p50, p99)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let host = Host::with(Options {
        plugins: vec![("streamer".into(), fixture_wasm("streamer"))],
        manifests: vec![(
            "streamer".into(),
            "[limits]\ndeadline_ms = 300000\nmax_request_result_kb = 1048576\n".into(),
        )],
        uri: Some(change_stream_uri()),
        ..Options::default()
    })
    .await;
    // Warm up both paths (JIT of the Java server, the plugin's compile cache).
    through_plugin(&host, 100, None).await;
    through_driver(&host.manager, 100, None).await;
    let started = Instant::now();
    println!("| path | run | events | events/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    for (run, n, gap) in [
        ("burst", BURST, None),
        ("paced 10 ms", PACED, Some(Duration::from_millis(10))),
    ] {
        for round in 0..2 {
            let (r, p50, p99) = through_driver(&host.manager, n, gap).await;
            println!("| driver (pool API) | {run} #{round} | {n} | {r:.0} | {p50:.2} | {p99:.2} |");
            let (r, p50, p99) = through_plugin(&host, n, gap).await;
            println!("| plugin (streamer) | {run} #{round} | {n} | {r:.0} | {p50:.2} | {p99:.2} |");
        }
    }
    eprintln!("measured in {:.1} s", started.elapsed().as_secs_f64());
}
