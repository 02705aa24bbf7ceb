//! Lab 5: pod security. Per-workload securityContext rules (Pods and the pod templates of
//! controllers, init and ephemeral containers included) and Pod Security Admission: the
//! namespace labels, and which existing workloads the declared level would reject.

mod incoming;
mod pss;
mod rules;
mod workload;

use std::collections::HashMap;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::catalog::{CheckDef, CheckMeta, Lab};
use crate::context::Mode;
use crate::inputs::objects::{KubeObject, objects};
use crate::model::{Location, Outcome, Severity};
use crate::{Context, Result};

pub use incoming::{
    DEFAULT_DIR as INCOMING_DEFAULT_DIR, DIR_PARAM as INCOMING_DIR_PARAM, failing_rule_ids,
};
pub use pss::{ENFORCE_LABEL, ENFORCE_VERSION_LABEL, LATEST_MINOR, Level, PolicyVersion};
pub use workload::SYSTEM_NAMESPACES;
use workload::{Workload, effective_namespace, namespace_in_scope, workloads_in_scope};

/// At most this many findings are spelled out in a check's evidence.
const EVIDENCE_LINES: usize = 50;

const PSS_URL: &str = "https://kubernetes.io/docs/concepts/security/pod-security-standards/";
const NSA: &str = "NSA/CISA Kubernetes Hardening Guide v1.2: Kubernetes Pod security";

type Rule = fn(&Workload) -> Vec<String>;

fn check(meta: CheckMeta, run: fn(&Context) -> BoxFuture<'_, Result<Outcome>>) -> CheckDef {
    CheckDef { meta, run }
}

