//! The NetworkPolicy engine against a table of cases taken from the semantics the Kubernetes
//! documentation describes (concepts/services-networking/network-policies and the
//! networking.k8s.io/v1 API reference), each trap in its own fixture under fixtures/netpol/engine.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;

use hardlab_grader::Context;
use hardlab_grader::checks::netpol::engine::Protocol::{self, Sctp, Tcp, Udp};
use hardlab_grader::checks::netpol::{cluster, matrix};
use hardlab_grader::inputs::documents::read_paths;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/netpol/engine")
        .join(name)
}

fn context(case: Option<&str>) -> Context {
    let mut paths = vec![fixture("base.yaml")];
    paths.extend(case.map(fixture));
    Context::from_documents(read_paths(&paths).expect("fixtures parse").documents)
}

/// (from, to, port, protocol, allowed)
type Expect = (&'static str, &'static str, u16, Protocol, bool);

struct Case {
    what: &'static str,
    file: Option<&'static str>,
    expect: &'static [Expect],
}

const CASES: &[Case] = &[
    Case {
        what: "without policies every pod reaches every other",
        file: None,
        expect: &[
            ("x/a", "x/b", 8080, Tcp, true),
            ("y/c", "x/a", 80, Tcp, true),
            ("z/d", "y/c", 5432, Tcp, true),
        ],
    },
    Case {
        what: "podSelector {} without rules isolates every pod of the namespace for ingress only",
        file: Some("deny-all-ingress.yaml"),
        expect: &[
            ("y/a", "x/a", 80, Tcp, false),
            ("x/b", "x/a", 80, Tcp, false),
            ("x/a", "x/b", 8080, Tcp, false),
            ("x/a", "y/a", 80, Tcp, true),
        ],
    },
    Case {
        what: "ingress [{}] allows everything while ingress [] allows nothing",
        file: Some("empty-rule-versus-no-rules.yaml"),
        expect: &[
            ("y/c", "x/a", 80, Tcp, true),
            ("z/d", "x/b", 9000, Tcp, true),
            ("x/a", "y/a", 80, Tcp, false),
            ("y/a", "y/c", 5432, Tcp, false),
        ],
    },
    Case {
        what: "a policy with egress rules and no policyTypes isolates ingress too",
        file: Some("egress-rules-without-policy-types.yaml"),
        expect: &[
            ("y/a", "x/a", 80, Tcp, false),
            ("x/a", "x/b", 8080, Tcp, true),
            ("x/a", "y/a", 80, Tcp, false),
            ("x/b", "y/a", 80, Tcp, true),
        ],
    },
    Case {
        what: "egress is denied only when policyTypes lists Egress",
        file: Some("egress-deny-needs-policy-types.yaml"),
        expect: &[
            ("x/a", "x/b", 8080, Tcp, false),
            ("x/a", "y/c", 5432, Tcp, false),
            ("y/a", "x/a", 80, Tcp, true),
            ("y/a", "z/d", 80, Tcp, true),
            ("z/d", "y/a", 80, Tcp, false),
        ],
    },
    Case {
        what: "both selectors in one peer are ANDed, two peers are ORed",
        file: Some("and-versus-or.yaml"),
        expect: &[
            ("y/a", "x/b", 8080, Tcp, true),
            ("y/c", "x/b", 8080, Tcp, false),
            ("x/a", "x/b", 8080, Tcp, false),
            ("x/b", "y/c", 5432, Tcp, true),
            ("y/a", "y/c", 5432, Tcp, true),
            ("y/e", "y/c", 5432, Tcp, false),
            ("z/d", "y/c", 5432, Tcp, false),
        ],
    },
    Case {
        what: "podSelector alone is the policy's namespace, namespaceSelector {} alone is every namespace",
        file: Some("selector-scope.yaml"),
        expect: &[
            ("x/a", "y/a", 80, Tcp, false),
            ("y/c", "y/a", 80, Tcp, false),
            ("y/c", "x/b", 8080, Tcp, true),
            ("z/d", "x/b", 8080, Tcp, true),
            ("x/a", "x/b", 8080, Tcp, true),
        ],
    },
    Case {
        what: "ipBlock matches pod IPs inside the CIDR and outside its except ranges",
        file: Some("ip-block.yaml"),
        expect: &[
            ("y/e", "x/a", 80, Tcp, true),
            ("x/f", "x/a", 80, Tcp, true),
            ("y/a", "x/a", 80, Tcp, false),
            ("y/c", "x/a", 80, Tcp, false),
            ("x/b", "x/a", 80, Tcp, false),
        ],
    },
    Case {
        what: "named ports resolve against the destination's containers, for ingress and egress",
        file: Some("named-ports.yaml"),
        expect: &[
            ("y/a", "x/a", 80, Tcp, true),
            ("y/a", "x/b", 8080, Tcp, true),
            ("y/a", "x/b", 9000, Tcp, false),
            ("y/a", "x/a", 53, Udp, false),
            ("y/c", "x/a", 80, Tcp, true),
            ("y/c", "x/b", 8080, Tcp, true),
            ("y/c", "y/a", 80, Tcp, true),
            ("y/c", "y/e", 80, Tcp, false),
            ("y/c", "x/b", 9000, Tcp, false),
        ],
    },
    Case {
        what: "endPort makes a range, TCP is the default, UDP and SCTP rules allow only themselves",
        file: Some("port-ranges-and-protocols.yaml"),
        expect: &[
            ("y/a", "x/b", 8080, Tcp, true),
            ("y/a", "x/b", 8100, Tcp, true),
            ("y/a", "x/b", 9000, Tcp, false),
            ("y/a", "x/b", 8080, Udp, false),
            ("y/a", "x/a", 53, Udp, true),
            ("y/a", "x/a", 53, Tcp, false),
            ("y/a", "x/a", 80, Tcp, false),
            ("x/a", "y/c", 5432, Sctp, true),
            ("x/a", "y/c", 5432, Tcp, false),
        ],
    },
    Case {
        what: "a pod selected by two policies accepts the union of their rules",
        file: Some("union.yaml"),
        expect: &[
            ("x/a", "x/b", 8080, Tcp, true),
            ("y/c", "x/b", 8080, Tcp, true),
            ("z/d", "x/b", 8080, Tcp, false),
            ("x/f", "x/b", 8080, Tcp, false),
        ],
    },
    Case {
        what: "a connection needs the source's egress and the destination's ingress",
        file: Some("both-directions.yaml"),
        expect: &[
            ("y/a", "x/b", 8080, Tcp, false),
            ("x/a", "x/b", 8080, Tcp, true),
            ("z/d", "x/b", 9000, Tcp, true),
        ],
    },
    Case {
        what: "matchExpressions In, NotIn, Exists and DoesNotExist",
        file: Some("expressions.yaml"),
        expect: &[
            ("x/a", "y/c", 5432, Tcp, true),
            ("x/b", "y/c", 5432, Tcp, false),
            ("x/a", "x/b", 8080, Tcp, false),
            ("x/f", "x/b", 8080, Tcp, true),
            ("y/c", "x/a", 80, Tcp, true),
        ],
    },
    Case {
        what: "kubernetes.io/metadata.name selects namespaces with and without a Namespace object",
        file: Some("namespace-name-label.yaml"),
        expect: &[
            ("z/d", "x/b", 8080, Tcp, true),
            ("x/a", "x/b", 8080, Tcp, true),
            ("y/a", "x/b", 8080, Tcp, false),
        ],
    },
];

