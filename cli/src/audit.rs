//! `symbiont audit`: replay an export file from genesis, offline, and
//! check everything (`symbiont_node::audit`): hash links, certificates
//! against the validators of each height, transaction signatures, nonces
//! and results, the app hash of every block. Prints balances, obligations,
//! avoided emissions and evidence; any mismatch names the height and the
//! transaction or certificate, and the command exits with status 1.

use std::fs::File;
use std::io::BufReader;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use serde_json::json;
use symbiont_contracts::codec;
use symbiont_contracts::keys::{PublicKey, Signature};
use symbiont_node::audit::{self, AuditError, Report};
use symbiont_node::block::Block;
use symbiont_node::export::{ExportReader, Frame};

use crate::export::progress_bar;
use crate::output::outln;
use crate::units::{format_decimal, format_money};

/// The options of `symbiont audit` (its help is in main.rs).
#[derive(Args)]
pub struct AuditArgs {
    /// The export file (written by `symbiont export`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Threads verifying signatures (default: every core).
    #[arg(long, value_name = "N")]
    threads: Option<NonZeroUsize>,
    /// After the audit, measure plain ed25519 batch verification on this
    /// machine (the file's own transaction signatures, keys decoded
    /// beforehand, batches of 256, all threads) and print the audit's
    /// rate, the batch rate and their ratio: the audit is run again and
    /// the batch measured 3 times, alternately, and the best of each kept.
    #[arg(long)]
    bench: bool,
}

/// Signatures measured by --bench at most (they are held in memory).
const BENCH_MAX_SIGNATURES: usize = 200_000;
/// Signatures per batch in the --bench measurement.
const BENCH_BATCH: usize = 256;
/// --bench runs each measurement this many times more, keeping the best.
const BENCH_ROUNDS: usize = 3;

