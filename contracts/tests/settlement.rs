//! The settlement rules of DESIGN.md, rule by rule, the worked examples of
//! docs/settlement.md, and property tests of the calculator and the pool
//! split.

use std::collections::BTreeMap;

use proptest::prelude::*;
use symbiont_contracts::numbers::Overflow;
use symbiont_contracts::pool::{self, PoolError};
use symbiont_contracts::settlement::{
    Flag, Readings, SettlementError, SettlementTerms, Statement, avoided_grams, band, settle,
};

/// The steam contract of docs/settlement.md: 100 GJ per period ±10 %, at
/// 90.00 per GJ, supply penalty 30.00 and off-take penalty 20.00 per GJ.
fn steam() -> SettlementTerms {
    SettlementTerms {
        price: 9_000,
        committed: 100_000,
        tolerance_bp: 1_000,
        supply_penalty: 3_000,
        offtake_penalty: 2_000,
        excess_price: None,
        penalty_cap: None,
        meter_tolerance: None,
    }
}

fn readings(availability: u64, delivered: u64) -> Readings {
    Readings {
        availability,
        delivered,
        check: None,
    }
}

// --- rule by rule --------------------------------------------------------

#[test]
fn band_is_committed_quantity_plus_minus_tolerance() {
    assert_eq!(band(&steam()).unwrap(), (90_000, 110_000));
    // Q = 1 thousandth, t = 50 %: 0.5 -> 0 and 1.5 -> 2 (half to even).
    let tiny = SettlementTerms {
        committed: 1,
        tolerance_bp: 5_000,
        ..steam()
    };
    assert_eq!(band(&tiny).unwrap(), (0, 2));
    // Q = 3, t = 50 %: 1.5 -> 2 and 4.5 -> 4.
    let three = SettlementTerms {
        committed: 3,
        tolerance_bp: 5_000,
        ..steam()
    };
    assert_eq!(band(&three).unwrap(), (2, 4));
}

#[test]
fn tolerance_above_10000_bp_is_an_invalid_term() {
    let terms = SettlementTerms {
        tolerance_bp: 10_001,
        ..steam()
    };
    assert_eq!(
        settle(&terms, &readings(0, 0)),
        Err(SettlementError::InvalidTerm {
            field: "tolerance_bp",
            rule: "at most 10000 basis points"
        })
    );
}

#[test]
fn delivery_inside_the_band_is_all_base_at_the_price() {
    let s = settle(&steam(), &readings(100_000, 100_000)).unwrap();
    assert_eq!((s.base_units, s.excess_units), (100_000, 0));
    assert_eq!(s.energy_charge, 900_000); // 100 GJ x 90.00
    assert_eq!((s.supply_penalty, s.offtake_penalty), (0, 0));
    assert_eq!(s.net, 900_000);
    assert!(s.flags.is_empty());
}

#[test]
fn delivery_above_the_band_is_excess_at_the_contract_price_by_default() {
    let s = settle(&steam(), &readings(130_000, 120_000)).unwrap();
    assert_eq!((s.base_units, s.excess_units), (110_000, 10_000));
    assert_eq!(s.energy_charge, 120 * 9_000);
}

#[test]
fn excess_units_use_the_excess_price_when_set() {
    let terms = SettlementTerms {
        excess_price: Some(6_000),
        ..steam()
    };
    let s = settle(&terms, &readings(125_000, 120_000)).unwrap();
    // 110 GJ x 90.00 + 10 GJ x 60.00
    assert_eq!(s.energy_charge, 990_000 + 60_000);
    assert_eq!(s.net, 1_050_000);
}

#[test]
fn energy_charge_rounds_half_to_even_per_component() {
    let terms = SettlementTerms {
        price: 500, // 5.00 per unit: one thousandth costs half a minor unit
        committed: 0,
        tolerance_bp: 0,
        supply_penalty: 0,
        offtake_penalty: 0,
        excess_price: Some(1_500),
        penalty_cap: None,
        meter_tolerance: None,
    };
    // committed 0: upper 0, everything is excess at 1.5 minor units per thousandth.
    let one = settle(&terms, &readings(10, 1)).unwrap();
    assert_eq!((one.excess_units, one.energy_charge), (1, 2)); // 1.5 -> 2
    let three = settle(&terms, &readings(10, 3)).unwrap();
    assert_eq!(three.energy_charge, 4); // 4.5 -> 4
    let base_only = SettlementTerms {
        committed: 1_000_000,
        ..terms
    };
    assert_eq!(
        settle(&base_only, &readings(10, 1)).unwrap().energy_charge,
        0
    ); // 0.5 -> 0
    assert_eq!(
        settle(&base_only, &readings(10, 3)).unwrap().energy_charge,
        2
    ); // 1.5 -> 2
}

