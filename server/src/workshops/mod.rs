//! Instructor-led workshops: a title, the labs it covers, when it runs, how many learners it
//! takes and a join code (`/join/<code>`). The rows live in the database (migration 0009), so
//! the admin CLI (`hardlab workshop ...`, [`cli`]) and every server on the database see the same
//! workshops. [`progress`] is the one place attempts become a learner's standing in a workshop;
//! the export ([`export`]) and the live board read it.

pub mod board;
pub mod cli;
pub mod export;
pub mod progress;

use sqlx::AnyPool;

use crate::db::{now_ms, random_id};
use crate::labs::Labs;
use crate::{Error, Result};

/// Join codes are typed from a projector: lower-case letters and digits without the ones that
/// look alike (0/o, 1/l/i), so nobody has to ask which one it was.
pub const CODE_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
/// 12 characters of 31: about 59 bits, far beyond guessing through a throttled web form.
pub const CODE_LENGTH: usize = 12;
/// The most learners one workshop takes (a room, not a MOOC); the per-host cluster cap is the
/// tighter limit in practice.
pub const MAX_CAPACITY: i64 = 10_000;
const MAX_TITLE_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workshop {
    pub id: String,
    pub title: String,
    /// Lab IDs in the order the workshop takes them.
    pub labs: Vec<String>,
    pub capacity: i64,
    pub starts_at: i64,
    pub ends_at: i64,
    pub join_code: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    /// Set when the workshop was ended early (or at all) by an instructor or the CLI.
    pub ended_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkshopState {
    /// Before its start: learners may join already and read what it covers.
    Scheduled,
    Running,
    /// Ended by hand, or past its end time.
    Ended,
}

impl WorkshopState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkshopState::Scheduled => "scheduled",
            WorkshopState::Running => "running",
            WorkshopState::Ended => "ended",
        }
    }
}

impl Workshop {
    pub fn state(&self, now: i64) -> WorkshopState {
        if self.ended_at.is_some() || now >= self.ends_at {
            WorkshopState::Ended
        } else if now < self.starts_at {
            WorkshopState::Scheduled
        } else {
            WorkshopState::Running
        }
    }

    /// When it stopped or will stop: the time it was ended, else the planned end.
    pub fn closes_at(&self) -> i64 {
        self.ended_at
            .map_or(self.ends_at, |ended| ended.min(self.ends_at))
    }

    pub fn join_url(&self, base: &str) -> String {
        format!("{}/join/{}", base.trim_end_matches('/'), self.join_code)
    }
}

/// What `create` needs; checked by [`NewWorkshop::validate`] before anything is written.
#[derive(Debug, Clone)]
pub struct NewWorkshop {
    pub title: String,
    pub labs: Vec<String>,
    pub capacity: i64,
    pub starts_at: i64,
    pub ends_at: i64,
    pub created_by: Option<String>,
    /// User IDs of the instructors who run it.
    pub instructors: Vec<String>,
}

impl NewWorkshop {
    /// Every problem is named by its field, so the form and the CLI can say what to change.
    pub fn validate(&mut self, labs: &Labs) -> Result<()> {
        self.title = self.title.trim().to_owned();
        if self.title.is_empty() {
            return Err(Error::InvalidInput(
                "title: a workshop needs a title".into(),
            ));
        }
        if self.title.chars().count() > MAX_TITLE_CHARS || self.title.chars().any(char::is_control)
        {
            return Err(Error::InvalidInput(format!(
                "title: at most {MAX_TITLE_CHARS} characters, without control characters"
            )));
        }
        let mut wanted: Vec<String> = Vec::new();
        for id in self
            .labs
            .iter()
            .map(|id| id.trim())
            .filter(|id| !id.is_empty())
        {
            if labs.get(id).is_none() {
                let known: Vec<&str> = labs.all().iter().map(|lab| lab.id.as_str()).collect();
                return Err(Error::InvalidInput(format!(
                    "labs: there is no lab {id:?} (this server has: {})",
                    known.join(", ")
                )));
            }
            if !wanted.iter().any(|seen| seen == id) {
                wanted.push(id.to_owned());
            }
        }
        if wanted.is_empty() {
            return Err(Error::InvalidInput(
                "labs: a workshop covers at least one lab".into(),
            ));
        }
        self.labs = wanted;
        if !(1..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(Error::InvalidInput(format!(
                "capacity: from 1 to {MAX_CAPACITY} learners"
            )));
        }
        if self.ends_at <= self.starts_at {
            return Err(Error::InvalidInput(
                "ends: the end must come after the start".into(),
            ));
        }
        if self.ends_at <= now_ms() {
            return Err(Error::InvalidInput("ends: the end is in the past".into()));
        }
        Ok(())
    }
}

