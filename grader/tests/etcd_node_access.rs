//! Node access implementations on real parts: a directory laid out like /etc/kubernetes, and a
//! container of the test node image read through `docker exec`.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use hardlab_grader::target::NodeAccess;
use hardlab_grader::target::docker::DockerNode;
use hardlab_grader::target::local::LocalNode;
use hardlab_testkit::{Component, require};

#[tokio::test]
async fn a_local_directory_stands_in_for_etc_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    std::fs::write(dir.path().join("manifests/etcd.yaml"), "kind: Pod\n").unwrap();
    let node = LocalNode::new(dir.path());
    assert_eq!(
        node.list_dir("/etc/kubernetes/manifests").await.unwrap(),
        ["etcd.yaml"]
    );
    assert_eq!(
        node.read_file("/etc/kubernetes/manifests/etcd.yaml")
            .await
            .unwrap()
            .unwrap(),
        b"kind: Pod\n"
    );
    // Absolute paths outside /etc/kubernetes are read as they are.
    let outside = dir.path().join("manifests/etcd.yaml").display().to_string();
    assert!(node.read_file(&outside).await.unwrap().is_some());
    assert!(
        node.read_file("/etc/kubernetes/missing.yaml")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        node.list_dir("/etc/kubernetes/nothing")
            .await
            .unwrap()
            .is_empty()
    );
    let output = node.exec(&["echo".into(), "hello".into()]).await.unwrap();
    assert_eq!(output.stdout, b"hello\n");
}

/// Removes the container even when the test fails.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

#[tokio::test]
async fn docker_exec_reads_files_lists_directories_and_runs_commands_in_a_node_container() {
    if !require(Component::Docker) {
        return;
    }
    let name = format!("hardlab-nodeaccess-{:x}", rand::random::<u32>());
    let started = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--entrypoint",
            "sleep",
            "hardlab/testnode:latest",
            "300",
        ])
        .output()
        .unwrap();
    let _container = Container(name.clone());
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let setup = Command::new("docker")
        .args([
            "exec",
            &name,
            "sh",
            "-c",
            "mkdir -p /etc/kubernetes/manifests && printf 'kind: Pod\\n' > /etc/kubernetes/manifests/kube-apiserver.yaml",
        ])
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );

    let node = DockerNode::new(name.clone()).unwrap();
    assert_eq!(node.describe(), format!("docker:{name}"));
    assert!(
        node.list_dir("/etc/kubernetes/manifests")
            .await
            .unwrap()
            .contains(&"kube-apiserver.yaml".to_owned())
    );
    assert_eq!(
        node.read_file("/etc/kubernetes/manifests/kube-apiserver.yaml")
            .await
            .unwrap()
            .unwrap(),
        b"kind: Pod\n"
    );
    assert!(
        node.read_file("/etc/kubernetes/none.yaml")
            .await
            .unwrap()
            .is_none()
    );
    assert!(node.list_dir("/no/such/dir").await.unwrap().is_empty());
    assert!(!node.is_minikube().await.unwrap());
    let output = node
        .exec(&["echo".into(), "from the node".into()])
        .await
        .unwrap();
    assert_eq!(output.stdout, b"from the node\n");
    assert_eq!(output.exit_code, 0);
}
