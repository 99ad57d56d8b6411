//! The node's configuration file (TOML), the starter file `init` writes,
//! and the local networks `testnet` generates.
//!
//! Paths in a config file are relative to the file's own directory.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use symbiont_contracts::genesis::Genesis;
use symbiont_contracts::keys::PublicKey;

use crate::keyfile;
use crate::p2p::{Multiaddr, peer_id_of};
use crate::service::ServiceConfig;

/// `config.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's key (PKCS#8 PEM, mode 0600); also its libp2p identity.
    pub key_file: PathBuf,
    /// The network's genesis file.
    pub genesis_file: PathBuf,
    /// Blocks, state, consensus WAL and sign state.
    pub data_dir: PathBuf,
    /// The p2p listen address, e.g. "/ip4/0.0.0.0/tcp/26656".
    pub listen: String,
    /// Where the gRPC API listens, e.g. "127.0.0.1:9090"; none: no API.
    #[serde(default)]
    pub grpc_address: Option<String>,
    /// Where Prometheus metrics are served (`GET /metrics`), e.g.
    /// "127.0.0.1:26660"; none: not served.
    #[serde(default)]
    pub metrics_address: Option<String>,
    /// Log lines as JSON instead of text.
    #[serde(default)]
    pub log_json: bool,
    /// Peers to dial: their node key and address.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer node's key, `ed25519:<hex>`.
    pub key: PublicKey,
    /// Its p2p address, e.g. "/ip4/10.0.0.2/tcp/26656".
    pub address: String,
}

/// The metrics address `init` suggests.
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:26660";

/// The commented starter file `init` writes.
pub fn starter_text(config: &NodeConfig) -> String {
    let mut text = format!(
        "# Symbiont node configuration. Paths are relative to this file.\n\
         \n\
         # The node's key (PKCS#8 PEM, mode 0600); also its libp2p identity.\n\
         key_file = {:?}\n\
         # The network's genesis file.\n\
         genesis_file = {:?}\n\
         # Blocks, state, the consensus WAL and the sign state.\n\
         data_dir = {:?}\n\
         # The p2p listen address.\n\
         listen = {:?}\n\
         # Where the gRPC API listens (clients and the CLI connect here);\n\
         # leave it out for no API. Keep it on a private interface.\n\
         {}\n\
         # Where Prometheus metrics are served (GET /metrics), host:port;\n\
         # comment it out to serve none.\n\
         {}\n\
         # Log lines as JSON instead of text (logs go to stderr).\n\
         log_json = {}\n\
         \n\
         # Peers to dial, one [[peers]] table each:\n\
         # [[peers]]\n\
         # key = \"ed25519:<64 hex digits>\"\n\
         # address = \"/ip4/10.0.0.2/tcp/26656\"\n",
        config.key_file.display().to_string(),
        config.genesis_file.display().to_string(),
        config.data_dir.display().to_string(),
        config.listen,
        match &config.grpc_address {
            Some(address) => format!("grpc_address = {address:?}"),
            None => "# grpc_address = \"127.0.0.1:9090\"".to_string(),
        },
        match &config.metrics_address {
            Some(address) => format!("metrics_address = {address:?}"),
            None => format!("# metrics_address = {DEFAULT_METRICS_ADDRESS:?}"),
        },
        config.log_json
    );
    for peer in &config.peers {
        text += &format!(
            "\n[[peers]]\nkey = \"{}\"\naddress = {:?}\n",
            peer.key, peer.address
        );
    }
    text
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Reads a config file and everything it names: a one-line error for a
/// missing or unreadable file, a bad key, a bad genesis or a bad address.
pub fn load(path: &Path) -> Result<ServiceConfig> {
    service_config(path, &read(path)?)
}

/// Reads a config file (only the file itself).
pub fn read(path: &Path) -> Result<NodeConfig> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config {} is invalid", path.display()))
}