pub fn checks() -> Vec<CheckDef> {
    vec![
        check(
            Lab::PodSecurity.meta(
                "podsec.run-as-non-root",
                "Containers run as a non-root user",
                "security-context",
                Severity::High,
                "Set `securityContext.runAsNonRoot: true` (and a non-zero `runAsUser`) on the pod or on every container, \
                 init and ephemeral containers included; never `runAsUser: 0`.",
                &[
                    "CIS Kubernetes Benchmark 5.2.7",
                    "NSA/CISA Kubernetes Hardening Guide v1.2: Non-root containers and rootless container engines",
                    "Pod Security Standards: Restricted, Running as Non-root",
                    PSS_URL,
                ],
            ),
            |ctx| {
                workload_check(
                    ctx,
                    rules::run_as_non_root,
                    Finding::Fail,
                    "runs as non-root",
                )
                .boxed()
            },
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.no-privilege-escalation",
                "Containers cannot gain more privileges than their process",
                "security-context",
                Severity::High,
                "Set `securityContext.allowPrivilegeEscalation: false` on every container (it defaults to true).",
                &[
                    "CIS Kubernetes Benchmark 5.2.6",
                    NSA,
                    "Pod Security Standards: Restricted, Privilege Escalation",
                    PSS_URL,
                ],
            ),
            |ctx| {
                workload_check(
                    ctx,
                    rules::no_privilege_escalation,
                    Finding::Fail,
                    "sets allowPrivilegeEscalation: false",
                )
                .boxed()
            },
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.capabilities-dropped",
                "Containers drop all Linux capabilities",
                "security-context",
                Severity::Medium,
                "Add `securityContext.capabilities.drop: [ALL]` to every container, and add back only what it needs \
                 (at most NET_BIND_SERVICE under restricted).",
                &[
                    "CIS Kubernetes Benchmark 5.2.9",
                    "CIS Kubernetes Benchmark 5.2.10",
                    NSA,
                    "Pod Security Standards: Restricted, Capabilities",
                    PSS_URL,
                ],
            ),
            |ctx| {
                workload_check(
                    ctx,
                    rules::capabilities_dropped,
                    Finding::Fail,
                    "drops ALL capabilities",
                )
                .boxed()
            },
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.no-privileged",
                "No privileged containers",
                "security-context",
                Severity::Critical,
                "Remove `securityContext.privileged: true`; grant the single capability the container needs instead.",
                &[
                    "CIS Kubernetes Benchmark 5.2.2",
                    NSA,
                    "Pod Security Standards: Baseline, Privileged Containers",
                    PSS_URL,
                ],
            ),
            |ctx| {
                workload_check(ctx, rules::no_privileged, Finding::Fail, "is unprivileged").boxed()
            },
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.no-host-namespaces",
                "Pods do not share the host's PID, IPC or network namespace",
                "host-isolation",
                Severity::High,
                "Remove `hostPID`, `hostIPC` and `hostNetwork` (or set them to false) in the pod spec.",
                &[
                    "CIS Kubernetes Benchmark 5.2.3",
                    "CIS Kubernetes Benchmark 5.2.4",
                    "CIS Kubernetes Benchmark 5.2.5",
                    NSA,
                    "Pod Security Standards: Baseline, Host Namespaces",
                    PSS_URL,
                ],
            ),
            |ctx| {
                workload_check(
                    ctx,
                    rules::no_host_namespaces,
                    Finding::Fail,
                    "uses its own namespaces",
                )
                .boxed()
            },
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.no-host-path",
                "Pods do not mount directories of the node",
                "host-isolation",
                Severity::High,
                "Replace `hostPath` volumes with `emptyDir`, a ConfigMap, a Secret or a PersistentVolumeClaim.",
                &[
                    "CIS Kubernetes Benchmark 5.2.12",
                    NSA,
                    "Pod Security Standards: Baseline, HostPath Volumes",
                    PSS_URL,
                ],
            ),
            |ctx| {
                workload_check(
                    ctx,
                    rules::no_host_path,
                    Finding::Fail,
                    "mounts no hostPath",
                )
                .boxed()
            },
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.volume-types",
                "Pods use only the volume types the restricted standard allows",
                "host-isolation",
                Severity::Medium,
                "Use configMap, secret, emptyDir, projected, downwardAPI, persistentVolumeClaim, csi, ephemeral or \
                 image volumes; reach network storage (nfs, iscsi, ...) through a PersistentVolumeClaim instead.",
                &["Pod Security Standards: Restricted, Volume Types", PSS_URL],
            ),
            |ctx| {
                workload_check(
                    ctx,
                    rules::restricted_volumes,
                    Finding::Fail,
                    "uses only restricted volume types",
                )
                .boxed()
            },
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.restricted-standard",
                "Workloads meet the restricted Pod Security Standard, every control",
                "security-context",
                Severity::High,
                "Fix each listed control (named as pod-security-admission names it); the other podsec checks explain \
                 the common ones. Then label the namespace `pod-security.kubernetes.io/enforce: restricted`.",
                &[
                    "Pod Security Standards: Restricted",
                    "https://github.com/kubernetes/pod-security-admission/tree/master/policy",
                    PSS_URL,
                ],
            ),
            |ctx| {
                workload_check(
                    ctx,
                    restricted_standard,
                    Finding::Fail,
                    "meets the restricted standard",
                )
                .boxed()
            },
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.seccomp-profile",
                "Containers run with a seccomp profile",
                "security-context",
                Severity::Medium,
                "Set `securityContext.seccompProfile.type: RuntimeDefault` (or `Localhost` with a profile) on the pod, \
                 and set no container to `Unconfined`.",
                &[
                    "CIS Kubernetes Benchmark 5.7.2",
                    NSA,
                    "Pod Security Standards: Restricted, Seccomp",
                    PSS_URL,
                ],
            ),
            |ctx| {
                workload_check(
                    ctx,
                    rules::seccomp_profile,
                    Finding::Fail,
                    "has a seccomp profile",
                )
                .boxed()
            },
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.read-only-root-fs",
                "Containers have a read-only root filesystem",
                "hygiene",
                Severity::Low,
                "Set `securityContext.readOnlyRootFilesystem: true` and mount an `emptyDir` where the app must write.",
                &["NSA/CISA Kubernetes Hardening Guide v1.2: Immutable container file systems"],
            ),
            |ctx| {
                workload_check(
                    ctx,
                    rules::read_only_root_fs,
                    Finding::Warn,
                    "has a read-only root filesystem",
                )
                .boxed()
            },
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.resource-limits",
                "Containers declare CPU and memory limits",
                "hygiene",
                Severity::Low,
                "Set `resources.limits.cpu` and `resources.limits.memory` on every container and init container \
                 (or a LimitRange in the namespace).",
                &[
                    "NSA/CISA Kubernetes Hardening Guide v1.2: Pod security, resource policies",
                    "https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/",
                ],
            ),
            |ctx| {
                workload_check(
                    ctx,
                    rules::resource_limits,
                    Finding::Warn,
                    "declares CPU and memory limits",
                )
                .boxed()
            },
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.image-pinned",
                "Images are pinned to a tag or digest",
                "hygiene",
                Severity::Low,
                "Refer to images by digest (`image@sha256:...`) or at least by a fixed version tag, never `latest` or no tag.",
                &[
                    "NSA/CISA Kubernetes Hardening Guide v1.2: Container image scanning",
                    "https://kubernetes.io/docs/concepts/containers/images/#image-names",
                ],
            ),
            |ctx| {
                workload_check(
                    ctx,
                    rules::image_pinned,
                    Finding::Warn,
                    "uses pinned images",
                )
                .boxed()
            },
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.psa-enforce-label",
                "Namespaces enforce a Pod Security Standard",
                "admission",
                Severity::High,
                "Label the namespace: `kubectl label namespace NS pod-security.kubernetes.io/enforce=restricted` \
                 (or `baseline` where restricted cannot be met).",
                &[
                    "CIS Kubernetes Benchmark 5.2.1",
                    "NSA/CISA Kubernetes Hardening Guide v1.2: Pod security enforcement",
                    "https://kubernetes.io/docs/concepts/security/pod-security-admission/",
                ],
            ),
            |ctx| psa_enforce_label(ctx).boxed(),
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.psa-workloads-admitted",
                "Existing workloads meet their namespace's Pod Security Standard",
                "admission",
                Severity::High,
                "Fix each listed field, or the label will reject the pods when they are next created \
                 (`kubectl label --dry-run=server --overwrite ns NS pod-security.kubernetes.io/enforce=LEVEL` shows the same).",
                &[
                    "CIS Kubernetes Benchmark 5.2.1",
                    "NSA/CISA Kubernetes Hardening Guide v1.2: Pod security enforcement",
                    "Pod Security Standards: Baseline and Restricted",
                    PSS_URL,
                ],
            ),
            |ctx| psa_workloads_admitted(ctx).boxed(),
        ),
        check(
            Lab::PodSecurity.meta(
                "podsec.incoming-manifests-clean",
                "Manifests waiting to be applied pass the pod security rules",
                "scan-manifests",
                Severity::High,
                "Fix each listed field in the file (non-root user, no privileged mode, no host namespaces or \
                 hostPath, `drop: [ALL]`, no privilege escalation, a seccomp profile), or send the manifests back; \
                 `hardlab-grade static --lab pod-security DIR` shows the same findings. The folder is `params.extra.manifests_dir` \
                 (default `/root/pod-security/incoming`) on the control-plane node.",
                &[
                    "NSA/CISA Kubernetes Hardening Guide v1.2: Kubernetes Pod security",
                    "Pod Security Standards: Baseline and Restricted",
                    PSS_URL,
                ],
            )
            .exercise(),
            |ctx| incoming::incoming_manifests_clean(ctx).boxed(),
        ),
    ]
}

