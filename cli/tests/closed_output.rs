//! Every command stops quietly when the reader of its output goes away
//! (`symbiont genesis check FILE --json | head -c 10`): no panic, no
//! message, exit status 0 (see cli/src/output.rs for why 0).

use std::fmt::Write as _;
use std::io::Read;
use std::process::{Command, Output, Stdio};

use symbiont_contracts::keys::Keypair;

const KALUNDBORG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/genesis/kalundborg.toml"
);

fn example(name: &str) -> String {
    format!("{}/../docs/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn assert_quiet(args: &[&str], output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked") && stderr.is_empty(),
        "{args:?} wrote to stderr: {stderr}"
    );
    assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
}

/// Run with stdout a pipe whose reading end is closed before the command
/// starts: its first write fails with a broken pipe, every time.
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_symbiont"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run symbiont");
    assert_quiet(args, &output);
    output
}

#[test]
fn every_command_exits_quietly_into_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.pem");
    let key = key.to_str().unwrap();
    let contract = example("steam-contract.toml");
    let pool = example("pv-pool-keys.toml");
    let settle = [
        "preview",
        "settlement",
        "--contract",
        &contract,
        "--availability",
        "80000",
        "--delivered",
        "80000",
    ];
    let split = ["preview", "split", "--keys", &pool, "--amount", "200"];
    let commands: Vec<Vec<&str>> = vec![
        vec!["genesis", "check", KALUNDBORG],
        vec!["genesis", "check", KALUNDBORG, "--json"],
        vec!["keys", "gen", "--out", key],
        vec!["keys", "gen", "--out", key, "--force", "--json"],
        vec!["keys", "show", key],
        vec!["keys", "show", key, "--json"],
        settle.to_vec(),
        [&settle[..], &["--json"]].concat(),
        split.to_vec(),
        [&split[..], &["--json"]].concat(),
        vec!["--help"],
        vec!["genesis", "check", "--help"],
        vec!["--version"],
    ];
    for args in &commands {
        run_into_closed_pipe(args);
    }
    // The key was still written: printing is the last step.
    assert!(std::fs::metadata(key).unwrap().len() > 0);
}

/// A valid genesis with `firms` firms: output far larger than a pipe holds.
fn large_genesis(firms: u32) -> String {
    let mut text = String::from(
        "chain_id = \"big\"\ngenesis_time_ms = 1\nresource_kinds = []\n\
         [currency]\ncode = \"EUR\"\nminor_units = 2\n\
         [consensus]\ntimeout_propose_ms = 1000\ntimeout_prevote_ms = 500\n\
         timeout_precommit_ms = 500\ntimeout_delta_ms = 250\nmax_block_txs = 100\n\
         max_block_bytes = 1048576\nmax_clock_drift_ms = 2000\n",
    );
    for index in 0..firms {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&index.to_le_bytes());
        let key = Keypair::from_seed(seed).public();
        write!(
            text,
            "[[firms]]\nid = \"firm-{index}\"\nname = \"Firm number {index} of a large park\"\nadmin_key = \"{key}\"\n"
        )
        .unwrap();
    }
    let node_key = Keypair::from_seed([0xff; 32]).public();
    write!(
        text,
        "[[nodes]]\nid = \"node\"\nfirm = \"firm-0\"\nsite = \"S\"\nkey = \"{node_key}\"\nvalidator = true\npower = 1\n"
    )
    .unwrap();
    text
}

/// `symbiont ... | head -c 1`: the reader takes one byte and leaves while
/// the command still has most of its output to write.
#[test]
fn genesis_check_into_a_reader_that_leaves_early() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.toml");
    std::fs::write(&path, large_genesis(2000)).unwrap();
    let path = path.to_str().unwrap();
    for args in [
        vec!["genesis", "check", path, "--json"],
        vec!["genesis", "check", path],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_symbiont"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 1];
        let read = stdout.read(&mut first).unwrap();
        assert_eq!(read, 1, "{args:?}: no output");
        drop(stdout);
        let output = child.wait_with_output().unwrap();
        assert_quiet(&args, &output);
    }
}

/// Other write errors are still errors: a full disk is reported, status 1.
#[test]
fn a_full_output_is_an_error_not_a_panic() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // not Linux
    };
    let output = Command::new(env!("CARGO_BIN_EXE_symbiont"))
        .args(["genesis", "check", KALUNDBORG])
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.starts_with("error: cannot write to stdout:"),
        "{stderr}"
    );
}
