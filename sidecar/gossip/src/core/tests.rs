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
                Ok(Wire::Swim { packet, .. })
                    if inspect::header(&packet)
                        .is_some_and(|h| h.message == foca::Message::TurnUndead) =>
                {
                    turn_undead += 1;
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

/// Decoded messages `c` sent, with their destinations.
fn sent(c: &mut Core) -> Vec<(SocketAddr, Wire)> {
    let mut out = Vec::new();
    while let Some(o) = c.poll_output() {
        if let Output::Send { to, plain } = o {
            out.push((to, wire::decode::<Wire>(&plain, MAX_PLAIN).unwrap()));
        }
    }
    out
}

#[test]
fn a_relayed_check_brings_back_the_incarnation_and_refutes_a_stale_suspicion() {
    let mut a = core(0, Arc::new(Count::default()));
    let b = id(1);
    let origin = addr(2);
    a.preload(
        Duration::ZERO,
        roster(&[
            foca::Member::new(b, 0, State::Suspect),
            foca::Member::alive(id(2)),
        ]),
    )
    .unwrap();
    while a.poll_output().is_some() {}
    let t = secs(0.1);
    let req = wire::encode(&Wire::CheckReq {
        target: b,
        nonce: 7,
    });
    a.handle_udp(t, origin, &req).unwrap();
    let check = sent(&mut a)
        .into_iter()
        .find_map(|(to, w)| match w {
            Wire::Check { nonce, .. } if to == b.addr => Some(nonce),
            _ => None,
        })
        .expect("the helper checks the target directly");
    // b answers at incarnation 1: newer than the suspicion.
    let ack = wire::encode(&Wire::CheckAck {
        nonce: check,
        id: b,
        incarnation: 1,
    });
    a.handle_udp(t + secs(0.01), b.addr, &ack).unwrap();
    assert_eq!(a.state_of(b.addr), Some((b, State::Alive, 1)));
    let reply = sent(&mut a).into_iter().find(|(to, _)| *to == origin);
    assert_eq!(
        reply.map(|(_, w)| w),
        Some(Wire::CheckReply {
            target: b,
            nonce: 7,
            incarnation: Some(1)
        })
    );
}

#[test]
fn a_check_answer_from_another_identity_or_address_is_ignored() {
    let mut a = core(0, Arc::new(Count::default()));
    let b = id(1);
    a.preload(
        Duration::ZERO,
        roster(&[foca::Member::new(b, 0, State::Suspect)]),
    )
    .unwrap();
    while a.poll_output().is_some() {}
    let req = wire::encode(&Wire::CheckReq {
        target: b,
        nonce: 3,
    });
    a.handle_udp(secs(0.1), addr(2), &req).unwrap();
    let check = sent(&mut a)
        .into_iter()
        .find_map(|(_, w)| match w {
            Wire::Check { nonce, .. } => Some(nonce),
            _ => None,
        })
        .unwrap();
    let reborn = NodeId {
        addr: b.addr,
        generation: 2,
    };
    for (from, id) in [(b.addr, reborn), (addr(3), b)] {
        let ack = wire::encode(&Wire::CheckAck {
            nonce: check,
            id,
            incarnation: 5,
        });
        a.handle_udp(secs(0.2), from, &ack).unwrap();
    }
    assert_eq!(a.state_of(b.addr), Some((b, State::Suspect, 0)));
    // Unanswered, the helper says so (a nack) within its 0.4 s.
    let mut t = secs(0.2);
    let mut reply = None;
    while reply.is_none() && t < secs(1.0) {
        t += Duration::from_millis(10);
        a.handle_timers(t);
        reply = sent(&mut a)
            .into_iter()
            .find_map(|(to, w)| (to == addr(2)).then_some(w));
    }
    assert_eq!(
        reply,
        Some(Wire::CheckReply {
            target: b,
            nonce: 3,
            incarnation: None
        })
    );
    assert!(t <= secs(0.51), "nack after {t:?}");
}

#[test]
fn a_check_with_the_buddy_flag_is_refuted_in_its_answer() {
    let obs = Arc::new(Count::default());
    let mut b = core(1, obs.clone());
    b.preload(Duration::ZERO, roster(&[foca::Member::alive(id(0))]))
        .unwrap();
    while b.poll_output().is_some() {}
    let check = wire::encode(&Wire::Check {
        nonce: 9,
        buddy: Some(0),
    });
    b.handle_udp(secs(0.1), addr(0), &check).unwrap();
    let answer = sent(&mut b)
        .into_iter()
        .find_map(|(to, w)| matches!(w, Wire::CheckAck { .. }).then_some((to, w)));
    assert_eq!(
        answer,
        Some((
            addr(0),
            Wire::CheckAck {
                nonce: 9,
                id: id(1),
                incarnation: 1
            }
        ))
    );
    assert_eq!(obs.refutations.load(Ordering::Relaxed), 1);
}

#[test]
fn the_ring_watch_suspects_its_successor_only_when_no_helper_reaches_it() {
    for helper_reaches in [false, true] {
        let mut a = core(0, Arc::new(Count::default()));
        let others: Vec<NodeId> = (1..6).map(id).collect();
        let members: Vec<_> = others.iter().map(|m| foca::Member::alive(*m)).collect();
        let mut state = roster(&members);
        // They all advertise that they answer checks.
        state.metas = (1..6)
            .map(|i| {
                let mut m = meta(i);
                watch::advertise_checks(&mut m);
                MetaRecord {
                    id: id(i),
                    version: 1,
                    left: false,
                    meta: m,
                }
            })
            .collect();
        a.preload(Duration::ZERO, state).unwrap();
        let succ = watch::successor(&addr(0), others.iter().copied(), |_| true).unwrap();
        let mut t = Duration::ZERO;
        let mut first_check = None;
        let mut asked = Vec::new();
        let mut state_after = None;
        while t < secs(6.0) && state_after.is_none() {
            t += Duration::from_millis(10);
            a.handle_timers(t);
            for (to, w) in sent(&mut a) {
                match w {
                    Wire::Check { .. } if to == succ.addr => {
                        first_check.get_or_insert(t);
                    }
                    Wire::CheckReq { target, nonce } if target == succ => {
                        asked.push(to);
                        let reply = wire::encode(&Wire::CheckReply {
                            target,
                            nonce,
                            incarnation: helper_reaches.then_some(0),
                        });
                        a.handle_udp(t, to, &reply).unwrap();
                    }
                    _ => {}
                }
            }
            if let Some(first) = first_check {
                // Direct check (0.5 s) plus the helpers' time (0.5 s).
                if t >= first + secs(1.0) + Duration::from_millis(20) {
                    state_after = a.state_of(succ.addr).map(|s| s.1);
                }
            }
        }
        assert!(a.is_joined(), "preloaded members make the core joined");
        assert!(first_check.is_some(), "the successor is checked");
        assert_eq!(asked.len(), 3, "3 helpers asked: {asked:?}");
        assert!(asked.iter().all(|h| *h != succ.addr && *h != addr(0)));
        let expect = if helper_reaches {
            State::Alive
        } else {
            State::Suspect
        };
        assert_eq!(
            state_after,
            Some(expect),
            "helper reaches: {helper_reaches}"
        );
    }
}

#[test]
fn members_without_the_checks_tag_are_not_watched() {
    // An older build drops our checks as malformed: it must not be watched
    // (and so suspected) through them; foca's own probes still cover it.
    let mut a = core(0, Arc::new(Count::default()));
    let members: Vec<_> = (1..4).map(|i| foca::Member::alive(id(i))).collect();
    let mut state = roster(&members);
    state.metas = (1..4)
        .map(|i| MetaRecord {
            id: id(i),
            version: 1,
            left: false,
            meta: meta(i),
        })
        .collect();
    a.preload(Duration::ZERO, state).unwrap();
    let mut t = Duration::ZERO;
    while t < secs(5.0) {
        t += Duration::from_millis(10);
        a.handle_timers(t);
        for (to, w) in sent(&mut a) {
            assert!(
                !matches!(w, Wire::Check { .. } | Wire::CheckReq { .. }),
                "{w:?} sent to {to}"
            );
        }
    }
    assert!(a.is_joined());
}

#[test]
fn the_checks_tag_is_advertised_but_kept_out_of_the_view() {
    let mut a = core(0, Arc::new(Count::default()));
    let mine = a.full_state().metas;
    assert!(mine[0].meta.tags.contains_key(watch::CHECKS_TAG));
    let view = a.take_view().unwrap();
    assert!(view.members.iter().all(|m| m.meta.tags.is_empty()));
    // No room with 16 tags of its own: not advertised, and still valid.
    let mut full = meta(0);
    for i in 0..crate::meta::MAX_META_TAGS {
        full.tags.insert(format!("k{i}"), "v".into());
    }
    watch::advertise_checks(&mut full);
    assert!(!full.tags.contains_key(watch::CHECKS_TAG));
    assert!(full.validate().is_ok());
}
