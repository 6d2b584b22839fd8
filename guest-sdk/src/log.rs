//! Logging into the host's log, where each line is tagged with the plugin and the tenant.
//!
//! ```no_run
//! polymongo_guest::log::info("user created");
//! polymongo_guest::log::warn(format!("slow query: {} ms", 120));
//! ```

use crate::raw::polymongo::plugin0_1_0::log as wit;

pub use wit::Level;

/// Writes `message` at `level`.
pub fn log(level: Level, message: impl AsRef<str>) {
    wit::log(level, message.as_ref());
}

/// Writes `message` at trace level.
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message);
}

/// Writes `message` at debug level.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// Writes `message` at info level.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// Writes `message` at warn level.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// Writes `message` at error level.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}
