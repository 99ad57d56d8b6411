//! Each signature is verified once per node. A transaction the mempool
//! admitted was verified then (strictly, `SignedTx::verify`), and its id,
//! the hash of the whole signed transaction, pins the very bytes verified;
//! the transactions of a block from a peer (a proposal, block sync) that
//! this node has not seen are verified here, strictly and in parallel
//! across cores, before execution (`exec::execute_block_checked`).
//!
//! Strict single verification, not batch verification: batch verification
//! accepts some crafted signatures that strict verification refuses, and
//! every node must give every transaction the same verdict.

use std::num::NonZeroUsize;

use symbiont_contracts::hash::Hash;
use symbiont_contracts::tx::{SignedTx, TxError};

/// The result of `SignedTx::verify(chain_id)` for each of `txs`, in order.
/// `known(id)` says the transaction was verified already (admitted to the
/// mempool under this chain id): its check is `Ok` without verifying again.
/// The rest are verified on up to `threads` threads.
pub fn check_block_txs(
    txs: &[SignedTx],
    chain_id: &str,
    known: impl Fn(&Hash) -> bool,
    threads: NonZeroUsize,
) -> Vec<Result<(), TxError>> {
    let mut checks: Vec<Option<Result<(), TxError>>> = txs
        .iter()
        .map(|tx| known(&tx.id()).then_some(Ok(())))
        .collect();
    let unseen: Vec<usize> = (0..txs.len()).filter(|&i| checks[i].is_none()).collect();
    let chunk = unseen.len().div_ceil(threads.get()).max(1);
    let verdicts: Vec<(usize, Result<(), TxError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = unseen
            .chunks(chunk)
            .map(|indices| {
                scope.spawn(move || {
                    indices
                        .iter()
                        .map(|&i| (i, txs[i].verify(chain_id)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a verification thread panicked"))
            .collect()
    });
    for (index, verdict) in verdicts {
        checks[index] = Some(verdict);
    }
    checks
        .into_iter()
        .map(|check| check.expect("every transaction checked"))
        .collect()
}

/// Threads for verification: the machine's cores.
pub fn available_threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}
