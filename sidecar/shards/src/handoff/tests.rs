use std::time::{Duration, Instant};

use super::*;
use crate::{format_view_id, view_id, Health, Peer};

const SHARDS: u32 = 6;

fn cfg() -> HandoffConfig {
    let mut c = HandoffConfig::new("bank", SHARDS);
    c.max_held = 2;
    c
}

fn peer(id: &str, epoch: u64) -> Peer {
    let mut p = Peer::new(id, Health::Alive);
    p.epoch = epoch;
    p
}

/// `b` joins `a` (which held every shard at epochs up to 7).
fn joiner(t0: Instant) -> (ShardTable, Vec<Action>, Vec<u32>) {
    let mut b = ShardTable::new(MemberId::new("b"), cfg()).unwrap();
    let out = b.on_membership(t0, &[peer("a", 7), peer("b", 0)]);
    let mine: Vec<u32> = (0..SHARDS)
        .filter(|&s| b.owner(s) == Some(&MemberId::new("b")))
        .collect();
    assert!(!mine.is_empty());
    (b, out, mine)
}

fn notice(shard: u32, epoch: u64, from: &str) -> ReleaseNotice {
    notice_to(shard, epoch, from, if from == "a" { "b" } else { "a" })
}

/// A notice of `from` releasing `shard` to `to` ("" for nobody).
fn notice_to(shard: u32, epoch: u64, from: &str, to: &str) -> ReleaseNotice {
    ReleaseNotice {
        service: "bank".into(),
        shard,
        epoch,
        from: MemberId::new(from),
        to: if to.is_empty() {
            0
        } else {
            crate::recipient_id(&MemberId::new(to))
        },
    }
}

fn acquires(out: &[Action]) -> Vec<(u32, u64)> {
    out.iter()
        .filter_map(|a| match a {
            Action::CallAcquire { shard, epoch } => Some((*shard, *epoch)),
            _ => None,
        })
        .collect()
}

#[test]
fn joiner_waits_for_the_alive_previous_owner() {
    let t0 = Instant::now();
    let (b, out, mine) = joiner(t0);
    assert!(acquires(&out).is_empty(), "{out:?}");
    for s in &mine {
        assert_eq!(
            b.state(*s),
            ShardState::Acquiring {
                since: t0,
                epoch: None
            }
        );
    }
    assert!(!b.is_ready());
}

#[test]
fn held_requests_are_bounded_and_time_out() {
    let t0 = Instant::now();
    let (mut b, _, mine) = joiner(t0);
    let s = mine[0];
    assert_eq!(b.route(t0, s), Route::Hold);
    assert_eq!(b.route(t0, s), Route::Hold);
    assert_eq!(b.route(t0, s), Route::NoOwner, "max_held is 2");
    let late = t0 + cfg().hold_timeout;
    assert_eq!(b.next_deadline(), Some(late));
    assert!(!b
        .tick(late - Duration::from_millis(1))
        .contains(&Action::RejectHeld { shard: s }));
    assert!(b.tick(late).contains(&Action::RejectHeld { shard: s }));
    assert_eq!(b.route(late, s), Route::NoOwner);
}

#[test]
fn release_notice_from_previous_owner_starts_acquire_above_every_epoch() {
    let t0 = Instant::now();
    let (mut b, _, mine) = joiner(t0);
    let s = mine[0];
    assert_eq!(b.route(t0, s), Route::Hold);
    let out = b.on_release_notice(t0, &notice(s, 5, "a"));
    let calls = acquires(&out);
    assert_eq!(calls.len(), 1, "{out:?}");
    let epoch = calls[0].1;
    assert!(epoch > 7, "above a's epoch tag, got {epoch}");
    let t1 = t0 + Duration::from_millis(30);
    let out = b.callback_done(t1, Callback::Acquire, s, epoch, Outcome::Ok);
    assert!(out.contains(&Action::ServeHeld { shard: s, epoch }));
    assert!(out.contains(&Action::Acquired {
        shard: s,
        epoch,
        took: Duration::from_millis(30)
    }));
    assert_eq!(b.route(t1, s), Route::Local { epoch });
    assert_eq!(b.owned(), 1);
}

