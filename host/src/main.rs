//! The `polymongo` binary.

mod cli;

use anyhow::Result;
use clap::Parser;

#[tokio::main]
async fn main() -> Result<()> {
    let args = cli::Cli::parse();
    // `serve` may also choose JSON logs in its configuration file (`log_format = "json"`).
    let json_from_config = match &args.command {
        cli::Command::Serve(serve) => serve
            .effective_config()
            .ok()
            .and_then(|c| c.json_logs().ok())
            .unwrap_or(false),
        _ => false,
    };
    let format = if json_from_config {
        cli::LogFormat::Json
    } else {
        args.log_format
    };
    cli::init_logging(&args.log, format);
    match args.command {
        cli::Command::Demo(demo) => cli::demo::run(demo).await,
        cli::Command::Serve(serve) => cli::serve::run(serve).await,
        cli::Command::Config(command) => cli::config::run(command),
        cli::Command::Replay(replay) => cli::replay::run(replay),
    }
}
