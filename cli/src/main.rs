//! `symbiont`: the operator's command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod audit;
mod client;
mod events;
mod export;
mod firm;
mod genesis;
mod keys;
mod market;
mod output;
mod preview;
mod status;
mod units;

/// Symbiont: a permissioned ledger on which the firms of an industrial park
/// trade surplus energy and resources, with contracts enforced by rules that
/// anyone can replay.
///
/// Commands that talk to a node use --node; commands that submit a
/// transaction sign it locally with --key and wait until it is committed
/// (exit status 0 when it was applied, 1 when it failed, was refused or
/// timed out).
#[derive(Parser)]
#[command(name = "symbiont", version, propagate_version = true)]
struct Cli {
    /// The node's gRPC address.
    #[arg(
        long,
        global = true,
        env = "SYMBIONT_NODE",
        default_value = "http://127.0.0.1:9090",
        value_name = "URL"
    )]
    node: String,
    /// The signer's key file (PKCS#8 PEM): a firm admin's or operator's key.
    /// Transactions are signed here; the key never leaves this machine.
    #[arg(long, global = true, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Print the result as JSON (events: one JSON object per line).
    #[arg(long, global = true)]
    json: bool,
    /// How long a command that submits a transaction waits for it to be
    /// committed.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
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
    /// Show where a node and its consensus stand: height, round and step,
    /// peers, validators and their votes, and why nothing is committed when
    /// that is so.
    ///
    /// Example: symbiont --node http://10.0.0.5:9090 status --json
    Status,
    /// Look up transactions.
    #[command(subcommand)]
    Tx(status::TxCommand),
    /// Follow the ledger's events from a height on.
    ///
    /// Prints transactions applied or failed, contracts signed, readings,
    /// settlements, payments, pool splits and evidence: the stored ones,
    /// then new ones as blocks are committed. One line per event; --json
    /// prints one JSON object per line. To resume, ask again from the last
    /// height you handled in full + 1.
    ///
    /// Example: symbiont events --from 1 --firm firm-0 --json
    Events(events::EventsArgs),
    /// Post offers and requests; list the market.
    #[command(subcommand)]
    Market(market::MarketCommand),
    /// Authorize and revoke a firm's keys (signed by the firm's admin key).
    #[command(subcommand)]
    Firm(firm::FirmCommand),
    /// Stream the node's ledger into an export file for `symbiont audit`.
    ///
    /// Writes the genesis, then every block with its commit certificate
    /// and the results the node stored, up to --to or the node's tip at
    /// start (docs/export-format.md). Writes FILE.partial and renames it
    /// when done; run the same command again to resume an interrupted
    /// export. Refuses to overwrite FILE without --force.
    ///
    /// Example: symbiont --node http://10.0.0.5:9090 export --out ledger.symbexp
    Export(export::ExportArgs),
    /// Replay an export file from genesis and check every hash link,
    /// certificate, signature, nonce, result and app hash, offline.
    ///
    /// Prints balances and obligations per firm, avoided emissions per
    /// firm and per kind, and recorded evidence. Any mismatch names the
    /// height and the transaction or certificate, and exits with status 1.
    /// --bench also measures batch signature verification here and prints
    /// both rates and their ratio.
    ///
    /// Example: symbiont audit ledger.symbexp --json
    Audit(audit::AuditArgs),
}

fn main() -> ExitCode {
    // Help and usage errors: clap prints them and exits, ignoring a closed pipe.
    let cli = Cli::parse();
    let global = client::Global {
        node: cli.node,
        key: cli.key,
        json: cli.json,
        timeout: Duration::from_secs(cli.timeout),
    };
    let result = match cli.command {
        Command::Keys(command) => keys::run(command, global.json),
        Command::Genesis(command) => genesis::run(command, global.json),
        Command::Preview(command) => preview::run(command, global.json),
        Command::Status => status::status(&global),
        Command::Tx(command) => status::tx(command, &global),
        Command::Events(args) => events::run(args, &global),
        Command::Market(command) => market::run(command, &global),
        Command::Firm(command) => firm::run(command, &global),
        Command::Export(args) => export::run(args, &global),
        Command::Audit(args) => audit::run(args, global.json),
    };
    output::exit_code(result.and_then(|()| Ok(output::flush()?)))
}
