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

impl Net {
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let net = Net {
        genesis: support::four_validators(CHAIN, now - 1000, 500, 200, 100),
        ports: (0..4).map(|_| free_port()).collect(),
        dirs: (0..4).map(|_| tempfile::tempdir().unwrap()).collect(),
    };
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
