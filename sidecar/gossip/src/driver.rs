//! The tokio driver: binds UDP and TCP, runs the sans-IO [`Core`] on one
//! task, joins seeds with backoff, and hands the sidecar a small handle.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};
use tokio::time::Instant;

use crate::core::{Core, CoreError, Output};
use crate::id::NodeId;
use crate::keyring::{Channel, Keyring};
use crate::meta::{MemberMeta, MembershipView};
use crate::observer::GossipObserver;
use crate::pushpull::{read_frame, write_frame};
use crate::settings::{GossipSettings, Seeds};
use crate::wire::{BadPacket, PushPull, MAX_DATAGRAM};

/// Concurrent inbound push-pull connections; more wait in the backlog.
const MAX_TCP_CONNS: usize = 16;
/// Application broadcasts buffered per receiver before it lags.
const APP_CHANNEL: usize = 1024;

/// Entry point of the gossip runtime.
pub struct Gossip;

/// Why gossip could not start or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding or configuring a socket failed.
    #[error("gossip cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The address to advertise is unspecified (0.0.0.0).
    #[error("gossip listens on {0}; set an advertise address other members can reach")]
    NoAdvertise(SocketAddr),
    /// The core refused the request.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The gossip task has stopped.
    #[error("gossip has stopped")]
    Stopped,
}

/// An application message from another member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppMessage {
    /// Gossip address of the sender.
    pub from: SocketAddr,
    /// Payload.
    pub data: Bytes,
}

enum Command {
    UpdateMeta(MemberMeta, oneshot::Sender<Result<(), CoreError>>),
    Broadcast(Bytes, oneshot::Sender<Result<(), CoreError>>),
    Leave(oneshot::Sender<()>),
}

/// Handle to a running member. Dropping it stops gossip abruptly (as a crash
/// would); call [`GossipHandle::leave`] first for a graceful exit.
pub struct GossipHandle {
    cmds: mpsc::Sender<Command>,
    view: watch::Receiver<MembershipView>,
    apps: broadcast::Sender<AppMessage>,
    local_addr: SocketAddr,
}

struct Task {
    core: Core,
    udp: Arc<UdpSocket>,
    keyring: Keyring,
    observer: Arc<dyn GossipObserver>,
    settings: GossipSettings,
    epoch: Instant,
    view_tx: watch::Sender<MembershipView>,
    apps: broadcast::Sender<AppMessage>,
    pp_done: mpsc::Sender<PushPull>,
}

// === impl Gossip ===

impl Gossip {
    /// Binds UDP and TCP on `settings.listen`, starts the member and joins the seeds.
    /// On `shutdown` the member leaves gracefully and stops.
    pub async fn start(
        settings: GossipSettings,
        meta: MemberMeta,
        keyring: Keyring,
        observer: Arc<dyn GossipObserver>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<GossipHandle, Error> {
        let (udp, tcp, local) = bind(settings.listen).await?;
        let advertise = settings.advertise.unwrap_or(local);
        if advertise.ip().is_unspecified() {
            return Err(Error::NoAdvertise(advertise));
        }
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        let id = NodeId {
            addr: advertise,
            generation,
        };
        let seed = generation ^ u64::from(advertise.port()).rotate_left(32);
        let core = Core::new(id, meta, settings.timing.clone(), seed, observer.clone())?;
        let (view_tx, view) = watch::channel(MembershipView::default());
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (apps, _) = broadcast::channel(APP_CHANNEL);
        let (pp_in_tx, pp_in_rx) = mpsc::channel(MAX_TCP_CONNS);
        let (pp_done, pp_done_rx) = mpsc::channel(MAX_TCP_CONNS);
        let udp = Arc::new(udp);
        tokio::spawn(accept_loop(
            tcp,
            keyring.clone(),
            observer.clone(),
            settings.tcp_timeout,
            settings.tls.clone(),
            pp_in_tx,
        ));
        let task = Task {
            core,
            udp,
            keyring,
            observer,
            settings,
            epoch: Instant::now(),
            view_tx,
            apps: apps.clone(),
            pp_done,
        };
        tokio::spawn(task.run(cmd_rx, pp_in_rx, pp_done_rx, shutdown));
        Ok(GossipHandle {
            cmds: cmd_tx,
            view,
            apps,
            local_addr: advertise,
        })
    }
}

// === impl GossipHandle ===

impl GossipHandle {
    /// The membership view; changes on every join, suspicion, death, leave or metadata change.
    pub fn view(&self) -> watch::Receiver<MembershipView> {
        self.view.clone()
    }

