//! One start of a container: its shim plan (argv from the image table,
//! environment, mounts, user), the shim process in the pod's network
//! namespace and a new mount and UTS namespace, and the wait until the shim
//! has exec'd.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::container::PodCtx;
use super::env::{container_env, Env};
use super::fields::PodRefs;
use super::images;
use super::lookup::Lookup;
use super::shim::{Bind, Plan};

/// The shim plan and environment of one start of `spec`.
pub async fn plan(
    ctx: &PodCtx,
    pod: &Pod,
    spec: &Container,
    image: &images::Resolved,
) -> Result<(Plan, Env), String> {
    let binary = image.binary.as_path();
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let pod_spec = pod.spec.clone().unwrap_or_default();
    let mut lookup = Lookup::new(ctx.client.clone(), &ns);
    let services = lookup
        .link_services(pod_spec.enable_service_links != Some(false))
        .await?;
    let refs = PodRefs {
        pod,
        pod_ip: ctx.ip.clone(),
        host_ip: ctx.cfg.node_ip.to_string(),
    };
    let mut env = container_env(&mut lookup, &refs, spec, &services).await?;
    let hostname = super::pod::hostname(pod);
    if env.get("HOSTNAME").is_none() {
        env.set("HOSTNAME", hostname.clone());
    }
    if env.get("PATH").is_none() {
        env.set(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    let etc = ctx.dir.join("etc");
    let mut mounts = vec![
        Bind {
            source: etc.join("resolv.conf"),
            target: "/etc/resolv.conf".into(),
            read_only: false,
        },
        Bind {
            source: etc.join("hosts"),
            target: "/etc/hosts".into(),
            read_only: false,
        },
        Bind {
            source: etc.join("hostname"),
            target: "/etc/hostname".into(),
            read_only: false,
        },
    ];
    for vm in spec.volume_mounts.iter().flatten() {
        let base = ctx
            .volumes
            .get(&vm.name)
            .ok_or_else(|| format!("volumeMount {:?}: no volume of that name", vm.name))?;
        let sub = match (&vm.sub_path, &vm.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => Some(env.expand(e)),
            _ => None,
        };
        let source = match sub {
            Some(s) => {
                super::atomic::check_path(&s)
                    .map_err(|e| format!("volumeMount {:?} subPath: {e}", vm.name))?;
                let p = base.join(&s);
                if std::fs::symlink_metadata(&p).is_err() {
                    std::fs::create_dir_all(&p)
                        .map_err(|e| format!("subPath {}: {e}", p.display()))?;
                }
                p
            }
            None => base.clone(),
        };
        if !vm.mount_path.starts_with('/') {
            return Err(format!(
                "volumeMount {:?}: mountPath {:?} must be absolute",
                vm.name, vm.mount_path
            ));
        }
        mounts.push(Bind {
            source,
            target: vm.mount_path.clone().into(),
            read_only: vm.read_only == Some(true),
        });
    }
    let command: Vec<String> = spec
        .command
        .iter()
        .flatten()
        .map(|c| env.expand(c))
        .collect();
    let args: Vec<String> = spec.args.iter().flatten().map(|c| env.expand(c)).collect();
    let (uid, gid) = user(pod, spec, image.user);
    let plan = Plan {
        hostname,
        scratch: ctx.dir.join("scratch").join(&spec.name),
        mounts,
        argv: images::argv(binary, &command, &args),
        env: env.pairs().to_vec(),
        cwd: spec
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .map(PathBuf::from),
        uid,
        gid,
        ready: Some(ctx.dir.join("plans").join(format!("{}.ready", spec.name))),
    };
    Ok((plan, env))
}

/// `runAsUser`/`runAsGroup` (container over pod), else the image's `User`
/// (as a container runtime would); 65532 for `runAsNonRoot` when neither
/// names one.
fn user(pod: &Pod, spec: &Container, image: Option<(u32, u32)>) -> (Option<u32>, Option<u32>) {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = spec.security_context.as_ref();
    let uid = csc
        .and_then(|c| c.run_as_user)
        .or_else(|| psc.and_then(|p| p.run_as_user));
    let gid = csc
        .and_then(|c| c.run_as_group)
        .or_else(|| psc.and_then(|p| p.run_as_group));
    let non_root = csc
        .and_then(|c| c.run_as_non_root)
        .or_else(|| psc.and_then(|p| p.run_as_non_root))
        == Some(true);
    let (uid, image_gid) = match (uid, image) {
        (Some(u), _) => (Some(u as u32), None),
        (None, Some((u, g))) => (Some(u), Some(g)),
        (None, None) if non_root => (Some(65532), None),
        (None, None) => (None, None),
    };
    let gid = gid.map(|g| g as u32).or(image_gid).or(uid.map(|_| 0));
    (uid, gid)
}

/// Starts the shim in the pod's network namespace and a new mount and UTS namespace.
pub fn spawn(ctx: &PodCtx, name: &str, plan: &Plan) -> Result<tokio::process::Child, String> {
    let plans = ctx.dir.join("plans");
    std::fs::create_dir_all(&plans).map_err(|e| format!("{}: {e}", plans.display()))?;
    let plan_file = plans.join(format!("{name}.json"));
    if let Some(ready) = &plan.ready {
        let _ = std::fs::remove_file(ready);
    }
    let body = serde_json::to_vec_pretty(plan).map_err(|e| e.to_string())?;
    std::fs::write(&plan_file, body).map_err(|e| format!("{}: {e}", plan_file.display()))?;
    let log_path = ctx.dir.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    tokio::process::Command::new("nsenter")
        .arg(format!("--net={}", ctx.netns_path.display()))
        .args([
            "--",
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "--",
        ])
        .arg(&ctx.agent_exe)
        .arg("shim")
        .arg(&plan_file)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("start {name}: {e}"))
}

/// Waits until the shim has set up the container's namespaces and execs
/// (or died, or 30 s passed): hooks and exec probes enter those namespaces.
pub async fn wait_exec(child: &mut tokio::process::Child, ready: Option<&std::path::Path>) {
    let Some(ready) = ready else { return };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::fs::metadata(ready).is_ok_and(|m| m.len() > 0) {
            return;
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_root_without_a_user_runs_as_65532() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "a"}]}
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        assert_eq!(user(&pod, &c, None), (Some(65532), Some(0)));
    }

    #[test]
    fn the_image_user_applies_unless_the_security_context_names_one() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "a"}]}
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        assert_eq!(user(&pod, &c, None), (None, None), "no user anywhere: root");
        assert_eq!(user(&pod, &c, Some((7, 8))), (Some(7), Some(8)));
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"securityContext": {"runAsUser": 1000}, "containers": [{"name": "a"}]}
        }))
        .unwrap();
        assert_eq!(user(&pod, &c, Some((7, 8))), (Some(1000), Some(0)));
    }
}
