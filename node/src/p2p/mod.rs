//! The node's one libp2p swarm and its event loop.
//!
//! This module moves opaque bytes between members; it never decodes a
//! payload. The node (its caller) decodes and judges what arrives, and
//! reports its verdicts back. docs/p2p.md describes the wire: topics,
//! message ids, the sync protocol's framing, the allow-list and dialing.
//!
//! # Shape
//!
//! [`spawn`] builds the swarm (TCP + noise + yamux; one `Behaviour` made of
//! an allow-list, identify, gossipsub and request-response) and moves it into
//! one tokio task. That task runs one `tokio::select!` over the swarm, the
//! control channel fed by [`NetworkHandle`], and a 1 s tick. Nothing else
//! touches the swarm.
//!
//! - Events go out on a bounded channel with `try_send`: a slow consumer
//!   never stalls the swarm. An event that does not fit is dropped and
//!   counted ([`NetworkHandle::dropped_events`]); a dropped gossip message
//!   is reported `Ignore` to gossipsub, a dropped request's response
//!   channel is dropped (the requester sees a failure).
//! - Membership: only members' connections are admitted
//!   (`allow_block_list`). The refusal happens after the noise handshake, so
//!   a dialer whose identity is not allowed sees its connection established
//!   and then closed. Therefore [`NetworkEvent::PeerConnected`] is emitted
//!   only once the peer's identify information has arrived with our
//!   protocol version: the remote admitted us too and runs our chain. A peer
//!   announcing another protocol version is disconnected.
//! - Gossip: gossipsub in anonymous mode (no origin, sequence number or
//!   libp2p signature: payloads carry their own signatures, and only
//!   members can connect; see docs/p2p.md), with application validation.
//!   Nothing received is forwarded until the node calls
//!   [`NetworkHandle::report_validation`]; the node must report every
//!   [`NetworkEvent::Gossip`] it gets. The message id is the blake3 hash of
//!   the payload, so equal payloads are one message; republishing one is a
//!   success.
//! - Sync: request-response with [`SyncCodec`] (u32 big-endian length
//!   prefix, checked against the maximum before allocating). Every inbound
//!   request is either handed to the node, which must [`NetworkHandle::answer`]
//!   it, or dropped here (closing the stream); channels the node never
//!   answers are forgotten once their stream times out (`request_timeout`)
//!   or closes, and at most
//!   [`MAX_PENDING_INBOUND_REQUESTS`] wait at once.
//! - Dialing: every member with a known address is dialed on the tick while
//!   not connected, with a Fibonacci backoff per peer (1, 1, 2, 3, 5 ... s,
//!   capped at [`MAX_REDIAL_BACKOFF`]), reset when the peer is admitted.
//! - Shutdown: [`NetworkHandle::shutdown`] stops the loop, drops the swarm
//!   (closing every connection and listener) and then returns. Dropping
//!   every handle also stops the loop.
//!
//! [`spawn`] must be called inside a tokio runtime.

mod codec;
mod swarm_loop;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use codec::{LENGTH_PREFIX_BYTES, SyncCodec};
pub use libp2p::gossipsub::MessageId;
pub use libp2p::request_response::{InboundRequestId, OutboundRequestId};
pub use libp2p::{Multiaddr, PeerId};

use symbiont_contracts::keys::{Keypair, PublicKey};

/// Capacity of the control channel from handles to the loop.
pub const COMMAND_CAPACITY: usize = 256;
/// Inbound sync requests waiting for the node's answer, at most.
pub const MAX_PENDING_INBOUND_REQUESTS: usize = 1024;
/// The longest wait between two dials of the same member.
pub const MAX_REDIAL_BACKOFF: Duration = Duration::from_secs(30);
/// The loop's tick: redials and housekeeping.
pub const TICK: Duration = Duration::from_secs(1);

/// What the network needs to run one node.
pub struct NetworkConfig {
    /// The node's key; its libp2p identity is the same ed25519 key.
    pub keypair: Keypair,
    /// Where to listen, e.g. `/ip4/0.0.0.0/tcp/26656` (port 0: ephemeral).
    pub listen: Multiaddr,
    /// Peers to dial, with their addresses; only members are dialed (a
    /// peer listed here that becomes a member later is dialed then).
    pub peers: Vec<(PeerId, Multiaddr)>,
    /// The allow-list: only these peers' connections are admitted.
    pub members: Vec<PeerId>,
    /// Names the identify protocol version and the topics (see docs/p2p.md).
    pub chain_id: String,
    /// Largest gossip payload, in bytes.
    pub max_message_bytes: u32,
    /// Largest sync request payload, in bytes.
    pub max_request_bytes: u32,
    /// Largest sync response payload, in bytes.
    pub max_response_bytes: u32,
    /// How long an outbound sync request may wait for its response.
    pub request_timeout: Duration,
    /// Capacity of the event channel to the node.
    pub event_capacity: usize,
}

