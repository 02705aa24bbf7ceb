//! The access proxy in front of a real kube-apiserver, driven by the real kubectl: role mapping,
//! RBAC through impersonation, refusals, audit, streaming watches.
#![allow(clippy::unwrap_used)]

mod proxy_common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hardlab_server::proxy::audit::Decision;
use hardlab_server::proxy::ca::UserCa;
use proxy_common::{shared, stderr, stdout};

const HOURS_12: time::Duration = time::Duration::hours(12);

#[test]
fn the_admin_can_do_everything_through_the_proxy() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let kubeconfig = h.user_kubeconfig(
        &h.service.ca,
        "alice",
        &["kubernetes-admins"],
        HOURS_12,
        "dev",
    );
    for args in [
        &["get", "pods"][..],
        &["get", "services"],
        &["create", "namespace", "alice-made-this"],
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            "alice-made-this",
            "--from-literal=a=b",
        ],
        &["delete", "namespace", "alice-made-this", "--wait=false"],
        &["auth", "can-i", "*", "*"],
    ] {
        let output = h.kubectl(&kubeconfig, args);
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            stderr(&output)
        );
    }
    let events = shared.audit_of("alice");
    let create = events
        .iter()
        .find(|e| e.verb == "create" && e.resource_kind == "configmaps")
        .unwrap();
    assert_eq!(create.response_code, 201);
    assert_eq!(create.resource_namespace, "alice-made-this");
    assert!(
        create
            .kubernetes_groups
            .contains(&"system:masters".to_owned())
    );
}

#[test]
fn bob_gets_pods_but_not_services_and_the_audit_log_holds_both() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let kubeconfig = h.user_kubeconfig(&h.service.ca, "bob", &["developer-read"], HOURS_12, "dev");
    let pods = h.kubectl(&kubeconfig, &["get", "pods"]);
    assert!(pods.status.success(), "get pods: {}", stderr(&pods));
    let services = h.kubectl(&kubeconfig, &["get", "services"]);
    assert!(!services.status.success());
    let message = stderr(&services);
    assert!(
        message.contains("User \"bob\" cannot list resource \"services\""),
        "{message}"
    );

    let events = shared.audit_of("bob");
    let pods_event = events.iter().find(|e| e.resource_kind == "pods").unwrap();
    assert_eq!(
        (
            pods_event.verb.as_str(),
            pods_event.response_code,
            pods_event.decision
        ),
        ("list", 200, Decision::Upstream)
    );
    assert_eq!(pods_event.kubernetes_cluster, "dev");
    assert_eq!(pods_event.resource_namespace, "default");
    assert_eq!(
        pods_event.kubernetes_groups,
        ["developer-read", "system:authenticated"]
    );
    let services_event = events
        .iter()
        .find(|e| e.resource_kind == "services")
        .unwrap();
    assert_eq!(
        (
            services_event.verb.as_str(),
            services_event.response_code,
            services_event.decision
        ),
        ("list", 403, Decision::Upstream)
    );
    assert_eq!(services_event.summary(), "bob got 403 on list services");
    assert!(services_event.addr_remote.starts_with("127.0.0.1:"));
}

#[test]
fn a_user_without_a_role_and_a_role_for_other_clusters_are_refused_by_the_proxy() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let nobody = h.user_kubeconfig(&h.service.ca, "nobody", &[], HOURS_12, "dev");
    let output = h.kubectl(&nobody, &["get", "pods"]);
    assert!(!output.status.success());
    // kubectl hides the message of a refused discovery request; a raw request shows it.
    let (code, body) =
        shared.block_on(h.raw_get("nobody", &[], "/k8s/dev/api/v1/namespaces/default/pods"));
    assert_eq!(code, 403);
    assert!(
        body.contains("roles do not allow Kubernetes access"),
        "{body}"
    );
    // A cluster that does not exist and one the roles do not reach answer alike.
    for cluster in ["prod", "no-such-cluster"] {
        let (code, body) = shared.block_on(h.raw_get(
            "carol",
            &["developer-read"],
            &format!("/k8s/{cluster}/api/v1/namespaces/default/pods"),
        ));
        assert_eq!(code, 403);
        assert!(body.contains("no cluster by that name"), "{body}");
    }

    let events = shared.audit_of("nobody");
    assert!(
        events
            .iter()
            .any(|e| e.decision == Decision::ProxyDeny && e.response_code == 403)
    );
}

