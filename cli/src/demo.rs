//! `symbiont demo`: a season of an industrial park on a local network of
//! four validator processes, played through the gRPC API the CLI uses.
//!
//! The park is deploy/genesis/kalundborg.toml with fresh keys. The script:
//! the power station (orsted) offers steam, district heat and gypsum;
//! pharma (novo), the utility (forsyning) and the plasterboard plant
//! (gyproc) take the offers; contracts with penalties follow, arbitrated by
//! the symbiosis centre, which also runs a pool for a shared heat-recovery
//! loop. Each day of the season the supplier declares availability and its
//! meter the delivered quantities, with a boiler trip (a supply shortfall)
//! and a day pharma cannot take its steam (an off-take failure). Midway one
//! validator is killed with SIGKILL and started again while the park keeps
//! committing. Then every day is settled, payments are acknowledged, the
//! pool is split, and the demo prints statements, balances and avoided
//! CO2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::Keypair;
use symbiont_contracts::kinds::{Account, ContractTerms, ListingTerms};
use symbiont_contracts::settlement::SettlementTerms;
use symbiont_contracts::tx::{KeyRole, TxKind};
use symbiont_proto::v1 as pb;

use crate::client::{self, Client, Global, Outcome, connect, refused};
use crate::common::{Money, Row, table};
use crate::output::outln;
use crate::park::Park;
use crate::units::format_quantity;
use crate::units::now_ms;

/// The park the demo runs: the example genesis (its keys are replaced).
const GENESIS: &str = include_str!("../../deploy/genesis/kalundborg.toml");

/// The options of `symbiont demo` (its help is in main.rs).
#[derive(Args)]
pub struct DemoArgs {
    /// Leave the park running at the end, and print how to talk to it.
    #[arg(long)]
    keep: bool,
    /// A short season (6 days of 3 s instead of 12), for CI.
    #[arg(long)]
    short: bool,
    /// Where to put the park (default: a new directory under the system's
    /// temporary directory). It must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The validator killed and restarted midway.
const VICTIM: &str = "refinery";
/// The validator the demo talks to.
const GATEWAY: &str = "asnaes";

struct Stream {
    name: &'static str,
    consumer: &'static str,
    kind: &'static str,
    /// Per day, thousandths of the unit.
    committed: u64,
    price: i64,
    tolerance_bp: u16,
    supply_penalty: u64,
    offtake_penalty: u64,
}

/// The season's three streams, all supplied by the power station.
const SUPPLIER: &str = "orsted";
const STREAMS: [Stream; 3] = [
    Stream {
        name: "steam to pharma",
        consumer: "novo",
        kind: "steam",
        committed: 40_000,
        price: 18_000,
        tolerance_bp: 1_000,
        supply_penalty: 5_000,
        offtake_penalty: 3_000,
    },
    Stream {
        name: "district heat to the utility",
        consumer: "forsyning",
        kind: "district-heat",
        committed: 120_000,
        price: 25_000,
        tolerance_bp: 500,
        supply_penalty: 4_000,
        offtake_penalty: 2_000,
    },
    Stream {
        name: "gypsum to the plasterboard plant",
        consumer: "gyproc",
        kind: "gypsum",
        committed: 15_000,
        price: 4_000,
        tolerance_bp: 1_000,
        supply_penalty: 0,
        offtake_penalty: 1_000,
    },
];

/// Day `day`'s (availability, delivered) of stream `s`: as committed, but
/// for a boiler trip on day 3 (steam: 25 t made, 25 t taken) and pharma's
/// line stop on day `days - 2` (40 t made, 20 t taken).
fn readings(s: usize, day: u32, days: u32) -> (u64, u64) {
    let committed = STREAMS[s].committed;
    match (s, day) {
        (0, 3) => (25_000, 25_000),
        (0, d) if d == days - 2 => (40_000, 20_000),
        _ => (committed, committed),
    }
}

struct Demo {
    started: Instant,
    client: Client,
    money: Money,
    timeout: Duration,
}

impl Demo {
    fn say(&self, text: impl AsRef<str>) -> Result<()> {
        outln!(
            "[{:>5.1}s] {}",
            self.started.elapsed().as_secs_f64(),
            text.as_ref()
        )?;
        Ok(())
    }

