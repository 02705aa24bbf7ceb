//! The must-show run: `hardlab-grade live --lab etcd-secrets --format junit` against a real
//! etcd and kube-apiserver, reading the control-plane files with `--node local:DIR` and etcd
//! directly with `--etcd URL --etcd-ca/--etcd-cert/--etcd-key`.
#![allow(clippy::unwrap_used)]

use std::process::Output;

use hardlab_testkit::{Component, ControlPlane, require};
use quick_xml::events::Event;
use serde_json::Value;

const AESCBC_CONFIG: &str = "\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
      - identity: {}
";

async fn aescbc_plane() -> ControlPlane {
    ControlPlane::builder()
        .file("enc/config.yaml", AESCBC_CONFIG)
        .apiserver_flag("--encryption-provider-config={dir}/enc/config.yaml")
        .etcd_tls(true)
        .start()
        .await
        .unwrap()
}

async fn grade_etcd_lab(plane: &ControlPlane, format: &str) -> Output {
    let etcd = plane.etcd_client_cert().unwrap();
    let node = format!("local:{}", plane.kubernetes_dir().display());
    tokio::process::Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .arg("live")
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_path())
        .args(["--lab", "etcd-secrets", "--format", format, "--node", &node])
        .args(["--etcd", plane.etcd_endpoint()])
        .arg("--etcd-ca")
        .arg(&etcd.ca)
        .arg("--etcd-cert")
        .arg(&etcd.cert)
        .arg("--etcd-key")
        .arg(&etcd.key)
        .output()
        .await
        .unwrap()
}

fn etcd_lab_check_ids() -> Vec<String> {
    hardlab_grader::catalog::all()
        .into_iter()
        .filter(|check| check.meta.lab.id() == "etcd-secrets")
        .map(|check| check.meta.id.to_owned())
        .collect()
}

#[tokio::test]
async fn the_etcd_lab_as_junit_has_one_testcase_per_check_and_reaches_node_and_etcd() {
    if !require(Component::ControlPlane) {
        return;
    }
    let plane = aescbc_plane().await;
    let output = grade_etcd_lab(&plane, "junit").await;
    let xml = String::from_utf8(output.stdout).unwrap();
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );

    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut suites = Vec::new();
    let mut cases: Vec<(String, Option<String>)> = Vec::new();
    loop {
        match reader.read_event().unwrap() {
            Event::Eof => break,
            Event::Start(element) | Event::Empty(element) => {
                let name = |key: &str| {
                    element
                        .try_get_attribute(key)
                        .unwrap()
                        .map(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .unwrap()
                                .into_owned()
                        })
                        .unwrap_or_default()
                };
                match element.name().into_inner() {
                    "testsuite" => suites.push(name("name")),
                    "testcase" => cases.push((name("name"), None)),
                    outcome @ ("failure" | "error" | "skipped") => {
                        cases.last_mut().unwrap().1 =
                            Some(format!("{outcome}: {}", name("message")));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    assert_eq!(suites, ["etcd-secrets"], "{xml}");
    let expected = etcd_lab_check_ids();
    assert!(!expected.is_empty(), "the catalog has etcd-secrets checks");
    let found: Vec<String> = cases
        .iter()
        .map(|(name, _)| name.split(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        found, expected,
        "one testcase per check, in catalog order:\n{xml}"
    );
    // Node files and etcd were reachable through the flags: no check could not read its input.
    for (name, outcome) in &cases {
        if let Some(outcome) = outcome {
            assert!(!outcome.starts_with("error"), "{name}: {outcome}\n{xml}");
        }
    }
}

#[tokio::test]
async fn the_etcd_lab_as_json_shows_the_aescbc_prefix_read_from_etcd() {
    if !require(Component::ControlPlane) {
        return;
    }
    let plane = aescbc_plane().await;
    let output = grade_etcd_lab(&plane, "json").await;
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&output.stderr)));
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), etcd_lab_check_ids().len());
    let evidence: Vec<&str> = results
        .iter()
        .filter_map(|result| result["evidence"].as_str())
        .collect();
    assert!(
        evidence
            .iter()
            .any(|text| text.contains("k8s:enc:aescbc:v1:key1:")),
        "{report:#}"
    );
}
