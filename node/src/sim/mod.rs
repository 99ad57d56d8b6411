//! A deterministic simulator for the consensus engine (TigerBeetle VOPR
//! style). One seed decides everything: cluster size and powers, network
//! delays, loss, duplication, reordering, partitions forming and healing,
//! crashes and restarts that lose unsynced WAL bytes, clock skew, and up to
//! f Byzantine validators. Checkers run on every decision and every message
//! an honest validator sends. Test infrastructure: the node does not use it.

pub mod context;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::{Arc, Mutex};

use crate::consensus::core::{Params, Validity};
use crate::consensus::engine::{Engine, EngineInput, EngineOutput};
use crate::consensus::keeper::MAX_ROUND_LOOKAHEAD;
use crate::consensus::proposer::{
    MISSED_TURN_WINDOW, ProposerHistory, ProposerSelector, WeightedRoundRobin,
};
use crate::consensus::signed::{
    CommitCertificate, Message, SignedProposal, SignedVote, proposal_sign_bytes, vote_sign_bytes,
};
use crate::consensus::signer::{SignGuard, SignState, SignStateStore, Signer, StoreError};
use crate::consensus::types::{Height, Round, Timeout, ValidatorSet, VoteType};
use crate::consensus::wal::{SharedMemoryWal, WalEntry, WalError, WalStorage, decode_log};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

pub use context::{
    Address, Parent, Rng, SIM_CHAIN_ID, SimBlock, SimCertificate, SimContext, block_is_valid,
    is_timely, sim_sign,
};

type Ctx = SimContext;
const CHAIN_ID: &str = SIM_CHAIN_ID;

/// What a run may do. Everything else is drawn from the seed.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Cluster size; drawn from the seed if `None`.
    pub validators: Option<usize>,
    /// Network faults, partitions, crashes and skew during the fault phase.
    pub faults: bool,
    /// Up to f Byzantine validators.
    pub byzantine: bool,
    /// Validators crashed for the whole run (rate measurements).
    pub crashed_forever: Vec<Address>,
    /// Plain Tendermint for comparison: 3 s propose timeout, no proposer
    /// skipping, no adaptation.
    pub plain: bool,
    /// Length of the fault phase; drawn from the seed if `None`.
    pub fault_phase_ms: Option<u64>,
    /// Fixed one-way delay range (min, max), drawn if `None`.
    pub delay_ms: Option<(u64, u64)>,
    /// Keep a trace of events.
    pub trace: bool,
    /// Test-only: break the lock rule in every honest validator.
    #[cfg(test)]
    pub ignore_lock: bool,
    /// Test-only: a crash wipes the WAL and the sign state (amnesia).
    #[cfg(test)]
    pub amnesia: bool,
    /// Test-only: honest validators accept every proposal as valid.
    #[cfg(test)]
    pub accept_invalid: bool,
    /// Every run has f Byzantine validators (instead of 0 to f).
    pub max_byzantine: bool,
    /// Validators that vote like honest ones but never send a proposal
    /// (counted as Byzantine), whatever the seed draws.
    pub never_propose: Vec<Address>,
    /// A long asynchronous period (no proposal arrives, one validator cut
    /// off, rounds run on past the lookahead window, then a validator
    /// crashes for good); drawn from the seed if `None`.
    pub long_asynchrony: Option<bool>,
    /// Test-only: the old exclusion rule (skip validators missing from the
    /// last three certificates' signers).
    #[cfg(test)]
    pub old_exclusion_rule: bool,
    /// Test-only: drop votes beyond the lookahead window, as the old engine
    /// did (no catching up on rounds from them).
    #[cfg(test)]
    pub drop_far_votes: bool,
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            validators: None,
            faults: true,
            byzantine: true,
            crashed_forever: Vec::new(),
            plain: false,
            fault_phase_ms: None,
            delay_ms: None,
            trace: false,
            #[cfg(test)]
            ignore_lock: false,
            #[cfg(test)]
            amnesia: false,
            #[cfg(test)]
            accept_invalid: false,
            max_byzantine: false,
            never_propose: Vec::new(),
            long_asynchrony: None,
            #[cfg(test)]
            old_exclusion_rule: false,
            #[cfg(test)]
            drop_far_votes: false,
        }
    }
}

/// Heights every honest node must decide after the fault phase ends.
pub const LIVENESS_HEIGHTS: u64 = 2;
/// Largest difference between a block's time and a validator's clock for
/// the validator to prevote it as a fresh proposal.
pub const MAX_CLOCK_DRIFT_MS: u64 = 1000;
/// Simulated time allowed for them: about 20 rounds at the largest timeouts
/// the adaptive level allows.
pub const LIVENESS_BOUND_MS: u64 = 60_000;
/// A run that takes more events than this is a livelock.
pub const MAX_EVENTS: u64 = 3_000_000;
const GOSSIP_INTERVAL_MS: u64 = 400;

#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub seed: u64,
    pub validators: usize,
    pub byzantine: usize,
    pub events: u64,
    pub simulated_ms: u64,
    /// Lowest height decided by every honest live node.
    pub min_decided_height: u64,
    /// Height decided by node 0 (rate measurements).
    pub decided_by_first: u64,
    pub crashes: u64,
    pub evidence: u64,
    /// Longest time between two decisions of one honest node.
    pub slowest_decision_ms: u64,
    pub violations: Vec<String>,
    pub trace: Vec<String>,
}

impl SimReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run --release -p symbiont-node --bin symbiont-sim -- --seed {} --trace",
            self.seed
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Honest,
    Silent,
    Equivocate,
    DoubleProposal,
    RandomVotes,
    Garbage,
    /// Equivocates votes and proposes two blocks.
    Adversary,
    /// Prevotes and precommits every value proposed to it, to everyone,
    /// and proposes two blocks.
    VoteEverything,
    /// Votes like an honest validator, never proposes.
    NeverPropose,
    /// Floods the next height with votes: forged in others' names, and its
    /// own for many rounds and values.
    Flood,
}

#[derive(Clone, Debug)]
enum Event {
    Deliver {
        to: Address,
        message: Message<Ctx>,
    },
    Timer {
        node: Address,
        incarnation: u32,
        timeout: Timeout,
    },
    Gossip {
        node: Address,
    },
    Crash {
        node: Address,
    },
    /// `from` asks `to` for the commits from `height` on (block sync).
    SyncRequest {
        from: Address,
        to: Address,
        height: Height,
    },
    /// Arms a power cut on the node's next WAL sync or sign-state save.
    ArmPowerCut {
        node: Address,
        wal: bool,
    },
    Restart {
        node: Address,
    },
    Partition,
    Heal,
    /// Cuts a node off from everyone (until the next heal).
    Isolate {
        node: Address,
    },
    /// Starts or ends an asynchronous period: no proposal arrives.
    DropProposals(bool),
    /// Crashes a node for the rest of the run (a crash fault counted
    /// against f).
    Retire {
        node: Address,
    },
}

/// A power cut armed on a node's disk: the next write of that kind fails
/// (and is not durable), and the node dies in the middle of its step.
#[derive(Clone, Default)]
struct PowerCut {
    armed: Arc<AtomicBool>,
    happened: Arc<AtomicBool>,
}

impl PowerCut {
    fn strikes(&self) -> bool {
        let strikes = self.armed.swap(false, AtomicOrdering::SeqCst);
        if strikes {
            self.happened.store(true, AtomicOrdering::SeqCst);
        }
        strikes
    }
}

