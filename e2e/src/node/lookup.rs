//! Reads of ConfigMaps, Secrets and Services for one pod's volumes and env,
//! cached for the duration of one setup (one container start, one volume
//! refresh) so a pod with many references reads each object once.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, ListParams};
use kube::Client;

/// A per-setup cache of the objects a pod refers to.
pub struct Lookup {
    client: Client,
    namespace: String,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Lookup {
    /// A fresh cache for pods in `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    /// The client (TokenRequests, PVCs).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The ConfigMap `name`, `None` when it does not exist.
    pub async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, String> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let cm = api
                .get_opt(name)
                .await
                .map_err(|e| format!("get configmap {}/{name}: {e}", self.namespace))?;
            self.config_maps.insert(name.to_string(), cm);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    /// The Secret `name`, `None` when it does not exist.
    pub async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, String> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let s = api
                .get_opt(name)
                .await
                .map_err(|e| format!("get secret {}/{name}: {e}", self.namespace))?;
            self.secrets.insert(name.to_string(), s);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }

    /// Every key of ConfigMap `name` (`data` and `binaryData`), `None` when it does not exist.
    pub async fn config_map_data(
        &mut self,
        name: &str,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>, String> {
        Ok(self.config_map(name).await?.map(|cm| {
            let mut out: Vec<(String, Vec<u8>)> = cm
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .collect();
            out.extend(
                cm.binary_data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.0.clone())),
            );
            out
        }))
    }

    /// Every key of Secret `name` (`data` and `stringData`), `None` when it does not exist.
    pub async fn secret_data(
        &mut self,
        name: &str,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>, String> {
        Ok(self.secret(name).await?.map(|s| {
            let mut out: Vec<(String, Vec<u8>)> = s
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            out.extend(
                s.string_data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
            );
            out
        }))
    }

    /// The Services whose env vars a pod gets: `kubernetes` in `default`
    /// always, and every Service of the pod's namespace when `links`.
    pub async fn link_services(&self, links: bool) -> Result<Vec<Service>, String> {
        let mut out = Vec::new();
        let default: Api<Service> = Api::namespaced(self.client.clone(), "default");
        if let Some(k) = default
            .get_opt("kubernetes")
            .await
            .map_err(|e| format!("get service default/kubernetes: {e}"))?
        {
            out.push(k);
        }
        if links {
            let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| format!("list services in {}: {e}", self.namespace))?;
            out.extend(list.items.into_iter().filter(|s| {
                !(self.namespace == "default" && s.metadata.name.as_deref() == Some("kubernetes"))
            }));
        }
        Ok(out)
    }
}
