//! Block execution, transaction kind by kind: each happy path, and each
//! rejection with its typed error and an unchanged state.

mod app_support;

use std::collections::BTreeMap;

use app_support::*;
use symbiont_contracts::exec::{self, AppError, BlockError, BlockInfo};
use symbiont_contracts::genesis::{Firm, Node, ResourceKind, Unit};
use symbiont_contracts::hash::Hash;
use symbiont_contracts::pool::PoolError;
use symbiont_contracts::settlement::{self, Flag, Readings, SettlementTerms};
use symbiont_contracts::state::{
    self, AvoidedAccount, ContractStatus, DisputeStatus, Key, KeyRecord, Pool, PoolPeriod,
    PostingStatus, Role,
};
use symbiont_contracts::tx::{
    Account, GovAction, KeyRole, ListingTerms, SignedTx, TxBody, TxError, TxKind,
};

fn firm(id: &str) -> Account {
    Account::Firm(id.into())
}

fn balance_sum(park: &Park) -> i128 {
    exec::balances(&park.state)
        .iter()
        .map(|(_, b)| *b as i128)
        .sum()
}

// --- membership --------------------------------------------------------

#[test]
fn admin_authorizes_and_revokes_keys_of_its_firm() {
    let mut park = Park::new();
    park.ok(
        "power",
        TxKind::AuthorizeKey {
            firm: "power".into(),
            key: public("power-op"),
            role: KeyRole::Operator,
        },
    );
    let record: KeyRecord = park.state.get(&Key::Key(public("power-op"))).unwrap();
    assert_eq!(
        record,
        KeyRecord {
            firm: "power".into(),
            role: Role::Operator
        }
    );
    park.ok(
        "power",
        TxKind::RevokeKey {
            firm: "power".into(),
            key: public("power-op"),
        },
    );
    assert!(!park.state.contains(&Key::Key(public("power-op"))));
    // A revoked key's transactions are refused and consume nothing.
    park.rejected(
        "power-op",
        TxKind::Withdraw {
            listing: Hash::ZERO,
        },
        AppError::UnknownSigner(public("power-op")),
    );
}

#[test]
fn key_management_rejections() {
    let mut park = Park::new().with_staff();
    let authorize = |firm: &str, key: &str| TxKind::AuthorizeKey {
        firm: firm.into(),
        key: public(key),
        role: KeyRole::Operator,
    };
    park.rejected(
        "power-op",
        authorize("power", "x"),
        AppError::Unauthorized { need: "admin key" },
    );
    park.rejected(
        "power",
        authorize("pharma", "x"),
        AppError::WrongFirm {
            signer_firm: "power".into(),
            firm: "pharma".into(),
        },
    );
    park.rejected(
        "power",
        authorize("power", "pharma-op"),
        AppError::KeyInUse(public("pharma-op")),
    );
    park.rejected(
        "power",
        authorize("power", "pharma"),
        AppError::KeyInUse(public("pharma")),
    );
    let mut identity = [0u8; 32];
    identity[0] = 1; // the identity point: small order, not a usable key
    let weak = symbiont_contracts::keys::PublicKey(identity);
    park.rejected(
        "power",
        TxKind::AuthorizeKey {
            firm: "power".into(),
            key: weak,
            role: KeyRole::Meter,
        },
        AppError::InvalidKey(weak),
    );
    park.rejected(
        "power",
        authorize("power", "n-power-node"),
        AppError::KeyInUse(public("n-power-node")),
    );
    park.rejected(
        "power",
        TxKind::RevokeKey {
            firm: "power".into(),
            key: public("power"),
        },
        AppError::CannotRevokeAdmin,
    );
    park.rejected(
        "power",
        TxKind::RevokeKey {
            firm: "power".into(),
            key: public("pharma-op"),
        },
        AppError::UnknownKey(public("pharma-op")),
    );
    park.rejected(
        "stranger",
        authorize("power", "x"),
        AppError::UnknownSigner(public("stranger")),
    );
}

#[test]
fn envelope_failures_change_nothing() {
    let mut park = Park::new();
    let before = park.snapshot();
    let kind = TxKind::Withdraw {
        listing: Hash::ZERO,
    };
    let mut tampered = park.tx("power", kind.clone());
    tampered.signature.0[0] ^= 1;
    let wrong_chain = SignedTx::sign(
        TxBody {
            chain_id: "other".into(),
            nonce: 1,
            kind: kind.clone(),
        },
        &keypair("power"),
    );
    let skipped_nonce = park.tx_ahead("power", kind.clone(), 1);
    let outcome = park.block(&[tampered.clone(), wrong_chain, skipped_nonce]);
    assert_eq!(
        outcome.results[0].1,
        Err(AppError::Tx(TxError::BadSignature {
            signer: public("power")
        }))
    );
    assert_eq!(
        outcome.results[1].1.as_ref().unwrap_err().code(),
        "wrong_chain_id"
    );
    assert_eq!(
        outcome.results[2].1,
        Err(AppError::Tx(TxError::BadNonce {
            signer: public("power"),
            expected: 1,
            got: 2
        }))
    );
    assert_eq!(park.nonce_of(&public("power")), 0);
    assert!(park.snapshot() == before);
    assert_eq!(exec::receipt(&park.state, &tampered.id()), None);
    // Nothing but the meta record was written.
    assert_eq!(outcome.writes.len(), 1);
}

#[test]
fn a_failed_transaction_consumes_its_nonce_and_cannot_be_replayed() {
    let mut park = Park::new().with_staff();
    let withdraw = park.tx(
        "power-op",
        TxKind::Withdraw {
            listing: Hash::ZERO,
        },
    );
    let first = park.block(std::slice::from_ref(&withdraw));
    assert_eq!(
        first.results[0].1,
        Err(AppError::UnknownListing(Hash::ZERO))
    );
    let nonce = park.nonce_of(&public("power-op"));
    assert_eq!(
        nonce, withdraw.body.nonce,
        "the failed transaction consumed its nonce"
    );
    let again = park.block(std::slice::from_ref(&withdraw));
    assert_eq!(
        again.results[0].1,
        Err(AppError::AlreadyIncluded(withdraw.id()))
    );
    // Signed afresh with the same nonce, it is refused by the nonce rule.
    let mut resigned = withdraw.body.clone();
    resigned.kind = TxKind::Withdraw {
        listing: Hash([1; 32]),
    };
    let resigned = SignedTx::sign(resigned, &keypair("power-op"));
    let again = park.block(&[resigned]);
    assert_eq!(again.results[0].1.as_ref().unwrap_err().code(), "bad_nonce");
}

// --- governance ----------------------------------------------------------

fn add_firm(id: &str) -> GovAction {
    GovAction::AddFirm(Firm {
        id: id.into(),
        name: format!("{id} firm"),
        admin_key: public(id),
        facilitator: false,
    })
}

#[test]
fn a_proposal_passes_with_more_than_two_thirds_of_the_firms() {
    let mut park = Park::new();
    let expires = park.time_ms + DAY;
    let proposal = park.ok(
        "power",
        TxKind::Propose {
            action: add_firm("biogas"),
            expires_ms: expires,
        },
    );
    // 5 firms: 3 yes is not more than 2/3, 4 is.
    park.ok(
        "pharma",
        TxKind::Vote {
            proposal,
            approve: true,
        },
    );
    park.ok(
        "city",
        TxKind::Vote {
            proposal,
            approve: false,
        },
    );
    park.ok(
        "plaster",
        TxKind::Vote {
            proposal,
            approve: true,
        },
    );
    assert!(!park.state.contains(&Key::Firm("biogas".into())));
    park.ok(
        "hub",
        TxKind::Vote {
            proposal,
            approve: true,
        },
    );
    assert!(park.state.contains(&Key::Firm("biogas".into())));
    // The new firm's admin acts at once.
    park.ok(
        "biogas",
        TxKind::AuthorizeKey {
            firm: "biogas".into(),
            key: public("biogas-op"),
            role: KeyRole::Operator,
        },
    );
    park.rejected(
        "biogas",
        TxKind::Vote {
            proposal,
            approve: true,
        },
        AppError::ProposalClosed(proposal),
    );
}

