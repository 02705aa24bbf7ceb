//! The KMS v2 plugin over its real unix socket with a real gRPC client (tonic over HTTP/2), the
//! way kube-apiserver calls it.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hardlab_kms::api::{
    DECRYPT_PATH, DecryptRequest, DecryptResponse, ENCRYPT_PATH, EncryptRequest, EncryptResponse,
    STATUS_PATH, StatusRequest, StatusResponse,
};
use hardlab_kms::serve_until;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_prost::ProstCodec;

struct Plugin {
    socket: PathBuf,
    stop: oneshot::Sender<()>,
    task: JoinHandle<hardlab_kms::Result<()>>,
    channel: Channel,
}

impl Plugin {
    async fn start(dir: &Path) -> Plugin {
        let socket = dir.join("kms.sock");
        let key_file = dir.join("kms.key");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let socket = socket.clone();
            async move {
                serve_until(&socket, &key_file, async {
                    let _ = stopped.await;
                })
                .await
            }
        });
        let channel = connect(&socket).await;
        Plugin {
            socket,
            stop,
            task,
            channel,
        }
    }

    async fn stop(self) {
        drop(self.channel);
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
        assert!(!self.socket.exists(), "the socket is removed on shutdown");
    }

    async fn call<Req, Resp>(&self, path: &'static str, request: Req) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.unwrap();
        grpc.unary(
            Request::new(request),
            http::uri::PathAndQuery::from_static(path),
            ProstCodec::<Req, Resp>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
    }

    async fn status(&self) -> StatusResponse {
        self.call(STATUS_PATH, StatusRequest {}).await.unwrap()
    }

    async fn encrypt(&self, plaintext: &[u8]) -> EncryptResponse {
        let request = EncryptRequest {
            plaintext: plaintext.to_vec(),
            uid: "test-encrypt".into(),
        };
        self.call(ENCRYPT_PATH, request).await.unwrap()
    }

    async fn decrypt(&self, ciphertext: &[u8], key_id: &str) -> Result<Vec<u8>, Status> {
        let request = DecryptRequest {
            ciphertext: ciphertext.to_vec(),
            uid: "test-decrypt".into(),
            key_id: key_id.into(),
            annotations: HashMap::new(),
        };
        self.call::<_, DecryptResponse>(DECRYPT_PATH, request)
            .await
            .map(|response| response.plaintext)
    }
}

/// A channel over the unix socket, retrying while the plugin starts (a stale socket file may be
/// there before the plugin replaces it).
async fn connect(socket: &Path) -> Channel {
    let mut last_error = None;
    for _ in 0..200 {
        let socket = socket.to_path_buf();
        // The authority is ignored over a unix socket; the API server uses "localhost" too.
        let connected = Endpoint::try_from("http://localhost")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await;
        match connected {
            Ok(channel) => return channel,
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the plugin never answered on {}: {last_error:?}",
        socket.display()
    );
}

#[tokio::test]
async fn status_reports_v2_healthy_and_a_key_id_from_a_new_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let status = plugin.status().await;
    assert_eq!(status.version, "v2");
    assert_eq!(status.healthz, "ok");
    assert!(
        status.key_id.starts_with("hardlab-local-"),
        "{}",
        status.key_id
    );
    assert!(status.key_id.len() < 1024);

    let key_file = dir.path().join("kms.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let socket_mode = std::fs::metadata(dir.path().join("kms.sock"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(socket_mode, 0o600);
    // The key ID names the key without revealing it.
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(!status.key_id.contains(key.trim()));
    plugin.stop().await;
}

#[tokio::test]
async fn encrypt_then_decrypt_round_trips_and_hides_the_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let seed = b"32 bytes of data-encryption seed";
    let sealed = plugin.encrypt(seed).await;
    assert_eq!(sealed.key_id, plugin.status().await.key_id);
    assert!(!sealed.ciphertext.windows(8).any(|w| w == &seed[..8]));
    // What the API server may store: under 1 kB.
    assert!(sealed.ciphertext.len() < 1024);
    let again = plugin.encrypt(seed).await;
    assert_ne!(
        again.ciphertext, sealed.ciphertext,
        "a fresh nonce every time"
    );

    let opened = plugin
        .decrypt(&sealed.ciphertext, &sealed.key_id)
        .await
        .unwrap();
    assert_eq!(opened, seed);
    plugin.stop().await;
}

