//! Pod Security Standards by policy version: each control's release boundaries as upstream's
//! pod-security-admission defines them, selected by the namespace's `enforce-version` label and
//! judged through `podsec.psa-workloads-admitted` on files, as `hardlab-grade static` reads them.
#![allow(clippy::unwrap_used)]

use hardlab_grader::inputs::documents::parse_text;
use hardlab_grader::{Context, Outcome, Status, catalog};

/// A container restricted admits at every version; cases change one thing.
const RESTRICTED_CONTAINER: &str = "
    - name: app
      image: nginx:1.27
      securityContext:
        allowPrivilegeEscalation: false
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
        capabilities: {drop: [ALL]}";

async fn admitted(level: &str, version: Option<&str>, pod_spec: &str) -> Outcome {
    let version_label = version
        .map(|v| format!("\n    pod-security.kubernetes.io/enforce-version: {v}"))
        .unwrap_or_default();
    let text = format!(
        "apiVersion: v1
kind: Namespace
metadata:
  name: team
  labels:
    pod-security.kubernetes.io/enforce: {level}{version_label}
---
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: team
spec:
{pod_spec}
"
    );
    let ctx = Context::from_documents(parse_text("pss.yaml", &text).unwrap());
    let check = catalog::find("podsec.psa-workloads-admitted").unwrap();
    (check.run)(&ctx).await.unwrap()
}

fn restricted_pod(extra_pod: &str, container_extra: &str) -> String {
    format!("{extra_pod}  containers:{RESTRICTED_CONTAINER}{container_extra}")
}

/// `(level, spec, upstream id, last version that admits, first that rejects)`; `None` for a
/// direction where the later version admits instead (an allowance added).
struct Case {
    name: &'static str,
    level: &'static str,
    spec: String,
    control: &'static str,
    before: &'static str,
    from: &'static str,
    /// true: rejected from `from` on; false: rejected before, admitted from `from`.
    tightened: bool,
}

fn cases() -> Vec<Case> {
    let probe_host =
        "\n      livenessProbe:\n        httpGet: {host: 169.254.169.254, path: /, port: 80}";
    let sysctl =
        |name: &str| format!("  securityContext:\n    sysctls: [{{name: {name}, value: \"1\"}}]\n");
    vec![
        Case {
            name: "probe hosts",
            level: "baseline",
            spec: restricted_pod("", probe_host),
            control: "hostProbesAndHostLifecycle",
            before: "v1.33",
            from: "v1.34",
            tightened: true,
        },
        Case {
            name: "lifecycle tcpSocket host",
            level: "restricted",
            spec: restricted_pod(
                "",
                "\n      lifecycle:\n        preStop:\n          tcpSocket: {host: 10.0.0.1, port: 22}",
            ),
            control: "hostProbesAndHostLifecycle",
            before: "v1.33",
            from: "v1.34",
            tightened: true,
        },
        Case {
            name: "ip_local_reserved_ports",
            level: "baseline",
            spec: format!("{}  containers:{RESTRICTED_CONTAINER}", sysctl("net.ipv4.ip_local_reserved_ports")),
            control: "sysctls",
            before: "v1.26",
            from: "v1.27",
            tightened: false,
        },
        Case {
            name: "tcp_keepalive_time",
            level: "baseline",
            spec: format!("{}  containers:{RESTRICTED_CONTAINER}", sysctl("net.ipv4.tcp_keepalive_time")),
            control: "sysctls",
            before: "v1.28",
            from: "v1.29",
            tightened: false,
        },
        Case {
            name: "tcp_rmem",
            level: "baseline",
            spec: format!("{}  containers:{RESTRICTED_CONTAINER}", sysctl("net.ipv4.tcp_rmem")),
            control: "sysctls",
            before: "v1.31",
            from: "v1.32",
            tightened: false,
        },
        Case {
            name: "tcp_notsent_lowat",
            level: "baseline",
            spec: format!("{}  containers:{RESTRICTED_CONTAINER}", sysctl("net.ipv4.tcp_notsent_lowat")),
            control: "sysctls",
            before: "v1.36",
            from: "v1.37",
            tightened: false,
        },
        Case {
            name: "container_engine_t",
            level: "baseline",
            spec: restricted_pod("  securityContext:\n    seLinuxOptions: {type: container_engine_t}\n", ""),
            control: "seLinuxOptions",
            before: "v1.30",
            from: "v1.31",
            tightened: false,
        },
        Case {
            name: "procMount with hostUsers false, baseline",
            level: "baseline",
            spec: restricted_pod("  hostUsers: false\n", "\n        procMount: Unmasked"),
            control: "procMount",
            before: "v1.34",
            from: "v1.35",
            tightened: false,
        },
        Case {
            name: "runAsNonRoot unset with hostUsers false",
            level: "restricted",
            spec: format!(
                "  hostUsers: false\n  containers:{}",
                RESTRICTED_CONTAINER.replace("\n        runAsNonRoot: true", "")
            ),
            control: "runAsNonRoot",
            before: "v1.34",
            from: "v1.35",
            tightened: false,
        },
        Case {
            name: "runAsUser 0",
            level: "restricted",
            spec: restricted_pod("", "\n        runAsUser: 0"),
            control: "runAsUser",
            before: "v1.22",
            from: "v1.23",
            tightened: true,
        },
        Case {
            name: "windows pods and the Linux-only controls",
            level: "restricted",
            spec: "  os: {name: windows}\n  securityContext: {runAsNonRoot: true}\n  containers:\n    - name: app\n      image: mcr.microsoft.com/windows/nanoserver:ltsc2022".to_owned(),
            control: "allowPrivilegeEscalation",
            before: "v1.24",
            from: "v1.25",
            tightened: false,
        },
        Case {
            name: "drop ALL",
            level: "restricted",
            spec: restricted_pod("", "").replace("\n        capabilities: {drop: [ALL]}", ""),
            control: "capabilities_restricted",
            before: "v1.21",
            from: "v1.22",
            tightened: true,
        },
        Case {
            name: "seccomp field",
            level: "restricted",
            spec: restricted_pod("", "").replace("\n        seccompProfile: {type: RuntimeDefault}", ""),
            control: "seccompProfile_restricted",
            before: "v1.18",
            from: "v1.19",
            tightened: true,
        },
        Case {
            name: "allowPrivilegeEscalation",
            level: "restricted",
            spec: restricted_pod("", "").replace("\n        allowPrivilegeEscalation: false", ""),
            control: "allowPrivilegeEscalation",
            before: "v1.7",
            from: "v1.8",
            tightened: true,
        },
    ]
}

