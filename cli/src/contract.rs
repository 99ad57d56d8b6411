//! `symbiont contract`: propose, countersign, show, list and terminate
//! contracts.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use symbiont_contracts::settlement::SettlementTerms;
use symbiont_contracts::tx::{ContractTerms, TxKind};
use symbiont_proto::v1 as pb;

use crate::client::{self, Global, connect, refused};
use crate::common::{Money, all_pages, id, money, submit_one, table};
use crate::firm::public_key;
use crate::output::outln;
use crate::status::key_text;
use crate::units::{
    format_decimal, format_duration_ms, format_quantity, format_time_ms, parse_duration_ms,
    parse_percent_bp, parse_quantity, parse_time_ms,
};

#[derive(Subcommand)]
pub enum ContractCommand {
    /// Propose a contract to another firm, signed with an operator key
    /// (--key) of the supplier or the consumer; it binds once the other
    /// party countersigns (`contract sign`). The contract's id is the
    /// transaction's id. With --listing, the parties, kind, quantity,
    /// price, schedule and quality are taken from that accepted listing;
    /// any option given overrides them.
    ///
    /// Example: symbiont --key ops.pem contract propose --supplier power
    /// --consumer pharma --kind steam --committed 100 --price 90.00
    /// --tolerance 10% --supply-penalty 30.00 --offtake-penalty 20.00
    /// --start 2027-01-01 --period 1d --periods 31
    /// --billing-meter ed25519:3b6a… --arbiter hub
    Propose(Box<ProposeArgs>),
    /// Countersign a contract the other party proposed, signed with an
    /// operator key (--key) of your firm: it becomes active.
    ///
    /// Example: symbiont --key pharma-ops.pem contract sign 9c2e…41
    Sign {
        /// The contract's id (64 hex digits).
        contract: String,
    },
    /// Show a contract: its terms, and each period with its readings,
    /// statement and dispute.
    ///
    /// Example: symbiont contract show 9c2e…41
    Show {
        /// The contract's id.
        contract: String,
    },
    /// List contracts.
    ///
    /// Example: symbiont contract list --firm pharma --status active
    List {
        /// Only contracts where this firm is supplier, consumer or arbiter.
        #[arg(long)]
        firm: Option<String>,
        /// Only "proposed", "active", "terminated" or "withdrawn" contracts.
        #[arg(long)]
        status: Option<String>,
    },
    /// Ask to end a contract (signed with an operator key, --key): it ends
    /// when both parties asked, or at once when the arbiter asks. Periods
    /// that began before the end are kept; later ones are void.
    ///
    /// Example: symbiont --key ops.pem contract terminate 9c2e…41
    Terminate {
        /// The contract's id.
        contract: String,
    },
}

#[derive(Args)]
pub struct ProposeArgs {
    /// An accepted listing to take the terms from (64 hex digits).
    #[arg(long)]
    listing: Option<String>,
    /// The supplying firm's id.
    #[arg(long)]
    supplier: Option<String>,
    /// The consuming firm's id.
    #[arg(long)]
    consumer: Option<String>,
    /// The resource kind's id.
    #[arg(long)]
    kind: Option<String>,
    /// Committed quantity per period, in the kind's unit (e.g. 100 or 12.5).
    #[arg(long)]
    committed: Option<String>,
    /// Price per whole unit in the network's currency (negative: a gate
    /// fee the supplier pays).
    #[arg(long, allow_hyphen_values = true)]
    price: Option<String>,
    /// Tolerance band around the committed quantity, in percent (10%).
    #[arg(long, default_value = "0%")]
    tolerance: String,
    /// Owed by the supplier per unit it makes available short of the band.
    #[arg(long, default_value = "0")]
    supply_penalty: String,
    /// Owed by the consumer per unit it fails to take.
    #[arg(long, default_value = "0")]
    offtake_penalty: String,
    /// Price of units above the band (default: the price).
    #[arg(long, allow_hyphen_values = true)]
    excess_price: Option<String>,
    /// Upper bound on each penalty in one period, in the currency.
    #[arg(long)]
    penalty_cap: Option<String>,
    /// Largest difference between check and billing meter without a flag,
    /// in the kind's unit (default 0).
    #[arg(long)]
    meter_tolerance: Option<String>,
    /// When period 0 starts (block time): now+1h, 2027-01-01,
    /// 2027-01-01T06:00:00Z.
    #[arg(long)]
    start: String,
    /// Length of a period: 15m, 1h, 1d, ...
    #[arg(long)]
    period: Option<String>,
    /// Number of periods.
    #[arg(long)]
    periods: Option<u32>,
    /// The meter key whose readings are the delivered quantity: its public
    /// key (ed25519:…) or its key file.
    #[arg(long)]
    billing_meter: String,
    /// A second meter key whose readings are check readings.
    #[arg(long)]
    check_meter: Option<String>,
    /// The firm (usually the facilitator) that resolves disputes and may
    /// terminate the contract.
    #[arg(long)]
    arbiter: Option<String>,
    /// A gain-sharing pool of which the supplier is a member (its id).
    #[arg(long)]
    gain_pool: Option<String>,
    /// Where the resource changes hands.
    #[arg(long)]
    delivery_point: Option<String>,
    /// A quality field of the kind, NAME=INTEGER (repeatable).
    #[arg(long, value_name = "NAME=INTEGER")]
    quality: Vec<String>,
}