#[tokio::test]
async fn a_tampered_ciphertext_or_a_foreign_key_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let sealed = plugin.encrypt(b"the seed").await;

    for index in [0, 5, sealed.ciphertext.len() - 1] {
        let mut tampered = sealed.ciphertext.clone();
        tampered[index] ^= 0x01;
        let refused = plugin.decrypt(&tampered, &sealed.key_id).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "byte {index}: {refused:?}"
        );
    }
    let truncated = plugin
        .decrypt(&sealed.ciphertext[..10], &sealed.key_id)
        .await
        .unwrap_err();
    assert_eq!(truncated.code(), Code::InvalidArgument);

    let foreign = plugin
        .decrypt(&sealed.ciphertext, "some-other-key")
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::FailedPrecondition);
    assert!(foreign.message().contains("some-other-key"));

    let empty: Result<EncryptResponse, Status> =
        plugin.call(ENCRYPT_PATH, EncryptRequest::default()).await;
    assert_eq!(empty.unwrap_err().code(), Code::InvalidArgument);

    let unknown: Result<StatusResponse, Status> = plugin
        .call("/v2.KeyManagementService/Rotate", StatusRequest {})
        .await;
    assert_eq!(unknown.unwrap_err().code(), Code::Unimplemented);
    plugin.stop().await;
}

#[tokio::test]
async fn a_restarted_plugin_keeps_its_key_and_opens_what_it_sealed_before() {
    let dir = tempfile::tempdir().unwrap();
    let first = Plugin::start(dir.path()).await;
    let key_id = first.status().await.key_id;
    let sealed = first.encrypt(b"sealed before the restart").await;
    first.stop().await;

    let second = Plugin::start(dir.path()).await;
    assert_eq!(second.status().await.key_id, key_id);
    let opened = second.decrypt(&sealed.ciphertext, &key_id).await.unwrap();
    assert_eq!(opened, b"sealed before the restart");
    second.stop().await;

    // A new key file is a new key: the old ciphertext no longer opens.
    std::fs::remove_file(dir.path().join("kms.key")).unwrap();
    let third = Plugin::start(dir.path()).await;
    let new_id = third.status().await.key_id;
    assert_ne!(new_id, key_id);
    assert!(third.decrypt(&sealed.ciphertext, "").await.is_err());
    third.stop().await;
}

#[tokio::test]
async fn a_key_file_others_can_read_or_that_is_not_a_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("kms.key");
    let socket = dir.path().join("kms.sock");

    std::fs::write(&key_file, "c2hvcnQ=\n").unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = serve_until(&socket, &key_file, async {}).await.unwrap_err();
    assert!(error.to_string().contains("mode 0644"), "{error}");

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let error = serve_until(&socket, &key_file, async {}).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the key is 5 bytes, expected 32"),
        "{error}"
    );
    assert!(error.to_string().contains("kms.key"), "{error}");
    assert!(!socket.exists(), "nothing is bound when the key is refused");
}

#[tokio::test]
async fn a_stale_socket_is_replaced_but_a_live_one_or_a_regular_file_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kms.sock");
    let key_file = dir.path().join("kms.key");

    // A regular file where the socket should go is someone else's: left alone.
    std::fs::write(&socket, "not a socket").unwrap();
    let error = serve_until(&socket, &key_file, async {}).await.unwrap_err();
    assert!(error.to_string().contains("is not a socket"), "{error}");
    std::fs::remove_file(&socket).unwrap();

    // A socket nobody listens on (a plugin that crashed) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let plugin = Plugin::start(dir.path()).await;
    assert_eq!(plugin.status().await.healthz, "ok");

    // While it serves, a second plugin on the same socket is refused.
    let error = serve_until(&socket, &key_file, async {}).await.unwrap_err();
    assert!(
        error.to_string().contains("another process is serving"),
        "{error}"
    );
    plugin.stop().await;
}
