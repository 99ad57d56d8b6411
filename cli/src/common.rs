//! What several commands share: submitting one transaction or a batch and
//! reporting it, accounts as people write them, money in the network's
//! currency, and paged queries.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::kinds::Account;
use symbiont_contracts::tx::TxKind;
use symbiont_proto::v1 as pb;

use crate::client::{self, Client, Global, Outcome, connect, parse_id, report};
use crate::output::outln;
use crate::units::format_money;

/// A ledger id (listing, contract, pool, proposal, posting) from 64 hex digits.
pub fn id(text: &str) -> Result<Hash> {
    Ok(Hash(parse_id(text)?))
}

/// "firm-0" is a firm; "pool:<64 hex digits>" is a pool.
pub fn parse_account(text: &str) -> Result<Account> {
    match text.strip_prefix("pool:") {
        Some(pool) => Ok(Account::Pool(
            id(pool).context("a pool account is pool:<id>")?,
        )),
        None if text.is_empty() => bail!("an account is a firm id or pool:<id>"),
        None => Ok(Account::Firm(text.to_string())),
    }
}

/// The API's account as people read it ("firm-0", "pool:<hex>").
pub fn account_text(account: &Option<pb::Account>) -> String {
    use pb::account::Account as Holder;
    match account.as_ref().and_then(|a| a.account.as_ref()) {
        Some(Holder::Firm(firm)) => firm.clone(),
        Some(Holder::Pool(pool)) => format!("pool:{}", hex::encode(pool)),
        None => "-".to_string(),
    }
}

pub fn pb_account(account: &Account) -> pb::Account {
    let holder = match account {
        Account::Firm(firm) => pb::account::Account::Firm(firm.clone()),
        Account::Pool(pool) => pb::account::Account::Pool(pool.0.to_vec()),
    };
    pb::Account {
        account: Some(holder),
    }
}

/// Money of one currency, formatted "250.00 EUR".
#[derive(Clone, Debug, Default)]
pub struct Money(pub pb::Currency);

impl Money {
    pub fn show(&self, minor: i64) -> String {
        format_money(minor, &self.0.code, self.0.minor_units)
    }

    pub fn parse(&self, text: &str, what: &str) -> Result<i64> {
        crate::units::parse_money(text, self.0.minor_units)
            .with_context(|| format!("{what} (in {})", self.0.code))
    }
}

/// The network's currency.
pub async fn money(client: &mut Client) -> Result<Money> {
    Ok(Money(crate::market::currency(client).await?))
}

/// Signs `kind` with --key, submits it, waits and reports: the pattern of
/// every command that submits one transaction. `then` prints what follows
/// from an applied transaction (e.g. the id of what it created).
pub fn submit_one(
    global: &Global,
    kind: TxKind,
    then: impl FnOnce(&Outcome) -> Result<()>,
) -> Result<()> {
    submit_built(global, false, |_| Ok(kind), then)
}

/// As [`submit_one`], for a transaction built with the network's currency
/// at hand (for commands whose arguments include money).
pub fn submit_with_money(
    global: &Global,
    build: impl FnOnce(&Money) -> Result<TxKind>,
) -> Result<()> {
    submit_built(global, true, build, |_| Ok(()))
}

/// `with_money`: ask the node for its currency first (else `build` gets
/// an empty one).
fn submit_built(
    global: &Global,
    with_money: bool,
    build: impl FnOnce(&Money) -> Result<TxKind>,
    then: impl FnOnce(&Outcome) -> Result<()>,
) -> Result<()> {
    let key = global.keypair()?;
    let outcome = client::runtime()?.block_on(async {
        let mut client = connect(&global.node).await?;
        let money = if with_money {
            money(&mut client).await?
        } else {
            Money::default()
        };
        let kind = build(&money)?;
        client::submit(&mut client, &key, kind, global.timeout).await
    })?;
    report(&outcome, global.json)?;
    if !global.json {
        then(&outcome)?;
    }
    Ok(())
}

/// One row of a batch: what it is (for the report) and its transaction;
/// `not_before_ms`: do not send it before this time (0: at once).
pub struct Row {
    pub label: String,
    pub kind: TxKind,
    pub not_before_ms: u64,
}

