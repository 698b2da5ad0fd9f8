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

/// Whether another owner's `acquire` marker lies between our previous line
/// (`fence.end`) and our batch at `start`.
pub fn foreign_marker(file: &File, fence: &Fence, start: u64) -> std::io::Result<bool> {
    if start <= fence.end {
        return Ok(false);
    }
    let gap = start - fence.end;
    if gap > MAX_FOREIGN {
        return Ok(true);
    }
    // The gap is usually one batch of ours; read it in one positional read
    // (the append offset stays untouched).
    let mut gap_bytes = vec![0; gap as usize];
    file.read_exact_at(&mut gap_bytes, fence.end)?;
    let superseded = gap_bytes
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
    Ok(superseded)
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
