//! One or more tests per rule of the algorithm, driving a single validator
//! with plain votes and proposals for values "red" and "blue".

use std::sync::Arc;

use super::core::{Core, Input, Output, Params, Validity};
use super::types::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Colors;

impl Context for Colors {
    type Address = String;
    type Value = String;
    type ValueId = String;
    type Signature = ();
    fn value_id(value: &String) -> String {
        value.clone()
    }
    fn verify(_: &String, _: &[u8], _: &()) -> bool {
        true
    }
}

const H: Height = 1;

fn v(i: u32) -> String {
    format!("v{i}")
}

fn set(powers: &[u64]) -> ValidatorSet<Colors> {
    ValidatorSet::new(
        powers
            .iter()
            .enumerate()
            .map(|(i, p)| (v(i as u32 + 1), *p)),
    )
    .unwrap()
}

/// Proposer of round r is v(r % 4 + 1): v1 proposes round 0, v2 round 1...
fn rotating(_h: Height, r: Round) -> String {
    v(r % 4 + 1)
}

/// Core for `me` among four validators of power 1, started at height 1.
fn started(me: u32) -> (Core<Colors>, Vec<Output<Colors>>) {
    let mut core = Core::new(
        Params::default(),
        set(&[1, 1, 1, 1]),
        v(me),
        H,
        Arc::new(rotating),
    );
    let out = core.start().unwrap();
    (core, out)
}

fn prevote(who: u32, round: Round, value: Option<&str>) -> Input<Colors> {
    vote(who, round, VoteType::Prevote, value)
}

fn precommit(who: u32, round: Round, value: Option<&str>) -> Input<Colors> {
    vote(who, round, VoteType::Precommit, value)
}

fn vote(who: u32, round: Round, vote_type: VoteType, value: Option<&str>) -> Input<Colors> {
    Input::Vote(Vote {
        height: H,
        round,
        vote_type,
        value: value.map(str::to_string),
        validator: v(who),
    })
}

fn proposal(round: Round, value: &str, valid_round: Option<Round>, valid: bool) -> Input<Colors> {
    Input::Proposal {
        proposal: Proposal {
            height: H,
            round,
            value: value.to_string(),
            valid_round,
            proposer: rotating(H, round),
        },
        validity: if valid {
            Validity::Valid
        } else {
            Validity::Invalid
        },
    }
}

fn proposal_judged(
    round: Round,
    value: &str,
    valid_round: Option<Round>,
    validity: Validity,
) -> Input<Colors> {
    let Input::Proposal { proposal, .. } = proposal(round, value, valid_round, true) else {
        unreachable!()
    };
    Input::Proposal { proposal, validity }
}

fn votes_in(out: &[Output<Colors>]) -> Vec<(VoteType, Round, Option<String>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Vote(v) => Some((v.vote_type, v.round, v.value.clone())),
            _ => None,
        })
        .collect()
}

fn timeouts_in(out: &[Output<Colors>]) -> Vec<(TimeoutKind, Round)> {
    out.iter()
        .filter_map(|o| match o {
            Output::ScheduleTimeout { timeout, .. } => Some((timeout.kind, timeout.round)),
            _ => None,
        })
        .collect()
}

fn timeout(round: Round, kind: TimeoutKind) -> Input<Colors> {
    Input::Timeout(Timeout {
        height: H,
        round,
        kind,
    })
}

fn feed(core: &mut Core<Colors>, inputs: Vec<Input<Colors>>) -> Vec<Output<Colors>> {
    inputs
        .into_iter()
        .flat_map(|i| core.handle(i).unwrap())
        .collect()
}