#[test]
fn notices_from_others_services_or_self_are_ignored() {
    let t0 = Instant::now();
    let (mut b, _, mine) = joiner(t0);
    let mut other = notice(mine[0], 5, "a");
    other.service = "ledger".into();
    assert!(b.on_release_notice(t0, &other).is_empty());
    assert!(b.on_release_notice(t0, &notice(mine[0], 5, "b")).is_empty());
    assert!(b.on_release_notice(t0, &notice(99, 5, "a")).is_empty());
}

#[test]
fn a_notice_of_a_release_to_another_member_frees_nothing() {
    // a released the shard to c (in a view b has not seen yet): c may be
    // acquiring it on that notice, so b waits for the barrier.
    let t0 = Instant::now();
    let (mut b, _, mine) = joiner(t0);
    let out = b.on_release_notice(t0, &notice_to(mine[0], 5, "a", "c"));
    assert!(acquires(&out).is_empty(), "{out:?}");
    let out = b.on_release_notice(t0, &notice_to(mine[0], 5, "a", ""));
    assert!(acquires(&out).is_empty(), "{out:?}");
    let out = b.on_release_notice(t0, &notice_to(mine[0], 5, "a", "b"));
    assert_eq!(acquires(&out).len(), 1, "{out:?}");
}

/// `b` in a view of `a`, `b`, `c` where `a` (which held shards at epochs up
/// to 7) was just declared dead; returns the shards `b` inherits from `a`.
fn a_declared_dead(t0: Instant) -> (ShardTable, Vec<Action>, Vec<u32>) {
    let mut b = ShardTable::new(MemberId::new("b"), cfg()).unwrap();
    b.on_membership(t0, &[peer("a", 7), peer("b", 0), peer("c", 0)]);
    let mut a = peer("a", 7);
    a.health = Health::Dead;
    let out = b.on_membership(t0, &[a, peer("b", 0), peer("c", 0)]);
    let ids = |v: &[&str]| v.iter().map(|&i| MemberId::new(i)).collect::<Vec<_>>();
    let before = crate::assign(SHARDS, &ids(&["a", "b", "c"]));
    let after = crate::assign(SHARDS, &ids(&["b", "c"]));
    let inherited: Vec<u32> = (0..SHARDS)
        .filter(|&s| {
            before.owner(s).map(MemberId::as_str) == Some("a")
                && after.owner(s).map(MemberId::as_str) == Some("b")
        })
        .collect();
    assert!(!inherited.is_empty());
    (b, out, inherited)
}

#[test]
fn dead_previous_owner_is_taken_over_after_the_margin() {
    let t0 = Instant::now();
    let (mut b, out, inherited) = a_declared_dead(t0);
    assert!(acquires(&out).is_empty(), "not before the margin: {out:?}");
    for s in &inherited {
        assert_eq!(b.route(t0, *s), Route::Hold, "requests wait meanwhile");
    }
    let t1 = t0 + cfg().dead_owner_margin;
    assert_eq!(b.next_deadline(), Some(t1));
    assert!(acquires(&b.tick(t1 - Duration::from_millis(1))).is_empty());
    let acquired: Vec<u32> = acquires(&b.tick(t1)).into_iter().map(|(s, _)| s).collect();
    for s in inherited {
        assert!(acquired.contains(&s), "shard {s} of dead a: {acquired:?}");
    }
    assert_ne!(b.next_deadline(), Some(t1), "the spent margin is no timer");
}