    /// Replaces this member's metadata and spreads it.
    pub async fn update_meta(&self, meta: MemberMeta) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::UpdateMeta(meta, tx))
            .await
            .map_err(|_| Error::Stopped)?;
        Ok(rx.await.map_err(|_| Error::Stopped)??)
    }

    /// Spreads a small (≤ 512 bytes) application message to every member.
    pub async fn broadcast(&self, data: Bytes) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::Broadcast(data, tx))
            .await
            .map_err(|_| Error::Stopped)?;
        Ok(rx.await.map_err(|_| Error::Stopped)??)
    }

    /// Application messages from other members.
    pub fn broadcasts(&self) -> broadcast::Receiver<AppMessage> {
        self.apps.subscribe()
    }

    /// Leaves the cluster gracefully: others show this member as `Left`.
    pub async fn leave(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::Leave(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// The gossip address other members use for this one.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

// === impl Task ===

impl Task {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Command>,
        mut pp_in: mpsc::Receiver<(PushPull, oneshot::Sender<PushPull>)>,
        mut pp_done: mpsc::Receiver<PushPull>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut backoff = self.settings.join_backoff;
        let mut next_join = Instant::now();
        let mut left = false;
        loop {
            let timer_at = self
                .core
                .next_timer()
                .map(|d| self.epoch + d)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let join_at = if self.core.is_joined() || left || self.settings.seeds == Seeds::None {
                Instant::now() + Duration::from_secs(3600)
            } else {
                next_join
            };
            tokio::select! {
                () = &mut shutdown => {
                    if !left {
                        let now = self.now();
                        self.core.leave(now);
                        self.flush().await;
                    }
                    break;
                }
                recv = self.udp.recv_from(&mut buf) => match recv {
                    Ok((n, from)) => self.on_datagram(&buf[..n], from),
                    Err(e) => tracing::debug!(error = %e, "gossip udp receive"),
                },
                () = tokio::time::sleep_until(timer_at) => {
                    let now = self.now();
                    self.core.handle_timers(now);
                }
                () = tokio::time::sleep_until(join_at) => {
                    self.join().await;
                    next_join = Instant::now() + backoff;
                    backoff = (backoff * 2).min(self.settings.join_backoff_max);
                }
                cmd = cmds.recv() => match cmd {
                    // The handle was dropped: stop without a word, as a crash would.
                    None => break,
                    Some(cmd) => left |= self.on_command(cmd),
                },
                Some((state, reply)) = pp_in.recv() => {
                    let _ = reply.send(self.core.push_pull_answer(&state));
                    let now = self.now();
                    let _ = self.core.apply_push_pull(now, state);
                }
                Some(state) = pp_done.recv() => {
                    let now = self.now();
                    let _ = self.core.apply_push_pull(now, state);
                }
            }
            if self.core.is_joined() {
                backoff = self.settings.join_backoff;
            }
            self.flush().await;
        }
    }

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr) {
        self.observer.bytes_received(data.len());
        if data.len() > MAX_DATAGRAM {
            self.observer.bad_packet(BadPacket::Oversized);
            return;
        }
        match self.keyring.open(Channel::Udp, data) {
            Ok(plain) => {
                let now = self.now();
                // The core counts its own refusals.
                let _ = self.core.handle_udp(now, from, &plain);
            }
            Err(e) => self.observer.bad_packet(e.into()),
        }
    }

    /// Returns true when the member left.
    fn on_command(&mut self, cmd: Command) -> bool {
        let now = self.now();
        match cmd {
            Command::UpdateMeta(meta, reply) => {
                let _ = reply.send(self.core.update_meta(now, meta));
                false
            }
            Command::Broadcast(data, reply) => {
                let _ = reply.send(self.core.broadcast(now, &data));
                false
            }
            Command::Leave(reply) => {
                self.core.leave(now);
                let _ = reply.send(());
                true
            }
        }
    }

    async fn join(&mut self) {
        let seeds = resolve(&self.settings.seeds).await;
        let own = self.core.id().addr;
        let seeds: Vec<_> = seeds.into_iter().filter(|a| *a != own).collect();
        if seeds.is_empty() {
            return;
        }
        tracing::debug!(?seeds, "gossip joining");
        let now = self.now();
        self.core.join(now, &seeds);
    }

    async fn flush(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Send { to, plain } => {
                    let sealed = self.keyring.seal(Channel::Udp, &plain);
                    match self.udp.send_to(&sealed, to).await {
                        Ok(n) => self.observer.bytes_sent(n),
                        Err(e) => tracing::trace!(error = %e, %to, "gossip udp send"),
                    }
                }
                Output::PushPull { to } => {
                    let state = self.core.push_pull_state();
                    let keyring = self.keyring.clone();
                    let observer = self.observer.clone();
                    let timeout = self.settings.tcp_timeout;
                    let tls = self.settings.tls.clone();
                    let done = self.pp_done.clone();
                    tokio::spawn(async move {
                        let exchanged = exchange(
                            to,
                            &state,
                            &keyring,
                            tls.as_ref(),
                            observer.as_ref(),
                            timeout,
                        )
                        .await;
                        match exchanged {
                            Ok(theirs) => {
                                tracing::trace!(%to, tls = tls.is_some(), "push-pull done");
                                let _ = done.send(theirs).await;
                            }
                            Err(e) => tracing::debug!(error = %e, %to, "push-pull failed"),
                        }
                    });
                }
                Output::App { from, data } => {
                    let _ = self.apps.send(AppMessage {
                        from: from.addr,
                        data: Bytes::from(data),
                    });
                }
            }
        }
        if let Some(view) = self.core.take_view() {
            self.view_tx.send_replace(view);
        }
    }
}

