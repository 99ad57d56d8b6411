//! Signed messages, their sign bytes, commit certificates and equivocation
//! evidence. Every signature in consensus is over bytes built here, so the
//! domain tags and layouts live in one place (pinned by golden vectors).

use serde::{Deserialize, Serialize};
use symbiont_contracts::codec;

use super::types::{Context, Height, Power, Proposal, Round, ValidatorSet, Vote, VoteType};

/// Domain tag of vote signatures (transactions use "symbiont/tx/v1").
pub const VOTE_DOMAIN: &str = "symbiont/vote/v1";
/// Domain tag of proposal signatures.
pub const PROPOSAL_DOMAIN: &str = "symbiont/proposal/v1";

/// `encode((VOTE_DOMAIN, chain_id, vote))`.
pub fn vote_sign_bytes<C: Context>(chain_id: &str, vote: &Vote<C>) -> Vec<u8> {
    codec::encode(&(VOTE_DOMAIN, chain_id, vote))
}

/// `encode((PROPOSAL_DOMAIN, chain_id, (height, round, value_id,
/// valid_round, proposer)))`: a proposal is signed over its value's id
/// (the block hash), not the whole value.
pub fn proposal_sign_bytes<C: Context>(chain_id: &str, proposal: &Proposal<C>) -> Vec<u8> {
    proposal_id_sign_bytes::<C>(
        chain_id,
        proposal.height,
        proposal.round,
        &C::value_id(&proposal.value),
        proposal.valid_round,
        &proposal.proposer,
    )
}

/// The sign bytes of a proposal from its parts.
pub fn proposal_id_sign_bytes<C: Context>(
    chain_id: &str,
    height: Height,
    round: Round,
    value_id: &C::ValueId,
    valid_round: Option<Round>,
    proposer: &C::Address,
) -> Vec<u8> {
    codec::encode(&(
        PROPOSAL_DOMAIN,
        chain_id,
        (height, round, value_id, valid_round, proposer),
    ))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SignedVote<C: Context> {
    pub vote: Vote<C>,
    pub signature: C::Signature,
}

impl<C: Context> SignedVote<C> {
    pub fn verify(&self, chain_id: &str) -> bool {
        C::verify(
            &self.vote.validator,
            &vote_sign_bytes(chain_id, &self.vote),
            &self.signature,
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SignedProposal<C: Context> {
    pub proposal: Proposal<C>,
    pub signature: C::Signature,
}

impl<C: Context> SignedProposal<C> {
    pub fn verify(&self, chain_id: &str) -> bool {
        C::verify(
            &self.proposal.proposer,
            &proposal_sign_bytes(chain_id, &self.proposal),
            &self.signature,
        )
    }
}

/// Signatures of more than 2/3 of the voting power on precommits for
/// `value_id` at `height` and `round`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct CommitCertificate<C: Context> {
    pub height: Height,
    pub round: Round,
    pub value_id: C::ValueId,
    /// Sorted by address, no duplicates.
    pub signatures: Vec<(C::Address, C::Signature)>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("certificate is for height {found}, expected {expected}")]
    WrongHeight { expected: Height, found: Height },
    #[error("signers not sorted or duplicated")]
    NotSorted,
    #[error("signer is not a validator")]
    UnknownSigner,
    #[error("bad signature")]
    BadSignature,
    #[error("signers hold {power} of {total} power, not more than 2/3")]
    NoQuorum { power: Power, total: Power },
}

impl<C: Context> CommitCertificate<C> {
    /// The precommit a signer signed.
    pub fn vote_of(&self, validator: &C::Address) -> Vote<C> {
        Vote {
            height: self.height,
            round: self.round,
            vote_type: VoteType::Precommit,
            value: Some(self.value_id.clone()),
            validator: validator.clone(),
        }
    }

    /// Checks every signature and the power; anyone with the validator set
    /// of `height` can do it.
    pub fn verify(
        &self,
        chain_id: &str,
        height: Height,
        validators: &ValidatorSet<C>,
    ) -> Result<(), CertificateError> {
        self.verify_with(height, validators, |_, address, signature| {
            self.signature_valid(chain_id, address, signature)
        })
    }

    /// Whether `signature` is `address`'s precommit of this certificate's
    /// value (verified strictly).
    pub fn signature_valid(
        &self,
        chain_id: &str,
        address: &C::Address,
        signature: &C::Signature,
    ) -> bool {
        C::verify(
            address,
            &vote_sign_bytes(chain_id, &self.vote_of(address)),
            signature,
        )
    }

    /// `verify`, with `signature_ok(index, signer, signature)` deciding
    /// whether `signatures[index]` is the signer's valid precommit (the
    /// auditor verifies certificate signatures in its batches, ahead of the
    /// replay, and passes their verdicts). The checks, their order and
    /// errors are `verify`'s.
    pub fn verify_with(
        &self,
        height: Height,
        validators: &ValidatorSet<C>,
        mut signature_ok: impl FnMut(usize, &C::Address, &C::Signature) -> bool,
    ) -> Result<(), CertificateError> {
        if self.height != height {
            return Err(CertificateError::WrongHeight {
                expected: height,
                found: self.height,
            });
        }
        if self.signatures.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(CertificateError::NotSorted);
        }
        let mut power: Power = 0;
        for (index, (address, signature)) in self.signatures.iter().enumerate() {
            let validator_power = validators
                .power_of(address)
                .ok_or(CertificateError::UnknownSigner)?;
            if !signature_ok(index, address, signature) {
                return Err(CertificateError::BadSignature);
            }
            power = power.saturating_add(validator_power);
        }
        if !validators.is_quorum(power) {
            return Err(CertificateError::NoQuorum {
                power,
                total: validators.total_power(),
            });
        }
        Ok(())
    }

    pub fn signers(&self) -> Vec<C::Address> {
        self.signatures.iter().map(|(a, _)| a.clone()).collect()
    }
}

/// Evidence older than this many heights (below the height it is checked
/// at) is refused: a validator's misbehaviour is reported while it still
/// matters, and nobody keeps vote history without end.
pub const MAX_EVIDENCE_AGE_HEIGHTS: Height = 100_000;

/// Two conflicting signed votes from one validator at the same height,
/// round and type. Verifiable alone (with the validator set of its height).
///
/// Canonical: `first` is the vote whose canonical encoding is smaller
/// (bytewise), so one equivocation has exactly one encoding (and one hash);
/// `verify` refuses the other order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct DuplicateVoteEvidence<C: Context> {
    pub first: SignedVote<C>,
    pub second: SignedVote<C>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("the votes are not by one validator at one height, round and type")]
    NotSameSlot,
    #[error("the votes are for the same value")]
    SameValue,
    #[error("the validator is not in the set")]
    UnknownValidator,
    #[error("bad signature")]
    BadSignature,
    #[error("the votes are not in canonical order (the smaller encoding first)")]
    NotCanonical,
    #[error("evidence of height {evidence} is not between {oldest} and {current}")]
    OutOfRange {
        evidence: Height,
        oldest: Height,
        current: Height,
    },
}

