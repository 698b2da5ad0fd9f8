//! Fencing a shard log shared by several owner terms: did another owner's
//! `acquire` marker land before a batch of ours? If so the batch is void
//! (replays ignore it), and its writes must not be acknowledged.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::event::Event;

/// Where this owner term's lines end in the shared log, and whose they are.
#[derive(Debug, Clone)]
pub struct Fence {
    /// Owner term token written on every line of ours.
    pub owner: String,
    /// Offset just past our last line (our `acquire` marker at first).
    pub end: u64,
}

/// Most bytes of other owners' lines read between two batches of ours;
/// more than that is taken as a takeover (it can only be one).
const MAX_FOREIGN: u64 = 16 * 1024 * 1024;

/// How every `acquire` marker line starts.
const MARKER_PREFIX: &[u8] = b"{\"t\":\"acquire\"";

/// Scans the log from our previous line (`fence.end`) to `to` for another
/// owner's `acquire` marker: `None` if there is one (we are superseded),
/// otherwise the offset just past the last complete line scanned, up to
/// which the log is known clean (a line still being appended is left for
/// the next scan).
pub fn scan_for_marker(file: &File, fence: &Fence, to: u64) -> std::io::Result<Option<u64>> {
    if to <= fence.end {
        return Ok(Some(fence.end));
    }
    let gap = to - fence.end;
    if gap > MAX_FOREIGN {
        return Ok(None);
    }
    // The gap is usually one batch of ours; read it in one positional read
    // (the append offset stays untouched).
    let mut gap_bytes = vec![0; gap as usize];
    file.read_exact_at(&mut gap_bytes, fence.end)?;
    let complete = gap_bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let superseded = gap_bytes[..complete]
        .split(|b| *b == b'\n')
        // Markers are written by `journal::encode`, tag first: skip the
        // data lines without parsing them.
        .filter(|line| line.starts_with(MARKER_PREFIX))
        .any(|line| {
            matches!(
                serde_json::from_slice::<Event>(line),
                Ok(Event::Acquire { owner, .. }) if owner != fence.owner
            )
        });
    Ok((!superseded).then_some(fence.end + complete as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_start_with_the_prefix_the_scan_looks_for() {
        let line = crate::journal::encode(&Event::Acquire {
            owner: "b/1".into(),
            epoch: 3,
        });
        assert!(line.starts_with(MARKER_PREFIX));
    }
}