    /// Submits `kinds` signed by `key` in order and waits for all; every
    /// one must apply. Returns their tx ids.
    async fn submit(&self, key: &Keypair, kinds: Vec<TxKind>) -> Result<Vec<Hash>> {
        self.submit_rows(
            key,
            kinds
                .into_iter()
                .map(|kind| Row {
                    label: String::new(),
                    kind,
                    not_before_ms: 0,
                })
                .collect(),
        )
        .await
    }

    async fn submit_rows(&self, key: &Keypair, rows: Vec<Row>) -> Result<Vec<Hash>> {
        let mut client = self.client.clone();
        let outcomes = client::submit_all(&mut client, key, rows, self.timeout, |_| ()).await?;
        outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Applied { tx_id, .. } => Ok(Hash(client::parse_id(&tx_id)?)),
                other => bail!("the demo's transaction did not apply: {}", other.sentence()),
            })
            .collect()
    }

    /// Every balance and obligation (a park's few fit one page).
    async fn balances(&self) -> Result<pb::BalancesResponse> {
        let mut client = self.client.clone();
        Ok(client
            .query
            .balances(pb::BalancesRequest {
                account: None,
                page_size: 1000,
                page_token: Vec::new(),
            })
            .await
            .map_err(refused)?
            .into_inner())
    }

    async fn height(&self) -> Result<u64> {
        let mut client = self.client.clone();
        Ok(client
            .node
            .status(pb::StatusRequest {})
            .await
            .map_err(refused)?
            .into_inner()
            .height)
    }
}

