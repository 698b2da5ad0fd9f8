//! State-machine tests with injected time and hand-delivered packets.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::meta::Health;
use crate::sim::{addr, meta};

#[derive(Default)]
struct Count {
    refutations: AtomicU64,
    suspicions: AtomicU64,
    bad: AtomicU64,
}

impl GossipObserver for Count {
    fn refutation(&self) {
        self.refutations.fetch_add(1, Ordering::Relaxed);
    }
    fn suspicion(&self) {
        self.suspicions.fetch_add(1, Ordering::Relaxed);
    }
    fn bad_packet(&self, _: BadPacket) {
        self.bad.fetch_add(1, Ordering::Relaxed);
    }
}

fn id(i: usize) -> NodeId {
    NodeId {
        addr: addr(i),
        generation: 1,
    }
}

fn core(i: usize, obs: Arc<Count>) -> Core {
    Core::new(id(i), meta(i), Timing::lan(), i as u64, obs).unwrap()
}

fn roster(members: &[foca::Member<NodeId>]) -> PushPull {
    PushPull {
        from: id(99),
        members: members.to_vec(),
        digests: Vec::new(),
        metas: Vec::new(),
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Runs `c`'s timers up to `until` in 10 ms steps, dropping all output;
/// calls `each` after every step.
fn run_alone(
    c: &mut Core,
    from: Duration,
    until: Duration,
    mut each: impl FnMut(Duration, &mut Core),
) {
    let mut t = from;
    while t <= until {
        c.handle_timers(t);
        while c.poll_output().is_some() {}
        each(t, c);
        t += Duration::from_millis(10);
    }
}

#[test]
fn unanswered_member_goes_suspect_then_dead_after_the_full_timeout() {
    let obs = Arc::new(Count::default());
    let mut a = core(0, obs.clone());
    a.preload(Duration::ZERO, roster(&[foca::Member::alive(id(1))]))
        .unwrap();
    let mut suspect_at = None;
    let mut dead_at = None;
    run_alone(&mut a, Duration::ZERO, secs(10.0), |t, c| {
        match c.state_of(addr(1)).map(|s| s.1) {
            Some(State::Suspect) if suspect_at.is_none() => suspect_at = Some(t),
            Some(State::Down) if dead_at.is_none() => dead_at = Some(t),
            _ => {}
        }
    });
    let (s, d) = (suspect_at.unwrap(), dead_at.unwrap());
    // First probe after one (health-scaled) period, suspect one period later.
    assert!(s >= secs(1.0) && s <= secs(4.0), "suspect at {s:?}");
    // No confirmation can arrive: the full Lifeguard maximum (4 s at n = 2).
    let waited = d - s;
    assert!(
        waited >= secs(3.99) && waited <= secs(4.02),
        "dead {waited:?} after suspect"
    );
    assert_eq!(obs.suspicions.load(Ordering::Relaxed), 1);
    assert!(a
        .take_downs()
        .iter()
        .any(|v| v.member == id(1) && v.by_self));
}

#[test]
fn failed_probes_raise_local_health_and_stretch_the_probe_period() {
    let obs = Arc::new(Count::default());
    let mut a = core(0, obs);
    let members: Vec<_> = (1..6).map(|i| foca::Member::alive(id(i))).collect();
    a.preload(Duration::ZERO, roster(&members)).unwrap();
    let mut pings = Vec::new();
    let mut t = Duration::ZERO;
    while t <= secs(12.0) {
        a.handle_timers(t);
        while let Some(out) = a.poll_output() {
            if let Output::Send { plain, .. } = out {
                if let Ok(Wire::Swim { packet, .. }) = wire::decode::<Wire>(&plain, MAX_PLAIN) {
                    if let Some(h) = inspect::header(&packet) {
                        if matches!(h.message, foca::Message::Ping(_)) {
                            pings.push(t);
                        }
                    }
                }
            }
        }
        t += Duration::from_millis(10);
    }
    assert!(a.local_health() >= 2, "health {}", a.local_health());
    let gaps: Vec<_> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.first().is_some_and(|g| *g <= secs(1.05)), "{gaps:?}");
    assert!(gaps.last().is_some_and(|g| *g >= secs(2.0)), "{gaps:?}");
}

#[test]
fn buddy_flag_makes_a_suspect_refute_at_once() {
    let obs_a = Arc::new(Count::default());
    let mut a = core(0, obs_a.clone());
    let mut b = core(1, Arc::new(Count::default()));
    a.preload(Duration::ZERO, roster(&[foca::Member::alive(id(1))]))
        .unwrap();
    b.preload(Duration::ZERO, roster(&[foca::Member::alive(id(0))]))
        .unwrap();
    // Let b produce a packet for a, then mark it as "I suspect you at 0".
    let mut packet = None;
    let mut t = Duration::ZERO;
    while packet.is_none() && t < secs(5.0) {
        b.handle_timers(t);
        while let Some(out) = b.poll_output() {
            if let Output::Send { to, plain } = out {
                if to == addr(0) {
                    packet = Some(plain);
                }
            }
        }
        t += Duration::from_millis(10);
    }
    let Ok(Wire::Swim { packet, .. }) = wire::decode::<Wire>(&packet.unwrap(), MAX_PLAIN) else {
        panic!("not a swim packet")
    };
    let flagged = wire::encode(&Wire::Swim {
        buddy: Some(0),
        packet,
    });
    let before = a.take_view().unwrap().get("sim-00000").unwrap().incarnation;
    a.handle_udp(t, addr(1), &flagged).unwrap();
    let after = a.take_view().unwrap().get("sim-00000").unwrap().incarnation;
    assert_eq!(after, before + 1, "incarnation bumped to refute");
    assert_eq!(obs_a.refutations.load(Ordering::Relaxed), 1);
    // A stale flag (older incarnation) is ignored.
    let stale = wire::encode(&Wire::Swim {
        buddy: Some(0),
        packet: match wire::decode::<Wire>(&flagged, MAX_PLAIN).unwrap() {
            Wire::Swim { packet, .. } => packet,
            other => unreachable!("{other:?}"),
        },
    });
    let _ = a.handle_udp(t, addr(1), &stale);
    assert_eq!(obs_a.refutations.load(Ordering::Relaxed), 1);
}

#[test]
fn incarnation_ordering_old_news_never_overrides_new() {
    let mut a = core(0, Arc::new(Count::default()));
    let b = id(1);
    a.preload(
        Duration::ZERO,
        roster(&[foca::Member::new(b, 2, State::Suspect)]),
    )
    .unwrap();
    assert_eq!(a.state_of(b.addr).unwrap().1, State::Suspect);
    // Alive at an older incarnation does not refute a newer suspicion.
    a.apply_push_pull(
        Duration::ZERO,
        roster(&[foca::Member::new(b, 1, State::Alive)]),
    )
    .unwrap();
    assert_eq!(a.state_of(b.addr).unwrap().1, State::Suspect);
    // Alive at a higher incarnation does.
    a.apply_push_pull(
        Duration::ZERO,
        roster(&[foca::Member::new(b, 3, State::Alive)]),
    )
    .unwrap();
    assert_eq!(a.state_of(b.addr).unwrap(), (b, State::Alive, 3));
    // Suspect at the same incarnation wins over Alive; Down beats both.
    a.apply_push_pull(
        Duration::ZERO,
        roster(&[foca::Member::new(b, 3, State::Suspect)]),
    )
    .unwrap();
    assert_eq!(a.state_of(b.addr).unwrap().1, State::Suspect);
    a.apply_push_pull(
        Duration::ZERO,
        roster(&[foca::Member::new(b, 0, State::Down)]),
    )
    .unwrap();
    assert_eq!(a.state_of(b.addr).unwrap().1, State::Down);
    // A new generation at the same address replaces the dead identity.
    let b2 = NodeId { generation: 2, ..b };
    a.apply_push_pull(Duration::ZERO, roster(&[foca::Member::alive(b2)]))
        .unwrap();
    assert_eq!(a.state_of(b.addr).unwrap(), (b2, State::Alive, 0));
}

#[test]
fn graceful_leave_shows_left_with_metadata() {
    let mut a = core(0, Arc::new(Count::default()));
    let mut b = core(1, Arc::new(Count::default()));
    a.apply_push_pull(Duration::ZERO, b.full_state()).unwrap();
    b.apply_push_pull(Duration::ZERO, a.full_state()).unwrap();
    assert_eq!(
        a.take_view().unwrap().get("sim-00001").unwrap().health,
        Health::Alive
    );
    b.leave(secs(1.0));
    assert_eq!(
        b.take_view().unwrap().get("sim-00001").unwrap().health,
        Health::Left
    );
    let request = a.push_pull_state();
    assert!(request.metas.is_empty(), "requests carry digests only");
    let answer = b.push_pull_answer(&request);
    assert_eq!(answer.metas.len(), 1, "only b's changed record travels");
    a.apply_push_pull(secs(1.0), answer).unwrap();
    let view = a.take_view().unwrap();
    assert_eq!(view.get("sim-00001").unwrap().health, Health::Left);
    assert_eq!(view.get("sim-00001").unwrap().meta, meta(1));
}

#[test]
fn garbage_is_counted_never_applied() {
    let obs = Arc::new(Count::default());
    let mut a = core(0, obs.clone());
    assert_eq!(
        a.handle_udp(Duration::ZERO, addr(1), b""),
        Err(BadPacket::Truncated)
    );
    assert_eq!(
        a.handle_udp(Duration::ZERO, addr(1), &[9, 9]),
        Err(BadPacket::Version)
    );
    let not_foca = wire::encode(&Wire::Swim {
        buddy: None,
        packet: vec![0xff; 40],
    });
    assert_eq!(
        a.handle_udp(Duration::ZERO, addr(1), &not_foca),
        Err(BadPacket::Malformed)
    );
    assert_eq!(obs.bad.load(Ordering::Relaxed), 3);
    assert_eq!(a.active_members(), 0);
}

#[test]
fn oversized_push_pull_is_refused() {
    let mut a = core(0, Arc::new(Count::default()));
    let many: Vec<_> = (0..=MAX_MEMBERS)
        .map(|i| foca::Member::alive(id(i + 1)))
        .collect();
    assert_eq!(
        a.apply_push_pull(Duration::ZERO, roster(&many)),
        Err(BadPacket::Oversized)
    );
    assert_eq!(a.active_members(), 0);
}

#[test]
fn metadata_updates_and_bounds() {
    let mut a = core(0, Arc::new(Count::default()));
    let mut m = meta(0);
    m.tags.insert("x".repeat(200), "y".into());
    assert!(matches!(
        a.update_meta(Duration::ZERO, m),
        Err(CoreError::Meta(_))
    ));
    assert!(matches!(
        a.broadcast(Duration::ZERO, &[0; MAX_APP_BROADCAST + 1]),
        Err(CoreError::BroadcastSize)
    ));
    assert!(matches!(
        a.broadcast(Duration::ZERO, &[]),
        Err(CoreError::BroadcastSize)
    ));
}

#[test]
fn refuted_suspicion_expiring_sends_no_turn_undead() {
    // foca answers an expired suspicion with TurnUndead even when the member
    // refuted it; the core must not hand foca a suspicion that no longer stands.
    let mut a = core(0, Arc::new(Count::default()));
    let b = id(1);
    a.preload(Duration::ZERO, roster(&[foca::Member::alive(b)]))
        .unwrap();
    let mut t = Duration::ZERO;
    while a.state_of(b.addr).map(|s| s.1) != Some(State::Suspect) {
        assert!(t < secs(5.0), "never suspected");
        t += Duration::from_millis(10);
        a.handle_timers(t);
        while a.poll_output().is_some() {}
    }
    // b refutes (incarnation 1) before the timeout.
    a.apply_push_pull(t, roster(&[foca::Member::new(b, 1, State::Alive)]))
        .unwrap();
    let mut turn_undead = 0;
    // The refuted suspicion would expire within its 4 s maximum; a fresh one
    // (b ignores foca's pings) cannot expire before a probe period plus the
    // 3 s floor after it, later than this window.
    let mut t2 = t;
    while t2 < t + secs(5.0) {
        a.handle_timers(t2);
        let mut answers = Vec::new();
        while let Some(out) = a.poll_output() {
            let Output::Send { plain, .. } = out else {
                continue;
            };
            match wire::decode::<Wire>(&plain, MAX_PLAIN) {
                Ok(Wire::Swim { packet, .. }) => {
                    if inspect::header(&packet)
                        .is_some_and(|h| h.message == foca::Message::TurnUndead)
                    {
                        turn_undead += 1;
                    }
                }
                // b answers the ring watch (not foca's pings), so only the
                // refuted suspicion could expire here.
                Ok(Wire::Check { nonce, .. }) => answers.push(wire::encode(&Wire::CheckAck {
                    nonce,
                    id: b,
                    incarnation: 1,
                })),
                _ => {}
            }
        }
        for ack in answers {
            a.handle_udp(t2, b.addr, &ack).unwrap();
        }
        t2 += Duration::from_millis(10);
    }
    assert_eq!(turn_undead, 0);
    assert!(a.take_downs().iter().all(|d| d.member != b));
}
