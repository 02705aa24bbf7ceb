//! `mtls.plaintext-refused`: from a probe pod outside the mesh, send a plaintext HTTP request to
//! a meshed service; with STRICT mTLS the proxy must refuse it. Needs pods that run (a kubelet and
//! a pullable probe image), so on a bare API server it reports "not run".

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, AttachParams, DeleteParams, PostParams};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::{MeshWorkload, Meshing, NOT_RUN, meshing, namespaces, workloads};
use crate::context::Mode;
use crate::inputs::objects::{KubeObject, objects};
use crate::model::Outcome;
use crate::{Context, Result};

/// The probe's image; a lab may name another with the `probe-image` parameter.
const DEFAULT_PROBE_IMAGE: &str = "busybox:1.36";
const PROBE_START: Duration = Duration::from_secs(60);
const REQUEST_SECONDS: u64 = 3;

pub async fn plaintext_refused(ctx: &Context) -> Result<Outcome> {
    let (Mode::Live, Some(client)) = (ctx.mode, &ctx.kube) else {
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
    let Some((service, port)) = meshed_service(&objects, &meshed_running) else {
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
    let result = probe(client, &namespaces_api, &probe_namespace, image, &url).await;
    // Always clean up, whatever the probe did.
    let _ = namespaces_api
        .delete(&probe_namespace, &DeleteParams::background())
        .await;
    match result? {
        Probe::NotStarted(reason) => Ok(Outcome::skip(format!("{NOT_RUN}; {reason}"))),
        Probe::Answered(detail) => Ok(Outcome::fail(format!(
            "a plaintext request from an unmeshed pod to {url} was answered: mTLS is not enforced"
        ))
        .with_evidence(detail)),
        Probe::Refused(detail) => Ok(Outcome::pass(format!(
            "a plaintext request from an unmeshed pod to {url} was refused"
        ))
        .with_evidence(detail)),
    }
}

enum Probe {
    NotStarted(String),
    Answered(String),
    Refused(String),
}

/// A Service in scope whose selector picks a running meshed pod: `name.namespace` and its port.
fn meshed_service(objects: &[KubeObject], meshed: &[MeshWorkload]) -> Option<(String, u64)> {
    objects
        .iter()
        .filter(|o| o.kind == "Service")
        .find_map(|service| {
            let namespace = service.namespace.as_deref()?;
            let selector = service.value.pointer("/spec/selector")?.as_object()?;
            if selector.is_empty() {
                return None;
            }
            let selects = meshed.iter().any(|w| {
                w.namespace == namespace
                    && selector
                        .iter()
                        .all(|(k, v)| w.labels.get(k).map(String::as_str) == v.as_str())
            });
            let port = service
                .value
                .pointer("/spec/ports/0/port")
                .and_then(Value::as_u64)?;
            selects.then(|| (format!("{}.{namespace}", service.name), port))
        })
}

async fn probe(
    client: &kube::Client,
    namespaces: &Api<Namespace>,
    namespace: &str,
    image: &str,
    url: &str,
) -> Result<Probe> {
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
            "name": "plaintext-probe",
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
        let current = pods.get("plaintext-probe").await?;
        let phase = current
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Running" {
            break;
        }
        if started.elapsed() > PROBE_START {
            return Ok(Probe::NotStarted(format!(
                "the probe pod ({image}) did not start within {}s (phase {phase:?})",
                PROBE_START.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let command = format!("wget -q -T {REQUEST_SECONDS} -O /dev/null {url} 2>&1; echo \"exit=$?\"");
    let params = AttachParams::default().stdout(true).stderr(false);
    let mut process = pods
        .exec("plaintext-probe", ["sh", "-c", command.as_str()], &params)
        .await?;
    let mut output = String::new();
    if let Some(mut stdout) = process.stdout() {
        let _ = stdout.read_to_string(&mut output).await;
    }
    let _ = process.join().await;
    let output = output.trim().to_owned();
    // An HTTP status line, even an error one, means the server read the plaintext request.
    let answered = output.ends_with("exit=0")
        || output.contains("HTTP/")
        || output.contains("server returned error");
    Ok(if answered {
        Probe::Answered(output)
    } else {
        Probe::Refused(output)
    })
}
