//! Command-line interface of the `polymongo` binary.

pub mod demo;
pub mod serve;

use clap::{Parser, Subcommand};

/// polymongo: pooled MongoDB connections for many tenant databases.
#[derive(Parser, Debug)]
#[command(name = "polymongo", version, about)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `polymongo=debug`.
    #[arg(long, env = "POLYMONGO_LOG", default_value = "warn", global = true)]
    pub log: String,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Drive many tenant databases through the connection manager with a small cap and
    /// print what it does (opens, evictions, stats).
    Demo(demo::DemoArgs),
    /// Serve the plugins folder over HTTP: `/{plugin}/...` for the tenant in the tenant
    /// header, `/admin/...`, `/healthz`.
    Serve(serve::ServeArgs),
}

/// Sets up `tracing` output on stderr.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
