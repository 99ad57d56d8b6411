//! Writes a large export file of an in-process ledger, for measuring
//! `symbiont audit --bench`: four firms with a validator each, `BLOCKS`
//! blocks of `TXS` signed transactions (firm admins authorizing fresh
//! operator keys), each block executed by the node's `Chain` and certified
//! by three of the four validators. No network, no storage.
//!
//! ```sh
//! cargo run --release -p symbiont-node --no-default-features --example export_ledger -- /tmp/big.symbexp 200 1000
//! cargo build --release -p symbiont-cli
//! target/release/symbiont audit /tmp/big.symbexp --bench
//! ```
//!
//! The ledger builder is the CLI tests' (one copy).

use std::io::Write;
use std::time::Instant;

#[path = "../../cli/tests/support/ledger.rs"]
mod ledger;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: export_ledger FILE [BLOCKS] [TXS_PER_BLOCK]";
    let path = args.get(1).expect(usage);
    let blocks: u64 = args.get(2).map_or(200, |a| a.parse().expect(usage));
    let txs: usize = args.get(3).map_or(1000, |a| a.parse().expect(usage));
    let started = Instant::now();
    let built = ledger::build(blocks, txs, false);
    let bytes = built.bytes();
    std::fs::File::create(path)?.write_all(&bytes)?;
    writeln!(
        std::io::stderr(),
        "wrote {path}: {blocks} blocks of {txs} transactions, {} bytes, in {} ms",
        bytes.len(),
        started.elapsed().as_millis()
    )
}