#[test]
fn supply_shortfall_is_measured_against_availability() {
    let s = settle(&steam(), &readings(85_000, 85_000)).unwrap();
    assert_eq!(s.supply_shortfall_units, 5_000);
    assert_eq!(s.supply_penalty, 15_000); // 5 GJ x 30.00
    assert_eq!(s.offtake_shortfall_units, 0);
    assert_eq!(s.net, 85 * 9_000 - 15_000);
}

#[test]
fn offtake_shortfall_is_what_was_available_up_to_the_band_but_not_taken() {
    // Available above the band floor: the consumer had to take 90 GJ.
    let s = settle(&steam(), &readings(95_000, 60_000)).unwrap();
    assert_eq!(s.offtake_shortfall_units, 30_000);
    assert_eq!(s.offtake_penalty, 60_000);
    // Available below the floor: it only had to take what was available.
    let s = settle(&steam(), &readings(70_000, 60_000)).unwrap();
    assert_eq!(s.offtake_shortfall_units, 10_000);
    assert_eq!(s.supply_shortfall_units, 20_000);
    assert_eq!(s.net, 60 * 9_000 - 60_000 + 20_000);
}

#[test]
fn missing_readings_count_as_zero() {
    let s = settle(&steam(), &Readings::default()).unwrap();
    assert_eq!(s.supply_shortfall_units, 90_000);
    assert_eq!(s.offtake_shortfall_units, 0);
    assert_eq!(s.energy_charge, 0);
    assert_eq!(s.net, -270_000);
}

#[test]
fn each_penalty_is_capped_separately() {
    let terms = SettlementTerms {
        penalty_cap: Some(25_000),
        ..steam()
    };
    let s = settle(&terms, &readings(70_000, 40_000)).unwrap();
    // Uncapped: supply 20 GJ x 30.00 = 60000, off-take 30 GJ x 20.00 = 60000.
    assert_eq!((s.supply_penalty, s.offtake_penalty), (25_000, 25_000));
    assert_eq!(s.net, 40 * 9_000);
    // Below the cap nothing changes.
    let s = settle(&terms, &readings(85_000, 85_000)).unwrap();
    assert_eq!(s.supply_penalty, 15_000);
}

#[test]
fn delivered_above_available_is_flagged_and_settled_on_delivered() {
    let s = settle(&steam(), &readings(95_000, 100_000)).unwrap();
    assert_eq!(s.flags, vec![Flag::MeterDiscrepancy]);
    assert_eq!(s.energy_charge, 900_000);
}

#[test]
fn check_meter_outside_tolerance_is_flagged() {
    let with_check = |check, tolerance| {
        let terms = SettlementTerms {
            meter_tolerance: tolerance,
            ..steam()
        };
        let r = Readings {
            availability: 100_000,
            delivered: 100_000,
            check: Some(check),
        };
        settle(&terms, &r).unwrap().flags
    };
    assert_eq!(with_check(100_500, Some(500)), vec![]);
    assert_eq!(with_check(99_500, Some(500)), vec![]);
    assert_eq!(
        with_check(100_501, Some(500)),
        vec![Flag::CheckMeterMismatch]
    );
    assert_eq!(
        with_check(99_499, Some(500)),
        vec![Flag::CheckMeterMismatch]
    );
    // No tolerance set: any difference is flagged.
    assert_eq!(with_check(100_001, None), vec![Flag::CheckMeterMismatch]);
    assert_eq!(with_check(100_000, None), vec![]);
}

#[test]
fn overflow_is_a_typed_error() {
    let terms = SettlementTerms {
        price: i64::MAX,
        committed: u64::MAX / 2,
        ..steam()
    };
    assert_eq!(
        settle(&terms, &readings(0, u64::MAX / 2)),
        Err(SettlementError::Overflow(Overflow {
            what: "energy charge"
        }))
    );
    let huge = SettlementTerms {
        committed: u64::MAX,
        ..steam()
    };
    assert_eq!(
        settle(&huge, &readings(0, 0)),
        Err(SettlementError::Overflow(Overflow { what: "upper band" }))
    );
}

