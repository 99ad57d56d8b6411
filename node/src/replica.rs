//! One validator's host logic, sans I/O: the consensus engine, the chain
//! and the mempool, and what their outputs mean. The node's one consensus
//! task owns a `Replica` and carries out its `Action`s in order (send,
//! schedule, persist); a test drives several replicas in one process.
//!
//! - The consensus value is the block itself (its id the block hash), so
//!   a proposal carries its block, and the engine's WAL holds it. The
//!   engine hands a proposal out for its verdict (`CheckProposal`) once it
//!   is processed for its height, and the replica judges the block with
//!   `Chain::validate` at the caller's clock reading.
//! - Asked for a value, the replica reaps the mempool, builds and executes
//!   a block (`Chain::propose`), and proposes its hash.
//! - A decision is applied to the chain and handed to the caller as
//!   `Action::Commit`; the caller persists it (`storage`) and only then
//!   calls `start_next_height`, so the consensus WAL of a height is never
//!   dropped before its block is durable.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};
use symbiont_contracts::exec::BlockOutcome;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::PublicKey;
use symbiont_contracts::tx::SignedTx;

use crate::block::{Block, Certificate, Evidence};
use crate::chain::{Chain, Executed};
use crate::consensus::core::Validity;
use crate::consensus::ed25519::Ed25519Context;
use crate::consensus::engine::{Engine, EngineError, EngineInput, EngineOutput};
use crate::consensus::signed::{Message, SignedProposal};
use crate::consensus::types::{Height, Timeout};
use crate::mempool::{AdmitError, Mempool};
use crate::verify::check_block_txs;

type C = Ed25519Context;

/// Executed blocks kept for the current height (judged or built; a
/// Byzantine proposer may send several per round).
pub const MAX_EXECUTED_PER_HEIGHT: usize = 64;

/// Pending equivocation evidence to put in our next block.
pub const MAX_PENDING_EVIDENCE: usize = 64;

/// What nodes send each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetMessage {
    /// A proposal (with its block), a vote, or a decided block with its
    /// certificate (for a peer behind).
    Consensus(Message<C>),
    /// A transaction admitted somewhere (gossip). Still understood;
    /// nodes now gossip transactions in batches (`Txs`).
    Tx(SignedTx),
    /// Transactions admitted by the node that publishes them, gossiped as
    /// one message: 1 to `TX_BATCH_MAX_TXS` of them, each judged on its
    /// own by the receiver (see `Replica::check_gossip_txs`). One gossip
    /// message per transaction cost more than the transaction's own
    /// signature check (framing, encryption, gossipsub's envelope,
    /// signature and seen-cache, per copy received).
    Txs(Vec<SignedTx>),
}

/// The most transactions in one `NetMessage::Txs`; a batch with more (or
/// none) is rejected. Batches are also cut at `TX_BATCH_MAX_BYTES`.
pub const TX_BATCH_MAX_TXS: usize = 256;
/// A batch is published once its transactions reach this many bytes
/// (one more transaction may overshoot it by at most `MAX_TX_BYTES`).
pub const TX_BATCH_MAX_BYTES: usize = 256 * 1024;

/// Whether a gossip message may be forwarded to other peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GossipVerdict {
    /// Checked: forward it.
    Accept,
    /// Invalid (bad signature, wrong chain, oversize, not a member's):
    /// drop it, and the peer that sent it is to blame.
    Reject,
    /// Not for forwarding (a duplicate, an old or far height, a full
    /// pool), nobody to blame.
    Ignore,
}

/// Heights around ours whose consensus messages are forwarded.
pub const GOSSIP_HEIGHT_WINDOW: Height = 1;

/// What the caller must do, in order.
#[derive(Clone, Debug)]
pub enum Action {
    Broadcast(NetMessage),
    ScheduleTimeout {
        timeout: Timeout,
        duration_ms: u64,
    },
    /// Persist this block, its certificate and its writes; then call
    /// `start_next_height`.
    Commit {
        block: Block,
        certificate: Certificate,
        outcome: BlockOutcome,
    },
    /// `peer` is behind: send it the commit of `height` (from storage).
    /// Given once per height and [`COMMIT_GOSSIP_INTERVAL_MS`]: a peer
    /// stuck at a height sends several messages every rebroadcast, and
    /// answering each with a whole block (up to 8 MiB) floods the links it
    /// needs to catch up.
    SendCommit {
        peer: PublicKey,
        height: Height,
    },
    /// `peer` is ahead: ask it for the commits after our tip. Given once
    /// per peer and [`COMMIT_REQUEST_INTERVAL_MS`].
    RequestCommits {
        peer: PublicKey,
    },
}

