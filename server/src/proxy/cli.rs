//! The proxy's subcommands of `hardlab`: `login`, `kube login|credentials`, `audit verify|export`
//! and the admin's `proxy apply|enroll-totp`. `main` only parses and dispatches here.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use sqlx::AnyPool;

use super::ProxyError;
use super::audit::{self, AuditFilter, AuditKeys};
use super::{client, service, store, totp};
use crate::db::seal::Sealer;

/// `hardlab login`: password + TOTP for a short-lived client certificate.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The hardlab server's URL (the web app's address) [default: the server of the last login].
    #[arg(long, env = "HARDLAB_SERVER")]
    pub server: Option<String>,
    /// Your hardlab user name.
    #[arg(long, env = "HARDLAB_USER")]
    pub user: String,
    /// Requested certificate lifetime (e.g. 1h); your roles may cap it. Default 12h.
    #[arg(long)]
    pub ttl: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KubeCommand {
    /// Write a kubeconfig entry `hardlab-<cluster>` that reaches the cluster through the proxy.
    Login {
        #[arg(long)]
        cluster: String,
        /// The kubeconfig to edit (default: first of KUBECONFIG, else ~/.kube/config).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Exec credential plugin: print the certificate as a client.authentication.k8s.io/v1 ExecCredential.
    Credentials {
        #[arg(long)]
        cluster: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the keyed chain and check it against the signed checkpoints next to the server key;
    /// exit 1 if any event was changed, removed (the newest too) or the chain rewritten.
    Verify {
        /// The checkpoint file [default: the server key's path + .audit-checkpoints].
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
    },
    /// Print events as JSON lines, oldest first.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub cluster: Option<String>,
    #[arg(long)]
    pub verb: Option<String>,
    #[arg(long)]
    pub resource: Option<String>,
    /// `upstream` or `proxy_deny`.
    #[arg(long)]
    pub decision: Option<String>,
    #[arg(long)]
    pub code: Option<u16>,
    #[arg(long, default_value_t = 10_000)]
    pub limit: i64,
}

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Apply a roles/clusters/users file (Teleport-style field names) to hardlab's database.
    Apply { file: PathBuf },
    /// Start TOTP enrolment for a user who has none and print the otpauth URI (confirmed by their
    /// first login code). A user with an authenticator replaces it on the access page.
    EnrollTotp { user: String },
    /// Remove a user's second factor (a lost phone); recorded in the audit log.
    ResetSecondFactor { user: String },
    /// Revoke one certificate (--serial) or every certificate of a user (--user); running
    /// proxies cut their connections within seconds.
    Revoke {
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        serial: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
}

/// `hardlab login`. The password comes from `HARDLAB_PASSWORD` or a prompt without echo, the code
/// from `HARDLAB_OTP` or a prompt.
pub async fn login(args: &LoginArgs) -> Result<(), ProxyError> {
    let home = client::home();
    // No built-in address: a wrong guess would send the password to whatever listens there.
    let server = match &args.server {
        Some(server) => server.clone(),
        None => client::load_profile(&home)
            .map(|profile| profile.server)
            .map_err(|_| {
                ProxyError::BadRequest(
                    "which hardlab server? pass --server URL (the address of the web app) or set HARDLAB_SERVER".into(),
                )
            })?,
    };
    let password = match std::env::var("HARDLAB_PASSWORD") {
        Ok(password) => password,
        Err(_) => prompt_hidden(&format!("Password for {}: ", args.user))?,
    };
    let code = match std::env::var("HARDLAB_OTP") {
        Ok(code) => code,
        Err(_) => prompt("Authenticator code: ")?,
    };
    let profile = client::login(
        &home,
        &server,
        &args.user,
        &password,
        &code,
        args.ttl.clone(),
    )
    .await?;
    let roles = if profile.roles.is_empty() {
        "none (ask an admin for a role)".to_owned()
    } else {
        profile.roles.join(", ")
    };
    println!(
        "Logged in as {} until {}.\nRoles: {roles}\nProxy: {}\nNext: hardlab kube login --cluster NAME",
        profile.user, profile.not_after, profile.proxy_url
    );
    Ok(())
}

pub fn kube(command: &KubeCommand) -> Result<(), ProxyError> {
    let home = client::home();
    match command {
        KubeCommand::Login {
            cluster,
            kubeconfig,
        } => {
            let path = kubeconfig
                .clone()
                .unwrap_or_else(client::default_kubeconfig_path);
            let binary = std::env::current_exe()
                .ok()
                .map_or_else(|| "hardlab".to_owned(), |p| p.display().to_string());
            let context = client::write_kubeconfig_entry(&home, &path, cluster, &binary)?;
            println!(
                "Context {context} written to {} and made current. Try: kubectl get pods",
                path.display()
            );
        }
        KubeCommand::Credentials { cluster: _ } => {
            // One certificate serves every cluster: the proxy works out groups per cluster.
            println!("{}", client::exec_credential(&home)?);
        }
    }
    Ok(())
}

/// `hardlab audit ...`; returns whether the command succeeded (verify: chain intact).
pub async fn audit(
    pool: &AnyPool,
    sealer: &Sealer,
    command: &AuditCommand,
) -> Result<bool, ProxyError> {
    match command {
        AuditCommand::Verify { checkpoints } => {
            let keys = AuditKeys::from_sealer(sealer, checkpoints.clone())?;
            let (intact, report) = service::verify_report(pool, &keys).await?;
            println!("{report}");
            Ok(intact)
        }
        AuditCommand::Export(args) => {
            let filter = AuditFilter {
                user: args.user.clone().unwrap_or_default(),
                cluster: args.cluster.clone().unwrap_or_default(),
                verb: args.verb.clone().unwrap_or_default(),
                resource: args.resource.clone().unwrap_or_default(),
                decision: args.decision.clone().unwrap_or_default(),
                code: args.code,
                limit: Some(args.limit),
            };
            let lines = audit::export_json_lines(pool, &filter).await?;
            let mut out = std::io::stdout().lock();
            out.write_all(lines.as_bytes())?;
            Ok(true)
        }
    }
}

pub async fn proxy(
    pool: &AnyPool,
    sealer: &Sealer,
    command: &ProxyCommand,
) -> Result<(), ProxyError> {
    let record = |event: audit::AuditEvent| async {
        let keys = AuditKeys::from_sealer(sealer, None)?;
        audit::append(pool, &keys, event).await
    };
    match command {
        ProxyCommand::Apply { file } => {
            store::import_config(pool, sealer, file).await?;
            println!(
                "Applied {} (running proxies pick it up within 5 s).",
                file.display()
            );
        }
        ProxyCommand::EnrollTotp { user } => {
            let secret = store::enroll_totp(pool, sealer, user, None).await?;
            println!(
                "Add this to {user}'s authenticator app; their first login code confirms it.\nSecret: {secret}\nURI: {}",
                totp::otpauth_uri(user, &secret)
            );
        }
        ProxyCommand::ResetSecondFactor { user } => {
            let actor = operator();
            record(audit::AuditEvent::admin_action(
                "auth.second_factor_reset",
                &actor,
                user,
            ))
            .await?;
            store::reset_second_factor(pool, user).await?;
            println!(
                "{user}'s second factor is removed; they sign in with the password until they enrol again."
            );
        }
        ProxyCommand::Revoke { serial, user } => {
            let actor = operator();
            match (serial, user) {
                (Some(serial), _) => {
                    let owner = store::revoke_certificate(pool, serial).await?;
                    record(audit::AuditEvent::admin_action(
                        "cert.revoke",
                        &actor,
                        &owner,
                    ))
                    .await?;
                    println!("Certificate {serial} of {owner} revoked.");
                }
                (None, Some(user)) => {
                    store::revoke_user_certificates(pool, user).await?;
                    record(audit::AuditEvent::admin_action(
                        "cert.revoke_all",
                        &actor,
                        user,
                    ))
                    .await?;
                    println!("Every certificate of {user} issued until now is revoked.");
                }
                (None, None) => {
                    return Err(ProxyError::BadRequest(
                        "give --serial SERIAL or --user NAME".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Who ran an admin command on this machine, for the audit event.
fn operator() -> String {
    let login = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{login}")
}

fn prompt(text: &str) -> Result<String, ProxyError> {
    eprint!("{text}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads a line with the terminal's echo off (through `stty`, so no extra crate), or a plain
/// line when stdin is not a terminal.
fn prompt_hidden(text: &str) -> Result<String, ProxyError> {
    if !std::io::stdin().is_terminal() {
        return prompt(text);
    }
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
    };
    let _ = stty("-echo");
    let line = prompt(text);
    let _ = stty("echo");
    eprintln!();
    line
}
