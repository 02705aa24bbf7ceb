//! `mtls.plaintext-refused`: from a probe pod outside the mesh, send a plaintext HTTP request to
//! a meshed service; with STRICT mTLS the proxy must refuse it, and the same request from a
//! meshed pod must be answered (so the refusal is the mesh's, not a dead endpoint's). Needs pods that run (a kubelet and
//! a pullable probe image), so on a bare API server it reports "not run".

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use super::{MeshWorkload, Meshing, NOT_RUN, meshing, namespaces, workloads};
use crate::context::Mode;
use crate::inputs::objects::{KubeObject, objects};
use crate::model::Outcome;
use crate::target::podexec::PodExec;
use crate::{Context, Result};

/// The probe's image; a lab may name another with the `probe-image` parameter.
const DEFAULT_PROBE_IMAGE: &str = "busybox:1.36";
const PROBE_START: Duration = Duration::from_secs(60);
const REQUEST_SECONDS: u64 = 3;

pub async fn plaintext_refused(ctx: &Context) -> Result<Outcome> {
    let (Mode::Live, Some(client), Some(exec)) = (ctx.mode, &ctx.kube, ctx.pod_exec()) else {
        return Ok(Outcome::skip(format!(
            "{NOT_RUN}; static mode runs no pods"
        )));
    };
    let objects = objects(ctx).await?;
    let namespace_objects = namespaces(&objects);
    let empty = (BTreeMap::new(), BTreeMap::new());
    let meshed_running: Vec<MeshWorkload> = workloads(&objects, ctx)
        .into_iter()
        .filter(|w| w.phase.as_deref() == Some("Running"))
        .filter(|w| {
            let (labels, annotations) = namespace_objects.get(&w.namespace).unwrap_or(&empty);
            !matches!(meshing(w, labels, annotations), Meshing::None(_))
        })
        .collect();
    let Some((service, port, control)) = meshed_service(&objects, &meshed_running) else {
        return Ok(Outcome::skip(format!(
            "{NOT_RUN}; no running meshed pod behind a Service to probe"
        )));
    };
    let image = ctx
        .params
        .extra
        .get("probe-image")
        .map_or(DEFAULT_PROBE_IMAGE, String::as_str);
    let url = format!("http://{service}:{port}/");

    let probe_namespace = format!("hardlab-mtls-probe-{:08x}", rand::random::<u32>());
    let namespaces_api: Api<Namespace> = Api::all(client.clone());
    let started = start_probe_pod(client, &namespaces_api, &probe_namespace, image).await;
    let outcome = match started {
        Ok(None) => Ok(judge_plaintext(
            exec.as_ref(),
            (&control.namespace, &control.name),
            (&probe_namespace, PROBE_POD),
            &url,
        )
        .await),
        Ok(Some(reason)) => Ok(Outcome::skip(format!("{NOT_RUN}; {reason}"))),
        Err(error) => Err(error),
    };
    // Always clean up, whatever the probe did.
    let _ = namespaces_api
        .delete(&probe_namespace, &DeleteParams::background())
        .await;
    outcome
}

const PROBE_POD: &str = "plaintext-probe";

/// The request both probes send: headers on (`-S`) so a proxy's own answer can be told from the
/// app's, and the exit code, since busybox wget says little on success.
pub fn request_script(url: &str) -> String {
    format!("wget -S -q -T {REQUEST_SECONDS} -O /dev/null {url} 2>&1; echo \"exit=$?\"")
}

