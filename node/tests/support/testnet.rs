//! Real `symbiont-node` processes made by `symbiont-node testnet` on
//! 127.0.0.1, their gRPC clients, and a load of signed transactions.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use symbiont_contracts::genesis::Genesis;
use symbiont_contracts::hash::Hash;
use symbiont_node::config::{GRPC_PORT_OFFSET, METRICS_PORT_OFFSET};
use symbiont_node::storage::Storage;
use symbiont_proto::v1::node_client::NodeClient;

pub const NODE: &str = env!("CARGO_BIN_EXE_symbiont-node");

/// `count` consecutive free p2p ports and their gRPC and metrics ports
/// (checked, not reserved).
pub fn base_port(count: u16) -> u16 {
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    loop {
        let first = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if first < 60000
            && (0..count).all(|i| {
                (i == 0 || free(first + i))
                    && free(first + GRPC_PORT_OFFSET + i)
                    && free(first + METRICS_PORT_OFFSET + i)
            })
        {
            return first;
        }
    }
}

/// `symbiont-node testnet` in `net` from `port`.
pub fn testnet(net: &Path, validators: usize, full_nodes: usize, port: u16) {
    let status = Command::new(NODE)
        .args(["testnet", "--validators"])
        .arg(validators.to_string())
        .arg("--full-nodes")
        .arg(full_nodes.to_string())
        .arg("--base-port")
        .arg(port.to_string())
        .arg("--dir")
        .arg(net)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn genesis(net: &Path) -> Genesis {
    Genesis::from_toml(&std::fs::read_to_string(net.join("genesis.toml")).unwrap()).unwrap()
}

pub struct Process {
    pub child: Child,
}

impl Process {
    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A failing test must not leave nodes running.
impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a node; its stored height (the `height N` lines) goes to `height`.
/// Its log goes to `<config dir>/node.log` when SYMBIONT_TEST_LOGS is set.
pub fn run(config: &Path, height: Arc<Mutex<u64>>) -> Process {
    let log = match std::env::var_os("SYMBIONT_TEST_LOGS") {
        Some(_) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(config.with_file_name("node.log"))
                .unwrap(),
        ),
        None => Stdio::null(),
    };
    let mut command = Command::new(NODE);
    command
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(log);
    // Killed with the thread that started it: a test harness killed
    // mid-run (Drop never runs then) leaves no node behind. A lone
    // validator left over from such a run once kept a core busy for 40
    // minutes.
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(h) = line.strip_prefix("height ").and_then(|h| h.parse().ok()) {
                let mut seen = height.lock().unwrap();
                *seen = (*seen).max(h);
            }
        }
    });
    Process { child }
}

