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

use std::collections::{BTreeMap, BTreeSet, btree_map};
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

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
    /// The canonical encoding, `codec::encode(self)`, written directly:
    /// every state read and write encodes its key, and through serde each
    /// byte of a 32-byte hash is a tuple element of its own. (Fixed-width
    /// little-endian integers: the variant index as u32, a string as its
    /// u64 length and bytes, a hash or key as its 32 bytes.)
    pub fn bytes(&self) -> Vec<u8> {
        fn variant(out: &mut Vec<u8>, index: u32) {
            out.extend_from_slice(&index.to_le_bytes());
        }
        fn string(out: &mut Vec<u8>, text: &str) {
            out.extend_from_slice(&(text.len() as u64).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        fn account(out: &mut Vec<u8>, account: &Account) {
            match account {
                Account::Firm(firm) => {
                    variant(out, 0);
                    string(out, firm);
                }
                Account::Pool(pool) => {
                    variant(out, 1);
                    out.extend_from_slice(&pool.0);
                }
            }
        }
        let mut out = Vec::with_capacity(80);
        match self {
            Key::Meta => variant(&mut out, 0),
            Key::Params => variant(&mut out, 1),
            Key::Firm(id) => {
                variant(&mut out, 2);
                string(&mut out, id);
            }
            Key::Key(key) => {
                variant(&mut out, 3);
                out.extend_from_slice(&key.0);
            }
            Key::Nonce(key) => {
                variant(&mut out, 4);
                out.extend_from_slice(&key.0);
            }
            Key::Node(id) => {
                variant(&mut out, 5);
                string(&mut out, id);
            }
            Key::Kind(id) => {
                variant(&mut out, 6);
                string(&mut out, id);
            }
            Key::Licence { firm, ewc_code } => {
                variant(&mut out, 7);
                string(&mut out, firm);
                string(&mut out, ewc_code);
            }
            Key::Proposal(hash) => {
                variant(&mut out, 8);
                out.extend_from_slice(&hash.0);
            }
            Key::Listing(hash) => {
                variant(&mut out, 9);
                out.extend_from_slice(&hash.0);
            }
            Key::Contract(hash) => {
                variant(&mut out, 10);
                out.extend_from_slice(&hash.0);
            }
            Key::Period { contract, period } => {
                variant(&mut out, 11);
                out.extend_from_slice(&contract.0);
                out.extend_from_slice(&period.to_le_bytes());
            }
            Key::Balance(owner) => {
                variant(&mut out, 12);
                account(&mut out, owner);
            }
            Key::Obligation { debtor, creditor } => {
                variant(&mut out, 13);
                account(&mut out, debtor);
                account(&mut out, creditor);
            }
            Key::Avoided(AvoidedAccount::Firm(firm)) => {
                variant(&mut out, 14);
                variant(&mut out, 0);
                string(&mut out, firm);
            }
            Key::Avoided(AvoidedAccount::Network) => {
                variant(&mut out, 14);
                variant(&mut out, 1);
            }
            Key::Pool(hash) => {
                variant(&mut out, 15);
                out.extend_from_slice(&hash.0);
            }
            Key::PoolPeriod { pool, period } => {
                variant(&mut out, 16);
                out.extend_from_slice(&pool.0);
                out.extend_from_slice(&period.to_le_bytes());
            }
            Key::Receipt(hash) => {
                variant(&mut out, 17);
                out.extend_from_slice(&hash.0);
            }
            Key::Evidence(hash) => {
                variant(&mut out, 18);
                out.extend_from_slice(&hash.0);
            }
        }
        out
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
    /// A proposal withdrawn by a party before it was countersigned: it
    /// never bound anyone, so none of its periods takes readings or
    /// settles.
    Withdrawn {
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
///
/// The records are a shared base and the changes on top of it: a node
/// executes each proposal on its own copy of the state, and copying the
/// base (every record of the ledger's life, growing with each receipt)
/// for every block made a block's cost grow with the ledger. A copy
/// shares the base; [`State::flatten`] folds the changes into it once the
/// copy is the only one left.
#[derive(Debug, Clone, Default)]
pub struct State {
    base: Arc<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Changes since the last `flatten`: a new value, or None (deleted).
    overlay: BTreeMap<OverlayKey, Option<Vec<u8>>>,
    /// Writes of committed transactions in the current block, in the order
    /// they were made (a key may appear more than once; the last write
    /// wins). Sorted into a [`WriteSet`] by [`State::take_writes`].
    block_log: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Writes of the transaction in progress, in order, and beside each
    /// the overlay entry it replaced (`tx_undo[i]` for `tx_log[i]`; None:
    /// the key had none).
    tx_log: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    tx_undo: Vec<Option<Option<Vec<u8>>>>,
    app_hash: Hash,
}

impl State {
    /// A state loaded from storage: the records and the app hash of the last block.
    pub fn from_records(map: BTreeMap<Vec<u8>, Vec<u8>>, app_hash: Hash) -> State {
        State {
            base: Arc::new(map),
            app_hash,
            ..State::default()
        }
    }

    /// Every record, in key order (a copy).
    pub fn records(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.range(Bound::Unbounded)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// The records from `start` on, in key order.
    pub fn range(&self, start: Bound<Vec<u8>>) -> Records<'_> {
        let bounds = (start, Bound::Unbounded);
        Records {
            base: self.base.range::<Vec<u8>, _>(bounds.clone()).peekable(),
            overlay: self
                .overlay
                .range((bounds.0.map(OverlayKey::new), Bound::Unbounded))
                .peekable(),
        }
    }

    /// Whether `other` shares this state's base records (a copy made
    /// since the last `flatten` of either): sharing is what makes copies
    /// cheap.
    pub fn shares_base_with(&self, other: &State) -> bool {
        Arc::ptr_eq(&self.base, &other.base)
    }

    /// Folds the changes into the base, so that copies of this state are
    /// cheap again. Copies the base first if another copy still shares it
    /// (correct, only slower).
    pub fn flatten(&mut self) {
        if self.overlay.is_empty() {
            return;
        }
        assert!(self.tx_log.is_empty(), "a transaction is still open");
        let base = Arc::make_mut(&mut self.base);
        for (key, value) in std::mem::take(&mut self.overlay) {
            match value {
                Some(value) => base.insert(key.bytes, value),
                None => base.remove(&key.bytes),
            };
        }
    }

    pub fn app_hash(&self) -> Hash {
        self.app_hash
    }

    pub(crate) fn set_app_hash(&mut self, hash: Hash) {
        self.app_hash = hash;
    }

    fn raw(&self, key: Vec<u8>) -> Option<&Vec<u8>> {
        let key = OverlayKey::new(key);
        match self.overlay.get(&key) {
            Some(change) => change.as_ref(),
            None => self.base.get(&key.bytes),
        }
    }

    pub fn get<T: Serialize + DeserializeOwned>(&self, key: &Key) -> Option<T> {
        self.raw(key.bytes()).map(|bytes| {
            // Only this module writes records, always through `put`; a
            // record that does not decode is corruption, not input.
            codec::decode_stored(bytes)
                .unwrap_or_else(|e| panic!("corrupt state record {key:?}: {e}"))
        })
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.raw(key.bytes()).is_some()
    }

    pub fn put<T: Serialize>(&mut self, key: &Key, value: &T) {
        self.write(key.bytes(), Some(codec::encode(value)));
    }

    pub fn delete(&mut self, key: &Key) {
        self.write(key.bytes(), None);
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let replaced = self
            .overlay
            .insert(OverlayKey::new(key.clone()), value.clone());
        self.tx_undo.push(replaced);
        self.tx_log.push((key, value));
    }

    /// All records whose key has the canonical prefix of `key_prefix`.
    pub fn scan<T: Serialize + DeserializeOwned>(&self, prefix: &[u8]) -> Vec<(Vec<u8>, T)> {
        self.range(Bound::Included(prefix.to_vec()))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, bytes)| {
                let value = codec::decode_stored(bytes)
                    .unwrap_or_else(|e| panic!("corrupt state record under {prefix:?}: {e}"));
                (key.clone(), value)
            })
            .collect()
    }

    /// Start a transaction's writes.
    pub fn begin(&mut self) {
        assert!(self.tx_log.is_empty(), "nested transaction");
    }

    /// Keep the transaction's writes as part of the block.
    pub fn commit(&mut self) {
        self.block_log.append(&mut self.tx_log);
        self.tx_undo.clear();
    }

    /// Undo the transaction's writes: the last first, so a key written
    /// twice gets back the value from before the first write.
    pub fn abort(&mut self) {
        let undo = std::mem::take(&mut self.tx_undo);
        for ((key, _), replaced) in self.tx_log.drain(..).zip(undo).rev() {
            match replaced {
                Some(change) => self.overlay.insert(OverlayKey::new(key), change),
                None => self.overlay.remove(&OverlayKey::new(key)),
            };
        }
    }

    /// The block's writes in key order, the last write of each key; clears
    /// them.
    pub fn take_writes(&mut self) -> WriteSet {
        assert!(self.tx_log.is_empty(), "a transaction is still open");
        let mut log = std::mem::take(&mut self.block_log);
        // Stable: the writes of one key stay in the order they were made.
        log.sort_by(|a, b| a.0.cmp(&b.0));
        let mut writes: WriteSet = Vec::with_capacity(log.len());
        for (key, value) in log {
            match writes.last_mut() {
                Some(last) if last.0 == key => last.1 = value,
                _ => writes.push((key, value)),
            }
        }
        writes
    }
}

/// A key of the overlay: its bytes, and beside them their first 8 bytes
/// (big-endian, zero-padded), so that most comparisons in the map settle
/// on the map node's own memory instead of following each key's pointer
/// (the audit's overlay holds every record written since genesis).
/// Ordered exactly as the bytes: where the heads differ, the first
/// difference of the zero-padded heads is the bytes' first difference, or
/// the end of the shorter key where the longer has a nonzero byte.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OverlayKey {
    head: u64,
    bytes: Vec<u8>,
}

impl OverlayKey {
    fn new(bytes: Vec<u8>) -> OverlayKey {
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        OverlayKey {
            head: u64::from_be_bytes(head),
            bytes,
        }
    }
}

impl Ord for OverlayKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.head
            .cmp(&other.head)
            .then_with(|| self.bytes.cmp(&other.bytes))
    }
}

