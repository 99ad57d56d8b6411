//! Proposer selection: weighted rotation, and the exclusion of validators
//! that recently missed their proposer turn (computed from the chain alone,
//! so every node agrees on it).

use super::types::{Context, Height, Power, Round, ValidatorSet};

/// Chooses the proposer of a round. A test can fix it.
pub trait ProposerSelector<C: Context>: Send + Sync {
    /// The proposer of (`height`, `round`). `excluded` are validators the
    /// chain says recently missed their turn; a selector may skip them in
    /// the first rounds of a height, but every validator must get turns in
    /// the later rounds, or a height could never end (see
    /// `WeightedRoundRobin`).
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

/// Smooth weighted round robin: in every period of (scaled) total power,
/// each validator proposes as many rounds as its (scaled) power,
/// interleaved. Position `height + round` in the cycle.
///
/// The excluded validators are skipped in the first `n` rounds of a height
/// (`n` validators) only: from round `n` on, everyone takes turns again.
/// Liveness needs it: the only correct validator that knows the value the
/// others locked on (its valid value) may be one of the excluded, and a
/// height can end only once it proposes that value again (simulator seed
/// 15976, where the rounds of a height ran on without end).
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
        let excluded = if (round as usize) < validators.len() {
            excluded
        } else {
            &[]
        };
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

/// Heights a validator sits out of the proposer rotation after it missed a
/// turn. Long enough that a dead validator costs one propose timeout per
/// window, short enough that a live one whose turn failed (a slow link, a
/// restart) is back soon.
pub const MISSED_TURN_WINDOW: Height = 64;

/// The proposers that missed their turn at `height`, decided in round
/// `decided_round`: those of the rounds before it, under the exclusions in
/// force at that height (sorted, without repeats). A round without a
/// decision cost the network its timeouts; its proposer is the one to do
/// without for a while. What a validator's votes did does not matter, so
/// whose precommits arrive last, and whose a certificate omits, changes
/// nothing.
pub fn missed_turns<C: Context>(
    selector: &dyn ProposerSelector<C>,
    validators: &ValidatorSet<C>,
    height: Height,
    excluded: &[C::Address],
    decided_round: Round,
) -> Vec<C::Address> {
    let mut missed: Vec<C::Address> = Vec::new();
    // Every validator proposes within one rotation period (at most
    // `MAX_PERIOD` rounds); stop early once everybody is named.
    for round in 0..decided_round.min(MAX_PERIOD as Round) {
        let proposer = selector.proposer(validators, height, round, excluded);
        if let Err(at) = missed.binary_search(&proposer) {
            missed.insert(at, proposer);
        }
        if missed.len() == validators.len() {
            break;
        }
    }
    missed
}

/// The validators to skip as proposers at `height`: those that missed a
/// turn at one of the `MISSED_TURN_WINDOW` heights before it. `recent`
/// holds `(height, missed_turns)` as the chain records them (a block
/// carries the previous height's commit certificate, whose round tells who
/// missed). Never 1/3 of the power or more, so an honest proposer always
/// remains: the most recent misses are skipped first, ties by address.
/// Sorted by address.
pub fn excluded_proposers<C: Context>(
    validators: &ValidatorSet<C>,
    recent: &[(Height, Vec<C::Address>)],
    height: Height,
) -> Vec<C::Address> {
    let mut latest: std::collections::BTreeMap<&C::Address, Height> = Default::default();
    for (missed_at, missed) in recent {
        if *missed_at >= height || missed_at.saturating_add(MISSED_TURN_WINDOW) < height {
            continue;
        }
        for address in missed {
            let at = latest.entry(address).or_insert(*missed_at);
            *at = (*at).max(*missed_at);
        }
    }
    let mut candidates: Vec<(Height, &C::Address)> =
        latest.into_iter().map(|(a, h)| (h, a)).collect();
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let mut excluded = Vec::new();
    let mut excluded_power: Power = 0;
    for (_, address) in candidates {
        let Some(power) = validators.power_of(address) else {
            continue;
        };
        let total = excluded_power.saturating_add(power);
        if validators.is_one_third(total) {
            continue;
        }
        excluded_power = total;
        excluded.push(address.clone());
    }
    excluded.sort();
    excluded
}

/// The exclusions a chain implies, kept up to date block by block: what a
/// node (or an auditor) derives from the chain alone. Holds the missed
/// turns of the last `MISSED_TURN_WINDOW` heights and the exclusions of
/// the current and next height.
#[derive(Clone, Debug)]
pub struct ProposerHistory<C: Context> {
    missed: Vec<(Height, Vec<C::Address>)>,
    excluded: std::collections::BTreeMap<Height, Vec<C::Address>>,
}

impl<C: Context> Default for ProposerHistory<C> {
    fn default() -> Self {
        Self {
            missed: Vec::new(),
            excluded: std::collections::BTreeMap::from([(1, Vec::new())]),
        }
    }
}

impl<C: Context> ProposerHistory<C> {
    /// Block `height` was committed. It carries the certificate of
    /// `height - 1` (`last_commit_round`: its round; `None` at height 1),
    /// so the proposers of the rounds before it, under the exclusions of
    /// that height and its validators `previous_validators`, missed their
    /// turn. `next_validators` are those of `height + 1`. Returns the
    /// exclusions of `height + 1`.
    pub fn on_commit(
        &mut self,
        selector: &dyn ProposerSelector<C>,
        height: Height,
        last_commit_round: Option<Round>,
        previous_validators: &ValidatorSet<C>,
        next_validators: &ValidatorSet<C>,
    ) -> Vec<C::Address> {
        if let (Some(round), Some(at)) = (last_commit_round, height.checked_sub(1))
            && at >= 1
        {
            let then = self.excluded_at(at);
            let missed = missed_turns(selector, previous_validators, at, &then, round);
            if !missed.is_empty() {
                self.missed.push((at, missed));
            }
        }
        let next = height.saturating_add(1);
        let excluded = excluded_proposers(next_validators, &self.missed, next);
        self.missed
            .retain(|(h, _)| h.saturating_add(MISSED_TURN_WINDOW) >= next);
        self.excluded.retain(|h, _| h.saturating_add(1) >= next);
        self.excluded.insert(next, excluded.clone());
        excluded
    }

