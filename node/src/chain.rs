//! The chain as one node knows it: the state after its last block, that
//! block, the validator sets of the next height and of the last one, and
//! the proposer exclusions the chain implies. It judges a proposed block
//! (`valid(v)`: header checks, evidence, execution to the header's app
//! hash), builds this node's proposals, and applies a decided block.
//!
//! Pure and deterministic: the caller passes the clock reading; no I/O
//! (the node persists what `commit` returns through `storage`).
//!
//! A block changes the validator set from the next height on: the set of
//! height `h` is the one the state names after block `h - 1`.

use std::sync::Arc;

use symbiont_contracts::exec::{
    self, BlockInfo, BlockOutcome, Params as AppParams, execute_block_checked,
};
use symbiont_contracts::genesis::{ConsensusParams, Genesis};
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::PublicKey;
use symbiont_contracts::state::{Key, State, WriteSet, variant_prefix};
use symbiont_contracts::tx::{SignedTx, TxError};

use crate::block::{self, Block, BlockDraft, BlockError, Certificate, Evidence, Parent};
use crate::consensus::core::Validity;
use crate::consensus::ed25519::Ed25519Context;
use crate::consensus::proposer::{ProposerHistory, ProposerSelector};
use crate::consensus::signed::EvidenceError;
use crate::consensus::types::{ConsensusError, Height, ValidatorSet};

pub type Validators = ValidatorSet<Ed25519Context>;

