//! Block execution in the node: equivocation evidence a block carries is
//! recorded in the state (in the block's writes, so the app hash covers
//! it), once.

mod support;

use support::{CHAIN, GENESIS_TIME_MS, key, state};
use symbiont_contracts::codec;
use symbiont_contracts::exec::{BlockError, BlockInfo, execute_block_checked};
use symbiont_contracts::hash::Hash;
use symbiont_contracts::state::{EvidenceRecord, Key};
use symbiont_node::block::{Evidence, block_evidence};
use symbiont_node::consensus::ed25519::Ed25519Context;
use symbiont_node::consensus::signed::{SignedVote, vote_sign_bytes};
use symbiont_node::consensus::{Vote, VoteType};

/// The validator of seed 10 precommitted two blocks at height 3, round 1.
fn evidence() -> Evidence {
    let signed = |value: u8| {
        let vote: Vote<Ed25519Context> = Vote {
            height: 3,
            round: 1,
            vote_type: VoteType::Precommit,
            value: Some(Hash([value; 32])),
            validator: key(10).public(),
        };
        let signature = key(10).sign(&vote_sign_bytes(CHAIN, &vote));
        SignedVote { vote, signature }
    };
    Evidence::new(signed(1), signed(2))
}

#[test]
fn evidence_is_recorded_in_the_block_writes_once() {
    let mut state = state();
    let before = state.app_hash();
    let items = block_evidence(&[evidence()]);
    assert_eq!(items[0].hash, codec::hash(&evidence()));
    let block = |height| BlockInfo {
        height,
        time_ms: GENESIS_TIME_MS + height,
    };
    let outcome = execute_block_checked(&mut state, &block(1), &[], &[], &items).unwrap();
    let key_bytes = Key::Evidence(items[0].hash).bytes();
    assert!(outcome.writes.iter().any(|(k, _)| *k == key_bytes));
    assert_ne!(outcome.app_hash, before);
    let record: EvidenceRecord = state.get(&Key::Evidence(items[0].hash)).unwrap();
    assert_eq!(
        record,
        EvidenceRecord {
            validator: key(10).public(),
            height: 3,
            round: 1,
            step: 1,
            recorded_at: 1,
        }
    );
    // Again in a later block, or twice in one: the block is invalid and
    // nothing changes.
    let snapshot = state.clone();
    assert_eq!(
        execute_block_checked(&mut state, &block(2), &[], &[], &items),
        Err(BlockError::EvidenceAlreadyRecorded(items[0].hash))
    );
    assert_eq!(state.records(), snapshot.records());
    let mut fresh = support::state();
    let twice = [items[0].clone(), items[0].clone()];
    assert!(execute_block_checked(&mut fresh, &block(1), &[], &[], &twice).is_err());
    assert_eq!(fresh.records(), support::state().records());
}
