//! The signed layer around the core: checks signatures at the boundary,
//! records inputs in the WAL, signs the core's messages through the
//! sign-state guard (check and sign, record in the WAL and sync, persist
//! the sign state, then send), builds commit
//! certificates and equivocation evidence, and recovers after a crash by
//! replaying the WAL into a fresh core.
//!
//! Storage is behind traits (`SignStateStore`, `WalStorage`) so the
//! simulator can model crashes that lose unsynced writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use symbiont_contracts::codec;

use super::core::{Core, Input, MAX_PROPOSALS_PER_ROUND, Output, Params, Validity};
use super::keeper::{MAX_ROUND_LOOKAHEAD, MAX_VOTES_PER_SLOT};
use super::proposer::ProposerSelector;
use super::signed::{
    CommitCertificate, DuplicateVoteEvidence, Message, SignedProposal, SignedVote,
    proposal_sign_bytes, vote_sign_bytes,
};
use super::signer::{Prepared, SignError, SignGuard, SignState, SignStep, StoreError};
use super::types::{ConsensusError, Context, Height, Round, Timeout, ValidatorSet, VoteType};
use super::wal::{Wal, WalEntry, WalError, WalStorage};

/// Messages for the next height kept per validator until it starts (its
/// proposal and votes of the first rounds). Counted per validator, after
/// the signature is checked, so nobody can crowd out another's messages.
pub const MAX_FUTURE_MESSAGES_PER_VALIDATOR: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineInput<C: Context> {
    StartHeight {
        height: Height,
        validators: ValidatorSet<C>,
        excluded_proposers: Vec<C::Address>,
    },
    /// A proposal from the network. If it is for the current height and
    /// new, the engine asks for its verdict (`EngineOutput::CheckProposal`);
    /// for the next height it waits, checked, until that height starts.
    Proposal(SignedProposal<C>),
    /// The application's verdict on a proposal the engine handed out with
    /// `CheckProposal`, evaluated for the current height (or a better
    /// verdict on one it judged before).
    ProposalVerdict {
        proposal: SignedProposal<C>,
        validity: Validity,
    },
    Vote(SignedVote<C>),
    /// A decided value and its certificate, from a peer (catch-up).
    Commit {
        value: C::Value,
        certificate: CommitCertificate<C>,
    },
    ProposeValue {
        height: Height,
        round: Round,
        value: C::Value,
    },
    Timeout(Timeout),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineOutput<C: Context> {
    /// Send to every validator. Already signed, persisted and synced.
    Broadcast(Message<C>),
    ScheduleTimeout {
        timeout: Timeout,
        duration_ms: u64,
    },
    RequestValue {
        height: Height,
        round: Round,
    },
    /// Evaluate this proposal's value for the current height (header, time
    /// against the local clock, execution) and answer with
    /// `EngineInput::ProposalVerdict`. Its signature is checked.
    CheckProposal(SignedProposal<C>),
    /// Commit `value` (durably), then send `StartHeight` for the next height.
    Decided {
        value: C::Value,
        certificate: CommitCertificate<C>,
    },
    Evidence(DuplicateVoteEvidence<C>),
    /// `peer` signed a message for `height`, which we have decided: send it
    /// that height's commit. (Only after its signature checked out, so a
    /// forged message cannot aim our commits at someone else.)
    PeerBehind {
        peer: C::Address,
        height: Height,
    },
    /// `peer` signed a message for `height`, above ours: ask it for the
    /// commits we miss (the host rate-limits these requests).
    PeerAhead {
        peer: C::Address,
        height: Height,
    },
}

/// A signature for our message, and the sign state the guard must commit
/// once the WAL holds the message (`None`: already committed).
type Signed<C> = (<C as Context>::Signature, Option<SignState<C>>);

/// Fatal errors: the validator must stop.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Consensus(#[from] ConsensusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Wal(#[from] WalError),
}

