//! The audit: replays an export file (`export`) from genesis and checks
//! everything a ledger commits to, with no network and no node state:
//!
//! - the genesis frame is a valid genesis; the state starts from it;
//! - each block frame is the next height, its block and certificate decode;
//! - every hash link and root of the header, and the certificate of the
//!   previous block the block carries (`block::check`, through
//!   `block::check`), against the validators of that height;
//! - the block's own commit certificate: for this block, height and hash,
//!   signers sorted, each a validator of this height (the set the state
//!   names after the previous block: governance may change it), every
//!   vote signature, more than 2/3 of the power;
//! - every piece of evidence, against the validators of its height;
//! - every transaction's envelope and signature, then re-execution of the
//!   block with the contracts crate (nonces, kinds, settlement), giving the
//!   header's app hash; each transaction's result must be the one the node
//!   stored (the frame's results);
//! - the end frame names the last block.
//!
//! Signatures are verified ahead of execution, in batches (ed25519 batch
//! verification; a batch that fails is verified one by one, strictly, to
//! name the bad signature) on all cores, while the main thread executes
//! the blocks already verified. A batch holds every signature of a group
//! of consecutive blocks (transactions, the block's certificate and the
//! certificate it carries of its parent, an identical certificate
//! signature once), so that small blocks still make large batches. A transaction whose stored result is `bad_signature`
//! but whose signature passed the batch is verified again strictly: batch
//! verification accepts some crafted signatures that strict verification
//! (what the node uses) refuses, and the replay must give the node's verdict.
//!
//! Every failure is an [`AuditError`] naming the height and the
//! transaction, certificate signature or evidence concerned, and what
//! differs; nothing here panics on a malformed file.

use std::collections::{BTreeMap, btree_map};
use std::io::Read;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;
use symbiont_contracts::codec::{self, CodecError};
use symbiont_contracts::exec;
use symbiont_contracts::genesis::Genesis;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::{self, PublicKey};
use symbiont_contracts::kinds::Account;
use symbiont_contracts::state::{
    AvoidedAccount, Contract, EvidenceRecord, Key, PeriodRecord, State,
};
use symbiont_contracts::tx::TxError;

use crate::block::{Block, Certificate};
use crate::block::{Contents, Parent};
use crate::chain::{InvalidBlock, Tip, Validators, validator_set, validators_may_change};
use crate::consensus::signed::{CertificateError, EvidenceError, vote_sign_bytes};
use crate::consensus::types::Height;
use crate::export::{BlockFrame, EndFrame, ExportError, ExportReader, Frame};

/// Blocks are verified in groups of consecutive blocks holding about this
/// many signatures, one ed25519 batch per group: a batch costs less per
/// signature the larger it is (measured on one core, per signature: about
/// 30 µs in batches of 8, 20 µs in batches of 256, 18 µs in batches of
/// 1 024, 57 µs strictly one by one), and one batch per block gave a chain
/// of small blocks batches of a few signatures.
pub const GROUP_SIGNATURES: usize = 1024;
/// The first groups are smaller (from this size, doubling), so that the
/// execution starts early.
const FIRST_GROUP_SIGNATURES: usize = 64;
/// A group is cut at this many bytes of frames too.
const GROUP_BYTES: usize = 4 << 20;
/// Groups read, verified or waiting for the execution, at most (beyond
/// those, the reader waits).
const GROUPS_AHEAD_PER_THREAD: usize = 3;

/// What is wrong at one height.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error(
        "block frame for height {found}, expected height {expected} (a block dropped, reordered or repeated?)"
    )]
    OutOfOrder { expected: Height, found: Height },
    #[error("the block does not decode: {0}")]
    BlockUndecodable(CodecError),
    #[error("the certificate does not decode: {0}")]
    CertificateUndecodable(CodecError),
    #[error("the block's header says height {header}, its frame says {frame}")]
    HeaderHeight { frame: Height, header: Height },
    #[error(transparent)]
    Invalid(InvalidBlock),
    #[error(
        "certificate: it certifies height {found} block {value}, this is height {expected} block {block}"
    )]
    CertificateForAnother {
        expected: Height,
        found: Height,
        block: Hash,
        value: Hash,
    },
    #[error("certificate: {0}")]
    Certificate(CertificateError),
    #[error("certificate: signer {validator} is not a validator of this height")]
    CertificateUnknownSigner { validator: PublicKey },
    #[error("certificate: the signature of validator {validator} is bad")]
    CertificateSignature { validator: PublicKey },
    #[error("evidence {index}: {error}")]
    Evidence { index: usize, error: EvidenceError },
    #[error("the frame holds {stored} results for {txs} transactions")]
    ResultCount { txs: usize, stored: usize },
    #[error("transaction {index} ({tx_id}): replay gives {computed}, the export says {stored}")]
    Result {
        index: usize,
        tx_id: Hash,
        computed: String,
        stored: String,
    },
    #[error("after this block the state names no valid validator set")]
    NoValidators,
}

