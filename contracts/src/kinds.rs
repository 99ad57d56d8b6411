//! The payloads of transaction kinds: what each kind says. Re-exported from
//! [`crate::tx`]; their meaning is in [`crate::exec`].
//!
//! Ids of things created on the ledger (governance proposals, listings,
//! contracts, pools, pool postings) are the tx id of the transaction that
//! created them, so a client knows the id before the transaction is
//! included.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::genesis::{ConsensusParams, Firm, Node, ResourceKind};
use crate::hash::Hash;
use crate::keys::PublicKey;
use crate::settlement::SettlementTerms;

/// Who can hold a balance and owe or be owed: a firm, or a pool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Account {
    Firm(String),
    Pool(Hash),
}

/// A change to the network that needs more than 2/3 of the firms' votes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GovAction {
    AddFirm(Firm),
    RemoveFirm {
        id: String,
    },
    AddNode(Node),
    RemoveNode {
        id: String,
    },
    /// Make a node a validator with `power`, or (power 0) no validator.
    SetPower {
        node: String,
        power: u64,
    },
    /// Replace the consensus parameters.
    SetConsensus(ConsensusParams),
    RegisterKind(ResourceKind),
}

/// An offer (supply) or a request (demand) on the market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingTerms {
    /// Resource kind id.
    pub kind: String,
    /// Quantity per period, thousandths of the kind's unit.
    pub quantity_per_period: u64,
    /// Offer: asking price; request: price limit. Minor units per whole
    /// unit; negative for a gate fee.
    pub price: i64,
    pub delivery_point: String,
    /// Values of the kind's quality fields (e.g. temperature_c = 180).
    pub quality: BTreeMap<String, i64>,
    pub period_ms: u64,
    pub periods: u32,
    /// The listing can be accepted until this block time (exclusive).
    pub valid_until_ms: u64,
}

/// Everything two firms sign: parties, stream, schedule, meters and the
/// terms settlement reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractTerms {
    pub supplier: String,
    pub consumer: String,
    /// Resource kind id.
    pub kind: String,
    pub delivery_point: String,
    pub quality: BTreeMap<String, i64>,
    pub settlement: SettlementTerms,
    /// Block time at which period 0 starts.
    pub start_ms: u64,
    pub period_ms: u64,
    pub periods: u32,
    /// The meter key whose readings are the delivered quantity D.
    pub billing_meter: PublicKey,
    /// A second meter key whose readings are check readings C.
    pub check_meter: Option<PublicKey>,
    /// The firm (usually a facilitator) that resolves disputes and may
    /// terminate the contract.
    pub arbiter: Option<String>,
    /// The accepted market listing this contract comes from, if any.
    pub listing: Option<Hash>,
    /// A gain-sharing pool of which the supplier is a member (a joint PV
    /// field, a joint CHP plant): the supplier's side of every settlement
    /// goes to the pool, and the pool's members share it by their keys.
    pub gain_pool: Option<Hash>,
}
