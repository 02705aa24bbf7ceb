//! Server configuration: defaults that need nothing, overridden by a YAML file, then by
//! `HARDLAB_*` environment variables, then by flags (clap reads both flags and variables).

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
    /// Mark the session cookie `Secure` (set this when a TLS proxy sits in front).
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
    /// The longest client certificate the access proxy issues (`12h`, `30m`); `None`: 12 h.
    pub proxy_max_cert_ttl: Option<String>,
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
            proxy_max_cert_ttl: None,
        }
    }
}

/// The optional settings of `hardlab serve`, shared by the flags, the environment and the file.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ConfigArgs {
    /// YAML configuration file (keys: listen, database_url, labs, secure_cookies, secret_key_file,
    /// public_url, static_dir, proxy_max_cert_ttl).
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
    /// Mark the session cookie Secure (behind a TLS-terminating proxy).
    #[arg(long, env = "HARDLAB_SECURE_COOKIES", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub secure_cookies: Option<bool>,
    /// File with the key that seals stored kubeconfigs [default: data/secret.key].
    #[arg(long, env = "HARDLAB_SECRET_KEY_FILE", value_name = "FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Base URL for links printed on the console, e.g. https://lab.example.org.
    #[arg(long, env = "HARDLAB_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Folder served under /static [default: static].
    #[arg(long, env = "HARDLAB_STATIC_DIR", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    /// Longest client certificate the access proxy issues, whatever a login asks for or a role
    /// allows, e.g. 8h or 30m [default: 12h].
    #[arg(long, env = "HARDLAB_PROXY_MAX_CERT_TTL", value_name = "DURATION")]
    pub proxy_max_cert_ttl: Option<String>,
}

impl ConfigArgs {
    /// Defaults, then the file (if any), then these flags/variables.
    pub fn resolve(&self) -> Result<Config> {
        let mut layered = Config::default();
        if let Some(path) = &self.config {
            read_file(path)?.apply(&mut layered);
        }
        self.apply(&mut layered);
        Ok(layered)
    }

    fn apply(&self, config: &mut Config) {
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
        if let Some(ttl) = &self.proxy_max_cert_ttl {
            config.proxy_max_cert_ttl = Some(ttl.clone());
        }
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
