//! hardlab's grader: judges how well a Kubernetes cluster (live, or as files) is hardened.
//!
//! A run builds a [`Context`] that knows how to reach its inputs (the Kubernetes API, the
//! control-plane node's files, etcd, or manifest files) and collects each input lazily, once,
//! for all checks. Each check in the [`catalog`] is a function from that context to an
//! [`Outcome`]; the [`report`] module turns the results into text, JSON, JUnit or SARIF.

pub mod catalog;
pub mod checks;
pub mod cli;
pub mod context;
pub mod error;
pub mod inputs;
pub mod labels;
pub mod model;
pub mod pipeline;
pub mod report;
pub mod run;
pub mod target;
pub mod verdict;

pub use catalog::{CheckDef, CheckMeta, Lab};
pub use context::Context;
pub use error::{Error, Result};
pub use model::{CheckResult, Location, Outcome, Severity, Status, Summary};
pub use run::{RunOptions, run_checks};
pub use verdict::Verdict;
