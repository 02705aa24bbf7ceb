//! Pod security checks on real manifests read from files, as `hardlab-grade static` reads them.

use std::path::PathBuf;

use hardlab_grader::context::Params;
use hardlab_grader::inputs::documents::read_paths;
use hardlab_grader::{Context, Outcome, Status, catalog};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/podsec")
        .join(name)
}

fn context(files: &[&str], params: Params) -> Context {
    let paths: Vec<PathBuf> = files.iter().map(|name| fixture(name)).collect();
    let read = read_paths(&paths).expect("fixtures parse");
    Context::from_documents(read.documents).with_params(params)
}

async fn run(id: &str, files: &[&str]) -> Outcome {
    run_with(id, files, Params::default()).await
}

async fn run_with(id: &str, files: &[&str], params: Params) -> Outcome {
    let check = catalog::find(id).unwrap_or_else(|| panic!("{id} is in the catalog"));
    let ctx = context(files, params);
    (check.run)(&ctx).await.expect("the check runs")
}

/// The objects a failing outcome points at, as `Kind/namespace/name`.
fn flagged(outcome: &Outcome) -> Vec<String> {
    outcome
        .locations
        .iter()
        .filter_map(|location| location.object.clone())
        .collect()
}

fn evidence(outcome: &Outcome) -> &str {
    outcome.evidence.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn every_per_workload_check_passes_on_the_hardened_shop() {
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
        let outcome = run(id, &["hardened.yaml"]).await;
        assert_eq!(outcome.status, Status::Pass, "{id}: {outcome:?}");
    }
}

#[tokio::test]
async fn run_as_non_root_catches_an_init_container_that_overrides_the_pod_with_uid_0() {
    let outcome = run("podsec.run-as-non-root", &["insecure.yaml"]).await;
    assert_eq!(outcome.status, Status::Fail);
    assert_eq!(
        flagged(&outcome),
        [
            "Deployment/shop/web",
            "DaemonSet/shop/log-shipper",
            // It only sets a UID; restricted requires runAsNonRoot: true.
            "CronJob/shop/report"
        ]
    );
    assert!(
        evidence(&outcome).contains(
            "init container \"migrate\": runs as root: spec.template.spec.initContainers[0].securityContext.runAsUser is 0"
        ),
        "{}",
        evidence(&outcome)
    );
    assert!(evidence(&outcome).contains("container \"shipper\": spec.template.spec.containers[0].securityContext.runAsNonRoot is false"));
}

#[tokio::test]
async fn findings_point_at_the_file_and_line_of_the_object() {
    let outcome = run("podsec.no-privileged", &["insecure.yaml"]).await;
    assert_eq!(outcome.status, Status::Fail);
    let location = &outcome.locations[0];
    assert!(location.file.ends_with("insecure.yaml"), "{location:?}");
    // The DaemonSet document starts after the Namespace and the Deployment.
    let text = std::fs::read_to_string(fixture("insecure.yaml")).expect("fixture");
    let daemonset_line = text
        .lines()
        .position(|line| line == "kind: DaemonSet")
        .expect("a DaemonSet")
        + 1;
    assert!(
        (daemonset_line - 1..=daemonset_line).contains(&location.line),
        "line {} for kind at {daemonset_line}",
        location.line
    );
    assert!(evidence(&outcome).contains("insecure.yaml:"));
}

#[tokio::test]
async fn privilege_escalation_must_be_explicitly_false_in_every_container_ephemeral_ones_included()
{
    let outcome = run("podsec.no-privilege-escalation", &["insecure.yaml"]).await;
    assert_eq!(outcome.status, Status::Fail);
    assert_eq!(
        flagged(&outcome),
        [
            "DaemonSet/shop/log-shipper",
            "CronJob/shop/report",
            "Pod/shop/debug-target"
        ]
    );
    let evidence = evidence(&outcome);
    assert!(evidence.contains("spec.jobTemplate.spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation is true"));
    assert!(evidence.contains("ephemeral container \"debugger\": spec.ephemeralContainers[0].securityContext.allowPrivilegeEscalation is not set"));
}

#[tokio::test]
async fn dropping_one_capability_is_not_dropping_all() {
    let outcome = run("podsec.capabilities-dropped", &["insecure.yaml"]).await;
    assert_eq!(outcome.status, Status::Fail);
    assert_eq!(
        flagged(&outcome),
        [
            "DaemonSet/shop/log-shipper",
            "CronJob/shop/report",
            "Pod/shop/debug-target"
        ]
    );
}

