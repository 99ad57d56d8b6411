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
    commit_height_1_and_start_2(&mut engine);
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

fn signed_proposal(
    height: Height,
    round: u32,
    value: SimBlock,
    valid_round: Option<u32>,
) -> symbiont_node::consensus::signed::SignedProposal<C> {
    use symbiont_node::consensus::signed::{SignedProposal, proposal_sign_bytes};
    let proposer = WeightedRoundRobin.proposer(&validators(), height, round, &[]);
    let proposal = symbiont_node::consensus::Proposal {
        height,
        round,
        value: SimBlock { proposer, ..value },
        valid_round,
        proposer,
    };
    let signature = sim_sign(proposer, &proposal_sign_bytes(CHAIN, &proposal));
    SignedProposal {
        proposal,
        signature,
    }
}

fn id_of(block: &SimBlock) -> u64 {
    <C as symbiont_node::consensus::Context>::value_id(block)
}

/// Validators that are not `me` and not `except`.
fn others(me: u16, except: &[u16]) -> Vec<u16> {
    (0..4u16)
        .filter(|v| *v != me && !except.contains(v))
        .collect()
}

/// A validator cut off while the others ran more than the lookahead
/// window of rounds ahead catches up once it hears from more than 1/3 of
/// the power, however far ahead (the old engine dropped those votes and
/// stayed in its round for good). One validator alone cannot move it.
#[test]
fn a_validator_far_behind_in_rounds_catches_up_on_one_third_of_the_power() {
    use symbiont_node::consensus::keeper::MAX_ROUND_LOOKAHEAD;
    let wal = SharedMemoryWal::default();
    let me = not_proposer();
    let (mut engine, _) = engine(me, wal.clone());
    let [a, b, _] = others(me, &[])[..] else {
        unreachable!()
    };
    let far = 10 * MAX_ROUND_LOOKAHEAD;
    engine
        .handle(EngineInput::Vote(vote(
            a,
            1,
            far + 7,
            VoteType::Prevote,
            None,
        )))
        .unwrap();
    assert_eq!(engine.core().round(), 0, "one of four is not enough");
    engine
        .handle(EngineInput::Vote(vote(
            b,
            1,
            far,
            VoteType::Precommit,
            None,
        )))
        .unwrap();
    assert_eq!(
        engine.core().round(),
        far,
        "two of four at round {far} or later"
    );
    // Not counted as votes (they were beyond the window when they came).
    assert_eq!(
        engine.core().keeper().power_any(far, VoteType::Precommit),
        0
    );
    // The jump is in the WAL, synced with the first message signed in
    // the new round: a restart resumes there.
    let out = engine
        .handle(EngineInput::Timeout(symbiont_node::consensus::Timeout {
            height: 1,
            round: far,
            kind: symbiont_node::consensus::TimeoutKind::Propose,
        }))
        .unwrap();
    assert!(matches!(&out[..], [EngineOutput::Broadcast(Message::Vote(v))] if v.vote.round == far));
    wal.0.lock().unwrap().crash(0);
    let (recovered, _) = crate::engine(me, wal);
    assert_eq!(recovered.core().round(), far);
}

/// A proposal first judged invalid (say, the host could not check it yet)
/// and later valid is decided on 2f+1 precommits: the first verdict does
/// not stick.
#[test]
fn a_later_better_verdict_is_not_ignored() {
    let me = not_proposer();
    let (mut engine, _) = engine(me, SharedMemoryWal::default());
    let proposal = signed_proposal(1, 0, block(), None);
    let out = engine
        .handle(EngineInput::Proposal(proposal.clone()))
        .unwrap();
    assert_eq!(out, vec![EngineOutput::CheckProposal(proposal.clone())]);
    // Asked once: the same proposal again is not asked about again.
    assert!(
        engine
            .handle(EngineInput::Proposal(proposal.clone()))
            .unwrap()
            .is_empty()
    );
    let out = engine
        .handle(EngineInput::ProposalVerdict {
            proposal: proposal.clone(),
            validity: Validity::Invalid,
        })
        .unwrap();
    assert!(
        matches!(&out[..], [EngineOutput::Broadcast(Message::Vote(v))] if v.vote.value.is_none()),
        "nil prevote for an invalid value: {out:?}"
    );
    let value = Some(id_of(&proposal.proposal.value));
    for who in others(me, &[]) {
        let out = engine
            .handle(EngineInput::Vote(vote(
                who,
                1,
                0,
                VoteType::Precommit,
                value,
            )))
            .unwrap();
        assert!(
            !out.iter()
                .any(|o| matches!(o, EngineOutput::Decided { .. }))
        );
    }
    let out = engine
        .handle(EngineInput::ProposalVerdict {
            proposal: proposal.clone(),
            validity: Validity::Valid,
        })
        .unwrap();
    assert!(
        out.iter().any(|o| matches!(o, EngineOutput::Decided { value, .. } if *value == proposal.proposal.value)),
        "{out:?}"
    );
}

