//! The vote keeper: counts voting power per (round, vote type, value) for one
//! height, rejects duplicates, conflicting votes and votes from
//! non-validators, and remembers which once-only thresholds already fired.

use std::collections::{BTreeMap, BTreeSet};

use super::types::{Context, Height, Power, Round, ValidatorSet, Vote, VoteType};

/// Votes for rounds further than this beyond the current round are dropped,
/// so a peer cannot make the keeper grow without bound. Gossip brings them
/// again once the core is closer.
pub const MAX_ROUND_LOOKAHEAD: Round = 64;

/// Different votes counted per validator per (round, type), not counting
/// votes for nil or for a value proposed at this height (those are always
/// counted; they are bounded by the proposals kept). An equivocating
/// validator's votes count for each value it voted for: the paper counts
/// messages, and correct validators relay what they received, so refusing
/// a second vote would cost liveness; safety is unaffected, since two
/// quorums still share a correct validator.
pub const MAX_VOTES_PER_SLOT: usize = 2;

/// Why a vote was not counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoteError {
    WrongHeight,
    NotValidator,
    /// Same vote seen before: harmless, not counted twice.
    Duplicate,
    /// More different votes by one validator in one slot than are counted.
    TooManyConflicting,
    TooFarAhead,
}

/// The once-only rules of the algorithm ("for the first time" in the paper).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OnceRule {
    /// L34: schedule the prevote timeout.
    PrevoteTimeout,
    /// L36: lock / record the valid value.
    Lock,
    /// L47: schedule the precommit timeout.
    PrecommitTimeout,
}

#[derive(Clone, Debug)]
struct Tally<C: Context> {
    by_validator: BTreeMap<C::Address, Vec<Option<C::ValueId>>>,
    by_value: BTreeMap<Option<C::ValueId>, Power>,
    total: Power,
}

impl<C: Context> Default for Tally<C> {
    fn default() -> Self {
        Self {
            by_validator: BTreeMap::new(),
            by_value: BTreeMap::new(),
            total: 0,
        }
    }
}

#[derive(Clone, Debug)]
struct RoundVotes<C: Context> {
    prevotes: Tally<C>,
    precommits: Tally<C>,
    /// Distinct validators with any vote in this round, for L55.
    voters: BTreeMap<C::Address, Power>,
    voters_power: Power,
}

impl<C: Context> Default for RoundVotes<C> {
    fn default() -> Self {
        Self {
            prevotes: Tally::default(),
            precommits: Tally::default(),
            voters: BTreeMap::new(),
            voters_power: 0,
        }
    }
}

impl<C: Context> RoundVotes<C> {
    fn tally(&self, vote_type: VoteType) -> &Tally<C> {
        match vote_type {
            VoteType::Prevote => &self.prevotes,
            VoteType::Precommit => &self.precommits,
        }
    }
}

/// Counts the votes of one height.
#[derive(Clone, Debug)]
pub struct VoteKeeper<C: Context> {
    height: Height,
    validators: ValidatorSet<C>,
    rounds: BTreeMap<Round, RoundVotes<C>>,
    fired: BTreeSet<(Round, OnceRule)>,
}

impl<C: Context> VoteKeeper<C> {
    pub fn new(height: Height, validators: ValidatorSet<C>) -> Self {
        Self {
            height,
            validators,
            rounds: BTreeMap::new(),
            fired: BTreeSet::new(),
        }
    }

    pub fn height(&self) -> Height {
        self.height
    }

    pub fn validators(&self) -> &ValidatorSet<C> {
        &self.validators
    }

