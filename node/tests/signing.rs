//! Sign bytes (golden vectors), signatures, commit certificates,
//! equivocation evidence, and the sign-state guard across restarts.

use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::Keypair;
use symbiont_node::block::BlockDraft;
use symbiont_node::consensus::ed25519::{Ed25519Context, KeypairSigner};
use symbiont_node::consensus::signed::{
    CertificateError, CommitCertificate, DuplicateVoteEvidence, EvidenceError,
    MAX_EVIDENCE_AGE_HEIGHTS, SignedVote, proposal_id_sign_bytes, proposal_sign_bytes,
    vote_sign_bytes,
};
use symbiont_node::consensus::signer::{FileStore, SignError, SignGuard, SignStateStore, SignStep};
use symbiont_node::consensus::{Proposal, ValidatorSet, Vote, VoteType};

type C = Ed25519Context;
const CHAIN: &str = "symbiont-test";

fn key(i: u8) -> Keypair {
    Keypair::from_seed([i; 32])
}

fn set(n: u8) -> ValidatorSet<C> {
    ValidatorSet::new((1..=n).map(|i| (key(i).public(), 1))).unwrap()
}

fn precommit(i: u8, value: Hash) -> Vote<C> {
    Vote {
        height: 7,
        round: 2,
        vote_type: VoteType::Precommit,
        value: Some(value),
        validator: key(i).public(),
    }
}

fn signed(i: u8, vote: Vote<C>) -> SignedVote<C> {
    let signature = key(i).sign(&vote_sign_bytes(CHAIN, &vote));
    SignedVote { vote, signature }
}

#[test]
fn vote_sign_bytes_are_pinned() {
    let vote = precommit(1, Hash([0xab; 32]));
    let bytes = vote_sign_bytes::<C>(CHAIN, &vote);
    assert_eq!(hex(&bytes), GOLDEN_VOTE);
    let nil = Vote {
        value: None,
        ..vote
    };
    assert_eq!(hex(&vote_sign_bytes::<C>(CHAIN, &nil)), GOLDEN_NIL_VOTE);
}

#[test]
fn proposal_sign_bytes_are_pinned() {
    // Signed over the value's id (the block hash), not the block.
    let bytes =
        proposal_id_sign_bytes::<C>(CHAIN, 7, 3, &Hash([0xcd; 32]), Some(1), &key(2).public());
    assert_eq!(hex(&bytes), GOLDEN_PROPOSAL);
    let block = BlockDraft {
        chain_id: CHAIN.into(),
        height: 7,
        time_ms: 1,
        previous_hash: Hash::ZERO,
        proposer: key(2).public(),
        txs: vec![],
        evidence: vec![],
        last_commit: None,
    }
    .seal(Hash::ZERO);
    let proposal: Proposal<C> = Proposal {
        height: 7,
        round: 3,
        value: block.clone(),
        valid_round: Some(1),
        proposer: key(2).public(),
    };
    assert_eq!(
        proposal_sign_bytes::<C>(CHAIN, &proposal),
        proposal_id_sign_bytes::<C>(CHAIN, 7, 3, &block.hash(), Some(1), &key(2).public())
    );
}

#[test]
fn sign_bytes_differ_by_domain_and_chain() {
    let vote = precommit(1, Hash([0xab; 32]));
    assert_ne!(
        vote_sign_bytes::<C>(CHAIN, &vote),
        vote_sign_bytes::<C>("other-chain", &vote)
    );
    let vote_bytes = vote_sign_bytes::<C>(CHAIN, &vote);
    assert!(vote_bytes.windows(16).any(|w| w == b"symbiont/vote/v1"));
    let signed_vote = signed(1, vote.clone());
    assert!(signed_vote.verify(CHAIN));
    assert!(
        !signed_vote.verify("other-chain"),
        "a vote cannot be replayed on another chain"
    );
}

fn certificate(signers: &[u8], value: Hash) -> CommitCertificate<C> {
    let mut signatures: Vec<_> = signers
        .iter()
        .map(|i| (key(*i).public(), signed(*i, precommit(*i, value)).signature))
        .collect();
    signatures.sort_by_key(|a| a.0);
    CommitCertificate {
        height: 7,
        round: 2,
        value_id: value,
        signatures,
    }
}

#[test]
fn certificate_verifies_with_quorum_only() {
    let value = Hash([1; 32]);
    let validators = set(4);
    assert_eq!(
        certificate(&[1, 2, 3], value).verify(CHAIN, 7, &validators),
        Ok(())
    );
    assert_eq!(
        certificate(&[1, 2], value).verify(CHAIN, 7, &validators),
        Err(CertificateError::NoQuorum { power: 2, total: 4 })
    );
    assert!(matches!(
        certificate(&[1, 2, 3], value).verify(CHAIN, 8, &validators),
        Err(CertificateError::WrongHeight { .. })
    ));
    assert_eq!(
        certificate(&[1, 2, 5], value).verify(CHAIN, 7, &validators),
        Err(CertificateError::UnknownSigner)
    );
    let mut forged = certificate(&[1, 2, 3], value);
    forged.value_id = Hash([2; 32]);
    assert_eq!(
        forged.verify(CHAIN, 7, &validators),
        Err(CertificateError::BadSignature)
    );
    let mut duplicated = certificate(&[1, 2], value);
    duplicated.signatures.push(duplicated.signatures[1]);
    assert_eq!(
        duplicated.verify(CHAIN, 7, &validators),
        Err(CertificateError::NotSorted)
    );
}

