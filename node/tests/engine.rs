//! The signed layer: signatures checked at the boundary, evidence from
//! conflicting votes, catch-up through commits, messages for the next height
//! kept until it starts, and persist-before-send.

use std::sync::Arc;

use symbiont_node::consensus::core::{Params, Validity};
use symbiont_node::consensus::engine::{Engine, EngineInput, EngineOutput};
use symbiont_node::consensus::proposer::{ProposerSelector, WeightedRoundRobin};
use symbiont_node::consensus::signed::{CommitCertificate, Message, SignedVote, vote_sign_bytes};
use symbiont_node::consensus::signer::{MemoryStore, SignGuard, Signer};
use symbiont_node::consensus::wal::SharedMemoryWal;
use symbiont_node::consensus::{Height, ValidatorSet, Vote, VoteType};
use symbiont_node::sim::{SimBlock, SimContext, sim_sign};

type C = SimContext;
const CHAIN: &str = "sim";

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

fn engine(me: u16, wal: SharedMemoryWal) -> (Engine<C>, Vec<EngineOutput<C>>) {
    let guard = SignGuard::open(
        Box::new(SimSigner(me)),
        Box::new(MemoryStore { state: None }),
    )
    .unwrap();
    let selector: Arc<dyn ProposerSelector<C>> = Arc::new(WeightedRoundRobin);
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
    .unwrap()
}

fn vote(
    who: u16,
    height: Height,
    round: u32,
    vote_type: VoteType,
    value: Option<u64>,
) -> SignedVote<C> {
    let vote = Vote {
        height,
        round,
        vote_type,
        value,
        validator: who,
    };
    let signature = sim_sign(who, &vote_sign_bytes(CHAIN, &vote));
    SignedVote { vote, signature }
}

fn not_proposer() -> u16 {
    let set = validators();
    (0..4u16)
        .find(|v| *v != WeightedRoundRobin.proposer(&set, 1, 0, &[]))
        .unwrap()
}

#[test]
fn bad_signatures_are_dropped_before_the_core_or_the_wal() {
    let wal = SharedMemoryWal::default();
    let me = not_proposer();
    let (mut engine, _) = engine(me, wal.clone());
    let before = wal.0.lock().unwrap().bytes.len();
    let other = (me + 1) % 4;
    let mut forged = vote(other, 1, 0, VoteType::Prevote, None);
    forged.signature ^= 1;
    assert!(engine.handle(EngineInput::Vote(forged)).unwrap().is_empty());
    assert_eq!(wal.0.lock().unwrap().bytes.len(), before);
    assert_eq!(engine.core().keeper().power_any(0, VoteType::Prevote), 0);
    // From a non-validator, even correctly signed: dropped.
    assert!(
        engine
            .handle(EngineInput::Vote(vote(9, 1, 0, VoteType::Prevote, None)))
            .unwrap()
            .is_empty()
    );
    // A good one is recorded and counted.
    engine
        .handle(EngineInput::Vote(vote(
            other,
            1,
            0,
            VoteType::Prevote,
            None,
        )))
        .unwrap();
    assert!(wal.0.lock().unwrap().bytes.len() > before);
    assert_eq!(engine.core().keeper().power_any(0, VoteType::Prevote), 1);
}

#[test]
fn conflicting_votes_become_verifiable_evidence_once() {
    let me = not_proposer();
    let (mut engine, _) = engine(me, SharedMemoryWal::default());
    let other = (me + 1) % 4;
    engine
        .handle(EngineInput::Vote(vote(
            other,
            1,
            0,
            VoteType::Precommit,
            Some(1),
        )))
        .unwrap();
    let out = engine
        .handle(EngineInput::Vote(vote(
            other,
            1,
            0,
            VoteType::Precommit,
            Some(2),
        )))
        .unwrap();
    let evidence: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            EngineOutput::Evidence(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].verify(CHAIN, &validators(), 1), Ok(()));
    assert_eq!(evidence[0].first.vote.validator, other);
    let out = engine
        .handle(EngineInput::Vote(vote(
            other,
            1,
            0,
            VoteType::Precommit,
            None,
        )))
        .unwrap();
    assert!(
        !out.iter().any(|o| matches!(o, EngineOutput::Evidence(_))),
        "reported once per slot"
    );
}

fn block() -> SimBlock {
    SimBlock {
        height: 1,
        proposer: 0,
        payload: 5,
        time_ms: 1,
        last_commit: None,
    }
}

fn certificate(signers: &[u16]) -> CommitCertificate<C> {
    let value_id = <C as symbiont_node::consensus::Context>::value_id(&block());
    CommitCertificate {
        height: 1,
        round: 3,
        value_id,
        signatures: signers
            .iter()
            .map(|s| {
                (
                    *s,
                    vote(*s, 1, 3, VoteType::Precommit, Some(value_id)).signature,
                )
            })
            .collect(),
    }
}

