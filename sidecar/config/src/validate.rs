//! Checks a configuration once at start, naming every bad field.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::model::*;
use crate::template::PathTemplate;
use crate::FieldError;

/// Largest shard count a service may have; keeps tables bounded.
pub const MAX_SHARDS: u32 = 65_536;

/// Collects every problem in `config`; an empty list means valid.
pub fn validate(config: &SidecarConfig) -> Vec<FieldError> {
    let mut errs = Errors::default();
    if config.pod.name.is_empty() {
        errs.push("pod.name", "is required (or set SHARDMESH_POD_NAME)");
    } else {
        check_name(&mut errs, "pod.name", &config.pod.name);
    }
    if config.pod.service.is_empty() {
        errs.push("pod.service", "is required (or set SHARDMESH_SERVICE)");
    } else {
        check_name(&mut errs, "pod.service", &config.pod.service);
    }
    for (field, addr) in [
        ("listeners.outbound", &config.listeners.outbound),
        ("listeners.inbound", &config.listeners.inbound),
        ("listeners.admin", &config.listeners.admin),
        ("listeners.gossip", &config.listeners.gossip),
    ] {
        if addr.parse::<SocketAddr>().is_err() {
            errs.push(field, format!("{addr:?} is not an IP:port listen address"));
        }
    }
    check_host_port(&mut errs, "app.address", &config.app.address);
    if let Some(t) = &config.tracing {
        let scheme_ok = t.endpoint.starts_with("http://") || t.endpoint.starts_with("https://");
        if !scheme_ok {
            errs.push(
                "tracing.endpoint",
                format!("{:?} is not an http:// or https:// URL", t.endpoint),
            );
        }
        if !(0.0..=1.0).contains(&t.sampling_ratio) {
            errs.push("tracing.samplingRatio", "must be between 0.0 and 1.0");
        }
        if t.queue_size == 0 || t.batch_size == 0 {
            errs.push(
                "tracing.queueSize",
                "queueSize and batchSize must be at least 1",
            );
        }
    }

    let mut names = BTreeSet::new();
    for (i, service) in config.services.iter().enumerate() {
        let at = format!("services[{i}]");
        if !names.insert(service.name.as_str()) {
            errs.push(
                format!("{at}.name"),
                format!("duplicate service {:?}", service.name),
            );
        }
        validate_service(&mut errs, &at, service);
    }
    validate_gossip(&mut errs, &config.membership);
    let limits = &config.limits;
    if !(1024..=1024 * 1024).contains(&limits.max_header_bytes) {
        errs.push("limits.maxHeaderBytes", "must be between 1024 and 1048576");
    }
    if limits.header_read_timeout_ms < 100 {
        errs.push("limits.headerReadTimeoutMs", "must be at least 100");
    }
    if limits.max_connections == 0 {
        errs.push("limits.maxConnections", "must be at least 1");
    }
    if limits.max_request_body_bytes == 0 {
        errs.push("limits.maxRequestBodyBytes", "must be at least 1");
    }
    if let Some(tls) = &config.tls {
        crate::tls::validate_tls(&mut errs, tls);
    }
    if config.log.level.trim().is_empty() {
        errs.push("log.level", "must not be empty");
    }
    errs.0
}

/// Checks one service entry; `at` is its field path such as `services[0]`.
pub fn validate_service(errs: &mut Errors, at: &str, service: &ServiceConfig) {
    check_name(errs, &format!("{at}.name"), &service.name);
    if service.shards == 0 || service.shards > MAX_SHARDS {
        errs.push(
            format!("{at}.shards"),
            format!("must be between 1 and {MAX_SHARDS}"),
        );
    }
    if http_header_name_ok(&service.routing.key_header).is_err() {
        errs.push(
            format!("{at}.routing.keyHeader"),
            format!(
                "{:?} is not a valid lowercase header name",
                service.routing.key_header
            ),
        );
    }
    if let Some(t) = &service.routing.key_from_path {
        if let Err(e) = PathTemplate::parse(t) {
            errs.push(format!("{at}.routing.keyFromPath"), format!("{t:?} {e}"));
        }
    }
    validate_resilience(errs, &format!("{at}.resilience"), &service.resilience);

    let mut members = BTreeSet::new();
    let mut assigned = BTreeSet::new();
    let mut any_assigned = false;
    for (j, m) in service.members.iter().enumerate() {
        let mat = format!("{at}.members[{j}]");
        check_name(errs, &format!("{mat}.name"), &m.name);
        if !members.insert(m.name.as_str()) {
            errs.push(
                format!("{mat}.name"),
                format!("duplicate member {:?}", m.name),
            );
        }
        check_host_port(errs, &format!("{mat}.inbound"), &m.inbound);
        if let Some(admin) = &m.admin {
            check_host_port(errs, &format!("{mat}.admin"), admin);
        }
        if let Some(shards) = &m.shards {
            any_assigned = true;
            for &s in shards {
                if s >= service.shards {
                    errs.push(
                        format!("{mat}.shards"),
                        format!("shard {s} is out of range 0..{}", service.shards),
                    );
                } else if !assigned.insert(s) {
                    errs.push(
                        format!("{mat}.shards"),
                        format!("shard {s} is assigned twice"),
                    );
                }
            }
        }
    }
    if any_assigned && (assigned.len() as u64) < u64::from(service.shards) {
        let missing = (0..service.shards)
            .find(|s| !assigned.contains(s))
            .unwrap_or(0);
        errs.push(
            format!("{at}.members"),
            format!(
                "static shard assignment leaves {} of {} shards unowned (first: {missing})",
                u64::from(service.shards) - assigned.len() as u64,
                service.shards
            ),
        );
    }
}

