//! `.hardlab-grade.yaml`: a repository's settings for the grader, so a pipeline's command line
//! stays `hardlab-grade static` and the reasons for accepted findings live in review, next to the
//! manifests. Found in the working directory or the nearest parent that has one, or given with
//! `--config`; command-line flags override it. Paths in it are relative to the file's directory.
//!
//! ```yaml
//! paths: [deploy/, charts/rendered.yaml]
//! fail-on: fail            # or warn
//! format: text             # the report on standard output
//! output: [sarif=hardlab.sarif, gitlab=gl-code-quality-report.json]
//! baseline: .hardlab-baseline.json
//! group-by: file
//! framework: cis
//! labs: [pod-security]     # which checks run (default: all)
//! checks: []
//! skip-checks: [podsec.image-pinned]
//! suppressions:
//!   - check: podsec.no-host-path
//!     object: DaemonSet/logging/*
//!     reason: the log shipper reads /var/log/pods
//!     expires: 2026-12-31
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::suppress::{Suppression, SuppressionSource};
use crate::{Error, Result};

/// The names looked for, in this order, in each directory.
pub const FILE_NAMES: [&str; 2] = [".hardlab-grade.yaml", ".hardlab-grade.yml"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    #[serde(default)]
    pub labs: Vec<String>,
    #[serde(default)]
    pub checks: Vec<String>,
    #[serde(default)]
    pub skip_checks: Vec<String>,
    pub fail_on: Option<String>,
    pub format: Option<String>,
    #[serde(default)]
    pub output: Vec<String>,
    pub baseline: Option<PathBuf>,
    pub group_by: Option<String>,
    pub framework: Option<String>,
    #[serde(default)]
    pub suppressions: Vec<SuppressionEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionEntry {
    pub check: String,
    pub object: Option<String>,
    pub reason: String,
    pub expires: Option<String>,
}

/// A configuration file as read, with the directory its relative paths start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub file: PathBuf,
    pub dir: PathBuf,
    pub settings: ConfigFile,
}

impl Config {
    pub fn read(file: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
            path: file.to_path_buf(),
            source,
        })?;
        let settings: ConfigFile = if text.trim().is_empty() {
            ConfigFile::default()
        } else {
            serde_yaml::from_str(&text).map_err(|error| {
                let line = error.location().map_or(1, |location| location.line());
                Error::invalid(format!("{}:{line}", file.display()), error.to_string())
            })?
        };
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Self {
            file: file.to_path_buf(),
            dir,
            settings,
        })
    }

    /// The file in `start` or the nearest parent directory that has one. The directory comes back
    /// relative to `start` (`""`, `..`, `../..`) so that reported file names stay relative, as
    /// annotations and code scanning need them.
    pub fn discover(start: &Path) -> Result<Option<Self>> {
        let mut relative = PathBuf::new();
        let mut dir = Some(start);
        while let Some(current) = dir {
            for name in FILE_NAMES {
                let candidate = current.join(name);
                if candidate.is_file() {
                    let mut config = Self::read(&candidate)?;
                    config.file = relative.join(name);
                    config.dir = relative;
                    return Ok(Some(config));
                }
            }
            relative.push("..");
            dir = current.parent();
        }
        Ok(None)
    }

    /// A path written in the file, as seen from the working directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() || self.dir.as_os_str().is_empty() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }

    /// The file's suppressions and skipped checks, each naming this file as its source.
    pub fn suppressions(&self) -> Vec<Suppression> {
        let source = SuppressionSource::Config {
            file: self.file.display().to_string(),
        };
        let skipped = self.settings.skip_checks.iter().map(|check| Suppression {
            check: check.clone(),
            object: None,
            reason: "skip-checks in the configuration file".into(),
            expires: None,
            source: source.clone(),
        });
        let entries = self.settings.suppressions.iter().map(|entry| Suppression {
            check: entry.check.clone(),
            object: entry.object.clone(),
            reason: entry.reason.clone(),
            expires: entry.expires.clone(),
            source: source.clone(),
        });
        skipped.chain(entries).collect()
    }
}