#[test]
fn a_valid_commit_from_a_peer_decides_and_a_weak_one_does_not() {
    let me = not_proposer();
    let (mut engine, _) = engine(me, SharedMemoryWal::default());
    let weak = certificate(&[0, 1]);
    assert!(
        engine
            .handle(EngineInput::Commit {
                value: block(),
                certificate: weak
            })
            .unwrap()
            .is_empty()
    );
    let mut wrong_value = block();
    wrong_value.payload = 6;
    let out = engine
        .handle(EngineInput::Commit {
            value: wrong_value,
            certificate: certificate(&[0, 1, 2]),
        })
        .unwrap();
    assert!(out.is_empty());
    let out = engine
        .handle(EngineInput::Commit {
            value: block(),
            certificate: certificate(&[0, 1, 2]),
        })
        .unwrap();
    assert!(matches!(&out[..], [EngineOutput::Decided { value, .. }] if *value == block()));
}

#[test]
fn next_height_messages_wait_and_senders_ahead_or_behind_are_named() {
    let me = not_proposer();
    let (mut engine, _) = engine(me, SharedMemoryWal::default());
    let other = (me + 1) % 4;
    // Kept for height 2, and a hint that the sender is ahead of us.
    let out = engine
        .handle(EngineInput::Vote(vote(
            other,
            2,
            0,
            VoteType::Prevote,
            None,
        )))
        .unwrap();
    assert_eq!(
        out,
        vec![EngineOutput::PeerAhead {
            peer: other,
            height: 2
        }]
    );
    engine
        .handle(EngineInput::Commit {
            value: block(),
            certificate: certificate(&[0, 1, 2]),
        })
        .unwrap();
    engine
        .handle(EngineInput::StartHeight {
            height: 2,
            validators: validators(),
            excluded_proposers: vec![],
        })
        .unwrap();
    assert_eq!(engine.height(), 2);
    assert_eq!(
        engine.core().keeper().power_any(0, VoteType::Prevote),
        1,
        "buffered vote applied"
    );
    let out = engine
        .handle(EngineInput::Vote(vote(
            other,
            1,
            0,
            VoteType::Prevote,
            None,
        )))
        .unwrap();
    assert_eq!(
        out,
        vec![EngineOutput::PeerBehind {
            peer: other,
            height: 1
        }]
    );
}

#[test]
fn own_messages_are_synced_before_they_are_returned() {
    let wal = SharedMemoryWal::default();
    let me = not_proposer();
    let (mut engine, _) = engine(me, wal.clone());
    let out = engine
        .handle(EngineInput::Timeout(symbiont_node::consensus::Timeout {
            height: 1,
            round: 0,
            kind: symbiont_node::consensus::TimeoutKind::Propose,
        }))
        .unwrap();
    assert!(
        matches!(&out[..], [EngineOutput::Broadcast(Message::Vote(v))] if v.vote.value.is_none())
    );
    let wal = wal.0.lock().unwrap();
    assert_eq!(
        wal.unsynced_len(),
        0,
        "the prevote and what led to it are durable"
    );
    assert!(engine.guard().last().is_some_and(|s| s.round == 0));
}

#[test]
fn a_proposer_cannot_grow_the_wal_without_bound() {
    use symbiont_node::consensus::core::MAX_PROPOSALS_PER_ROUND;
    use symbiont_node::consensus::signed::{SignedProposal, proposal_sign_bytes};
    let wal = SharedMemoryWal::default();
    let me = not_proposer();
    let (mut engine, _) = engine(me, wal.clone());
    let proposer = WeightedRoundRobin.proposer(&validators(), 1, 0, &[]);
    let mut sizes = vec![];
    for payload in 0..20 {
        let proposal = symbiont_node::consensus::Proposal {
            height: 1,
            round: 0,
            value: SimBlock { payload, ..block() },
            valid_round: None,
            proposer,
        };
        let signature = sim_sign(proposer, &proposal_sign_bytes(CHAIN, &proposal));
        engine
            .handle(EngineInput::ProposalVerdict {
                proposal: SignedProposal {
                    proposal,
                    signature,
                },
                validity: Validity::Valid,
            })
            .unwrap();
        sizes.push(wal.0.lock().unwrap().bytes.len());
    }
    assert!(sizes[MAX_PROPOSALS_PER_ROUND] > sizes[0]);
    assert_eq!(
        sizes[MAX_PROPOSALS_PER_ROUND..].iter().min(),
        sizes[MAX_PROPOSALS_PER_ROUND..].iter().max()
    );
}
