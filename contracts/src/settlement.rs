//! The settlement rules (v1) of one contract period, as pure functions.
//!
//! [`settle`] turns a contract's terms and a period's readings into a
//! [`Statement`]: lower and upper band, base and excess units, energy
//! charge, both shortfalls and their penalties, the net and the flags. It is
//! the very function block execution calls, the `symbiont preview
//! settlement` calculator prints and the auditor re-runs. The rules, with
//! worked examples, are in docs/settlement.md.
//!
//! Units: quantities are thousandths of the resource kind's unit (`u64`);
//! prices and penalties are minor units per whole unit; money is minor
//! units (`i64`). Products are formed in i128 and rounded with
//! [`rhe`](crate::numbers::rhe); a result that does not fit is
//! [`SettlementError::Overflow`], never a wrap or a panic.

use serde::{Deserialize, Serialize};

use crate::numbers::{self, Overflow, per_unit, rhe};

/// Basis points in a whole: 10000 bp = 100 %.
pub const BASIS_POINTS: u16 = 10_000;

/// The terms of a contract that settlement reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementTerms {
    /// Minor units per whole unit; negative is a gate fee (the supplier
    /// pays the consumer to take the stream).
    pub price: i64,
    /// Committed quantity Q per period, thousandths of the unit.
    pub committed: u64,
    /// Tolerance band t around Q, basis points (at most 10000).
    pub tolerance_bp: u16,
    /// Owed by the supplier per unit delivered short of the band.
    pub supply_penalty: u64,
    /// Owed by the consumer per unit it failed to take.
    pub offtake_penalty: u64,
    /// Price of units above the band; the contract price when absent.
    #[serde(default)]
    pub excess_price: Option<i64>,
    /// Upper bound on each penalty in one period, minor units.
    #[serde(default)]
    pub penalty_cap: Option<u64>,
    /// Largest |C - D| (thousandths) a check reading may differ by
    /// without a flag; 0 when absent.
    #[serde(default)]
    pub meter_tolerance: Option<u64>,
}

/// One period's readings. A missing availability or delivery counts as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Readings {
    /// A: what the supplier declared available, thousandths.
    pub availability: u64,
    /// D: what the billing meter measured, thousandths.
    pub delivered: u64,
    /// C: the check meter's reading, if any, thousandths.
    pub check: Option<u64>,
}

/// Something in the readings that a human should look at. Settlement
/// proceeds with D regardless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// The billing meter measured more than the supplier declared available (D > A).
    MeterDiscrepancy,
    /// The check meter differs from the billing meter by more than the tolerance.
    CheckMeterMismatch,
}

/// The period's statement. Money fields are minor units; quantities are
/// thousandths of the unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub availability: u64,
    pub delivered: u64,
    pub check: Option<u64>,
    pub lower: u64,
    pub upper: u64,
    pub base_units: u64,
    pub excess_units: u64,
    /// Owed by the consumer to the supplier (negative: a gate fee, the other way).
    pub energy_charge: i64,
    pub supply_shortfall_units: u64,
    /// Owed by the supplier to the consumer, after the cap.
    pub supply_penalty: i64,
    pub offtake_shortfall_units: u64,
    /// Owed by the consumer to the supplier, after the cap.
    pub offtake_penalty: i64,
    /// energy charge - supply penalty + off-take penalty: what the consumer
    /// owes the supplier (negative: the supplier owes the consumer).
    pub net: i64,
    /// Sorted, each at most once.
    pub flags: Vec<Flag>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    #[error("contract term {field} is invalid: {rule}")]
    InvalidTerm {
        field: &'static str,
        rule: &'static str,
    },
    #[error(transparent)]
    Overflow(#[from] Overflow),
}

impl SettlementTerms {
    pub fn validate(&self) -> Result<(), SettlementError> {
        if self.tolerance_bp > BASIS_POINTS {
            return Err(SettlementError::InvalidTerm {
                field: "tolerance_bp",
                rule: "at most 10000 basis points",
            });
        }
        Ok(())
    }

