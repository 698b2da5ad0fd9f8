//! Prints the gossip benchmark tables (docs/benchmarks/gossip.md).
//!
//! ```text
//! cargo run --release -p shardmesh-gossip --bin gossip-bench -- \
//!     --n 10,100,1000 --seeds 100 --fp-seeds 10 --fp-minutes 10 --variants lifeguard,foca
//! ```
//! Every run is seeded; the same arguments print the same numbers.
//!
//! False-positive runs at N = 1,000 cost minutes of CPU per seed, so they can
//! be split: `--fp-first-seed 40 --fp-seeds 10 --fp-scenarios Loss10OneWay,Starved`
//! runs seeds 40..50 of two scenarios and also prints one line per seed
//! (`fp-seed N VARIANT SCENARIO SEED downed verdicts impaired_downed
//! impaired_declared bytes_per_member_s`), which add up across runs.

use std::time::{Duration, Instant};

use shardmesh_gossip::sim::bench::{self, mean, percentile, Report, Scenario};
use shardmesh_gossip::Timing;

struct Args {
    sizes: Vec<usize>,
    seeds: u64,
    fp_seeds: u64,
    fp_first_seed: u64,
    fp_scenarios: Option<Vec<String>>,
    fp_minutes: u64,
    variants: Vec<String>,
    only: Vec<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        sizes: vec![10, 100, 1000],
        seeds: 100,
        fp_seeds: 10,
        fp_first_seed: 0,
        fp_scenarios: None,
        fp_minutes: 10,
        variants: vec!["lifeguard".into(), "foca".into()],
        only: vec![
            "crash".into(),
            "fp".into(),
            "join".into(),
            "update".into(),
            "heal".into(),
        ],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let list = || value.split(',').map(str::to_owned).collect::<Vec<_>>();
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--n" => {
                a.sizes = list()
                    .iter()
                    .map(|v| num(v).map(|x| x as usize))
                    .collect::<Result<_, _>>()?
            }
            "--seeds" => a.seeds = num(&value)?,
            "--fp-seeds" => a.fp_seeds = num(&value)?,
            "--fp-first-seed" => a.fp_first_seed = num(&value)?,
            "--fp-scenarios" => a.fp_scenarios = Some(list()),
            "--fp-minutes" => a.fp_minutes = num(&value)?,
            "--variants" => a.variants = list(),
            "--only" => a.only = list(),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.sizes.iter().any(|n| *n < 4) {
        return Err("--n: clusters need at least 4 members".into());
    }
    Ok(a)
}

fn timing(variant: &str) -> Timing {
    let mut t = Timing::lan();
    t.lifeguard = variant == "lifeguard";
    t
}

