//! Crash at every point of a step: a validator is driven through a height
//! (lock on one value in round 0, a new polka and decision in round 1), and
//! the process dies at every WAL sync, every sign-state save, and after
//! every input with any amount of the unsynced WAL lost. After recovery it
//! must never send a message conflicting with one it sent before, must keep
//! its lock, and must still decide.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use symbiont_node::consensus::core::{Params, Validity};
use symbiont_node::consensus::engine::{Engine, EngineInput, EngineOutput};
use symbiont_node::consensus::proposer::{ProposerSelector, WeightedRoundRobin};
use symbiont_node::consensus::signed::{
    Message, SignedProposal, SignedVote, proposal_sign_bytes, vote_sign_bytes,
};
use symbiont_node::consensus::signer::{
    SignGuard, SignState, SignStateStore, SignStep, Signer, StoreError,
};
use symbiont_node::consensus::wal::{SharedMemoryWal, WalEntry, WalError, WalStorage, decode_log};
use symbiont_node::consensus::{Proposal, Timeout, TimeoutKind, ValidatorSet, Vote, VoteType};
use symbiont_node::sim::{SimBlock, SimContext, sim_sign};

type C = SimContext;
const CHAIN: &str = "sim";

/// Storage that dies at the n-th sync (n counts down; negative: never).
#[derive(Clone)]
struct CrashingWal {
    inner: SharedMemoryWal,
    syncs_left: Arc<AtomicI64>,
}

impl WalStorage for CrashingWal {
    fn append(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        self.inner.append(bytes)
    }
    fn sync(&mut self) -> Result<(), WalError> {
        if self.syncs_left.fetch_sub(1, Ordering::SeqCst) == 0 {
            return Err(WalError::Io(std::io::Error::other(
                "power lost during sync",
            )));
        }
        self.inner.sync()
    }
    fn reset(&mut self) -> Result<(), WalError> {
        self.inner.reset()
    }
    fn truncate(&mut self, len: usize) -> Result<(), WalError> {
        self.inner.truncate(len)
    }
    fn read_all(&mut self) -> Result<Vec<u8>, WalError> {
        self.inner.read_all()
    }
    fn synced_len(&mut self) -> Result<usize, WalError> {
        self.inner.synced_len()
    }
}

/// Sign-state storage that dies at the n-th save, and checks the
/// persist order on every save: the message whose sign state is being
/// saved must already be in the durable part of the WAL, so no signature
/// exists that recovery cannot re-derive (also when the message was first
/// derived while replaying the WAL after a crash).
#[derive(Clone, Default)]
struct CrashingStore {
    state: Arc<Mutex<Option<SignState<C>>>>,
    saves_left: Arc<AtomicI64>,
    wal: SharedMemoryWal,
}

impl CrashingStore {
    fn assert_in_durable_wal(&self, state: &SignState<C>) {
        let durable = {
            let wal = self.wal.0.lock().unwrap();
            // On the disk, whatever happens next (a crash keeps it).
            wal.bytes[..wal.durable_len].to_vec()
        };
        let entries = decode_log::<C>(&durable, durable.len())
            .expect("durable WAL decodes")
            .entries;
        let recorded = entries.iter().any(|entry| match entry {
            WalEntry::OwnVote(v) => {
                let step = SignStep::from(v.vote.vote_type);
                (v.vote.height, v.vote.round, step) == (state.height, state.round, state.step)
                    && v.signature == state.signature
            }
            WalEntry::OwnProposal(p) => {
                (p.proposal.height, p.proposal.round, SignStep::Proposal)
                    == (state.height, state.round, state.step)
                    && p.signature == state.signature
            }
            _ => false,
        });
        assert!(
            recorded,
            "sign state {:?} saved before its message reached the durable WAL",
            (state.height, state.round, state.step)
        );
    }
}

impl SignStateStore<C> for CrashingStore {
    fn load(&mut self) -> Result<Option<SignState<C>>, StoreError> {
        Ok(self.state.lock().unwrap().clone())
    }
    fn save(&mut self, state: &SignState<C>) -> Result<(), StoreError> {
        if self.saves_left.fetch_sub(1, Ordering::SeqCst) == 0 {
            return Err(StoreError::Failed("power lost during save".into()));
        }
        self.assert_in_durable_wal(state);
        *self.state.lock().unwrap() = Some(state.clone());
        Ok(())
    }
}

struct SimSigner(u16);
impl Signer<C> for SimSigner {
    fn address(&self) -> u16 {
        self.0
    }
    fn sign(&self, message: &[u8]) -> u64 {
        sim_sign(self.0, message)
    }
}

fn validators() -> ValidatorSet<C> {
    ValidatorSet::new((0..4u16).map(|i| (i, 1))).unwrap()
}

