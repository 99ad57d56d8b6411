//! The running node: one tokio task that owns the `Replica` (engine,
//! chain, mempool), the storage and the timers, fed by the p2p swarm's
//! events, and carries out the replica's actions in order. A decided block
//! is written to storage (one flushed batch) before the next height
//! starts.
//!
//! Wire formats (canonical encoding): a gossip message is `(NetMessage,
//! u64 send number)`: a `replica::NetMessage` (a consensus message on the
//! consensus topic, a batch of transactions on the transactions topic:
//! admitted transactions wait up to `TX_BATCH_WINDOW` to be sent together)
//! and a number
//! that differs for every send of this process, so a message sent again
//! (rebroadcast after a partition or a restart) is a new gossip message and
//! is not dropped as a duplicate of the first. A sync request is a
//! `SyncRequest`, its response a `SyncResponse`.
//!
//! Queries (a transaction's fate, the node's status) are answered by the
//! same task, so they see one consistent state; the gRPC server
//! (`crate::rpc`) asks through the `ServiceHandle`.
//! Metrics (`crate::metrics`) are updated by this task and served, when a
//! metrics address is configured, by a task of their own; logs go through
//! `tracing`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use symbiont_contracts::codec;
use symbiont_contracts::exec;
use symbiont_contracts::genesis::Genesis;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::{Keypair, PublicKey};
use symbiont_contracts::state::Receipt;
use symbiont_contracts::tx::SignedTx;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::block::{Block, Certificate, core_params};
use crate::chain::{Chain, Tip};
use crate::consensus::ed25519::KeypairSigner;
use crate::consensus::engine::Engine;
use crate::consensus::proposer::{MISSED_TURN_WINDOW, WeightedRoundRobin};
use crate::consensus::signed::Message;
use crate::consensus::signer::{FileStore, SignGuard};
use crate::consensus::types::{Step, Timeout, VoteType};
use crate::consensus::wal::FileWal;
use crate::mempool::{AdmitError, Mempool, MempoolConfig};
use crate::metrics::{self, Metrics};
use crate::p2p::{
    self, Multiaddr, NetworkConfig, NetworkEvent, NetworkHandle, PeerId, Topic, Validation,
};
use crate::replica::{
    Action, GossipVerdict, NetMessage, Replica, TX_BATCH_MAX_BYTES, TX_BATCH_MAX_TXS,
};
use crate::storage::{CommitRecord, Storage};
use crate::verify::available_threads;

/// How often our messages of the current height are sent again.
pub const REBROADCAST_INTERVAL: Duration = Duration::from_millis(400);
/// How often a node that made no progress says where it stands.
pub const STALL_REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// Commits sent in one sync response, at most, and bytes of blocks and
/// certificates (the network refuses responses above 16 MiB).
pub const SYNC_BATCH: u64 = 64;
pub const SYNC_BATCH_BYTES: usize = 8 << 20;
/// The largest gossip payload: a block of the largest size a network may
/// set, with its proposal or certificate around it.
pub const GOSSIP_MESSAGE_BYTES: u32 = symbiont_contracts::genesis::MAX_BLOCK_BYTES + (256 << 10);
/// Sled's cache.
pub const STORAGE_CACHE_BYTES: u64 = 64 << 20;
/// Admitted transactions wait at most this long to be gossiped in one
/// batch (`NetMessage::Txs`, cut earlier at `TX_BATCH_MAX_TXS` or
/// `TX_BATCH_MAX_BYTES`).
pub const TX_BATCH_WINDOW: Duration = Duration::from_millis(5);

