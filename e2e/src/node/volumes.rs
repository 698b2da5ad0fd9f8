//! A pod's volumes as host directories under its pod directory: emptyDir,
//! hostPath and persistentVolumeClaim (a bound PV with a hostPath) are plain
//! directories; configMap, secret, downwardAPI and projected ones (with
//! ServiceAccount tokens from the TokenRequest API) are written atomically
//! and re-synced, tokens refreshed at 80 % of their lifetime as kubelet does.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, ServiceAccount,
    Volume,
};
use kube::api::{Api, PostParams};

use super::atomic::{self, Files};
use super::fields::{self, PodRefs};
use super::lookup::Lookup;

/// A cached ServiceAccount token and when to ask for a new one.
struct Token {
    value: String,
    refresh_at: Instant,
}

/// The volumes of one pod.
pub struct VolumeSet {
    root: PathBuf,
    paths: BTreeMap<String, PathBuf>,
    written: HashMap<String, Files>,
    tokens: HashMap<String, Token>,
}

const DEFAULT_MODE: i32 = 0o644;

impl VolumeSet {
    /// Volumes under `root` (`<pod dir>/volumes`).
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            paths: BTreeMap::new(),
            written: HashMap::new(),
            tokens: HashMap::new(),
        }
    }

    /// The host directory of volume `name` (after a successful [`Self::sync`]).
    pub fn path(&self, name: &str) -> Option<&Path> {
        self.paths.get(name).map(PathBuf::as_path)
    }

    /// Makes every volume of the pod exist with its current content; the
    /// error reads like kubelet's `MountVolume.SetUp failed ...`.
    pub async fn sync(&mut self, lookup: &mut Lookup, refs: &PodRefs<'_>) -> Result<(), String> {
        let volumes = refs
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for vol in &volumes {
            self.sync_one(lookup, refs, vol)
                .await
                .map_err(|e| format!("MountVolume.SetUp failed for volume {:?}: {e}", vol.name))?;
        }
        Ok(())
    }

    async fn sync_one(
        &mut self,
        lookup: &mut Lookup,
        refs: &PodRefs<'_>,
        vol: &Volume,
    ) -> Result<(), String> {
        let dir = self.root.join(&vol.name);
        if vol.empty_dir.is_some() {
            if !dir.exists() {
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            self.paths.insert(vol.name.clone(), dir);
            return Ok(());
        }
        if let Some(hp) = &vol.host_path {
            let path = host_path(&hp.path, hp.type_.as_deref())?;
            self.paths.insert(vol.name.clone(), path);
            return Ok(());
        }
        if let Some(claim) = &vol.persistent_volume_claim {
            if !self.paths.contains_key(&vol.name) {
                let path = claim_path(lookup, &claim.claim_name).await?;
                self.paths.insert(vol.name.clone(), path);
            }
            return Ok(());
        }
        let files = self.content(lookup, refs, vol).await?;
        if self.written.get(&vol.name) != Some(&files) {
            atomic::write(&dir, &files).map_err(|e| format!("write {}: {e}", dir.display()))?;
            self.written.insert(vol.name.clone(), files);
        }
        self.paths.insert(vol.name.clone(), dir);
        Ok(())
    }

    /// The files of an atomically written volume.
    async fn content(
        &mut self,
        lookup: &mut Lookup,
        refs: &PodRefs<'_>,
        vol: &Volume,
    ) -> Result<Files, String> {
        let mut files = Files::new();
        if let Some(cm) = &vol.config_map {
            let mode = cm.default_mode.unwrap_or(DEFAULT_MODE);
            let data = lookup.config_map_data(&cm.name).await?;
            let optional = cm.optional == Some(true);
            project(
                &mut files,
                data,
                cm.items.as_deref(),
                mode,
                optional,
                "configmap",
                &cm.name,
            )?;
        } else if let Some(s) = &vol.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let mode = s.default_mode.unwrap_or(DEFAULT_MODE);
            let data = lookup.secret_data(&name).await?;
            let optional = s.optional == Some(true);
            project(
                &mut files,
                data,
                s.items.as_deref(),
                mode,
                optional,
                "secret",
                &name,
            )?;
        } else if let Some(d) = &vol.downward_api {
            let mode = d.default_mode.unwrap_or(DEFAULT_MODE);
            downward(
                &mut files,
                refs,
                d.items.as_deref().unwrap_or_default(),
                mode,
            )?;
        } else if let Some(p) = &vol.projected {
            let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
            for src in p.sources.iter().flatten() {
                if let Some(cm) = &src.config_map {
                    let data = lookup.config_map_data(&cm.name).await?;
                    let optional = cm.optional == Some(true);
                    project(
                        &mut files,
                        data,
                        cm.items.as_deref(),
                        mode,
                        optional,
                        "configmap",
                        &cm.name,
                    )?;
                } else if let Some(s) = &src.secret {
                    let data = lookup.secret_data(&s.name).await?;
                    let optional = s.optional == Some(true);
                    project(
                        &mut files,
                        data,
                        s.items.as_deref(),
                        mode,
                        optional,
                        "secret",
                        &s.name,
                    )?;
                } else if let Some(d) = &src.downward_api {
                    downward(
                        &mut files,
                        refs,
                        d.items.as_deref().unwrap_or_default(),
                        mode,
                    )?;
                } else if let Some(t) = &src.service_account_token {
                    atomic::check_path(&t.path)?;
                    let key = format!("{}/{}", vol.name, t.path);
                    let token = self
                        .token(
                            lookup,
                            refs,
                            &key,
                            t.audience.as_deref(),
                            t.expiration_seconds,
                        )
                        .await?;
                    files.insert(t.path.clone(), (token.into_bytes(), mode as u32 & 0o7777));
                } else {
                    return Err("projected source not supported by the node agent (clusterTrustBundle, podCertificate)".into());
                }
            }
        } else {
            return Err(format!(
                "volume type not supported by the node agent (supported: emptyDir, hostPath, persistentVolumeClaim with a hostPath PV, configMap, secret, downwardAPI, projected); got {}",
                serde_json::to_string(vol).unwrap_or_default()
            ));
        }
        Ok(files)
    }

    /// The cached token for `key`, or a fresh one from the TokenRequest API.
    async fn token(
        &mut self,
        lookup: &Lookup,
        refs: &PodRefs<'_>,
        key: &str,
        audience: Option<&str>,
        expiration: Option<i64>,
    ) -> Result<String, String> {
        if let Some(t) = self.tokens.get(key) {
            if Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        let pod = refs.pod;
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let ttl = expiration.unwrap_or(3600);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(ttl),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(lookup.client().clone(), lookup.namespace());
        let answer = api
            .create_token_request(&sa, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                format!(
                    "TokenRequest for serviceaccount {}/{sa}: {e}",
                    lookup.namespace()
                )
            })?;
        let status = answer
            .status
            .ok_or("TokenRequest answered without a status")?;
        let lifetime = status.expiration_timestamp.0.as_second()
            - k8s_openapi::jiff::Timestamp::now().as_second();
        let refresh = Duration::from_secs((lifetime.max(1) as u64) * 8 / 10);
        self.tokens.insert(
            key.to_string(),
            Token {
                value: status.token.clone(),
                refresh_at: Instant::now() + refresh,
            },
        );
        Ok(status.token)
    }
}