impl Problem {
    /// The transaction concerned, if one is.
    pub fn tx_index(&self) -> Option<usize> {
        match self {
            Problem::Result { index, .. } => Some(*index),
            _ => None,
        }
    }
}

/// Why an audit failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    File(#[from] ExportError),
    #[error("the genesis frame is not a valid genesis: {0}")]
    Genesis(String),
    #[error("height {height}: {problem}")]
    At { height: Height, problem: Problem },
    #[error(
        "the end frame names height {claimed} block {claimed_hash}; the file's last block is height {found} block {found_hash}"
    )]
    End {
        claimed: Height,
        claimed_hash: Hash,
        found: Height,
        found_hash: Hash,
    },
    #[error("the file ends after height {last} without its end frame")]
    NoEnd { last: Height },
}

impl AuditError {
    /// The height concerned, when the problem is at one.
    pub fn height(&self) -> Option<Height> {
        match self {
            AuditError::At { height, .. } => Some(*height),
            _ => None,
        }
    }
}

/// A signed item's verdicts, computed ahead of execution.
struct Verified {
    frame: BlockFrame,
    decoded: Result<(Block, Certificate), Problem>,
    /// Per transaction: envelope + signature (batch).
    tx_checks: Vec<Result<(), TxError>>,
    /// Per certificate signature: valid or not.
    certificate_signatures: Vec<bool>,
    /// The same for the certificate the block carries of its parent.
    last_commit_signatures: Vec<bool>,
    signatures: u64,
    /// The transactions' ids, the block's size and roots, its hash.
    ids: Vec<Hash>,
    contents: Option<Contents>,
    block_hash: Hash,
}

/// How far the audit is.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub height: Height,
    /// Bytes of the file read so far (for a bar over the file size).
    pub bytes: u64,
}

