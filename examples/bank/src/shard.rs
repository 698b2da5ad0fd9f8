//! One acquired shard: its ledger, its log, its epoch fence.
//!
//! Decisions happen under a short lock (no `.await` inside), the event is
//! queued to the group committer in sequence order, and the answer waits
//! outside the lock until the event is durable. Reads also wait until every
//! event they could have seen is durable, so nothing unacknowledged is shown,
//! and check that no newer owner took the log, so no stale state is shown.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::committer::{CommitFailed, Committer, Fence};
use crate::event::Outcome;
use crate::journal::{self, JournalError};
use crate::ledger::{Command, Decision, Ledger};

/// Why a shard could not serve a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardError {
    /// The shard was released (or never acquired): 503 `shard-not-owned`.
    NotOwned,
    /// The log failed; the outcome is unknown and the shard stops serving.
    LogFailed,
    /// The state and a new event disagree (a bug): 500.
    Internal(String),
}

/// State behind the lock.
#[derive(Debug)]
struct Inner {
    /// Balances and op answers.
    ledger: Ledger,
    /// Sequence number of the last event queued.
    last_seq: u64,
    /// Set by `close`: no new work is taken.
    closed: bool,
    /// Set after a commit failure: the in-memory state may be ahead of the disk.
    failed: bool,
}

/// An acquired shard.
#[derive(Debug)]
pub struct Shard {
    /// Shard id.
    id: u32,
    /// Owner term token written on every event.
    owner: String,
    /// Epoch the sidecar acquired at; requests with an older epoch are fenced.
    epoch: AtomicU64,
    /// Ledger and sequencing.
    inner: Mutex<Inner>,
    /// Group-commit task; `None` after close. Requests hold it shared while they
    /// wait for durability, so `close` (exclusive) drains them first.
    committer: tokio::sync::RwLock<Option<Committer>>,
}

// === impl Shard ===

impl Shard {
    /// Opens (replays) the log of shard `id` under `dir` for a new owner term.
    pub async fn open(
        dir: &Path,
        id: u32,
        owner: String,
        epoch: u64,
    ) -> Result<Shard, JournalError> {
        let path = journal::log_path(dir, id);
        let token = owner.clone();
        let opened = tokio::task::spawn_blocking(move || journal::open(&path, &token, epoch))
            .await
            .map_err(|e| JournalError::Io {
                path: journal::log_path(dir, id),
                source: std::io::Error::other(e.to_string()),
            })??;
        let fence = Fence {
            owner: owner.clone(),
            end: opened.end,
        };
        let committer = Committer::start(opened.file, opened.last_seq, fence);
        Ok(Shard {
            id,
            owner,
            epoch: AtomicU64::new(epoch),
            inner: Mutex::new(Inner {
                ledger: opened.ledger,
                last_seq: opened.last_seq,
                closed: false,
                failed: false,
            }),
            committer: tokio::sync::RwLock::new(Some(committer)),
        })
    }

    /// Shard id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The epoch the shard is held at.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The log failed: the shard serves nothing until it is re-acquired (reloaded).
    pub fn is_failed(&self) -> bool {
        self.inner.lock().map(|i| i.failed).unwrap_or(true)
    }

    /// Marks the log failed, as an I/O error would (tests only).
    #[cfg(test)]
    pub(crate) fn poison(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.failed = true;
        }
    }

    /// Runs a write; answers once its event (or the remembered one) is durable.
    pub async fn execute(&self, cmd: &Command) -> Result<Outcome, ShardError> {
        let committer = self.committer.read().await;
        let Some(committer) = committer.as_ref() else {
            return Err(ShardError::NotOwned);
        };
        let (outcome, seq) = {
            let mut inner = self.lock()?;
            match inner.ledger.decide(&self.owner, cmd) {
                Decision::Known { outcome, seq } => (outcome, seq),
                Decision::New { event, outcome } => {
                    let seq = inner.last_seq + 1;
                    inner
                        .ledger
                        .apply(&event, seq)
                        .map_err(|e| ShardError::Internal(e.0))?;
                    inner.last_seq = seq;
                    if committer.queue(seq, journal::encode(&event)).is_err() {
                        inner.failed = true;
                        return Err(ShardError::LogFailed);
                    }
                    (outcome, seq)
                }
            }
        };
        self.durable(committer, seq).await?;
        Ok(outcome)
    }

    /// Balance of `account` once everything it reflects is durable.
    pub async fn balance(&self, account: &str) -> Result<u64, ShardError> {
        let committer = self.committer.read().await;
        let Some(committer) = committer.as_ref() else {
            return Err(ShardError::NotOwned);
        };
        let (balance, seq) = {
            let inner = self.lock()?;
            (inner.ledger.balance(account), inner.last_seq)
        };
        self.durable(committer, seq).await?;
        // A newer owner may have taken the shard without our term writing
        // since: its state, not ours, is the current one.
        if let Err(why) = committer.still_ours().await {
            return Err(self.stop(why));
        }
        Ok(balance)
    }

    /// Stops taking work, waits for queued events to be durable, stops the committer.
    pub async fn close(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.closed = true;
        }
        let mut committer = self.committer.write().await;
        if let Some(mut c) = committer.take() {
            c.close().await;
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, ShardError> {
        let inner = self
            .inner
            .lock()
            .map_err(|_| ShardError::Internal("shard lock poisoned".to_string()))?;
        if inner.closed {
            return Err(ShardError::NotOwned);
        }
        if inner.failed {
            return Err(ShardError::LogFailed);
        }
        Ok(inner)
    }

    async fn durable(&self, committer: &Committer, seq: u64) -> Result<(), ShardError> {
        committer.wait(seq).await.map_err(|why| self.stop(why))
    }

    /// Stops serving after a commit or fence failure and says why.
    fn stop(&self, why: CommitFailed) -> ShardError {
        let mut inner = self.inner.lock().ok();
        match why {
            // A newer owner holds the shard: our line is void, and our
            // state may be ahead of or behind the log; serve nothing more.
            CommitFailed::Superseded => {
                if let Some(inner) = inner.as_mut() {
                    inner.closed = true;
                }
                ShardError::NotOwned
            }
            CommitFailed::Io => {
                if let Some(inner) = inner.as_mut() {
                    inner.failed = true;
                }
                ShardError::LogFailed
            }
        }
    }
}
