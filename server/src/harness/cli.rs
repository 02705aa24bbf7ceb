//! `hardlab labs verify`: the command-line face of the harness.

use std::path::PathBuf;

use super::{LabPlan, Options, render, verify_lab};
use crate::clusters::DockerProvider;

/// Verify that every lab step's checks fail before its solution and pass after it.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// Only this lab (its ID, e.g. `etcd-secrets`); default: every lab.
    #[arg(long = "lab", value_name = "ID")]
    pub lab: Option<String>,
    /// Only this step (the earlier steps' solutions still run first); needs --lab.
    #[arg(long, value_name = "ID", requires = "lab")]
    pub step: Option<String>,
    /// Node image for the disposable clusters.
    #[arg(long, value_name = "IMG", default_value = "hardlab/node:v1.36.1")]
    pub image: String,
    /// Run the node containers without privileges (images that need none, like the test image).
    #[arg(long)]
    pub unprivileged: bool,
    /// Use this existing cluster (from `hardlab clusters create`) and leave it in place.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// A capability the cluster has that cannot be detected: network-policy, mesh, internet.
    #[arg(long = "capability", value_name = "CAP")]
    pub capabilities: Vec<String>,
    /// Where the labs are.
    #[arg(long, value_name = "DIR", default_value = "labs")]
    pub labs_dir: PathBuf,
}

/// Runs the verification and prints the report; returns the exit code: 0 when no lab has a
/// violation, 1 when one has, 2 when the harness could not run.
pub async fn run(args: VerifyArgs) -> i32 {
    match verify(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hardlab labs verify: {error}");
            2
        }
    }
}

async fn verify(args: VerifyArgs) -> super::Result<i32> {
    let mut plans = LabPlan::load_all(&args.labs_dir)?;
    if let Some(lab) = &args.lab {
        plans.retain(|plan| &plan.id == lab);
        if plans.is_empty() {
            return Err(super::Error::Usage(format!(
                "no lab {lab:?} in {}",
                args.labs_dir.display()
            )));
        }
    }
    let provider = DockerProvider::connect().await?;
    let options = Options {
        step: args.step,
        image: args.image,
        unprivileged: args.unprivileged,
        cluster: args.cluster,
        capabilities: args.capabilities,
    };
    let mut reports = Vec::new();
    for plan in &plans {
        eprintln!("verifying lab {} ...", plan.id);
        reports.push(verify_lab(&provider, plan, &options).await?);
    }
    print!("{}", render(&reports));
    Ok(if reports.iter().any(super::LabReport::has_violation) {
        1
    } else {
        0
    })
}
