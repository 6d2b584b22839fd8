//! The `polymongo` binary.

mod cli;

use anyhow::Result;
use clap::Parser;

#[tokio::main]
async fn main() -> Result<()> {
    let args = cli::Cli::parse();
    cli::init_logging(&args.log);
    match args.command {
        cli::Command::Demo(demo) => cli::demo::run(demo).await,
        cli::Command::Serve(serve) => cli::serve::run(serve).await,
    }
}
