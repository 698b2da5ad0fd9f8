//! The downward API: pod fields (`fieldRef`) and container resources
//! (`resourceFieldRef`) as strings, shared by env vars and downwardAPI volumes.

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// What the downward API needs beyond the pod object.
pub struct PodRefs<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// Its address (empty before the sandbox has one).
    pub pod_ip: String,
    /// The node's address.
    pub host_ip: String,
}

impl PodRefs<'_> {
    /// The value of `fieldRef.fieldPath`.
    pub fn field(&self, path: &str) -> Result<String, String> {
        let meta = &self.pod.metadata;
        let spec = self.pod.spec.as_ref();
        let map_key = |prefix: &str| {
            path.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix("']"))
                .map(str::to_string)
        };
        if let Some(key) = map_key("metadata.labels['") {
            return Ok(meta
                .labels
                .as_ref()
                .and_then(|m| m.get(&key))
                .cloned()
                .unwrap_or_default());
        }
        if let Some(key) = map_key("metadata.annotations['") {
            return Ok(meta
                .annotations
                .as_ref()
                .and_then(|m| m.get(&key))
                .cloned()
                .unwrap_or_default());
        }
        let text = |m: &Option<std::collections::BTreeMap<String, String>>| {
            m.iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        Ok(match path {
            "metadata.name" => meta.name.clone().unwrap_or_default(),
            "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
            "metadata.uid" => meta.uid.clone().unwrap_or_default(),
            "metadata.labels" => text(&meta.labels),
            "metadata.annotations" => text(&meta.annotations),
            "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            "spec.serviceAccountName" => spec
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
            "status.podIP" | "status.podIPs" => self.pod_ip.clone(),
            "status.hostIP" | "status.hostIPs" => self.host_ip.clone(),
            other => return Err(format!("fieldRef {other:?} is not supported")),
        })
    }
}

/// The value of `resourceFieldRef` for `container` (limits fall back to the
/// node's allocatable, as kubelet does; rounded up in units of `divisor`).
pub fn resource(
    container: &Container,
    resource: &str,
    divisor: Option<&Quantity>,
) -> Result<String, String> {
    let res = container.resources.as_ref();
    let (set, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("resourceFieldRef {resource:?}: expected limits.X or requests.X"))?;
    let map = match set {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => {
            return Err(format!(
                "resourceFieldRef {resource:?}: expected limits.X or requests.X"
            ))
        }
    };
    let value = match map.and_then(|m| m.get(name)) {
        Some(q) => parse_quantity(&q.0)?,
        None if set == "limits" => match name {
            "cpu" => crate::node::registration::cpus() as f64,
            "memory" => crate::node::registration::memory_bytes() as f64,
            _ => 0.0,
        },
        None => 0.0,
    };
    let div = match divisor {
        Some(q) => parse_quantity(&q.0)?,
        None => 1.0,
    };
    if div <= 0.0 {
        return Err(format!(
            "resourceFieldRef {resource:?}: divisor must be positive"
        ));
    }
    Ok(format!("{}", (value / div).ceil() as u64))
}

/// A Kubernetes quantity (`100m`, `64Mi`, `1.5G`, `2e3`) as a number.
pub fn parse_quantity(q: &str) -> Result<f64, String> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        other => return Err(format!("quantity {q:?}: unknown suffix {other:?}")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("quantity {q:?} is not a number"))?;
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m").unwrap(), 0.1);
        assert_eq!(parse_quantity("64Mi").unwrap(), 67108864.0);
        assert_eq!(parse_quantity("2").unwrap(), 2.0);
        assert_eq!(parse_quantity("1e3").unwrap(), 1000.0);
        assert!(parse_quantity("1Qi").is_err());
    }

    #[test]
    fn resources_round_up_by_divisor() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "a", "resources": {"limits": {"memory": "256Mi", "cpu": "250m"}}
        }))
        .unwrap();
        assert_eq!(
            resource(&c, "limits.memory", Some(&Quantity("1Mi".into()))).unwrap(),
            "256"
        );
        assert_eq!(resource(&c, "limits.cpu", None).unwrap(), "1");
        assert_eq!(
            resource(&c, "limits.cpu", Some(&Quantity("1m".into()))).unwrap(),
            "250"
        );
        assert_eq!(resource(&c, "requests.cpu", None).unwrap(), "0");
    }

    #[test]
    fn fields() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "x"}},
            "spec": {"containers": [], "nodeName": "node-1"}
        }))
        .unwrap();
        let refs = PodRefs {
            pod: &pod,
            pod_ip: "10.244.0.5".into(),
            host_ip: "10.244.0.1".into(),
        };
        assert_eq!(refs.field("metadata.name").unwrap(), "p");
        assert_eq!(refs.field("metadata.labels['app']").unwrap(), "x");
        assert_eq!(refs.field("metadata.labels").unwrap(), "app=\"x\"");
        assert_eq!(refs.field("spec.serviceAccountName").unwrap(), "default");
        assert_eq!(refs.field("status.podIP").unwrap(), "10.244.0.5");
        assert!(refs.field("spec.nope").is_err());
    }
}
