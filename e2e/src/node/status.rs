//! The pod's status from what the agent knows: phase, conditions
//! (PodReadyToStartContainers, Initialized, ContainersReady, Ready) and
//! container statuses, with kubelet's lifecycle semantics. Pure: the worker
//! writes the result only when it differs from what it wrote last.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::container::{Exit, State, View};

/// Everything the status is computed from.
pub struct Inputs<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// Its address, once it has a sandbox.
    pub pod_ip: Option<String>,
    /// The node's address.
    pub host_ip: String,
    /// When the agent took the pod.
    pub start_time: Timestamp,
    /// The network sandbox exists.
    pub sandbox_ready: bool,
    /// Why containers cannot be created yet (volumes, sandbox), if so.
    pub setup_error: Option<String>,
    /// Views of the init containers, in spec order (`None`: not started yet).
    pub inits: Vec<Option<View>>,
    /// Views of the app containers, in spec order.
    pub mains: Vec<Option<View>>,
}

/// Condition type → (status, lastTransitionTime), kept by the worker.
pub type Transitions = BTreeMap<String, (bool, Timestamp)>;

/// Whole seconds, as the API writes times.
pub fn time(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn exit_ok(v: &View) -> bool {
    matches!(&v.state, State::Terminated(e) if e.code == 0)
}

/// The phase: Pending → Running → Succeeded/Failed.
pub fn phase(inputs: &Inputs<'_>) -> &'static str {
    let spec = inputs.pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.unwrap_or_default();
    for (c, v) in inits.iter().zip(&inputs.inits) {
        if let Some(v) = v {
            if !is_sidecar(c) && v.done && !exit_ok(v) {
                return "Failed";
            }
        }
    }
    if inputs.mains.is_empty() || inputs.mains.iter().any(Option::is_none) {
        return "Pending";
    }
    let views: Vec<&View> = inputs.mains.iter().flatten().collect();
    // Like kubelet, a pod is terminal only once its sidecars have stopped
    // too: a StatefulSet replaces a Succeeded/Failed pod at once.
    let sidecar_running = inits
        .iter()
        .zip(&inputs.inits)
        .any(|(c, v)| is_sidecar(c) && v.as_ref().is_some_and(|v| !v.done));
    if views.iter().all(|v| v.done) && !sidecar_running {
        return if views.iter().all(|v| exit_ok(v)) {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    let ran =
        |v: &&View| matches!(v.state, State::Running(_) | State::Terminated(_)) || v.last.is_some();
    if views.iter().any(ran) {
        "Running"
    } else {
        "Pending"
    }
}

fn exit_json(e: &Exit) -> Value {
    let mut t = json!({
        "exitCode": e.code,
        "reason": e.reason,
        "startedAt": time(e.started_at),
        "finishedAt": time(e.finished_at),
        "containerID": e.container_id,
    });
    if let Some(s) = e.signal {
        t["signal"] = json!(s);
    }
    if let Some(m) = &e.message {
        t["message"] = json!(m);
    }
    json!({"terminated": t})
}

/// One `containerStatuses[]` entry; `waiting` is the state of a container not started yet.
fn container_json(c: &Container, view: Option<&View>, waiting: (&str, &str)) -> Value {
    let v = view.cloned().unwrap_or_default();
    let state = match (&v.state, view) {
        (_, None) => json!({"waiting": {"reason": waiting.0, "message": waiting.1}}),
        (State::Waiting { reason, message }, _) if message.is_empty() => {
            json!({"waiting": {"reason": reason}})
        }
        (State::Waiting { reason, message }, _) => {
            json!({"waiting": {"reason": reason, "message": message}})
        }
        (State::Running(t), _) => json!({"running": {"startedAt": time(*t)}}),
        (State::Terminated(e), _) => exit_json(e),
    };
    let mut s = json!({
        "name": c.name,
        "image": c.image.clone().unwrap_or_default(),
        "imageID": v.image_id,
        "ready": v.ready,
        "started": v.started,
        "restartCount": v.restarts,
        "state": state,
        "lastState": v.last.as_ref().map(exit_json).unwrap_or_else(|| json!({})),
    });
    if let Some(id) = &v.container_id {
        s["containerID"] = json!(id);
    }
    s
}

fn condition(
    t: &mut Transitions,
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> Value {
    let now = Timestamp::now();
    let entry = t.entry(kind.to_string()).or_insert((ok, now));
    if entry.0 != ok {
        *entry = (ok, now);
    }
    let mut c = json!({
        "type": kind,
        "status": if ok { "True" } else { "False" },
        "lastProbeTime": null,
        "lastTransitionTime": time(entry.1),
    });
    if !ok {
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = message {
            c["message"] = json!(m);
        }
    }
    c
}

/// The status object to write.
pub fn build(inputs: &Inputs<'_>, transitions: &mut Transitions) -> Value {
    let spec = inputs.pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let phase = phase(inputs);
    let creating = match &inputs.setup_error {
        Some(e) => ("ContainerCreating", e.as_str()),
        None => ("ContainerCreating", ""),
    };
    let setup_done = inputs.sandbox_ready && inputs.setup_error.is_none();
    let init_wait = if setup_done {
        ("PodInitializing", "")
    } else {
        creating
    };

    let mut incomplete = Vec::new();
    let mut unready = Vec::new();
    for (c, v) in inits.iter().zip(&inputs.inits) {
        let ok = match v {
            Some(v) if is_sidecar(c) => v.started,
            Some(v) => v.done && exit_ok(v),
            None => false,
        };
        if !ok {
            incomplete.push(c.name.clone());
        }
        if is_sidecar(c) && !v.as_ref().is_some_and(|v| v.ready) {
            unready.push(c.name.clone());
        }
    }
    for (c, v) in spec.containers.iter().zip(&inputs.mains) {
        if !v.as_ref().is_some_and(|v| v.ready) {
            unready.push(c.name.clone());
        }
    }
    let terminal = phase == "Succeeded" || phase == "Failed";
    let initialized = incomplete.is_empty() || terminal && phase == "Succeeded";
    let containers_ready = unready.is_empty() && !terminal;
    let gates_ok = spec.readiness_gates.iter().flatten().all(|g| {
        inputs
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == g.condition_type && c.status == "True")
            })
    });
    let unready_msg = format!("containers with unready status: [{}]", unready.join(" "));
    let (ready_reason, ready_msg) = if terminal {
        ("PodCompleted", None)
    } else if !containers_ready {
        ("ContainersNotReady", Some(unready_msg.clone()))
    } else {
        (
            "ReadinessGatesNotReady",
            Some("the status of pod readiness gates is not True".into()),
        )
    };
    let conditions = vec![
        condition(
            transitions,
            "PodReadyToStartContainers",
            inputs.sandbox_ready,
            None,
            None,
        ),
        condition(
            transitions,
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
        ),
        condition(
            transitions,
            "ContainersReady",
            containers_ready,
            Some(if terminal {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            }),
            (!terminal).then(|| unready_msg.clone()),
        ),
        condition(
            transitions,
            "Ready",
            containers_ready && gates_ok,
            Some(ready_reason),
            ready_msg,
        ),
    ];
    let init_statuses: Vec<Value> = inits
        .iter()
        .zip(&inputs.inits)
        .map(|(c, v)| container_json(c, v.as_ref(), init_wait))
        .collect();
    let main_wait = if !setup_done {
        creating
    } else if !inits.is_empty() {
        ("PodInitializing", "")
    } else {
        ("ContainerCreating", "")
    };
    let statuses: Vec<Value> = spec
        .containers
        .iter()
        .zip(&inputs.mains)
        .map(|(c, v)| container_json(c, v.as_ref(), main_wait))
        .collect();
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": inputs.host_ip,
        "hostIPs": [{"ip": inputs.host_ip}],
        "startTime": time(inputs.start_time),
        "containerStatuses": statuses,
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    if let Some(ip) = &inputs.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(restart: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": restart,
                "initContainers": [{"name": "sc", "restartPolicy": "Always"}, {"name": "init"}],
                "containers": [{"name": "app"}]}
        }))
        .unwrap()
    }

    fn running(ready: bool) -> View {
        View {
            state: State::Running(Timestamp::now()),
            started: true,
            ready,
            ..Default::default()
        }
    }

    fn exited(code: i32) -> View {
        let now = Timestamp::now();
        View {
            state: State::Terminated(Exit {
                code,
                signal: None,
                reason: if code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                },
                message: None,
                started_at: now,
                finished_at: now,
                container_id: "x".into(),
            }),
            done: true,
            ..Default::default()
        }
    }

    fn inputs<'a>(pod: &'a Pod, inits: Vec<Option<View>>, mains: Vec<Option<View>>) -> Inputs<'a> {
        Inputs {
            pod,
            pod_ip: Some("10.244.0.2".into()),
            host_ip: "10.244.0.1".into(),
            start_time: Timestamp::now(),
            sandbox_ready: true,
            setup_error: None,
            inits,
            mains,
        }
    }

    fn cond(status: &Value, kind: &str) -> String {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .map(|c| c["status"].as_str().unwrap().to_string())
            .unwrap()
    }

    #[test]
    fn pending_while_initializing_then_running_and_ready() {
        let p = pod("Always");
        let mut t = Transitions::new();
        let i = inputs(&p, vec![Some(running(false)), None], vec![None]);
        assert_eq!(phase(&i), "Pending");
        let s = build(&i, &mut t);
        assert_eq!(cond(&s, "Initialized"), "False");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "PodInitializing"
        );
        let i = inputs(
            &p,
            vec![Some(running(true)), Some(exited(0))],
            vec![Some(running(true))],
        );
        assert_eq!(phase(&i), "Running");
        let s = build(&i, &mut t);
        assert_eq!(cond(&s, "Initialized"), "True");
        assert_eq!(cond(&s, "Ready"), "True");
        let i = inputs(
            &p,
            vec![Some(running(false)), Some(exited(0))],
            vec![Some(running(true))],
        );
        let s = build(&i, &mut t);
        assert_eq!(
            cond(&s, "ContainersReady"),
            "False",
            "an unready sidecar makes the pod unready"
        );
        assert!(s["conditions"][2]["message"]
            .as_str()
            .unwrap()
            .contains("[sc]"));
    }

    #[test]
    fn terminal_phases() {
        let p = pod("Never");
        let i = inputs(
            &p,
            vec![Some(exited(0)), Some(exited(0))],
            vec![Some(exited(0))],
        );
        assert_eq!(phase(&i), "Succeeded");
        let i = inputs(
            &p,
            vec![Some(exited(143)), Some(exited(0))],
            vec![Some(exited(3))],
        );
        assert_eq!(phase(&i), "Failed");
        let i = inputs(&p, vec![Some(running(true)), Some(exited(1))], vec![None]);
        assert_eq!(
            phase(&i),
            "Failed",
            "a failed init container with restartPolicy Never"
        );
    }

    #[test]
    fn not_terminal_while_a_sidecar_runs() {
        let p = pod("Always");
        let i = inputs(
            &p,
            vec![Some(running(true)), Some(exited(0))],
            vec![Some(exited(0))],
        );
        assert_eq!(
            phase(&i),
            "Running",
            "the app stopped, its sidecar still shuts down"
        );
        let i = inputs(
            &p,
            vec![Some(exited(0)), Some(exited(0))],
            vec![Some(exited(0))],
        );
        assert_eq!(phase(&i), "Succeeded");
    }

    #[test]
    fn transitions_keep_their_time() {
        let p = pod("Always");
        let mut t = Transitions::new();
        let i = inputs(
            &p,
            vec![Some(running(true)), Some(exited(0))],
            vec![Some(running(true))],
        );
        let a = build(&i, &mut t);
        let b = build(&i, &mut t);
        assert_eq!(a, b, "nothing changed: the same status, so no write");
    }
}
