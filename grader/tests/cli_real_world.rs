//! Real repositories, read the way kubectl reads them: the built binary on directories shaped
//! like public projects' manifests (Helm templates, kustomize patches, a broken file among good
//! ones, YAML 1.1 spellings, merge keys, kube-system DaemonSets, a lower-case protocol).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn grade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn json_report(args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["static", "--format", "json"];
    all.extend(args);
    let output = grade(&all);
    let text = String::from_utf8(output.stdout).unwrap();
    let report = serde_json::from_str(&text).unwrap_or_else(|error| {
        panic!(
            "{error}: {text} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), report)
}

fn result<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|result| result["check"] == id)
        .unwrap_or_else(|| panic!("{id} not in {report}"))
}

fn skipped(report: &Value) -> Vec<(String, String)> {
    report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["file"].as_str().unwrap().to_owned(),
                s["cause"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A hardened pod spec body at the given indent, for building workloads.
fn hardened_pod(name: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile:
      type: RuntimeDefault
  containers:
  - name: app
    image: nginx:1.27
    securityContext:
      allowPrivilegeEscalation: false
      capabilities:
        drop: [ALL]
"
    )
}

const TEMPLATED_DAEMONSET: &str = "\
{{- if .Values.agent.enabled }}
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-agent
  namespace: monitoring
  labels:
    chart: \"{{ .Chart.Name }}-{{ .Chart.Version }}\"
spec:
  selector:
    matchLabels: {app: node-agent}
  template:
    metadata:
      labels: {app: node-agent}
    spec:
      hostPID: true
      containers:
      - name: agent
        image: \"{{ .Values.image }}\"
        securityContext:
          privileged: true
{{- end }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include \"agent.fullname\" . }}
data:
  {{- toYaml .Values.config | nindent 2 }}
";

#[test]
fn a_templated_file_is_graded_where_its_objects_parse_and_reported_where_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "chart/templates/agent.yaml",
        TEMPLATED_DAEMONSET,
    );
    let root = dir.path().display().to_string();
    let (code, report) = json_report(&[&root]);
    assert_eq!(code, Some(1), "{report}");
    let privileged = result(&report, "podsec.no-privileged");
    assert_eq!(privileged["status"], "fail", "{privileged}");
    assert!(
        privileged["message"]
            .as_str()
            .unwrap()
            .contains("DaemonSet/monitoring/node-agent"),
        "{privileged}"
    );
    assert_eq!(privileged["locations"][0]["file"], file.as_str());
    assert_eq!(privileged["locations"][0]["line"], 2);
    let host = result(&report, "podsec.no-host-namespaces");
    assert_eq!(host["status"], "fail", "{host}");
    // The ConfigMap's name is an unrendered action: not YAML until rendered, so reported.
    let not_graded = skipped(&report);
    assert_eq!(not_graded, vec![(file, "template".to_owned())], "{report}");
}

#[test]
fn a_json6902_patch_and_a_syntax_error_in_a_directory_do_not_stop_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "base/a-patch.yaml",
        "- op: replace\n  path: /spec/replicas\n  value: 3\n",
    );
    write(
        dir.path(),
        "base/b-broken.yaml",
        "kind: Pod\nmetadata: [unclosed\n",
    );
    let good = write(dir.path(), "base/c-pod.yaml", &hardened_pod("web", "app"));
    let bad = hardened_pod("root", "app").replace("runAsUser: 1000", "runAsUser: 0");
    let bad = write(dir.path(), "overlays/prod/pod.yaml", &bad);
    let root = dir.path().display().to_string();
    let (code, report) = json_report(&[&root]);
    assert_eq!(code, Some(1), "{report}");
    let non_root = result(&report, "podsec.run-as-non-root");
    assert_eq!(non_root["status"], "fail");
    let message = non_root["message"].as_str().unwrap();
    assert!(message.contains("Pod/app/root"), "{message}");
    assert!(message.contains("1 of 2 workloads"), "{message}");
    let causes: Vec<String> = skipped(&report).into_iter().map(|(_, c)| c).collect();
    assert_eq!(causes, vec!["not-an-object", "invalid"], "{report}");
    let _ = (good, bad);
}

