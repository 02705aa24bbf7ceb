//! `hardlab kms-plugin`, the command lab 1's scripts run on the node: it serves on its socket
//! with a key file it creates, and a SIGTERM (what stops it when the node goes) ends it cleanly,
//! socket removed. The plugin's gRPC answers are tested in kms/tests against its library.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[tokio::test]
async fn the_hardlab_kms_plugin_command_serves_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kms.sock");
    let key_file = dir.path().join("kek.key");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hardlab"))
        .arg("kms-plugin")
        .arg("--socket")
        .arg(&socket)
        .arg("--key-file")
        .arg(&key_file)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut answered = false;
    for _ in 0..400 {
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        answered,
        "the plugin never listened on {}",
        socket.display()
    );
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file it created is for its owner only");

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the plugin stops within 10 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(!socket.exists(), "the socket is removed on SIGTERM");
}
