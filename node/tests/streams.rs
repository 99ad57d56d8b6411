//! The `symbiont.v1.Stream` service against a one-validator node in this
//! process: the Blocks stream equals storage, a client that resumes from
//! its last height + 1 misses nothing and sees nothing twice, the Events
//! stream reports real transactions with their result codes, a client that
//! never reads is cut off while the node keeps committing (in the
//! producer, and through a real connection with a bounded window), and
//! stopping the node ends open streams.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::key;
use symbiont_contracts::genesis::Genesis;
use symbiont_contracts::tx::{KeyRole, ListingTerms, SignedTx, TxBody, TxKind};
use symbiont_node::block::Block;
use symbiont_node::rpc::stream::{Ended, STREAM_BUFFER, channel, follow};
use symbiont_node::service::{ServiceConfig, ServiceHandle, TxStatus, start};
use symbiont_node::storage::Storage;
use symbiont_proto::v1 as pb;
use symbiont_proto::v1::ledger_event::Event;
use symbiont_proto::v1::stream_client::StreamClient;
use tonic::Code;
use tonic::transport::Channel;

const CHAIN: &str = "streams-test";

fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Firm a (admin seed 1) with one validator (seed 11), genesis a second
/// ago.
fn genesis() -> Genesis {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let text = format!(
        r#"
chain_id = "{CHAIN}"
genesis_time_ms = {}
[currency]
code = "EUR"
minor_units = 2
[consensus]
timeout_propose_ms = 500
timeout_prevote_ms = 200
timeout_precommit_ms = 200
timeout_delta_ms = 100
max_block_txs = 100
max_block_bytes = 1000000
max_clock_drift_ms = 1000
[[resource_kinds]]
id = "steam"
name = "Steam"
unit = "t"
emission_factor_g = 1000
[[firms]]
id = "a"
name = "Firm a"
admin_key = "{}"
[[nodes]]
id = "na"
firm = "a"
site = "Site"
key = "{}"
validator = true
power = 1
"#,
        now - 1000,
        key(1).public(),
        key(11).public()
    );
    Genesis::from_toml(&text).expect("test genesis")
}

struct Node {
    handle: ServiceHandle,
    task: tokio::task::JoinHandle<Result<(), symbiont_node::service::ServiceError>>,
    grpc: SocketAddr,
    genesis: Genesis,
    dir: tempfile::TempDir,
}

async fn start_node() -> Node {
    let genesis = genesis();
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_address();
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_address().port())
        .parse()
        .unwrap();
    let (handle, task) = start(ServiceConfig {
        genesis: genesis.clone(),
        keypair: key(11),
        data_dir: dir.path().to_path_buf(),
        listen,
        peers: vec![],
        grpc: Some(grpc),
        metrics_address: None,
    })
    .await
    .unwrap();
    Node {
        handle,
        task,
        grpc,
        genesis,
        dir,
    }
}