#[test]
fn governance_rejections() {
    let mut park = Park::new().with_staff();
    let expires = park.time_ms + HOUR;
    park.rejected(
        "power-op",
        TxKind::Propose {
            action: add_firm("x"),
            expires_ms: expires,
        },
        AppError::Unauthorized { need: "admin key" },
    );
    park.rejected(
        "power",
        TxKind::Propose {
            action: add_firm("x"),
            expires_ms: park.time_ms,
        },
        AppError::Invalid {
            field: "expires_ms",
            rule: "must be after the block time",
        },
    );
    park.rejected(
        "power",
        TxKind::Vote {
            proposal: Hash::ZERO,
            approve: true,
        },
        AppError::UnknownProposal(Hash::ZERO),
    );
    let proposal = park.ok(
        "power",
        TxKind::Propose {
            action: add_firm("x"),
            expires_ms: expires,
        },
    );
    park.rejected(
        "power",
        TxKind::Vote {
            proposal,
            approve: true,
        },
        AppError::AlreadyVoted("power".into()),
    );
    park.advance_to(expires);
    park.rejected(
        "pharma",
        TxKind::Vote {
            proposal,
            approve: true,
        },
        AppError::ProposalExpired(proposal),
    );
}

#[test]
fn a_passing_vote_whose_action_fails_changes_nothing() {
    let mut park = Park::new();
    let expires = park.time_ms + DAY;
    let proposal = park.ok(
        "power",
        TxKind::Propose {
            action: add_firm("pharma"),
            expires_ms: expires,
        },
    );
    for voter in ["pharma", "city"] {
        park.ok(
            voter,
            TxKind::Vote {
                proposal,
                approve: true,
            },
        );
    }
    park.rejected(
        "hub",
        TxKind::Vote {
            proposal,
            approve: true,
        },
        AppError::FirmExists("pharma".into()),
    );
}

/// Propose `action` (power) and vote for it (pharma, city, hub, as long
/// as it is open); the last vote's result.
fn vote_through(park: &mut Park, action: GovAction) -> Result<(), AppError> {
    let expires_ms = park.time_ms + DAY;
    let proposal = park.ok("power", TxKind::Propose { action, expires_ms });
    let mut last = Ok(());
    for voter in ["pharma", "city", "hub"] {
        let open: symbiont_contracts::state::Proposal =
            park.state.get(&Key::Proposal(proposal)).unwrap();
        if open.status == symbiont_contracts::state::ProposalStatus::Open {
            last = park
                .run(
                    voter,
                    TxKind::Vote {
                        proposal,
                        approve: true,
                    },
                )
                .1;
        }
    }
    last
}

fn pass(park: &mut Park, action: GovAction) {
    vote_through(park, action.clone()).unwrap_or_else(|e| panic!("{action:?}: {e}"));
}

#[test]
fn governance_adds_and_removes_nodes_and_sets_consensus_parameters() {
    let mut park = Park::new();
    let node = Node {
        id: "n-hub".into(),
        firm: "hub".into(),
        site: "Hub office".into(),
        key: public("n-hub-node"),
        validator: true,
        power: 2,
    };
    pass(&mut park, GovAction::AddNode(node.clone()));
    assert!(exec::current_nodes(&park.state).contains(&node));
    assert_eq!(
        vote_through(&mut park, GovAction::AddNode(node.clone())),
        Err(AppError::NodeExists("n-hub".into()))
    );
    pass(
        &mut park,
        GovAction::RemoveNode {
            id: "n-power".into(),
        },
    );
    assert!(!park.state.contains(&Key::Node("n-power".into())));
    let mut consensus = genesis().consensus;
    consensus.timeout_propose_ms = 400;
    pass(&mut park, GovAction::SetConsensus(consensus.clone()));
    let params: exec::Params = park.state.get(&Key::Params).unwrap();
    assert_eq!(params.consensus, consensus);
    let refused = Err(AppError::Invalid {
        field: "consensus",
        rule: symbiont_contracts::exec::CONSENSUS_RULE,
    });
    // The genesis rules, each: a zero delta, a block above 8 MiB.
    let mut zero_delta = consensus.clone();
    zero_delta.timeout_delta_ms = 0;
    assert_eq!(
        vote_through(&mut park, GovAction::SetConsensus(zero_delta)),
        refused
    );
    let mut huge = consensus.clone();
    huge.max_block_bytes = symbiont_contracts::genesis::MAX_BLOCK_BYTES + 1;
    assert_eq!(
        vote_through(&mut park, GovAction::SetConsensus(huge)),
        refused
    );
    consensus.max_block_txs = 0;
    let before = park.snapshot();
    assert_eq!(
        vote_through(&mut park, GovAction::SetConsensus(consensus)),
        refused
    );
    // Only the open proposal and its votes were recorded.
    let params: exec::Params = park.state.get(&Key::Params).unwrap();
    assert_eq!(params.consensus.max_block_txs, 1000);
    assert!(park.snapshot().len() == before.len() + 1);
    // The last validator cannot go.
    for id in ["n-pharma", "n-plaster", "n-city"] {
        pass(
            &mut park,
            GovAction::SetPower {
                node: id.into(),
                power: 0,
            },
        );
    }
    assert_eq!(
        vote_through(&mut park, GovAction::RemoveNode { id: "n-hub".into() }),
        Err(AppError::Invalid {
            field: "node",
            rule: "at least one validator must remain",
        })
    );
    assert_eq!(
        exec::current_nodes(&park.state)
            .iter()
            .filter(|n| n.validator)
            .count(),
        1
    );
}

#[test]
fn governance_removes_a_firm_and_changes_validators_and_kinds() {
    let mut park = Park::new().with_staff();
    pass(
        &mut park,
        GovAction::SetPower {
            node: "n-city".into(),
            power: 5,
        },
    );
    let city = exec::current_nodes(&park.state)
        .into_iter()
        .find(|n| n.id == "n-city")
        .unwrap();
    assert_eq!((city.validator, city.power), (true, 5));
    pass(
        &mut park,
        GovAction::RegisterKind(ResourceKind {
            id: "co2".into(),
            name: "Biogenic CO2".into(),
            unit: Unit::Tonne,
            emission_factor_g: 1_000_000,
            waste: false,
            ewc_code: None,
            quality: vec!["purity_ppm".into()],
        }),
    );
    assert!(park.state.contains(&Key::Kind("co2".into())));
    pass(
        &mut park,
        GovAction::RemoveFirm {
            id: "plaster".into(),
        },
    );
    assert!(!park.state.contains(&Key::Firm("plaster".into())));
    assert!(
        exec::current_nodes(&park.state)
            .iter()
            .all(|n| n.firm != "plaster")
    );
    park.rejected(
        "plaster-op",
        TxKind::Withdraw {
            listing: Hash::ZERO,
        },
        AppError::UnknownSigner(public("plaster-op")),
    );
    // Re-admitted under the same id, the firm starts with its admin key
    // only: the old operator key does not come back.
    pass(&mut park, add_firm("plaster"));
    park.rejected(
        "plaster-op",
        TxKind::Withdraw {
            listing: Hash::ZERO,
        },
        AppError::UnknownSigner(public("plaster-op")),
    );
    park.ok(
        "plaster",
        TxKind::AuthorizeKey {
            firm: "plaster".into(),
            key: public("plaster-op"),
            role: KeyRole::Operator,
        },
    );
}

