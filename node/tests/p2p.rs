//! The p2p swarm with real sockets on 127.0.0.1: gossip and validation,
//! the allow-list, block-sync request-response and its size limits,
//! membership changes, shutdown. Every test is bounded by a timeout.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use libp2p::StreamProtocol;
use libp2p::futures::io::Cursor;
use libp2p::request_response::Codec;
use symbiont_contracts::keys::Keypair;
use symbiont_node::p2p::{
    Multiaddr, NetworkConfig, NetworkError, NetworkEvent, NetworkHandle, PeerId, SyncCodec, Topic,
    Validation, peer_id_of, spawn,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};

/// Records the largest single allocation, to show that the codec refuses
/// an announced frame before allocating it.
struct Tracking;

static LARGEST_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

const CHAIN: &str = "test-chain";
const TEST_LIMIT: Duration = Duration::from_secs(25);
const WAIT: Duration = Duration::from_secs(10);
/// How long a message must stay away to count as "not delivered".
const QUIET: Duration = Duration::from_millis(1500);

fn keypair(seed: u8) -> Keypair {
    Keypair::from_seed([seed; 32])
}

fn peer(seed: u8) -> PeerId {
    peer_id_of(&keypair(seed).public())
}

async fn bounded(test: impl Future<Output = ()>) {
    timeout(TEST_LIMIT, test).await.expect("test timed out");
}

struct Node {
    handle: NetworkHandle,
    events: mpsc::Receiver<NetworkEvent>,
    /// Events that arrived before `Listening`, in order.
    backlog: VecDeque<NetworkEvent>,
    peer_id: PeerId,
    address: Multiaddr,
}

/// Starts node `seed` with the given members, dialing the given nodes.
async fn start(seed: u8, members: &[u8], dial: &[&Node]) -> Node {
    start_with(seed, members, dial, |_| {}).await
}

async fn start_with(
    seed: u8,
    members: &[u8],
    dial: &[&Node],
    tweak: impl FnOnce(&mut NetworkConfig),
) -> Node {
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
    let mut config = NetworkConfig::new(keypair(seed), listen, CHAIN);
    config.members = members.iter().map(|&m| peer(m)).collect();
    config.peers = dial
        .iter()
        .map(|node| (node.peer_id, node.address.clone()))
        .collect();
    tweak(&mut config);
    let (handle, mut events) = spawn(config).expect("spawn");
    // The libp2p identity is the node's key: same PeerId as our text form.
    assert_eq!(handle.local_peer_id(), peer(seed));
    assert_eq!(peer(seed).to_string(), keypair(seed).public().peer_id());
    // The bound address of the ephemeral port.
    let mut backlog = VecDeque::new();
    let address = loop {
        match events.recv().await.expect("events") {
            NetworkEvent::Listening(address) => break address,
            other => backlog.push_back(other),
        }
    };
    assert!(handle.listen_addrs().await.unwrap().contains(&address));
    Node {
        handle,
        events,
        backlog,
        peer_id: peer(seed),
        address,
    }
}

impl Node {
    /// The next event before `deadline`, backlog first.
    async fn next_event(&mut self, deadline: Instant) -> Option<NetworkEvent> {
        if let Some(event) = self.backlog.pop_front() {
            return Some(event);
        }
        let event = tokio::time::timeout_at(deadline, self.events.recv()).await;
        event.ok().map(|event| event.expect("event channel open"))
    }