#[tokio::test]
async fn each_control_changes_at_its_upstream_release() {
    for case in cases() {
        let before = admitted(case.level, Some(case.before), &case.spec).await;
        let from = admitted(case.level, Some(case.from), &case.spec).await;
        let (rejected, admitted_outcome, at) = if case.tightened {
            (&from, &before, case.from)
        } else {
            (&before, &from, case.before)
        };
        assert_eq!(
            rejected.status,
            Status::Fail,
            "{}: {rejected:#?}",
            case.name
        );
        let evidence = rejected.evidence.clone().unwrap();
        assert!(
            evidence.contains(&format!("({})", case.control)),
            "{}: {evidence}",
            case.name
        );
        assert!(
            evidence.contains(&format!("[policy {at}]")),
            "{}: {evidence}",
            case.name
        );
        assert_eq!(
            admitted_outcome.status,
            Status::Pass,
            "{}: {admitted_outcome:#?}",
            case.name
        );
    }
}

#[tokio::test]
async fn without_enforce_version_a_static_scan_judges_by_the_newest_policy() {
    let spec = restricted_pod(
        "",
        "\n      readinessProbe:\n        tcpSocket: {host: metadata.internal, port: 80}",
    );
    for version in [None, Some("latest"), Some("v1.99")] {
        let outcome = admitted("baseline", version, &spec).await;
        assert_eq!(outcome.status, Status::Fail, "{version:?}: {outcome:#?}");
        assert!(outcome.evidence.unwrap().contains(&format!(
            "[policy v1.{}]",
            hardlab_grader::checks::podsec::LATEST_MINOR
        )));
    }
    // An old label is honoured: before 1.34 the probe host is admitted.
    assert_eq!(
        admitted("baseline", Some("v1.30"), &spec).await.status,
        Status::Pass
    );
}

#[tokio::test]
async fn restricted_volume_types_follow_upstream_image_included() {
    let with_volume = |volume: &str| {
        format!(
            "{}\n  volumes:\n    - name: data\n      {volume}\n",
            restricted_pod("", "")
        )
    };
    let image = admitted(
        "restricted",
        None,
        &with_volume("image: {reference: registry.example/data:1}"),
    )
    .await;
    assert_eq!(image.status, Status::Pass, "{image:#?}");
    let nfs = admitted(
        "restricted",
        None,
        &with_volume("nfs: {server: nfs.example, path: /x}"),
    )
    .await;
    assert_eq!(nfs.status, Status::Fail);
    assert!(
        nfs.evidence
            .unwrap()
            .contains("Volume Types (restrictedVolumes)")
    );
    // Baseline allows nfs; it rejects hostPath.
    let baseline = admitted(
        "baseline",
        None,
        &with_volume("nfs: {server: nfs.example, path: /x}"),
    )
    .await;
    assert_eq!(baseline.status, Status::Pass);
}

#[tokio::test]
async fn a_pod_level_run_as_non_root_false_is_rejected_even_when_containers_say_true() {
    let spec = restricted_pod("  securityContext: {runAsNonRoot: false}\n", "");
    let outcome = admitted("restricted", None, &spec).await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(
        outcome
            .evidence
            .unwrap()
            .contains("spec.securityContext.runAsNonRoot is false")
    );
}

