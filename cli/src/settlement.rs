//! `symbiont settle`, `statement`, `pay ack`, `dispute`, `balances` and
//! `co2`: settling periods and what they leave behind.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use symbiont_contracts::tx::TxKind;
use symbiont_proto::v1 as pb;

use crate::client::{self, Global, connect, refused};
use crate::common::{
    Money, Row, account_text, all_pages, id, parse_account, parse_periods, pb_account,
    submit_batch, submit_one, submit_with_money, table,
};
use crate::output::outln;
use crate::units::{format_quantity, format_time_ms};

/// The options of `symbiont settle` (its help is in main.rs).
#[derive(Args)]
pub struct SettleArgs {
    /// The contract's id (64 hex digits).
    contract: String,
    /// The periods to settle: 3, 0-29, 0,5,7-9 (more than one are sent
    /// as a batch).
    #[arg(required = true)]
    periods: Vec<String>,
}

pub fn settle(args: SettleArgs, global: &Global) -> Result<()> {
    let contract = id(&args.contract)?;
    let periods = parse_periods(&args.periods)?;
    if let [period] = periods[..] {
        return submit_one(global, TxKind::SettlePeriod { contract, period }, |_| {
            outln!("`symbiont statement --contract {contract}` shows the statement")?;
            Ok(())
        });
    }
    let rows = periods
        .iter()
        .map(|&period| Row {
            label: format!("period {period}"),
            kind: TxKind::SettlePeriod { contract, period },
            not_before_ms: 0,
        })
        .collect();
    submit_batch(global, rows, "settlements")
}

/// The options of `symbiont statement`.
#[derive(Args)]
pub struct StatementArgs {
    /// Only statements of contracts where this firm is supplier or consumer.
    #[arg(long)]
    firm: Option<String>,
    /// Only this contract's statements (its id).
    #[arg(long)]
    contract: Option<String>,
    /// Only this period (with --contract).
    #[arg(long, requires = "contract")]
    period: Option<u32>,
}

fn statement_json(s: &pb::Statement, money: &Money) -> serde_json::Value {
    let q = |v: u64| format_quantity(v, &s.unit);
    json!({
        "contract": hex::encode(&s.contract),
        "period": s.period,
        "supplier": s.supplier,
        "consumer": s.consumer,
        "kind": s.kind,
        "settled_at": format_time_ms(s.settled_at_ms),
        "availability": q(s.availability),
        "delivered": q(s.delivered),
        "check": s.check.map(q),
        "band": [q(s.lower), q(s.upper)],
        "base_units": q(s.base_units),
        "excess_units": q(s.excess_units),
        "energy_charge": money.show(s.energy_charge),
        "supply_shortfall": q(s.supply_shortfall_units),
        "supply_penalty": money.show(s.supply_penalty),
        "offtake_shortfall": q(s.offtake_shortfall_units),
        "offtake_penalty": money.show(s.offtake_penalty),
        "statement_net": money.show(s.statement_net),
        "adjustment": money.show(s.adjustment),
        "net": money.show(s.net),
        "avoided_co2": format_quantity(s.avoided_g, "kg"),
        "flags": s.flags,
        "journal": s.journal.iter().map(|j| json!({
            "account": account_text(&j.account),
            "amount": money.show(j.amount),
        })).collect::<Vec<_>>(),
    })
}