    /// The exclusions in force at `height` (the current or the next one).
    pub fn excluded_at(&self, height: Height) -> Vec<C::Address> {
        self.excluded.get(&height).cloned().unwrap_or_default()
    }

    /// The missed turns it remembers, `(height, validators)`.
    pub fn missed(&self) -> &[(Height, Vec<C::Address>)] {
        &self.missed
    }
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
    fn excluded_validators_sit_out_the_first_rotation_only() {
        let validators = set(&[1, 1, 1, 1]);
        for height in 0..40 {
            for round in 0..4 {
                let chosen = WeightedRoundRobin.proposer(&validators, height, round, &[2, 3]);
                assert!(chosen < 2, "height {height} round {round}");
            }
            let later: std::collections::BTreeSet<u16> = (4..8)
                .map(|round| WeightedRoundRobin.proposer(&validators, height, round, &[2, 3]))
                .collect();
            assert_eq!(later.len(), 4, "everyone from round n on");
        }
    }

    #[test]
    fn missed_turns_are_the_proposers_of_the_rounds_before_the_decision() {
        let validators = set(&[1, 1, 1, 1]);
        let proposer = |r| WeightedRoundRobin.proposer(&validators, 7, r, &[]);
        assert!(missed_turns(&WeightedRoundRobin, &validators, 7, &[], 0).is_empty());
        assert_eq!(
            missed_turns(&WeightedRoundRobin, &validators, 7, &[], 1),
            vec![proposer(0)]
        );
        let mut two = vec![proposer(0), proposer(1)];
        two.sort();
        assert_eq!(
            missed_turns(&WeightedRoundRobin, &validators, 7, &[], 2),
            two
        );
        // A thousand failed rounds name each validator once, quickly.
        assert_eq!(
            missed_turns(&WeightedRoundRobin, &validators, 7, &[], 100_000),
            vec![0, 1, 2, 3]
        );
        // Under exclusions, the rounds' real proposers.
        let excluded = [proposer(0)];
        let first = WeightedRoundRobin.proposer(&validators, 7, 0, &excluded);
        assert_eq!(
            missed_turns(&WeightedRoundRobin, &validators, 7, &excluded, 1),
            vec![first]
        );
    }