/// What `config`, read from `path`, names (see `load`).
pub fn service_config(path: &Path, config: &NodeConfig) -> Result<ServiceConfig> {
    let base = path.parent().unwrap_or(Path::new("."));
    let keypair = keyfile::read(&resolve(base, &config.key_file))?;
    let genesis_path = resolve(base, &config.genesis_file);
    let genesis_text = fs::read_to_string(&genesis_path)
        .with_context(|| format!("cannot read genesis {}", genesis_path.display()))?;
    let genesis = Genesis::from_toml(&genesis_text)
        .with_context(|| format!("genesis {}", genesis_path.display()))?;
    let listen: Multiaddr = config
        .listen
        .parse()
        .with_context(|| format!("listen address {:?}", config.listen))?;
    let grpc = config
        .grpc_address
        .as_deref()
        .map(|a| {
            a.parse::<std::net::SocketAddr>()
                .with_context(|| format!("grpc_address {a:?} is not an IP address and port"))
        })
        .transpose()?;
    let mut peers = Vec::new();
    for peer in &config.peers {
        let address: Multiaddr = peer
            .address
            .parse()
            .with_context(|| format!("peer address {:?}", peer.address))?;
        peers.push((peer_id_of(&peer.key), address));
    }
    let metrics_address = match &config.metrics_address {
        Some(address) => Some(address.parse().with_context(|| {
            format!("metrics address {address:?} is not an ip:port such as \"{DEFAULT_METRICS_ADDRESS}\"")
        })?),
        None => None,
    };
    Ok(ServiceConfig {
        genesis,
        keypair,
        data_dir: resolve(base, &config.data_dir),
        listen,
        peers,
        grpc,
        metrics_address,
    })
}

/// What `testnet` made: one entry per node.
#[derive(Clone, Debug, Serialize)]
pub struct TestnetNode {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub listen: String,
    /// The gRPC address, as a URL for clients.
    pub grpc: String,
    /// Where the node serves metrics.
    pub metrics_address: String,
    pub validator: bool,
}

pub use crate::ports::{GRPC_PORT_OFFSET, METRICS_PORT_OFFSET};

/// A local network on 127.0.0.1: `validators` validator nodes and
/// `full_nodes` others, one firm each (`firm-<i>`), on the chain
/// "testnet" with two resource kinds; see [`park`] for what is written.
pub fn testnet(
    dir: &Path,
    validators: usize,
    full_nodes: usize,
    base_port: u16,
    genesis_time_ms: u64,
) -> Result<Vec<TestnetNode>> {
    if validators == 0 {
        bail!("a network needs at least one validator");
    }
    // Keys here are placeholders: `park` gives every firm and node a
    // fresh one.
    let mut template = format!(
        "chain_id = \"testnet\"\n\
         genesis_time_ms = {genesis_time_ms}\n\n\
         [currency]\ncode = \"EUR\"\nminor_units = 2\n\n\
         [consensus]\n\
         timeout_propose_ms = 500\ntimeout_prevote_ms = 200\ntimeout_precommit_ms = 200\n\
         timeout_delta_ms = 100\nmax_block_txs = 2000\nmax_block_bytes = 4194304\n\
         max_clock_drift_ms = 2000\n\n\
         [[resource_kinds]]\nid = \"steam\"\nname = \"Process steam\"\nunit = \"t\"\n\
         emission_factor_g = 170000\n\n\
         [[resource_kinds]]\nid = \"district-heat\"\nname = \"District heating water\"\n\
         unit = \"MWh\"\nemission_factor_g = 200000\n"
    );
    for i in 0..validators + full_nodes {
        let validator = i < validators;
        let name = if validator {
            format!("validator-{i}")
        } else {
            format!("full-{}", i - validators)
        };
        let placeholder = |n: usize| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(n as u64).to_le_bytes());
            symbiont_contracts::keys::Keypair::from_seed(seed).public()
        };
        template += &format!(
            "\n[[firms]]\nid = \"firm-{i}\"\nname = \"Firm {i}\"\nadmin_key = \"{}\"\n\n\
             [[nodes]]\nid = \"{name}\"\nfirm = \"firm-{i}\"\nsite = \"127.0.0.1\"\nkey = \"{}\"\n\
             validator = {validator}\npower = {}\n",
            placeholder(2 * i),
            placeholder(2 * i + 1),
            u64::from(validator)
        );
    }
    let template = Genesis::from_toml(&template).context("generated genesis")?;
    park(
        dir,
        &template,
        base_port,
        genesis_time_ms,
        "# A local test network made by `symbiont-node testnet`.",
    )
}