    /// Terms from a TOML document with the keys `price`, `committed`,
    /// `tolerance_bp`, `supply_penalty`, `offtake_penalty` and optionally
    /// `excess_price`, `penalty_cap`, `meter_tolerance`. Unknown keys are
    /// refused, so a misspelt optional term is an error, not a default.
    pub fn from_toml(text: &str) -> Result<SettlementTerms, String> {
        let terms: SettlementTerms = toml::from_str(text).map_err(|e| e.to_string())?;
        terms.validate().map_err(|e| e.to_string())?;
        Ok(terms)
    }

    fn excess_price(&self) -> i64 {
        self.excess_price.unwrap_or(self.price)
    }
}

/// The statement of one period under `terms` with `readings`.
pub fn settle(terms: &SettlementTerms, readings: &Readings) -> Result<Statement, SettlementError> {
    terms.validate()?;
    let (lower, upper) = band(terms)?;
    let delivered = readings.delivered;
    let availability = readings.availability;

    let base_units = delivered.min(upper);
    let excess_units = delivered.saturating_sub(upper);
    let energy_charge = numbers::add(
        per_unit(base_units, terms.price as i128, "energy charge")?,
        per_unit(excess_units, terms.excess_price() as i128, "energy charge")?,
        "energy charge",
    )?;

    let supply_shortfall_units = lower.saturating_sub(availability);
    let supply_penalty = capped(
        per_unit(
            supply_shortfall_units,
            terms.supply_penalty as i128,
            "supply penalty",
        )?,
        terms.penalty_cap,
    );
    let offtake_shortfall_units = availability.min(lower).saturating_sub(delivered);
    let offtake_penalty = capped(
        per_unit(
            offtake_shortfall_units,
            terms.offtake_penalty as i128,
            "off-take penalty",
        )?,
        terms.penalty_cap,
    );

    let net = numbers::add(
        numbers::sub(energy_charge, supply_penalty, "net")?,
        offtake_penalty,
        "net",
    )?;

    Ok(Statement {
        availability,
        delivered,
        check: readings.check,
        lower,
        upper,
        base_units,
        excess_units,
        energy_charge: numbers::to_money(energy_charge, "energy charge")?,
        supply_shortfall_units,
        supply_penalty: numbers::to_money(supply_penalty, "supply penalty")?,
        offtake_shortfall_units,
        offtake_penalty: numbers::to_money(offtake_penalty, "off-take penalty")?,
        net: numbers::to_money(net, "net")?,
        flags: flags(terms, readings),
    })
}

/// lower = rhe(Q·(10000−t), 10000), upper = rhe(Q·(10000+t), 10000).
pub fn band(terms: &SettlementTerms) -> Result<(u64, u64), SettlementError> {
    let q = terms.committed as i128;
    let t = terms.tolerance_bp as i128;
    let whole = BASIS_POINTS as i128;
    let lower = rhe(
        numbers::mul(q, whole - t, "lower band")?,
        whole,
        "lower band",
    )?;
    let upper = rhe(
        numbers::mul(q, whole + t, "upper band")?,
        whole,
        "upper band",
    )?;
    Ok((
        numbers::to_quantity(lower, "lower band")?,
        numbers::to_quantity(upper, "upper band")?,
    ))
}

fn capped(penalty: i128, cap: Option<u64>) -> i128 {
    match cap {
        Some(cap) => penalty.min(cap as i128),
        None => penalty,
    }
}

fn flags(terms: &SettlementTerms, readings: &Readings) -> Vec<Flag> {
    let mut flags = Vec::new();
    if readings.delivered > readings.availability {
        flags.push(Flag::MeterDiscrepancy);
    }
    if let Some(check) = readings.check {
        let tolerance = terms.meter_tolerance.unwrap_or(0);
        if check.abs_diff(readings.delivered) > tolerance {
            flags.push(Flag::CheckMeterMismatch);
        }
    }
    flags
}

/// Avoided emissions of a settled delivery: rhe(D·factor, 1000) grams CO2e,
/// for D in thousandths and a factor in grams per whole unit.
pub fn avoided_grams(delivered: u64, emission_factor_g: u64) -> Result<u64, Overflow> {
    let grams = per_unit(delivered, emission_factor_g as i128, "avoided emissions")?;
    numbers::to_quantity(grams, "avoided emissions")
}
