//! Group commit: one task per shard appends queued log lines and fsyncs them.
//!
//! Writers queue `(seq, line)` in sequence order and wait until the durable
//! sequence number reaches theirs. The task writes everything queued so far in
//! one `write` and one `fdatasync`, so many concurrent writes share one fsync.
//! No answer is sent before its event is on disk. After an I/O error the
//! committer stops for good: every waiter past the last durable line gets an
//! error, and the shard must be re-acquired (which replays the log).
//!
//! Fencing: the log is shared by every owner term of the shard, and a newer
//! owner's `acquire` marker makes later lines of ours count for nothing (see
//! `journal`). So after each batch the task checks that no other owner's
//! marker landed between our previous line and this batch; if one did, the
//! batch is void: its waiters get [`CommitFailed::Superseded`] (a definite
//! "not applied") and the committer stops. Acknowledging such a write would
//! lose it, whatever the ownership layer above believed at the time.

use std::fs::File;
use std::io::{Seek, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::fence::scan_for_marker;
pub use crate::fence::Fence;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Most bytes written in one batch; keeps a batch's buffer bounded.
const MAX_BATCH: usize = 1024 * 1024;

/// How far the log is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Durable {
    /// Every event up to this sequence number is fsync'd.
    seq: u64,
    /// The committer stopped: why, if it did.
    failed: Option<CommitFailed>,
    /// Offset just past our last durable line.
    end: u64,
}

/// Why a queued line did not become a durable line of this owner term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFailed {
    /// The log could not be made durable (or the committer is closed): the
    /// outcome of the write is unknown.
    Io,
    /// Another owner took the shard before the line was written: the line
    /// counts for nothing, the write is definitely not applied.
    Superseded,
}

/// Handle to the group-commit task of one shard log.
#[derive(Debug)]
pub struct Committer {
    /// Queue of encoded lines; unbounded in type, bounded by the app's request limit.
    tx: Option<mpsc::UnboundedSender<(u64, Vec<u8>)>>,
    /// Durable progress published by the task.
    durable: watch::Receiver<Durable>,
    /// The task, joined on close.
    task: Option<JoinHandle<()>>,
    /// The log, for [`Committer::still_ours`].
    file: Arc<File>,
    /// Our owner term token.
    owner: String,
    /// The log is known free of other owners' markers up to here, so reads
    /// scan only what was appended since.
    clean_to: AtomicU64,
}

// === impl Committer ===

impl Committer {
    /// Starts the task for `file`, whose events up to `last_seq` are already
    /// durable and whose lines of ours end at `fence.end`.
    pub fn start(file: File, last_seq: u64, fence: Fence) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (durable_tx, durable) = watch::channel(Durable {
            seq: last_seq,
            failed: None,
            end: fence.end,
        });
        let file = Arc::new(file);
        let owner = fence.owner.clone();
        let task = tokio::spawn(run(Arc::clone(&file), fence, rx, durable_tx));
        Committer {
            tx: Some(tx),
            durable,
            task: Some(task),
            file,
            owner,
            clean_to: AtomicU64::new(0),
        }
    }

    /// Whether no other owner's `acquire` marker follows our last durable
    /// line, so a read may answer from our state; `Superseded` otherwise.
    pub async fn still_ours(&self) -> Result<(), CommitFailed> {
        let from = self
            .durable
            .borrow()
            .end
            .max(self.clean_to.load(Ordering::Acquire));
        // Usually nobody appended since: one fstat decides.
        let len = self.file.metadata().map_err(|_| CommitFailed::Io)?.len();
        if len <= from {
            return Ok(());
        }
        let fence = Fence {
            owner: self.owner.clone(),
            end: from,
        };
        let file = Arc::clone(&self.file);
        let scanned = tokio::task::spawn_blocking(move || scan_for_marker(&file, &fence, len))
            .await
            .map_err(|_| CommitFailed::Io)?
            .map_err(|_| CommitFailed::Io)?;
        match scanned {
            Some(clean_to) => {
                self.clean_to.fetch_max(clean_to, Ordering::AcqRel);
                Ok(())
            }
            None => Err(CommitFailed::Superseded),
        }
    }

    /// Queues line `seq`; callers queue in increasing `seq` order.
    pub fn queue(&self, seq: u64, line: Vec<u8>) -> Result<(), CommitFailed> {
        match &self.tx {
            Some(tx) => tx.send((seq, line)).map_err(|_| CommitFailed::Io),
            None => Err(CommitFailed::Io),
        }
    }

    /// Waits until event `seq` is durable.
    pub async fn wait(&self, seq: u64) -> Result<(), CommitFailed> {
        let mut rx = self.durable.clone();
        let reached = rx
            .wait_for(|d| d.seq >= seq || d.failed.is_some())
            .await
            .map_err(|_| CommitFailed::Io)?;
        match reached.failed {
            _ if reached.seq >= seq => Ok(()),
            Some(why) => Err(why),
            None => Err(CommitFailed::Io),
        }
    }

    /// Stops the task after everything queued is written.
    pub async fn close(&mut self) {
        self.tx = None;
        if let Some(task) = self.task.take() {
            // A panicked task has nothing left to flush; its waiters already failed.
            let _ = task.await;
        }
    }
}

