//! `symbiont market`: post offers and requests, list listings.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use symbiont_contracts::kinds::ListingTerms;
use symbiont_contracts::tx::TxKind;
use symbiont_proto::v1::{Currency, ListListingsRequest};

use crate::client::{self, Client, Global, connect, refused, report, submit};
use crate::output::outln;
use crate::units::{
    format_duration_ms, format_money, format_quantity, format_time_ms, parse_duration_ms,
    parse_money, parse_quantity,
};

#[derive(Subcommand)]
pub enum MarketCommand {
    /// Offer a resource for sale, signed with an operator key (--key), and
    /// wait until it is committed.
    ///
    /// Example: symbiont --key ops.pem market offer --kind steam
    /// --quantity 12.5 --price 25.00 --periods 24 --period 1h
    /// --valid-for 7d --delivery-point "gate 1"
    Offer(ListingArgs),
    /// Ask for a resource (the price is your limit), signed with an
    /// operator key (--key), and wait until it is committed.
    ///
    /// Example: symbiont --key ops.pem market request --kind steam
    /// --quantity 5 --price 30.00 --periods 24 --period 1h --valid-for 2d
    /// --delivery-point "gate 1"
    Request(ListingArgs),
    /// Take an open listing of another firm, signed with an operator key
    /// (--key); the two firms then agree a contract on its terms
    /// (`symbiont contract propose --listing ID`).
    ///
    /// Example: symbiont --key ops.pem market accept 5f1c…e2
    Accept {
        /// The listing's id (64 hex digits, from `market list`).
        listing: String,
    },
    /// Close one of your firm's open listings, signed with an operator key
    /// (--key).
    ///
    /// Example: symbiont --key ops.pem market withdraw 5f1c…e2
    Withdraw {
        /// The listing's id.
        listing: String,
    },
    /// List the market's listings, quantities in the kind's unit and prices
    /// in the network's currency.
    ///
    /// Example: symbiont market list --side offer --open --kind steam
    List {
        /// Only "offer" or "request".
        #[arg(long)]
        side: Option<String>,
        /// Only listings that can still be accepted.
        #[arg(long)]
        open: bool,
        /// Only this resource kind (its id).
        #[arg(long)]
        kind: Option<String>,
        /// Only listings of this firm (its id).
        #[arg(long)]
        firm: Option<String>,
    },
}

#[derive(Args)]
pub struct ListingArgs {
    /// The resource kind's id (e.g. steam).
    #[arg(long)]
    kind: String,
    /// Quantity per period in the kind's unit, up to 3 decimals (e.g. 12.5).
    #[arg(long)]
    quantity: String,
    /// Price per whole unit in the network's currency (e.g. 25.00);
    /// negative for a gate fee (the supplier pays).
    #[arg(long, allow_hyphen_values = true)]
    price: String,
    /// Number of periods.
    #[arg(long)]
    periods: u32,
    /// Length of a period: 15m, 1h, 1d, ...
    #[arg(long, default_value = "1h")]
    period: String,
    /// How long the listing can be accepted from now: 1h, 7d, ...
    #[arg(long, default_value = "7d")]
    valid_for: String,
    /// Where the resource changes hands (1 to 256 bytes of text).
    #[arg(long)]
    delivery_point: String,
    /// A quality field of the kind, NAME=INTEGER (repeatable).
    #[arg(long, value_name = "NAME=INTEGER")]
    quality: Vec<String>,
}

pub fn run(command: MarketCommand, global: &Global) -> Result<()> {
    let runtime = client::runtime()?;
    match command {
        MarketCommand::Offer(args) => post(&runtime, global, args, true),
        MarketCommand::Request(args) => post(&runtime, global, args, false),
        MarketCommand::List {
            side,
            open,
            kind,
            firm,
        } => runtime.block_on(list(global, side, open, kind, firm)),
        MarketCommand::Accept { listing } => {
            let listing = crate::common::id(&listing)?;
            crate::common::submit_one(global, TxKind::Accept { listing }, |_| Ok(()))
        }
        MarketCommand::Withdraw { listing } => {
            let listing = crate::common::id(&listing)?;
            crate::common::submit_one(global, TxKind::Withdraw { listing }, |_| Ok(()))
        }
    }
}

