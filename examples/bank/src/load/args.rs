//! The `bank-load` command line.

use std::path::PathBuf;
use std::time::Duration;

use crate::load::workload::Mix;

/// Most requests one run may send (records stay in memory until verification).
pub const MAX_REQUESTS_CAP: u64 = 2_000_000;
/// Most concurrent workers.
const MAX_CONCURRENCY: usize = 1024;
/// Most accounts.
const MAX_ACCOUNTS: u32 = 1_000_000;

/// Settings of one `bank-load` run.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// Base URLs, used round-robin (outbound sidecars, or the app in standalone mode).
    pub targets: Vec<String>,
    /// How long the load phase runs at most.
    pub duration: Duration,
    /// How many requests the load phase sends at most.
    pub max_requests: u64,
    /// Concurrent workers.
    pub concurrency: usize,
    /// Number of accounts (`<prefix>-0` … `<prefix>-(K-1)`).
    pub accounts: u32,
    /// Account name prefix.
    pub prefix: String,
    /// Seed of the operation sequence.
    pub seed: u64,
    /// Weights of the operation kinds.
    pub mix: Mix,
    /// Where to write the JSON summary.
    pub json: Option<PathBuf>,
    /// Deadline of one request.
    pub timeout: Duration,
    /// Run id, part of every op id (default: from the clock, so runs never collide).
    pub run_id: String,
    /// Attempts to resolve one ambiguous operation.
    pub resolve_attempts: u32,
    /// Time budget of the resolve phase (and of the final reads).
    pub resolve_timeout: Duration,
    /// Acknowledged writes re-sent at the end to check they keep their first answer.
    pub replay: usize,
    /// Print a progress line to stderr every second of the load phase.
    pub progress: bool,
    /// Shards whose requests are counted apart (`--watch-shards N:S1,...`).
    pub watch: Option<crate::load::groups::Watch>,
}

/// Usage text of `bank-load`.
pub const USAGE: &str = "usage: bank-load --target URL [--target URL ...] [--duration SECS] \
[--max-requests N] [--concurrency C] [--accounts K] [--account-prefix P] [--seed S] \
[--mix deposit=40,withdraw=20,transfer=20,balance=20] [--json FILE] [--timeout-ms MS] \
[--run-id ID] [--resolve-attempts N] [--resolve-timeout SECS] [--replay N] [--progress] \
[--watch-shards N:S1,S2,...]";

// === impl LoadConfig ===

impl LoadConfig {
    /// Parses flags (`args` without the program name).
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut c = LoadConfig {
            targets: Vec::new(),
            duration: Duration::from_secs(10),
            max_requests: 1_000_000,
            concurrency: 16,
            accounts: 100,
            prefix: "acct".to_string(),
            seed: 1,
            mix: Mix::default(),
            json: None,
            timeout: Duration::from_secs(10),
            run_id: default_run_id(),
            resolve_attempts: 30,
            resolve_timeout: Duration::from_secs(60),
            replay: 100,
            progress: false,
            watch: None,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--progress" {
                c.progress = true;
                continue;
            }
            let v = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
            let v = match flag.as_str() {
                "-h" | "--help" => return Err(USAGE.to_string()),
                _ => v?,
            };
            match flag.as_str() {
                "--target" => c.targets.push(target(v)?),
                "--duration" => c.duration = secs(flag, v)?,
                "--max-requests" => c.max_requests = num(flag, v, 1, MAX_REQUESTS_CAP)?,
                "--concurrency" => {
                    c.concurrency = num(flag, v, 1, MAX_CONCURRENCY as u64)? as usize
                }
                "--accounts" => c.accounts = num(flag, v, 2, u64::from(MAX_ACCOUNTS))? as u32,
                "--account-prefix" => c.prefix = id(flag, v)?,
                "--seed" => c.seed = num(flag, v, 0, u64::MAX)?,
                "--mix" => c.mix = Mix::parse(v)?,
                "--json" => c.json = Some(PathBuf::from(v)),
                "--timeout-ms" => c.timeout = Duration::from_millis(num(flag, v, 1, 600_000)?),
                "--run-id" => c.run_id = id(flag, v)?,
                "--resolve-attempts" => c.resolve_attempts = num(flag, v, 1, 10_000)? as u32,
                "--resolve-timeout" => c.resolve_timeout = secs(flag, v)?,
                "--replay" => c.replay = num(flag, v, 0, 100_000)? as usize,
                "--watch-shards" => c.watch = Some(crate::load::groups::Watch::parse(v)?),
                other => return Err(format!("unknown flag {other}\n{USAGE}")),
            }
        }
        if c.targets.is_empty() {
            return Err(format!("at least one --target is needed\n{USAGE}"));
        }
        Ok(c)
    }
}

fn target(v: &str) -> Result<String, String> {
    let t = v.trim_end_matches('/');
    let ok = t
        .strip_prefix("http://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
    if ok {
        Ok(t.to_string())
    } else {
        Err(format!("--target {v}: expected http://HOST:PORT"))
    }
}

fn num(flag: &str, v: &str, min: u64, max: u64) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{flag} {v}: expected an integer in {min}..={max}")),
    }
}

fn secs(flag: &str, v: &str) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{flag} {v}: expected seconds in (0, 86400]")),
    }
}

fn id(flag: &str, v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 40
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!("{flag} {v}: expected 1..=40 of A-Z a-z 0-9 - _"))
    }
}

fn default_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("r{:x}{:x}", nanos & 0xffff_ffff_ffff, std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_a_full_command_line() {
        let c = LoadConfig::parse(&args(
            "--target http://127.0.0.1:7400/ --target http://127.0.0.2:7400 --duration 2.5 \
             --max-requests 500 --concurrency 4 --accounts 10 --seed 7 \
             --mix deposit=1,withdraw=0,transfer=0,balance=1 --run-id t1",
        ))
        .unwrap();
        assert_eq!(
            c.targets,
            vec!["http://127.0.0.1:7400", "http://127.0.0.2:7400"]
        );
        assert_eq!(c.duration, Duration::from_millis(2500));
        assert_eq!(
            (c.max_requests, c.concurrency, c.accounts, c.seed),
            (500, 4, 10, 7)
        );
        assert_eq!(c.run_id, "t1");
    }

    #[test]
    fn rejects_bad_input_clearly() {
        for bad in [
            "",
            "--target ftp://x",
            "--target http://x --concurrency 0",
            "--target http://x --duration -1",
            "--target http://x --accounts 1",
            "--target http://x --mix deposit=0",
            "--target http://x --run-id a/b",
            "--target http://x --max-requests 99999999",
            "--target",
        ] {
            assert!(LoadConfig::parse(&args(bad)).is_err(), "{bad}");
        }
    }
}
