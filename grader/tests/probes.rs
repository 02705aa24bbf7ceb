//! The live probes judged on their evidence, failing closed. Pods cannot run on the test
//! machines, so these tests drive the probes through their exec layer ([`PodExec`]) with
//! recorded outputs: the exact lines the probe scripts print (`open`, `closed`, `no-tool`) and,
//! for the plaintext probe, output in busybox wget's message format. This is fault injection at
//! the exec boundary; the cluster model, the matrix and the verdicts are the real ones.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use hardlab_grader::Status;
use hardlab_grader::checks::netpol::matrix::{build, cluster_from};
use hardlab_grader::checks::netpol::probe_cluster;
use hardlab_grader::context::Mode;
use hardlab_grader::inputs::documents::parse_text;
use hardlab_grader::inputs::objects::objects_in_documents;
use hardlab_grader::target::podexec::PodExec;

const RUNNING_APP: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: probe, labels: {app: a}}
spec:
  containers: [{name: a, image: busybox:1.36, ports: [{containerPort: 80}]}]
status: {phase: Running, podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: probe, labels: {app: b}}
spec:
  containers: [{name: b, image: busybox:1.36, ports: [{containerPort: 8080}]}]
status: {phase: Running, podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: probe, labels: {app: c}}
spec:
  containers: [{name: c, image: busybox:1.36}]
status: {phase: Running, podIP: 10.0.0.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: probe}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 8080}]
";

/// Answers the connect script from a table of (source pod, target IP, port) to recorded output.
struct RecordedExec {
    answers: HashMap<(String, String, u16), String>,
    fallback: String,
    calls: Mutex<usize>,
}

#[async_trait]
impl PodExec for RecordedExec {
    async fn run(
        &self,
        _namespace: &str,
        pod: &str,
        script: &str,
        _timeout: Duration,
    ) -> Result<String, String> {
        *self.calls.lock().unwrap() += 1;
        let after = script.split("nc -z -w 2 ").nth(1).unwrap();
        let mut words = after.split_whitespace();
        let ip = words.next().unwrap().to_owned();
        let port: u16 = words.next().unwrap().parse().unwrap();
        if self.fallback == "exec-refused" {
            return Err("exec failed: pods \"b\" is forbidden".into());
        }
        Ok(self
            .answers
            .get(&(pod.to_owned(), ip, port))
            .cloned()
            .unwrap_or_else(|| self.fallback.clone()))
    }
}

fn cluster() -> hardlab_grader::checks::netpol::engine::Cluster {
    let objects = objects_in_documents(parse_text("app.yaml", RUNNING_APP).unwrap());
    cluster_from(&objects, Mode::Live, "probe").unwrap()
}

/// What a CNI that enforces the policies would make the script print for every edge.
fn enforcing_answers() -> HashMap<(String, String, u16), String> {
    let cluster = cluster();
    let computed = build(&cluster, Some("probe"));
    computed
        .edges
        .iter()
        .map(|edge| {
            let to = cluster.pod(&edge.to).unwrap();
            let from = cluster.pod(&edge.from).unwrap();
            (
                (from.name.clone(), to.ip.unwrap().to_string(), edge.port),
                if edge.allowed { "open\n" } else { "closed\n" }.to_owned(),
            )
        })
        .collect()
}

fn exec(answers: HashMap<(String, String, u16), String>, fallback: &str) -> RecordedExec {
    RecordedExec {
        answers,
        fallback: fallback.to_owned(),
        calls: Mutex::new(0),
    }
}

#[tokio::test]
async fn every_edge_probed_and_as_computed_passes_with_counts() {
    let exec = exec(enforcing_answers(), "unexpected");
    let outcome = probe_cluster(&cluster(), "probe", &exec).await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
    let edges = enforcing_answers().len();
    assert!(
        outcome.message.contains(&format!(
            "{edges} connections: {edges} probed and as computed, 0 probed and different, 0 not probed"
        )),
        "{}",
        outcome.message
    );
    assert!(edges >= 4, "{edges}");
}

#[tokio::test]
async fn a_denied_edge_that_connects_fails() {
    // flannel: no enforcement, every connection opens.
    let exec = exec(HashMap::new(), "open\n");
    let outcome = probe_cluster(&cluster(), "probe", &exec).await;
    assert_eq!(outcome.status, Status::Fail, "{outcome:?}");
    assert!(
        outcome
            .evidence
            .unwrap()
            .contains("connected but the policies say denied"),
    );
}

#[tokio::test]
async fn unprobed_edges_keep_a_partial_probe_from_passing() {
    // Pod b's image has neither nc nor bash; pod a's answers are right.
    let mut answers = enforcing_answers();
    answers.retain(|(pod, _, _), _| pod == "a");
    assert!(!answers.is_empty());
    let exec = exec(answers.clone(), "no-tool\n");
    let outcome = probe_cluster(&cluster(), "probe", &exec).await;
    assert_eq!(outcome.status, Status::Fail, "{outcome:?}");
    let total = enforcing_answers().len();
    let missing = total - answers.len();
    assert!(
        outcome.message.starts_with(&format!(
            "partial evidence in probe: {missing} of {total} connections could not be probed"
        )),
        "{}",
        outcome.message
    );
    assert!(
        outcome
            .evidence
            .unwrap()
            .contains("the source image has neither nc nor bash")
    );
}

