//! The behaviour and the one task that owns the swarm.

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, PublishError, TopicHash};
use libp2p::request_response::{self, InboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, allow_block_list, identify, noise,
    ping, tcp, yamux,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::{
    Command, MAX_PENDING_INBOUND_REQUESTS, MAX_REDIAL_BACKOFF, NetworkConfig, NetworkError,
    NetworkEvent, SyncCodec, TICK, Topic, Validation, protocol_version, sync_protocol,
};

/// Connections stay open this long without traffic; gossipsub keeps only
/// mesh links alive, and members should stay connected.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How often each connection is pinged, and how long an answer may take
/// before the connection is closed as dead.
const PING_INTERVAL: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Room for the gossipsub envelope (topic, framing) on top of the largest
/// payload.
const GOSSIP_ENVELOPE_BYTES: usize = 1024;

/// The node's one network behaviour.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    identify: identify::Behaviour,
    /// Finds connections that no longer carry data (a cut link): TCP
    /// alone would keep them "open" for minutes.
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
}

type BoxError = Box<dyn Error + Send + Sync>;

fn build_behaviour(
    keypair: &libp2p::identity::Keypair,
    config: &NetworkConfig,
) -> Result<Behaviour, BoxError> {
    let identify = identify::Behaviour::new(identify::Config::new(
        protocol_version(&config.chain_id),
        keypair.public(),
    ));

    // Anonymous gossip: no origin, sequence number or libp2p signature in
    // a message (docs/p2p.md, "Anonymous"). Every payload carries its own
    // ed25519 signatures (transactions by their signers, votes and
    // proposals by validators, commits with their certificates), which the
    // node checks before anything is forwarded; only members can connect
    // (noise-authenticated PeerIds and the allow-list), so every message
    // enters the mesh through a member, and a `Reject` still counts against
    // the peer that sent it. Signing every message and verifying every
    // received copy (before gossipsub's duplicate check) was 10-13% of a
    // validator's CPU under load. Ids are content hashes either way, so
    // replays behave as before: the same bytes within the seen-cache time
    // are one message, later ones are judged again by the node (old
    // heights, committed transactions); the send number the node appends
    // makes each deliberate resend new.
    let gossipsub_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|message: &gossipsub::Message| {
            gossipsub::MessageId::from(blake3::hash(&message.data).as_bytes().to_vec())
        })
        .max_transmit_size(config.max_message_bytes as usize + GOSSIP_ENVELOPE_BYTES)
        .build()?;
    let gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossipsub_config)?;

    let protocol = StreamProtocol::try_from_owned(sync_protocol(&config.chain_id))?;
    let sync = request_response::Behaviour::with_codec(
        SyncCodec::new(config.max_request_bytes, config.max_response_bytes),
        [(protocol, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(config.request_timeout),
    );

    Ok(Behaviour {
        allow: allow_block_list::Behaviour::default(),
        identify,
        ping: ping::Behaviour::new(
            ping::Config::new()
                .with_interval(PING_INTERVAL)
                .with_timeout(PING_TIMEOUT),
        ),
        gossipsub,
        sync,
    })
}

/// Fibonacci backoff between dials of one member.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    next_dial: Instant,
    previous: Duration,
    current: Duration,
}

impl Backoff {
    fn new(now: Instant) -> Backoff {
        Backoff {
            next_dial: now,
            previous: Duration::ZERO,
            current: TICK,
        }
    }

    fn advance(&mut self, now: Instant) {
        self.next_dial = now + self.current;
        let next = (self.previous + self.current).min(MAX_REDIAL_BACKOFF);
        self.previous = self.current;
        self.current = next;
    }
}

pub(crate) struct Network {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    dropped_events: Arc<AtomicU64>,
    chain_id: String,
    max_message_bytes: u32,
    max_request_bytes: u32,
    max_response_bytes: u32,
    topics: HashMap<TopicHash, Topic>,
    members: HashSet<PeerId>,
    addresses: HashMap<PeerId, Multiaddr>,
    backoff: HashMap<PeerId, Backoff>,
    /// Peers announced by identify with our protocol version, still connected.
    admitted: HashSet<PeerId>,
    pending_inbound: HashMap<InboundRequestId, ResponseChannel<Vec<u8>>>,
}