/// A local network on 127.0.0.1 of the firms, nodes, kinds and parameters
/// of `template`, with fresh keys: every firm's admin key in
/// `dir/firms/<firm>.pem`, every node's key and `config.toml` in
/// `dir/<node>/`, and `dir/genesis.toml` naming the new public keys, with
/// `genesis_time_ms` (`heading` is its first comment line). Node i (in
/// genesis order) listens on p2p port `base_port + i`, gRPC and metrics
/// `GRPC_PORT_OFFSET` and `METRICS_PORT_OFFSET` above it, and dials all
/// the others.
pub fn park(
    dir: &Path,
    template: &Genesis,
    base_port: u16,
    genesis_time_ms: u64,
    heading: &str,
) -> Result<Vec<TestnetNode>> {
    if dir.exists() && fs::read_dir(dir)?.next().is_some() {
        bail!("{} is not empty", dir.display());
    }
    let total = template.nodes.len();
    if total == 0 {
        bail!("the genesis names no node");
    }
    let last_port = u16::try_from(total - 1)
        .ok()
        .and_then(|n| base_port.checked_add(n))
        .and_then(|p| p.checked_add(METRICS_PORT_OFFSET));
    if last_port.is_none() {
        bail!(
            "{total} nodes from port {base_port} need ports up to {} (metrics: p2p port + {METRICS_PORT_OFFSET}), past 65535",
            u64::from(base_port) + total as u64 - 1 + u64::from(METRICS_PORT_OFFSET)
        );
    }
    let mut genesis = template.clone();
    genesis.genesis_time_ms = genesis_time_ms;
    fs::create_dir_all(dir.join("firms"))?;
    for firm in &mut genesis.firms {
        let admin = keyfile::generate()?;
        keyfile::write(
            &dir.join("firms").join(format!("{}.pem", firm.id)),
            &admin,
            false,
        )?;
        firm.admin_key = admin.public();
    }
    let mut nodes = Vec::new();
    let mut keys = Vec::new();
    for (i, node) in genesis.nodes.iter_mut().enumerate() {
        let node_key = keyfile::generate()?;
        let node_dir = dir.join(&node.id);
        fs::create_dir_all(&node_dir)?;
        keyfile::write(&node_dir.join("node.pem"), &node_key, false)?;
        node.key = node_key.public();
        // Checked above: no overflow.
        let port = base_port + i as u16;
        let grpc_port = port + GRPC_PORT_OFFSET;
        keys.push((node_key.public(), format!("/ip4/127.0.0.1/tcp/{port}")));
        nodes.push(TestnetNode {
            name: node.id.clone(),
            config: node_dir.join("config.toml"),
            dir: node_dir,
            listen: format!("/ip4/127.0.0.1/tcp/{port}"),
            grpc: format!("http://127.0.0.1:{grpc_port}"),
            metrics_address: format!("127.0.0.1:{}", port + METRICS_PORT_OFFSET),
            validator: node.validator,
        });
    }
    let text = toml::to_string(&genesis).context("genesis as TOML")?;
    let parsed = Genesis::from_toml(&text).context("generated genesis")?;
    if parsed != genesis {
        bail!("the generated genesis does not read back as written");
    }
    fs::write(dir.join("genesis.toml"), format!("{heading}\n{text}"))?;
    for (i, node) in nodes.iter().enumerate() {
        let config = NodeConfig {
            key_file: "node.pem".into(),
            genesis_file: "../genesis.toml".into(),
            data_dir: "data".into(),
            listen: node.listen.clone(),
            grpc_address: Some(node.grpc.trim_start_matches("http://").to_string()),
            metrics_address: Some(node.metrics_address.clone()),
            log_json: false,
            peers: keys
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (key, address))| PeerConfig {
                    key: *key,
                    address: address.clone(),
                })
                .collect(),
        };
        fs::write(&node.config, starter_text(&config))?;
    }
    Ok(nodes)
}
