//! `hardlab clusters ...`: the admin CLI for instructors and debugging.

use std::io::Write;
use std::sync::Arc;

use super::{ClusterManager, Error, Result, now_ms};

#[derive(Debug, clap::Subcommand)]
pub enum ClustersCommand {
    /// Create a cluster and wait until its API server is ready.
    Create {
        name: String,
        /// Node image (default: the server's node image).
        #[arg(long)]
        image: Option<String>,
        /// Run the node container without privileges (images that need none, like the test image).
        #[arg(long)]
        unprivileged: bool,
    },
    /// List live clusters.
    Ls,
    /// Print a kubeconfig for the cluster's API server on 127.0.0.1.
    Kubeconfig { name: String },
    /// Run a command in the cluster's control-plane node.
    Exec {
        name: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Remove a cluster and everything created for it.
    Rm { name: String },
}

/// Runs one subcommand; returns the process exit code.
pub async fn run(command: ClustersCommand, manager: &Arc<ClusterManager>) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match command {
        ClustersCommand::Create {
            name,
            image,
            unprivileged,
        } => {
            let privileged = unprivileged.then_some(false);
            let record = manager
                .create_named(&name, image.as_deref(), privileged, None)
                .await?;
            if let Some(reason) = record.failure_reason {
                return Err(Error::NotReady(reason));
            }
            let _ = writeln!(
                out,
                "cluster {} is ready; API server on https://127.0.0.1:{}",
                record.id,
                record.api_port.unwrap_or(0)
            );
            let _ = writeln!(out, "kubeconfig: hardlab clusters kubeconfig {}", record.id);
        }
        ClustersCommand::Ls => {
            let now = now_ms();
            let _ = writeln!(
                out,
                "{:<24} {:<10} {:<24} {:<20} {:>6} {:>10}",
                "NAME", "STATE", "PHASE", "LAB", "PORT", "EXPIRES"
            );
            for record in manager.list_live().await? {
                let minutes = (record.expires_at - now).max(0) / 60_000;
                let _ = writeln!(
                    out,
                    "{:<24} {:<10} {:<24} {:<20} {:>6} {:>9}m",
                    record.id,
                    record.state.as_str(),
                    record.phase.as_deref().unwrap_or("-"),
                    if record.pooled { "(pool) " } else { "" }.to_owned() + &record.lab_id,
                    record
                        .api_port
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "-".to_owned()),
                    minutes
                );
            }
        }
        ClustersCommand::Kubeconfig { name } => {
            let config = manager.kubeconfig(&name).await?;
            let _ = write!(out, "{config}");
        }
        ClustersCommand::Exec { name, command } => {
            let output = manager.provider().exec(&name, &command, None).await?;
            let _ = out.write_all(&output.stdout);
            let _ = std::io::stderr().write_all(&output.stderr);
            return Ok(i32::try_from(output.exit_code).unwrap_or(1));
        }
        ClustersCommand::Rm { name } => {
            manager.delete(&name).await?;
            let _ = writeln!(out, "cluster {name} removed");
        }
    }
    Ok(0)
}
