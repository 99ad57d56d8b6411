//! `symbiont events`: follow the ledger's events.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};
use symbiont_proto::v1::ledger_event::Event;
use symbiont_proto::v1::{Currency, LedgerEvent, StreamEventsRequest};

use crate::client::{self, Global, connect, refused};
use crate::common::account_text;
use crate::market::currency;
use crate::output::outln;
use crate::status::key_text;
use crate::units::{format_money, format_quantity, format_time_ms};

/// The options of `symbiont events` (its help is in main.rs).
#[derive(Args)]
pub struct EventsArgs {
    /// The first height whose events to print (0 or 1: from the start).
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Only events that concern this firm (and network-wide ones).
    #[arg(long)]
    firm: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<u64>,
    /// Stop after following for this many seconds (exit status 0).
    #[arg(long, value_name = "SECS")]
    for_secs: Option<u64>,
}

pub fn run(args: EventsArgs, global: &Global) -> Result<()> {
    client::runtime()?.block_on(async {
        let follow = follow(&args, global);
        match args.for_secs {
            Some(secs) => match tokio::time::timeout(Duration::from_secs(secs), follow).await {
                Ok(result) => result,
                Err(_) => Ok(()),
            },
            None => follow.await,
        }
    })
}

async fn follow(args: &EventsArgs, global: &Global) -> Result<()> {
    let mut client = connect(&global.node).await?;
    let currency = currency(&mut client).await?;
    let request = StreamEventsRequest {
        from_height: args.from,
        firm: args.firm.clone(),
    };
    let mut stream = client
        .stream
        .events(request)
        .await
        .map_err(refused)?
        .into_inner();
    let mut printed = 0u64;
    if args.limit == Some(0) {
        return Ok(());
    }
    while let Some(event) = stream.message().await.map_err(refused)? {
        if global.json {
            outln!("{}", serde_json::to_string(&to_json(&event, &currency))?)?;
        } else {
            outln!("{}", line(&event, &currency))?;
        }
        printed += 1;
        if args.limit.is_some_and(|limit| printed >= limit) {
            break;
        }
    }
    Ok(())
}

/// The event's name and its fields, rendered (money in the currency,
/// quantities in thousandths are shown as units without a symbol: events
/// do not carry the kind's unit).
fn fields(event: &LedgerEvent, currency: &Currency) -> (&'static str, Vec<(&'static str, Value)>) {
    let money = |minor: i64| json!(format_money(minor, &currency.code, currency.minor_units));
    match &event.event {
        Some(Event::TxCommitted(tx)) | Some(Event::TxFailed(tx)) => {
            let failed = matches!(event.event, Some(Event::TxFailed(_)));
            let mut fields = vec![
                ("kind", json!(tx.kind)),
                ("tx_id", json!(hex::encode(&tx.tx_id))),
                ("signer", json!(key_text(&tx.signer))),
                ("tx_index", json!(tx.index)),
            ];
            if failed {
                fields.push(("code", json!(tx.code)));
            }
            let name = if failed { "tx_failed" } else { "tx_committed" };
            (name, fields)
        }
        Some(Event::ContractSigned(c)) => (
            "contract_signed",
            vec![
                ("contract", json!(hex::encode(&c.contract))),
                ("supplier", json!(c.supplier)),
                ("consumer", json!(c.consumer)),
            ],
        ),
        Some(Event::ReadingRecorded(r)) => (
            "reading_recorded",
            vec![
                ("contract", json!(hex::encode(&r.contract))),
                ("period", json!(r.period)),
                ("reading", json!(r.reading().as_str_name())),
                ("quantity", json!(format_quantity(r.quantity, "units"))),
            ],
        ),
        Some(Event::PeriodSettled(s)) => (
            "period_settled",
            vec![
                ("contract", json!(hex::encode(&s.contract))),
                ("period", json!(s.period)),
                ("supplier", json!(s.supplier)),
                ("consumer", json!(s.consumer)),
                ("net", money(s.net)),
                ("avoided_kg", json!(format_quantity(s.avoided_g, "kg"))),
            ],
        ),
        Some(Event::PaymentAcknowledged(p)) => (
            "payment_acknowledged",
            vec![
                ("payer", json!(account_text(&p.payer))),
                ("payee", json!(account_text(&p.payee))),
                ("amount", money(p.amount)),
            ],
        ),
        Some(Event::PoolSplit(p)) => (
            "pool_split",
            vec![
                ("pool", json!(hex::encode(&p.pool))),
                ("period", json!(p.period)),
                (
                    "parts",
                    json!(
                        p.parts
                            .iter()
                            .map(|part| format!(
                                "{}={}",
                                part.firm,
                                money(part.amount).as_str().unwrap_or_default()
                            ))
                            .collect::<Vec<_>>()
                    ),
                ),
            ],
        ),
        Some(Event::EvidenceRecorded(e)) => (
            "evidence_recorded",
            vec![
                ("evidence", json!(hex::encode(&e.evidence))),
                ("validator", json!(key_text(&e.validator))),
                ("vote_height", json!(e.height)),
                ("round", json!(e.round)),
                (
                    "step",
                    json!(if e.step == 0 { "prevote" } else { "precommit" }),
                ),
            ],
        ),
        None => ("unknown", vec![]),
    }
}

fn to_json(event: &LedgerEvent, currency: &Currency) -> Value {
    let (name, fields) = fields(event, currency);
    let mut value = json!({
        "height": event.height,
        "index": event.index,
        "time": format_time_ms(event.time_ms),
        "time_ms": event.time_ms,
        "firms": event.firms,
        "event": name,
    });
    for (key, field) in fields {
        value[key] = field;
    }
    value
}

fn line(event: &LedgerEvent, currency: &Currency) -> String {
    let (name, fields) = fields(event, currency);
    let mut line = format!(
        "{} height {} #{} {name}",
        format_time_ms(event.time_ms),
        event.height,
        event.index
    );
    for (key, value) in fields {
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        line.push_str(&format!(" {key}={text}"));
    }
    if !event.firms.is_empty() {
        line.push_str(&format!(" firms={}", event.firms.join(",")));
    }
    line
}
