//! The golden vectors of docs/ledger-format.md, read from the document
//! itself (`support::doc`): every vector there whose name is not a node
//! vector (blocks, votes, certificates, evidence: `node/tests/ledger_format.rs`)
//! must be produced here, and everything produced here must be there.
//!
//! Each vector is produced twice: by the Rust types through the canonical
//! codec, and by the hand-written encoder below (`hand`), which follows
//! the document's layouts field by field with `support::Bytes`. Both must
//! agree, every typed value must decode back to itself, and signatures
//! are made by ed25519-dalek directly on the hand side.
//!
//! Run: `cargo test -p symbiont-contracts --test ledger_format`. When the
//! document and the code differ, the failure prints each vector as the
//! code writes it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use support::{Bytes, doc};
use symbiont_contracts::codec;
use symbiont_contracts::exec::{self, AppError, BlockInfo, Params};
use symbiont_contracts::genesis::{
    ConsensusParams, Currency, Firm, Genesis, Node, ResourceKind, Unit,
};
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::{Keypair, PublicKey, Signature};
use symbiont_contracts::settlement::{self, Flag, Readings, SettlementTerms, Statement};
use symbiont_contracts::state::{
    self, AvoidedAccount, Contract, ContractStatus, DisputeStatus, EvidenceRecord, JournalEntry,
    Key, KeyRecord, Licence, Listing, ListingStatus, Meta, PeriodRecord, Pool, PoolPeriod,
    PoolPosting, PostingStatus, Proposal, ProposalStatus, Receipt, Role, Settled, Side,
};
use symbiont_contracts::tx::{
    Account, ContractTerms, GovAction, KeyRole, ListingTerms, SignedTx, TxBody, TxKind,
};

/// RFC 8032 section 7.1, TEST 1: the secret key (seed), its public key, and
/// the signature of the empty message.
const RFC8032_TEST1_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC8032_TEST1_PUBLIC: &str =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const RFC8032_TEST1_EMPTY_SIGNATURE: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

/// Genesis time of the demo chain (section "App hash" of the document).
const T0: u64 = 1_800_000_000_000;
const DAY: u64 = 86_400_000;

type Vectors = BTreeMap<String, Vec<u8>>;

#[derive(Default)]
struct Check {
    vectors: Vectors,
}

impl Check {
    /// A value's canonical bytes: the codec's and the hand encoder's must
    /// agree, and the bytes must decode back to the value.
    fn value<T: Serialize + DeserializeOwned + PartialEq + Debug>(
        &mut self,
        name: &str,
        value: &T,
        hand: Bytes,
    ) {
        let bytes = codec::encode(value);
        assert_eq!(
            hex::encode(&bytes),
            hex::encode(&hand.0),
            "{name}: the codec and the hand encoder differ"
        );
        let decoded: T = codec::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&decoded, value, "{name} decodes back");
        self.bytes(name, bytes, hand.0);
    }

    /// Bytes that are not one value (hashes, sign bytes, signatures).
    fn bytes(&mut self, name: &str, typed: Vec<u8>, hand: Vec<u8>) {
        assert_eq!(
            hex::encode(&typed),
            hex::encode(&hand),
            "{name}: the code and the hand encoder differ"
        );
        assert!(
            self.vectors.insert(name.to_string(), typed).is_none(),
            "{name} twice"
        );
    }
}

fn h(byte: u8) -> Hash {
    Hash([byte; 32])
}

fn keypair(seed: u8) -> Keypair {
    Keypair::from_seed([seed; 32])
}

fn pk(seed: u8) -> PublicKey {
    keypair(seed).public()
}

fn rfc_keypair() -> Keypair {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(RFC8032_TEST1_SEED, &mut seed).unwrap();
    Keypair::from_seed(seed)
}

// --- sample values ---------------------------------------------------------

fn consensus_params() -> ConsensusParams {
    ConsensusParams {
        timeout_propose_ms: 1000,
        timeout_prevote_ms: 500,
        timeout_precommit_ms: 500,
        timeout_delta_ms: 250,
        max_block_txs: 2000,
        max_block_bytes: 4_194_304,
        max_clock_drift_ms: 2000,
    }
}

fn steam() -> ResourceKind {
    ResourceKind {
        id: "steam".into(),
        name: "Process steam".into(),
        unit: Unit::GigaJoule,
        emission_factor_g: 56_000,
        waste: false,
        ewc_code: None,
        quality: vec!["temperature_c".into()],
    }
}

fn fly_ash() -> ResourceKind {
    ResourceKind {
        id: "fly-ash".into(),
        name: "Fly ash".into(),
        unit: Unit::Tonne,
        emission_factor_g: 800_000,
        waste: true,
        ewc_code: Some("10 01 02".into()),
        quality: vec!["moisture_pct".into()],
    }
}

fn node_n5() -> Node {
    Node {
        id: "n5".into(),
        firm: "gyproc".into(),
        site: "Kalundborg".into(),
        key: pk(5),
        validator: true,
        power: 1,
    }
}

fn firm_hub() -> Firm {
    Firm {
        id: "hub".into(),
        name: "Symbiosis Centre".into(),
        admin_key: pk(6),
        facilitator: true,
    }
}

fn offer_terms() -> ListingTerms {
    ListingTerms {
        kind: "steam".into(),
        quantity_per_period: 80_000,
        price: 9500,
        delivery_point: "DP-1".into(),
        quality: BTreeMap::from([
            ("pressure_bar".to_string(), 16),
            ("temperature_c".to_string(), 180),
        ]),
        period_ms: DAY,
        periods: 30,
        valid_until_ms: T0 + 7 * DAY,
    }
}

fn request_terms() -> ListingTerms {
    ListingTerms {
        kind: "fly-ash".into(),
        quantity_per_period: 5_000_000,
        price: -1200,
        delivery_point: "Silo 2".into(),
        quality: BTreeMap::new(),
        period_ms: 7 * DAY,
        periods: 52,
        valid_until_ms: T0 + DAY,
    }
}

fn settlement_terms() -> SettlementTerms {
    SettlementTerms {
        price: 9500,
        committed: 80_000,
        tolerance_bp: 500,
        supply_penalty: 2000,
        offtake_penalty: 1500,
        excess_price: Some(8000),
        penalty_cap: None,
        meter_tolerance: Some(500),
    }
}

fn contract_terms() -> ContractTerms {
    ContractTerms {
        supplier: "novo".into(),
        consumer: "gyproc".into(),
        kind: "steam".into(),
        delivery_point: "DP-1".into(),
        quality: BTreeMap::from([("temperature_c".to_string(), 180)]),
        settlement: settlement_terms(),
        start_ms: T0 + DAY,
        period_ms: DAY,
        periods: 30,
        billing_meter: pk(7),
        check_meter: Some(pk(8)),
        arbiter: Some("hub".into()),
        listing: Some(h(2)),
        gain_pool: None,
    }
}

fn gov_actions() -> Vec<(&'static str, GovAction)> {
    vec![
        ("AddFirm", GovAction::AddFirm(firm_hub())),
        ("RemoveFirm", GovAction::RemoveFirm { id: "hub".into() }),
        ("AddNode", GovAction::AddNode(node_n5())),
        ("RemoveNode", GovAction::RemoveNode { id: "n5".into() }),
        (
            "SetPower",
            GovAction::SetPower {
                node: "n5".into(),
                power: 3,
            },
        ),
        ("SetConsensus", GovAction::SetConsensus(consensus_params())),
        ("RegisterKind", GovAction::RegisterKind(fly_ash())),
    ]
}

