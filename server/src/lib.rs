//! The hardlab server: the learner's web app, labs, disposable clusters, terminal and access proxy.

pub mod kms;
pub mod proxy;
pub mod clusters;
pub mod terminal;
