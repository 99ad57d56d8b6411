//! `symbiont meter`: record availability, delivered quantities and check
//! readings, one at a time or from a CSV file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use symbiont_contracts::hash::Hash;
use symbiont_contracts::tx::TxKind;
use symbiont_proto::v1 as pb;

use crate::client::{self, Global, connect, refused};
use crate::common::{Row, id, submit_batch};
use crate::units::parse_quantity;

#[derive(Subcommand)]
pub enum MeterCommand {
    /// The supplier declares what it made available in a period (signed
    /// with an operator key of the supplier, --key).
    ///
    /// Example: symbiont --key power-ops.pem meter availability 9c2e…41 3 100
    ///
    /// Example: symbiont --key power-ops.pem meter availability --csv a.csv --contract 9c2e…41
    Availability(ReadingArgs),
    /// The billing meter's delivered quantity for a period (signed with the
    /// contract's billing meter key, --key).
    ///
    /// Example: symbiont --key meter.pem meter delivery 9c2e…41 3 98.5
    ///
    /// Example: symbiont --key meter.pem meter delivery --csv november.csv --paced
    Delivery(ReadingArgs),
    /// The check meter's reading for a period (signed with the contract's
    /// check meter key, --key).
    ///
    /// Example: symbiont --key check.pem meter check 9c2e…41 3 98.4
    Check(ReadingArgs),
}

/// One reading as arguments, or a CSV file of readings.
///
/// The CSV file has one reading per line: `contract,period,quantity`, or
/// `period,quantity` with --contract. Quantities are in the kind's unit
/// (up to 3 decimals). Blank lines, lines starting with '#' and a header
/// line (one whose period is not a number, e.g. "contract,period,quantity")
/// are skipped.
#[derive(Args)]
pub struct ReadingArgs {
    /// The contract's id (64 hex digits).
    #[arg(required_unless_present = "csv")]
    contract: Option<String>,
    /// The period (0 is the first).
    #[arg(required_unless_present = "csv")]
    period: Option<u32>,
    /// The quantity, in the kind's unit (e.g. 98.5).
    #[arg(required_unless_present = "csv")]
    quantity: Option<String>,
    /// Read the readings from this CSV file (see above).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["period", "quantity"])]
    csv: Option<PathBuf>,
    /// With --csv: the contract of rows that name none.
    #[arg(long = "contract", value_name = "ID", requires = "csv")]
    csv_contract: Option<String>,
    /// With --csv: send each reading only once its period has ended (by
    /// this machine's clock), as a meter gateway does; a reading is
    /// accepted until one period length after its period's end.
    #[arg(long, requires = "csv")]
    paced: bool,
}

#[derive(Clone, Copy)]
enum Reading {
    Availability,
    Delivery,
    Check,
}