/// Every restricted control at the newest policy, whatever the namespace enforces: the standard
/// the per-control checks cite, judged whole so that a scan agrees with what restricted rejects.
pub(crate) fn restricted_standard(workload: &Workload) -> Vec<String> {
    pss::violations(workload, Level::Restricted, PolicyVersion::LATEST)
}

/// What a rule's findings make the check: a failure, or a warning for the advisory rules.
#[derive(Debug, Clone, Copy)]
enum Finding {
    Fail,
    Warn,
}

/// Where the workload is for a reader: `Deployment/lab/web (deploy.yaml:12)`, or the ID live.
fn describe(object: &KubeObject) -> String {
    match &object.location {
        Some(location) if !location.file.is_empty() => {
            format!("{} ({}:{})", object.id(), location.file, location.line)
        }
        _ => object.id(),
    }
}

fn scope_description(ctx: &Context) -> String {
    match (&ctx.params.namespace, ctx.mode) {
        (Some(namespace), _) => format!("namespace {namespace}"),
        (None, Mode::Static) => "the inputs".into(),
        (None, Mode::Live) => format!("all namespaces but {}", SYSTEM_NAMESPACES.join(", ")),
    }
}

/// Turns per-workload problems into an outcome: which workloads, which containers, which fields.
fn verdict(
    total: usize,
    offenders: &[(&KubeObject, Vec<String>)],
    finding: Finding,
    good: &str,
    scope: &str,
) -> Outcome {
    if offenders.is_empty() {
        return Outcome::pass(format!("each of the {total} workloads in {scope} {good}"));
    }
    let locations: Vec<Location> = offenders
        .iter()
        .map(|(object, _)| object.finding_location())
        .collect();
    let lines: Vec<String> = offenders
        .iter()
        .flat_map(|(object, problems)| {
            let place = describe(object);
            problems
                .iter()
                .map(move |problem| format!("{place}: {problem}"))
        })
        .collect();
    let mut evidence = lines
        .iter()
        .take(EVIDENCE_LINES)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    if lines.len() > EVIDENCE_LINES {
        evidence.push_str(&format!("\n... and {} more", lines.len() - EVIDENCE_LINES));
    }
    let names: Vec<String> = offenders.iter().take(5).map(|(o, _)| o.id()).collect();
    let more = if offenders.len() > 5 { ", ..." } else { "" };
    let message = format!(
        "{} of {total} workloads in {scope} do not pass ({}{more}); first: {}",
        offenders.len(),
        names.join(", "),
        lines.first().map(String::as_str).unwrap_or_default()
    );
    let outcome = match finding {
        Finding::Fail => Outcome::fail(message),
        Finding::Warn => Outcome::warn(message),
    };
    let problems = offenders
        .iter()
        .map(|(_, problems)| problems.clone())
        .collect();
    outcome
        .with_evidence(evidence)
        .with_locations(locations)
        .with_location_problems(problems)
}