#[test]
fn a_transaction_included_twice_keeps_its_first_receipt() {
    let mut park = Park::new();
    let tx = park.tx(
        "power",
        TxKind::AuthorizeKey {
            firm: "power".into(),
            key: public("power-op"),
            role: KeyRole::Operator,
        },
    );
    let outcome = park.block(&[tx.clone(), tx.clone()]);
    assert_eq!(outcome.results[0].1, Ok(()));
    assert_eq!(
        outcome.results[1].1,
        Err(AppError::AlreadyIncluded(tx.id()))
    );
    let later = park.block(std::slice::from_ref(&tx));
    assert_eq!(later.results[0].1, Err(AppError::AlreadyIncluded(tx.id())));
    // Only the meta record is written for the later block.
    assert_eq!(later.writes.len(), 1);
    let receipt = exec::receipt(&park.state, &tx.id()).unwrap();
    assert_eq!((receipt.height, receipt.index, receipt.error), (1, 0, None));
}

// --- registry ------------------------------------------------------------

fn gypsum() -> ResourceKind {
    ResourceKind {
        id: "gypsum".into(),
        name: "FGD gypsum".into(),
        unit: Unit::Tonne,
        emission_factor_g: 20_000,
        waste: false,
        ewc_code: Some("10 01 05".into()),
        quality: vec!["purity_pct".into()],
    }
}

#[test]
fn the_facilitator_registers_kinds_and_licences() {
    let mut park = Park::new().with_staff();
    park.ok("hub", TxKind::RegisterKind { kind: gypsum() });
    park.rejected(
        "hub",
        TxKind::RegisterKind { kind: gypsum() },
        AppError::KindExists("gypsum".into()),
    );
    park.rejected(
        "hub",
        TxKind::RegisterKind {
            kind: ResourceKind {
                id: "Gypsum 2".into(),
                ..gypsum()
            },
        },
        AppError::Invalid {
            field: "kind id",
            rule: "1 to 32 lowercase letters, digits, '-' or '_', starting with a letter or digit",
        },
    );
    park.rejected(
        "power",
        TxKind::RegisterKind {
            kind: ResourceKind {
                id: "other".into(),
                ..gypsum()
            },
        },
        AppError::NotFacilitator,
    );
    park.rejected(
        "hub-op",
        TxKind::RegisterKind {
            kind: ResourceKind {
                id: "other".into(),
                ..gypsum()
            },
        },
        AppError::Unauthorized { need: "admin key" },
    );
    park.rejected(
        "hub",
        TxKind::RegisterKind {
            kind: ResourceKind {
                id: "sludge".into(),
                waste: true,
                ewc_code: None,
                ..gypsum()
            },
        },
        AppError::Invalid {
            field: "ewc_code",
            rule: "a waste needs an EWC code",
        },
    );
    // Quality field names follow genesis's rule: ids, each once.
    let with_quality = |quality: &[&str]| TxKind::RegisterKind {
        kind: ResourceKind {
            id: "ash".into(),
            quality: quality.iter().map(|q| q.to_string()).collect(),
            ..gypsum()
        },
    };
    park.rejected(
        "hub",
        with_quality(&["moisture_pct", "Moisture %"]),
        AppError::Invalid {
            field: "quality",
            rule: "1 to 32 lowercase letters, digits, '-' or '_', starting with a letter or digit",
        },
    );
    park.rejected(
        "hub",
        with_quality(&["moisture_pct", "purity", "moisture_pct"]),
        AppError::Invalid {
            field: "quality",
            rule: "each quality field name at most once",
        },
    );
    park.ok("hub", with_quality(&["moisture_pct", "purity"]));
    let expires = park.time_ms + DAY;
    park.ok(
        "hub-op",
        TxKind::GrantLicence {
            firm: "plaster".into(),
            ewc_code: "10 01 02".into(),
            expires_ms: expires,
        },
    );
    park.rejected(
        "power",
        TxKind::GrantLicence {
            firm: "power".into(),
            ewc_code: "10 01 02".into(),
            expires_ms: expires,
        },
        AppError::NotFacilitator,
    );
    park.rejected(
        "hub",
        TxKind::GrantLicence {
            firm: "nobody".into(),
            ewc_code: "10 01 02".into(),
            expires_ms: expires,
        },
        AppError::UnknownFirm("nobody".into()),
    );
}

// --- market ----------------------------------------------------------------

fn steam_listing(valid_until_ms: u64) -> ListingTerms {
    ListingTerms {
        kind: "steam".into(),
        quantity_per_period: 100_000,
        price: 9_000,
        delivery_point: "Pharma gate 3".into(),
        quality: BTreeMap::from([("temperature_c".into(), 180)]),
        period_ms: HOUR,
        periods: 24,
        valid_until_ms,
    }
}

#[test]
fn offers_are_accepted_and_requests_withdrawn() {
    let mut park = Park::new().with_staff();
    let until = park.time_ms + HOUR;
    let offer = park.ok(
        "power-op",
        TxKind::PostOffer {
            listing: steam_listing(until),
        },
    );
    park.rejected(
        "power-op",
        TxKind::Accept { listing: offer },
        AppError::OwnListing,
    );
    park.rejected(
        "pharma-op",
        TxKind::Withdraw { listing: offer },
        AppError::NotOwner,
    );
    park.ok("pharma-op", TxKind::Accept { listing: offer });
    park.rejected(
        "plaster-op",
        TxKind::Accept { listing: offer },
        AppError::ListingClosed(offer),
    );
    // A contract may name the accepted listing; parties must match it.
    let mut terms = steam_terms(park.time_ms + HOUR);
    terms.listing = Some(offer);
    let contract = signed_contract(&mut park, terms.clone());
    assert!(park.state.contains(&Key::Contract(contract)));
    terms.consumer = "plaster".into();
    terms.billing_meter = public("plaster-meter");
    terms.check_meter = None;
    park.rejected(
        "power-op",
        TxKind::ProposeContract { terms },
        AppError::Invalid {
            field: "listing",
            rule: "parties and kind must match the accepted listing",
        },
    );

    let request = park.ok(
        "pharma-op",
        TxKind::PostRequest {
            listing: steam_listing(until),
        },
    );
    park.ok("pharma-op", TxKind::Withdraw { listing: request });
    park.rejected(
        "power-op",
        TxKind::Accept { listing: request },
        AppError::ListingClosed(request),
    );
}

#[test]
fn market_rejections() {
    let mut park = Park::new().with_staff();
    let until = park.time_ms + HOUR;
    park.rejected(
        "power-op",
        TxKind::PostOffer {
            listing: ListingTerms {
                kind: "unobtainium".into(),
                ..steam_listing(until)
            },
        },
        AppError::UnknownKind("unobtainium".into()),
    );
    park.rejected(
        "power-op",
        TxKind::PostOffer {
            listing: ListingTerms {
                quality: BTreeMap::from([("colour".into(), 1)]),
                ..steam_listing(until)
            },
        },
        AppError::Invalid {
            field: "quality",
            rule: "only the resource kind's quality fields, at most 16",
        },
    );
    park.rejected(
        "power-meter",
        TxKind::PostOffer {
            listing: steam_listing(until),
        },
        AppError::Unauthorized {
            need: "admin or operator key",
        },
    );
    park.rejected(
        "hub-op",
        TxKind::PostOffer {
            listing: steam_listing(until),
        },
        AppError::FacilitatorTrades("hub".into()),
    );
    park.rejected(
        "power-op",
        TxKind::Accept {
            listing: Hash::ZERO,
        },
        AppError::UnknownListing(Hash::ZERO),
    );
    let offer = park.ok(
        "power-op",
        TxKind::PostOffer {
            listing: steam_listing(until),
        },
    );
    park.advance_to(until);
    park.rejected(
        "pharma-op",
        TxKind::Accept { listing: offer },
        AppError::ListingExpired(offer),
    );
}