#[test]
fn every_output_format_lists_what_was_not_graded_and_why() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pod.yaml", &hardened_pod("web", "app"));
    let patch = write(dir.path(), "patch.yaml", "- op: remove\n  path: /x\n");
    let root = dir.path().display().to_string();

    let text = grade(&["static", &root]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("not graded (1)"), "{text}");
    assert!(
        text.contains(&format!("{patch}:1: expected a Kubernetes object")),
        "{text}"
    );

    let junit = grade(&["static", "--format", "junit", &root]);
    let junit = String::from_utf8(junit.stdout).unwrap();
    assert!(junit.contains("<testsuite name=\"inputs\""), "{junit}");
    assert!(
        junit.contains("not-an-object: expected a Kubernetes object"),
        "{junit}"
    );
    let mut reader = quick_xml::Reader::from_str(&junit);
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Eof => break,
            _ => continue,
        }
    }

    let sarif = grade(&["static", "--format", "sarif", &root]);
    let sarif: Value = serde_json::from_slice(&sarif.stdout).unwrap();
    let notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .unwrap();
    let note = notes
        .iter()
        .find(|n| n["level"] == "warning")
        .unwrap_or_else(|| panic!("{sarif}"));
    assert_eq!(
        note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        patch.as_str()
    );
    assert_eq!(
        note["locations"][0]["physicalLocation"]["region"]["startLine"],
        1
    );

    let (_, json) = json_report(&[&root]);
    assert_eq!(skipped(&json), vec![(patch, "not-an-object".to_owned())]);
}

#[test]
fn exclude_globs_leave_out_files_and_directories_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let privileged =
        hardened_pod("shell", "app").replace("allowPrivilegeEscalation: false", "privileged: true");
    write(dir.path(), "vendor/chart/shell.yaml", &privileged);
    write(dir.path(), "test/shell.fixture.yaml", &privileged);
    write(dir.path(), "deploy/web.yaml", &hardened_pod("web", "app"));
    let root = dir.path().display().to_string();

    let (code, _) = json_report(&["--check", "podsec.no-privileged", &root]);
    assert_eq!(code, Some(1));
    let (code, report) = json_report(&[
        "--check",
        "podsec.no-privileged",
        "--exclude",
        "vendor/**",
        "--exclude",
        "*.fixture.yaml",
        &root,
    ]);
    assert_eq!(code, Some(0), "{report}");
    let excluded: Vec<String> = skipped(&report)
        .into_iter()
        .filter(|(_, cause)| cause == "excluded")
        .map(|(file, _)| file)
        .collect();
    assert_eq!(excluded.len(), 2, "{report}");
    assert!(
        excluded
            .iter()
            .any(|f| f.ends_with("test/shell.fixture.yaml"))
    );
    assert!(
        excluded.iter().any(|f| f.contains("/vendor/")),
        "{excluded:?}"
    );
}

#[test]
fn yaml_1_1_booleans_are_read_as_kubectl_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let spelled = hardened_pod("spelled", "app")
        .replace(
            "spec:\n  securityContext:",
            "spec:\n  hostNetwork: yes\n  securityContext:",
        )
        .replace(
            "allowPrivilegeEscalation: false",
            "privileged: on\n      allowPrivilegeEscalation: off",
        );
    let file = write(dir.path(), "spelled.yaml", &spelled);
    let (code, report) = json_report(&[&file]);
    assert_eq!(code, Some(1));
    assert_eq!(result(&report, "podsec.no-privileged")["status"], "fail");
    assert_eq!(
        result(&report, "podsec.no-host-namespaces")["status"],
        "fail"
    );
    // `off` is false to kubectl too: the escalation rule passes on it.
    assert_eq!(
        result(&report, "podsec.no-privilege-escalation")["status"],
        "pass"
    );

    // Quoted, they are strings: the API server would refuse a string for a boolean, and the
    // grader does not read "on" as true.
    let quoted = spelled.replace("privileged: on", "privileged: \"on\"");
    let file = write(dir.path(), "quoted.yaml", &quoted);
    let (_, report) = json_report(&["--check", "podsec.no-privileged", &file]);
    assert_eq!(result(&report, "podsec.no-privileged")["status"], "pass");
}

#[test]
fn merge_keys_apply_so_a_shared_secure_context_passes() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\
apiVersion: v1
kind: Pod
metadata:
  name: merged
  namespace: app
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: one
    image: nginx:1.27
    securityContext: &secure
      allowPrivilegeEscalation: false
      capabilities:
        drop: [ALL]
  - name: two
    image: nginx:1.27
    securityContext:
      <<: *secure
      readOnlyRootFilesystem: true
";
    let file = write(dir.path(), "merged.yaml", text);
    let (_, report) = json_report(&[&file]);
    for id in [
        "podsec.no-privilege-escalation",
        "podsec.capabilities-dropped",
        "podsec.run-as-non-root",
    ] {
        assert_eq!(result(&report, id)["status"], "pass", "{id}: {report}");
    }
    // And a merge that brings in a weakness is judged as merged.
    let weak = text.replace(
        "allowPrivilegeEscalation: false",
        "allowPrivilegeEscalation: true",
    );
    let file = write(dir.path(), "weak.yaml", &weak);
    let (_, report) = json_report(&[&file]);
    let escalation = result(&report, "podsec.no-privilege-escalation");
    assert_eq!(escalation["status"], "fail");
    let evidence = escalation["evidence"].as_str().unwrap();
    assert!(evidence.contains("container \"two\""), "{evidence}");
}