pub fn run(command: ContractCommand, global: &Global) -> Result<()> {
    match command {
        ContractCommand::Propose(args) => propose(global, *args),
        ContractCommand::Sign { contract } => {
            let contract = id(&contract)?;
            submit_one(global, TxKind::Countersign { contract }, |_| {
                outln!("contract {contract} is active")?;
                Ok(())
            })
        }
        ContractCommand::Terminate { contract } => {
            let contract = id(&contract)?;
            submit_one(global, TxKind::Terminate { contract }, |_| {
                outln!(
                    "termination recorded: `symbiont contract show {contract}` tells whether it has ended"
                )?;
                Ok(())
            })
        }
        ContractCommand::Show { contract } => client::runtime()?.block_on(show(global, &contract)),
        ContractCommand::List { firm, status } => {
            client::runtime()?.block_on(list(global, firm, status))
        }
    }
}

pub fn parse_quality(fields: &[String]) -> Result<BTreeMap<String, i64>> {
    let mut quality = BTreeMap::new();
    for field in fields {
        let Some((name, value)) = field.split_once('=') else {
            bail!("--quality {field:?}: NAME=INTEGER expected");
        };
        let value: i64 = value
            .parse()
            .with_context(|| format!("--quality {field:?}: the value is not an integer"))?;
        quality.insert(name.to_string(), value);
    }
    Ok(quality)
}

