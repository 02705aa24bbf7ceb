//! Parsers for what the grader reads: static pod manifests and their flags,
//! EncryptionConfiguration, etcd values, and Kubernetes objects from files.

pub mod documents;
pub mod encryption;
pub mod etcdvalue;
pub mod flags;
pub mod objects;
pub mod staticpod;
pub mod yaml;

use serde::Serialize;

/// One YAML or JSON document from an input file, with where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct InputDocument {
    pub file: String,
    /// 1-based line of the document's first line.
    pub line: usize,
    pub value: serde_json::Value,
}
