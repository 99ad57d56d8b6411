//! `symbiont genesis`: validate a genesis file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;
use symbiont_contracts::Genesis;

use crate::output::outln;

#[derive(Subcommand)]
pub enum GenesisCommand {
    /// Parse and validate a genesis TOML file; print its hash and a summary.
    ///
    /// Exits non-zero with the reason if the file is invalid (duplicate ids,
    /// zero voting power, a node of an unknown firm, a bad key, ...). Every
    /// node of a network must start from a genesis with the same hash.
    ///
    /// Example: symbiont genesis check deploy/genesis/kalundborg.toml
    Check {
        /// The genesis file, e.g. deploy/genesis/kalundborg.toml.
        file: PathBuf,
    },
}

#[derive(Serialize)]
struct Report<'a> {
    file: String,
    genesis_hash: String,
    validators: usize,
    total_power: u64,
    /// Power needed for a quorum: more than 2/3 of the total.
    quorum_power: u64,
    genesis: &'a Genesis,
}

pub fn run(command: GenesisCommand, json: bool) -> Result<()> {
    match command {
        GenesisCommand::Check { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let genesis =
                Genesis::from_toml(&text).with_context(|| format!("in {}", file.display()))?;
            let total_power = genesis.total_power();
            let report = Report {
                file: file.display().to_string(),
                genesis_hash: genesis.hash().to_hex(),
                validators: genesis.validators().count(),
                total_power,
                quorum_power: quorum(total_power),
                genesis: &genesis,
            };
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                print_table(&report)?;
            }
            Ok(())
        }
    }
}

/// The least power that is more than 2/3 of `total`.
fn quorum(total: u64) -> u64 {
    ((total as u128 * 2) / 3 + 1) as u64
}

fn print_table(report: &Report) -> std::io::Result<()> {
    let genesis = report.genesis;
    outln!("genesis      {}  (valid)", report.file)?;
    outln!("hash         {}", report.genesis_hash)?;
    outln!("chain id     {}", genesis.chain_id)?;
    outln!(
        "currency     {} ({} decimal places)",
        genesis.currency.code,
        genesis.currency.minor_units
    )?;
    outln!(
        "validators   {} of {} nodes, total power {}, quorum {}",
        report.validators,
        genesis.nodes.len(),
        report.total_power,
        report.quorum_power
    )?;
    outln!()?;
    let names: Vec<String> = genesis
        .firms
        .iter()
        .map(|firm| {
            if firm.facilitator {
                format!("{} (facilitator)", firm.name)
            } else {
                firm.name.clone()
            }
        })
        .collect();
    let width = names
        .iter()
        .map(|name| name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    outln!("{:<20} {:<width$}  ADMIN KEY", "FIRM", "NAME")?;
    for (firm, name) in genesis.firms.iter().zip(&names) {
        outln!("{:<20} {:<width$}  {}", firm.id, name, firm.admin_key)?;
    }
    outln!()?;
    outln!("NODE                 FIRM                 VALIDATOR  POWER  SITE")?;
    for node in &genesis.nodes {
        let validator = if node.validator { "yes" } else { "no" };
        outln!(
            "{:<20} {:<20} {:<10} {:>5}  {}",
            node.id,
            node.firm,
            validator,
            node.power,
            node.site
        )?;
    }
    outln!()?;
    outln!("RESOURCE KIND        UNIT  CO2e g/UNIT  CLASS       EWC        NAME")?;
    for kind in &genesis.resource_kinds {
        let class = if kind.waste { "waste" } else { "by-product" };
        outln!(
            "{:<20} {:<5} {:>11}  {:<11} {:<10} {}",
            kind.id,
            kind.unit.symbol(),
            kind.emission_factor_g,
            class,
            kind.ewc_code.as_deref().unwrap_or("-"),
            kind.name
        )?;
    }
    Ok(())
}