/// Checks a resilience policy; shared with the operator's CRD validation.
pub fn validate_resilience(errs: &mut Errors, at: &str, p: &ResiliencePolicy) {
    let t = &p.timeouts;
    if t.request_ms == 0 || t.request_ms > 3_600_000 {
        errs.push(
            format!("{at}.timeouts.requestMs"),
            "must be between 1 and 3600000",
        );
    }
    if let Some(per_try) = t.per_try_ms {
        if per_try == 0 || per_try > t.request_ms {
            errs.push(
                format!("{at}.timeouts.perTryMs"),
                "must be between 1 and requestMs",
            );
        }
    }
    let r = &p.retries;
    if !(1..=10).contains(&r.attempts) {
        errs.push(format!("{at}.retries.attempts"), "must be between 1 and 10");
    }
    if r.backoff_base_ms == 0 || r.backoff_base_ms > r.backoff_max_ms {
        errs.push(
            format!("{at}.retries.backoffBaseMs"),
            "must be at least 1 and at most backoffMaxMs",
        );
    }
    if r.budget_percent > 1000 {
        errs.push(
            format!("{at}.retries.budgetPercent"),
            "must be at most 1000",
        );
    }
    // tower's retry budget accepts windows of 1 to 60 s.
    if !(1..=60).contains(&r.budget_window_seconds) {
        errs.push(
            format!("{at}.retries.budgetWindowSeconds"),
            "must be between 1 and 60",
        );
    }
    if r.max_replay_body_bytes > 16 * 1024 * 1024 {
        errs.push(
            format!("{at}.retries.maxReplayBodyBytes"),
            "must be at most 16777216",
        );
    }
    let b = &p.breaker;
    if b.consecutive_failures == 0 {
        errs.push(
            format!("{at}.breaker.consecutiveFailures"),
            "must be at least 1",
        );
    }
    if !(1..=100).contains(&b.failure_percent) {
        errs.push(
            format!("{at}.breaker.failurePercent"),
            "must be between 1 and 100",
        );
    }
    if b.min_requests == 0 {
        errs.push(format!("{at}.breaker.minRequests"), "must be at least 1");
    }
    if !(1..=600).contains(&b.window_seconds) {
        errs.push(
            format!("{at}.breaker.windowSeconds"),
            "must be between 1 and 600",
        );
    }
    if b.open_ms == 0 || b.open_ms > b.max_open_ms {
        errs.push(
            format!("{at}.breaker.openMs"),
            "must be at least 1 and at most maxOpenMs",
        );
    }
    let bp = &p.backpressure;
    if bp.max_concurrency == 0 || bp.max_concurrency > 100_000 {
        errs.push(
            format!("{at}.backpressure.maxConcurrency"),
            "must be between 1 and 100000",
        );
    }
    if bp.queue_size > 100_000 {
        errs.push(
            format!("{at}.backpressure.queueSize"),
            "must be at most 100000",
        );
    }
    if p.bulkhead.max_pending == 0 || p.bulkhead.max_pending > 1_000_000 {
        errs.push(
            format!("{at}.bulkhead.maxPending"),
            "must be between 1 and 1000000",
        );
    }
}

fn validate_gossip(errs: &mut Errors, m: &MembershipConfig) {
    let g = &m.gossip;
    if g.probe_interval_ms < 10 {
        errs.push("membership.gossip.probeIntervalMs", "must be at least 10");
    }
    if g.probe_timeout_ms == 0 || g.probe_timeout_ms >= g.probe_interval_ms {
        errs.push(
            "membership.gossip.probeTimeoutMs",
            "must be at least 1 and less than probeIntervalMs",
        );
    }
    if g.indirect_probes > 16 {
        errs.push("membership.gossip.indirectProbes", "must be at most 16");
    }
    if !(1..=100).contains(&g.suspicion_multiplier) {
        errs.push(
            "membership.gossip.suspicionMultiplier",
            "must be between 1 and 100",
        );
    }
    if !(1..=100).contains(&g.retransmit_multiplier) {
        errs.push(
            "membership.gossip.retransmitMultiplier",
            "must be between 1 and 100",
        );
    }
    if g.push_pull_interval_ms < 100 {
        errs.push(
            "membership.gossip.pushPullIntervalMs",
            "must be at least 100",
        );
    }
    if g.enabled && g.keyring_file.is_none() {
        errs.push(
            "membership.gossip.keyringFile",
            "is required when gossip is enabled: gossip is always encrypted",
        );
    }
    for (i, seed) in m.seeds.static_seeds.iter().enumerate() {
        check_host_port(errs, &format!("membership.seeds.static[{i}]"), seed);
    }
    if let Some(dns) = &m.seeds.dns {
        check_host_port(errs, "membership.seeds.dns", dns);
    }
}

/// A list of field errors being collected.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    /// Records that `field` is wrong.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Names are DNS labels (RFC 1123): they become pod, Service and metric label values.
fn check_name(errs: &mut Errors, field: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        errs.push(
            field,
            format!("{name:?} must be a DNS label: 1-63 lowercase letters, digits or '-'"),
        );
    }
}

fn check_host_port(errs: &mut Errors, field: &str, value: &str) {
    let ok = match value.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && host.len() <= 253
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    };
    if !ok {
        errs.push(field, format!("{value:?} is not a host:port address"));
    }
}

/// Header names: the token characters of RFC 9110, lowercase.
fn http_header_name_ok(name: &str) -> Result<(), ()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        });
    if ok {
        Ok(())
    } else {
        Err(())
    }
}