async fn workload_check(
    ctx: &Context,
    rule: Rule,
    finding: Finding,
    good: &str,
) -> Result<Outcome> {
    let objects = objects(ctx).await?;
    let workloads = workloads_in_scope(&objects, &ctx.params, ctx.mode);
    let scope = scope_description(ctx);
    if workloads.is_empty() {
        return Ok(Outcome::skip(format!(
            "no Pods or pod templates in {scope}"
        )));
    }
    let offenders: Vec<(&KubeObject, Vec<String>)> = workloads
        .iter()
        .filter_map(|workload| {
            let problems = rule(workload);
            (!problems.is_empty()).then_some((workload.object, problems))
        })
        .collect();
    Ok(verdict(workloads.len(), &offenders, finding, good, &scope))
}

fn label<'a>(object: &'a KubeObject, key: &str) -> Option<&'a str> {
    object
        .value
        .get("metadata")?
        .get("labels")?
        .get(key)?
        .as_str()
}

/// The Namespace objects in scope, or why there are none to judge.
fn namespaces_in_scope<'a>(
    ctx: &Context,
    objects: &'a [KubeObject],
) -> std::result::Result<Vec<&'a KubeObject>, Outcome> {
    let namespaces: Vec<&KubeObject> = objects
        .iter()
        .filter(|object| object.kind == "Namespace")
        .filter(|object| namespace_in_scope(&object.name, &ctx.params))
        .collect();
    if !namespaces.is_empty() {
        return Ok(namespaces);
    }
    Err(match (&ctx.params.namespace, ctx.mode) {
        (Some(namespace), Mode::Live) => {
            Outcome::fail(format!("namespace {namespace} does not exist"))
        }
        (Some(namespace), Mode::Static) => Outcome::skip(format!(
            "the inputs hold no Namespace object named {namespace}"
        )),
        (None, _) => Outcome::skip(format!(
            "no Namespace objects in {}",
            scope_description(ctx)
        )),
    })
}