impl Node {
    async fn client(&self) -> StreamClient<Channel> {
        StreamClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    async fn wait_for_height(&self, height: u64) {
        let mut watch = self.handle.height.clone();
        while *watch.borrow_and_update() < height {
            watch.changed().await.expect("node running");
        }
    }

    /// Stops the node and opens its storage.
    async fn stop(self) -> (Storage, tempfile::TempDir) {
        self.handle.stop().await;
        self.task.await.unwrap().unwrap();
        let storage = Storage::open(
            &self.dir.path().join("ledger"),
            self.genesis.hash(),
            8 << 20,
        )
        .expect("the stopped node let go of its storage (stream readers included)");
        (storage, self.dir)
    }
}

/// Reads blocks from `stream` until height `to` (inclusive).
async fn blocks_until(
    stream: &mut tonic::Streaming<pb::StreamedBlock>,
    to: u64,
) -> Vec<pb::StreamedBlock> {
    let mut blocks = Vec::new();
    while blocks
        .last()
        .is_none_or(|b: &pb::StreamedBlock| b.height < to)
    {
        blocks.push(stream.message().await.unwrap().expect("stream open"));
    }
    blocks
}

#[tokio::test]
async fn blocks_equal_storage_and_a_resumed_stream_misses_nothing() {
    let node = start_node().await;
    let run = async {
        let mut client = node.client().await;
        // A stream from the start (0 means 1) that follows the tip.
        let mut all = client
            .blocks(pb::StreamBlocksRequest { from_height: 0 })
            .await
            .unwrap()
            .into_inner();
        let full = blocks_until(&mut all, 8).await;
        // Cut off after 3 blocks, resumed from the last height + 1.
        let mut first = client
            .blocks(pb::StreamBlocksRequest { from_height: 1 })
            .await
            .unwrap()
            .into_inner();
        let mut resumed = blocks_until(&mut first, 3).await;
        drop(first);
        let from = resumed.last().unwrap().height + 1;
        let mut second = client
            .blocks(pb::StreamBlocksRequest { from_height: from })
            .await
            .unwrap()
            .into_inner();
        resumed.extend(blocks_until(&mut second, 8).await);
        assert_eq!(resumed, full, "resumed: nothing missed, nothing twice");
        let heights: Vec<u64> = full.iter().map(|b| b.height).collect();
        assert_eq!(heights, (1..=8).collect::<Vec<_>>());
        // From above the tip: waits for it.
        let tip = *node.handle.height.borrow();
        let mut ahead = client
            .blocks(pb::StreamBlocksRequest {
                from_height: tip + 3,
            })
            .await
            .unwrap()
            .into_inner();
        let next = ahead.message().await.unwrap().unwrap();
        assert_eq!(next.height, tip + 3);
        // A client that never reads: the node keeps committing.
        let _idle = client
            .blocks(pb::StreamBlocksRequest { from_height: 1 })
            .await
            .unwrap()
            .into_inner();
        node.wait_for_height(next.height + 3).await;
        (full, all)
    };
    let (full, mut following) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("streams within 60 s");
    let (storage, _dir) = node.stop().await;
    // The following stream ends with UNAVAILABLE when the node stops
    // (after the blocks queued before).
    let ended = loop {
        match following.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => break None,
            Err(status) => break Some(status.code()),
        }
    };
    assert!(
        matches!(ended, Some(Code::Unavailable) | None),
        "stream ended with {ended:?}"
    );
    for block in &full {
        let h = block.height;
        assert_eq!(storage.block(h).unwrap().as_deref(), Some(&block.block[..]));
        assert_eq!(
            storage.certificate(h).unwrap().as_deref(),
            Some(&block.certificate[..])
        );
        let decoded: Block = symbiont_contracts::codec::decode(&block.block).unwrap();
        assert_eq!(
            storage.block_hash(h).unwrap().unwrap().0.to_vec(),
            block.block_hash
        );
        assert_eq!(decoded.header.time_ms, block.time_ms);
        assert_eq!(decoded.header.proposer, key(11).public());
        assert_eq!(decoded.header.proposer.0.to_vec(), block.proposer);
        assert_eq!(decoded.txs.len() as u32, block.tx_count);
        assert_eq!(
            storage.app_hash(h).unwrap().unwrap().0.to_vec(),
            block.app_hash
        );
        assert!(storage.events(h).unwrap().is_some(), "events stored at {h}");
    }
    storage.close().unwrap();
}

fn tx(nonce: u64, kind: TxKind) -> SignedTx {
    SignedTx::sign(
        TxBody {
            chain_id: CHAIN.into(),
            nonce,
            kind,
        },
        &key(1),
    )
}

fn tx_of(event: &pb::LedgerEvent) -> Option<(&pb::EventTx, bool)> {
    match event.event.as_ref()? {
        Event::TxCommitted(tx) => Some((tx, true)),
        Event::TxFailed(tx) => Some((tx, false)),
        _ => None,
    }
}