// --- contracts -------------------------------------------------------------

#[test]
fn contract_rejections() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    park.rejected(
        "plaster-op",
        TxKind::ProposeContract {
            terms: steam_terms(start),
        },
        AppError::WrongParty("plaster".into()),
    );
    let mut bad_meter = steam_terms(start);
    bad_meter.billing_meter = public("pharma-op");
    park.rejected(
        "power-op",
        TxKind::ProposeContract { terms: bad_meter },
        AppError::Invalid {
            field: "billing_meter",
            rule: "must be a meter key of the supplier or the consumer",
        },
    );
    let mut wide = steam_terms(start);
    wide.settlement.tolerance_bp = 20_000;
    park.rejected(
        "power-op",
        TxKind::ProposeContract { terms: wide },
        AppError::Settlement(settlement::SettlementError::InvalidTerm {
            field: "tolerance_bp",
            rule: "at most 10000 basis points",
        }),
    );
    let mut arbiter_party = steam_terms(start);
    arbiter_party.arbiter = Some("pharma".into());
    park.rejected(
        "power-op",
        TxKind::ProposeContract {
            terms: arbiter_party,
        },
        AppError::Invalid {
            field: "arbiter",
            rule: "must not be a party",
        },
    );
    park.rejected(
        "pharma-op",
        TxKind::Countersign {
            contract: Hash::ZERO,
        },
        AppError::UnknownContract(Hash::ZERO),
    );
    let id = park.ok(
        "power-op",
        TxKind::ProposeContract {
            terms: steam_terms(start),
        },
    );
    park.rejected(
        "power",
        TxKind::Countersign { contract: id },
        AppError::WrongParty("power".into()),
    );
    park.rejected(
        "plaster-op",
        TxKind::Countersign { contract: id },
        AppError::WrongParty("plaster".into()),
    );
    park.rejected(
        "pharma-meter",
        TxKind::Countersign { contract: id },
        AppError::Unauthorized {
            need: "admin or operator key",
        },
    );
    // Metering needs a contract in force.
    park.rejected(
        "power-op",
        TxKind::RecordAvailability {
            contract: id,
            period: 0,
            quantity: 1,
        },
        AppError::ContractNotActive(id),
    );
    park.ok("pharma-op", TxKind::Countersign { contract: id });
    park.rejected(
        "pharma-op",
        TxKind::Countersign { contract: id },
        AppError::NotProposed(id),
    );
}

fn fly_ash_terms(start_ms: u64) -> symbiont_contracts::tx::ContractTerms {
    symbiont_contracts::tx::ContractTerms {
        supplier: "power".into(),
        consumer: "plaster".into(),
        kind: "fly-ash".into(),
        delivery_point: "Silo 2".into(),
        quality: BTreeMap::new(),
        settlement: SettlementTerms {
            price: -15_000,
            committed: 50_000,
            tolerance_bp: 500,
            supply_penalty: 0,
            offtake_penalty: 10_000,
            excess_price: None,
            penalty_cap: None,
            meter_tolerance: None,
        },
        start_ms,
        period_ms: DAY,
        periods: 7,
        billing_meter: public("plaster-meter"),
        check_meter: None,
        arbiter: None,
        listing: None,
        gain_pool: None,
    }
}

#[test]
fn a_waste_contract_needs_the_takers_unexpired_licence() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    let id = park.ok(
        "power-op",
        TxKind::ProposeContract {
            terms: fly_ash_terms(start),
        },
    );
    park.rejected(
        "plaster-op",
        TxKind::Countersign { contract: id },
        AppError::LicenceMissing {
            firm: "plaster".into(),
            ewc_code: "10 01 02".into(),
        },
    );
    let expires = park.time_ms + 10_000;
    park.ok(
        "hub",
        TxKind::GrantLicence {
            firm: "plaster".into(),
            ewc_code: "10 01 02".into(),
            expires_ms: expires,
        },
    );
    park.advance_to(expires);
    park.rejected(
        "plaster-op",
        TxKind::Countersign { contract: id },
        AppError::LicenceExpired {
            firm: "plaster".into(),
            ewc_code: "10 01 02".into(),
            expires_ms: expires,
        },
    );
    park.ok(
        "hub",
        TxKind::GrantLicence {
            firm: "plaster".into(),
            ewc_code: "10 01 02".into(),
            expires_ms: expires + DAY,
        },
    );
    park.ok("plaster-op", TxKind::Countersign { contract: id });
}

#[test]
fn termination_by_agreement_or_by_the_arbiter_voids_later_periods() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    let id = signed_contract(&mut park, steam_terms(start));
    park.ok("power-op", TxKind::Terminate { contract: id });
    park.rejected(
        "power",
        TxKind::Terminate { contract: id },
        AppError::AlreadyRequested {
            firm: "power".into(),
        },
    );
    park.rejected(
        "plaster-op",
        TxKind::Terminate { contract: id },
        AppError::WrongParty("plaster".into()),
    );
    park.ok("pharma-op", TxKind::Terminate { contract: id });
    let contract: symbiont_contracts::state::Contract = park.state.get(&Key::Contract(id)).unwrap();
    assert!(matches!(contract.status, ContractStatus::Terminated { .. }));
    park.advance_to(start);
    park.rejected(
        "power-op",
        TxKind::RecordAvailability {
            contract: id,
            period: 0,
            quantity: 1,
        },
        AppError::PeriodVoid { period: 0 },
    );

    // The arbiter alone ends a contract; periods already begun remain.
    let start = park.time_ms + 1;
    let id = signed_contract(&mut park, steam_terms(start));
    park.ok("hub-op", TxKind::Terminate { contract: id });
    park.ok(
        "power-op",
        TxKind::RecordAvailability {
            contract: id,
            period: 0,
            quantity: 5,
        },
    );
    park.rejected(
        "power-op",
        TxKind::RecordAvailability {
            contract: id,
            period: 1,
            quantity: 5,
        },
        AppError::PeriodVoid { period: 1 },
    );
    park.rejected(
        "hub-op",
        TxKind::Terminate { contract: id },
        AppError::ContractNotActive(id),
    );
}

/// A proposal withdrawn before countersignature binds nobody: not even a
/// period that began before the withdrawal takes readings or settles (it
/// was `Terminated` like a signed contract, so the proposer could meter
/// and settle a period and leave the other firm owing money it never
/// agreed to).
#[test]
fn a_withdrawn_proposal_takes_no_readings_and_settles_nothing() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + 1;
    let id = park.ok(
        "power-op",
        TxKind::ProposeContract {
            terms: steam_terms(start),
        },
    );
    park.advance_to(start + HOUR / 2);
    park.ok("power-op", TxKind::Terminate { contract: id });
    let contract: symbiont_contracts::state::Contract = park.state.get(&Key::Contract(id)).unwrap();
    assert_eq!(
        contract.status,
        ContractStatus::Withdrawn {
            at_ms: park.time_ms
        }
    );
    for (signer, kind) in [
        (
            "power-op",
            TxKind::RecordAvailability {
                contract: id,
                period: 0,
                quantity: 100_000,
            },
        ),
        (
            "pharma-meter",
            TxKind::RecordDelivery {
                contract: id,
                period: 0,
                quantity: 100_000,
            },
        ),
    ] {
        park.rejected(signer, kind, AppError::ContractNotActive(id));
    }
    park.advance_to(start + 3 * HOUR);
    park.rejected(
        "power-op",
        TxKind::SettlePeriod {
            contract: id,
            period: 0,
        },
        AppError::ContractNotActive(id),
    );
    park.rejected(
        "pharma-op",
        TxKind::Countersign { contract: id },
        AppError::NotProposed(id),
    );
    park.rejected(
        "pharma-op",
        TxKind::Terminate { contract: id },
        AppError::ContractNotActive(id),
    );
}

