//! Proposer selection: weighted rotation, and the exclusion of validators
//! absent from recent commit certificates (computed from the chain alone, so
//! every node agrees on it).

use super::types::{Context, Height, Power, Round, ValidatorSet};

/// Chooses the proposer of a round. A test can fix it.
pub trait ProposerSelector<C: Context>: Send + Sync {
    /// The proposer of (`height`, `round`). `excluded` are validators the
    /// chain says are absent; a selector may skip them.
    fn proposer(
        &self,
        validators: &ValidatorSet<C>,
        height: Height,
        round: Round,
        excluded: &[C::Address],
    ) -> C::Address;
}

/// Any `Fn(height, round) -> address` is a selector (for tests).
impl<C: Context, F> ProposerSelector<C> for F
where
    F: Fn(Height, Round) -> C::Address + Send + Sync,
{
    fn proposer(
        &self,
        _validators: &ValidatorSet<C>,
        height: Height,
        round: Round,
        _excluded: &[C::Address],
    ) -> C::Address {
        self(height, round)
    }
}

/// Bound on the length of one rotation period: powers are scaled down so
/// selection costs at most this many steps.
const MAX_PERIOD: u64 = 1024;

/// Smooth weighted round robin over the validators not excluded: in every
/// period of (scaled) total power, each validator proposes as many rounds as
/// its (scaled) power, interleaved. Position `height + round` in the cycle.
#[derive(Clone, Copy, Debug, Default)]
pub struct WeightedRoundRobin;

impl<C: Context> ProposerSelector<C> for WeightedRoundRobin {
    fn proposer(
        &self,
        validators: &ValidatorSet<C>,
        height: Height,
        round: Round,
        excluded: &[C::Address],
    ) -> C::Address {
        let mut eligible: Vec<(&C::Address, Power)> = validators
            .validators()
            .iter()
            .filter(|v| !excluded.contains(&v.address))
            .map(|v| (&v.address, v.power))
            .collect();
        if eligible.is_empty() {
            eligible = validators
                .validators()
                .iter()
                .map(|v| (&v.address, v.power))
                .collect();
        }
        let powers: Vec<Power> = eligible.iter().map(|(_, p)| *p).collect();
        let position = height.wrapping_add(round as u64);
        let index = smooth_round_robin_index(&powers, position);
        eligible[index].0.clone()
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// Index chosen at `position` by smooth weighted round robin over `powers`.
pub fn smooth_round_robin_index(powers: &[Power], position: u64) -> usize {
    assert!(!powers.is_empty());
    let divisor = powers.iter().fold(0, |g, p| gcd(g, *p)).max(1);
    let mut weights: Vec<u64> = powers.iter().map(|p| p / divisor).collect();
    let sum: u128 = weights.iter().map(|w| *w as u128).sum();
    if sum > MAX_PERIOD as u128 {
        weights = weights
            .iter()
            .map(|w| ((*w as u128 * MAX_PERIOD as u128 / sum) as u64).max(1))
            .collect();
    }
    let period: u64 = weights.iter().sum();
    let steps = position % period;
    let mut current: Vec<i64> = vec![0; weights.len()];
    let mut chosen = 0;
    for _ in 0..=steps {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += *w as i64;
        }
        // Highest current weight wins; ties go to the lowest index.
        chosen = 0;
        for i in 1..current.len() {
            if current[i] > current[chosen] {
                chosen = i;
            }
        }
        current[chosen] -= period as i64;
    }
    chosen
}

/// How many recent commit certificates a validator must be missing from to
/// be skipped as proposer.
pub const ABSENCE_WINDOW: usize = 3;

/// Validators missing from every one of the last `ABSENCE_WINDOW` commit
/// certificates (`recent_signers`, one list of signers per certificate, as
/// recorded on the chain). Fewer certificates than the window: nobody is
/// excluded. The result never holds 1/3 of the power or more, so the
/// remaining proposers always include an honest validator.
pub fn absent_validators<C: Context>(
    validators: &ValidatorSet<C>,
    recent_signers: &[Vec<C::Address>],
) -> Vec<C::Address> {
    if recent_signers.len() < ABSENCE_WINDOW {
        return Vec::new();
    }
    let window = &recent_signers[recent_signers.len() - ABSENCE_WINDOW..];
    let mut excluded = Vec::new();
    let mut excluded_power: Power = 0;
    for validator in validators.validators() {
        let absent = window
            .iter()
            .all(|signers| !signers.contains(&validator.address));
        if !absent {
            continue;
        }
        let Some(power) = excluded_power.checked_add(validator.power) else {
            break;
        };
        if validators.is_one_third(power) {
            continue;
        }
        excluded_power = power;
        excluded.push(validator.address.clone());
    }
    excluded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimContext;

    fn set(powers: &[u64]) -> ValidatorSet<SimContext> {
        ValidatorSet::new(powers.iter().enumerate().map(|(i, p)| (i as u16, *p))).unwrap()
    }

    #[test]
    fn rotation_is_weighted_and_interleaved() {
        let powers = [3, 1, 1];
        let picks: Vec<usize> = (0..10)
            .map(|t| smooth_round_robin_index(&powers, t))
            .collect();
        for period in picks.chunks(5) {
            let count = |i| period.iter().filter(|p| **p == i).count();
            assert_eq!((count(0), count(1), count(2)), (3, 1, 1), "{picks:?}");
        }
        assert!(
            picks.windows(3).all(|w| w != [0, 0, 0]),
            "interleaved: {picks:?}"
        );
        // Large powers are scaled, not iterated.
        let big = [u64::MAX / 4, u64::MAX / 4, 1];
        let chosen: std::collections::BTreeSet<usize> = (0..2000)
            .map(|t| smooth_round_robin_index(&big, t))
            .collect();
        assert_eq!(chosen.len(), 3);
    }

    #[test]
    fn rotation_moves_with_round_and_height() {
        let validators = set(&[1, 1, 1, 1]);
        let proposer = |h, r| WeightedRoundRobin.proposer(&validators, h, r, &[]);
        let round_robin: std::collections::BTreeSet<u16> = (0..4).map(|r| proposer(1, r)).collect();
        assert_eq!(round_robin.len(), 4);
        assert_eq!(proposer(2, 0), proposer(1, 1));
    }

    #[test]
    fn excluded_validators_never_propose() {
        let validators = set(&[1, 1, 1, 1]);
        for position in 0..40 {
            let chosen = WeightedRoundRobin.proposer(&validators, position, 0, &[2]);
            assert_ne!(chosen, 2);
        }
    }

    #[test]
    fn absence_needs_a_full_window_and_stays_under_one_third() {
        let validators = set(&[1, 1, 1, 1, 1, 1, 1]);
        let signers = |s: &[u16]| s.to_vec();
        let window = vec![
            signers(&[0, 1, 2, 3, 4]),
            signers(&[0, 1, 2, 3, 4]),
            signers(&[0, 1, 2, 3, 5]),
        ];
        assert!(
            absent_validators(&validators, &window[..2]).is_empty(),
            "window not full"
        );
        // 6 signed once, 5 signed once: only 6 is absent from all three.
        assert_eq!(absent_validators(&validators, &window), vec![6]);
        // Three absent (3/7 of the power): only two are skipped (2/7 < 1/3).
        let window = vec![signers(&[0, 1, 2, 3]); 3];
        assert_eq!(absent_validators(&validators, &window), vec![4, 5]);
    }
}