async fn run(
    file: Arc<File>,
    mut fence: Fence,
    mut rx: mpsc::UnboundedReceiver<(u64, Vec<u8>)>,
    durable: watch::Sender<Durable>,
) {
    while let Some((seq, mut batch)) = rx.recv().await {
        let mut last = seq;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((seq, line)) => {
                    last = seq;
                    batch.extend_from_slice(&line);
                }
                Err(_) => break,
            }
        }
        let file = Arc::clone(&file);
        let checked = fence.clone();
        let written = tokio::task::spawn_blocking(move || {
            let len = batch.len() as u64;
            (&*file).write_all(&batch)?;
            // Appends go to the end, and leave the offset just past them.
            let end = (&*file).stream_position()?;
            let start = end.saturating_sub(len);
            let superseded = scan_for_marker(&file, &checked, start)?.is_none();
            if !superseded {
                file.sync_data()?;
            }
            Ok::<_, std::io::Error>((end, superseded))
        })
        .await;
        match written {
            Ok(Ok((end, false))) => {
                fence.end = end;
                durable.send_replace(Durable {
                    seq: last,
                    failed: None,
                    end,
                });
            }
            Ok(Ok((_, true))) => {
                eprintln!(
                    "bank: {}: another owner acquired the shard; its log no longer takes our lines",
                    fence.owner
                );
                durable.send_modify(|d| d.failed = Some(CommitFailed::Superseded));
                return;
            }
            _ => {
                durable.send_modify(|d| d.failed = Some(CommitFailed::Io));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[tokio::test]
    async fn queued_lines_become_durable_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut c = Committer::start(file, 10, fence("a/1", 0));
        c.wait(10).await.unwrap();
        for seq in 11..=60 {
            c.queue(seq, format!("{seq}\n").into_bytes()).unwrap();
        }
        c.wait(60).await.unwrap();
        c.close().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let want: Vec<String> = (11..=60).map(|s| s.to_string()).collect();
        assert_eq!(text.lines().collect::<Vec<_>>(), want);
        assert!(c.queue(61, b"x\n".to_vec()).is_err(), "closed");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_write_error_fails_every_waiter_and_stops() {
        // Writes to /dev/full fail with ENOSPC: a full disk.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let c = Committer::start(file, 0, fence("a/1", 0));
        c.queue(1, b"a\n".to_vec()).unwrap();
        assert_eq!(c.wait(1).await, Err(CommitFailed::Io));
        assert_eq!(c.wait(2).await, Err(CommitFailed::Io));
    }

    fn fence(owner: &str, end: u64) -> Fence {
        Fence {
            owner: owner.to_string(),
            end,
        }
    }

    fn marker(owner: &str) -> Vec<u8> {
        crate::journal::encode(&Event::Acquire {
            owner: owner.to_string(),
            epoch: 9,
        })
    }

    /// A log holding our marker, opened for appending as a shard does.
    fn our_log(dir: &std::path::Path) -> (std::path::PathBuf, File, u64) {
        let path = dir.join("log");
        std::fs::write(&path, marker("a/1")).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        let end = file.metadata().unwrap().len();
        (path, file, end)
    }

    #[tokio::test]
    async fn a_batch_after_another_owners_marker_is_void_and_stops_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file, end) = our_log(dir.path());
        let c = Committer::start(file, 1, fence("a/1", end));
        c.queue(2, b"{\"mine\":2}\n".to_vec()).unwrap();
        c.wait(2).await.unwrap();
        // The new owner appends its marker through its own handle.
        let mut theirs = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        theirs.write_all(&marker("b/1")).unwrap();
        c.queue(3, b"{\"mine\":3}\n".to_vec()).unwrap();
        assert_eq!(c.wait(3).await, Err(CommitFailed::Superseded));
        assert_eq!(c.wait(2).await, Ok(()), "what was durable stays so");
        assert!(c.queue(4, b"x\n".to_vec()).is_err() || c.wait(4).await.is_err());
    }

    #[tokio::test]
    async fn a_marker_after_our_batch_or_our_own_lines_void_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file, end) = our_log(dir.path());
        // A stale line of ours from an earlier handle counts as ours.
        let mut again = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        again.write_all(&marker("a/1")).unwrap();
        let c = Committer::start(file, 1, fence("a/1", end));
        c.queue(2, b"{\"mine\":2}\n".to_vec()).unwrap();
        assert_eq!(c.wait(2).await, Ok(()));
        // Taken over only after our line: that line was replayed by the new owner.
        again.write_all(&marker("b/1")).unwrap();
        assert_eq!(c.wait(2).await, Ok(()));
    }
}
