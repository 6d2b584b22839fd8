//! Pool lifecycle events, broadcast to every subscriber (metrics, dashboard, tests).

use std::time::Duration;

use super::error::Error;

/// Something that happened to a database's pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolEvent {
    /// When it happened, in epoch milliseconds (manager clock).
    pub at_ms: u64,
    /// The database concerned.
    pub db: String,
    /// What happened.
    pub kind: PoolEventKind,
}

/// The kinds of [`PoolEvent`].
#[derive(Debug, Clone, PartialEq)]
pub enum PoolEventKind {
    /// The pool was opened.
    Opened {
        /// Time taken to open (including the verification ping).
        took: Duration,
    },
    /// Opening the pool failed.
    OpenFailed {
        /// Why.
        error: Error,
    },
    /// The pool was closed to make room for another database.
    Evicted {
        /// The policy that chose it.
        policy: String,
        /// Its score when chosen (lowest among the evictable pools).
        score: f64,
        /// The database that needed the slot.
        for_db: String,
    },
    /// The pool was closed after sitting idle.
    IdleClosed {
        /// How long it had been idle, in milliseconds.
        idle_ms: u64,
    },
    /// The pool was closed on request or by `destroy()`.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Why a pool was closed outside eviction and idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// `close_connection` was called.
    Requested,
    /// The manager was destroyed.
    Destroyed,
}
