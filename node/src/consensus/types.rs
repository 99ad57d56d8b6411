//! Types shared by every part of the consensus core: heights, rounds, votes,
//! proposals, timeouts and the weighted validator set.

use std::fmt::Debug;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
pub use symbiont_contracts::genesis::MAX_TOTAL_VOTING_POWER;

/// A block height. Heights start at 1.
pub type Height = u64;

/// A round within a height. Rounds start at 0; the paper's "-1" (no round)
/// is `None` wherever an `Option<Round>` appears.
pub type Round = u32;

/// Voting power of one validator.
pub type Power = u64;

/// The types a deployment of the core is instantiated with. The core itself
/// only uses `Address`, `Value` and `ValueId`; the signed layer (`engine`)
/// also uses `Signature` and `verify`.
///
/// A test can pick `Value = String` and decide between "red" and "blue".
pub trait Context: Clone + Debug + PartialEq + Eq + Send + Sync + 'static {
    /// Identifies a validator (a public key in the node).
    type Address: Clone + Ord + Hash + Debug + Serialize + DeserializeOwned + Send + Sync;
    /// What is decided (a block in the node). Opaque to the algorithm.
    type Value: Clone + Eq + Debug + Serialize + DeserializeOwned + Send + Sync;
    /// What votes carry: `id(v)` in the paper (a block hash in the node).
    type ValueId: Clone + Ord + Hash + Debug + Serialize + DeserializeOwned + Send + Sync;
    /// A signature by an `Address` over sign bytes.
    type Signature: Clone + Eq + Debug + Serialize + DeserializeOwned + Send + Sync;

    /// `id(v)`.
    fn value_id(value: &Self::Value) -> Self::ValueId;

    /// Checks `signature` by `address` over `message`.
    fn verify(address: &Self::Address, message: &[u8], signature: &Self::Signature) -> bool;
}

/// The two kinds of vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteType {
    Prevote,
    Precommit,
}

/// A vote, already verified (or built by this validator). `value: None` is nil.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Vote<C: Context> {
    pub height: Height,
    pub round: Round,
    pub vote_type: VoteType,
    pub value: Option<C::ValueId>,
    pub validator: C::Address,
}

/// A proposal, already verified. `valid_round: None` is the paper's -1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Proposal<C: Context> {
    pub height: Height,
    pub round: Round,
    pub value: C::Value,
    pub valid_round: Option<Round>,
    pub proposer: C::Address,
}

/// The steps of a round (the paper's `step_p`), plus `Decided` once the
/// height has a decision and the core waits for the next height.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    /// Constructed, round 0 not started yet.
    Unstarted,
    Propose,
    Prevote,
    Precommit,
    Decided,
}

/// The three timeouts of the algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimeoutKind {
    Propose,
    Prevote,
    Precommit,
}

/// A timeout is data: the core asks for one to be scheduled and the host
/// feeds it back when it elapses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timeout {
    pub height: Height,
    pub round: Round,
    pub kind: TimeoutKind,
}

/// Errors of the core. They are bugs in the caller or overflows; the core
/// never panics on peer input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    #[error("round number overflow")]
    RoundOverflow,
    #[error("height number overflow")]
    HeightOverflow,
    #[error("total voting power above the limit of {MAX_TOTAL_VOTING_POWER}")]
    PowerOverflow,
    #[error("validator set not sorted by address, or its total does not match its powers")]
    NonCanonicalValidatorSet,
    #[error("empty validator set or a validator with zero power")]
    InvalidValidatorSet,
    #[error("duplicate validator address in validator set")]
    DuplicateValidator,
}

/// One validator and its voting power.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Validator<C: Context> {
    pub address: C::Address,
    pub power: Power,
}

/// The validator set of a height, sorted by address.
///
/// Only `new` builds one: decoding (a WAL record, a block) goes through
/// the same checks, so no set exists with zero power, a duplicate or a
/// total above `MAX_TOTAL_VOTING_POWER`. The encoding is the list of
/// validators followed by the total, as the fields read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "", try_from = "UncheckedValidatorSet<C>")]
pub struct ValidatorSet<C: Context> {
    validators: Vec<Validator<C>>,
    total_power: Power,
}

/// The wire form of a `ValidatorSet`, before its checks.
#[derive(Deserialize)]
#[serde(bound = "")]
struct UncheckedValidatorSet<C: Context> {
    validators: Vec<Validator<C>>,
    total_power: Power,
}

impl<C: Context> TryFrom<UncheckedValidatorSet<C>> for ValidatorSet<C> {
    type Error = ConsensusError;

    fn try_from(unchecked: UncheckedValidatorSet<C>) -> Result<Self, ConsensusError> {
        let sorted = unchecked
            .validators
            .windows(2)
            .all(|w| w[0].address < w[1].address);
        let set = Self::new(
            unchecked
                .validators
                .into_iter()
                .map(|v| (v.address, v.power)),
        )?;
        if !sorted || set.total_power != unchecked.total_power {
            return Err(ConsensusError::NonCanonicalValidatorSet);
        }
        Ok(set)
    }
}

impl<C: Context> ValidatorSet<C> {
    /// Builds a set; rejects an empty set, zero power, duplicates and a
    /// total power above `MAX_TOTAL_VOTING_POWER` (the threshold tests
    /// compute `3 * power`).
    pub fn new(
        validators: impl IntoIterator<Item = (C::Address, Power)>,
    ) -> Result<Self, ConsensusError> {
        let mut validators: Vec<Validator<C>> = validators
            .into_iter()
            .map(|(address, power)| Validator { address, power })
            .collect();
        if validators.is_empty() || validators.iter().any(|v| v.power == 0) {
            return Err(ConsensusError::InvalidValidatorSet);
        }
        validators.sort_by(|a, b| a.address.cmp(&b.address));
        if validators.windows(2).any(|w| w[0].address == w[1].address) {
            return Err(ConsensusError::DuplicateValidator);
        }
        let mut total_power: Power = 0;
        for validator in &validators {
            total_power = total_power
                .checked_add(validator.power)
                .filter(|total| *total <= MAX_TOTAL_VOTING_POWER)
                .ok_or(ConsensusError::PowerOverflow)?;
        }
        Ok(Self {
            validators,
            total_power,
        })
    }

    pub fn validators(&self) -> &[Validator<C>] {
        &self.validators
    }

    pub fn len(&self) -> usize {
        self.validators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    pub fn total_power(&self) -> Power {
        self.total_power
    }

    /// Power of `address`, or `None` if it is not a validator.
    pub fn power_of(&self, address: &C::Address) -> Option<Power> {
        self.validators
            .binary_search_by(|v| v.address.cmp(address))
            .ok()
            .map(|i| self.validators[i].power)
    }

    pub fn contains(&self, address: &C::Address) -> bool {
        self.power_of(address).is_some()
    }

    /// More than 2/3 of the total power: the paper's 2f+1.
    pub fn is_quorum(&self, power: Power) -> bool {
        (power as u128) * 3 > (self.total_power as u128) * 2
    }

    /// More than 1/3 of the total power: the paper's f+1.
    pub fn is_one_third(&self, power: Power) -> bool {
        (power as u128) * 3 > self.total_power as u128
    }
}
