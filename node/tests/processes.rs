//! Real `symbiont-node` processes on 127.0.0.1, made by `testnet`: four
//! validators commit; two are killed with SIGKILL (no progress with half
//! the power, no fork) and started again, and the network goes on; random
//! SIGKILLs and restarts; in the end every node stores the same blocks.
//! (Found by this kind of run: a restarted validator re-sending messages
//! gossip had seen dropped them as duplicates, and a validator restarted
//! while locked had lost its locked block; both stalled the network.)

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use symbiont_node::config::GRPC_PORT_OFFSET;

mod support;
use support::testnet::{
    Load, NODE, Process, assert_no_fork, authorize_operators, base_port, client, genesis, run,
    stored_tx_ids, testnet, wait,
};

#[test]
fn validators_killed_and_restarted_keep_the_network_going_without_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let port = base_port(4);
    testnet(&net, 4, 0, port);
    let config = |i: usize| net.join(format!("validator-{i}/config.toml"));
    let heights: Vec<Arc<Mutex<u64>>> = (0..4).map(|_| Arc::new(Mutex::new(0))).collect();
    let height = |i: usize| *heights[i].lock().unwrap();
    let mut nodes: Vec<Process> = (0..4)
        .map(|i| run(&config(i), heights[i].clone()))
        .collect();
    let minute = Duration::from_secs(60);
    wait("four nodes reach height 5", minute, || {
        (0..4).all(|i| height(i) >= 5)
    });

    // Half the power down: no progress.
    for node in &mut nodes[..2] {
        node.kill();
    }
    std::thread::sleep(Duration::from_millis(300));
    let stalled = height(2).max(height(3));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        height(2).max(height(3)) <= stalled + 1,
        "no quorum, yet blocks were stored"
    );
    // A live node's status says why: the two dead validators' votes are
    // missing.
    let genesis = genesis(&net);
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let request = symbiont_proto::v1::StatusRequest {};
            client(port, 2)
                .await
                .status(request)
                .await
                .unwrap()
                .into_inner()
        });
    let reason = &status.stall_reason;
    for (i, node) in genesis.nodes.iter().enumerate() {
        let key = node.key.to_string();
        assert_eq!(reason.contains(&key), i < 2, "{i} {reason}");
    }
    assert!(reason.contains("2 of 4 voting power"), "{reason}");
    assert!(status.ms_since_last_commit >= 2000, "{status:?}");
    for i in [0, 1] {
        nodes[i] = run(&config(i), heights[i].clone());
    }
    wait("progress after the restart", minute, || {
        (0..4).all(|i| height(i) >= stalled + 5)
    });

    // Random kills and restarts, one node at a time.
    let mut seed = 0x2545_f491_u64;
    for _ in 0..6 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let i = (seed >> 33) as usize % 4;
        nodes[i].kill();
        std::thread::sleep(Duration::from_millis(100 + (seed >> 40) % 400));
        nodes[i] = run(&config(i), heights[i].clone());
        std::thread::sleep(Duration::from_millis((seed >> 20) % 500));
    }
    let target = (0..4).map(height).max().unwrap() + 3;
    wait("every node in step after the kills", minute, || {
        (0..4).all(|i| height(i) >= target)
    });
    for node in &mut nodes {
        node.kill();
    }
    let dirs: Vec<_> = (0..4)
        .map(|i| net.join(format!("validator-{i}/data")))
        .collect();
    assert!(assert_no_fork(&dirs, &genesis) as u64 >= target);
}

