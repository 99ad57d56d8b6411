//! The auditor recomputes the validator set only after a block that wrote
//! node records (`chain::validators_may_change`): `validator_set` reads
//! nothing else. Over a ledger whose governance changes the set, every
//! block after which the set differs must be one the shortcut flags.

use symbiont_contracts::codec;
use symbiont_contracts::exec::{self, BlockInfo};
use symbiont_node::block::Block;
use symbiont_node::chain::{validator_set, validators_may_change};

#[path = "../../cli/tests/support/ledger.rs"]
mod ledger;

#[test]
fn only_blocks_that_write_node_records_change_the_validator_set() {
    let built = ledger::build_governed(6, |height| {
        if height >= 4 {
            ledger::AFTER_CHANGE.to_vec()
        } else {
            vec![11, 12, 13]
        }
    });
    let mut state = exec::genesis_state(&built.genesis);
    let mut set = validator_set(&state).unwrap();
    let mut changes = 0;
    let mut flagged = 0;
    for frame in &built.frames {
        let block: Block = codec::decode(&frame.block).unwrap();
        let info = BlockInfo {
            height: block.header.height,
            time_ms: block.header.time_ms,
        };
        let outcome = exec::execute_block(&mut state, &info, &block.txs).unwrap();
        assert_eq!(outcome.app_hash, block.header.app_hash);
        let next = validator_set(&state).unwrap();
        let may_change = validators_may_change(&outcome.writes);
        if next != set {
            assert!(
                may_change,
                "height {}: the set changed, but the block wrote no node record",
                info.height
            );
            changes += 1;
        }
        flagged += usize::from(may_change);
        set = next;
    }
    // Governance changed the set once (block 3's votes pass the proposal),
    // and only that block wrote a node record.
    assert_eq!((changes, flagged), (1, 1));
}
