//! The golden vectors of docs/ledger-format.md for blocks and consensus
//! records (names starting `block.`, `vote.`, `proposal.`, `certificate.`,
//! `evidence.`, `validator_set.`), read from the document itself: each
//! must be what the node's types give, and what a hand-written encoder
//! following the document gives (`support::Bytes`, shared with the
//! contracts crate's tests); every such vector in the document must be
//! produced here.
//!
//! Run: `cargo test -p symbiont-node --test ledger_format`.

#[path = "../../contracts/tests/support/mod.rs"]
mod layout;

use std::collections::BTreeMap;

use layout::{Bytes, doc};
use symbiont_contracts::codec;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::{Keypair, PublicKey};
use symbiont_contracts::tx::{SignedTx, TxBody, TxKind};
use symbiont_node::block::{
    Block, BlockDraft, BlockHeader, Certificate, Evidence, evidence_root, last_commit_hash, tx_root,
};
use symbiont_node::consensus::ed25519::Ed25519Context;
use symbiont_node::consensus::signed::{
    DuplicateVoteEvidence, SignedVote, proposal_id_sign_bytes, vote_sign_bytes,
};
use symbiont_node::consensus::{ValidatorSet, Vote, VoteType};

const CHAIN: &str = "symbiont-test";
const PARENT: Hash = Hash([0x11; 32]);
const PARENT_TIME_MS: u64 = 1_800_000_000_000;

type Vectors = BTreeMap<String, Vec<u8>>;

fn key(i: u8) -> Keypair {
    Keypair::from_seed([i; 32])
}

fn put(vectors: &mut Vectors, name: &str, typed: Vec<u8>, hand: Bytes) {
    assert_eq!(
        hex::encode(&typed),
        hex::encode(&hand.0),
        "{name}: the node's types and the hand encoder differ"
    );
    assert!(vectors.insert(name.into(), typed).is_none(), "{name} twice");
}

fn precommit(height: u64, value: Option<Hash>, validator: PublicKey) -> Vote<Ed25519Context> {
    Vote {
        height,
        round: 0,
        vote_type: VoteType::Precommit,
        value,
        validator,
    }
}

fn sign_vote(vote: Vote<Ed25519Context>, keypair: &Keypair) -> SignedVote<Ed25519Context> {
    let signature = keypair.sign(&vote_sign_bytes(CHAIN, &vote));
    SignedVote { vote, signature }
}

/// Validators 1, 2 and 3 of 4 (power 1 each) precommit `value` at
/// height 1, round 0 (as in `tests/block.rs`).
fn certificate(value: Hash) -> Certificate {
    let mut signers: Vec<Keypair> = (1..=3).map(key).collect();
    signers.sort_by_key(|k| k.public());
    Certificate {
        height: 1,
        round: 0,
        value_id: value,
        signatures: signers
            .iter()
            .map(|k| {
                let vote = precommit(1, Some(value), k.public());
                (k.public(), k.sign(&vote_sign_bytes(CHAIN, &vote)))
            })
            .collect(),
    }
}

fn tx() -> SignedTx {
    SignedTx::sign(
        TxBody {
            chain_id: CHAIN.into(),
            nonce: 1,
            kind: TxKind::Withdraw {
                listing: Hash([3; 32]),
            },
        },
        &key(9),
    )
}

/// The block of `tests/block.rs`: height 2, one transaction, the
/// certificate of height 1, no evidence.
fn block() -> Block {
    BlockDraft {
        chain_id: CHAIN.into(),
        height: 2,
        time_ms: PARENT_TIME_MS + 1000,
        previous_hash: PARENT,
        proposer: key(2).public(),
        txs: vec![tx()],
        evidence: vec![],
        last_commit: Some(certificate(PARENT)),
    }
    .seal(Hash([0x22; 32]))
}

/// Validator 4 prevotes a block and nil in the same slot (height 1,
/// round 0).
fn evidence() -> Evidence {
    let prevote = |value| Vote {
        height: 1,
        round: 0,
        vote_type: VoteType::Prevote,
        value,
        validator: key(4).public(),
    };
    DuplicateVoteEvidence::new(
        sign_vote(prevote(Some(Hash([0xaa; 32]))), &key(4)),
        sign_vote(prevote(None), &key(4)),
    )
}