#[test]
fn avoided_emissions_round_half_to_even() {
    // 12.5 GJ at 56 000 g per GJ = 700 000 g
    assert_eq!(avoided_grams(12_500, 56_000), Ok(700_000));
    // 0.001 t at 500 g/t = 0.5 g -> 0; 0.003 t -> 1.5 g -> 2
    assert_eq!(avoided_grams(1, 500), Ok(0));
    assert_eq!(avoided_grams(3, 500), Ok(2));
    assert!(avoided_grams(u64::MAX, u64::MAX).is_err());
}

// --- the worked examples of docs/settlement.md ---------------------------

#[test]
fn worked_example_supply_shortfall() {
    let s = settle(&steam(), &readings(80_000, 80_000)).unwrap();
    let expected = Statement {
        availability: 80_000,
        delivered: 80_000,
        check: None,
        lower: 90_000,
        upper: 110_000,
        base_units: 80_000,
        excess_units: 0,
        energy_charge: 720_000,
        supply_shortfall_units: 10_000,
        supply_penalty: 30_000,
        offtake_shortfall_units: 0,
        offtake_penalty: 0,
        net: 690_000,
        flags: vec![],
    };
    assert_eq!(s, expected);
}

#[test]
fn worked_example_offtake_failure() {
    let s = settle(&steam(), &readings(100_000, 70_000)).unwrap();
    assert_eq!(s.energy_charge, 630_000);
    assert_eq!((s.supply_shortfall_units, s.supply_penalty), (0, 0));
    assert_eq!(
        (s.offtake_shortfall_units, s.offtake_penalty),
        (20_000, 40_000)
    );
    assert_eq!(s.net, 670_000);
}

#[test]
fn worked_example_gate_fee() {
    let fly_ash = SettlementTerms {
        price: -15_000,
        committed: 50_000,
        tolerance_bp: 500,
        supply_penalty: 0,
        offtake_penalty: 10_000,
        excess_price: None,
        penalty_cap: None,
        meter_tolerance: None,
    };
    let s = settle(&fly_ash, &readings(50_000, 47_250)).unwrap();
    assert_eq!((s.lower, s.upper), (47_500, 52_500));
    assert_eq!(s.energy_charge, -708_750);
    assert_eq!((s.offtake_shortfall_units, s.offtake_penalty), (250, 2_500));
    assert_eq!(s.net, -706_250);
}

#[test]
fn worked_example_cap() {
    let terms = SettlementTerms {
        penalty_cap: Some(20_000),
        ..steam()
    };
    let s = settle(&terms, &readings(0, 0)).unwrap();
    assert_eq!(s.supply_shortfall_units, 90_000);
    assert_eq!(s.supply_penalty, 20_000); // 270 000 uncapped
    assert_eq!(s.net, -20_000);
}

#[test]
fn worked_example_flags() {
    let terms = SettlementTerms {
        meter_tolerance: Some(500),
        ..steam()
    };
    let r = Readings {
        availability: 100_000,
        delivered: 104_000,
        check: Some(103_000),
    };
    let s = settle(&terms, &r).unwrap();
    assert_eq!(
        s.flags,
        vec![Flag::MeterDiscrepancy, Flag::CheckMeterMismatch]
    );
    assert_eq!(s.net, 936_000);
}

fn keys(pairs: &[(&str, u16)]) -> BTreeMap<String, u16> {
    pairs.iter().map(|(m, k)| (m.to_string(), *k)).collect()
}

#[test]
fn worked_example_pool_with_remainders() {
    let k = keys(&[("alpha", 3_333), ("beta", 3_333), ("gamma", 3_334)]);
    let parts = pool::split(200, &k).unwrap();
    // floors 66/66/66, remainders 6600/6600/6800: gamma first, then the
    // tie alpha/beta goes to alpha (ascending id).
    assert_eq!(
        parts,
        vec![
            ("alpha".into(), 67),
            ("beta".into(), 66),
            ("gamma".into(), 67)
        ]
    );
    let costs = pool::split(-200, &k).unwrap();
    assert_eq!(
        costs,
        vec![
            ("alpha".into(), -67),
            ("beta".into(), -66),
            ("gamma".into(), -67)
        ]
    );
}

#[test]
fn pool_keys_must_sum_to_10000() {
    assert_eq!(
        pool::split(100, &keys(&[("a", 5_000), ("b", 4_999)])),
        Err(PoolError::KeysNotWhole { sum: 9_999 })
    );
    assert_eq!(
        pool::split(100, &BTreeMap::new()),
        Err(PoolError::NoMembers)
    );
    assert_eq!(
        pool::split(100, &keys(&[("a", 10_000), ("b", 0)])),
        Err(PoolError::ZeroKey { member: "b".into() })
    );
}