fn block(payload: u64) -> SimBlock {
    SimBlock {
        height: 1,
        proposer: 0,
        payload,
        time_ms: 1,
        last_commit: None,
    }
}

fn id(b: &SimBlock) -> u64 {
    <C as symbiont_node::consensus::Context>::value_id(b)
}

struct Script {
    me: u16,
    inputs: Vec<EngineInput<C>>,
    red: SimBlock,
    blue: SimBlock,
}

/// Round 0: "red" proposed, polka, we lock on red; nil precommits, round 1.
/// Round 1: "blue" proposed fresh: we prevote nil (locked); a polka for blue
/// moves our lock; 2f+1 precommits decide blue.
fn script() -> Script {
    let set = validators();
    let proposer = |round| WeightedRoundRobin.proposer(&set, 1, round, &[]);
    let (p0, p1) = (proposer(0), proposer(1));
    let me = (0..4u16).find(|v| *v != p0 && *v != p1).unwrap();
    let others: Vec<u16> = (0..4u16).filter(|v| *v != me).collect();
    let mut red = block(1);
    red.proposer = p0;
    let mut blue = block(2);
    blue.proposer = p1;
    let proposal = |round, value: &SimBlock, proposer| {
        let proposal = Proposal {
            height: 1,
            round,
            value: value.clone(),
            valid_round: None,
            proposer,
        };
        let signature = sim_sign(proposer, &proposal_sign_bytes(CHAIN, &proposal));
        EngineInput::ProposalVerdict {
            proposal: SignedProposal {
                proposal,
                signature,
            },
            validity: Validity::Valid,
        }
    };
    let vote = |who: u16, round, vote_type, value: Option<u64>| {
        let vote = Vote {
            height: 1,
            round,
            vote_type,
            value,
            validator: who,
        };
        let signature = sim_sign(who, &vote_sign_bytes(CHAIN, &vote));
        EngineInput::Vote(SignedVote { vote, signature })
    };
    let (a, b, c) = (others[0], others[1], others[2]);
    let inputs = vec![
        proposal(0, &red, p0),
        vote(a, 0, VoteType::Prevote, Some(id(&red))),
        vote(b, 0, VoteType::Prevote, Some(id(&red))),
        vote(a, 0, VoteType::Precommit, None),
        vote(b, 0, VoteType::Precommit, None),
        EngineInput::Timeout(Timeout {
            height: 1,
            round: 0,
            kind: TimeoutKind::Precommit,
        }),
        proposal(1, &blue, p1),
        vote(a, 1, VoteType::Prevote, Some(id(&blue))),
        vote(b, 1, VoteType::Prevote, Some(id(&blue))),
        vote(c, 1, VoteType::Prevote, Some(id(&blue))),
        vote(a, 1, VoteType::Precommit, Some(id(&blue))),
        vote(b, 1, VoteType::Precommit, Some(id(&blue))),
    ];
    Script {
        me,
        inputs,
        red,
        blue,
    }
}

struct Disk {
    wal: SharedMemoryWal,
    store: CrashingStore,
}

fn boot(
    me: u16,
    disk: &Disk,
    syncs_left: i64,
    saves_left: i64,
) -> (Engine<C>, Vec<EngineOutput<C>>) {
    disk.store.saves_left.store(saves_left, Ordering::SeqCst);
    let guard = SignGuard::open(Box::new(SimSigner(me)), Box::new(disk.store.clone())).unwrap();
    let selector: Arc<dyn ProposerSelector<C>> = Arc::new(WeightedRoundRobin);
    let wal = CrashingWal {
        inner: disk.wal.clone(),
        syncs_left: Arc::new(AtomicI64::new(syncs_left)),
    };
    Engine::recover(
        CHAIN.into(),
        Params::default(),
        selector,
        guard,
        Box::new(wal),
        0,
        validators(),
        vec![],
    )
    .expect("recovery")
}

/// Own messages sent, keyed by (round, step).
type Sent = Vec<((u32, u8), Vec<u8>)>;

fn record(outputs: &[EngineOutput<C>], sent: &mut Sent, decided: &mut Option<u64>) {
    for output in outputs {
        match output {
            EngineOutput::Broadcast(Message::Vote(v)) => sent.push((
                (
                    v.vote.round,
                    1 + (v.vote.vote_type == VoteType::Precommit) as u8,
                ),
                vote_sign_bytes(CHAIN, &v.vote),
            )),
            EngineOutput::Broadcast(Message::Proposal(p)) => sent.push((
                (p.proposal.round, 0),
                proposal_sign_bytes(CHAIN, &p.proposal),
            )),
            EngineOutput::Decided { value, .. } => *decided = Some(id(value)),
            _ => {}
        }
    }
}

