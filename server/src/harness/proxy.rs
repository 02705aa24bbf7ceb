//! The hardlab server a lab that judges the access proxy (lab 6) needs: the harness starts one of
//! its own for the run, built by the app builder `serve` uses, on a temporary SQLite database and
//! server key, listening only on the host's address on the cluster's Docker network (where the
//! node reaches its host; nothing else does). A verifying learner account with an authenticator
//! plays the learner: the node is configured as Start configures a learner's, and each script
//! gets the account's password and a fresh code, as a learner types them.

use std::net::{IpAddr, SocketAddr};

use hardlab_grader::context::Params;

use super::{Error, Result, Target};
use crate::proxy::tenant::Tenant;
use crate::proxy::{store, totp};

/// The capability this provides (`needs: [hardlab-proxy]` in lab.yaml).
pub const CAPABILITY: &str = "hardlab-proxy";

const USER: &str = "hardlab-verify";

pub struct LabProxy {
    state: crate::web::AppState,
    server: tokio::task::JoinHandle<()>,
    user_id: String,
    password: String,
    secret: String,
    _dir: tempfile::TempDir,
}

impl Drop for LabProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn node_error(what: &str) -> impl Fn(String) -> Error + '_ {
    move |error| Error::Node(format!("{what}: {error}"))
}

impl LabProxy {
    /// Starts the server, makes the verifying account and its tenant with the cluster in it,
    /// and writes the hardlab client's configuration into the node.
    pub async fn start(target: &Target) -> Result<Self> {
        let host = target.host_address_for_node().await?;
        let dir =
            tempfile::tempdir().map_err(|e| Error::Node(format!("a temporary folder: {e}")))?;
        let db_url = format!("sqlite://{}", dir.path().join("hardlab.db").display());
        let db = crate::db::connect(&db_url)
            .await
            .map_err(|e| Error::Node(format!("the harness's database: {e}")))?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(host, 0))
            .await
            .map_err(|e| Error::Node(format!("listening on {host}: {e}")))?;
        let listen = listener
            .local_addr()
            .map_err(|e| Error::Node(e.to_string()))?;
        let labs_dir = dir.path().join("labs");
        std::fs::create_dir_all(&labs_dir).map_err(|e| Error::Node(e.to_string()))?;
        let mut config = crate::config::Config {
            listen,
            public_url: Some(format!("http://{listen}")),
            labs_dir,
            secret_key_file: dir.path().join("secret.key"),
            setup_token: false,
            ..crate::config::Config::default()
        };
        config.proxy.listen = SocketAddr::new(host, 0);
        config.clusters = None;
        let state = crate::app::build(config, db)
            .await
            .map_err(|e| Error::Node(format!("the harness's hardlab server: {e}")))?;
        let proxy = state
            .proxy
            .clone()
            .ok_or_else(|| Error::Node("the harness's access proxy did not start".into()))?;
        let server = tokio::spawn({
            let state = state.clone();
            async move {
                if let Err(error) = crate::app::serve(state, listener, std::future::pending()).await
                {
                    tracing::error!(%error, "the harness's hardlab server stopped");
                }
            }
        });
        let password = crate::db::random_id();
        let user = crate::web::accounts::create_user(
            &state.db,
            USER,
            &password,
            crate::web::accounts::Role::Learner,
        )
        .await
        .map_err(|e| Error::Node(format!("the verifying account: {e}")))?;
        let sealer = &proxy.service.sealer;
        let secret = store::enroll_totp(&state.db, sealer, USER, None)
            .await
            .map_err(|e| Error::Node(format!("the verifying account's authenticator: {e}")))?;
        store::check_totp(
            &state.db,
            sealer,
            &Tenant::site(),
            USER,
            &code(&secret, -1)?,
            true,
        )
        .await
        .map_err(|e| Error::Node(format!("confirming the authenticator: {e}")))?;
        let kubeconfig = target.kubeconfig().await?;
        let lab = proxy
            .register_lab_cluster(&user.id, &kubeconfig)
            .await
            .map_err(|e| Error::Node(format!("the cluster behind the proxy: {e}")))?;
        for file in crate::proxy::web::node_client_files(&state.config.link_base(), &lab) {
            target
                .write_file(&file.path, &file.contents)
                .await
                .map_err(node_error("configuring the node's hardlab"))?;
        }
        Ok(LabProxy {
            state,
            server,
            user_id: user.id,
            password,
            secret,
            _dir: dir,
        })
    }

    /// What a learner types when a script logs in: the password and the current code.
    pub fn script_env(&self) -> Result<Vec<String>> {
        Ok(vec![
            "HOME=/root".to_owned(),
            format!("HARDLAB_PASSWORD={}", self.password),
            format!("HARDLAB_OTP={}", code(&self.secret, 0)?),
        ])
    }

    /// Puts the proxy's state for the cluster into the checks' parameters, as Check does.
    pub async fn add_state(&self, kubeconfig: &str, params: &mut Params) -> Result<()> {
        let proxy = self
            .state
            .proxy
            .as_ref()
            .ok_or_else(|| Error::Node("the harness's access proxy is gone".into()))?;
        proxy
            .add_lab_state(&self.user_id, kubeconfig, params)
            .await
            .map_err(|e| Error::Node(format!("the proxy's state: {e}")))
    }
}

fn code(secret: &str, offset: i64) -> Result<String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    totp::code_for_step(secret, totp::step_at(now) + offset)
        .map_err(|e| Error::Node(format!("a TOTP code: {e}")))
}

/// The host's address on a Docker network, from the engine's view of it: its gateway, else the
/// subnet's first address (older engines leave the gateway out).
pub fn gateway_of(network: &bollard::models::NetworkInspect) -> Option<IpAddr> {
    let config = network.ipam.as_ref()?.config.as_ref()?.first()?;
    if let Some(gateway) = config.gateway.as_deref().filter(|g| !g.is_empty()) {
        return gateway.parse().ok();
    }
    let subnet: std::net::Ipv4Addr = config.subnet.as_deref()?.split('/').next()?.parse().ok()?;
    Some(IpAddr::V4(std::net::Ipv4Addr::from(u32::from(subnet) + 1)))
}
