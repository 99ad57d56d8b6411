//! Four replicas (engine, chain with real blocks and ed25519, mempool) in
//! one process, on a deterministic message bus with a virtual clock:
//! transactions submitted to different replicas commit, every replica
//! holds the same blocks and app hashes, and a replica started late
//! catches up from commits its peers send.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::num::NonZeroUsize;
use std::sync::Arc;

use symbiont_contracts::genesis::Genesis;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::tx::SignedTx;
use symbiont_node::block::{Block, Certificate, core_params};
use symbiont_node::chain::Chain;
use symbiont_node::consensus::ed25519::KeypairSigner;
use symbiont_node::consensus::engine::Engine;
use symbiont_node::consensus::proposer::{ProposerSelector, WeightedRoundRobin};
use symbiont_node::consensus::signed::Message;
use symbiont_node::consensus::signer::{MemoryStore, SignGuard};
use symbiont_node::consensus::types::Timeout;
use symbiont_node::consensus::wal::SharedMemoryWal;
use symbiont_node::mempool::{Mempool, MempoolConfig};
use symbiont_node::replica::{Action, NetMessage, Replica};

mod support;
use support::key;

const CHAIN: &str = "replica-test";
const GENESIS_TIME_MS: u64 = 1_800_000_000_000;
const DELAY_MS: u64 = 5;

fn genesis() -> Genesis {
    support::four_validators(CHAIN, GENESIS_TIME_MS, 300, 100, 50)
}

fn tx(nonce: u64) -> SignedTx {
    support::authorize_operator(CHAIN, nonce, 100 + nonce as u8)
}

enum Event {
    Deliver {
        to: usize,
        message: Box<NetMessage>,
    },
    Timer {
        node: usize,
        timeout: Timeout,
    },
    /// The node's rebroadcast timer (the service's, every 400 ms).
    Rebroadcast {
        node: usize,
    },
}

/// The service's rebroadcast interval.
const REBROADCAST_MS: u64 = 400;

struct Bus {
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: BTreeMap<usize, Event>,
    replicas: Vec<Option<Replica>>,
    /// What each replica committed (its "storage").
    chains: Vec<Vec<(Block, Certificate)>>,
    /// Votes to this replica take `SLOW_VOTES_MS`: proposals of the next
    /// height reach it before it has decided the current one.
    slow_votes_to: Option<usize>,
    /// With a seed: every message takes 1 to 400 ms more, drawn from it
    /// (rounds fail, validators lock, blocks are proposed again).
    jitter: Option<u64>,
    /// Round-0 prevotes each replica sent: (height, for a value).
    prevotes: Vec<Vec<(u64, bool)>>,
    /// Commits to this replica are lost: it stays behind.
    deaf_to_commits: Option<usize>,
    /// SendCommit actions of each replica, per height.
    commits_sent: Vec<BTreeMap<u64, usize>>,
}

const SLOW_VOTES_MS: u64 = 40;

impl Bus {
    fn jitter_ms(&mut self) -> u64 {
        let Some(state) = self.jitter.as_mut() else {
            return 0;
        };
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        1 + (*state >> 33) % 400
    }

    fn schedule(&mut self, delay: u64, event: Event) {
        self.seq += 1;
        let id = self.seq as usize;
        self.queue.push(Reverse((self.now + delay, self.seq, id)));
        self.events.insert(id, event);
    }

    fn clock(&self) -> u64 {
        GENESIS_TIME_MS + 1000 + self.now
    }

    fn start(&mut self, i: usize) {
        let chain = Chain::from_genesis(&genesis(), Arc::new(WeightedRoundRobin)).unwrap();
        let guard = SignGuard::open(
            Box::new(KeypairSigner(key(11 + i as u8))),
            Box::new(MemoryStore { state: None }),
        )
        .unwrap();
        let (engine, outputs) = Engine::recover(
            CHAIN.into(),
            core_params(&chain.params()),
            Arc::new(WeightedRoundRobin),
            guard,
            Box::new(SharedMemoryWal::default()),
            chain.tip().height,
            chain.validators().clone(),
            chain.excluded_proposers(),
        )
        .unwrap();
        let mempool = Mempool::new(CHAIN, MempoolConfig::default());
        let (replica, actions) = Replica::new(
            engine,
            chain,
            mempool,
            None,
            NonZeroUsize::MIN,
            self.clock(),
            outputs,
        )
        .unwrap();
        self.replicas[i] = Some(replica);
        self.act(i, actions);
    }

