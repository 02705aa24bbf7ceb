//! mTLS judged by the policy that wins, per workload and port: Istio's PeerAuthentication
//! precedence (workload selector over namespace over the root namespace; portLevelMtls; UNSET
//! inheriting; DISABLE) and Linkerd's default inbound policy (workload over namespace over
//! cluster) with Servers and AuthorizationPolicies per port. Files, as `hardlab-grade static`.
#![allow(clippy::unwrap_used)]

use hardlab_grader::inputs::documents::parse_text;
use hardlab_grader::{Context, Outcome, Status, catalog};

async fn strict_mode(yaml: &str) -> Outcome {
    let ctx = Context::from_documents(parse_text("mesh.yaml", yaml).unwrap());
    (catalog::find("mtls.strict-mode").unwrap().run)(&ctx)
        .await
        .unwrap()
}

fn pa(namespace: &str, name: &str, selector: Option<&str>, mode: &str, ports: &str) -> String {
    let selector = selector
        .map(|app| format!("  selector:\n    matchLabels: {{app: {app}}}\n"))
        .unwrap_or_default();
    let mode = if mode.is_empty() {
        String::new()
    } else {
        format!("  mtls: {{mode: {mode}}}\n")
    };
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{selector}{mode}{ports}---\n"
    )
}

const ISTIO_APP: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: shop/api:1.0
        ports: [{containerPort: 8080}, {containerPort: 9090}]
";

async fn istio(policies: &[String]) -> Outcome {
    strict_mode(&format!("{}{ISTIO_APP}", policies.concat())).await
}

#[tokio::test]
async fn a_namespace_policy_overrides_the_mesh_wide_one_both_ways() {
    let weakened = istio(&[
        pa("istio-system", "default", None, "STRICT", ""),
        pa("shop", "default", None, "PERMISSIVE", ""),
    ])
    .await;
    assert_eq!(weakened.status, Status::Fail, "{weakened:?}");
    assert!(
        weakened
            .message
            .contains("Deployment/shop/api on every port is PERMISSIVE, set by shop/default"),
        "{}",
        weakened.message
    );
    let strengthened = istio(&[
        pa("istio-system", "default", None, "PERMISSIVE", ""),
        pa("shop", "default", None, "STRICT", ""),
    ])
    .await;
    assert_eq!(strengthened.status, Status::Pass, "{strengthened:?}");
    assert!(strengthened.message.contains("shop/default"));
}

#[tokio::test]
async fn a_workload_selector_policy_overrides_its_namespace_both_ways() {
    let opted_out = istio(&[
        pa("shop", "default", None, "STRICT", ""),
        pa("shop", "api-legacy", Some("api"), "PERMISSIVE", ""),
    ])
    .await;
    assert_eq!(opted_out.status, Status::Fail);
    assert!(
        opted_out.message.contains("set by shop/api-legacy"),
        "{}",
        opted_out.message
    );
    let opted_in = istio(&[
        pa("shop", "default", None, "PERMISSIVE", ""),
        pa("shop", "api-strict", Some("api"), "STRICT", ""),
    ])
    .await;
    assert_eq!(opted_in.status, Status::Pass, "{opted_in:?}");
    // A selector that does not match the workload changes nothing.
    let elsewhere = istio(&[
        pa("shop", "default", None, "PERMISSIVE", ""),
        pa("shop", "web-strict", Some("web"), "STRICT", ""),
    ])
    .await;
    assert_eq!(elsewhere.status, Status::Fail);
}

#[tokio::test]
async fn unset_or_no_mode_inherits_the_level_above() {
    for mode in ["UNSET", ""] {
        let inherits_strict = istio(&[
            pa("istio-system", "default", None, "STRICT", ""),
            pa("shop", "default", None, mode, ""),
            pa("shop", "api", Some("api"), mode, ""),
        ])
        .await;
        assert_eq!(
            inherits_strict.status,
            Status::Pass,
            "{mode:?}: {inherits_strict:?}"
        );
    }
    let inherits_permissive = istio(&[pa("shop", "api", Some("api"), "UNSET", "")]).await;
    assert_eq!(inherits_permissive.status, Status::Fail);
    assert!(
        inherits_permissive.message.contains("Istio's default"),
        "{}",
        inherits_permissive.message
    );
}

#[tokio::test]
async fn port_level_settings_override_the_workload_mode_for_their_port_only() {
    let disabled = istio(&[pa(
        "shop",
        "api",
        Some("api"),
        "STRICT",
        "  portLevelMtls:\n    9090: {mode: DISABLE}\n",
    )])
    .await;
    assert_eq!(disabled.status, Status::Fail);
    assert!(
        disabled.message.contains(
            "Deployment/shop/api on port 9090 is DISABLE, set by shop/api (portLevelMtls 9090)"
        ),
        "{}",
        disabled.message
    );
    assert!(
        !disabled.message.contains("port 8080"),
        "{}",
        disabled.message
    );
    let strict_port = istio(&[pa(
        "shop",
        "api",
        Some("api"),
        "PERMISSIVE",
        "  portLevelMtls:\n    8080: {mode: STRICT}\n    9090: {mode: STRICT}\n",
    )])
    .await;
    // Both declared ports are STRICT, but the workload's other ports stay PERMISSIVE.
    assert_eq!(strict_port.status, Status::Fail);
    assert!(strict_port.message.contains("on every port is PERMISSIVE"));
    let unset_port = istio(&[pa(
        "shop",
        "api",
        Some("api"),
        "STRICT",
        "  portLevelMtls:\n    9090: {mode: UNSET}\n",
    )])
    .await;
    assert_eq!(unset_port.status, Status::Pass, "{unset_port:?}");
}