// --- metering and settlement -------------------------------------------------

fn meter(park: &mut Park, id: Hash, period: u32, a: u64, d: u64, c: Option<u64>) {
    park.ok(
        "power-op",
        TxKind::RecordAvailability {
            contract: id,
            period,
            quantity: a,
        },
    );
    park.ok(
        "pharma-meter",
        TxKind::RecordDelivery {
            contract: id,
            period,
            quantity: d,
        },
    );
    if let Some(c) = c {
        park.ok(
            "power-check",
            TxKind::RecordCheck {
                contract: id,
                period,
                quantity: c,
            },
        );
    }
}

#[test]
fn a_settled_period_journals_the_net_accrues_co2_and_payment_clears_it() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    let terms = steam_terms(start);
    let id = signed_contract(&mut park, terms.clone());
    park.advance_to(start + 10);
    meter(&mut park, id, 0, 80_000, 80_000, Some(80_400));
    park.advance_to(start + HOUR);
    park.ok(
        "pharma-op",
        TxKind::SettlePeriod {
            contract: id,
            period: 0,
        },
    );

    let record = exec::period(&park.state, &id, 0).unwrap();
    let settled = record.settled.unwrap();
    let expected = settlement::settle(
        &terms.settlement,
        &Readings {
            availability: 80_000,
            delivered: 80_000,
            check: Some(80_400),
        },
    )
    .unwrap();
    assert_eq!(settled.statement, expected);
    assert_eq!(settled.net, 690_000);
    assert_eq!(
        settled.journal.iter().map(|e| e.amount).sum::<i64>(),
        0,
        "journal sums to zero"
    );
    assert_eq!(exec::balance(&park.state, &firm("pharma")), -690_000);
    assert_eq!(exec::balance(&park.state, &firm("power")), 690_000);
    assert_eq!(
        exec::obligation(&park.state, &firm("pharma"), &firm("power")),
        690_000
    );
    // 80 GJ x 56 kg/GJ = 4 480 000 g each to supplier, consumer and network.
    for account in [
        AvoidedAccount::Firm("power".into()),
        AvoidedAccount::Firm("pharma".into()),
        AvoidedAccount::Network,
    ] {
        assert_eq!(exec::avoided_grams(&park.state, &account), 4_480_000);
    }

    let ack = |amount| TxKind::AcknowledgePayment {
        payer: firm("pharma"),
        payee: firm("power"),
        amount,
    };
    park.rejected("pharma-op", ack(1), AppError::WrongParty("pharma".into()));
    park.rejected(
        "power-op",
        ack(690_001),
        AppError::ExceedsObligation {
            payer: firm("pharma"),
            payee: firm("power"),
            outstanding: 690_000,
            amount: 690_001,
        },
    );
    park.rejected(
        "power-op",
        ack(0),
        AppError::Invalid {
            field: "amount",
            rule: "must be above 0",
        },
    );
    park.rejected(
        "power-op",
        TxKind::AcknowledgePayment {
            payer: firm("power"),
            payee: firm("power"),
            amount: 1,
        },
        AppError::OwnPayment {
            payer: firm("power"),
            payee: firm("power"),
            firm: "power".into(),
        },
    );
    park.ok("power-op", ack(400_000));
    park.ok("power-op", ack(290_000));
    assert_eq!(
        exec::obligation(&park.state, &firm("pharma"), &firm("power")),
        0
    );
    assert_eq!(exec::balance(&park.state, &firm("power")), 0);
    assert_eq!(balance_sum(&park), 0);
}

#[test]
fn a_gate_fee_is_owed_by_the_supplier() {
    let mut park = Park::new().with_staff();
    park.ok(
        "hub",
        TxKind::GrantLicence {
            firm: "plaster".into(),
            ewc_code: "10 01 02".into(),
            expires_ms: park.time_ms + 30 * DAY,
        },
    );
    let start = park.time_ms + HOUR;
    let id = signed_contract(&mut park, fly_ash_terms(start));
    park.advance_to(start);
    park.ok(
        "power-op",
        TxKind::RecordAvailability {
            contract: id,
            period: 0,
            quantity: 50_000,
        },
    );
    park.ok(
        "plaster-meter",
        TxKind::RecordDelivery {
            contract: id,
            period: 0,
            quantity: 47_250,
        },
    );
    park.advance_to(start + DAY);
    park.ok(
        "power-op",
        TxKind::SettlePeriod {
            contract: id,
            period: 0,
        },
    );
    assert_eq!(
        exec::obligation(&park.state, &firm("power"), &firm("plaster")),
        706_250
    );
    assert_eq!(exec::balance(&park.state, &firm("plaster")), 706_250);
    // 47.25 t x 800 kg/t
    assert_eq!(
        exec::avoided_grams(&park.state, &AvoidedAccount::Network),
        37_800_000
    );
}

#[test]
fn metering_and_settlement_rejections() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    let id = signed_contract(&mut park, steam_terms(start));
    let availability = |period, quantity| TxKind::RecordAvailability {
        contract: id,
        period,
        quantity,
    };
    let delivery = |period, quantity| TxKind::RecordDelivery {
        contract: id,
        period,
        quantity,
    };
    let settle = |period| TxKind::SettlePeriod {
        contract: id,
        period,
    };
    park.rejected(
        "power-op",
        availability(0, 1),
        AppError::PeriodNotStarted {
            period: 0,
            start_ms: start,
        },
    );
    park.advance_to(start);
    park.rejected(
        "power-op",
        availability(24, 1),
        AppError::PeriodOutOfRange {
            period: 24,
            periods: 24,
        },
    );
    park.rejected(
        "pharma-op",
        availability(0, 1),
        AppError::WrongParty("pharma".into()),
    );
    park.rejected(
        "power-meter",
        delivery(0, 1),
        AppError::NotMeter { which: "billing" },
    );
    park.rejected(
        "pharma-op",
        delivery(0, 1),
        AppError::NotMeter { which: "billing" },
    );
    park.rejected(
        "pharma-meter",
        TxKind::RecordCheck {
            contract: id,
            period: 0,
            quantity: 1,
        },
        AppError::NotMeter { which: "check" },
    );
    park.ok("pharma-meter", delivery(0, 90_000));
    park.rejected(
        "pharma-meter",
        delivery(0, 1),
        AppError::AlreadyRecorded {
            what: "billing",
            period: 0,
        },
    );
    park.rejected(
        "pharma-op",
        settle(0),
        AppError::PeriodNotOver {
            period: 0,
            end_ms: start + HOUR,
        },
    );
    park.advance_to(start + HOUR);
    park.rejected(
        "plaster-op",
        settle(0),
        AppError::WrongParty("plaster".into()),
    );
    // Before metering closes, a period settles only with every reading in.
    park.rejected(
        "pharma-op",
        settle(0),
        AppError::ReadingsMissing {
            period: 0,
            missing: vec!["availability", "check"],
            closed_ms: start + 2 * HOUR,
        },
    );
    park.ok("power-op", availability(0, 95_000));
    park.rejected(
        "pharma-op",
        settle(0),
        AppError::ReadingsMissing {
            period: 0,
            missing: vec!["check"],
            closed_ms: start + 2 * HOUR,
        },
    );
    park.ok(
        "power-check",
        TxKind::RecordCheck {
            contract: id,
            period: 0,
            quantity: 90_000,
        },
    );
    park.ok("pharma-op", settle(0));
    park.rejected(
        "power-op",
        settle(0),
        AppError::PeriodAlreadySettled { period: 0 },
    );
    park.rejected(
        "power-op",
        availability(0, 1),
        AppError::PeriodAlreadySettled { period: 0 },
    );
    // Metering of a period closes one period length after its end; until
    // then a period with readings missing does not settle.
    park.advance_to(start + 2 * HOUR);
    park.rejected(
        "power-op",
        settle(1),
        AppError::ReadingsMissing {
            period: 1,
            missing: vec!["availability", "billing", "check"],
            closed_ms: start + 3 * HOUR,
        },
    );
    park.advance_to(start + 3 * HOUR);
    park.rejected(
        "power-op",
        availability(1, 1),
        AppError::MeteringClosed {
            period: 1,
            closed_ms: start + 3 * HOUR,
        },
    );
    // Unmetered, it still settles: missing readings count as zero.
    park.ok("power-op", settle(1));
    let settled = exec::period(&park.state, &id, 1).unwrap().settled.unwrap();
    assert_eq!(settled.statement.supply_penalty, 270_000);
    assert_eq!(balance_sum(&park), 0);
}

