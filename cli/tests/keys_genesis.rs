//! The `symbiont` binary as a user runs it: keys and genesis commands.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn symbiont(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_symbiont"))
        .args(args)
        .output()
        .expect("run symbiont")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "stderr: {}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

const KALUNDBORG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/genesis/kalundborg.toml"
);

#[test]
fn keys_gen_writes_a_private_file_that_show_and_openssl_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("operator.pem");
    let path_text = path.to_str().unwrap();
    let generated = json(&symbiont(&["keys", "gen", "--out", path_text, "--json"]));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let shown = json(&symbiont(&["keys", "show", path_text, "--json"]));
    assert_eq!(shown["public_key"], generated["public_key"]);
    assert!(shown["peer_id"].as_str().unwrap().starts_with("12D3KooW"));

    // OpenSSL reads it as an ED25519 private key and derives the same public key.
    let text = Command::new("openssl")
        .args(["pkey", "-in", path_text, "-noout", "-text"])
        .output()
        .expect("openssl is installed");
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(
        stdout(&text).starts_with("ED25519 Private-Key:"),
        "{}",
        stdout(&text)
    );
    let der = Command::new("openssl")
        .args(["pkey", "-in", path_text, "-pubout", "-outform", "DER"])
        .output()
        .unwrap();
    let openssl_public = hex::encode(&der.stdout[der.stdout.len() - 32..]);
    assert_eq!(
        generated["public_key"].as_str().unwrap(),
        format!("ed25519:{openssl_public}")
    );
}

#[test]
fn keys_gen_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    let path_text = path.to_str().unwrap();
    let first = json(&symbiont(&["keys", "gen", "--out", path_text, "--json"]));
    let again = symbiont(&["keys", "gen", "--out", path_text]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        json(&symbiont(&["keys", "show", path_text, "--json"]))["public_key"],
        first["public_key"]
    );
    let forced = json(&symbiont(&[
        "keys", "gen", "--out", path_text, "--force", "--json",
    ]));
    assert_ne!(forced["public_key"], first["public_key"]);
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn keys_show_refuses_open_or_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    let path_text = path.to_str().unwrap();
    assert!(
        symbiont(&["keys", "gen", "--out", path_text])
            .status
            .success()
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = symbiont(&["keys", "show", path_text]);
    assert!(!open.status.success());
    assert!(stderr(&open).contains("chmod 600"), "{}", stderr(&open));

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bad = symbiont(&["keys", "show", garbage.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("PKCS#8"), "{}", stderr(&bad));

    let missing = symbiont(&["keys", "show", "/nonexistent/k.pem"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("/nonexistent/k.pem"));
}

#[test]
fn genesis_check_prints_hash_and_summary() {
    let text = std::fs::read_to_string(KALUNDBORG).unwrap();
    let expected_hash = symbiont_contracts::Genesis::from_toml(&text)
        .unwrap()
        .hash()
        .to_hex();

    let table = symbiont(&["genesis", "check", KALUNDBORG]);
    assert!(table.status.success(), "{}", stderr(&table));
    let table = stdout(&table);
    assert!(table.contains(&expected_hash));
    assert!(
        table.contains("4 of 8 nodes, total power 40, quorum 27"),
        "{table}"
    );
    for firm in [
        "orsted",
        "equinor",
        "gyproc",
        "novo",
        "forsyning",
        "fishfarm",
        "rgs90",
    ] {
        assert!(table.contains(firm), "{firm} missing");
    }

    let report = json(&symbiont(&["genesis", "check", KALUNDBORG, "--json"]));
    assert_eq!(report["genesis_hash"], expected_hash.as_str());
    assert_eq!(report["total_power"], 40);
    assert_eq!(report["quorum_power"], 27);
    assert_eq!(report["genesis"]["chain_id"], "kalundborg-1");
    assert_eq!(
        report["genesis"]["resource_kinds"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
}

#[test]
fn genesis_check_explains_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(KALUNDBORG).unwrap().replacen(
        "firm = \"gyproc\"",
        "firm = \"lego\"",
        1,
    );
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let output = symbiont(&["genesis", "check", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("node \"gyproc\" belongs to unknown firm \"lego\""),
        "{message}"
    );
    assert!(message.contains("bad.toml"), "{message}");
    assert!(stdout(&output).is_empty());
}

#[test]
fn help_describes_the_commands() {
    let help = stdout(&symbiont(&["--help"]));
    assert!(help.contains("keys") && help.contains("genesis"));
    let gen_help = stdout(&symbiont(&["keys", "gen", "--help"]));
    assert!(gen_help.contains("--out") && gen_help.contains("0600"));
}
