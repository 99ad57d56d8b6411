//! Where an audit's CPU time goes, one stage at a time on one thread, for
//! an export file (e.g. one written by the `export_ledger` example):
//!
//! - decode: each block frame's block and certificate decoded, every
//!   transaction encoded once for its id and envelope size, the sign bytes
//!   of the batch built (what the audit's verifier threads do besides
//!   verifying);
//! - batch: ed25519 batch verification of those signatures, in batches
//!   of consecutive blocks (about `audit::GROUP_SIGNATURES` signatures
//!   each, as the audit's groups);
//! - execute: the blocks executed in order from genesis on one `State`
//!   (`exec::execute_block_with_ids`), each app hash compared with the
//!   header's (what the audit's main thread does).
//!
//! `symbiont audit --bench` compares the audit's rate with the batch rate
//! alone: on a machine whose cores are all busy, that ratio is about
//! batch / (decode + batch + execute) as printed here. Each stage runs
//! `ROUNDS` times and the best is kept. Times are the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), which other processes on a busy machine
//! disturb far less than the wall clock.
//!
//! ```sh
//! cargo run --release -p symbiont-node --no-default-features --example audit_budget -- /tmp/big.symbexp
//! ```
//!
//! With a stage named after the file (`decode`, `batch` or `execute`),
//! the blocks are decoded once and only that stage runs, once: for
//! counting its instructions with `perf stat -e instructions:u`, which
//! even a busy machine does not disturb (compare with a run of `decode`).

use std::fs::File;
use std::io::BufReader;
use std::time::Duration;

use symbiont_contracts::codec;
use symbiont_contracts::exec::{self, BlockInfo};
use symbiont_contracts::genesis::Genesis;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::{PublicKey, Signature};
use symbiont_contracts::tx::TxError;
use symbiont_node::audit::{GROUP_SIGNATURES, KeyCache, batch_verdicts};
use symbiont_node::block::{Block, block_evidence};
use symbiont_node::export::{ExportReader, Frame};

const ROUNDS: usize = 3;

/// CPU time of this thread so far.
struct Instant(Duration);

impl Instant {
    fn now() -> Instant {
        let mut time = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
        assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        Instant(Duration::new(time.tv_sec as u64, time.tv_nsec as u32))
    }

    fn elapsed(&self) -> Duration {
        Instant::now().0.saturating_sub(self.0)
    }
}

/// The best of `rounds` runs, or nothing if the stage is not wanted.
fn best(rounds: usize, wanted: bool, mut run: impl FnMut() -> Duration) -> Duration {
    if !wanted {
        return Duration::ZERO;
    }
    (0..rounds).map(|_| run()).min().unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: audit_budget EXPORT_FILE [decode|batch|execute]";
    let path = std::env::args().nth(1).ok_or(usage)?;
    let only = std::env::args().nth(2);
    if only
        .as_deref()
        .is_some_and(|stage| !["decode", "batch", "execute"].contains(&stage))
    {
        return Err(usage.into());
    }
    let wanted = |stage: &str| only.as_deref().is_none_or(|only| only == stage);
    let rounds = if only.is_some() { 1 } else { ROUNDS };
    let (mut reader, genesis_bytes) = ExportReader::open(BufReader::new(File::open(&path)?))?;
    let genesis: Genesis = codec::decode(&genesis_bytes)?;
    let mut frames = Vec::new();
    while let Some(Frame::Block(frame)) = reader.next_frame()? {
        frames.push(frame);
    }
    let chain_id = genesis.chain_id.clone();

    // decode: as the audit's verify_frame, without the verification.
    let decode = || {
        let started = Instant::now();
        let mut out = Vec::with_capacity(frames.len());
        for frame in &frames {
            let block: Block = codec::decode(&frame.block).expect("block decodes");
            let _: symbiont_node::block::Certificate =
                codec::decode(&frame.certificate).expect("certificate decodes");
            let mut ids = Vec::with_capacity(block.txs.len());
            let mut checks: Vec<Result<(), TxError>> = Vec::with_capacity(block.txs.len());
            let mut messages = Vec::with_capacity(block.txs.len());
            for tx in &block.txs {
                let bytes = tx.to_bytes();
                ids.push(Hash::of_bytes(&bytes));
                checks.push(tx.check_envelope_encoded(bytes.len(), &chain_id));
                messages.push(tx.body.sign_bytes());
            }
            out.push((block, ids, checks, messages));
        }
        (started.elapsed(), out)
    };
    let decode_time = best(rounds, only.is_none(), || decode().0);
    let (_, decoded) = decode();
    let signatures: usize = decoded.iter().map(|(block, ..)| block.txs.len()).sum();

    let batch_time = best(rounds, wanted("batch"), || {
        let mut cache = KeyCache::default();
        let started = Instant::now();
        // As the audit batches: consecutive blocks together, about
        // GROUP_SIGNATURES signatures a batch.
        let mut items: Vec<(&[u8], PublicKey, Signature)> = Vec::new();
        for (index, (block, _, _, messages)) in decoded.iter().enumerate() {
            items.extend(
                block
                    .txs
                    .iter()
                    .zip(messages)
                    .map(|(tx, message)| (message.as_slice(), tx.signer, tx.signature)),
            );
            if items.len() >= GROUP_SIGNATURES || index + 1 == decoded.len() {
                let verdicts = batch_verdicts(&items, &mut cache);
                assert!(verdicts.iter().all(|ok| *ok), "a bad signature");
                items.clear();
            }
        }
        started.elapsed()
    });

    let execute_time = best(rounds, wanted("execute"), || {
        let mut state = exec::genesis_state(&genesis);
        let started = Instant::now();
        for (block, ids, checks, _) in &decoded {
            let info = BlockInfo {
                height: block.header.height,
                time_ms: block.header.time_ms,
            };
            let evidence = block_evidence(&block.evidence);
            let outcome =
                exec::execute_block_with_ids(&mut state, &info, &block.txs, ids, checks, &evidence)
                    .expect("block executes");
            assert_eq!(outcome.app_hash, block.header.app_hash, "app hash differs");
        }
        let elapsed = started.elapsed();
        drop(state);
        elapsed
    });

    if only.is_some() {
        let time = decode_time + batch_time + execute_time;
        println!("{} ms", time.as_millis());
        return Ok(());
    }
    let total = decode_time + batch_time + execute_time;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let share = |d: Duration| 100.0 * d.as_secs_f64() / total.as_secs_f64();
    println!(
        "{} blocks, {} transactions (CPU time, best of {rounds}, one thread):",
        frames.len(),
        signatures
    );
    for (name, time) in [
        ("decode", decode_time),
        ("batch", batch_time),
        ("execute", execute_time),
    ] {
        println!(
            "  {name:<8} {:>9.1} ms  {:>5.1}%  {:>9.0} tx/s",
            ms(time),
            share(time),
            signatures as f64 / time.as_secs_f64()
        );
    }
    println!(
        "  expected audit --bench ratio on busy cores: about {:.1}%",
        share(batch_time)
    );
    Ok(())
}