    fn act(&mut self, i: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Broadcast(message) => {
                    if let NetMessage::Consensus(Message::Vote(v)) = &message
                        && v.vote.round == 0
                        && v.vote.vote_type == symbiont_node::consensus::VoteType::Prevote
                    {
                        self.prevotes[i].push((v.vote.height, v.vote.value.is_some()));
                    }
                    for to in 0..self.replicas.len() {
                        if to != i {
                            let extra = self.jitter_ms();
                            let slow = self.slow_votes_to == Some(to)
                                && matches!(message, NetMessage::Consensus(Message::Vote(_)));
                            self.schedule(
                                extra + if slow { SLOW_VOTES_MS } else { DELAY_MS },
                                Event::Deliver {
                                    to,
                                    message: Box::new(message.clone()),
                                },
                            );
                        }
                    }
                }
                Action::ScheduleTimeout {
                    timeout,
                    duration_ms,
                } => self.schedule(duration_ms, Event::Timer { node: i, timeout }),
                Action::Commit {
                    block, certificate, ..
                } => {
                    self.chains[i].push((block, certificate));
                    let now = self.clock();
                    let more = self.replicas[i]
                        .as_mut()
                        .unwrap()
                        .start_next_height(now)
                        .unwrap();
                    self.act(i, more);
                }
                Action::SendCommit { peer, height } => {
                    *self.commits_sent[i].entry(height).or_default() += 1;
                    let to = (11..=14).position(|s| key(s).public() == peer).unwrap();
                    if let Some((block, certificate)) = self.chains[i].get(height as usize - 1) {
                        let message = NetMessage::Consensus(Message::Commit {
                            value: block.clone(),
                            certificate: certificate.clone(),
                        });
                        let message = Box::new(message);
                        self.schedule(DELAY_MS, Event::Deliver { to, message });
                    }
                }
                Action::RequestCommits { peer } => {
                    // The peer answers with what we miss.
                    let from = (11..=14).position(|s| key(s).public() == peer).unwrap();
                    let have = self.chains[i].len();
                    let missing: Vec<_> = self.chains[from]
                        .iter()
                        .skip(have)
                        .take(8)
                        .cloned()
                        .collect();
                    for (block, certificate) in missing {
                        let message = Box::new(NetMessage::Consensus(Message::Commit {
                            value: block,
                            certificate,
                        }));
                        self.schedule(DELAY_MS, Event::Deliver { to: i, message });
                    }
                }
            }
        }
    }

    fn step(&mut self) -> bool {
        let Some(Reverse((time, _, id))) = self.queue.pop() else {
            return false;
        };
        self.now = time;
        let now = self.clock();
        let (node, actions) = match self.events.remove(&id).unwrap() {
            Event::Deliver { to, message } => {
                let Some(replica) = self.replicas[to].as_mut() else {
                    return true;
                };
                if self.deaf_to_commits == Some(to)
                    && matches!(*message, NetMessage::Consensus(Message::Commit { .. }))
                {
                    return true;
                }
                (to, replica.receive(*message, now).unwrap())
            }
            Event::Timer { node, timeout } => {
                let Some(replica) = self.replicas[node].as_mut() else {
                    return true;
                };
                (node, replica.timeout(timeout, now).unwrap())
            }
            Event::Rebroadcast { node } => {
                let Some(replica) = self.replicas[node].as_mut() else {
                    return true;
                };
                let actions = replica.rebroadcast();
                self.schedule(REBROADCAST_MS, Event::Rebroadcast { node });
                (node, actions)
            }
        };
        self.act(node, actions);
        true
    }

    fn run_until(&mut self, done: impl Fn(&Bus) -> bool, max_ms: u64) {
        while !done(self) {
            assert!(self.now < max_ms, "no progress by {max_ms} ms");
            assert!(self.step(), "nothing left to do");
        }
    }
}