#[tokio::test]
async fn port_level_settings_without_a_selector_are_ignored_as_istio_ignores_them() {
    let outcome = istio(&[pa(
        "shop",
        "default",
        None,
        "STRICT",
        "  portLevelMtls:\n    9090: {mode: DISABLE}\n",
    )])
    .await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
}

#[tokio::test]
async fn disable_at_any_level_fails() {
    let outcome = istio(&[
        pa("istio-system", "default", None, "STRICT", ""),
        pa("shop", "default", None, "DISABLE", ""),
    ])
    .await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(
        outcome.message.contains("is DISABLE"),
        "{}",
        outcome.message
    );
}

fn linkerd_app(namespace_policy: Option<&str>, workload_policy: Option<&str>) -> String {
    let annotation = |policy: Option<&str>| {
        policy
            .map(|p| format!(", config.linkerd.io/default-inbound-policy: {p}"))
            .unwrap_or_default()
    };
    format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: pay, annotations: {{linkerd.io/inject: enabled{}}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: ledger, namespace: pay}}
spec:
  selector: {{matchLabels: {{app: ledger}}}}
  template:
    metadata: {{labels: {{app: ledger}}, annotations: {{linkerd.io/inject: enabled{}}}}}
    spec:
      containers:
      - name: ledger
        image: pay/ledger:1.0
        ports: [{{containerPort: 7000, name: grpc}}]
---
",
        annotation(namespace_policy),
        annotation(workload_policy)
    )
}

const LINKERD_CONFIG_AUTHENTICATED: &str = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: linkerd-config, namespace: linkerd}
data:
  values: |
    proxy:
      defaultInboundPolicy: all-authenticated
---
";

#[tokio::test]
async fn linkerd_workload_annotation_overrides_the_namespace_both_ways() {
    let weakened = strict_mode(&linkerd_app(
        Some("all-authenticated"),
        Some("all-unauthenticated"),
    ))
    .await;
    assert_eq!(weakened.status, Status::Fail, "{weakened:?}");
    assert!(
        weakened
            .message
            .contains("all-unauthenticated (workload annotation)"),
        "{}",
        weakened.message
    );
    let strengthened = strict_mode(&linkerd_app(
        Some("all-unauthenticated"),
        Some("cluster-authenticated"),
    ))
    .await;
    assert_eq!(strengthened.status, Status::Pass, "{strengthened:?}");
}

#[tokio::test]
async fn linkerd_namespace_annotation_overrides_the_cluster_default_both_ways() {
    let cluster = strict_mode(&format!(
        "{LINKERD_CONFIG_AUTHENTICATED}{}",
        linkerd_app(None, None)
    ))
    .await;
    assert_eq!(cluster.status, Status::Pass, "{cluster:?}");
    assert!(
        cluster.message.contains("linkerd-config"),
        "{}",
        cluster.message
    );
    let namespace = strict_mode(&format!(
        "{LINKERD_CONFIG_AUTHENTICATED}{}",
        linkerd_app(Some("all-unauthenticated"), None)
    ))
    .await;
    assert_eq!(namespace.status, Status::Fail);
    let default = strict_mode(&linkerd_app(None, None)).await;
    assert_eq!(default.status, Status::Fail);
    assert!(
        default.message.contains("Linkerd's default"),
        "{}",
        default.message
    );
}

fn server(policy_auth: Option<&str>) -> String {
    let mut text = "apiVersion: policy.linkerd.io/v1beta1
kind: Server
metadata: {name: ledger-grpc, namespace: pay}
spec:
  podSelector: {matchLabels: {app: ledger}}
  port: grpc
---
"
    .to_owned();
    if let Some(kind) = policy_auth {
        text.push_str(&format!(
            "apiVersion: policy.linkerd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: ledger-clients, namespace: pay}}
spec:
  targetRef: {{group: policy.linkerd.io, kind: Server, name: ledger-grpc}}
  requiredAuthenticationRefs: [{{kind: {kind}, name: clients, group: policy.linkerd.io}}]
---
"
        ));
    }
    text
}

#[tokio::test]
async fn a_linkerd_server_decides_its_port_whatever_the_default() {
    let mesh_tls = strict_mode(&format!(
        "{}{}",
        server(Some("MeshTLSAuthentication")),
        linkerd_app(None, None)
    ))
    .await;
    assert_eq!(mesh_tls.status, Status::Pass, "{mesh_tls:?}");
    assert!(mesh_tls.message.contains("Server pay/ledger-grpc"));
    // No AuthorizationPolicy: the Server admits nobody, plaintext included.
    let nobody = strict_mode(&format!("{}{}", server(None), linkerd_app(None, None))).await;
    assert_eq!(nobody.status, Status::Pass, "{nobody:?}");
    // A network-only authorization admits unauthenticated clients, even under an
    // all-authenticated default.
    let network = strict_mode(&format!(
        "{}{}",
        server(Some("NetworkAuthentication")),
        linkerd_app(Some("all-authenticated"), None)
    ))
    .await;
    assert_eq!(network.status, Status::Fail, "{network:?}");
    assert!(
        network
            .message
            .contains("port 7000: Server pay/ledger-grpc is authorized by ledger-clients"),
        "{}",
        network.message
    );
}