/// Runs inputs until the engine dies or `stop_after` inputs; returns what it
/// sent and whether it died.
fn drive(
    engine: &mut Engine<C>,
    inputs: &[EngineInput<C>],
    sent: &mut Sent,
    decided: &mut Option<u64>,
) -> bool {
    for input in inputs {
        match engine.handle(input.clone()) {
            Ok(outputs) => record(&outputs, sent, decided),
            Err(_) => return true,
        }
    }
    false
}

fn check_no_conflict(sent: &Sent, context: &str) {
    for (i, (key, bytes)) in sent.iter().enumerate() {
        for (other_key, other_bytes) in &sent[..i] {
            assert!(
                key != other_key || bytes == other_bytes,
                "{context}: conflicting messages at round/step {key:?}"
            );
        }
    }
}

/// One scenario: run `prefix` inputs (dying at sync `syncs` or save
/// `saves` if reached), crash keeping `keep` unsynced bytes, recover, and
/// feed the whole script again (peers re-send what we lost).
fn scenario(script: &Script, prefix: usize, syncs: i64, saves: i64, keep: Option<usize>) {
    let wal = SharedMemoryWal::default();
    let disk = Disk {
        store: CrashingStore {
            wal: wal.clone(),
            ..CrashingStore::default()
        },
        wal,
    };
    let mut sent = Sent::new();
    let mut decided = None;
    let (mut engine, outputs) = boot(script.me, &disk, syncs, saves);
    record(&outputs, &mut sent, &mut decided);
    drive(
        &mut engine,
        &script.inputs[..prefix],
        &mut sent,
        &mut decided,
    );
    drop(engine);
    {
        let mut wal = disk.wal.0.lock().unwrap();
        let unsynced = wal.unsynced_len();
        wal.crash(keep.unwrap_or(unsynced).min(unsynced));
    }
    let context = format!("prefix {prefix} sync {syncs} save {saves} keep {keep:?}");
    let locked_before = sent.contains(&((0, 2), vote_bytes(script, 0, true)))
        && !sent.iter().any(|(key, _)| key.0 == 1 && key.1 == 2);
    let (mut engine, outputs) = boot(script.me, &disk, -1, -1);
    if locked_before && decided.is_none() {
        // The lock may only have moved forward (the WAL may hold the
        // round-1 polka), never back or away.
        let lock = engine.core().locked().map(|(r, v)| (*r, id(v)));
        assert!(
            lock == Some((0, id(&script.red))) || lock.is_some_and(|(r, _)| r > 0),
            "{context}: lock lost: {lock:?}"
        );
    }
    record(&outputs, &mut sent, &mut decided);
    assert!(
        !drive(&mut engine, &script.inputs, &mut sent, &mut decided),
        "{context}"
    );
    check_no_conflict(&sent, &context);
    assert_eq!(
        decided,
        Some(id(&script.blue)),
        "{context}: no decision after recovery"
    );
    // Locked on red, we never prevoted blue in round 1 without its polka.
    assert!(
        !sent
            .iter()
            .any(|(key, bytes)| *key == (1, 1) && *bytes == vote_bytes(script, 1, false)),
        "{context}: prevoted blue while locked on red"
    );
}

fn vote_bytes(script: &Script, round: u32, precommit_red: bool) -> Vec<u8> {
    let (vote_type, value) = if precommit_red {
        (VoteType::Precommit, id(&script.red))
    } else {
        (VoteType::Prevote, id(&script.blue))
    };
    vote_sign_bytes::<C>(
        CHAIN,
        &Vote {
            height: 1,
            round,
            vote_type,
            value: Some(value),
            validator: script.me,
        },
    )
}

#[test]
fn without_crash_the_script_decides_blue() {
    let script = script();
    scenario(&script, script.inputs.len(), -1, -1, None);
}

#[test]
fn crash_after_every_input_losing_any_unsynced_bytes() {
    let script = script();
    for prefix in 0..=script.inputs.len() {
        // Measure how much is unsynced at this point, then try every cut.
        for keep in 0..400 {
            scenario(&script, prefix, -1, -1, Some(keep));
        }
    }
}

#[test]
fn crash_at_every_wal_sync_and_every_sign_state_save() {
    let script = script();
    for point in 0..12 {
        // Every cut of the unsynced tail: among them the one that keeps an
        // input but not the message it made us sign, which the restarted
        // core then derives again while replaying.
        for keep in 0..400 {
            scenario(&script, script.inputs.len(), point, -1, Some(keep));
        }
        for keep in [0, 7, 10_000] {
            scenario(&script, script.inputs.len(), -1, point, Some(keep));
        }
    }
}
