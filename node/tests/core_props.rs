//! Property tests of the sans-I/O core: any sequence of verified inputs
//! (from a Byzantine-rich network) never panics or errors, and the core
//! never casts two different votes in one slot, never decides without a
//! valid proposal and 2f+1 precommits for it, and decides at most once.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use symbiont_node::consensus::core::{Core, Input, Output, Params, Validity};
use symbiont_node::consensus::{
    Context, Height, Proposal, Round, Timeout, TimeoutKind, ValidatorSet, Vote, VoteType,
};

#[derive(Clone, Debug, PartialEq, Eq)]
struct Colors;

impl Context for Colors {
    type Address = u8;
    type Value = String;
    type ValueId = String;
    type Signature = ();
    fn value_id(value: &String) -> String {
        value.clone()
    }
    fn verify(_: &u8, _: &[u8], _: &()) -> bool {
        true
    }
}

const ME: u8 = 2;

fn rotating(_h: Height, r: Round) -> u8 {
    (r % 4) as u8 + 1
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![Just("red".to_string()), Just("blue".to_string())]
}

fn input() -> impl Strategy<Value = Input<Colors>> {
    let round = 0u32..4;
    prop_oneof![
        1 => (round.clone(), value(), proptest::option::of(0u32..4), 0u8..3).prop_map(
            |(round, value, valid_round, validity)| Input::Proposal {
                proposal: Proposal {
                    height: 1,
                    round,
                    value,
                    valid_round,
                    proposer: rotating(1, round),
                },
                validity: [Validity::Invalid, Validity::Untimely, Validity::Valid][validity as usize],
            }
        ),
        4 => (1u8..=4, round.clone(), any::<bool>(), proptest::option::of(value())).prop_map(
            |(validator, round, prevote, value)| Input::Vote(Vote {
                height: 1,
                round,
                vote_type: if prevote { VoteType::Prevote } else { VoteType::Precommit },
                value,
                validator,
            })
        ),
        1 => (round.clone(), 0u8..3).prop_map(|(round, kind)| Input::Timeout(Timeout {
            height: 1,
            round,
            kind: [TimeoutKind::Propose, TimeoutKind::Prevote, TimeoutKind::Precommit][kind as usize],
        })),
        1 => (round, value()).prop_map(|(round, value)| Input::ProposeValue { height: 1, round, value }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn core_is_safe_under_arbitrary_inputs(inputs in proptest::collection::vec(input(), 0..120)) {
        let validators = ValidatorSet::<Colors>::new((1..=4u8).map(|v| (v, 1))).unwrap();
        let mut core = Core::new(Params::default(), validators, ME, 1, Arc::new(rotating));
        let mut own_votes: BTreeMap<(Round, VoteType), Option<String>> = BTreeMap::new();
        let mut decisions = 0;
        let mut outputs = core.start().unwrap();
        let mut fed: Vec<Input<Colors>> = Vec::new();
        for input in inputs {
            for output in &outputs {
                match output {
                    Output::Vote(vote) => {
                        let previous = own_votes.insert((vote.round, vote.vote_type), vote.value.clone());
                        prop_assert!(previous.is_none(), "two votes in slot {:?}", (vote.round, vote.vote_type));
                    }
                    Output::Decide { round, value, precommits, .. } => {
                        decisions += 1;
                        prop_assert!(precommits.len() >= 3);
                        let proposed = fed.iter().any(|i| matches!(i,
                            Input::Proposal { proposal, validity }
                                if validity.is_valid() && proposal.round == *round && proposal.value == *value)
                            || matches!(i, Input::ProposeValue { round: r, value: v, .. }
                                if *r == *round && v == value));
                        prop_assert!(proposed, "decided {} in round {} without a valid proposal", value, round);
                    }
                    _ => {}
                }
            }
            prop_assert!(decisions <= 1);
            fed.push(input.clone());
            outputs = core.handle(input).unwrap();
        }
    }
}