impl Network {
    pub(crate) fn new(
        config: NetworkConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetworkEvent>,
        dropped_events: Arc<AtomicU64>,
    ) -> Result<Network, NetworkError> {
        let identity = libp2p::identity::Keypair::ed25519_from_bytes(config.keypair.seed())
            .map_err(|error| NetworkError::Build(error.to_string()))?;
        let build_error = |error: &dyn std::fmt::Display| NetworkError::Build(error.to_string());
        let mut swarm = SwarmBuilder::with_existing_identity(identity)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| build_error(&e))?
            .with_behaviour(|keypair| build_behaviour(keypair, &config))
            .map_err(|e| build_error(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
            .build();

        let mut topics = HashMap::new();
        for topic in Topic::ALL {
            let ident = IdentTopic::new(topic.name(&config.chain_id));
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&ident)
                .map_err(|e| build_error(&e))?;
            topics.insert(ident.hash(), topic);
        }

        let members: HashSet<PeerId> = config.members.iter().copied().collect();
        for member in &members {
            swarm.behaviour_mut().allow.allow_peer(*member);
        }
        swarm
            .listen_on(config.listen.clone())
            .map_err(|error| NetworkError::Listen {
                address: config.listen.clone(),
                reason: error.to_string(),
            })?;

        Ok(Network {
            swarm,
            commands,
            events,
            dropped_events,
            chain_id: config.chain_id,
            max_message_bytes: config.max_message_bytes,
            max_request_bytes: config.max_request_bytes,
            max_response_bytes: config.max_response_bytes,
            topics,
            members,
            addresses: config.peers.into_iter().collect(),
            backoff: HashMap::new(),
            admitted: HashSet::new(),
            pending_inbound: HashMap::new(),
        })
    }