fn bus(started: &[usize]) -> Bus {
    let mut bus = Bus {
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        events: BTreeMap::new(),
        replicas: (0..4).map(|_| None).collect(),
        chains: vec![Vec::new(); 4],
        slow_votes_to: None,
        jitter: None,
        prevotes: vec![Vec::new(); 4],
        deaf_to_commits: None,
        commits_sent: vec![BTreeMap::new(); 4],
    };
    for &i in started {
        bus.start(i);
    }
    bus
}

fn submit(bus: &mut Bus, to: usize, tx: SignedTx) -> Hash {
    let (id, actions) = bus.replicas[to].as_mut().unwrap().submit(tx).unwrap();
    bus.act(to, actions);
    id
}

#[test]
fn transactions_submitted_anywhere_commit_and_every_replica_agrees() {
    let mut bus = bus(&[0, 1, 2, 3]);
    let ids: Vec<Hash> = (1..=6)
        .map(|n| submit(&mut bus, (n % 4) as usize, tx(n)))
        .collect();
    let committed = |bus: &Bus| {
        bus.replicas.iter().all(|r| {
            let state = r.as_ref().unwrap().chain().state();
            ids.iter()
                .all(|id| symbiont_contracts::exec::receipt(state, id).is_some())
        })
    };
    bus.run_until(committed, 20_000);
    let heights: Vec<usize> = bus.chains.iter().map(Vec::len).collect();
    eprintln!("heights {heights:?} after {} simulated ms", bus.now);
    let txs_in_blocks: usize = bus.chains[0].iter().map(|(b, _)| b.txs.len()).sum();
    assert_eq!(txs_in_blocks, ids.len(), "each transaction in one block");
    let common = *heights.iter().min().unwrap();
    assert!(common >= 1);
    for height in 0..common {
        let hashes: Vec<Hash> = bus.chains.iter().map(|c| c[height].0.hash()).collect();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "height {}",
            height + 1
        );
    }
    for id in &ids {
        let receipt = symbiont_contracts::exec::receipt(
            bus.replicas[0].as_ref().unwrap().chain().state(),
            id,
        )
        .unwrap();
        assert_eq!(receipt.error, None, "applied");
    }
    let app_hashes: Vec<Hash> = bus
        .replicas
        .iter()
        .map(|r| r.as_ref().unwrap().chain().state().app_hash())
        .collect();
    let tips: Vec<u64> = bus
        .replicas
        .iter()
        .map(|r| r.as_ref().unwrap().chain().tip().height)
        .collect();
    // Replicas at the same height hold the same state.
    for a in 0..4 {
        for b in 0..4 {
            if tips[a] == tips[b] {
                assert_eq!(app_hashes[a], app_hashes[b]);
            }
        }
    }
    assert!(
        bus.replicas
            .iter()
            .all(|r| r.as_ref().unwrap().mempool().is_empty())
    );
}

#[test]
fn a_replica_started_late_catches_up_from_commits() {
    let mut bus = bus(&[0, 1, 2]);
    for n in 1..=3 {
        submit(&mut bus, 0, tx(n));
    }
    bus.run_until(|bus| bus.chains[0].len() >= 5, 30_000);
    bus.start(3);
    let target = bus.chains[0].len() + 2;
    bus.run_until(|bus| bus.chains[3].len() >= target, 60_000);
    eprintln!(
        "late replica at {} after {} simulated ms",
        bus.chains[3].len(),
        bus.now
    );
    let common = bus.chains[0].len().min(bus.chains[3].len());
    assert!(common + 1 >= target, "{common} of {target}");
    for height in 0..common {
        assert_eq!(
            bus.chains[3][height].0.hash(),
            bus.chains[0][height].0.hash()
        );
    }
}