fn f(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{x:.2}")
    }
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gossip-bench: {e}");
            std::process::exit(2);
        }
    };
    let wall = Instant::now();
    let has = |s: &str| args.only.iter().any(|o| o == s);
    if has("crash") {
        println!("\n## Crash detection (probe 1 s, timeout 0.5 s, 3 indirect; times in s after the crash)\n");
        println!("| N | variant | scenario | seeds | first suspect mean | stop routing p99 | down p50 | down p99 | all down mean | all down p99 | missed |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for &n in &args.sizes {
            for v in &args.variants {
                for sc in [Scenario::Clean, Scenario::Loss10] {
                    let t0 = Instant::now();
                    let mut r = Report::default();
                    for seed in 0..args.seeds {
                        bench::crash_detection(n, &timing(v), sc, seed, &mut r);
                    }
                    println!(
                        "| {n} | {v} | {sc:?} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        args.seeds,
                        f(mean(&r.first_suspect)),
                        f(percentile(&r.stop_routing, 0.99)),
                        f(percentile(&r.down, 0.5)),
                        f(percentile(&r.down, 0.99)),
                        f(mean(&r.all_down)),
                        f(percentile(&r.all_down, 0.99)),
                        r.missed
                    );
                    eprintln!(
                        "crash n={n} {v} {sc:?}: {:?}, hash {:016x}",
                        t0.elapsed(),
                        r.first_hash
                    );
                }
            }
        }
    }
    if has("fp") {
        println!(
            "\n## False positives ({} simulated minutes × {} seeds; impaired member = node 1)\n",
            args.fp_minutes, args.fp_seeds
        );
        println!("| N | variant | scenario | live members downed | verdicts | per member-hour | impaired downed | downs declared by impaired | sent B/member/s mean |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for &n in &args.sizes {
            for v in &args.variants {
                for sc in [
                    Scenario::Clean,
                    Scenario::Loss10OneWay,
                    Scenario::GcPause,
                    Scenario::SlowOutbound,
                    Scenario::Starved,
                ] {
                    let wanted = args
                        .fp_scenarios
                        .as_ref()
                        .is_none_or(|names| names.iter().any(|name| *name == format!("{sc:?}")));
                    if !wanted {
                        continue;
                    }
                    let t0 = Instant::now();
                    let mut r = Report::default();
                    let first = args.fp_first_seed;
                    for seed in first..first + args.fp_seeds {
                        let mut one = Report::default();
                        bench::false_positives(n, &timing(v), sc, args.fp_minutes, seed, &mut one);
                        eprintln!(
                            "fp-seed {n} {v} {sc:?} {seed} {} {} {} {} {}",
                            one.false_downs,
                            one.false_verdicts,
                            one.impaired_downed,
                            one.impaired_declared,
                            f(mean(&one.bytes_per_member_s))
                        );
                        r.absorb(one);
                    }
                    println!(
                        "| {n} | {v} | {sc:?} | {} | {} | {} | {} | {} | {} |",
                        r.false_downs,
                        r.false_verdicts,
                        f(r.false_downs as f64 / (r.fp_member_seconds / 3600.0)),
                        r.impaired_downed,
                        r.impaired_declared,
                        f(mean(&r.bytes_per_member_s))
                    );
                    eprintln!("fp n={n} {v} {sc:?}: {:?}", t0.elapsed());
                }
            }
        }
    }
    if has("join") || has("update") {
        println!(
            "\n## Join convergence and update propagation (s; {} seeds)\n",
            args.seeds
        );
        println!("| N | variant | scenario | join p50 | join p99 | update p50 | update p99 | runs without result |");
        println!("|---|---|---|---|---|---|---|---|");
        for &n in &args.sizes {
            for v in &args.variants {
                for sc in [Scenario::Loss1, Scenario::Loss10] {
                    let mut r = Report::default();
                    for seed in 0..args.seeds {
                        if has("join") {
                            bench::join_convergence(n, &timing(v), sc, seed, &mut r);
                        }
                        if has("update") {
                            bench::update_propagation(n, &timing(v), sc, seed, &mut r);
                        }
                    }
                    let expected = args.seeds as usize
                        * (usize::from(has("join")) + usize::from(has("update")));
                    println!(
                        "| {n} | {v} | {sc:?} | {} | {} | {} | {} | {} |",
                        f(percentile(&r.join, 0.5)),
                        f(percentile(&r.join, 0.99)),
                        f(percentile(&r.update, 0.5)),
                        f(percentile(&r.update, 0.99)),
                        expected - r.join.len() - r.update.len()
                    );
                }
            }
        }
    }
    if has("heal") {
        let seeds = args.fp_seeds.max(1);
        println!("\n## Partition (30 % cut for 20 s) heal time (s; {seeds} seeds)\n");
        println!("| N | variant | heal p50 | heal max | never healed |");
        println!("|---|---|---|---|---|");
        for &n in &args.sizes {
            for v in &args.variants {
                let mut r = Report::default();
                for seed in 0..seeds {
                    bench::partition_heal(n, &timing(v), seed, &mut r);
                }
                println!(
                    "| {n} | {v} | {} | {} | {} |",
                    f(percentile(&r.heal, 0.5)),
                    f(percentile(&r.heal, 1.0)),
                    seeds as usize - r.heal.len()
                );
            }
        }
    }
    eprintln!("wall time {:?}", wall.elapsed());
    let _ = Duration::ZERO;
}
