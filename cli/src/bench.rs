//! `symbiont bench`: how fast a local network of four validator processes
//! is on this machine, measured against bounds measured in the same run.
//!
//! 1. Ed25519 single and batch verification rates, one core, in this
//!    process. The verification bound is cores x batch rate / validators:
//!    all validators share this machine, and each checks every signature
//!    once.
//! 2. Empty blocks: milliseconds per height with no load.
//! 3. Offered load in steps (signed market offers from 64 operator keys,
//!    spread over the validators' gRPC APIs): committed tx/s, p50/p99
//!    submit-to-finality latency (until the block carrying it is streamed
//!    by a node), CPU per node (from /proc).
//! 4. The p99 at half of the highest committed rate.
//! 5. One of four validators killed (SIGKILL) under the load of the
//!    highest step: the committed rate as a fraction of the healthy one.
//! 6. The killed validator restarted: seconds until it is back at the
//!    others' height.
//! 7. The run's ledger exported and audited with `symbiont audit --bench`:
//!    the replay's signatures/s against batch verification measured by the
//!    same command.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::{Keypair, PublicKey, Signature, verify_batch};
use symbiont_contracts::kinds::ListingTerms;
use symbiont_contracts::tx::{KeyRole, SignedTx, TxBody, TxKind};
use symbiont_proto::v1 as pb;

use crate::client::{self, Client, Global, Refusal, connect, refused};
use crate::common::{Row, table};
use crate::output::outln;
use crate::park::Park;
use crate::units::now_ms;

/// The options of `symbiont bench` (its help is in main.rs).
#[derive(Args)]
pub struct BenchArgs {
    /// Offered loads, transactions per second, one step each.
    #[arg(long, value_delimiter = ',', default_value = "100,200,400,800,1600")]
    steps: Vec<u32>,
    /// Seconds of each load step.
    #[arg(long, default_value_t = 8)]
    step_secs: u64,
    /// Where to put the network's data and node logs, kept after the run
    /// (default: a new directory under the system's temporary directory,
    /// removed at the end). It must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
}

/// Operator keys that sign the load (each can have 16 transactions
/// waiting, so 64 keys carry about 1000 in flight).
const SIGNERS: usize = 64;
/// How many transactions one signer keeps waiting at most.
const IN_FLIGHT: u64 = 14;

#[derive(Serialize)]
struct Step {
    offered_tx_s: u32,
    committed_tx_s: f64,
    p50_ms: u64,
    p99_ms: u64,
    /// Per validator process: CPU time used / wall time, in percent of
    /// one core.
    cpu_percent: Vec<f64>,
}

#[derive(Serialize, Default)]
struct Report {
    cores: usize,
    validators: usize,
    single_verify_per_s: f64,
    batch_verify_per_s: f64,
    verification_bound_tx_s: f64,
    empty_block_ms: f64,
    steps: Vec<Step>,
    max_committed_tx_s: f64,
    ratio_to_bound: f64,
    half_load_p99_ms: u64,
    one_down_tx_s: f64,
    one_down_fraction: f64,
    restart_back_in_step_s: f64,
    /// `symbiont audit --bench` of the network's ledger, exported at the
    /// end: its replay rate and the batch verification rate it measures.
    audit_signatures_per_s: u64,
    audit_batch_signatures_per_s: u64,
    audit_ratio: f64,
    audit_blocks: u64,
    audit_txs: u64,
}

/// Signatures verified per second on one core: one by one, and in
/// batches of 64 (as `verify_batch`).
fn verification_rates() -> (f64, f64) {
    let keys: Vec<Keypair> = (0..64u8).map(|i| Keypair::from_seed([i; 32])).collect();
    let messages: Vec<Vec<u8>> = (0..4096u32)
        .map(|i| format!("symbiont bench message {i}").into_bytes())
        .collect();
    let signed: Vec<(PublicKey, Signature)> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let key = &keys[i % keys.len()];
            (key.public(), key.sign(m))
        })
        .collect();
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for (m, (key, sig)) in messages.iter().zip(&signed).take(512) {
            key.verify(m, sig).expect("a good signature");
            count += 1;
        }
    }
    let single = count as f64 / start.elapsed().as_secs_f64();
    let items: Vec<(&[u8], PublicKey, Signature)> = messages
        .iter()
        .zip(&signed)
        .map(|(m, (k, s))| (m.as_slice(), *k, *s))
        .collect();
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for chunk in items.chunks(64).take(8) {
            verify_batch(chunk).expect("good signatures");
            count += chunk.len() as u64;
        }
    }
    (single, count as f64 / start.elapsed().as_secs_f64())
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks / 100.0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Submit times of the load's transactions, and when each was seen
/// committed.
#[derive(Default)]
struct Ledger {
    submitted: HashMap<Hash, Instant>,
    committed: Vec<(Instant, Duration)>,
}