#[test]
fn three_of_four_replicas_commit_with_one_down() {
    let mut bus = bus(&[0, 1, 3]);
    let ids: Vec<Hash> = (1..=4).map(|n| submit(&mut bus, 0, tx(n))).collect();
    // Long enough for the missing validator's proposer turns to come round.
    bus.run_until(|bus| bus.chains[0].len() >= 12, 60_000);
    let state = bus.replicas[3].as_ref().unwrap().chain().state();
    assert!(
        ids.iter()
            .all(|id| symbiont_contracts::exec::receipt(state, id).is_some())
    );
    for height in 0..12 {
        assert_eq!(
            bus.chains[1][height].0.hash(),
            bus.chains[0][height].0.hash()
        );
    }
    eprintln!(
        "12 heights with one of four down in {} simulated ms",
        bus.now
    );
}

/// A replica stuck behind keeps sending its height's votes (every round's
/// timeout); each reaches the others as a sign that it is behind. A whole
/// block answers each only once per height and interval: a commit per
/// stuck vote flooded the links a late node needed to catch up (seen with
/// 1.4 MiB blocks on a busy machine).
#[test]
fn a_peer_stuck_behind_gets_each_commit_once_per_interval() {
    let mut bus = bus(&[0, 1, 2]);
    bus.deaf_to_commits = Some(3);
    for n in 1..=3 {
        submit(&mut bus, 0, tx(n));
    }
    bus.run_until(|bus| bus.chains[0].len() >= 3, 30_000);
    bus.start(3);
    bus.schedule(REBROADCAST_MS, Event::Rebroadcast { node: 3 });
    let from = bus.now;
    const SECONDS: u64 = 10;
    bus.run_until(
        |bus| bus.now >= from + SECONDS * 1000,
        from + SECONDS * 1000 + 1,
    );
    assert!(bus.chains[3].is_empty(), "replica 3 got no commit");
    let sent: usize = (0..3)
        .map(|i| bus.commits_sent[i].get(&1).copied().unwrap_or(0))
        .sum();
    eprintln!("height 1's commit sent {sent} times in {SECONDS} s by 3 replicas");
    assert!(sent >= 3, "each replica answered the stuck peer");
    // Once per replica and second, and once at the start of each.
    let bound = 3 * (SECONDS as usize + 1);
    assert!(
        sent <= bound,
        "{sent} commits of height 1 sent in {SECONDS} s, bound {bound}"
    );
}

/// Votes reach replica 3 late, so the next height's proposal (with its
/// block) reaches it before it decides: the proposal waits in the engine,
/// its block in the replica, and it is judged once the height starts. The
/// replica prevotes for those blocks like the others (judged without the
/// block, it would have prevoted nil and stayed out of every polka).
#[test]
fn proposals_for_the_next_height_are_judged_when_it_starts() {
    let mut bus = bus(&[]);
    bus.slow_votes_to = Some(3);
    for i in 0..4 {
        bus.start(i);
    }
    submit(&mut bus, 0, tx(1));
    bus.run_until(|bus| bus.chains[3].len() >= 10, 60_000);
    let early_or_not: Vec<&(u64, bool)> = bus.prevotes[3].iter().filter(|(h, _)| *h > 1).collect();
    assert!(early_or_not.len() >= 8, "{:?}", bus.prevotes[3]);
    assert!(
        early_or_not.iter().all(|(_, for_value)| *for_value),
        "replica 3 prevoted nil: {:?}",
        bus.prevotes[3]
    );
}

