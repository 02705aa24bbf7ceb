//! `hardlab workshop create|list|show|export|end`: workshops from the admin's shell, on the
//! database and labs the server's settings name (`--database-url`, `--config`, `--labs`, ...
//! exactly as `serve` takes them).

use std::io::Write;

use sqlx::AnyPool;

use super::{NewWorkshop, Workshop, format_time};
use crate::config::{Config, ConfigArgs};
use crate::db::now_ms;
use crate::web::users::Role;
use crate::{Error, Result};

/// How long a workshop created without `--ends` runs.
const DEFAULT_HOURS: i64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One row per learner and step.
    Csv,
    /// One line per attempt, in the `hardlab-grade --format json` report format.
    Jsonl,
}

#[derive(Debug, clap::Subcommand)]
pub enum WorkshopCommand {
    /// Create a workshop and print its join code and link. `--labs` names the workshop's labs
    /// here, so the labs folder of `serve --labs` is `--labs-dir` (or HARDLAB_LABS, or `labs:`).
    #[command(mut_arg("labs_dir", |arg| arg.long("labs-dir")))]
    Create {
        /// What learners read on the join page.
        #[arg(long)]
        title: String,
        /// The labs it covers, by ID, comma-separated, in the order they are taken.
        #[arg(long, value_delimiter = ',', required = true)]
        labs: Vec<String>,
        /// How many learners may join.
        #[arg(long)]
        capacity: i64,
        /// When it starts, RFC 3339 (e.g. 2026-12-02T09:00:00Z) [default: now].
        #[arg(long, value_name = "TIME")]
        starts: Option<String>,
        /// When it ends, RFC 3339 [default: 4 hours after the start].
        #[arg(long, value_name = "TIME")]
        ends: Option<String>,
        /// An instructor who runs it (an account with the instructor or admin role); repeatable.
        #[arg(long = "instructor", value_name = "USERNAME")]
        instructors: Vec<String>,
        /// Print one JSON object (id, code, join_url, ...) instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List every workshop.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// A workshop's details, instructors and learners.
    Show {
        /// Its ID or join code.
        workshop: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Write a workshop's results to standard output.
    Export {
        /// Its ID or join code.
        workshop: String,
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// End a workshop now: nobody joins any more, and its learners' clusters are removed.
    End {
        /// Its ID or join code.
        workshop: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub async fn run(command: WorkshopCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        WorkshopCommand::Create {
            title,
            labs,
            capacity,
            starts,
            ends,
            instructors,
            json,
            config,
        } => {
            let config = config.resolve()?;
            let lab_set = crate::labs::load(&config.labs_dir)?;
            let db = crate::db::connect(&config.database_url).await?;
            let starts_at = match &starts {
                Some(text) => super::parse_time("starts", text)?,
                None => now_ms(),
            };
            let ends_at = match &ends {
                Some(text) => super::parse_time("ends", text)?,
                None => starts_at + DEFAULT_HOURS * 3_600_000,
            };
            let mut instructor_ids = Vec::new();
            for name in &instructors {
                instructor_ids.push(instructor_id(&db, name).await?);
            }
            let workshop = super::create(
                &db,
                &lab_set,
                NewWorkshop {
                    title,
                    labs,
                    capacity,
                    starts_at,
                    ends_at,
                    created_by: None,
                    instructors: instructor_ids,
                },
            )
            .await?;
            if json {
                let _ = writeln!(out, "{}", summary(&workshop, &config));
            } else {
                let _ = writeln!(
                    out,
                    "workshop {} created\njoin code: {}\njoin link: {}",
                    workshop.id,
                    workshop.join_code,
                    workshop.join_url(&config.link_base())
                );
            }
        }
        WorkshopCommand::List { json, config } => {
            let config = config.resolve()?;
            let db = crate::db::connect(&config.database_url).await?;
            let now = now_ms();
            if !json {
                let _ = writeln!(
                    out,
                    "{:<22} {:<12} {:<9} {:<20} {:>8}  TITLE",
                    "ID", "CODE", "STATE", "ENDS", "CAPACITY"
                );
            }
            for workshop in super::list(&db).await? {
                if json {
                    let _ = writeln!(out, "{}", summary(&workshop, &config));
                } else {
                    let _ = writeln!(
                        out,
                        "{:<22} {:<12} {:<9} {:<20} {:>8}  {}",
                        workshop.id,
                        workshop.join_code,
                        workshop.state(now).as_str(),
                        format_time(workshop.closes_at()),
                        workshop.capacity,
                        workshop.title
                    );
                }
            }
        }
        WorkshopCommand::Show {
            workshop,
            json,
            config,
        } => {
            let config = config.resolve()?;
            let db = crate::db::connect(&config.database_url).await?;
            let workshop = super::find(&db, &workshop).await?;
            let instructors = super::instructors(&db, &workshop.id).await?;
            let learners = super::learners(&db, &workshop.id).await?;
            if json {
                let mut object = summary(&workshop, &config);
                object["instructors"] = instructors
                    .iter()
                    .map(|m| serde_json::Value::from(m.username.as_str()))
                    .collect();
                object["learners"] = learners
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "username": m.username,
                            "joined_at": format_time(m.joined_at),
                        })
                    })
                    .collect();
                let _ = writeln!(out, "{object}");
            } else {
                let names = |members: &[super::Member]| {
                    members
                        .iter()
                        .map(|m| m.username.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let _ = writeln!(
                    out,
                    "{}\nID:          {}\njoin code:   {}\njoin link:   {}\nstate:       {}\n\
                     labs:        {}\nstarts:      {}\nends:        {}\ncapacity:    {} ({} joined)\n\
                     instructors: {}\nlearners:    {}",
                    workshop.title,
                    workshop.id,
                    workshop.join_code,
                    workshop.join_url(&config.link_base()),
                    workshop.state(now_ms()).as_str(),
                    workshop.labs.join(", "),
                    format_time(workshop.starts_at),
                    format_time(workshop.closes_at()),
                    workshop.capacity,
                    learners.len(),
                    names(&instructors),
                    names(&learners),
                );
            }
        }
        WorkshopCommand::Export {
            workshop,
            format,
            config,
        } => {
            let config = config.resolve()?;
            let db = crate::db::connect(&config.database_url).await?;
            let workshop = super::find(&db, &workshop).await?;
            let text = match format {
                ExportFormat::Csv => {
                    let labs = crate::labs::load(&config.labs_dir)?;
                    super::export::csv(&db, &labs, &workshop).await?
                }
                ExportFormat::Jsonl => super::export::jsonl(&db, &workshop).await?,
            };
            out.write_all(text.as_bytes())
                .map_err(|e| Error::io("standard output", e))?;
        }
        WorkshopCommand::End { workshop, config } => {
            let config = config.resolve()?;
            let db = crate::db::connect(&config.database_url).await?;
            let workshop = super::find(&db, &workshop).await?;
            let ended = super::end(&db, &workshop, None).await?;
            let _ = writeln!(
                out,
                "workshop {} {}",
                workshop.id,
                if ended { "ended" } else { "had ended already" }
            );
            // Its learners' clusters go too, where this installation runs clusters.
            if config.clusters.is_some() {
                let manager = crate::clusters::setup::cli_manager(&config).await?;
                let found = super::live_clusters(&db, &manager, &workshop).await?;
                for record in &found {
                    manager.delete(&record.id).await?;
                }
                let detail = format!("removed {} cluster(s)", found.len());
                super::record(&db, &workshop.id, None, "teardown", None, &detail).await?;
                let _ = writeln!(out, "{detail}");
            }
        }
    }
    Ok(())
}

/// The fields every JSON answer about a workshop has.
fn summary(workshop: &Workshop, config: &Config) -> serde_json::Value {
    serde_json::json!({
        "id": workshop.id,
        "code": workshop.join_code,
        "join_url": workshop.join_url(&config.link_base()),
        "title": workshop.title,
        "labs": workshop.labs,
        "capacity": workshop.capacity,
        "starts_at": format_time(workshop.starts_at),
        "ends_at": format_time(workshop.closes_at()),
        "state": workshop.state(now_ms()).as_str(),
    })
}

async fn instructor_id(db: &AnyPool, username: &str) -> Result<String> {
    let wanted = username.trim().to_ascii_lowercase();
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT id, role FROM users WHERE username = $1")
            .bind(&wanted)
            .fetch_optional(db)
            .await?;
    match row {
        None => Err(Error::InvalidInput(format!(
            "instructor: there is no account {wanted:?}"
        ))),
        Some((_, role)) if Role::parse(&role) < Role::Instructor => {
            Err(Error::InvalidInput(format!(
                "instructor: {wanted:?} is a learner; give them the instructor role first \
                 (hardlab admin create-user NAME --instructor)"
            )))
        }
        Some((id, _)) => Ok(id),
    }
}
