//! The database: one `AnyPool` for SQLite or PostgreSQL, migrations from `migrations/`.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub mod seal;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use crate::{Error, Result};

/// Connects (creating a SQLite file and its folder when missing) and runs every migration.
pub async fn connect(url: &str) -> Result<AnyPool> {
    sqlx::any::install_default_drivers();
    let url = prepare_url(url)?;
    let sqlite = url.starts_with("sqlite:");
    let pool = AnyPoolOptions::new()
        .max_connections(if sqlite { 8 } else { 16 })
        .connect(&url)
        .await?;
    if sqlite {
        // WAL lets readers run while a Check result is written; it is a property of the file.
        sqlx::query("PRAGMA journal_mode=WAL")
            .execute(&pool)
            .await?;
    }
    migrate(&pool).await?;
    Ok(pool)
}

pub async fn migrate(pool: &AnyPool) -> Result<()> {
    sqlx::migrate!("../migrations").run(pool).await?;
    Ok(())
}

/// This installation's identity, made at first start and kept in its database: servers on one
/// database are one installation; another database is another installation, even on the same
/// Docker engine.
pub async fn installation_id(pool: &AnyPool) -> Result<String> {
    let fresh = format!("hardlab-{:012x}", rand::random::<u64>() >> 16);
    // Two servers starting at once on one new database: the first insert wins, both read it.
    sqlx::query(
        "INSERT INTO installation (id, created_at) SELECT $1, $2 \
         WHERE NOT EXISTS (SELECT 1 FROM installation)",
    )
    .bind(&fresh)
    .bind(now_ms())
    .execute(pool)
    .await?;
    let (id,): (String,) = sqlx::query_as("SELECT id FROM installation ORDER BY created_at, id")
        .fetch_one(pool)
        .await?;
    Ok(id)
}

/// `sqlite://path` gets `mode=rwc` (create when missing) and its folder is created.
fn prepare_url(url: &str) -> Result<String> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() || path == ":memory:" {
            return Err(Error::Config(
                "the database URL needs a file, e.g. sqlite://data/hardlab.db".into(),
            ));
        }
        if let Some(parent) = Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let query = if query.contains("mode=") {
            query.to_owned()
        } else if query.is_empty() {
            "mode=rwc".to_owned()
        } else {
            format!("{query}&mode=rwc")
        };
        return Ok(format!("sqlite://{path}?{query}"));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(url.to_owned());
    }
    Err(Error::Config(format!(
        "unsupported database URL scheme in {:?}: use sqlite://PATH or postgres://...",
        url.split(':').next().unwrap_or_default()
    )))
}

/// Unix time in milliseconds, the unit of every time column.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A random identifier for rows and tokens: 128 bits, URL-safe.
pub fn random_id() -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