/// One sample of every transaction kind, in variant order.
fn kinds() -> Vec<(&'static str, TxKind)> {
    let contract = h(4);
    let pool = h(5);
    vec![
        (
            "AuthorizeKey",
            TxKind::AuthorizeKey {
                firm: "gyproc".into(),
                key: pk(21),
                role: KeyRole::Meter,
            },
        ),
        (
            "RevokeKey",
            TxKind::RevokeKey {
                firm: "gyproc".into(),
                key: pk(21),
            },
        ),
        (
            "Propose",
            TxKind::Propose {
                action: GovAction::AddNode(node_n5()),
                expires_ms: T0 + DAY,
            },
        ),
        (
            "Vote",
            TxKind::Vote {
                proposal: h(1),
                approve: true,
            },
        ),
        ("RegisterKind", TxKind::RegisterKind { kind: fly_ash() }),
        (
            "GrantLicence",
            TxKind::GrantLicence {
                firm: "gyproc".into(),
                ewc_code: "10 01 02".into(),
                expires_ms: T0 + 365 * DAY,
            },
        ),
        (
            "PostOffer",
            TxKind::PostOffer {
                listing: offer_terms(),
            },
        ),
        (
            "PostRequest",
            TxKind::PostRequest {
                listing: request_terms(),
            },
        ),
        ("Accept", TxKind::Accept { listing: h(2) }),
        ("Withdraw", TxKind::Withdraw { listing: h(3) }),
        (
            "ProposeContract",
            TxKind::ProposeContract {
                terms: contract_terms(),
            },
        ),
        ("Countersign", TxKind::Countersign { contract }),
        ("Terminate", TxKind::Terminate { contract }),
        (
            "RecordAvailability",
            TxKind::RecordAvailability {
                contract,
                period: 0,
                quantity: 79_000,
            },
        ),
        (
            "RecordDelivery",
            TxKind::RecordDelivery {
                contract,
                period: 0,
                quantity: 79_500,
            },
        ),
        (
            "RecordCheck",
            TxKind::RecordCheck {
                contract,
                period: 0,
                quantity: 80_100,
            },
        ),
        (
            "SettlePeriod",
            TxKind::SettlePeriod {
                contract,
                period: 0,
            },
        ),
        (
            "AcknowledgePayment",
            TxKind::AcknowledgePayment {
                payer: Account::Firm("gyproc".into()),
                payee: Account::Pool(pool),
                amount: 125_000,
            },
        ),
        (
            "CreatePool",
            TxKind::CreatePool {
                name: "PV field".into(),
                keys: BTreeMap::from([("city".to_string(), 2500), ("novo".to_string(), 7500)]),
                start_ms: T0,
                period_ms: 30 * DAY,
            },
        ),
        (
            "PostPoolAmount",
            TxKind::PostPoolAmount {
                pool,
                period: 1,
                amount: -4200,
            },
        ),
        ("SplitPool", TxKind::SplitPool { pool, period: 1 }),
        (
            "OpenDispute",
            TxKind::OpenDispute {
                contract,
                period: 0,
                reason: "meter fault".into(),
            },
        ),
        (
            "ResolveDispute",
            TxKind::ResolveDispute {
                contract,
                period: 0,
                adjustment: -300,
            },
        ),
        ("JoinPool", TxKind::JoinPool { pool }),
        (
            "ObjectPoolAmount",
            TxKind::ObjectPoolAmount {
                pool,
                period: 1,
                posting: h(6),
            },
        ),
        (
            "ResolvePoolObjection",
            TxKind::ResolvePoolObjection {
                pool,
                period: 1,
                posting: h(6),
                accept: false,
            },
        ),
    ]
}

/// The statement of period 0 of `contract_terms()` with A = 79 000,
/// D = 79 500, C = 80 100 (checked against `settlement::settle`).
fn statement() -> Statement {
    Statement {
        availability: 79_000,
        delivered: 79_500,
        check: Some(80_100),
        lower: 76_000,
        upper: 84_000,
        base_units: 79_500,
        excess_units: 0,
        energy_charge: 755_250,
        supply_shortfall_units: 0,
        supply_penalty: 0,
        offtake_shortfall_units: 0,
        offtake_penalty: 0,
        net: 755_250,
        flags: vec![Flag::MeterDiscrepancy, Flag::CheckMeterMismatch],
    }
}

/// One sample key of every `Key` variant, in variant order.
fn state_keys() -> Vec<(&'static str, Key)> {
    vec![
        ("Meta", Key::Meta),
        ("Params", Key::Params),
        ("Firm", Key::Firm("gyproc".into())),
        ("Key", Key::Key(pk(21))),
        ("Nonce", Key::Nonce(pk(21))),
        ("Node", Key::Node("n5".into())),
        ("Kind", Key::Kind("steam".into())),
        (
            "Licence",
            Key::Licence {
                firm: "gyproc".into(),
                ewc_code: "10 01 02".into(),
            },
        ),
        ("Proposal", Key::Proposal(h(1))),
        ("Listing", Key::Listing(h(2))),
        ("Contract", Key::Contract(h(4))),
        (
            "Period",
            Key::Period {
                contract: h(4),
                period: 0,
            },
        ),
        ("Balance", Key::Balance(Account::Firm("gyproc".into()))),
        (
            "Obligation",
            Key::Obligation {
                debtor: Account::Firm("gyproc".into()),
                creditor: Account::Pool(h(5)),
            },
        ),
        ("Avoided", Key::Avoided(AvoidedAccount::Network)),
        ("Pool", Key::Pool(h(5))),
        (
            "PoolPeriod",
            Key::PoolPeriod {
                pool: h(5),
                period: 1,
            },
        ),
        ("Receipt", Key::Receipt(h(7))),
        ("Evidence", Key::Evidence(h(8))),
    ]
}

fn journal(consumer: &str, supplier: &str, amount: i64) -> Vec<JournalEntry> {
    vec![
        JournalEntry {
            account: Account::Firm(consumer.into()),
            amount: -amount,
        },
        JournalEntry {
            account: Account::Firm(supplier.into()),
            amount,
        },
    ]
}

fn period_record() -> PeriodRecord {
    PeriodRecord {
        availability: Some(79_000),
        delivered: Some(79_500),
        check: Some(80_100),
        settled: Some(Settled {
            at_ms: T0 + 3 * DAY,
            statement: statement(),
            adjustment: -300,
            net: 754_950,
            avoided_g: 4_452_000,
            journal: journal("gyproc", "novo", 754_950),
        }),
        dispute: Some(DisputeStatus::Resolved {
            adjustment: -300,
            at_ms: T0 + 2 * DAY + 5,
        }),
        adjustment_journal: vec![],
    }
}

fn pool_record() -> Pool {
    Pool {
        name: "PV field".into(),
        operator: "novo".into(),
        keys: BTreeMap::from([("city".to_string(), 2500), ("novo".to_string(), 7500)]),
        start_ms: T0,
        period_ms: 30 * DAY,
        joined: BTreeSet::from(["city".to_string(), "novo".to_string()]),
    }
}

fn pool_period_record() -> PoolPeriod {
    let posting = |byte, member: &str, amount, status| PoolPosting {
        id: h(byte),
        member: member.into(),
        amount,
        status,
    };
    PoolPeriod {
        gain_net: 1000,
        split: Some(vec![("city".into(), 250), ("novo".into(), -450)]),
        postings: vec![
            posting(0x61, "novo", -1200, PostingStatus::Open),
            posting(
                0x62,
                "city",
                700,
                PostingStatus::Objected {
                    by: "novo".into(),
                    at_ms: T0 + 1,
                },
            ),
            posting(
                0x63,
                "city",
                300,
                PostingStatus::Accepted {
                    by: "hub".into(),
                    at_ms: T0 + 2,
                },
            ),
            posting(
                0x64,
                "novo",
                9,
                PostingStatus::Refused {
                    by: "hub".into(),
                    at_ms: T0 + 3,
                },
            ),
        ],
    }
}