#[test]
fn added_capabilities_are_reported_in_any_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let added =
        hardened_pod("tools", "app").replace("drop: [ALL]", "drop: [ALL]\n        add: [SYS_TIME]");
    let file = write(dir.path(), "added.yaml", &added);
    let (code, report) = json_report(&["--check", "podsec.capabilities-dropped", &file]);
    assert_eq!(code, Some(1));
    let caps = result(&report, "podsec.capabilities-dropped");
    assert_eq!(caps["status"], "fail");
    assert!(
        caps["evidence"].as_str().unwrap().contains("adds SYS_TIME"),
        "{caps}"
    );

    let raw = hardened_pod("raw", "app").replace("drop: [ALL]", "add: [SYS_ADMIN, NET_RAW]");
    let file = write(dir.path(), "raw.yaml", &raw);
    let (_, report) = json_report(&["--check", "podsec.capabilities-dropped", &file]);
    let evidence = result(&report, "podsec.capabilities-dropped")["evidence"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(evidence.contains("adds SYS_ADMIN, NET_RAW"), "{evidence}");
    assert!(evidence.contains("does not include ALL"), "{evidence}");

    let bind = hardened_pod("web", "app").replace(
        "drop: [ALL]",
        "drop: [ALL]\n        add: [NET_BIND_SERVICE]",
    );
    let file = write(dir.path(), "bind.yaml", &bind);
    let (code, _) = json_report(&["--check", "podsec.capabilities-dropped", &file]);
    assert_eq!(code, Some(0));
}

#[test]
fn a_kube_system_workload_is_judged_in_a_static_scan() {
    let dir = tempfile::tempdir().unwrap();
    let daemonset = "\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: cni-agent
  namespace: kube-system
spec:
  selector:
    matchLabels: {app: cni-agent}
  template:
    metadata:
      labels: {app: cni-agent}
    spec:
      hostNetwork: true
      containers:
      - name: agent
        image: cni/agent:1.0
        securityContext:
          privileged: true
";
    let file = write(dir.path(), "kube-system/cni.yaml", daemonset);
    let (code, report) = json_report(&[&file]);
    assert_eq!(code, Some(1));
    for id in ["podsec.no-privileged", "podsec.no-host-namespaces"] {
        let result = result(&report, id);
        assert_eq!(result["status"], "fail", "{result}");
        assert!(
            result["message"]
                .as_str()
                .unwrap()
                .contains("DaemonSet/kube-system/cni-agent"),
            "{result}"
        );
    }
    // A pod merely labelled as a control-plane component is judged too; only the control
    // plane's own static pods are left to the etcd and access checks.
    let disguised = "\
apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
  labels: {component: kube-apiserver, tier: control-plane}
spec:
  containers:
  - name: agent
    image: cni/agent:1.0
    securityContext:
      privileged: true
";
    let file = write(dir.path(), "kube-system/disguised.yaml", disguised);
    let (code, report) = json_report(&["--check", "podsec.no-privileged", &file]);
    assert_eq!(code, Some(1), "{report}");
    let (code, report) = json_report(&[
        "--check",
        "podsec.no-host-namespaces",
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/single/kube-apiserver.yaml")
            .display()
            .to_string(),
    ]);
    assert_eq!(code, Some(0), "{report}");
}

#[test]
fn a_lower_case_protocol_is_refused_for_that_object_only() {
    let dir = tempfile::tempdir().unwrap();
    let deny = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny
  namespace: demo
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
";
    write(dir.path(), "deny.yaml", deny);
    write(dir.path(), "web.yaml", &hardened_pod("web", "demo"));
    let odd = hardened_pod("odd", "demo").replace(
        "    image: nginx:1.27\n",
        "    image: nginx:1.27\n    ports:\n    - containerPort: 80\n      protocol: tcp\n",
    );
    let odd = write(dir.path(), "odd.yaml", &odd);
    let root = dir.path().display().to_string();
    let (_, report) = json_report(&[&root]);
    for id in ["netpol.default-deny-ingress", "netpol.default-deny-egress"] {
        let result = result(&report, id);
        // Judged, not `error`: the deny-all holds for the pods the cluster would have.
        assert_eq!(result["status"], "warn", "{result}");
        let message = result["message"].as_str().unwrap();
        assert!(message.contains("denied by default in demo"), "{message}");
        assert!(message.contains("Pod/demo/odd"), "{message}");
        assert!(message.contains("refused by the API server"), "{message}");
        assert!(
            result["locations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["file"] == odd.as_str()),
            "{result}"
        );
    }
    let (_, report) = json_report(&["--lab", "network-policies", "--namespace", "demo", &root]);
    assert_ne!(result(&report, "netpol.intended-matrix")["status"], "error");
}
