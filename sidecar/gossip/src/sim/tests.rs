use super::*;
use foca::State;

fn lan() -> Timing {
    Timing::lan()
}

#[test]
fn same_seed_replays_identically_and_other_seeds_differ() {
    let run = |seed| {
        let mut sim = Sim::converged(
            8,
            lan(),
            Net {
                loss: 0.05,
                ..Net::default()
            },
            seed,
        );
        sim.run_until(Duration::from_secs(5), |_| {});
        sim.crash(3);
        sim.run_until(Duration::from_secs(20), |_| {});
        (sim.log_hash(), sim.processed)
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1).0, run(2).0);
}

#[test]
fn converged_cluster_stays_quiet_and_alive() {
    let mut sim = Sim::converged(10, lan(), Net::default(), 3);
    let mut downs = 0;
    sim.run_until(Duration::from_secs(60), |s| {
        downs += s.core.take_downs().len()
    });
    assert_eq!(downs, 0);
    for i in 0..10 {
        assert_eq!(sim.core(i).unwrap().active_members(), 9);
    }
    // Steady state costs little: ping + ack per second and member, sealed.
    let per_member_per_s = sim.bytes_sent.iter().sum::<u64>() as f64 / 10.0 / 60.0;
    assert!(per_member_per_s < 1024.0, "{per_member_per_s} B/s");
}

#[test]
fn crashed_member_is_suspected_then_dead_everywhere() {
    let mut sim = Sim::converged(10, lan(), Net::default(), 4);
    sim.run_until(Duration::from_secs(5), |_| {});
    sim.crash(7);
    let crash = sim.now;
    let mut suspected = None;
    let mut dead = [None; 10];
    sim.run_until(Duration::from_secs(30), |s| {
        if let Some((_, state, _)) = s.core.state_of(addr(7)) {
            if state != State::Alive && suspected.is_none() {
                suspected = Some(s.now - crash);
            }
            if state == State::Down && dead[s.node].is_none() {
                dead[s.node] = Some(s.now - crash);
            }
        }
    });
    let suspected = suspected.expect("never suspected");
    assert!(suspected <= Duration::from_secs(4), "{suspected:?}");
    for (i, d) in dead.iter().enumerate() {
        if i != 7 {
            let d = d.unwrap_or_else(|| panic!("node {i} never saw the crash"));
            assert!(d < Duration::from_secs(12), "node {i}: {d:?}");
        }
    }
}

#[test]
fn restarted_member_rejoins_with_higher_generation() {
    let mut sim = Sim::converged(6, lan(), Net::default(), 5);
    sim.run_until(Duration::from_secs(3), |_| {});
    sim.crash(2);
    sim.run_until(Duration::from_secs(20), |_| {});
    assert_eq!(
        sim.core(0).unwrap().state_of(addr(2)).unwrap().1,
        State::Down
    );
    sim.restart(2, 0);
    sim.run_until(Duration::from_secs(40), |_| {});
    for i in [0, 1, 3, 4, 5] {
        let (id, state, _) = sim.core(i).unwrap().state_of(addr(2)).unwrap();
        assert_eq!((id.generation, state), (2, State::Alive), "node {i}");
    }
}

#[test]
fn partition_minority_is_marked_dead_and_heals() {
    let mut sim = Sim::converged(7, lan(), Net::default(), 6);
    sim.run_until(Duration::from_secs(3), |_| {});
    sim.net.groups = Some(vec![0, 0, 0, 0, 0, 1, 1]);
    sim.run_until(Duration::from_secs(30), |_| {});
    assert_eq!(
        sim.core(0).unwrap().state_of(addr(6)).unwrap().1,
        State::Down
    );
    assert_eq!(
        sim.core(6).unwrap().state_of(addr(0)).unwrap().1,
        State::Down
    );
    sim.net.groups = None;
    // Announces to down members and push-pull run every 30 s.
    sim.run_until(Duration::from_secs(120), |_| {});
    for i in 0..7 {
        assert_eq!(sim.core(i).unwrap().active_members(), 6, "node {i}");
    }
}

#[test]
fn paused_member_is_suspected_then_refutes_and_is_never_declared_dead() {
    let mut sim = Sim::converged(8, lan(), Net::default(), 7);
    sim.run_until(Duration::from_secs(5), |_| {});
    sim.pause(2, Duration::from_millis(7500));
    let mut suspected = false;
    let mut downs = 0;
    sim.run_until(Duration::from_secs(40), |s| {
        downs += s.core.take_downs().len();
        if s.node != 2 && s.core.state_of(addr(2)).map(|x| x.1) == Some(State::Suspect) {
            suspected = true;
        }
    });
    assert!(suspected, "a 2.5 s pause should raise a suspicion");
    assert_eq!(downs, 0, "the paused member must refute in time");
    let (_, state, incarnation) = sim.core(0).unwrap().state_of(addr(2)).unwrap();
    assert_eq!(state, State::Alive);
    assert!(incarnation >= 1, "refuted by raising its incarnation");
}

#[test]
fn a_lone_cut_off_member_downs_nobody_and_only_it_rejoins_after_the_heal() {
    let mut sim = Sim::converged(3, lan(), Net::default(), 8);
    sim.run_until(Duration::from_secs(3), |_| {});
    let generations: Vec<u64> = (0..3)
        .map(|i| sim.core(i).unwrap().id().generation)
        .collect();
    sim.net.groups = Some(vec![0, 0, 1]);
    let mut downs_by_lone = 0;
    sim.run_until(Duration::from_secs(30), |s| {
        let verdicts = s.core.take_downs();
        if s.node == 2 {
            downs_by_lone += verdicts.iter().filter(|v| v.by_self).count();
        }
    });
    assert_eq!(
        sim.core(0).unwrap().state_of(addr(2)).unwrap().1,
        State::Down,
        "the majority downs the cut-off member"
    );
    assert_eq!(downs_by_lone, 0, "its helpers stay silent: it downs nobody");
    for i in [0, 1] {
        assert_eq!(
            sim.core(2).unwrap().state_of(addr(i)).unwrap().1,
            State::Suspect,
            "node {i} stays suspect on the cut-off side"
        );
    }
    sim.net.groups = None;
    sim.run_until(Duration::from_secs(90), |_| {});
    for i in 0..3 {
        assert_eq!(sim.core(i).unwrap().active_members(), 2, "node {i}");
    }
    for i in [0, 1] {
        assert_eq!(
            sim.core(i).unwrap().id().generation,
            generations[i],
            "node {i} on the majority side was never declared down"
        );
    }
    assert!(sim.core(2).unwrap().id().generation > generations[2]);
}