#[tokio::test]
async fn privileged_host_namespaces_and_host_path_are_caught_on_the_daemonset() {
    for id in [
        "podsec.no-privileged",
        "podsec.no-host-namespaces",
        "podsec.no-host-path",
    ] {
        let outcome = run(id, &["insecure.yaml"]).await;
        assert_eq!(outcome.status, Status::Fail, "{id}");
        assert_eq!(flagged(&outcome), ["DaemonSet/shop/log-shipper"], "{id}");
    }
    let namespaces = run("podsec.no-host-namespaces", &["insecure.yaml"]).await;
    assert!(evidence(&namespaces).contains("spec.template.spec.hostPID is true"));
    assert!(evidence(&namespaces).contains("spec.template.spec.hostNetwork is true"));
    let host_path = run("podsec.no-host-path", &["insecure.yaml"]).await;
    assert!(evidence(&host_path).contains("volume \"varlog\""));
    assert!(evidence(&host_path).contains("/var/log"));
}

#[tokio::test]
async fn seccomp_accepts_the_pod_level_profile_and_rejects_unconfined_or_none() {
    let outcome = run("podsec.seccomp-profile", &["insecure.yaml"]).await;
    assert_eq!(outcome.status, Status::Fail);
    assert_eq!(
        flagged(&outcome),
        ["DaemonSet/shop/log-shipper", "CronJob/shop/report"]
    );
    assert!(evidence(&outcome).contains("securityContext.seccompProfile.type is Unconfined"));
}

#[tokio::test]
async fn advisory_rules_warn_instead_of_failing() {
    for id in [
        "podsec.read-only-root-fs",
        "podsec.resource-limits",
        "podsec.image-pinned",
    ] {
        let outcome = run(id, &["insecure.yaml"]).await;
        assert_eq!(outcome.status, Status::Warn, "{id}: {outcome:?}");
    }
    let images = run("podsec.image-pinned", &["insecure.yaml"]).await;
    assert_eq!(
        flagged(&images),
        [
            "Deployment/shop/web",
            "DaemonSet/shop/log-shipper",
            "Pod/shop/debug-target"
        ]
    );
    assert!(evidence(&images).contains("\"registry.example/shop/web:latest\" uses the latest tag"));
}

#[tokio::test]
async fn namespaces_without_an_enforce_label_or_with_privileged_fail_and_system_ones_are_ignored() {
    let outcome = run("podsec.psa-enforce-label", &["unlabelled-namespaces.yaml"]).await;
    assert_eq!(outcome.status, Status::Fail);
    assert_eq!(flagged(&outcome), ["Namespace/shop", "Namespace/legacy"]);
    assert!(
        outcome.message.starts_with("2 of 2 namespaces"),
        "{}",
        outcome.message
    );
    assert!(evidence(&outcome).contains("privileged"));
}

#[tokio::test]
async fn the_lab_namespace_alone_is_judged_when_the_lab_names_it() {
    let params = Params {
        namespace: Some("batch".into()),
        ..Params::default()
    };
    let outcome = run_with(
        "podsec.psa-enforce-label",
        &["unlabelled-namespaces.yaml", "baseline-namespace.yaml"],
        params,
    )
    .await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
}

#[tokio::test]
async fn the_restricted_label_would_reject_every_insecure_workload() {
    let outcome = run("podsec.psa-workloads-admitted", &["insecure.yaml"]).await;
    assert_eq!(outcome.status, Status::Fail);
    assert_eq!(outcome.locations.len(), 4, "{outcome:?}");
    let evidence = evidence(&outcome);
    assert!(evidence.contains("enforce=restricted rejects it: Privileged Containers"));
    assert!(evidence.contains("Host Namespaces"));
    assert!(evidence.contains("Capabilities (capabilities_restricted): container \"shipper\""));
    // The pod's non-root setting does not cover the CronJob: it only sets a UID.
    assert!(evidence.contains("Running as Non-root (runAsNonRoot): container \"report\""));
}

#[tokio::test]
async fn baseline_admits_a_plain_pod_and_rejects_host_access() {
    let outcome = run(
        "podsec.psa-workloads-admitted",
        &["baseline-namespace.yaml"],
    )
    .await;
    assert_eq!(outcome.status, Status::Fail);
    assert_eq!(flagged(&outcome), ["Job/batch/node-cleaner"]);
    let evidence = evidence(&outcome);
    assert!(evidence.contains("enforce=baseline rejects it: HostPath Volumes"));
    assert!(evidence.contains("Host Ports"));
    assert!(evidence.contains("adds NET_ADMIN"));
    assert!(!evidence.contains("Running as Non-root"));
}

#[tokio::test]
async fn workloads_in_unlabelled_namespaces_are_not_judged_by_admission() {
    let outcome = run(
        "podsec.psa-workloads-admitted",
        &["unlabelled-namespaces.yaml"],
    )
    .await;
    assert_eq!(outcome.status, Status::Skip);
}

#[tokio::test]
async fn a_check_skips_when_no_workload_is_in_scope() {
    let params = Params {
        namespace: Some("elsewhere".into()),
        ..Params::default()
    };
    let outcome = run_with("podsec.no-privileged", &["insecure.yaml"], params).await;
    assert_eq!(outcome.status, Status::Skip);
    assert!(outcome.message.contains("elsewhere"));
}