pub struct Engine<C: Context> {
    chain_id: String,
    core: Core<C>,
    guard: SignGuard<C>,
    wal: Wal<C>,
    /// Verified votes of the current height; more than one per slot only
    /// from an equivocating validator (bounded by `MAX_VOTES_PER_SLOT`).
    votes: BTreeMap<(Round, VoteType, C::Address), Vec<SignedVote<C>>>,
    /// Slots already reported as equivocation.
    equivocations: BTreeSet<(Round, VoteType, C::Address)>,
    /// Proposals seen at this height by round and hash (at most
    /// `MAX_PROPOSALS_PER_ROUND` per round, as the core keeps), with the
    /// verdict given to the core (`None`: asked for, not answered yet).
    proposals_seen: BTreeMap<(Round, [u8; 32]), Option<Validity>>,
    /// The highest round each validator signed a vote in at this height,
    /// including rounds beyond the lookahead window (whose votes are not
    /// kept): one entry per validator. With more than 1/3 of the power at
    /// round r or later, we go to r (L55), however far behind we are.
    highest_rounds: BTreeMap<C::Address, Round>,
    /// Messages we signed at this height.
    own: BTreeMap<(Round, SignStep), Message<C>>,
    /// Verified messages for the next height, with their signer.
    future: Vec<(C::Address, EngineInput<C>)>,
    decided: bool,
    replaying: bool,
    /// Signatures the guard refused (expected only after a crash).
    pub refused_signatures: u64,
    /// Test-only: the old behaviour, votes beyond the lookahead window
    /// dropped and no L55 across rounds (so the simulator shows what it
    /// cost).
    #[cfg(test)]
    pub(crate) drop_far_votes: bool,
}

impl<C: Context> Engine<C> {
    /// Recovers a validator whose last committed height is
    /// `committed_height`: replays the WAL if it holds the next height,
    /// else starts that height afresh. Returns the outputs to execute
    /// (timeouts to schedule, messages to send again, perhaps a decision).
    #[allow(clippy::too_many_arguments)]
    pub fn recover(
        chain_id: String,
        params: Params,
        selector: Arc<dyn ProposerSelector<C>>,
        guard: SignGuard<C>,
        wal_storage: Box<dyn WalStorage>,
        committed_height: Height,
        validators: ValidatorSet<C>,
        excluded_proposers: Vec<C::Address>,
    ) -> Result<(Self, Vec<EngineOutput<C>>), EngineError> {
        let height = committed_height
            .checked_add(1)
            .ok_or(ConsensusError::HeightOverflow)?;
        let mut wal = Wal::new(wal_storage);
        let replay = wal.replay()?;
        let core = Core::new(
            params,
            validators.clone(),
            guard.address(),
            height,
            selector,
        );
        let mut engine = Self {
            chain_id,
            core,
            guard,
            wal,
            votes: BTreeMap::new(),
            equivocations: BTreeSet::new(),
            proposals_seen: BTreeMap::new(),
            highest_rounds: BTreeMap::new(),
            own: BTreeMap::new(),
            future: Vec::new(),
            decided: false,
            replaying: false,
            refused_signatures: 0,
            #[cfg(test)]
            drop_far_votes: false,
        };
        let mut entries = replay.entries.into_iter();
        let resumable = matches!(
            entries.clone().next(),
            Some(WalEntry::StartHeight { height: h, .. }) if h == height
        );
        if !resumable {
            let out = engine.handle(EngineInput::StartHeight {
                height,
                validators,
                excluded_proposers,
            })?;
            return Ok((engine, out));
        }
        let Some(WalEntry::StartHeight {
            validators,
            excluded_proposers,
            ..
        }) = entries.next()
        else {
            unreachable!("checked above")
        };
        let rest: Vec<WalEntry<C>> = entries.collect();
        engine.replaying = true;
        // First our own signed messages, so the replayed core's messages
        // reuse their signatures instead of asking the guard again.
        for entry in &rest {
            match entry {
                WalEntry::OwnProposal(p) => {
                    engine.own.insert(
                        (p.proposal.round, SignStep::Proposal),
                        Message::Proposal(p.clone()),
                    );
                }
                WalEntry::OwnVote(v) => {
                    engine.own.insert(
                        (v.vote.round, SignStep::from(v.vote.vote_type)),
                        Message::Vote(v.clone()),
                    );
                }
                _ => {}
            }
        }
        let mut out = engine.start_height(height, validators, excluded_proposers)?;
        for entry in rest {
            let input = match entry {
                WalEntry::Proposal { proposal, validity } => {
                    EngineInput::ProposalVerdict { proposal, validity }
                }
                WalEntry::JumpToRound { height, round } => {
                    engine.jump_to_round(height, round, &mut out)?;
                    continue;
                }
                WalEntry::Vote(vote) => EngineInput::Vote(vote),
                WalEntry::ProposeValue {
                    height,
                    round,
                    value,
                } => EngineInput::ProposeValue {
                    height,
                    round,
                    value,
                },
                WalEntry::Timeout(timeout) => EngineInput::Timeout(timeout),
                WalEntry::OwnProposal(_) | WalEntry::OwnVote(_) | WalEntry::StartHeight { .. } => {
                    continue;
                }
            };
            out.extend(engine.handle(input)?);
        }
        engine.replaying = false;
        engine.wal.sync()?;
        Ok((engine, out))
    }

