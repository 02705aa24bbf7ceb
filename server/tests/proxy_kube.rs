//! The access proxy in front of a real kube-apiserver, driven by the real kubectl: role mapping,
//! RBAC through impersonation, refusals, audit, streaming watches.
#![allow(clippy::unwrap_used)]

mod proxy_common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hardlab_server::proxy::audit::Decision;
use hardlab_server::proxy::ca::UserCa;
use hardlab_server::proxy::tenant::Tenant;
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
    // kubectl prints the proxy's own words, with no discovery errors before them.
    for resource in ["pods", "services"] {
        let output = h.kubectl(&nobody, &["get", resource]);
        assert!(!output.status.success());
        assert_eq!(
            stderr(&output).trim(),
            "Error from server (Forbidden): hardlab proxy: your hardlab roles do not allow Kubernetes access: ask an admin for a role",
        );
    }
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
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (&status["kind"], &status["code"], &status["reason"]),
            (&"Status".into(), &403.into(), &"Forbidden".into())
        );
    }
    // Discovery looks the same whether a refused caller names a real cluster or not.
    let (_, real) = shared.block_on(h.raw_get("carol", &["developer-read"], "/k8s/prod/api/v1"));
    let (_, missing) =
        shared.block_on(h.raw_get("carol", &["developer-read"], "/k8s/nowhere/api/v1"));
    assert_eq!(real, missing);

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

/// A watch on pods in `default` as `user`, read in the background: the receiver gets `()` when
/// the stream ends (the proxy closed it) and the test knows when the watch is open.
fn open_watch(
    shared: &'static proxy_common::Shared,
    client: &reqwest::Client,
) -> std::sync::mpsc::Receiver<&'static str> {
    let h = &shared.harness;
    let url = h.url("/k8s/dev/api/v1/namespaces/default/pods?watch=true");
    let client = client.clone();
    let (events, receive) = std::sync::mpsc::channel();
    shared.runtime.spawn(async move {
        let mut response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let _ = events.send("open");
        // Until the proxy closes the stream (end or error).
        while let Ok(Some(_)) = response.chunk().await {}
        let _ = events.send("ended");
    });
    receive
}