pub struct ServiceConfig {
    pub genesis: Genesis,
    pub keypair: Keypair,
    /// Holds `ledger/` (storage), `consensus.wal` and `sign_state`.
    pub data_dir: PathBuf,
    pub listen: Multiaddr,
    pub peers: Vec<(PeerId, Multiaddr)>,
    /// Where the gRPC API listens (None: no API).
    pub grpc: Option<std::net::SocketAddr>,
    /// Where `GET /metrics` is served (none: not served; port 0: any).
    pub metrics_address: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    // Each wrapped error's message names what failed; `transparent` keeps
    // it from being printed twice in an error chain.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Network(#[from] p2p::NetworkError),
    #[error(transparent)]
    Engine(#[from] crate::consensus::engine::EngineError),
    #[error(transparent)]
    SignState(#[from] crate::consensus::signer::StoreError),
    #[error(transparent)]
    Wal(#[from] crate::consensus::wal::WalError),
    #[error("stored data: {0}")]
    Data(String),
    #[error("gRPC: {0}")]
    Rpc(String),
    #[error("cannot serve metrics on {address}: {reason}")]
    Metrics { address: SocketAddr, reason: String },
}

/// Asks for the commits from `from` on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub from: u64,
}

/// Consecutive commits from the requested height (none: not there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    pub commits: Vec<(Block, Certificate)>,
}

/// What became of a transaction, as far as this node knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxStatus {
    Unknown,
    Pending,
    Committed(Receipt),
}

/// One validator in a status report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorStatus {
    pub key: PublicKey,
    pub power: u64,
    /// Its prevote / precommit of the current height and round arrived.
    pub prevoted: bool,
    pub precommitted: bool,
    /// The highest round of the current height it voted in.
    pub highest_round: Option<u32>,
}

/// Where the node and its consensus stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub chain_id: String,
    pub genesis_hash: Hash,
    pub node_key: PublicKey,
    pub is_validator: bool,
    pub height: u64,
    pub block_hash: Hash,
    pub app_hash: Hash,
    pub last_block_time_ms: u64,
    pub ms_since_last_commit: u64,
    pub consensus_height: u64,
    pub round: u32,
    pub step: &'static str,
    pub peers: usize,
    pub mempool_txs: usize,
    pub mempool_bytes: usize,
    pub validators: Vec<ValidatorStatus>,
    /// Set when nothing was stored for `STALL_AFTER`: what is missing.
    pub stall_reason: Option<String>,
}

/// No block for this long and the status says why.
pub const STALL_AFTER: Duration = Duration::from_secs(2);

/// A read of the node's state, run by the node task (so it sees one
/// consistent state, between two blocks).
type Read = Box<dyn FnOnce(&Replica) + Send>;

enum Query {
    Tx(Hash, oneshot::Sender<TxStatus>),
    Status(oneshot::Sender<NodeStatus>),
    Read(Read),
}

/// Talks to a running node.
#[derive(Clone)]
pub struct ServiceHandle {
    submit: mpsc::Sender<(SignedTx, oneshot::Sender<Result<Hash, AdmitError>>)>,
    query: mpsc::Sender<Query>,
    /// The last stored height.
    pub height: watch::Receiver<u64>,
    /// The node's metrics (served at `metrics_address`, if any).
    pub metrics: Arc<Metrics>,
    /// Where metrics are served: the bound address (a port 0 resolved).
    pub metrics_address: Option<SocketAddr>,
    /// Where the gRPC API is served: the bound address (a port 0 resolved).
    pub grpc_address: Option<SocketAddr>,
    stop: mpsc::Sender<()>,
}

impl ServiceHandle {
    pub async fn submit(&self, tx: SignedTx) -> Option<Result<Hash, AdmitError>> {
        let (reply, answer) = oneshot::channel();
        self.submit.send((tx, reply)).await.ok()?;
        answer.await.ok()
    }

    /// None: the node has stopped.
    pub async fn tx(&self, id: Hash) -> Option<TxStatus> {
        let (reply, answer) = oneshot::channel();
        self.query.send(Query::Tx(id, reply)).await.ok()?;
        answer.await.ok()
    }

    /// None: the node has stopped.
    pub async fn status(&self) -> Option<NodeStatus> {
        let (reply, answer) = oneshot::channel();
        self.query.send(Query::Status(reply)).await.ok()?;
        answer.await.ok()
    }

