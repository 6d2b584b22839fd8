//! Helpers shared by the runnable examples (`cargo run --example embed`, `--example churn`).

/// The MongoDB URI the examples connect to: `$MONGODB_URI`, else the local FerretDB that
/// `cargo xtask db` runs on the default port.
pub fn mongo_uri() -> String {
    std::env::var("MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".to_string())
}
