//! Server configuration: defaults that need nothing, overridden by a YAML file, then by
//! `HARDLAB_*` environment variables, then by flags (clap reads both flags and variables). One
//! shape for every setting: the web app's, the learners' clusters' (`clusters:` in the file) and
//! the access proxy's (`proxy:`).

mod clusters;
mod web;

pub use clusters::{
    ClusterFlags, ClusterSettings, KubernetesSettings, ProviderKind, ProxyConfig, ProxyFlags,
};
pub use web::{
    AddressRange, AddressRangeError, JoinCode, SignupMode, canonical_address, parse_frame_ancestors,
};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub labs_dir: PathBuf,
    /// Mark the session cookie `Secure` (set this when a TLS proxy sits in front). An https
    /// `public_url` implies it: see [`Config::cookies_secure`].
    pub secure_cookies: bool,
    /// 32 random bytes that seal stored kubeconfigs; created on first start when missing.
    pub secret_key_file: PathBuf,
    /// Print a one-time setup link for the first admin when there is none.
    pub setup_token: bool,
    /// Public base URL used in the printed setup link.
    pub public_url: Option<String>,
    /// CSS, scripts and the built terminal bundle (`static/dist/`), served under `/static`.
    pub static_dir: PathBuf,
    /// How long Check retries an API server that refuses connections: the labs restart it on
    /// purpose, and one coming back from a manifest change takes seconds to a minute.
    pub check_patience: std::time::Duration,
    /// How often an open step page checks its step in the background while the cluster is ready.
    pub auto_check_interval: std::time::Duration,
    /// Who may create their own account on /signup.
    pub signup: SignupMode,
    /// The join code of `signup: code`.
    pub signup_code: Option<JoinCode>,
    /// Origins allowed to show the app in a frame (an LMS); empty: none may.
    pub frame_ancestors: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client; empty: the header is ignored.
    pub trusted_proxies: Vec<AddressRange>,
    /// Let registered kubeconfigs point at loopback, private (10/8, 172.16/12, 192.168/16,
    /// fc00::/7) and shared (100.64/10) addresses. Off by default: from the server those reach
    /// the server itself, its database and its neighbours. Link-local and cloud metadata
    /// addresses are refused either way.
    pub allow_private_cluster_addresses: bool,
    /// The largest request body the server reads; larger ones get 413.
    pub max_request_body_bytes: usize,
    /// Learners' clusters; `None`: the server runs without them (pages and Check on registered
    /// clusters only).
    pub clusters: Option<ClusterSettings>,
    pub proxy: ProxyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://data/hardlab.db".into(),
            labs_dir: PathBuf::from("labs"),
            secure_cookies: false,
            secret_key_file: PathBuf::from("data/secret.key"),
            setup_token: true,
            public_url: None,
            static_dir: PathBuf::from("static"),
            check_patience: std::time::Duration::from_secs(45),
            auto_check_interval: std::time::Duration::from_secs(20),
            signup: SignupMode::Invite,
            signup_code: None,
            frame_ancestors: Vec::new(),
            trusted_proxies: Vec::new(),
            allow_private_cluster_addresses: false,
            // Forms are a few KiB (a kubeconfig up to 64 KiB); nothing takes uploads.
            max_request_body_bytes: 1024 * 1024,
            clusters: Some(ClusterSettings::default()),
            proxy: ProxyConfig::default(),
        }
    }
}

impl Config {
    /// Browsers reach the app over TLS (the public URL says https), whatever sits in between.
    pub fn public_url_is_https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|url| url.trim().to_ascii_lowercase().starts_with("https://"))
    }

    /// Cookies carry `Secure` when configured so, and always when the public URL is https: a
    /// cookie that may travel over plain HTTP could be read on the way.
    pub fn cookies_secure(&self) -> bool {
        self.secure_cookies || self.public_url_is_https()
    }

    /// The base of links printed on the console (setup, invitations): the public URL, else the
    /// listen address.
    pub fn link_base(&self) -> String {
        self.public_url.as_deref().map_or_else(
            || format!("http://{}", self.listen),
            |url| url.trim().trim_end_matches('/').to_owned(),
        )
    }
}