// --- the hand encoder ----------------------------------------------------------

mod hand {
    use super::*;

    pub fn vote(b: Bytes, v: &Vote<Ed25519Context>) -> Bytes {
        let b = b.u64(v.height).u32(v.round).variant(match v.vote_type {
            VoteType::Prevote => 0,
            VoteType::Precommit => 1,
        });
        let b = match &v.value {
            None => b.none(),
            Some(h) => b.some().raw(&h.0),
        };
        b.raw(&v.validator.0)
    }

    pub fn vote_sign_bytes(v: &Vote<Ed25519Context>) -> Bytes {
        vote(Bytes::default().str("symbiont/vote/v1").str(CHAIN), v)
    }

    pub fn signed_vote(b: Bytes, v: &SignedVote<Ed25519Context>) -> Bytes {
        vote(b, &v.vote).raw(&v.signature.0)
    }

    pub fn certificate(b: Bytes, c: &Certificate) -> Bytes {
        let b = b
            .u64(c.height)
            .u32(c.round)
            .raw(&c.value_id.0)
            .len(c.signatures.len());
        c.signatures
            .iter()
            .fold(b, |b, (k, s)| b.raw(&k.0).raw(&s.0))
    }

    pub fn evidence(b: Bytes, e: &Evidence) -> Bytes {
        signed_vote(signed_vote(b, &e.first), &e.second)
    }

    /// A signed transaction, as docs/ledger-format.md section 4 lays out
    /// the `Withdraw` kind.
    pub fn withdraw_tx(tx: &SignedTx) -> Bytes {
        let TxKind::Withdraw { listing } = &tx.body.kind else {
            panic!("a Withdraw")
        };
        Bytes::default()
            .str(&tx.body.chain_id)
            .u64(tx.body.nonce)
            .variant(9)
            .raw(&listing.0)
            .raw(&tx.signer.0)
            .raw(&tx.signature.0)
    }

    pub fn header(h: &BlockHeader) -> Bytes {
        Bytes::default()
            .str(&h.chain_id)
            .u64(h.height)
            .u64(h.time_ms)
            .raw(&h.previous_hash.0)
            .raw(&h.tx_root.0)
            .raw(&h.evidence_root.0)
            .raw(&h.last_commit_hash.0)
            .raw(&h.app_hash.0)
            .raw(&h.proposer.0)
    }
}

