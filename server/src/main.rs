//! `hardlab`: parse the command line, set up logging, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hardlab_server::config::ConfigArgs;
use hardlab_server::proxy::cli as proxy_cli;

#[derive(Debug, Parser)]
#[command(
    name = "hardlab",
    version,
    about = "Kubernetes hardening labs with an automatic grader"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web app (learners' clusters on the local Docker engine).
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Manage accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Work with lab folders.
    #[command(subcommand)]
    Labs(LabsCommand),
    /// Log in to the access proxy with password and TOTP; saves a short-lived client certificate.
    Login(proxy_cli::LoginArgs),
    /// Reach clusters through the access proxy (kubeconfig entry, exec credential plugin).
    #[command(subcommand)]
    Kube(proxy_cli::KubeCommand),
    /// The access proxy's audit log: verify the hash chain, export JSON lines.
    Audit {
        #[command(subcommand)]
        command: proxy_cli::AuditCommand,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Access proxy administration: roles file, TOTP enrolment and reset, certificate revocation.
    Proxy {
        #[command(subcommand)]
        command: proxy_cli::ProxyCommand,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Learners' clusters on the Docker host: create, ls, kubeconfig, exec, rm.
    Clusters {
        #[command(subcommand)]
        command: hardlab_server::clusters::cli::ClustersCommand,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Instructor-led workshops: create (join code and link), list, show, export, end.
    #[command(subcommand)]
    Workshop(hardlab_server::workshops::cli::WorkshopCommand),
    /// How many hosts (or how much of a host cluster) a workshop of N learners needs, from the
    /// per-node limits the settings give each cluster.
    Capacity {
        /// Learners at once.
        #[arg(long)]
        learners: u64,
        /// How many labs keep a warm pool (each adds --pool-size clusters).
        #[arg(long, default_value_t = 0)]
        pooled_lab_count: u64,
        /// Memory of one host (a Docker host, or a node of the host cluster's learner pool), GiB.
        #[arg(long)]
        host_memory_gib: f64,
        /// CPUs of one host.
        #[arg(long)]
        host_cpus: f64,
        /// Share of each host kept free, 0 to 1.
        #[arg(long, default_value_t = 0.25)]
        headroom: f64,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Run a KMS v2 plugin for kube-apiserver on a unix socket, with a local key file (a stand-in
    /// for a cloud KMS or Vault in lab 1).
    KmsPlugin {
        /// The unix socket to serve on (the EncryptionConfiguration's `unix://` endpoint).
        #[arg(long)]
        socket: PathBuf,
        /// The key file; created (mode 0600) with a new random key when it does not exist.
        #[arg(long)]
        key_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an account; the password is read from standard input (or prompted on a terminal).
    CreateUser {
        username: String,
        /// Make the account an admin.
        #[arg(long, conflicts_with = "instructor")]
        admin: bool,
        /// Make the account an instructor.
        #[arg(long)]
        instructor: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print an invitation link for sign-up (signup invite or code), built on the public URL.
    Invite {
        /// How many accounts the link may create.
        #[arg(long, default_value_t = hardlab_server::web::signup::DEFAULT_INVITE_USES)]
        uses: i64,
        /// Hours until the link expires.
        #[arg(long, default_value_t = hardlab_server::web::signup::DEFAULT_INVITE_HOURS)]
        hours: i64,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
enum LabsCommand {
    /// Load and check every DIR/*/lab.yaml as `serve` does; prints each problem with file and line.
    Validate {
        #[arg(default_value = "labs")]
        dir: PathBuf,
    },
    /// Prove on a real cluster that each step's checks fail before its solution and pass after.
    Verify(hardlab_server::harness::cli::VerifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files (the KMS plugin's log).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hardlab: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config } => hardlab_server::app::launch(config.resolve()?).await,
            Command::Admin(AdminCommand::CreateUser {
                username,
                admin,
                instructor,
                config,
            }) => {
                hardlab_server::web::accounts::create_user_command(
                    &config.resolve()?,
                    &username,
                    admin,
                    instructor,
                )
                .await
            }
            Command::Admin(AdminCommand::Invite {
                uses,
                hours,
                config,
            }) => {
                hardlab_server::web::signup::invite_command(&config.resolve()?, uses, hours).await
            }
            Command::Capacity {
                learners,
                pooled_lab_count,
                host_memory_gib,
                host_cpus,
                headroom,
                json,
                config,
            } => {
                let config = config.resolve()?;
                let settings = config.clusters.unwrap_or_default();
                let host = hardlab_server::clusters::capacity::HostSize {
                    memory_gib: host_memory_gib,
                    cpus: host_cpus,
                    headroom,
                };
                match hardlab_server::clusters::capacity::plan(
                    &settings,
                    learners,
                    pooled_lab_count,
                    host,
                ) {
                    Ok(plan) if json => {
                        println!("{}", serde_json::to_string(&plan).unwrap_or_default());
                        Ok(())
                    }
                    Ok(plan) => {
                        println!("{plan}");
                        Ok(())
                    }
                    Err(message) => Err(hardlab_server::Error::Config(message)),
                }
            }
            Command::Clusters { command, config } => {
                hardlab_server::clusters::setup::cli(command, &config.resolve()?).await
            }
            Command::Workshop(command) => hardlab_server::workshops::cli::run(command).await,
            Command::Labs(LabsCommand::Validate { dir }) => {
                hardlab_server::labs::validate_command(&dir)
            }
            Command::Login(args) => proxy_cli::login(&args).await.map_err(Into::into),
            Command::Kube(command) => proxy_cli::kube(&command).map_err(Into::into),
            // Logged in to a lab tenant (a learner in their node): through the server.
            Command::Audit { command, .. } if proxy_cli::tenant_login().is_some() => {
                if proxy_cli::audit_remote(&command).await? {
                    Ok(())
                } else {
                    Err(hardlab_server::Error::InvalidInput(
                        "the audit chain is broken".into(),
                    ))
                }
            }
            Command::Proxy { command, .. } if proxy_cli::tenant_login().is_some() => {
                proxy_cli::proxy_remote(&command).await.map_err(Into::into)
            }
            Command::Audit { command, config } => {
                let config = config.resolve()?;
                let db = hardlab_server::db::connect(&config.database_url).await?;
                let sealer = hardlab_server::db::seal::Sealer::new(config.secret_key_file.clone());
                if proxy_cli::audit(&db, &sealer, &command).await? {
                    Ok(())
                } else {
                    Err(hardlab_server::Error::InvalidInput(
                        "the audit chain is broken".into(),
                    ))
                }
            }
            Command::Proxy { command, config } => {
                let config = config.resolve()?;
                let db = hardlab_server::db::connect(&config.database_url).await?;
                let sealer = hardlab_server::db::seal::Sealer::new(config.secret_key_file.clone());
                proxy_cli::proxy(&db, &sealer, &command)
                    .await
                    .map_err(Into::into)
            }
            // Exit code 1 means a lab has a violation, 2 that the harness could not run.
            Command::Labs(LabsCommand::Verify(args)) => {
                match hardlab_server::harness::cli::run(args).await {
                    0 => Ok(()),
                    code => std::process::exit(code),
                }
            }
            Command::KmsPlugin { socket, key_file } => hardlab_kms::serve(&socket, &key_file)
                .await
                .map_err(Into::into),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hardlab: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