/// Moves `me` (not the proposer of round 0 or 1) to round 1 locked on
/// "red": proposal red in round 0, 2f+1 prevotes red, then precommit
/// timeout.
fn locked_on_red_in_round_1(me: u32) -> Core<Colors> {
    let (mut core, _) = started(me);
    let others: Vec<u32> = (1..=4).filter(|i| *i != me).collect();
    let mut inputs = vec![proposal(0, "red", None, true)];
    inputs.extend(others.iter().take(2).map(|i| prevote(*i, 0, Some("red"))));
    let out = feed(&mut core, inputs);
    assert!(votes_in(&out).contains(&(VoteType::Precommit, 0, Some("red".into()))));
    // The host may deliver a precommit timeout without L47 having fired
    // here (it fired elsewhere before a crash, say); the core accepts it.
    feed(&mut core, vec![timeout(0, TimeoutKind::Precommit)]);
    assert_eq!(core.round(), 1);
    assert_eq!(
        core.locked().map(|(r, v)| (*r, v.as_str())),
        Some((0, "red"))
    );
    core
}

#[test]
fn l11_proposer_requests_a_value_and_proposes_it() {
    let (mut core, out) = started(1);
    assert!(out.contains(&Output::RequestValue {
        height: H,
        round: 0
    }));
    assert!(timeouts_in(&out).contains(&(TimeoutKind::Propose, 0)));
    let out = core
        .handle(Input::ProposeValue {
            height: H,
            round: 0,
            value: "red".into(),
        })
        .unwrap();
    // The proposal goes out, then the proposer's own prevote for it (L22).
    assert!(matches!(&out[0], Output::Propose(p) if p.value == "red" && p.valid_round.is_none()));
    assert_eq!(
        votes_in(&out),
        vec![(VoteType::Prevote, 0, Some("red".into()))]
    );
    // A second answer for the same round is ignored.
    let out = core
        .handle(Input::ProposeValue {
            height: H,
            round: 0,
            value: "blue".into(),
        })
        .unwrap();
    assert!(out.is_empty());
}

#[test]
fn l11_non_proposer_only_schedules_propose_timeout() {
    let (_, out) = started(2);
    assert_eq!(timeouts_in(&out), vec![(TimeoutKind::Propose, 0)]);
    assert!(!out.iter().any(|o| matches!(o, Output::RequestValue { .. })));
}

#[test]
fn l22_prevotes_valid_fresh_proposal() {
    let (mut core, _) = started(2);
    let out = feed(&mut core, vec![proposal(0, "red", None, true)]);
    assert_eq!(
        votes_in(&out),
        vec![(VoteType::Prevote, 0, Some("red".into()))]
    );
    assert_eq!(core.step(), Step::Prevote);
}

#[test]
fn l22_prevotes_nil_for_invalid_proposal() {
    let (mut core, _) = started(2);
    let out = feed(&mut core, vec![proposal(0, "red", None, false)]);
    assert_eq!(votes_in(&out), vec![(VoteType::Prevote, 0, None)]);
}

#[test]
fn l22_ignores_proposal_from_wrong_proposer() {
    let (mut core, _) = started(2);
    let out = feed(
        &mut core,
        vec![Input::Proposal {
            proposal: Proposal {
                height: H,
                round: 0,
                value: "red".into(),
                valid_round: None,
                proposer: v(3),
            },
            validity: Validity::Valid,
        }],
    );
    assert!(votes_in(&out).is_empty());
    assert_eq!(core.step(), Step::Propose);
}

#[test]
fn l22_locked_validator_prevotes_nil_for_other_value() {
    let mut core = locked_on_red_in_round_1(3);
    let out = feed(&mut core, vec![proposal(1, "blue", None, true)]);
    assert_eq!(votes_in(&out), vec![(VoteType::Prevote, 1, None)]);
}

#[test]
fn l22_locked_validator_prevotes_its_locked_value() {
    let mut core = locked_on_red_in_round_1(3);
    let out = feed(&mut core, vec![proposal(1, "red", None, true)]);
    assert_eq!(
        votes_in(&out),
        vec![(VoteType::Prevote, 1, Some("red".into()))]
    );
}

#[test]
fn l22_broken_switch_ignores_the_lock() {
    let mut core = locked_on_red_in_round_1(3);
    core.ignore_lock = true;
    let out = feed(&mut core, vec![proposal(1, "blue", None, true)]);
    assert_eq!(
        votes_in(&out),
        vec![(VoteType::Prevote, 1, Some("blue".into()))]
    );
}