#[tokio::test]
async fn events_report_transactions_with_their_codes() {
    let node = start_node().await;
    let run = async {
        node.wait_for_height(1).await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let txs = [
            tx(
                1,
                TxKind::AuthorizeKey {
                    firm: "a".into(),
                    key: key(99).public(),
                    role: KeyRole::Operator,
                },
            ),
            tx(
                2,
                TxKind::PostOffer {
                    listing: ListingTerms {
                        kind: "steam".into(),
                        quantity_per_period: 1000,
                        price: 2500,
                        delivery_point: "Gate 3".into(),
                        quality: Default::default(),
                        period_ms: 3_600_000,
                        periods: 24,
                        valid_until_ms: now + 3_600_000,
                    },
                },
            ),
            // Firm a's admin acting for another firm: fails.
            tx(
                3,
                TxKind::AuthorizeKey {
                    firm: "b".into(),
                    key: key(98).public(),
                    role: KeyRole::Operator,
                },
            ),
        ];
        for tx in &txs {
            node.handle.submit(tx.clone()).await.unwrap().unwrap();
        }
        let mut receipts = Vec::new();
        for tx in &txs {
            loop {
                if let Some(TxStatus::Committed(receipt)) = node.handle.tx(tx.id()).await {
                    receipts.push(receipt);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let last = receipts.iter().map(|r| r.height).max().unwrap();
        node.wait_for_height(last + 2).await;
        let mut client = node.client().await;
        let mut stream = client
            .events(pb::StreamEventsRequest {
                from_height: 0,
                firm: None,
            })
            .await
            .unwrap()
            .into_inner();
        let mut events = Vec::new();
        while events.len() < txs.len() {
            events.push(stream.message().await.unwrap().expect("stream open"));
        }
        for ((tx, receipt), event) in txs.iter().zip(&receipts).zip(&events) {
            let (message, applied) = tx_of(event).expect("a transaction event");
            assert_eq!(message.tx_id, tx.id().0.to_vec());
            assert_eq!(message.signer, key(1).public().0.to_vec());
            assert_eq!(event.height, receipt.height);
            assert_eq!(message.index, receipt.index);
            assert_eq!(applied, receipt.error.is_none());
            assert_eq!(message.code, receipt.error.clone().unwrap_or_default());
            assert_eq!(event.firms, vec!["a".to_string()]);
        }
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| tx_of(e).unwrap().0.kind.as_str())
            .collect();
        assert_eq!(kinds, ["authorize_key", "post_offer", "authorize_key"]);
        assert_eq!(tx_of(&events[2]).unwrap().0.code, "wrong_firm");
        // Heights ascend; indexes ascend within a height.
        for pair in events.windows(2) {
            assert!((pair[0].height, pair[0].index) < (pair[1].height, pair[1].index));
        }
        // Resumed after the first event's height: the rest, once each.
        let mut resumed = client
            .events(pb::StreamEventsRequest {
                from_height: events[0].height + 1,
                firm: None,
            })
            .await
            .unwrap()
            .into_inner();
        let later: Vec<_> = events
            .iter()
            .filter(|e| e.height > events[0].height)
            .cloned()
            .collect();
        for expected in &later {
            assert_eq!(&resumed.message().await.unwrap().unwrap(), expected);
        }
        // Another firm's filter sees none of firm a's events: the stream
        // from 0 has nothing to send up to the tip.
        let mut other = client
            .events(pb::StreamEventsRequest {
                from_height: 0,
                firm: Some("b".into()),
            })
            .await
            .unwrap()
            .into_inner();
        let nothing = tokio::time::timeout(Duration::from_millis(500), other.message()).await;
        assert!(nothing.is_err(), "no event for firm b: {nothing:?}");
        // Firm a's filter sees them all.
        let mut mine = client
            .events(pb::StreamEventsRequest {
                from_height: 0,
                firm: Some("a".into()),
            })
            .await
            .unwrap()
            .into_inner();
        for expected in &events {
            assert_eq!(&mine.message().await.unwrap().unwrap(), expected);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("events within 60 s");
    let (storage, _dir) = node.stop().await;
    storage.close().unwrap();
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off() {
    let (_height_tx, height) = tokio::sync::watch::channel(1_000u64);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let (sink, mut source) = channel::<u64>();
    let started = std::time::Instant::now();
    let ended = follow(1, height, stop, sink, Duration::from_millis(300), |h| {
        Ok(vec![h])
    })
    .await;
    assert_eq!(ended, Ended::SlowClient);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The buffer, in order, then RESOURCE_EXHAUSTED: nothing more was
    // buffered.
    for h in 1..=STREAM_BUFFER as u64 {
        assert_eq!(source.recv().await.unwrap().unwrap(), h);
    }
    let status = source.recv().await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(source.recv().await.is_none());
}

/// The same through a real gRPC connection: a client that opens a Blocks
/// stream and stops reading holds at most its HTTP/2 window plus the
/// stream's buffer; after SLOW_CLIENT_TIMEOUT it is cut off with
/// RESOURCE_EXHAUSTED, having been sent a gap-free prefix, while other
/// clients are served; it resumes from its last height + 1.
#[tokio::test]
async fn a_real_client_that_stops_reading_is_cut_off_and_resumes() {
    use symbiont_node::rpc::stream::SLOW_CLIENT_TIMEOUT;
    use symbiont_proto::prost::Message;
    use tonic::transport::Endpoint;
    // The window the client grants: small and explicit, so what the
    // transport may hold does not depend on library defaults.
    const WINDOW: u32 = 64 * 1024;
    // Enough blocks that window and buffer cannot hold them all.
    const HEIGHT: u64 = 400;
    let node = start_node().await;
    let run = async {
        node.wait_for_height(HEIGHT).await;
        let channel = Endpoint::from_shared(format!("http://{}", node.grpc))
            .unwrap()
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            .connect()
            .await
            .unwrap();
        let mut slow = StreamClient::new(channel)
            .blocks(pb::StreamBlocksRequest { from_height: 1 })
            .await
            .unwrap()
            .into_inner();
        // Another client on its own connection is served meanwhile.
        let mut other = node
            .client()
            .await
            .blocks(pb::StreamBlocksRequest { from_height: 1 })
            .await
            .unwrap()
            .into_inner();
        let served = blocks_until(&mut other, HEIGHT).await;
        assert_eq!(served.len() as u64, HEIGHT);
        tokio::time::sleep(SLOW_CLIENT_TIMEOUT + Duration::from_secs(3)).await;
        let tip = *node.handle.height.borrow();
        // Now read what was held: heights 1..=k in order, then the status.
        let mut received = Vec::new();
        let status = loop {
            match slow.message().await {
                Ok(Some(block)) => received.push(block),
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => break status,
            }
        };
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let heights: Vec<u64> = received.iter().map(|b| b.height).collect();
        let k = heights.len() as u64;
        assert_eq!(heights, (1..=k).collect::<Vec<_>>(), "a gap-free prefix");
        assert!(k < tip, "cut off before the tip {tip}: held {k}");
        // Bounded: the stream's buffer (and the message the producer
        // held), the window the client granted, and what the server's
        // encoder hands HTTP/2 at once (tonic yields a chunk at 32 KiB,
        // plus the message that crossed it). Each message is framed in 5
        // bytes.
        let largest = received.iter().map(|b| b.encoded_len() + 5).max().unwrap();
        let bytes: usize = received.iter().map(|b| b.encoded_len() + 5).sum();
        let bound = (STREAM_BUFFER + 2) * largest + WINDOW as usize + 32 * 1024 + largest;
        assert!(bytes <= bound, "{bytes} bytes held, bound {bound}");
        // Resumed from k + 1: the next block, equal to the other client's.
        let mut resumed = node
            .client()
            .await
            .blocks(pb::StreamBlocksRequest { from_height: k + 1 })
            .await
            .unwrap()
            .into_inner();
        let next = resumed.message().await.unwrap().unwrap();
        assert_eq!(&next, &served[k as usize]);
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("within 120 s");
    let (storage, _dir) = node.stop().await;
    storage.close().unwrap();
}

#[tokio::test]
async fn producers_stop_with_the_server_and_when_the_client_goes() {
    // Stop: the stream ends with UNAVAILABLE.
    let (_height_tx, height) = tokio::sync::watch::channel(0u64);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (sink, mut source) = channel::<u64>();
    let producer = tokio::spawn(follow(
        1,
        height,
        stop,
        sink,
        Duration::from_secs(10),
        |h| Ok(vec![h]),
    ));
    stop_tx.send(true).unwrap();
    assert_eq!(producer.await.unwrap(), Ended::Stopped);
    let status = source.recv().await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    // The client goes away while the producer waits for a height.
    let (_height_tx, height) = tokio::sync::watch::channel(0u64);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let (sink, source) = channel::<u64>();
    let producer = tokio::spawn(follow(
        1,
        height,
        stop,
        sink,
        Duration::from_secs(10),
        |h| Ok(vec![h]),
    ));
    drop(source);
    assert_eq!(producer.await.unwrap(), Ended::ClientGone);
}
