//! The Kubernetes provider on a real API server (kube-apiserver and kube-controller-manager
//! v1.20.2 from envtest, with etcd): what Start creates on the host cluster, what Remove and the
//! reaper delete, the provider's RBAC as shipped in `deploy/rbac.yaml` (access reviews, and the
//! provider itself running under that ServiceAccount by impersonation), and `kubectl apply -k
//! deploy/ --dry-run=server`.
//!
//! envtest has no kubelet, so the node pod stays Pending here: these tests see everything up to
//! the pod being scheduled, and a Start that then fails cleanly with the scheduler's reason. The
//! running path (kubeadm in the pod, the terminal, Check) is the kind workflow's
//! (.github/workflows/kind-e2e.yml), where a real kubelet runs the pods.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{TestApp, TestDb};
use hardlab_server::clusters::kubernetes::{KubernetesProvider, KubernetesSettings};
use hardlab_server::clusters::{Bootstrap, ClusterProvider, ClusterSpec, Ownership, random_name};
use hardlab_server::config::{ClusterSettings, ProviderKind};
use hardlab_testkit::ControlPlane;
use hardlab_testkit::{Component, require};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, ResourceQuota, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use tokio::sync::OnceCell;

const PROVIDER_USER: &str = "system:serviceaccount:hardlab:hardlab";

