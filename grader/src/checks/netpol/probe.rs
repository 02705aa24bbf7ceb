//! `netpol.live-probe`: where the lab's pods run, try each TCP connection of the matrix from
//! inside the source pod and compare what happened with what the policies say.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod as PodObject;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncReadExt;

use super::engine::Protocol;
use super::matrix::{self, Edge};
use super::{NOT_RUNNING, lab_namespace};
use crate::context::Mode;
use crate::model::Outcome;
use crate::{Context, Result};

/// How long one connection attempt may take before it counts as refused.
const CONNECT_SECONDS: u64 = 2;
/// At most this many connections are probed (probing is the slow part of every netpol suite).
const MAX_PROBES: usize = 200;

pub async fn live_probe(ctx: &Context) -> Result<Outcome> {
    let (Mode::Live, Some(client)) = (ctx.mode, &ctx.kube) else {
        return Ok(Outcome::skip(format!(
            "{NOT_RUNNING}; static mode has no pods to probe"
        )));
    };
    let namespace = lab_namespace(ctx);
    let cluster = matrix::cluster(ctx).await?;
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
        return Ok(Outcome::skip(format!("{NOT_RUNNING}; {detail}")));
    }

    let computed = matrix::build(&cluster, Some(namespace));
    let edges: Vec<&Edge> = computed
        .edges
        .iter()
        .filter(|edge| {
            edge.protocol == Protocol::Tcp && edge.from.starts_with(&format!("{namespace}/"))
        })
        .collect();
    let skipped = edges.len().saturating_sub(MAX_PROBES);
    let edges = &edges[..edges.len().min(MAX_PROBES)];
    let mut wrong = Vec::new();
    let mut unprobed = Vec::new();
    let mut correct = 0usize;
    for edge in edges {
        let (Some(source), Some(target)) = (cluster.pod(&edge.from), cluster.pod(&edge.to)) else {
            continue;
        };
        let Some(ip) = target.ip else {
            unprobed.push(format!(
                "{} -> {}:{}: target has no IP",
                edge.from, edge.to, edge.port
            ));
            continue;
        };
        let pods: Api<PodObject> = Api::namespaced(client.clone(), &source.namespace);
        match connect_from(&pods, &source.name, &ip.to_string(), edge.port).await {
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
    let summary = format!(
        "{correct} correct, {} wrong, {} not probed{}",
        wrong.len(),
        unprobed.len(),
        if skipped > 0 {
            format!(", {skipped} beyond the first {MAX_PROBES} left out")
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
    if !wrong.is_empty() {
        return Ok(Outcome::fail(format!(
            "live connections differ from the policies in {namespace}: {summary}"
        ))
        .with_evidence(evidence));
    }
    if correct == 0 {
        return Ok(Outcome::skip(format!(
            "not run: no connection could be probed from the pods in {namespace} ({summary})"
        ))
        .with_evidence(evidence));
    }
    Ok(Outcome::pass(format!(
        "every probed connection in {namespace} matches the policies: {summary}"
    ))
    .with_evidence(evidence))
}

/// Opens a TCP connection from inside a pod with whatever its image has (`nc`, or bash's
/// `/dev/tcp`). `Err` means the attempt itself could not be made (no shell, exec refused).
async fn connect_from(
    pods: &Api<PodObject>,
    pod: &str,
    ip: &str,
    port: u16,
) -> std::result::Result<bool, String> {
    let script = format!(
        "if command -v nc >/dev/null 2>&1; then nc -z -w {CONNECT_SECONDS} {ip} {port} && echo open || echo closed; \
         elif command -v bash >/dev/null 2>&1; then timeout {CONNECT_SECONDS} bash -c '</dev/tcp/{ip}/{port}' \
         2>/dev/null && echo open || echo closed; else echo no-tool; fi"
    );
    let params = AttachParams::default().stdout(true).stderr(false);
    let attempt = async {
        let mut process = pods
            .exec(pod, ["sh", "-c", script.as_str()], &params)
            .await
            .map_err(|error| format!("exec failed: {error}"))?;
        let mut output = String::new();
        if let Some(mut stdout) = process.stdout() {
            stdout
                .read_to_string(&mut output)
                .await
                .map_err(|error| format!("reading the probe's output: {error}"))?;
        }
        let _ = process.join().await;
        match output.trim() {
            "open" => Ok(true),
            "closed" => Ok(false),
            "no-tool" => Err("the source image has neither nc nor bash".to_owned()),
            other => Err(format!("unexpected probe output {other:?}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(CONNECT_SECONDS + 10), attempt)
        .await
        .unwrap_or_else(|_| Err("the probe did not finish in time".to_owned()))
}
