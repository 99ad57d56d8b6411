//! Blocks: what consensus orders. The consensus value is the block hash
//! (`Ed25519Context::Value`); a proposal travels with its block.
//!
//! A block is a header, its transactions, the equivocation evidence it
//! records, and the commit certificate of the previous height (whose round
//! tells who missed a proposer turn, `proposer::missed_turns`). The header
//! commits to everything else through three roots, so the block hash,
//! `H(header)`, pins the whole block. The app hash in the header is the one
//! after executing this block: the proposer executes before proposing and
//! every validator executes to judge `valid(v)`, so the certificate of a
//! block certifies the state it leads to. Exact bytes:
//! docs/ledger-format.md, section 7.
//!
//! Pure and deterministic: no clock (the caller passes its time), no I/O.

use serde::{Deserialize, Serialize};
use symbiont_contracts::codec;
use symbiont_contracts::exec::BlockEvidence;
use symbiont_contracts::genesis::ConsensusParams;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::{PublicKey, Signature};
use symbiont_contracts::tx::SignedTx;

use crate::consensus::core::{Params, Validity};
use crate::consensus::ed25519::Ed25519Context;
use crate::consensus::signed::{CertificateError, CommitCertificate, DuplicateVoteEvidence};
use crate::consensus::types::{Height, ValidatorSet, VoteType};

pub type Certificate = CommitCertificate<Ed25519Context>;
pub type Evidence = DuplicateVoteEvidence<Ed25519Context>;

/// The fields every node checks before executing a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    pub chain_id: String,
    pub height: Height,
    /// The proposer's clock, ms since the Unix epoch: after the previous
    /// block's (after the genesis time at height 1).
    pub time_ms: u64,
    /// Hash of the block at `height - 1`; the genesis hash at height 1.
    pub previous_hash: Hash,
    /// `H(ids)`: the canonical encoding of the list of transaction ids
    /// (`SignedTx::id`), in block order.
    pub tx_root: Hash,
    /// `H(evidence)`: the canonical encoding of the evidence list.
    pub evidence_root: Hash,
    /// `H(last_commit)`: the canonical encoding of the `Option` holding
    /// the previous height's certificate.
    pub last_commit_hash: Hash,
    /// The app hash after executing this block.
    pub app_hash: Hash,
    pub proposer: PublicKey,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<SignedTx>,
    pub evidence: Vec<Evidence>,
    /// The certificate that decided `height - 1` (none at height 1).
    pub last_commit: Option<Certificate>,
}

impl BlockHeader {
    /// The block hash: `H(header)`, the consensus value id.
    pub fn hash(&self) -> Hash {
        codec::hash(self)
    }
}

/// `H(list of tx ids)`.
pub fn tx_root(txs: &[SignedTx]) -> Hash {
    let ids: Vec<Hash> = txs.iter().map(SignedTx::id).collect();
    codec::hash(&ids)
}

/// `H(evidence list)`.
pub fn evidence_root(evidence: &[Evidence]) -> Hash {
    codec::hash(evidence)
}

/// What the application records of a block's evidence
/// (`exec::execute_block_checked`): its hash and what it names.
pub fn block_evidence(evidence: &[Evidence]) -> Vec<BlockEvidence> {
    evidence
        .iter()
        .map(|item| {
            let vote = &item.first.vote;
            BlockEvidence {
                hash: codec::hash(item),
                validator: vote.validator,
                height: vote.height,
                round: vote.round,
                step: match vote.vote_type {
                    VoteType::Prevote => 0,
                    VoteType::Precommit => 1,
                },
            }
        })
        .collect()
}

/// `H(Option<certificate>)`.
pub fn last_commit_hash(last_commit: &Option<Certificate>) -> Hash {
    codec::hash(last_commit)
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// The canonical bytes (what `max_block_bytes` limits).
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
}

/// What a block builds on, as the validating node knows it.
pub struct Parent<'a> {
    pub chain_id: &'a str,
    /// Height and hash of the last committed block (0 and the genesis
    /// hash before the first).
    pub height: Height,
    pub hash: Hash,
    /// Its time (the genesis time before the first block).
    pub time_ms: u64,
    /// The validators of the parent's height, which signed `last_commit`.
    pub validators: Option<&'a ValidatorSet<Ed25519Context>>,
    pub params: &'a ConsensusParams,
}

