//! The application state: a sorted map from canonical-encoded [`Key`]s to
//! canonical-encoded records, behind typed accessors.
//!
//! Every write goes through [`State::put`] or [`State::delete`], which
//! record it. Block execution groups the writes of one transaction so a
//! failed transaction can be rolled back ([`State::begin`],
//! [`State::commit`], [`State::abort`]), and collects the committed writes
//! of a block into a [`WriteSet`] in ascending key order: the set the node
//! persists atomically and the app hash covers. Keys are compared as their
//! canonical bytes, so the order is the same on every machine.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::codec;
use crate::hash::Hash;
use crate::keys::PublicKey;
use crate::kinds::{Account, ContractTerms, GovAction, ListingTerms};
use crate::settlement::Statement;

/// Where a record lives. Variants are appended only: the variant index is
/// the first four bytes of every stored key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Key {
    Meta,
    Params,
    Firm(String),
    Key(PublicKey),
    Nonce(PublicKey),
    Node(String),
    Kind(String),
    Licence {
        firm: String,
        ewc_code: String,
    },
    Proposal(Hash),
    Listing(Hash),
    Contract(Hash),
    Period {
        contract: Hash,
        period: u32,
    },
    Balance(Account),
    Obligation {
        debtor: Account,
        creditor: Account,
    },
    Avoided(AvoidedAccount),
    Pool(Hash),
    PoolPeriod {
        pool: Hash,
        period: u32,
    },
    Receipt(Hash),
    /// Equivocation evidence, by the hash of its canonical encoding.
    Evidence(Hash),
}

impl Key {
    pub fn bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }
}

/// The chain's position: what the last executed block was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub chain_id: String,
    pub genesis_hash: Hash,
    /// 0 before the first block.
    pub height: u64,
    pub time_ms: u64,
}

