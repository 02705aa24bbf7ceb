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
    /// The hardlab server's URL (the web app's address) [default: the lab node's configuration,
    /// else the server of the last login].
    #[arg(long, env = "HARDLAB_SERVER")]
    pub server: Option<String>,
    /// Whose proxy: your lab 6 tenant (your user name), or none for the site's
    /// [default: the lab node's configuration].
    #[arg(long, env = "HARDLAB_TENANT")]
    pub tenant: Option<String>,
    /// Your hardlab user name, or a user you invited [default: the lab node's configuration].
    #[arg(long, env = "HARDLAB_USER")]
    pub user: Option<String>,
    /// Log in as a simulated user you invited (`hardlab proxy invite`), with the password and
    /// authenticator the invitation saved.
    #[arg(long)]
    pub simulated: bool,
    /// Requested certificate lifetime (e.g. 1h); your roles may cap it. Default 12h.
    #[arg(long)]
    pub ttl: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KubeCommand {
    /// Write a kubeconfig entry `hardlab-<cluster>` that reaches the cluster through the proxy.
    Login {
        /// The cluster's name in the proxy [default: the lab node's own cluster].
        #[arg(long)]
        cluster: Option<String>,
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
    /// Apply a roles/clusters/users file (Teleport-style field names). Logged in to your lab 6
    /// tenant: to it, through the server (roles, users, cluster labels). Otherwise: to the site,
    /// in hardlab's database (run where the server's database is).
    Apply { file: PathBuf },
    /// Invite a simulated user into your lab 6 tenant (e.g. bob); their password and
    /// authenticator secret are saved under ~/.hardlab-simulated for `hardlab login --simulated`.
    Invite { user: String },
    /// Show your lab 6 tenant: roles, who holds them, invited users, clusters and labels.
    Show,
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
/// from `HARDLAB_OTP` or a prompt; for a simulated user, from what their invitation saved.
pub async fn login(args: &LoginArgs) -> Result<(), ProxyError> {
    let home = client::home();
    let node = client::NodeDefaults::load();
    // No built-in address: a wrong guess would send the password to whatever listens there.
    let server = match args.server.clone().or(node.server.clone()) {
        Some(server) => server,
        None => client::load_profile(&home)
            .map(|profile| profile.server)
            .map_err(|_| {
                ProxyError::BadRequest(
                    "which hardlab server? pass --server URL (the address of the web app) or set HARDLAB_SERVER".into(),
                )
            })?,
    };
    let user = args.user.clone().or(node.user.clone()).ok_or_else(|| {
        ProxyError::BadRequest("who? pass --user NAME or set HARDLAB_USER".into())
    })?;
    let tenant = args.tenant.clone().or(node.tenant).unwrap_or_default();
    let (password, code) = if args.simulated {
        let simulated = client::load_simulated(&user)?;
        if simulated.tenant != tenant {
            return Err(ProxyError::BadRequest(format!(
                "{user} was invited into tenant {:?}, not {tenant:?}",
                simulated.tenant
            )));
        }
        let code = client::current_code(&simulated.totp_secret)?;
        (simulated.password, code)
    } else {
        let password = match std::env::var("HARDLAB_PASSWORD") {
            Ok(password) => password,
            Err(_) => prompt_hidden(&format!("Password for {user}: "))?,
        };
        let code = match std::env::var("HARDLAB_OTP") {
            Ok(code) => code,
            Err(_) => prompt("Authenticator code: ")?,
        };
        (password, code)
    };
    let profile = client::login(
        &home,
        &server,
        &tenant,
        &user,
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
            let cluster = cluster
                .clone()
                .or(client::NodeDefaults::load().lab_cluster)
                .ok_or_else(|| {
                    ProxyError::BadRequest("which cluster? pass --cluster NAME".into())
                })?;
            let cluster = &cluster;
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

/// The saved login when it is into a lab tenant: then `hardlab proxy` and `hardlab audit` act
/// on that tenant through the server, not on a database.
pub fn tenant_login() -> Option<client::Profile> {
    client::load_profile(&client::home())
        .ok()
        .filter(|profile| !profile.tenant.is_empty() && !profile.api_token.is_empty())
}

/// `hardlab audit ...` on the tenant of the saved login, through the server.
pub async fn audit_remote(command: &AuditCommand) -> Result<bool, ProxyError> {
    let home = client::home();
    match command {
        AuditCommand::Verify { .. } => {
            let answer = client::tenant_api(&home, "/api/proxy/tenant/audit/verify", None).await?;
            let answer: serde_json::Value = serde_json::from_str(&answer)
                .map_err(|error| ProxyError::Internal(format!("the server's answer: {error}")))?;
            println!("{}", answer["report"].as_str().unwrap_or_default());
            Ok(answer["intact"].as_bool().unwrap_or(false))
        }
        AuditCommand::Export(args) => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (key, value) in [
                ("user", &args.user),
                ("cluster", &args.cluster),
                ("verb", &args.verb),
                ("resource", &args.resource),
                ("decision", &args.decision),
            ] {
                if let Some(value) = value {
                    query.append_pair(key, value);
                }
            }
            if let Some(code) = args.code {
                query.append_pair("code", &code.to_string());
            }
            query.append_pair("limit", &args.limit.to_string());
            let lines = client::tenant_api(
                &home,
                &format!("/api/proxy/tenant/audit.jsonl?{}", query.finish()),
                None,
            )
            .await?;
            std::io::stdout().lock().write_all(lines.as_bytes())?;
            Ok(true)
        }
    }
}

/// `hardlab proxy ...` on the tenant of the saved login, through the server.
pub async fn proxy_remote(command: &ProxyCommand) -> Result<(), ProxyError> {
    let home = client::home();
    match command {
        ProxyCommand::Apply { file } => {
            let yaml = std::fs::read_to_string(file)
                .map_err(|error| ProxyError::Config(format!("{}: {error}", file.display())))?;
            client::tenant_api(
                &home,
                "/api/proxy/tenant/config",
                Some(&serde_json::json!({ "yaml": yaml })),
            )
            .await?;
            println!(
                "Applied {} to your lab proxy (it reads roles on every request; labels within 5 s).",
                file.display()
            );
        }
        ProxyCommand::Invite { user } => {
            let answer = client::tenant_api(
                &home,
                "/api/proxy/tenant/invite",
                Some(&serde_json::json!({ "user": user })),
            )
            .await?;
            let answer: serde_json::Value = serde_json::from_str(&answer)
                .map_err(|error| ProxyError::Internal(format!("the server's answer: {error}")))?;
            let text = |key: &str| answer[key].as_str().unwrap_or_default().to_owned();
            let saved = client::save_simulated(&client::SimulatedUser {
                tenant: text("tenant"),
                user: text("user"),
                password: text("password"),
                totp_secret: text("totp_secret"),
            })?;
            println!(
                "Invited {} into your lab proxy. You play them: their password and authenticator are in {}.\nLog in as them with: HARDLAB_HOME=~/.hardlab-{} hardlab login --user {} --simulated",
                text("user"),
                saved.display(),
                text("user"),
                text("user"),
            );
        }
        ProxyCommand::Show => {
            let answer = client::tenant_api(&home, "/api/proxy/tenant", None).await?;
            let answer: serde_json::Value = serde_json::from_str(&answer)
                .map_err(|error| ProxyError::Internal(format!("the server's answer: {error}")))?;
            println!(
                "{}",
                serde_yaml::to_string(&answer)
                    .map_err(|error| ProxyError::Internal(error.to_string()))?
            );
        }
        _ => {
            return Err(ProxyError::BadRequest(
                "this command acts on the site's proxy: run it where the server's database is, without a lab login".into(),
            ));
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
                tenant: super::tenant::Tenant::site(),
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
        ProxyCommand::Invite { .. } | ProxyCommand::Show => {
            return Err(ProxyError::BadRequest(
                "this command acts on your lab 6 proxy: run `hardlab login` into your tenant first (in your lab terminal: hardlab login)".into(),
            ));
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
                    let (tenant, owner) = store::revoke_certificate(pool, serial).await?;
                    record(
                        audit::AuditEvent::admin_action("cert.revoke", &actor, &owner)
                            .in_tenant(&tenant),
                    )
                    .await?;
                    println!("Certificate {serial} of {owner} revoked.");
                }
                (None, Some(user)) => {
                    store::revoke_user_certificates(pool, &super::tenant::Tenant::site(), user)
                        .await?;
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
