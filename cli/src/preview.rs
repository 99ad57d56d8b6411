//! `symbiont preview`: the settlement calculator, without a network.
//!
//! It runs the very functions block execution runs
//! (`symbiont_contracts::settlement::settle` and
//! `symbiont_contracts::pool::split`), so a preview is what the ledger
//! will settle for the same terms and readings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;
use symbiont_contracts::pool;
use symbiont_contracts::settlement::{self, Readings, SettlementTerms, Statement};

use crate::output::outln;

#[derive(Subcommand)]
pub enum PreviewCommand {
    /// Settle one period of a contract and print its statement.
    ///
    /// Quantities are integer thousandths of the resource kind's unit;
    /// money is integer minor units (cents, øre) of the settlement currency.
    ///
    /// Example: symbiont preview settlement --contract docs/examples/steam-contract.toml
    /// --availability 80000 --delivered 80000
    Settlement {
        /// Contract terms, TOML: price, committed, tolerance_bp,
        /// supply_penalty, offtake_penalty, and optionally excess_price,
        /// penalty_cap, meter_tolerance.
        #[arg(long)]
        contract: PathBuf,
        /// A: what the supplier declared available, thousandths.
        #[arg(long)]
        availability: u64,
        /// D: what the billing meter measured, thousandths.
        #[arg(long)]
        delivered: u64,
        /// C: the check meter's reading, thousandths.
        #[arg(long)]
        check: Option<u64>,
    },
    /// Split a pool's net income (or cost, negative) by its sharing keys.
    ///
    /// Example: symbiont preview split --keys docs/examples/pv-pool-keys.toml --amount 200
    Split {
        /// Sharing keys, TOML: a [keys] table of member id = basis points,
        /// summing to 10000.
        #[arg(long)]
        keys: PathBuf,
        /// The net amount to split, minor units; negative for a cost.
        #[arg(long, allow_negative_numbers = true)]
        amount: i64,
    },
}

#[derive(Serialize)]
struct SplitReport {
    amount: i64,
    /// Member id -> share, minor units.
    shares: BTreeMap<String, i64>,
}

pub fn run(command: PreviewCommand, json: bool) -> Result<()> {
    match command {
        PreviewCommand::Settlement {
            contract,
            availability,
            delivered,
            check,
        } => {
            let terms = SettlementTerms::from_toml(&read(&contract)?)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("in {}", contract.display()))?;
            let readings = Readings {
                availability,
                delivered,
                check,
            };
            let statement = settlement::settle(&terms, &readings)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&statement)?)?;
            } else {
                print_statement(&statement)?;
            }
            Ok(())
        }
        PreviewCommand::Split { keys, amount } => {
            let sharing = pool::keys_from_toml(&read(&keys)?)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("in {}", keys.display()))?;
            let shares = pool::split(amount, &sharing)?.into_iter().collect();
            let report = SplitReport { amount, shares };
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                for (member, share) in &report.shares {
                    outln!("{member:<24} {:>6} bp  {share:>20}", sharing[member])?;
                }
                outln!("{:<24} {:>6} bp  {amount:>20}", "total", 10_000)?;
            }
            Ok(())
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn print_statement(s: &Statement) -> std::io::Result<()> {
    let rows: [(&str, String); 13] = [
        ("availability (A)", s.availability.to_string()),
        ("delivered (D)", s.delivered.to_string()),
        ("check (C)", s.check.map_or("-".into(), |c| c.to_string())),
        ("band lower / upper", format!("{} / {}", s.lower, s.upper)),
        (
            "base / excess units",
            format!("{} / {}", s.base_units, s.excess_units),
        ),
        ("energy charge", s.energy_charge.to_string()),
        (
            "supply shortfall units",
            s.supply_shortfall_units.to_string(),
        ),
        ("supply penalty", s.supply_penalty.to_string()),
        (
            "off-take shortfall units",
            s.offtake_shortfall_units.to_string(),
        ),
        ("off-take penalty", s.offtake_penalty.to_string()),
        ("net (consumer -> supplier)", s.net.to_string()),
        (
            "flags",
            if s.flags.is_empty() {
                "-".into()
            } else {
                s.flags
                    .iter()
                    .map(|f| {
                        serde_json::to_string(f)
                            .unwrap_or_default()
                            .replace('"', "")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        (
            "units",
            "quantities in thousandths, money in minor units".into(),
        ),
    ];
    for (name, value) in rows {
        outln!("{name:<28} {value}")?;
    }
    Ok(())
}