impl<C: Context> DuplicateVoteEvidence<C> {
    /// Builds evidence with the two votes in a canonical order (by encoding),
    /// so two nodes that saw them in different orders build the same object.
    pub fn new(a: SignedVote<C>, b: SignedVote<C>) -> Self {
        if codec::encode(&a) <= codec::encode(&b) {
            Self {
                first: a,
                second: b,
            }
        } else {
            Self {
                first: b,
                second: a,
            }
        }
    }

    /// Checks the evidence at `current_height`: of a height no later than
    /// it and at most `MAX_EVIDENCE_AGE_HEIGHTS` below, canonical, two
    /// different votes of one slot, both signed by a validator of
    /// `validators` (the nodes and the audit pass the set of the block that
    /// carries it, as docs/export-format.md says).
    pub fn verify(
        &self,
        chain_id: &str,
        validators: &ValidatorSet<C>,
        current_height: Height,
    ) -> Result<(), EvidenceError> {
        let (a, b) = (&self.first.vote, &self.second.vote);
        let oldest = current_height.saturating_sub(MAX_EVIDENCE_AGE_HEIGHTS);
        if a.height > current_height || a.height < oldest {
            return Err(EvidenceError::OutOfRange {
                evidence: a.height,
                oldest,
                current: current_height,
            });
        }
        if a.validator != b.validator
            || a.height != b.height
            || a.round != b.round
            || a.vote_type != b.vote_type
        {
            return Err(EvidenceError::NotSameSlot);
        }
        if a.value == b.value {
            return Err(EvidenceError::SameValue);
        }
        if codec::encode(&self.first) >= codec::encode(&self.second) {
            return Err(EvidenceError::NotCanonical);
        }
        if !validators.contains(&a.validator) {
            return Err(EvidenceError::UnknownValidator);
        }
        if !self.first.verify(chain_id) || !self.second.verify(chain_id) {
            return Err(EvidenceError::BadSignature);
        }
        Ok(())
    }
}

/// What validators send each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Message<C: Context> {
    Proposal(SignedProposal<C>),
    Vote(SignedVote<C>),
    /// A decided value with its certificate, sent to a peer that is behind.
    Commit {
        value: C::Value,
        certificate: CommitCertificate<C>,
    },
}

impl<C: Context> Message<C> {
    pub fn height(&self) -> Height {
        match self {
            Message::Proposal(p) => p.proposal.height,
            Message::Vote(v) => v.vote.height,
            Message::Commit { certificate, .. } => certificate.height,
        }
    }
}
