//! Pod security checks against a real kube-apiserver (v1.20.2): workloads created through the API
//! (their pods stay Pending without a kubelet, which these checks do not need) and namespace labels.

#![allow(clippy::unwrap_used)]

#[path = "access_live/control_plane.rs"]
mod control_plane;

use hardlab_grader::context::Params;
use hardlab_grader::{Context, Outcome, Status, catalog};

async fn run(id: &str, namespace: &str) -> Outcome {
    let plane = control_plane::shared().await;
    let ctx = Context::live(Some(plane.client().await)).with_params(Params {
        namespace: Some(namespace.to_owned()),
        ..Params::default()
    });
    let check = catalog::find(id).unwrap_or_else(|| panic!("{id} is in the catalog"));
    (check.run)(&ctx).await.expect("the check runs")
}

fn flagged(outcome: &Outcome) -> Vec<String> {
    let mut objects: Vec<String> = outcome
        .locations
        .iter()
        .filter_map(|location| location.object.clone())
        .collect();
    objects.sort();
    objects
}

fn evidence(outcome: &Outcome) -> &str {
    outcome.evidence.as_deref().unwrap_or_default()
}

const HARDENED: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: podsec-good
  labels: {pod-security.kubernetes.io/enforce: restricted}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: podsec-good}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        seccompProfile: {type: RuntimeDefault}
      initContainers:
        - name: migrate
          image: registry.example/api/migrate:1.0.0
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          resources: {limits: {cpu: 100m, memory: 64Mi}}
      containers:
        - name: api
          image: registry.example/api/server:1.0.0
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          resources: {limits: {cpu: 500m, memory: 256Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: worker, namespace: podsec-good}
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 10002
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: worker
      image: registry.example/api/worker@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {drop: [ALL]}
      resources: {limits: {cpu: 100m, memory: 64Mi}}
"#;

const INSECURE: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: podsec-bad
  labels: {pod-security.kubernetes.io/enforce: baseline}
---
apiVersion: v1
kind: Pod
metadata: {name: root-shell, namespace: podsec-bad}
spec:
  hostPID: true
  containers:
    - name: shell
      image: busybox
      command: [sleep, "3600"]
      securityContext:
        privileged: true
        runAsUser: 0
      volumeMounts: [{name: host, mountPath: /host}]
  volumes:
    - name: host
      hostPath: {path: /}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: podsec-bad}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      securityContext:
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
      initContainers:
        - name: migrate
          image: registry.example/api/migrate:1.0.0
          securityContext: {runAsUser: 0}
      containers:
        - name: api
          image: registry.example/api/server:1.0.0
          securityContext:
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL]}
---
apiVersion: v1
kind: Namespace
metadata: {name: podsec-unlabelled}
"#;

async fn setup() {
    static CREATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    CREATED
        .get_or_init(|| async {
            let client = control_plane::shared().await.client().await;
            control_plane::create(&client, HARDENED).await;
            control_plane::create(&client, INSECURE).await;
        })
        .await;
}

#[tokio::test]
async fn every_pod_security_check_passes_on_hardened_workloads_created_through_the_api() {
    if !control_plane::available() {
        return;
    }
    setup().await;
    for id in [
        "podsec.run-as-non-root",
        "podsec.no-privilege-escalation",
        "podsec.capabilities-dropped",
        "podsec.no-privileged",
        "podsec.no-host-namespaces",
        "podsec.no-host-path",
        "podsec.seccomp-profile",
        "podsec.read-only-root-fs",
        "podsec.resource-limits",
        "podsec.image-pinned",
        "podsec.psa-enforce-label",
        "podsec.psa-workloads-admitted",
    ] {
        let outcome = run(id, "podsec-good").await;
        assert_eq!(outcome.status, Status::Pass, "{id}: {outcome:?}");
        assert!(
            outcome.message.contains("podsec-good"),
            "{id}: {}",
            outcome.message
        );
    }
}

#[tokio::test]
async fn live_workloads_fail_naming_the_object_the_container_and_the_field() {
    if !control_plane::available() {
        return;
    }
    setup().await;
    let non_root = run("podsec.run-as-non-root", "podsec-bad").await;
    assert_eq!(non_root.status, Status::Fail);
    assert_eq!(
        flagged(&non_root),
        ["Deployment/podsec-bad/api", "Pod/podsec-bad/root-shell"]
    );
    assert!(evidence(&non_root).contains(
        "Deployment/podsec-bad/api: init container \"migrate\": runs as root: spec.template.spec.initContainers[0].securityContext.runAsUser is 0"
    ));
    for (id, objects) in [
        ("podsec.no-privileged", vec!["Pod/podsec-bad/root-shell"]),
        (
            "podsec.no-host-namespaces",
            vec!["Pod/podsec-bad/root-shell"],
        ),
        ("podsec.no-host-path", vec!["Pod/podsec-bad/root-shell"]),
        ("podsec.seccomp-profile", vec!["Pod/podsec-bad/root-shell"]),
        (
            "podsec.no-privilege-escalation",
            vec!["Deployment/podsec-bad/api", "Pod/podsec-bad/root-shell"],
        ),
        (
            "podsec.capabilities-dropped",
            vec!["Deployment/podsec-bad/api", "Pod/podsec-bad/root-shell"],
        ),
    ] {
        let outcome = run(id, "podsec-bad").await;
        assert_eq!(outcome.status, Status::Fail, "{id}: {outcome:?}");
        assert_eq!(flagged(&outcome), objects, "{id}");
    }
    let image = run("podsec.image-pinned", "podsec-bad").await;
    assert_eq!(image.status, Status::Warn);
    assert!(evidence(&image).contains("\"busybox\" has no tag"));
}

#[tokio::test]
async fn the_baseline_label_would_reject_the_privileged_pod_but_admit_the_deployment() {
    if !control_plane::available() {
        return;
    }
    setup().await;
    let outcome = run("podsec.psa-workloads-admitted", "podsec-bad").await;
    assert_eq!(outcome.status, Status::Fail, "{outcome:?}");
    assert_eq!(flagged(&outcome), ["Pod/podsec-bad/root-shell"]);
    let evidence = evidence(&outcome);
    assert!(evidence.contains("enforce=baseline rejects it: Privileged Containers"));
    assert!(evidence.contains("Host Namespaces"));
    assert!(evidence.contains("HostPath Volumes"));
}

#[tokio::test]
async fn a_namespace_without_an_enforce_label_fails_and_a_missing_one_is_reported() {
    if !control_plane::available() {
        return;
    }
    setup().await;
    let unlabelled = run("podsec.psa-enforce-label", "podsec-unlabelled").await;
    assert_eq!(unlabelled.status, Status::Fail, "{unlabelled:?}");
    assert_eq!(flagged(&unlabelled), ["Namespace/podsec-unlabelled"]);
    let missing = run("podsec.psa-enforce-label", "podsec-nowhere").await;
    assert_eq!(missing.status, Status::Fail);
    assert!(missing.message.contains("podsec-nowhere does not exist"));
    let baseline = run("podsec.psa-enforce-label", "podsec-bad").await;
    assert_eq!(baseline.status, Status::Pass);
}