pub fn run(args: AuditArgs, json: bool) -> Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(symbiont_node::verify::available_threads);
    let file = File::open(&args.file)
        .with_context(|| format!("cannot open the export file {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size, "bytes");
    let result = audit::audit(BufReader::with_capacity(1 << 20, file), threads, |p| {
        bar.set_position(p.bytes);
    });
    bar.finish_and_clear();
    let report = match result {
        Ok(report) => report,
        Err(error) => return failed(&args, &error, json),
    };
    if json {
        let mut value =
            json!({ "ok": true, "file": args.file.display().to_string(), "report": report });
        if args.bench {
            value["bench"] = serde_json::to_value(bench(&args, &report, threads)?)?;
        }
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        print_report(&args, &report)?;
        if args.bench {
            let figures = bench(&args, &report, threads)?;
            outln!()?;
            outln!(
                "bench ({} threads; best of {} audits and {} batch measurements, alternated):",
                figures.threads,
                BENCH_ROUNDS + 1,
                BENCH_ROUNDS
            )?;
            outln!(
                "  audit replay:        {} tx/s, {} signatures/s ({} blocks, {} signatures in {} ms)",
                figures.audit_tx_per_s,
                figures.audit_signatures_per_s,
                report.counts.blocks,
                report.counts.signatures,
                figures.audit_ms
            )?;
            outln!(
                "  batch verification:  {} signatures/s ({} signatures in {} ms)",
                figures.batch_signatures_per_s,
                figures.batch_signatures,
                figures.batch_ms
            )?;
            outln!(
                "  ratio:               {}% (audit signatures/s over batch signatures/s)",
                format_decimal(i128::from(figures.ratio_permille), 1)
            )?;
            outln!(
                "  admission-path batches (keys decoded per signature): {} signatures/s; audit over it {}%",
                figures.admission_batch_signatures_per_s,
                format_decimal(i128::from(figures.admission_ratio_permille), 1)
            )?;
        }
    }
    Ok(())
}

/// Reports a failed audit (and its place, with --json) and returns the
/// error for the exit status.
fn failed(args: &AuditArgs, error: &AuditError, json: bool) -> Result<()> {
    if json {
        let (tx_index, place) = match error {
            AuditError::At { problem, .. } => (problem.tx_index(), format!("{problem:?}")),
            other => (None, format!("{other:?}")),
        };
        let value = json!({
            "ok": false,
            "file": args.file.display().to_string(),
            "height": error.height(),
            "tx_index": tx_index,
            "error": error.to_string(),
            "detail": place,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    }
    Err(anyhow!("audit of {} failed: {error}", args.file.display()))
}

fn print_report(args: &AuditArgs, report: &Report) -> Result<()> {
    let code = &report.currency.code;
    let minor = u32::from(report.currency.minor_units);
    let counts = &report.counts;
    outln!("audit of {}: clean", args.file.display())?;
    outln!(
        "chain {} (genesis {}), height {}, block {}, app hash {}",
        report.chain_id,
        report.genesis_hash,
        report.height,
        report.block_hash,
        report.app_hash
    )?;
    outln!(
        "checked {} blocks, {} transactions ({} applied, {} failed), {} signatures in {} ms",
        counts.blocks,
        counts.txs,
        counts.applied,
        counts.failed,
        counts.signatures,
        counts.elapsed.as_millis()
    )?;
    outln!("balances (positive: owed to the firm):")?;
    for firm in &report.firms {
        outln!(
            "  {:<24} {:>20}   avoided {} kg CO2e",
            firm.firm,
            format_money(firm.balance, code, minor),
            format_decimal(i128::from(firm.avoided_g), 3)
        )?;
    }
    for (pool, balance) in &report.pools {
        outln!(
            "  pool {:<19} {:>20}",
            pool.to_string(),
            format_money(*balance, code, minor)
        )?;
    }
    if report.obligations.is_empty() {
        outln!("obligations: none open")?;
    } else {
        outln!("obligations:")?;
        for o in &report.obligations {
            outln!(
                "  {} owes {} {}",
                o.debtor,
                o.creditor,
                format_money(o.amount, code, minor)
            )?;
        }
    }
    outln!(
        "avoided emissions: {} kg CO2e on the network",
        format_decimal(i128::from(report.network_avoided_g), 3)
    )?;
    for kind in &report.kinds {
        outln!(
            "  {:<24} {} kg CO2e",
            kind.kind,
            format_decimal(i128::from(kind.avoided_g), 3)
        )?;
    }
    if report.evidence.is_empty() {
        outln!("evidence: none recorded")?;
    } else {
        outln!("evidence recorded:")?;
        for e in &report.evidence {
            outln!(
                "  {} equivocated at height {} round {} ({}), recorded at height {}",
                e.validator,
                e.height,
                e.round,
                e.step,
                e.recorded_at
            )?;
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Bench {
    threads: usize,
    audit_ms: u128,
    audit_tx_per_s: u64,
    audit_signatures_per_s: u64,
    batch_signatures: usize,
    batch_ms: u128,
    batch_signatures_per_s: u64,
    /// audit signatures/s over batch signatures/s, in thousandths.
    ratio_permille: u64,
    /// The same signatures through the node's admission-path batch
    /// verification (`keys::verify_batch`: every key decoded and checked
    /// per signature), and the audit's rate over it.
    admission_batch_signatures_per_s: u64,
    admission_ratio_permille: u64,
}

fn per_second(count: u64, nanos: u128) -> u64 {
    (u128::from(count) * 1_000_000_000 / nanos.max(1)) as u64
}

/// Batch verification of the file's transaction signatures (up to
/// `BENCH_MAX_SIGNATURES`) on `threads` threads, against the audit's rate.
fn bench(args: &AuditArgs, report: &Report, threads: NonZeroUsize) -> Result<Bench> {
    let file = File::open(&args.file)?;
    let (mut reader, _) = ExportReader::open(BufReader::with_capacity(1 << 20, file))?;
    let mut items: Vec<(Vec<u8>, PublicKey, Signature)> = Vec::new();
    while items.len() < BENCH_MAX_SIGNATURES {
        match reader.next_frame()? {
            Some(Frame::Block(frame)) => {
                let block: Block = codec::decode(&frame.block)?;
                for tx in block.txs {
                    items.push((tx.body.sign_bytes(), tx.signer, tx.signature));
                }
            }
            _ => break,
        }
    }
    items.truncate(BENCH_MAX_SIGNATURES);
    // A shared machine's load comes and goes: alternate the two
    // measurements and keep the best of each.
    let mut batch_nanos = u128::MAX;
    let mut admission_nanos = u128::MAX;
    let mut audit_nanos = report.counts.elapsed.as_nanos();
    for _ in 0..BENCH_ROUNDS {
        let (bad, batch_time) = audit::measure_batch_verification(&items, BENCH_BATCH, threads);
        if bad > 0 {
            return Err(anyhow!("{bad} signatures failed the batch measurement"));
        }
        batch_nanos = batch_nanos.min(batch_time.as_nanos());
        let (bad, admission_time) = audit::measure_admission_batches(&items, BENCH_BATCH, threads);
        if bad > 0 {
            return Err(anyhow!(
                "{bad} signatures failed the admission-path measurement"
            ));
        }
        admission_nanos = admission_nanos.min(admission_time.as_nanos());
        let file = File::open(&args.file)?;
        let again = audit::audit(BufReader::with_capacity(1 << 20, file), threads, |_| {})
            .map_err(|e| anyhow!("the audit failed when run again: {e}"))?;
        audit_nanos = audit_nanos.min(again.counts.elapsed.as_nanos());
    }
    let audit_rate = per_second(report.counts.signatures, audit_nanos);
    let batch_rate = per_second(items.len() as u64, batch_nanos);
    let admission_rate = per_second(items.len() as u64, admission_nanos);
    Ok(Bench {
        threads: threads.get(),
        audit_ms: audit_nanos / 1_000_000,
        audit_tx_per_s: per_second(report.counts.txs, audit_nanos),
        audit_signatures_per_s: audit_rate,
        batch_signatures: items.len(),
        batch_ms: batch_nanos / 1_000_000,
        batch_signatures_per_s: batch_rate,
        ratio_permille: (u128::from(audit_rate) * 1000 / u128::from(batch_rate.max(1))) as u64,
        admission_batch_signatures_per_s: admission_rate,
        admission_ratio_permille: (u128::from(audit_rate) * 1000
            / u128::from(admission_rate.max(1))) as u64,
    })
}