impl NetworkConfig {
    /// Defaults: 1 MiB gossip payloads, 64 KiB requests, 16 MiB responses,
    /// 10 s request timeout, 1024 queued events; no peers, no members.
    pub fn new(keypair: Keypair, listen: Multiaddr, chain_id: impl Into<String>) -> NetworkConfig {
        NetworkConfig {
            keypair,
            listen,
            peers: Vec::new(),
            members: Vec::new(),
            chain_id: chain_id.into(),
            max_message_bytes: 1 << 20,
            max_request_bytes: 64 << 10,
            max_response_bytes: 16 << 20,
            request_timeout: Duration::from_secs(10),
            event_capacity: 1024,
        }
    }

    fn check(&self) -> Result<(), NetworkError> {
        let chain = &self.chain_id;
        let chain_ok = !chain.is_empty()
            && chain.len() <= 64
            && chain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !chain_ok {
            return Err(NetworkError::Config(format!(
                "chain id {chain:?}: 1-64 characters of [A-Za-z0-9._-]"
            )));
        }
        if self.max_message_bytes == 0 || self.max_request_bytes == 0 {
            return Err(NetworkError::Config(
                "message and request maxima must be positive".into(),
            ));
        }
        if self.event_capacity == 0 {
            return Err(NetworkError::Config(
                "event capacity must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// The libp2p PeerId of one of our public keys.
pub fn peer_id_of(key: &PublicKey) -> PeerId {
    let public = libp2p::identity::ed25519::PublicKey::try_from_bytes(&key.0)
        .expect("a PublicKey holds a valid ed25519 point");
    libp2p::identity::PublicKey::from(public).to_peer_id()
}

/// The gossip topics. Each is named `/symbiont/<chain>/<topic>/1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Proposals, votes, certificates.
    Consensus,
    /// Transactions for the mempool.
    Txs,
}

impl Topic {
    pub const ALL: [Topic; 2] = [Topic::Consensus, Topic::Txs];

    /// The gossipsub topic name on a chain.
    pub fn name(self, chain_id: &str) -> String {
        let topic = match self {
            Topic::Consensus => "consensus",
            Topic::Txs => "txs",
        };
        format!("/symbiont/{chain_id}/{topic}/1")
    }
}

/// The identify protocol version of a chain: peers must announce this one.
/// Version 2: anonymous gossip and transaction batches (a version-1 node
/// would drop every unsigned message, so the two refuse each other).
pub fn protocol_version(chain_id: &str) -> String {
    format!("/symbiont/{chain_id}/2")
}

/// The stream protocol of block sync on a chain.
pub fn sync_protocol(chain_id: &str) -> String {
    format!("/symbiont/{chain_id}/sync/1")
}

/// The node's verdict on a gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Valid: deliver and forward.
    Accept,
    /// Invalid: do not forward, and penalise the peer that sent it.
    Reject,
    /// Not forwarded, no penalty (stale, duplicate, not ours to judge).
    Ignore,
}

/// What the network tells the node.
#[derive(Debug)]
pub enum NetworkEvent {
    /// The swarm listens on this address (one event per address).
    Listening(Multiaddr),
    /// A member is connected, admitted us, and runs our protocol version.
    PeerConnected(PeerId),
    /// The last connection to a peer that was [`NetworkEvent::PeerConnected`] closed.
    PeerDisconnected(PeerId),
    /// A gossip message from a member, not forwarded yet: report a verdict
    /// with [`NetworkHandle::report_validation`]. Messages are anonymous:
    /// who published it first is not known, only who sent it to us.
    Gossip {
        topic: Topic,
        message_id: MessageId,
        /// The peer that sent it to us; pass it back with the verdict.
        propagation_source: PeerId,
        data: Vec<u8>,
    },
    /// A sync request: answer it with [`NetworkHandle::answer`].
    Request {
        peer: PeerId,
        id: InboundRequestId,
        data: Vec<u8>,
    },
    /// The response to one of our requests.
    Response {
        peer: PeerId,
        id: OutboundRequestId,
        data: Vec<u8>,
    },
    /// One of our requests failed (dial failure, timeout, closed stream,
    /// refused frame, unsupported protocol).
    RequestFailed {
        peer: PeerId,
        id: OutboundRequestId,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid network config: {0}")]
    Config(String),
    #[error("cannot build the swarm: {0}")]
    Build(String),
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: Multiaddr, reason: String },
    #[error("payload of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: usize, max: u32 },
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("no pending request with this id (answered, expired or dropped)")]
    UnknownRequest,
    #[error("the network task has stopped")]
    Stopped,
}

/// Commands from handles to the loop.
pub(crate) enum Command {
    Publish {
        topic: Topic,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetworkError>>,
    },
    ReportValidation {
        message_id: MessageId,
        propagation_source: PeerId,
        validation: Validation,
    },
    SendRequest {
        peer: PeerId,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<OutboundRequestId, NetworkError>>,
    },
    Answer {
        id: InboundRequestId,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetworkError>>,
    },
    SetMembers {
        members: Vec<PeerId>,
    },
    AddAddress {
        peer: PeerId,
        address: Multiaddr,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    ConnectedPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    MeshPeers {
        topic: Topic,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// The node's side of the network: cheap to clone; every call goes through
/// the bounded control channel to the loop.
#[derive(Clone)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    dropped_events: Arc<AtomicU64>,
}

impl fmt::Debug for NetworkHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkHandle")
            .field("local_peer_id", &self.local_peer_id)
            .finish_non_exhaustive()
    }
}

impl NetworkHandle {
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Events dropped because the event channel was full.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events.load(Ordering::Relaxed)
    }

    /// Publishes a payload. Publishing a payload already seen, or with no
    /// subscribed peer yet, is a success.
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<(), NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.call(Command::Publish { topic, data, reply }, answer)
            .await?
    }

