//! The mempool: every admission check with its typed error and no change on
//! refusal, deduplication, the bounds, nonce order in `reap` (gaps wait,
//! block limits respected, arrival order across signers), and `update`
//! after a block.

use symbiont_contracts::exec::{BlockInfo, execute_block};
use symbiont_contracts::hash::Hash;
use symbiont_contracts::tx::{MAX_TX_BYTES, SignedTx, TxBody, TxKind};
use symbiont_node::mempool::{AdmitError, Mempool, MempoolConfig};

mod support;
use support::{CHAIN, GENESIS_TIME_MS, key, state};

/// A transaction of `signer` with `nonce` (kinds differ by `salt`, so two
/// transactions of one nonce differ).
fn tx(signer: u8, nonce: u64, salt: u8) -> SignedTx {
    SignedTx::sign(
        TxBody {
            chain_id: CHAIN.into(),
            nonce,
            kind: TxKind::Withdraw {
                listing: Hash([salt; 32]),
            },
        },
        &key(signer),
    )
}

fn pool(config: MempoolConfig) -> Mempool {
    Mempool::new(CHAIN, config)
}

/// Executes `txs` as block 1 on `state`: the ids it committed.
fn first_block(state: &mut symbiont_contracts::state::State, txs: &[SignedTx]) -> Vec<Hash> {
    let info = BlockInfo {
        height: 1,
        time_ms: GENESIS_TIME_MS + 1,
    };
    let outcome = execute_block(state, &info, txs).unwrap();
    outcome.results.iter().map(|(id, _)| *id).collect()
}

fn ids(txs: &[SignedTx]) -> Vec<(u8, u64)> {
    txs.iter()
        .map(|t| {
            let who = if t.signer == key(1).public() { 1 } else { 2 };
            (who, t.body.nonce)
        })
        .collect()
}

#[test]
fn each_refusal_is_typed_and_changes_nothing() {
    let state = state();
    let mut pool = pool(MempoolConfig::default());
    pool.admit(tx(1, 1, 0), &state).unwrap();
    let (len, bytes) = (pool.len(), pool.bytes());
    let mut bad_signature = tx(1, 2, 0);
    bad_signature.signature.0[0] ^= 1;
    let mut wrong_chain = tx(1, 2, 0);
    wrong_chain.body.chain_id = "other".into();
    let wrong_chain = SignedTx::sign(wrong_chain.body, &key(1));
    let oversize = SignedTx::sign(
        TxBody {
            chain_id: CHAIN.into(),
            nonce: 2,
            kind: TxKind::GrantLicence {
                firm: "x".repeat(MAX_TX_BYTES),
                ewc_code: "10 01 02".into(),
                expires_ms: 0,
            },
        },
        &key(1),
    );
    let cases: Vec<(SignedTx, &str)> = vec![
        (tx(1, 1, 0), "duplicate"),
        (bad_signature, "bad_signature"),
        (wrong_chain, "wrong_chain_id"),
        (oversize, "oversize"),
        (tx(7, 1, 0), "unknown_signer"),
        (tx(1, 1, 5), "nonce_taken"),
        (tx(1, 0, 0), "bad_nonce"),
        (tx(1, 18, 0), "nonce_too_far_ahead"),
    ];
    for (bad, code) in cases {
        let error = pool.admit(bad, &state).expect_err(code);
        assert_eq!(error.code(), code, "{error}");
        assert_eq!((pool.len(), pool.bytes()), (len, bytes), "{code}");
    }
    // The far end of the window is still admitted.
    pool.admit(tx(1, 17, 0), &state).unwrap();
}

#[test]
fn bounds_by_count_bytes_and_signer() {
    let state = state();
    let mut small = pool(MempoolConfig {
        max_txs: 3,
        ..MempoolConfig::default()
    });
    for nonce in 1..=3 {
        small.admit(tx(1, nonce, 0), &state).unwrap();
    }
    assert!(matches!(
        small.admit(tx(2, 1, 0), &state),
        Err(AdmitError::Full { txs: 3, .. })
    ));
    let one_tx = tx(1, 1, 0).to_bytes().len();
    let mut by_bytes = pool(MempoolConfig {
        max_bytes: 2 * one_tx,
        ..MempoolConfig::default()
    });
    by_bytes.admit(tx(1, 1, 0), &state).unwrap();
    by_bytes.admit(tx(1, 2, 0), &state).unwrap();
    assert_eq!(by_bytes.bytes(), 2 * one_tx);
    assert_eq!(
        by_bytes.admit(tx(2, 1, 0), &state).unwrap_err().code(),
        "mempool_full"
    );
    let mut per_signer = pool(MempoolConfig {
        max_per_signer: 2,
        ..MempoolConfig::default()
    });
    per_signer.admit(tx(1, 1, 0), &state).unwrap();
    per_signer.admit(tx(1, 2, 0), &state).unwrap();
    assert_eq!(
        per_signer.admit(tx(1, 3, 0), &state).unwrap_err().code(),
        "signer_full"
    );
    // Another signer still fits.
    per_signer.admit(tx(2, 1, 0), &state).unwrap();
}

