//! A month of trading on a real 4-validator network, driven only through
//! the `symbiont` CLI, with every figure computed by hand below.
//!
//! Time is compressed: a "day" is a contract period of [`DAY`] of block
//! time, so the month of 30 daily periods runs in about a minute.
//!
//! The cast (the testnet's firms): firm-0 supplies steam to firm-1;
//! firm-2 and firm-3 share a heat-network pool; the firms vote a
//! facilitator, `hub`, into the network, which arbitrates the contract.
//!
//! The contract: 10 t of steam a day at 25.00 EUR/t, tolerance 10 % (band
//! 9 to 11 t), supply penalty 5.00 EUR/t, off-take penalty 4.00 EUR/t.
//! Readings come from two CSV files sent as the days end (`--paced`):
//! availability by firm-0's operator, deliveries by firm-0's billing
//! meter. Every day A = D = 10 t except:
//! - day 9, a supply shortfall: A = D = 6 t. Charge 6 x 25.00 = 150.00;
//!   supply shortfall 9 - 6 = 3 t, penalty 3 x 5.00 = 15.00; no off-take
//!   shortfall (min(A, 9) - D = 0). Net 150.00 - 15.00 = 135.00.
//! - day 19, an off-take failure: A = 10 t, D = 5 t. Charge 5 x 25.00 =
//!   125.00; no supply shortfall; off-take shortfall min(10, 9) - 5 = 4 t,
//!   penalty 4 x 4.00 = 16.00. Net 125.00 + 16.00 = 141.00.
//! - day 4 is disputed by firm-1 and the hub resolves it with an
//!   adjustment of -10.00: net 250.00 - 10.00 = 240.00.
//! - A normal day: charge 10 x 25.00 = 250.00, net 250.00.
//!
//! Month: 27 normal days x 250.00 + 240.00 + 135.00 + 141.00 = 7266.00 EUR
//! owed by firm-1 to firm-0. firm-1 pays 7000.00 and firm-0 acknowledges
//! it: 266.00 stays owed. Balances: firm-0 +266.00, firm-1 -266.00.
//!
//! Avoided CO2 (steam: 170 kg per t): 28 days x 10 t + 6 t + 5 t = 291 t
//! delivered, 291 x 170 kg = 49 470 kg, counted for firm-0, for firm-1 and
//! once for the network.
//!
//! The pool: firm-2 (60 %) and firm-3 (40 %). firm-2 posts income of
//! 1000.00 it collected, firm-3 a cost of 200.00 it paid; the split of
//! 800.00 gives firm-2 480.00 and firm-3 320.00. Balances: firm-2 owes
//! the pool 1000.00 and is owed 480.00: -520.00; firm-3 is owed 200.00
//! and 320.00: +520.00; the pool 0.
//!
//! The availability CSV repeats day 3 on the line after it: that row is
//! rejected (`already_recorded`), the summary says so and the command
//! exits 1, and the first reading stands.

mod support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use symbiont_node::config::GRPC_PORT_OFFSET;

/// A "day" of the month: one contract period of block time.
const DAY: &str = "2s";
const DAY_MS: u64 = 2_000;
const DAYS: u32 = 30;

struct Cli {
    url: String,
}

impl Cli {
    fn command(&self, key: Option<&Path>, args: &[&str]) -> Command {
        let mut command = Command::new(CLI);
        command
            .arg("--node")
            .arg(&self.url)
            .arg("--timeout")
            .arg("60");
        if let Some(key) = key {
            command.arg("--key").arg(key);
        }
        command.args(args);
        command
    }