/// Submits the rows in order with a progress bar (on a terminal), then
/// prints a summary: how many were applied, and each one that was not with
/// its code and what to do. Exit status 1 when any row was not applied.
pub fn submit_batch(global: &Global, rows: Vec<Row>, what: &str) -> Result<()> {
    let key = global.keypair()?;
    let total = rows.len() as u64;
    let bar = if std::io::stderr().is_terminal() && !global.json {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    let outcomes = client::runtime()?.block_on(async {
        let mut client = connect(&global.node).await?;
        client::submit_all(&mut client, &key, rows, global.timeout, |_| bar.inc(1)).await
    })?;
    bar.finish_and_clear();
    let applied = outcomes.iter().filter(|o| o.succeeded()).count();
    let rejected = outcomes.len() - applied;
    if global.json {
        let rows: Vec<_> = labels
            .iter()
            .zip(&outcomes)
            .map(|(label, outcome)| json!({ "row": label, "result": outcome }))
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "applied": applied,
                "rejected": rejected,
                "rows": rows,
            }))?
        )?;
    } else {
        for (label, outcome) in labels.iter().zip(&outcomes) {
            if !outcome.succeeded() {
                outln!("rejected {label}: {}", outcome.sentence())?;
            }
        }
        outln!("{what}: {applied} applied, {rejected} rejected, of {total}")?;
    }
    if rejected > 0 {
        bail!("{rejected} of {total} not applied (listed above)");
    }
    Ok(())
}

/// Wait until this machine's clock reads `ms` (used by --paced).
pub async fn sleep_until_ms(ms: u64) {
    let now = crate::units::now_ms();
    if ms > now {
        tokio::time::sleep(Duration::from_millis(ms - now)).await;
    }
}

/// Pages through a list call until the end: `call(page_token)` returns
/// the page's items, the next token (empty at the end) and what else the
/// answer says (currency, ...), of which the last page's is returned.
pub async fn all_pages<T, E, F, Fut>(mut call: F) -> Result<(Vec<T>, E)>
where
    F: FnMut(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Vec<u8>, E)>>,
{
    let mut items = Vec::new();
    let mut token = Vec::new();
    loop {
        let (page, next, extra) = call(token).await?;
        items.extend(page);
        if next.is_empty() {
            return Ok((items, extra));
        }
        token = next;
    }
}

/// Prints `rows` under `header` with each column as wide as its widest
/// cell; columns whose header starts with '>' are right-aligned.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut widths: Vec<usize> = header
        .iter()
        .map(|h| h.trim_start_matches('>').chars().count())
        .collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let right = header[i].starts_with('>');
            let pad = widths[i] - cell.chars().count();
            if i > 0 {
                text.push_str("  ");
            }
            if right {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                if i + 1 < cells.len() {
                    text.push_str(&" ".repeat(pad));
                }
            }
        }
        text
    };
    outln!(
        "{}",
        line(
            header
                .iter()
                .map(|h| h.trim_start_matches('>').to_string())
                .collect()
        )
    )?;
    for row in rows {
        outln!("{}", line(row.clone()))?;
    }
    Ok(())
}

/// "0", "3", "0-29", "0,5,7-9" → the periods, ascending, no repeats.
pub fn parse_periods(texts: &[String]) -> Result<Vec<u32>> {
    let mut periods = std::collections::BTreeSet::new();
    for text in texts {
        for part in text.split(',') {
            let number = |s: &str| -> Result<u32> {
                s.trim()
                    .parse()
                    .with_context(|| format!("{part:?} is not a period like 3 or 0-29"))
            };
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (number(a)?, number(b)?);
                    if a > b || b - a >= 100_000 {
                        bail!("{part:?}: a range goes up, at most 100000 periods");
                    }
                    periods.extend(a..=b);
                }
                None => {
                    periods.insert(number(part)?);
                }
            }
        }
    }
    if periods.is_empty() {
        bail!("name at least one period");
    }
    Ok(periods.into_iter().collect())
}