#[test]
fn reap_takes_each_signers_nonces_in_order_and_stops_at_a_gap() {
    let state = state();
    let mut pool = pool(MempoolConfig::default());
    // Arrival: alpha 2, beta 1, alpha 1, alpha 4 (gap at 3), beta 2.
    for (who, nonce) in [(1, 2), (2, 1), (1, 1), (1, 4), (2, 2)] {
        pool.admit(tx(who, nonce, 0), &state).unwrap();
    }
    let block = pool.reap(&state, 100, usize::MAX);
    // Alpha's 2 cannot go before its 1; 4 waits for 3.
    assert_eq!(ids(&block), vec![(2, 1), (1, 1), (1, 2), (2, 2)]);
    assert_eq!(ids(&pool.reap(&state, 2, usize::MAX)), vec![(2, 1), (1, 1)]);
    let one_tx = tx(1, 1, 0).to_bytes().len();
    assert_eq!(pool.reap(&state, 100, 3 * one_tx).len(), 3);
    // The gap filled: 3 and 4 follow.
    pool.admit(tx(1, 3, 0), &state).unwrap();
    let block = pool.reap(&state, 100, usize::MAX);
    assert_eq!(block.len(), 6);
    assert_eq!(
        ids(&block)
            .into_iter()
            .filter(|(w, _)| *w == 1)
            .collect::<Vec<_>>(),
        vec![(1, 1), (1, 2), (1, 3), (1, 4)]
    );
}

#[test]
fn update_drops_what_a_block_committed_or_made_stale() {
    let mut state = state();
    let mut pool = pool(MempoolConfig::default());
    for nonce in 1..=3 {
        pool.admit(tx(1, nonce, 0), &state).unwrap();
    }
    pool.admit(tx(2, 1, 0), &state).unwrap();
    // A block holds alpha's 1 and 2 (one sent elsewhere: another copy of
    // nonce 2 with other contents).
    let committed = first_block(&mut state, &[tx(1, 1, 0), tx(1, 2, 9)]);
    let dropped = pool.update(&committed, &state);
    assert_eq!(dropped, 2, "alpha 1 committed, alpha 2 stale");
    assert_eq!(pool.len(), 2);
    assert_eq!(
        ids(&pool.reap(&state, 100, usize::MAX)),
        vec![(1, 3), (2, 1)]
    );
    assert_eq!(pool.bytes(), 2 * tx(1, 1, 0).to_bytes().len());
    // Committed transactions are refused from then on.
    assert_eq!(
        pool.admit(tx(1, 1, 0), &state).unwrap_err().code(),
        "already_included"
    );
}

/// A block's transactions are checked once: those the mempool admitted
/// are taken as verified, the rest verified strictly in parallel; the
/// verdicts (and then the execution) equal verifying each in turn.
#[test]
fn block_checks_skip_admitted_and_match_sequential_verification() {
    use std::num::NonZeroUsize;
    use symbiont_contracts::exec::execute_block_checked;
    use symbiont_node::verify::check_block_txs;
    let state = state();
    let mut pool = pool(MempoolConfig::default());
    let admitted = tx(1, 1, 0);
    pool.admit(admitted.clone(), &state).unwrap();
    let mut forged = tx(2, 1, 0);
    forged.signature.0[5] ^= 1;
    let mut wrong_chain = tx(2, 2, 0).body;
    wrong_chain.chain_id = "elsewhere".into();
    let mut txs = vec![admitted, forged, SignedTx::sign(wrong_chain, &key(2))];
    txs.extend((2..12).map(|n| tx(1, n, 0)));
    for threads in [1, 2, 5] {
        let checks = check_block_txs(
            &txs,
            CHAIN,
            |id| pool.contains(id),
            NonZeroUsize::new(threads).unwrap(),
        );
        let sequential: Vec<_> = txs.iter().map(|t| t.verify(CHAIN)).collect();
        assert_eq!(checks, sequential, "{threads} threads");
    }
    // Claimed known, a forged one would pass the check: `known` must only
    // name what admission verified (its id pins the verified bytes).
    let claimed = check_block_txs(&txs, CHAIN, |_| true, NonZeroUsize::MIN);
    assert!(claimed.iter().all(Result::is_ok));
    // Execution with the checks equals execution that verifies.
    let block = BlockInfo {
        height: 1,
        time_ms: GENESIS_TIME_MS + 1,
    };
    let checks = check_block_txs(&txs, CHAIN, |id| pool.contains(id), NonZeroUsize::MIN);
    let (mut a, mut b) = (state.clone(), state.clone());
    let checked = execute_block_checked(&mut a, &block, &txs, &checks, &[]).unwrap();
    let verified = execute_block(&mut b, &block, &txs).unwrap();
    assert_eq!(checked, verified);
    assert_eq!(
        checked.results[1].1.as_ref().unwrap_err().code(),
        "bad_signature"
    );
}