#[test]
fn a_certificate_from_a_foreign_ca_or_an_expired_one_is_refused_at_the_handshake() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let foreign = UserCa::generate("someone else's CA").unwrap();
    let forged = h.user_kubeconfig(&foreign, "mallory", &["kubernetes-admins"], HOURS_12, "dev");
    let output = h.kubectl(&forged, &["get", "pods", "--request-timeout=10s"]);
    assert!(!output.status.success(), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains("certificate")
            || message.contains("tls")
            || message.contains("EOF")
            || message.contains("reset"),
        "{message}"
    );

    // Issued two minutes in the past and valid for one: expired a minute ago.
    let expired = h.user_kubeconfig(
        &h.service.ca,
        "mallory",
        &["kubernetes-admins"],
        time::Duration::seconds(-60),
        "dev",
    );
    let output = h.kubectl(&expired, &["get", "pods", "--request-timeout=10s"]);
    assert!(!output.status.success(), "{}", stdout(&output));
    assert!(
        shared.audit_of("mallory").is_empty(),
        "no request got past TLS"
    );
}

#[test]
fn bob_asking_to_impersonate_system_masters_is_refused_and_audited() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let kubeconfig = h.user_kubeconfig(
        &h.service.ca,
        "bob-escalates",
        &["developer-read"],
        HOURS_12,
        "dev",
    );
    let output = h.kubectl(
        &kubeconfig,
        &[
            "get",
            "secrets",
            "-A",
            "--as-group=system:masters",
            "--as=bob-escalates",
        ],
    );
    assert!(!output.status.success(), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("system:masters"),
        "{}",
        stderr(&output)
    );
    // Narrowing to a group the role grants is allowed.
    let narrowed = h.kubectl(
        &kubeconfig,
        &[
            "get",
            "pods",
            "--as-group=developer-read",
            "--as=bob-escalates",
        ],
    );
    assert!(narrowed.status.success(), "{}", stderr(&narrowed));

    // kubectl may first ask for discovery with the same headers (also refused, with no resource),
    // unless another test in this binary already filled the shared discovery cache.
    let events = shared.audit_of("bob-escalates");
    let refused = events
        .iter()
        .find(|e| e.decision == Decision::ProxyDeny && e.resource_kind == "secrets")
        .unwrap_or_else(|| panic!("no refused request for secrets among {events:#?}"));
    assert_eq!(refused.response_code, 403);
    assert!(
        events
            .iter()
            .filter(|e| e.decision == Decision::ProxyDeny)
            .all(|e| e.response_code == 403 && e.reason.contains("system:masters"))
    );
    assert!(
        refused.reason.contains("system:masters"),
        "{}",
        refused.reason
    );
}