/// What an operator gets wrong gives one line on stderr and exit code 1,
/// never a panic: a data dir another node holds, an address in use, a key
/// file others can read, a missing file.
#[test]
fn bad_setups_give_a_one_line_error_and_exit_1() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let port = base_port(2);
    testnet(&net, 2, 0, port);
    let config = |i: usize| net.join(format!("validator-{i}/config.toml"));
    let fails = |config: &Path, expected: &str| {
        let output = Command::new(NODE)
            .args(["run", "--config"])
            .arg(config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    let first = run(&config(0), Arc::new(Mutex::new(0)));
    std::thread::sleep(Duration::from_millis(1500));
    fails(&config(0), "already open");
    // Validator 1 on validator 0's port.
    let text = std::fs::read_to_string(config(1)).unwrap();
    let with = |from: &str, to: &str| {
        let changed = text.replacen(from, to, 1);
        assert_ne!(text, changed, "{from} not in\n{text}");
        std::fs::write(config(1), &changed).unwrap();
    };
    with(
        &format!("listen = \"/ip4/127.0.0.1/tcp/{}\"", port + 1),
        &format!("listen = \"/ip4/127.0.0.1/tcp/{port}\""),
    );
    fails(&config(1), "in use");
    // Validator 1's gRPC on validator 0's.
    let grpc = |p: u16| format!("grpc_address = \"127.0.0.1:{}\"", p + GRPC_PORT_OFFSET);
    with(&grpc(port + 1), &grpc(port));
    fails(&config(1), "cannot listen on");
    with(&grpc(port + 1), "grpc_address = \"localhost\"");
    fails(&config(1), "not an IP address and port");
    // Validator 1 on validator 0's metrics port.
    let metrics_1 = format!("metrics_address = \"127.0.0.1:{}\"", port + 1001);
    with(
        &metrics_1,
        &format!("metrics_address = \"127.0.0.1:{}\"", port + 1000),
    );
    fails(
        &config(1),
        &format!("cannot serve metrics on 127.0.0.1:{}", port + 1000),
    );
    // Not an address.
    with(&metrics_1, "metrics_address = \"localhost\"");
    fails(&config(1), "metrics address \"localhost\"");
    std::fs::write(config(1), &text).unwrap();
    drop(first);
    // Validator 0's data dir with another genesis (a later start time).
    let genesis_path = net.join("genesis.toml");
    let genesis_text = std::fs::read_to_string(&genesis_path).unwrap();
    let other = genesis_text.replacen("genesis_time_ms = ", "genesis_time_ms = 1", 1);
    assert_ne!(genesis_text, other);
    std::fs::write(&genesis_path, other).unwrap();
    fails(&config(0), "belongs to genesis");
    std::fs::write(&genesis_path, genesis_text).unwrap();
    let key = net.join("validator-1/node.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    fails(&config(1), "chmod 600");
    fails(&net.join("nowhere.toml"), "cannot read config");
    // Metrics ports past 65535.
    let output = Command::new(NODE)
        .args([
            "testnet",
            "--validators",
            "2",
            "--base-port",
            "64535",
            "--dir",
        ])
        .arg(dir.path().join("high"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("past 65535"), "{stderr}");
    assert!(!dir.path().join("high").exists());
}

/// A crash soak: a lone validator (it commits alone) under a load of
/// offers over gRPC, killed with SIGKILL at random moments, many times.
/// After each kill its data dir opens (the storage checks it at open) with
/// every block the node reported stored (it prints `height N` only after
/// the flush) and every transaction reported committed in its block; then
/// it runs again and the load goes on.
#[test]
fn a_validator_killed_at_random_under_load_loses_no_committed_block() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let port = base_port(1);
    testnet(&net, 1, 0, port);
    let genesis = genesis(&net);
    let config = net.join("validator-0/config.toml");
    let data = net.join("validator-0/data");
    let height = Arc::new(Mutex::new(0));
    let mut node = run(&config, height.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut clients = vec![client(port, 0).await];
        let (_, operators) = authorize_operators(&net, &genesis, &mut clients, 1, 8).await;
        let mut load = Load::new(&genesis.chain_id, operators);
        let mut seed = 0x9e37_79b9_u64;
        let mut kills = 0;
        while kills < 12 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let after = Duration::from_millis(200 + (seed >> 33) % 1000);
            tokio::join!(
                load.run_for(&clients, 8, after + Duration::from_millis(50)),
                async {
                    tokio::time::sleep(after).await;
                    node.kill();
                }
            );
            kills += 1;
            let reported = *height.lock().unwrap();
            let (ids, _) = stored_tx_ids(&data, &genesis);
            assert!(
                ids.len() as u64 >= reported,
                "kill {kills}: height {reported} was reported stored, {} is",
                ids.len()
            );
            for (id, h, index) in &load.committed {
                assert_eq!(
                    ids.get(*h as usize - 1)
                        .and_then(|b| b.get(*index as usize)),
                    Some(id),
                    "kill {kills}: a committed transaction is missing"
                );
            }
            node = run(&config, height.clone());
            // Back at work (a new block stored) before the next window, so
            // a busy machine still kills it during commits, not at start.
            let start = std::time::Instant::now();
            while *height.lock().unwrap() <= reported {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "no block after restart"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            load.resend(&mut clients).await;
        }
        load.drain(&clients, Duration::from_secs(60)).await;
        assert!(
            load.committed.len() > 64,
            "{} committed",
            load.committed.len()
        );
        eprintln!(
            "{kills} kills; {} transactions committed; height {}",
            load.committed.len(),
            *height.lock().unwrap()
        );
    });
    // SIGTERM: a clean stop, soon, even for a lone validator that decides
    // as fast as it can.
    let term = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "SIGTERM ignored");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let reported = *height.lock().unwrap();
    assert!(stored_tx_ids(&data, &genesis).0.len() as u64 >= reported);
}

/// A node whose stdout reader goes away (a closed pipe: `| head`, a
/// supervisor that stopped reading) keeps running and committing: its
/// `height N` lines are a courtesy. It once panicked in `println!` at the
/// next block and died.
#[test]
fn a_node_whose_stdout_reader_goes_away_keeps_running() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let port = base_port(1);
    testnet(&net, 1, 0, port);
    let mut child = Command::new(NODE)
        .args(["run", "--config"])
        .arg(net.join("validator-0/config.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The reader goes at once: every `height N` line hits a closed pipe.
    drop(child.stdout.take());
    let mut node = Process { child };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{}", port + GRPC_PORT_OFFSET);
    let height_at = |at_least: u64| {
        runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(mut client) =
                    symbiont_proto::v1::node_client::NodeClient::connect(url.clone()).await
                    && let Ok(status) = client.status(symbiont_proto::v1::StatusRequest {}).await
                {
                    let height = status.into_inner().height;
                    if height >= at_least {
                        return height;
                    }
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the node did not reach height {at_least}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let first = height_at(3);
    // Blocks after the pipe closed: the node lived through their lines.
    height_at(first + 5);
    assert!(
        node.child.try_wait().unwrap().is_none(),
        "the node exited after its stdout closed"
    );
    node.kill();
}