pub fn statement(args: StatementArgs, global: &Global) -> Result<()> {
    let contract = args.contract.as_deref().map(id).transpose()?;
    client::runtime()?.block_on(async {
        let client = connect(&global.node).await?;
        let (mut statements, currency) = all_pages(|page_token| {
            let mut query = client.query.clone();
            let firm = args.firm.clone().unwrap_or_default();
            async move {
                let answer = query
                    .list_statements(pb::ListStatementsRequest {
                        firm,
                        contract: contract.map(|c| c.0.to_vec()).unwrap_or_default(),
                        page_size: 1000,
                        page_token,
                    })
                    .await
                    .map_err(refused)?
                    .into_inner();
                Ok((
                    answer.statements,
                    answer.next_page_token,
                    answer.currency.unwrap_or_default(),
                ))
            }
        })
        .await?;
        let money = Money(currency);
        if let Some(period) = args.period {
            statements.retain(|s| s.period == period);
        }
        if global.json {
            let items: Vec<_> = statements
                .iter()
                .map(|s| statement_json(s, &money))
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({ "statements": items }))?
            )?;
            return Ok(());
        }
        if statements.is_empty() {
            outln!("no settled period matches")?;
            return Ok(());
        }
        let rows: Vec<Vec<String>> = statements
            .iter()
            .map(|s| {
                let q = |v: u64| format_quantity(v, &s.unit);
                vec![
                    hex::encode(&s.contract)[..12].to_string(),
                    s.period.to_string(),
                    format!("{} -> {}", s.supplier, s.consumer),
                    q(s.availability),
                    q(s.delivered),
                    money.show(s.energy_charge),
                    money.show(-s.supply_penalty),
                    money.show(s.offtake_penalty),
                    money.show(s.adjustment),
                    money.show(s.net),
                    format_quantity(s.avoided_g, "kg"),
                    s.flags.join(","),
                ]
            })
            .collect();
        table(
            &[
                "CONTRACT",
                ">PERIOD",
                "SUPPLIER -> CONSUMER",
                ">AVAILABLE",
                ">DELIVERED",
                ">CHARGE",
                ">SUPPLY PEN.",
                ">OFFTAKE PEN.",
                ">ADJUSTMENT",
                ">NET",
                ">CO2 AVOIDED",
                "FLAGS",
            ],
            &rows,
        )?;
        let total: i64 = statements.iter().map(|s| s.net).sum();
        outln!(
            "{} statements; net {} owed by consumers to suppliers (negative: the other way)",
            statements.len(),
            money.show(total)
        )?;
        Ok(())
    })
}

#[derive(Subcommand)]
pub enum PayCommand {
    /// The payee acknowledges a payment it received (signed with an
    /// operator key of the payee, or of a pool's operator, --key): the
    /// payer's obligation shrinks by the amount.
    ///
    /// Example: symbiont --key power-ops.pem pay ack --payer pharma --payee power --amount 6900.00
    Ack {
        /// Who paid: a firm id, or pool:<id>.
        #[arg(long)]
        payer: String,
        /// Who was paid: a firm id, or pool:<id>.
        #[arg(long)]
        payee: String,
        /// The amount, in the network's currency.
        #[arg(long)]
        amount: String,
    },
}

pub fn pay(command: PayCommand, global: &Global) -> Result<()> {
    let PayCommand::Ack {
        payer,
        payee,
        amount,
    } = command;
    let payer = parse_account(&payer).context("--payer")?;
    let payee = parse_account(&payee).context("--payee")?;
    submit_with_money(global, |money| {
        Ok(TxKind::AcknowledgePayment {
            payer,
            payee,
            amount: money.parse(&amount, "--amount")?,
        })
    })
}

#[derive(Subcommand)]
pub enum DisputeCommand {
    /// A party disputes a period of a contract that names an arbiter
    /// (signed with an operator key of the party, --key). An open dispute
    /// holds the period's settlement until the arbiter resolves it.
    ///
    /// Example: symbiont --key pharma-ops.pem dispute open 9c2e…41 7 --reason "meter drift"
    Open {
        /// The contract's id.
        contract: String,
        /// The period.
        period: u32,
        /// Why, for the arbiter.
        #[arg(long)]
        reason: String,
    },
    /// The arbiter resolves a dispute (signed with the arbiter's operator
    /// key, --key): the adjustment is added to the period's net (positive:
    /// the consumer owes the supplier more).
    ///
    /// Example: symbiont --key hub-ops.pem dispute resolve 9c2e…41 7 --adjustment -120.00
    Resolve {
        /// The contract's id.
        contract: String,
        /// The period.
        period: u32,
        /// The adjustment, in the network's currency.
        #[arg(long, allow_hyphen_values = true)]
        adjustment: String,
    },
}

pub fn dispute(command: DisputeCommand, global: &Global) -> Result<()> {
    match command {
        DisputeCommand::Open {
            contract,
            period,
            reason,
        } => {
            let contract = id(&contract)?;
            submit_one(
                global,
                TxKind::OpenDispute {
                    contract,
                    period,
                    reason,
                },
                |_| Ok(()),
            )
        }
        DisputeCommand::Resolve {
            contract,
            period,
            adjustment,
        } => {
            let contract = id(&contract)?;
            submit_with_money(global, |money| {
                Ok(TxKind::ResolveDispute {
                    contract,
                    period,
                    adjustment: money.parse(&adjustment, "--adjustment")?,
                })
            })
        }
    }
}

