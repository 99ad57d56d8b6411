//! Four nodes in one process, each with its own data dir and a real libp2p
//! swarm on 127.0.0.1: they commit blocks, a transaction submitted to one
//! commits, every node stores the same blocks; a node stopped and started
//! again resumes from its data dir and keeps up.

mod support;

use std::net::TcpListener;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::key;
use symbiont_contracts::codec;
use symbiont_contracts::keys::Keypair;
use symbiont_node::block::Block;
use symbiont_node::p2p::{Multiaddr, peer_id_of};
use symbiont_node::service::{ServiceConfig, ServiceHandle, start};
use symbiont_node::storage::Storage;

const CHAIN: &str = "service-test";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn address(port: u16) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

struct Net {
    genesis: symbiont_contracts::genesis::Genesis,
    ports: Vec<u16>,
    dirs: Vec<tempfile::TempDir>,
}

/// The four validators of `support`, with a genesis a second ago.
fn four_validators_now() -> symbiont_contracts::genesis::Genesis {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    support::four_validators(CHAIN, now - 1000, 500, 200, 100)
}

impl Net {
    fn new(genesis: symbiont_contracts::genesis::Genesis) -> Net {
        Net {
            genesis,
            ports: (0..4).map(|_| free_port()).collect(),
            dirs: (0..4).map(|_| tempfile::tempdir().unwrap()).collect(),
        }
    }

    fn config(&self, i: usize) -> ServiceConfig {
        let peers = (0..4)
            .filter(|j| *j != i)
            .map(|j| {
                (
                    peer_id_of(&key(11 + j as u8).public()),
                    address(self.ports[j]),
                )
            })
            .collect();
        ServiceConfig {
            genesis: self.genesis.clone(),
            keypair: Keypair::from_seed([11 + i as u8; 32]),
            data_dir: self.dirs[i].path().to_path_buf(),
            listen: address(self.ports[i]),
            grpc: None,
            peers,
            metrics_address: None,
        }
    }
}

async fn wait_for_height(handle: &ServiceHandle, height: u64) {
    let mut watch = handle.height.clone();
    while *watch.borrow_and_update() < height {
        watch.changed().await.expect("node running");
    }
}

fn stored_hashes(
    dir: &std::path::Path,
    genesis_hash: symbiont_contracts::hash::Hash,
    to: u64,
) -> Vec<symbiont_contracts::hash::Hash> {
    let storage = Storage::open(&dir.join("ledger"), genesis_hash, 8 << 20).unwrap();
    let hashes = (1..=to)
        .map(|h| {
            let block: Block = codec::decode(&storage.block(h).unwrap().unwrap()).unwrap();
            assert_eq!(storage.block_hash(h).unwrap(), Some(block.hash()));
            block.hash()
        })
        .collect();
    storage.close().unwrap();
    hashes
}

