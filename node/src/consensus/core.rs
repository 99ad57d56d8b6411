//! The Tendermint round state machine and its driver, sans I/O.
//!
//! The algorithm is the one of Buchman, Kwon and Milosevic, "The latest
//! gossip on BFT consensus" (2018); every rule names its line in the paper
//! (L11 StartRound, L22, L28, L34, L36, L44, L47, L49, L55, L57, L61, L65).
//!
//! `Core::handle` takes one input and returns the outputs in the order the
//! host must execute them. After an input is recorded, the driver evaluates
//! the "upon" rules against the state and the vote keeper until none fires,
//! so a rule whose conditions are met by several inputs fires whichever
//! input completes them. Once-only rules are kept in the keeper's set.
//!
//! No clock, socket, disk, randomness or thread: timeouts are outputs
//! (`ScheduleTimeout`) and inputs (`Timeout`), values come through
//! `RequestValue` / `ProposeValue`, and validity comes with the proposal.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::keeper::{MAX_ROUND_LOOKAHEAD, OnceRule, VoteKeeper};
use super::proposer::ProposerSelector;
use super::types::{
    ConsensusError, Context, Height, Proposal, Round, Step, Timeout, TimeoutKind, ValidatorSet,
    Vote, VoteType,
};

/// A proposer may send this many different proposals in one round before we
/// stop storing more (a Byzantine proposer could send any number).
pub const MAX_PROPOSALS_PER_ROUND: usize = 4;

/// Rounds whose proposer the core remembers (the lookahead window and then
/// some); beyond it the cache starts over.
const PROPOSER_CACHE_ROUNDS: usize = 2 * MAX_ROUND_LOOKAHEAD as usize;

/// Timeouts: `base + delta * (round + level)` milliseconds, where `level`
/// adapts to the rounds recent heights needed (see `Core::adapt`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub timeout_propose_ms: u64,
    pub timeout_propose_delta_ms: u64,
    pub timeout_prevote_ms: u64,
    pub timeout_prevote_delta_ms: u64,
    pub timeout_precommit_ms: u64,
    pub timeout_precommit_delta_ms: u64,
    /// Upper bound of the adaptive level (0 disables adaptation).
    pub max_timeout_level: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            timeout_propose_ms: 300,
            timeout_propose_delta_ms: 150,
            timeout_prevote_ms: 100,
            timeout_prevote_delta_ms: 50,
            timeout_precommit_ms: 100,
            timeout_precommit_delta_ms: 50,
            max_timeout_level: 8,
        }
    }
}

/// The application's verdict on a proposed value, evaluated when the
/// proposal is processed for its own height (the host can then check the
/// block against the state it builds on, and its time against the clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Validity {
    /// `valid(v)` is false: never prevoted, locked on or decided.
    Invalid,
    /// Valid, but its time is further from our clock than the allowed
    /// drift. Timeliness is a prevote rule only: we do not prevote it as a
    /// fresh proposal (L22), but it may be prevoted as a re-proposal with a
    /// polka (L28), locked on (L36) and decided on 2f+1 precommits (L49),
    /// like any valid value; otherwise a value others decided could never
    /// be decided here once the clock moved on.
    Untimely,
    /// Valid and timely.
    Valid,
}

impl Validity {
    /// `valid(v)` of the paper (timeliness aside).
    pub fn is_valid(self) -> bool {
        self != Validity::Invalid
    }
}

/// What the core is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<C: Context> {
    /// Start `height` at round 0 (L10/L11). `excluded_proposers` comes from
    /// the chain (`proposer::excluded_proposers`).
    StartHeight {
        height: Height,
        validators: ValidatorSet<C>,
        excluded_proposers: Vec<C::Address>,
    },
    /// A proposal whose signature was checked, with the application's
    /// verdict. The same proposal again with a better verdict replaces the
    /// first (a host that could not check it yet must not fix it invalid).
    Proposal {
        proposal: Proposal<C>,
        validity: Validity,
    },
    /// A vote whose signature was checked.
    Vote(Vote<C>),
    /// The application's answer to `Output::RequestValue` (`getValue()`).
    ProposeValue {
        height: Height,
        round: Round,
        value: C::Value,
    },
    /// A timeout scheduled earlier has elapsed.
    Timeout(Timeout),
    /// Validators with more than 1/3 of the power have voted in rounds of
    /// `round` or later (L55 generalised; seen by the signed layer, which
    /// also sees votes beyond the lookahead window): go to `round`.
    JumpToRound { height: Height, round: Round },
}