/// What one plaintext request ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaintextAnswer {
    /// The server read the request and answered: plaintext is accepted.
    Answered,
    /// The mesh refused it: a reset after the connection was accepted (Istio STRICT), or
    /// Linkerd's proxy answering 403 with `l5d-proxy-error`.
    RefusedByMesh(&'static str),
    /// It failed in a way that says nothing about mTLS: DNS, connection refused (no listener),
    /// a timeout (a NetworkPolicy, a service that is down), no wget in the image.
    Inconclusive(&'static str),
}

/// Classifies busybox wget's output (with `-S`, and `exit=N` appended).
pub fn classify(output: &str) -> PlaintextAnswer {
    let lower = output.to_ascii_lowercase();
    if lower.contains("l5d-proxy-error") {
        return PlaintextAnswer::RefusedByMesh(
            "Linkerd's proxy refused it (403 with l5d-proxy-error)",
        );
    }
    if lower.contains("http/1.")
        || lower.contains("http/2")
        || output.trim_end().ends_with("exit=0")
    {
        return PlaintextAnswer::Answered;
    }
    if lower.contains("bad address") || lower.contains("name or service not known") {
        return PlaintextAnswer::Inconclusive("the service name did not resolve (DNS)");
    }
    if lower.contains("connection refused") {
        return PlaintextAnswer::Inconclusive(
            "the connection was refused: nothing listens, or the service is down (the mesh accepts, then resets)",
        );
    }
    if lower.contains("timed out") {
        return PlaintextAnswer::Inconclusive(
            "the request timed out: a NetworkPolicy or a service that is down, not the mesh",
        );
    }
    if lower.contains("not found") && lower.contains("wget") {
        return PlaintextAnswer::Inconclusive("the image has no wget");
    }
    if lower.contains("connection reset")
        || lower.contains("error getting response")
        || lower.contains("server closed")
    {
        return PlaintextAnswer::RefusedByMesh(
            "the connection was accepted, then reset without an answer (a TLS-only endpoint)",
        );
    }
    PlaintextAnswer::Inconclusive("the request failed in an unrecognised way")
}

/// Judges the plaintext probe, failing closed: only a refusal the mesh makes, on an endpoint
/// shown to be live by answering the same request from a meshed pod, is a pass. An answer is a
/// failure; anything else (DNS, refused, timeout, no control answer) does not show mTLS and is a
/// failure that says why.
pub async fn judge_plaintext(
    exec: &dyn PodExec,
    control: (&str, &str),
    probe: (&str, &str),
    url: &str,
) -> Outcome {
    let timeout = Duration::from_secs(REQUEST_SECONDS + 10);
    let script = request_script(url);
    let plaintext = match exec.run(probe.0, probe.1, &script, timeout).await {
        Ok(output) => output.trim().to_owned(),
        Err(reason) => {
            return Outcome::fail(format!(
                "not shown: the plaintext request to {url} could not be sent ({reason})"
            ));
        }
    };
    let refusal = match classify(&plaintext) {
        PlaintextAnswer::Answered => {
            return Outcome::fail(format!(
                "a plaintext request from an unmeshed pod to {url} was answered: mTLS is not enforced"
            ))
            .with_evidence(plaintext);
        }
        PlaintextAnswer::Inconclusive(why) => {
            return Outcome::fail(format!(
                "not shown: the plaintext request to {url} failed, but not because of the mesh: {why}"
            ))
            .with_evidence(plaintext);
        }
        PlaintextAnswer::RefusedByMesh(how) => how,
    };
    let in_mesh = exec
        .run(control.0, control.1, &script, timeout)
        .await
        .map(|output| output.trim().to_owned());
    let evidence = |control_output: &str| {
        format!(
            "plaintext from {}/{}:\n{plaintext}\nin-mesh from {}/{}:\n{control_output}",
            probe.0, probe.1, control.0, control.1
        )
    };
    match in_mesh {
        Ok(output) if classify(&output) == PlaintextAnswer::Answered => Outcome::pass(format!(
            "a plaintext request from an unmeshed pod to {url} was refused by the mesh ({refusal}), \
             while the same request from meshed pod {}/{} was answered",
            control.0, control.1
        ))
        .with_evidence(evidence(&output)),
        Ok(output) => Outcome::fail(format!(
            "not shown: the plaintext request to {url} was cut off ({refusal}), but the same request \
             from meshed pod {}/{} was not answered either, so the endpoint was not shown to be live",
            control.0, control.1
        ))
        .with_evidence(evidence(&output)),
        Err(reason) => Outcome::fail(format!(
            "not shown: the plaintext request to {url} was cut off ({refusal}), but the in-mesh control \
             request from {}/{} could not be sent ({reason})",
            control.0, control.1
        ))
        .with_evidence(evidence("")),
    }
}

/// A Service in scope whose selector picks a running meshed pod: `name.namespace` and its port.
fn meshed_service<'a>(
    objects: &[KubeObject],
    meshed: &'a [MeshWorkload],
) -> Option<(String, u64, &'a MeshWorkload)> {
    objects
        .iter()
        .filter(|o| o.kind == "Service")
        .find_map(|service| {
            let namespace = service.namespace.as_deref()?;
            let selector = service.value.pointer("/spec/selector")?.as_object()?;
            if selector.is_empty() {
                return None;
            }
            let selected = meshed.iter().find(|w| {
                w.namespace == namespace
                    && selector
                        .iter()
                        .all(|(k, v)| w.labels.get(k).map(String::as_str) == v.as_str())
            })?;
            let port = service
                .value
                .pointer("/spec/ports/0/port")
                .and_then(Value::as_u64)?;
            Some((format!("{}.{namespace}", service.name), port, selected))
        })
}

/// Creates the unmeshed probe namespace and pod and waits for it to run; `Some(reason)` when it
/// did not start (no kubelet, an image that cannot be pulled).
async fn start_probe_pod(
    client: &kube::Client,
    namespaces: &Api<Namespace>,
    namespace: &str,
    image: &str,
) -> Result<Option<String>> {
    let namespace_object: Namespace = serde_json::from_value(json!({
        "metadata": {
            "name": namespace,
            "labels": {"istio-injection": "disabled", "app.kubernetes.io/managed-by": "hardlab-grade"},
            "annotations": {"linkerd.io/inject": "disabled"}
        }
    }))
    .map_err(|error| crate::Error::Usage(format!("probe namespace: {error}")))?;
    namespaces
        .create(&PostParams::default(), &namespace_object)
        .await?;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": PROBE_POD,
            "annotations": {"sidecar.istio.io/inject": "false", "linkerd.io/inject": "disabled"}
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "probe",
                "image": image,
                "command": ["sleep", "300"],
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": 65534,
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"}
                }
            }]
        }
    }))
    .map_err(|error| crate::Error::Usage(format!("probe pod: {error}")))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.create(&PostParams::default(), &pod).await?;

    let started = tokio::time::Instant::now();
    loop {
        let current = pods.get(PROBE_POD).await?;
        let phase = current
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Running" {
            return Ok(None);
        }
        if started.elapsed() > PROBE_START {
            return Ok(Some(format!(
                "the probe pod ({image}) did not start within {}s (phase {phase:?})",
                PROBE_START.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