#[tokio::test]
async fn four_nodes_commit_and_a_restarted_one_resumes() {
    let net = Net::new(four_validators_now());
    let mut nodes = Vec::new();
    for i in 0..4 {
        nodes.push(start(net.config(i)).await.unwrap());
    }
    let tx_id = std::cell::Cell::new(None);
    let run = async {
        wait_for_height(&nodes[0].0, 2).await;
        let tx = support::authorize_operator(CHAIN, 1, 99);
        nodes[1].0.submit(tx.clone()).await.unwrap().unwrap();
        tx_id.set(Some(tx.id()));
        // The same transaction again: refused, typed.
        let again = nodes[1].0.submit(tx.clone()).await.unwrap().unwrap_err();
        assert_eq!(again.code(), "duplicate");
        for (handle, _) in &nodes {
            wait_for_height(handle, 5).await;
        }
        // A read runs on the node task, against the state of its tip.
        loop {
            let id = tx.id();
            let (tip, receipt) = nodes[2]
                .0
                .read(move |replica| {
                    let state = replica.chain().state();
                    (
                        replica.chain().tip().height,
                        symbiont_contracts::exec::receipt(state, &id),
                    )
                })
                .await
                .unwrap();
            assert!(tip >= 5);
            if let Some(receipt) = receipt {
                assert!(receipt.error.is_none() && receipt.height <= tip);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("four nodes reach height 5 within 60 s");
    // Stop node 3, let the others go on, start it again from its dir.
    nodes[3].0.stop().await;
    let (_, task) = nodes.pop().unwrap();
    task.await.unwrap().unwrap();
    wait_for_height(&nodes[0].0, 7).await;
    let restarted = start(net.config(3)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), wait_for_height(&restarted.0, 9))
        .await
        .expect("the restarted node catches up");
    nodes.push(restarted);
    // Every node stores height 9 before they stop (a quorum decided it;
    // one may still be storing it).
    for (handle, _) in &nodes {
        tokio::time::timeout(Duration::from_secs(30), wait_for_height(handle, 9))
            .await
            .expect("every node stores height 9");
    }
    for (handle, _) in &nodes {
        handle.stop().await;
    }
    for (_, task) in nodes {
        task.await.unwrap().unwrap();
    }
    let genesis_hash = net.genesis.hash();
    let first = stored_hashes(net.dirs[0].path(), genesis_hash, 9);
    // The transaction committed, applied, on every node.
    for dir in &net.dirs {
        let storage = Storage::open(&dir.path().join("ledger"), genesis_hash, 8 << 20).unwrap();
        let state = storage.load_state().unwrap().unwrap();
        let receipt = symbiont_contracts::exec::receipt(&state, &tx_id.get().unwrap()).unwrap();
        assert_eq!(receipt.error, None);
        storage.close().unwrap();
    }
    for dir in &net.dirs[1..] {
        assert_eq!(stored_hashes(dir.path(), genesis_hash, 9), first);
    }
}

/// `GET path` over a plain TCP connection: the status line, the headers
/// and the body.
fn http_get(address: std::net::SocketAddr, path: &str) -> (String, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a full response");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

async fn get(address: std::net::SocketAddr, path: &'static str) -> (String, String, String) {
    // Blocking I/O off the runtime, which also runs the server.
    tokio::task::spawn_blocking(move || http_get(address, path))
        .await
        .unwrap()
}

/// The value of the sample `series` (name and labels) in OpenMetrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

#[tokio::test]
async fn a_node_serves_its_metrics_over_http() {
    let net = Net::new(four_validators_now());
    let mut nodes = Vec::new();
    for i in 0..4 {
        let mut config = net.config(i);
        if i == 0 {
            config.metrics_address = Some("127.0.0.1:0".parse().unwrap());
        }
        nodes.push(start(config).await.unwrap());
    }
    assert_eq!(nodes[1].0.metrics_address, None);
    let address = nodes[0].0.metrics_address.expect("metrics served");
    assert_ne!(address.port(), 0);
    let handle = nodes[0].0.clone();
    let run = async {
        wait_for_height(&handle, 1).await;
        let tx = support::authorize_operator(CHAIN, 1, 99);
        handle.submit(tx.clone()).await.unwrap().unwrap();
        let again = handle.submit(tx).await.unwrap().unwrap_err();
        assert_eq!(again.code(), "duplicate");
        wait_for_height(&handle, 4).await;
        // Peers are polled every 2 s; the transaction leaves the mempool
        // when a block holds it.
        loop {
            let (_, _, body) = get(address, "/metrics").await;
            if sample(&body, "symbiont_peers") == Some(3.0)
                && sample(&body, "symbiont_mempool_txs") == Some(0.0)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("height 4, three peers and the transaction in a block within 60 s");

    let (status, headers, body) = get(address, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{headers}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let value = |series: &str| sample(&body, series).unwrap_or_else(|| panic!("{series}: {body}"));
    let height = value("symbiont_height");
    assert!(height >= 4.0, "{body}");
    // A fresh node stored every block itself, each with its latency and
    // round count.
    assert!(value("symbiont_blocks_committed_total") >= height, "{body}");
    assert!(value("symbiont_block_commit_latency_seconds_count") >= height);
    assert!(value("symbiont_block_commit_latency_seconds_sum") > 0.0);
    assert!(value("symbiont_rounds_per_height_count") >= height);
    assert!(value("symbiont_rounds_per_height_sum") >= height);
    assert!(value("symbiont_txs_admitted_total") >= 1.0, "{body}");
    assert!(value("symbiont_txs_rejected_total{reason=\"duplicate\"}") >= 1.0);
    assert_eq!(value("symbiont_peers"), 3.0);
    value("symbiont_round");
    assert_eq!(value("symbiont_mempool_txs"), 0.0, "{body}");
    assert_eq!(value("symbiont_mempool_bytes"), 0.0, "{body}");

    let (status, _, _) = get(address, "/other").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    for (handle, _) in &nodes {
        handle.stop().await;
    }
    for (_, task) in nodes {
        task.await.unwrap().unwrap();
    }
    // Stopped: nothing listens there any more.
    let mut closed = false;
    for _ in 0..50 {
        tokio::task::yield_now().await;
        if std::net::TcpStream::connect(address).is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "the metrics server stops with the node");
}

/// A member node that floods the consensus topic with garbage, oversize
/// messages, votes for far-future heights (signed by a real validator, as
/// a Byzantine one would) and votes by a non-validator, and the
/// transactions topic with garbage and bad batches (empty, overlong, a
/// forged transaction among good ones), neither crashes nor stalls the
/// four validators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversize_and_far_future_consensus_messages_stall_nobody() {
    use symbiont_node::consensus::signed::Message;
    use symbiont_node::consensus::signed::{SignedVote, vote_sign_bytes};
    use symbiont_node::consensus::types::{Vote, VoteType};
    use symbiont_node::p2p::{NetworkConfig, Topic, spawn};
    use symbiont_node::replica::NetMessage;
    let attacker = key(20);
    let mut genesis = four_validators_now();
    genesis.nodes.push(symbiont_contracts::genesis::Node {
        id: "nx".into(),
        firm: "a".into(),
        site: "Site".into(),
        key: attacker.public(),
        validator: false,
        power: 0,
    });
    let net = Net::new(genesis);
    let mut nodes = Vec::new();
    for i in 0..4 {
        let mut config = net.config(i);
        config
            .peers
            .push((peer_id_of(&attacker.public()), address(free_port())));
        nodes.push(start(config).await.unwrap());
    }
    let mut members: Vec<_> = (11..=14).map(|s| peer_id_of(&key(s).public())).collect();
    members.push(peer_id_of(&attacker.public()));
    let mut config = NetworkConfig::new(Keypair::from_seed([20; 32]), address(0), CHAIN);
    config.peers = (0..4)
        .map(|j| {
            (
                peer_id_of(&key(11 + j as u8).public()),
                address(net.ports[j]),
            )
        })
        .collect();
    config.members = members;
    config.max_message_bytes = 12 << 20;
    let (network, mut events) = spawn(config).unwrap();
    // Its own inbox is drained and never validated.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let run = async {
        wait_for_height(&nodes[0].0, 2).await;
        let start_height = *nodes[0].0.height.borrow();
        let far_vote = |seed: u8, height: u64, n: u64| {
            let vote = Vote {
                height,
                round: n as u32,
                vote_type: VoteType::Prevote,
                value: None,
                validator: key(seed).public(),
            };
            let signature = key(seed).sign(&vote_sign_bytes(CHAIN, &vote));
            codec::encode(&(
                NetMessage::Consensus(Message::Vote(SignedVote { vote, signature })),
                n,
            ))
        };
        let mut n = 0u64;
        let mut published = 0;
        while *nodes[0].0.height.borrow() < start_height + 8 {
            n += 1;
            let mut garbage = vec![0u8; 2000];
            for (i, byte) in garbage.iter_mut().enumerate() {
                *byte = (n as usize * 31 + i * 17) as u8;
            }
            let messages = [
                garbage,
                vec![0xff; 10 << 20],
                far_vote(12, 1_000_000_000 + n, n),
                far_vote(12, start_height + 5, n),
                far_vote(20, start_height + 1, n),
            ];
            for message in messages {
                // Refused locally only when no peer is subscribed yet.
                published += network.publish(Topic::Consensus, message).await.is_ok() as u32;
            }
            let good = support::authorize_operator(CHAIN, 1, 200);
            let mut forged = support::authorize_operator(CHAIN, 2, 201);
            forged.signature.0[3] ^= 1;
            let batches = [
                vec![0x02, 0, 0, 0, 0xff, 0xff],
                codec::encode(&(NetMessage::Txs(vec![]), n)),
                codec::encode(&(NetMessage::Txs(vec![good.clone(); 300]), n)),
                codec::encode(&(NetMessage::Txs(vec![good, forged]), n)),
            ];
            for message in batches {
                let _ = network.publish(Topic::Txs, message).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        published
    };
    let published = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the validators go on under the flood");
    assert!(published >= 20, "only {published} flood messages went out");
    for (handle, _) in &nodes {
        handle.stop().await;
    }
    for (_, task) in nodes {
        task.await.unwrap().unwrap();
    }
}

/// A block of more than 1 MiB crosses the network: node 0 alone collects
/// 24 transactions of about 60 KiB (1.4 MiB) before the other validators
/// start, so its proposal carries them all in one block. The gossip
/// message bound once was 1 MiB while genesis allowed 4 MiB blocks: such a
/// proposal was dropped by every peer and node 0's transactions never
/// committed. (The simulator does not model message sizes, so only a
/// test with real libp2p can see this.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_over_one_mebibyte_is_gossiped_and_committed() {
    use symbiont_contracts::tx::{ListingTerms, SignedTx, TxBody, TxKind};
    let mut genesis = four_validators_now();
    genesis.consensus.max_block_bytes = 4 << 20;
    genesis.consensus.max_block_txs = 1000;
    let net = Net::new(genesis);
    let first = start(net.config(0)).await.unwrap();
    let mut ids = Vec::new();
    let mut total = 0;
    // The four firms' admin keys (seeds 1 to 4), nonces 1 to 6 each.
    for seed in 1..=4u8 {
        for nonce in 1..=6 {
            let tx = SignedTx::sign(
                TxBody {
                    chain_id: CHAIN.into(),
                    nonce,
                    kind: TxKind::PostOffer {
                        listing: ListingTerms {
                            kind: "steam".into(),
                            quantity_per_period: 1000,
                            price: 100,
                            delivery_point: "x".repeat(60_000),
                            quality: Default::default(),
                            period_ms: 3_600_000,
                            periods: 1,
                            valid_until_ms: u64::MAX,
                        },
                    },
                },
                &key(seed),
            );
            total += tx.to_bytes().len();
            ids.push(first.0.submit(tx).await.unwrap().unwrap());
        }
    }
    assert!(total > 1 << 20, "{total} bytes are not over 1 MiB");
    let mut nodes = vec![first];
    for i in 1..4 {
        nodes.push(start(net.config(i)).await.unwrap());
    }
    let committed = async {
        for id in &ids {
            loop {
                match nodes[1].0.tx(*id).await {
                    Some(symbiont_node::service::TxStatus::Committed(_)) => break,
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), committed)
        .await
        .expect("node 0's transactions committed, seen by node 1, within 60 s");
    let tip = *nodes[1].0.height.borrow();
    // All four run until each has stored the tip: a node stopped early
    // could be the one a slower node needs to catch up from.
    for (i, (handle, _)) in nodes.iter().enumerate() {
        tokio::time::timeout(Duration::from_secs(60), wait_for_height(handle, tip))
            .await
            .unwrap_or_else(|_| panic!("node {i} stores height {tip} within 60 s"));
    }
    for (handle, _) in &nodes {
        handle.stop().await;
    }
    for (_, task) in nodes {
        task.await.unwrap().unwrap();
    }
    // The transactions went in one block of more than 1 MiB, stored alike
    // by every node.
    let genesis_hash = net.genesis.hash();
    let storage = Storage::open(&net.dirs[2].path().join("ledger"), genesis_hash, 8 << 20).unwrap();
    let largest = (1..=tip)
        .map(|h| storage.block(h).unwrap().unwrap().len())
        .max()
        .unwrap();
    storage.close().unwrap();
    assert!(largest > 1 << 20, "the largest block has {largest} bytes");
    let hashes = stored_hashes(net.dirs[0].path(), genesis_hash, tip);
    for dir in &net.dirs[1..] {
        assert_eq!(stored_hashes(dir.path(), genesis_hash, tip), hashes);
    }
}