fn propose(global: &Global, args: ProposeArgs) -> Result<()> {
    let key = global.keypair()?;
    let billing_meter = public_key(&args.billing_meter).context("--billing-meter")?;
    let check_meter = args
        .check_meter
        .as_deref()
        .map(public_key)
        .transpose()
        .context("--check-meter")?;
    let start_ms = parse_time_ms(&args.start).context("--start")?;
    let outcome = client::runtime()?.block_on(async {
        let mut client = connect(&global.node).await?;
        let money = money(&mut client).await?;
        let listing = match &args.listing {
            Some(text) => {
                let listing_id = id(text)?;
                let (listings, ()) = all_pages(|page_token| {
                    let mut query = client.query.clone();
                    async move {
                        let answer = query
                            .list_listings(pb::ListListingsRequest {
                                page_size: 1000,
                                page_token,
                                ..Default::default()
                            })
                            .await
                            .map_err(refused)?
                            .into_inner();
                        Ok((answer.listings, answer.next_page_token, ()))
                    }
                })
                .await?;
                let found = listings
                    .into_iter()
                    .find(|l| l.id == listing_id.0)
                    .with_context(|| format!("no listing {text} on the ledger"))?;
                Some((listing_id, found))
            }
            None => None,
        };
        let from_listing = |f: fn(&pb::Listing) -> String| listing.as_ref().map(|(_, l)| f(l));
        let (listed_supplier, listed_consumer) = match listing.as_ref() {
            Some((_, l)) if l.side == "offer" => {
                (Some(l.owner.clone()), Some(l.accepted_by.clone()))
            }
            Some((_, l)) => (Some(l.accepted_by.clone()), Some(l.owner.clone())),
            None => (None, None),
        };
        let need = |value: Option<String>, flag: &str| {
            value.with_context(|| format!("{flag} is needed (or --listing to take it from)"))
        };
        let supplier = need(args.supplier.clone().or(listed_supplier), "--supplier")?;
        let consumer = need(args.consumer.clone().or(listed_consumer), "--consumer")?;
        let kind = need(
            args.kind.clone().or(from_listing(|l| l.kind.clone())),
            "--kind",
        )?;
        let committed = match (&args.committed, &listing) {
            (Some(text), _) => parse_quantity(text).context("--committed (in the kind's unit)")?,
            (None, Some((_, l))) => l.quantity_per_period,
            (None, None) => bail!("--committed is needed (or --listing to take it from)"),
        };
        let price = match (&args.price, &listing) {
            (Some(text), _) => money.parse(text, "--price")?,
            (None, Some((_, l))) => l.price,
            (None, None) => bail!("--price is needed (or --listing to take it from)"),
        };
        let period_ms = match (&args.period, &listing) {
            (Some(text), _) => parse_duration_ms(text).context("--period")?,
            (None, Some((_, l))) => l.period_ms,
            (None, None) => bail!("--period is needed (or --listing to take it from)"),
        };
        let periods = match (args.periods, &listing) {
            (Some(n), _) => n,
            (None, Some((_, l))) => l.periods,
            (None, None) => bail!("--periods is needed (or --listing to take it from)"),
        };
        let quality = if args.quality.is_empty() {
            listing
                .as_ref()
                .map(|(_, l)| l.quality.clone().into_iter().collect())
                .unwrap_or_default()
        } else {
            parse_quality(&args.quality)?
        };
        let settlement = SettlementTerms {
            price,
            committed,
            tolerance_bp: parse_percent_bp(&args.tolerance).context("--tolerance")?,
            supply_penalty: penalty(&money, &args.supply_penalty, "--supply-penalty")?,
            offtake_penalty: penalty(&money, &args.offtake_penalty, "--offtake-penalty")?,
            excess_price: args
                .excess_price
                .as_deref()
                .map(|t| money.parse(t, "--excess-price"))
                .transpose()?,
            penalty_cap: args
                .penalty_cap
                .as_deref()
                .map(|t| penalty(&money, t, "--penalty-cap"))
                .transpose()?,
            meter_tolerance: args
                .meter_tolerance
                .as_deref()
                .map(|t| parse_quantity(t).context("--meter-tolerance"))
                .transpose()?,
        };
        let terms = ContractTerms {
            supplier,
            consumer,
            kind,
            delivery_point: args
                .delivery_point
                .clone()
                .or(from_listing(|l| l.delivery_point.clone()))
                .unwrap_or_default(),
            quality,
            settlement,
            start_ms,
            period_ms,
            periods,
            billing_meter,
            check_meter,
            arbiter: args.arbiter.clone(),
            listing: listing.as_ref().map(|(id, _)| *id),
            gain_pool: args.gain_pool.as_deref().map(id).transpose()?,
        };
        client::submit(
            &mut client,
            &key,
            TxKind::ProposeContract { terms },
            global.timeout,
        )
        .await
    })?;
    client::report(&outcome, global.json)?;
    if let client::Outcome::Applied { tx_id, .. } = &outcome
        && !global.json
    {
        outln!(
            "contract {tx_id} proposed: the other party countersigns with `symbiont contract sign {tx_id}`"
        )?;
    }
    Ok(())
}

fn penalty(money: &Money, text: &str, flag: &str) -> Result<u64> {
    let minor = money.parse(text, flag)?;
    u64::try_from(minor).with_context(|| format!("{flag} cannot be negative"))
}

/// The contract's terms as JSON, in units and currency.
fn contract_json(c: &pb::Contract, money: &Money) -> serde_json::Value {
    let s = c.settlement.unwrap_or_default();
    json!({
        "id": hex::encode(&c.id),
        "status": c.status,
        "supplier": c.supplier,
        "consumer": c.consumer,
        "proposer": c.proposer,
        "kind": c.kind,
        "delivery_point": c.delivery_point,
        "quality": c.quality,
        "committed_per_period": format_quantity(s.committed, &c.unit),
        "price_per_unit": money.show(s.price),
        "tolerance": format!("{}%", format_decimal(i128::from(s.tolerance_bp), 2)),
        "supply_penalty_per_unit": money.show(s.supply_penalty as i64),
        "offtake_penalty_per_unit": money.show(s.offtake_penalty as i64),
        "excess_price_per_unit": s.excess_price.map(|p| money.show(p)),
        "penalty_cap": s.penalty_cap.map(|p| money.show(p as i64)),
        "meter_tolerance": s.meter_tolerance.map(|q| format_quantity(q, &c.unit)),
        "start": format_time_ms(c.start_ms),
        "period": format_duration_ms(c.period_ms),
        "periods": c.periods,
        "billing_meter": key_text(&c.billing_meter),
        "check_meter": (!c.check_meter.is_empty()).then(|| key_text(&c.check_meter)),
        "arbiter": (!c.arbiter.is_empty()).then(|| c.arbiter.clone()),
        "listing": (!c.listing.is_empty()).then(|| hex::encode(&c.listing)),
        "gain_pool": (!c.gain_pool.is_empty()).then(|| hex::encode(&c.gain_pool)),
        "signed_at": (c.signed_at_ms > 0).then(|| format_time_ms(c.signed_at_ms)),
        "terminated_at": (c.terminated_at_ms > 0).then(|| format_time_ms(c.terminated_at_ms)),
        "terminate_requests": c.terminate_requests,
    })
}