impl Reading {
    fn kind(self, contract: Hash, period: u32, quantity: u64) -> TxKind {
        match self {
            Reading::Availability => TxKind::RecordAvailability {
                contract,
                period,
                quantity,
            },
            Reading::Delivery => TxKind::RecordDelivery {
                contract,
                period,
                quantity,
            },
            Reading::Check => TxKind::RecordCheck {
                contract,
                period,
                quantity,
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Reading::Availability => "availability",
            Reading::Delivery => "delivery",
            Reading::Check => "check",
        }
    }
}

pub fn run(command: MeterCommand, global: &Global) -> Result<()> {
    let (reading, args) = match command {
        MeterCommand::Availability(args) => (Reading::Availability, args),
        MeterCommand::Delivery(args) => (Reading::Delivery, args),
        MeterCommand::Check(args) => (Reading::Check, args),
    };
    let Some(path) = &args.csv else {
        let (Some(contract), Some(period), Some(quantity)) =
            (&args.contract, args.period, &args.quantity)
        else {
            bail!("give CONTRACT PERIOD QUANTITY, or --csv FILE");
        };
        let contract = id(contract)?;
        let quantity = parse_quantity(quantity).context("QUANTITY (in the kind's unit)")?;
        return crate::common::submit_one(global, reading.kind(contract, period, quantity), |_| {
            Ok(())
        });
    };
    let default_contract = match (&args.csv_contract, &args.contract) {
        (Some(text), _) | (None, Some(text)) => Some(id(text)?),
        (None, None) => None,
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let parsed = parse_csv(&text, default_contract)
        .with_context(|| format!("{} is not a CSV of readings", path.display()))?;
    if parsed.is_empty() {
        bail!("{} holds no readings", path.display());
    }
    let mut not_before = BTreeMap::new();
    if args.paced {
        // Each contract's schedule, to know when its periods end.
        let contracts: std::collections::BTreeSet<Hash> =
            parsed.iter().map(|r| r.contract).collect();
        client::runtime()?.block_on(async {
            let mut client = connect(&global.node).await?;
            for contract in contracts {
                let answer = client
                    .query
                    .get_contract(pb::GetContractRequest {
                        id: contract.0.to_vec(),
                        page_size: 1,
                        page_token: Vec::new(),
                    })
                    .await
                    .map_err(refused)?
                    .into_inner();
                let c = answer
                    .contract
                    .context("the node's answer has no contract")?;
                not_before.insert(contract, (c.start_ms, c.period_ms));
            }
            anyhow::Ok(())
        })?;
    }
    let rows = parsed
        .into_iter()
        .map(|r| {
            let not_before_ms = not_before
                .get(&r.contract)
                .map(|(start, period)| {
                    start.saturating_add(period.saturating_mul(u64::from(r.period) + 1))
                })
                .unwrap_or(0);
            Row {
                label: format!("line {} (period {})", r.line, r.period),
                kind: reading.kind(r.contract, r.period, r.quantity),
                not_before_ms,
            }
        })
        .collect();
    submit_batch(global, rows, &format!("{} readings", reading.name()))
}

struct CsvReading {
    line: usize,
    contract: Hash,
    period: u32,
    quantity: u64,
}

fn parse_csv(text: &str, default_contract: Option<Hash>) -> Result<Vec<CsvReading>> {
    let mut readings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (contract, period, quantity) = match (fields.as_slice(), default_contract) {
            ([contract, period, quantity], _) => (Some(*contract), *period, *quantity),
            ([period, quantity], Some(_)) => (None, *period, *quantity),
            ([_, _], None) => {
                bail!("line {number}: contract,period,quantity expected (or --contract ID)")
            }
            _ => bail!(
                "line {number}: {} fields; contract,period,quantity expected",
                fields.len()
            ),
        };
        let Ok(period) = period.parse::<u32>() else {
            if readings.is_empty() && period.chars().all(|c| c.is_ascii_alphabetic() || c == '_') {
                continue; // the header
            }
            bail!("line {number}: the period {period:?} is not a number");
        };
        let contract = match contract {
            Some(text) => id(text).with_context(|| format!("line {number}"))?,
            None => default_contract.expect("checked above"),
        };
        let quantity = parse_quantity(quantity)
            .with_context(|| format!("line {number}: the quantity (in the kind's unit)"))?;
        readings.push(CsvReading {
            line: number,
            contract,
            period,
            quantity,
        });
    }
    Ok(readings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_headers_and_errors() {
        let c = "11".repeat(32);
        let text = format!("contract,period,quantity\n# a comment\n\n{c},0,10\n{c}, 1 ,9.5\n");
        let rows = parse_csv(&text, None).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[1].line, rows[1].period, rows[1].quantity),
            (5, 1, 9_500)
        );
        assert_eq!(rows[0].contract, Hash([0x11; 32]));
        let default = Some(Hash([0x22; 32]));
        let rows = parse_csv("period,quantity\n3,1.25\n", default).unwrap();
        assert_eq!(
            (rows[0].contract, rows[0].quantity),
            (Hash([0x22; 32]), 1_250)
        );
        assert!(parse_csv("0,10\n", None).is_err(), "no contract");
        assert!(parse_csv(&format!("{c},x1,10\n"), None).is_err());
        assert!(parse_csv(&format!("{c},1,-3\n"), None).is_err());
        assert!(parse_csv(&format!("{c},1,1.0001\n"), None).is_err());
        assert!(parse_csv("abc,1,1\n", None).is_err(), "a bad contract id");
        let late_header = format!("{c},0,10\nperiod,quantity,x\n");
        assert!(parse_csv(&late_header, None).is_err());
    }
}
