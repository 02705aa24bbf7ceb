//! `hardlab-grade live` end to end: the built binary against clusters that cannot be graded
//! (exit 2 within the timeout, saying what was tried).
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn kubeconfig(dir: &Path, server: &str) -> String {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: not-a-real-token\ncontexts:\n- name: lab-admin\n  context:\n    cluster: lab\n    user: admin\ncurrent-context: lab-admin\n"
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn grade(args: &[&str], home: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", home)
        .output()
        .unwrap();
    (output, started.elapsed())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_refused_connection_exits_2_naming_the_server_and_context() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = kubeconfig(dir.path(), &format!("https://127.0.0.1:{port}"));
    let (output, took) = grade(&["live", "--kubeconfig", &config], dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("https://127.0.0.1:{port}")),
        "{message}"
    );
    assert!(message.contains("lab-admin"), "{message}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(output.stdout.is_empty());
}

#[test]
fn a_server_that_never_answers_exits_2_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts TCP connections (the kernel's backlog does) but never speaks TLS.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let config = kubeconfig(dir.path(), &format!("https://127.0.0.1:{port}"));
    let (output, took) = grade(
        &[
            "live",
            "--kubeconfig",
            &config,
            "--timeout",
            "1s",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        took < Duration::from_secs(4),
        "took {took:?} with --timeout 1s"
    );
    let message = stderr(&output);
    assert!(message.contains("cannot reach the API server"), "{message}");
    assert!(
        output.stdout.is_empty(),
        "no report when nothing could be graded"
    );
    drop(silent);
}

#[test]
fn without_any_kubeconfig_it_exits_2_listing_what_it_tried() {
    let home = tempfile::tempdir().unwrap();
    let (output, _) = grade(&["live"], home.path());
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("KUBECONFIG (not set)"), "{message}");
    assert!(message.contains(".kube/config"), "{message}");
}

#[test]
fn kubeconfig_env_is_used_when_no_flag_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = kubeconfig(dir.path(), &format!("https://127.0.0.1:{port}"));
    let output = Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .args(["live", "--timeout", "2s"])
        .env("KUBECONFIG", &config)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("KUBECONFIG={config}")),
        "{message}"
    );
}

#[test]
fn an_unknown_context_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), "https://127.0.0.1:1");
    let (output, _) = grade(
        &["live", "--kubeconfig", &config, "--context", "nope"],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("nope"), "{}", stderr(&output));
}

#[test]
fn a_malformed_node_spec_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (output, _) = grade(&["live", "--node", "ssh:host"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("docker:NAME"),
        "{}",
        stderr(&output)
    );
}