/// What the core asks the host to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<C: Context> {
    /// Sign and broadcast this proposal. The host records the signing state
    /// and flushes its WAL before the message leaves.
    Propose(Proposal<C>),
    /// Sign and broadcast this vote (same persistence rule).
    Vote(Vote<C>),
    /// Feed `Input::Timeout(timeout)` back after `duration_ms`.
    ScheduleTimeout { timeout: Timeout, duration_ms: u64 },
    /// Ask the application for a value; answer with `Input::ProposeValue`.
    RequestValue { height: Height, round: Round },
    /// `value` is decided at `height`, by 2f+1 precommits of `round`
    /// (`precommits` lists their validators: the commit certificate's
    /// signers). The host commits it and then sends `StartHeight`.
    Decide {
        height: Height,
        round: Round,
        value: C::Value,
        precommits: Vec<C::Address>,
    },
    /// Two different votes by one validator at the same height, round and
    /// type (both already verified). The signed layer turns it into evidence.
    Equivocation { first: Vote<C>, second: Vote<C> },
}

/// The consensus state of one validator (the paper's `h_p`, `round_p`,
/// `step_p`, `lockedValue_p`, `lockedRound_p`, `validValue_p`, `validRound_p`).
pub struct Core<C: Context> {
    params: Params,
    address: C::Address,
    selector: Arc<dyn ProposerSelector<C>>,
    validators: ValidatorSet<C>,
    excluded_proposers: Vec<C::Address>,
    height: Height,
    round: Round,
    step: Step,
    locked: Option<(Round, C::Value)>,
    valid: Option<(Round, C::Value)>,
    /// Proposals from the right proposer, per round, in arrival order.
    proposals: BTreeMap<Round, Vec<(Proposal<C>, Validity)>>,
    keeper: VoteKeeper<C>,
    decision: Option<(Round, C::Value)>,
    /// Whether we already proposed in the current round.
    proposed: bool,
    /// Adaptive part of the timeouts.
    timeout_level: u32,
    /// Proposers of this height by round (selection may cost up to a
    /// rotation period per call, and every proposal and round asks).
    /// Bounded by `PROPOSER_CACHE_ROUNDS`.
    proposer_cache: std::cell::RefCell<BTreeMap<Round, C::Address>>,
    /// Test-only broken rule: prevote for a proposal regardless of the lock.
    #[cfg(test)]
    pub(crate) ignore_lock: bool,
}

impl<C: Context> Core<C> {
    /// A validator (or an observer, if `address` is not in the set) at
    /// `height`. Nothing happens until `StartHeight` (or `start`).
    pub fn new(
        params: Params,
        validators: ValidatorSet<C>,
        address: C::Address,
        height: Height,
        selector: Arc<dyn ProposerSelector<C>>,
    ) -> Self {
        Self {
            params,
            address,
            selector,
            keeper: VoteKeeper::new(height, validators.clone()),
            validators,
            excluded_proposers: Vec::new(),
            height,
            round: 0,
            step: Step::Unstarted,
            locked: None,
            valid: None,
            proposals: BTreeMap::new(),
            decision: None,
            proposed: false,
            timeout_level: 0,
            proposer_cache: Default::default(),
            #[cfg(test)]
            ignore_lock: false,
        }
    }

    /// Starts the constructor's height with its validator set.
    pub fn start(&mut self) -> Result<Vec<Output<C>>, ConsensusError> {
        self.handle(Input::StartHeight {
            height: self.height,
            validators: self.validators.clone(),
            excluded_proposers: Vec::new(),
        })
    }