    /// Counts `vote`. `current_round` bounds how far ahead votes are kept.
    /// Returns the validator's earlier vote in this slot if this one
    /// conflicts with it (equivocation; both are counted, each for its value).
    /// `relevant`: the vote is for nil or for a proposed value, and is
    /// counted even past `MAX_VOTES_PER_SLOT`.
    pub fn apply(
        &mut self,
        vote: Vote<C>,
        current_round: Round,
        relevant: bool,
    ) -> Result<Option<Vote<C>>, VoteError> {
        if vote.height != self.height {
            return Err(VoteError::WrongHeight);
        }
        let power = self
            .validators
            .power_of(&vote.validator)
            .ok_or(VoteError::NotValidator)?;
        if vote.round > current_round.saturating_add(MAX_ROUND_LOOKAHEAD) {
            return Err(VoteError::TooFarAhead);
        }
        let total_power = self.validators.total_power();
        let round_votes = self.rounds.entry(vote.round).or_default();
        let tally = match vote.vote_type {
            VoteType::Prevote => &mut round_votes.prevotes,
            VoteType::Precommit => &mut round_votes.precommits,
        };
        let values = tally
            .by_validator
            .entry(vote.validator.clone())
            .or_default();
        if values.contains(&vote.value) {
            return Err(VoteError::Duplicate);
        }
        if values.len() >= MAX_VOTES_PER_SLOT && !relevant {
            return Err(VoteError::TooManyConflicting);
        }
        let first = values.first().map(|value| Vote {
            value: value.clone(),
            ..vote.clone()
        });
        values.push(vote.value.clone());
        // Each validator counts once per value and once in the total, so
        // these sums stay within the total power; checked anyway.
        let by_value = tally.by_value.entry(vote.value).or_insert(0);
        *by_value = by_value
            .checked_add(power)
            .expect("power sum bounded by total");
        assert!(*by_value <= total_power);
        if first.is_none() {
            tally.total = tally
                .total
                .checked_add(power)
                .expect("power sum bounded by total");
            assert!(tally.total <= total_power);
        }
        if round_votes
            .voters
            .insert(vote.validator.clone(), power)
            .is_none()
        {
            round_votes.voters_power = round_votes
                .voters_power
                .checked_add(power)
                .expect("power sum bounded by total");
        }
        Ok(first)
    }

    /// Power of the votes of `vote_type` in `round` for `value` (nil: `None`).
    pub fn power_for(
        &self,
        round: Round,
        vote_type: VoteType,
        value: &Option<C::ValueId>,
    ) -> Power {
        self.rounds
            .get(&round)
            .and_then(|r| r.tally(vote_type).by_value.get(value).copied())
            .unwrap_or(0)
    }

    /// Power of all votes of `vote_type` in `round`, whatever their value.
    pub fn power_any(&self, round: Round, vote_type: VoteType) -> Power {
        self.rounds
            .get(&round)
            .map(|r| r.tally(vote_type).total)
            .unwrap_or(0)
    }

    /// 2f+1 votes of `vote_type` in `round` for `value`.
    pub fn has_quorum_for(
        &self,
        round: Round,
        vote_type: VoteType,
        value: &Option<C::ValueId>,
    ) -> bool {
        self.validators
            .is_quorum(self.power_for(round, vote_type, value))
    }

    /// 2f+1 votes of `vote_type` in `round` (any values).
    pub fn has_quorum_any(&self, round: Round, vote_type: VoteType) -> bool {
        self.validators.is_quorum(self.power_any(round, vote_type))
    }

    /// The value (not nil) with 2f+1 votes of `vote_type` in `round`, if any.
    pub fn quorum_value(&self, round: Round, vote_type: VoteType) -> Option<C::ValueId> {
        let tally = self.rounds.get(&round)?.tally(vote_type);
        tally
            .by_value
            .iter()
            .find(|(value, power)| value.is_some() && self.validators.is_quorum(**power))
            .and_then(|(value, _)| value.clone())
    }

    /// Rounds with 2f+1 precommits for one value, in increasing order.
    pub fn rounds_with_precommit_quorum(&self) -> Vec<(Round, C::ValueId)> {
        self.rounds
            .keys()
            .filter_map(|round| {
                self.quorum_value(*round, VoteType::Precommit)
                    .map(|value| (*round, value))
            })
            .collect()
    }

    /// The highest round above `round` in which validators with more than
    /// 1/3 of the power have voted (L55).
    pub fn highest_skip_round(&self, round: Round) -> Option<Round> {
        self.rounds
            .range(round.saturating_add(1)..)
            .rev()
            .find(|(_, votes)| self.validators.is_one_third(votes.voters_power))
            .map(|(r, _)| *r)
    }

    /// The validators that voted `value` with `vote_type` in `round`.
    pub fn voters_for(
        &self,
        round: Round,
        vote_type: VoteType,
        value: &Option<C::ValueId>,
    ) -> Vec<C::Address> {
        self.rounds
            .get(&round)
            .map(|r| {
                r.tally(vote_type)
                    .by_validator
                    .iter()
                    .filter(|(_, values)| values.contains(value))
                    .map(|(a, _)| a.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `validator` has a counted vote of `vote_type` in `round`
    /// (for any value). For status reports.
    pub fn has_voted(&self, round: Round, vote_type: VoteType, validator: &C::Address) -> bool {
        self.rounds
            .get(&round)
            .is_some_and(|r| r.tally(vote_type).by_validator.contains_key(validator))
    }

    /// Records that `rule` fired in `round`; true only the first time.
    pub fn fire_once(&mut self, round: Round, rule: OnceRule) -> bool {
        self.fired.insert((round, rule))
    }

    pub fn has_fired(&self, round: Round, rule: OnceRule) -> bool {
        self.fired.contains(&(round, rule))
    }
}