/// docs/ledger-format.md, section 9, "At admission": when several checks
/// fail, the first in the documented order gives the code; a nonce ahead
/// of the state's next is admitted although a block would refuse it.
#[test]
fn admission_checks_run_in_the_documented_order() {
    let mut state = state();
    let mut waiting = pool(MempoolConfig::default());
    let first = tx(1, 1, 0);
    waiting.admit(first.clone(), &state).unwrap();
    let unsigned = |mut t: SignedTx| {
        t.signature.0 = [0; 64];
        t
    };
    let stranger_other_chain = SignedTx::sign(
        TxBody {
            chain_id: "other".into(),
            nonce: 99,
            kind: TxKind::Withdraw {
                listing: Hash([0; 32]),
            },
        },
        &key(7),
    );
    let cases: Vec<(SignedTx, &str)> = vec![
        // Another chain, a bad signature, an unknown signer, a far nonce.
        (unsigned(stranger_other_chain), "wrong_chain_id"),
        // A bad signature, an unknown signer, a far nonce.
        (unsigned(tx(7, 99, 0)), "bad_signature"),
        // An unknown signer, a far nonce.
        (tx(7, 99, 0), "unknown_signer"),
    ];
    for (bad, code) in cases {
        assert_eq!(waiting.admit(bad, &state).unwrap_err().code(), code);
    }
    // Waiting here and in a block: `duplicate` first, then `already_included`.
    execute_block(
        &mut state,
        &BlockInfo {
            height: 1,
            time_ms: GENESIS_TIME_MS + 1,
        },
        std::slice::from_ref(&first),
    )
    .unwrap();
    assert_eq!(
        waiting.admit(first.clone(), &state).unwrap_err().code(),
        "duplicate"
    );
    let mut fresh = pool(MempoolConfig::default());
    assert_eq!(
        fresh.admit(first, &state).unwrap_err().code(),
        "already_included"
    );
    // Nonce 3 while 2 is next: admitted to wait, refused by a block.
    let ahead = tx(1, 3, 0);
    fresh.admit(ahead.clone(), &state).unwrap();
    let outcome = execute_block(
        &mut state,
        &BlockInfo {
            height: 2,
            time_ms: GENESIS_TIME_MS + 2,
        },
        &[ahead],
    )
    .unwrap();
    let code = outcome.results[0].1.as_ref().unwrap_err().code();
    assert_eq!(code, "bad_nonce");
}

/// What GetSigner answers: the signer's waiting transactions and the first
/// nonce from the state's next one that none of them holds; a gap stops
/// the run, and a committed block moves the start.
#[test]
fn signer_nonces_give_the_first_free_nonce_after_the_committed_one() {
    let mut state = state();
    let mut pool = pool(MempoolConfig::default());
    let alpha = key(1).public();
    assert_eq!(pool.signer_nonces(&state, &alpha), (0, 1));
    for nonce in [1, 2, 4] {
        pool.admit(tx(1, nonce, 0), &state).unwrap();
    }
    // 3 is free: 4 waits behind the gap.
    assert_eq!(pool.signer_nonces(&state, &alpha), (3, 3));
    pool.admit(tx(1, 3, 0), &state).unwrap();
    assert_eq!(pool.signer_nonces(&state, &alpha), (4, 5));
    // Another signer is not counted.
    assert_eq!(pool.signer_nonces(&state, &key(2).public()), (0, 1));
    // Nonces 1 and 2 committed: the start moves to 3.
    let committed = first_block(&mut state, &[tx(1, 1, 0), tx(1, 2, 0)]);
    pool.update(&committed, &state);
    assert_eq!(pool.signer_nonces(&state, &alpha), (2, 5));
    assert_eq!(symbiont_node::mempool::next_nonce(&state, &alpha), 3);
}