#[test]
fn a_falsely_declared_dead_owner_that_rejoins_is_waited_for() {
    // The verdict came from the healed small side of a partition; `a` was
    // serving all along, hears of it, rejoins and releases.
    let t0 = Instant::now();
    let (mut b, _, inherited) = a_declared_dead(t0);
    let t1 = t0 + Duration::from_millis(300);
    let out = b.on_membership(t1, &[peer("a", 7), peer("b", 0), peer("c", 0)]);
    assert!(acquires(&out).is_empty(), "{out:?}");
    let later = t0 + 2 * cfg().dead_owner_margin;
    assert!(
        acquires(&b.tick(later)).is_empty(),
        "alive again: no margin"
    );
    let s = inherited[0];
    let out = b.on_membership(later, &[dead_peer("a"), peer("b", 0), peer("c", 0)]);
    assert!(acquires(&out).is_empty(), "a fresh verdict, a fresh margin");
    let out = b.on_release_notice(later, &notice_to(s, 7, "a", "b"));
    assert_eq!(
        acquires(&out).len(),
        1,
        "its release frees the shard: {out:?}"
    );
}

#[test]
fn verdicts_reached_without_a_majority_start_their_margin_at_the_heal() {
    // `b` was cut off with `c`'s death in its view; once `a` is reachable
    // again it has a majority, but `c` may have served all along.
    let t0 = Instant::now();
    let mut b = ShardTable::new(MemberId::new("b"), cfg()).unwrap();
    b.on_membership(t0, &[peer("a", 0), peer("b", 0), peer("c", 7)]);
    let cut = [dead_peer("a"), peer("b", 0), dead_peer("c")];
    b.on_membership(t0, &cut);
    let t1 = t0 + 10 * cfg().dead_owner_margin;
    assert!(acquires(&b.tick(t1)).is_empty(), "no majority");
    let out = b.on_membership(t1, &[peer("a", 0), peer("b", 0), dead_peer("c")]);
    assert!(
        acquires(&out).is_empty(),
        "c's old verdict frees nothing: {out:?}"
    );
    let t2 = t1 + cfg().dead_owner_margin;
    assert_eq!(b.next_deadline(), Some(t2));
}

fn dead_peer(id: &str) -> Peer {
    let mut p = peer(id, 7);
    p.health = Health::Dead;
    p
}

#[test]
fn app_without_callbacks_is_stateless() {
    let t0 = Instant::now();
    let (mut b, _, mine) = joiner(t0);
    let s = mine[0];
    let (_, epoch) = acquires(&b.on_release_notice(t0, &notice(s, 1, "a")))[0];
    b.callback_done(t0, Callback::Acquire, s, epoch, Outcome::NotImplemented);
    assert_eq!(b.state(s), ShardState::Serving { epoch });
}

#[test]
fn failed_acquire_is_retried_after_the_pause_with_the_same_epoch() {
    let t0 = Instant::now();
    let (mut b, _, mine) = joiner(t0);
    let s = mine[0];
    let (_, epoch) = acquires(&b.on_release_notice(t0, &notice(s, 1, "a")))[0];
    assert!(b
        .callback_done(t0, Callback::Acquire, s, epoch, Outcome::Failed)
        .is_empty());
    let retry = t0 + cfg().retry_after;
    assert_eq!(b.next_deadline(), Some(retry));
    assert!(acquires(&b.tick(retry - Duration::from_millis(1))).is_empty());
    assert_eq!(acquires(&b.tick(retry)), vec![(s, epoch)]);
}

#[test]
fn stale_callbacks_are_ignored() {
    let t0 = Instant::now();
    let (mut b, _, mine) = joiner(t0);
    let s = mine[0];
    let (_, epoch) = acquires(&b.on_release_notice(t0, &notice(s, 1, "a")))[0];
    assert!(b
        .callback_done(t0, Callback::Acquire, s, epoch + 1, Outcome::Ok)
        .is_empty());
    assert!(b
        .callback_done(t0, Callback::Release, s, epoch, Outcome::Ok)
        .is_empty());
    assert!(b
        .callback_done(t0, Callback::Acquire, 99, epoch, Outcome::Ok)
        .is_empty());
    assert!(matches!(b.state(s), ShardState::Acquiring { .. }));
}

