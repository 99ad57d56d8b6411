//! `symbiont preview`: the offline settlement calculator, run as a user
//! runs it, against the worked examples of docs/settlement.md.

use std::process::{Command, Output};

use serde_json::{Value, json};

fn symbiont(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_symbiont"))
        .args(args)
        .output()
        .expect("run symbiont")
}

fn example(name: &str) -> String {
    format!("{}/../docs/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

fn settlement(contract: &str, extra: &[&str]) -> Output {
    let path = example(contract);
    let mut args = vec!["preview", "settlement", "--contract", path.as_str()];
    args.extend_from_slice(extra);
    symbiont(&args)
}

#[test]
fn settlement_statement_of_a_supply_shortfall() {
    let out = json_of(&settlement(
        "steam-contract.toml",
        &["--availability", "80000", "--delivered", "80000", "--json"],
    ));
    // 100 GJ ±10 %: band 90..110 GJ; 80 GJ at 90.00; 10 GJ short at 30.00.
    assert_eq!(
        out,
        json!({
            "availability": 80000, "delivered": 80000, "check": null,
            "lower": 90000, "upper": 110000,
            "base_units": 80000, "excess_units": 0,
            "energy_charge": 720000,
            "supply_shortfall_units": 10000, "supply_penalty": 30000,
            "offtake_shortfall_units": 0, "offtake_penalty": 0,
            "net": 690000,
            "flags": []
        })
    );
}

#[test]
fn settlement_statement_flags_meter_discrepancy_and_check_mismatch() {
    let out = json_of(&settlement(
        "steam-contract.toml",
        &[
            "--availability",
            "100000",
            "--delivered",
            "104000",
            "--check",
            "103000",
            "--json",
        ],
    ));
    assert_eq!(
        out["flags"],
        json!(["meter_discrepancy", "check_meter_mismatch"])
    );
    assert_eq!(out["check"], json!(103000));
    assert_eq!(out["net"], json!(936000));
    // Within the 0.5 GJ tolerance: no check flag.
    let out = json_of(&settlement(
        "steam-contract.toml",
        &[
            "--availability",
            "100000",
            "--delivered",
            "100000",
            "--check",
            "100500",
            "--json",
        ],
    ));
    assert_eq!(out["flags"], json!([]));
}

#[test]
fn settlement_of_a_gate_fee_is_owed_by_the_supplier() {
    let out = json_of(&settlement(
        "fly-ash-gate-fee.toml",
        &["--availability", "50000", "--delivered", "47250", "--json"],
    ));
    assert_eq!(out["energy_charge"], json!(-708750));
    assert_eq!(out["offtake_shortfall_units"], json!(250));
    assert_eq!(out["offtake_penalty"], json!(2500));
    assert_eq!(out["net"], json!(-706250));
}

#[test]
fn settlement_without_json_prints_a_table() {
    let output = settlement(
        "steam-contract.toml",
        &["--availability", "100000", "--delivered", "70000"],
    );
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("off-take penalty") && text.contains("40000"),
        "{text}"
    );
    assert!(text.contains("670000"), "{text}");
}

#[test]
fn settlement_rejects_unknown_terms_and_bad_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "price = 1\ncommitted = 1\ntolerance_bp = 0\nsupply_penalty = 0\nofftake_penalty = 0\npenalty_cp = 5\n",
    )
    .unwrap();
    let output = symbiont(&[
        "preview",
        "settlement",
        "--contract",
        typo.to_str().unwrap(),
        "--availability",
        "0",
        "--delivered",
        "0",
        "--json",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("penalty_cp"));

    let wide = dir.path().join("wide.toml");
    std::fs::write(
        &wide,
        "price = 1\ncommitted = 1\ntolerance_bp = 10001\nsupply_penalty = 0\nofftake_penalty = 0\n",
    )
    .unwrap();
    let output = symbiont(&[
        "preview",
        "settlement",
        "--contract",
        wide.to_str().unwrap(),
        "--availability",
        "0",
        "--delivered",
        "0",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("tolerance_bp"));
}

#[test]
fn settlement_overflow_is_an_error_not_a_wrong_number() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(
        &big,
        "price = 9223372036854775807\ncommitted = 1000\ntolerance_bp = 0\nsupply_penalty = 0\nofftake_penalty = 0\n",
    )
    .unwrap();
    let output = symbiont(&[
        "preview",
        "settlement",
        "--contract",
        big.to_str().unwrap(),
        "--availability",
        "0",
        "--delivered",
        "9000000000",
        "--json",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("overflow"));
}

#[test]
fn split_gives_each_member_its_share_by_largest_remainder() {
    let keys = example("pv-pool-keys.toml");
    let out = json_of(&symbiont(&[
        "preview", "split", "--keys", &keys, "--amount", "200", "--json",
    ]));
    assert_eq!(
        out,
        json!({"amount": 200, "shares": {"alpha": 67, "beta": 66, "gamma": 67}})
    );
    let out = json_of(&symbiont(&[
        "preview", "split", "--keys", &keys, "--amount", "-200", "--json",
    ]));
    assert_eq!(
        out["shares"],
        json!({"alpha": -67, "beta": -66, "gamma": -67})
    );
}

#[test]
fn split_rejects_keys_not_summing_to_10000() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, "[keys]\na = 5000\nb = 4000\n").unwrap();
    let output = symbiont(&[
        "preview",
        "split",
        "--keys",
        keys.to_str().unwrap(),
        "--amount",
        "10",
        "--json",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("9000"));
}