    pub fn height(&self) -> Height {
        self.height
    }
    pub fn round(&self) -> Round {
        self.round
    }
    pub fn step(&self) -> Step {
        self.step
    }
    pub fn address(&self) -> &C::Address {
        &self.address
    }
    pub fn validators(&self) -> &ValidatorSet<C> {
        &self.validators
    }
    pub fn locked(&self) -> Option<&(Round, C::Value)> {
        self.locked.as_ref()
    }
    pub fn valid(&self) -> Option<&(Round, C::Value)> {
        self.valid.as_ref()
    }
    pub fn decision(&self) -> Option<&(Round, C::Value)> {
        self.decision.as_ref()
    }
    pub fn keeper(&self) -> &VoteKeeper<C> {
        &self.keeper
    }
    pub fn excluded_proposers(&self) -> &[C::Address] {
        &self.excluded_proposers
    }

    /// The proposer of `round` at the current height (cached per height).
    pub fn proposer(&self, round: Round) -> C::Address {
        if let Some(address) = self.proposer_cache.borrow().get(&round) {
            return address.clone();
        }
        let address = self.selector.proposer(
            &self.validators,
            self.height,
            round,
            &self.excluded_proposers,
        );
        let mut cache = self.proposer_cache.borrow_mut();
        if cache.len() >= PROPOSER_CACHE_ROUNDS {
            cache.clear();
        }
        cache.insert(round, address.clone());
        address
    }

    /// Feeds one input; returns the outputs to execute in order.
    pub fn handle(&mut self, input: Input<C>) -> Result<Vec<Output<C>>, ConsensusError> {
        let mut out = Vec::new();
        match input {
            Input::StartHeight {
                height,
                validators,
                excluded_proposers,
            } => self.start_height(height, validators, excluded_proposers, &mut out)?,
            Input::Proposal { proposal, validity } => self.record_proposal(proposal, validity),
            Input::Vote(vote) => self.record_vote(vote, &mut out),
            Input::ProposeValue {
                height,
                round,
                value,
            } => self.on_value(height, round, value, &mut out),
            Input::Timeout(timeout) => self.on_timeout(timeout, &mut out)?,
            Input::JumpToRound { height, round } => {
                if height == self.height && round > self.round && self.is_active() {
                    self.start_round(round, &mut out)?;
                }
            }
        }
        self.drive(&mut out)?;
        Ok(out)
    }

    fn is_active(&self) -> bool {
        !matches!(self.step, Step::Unstarted | Step::Decided)
    }

    fn start_height(
        &mut self,
        height: Height,
        validators: ValidatorSet<C>,
        excluded_proposers: Vec<C::Address>,
        out: &mut Vec<Output<C>>,
    ) -> Result<(), ConsensusError> {
        // L10: reset the per-height state.
        self.height = height;
        self.keeper = VoteKeeper::new(height, validators.clone());
        self.validators = validators;
        self.excluded_proposers = excluded_proposers;
        self.proposer_cache.borrow_mut().clear();
        self.locked = None;
        self.valid = None;
        self.proposals.clear();
        self.decision = None;
        self.start_round(0, out)
    }

    /// L11 StartRound(round).
    fn start_round(
        &mut self,
        round: Round,
        out: &mut Vec<Output<C>>,
    ) -> Result<(), ConsensusError> {
        self.round = round;
        self.step = Step::Propose;
        self.proposed = false;
        if self.proposer(round) == self.address {
            // L14-L19: re-propose the valid value, or ask for a new one.
            if let Some((valid_round, value)) = self.valid.clone() {
                self.propose(value, Some(valid_round), out);
            } else {
                out.push(Output::RequestValue {
                    height: self.height,
                    round,
                });
            }
        }
        // L21. The proposer schedules it too, so a silent application
        // cannot stall it in the propose step.
        self.schedule(TimeoutKind::Propose, out);
        Ok(())
    }

