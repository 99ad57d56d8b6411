//! The chain as a node knows it: proposals it builds are valid to another
//! node, decided blocks applied on two nodes give the same tips, app
//! hashes and exclusions; `valid(v)` refuses a wrong app hash, a wrong
//! proposer and a missing certificate, and judges the clock.

use std::num::NonZeroUsize;
use std::sync::Arc;

use symbiont_contracts::genesis::Genesis;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::Keypair;
use symbiont_contracts::tx::SignedTx;
use symbiont_node::block::{Block, Certificate};
use symbiont_node::chain::{Chain, InvalidBlock};
use symbiont_node::consensus::core::Validity;
use symbiont_node::consensus::ed25519::Ed25519Context;
use symbiont_node::consensus::proposer::{ProposerSelector, WeightedRoundRobin};
use symbiont_node::consensus::signed::vote_sign_bytes;
use symbiont_node::consensus::{Vote, VoteType};
use symbiont_node::verify::check_block_txs;

mod support;
use support::key;

const CHAIN: &str = "chain-test";
const GENESIS_TIME_MS: u64 = 1_800_000_000_000;

fn genesis() -> Genesis {
    support::four_validators(CHAIN, GENESIS_TIME_MS, 1000, 500, 250)
}

fn chain() -> Chain {
    Chain::from_genesis(&genesis(), Arc::new(WeightedRoundRobin)).unwrap()
}

fn checks(chain: &Chain, block: &Block) -> Vec<Result<(), symbiont_contracts::tx::TxError>> {
    check_block_txs(&block.txs, chain.chain_id(), |_| false, NonZeroUsize::MIN)
}

/// Validators of seeds 11, 12, 13 precommit `block` in `round`.
fn certificate(block: &Block, round: u32) -> Certificate {
    let mut signers: Vec<Keypair> = (11..=13).map(key).collect();
    signers.sort_by_key(|k| k.public());
    let signatures = signers
        .iter()
        .map(|k| {
            let vote: Vote<Ed25519Context> = Vote {
                height: block.header.height,
                round,
                vote_type: VoteType::Precommit,
                value: Some(block.hash()),
                validator: k.public(),
            };
            (k.public(), k.sign(&vote_sign_bytes(CHAIN, &vote)))
        })
        .collect();
    Certificate {
        height: block.header.height,
        round,
        value_id: block.hash(),
        signatures,
    }
}

fn tx(nonce: u64) -> SignedTx {
    support::authorize_operator(CHAIN, nonce, 40 + nonce as u8)
}

/// `proposer` proposes on `chain` at `time`; `other` judges it.
fn propose(
    chain: &Chain,
    proposer: u8,
    time: u64,
    txs: Vec<SignedTx>,
    last_commit: Option<Certificate>,
) -> (Block, symbiont_node::chain::Executed) {
    let checks: Vec<_> = txs.iter().map(|t| t.verify(CHAIN)).collect();
    chain
        .propose(
            key(proposer).public(),
            time,
            txs,
            &checks,
            vec![],
            last_commit,
        )
        .unwrap()
}

#[test]
fn two_nodes_agree_on_blocks_they_judge_and_commit() {
    let (mut alice, mut bob) = (chain(), chain());
    assert_eq!(alice.next_height(), 1);
    assert_eq!(alice.validators().len(), 4);
    let t1 = GENESIS_TIME_MS + 1000;
    let (block1, executed) = propose(&alice, 11, t1, vec![tx(1)], None);
    let judged = bob
        .validate(
            &block1,
            Some(&key(11).public()),
            t1 + 200,
            &checks(&bob, &block1),
        )
        .unwrap();
    assert_eq!(judged.validity, Validity::Valid);
    assert_eq!(judged.outcome, executed.outcome);
    assert!(judged.outcome.results[0].1.is_ok());
    alice.commit(&block1, executed).unwrap();
    bob.commit(&block1, judged).unwrap();
    assert_eq!(alice.tip(), bob.tip());
    assert_eq!(alice.state().app_hash(), bob.state().app_hash());
    assert_eq!(alice.tip().hash, block1.hash());

    // Height 2 carries height 1's certificate, decided in round 1: the
    // proposer of height 1, round 0 missed its turn.
    let t2 = t1 + 1000;
    let (block2, executed) = propose(&alice, 12, t2, vec![tx(2)], Some(certificate(&block1, 1)));
    let judged = bob
        .validate(&block2, Some(&key(12).public()), t2, &checks(&bob, &block2))
        .unwrap();
    alice.commit(&block2, executed).unwrap();
    bob.commit(&block2, judged).unwrap();
    assert_eq!(alice.tip(), bob.tip());
    let missed = WeightedRoundRobin.proposer(alice.validators(), 1, 0, &[]);
    assert_eq!(alice.excluded_proposers(), vec![missed]);
    assert_eq!(bob.excluded_proposers(), vec![missed]);
}

