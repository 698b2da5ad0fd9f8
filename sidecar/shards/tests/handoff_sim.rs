//! Scripted scenarios over several members' shard tables (see `sim`).

mod sim;

use std::collections::BTreeSet;
use std::time::Duration;

use shardmesh_shards::{Action, Callback, Health, Route, ShardState};
use sim::Sim;

const SHARDS: u32 = 24;

fn set<'a>(ids: &[&'a str]) -> BTreeSet<&'a str> {
    ids.iter().copied().collect()
}

fn cluster(ids: &[&str]) -> Sim {
    let mut sim = Sim::new(SHARDS);
    for id in ids {
        sim.start(id);
    }
    sim.settle();
    sim
}

#[test]
fn three_members_start_and_serve_every_shard_once() {
    let sim = cluster(&["bank-0", "bank-1", "bank-2"]);
    let servers = sim.servers(&set(&["bank-0", "bank-1", "bank-2"]));
    assert_eq!(servers.len(), SHARDS as usize);
    assert!(sim.tables.values().all(|t| t.is_ready()));
}

#[test]
fn scale_three_to_four_to_three_hands_off_with_growing_epochs() {
    let mut sim = cluster(&["bank-0", "bank-1", "bank-2"]);
    let before = sim.servers(&set(&["bank-0", "bank-1", "bank-2"]));

    sim.start("bank-3");
    sim.settle();
    let four = set(&["bank-0", "bank-1", "bank-2", "bank-3"]);
    let after = sim.servers(&four);
    let moved: Vec<u32> = (0..SHARDS).filter(|s| before[s] != after[s]).collect();
    assert!(!moved.is_empty(), "the new member got shards");
    assert!(after.values().any(|m| m == "bank-3"));
    for s in &moved {
        // The old owner released before the new owner acquired.
        let calls: Vec<_> = sim.calls.iter().filter(|c| c.2 == *s).collect();
        let n = calls.len();
        assert!(n >= 3, "shard {s}: {calls:?}");
        assert_eq!(
            (calls[n - 2].0.as_str(), calls[n - 2].1),
            (before[s].as_str(), Callback::Release)
        );
        assert_eq!(
            (calls[n - 1].0.as_str(), calls[n - 1].1),
            (after[s].as_str(), Callback::Acquire)
        );
        assert!(calls[n - 1].3 > calls[n - 2].3, "epoch grows on shard {s}");
    }
    assert!(sim.tables.values().all(|t| t.is_ready()));

    // Scale in: bank-3 gossips `leaving` and keeps serving until the others
    // settled on the view without it (they route to the new owners, which
    // hold requests), then hands its shards back and leaves gossip.
    let actions = sim.leave("bank-3");
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Drain { .. })),
        "released before the others route around it: {actions:?}"
    );
    for s in (0..SHARDS).filter(|s| after[s] == "bank-3") {
        assert!(matches!(
            sim.tables["bank-3"].state(s),
            ShardState::Serving { .. }
        ));
    }
    sim.settle();
    let states: Vec<_> = (0..SHARDS).map(|s| sim.tables["bank-3"].state(s)).collect();
    assert!(sim.tables["bank-3"].is_released(), "{states:?}");
    sim.health.insert("bank-3".into(), Health::Left);
    sim.tables.remove("bank-3");
    sim.settle();
    let back = sim.servers(&set(&["bank-0", "bank-1", "bank-2"]));
    assert_eq!(back.len(), SHARDS as usize);
    for s in (0..SHARDS).filter(|s| after[s] == "bank-3") {
        let calls: Vec<_> = sim.calls.iter().filter(|c| c.2 == s).collect();
        let n = calls.len();
        assert_eq!(
            (calls[n - 2].0.as_str(), calls[n - 2].1),
            ("bank-3", Callback::Release)
        );
        assert_eq!(
            (calls[n - 1].0.as_str(), calls[n - 1].1),
            (back[&s].as_str(), Callback::Acquire)
        );
        assert!(calls[n - 1].3 > calls[n - 2].3, "epoch grows on shard {s}");
    }
    for (s, epochs) in &sim.epochs {
        assert!(
            epochs.windows(2).all(|w| w[0] < w[1]),
            "shard {s}: {epochs:?}"
        );
    }
}