/// The options of `symbiont balances`.
#[derive(Args)]
pub struct BalancesArgs {
    /// Only this account (a firm id, or pool:<id>) and the obligations it
    /// is a party to.
    #[arg(long)]
    account: Option<String>,
}

pub fn balances(args: BalancesArgs, global: &Global) -> Result<()> {
    let account = args
        .account
        .as_deref()
        .map(parse_account)
        .transpose()
        .context("--account")?;
    client::runtime()?.block_on(async {
        let client = connect(&global.node).await?;
        let (pages, currency) = all_pages(|page_token| {
            let mut query = client.query.clone();
            let account = account.as_ref().map(pb_account);
            async move {
                let answer = query
                    .balances(pb::BalancesRequest {
                        account,
                        page_size: 1000,
                        page_token,
                    })
                    .await
                    .map_err(refused)?
                    .into_inner();
                Ok((
                    vec![(answer.balances, answer.obligations)],
                    answer.next_page_token,
                    answer.currency.unwrap_or_default(),
                ))
            }
        })
        .await?;
        let money = Money(currency);
        let (balances, obligations): (Vec<_>, Vec<_>) = pages.into_iter().unzip();
        let balances: Vec<pb::Balance> = balances.into_iter().flatten().collect();
        let obligations: Vec<pb::Obligation> = obligations.into_iter().flatten().collect();
        if global.json {
            let value = json!({
                "balances": balances.iter().map(|b| json!({
                    "account": account_text(&b.account),
                    "balance": money.show(b.balance),
                })).collect::<Vec<_>>(),
                "obligations": obligations.iter().map(|o| json!({
                    "debtor": account_text(&o.debtor),
                    "creditor": account_text(&o.creditor),
                    "amount": money.show(o.amount),
                })).collect::<Vec<_>>(),
            });
            outln!("{}", serde_json::to_string_pretty(&value)?)?;
            return Ok(());
        }
        let rows: Vec<Vec<String>> = balances
            .iter()
            .map(|b| vec![account_text(&b.account), money.show(b.balance)])
            .collect();
        table(&["ACCOUNT", ">BALANCE"], &rows)?;
        outln!()?;
        if obligations.is_empty() {
            outln!("no open obligations")?;
        } else {
            let rows: Vec<Vec<String>> = obligations
                .iter()
                .map(|o| {
                    vec![
                        account_text(&o.debtor),
                        account_text(&o.creditor),
                        money.show(o.amount),
                    ]
                })
                .collect();
            table(&["DEBTOR", "OWES", ">AMOUNT"], &rows)?;
        }
        Ok(())
    })
}

/// The options of `symbiont co2`.
#[derive(Args)]
pub struct Co2Args {
    /// Only this firm.
    #[arg(long)]
    firm: Option<String>,
    /// Also total per resource kind (reads every settled period).
    #[arg(long)]
    by_kind: bool,
}

pub fn co2(args: Co2Args, global: &Global) -> Result<()> {
    let answer = client::runtime()?.block_on(async {
        let mut client = connect(&global.node).await?;
        let answer = client
            .query
            .avoided_co2(pb::AvoidedCo2Request {
                firm: args.firm.clone().unwrap_or_default(),
                by_kind: args.by_kind,
            })
            .await
            .map_err(refused)?;
        anyhow::Ok(answer.into_inner())
    })?;
    let t = |g: u64| format_quantity(g, "kg");
    if global.json {
        let value = json!({
            "height": answer.height,
            "network": t(answer.network_g),
            "network_g": answer.network_g,
            "firms": answer.firms.iter().map(|f| json!({
                "firm": f.firm, "avoided": t(f.grams), "grams": f.grams,
            })).collect::<Vec<_>>(),
            "kinds": answer.kinds.iter().map(|k| json!({
                "kind": k.kind, "avoided": t(k.grams), "grams": k.grams,
            })).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    outln!(
        "avoided CO2e on the network: {} (at height {})",
        t(answer.network_g),
        answer.height
    )?;
    outln!()?;
    let rows: Vec<Vec<String>> = answer
        .firms
        .iter()
        .map(|f| vec![f.firm.clone(), t(f.grams)])
        .collect();
    table(&["FIRM", ">AVOIDED CO2e"], &rows)?;
    if args.by_kind {
        outln!()?;
        let rows: Vec<Vec<String>> = answer
            .kinds
            .iter()
            .map(|k| vec![k.kind.clone(), t(k.grams)])
            .collect();
        table(&["KIND", ">AVOIDED CO2e"], &rows)?;
    }
    Ok(())
}