/// A re-proposal (a valid round set) carries the block an earlier round's
/// proposer made: judged by who made the block, the first version called
/// every re-proposal by another proposer invalid, and a network whose
/// validators had locked on a value stalled for good (four processes,
/// height 324, rounds running on). Here: a polka for B in round 0 (whose
/// proposal we missed), then round 1's proposer re-proposes B: we prevote
/// B (L28).
#[test]
fn a_reproposal_of_a_block_another_proposer_made_is_valid() {
    use symbiont_node::consensus::signed::{SignedProposal, SignedVote, proposal_sign_bytes};
    use symbiont_node::consensus::{Proposal, TimeoutKind, Vote, VoteType};
    let validators = Chain::from_genesis(&genesis(), Arc::new(WeightedRoundRobin))
        .unwrap()
        .validators()
        .clone();
    let proposer = |round| WeightedRoundRobin.proposer(&validators, 1, round, &[]);
    let (p0, p1) = (proposer(0), proposer(1));
    let mine = (0..4usize)
        .find(|i| ![p0, p1].contains(&key(11 + *i as u8).public()))
        .unwrap();
    let me = key(11 + mine as u8).public();
    let mut bus = bus(&[mine]);
    let keypair = |public| (11..=14).map(key).find(|k| k.public() == public).unwrap();
    // Block B, made by round 0's proposer.
    let maker = Chain::from_genesis(&genesis(), Arc::new(WeightedRoundRobin)).unwrap();
    let (block, _) = maker
        .propose(p0, bus.clock(), vec![], &[], vec![], None)
        .unwrap();
    let vote = |who: symbiont_contracts::keys::PublicKey, round, vote_type, value| {
        let vote = Vote {
            height: 1,
            round,
            vote_type,
            value,
            validator: who,
        };
        let signature = keypair(who).sign(&symbiont_node::consensus::signed::vote_sign_bytes(
            CHAIN, &vote,
        ));
        NetMessage::Consensus(Message::Vote(SignedVote { vote, signature }))
    };
    let others: Vec<_> = validators
        .validators()
        .iter()
        .map(|v| v.address)
        .filter(|a| *a != me)
        .collect();
    let now = bus.clock();
    let replica = bus.replicas[mine].as_mut().unwrap();
    replica
        .timeout(
            Timeout {
                height: 1,
                round: 0,
                kind: TimeoutKind::Propose,
            },
            now,
        )
        .unwrap();
    for who in &others {
        replica
            .receive(vote(*who, 0, VoteType::Prevote, Some(block.hash())), now)
            .unwrap();
        replica
            .receive(vote(*who, 0, VoteType::Precommit, None), now)
            .unwrap();
    }
    replica
        .timeout(
            Timeout {
                height: 1,
                round: 0,
                kind: TimeoutKind::Precommit,
            },
            now,
        )
        .unwrap();
    assert_eq!(replica.engine().core().round(), 1);
    let proposal = Proposal {
        height: 1,
        round: 1,
        value: block.clone(),
        valid_round: Some(0),
        proposer: p1,
    };
    let signature = keypair(p1).sign(&proposal_sign_bytes(CHAIN, &proposal));
    let actions = replica
        .receive(
            NetMessage::Consensus(Message::Proposal(SignedProposal {
                proposal,
                signature,
            })),
            now,
        )
        .unwrap();
    let prevoted = actions.iter().any(|a| {
        matches!(a, Action::Broadcast(NetMessage::Consensus(Message::Vote(v)))
            if v.vote.round == 1 && v.vote.vote_type == VoteType::Prevote
                && v.vote.value == Some(block.hash()))
    });
    assert!(prevoted, "{actions:?}");
}

/// Gossip is checked before it is forwarded: signed by a validator of the
/// set, a height near ours, a transaction admissible (admitted by the
/// check, so its signature is verified once).
#[test]
fn gossip_is_checked_before_it_is_forwarded() {
    use symbiont_node::consensus::signed::{SignedVote, vote_sign_bytes};
    use symbiont_node::consensus::{Vote, VoteType};
    use symbiont_node::replica::GossipVerdict;
    let mut bus = bus(&[0]);
    let replica = bus.replicas[0].as_mut().unwrap();
    let vote = |seed: u8, height| {
        let vote = Vote {
            height,
            round: 0,
            vote_type: VoteType::Prevote,
            value: None,
            validator: key(seed).public(),
        };
        let signature = key(seed).sign(&vote_sign_bytes(CHAIN, &vote));
        SignedVote { vote, signature }
    };
    let gossip = |v: SignedVote<_>| NetMessage::Consensus(Message::Vote(v));
    assert_eq!(
        replica.check_gossip(&gossip(vote(12, 1))),
        GossipVerdict::Accept
    );
    assert_eq!(
        replica.check_gossip(&gossip(vote(12, 2))),
        GossipVerdict::Accept
    );
    assert_eq!(
        replica.check_gossip(&gossip(vote(12, 3))),
        GossipVerdict::Ignore
    );
    assert_eq!(
        replica.check_gossip(&gossip(vote(77, 1))),
        GossipVerdict::Ignore
    );
    let mut forged = vote(12, 1);
    forged.signature.0[0] ^= 1;
    assert_eq!(replica.check_gossip(&gossip(forged)), GossipVerdict::Reject);
    let mut bad_tx = tx(1);
    bad_tx.signature.0[3] ^= 1;
    assert_eq!(
        replica.check_gossip(&NetMessage::Tx(bad_tx)),
        GossipVerdict::Reject
    );
    assert_eq!(
        replica.check_gossip(&NetMessage::Tx(tx(1))),
        GossipVerdict::Accept
    );
    assert!(replica.mempool().contains(&tx(1).id()));
    assert_eq!(
        replica.check_gossip(&NetMessage::Tx(tx(1))),
        GossipVerdict::Ignore
    );
}