#[test]
fn evidence_verifies_alone_and_is_canonical() {
    let validators = set(4);
    let a = signed(3, precommit(3, Hash([1; 32])));
    let b = signed(3, precommit(3, Hash([2; 32])));
    let evidence = DuplicateVoteEvidence::new(a.clone(), b.clone());
    assert_eq!(evidence.verify(CHAIN, &validators, 7), Ok(()));
    assert_eq!(evidence, DuplicateVoteEvidence::new(b.clone(), a.clone()));
    assert_eq!(
        DuplicateVoteEvidence::new(a.clone(), a.clone()).verify(CHAIN, &validators, 7),
        Err(EvidenceError::SameValue)
    );
    let other = signed(2, precommit(2, Hash([2; 32])));
    assert_eq!(
        DuplicateVoteEvidence::new(a.clone(), other).verify(CHAIN, &validators, 7),
        Err(EvidenceError::NotSameSlot)
    );
    let mut forged = b.clone();
    forged.signature = a.signature;
    assert_eq!(
        DuplicateVoteEvidence::new(a.clone(), forged).verify(CHAIN, &validators, 7),
        Err(EvidenceError::BadSignature)
    );
    // One equivocation, one encoding: the other order is refused.
    let swapped = DuplicateVoteEvidence {
        first: evidence.second.clone(),
        second: evidence.first.clone(),
    };
    assert_eq!(
        swapped.verify(CHAIN, &validators, 7),
        Err(EvidenceError::NotCanonical)
    );
    // Bounded age: from its own height up to MAX_EVIDENCE_AGE_HEIGHTS later.
    let oldest_ok = 7 + MAX_EVIDENCE_AGE_HEIGHTS;
    assert_eq!(evidence.verify(CHAIN, &validators, oldest_ok), Ok(()));
    assert!(matches!(
        evidence.verify(CHAIN, &validators, oldest_ok + 1),
        Err(EvidenceError::OutOfRange { evidence: 7, .. })
    ));
    assert!(matches!(
        evidence.verify(CHAIN, &validators, 6),
        Err(EvidenceError::OutOfRange { evidence: 7, .. })
    ));
}

fn guard(path: &std::path::Path) -> SignGuard<C> {
    SignGuard::open(
        Box::new(KeypairSigner(key(1))),
        Box::new(FileStore::new(path)),
    )
    .unwrap()
}

#[test]
fn guard_never_signs_conflicting_messages_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sign-state");
    let a = vote_sign_bytes::<C>(CHAIN, &precommit(1, Hash([1; 32])));
    let b = vote_sign_bytes::<C>(CHAIN, &precommit(1, Hash([2; 32])));
    let first = guard(&path).sign(7, 2, SignStep::Precommit, &a).unwrap();
    // Restart: the same bytes give the same signature, other bytes nothing.
    let mut restarted = guard(&path);
    assert_eq!(
        restarted.sign(7, 2, SignStep::Precommit, &a).unwrap(),
        first
    );
    assert!(matches!(
        restarted.sign(7, 2, SignStep::Precommit, &b),
        Err(SignError::Conflict { .. })
    ));
    // Anything earlier is refused; later is fine.
    assert!(matches!(
        restarted.sign(7, 2, SignStep::Prevote, &b),
        Err(SignError::Regression { .. })
    ));
    assert!(matches!(
        restarted.sign(6, 9, SignStep::Precommit, &b),
        Err(SignError::Regression { .. })
    ));
    assert!(restarted.sign(7, 3, SignStep::Proposal, &b).is_ok());
    assert_eq!(
        guard(&path).last().map(|s| (s.height, s.round, s.step)),
        Some((7, 3, SignStep::Proposal))
    );
}

#[test]
fn file_store_survives_a_torn_temporary_file_and_detects_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sign-state");
    let a = vote_sign_bytes::<C>(CHAIN, &precommit(1, Hash([1; 32])));
    guard(&path).sign(7, 2, SignStep::Precommit, &a).unwrap();
    // A crash while writing the next state leaves a partial temporary file:
    // the committed state is untouched.
    std::fs::write(dir.path().join("sign-state.tmp"), b"partial").unwrap();
    assert_eq!(guard(&path).last().map(|s| s.round), Some(2));
    // A flipped byte in the state file is detected, not trusted.
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let loaded: Result<_, _> = SignStateStore::<C>::load(&mut FileStore::new(&path));
    assert!(loaded.is_err());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `len "symbiont/vote/v1"`, `len "symbiont-test"`, height u64, round u32,
/// type u32 (1 = precommit), option tag, value hash, validator key.
const GOLDEN_VOTE: &str = concat!(
    "100000000000000073796d62696f6e742f766f74652f76310d00000000000000",
    "73796d62696f6e742d746573740700000000000000020000000100000001abab",
    "abababababababababababababababababababababababababababababab8a88",
    "e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
);
const GOLDEN_NIL_VOTE: &str = concat!(
    "100000000000000073796d62696f6e742f766f74652f76310d00000000000000",
    "73796d62696f6e742d7465737407000000000000000200000001000000008a88",
    "e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
);
/// Domain, chain, height, round, value hash, valid round Some(1), proposer.
const GOLDEN_PROPOSAL: &str = concat!(
    "140000000000000073796d62696f6e742f70726f706f73616c2f76310d000000",
    "0000000073796d62696f6e742d74657374070000000000000003000000cdcdcd",
    "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd010100",
    "00008139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9",
    "b394",
);