/// The demo chain of the document's app-hash vectors.
fn demo_genesis() -> Genesis {
    let firm = |id: &str, name: &str, seed, facilitator| Firm {
        id: id.into(),
        name: name.into(),
        admin_key: pk(seed),
        facilitator,
    };
    Genesis {
        chain_id: "demo-1".into(),
        genesis_time_ms: T0,
        currency: Currency {
            code: "DKK".into(),
            minor_units: 2,
        },
        consensus: consensus_params(),
        firms: vec![
            firm("novo", "Novo Nordisk", 1, false),
            firm("gyproc", "Gyproc", 2, false),
            firm("hub", "Symbiosis Centre", 3, true),
        ],
        nodes: vec![Node {
            id: "n1".into(),
            firm: "novo".into(),
            site: "Kalundborg".into(),
            key: pk(11),
            validator: true,
            power: 1,
        }],
        resource_kinds: vec![steam()],
    }
}

/// The demo chain's block 1: (tx, expected result code).
fn demo_block() -> Vec<(SignedTx, Option<&'static str>)> {
    let tx = |seed: u8, nonce, kind| {
        SignedTx::sign(
            TxBody {
                chain_id: "demo-1".into(),
                nonce,
                kind,
            },
            &keypair(seed),
        )
    };
    let authorize = tx(
        2,
        1,
        TxKind::AuthorizeKey {
            firm: "gyproc".into(),
            key: pk(21),
            role: KeyRole::Operator,
        },
    );
    vec![
        (authorize.clone(), None),
        (
            tx(2, 2, TxKind::Withdraw { listing: h(3) }),
            Some("unknown_listing"),
        ),
        (
            tx(1, 5, TxKind::Accept { listing: h(3) }),
            Some("bad_nonce"),
        ),
        (authorize, Some("already_included")),
        (
            tx(9, 1, TxKind::Withdraw { listing: h(3) }),
            Some("unknown_signer"),
        ),
    ]
}

const DEMO_BLOCK_TIME_MS: u64 = T0 + 1000;
const DEMO_BLOCK2_TIME_MS: u64 = T0 + 2000;

// --- the hand encoder: the document's layouts, field by field --------------

mod hand {
    use super::*;

    pub fn key(k: &PublicKey) -> [u8; 32] {
        k.0
    }

    pub fn account(b: Bytes, a: &Account) -> Bytes {
        match a {
            Account::Firm(id) => b.variant(0).str(id),
            Account::Pool(pool) => b.variant(1).raw(&pool.0),
        }
    }

    pub fn str_i64_map(b: Bytes, map: &BTreeMap<String, i64>) -> Bytes {
        // Keys ascending bytewise: a BTreeMap<String, _> iterates so.
        map.iter()
            .fold(b.len(map.len()), |b, (k, v)| b.str(k).i64(*v))
    }

    pub fn str_u16_map(b: Bytes, map: &BTreeMap<String, u16>) -> Bytes {
        map.iter()
            .fold(b.len(map.len()), |b, (k, v)| b.str(k).u16(*v))
    }

    pub fn opt_str(b: Bytes, v: &Option<String>) -> Bytes {
        match v {
            None => b.none(),
            Some(s) => b.some().str(s),
        }
    }

    pub fn opt_hash(b: Bytes, v: &Option<Hash>) -> Bytes {
        match v {
            None => b.none(),
            Some(h) => b.some().raw(&h.0),
        }
    }

    pub fn opt_u64(b: Bytes, v: Option<u64>) -> Bytes {
        match v {
            None => b.none(),
            Some(x) => b.some().u64(x),
        }
    }

    pub fn opt_i64(b: Bytes, v: Option<i64>) -> Bytes {
        match v {
            None => b.none(),
            Some(x) => b.some().i64(x),
        }
    }

    pub fn currency(b: Bytes, c: &Currency) -> Bytes {
        b.str(&c.code).u8(c.minor_units)
    }

    pub fn consensus(b: Bytes, p: &ConsensusParams) -> Bytes {
        b.u64(p.timeout_propose_ms)
            .u64(p.timeout_prevote_ms)
            .u64(p.timeout_precommit_ms)
            .u64(p.timeout_delta_ms)
            .u32(p.max_block_txs)
            .u32(p.max_block_bytes)
            .u64(p.max_clock_drift_ms)
    }

    pub fn firm(b: Bytes, f: &Firm) -> Bytes {
        b.str(&f.id)
            .str(&f.name)
            .raw(&key(&f.admin_key))
            .bool(f.facilitator)
    }

    pub fn node(b: Bytes, n: &Node) -> Bytes {
        b.str(&n.id)
            .str(&n.firm)
            .str(&n.site)
            .raw(&key(&n.key))
            .bool(n.validator)
            .u64(n.power)
    }

    pub fn unit(u: Unit) -> u32 {
        match u {
            Unit::KiloWattHour => 0,
            Unit::MegaWattHour => 1,
            Unit::GigaJoule => 2,
            Unit::Tonne => 3,
            Unit::CubicMetre => 4,
        }
    }

    pub fn resource_kind(b: Bytes, k: &ResourceKind) -> Bytes {
        let b = b
            .str(&k.id)
            .str(&k.name)
            .variant(unit(k.unit))
            .u64(k.emission_factor_g)
            .bool(k.waste);
        let b = opt_str(b, &k.ewc_code);
        k.quality
            .iter()
            .fold(b.len(k.quality.len()), |b, q| b.str(q))
    }

    pub fn genesis(g: &Genesis) -> Bytes {
        let b = Bytes::default().str(&g.chain_id).u64(g.genesis_time_ms);
        let b = consensus(currency(b, &g.currency), &g.consensus);
        let b = g.firms.iter().fold(b.len(g.firms.len()), firm);
        let b = g.nodes.iter().fold(b.len(g.nodes.len()), node);
        g.resource_kinds
            .iter()
            .fold(b.len(g.resource_kinds.len()), resource_kind)
    }

    pub fn gov(b: Bytes, a: &GovAction) -> Bytes {
        match a {
            GovAction::AddFirm(f) => firm(b.variant(0), f),
            GovAction::RemoveFirm { id } => b.variant(1).str(id),
            GovAction::AddNode(n) => node(b.variant(2), n),
            GovAction::RemoveNode { id } => b.variant(3).str(id),
            GovAction::SetPower { node, power } => b.variant(4).str(node).u64(*power),
            GovAction::SetConsensus(p) => consensus(b.variant(5), p),
            GovAction::RegisterKind(k) => resource_kind(b.variant(6), k),
        }
    }

    pub fn listing_terms(b: Bytes, t: &ListingTerms) -> Bytes {
        let b = b
            .str(&t.kind)
            .u64(t.quantity_per_period)
            .i64(t.price)
            .str(&t.delivery_point);
        str_i64_map(b, &t.quality)
            .u64(t.period_ms)
            .u32(t.periods)
            .u64(t.valid_until_ms)
    }

    pub fn settlement_terms(b: Bytes, s: &SettlementTerms) -> Bytes {
        let b = b
            .i64(s.price)
            .u64(s.committed)
            .u16(s.tolerance_bp)
            .u64(s.supply_penalty)
            .u64(s.offtake_penalty);
        let b = opt_i64(b, s.excess_price);
        let b = opt_u64(b, s.penalty_cap);
        opt_u64(b, s.meter_tolerance)
    }

    pub fn contract_terms(b: Bytes, t: &ContractTerms) -> Bytes {
        let b = b
            .str(&t.supplier)
            .str(&t.consumer)
            .str(&t.kind)
            .str(&t.delivery_point);
        let b = settlement_terms(str_i64_map(b, &t.quality), &t.settlement)
            .u64(t.start_ms)
            .u64(t.period_ms)
            .u32(t.periods)
            .raw(&key(&t.billing_meter));
        let b = match &t.check_meter {
            None => b.none(),
            Some(k) => b.some().raw(&key(k)),
        };
        let b = opt_str(b, &t.arbiter);
        let b = opt_hash(b, &t.listing);
        opt_hash(b, &t.gain_pool)
    }

