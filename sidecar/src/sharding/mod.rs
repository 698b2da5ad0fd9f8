//! Drives the shard handoff state machine (`shardmesh-shards`) with real
//! effects: gossip views and release notices in, app callbacks, gossip
//! broadcasts, held requests and metrics out. Also the [`ShardGate`] the
//! inbound handler asks before serving a shard.
//!
//! One task owns the inputs; the gate shares the table behind a mutex held
//! only for short, non-blocking sections (routing a request, applying an
//! action), so a held request and the action that wakes it cannot race.

mod callbacks;
mod debug;
mod gate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardmesh_config::SidecarConfig;
use shardmesh_gossip::{Health as GossipHealth, MembershipView};
use shardmesh_shards::{
    Action, Callback, HandoffConfig, MemberId, Outcome, Peer, ReleaseNotice, ShardTable, EPOCH_TAG,
    SETTLED_TAG,
};
use tokio::sync::{mpsc, oneshot, watch};

pub use gate::ManagedGate;

use crate::app_client::AppClient;
use crate::gate::Admission;
use crate::membership::LocalMember;
use crate::metrics::Metrics;

/// Longest wait for a lone member's first view before it assumes it is the
/// first member of the cluster (DNS seeds in a cluster include the pod itself).
const FIRST_MEMBER_AFTER: Duration = Duration::from_secs(3);
/// Largest period between ticks of the state machine.
const MAX_TICK: Duration = Duration::from_millis(200);

/// What the manager task reacts to besides gossip.
enum Event {
    /// An app callback finished.
    Callback {
        kind: Callback,
        shard: u32,
        epoch: u64,
        outcome: Outcome,
    },
    /// The last in-flight request of a draining shard finished.
    Drained(u32),
    /// Graceful shutdown: release every shard.
    Leave(oneshot::Sender<()>),
    /// Actions the gate got from the table (a term the app fenced).
    Actions(Vec<Action>),
}

/// State shared by the manager task and the gate.
pub(crate) struct Shared {
    service: String,
    /// The handoff state machine and the requests it holds.
    state: Mutex<State>,
    /// In-flight requests per shard (for draining).
    inflight: Vec<AtomicUsize>,
    /// Shards being drained.
    draining: Vec<AtomicBool>,
    events: mpsc::UnboundedSender<Event>,
    table: watch::Receiver<Arc<crate::routing::RoutingTable>>,
    hold_timeout: Duration,
    /// Woken after every turn of the manager task (a view applied, a tick):
    /// a request routed to an owner this pod cannot reach waits for it.
    turned: tokio::sync::Notify,
    /// Requests waiting for such a turn, bounded by [`gate::MAX_REROUTING`].
    rerouting: AtomicUsize,
}

pub(crate) struct State {
    table: ShardTable,
    /// Requests waiting for a shard being acquired here.
    held: HashMap<u32, Vec<oneshot::Sender<Admission>>>,
}

/// Handle to a running shard manager.
#[derive(Clone)]
pub struct ShardManager {
    shared: Arc<Shared>,
}