    fn run(&self, key: Option<&Path>, args: &[&str]) -> Output {
        self.command(key, args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, key: Option<&Path>, args: &[&str]) -> String {
        let output = self.run(key, args);
        assert!(
            output.status.success(),
            "symbiont {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs with --json and expects success.
    fn json(&self, key: Option<&Path>, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(key, &all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Submits with --json; returns the tx id (the id of what it created).
    fn submit(&self, key: &Path, args: &[&str]) -> String {
        let outcome = self.json(Some(key), args);
        assert_eq!(outcome["outcome"], "applied", "{args:?}: {outcome}");
        outcome["tx_id"].as_str().unwrap().to_string()
    }

    fn spawn(&self, key: &Path, args: &[&str]) -> Child {
        self.command(Some(key), args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_month_of_trading_through_the_cli_adds_up_to_the_figures_computed_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let (_nodes, port) = start_network(&net, 4);
    let cli = Cli {
        url: format!("http://127.0.0.1:{}", port + GRPC_PORT_OFFSET),
    };
    let start = Instant::now();
    while cli.run(None, &["status"]).status.code() != Some(0) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the network never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let admin = |i: usize| net.join(format!("firms/firm-{i}.pem"));
    let key = |name: &str| {
        let path = dir.path().join(format!("{name}.pem"));
        cli.ok(None, &["keys", "gen", "--out", path.to_str().unwrap()]);
        path
    };
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // Keys: operators for firm-0 and firm-1, firm-0's billing meter.
    let (op0, op1, meter0) = (key("op0"), key("op1"), key("meter0"));
    for (firm, admin_key, new_key, role) in [
        ("firm-0", admin(0), &op0, "operator"),
        ("firm-0", admin(0), &meter0, "meter"),
        ("firm-1", admin(1), &op1, "operator"),
    ] {
        cli.submit(
            &admin_key,
            &["firm", "authorize", firm, &s(new_key), "--role", role],
        );
    }

    // Governance: firm-0 proposes the hub as facilitator, firm-1 and
    // firm-2 approve (3 of 4 firms: more than 2/3).
    let hub_admin = key("hub-admin");
    let proposal = cli.submit(
        &admin(0),
        &[
            "gov",
            "propose",
            "add-firm",
            "--id",
            "hub",
            "--name",
            "Symbiosis hub",
            "--admin-key",
            &s(&hub_admin),
            "--facilitator",
        ],
    );
    let listed = cli.json(None, &["gov", "list", "--open"]);
    assert_eq!(listed["proposals"][0]["id"], proposal.as_str());
    assert_eq!(listed["proposals"][0]["action"], "add_firm");
    cli.submit(&admin(1), &["gov", "vote", &proposal, "--yes"]);
    cli.submit(&admin(2), &["gov", "vote", &proposal, "--yes"]);
    let listed = cli.json(None, &["gov", "list"]);
    assert_eq!(listed["proposals"][0]["status"], "passed", "{listed}");
    // The facilitator registers a waste kind and licenses firm-1 to take it.
    cli.submit(
        &hub_admin,
        &[
            "kind",
            "register",
            "--id",
            "fly-ash",
            "--name",
            "Fly ash",
            "--unit",
            "t",
            "--emission-factor-g",
            "800000",
            "--waste",
            "--ewc-code",
            "10 01 02",
        ],
    );
    cli.submit(
        &hub_admin,
        &[
            "licence", "grant", "firm-1", "10 01 02", "--until", "now+365d",
        ],
    );

    // The pool: firm-2 creates it with its admin key (and so has joined),
    // firm-3 joins; both post in period 0, which ends before the month does.
    let pool = cli.submit(
        &admin(2),
        &[
            "pool",
            "create",
            "heat network",
            "--share",
            "firm-2=60%",
            "--share",
            "firm-3=40%",
            "--start",
            "now",
            "--period",
            "20s",
        ],
    );
    cli.submit(&admin(3), &["pool", "join", &pool]);
    cli.submit(&admin(2), &["pool", "post", &pool, "0", "1000.00"]);
    cli.submit(&admin(3), &["pool", "post", &pool, "0", "--", "-200.00"]);

    // The market: firm-0 offers steam, firm-1 asks for district heat, then
    // takes the offer and withdraws its request.
    let offer = cli.submit(
        &op0,
        &[
            "market",
            "offer",
            "--kind",
            "steam",
            "--quantity",
            "10",
            "--price",
            "25.00",
            "--periods",
            "30",
            "--period",
            DAY,
            "--delivery-point",
            "gate 2",
        ],
    );
    let request = cli.submit(
        &op1,
        &[
            "market",
            "request",
            "--kind",
            "district-heat",
            "--quantity",
            "2.5",
            "--price",
            "40.00",
            "--periods",
            "10",
            "--period",
            "1d",
            "--delivery-point",
            "heat main",
        ],
    );
    let listings = cli.json(None, &["market", "list", "--open"]);
    assert_eq!(
        listings["listings"].as_array().unwrap().len(),
        2,
        "{listings}"
    );
    cli.submit(&op1, &["market", "accept", &offer]);
    cli.submit(&op1, &["market", "withdraw", &request]);
    let listings = cli.json(None, &["market", "list"]);
    let status_of = |id: &str| {
        listings["listings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == id)
            .map(|l| (l["status"].clone(), l["accepted_by"].clone()))
            .unwrap()
    };
    assert_eq!(status_of(&offer).0, "accepted");
    assert_eq!(status_of(&offer).1, "firm-1");
    assert_eq!(status_of(&request).0, "withdrawn");

    // The contract, on the accepted offer's terms, with the hub as arbiter:
    // proposed by firm-0, countersigned by firm-1. Day 0 starts in 12 s.
    let start_ms = now_ms() + 12_000;
    let contract = cli.submit(
        &op0,
        &[
            "contract",
            "propose",
            "--listing",
            &offer,
            "--tolerance",
            "10%",
            "--supply-penalty",
            "5.00",
            "--offtake-penalty",
            "4.00",
            "--start",
            &format!("@{start_ms}"),
            "--billing-meter",
            &s(&meter0),
            "--arbiter",
            "hub",
        ],
    );
    let proposed = cli.json(None, &["contract", "list", "--status", "proposed"]);
    assert_eq!(proposed["contracts"][0]["id"], contract.as_str());
    cli.submit(&op1, &["contract", "sign", &contract]);
    let shown = cli.json(None, &["contract", "show", &contract]);
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["supplier"], "firm-0");
    assert_eq!(shown["consumer"], "firm-1");
    assert_eq!(shown["committed_per_period"], "10 t");
    assert_eq!(shown["price_per_unit"], "25.00 EUR");
    assert_eq!(shown["tolerance"], "10.00%");
    assert_eq!(shown["delivery_point"], "gate 2");
    assert_eq!(shown["period"], DAY);
    assert_eq!(shown["periods"], DAYS);

    // The month's readings, as CSV files, sent as each day ends.
    let (mut availability, mut delivered) = (String::from("period,quantity\n"), String::new());
    for day in 0..DAYS {
        let (a, d) = match day {
            9 => ("6", "6"),
            19 => ("10", "5"),
            _ => ("10", "10"),
        };
        availability += &format!("{day},{a}\n");
        if day == 3 {
            availability += "3,7\n"; // day 3 again: rejected
        }
        delivered += &format!("{contract},{day},{d}\n");
    }
    let (a_csv, d_csv) = (dir.path().join("a.csv"), dir.path().join("d.csv"));
    std::fs::write(&a_csv, availability).unwrap();
    std::fs::write(&d_csv, delivered).unwrap();
    assert!(now_ms() < start_ms, "the setup took too long: day 0 began");
    let a_run = cli.spawn(
        &op0,
        &[
            "meter",
            "availability",
            "--csv",
            &s(&a_csv),
            "--contract",
            &contract,
            "--paced",
        ],
    );
    let d_run = cli.spawn(
        &meter0,
        &["meter", "delivery", "--csv", &s(&d_csv), "--paced"],
    );
    let (a_out, d_out) = (
        a_run.wait_with_output().unwrap(),
        d_run.wait_with_output().unwrap(),
    );
    let d_text = String::from_utf8_lossy(&d_out.stdout);
    assert!(
        d_out.status.success(),
        "{d_text}\n{}",
        String::from_utf8_lossy(&d_out.stderr)
    );
    assert!(
        d_text.contains("delivery readings: 30 applied, 0 rejected, of 30"),
        "{d_text}"
    );
    let a_text = String::from_utf8_lossy(&a_out.stdout);
    assert_eq!(a_out.status.code(), Some(1), "{a_text}");
    assert!(
        a_text.contains("availability readings: 30 applied, 1 rejected, of 31"),
        "{a_text}"
    );
    assert!(
        a_text.contains("rejected line 6 (period 3)") && a_text.contains("already_recorded"),
        "{a_text}"
    );

    // firm-1 disputes day 4 and the hub resolves it before settlement.
    let hub_op = key("hub-op");
    cli.submit(
        &hub_admin,
        &[
            "firm",
            "authorize",
            "hub",
            &s(&hub_op),
            "--role",
            "operator",
        ],
    );
    cli.submit(
        &op1,
        &["dispute", "open", &contract, "4", "--reason", "meter drift"],
    );
    cli.submit(
        &hub_op,
        &[
            "dispute",
            "resolve",
            &contract,
            "4",
            "--adjustment",
            "-10.00",
        ],
    );

    // The month is over once day 29 has ended: settle it all.
    while now_ms() < start_ms + u64::from(DAYS) * DAY_MS {
        std::thread::sleep(Duration::from_millis(100));
    }
    let settled = cli.json(Some(&op0), &["settle", &contract, "0-29"]);
    assert_eq!(settled["applied"], 30, "{settled}");

    let statements = cli.json(None, &["statement", "--contract", &contract]);
    let statements = statements["statements"].as_array().unwrap().clone();
    assert_eq!(statements.len(), 30);
    for s in &statements {
        let (day, net) = (s["period"].as_u64().unwrap(), text(&s["net"]));
        match day {
            4 => {
                assert_eq!(net, "240.00 EUR");
                assert_eq!(s["adjustment"], "-10.00 EUR");
            }
            9 => {
                assert_eq!(s["energy_charge"], "150.00 EUR");
                assert_eq!(s["supply_shortfall"], "3 t");
                assert_eq!(s["supply_penalty"], "15.00 EUR");
                assert_eq!(s["offtake_penalty"], "0.00 EUR");
                assert_eq!(net, "135.00 EUR");
            }
            19 => {
                assert_eq!(s["energy_charge"], "125.00 EUR");
                assert_eq!(s["supply_penalty"], "0.00 EUR");
                assert_eq!(s["offtake_shortfall"], "4 t");
                assert_eq!(s["offtake_penalty"], "16.00 EUR");
                assert_eq!(net, "141.00 EUR");
            }
            _ => assert_eq!(net, "250.00 EUR", "day {day}"),
        }
        let avoided = match day {
            9 => "1020 kg",
            19 => "850 kg",
            _ => "1700 kg",
        };
        assert_eq!(s["avoided_co2"], avoided, "day {day}");
        assert_eq!(s["band"], serde_json::json!(["9 t", "11 t"]));
    }
    // Day 3's availability is the first reading, not the rejected repeat.
    assert_eq!(statements[3]["availability"], "10 t");
    let table = cli.ok(None, &["statement", "--firm", "firm-1"]);
    assert!(table.contains("30 statements; net 7266.00 EUR"), "{table}");

    // firm-1 pays 7000.00; firm-0 acknowledges it.
    cli.submit(
        &op0,
        &[
            "pay", "ack", "--payer", "firm-1", "--payee", "firm-0", "--amount", "7000.00",
        ],
    );

    // The pool's period 0 is over: split it.
    cli.submit(&admin(3), &["pool", "split", &pool, "0"]);
    let shown = cli.json(None, &["pool", "show", &pool]);
    assert_eq!(shown["active"], true);
    let split: Vec<(String, String)> = shown["periods"][0]["split"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (text(&p["member"]).into(), text(&p["amount"]).into()))
        .collect();
    assert_eq!(
        split,
        [
            ("firm-2".into(), "480.00 EUR".into()),
            ("firm-3".into(), "320.00 EUR".into())
        ]
    );

    // Balances and obligations.
    let balances = cli.json(None, &["balances"]);
    let balance = |account: &str| {
        balances["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["account"] == account)
            .map(|b| text(&b["balance"]).to_string())
            .unwrap_or_else(|| "0.00 EUR".into())
    };
    assert_eq!(balance("firm-0"), "266.00 EUR");
    assert_eq!(balance("firm-1"), "-266.00 EUR");
    assert_eq!(balance("firm-2"), "-520.00 EUR");
    assert_eq!(balance("firm-3"), "520.00 EUR");
    assert_eq!(balance(&format!("pool:{pool}")), "0.00 EUR");
    assert_eq!(balance("hub"), "0.00 EUR");
    let owed: Vec<(String, String, String)> = balances["obligations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                text(&o["debtor"]).into(),
                text(&o["creditor"]).into(),
                text(&o["amount"]).into(),
            )
        })
        .collect();
    assert!(
        owed.contains(&("firm-1".into(), "firm-0".into(), "266.00 EUR".into())),
        "{owed:?}"
    );
    let table = cli.ok(None, &["balances", "--account", "firm-1"]);
    assert!(
        table.contains("-266.00 EUR") && table.contains("firm-0"),
        "{table}"
    );

    // Avoided CO2.
    let co2 = cli.json(None, &["co2", "--by-kind"]);
    assert_eq!(co2["network_g"], 49_470_000u64, "{co2}");
    let grams = |list: &str, field: &str, name: &str| {
        co2[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f[field] == name)
            .map(|f| f["grams"].as_u64().unwrap())
            .unwrap_or(0)
    };
    assert_eq!(grams("firms", "firm", "firm-0"), 49_470_000);
    assert_eq!(grams("firms", "firm", "firm-1"), 49_470_000);
    assert_eq!(grams("firms", "firm", "firm-2"), 0);
    assert_eq!(grams("kinds", "kind", "steam"), 49_470_000);
    assert_eq!(grams("kinds", "kind", "district-heat"), 0);
    let table = cli.ok(None, &["co2"]);
    assert!(table.contains("49470 kg"), "{table}");
}