#[test]
fn l28_prevotes_reproposal_with_polka_in_valid_round() {
    let mut core = locked_on_red_in_round_1(3);
    // Round 1: "blue" re-proposed from round 0 needs 2f+1 prevotes for blue
    // in round 0; without them, nothing happens.
    let out = feed(&mut core, vec![proposal(1, "blue", Some(0), true)]);
    assert!(votes_in(&out).is_empty());
    // Locked in round 0 on red; a polka for red in round 0 re-proposed: vote.
    let out = feed(&mut core, vec![proposal(1, "red", Some(0), true)]);
    assert_eq!(
        votes_in(&out),
        vec![(VoteType::Prevote, 1, Some("red".into()))]
    );
}

#[test]
fn l28_unlocks_when_valid_round_is_not_below_lock() {
    // Locked on red in round 0; in round 2 blue is re-proposed with a polka
    // from round 1 >= lockedRound: prevote blue.
    let mut core = locked_on_red_in_round_1(4);
    let out = feed(
        &mut core,
        vec![
            prevote(1, 1, Some("blue")),
            prevote(2, 1, Some("blue")),
            prevote(3, 1, Some("blue")),
            timeout(1, TimeoutKind::Propose),
            precommit(1, 1, None),
            precommit(2, 1, None),
            timeout(1, TimeoutKind::Precommit),
        ],
    );
    assert_eq!(core.round(), 2);
    assert!(votes_in(&out).contains(&(VoteType::Prevote, 1, None)));
    let out = feed(&mut core, vec![proposal(2, "blue", Some(1), true)]);
    assert_eq!(
        votes_in(&out),
        vec![(VoteType::Prevote, 2, Some("blue".into()))]
    );
}

#[test]
fn l28_invalid_reproposal_gets_nil() {
    let (mut core, _) = started(3);
    feed(
        &mut core,
        vec![
            prevote(1, 0, Some("red")),
            prevote(2, 0, Some("red")),
            prevote(4, 0, Some("red")),
            timeout(0, TimeoutKind::Propose),
            precommit(1, 0, None),
            precommit(2, 0, None),
            timeout(0, TimeoutKind::Precommit),
        ],
    );
    let out = feed(&mut core, vec![proposal(1, "red", Some(0), false)]);
    assert_eq!(votes_in(&out), vec![(VoteType::Prevote, 1, None)]);
}

#[test]
fn l34_prevote_timeout_once_on_any_quorum() {
    let (mut core, _) = started(2);
    feed(&mut core, vec![proposal(0, "red", None, true)]);
    let out = feed(
        &mut core,
        vec![prevote(1, 0, None), prevote(3, 0, Some("blue"))],
    );
    assert_eq!(timeouts_in(&out), vec![(TimeoutKind::Prevote, 0)]);
    let out = feed(&mut core, vec![prevote(4, 0, Some("green"))]);
    assert!(timeouts_in(&out).is_empty(), "fires only once");
}

#[test]
fn l36_locks_and_precommits_on_polka() {
    let (mut core, _) = started(2);
    let out = feed(
        &mut core,
        vec![
            proposal(0, "red", None, true),
            prevote(1, 0, Some("red")),
            prevote(3, 0, Some("red")),
        ],
    );
    assert!(votes_in(&out).contains(&(VoteType::Precommit, 0, Some("red".into()))));
    assert_eq!(core.locked(), Some(&(0, "red".to_string())));
    assert_eq!(core.valid(), Some(&(0, "red".to_string())));
    assert_eq!(core.step(), Step::Precommit);
}

#[test]
fn l36_polka_before_proposal_fires_when_proposal_arrives() {
    let (mut core, _) = started(2);
    let out = feed(
        &mut core,
        vec![
            prevote(1, 0, Some("red")),
            prevote(3, 0, Some("red")),
            prevote(4, 0, Some("red")),
        ],
    );
    assert!(votes_in(&out).is_empty());
    let out = feed(&mut core, vec![proposal(0, "red", None, true)]);
    assert_eq!(
        votes_in(&out),
        vec![
            (VoteType::Prevote, 0, Some("red".into())),
            (VoteType::Precommit, 0, Some("red".into()))
        ]
    );
}

