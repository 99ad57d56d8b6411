//! Regressions of the defects an outside review found. Each test fails on
//! the code before its fix. They name errors by their receipt codes and use
//! only transaction kinds that existed before the fixes, so they also build
//! against that code (which is how they were checked to fail there).

mod app_support;

use std::collections::BTreeMap;

use app_support::*;
use symbiont_contracts::exec;
use symbiont_contracts::genesis::{MAX_TOTAL_VOTING_POWER, Node};
use symbiont_contracts::tx::{Account, GovAction, TxKind};

fn firm(id: &str) -> Account {
    Account::Firm(id.into())
}

fn pv_keys() -> BTreeMap<String, u16> {
    BTreeMap::from([
        ("city".into(), 3_333),
        ("pharma".into(), 3_333),
        ("power".into(), 3_334),
    ])
}

// --- pools bind firms that never agreed ------------------------------------

#[test]
fn a_pool_binds_no_firm_before_every_member_has_joined() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    // An operator key creates a pool naming three firms; none has joined.
    let pool = park.ok(
        "power-op",
        TxKind::CreatePool {
            name: "Joint PV field".into(),
            keys: pv_keys(),
            start_ms: start,
            period_ms: DAY,
        },
    );
    park.advance_to(start);
    // An invented cost would make city and pharma owe power.
    park.rejected_code(
        "power-op",
        TxKind::PostPoolAmount {
            pool,
            period: 0,
            amount: -1_000_000,
        },
        "pool_not_active",
    );
    park.advance_to(start + DAY);
    park.rejected_code(
        "power-op",
        TxKind::SplitPool { pool, period: 0 },
        "pool_not_active",
    );
    assert_eq!(exec::balance(&park.state, &firm("city")), 0);
}

#[test]
fn a_contract_cannot_pay_into_a_pool_its_members_have_not_joined() {
    let mut park = Park::new().with_staff();
    let pool = park.ok(
        "power-op",
        TxKind::CreatePool {
            name: "Joint CHP plant".into(),
            keys: BTreeMap::from([("city".into(), 4_000), ("power".into(), 6_000)]),
            start_ms: park.time_ms,
            period_ms: DAY,
        },
    );
    let mut terms = steam_terms(park.time_ms + HOUR);
    terms.gain_pool = Some(pool);
    park.rejected_code(
        "power-op",
        TxKind::ProposeContract { terms },
        "pool_not_active",
    );
}

#[test]
fn a_pool_operator_cannot_acknowledge_its_own_payment_to_the_pool() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    // Power's admin creates a pool of power alone: it has joined by
    // creating it, so the pool is active.
    let pool = park.ok(
        "power",
        TxKind::CreatePool {
            name: "Power's own field".into(),
            keys: BTreeMap::from([("power".into(), 10_000)]),
            start_ms: start,
            period_ms: DAY,
        },
    );
    park.advance_to(start);
    park.ok(
        "power-op",
        TxKind::PostPoolAmount {
            pool,
            period: 0,
            amount: 250,
        },
    );
    park.advance_to(start + DAY);
    park.ok("power-op", TxKind::SplitPool { pool, period: 0 });
    assert_eq!(
        exec::obligation(&park.state, &firm("power"), &Account::Pool(pool)),
        250
    );
    // Power operates the pool, but it is also the payer.
    park.rejected_code(
        "power-op",
        TxKind::AcknowledgePayment {
            payer: firm("power"),
            payee: Account::Pool(pool),
            amount: 250,
        },
        "own_payment",
    );
}

#[test]
fn nobody_acknowledges_a_payment_to_itself() {
    let mut park = Park::new().with_staff();
    park.rejected_code(
        "power-op",
        TxKind::AcknowledgePayment {
            payer: firm("power"),
            payee: firm("power"),
            amount: 1,
        },
        "own_payment",
    );
}

// --- settling early shuts the other party out ------------------------------

#[test]
fn the_consumer_cannot_settle_before_the_suppliers_availability_is_in() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    let id = signed_contract(&mut park, steam_terms(start));
    park.advance_to(start + 10);
    park.ok(
        "pharma-meter",
        TxKind::RecordDelivery {
            contract: id,
            period: 0,
            quantity: 100_000,
        },
    );
    park.ok(
        "power-check",
        TxKind::RecordCheck {
            contract: id,
            period: 0,
            quantity: 100_000,
        },
    );
    park.advance_to(start + HOUR);
    // Settling now would count availability as 0: a supply penalty of
    // 270 000, and the supplier's reading refused afterwards.
    let settle = TxKind::SettlePeriod {
        contract: id,
        period: 0,
    };
    park.rejected_code("pharma-op", settle.clone(), "readings_missing");
    park.ok(
        "power-op",
        TxKind::RecordAvailability {
            contract: id,
            period: 0,
            quantity: 100_000,
        },
    );
    // Every reading is in: the period settles before metering closes.
    park.ok("pharma-op", settle);
    let settled = exec::period(&park.state, &id, 0).unwrap().settled.unwrap();
    assert_eq!(settled.statement.supply_penalty, 0);
    assert_eq!(settled.net, 900_000);
}

// --- governance bounds total power by what consensus can count -------------

/// Propose `action` (power) and vote for it (pharma, city); hub's vote
/// would make it pass. Returns hub's vote.
fn all_but_the_last_vote(park: &mut Park, action: GovAction) -> TxKind {
    let expires_ms = park.time_ms + DAY;
    let proposal = park.ok("power", TxKind::Propose { action, expires_ms });
    for voter in ["pharma", "city"] {
        park.ok(
            voter,
            TxKind::Vote {
                proposal,
                approve: true,
            },
        );
    }
    TxKind::Vote {
        proposal,
        approve: true,
    }
}

#[test]
fn set_power_accepts_exactly_the_largest_total_and_refuses_one_more() {
    let mut park = Park::new();
    // Four validators of power 1: n-power at max - 3 makes the total max.
    let vote = all_but_the_last_vote(
        &mut park,
        GovAction::SetPower {
            node: "n-power".into(),
            power: MAX_TOTAL_VOTING_POWER - 3,
        },
    );
    park.ok("hub", vote);
    let total: u128 = exec::current_nodes(&park.state)
        .iter()
        .map(|n| n.power as u128)
        .sum();
    assert_eq!(total, MAX_TOTAL_VOTING_POWER as u128);
    let vote = all_but_the_last_vote(
        &mut park,
        GovAction::SetPower {
            node: "n-pharma".into(),
            power: 2,
        },
    );
    park.rejected_code("hub", vote, "total_power_too_large");
}

#[test]
fn add_node_accepts_exactly_the_largest_total_and_refuses_one_more() {
    let mut park = Park::new();
    let node = |id: &str, power| Node {
        id: id.into(),
        firm: "hub".into(),
        site: "Hub office".into(),
        key: public(&format!("{id}-node")),
        validator: true,
        power,
    };
    // Four validators of power 1 already.
    let vote = all_but_the_last_vote(
        &mut park,
        GovAction::AddNode(node("n-hub", MAX_TOTAL_VOTING_POWER - 4)),
    );
    park.ok("hub", vote);
    let vote = all_but_the_last_vote(&mut park, GovAction::AddNode(node("n-hub-2", 1)));
    park.rejected_code("hub", vote, "total_power_too_large");
    assert!(
        !park
            .state
            .contains(&symbiont_contracts::state::Key::Node("n-hub-2".into()))
    );
}