/// A fresh join code from [`CODE_ALPHABET`], drawn from the operating system's generator.
pub fn new_join_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..CODE_LENGTH)
        .map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())]))
        .collect()
}

/// What a learner or the CLI typed, in the form codes are stored: surrounding spaces, dashes
/// and capitals do not count.
pub fn normalize_code(typed: &str) -> String {
    typed
        .trim()
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Validates and stores a workshop with its instructors and a `create` line in its audit log,
/// in one transaction.
pub async fn create(db: &AnyPool, labs: &Labs, mut new: NewWorkshop) -> Result<Workshop> {
    new.validate(labs)?;
    let workshop = Workshop {
        // Hex, so an ID never starts with `-` on a command line.
        id: hex::encode(rand::random::<[u8; 16]>()),
        title: new.title,
        labs: new.labs,
        capacity: new.capacity,
        starts_at: new.starts_at,
        ends_at: new.ends_at,
        join_code: new_join_code(),
        created_by: new.created_by,
        created_at: now_ms(),
        ended_at: None,
    };
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO workshops (id, title, labs, capacity, starts_at, ends_at, join_code, \
         created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&workshop.id)
    .bind(&workshop.title)
    .bind(serde_json::to_string(&workshop.labs)?)
    .bind(workshop.capacity)
    .bind(workshop.starts_at)
    .bind(workshop.ends_at)
    .bind(&workshop.join_code)
    .bind(&workshop.created_by)
    .bind(workshop.created_at)
    .execute(&mut *tx)
    .await?;
    for instructor in &new.instructors {
        sqlx::query(
            "INSERT INTO workshop_instructors (workshop_id, user_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&workshop.id)
        .bind(instructor)
        .execute(&mut *tx)
        .await?;
    }
    let detail = format!(
        "created {:?} for labs {} with capacity {}",
        workshop.title,
        workshop.labs.join(","),
        workshop.capacity
    );
    record(
        &mut *tx,
        &workshop.id,
        workshop.created_by.as_deref(),
        "create",
        None,
        &detail,
    )
    .await?;
    tx.commit().await?;
    Ok(workshop)
}

type WorkshopRow = (
    String,
    String,
    String,
    i64,
    i64,
    i64,
    String,
    Option<String>,
    i64,
    Option<i64>,
);

const COLUMNS: &str = "id, title, labs, capacity, starts_at, ends_at, join_code, created_by, \
                       created_at, ended_at";

fn from_row(row: WorkshopRow) -> Workshop {
    let (
        id,
        title,
        labs,
        capacity,
        starts_at,
        ends_at,
        join_code,
        created_by,
        created_at,
        ended_at,
    ) = row;
    Workshop {
        id,
        title,
        // Written by `create` only; a row that does not parse covers no labs rather than failing
        // every page that lists it.
        labs: serde_json::from_str(&labs).unwrap_or_default(),
        capacity,
        starts_at,
        ends_at,
        join_code,
        created_by,
        created_at,
        ended_at,
    }
}

pub async fn get(db: &AnyPool, id: &str) -> Result<Option<Workshop>> {
    let row: Option<WorkshopRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM workshops WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(from_row))
}

pub async fn by_code(db: &AnyPool, code: &str) -> Result<Option<Workshop>> {
    let code = normalize_code(code);
    if code.len() != CODE_LENGTH {
        return Ok(None);
    }
    let row: Option<WorkshopRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM workshops WHERE join_code = $1"
    )))
    .bind(&code)
    .fetch_optional(db)
    .await?;
    Ok(row.map(from_row))
}

/// The workshop an admin named by ID or join code.
pub async fn find(db: &AnyPool, id_or_code: &str) -> Result<Workshop> {
    let wanted = id_or_code.trim();
    if let Some(workshop) = get(db, wanted).await? {
        return Ok(workshop);
    }
    by_code(db, wanted).await?.ok_or_else(|| {
        Error::InvalidInput(format!(
            "workshop: no workshop has the ID or code {wanted:?}"
        ))
    })
}

/// Every workshop, newest start first.
pub async fn list(db: &AnyPool) -> Result<Vec<Workshop>> {
    let rows: Vec<WorkshopRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM workshops ORDER BY starts_at DESC, id"
    )))
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// The workshops this user runs, newest start first.
pub async fn list_run_by(db: &AnyPool, user_id: &str) -> Result<Vec<Workshop>> {
    let rows: Vec<WorkshopRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM workshops WHERE id IN \
         (SELECT workshop_id FROM workshop_instructors WHERE user_id = $1) \
         ORDER BY starts_at DESC, id"
    )))
    .bind(user_id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// A person in a workshop (an instructor or a learner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    pub username: String,
    /// When a learner joined; 0 for instructors.
    pub joined_at: i64,
}