#[tokio::test]
async fn legacy_seccomp_annotations_count_only_before_1_19() {
    let spec =
        restricted_pod("", "").replace("\n        seccompProfile: {type: RuntimeDefault}", "");
    let annotated = |version: &'static str| {
        let spec = spec.clone();
        async move {
            let text = format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n  labels:\n    pod-security.kubernetes.io/enforce: baseline\n    pod-security.kubernetes.io/enforce-version: {version}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  namespace: team\n  annotations:\n    seccomp.security.alpha.kubernetes.io/pod: unconfined\nspec:\n{spec}\n"
            );
            let ctx = Context::from_documents(parse_text("pss.yaml", &text).unwrap());
            (catalog::find("podsec.psa-workloads-admitted").unwrap().run)(&ctx)
                .await
                .unwrap()
        }
    };
    let old = annotated("v1.18").await;
    assert_eq!(old.status, Status::Fail, "{old:#?}");
    assert!(old.evidence.unwrap().contains("(seccompProfile_baseline)"));
    assert_eq!(annotated("v1.19").await.status, Status::Pass);
}

#[tokio::test]
async fn restricted_keeps_rejecting_unmasked_proc_in_a_user_namespace_from_1_35() {
    // Baseline relaxes procMount for hostUsers: false from 1.35 (a case above); restricted's own
    // procMount_restricted control takes over from that release and still rejects it.
    let spec = restricted_pod("  hostUsers: false\n", "\n        procMount: Unmasked");
    let old = admitted("restricted", Some("v1.34"), &spec).await;
    assert!(old.evidence.unwrap().contains("(procMount)"));
    let new = admitted("restricted", Some("v1.35"), &spec).await;
    assert_eq!(new.status, Status::Fail);
    let evidence = new.evidence.unwrap();
    assert!(evidence.contains("(procMount_restricted)"), "{evidence}");
    assert!(!evidence.contains("(procMount)"), "{evidence}");
}

/// Lab 5's per-control scan (the rules `podsec.incoming-manifests-clean` applies, each a check of
/// a static scan) fails a workload exactly when the restricted level it cites rejects it.
#[tokio::test]
async fn the_per_control_scan_agrees_with_restricted() {
    use hardlab_grader::checks::podsec::failing_rule_ids;
    use hardlab_grader::{RunOptions, run_checks};

    let variants: Vec<(&str, String)> = vec![
        ("hardened", restricted_pod("", "")),
        (
            "nfs volume",
            format!(
                "{}\n  volumes:\n    - name: data\n      nfs: {{server: nfs.example, path: /x}}\n",
                restricted_pod("", "")
            ),
        ),
        (
            "added SYS_TIME beside drop ALL",
            restricted_pod("", "").replace("{drop: [ALL]}", "{drop: [ALL], add: [SYS_TIME]}"),
        ),
        (
            "a UID but no runAsNonRoot",
            restricted_pod("", "").replace("runAsNonRoot: true", "runAsUser: 1000"),
        ),
        (
            "host port",
            restricted_pod("", "\n      ports: [{containerPort: 80, hostPort: 80}]"),
        ),
        (
            "unsafe sysctl",
            restricted_pod(
                "  securityContext:\n    sysctls: [{name: kernel.msgmax, value: \"1\"}]\n",
                "",
            ),
        ),
        (
            "apparmor unconfined",
            restricted_pod("", "\n        appArmorProfile: {type: Unconfined}"),
        ),
        (
            "seccomp only by annotation",
            restricted_pod("", "").replace("\n        seccompProfile: {type: RuntimeDefault}", ""),
        ),
        (
            "NET_BIND_SERVICE only",
            restricted_pod("", "")
                .replace("{drop: [ALL]}", "{drop: [ALL], add: [NET_BIND_SERVICE]}"),
        ),
    ];
    let ids = failing_rule_ids();
    for (name, spec) in variants {
        let rejected = admitted("restricted", None, &spec).await.status == Status::Fail;
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  namespace: team\n  annotations:\n    seccomp.security.alpha.kubernetes.io/pod: runtime/default\nspec:\n{spec}\n"
        );
        let ctx = Context::from_documents(parse_text("scan.yaml", &text).unwrap());
        let checks = RunOptions {
            labs: Vec::new(),
            checks: ids.iter().map(|id| (*id).to_owned()).collect(),
        }
        .select()
        .unwrap();
        let failing: Vec<String> = run_checks(&ctx, &checks)
            .await
            .into_iter()
            .filter(|r| r.status == Status::Fail)
            .map(|r| r.check)
            .collect();
        assert_eq!(
            !failing.is_empty(),
            rejected,
            "{name}: restricted rejects: {rejected}, scan fails: {failing:?}"
        );
    }
}