pub fn run(args: BenchArgs, global: &Global) -> Result<()> {
    if cfg!(debug_assertions) {
        outln!(
            "warning: this is a debug build; run `cargo build --release` and target/release/symbiont bench for real figures"
        )?;
    }
    if args.steps.is_empty() || args.steps.contains(&0) {
        bail!("--steps: offered loads above 0, e.g. 100,200,400");
    }
    let mut report = Report {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        validators: 4,
        ..Report::default()
    };
    let (single, batch) = verification_rates();
    report.single_verify_per_s = single;
    report.batch_verify_per_s = batch;
    report.verification_bound_tx_s = report.cores as f64 * batch / report.validators as f64;
    if !global.json {
        outln!(
            "ed25519 on this machine, one core: {single:.0} verifications/s one by one, {batch:.0}/s in batches; bound for {} validators on {} cores: {:.0} tx/s",
            report.validators,
            report.cores,
            report.verification_bound_tx_s
        )?;
    }
    let dir = crate::park::run_dir(args.dir.as_deref(), "bench")?;
    let mut park = Park::create_testnet(&dir, report.validators)?;
    for i in 0..park.nodes.len() {
        park.start(i)?;
    }
    let result = client::runtime()?.block_on(measure(&mut park, &args, &mut report, global));
    drop(park);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result?;
    print(&report, global.json)
}