/// A height's commit is sent to peers behind at most once per interval.
pub const COMMIT_GOSSIP_INTERVAL_MS: u64 = 1_000;
/// A peer ahead is asked for commits at most once per interval.
pub const COMMIT_REQUEST_INTERVAL_MS: u64 = 500;

pub struct Replica {
    me: PublicKey,
    engine: Engine<C>,
    chain: Chain,
    mempool: Mempool,
    /// Blocks of the current height executed already (judged or built),
    /// by hash: a decision needs no second execution.
    executed: BTreeMap<Hash, Executed>,
    /// Our certificate of the tip, for the next block we propose.
    last_commit: Option<Certificate>,
    evidence: Vec<Evidence>,
    /// A decision applied, waiting for `start_next_height`.
    committing: bool,
    threads: NonZeroUsize,
    /// When each height's commit was last sent to peers behind.
    commits_sent: Throttle<Height>,
    /// When each peer ahead was last asked for commits.
    commits_asked: Throttle<PublicKey>,
}

impl Replica {
    /// Wraps a recovered engine (`Engine::recover` at `chain`'s tip, with
    /// `chain.validators()` and `chain.excluded_proposers()`); `outputs`
    /// are those `recover` returned.
    pub fn new(
        engine: Engine<C>,
        chain: Chain,
        mempool: Mempool,
        last_commit: Option<Certificate>,
        threads: NonZeroUsize,
        now_ms: u64,
        outputs: Vec<EngineOutput<C>>,
    ) -> Result<(Self, Vec<Action>), EngineError> {
        let mut replica = Self {
            me: engine.guard().address(),
            engine,
            chain,
            mempool,
            executed: BTreeMap::new(),
            last_commit,
            evidence: Vec::new(),
            committing: false,
            threads,
            commits_sent: Throttle::new(COMMIT_GOSSIP_INTERVAL_MS),
            commits_asked: Throttle::new(COMMIT_REQUEST_INTERVAL_MS),
        };
        let mut actions = Vec::new();
        replica.run(outputs, now_ms, &mut actions)?;
        Ok((replica, actions))
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    pub fn engine(&self) -> &Engine<C> {
        &self.engine
    }

    /// A transaction from a client: admitted, then gossiped.
    pub fn submit(&mut self, tx: SignedTx) -> Result<(Hash, Vec<Action>), AdmitError> {
        let id = self.mempool.admit(tx.clone(), self.chain.state())?;
        Ok((id, vec![Action::Broadcast(NetMessage::Tx(tx))]))
    }

    /// Checks a gossip message before it is forwarded: a transaction is
    /// admitted to the mempool here (its signature verified once); a
    /// vote or proposal must be signed by a validator of the current set
    /// for a height within `GOSSIP_HEIGHT_WINDOW` of ours (and a proposal's
    /// block within the size limit); a commit for our next height must
    /// carry a valid certificate. The message is then given to `receive`
    /// (a transaction already admitted is not admitted again there).
    pub fn check_gossip(&mut self, message: &NetMessage) -> GossipVerdict {
        match message {
            NetMessage::Tx(tx) => self.check_gossip_tx(tx).0,
            NetMessage::Txs(txs) => self.check_gossip_txs(txs).0,
            NetMessage::Consensus(Message::Vote(vote)) => {
                let signer = &vote.vote.validator;
                self.check_signed(vote.vote.height, signer, || {
                    vote.verify(self.chain.chain_id())
                })
            }
            NetMessage::Consensus(Message::Proposal(proposal)) => {
                let max = self.chain.params().max_block_bytes as usize;
                if proposal.proposal.value.encode().len() > max {
                    return GossipVerdict::Reject;
                }
                let signer = &proposal.proposal.proposer;
                self.check_signed(proposal.proposal.height, signer, || {
                    proposal.verify(self.chain.chain_id())
                })
            }
            NetMessage::Consensus(Message::Commit { value, certificate }) => {
                if certificate.height != self.chain.next_height()
                    || certificate.value_id != value.hash()
                {
                    return GossipVerdict::Ignore;
                }
                match certificate.verify(
                    self.chain.chain_id(),
                    certificate.height,
                    self.chain.validators(),
                ) {
                    Ok(()) => GossipVerdict::Accept,
                    Err(_) => GossipVerdict::Reject,
                }
            }
        }
    }

    /// `check_gossip` of a transaction, with the admission's outcome
    /// (the node counts admissions and refusals by reason).
    pub fn check_gossip_tx(&mut self, tx: &SignedTx) -> (GossipVerdict, Result<Hash, AdmitError>) {
        let result = self.mempool.admit(tx.clone(), self.chain.state());
        let verdict = match &result {
            Ok(_) => GossipVerdict::Accept,
            Err(error) => match error.code() {
                "oversize" | "malformed" | "wrong_chain_id" | "bad_signature"
                | "unknown_signer" => GossipVerdict::Reject,
                _ => GossipVerdict::Ignore,
            },
        };
        (verdict, result)
    }

    /// `check_gossip` of a batch of transactions: each is admitted (or
    /// not) on its own, and the results are returned in order. The verdict
    /// on the message:
    ///
    /// - `Reject` if the batch is empty or longer than `TX_BATCH_MAX_TXS`,
    ///   or if any transaction fails a check that does not depend on the
    ///   state (size, encoding, chain id, signature). The publisher
    ///   admitted every transaction it batched, and any honest node that
    ///   forwarded the batch ran the same checks with the same outcome: only
    ///   a faulty publisher or forwarder is blamed. (The good transactions
    ///   of a rejected batch are admitted all the same.)
    /// - else `Accept` if at least one transaction was new here: the batch
    ///   is forwarded whole.
    /// - else `Ignore`: nothing new (duplicates, stale nonces, a signer
    ///   this node does not know yet, a full pool: all depend on the
    ///   receiver's state and mempool, so nobody is blamed).
    pub fn check_gossip_txs(
        &mut self,
        txs: &[SignedTx],
    ) -> (GossipVerdict, Vec<Result<Hash, AdmitError>>) {
        if txs.is_empty() || txs.len() > TX_BATCH_MAX_TXS {
            return (GossipVerdict::Reject, Vec::new());
        }
        let results: Vec<Result<Hash, AdmitError>> = txs
            .iter()
            .map(|tx| self.mempool.admit(tx.clone(), self.chain.state()))
            .collect();
        let invalid = results.iter().any(|result| {
            matches!(
                result,
                Err(AdmitError::Tx(error)) if matches!(
                    error.code(),
                    "oversize" | "malformed" | "wrong_chain_id" | "bad_signature"
                )
            )
        });
        let verdict = if invalid {
            GossipVerdict::Reject
        } else if results.iter().any(Result::is_ok) {
            GossipVerdict::Accept
        } else {
            GossipVerdict::Ignore
        };
        (verdict, results)
    }

    fn check_signed(
        &self,
        height: Height,
        signer: &PublicKey,
        verify: impl FnOnce() -> bool,
    ) -> GossipVerdict {
        let ours = self.chain.next_height();
        if height.abs_diff(ours) > GOSSIP_HEIGHT_WINDOW || !self.chain.validators().contains(signer)
        {
            return GossipVerdict::Ignore;
        }
        if verify() {
            GossipVerdict::Accept
        } else {
            GossipVerdict::Reject
        }
    }

    /// A message from a peer.
    pub fn receive(
        &mut self,
        message: NetMessage,
        now_ms: u64,
    ) -> Result<Vec<Action>, EngineError> {
        let input = match message {
            NetMessage::Tx(tx) => {
                // Already known or not admissible: nothing to do.
                let _ = self.mempool.admit(tx, self.chain.state());
                return Ok(Vec::new());
            }
            NetMessage::Txs(txs) => {
                for tx in txs.into_iter().take(TX_BATCH_MAX_TXS) {
                    let _ = self.mempool.admit(tx, self.chain.state());
                }
                return Ok(Vec::new());
            }
            NetMessage::Consensus(Message::Proposal(proposal)) => EngineInput::Proposal(proposal),
            NetMessage::Consensus(Message::Vote(vote)) => EngineInput::Vote(vote),
            NetMessage::Consensus(Message::Commit { value, certificate }) => {
                EngineInput::Commit { value, certificate }
            }
        };
        self.feed(input, now_ms)
    }

    pub fn timeout(&mut self, timeout: Timeout, now_ms: u64) -> Result<Vec<Action>, EngineError> {
        self.feed(EngineInput::Timeout(timeout), now_ms)
    }

    /// After the caller persisted the last `Action::Commit`.
    pub fn start_next_height(&mut self, now_ms: u64) -> Result<Vec<Action>, EngineError> {
        assert!(self.committing, "a commit was handed out");
        self.committing = false;
        self.feed(
            EngineInput::StartHeight {
                height: self.chain.next_height(),
                validators: self.chain.validators().clone(),
                excluded_proposers: self.chain.excluded_proposers(),
            },
            now_ms,
        )
    }

    /// Our messages of the current height worth sending again (a timer
    /// calls this, so a healed partition recovers).
    pub fn rebroadcast(&self) -> Vec<Action> {
        self.engine
            .rebroadcast()
            .into_iter()
            .map(|message| Action::Broadcast(NetMessage::Consensus(message)))
            .collect()
    }

    fn feed(&mut self, input: EngineInput<C>, now_ms: u64) -> Result<Vec<Action>, EngineError> {
        if self.committing {
            // Between a decision and the next height nothing is processed:
            // peers send again.
            return Ok(Vec::new());
        }
        let outputs = self.engine.handle(input)?;
        let mut actions = Vec::new();
        self.run(outputs, now_ms, &mut actions)?;
        Ok(actions)
    }

    /// Carries out the engine's outputs; answers (verdicts, values) go
    /// back in and their outputs are carried out in turn.
    fn run(
        &mut self,
        outputs: Vec<EngineOutput<C>>,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let mut pending: std::collections::VecDeque<EngineOutput<C>> = outputs.into();
        while let Some(output) = pending.pop_front() {
            match output {
                EngineOutput::Broadcast(message) => {
                    actions.push(Action::Broadcast(NetMessage::Consensus(message)));
                }
                EngineOutput::ScheduleTimeout {
                    timeout,
                    duration_ms,
                } => actions.push(Action::ScheduleTimeout {
                    timeout,
                    duration_ms,
                }),
                EngineOutput::CheckProposal(proposal) => {
                    let validity = self.judge(&proposal, now_ms);
                    pending.extend(
                        self.engine
                            .handle(EngineInput::ProposalVerdict { proposal, validity })?,
                    );
                }
                EngineOutput::RequestValue { height, round } => {
                    if let Some(value) = self.build_block(now_ms) {
                        pending.extend(self.engine.handle(EngineInput::ProposeValue {
                            height,
                            round,
                            value,
                        })?);
                    }
                }
                EngineOutput::Decided { value, certificate } => {
                    if let Some(action) = self.decide(value, certificate) {
                        actions.push(action);
                        // The rest waits for the next height.
                        return Ok(());
                    }
                }
                EngineOutput::Evidence(evidence) => {
                    if self.evidence.len() < MAX_PENDING_EVIDENCE
                        && !self.evidence.contains(&evidence)
                    {
                        self.evidence.push(evidence);
                    }
                }
                EngineOutput::PeerBehind { peer, height } => {
                    if self.commits_sent.allow(height, now_ms) {
                        actions.push(Action::SendCommit { peer, height })
                    }
                }
                EngineOutput::PeerAhead { peer, .. } => {
                    if self.commits_asked.allow(peer, now_ms) {
                        actions.push(Action::RequestCommits { peer })
                    }
                }
            }
        }
        Ok(())
    }

    /// `valid(v)` of a proposal's block, at our clock.
    fn judge(&mut self, proposal: &SignedProposal<C>, now_ms: u64) -> Validity {
        let block = &proposal.proposal.value;
        let checks = check_block_txs(
            &block.txs,
            self.chain.chain_id(),
            |id| self.mempool.contains(id),
            self.threads,
        );
        // A re-proposal carries a block an earlier round's proposer made.
        let maker = proposal
            .proposal
            .valid_round
            .is_none()
            .then_some(&proposal.proposal.proposer);
        match self.chain.validate(block, maker, now_ms, &checks) {
            Ok(executed) => {
                let validity = executed.validity;
                if self.executed.len() < MAX_EXECUTED_PER_HEIGHT {
                    self.executed.insert(block.hash(), executed);
                }
                validity
            }
            Err(_) => Validity::Invalid,
        }
    }

    /// Our block for the next height: the mempool's pending transactions
    /// within the limits, the evidence we hold, our certificate of the tip.
    fn build_block(&mut self, now_ms: u64) -> Option<Block> {
        let params = self.chain.params();
        let txs = self.mempool.reap(
            self.chain.state(),
            params.max_block_txs as usize,
            // Leave room for the header, evidence and certificate.
            (params.max_block_bytes as usize).saturating_sub(64 * 1024),
        );
        let checks = check_block_txs(
            &txs,
            self.chain.chain_id(),
            |id| self.mempool.contains(id),
            self.threads,
        );
        let (block, executed) = self
            .chain
            .propose(
                self.me,
                now_ms,
                txs,
                &checks,
                self.evidence.clone(),
                self.last_commit.clone(),
            )
            .ok()?;
        self.executed.insert(block.hash(), executed);
        Some(block)
    }

    fn decide(&mut self, block: Block, certificate: Certificate) -> Option<Action> {
        let executed = match self.executed.remove(&block.hash()) {
            Some(executed) => executed,
            // Certified (the engine verified the certificate): signatures
            // are verified only if the header's app hash says one failed.
            None => self
                .chain
                .execute_certified(&block, || {
                    check_block_txs(
                        &block.txs,
                        self.chain.chain_id(),
                        |id| self.mempool.contains(id),
                        self.threads,
                    )
                })
                .ok()?,
        };
        let outcome = executed.outcome.clone();
        // The height's other executions share the state's base: dropped
        // first, the commit folds the block into the base in place.
        self.executed.clear();
        self.chain
            .commit(&block, executed)
            .expect("a decided block names a validator set");
        let committed: Vec<Hash> = outcome.results.iter().map(|(id, _)| *id).collect();
        self.mempool.update(&committed, self.chain.state());
        self.evidence.retain(|e| !block.evidence.contains(e));
        self.last_commit = Some(certificate.clone());
        self.committing = true;
        Some(Action::Commit {
            block,
            certificate,
            outcome,
        })
    }
}

/// Lets an action on a key through at most once per interval (ms of the
/// caller's clock). Keys seen within the interval are kept; older ones are
/// forgotten as new ones come, so the map holds only the last interval's
/// keys. A clock that went back forgets what it recorded after the new now,
/// so a step back cannot hold a key for that long.
struct Throttle<K> {
    interval_ms: u64,
    last: BTreeMap<K, u64>,
}

impl<K: Ord + Copy> Throttle<K> {
    fn new(interval_ms: u64) -> Self {
        Throttle {
            interval_ms,
            last: BTreeMap::new(),
        }
    }

    /// Whether the action on `key` may happen at `now_ms` (and if so,
    /// records it).
    fn allow(&mut self, key: K, now_ms: u64) -> bool {
        let interval = self.interval_ms;
        self.last
            .retain(|_, at| *at <= now_ms && now_ms - *at < interval);
        if self.last.contains_key(&key) {
            return false;
        }
        self.last.insert(key, now_ms);
        true
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::*;

    #[test]
    fn a_key_passes_once_per_interval_and_keys_are_independent() {
        let mut throttle = Throttle::new(1_000);
        let start = 5_000_000;
        assert!(throttle.allow(7u64, start));
        assert!(!throttle.allow(7, start + 400));
        assert!(!throttle.allow(7, start + 999));
        assert!(throttle.allow(8, start + 999));
        assert!(throttle.allow(7, start + 1_000));
        assert!(!throttle.allow(7, start + 1_500));
        // Old keys are forgotten: only the last interval's remain.
        assert!(throttle.allow(9, start + 5_000));
        assert_eq!(throttle.last.len(), 1);
        // The clock went back an hour: nothing recorded later holds.
        assert!(throttle.allow(9, start + 5_000 - 3_600_000));
    }
}