/// Projects ConfigMap/Secret `data` into `files` (all keys, or `items`).
fn project(
    files: &mut Files,
    data: Option<Vec<(String, Vec<u8>)>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    kind: &str,
    name: &str,
) -> Result<(), String> {
    let Some(data) = data else {
        if optional {
            return Ok(());
        }
        return Err(format!("{kind} {name:?} not found"));
    };
    match items {
        None | Some([]) => {
            for (k, v) in data {
                files.insert(k, (v, default_mode as u32 & 0o7777));
            }
        }
        Some(items) => {
            for item in items {
                atomic::check_path(&item.path)?;
                match data.iter().find(|(k, _)| *k == item.key) {
                    Some((_, v)) => {
                        let mode = item.mode.unwrap_or(default_mode) as u32 & 0o7777;
                        files.insert(item.path.clone(), (v.clone(), mode));
                    }
                    None if optional => {}
                    None => return Err(format!("{kind} {name:?}: no key {:?}", item.key)),
                }
            }
        }
    }
    Ok(())
}

/// Downward API items into `files`.
fn downward(
    files: &mut Files,
    refs: &PodRefs<'_>,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
) -> Result<(), String> {
    for item in items {
        atomic::check_path(&item.path)?;
        let value = if let Some(f) = &item.field_ref {
            refs.field(&f.field_path)?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or_default();
            let c = super::pod::find_container(refs.pod, name)
                .ok_or_else(|| format!("resourceFieldRef: no container {name:?}"))?;
            fields::resource(&c, &r.resource, r.divisor.as_ref())?
        } else {
            return Err(format!(
                "downwardAPI item {:?} has no fieldRef or resourceFieldRef",
                item.path
            ));
        };
        let mode = item.mode.unwrap_or(default_mode) as u32 & 0o7777;
        files.insert(item.path.clone(), (value.into_bytes(), mode));
    }
    Ok(())
}

/// A hostPath volume's directory, checked (or created) by its `type`.
fn host_path(path: &str, kind: Option<&str>) -> Result<PathBuf, String> {
    let p = PathBuf::from(path);
    match kind.unwrap_or("") {
        "DirectoryOrCreate" => {
            std::fs::create_dir_all(&p).map_err(|e| format!("hostPath {path}: {e}"))?;
        }
        "FileOrCreate" if !p.exists() => {
            std::fs::write(&p, b"").map_err(|e| format!("hostPath {path}: {e}"))?;
        }
        "Directory" if !p.is_dir() => return Err(format!("hostPath {path} is not a directory")),
        "File" if !p.is_file() => return Err(format!("hostPath {path} is not a file")),
        "" => {}
        _ if !p.exists() => return Err(format!("hostPath {path} does not exist")),
        _ => {}
    }
    Ok(p)
}

/// The host directory behind claim `name`: its bound PV's hostPath (or local path).
async fn claim_path(lookup: &Lookup, name: &str) -> Result<PathBuf, String> {
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(lookup.client().clone(), lookup.namespace());
    let claim = claims
        .get_opt(name)
        .await
        .map_err(|e| format!("get pvc {name}: {e}"))?
        .ok_or_else(|| format!("persistentvolumeclaim {name:?} not found"))?;
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let pv_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|_| bound)
        .ok_or_else(|| format!("persistentvolumeclaim {name:?} is not bound yet"))?;
    let pvs: Api<PersistentVolume> = Api::all(lookup.client().clone());
    let pv = pvs
        .get(&pv_name)
        .await
        .map_err(|e| format!("get pv {pv_name}: {e}"))?;
    let spec = pv.spec.unwrap_or_default();
    if let Some(hp) = spec.host_path {
        return host_path(&hp.path, hp.type_.as_deref());
    }
    if let Some(local) = spec.local {
        return host_path(&local.path, Some("Directory"));
    }
    Err(format!(
        "persistentvolume {pv_name} has neither hostPath nor local: the node agent mounts only host directories"
    ))
}