/// Why a proposed block is not valid (beyond the header checks).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBlock {
    #[error(transparent)]
    Header(#[from] BlockError),
    #[error("evidence {index} is invalid: {error}")]
    Evidence { index: usize, error: EvidenceError },
    #[error("block cannot be executed: {0}")]
    Execution(#[from] exec::BlockError),
    #[error("executing the block gives app hash {computed}, its header says {header}")]
    AppHash { header: Hash, computed: Hash },
    #[error("block proposed by {found}, the proposal's proposer is {expected}")]
    WrongProposer {
        expected: PublicKey,
        found: PublicKey,
    },
}

/// The state cannot form a validator set (governance left none): the chain
/// cannot go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the state names no valid validator set: {0}")]
pub struct NoValidators(#[from] ConsensusError);

/// A block executed on a copy of the state, ready to commit.
#[derive(Clone, Debug)]
pub struct Executed {
    pub validity: Validity,
    pub outcome: BlockOutcome,
    state: State,
}

impl Executed {
    /// The state after the block.
    pub fn state(&self) -> &State {
        &self.state
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tip {
    pub height: Height,
    pub hash: Hash,
    pub time_ms: u64,
}

pub struct Chain {
    chain_id: String,
    selector: Arc<dyn ProposerSelector<Ed25519Context>>,
    state: State,
    /// The last block (height 0: the genesis hash and time).
    tip: Tip,
    /// Validators of the next height, and of the tip's height (which
    /// signed the tip's certificate; `None` before the first block).
    validators: Validators,
    previous_validators: Option<Validators>,
    history: ProposerHistory<Ed25519Context>,
}

/// The validators the state names.
pub fn validator_set(state: &State) -> Result<Validators, NoValidators> {
    let validators = exec::current_nodes(state)
        .into_iter()
        .filter(|node| node.validator)
        .map(|node| (node.key, node.power));
    Ok(ValidatorSet::new(validators)?)
}

/// Whether a block's writes (a `WriteSet`, in key order) may change
/// [`validator_set`]: it reads only the node records, so a block that
/// wrote none leaves the set as it was (the chain and the auditor
/// recompute the set only after blocks that did).
pub fn validators_may_change(writes: &WriteSet) -> bool {
    let prefix = variant_prefix(&Key::Node(String::new()));
    let first = writes.partition_point(|(key, _)| key.as_slice() < prefix.as_slice());
    writes
        .get(first)
        .is_some_and(|(key, _)| key.starts_with(&prefix))
}

fn consensus_params(state: &State) -> ConsensusParams {
    let params: AppParams = state
        .get(&Key::Params)
        .expect("the state holds its params from genesis on");
    params.consensus
}

impl Chain {
    /// The chain at height 0.
    pub fn from_genesis(
        genesis: &Genesis,
        selector: Arc<dyn ProposerSelector<Ed25519Context>>,
    ) -> Result<Self, NoValidators> {
        let state = exec::genesis_state(genesis);
        let validators = validator_set(&state)?;
        Ok(Self {
            chain_id: genesis.chain_id.clone(),
            selector,
            state,
            tip: Tip {
                height: 0,
                hash: genesis.hash(),
                time_ms: genesis.genesis_time_ms,
            },
            validators,
            previous_validators: None,
            history: ProposerHistory::default(),
        })
    }

    /// The chain at a stored tip: `state` after block `tip.height`, and
    /// the last blocks up to the tip (ascending; the last
    /// `MISSED_TURN_WINDOW + 1` are enough) to derive the exclusions.
    /// The validator sets of those heights are taken to be the current one
    /// (a restart right after a validator-set change may misjudge the next
    /// block's certificate and then waits for the block from a peer).
    pub fn resume(
        genesis: &Genesis,
        selector: Arc<dyn ProposerSelector<Ed25519Context>>,
        state: State,
        tip: Tip,
        recent_blocks: &[Block],
    ) -> Result<Self, NoValidators> {
        let validators = validator_set(&state)?;
        let mut history = ProposerHistory::default();
        for block in recent_blocks {
            history.on_commit(
                selector.as_ref(),
                block.header.height,
                block.last_commit.as_ref().map(|c| c.round),
                &validators,
                &validators,
            );
        }
        Ok(Self {
            chain_id: genesis.chain_id.clone(),
            selector,
            state,
            previous_validators: (tip.height > 0).then(|| validators.clone()),
            tip,
            validators,
            history,
        })
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn tip(&self) -> &Tip {
        &self.tip
    }

    pub fn next_height(&self) -> Height {
        self.tip.height + 1
    }

    /// The validators of the next height.
    pub fn validators(&self) -> &Validators {
        &self.validators
    }

    /// The proposers skipped at the next height (`StartHeight`).
    pub fn excluded_proposers(&self) -> Vec<PublicKey> {
        self.history.excluded_at(self.next_height())
    }

    pub fn params(&self) -> ConsensusParams {
        consensus_params(&self.state)
    }

    fn parent<'a>(&'a self, params: &'a ConsensusParams) -> Parent<'a> {
        Parent {
            chain_id: &self.chain_id,
            height: self.tip.height,
            hash: self.tip.hash,
            time_ms: self.tip.time_ms,
            validators: self.previous_validators.as_ref(),
            params,
        }
    }

    /// Executes `txs` and `evidence` on a copy of the state as the block
    /// `height`, `time_ms` (`checks`: each transaction's `verify` result,
    /// from `verify::check_block_txs`).
    fn execute(
        &self,
        time_ms: u64,
        txs: &[SignedTx],
        checks: &[Result<(), TxError>],
        evidence: &[Evidence],
    ) -> Result<(BlockOutcome, State), exec::BlockError> {
        let mut state = self.state.clone();
        let info = BlockInfo {
            height: self.next_height(),
            time_ms,
        };
        let items = block::block_evidence(evidence);
        let outcome = execute_block_checked(&mut state, &info, txs, checks, &items)?;
        Ok((outcome, state))
    }

    /// This node's proposal for the next height: the transactions as
    /// given (the mempool reaped them within the block limits; `checks`
    /// their verdicts), executed for the app hash. `time_ms` is the local
    /// clock; the block time is after the parent's whatever the clock
    /// says.
    #[allow(clippy::too_many_arguments)]
    pub fn propose(
        &self,
        proposer: PublicKey,
        time_ms: u64,
        txs: Vec<SignedTx>,
        checks: &[Result<(), TxError>],
        evidence: Vec<Evidence>,
        last_commit: Option<Certificate>,
    ) -> Result<(Block, Executed), exec::BlockError> {
        let time_ms = time_ms.max(self.tip.time_ms.saturating_add(1));
        let (outcome, state) = self.execute(time_ms, &txs, checks, &evidence)?;
        let block = BlockDraft {
            chain_id: self.chain_id.clone(),
            height: self.next_height(),
            time_ms,
            previous_hash: self.tip.hash,
            proposer,
            txs,
            evidence,
            last_commit,
        }
        .seal(outcome.app_hash);
        let executed = Executed {
            validity: Validity::Valid,
            outcome,
            state,
        };
        Ok((block, executed))
    }

    /// `valid(v)` of a block for the next height, at local time
    /// `local_time_ms`: the header checks, the evidence, and execution
    /// giving the header's app hash. `proposer`: for a fresh proposal, its
    /// proposer, who must have made the block; `None` for a re-proposal (a
    /// block made by an earlier round's proposer, proposed again with its
    /// valid round). `checks`: the transactions' verdicts
    /// (`verify::check_block_txs`).
    pub fn validate(
        &self,
        block: &Block,
        proposer: Option<&PublicKey>,
        local_time_ms: u64,
        checks: &[Result<(), TxError>],
    ) -> Result<Executed, InvalidBlock> {
        if let Some(proposer) = proposer
            && block.header.proposer != *proposer
        {
            return Err(InvalidBlock::WrongProposer {
                expected: *proposer,
                found: block.header.proposer,
            });
        }
        let params = self.params();
        let validity = block::check(block, &self.parent(&params), local_time_ms)?;
        for (index, evidence) in block.evidence.iter().enumerate() {
            // Checked against the validators of the next height: those of
            // older heights are not kept (an auditor replaying the chain
            // has them all).
            evidence
                .verify(&self.chain_id, &self.validators, self.next_height())
                .map_err(|error| InvalidBlock::Evidence { index, error })?;
        }
        self.execute_to_header(block, checks, validity)
    }

    /// Applies a decided block executed by `validate` or `propose` (or by
    /// `execute_decided` for one that came with its certificate from a
    /// peer): the new state, tip, validator sets and exclusions.
    pub fn commit(&mut self, block: &Block, executed: Executed) -> Result<(), NoValidators> {
        assert_eq!(block.header.height, self.next_height(), "commit in order");
        assert_eq!(executed.outcome.app_hash, block.header.app_hash);
        // Only a block that wrote node records can change the set.
        let next_validators = if validators_may_change(&executed.outcome.writes) {
            validator_set(&executed.state)?
        } else {
            debug_assert_eq!(
                validator_set(&executed.state).ok().as_ref(),
                Some(&self.validators),
                "a block that wrote no node record changed the validator set"
            );
            self.validators.clone()
        };
        let round = block.last_commit.as_ref().map(|c| c.round);
        let previous = self
            .previous_validators
            .clone()
            .unwrap_or_else(|| self.validators.clone());
        self.history.on_commit(
            self.selector.as_ref(),
            block.header.height,
            round,
            &previous,
            &next_validators,
        );
        self.state = executed.state;
        // The block's changes join the shared base, so the next height's
        // executions copy only their own writes (the base is ours alone
        // once the other executions of this height are dropped).
        self.state.flatten();
        self.tip = Tip {
            height: block.header.height,
            hash: block.hash(),
            time_ms: block.header.time_ms,
        };
        self.previous_validators = Some(std::mem::replace(&mut self.validators, next_validators));
        Ok(())
    }

    /// Executes a block decided elsewhere (its certificate was verified
    /// against `validators()`): the header must still build on the tip and
    /// give its app hash; the clock does not matter any more.
    pub fn execute_decided(
        &self,
        block: &Block,
        checks: &[Result<(), TxError>],
    ) -> Result<Executed, InvalidBlock> {
        let params = self.params();
        block::check(block, &self.parent(&params), block.header.time_ms)?;
        self.execute_to_header(block, checks, Validity::Valid)
    }

    /// Executes a block decided elsewhere whose certificate was verified:
    /// more than 2/3 of the voting power precommitted it, so an honest
    /// validator executed it with every signature verified strictly and got
    /// the header's app hash. It is therefore first executed taking each
    /// signature as valid (size and chain id still checked): when that
    /// gives the header's app hash, its writes are the ones strict
    /// verification gives, since the app hash commits to them. Otherwise
    /// (the block holds a transaction whose signature the network refused,
    /// recorded as its failure, or the block is bad) the signatures are
    /// checked, `strict()`, and the block is executed again. A replica
    /// catching up thus verifies no signature of an honest network's
    /// blocks.
    pub fn execute_certified(
        &self,
        block: &Block,
        strict: impl FnOnce() -> Vec<Result<(), TxError>>,
    ) -> Result<Executed, InvalidBlock> {
        let envelopes: Vec<Result<(), TxError>> = block
            .txs
            .iter()
            .map(|tx| tx.check_envelope(&self.chain_id))
            .collect();
        // Any failure is judged again with strict verdicts: it is the
        // answer then, whatever the first execution met.
        self.execute_decided(block, &envelopes)
            .or_else(|_| self.execute_decided(block, &strict()))
    }

    /// Executes `block`, which must give the app hash of its header.
    fn execute_to_header(
        &self,
        block: &Block,
        checks: &[Result<(), TxError>],
        validity: Validity,
    ) -> Result<Executed, InvalidBlock> {
        let (outcome, state) =
            self.execute(block.header.time_ms, &block.txs, checks, &block.evidence)?;
        if outcome.app_hash != block.header.app_hash {
            return Err(InvalidBlock::AppHash {
                header: block.header.app_hash,
                computed: outcome.app_hash,
            });
        }
        Ok(Executed {
            validity,
            outcome,
            state,
        })
    }
}
