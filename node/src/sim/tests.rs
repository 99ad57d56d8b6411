use super::*;

#[test]
fn healthy_cluster_decides() {
    let mut config = SimConfig::new(1);
    config.faults = false;
    config.byzantine = false;
    config.validators = Some(4);
    let report = run(config);
    eprintln!(
        "{:?}",
        SimReport {
            trace: vec![],
            ..report.clone()
        }
    );
    assert!(report.ok(), "{:?}", report.violations);
    assert!(report.min_decided_height >= LIVENESS_HEIGHTS);
}

#[test]
fn faulty_seeds_print() {
    for seed in 0..20 {
        let mut config = SimConfig::new(seed);
        config.validators = Some(4);
        let report = run(config);
        eprintln!(
            "{:?}",
            SimReport {
                trace: vec![],
                ..report.clone()
            }
        );
    }
}

#[test]
fn trace_seed() {
    let Ok(seed) = std::env::var("SIM_SEED") else {
        return;
    };
    let mut config = SimConfig::new(seed.parse().unwrap());
    config.validators = Some(4);
    config.trace = true;
    let report = run(config);
    for line in &report.trace {
        eprintln!("{line}");
    }
}

#[test]
fn debug_seed() {
    let Ok(seed) = std::env::var("SIM_DEBUG") else {
        return;
    };
    let mut config = SimConfig::new(seed.parse().unwrap());
    config.validators = Some(4);
    let mut sim = Simulator::new(config);
    for i in 0..4u16 {
        sim.start_node(i);
        sim.schedule(1 + i as u64, Event::Gossip { node: i });
    }
    sim.plan_faults();
    while let Some(std::cmp::Reverse(next)) = sim.queue.pop() {
        sim.now = next.time;
        if sim.now > 20000 {
            break;
        }
        sim.step(next.event);
    }
    for node in &sim.nodes {
        if let Some(engine) = &node.engine {
            let core = engine.core();
            eprintln!(
                "node {} h{} r{} step {:?} locked {:?} valid {:?}",
                node.id,
                core.height(),
                core.round(),
                core.step(),
                core.locked().map(|l| l.0),
                core.valid().map(|l| l.0)
            );
            for r in 0..6 {
                eprintln!(
                    "   r{r} prevotes any {} precommits any {} quorum value {:?}",
                    core.keeper()
                        .power_any(r, crate::consensus::types::VoteType::Prevote),
                    core.keeper()
                        .power_any(r, crate::consensus::types::VoteType::Precommit),
                    core.keeper()
                        .quorum_value(r, crate::consensus::types::VoteType::Prevote)
                );
            }
        }
    }
}
