//! Ownership benchmark: movement, balance and speed of `assign`.
//!
//! Run: `cargo run --release -p shardmesh-shards --example shards_bench`
//! and paste the table into `docs/benchmarks/shards.md`.
//!
//! For each (members, shards) it reports the time of one `assign` (median
//! of several runs), the smallest and largest load against
//! `floor(shards / members)` and `ceil(shards / members)`, and the
//! moved-shards ratio (moved / minimum for a balanced result) over several
//! single joins and single leaves of random members.

use std::time::{Duration, Instant};

use shardmesh_shards::{assign, MemberId};

/// Joins and leaves sampled per cell.
const TRIALS: usize = 8;

fn main() {
    println!("| members | shards | assign time | load min–max (floor, cap) | join moved/min (mean, worst) | leave moved/min (mean, worst) |");
    println!("| ---: | ---: | ---: | :---: | ---: | ---: |");
    for members in [3usize, 5, 10, 30, 100] {
        for shards in [30u32, 100, 1_000, 10_000] {
            row(members, shards);
        }
    }
}

fn row(n: usize, shards: u32) {
    let mut times = Vec::new();
    let mut max_load = 0;
    let mut min_load = u32::MAX;
    let (mut join, mut leave) = (Ratios::default(), Ratios::default());
    for trial in 0..TRIALS {
        let all: Vec<MemberId> = (0..=n)
            .map(|i| MemberId::new(format!("svc{trial}-{i}")))
            .collect();
        let before = &all[..n];
        let start = Instant::now();
        let a = assign(shards, before);
        times.push(start.elapsed());
        max_load = max_load.max(a.loads().into_iter().max().unwrap_or(0));
        min_load = min_load.min(a.loads().into_iter().min().unwrap_or(0));
        let joined = assign(shards, &all);
        join.add(joined.moved(&a), a.min_moves(&all));
        if n > 1 {
            let after: Vec<MemberId> = before.iter().skip(1).cloned().collect();
            let left = assign(shards, &after);
            leave.add(left.moved(&a), a.min_moves(&after));
        }
    }
    times.sort();
    let median = times
        .get(times.len() / 2)
        .copied()
        .unwrap_or(Duration::ZERO);
    let cap = shards.div_ceil(n as u32);
    let floor = shards / n as u32;
    println!(
        "| {n} | {shards} | {:.2} ms | {min_load}–{max_load} ({floor}, {cap}) | {} | {} |",
        median.as_secs_f64() * 1e3,
        join.show(),
        leave.show()
    );
}

/// Moved-to-minimum ratios of one table cell.
#[derive(Default)]
struct Ratios {
    sum: f64,
    worst: f64,
    count: u32,
    /// Changes whose minimum is 0 (nothing had to move) and moves made then.
    free: u32,
    free_moved: u32,
}

impl Ratios {
    fn add(&mut self, moved: u32, min: u32) {
        if min == 0 {
            self.free += 1;
            self.free_moved += moved;
            return;
        }
        let r = f64::from(moved) / f64::from(min);
        self.sum += r;
        self.worst = self.worst.max(r);
        self.count += 1;
    }

    fn show(&self) -> String {
        let mut s = if self.count == 0 {
            "n/a".to_string()
        } else {
            format!("{:.2}, {:.2}", self.sum / f64::from(self.count), self.worst)
        };
        if self.free > 0 {
            s.push_str(&format!(
                " (min 0 in {}: moved {})",
                self.free, self.free_moved
            ));
        }
        s
    }
}