#[test]
fn l36_in_precommit_step_updates_valid_but_not_lock() {
    let (mut core, _) = started(2);
    feed(
        &mut core,
        vec![
            proposal(0, "red", None, true),
            timeout(0, TimeoutKind::Prevote),
        ],
    );
    assert_eq!(core.step(), Step::Precommit, "L61 precommitted nil");
    let out = feed(
        &mut core,
        vec![prevote(1, 0, Some("red")), prevote(3, 0, Some("red"))],
    );
    assert!(votes_in(&out).is_empty());
    assert_eq!(core.locked(), None);
    assert_eq!(core.valid(), Some(&(0, "red".to_string())));
}

#[test]
fn equivocating_votes_count_once_per_value_and_duplicates_not_at_all() {
    let (mut core, _) = started(2);
    let out = feed(
        &mut core,
        vec![prevote(1, 0, None), prevote(1, 0, Some("red"))],
    );
    assert!(matches!(&out[..], [Output::Equivocation { first, second }]
        if first.value.is_none() && second.value.as_deref() == Some("red")));
    let out = feed(&mut core, vec![prevote(1, 0, None)]);
    assert!(out.is_empty(), "duplicate");
    // One validator in the total; its votes count once for each value.
    assert_eq!(core.keeper().power_any(0, VoteType::Prevote), 1);
    assert_eq!(core.keeper().power_for(0, VoteType::Prevote, &None), 1);
    assert_eq!(
        core.keeper()
            .power_for(0, VoteType::Prevote, &Some("red".into())),
        1
    );
    // A bounded number of different votes per slot is counted, unless they
    // are for a value proposed at this height.
    feed(&mut core, vec![prevote(1, 0, Some("blue"))]);
    assert_eq!(
        core.keeper()
            .power_for(0, VoteType::Prevote, &Some("blue".into())),
        0
    );
    feed(
        &mut core,
        vec![proposal(0, "blue", None, true), prevote(1, 0, Some("blue"))],
    );
    // Ours (L22) and v1's third vote.
    assert_eq!(
        core.keeper()
            .power_for(0, VoteType::Prevote, &Some("blue".into())),
        2
    );
}

#[test]
fn equivocator_vote_completes_a_polka_for_its_value() {
    // v3 prevoted nil to us first, then red (relayed by a peer that got it):
    // the paper counts messages, so red has 2f+1 prevotes.
    let (mut core, _) = started(2);
    let out = feed(
        &mut core,
        vec![
            proposal(0, "red", None, true),
            prevote(3, 0, None),
            prevote(4, 0, Some("red")),
            prevote(3, 0, Some("red")),
        ],
    );
    assert!(votes_in(&out).contains(&(VoteType::Precommit, 0, Some("red".into()))));
}

#[test]
fn l44_precommits_nil_on_nil_polka() {
    let (mut core, _) = started(2);
    let out = feed(
        &mut core,
        vec![
            timeout(0, TimeoutKind::Propose),
            prevote(1, 0, None),
            prevote(3, 0, None),
        ],
    );
    assert_eq!(
        votes_in(&out),
        vec![(VoteType::Prevote, 0, None), (VoteType::Precommit, 0, None)]
    );
}

#[test]
fn l47_precommit_timeout_once_on_any_quorum() {
    let (mut core, _) = started(2);
    let out = feed(
        &mut core,
        vec![
            precommit(1, 0, None),
            precommit(3, 0, Some("red")),
            precommit(4, 0, Some("blue")),
        ],
    );
    assert_eq!(timeouts_in(&out), vec![(TimeoutKind::Precommit, 0)]);
    assert_eq!(core.step(), Step::Propose, "L47 does not change the step");
}