    fn propose(&mut self, value: C::Value, valid_round: Option<Round>, out: &mut Vec<Output<C>>) {
        let proposal = Proposal {
            height: self.height,
            round: self.round,
            value,
            valid_round,
            proposer: self.address.clone(),
        };
        self.proposed = true;
        // Our own proposal is valid by construction.
        self.record_proposal(proposal.clone(), Validity::Valid);
        out.push(Output::Propose(proposal));
    }

    fn on_value(
        &mut self,
        height: Height,
        round: Round,
        value: C::Value,
        out: &mut Vec<Output<C>>,
    ) {
        if height != self.height
            || round != self.round
            || self.step != Step::Propose
            || self.proposed
            || self.proposer(round) != self.address
        {
            return;
        }
        self.propose(value, None, out);
    }

    fn record_proposal(&mut self, proposal: Proposal<C>, validity: Validity) {
        if proposal.height != self.height
            || proposal.round > self.round.saturating_add(MAX_ROUND_LOOKAHEAD)
            || proposal.valid_round.is_some_and(|vr| vr >= proposal.round)
            || proposal.proposer != self.proposer(proposal.round)
        {
            return;
        }
        let list = self.proposals.entry(proposal.round).or_default();
        if let Some((_, known)) = list.iter_mut().find(|(p, _)| *p == proposal) {
            // The verdict of a value at its height does not change, but a
            // host may have answered before it could check: a better
            // verdict replaces a worse one, never the other way round.
            *known = (*known).max(validity);
            return;
        }
        if list.len() >= MAX_PROPOSALS_PER_ROUND {
            return;
        }
        list.push((proposal, validity));
    }

    fn record_vote(&mut self, vote: Vote<C>, out: &mut Vec<Output<C>>) {
        let second = vote.clone();
        let relevant = self.is_relevant(&vote.value);
        if let Ok(Some(first)) = self.keeper.apply(vote, self.round, relevant) {
            out.push(Output::Equivocation { first, second });
        }
    }

    /// Nil or the value of a proposal kept at this height.
    pub fn is_relevant(&self, value: &Option<C::ValueId>) -> bool {
        match value {
            None => true,
            Some(id) => self
                .proposals
                .values()
                .flatten()
                .any(|(p, _)| C::value_id(&p.value) == *id),
        }
    }

    fn cast_vote(
        &mut self,
        vote_type: VoteType,
        value: Option<C::ValueId>,
        out: &mut Vec<Output<C>>,
    ) {
        let vote = Vote {
            height: self.height,
            round: self.round,
            vote_type,
            value,
            validator: self.address.clone(),
        };
        // Count our own vote (non-validators' votes are refused by the keeper
        // and are not sent either).
        if self.validators.contains(&self.address) {
            let _ = self.keeper.apply(vote.clone(), self.round, true);
            out.push(Output::Vote(vote));
        }
    }

    fn schedule(&mut self, kind: TimeoutKind, out: &mut Vec<Output<C>>) {
        let (base, delta) = match kind {
            TimeoutKind::Propose => (
                self.params.timeout_propose_ms,
                self.params.timeout_propose_delta_ms,
            ),
            TimeoutKind::Prevote => (
                self.params.timeout_prevote_ms,
                self.params.timeout_prevote_delta_ms,
            ),
            TimeoutKind::Precommit => (
                self.params.timeout_precommit_ms,
                self.params.timeout_precommit_delta_ms,
            ),
        };
        let steps = (self.round as u64).saturating_add(self.timeout_level as u64);
        let duration_ms = base.saturating_add(delta.saturating_mul(steps));
        out.push(Output::ScheduleTimeout {
            timeout: Timeout {
                height: self.height,
                round: self.round,
                kind,
            },
            duration_ms,
        });
    }

    /// Adaptive timeouts: a height that needed `round` rounds raises the
    /// level to that many extra deltas; each height decided in round 0
    /// lowers it by one. Timeouts stay short on a healthy network and
    /// lengthen only while the network is slow.
    fn adapt(&mut self, decided_round: Round) {
        self.timeout_level = if decided_round > self.timeout_level {
            decided_round.min(self.params.max_timeout_level)
        } else {
            self.timeout_level.saturating_sub(1)
        };
    }

