//! A container's environment as kubelet builds it: service links first,
//! then `envFrom`, then `env` (each `$(VAR)` expanded from what came
//! before), values from the downward API, ConfigMaps and Secrets.

use k8s_openapi::api::core::v1::{Container, Service};

use super::fields::{self, PodRefs};
use super::lookup::Lookup;

/// An ordered environment where a later definition replaces an earlier one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Env(Vec<(String, String)>);

impl Env {
    /// Sets `name` (in place when it exists, keeping its position).
    pub fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The pairs, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Expands `$(VAR)` from this environment (`$$` is a literal `$`; an
    /// unknown `$(VAR)` stays as written), like kubelet.
    pub fn expand(&self, input: &str) -> String {
        let mut out = String::with_capacity(input.len());
        let mut rest = input;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(inner) = after.strip_prefix('(') {
                match inner.find(')') {
                    Some(j) => {
                        let name = &inner[..j];
                        match self.get(name) {
                            Some(v) => out.push_str(v),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        rest = &inner[j + 1..];
                    }
                    None => {
                        out.push_str(&rest[i..]);
                        rest = "";
                    }
                }
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        out
    }
}

/// The `{NAME}_SERVICE_HOST` family for `services` (ClusterIP ones only).
pub fn service_links(services: &[Service]) -> Env {
    let mut env = Env::default();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let ip = match spec.cluster_ip.as_deref() {
            Some(ip) if !ip.is_empty() && ip != "None" => ip,
            _ => continue,
        };
        let name = svc
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .to_uppercase()
            .replace('-', "_");
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        env.set(&format!("{name}_SERVICE_HOST"), ip.to_string());
        env.set(&format!("{name}_SERVICE_PORT"), first.port.to_string());
        for p in ports {
            if let Some(pn) = &p.name {
                env.set(
                    &format!(
                        "{name}_SERVICE_PORT_{}",
                        pn.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                );
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        env.set(
            &format!("{name}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
        );
        for p in ports {
            let pr = proto(p);
            let base = format!("{name}_PORT_{}_{}", p.port, pr.to_uppercase());
            env.set(&base, format!("{}://{ip}:{}", pr.to_lowercase(), p.port));
            env.set(&format!("{base}_PROTO"), pr.to_lowercase());
            env.set(&format!("{base}_PORT"), p.port.to_string());
            env.set(&format!("{base}_ADDR"), ip.to_string());
        }
    }
    env
}

/// The full environment of `container`, or why it cannot be built
/// (`CreateContainerConfigError`).
pub async fn container_env(
    lookup: &mut Lookup,
    refs: &PodRefs<'_>,
    container: &Container,
    services: &[Service],
) -> Result<Env, String> {
    let mut env = service_links(services);
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &from.config_map_ref {
            match lookup.config_map_data(&r.name).await? {
                Some(d) => d,
                None if r.optional == Some(true) => continue,
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        } else if let Some(r) = &from.secret_ref {
            match lookup.secret_data(&r.name).await? {
                Some(d) => d,
                None if r.optional == Some(true) => continue,
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            env.set(
                &format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => env.expand(var.value.as_deref().unwrap_or_default()),
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    refs.field(&f.field_path)?
                } else if let Some(r) = &from.resource_field_ref {
                    let target = match r.container_name.as_deref() {
                        Some(n) if !n.is_empty() && n != container.name => {
                            super::pod::find_container(refs.pod, n)
                                .ok_or_else(|| format!("resourceFieldRef: no container {n:?}"))?
                        }
                        _ => container.clone(),
                    };
                    fields::resource(&target, &r.resource, r.divisor.as_ref())?
                } else if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional == Some(true);
                    match lookup.config_map_data(&r.name).await? {
                        Some(d) => match d.into_iter().find(|(k, _)| *k == r.key) {
                            Some((_, v)) => String::from_utf8_lossy(&v).into_owned(),
                            None if optional => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in ConfigMap {}/{}",
                                    r.key,
                                    lookup.namespace(),
                                    r.name
                                ))
                            }
                        },
                        None if optional => continue,
                        None => return Err(format!("configmap {:?} not found", r.name)),
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional == Some(true);
                    match lookup.secret_data(&r.name).await? {
                        Some(d) => match d.into_iter().find(|(k, _)| *k == r.key) {
                            Some((_, v)) => String::from_utf8_lossy(&v).into_owned(),
                            None if optional => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in Secret {}/{}",
                                    r.key,
                                    lookup.namespace(),
                                    r.name
                                ))
                            }
                        },
                        None if optional => continue,
                        None => return Err(format!("secret {:?} not found", r.name)),
                    }
                } else {
                    return Err(format!("env {}: unsupported valueFrom", var.name));
                }
            }
        };
        env.set(&var.name, value);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_kubelet() {
        let mut env = Env::default();
        env.set("A", "1".into());
        env.set("B", "x".into());
        assert_eq!(env.expand("$(A)-$(B)"), "1-x");
        assert_eq!(env.expand("$$(A)"), "$(A)");
        assert_eq!(env.expand("$(NOPE) $A $(A"), "$(NOPE) $A $(A");
        env.set("A", "2".into());
        assert_eq!(env.pairs()[0], ("A".to_string(), "2".to_string()));
    }

    #[test]
    fn links_the_kubernetes_service() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}
        }))
        .unwrap();
        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "g"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}
        }))
        .unwrap();
        let env = service_links(&[svc, headless]);
        assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        assert_eq!(env.get("KUBERNETES_SERVICE_PORT"), Some("443"));
        assert_eq!(env.get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(env.get("KUBERNETES_PORT_443_TCP_ADDR"), Some("10.96.0.1"));
        assert_eq!(env.get("G_SERVICE_HOST"), None);
    }
}
