//! A shard's append-only event log on disk: open (repair, fence, replay).
//!
//! File: `<data dir>/shard-<id>.log`, one JSON [`Event`] per line. Opening a
//! shard for a new owner term:
//! 1. a torn last line (no newline: a crash mid-append) is cut off; any other
//!    undecodable line is a [`JournalError::Corrupt`] error naming file and line;
//! 2. an `acquire` marker with the new owner token is appended and fsync'd;
//! 3. the whole file is replayed. After each `acquire` marker only lines
//!    written by that owner count, so lines a superseded owner appended after
//!    the takeover are ignored — now and on every later replay.
//!
//! Appends after opening go through [`crate::committer`] (group commit).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::event::Event;
use crate::ledger::Ledger;

/// Longest line accepted in a log; a longer one is corruption, not a reason to use unbounded memory.
pub const MAX_LINE: usize = 64 * 1024;

/// Why a log could not be opened.
#[derive(Debug)]
pub enum JournalError {
    /// The file system refused.
    Io {
        /// The log file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A complete line is not a valid event, or does not fit the state.
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Another owner acquired the shard after our marker: we must not serve it.
    Superseded {
        /// The log file.
        path: PathBuf,
    },
}

/// A shard log opened for one owner term: the file to append to and the replayed state.
#[derive(Debug)]
pub struct Opened {
    /// The file, opened for appending.
    pub file: File,
    /// State replayed from the log.
    pub ledger: Ledger,
    /// Sequence number of the last replayed event (appends continue after it).
    pub last_seq: u64,
    /// Lines ignored because a superseded owner wrote them.
    pub fenced_lines: u64,
    /// Offset just past our `acquire` marker: where our lines start.
    pub end: u64,
}

/// What a scan of a log found.
#[derive(Debug, Default)]
struct Scan {
    /// Length of the file up to the end of the last complete line.
    good_len: u64,
    /// A partial last line was found (and not decoded).
    torn: bool,
}

// === impl JournalError ===

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JournalError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            JournalError::Corrupt { path, line, reason } => {
                write!(f, "{}:{line}: corrupt event log: {reason}", path.display())
            }
            JournalError::Superseded { path } => {
                write!(f, "{}: shard acquired by a newer owner", path.display())
            }
        }
    }
}

impl std::error::Error for JournalError {}

/// Path of the log of `shard` under `dir`.
pub fn log_path(dir: &Path, shard: u32) -> PathBuf {
    dir.join(format!("shard-{shard}.log"))
}

/// Opens the log of a shard for owner term `owner` at `epoch` (blocking I/O).
pub fn open(path: &Path, owner: &str, epoch: u64) -> Result<Opened, JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let scan = replay(path, &mut Ledger::default(), None)?;
    if scan.torn {
        file.set_len(scan.good_len).map_err(io)?;
    }
    let marker = Event::Acquire {
        owner: owner.to_string(),
        epoch,
    };
    file.write_all(&encode(&marker)).map_err(io)?;
    // Appends leave the offset just past them.
    let end = file.stream_position().map_err(io)?;
    file.sync_data().map_err(io)?;
    // Make the file's directory entry durable too (it may have just been created).
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    let mut ledger = Ledger::default();
    let mut state = ReplayState::default();
    replay(path, &mut ledger, Some(&mut state))?;
    if state.owner.as_deref() != Some(owner) {
        return Err(JournalError::Superseded {
            path: path.to_path_buf(),
        });
    }
    Ok(Opened {
        file,
        ledger,
        last_seq: state.seq,
        fenced_lines: state.fenced,
        end,
    })
}

/// One event as a log line (JSON + newline).
pub fn encode(event: &Event) -> Vec<u8> {
    // Serializing a plain enum of strings and integers cannot fail.
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Owner fencing state carried through a replay.
#[derive(Debug, Default)]
struct ReplayState {
    /// Owner of the latest `acquire` marker seen.
    owner: Option<String>,
    /// Events applied so far (their sequence numbers are 1..=seq).
    seq: u64,
    /// Data lines skipped because their owner was superseded.
    fenced: u64,
}

/// Reads the log, applying events to `ledger` when `state` is given
/// (otherwise only checks that every complete line decodes).
fn replay(
    path: &Path,
    ledger: &mut Ledger,
    mut state: Option<&mut ReplayState>,
) -> Result<Scan, JournalError> {
    let file = File::open(path).map_err(|source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let mut scan = Scan::default();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| JournalError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            return Ok(scan);
        }
        line_no += 1;
        let corrupt = |reason: String| JournalError::Corrupt {
            path: path.to_path_buf(),
            line: line_no,
            reason,
        };
        if buf.last() != Some(&b'\n') {
            if n > MAX_LINE {
                return Err(corrupt(format!("line longer than {MAX_LINE} bytes")));
            }
            // End of file inside a line: the write that made it never completed.
            scan.torn = true;
            return Ok(scan);
        }
        scan.good_len += n as u64;
        let event: Event =
            serde_json::from_slice(&buf).map_err(|e| corrupt(format!("not an event: {e}")))?;
        let Some(state) = state.as_deref_mut() else {
            continue;
        };
        match (&event, event.data_owner()) {
            (Event::Acquire { owner, .. }, _) => state.owner = Some(owner.clone()),
            (_, Some(writer)) if state.owner.as_deref() != Some(writer) => {
                state.fenced += 1;
                continue;
            }
            _ => {}
        }
        state.seq += 1;
        ledger.apply(&event, state.seq).map_err(|e| corrupt(e.0))?;
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
