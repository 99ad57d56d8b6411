//! Liveness with a validator down: with one of four validators crashed for
//! good, proposer skipping (after a missed proposer turn) and
//! short adaptive timeouts keep at least half of the healthy rate; plain
//! Tendermint with a 3 s propose timeout keeps a few percent.

use symbiont_node::sim::{SimConfig, run_for};

const RUN_MS: u64 = 30_000;

fn heights_per_second(crashed: Vec<u16>, plain: bool) -> f64 {
    let mut config = SimConfig::new(7);
    config.validators = Some(4);
    config.faults = false;
    config.byzantine = false;
    config.crashed_forever = crashed;
    config.plain = plain;
    config.delay_ms = Some((5, 15));
    let report = run_for(config, RUN_MS);
    assert!(report.ok(), "{:?}", report.violations);
    report.decided_by_first as f64 * 1000.0 / report.simulated_ms as f64
}

#[test]
fn one_crashed_validator_keeps_more_than_half_the_rate() {
    let healthy = heights_per_second(vec![], false);
    let crashed = heights_per_second(vec![3], false);
    assert!(healthy > 10.0, "healthy rate {healthy:.1}");
    assert!(
        crashed * 2.0 >= healthy,
        "crashed {crashed:.1} vs healthy {healthy:.1}"
    );
}

#[test]
fn plain_tendermint_loses_most_of_its_rate() {
    let healthy = heights_per_second(vec![], true);
    let crashed = heights_per_second(vec![3], true);
    assert!(
        crashed * 10.0 < healthy,
        "plain: crashed {crashed:.1} vs healthy {healthy:.1}"
    );
}
