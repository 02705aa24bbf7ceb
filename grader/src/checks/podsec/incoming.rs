//! `podsec.incoming-manifests-clean`: manifests waiting in a folder on the control-plane node (lab
//! 5's vendor chart) meet the pod security rules before anyone applies them. The files are read
//! through the node access and judged as `hardlab-grade static` would judge them, so a learner who
//! makes the scan clean makes this check pass, and nothing else does.

use crate::checks::podsec::rules;
use crate::checks::podsec::workload::Workload;
use crate::context::Mode;
use crate::inputs::documents::{ReadDocuments, SkipCause, add_directory_file, is_manifest_name};
use crate::inputs::objects::{KubeObject, objects_in_documents};
use crate::model::{Location, Outcome};
use crate::{Context, Result};

/// The `Params.extra` key naming the folder on the node.
pub const DIR_PARAM: &str = "manifests_dir";
/// Where lab 5's setup puts the vendor chart.
pub const DEFAULT_DIR: &str = "/root/pod-security/incoming";

/// The workload rules whose findings fail a static scan (the advisory ones only warn there), with
/// the ID of the check that applies each of them, so a finding names the rule a learner can look up.
const FAILING_RULES: &[(&str, super::Rule)] = &[
    ("podsec.run-as-non-root", rules::run_as_non_root),
    (
        "podsec.no-privilege-escalation",
        rules::no_privilege_escalation,
    ),
    ("podsec.capabilities-dropped", rules::capabilities_dropped),
    ("podsec.no-privileged", rules::no_privileged),
    ("podsec.no-host-namespaces", rules::no_host_namespaces),
    ("podsec.no-host-path", rules::no_host_path),
    ("podsec.volume-types", rules::restricted_volumes),
    ("podsec.seccomp-profile", rules::seccomp_profile),
    // The whole standard too, so that the scan rejects what restricted rejects (host ports,
    // sysctls, SELinux, AppArmor, /proc, probe hosts have no check of their own).
    ("podsec.restricted-standard", super::restricted_standard),
];

/// The IDs of the checks whose rules this check applies to the folder.
pub fn failing_rule_ids() -> Vec<&'static str> {
    FAILING_RULES.iter().map(|(id, _)| *id).collect()
}

pub async fn incoming_manifests_clean(ctx: &Context) -> Result<Outcome> {
    let configured = ctx
        .params
        .extra
        .get(DIR_PARAM)
        .map_or(DEFAULT_DIR, String::as_str);
    let dir = match configured.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    if ctx.mode == Mode::Static {
        return Ok(Outcome::skip(format!(
            "{dir} is read on the control-plane node in live mode; in static mode the other \
             podsec checks judge the files given"
        )));
    }
    let Some(node) = &ctx.node else {
        return Ok(Outcome::skip(format!(
            "cannot grade: the grader has no node access (--node) to read {dir}"
        )));
    };
    let place = format!("{dir} on {}", node.describe());
    let names: Vec<String> = node
        .list_dir(dir)
        .await?
        .into_iter()
        .filter(|name| !name.starts_with('.') && is_manifest_name(name))
        .collect();
    if names.is_empty() {
        return Ok(Outcome::fail(format!(
            "{place} is missing or holds no manifest (.yaml, .yml or .json): there is nothing to \
             scan (the lab's setup puts the vendor chart there)"
        )));
    }

    let mut read = ReadDocuments::default();
    for name in &names {
        let path = if dir == "/" {
            format!("/{name}")
        } else {
            format!("{dir}/{name}")
        };
        // A file removed between listing and reading is simply no longer waiting to be applied.
        let Some(bytes) = node.read_file(&path).await? else {
            continue;
        };
        add_directory_file(&path, bytes, &mut read);
    }
    // A manifest that does not parse would not apply either: the learner's to fix.
    if let Some(invalid) = read
        .skipped
        .iter()
        .find(|skipped| skipped.cause == SkipCause::Invalid)
    {
        return Ok(Outcome::fail(format!(
            "a manifest in {place} cannot be read: {invalid}"
        )));
    }
    let notes = read
        .skipped
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    if read.documents.is_empty() {
        let outcome = Outcome::fail(format!(
            "none of the {} manifest files in {place} holds a Kubernetes object to scan",
            names.len()
        ));
        return Ok(if notes.is_empty() {
            outcome
        } else {
            outcome.with_evidence(notes)
        });
    }

    let objects = objects_in_documents(read.documents);
    let workloads: Vec<Workload> = objects.iter().filter_map(Workload::of).collect();
    let mut findings = Vec::new();
    let mut locations: Vec<Location> = Vec::new();
    for workload in &workloads {
        for (id, rule) in FAILING_RULES {
            let problems = rule(workload);
            if problems.is_empty() {
                continue;
            }
            let location = workload.object.finding_location();
            if !locations.contains(&location) {
                locations.push(location);
            }
            let at = file_line(workload.object);
            findings.extend(
                problems
                    .into_iter()
                    .map(|problem| format!("{at}: {} [{id}]: {problem}", workload.object.id())),
            );
        }
    }

    if findings.is_empty() {
        let outcome = Outcome::pass(format!(
            "the {} workloads in {} files in {place} pass every pod security rule a static scan \
             fails on",
            workloads.len(),
            names.len()
        ));
        return Ok(if notes.is_empty() {
            outcome
        } else {
            outcome.with_evidence(notes)
        });
    }
    let mut evidence = findings
        .iter()
        .take(super::EVIDENCE_LINES)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    if findings.len() > super::EVIDENCE_LINES {
        evidence.push_str(&format!(
            "\n... and {} more",
            findings.len() - super::EVIDENCE_LINES
        ));
    }
    if !notes.is_empty() {
        evidence.push('\n');
        evidence.push_str(&notes);
    }
    Ok(Outcome::fail(format!(
        "{} findings in {place} would fail a static scan; first: {}",
        findings.len(),
        findings.first().map(String::as_str).unwrap_or_default()
    ))
    .with_evidence(evidence)
    .with_locations(locations))
}

fn file_line(object: &KubeObject) -> String {
    match &object.location {
        Some(location) => format!("{}:{}", location.file, location.line),
        None => object.id(),
    }
}
