//! Typed errors of the connection manager, and the mapping from driver errors.

use std::time::Duration;

use mongodb::error::{ErrorKind, WriteFailure};

use super::secret::Redactor;

/// A result with the connection manager's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the connection manager.
///
/// Messages never contain the password of the configured URI: every driver message goes
/// through the manager's redactor before it is stored here.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The database name is not acceptable (empty, too long, forbidden character, ...).
    #[error("invalid database name {name:?}: {reason}")]
    InvalidDatabaseName {
        /// The rejected name (printed with escapes).
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The name is a system or metadata database and tenant use of it is not allowed.
    #[error("database {0:?} is reserved and cannot be used as a tenant database")]
    ReservedDatabase(String),
    /// A priority below -1 was given.
    #[error("invalid priority {0}: priorities are -1 (never evict) or greater")]
    InvalidPriority(i32),
    /// Every open pool is protected and none became evictable within the wait.
    #[error(
        "connection limit reached: all {max} pools are protected (pinned, watched or busy); \
         waited {waited:?} for one to become evictable"
    )]
    LimitReached {
        /// The configured `max_connections`.
        max: usize,
        /// How long the request waited before giving up.
        waited: Duration,
    },
    /// The manager was destroyed; no further calls are possible.
    #[error("the connection manager has been destroyed")]
    Destroyed,
    /// The server does not support what was asked (change streams, transactions, ...).
    #[error("unsupported by this server: {0}")]
    Unsupported(String),
    /// The database server could not be reached.
    #[error("database server unavailable: {0}")]
    Unavailable(String),
    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A caller-supplied argument (filter, document, option) was rejected.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A unique index rejected a write.
    #[error("duplicate key: {0}")]
    DuplicateKey(String),
    /// The server answered with an error.
    #[error("server error {code}{}: {message}", code_name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default())]
    Server {
        /// The server's numeric error code.
        code: i32,
        /// The server's symbolic error name, when it sent one.
        code_name: Option<String>,
        /// The server's message.
        message: String,
    },
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Something failed inside the driver that fits no other kind.
    #[error("driver error: {0}")]
    Driver(String),
}

/// Server error codes that mean "this server cannot do that".
const UNSUPPORTED_CODES: &[i32] = &[
    20,    // IllegalOperation (e.g. transactions on a standalone server)
    115,   // CommandNotSupported
    238,   // NotImplemented (FerretDB)
    40573, // change streams only supported on replica sets
];

/// Server error codes that mean "the server is not reachable or not ready".
const UNAVAILABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
];

const DUPLICATE_KEY: i32 = 11000;
/// The server stopped the operation at its `maxTimeMS`.
const MAX_TIME_EXPIRED: i32 = 50;

impl Error {
    /// Maps a driver error to a typed error, scrubbing secrets from every message.
    pub(crate) fn from_driver(err: mongodb::error::Error, redactor: &Redactor) -> Self {
        let clean = |s: &str| redactor.scrub(s);
        match err.kind.as_ref() {
            ErrorKind::InvalidArgument { message, .. } => Error::InvalidArgument(clean(message)),
            ErrorKind::BsonSerialization(e) => Error::InvalidArgument(clean(&e.to_string())),
            ErrorKind::BsonDeserialization(e) => Error::InvalidArgument(format!(
                "document does not match the expected type: {}",
                clean(&e.to_string())
            )),
            ErrorKind::Command(c) => {
                Self::from_code(c.code, Some(c.code_name.clone()), &clean(&c.message))
            }
            ErrorKind::Write(WriteFailure::WriteError(w)) => {
                Self::from_code(w.code, w.code_name.clone(), &clean(&w.message))
            }
            ErrorKind::Write(WriteFailure::WriteConcernError(w)) => {
                Self::from_code(w.code, Some(w.code_name.clone()), &clean(&w.message))
            }
            ErrorKind::InsertMany(e) => match e.write_errors.as_deref().and_then(|w| w.first()) {
                Some(w) => Self::from_code(
                    w.code,
                    w.code_name.clone(),
                    &format!("document {}: {}", w.index, clean(&w.message)),
                ),
                None => Error::Driver(clean(&err.to_string())),
            },
            ErrorKind::ServerSelection { message, .. } => Error::Unavailable(clean(message)),
            ErrorKind::Io(e) => Error::Unavailable(clean(&e.to_string())),
            ErrorKind::ConnectionPoolCleared { message, .. } => Error::Unavailable(clean(message)),
            ErrorKind::DnsResolve { message, .. } => Error::Unavailable(clean(message)),
            ErrorKind::Authentication { message, .. } => {
                Error::Unavailable(format!("authentication failed: {}", clean(message)))
            }
            ErrorKind::Shutdown => {
                Error::Unavailable("the pool was closed during the operation".into())
            }
            ErrorKind::SessionsNotSupported => {
                Error::Unsupported("sessions are not supported by this server".into())
            }
            ErrorKind::Transaction { message, .. } => Error::Unsupported(clean(message)),
            ErrorKind::IncompatibleServer { message, .. } => Error::Unsupported(clean(message)),
            _ => Error::Driver(clean(&err.to_string())),
        }
    }

    pub(crate) fn from_code(code: i32, code_name: Option<String>, message: &str) -> Self {
        // FerretDB 1.x (SQLite backend) reports some unique-index violations (in updates) as
        // a generic error 1 carrying SQLite's message instead of code 11000.
        let sqlite_unique = code == 1 && message.contains("UNIQUE constraint failed");
        if code == DUPLICATE_KEY || sqlite_unique {
            Error::DuplicateKey(message.to_string())
        } else if code == MAX_TIME_EXPIRED {
            Error::Timeout(format!(
                "the server stopped the operation at its time limit: {message}"
            ))
        } else if UNSUPPORTED_CODES.contains(&code) {
            Error::Unsupported(message.to_string())
        } else if UNAVAILABLE_CODES.contains(&code) {
            Error::Unavailable(message.to_string())
        } else {
            Error::Server {
                code,
                code_name: code_name.filter(|n| !n.is_empty()),
                message: message.to_string(),
            }
        }
    }

    /// A short, stable name of the error kind (for metrics, logs and the plugin boundary).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::InvalidDatabaseName { .. } => "invalid_database_name",
            Error::ReservedDatabase(_) => "reserved_database",
            Error::InvalidPriority(_) => "invalid_priority",
            Error::LimitReached { .. } => "limit_reached",
            Error::Destroyed => "destroyed",
            Error::Unsupported(_) => "unsupported",
            Error::Unavailable(_) => "unavailable",
            Error::Timeout(_) => "timeout",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::DuplicateKey(_) => "duplicate_key",
            Error::Server { .. } => "server",
            Error::Config(_) => "config",
            Error::Driver(_) => "driver",
        }
    }
}