impl ShardManager {
    /// Starts managing the shards of this pod's service; `Ok(None)` when
    /// the config has no entry for it (the pod then owns no shards).
    pub fn start(
        config: &SidecarConfig,
        member: Arc<LocalMember>,
        table: watch::Receiver<Arc<crate::routing::RoutingTable>>,
        app: AppClient,
        metrics: Metrics,
        ready: watch::Sender<bool>,
    ) -> Result<Option<Self>, shardmesh_shards::ConfigError> {
        let Some(own) = config.service(&config.pod.service) else {
            return Ok(None);
        };
        let mut handoff = HandoffConfig::new(own.name.clone(), own.shards);
        // Epochs start above the wall clock, so they keep growing even after
        // every member restarted and forgot the epochs gossiped so far.
        handoff.epoch_floor = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        // A leaving member waits for the others to route around it at most
        // half its shutdown grace, leaving the rest for the handoff itself.
        let grace = Duration::from_millis(config.shutdown_grace_ms);
        handoff.leave_wait = handoff.leave_wait.min(grace / 2);
        // A member falsely declared dead hears of it and rejoins within
        // about two probe rounds; until then it may still serve.
        let probe = Duration::from_millis(config.membership.gossip.probe_interval_ms);
        handoff.dead_owner_margin = 2 * probe;
        let hold_timeout = handoff.hold_timeout;
        let (events, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            service: own.name.clone(),
            state: Mutex::new(State {
                table: ShardTable::new(MemberId::new(&config.pod.name), handoff)?,
                held: HashMap::new(),
            }),
            inflight: (0..own.shards).map(|_| AtomicUsize::new(0)).collect(),
            draining: (0..own.shards).map(|_| AtomicBool::new(false)).collect(),
            events,
            table,
            hold_timeout,
            turned: tokio::sync::Notify::new(),
            rerouting: AtomicUsize::new(0),
        });
        let task = Task {
            shared: shared.clone(),
            member,
            app,
            metrics,
            ready,
            seeded: !config.membership.seeds.static_seeds.is_empty()
                || config.membership.seeds.dns.is_some(),
            last_tags: None,
            generation: None,
        };
        tokio::spawn(task.run(rx));
        Ok(Some(Self { shared }))
    }

    /// The gate the inbound handler asks.
    pub fn gate(&self) -> ManagedGate {
        ManagedGate::new(self.shared.clone())
    }

    /// Releases every shard to its next owner; resolves when all are
    /// released (callers bound the wait with their grace period).
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shared.events.send(Event::Leave(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state machine stays consistent between calls; a panic while
        // locked (a bug) must not take routing down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The manager task.
struct Task {
    shared: Arc<Shared>,
    member: Arc<LocalMember>,
    app: AppClient,
    metrics: Metrics,
    ready: watch::Sender<bool>,
    /// Whether seeds were configured (a lone member waits for them a little).
    seeded: bool,
    /// The shard tags last gossiped.
    last_tags: Option<(String, Option<String>)>,
    /// This member's gossip generation in the last view: it grows when the
    /// cluster declared this member dead and gossip rejoined it.
    generation: Option<u64>,
}

impl Task {
    async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>) {
        let started = Instant::now();
        let mut view = self.member.handle().view();
        let mut notices = self.member.handle().broadcasts();
        let mut joined = false;
        let mut leaving: Option<oneshot::Sender<()>> = None;
        loop {
            let deadline = self.shared.lock().table.next_deadline();
            let sleep = deadline
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(MAX_TICK)
                .min(MAX_TICK);
            let actions = tokio::select! {
                changed = view.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let v = view.borrow_and_update().clone();
                    joined |= !self.seeded || v.members.iter().any(|m| m.meta.pod != v.local && m.health == GossipHealth::Alive);
                    let mut out = self.on_rejoin(&v);
                    if joined { out.extend(self.on_view(&v)); }
                    out
                }
                msg = notices.recv() => match msg {
                    Ok(m) => match ReleaseNotice::decode(&m.data) {
                        Ok(notice) => self.shared.lock().table.on_release_notice(Instant::now(), &notice),
                        Err(e) => {
                            tracing::debug!(error = %e, "ignoring gossip message that is not a release notice");
                            Vec::new()
                        }
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // Lost notices are covered by the settled-view barrier.
                        tracing::warn!(lost = n, "release notices lagged");
                        Vec::new()
                    }
                    Err(_) => return,
                },
                event = events.recv() => match event {
                    None => return,
                    Some(Event::Callback { kind, shard, epoch, outcome }) => {
                        self.shared.lock().table.callback_done(Instant::now(), kind, shard, epoch, outcome)
                    }
                    Some(Event::Drained(shard)) => {
                        if let Some(d) = self.shared.draining.get(shard as usize) {
                            d.store(false, Ordering::SeqCst);
                        }
                        self.shared.lock().table.drained(Instant::now(), shard)
                    }
                    Some(Event::Leave(done)) => {
                        leaving = Some(done);
                        self.shared.lock().table.leave(Instant::now())
                    }
                    Some(Event::Actions(actions)) => actions,
                },
                () = tokio::time::sleep(sleep) => {
                    if !joined && started.elapsed() >= FIRST_MEMBER_AFTER {
                        joined = true;
                        tracing::info!("no other member answered: starting as the first member");
                        let v = view.borrow().clone();
                        self.on_view(&v)
                    } else {
                        self.shared.lock().table.tick(Instant::now())
                    }
                }
            };
            self.apply(actions);
            self.shared.turned.notify_waiters();
            self.publish().await;
            if let Some(done) = leaving.take() {
                if self.shared.lock().table.is_released() {
                    let _ = done.send(());
                } else {
                    leaving = Some(done);
                }
            }
        }
    }

    /// Ends every term held here when the view shows that gossip rejoined
    /// this member under a new generation: the others declared it dead (it
    /// was paused, stalled or cut off) and may have taken its shards.
    fn on_rejoin(&mut self, v: &MembershipView) -> Vec<Action> {
        let Some(me) = v.members.iter().find(|m| m.meta.pod == v.local) else {
            return Vec::new();
        };
        let generation = me.generation();
        match self.generation.replace(generation) {
            Some(before) if before != generation => {
                tracing::warn!(
                    before,
                    generation,
                    "declared dead by the cluster and rejoined; acquiring every shard again"
                );
                self.shared.lock().table.rejoined(Instant::now())
            }
            _ => Vec::new(),
        }
    }

    fn on_view(&self, v: &MembershipView) -> Vec<Action> {
        let peers: Vec<Peer> = v
            .members
            .iter()
            .filter(|m| m.meta.service == self.shared.service)
            .map(|m| {
                let leaving = m.meta.state == shardmesh_gossip::MemberStatus::Leaving;
                let health = match m.health {
                    // Still running, handing its shards off.
                    GossipHealth::Alive | GossipHealth::Suspect if leaving => {
                        shardmesh_shards::Health::Leaving
                    }
                    GossipHealth::Alive => shardmesh_shards::Health::Alive,
                    GossipHealth::Suspect => shardmesh_shards::Health::Suspect,
                    GossipHealth::Dead => shardmesh_shards::Health::Dead,
                    GossipHealth::Left => shardmesh_shards::Health::Left,
                };
                Peer::new(MemberId::new(&m.meta.pod), health)
                    .with_tags(|k| m.meta.tags.get(k).map(String::as_str))
            })
            .collect();
        self.shared
            .lock()
            .table
            .on_membership(Instant::now(), &peers)
    }

    /// Carries out the state machine's actions.
    fn apply(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::CallAcquire { shard, epoch } => {
                    self.callback(Callback::Acquire, shard, epoch)
                }
                Action::CallRelease { shard, epoch } => {
                    self.callback(Callback::Release, shard, epoch)
                }
                Action::Drain { shard } => {
                    let i = shard as usize;
                    if let (Some(flag), Some(count)) =
                        (self.shared.draining.get(i), self.shared.inflight.get(i))
                    {
                        flag.store(true, Ordering::SeqCst);
                        if count.load(Ordering::SeqCst) == 0 && flag.swap(false, Ordering::SeqCst) {
                            let _ = self.shared.events.send(Event::Drained(shard));
                        }
                    }
                }
                Action::Broadcast(notice) => match notice.encode() {
                    Ok(bytes) => {
                        let gossip = self.member.handle().clone();
                        tokio::spawn(async move {
                            if let Err(e) = gossip.broadcast(bytes.into()).await {
                                tracing::warn!(error = %e, "cannot gossip release notice");
                            }
                        });
                    }
                    Err(e) => tracing::error!(error = %e, "cannot encode release notice"),
                },
                Action::ServeHeld { shard, epoch } => {
                    self.wake(shard, || Admission::Serve { epoch, guard: None })
                }
                Action::RejectHeld { shard } => self.wake(shard, || {
                    Admission::NoOwner(format!(
                        "shard {shard} was not acquired within the handoff timeout"
                    ))
                }),
                Action::Acquired { shard, epoch, took } => {
                    tracing::info!(shard, epoch, ?took, "shard acquired");
                    self.metrics
                        .shard_handoffs
                        .with_label_values(&[&self.shared.service])
                        .inc();
                    self.metrics
                        .shard_handoff_duration
                        .observe(took.as_secs_f64());
                }
                Action::Released { shard, epoch } => tracing::info!(shard, epoch, "shard released"),
                Action::TermLost { shard } => {
                    tracing::warn!(
                        shard,
                        "the term held here is void; acquiring the shard again"
                    );
                    self.metrics
                        .shard_terms_lost
                        .with_label_values(&[&self.shared.service])
                        .inc();
                }
            }
        }
    }

    /// Answers every request held for `shard`.
    fn wake(&self, shard: u32, admission: impl Fn() -> Admission) {
        let waiters = self.shared.lock().held.remove(&shard).unwrap_or_default();
        for w in waiters {
            let _ = w.send(admission());
        }
    }

    fn callback(&self, kind: Callback, shard: u32, epoch: u64) {
        let events = self.shared.events.clone();
        let app = self.app.clone();
        let service = self.shared.service.clone();
        tokio::spawn(async move {
            let outcome = callbacks::call(&app, &service, kind, shard, epoch).await;
            let _ = events.send(Event::Callback {
                kind,
                shard,
                epoch,
                outcome,
            });
        });
    }

    /// Publishes readiness, the owned-shards gauge and the gossip tags.
    async fn publish(&mut self) {
        let (ready, owned, tags) = {
            let s = self.shared.lock();
            (
                s.table.is_ready(),
                s.table.owned(),
                (s.table.epoch_tag(), s.table.settled_tag()),
            )
        };
        self.ready
            .send_if_modified(|r| std::mem::replace(r, ready) != ready);
        self.metrics
            .shards_owned
            .with_label_values(&[&self.shared.service])
            .set(i64::from(owned));
        if self.last_tags.as_ref() != Some(&tags) {
            if let Err(e) = self
                .member
                .update_tags(|t| {
                    t.insert(EPOCH_TAG.to_string(), tags.0.clone());
                    match &tags.1 {
                        Some(v) => t.insert(SETTLED_TAG.to_string(), v.clone()),
                        None => t.remove(SETTLED_TAG),
                    };
                })
                .await
            {
                tracing::warn!(error = %e, "cannot gossip shard tags");
                return;
            }
            self.last_tags = Some(tags);
        }
    }
}