fn key_of(path: &Path) -> Result<Keypair> {
    symbiont_node::keyfile::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn run(args: DemoArgs, global: &Global) -> Result<()> {
    let dir = crate::park::run_dir(args.dir.as_deref(), "demo")?;
    let (days, day_ms) = if args.short { (6, 3_000) } else { (12, 3_000) };
    let mut park = Park::create(&dir, GENESIS, args.keep)?;
    let validators: Vec<usize> = (0..park.nodes.len())
        .filter(|&i| park.nodes[i].validator)
        .collect();
    outln!(
        "Symbiont demo: a season of {days} days ({} s each) at the Kalundborg park, on {} validator processes",
        day_ms / 1000,
        validators.len()
    )?;
    outln!("  park directory  {}", park.dir.display())?;
    for &i in &validators {
        park.start(i)?;
    }
    let result = client::runtime()?.block_on(season(&mut park, days, day_ms, global));
    if let Err(error) = &result {
        outln!(
            "the demo failed: {error:#}\nthe nodes' logs are in {}/<node>/node.log",
            park.dir.display()
        )?;
    }
    result?;
    if args.keep {
        let gateway = &park.nodes[park.index(GATEWAY)?];
        outln!()?;
        outln!(
            "The park keeps running (processes {:?}). Talk to it:",
            park.pids()
        )?;
        outln!("  export SYMBIONT_NODE={}", gateway.grpc)?;
        outln!("  symbiont status")?;
        outln!("  symbiont contract list")?;
        outln!("  symbiont statement --firm novo")?;
        outln!("  symbiont balances; symbiont co2 --by-kind")?;
        outln!(
            "  symbiont --key {} market offer --kind co2 --quantity 5 --price 120.00 --periods 10 --period 1d --delivery-point \"pipe 3\"",
            park.admin_key("equinor").display()
        )?;
        outln!("  symbiont events --from 1")?;
        outln!("  curl http://{}/metrics", gateway.metrics_address)?;
        outln!(
            "Firms' admin keys: {}/firms/<firm>.pem. Stop the park: kill {}",
            park.dir.display(),
            park.pids()
                .iter()
                .map(|(_, pid)| pid.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        )?;
    } else if args.dir.is_none() {
        drop(park);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

async fn season(park: &mut Park, days: u32, day_ms: u64, global: &Global) -> Result<()> {
    let started = Instant::now();
    let gateway = park.index(GATEWAY)?;
    park.wait_for_height(gateway, 1, Duration::from_secs(60))
        .await
        .context("the park did not start")?;
    let mut client = connect(&park.nodes[gateway].grpc).await?;
    let money = Money(crate::market::currency(&mut client).await?);
    let demo = Demo {
        started,
        client,
        money,
        timeout: global.timeout.max(Duration::from_secs(60)),
    };
    demo.say(format!(
        "the park commits blocks: height {}",
        demo.height().await?
    ))?;
    // The firms' admin keys, read once (the park is borrowed to restart
    // a validator later).
    let admins: BTreeMap<String, Keypair> = ["orsted", "novo", "forsyning", "gyproc", "symbiosis"]
        .iter()
        .map(|firm| Ok((firm.to_string(), key_of(&park.admin_key(firm))?)))
        .collect::<Result<_>>()?;
    let admin = |firm: &str| {
        admins
            .get(firm)
            .with_context(|| format!("no admin key of {firm}"))
    };
    let supplier = key_of(&park.admin_key(SUPPLIER))?;

    // Keys: the power station's billing meter and an operator key for its
    // availability declarations.
    let meter = symbiont_node::keyfile::generate()?;
    symbiont_node::keyfile::write(&park.dir.join("firms/orsted-meter.pem"), &meter, false)?;
    let operator = symbiont_node::keyfile::generate()?;
    symbiont_node::keyfile::write(&park.dir.join("firms/orsted-ops.pem"), &operator, false)?;
    demo.submit(
        &supplier,
        vec![
            TxKind::AuthorizeKey {
                firm: SUPPLIER.into(),
                key: meter.public(),
                role: KeyRole::Meter,
            },
            TxKind::AuthorizeKey {
                firm: SUPPLIER.into(),
                key: operator.public(),
                role: KeyRole::Operator,
            },
        ],
    )
    .await?;
    demo.say("orsted's admin authorizes a billing meter key and an operator key")?;

    // The market: three offers, each taken by its consumer.
    let listings: Vec<ListingTerms> = STREAMS
        .iter()
        .map(|s| ListingTerms {
            kind: s.kind.into(),
            quantity_per_period: s.committed,
            price: s.price,
            delivery_point: format!("{} gate", s.consumer),
            quality: BTreeMap::new(),
            period_ms: day_ms,
            periods: days,
            valid_until_ms: now_ms() + 3_600_000,
        })
        .collect();
    let offers = demo
        .submit(
            &supplier,
            listings
                .iter()
                .map(|l| TxKind::PostOffer { listing: l.clone() })
                .collect(),
        )
        .await?;
    for s in &STREAMS {
        demo.say(format!(
            "orsted offers {} {}/day at {}/unit",
            s.kind,
            format_quantity(s.committed, unit_of(s.kind)),
            demo.money.show(s.price)
        ))?;
    }
    let accepting = Instant::now();
    for (s, offer) in STREAMS.iter().zip(&offers) {
        demo.submit(admin(s.consumer)?, vec![TxKind::Accept { listing: *offer }])
            .await?;
    }
    // Day 0 starts once the contracts can be proposed and countersigned
    // (four submissions, each about as long as an accept took).
    let submit_ms = accepting.elapsed().as_millis() as u64 / 3;
    let start_ms = now_ms() + 5 * submit_ms + 1_000;
    demo.say("novo, forsyning and gyproc take the offers")?;

    // Contracts on the offers' terms, with penalties, arbitrated by the
    // symbiosis centre.
    let contracts = demo
        .submit(
            &supplier,
            STREAMS
                .iter()
                .zip(&offers)
                .map(|(s, offer)| TxKind::ProposeContract {
                    terms: ContractTerms {
                        supplier: SUPPLIER.into(),
                        consumer: s.consumer.into(),
                        kind: s.kind.into(),
                        delivery_point: format!("{} gate", s.consumer),
                        quality: BTreeMap::new(),
                        settlement: SettlementTerms {
                            price: s.price,
                            committed: s.committed,
                            tolerance_bp: s.tolerance_bp,
                            supply_penalty: s.supply_penalty,
                            offtake_penalty: s.offtake_penalty,
                            excess_price: None,
                            penalty_cap: None,
                            meter_tolerance: None,
                        },
                        start_ms,
                        period_ms: day_ms,
                        periods: days,
                        billing_meter: meter.public(),
                        check_meter: None,
                        arbiter: Some("symbiosis".into()),
                        listing: Some(*offer),
                        gain_pool: None,
                    },
                })
                .collect(),
        )
        .await?;
    for (s, contract) in STREAMS.iter().zip(&contracts) {
        demo.submit(
            admin(s.consumer)?,
            vec![TxKind::Countersign {
                contract: *contract,
            }],
        )
        .await?;
    }
    for s in &STREAMS {
        demo.say(format!(
            "contract signed: {}, ±{}%, supply penalty {}/unit, off-take penalty {}/unit",
            s.name,
            s.tolerance_bp / 100,
            demo.money.show(s.supply_penalty as i64),
            demo.money.show(s.offtake_penalty as i64)
        ))?;
    }

    // The season: readings as each day ends, a validator killed midway.
    let victim = park.index(VICTIM)?;
    // The pool, created while the season runs: its id and its end.
    let pool_id = std::cell::Cell::new(None);
    let day_end = |day: u32| start_ms + day_ms * (u64::from(day) + 1);
    // Availability is declared as the day starts, deliveries metered as it
    // ends; the ledger takes a reading until one day after its day's end.
    let rows = |kind: fn(Hash, u32, u64) -> TxKind, pick: fn((u64, u64)) -> u64, at_end: bool| {
        let mut rows = Vec::new();
        for day in 0..days {
            for (s, contract) in contracts.iter().enumerate() {
                rows.push(Row {
                    label: format!("day {day}"),
                    kind: kind(*contract, day, pick(readings(s, day, days))),
                    not_before_ms: day_end(day) - if at_end { 0 } else { day_ms },
                });
            }
        }
        rows
    };
    let availability = rows(
        |contract, period, quantity| TxKind::RecordAvailability {
            contract,
            period,
            quantity,
        },
        |(a, _)| a,
        false,
    );
    let delivery = rows(
        |contract, period, quantity| TxKind::RecordDelivery {
            contract,
            period,
            quantity,
        },
        |(_, d)| d,
        true,
    );
    demo.say(format!(
        "the season begins: {days} days; each day orsted declares what it makes available and its meter measures what was delivered"
    ))?;
    let feeds = async {
        let (a, d) = tokio::join!(
            demo.submit_rows(&operator, availability),
            demo.submit_rows(&meter, delivery)
        );
        a.and(d)
    };
    let narrate = async {
        // The pool: a heat-recovery loop the power station, pharma and the
        // utility share 40/30/30, run by the symbiosis centre. Its one period
        // runs from now until the season's end.
        let members = [("orsted", 4_000u16), ("novo", 3_000), ("forsyning", 3_000)];
        let pool_start = now_ms();
        let pool_period = day_end(days - 1).saturating_sub(pool_start).max(1);
        let pool = demo
            .submit(
                admin("symbiosis")?,
                vec![TxKind::CreatePool {
                    name: "heat-recovery loop".into(),
                    keys: members.iter().map(|(f, k)| (f.to_string(), *k)).collect(),
                    start_ms: pool_start,
                    period_ms: pool_period,
                }],
            )
            .await?[0];
        for (firm, _) in &members {
            demo.submit(admin(firm)?, vec![TxKind::JoinPool { pool }])
                .await?;
        }
        demo.say("the symbiosis centre creates a pool for the heat-recovery loop (orsted 40%, novo 30%, forsyning 30%); all three join")?;

        // What members collected and paid for the loop.
        demo.submit(
            &supplier,
            vec![TxKind::PostPoolAmount {
                pool,
                period: 0,
                amount: 1_200_000,
            }],
        )
        .await?;
        demo.submit(
            admin("forsyning")?,
            vec![TxKind::PostPoolAmount {
                pool,
                period: 0,
                amount: -300_000,
            }],
        )
        .await?;
        demo.say(format!(
            "pool: orsted posts {} of heat sold from the loop, forsyning {} of pump maintenance",
            demo.money.show(1_200_000),
            demo.money.show(-300_000)
        ))?;
        pool_id.set(Some((pool, pool_start + pool_period)));
        for day in 0..days {
            crate::common::sleep_until_ms(day_end(day)).await;
            let note = match day {
                3 => " (a boiler trip: orsted makes only 25 t of steam)",
                d if d == days - 2 => " (novo's line stops: it takes 20 t of its 40 t of steam)",
                _ => "",
            };
            demo.say(format!(
                "day {day} ends{note}; height {}",
                demo.height().await?
            ))?;
            if day == days / 2 - 1 {
                park.kill(victim)?;
                demo.say(format!("validator {VICTIM} killed (SIGKILL)"))?;
            }
            if day == days / 2 {
                let tip = demo.height().await?;
                park.start(victim)?;
                let restarted = Instant::now();
                park.wait_for_height(victim, tip, Duration::from_secs(60))
                    .await?;
                demo.say(format!(
                    "validator {VICTIM} restarted: back at height {tip} in {:.1} s; the park committed without it",
                    restarted.elapsed().as_secs_f64()
                ))?;
            }
        }
        anyhow::Ok(())
    };
    let (fed, narrated) = tokio::join!(feeds, narrate);
    fed?;
    narrated?;
    let (pool, pool_end) = pool_id.get().context("no pool")?;
    demo.say(format!(
        "all {} readings committed",
        2 * days * STREAMS.len() as u32
    ))?;

    // Settlement, payments, the pool's split.
    crate::common::sleep_until_ms(day_end(days - 1)).await;
    let mut settle = Vec::new();
    for contract in &contracts {
        for day in 0..days {
            settle.push(TxKind::SettlePeriod {
                contract: *contract,
                period: day,
            });
        }
    }
    let settled = settle.len();
    demo.submit(&supplier, settle).await?;
    demo.say(format!("orsted settles all {settled} contract days"))?;
    crate::common::sleep_until_ms(pool_end).await;
    demo.submit(&supplier, vec![TxKind::SplitPool { pool, period: 0 }])
        .await?;
    demo.say("the pool's season is split among its members")?;
    let owed = obligations(&demo).await?;
    let mut payments = Vec::new();
    for s in &STREAMS {
        let amount = owed
            .get(&(s.consumer.to_string(), SUPPLIER.to_string()))
            .copied()
            .unwrap_or(0);
        // The plasterboard plant pays half for now.
        let paid = if s.consumer == "gyproc" {
            amount / 2
        } else {
            amount
        };
        if paid > 0 {
            payments.push((s.consumer, paid));
        }
    }
    demo.submit(
        &supplier,
        payments
            .iter()
            .map(|(payer, amount)| TxKind::AcknowledgePayment {
                payer: Account::Firm(payer.to_string()),
                payee: Account::Firm(SUPPLIER.into()),
                amount: *amount,
            })
            .collect(),
    )
    .await?;
    for (payer, amount) in &payments {
        demo.say(format!(
            "orsted acknowledges {} paid by {payer}",
            demo.money.show(*amount)
        ))?;
    }
    report(&demo, &contracts, pool).await?;
    let (height, hash) = same_ledger(park).await?;
    demo.say(format!(
        "every validator holds the same ledger: block {height} is {} on all {}",
        &hash[..16],
        park.nodes.iter().filter(|n| n.validator).count()
    ))?;
    audit_ledger(&demo, park).await?;
    demo.say(format!("done in {:.0} s", started.elapsed().as_secs_f64()))?;
    Ok(())
}

fn unit_of(kind: &str) -> &'static str {
    match kind {
        "district-heat" => "MWh",
        _ => "t",
    }
}

/// What each firm owes each other firm (debtor, creditor) → minor units.
async fn obligations(demo: &Demo) -> Result<BTreeMap<(String, String), i64>> {
    let answer = demo.balances().await?;
    Ok(answer
        .obligations
        .iter()
        .map(|o| {
            (
                (
                    crate::common::account_text(&o.debtor),
                    crate::common::account_text(&o.creditor),
                ),
                o.amount,
            )
        })
        .collect())
}

/// Exports the ledger from the gateway (`symbiont export`), audits the
/// file offline (`symbiont audit --json`) and checks that the auditor's
/// balances are the network's. (The two commands run as this program's
/// child processes, blocking this thread: nothing else runs by then.)
async fn audit_ledger(demo: &Demo, park: &Park) -> Result<()> {
    let file = park.dir.join("ledger.symbexp");
    let me = std::env::current_exe()?;
    let gateway = &park.nodes[park.index(GATEWAY)?];
    let export = std::process::Command::new(&me)
        .args(["--node", &gateway.grpc, "export", "--out"])
        .arg(&file)
        .output()?;
    if !export.status.success() {
        bail!(
            "symbiont export failed: {}",
            String::from_utf8_lossy(&export.stderr).trim()
        );
    }
    let audited = Instant::now();
    let audit = std::process::Command::new(&me)
        .args(["--json", "audit"])
        .arg(&file)
        .output()?;
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout).with_context(|| {
        format!(
            "symbiont audit said: {}",
            String::from_utf8_lossy(&audit.stderr).trim()
        )
    })?;
    if !audit.status.success() || report["ok"] != true {
        bail!("the audit of the exported ledger failed: {report}");
    }
    let report = &report["report"];
    // The auditor's balances against the network's answers.
    let answer = demo.balances().await?;
    for firm in report["firms"]
        .as_array()
        .context("no firms in the audit")?
    {
        let name = firm["firm"].as_str().unwrap_or_default();
        let network = answer
            .balances
            .iter()
            .find(|b| crate::common::account_text(&b.account) == name)
            .map_or(0, |b| b.balance);
        if firm["balance"].as_i64() != Some(network) {
            bail!(
                "the audit gives {name} a balance of {}, the network {network}",
                firm["balance"]
            );
        }
    }
    demo.say(format!(
        "exported {} blocks to {}; `symbiont audit` replayed them offline in {:.1} s: {} transactions, {} signatures, every certificate and app hash check out, and its balances equal the network's",
        report["counts"]["blocks"],
        file.display(),
        audited.elapsed().as_secs_f64(),
        report["counts"]["txs"],
        report["counts"]["signatures"]
    ))?;
    Ok(())
}

/// The height every validator has reached and its block hash, the same at
/// every validator (an error names the one that differs).
async fn same_ledger(park: &Park) -> Result<(u64, String)> {
    let mut tips = Vec::new();
    for node in park.nodes.iter().filter(|n| n.validator) {
        let mut client = connect(&node.grpc).await?;
        let status = client
            .node
            .status(pb::StatusRequest {})
            .await
            .map_err(refused)?
            .into_inner();
        tips.push((node, client, status.height));
    }
    let height = tips
        .iter()
        .map(|(_, _, h)| *h)
        .min()
        .context("no validator")?;
    let mut seen: Option<String> = None;
    for (node, mut client, _) in tips {
        let mut stream = client
            .stream
            .blocks(pb::StreamBlocksRequest {
                from_height: height,
            })
            .await
            .map_err(refused)?
            .into_inner();
        let block = stream
            .message()
            .await
            .map_err(refused)?
            .with_context(|| format!("{} streamed no block {height}", node.name))?;
        let hash = hex::encode(&block.block_hash);
        match &seen {
            Some(first) if *first != hash => {
                bail!(
                    "{} holds block {height} {hash}, another validator {first}",
                    node.name
                )
            }
            _ => seen = Some(hash),
        }
    }
    Ok((height, seen.context("no validator")?))
}

async fn report(demo: &Demo, contracts: &[Hash], pool: Hash) -> Result<()> {
    let mut client = demo.client.clone();
    let money = &demo.money;
    // The pool by its name: its id is 64 hex digits.
    let pool_text = format!("pool:{}", hex::encode(pool.0));
    let account = |a: &Option<pb::Account>| {
        let text = crate::common::account_text(a);
        if text == pool_text {
            "the heat-recovery pool".to_string()
        } else {
            text
        }
    };
    outln!()?;
    outln!("Statements, per contract (the season's days summed)")?;
    let mut rows = Vec::new();
    for (s, contract) in STREAMS.iter().zip(contracts) {
        let answer = client
            .query
            .list_statements(pb::ListStatementsRequest {
                firm: String::new(),
                contract: contract.0.to_vec(),
                page_size: 1000,
                page_token: Vec::new(),
            })
            .await
            .map_err(refused)?
            .into_inner();
        let st = &answer.statements;
        let sum = |f: fn(&pb::Statement) -> i64| st.iter().map(f).sum::<i64>();
        let delivered: u64 = st.iter().map(|s| s.delivered).sum();
        rows.push(vec![
            s.name.to_string(),
            st.len().to_string(),
            format_quantity(delivered, unit_of(s.kind)),
            money.show(sum(|s| s.energy_charge)),
            money.show(-sum(|s| s.supply_penalty)),
            money.show(sum(|s| s.offtake_penalty)),
            money.show(sum(|s| s.net)),
        ]);
    }
    table(
        &[
            "STREAM",
            ">DAYS",
            ">DELIVERED",
            ">CHARGE",
            ">SUPPLY PEN.",
            ">OFFTAKE PEN.",
            ">NET OWED",
        ],
        &rows,
    )?;
    let answer = demo.balances().await?;
    outln!()?;
    outln!("Balances after the acknowledged payments (+: owed to the account, -: owed by it)")?;
    let rows: Vec<Vec<String>> = answer
        .balances
        .iter()
        .filter(|b| b.balance != 0)
        .map(|b| {
            vec![
                crate::common::account_text(&b.account),
                money.show(b.balance),
            ]
        })
        .collect();
    table(&["ACCOUNT", ">BALANCE"], &rows)?;
    outln!()?;
    outln!("Open obligations (not yet acknowledged as paid)")?;
    let rows: Vec<Vec<String>> = answer
        .obligations
        .iter()
        .map(|o| {
            vec![
                account(&o.debtor),
                account(&o.creditor),
                money.show(o.amount),
            ]
        })
        .collect();
    table(&["DEBTOR", "OWES", ">AMOUNT"], &rows)?;
    let co2 = client
        .query
        .avoided_co2(pb::AvoidedCo2Request {
            firm: String::new(),
            by_kind: true,
        })
        .await
        .map_err(refused)?
        .into_inner();
    outln!()?;
    outln!(
        "Avoided CO2e: {} on the network",
        format_quantity(co2.network_g / 1000, "t")
    )?;
    let rows: Vec<Vec<String>> = co2
        .kinds
        .iter()
        .filter(|k| k.grams > 0)
        .map(|k| vec![k.kind.clone(), format_quantity(k.grams / 1000, "t")])
        .collect();
    table(&["STREAM KIND", ">AVOIDED CO2e"], &rows)?;
    let rows: Vec<Vec<String>> = co2
        .firms
        .iter()
        .filter(|f| f.grams > 0)
        .map(|f| vec![f.firm.clone(), format_quantity(f.grams / 1000, "t")])
        .collect();
    table(&["FIRM", ">AVOIDED CO2e"], &rows)?;
    outln!()?;
    Ok(())
}