    pub(crate) fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// The loop: one `select!` over the swarm, the commands and the tick.
    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shutdown_reply = loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => break Some(reply),
                    Some(command) => self.on_command(command),
                    None => break None,
                },
                _ = tick.tick() => self.on_tick(),
            }
        };
        // Dropping the swarm closes every connection and listener; only then
        // is the shutdown acknowledged.
        drop(self);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// Sends an event without waiting; a full or closed channel drops and
    /// counts it. Returns whether the event was queued.
    fn emit(&self, event: NetworkEvent) -> bool {
        let queued = self.events.try_send(event).is_ok();
        if !queued {
            self.dropped_events.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Allow(never)) => match never {},
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event),
            // A connection that does not answer a ping is dead: close it,
            // so the peer counts as gone and the redial tick dials it
            // again (a cut link would otherwise hold a dead connection
            // for as long as TCP retransmits, up to minutes).
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                connection,
                result: Err(_),
                ..
            })) => {
                self.swarm.close_connection(connection);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(_)) => {}
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossipsub(event),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                self.emit(NetworkEvent::Listening(address));
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if self.admitted.remove(&peer_id) => {
                self.emit(NetworkEvent::PeerDisconnected(peer_id));
            }
            _ => {}
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        if info.protocol_version != protocol_version(&self.chain_id) {
            let _ = self.swarm.disconnect_peer_id(peer_id);
            return;
        }
        // The allow-list already refused non-members; a member removed
        // since could still be in the middle of closing.
        if !self.members.contains(&peer_id) || !self.swarm.is_connected(&peer_id) {
            return;
        }
        self.backoff.remove(&peer_id);
        if self.admitted.insert(peer_id) {
            self.emit(NetworkEvent::PeerConnected(peer_id));
        }
    }

    fn on_gossipsub(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = event
        else {
            return;
        };
        // Only members' connections are admitted, so the sender is a
        // member (or one removed a moment ago, its connection closing).
        let Some(topic) = self.topics.get(&message.topic).copied() else {
            self.report(&message_id, &propagation_source, Validation::Ignore);
            return;
        };
        let event = NetworkEvent::Gossip {
            topic,
            message_id: message_id.clone(),
            propagation_source,
            data: message.data,
        };
        if !self.emit(event) {
            self.report(&message_id, &propagation_source, Validation::Ignore);
        }
    }

    fn on_sync(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request_id,
                    request,
                    channel,
                } => {
                    if self.pending_inbound.len() >= MAX_PENDING_INBOUND_REQUESTS {
                        self.dropped_events.fetch_add(1, Ordering::Relaxed);
                        return; // dropping the channel closes the stream
                    }
                    let event = NetworkEvent::Request {
                        peer,
                        id: request_id,
                        data: request,
                    };
                    if self.emit(event) {
                        self.pending_inbound.insert(request_id, channel);
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    self.emit(NetworkEvent::Response {
                        peer,
                        id: request_id,
                        data: response,
                    });
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.emit(NetworkEvent::RequestFailed {
                    peer,
                    id: request_id,
                    reason: error.to_string(),
                });
            }
            request_response::Event::InboundFailure { request_id, .. }
            | request_response::Event::ResponseSent { request_id, .. } => {
                self.pending_inbound.remove(&request_id);
            }
        }
    }

    fn report(
        &mut self,
        message_id: &gossipsub::MessageId,
        source: &PeerId,
        validation: Validation,
    ) {
        let acceptance = match validation {
            Validation::Accept => MessageAcceptance::Accept,
            Validation::Reject => MessageAcceptance::Reject,
            Validation::Ignore => MessageAcceptance::Ignore,
        };
        // `false` only means the message is no longer cached (expired).
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(message_id, source, acceptance);
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::ReportValidation {
                message_id,
                propagation_source,
                validation,
            } => self.report(&message_id, &propagation_source, validation),
            Command::SendRequest { peer, data, reply } => {
                let result = if data.len() > self.max_request_bytes as usize {
                    Err(NetworkError::TooLarge {
                        size: data.len(),
                        max: self.max_request_bytes,
                    })
                } else {
                    Ok(self.swarm.behaviour_mut().sync.send_request(&peer, data))
                };
                let _ = reply.send(result);
            }
            Command::Answer { id, data, reply } => {
                let _ = reply.send(self.answer(id, data));
            }
            Command::SetMembers { members } => self.set_members(members),
            Command::AddAddress { peer, address } => {
                self.addresses.insert(peer, address);
                self.backoff.remove(&peer);
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::MeshPeers { topic, reply } => {
                let hash = IdentTopic::new(topic.name(&self.chain_id)).hash();
                let gossipsub = &self.swarm.behaviour().gossipsub;
                let _ = reply.send(gossipsub.mesh_peers(&hash).copied().collect());
            }
            Command::Shutdown { reply } => {
                // Handled by `run`; kept total for the match.
                let _ = reply.send(());
            }
        }
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) -> Result<(), NetworkError> {
        if data.len() > self.max_message_bytes as usize {
            return Err(NetworkError::TooLarge {
                size: data.len(),
                max: self.max_message_bytes,
            });
        }
        let ident = IdentTopic::new(topic.name(&self.chain_id));
        match self.swarm.behaviour_mut().gossipsub.publish(ident, data) {
            Ok(_) | Err(PublishError::Duplicate) | Err(PublishError::NoPeersSubscribedToTopic) => {
                Ok(())
            }
            Err(error) => Err(NetworkError::Publish(error.to_string())),
        }
    }

    fn answer(&mut self, id: InboundRequestId, data: Vec<u8>) -> Result<(), NetworkError> {
        let channel = self
            .pending_inbound
            .remove(&id)
            .ok_or(NetworkError::UnknownRequest)?;
        if data.len() > self.max_response_bytes as usize {
            // The channel is dropped: the requester sees a failure.
            return Err(NetworkError::TooLarge {
                size: data.len(),
                max: self.max_response_bytes,
            });
        }
        self.swarm
            .behaviour_mut()
            .sync
            .send_response(channel, data)
            .map_err(|_| NetworkError::UnknownRequest)
    }

    fn set_members(&mut self, members: Vec<PeerId>) {
        let new: HashSet<PeerId> = members.into_iter().collect();
        let removed: Vec<PeerId> = self.members.difference(&new).copied().collect();
        let added: Vec<PeerId> = new.difference(&self.members).copied().collect();
        let behaviour = self.swarm.behaviour_mut();
        for peer in removed {
            // Closes live connections to the peer.
            behaviour.allow.disallow_peer(peer);
            behaviour.gossipsub.blacklist_peer(&peer);
            self.backoff.remove(&peer);
        }
        for peer in added {
            behaviour.allow.allow_peer(peer);
            behaviour.gossipsub.remove_blacklisted_peer(&peer);
        }
        self.members = new;
    }

    fn on_tick(&mut self) {
        self.pending_inbound.retain(|_, channel| channel.is_open());
        self.redial(Instant::now());
    }

    fn redial(&mut self, now: Instant) {
        let local = self.local_peer_id();
        for (peer, address) in &self.addresses {
            if *peer == local || !self.members.contains(peer) || self.swarm.is_connected(peer) {
                continue;
            }
            let backoff = self
                .backoff
                .entry(*peer)
                .or_insert_with(|| Backoff::new(now));
            if now < backoff.next_dial {
                continue;
            }
            backoff.advance(now);
            let options = DialOpts::peer_id(*peer)
                .addresses(vec![address.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            // An error here (e.g. already dialing) is retried on a later tick.
            let _ = self.swarm.dial(options);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_fibonacci_and_capped() {
        let start = Instant::now();
        let mut backoff = Backoff::new(start);
        assert_eq!(backoff.next_dial, start);
        let mut waits = Vec::new();
        for _ in 0..10 {
            backoff.advance(start);
            waits.push((backoff.next_dial - start).as_secs());
        }
        assert_eq!(waits, [1, 1, 2, 3, 5, 8, 13, 21, 30, 30]);
    }
}