#[test]
fn shards_of_others_are_forwarded_to_their_owner() {
    let t0 = Instant::now();
    let (mut b, _, mine) = joiner(t0);
    let theirs = (0..SHARDS).find(|s| !mine.contains(s)).unwrap();
    assert_eq!(b.route(t0, theirs), Route::Forward(MemberId::new("a")));
    assert_eq!(b.route(t0, 99), Route::NoOwner);
}

/// A lone member (after `stable_after`) that serves every shard.
fn alone(t0: Instant) -> ShardTable {
    let mut a = ShardTable::new(MemberId::new("a"), cfg()).unwrap();
    assert!(a.on_membership(t0, &[peer("a", 0)]).is_empty());
    assert_eq!(a.route(t0, 0), Route::NoOwner, "no majority before stable");
    let t1 = t0 + cfg().stable_after;
    let out = a.tick(t1);
    let calls = acquires(&out);
    assert_eq!(calls.len(), SHARDS as usize);
    for (s, e) in calls {
        a.callback_done(t1, Callback::Acquire, s, e, Outcome::Ok);
    }
    assert!(a.is_ready());
    a
}

#[test]
fn losing_a_shard_drains_releases_then_gossips() {
    let t0 = Instant::now();
    let mut a = alone(t0);
    let out = a.on_membership(t0, &[peer("a", 0), peer("b", 0)]);
    let drains: Vec<u32> = out
        .iter()
        .filter_map(|x| match x {
            Action::Drain { shard } => Some(*shard),
            _ => None,
        })
        .collect();
    assert!(!drains.is_empty());
    let s = drains[0];
    let ShardState::Releasing { epoch } = a.state(s) else {
        panic!("{:?}", a.state(s));
    };
    assert_eq!(a.route(t0, s), Route::Forward(MemberId::new("b")));
    assert_eq!(a.settled_tag(), None, "releasing: not settled");
    assert_eq!(
        a.drained(t0, s),
        vec![Action::CallRelease { shard: s, epoch }]
    );
    // A failed release is retried; the shard is not gossiped as free.
    assert!(a
        .callback_done(t0, Callback::Release, s, epoch, Outcome::Failed)
        .is_empty());
    let retry = t0 + cfg().retry_after;
    assert!(a
        .tick(retry)
        .contains(&Action::CallRelease { shard: s, epoch }));
    let out = a.callback_done(retry, Callback::Release, s, epoch, Outcome::Ok);
    assert!(out.contains(&Action::Broadcast(notice(s, epoch, "a"))));
    assert_eq!(a.state(s), ShardState::NotOwned);
}

#[test]
fn settled_tag_appears_once_nothing_is_released() {
    let t0 = Instant::now();
    let a = alone(t0);
    assert!(a.settled_tag().is_some());
    assert_eq!(a.epoch_tag(), SHARDS.to_string());
}

#[test]
fn leave_releases_everything() {
    let t0 = Instant::now();
    let mut a = alone(t0);
    let out = a.leave(t0);
    assert_eq!(out.len(), SHARDS as usize, "one drain per shard: {out:?}");
    for s in 0..SHARDS {
        let ShardState::Releasing { epoch } = a.state(s) else {
            panic!();
        };
        a.drained(t0, s);
        a.callback_done(t0, Callback::Release, s, epoch, Outcome::Ok);
    }
    assert!(a.is_released());
    assert_eq!(a.owned(), 0);
}

#[test]
fn a_member_the_others_declared_dead_gives_up_its_shards() {
    let t0 = Instant::now();
    let mut a = ShardTable::new(MemberId::new("a"), cfg()).unwrap();
    let three = [peer("a", 0), peer("b", 0), peer("c", 0)];
    a.on_membership(t0, &three);
    let mine: Vec<u32> = (0..SHARDS)
        .filter(|&s| a.owner(s) == Some(&MemberId::new("a")))
        .collect();
    assert!(!mine.is_empty());
    let mut dead_me = peer("a", 0);
    dead_me.health = Health::Dead;
    a.on_membership(t0, &[dead_me, peer("b", 0), peer("c", 0)]);
    for s in 0..SHARDS {
        assert_ne!(a.owner(s), Some(&MemberId::new("a")), "shard {s}");
        assert!(!matches!(a.state(s), ShardState::Acquiring { .. }));
    }
    // Back alive (refuted): it owns shards again.
    a.on_membership(t0, &three);
    assert!(mine
        .iter()
        .all(|&s| a.owner(s) == Some(&MemberId::new("a"))));
}

