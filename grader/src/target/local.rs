//! The grader runs on the control-plane node (or has a copy of its `/etc/kubernetes`).

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{CommandOutput, NodeAccess};
use crate::{Error, Result};

const KUBEADM_DIR: &str = "/etc/kubernetes";

/// Files of a node laid out like `/etc/kubernetes` under `dir`. Paths under `/etc/kubernetes/`
/// that the manifests name are read under `dir` instead; every other absolute path as it is.
#[derive(Debug, Clone)]
pub struct LocalNode {
    dir: String,
}

impl LocalNode {
    pub fn new(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref().display().to_string();
        let dir = dir.trim_end_matches('/').to_owned();
        Self {
            dir: if dir.is_empty() { "/".to_owned() } else { dir },
        }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        match path.strip_prefix(KUBEADM_DIR) {
            Some(rest) if self.dir != KUBEADM_DIR && (rest.is_empty() || rest.starts_with('/')) => {
                PathBuf::from(format!("{}{rest}", self.dir))
            }
            _ => PathBuf::from(path),
        }
    }
}

impl Default for LocalNode {
    fn default() -> Self {
        Self::new(KUBEADM_DIR)
    }
}

fn io_error(path: &Path, error: &std::io::Error) -> Error {
    Error::Node(format!("{}: {error}", path.display()))
}

#[async_trait]
impl NodeAccess for LocalNode {
    fn describe(&self) -> String {
        format!("local:{}", self.dir)
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let path = self.resolve(path);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(&path, &error)),
        }
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        let path = self.resolve(path);
        let mut entries = match tokio::fs::read_dir(&path).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error(&path, &error)),
        };
        let mut names = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|error| io_error(&path, &error))?
        {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn kubernetes_dir(&self) -> &str {
        &self.dir
    }

    async fn exec(&self, argv: &[String]) -> Result<CommandOutput> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| Error::Node("empty command".into()))?;
        let output = tokio::process::Command::new(program)
            .args(args)
            .output()
            .await
            .map_err(|error| Error::Node(format!("{program}: {error}")))?;
        Ok(CommandOutput {
            exit_code: i64::from(output.status.code().unwrap_or(-1)),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}
