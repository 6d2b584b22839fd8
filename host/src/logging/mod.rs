//! The host's own log output: `tracing` events on stderr, as text or JSON.
//!
//! Hardened against what plugins and clients put into logs:
//! - the sink never blocks a worker: lines go through a bounded queue to a writer thread, and
//!   are dropped (and counted, [`dropped_lines`]) when stderr does not keep up ([`sink`]);
//! - in text logs every field value has its control characters escaped, so a plugin's
//!   message cannot forge log lines ([`escape`]); JSON logs are escaped by serde;
//! - no ANSI colours unless stderr is a terminal.
//!
//! Plugin log lines are also rate-limited per plugin and tenant before they get here (see
//! `runtime::LogLimits`).

pub mod escape;
pub mod sink;

use std::io::IsTerminal;

pub use escape::{escape_control, EscapedFields};
pub use sink::{dropped_lines, NonBlockingSink, SinkGuard};

/// Default for `logs.queue_lines`: log lines waiting to be written to stderr before new ones
/// are dropped.
pub const DEFAULT_QUEUE_LINES: usize = 8192;

/// Default for `logs.queue_kb`: bytes of log lines waiting to be written, in KiB.
pub const DEFAULT_QUEUE_KB: usize = 8192;

/// Sets up the global `tracing` subscriber writing to stderr through a [`NonBlockingSink`]
/// of `queue_lines` lines and `queue_kb` KiB. `filter` is an `EnvFilter` directive (`warn`
/// if it does not parse). Keep the returned guard alive until exit: dropping it flushes what
/// is queued (briefly).
pub fn init(filter: &str, json: bool, queue_lines: usize, queue_kb: usize) -> SinkGuard {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = std::io::stderr().is_terminal();
    let (sink, guard) = NonBlockingSink::spawn(
        std::io::stderr(),
        queue_lines,
        queue_kb.saturating_mul(1024),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink);
    let installed = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_ansi(ansi).fmt_fields(EscapedFields).try_init()
    };
    if let Err(e) = installed {
        eprintln!("polymongo: logging is already set up: {e}");
    }
    guard
}
