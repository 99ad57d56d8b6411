//! Runs the deterministic consensus simulator over many seeds in parallel.
//!
//! `symbiont-sim --seeds 100000` runs seeds 0..100000 on every core and
//! prints seeds run, events simulated, violations and the slowest decision;
//! `symbiont-sim --seed 42 --trace` replays one seed with its trace;
//! `symbiont-sim --rate` measures decided heights per simulated second for a
//! healthy cluster of four and with one of the four crashed for good.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Parser;
use symbiont_node::sim::{SimConfig, SimReport, run};

#[derive(Parser, Debug)]
#[command(about = "Deterministic simulation of Symbiont consensus")]
struct Args {
    /// Number of seeds to run (from --first).
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Run only this seed (and print its trace with --trace).
    #[arg(long)]
    seed: Option<u64>,
    /// Cluster size (drawn from the seed if absent).
    #[arg(long)]
    validators: Option<usize>,
    /// Worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long)]
    no_faults: bool,
    #[arg(long)]
    no_byzantine: bool,
    /// Every run has f Byzantine validators (instead of 0 to f).
    #[arg(long)]
    max_byzantine: bool,
    #[arg(long)]
    trace: bool,
    /// Measure decided heights per simulated second (healthy vs one crashed).
    #[arg(long)]
    rate: bool,
}

fn config(args: &Args, seed: u64) -> SimConfig {
    let mut config = SimConfig::new(seed);
    config.validators = args.validators;
    config.faults = !args.no_faults;
    config.byzantine = !args.no_byzantine;
    config.max_byzantine = args.max_byzantine;
    config.trace = args.trace;
    config
}

fn main() {
    let args = Args::parse();
    if args.rate {
        rate();
        return;
    }
    if let Some(seed) = args.seed {
        let report = run(config(&args, seed));
        for line in &report.trace {
            println!("{line}");
        }
        print_one(&report, args.validators);
        std::process::exit(if report.ok() { 0 } else { 1 });
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let next = Arc::new(AtomicU64::new(args.first));
    let end = args.first + args.seeds;
    let started = Instant::now();
    let args = Arc::new(args);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let next = next.clone();
            let args = args.clone();
            std::thread::spawn(move || {
                let mut totals = Totals::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        return totals;
                    }
                    let mut config = config(&args, seed);
                    config.trace = false;
                    totals.add(run(config));
                }
            })
        })
        .collect();
    let mut totals = Totals::default();
    for worker in workers {
        totals.merge(worker.join().expect("worker"));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "seeds: {}  steps (events): {}  heights decided: {} ({:.1} per simulated second)  crashes: {}  evidence: {}  violations: {}",
        totals.seeds,
        totals.events,
        totals.heights,
        totals.heights as f64 * 1000.0 / totals.simulated_ms.max(1) as f64,
        totals.crashes,
        totals.evidence,
        totals.failures.len()
    );
    println!(
        "slowest decision: {} ms (seed {})  simulated: {} s  wall: {:.1} s  ({:.0} seeds/s on {} threads)",
        totals.slowest_ms,
        totals.slowest_seed,
        totals.simulated_ms / 1000,
        seconds,
        totals.seeds as f64 / seconds,
        threads
    );
    for report in totals.failures.iter().take(10) {
        print_one(report, args.validators);
    }
    if !totals.failures.is_empty() {
        std::process::exit(1);
    }
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    events: u64,
    heights: u64,
    crashes: u64,
    evidence: u64,
    simulated_ms: u64,
    slowest_ms: u64,
    slowest_seed: u64,
    failures: Vec<SimReport>,
}

impl Totals {
    fn add(&mut self, report: SimReport) {
        self.seeds += 1;
        self.events += report.events;
        self.heights += report.min_decided_height;
        self.crashes += report.crashes;
        self.evidence += report.evidence;
        self.simulated_ms += report.simulated_ms;
        if report.slowest_decision_ms > self.slowest_ms {
            self.slowest_ms = report.slowest_decision_ms;
            self.slowest_seed = report.seed;
        }
        if !report.ok() {
            self.failures.push(report);
        }
    }

    fn merge(&mut self, other: Totals) {
        self.seeds += other.seeds;
        self.events += other.events;
        self.heights += other.heights;
        self.crashes += other.crashes;
        self.evidence += other.evidence;
        self.simulated_ms += other.simulated_ms;
        if other.slowest_ms > self.slowest_ms {
            self.slowest_ms = other.slowest_ms;
            self.slowest_seed = other.slowest_seed;
        }
        self.failures.extend(other.failures);
        self.failures.sort_by_key(|r| r.seed);
    }
}

fn print_one(report: &SimReport, validators: Option<usize>) {
    println!(
        "seed {}: n={} byzantine={} events={} simulated={} ms heights={} crashes={} evidence={} slowest decision={} ms",
        report.seed,
        report.validators,
        report.byzantine,
        report.events,
        report.simulated_ms,
        report.min_decided_height,
        report.crashes,
        report.evidence,
        report.slowest_decision_ms
    );
    for violation in &report.violations {
        println!("  VIOLATION: {violation}");
    }
    if !report.ok() {
        let fixed = validators
            .map(|n| format!(" --validators {n}"))
            .unwrap_or_default();
        println!("  replay: {}{fixed}", report.replay_command());
    }
}

fn rate() {
    const RUN_MS: u64 = 120_000;
    let measure = |crashed: Vec<u16>, plain: bool| {
        let mut config = SimConfig::new(7);
        config.validators = Some(4);
        config.faults = false;
        config.byzantine = false;
        config.crashed_forever = crashed;
        config.plain = plain;
        config.delay_ms = Some((5, 15));
        let report = symbiont_node::sim::run_for(config, RUN_MS);
        report.decided_by_first as f64 * 1000.0 / report.simulated_ms as f64
    };
    let healthy = measure(vec![], false);
    let crashed = measure(vec![3], false);
    let plain_healthy = measure(vec![], true);
    let plain_crashed = measure(vec![3], true);
    println!(
        "decided heights per simulated second, 4 validators, one-way delay 5-15 ms, {} s simulated:",
        RUN_MS / 1000
    );
    println!("  symbiont, healthy:                   {healthy:.1}");
    println!(
        "  symbiont, one of four crashed:       {crashed:.1}  ({:.0}% of healthy)",
        100.0 * crashed / healthy
    );
    println!("  plain Tendermint (3 s propose), healthy:      {plain_healthy:.1}");
    println!(
        "  plain Tendermint (3 s propose), one crashed:  {plain_crashed:.1}  ({:.0}% of healthy)",
        100.0 * plain_crashed / plain_healthy
    );
}