async fn psa_enforce_label(ctx: &Context) -> Result<Outcome> {
    let objects = objects(ctx).await?;
    let namespaces = match namespaces_in_scope(ctx, &objects) {
        Ok(namespaces) => namespaces,
        Err(outcome) => return Ok(outcome),
    };
    let total = namespaces.len();
    let offenders: Vec<(&KubeObject, Vec<String>)> = namespaces
        .into_iter()
        .filter_map(|namespace| {
            let problem = match label(namespace, ENFORCE_LABEL) {
                None => format!("has no {ENFORCE_LABEL} label (PSA admits anything)"),
                Some(value) => match Level::parse(value) {
                    Some(Level::Baseline | Level::Restricted) => return None,
                    Some(Level::Privileged) => {
                        format!("{ENFORCE_LABEL} is privileged (PSA admits anything)")
                    }
                    None => {
                        format!("{ENFORCE_LABEL} is {value:?}, not a Pod Security Standard level")
                    }
                },
            };
            Some((namespace, vec![problem]))
        })
        .collect();
    if offenders.is_empty() {
        return Ok(Outcome::pass(format!(
            "each of the {total} namespaces in {} enforces baseline or restricted",
            scope_description(ctx)
        )));
    }
    let mut outcome = verdict(
        total,
        &offenders,
        Finding::Fail,
        "",
        &scope_description(ctx),
    );
    outcome.message = outcome.message.replacen("workloads", "namespaces", 1);
    Ok(outcome)
}

/// The policy version a namespace without `enforce-version` gets: the cluster's release live
/// (PSA's `latest` is the release it runs in), this grader's newest policy in a static scan.
async fn default_policy_version(ctx: &Context) -> (PolicyVersion, String) {
    if let (Mode::Live, Some(client)) = (ctx.mode, &ctx.kube)
        && let Ok(info) = client.apiserver_version().await
        && let Ok(minor) = info.minor.trim_end_matches('+').parse::<u32>()
    {
        let version = PolicyVersion::of_release(minor);
        return (
            version,
            format!("the cluster's release, {}", info.git_version),
        );
    }
    (PolicyVersion::LATEST, "latest".to_owned())
}

async fn psa_workloads_admitted(ctx: &Context) -> Result<Outcome> {
    let objects = objects(ctx).await?;
    let (default_version, default_source) = default_policy_version(ctx).await;
    let levels: HashMap<&str, (Level, PolicyVersion)> = objects
        .iter()
        .filter(|object| object.kind == "Namespace")
        .filter_map(|namespace| {
            let level = Level::parse(label(namespace, ENFORCE_LABEL)?)?;
            // An unreadable version label falls back to the default, as PSA does.
            let version = label(namespace, ENFORCE_VERSION_LABEL)
                .and_then(PolicyVersion::parse)
                // A label newer than the cluster gets the cluster's policy, as PSA gives it.
                .map_or(default_version, |version| version.min(default_version));
            Some((namespace.name.as_str(), (level, version)))
        })
        .collect();
    let workloads = workloads_in_scope(&objects, &ctx.params, ctx.mode);
    let judged: Vec<(Workload, Level, PolicyVersion)> = workloads
        .iter()
        .filter_map(|workload| {
            let namespace = effective_namespace(workload.object, &ctx.params);
            let (level, version) = *levels.get(namespace)?;
            (level > Level::Privileged).then_some((*workload, level, version))
        })
        .collect();
    let scope = scope_description(ctx);
    if judged.is_empty() {
        return Ok(Outcome::skip(format!(
            "no workload in {scope} is in a namespace that enforces baseline or restricted \
             ({} workloads, {} namespaces with an enforce label)",
            workloads.len(),
            levels.len()
        )));
    }
    let offenders: Vec<(&KubeObject, Vec<String>)> = judged
        .iter()
        .filter_map(|(workload, level, version)| {
            let problems: Vec<String> = pss::violations(workload, *level, *version)
                .into_iter()
                .map(|violation| {
                    format!(
                        "{ENFORCE_LABEL}={} rejects it: {violation} [policy {version}]",
                        level.as_str()
                    )
                })
                .collect();
            (!problems.is_empty()).then_some((workload.object, problems))
        })
        .collect();
    let mut outcome = verdict(
        judged.len(),
        &offenders,
        Finding::Fail,
        "meets the level its namespace enforces",
        &scope,
    );
    if outcome.status == crate::Status::Fail {
        outcome.message.push_str(
            " (for controllers, PSA rejects the pods they create, so the workload stops scaling)",
        );
    }
    outcome.message.push_str(&format!(
        "; policy versions from {ENFORCE_VERSION_LABEL}, else {default_version} ({default_source})"
    ));
    Ok(outcome)
}