pub async fn instructors(db: &AnyPool, workshop_id: &str) -> Result<Vec<Member>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT u.id, u.username FROM workshop_instructors i JOIN users u ON u.id = i.user_id \
         WHERE i.workshop_id = $1 ORDER BY u.username",
    )
    .bind(workshop_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, username)| Member {
            user_id,
            username,
            joined_at: 0,
        })
        .collect())
}

pub async fn is_instructor(db: &AnyPool, workshop_id: &str, user_id: &str) -> Result<bool> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 FROM workshop_instructors WHERE workshop_id = $1 AND user_id = $2",
    )
    .bind(workshop_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    Ok(row.is_some())
}

/// The workshop's learners in the order they joined.
pub async fn learners(db: &AnyPool, workshop_id: &str) -> Result<Vec<Member>> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT u.id, u.username, l.joined_at FROM workshop_learners l \
         JOIN users u ON u.id = l.user_id WHERE l.workshop_id = $1 ORDER BY l.joined_at, u.username",
    )
    .bind(workshop_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, username, joined_at)| Member {
            user_id,
            username,
            joined_at,
        })
        .collect())
}

/// Why a learner could not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefusal {
    Ended,
    Full,
}

impl JoinRefusal {
    pub fn message(self) -> &'static str {
        match self {
            JoinRefusal::Ended => "This workshop has ended; nobody can join it any more.",
            JoinRefusal::Full => {
                "This workshop is full: every place is taken. Ask your instructor."
            }
        }
    }
}