// --- disputes ----------------------------------------------------------------

#[test]
fn a_dispute_blocks_settlement_until_the_arbiter_adjusts_it() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    let id = signed_contract(&mut park, steam_terms(start));
    park.advance_to(start);
    meter(&mut park, id, 0, 100_000, 104_000, Some(103_000));
    park.ok(
        "pharma-op",
        TxKind::OpenDispute {
            contract: id,
            period: 0,
            reason: "billing meter reads 1 GJ above the check meter".into(),
        },
    );
    park.rejected(
        "power-op",
        TxKind::OpenDispute {
            contract: id,
            period: 0,
            reason: "again".into(),
        },
        AppError::DisputeExists { period: 0 },
    );
    park.advance_to(start + HOUR);
    let settle = TxKind::SettlePeriod {
        contract: id,
        period: 0,
    };
    park.rejected(
        "power-op",
        settle.clone(),
        AppError::DisputeOpen { period: 0 },
    );
    let resolve = |adjustment| TxKind::ResolveDispute {
        contract: id,
        period: 0,
        adjustment,
    };
    park.rejected("power-op", resolve(-9_000), AppError::NotArbiter);
    park.ok("hub-op", resolve(-9_000));
    park.rejected("hub-op", resolve(0), AppError::NoDispute { period: 0 });
    park.ok("power-op", settle);
    let settled = exec::period(&park.state, &id, 0).unwrap().settled.unwrap();
    assert_eq!(
        settled.statement.flags,
        vec![Flag::MeterDiscrepancy, Flag::CheckMeterMismatch]
    );
    assert_eq!(settled.statement.net, 936_000);
    assert_eq!((settled.adjustment, settled.net), (-9_000, 927_000));
    assert_eq!(exec::balance(&park.state, &firm("power")), 927_000);
}

#[test]
fn a_dispute_resolved_after_settlement_journals_the_adjustment() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    let id = signed_contract(&mut park, steam_terms(start));
    park.advance_to(start);
    meter(&mut park, id, 0, 100_000, 100_000, Some(100_000));
    park.advance_to(start + HOUR);
    park.ok(
        "power-op",
        TxKind::SettlePeriod {
            contract: id,
            period: 0,
        },
    );
    park.ok(
        "pharma-op",
        TxKind::OpenDispute {
            contract: id,
            period: 0,
            reason: "steam below 180 C".into(),
        },
    );
    park.ok(
        "hub",
        TxKind::ResolveDispute {
            contract: id,
            period: 0,
            adjustment: -50_000,
        },
    );
    let record = exec::period(&park.state, &id, 0).unwrap();
    assert!(matches!(
        record.dispute,
        Some(DisputeStatus::Resolved {
            adjustment: -50_000,
            ..
        })
    ));
    assert_eq!(
        exec::obligation(&park.state, &firm("power"), &firm("pharma")),
        50_000
    );
    assert_eq!(exec::balance(&park.state, &firm("power")), 900_000 - 50_000);
    assert_eq!(balance_sum(&park), 0);
}

#[test]
fn a_contract_without_arbiter_has_no_disputes() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    let mut terms = steam_terms(start);
    terms.arbiter = None;
    let id = signed_contract(&mut park, terms);
    park.rejected(
        "pharma-op",
        TxKind::OpenDispute {
            contract: id,
            period: 0,
            reason: "x".into(),
        },
        AppError::NoArbiter,
    );
}

// --- pools -------------------------------------------------------------------

fn pv_keys() -> BTreeMap<String, u16> {
    BTreeMap::from([
        ("city".into(), 3_333),
        ("pharma".into(), 3_333),
        ("power".into(), 3_334),
    ])
}

/// A pool created by `creator` and joined by every member's admin.
fn joined_pool(park: &mut Park, creator: &str, keys: BTreeMap<String, u16>, start_ms: u64) -> Hash {
    let members: Vec<String> = keys.keys().cloned().collect();
    let pool = park.ok(
        creator,
        TxKind::CreatePool {
            name: "Joint PV field".into(),
            keys,
            start_ms,
            period_ms: DAY,
        },
    );
    for member in members {
        park.ok(&member, TxKind::JoinPool { pool });
    }
    pool
}

fn pool_record(park: &Park, pool: Hash, period: u32) -> PoolPeriod {
    park.state
        .get(&Key::PoolPeriod { pool, period })
        .unwrap_or_default()
}

#[test]
fn a_pool_binds_its_members_once_their_admins_join() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    let pool = park.ok(
        "power-op",
        TxKind::CreatePool {
            name: "Joint PV field".into(),
            keys: pv_keys(),
            start_ms: start,
            period_ms: DAY,
        },
    );
    // Created with an operator key: nobody has joined.
    let record: Pool = park.state.get(&Key::Pool(pool)).unwrap();
    assert!(record.joined.is_empty());
    assert_eq!(record.operator, "power");
    park.advance_to(start);
    let post = TxKind::PostPoolAmount {
        pool,
        period: 0,
        amount: 100,
    };
    let not_active = |waiting: &[&str]| AppError::PoolNotActive {
        pool,
        waiting: waiting.iter().map(|w| w.to_string()).collect(),
    };
    park.rejected(
        "power-op",
        post.clone(),
        not_active(&["city", "pharma", "power"]),
    );
    let join = TxKind::JoinPool { pool };
    park.rejected(
        "city-op",
        join.clone(),
        AppError::Unauthorized { need: "admin key" },
    );
    park.rejected(
        "plaster",
        join.clone(),
        AppError::NotMember("plaster".into()),
    );
    park.rejected(
        "city",
        TxKind::JoinPool { pool: Hash::ZERO },
        AppError::UnknownPool(Hash::ZERO),
    );
    park.ok("city", join.clone());
    park.rejected("city", join.clone(), AppError::AlreadyJoined("city".into()));
    park.ok("power", join.clone());
    park.rejected("pharma-op", post.clone(), not_active(&["pharma"]));
    park.rejected(
        "city-op",
        TxKind::SplitPool { pool, period: 0 },
        not_active(&["pharma"]),
    );
    park.ok("pharma", join);
    park.ok("pharma-op", post);
    // A posting moves no money until the split.
    assert_eq!(balance_sum(&park), 0);
    assert!(exec::balances(&park.state).iter().all(|(_, b)| *b == 0));

    // A member's admin that creates the pool joins it by creating it; an
    // admin creating a pool it is no member of joins nothing.
    let own = park.ok(
        "power",
        TxKind::CreatePool {
            name: "Power and city".into(),
            keys: BTreeMap::from([("city".into(), 5_000), ("power".into(), 5_000)]),
            start_ms: start,
            period_ms: DAY,
        },
    );
    let record: Pool = park.state.get(&Key::Pool(own)).unwrap();
    assert_eq!(record.waiting(), vec!["city".to_string()]);
    let foreign = park.ok(
        "hub",
        TxKind::CreatePool {
            name: "Run by the hub".into(),
            keys: pv_keys(),
            start_ms: start,
            period_ms: DAY,
        },
    );
    let record: Pool = park.state.get(&Key::Pool(foreign)).unwrap();
    assert!(record.joined.is_empty());
    assert_eq!(record.operator, "hub");
}