impl PartialOrd for OverlayKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Records in key order: the base's, with the overlay's changes applied.
pub struct Records<'a> {
    base: Peekable<btree_map::Range<'a, Vec<u8>, Vec<u8>>>,
    overlay: Peekable<btree_map::Range<'a, OverlayKey, Option<Vec<u8>>>>,
}

impl<'a> Iterator for Records<'a> {
    type Item = (&'a Vec<u8>, &'a Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let changed = match (self.base.peek(), self.overlay.peek()) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((base, _)), Some((changed, _))) => changed.bytes <= **base,
            };
            if !changed {
                return self.base.next();
            }
            let (OverlayKey { bytes: key, .. }, change) = self.overlay.next()?;
            // The change replaces the base's record of the same key.
            if self.base.peek().is_some_and(|(base, _)| *base == key) {
                self.base.next();
            }
            if let Some(value) = change {
                return Some((key, value));
            }
        }
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
///
/// The hash input is `codec::encode(&(previous, writes))`, written here
/// directly: through serde every byte of every key and record would be a
/// sequence element of its own.
pub fn app_hash(previous: &Hash, writes: &WriteSet) -> Hash {
    fn byte_string(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    let size: usize = writes
        .iter()
        .map(|(key, value)| 17 + key.len() + value.as_ref().map_or(0, |v| 8 + v.len()))
        .sum();
    let mut input = Vec::with_capacity(40 + size);
    input.extend_from_slice(&previous.0);
    input.extend_from_slice(&(writes.len() as u64).to_le_bytes());
    for (key, value) in writes {
        byte_string(&mut input, key);
        match value {
            None => input.push(0),
            Some(value) => {
                input.push(1);
                byte_string(&mut input, value);
            }
        }
    }
    Hash::of_bytes(&input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A transaction's writes to a few keys (None: a deletion), and
    /// whether it is kept or aborted.
    type Tx = (Vec<(u8, Option<u8>)>, bool);

    /// Blocks of transactions.
    fn blocks() -> impl Strategy<Value = Vec<Vec<Tx>>> {
        let write = (0u8..6, proptest::option::of(any::<u8>()));
        let tx = (proptest::collection::vec(write, 0..6), any::<bool>());
        proptest::collection::vec(proptest::collection::vec(tx, 0..8), 1..4)
    }

    proptest! {
        /// The app hash's input, written by hand, is the canonical encoding
        /// of (previous, writes).
        #[test]
        fn app_hash_hashes_the_canonical_encoding(
            previous in any::<[u8; 32]>(),
            writes in proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..40),
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
                ),
                0..20,
            ),
        ) {
            let previous = Hash(previous);
            prop_assert_eq!(app_hash(&previous, &writes), codec::hash(&(previous, &writes)));
        }

        /// The records and each block's write set are those of a plain
        /// model: a map, and per block a sorted map of the last value each
        /// committed transaction wrote.
        #[test]
        fn writes_commits_and_aborts_match_a_model(blocks in blocks()) {
            let mut state = State::default();
            let mut records: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for block in blocks {
                let mut written: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
                for (writes, keep) in block {
                    state.begin();
                    let mut tx_records = records.clone();
                    let mut tx_written = written.clone();
                    for (key, value) in writes {
                        let key = Key::Firm(format!("f{key}"));
                        match value {
                            Some(v) => {
                                state.put(&key, &v);
                                tx_records.insert(key.bytes(), codec::encode(&v));
                                tx_written.insert(key.bytes(), Some(codec::encode(&v)));
                            }
                            None => {
                                state.delete(&key);
                                tx_records.remove(&key.bytes());
                                tx_written.insert(key.bytes(), None);
                            }
                        }
                    }
                    if keep {
                        state.commit();
                        records = tx_records;
                        written = tx_written;
                    } else {
                        state.abort();
                    }
                    prop_assert_eq!(&state.records(), &records);
                }
                let expected: WriteSet = written.into_iter().collect();
                prop_assert_eq!(state.take_writes(), expected);
            }
        }
    }
}