/// The sign-state "disk": saves are durable when they return.
#[derive(Clone, Default)]
struct SharedSignStore(Arc<Mutex<Option<SignState<Ctx>>>>, PowerCut);

impl SignStateStore<Ctx> for SharedSignStore {
    fn load(&mut self) -> Result<Option<SignState<Ctx>>, StoreError> {
        Ok(self.0.lock().expect("store").clone())
    }
    fn save(&mut self, state: &SignState<Ctx>) -> Result<(), StoreError> {
        if self.1.strikes() {
            return Err(StoreError::Failed("power cut during save".into()));
        }
        *self.0.lock().expect("store") = Some(state.clone());
        Ok(())
    }
}

/// The WAL "disk", with a power cut that can strike during a sync.
#[derive(Clone)]
struct SimWal(SharedMemoryWal, PowerCut);

impl WalStorage for SimWal {
    fn append(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        self.0.append(bytes)
    }
    fn sync(&mut self) -> Result<(), WalError> {
        if self.1.strikes() {
            return Err(WalError::Io(std::io::Error::other("power cut during sync")));
        }
        self.0.sync()
    }
    fn reset(&mut self) -> Result<(), WalError> {
        self.0.reset()
    }
    fn truncate(&mut self, len: usize) -> Result<(), WalError> {
        self.0.truncate(len)
    }
    fn read_all(&mut self) -> Result<Vec<u8>, WalError> {
        self.0.read_all()
    }
    fn synced_len(&mut self) -> Result<usize, WalError> {
        self.0.synced_len()
    }
}

struct SimSigner(Address);

impl Signer<Ctx> for SimSigner {
    fn address(&self) -> Address {
        self.0
    }
    fn sign(&self, message: &[u8]) -> u64 {
        sim_sign(self.0, message)
    }
}

struct Node {
    id: Address,
    behaviour: Behaviour,
    engine: Option<Engine<Ctx>>,
    incarnation: u32,
    /// Durable: committed blocks and their certificates.
    chain: Vec<(SimBlock, CommitCertificate<Ctx>)>,
    wal: SharedMemoryWal,
    sign_store: SharedSignStore,
    /// Strikes the next WAL sync.
    wal_cut: PowerCut,
    /// Timer speed in permille of real (clock skew).
    clock_permille: u64,
    last_decision_ms: u64,
    /// Last commit served to each peer: (height, time).
    served: BTreeMap<Address, (Height, u64)>,
    /// When we last asked each peer for commits.
    requested: BTreeMap<Address, u64>,
    /// Commits received for heights ahead of ours (block sync), bounded.
    sync_buffer: BTreeMap<Height, (SimBlock, CommitCertificate<Ctx>)>,
    /// The local clock's offset from simulated time (ms).
    clock_offset_ms: i64,
    /// Derived from the chain (so durable with it): missed proposer turns
    /// and the exclusions they imply.
    history: ProposerHistory<Ctx>,
    /// Crashed for good.
    retired: bool,
}

/// Heights sent at once to a peer that is behind, and kept by a node that
/// receives them ahead of its height.
const SYNC_BATCH: u64 = 32;

struct Scheduled {
    time: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.time, self.seq).cmp(&(other.time, other.seq))
    }
}

/// Network behaviour drawn from the seed.
struct Network {
    min_delay_ms: u64,
    max_delay_ms: u64,
    loss_permille: u64,
    duplicate_permille: u64,
    /// blocked[from][to]: messages from `from` to `to` are dropped.
    blocked: Vec<Vec<bool>>,
    /// slow[from][to]: delay multiplier of a slow link (1: normal), during
    /// the fault phase.
    slow: Vec<Vec<u64>>,
    /// One validator whose outgoing links are this many times slower for
    /// the whole run (the farthest site): its votes always arrive last.
    persistent_slow: Option<(Address, u64)>,
    /// An asynchronous period: proposals are lost.
    drop_proposals: bool,
}