/// A proposal whose time is off our clock gets no fresh prevote from us,
/// but is decided on 2f+1 precommits like any valid value (L49 asks only
/// `valid(v)`).
#[test]
fn an_untimely_value_is_decided_on_a_quorum_of_precommits() {
    let me = not_proposer();
    let (mut engine, _) = engine(me, SharedMemoryWal::default());
    let proposal = signed_proposal(1, 0, block(), None);
    let out = engine
        .handle(EngineInput::ProposalVerdict {
            proposal: proposal.clone(),
            validity: Validity::Untimely,
        })
        .unwrap();
    assert!(
        matches!(&out[..], [EngineOutput::Broadcast(Message::Vote(v))] if v.vote.value.is_none()),
        "{out:?}"
    );
    let value = Some(id_of(&proposal.proposal.value));
    let mut decided = false;
    for who in others(me, &[]) {
        let out = engine
            .handle(EngineInput::Vote(vote(
                who,
                1,
                0,
                VoteType::Precommit,
                value,
            )))
            .unwrap();
        decided |= out
            .iter()
            .any(|o| matches!(o, EngineOutput::Decided { .. }));
    }
    assert!(decided);
}

/// Next-height proposals wait unjudged and are handed out for a verdict
/// once their height has started (when the host can check them against
/// the block they build on).
#[test]
fn next_height_proposals_are_judged_once_their_height_starts() {
    let me = not_proposer();
    let (mut engine, _) = engine(me, SharedMemoryWal::default());
    let next = signed_proposal(
        2,
        0,
        SimBlock {
            height: 2,
            ..block()
        },
        None,
    );
    let out = engine.handle(EngineInput::Proposal(next.clone())).unwrap();
    assert_eq!(
        out,
        vec![EngineOutput::PeerAhead {
            peer: next.proposal.proposer,
            height: 2
        }]
    );
    let out = commit_height_1_and_start_2(&mut engine);
    assert!(out.contains(&EngineOutput::CheckProposal(next)), "{out:?}");
}

/// Forged messages for the next height (signatures that do not check out)
/// are neither kept nor acted on, and one validator cannot fill the
/// buffer: the honest proposal still gets through. Forged messages of an
/// older height do not aim our commits at the validator they name.
#[test]
fn forged_or_flooded_next_height_messages_crowd_out_nobody() {
    use symbiont_node::consensus::engine::MAX_FUTURE_MESSAGES_PER_VALIDATOR;
    let me = not_proposer();
    let (mut engine, _) = engine(me, SharedMemoryWal::default());
    let honest_next = signed_proposal(
        2,
        0,
        SimBlock {
            height: 2,
            ..block()
        },
        None,
    );
    let flooder = others(me, &[honest_next.proposal.proposer])[0];
    for i in 0..2000u64 {
        let victim = (i % 4) as u16;
        let mut forged = vote(victim, 2, (i % 3) as u32, VoteType::Prevote, Some(i));
        forged.signature ^= 1;
        let out = engine.handle(EngineInput::Vote(forged)).unwrap();
        assert!(out.is_empty(), "acted on a forged vote: {out:?}");
        // Correctly signed by one Byzantine validator, many rounds and
        // values: only its share is kept.
        engine
            .handle(EngineInput::Vote(vote(
                flooder,
                2,
                (i % 60) as u32,
                VoteType::Precommit,
                Some(i),
            )))
            .unwrap();
    }
    let mut forged_old = vote(flooder, 0, 0, VoteType::Prevote, None);
    forged_old.signature ^= 1;
    assert!(
        engine
            .handle(EngineInput::Vote(forged_old))
            .unwrap()
            .is_empty()
    );
    engine
        .handle(EngineInput::Proposal(honest_next.clone()))
        .unwrap();
    let out = commit_height_1_and_start_2(&mut engine);
    assert!(
        out.contains(&EngineOutput::CheckProposal(honest_next)),
        "the honest proposal was crowded out"
    );
    let counted: u64 = (0..60)
        .map(|r| engine.core().keeper().power_any(r, VoteType::Precommit))
        .sum();
    assert_eq!(counted, MAX_FUTURE_MESSAGES_PER_VALIDATOR as u64);
}

/// Height 1 decided by a peer's commit, then height 2 started: the outputs
/// of the start.
fn commit_height_1_and_start_2(engine: &mut Engine<C>) -> Vec<EngineOutput<C>> {
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
        .unwrap()
}

/// Gossip repeats messages: a copy of one already waiting for the next
/// height takes no second place (nor a second signature check), so the
/// sender's later messages still fit.
#[test]
fn repeated_next_height_messages_take_one_place() {
    use symbiont_node::consensus::engine::MAX_FUTURE_MESSAGES_PER_VALIDATOR;
    let me = not_proposer();
    let (mut engine, _) = engine(me, SharedMemoryWal::default());
    let other = (me + 1) % 4;
    for _ in 0..20 {
        engine
            .handle(EngineInput::Vote(vote(
                other,
                2,
                0,
                VoteType::Prevote,
                None,
            )))
            .unwrap();
    }
    let rest = MAX_FUTURE_MESSAGES_PER_VALIDATOR as u32 - 1;
    for round in 0..rest {
        engine
            .handle(EngineInput::Vote(vote(
                other,
                2,
                round,
                VoteType::Precommit,
                None,
            )))
            .unwrap();
    }
    commit_height_1_and_start_2(&mut engine);
    assert_eq!(engine.core().keeper().power_any(0, VoteType::Prevote), 1);
    for round in 0..rest {
        assert_eq!(
            engine.core().keeper().power_any(round, VoteType::Precommit),
            1,
            "round {round}"
        );
    }
}