#[cfg(test)]
mod overlay_tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u8),
        Delete(u8),
        /// A transaction of these writes, kept or undone.
        Tx(Vec<(u8, Option<u8>)>, bool),
        /// End of block: take the writes, then maybe flatten, maybe while
        /// a copy still shares the base.
        EndBlock {
            flatten: bool,
            keep_copy: bool,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..24u8, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
            (0..24u8).prop_map(Op::Delete),
            (
                prop::collection::vec((0..24u8, prop::option::of(any::<u8>())), 0..5),
                any::<bool>()
            )
                .prop_map(|(writes, keep)| Op::Tx(writes, keep)),
            (any::<bool>(), any::<bool>())
                .prop_map(|(flatten, keep_copy)| Op::EndBlock { flatten, keep_copy }),
        ]
    }

    /// Keys of two variants, so that scans by prefix see both sides.
    fn key(k: u8) -> Key {
        if k.is_multiple_of(2) {
            Key::Firm(format!("f{k:02}"))
        } else {
            Key::Kind(format!("k{k:02}"))
        }
    }

    proptest! {
        /// The shared base and its overlay read like one plain map, whatever
        /// mix of writes, undone transactions, copies and flattening.
        #[test]
        fn state_reads_like_a_plain_map(
            initial in prop::collection::btree_map(0..24u8, any::<u8>(), 0..12),
            ops in prop::collection::vec(op(), 0..60),
        ) {
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = initial
                .iter()
                .map(|(k, v)| (key(*k).bytes(), codec::encode(v)))
                .collect();
            let mut state = State::from_records(model.clone(), Hash::default());
            let mut block_model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
            let mut copies = Vec::new();
            for op in ops {
                let writes = match op {
                    Op::Put(k, v) => vec![(k, Some(v))],
                    Op::Delete(k) => vec![(k, None)],
                    Op::Tx(writes, keep) => {
                        state.begin();
                        let saved = model.clone();
                        for (k, v) in &writes {
                            match v {
                                Some(v) => state.put(&key(*k), v),
                                None => state.delete(&key(*k)),
                            }
                        }
                        if keep {
                            state.commit();
                            for (k, v) in writes {
                                let value = v.map(|v| codec::encode(&v));
                                match &value {
                                    Some(bytes) => model.insert(key(k).bytes(), bytes.clone()),
                                    None => model.remove(&key(k).bytes()),
                                };
                                block_model.insert(key(k).bytes(), value);
                            }
                        } else {
                            state.abort();
                            prop_assert_eq!(&state.records(), &saved);
                        }
                        Vec::new()
                    }
                    Op::EndBlock { flatten, keep_copy } => {
                        let writes = state.take_writes();
                        let expected: WriteSet = std::mem::take(&mut block_model).into_iter().collect();
                        prop_assert_eq!(writes, expected);
                        let copy = state.clone();
                        if flatten {
                            state.flatten();
                        }
                        prop_assert_eq!(&copy.records(), &model);
                        if keep_copy {
                            copies.push((copy, model.clone()));
                        }
                        Vec::new()
                    }
                };
                for (k, v) in writes {
                    state.begin();
                    let value = v.map(|v| codec::encode(&v));
                    match v {
                        Some(v) => state.put(&key(k), &v),
                        None => state.delete(&key(k)),
                    }
                    state.commit();
                    match &value {
                        Some(bytes) => model.insert(key(k).bytes(), bytes.clone()),
                        None => model.remove(&key(k).bytes()),
                    };
                    block_model.insert(key(k).bytes(), value);
                }
                prop_assert_eq!(&state.records(), &model);
                for k in 0..24u8 {
                    let expected = model.get(&key(k).bytes()).map(|b| codec::decode::<u8>(b).unwrap());
                    prop_assert_eq!(state.get::<u8>(&key(k)), expected);
                    prop_assert_eq!(state.contains(&key(k)), expected.is_some());
                }
                for variant in [key(0), key(1)] {
                    let prefix = variant_prefix(&variant);
                    let scanned: Vec<(Vec<u8>, u8)> = state.scan(&prefix);
                    let expected: Vec<(Vec<u8>, u8)> = model
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix))
                        .map(|(k, v)| (k.clone(), codec::decode(v).unwrap()))
                        .collect();
                    prop_assert_eq!(scanned, expected);
                }
            }
            // Copies taken along the way still read as they did: a later
            // flatten never changes what a copy sees.
            for (copy, expected) in copies {
                prop_assert_eq!(&copy.records(), &expected);
            }
        }
    }

    proptest! {
        /// Overlay keys order exactly as their bytes: short keys, zero
        /// bytes and shared heads included (a small alphabet makes them
        /// common).
        #[test]
        fn overlay_keys_order_as_their_bytes(
            a in prop::collection::vec(0u8..3, 0..12),
            b in prop::collection::vec(0u8..3, 0..12),
        ) {
            let (ka, kb) = (OverlayKey::new(a.clone()), OverlayKey::new(b.clone()));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka == kb, a == b);
        }
    }

    fn any_key() -> impl Strategy<Value = Key> {
        let text = "[a-z0-9-]{0,12}";
        let hash = any::<[u8; 32]>().prop_map(Hash);
        let account = prop_oneof![
            text.prop_map(Account::Firm),
            hash.clone().prop_map(Account::Pool)
        ];
        prop_oneof![
            Just(Key::Meta),
            Just(Key::Params),
            text.prop_map(Key::Firm),
            any::<[u8; 32]>().prop_map(|k| Key::Key(PublicKey(k))),
            any::<[u8; 32]>().prop_map(|k| Key::Nonce(PublicKey(k))),
            text.prop_map(Key::Node),
            text.prop_map(Key::Kind),
            (text, text).prop_map(|(firm, ewc_code)| Key::Licence { firm, ewc_code }),
            hash.clone().prop_map(Key::Proposal),
            hash.clone().prop_map(Key::Listing),
            hash.clone().prop_map(Key::Contract),
            (hash.clone(), any::<u32>())
                .prop_map(|(contract, period)| Key::Period { contract, period }),
            account.clone().prop_map(Key::Balance),
            (account.clone(), account)
                .prop_map(|(debtor, creditor)| Key::Obligation { debtor, creditor }),
            text.prop_map(|f| Key::Avoided(AvoidedAccount::Firm(f))),
            Just(Key::Avoided(AvoidedAccount::Network)),
            hash.clone().prop_map(Key::Pool),
            (hash.clone(), any::<u32>())
                .prop_map(|(pool, period)| Key::PoolPeriod { pool, period }),
            hash.clone().prop_map(Key::Receipt),
            hash.prop_map(Key::Evidence),
        ]
    }

    proptest! {
        /// The key encoding written by hand is the canonical encoding.
        #[test]
        fn key_bytes_are_the_canonical_encoding(key in any_key()) {
            prop_assert_eq!(key.bytes(), codec::encode(&key));
        }
    }
}