    pub fn tx_kind(b: Bytes, k: &TxKind) -> Bytes {
        match k {
            TxKind::AuthorizeKey { firm, key: k, role } => {
                b.variant(0).str(firm).raw(&key(k)).variant(match role {
                    KeyRole::Operator => 0,
                    KeyRole::Meter => 1,
                })
            }
            TxKind::RevokeKey { firm, key: k } => b.variant(1).str(firm).raw(&key(k)),
            TxKind::Propose { action, expires_ms } => gov(b.variant(2), action).u64(*expires_ms),
            TxKind::Vote { proposal, approve } => b.variant(3).raw(&proposal.0).bool(*approve),
            TxKind::RegisterKind { kind } => resource_kind(b.variant(4), kind),
            TxKind::GrantLicence {
                firm,
                ewc_code,
                expires_ms,
            } => b.variant(5).str(firm).str(ewc_code).u64(*expires_ms),
            TxKind::PostOffer { listing } => listing_terms(b.variant(6), listing),
            TxKind::PostRequest { listing } => listing_terms(b.variant(7), listing),
            TxKind::Accept { listing } => b.variant(8).raw(&listing.0),
            TxKind::Withdraw { listing } => b.variant(9).raw(&listing.0),
            TxKind::ProposeContract { terms } => contract_terms(b.variant(10), terms),
            TxKind::Countersign { contract } => b.variant(11).raw(&contract.0),
            TxKind::Terminate { contract } => b.variant(12).raw(&contract.0),
            TxKind::RecordAvailability {
                contract,
                period,
                quantity,
            } => b.variant(13).raw(&contract.0).u32(*period).u64(*quantity),
            TxKind::RecordDelivery {
                contract,
                period,
                quantity,
            } => b.variant(14).raw(&contract.0).u32(*period).u64(*quantity),
            TxKind::RecordCheck {
                contract,
                period,
                quantity,
            } => b.variant(15).raw(&contract.0).u32(*period).u64(*quantity),
            TxKind::SettlePeriod { contract, period } => {
                b.variant(16).raw(&contract.0).u32(*period)
            }
            TxKind::AcknowledgePayment {
                payer,
                payee,
                amount,
            } => account(account(b.variant(17), payer), payee).i64(*amount),
            TxKind::CreatePool {
                name,
                keys,
                start_ms,
                period_ms,
            } => str_u16_map(b.variant(18).str(name), keys)
                .u64(*start_ms)
                .u64(*period_ms),
            TxKind::PostPoolAmount {
                pool,
                period,
                amount,
            } => b.variant(19).raw(&pool.0).u32(*period).i64(*amount),
            TxKind::SplitPool { pool, period } => b.variant(20).raw(&pool.0).u32(*period),
            TxKind::OpenDispute {
                contract,
                period,
                reason,
            } => b.variant(21).raw(&contract.0).u32(*period).str(reason),
            TxKind::ResolveDispute {
                contract,
                period,
                adjustment,
            } => b.variant(22).raw(&contract.0).u32(*period).i64(*adjustment),
            TxKind::JoinPool { pool } => b.variant(23).raw(&pool.0),
            TxKind::ObjectPoolAmount {
                pool,
                period,
                posting,
            } => b.variant(24).raw(&pool.0).u32(*period).raw(&posting.0),
            TxKind::ResolvePoolObjection {
                pool,
                period,
                posting,
                accept,
            } => b
                .variant(25)
                .raw(&pool.0)
                .u32(*period)
                .raw(&posting.0)
                .bool(*accept),
        }
    }

    pub fn body(t: &TxBody) -> Bytes {
        tx_kind(Bytes::default().str(&t.chain_id).u64(t.nonce), &t.kind)
    }

    /// `u64 14, "symbiont/tx/v1"`, then the body.
    pub fn sign_bytes(t: &TxBody) -> Bytes {
        Bytes::default().str("symbiont/tx/v1").raw(&body(t).0)
    }

    /// Signs the hand-built sign bytes with ed25519-dalek directly.
    pub fn sign(seed: &[u8; 32], t: &TxBody) -> (Bytes, [u8; 64]) {
        use ed25519_dalek::Signer;
        let signing = ed25519_dalek::SigningKey::from_bytes(seed);
        let signature = signing.sign(&sign_bytes(t).0).to_bytes();
        let public = signing.verifying_key().to_bytes();
        (body(t).raw(&public).raw(&signature), signature)
    }

    pub fn state_key(k: &Key) -> Bytes {
        let b = Bytes::default();
        match k {
            Key::Meta => b.variant(0),
            Key::Params => b.variant(1),
            Key::Firm(id) => b.variant(2).str(id),
            Key::Key(k) => b.variant(3).raw(&key(k)),
            Key::Nonce(k) => b.variant(4).raw(&key(k)),
            Key::Node(id) => b.variant(5).str(id),
            Key::Kind(id) => b.variant(6).str(id),
            Key::Licence { firm, ewc_code } => b.variant(7).str(firm).str(ewc_code),
            Key::Proposal(id) => b.variant(8).raw(&id.0),
            Key::Listing(id) => b.variant(9).raw(&id.0),
            Key::Contract(id) => b.variant(10).raw(&id.0),
            Key::Period { contract, period } => b.variant(11).raw(&contract.0).u32(*period),
            Key::Balance(a) => account(b.variant(12), a),
            Key::Obligation { debtor, creditor } => {
                account(account(b.variant(13), debtor), creditor)
            }
            Key::Avoided(AvoidedAccount::Firm(id)) => b.variant(14).variant(0).str(id),
            Key::Avoided(AvoidedAccount::Network) => b.variant(14).variant(1),
            Key::Pool(id) => b.variant(15).raw(&id.0),
            Key::PoolPeriod { pool, period } => b.variant(16).raw(&pool.0).u32(*period),
            Key::Receipt(id) => b.variant(17).raw(&id.0),
            Key::Evidence(id) => b.variant(18).raw(&id.0),
        }
    }

    pub fn meta(m: &Meta) -> Bytes {
        Bytes::default()
            .str(&m.chain_id)
            .raw(&m.genesis_hash.0)
            .u64(m.height)
            .u64(m.time_ms)
    }

    pub fn params(p: &Params) -> Bytes {
        consensus(currency(Bytes::default(), &p.currency), &p.consensus)
    }

    pub fn role(r: Role) -> u32 {
        match r {
            Role::Admin => 0,
            Role::Operator => 1,
            Role::Meter => 2,
        }
    }

    pub fn key_record(r: &KeyRecord) -> Bytes {
        Bytes::default().str(&r.firm).variant(role(r.role))
    }

    pub fn proposal(p: &Proposal) -> Bytes {
        let b = gov(Bytes::default().str(&p.proposer), &p.action).u64(p.expires_ms);
        let b = p.votes.iter().fold(b.len(p.votes.len()), |b, (firm, yes)| {
            b.str(firm).bool(*yes)
        });
        match p.status {
            ProposalStatus::Open => b.variant(0),
            ProposalStatus::Passed { at_ms } => b.variant(1).u64(at_ms),
        }
    }

    pub fn listing(l: &Listing) -> Bytes {
        let b = Bytes::default().str(&l.owner).variant(match l.side {
            Side::Offer => 0,
            Side::Request => 1,
        });
        let b = listing_terms(b, &l.terms);
        match &l.status {
            ListingStatus::Open => b.variant(0),
            ListingStatus::Accepted { by, at_ms } => b.variant(1).str(by).u64(*at_ms),
            ListingStatus::Withdrawn { at_ms } => b.variant(2).u64(*at_ms),
        }
    }

    pub fn contract(c: &Contract) -> Bytes {
        let b = contract_terms(Bytes::default(), &c.terms).str(&c.proposer);
        let b = match c.status {
            ContractStatus::Proposed => b.variant(0),
            ContractStatus::Active { signed_at_ms } => b.variant(1).u64(signed_at_ms),
            ContractStatus::Terminated { at_ms } => b.variant(2).u64(at_ms),
            ContractStatus::Withdrawn { at_ms } => b.variant(3).u64(at_ms),
        };
        let names: Vec<&str> = c.terminate_requests.iter().map(String::as_str).collect();
        b.strs(&names)
    }

    pub fn journal(b: Bytes, entries: &[JournalEntry]) -> Bytes {
        entries.iter().fold(b.len(entries.len()), |b, e| {
            account(b, &e.account).i64(e.amount)
        })
    }

