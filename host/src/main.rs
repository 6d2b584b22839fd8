//! The `polymongo` binary.

mod cli;

use anyhow::Result;
use clap::Parser;

#[tokio::main]
async fn main() -> Result<()> {
    let args = cli::Cli::parse();
    // `serve` may also choose JSON logs in its configuration file (`log_format = "json"`),
    // and the size of the log queue (`logs.queue_lines`, `logs.queue_kb`).
    let config = match &args.command {
        cli::Command::Serve(serve) => serve.effective_config().ok(),
        _ => None,
    };
    let json_from_config = config
        .as_ref()
        .and_then(|c| c.json_logs().ok())
        .unwrap_or(false);
    let queue = config.as_ref().map_or(
        (
            polymongo::logging::DEFAULT_QUEUE_LINES,
            polymongo::logging::DEFAULT_QUEUE_KB,
        ),
        |c| (c.log_queue_lines(), c.log_queue_kb()),
    );
    let format = if json_from_config {
        cli::LogFormat::Json
    } else {
        args.log_format
    };
    let _log_guard = cli::init_logging(&args.log, format, queue);
    match args.command {
        cli::Command::Serve(serve) => cli::serve::run(serve).await,
        cli::Command::Config(command) => cli::config::run(command),
        cli::Command::Replay(replay) => cli::replay::run(replay),
    }
}
