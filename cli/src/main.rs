//! `symbiont`: the operator's command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod genesis;
mod keys;
mod output;
mod preview;

/// Symbiont: a permissioned ledger on which the firms of an industrial park
/// trade surplus energy and resources, with contracts enforced by rules that
/// anyone can replay.
#[derive(Parser)]
#[command(name = "symbiont", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate and inspect ed25519 key files (PKCS#8 PEM).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Validate a genesis file and print its hash.
    #[command(subcommand)]
    Genesis(genesis::GenesisCommand),
    /// Preview a contract period's settlement or a pool split, offline.
    #[command(subcommand)]
    Preview(preview::PreviewCommand),
}

fn main() -> ExitCode {
    // Help and usage errors: clap prints them and exits, ignoring a closed pipe.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keys(command) => keys::run(command),
        Command::Genesis(command) => genesis::run(command),
        Command::Preview(command) => preview::run(command),
    };
    output::exit_code(result.and_then(|()| Ok(output::flush()?)))
}