    pub fn statement(b: Bytes, s: &Statement) -> Bytes {
        let b = opt_u64(b.u64(s.availability).u64(s.delivered), s.check)
            .u64(s.lower)
            .u64(s.upper)
            .u64(s.base_units)
            .u64(s.excess_units)
            .i64(s.energy_charge)
            .u64(s.supply_shortfall_units)
            .i64(s.supply_penalty)
            .u64(s.offtake_shortfall_units)
            .i64(s.offtake_penalty)
            .i64(s.net);
        s.flags.iter().fold(b.len(s.flags.len()), |b, f| {
            b.variant(match f {
                Flag::MeterDiscrepancy => 0,
                Flag::CheckMeterMismatch => 1,
            })
        })
    }

    pub fn period(p: &PeriodRecord) -> Bytes {
        let b = Bytes::default();
        let b = opt_u64(b, p.availability);
        let b = opt_u64(b, p.delivered);
        let b = opt_u64(b, p.check);
        let b = match &p.settled {
            None => b.none(),
            Some(s) => journal(
                statement(b.some().u64(s.at_ms), &s.statement)
                    .i64(s.adjustment)
                    .i64(s.net)
                    .u64(s.avoided_g),
                &s.journal,
            ),
        };
        let b = match &p.dispute {
            None => b.none(),
            Some(DisputeStatus::Open { by, reason }) => b.some().variant(0).str(by).str(reason),
            Some(DisputeStatus::Resolved { adjustment, at_ms }) => {
                b.some().variant(1).i64(*adjustment).u64(*at_ms)
            }
        };
        journal(b, &p.adjustment_journal)
    }

    pub fn pool(p: &Pool) -> Bytes {
        let b = str_u16_map(Bytes::default().str(&p.name).str(&p.operator), &p.keys)
            .u64(p.start_ms)
            .u64(p.period_ms);
        let joined: Vec<&str> = p.joined.iter().map(String::as_str).collect();
        b.strs(&joined)
    }

    pub fn pool_period(p: &PoolPeriod) -> Bytes {
        let b = Bytes::default().i64(p.gain_net);
        let b = match &p.split {
            None => b.none(),
            Some(parts) => parts
                .iter()
                .fold(b.some().len(parts.len()), |b, (m, part)| {
                    b.str(m).i64(*part)
                }),
        };
        p.postings.iter().fold(b.len(p.postings.len()), |b, x| {
            let b = b.raw(&x.id.0).str(&x.member).i64(x.amount);
            match &x.status {
                PostingStatus::Open => b.variant(0),
                PostingStatus::Objected { by, at_ms } => b.variant(1).str(by).u64(*at_ms),
                PostingStatus::Accepted { by, at_ms } => b.variant(2).str(by).u64(*at_ms),
                PostingStatus::Refused { by, at_ms } => b.variant(3).str(by).u64(*at_ms),
            }
        })
    }

    pub fn receipt(r: &Receipt) -> Bytes {
        let b = Bytes::default().u64(r.height).u32(r.index);
        opt_str(b, &r.error)
    }

    pub fn evidence_record(e: &EvidenceRecord) -> Bytes {
        Bytes::default()
            .raw(&key(&e.validator))
            .u64(e.height)
            .u32(e.round)
            .u8(e.step)
            .u64(e.recorded_at)
    }

    /// The app hash input: the previous app hash, then the writes sorted
    /// by key bytes, each `(key bytes, Option<value bytes>)` with both as
    /// length-prefixed byte sequences.
    pub fn app_hash_input(previous: &[u8; 32], writes: &[(Bytes, Option<Bytes>)]) -> Bytes {
        let mut sorted: Vec<&(Bytes, Option<Bytes>)> = writes.iter().collect();
        sorted.sort_by(|a, b| a.0.0.cmp(&b.0.0));
        sorted.iter().fold(
            Bytes::default().raw(previous).len(writes.len()),
            |b, (k, v)| {
                let b = b.byte_seq(&k.0);
                match v {
                    None => b.none(),
                    Some(v) => b.some().byte_seq(&v.0),
                }
            },
        )
    }
}

// --- the vectors -------------------------------------------------------------

fn key_and_signature_vectors(check: &mut Check) {
    let rfc = rfc_keypair();
    let public = hex::decode(RFC8032_TEST1_PUBLIC).unwrap();
    check.bytes("key.rfc8032_test1.public", rfc.public().0.to_vec(), public);
    check.bytes(
        "key.rfc8032_test1.empty_message_signature",
        rfc.sign(b"").0.to_vec(),
        hex::decode(RFC8032_TEST1_EMPTY_SIGNATURE).unwrap(),
    );
}

fn tx_vectors(check: &mut Check) {
    for (name, kind) in kinds() {
        check.value(
            &format!("kind.{name}"),
            &kind,
            hand::tx_kind(Bytes::default(), &kind),
        );
    }
    for (name, action) in gov_actions() {
        check.value(
            &format!("gov.{name}"),
            &action,
            hand::gov(Bytes::default(), &action),
        );
    }
    // The signed example: AuthorizeKey signed by the RFC 8032 TEST 1 key.
    let body = TxBody {
        chain_id: "kalundborg-1".into(),
        nonce: 7,
        kind: TxKind::AuthorizeKey {
            firm: "gyproc".into(),
            key: PublicKey([0xab; 32]),
            role: KeyRole::Meter,
        },
    };
    let tx = SignedTx::sign(body.clone(), &rfc_keypair());
    let mut seed = [0u8; 32];
    hex::decode_to_slice(RFC8032_TEST1_SEED, &mut seed).unwrap();
    let (hand_tx, hand_signature) = hand::sign(&seed, &body);
    check.bytes(
        "tx.example.sign_bytes",
        body.sign_bytes(),
        hand::sign_bytes(&body).0,
    );
    check.bytes(
        "tx.example.signature",
        tx.signature.0.to_vec(),
        hand_signature.to_vec(),
    );
    check.value("tx.example.signed", &tx, hand_tx.clone());
    check.bytes("tx.example.id", tx.id().0.to_vec(), hand_tx.hash().to_vec());
    assert_eq!(tx.verify("kalundborg-1"), Ok(()));
    // As the document says: `ab×32` decodes but is no usable key.
    assert!(PublicKey([0xab; 32]).validate().is_err());
    assert_eq!(
        SignedTx::from_bytes_verified(&tx.to_bytes(), "kalundborg-1"),
        Ok(tx)
    );
}

fn genesis_vectors(check: &mut Check) {
    let kalundborg =
        Genesis::from_toml(include_str!("../../deploy/genesis/kalundborg.toml")).unwrap();
    check.bytes(
        "genesis.kalundborg.hash",
        kalundborg.hash().0.to_vec(),
        hand::genesis(&kalundborg).hash().to_vec(),
    );
    let demo = demo_genesis();
    demo.validate().expect("the demo genesis is valid");
    check.value("genesis.demo", &demo, hand::genesis(&demo));
    check.bytes(
        "genesis.demo.hash",
        demo.hash().0.to_vec(),
        hand::genesis(&demo).hash().to_vec(),
    );
}

