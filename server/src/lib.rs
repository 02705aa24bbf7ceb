//! The hardlab server: the learner's web app, labs, disposable clusters, terminal and access proxy.

pub mod app;
pub mod clusters;
pub mod config;
pub mod db;
pub mod error;
pub mod harness;
pub mod labs;
pub mod metrics;
pub mod proxy;
pub mod terminal;
pub mod web;
pub mod workshops;

pub use error::{Error, Result};