#[tokio::test]
async fn every_case_from_the_documented_semantics_gets_the_expected_verdict() {
    let mut wrong = Vec::new();
    for case in CASES {
        let ctx = context(case.file);
        let cluster = cluster(&ctx).await.expect("the case parses");
        for &(from, to, port, protocol, allowed) in case.expect {
            let source = cluster.pod(from).unwrap_or_else(|| panic!("{from} exists"));
            let target = cluster.pod(to).unwrap_or_else(|| panic!("{to} exists"));
            let verdict = cluster.verdict(source, target, port, protocol);
            if verdict.allowed != allowed {
                wrong.push(format!(
                    "{}: {from} -> {to} {port}/{protocol} expected {allowed}, got {} ({})",
                    case.what, verdict.allowed, verdict.explanation
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn a_denied_connection_names_the_policies_that_isolate_the_pod() {
    let cluster = cluster(&context(Some("both-directions.yaml")))
        .await
        .unwrap();
    let verdict = cluster.verdict(
        cluster.pod("y/a").unwrap(),
        cluster.pod("x/b").unwrap(),
        8080,
        Tcp,
    );
    assert!(!verdict.allowed);
    assert_eq!(verdict.policies(), ["y/deny-egress"]);
    assert!(
        verdict
            .explanation
            .contains("egress denied: y/a is selected by y/deny-egress"),
        "{}",
        verdict.explanation
    );
}

#[tokio::test]
async fn an_allowed_connection_names_every_policy_whose_rules_allow_it() {
    let cluster = cluster(&context(Some("union.yaml"))).await.unwrap();
    let verdict = cluster.verdict(
        cluster.pod("x/a").unwrap(),
        cluster.pod("x/b").unwrap(),
        8080,
        Tcp,
    );
    assert_eq!(verdict.policies(), ["x/from-a"]);
}

#[tokio::test]
async fn an_ip_block_cannot_match_a_pod_without_an_ip_and_the_explanation_says_so() {
    let cluster = cluster(&context(Some("ip-block.yaml"))).await.unwrap();
    let verdict = cluster.verdict(
        cluster.pod("x/b").unwrap(),
        cluster.pod("x/a").unwrap(),
        80,
        Tcp,
    );
    assert!(!verdict.allowed);
    assert!(
        verdict.explanation.contains(
            "ipBlock peers of x/from-ten were not matched against x/b: its pod IP is unknown"
        ),
        "{}",
        verdict.explanation
    );
}

#[tokio::test]
async fn workload_templates_become_pods_named_after_the_workload() {
    let cluster = cluster(&context(None)).await.unwrap();
    let pod = cluster.pod("z/d").expect("the Deployment's pod");
    assert_eq!(pod.object, "Deployment/z/d");
    assert_eq!(pod.labels.get("app").map(String::as_str), Some("d"));
}

#[tokio::test]
async fn the_matrix_covers_declared_ports_and_the_ports_policies_name() {
    let matrix = matrix(&context(Some("port-ranges-and-protocols.yaml")), Some("x"))
        .await
        .unwrap();
    let edge = |from: &str, to: &str, port: u16, protocol: &str| {
        matrix
            .edges
            .iter()
            .find(|e| {
                e.from == from && e.to == to && e.port == port && e.protocol.as_str() == protocol
            })
            .unwrap_or_else(|| panic!("edge {from} -> {to} {port}/{protocol}"))
    };
    // Declared by x/b's containers.
    assert!(edge("y/a", "x/b", 8080, "TCP").allowed);
    assert!(!edge("y/a", "x/b", 9000, "TCP").allowed);
    assert_eq!(edge("y/a", "x/b", 9000, "TCP").policies, ["x/range"]);
    // Named by the range policy (its first port), not declared by any container.
    assert!(edge("y/a", "x/b", 8000, "TCP").allowed);
    assert!(edge("y/a", "x/a", 53, "UDP").allowed);
    // A pod's connections to itself are not listed; connections outside x are not either.
    assert!(matrix.edges.iter().all(|e| e.from != e.to));
    assert!(
        matrix
            .edges
            .iter()
            .all(|e| e.from.starts_with("x/") || e.to.starts_with("x/"))
    );
    assert_eq!(
        matrix.nodes.iter().filter(|n| n.namespace == "x").count(),
        3
    );
    let json: serde_json::Value = serde_json::from_str(&matrix.to_json()).unwrap();
    let first = &json["edges"][0];
    for field in ["from", "to", "port", "protocol", "allowed", "policies"] {
        assert!(first.get(field).is_some(), "{field} in {first}");
    }
}

#[tokio::test]
async fn a_policy_with_an_unknown_operator_is_left_out_and_named_with_file_line_and_field() {
    // The API server refuses such a policy, so the cluster would not have it: the model leaves
    // it out and says so, and the rest of the files are still judged.
    let cluster = cluster(&context(Some("bad-operator.yaml"))).await.unwrap();
    assert!(cluster.policies.is_empty());
    assert!(!cluster.pods.is_empty());
    let [rejected] = cluster.rejected.as_slice() else {
        panic!("expected one refused object: {:?}", cluster.rejected);
    };
    assert_eq!(rejected.object, "NetworkPolicy/x/broken");
    assert!(
        rejected.location.file.ends_with("bad-operator.yaml"),
        "{rejected:?}"
    );
    assert_eq!(rejected.location.line, 1);
    assert!(
        rejected
            .reason
            .contains("spec.podSelector.matchExpressions[0].operator: unknown operator \"Equals\""),
        "{rejected:?}"
    );
}