    #[test]
    fn a_missed_turn_excludes_for_a_window_then_expires() {
        let validators = set(&[1, 1, 1, 1, 1, 1, 1]);
        let recent = vec![(10, vec![3]), (12, vec![5])];
        assert!(excluded_proposers(&validators, &recent, 10).is_empty());
        assert_eq!(excluded_proposers(&validators, &recent, 11), vec![3]);
        assert_eq!(excluded_proposers(&validators, &recent, 13), vec![3, 5]);
        let last_for_3 = 10 + MISSED_TURN_WINDOW;
        assert_eq!(
            excluded_proposers(&validators, &recent, last_for_3),
            vec![3, 5]
        );
        assert_eq!(
            excluded_proposers(&validators, &recent, last_for_3 + 1),
            vec![5]
        );
        assert!(excluded_proposers(&validators, &recent, 12 + MISSED_TURN_WINDOW + 1).is_empty());
    }

    #[test]
    fn exclusion_stays_under_one_third_most_recent_first() {
        let validators = set(&[1, 1, 1, 1, 1, 1, 1]);
        // Three missed (3/7 of the power): the two most recent are skipped.
        let recent = vec![(20, vec![0]), (21, vec![4]), (22, vec![2])];
        assert_eq!(excluded_proposers(&validators, &recent, 23), vec![2, 4]);
        // Ties by address.
        let recent = vec![(20, vec![6, 1, 3])];
        assert_eq!(excluded_proposers(&validators, &recent, 21), vec![1, 3]);
        // Unknown addresses are ignored.
        let recent = vec![(20, vec![99])];
        assert!(excluded_proposers(&validators, &recent, 21).is_empty());
    }

    #[test]
    fn history_follows_the_chain() {
        let validators = set(&[1, 1, 1, 1]);
        let mut history = ProposerHistory::<SimContext>::default();
        assert!(history.excluded_at(1).is_empty());
        // Height 1 committed (no certificate in it), height 2 carries the
        // certificate of height 1, decided in round 1: round 0's proposer
        // of height 1 missed its turn, excluded from height 3 on.
        history.on_commit(&WeightedRoundRobin, 1, None, &validators, &validators);
        assert!(history.excluded_at(2).is_empty());
        let missed = WeightedRoundRobin.proposer(&validators, 1, 0, &[]);
        let excluded = history.on_commit(&WeightedRoundRobin, 2, Some(1), &validators, &validators);
        assert_eq!(excluded, vec![missed]);
        assert_eq!(history.missed(), &[(1, vec![missed])]);
        let mut last = excluded;
        // Excluded through height 1 + MISSED_TURN_WINDOW.
        for height in 3..=MISSED_TURN_WINDOW {
            last = history.on_commit(
                &WeightedRoundRobin,
                height,
                Some(0),
                &validators,
                &validators,
            );
        }
        assert_eq!(last, vec![missed], "still within the window");
        let after = history.on_commit(
            &WeightedRoundRobin,
            MISSED_TURN_WINDOW + 1,
            Some(0),
            &validators,
            &validators,
        );
        assert!(after.is_empty(), "the window is over");
        assert!(history.missed().is_empty());
    }
}