#[test]
fn dead_owner_shards_are_acquired_once_the_margin_ran_out() {
    let mut sim = cluster(&["bank-0", "bank-1", "bank-2"]);
    let before = sim.servers(&set(&["bank-0", "bank-1", "bank-2"]));
    sim.kill("bank-2");
    // The first view showing bank-2 dead starts the margin; when it runs
    // out bank-0 calls acquire for what it inherits, without waiting for
    // anyone.
    let early = sim.feed("bank-0");
    assert!(
        !early
            .iter()
            .any(|a| matches!(a, Action::CallAcquire { .. })),
        "{early:?}"
    );
    sim.now = sim.tables["bank-0"].next_deadline().expect("margin timer");
    let actions = sim.feed("bank-0");
    let acquired: BTreeSet<u32> = actions
        .iter()
        .filter_map(|a| match a {
            Action::CallAcquire { shard, .. } => Some(*shard),
            _ => None,
        })
        .collect();
    let inherited: BTreeSet<u32> = (0..SHARDS)
        .filter(|s| {
            before[s] == "bank-2"
                && sim.tables["bank-0"].owner(*s).map(|m| m.as_str()) == Some("bank-0")
        })
        .collect();
    assert!(!inherited.is_empty());
    assert!(
        inherited.is_subset(&acquired),
        "{inherited:?} ⊄ {acquired:?}"
    );
    sim.settle();
    let after = sim.servers(&set(&["bank-0", "bank-1"]));
    assert_eq!(after.len(), SHARDS as usize);
}

#[test]
fn partition_two_of_five_minority_stops_majority_serves_all_then_heals() {
    let all = ["bank-0", "bank-1", "bank-2", "bank-3", "bank-4"];
    let mut sim = cluster(&all);
    sim.servers(&set(&all));

    // Cut bank-0 and bank-1 off: first each side suspects the other ...
    sim.side.insert("bank-0".into(), 1);
    sim.side.insert("bank-1".into(), 1);
    sim.across = Health::Suspect;
    sim.settle();
    for id in ["bank-0", "bank-1"] {
        let now = sim.now;
        let t = sim.tables.get_mut(id).unwrap();
        assert!(!t.has_majority());
        for s in 0..SHARDS {
            assert_eq!(t.route(now, s), Route::NoOwner, "{id} shard {s}");
            assert_eq!(t.state(s), ShardState::NotOwned);
        }
    }
    // ... then declares it dead: the majority takes every shard.
    sim.across = Health::Dead;
    sim.settle();
    let majority = set(&["bank-2", "bank-3", "bank-4"]);
    sim.servers(&majority);
    // Time passes: the majority adopts its side; the minority never does.
    sim.now += Duration::from_secs(11);
    sim.settle();
    sim.servers(&majority);
    assert!(!sim.tables["bank-0"].has_majority());

    // Heal: one owner per shard again, across all five.
    sim.side.insert("bank-0".into(), 0);
    sim.side.insert("bank-1".into(), 0);
    sim.settle();
    sim.servers(&set(&all));
    assert!(sim.tables.values().all(|t| t.is_ready()));
}

#[test]
fn a_member_restarted_before_detection_takes_its_shards_back_with_higher_epochs() {
    let all = ["bank-0", "bank-1", "bank-2"];
    let mut sim = cluster(&all);
    let before = sim.servers(&set(&all));
    sim.restart("bank-1");
    sim.settle();
    let after = sim.servers(&set(&all));
    assert_eq!(before, after, "same view, same owners");
    // The sim asserted on every acquire that epochs grow per shard.
    let reacquired = sim
        .calls
        .iter()
        .filter(|c| c.0 == "bank-1" && c.1 == Callback::Acquire)
        .count();
    let owned = after.values().filter(|m| *m == "bank-1").count();
    assert_eq!(reacquired, 2 * owned, "acquired once per life");
}

#[test]
fn lost_release_notices_are_covered_by_the_settled_barrier() {
    let mut sim = cluster(&["bank-0", "bank-1", "bank-2"]);
    sim.drop_notices = true;
    sim.start("bank-3");
    sim.settle();
    let four = set(&["bank-0", "bank-1", "bank-2", "bank-3"]);
    let servers = sim.servers(&four);
    assert!(servers.values().any(|m| m == "bank-3"));
    assert!(sim.tables.values().all(|t| t.is_ready()));
}
