use std::time::{Duration, Instant};

use super::*;

const STABLE: Duration = Duration::from_secs(5);

fn view(alive: &[&str], suspect: &[&str], dead: &[&str], left: &[&str]) -> Vec<Peer> {
    let mut v = Vec::new();
    for (ids, h) in [
        (alive, Health::Alive),
        (suspect, Health::Suspect),
        (dead, Health::Dead),
        (left, Health::Left),
    ] {
        v.extend(ids.iter().map(|id| Peer::new(*id, h)));
    }
    v
}

fn stable_five(t0: Instant) -> KeepMajority {
    let mut k = KeepMajority::new(STABLE);
    k.observe(t0, &view(&["a", "b", "c", "d", "e"], &[], &[], &[]));
    assert!(k.has_majority());
    k
}

#[test]
fn a_lone_member_waits_for_stability_before_its_first_majority() {
    let t0 = Instant::now();
    let mut k = KeepMajority::new(STABLE);
    k.observe(t0, &view(&["a"], &[], &[], &[]));
    assert!(!k.has_majority());
    k.tick(t0 + STABLE - Duration::from_millis(1));
    assert!(!k.has_majority());
    k.tick(t0 + STABLE);
    assert!(k.has_majority());
}

#[test]
fn a_first_view_with_others_is_adopted_at_once() {
    let t0 = Instant::now();
    let mut k = KeepMajority::new(STABLE);
    k.observe(t0, &view(&["a", "b", "c"], &[], &[], &[]));
    assert!(k.has_majority());
}

#[test]
fn minority_of_two_in_five_loses_majority_and_never_adopts_itself() {
    let t0 = Instant::now();
    let mut k = stable_five(t0);
    k.observe(t0 + STABLE, &view(&["a", "b"], &["c", "d", "e"], &[], &[]));
    assert!(!k.has_majority(), "suspects do not count");
    k.observe(
        t0 + 2 * STABLE,
        &view(&["a", "b"], &[], &["c", "d", "e"], &[]),
    );
    k.tick(t0 + 10 * STABLE);
    assert!(!k.has_majority(), "a minority must not drop the other side");
    assert_eq!(k.members().count(), 5);
}

#[test]
fn majority_of_three_in_five_keeps_serving_and_adopts_its_side() {
    let t0 = Instant::now();
    let mut k = stable_five(t0);
    k.observe(t0 + STABLE, &view(&["c", "d", "e"], &[], &["a", "b"], &[]));
    assert!(k.has_majority());
    k.tick(t0 + 3 * STABLE);
    assert_eq!(k.members().count(), 3);
    // A further loss of one of three still leaves a majority of the new set.
    k.observe(
        t0 + 3 * STABLE,
        &view(&["c", "d"], &[], &["a", "b", "e"], &[]),
    );
    assert!(k.has_majority());
}

#[test]
fn heal_restores_majority_on_the_minority_side() {
    let t0 = Instant::now();
    let mut k = stable_five(t0);
    k.observe(t0 + STABLE, &view(&["a", "b"], &[], &["c", "d", "e"], &[]));
    assert!(!k.has_majority());
    k.observe(
        t0 + 2 * STABLE,
        &view(&["a", "b", "c", "d", "e"], &[], &[], &[]),
    );
    assert!(k.has_majority());
}

#[test]
fn graceful_leaves_shrink_the_stable_membership_at_once() {
    let t0 = Instant::now();
    let mut k = stable_five(t0);
    k.observe(t0 + STABLE, &view(&["a", "b"], &[], &[], &["c", "d", "e"]));
    assert!(k.has_majority(), "2 of the remaining 2");
}

#[test]
fn two_members_cannot_survive_one_failure() {
    let t0 = Instant::now();
    let mut k = KeepMajority::new(STABLE);
    k.observe(t0, &view(&["a", "b"], &[], &[], &[]));
    k.tick(t0 + STABLE);
    k.observe(t0 + STABLE, &view(&["a"], &[], &["b"], &[]));
    assert!(!k.has_majority());
}

#[test]
fn a_joiner_that_sees_the_others_dead_never_takes_the_majority() {
    let t0 = Instant::now();
    let mut k = KeepMajority::new(STABLE);
    k.observe(t0, &view(&["d"], &[], &["a", "b", "c"], &[]));
    assert!(!k.has_majority());
    k.tick(t0 + 10 * STABLE);
    assert!(!k.has_majority(), "its lone side must not become stable");
}

#[test]
fn members_that_joined_recently_count_at_once() {
    // Joins just before a partition: the old three must not be the yardstick.
    let t0 = Instant::now();
    let mut k = KeepMajority::new(STABLE);
    k.observe(t0, &view(&["a", "b", "c"], &[], &[], &[]));
    k.observe(t0, &view(&["a", "b", "c", "d", "e"], &[], &[], &[]));
    k.observe(t0, &view(&["a", "b"], &[], &["c", "d", "e"], &[]));
    assert!(!k.has_majority(), "2 of 5");
}

#[test]
fn a_minority_does_not_grow_itself_a_majority_with_joiners() {
    let t0 = Instant::now();
    let mut k = stable_five(t0);
    k.observe(t0, &view(&["a", "b", "f", "g"], &[], &["c", "d", "e"], &[]));
    assert!(!k.has_majority());
    assert_eq!(k.members().count(), 5);
}

#[test]
fn deadlines_are_never_in_the_past_after_a_tick() {
    let t0 = Instant::now();
    let mut k = stable_five(t0);
    // Minority: dead members cannot be dropped, so no timer is needed.
    k.observe(t0, &view(&["a", "b"], &[], &["c", "d", "e"], &[]));
    assert_eq!(k.next_deadline(), None);
    // Majority: the dead are dropped at their deadline.
    let mut k = stable_five(t0);
    k.observe(t0, &view(&["a", "b", "c"], &[], &["d", "e"], &[]));
    assert_eq!(k.next_deadline(), Some(t0 + STABLE));
    k.tick(t0 + STABLE);
    assert_eq!(k.next_deadline(), None);
}