fn state_vectors(check: &mut Check) {
    for (name, key) in state_keys() {
        check.value(&format!("statekey.{name}"), &key, hand::state_key(&key));
        assert_eq!(key.bytes(), codec::encode(&key));
    }
    let meta = Meta {
        chain_id: "demo-1".into(),
        genesis_hash: h(0x44),
        height: 1,
        time_ms: T0 + 1000,
    };
    check.value("record.Meta", &meta, hand::meta(&meta));
    let params = Params {
        currency: Currency {
            code: "DKK".into(),
            minor_units: 2,
        },
        consensus: consensus_params(),
    };
    check.value("record.Params", &params, hand::params(&params));
    let firm = firm_hub();
    check.value("record.Firm", &firm, hand::firm(Bytes::default(), &firm));
    let record = KeyRecord {
        firm: "gyproc".into(),
        role: Role::Meter,
    };
    check.value("record.Key", &record, hand::key_record(&record));
    check.value("record.Nonce", &7u64, Bytes::default().u64(7));
    let node = node_n5();
    check.value("record.Node", &node, hand::node(Bytes::default(), &node));
    let kind = fly_ash();
    check.value(
        "record.Kind",
        &kind,
        hand::resource_kind(Bytes::default(), &kind),
    );
    let licence = Licence {
        expires_ms: T0 + 365 * DAY,
    };
    check.value(
        "record.Licence",
        &licence,
        Bytes::default().u64(licence.expires_ms),
    );
    let proposal = Proposal {
        proposer: "gyproc".into(),
        action: GovAction::RemoveNode { id: "n5".into() },
        expires_ms: T0 + DAY,
        votes: BTreeMap::from([("gyproc".to_string(), true), ("novo".to_string(), true)]),
        status: ProposalStatus::Passed { at_ms: T0 + 60_000 },
    };
    check.value("record.Proposal", &proposal, hand::proposal(&proposal));
    let listing = Listing {
        owner: "novo".into(),
        side: Side::Offer,
        terms: offer_terms(),
        status: ListingStatus::Accepted {
            by: "gyproc".into(),
            at_ms: T0 + 5000,
        },
    };
    check.value("record.Listing", &listing, hand::listing(&listing));
    let contract = Contract {
        terms: contract_terms(),
        proposer: "novo".into(),
        status: ContractStatus::Active {
            signed_at_ms: T0 + 9000,
        },
        terminate_requests: vec!["gyproc".into()],
    };
    check.value("record.Contract", &contract, hand::contract(&contract));
    let period = period_record();
    check.value("record.Period", &period, hand::period(&period));
    check.value(
        "record.Balance",
        &-754_950i64,
        Bytes::default().i64(-754_950),
    );
    check.value(
        "record.Obligation",
        &754_950i64,
        Bytes::default().i64(754_950),
    );
    check.value(
        "record.Avoided",
        &4_452_000u64,
        Bytes::default().u64(4_452_000),
    );
    let pool = pool_record();
    check.value("record.Pool", &pool, hand::pool(&pool));
    let pool_period = pool_period_record();
    check.value(
        "record.PoolPeriod",
        &pool_period,
        hand::pool_period(&pool_period),
    );
    let receipt = Receipt {
        height: 1,
        index: 1,
        error: Some("unknown_listing".into()),
    };
    check.value("record.Receipt", &receipt, hand::receipt(&receipt));
    let evidence = EvidenceRecord {
        validator: pk(4),
        height: 1,
        round: 0,
        step: 0,
        recorded_at: 2,
    };
    check.value(
        "record.Evidence",
        &evidence,
        hand::evidence_record(&evidence),
    );
}

/// The demo genesis state and block 1: the app hash inputs and results.
fn app_hash_vectors(check: &mut Check) {
    let genesis = demo_genesis();
    let mut state = exec::genesis_state(&genesis);

    // By hand: the genesis writes, from the document's list.
    let genesis_hash = hand::genesis(&genesis).hash();
    let mut writes: Vec<(Bytes, Option<Bytes>)> = vec![
        (
            hand::state_key(&Key::Meta),
            Some(hand::meta(&Meta {
                chain_id: genesis.chain_id.clone(),
                genesis_hash: Hash(genesis_hash),
                height: 0,
                time_ms: genesis.genesis_time_ms,
            })),
        ),
        (
            hand::state_key(&Key::Params),
            Some(hand::consensus(
                hand::currency(Bytes::default(), &genesis.currency),
                &genesis.consensus,
            )),
        ),
    ];
    for firm in &genesis.firms {
        writes.push((
            hand::state_key(&Key::Firm(firm.id.clone())),
            Some(hand::firm(Bytes::default(), firm)),
        ));
        writes.push((
            hand::state_key(&Key::Key(firm.admin_key)),
            Some(Bytes::default().str(&firm.id).variant(0)),
        ));
    }
    for node in &genesis.nodes {
        writes.push((
            hand::state_key(&Key::Node(node.id.clone())),
            Some(hand::node(Bytes::default(), node)),
        ));
    }
    for kind in &genesis.resource_kinds {
        writes.push((
            hand::state_key(&Key::Kind(kind.id.clone())),
            Some(hand::resource_kind(Bytes::default(), kind)),
        ));
    }
    let input = hand::app_hash_input(&genesis_hash, &writes);
    let typed_input = codec::encode(&(genesis.hash(), sorted_records(&state)));
    check.bytes("app.genesis.input", typed_input, input.0.clone());
    check.bytes(
        "app.genesis.app_hash",
        state.app_hash().0.to_vec(),
        input.hash().to_vec(),
    );
    let genesis_app_hash = input.hash();

    // Block 1.
    let block = demo_block();
    let txs: Vec<SignedTx> = block.iter().map(|(tx, _)| tx.clone()).collect();
    let outcome = exec::execute_block(
        &mut state,
        &BlockInfo {
            height: 1,
            time_ms: DEMO_BLOCK_TIME_MS,
        },
        &txs,
    )
    .unwrap();
    let codes: Vec<Option<&str>> = outcome
        .results
        .iter()
        .map(|(_, r)| r.as_ref().err().map(AppError::code))
        .collect();
    let expected: Vec<Option<&str>> = block.iter().map(|(_, code)| *code).collect();
    assert_eq!(codes, expected, "the demo block's results");

    // By hand: each transaction signed from the hand-built sign bytes.
    let hand_txs: Vec<Bytes> = txs
        .iter()
        .map(|tx| {
            let seed = (1..=255u8)
                .find(|s| pk(*s) == tx.signer)
                .expect("a demo key");
            hand::sign(&[seed; 32], &tx.body).0
        })
        .collect();
    for (i, (tx, hand_tx)) in txs.iter().zip(&hand_txs).enumerate() {
        if i == 3 {
            continue; // the repeat of tx 0
        }
        check.bytes(
            &format!("app.block1.tx{i}"),
            tx.to_bytes(),
            hand_tx.0.clone(),
        );
    }
    let id = |i: usize| Hash(hand_txs[i].hash());
    let block_writes = vec![
        (
            hand::state_key(&Key::Key(pk(21))),
            Some(Bytes::default().str("gyproc").variant(1)),
        ),
        (
            hand::state_key(&Key::Nonce(pk(2))),
            Some(Bytes::default().u64(2)),
        ),
        (
            hand::state_key(&Key::Receipt(id(0))),
            Some(hand::receipt(&Receipt {
                height: 1,
                index: 0,
                error: None,
            })),
        ),
        (
            hand::state_key(&Key::Receipt(id(1))),
            Some(hand::receipt(&Receipt {
                height: 1,
                index: 1,
                error: Some("unknown_listing".into()),
            })),
        ),
        (
            hand::state_key(&Key::Meta),
            Some(hand::meta(&Meta {
                chain_id: genesis.chain_id.clone(),
                genesis_hash: Hash(genesis_hash),
                height: 1,
                time_ms: DEMO_BLOCK_TIME_MS,
            })),
        ),
    ];
    let input = hand::app_hash_input(&genesis_app_hash, &block_writes);
    check.bytes(
        "app.block1.input",
        codec::encode(&(Hash(genesis_app_hash), &outcome.writes)),
        input.0.clone(),
    );
    check.bytes(
        "app.block1.app_hash",
        outcome.app_hash.0.to_vec(),
        input.hash().to_vec(),
    );
    assert_eq!(state.app_hash(), outcome.app_hash);
    assert_eq!(
        state::app_hash(&Hash(genesis_app_hash), &outcome.writes),
        outcome.app_hash
    );

    // Block 2: a key authorized and revoked in one block is a deletion in
    // the write set, though no record had that key before the block.
    let block1_app_hash = outcome.app_hash;
    assert!(!state.contains(&Key::Key(pk(22))));
    let txs = vec![
        demo_tx(
            "demo-1",
            2,
            3,
            TxKind::AuthorizeKey {
                firm: "gyproc".into(),
                key: pk(22),
                role: KeyRole::Meter,
            },
        ),
        demo_tx(
            "demo-1",
            2,
            4,
            TxKind::RevokeKey {
                firm: "gyproc".into(),
                key: pk(22),
            },
        ),
    ];
    let outcome = exec::execute_block(
        &mut state,
        &BlockInfo {
            height: 2,
            time_ms: DEMO_BLOCK2_TIME_MS,
        },
        &txs,
    )
    .unwrap();
    assert!(outcome.results.iter().all(|(_, r)| r.is_ok()), "both apply");
    let hand_txs: Vec<Bytes> = txs
        .iter()
        .map(|tx| hand::sign(&[2; 32], &tx.body).0)
        .collect();
    for (i, (tx, hand_tx)) in txs.iter().zip(&hand_txs).enumerate() {
        check.bytes(
            &format!("app.block2.tx{i}"),
            tx.to_bytes(),
            hand_tx.0.clone(),
        );
    }
    let id = |i: usize| Hash(hand_txs[i].hash());
    let mut block_writes = vec![
        (
            hand::state_key(&Key::Meta),
            Some(hand::meta(&Meta {
                chain_id: genesis.chain_id.clone(),
                genesis_hash: Hash(genesis_hash),
                height: 2,
                time_ms: DEMO_BLOCK2_TIME_MS,
            })),
        ),
        (hand::state_key(&Key::Key(pk(22))), None),
        (
            hand::state_key(&Key::Nonce(pk(2))),
            Some(Bytes::default().u64(4)),
        ),
    ];
    for i in 0..2 {
        block_writes.push((
            hand::state_key(&Key::Receipt(id(i))),
            Some(hand::receipt(&Receipt {
                height: 2,
                index: i as u32,
                error: None,
            })),
        ));
    }
    let input = hand::app_hash_input(&block1_app_hash.0, &block_writes);
    check.bytes(
        "app.block2.input",
        codec::encode(&(block1_app_hash, &outcome.writes)),
        input.0.clone(),
    );
    check.bytes(
        "app.block2.app_hash",
        outcome.app_hash.0.to_vec(),
        input.hash().to_vec(),
    );
}