pub struct Simulator {
    config: SimConfig,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<Node>,
    validators: ValidatorSet<Ctx>,
    params: Params,
    selector: Arc<dyn ProposerSelector<Ctx>>,
    network: Network,
    fault_phase_ms: u64,
    /// Chance that an honest node dies right after committing a block.
    crash_after_decide_permille: u64,
    /// Decided value per height (agreement).
    decisions: BTreeMap<Height, u64>,
    /// What each honest validator signed: (validator, height, round, step) -> message.
    signed: BTreeMap<(Address, Height, Round, u8), Vec<u8>>,
    /// Values some validator proposed (validity).
    proposed_ids: std::collections::BTreeSet<u64>,
    report: SimReport,
    target_height: Option<Height>,
    fixed_duration_ms: Option<u64>,
    /// The long asynchronous period, if the seed drew one: (start, end).
    long_asynchrony: Option<(u64, u64)>,
    /// The exclusions in force at each height (every node must agree).
    excluded_by_height: BTreeMap<Height, Vec<Address>>,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Self {
        let mut rng = Rng::new(config.seed);
        let n = config
            .validators
            .unwrap_or_else(|| *rng.pick(&[4usize, 4, 5, 7, 7, 10]));
        let equal = rng.chance(600);
        let powers: Vec<u64> = (0..n)
            .map(|_| if equal { 1 } else { rng.range(1, 3) })
            .collect();
        let validators =
            ValidatorSet::new(powers.iter().enumerate().map(|(i, p)| (i as Address, *p)))
                .expect("valid set");
        // Byzantine validators: strictly less than 1/3 of the power (n >= 3f+1).
        let mut behaviours = vec![Behaviour::Honest; n];
        if config.byzantine {
            let wanted = rng.range(0, n as u64 / 3 + 1);
            let wanted = if config.max_byzantine {
                n as u64
            } else {
                wanted
            };
            let mut power = 0;
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, rng.range(0, i as u64) as usize);
            }
            let mut chosen = 0;
            for i in order {
                if chosen >= wanted || 3 * (power + powers[i]) >= validators.total_power() {
                    continue;
                }
                // Crashed-forever validators are the fault; keep them honest.
                if config.crashed_forever.contains(&(i as Address)) {
                    continue;
                }
                power += powers[i];
                chosen += 1;
                behaviours[i] = *rng.pick(&[
                    Behaviour::Silent,
                    Behaviour::Equivocate,
                    Behaviour::Equivocate,
                    Behaviour::DoubleProposal,
                    Behaviour::RandomVotes,
                    Behaviour::Garbage,
                    Behaviour::Adversary,
                    Behaviour::VoteEverything,
                    Behaviour::VoteEverything,
                    Behaviour::NeverPropose,
                    Behaviour::Flood,
                ]);
            }
        }
        for address in &config.never_propose {
            behaviours[*address as usize] = Behaviour::NeverPropose;
        }
        let (min_delay_ms, max_delay_ms) = config.delay_ms.unwrap_or_else(|| {
            let min = rng.range(1, 10);
            (min, min + rng.range(1, 100))
        });
        let faults = config.faults;
        let mut network = Network {
            min_delay_ms,
            max_delay_ms,
            loss_permille: if faults && rng.chance(700) {
                if rng.chance(300) {
                    rng.range(0, 400)
                } else {
                    rng.range(0, 150)
                }
            } else {
                0
            },
            duplicate_permille: if faults && rng.chance(500) {
                rng.range(0, 100)
            } else {
                0
            },
            blocked: vec![vec![false; n]; n],
            slow: vec![vec![1; n]; n],
            persistent_slow: None,
            drop_proposals: false,
        };
        if faults && rng.chance(300) {
            let node = rng.range(0, n as u64 - 1) as Address;
            network.persistent_slow = Some((node, rng.range(2, 4)));
        }
        let long_asynchrony = config
            .long_asynchrony
            .unwrap_or_else(|| faults && rng.chance(15));
        if faults && rng.chance(500) {
            // Some links are several times slower than the rest.
            for from in 0..n {
                for to in 0..n {
                    if from != to && rng.chance(250) {
                        network.slow[from][to] = rng.range(2, 8);
                    }
                }
            }
        }
        let params = if long_asynchrony {
            // Rounds pass fast, so a run reaches past the lookahead window
            // in about two simulated minutes.
            Params {
                timeout_propose_ms: 60,
                timeout_propose_delta_ms: 30,
                timeout_prevote_ms: 20,
                timeout_prevote_delta_ms: 10,
                timeout_precommit_ms: 20,
                timeout_precommit_delta_ms: 10,
                max_timeout_level: 8,
            }
        } else if config.plain {
            Params {
                timeout_propose_ms: 3000,
                timeout_propose_delta_ms: 500,
                timeout_prevote_ms: 1000,
                timeout_prevote_delta_ms: 500,
                timeout_precommit_ms: 1000,
                timeout_precommit_delta_ms: 500,
                max_timeout_level: 0,
            }
        } else {
            Params::default()
        };
        let mut fault_phase_ms = config
            .fault_phase_ms
            .unwrap_or_else(|| rng.range(1000, 4000));
        let long_asynchrony = long_asynchrony.then(|| {
            let start = rng.range(0, fault_phase_ms / 2);
            // Long enough for rounds past the lookahead window: the sum of
            // the timeouts of that many rounds.
            let rounds = MAX_ROUND_LOOKAHEAD as u64 + rng.range(8, 40);
            let per_round = |r: u64| {
                params.timeout_propose_ms
                    + params.timeout_prevote_ms
                    + params.timeout_precommit_ms
                    + r * (params.timeout_propose_delta_ms
                        + params.timeout_prevote_delta_ms
                        + params.timeout_precommit_delta_ms)
            };
            let length: u64 = (0..rounds).map(per_round).sum();
            fault_phase_ms = fault_phase_ms.max(start + length + 100);
            (start, start + length)
        });
        let skew = if faults { rng.range(0, 200) } else { 0 };
        let crash_after_decide_permille = if faults && rng.chance(400) {
            rng.range(20, 200)
        } else {
            0
        };
        let nodes = (0..n)
            .map(|i| Node {
                id: i as Address,
                behaviour: behaviours[i],
                engine: None,
                incarnation: 0,
                chain: Vec::new(),
                wal: SharedMemoryWal::default(),
                sign_store: SharedSignStore::default(),
                wal_cut: PowerCut::default(),
                clock_permille: 1000 - skew + rng.range(0, 2 * skew),
                last_decision_ms: 0,
                served: BTreeMap::new(),
                sync_buffer: BTreeMap::new(),
                requested: BTreeMap::new(),
                clock_offset_ms: if faults {
                    rng.range(0, MAX_CLOCK_DRIFT_MS / 2) as i64 - (MAX_CLOCK_DRIFT_MS / 4) as i64
                } else {
                    0
                },
                history: ProposerHistory::default(),
                retired: false,
            })
            .collect();
        let report = SimReport {
            seed: config.seed,
            validators: n,
            byzantine: behaviours
                .iter()
                .filter(|b| **b != Behaviour::Honest)
                .count(),
            ..SimReport::default()
        };
        Self {
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            validators,
            params,
            selector: Arc::new(WeightedRoundRobin),
            network,
            fault_phase_ms,
            crash_after_decide_permille,
            decisions: BTreeMap::new(),
            signed: BTreeMap::new(),
            proposed_ids: Default::default(),
            report,
            target_height: None,
            fixed_duration_ms: None,
            long_asynchrony,
            excluded_by_height: BTreeMap::new(),
            config,
        }
    }

    fn trace(&mut self, line: impl FnOnce() -> String) {
        if self.config.trace {
            let line = format!("{:>7}ms {}", self.now, line());
            self.report.trace.push(line);
        }
    }

    fn violation(&mut self, what: String) {
        if self.report.violations.len() < 16 {
            self.trace(|| format!("VIOLATION {what}"));
            self.report.violations.push(what);
            if self.config.trace {
                for i in 0..self.nodes.len() {
                    let line = self.node_state(i);
                    self.trace(|| line);
                }
            }
        }
    }

    fn node_state(&self, i: usize) -> String {
        let node = &self.nodes[i];
        match &node.engine {
            None => format!("node {i} ({:?}) down", node.behaviour),
            Some(engine) => {
                let core = engine.core();
                format!(
                    "node {i} ({:?}) refused {} sign state {:?} height {} round {} step {:?} locked {:?} valid {:?} excluded {:?}",
                    node.behaviour,
                    engine.refused_signatures,
                    engine.guard().last().map(|s| (s.height, s.round, s.step)),
                    core.height(),
                    core.round(),
                    core.step(),
                    core.locked()
                        .map(|(r, v)| (*r, <Ctx as crate::consensus::types::Context>::value_id(v))),
                    core.valid()
                        .map(|(r, v)| (*r, <Ctx as crate::consensus::types::Context>::value_id(v))),
                    core.excluded_proposers()
                ) + &(0..2u32)
                    .map(|r| {
                        let keeper = core.keeper();
                        format!(
                            " | r{r}: prevotes {} for valid {:?} polka {:?} precommits {}",
                            keeper.power_any(r, VoteType::Prevote),
                            core.valid().or(core.locked()).map(|(_, v)| {
                                keeper.voters_for(
                                    r,
                                    VoteType::Prevote,
                                    &Some(<Ctx as crate::consensus::types::Context>::value_id(v)),
                                )
                            }),
                            keeper.quorum_value(r, VoteType::Prevote),
                            keeper.power_any(r, VoteType::Precommit)
                        )
                    })
                    .collect::<String>()
            }
        }
    }

    fn schedule(&mut self, delay_ms: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            time: self.now + delay_ms,
            seq: self.seq,
            event,
        }));
    }

    fn honest(&self, node: Address) -> bool {
        self.nodes[node as usize].behaviour == Behaviour::Honest
    }

    fn in_fault_phase(&self) -> bool {
        self.config.faults && self.now < self.fault_phase_ms
    }

    /// Runs to the end and returns the report.
    pub fn run(mut self) -> SimReport {
        let n = self.nodes.len();
        for i in 0..n {
            let id = i as Address;
            if self.config.crashed_forever.contains(&id) {
                continue;
            }
            self.start_node(id);
            let first_gossip = self.rng.range(1, GOSSIP_INTERVAL_MS);
            self.schedule(first_gossip, Event::Gossip { node: id });
        }
        if self.config.faults {
            self.plan_faults();
        }
        let end_ms = self.fault_phase_ms + LIVENESS_BOUND_MS;
        while let Some(Reverse(next)) = self.queue.pop() {
            self.now = next.time;
            self.report.events += 1;
            if self.report.events > MAX_EVENTS {
                self.violation(format!("no end after {MAX_EVENTS} events"));
                break;
            }
            self.step(next.event);
            if let Some(duration) = self.fixed_duration_ms {
                if self.now >= duration || !self.report.violations.is_empty() {
                    break;
                }
                continue;
            }
            if !self.report.violations.is_empty() || self.done() {
                break;
            }
            if self.now > end_ms {
                let target = self.target_height.unwrap_or(0);
                self.violation(format!(
                    "liveness: honest nodes did not all decide height {target} within {LIVENESS_BOUND_MS} ms after the faults ended (lowest: {})",
                    self.lowest_honest_height()
                ));
                break;
            }
        }
        self.report.simulated_ms = self.now;
        self.report.min_decided_height = self.lowest_honest_height();
        self.report.decided_by_first = self.nodes[0].chain.len() as u64;
        self.report
    }

    fn live_honest(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|node| {
            node.behaviour == Behaviour::Honest
                && !node.retired
                && !self.config.crashed_forever.contains(&node.id)
        })
    }

    fn lowest_honest_height(&self) -> u64 {
        self.live_honest()
            .map(|node| node.chain.len() as u64)
            .min()
            .unwrap_or(0)
    }

    fn done(&mut self) -> bool {
        if self.now < self.fault_phase_ms {
            return false;
        }
        let target = match self.target_height {
            Some(t) => t,
            None => {
                let highest = self
                    .live_honest()
                    .map(|node| node.chain.len() as u64)
                    .max()
                    .unwrap_or(0);
                let t = highest + LIVENESS_HEIGHTS;
                self.target_height = Some(t);
                self.trace(|| format!("faults over; every honest node must reach height {t}"));
                t
            }
        };
        self.lowest_honest_height() >= target
    }

    /// Crashes, restarts and partitions during the fault phase.
    fn plan_faults(&mut self) {
        let n = self.nodes.len() as u64;
        let phase = self.fault_phase_ms;
        if self.rng.chance(600) {
            let crashes = self.rng.range(1, 4);
            for _ in 0..crashes {
                let node = self.rng.range(0, n - 1) as Address;
                if !self.honest(node) || self.config.crashed_forever.contains(&node) {
                    continue;
                }
                let at = self.rng.range(0, phase.saturating_sub(1));
                let down = self.rng.range(1, 1500);
                self.schedule(at, Event::Crash { node });
                self.schedule((at + down).min(phase), Event::Restart { node });
            }
        }
        if self.rng.chance(400) {
            // Crash where bugs live: in the middle of a write.
            for _ in 0..self.rng.range(1, 3) {
                let node = self.rng.range(0, n - 1) as Address;
                if !self.honest(node) || self.config.crashed_forever.contains(&node) {
                    continue;
                }
                let at = self.rng.range(0, phase.saturating_sub(1));
                let wal = self.rng.chance(500);
                self.schedule(at, Event::ArmPowerCut { node, wal });
            }
        }
        if self.rng.chance(600) {
            let partitions = self.rng.range(1, 3);
            for _ in 0..partitions {
                let at = self.rng.range(0, phase.saturating_sub(1));
                let length = self.rng.range(50, 2000);
                self.schedule(at, Event::Partition);
                self.schedule((at + length).min(phase), Event::Heal);
            }
        }
        if let Some((start, end)) = self.long_asynchrony {
            self.plan_long_asynchrony(start, end);
        }
        self.schedule(phase, Event::Heal);
    }

    /// No proposal arrives from `start` to `end`, so rounds pass without
    /// decisions, and one honest validator is cut off all along: it stays
    /// in its round while the others run past the lookahead window. At the
    /// end a validator of the others crashes for good, if f allows: the
    /// rest then needs the one left behind to catch up on rounds.
    fn plan_long_asynchrony(&mut self, start: u64, end: u64) {
        let n = self.nodes.len();
        let candidates: Vec<Address> = (0..n as Address)
            .filter(|a| self.honest(*a) && !self.config.crashed_forever.contains(a))
            .collect();
        if candidates.len() < 2 {
            return;
        }
        let laggard = candidates[self.rng.range(0, candidates.len() as u64 - 1) as usize];
        self.schedule(start, Event::DropProposals(true));
        for at in (start..end).step_by(200) {
            // Keep the laggard cut off through the random partitions' heals.
            self.schedule(at - self.now, Event::Isolate { node: laggard });
        }
        self.schedule(end, Event::DropProposals(false));
        self.schedule(end, Event::Heal);
        // Faulty power so far: the Byzantine and the crashed for good.
        let faulty: u64 = (0..n as Address)
            .filter(|a| !self.honest(*a) || self.config.crashed_forever.contains(a))
            .filter_map(|a| self.validators.power_of(&a))
            .sum();
        let others: Vec<Address> = candidates.into_iter().filter(|a| *a != laggard).collect();
        let victim = others[self.rng.range(0, others.len() as u64 - 1) as usize];
        let power = self.validators.power_of(&victim).unwrap_or(0);
        // Faulty power stays strictly below 1/3, as for the Byzantine.
        if 3 * (faulty + power) < self.validators.total_power() {
            self.schedule(end, Event::Retire { node: victim });
        }
        self.trace(|| format!("long asynchrony {start}..{end} ms, node {laggard} cut off"));
    }

    fn partition(&mut self) {
        let n = self.nodes.len();
        let mut side = vec![false; n];
        let kind = self.rng.range(0, 2);
        match kind {
            0 => side[self.rng.range(0, n as u64 - 1) as usize] = true,
            _ => {
                for s in side.iter_mut() {
                    *s = self.rng.chance(500);
                }
            }
        }
        let asymmetric = kind == 2;
        for from in 0..n {
            for to in 0..n {
                let cut = side[from] != side[to] && (!asymmetric || side[from]);
                self.network.blocked[from][to] = self.network.blocked[from][to] || cut;
            }
        }
        let side_copy = side.clone();
        self.trace(|| format!("partition {side_copy:?} asymmetric={asymmetric}"));
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Deliver { to, message } => self.deliver(to, message),
            Event::Timer {
                node,
                incarnation,
                timeout,
            } => {
                if self.nodes[node as usize].incarnation == incarnation {
                    self.trace(|| format!("node {node} timeout {timeout:?}"));
                    self.input(node, EngineInput::Timeout(timeout));
                }
            }
            Event::Gossip { node } => {
                self.gossip(node);
                self.schedule(GOSSIP_INTERVAL_MS, Event::Gossip { node });
            }
            Event::Crash { node } => self.crash(node),
            Event::SyncRequest { from, to, height } => {
                if self.nodes[to as usize].engine.is_some() {
                    self.serve_commit(to, from, height);
                }
            }
            Event::ArmPowerCut { node, wal } => {
                let node = &self.nodes[node as usize];
                let cut = if wal {
                    &node.wal_cut
                } else {
                    &node.sign_store.1
                };
                cut.armed.store(true, AtomicOrdering::SeqCst);
            }
            Event::Restart { node } => {
                let node_state = &self.nodes[node as usize];
                if node_state.engine.is_none() && !node_state.retired {
                    self.start_node(node);
                }
            }
            Event::Partition => {
                if self.in_fault_phase() {
                    self.partition();
                }
            }
            Event::Heal => {
                for row in self.network.blocked.iter_mut() {
                    row.iter_mut().for_each(|b| *b = false);
                }
                self.trace(|| "heal".into());
            }
            Event::Isolate { node } => {
                for other in 0..self.nodes.len() {
                    if other != node as usize {
                        self.network.blocked[node as usize][other] = true;
                        self.network.blocked[other][node as usize] = true;
                    }
                }
            }
            Event::DropProposals(drop) => {
                self.network.drop_proposals = drop;
                self.trace(|| format!("proposals lost: {drop}"));
            }
            Event::Retire { node } => {
                self.crash(node);
                self.nodes[node as usize].retired = true;
                self.trace(|| format!("node {node} is down for good"));
            }
        }
    }

    /// The exclusions in force at the height after `id`'s chain.
    fn excluded_for(&self, id: Address) -> Vec<Address> {
        if self.config.plain {
            return Vec::new();
        }
        let node = &self.nodes[id as usize];
        let height = node.chain.len() as Height + 1;
        #[cfg(test)]
        if self.config.old_exclusion_rule {
            return tests::old_absent_validators(&self.validators, &node.chain);
        }
        node.history.excluded_at(height)
    }

    /// After `id` committed its last block: the exclusions of the next
    /// height, a function of the chain alone.
    fn derive_exclusions(&mut self, id: Address) {
        let node = &mut self.nodes[id as usize];
        let height = node.chain.len() as Height;
        let round = node.chain[height as usize - 1]
            .0
            .last_commit
            .as_ref()
            .map(|c| c.round);
        node.history.on_commit(
            self.selector.as_ref(),
            height,
            round,
            &self.validators,
            &self.validators,
        );
        let excluded = self.excluded_for(id);
        self.check_exclusions(id, height + 1, excluded);
    }

    /// Every node computes the same exclusions from the chain, and no live
    /// honest validator stays excluded for longer than one missed-turn
    /// window (it can miss a turn only while it is not excluded).
    fn check_exclusions(&mut self, id: Address, height: Height, excluded: Vec<Address>) {
        match self.excluded_by_height.get(&height) {
            Some(known) if *known != excluded => {
                let known = known.clone();
                self.violation(format!(
                    "node {id} excludes {excluded:?} at height {height}, another node {known:?}"
                ));
                return;
            }
            Some(_) => return,
            None => {}
        }
        self.excluded_by_height.insert(height, excluded);
        let first = height.saturating_sub(MISSED_TURN_WINDOW + 1).max(1);
        for validator in 0..self.nodes.len() as Address {
            let node = &self.nodes[validator as usize];
            if node.behaviour != Behaviour::Honest || node.retired {
                continue;
            }
            let always = (first..=height).all(|h| {
                self.excluded_by_height
                    .get(&h)
                    .is_some_and(|list| list.contains(&validator))
            });
            if height > MISSED_TURN_WINDOW + 1 && always {
                self.violation(format!(
                    "honest validator {validator} excluded from proposing at every height from {first} to {height}"
                ));
                return;
            }
        }
        self.excluded_by_height
            .retain(|h, _| h + MISSED_TURN_WINDOW + 2 >= height);
    }

    fn start_node(&mut self, id: Address) {
        let node = &self.nodes[id as usize];
        let guard = SignGuard::open(Box::new(SimSigner(id)), Box::new(node.sign_store.clone()))
            .expect("memory store");
        let committed = node.chain.len() as Height;
        let excluded = self.excluded_for(id);
        if self.config.trace {
            let wal = self.wal_summary(id);
            self.trace(|| format!("node {id} starts from WAL {wal}"));
        }
        let node = &self.nodes[id as usize];
        let recovered = Engine::recover(
            CHAIN_ID.to_string(),
            self.params.clone(),
            self.selector.clone(),
            guard,
            Box::new(SimWal(node.wal.clone(), node.wal_cut.clone())),
            committed,
            self.validators.clone(),
            excluded,
        );
        let (mut engine, outputs) = match recovered {
            Ok(recovered) => recovered,
            Err(error) => {
                // A power cut during recovery: down again, retry later.
                if !self.take_power_cut(id) {
                    self.violation(format!("node {id} cannot recover: {error}"));
                }
                self.schedule(100, Event::Restart { node: id });
                return;
            }
        };
        #[cfg(test)]
        if self.config.ignore_lock && self.honest(id) {
            engine.core_mut().ignore_lock = true;
        }
        #[cfg(test)]
        {
            engine.drop_far_votes = self.config.drop_far_votes;
        }
        #[cfg(not(test))]
        let _ = &mut engine;
        let incarnation = self.nodes[id as usize].incarnation;
        self.trace(|| {
            format!(
                "node {id} starts (incarnation {incarnation}) at height {}",
                committed + 1
            )
        });
        self.nodes[id as usize].engine = Some(engine);
        self.nodes[id as usize].last_decision_ms = self.now;
        self.execute(id, outputs);
    }

    fn crash(&mut self, id: Address) {
        let keep = {
            let wal = self.nodes[id as usize].wal.0.lock().expect("wal");
            let unsynced = wal.unsynced_len() as u64;
            self.rng.range(0, unsynced)
        };
        // What the power cut leaves after that: nothing, zeros (the file
        // grew, its data never reached the disk) or garbage.
        let junk: Vec<u8> = match self.rng.range(0, 9) {
            0..=1 => vec![0; self.rng.range(1, 4096) as usize],
            2 => (0..self.rng.range(1, 600))
                .map(|_| self.rng.next_u64() as u8)
                .collect(),
            _ => Vec::new(),
        };
        let node = &mut self.nodes[id as usize];
        if node.engine.is_none() {
            return;
        }
        node.engine = None;
        node.incarnation += 1;
        node.wal
            .0
            .lock()
            .expect("wal")
            .crash_leaving(keep as usize, &junk);
        #[cfg(test)]
        if self.config.amnesia {
            node.wal.0.lock().expect("wal").crash(0);
            *node.wal.0.lock().expect("wal") = Default::default();
            *node.sign_store.0.lock().expect("store") = None;
        }
        self.report.crashes += 1;
        let junk = junk.len();
        self.trace(|| {
            format!("node {id} crashes, keeps {keep} unsynced WAL bytes, then {junk} bytes of junk")
        });
    }

    fn deliver(&mut self, to: Address, message: Message<Ctx>) {
        if self.nodes[to as usize].engine.is_none() {
            return;
        }
        if self.nodes[to as usize].behaviour == Behaviour::VoteEverything
            && let Message::Proposal(p) = &message
        {
            self.vote_for(to, &p.proposal);
        }
        let input = match message {
            // Its verdict is asked for when the engine processes it for
            // its height (`EngineOutput::CheckProposal`).
            Message::Proposal(proposal) => EngineInput::Proposal(proposal),
            Message::Vote(vote) => EngineInput::Vote(vote),
            Message::Commit { value, certificate } => {
                let node = &mut self.nodes[to as usize];
                let height = node.engine.as_ref().map(|e| e.height()).unwrap_or(0);
                if certificate.height > height && certificate.height <= height + SYNC_BATCH {
                    node.sync_buffer
                        .insert(certificate.height, (value, certificate));
                    return;
                }
                EngineInput::Commit { value, certificate }
            }
        };
        self.input(to, input);
    }

    /// Feeds an input to a live node and executes the outputs.
    fn input(&mut self, id: Address, input: EngineInput<Ctx>) {
        let Some(engine) = self.nodes[id as usize].engine.as_mut() else {
            return;
        };
        let refused_before = engine.refused_signatures;
        let result = engine.handle(input);
        if engine.refused_signatures > refused_before {
            self.trace(|| format!("node {id} refused to sign a conflicting message"));
        }
        match result {
            Ok(outputs) => self.execute(id, outputs),
            Err(e) => self.engine_failed(id, e),
        }
    }

    /// A node's WAL for traces: sizes, then one short line per record.
    fn wal_summary(&self, id: Address) -> String {
        let (bytes, durable, synced) = {
            let wal = self.nodes[id as usize].wal.0.lock().expect("wal");
            (wal.bytes.clone(), wal.durable_len, wal.synced_len)
        };
        let records = match decode_log::<Ctx>(&bytes, synced) {
            Ok(replay) => replay.entries.iter().map(describe_wal_entry).collect(),
            Err(e) => vec![e.to_string()],
        };
        format!(
            "({} bytes, {durable} durable): {}",
            bytes.len(),
            records.join("; ")
        )
    }

    /// Whether a power cut was injected into `id`'s storage (and clears it).
    fn take_power_cut(&self, id: Address) -> bool {
        let node = &self.nodes[id as usize];
        let wal = node.wal_cut.happened.swap(false, AtomicOrdering::SeqCst);
        let store = node
            .sign_store
            .1
            .happened
            .swap(false, AtomicOrdering::SeqCst);
        wal | store
    }

    /// An engine error is a power cut we injected (the node dies in the
    /// middle of its step and restarts later), or a real failure.
    fn engine_failed(&mut self, id: Address, error: crate::consensus::engine::EngineError) {
        if !self.take_power_cut(id) {
            self.violation(format!("node {id} stopped: {error}"));
            return;
        }
        if self.config.trace {
            let state = self.node_state(id as usize);
            let wal = self.wal_summary(id);
            self.trace(|| format!("before power cut: {state}; WAL {wal}"));
        }
        self.trace(|| format!("node {id} loses power mid-step: {error}"));
        self.crash(id);
        let down = self.rng.range(1, 1000);
        let at = if self.in_fault_phase() {
            (self.now + down).min(self.fault_phase_ms) - self.now
        } else {
            1
        };
        self.schedule(at.max(1), Event::Restart { node: id });
    }

    fn execute(&mut self, id: Address, outputs: Vec<EngineOutput<Ctx>>) {
        let mut pending: std::collections::VecDeque<EngineOutput<Ctx>> = outputs.into();
        while let Some(output) = pending.pop_front() {
            match output {
                EngineOutput::Broadcast(message) => self.broadcast(id, message),
                EngineOutput::ScheduleTimeout {
                    timeout,
                    duration_ms,
                } => {
                    let node = &self.nodes[id as usize];
                    let delay = duration_ms * node.clock_permille / 1000;
                    let incarnation = node.incarnation;
                    self.schedule(
                        delay.max(1),
                        Event::Timer {
                            node: id,
                            incarnation,
                            timeout,
                        },
                    );
                }
                EngineOutput::CheckProposal(proposal) => {
                    let validity = self.validity(id, &proposal.proposal.value);
                    let Some(engine) = self.nodes[id as usize].engine.as_mut() else {
                        return;
                    };
                    match engine.handle(EngineInput::ProposalVerdict { proposal, validity }) {
                        Ok(more) => pending.extend(more),
                        Err(e) => return self.engine_failed(id, e),
                    }
                }
                EngineOutput::RequestValue { height, round } => {
                    let value = self.make_block(id, height);
                    self.proposed_ids
                        .insert(<Ctx as crate::consensus::types::Context>::value_id(&value));
                    let Some(engine) = self.nodes[id as usize].engine.as_mut() else {
                        return;
                    };
                    match engine.handle(EngineInput::ProposeValue {
                        height,
                        round,
                        value,
                    }) {
                        Ok(more) => pending.extend(more),
                        Err(e) => return self.engine_failed(id, e),
                    }
                }
                EngineOutput::Decided { value, certificate } => {
                    let Some(next) = self.on_decided(id, value, certificate) else {
                        continue;
                    };
                    // Crash where bugs live: just after a commit.
                    if self.in_fault_phase()
                        && self.honest(id)
                        && self.rng.chance(self.crash_after_decide_permille)
                    {
                        self.crash(id);
                        let down = self.rng.range(1, 1000);
                        let at = (self.now + down).min(self.fault_phase_ms) - self.now;
                        self.schedule(at.max(1), Event::Restart { node: id });
                        return;
                    }
                    let Some(engine) = self.nodes[id as usize].engine.as_mut() else {
                        return;
                    };
                    match engine.handle(next) {
                        Ok(more) => pending.extend(more),
                        Err(e) => return self.engine_failed(id, e),
                    }
                    // Block sync: a commit for the new height may be waiting.
                    let node = &mut self.nodes[id as usize];
                    let height = node.chain.len() as Height + 1;
                    node.sync_buffer.retain(|h, _| *h >= height);
                    if let Some((value, certificate)) = node.sync_buffer.remove(&height) {
                        let engine = node.engine.as_mut().expect("live");
                        match engine.handle(EngineInput::Commit { value, certificate }) {
                            Ok(more) => pending.extend(more),
                            Err(e) => return self.engine_failed(id, e),
                        }
                    }
                }
                EngineOutput::Evidence(evidence) => {
                    self.report.evidence += 1;
                    let height = self.nodes[id as usize].chain.len() as Height + 1;
                    if evidence.verify(CHAIN_ID, &self.validators, height).is_err() {
                        self.violation(format!("node {id} produced unverifiable evidence"));
                    }
                    let culprit = evidence.first.vote.validator;
                    if self.honest(culprit) && self.honest(id) {
                        self.violation(format!("evidence against honest validator {culprit}"));
                    }
                }
                EngineOutput::PeerBehind { peer, height } => self.serve_commit(id, peer, height),
                EngineOutput::PeerAhead { peer, .. } => self.request_commits(id, peer),
            }
        }
    }

    /// `id`'s clock: simulated time plus its offset.
    fn clock_ms(&self, id: Address) -> u64 {
        self.now
            .saturating_add_signed(self.nodes[id as usize].clock_offset_ms)
    }

    /// The block `id` proposes at `height`: its clock's time (after the
    /// parent's) and its certificate of the parent. A Byzantine proposer
    /// leaves out a signer whenever the rest is still a quorum.
    fn make_block(&mut self, id: Address, height: Height) -> SimBlock {
        let node = &self.nodes[id as usize];
        let (parent_time, mut last_commit) = match node.chain.last() {
            Some((block, certificate)) => (block.time_ms, Some(SimCertificate::from(certificate))),
            None => (0, None),
        };
        if !self.honest(id)
            && let Some(certificate) = &mut last_commit
        {
            let omit = self.rng.range(0, certificate.signatures.len() as u64 - 1) as usize;
            let mut fewer = certificate.clone();
            fewer.signatures.remove(omit);
            let power: u64 = fewer
                .signatures
                .iter()
                .filter_map(|(a, _)| self.validators.power_of(a))
                .sum();
            if self.validators.is_quorum(power) {
                *certificate = fewer;
            }
        }
        SimBlock {
            height,
            proposer: id,
            payload: self.rng.next_u64(),
            time_ms: self.clock_ms(id).max(parent_time + 1),
            last_commit,
        }
    }

    /// `id`'s verdict on `block` for the height it is at, as a host gives
    /// it: against its own chain and its own clock.
    fn validity(&self, id: Address, block: &SimBlock) -> Validity {
        #[cfg(test)]
        if self.config.accept_invalid {
            return Validity::Valid;
        }
        let node = &self.nodes[id as usize];
        let height = node.chain.len() as Height + 1;
        let parent = Parent {
            block: node.chain.last().map(|(b, _)| b),
        };
        if !block_is_valid(block, height, parent, &self.validators) {
            Validity::Invalid
        } else if is_timely(block, self.clock_ms(id), MAX_CLOCK_DRIFT_MS) {
            Validity::Valid
        } else {
            Validity::Untimely
        }
    }

    /// Checks a decision, commits it, and returns the next height's start.
    fn on_decided(
        &mut self,
        id: Address,
        value: SimBlock,
        certificate: CommitCertificate<Ctx>,
    ) -> Option<EngineInput<Ctx>> {
        let height = self.nodes[id as usize].chain.len() as Height + 1;
        let value_id = <Ctx as crate::consensus::types::Context>::value_id(&value);
        if self.honest(id) {
            if certificate.height != height {
                self.violation(format!(
                    "node {id} decided height {} while at {height}",
                    certificate.height
                ));
            }
            if let Err(e) = certificate.verify(CHAIN_ID, height, &self.validators) {
                self.violation(format!(
                    "node {id} decided height {height} with a bad certificate: {e}"
                ));
            }
            if certificate.value_id != value_id {
                self.violation(format!(
                    "node {id}: certificate for another value at height {height}"
                ));
            }
            let parent = Parent {
                block: self.nodes[id as usize].chain.last().map(|(b, _)| b),
            };
            if !block_is_valid(&value, height, parent, &self.validators) {
                self.violation(format!(
                    "validity: node {id} decided an invalid block at height {height}"
                ));
            }
            match self.decisions.get(&height) {
                Some(existing) if *existing != value_id => {
                    self.violation(format!(
                        "agreement: node {id} decided {value_id:x} at height {height}, another honest node {existing:x}"
                    ));
                }
                Some(_) => {}
                None => {
                    self.decisions.insert(height, value_id);
                }
            }
            let gap = self.now - self.nodes[id as usize].last_decision_ms;
            self.report.slowest_decision_ms = self.report.slowest_decision_ms.max(gap);
        }
        self.trace(|| {
            format!(
                "node {id} decides height {height} round {} value {value_id:x}",
                certificate.round
            )
        });
        let node = &mut self.nodes[id as usize];
        node.last_decision_ms = self.now;
        node.chain.push((value, certificate));
        self.derive_exclusions(id);
        let excluded = self.excluded_for(id);
        Some(EngineInput::StartHeight {
            height: height + 1,
            validators: self.validators.clone(),
            excluded_proposers: excluded,
        })
    }

    /// Asks a peer that is ahead for the commits we miss, at most every
    /// 200 ms per peer; the request travels like a message.
    fn request_commits(&mut self, id: Address, peer: Address) {
        let now = self.now;
        let node = &mut self.nodes[id as usize];
        if node.requested.get(&peer).is_some_and(|at| now < at + 200) {
            return;
        }
        node.requested.insert(peer, now);
        let height = node.chain.len() as Height + 1;
        if self.network.blocked[id as usize][peer as usize] {
            return;
        }
        if self.in_fault_phase() && self.rng.chance(self.network.loss_permille) {
            return;
        }
        let delay = self
            .rng
            .range(self.network.min_delay_ms, self.network.max_delay_ms);
        self.schedule(
            delay,
            Event::SyncRequest {
                from: id,
                to: peer,
                height,
            },
        );
    }

    /// Sends a peer that is behind the commits from `height` on (a batch).
    fn serve_commit(&mut self, id: Address, peer: Address, height: Height) {
        let node = &self.nodes[id as usize];
        let have = node.chain.len() as Height;
        if height == 0 || height > have {
            return;
        }
        if let Some((served_height, at)) = node.served.get(&peer)
            && *served_height == height
            && self.now < at + 100
        {
            return;
        }
        let now = self.now;
        self.nodes[id as usize].served.insert(peer, (height, now));
        let last = have.min(height + SYNC_BATCH - 1);
        for h in height..=last {
            let (value, certificate) = self.nodes[id as usize].chain[h as usize - 1].clone();
            self.send(id, peer, Message::Commit { value, certificate });
        }
    }

    fn gossip(&mut self, id: Address) {
        let Some(engine) = self.nodes[id as usize].engine.as_ref() else {
            return;
        };
        let messages = engine.rebroadcast();
        let height = engine.height();
        let round = engine.core().round();
        for message in messages {
            self.broadcast(id, message);
        }
        match self.nodes[id as usize].behaviour {
            Behaviour::RandomVotes => {
                for _ in 0..3 {
                    let vote = crate::consensus::types::Vote {
                        height,
                        round: round + self.rng.range(0, 2) as Round,
                        vote_type: if self.rng.chance(500) {
                            VoteType::Prevote
                        } else {
                            VoteType::Precommit
                        },
                        value: self.random_value_id(),
                        validator: id,
                    };
                    let signature = sim_sign(id, &vote_sign_bytes(CHAIN_ID, &vote));
                    self.send_all(id, Message::Vote(SignedVote { vote, signature }));
                }
            }
            Behaviour::Garbage => {
                let victim = self.rng.range(0, self.nodes.len() as u64 - 1) as Address;
                let vote = crate::consensus::types::Vote {
                    height: height + self.rng.range(0, 3) - 1,
                    round: self.rng.range(0, 1000) as Round,
                    vote_type: VoteType::Precommit,
                    value: self.random_value_id(),
                    validator: victim,
                };
                let signature = self.rng.next_u64();
                self.send_all(id, Message::Vote(SignedVote { vote, signature }));
                let mut block = self.make_block(id, height);
                block.last_commit = Some(SimCertificate {
                    height: height.saturating_sub(1),
                    round: 0,
                    value_id: self.rng.next_u64(),
                    signatures: vec![(victim, 0), (victim, 0)],
                });
                let proposal = crate::consensus::types::Proposal {
                    height,
                    round,
                    value: block,
                    valid_round: if self.rng.chance(500) {
                        Some(round + 5)
                    } else {
                        None
                    },
                    proposer: id,
                };
                let signature = sim_sign(id, &proposal_sign_bytes(CHAIN_ID, &proposal));
                self.send_all(
                    id,
                    Message::Proposal(SignedProposal {
                        proposal,
                        signature,
                    }),
                );
            }
            Behaviour::Flood => {
                // Votes for the next height: forged in others' names (bad
                // signatures), then its own for many rounds and values.
                for i in 0..64u64 {
                    let own = i % 2 == 0;
                    let validator = if own {
                        id
                    } else {
                        self.rng.range(0, self.nodes.len() as u64 - 1) as Address
                    };
                    let vote = crate::consensus::types::Vote {
                        height: height + 1,
                        round: self.rng.range(0, 3) as Round,
                        vote_type: if self.rng.chance(500) {
                            VoteType::Prevote
                        } else {
                            VoteType::Precommit
                        },
                        value: self.random_value_id(),
                        validator,
                    };
                    let signature = if own {
                        sim_sign(id, &vote_sign_bytes(CHAIN_ID, &vote))
                    } else {
                        self.rng.next_u64()
                    };
                    self.send_all(id, Message::Vote(SignedVote { vote, signature }));
                }
            }
            _ => {}
        }
    }

    fn random_value_id(&mut self) -> Option<u64> {
        if self.rng.chance(300) {
            return None;
        }
        if let Some(id) = self
            .decisions
            .values()
            .last()
            .copied()
            .filter(|_| self.rng.chance(300))
        {
            return Some(id);
        }
        Some(self.rng.next_u64())
    }

    /// Sends a node's message to everyone, as its behaviour dictates, and
    /// checks that an honest validator never signs two different messages
    /// for one height, round and step.
    fn broadcast(&mut self, id: Address, message: Message<Ctx>) {
        let behaviour = self.nodes[id as usize].behaviour;
        self.trace(|| format!("node {id} ({behaviour:?}) sends {}", describe(&message)));
        if behaviour == Behaviour::Honest {
            self.check_double_sign(id, &message);
        }
        match behaviour {
            Behaviour::Silent => {}
            Behaviour::NeverPropose if matches!(message, Message::Proposal(_)) => {}
            Behaviour::Adversary | Behaviour::VoteEverything
                if matches!(message, Message::Proposal(_)) =>
            {
                self.double_proposal(id, message)
            }
            Behaviour::Equivocate | Behaviour::Adversary => {
                for to in 0..self.nodes.len() as Address {
                    if to == id {
                        continue;
                    }
                    let message = match &message {
                        Message::Vote(vote) if self.rng.chance(500) => {
                            let mut vote = vote.vote.clone();
                            vote.value = match vote.value {
                                Some(_) => self.random_value_id(),
                                None => self.proposed_ids.iter().next().copied(),
                            };
                            let signature = sim_sign(id, &vote_sign_bytes(CHAIN_ID, &vote));
                            Message::Vote(SignedVote { vote, signature })
                        }
                        other => other.clone(),
                    };
                    self.send(id, to, message);
                }
            }
            Behaviour::DoubleProposal => self.double_proposal(id, message),
            Behaviour::Garbage if matches!(message, Message::Proposal(_)) => {
                // Proposes invalid blocks: a time not after its parent's.
                let Message::Proposal(p) = message else {
                    unreachable!()
                };
                let mut proposal = p.proposal;
                proposal.value.time_ms = 0;
                let signature = sim_sign(id, &proposal_sign_bytes(CHAIN_ID, &proposal));
                self.send_all(
                    id,
                    Message::Proposal(SignedProposal {
                        proposal,
                        signature,
                    }),
                );
            }
            _ => self.send_all(id, message),
        }
    }

    /// Sends a second, different proposal to about half of the validators.
    fn double_proposal(&mut self, id: Address, message: Message<Ctx>) {
        let alternative = match &message {
            Message::Proposal(p) => {
                // A fresh proposal of another value: honest validators
                // must refuse it when locked (L22).
                let mut proposal = p.proposal.clone();
                proposal.value.payload ^= 1;
                proposal.valid_round = None;
                self.proposed_ids
                    .insert(<Ctx as crate::consensus::types::Context>::value_id(
                        &proposal.value,
                    ));
                let signature = sim_sign(id, &proposal_sign_bytes(CHAIN_ID, &proposal));
                Some(Message::Proposal(SignedProposal {
                    proposal,
                    signature,
                }))
            }
            _ => None,
        };
        for to in 0..self.nodes.len() as Address {
            if to == id {
                continue;
            }
            match &alternative {
                Some(alt) if self.rng.chance(500) => self.send(id, to, alt.clone()),
                _ => self.send(id, to, message.clone()),
            }
        }
    }

    /// A Byzantine validator votes for `proposal`'s value in both steps.
    fn vote_for(&mut self, id: Address, proposal: &crate::consensus::types::Proposal<Ctx>) {
        for vote_type in [VoteType::Prevote, VoteType::Precommit] {
            let vote = crate::consensus::types::Vote {
                height: proposal.height,
                round: proposal.round,
                vote_type,
                value: Some(<Ctx as crate::consensus::types::Context>::value_id(
                    &proposal.value,
                )),
                validator: id,
            };
            let signature = sim_sign(id, &vote_sign_bytes(CHAIN_ID, &vote));
            self.send_all(id, Message::Vote(SignedVote { vote, signature }));
        }
    }

    fn check_double_sign(&mut self, id: Address, message: &Message<Ctx>) {
        let (key, bytes) = match message {
            Message::Proposal(p) => (
                (id, p.proposal.height, p.proposal.round, 0u8),
                proposal_sign_bytes(CHAIN_ID, &p.proposal),
            ),
            Message::Vote(v) if v.vote.validator == id => (
                (
                    id,
                    v.vote.height,
                    v.vote.round,
                    match v.vote.vote_type {
                        VoteType::Prevote => 1,
                        VoteType::Precommit => 2,
                    },
                ),
                vote_sign_bytes(CHAIN_ID, &v.vote),
            ),
            _ => return,
        };
        match self.signed.get(&key) {
            Some(existing) if *existing != bytes => {
                self.violation(format!(
                    "double sign: honest validator {id} signed two messages at {key:?}"
                ));
            }
            Some(_) => {}
            None => {
                self.signed.insert(key, bytes);
            }
        }
    }

    fn send_all(&mut self, from: Address, message: Message<Ctx>) {
        for to in 0..self.nodes.len() as Address {
            if to != from {
                self.send(from, to, message.clone());
            }
        }
    }

    fn send(&mut self, from: Address, to: Address, message: Message<Ctx>) {
        if self.network.blocked[from as usize][to as usize] {
            return;
        }
        if self.network.drop_proposals && matches!(message, Message::Proposal(_)) {
            return;
        }
        let faulty = self.in_fault_phase();
        if faulty && self.rng.chance(self.network.loss_permille) {
            return;
        }
        let copies = if faulty && self.rng.chance(self.network.duplicate_permille) {
            2
        } else {
            1
        };
        let slow = if faulty {
            self.network.slow[from as usize][to as usize]
        } else {
            1
        };
        let slow = match self.network.persistent_slow {
            Some((node, factor)) if node == from => slow.max(factor),
            _ => slow,
        };
        for _ in 0..copies {
            let delay = slow
                * self
                    .rng
                    .range(self.network.min_delay_ms, self.network.max_delay_ms);
            self.schedule(
                delay,
                Event::Deliver {
                    to,
                    message: message.clone(),
                },
            );
        }
    }
}