async fn show(global: &Global, text: &str) -> Result<()> {
    let contract_id = id(text)?;
    let client = connect(&global.node).await?;
    let (periods, (currency, contract)) = all_pages(|page_token| {
        let mut query = client.query.clone();
        async move {
            let answer = query
                .get_contract(pb::GetContractRequest {
                    id: contract_id.0.to_vec(),
                    page_size: 1000,
                    page_token,
                })
                .await
                .map_err(refused)?
                .into_inner();
            Ok((
                answer.periods,
                answer.next_page_token,
                (answer.currency.unwrap_or_default(), answer.contract),
            ))
        }
    })
    .await?;
    let money = Money(currency);
    let contract = contract.context("the node's answer has no contract")?;
    let unit = contract.unit.clone();
    let quantity = |q: Option<u64>| q.map(|q| format_quantity(q, &unit)).unwrap_or("-".into());
    if global.json {
        let periods: Vec<_> = periods
            .iter()
            .map(|p| {
                json!({
                    "period": p.period,
                    "availability": p.availability.map(|q| format_quantity(q, &unit)),
                    "delivered": p.delivered.map(|q| format_quantity(q, &unit)),
                    "check": p.check.map(|q| format_quantity(q, &unit)),
                    "settled": p.statement.is_some(),
                    "net": p.statement.as_ref().map(|s| money.show(s.net)),
                    "dispute": p.dispute,
                    "dispute_by": p.dispute_by,
                    "dispute_reason": p.dispute_reason,
                    "dispute_adjustment": money.show(p.dispute_adjustment),
                })
            })
            .collect();
        let mut value = contract_json(&contract, &money);
        value["recorded_periods"] = json!(periods);
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    let value = contract_json(&contract, &money);
    for (key, field) in value.as_object().expect("an object") {
        let text = match field {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        outln!("{:<26}{text}", format!("{key}:"))?;
    }
    if periods.is_empty() {
        outln!("no period has readings yet")?;
        return Ok(());
    }
    outln!()?;
    let rows: Vec<Vec<String>> = periods
        .iter()
        .map(|p| {
            let start = contract.start_ms + u64::from(p.period) * contract.period_ms;
            vec![
                p.period.to_string(),
                format_time_ms(start),
                quantity(p.availability),
                quantity(p.delivered),
                quantity(p.check),
                p.statement
                    .as_ref()
                    .map(|s| money.show(s.net))
                    .unwrap_or_else(|| "not settled".into()),
                if p.dispute.is_empty() {
                    "-".into()
                } else {
                    format!("{} by {}", p.dispute, p.dispute_by)
                },
            ]
        })
        .collect();
    table(
        &[
            ">PERIOD",
            "STARTS",
            ">AVAILABLE",
            ">DELIVERED",
            ">CHECK",
            ">NET",
            "DISPUTE",
        ],
        &rows,
    )
}

async fn list(global: &Global, firm: Option<String>, status: Option<String>) -> Result<()> {
    let mut client = connect(&global.node).await?;
    let money = money(&mut client).await?;
    let (contracts, ()) = all_pages(|page_token| {
        let mut query = client.query.clone();
        let (firm, status) = (firm.clone(), status.clone());
        async move {
            let answer = query
                .list_contracts(pb::ListContractsRequest {
                    firm: firm.unwrap_or_default(),
                    status: status.unwrap_or_default(),
                    page_size: 1000,
                    page_token,
                })
                .await
                .map_err(refused)?
                .into_inner();
            Ok((answer.contracts, answer.next_page_token, ()))
        }
    })
    .await?;
    if global.json {
        let items: Vec<_> = contracts.iter().map(|c| contract_json(c, &money)).collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({ "contracts": items }))?
        )?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = contracts
        .iter()
        .map(|c| {
            let s = c.settlement.unwrap_or_default();
            vec![
                hex::encode(&c.id),
                c.status.clone(),
                c.supplier.clone(),
                c.consumer.clone(),
                c.kind.clone(),
                format_quantity(s.committed, &c.unit),
                money.show(s.price),
                format!("{} x {}", c.periods, format_duration_ms(c.period_ms)),
                format_time_ms(c.start_ms),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATUS",
            "SUPPLIER",
            "CONSUMER",
            "KIND",
            ">COMMITTED",
            ">PRICE/UNIT",
            "SCHEDULE",
            "STARTS",
        ],
        &rows,
    )
}