fn all_vectors() -> Vectors {
    let mut v = Vectors::new();

    // Votes.
    let vote = precommit(1, Some(PARENT), key(1).public());
    put(
        &mut v,
        "vote.precommit",
        codec::encode(&vote),
        hand::vote(Bytes::default(), &vote),
    );
    let nil = Vote::<Ed25519Context> {
        height: 5,
        round: 2,
        vote_type: VoteType::Prevote,
        value: None,
        validator: key(4).public(),
    };
    put(
        &mut v,
        "vote.prevote_nil",
        codec::encode(&nil),
        hand::vote(Bytes::default(), &nil),
    );
    put(
        &mut v,
        "vote.precommit.sign_bytes",
        vote_sign_bytes(CHAIN, &vote),
        hand::vote_sign_bytes(&vote),
    );
    let signed = sign_vote(vote.clone(), &key(1));
    assert!(signed.verify(CHAIN));
    let hand_signature = key(1).sign(&hand::vote_sign_bytes(&vote).0);
    put(
        &mut v,
        "vote.precommit.signed",
        codec::encode(&signed),
        hand::vote(Bytes::default(), &vote).raw(&hand_signature.0),
    );

    // A proposal of the block below in round 1, re-proposed from round 0.
    let block = block();
    let proposal = proposal_id_sign_bytes::<Ed25519Context>(
        CHAIN,
        2,
        1,
        &block.hash(),
        Some(0),
        &key(2).public(),
    );
    put(
        &mut v,
        "proposal.sign_bytes",
        proposal,
        Bytes::default()
            .str("symbiont/proposal/v1")
            .str(CHAIN)
            .u64(2)
            .u32(1)
            .raw(&block.hash().0)
            .some()
            .u32(0)
            .raw(&key(2).public().0),
    );

    // The certificate of height 1.
    let certificate = certificate(PARENT);
    put(
        &mut v,
        "certificate.bytes",
        codec::encode(&certificate),
        hand::certificate(Bytes::default(), &certificate),
    );
    put(
        &mut v,
        "certificate.last_commit_hash",
        last_commit_hash(&Some(certificate.clone())).0.to_vec(),
        Bytes::default().raw(&hand::certificate(Bytes::default().some(), &certificate).hash()),
    );

    // Evidence.
    let evidence = evidence();
    put(
        &mut v,
        "evidence.bytes",
        codec::encode(&evidence),
        hand::evidence(Bytes::default(), &evidence),
    );
    put(
        &mut v,
        "evidence.hash",
        codec::hash(&evidence).0.to_vec(),
        Bytes::default().raw(&hand::evidence(Bytes::default(), &evidence).hash()),
    );
    put(
        &mut v,
        "evidence.root",
        evidence_root(std::slice::from_ref(&evidence)).0.to_vec(),
        Bytes::default().raw(&hand::evidence(Bytes::default().len(1), &evidence).hash()),
    );

    // The validator set of the four validators.
    let validators =
        ValidatorSet::<Ed25519Context>::new((1..=4).map(|i| (key(i).public(), 1))).unwrap();
    let mut addresses: Vec<PublicKey> = (1..=4).map(|i| key(i).public()).collect();
    addresses.sort();
    put(
        &mut v,
        "validator_set.bytes",
        codec::encode(&validators),
        addresses
            .iter()
            .fold(Bytes::default().len(4), |b, a| b.raw(&a.0).u64(1))
            .u64(4),
    );

    // The block.
    let tx = tx();
    put(&mut v, "block.tx0", tx.to_bytes(), hand::withdraw_tx(&tx));
    let ids = Bytes::default().len(1).raw(&hand::withdraw_tx(&tx).hash());
    put(
        &mut v,
        "block.tx_root",
        tx_root(&block.txs).0.to_vec(),
        Bytes::default().raw(&ids.hash()),
    );
    put(
        &mut v,
        "block.evidence_root.empty",
        evidence_root(&[]).0.to_vec(),
        Bytes::default().raw(&Bytes::default().len(0).hash()),
    );
    let header = hand::header(&block.header);
    put(
        &mut v,
        "block.header",
        codec::encode(&block.header),
        header.clone(),
    );
    put(
        &mut v,
        "block.hash",
        block.hash().0.to_vec(),
        Bytes::default().raw(&header.hash()),
    );
    let whole = header
        .len(1)
        .raw(&hand::withdraw_tx(&tx).0)
        .len(0)
        .some()
        .raw(&hand::certificate(Bytes::default(), &certificate).0);
    put(&mut v, "block.bytes", block.encode(), whole);
    v
}

#[test]
fn document_vectors_are_what_the_node_and_the_hand_encoder_give() {
    doc::check_against_document(&all_vectors(), doc::is_node_vector);
}

#[test]
fn the_vector_records_are_valid_and_decode_back() {
    let validators =
        ValidatorSet::<Ed25519Context>::new((1..=4).map(|i| (key(i).public(), 1))).unwrap();
    let certificate = certificate(PARENT);
    assert_eq!(certificate.verify(CHAIN, 1, &validators), Ok(()));
    let evidence = evidence();
    assert_eq!(evidence.verify(CHAIN, &validators, 1), Ok(()));
    // The nil prevote encodes smaller (its Option tag is 00): it is first.
    assert_eq!(evidence.first.vote.value, None);
    let block = block();
    assert_eq!(codec::decode::<Block>(&block.encode()), Ok(block.clone()));
    assert_eq!(
        codec::decode::<Evidence>(&codec::encode(&evidence)),
        Ok(evidence)
    );
    assert_eq!(
        codec::decode::<ValidatorSet<Ed25519Context>>(&codec::encode(&validators)),
        Ok(validators)
    );
}