#[test]
fn pool_split_of_extremes() {
    let whole = keys(&[("only", 10_000)]);
    assert_eq!(
        pool::split(i64::MIN, &whole).unwrap(),
        vec![("only".into(), i64::MIN)]
    );
    let halves = keys(&[("a", 5_000), ("b", 5_000)]);
    // 1 unit, equal remainders: the tie goes to "a".
    assert_eq!(
        pool::split(1, &halves).unwrap(),
        vec![("a".into(), 1), ("b".into(), 0)]
    );
    assert_eq!(
        pool::split(0, &halves).unwrap(),
        vec![("a".into(), 0), ("b".into(), 0)]
    );
}

// --- properties ----------------------------------------------------------

/// An independent reference: the same rules written with truncating
/// division, all in i128, no narrowing.
fn reference_rhe(x: i128, d: i128) -> i128 {
    let q = x / d;
    let r = x % d; // same sign as x
    let twice = 2 * r.abs();
    let away = if x < 0 { -1 } else { 1 };
    if twice > d || (twice == d && q % 2 != 0) {
        q + away
    } else {
        q
    }
}

struct Reference {
    lower: i128,
    upper: i128,
    /// None: an intermediate product does not even fit in i128.
    energy: Option<i128>,
    supply_penalty: Option<i128>,
    offtake_penalty: Option<i128>,
    net: Option<i128>,
}

fn reference(t: &SettlementTerms, r: &Readings) -> Reference {
    let q = t.committed as i128;
    let tol = t.tolerance_bp as i128;
    let lower = reference_rhe(q * (10_000 - tol), 10_000);
    let upper = reference_rhe(q * (10_000 + tol), 10_000);
    let d = r.delivered as i128;
    let a = r.availability as i128;
    let base = d.min(upper);
    let excess = (d - upper).max(0);
    let money = |units: i128, rate: i128| units.checked_mul(rate).map(|x| reference_rhe(x, 1000));
    let energy = money(base, t.price as i128)
        .zip(money(excess, t.excess_price.unwrap_or(t.price) as i128))
        .map(|(b, e)| b + e);
    let cap = |p: i128| t.penalty_cap.map_or(p, |c| p.min(c as i128));
    let supply_penalty = money((lower - a).max(0), t.supply_penalty as i128).map(cap);
    let offtake_penalty = money((a.min(lower) - d).max(0), t.offtake_penalty as i128).map(cap);
    let net = energy
        .zip(supply_penalty)
        .zip(offtake_penalty)
        .map(|((e, s), o)| e - s + o);
    Reference {
        lower,
        upper,
        energy,
        supply_penalty,
        offtake_penalty,
        net,
    }
}

fn fits_i64(x: Option<i128>) -> bool {
    x.is_some_and(|x| i64::try_from(x).is_ok())
}

fn any_terms() -> impl Strategy<Value = SettlementTerms> {
    (
        (
            any::<i64>(),
            prop_oneof![0..1_000_000_000u64, any::<u64>()],
            prop_oneof![9 => 0..=10_000u16, 1 => any::<u16>()],
        ),
        (any::<u64>(), any::<u64>()),
        (
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
        ),
    )
        .prop_map(
            |((price, committed, tolerance_bp), (sp, op), (excess_price, penalty_cap, mt))| {
                SettlementTerms {
                    price,
                    committed,
                    tolerance_bp,
                    supply_penalty: sp,
                    offtake_penalty: op,
                    excess_price,
                    penalty_cap,
                    meter_tolerance: mt,
                }
            },
        )
}

fn small_terms() -> impl Strategy<Value = SettlementTerms> {
    (
        (-100_000i64..100_000, 0..1_000_000u64, 0..=10_000u16),
        (0..100_000u64, 0..100_000u64),
        (
            proptest::option::of(-100_000i64..100_000),
            proptest::option::of(0..1_000_000u64),
            proptest::option::of(0..10_000u64),
        ),
    )
        .prop_map(
            |((price, committed, tolerance_bp), (sp, op), (excess_price, penalty_cap, mt))| {
                SettlementTerms {
                    price,
                    committed,
                    tolerance_bp,
                    supply_penalty: sp,
                    offtake_penalty: op,
                    excess_price,
                    penalty_cap,
                    meter_tolerance: mt,
                }
            },
        )
}