    fn on_timeout(
        &mut self,
        timeout: Timeout,
        out: &mut Vec<Output<C>>,
    ) -> Result<(), ConsensusError> {
        if timeout.height != self.height || timeout.round != self.round || !self.is_active() {
            return Ok(());
        }
        match timeout.kind {
            // L57: OnTimeoutPropose.
            TimeoutKind::Propose if self.step == Step::Propose => {
                self.cast_vote(VoteType::Prevote, None, out);
                self.step = Step::Prevote;
            }
            // L61: OnTimeoutPrevote.
            TimeoutKind::Prevote if self.step == Step::Prevote => {
                self.cast_vote(VoteType::Precommit, None, out);
                self.step = Step::Precommit;
            }
            // L65: OnTimeoutPrecommit.
            TimeoutKind::Precommit => {
                let next = self
                    .round
                    .checked_add(1)
                    .ok_or(ConsensusError::RoundOverflow)?;
                self.start_round(next, out)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Evaluates the rules until none fires.
    fn drive(&mut self, out: &mut Vec<Output<C>>) -> Result<(), ConsensusError> {
        // Each iteration changes the step, the round, or a once-only set;
        // bound the loop anyway so a bug cannot spin forever.
        for _ in 0..1024 {
            if !self.is_active() {
                return Ok(());
            }
            let fired = self.rule_decide(out)
                || self.rule_skip_round(out)?
                || self.rule_prevote_fresh(out)
                || self.rule_prevote_locked(out)
                || self.rule_lock(out)
                || self.rule_precommit_nil(out)
                || self.rule_prevote_timeout(out)
                || self.rule_precommit_timeout(out);
            if !fired {
                return Ok(());
            }
        }
        panic!("consensus driver did not settle");
    }

    /// The first proposal of `round` whose value has id `value_id`.
    fn proposal_with(
        &self,
        round: Round,
        value_id: &C::ValueId,
    ) -> Option<&(Proposal<C>, Validity)> {
        self.proposals
            .get(&round)?
            .iter()
            .find(|(p, _)| C::value_id(&p.value) == *value_id)
    }

    /// L49: a proposal of any round with 2f+1 precommits for its value.
    fn rule_decide(&mut self, out: &mut Vec<Output<C>>) -> bool {
        for (round, value_id) in self.keeper.rounds_with_precommit_quorum() {
            let Some((proposal, validity)) = self.proposal_with(round, &value_id) else {
                continue;
            };
            // L49 asks valid(v) only: the drift rule is for prevoting.
            if !validity.is_valid() {
                continue;
            }
            let value = proposal.value.clone();
            let precommits = self
                .keeper
                .voters_for(round, VoteType::Precommit, &Some(value_id));
            self.decision = Some((round, value.clone()));
            self.step = Step::Decided;
            self.adapt(round);
            out.push(Output::Decide {
                height: self.height,
                round,
                value,
                precommits,
            });
            return true;
        }
        false
    }

    /// L55: votes of more than 1/3 of the power from a higher round.
    fn rule_skip_round(&mut self, out: &mut Vec<Output<C>>) -> Result<bool, ConsensusError> {
        match self.keeper.highest_skip_round(self.round) {
            Some(round) => {
                self.start_round(round, out)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// L22: a fresh proposal (valid round -1) in the propose step.
    fn rule_prevote_fresh(&mut self, out: &mut Vec<Output<C>>) -> bool {
        if self.step != Step::Propose {
            return false;
        }
        let Some((proposal, validity)) = self
            .proposals
            .get(&self.round)
            .and_then(|list| list.iter().find(|(p, _)| p.valid_round.is_none()))
            .cloned()
        else {
            return false;
        };
        let unlocked = self.locked.is_none()
            || self
                .locked
                .as_ref()
                .is_some_and(|(_, v)| *v == proposal.value)
            || self.lock_ignored();
        // A fresh value must also be timely.
        let vote = (validity == Validity::Valid && unlocked).then(|| C::value_id(&proposal.value));
        self.cast_vote(VoteType::Prevote, vote, out);
        self.step = Step::Prevote;
        true
    }

    /// L28: a proposal re-proposing the value of round `vr < round`, with
    /// 2f+1 prevotes for it in `vr`, in the propose step.
    fn rule_prevote_locked(&mut self, out: &mut Vec<Output<C>>) -> bool {
        if self.step != Step::Propose {
            return false;
        }
        let found = self.proposals.get(&self.round).and_then(|list| {
            list.iter()
                .find(|(p, _)| {
                    p.valid_round.is_some_and(|vr| {
                        vr < self.round
                            && self.keeper.has_quorum_for(
                                vr,
                                VoteType::Prevote,
                                &Some(C::value_id(&p.value)),
                            )
                    })
                })
                .cloned()
        });
        let Some((proposal, validity)) = found else {
            return false;
        };
        let valid_round = proposal.valid_round.expect("filtered above");
        let unlocked = match &self.locked {
            None => true,
            Some((locked_round, locked_value)) => {
                *locked_round <= valid_round || *locked_value == proposal.value
            }
        } || self.lock_ignored();
        // A re-proposal carries the time 2f+1 prevoted in `valid_round`:
        // it is not judged against our clock again.
        let vote = (validity.is_valid() && unlocked).then(|| C::value_id(&proposal.value));
        self.cast_vote(VoteType::Prevote, vote, out);
        self.step = Step::Prevote;
        true
    }

    /// L36: a valid proposal of this round with 2f+1 prevotes for it, in the
    /// prevote step or later, for the first time.
    fn rule_lock(&mut self, out: &mut Vec<Output<C>>) -> bool {
        if self.step < Step::Prevote || self.keeper.has_fired(self.round, OnceRule::Lock) {
            return false;
        }
        let Some(value_id) = self.keeper.quorum_value(self.round, VoteType::Prevote) else {
            return false;
        };
        let Some((proposal, validity)) = self.proposal_with(self.round, &value_id).cloned() else {
            return false;
        };
        if !validity.is_valid() {
            return false;
        }
        self.keeper.fire_once(self.round, OnceRule::Lock);
        if self.step == Step::Prevote {
            self.locked = Some((self.round, proposal.value.clone()));
            self.cast_vote(VoteType::Precommit, Some(value_id), out);
            self.step = Step::Precommit;
        }
        self.valid = Some((self.round, proposal.value));
        true
    }

    /// L44: 2f+1 prevotes for nil in the prevote step.
    fn rule_precommit_nil(&mut self, out: &mut Vec<Output<C>>) -> bool {
        if self.step != Step::Prevote
            || !self
                .keeper
                .has_quorum_for(self.round, VoteType::Prevote, &None)
        {
            return false;
        }
        self.cast_vote(VoteType::Precommit, None, out);
        self.step = Step::Precommit;
        true
    }

    /// L34: 2f+1 prevotes of any kind in the prevote step, for the first time.
    fn rule_prevote_timeout(&mut self, out: &mut Vec<Output<C>>) -> bool {
        if self.step != Step::Prevote
            || !self.keeper.has_quorum_any(self.round, VoteType::Prevote)
            || !self.keeper.fire_once(self.round, OnceRule::PrevoteTimeout)
        {
            return false;
        }
        self.schedule(TimeoutKind::Prevote, out);
        true
    }

    /// L47: 2f+1 precommits of any kind, for the first time.
    fn rule_precommit_timeout(&mut self, out: &mut Vec<Output<C>>) -> bool {
        if !self.keeper.has_quorum_any(self.round, VoteType::Precommit)
            || !self
                .keeper
                .fire_once(self.round, OnceRule::PrecommitTimeout)
        {
            return false;
        }
        self.schedule(TimeoutKind::Precommit, out);
        true
    }

    #[cfg(test)]
    pub(crate) fn force_round(&mut self, round: Round) {
        self.round = round;
    }

    #[cfg(test)]
    fn lock_ignored(&self) -> bool {
        self.ignore_lock
    }

    #[cfg(not(test))]
    fn lock_ignored(&self) -> bool {
        false
    }
}