#[test]
fn bad_settings_are_refused_with_a_reason() {
    let me = || MemberId::new("a");
    let mut c = cfg();
    c.shards = 0;
    assert_eq!(ShardTable::new(me(), c).err(), Some(ConfigError::Shards(0)));
    let mut c = cfg();
    c.shards = MAX_SHARDS + 1;
    assert_eq!(
        ShardTable::new(me(), c).err(),
        Some(ConfigError::Shards(MAX_SHARDS + 1))
    );
    let mut c = cfg();
    c.service = "s".repeat(64);
    assert_eq!(ShardTable::new(me(), c).err(), Some(ConfigError::Service));
    assert_eq!(
        ShardTable::new(MemberId::new("m".repeat(254)), cfg()).err(),
        Some(ConfigError::Member)
    );
}

#[test]
fn epochs_follow_the_wall_clock_floor_so_a_restarted_cluster_never_reuses_them() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.epoch_floor = 5_000_000;
    let mut a = ShardTable::new(MemberId::new("a"), c).unwrap();
    a.on_membership(t0, &[peer("a", 0)]);
    let t1 = t0 + cfg().stable_after;
    let epochs: Vec<u64> = acquires(&a.tick(t1)).into_iter().map(|(_, e)| e).collect();
    assert_eq!(epochs.len(), SHARDS as usize);
    // The first uses the floor; the rest are one more each (same instant).
    assert_eq!(epochs[0], 5_000_000);
    assert!(epochs.windows(2).all(|w| w[1] == w[0] + 1), "{epochs:?}");
    // A peer's larger epoch still wins over the clock.
    let mut b = ShardTable::new(MemberId::new("b"), {
        let mut c = cfg();
        c.epoch_floor = 5_000_000;
        c
    })
    .unwrap();
    b.on_membership(t0, &[peer("a", 9_000_000), peer("b", 0), peer("c", 0)]);
    let mut dead = peer("a", 9_000_000);
    dead.health = Health::Dead;
    b.on_membership(t0, &[dead, peer("b", 0), peer("c", 0)]);
    let out = acquires(&b.tick(t0 + cfg().dead_owner_margin));
    assert!(!out.is_empty());
    assert!(out.iter().all(|&(_, e)| e > 9_000_000), "{out:?}");
}

#[test]
fn a_shard_that_comes_back_while_releasing_is_reacquired_after_the_barrier() {
    let t0 = Instant::now();
    let mut a = alone(t0);
    let out = a.on_membership(t0, &[peer("a", 0), peer("b", 0)]);
    let s = out
        .iter()
        .find_map(|x| match x {
            Action::Drain { shard } => Some(*shard),
            _ => None,
        })
        .unwrap();
    let ShardState::Releasing { epoch } = a.state(s) else {
        panic!();
    };
    // b vanishes again before the release finished: the shard is ours again.
    let mut gone = peer("b", 0);
    gone.health = Health::Left;
    a.on_membership(t0, &[peer("a", 0), gone.clone()]);
    assert_eq!(
        a.state(s),
        ShardState::Releasing { epoch },
        "the release runs to its end"
    );
    a.drained(t0, s);
    let out = a.callback_done(t0, Callback::Release, s, epoch, Outcome::Ok);
    assert!(
        out.contains(&Action::Broadcast(notice_to(s, epoch, "a", ""))),
        "released to nobody: {out:?}"
    );
    // Nobody else owns shards, so the barrier passes at once: a new epoch.
    let again = acquires(&out);
    assert_eq!(again.len(), 1, "{out:?}");
    assert!(again[0].1 > epoch);
}