#[tokio::test]
async fn nothing_probed_is_not_run_never_a_pass() {
    let exec = exec(HashMap::new(), "exec-refused");
    let outcome = probe_cluster(&cluster(), "probe", &exec).await;
    assert_eq!(outcome.status, Status::Skip, "{outcome:?}");
    assert!(
        outcome.message.contains("0 probed and as computed"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn pods_that_do_not_run_are_not_probed() {
    let pending = RUNNING_APP.replace("phase: Running, podIP: 10.0.0.2", "phase: Pending");
    let objects = objects_in_documents(parse_text("app.yaml", &pending).unwrap());
    let cluster = cluster_from(&objects, Mode::Live, "probe").unwrap();
    let exec = exec(enforcing_answers(), "open\n");
    let outcome = probe_cluster(&cluster, "probe", &exec).await;
    assert_eq!(outcome.status, Status::Skip, "{outcome:?}");
    assert_eq!(*exec.calls.lock().unwrap(), 0);
}

// mtls.plaintext-refused: busybox wget output (with -S and the appended exit code) in the form
// busybox prints it, keyed by the pod the request is sent from.

struct RecordedWget {
    by_pod: HashMap<String, Result<String, String>>,
}

#[async_trait]
impl PodExec for RecordedWget {
    async fn run(
        &self,
        _namespace: &str,
        pod: &str,
        script: &str,
        _timeout: Duration,
    ) -> Result<String, String> {
        assert!(script.starts_with("wget -S -q"), "{script}");
        self.by_pod
            .get(pod)
            .cloned()
            .unwrap_or_else(|| Err(format!("no recording for {pod}")))
    }
}

const URL: &str = "http://web.shop:80/";
const ANSWERED: &str =
    "  HTTP/1.1 200 OK\n  content-type: text/html\n  server: istio-envoy\nexit=0";
const ANSWERED_404: &str =
    "  HTTP/1.1 404 Not Found\nwget: server returned error: HTTP/1.1 404 Not Found\nexit=1";
const ISTIO_RESET: &str = "wget: error getting response: Connection reset by peer\nexit=1";
const LINKERD_403: &str = "  HTTP/1.1 403 Forbidden\n  l5d-proxy-error: unauthorized request on route\n  content-length: 0\nwget: server returned error: HTTP/1.1 403 Forbidden\nexit=1";
const DNS_FAILURE: &str = "wget: bad address 'web.shop:80'\nexit=1";
const TCP_REFUSED: &str =
    "wget: can't connect to remote host (10.96.14.2): Connection refused\nexit=1";
const TIMEOUT: &str = "wget: download timed out\nexit=1";

async fn plaintext(
    probe: Result<&str, &str>,
    control: Result<&str, &str>,
) -> hardlab_grader::Outcome {
    let exec = RecordedWget {
        by_pod: HashMap::from([
            (
                "plaintext-probe".to_owned(),
                probe.map(str::to_owned).map_err(str::to_owned),
            ),
            (
                "web-7f9c".to_owned(),
                control.map(str::to_owned).map_err(str::to_owned),
            ),
        ]),
    };
    hardlab_grader::checks::mtls::judge_plaintext(
        &exec,
        ("shop", "web-7f9c"),
        ("hardlab-mtls-probe-1", "plaintext-probe"),
        URL,
    )
    .await
}

#[tokio::test]
async fn a_reset_by_the_mesh_on_an_endpoint_that_answers_in_mesh_passes() {
    for refusal in [ISTIO_RESET, LINKERD_403] {
        let outcome = plaintext(Ok(refusal), Ok(ANSWERED_404)).await;
        assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
        assert!(
            outcome.message.contains("refused by the mesh"),
            "{}",
            outcome.message
        );
        assert!(
            outcome
                .evidence
                .unwrap()
                .contains("in-mesh from shop/web-7f9c")
        );
    }
}

#[tokio::test]
async fn an_answered_plaintext_request_fails() {
    for answer in [ANSWERED, ANSWERED_404] {
        let outcome = plaintext(Ok(answer), Ok(ANSWERED)).await;
        assert_eq!(outcome.status, Status::Fail, "{outcome:?}");
        assert!(
            outcome.message.contains("was answered"),
            "{}",
            outcome.message
        );
    }
}

#[tokio::test]
async fn dns_failures_refused_connections_and_timeouts_are_not_refusals() {
    for (output, why) in [
        (DNS_FAILURE, "DNS"),
        (TCP_REFUSED, "nothing listens"),
        (TIMEOUT, "NetworkPolicy"),
    ] {
        let outcome = plaintext(Ok(output), Ok(ANSWERED)).await;
        assert_eq!(outcome.status, Status::Fail, "{outcome:?}");
        assert!(
            outcome.message.starts_with("not shown"),
            "{}",
            outcome.message
        );
        assert!(outcome.message.contains(why), "{}", outcome.message);
    }
}

#[tokio::test]
async fn a_reset_without_a_live_in_mesh_answer_is_partial_evidence_not_a_pass() {
    let dead = plaintext(Ok(ISTIO_RESET), Ok(ISTIO_RESET)).await;
    assert_eq!(dead.status, Status::Fail, "{dead:?}");
    assert!(
        dead.message.contains("not shown to be live"),
        "{}",
        dead.message
    );
    let no_control = plaintext(Ok(ISTIO_RESET), Err("exec failed: container not found")).await;
    assert_eq!(no_control.status, Status::Fail, "{no_control:?}");
    let no_probe = plaintext(Err("exec failed"), Ok(ANSWERED)).await;
    assert_eq!(no_probe.status, Status::Fail, "{no_probe:?}");
    assert!(no_probe.message.starts_with("not shown"));
}