#[test]
fn l49_decides_with_certificate_signers() {
    let (mut core, _) = started(2);
    let out = feed(
        &mut core,
        vec![
            precommit(1, 0, Some("red")),
            precommit(3, 0, Some("red")),
            precommit(4, 0, Some("red")),
            proposal(0, "red", None, true),
        ],
    );
    let decide = out.iter().find_map(|o| match o {
        Output::Decide {
            round,
            value,
            precommits,
            ..
        } => Some((*round, value.clone(), precommits.clone())),
        _ => None,
    });
    assert_eq!(decide, Some((0, "red".to_string(), vec![v(1), v(3), v(4)])));
    assert_eq!(core.step(), Step::Decided);
    // Nothing more at this height.
    assert!(feed(&mut core, vec![timeout(0, TimeoutKind::Propose)]).is_empty());
}

#[test]
fn l49_decides_value_of_an_earlier_round() {
    let mut core = locked_on_red_in_round_1(3);
    let out = feed(
        &mut core,
        vec![precommit(1, 0, Some("red")), precommit(2, 0, Some("red"))],
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Decide { round: 0, .. }))
    );
}

#[test]
fn l49_does_not_decide_invalid_value() {
    let (mut core, _) = started(2);
    let out = feed(
        &mut core,
        vec![
            proposal(0, "red", None, false),
            precommit(1, 0, Some("red")),
            precommit(3, 0, Some("red")),
            precommit(4, 0, Some("red")),
        ],
    );
    assert!(!out.iter().any(|o| matches!(o, Output::Decide { .. })));
}

#[test]
fn l55_skips_to_round_with_one_third_of_power() {
    let (mut core, _) = started(2);
    let out = feed(&mut core, vec![prevote(1, 5, None)]);
    assert_eq!(core.round(), 0, "1/4 of the power is not enough");
    assert!(out.is_empty());
    let out = feed(&mut core, vec![precommit(3, 5, None)]);
    assert_eq!(core.round(), 5);
    assert_eq!(timeouts_in(&out), vec![(TimeoutKind::Propose, 5)]);
}

#[test]
fn l55_counts_power_not_heads() {
    // v1 has power 3 of 6: its vote alone is more than 1/3.
    let mut core = Core::new(
        Params::default(),
        set(&[3, 1, 1, 1]),
        v(2),
        H,
        Arc::new(rotating),
    );
    core.start().unwrap();
    feed(&mut core, vec![prevote(1, 2, None)]);
    assert_eq!(core.round(), 2);
}

#[test]
fn l57_propose_timeout_prevotes_nil() {
    let (mut core, _) = started(2);
    let out = feed(&mut core, vec![timeout(0, TimeoutKind::Propose)]);
    assert_eq!(votes_in(&out), vec![(VoteType::Prevote, 0, None)]);
    // Stale timeouts (wrong round) are ignored.
    assert!(feed(&mut core, vec![timeout(3, TimeoutKind::Propose)]).is_empty());
}

#[test]
fn l61_prevote_timeout_precommits_nil() {
    let (mut core, _) = started(2);
    feed(&mut core, vec![timeout(0, TimeoutKind::Propose)]);
    let out = feed(&mut core, vec![timeout(0, TimeoutKind::Prevote)]);
    assert_eq!(votes_in(&out), vec![(VoteType::Precommit, 0, None)]);
    assert!(feed(&mut core, vec![timeout(0, TimeoutKind::Prevote)]).is_empty());
}

#[test]
fn l65_precommit_timeout_starts_next_round_with_longer_timeouts() {
    let (mut core, out0) = started(3);
    let first = out0.iter().find_map(|o| match o {
        Output::ScheduleTimeout { duration_ms, .. } => Some(*duration_ms),
        _ => None,
    });
    let out = feed(&mut core, vec![timeout(0, TimeoutKind::Precommit)]);
    assert_eq!(core.round(), 1);
    let second = out.iter().find_map(|o| match o {
        Output::ScheduleTimeout { duration_ms, .. } => Some(*duration_ms),
        _ => None,
    });
    assert!(second > first, "{second:?} > {first:?}");
}

