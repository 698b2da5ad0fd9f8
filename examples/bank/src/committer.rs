//! Group commit: one task per shard appends queued log lines and fsyncs them.
//!
//! Writers queue `(seq, line)` in sequence order and wait until the durable
//! sequence number reaches theirs. The task writes everything queued so far in
//! one `write` and one `fdatasync`, so many concurrent writes share one fsync.
//! No answer is sent before its event is on disk. After an I/O error the
//! committer stops for good: every waiter past the last durable line gets an
//! error, and the shard must be re-acquired (which replays the log).

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Most bytes written in one batch; keeps a batch's buffer bounded.
const MAX_BATCH: usize = 1024 * 1024;

/// How far the log is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Durable {
    /// Every event up to this sequence number is fsync'd.
    seq: u64,
    /// The committer hit an I/O error and stopped.
    failed: bool,
}

/// The log could not be made durable; the outcome of the write is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitFailed;

/// Handle to the group-commit task of one shard log.
#[derive(Debug)]
pub struct Committer {
    /// Queue of encoded lines; unbounded in type, bounded by the app's request limit.
    tx: Option<mpsc::UnboundedSender<(u64, Vec<u8>)>>,
    /// Durable progress published by the task.
    durable: watch::Receiver<Durable>,
    /// The task, joined on close.
    task: Option<JoinHandle<()>>,
}

// === impl Committer ===

impl Committer {
    /// Starts the task for `file`, whose events up to `last_seq` are already durable.
    pub fn start(file: File, last_seq: u64) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (durable_tx, durable) = watch::channel(Durable {
            seq: last_seq,
            failed: false,
        });
        let task = tokio::spawn(run(Arc::new(file), rx, durable_tx));
        Committer {
            tx: Some(tx),
            durable,
            task: Some(task),
        }
    }

    /// Queues line `seq`; callers queue in increasing `seq` order.
    pub fn queue(&self, seq: u64, line: Vec<u8>) -> Result<(), CommitFailed> {
        match &self.tx {
            Some(tx) => tx.send((seq, line)).map_err(|_| CommitFailed),
            None => Err(CommitFailed),
        }
    }

    /// Waits until event `seq` is durable.
    pub async fn wait(&self, seq: u64) -> Result<(), CommitFailed> {
        let mut rx = self.durable.clone();
        let reached = rx
            .wait_for(|d| d.seq >= seq || d.failed)
            .await
            .map_err(|_| CommitFailed)?;
        if reached.seq >= seq {
            Ok(())
        } else {
            Err(CommitFailed)
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
        let written = tokio::task::spawn_blocking(move || {
            (&*file).write_all(&batch)?;
            file.sync_data()
        })
        .await;
        match written {
            Ok(Ok(())) => {
                durable.send_replace(Durable {
                    seq: last,
                    failed: false,
                });
            }
            _ => {
                durable.send_modify(|d| d.failed = true);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queued_lines_become_durable_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut c = Committer::start(file, 10);
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
        let c = Committer::start(file, 0);
        c.queue(1, b"a\n".to_vec()).unwrap();
        assert_eq!(c.wait(1).await, Err(CommitFailed));
        assert_eq!(c.wait(2).await, Err(CommitFailed));
    }
}
