//! Set-up shared by the benchmarks: the runtime they run on and a connection manager whose
//! metadata goes to a fresh database of the test server.

use polymongo::pool::PolyMongo;

/// A multi-threaded tokio runtime with two workers (the machine has two cores).
pub fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A connection manager on `uri` with default settings and its own metadata database.
pub async fn manager(uri: &str) -> PolyMongo {
    PolyMongo::builder(uri)
        .metadata_db(polymongo_tests::unique_db("bench-meta"))
        .build()
        .await
        .expect("manager")
}