#[test]
fn a_client_authorization_header_never_reaches_the_api_server() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let kubeconfig = h.user_kubeconfig(
        &h.service.ca,
        "bob-token",
        &["developer-read"],
        HOURS_12,
        "dev",
    );
    // With the proxy's header stripping, the API server sees only the impersonated bob-token;
    // a bearer token smuggled in by the client would otherwise be tried first.
    let output = h.kubectl(&kubeconfig, &["get", "pods", "--token=some-stolen-token"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let who = h.kubectl(&kubeconfig, &["auth", "can-i", "list", "services"]);
    assert_eq!(stdout(&who).trim(), "no");
}

#[test]
fn a_watch_through_the_proxy_delivers_an_event_within_a_second() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    h.plane
        .apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: watch-test}\n");
    let kubeconfig = h.user_kubeconfig(
        &h.service.ca,
        "alice-watch",
        &["kubernetes-admins"],
        HOURS_12,
        "dev",
    );
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "get",
            "configmaps",
            "-n",
            "watch-test",
            "-w",
            "--output-watch-events",
        ])
        .env("HOME", h.home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, receive) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send((line.unwrap(), Instant::now())).is_err() {
                return;
            }
        }
    });
    // The watch is established once the initial list (kube-root-ca.crt is not there in 1.20, so
    // wait for the watch request in the audit log instead).
    let started = Instant::now();
    while !shared
        .audit_of("alice-watch")
        .iter()
        .any(|e| e.verb == "watch")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the watch never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let configmaps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(shared.block_on(h.admin_client()), "watch-test");
    let mut ping = k8s_openapi::api::core::v1::ConfigMap::default();
    ping.metadata.name = Some("ping".to_owned());
    let created_at = Instant::now();
    shared
        .block_on(configmaps.create(&Default::default(), &ping))
        .unwrap();
    let (line, seen_at) = loop {
        let (line, at) = receive.recv_timeout(Duration::from_secs(5)).unwrap();
        if line.contains("ping") {
            break (line, at);
        }
    };
    let _ = watch.kill();
    let _ = watch.wait();
    let delay = seen_at.duration_since(created_at);
    eprintln!("watch event seen {delay:?} after the change");
    assert!(line.contains("ADDED"), "{line}");
    assert!(delay < Duration::from_secs(1), "the event took {delay:?}");
}

#[test]
fn a_watch_is_cut_when_the_certificate_expires() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let kubeconfig = h.user_kubeconfig(
        &h.service.ca,
        "alice-expiring",
        &["kubernetes-admins"],
        time::Duration::seconds(4),
        "dev",
    );
    let started = Instant::now();
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "pods", "-A", "-w"])
        .env("HOME", h.home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ended = loop {
        if let Some(status) = watch.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = watch.kill();
            panic!("the watch outlived its certificate by more than 15 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // kubectl may retry the watch with its now-expired certificate; the handshake refuses it.
    assert!(!ended.success() || started.elapsed() >= Duration::from_secs(3));
    assert!(
        shared
            .audit_of("alice-expiring")
            .iter()
            .any(|e| e.verb == "watch"),
        "the watch had started before the certificate expired"
    );
}

#[test]
fn exec_is_forwarded_as_an_upgrade_and_audited_as_create_on_pods_exec() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    // No kubelet here: the pod stays Pending and the API server refuses the stream itself, so this
    // proves the upgrade request reaches it intact and its answer comes back, not a live shell.
    h.plane.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: shell, namespace: default}\nspec:\n  containers:\n  - {name: main, image: busybox}\n",
    );
    let direct = h.plane.kubectl_admin(&["exec", "shell", "--", "true"]);
    let kubeconfig = h.user_kubeconfig(
        &h.service.ca,
        "alice-exec",
        &["kubernetes-admins"],
        HOURS_12,
        "dev",
    );
    let proxied = h.kubectl(&kubeconfig, &["exec", "shell", "--", "true"]);
    assert!(!direct.status.success() && !proxied.status.success());
    let last_line = |text: String| text.lines().last().unwrap_or_default().to_owned();
    assert_eq!(last_line(stderr(&proxied)), last_line(stderr(&direct)));
    let events = shared.audit_of("alice-exec");
    let exec = events
        .iter()
        .find(|e| e.resource_kind == "pods/exec")
        .unwrap();
    assert_eq!(exec.verb, "create");
    assert_eq!(exec.resource_name, "shell");
    assert_eq!(exec.decision, Decision::Upstream);

    // bob's developer-read grant has no pods/exec: RBAC refuses him through the proxy.
    let bob = h.user_kubeconfig(
        &h.service.ca,
        "bob-exec",
        &["developer-read"],
        HOURS_12,
        "dev",
    );
    let refused = h.kubectl(&bob, &["exec", "shell", "--", "true"]);
    assert!(
        stderr(&refused).contains("forbidden"),
        "{}",
        stderr(&refused)
    );
}