#[test]
fn a_revoked_certificate_is_refused_and_its_open_watch_cut() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let (issued, key_pem) = h.issue(&h.service.ca, "rita", &["developer-read"], HOURS_12);
    let client = h.client_for(&issued, &key_pem);
    let watch = open_watch(shared, &client);
    assert_eq!(watch.recv_timeout(Duration::from_secs(20)).unwrap(), "open");
    assert!(
        watch.recv_timeout(Duration::from_millis(500)).is_err(),
        "the watch stays open while the certificate is good"
    );

    let revoked_at = Instant::now();
    let owner = shared
        .block_on(h.service.revoke_certificate(&issued.serial_hex))
        .unwrap();
    assert_eq!(owner, (Tenant::site(), "rita".to_owned()));
    assert_eq!(
        watch.recv_timeout(Duration::from_secs(10)).unwrap(),
        "ended"
    );
    eprintln!("watch cut {:?} after the revocation", revoked_at.elapsed());

    // A new connection with the same certificate is refused with the reason, as a Status.
    let fresh = h.client_for(&issued, &key_pem);
    let (code, body) = shared.block_on(async {
        let response = fresh
            .get(h.url("/k8s/dev/api/v1/namespaces/default/pods"))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    assert_eq!(code, 401, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert!(
        status["message"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    let denied = shared
        .audit_of("rita")
        .into_iter()
        .find(|e| e.response_code == 401)
        .unwrap();
    assert_eq!(denied.decision, Decision::ProxyDeny);
    assert_eq!(denied.cert_serial, issued.serial_hex);
}

#[test]
fn revoking_all_of_a_users_certificates_refuses_each_and_a_later_login_works() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let path = "/k8s/dev/api/v1/namespaces/default/pods";
    let get = |client: &reqwest::Client| {
        shared.block_on(async {
            client
                .get(h.url(path))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let first = h.issue(&h.service.ca, "rudy", &["developer-read"], HOURS_12);
    let second = h.issue(&h.service.ca, "rudy", &["developer-read"], HOURS_12);
    let first = h.client_for(&first.0, &first.1);
    let second = h.client_for(&second.0, &second.1);
    assert_eq!((get(&first), get(&second)), (200, 200));
    shared
        .block_on(h.service.revoke_user(&Tenant::site(), "rudy"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    // Kept-alive connections were cut; the clients reconnect and are refused.
    assert_eq!((get(&first), get(&second)), (401, 401));
    let later = h.issue(&h.service.ca, "rudy", &["developer-read"], HOURS_12);
    assert_eq!(get(&h.client_for(&later.0, &later.1)), 200);
}

#[test]
fn a_certificate_the_server_has_no_record_of_is_refused() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    // Signed by the real CA key, as someone holding a copy of it would, but never issued.
    let (key_pem, csr_pem) = hardlab_server::proxy::ca::new_key_and_csr("ghost").unwrap();
    let issued = h
        .service
        .ca
        .issue_client_cert(
            &csr_pem,
            "alice",
            &["kubernetes-admins".to_owned()],
            HOURS_12,
        )
        .unwrap();
    let client = h.client_for(&issued, &key_pem);
    let (code, body) = shared.block_on(async {
        let response = client
            .get(h.url("/k8s/dev/api/v1/namespaces/default/pods"))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("not on record"), "{body}");
}

#[test]
fn a_role_taken_away_applies_at_the_next_request_on_the_same_connection() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let path = "/k8s/dev/api/v1/namespaces/default/pods";
    let (issued, key_pem) = h.issue(&h.service.ca, "ron", &["developer-read"], HOURS_12);
    let client = h.client_for(&issued, &key_pem);
    let get = || {
        shared.block_on(async {
            let response = client.get(h.url(path)).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    assert_eq!(get().0, 200);
    shared
        .block_on(hardlab_server::proxy::store::set_user_roles(
            &h.pool,
            &Tenant::site(),
            "ron",
            &[],
        ))
        .unwrap();
    let (code, body) = get();
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("roles do not allow"), "{body}");
    let events = shared.audit_of("ron");
    let last = events.last().unwrap();
    assert_eq!(
        (last.decision, last.response_code),
        (Decision::ProxyDeny, 403)
    );
    assert!(
        last.user_roles.is_empty(),
        "the event names the roles held now"
    );
    // The certificate still says developer-read; it is not what counts.
    let identity = hardlab_server::proxy::ca::client_identity(
        &hardlab_server::proxy::ca::pem_body(&issued.cert_pem, "CERTIFICATE").unwrap(),
    )
    .unwrap();
    assert_eq!(identity.roles, ["developer-read"]);
}

#[test]
fn a_percent_encoded_path_is_audited_as_the_resource_request_the_api_server_serves() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    for path in [
        "/k8s/dev/%61pi/v1/namespaces/default/services",
        "/k8s/dev/api/v1/namespaces/default/%73ervices",
        "/k8s/%64ev/api/v1/namespaces/%64efault/services",
    ] {
        let (code, body) = shared.block_on(h.raw_get("percy", &["developer-read"], path));
        // The API server saw `list services` and its RBAC refused bob's group.
        assert_eq!(code, 403, "{path}: {body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        let message = status["message"].as_str().unwrap();
        assert!(
            message.contains("cannot list resource \"services\""),
            "{message}"
        );
    }
    let events = shared.audit_of("percy");
    assert_eq!(events.len(), 3, "{events:?}");
    for event in &events {
        assert_eq!(
            (
                event.verb.as_str(),
                event.resource_kind.as_str(),
                event.resource_namespace.as_str(),
                event.kubernetes_cluster.as_str(),
                event.decision,
            ),
            ("list", "services", "default", "dev", Decision::Upstream),
            "{event:?}"
        );
    }
    // An encoded slash would split differently here and at the API server: refused.
    let (code, body) = shared.block_on(h.raw_get(
        "percy",
        &["developer-read"],
        "/k8s/dev/api/v1/namespaces/default%2Fservices",
    ));
    assert_eq!(code, 400, "{body}");
}

#[test]
fn the_database_holds_no_private_key_kubeconfig_credential_or_totp_secret_in_clear() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let secret = shared
        .block_on(hardlab_server::proxy::store::enroll_totp(
            &h.pool, &h.sealer, "tess", None,
        ))
        .unwrap();
    // Everything SQLite has on disk for this database, free pages and journal included.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(h.db_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("test.db")
        {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    for needle in [
        "PRIVATE KEY",
        "client-key-data",
        "apiVersion: v1",
        secret.as_str(),
    ] {
        assert!(!text.contains(needle), "{needle:?} is in the database file");
    }
    // The sealed values are there, and they open only in their own row.
    let (sealed,): (String,) = shared
        .block_on(
            sqlx::query_as("SELECT secret FROM proxy_totp WHERE user_name = 'tess'")
                .fetch_one(&h.pool),
        )
        .unwrap();
    shared
        .block_on(
            sqlx::query(
                "INSERT INTO proxy_totp (tenant, user_name, secret, confirmed, last_step) VALUES ('', 'mallory', $1, 1, NULL)",
            )
            .bind(&sealed)
            .execute(&h.pool),
        )
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let code = hardlab_server::proxy::totp::code_for_step(
        &secret,
        hardlab_server::proxy::totp::step_at(now),
    )
    .unwrap();
    let swapped = shared.block_on(hardlab_server::proxy::store::check_totp(
        &h.pool,
        &h.sealer,
        &Tenant::site(),
        "mallory",
        &code,
        false,
    ));
    let error = swapped.unwrap_err().to_string();
    assert!(error.contains("does not open"), "{error}");
    // Nor in the same user's row of another tenant: the tenant is part of the row's identity.
    shared
        .block_on(
            sqlx::query(
                "INSERT INTO proxy_totp (tenant, user_name, secret, confirmed, last_step) VALUES ('mallory', 'tess', $1, 1, NULL)",
            )
            .bind(&sealed)
            .execute(&h.pool),
        )
        .unwrap();
    let other_tenant = shared.block_on(hardlab_server::proxy::store::check_totp(
        &h.pool,
        &h.sealer,
        &Tenant::parse("mallory").unwrap(),
        "tess",
        &code,
        false,
    ));
    let error = other_tenant.unwrap_err().to_string();
    assert!(error.contains("does not open"), "{error}");
}

#[test]
fn a_request_whose_audit_event_cannot_be_stored_is_refused() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    // Fault injection: a second proxy on the same database whose checkpoint "file" is a folder,
    // so every audit append fails at its last step.
    let broken = shared
        .block_on(hardlab_server::proxy::service::ProxyService::start(
            h.pool.clone(),
            std::sync::Arc::clone(&h.sealer),
            hardlab_server::proxy::service::ProxySettings {
                listen: "127.0.0.1:0".parse().unwrap(),
                audit_checkpoint_file: Some(h.db_dir.path().to_owned()),
                ..Default::default()
            },
        ))
        .unwrap();
    let (issued, key_pem) = h.issue(&h.service.ca, "alice", &["kubernetes-admins"], HOURS_12);
    let client = h.client_for(&issued, &key_pem);
    for path in [
        "/k8s/dev/api/v1/namespaces/default/pods",
        "/k8s/no-such-cluster/api/v1/namespaces/default/pods",
    ] {
        let (code, body) = shared.block_on(async {
            let response = client
                .get(format!("https://{}{path}", broken.listen))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        });
        assert_eq!(code, 503, "{path}: {body}");
        assert!(body.contains("audit log cannot be written"), "{body}");
        assert!(!body.contains("PodList"), "no data leaves unaudited");
    }
    // A change is refused before the API server sees it: nothing is made unaudited.
    let (code, body) = shared.block_on(async {
        let response = client
            .post(format!(
                "https://{}/k8s/dev/api/v1/namespaces/default/configmaps",
                broken.listen
            ))
            .json(&serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "made-unaudited"}, "data": {"a": "b"}
            }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    assert_eq!(code, 503, "{body}");
    let lookup = h
        .plane
        .kubectl_admin(&["get", "configmap", "made-unaudited", "-n", "default"]);
    assert!(
        !lookup.status.success(),
        "the API server never saw the create"
    );
}
