//! `symbiont`: the operator's command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod audit;
mod bench;
mod client;
mod common;
mod contract;
mod demo;
mod events;
mod export;
mod firm;
mod genesis;
mod gov;
mod keys;
mod market;
mod meter;
mod output;
mod park;
mod pool;
mod preview;
mod settlement;
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
///
/// Example: symbiont --node http://127.0.0.1:26756 status
///
/// Example: symbiont --key ops.pem market offer --kind steam --quantity 10
/// --price 25.00 --periods 30 --period 1d --delivery-point "gate 2"
#[derive(Parser)]
#[command(name = "symbiont", version, propagate_version = true)]
struct Cli {
    /// The node's gRPC address [default: the client config's `node`, else
    /// http://127.0.0.1:9090].
    #[arg(long, global = true, env = "SYMBIONT_NODE", value_name = "URL")]
    node: Option<String>,
    /// The signer's key file (PKCS#8 PEM): a firm admin's or operator's key.
    /// Transactions are signed here; the key never leaves this machine.
    /// [default: the client config's `key`]
    #[arg(long, global = true, value_name = "FILE")]
    key: Option<PathBuf>,
    /// A client config file (TOML) naming the node and the key file:
    /// `node = "http://10.0.0.5:9090"` and `key = "ops.pem"` (relative to
    /// the config file's directory); --node and --key override it.
    #[arg(long, global = true, env = "SYMBIONT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
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
    /// Start a local park (the Kalundborg example, 4 validator processes
    /// on 127.0.0.1, data in a temporary directory) and play a season on
    /// it through the gRPC API: offers, contracts with penalties, metered
    /// deliveries with a supply shortfall and an off-take failure, a shared
    /// pool, a validator killed and restarted, settlement and payments;
    /// then statements, balances and avoided CO2. Needs `symbiont-node`
    /// next to this program (`cargo build --release` builds both).
    ///
    /// Example: symbiont demo --keep
    Demo(demo::DemoArgs),
    /// Measure this machine: ed25519 verification rates, then a local
    /// network of 4 validator processes under offered load in steps
    /// (committed tx/s, p50/p99 finality, CPU per node), empty-block
    /// finality, the rate with one validator killed and how fast it is back
    /// in step; each against its target. Build with --release first.
    ///
    /// Example: symbiont bench --steps 200,400,800 --json
    Bench(bench::BenchArgs),
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
    /// Propose, countersign, show, list and terminate contracts.
    #[command(subcommand)]
    Contract(contract::ContractCommand),
    /// Record availability, delivered quantities and check readings: one,
    /// or a CSV file of them.
    #[command(subcommand)]
    Meter(meter::MeterCommand),
    /// Settle finished periods of a contract (signed with an operator key
    /// of a party, --key): the statement's net becomes an obligation
    /// between the parties.
    ///
    /// Example: symbiont --key power-ops.pem settle 9c2e…41 0-29
    Settle(settlement::SettleArgs),
    /// Show settlement statements: readings, band, charge, penalties, net
    /// and avoided CO2 of each settled period.
    ///
    /// Example: symbiont statement --firm pharma --contract 9c2e…41
    Statement(settlement::StatementArgs),
    /// Acknowledge payments received.
    #[command(subcommand)]
    Pay(settlement::PayCommand),
    /// Shared infrastructure pools: create, join, post amounts, object,
    /// split, show.
    #[command(subcommand)]
    Pool(pool::PoolCommand),
    /// Open and resolve disputes about a contract period.
    #[command(subcommand)]
    Dispute(settlement::DisputeCommand),
    /// Authorize and revoke a firm's keys (signed by the firm's admin key).
    #[command(subcommand)]
    Firm(firm::FirmCommand),
    /// Governance: propose changes to the network, vote, list proposals.
    #[command(subcommand)]
    Gov(gov::GovCommand),
    /// Register resource kinds (a facilitator's admin).
    #[command(subcommand)]
    Kind(gov::KindCommand),
    /// Record licences to take waste (a facilitator's admin).
    #[command(subcommand)]
    Licence(gov::LicenceCommand),
    /// Every account's balance and the obligations between firms and pools,
    /// in the network's currency.
    ///
    /// Example: symbiont balances --account pharma --json
    Balances(settlement::BalancesArgs),
    /// Avoided CO2e: on the whole network, per firm and per resource kind.
    ///
    /// Example: symbiont co2 --by-kind
    Co2(settlement::Co2Args),
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
    let config = match cli.config.as_deref().map(client::ClientConfig::read) {
        Some(Ok(config)) => config,
        Some(Err(error)) => return output::exit_code(Err(error)),
        None => client::ClientConfig::default(),
    };
    let global = client::Global {
        node: cli
            .node
            .or(config.node)
            .unwrap_or_else(|| "http://127.0.0.1:9090".to_string()),
        key: cli.key.or(config.key),
        json: cli.json,
        timeout: Duration::from_secs(cli.timeout),
    };
    let result = match cli.command {
        Command::Demo(args) => demo::run(args, &global),
        Command::Bench(args) => bench::run(args, &global),
        Command::Keys(command) => keys::run(command, global.json),
        Command::Genesis(command) => genesis::run(command, global.json),
        Command::Preview(command) => preview::run(command, global.json),
        Command::Status => status::status(&global),
        Command::Tx(command) => status::tx(command, &global),
        Command::Events(args) => events::run(args, &global),
        Command::Market(command) => market::run(command, &global),
        Command::Firm(command) => firm::run(command, &global),
        Command::Contract(command) => contract::run(command, &global),
        Command::Meter(command) => meter::run(command, &global),
        Command::Settle(args) => settlement::settle(args, &global),
        Command::Statement(args) => settlement::statement(args, &global),
        Command::Pay(command) => settlement::pay(command, &global),
        Command::Pool(command) => pool::run(command, &global),
        Command::Dispute(command) => settlement::dispute(command, &global),
        Command::Gov(command) => gov::gov(command, &global),
        Command::Kind(command) => gov::kind(command, &global),
        Command::Licence(command) => gov::licence(command, &global),
        Command::Balances(args) => settlement::balances(args, &global),
        Command::Co2(args) => settlement::co2(args, &global),
        Command::Export(args) => export::run(args, &global),
        Command::Audit(args) => audit::run(args, global.json),
    };
    output::exit_code(result.and_then(|()| Ok(output::flush()?)))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The ledger refuses an empty delivery point, so `market offer` must
    /// not make one up: without --delivery-point it is a usage error (it
    /// once defaulted to "" and every such offer failed on the ledger).
    #[test]
    fn an_offer_needs_its_delivery_point() {
        use clap::Parser;
        let args = [
            "symbiont",
            "market",
            "offer",
            "--kind",
            "steam",
            "--quantity",
            "1",
            "--price",
            "1.00",
            "--periods",
            "1",
        ];
        let error = super::Cli::try_parse_from(args)
            .err()
            .expect("a usage error");
        assert!(error.to_string().contains("--delivery-point"), "{error}");
        let mut with = args.to_vec();
        with.extend(["--delivery-point", "gate 1"]);
        assert!(super::Cli::try_parse_from(with).is_ok());
    }

    /// Every command people run (each leaf of the command tree) says what
    /// it does and shows an example; the top level lists every command.
    #[test]
    fn every_command_explains_itself_with_an_example() {
        fn walk(command: &clap::Command, path: String, missing: &mut Vec<String>) {
            let leaves: Vec<_> = command.get_subcommands().collect();
            if leaves.is_empty() {
                let help = command
                    .get_long_about()
                    .or(command.get_about())
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                if help.is_empty() || !help.contains("Example: symbiont") {
                    missing.push(path);
                }
                return;
            }
            for sub in leaves {
                walk(sub, format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        let cli = super::Cli::command();
        cli.clone().debug_assert();
        let top = cli
            .get_long_about()
            .map(|s| s.to_string())
            .unwrap_or_default();
        assert!(top.contains("Example: symbiont"), "symbiont --help: {top}");
        walk(&cli, "symbiont".into(), &mut missing);
        assert!(missing.is_empty(), "no example in the help of: {missing:?}");
    }
}