#[test]
fn proposer_reproposes_valid_value_with_valid_round() {
    // v2 proposes round 1; it saw a polka for red in round 0.
    let (mut core, _) = started(2);
    feed(
        &mut core,
        vec![
            proposal(0, "red", None, true),
            prevote(1, 0, Some("red")),
            prevote(3, 0, Some("red")),
            precommit(1, 0, None),
            precommit(3, 0, None),
        ],
    );
    let out = feed(&mut core, vec![timeout(0, TimeoutKind::Precommit)]);
    let proposed = out.iter().find_map(|o| match o {
        Output::Propose(p) => Some((p.round, p.value.clone(), p.valid_round)),
        _ => None,
    });
    assert_eq!(proposed, Some((1, "red".to_string(), Some(0))));
    assert!(!out.iter().any(|o| matches!(o, Output::RequestValue { .. })));
}

#[test]
fn votes_from_non_validators_and_other_heights_are_ignored() {
    let (mut core, _) = started(2);
    let out = feed(
        &mut core,
        vec![
            prevote(9, 0, None),
            Input::Vote(Vote {
                height: 2,
                round: 0,
                vote_type: VoteType::Prevote,
                value: None,
                validator: v(1),
            }),
        ],
    );
    assert!(out.is_empty());
    assert_eq!(core.keeper().power_any(0, VoteType::Prevote), 0);
}

#[test]
fn next_height_resets_lock_and_starts_round_zero() {
    let mut core = locked_on_red_in_round_1(3);
    let out = core
        .handle(Input::StartHeight {
            height: 2,
            validators: set(&[1, 1, 1, 1]),
            excluded_proposers: vec![],
        })
        .unwrap();
    assert_eq!(
        (core.height(), core.round(), core.step()),
        (2, 0, Step::Propose)
    );
    assert_eq!(core.locked(), None);
    assert_eq!(timeouts_in(&out), vec![(TimeoutKind::Propose, 0)]);
}

#[test]
fn round_overflow_is_an_error() {
    let (mut core, _) = started(2);
    core.force_round(Round::MAX);
    let result = core.handle(timeout(Round::MAX, TimeoutKind::Precommit));
    assert_eq!(result, Err(ConsensusError::RoundOverflow));
}

#[test]
fn votes_too_far_ahead_are_dropped() {
    let (mut core, _) = started(2);
    feed(
        &mut core,
        vec![prevote(1, Round::MAX, None), prevote(3, Round::MAX, None)],
    );
    assert_eq!(core.round(), 0);
    assert_eq!(core.keeper().power_any(Round::MAX, VoteType::Prevote), 0);
}

#[test]
fn validator_set_thresholds_are_weighted() {
    let s = set(&[5, 2, 2, 1]);
    assert_eq!(s.total_power(), 10);
    assert!(!s.is_quorum(6));
    assert!(s.is_quorum(7));
    assert!(!s.is_one_third(3));
    assert!(s.is_one_third(4));
    assert_eq!(
        ValidatorSet::<Colors>::new([(v(1), u64::MAX), (v(2), 1)]),
        Err(ConsensusError::PowerOverflow)
    );
    assert_eq!(
        ValidatorSet::<Colors>::new([(v(1), 1), (v(1), 1)]),
        Err(ConsensusError::DuplicateValidator)
    );
    assert_eq!(
        ValidatorSet::<Colors>::new([(v(1), 0)]),
        Err(ConsensusError::InvalidValidatorSet)
    );
}