async fn measure(
    park: &mut Park,
    args: &BenchArgs,
    report: &mut Report,
    global: &Global,
) -> Result<()> {
    park.wait_for_height(0, 2, Duration::from_secs(60))
        .await
        .context("the network did not start")?;
    let say = |text: String| -> Result<()> {
        if !global.json {
            outln!("{text}")?;
        }
        Ok(())
    };
    let mut clients = Vec::new();
    for node in &park.nodes {
        clients.push(connect(&node.grpc).await?);
    }

    // Empty blocks.
    let status = |mut client: Client| async move {
        anyhow::Ok(
            client
                .node
                .status(pb::StatusRequest {})
                .await
                .map_err(refused)?
                .into_inner()
                .height,
        )
    };
    let (h0, t0) = (status(clients[0].clone()).await?, Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let h1 = status(clients[0].clone()).await?;
    report.empty_block_ms = t0.elapsed().as_secs_f64() * 1000.0 / (h1 - h0).max(1) as f64;
    say(format!(
        "empty blocks: {:.1} ms per height",
        report.empty_block_ms
    ))?;

    // The load's signers: 16 operator keys per firm, authorized by its admin.
    let signers: Vec<Keypair> = (0..SIGNERS)
        .map(|i| {
            let mut seed = [0x5b; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            Keypair::from_seed(seed)
        })
        .collect();
    for firm in 0..report.validators {
        let admin = symbiont_node::keyfile::read(&park.admin_key(&format!("firm-{firm}")))?;
        let rows = signers
            .iter()
            .enumerate()
            .filter(|(i, _)| i % report.validators == firm)
            .map(|(_, key)| Row {
                label: String::new(),
                kind: TxKind::AuthorizeKey {
                    firm: format!("firm-{firm}"),
                    key: key.public(),
                    role: KeyRole::Operator,
                },
                not_before_ms: 0,
            })
            .collect();
        let mut client = clients[0].clone();
        for outcome in
            client::submit_all(&mut client, &admin, rows, Duration::from_secs(60), |_| ()).await?
        {
            if !outcome.succeeded() {
                bail!("authorizing the load's keys: {}", outcome.sentence());
            }
        }
    }
    let chain_id = clients[0]
        .clone()
        .node
        .status(pb::StatusRequest {})
        .await
        .map_err(refused)?
        .into_inner()
        .chain_id;
    let signers = Arc::new(signers);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    // Commit times: the blocks node 0 streams.
    let follower = {
        let ledger = ledger.clone();
        let mut client = clients[0].clone();
        let from = status(clients[0].clone()).await? + 1;
        tokio::spawn(async move {
            let mut stream = client
                .stream
                .blocks(pb::StreamBlocksRequest { from_height: from })
                .await?
                .into_inner();
            while let Some(block) = stream.message().await? {
                let now = Instant::now();
                let decoded: symbiont_node::block::Block =
                    symbiont_contracts::codec::decode(&block.block)?;
                let mut ledger = ledger.lock().expect("not poisoned");
                for tx in &decoded.txs {
                    if let Some(sent) = ledger.submitted.remove(&tx.id()) {
                        ledger.committed.push((now, now - sent));
                    }
                }
            }
            anyhow::Ok(())
        })
    };
    let nonces = Arc::new(
        (0..SIGNERS)
            .map(|_| std::sync::atomic::AtomicU64::new(1))
            .collect::<Vec<_>>(),
    );
    let load = Load {
        chain_id,
        signers,
        nonces,
        ledger: ledger.clone(),
    };

    let all: Vec<usize> = (0..park.nodes.len()).collect();
    for &offered in &args.steps {
        let step = load
            .step(park, &clients, &all, offered, args.step_secs)
            .await?;
        say(format!(
            "offered {offered:>5} tx/s: committed {:>7.1} tx/s, p50 {:>5} ms, p99 {:>5} ms, CPU per node {:?} %",
            step.committed_tx_s, step.p50_ms, step.p99_ms, step.cpu_percent
        ))?;
        report.steps.push(step);
    }
    let best = report
        .steps
        .iter()
        .max_by(|a, b| a.committed_tx_s.total_cmp(&b.committed_tx_s))
        .context("no step")?;
    report.max_committed_tx_s = best.committed_tx_s;
    let best_offered = best.offered_tx_s;
    report.ratio_to_bound = report.max_committed_tx_s / report.verification_bound_tx_s;
    let half = (report.max_committed_tx_s / 2.0).max(1.0) as u32;
    let step = load
        .step(park, &clients, &all, half, args.step_secs)
        .await?;
    say(format!(
        "half of the highest rate, {half} tx/s: p50 {} ms, p99 {} ms",
        step.p50_ms, step.p99_ms
    ))?;
    report.half_load_p99_ms = step.p99_ms;

    // One of four down: the last validator killed, load on the others.
    let victim = park.nodes.len() - 1;
    let healthy = load
        .step(park, &clients, &all, best_offered, args.step_secs)
        .await?
        .committed_tx_s;
    park.kill(victim)?;
    let alive: Vec<usize> = (0..victim).collect();
    let down = load
        .step(park, &clients, &alive, best_offered, args.step_secs)
        .await?;
    report.one_down_tx_s = down.committed_tx_s;
    report.one_down_fraction = down.committed_tx_s / healthy.max(1e-9);
    say(format!(
        "one of four validators killed: {:.1} tx/s against {healthy:.1} healthy ({:.0} %)",
        down.committed_tx_s,
        report.one_down_fraction * 100.0
    ))?;
    let tip = status(clients[0].clone()).await?;
    let restarted = Instant::now();
    park.start(victim)?;
    park.wait_for_height(victim, tip, Duration::from_secs(120))
        .await?;
    report.restart_back_in_step_s = restarted.elapsed().as_secs_f64();
    say(format!(
        "restarted validator back in step (height {tip}) in {:.2} s",
        report.restart_back_in_step_s
    ))?;
    follower.abort();

    // The audit: the whole ledger of this run, exported and replayed.
    let file = park.dir.join("bench.symbexp");
    let me = std::env::current_exe()?;
    let export = std::process::Command::new(&me)
        .args(["--node", &park.nodes[0].grpc, "export", "--out"])
        .arg(&file)
        .output()?;
    if !export.status.success() {
        bail!(
            "symbiont export: {}",
            String::from_utf8_lossy(&export.stderr).trim()
        );
    }
    let audit = std::process::Command::new(&me)
        .args(["--json", "audit", "--bench"])
        .arg(&file)
        .output()?;
    let value: serde_json::Value = serde_json::from_slice(&audit.stdout).with_context(|| {
        format!(
            "symbiont audit: {}",
            String::from_utf8_lossy(&audit.stderr).trim()
        )
    })?;
    if value["ok"] != true {
        bail!("the audit of the bench's ledger failed: {value}");
    }
    let bench = &value["bench"];
    report.audit_signatures_per_s = bench["audit_signatures_per_s"].as_u64().unwrap_or(0);
    report.audit_batch_signatures_per_s = bench["batch_signatures_per_s"].as_u64().unwrap_or(0);
    report.audit_ratio = bench["ratio_permille"].as_u64().unwrap_or(0) as f64 / 1000.0;
    report.audit_blocks = value["report"]["counts"]["blocks"].as_u64().unwrap_or(0);
    report.audit_txs = value["report"]["counts"]["txs"].as_u64().unwrap_or(0);
    say(format!(
        "audit of the run's ledger ({} blocks, {} txs): {} signatures/s replayed, batch verification {} signatures/s, ratio {:.2}",
        report.audit_blocks,
        report.audit_txs,
        report.audit_signatures_per_s,
        report.audit_batch_signatures_per_s,
        report.audit_ratio
    ))?;
    Ok(())
}

struct Load {
    chain_id: String,
    signers: Arc<Vec<Keypair>>,
    nonces: Arc<Vec<std::sync::atomic::AtomicU64>>,
    ledger: Arc<Mutex<Ledger>>,
}

impl Load {
    /// Offers `rate` tx/s for `secs` through the nodes `targets`: the
    /// committed rate counts what was committed by the end; latencies
    /// count everything submitted, committed until the mempools are empty.
    async fn step(
        &self,
        park: &Park,
        clients: &[Client],
        targets: &[usize],
        rate: u32,
        secs: u64,
    ) -> Result<Step> {
        let pids: Vec<(String, u32)> = park.pids();
        let cpu_before: Vec<Option<f64>> = pids.iter().map(|(_, pid)| cpu_seconds(*pid)).collect();
        let start = Instant::now();
        let stop = start + Duration::from_secs(secs);
        {
            let mut ledger = self.ledger.lock().expect("not poisoned");
            ledger.committed.clear();
            ledger.submitted.clear();
        }
        let per_signer = f64::from(rate) / SIGNERS as f64;
        let mut tasks = Vec::new();
        for s in 0..SIGNERS {
            let client = clients[targets[s % targets.len()]].clone();
            let (signers, nonces, ledger) = (
                self.signers.clone(),
                self.nonces.clone(),
                self.ledger.clone(),
            );
            let chain_id = self.chain_id.clone();
            tasks.push(tokio::spawn(async move {
                signer_load(
                    client,
                    &signers[s],
                    &nonces[s],
                    &ledger,
                    &chain_id,
                    per_signer,
                    stop,
                )
                .await
            }));
        }
        for task in tasks {
            task.await??;
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu_percent = pids
            .iter()
            .zip(&cpu_before)
            .map(|((_, pid), before)| match (before, cpu_seconds(*pid)) {
                (Some(b), Some(a)) => ((a - b) / wall * 1000.0).round() / 10.0,
                _ => 0.0,
            })
            .collect();
        // Let what is in flight land: until every live node's mempool is
        // empty (at most 30 s), so the next step starts afresh.
        let drained = Instant::now() + Duration::from_secs(30);
        loop {
            let mut waiting = 0;
            for &i in targets {
                let mut client = clients[i].clone();
                if let Ok(status) = client.node.status(pb::StatusRequest {}).await {
                    waiting += status.into_inner().mempool_txs;
                }
            }
            if waiting == 0 || Instant::now() > drained {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ledger = self.ledger.lock().expect("not poisoned");
        let in_window: Vec<&(Instant, Duration)> = ledger
            .committed
            .iter()
            .filter(|(at, _)| *at <= stop)
            .collect();
        let mut latencies: Vec<u64> = ledger
            .committed
            .iter()
            .map(|(_, l)| l.as_millis() as u64)
            .collect();
        latencies.sort_unstable();
        Ok(Step {
            offered_tx_s: rate,
            committed_tx_s: in_window.len() as f64 / secs as f64,
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            cpu_percent,
        })
    }
}

/// One signer's share of the load: a transaction every 1/rate seconds
/// until `stop`, with consecutive nonces; a slot is skipped while
/// [`IN_FLIGHT`] of the signer's transactions wait (the node refuses
/// nonces far ahead) or when the node is busy.
async fn signer_load(
    mut client: Client,
    key: &Keypair,
    nonce: &std::sync::atomic::AtomicU64,
    ledger: &Mutex<Ledger>,
    chain_id: &str,
    rate: f64,
    stop: Instant,
) -> Result<()> {
    use std::sync::atomic::Ordering;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let mut next = Instant::now();
    let mut n = nonce.load(Ordering::SeqCst);
    let mut mine = std::collections::VecDeque::new();
    while Instant::now() < stop {
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        {
            // The follower removes committed transactions from `submitted`.
            let ledger = ledger.lock().expect("not poisoned");
            while mine
                .front()
                .is_some_and(|id| !ledger.submitted.contains_key(id))
            {
                mine.pop_front();
            }
        }
        if mine.len() as u64 >= IN_FLIGHT {
            continue;
        }
        let tx = SignedTx::sign(
            TxBody {
                chain_id: chain_id.to_string(),
                nonce: n,
                kind: TxKind::PostOffer {
                    listing: ListingTerms {
                        kind: "steam".into(),
                        quantity_per_period: 1_000 + n,
                        price: 2_500,
                        delivery_point: "gate 1".into(),
                        quality: Default::default(),
                        period_ms: 3_600_000,
                        periods: 24,
                        valid_until_ms: now_ms() + 86_400_000,
                    },
                },
            },
            key,
        );
        let id = tx.id();
        let sent = Instant::now();
        match client
            .node
            .submit_tx(pb::SubmitTxRequest { tx: tx.to_bytes() })
            .await
        {
            Ok(_) => {
                ledger
                    .lock()
                    .expect("not poisoned")
                    .submitted
                    .insert(id, sent);
                mine.push_back(id);
                n += 1;
            }
            Err(status) => {
                let refusal = Refusal::from_status(&status);
                match refusal.code.as_str() {
                    "bad_nonce" => match client::next_nonce_of(&refusal.message) {
                        Some(next_nonce) => n = next_nonce,
                        None => bail!("the load was refused: {refusal}"),
                    },
                    "nonce_taken" | "duplicate" | "already_included" => n += 1,
                    // Busy: the slot is skipped.
                    "nonce_too_far_ahead" | "signer_full" | "mempool_full" => {}
                    _ => bail!("the load was refused: {refusal}"),
                }
            }
        }
    }
    nonce.store(n, Ordering::SeqCst);
    Ok(())
}

fn print(report: &Report, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?)?;
        return Ok(());
    }
    outln!()?;
    let rows: Vec<Vec<String>> = report
        .steps
        .iter()
        .map(|s| {
            vec![
                s.offered_tx_s.to_string(),
                format!("{:.1}", s.committed_tx_s),
                s.p50_ms.to_string(),
                s.p99_ms.to_string(),
                s.cpu_percent
                    .iter()
                    .map(|c| format!("{c:.0}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    table(
        &[
            ">OFFERED TX/S",
            ">COMMITTED TX/S",
            ">P50 MS",
            ">P99 MS",
            "CPU % PER NODE",
        ],
        &rows,
    )?;
    outln!()?;
    let target = |ok: bool| if ok { "met" } else { "MISSED" };
    let rows = vec![
        vec![
            "committed tx/s / verification bound".to_string(),
            format!(
                "{:.1} / {:.0} = {:.2}",
                report.max_committed_tx_s, report.verification_bound_tx_s, report.ratio_to_bound
            ),
            ">= 0.5".into(),
            target(report.ratio_to_bound >= 0.5).into(),
        ],
        vec![
            "p99 finality at half the highest rate".into(),
            format!("{} ms", report.half_load_p99_ms),
            "< 500 ms".into(),
            target(report.half_load_p99_ms < 500).into(),
        ],
        vec![
            "empty-block finality".into(),
            format!("{:.1} ms per height", report.empty_block_ms),
            "< 30 ms".into(),
            target(report.empty_block_ms < 30.0).into(),
        ],
        vec![
            "one of four validators down".into(),
            format!("{:.0} % of healthy", report.one_down_fraction * 100.0),
            ">= 50 %".into(),
            target(report.one_down_fraction >= 0.5).into(),
        ],
        vec![
            "audit replay / batch verification".into(),
            format!(
                "{} / {} sig/s = {:.2}",
                report.audit_signatures_per_s,
                report.audit_batch_signatures_per_s,
                report.audit_ratio
            ),
            ">= 0.6".into(),
            target(report.audit_ratio >= 0.6).into(),
        ],
        vec![
            "restarted validator back in step".into(),
            format!("{:.2} s", report.restart_back_in_step_s),
            "< 2 s".into(),
            target(report.restart_back_in_step_s < 2.0).into(),
        ],
    ];
    table(&["MEASURE", "THIS RUN", "TARGET", ""], &rows)
}
