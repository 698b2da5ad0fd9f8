//! A term held here becomes void: the app fenced it, a newer owner released
//! the shard back, or the cluster declared this member dead while it was
//! paused. The shard is acquired again at a fresh epoch, never served on
//! the old one, and only once nobody else can hold it.

use super::*;

fn serving_epoch(t: &ShardTable, s: u32) -> u64 {
    match t.state(s) {
        ShardState::Serving { epoch } => epoch,
        other => panic!("shard {s} not served: {other:?}"),
    }
}

#[test]
fn a_fenced_term_is_acquired_again_above_the_old_epoch() {
    let t0 = Instant::now();
    let mut a = alone(t0);
    let t1 = t0 + cfg().stable_after;
    let s = 2;
    let old = serving_epoch(&a, s);
    // An answer about another epoch (an older term) changes nothing.
    assert!(a.fenced(t1, s, old - 1).is_empty());
    assert_eq!(serving_epoch(&a, s), old);

    let out = a.fenced(t1, s, old);
    assert!(out.contains(&Action::TermLost { shard: s }), "{out:?}");
    let calls = acquires(&out);
    assert_eq!(calls.len(), 1, "alone, the barrier passes at once: {out:?}");
    let (shard, fresh) = calls[0];
    assert_eq!(shard, s);
    assert!(fresh > old, "fresh epoch {fresh} not above {old}");
    // Requests wait for the new term instead of reaching the app on the old one.
    assert_eq!(a.route(t1, s), Route::Hold);
    let out = a.callback_done(t1, Callback::Acquire, s, fresh, Outcome::Ok);
    assert!(out.contains(&Action::ServeHeld {
        shard: s,
        epoch: fresh
    }));
    assert_eq!(a.route(t1, s), Route::Local { epoch: fresh });
    // The same refusal again (a request still in flight on the old term)
    // does not void the new term.
    assert!(a.fenced(t1, s, old).is_empty());
    assert_eq!(serving_epoch(&a, s), fresh);
}

#[test]
fn a_fenced_term_waits_until_the_others_settled_on_our_view() {
    let t0 = Instant::now();
    let (mut a, mine) = pair(t0);
    let s = mine[0];
    let old = serving_epoch(&a, s);
    // b no longer advertises our view (it may be taking shards of ours).
    a.on_membership(t0, &[peer("a", 0), peer("b", 0)]);
    let out = a.fenced(t0, s, old);
    assert!(acquires(&out).is_empty(), "b may hold it: {out:?}");
    assert!(matches!(a.state(s), ShardState::Acquiring { .. }));
    // b settles on the view {a, b}: nobody else holds the shard.
    let b = settled_on(peer("b", 0), &a);
    let out = a.on_membership(t0, &[peer("a", 0), b]);
    let calls = acquires(&out);
    assert_eq!(calls.len(), 1, "{out:?}");
    assert!(calls[0].1 > old);
}

#[test]
fn a_notice_releasing_our_shard_at_a_newer_epoch_voids_our_term() {
    let t0 = Instant::now();
    let (mut a, mine) = pair(t0);
    let s = mine[0];
    let old = serving_epoch(&a, s);
    // A notice from an older term of b frees nothing and voids nothing.
    assert!(acquires(&a.on_release_notice(t0, &notice_to(s, old - 1, "b", "a"))).is_empty());
    assert_eq!(serving_epoch(&a, s), old);
    // b held the shard at a newer epoch while we were paused, and released
    // it back to us: our term is void, and its notice frees the shard.
    let newer = old + 10;
    let out = a.on_release_notice(t0, &notice_to(s, newer, "b", "a"));
    assert!(out.contains(&Action::TermLost { shard: s }), "{out:?}");
    let calls = acquires(&out);
    assert_eq!(calls.len(), 1, "{out:?}");
    assert!(calls[0].1 > newer, "{calls:?}");
}

#[test]
fn a_rejoined_member_reacquires_every_shard_once_nobody_else_holds_it() {
    let t0 = Instant::now();
    let (mut a, mine) = pair(t0);
    let olds: Vec<u64> = mine.iter().map(|&s| serving_epoch(&a, s)).collect();
    // b's settled tag is stale (it may still serve what it took from us).
    a.on_membership(t0, &[peer("a", 0), peer("b", 0)]);
    let out = a.rejoined(t0);
    assert!(acquires(&out).is_empty(), "{out:?}");
    for &s in &mine {
        assert!(out.contains(&Action::TermLost { shard: s }));
        assert_eq!(a.route(t0, s), Route::Hold, "never the old epoch");
    }
    assert!(!a.is_ready());
    let b = settled_on(peer("b", 0), &a);
    let out = a.on_membership(t0, &[peer("a", 0), b]);
    let calls = acquires(&out);
    assert_eq!(calls.len(), mine.len(), "{out:?}");
    let newest = olds.iter().max().copied().unwrap_or(0);
    assert!(calls.iter().all(|&(_, e)| e > newest), "{calls:?}");
}
