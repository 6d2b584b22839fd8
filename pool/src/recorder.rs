//! The request stream, for a trace of the pools' traffic: every counted use of a database
//! (an operation, a cursor batch, a lease) in the order the manager sees them. Replaying it
//! (`polymongo replay --trace`) measures eviction policies on a host's own traffic.

/// Receives every counted use of a database (a hit on an open pool, or a request that opens
/// the pool or waits for it), once per use, in the manager's order.
pub trait AccessRecorder: Send + Sync + 'static {
    /// One use of database `db`. Called under the manager's state lock, on the request
    /// path: it must return at once (queue the name; never block, never do I/O).
    fn record(&self, db: &str);
}
