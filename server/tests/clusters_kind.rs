//! The kind path for real: a kind node image (privileged), `kubeadm init` with the kubeadm
//! configuration the provider writes, CNI and storage from the image, a lab's API server flag.
//! Needs a Docker engine that may run privileged containers and a pulled kind node image, so it
//! only runs when `HARDLAB_TEST_KIND_IMAGE` names one (the kind-e2e workflow sets it); elsewhere
//! it says why and skips (also under CI=true: this machine cannot run privileged containers).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use hardlab_server::clusters::{
    Bootstrap, ClusterProvider, ClusterSpec, DockerProvider, Ownership, Phase, random_name,
};

#[tokio::test]
async fn a_kind_node_image_becomes_a_ready_cluster_with_the_labs_api_server_flag() {
    let Ok(image) = std::env::var("HARDLAB_TEST_KIND_IMAGE") else {
        eprintln!("skipping: HARDLAB_TEST_KIND_IMAGE is not set (the kind-e2e workflow runs this)");
        return;
    };
    let provider = DockerProvider::connect()
        .await
        .unwrap()
        .with_instance(&format!("kind-e2e-{}", random_name()));
    let name = random_name();
    let spec = ClusterSpec {
        name: name.clone(),
        image,
        bootstrap: Bootstrap::Kind,
        privileged: true,
        memory_bytes: None,
        pids_limit: None,
        nano_cpus: None,
        ownership: Ownership {
            owner: "ci".into(),
            lab: "kind-e2e".into(),
            session: String::new(),
            expiry_ms: 0,
        },
        apiserver_flags: BTreeMap::from([("profiling".to_owned(), "false".to_owned())]),
        apiserver_mounts: Vec::new(),
    };
    let phases = std::sync::Mutex::new(Vec::new());
    let record = |phase: Phase| phases.lock().unwrap().push(phase);
    let created = provider.create(&spec, &record).await;
    if let Err(error) = &created {
        let logs = tokio::process::Command::new("docker")
            .args([
                "logs",
                "--tail",
                "80",
                &hardlab_server::clusters::node_container_name(&name),
            ])
            .output()
            .await;
        eprintln!("creation failed: {error}\n{logs:?}");
    }
    let created = created.unwrap();
    assert!(phases.lock().unwrap().contains(&Phase::InstallingCni));

    let run = |argv: &[&str]| {
        let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        let provider = provider.clone();
        let name = name.clone();
        async move { provider.exec(&name, &argv, None).await.unwrap() }
    };
    let manifest = run(&["cat", "/etc/kubernetes/manifests/kube-apiserver.yaml"])
        .await
        .stdout_text();
    assert!(manifest.contains("--profiling=false"), "{manifest}");
    let classes = run(&["kubectl", "get", "storageclass", "-o", "name"])
        .await
        .stdout_text();
    assert!(classes.contains("storageclass"), "{classes}");
    let taints = run(&[
        "kubectl",
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].spec.taints}",
    ])
    .await
    .stdout_text();
    assert!(
        !taints.contains("control-plane"),
        "the single node is untainted: {taints}"
    );

    // The kubeconfig the server writes from the certificates it captured at creation.
    let address = provider.address(&name).await.unwrap();
    let kubeconfig = created.credentials.kubeconfig_yaml(&name, &address);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    let host = tokio::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            path.to_str().unwrap(),
            "get",
            "--raw",
            "/readyz",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&host.stdout), "ok");

    provider.delete(&name).await.unwrap();
    support::assert_nothing_left(&provider, &[&name]).await;
}