    /// The first event `pick` maps to `Some`, skipping others; panics after `within`.
    async fn expect<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut pick: impl FnMut(&NetworkEvent) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            let event = self
                .next_event(deadline)
                .await
                .unwrap_or_else(|| panic!("{}: no {what} within {within:?}", self.peer_id));
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    }

    /// Fails if an event `bad` accepts arrives within `within`.
    async fn expect_none(
        &mut self,
        what: &str,
        within: Duration,
        bad: impl Fn(&NetworkEvent) -> bool,
    ) {
        let deadline = Instant::now() + within;
        while let Some(event) = self.next_event(deadline).await {
            assert!(
                !bad(&event),
                "{}: unexpected {what}: {event:?}",
                self.peer_id
            );
        }
    }

    async fn connected_to(&mut self, peers: &[PeerId]) {
        let mut missing: Vec<PeerId> = peers.to_vec();
        while !missing.is_empty() {
            let peer = self
                .expect("PeerConnected", WAIT, |event| match event {
                    NetworkEvent::PeerConnected(peer) => Some(*peer),
                    _ => None,
                })
                .await;
            missing.retain(|p| *p != peer);
        }
    }

    /// Waits until the consensus mesh holds every peer in `peers`.
    async fn meshed_with(&self, peers: &[PeerId]) {
        let deadline = Instant::now() + WAIT;
        loop {
            let mesh = self.handle.mesh_peers(Topic::Consensus).await.unwrap();
            if peers.iter().all(|p| mesh.contains(p)) {
                return;
            }
            assert!(Instant::now() < deadline, "{}: mesh {mesh:?}", self.peer_id);
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// The next gossip message with this payload: (message id, propagation
    /// source). Gossip is anonymous: the publisher is not named.
    async fn gossip(&mut self, data: &[u8]) -> (symbiont_node::p2p::MessageId, PeerId) {
        self.expect("gossip", WAIT, |event| match event {
            NetworkEvent::Gossip {
                topic: Topic::Consensus,
                message_id,
                propagation_source,
                data: got,
            } if got == data => Some((message_id.clone(), *propagation_source)),
            _ => None,
        })
        .await
    }
}

fn is_gossip_of(data: &'static [u8]) -> impl Fn(&NetworkEvent) -> bool {
    move |event| matches!(event, NetworkEvent::Gossip { data: got, .. } if got == data)
}

/// Three members connect; one publishes on the consensus topic; both others
/// receive it from the publisher (flood publishing). Republishing the same
/// payload is a success and is not delivered again (the id is its hash).
#[tokio::test]
async fn three_members_gossip() {
    bounded(async {
        let all = [1, 2, 3];
        let mut a = start(1, &all, &[]).await;
        let mut b = start(2, &all, &[&a]).await;
        let mut c = start(3, &all, &[&a, &b]).await;
        a.connected_to(&[b.peer_id, c.peer_id]).await;
        b.connected_to(&[a.peer_id, c.peer_id]).await;
        c.connected_to(&[a.peer_id, b.peer_id]).await;
        a.meshed_with(&[b.peer_id, c.peer_id]).await;

        a.handle
            .publish(Topic::Consensus, b"vote".to_vec())
            .await
            .unwrap();
        for node in [&mut b, &mut c] {
            let (id, via) = node.gossip(b"vote").await;
            assert_eq!(via, a.peer_id);
            assert_eq!(id.0, blake3::hash(b"vote").as_bytes().to_vec());
            node.handle
                .report_validation(id, via, Validation::Accept)
                .await
                .unwrap();
        }

        a.handle
            .publish(Topic::Consensus, b"vote".to_vec())
            .await
            .unwrap();
        b.expect_none("duplicate", QUIET, is_gossip_of(b"vote"))
            .await;

        // Too large for the gossip maximum: refused before it leaves.
        let big = vec![0u8; (1 << 20) + 1];
        assert!(matches!(
            a.handle.publish(Topic::Txs, big).await,
            Err(NetworkError::TooLarge { .. })
        ));
    })
    .await;
}

/// A - B - C in a line (A and C are members of each other's lists but never
/// connect). B holds A's message unvalidated: C does not get it; B accepts:
/// C gets it through B. B rejects the next one: C never gets it.
#[tokio::test]
async fn nothing_is_forwarded_before_accept() {
    bounded(async {
        let all = [1, 2, 3];
        let mut a = start(1, &all, &[]).await;
        let mut b = start(2, &all, &[&a]).await;
        let mut c = start(3, &all, &[&b]).await;
        b.connected_to(&[a.peer_id, c.peer_id]).await;
        b.meshed_with(&[a.peer_id, c.peer_id]).await;
        a.meshed_with(&[b.peer_id]).await;
        c.meshed_with(&[b.peer_id]).await;

        a.handle
            .publish(Topic::Consensus, b"first".to_vec())
            .await
            .unwrap();
        let (id, via) = b.gossip(b"first").await;
        assert_eq!(via, a.peer_id);
        c.expect_none("unvalidated message", QUIET, is_gossip_of(b"first"))
            .await;

        b.handle
            .report_validation(id, via, Validation::Accept)
            .await
            .unwrap();
        let (id_at_c, via) = c.gossip(b"first").await;
        assert_eq!(via, b.peer_id);
        c.handle
            .report_validation(id_at_c, via, Validation::Accept)
            .await
            .unwrap();

        a.handle
            .publish(Topic::Consensus, b"second".to_vec())
            .await
            .unwrap();
        let (id, via) = b.gossip(b"second").await;
        b.handle
            .report_validation(id, via, Validation::Reject)
            .await
            .unwrap();
        c.expect_none("rejected message", QUIET * 2, is_gossip_of(b"second"))
            .await;

        // A and C never connected directly.
        assert!(
            !c.handle
                .connected_peers()
                .await
                .unwrap()
                .contains(&a.peer_id)
        );
        let _ = &mut a;
    })
    .await;
}

/// A node outside the members' allow-lists dials both members: the members
/// never hold a connection to it, nobody reports it connected, and what it
/// publishes is never delivered. The members still talk to each other.
#[tokio::test]
async fn outsider_is_refused() {
    bounded(async {
        let members = [1, 2];
        let mut a = start(1, &members, &[]).await;
        let mut b = start(2, &members, &[&a]).await;
        // The outsider admits the members: only their lists keep it out.
        let mut outsider = start(9, &[1, 2, 9], &[&a, &b]).await;
        a.connected_to(&[b.peer_id]).await;
        a.meshed_with(&[b.peer_id]).await;

        let started = Instant::now();
        let mut round = 0u8;
        while started.elapsed() < Duration::from_secs(3) {
            round += 1;
            outsider
                .handle
                .publish(Topic::Consensus, vec![0xee, round])
                .await
                .unwrap();
            for member in [&a, &b] {
                let peers = member.handle.connected_peers().await.unwrap();
                assert!(
                    !peers.contains(&outsider.peer_id),
                    "member holds the outsider"
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
        let outsider_id = outsider.peer_id;
        let from_outsider = move |event: &NetworkEvent| match event {
            NetworkEvent::PeerConnected(connected) => *connected == outsider_id,
            NetworkEvent::Gossip { data, .. } => data.first() == Some(&0xee),
            _ => false,
        };
        a.expect_none(
            "outsider traffic",
            Duration::from_millis(200),
            from_outsider,
        )
        .await;
        b.expect_none(
            "outsider traffic",
            Duration::from_millis(200),
            from_outsider,
        )
        .await;
        outsider
            .expect_none("admission", Duration::from_millis(200), |event| {
                matches!(event, NetworkEvent::PeerConnected(_))
            })
            .await;

        a.handle
            .publish(Topic::Consensus, b"members only".to_vec())
            .await
            .unwrap();
        b.gossip(b"members only").await;
    })
    .await;
}

/// A node announcing another chain's protocol version is disconnected.
#[tokio::test]
async fn other_chain_is_disconnected() {
    bounded(async {
        let mut a = start(1, &[1, 2], &[]).await;
        let mut other = start_with(2, &[1, 2], &[&a], |config| {
            config.chain_id = "other-chain".into();
        })
        .await;
        let is_connected = |event: &NetworkEvent| matches!(event, NetworkEvent::PeerConnected(_));
        a.expect_none("PeerConnected", Duration::from_secs(2), is_connected)
            .await;
        other
            .expect_none("PeerConnected", Duration::from_millis(100), is_connected)
            .await;
    })
    .await;
}

/// Request-response round trip; requests and responses above the reader's
/// maximum fail the request without reaching the application; a request
/// above the sender's own maximum is refused locally; shutdown disconnects.
#[tokio::test]
async fn sync_round_trip_and_limits() {
    bounded(async {
        let members = [1, 2];
        let mut a = start_with(1, &members, &[], |config| {
            config.max_request_bytes = 64 << 10;
            config.max_response_bytes = 1 << 10;
        })
        .await;
        let mut b = start_with(2, &members, &[&a], |config| {
            config.max_request_bytes = 1 << 10;
            config.max_response_bytes = 64 << 10;
        })
        .await;
        a.connected_to(&[b.peer_id]).await;
        b.connected_to(&[a.peer_id]).await;

        // Round trip.
        let sent = a
            .handle
            .send_request(b.peer_id, b"blocks 1..5".to_vec())
            .await
            .unwrap();
        let (id, from) = b
            .expect("request", WAIT, |event| match event {
                NetworkEvent::Request { peer, id, data } if data == b"blocks 1..5" => {
                    Some((*id, *peer))
                }
                _ => None,
            })
            .await;
        assert_eq!(from, a.peer_id);
        b.handle.answer(id, vec![7; 1000]).await.unwrap();
        assert!(matches!(
            b.handle.answer(id, vec![]).await,
            Err(NetworkError::UnknownRequest)
        ));
        let response = a
            .expect("response", WAIT, |event| match event {
                NetworkEvent::Response { id, data, peer } if *id == sent => {
                    Some((data.clone(), *peer))
                }
                _ => None,
            })
            .await;
        assert_eq!(response, (vec![7; 1000], b.peer_id));

        // A request too large for B's reader: B never sees it.
        let big = a
            .handle
            .send_request(b.peer_id, vec![1; 10 << 10])
            .await
            .unwrap();
        a.expect("failure of the big request", WAIT, |event| match event {
            NetworkEvent::RequestFailed { id, .. } => (*id == big).then_some(()),
            NetworkEvent::Response { id, .. } if *id == big => panic!("answered"),
            _ => None,
        })
        .await;
        b.expect_none("oversize request", Duration::from_millis(300), |event| {
            matches!(event, NetworkEvent::Request { .. })
        })
        .await;

        // A response too large for A's reader.
        let asked = a
            .handle
            .send_request(b.peer_id, b"blocks 6..99".to_vec())
            .await
            .unwrap();
        let id = b
            .expect("request", WAIT, |event| match event {
                NetworkEvent::Request { id, .. } => Some(*id),
                _ => None,
            })
            .await;
        b.handle.answer(id, vec![2; 10 << 10]).await.unwrap();
        a.expect("failure of the big response", WAIT, |event| match event {
            NetworkEvent::RequestFailed { id, .. } => (*id == asked).then_some(()),
            NetworkEvent::Response { id, .. } if *id == asked => {
                panic!("oversize response delivered")
            }
            _ => None,
        })
        .await;

        // Above the sender's own maximum: refused before it leaves.
        assert!(matches!(
            a.handle
                .send_request(b.peer_id, vec![0; (64 << 10) + 1])
                .await,
            Err(NetworkError::TooLarge { .. })
        ));

        // Shutdown closes the connections; the handle then reports Stopped.
        a.handle.shutdown().await.unwrap();
        b.expect("PeerDisconnected", WAIT, |event| match event {
            NetworkEvent::PeerDisconnected(peer) => (*peer == a.peer_id).then_some(()),
            _ => None,
        })
        .await;
        assert!(matches!(
            a.handle.publish(Topic::Consensus, vec![1]).await,
            Err(NetworkError::Stopped)
        ));
        a.handle.shutdown().await.unwrap();
    })
    .await;
}

/// The codec reads a frame announcing 4 GiB against a 1 KiB maximum: it
/// fails with InvalidData before reading or allocating the payload.
#[tokio::test]
async fn codec_refuses_oversize_frames_before_allocating() {
    let protocol = StreamProtocol::new("/symbiont/test-chain/sync/1");
    let mut codec = SyncCodec::new(1 << 10, 1 << 10);

    let mut wire = Vec::new();
    codec
        .write_request(&protocol, &mut Cursor::new(&mut wire), b"hello".to_vec())
        .await
        .unwrap();
    assert_eq!(wire, [0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
    let read = codec
        .read_request(&protocol, &mut Cursor::new(&wire))
        .await
        .unwrap();
    assert_eq!(read, b"hello");

    let mut header_only = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
    let error = codec
        .read_response(&protocol, &mut header_only)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
    let error = codec
        .read_request(&protocol, &mut Cursor::new(vec![0, 0, 4, 1]))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
    assert!(LARGEST_ALLOCATION.load(Ordering::Relaxed) < 1 << 30);

    // Writing above the maximum is refused too.
    let error = codec
        .write_response(&protocol, &mut Cursor::new(Vec::new()), vec![0; 1025])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
}

/// Removing a member disconnects it and keeps it out; adding it back lets
/// its redial in.
#[tokio::test]
async fn set_members_disconnects_removed_peer() {
    bounded(async {
        let mut a = start(1, &[1, 2], &[]).await;
        let mut b = start(2, &[1, 2], &[&a]).await;
        a.connected_to(&[b.peer_id]).await;
        b.connected_to(&[a.peer_id]).await;

        a.handle.set_members(vec![a.peer_id]).await.unwrap();
        for (node, gone) in [(&mut a, peer(2)), (&mut b, peer(1))] {
            node.expect("PeerDisconnected", WAIT, |event| match event {
                NetworkEvent::PeerDisconnected(peer) => (*peer == gone).then_some(()),
                _ => None,
            })
            .await;
        }
        // B keeps redialing; A keeps refusing.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            assert!(
                !a.handle
                    .connected_peers()
                    .await
                    .unwrap()
                    .contains(&b.peer_id)
            );
            sleep(Duration::from_millis(100)).await;
        }
        a.expect_none("readmission", Duration::from_millis(100), |event| {
            matches!(event, NetworkEvent::PeerConnected(_))
        })
        .await;

        a.handle
            .set_members(vec![a.peer_id, b.peer_id])
            .await
            .unwrap();
        a.connected_to(&[b.peer_id]).await;
    })
    .await;
}

/// A node that does not read its events never stalls the swarm: events that
/// do not fit are dropped and counted, dropped requests fail fast at the
/// requester, and the handle keeps answering.
#[tokio::test]
async fn slow_consumer_does_not_stall_the_loop() {
    bounded(async {
        let a = start_with(1, &[1, 2], &[], |config| config.event_capacity = 1).await;
        let mut b = start(2, &[1, 2], &[&a]).await;
        b.connected_to(&[a.peer_id]).await;
        // A's one slot holds its PeerConnected(B); nobody reads it.
        let mut sent = Vec::new();
        for round in 0..5u8 {
            sent.push(b.handle.send_request(a.peer_id, vec![round]).await.unwrap());
        }
        for id in sent {
            b.expect("failure of a dropped request", WAIT, |event| match event {
                NetworkEvent::RequestFailed { id: failed, .. } => (*failed == id).then_some(()),
                _ => None,
            })
            .await;
        }
        assert!(
            a.handle.dropped_events() >= 5,
            "{}",
            a.handle.dropped_events()
        );
        assert!(
            a.handle
                .connected_peers()
                .await
                .unwrap()
                .contains(&b.peer_id)
        );
    })
    .await;
}

/// Two members that know no address meet once one learns the other's.
#[tokio::test]
async fn add_address_dials_a_member() {
    bounded(async {
        let mut a = start(1, &[1, 2], &[]).await;
        let mut b = start(2, &[1, 2], &[]).await;
        a.expect_none("connection", Duration::from_millis(1200), |event| {
            matches!(event, NetworkEvent::PeerConnected(_))
        })
        .await;
        b.handle
            .add_address(a.peer_id, a.address.clone())
            .await
            .unwrap();
        b.connected_to(&[a.peer_id]).await;
        a.connected_to(&[b.peer_id]).await;
    })
    .await;
}

/// A removed member is disconnected and its own connections refused; what
/// it publishes through a member that still counts it reaches the others
/// from that member (gossip is anonymous: the node judges the content,
/// which carries its own signatures), and is not forwarded by the members
/// that reject it.
#[tokio::test]
async fn removed_member_is_heard_only_through_others() {
    bounded(async {
        let all = [1, 2, 3];
        let mut a = start(1, &all, &[]).await;
        let mut b = start(2, &all, &[&a]).await;
        let mut c = start(3, &all, &[&a, &b]).await;
        a.connected_to(&[b.peer_id, c.peer_id]).await;
        c.connected_to(&[a.peer_id, b.peer_id]).await;

        a.handle
            .set_members(vec![a.peer_id, b.peer_id])
            .await
            .unwrap();
        let removed_by = a.peer_id;
        c.expect("PeerDisconnected", WAIT, |event| match event {
            NetworkEvent::PeerDisconnected(peer) => (*peer == removed_by).then_some(()),
            _ => None,
        })
        .await;
        assert!(
            !a.handle
                .connected_peers()
                .await
                .unwrap()
                .contains(&c.peer_id)
        );
        b.meshed_with(&[a.peer_id, c.peer_id]).await;
        c.meshed_with(&[b.peer_id]).await;

        c.handle
            .publish(Topic::Consensus, b"from c".to_vec())
            .await
            .unwrap();
        let (id, via) = b.gossip(b"from c").await;
        assert_eq!(via, c.peer_id);
        a.expect_none(
            "a message B has not accepted",
            QUIET,
            is_gossip_of(b"from c"),
        )
        .await;
        b.handle
            .report_validation(id, via, Validation::Accept)
            .await
            .unwrap();
        let (_, via) = a.gossip(b"from c").await;
        assert_eq!(via, b.peer_id);

        // B rejects the next one: A never gets it.
        c.handle
            .publish(Topic::Consensus, b"again from c".to_vec())
            .await
            .unwrap();
        let (id, via) = b.gossip(b"again from c").await;
        b.handle
            .report_validation(id, via, Validation::Reject)
            .await
            .unwrap();
        a.expect_none("a rejected message", QUIET, is_gossip_of(b"again from c"))
            .await;

        // B's own messages still reach A.
        b.handle
            .publish(Topic::Consensus, b"from b".to_vec())
            .await
            .unwrap();
        a.gossip(b"from b").await;
    })
    .await;
}

/// A request the node never answers times out at the requester and is
/// forgotten by the responder: a late answer is `UnknownRequest`.
#[tokio::test]
async fn unanswered_request_times_out() {
    bounded(async {
        let short =
            |config: &mut NetworkConfig| config.request_timeout = Duration::from_millis(500);
        let mut a = start_with(1, &[1, 2], &[], short).await;
        let mut b = start_with(2, &[1, 2], &[&a], short).await;
        a.connected_to(&[b.peer_id]).await;
        let sent = a
            .handle
            .send_request(b.peer_id, b"tip?".to_vec())
            .await
            .unwrap();
        let id = b
            .expect("request", WAIT, |event| match event {
                NetworkEvent::Request { id, .. } => Some(*id),
                _ => None,
            })
            .await;
        a.expect("timeout", WAIT, |event| match event {
            NetworkEvent::RequestFailed { id, .. } => (*id == sent).then_some(()),
            _ => None,
        })
        .await;
        // The responder's stream times out after the same 500 ms, counted
        // from a later start; leave it a margin.
        sleep(Duration::from_millis(600)).await;
        assert!(matches!(
            b.handle.answer(id, b"late".to_vec()).await,
            Err(NetworkError::UnknownRequest)
        ));
    })
    .await;
}