/// Why a block is invalid. Each names what differs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block of chain {found:?}, expected {expected:?}")]
    WrongChain { expected: String, found: String },
    #[error("block height {found}, expected {expected}")]
    WrongHeight { expected: Height, found: Height },
    #[error("block builds on {found}, the previous block is {expected}")]
    WrongParent { expected: Hash, found: Hash },
    #[error("block time {found} ms is not after the previous block's {previous} ms")]
    TimeNotAfter { previous: u64, found: u64 },
    #[error("{what} is {found}, the block's contents give {expected}")]
    RootMismatch {
        what: &'static str,
        expected: Hash,
        found: Hash,
    },
    #[error("block holds {count} transactions, at most {max} allowed")]
    TooManyTxs { count: usize, max: u32 },
    #[error("block is {bytes} bytes, at most {max} allowed")]
    TooLarge { bytes: usize, max: u32 },
    #[error("block at height 1 carries a previous certificate")]
    UnexpectedLastCommit,
    #[error("block at height {height} carries no certificate of the previous block")]
    MissingLastCommit { height: Height },
    #[error("the previous block's certificate is for {found}, not {expected}")]
    LastCommitForAnotherBlock { expected: Hash, found: Hash },
    #[error("the previous block's certificate is invalid: {0}")]
    BadLastCommit(CertificateError),
}

/// What the header checks compute from the block alone: its encoded size
/// and the three roots of its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contents {
    pub bytes: usize,
    pub tx_root: Hash,
    pub evidence_root: Hash,
    pub last_commit_hash: Hash,
}

impl Contents {
    /// `ids`: the transactions' ids (`SignedTx::id`), in block order.
    pub fn of(block: &Block, ids: &[Hash]) -> Contents {
        Contents::of_encoded(block, ids, block.encode().len())
    }

    /// `of`, given the length of the block's canonical encoding (a block
    /// decoded from canonical bytes: their length, as the codec accepts
    /// only the one encoding of a value).
    pub fn of_encoded(block: &Block, ids: &[Hash], bytes: usize) -> Contents {
        Contents {
            bytes,
            tx_root: codec::hash(ids),
            evidence_root: evidence_root(&block.evidence),
            last_commit_hash: last_commit_hash(&block.last_commit),
        }
    }
}

/// The header checks of `valid(v)` against the parent, and whether the
/// block's time is within `max_clock_drift_ms` of `local_time_ms`.
/// Execution (and the app hash it must give) is the caller's next step.
pub fn check(
    block: &Block,
    parent: &Parent<'_>,
    local_time_ms: u64,
) -> Result<Validity, BlockError> {
    let ids: Vec<Hash> = block.txs.iter().map(SignedTx::id).collect();
    check_with(block, &Contents::of(block, &ids), parent, local_time_ms)
}

/// `check` given the block's `Contents`, computed beforehand (the auditor
/// computes them in parallel, ahead of the sequential replay); they must
/// be the block's.
pub fn check_with(
    block: &Block,
    contents: &Contents,
    parent: &Parent<'_>,
    local_time_ms: u64,
) -> Result<Validity, BlockError> {
    check_with_verdicts(
        block,
        contents,
        parent,
        local_time_ms,
        |_, address, signature| {
            block
                .last_commit
                .as_ref()
                .is_some_and(|c| c.signature_valid(parent.chain_id, address, signature))
        },
    )
}

/// `check_with`, with `last_commit_ok(index, signer, signature)` deciding
/// whether signature `index` of the previous height's certificate is valid
/// (`CommitCertificate::verify_with`): the auditor verifies those
/// signatures in its batches, ahead of the replay.
pub fn check_with_verdicts(
    block: &Block,
    contents: &Contents,
    parent: &Parent<'_>,
    local_time_ms: u64,
    last_commit_ok: impl FnMut(usize, &PublicKey, &Signature) -> bool,
) -> Result<Validity, BlockError> {
    let header = &block.header;
    if header.chain_id != parent.chain_id {
        return Err(BlockError::WrongChain {
            expected: parent.chain_id.to_string(),
            found: header.chain_id.clone(),
        });
    }
    let expected_height = parent.height.saturating_add(1);
    if header.height != expected_height {
        return Err(BlockError::WrongHeight {
            expected: expected_height,
            found: header.height,
        });
    }
    if header.previous_hash != parent.hash {
        return Err(BlockError::WrongParent {
            expected: parent.hash,
            found: header.previous_hash,
        });
    }
    if header.time_ms <= parent.time_ms {
        return Err(BlockError::TimeNotAfter {
            previous: parent.time_ms,
            found: header.time_ms,
        });
    }
    check_size(block, contents, parent.params)?;
    check_roots(block, contents)?;
    check_last_commit(block, parent, last_commit_ok)?;
    let drift_ms = header.time_ms.abs_diff(local_time_ms);
    Ok(if drift_ms <= parent.params.max_clock_drift_ms {
        Validity::Valid
    } else {
        Validity::Untimely
    })
}

