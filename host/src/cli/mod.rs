//! Command-line interface of the `polymongo` binary.

pub mod config;
pub mod replay;
pub mod serve;

use clap::{Parser, Subcommand};

/// polymongo: pooled MongoDB connections for many tenant databases.
#[derive(Parser, Debug)]
#[command(name = "polymongo", version, about)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `polymongo=debug`.
    #[arg(long, env = "POLYMONGO_LOG", default_value = "warn", global = true)]
    pub log: String,
    /// Log format: `text` or `json` (structured, with tenant and plugin fields).
    #[arg(
        long,
        env = "POLYMONGO_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the plugins folder over HTTP: `/{plugin}/...` for the tenant in the tenant
    /// header, `/admin/...`, `/healthz`.
    Serve(serve::ServeArgs),
    /// Replay a tenant-traffic trace (synthetic and seeded, or a file) against eviction
    /// policies (built-in or wasm scorers) with LRU and Bélády's MIN as bounds; prints pool hit
    /// ratios as a markdown table. No database needed.
    Replay(replay::ReplayArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

/// Log output formats.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event, with span fields (tenant, plugin).
    Json,
}

/// Sets up `tracing` output on stderr (never blocking the caller: see
/// [`polymongo::logging`]), with a queue of (lines, KiB). Keep the guard until exit.
pub fn init_logging(
    filter: &str,
    format: LogFormat,
    queue: (usize, usize),
) -> polymongo::logging::SinkGuard {
    polymongo::logging::init(filter, format == LogFormat::Json, queue.0, queue.1)
}