/// Counts and timing of a finished audit.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub blocks: u64,
    pub txs: u64,
    pub applied: u64,
    pub failed: u64,
    /// Transaction and certificate vote signatures verified (the
    /// certificates blocks carry of their parent are checked too, and not
    /// counted here).
    pub signatures: u64,
    pub bytes: u64,
    #[serde(skip)]
    pub elapsed: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct FirmReport {
    pub firm: String,
    /// Minor units: what the firm is owed (positive) or owes (negative) in
    /// total.
    pub balance: i64,
    pub avoided_g: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ObligationReport {
    pub debtor: String,
    pub creditor: String,
    pub amount: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct KindReport {
    pub kind: String,
    pub avoided_g: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvidenceReport {
    pub evidence: Hash,
    pub validator: PublicKey,
    pub height: Height,
    pub round: u32,
    pub step: &'static str,
    pub recorded_at: Height,
}

/// What a clean audit found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub chain_id: String,
    pub genesis_hash: Hash,
    pub height: Height,
    pub block_hash: Hash,
    pub app_hash: Hash,
    pub counts: Counts,
    pub currency: symbiont_contracts::genesis::Currency,
    /// Every firm of the state and every pool with a balance, firm order.
    pub firms: Vec<FirmReport>,
    pub pools: Vec<(Hash, i64)>,
    pub obligations: Vec<ObligationReport>,
    pub network_avoided_g: u64,
    pub kinds: Vec<KindReport>,
    pub evidence: Vec<EvidenceReport>,
    pub validators: Vec<(PublicKey, u64)>,
}

fn account_name(account: &Account) -> String {
    match account {
        Account::Firm(firm) => firm.clone(),
        Account::Pool(pool) => format!("pool:{pool}"),
    }
}

fn at(height: Height, problem: Problem) -> AuditError {
    AuditError::At { height, problem }
}

/// Decoded verifying keys by public key (`None`: not a canonical point,
/// or a weak key, which strict verification refuses too). A ledger has
/// few signers: decoding each once saves two field exponentiations per
/// signature. Kept beside the process-wide cache of
/// `PublicKey::verifying_key`: this one is per thread (no lock on the hot
/// path) and remembers the weak-key check too; without it the audit
/// ratio fell from about 65-73 % to 48-52 % (measured).
#[derive(Default)]
pub struct KeyCache {
    keys: BTreeMap<PublicKey, Option<ed25519_dalek::VerifyingKey>>,
}

impl KeyCache {
    fn get(&mut self, key: &PublicKey) -> Option<ed25519_dalek::VerifyingKey> {
        *self.keys.entry(*key).or_insert_with(|| {
            key.verifying_key()
                .ok()
                .filter(|decoded| !decoded.is_weak())
        })
    }
}

/// Whether each signature is valid: one ed25519 batch verification; when
/// the batch fails, each signature strictly, to find the bad ones.
pub fn batch_verdicts(
    items: &[(&[u8], PublicKey, keys::Signature)],
    cache: &mut KeyCache,
) -> Vec<bool> {
    let mut verdicts = vec![true; items.len()];
    let mut messages = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut verifying_keys = Vec::with_capacity(items.len());
    let mut batched = Vec::with_capacity(items.len());
    for (index, (message, key, signature)) in items.iter().enumerate() {
        match cache.get(key) {
            Some(decoded) => {
                messages.push(*message);
                signatures.push(ed25519_dalek::Signature::from_bytes(&signature.0));
                verifying_keys.push(decoded);
                batched.push(index);
            }
            None => verdicts[index] = false,
        }
    }
    if !batched.is_empty()
        && ed25519_dalek::verify_batch(&messages, &signatures, &verifying_keys).is_err()
    {
        for index in batched {
            let (message, key, signature) = &items[index];
            verdicts[index] = key.verify(message, signature).is_ok();
        }
    }
    verdicts
}

/// A block frame decoded, with where its signatures sit in its group's
/// batch.
struct Decoded {
    block: Block,
    certificate: Certificate,
    ids: Vec<Hash>,
    tx_checks: Vec<Result<(), TxError>>,
    contents: Contents,
    block_hash: Hash,
    /// (transaction index, item) for each transaction that passed its
    /// envelope check.
    tx_items: Vec<(usize, usize)>,
    /// The item of each signature of the frame's certificate, and of the
    /// certificate the block carries of its parent.
    certificate_items: Vec<usize>,
    last_commit_items: Vec<usize>,
}

/// The signatures of a group, each once.
#[derive(Default)]
struct Batch {
    items: Vec<(Vec<u8>, PublicKey, keys::Signature)>,
    /// Certificate signatures by (signer, signature, vote sign bytes): the
    /// certificate a block carries of its parent mostly repeats the
    /// parent's own, and an identical signature has the same verdict.
    votes: BTreeMap<(PublicKey, [u8; 64], Vec<u8>), usize>,
}

impl Batch {
    fn push(&mut self, message: Vec<u8>, key: PublicKey, signature: keys::Signature) -> usize {
        self.items.push((message, key, signature));
        self.items.len() - 1
    }

    fn push_vote(&mut self, message: Vec<u8>, key: PublicKey, signature: keys::Signature) -> usize {
        match self.votes.entry((key, signature.0, message)) {
            btree_map::Entry::Occupied(entry) => *entry.get(),
            btree_map::Entry::Vacant(entry) => {
                let index = self.items.len();
                self.items.push((entry.key().2.clone(), key, signature));
                entry.insert(index);
                index
            }
        }
    }

    /// Each certificate signature's item.
    fn push_certificate(&mut self, certificate: &Certificate, chain_id: &str) -> Vec<usize> {
        certificate
            .signatures
            .iter()
            .map(|(validator, signature)| {
                let message = vote_sign_bytes(chain_id, &certificate.vote_of(validator));
                self.push_vote(message, *validator, *signature)
            })
            .collect()
    }
}

/// Decodes a frame and queues its signatures: the transactions' (of
/// those whose envelope passes, as `SignedTx::verify`), its certificate's
/// and those of the certificate its block carries.
fn decode_frame(frame: &BlockFrame, chain_id: &str, batch: &mut Batch) -> Result<Decoded, Problem> {
    let block = codec::decode::<Block>(&frame.block).map_err(Problem::BlockUndecodable)?;
    let certificate = codec::decode::<Certificate>(&frame.certificate)
        .map_err(Problem::CertificateUndecodable)?;
    // Each transaction encoded once: its id and its envelope's size.
    let mut ids = Vec::with_capacity(block.txs.len());
    let mut tx_checks: Vec<Result<(), TxError>> = Vec::with_capacity(block.txs.len());
    let mut tx_items = Vec::with_capacity(block.txs.len());
    for (index, tx) in block.txs.iter().enumerate() {
        let bytes = tx.to_bytes();
        ids.push(Hash::of_bytes(&bytes));
        let check = tx.check_envelope_encoded(bytes.len(), chain_id);
        if check.is_ok() {
            tx_items.push((
                index,
                batch.push(tx.body.sign_bytes(), tx.signer, tx.signature),
            ));
        }
        tx_checks.push(check);
    }
    // The frame's bytes decoded, so they are the block's one encoding.
    let contents = Contents::of_encoded(&block, &ids, frame.block.len());
    let block_hash = block.hash();
    let certificate_items = batch.push_certificate(&certificate, chain_id);
    let last_commit_items = block
        .last_commit
        .as_ref()
        .map(|last| batch.push_certificate(last, chain_id))
        .unwrap_or_default();
    Ok(Decoded {
        block,
        certificate,
        ids,
        tx_checks,
        contents,
        block_hash,
        tx_items,
        certificate_items,
        last_commit_items,
    })
}

/// Decodes a group of consecutive frames and verifies all their
/// signatures in one batch (`batch_verdicts`).
fn verify_group(frames: Vec<BlockFrame>, chain_id: &str, cache: &mut KeyCache) -> Vec<Verified> {
    let mut batch = Batch::default();
    let decoded: Vec<Result<Decoded, Problem>> = frames
        .iter()
        .map(|frame| decode_frame(frame, chain_id, &mut batch))
        .collect();
    let items: Vec<(&[u8], PublicKey, keys::Signature)> = batch
        .items
        .iter()
        .map(|(message, key, signature)| (message.as_slice(), *key, *signature))
        .collect();
    let verdicts = batch_verdicts(&items, cache);
    frames
        .into_iter()
        .zip(decoded)
        .map(|(frame, decoded)| {
            let decoded = match decoded {
                Ok(decoded) => decoded,
                Err(problem) => {
                    return Verified {
                        frame,
                        decoded: Err(problem),
                        tx_checks: Vec::new(),
                        certificate_signatures: Vec::new(),
                        last_commit_signatures: Vec::new(),
                        signatures: 0,
                        ids: Vec::new(),
                        contents: None,
                        block_hash: Hash([0; 32]),
                    };
                }
            };
            let mut tx_checks = decoded.tx_checks;
            for &(index, item) in &decoded.tx_items {
                if !verdicts[item] {
                    tx_checks[index] = Err(TxError::BadSignature {
                        signer: decoded.block.txs[index].signer,
                    });
                }
            }
            let signatures = (decoded.tx_items.len() + decoded.certificate_items.len()) as u64;
            Verified {
                frame,
                tx_checks,
                certificate_signatures: decoded
                    .certificate_items
                    .iter()
                    .map(|&item| verdicts[item])
                    .collect(),
                last_commit_signatures: decoded
                    .last_commit_items
                    .iter()
                    .map(|&item| verdicts[item])
                    .collect(),
                signatures,
                ids: decoded.ids,
                contents: Some(decoded.contents),
                block_hash: decoded.block_hash,
                decoded: Ok((decoded.block, decoded.certificate)),
            }
        })
        .collect()
}

/// About how many signatures a frame holds, to cut groups: its
/// transactions (one result each) and its certificate's signatures (96
/// bytes each), twice (the block carries its parent's certificate).
fn estimated_signatures(frame: &BlockFrame) -> usize {
    frame.results.len() + 2 * (frame.certificate.len() / 96)
}

/// A second baseline for `symbiont audit --bench`: batches of `batch`
/// through `keys::verify_batch`, as the node's admission path
/// (`tx::verify_txs`) verifies, decoding and checking every key per
/// signature, on `threads` threads. Returns how many failed and the time.
pub fn measure_admission_batches(
    items: &[(Vec<u8>, PublicKey, keys::Signature)],
    batch: usize,
    threads: NonZeroUsize,
) -> (usize, Duration) {
    let chunks: Vec<Vec<(&[u8], PublicKey, keys::Signature)>> = items
        .chunks(batch.max(1))
        .map(|chunk| {
            chunk
                .iter()
                .map(|(m, k, s)| (m.as_slice(), *k, *s))
                .collect()
        })
        .collect();
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let failed: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.get())
            .map(|_| {
                scope.spawn(|| {
                    let mut failed = 0;
                    while let Some(chunk) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if let Err(bad) = keys::verify_batch(chunk) {
                            failed += bad.len();
                        }
                    }
                    failed
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a verification thread panicked"))
            .sum()
    });
    (failed, started.elapsed())
}

/// The baseline of `symbiont audit --bench`: plain ed25519 batch
/// verification of `items` (keys decoded beforehand, batches of `batch`)
/// on `threads` threads. Returns how many failed and how long it took.
pub fn measure_batch_verification(
    items: &[(Vec<u8>, PublicKey, keys::Signature)],
    batch: usize,
    threads: NonZeroUsize,
) -> (usize, Duration) {
    let mut cache = KeyCache::default();
    let prepared: Vec<(&[u8], ed25519_dalek::VerifyingKey, ed25519_dalek::Signature)> = items
        .iter()
        .filter_map(|(message, key, signature)| {
            let decoded = cache.get(key)?;
            Some((
                message.as_slice(),
                decoded,
                ed25519_dalek::Signature::from_bytes(&signature.0),
            ))
        })
        .collect();
    let undecodable = items.len() - prepared.len();
    let chunks: Vec<&[(&[u8], ed25519_dalek::VerifyingKey, ed25519_dalek::Signature)]> =
        prepared.chunks(batch.max(1)).collect();
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let failed: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.get())
            .map(|_| {
                scope.spawn(|| {
                    let mut failed = 0;
                    while let Some(chunk) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let messages: Vec<&[u8]> = chunk.iter().map(|c| c.0).collect();
                        let keys: Vec<_> = chunk.iter().map(|c| c.1).collect();
                        let signatures: Vec<_> = chunk.iter().map(|c| c.2).collect();
                        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_err() {
                            failed += chunk.len();
                        }
                    }
                    failed
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a verification thread panicked"))
            .sum()
    });
    (failed + undecodable, started.elapsed())
}

/// The validator sets by the height they start at.
struct ValidatorHistory {
    sets: BTreeMap<Height, Validators>,
}

impl ValidatorHistory {
    fn at(&self, height: Height) -> Option<&Validators> {
        self.sets.range(..=height).next_back().map(|(_, set)| set)
    }
}

/// The chain as the audit replays it: like `chain::Chain`, but it executes
/// each block on its one state in place (a node executes on a copy, to
/// judge proposals it may not commit: a copy per block would cost the
/// whole state per block here) and keeps nothing for proposing.
struct AuditChain {
    chain_id: String,
    state: State,
    tip: Tip,
    /// Validators of the next height, and of the tip's height (shared
    /// while they are the same set).
    validators: Arc<Validators>,
    previous_validators: Option<Arc<Validators>>,
}

impl AuditChain {
    fn from_genesis(genesis: &Genesis) -> Result<Self, String> {
        let state = exec::genesis_state(genesis);
        let validators = Arc::new(validator_set(&state).map_err(|e| e.to_string())?);
        Ok(Self {
            chain_id: genesis.chain_id.clone(),
            state,
            tip: Tip {
                height: 0,
                hash: genesis.hash(),
                time_ms: genesis.genesis_time_ms,
            },
            validators,
            previous_validators: None,
        })
    }

    fn chain_id(&self) -> &str {
        &self.chain_id
    }

    fn next_height(&self) -> Height {
        self.tip.height + 1
    }

    fn validators(&self) -> &Validators {
        &self.validators
    }

    fn tip(&self) -> &Tip {
        &self.tip
    }

    fn state(&self) -> &State {
        &self.state
    }

    /// The header checks against the parent (`block::check`, the clock
    /// taken to be the block's own time), then execution in place, which
    /// must give the header's app hash. On an error the state is left
    /// half-applied: the audit stops there.
    ///
    /// `last_commit_ok`: the verdict on each signature of the certificate
    /// the block carries (`block::check_with_verdicts`). Returns the
    /// outcome, and whether the validator set changed.
    fn apply(
        &mut self,
        block: &Block,
        block_hash: Hash,
        contents: &Contents,
        ids: &[Hash],
        checks: &[Result<(), TxError>],
        last_commit_ok: &[bool],
    ) -> Result<(exec::BlockOutcome, bool), Problem> {
        let params: exec::Params = self
            .state
            .get(&Key::Params)
            .expect("the state holds its params from genesis on");
        let parent = Parent {
            chain_id: &self.chain_id,
            height: self.tip.height,
            hash: self.tip.hash,
            time_ms: self.tip.time_ms,
            validators: self.previous_validators.as_deref(),
            params: &params.consensus,
        };
        crate::block::check_with_verdicts(
            block,
            contents,
            &parent,
            block.header.time_ms,
            |index, _, _| last_commit_ok.get(index).copied().unwrap_or(false),
        )
        .map_err(|e| Problem::Invalid(InvalidBlock::Header(e)))?;
        let info = exec::BlockInfo {
            height: block.header.height,
            time_ms: block.header.time_ms,
        };
        let evidence = crate::block::block_evidence(&block.evidence);
        let outcome = exec::execute_block_with_ids(
            &mut self.state,
            &info,
            &block.txs,
            ids,
            checks,
            &evidence,
        )
        .map_err(|e| Problem::Invalid(InvalidBlock::Execution(e)))?;
        if outcome.app_hash != block.header.app_hash {
            return Err(Problem::Invalid(InvalidBlock::AppHash {
                header: block.header.app_hash,
                computed: outcome.app_hash,
            }));
        }
        // The set is the nodes' (`validator_set`): only a block that wrote
        // node records can change it.
        let changed = validators_may_change(&outcome.writes);
        if changed {
            let next = Arc::new(validator_set(&self.state).map_err(|_| Problem::NoValidators)?);
            self.previous_validators = Some(std::mem::replace(&mut self.validators, next));
        } else {
            debug_assert_eq!(
                validator_set(&self.state).ok().as_ref(),
                Some(&*self.validators),
                "a block that wrote no node record changed the validator set"
            );
            self.previous_validators = Some(self.validators.clone());
        }
        self.tip = Tip {
            height: block.header.height,
            hash: block_hash,
            time_ms: block.header.time_ms,
        };
        Ok((outcome, changed))
    }
}

/// The replay: a chain, its validator history and the counts.
struct Replay {
    chain: AuditChain,
    history: ValidatorHistory,
    counts: Counts,
}

impl Replay {
    fn new(genesis: &Genesis) -> Result<Self, AuditError> {
        let chain = AuditChain::from_genesis(genesis).map_err(AuditError::Genesis)?;
        let mut sets = BTreeMap::new();
        sets.insert(1, chain.validators().clone());
        Ok(Self {
            chain,
            history: ValidatorHistory { sets },
            counts: Counts::default(),
        })
    }

    /// Checks and applies one verified block.
    fn apply(&mut self, verified: Verified) -> Result<(), AuditError> {
        let expected = self.chain.next_height();
        let frame = verified.frame;
        if frame.height != expected {
            return Err(at(
                expected,
                Problem::OutOfOrder {
                    expected,
                    found: frame.height,
                },
            ));
        }
        let height = expected;
        let (block, certificate) = verified.decoded.map_err(|p| at(height, p))?;
        if block.header.height != height {
            return Err(at(
                height,
                Problem::HeaderHeight {
                    frame: height,
                    header: block.header.height,
                },
            ));
        }
        let block_hash = verified.block_hash;
        self.check_certificate(
            height,
            block_hash,
            &certificate,
            &verified.certificate_signatures,
        )?;
        self.check_evidence(height, &block)?;
        if frame.results.len() != block.txs.len() {
            return Err(at(
                height,
                Problem::ResultCount {
                    txs: block.txs.len(),
                    stored: frame.results.len(),
                },
            ));
        }
        let mut checks = verified.tx_checks;
        for (index, check) in checks.iter_mut().enumerate() {
            // Batch verification may accept what strict verification
            // refuses: where the node recorded a bad signature, ask the
            // strict check again.
            if check.is_ok() && frame.results[index] == "bad_signature" {
                *check = block.txs[index].verify(self.chain.chain_id());
            }
        }
        let (outcome, validators_changed) = self
            .chain
            .apply(
                &block,
                verified.block_hash,
                verified
                    .contents
                    .as_ref()
                    .expect("a decoded block has contents"),
                &verified.ids,
                &checks,
                &verified.last_commit_signatures,
            )
            .map_err(|p| at(height, p))?;
        for (index, ((tx_id, result), stored)) in
            outcome.results.iter().zip(&frame.results).enumerate()
        {
            let computed = match result {
                Ok(()) => "",
                Err(error) => error.code(),
            };
            if computed != stored {
                return Err(at(
                    height,
                    Problem::Result {
                        index,
                        tx_id: *tx_id,
                        computed: describe_result(computed),
                        stored: describe_result(stored),
                    },
                ));
            }
            if result.is_ok() {
                self.counts.applied += 1;
            } else {
                self.counts.failed += 1;
            }
        }
        self.counts.blocks += 1;
        self.counts.txs += block.txs.len() as u64;
        self.counts.signatures += verified.signatures;
        if validators_changed && self.history.at(height) != Some(self.chain.validators()) {
            self.history
                .sets
                .insert(height + 1, Validators::clone(self.chain.validators()));
        }
        Ok(())
    }

    fn check_certificate(
        &self,
        height: Height,
        block_hash: Hash,
        certificate: &Certificate,
        signature_ok: &[bool],
    ) -> Result<(), AuditError> {
        if certificate.height != height || certificate.value_id != block_hash {
            return Err(at(
                height,
                Problem::CertificateForAnother {
                    expected: height,
                    found: certificate.height,
                    block: block_hash,
                    value: certificate.value_id,
                },
            ));
        }
        // The validators of this height: the chain's next-height set.
        let validators = self.chain.validators();
        if certificate.signatures.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(at(
                height,
                Problem::Certificate(CertificateError::NotSorted),
            ));
        }
        let mut power: u64 = 0;
        for ((validator, _), ok) in certificate.signatures.iter().zip(signature_ok) {
            let Some(validator_power) = validators.power_of(validator) else {
                return Err(at(
                    height,
                    Problem::CertificateUnknownSigner {
                        validator: *validator,
                    },
                ));
            };
            if !ok {
                return Err(at(
                    height,
                    Problem::CertificateSignature {
                        validator: *validator,
                    },
                ));
            }
            power = power.saturating_add(validator_power);
        }
        if !validators.is_quorum(power) {
            return Err(at(
                height,
                Problem::Certificate(CertificateError::NoQuorum {
                    power,
                    total: validators.total_power(),
                }),
            ));
        }
        Ok(())
    }

    /// As the nodes check it (`Chain::validate`): against the validators
    /// of the block's height, the set that checks its certificate, not
    /// that of the height the evidence names (nodes do not keep old sets).
    /// An audit must give the network's answer: with the evidence's own
    /// set it refused evidence by a validator added since, which the
    /// nodes recorded.
    fn check_evidence(&self, height: Height, block: &Block) -> Result<(), AuditError> {
        let validators = self.chain.validators();
        for (index, evidence) in block.evidence.iter().enumerate() {
            evidence
                .verify(self.chain.chain_id(), validators, height)
                .map_err(|error| at(height, Problem::Evidence { index, error }))?;
        }
        Ok(())
    }
}

fn describe_result(code: &str) -> String {
    if code.is_empty() {
        "applied".to_string()
    } else {
        format!("failed ({code})")
    }
}

/// Counts bytes read, for the progress.
struct Counting<R> {
    inner: R,
    bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads the frames and hands them to the verifiers in groups
/// (`GROUP_SIGNATURES`), numbered in file order. Before each group it
/// takes a permit from `permits` (the replay returns one per group it
/// executed), so at most the channel's capacity of groups is ahead of the
/// replay. Returns the end (the end frame, or the error reading the
/// file), or None if the replay stopped first.
fn read_groups<R: Read>(
    mut reader: ExportReader<R>,
    groups: mpsc::Sender<(u64, Vec<BlockFrame>)>,
    permits: mpsc::SyncSender<()>,
) -> Option<Result<EndFrame, AuditError>> {
    let mut sequence = 0u64;
    let mut target = FIRST_GROUP_SIGNATURES;
    let mut group = Vec::new();
    let (mut group_signatures, mut group_bytes) = (0usize, 0usize);
    let mut send = |group: Vec<BlockFrame>| -> bool {
        if group.is_empty() {
            return true;
        }
        let sent = permits.send(()).is_ok() && groups.send((sequence, group)).is_ok();
        sequence += 1;
        sent
    };
    let end = loop {
        let frame = match reader.next_frame() {
            Ok(Some(Frame::Block(frame))) => frame,
            // Past the end frame, the file must end.
            Ok(Some(Frame::End(end))) => break reader.next_frame().map(|_| end),
            Ok(None) => unreachable!("next_frame gives None only after the end frame"),
            Err(e) => break Err(e),
        };
        group_signatures += estimated_signatures(&frame);
        group_bytes += frame.block.len() + frame.certificate.len();
        group.push(frame);
        if group_signatures >= target || group_bytes >= GROUP_BYTES {
            if !send(std::mem::take(&mut group)) {
                return None;
            }
            (group_signatures, group_bytes) = (0, 0);
            target = (target * 2).min(GROUP_SIGNATURES);
        }
    };
    if !send(group) {
        return None;
    }
    Some(end.map_err(AuditError::from))
}

/// Audits an export read from `input` on `threads` verification threads,
/// calling `progress` after each block.
///
/// A reader thread cuts the file into groups of blocks; `threads`
/// verifiers each take the next group, decode it and verify its
/// signatures in one batch; this thread executes the groups in order as
/// they come, while the verifiers work on the next ones.
pub fn audit(
    input: impl Read + Send,
    threads: NonZeroUsize,
    mut progress: impl FnMut(Progress),
) -> Result<Report, AuditError> {
    let started = Instant::now();
    let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let input = Counting {
        inner: input,
        bytes: bytes.clone(),
    };
    let (reader, genesis_bytes) = ExportReader::open(input)?;
    let genesis: Genesis = codec::decode(&genesis_bytes)
        .map_err(|e| AuditError::Genesis(format!("it does not decode: {e}")))?;
    genesis
        .validate()
        .map_err(|e| AuditError::Genesis(e.to_string()))?;
    let chain_id = genesis.chain_id.clone();
    let mut replay = Replay::new(&genesis)?;

    let outcome: Result<EndFrame, AuditError> = std::thread::scope(|scope| {
        let (group_tx, group_rx) = mpsc::channel::<(u64, Vec<BlockFrame>)>();
        let (permit_tx, permit_rx) =
            mpsc::sync_channel::<()>(GROUPS_AHEAD_PER_THREAD * threads.get());
        let (verified_tx, verified_rx) = mpsc::channel::<(u64, Vec<Verified>)>();
        let reader = scope.spawn(move || read_groups(reader, group_tx, permit_tx));
        let group_rx = Arc::new(std::sync::Mutex::new(group_rx));
        for _ in 0..threads.get() {
            let (group_rx, verified_tx, chain_id) =
                (group_rx.clone(), verified_tx.clone(), &chain_id);
            scope.spawn(move || {
                let mut cache = KeyCache::default();
                loop {
                    let next = group_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((sequence, frames)) = next else { return };
                    let verified = verify_group(frames, chain_id, &mut cache);
                    if verified_tx.send((sequence, verified)).is_err() {
                        return;
                    }
                }
            });
        }
        // The channel closes once every verifier is done.
        drop(verified_tx);
        // Groups verified ahead of their turn.
        let mut waiting: BTreeMap<u64, Vec<Verified>> = BTreeMap::new();
        let mut next = 0u64;
        for (sequence, group) in verified_rx {
            waiting.insert(sequence, group);
            while let Some(group) = waiting.remove(&next) {
                for verified in group {
                    replay.apply(verified)?;
                    progress(Progress {
                        height: replay.chain.tip().height,
                        bytes: bytes.load(Ordering::Relaxed),
                    });
                }
                next += 1;
                // The reader may read one more group.
                let _ = permit_rx.recv();
            }
        }
        assert!(waiting.is_empty(), "a group was not verified");
        reader
            .join()
            .expect("the reader thread panicked")
            .unwrap_or(Err(AuditError::NoEnd {
                last: replay.chain.tip().height,
            }))
    });
    // An error from the execution returns above, dropping the channels:
    // the reader and the verifiers stop at their next send or receive.
    let end = outcome?;
    let tip = replay.chain.tip().clone();
    if end.height != tip.height || end.block_hash != tip.hash {
        return Err(AuditError::End {
            claimed: end.height,
            claimed_hash: end.block_hash,
            found: tip.height,
            found_hash: tip.hash,
        });
    }
    let mut counts = replay.counts;
    counts.bytes = bytes.load(Ordering::Relaxed);
    counts.elapsed = started.elapsed();
    Ok(report(&genesis, &replay.chain, counts))
}

/// The report of the state after the last block.
fn report(genesis: &Genesis, chain: &AuditChain, counts: Counts) -> Report {
    let state = chain.state();
    let balances: BTreeMap<String, i64> = exec::balances(state)
        .into_iter()
        .map(|(account, balance)| (account_name(&account), balance))
        .collect();
    let mut firms: Vec<FirmReport> = state
        .scan::<symbiont_contracts::genesis::Firm>(&prefix(&Key::Firm(String::new())))
        .into_iter()
        .filter_map(|(key, _)| match codec::decode::<Key>(&key) {
            Ok(Key::Firm(firm)) => Some(firm),
            _ => None,
        })
        .map(|firm| FirmReport {
            balance: balances.get(&firm).copied().unwrap_or(0),
            avoided_g: exec::avoided_grams(state, &AvoidedAccount::Firm(firm.clone())),
            firm,
        })
        .collect();
    firms.sort_by(|a, b| a.firm.cmp(&b.firm));
    let pools: Vec<(Hash, i64)> = exec::balances(state)
        .into_iter()
        .filter_map(|(account, balance)| match account {
            Account::Pool(pool) => Some((pool, balance)),
            Account::Firm(_) => None,
        })
        .collect();
    let obligation_prefix = prefix(&Key::Obligation {
        debtor: Account::Firm(String::new()),
        creditor: Account::Firm(String::new()),
    });
    let obligations = state
        .scan::<i64>(&obligation_prefix)
        .into_iter()
        .filter_map(|(key, amount)| match codec::decode::<Key>(&key) {
            Ok(Key::Obligation { debtor, creditor }) if amount != 0 => Some(ObligationReport {
                debtor: account_name(&debtor),
                creditor: account_name(&creditor),
                amount,
            }),
            _ => None,
        })
        .collect();
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let period_prefix = prefix(&Key::Period {
        contract: Hash([0; 32]),
        period: 0,
    });
    for (key, record) in state.scan::<PeriodRecord>(&period_prefix) {
        let (Ok(Key::Period { contract, .. }), Some(settled)) =
            (codec::decode::<Key>(&key), &record.settled)
        else {
            continue;
        };
        if let Some(contract) = state.get::<Contract>(&Key::Contract(contract)) {
            let total = kinds.entry(contract.terms.kind.clone()).or_default();
            *total = total.saturating_add(settled.avoided_g);
        }
    }
    let evidence_prefix = prefix(&Key::Evidence(Hash([0; 32])));
    let evidence = state
        .scan::<EvidenceRecord>(&evidence_prefix)
        .into_iter()
        .filter_map(|(key, record)| match codec::decode::<Key>(&key) {
            Ok(Key::Evidence(hash)) => Some(EvidenceReport {
                evidence: hash,
                validator: record.validator,
                height: record.height,
                round: record.round,
                step: if record.step == 0 {
                    "prevote"
                } else {
                    "precommit"
                },
                recorded_at: record.recorded_at,
            }),
            _ => None,
        })
        .collect();
    let tip = chain.tip();
    Report {
        chain_id: genesis.chain_id.clone(),
        genesis_hash: genesis.hash(),
        height: tip.height,
        block_hash: tip.hash,
        app_hash: state.app_hash(),
        counts,
        currency: genesis.currency.clone(),
        firms,
        pools,
        obligations,
        network_avoided_g: exec::avoided_grams(state, &AvoidedAccount::Network),
        kinds: kinds
            .into_iter()
            .map(|(kind, avoided_g)| KindReport { kind, avoided_g })
            .collect(),
        evidence,
        validators: chain
            .validators()
            .validators()
            .iter()
            .map(|v| (v.address, v.power))
            .collect(),
    }
}

fn prefix(key: &Key) -> Vec<u8> {
    symbiont_contracts::state::variant_prefix(key)
}
