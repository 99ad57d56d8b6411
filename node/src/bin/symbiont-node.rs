//! `symbiont-node`: a Symbiont node process.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use symbiont_node::config::{self, NodeConfig};
use symbiont_node::keyfile;
use symbiont_node::service;

#[derive(Parser)]
#[command(name = "symbiont-node", version, about = "A Symbiont ledger node")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a starter config.toml (and a node key, unless --key names one).
    Init {
        /// Directory for the config, the key and the data.
        #[arg(long)]
        dir: PathBuf,
        /// The network's genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// An existing node key file (PKCS#8 PEM, mode 0600).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The p2p listen address.
        #[arg(long, default_value = "/ip4/0.0.0.0/tcp/26656")]
        listen: String,
        /// Where the gRPC API listens (keep it private: it accepts
        /// transactions from anyone who can reach it).
        #[arg(long, default_value = "127.0.0.1:9090")]
        grpc_address: String,
        /// Where Prometheus metrics are served (ip:port).
        #[arg(long, default_value = config::DEFAULT_METRICS_ADDRESS)]
        metrics_address: String,
    },
    /// Run the node until SIGINT or SIGTERM. Prints `height N` on stdout
    /// per stored block; logs go to stderr (JSON if the config says
    /// `log_json = true`).
    Run {
        /// The config file (see `init`).
        #[arg(long)]
        config: PathBuf,
    },
    /// Generate a local network on 127.0.0.1: keys, genesis.toml, one
    /// directory with config.toml per node, firms/<firm>.pem admin keys.
    /// Prints each node's directory, p2p address and gRPC URL (p2p port +
    /// 100).
    ///
    /// Either --validators (and --full-nodes): one firm per node, or
    /// --genesis: the firms, nodes, kinds and parameters of a genesis file
    /// (e.g. deploy/genesis/kalundborg.toml) with fresh keys for all.
    Testnet {
        /// How many validator nodes.
        #[arg(long, required_unless_present = "genesis", conflicts_with = "genesis")]
        validators: Option<usize>,
        /// How many nodes that do not validate.
        #[arg(long, default_value_t = 0, conflicts_with = "genesis")]
        full_nodes: usize,
        /// A genesis file to take firms, nodes and kinds from.
        #[arg(long, value_name = "FILE")]
        genesis: Option<PathBuf>,
        #[arg(long)]
        dir: PathBuf,
        /// The first node's p2p port; the others follow. Metrics ports are
        /// the p2p ports + 1000.
        #[arg(long, default_value_t = 26656)]
        base_port: u16,
        /// Print the nodes as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Init {
            dir,
            genesis,
            key,
            listen,
            grpc_address,
            metrics_address,
        } => init(&dir, &genesis, key, listen, grpc_address, metrics_address),
        Command::Run { config } => run_node(&config),
        Command::Testnet {
            validators,
            full_nodes,
            genesis,
            dir,
            base_port,
            json,
        } => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
            let nodes = match (validators, genesis) {
                (_, Some(path)) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let template = symbiont_contracts::genesis::Genesis::from_toml(&text)
                        .with_context(|| format!("genesis {}", path.display()))?;
                    let heading = format!(
                        "# A local network made by `symbiont-node testnet` from {}.",
                        path.display()
                    );
                    config::park(&dir, &template, base_port, now, &heading)?
                }
                (Some(validators), None) => {
                    config::testnet(&dir, validators, full_nodes, base_port, now)?
                }
                (None, None) => bail!("give --validators N or --genesis FILE"),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&nodes)?);
            } else {
                for node in nodes {
                    println!(
                        "{}  {}  p2p {}  grpc {}  metrics {}",
                        node.name,
                        node.config.display(),
                        node.listen,
                        node.grpc,
                        node.metrics_address
                    );
                }
            }
            Ok(())
        }
    }
}

fn init(
    dir: &Path,
    genesis: &Path,
    key: Option<PathBuf>,
    listen: String,
    grpc_address: String,
    metrics_address: String,
) -> Result<()> {
    let config_path = dir.join("config.toml");
    if config_path.exists() {
        bail!("{} exists already", config_path.display());
    }
    let genesis = genesis
        .canonicalize()
        .with_context(|| format!("cannot read genesis {}", genesis.display()))?;
    std::fs::create_dir_all(dir)?;
    let key_file = match key {
        Some(key) => {
            keyfile::read(&key)?;
            key.canonicalize()?
        }
        None => {
            keyfile::write(&dir.join("node.pem"), &keyfile::generate()?, false)?;
            "node.pem".into()
        }
    };
    let config = NodeConfig {
        key_file,
        genesis_file: genesis,
        data_dir: "data".into(),
        listen,
        grpc_address: Some(grpc_address),
        metrics_address: Some(metrics_address),
        log_json: false,
        peers: vec![],
    };
    std::fs::write(&config_path, config::starter_text(&config))?;
    println!("{}", config_path.display());
    Ok(())
}

/// Logs to stderr, from `info` up (the node's own) and `warn` up (its
/// libraries'): text, or one JSON object per line.
fn install_logging(json: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = Targets::new()
        .with_target("symbiont_node", LevelFilter::INFO)
        .with_target("symbiont_contracts", LevelFilter::INFO)
        .with_default(LevelFilter::WARN);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry.with(layer.json()).init();
    } else {
        registry.with(layer).init();
    }
}

fn run_node(config_path: &Path) -> Result<()> {
    let node_config = config::read(config_path)?;
    let config = config::service_config(config_path, &node_config)?;
    install_logging(node_config.log_json);
    // Two workers: the node task blocks its thread while it syncs the
    // disk (storage, WAL, sign state); the swarm and the gRPC server go on
    // on the other.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (handle, task) = service::start(config).await?;
        let mut height = handle.height.clone();
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                changed = height.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // A reader that went away (a closed pipe) must not stop
                    // the node: the line is a courtesy, the ledger is in
                    // its data dir.
                    let line = format!("height {}\n", *height.borrow_and_update());
                    let _ = std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes());
                }
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
            }
        }
        handle.stop().await;
        task.await.context("node task")??;
        Ok(())
    })
}