#[test]
fn timeouts_adapt_to_the_rounds_heights_need() {
    let first_propose_timeout = |core: &mut Core<Colors>, height| {
        let out = core
            .handle(Input::StartHeight {
                height,
                validators: set(&[1, 1, 1, 1]),
                excluded_proposers: vec![],
            })
            .unwrap();
        out.iter()
            .find_map(|o| match o {
                Output::ScheduleTimeout { duration_ms, .. } => Some(*duration_ms),
                _ => None,
            })
            .unwrap()
    };
    let (mut core, out) = started(2);
    let base = timeouts_in(&out).len();
    assert_eq!(base, 1);
    // Height 1 decides in round 2.
    core.force_round(2);
    feed(
        &mut core,
        vec![
            Input::Proposal {
                proposal: Proposal {
                    height: H,
                    round: 2,
                    value: "red".into(),
                    valid_round: None,
                    proposer: rotating(H, 2),
                },
                validity: Validity::Valid,
            },
            precommit(1, 2, Some("red")),
            precommit(3, 2, Some("red")),
            precommit(4, 2, Some("red")),
        ],
    );
    assert_eq!(core.step(), Step::Decided);
    let params = Params::default();
    let slow = first_propose_timeout(&mut core, 2);
    assert_eq!(
        slow,
        params.timeout_propose_ms + 2 * params.timeout_propose_delta_ms
    );
    // Heights decided in round 0 bring it back down, one delta at a time.
    let mut timeouts = vec![];
    for height in 2..5 {
        core.force_round(0);
        feed(
            &mut core,
            vec![
                Input::Proposal {
                    proposal: Proposal {
                        height,
                        round: 0,
                        value: "red".into(),
                        valid_round: None,
                        proposer: rotating(height, 0),
                    },
                    validity: Validity::Valid,
                },
                Input::Vote(Vote {
                    height,
                    round: 0,
                    vote_type: VoteType::Precommit,
                    value: Some("red".into()),
                    validator: v(1),
                }),
                Input::Vote(Vote {
                    height,
                    round: 0,
                    vote_type: VoteType::Precommit,
                    value: Some("red".into()),
                    validator: v(3),
                }),
                Input::Vote(Vote {
                    height,
                    round: 0,
                    vote_type: VoteType::Precommit,
                    value: Some("red".into()),
                    validator: v(4),
                }),
            ],
        );
        assert_eq!(core.step(), Step::Decided);
        timeouts.push(first_propose_timeout(&mut core, height + 1));
    }
    let delta = params.timeout_propose_delta_ms;
    assert_eq!(
        timeouts,
        vec![slow - delta, slow - 2 * delta, slow - 2 * delta]
    );
}

#[test]
fn l22_untimely_fresh_proposal_gets_nil() {
    let (mut core, _) = started(3);
    let out = feed(
        &mut core,
        vec![proposal_judged(0, "red", None, Validity::Untimely)],
    );
    assert_eq!(votes_in(&out), vec![(VoteType::Prevote, 0, None)]);
}

/// A re-proposal carries the time a polka accepted: judging it against the
/// clock again would refuse a value others are locked on once time moved.
#[test]
fn l28_untimely_reproposal_with_polka_is_prevoted() {
    let mut core = locked_on_red_in_round_1(3);
    let out = feed(
        &mut core,
        vec![proposal_judged(1, "red", Some(0), Validity::Untimely)],
    );
    assert_eq!(
        votes_in(&out),
        vec![(VoteType::Prevote, 1, Some("red".into()))]
    );
}

/// L36 and L49 ask `valid(v)` only: an untimely value with a polka is
/// locked on, and with 2f+1 precommits decided.
#[test]
fn l36_and_l49_accept_an_untimely_value() {
    let (mut core, _) = started(3);
    let out = feed(
        &mut core,
        vec![
            proposal_judged(0, "red", None, Validity::Untimely),
            prevote(1, 0, Some("red")),
            prevote(2, 0, Some("red")),
            prevote(4, 0, Some("red")),
        ],
    );
    assert!(votes_in(&out).contains(&(VoteType::Prevote, 0, None)));
    assert_eq!(
        core.valid().map(|(r, v)| (*r, v.as_str())),
        Some((0, "red"))
    );
    let out = feed(
        &mut core,
        vec![
            precommit(1, 0, Some("red")),
            precommit(2, 0, Some("red")),
            precommit(4, 0, Some("red")),
        ],
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Decide { value, .. } if value == "red"))
    );
}

