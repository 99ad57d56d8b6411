//! What the CLI tests against real networks share: the node binary,
//! free ports, a `symbiont-node testnet` of processes that die with the
//! test, and running the `symbiont` binary.
//!
//! The node binary: Cargo gives `CARGO_BIN_EXE_<name>` only for binaries
//! of the crate under test, so the tests find `symbiont-node` next to
//! their own executable (target/<profile>/deps/<test>-… →
//! target/<profile>/symbiont-node), and always ask cargo to build it first
//! (same profile; nothing to do when it is fresh): a node binary left from
//! an older build would lack what the tests ask of it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;

use serde_json::Value;
use symbiont_node::config::{GRPC_PORT_OFFSET, METRICS_PORT_OFFSET};

pub const CLI: &str = env!("CARGO_BIN_EXE_symbiont");

/// target/<profile>/symbiont-node, built (or found fresh) first.
pub fn node_binary() -> PathBuf {
    static BUILD: Once = Once::new();
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let node = profile_dir.join(format!("symbiont-node{}", std::env::consts::EXE_SUFFIX));
    BUILD.call_once(|| {
        // Always: a node binary left from an older build would lack
        // what this one asks of it (cargo does nothing when it is fresh).
        {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "-p", "symbiont-node", "--bin", "symbiont-node"]);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            assert!(
                build.status().unwrap().success(),
                "cannot build symbiont-node"
            );
        }
    });
    assert!(node.exists(), "{} is missing", node.display());
    node
}

/// `count` consecutive free p2p ports and their gRPC and metrics ports
/// (checked, not reserved); as node/tests/support/testnet.rs.
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

/// A node process, killed when the test ends (also on failure).
pub struct Node(pub Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_network(net: &Path, validators: u16) -> (Vec<Node>, u16) {
    let node = node_binary();
    let port = base_port(validators);
    let status = Command::new(&node)
        .args(["testnet", "--validators"])
        .arg(validators.to_string())
        .args(["--full-nodes", "0", "--base-port"])
        .arg(port.to_string())
        .arg("--dir")
        .arg(net)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let nodes =
        (0..validators)
            .map(|i| {
                let mut command = Command::new(&node);
                command
                    .args(["run", "--config"])
                    .arg(net.join(format!("validator-{i}/config.toml")))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null());
                // Killed with this thread even if the harness is killed
                // (then Drop never runs).
                // SAFETY: prctl is async-signal-safe and touches no memory
                // of ours.
                unsafe {
                    use std::os::unix::process::CommandExt;
                    command.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let mut child = command.spawn().unwrap();
                // Drain stdout (the `height N` lines) so the node never blocks.
                let stdout = child.stdout.take().unwrap();
                std::thread::spawn(move || {
                    for _ in BufReader::new(stdout).lines().map_while(Result::ok) {}
                });
                Node(child)
            })
            .collect();
    (nodes, port)
}

/// Runs `symbiont ARGS` against `url`.
pub fn cli(url: &str, args: &[&str]) -> Output {
    Command::new(CLI)
        .arg("--node")
        .arg(url)
        .args(args)
        .output()
        .unwrap()
}

pub fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

pub fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