pub fn wait(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Block hashes and app hashes of heights 1..=tip of a stopped node.
pub fn stored_hashes(data: &Path, genesis: &Genesis) -> Vec<(Hash, Hash)> {
    let storage = Storage::open(&data.join("ledger"), genesis.hash(), 8 << 20).unwrap();
    let tip = storage.tip().unwrap().height;
    let hashes = (1..=tip)
        .map(|h| {
            (
                storage.block_hash(h).unwrap().unwrap(),
                storage.app_hash(h).unwrap().unwrap(),
            )
        })
        .collect();
    storage.close().unwrap();
    hashes
}

/// The transaction ids of every stored block of a stopped node, by height
/// (index 0: height 1), and the evidence its blocks carried.
pub fn stored_tx_ids(data: &Path, genesis: &Genesis) -> (Vec<Vec<Hash>>, usize) {
    use symbiont_node::block::Block;
    let storage = Storage::open(&data.join("ledger"), genesis.hash(), 8 << 20).unwrap();
    let tip = storage.tip().unwrap().height;
    let mut evidence = 0;
    let ids = (1..=tip)
        .map(|h| {
            let bytes = storage.block(h).unwrap().unwrap();
            let block: Block = symbiont_contracts::codec::decode(&bytes).unwrap();
            evidence += block.evidence.len();
            block.txs.iter().map(|t| t.id()).collect()
        })
        .collect();
    storage.close().unwrap();
    (ids, evidence)
}

/// Asserts that the nodes agree on every height they all hold; returns it.
pub fn assert_no_fork(dirs: &[PathBuf], genesis: &Genesis) -> usize {
    let stored: Vec<_> = dirs.iter().map(|d| stored_hashes(d, genesis)).collect();
    let common = stored.iter().map(Vec::len).min().unwrap();
    for h in 0..common {
        assert!(
            stored.iter().all(|s| s[h] == stored[0][h]),
            "nodes differ at height {}",
            h + 1
        );
    }
    common
}

/// A gRPC client of node `i` of a testnet from `port`, retried until the
/// node listens.
pub async fn client(port: u16, i: u16) -> NodeClient<tonic::transport::Channel> {
    let url = format!("http://127.0.0.1:{}", port + GRPC_PORT_OFFSET + i);
    let start = Instant::now();
    loop {
        match NodeClient::connect(url.clone()).await {
            Ok(client) => return client,
            Err(e) if start.elapsed() > Duration::from_secs(30) => panic!("{url}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Signed transactions offered to a testnet over gRPC, each signer
/// keeping up to `depth` in flight (signers run concurrently, so the load
/// is not bound by one call's latency); committed ones are counted with
/// their submit-to-commit latency.
pub struct Load {
    pub signers: Vec<LoadSigner>,
    /// Every transaction seen committed: id, height, index.
    pub committed: Vec<(Hash, u64, u32)>,
    pub latencies: Vec<Duration>,
    /// Refusals by code.
    pub refused: std::collections::BTreeMap<String, u64>,
}

pub struct LoadSigner {
    chain_id: String,
    pub key: symbiont_contracts::keys::Keypair,
    pub next_nonce: u64,
    /// Submitted, not yet seen committed: id, bytes, last submitted.
    pub in_flight: std::collections::VecDeque<(Hash, Vec<u8>, Instant)>,
    /// Which client this signer sends to (another one after a resend).
    turn: usize,
    committed: Vec<(Hash, u64, u32)>,
    latencies: Vec<Duration>,
    refused: Vec<String>,
}

pub type Client = NodeClient<tonic::transport::Channel>;

/// The admin key of testnet firm `i`.
pub fn firm_key(net: &Path, i: usize) -> symbiont_contracts::keys::Keypair {
    symbiont_node::keyfile::read(&net.join(format!("firms/firm-{i}.pem"))).unwrap()
}

/// The admins of firms `0..firms` each authorize `per_firm` operator keys,
/// firm i through `clients[i % clients.len()]`; returns once all are
/// committed (asking the last client), with the transactions and the keys.
pub async fn authorize_operators(
    net: &Path,
    genesis: &Genesis,
    clients: &mut [Client],
    firms: usize,
    per_firm: usize,
) -> (
    Vec<symbiont_contracts::tx::SignedTx>,
    Vec<symbiont_contracts::keys::Keypair>,
) {
    use symbiont_contracts::keys::Keypair;
    use symbiont_contracts::tx::{KeyRole, SignedTx, TxBody, TxKind};
    use symbiont_proto::v1::{GetTxRequest, SubmitTxRequest, TxState};
    let mut txs = Vec::new();
    let mut keys = Vec::new();
    for firm in 0..firms {
        let admin = firm_key(net, firm);
        for j in 0..per_firm {
            let key = Keypair::from_seed([(100 + 10 * firm + j) as u8; 32]);
            let tx = SignedTx::sign(
                TxBody {
                    chain_id: genesis.chain_id.clone(),
                    nonce: j as u64 + 1,
                    kind: TxKind::AuthorizeKey {
                        firm: format!("firm-{firm}"),
                        key: key.public(),
                        role: KeyRole::Operator,
                    },
                },
                &admin,
            );
            let request = SubmitTxRequest { tx: tx.to_bytes() };
            let c = firm % clients.len();
            let response = clients[c].submit_tx(request).await.unwrap().into_inner();
            assert_eq!(response.tx_id, tx.id().0.to_vec());
            txs.push(tx);
            keys.push(key);
        }
    }
    let start = Instant::now();
    let last = clients.len() - 1;
    for tx in &txs {
        loop {
            let request = GetTxRequest {
                tx_id: tx.id().0.to_vec(),
            };
            let answer = clients[last].get_tx(request).await.unwrap().into_inner();
            if answer.state() == TxState::Committed {
                assert_eq!(answer.error, "", "an operator was not authorized");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "setup not committed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    (txs, keys)
}

impl LoadSigner {
    /// An offer with the next nonce.
    fn next_tx(&self) -> symbiont_contracts::tx::SignedTx {
        use symbiont_contracts::kinds::ListingTerms;
        use symbiont_contracts::tx::{SignedTx, TxBody, TxKind};
        SignedTx::sign(
            TxBody {
                chain_id: self.chain_id.clone(),
                nonce: self.next_nonce,
                kind: TxKind::PostOffer {
                    listing: ListingTerms {
                        kind: "steam".into(),
                        quantity_per_period: 1000 + self.next_nonce,
                        price: 2500,
                        delivery_point: "gate 1".into(),
                        quality: Default::default(),
                        period_ms: 3_600_000,
                        periods: 24,
                        valid_until_ms: u64::MAX / 2,
                    },
                },
            },
            &self.key,
        )
    }

    /// Tops up to `depth` in flight, sending to its client, sends a
    /// transaction again (to the next client) when it waited
    /// `resend_after` (its node may have died before gossiping it), then
    /// collects what committed, asking `clients[0]`.
    async fn step(&mut self, clients: &mut [Client], depth: usize, resend_after: Duration) {
        use symbiont_proto::v1::{GetTxRequest, SubmitTxRequest, TxState};
        while self.in_flight.len() < depth {
            let tx = self.next_tx();
            let bytes = tx.to_bytes();
            // A signer talks to one node (as a firm's client would), so
            // its nonces reach the proposers in order.
            let c = self.turn % clients.len();
            match clients[c]
                .submit_tx(SubmitTxRequest { tx: bytes.clone() })
                .await
            {
                Ok(_) => {
                    self.next_nonce += 1;
                    self.in_flight.push_back((tx.id(), bytes, Instant::now()));
                }
                Err(status) => {
                    self.refused.push(code_of(&status));
                    break;
                }
            }
        }
        while let Some((id, bytes, sent)) = self.in_flight.front().cloned() {
            let request = GetTxRequest {
                tx_id: id.0.to_vec(),
            };
            let Ok(answer) = clients[0].get_tx(request).await else {
                break;
            };
            let answer = answer.into_inner();
            if answer.state() != TxState::Committed {
                if sent.elapsed() > resend_after {
                    self.turn += 1;
                    let c = self.turn % clients.len();
                    let _ = clients[c].submit_tx(SubmitTxRequest { tx: bytes }).await;
                    self.in_flight.front_mut().unwrap().2 = Instant::now();
                }
                break;
            }
            assert_eq!(answer.error, "", "a load transaction failed");
            self.committed.push((id, answer.height, answer.index));
            self.latencies.push(sent.elapsed());
            self.in_flight.pop_front();
        }
    }
}

impl Load {
    pub fn new(chain_id: &str, keys: Vec<symbiont_contracts::keys::Keypair>) -> Load {
        Load {
            signers: keys
                .into_iter()
                .enumerate()
                .map(|(turn, key)| LoadSigner {
                    chain_id: chain_id.to_string(),
                    key,
                    next_nonce: 1,
                    in_flight: Default::default(),
                    turn,
                    committed: vec![],
                    latencies: vec![],
                    refused: vec![],
                })
                .collect(),
            committed: vec![],
            latencies: vec![],
            refused: Default::default(),
        }
    }

    /// One step of every signer, all at once.
    pub async fn step(&mut self, clients: &[Client], depth: usize, resend_after: Duration) {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, mut signer) in self.signers.drain(..).enumerate() {
            let mut clients = clients.to_vec();
            tasks.spawn(async move {
                signer.step(&mut clients, depth, resend_after).await;
                (i, signer)
            });
        }
        let mut signers: Vec<(usize, LoadSigner)> = tasks.join_all().await;
        signers.sort_by_key(|(i, _)| *i);
        for (_, mut signer) in signers {
            self.committed.append(&mut signer.committed);
            self.latencies.append(&mut signer.latencies);
            for code in signer.refused.drain(..) {
                *self.refused.entry(code).or_default() += 1;
            }
            self.signers.push(signer);
        }
    }

    /// Sends every transaction in flight again (a restarted node has lost
    /// its mempool); a copy still waiting somewhere is refused as a
    /// duplicate, which is fine.
    pub async fn resend(&mut self, clients: &mut [Client]) {
        use symbiont_proto::v1::SubmitTxRequest;
        for signer in &mut self.signers {
            let c = signer.turn % clients.len();
            for (_, bytes, sent) in signer.in_flight.iter_mut() {
                let request = SubmitTxRequest { tx: bytes.clone() };
                let _ = clients[c].submit_tx(request).await;
                *sent = Instant::now();
            }
        }
    }

    /// Steps (without new transactions) until nothing is in flight.
    pub async fn drain(&mut self, clients: &[Client], timeout: Duration) {
        let start = Instant::now();
        while self.signers.iter().any(|s| !s.in_flight.is_empty()) {
            assert!(
                start.elapsed() < timeout,
                "load not committed within {timeout:?}"
            );
            self.step(clients, 0, Duration::from_secs(2)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs for `duration`; returns the transactions committed per second.
    pub async fn run_for(&mut self, clients: &[Client], depth: usize, duration: Duration) -> f64 {
        let before = self.committed.len();
        let start = Instant::now();
        while start.elapsed() < duration {
            self.step(clients, depth, Duration::from_secs(2)).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (self.committed.len() - before) as f64 / start.elapsed().as_secs_f64()
    }
}

/// The stable code at the start of a refusal's message.
pub fn code_of(status: &tonic::Status) -> String {
    match status.metadata().get("symbiont-code") {
        Some(code) => code.to_str().unwrap_or("?").to_string(),
        None => format!("grpc:{:?}", status.code()),
    }
}