/// Binds UDP and TCP on one port. With port 0 the UDP port is picked first;
/// if TCP cannot have the same port, another is tried (a few times).
async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), Error> {
    let bind_err = |addr, source| Error::Bind { addr, source };
    let attempts = if listen.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|e| bind_err(listen, e))?;
        let local = udp.local_addr().map_err(|e| bind_err(listen, e))?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp, local)),
            Err(e) => last = Some(bind_err(local, e)),
        }
    }
    Err(last.unwrap_or(Error::Stopped))
}

/// Connects, sends our state, reads theirs.
async fn exchange(
    to: SocketAddr,
    state: &PushPull,
    keyring: &Keyring,
    tls: Option<&crate::pushpull::GossipTls>,
    observer: &dyn GossipObserver,
    timeout: Duration,
) -> Result<PushPull, crate::pushpull::FrameError> {
    let mut stream = crate::pushpull::connect(to, tls, timeout).await?;
    observer.bytes_sent(write_frame(&mut stream, keyring, state, timeout).await?);
    match read_frame(&mut stream, keyring, timeout).await {
        Ok((theirs, n)) => {
            observer.bytes_received(n);
            Ok(theirs)
        }
        Err(crate::pushpull::FrameError::Bad(reason)) => {
            observer.bad_packet(reason);
            Err(crate::pushpull::FrameError::Bad(reason))
        }
        Err(e) => Err(e),
    }
}

/// Accepts push-pull connections; each gets a bounded slot and deadlines.
async fn accept_loop(
    listener: TcpListener,
    keyring: Keyring,
    observer: Arc<dyn GossipObserver>,
    timeout: Duration,
    tls: Option<crate::pushpull::GossipTls>,
    to_core: mpsc::Sender<(PushPull, oneshot::Sender<PushPull>)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        // Stop (and free the port) as soon as the member stops.
        let accepted = tokio::select! {
            () = to_core.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "gossip tcp accept");
                continue;
            }
        };
        let (keyring, observer, to_core) = (keyring.clone(), observer.clone(), to_core.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut stream = match crate::pushpull::accept(tcp, tls.as_ref(), timeout).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "push-pull TLS handshake refused");
                    return;
                }
            };
            let (theirs, n) = match read_frame(&mut stream, &keyring, timeout).await {
                Ok(r) => r,
                Err(crate::pushpull::FrameError::Bad(reason)) => {
                    observer.bad_packet(reason);
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "push-pull read");
                    return;
                }
            };
            observer.bytes_received(n);
            let (tx, rx) = oneshot::channel();
            if to_core.send((theirs, tx)).await.is_err() {
                return;
            }
            let Ok(ours) = rx.await else { return };
            match write_frame(&mut stream, &keyring, &ours, timeout).await {
                Ok(n) => observer.bytes_sent(n),
                Err(e) => tracing::debug!(error = %e, %peer, "push-pull write"),
            }
        });
    }
}

/// Resolves seeds; unresolvable entries are skipped (DNS is retried on the next attempt).
async fn resolve(seeds: &Seeds) -> Vec<SocketAddr> {
    let names: Vec<&str> = match seeds {
        Seeds::None => Vec::new(),
        Seeds::Static(list) => list.iter().map(String::as_str).collect(),
        Seeds::Dns(name) => vec![name.as_str()],
    };
    let mut out = Vec::new();
    for name in names {
        match tokio::net::lookup_host(name).await {
            Ok(addrs) => out.extend(addrs),
            Err(e) => tracing::debug!(error = %e, seed = name, "gossip seed does not resolve"),
        }
    }
    out.sort();
    out.dedup();
    out
}
