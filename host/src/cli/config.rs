//! `polymongo config check`: the effective configuration, secrets masked, and its problems.

use anyhow::Result;
use clap::Subcommand;

use super::serve::ServeArgs;

/// `config` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration (file, then `POLYMONGO_*` variables, then flags) with
    /// secrets masked, and check it without connecting anywhere. Exits non-zero if invalid.
    Check(ServeArgs),
}

/// Runs a `config` subcommand.
pub fn run(command: ConfigCommand) -> Result<()> {
    match command {
        ConfigCommand::Check(args) => {
            let config = args.effective_config()?;
            print!("{}", config.to_masked_toml());
            match config.check() {
                Ok(()) => {
                    println!("# configuration OK");
                    Ok(())
                }
                Err(e) => {
                    println!("# configuration INVALID: {e}");
                    Err(e.into())
                }
            }
        }
    }
}