/// What a key may do, and for which firm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Admin,
    Operator,
    Meter,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub firm: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licence {
    pub expires_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposalStatus {
    Open,
    Passed { at_ms: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub proposer: String,
    pub action: GovAction,
    pub expires_ms: u64,
    /// Firm id -> approve.
    pub votes: BTreeMap<String, bool>,
    pub status: ProposalStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    Offer,
    Request,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListingStatus {
    Open,
    Accepted { by: String, at_ms: u64 },
    Withdrawn { at_ms: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub owner: String,
    pub side: Side,
    pub terms: ListingTerms,
    pub status: ListingStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContractStatus {
    /// Signed by `proposer`, waiting for the other party.
    Proposed,
    Active {
        signed_at_ms: u64,
    },
    /// Periods starting at or after `at_ms` are void.
    Terminated {
        at_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    pub terms: ContractTerms,
    pub proposer: String,
    pub status: ContractStatus,
    /// Parties that asked to terminate by agreement.
    pub terminate_requests: Vec<String>,
}

/// One line of a journal: `amount` added to `account`'s balance. The lines
/// of every journal sum to zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub account: Account,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisputeStatus {
    Open { by: String, reason: String },
    Resolved { adjustment: i64, at_ms: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    pub at_ms: u64,
    pub statement: Statement,
    /// A resolved dispute's adjustment applied at settlement (0 if none).
    pub adjustment: i64,
    /// statement.net + adjustment: what the consumer owes the supplier.
    pub net: i64,
    pub avoided_g: u64,
    pub journal: Vec<JournalEntry>,
}

/// Readings and outcome of one contract period. Absent readings are None.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PeriodRecord {
    pub availability: Option<u64>,
    pub delivered: Option<u64>,
    pub check: Option<u64>,
    pub settled: Option<Settled>,
    pub dispute: Option<DisputeStatus>,
    /// Journal of a dispute resolved after settlement.
    pub adjustment_journal: Vec<JournalEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    /// The firm that created the pool and acknowledges payments to it (it
    /// need not be a member).
    pub operator: String,
    pub keys: BTreeMap<String, u16>,
    pub start_ms: u64,
    pub period_ms: u64,
    /// Members whose admin has joined. The pool is active (postings,
    /// splits, gain-sharing settlements) once every member has.
    pub joined: BTreeSet<String>,
}

impl Pool {
    /// Members that have not joined yet, ascending.
    pub fn waiting(&self) -> Vec<String> {
        self.keys
            .keys()
            .filter(|member| !self.joined.contains(*member))
            .cloned()
            .collect()
    }

    pub fn is_active(&self) -> bool {
        self.waiting().is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PoolPeriod {
    /// Net of the gain-sharing settlements paid into (positive) or out of
    /// the pool in this period. Their money moved when they settled.
    pub gain_net: i64,
    /// Set once split: each member's part. The parts add up to `gain_net`
    /// plus the postings that [count](PostingStatus::counts).
    pub split: Option<Vec<(String, i64)>>,
    /// What members posted, in order. A posting moves money only when the
    /// period is split, and only if it counts then.
    pub postings: Vec<PoolPosting>,
}

/// An amount a member posted for a pool period: income it collected
/// (positive) or a cost it paid (negative).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolPosting {
    /// The tx id of the `PostPoolAmount`.
    pub id: Hash,
    pub member: String,
    pub amount: i64,
    pub status: PostingStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PostingStatus {
    /// Nobody has objected: it counts in the split.
    Open,
    /// Another member objected: it is left out of the split unless a
    /// facilitator accepts it first.
    Objected { by: String, at_ms: u64 },
    /// A facilitator accepted the amount over the objection: it counts.
    Accepted { by: String, at_ms: u64 },
    /// A facilitator upheld the objection: it stays out.
    Refused { by: String, at_ms: u64 },
}

impl PostingStatus {
    /// Whether the posting is part of the split.
    pub fn counts(&self) -> bool {
        matches!(self, PostingStatus::Open | PostingStatus::Accepted { .. })
    }
}

/// Whose avoided-emission total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AvoidedAccount {
    Firm(String),
    Network,
}

/// What happened to one transaction of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub height: u64,
    pub index: u32,
    /// None: applied. Some(code): failed, and changed nothing but this
    /// receipt and the signer's nonce.
    pub error: Option<String>,
}

/// Equivocation recorded on the ledger: a validator signed two different
/// votes at one height, round and step. The consensus layer verifies the
/// evidence before a block carries it; the application records what it
/// names, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    pub validator: PublicKey,
    /// Where it equivocated.
    pub height: u64,
    pub round: u32,
    /// 0 prevote, 1 precommit.
    pub step: u8,
    /// The block that recorded it.
    pub recorded_at: u64,
}

/// One block's committed writes in ascending key order: (key bytes, new
/// value bytes or None for a deletion).
pub type WriteSet = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The state and the writes in progress.
#[derive(Debug, Clone, Default)]
pub struct State {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Writes of committed transactions in the current block.
    block_writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Writes of the transaction in progress, and the values they replaced.
    tx_writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    tx_undo: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    app_hash: Hash,
    /// While a trial is open (`begin_trial`): each key's value before the
    /// trial's first committed write to it, and the app hash before it.
    trial: Option<(Undo, Hash)>,
}

/// Old values by key (None: the key was absent).
type Undo = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

impl State {
    /// A state loaded from storage: the records and the app hash of the last block.
    pub fn from_records(map: BTreeMap<Vec<u8>, Vec<u8>>, app_hash: Hash) -> State {
        State {
            map,
            app_hash,
            ..State::default()
        }
    }

    /// Every record, in key order.
    pub fn records(&self) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        &self.map
    }

    pub fn app_hash(&self) -> Hash {
        self.app_hash
    }

    pub(crate) fn set_app_hash(&mut self, hash: Hash) {
        self.app_hash = hash;
    }

    pub fn get<T: Serialize + DeserializeOwned>(&self, key: &Key) -> Option<T> {
        self.map.get(&key.bytes()).map(|bytes| {
            // Only this module writes records, always through `put`; a
            // record that does not decode is corruption, not input.
            codec::decode(bytes).unwrap_or_else(|e| panic!("corrupt state record {key:?}: {e}"))
        })
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.map.contains_key(&key.bytes())
    }

    pub fn put<T: Serialize>(&mut self, key: &Key, value: &T) {
        self.write(key.bytes(), Some(codec::encode(value)));
    }

    pub fn delete(&mut self, key: &Key) {
        self.write(key.bytes(), None);
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let old = match &value {
            Some(bytes) => self.map.insert(key.clone(), bytes.clone()),
            None => self.map.remove(&key),
        };
        self.tx_undo.entry(key.clone()).or_insert(old);
        self.tx_writes.insert(key, value);
    }

    /// All records whose key has the canonical prefix of `key_prefix`.
    pub fn scan<T: Serialize + DeserializeOwned>(&self, prefix: &[u8]) -> Vec<(Vec<u8>, T)> {
        self.map
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, bytes)| {
                let value = codec::decode(bytes)
                    .unwrap_or_else(|e| panic!("corrupt state record under {prefix:?}: {e}"));
                (key.clone(), value)
            })
            .collect()
    }

    /// Start a transaction's writes.
    pub fn begin(&mut self) {
        assert!(
            self.tx_writes.is_empty() && self.tx_undo.is_empty(),
            "nested transaction"
        );
    }

    /// Keep the transaction's writes as part of the block.
    pub fn commit(&mut self) {
        let writes = std::mem::take(&mut self.tx_writes);
        self.block_writes.extend(writes);
        let undo = std::mem::take(&mut self.tx_undo);
        if let Some((trial, _)) = &mut self.trial {
            for (key, old) in undo {
                trial.entry(key).or_insert(old);
            }
        }
    }

    /// Opens a trial: everything committed from here on (transactions,
    /// the app hash) can be taken back with `end_trial`. A node executes
    /// a block on its state in a trial and ends it, instead of executing
    /// on a copy: copying costs the whole state, a trial only what the
    /// block writes.
    pub fn begin_trial(&mut self) {
        assert!(self.trial.is_none(), "nested trial");
        assert!(
            self.tx_writes.is_empty() && self.block_writes.is_empty(),
            "a block is in progress"
        );
        self.trial = Some((BTreeMap::new(), self.app_hash));
    }

    /// Ends the trial: the state is again what it was at `begin_trial`.
    pub fn end_trial(&mut self) {
        // A transaction left open (an execution cut short) is undone first.
        self.abort();
        self.block_writes.clear();
        let (undo, app_hash) = self.trial.take().expect("a trial is open");
        for (key, old) in undo {
            match old {
                Some(bytes) => self.map.insert(key, bytes),
                None => self.map.remove(&key),
            };
        }
        self.app_hash = app_hash;
    }

    /// Keeps what the trial changed (it cannot be ended any more).
    pub fn keep_trial(&mut self) {
        assert!(self.trial.take().is_some(), "a trial is open");
    }

    /// Applies a block's writes (as `take_writes` gave them after
    /// executing it on this same state) and its app hash: the state is
    /// then the block's post-state (in an open trial, until it ends).
    pub fn apply_block(&mut self, writes: &WriteSet, app_hash: Hash) {
        assert!(
            self.tx_writes.is_empty() && self.block_writes.is_empty(),
            "no block in progress"
        );
        for (key, value) in writes {
            let old = match value {
                Some(bytes) => self.map.insert(key.clone(), bytes.clone()),
                None => self.map.remove(key),
            };
            if let Some((trial, _)) = &mut self.trial {
                trial.entry(key.clone()).or_insert(old);
            }
        }
        self.app_hash = app_hash;
    }

    /// Undo the transaction's writes.
    pub fn abort(&mut self) {
        for (key, old) in std::mem::take(&mut self.tx_undo) {
            match old {
                Some(bytes) => self.map.insert(key, bytes),
                None => self.map.remove(&key),
            };
        }
        self.tx_writes.clear();
    }

    /// The block's writes in key order; clears them.
    pub fn take_writes(&mut self) -> WriteSet {
        assert!(self.tx_writes.is_empty(), "a transaction is still open");
        std::mem::take(&mut self.block_writes).into_iter().collect()
    }
}

/// Canonical key prefix of every record of one variant, e.g.
/// `prefix_of(&Key::Firm(String::new()))` for all firms. Works for
/// variants whose payload starts with a length-prefixed string or a fixed
/// hash by taking the four bytes of the variant index.
pub fn variant_prefix(key: &Key) -> Vec<u8> {
    key.bytes()[..4].to_vec()
}

/// app hash = blake3(previous app hash, the block's writes in canonical order).
pub fn app_hash(previous: &Hash, writes: &WriteSet) -> Hash {
    codec::hash(&(previous, writes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let mut state = State::default();
        state.begin();
        state.put(&Key::Firm("a".into()), &1u64);
        state.put(&Key::Firm("b".into()), &2u64);
        state.commit();
        let writes = state.take_writes();
        state.set_app_hash(app_hash(&Hash([0; 32]), &writes));
        state
    }

    #[test]
    fn a_trial_ends_where_it_began_and_its_writes_give_the_post_state() {
        let before = state();
        let mut tried = before.clone();
        tried.begin_trial();
        tried.begin();
        tried.put(&Key::Firm("a".into()), &10u64);
        tried.delete(&Key::Firm("b".into()));
        tried.put(&Key::Firm("c".into()), &3u64);
        tried.commit();
        // An aborted transaction writes nothing.
        tried.begin();
        tried.put(&Key::Firm("d".into()), &4u64);
        tried.abort();
        // A transaction left open is undone by the end too.
        let writes = tried.take_writes();
        let hash = app_hash(&tried.app_hash(), &writes);
        tried.set_app_hash(hash);
        let mut post = tried.clone();
        post.keep_trial();
        tried.begin();
        tried.put(&Key::Firm("e".into()), &5u64);
        tried.end_trial();
        assert_eq!(tried.records(), before.records());
        assert_eq!(tried.app_hash(), before.app_hash());

        let mut applied = before.clone();
        applied.apply_block(&writes, hash);
        assert_eq!(applied.records(), post.records());
        assert_eq!(applied.app_hash(), hash);
        assert_eq!(applied.get::<u64>(&Key::Firm("a".into())), Some(10));
        assert!(!applied.contains(&Key::Firm("b".into())));
        assert!(!applied.contains(&Key::Firm("d".into())));

        // Applied in a trial and taken back.
        let mut undone = before.clone();
        undone.begin_trial();
        undone.apply_block(&writes, hash);
        undone.end_trial();
        assert_eq!(undone.records(), before.records());
        assert_eq!(undone.app_hash(), before.app_hash());
    }
}