#[test]
fn valid_v_refuses_what_does_not_match() {
    let (mut alice, bob) = (chain(), chain());
    let t1 = GENESIS_TIME_MS + 1000;
    let (block1, executed) = propose(&alice, 11, t1, vec![tx(1)], None);
    let proposer = key(11).public();
    // The clock: untimely beyond the drift, still executed.
    let late = bob
        .validate(&block1, Some(&proposer), t1 + 1001, &checks(&bob, &block1))
        .unwrap();
    assert_eq!(late.validity, Validity::Untimely);
    // Another proposer than the proposal's.
    assert!(matches!(
        bob.validate(&block1, Some(&key(12).public()), t1, &checks(&bob, &block1)),
        Err(InvalidBlock::WrongProposer { .. })
    ));
    // An app hash execution does not give.
    let mut lying = block1.clone();
    lying.header.app_hash = Hash([7; 32]);
    assert!(matches!(
        bob.validate(&lying, Some(&proposer), t1, &checks(&bob, &lying)),
        Err(InvalidBlock::AppHash { .. })
    ));
    alice.commit(&block1, executed).unwrap();
    // Height 2 without the certificate of height 1.
    let (no_commit, _) = propose(&alice, 12, t1 + 1000, vec![], None);
    assert!(matches!(
        alice.validate(&no_commit, Some(&key(12).public()), t1 + 1000, &[]),
        Err(InvalidBlock::Header(_))
    ));
    // A block decided elsewhere is executed whatever the clock says.
    let (block2, _) = propose(&alice, 12, t1 + 1000, vec![], Some(certificate(&block1, 0)));
    let decided = alice.execute_decided(&block2, &[]).unwrap();
    assert_eq!(decided.outcome.app_hash, block2.header.app_hash);
}

/// Executing a block copies none of the state: the executed state shares
/// the tip's records (once every block copied them all, so a block's cost
/// grew with the ledger), and so does the next height's after the commit.
#[test]
fn executing_a_block_shares_the_tips_records() {
    let mut alice = chain();
    let t1 = GENESIS_TIME_MS + 1000;
    let (block1, executed) = propose(&alice, 11, t1, vec![tx(1)], None);
    assert!(executed.state().shares_base_with(alice.state()));
    alice.commit(&block1, executed).unwrap();
    let (_, next) = propose(&alice, 12, t1 + 1000, vec![], Some(certificate(&block1, 0)));
    assert!(next.state().shares_base_with(alice.state()));
}

/// A certified block is executed taking its signatures as valid, and
/// verified strictly only when that misses the header's app hash: an
/// honest network's block needs no signature check (the strict closure
/// is never called), and a block holding a transaction whose signature
/// the network refused (a Byzantine proposer's, recorded as failed) still
/// gives the network's outcome.
#[test]
fn certified_blocks_verify_signatures_only_when_the_app_hash_asks() {
    let (mut alice, bob) = (chain(), chain());
    let t1 = GENESIS_TIME_MS + 1000;
    let (block1, executed) = propose(&alice, 11, t1, vec![tx(1), tx(2)], None);
    let certified = bob
        .execute_certified(&block1, || panic!("an honest block needs no strict check"))
        .unwrap();
    assert_eq!(certified.outcome, executed.outcome);
    alice.commit(&block1, executed).unwrap();
    let mut bob = bob;
    bob.commit(&block1, certified).unwrap();

    // Height 2: nonce 3's signature is broken; the proposer's strict
    // verdict makes it fail, and the block records that.
    let mut forged = tx(3);
    forged.signature = tx(4).signature;
    let txs = vec![forged, tx(4)];
    let strict: Vec<_> = txs.iter().map(|t| t.verify(CHAIN)).collect();
    assert!(strict[0].is_err());
    let (block2, executed) = alice
        .propose(
            key(12).public(),
            t1 + 1000,
            txs,
            &strict,
            vec![],
            Some(certificate(&block1, 0)),
        )
        .unwrap();
    assert_eq!(
        executed.outcome.results[0].1.as_ref().unwrap_err().code(),
        "bad_signature"
    );
    let mut asked = false;
    let certified = bob
        .execute_certified(&block2, || {
            asked = true;
            checks(&bob, &block2)
        })
        .unwrap();
    assert!(asked, "the app hash differed without the strict verdicts");
    assert_eq!(certified.outcome, executed.outcome);
    bob.commit(&block2, certified).unwrap();
    alice.commit(&block2, executed).unwrap();
    assert_eq!(alice.state().app_hash(), bob.state().app_hash());
}