/// The same proposal again with a better verdict replaces the first; a
/// worse one does not.
#[test]
fn l49_a_better_verdict_replaces_the_first() {
    let (mut core, _) = started(3);
    let precommits = vec![
        precommit(1, 0, Some("red")),
        precommit(2, 0, Some("red")),
        precommit(4, 0, Some("red")),
    ];
    let mut inputs = vec![proposal_judged(0, "red", None, Validity::Invalid)];
    inputs.extend(precommits);
    let out = feed(&mut core, inputs);
    assert!(!out.iter().any(|o| matches!(o, Output::Decide { .. })));
    let out = feed(
        &mut core,
        vec![proposal_judged(0, "red", None, Validity::Valid)],
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Decide { value, .. } if value == "red"))
    );
    // Never downgraded.
    let (mut core, _) = started(3);
    feed(
        &mut core,
        vec![
            proposal_judged(1, "blue", None, Validity::Valid),
            proposal_judged(1, "blue", None, Validity::Invalid),
        ],
    );
    core.force_round(1);
    let out = feed(
        &mut core,
        vec![
            precommit(1, 1, Some("blue")),
            precommit(2, 1, Some("blue")),
            precommit(4, 1, Some("blue")),
        ],
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Decide { value, .. } if value == "blue"))
    );
}

/// The proposer of a round is computed once per height (selection can
/// cost a rotation period), however many proposals and rounds ask.
#[test]
fn the_proposer_of_a_round_is_computed_once() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let selector = move |h: Height, r: Round| {
        counted.fetch_add(1, Ordering::SeqCst);
        rotating(h, r)
    };
    let mut core = Core::new(
        Params::default(),
        set(&[1, 1, 1, 1]),
        v(3),
        H,
        Arc::new(selector),
    );
    core.start().unwrap();
    for value in ["red", "blue", "green", "red", "blue"] {
        feed(&mut core, vec![proposal(0, value, None, true)]);
        feed(&mut core, vec![proposal(2, value, None, true)]);
    }
    for _ in 0..10 {
        assert_eq!(core.proposer(2), rotating(H, 2));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "rounds 0 and 2, once each");
}

/// A validator set exists only through `ValidatorSet::new`: decoding
/// checks the same rules (so a WAL or block cannot smuggle in zero power,
/// a duplicate, an unsorted list, a wrong total or a total above the one
/// bound), and the bound is `MAX_TOTAL_VOTING_POWER`.
#[test]
fn validator_sets_decode_through_their_checks_and_one_bound() {
    use symbiont_contracts::codec;
    assert!(ValidatorSet::<Colors>::new([(v(1), MAX_TOTAL_VOTING_POWER)]).is_ok());
    assert_eq!(
        ValidatorSet::<Colors>::new([(v(1), MAX_TOTAL_VOTING_POWER), (v(2), 1)]),
        Err(ConsensusError::PowerOverflow)
    );
    let good = set(&[2, 1, 1]);
    let decoded: ValidatorSet<Colors> = codec::decode(&codec::encode(&good)).unwrap();
    assert_eq!(decoded, good);
    // The wire form: (list of (address, power), total).
    let raw = |list: &[(u32, u64)], total: u64| {
        let list: Vec<(String, u64)> = list.iter().map(|(a, p)| (v(*a), *p)).collect();
        codec::encode(&(list, total))
    };
    assert_eq!(raw(&[(1, 2), (2, 1), (3, 1)], 4), codec::encode(&good));
    for (list, total) in [
        (vec![(1, 2), (2, 0)], 2),
        (vec![(1, 1), (1, 1)], 2),
        (vec![(2, 1), (1, 1)], 2),
        (vec![(1, 1), (2, 1)], 3),
        (vec![], 0),
        (
            vec![(1, MAX_TOTAL_VOTING_POWER), (2, 1)],
            MAX_TOTAL_VOTING_POWER + 1,
        ),
    ] {
        assert!(
            codec::decode::<ValidatorSet<Colors>>(&raw(&list, total)).is_err(),
            "{list:?} total {total} decoded"
        );
    }
}