#[test]
fn losing_the_majority_releases_everything_and_refuses_all_requests() {
    let t0 = Instant::now();
    let mut a = ShardTable::new(MemberId::new("a"), cfg()).unwrap();
    let three = [peer("a", 0), peer("b", 0), peer("c", 0)];
    a.on_membership(t0, &three);
    let dead = |id: &str| {
        let mut p = peer(id, 0);
        p.health = Health::Dead;
        p
    };
    // b and c die: a alone is 1 of 3, no majority.
    let out = a.on_membership(t0, &[peer("a", 0), dead("b"), dead("c")]);
    assert!(!a.has_majority());
    assert!(acquires(&out).is_empty());
    for s in 0..SHARDS {
        assert_eq!(a.route(t0, s), Route::NoOwner);
    }
    assert!(!a.is_ready());
    assert_eq!(a.settled_tag(), None);
}

/// `peer` advertising the view `on` has settled on.
fn settled_on(mut p: Peer, on: &ShardTable) -> Peer {
    p.settled = on
        .settled_tag()
        .and_then(|v| u64::from_str_radix(&v, 16).ok());
    p
}

/// `a` serving its shards of the view {a, b}; returns them too.
fn pair(t0: Instant) -> (ShardTable, Vec<u32>) {
    let mut a = ShardTable::new(MemberId::new("a"), cfg()).unwrap();
    a.on_membership(t0, &[peer("a", 0), peer("b", 0)]);
    let b = settled_on(peer("b", 0), &a);
    let out = a.on_membership(t0, &[peer("a", 0), b]);
    for (s, e) in acquires(&out) {
        a.callback_done(t0, Callback::Acquire, s, e, Outcome::Ok);
    }
    let mine: Vec<u32> = (0..SHARDS)
        .filter(|&s| a.owner(s) == Some(&MemberId::new("a")))
        .collect();
    assert!(!mine.is_empty());
    assert!(mine
        .iter()
        .all(|&s| matches!(a.state(s), ShardState::Serving { .. })));
    (a, mine)
}

fn drains(out: &[Action]) -> Vec<u32> {
    out.iter()
        .filter_map(|x| match x {
            Action::Drain { shard } => Some(*shard),
            _ => None,
        })
        .collect()
}

#[test]
fn a_leaving_member_serves_until_the_others_settled_without_it() {
    let t0 = Instant::now();
    let (mut a, mine) = pair(t0);
    let b_old = settled_on(peer("b", 0), &a);
    let out = a.leave(t0);
    assert!(drains(&out).is_empty(), "{out:?}");
    assert_eq!(a.settled_tag(), None, "still holds shards it does not own");
    for &s in &mine {
        assert!(matches!(a.route(t0, s), Route::Local { .. }));
    }
    // b has not seen the leave yet: nothing moves.
    assert!(drains(&a.on_membership(t0, &[peer("a", 0), b_old])).is_empty());
    // b settled on the view without a: a hands everything off.
    let mut b_new = peer("b", 0);
    b_new.settled = Some(view_id(&[MemberId::new("b")]));
    let out = a.on_membership(t0, &[peer("a", 0), b_new]);
    let mut released = drains(&out);
    released.sort_unstable();
    assert_eq!(released, mine);
    for &s in &mine {
        assert_eq!(a.route(t0, s), Route::Forward(MemberId::new("b")));
        let ShardState::Releasing { epoch } = a.state(s) else {
            panic!("{:?}", a.state(s));
        };
        a.drained(t0, s);
        a.callback_done(t0, Callback::Release, s, epoch, Outcome::Ok);
    }
    assert!(a.is_released());
    assert_eq!(
        a.settled_tag(),
        Some(format_view_id(view_id(&[MemberId::new("b")])))
    );
}