/// The genesis state's records as a write set (all of them are writes).
fn sorted_records(state: &state::State) -> state::WriteSet {
    state
        .records()
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect()
}

fn all_vectors() -> Vectors {
    let mut check = Check::default();
    key_and_signature_vectors(&mut check);
    tx_vectors(&mut check);
    genesis_vectors(&mut check);
    state_vectors(&mut check);
    app_hash_vectors(&mut check);
    check.vectors
}

#[test]
fn document_vectors_are_what_the_code_and_the_hand_encoder_give() {
    let vectors = all_vectors();
    doc::check_against_document(&vectors, |name| !doc::is_node_vector(name));
}

#[test]
fn every_kind_and_state_key_has_a_vector_in_variant_order() {
    let kinds = kinds();
    assert_eq!(kinds.len(), 26, "one sample per TxKind variant");
    for (index, (name, kind)) in kinds.iter().enumerate() {
        assert_eq!(
            codec::encode(kind)[..4],
            (index as u32).to_le_bytes(),
            "{name}"
        );
    }
    // The next index is not a kind: 26 variants and no more.
    let unknown = Bytes::default().str("demo-1").u64(1).variant(26).0;
    assert!(matches!(
        codec::decode::<TxBody>(&unknown),
        Err(codec::CodecError::UnknownVariant { .. })
    ));
    let keys = state_keys();
    assert_eq!(keys.len(), 19, "one sample per Key variant");
    for (index, (name, key)) in keys.iter().enumerate() {
        assert_eq!(key.bytes()[..4], (index as u32).to_le_bytes(), "{name}");
    }
    assert_eq!(gov_actions().len(), 7);
}

#[test]
fn the_statement_sample_is_what_settlement_gives() {
    let readings = Readings {
        availability: 79_000,
        delivered: 79_500,
        check: Some(80_100),
    };
    assert_eq!(
        settlement::settle(&settlement_terms(), &readings),
        Ok(statement())
    );
    assert_eq!(settlement::avoided_grams(79_500, 56_000), Ok(4_452_000));
}

#[test]
fn key_fields_are_checked_on_decoding_only_for_canonical_encoding() {
    // The AuthorizeKey vector with its key replaced by y = p + 3: not the
    // canonical encoding of its point, refused as `Malformed`.
    let mut bytes = codec::encode(&kinds()[0].1);
    let start = 4 + 8 + "gyproc".len();
    let mut key = [0xff; 32];
    key[0] = 0xf0;
    key[31] = 0x7f;
    bytes[start..start + 32].copy_from_slice(&key);
    assert!(matches!(
        codec::decode::<TxKind>(&bytes),
        Err(codec::CodecError::Malformed { .. })
    ));
    // y = 2 is no curve point: it decodes (it aliases no other key) and is
    // refused where a key is used.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    assert!(PublicKey::from_bytes(not_a_point).is_ok());
    assert!(PublicKey(not_a_point).validate().is_err());
    bytes[start..start + 32].copy_from_slice(&not_a_point);
    assert!(codec::decode::<TxKind>(&bytes).is_ok());
    assert!(
        PublicKey(not_a_point)
            .verify(b"", &Signature([0; 64]))
            .is_err()
    );
}

/// The codes of `code()` in the given source: every `=> "code"`.
fn codes_in_source(source: &str) -> BTreeSet<String> {
    source
        .split("=> \"")
        .skip(1)
        .map(|rest| rest.split('"').next().expect("a closing quote").to_string())
        .collect()
}

#[test]
fn every_result_code_is_documented() {
    let mut codes = BTreeSet::new();
    for source in [
        include_str!("../src/exec/error.rs"),
        include_str!("../src/tx.rs"),
        include_str!("../src/pool.rs"),
    ] {
        codes.extend(codes_in_source(source));
    }
    assert!(codes.len() > 60, "{codes:?}");
    // The table of section 9, "Every result code": its rows `| `code` | ...`.
    let section = doc::LEDGER_FORMAT
        .split("### Every result code")
        .nth(1)
        .expect("the section")
        .split("\n### ")
        .next()
        .expect("its text");
    let documented: BTreeSet<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .map(|rest| {
            rest.split('`')
                .next()
                .expect("a closing backquote")
                .to_string()
        })
        .collect();
    assert_eq!(
        documented, codes,
        "documented codes (left) and the code's (right)"
    );
}

/// Block `height` of the demo chain at `T0 + height` seconds.
fn run_block(state: &mut state::State, height: u64, txs: &[SignedTx]) -> Vec<Option<&'static str>> {
    let outcome = exec::execute_block(
        state,
        &BlockInfo {
            height,
            time_ms: T0 + height * 1000,
        },
        txs,
    )
    .unwrap();
    outcome
        .results
        .iter()
        .map(|(_, result)| result.as_ref().err().map(AppError::code))
        .collect()
}

fn demo_tx(chain: &str, seed: u8, nonce: u64, kind: TxKind) -> SignedTx {
    SignedTx::sign(
        TxBody {
            chain_id: chain.into(),
            nonce,
            kind,
        },
        &keypair(seed),
    )
}