static PLANE: OnceCell<ControlPlane> = OnceCell::const_new();

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One control plane for this binary, with the controller manager (namespace deletion, service
/// accounts), and deploy/'s namespace and RBAC applied with kubectl as an operator would.
async fn plane() -> Option<&'static ControlPlane> {
    if !require(Component::ControlPlane) || !require(Component::ControllerManager) {
        return None;
    }
    Some(
        PLANE
            .get_or_init(|| async {
                let plane = ControlPlane::builder()
                    .controller_manager(true)
                    .start()
                    .await
                    .unwrap();
                for file in ["deploy/namespace.yaml", "deploy/rbac.yaml"] {
                    let output = kubectl(&plane, &["apply", "-n", "hardlab", "-f", file]);
                    assert!(
                        output.status.success(),
                        "{file}: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                // The controller manager is up once it has given the new namespace its default
                // ServiceAccount (admission refuses pods in a namespace without one).
                let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
                    Api::namespaced(plane.client().await, "hardlab");
                wait_for("the controller manager", || async {
                    accounts.get_opt("default").await.ok().flatten()
                })
                .await;
                plane
            })
            .await,
    )
}

fn kubectl(plane: &ControlPlane, args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_path())
        .args(args)
        .current_dir(repository())
        .output()
        .expect("kubectl runs")
}

/// The control plane's admin kubeconfig, acting as the provider's ServiceAccount: every call the
/// provider makes is judged by deploy/rbac.yaml, as in a real install.
fn provider_kubeconfig(plane: &ControlPlane, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(plane.kubeconfig_path()).unwrap();
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for user in config["users"].as_sequence_mut().unwrap() {
        user["user"]["as"] = PROVIDER_USER.into();
        user["user"]["as-groups"] = serde_yaml::to_value([
            "system:serviceaccounts",
            "system:serviceaccounts:hardlab",
            "system:authenticated",
        ])
        .unwrap();
    }
    let path = dir.join("provider.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

fn host_settings(kubeconfig: PathBuf) -> KubernetesSettings {
    KubernetesSettings {
        kubeconfig: Some(kubeconfig),
        node_selector: BTreeMap::from([("hardlab.io/learner-nodes".to_owned(), "true".to_owned())]),
        tolerations: vec!["hardlab.io/learner-nodes=true:NoSchedule".to_owned()],
        egress_cidrs: vec!["10.20.0.0/16".to_owned()],
        schedule_timeout: Duration::from_secs(6),
        ..KubernetesSettings::default()
    }
}

fn spec(name: &str) -> ClusterSpec {
    ClusterSpec {
        name: name.to_owned(),
        image: "hardlab/node:v1.36.1".to_owned(),
        bootstrap: Bootstrap::Kind,
        privileged: true,
        memory_bytes: Some(2 << 30),
        pids_limit: None,
        nano_cpus: Some(1_500_000_000),
        ownership: Ownership {
            owner: "alice@example.org".to_owned(),
            lab: "etcd-secrets".to_owned(),
            session: "s-1".to_owned(),
            expiry_ms: 1_900_000_000_000,
        },
        apiserver_flags: BTreeMap::new(),
        apiserver_mounts: Vec::new(),
    }
}

async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn namespace_gone_or_going(admin: &kube::Client, name: &str) -> bool {
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    match namespaces.get_opt(name).await.unwrap() {
        None => true,
        Some(namespace) => namespace.metadata.deletion_timestamp.is_some(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_creates_the_namespace_quota_limits_policy_and_node_pod_and_a_node_that_never_runs_is_removed()
 {
    let Some(plane) = plane().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let admin = plane.client().await;
    let provider =
        KubernetesProvider::connect(host_settings(provider_kubeconfig(plane, dir.path())))
            .await
            .unwrap()
            .with_instance("test-k8s-start");
    let provider = Arc::new(provider);
    let name = random_name();
    let namespace = provider.namespace(&name);

    let creating = {
        let provider = Arc::clone(&provider);
        let spec = spec(&name);
        tokio::spawn(async move { provider.create(&spec, &|_| {}).await })
    };

    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    let pod = wait_for("the node pod", || async {
        pods.get_opt("node").await.ok().flatten()
    })
    .await;
    let pod_spec = pod.spec.unwrap();
    let container = &pod_spec.containers[0];
    assert_eq!(container.image.as_deref(), Some("hardlab/node:v1.36.1"));
    assert_eq!(
        container.security_context.as_ref().unwrap().privileged,
        Some(true),
        "a kind node runs systemd and containerd"
    );
    assert_eq!(
        pod_spec.automount_service_account_token,
        Some(false),
        "no host token in the learner's node"
    );
    assert_eq!(pod_spec.enable_service_links, Some(false));
    assert_eq!(pod_spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        pod_spec
            .node_selector
            .unwrap()
            .get("hardlab.io/learner-nodes")
            .map(String::as_str),
        Some("true")
    );
    let toleration = &pod_spec.tolerations.unwrap()[0];
    assert_eq!(toleration.key.as_deref(), Some("hardlab.io/learner-nodes"));
    assert_eq!(toleration.effect.as_deref(), Some("NoSchedule"));
    let limits = container
        .resources
        .as_ref()
        .unwrap()
        .limits
        .as_ref()
        .unwrap();
    assert_eq!(limits["memory"].0, "2147483648");
    assert_eq!(limits["cpu"].0, "1500m");

    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let ns = namespaces.get(&namespace).await.unwrap();
    let labels = ns.metadata.labels.unwrap();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "privileged");
    assert_eq!(labels["io.hardlab.managed"], "test-k8s-start");
    assert_eq!(
        ns.metadata.annotations.unwrap()["hardlab.io/owner"],
        "alice@example.org"
    );

    let quota = Api::<ResourceQuota>::namespaced(admin.clone(), &namespace)
        .get("hardlab-node")
        .await
        .unwrap();
    let hard = quota.spec.unwrap().hard.unwrap();
    assert_eq!(hard["pods"].0, "1");
    assert_eq!(hard["limits.memory"].0, "2147483648");
    assert_eq!(hard["services.nodeports"].0, "0");
    let limit_range = Api::<LimitRange>::namespaced(admin.clone(), &namespace)
        .get("hardlab-node")
        .await
        .unwrap();
    assert_eq!(
        limit_range.spec.unwrap().limits[0].max.as_ref().unwrap()["cpu"].0,
        "1500m"
    );

    let policy = Api::<NetworkPolicy>::namespaced(admin.clone(), &namespace)
        .get("hardlab-node")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(
        policy.pod_selector.and_then(|s| s.match_labels),
        None,
        "every pod of the namespace"
    );
    assert_eq!(policy.policy_types.unwrap(), ["Ingress", "Egress"]);
    let ingress = &policy.ingress.unwrap()[0];
    let peer = &ingress.from.as_ref().unwrap()[0];
    assert_eq!(
        peer.namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["kubernetes.io/metadata.name"],
        "hardlab",
        "only hardlab's own namespace"
    );
    assert_eq!(
        peer.pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["app.kubernetes.io/name"],
        "hardlab",
        "and there only the server's pods"
    );
    let ports: Vec<String> = ingress
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|port| format!("{:?}", port.port))
        .collect();
    assert_eq!(ports.len(), 2, "{ports:?}");
    let egress = policy.egress.unwrap();
    assert_eq!(
        egress.len(),
        2,
        "DNS and the configured range, nothing else"
    );
    assert_eq!(
        egress[1].to.as_ref().unwrap()[0]
            .ip_block
            .as_ref()
            .unwrap()
            .cidr,
        "10.20.0.0/16"
    );
    let service = Api::<Service>::namespaced(admin.clone(), &namespace)
        .get("api")
        .await
        .unwrap();
    assert_eq!(service.spec.unwrap().type_.as_deref(), Some("ClusterIP"));

    // While it waits the cluster is the provider's own, and not running.
    let listed = provider.list_own().await.unwrap();
    let node = listed.iter().find(|node| node.cluster == name).unwrap();
    assert!(!node.running);
    assert_eq!(node.ownership.lab, "etcd-secrets");

    let error = creating.await.unwrap().unwrap_err().to_string();
    assert!(error.contains("did not start within 6 s"), "{error}");
    assert!(error.contains("Pending"), "{error}");
    assert!(
        namespace_gone_or_going(&admin, &namespace).await,
        "a failed Start removes its namespace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_and_the_reaper_delete_the_namespace_and_leave_other_installations_alone() {
    let Some(plane) = plane().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let admin = plane.client().await;
    let settings = host_settings(provider_kubeconfig(plane, dir.path()));
    let ours = KubernetesProvider::connect(settings.clone())
        .await
        .unwrap()
        .with_instance("test-k8s-reaper");
    let theirs = KubernetesProvider::connect(settings)
        .await
        .unwrap()
        .with_instance("test-k8s-other");
    let (kept, stray, removed, foreign) =
        (random_name(), random_name(), random_name(), random_name());
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for (provider, cluster) in [
        (&ours, &kept),
        (&ours, &stray),
        (&ours, &removed),
        (&theirs, &foreign),
    ] {
        let instance = if std::ptr::eq(provider, &ours) {
            "test-k8s-reaper"
        } else {
            "test-k8s-other"
        };
        let namespace: Namespace = serde_json::from_value(json!({
            "metadata": {"name": provider.namespace(cluster), "labels": {
                "io.hardlab.managed": instance, "io.hardlab.cluster": cluster}}
        }))
        .unwrap();
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    let listed: HashSet<String> = ours
        .list_own()
        .await
        .unwrap()
        .into_iter()
        .map(|node| node.cluster)
        .collect();
    assert_eq!(
        listed,
        HashSet::from([kept.clone(), stray.clone(), removed.clone()])
    );

    ours.delete(&removed).await.unwrap();
    ours.delete(&removed).await.unwrap();
    assert!(namespace_gone_or_going(&admin, &ours.namespace(&removed)).await);

    let swept = ours
        .remove_strays(&HashSet::from([kept.clone()]))
        .await
        .unwrap();
    assert_eq!(swept, vec![stray.clone()]);
    assert!(namespace_gone_or_going(&admin, &ours.namespace(&stray)).await);
    assert!(!namespace_gone_or_going(&admin, &ours.namespace(&kept)).await);
    assert!(
        !namespace_gone_or_going(&admin, &theirs.namespace(&foreign)).await,
        "another installation's cluster is not ours to reap"
    );
    assert!(ours.inspect(&foreign).await.is_err(), "nor ours to inspect");
    ours.delete(&kept).await.unwrap();
    theirs.delete(&foreign).await.unwrap();
}

async fn allowed(admin: &kube::Client, attributes: serde_json::Value) -> bool {
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": PROVIDER_USER,
            "groups": ["system:serviceaccounts", "system:serviceaccounts:hardlab", "system:authenticated"],
            "resourceAttributes": attributes,
        },
    }))
    .unwrap();
    let answer = Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    answer.status.unwrap().allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_service_account_may_do_what_it_needs_and_nothing_more() {
    let Some(plane) = plane().await else { return };
    let admin = plane.client().await;
    let may = [
        json!({"verb": "create", "resource": "namespaces"}),
        json!({"verb": "delete", "resource": "namespaces", "name": "hardlab-c-1"}),
        json!({"verb": "list", "resource": "namespaces"}),
        json!({"verb": "create", "resource": "rolebindings", "group": "rbac.authorization.k8s.io", "namespace": "hardlab-c-1"}),
        json!({"verb": "bind", "resource": "clusterroles", "group": "rbac.authorization.k8s.io", "name": "hardlab-node-manager"}),
    ];
    for attributes in may {
        assert!(
            allowed(&admin, attributes.clone()).await,
            "should be allowed: {attributes}"
        );
    }
    let may_not = [
        json!({"verb": "get", "resource": "secrets", "namespace": "kube-system"}),
        json!({"verb": "list", "resource": "secrets"}),
        json!({"verb": "create", "resource": "pods", "namespace": "kube-system"}),
        json!({"verb": "create", "resource": "pods", "subresource": "exec", "namespace": "default"}),
        json!({"verb": "list", "resource": "nodes"}),
        json!({"verb": "update", "resource": "namespaces", "name": "kube-system"}),
        json!({"verb": "bind", "resource": "clusterroles", "group": "rbac.authorization.k8s.io", "name": "cluster-admin"}),
        json!({"verb": "escalate", "resource": "clusterroles", "group": "rbac.authorization.k8s.io"}),
        json!({"verb": "create", "resource": "clusterrolebindings", "group": "rbac.authorization.k8s.io"}),
        json!({"verb": "impersonate", "resource": "users"}),
    ];
    for attributes in may_not {
        assert!(
            !allowed(&admin, attributes.clone()).await,
            "should be refused: {attributes}"
        );
    }
    // Inside a cluster namespace, only through the binding the provider makes there (the Start
    // test runs the provider itself as this ServiceAccount, so the binding is known to suffice).
    assert!(
        !allowed(
            &admin,
            json!({"verb": "create", "resource": "pods", "namespace": "hardlab-c-unbound"})
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_applies_with_kubectl_kustomize_as_a_server_side_dry_run() {
    let Some(plane) = plane().await else { return };
    let output = kubectl(plane, &["apply", "-k", "deploy/", "--dry-run=server"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for object in [
        "deployment.apps/hardlab",
        "service/hardlab",
        "clusterrole.rbac.authorization.k8s.io/hardlab-provider",
        "networkpolicy.networking.k8s.io/hardlab",
    ] {
        assert!(stdout.contains(object), "{object} missing from:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_through_the_app_on_the_kubernetes_provider_fails_with_the_schedulers_reason() {
    let Some(plane) = plane().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let admin = plane.client().await;
    let instance = format!("test-{}", random_name());
    let settings = ClusterSettings {
        provider: ProviderKind::Kubernetes,
        host: host_settings(provider_kubeconfig(plane, dir.path())),
        docker_instance: Some(instance.clone()),
        ..common::test_cluster_settings()
    };
    let app = TestApp::builder(TestDb::sqlite().await)
        .labs(repository().join("labs"))
        .clusters(settings)
        .start()
        .await;
    let learner = app.learner("alice").await;
    learner.get("/").await;
    let started = reqwest::Client::new()
        .post(format!("{}/api/labs/etcd-secrets/cluster", app.base_url))
        .header("cookie", learner.cookie_header())
        .header("x-csrf-token", learner.csrf().unwrap_or_default())
        .header("origin", &app.base_url)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let view: serde_json::Value = started.json().await.unwrap();
    let id = view["id"].as_str().unwrap().to_owned();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let selector = format!("io.hardlab.managed={instance}");
    wait_for("the learner's namespace", || async {
        let list = namespaces
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .ok()?;
        (!list.items.is_empty()).then_some(())
    })
    .await;
    let failed = wait_for("the cluster to fail", || async {
        let view: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/clusters/{id}", app.base_url))
            .header("cookie", learner.cookie_header())
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (view["state"] == "failed").then_some(view)
    })
    .await;
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("did not start") && reason.contains("Pending"),
        "{failed}"
    );
}