#[test]
fn worked_example_pool_objection() {
    // docs/settlement.md, "A pool with an objection".
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    let pool = joined_pool(&mut park, "hub-op", pv_keys(), start);
    park.advance_to(start);
    let post = |amount| TxKind::PostPoolAmount {
        pool,
        period: 0,
        amount,
    };
    let income = park.ok("power-op", post(250)); // income power collected
    park.ok("city-op", post(-50)); // a cost city paid
    let claimed = park.ok("city-op", post(-500)); // a cost power disputes
    let extra = park.ok("pharma-op", post(90)); // income city disputes
    let object = |posting| TxKind::ObjectPoolAmount {
        pool,
        period: 0,
        posting,
    };
    park.ok("power-op", object(claimed));
    park.ok("city-op", object(extra));
    // The hub hears both and keeps pharma's income out of the split.
    park.ok(
        "hub-op",
        TxKind::ResolvePoolObjection {
            pool,
            period: 0,
            posting: extra,
            accept: false,
        },
    );
    assert!(exec::balances(&park.state).iter().all(|(_, b)| *b == 0));
    let split = TxKind::SplitPool { pool, period: 0 };
    park.rejected(
        "power-op",
        split.clone(),
        AppError::PeriodNotOver {
            period: 0,
            end_ms: start + DAY,
        },
    );
    park.advance_to(start + DAY);
    park.ok("pharma-op", split.clone());
    // N = 250 - 50 = 200 (city's -500 and pharma's 90 are left out):
    // 66/66/66 + remainders 6600/6600/6800 -> power, then city.
    let record = pool_record(&park, pool, 0);
    assert_eq!(
        record.split.unwrap(),
        vec![
            ("city".into(), 67),
            ("pharma".into(), 66),
            ("power".into(), 67)
        ]
    );
    // power collected 250 and keeps 67; city paid 50 and gets 67.
    assert_eq!(exec::balance(&park.state, &firm("power")), -250 + 67);
    assert_eq!(exec::balance(&park.state, &firm("city")), 50 + 67);
    assert_eq!(exec::balance(&park.state, &firm("pharma")), 66);
    assert_eq!(exec::balance(&park.state, &Account::Pool(pool)), 0);
    assert_eq!(balance_sum(&park), 0);
    assert_eq!(
        exec::obligation(&park.state, &firm("power"), &Account::Pool(pool)),
        250
    );
    // Once split, the period takes nothing more.
    park.rejected("power-op", split, AppError::PoolPeriodSplit { period: 0 });
    park.rejected("power-op", post(5), AppError::PoolPeriodSplit { period: 0 });
    park.rejected(
        "city-op",
        object(income),
        AppError::PoolPeriodSplit { period: 0 },
    );
    park.rejected(
        "hub-op",
        TxKind::ResolvePoolObjection {
            pool,
            period: 0,
            posting: claimed,
            accept: true,
        },
        AppError::PoolPeriodSplit { period: 0 },
    );
    // The pool's operator (the hub) acknowledges what members paid into it.
    park.ok(
        "hub-op",
        TxKind::AcknowledgePayment {
            payer: firm("power"),
            payee: Account::Pool(pool),
            amount: 250,
        },
    );
    assert_eq!(
        exec::obligation(&park.state, &firm("power"), &Account::Pool(pool)),
        0
    );
}

#[test]
fn pool_posting_and_objection_rejections() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    let pool = joined_pool(&mut park, "power-op", pv_keys(), start);
    let post = |period, amount| TxKind::PostPoolAmount {
        pool,
        period,
        amount,
    };
    park.rejected(
        "power-op",
        post(0, 1),
        AppError::PeriodNotStarted {
            period: 0,
            start_ms: start,
        },
    );
    park.advance_to(start);
    park.rejected(
        "plaster-op",
        post(0, 1),
        AppError::NotMember("plaster".into()),
    );
    park.rejected(
        "power-meter",
        post(0, 1),
        AppError::Unauthorized {
            need: "admin or operator key",
        },
    );
    // 0 moves nothing; -2^63 has no negation, so the split could not move
    // it (the net's bounds let it in when a gain pool's net is positive).
    for amount in [0, i64::MIN] {
        park.rejected(
            "power-op",
            post(0, amount),
            AppError::Invalid {
                field: "amount",
                rule: "must not be 0 or -2^63",
            },
        );
    }
    park.ok("power-op", post(0, i64::MAX));
    park.rejected(
        "city-op",
        post(0, 1),
        AppError::Overflow(symbiont_contracts::numbers::Overflow { what: "pool net" }),
    );
    let posting = park.ok("city-op", post(0, -70));
    let object = |posting| TxKind::ObjectPoolAmount {
        pool,
        period: 0,
        posting,
    };
    park.rejected("city-op", object(posting), AppError::OwnPosting(posting));
    park.rejected(
        "plaster-op",
        object(posting),
        AppError::NotMember("plaster".into()),
    );
    park.rejected(
        "power-op",
        object(Hash::ZERO),
        AppError::UnknownPosting {
            posting: Hash::ZERO,
            period: 0,
        },
    );
    park.rejected(
        "power-op",
        TxKind::ObjectPoolAmount {
            pool,
            period: 1,
            posting,
        },
        AppError::UnknownPosting { posting, period: 1 },
    );
    let resolve = |accept| TxKind::ResolvePoolObjection {
        pool,
        period: 0,
        posting,
        accept,
    };
    park.rejected("hub-op", resolve(true), AppError::NoObjection(posting));
    park.ok("power-op", object(posting));
    park.rejected(
        "pharma-op",
        object(posting),
        AppError::AlreadyObjected(posting),
    );
    park.rejected("power-op", resolve(true), AppError::NotFacilitator);
    park.rejected(
        "hub-meter",
        resolve(true),
        AppError::Unauthorized {
            need: "admin or operator key",
        },
    );
    park.rejected(
        "hub-op",
        TxKind::ResolvePoolObjection {
            pool: Hash::ZERO,
            period: 0,
            posting,
            accept: true,
        },
        AppError::UnknownPool(Hash::ZERO),
    );
    park.ok("hub-op", resolve(true));
    park.rejected("hub-op", resolve(false), AppError::NoObjection(posting));
    // Accepted, it cannot be objected to again.
    park.rejected(
        "pharma-op",
        object(posting),
        AppError::AlreadyObjected(posting),
    );
    let record = pool_record(&park, pool, 0);
    assert!(matches!(
        record.postings[1].status,
        PostingStatus::Accepted { ref by, .. } if by == "hub"
    ));
    assert!(record.postings[1].status.counts());
    // The negative bound: the sum of the negative postings must stay above
    // -2^63.
    park.ok("power-op", post(0, i64::MIN / 2));
    park.rejected(
        "power-op",
        post(0, i64::MIN / 2),
        AppError::Overflow(symbiont_contracts::numbers::Overflow { what: "pool net" }),
    );
}