#[test]
fn a_leaving_member_hands_off_after_the_leave_wait_anyway() {
    let t0 = Instant::now();
    let (mut a, mine) = pair(t0);
    assert!(drains(&a.leave(t0)).is_empty());
    let at = t0 + cfg().leave_wait;
    assert_eq!(a.next_deadline(), Some(at));
    assert!(drains(&a.tick(at - Duration::from_millis(1))).is_empty());
    let mut released = drains(&a.tick(at));
    released.sort_unstable();
    assert_eq!(released, mine);
    assert_eq!(a.next_deadline(), None);
}

#[test]
fn a_new_owner_waits_for_a_leaving_owner_to_release() {
    let t0 = Instant::now();
    let (mut b, _, _) = joiner(t0);
    let mut leaving = peer("a", 7);
    leaving.health = Health::Leaving;
    let out = b.on_membership(t0, &[leaving.clone(), peer("b", 0)]);
    assert!(acquires(&out).is_empty(), "a may still hold them: {out:?}");
    assert!((0..SHARDS).all(|s| b.owner(s) == Some(&MemberId::new("b"))));
    assert!(
        b.has_majority(),
        "a leaving member leaves the stable membership"
    );
    assert_eq!(b.route(t0, 0), Route::Hold);
    // Its release notice frees one shard...
    let out = b.on_release_notice(t0, &notice(0, 7, "a"));
    assert_eq!(acquires(&out).len(), 1, "{out:?}");
    // ...and once it settled on the view without it, nobody holds the rest.
    leaving.settled = Some(view_id(&[MemberId::new("b")]));
    let out = b.on_membership(t0, &[leaving, peer("b", 0)]);
    assert_eq!(acquires(&out).len(), SHARDS as usize - 1, "{out:?}");
}

/// Regression (seen in the scale-out e2e run: two owners wrote one shard's
/// log): `b` and `c` join `a` at once, each first seeing only itself as new,
/// so both views make it the owner of shard `s` after `a`. `a`'s release,
/// made under the full view, must let only one of them acquire.
#[test]
fn two_members_joining_at_once_never_both_acquire_on_one_release() {
    let t0 = Instant::now();
    let cfg = HandoffConfig::new("bank", 60);
    let mut a = ShardTable::new(MemberId::new("a"), cfg.clone()).unwrap();
    a.on_membership(t0, &[peer("a", 0)]);
    let t1 = t0 + cfg.stable_after;
    for (s, e) in acquires(&a.tick(t1)) {
        a.callback_done(t1, Callback::Acquire, s, e, Outcome::Ok);
    }
    assert_eq!(a.owned(), 60);
    let mut b = ShardTable::new(MemberId::new("b"), cfg.clone()).unwrap();
    let mut c = ShardTable::new(MemberId::new("c"), cfg.clone()).unwrap();
    b.on_membership(t1, &[peer("a", 1), peer("b", 0)]);
    c.on_membership(t1, &[peer("a", 1), peer("c", 0)]);
    a.on_membership(t1, &[peer("a", 1), peer("b", 0), peer("c", 0)]);
    let contested: Vec<u32> = (0..60)
        .filter(|&s| {
            b.owner(s) == Some(&MemberId::new("b")) && c.owner(s) == Some(&MemberId::new("c"))
        })
        .collect();
    assert!(!contested.is_empty(), "no shard both joiners claim");
    for s in contested {
        let ShardState::Releasing { epoch } = a.state(s) else {
            panic!("a keeps contested shard {s}: {:?}", a.state(s));
        };
        let mut out = a.drained(t1, s);
        out.extend(a.callback_done(t1, Callback::Release, s, epoch, Outcome::Ok));
        let notice = out
            .iter()
            .find_map(|x| match x {
                Action::Broadcast(n) => Some(n.clone()),
                _ => None,
            })
            .expect("a gossips its release");
        let by_b = acquires(&b.on_release_notice(t1, &notice)).len();
        let by_c = acquires(&c.on_release_notice(t1, &notice)).len();
        assert_eq!(by_b + by_c, 1, "shard {s}: b acquired {by_b}, c {by_c}");
    }
}

mod term;