fn post(
    runtime: &tokio::runtime::Runtime,
    global: &Global,
    args: ListingArgs,
    offer: bool,
) -> Result<()> {
    let key = global.keypair()?;
    let quantity_per_period =
        parse_quantity(&args.quantity).context("--quantity (in the kind's unit)")?;
    let period_ms = parse_duration_ms(&args.period).context("--period")?;
    let valid_for = parse_duration_ms(&args.valid_for).context("--valid-for")?;
    let quality = crate::contract::parse_quality(&args.quality)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .as_millis()
        .try_into()?;
    let outcome = runtime.block_on(async {
        let mut client = connect(&global.node).await?;
        let currency = currency(&mut client).await?;
        let price = parse_money(&args.price, currency.minor_units)
            .with_context(|| format!("--price (in {})", currency.code))?;
        let listing = ListingTerms {
            kind: args.kind,
            quantity_per_period,
            price,
            delivery_point: args.delivery_point,
            quality,
            period_ms,
            periods: args.periods,
            valid_until_ms: u64::saturating_add(now_ms, valid_for),
        };
        let kind = if offer {
            TxKind::PostOffer { listing }
        } else {
            TxKind::PostRequest { listing }
        };
        submit(&mut client, &key, kind, global.timeout).await
    })?;
    report(&outcome, global.json)
}

/// The network's currency (every ListListings answer carries it).
pub async fn currency(client: &mut Client) -> Result<Currency> {
    let request = ListListingsRequest {
        page_size: 1,
        ..Default::default()
    };
    let answer = client.query.list_listings(request).await.map_err(refused)?;
    answer
        .into_inner()
        .currency
        .context("the node's answer has no currency")
}

async fn list(
    global: &Global,
    side: Option<String>,
    open_only: bool,
    kind: Option<String>,
    firm: Option<String>,
) -> Result<()> {
    let mut client = connect(&global.node).await?;
    let mut listings = Vec::new();
    let mut page_token = Vec::new();
    let mut currency = Currency::default();
    loop {
        let request = ListListingsRequest {
            side: side.clone().unwrap_or_default(),
            open_only,
            kind: kind.clone().unwrap_or_default(),
            firm: firm.clone().unwrap_or_default(),
            page_size: 1000,
            page_token,
            ..Default::default()
        };
        let answer = client
            .query
            .list_listings(request)
            .await
            .map_err(refused)?
            .into_inner();
        currency = answer.currency.unwrap_or(currency);
        listings.extend(answer.listings);
        if answer.next_page_token.is_empty() {
            break;
        }
        page_token = answer.next_page_token;
    }
    let money = |minor: i64| format_money(minor, &currency.code, currency.minor_units);
    if global.json {
        let items: Vec<_> = listings
            .iter()
            .map(|l| {
                json!({
                    "id": hex::encode(&l.id),
                    "owner": l.owner,
                    "side": l.side,
                    "kind": l.kind,
                    "quantity_per_period": format_quantity(l.quantity_per_period, &l.unit),
                    "price_per_unit": money(l.price),
                    "delivery_point": l.delivery_point,
                    "quality": l.quality,
                    "period": format_duration_ms(l.period_ms),
                    "periods": l.periods,
                    "valid_until": format_time_ms(l.valid_until_ms),
                    "status": l.status,
                    "accepted_by": l.accepted_by,
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({ "listings": items }))?
        )?;
        return Ok(());
    }
    outln!(
        "{:<64}  {:<7}  {:<10}  {:<12}  {:>14}  {:>16}  {:<12}  {:<20}  STATUS",
        "ID",
        "SIDE",
        "FIRM",
        "KIND",
        "QTY/PERIOD",
        "PRICE/UNIT",
        "SCHEDULE",
        "VALID UNTIL"
    )?;
    for l in &listings {
        let status = if l.accepted_by.is_empty() {
            l.status.clone()
        } else {
            format!("{} by {}", l.status, l.accepted_by)
        };
        outln!(
            "{:<64}  {:<7}  {:<10}  {:<12}  {:>14}  {:>16}  {:<12}  {:<20}  {}",
            hex::encode(&l.id),
            l.side,
            l.owner,
            l.kind,
            format_quantity(l.quantity_per_period, &l.unit),
            money(l.price),
            format!("{} x {}", l.periods, format_duration_ms(l.period_ms)),
            format_time_ms(l.valid_until_ms),
            status
        )?;
    }
    Ok(())
}