fn describe(message: &Message<Ctx>) -> String {
    match message {
        Message::Proposal(p) => format!(
            "proposal h{} r{} {:x} vr{:?}",
            p.proposal.height,
            p.proposal.round,
            <Ctx as crate::consensus::types::Context>::value_id(&p.proposal.value),
            p.proposal.valid_round
        ),
        Message::Vote(v) => format!(
            "{:?} h{} r{} {:?} by {}",
            v.vote.vote_type,
            v.vote.height,
            v.vote.round,
            v.vote.value.map(|x| format!("{x:x}")),
            v.vote.validator
        ),
        Message::Commit { certificate, .. } => format!("commit h{}", certificate.height),
    }
}

/// Runs one seed.
pub fn run(config: SimConfig) -> SimReport {
    Simulator::new(config).run()
}

/// Runs for `duration_ms` of simulated time, with no liveness deadline
/// (rate measurements; fault-free configurations).
pub fn run_for(config: SimConfig, duration_ms: u64) -> SimReport {
    let mut simulator = Simulator::new(config);
    simulator.fixed_duration_ms = Some(duration_ms);
    simulator.run()
}

#[cfg(test)]
mod tests;

fn describe_wal_entry(entry: &WalEntry<Ctx>) -> String {
    let vote = |v: &SignedVote<Ctx>| {
        format!(
            "{:?} r{} {:?} by {}",
            v.vote.vote_type, v.vote.round, v.vote.value, v.vote.validator
        )
    };
    match entry {
        WalEntry::StartHeight { height, .. } => format!("start h{height}"),
        WalEntry::Proposal { proposal, validity } => format!(
            "proposal r{} vr{:?} {validity:?}",
            proposal.proposal.round, proposal.proposal.valid_round
        ),
        WalEntry::JumpToRound { round, .. } => format!("jump to r{round}"),
        WalEntry::Vote(v) => vote(v),
        WalEntry::ProposeValue { round, .. } => format!("value for r{round}"),
        WalEntry::Timeout(t) => format!("timeout {:?} r{}", t.kind, t.round),
        WalEntry::OwnProposal(p) => format!("own proposal r{}", p.proposal.round),
        WalEntry::OwnVote(v) => format!("own {}", vote(v)),
    }
}