/// A batch of gossiped transactions: each is admitted on its own; a bad
/// signature anywhere rejects the message (only a faulty publisher or
/// forwarder sends one), while refusals that depend on the receiver's
/// state (duplicates, nonces) never do; nothing new is ignored.
#[test]
fn gossiped_batches_are_judged_per_transaction() {
    use symbiont_node::replica::{GossipVerdict, TX_BATCH_MAX_TXS};
    let mut bus = bus(&[0]);
    let replica = bus.replicas[0].as_mut().unwrap();
    let batch = |txs: Vec<SignedTx>| NetMessage::Txs(txs);
    // Nonce 3 waits for 2; a repeat of 1 inside the batch is a duplicate.
    assert_eq!(
        replica.check_gossip(&batch(vec![tx(1), tx(3), tx(1)])),
        GossipVerdict::Accept
    );
    assert!(replica.mempool().contains(&tx(1).id()));
    assert!(replica.mempool().contains(&tx(3).id()));
    // Nothing new: ignored, not rejected.
    assert_eq!(
        replica.check_gossip(&batch(vec![tx(1), tx(3)])),
        GossipVerdict::Ignore
    );
    // One forged transaction rejects the whole message; the good one is
    // admitted all the same.
    let mut forged = tx(4);
    forged.signature.0[3] ^= 1;
    let (verdict, results) = replica.check_gossip_txs(&[tx(2), forged.clone()]);
    assert_eq!(verdict, GossipVerdict::Reject);
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert_eq!(results[1].as_ref().unwrap_err().code(), "bad_signature");
    assert!(replica.mempool().contains(&tx(2).id()));
    assert!(!replica.mempool().contains(&forged.id()));
    // Empty or overlong batches are never sent by an honest node.
    assert_eq!(replica.check_gossip(&batch(vec![])), GossipVerdict::Reject);
    assert_eq!(
        replica.check_gossip(&batch(vec![tx(5); TX_BATCH_MAX_TXS + 1])),
        GossipVerdict::Reject
    );
    assert!(!replica.mempool().contains(&tx(5).id()));
}

/// Messages delayed at random (up to 400 ms against a 300 ms propose
/// timeout): rounds fail, validators lock and blocks are proposed again by
/// other proposers, on several seeds. Every replica keeps deciding the
/// same blocks. (It does not yet reach the re-proposal bug that stalled
/// real processes: the old check passes these seeds too; that one is
/// pinned by `a_reproposal_of_a_block_another_proposer_made_is_valid`.)
#[test]
fn replicas_agree_and_progress_with_random_delays() {
    let mut rounds_above_zero = 0;
    for seed in 1..=6u64 {
        let mut bus = bus(&[]);
        bus.jitter = Some(seed);
        for i in 0..4 {
            bus.start(i);
        }
        for n in 1..=3 {
            submit(&mut bus, (n % 4) as usize, tx(n));
        }
        bus.run_until(|bus| bus.chains.iter().all(|c| c.len() >= 15), 600_000);
        for height in 0..15 {
            let hash = bus.chains[0][height].0.hash();
            assert!(
                bus.chains.iter().all(|c| c[height].0.hash() == hash),
                "seed {seed}, height {}",
                height + 1
            );
        }
        rounds_above_zero += bus.chains[0][..15]
            .iter()
            .filter(|(_, certificate)| certificate.round > 0)
            .count();
    }
    assert!(rounds_above_zero > 0, "the delays made some rounds fail");
}