fn check_size(
    block: &Block,
    contents: &Contents,
    params: &ConsensusParams,
) -> Result<(), BlockError> {
    if block.txs.len() > params.max_block_txs as usize {
        return Err(BlockError::TooManyTxs {
            count: block.txs.len(),
            max: params.max_block_txs,
        });
    }
    if contents.bytes > params.max_block_bytes as usize {
        return Err(BlockError::TooLarge {
            bytes: contents.bytes,
            max: params.max_block_bytes,
        });
    }
    Ok(())
}

fn check_roots(block: &Block, contents: &Contents) -> Result<(), BlockError> {
    let header = &block.header;
    let roots = [
        ("tx_root", header.tx_root, contents.tx_root),
        (
            "evidence_root",
            header.evidence_root,
            contents.evidence_root,
        ),
        (
            "last_commit_hash",
            header.last_commit_hash,
            contents.last_commit_hash,
        ),
    ];
    for (what, found, expected) in roots {
        if found != expected {
            return Err(BlockError::RootMismatch {
                what,
                expected,
                found,
            });
        }
    }
    Ok(())
}

fn check_last_commit(
    block: &Block,
    parent: &Parent<'_>,
    signature_ok: impl FnMut(usize, &PublicKey, &Signature) -> bool,
) -> Result<(), BlockError> {
    let height = block.header.height;
    let (certificate, validators) = match (&block.last_commit, parent.validators) {
        (None, _) if height == 1 => return Ok(()),
        (Some(_), _) if height == 1 => return Err(BlockError::UnexpectedLastCommit),
        (Some(certificate), Some(validators)) => (certificate, validators),
        _ => return Err(BlockError::MissingLastCommit { height }),
    };
    if certificate.value_id != parent.hash {
        return Err(BlockError::LastCommitForAnotherBlock {
            expected: parent.hash,
            found: certificate.value_id,
        });
    }
    certificate
        .verify_with(parent.height, validators, signature_ok)
        .map_err(BlockError::BadLastCommit)
}

/// Assembles a block whose header commits to its contents.
pub struct BlockDraft {
    pub chain_id: String,
    pub height: Height,
    pub time_ms: u64,
    pub previous_hash: Hash,
    pub proposer: PublicKey,
    pub txs: Vec<SignedTx>,
    pub evidence: Vec<Evidence>,
    pub last_commit: Option<Certificate>,
}

impl BlockDraft {
    /// The block, with the app hash its execution gave.
    pub fn seal(self, app_hash: Hash) -> Block {
        let header = BlockHeader {
            chain_id: self.chain_id,
            height: self.height,
            time_ms: self.time_ms,
            previous_hash: self.previous_hash,
            tx_root: tx_root(&self.txs),
            evidence_root: evidence_root(&self.evidence),
            last_commit_hash: last_commit_hash(&self.last_commit),
            app_hash,
            proposer: self.proposer,
        };
        Block {
            header,
            txs: self.txs,
            evidence: self.evidence,
            last_commit: self.last_commit,
        }
    }
}

/// Largest adaptive timeout level: a height that needed `r` rounds raises
/// the timeouts by up to this many deltas.
pub const MAX_TIMEOUT_LEVEL: u32 = 8;

/// The core's timeouts from genesis: each base as given, one delta for
/// all three (`timeout_delta_ms`), and the adaptive level bounded by
/// `MAX_TIMEOUT_LEVEL`.
pub fn core_params(params: &ConsensusParams) -> Params {
    Params {
        timeout_propose_ms: params.timeout_propose_ms,
        timeout_propose_delta_ms: params.timeout_delta_ms,
        timeout_prevote_ms: params.timeout_prevote_ms,
        timeout_prevote_delta_ms: params.timeout_delta_ms,
        timeout_precommit_ms: params.timeout_precommit_ms,
        timeout_precommit_delta_ms: params.timeout_delta_ms,
        max_timeout_level: MAX_TIMEOUT_LEVEL,
    }
}