    pub fn core(&self) -> &Core<C> {
        &self.core
    }

    /// Test-only access, to switch on a deliberately broken rule.
    #[cfg(test)]
    pub(crate) fn core_mut(&mut self) -> &mut Core<C> {
        &mut self.core
    }

    pub fn height(&self) -> Height {
        self.core.height()
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The highest round of the current height `validator` signed a
    /// vote in, as far as we have heard. For status reports.
    pub fn highest_round_of(&self, validator: &C::Address) -> Option<Round> {
        self.highest_rounds.get(validator).copied()
    }

    pub fn guard(&self) -> &SignGuard<C> {
        &self.guard
    }

    /// Handles one input; outputs are to be executed in order.
    pub fn handle(&mut self, input: EngineInput<C>) -> Result<Vec<EngineOutput<C>>, EngineError> {
        let mut out = Vec::new();
        match input {
            EngineInput::StartHeight {
                height,
                validators,
                excluded_proposers,
            } => {
                out = self.start_height(height, validators, excluded_proposers)?;
                // Checked when they were buffered: not verified again.
                for (_, input) in std::mem::take(&mut self.future) {
                    match input {
                        EngineInput::Vote(vote) => self.on_vote(vote, true, &mut out)?,
                        EngineInput::Proposal(proposal) => {
                            self.on_proposal(proposal, true, &mut out)
                        }
                        _ => {}
                    }
                }
            }
            EngineInput::Vote(vote) => self.on_vote(vote, false, &mut out)?,
            EngineInput::Proposal(proposal) => self.on_proposal(proposal, false, &mut out),
            EngineInput::ProposalVerdict { proposal, validity } => {
                self.on_verdict(proposal, validity, &mut out)?
            }
            EngineInput::Commit { value, certificate } => {
                self.on_commit(value, certificate, &mut out)
            }
            EngineInput::ProposeValue {
                height,
                round,
                value,
            } => {
                if height == self.height() && !self.decided {
                    self.record(WalEntry::ProposeValue {
                        height,
                        round,
                        value: value.clone(),
                    })?;
                    let outputs = self.core.handle(Input::ProposeValue {
                        height,
                        round,
                        value,
                    })?;
                    self.execute(outputs, &mut out)?;
                }
            }
            EngineInput::Timeout(timeout) => {
                if timeout.height == self.height() && !self.decided {
                    self.record(WalEntry::Timeout(timeout))?;
                    let outputs = self.core.handle(Input::Timeout(timeout))?;
                    self.execute(outputs, &mut out)?;
                }
            }
        }
        Ok(out)
    }

    /// Our own signed messages of this height worth sending again (current
    /// and previous round), and the prevotes justifying our valid value.
    pub fn rebroadcast(&self) -> Vec<Message<C>> {
        let from_round = self.core.round().saturating_sub(1);
        let mut messages: Vec<Message<C>> = self
            .own
            .range((from_round, SignStep::Proposal)..)
            .map(|(_, m)| m.clone())
            .collect();
        if let Some((valid_round, value)) = self.core.valid() {
            let id = Some(C::value_id(value));
            messages.extend(
                self.votes
                    .iter()
                    .filter(|((r, t, _), _)| *r == *valid_round && *t == VoteType::Prevote)
                    .flat_map(|(_, votes)| votes.iter())
                    .filter(|v| v.vote.value == id)
                    .map(|v| Message::Vote(v.clone())),
            );
        }
        messages
    }

    fn record(&mut self, entry: WalEntry<C>) -> Result<(), EngineError> {
        if !self.replaying {
            self.wal.append(&entry)?;
        }
        Ok(())
    }

    fn start_height(
        &mut self,
        height: Height,
        validators: ValidatorSet<C>,
        excluded_proposers: Vec<C::Address>,
    ) -> Result<Vec<EngineOutput<C>>, EngineError> {
        if !self.replaying {
            self.wal.start_height(&WalEntry::StartHeight {
                height,
                validators: validators.clone(),
                excluded_proposers: excluded_proposers.clone(),
            })?;
            self.own.clear();
        }
        self.votes.clear();
        self.equivocations.clear();
        self.proposals_seen.clear();
        self.highest_rounds.clear();
        self.decided = false;
        self.future.retain(|(_, i)| input_height(i) == Some(height));
        let outputs = self.core.handle(Input::StartHeight {
            height,
            validators,
            excluded_proposers,
        })?;
        let mut out = Vec::new();
        self.execute(outputs, &mut out)?;
        Ok(out)
    }

    /// Routes a message by height. The current height is processed
    /// (`true`). Any other height is acted on only once the signature
    /// checks out: the next height's messages wait (a few per validator),
    /// an older height tells us the signer is behind, a higher one that we
    /// are.
    fn route(
        &mut self,
        height: Height,
        signer: &C::Address,
        verify: impl FnOnce() -> bool,
        input: impl FnOnce() -> EngineInput<C>,
        out: &mut Vec<EngineOutput<C>>,
    ) -> bool {
        let current = self.height();
        if height == current {
            return !self.decided;
        }
        let next = height == current.saturating_add(1);
        let input = next.then(input);
        // Gossip repeats messages: one already waiting was checked.
        let known = input
            .as_ref()
            .is_some_and(|input| self.future.iter().any(|(_, i)| i == input));
        if !known && (!self.core.validators().contains(signer) || !verify()) {
            return false;
        }
        if height < current {
            out.push(EngineOutput::PeerBehind {
                peer: signer.clone(),
                height,
            });
            return false;
        }
        let buffered = self.future.iter().filter(|(a, _)| a == signer).count();
        if let Some(input) = input
            && !known
            && buffered < MAX_FUTURE_MESSAGES_PER_VALIDATOR
        {
            self.future.push((signer.clone(), input));
        }
        // We are behind: a validator that is silent (say, after a crash
        // that cost it its vote at this step) would otherwise never learn.
        out.push(EngineOutput::PeerAhead {
            peer: signer.clone(),
            height,
        });
        false
    }

    /// `verified`: the signature was checked when the vote was buffered.
    fn on_vote(
        &mut self,
        signed: SignedVote<C>,
        verified: bool,
        out: &mut Vec<EngineOutput<C>>,
    ) -> Result<(), EngineError> {
        let vote = &signed.vote;
        let chain_id = self.chain_id.clone();
        if !self.route(
            vote.height,
            &vote.validator.clone(),
            || signed.verify(&chain_id),
            || EngineInput::Vote(signed.clone()),
            out,
        ) {
            return Ok(());
        }
        if !self.core.validators().contains(&vote.validator)
            || !(verified || signed.verify(&self.chain_id))
        {
            return Ok(());
        }
        let (validator, round) = (vote.validator.clone(), vote.round);
        if round > self.core.round().saturating_add(MAX_ROUND_LOOKAHEAD) {
            // Too far ahead to count, and not recorded: it only tells us
            // where its signer is.
            return self.note_round(validator, round, out);
        }
        let slot = (vote.round, vote.vote_type, vote.validator.clone());
        let existing = self.votes.entry(slot.clone()).or_default();
        let relevant = self.core.is_relevant(&signed.vote.value);
        if existing.iter().any(|v| v.vote == signed.vote)
            || (existing.len() >= MAX_VOTES_PER_SLOT && !relevant)
        {
            return Ok(());
        }
        if let Some(first) = existing.first()
            && self.equivocations.insert(slot)
        {
            out.push(EngineOutput::Evidence(DuplicateVoteEvidence::new(
                first.clone(),
                signed.clone(),
            )));
        }
        existing.push(signed.clone());
        self.record(WalEntry::Vote(signed.clone()))?;
        let outputs = self.core.handle(Input::Vote(signed.vote))?;
        self.execute(outputs, out)?;
        self.note_round(validator, round, out)
    }

    /// L55 over every validator's highest round, including rounds beyond
    /// the lookahead window: if validators with more than 1/3 of the power
    /// signed votes in rounds `r` or later and `r` is above ours, go to
    /// `r`. At least one of them is correct and reached `r`, so nobody can
    /// push us forward alone; and a validator left any number of rounds
    /// behind by a long partition catches up as soon as it hears them.
    fn note_round(
        &mut self,
        validator: C::Address,
        round: Round,
        out: &mut Vec<EngineOutput<C>>,
    ) -> Result<(), EngineError> {
        #[cfg(test)]
        if self.drop_far_votes {
            return Ok(());
        }
        let highest = self.highest_rounds.entry(validator).or_insert(round);
        *highest = (*highest).max(round);
        if self.replaying || round <= self.core.round() || self.decided {
            // Replay follows the WAL's jumps, not its own.
            return Ok(());
        }
        let validators = self.core.validators();
        let mut by_round: Vec<(Round, u64)> = self
            .highest_rounds
            .iter()
            .filter_map(|(a, r)| validators.power_of(a).map(|p| (*r, p)))
            .collect();
        by_round.sort_by(|a, b| b.cmp(a));
        let mut power: u64 = 0;
        let mut target = None;
        for (r, p) in by_round {
            power = power.saturating_add(p);
            if validators.is_one_third(power) {
                target = Some(r);
                break;
            }
        }
        match target {
            Some(target) if target > self.core.round() => {
                let height = self.height();
                self.jump_to_round(height, target, out)
            }
            _ => Ok(()),
        }
    }

    /// Records the jump (replay repeats it: the votes beyond the window
    /// that caused it are not in the WAL) and makes it.
    fn jump_to_round(
        &mut self,
        height: Height,
        round: Round,
        out: &mut Vec<EngineOutput<C>>,
    ) -> Result<(), EngineError> {
        self.record(WalEntry::JumpToRound { height, round })?;
        let outputs = self.core.handle(Input::JumpToRound { height, round })?;
        self.execute(outputs, out)
    }

    /// Checks a proposal from the network and asks for its verdict.
    /// `verified`: the signature was checked when it was buffered.
    fn on_proposal(
        &mut self,
        signed: SignedProposal<C>,
        verified: bool,
        out: &mut Vec<EngineOutput<C>>,
    ) {
        let proposal = &signed.proposal;
        let chain_id = self.chain_id.clone();
        if !self.route(
            proposal.height,
            &proposal.proposer.clone(),
            || signed.verify(&chain_id),
            || EngineInput::Proposal(signed.clone()),
            out,
        ) {
            return;
        }
        let key = (proposal.round, proposal_hash(&signed));
        if self.proposals_seen.contains_key(&key) || !self.admissible(&signed, verified) {
            return;
        }
        self.proposals_seen.insert(key, None);
        out.push(EngineOutput::CheckProposal(signed));
    }

    /// A proposal of the current height the core would keep: from the
    /// round's proposer, within the window, room left in its round, and
    /// signed by it.
    fn admissible(&self, signed: &SignedProposal<C>, verified: bool) -> bool {
        let proposal = &signed.proposal;
        let round = proposal.round;
        let in_round = self
            .proposals_seen
            .range((round, [0; 32])..=(round, [0xff; 32]))
            .count();
        in_round < MAX_PROPOSALS_PER_ROUND
            && round <= self.core.round().saturating_add(MAX_ROUND_LOOKAHEAD)
            && proposal.proposer == self.core.proposer(round)
            && (verified || signed.verify(&self.chain_id))
    }

    /// The application's verdict: recorded, then given to the core. A
    /// proposal it was not asked about is checked first (WAL replay).
    fn on_verdict(
        &mut self,
        signed: SignedProposal<C>,
        validity: Validity,
        out: &mut Vec<EngineOutput<C>>,
    ) -> Result<(), EngineError> {
        if signed.proposal.height != self.height() || self.decided {
            return Ok(());
        }
        let key = (signed.proposal.round, proposal_hash(&signed));
        match self.proposals_seen.get(&key) {
            Some(Some(known)) if validity <= *known => return Ok(()),
            Some(_) => {}
            None if self.admissible(&signed, false) => {}
            None => return Ok(()),
        }
        self.proposals_seen.insert(key, Some(validity));
        self.record(WalEntry::Proposal {
            proposal: signed.clone(),
            validity,
        })?;
        let outputs = self.core.handle(Input::Proposal {
            proposal: signed.proposal,
            validity,
        })?;
        self.execute(outputs, out)
    }

    fn on_commit(
        &mut self,
        value: C::Value,
        certificate: CommitCertificate<C>,
        out: &mut Vec<EngineOutput<C>>,
    ) {
        if self.decided
            || certificate.height != self.height()
            || C::value_id(&value) != certificate.value_id
            || certificate
                .verify(&self.chain_id, self.height(), self.core.validators())
                .is_err()
        {
            return;
        }
        self.decided = true;
        out.push(EngineOutput::Decided { value, certificate });
    }

    /// Executes the core's outputs: signs, records and syncs our messages
    /// before they are sent; turns a decision into a certificate.
    fn execute(
        &mut self,
        outputs: Vec<Output<C>>,
        out: &mut Vec<EngineOutput<C>>,
    ) -> Result<(), EngineError> {
        for output in outputs {
            match output {
                Output::Propose(proposal) => {
                    let key = (proposal.round, SignStep::Proposal);
                    let bytes = proposal_sign_bytes(&self.chain_id, &proposal);
                    let reused = match self.own.get(&key) {
                        Some(Message::Proposal(p)) if p.proposal == proposal => {
                            Some(p.signature.clone())
                        }
                        Some(_) => {
                            self.refused_signatures += 1;
                            continue;
                        }
                        None => None,
                    };
                    let Some((signature, new_state)) = self.signature(
                        reused,
                        proposal.height,
                        proposal.round,
                        SignStep::Proposal,
                        &bytes,
                    )?
                    else {
                        continue;
                    };
                    let signed = SignedProposal {
                        proposal,
                        signature,
                    };
                    self.send_own(
                        key,
                        Message::Proposal(signed.clone()),
                        WalEntry::OwnProposal(signed),
                        new_state,
                        out,
                    )?;
                }
                Output::Vote(vote) => {
                    let key = (vote.round, SignStep::from(vote.vote_type));
                    let bytes = vote_sign_bytes(&self.chain_id, &vote);
                    let reused = match self.own.get(&key) {
                        Some(Message::Vote(v)) if v.vote == vote => Some(v.signature.clone()),
                        Some(_) => {
                            self.refused_signatures += 1;
                            continue;
                        }
                        None => None,
                    };
                    let Some((signature, new_state)) =
                        self.signature(reused, vote.height, vote.round, key.1, &bytes)?
                    else {
                        continue;
                    };
                    let signed = SignedVote { vote, signature };
                    self.votes
                        .entry((
                            signed.vote.round,
                            signed.vote.vote_type,
                            signed.vote.validator.clone(),
                        ))
                        .or_default()
                        .push(signed.clone());
                    self.send_own(
                        key,
                        Message::Vote(signed.clone()),
                        WalEntry::OwnVote(signed),
                        new_state,
                        out,
                    )?;
                }
                Output::ScheduleTimeout {
                    timeout,
                    duration_ms,
                } => out.push(EngineOutput::ScheduleTimeout {
                    timeout,
                    duration_ms,
                }),
                Output::RequestValue { height, round } => {
                    out.push(EngineOutput::RequestValue { height, round })
                }
                Output::Decide {
                    height,
                    round,
                    value,
                    precommits,
                } => self.decide(height, round, value, precommits, out),
                // The signed layer reports equivocation with signatures.
                Output::Equivocation { .. } => {}
            }
        }
        Ok(())
    }

    /// The signature for our message at (`height`, `round`, `step`):
    /// `reused` if the WAL already holds it; else checked by the guard. A
    /// new signature is returned with the state the guard must commit after
    /// the WAL has recorded the message.
    fn signature(
        &mut self,
        reused: Option<C::Signature>,
        height: Height,
        round: Round,
        step: SignStep,
        bytes: &[u8],
    ) -> Result<Option<Signed<C>>, EngineError> {
        if let Some(signature) = reused {
            // Recorded in the WAL before a crash: bring the guard up to it
            // if its save was lost.
            let catch_up = match self.guard.prepare(height, round, step, bytes) {
                Ok(Prepared::New(mut state)) => {
                    state.signature = signature.clone();
                    Some(state)
                }
                _ => None,
            };
            return Ok(Some((signature, catch_up)));
        }
        match self.guard.prepare(height, round, step, bytes) {
            Ok(Prepared::Existing(signature)) => Ok(Some((signature, None))),
            Ok(Prepared::New(state)) => Ok(Some((state.signature.clone(), Some(state)))),
            Err(e) if e.is_refusal() => {
                self.refused_signatures += 1;
                Ok(None)
            }
            Err(SignError::Store(e)) => Err(e.into()),
            Err(_) => unreachable!("refusals handled above"),
        }
    }

    /// Persist-before-send: the WAL records the signed message and is
    /// synced (with everything the core processed before it), then the
    /// guard durably records the new sign state, then the message may
    /// leave. A crash between the two leaves the message in the WAL, where
    /// recovery finds it and the core re-derives it; a crash before the
    /// sync leaves no trace of it anywhere.
    fn send_own(
        &mut self,
        key: (Round, SignStep),
        message: Message<C>,
        entry: WalEntry<C>,
        new_state: Option<SignState<C>>,
        out: &mut Vec<EngineOutput<C>>,
    ) -> Result<(), EngineError> {
        // New messages are recorded even while replaying: they were never
        // recorded (a crash took them), and the guard may commit them next.
        if !self.own.contains_key(&key) {
            self.wal.append(&entry)?;
            self.wal.sync()?;
        }
        if let Some(state) = new_state {
            self.guard.commit(state)?;
        }
        self.own.insert(key, message.clone());
        out.push(EngineOutput::Broadcast(message));
        Ok(())
    }

    fn decide(
        &mut self,
        height: Height,
        round: Round,
        value: C::Value,
        precommits: Vec<C::Address>,
        out: &mut Vec<EngineOutput<C>>,
    ) {
        let value_id = C::value_id(&value);
        let signatures: Vec<(C::Address, C::Signature)> = precommits
            .into_iter()
            .filter_map(|address| {
                let votes = self
                    .votes
                    .get(&(round, VoteType::Precommit, address.clone()))?;
                let vote = votes
                    .iter()
                    .find(|v| v.vote.value.as_ref() == Some(&value_id))?;
                Some((address, vote.signature.clone()))
            })
            .collect();
        let certificate = CommitCertificate {
            height,
            round,
            value_id,
            signatures,
        };
        // Our own precommit may be missing if the guard refused it after a
        // crash; then wait for a commit from a peer instead.
        if certificate
            .verify(&self.chain_id, height, self.core.validators())
            .is_ok()
        {
            self.decided = true;
            out.push(EngineOutput::Decided { value, certificate });
        }
    }
}

fn proposal_hash<C: Context>(signed: &SignedProposal<C>) -> [u8; 32] {
    *blake3::hash(&codec::encode(signed)).as_bytes()
}

fn input_height<C: Context>(input: &EngineInput<C>) -> Option<Height> {
    match input {
        EngineInput::Vote(v) => Some(v.vote.height),
        EngineInput::Proposal(proposal) => Some(proposal.proposal.height),
        EngineInput::ProposalVerdict { proposal, .. } => Some(proposal.proposal.height),
        EngineInput::Commit { certificate, .. } => Some(certificate.height),
        _ => None,
    }
}
