//! Environment overrides. In a cluster one ConfigMap serves every pod of a
//! service, so per-pod facts (name, IP, zone) arrive through the downward API
//! as environment variables.

use crate::model::{LogFormat, SidecarConfig};
use crate::ConfigError;

/// Every variable the sidecar reads, with the field it overrides.
pub const VARIABLES: &[(&str, &str)] = &[
    ("SHARDMESH_POD_NAME", "pod.name"),
    ("SHARDMESH_SERVICE", "pod.service"),
    ("SHARDMESH_ZONE", "pod.zone"),
    ("SHARDMESH_ADVERTISE_HOST", "pod.advertiseHost"),
    ("SHARDMESH_HOST_IP", "pod.hostIp"),
    ("SHARDMESH_APP_ADDRESS", "app.address"),
    ("SHARDMESH_OUTBOUND_ADDR", "listeners.outbound"),
    ("SHARDMESH_INBOUND_ADDR", "listeners.inbound"),
    ("SHARDMESH_ADMIN_ADDR", "listeners.admin"),
    ("SHARDMESH_GOSSIP_ADDR", "listeners.gossip"),
    ("SHARDMESH_SEEDS", "membership.seeds.static"),
    ("SHARDMESH_LOG_FORMAT", "log.format"),
    ("SHARDMESH_LOG_LEVEL", "log.level"),
    ("SHARDMESH_TRACING_ENDPOINT", "tracing.endpoint"),
    ("SHARDMESH_TRACING_SAMPLING_RATIO", "tracing.samplingRatio"),
];

/// Applies overrides from `vars` (normally `std::env::vars()`); unknown
/// variables are ignored, empty values are ignored.
pub fn apply<I, K, V>(config: &mut SidecarConfig, vars: I) -> Result<(), ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    for (key, value) in vars {
        let value = value.as_ref().trim();
        if value.is_empty() {
            continue;
        }
        let owned = value.to_string();
        match key.as_ref() {
            "SHARDMESH_POD_NAME" => config.pod.name = owned,
            "SHARDMESH_SERVICE" => config.pod.service = owned,
            "SHARDMESH_ZONE" => config.pod.zone = Some(owned),
            "SHARDMESH_ADVERTISE_HOST" => config.pod.advertise_host = Some(owned),
            "SHARDMESH_HOST_IP" => config.pod.host_ip = Some(owned),
            "SHARDMESH_APP_ADDRESS" => config.app.address = owned,
            "SHARDMESH_OUTBOUND_ADDR" => config.listeners.outbound = owned,
            "SHARDMESH_INBOUND_ADDR" => config.listeners.inbound = owned,
            "SHARDMESH_ADMIN_ADDR" => config.listeners.admin = owned,
            "SHARDMESH_GOSSIP_ADDR" => config.listeners.gossip = owned,
            "SHARDMESH_SEEDS" => {
                config.membership.seeds.static_seeds = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "SHARDMESH_LOG_FORMAT" => {
                config.log.format = match value {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    other => {
                        return Err(ConfigError::invalid(
                            "SHARDMESH_LOG_FORMAT",
                            format!("must be 'text' or 'json', not {other:?}"),
                        ))
                    }
                }
            }
            "SHARDMESH_LOG_LEVEL" => config.log.level = owned,
            "SHARDMESH_TRACING_ENDPOINT" => match &mut config.tracing {
                Some(t) => t.endpoint = owned,
                None => config.tracing = Some(crate::model::TracingConfig::to(owned)),
            },
            "SHARDMESH_TRACING_SAMPLING_RATIO" => {
                let ratio: f64 = value.parse().map_err(|_| {
                    ConfigError::invalid(
                        "SHARDMESH_TRACING_SAMPLING_RATIO",
                        format!("{value:?} is not a number"),
                    )
                })?;
                match &mut config.tracing {
                    Some(t) => t.sampling_ratio = ratio,
                    // Kept for the endpoint, which may come later.
                    None => {
                        let mut t = crate::model::TracingConfig::to("");
                        t.sampling_ratio = ratio;
                        config.tracing = Some(t);
                    }
                }
            }
            _ => {}
        }
    }
    // A sampling ratio alone (no endpoint from the file or the environment)
    // turns nothing on.
    if config
        .tracing
        .as_ref()
        .is_some_and(|t| t.endpoint.is_empty())
    {
        config.tracing = None;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_pod_identity_and_seeds() {
        let mut c = SidecarConfig::default();
        apply(
            &mut c,
            [
                ("SHARDMESH_POD_NAME", "bank-0"),
                ("SHARDMESH_SEEDS", "10.0.0.1:7946, 10.0.0.2:7946,"),
                ("HOME", "/root"),
                ("SHARDMESH_ZONE", ""),
            ],
        )
        .unwrap();
        assert_eq!(c.pod.name, "bank-0");
        assert_eq!(
            c.membership.seeds.static_seeds,
            ["10.0.0.1:7946", "10.0.0.2:7946"]
        );
        assert_eq!(c.pod.zone, None);
    }

    #[test]
    fn bad_log_format_names_the_variable() {
        let mut c = SidecarConfig::default();
        let err = apply(&mut c, [("SHARDMESH_LOG_FORMAT", "xml")]).unwrap_err();
        assert!(err.to_string().contains("SHARDMESH_LOG_FORMAT"), "{err}");
    }

    #[test]
    fn tracing_turns_on_with_an_endpoint_in_any_order() {
        let mut c = SidecarConfig::default();
        apply(
            &mut c,
            [
                ("SHARDMESH_TRACING_SAMPLING_RATIO", "0.5"),
                ("SHARDMESH_TRACING_ENDPOINT", "http://collector:4317"),
            ],
        )
        .unwrap();
        let t = c.tracing.unwrap();
        assert_eq!(t.endpoint, "http://collector:4317");
        assert_eq!(t.sampling_ratio, 0.5);

        let mut c = SidecarConfig::default();
        apply(&mut c, [("SHARDMESH_TRACING_SAMPLING_RATIO", "0.5")]).unwrap();
        assert_eq!(c.tracing, None, "a ratio alone turns nothing on");
        let err = apply(&mut c, [("SHARDMESH_TRACING_SAMPLING_RATIO", "lots")]).unwrap_err();
        assert!(
            err.to_string().contains("SHARDMESH_TRACING_SAMPLING_RATIO"),
            "{err}"
        );
    }
}
