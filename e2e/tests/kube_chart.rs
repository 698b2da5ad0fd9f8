//! `charts/shardmesh` installed, upgraded and uninstalled with the real Helm
//! CLI into the real API server (`scripts/kube/cluster`): default values and
//! every toggle on (`ci/all-on-values.yaml`), in a cluster without the
//! Prometheus Operator's API and with it. No pod runs (no kubelet): what is
//! checked is that every object the chart renders is accepted and lands, the
//! `.Capabilities` gate of the monitors (and NOTES.txt's warning when it
//! skips them), and that uninstall removes them. What only needs the
//! rendered manifests (schemas, hardening, RBAC rules, monitor contents) is
//! checked offline by `scripts/monitoring/helm_template_check.py`.
//!
//! Gated on `SHARDMESH_KUBE_E2E=1` (scripts/test.d/60-kube.sh).

use std::path::PathBuf;
use std::process::{Command, Output};

use shardmesh_e2e::bins::workspace;
use shardmesh_e2e::kube::ControlPlane;

fn chart() -> PathBuf {
    workspace().join("charts/shardmesh")
}

fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `kubectl get KIND -n NS -o name` for the objects of one release.
fn release_objects(cp: &ControlPlane, ns: &str, kinds: &str, release: &str) -> Vec<String> {
    let mut cmd = cp.kubectl();
    cmd.args([
        "get",
        kinds,
        "-n",
        ns,
        "-l",
        &format!("app.kubernetes.io/instance={release}"),
        "-o",
        "name",
    ]);
    let out = run(cmd, &format!("kubectl get {kinds}"));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    names.sort();
    names
}

/// A klog info line: `I` and the date `MMDD`, then a space.
fn is_klog_info(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 5 && b[0] == b'I' && b[1..5].iter().all(u8::is_ascii_digit) && b[5] == b' '
}