/// Section 9: the checks before the nonce are made in the documented
/// order, the first failure wins, and such a failure writes nothing.
#[test]
fn the_first_failing_check_gives_the_result() {
    let mut state = exec::genesis_state(&demo_genesis());
    let withdraw = TxKind::Withdraw { listing: h(3) };
    let authorize = demo_tx(
        "demo-1",
        2,
        1,
        TxKind::AuthorizeKey {
            firm: "gyproc".into(),
            key: pk(21),
            role: KeyRole::Operator,
        },
    );
    let operator_withdraw = demo_tx("demo-1", 21, 1, withdraw.clone());
    // An operator key, for another firm, with a key that is no point:
    // the role is checked first.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    let operator_authorize = demo_tx(
        "demo-1",
        21,
        2,
        TxKind::AuthorizeKey {
            firm: "novo".into(),
            key: PublicKey(not_a_point),
            role: KeyRole::Meter,
        },
    );
    assert_eq!(
        run_block(
            &mut state,
            1,
            &[authorize, operator_withdraw.clone(), operator_authorize]
        ),
        [None, Some("unknown_listing"), Some("unauthorized")]
    );
    // The key is revoked: its transaction, repeated, is already included.
    let revoke = demo_tx(
        "demo-1",
        2,
        2,
        TxKind::RevokeKey {
            firm: "gyproc".into(),
            key: pk(21),
        },
    );
    assert_eq!(run_block(&mut state, 2, &[revoke]), [None]);
    let stranger = |chain: &str, nonce, bad_signature: bool| {
        let mut tx = demo_tx(chain, 9, nonce, withdraw.clone());
        if bad_signature {
            tx.signature = Signature([0; 64]);
        }
        tx
    };
    let failing = [
        // Repeated, by a signer unknown by now.
        (operator_withdraw, "already_included"),
        // Another chain, a bad signature, an unknown signer, a bad nonce.
        (stranger("other-1", 7, true), "wrong_chain_id"),
        // A bad signature, an unknown signer, a bad nonce.
        (stranger("demo-1", 7, true), "bad_signature"),
        // An unknown signer (the revoked key), a bad nonce.
        (demo_tx("demo-1", 21, 9, withdraw.clone()), "unknown_signer"),
        // A bad nonce, a kind that would fail.
        (demo_tx("demo-1", 2, 9, withdraw.clone()), "bad_nonce"),
    ];
    let before = state.records().clone();
    let txs: Vec<SignedTx> = failing.iter().map(|(tx, _)| tx.clone()).collect();
    let codes: Vec<Option<&str>> = failing.iter().map(|(_, code)| Some(*code)).collect();
    assert_eq!(run_block(&mut state, 3, &txs), codes);
    // Nothing written but the meta record.
    let mut after = state.records().clone();
    after.insert(Key::Meta.bytes(), before[&Key::Meta.bytes()].clone());
    assert_eq!(after, before);
}

/// Section 3: strict verification refuses `s + L` although the equation
/// still holds for it.
#[test]
fn strict_verification_refuses_a_non_canonical_s() {
    let rfc = rfc_keypair();
    let signature = rfc.sign(b"");
    assert_eq!(rfc.public().verify(b"", &signature), Ok(()));
    // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    let l: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut bytes = signature.0;
    let mut carry = 0u16;
    for (byte, add) in bytes[32..].iter_mut().zip(l) {
        let sum = *byte as u16 + add as u16 + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    assert!(
        rfc.public().verify(b"", &Signature(bytes)).is_err(),
        "s + L must be refused"
    );
}

/// Section 1: an `Option` tag other than 0 or 1 is `UnknownVariant`; set
/// elements out of order or repeated are `NonCanonical`.
#[test]
fn option_tags_and_sets_decode_strictly() {
    assert!(matches!(
        codec::decode::<Option<u8>>(&[2, 0]),
        Err(codec::CodecError::UnknownVariant { .. })
    ));
    for elements in [[5u8, 3], [5, 5]] {
        let bytes = Bytes::default().len(2).raw(&elements).0;
        assert_eq!(
            codec::decode::<BTreeSet<u8>>(&bytes),
            Err(codec::CodecError::NonCanonical)
        );
    }
    let bytes = Bytes::default().len(2).raw(&[3, 5]).0;
    assert_eq!(
        codec::decode::<BTreeSet<u8>>(&bytes),
        Ok(BTreeSet::from([3, 5]))
    );
}

/// Section 9, "The checks of each kind": where a transaction breaks
/// several rules of its kind, the first in the documented order wins.
#[test]
fn the_first_failing_check_of_a_kind_gives_the_code() {
    let mut state = exec::genesis_state(&demo_genesis());
    let authorize = |nonce, seed, role| {
        demo_tx(
            "demo-1",
            2,
            nonce,
            TxKind::AuthorizeKey {
                firm: "gyproc".into(),
                key: pk(seed),
                role,
            },
        )
    };
    assert_eq!(
        run_block(
            &mut state,
            1,
            &[
                authorize(1, 21, KeyRole::Operator),
                authorize(2, 22, KeyRole::Meter)
            ]
        ),
        [None, None]
    );
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    let mut nonces: BTreeMap<u8, u64> = BTreeMap::from([(2, 2)]);
    let mut next = |seed: u8| {
        let nonce = nonces.entry(seed).or_insert(0);
        *nonce += 1;
        *nonce
    };
    let cases: Vec<(u8, TxKind, &str)> = vec![
        // Admin of gyproc, for novo, with a key that is no point.
        (
            2,
            TxKind::AuthorizeKey {
                firm: "novo".into(),
                key: PublicKey(not_a_point),
                role: KeyRole::Meter,
            },
            "wrong_firm",
        ),
        // An operator proposing, with an expiry in the past.
        (
            21,
            TxKind::Propose {
                action: GovAction::RemoveNode { id: "n1".into() },
                expires_ms: 0,
            },
            "unauthorized",
        ),
        // Not a facilitator, and an invalid kind id.
        (
            2,
            TxKind::RegisterKind {
                kind: ResourceKind {
                    id: "Bad Id".into(),
                    ..fly_ash()
                },
            },
            "not_facilitator",
        ),
        // A facilitator, for an unknown firm, with a bad EWC code.
        (
            3,
            TxKind::GrantLicence {
                firm: "nobody".into(),
                ewc_code: "bad".into(),
                expires_ms: 0,
            },
            "unknown_firm",
        ),
        // A facilitator trading an unknown kind.
        (
            3,
            TxKind::PostOffer {
                listing: ListingTerms {
                    kind: "unknown".into(),
                    ..offer_terms()
                },
            },
            "facilitator_trades",
        ),
        // A meter key acknowledging a payment to an unknown pool.
        (
            22,
            TxKind::AcknowledgePayment {
                payer: Account::Firm("novo".into()),
                payee: Account::Pool(h(5)),
                amount: 0,
            },
            "unauthorized",
        ),
        // An admin acknowledging a payment to an unknown pool, amount 0.
        (
            2,
            TxKind::AcknowledgePayment {
                payer: Account::Firm("novo".into()),
                payee: Account::Pool(h(5)),
                amount: 0,
            },
            "unknown_pool",
        ),
        // An admin key (not a meter), for an unknown contract: the
        // contract is looked up before the reader.
        (
            2,
            TxKind::RecordDelivery {
                contract: h(4),
                period: 0,
                quantity: 1,
            },
            "unknown_contract",
        ),
        // A pool with a bad name and no members.
        (
            21,
            TxKind::CreatePool {
                name: " ".into(),
                keys: BTreeMap::new(),
                start_ms: T0,
                period_ms: 0,
            },
            "invalid_field",
        ),
        (
            21,
            TxKind::CreatePool {
                name: "PV field".into(),
                keys: BTreeMap::from([("nobody".to_string(), 0)]),
                start_ms: T0,
                period_ms: 0,
            },
            "pool_zero_key",
        ),
        // An operator joining an unknown pool.
        (21, TxKind::JoinPool { pool: h(5) }, "unauthorized"),
        // A contract with the consumer as supplier and an unknown kind.
        (
            21,
            TxKind::ProposeContract {
                terms: ContractTerms {
                    supplier: "gyproc".into(),
                    kind: "unknown".into(),
                    ..contract_terms()
                },
            },
            "invalid_field",
        ),
    ];
    let txs: Vec<SignedTx> = cases
        .iter()
        .map(|(seed, kind, _)| demo_tx("demo-1", *seed, next(*seed), kind.clone()))
        .collect();
    let codes: Vec<Option<&str>> = cases.iter().map(|(_, _, code)| Some(*code)).collect();
    assert_eq!(run_block(&mut state, 2, &txs), codes);
}
