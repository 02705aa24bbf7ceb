//! The gRPC service, routed by hand (what tonic's code generator would emit) so no build script
//! or `protoc` is needed.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::api::{
    API_VERSION, DECRYPT_PATH, DecryptRequest, DecryptResponse, ENCRYPT_PATH, EncryptRequest,
    EncryptResponse, HEALTHY, SERVICE, STATUS_PATH, StatusRequest, StatusResponse,
};
use super::key::LocalKey;

/// `v2.KeyManagementService` backed by a [`LocalKey`].
#[derive(Clone)]
pub struct KmsService {
    key: Arc<LocalKey>,
}

impl KmsService {
    pub fn new(key: LocalKey) -> Self {
        Self { key: Arc::new(key) }
    }

    fn status(&self, _request: &StatusRequest) -> Result<StatusResponse, Status> {
        // Healthy means the key really works, not just that the process is up.
        let probe = b"hardlab kms healthz";
        let healthz = match self
            .key
            .encrypt(probe)
            .and_then(|sealed| self.key.decrypt(&sealed))
        {
            Ok(opened) if opened == probe => HEALTHY.to_owned(),
            Ok(_) => "error: the key round trip returned other bytes".to_owned(),
            Err(error) => format!("error: {error}"),
        };
        Ok(StatusResponse {
            version: API_VERSION.into(),
            healthz,
            key_id: self.key.key_id().into(),
        })
    }

    fn encrypt(&self, request: &EncryptRequest) -> Result<EncryptResponse, Status> {
        if request.plaintext.is_empty() {
            return Err(Status::invalid_argument("plaintext is empty"));
        }
        let ciphertext = self
            .key
            .encrypt(&request.plaintext)
            .map_err(Status::internal)?;
        tracing::debug!(uid = %request.uid, key_id = %self.key.key_id(), "kms encrypt");
        Ok(EncryptResponse {
            ciphertext,
            key_id: self.key.key_id().into(),
            annotations: Default::default(),
        })
    }

    fn decrypt(&self, request: &DecryptRequest) -> Result<DecryptResponse, Status> {
        if !request.key_id.is_empty() && request.key_id != self.key.key_id() {
            return Err(Status::failed_precondition(format!(
                "the ciphertext was made with key {:?}; this plugin holds {:?}",
                request.key_id,
                self.key.key_id()
            )));
        }
        let plaintext = self
            .key
            .decrypt(&request.ciphertext)
            .map_err(Status::invalid_argument)?;
        tracing::debug!(uid = %request.uid, key_id = %self.key.key_id(), "kms decrypt");
        Ok(DecryptResponse { plaintext })
    }
}

impl NamedService for KmsService {
    const NAME: &'static str = SERVICE;
}

/// One unary method: the service and which of its functions answers.
struct Method<Req, Resp> {
    service: KmsService,
    handle: fn(&KmsService, &Req) -> Result<Resp, Status>,
}

impl<Req: Send + 'static, Resp: Send + 'static> UnaryService<Req> for Method<Req, Resp> {
    type Response = Resp;
    type Future = std::future::Ready<Result<Response<Resp>, Status>>;

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        std::future::ready((self.handle)(&self.service, request.get_ref()).map(Response::new))
    }
}

async fn unary<Req, Resp>(
    service: KmsService,
    handle: fn(&KmsService, &Req) -> Result<Resp, Status>,
    request: http::Request<Body>,
) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    let mut grpc = Grpc::new(ProstCodec::<Resp, Req>::default());
    grpc.unary(Method { service, handle }, request).await
}

impl tonic::codegen::Service<http::Request<Body>> for KmsService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let service = self.clone();
        match request.uri().path() {
            STATUS_PATH => {
                Box::pin(async move { Ok(unary(service, KmsService::status, request).await) })
            }
            ENCRYPT_PATH => {
                Box::pin(async move { Ok(unary(service, KmsService::encrypt, request).await) })
            }
            DECRYPT_PATH => {
                Box::pin(async move { Ok(unary(service, KmsService::decrypt, request).await) })
            }
            other => {
                let status = Status::unimplemented(format!("no method {other}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