/// Adds the learner to the workshop unless it has ended or is full; joining twice is fine (their
/// first joining time stays). The workshop's row is locked for the count and the insert, so two
/// learners taking the last place at once (on any server) do not both get it.
pub async fn join(
    db: &AnyPool,
    workshop: &Workshop,
    user_id: &str,
) -> Result<std::result::Result<(), JoinRefusal>> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    let row: Option<(i64, i64, Option<i64>)> = sqlx::query_as(
        "UPDATE workshops SET capacity = capacity WHERE id = $1 \
         RETURNING capacity, ends_at, ended_at",
    )
    .bind(&workshop.id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((capacity, ends_at, ended_at)) = row else {
        return Ok(Err(JoinRefusal::Ended));
    };
    let already: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM workshop_learners WHERE workshop_id = $1 AND user_id = $2")
            .bind(&workshop.id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    if already.is_some() {
        return Ok(Ok(()));
    }
    if ended_at.is_some() || now >= ends_at {
        return Ok(Err(JoinRefusal::Ended));
    }
    let (joined,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM workshop_learners WHERE workshop_id = $1")
            .bind(&workshop.id)
            .fetch_one(&mut *tx)
            .await?;
    if joined >= capacity {
        return Ok(Err(JoinRefusal::Full));
    }
    sqlx::query(
        "INSERT INTO workshop_learners (workshop_id, user_id, joined_at) VALUES ($1, $2, $3)",
    )
    .bind(&workshop.id)
    .bind(user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// Whether this learner is in the workshop.
pub async fn is_learner(db: &AnyPool, workshop_id: &str, user_id: &str) -> Result<bool> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM workshop_learners WHERE workshop_id = $1 AND user_id = $2")
            .bind(workshop_id)
            .bind(user_id)
            .fetch_optional(db)
            .await?;
    Ok(row.is_some())
}

/// Ends a workshop now (no more joins; its learners' clusters are torn down by the caller).
/// `false`: it had been ended already.
pub async fn end(db: &AnyPool, workshop: &Workshop, actor: Option<&str>) -> Result<bool> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    let changed =
        sqlx::query("UPDATE workshops SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
            .bind(now)
            .bind(&workshop.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if changed == 0 {
        return Ok(false);
    }
    record(
        &mut *tx,
        &workshop.id,
        actor,
        "end",
        None,
        "ended the workshop",
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Moves the workshop's end `minutes` later (from its planned end, or from now when that has
/// passed); an ended workshop is not reopened.
pub async fn extend(
    db: &AnyPool,
    workshop: &Workshop,
    minutes: i64,
    actor: Option<&str>,
) -> Result<i64> {
    if !(1..=24 * 60).contains(&minutes) {
        return Err(Error::InvalidInput("minutes: from 1 to 1440".into()));
    }
    if workshop.ended_at.is_some() {
        return Err(Error::InvalidInput(
            "workshop: it has been ended; create a new one".into(),
        ));
    }
    let ends_at = workshop.ends_at.max(now_ms()) + minutes * 60_000;
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE workshops SET ends_at = $1 WHERE id = $2")
        .bind(ends_at)
        .bind(&workshop.id)
        .execute(&mut *tx)
        .await?;
    let detail = format!("extended by {minutes} min to {}", format_time(ends_at));
    record(&mut *tx, &workshop.id, actor, "extend", None, &detail).await?;
    tx.commit().await?;
    Ok(ends_at)
}

/// The longest broadcast message.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// A message to every learner of the workshop, kept in its audit log (the latest one is shown
/// on the workshop's page for its learners).
pub async fn broadcast(
    db: &AnyPool,
    workshop: &Workshop,
    message: &str,
    actor: Option<&str>,
) -> Result<()> {
    let message = message.trim();
    if message.is_empty() || message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(Error::InvalidInput(format!(
            "message: 1 to {MAX_MESSAGE_CHARS} characters"
        )));
    }
    record(db, &workshop.id, actor, "broadcast", None, message).await
}

/// The latest broadcast message and when it was sent.
pub async fn latest_broadcast(db: &AnyPool, workshop_id: &str) -> Result<Option<(i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT at, detail FROM workshop_audit WHERE workshop_id = $1 AND action = 'broadcast' \
         ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(workshop_id)
    .fetch_optional(db)
    .await?)
}

/// Every live cluster of the workshop's learners on its labs: what ending it removes.
pub async fn live_clusters(
    db: &AnyPool,
    manager: &crate::clusters::ClusterManager,
    workshop: &Workshop,
) -> Result<Vec<crate::clusters::lifecycle::ClusterRecord>> {
    let mut found = Vec::new();
    for member in learners(db, &workshop.id).await? {
        for lab in &workshop.labs {
            if let Some(record) = manager.find_for(&member.user_id, lab).await? {
                found.push(record);
            }
        }
    }
    Ok(found)
}

/// One line of a workshop's audit log: who (`None`: the admin CLI) did what, to whom.
pub async fn record<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    workshop_id: &str,
    actor: Option<&str>,
    action: &str,
    target_user: Option<&str>,
    detail: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO workshop_audit (id, workshop_id, actor_id, action, target_user_id, detail, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(random_id())
    .bind(workshop_id)
    .bind(actor)
    .bind(action)
    .bind(target_user)
    .bind(detail)
    .bind(now_ms())
    .execute(executor)
    .await?;
    Ok(())
}

/// One line of the audit log as shown: the actor's username (`admin CLI` when none).
#[derive(Debug, Clone)]
pub struct AuditLine {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: String,
}

pub async fn audit_log(db: &AnyPool, workshop_id: &str) -> Result<Vec<AuditLine>> {
    type Row = (i64, Option<String>, String, Option<String>, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.at, actor.username, a.action, target.username, a.detail FROM workshop_audit a \
         LEFT JOIN users actor ON actor.id = a.actor_id \
         LEFT JOIN users target ON target.id = a.target_user_id \
         WHERE a.workshop_id = $1 ORDER BY a.at, a.id",
    )
    .bind(workshop_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(at, actor, action, target, detail)| AuditLine {
            at,
            actor: actor.unwrap_or_else(|| "admin CLI".to_owned()),
            action,
            target,
            detail,
        })
        .collect())
}

/// `2026-12-02T15:04:05Z`: how the CLI and the exports write times.
pub fn format_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.replace_nanosecond(0)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// An RFC 3339 time (`2026-12-02T09:00:00Z`, `2026-12-02T10:00:00+01:00`) as unix milliseconds.
pub fn parse_time(field: &str, text: &str) -> Result<i64> {
    let parsed =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                Error::InvalidInput(format!(
                    "{field}: {text:?} is not an RFC 3339 time like 2026-12-02T09:00:00Z ({e})"
                ))
            })?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| Error::InvalidInput(format!("{field}: {text:?} is out of range")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn join_codes_are_long_random_and_unambiguous() {
        let codes: Vec<String> = (0..200).map(|_| new_join_code()).collect();
        for code in &codes {
            assert_eq!(code.len(), CODE_LENGTH);
            assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{code}");
            assert!(!code.contains(['0', 'o', '1', 'l', 'i']), "{code}");
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), codes.len());
    }

    #[test]
    fn typed_codes_are_normalized() {
        assert_eq!(normalize_code(" ABCD-efgh-2345 "), "abcdefgh2345");
    }

    #[test]
    fn times_round_trip_and_bad_ones_name_the_field() {
        let ms = parse_time("starts", "2026-12-02T09:00:00Z").unwrap();
        assert_eq!(format_time(ms), "2026-12-02T09:00:00Z");
        assert_eq!(
            parse_time("starts", "2026-12-02T10:00:00+01:00").unwrap(),
            ms
        );
        let error = parse_time("ends", "tomorrow").unwrap_err().to_string();
        assert!(error.starts_with("ends: \"tomorrow\""), "{error}");
    }
}