    /// Reports the node's verdict on a [`NetworkEvent::Gossip`].
    pub async fn report_validation(
        &self,
        message_id: MessageId,
        propagation_source: PeerId,
        validation: Validation,
    ) -> Result<(), NetworkError> {
        self.send(Command::ReportValidation {
            message_id,
            propagation_source,
            validation,
        })
        .await
    }

    /// Sends a sync request; the outcome arrives as [`NetworkEvent::Response`]
    /// or [`NetworkEvent::RequestFailed`] with the returned id.
    pub async fn send_request(
        &self,
        peer: PeerId,
        data: Vec<u8>,
    ) -> Result<OutboundRequestId, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.call(Command::SendRequest { peer, data, reply }, answer)
            .await?
    }

    /// Answers a [`NetworkEvent::Request`].
    pub async fn answer(&self, id: InboundRequestId, data: Vec<u8>) -> Result<(), NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.call(Command::Answer { id, data, reply }, answer)
            .await?
    }

    /// Replaces the allow-list. Removed members are disconnected and
    /// blacklisted in gossipsub; new members are admitted (dialed if their
    /// address is known). Gossip is anonymous, so what a removed member
    /// published through a member that has not removed it yet still
    /// arrives, from that member, and is judged by its content.
    pub async fn set_members(&self, members: Vec<PeerId>) -> Result<(), NetworkError> {
        self.send(Command::SetMembers { members }).await
    }

    /// Sets the address to dial a peer at (replacing any earlier one); it
    /// is dialed on the next tick if it is a member and not connected.
    pub async fn add_address(&self, peer: PeerId, address: Multiaddr) -> Result<(), NetworkError> {
        self.send(Command::AddAddress { peer, address }).await
    }

    /// The addresses the swarm listens on now.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.call(Command::ListenAddrs { reply }, answer).await
    }

    /// Peers with at least one open connection (admitted or not yet).
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.call(Command::ConnectedPeers { reply }, answer).await
    }

    /// Peers in our gossipsub mesh for a topic: those we forward its
    /// accepted messages to.
    pub async fn mesh_peers(&self, topic: Topic) -> Result<Vec<PeerId>, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.call(Command::MeshPeers { topic, reply }, answer).await
    }

    /// Stops the loop and waits until the swarm (connections, listeners) is
    /// dropped. Stopping a stopped network is a success.
    pub async fn shutdown(&self) -> Result<(), NetworkError> {
        let (reply, answer) = oneshot::channel();
        match self.call(Command::Shutdown { reply }, answer).await {
            Ok(()) | Err(NetworkError::Stopped) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn send(&self, command: Command) -> Result<(), NetworkError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| NetworkError::Stopped)
    }

    async fn call<T>(
        &self,
        command: Command,
        answer: oneshot::Receiver<T>,
    ) -> Result<T, NetworkError> {
        self.send(command).await?;
        answer.await.map_err(|_| NetworkError::Stopped)
    }
}

/// Builds the swarm, starts listening, and spawns the loop on the current
/// tokio runtime.
/// The swarm binds its TCP listener asynchronously and a failure then
/// would only close the listener: a TCP address that cannot be bound
/// (in use, not ours) is refused here, before anything starts.
fn check_listen_address(address: &Multiaddr) -> Result<(), NetworkError> {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut port = None;
    for protocol in address.iter() {
        match protocol {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    if let (Some(ip), Some(port)) = (ip, port)
        && port != 0
    {
        std::net::TcpListener::bind((ip, port)).map_err(|error| NetworkError::Listen {
            address: address.clone(),
            reason: error.to_string(),
        })?;
    }
    Ok(())
}

pub fn spawn(
    config: NetworkConfig,
) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>), NetworkError> {
    config.check()?;
    check_listen_address(&config.listen)?;
    let (commands, command_receiver) = mpsc::channel(COMMAND_CAPACITY);
    let (events, event_receiver) = mpsc::channel(config.event_capacity);
    let dropped_events = Arc::new(AtomicU64::new(0));
    let network =
        swarm_loop::Network::new(config, command_receiver, events, dropped_events.clone())?;
    let handle = NetworkHandle {
        commands,
        local_peer_id: network.local_peer_id(),
        dropped_events,
    };
    tokio::spawn(network.run());
    Ok((handle, event_receiver))
}
