//! `symbiont` against a real network: `symbiont-node testnet --validators
//! 4` run as processes on 127.0.0.1, and the CLI binary run as people run
//! it. A firm admin authorizes an operator key, the operator posts offers
//! (the second one finds its nonce through a `bad_nonce` refusal), the
//! market lists them in units and currency, `status`, `tx show` and
//! `events` report them, a key of no firm is refused and a transaction
//! signed with the wrong key commits as failed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use symbiont_node::config::GRPC_PORT_OFFSET;

mod support;

use support::*;

#[test]
fn the_cli_submits_lists_and_follows_on_a_real_network() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let (_nodes, port) = start_network(&net, 4);
    let url = format!("http://127.0.0.1:{}", port + GRPC_PORT_OFFSET);
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let admin = path(&net.join("firms/firm-0.pem"));

    // The network commits blocks: status answers with height >= 1.
    let start = Instant::now();
    let status = loop {
        let output = cli(&url, &["status", "--json"]);
        if output.status.success() {
            let status = json_of(&output);
            if status["height"].as_u64().unwrap() >= 1 {
                break status;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no block");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["chain_id"], "testnet");
    assert_eq!(status["validators"].as_array().unwrap().len(), 4);
    assert!(status["consensus"]["step"].is_string());
    let table = String::from_utf8(ok(cli(&url, &["status"])).stdout).unwrap();
    assert!(table.contains("VALIDATOR") && table.contains("chain       testnet"));

    // The admin of firm-0 authorizes a new operator key (given as a file).
    let operator = dir.path().join("operator.pem");
    ok(cli(&url, &["keys", "gen", "--out", &path(&operator)]));
    let output = ok(cli(
        &url,
        &[
            "--key",
            &admin,
            "--json",
            "firm",
            "authorize",
            "firm-0",
            &path(&operator),
            "--role",
            "operator",
        ],
    ));
    assert_eq!(json_of(&output)["outcome"], "applied");

    // The operator offers steam: committed.
    let offer = |quantity: &str, price: &str| {
        cli(
            &url,
            &[
                "--key",
                &path(&operator),
                "--json",
                "market",
                "offer",
                "--kind",
                "steam",
                "--quantity",
                quantity,
                "--price",
                price,
                "--periods",
                "24",
                "--period",
                "1h",
                "--valid-for",
                "7d",
                "--delivery-point",
                "gate 1",
            ],
        )
    };
    let first = json_of(&ok(offer("12.5", "25.00")));
    assert_eq!(first["outcome"], "applied", "{first}");
    assert_eq!(first["nonce"], 1);
    let offer_id = first["tx_id"].as_str().unwrap().to_string();
    // The second offer starts at nonce 1 and is told the next is 2.
    let second = json_of(&ok(offer("3", "-4.50")));
    assert_eq!(second["outcome"], "applied", "{second}");
    assert_eq!(second["nonce"], 2);

    // A client config file names the node and the key (relative to the
    // file): the same operator withdraws its second offer without --node
    // or --key.
    std::fs::write(
        dir.path().join("client.toml"),
        format!("node = \"{url}\"\nkey = \"operator.pem\"\n"),
    )
    .unwrap();
    let second_id = second["tx_id"].as_str().unwrap();
    let output = Command::new(CLI)
        .args(["--config", &path(&dir.path().join("client.toml")), "--json"])
        .args(["market", "withdraw", second_id])
        .env_remove("SYMBIONT_NODE")
        .output()
        .unwrap();
    assert_eq!(json_of(&ok(output))["outcome"], "applied");

    // The market lists both in tonnes and euros.
    let list = json_of(&ok(cli(
        &url,
        &["market", "list", "--json", "--side", "offer"],
    )));
    let listings = list["listings"].as_array().unwrap();
    assert_eq!(listings.len(), 2, "{list}");
    let listing = listings.iter().find(|l| l["id"] == offer_id).unwrap();
    assert_eq!(listing["quantity_per_period"], "12.5 t");
    assert_eq!(listing["price_per_unit"], "25.00 EUR");
    assert_eq!(listing["period"], "1h");
    assert_eq!(listing["owner"], "firm-0");
    assert_eq!(listing["status"], "open");
    assert!(listings.iter().any(|l| l["price_per_unit"] == "-4.50 EUR"));
    let table = String::from_utf8(ok(cli(&url, &["market", "list"])).stdout).unwrap();
    assert!(table.contains(&offer_id) && table.contains("12.5 t") && table.contains("25.00 EUR"));

    // tx show of the offer.
    let shown = json_of(&ok(cli(&url, &["tx", "show", &offer_id, "--json"])));
    assert_eq!(shown["state"], "committed");
    assert_eq!(shown["result"], "applied");
    let text = String::from_utf8(ok(cli(&url, &["tx", "show", &offer_id])).stdout).unwrap();
    assert!(text.contains("committed   applied at height"), "{text}");

    // A key of no firm is refused at submit: exit 1 with the code.
    let stranger = dir.path().join("stranger.pem");
    ok(cli(&url, &["keys", "gen", "--out", &path(&stranger)]));
    let output = cli(
        &url,
        &[
            "--key",
            &path(&stranger),
            "firm",
            "revoke",
            "firm-0",
            &path(&operator),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refused: unknown_signer"), "{stderr}");

    // The operator key may not authorize keys: committed, failed, exit 1.
    let output = cli(
        &url,
        &[
            "--key",
            &path(&operator),
            "--json",
            "firm",
            "authorize",
            "firm-0",
            &path(&stranger),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let failed = json_of(&output);
    assert_eq!(failed["outcome"], "failed", "{failed}");
    let failed_code = failed["code"].as_str().unwrap().to_string();
    assert!(!failed_code.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("committed but failed"));

    // The events from height 1: the five transactions, in order.
    let output = ok(cli(
        &url,
        &[
            "events",
            "--from",
            "1",
            "--limit",
            "5",
            "--for-secs",
            "30",
            "--json",
        ],
    ));
    let events: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 5, "{events:?}");
    let kinds: Vec<_> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap(),
                e["kind"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "tx_committed authorize_key",
            "tx_committed post_offer",
            "tx_committed post_offer",
            "tx_committed withdraw",
            "tx_failed authorize_key"
        ]
    );
    assert_eq!(events[1]["tx_id"], offer_id.as_str());
    assert_eq!(events[1]["firms"][0], "firm-0");
    assert_eq!(events[4]["code"], failed_code.as_str());
    let output = ok(cli(&url, &["events", "--from", "1", "--limit", "2"]));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .contains("tx_committed kind=post_offer"),
        "{text}"
    );
}

#[test]
fn every_node_command_explains_itself() {
    for command in [
        &["status"][..],
        &["tx", "show"],
        &["events"],
        &["market", "offer"],
        &["market", "request"],
        &["market", "list"],
        &["firm", "authorize"],
        &["firm", "revoke"],
    ] {
        let output = Command::new(CLI)
            .args(command)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8(output.stdout).unwrap();
        assert!(output.status.success());
        assert!(help.contains("Example: symbiont"), "{command:?}: {help}");
        assert!(
            help.contains("--node") && help.contains("--json"),
            "{command:?}"
        );
    }
}

#[test]
fn a_node_that_is_not_there_is_an_error_not_a_hang() {
    let port = base_port(1);
    let url = format!("http://127.0.0.1:{}", port + GRPC_PORT_OFFSET);
    let output = cli(&url, &["status"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach the node"), "{stderr}");
}