/// The optional settings of `hardlab serve`, shared by the flags, the environment and the file.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ConfigArgs {
    /// YAML configuration file (keys: listen, database_url, labs, secure_cookies, secret_key_file,
    /// public_url, static_dir, signup, signup_code, frame_ancestors, trusted_proxies,
    /// allow_private_cluster_addresses, max_request_body_bytes, no_clusters; `clusters:` with the
    /// cluster settings and `proxy:` with listen, url and config, each named as its flag with `_`).
    #[arg(long, env = "HARDLAB_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "HARDLAB_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// `sqlite://PATH` or `postgres://...` [default: sqlite://data/hardlab.db].
    #[arg(long, env = "HARDLAB_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Folder with one subfolder per lab [default: labs].
    #[arg(long = "labs", env = "HARDLAB_LABS", value_name = "DIR")]
    #[serde(rename = "labs")]
    pub labs_dir: Option<PathBuf>,
    /// Mark the session cookie Secure (behind a TLS-terminating proxy); implied by an https
    /// public URL.
    #[arg(long, env = "HARDLAB_SECURE_COOKIES", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub secure_cookies: Option<bool>,
    /// File with the key that seals stored kubeconfigs [default: data/secret.key].
    #[arg(long, env = "HARDLAB_SECRET_KEY_FILE", value_name = "FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Base URL for links printed on the console, e.g. https://lab.example.org; https also turns on
    /// HSTS and Secure cookies.
    #[arg(long, env = "HARDLAB_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Folder served under /static [default: static].
    #[arg(long, env = "HARDLAB_STATIC_DIR", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    /// Who may create an account: closed (admins only, `hardlab admin create-user`), invite (links
    /// from /admin/invites or `hardlab admin invite`), code (the join code) or open (anyone)
    /// [default: invite].
    #[arg(long, env = "HARDLAB_SIGNUP", value_name = "MODE")]
    pub signup: Option<SignupMode>,
    /// The join code learners type on /signup when signup is `code` (at least 8 characters).
    #[arg(
        long,
        env = "HARDLAB_SIGNUP_CODE",
        value_name = "CODE",
        hide_env_values = true
    )]
    pub signup_code: Option<String>,
    /// Origins that may show the app in a frame, comma-separated, e.g. https://lms.example.org
    /// or 'self' [default: none may].
    #[arg(
        long,
        env = "HARDLAB_FRAME_ANCESTORS",
        value_name = "ORIGINS",
        value_delimiter = ','
    )]
    pub frame_ancestors: Option<Vec<String>>,
    /// Reverse proxies (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For names
    /// the client for sign-in throttling [default: none; the header is ignored].
    #[arg(
        long,
        env = "HARDLAB_TRUSTED_PROXIES",
        value_name = "ADDRS",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<String>>,
    /// Let registered kubeconfigs point at loopback and private addresses (10/8, 172.16/12,
    /// 192.168/16, fc00::/7, 100.64/10) [default: false]. Link-local and cloud metadata
    /// addresses are always refused.
    #[arg(long, env = "HARDLAB_ALLOW_PRIVATE_CLUSTER_ADDRESSES", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub allow_private_cluster_addresses: Option<bool>,
    /// Largest request body accepted, in bytes; larger ones get 413 [default: 1048576].
    #[arg(long, env = "HARDLAB_MAX_REQUEST_BODY_BYTES", value_name = "BYTES")]
    pub max_request_body_bytes: Option<usize>,
    /// Run without learners' clusters (no Docker engine needed; Check grades registered clusters).
    #[arg(long, env = "HARDLAB_NO_CLUSTERS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub no_clusters: Option<bool>,
    #[command(flatten)]
    #[serde(default)]
    pub clusters: ClusterFlags,
    #[command(flatten)]
    #[serde(default)]
    pub proxy: ProxyFlags,
}

impl ConfigArgs {
    /// Defaults, then the file (if any), then these flags/variables.
    pub fn resolve(&self) -> Result<Config> {
        let mut layered = Config::default();
        if let Some(path) = &self.config {
            read_file(path)?.apply(&mut layered)?;
        }
        self.apply(&mut layered)?;
        if layered.signup == SignupMode::Code && layered.signup_code.is_none() {
            return Err(Error::Config(
                "signup_code: `signup: code` needs a join code (HARDLAB_SIGNUP_CODE)".into(),
            ));
        }
        Ok(layered)
    }

    fn apply(&self, config: &mut Config) -> Result<()> {
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(url) = &self.database_url {
            config.database_url.clone_from(url);
        }
        if let Some(dir) = &self.labs_dir {
            config.labs_dir.clone_from(dir);
        }
        if let Some(secure) = self.secure_cookies {
            config.secure_cookies = secure;
        }
        if let Some(file) = &self.secret_key_file {
            config.secret_key_file.clone_from(file);
        }
        if let Some(url) = &self.public_url {
            config.public_url = Some(url.clone());
        }
        if let Some(dir) = &self.static_dir {
            config.static_dir.clone_from(dir);
        }
        if let Some(mode) = self.signup {
            config.signup = mode;
        }
        if let Some(code) = &self.signup_code {
            config.signup_code = Some(JoinCode::new(code)?);
        }
        if let Some(origins) = &self.frame_ancestors {
            config.frame_ancestors = parse_frame_ancestors(origins)?;
        }
        if let Some(proxies) = &self.trusted_proxies {
            config.trusted_proxies = proxies
                .iter()
                .map(|text| text.trim())
                .filter(|text| !text.is_empty())
                .map(|text| {
                    text.parse()
                        .map_err(|e| Error::Config(format!("trusted_proxies: {text:?}: {e}")))
                })
                .collect::<Result<_>>()?;
        }
        if let Some(allow) = self.allow_private_cluster_addresses {
            config.allow_private_cluster_addresses = allow;
        }
        if let Some(bytes) = self.max_request_body_bytes {
            config.max_request_body_bytes = bytes;
        }
        if self.no_clusters == Some(true) {
            config.clusters = None;
        } else if self.no_clusters == Some(false) && config.clusters.is_none() {
            config.clusters = Some(ClusterSettings::default());
        }
        if let Some(clusters) = &mut config.clusters {
            self.clusters
                .validate()
                .map_err(|message| Error::Config(format!("clusters: {message}")))?;
            self.clusters.apply(clusters);
        }
        self.proxy.apply(&mut config.proxy);
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<ConfigArgs> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_yaml::from_str(&text).map_err(|e| {
        let place = e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        Error::Config(format!("{}{place}: {e}", path.display()))
    })
}