#[test]
fn a_pool_period_holds_a_bounded_number_of_postings() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    let pool = joined_pool(&mut park, "power-op", pv_keys(), start);
    park.advance_to(start);
    let limit = symbiont_contracts::pool::MAX_POOL_POSTINGS;
    let txs: Vec<SignedTx> = (0..limit as u64)
        .map(|i| {
            park.tx_ahead(
                "power-op",
                TxKind::PostPoolAmount {
                    pool,
                    period: 0,
                    amount: 1,
                },
                i,
            )
        })
        .collect();
    let outcome = park.block(&txs);
    assert!(outcome.results.iter().all(|(_, r)| r.is_ok()));
    park.rejected(
        "city-op",
        TxKind::PostPoolAmount {
            pool,
            period: 0,
            amount: 1,
        },
        AppError::PoolPostingsFull { period: 0, limit },
    );
}

#[test]
fn pool_creation_rejections() {
    let mut park = Park::new().with_staff();
    let create = |keys| TxKind::CreatePool {
        name: "Shared steam line".into(),
        keys,
        start_ms: 0,
        period_ms: DAY,
    };
    let mut short = pv_keys();
    short.insert("power".into(), 3_333);
    park.rejected(
        "power-op",
        create(short),
        AppError::Pool(PoolError::KeysNotWhole { sum: 9_999 }),
    );
    let mut stranger = pv_keys();
    stranger.insert("nobody".into(), 0);
    park.rejected(
        "power-op",
        create(stranger),
        AppError::Pool(PoolError::ZeroKey {
            member: "nobody".into(),
        }),
    );
    let mut unknown = pv_keys();
    unknown.remove("power");
    unknown.insert("nobody".into(), 3_334);
    park.rejected(
        "power-op",
        create(unknown),
        AppError::UnknownFirm("nobody".into()),
    );
    park.rejected(
        "power-op",
        TxKind::PostPoolAmount {
            pool: Hash::ZERO,
            period: 0,
            amount: 1,
        },
        AppError::UnknownPool(Hash::ZERO),
    );
}

// --- blocks --------------------------------------------------------------------

#[test]
fn the_app_hash_chains_the_previous_hash_and_the_writes() {
    let mut park = Park::new();
    let genesis_hash = park.state.app_hash();
    assert_eq!(
        genesis_hash,
        exec::genesis_state(&genesis()).app_hash(),
        "genesis state is deterministic"
    );
    let tx = park.tx(
        "power",
        TxKind::AuthorizeKey {
            firm: "power".into(),
            key: public("power-op"),
            role: KeyRole::Operator,
        },
    );
    let outcome = park.block(&[tx]);
    assert_eq!(
        outcome.app_hash,
        state::app_hash(&genesis_hash, &outcome.writes)
    );
    assert_eq!(park.state.app_hash(), outcome.app_hash);
    // Writes are in ascending key order and include the key, the nonce,
    // the receipt and the meta record.
    let keys: Vec<&Vec<u8>> = outcome.writes.iter().map(|(k, _)| k).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(outcome.writes.len(), 4);
}

#[test]
fn a_block_with_wrong_height_or_time_is_refused_without_change() {
    let mut park = Park::new();
    let before = park.state.records().clone();
    let at = |height, time_ms| BlockInfo { height, time_ms };
    assert_eq!(
        exec::execute_block(&mut park.state, &at(2, GENESIS_MS + 1), &[]),
        Err(BlockError::WrongHeight {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        exec::execute_block(&mut park.state, &at(1, GENESIS_MS), &[]),
        Err(BlockError::TimeNotAfter {
            previous: GENESIS_MS,
            got: GENESIS_MS
        })
    );
    assert!(park.state.records() == before);
}

#[test]
fn a_contract_with_a_gain_sharing_pool_pays_into_the_pool() {
    let mut park = Park::new().with_staff();
    let start = park.time_ms + HOUR;
    let pool = park.ok(
        "power-op",
        TxKind::CreatePool {
            name: "Joint CHP plant".into(),
            keys: BTreeMap::from([("city".into(), 4_000), ("power".into(), 6_000)]),
            start_ms: park.time_ms,
            period_ms: DAY,
        },
    );
    let mut terms = steam_terms(start);
    // Money flows into a pool only once every member has joined it.
    terms.gain_pool = Some(pool);
    park.rejected(
        "power-op",
        TxKind::ProposeContract {
            terms: terms.clone(),
        },
        AppError::PoolNotActive {
            pool,
            waiting: vec!["city".into(), "power".into()],
        },
    );
    park.ok("city", TxKind::JoinPool { pool });
    park.ok("power", TxKind::JoinPool { pool });
    terms.gain_pool = Some(Hash::ZERO);
    park.rejected(
        "power-op",
        TxKind::ProposeContract {
            terms: terms.clone(),
        },
        AppError::UnknownPool(Hash::ZERO),
    );
    let other_pool = park.ok(
        "city-op",
        TxKind::CreatePool {
            name: "City only".into(),
            keys: BTreeMap::from([("city".into(), 10_000)]),
            start_ms: park.time_ms,
            period_ms: DAY,
        },
    );
    terms.gain_pool = Some(other_pool);
    park.rejected(
        "power-op",
        TxKind::ProposeContract {
            terms: terms.clone(),
        },
        AppError::NotMember("power".into()),
    );
    terms.gain_pool = Some(pool);
    let id = signed_contract(&mut park, terms);
    park.advance_to(start);
    meter(&mut park, id, 0, 100_000, 100_000, Some(100_000));
    park.advance_to(start + HOUR);
    park.ok(
        "pharma-op",
        TxKind::SettlePeriod {
            contract: id,
            period: 0,
        },
    );
    assert_eq!(
        exec::obligation(&park.state, &firm("pharma"), &Account::Pool(pool)),
        900_000
    );
    assert_eq!(exec::balance(&park.state, &firm("power")), 0);
    park.advance_to(park.time_ms + DAY);
    park.ok("city-op", TxKind::SplitPool { pool, period: 0 });
    let record = pool_record(&park, pool, 0);
    assert_eq!(record.gain_net, 900_000);
    assert!(record.postings.is_empty());
    assert_eq!(exec::balance(&park.state, &firm("power")), 540_000);
    assert_eq!(exec::balance(&park.state, &firm("city")), 360_000);
    assert_eq!(exec::balance(&park.state, &Account::Pool(pool)), 0);
    assert_eq!(balance_sum(&park), 0);
    // The supplier still earns the avoided emissions of its delivery.
    assert_eq!(
        exec::avoided_grams(&park.state, &AvoidedAccount::Firm("power".into())),
        5_600_000
    );
    // Its operator acknowledges the consumer's payment into the pool.
    park.ok(
        "power-op",
        TxKind::AcknowledgePayment {
            payer: firm("pharma"),
            payee: Account::Pool(pool),
            amount: 900_000,
        },
    );
    assert_eq!(balance_sum(&park), 0);
    assert_eq!(
        exec::obligation(&park.state, &firm("pharma"), &Account::Pool(pool)),
        0
    );
}
