//! A park under load, as real processes: `testnet --validators 4
//! --full-nodes 1`, transactions submitted over gRPC to different nodes.
//! One validator is killed with SIGKILL under load (the other three keep
//! committing), restarted (it catches up by block sync), a full node
//! started late catches up and follows, an outsider's node is never let
//! in, bad transactions get their typed refusals and never commit, and in
//! the end every transaction reported committed is on every node and all
//! five nodes hold the same blocks and app hashes.
//!
//! The rates printed are for the record (the benchmark is `symbiont
//! bench`); the test asserts only what must hold on any machine.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::Keypair;
use symbiont_contracts::kinds::GovAction;
use symbiont_contracts::tx::{SignedTx, TxBody, TxKind};
use symbiont_proto::v1::{GetTxRequest, StatusRequest, SubmitTxRequest, TxState};

mod support;
use support::testnet::{
    Client, Load, Process, assert_no_fork, authorize_operators, base_port, client, code_of,
    firm_key, genesis, run, stored_tx_ids, testnet, wait,
};

const OPERATORS_PER_FIRM: usize = 4;

async fn state_of(client: &mut Client, id: Hash) -> (TxState, u64, u32, String) {
    let answer = client
        .get_tx(GetTxRequest {
            tx_id: id.0.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    (answer.state(), answer.height, answer.index, answer.error)
}

async fn wait_async(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_park_under_load_loses_nothing_when_a_validator_dies() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let port = base_port(6);
    testnet(&net, 4, 1, port);
    let genesis = genesis(&net);
    let config = |name: &str| net.join(format!("{name}/config.toml"));
    let names = [
        "validator-0",
        "validator-1",
        "validator-2",
        "validator-3",
        "full-0",
    ];
    let heights: Vec<Arc<Mutex<u64>>> = (0..5).map(|_| Arc::new(Mutex::new(0))).collect();
    let height = |i: usize| *heights[i].lock().unwrap();
    let mut nodes: Vec<Process> = (0..4)
        .map(|i| run(&config(names[i]), heights[i].clone()))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (setup, load) = runtime.block_on(async {
        let mut clients: Vec<Client> = Vec::new();
        for i in 0..4 {
            clients.push(client(port, i).await);
        }

        // Each firm's admin authorizes operators, each at its own node.
        let (setup, operators) =
            authorize_operators(&net, &genesis, &mut clients, 4, OPERATORS_PER_FIRM).await;

        // The standard health service says the API serves.
        let channel = tonic::transport::Endpoint::from_shared(format!(
            "http://127.0.0.1:{}",
            port + symbiont_node::config::GRPC_PORT_OFFSET
        ))
        .unwrap()
        .connect()
        .await
        .unwrap();
        let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest {
                service: "symbiont.v1.Node".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            health.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );

        // Server reflection lists the API without the .proto files.
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let reply = replies.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
            panic!("not a service list: {reply:?}");
        };
        let services: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(services.contains(&"symbiont.v1.Node"), "{services:?}");
        assert!(services.contains(&"grpc.health.v1.Health"), "{services:?}");

        // Bad transactions: each refused with its code, none ever commits.
        let admin = firm_key(&net, 0);
        let body = |chain: &str, nonce: u64| TxBody {
            chain_id: chain.into(),
            nonce,
            kind: TxKind::Withdraw {
                listing: Hash([7; 32]),
            },
        };
        let mut forged = SignedTx::sign(body(&genesis.chain_id, 5), &admin);
        forged.body.nonce = 6;
        let outsider = SignedTx::sign(body(&genesis.chain_id, 1), &Keypair::from_seed([99; 32]));
        let mut oversize = SignedTx::sign(body(&genesis.chain_id, 5), &admin).to_bytes();
        oversize.resize(70 * 1024, 0);
        let bad: Vec<(&str, Vec<u8>, tonic::Code)> = vec![
            (
                "bad_signature",
                forged.to_bytes(),
                tonic::Code::InvalidArgument,
            ),
            (
                "wrong_chain_id",
                SignedTx::sign(body("another-park", 5), &admin).to_bytes(),
                tonic::Code::InvalidArgument,
            ),
            ("oversize", oversize, tonic::Code::InvalidArgument),
            ("malformed", vec![0xff; 40], tonic::Code::InvalidArgument),
            (
                "unknown_signer",
                outsider.to_bytes(),
                tonic::Code::PermissionDenied,
            ),
            // Replayed: admin 0's first transaction, committed above.
            (
                "already_included",
                setup[0].to_bytes(),
                tonic::Code::AlreadyExists,
            ),
            (
                "bad_nonce",
                SignedTx::sign(body(&genesis.chain_id, 2), &admin).to_bytes(),
                tonic::Code::FailedPrecondition,
            ),
        ];
        for (code, bytes, grpc) in &bad {
            let status = clients[1]
                .submit_tx(SubmitTxRequest { tx: bytes.clone() })
                .await
                .unwrap_err();
            assert_eq!(code_of(&status), *code, "{status:?}");
            assert_eq!(status.code(), *grpc, "{status:?}");
            assert!(
                status.message().starts_with(&format!("{code}: ")),
                "{status:?}"
            );
        }

        // Healthy: the load goes to all four validators.
        let mut load = Load::new(&genesis.chain_id, operators);
        let window = Duration::from_secs(6);
        // Fill the pipeline first: the rates compare steady states.
        load.run_for(&clients, 12, Duration::from_secs(2)).await;
        let healthy = load.run_for(&clients, 12, window).await;

        // Validator 3 killed under load: the load goes to the other three.
        nodes[3].kill();
        let live: Vec<Client> = clients[..3].to_vec();
        let one_down = load.run_for(&live, 12, window).await;
        eprintln!(
            "committed tx/s: healthy {healthy:.0}, one of four validators down {one_down:.0} \
             ({:.0}%)",
            100.0 * one_down / healthy
        );
        assert!(healthy > 0.0);
        assert!(
            one_down > healthy / 2.0,
            "three validators of four must keep committing: {one_down:.0} tx/s against {healthy:.0}"
        );

        // Restarted, it catches up by block sync and follows.
        let restarted = Instant::now();
        nodes[3] = run(&config(names[3]), heights[3].clone());
        let target = height(0);
        wait(
            "the restarted validator catches up",
            Duration::from_secs(60),
            || height(3) >= target,
        );
        eprintln!(
            "restarted validator back in step after {:?}",
            restarted.elapsed()
        );

        // A full node started late catches up and follows.
        nodes.push(run(&config(names[4]), heights[4].clone()));
        clients.push(client(port, 4).await);
        let target = height(0);
        wait(
            "the late full node catches up",
            Duration::from_secs(60),
            || height(4) >= target,
        );
        let status = clients[4]
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(!status.is_validator);
        assert_eq!(status.validators.len(), 4);
        load.run_for(&clients, 12, Duration::from_secs(2)).await;
        load.drain(&clients, Duration::from_secs(60)).await;

        // An outsider's node (a key not in the membership) is never let in:
        // it stays at genesis while the park goes on.
        let outsider_dir = dir.path().join("outsider");
        std::fs::create_dir_all(&outsider_dir).unwrap();
        symbiont_node::keyfile::write(
            &outsider_dir.join("node.pem"),
            &Keypair::from_seed([98; 32]),
            false,
        )
        .unwrap();
        let full_config = std::fs::read_to_string(config(names[4])).unwrap();
        let outsider_config = full_config
            .replace("../genesis.toml", "../net/genesis.toml")
            .replace(
                &format!("tcp/{}\"", port + 4),
                &format!("tcp/{}\"", port + 5),
            )
            .replace(
                &format!("127.0.0.1:{}\"", port + 104),
                &format!("127.0.0.1:{}\"", port + 105),
            )
            .replace(
                &format!("127.0.0.1:{}\"", port + 1004),
                &format!("127.0.0.1:{}\"", port + 1005),
            );
        std::fs::write(outsider_dir.join("config.toml"), outsider_config).unwrap();
        let outsider_height = Arc::new(Mutex::new(0));
        let _outsider = run(&outsider_dir.join("config.toml"), outsider_height.clone());
        let mut outsider_client = client(port, 5).await;
        let before = height(0);
        wait("the park goes on", Duration::from_secs(30), || {
            height(0) >= before + 3
        });
        let status = outsider_client
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.height, 0, "an outsider synced the ledger");
        assert_eq!(*outsider_height.lock().unwrap(), 0);
        // The members count one another only (its dials are closed as
        // soon as they are established, so the outsider itself may see a
        // connection for an instant).
        for client in clients.iter_mut() {
            let status = client.status(StatusRequest {}).await.unwrap().into_inner();
            assert!(
                status.peers <= 4,
                "an outsider was let in: {} peers",
                status.peers
            );
        }

        // Each node answers for the last transactions committed (all of
        // them are checked in the stored blocks below), once it holds
        // their blocks; the bad ones are nowhere.
        let last = load.committed.iter().map(|(_, h, _)| *h).max().unwrap();
        for client in clients.iter_mut() {
            let start = Instant::now();
            while client
                .status(StatusRequest {})
                .await
                .unwrap()
                .into_inner()
                .height
                < last
            {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "a node stays behind"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for (id, h, index) in load.committed.iter().rev().take(20) {
                let (state, at, place, error) = state_of(client, *id).await;
                assert_eq!(
                    (state, at, place, error.as_str()),
                    (TxState::Committed, *h, *index, "")
                );
            }
            for (_, bytes, _) in &bad[..5] {
                if let Ok(tx) = SignedTx::from_bytes(bytes) {
                    assert_ne!(state_of(client, tx.id()).await.0, TxState::Committed);
                }
            }
        }
        eprintln!(
            "{} load transactions committed; refusals while loading: {:?}",
            load.committed.len(),
            load.refused
        );

        // Governance removes the full node: the firms' admins pass the
        // proposal (4 of 5), the members' swarms drop it, and it hears no
        // more blocks.
        let propose = SignedTx::sign(
            TxBody {
                chain_id: genesis.chain_id.clone(),
                nonce: OPERATORS_PER_FIRM as u64 + 1,
                kind: TxKind::Propose {
                    action: GovAction::RemoveNode {
                        id: "full-0".into(),
                    },
                    expires_ms: u64::MAX / 2,
                },
            },
            &firm_key(&net, 0),
        );
        let mut votes = vec![propose.clone()];
        for firm in 1..4 {
            votes.push(SignedTx::sign(
                TxBody {
                    chain_id: genesis.chain_id.clone(),
                    nonce: OPERATORS_PER_FIRM as u64 + 1,
                    kind: TxKind::Vote {
                        proposal: propose.id(),
                        approve: true,
                    },
                },
                &firm_key(&net, firm),
            ));
        }
        for tx in &votes {
            clients[0]
                .submit_tx(SubmitTxRequest { tx: tx.to_bytes() })
                .await
                .unwrap();
        }
        let start = Instant::now();
        for tx in &votes {
            while state_of(&mut clients[1], tx.id()).await.0 != TxState::Committed {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "votes not committed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(state_of(&mut clients[1], tx.id()).await.3, "");
        }
        let removed_at = height(0);
        wait_async("the validators go on", Duration::from_secs(30), || {
            height(0) >= removed_at + 5
        })
        .await;
        let status = clients[4]
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(
            status.height <= removed_at + 2,
            "a removed node still hears blocks"
        );
        (setup, load)
    });
    for node in &mut nodes {
        node.kill();
    }
    let dirs: Vec<_> = names
        .iter()
        .map(|n| net.join(format!("{n}/data")))
        .collect();
    // No fork anywhere (the removed full node holds a prefix); the
    // validators hold all they reported.
    assert_no_fork(&dirs, &genesis);
    let common = assert_no_fork(&dirs[..4], &genesis);
    assert!(common as u64 >= height(0).saturating_sub(2));
    // Every transaction ever reported committed is in the stored blocks,
    // where it was reported; no node signed two votes for one step (which
    // the others would have put into a block as evidence).
    let (ids, evidence) = stored_tx_ids(&dirs[0], &genesis);
    for tx in &setup {
        assert!(
            ids.iter().flatten().any(|id| *id == tx.id()),
            "a setup transaction is missing"
        );
    }
    for (id, height, index) in &load.committed {
        assert_eq!(
            ids.get(*height as usize - 1)
                .and_then(|b| b.get(*index as usize)),
            Some(id),
            "a committed transaction is missing"
        );
    }
    assert_eq!(evidence, 0, "a validator equivocated");
}
