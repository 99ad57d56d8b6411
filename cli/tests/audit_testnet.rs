//! Export and audit against a real network: a 4-validator testnet (real
//! `symbiont-node` processes), a steam contract between firm-0 (supplier)
//! and firm-1 (consumer) signed, metered and settled over gRPC, a failed
//! transaction; then `symbiont export` (interrupted by --to, resumed,
//! refusing to overwrite without --force) and `symbiont audit`, whose
//! balances, obligations and avoided emissions must be the node's Query
//! answers at the same height.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::Keypair;
use symbiont_contracts::kinds::ContractTerms;
use symbiont_contracts::settlement::SettlementTerms;
use symbiont_contracts::tx::{KeyRole, SignedTx, TxBody, TxKind};
use symbiont_node::config::GRPC_PORT_OFFSET;
use symbiont_proto::v1 as pb;
use symbiont_proto::v1::node_client::NodeClient;
use symbiont_proto::v1::query_client::QueryClient;

#[path = "support/mod.rs"]
mod testnet;

use testnet::{CLI, cli, json_of, ok};

/// Submits `kind` signed by `key` with `nonce` and waits until it is
/// committed; returns its id, height and result code ("" applied).
async fn submit(
    node: &mut NodeClient<tonic::transport::Channel>,
    key: &Keypair,
    nonce: u64,
    kind: TxKind,
) -> (Hash, u64, String) {
    let tx = SignedTx::sign(
        TxBody {
            chain_id: "testnet".into(),
            nonce,
            kind,
        },
        key,
    );
    let id = tx.id();
    node.submit_tx(pb::SubmitTxRequest { tx: tx.to_bytes() })
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let answer = node
            .get_tx(pb::GetTxRequest {
                tx_id: id.0.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        if answer.state() == pb::TxState::Committed {
            return (id, answer.height, answer.error);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "tx not committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The network's activity: a meter key, a contract proposed and
/// countersigned, both readings, the period settled, and a transaction
/// that fails (a second countersignature). Returns the last height used.
async fn activity(url: &str, net: &Path) -> u64 {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut node = NodeClient::new(channel);
    let read =
        |firm: &str| symbiont_node::keyfile::read(&net.join(format!("firms/{firm}.pem"))).unwrap();
    let (supplier, consumer) = (read("firm-0"), read("firm-1"));
    let meter = Keypair::from_seed([77; 32]);
    let (_, _, code) = submit(
        &mut node,
        &consumer,
        1,
        TxKind::AuthorizeKey {
            firm: "firm-1".into(),
            key: meter.public(),
            role: KeyRole::Meter,
        },
    )
    .await;
    assert_eq!(code, "");
    let status = node
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let period_ms = 3000;
    let start_ms = status.last_block_time_ms;
    let terms = ContractTerms {
        supplier: "firm-0".into(),
        consumer: "firm-1".into(),
        kind: "steam".into(),
        delivery_point: "gate 3".into(),
        quality: BTreeMap::new(),
        settlement: SettlementTerms {
            price: 9_000,
            committed: 100_000,
            tolerance_bp: 1_000,
            supply_penalty: 3_000,
            offtake_penalty: 2_000,
            excess_price: None,
            penalty_cap: None,
            meter_tolerance: None,
        },
        start_ms,
        period_ms,
        periods: 2,
        billing_meter: meter.public(),
        check_meter: None,
        arbiter: None,
        listing: None,
        gain_pool: None,
    };
    let (contract, _, code) =
        submit(&mut node, &supplier, 1, TxKind::ProposeContract { terms }).await;
    assert_eq!(code, "");
    let (_, _, code) = submit(&mut node, &consumer, 2, TxKind::Countersign { contract }).await;
    assert_eq!(code, "");
    let (_, _, code) = submit(
        &mut node,
        &supplier,
        2,
        TxKind::RecordAvailability {
            contract,
            period: 0,
            quantity: 100_000,
        },
    )
    .await;
    assert_eq!(code, "", "availability");
    let (_, _, code) = submit(
        &mut node,
        &meter,
        1,
        TxKind::RecordDelivery {
            contract,
            period: 0,
            quantity: 80_000,
        },
    )
    .await;
    assert_eq!(code, "", "delivery");
    // Settle once the period is over (block time past its end).
    let mut nonce = 3;
    let start = Instant::now();
    loop {
        let (_, _, code) = submit(
            &mut node,
            &supplier,
            nonce,
            TxKind::SettlePeriod {
                contract,
                period: 0,
            },
        )
        .await;
        nonce += 1;
        if code.is_empty() {
            break;
        }
        assert_eq!(code, "period_not_over");
        assert!(start.elapsed() < Duration::from_secs(30), "never settled");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A transaction that fails: the contract is active already.
    let (_, height, code) = submit(&mut node, &consumer, 3, TxKind::Countersign { contract }).await;
    assert_ne!(code, "");
    height
}

/// The node's balances and obligations (firm accounts) and avoided grams.
async fn query(
    url: &str,
) -> (
    u64,
    BTreeMap<String, i64>,
    Vec<(String, String, i64)>,
    Value,
) {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut query = QueryClient::new(channel);
    let answer = query
        .balances(pb::BalancesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(answer.next_page_token.is_empty());
    let firm = |a: &Option<pb::Account>| match a.as_ref().and_then(|a| a.account.as_ref()) {
        Some(pb::account::Account::Firm(firm)) => firm.clone(),
        other => panic!("not a firm: {other:?}"),
    };
    let balances = answer
        .balances
        .iter()
        .filter(|b| b.balance != 0)
        .map(|b| (firm(&b.account), b.balance))
        .collect();
    let obligations = answer
        .obligations
        .iter()
        .filter(|o| o.amount != 0)
        .map(|o| (firm(&o.debtor), firm(&o.creditor), o.amount))
        .collect();
    let avoided = query
        .avoided_co2(pb::AvoidedCo2Request {
            firm: String::new(),
            by_kind: true,
        })
        .await
        .unwrap()
        .into_inner();
    let avoided_json = serde_json::json!({
        "height": avoided.height,
        "network": avoided.network_g,
        "firms": avoided.firms.iter().map(|f| (f.firm.clone(), f.grams)).collect::<BTreeMap<_, _>>(),
        "kinds": avoided.kinds.iter().map(|k| (k.kind.clone(), k.grams)).collect::<BTreeMap<_, _>>(),
    });
    (answer.height, balances, obligations, avoided_json)
}

#[test]
fn a_testnet_export_audits_clean_and_matches_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let (nodes, port) = testnet::start_network(&net, 4);
    let url = format!("http://127.0.0.1:{}", port + GRPC_PORT_OFFSET);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Wait for the network to commit.
    let start = Instant::now();
    while !cli(&url, &["status"]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(60), "no node answers");
        std::thread::sleep(Duration::from_millis(200));
    }
    let last_activity = runtime.block_on(activity(&url, &net));

    let file = dir.path().join("testnet.symbexp");
    let file_text = file.to_str().unwrap();
    // An export stopped early (--to 2) leaves a complete file of heights
    // 1-2; an export cut off mid-way is simulated by renaming it back to
    // FILE.partial: the next run resumes from height 3.
    ok(cli(&url, &["export", "--out", file_text, "--to", "2"]));
    let partial = dir.path().join("testnet.symbexp.partial");
    std::fs::rename(&file, &partial).unwrap();
    // Cut the end frame (40 bytes payload + 37 overhead) and some more,
    // as an interruption would.
    let len = std::fs::metadata(&partial).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&partial)
        .unwrap();
    f.set_len(len - 77 - 10).unwrap();
    drop(f);

    let output = ok(cli(&url, &["--json", "export", "--out", file_text]));
    let exported = json_of(&output);
    assert_eq!(exported["resumed"], true, "{exported}");
    assert_eq!(exported["fetched_from"], 2, "{exported}");
    let height = exported["height"].as_u64().unwrap();
    assert!(height >= last_activity);
    assert!(!partial.exists());

    // FILE exists now: no overwrite without --force.
    let output = cli(&url, &["export", "--out", file_text]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));

    // The node's answers, at its height now: no transaction came after
    // the activity, so balances, obligations and avoided emissions are
    // those of the exported height. The audit runs with the network gone.
    let (query_height, balances, obligations, avoided) = runtime.block_on(query(&url));
    drop(nodes);
    assert!(query_height >= height);
    let output = ok(Command::new(CLI)
        .args(["--json", "audit", file_text])
        .output()
        .unwrap());
    let audit = json_of(&output);
    assert_eq!(audit["ok"], true);
    let report = &audit["report"];
    assert_eq!(report["height"].as_u64().unwrap(), height);
    assert!(report["counts"]["failed"].as_u64().unwrap() >= 1);
    let audited: BTreeMap<String, i64> = report["firms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["balance"].as_i64().unwrap() != 0)
        .map(|f| {
            (
                f["firm"].as_str().unwrap().to_string(),
                f["balance"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(!audited.is_empty(), "the settlement moved money: {report}");
    assert_eq!(audited, balances);
    let audited_obligations: Vec<(String, String, i64)> = report["obligations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["debtor"].as_str().unwrap().to_string(),
                o["creditor"].as_str().unwrap().to_string(),
                o["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(audited_obligations, obligations);
    assert_eq!(report["network_avoided_g"], avoided["network"]);
    assert!(avoided["network"].as_u64().unwrap() > 0);
    for firm in report["firms"].as_array().unwrap() {
        let grams = firm["avoided_g"].as_u64().unwrap();
        let queried = avoided["firms"][firm["firm"].as_str().unwrap()]
            .as_u64()
            .unwrap_or(0);
        assert_eq!(grams, queried, "{firm}");
    }
    for kind in report["kinds"].as_array().unwrap() {
        assert_eq!(
            kind["avoided_g"],
            avoided["kinds"][kind["kind"].as_str().unwrap()]
        );
    }

    // Human output too, and the bench figures.
    let output = ok(Command::new(CLI)
        .args(["audit", file_text, "--bench"])
        .output()
        .unwrap());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(": clean"), "{text}");
    assert!(text.contains("firm-1 owes firm-0"), "{text}");
    assert!(text.contains("ratio:"), "{text}");
}