fn any_readings() -> impl Strategy<Value = Readings> {
    (
        prop_oneof![0..2_000_000u64, any::<u64>()],
        prop_oneof![0..2_000_000u64, any::<u64>()],
        proptest::option::of(0..2_000_000u64),
    )
        .prop_map(|(availability, delivered, check)| Readings {
            availability,
            delivered,
            check,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Never panics; overflow is exactly the typed error, and otherwise the
    /// statement matches the independent reference.
    #[test]
    fn settle_matches_reference_or_reports_overflow(t in any_terms(), r in any_readings()) {
        let result = settle(&t, &r);
        if t.tolerance_bp > 10_000 {
            let invalid = matches!(
                result,
                Err(SettlementError::InvalidTerm { field: "tolerance_bp", .. })
            );
            prop_assert!(invalid, "tolerance above 10000 bp must be refused");
            return Ok(());
        }
        let reference = reference(&t, &r);
        let fits = u64::try_from(reference.upper).is_ok()
            && fits_i64(reference.energy)
            && fits_i64(reference.supply_penalty)
            && fits_i64(reference.offtake_penalty)
            && fits_i64(reference.net);
        match result {
            Ok(s) => {
                prop_assert!(fits);
                prop_assert_eq!(s.lower as i128, reference.lower);
                prop_assert_eq!(s.upper as i128, reference.upper);
                prop_assert_eq!(Some(s.energy_charge as i128), reference.energy);
                prop_assert_eq!(Some(s.supply_penalty as i128), reference.supply_penalty);
                prop_assert_eq!(Some(s.offtake_penalty as i128), reference.offtake_penalty);
                prop_assert_eq!(Some(s.net as i128), reference.net);
            }
            Err(SettlementError::Overflow(_)) => prop_assert!(!fits),
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    /// Invariants of every statement of realistic terms.
    #[test]
    fn statement_invariants(t in small_terms(), r in any_readings()) {
        let r = Readings { availability: r.availability % 4_000_000, delivered: r.delivered % 4_000_000, ..r };
        let s = settle(&t, &r).unwrap();
        prop_assert!(s.lower <= t.committed && t.committed <= s.upper);
        prop_assert_eq!(s.base_units + s.excess_units, r.delivered);
        prop_assert!(s.base_units <= s.upper);
        prop_assert_eq!(s.net, s.energy_charge - s.supply_penalty + s.offtake_penalty);
        prop_assert!(s.supply_penalty >= 0 && s.offtake_penalty >= 0);
        if let Some(cap) = t.penalty_cap {
            prop_assert!(s.supply_penalty as u64 <= cap && s.offtake_penalty as u64 <= cap);
        }
        // A supplier that makes the floor available is never penalized, and
        // a consumer that takes the floor (or all that was available) neither.
        if r.availability >= s.lower { prop_assert_eq!(s.supply_penalty, 0); }
        if r.delivered >= s.lower.min(r.availability) { prop_assert_eq!(s.offtake_penalty, 0); }
        prop_assert_eq!(s.flags.contains(&Flag::MeterDiscrepancy), r.delivered > r.availability);
    }

    #[test]
    fn rhe_matches_reference(x in any::<i64>(), d in 1..100_000i64) {
        let x = x as i128 * 1_000_003;
        prop_assert_eq!(
            symbiont_contracts::numbers::rhe(x, d as i128, "p").unwrap(),
            reference_rhe(x, d as i128)
        );
    }

    /// The parts always add up to the whole, each within one unit of the
    /// exact share, with the sign of the whole.
    #[test]
    fn pool_parts_add_up_to_the_whole(
        amount in any::<i64>(),
        cuts in proptest::collection::btree_set(1..10_000u16, 0..20),
    ) {
        // Cut 0..10000 at distinct points: keys above 0 summing to 10000.
        let mut points: Vec<u16> = cuts.into_iter().collect();
        points.push(10_000);
        let mut previous = 0;
        let mut k = BTreeMap::new();
        for (i, point) in points.into_iter().enumerate() {
            // Distinct names (i < 21 and 7 is invertible mod 23), in an
            // order unrelated to the size of the key.
            k.insert(format!("m{:02}", (i * 7) % 23), point - previous);
            previous = point;
        }
        prop_assert_eq!(k.values().map(|&v| v as u32).sum::<u32>(), 10_000);
        let parts = pool::split(amount, &k).unwrap();
        let total: i128 = parts.iter().map(|(_, p)| *p as i128).sum();
        prop_assert_eq!(total, amount as i128);
        for (member, part) in &parts {
            let exact_floor = (amount as i128).abs() * k[member] as i128 / 10_000;
            let magnitude = (*part as i128).abs();
            prop_assert!(magnitude == exact_floor || magnitude == exact_floor + 1);
            prop_assert!(*part == 0 || (*part < 0) == (amount < 0));
        }
    }
}