    /// Runs `read` on the node task against the replica (its chain state
    /// after the last block, mempool, engine) and returns its answer. Keep
    /// it short: consensus waits meanwhile. None: the node has stopped.
    pub async fn read<R: Send + 'static>(
        &self,
        read: impl FnOnce(&Replica) -> R + Send + 'static,
    ) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        let query = Query::Read(Box::new(move |replica: &Replica| {
            let _ = reply.send(read(replica));
        }));
        self.query.send(query).await.ok()?;
        answer.await.ok()
    }

    pub async fn stop(&self) {
        let _ = self.stop.send(()).await;
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn data(what: impl std::fmt::Display) -> ServiceError {
    ServiceError::Data(what.to_string())
}

struct Node {
    replica: Replica,
    storage: Storage,
    network: NetworkHandle,
    timers: BTreeMap<(Instant, u64), Timeout>,
    timer_seq: u64,
    height: watch::Sender<u64>,
    /// Counts our gossip sends (from the start time, so a restarted
    /// process does not repeat an earlier run's numbers).
    send_number: u64,
    genesis_hash: Hash,
    node_key: PublicKey,
    /// When the last block was stored (or the node started).
    last_commit_at: Instant,
    /// Connected peers, refreshed by the stall report's tick.
    peers: usize,
    /// Actions of a height just started, carried out by the run loop.
    next_height: Vec<Action>,
    /// The member nodes' peer ids the swarm admits, as of our tip.
    members: Vec<PeerId>,
    metrics: Arc<Metrics>,
    /// When the current height started (for the commit latency).
    height_started: std::time::Instant,
    /// The metrics server, stopped with the node.
    metrics_server: Option<tokio::task::JoinHandle<()>>,
    /// Admitted transactions waiting to be gossiped as one batch, their
    /// encoded bytes, and when the batch is due (`TX_BATCH_WINDOW` after
    /// its first transaction).
    tx_batch: Vec<SignedTx>,
    tx_batch_bytes: usize,
    tx_batch_due: Option<Instant>,
}

/// Opens the data dir, resumes where the node stopped, joins the network
/// and runs until `stop`. Returns the handle and the task's join handle.
pub async fn start(
    config: ServiceConfig,
) -> Result<
    (
        ServiceHandle,
        tokio::task::JoinHandle<Result<(), ServiceError>>,
    ),
    ServiceError,
> {
    std::fs::create_dir_all(&config.data_dir).map_err(data)?;
    let genesis_hash = config.genesis.hash();
    let storage = Storage::open(
        &config.data_dir.join("ledger"),
        genesis_hash,
        STORAGE_CACHE_BYTES,
    )?;
    // Bound before anything runs (after the data dir's lock, the more
    // telling error when a node runs twice).
    let grpc_listener = match config.grpc {
        Some(address) => Some(
            std::net::TcpListener::bind(address)
                .map_err(|e| ServiceError::Rpc(format!("cannot listen on {address}: {e}")))?,
        ),
        None => None,
    };
    let grpc_address = match &grpc_listener {
        Some(listener) => Some(
            listener
                .local_addr()
                .map_err(|e| ServiceError::Rpc(format!("gRPC listener: {e}")))?,
        ),
        None => None,
    };
    if storage.tip().is_none() {
        storage.commit_genesis(&exec::genesis_state(&config.genesis))?;
    }
    let selector = Arc::new(WeightedRoundRobin);
    let chain = resume_chain(&config.genesis, &storage, selector.clone())?;
    let tip = chain.tip().clone();
    let last_commit: Option<Certificate> = match tip.height {
        0 => None,
        h => storage
            .certificate(h)?
            .map(|bytes| codec::decode(&bytes))
            .transpose()
            .map_err(data)?,
    };
    let guard = SignGuard::open(
        Box::new(KeypairSigner(Keypair::from_seed(config.keypair.seed()))),
        Box::new(FileStore::new(config.data_dir.join("sign_state"))),
    )?;
    let (engine, outputs) = Engine::recover(
        chain.chain_id().to_string(),
        core_params(&chain.params()),
        selector,
        guard,
        Box::new(FileWal::open(config.data_dir.join("consensus.wal"))?),
        tip.height,
        chain.validators().clone(),
        chain.excluded_proposers(),
    )?;
    let members = member_peers(chain.state());
    let chain_id = chain.chain_id().to_string();
    let mut network_config = NetworkConfig::new(
        Keypair::from_seed(config.keypair.seed()),
        config.listen,
        &chain_id,
    );
    network_config.peers = config.peers;
    // A proposal or commit carries a whole block: room for the largest
    // any network may set (governance can raise it up to that bound), and
    // for the message around it. Proposals above the current
    // `max_block_bytes` are rejected by the gossip check.
    network_config.max_message_bytes = GOSSIP_MESSAGE_BYTES;
    network_config.members = members.clone();
    // Bound before anything is spawned: an address in use is refused
    // while nothing runs yet.
    let metrics_listener =
        match config.metrics_address {
            Some(address) => Some(tokio::net::TcpListener::bind(address).await.map_err(
                |error| ServiceError::Metrics {
                    address,
                    reason: error.to_string(),
                },
            )?),
            None => None,
        };
    let metrics_address = match &metrics_listener {
        Some(listener) => Some(listener.local_addr().map_err(data)?),
        None => None,
    };
    let (network, events) = p2p::spawn(network_config)?;
    let mempool = Mempool::new(chain_id, MempoolConfig::default());
    let (replica, actions) = Replica::new(
        engine,
        chain,
        mempool,
        last_commit,
        available_threads(),
        now_ms(),
        outputs,
    )?;
    let (height_tx, height_rx) = watch::channel(tip.height);
    let (submit_tx, submit_rx) = mpsc::channel(256);
    let (stop_tx, stop_rx) = mpsc::channel(1);
    let (query_tx, query_rx) = mpsc::channel(256);
    let node_key = config.keypair.public();
    let metrics = Arc::new(Metrics::new());
    metrics.height.set(tip.height as i64);
    let metrics_server =
        metrics_listener.map(|listener| tokio::spawn(metrics::serve(listener, metrics.clone())));
    let mut node = Node {
        replica,
        storage,
        network,
        timers: BTreeMap::new(),
        timer_seq: 0,
        height: height_tx,
        send_number: now_ms() << 16,
        genesis_hash,
        node_key,
        last_commit_at: Instant::now(),
        peers: 0,
        next_height: Vec::new(),
        members,
        metrics: metrics.clone(),
        height_started: std::time::Instant::now(),
        metrics_server,
        tx_batch: Vec::new(),
        tx_batch_bytes: 0,
        tx_batch_due: None,
    };
    tracing::info!(
        height = tip.height,
        peer_id = %node.network.local_peer_id(),
        metrics = %metrics_address.map_or("none".to_string(), |a| a.to_string()),
        "node started"
    );
    let handle = ServiceHandle {
        submit: submit_tx,
        query: query_tx,
        height: height_rx,
        metrics,
        metrics_address,
        grpc_address,
        stop: stop_tx,
    };
    let rpc_stop = match grpc_listener {
        Some(listener) => Some(
            crate::rpc::spawn(
                listener,
                handle.clone(),
                node.storage.reader(),
                symbiont_contracts::codec::encode(&config.genesis),
            )
            .map_err(ServiceError::Rpc)?,
        ),
        None => None,
    };
    let task = tokio::spawn(async move {
        node.act(actions).await?;
        node.observe();
        let result = node.run(events, submit_rx, query_rx, stop_rx).await;
        if let Some(rpc) = rpc_stop {
            rpc.stop().await;
        }
        if let Some(server) = node.metrics_server.take() {
            server.abort();
        }
        result
    });
    Ok((handle, task))
}

/// The peer ids of the member nodes in `state`.
fn member_peers(state: &symbiont_contracts::state::State) -> Vec<PeerId> {
    exec::current_nodes(state)
        .iter()
        .map(|n| p2p::peer_id_of(&n.key))
        .collect()
}

/// What a stalled height waits for, in words an operator can act on.
fn stall_reason(
    height: u64,
    round: u32,
    step: Step,
    validators: &[ValidatorStatus],
    peers: usize,
) -> String {
    let total: u64 = validators.iter().map(|v| v.power).sum();
    let (kind, voted): (&str, fn(&ValidatorStatus) -> bool) = match step {
        Step::Precommit | Step::Decided => ("precommits", |v| v.precommitted),
        _ => ("prevotes", |v| v.prevoted),
    };
    let missing: Vec<String> = validators
        .iter()
        .filter(|v| !voted(v))
        .map(|v| v.key.to_string())
        .collect();
    let have: u64 = validators
        .iter()
        .filter(|v| voted(v))
        .map(|v| v.power)
        .sum();
    let mut reason = format!(
        "height {height} round {round} step {step:?}: {kind} from {have} of {total} voting power \
         (more than two thirds needed); missing from {}",
        if missing.is_empty() {
            "nobody".to_string()
        } else {
            missing.join(", ")
        }
    );
    if peers == 0 {
        reason += "; no peers connected";
    } else {
        reason += &format!("; {peers} peers connected");
    }
    reason
}

/// The chain at the stored tip.
fn resume_chain(
    genesis: &Genesis,
    storage: &Storage,
    selector: Arc<WeightedRoundRobin>,
) -> Result<Chain, ServiceError> {
    let tip = storage
        .tip()
        .ok_or_else(|| data("no genesis state stored"))?;
    let state = storage
        .load_state()?
        .ok_or_else(|| data("no genesis state stored"))?;
    if tip.height == 0 {
        return Chain::from_genesis(genesis, selector).map_err(data);
    }
    let first = tip.height.saturating_sub(2 * MISSED_TURN_WINDOW).max(1);
    let mut blocks = Vec::new();
    for height in first..=tip.height {
        let bytes = storage
            .block(height)?
            .ok_or_else(|| data(format!("block {height} missing")))?;
        blocks.push(codec::decode::<Block>(&bytes).map_err(data)?);
    }
    let last = blocks.last().expect("at least the tip");
    let tip = Tip {
        height: tip.height,
        hash: tip.block_hash,
        time_ms: last.header.time_ms,
    };
    Chain::resume(genesis, selector, state, tip, &blocks).map_err(data)
}

impl Node {
    async fn run(
        &mut self,
        mut events: mpsc::Receiver<NetworkEvent>,
        mut submits: mpsc::Receiver<(SignedTx, oneshot::Sender<Result<Hash, AdmitError>>)>,
        mut queries: mpsc::Receiver<Query>,
        mut stop: mpsc::Receiver<()>,
    ) -> Result<(), ServiceError> {
        let mut rebroadcast = tokio::time::interval(REBROADCAST_INTERVAL);
        let mut status = tokio::time::interval(STALL_REPORT_INTERVAL);
        let mut last_reported = u64::MAX;
        loop {
            let next_timer = self
                .timers
                .keys()
                .next()
                .map(|(at, _)| *at)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = stop.recv() => break,
                // The first actions of a height `act` started: carried out
                // here, not in `act`, so that a lone validator (it decides
                // on its own votes) does not run height after height
                // inside one call, serving nothing else.
                _ = std::future::ready(()), if !self.next_height.is_empty() => {
                    let actions = std::mem::take(&mut self.next_height);
                    self.act(actions).await?;
                }
                event = events.recv() => {
                    let Some(event) = event else { break };
                    self.on_event(event).await?;
                }
                submit = submits.recv() => {
                    let Some((tx, reply)) = submit else { continue };
                    let result = self.replica.submit(tx);
                    self.metrics.admitted(&result);
                    match result {
                        Ok((id, actions)) => {
                            let _ = reply.send(Ok(id));
                            self.act(actions).await?;
                        }
                        Err(e) => { let _ = reply.send(Err(e)); }
                    }
                }
                query = queries.recv() => {
                    match query {
                        Some(Query::Tx(id, reply)) => { let _ = reply.send(self.tx_status(&id)); }
                        Some(Query::Status(reply)) => { let _ = reply.send(self.status()); }
                        Some(Query::Read(read)) => read(&self.replica),
                        None => {}
                    }
                }
                _ = tokio::time::sleep_until(next_timer) => {
                    let due: Vec<(Instant, u64)> = self
                        .timers
                        .range(..=(Instant::now(), u64::MAX))
                        .map(|(k, _)| *k)
                        .collect();
                    for key in due {
                        if let Some(timeout) = self.timers.remove(&key) {
                            let actions = self.replica.timeout(timeout, now_ms())?;
                            self.act(actions).await?;
                        }
                    }
                }
                _ = status.tick() => {
                    let peers = self.network.connected_peers().await.map_or(0, |p| p.len());
                    self.metrics.peers.set(peers as i64);
                    self.metrics
                        .p2p_dropped_events
                        .set(self.network.dropped_events() as i64);
                    // Say where consensus stands when no block came since
                    // the last report.
                    let height = *self.height.borrow();
                    self.peers = peers;
                    if height == last_reported
                        && let Some(reason) = self.status().stall_reason
                    {
                        tracing::warn!(peers, "no new block: {reason}");
                    }
                    last_reported = height;
                }
                _ = tokio::time::sleep_until(self.tx_batch_due.unwrap_or_else(Instant::now)),
                    if self.tx_batch_due.is_some() => self.publish_tx_batch().await,
                _ = rebroadcast.tick() => {
                    let actions = self.replica.rebroadcast();
                    self.act(actions).await?;
                }
            }
            self.observe();
        }
        let _ = self.network.shutdown().await;
        self.storage.flush()?;
        Ok(())
    }

    /// The gauges that follow the replica: round, mempool size.
    fn observe(&self) {
        let round = self.replica.engine().core().round();
        self.metrics.round.set(i64::from(round));
        let mempool = self.replica.mempool();
        self.metrics.mempool_txs.set(mempool.len() as i64);
        self.metrics.mempool_bytes.set(mempool.bytes() as i64);
    }

    async fn on_event(&mut self, event: NetworkEvent) -> Result<(), ServiceError> {
        match event {
            NetworkEvent::Gossip {
                message_id,
                propagation_source,
                data,
                ..
            } => {
                let message = codec::decode_with_limit::<(NetMessage, u64)>(&data, data.len())
                    .map(|(message, _)| message);
                let verdict = match &message {
                    Ok(NetMessage::Tx(tx)) => {
                        let (verdict, result) = self.replica.check_gossip_tx(tx);
                        self.metrics.admitted(&result);
                        verdict
                    }
                    Ok(NetMessage::Txs(txs)) => {
                        let (verdict, results) = self.replica.check_gossip_txs(txs);
                        for result in &results {
                            self.metrics.admitted(result);
                        }
                        verdict
                    }
                    Ok(message) => self.replica.check_gossip(message),
                    Err(_) => GossipVerdict::Reject,
                };
                let validation = match verdict {
                    GossipVerdict::Accept => Validation::Accept,
                    GossipVerdict::Reject => Validation::Reject,
                    GossipVerdict::Ignore => Validation::Ignore,
                };
                let _ = self
                    .network
                    .report_validation(message_id, propagation_source, validation)
                    .await;
                // Transactions were admitted by the check; consensus
                // messages go to the engine unless invalid (an old height
                // still tells us a peer is behind).
                if let Ok(NetMessage::Consensus(message)) = message
                    && verdict != GossipVerdict::Reject
                {
                    let actions = self
                        .replica
                        .receive(NetMessage::Consensus(message), now_ms())?;
                    self.act(actions).await?;
                }
            }
            NetworkEvent::Request { id, data, .. } => {
                let response = match codec::decode::<SyncRequest>(&data) {
                    Ok(request) => self.commits_from(request.from)?,
                    Err(_) => SyncResponse { commits: vec![] },
                };
                let _ = self.network.answer(id, codec::encode(&response)).await;
            }
            NetworkEvent::Response { peer, data, .. } => {
                if let Ok(response) = codec::decode::<SyncResponse>(&data) {
                    // A full batch: the peer has more; ask at once for the
                    // next one instead of waiting to hear it is ahead.
                    let more = response.commits.len() as u64 == SYNC_BATCH;
                    for (block, certificate) in response.commits {
                        let message = NetMessage::Consensus(Message::Commit {
                            value: block,
                            certificate,
                        });
                        let actions = self.replica.receive(message, now_ms())?;
                        self.act(actions).await?;
                    }
                    if more {
                        let from = self.replica.chain().next_height();
                        let request = codec::encode(&SyncRequest { from });
                        let _ = self.network.send_request(peer, request).await;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn tx_status(&self, id: &Hash) -> TxStatus {
        if let Some(receipt) = exec::receipt(self.replica.chain().state(), id) {
            TxStatus::Committed(receipt)
        } else if self.replica.mempool().contains(id) {
            TxStatus::Pending
        } else {
            TxStatus::Unknown
        }
    }

    fn status(&self) -> NodeStatus {
        let chain = self.replica.chain();
        let engine = self.replica.engine();
        let core = engine.core();
        let (round, step) = (core.round(), core.step());
        let keeper = core.keeper();
        let validators: Vec<ValidatorStatus> = core
            .validators()
            .validators()
            .iter()
            .map(|v| ValidatorStatus {
                key: v.address,
                power: v.power,
                prevoted: keeper.has_voted(round, VoteType::Prevote, &v.address),
                precommitted: keeper.has_voted(round, VoteType::Precommit, &v.address),
                highest_round: engine.highest_round_of(&v.address),
            })
            .collect();
        let since = self.last_commit_at.elapsed();
        let step_name = match step {
            Step::Unstarted => "unstarted",
            Step::Propose => "propose",
            Step::Prevote => "prevote",
            Step::Precommit => "precommit",
            Step::Decided => "commit",
        };
        let stall_reason = (since >= STALL_AFTER)
            .then(|| stall_reason(core.height(), round, step, &validators, self.peers));
        let tip = chain.tip();
        NodeStatus {
            chain_id: chain.chain_id().to_string(),
            genesis_hash: self.genesis_hash,
            node_key: self.node_key,
            is_validator: core.validators().contains(&self.node_key),
            height: tip.height,
            block_hash: tip.hash,
            app_hash: chain.state().app_hash(),
            last_block_time_ms: tip.time_ms,
            ms_since_last_commit: since.as_millis() as u64,
            consensus_height: core.height(),
            round,
            step: step_name,
            peers: self.peers,
            mempool_txs: self.replica.mempool().len(),
            mempool_bytes: self.replica.mempool().bytes(),
            validators,
            stall_reason,
        }
    }

    fn commits_from(&self, from: u64) -> Result<SyncResponse, ServiceError> {
        let tip = self.storage.tip().map_or(0, |t| t.height);
        let mut commits = Vec::new();
        let mut bytes = 0usize;
        for height in from.max(1)..=tip.min(from.saturating_add(SYNC_BATCH - 1)) {
            let (Some(block), Some(certificate)) = (
                self.storage.block(height)?,
                self.storage.certificate(height)?,
            ) else {
                break;
            };
            bytes += block.len() + certificate.len();
            if bytes > SYNC_BATCH_BYTES && !commits.is_empty() {
                break;
            }
            commits.push((
                codec::decode(&block).map_err(data)?,
                codec::decode(&certificate).map_err(data)?,
            ));
        }
        Ok(SyncResponse { commits })
    }

    /// Gossips `message` with a fresh send number.
    async fn publish(&mut self, topic: Topic, message: &NetMessage) {
        self.send_number = self.send_number.wrapping_add(1);
        // Nobody subscribed yet: gossip sends again later.
        let _ = self
            .network
            .publish(topic, codec::encode(&(message, self.send_number)))
            .await;
    }

    /// Queues an admitted transaction for the next batch; publishes the
    /// batch once it is full.
    async fn batch_tx(&mut self, tx: SignedTx) {
        self.tx_batch_bytes += tx.to_bytes().len();
        self.tx_batch.push(tx);
        if self.tx_batch.len() >= TX_BATCH_MAX_TXS || self.tx_batch_bytes >= TX_BATCH_MAX_BYTES {
            self.publish_tx_batch().await;
        } else if self.tx_batch_due.is_none() {
            self.tx_batch_due = Some(Instant::now() + TX_BATCH_WINDOW);
        }
    }

    /// Gossips the waiting transactions as one message.
    async fn publish_tx_batch(&mut self) {
        self.tx_batch_due = None;
        self.tx_batch_bytes = 0;
        let txs = std::mem::take(&mut self.tx_batch);
        if !txs.is_empty() {
            self.publish(Topic::Txs, &NetMessage::Txs(txs)).await;
        }
    }

    /// Carries out the replica's actions in order.
    async fn act(&mut self, actions: Vec<Action>) -> Result<(), ServiceError> {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Broadcast(NetMessage::Tx(tx)) => self.batch_tx(tx).await,
                Action::Broadcast(message) => {
                    let topic = match message {
                        NetMessage::Tx(_) | NetMessage::Txs(_) => Topic::Txs,
                        NetMessage::Consensus(_) => Topic::Consensus,
                    };
                    self.publish(topic, &message).await;
                }
                Action::ScheduleTimeout {
                    timeout,
                    duration_ms,
                } => {
                    self.timer_seq += 1;
                    let at = Instant::now() + Duration::from_millis(duration_ms);
                    self.timers.insert((at, self.timer_seq), timeout);
                }
                Action::Commit {
                    block,
                    certificate,
                    outcome,
                } => {
                    let block_bytes = codec::encode(&block);
                    let certificate_bytes = codec::encode(&certificate);
                    // The replica's state is the state after the block.
                    let events = crate::events::derive(
                        &block,
                        &outcome.results,
                        self.replica.chain().state(),
                    )
                    .encode();
                    self.storage.commit(&CommitRecord {
                        height: block.header.height,
                        block_hash: block.hash(),
                        block: &block_bytes,
                        certificate: &certificate_bytes,
                        writes: &outcome.writes,
                        app_hash: outcome.app_hash,
                        events: Some(&events),
                    })?;
                    self.metrics.committed(
                        block.header.height,
                        certificate.round,
                        self.height_started.elapsed().as_secs_f64(),
                    );
                    let _ = self.height.send(block.header.height);
                    self.last_commit_at = Instant::now();
                    // Governance may have added or removed a node: the
                    // swarm admits the members of the new tip.
                    let members = member_peers(self.replica.chain().state());
                    if members != self.members {
                        tracing::info!(members = members.len(), "membership changed");
                        self.members = members.clone();
                        self.network.set_members(members).await?;
                    }
                    tracing::info!(
                        height = block.header.height,
                        txs = block.txs.len(),
                        round = certificate.round,
                        "block stored"
                    );
                    self.height_started = std::time::Instant::now();
                    // Timers of the finished height are void.
                    self.timers.clear();
                    // The engine starts the height now (whatever comes
                    // next finds it there); its actions wait for the run
                    // loop.
                    self.next_height
                        .extend(self.replica.start_next_height(now_ms())?);
                }
                Action::SendCommit { height, .. } => {
                    // A peer behind: gossip the commit (it reaches it, and
                    // any other peer behind). The replica asks once per
                    // height and interval.
                    if let Some(mut response) = self
                        .commits_from(height)
                        .ok()
                        .filter(|r| !r.commits.is_empty())
                    {
                        let (block, certificate) = response.commits.swap_remove(0);
                        let message = NetMessage::Consensus(Message::Commit {
                            value: block,
                            certificate,
                        });
                        self.metrics.commits_gossiped.inc();
                        self.publish(Topic::Consensus, &message).await;
                    }
                }
                Action::RequestCommits { peer } => {
                    let peer_id = p2p::peer_id_of(&peer);
                    let from = self.replica.chain().next_height();
                    let request = codec::encode(&SyncRequest { from });
                    let _ = self.network.send_request(peer_id, request).await;
                }
            }
        }
        Ok(())
    }
}
