//! `netpol.live-probe`: where the lab's pods run, try each TCP connection of the matrix from
//! inside the source pod and compare what happened with what the policies say.

use std::time::Duration;

use super::engine::{Cluster, Protocol};
use super::matrix::{self, Edge};
use super::{NOT_RUNNING, lab_namespace};
use crate::context::Mode;
use crate::model::Outcome;
use crate::target::podexec::PodExec;
use crate::{Context, Result};

/// How long one connection attempt may take before it counts as refused.
const CONNECT_SECONDS: u64 = 2;
/// At most this many connections are probed (probing is the slow part of every netpol suite).
const MAX_PROBES: usize = 200;

pub async fn live_probe(ctx: &Context) -> Result<Outcome> {
    let (Mode::Live, Some(exec)) = (ctx.mode, ctx.pod_exec()) else {
        return Ok(Outcome::skip(format!(
            "{NOT_RUNNING}; static mode has no pods to probe"
        )));
    };
    let namespace = lab_namespace(ctx);
    let cluster = matrix::cluster(ctx).await?;
    Ok(probe_cluster(&cluster, namespace, exec.as_ref()).await)
}

/// The shell script that tries one TCP connection with whatever the source image has (`nc`, or
/// bash's `/dev/tcp`) and prints `open`, `closed` or `no-tool`.
pub fn connect_script(ip: &str, port: u16) -> String {
    format!(
        "if command -v nc >/dev/null 2>&1; then nc -z -w {CONNECT_SECONDS} {ip} {port} && echo open || echo closed; \
         elif command -v bash >/dev/null 2>&1; then timeout {CONNECT_SECONDS} bash -c '</dev/tcp/{ip}/{port}' \
         2>/dev/null && echo open || echo closed; else echo no-tool; fi"
    )
}

/// Probes every TCP connection of the matrix that starts in `namespace` and judges the
/// evidence, failing closed: a connection that differs fails; one that could not be probed
/// (no tool in the image, exec refused, beyond the probe limit) keeps the verdict from passing,
/// because the policies were then not shown to be enforced for it. The counts are reported.
pub async fn probe_cluster(cluster: &Cluster, namespace: &str, exec: &dyn PodExec) -> Outcome {
    let pods: Vec<_> = cluster
        .pods
        .iter()
        .filter(|pod| pod.namespace == namespace)
        .collect();
    let not_running: Vec<String> = pods
        .iter()
        .filter(|pod| pod.phase.as_deref() != Some("Running") || pod.ip.is_none())
        .map(|pod| {
            format!(
                "{} is {}",
                pod.id(),
                pod.phase.as_deref().unwrap_or("without a phase")
            )
        })
        .collect();
    if pods.is_empty() || !not_running.is_empty() {
        let detail = if pods.is_empty() {
            format!("no pods in {namespace}")
        } else {
            not_running.join(", ")
        };
        return Outcome::skip(format!("{NOT_RUNNING}; {detail}"));
    }

    let computed = matrix::build(cluster, Some(namespace));
    let edges: Vec<&Edge> = computed
        .edges
        .iter()
        .filter(|edge| {
            edge.protocol == Protocol::Tcp && edge.from.starts_with(&format!("{namespace}/"))
        })
        .collect();
    let total = edges.len();
    let beyond_limit = total.saturating_sub(MAX_PROBES);
    let edges = &edges[..total.min(MAX_PROBES)];
    let mut wrong = Vec::new();
    let mut unprobed = Vec::new();
    let mut correct = 0usize;
    for edge in edges {
        let (Some(source), Some(target)) = (cluster.pod(&edge.from), cluster.pod(&edge.to)) else {
            unprobed.push(format!(
                "{} -> {}:{}: a pod of the edge is not in the model",
                edge.from, edge.to, edge.port
            ));
            continue;
        };
        let Some(ip) = target.ip else {
            unprobed.push(format!(
                "{} -> {}:{}: target has no IP",
                edge.from, edge.to, edge.port
            ));
            continue;
        };
        let script = connect_script(&ip.to_string(), edge.port);
        let answer = exec
            .run(
                &source.namespace,
                &source.name,
                &script,
                Duration::from_secs(CONNECT_SECONDS + 10),
            )
            .await
            .and_then(|output| parse_connect_output(&output));
        match answer {
            Ok(connected) if connected == edge.allowed => correct += 1,
            Ok(connected) => wrong.push(format!(
                "{} -> {} on {}/TCP: {} but the policies say {}",
                edge.from,
                edge.to,
                edge.port,
                if connected {
                    "connected"
                } else {
                    "refused or timed out"
                },
                if edge.allowed { "allowed" } else { "denied" }
            )),
            Err(reason) => unprobed.push(format!(
                "{} -> {}:{}: {reason}",
                edge.from, edge.to, edge.port
            )),
        }
    }
    let not_probed = unprobed.len() + beyond_limit;
    let summary = format!(
        "{total} connections: {correct} probed and as computed, {} probed and different, {not_probed} not probed{}",
        wrong.len(),
        if beyond_limit > 0 {
            format!(" ({beyond_limit} beyond the first {MAX_PROBES})")
        } else {
            String::new()
        }
    );
    let evidence = wrong
        .iter()
        .chain(unprobed.iter())
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    let with_evidence = |outcome: Outcome| {
        if evidence.is_empty() {
            outcome
        } else {
            outcome.with_evidence(evidence.clone())
        }
    };
    if !wrong.is_empty() {
        return with_evidence(Outcome::fail(format!(
            "live connections differ from the policies in {namespace}: {summary}"
        )));
    }
    if correct == 0 {
        return with_evidence(Outcome::skip(format!(
            "not run: no connection could be probed from the pods in {namespace} ({summary})"
        )));
    }
    if not_probed > 0 {
        return with_evidence(Outcome::fail(format!(
            "partial evidence in {namespace}: {not_probed} of {total} connections could not be probed, so \
             enforcement is not shown for them ({summary}); give the images nc or bash, or probe from pods that have them"
        )));
    }
    Outcome::pass(format!(
        "every connection in {namespace} was probed and matches the policies: {summary}"
    ))
}

/// What the connect script printed: connected, refused, or why it tells nothing.
fn parse_connect_output(output: &str) -> std::result::Result<bool, String> {
    match output.trim() {
        "open" => Ok(true),
        "closed" => Ok(false),
        "no-tool" => Err("the source image has neither nc nor bash".to_owned()),
        other => Err(format!("unexpected probe output {other:?}")),
    }
}