fn helm(cp: &ControlPlane, args: &[&str]) -> String {
    let mut cmd = cp.helm();
    cmd.args(args);
    let out = run(cmd, &format!("helm {}", args.join(" ")));
    // The real API server's warnings (unknown formats, deprecated fields)
    // reach helm's stderr; the chart must cause none.
    // Helm's own client-go info lines (klog `I…`, e.g. a reflector's "watch
    // ended" when helm stops watching) are not the server's warnings.
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let warnings = stderr
        .lines()
        .filter(|l| !is_klog_info(l))
        .any(|l| l.to_lowercase().contains("warning"));
    assert!(
        !warnings,
        "helm {} printed warnings:\n{stderr}",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Minimal monitoring.coreos.com/v1 CRDs (schemas left open): enough for
/// `.Capabilities` and for the API server to store the monitors.
fn monitoring_crds() -> String {
    let kinds = [
        ("servicemonitors", "ServiceMonitor", "servicemonitor"),
        ("podmonitors", "PodMonitor", "podmonitor"),
        ("prometheusrules", "PrometheusRule", "prometheusrule"),
    ];
    kinds
        .iter()
        .map(|(plural, kind, singular)| {
            format!(
                "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {{plural: {plural}, singular: {singular}, kind: {kind}, listKind: {kind}List}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn apply_stdin(cp: &ControlPlane, yaml: &str, verb: &str) {
    use std::io::Write;
    let mut cmd = cp.kubectl();
    cmd.args([verb, "-f", "-"]);
    if verb == "delete" {
        cmd.arg("--ignore-not-found");
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write manifest");
    let out = child.wait_with_output().expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const MONITORS: &str = "servicemonitors,podmonitors,prometheusrules";
const CORE: &str = "deployments,serviceaccounts,services,configmaps,poddisruptionbudgets,leases";

fn all_on() -> String {
    chart().join("ci/all-on-values.yaml").display().to_string()
}

#[test]
fn chart_installs_upgrades_and_uninstalls_with_the_real_helm() {
    let cp = match ControlPlane::for_test() {
        Ok(cp) => cp,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let chart = chart().display().to_string();
    let all_on = all_on();

    for extra in ["bank", "payments", "monitoring"] {
        // all-on's podMonitor and dashboards name these namespaces.
        let mut create = cp.kubectl();
        create.args(["create", "namespace", extra]);
        let _ = create.output();
    }

    // A cluster left by an earlier run may still serve the group.
    apply_stdin(&cp, &monitoring_crds(), "delete");

    // 1. No Prometheus Operator: default values, then every toggle on
    //    (assumeCRDs off: the real .Capabilities gate decides).
    let ns = "chart-plain";
    helm(
        &cp,
        &[
            "install",
            "sm",
            &chart,
            "-n",
            ns,
            "--create-namespace",
            "--timeout",
            "60s",
        ],
    );
    let objects = release_objects(&cp, ns, CORE, "sm");
    println!("default values created {objects:?}");
    assert!(
        objects.iter().any(|o| o.starts_with("deployment.apps/")),
        "{objects:?}"
    );
    assert!(
        objects.iter().any(|o| o.starts_with("serviceaccount/")),
        "{objects:?}"
    );
    let out = helm(
        &cp,
        &[
            "upgrade",
            "sm",
            &chart,
            "-n",
            ns,
            "-f",
            &all_on,
            "--set",
            "monitoring.assumeCRDs=false",
        ],
    );
    // NOTES.txt tells the user the monitors they asked for were skipped:
    // what the real discovery said, not what a render assumed.
    assert!(
        out.contains("were NOT") && out.contains("monitoring.coreos.com/v1 is not served"),
        "NOTES.txt must warn that the monitors were skipped:\n{out}"
    );
    let objects = release_objects(&cp, ns, CORE, "sm");
    println!("all toggles on created {objects:?}");
    assert!(
        objects.iter().any(|o| o.starts_with("poddisruptionbudget")),
        "{objects:?}"
    );
    assert!(
        objects.contains(&"lease.coordination.k8s.io/shardmesh-operator".to_string()),
        "the operator's Lease is part of the release: {objects:?}"
    );
    let mut get = cp.kubectl();
    get.args([
        "api-resources",
        "--api-group",
        "monitoring.coreos.com",
        "-o",
        "name",
    ]);
    let out = run(get, "kubectl api-resources");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "monitoring.coreos.com must be absent in this part"
    );
    let status = helm(&cp, &["status", "sm", "-n", ns]);
    assert!(status.contains("STATUS: deployed"), "{status}");
    helm(
        &cp,
        &["uninstall", "sm", "-n", ns, "--wait", "--timeout", "60s"],
    );
    let left = release_objects(&cp, ns, CORE, "sm");
    assert!(left.is_empty(), "left behind by uninstall: {left:?}");

    // 2. With the Prometheus Operator's API: every toggle on creates the
    //    monitors; an upgrade to defaults removes them; uninstall the rest.
    apply_stdin(&cp, &monitoring_crds(), "apply");
    cp.wait_established(&[
        "servicemonitors.monitoring.coreos.com",
        "podmonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    ])
    .expect("the monitoring CRDs are Established");
    let ns = "chart-monitoring";
    let out = helm(
        &cp,
        &[
            "install",
            "mon",
            &chart,
            "-n",
            ns,
            "--create-namespace",
            "-f",
            &all_on,
            "--set",
            "monitoring.assumeCRDs=false",
        ],
    );
    assert!(
        !out.contains("were NOT"),
        "the monitors were created: no warning expected:\n{out}"
    );
    let monitors = release_objects(&cp, ns, MONITORS, "mon");
    println!("with the Prometheus Operator's API: {monitors:?}");
    for kind in ["servicemonitor", "podmonitor", "prometheusrule"] {
        assert!(
            monitors.iter().any(|m| m.starts_with(kind)),
            "no {kind} in {monitors:?}"
        );
    }
    // Without values `helm upgrade` keeps the release's last ones: reset.
    helm(&cp, &["upgrade", "mon", &chart, "-n", ns, "--reset-values"]);
    let monitors = release_objects(&cp, ns, MONITORS, "mon");
    assert!(
        monitors.is_empty(),
        "default values keep monitors off: {monitors:?}"
    );
    helm(
        &cp,
        &["uninstall", "mon", "-n", ns, "--wait", "--timeout", "60s"],
    );
    let left = release_objects(&cp, ns, &format!("{CORE},{MONITORS}"), "mon");
    assert!(left.is_empty(), "left behind by uninstall: {left:?}");
    apply_stdin(&cp, &monitoring_crds(), "delete");
}
