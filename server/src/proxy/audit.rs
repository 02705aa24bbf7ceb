//! The proxy's audit log: one event per request, append-only and hash-chained. Each row stores
//! the event as canonical JSON and `hash = sha256(prev_hash || "\n" || event_json)`, so changing,
//! deleting or reordering any row breaks the chain from that row on (`hardlab audit verify`).
//! The filter columns are copies of event fields; verification checks them against the JSON too.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::ProxyError;

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The proxy refused the request itself; the API server never saw it.
    ProxyDeny,
    /// The API server answered (its RBAC decided).
    Upstream,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::ProxyDeny => "proxy_deny",
            Decision::Upstream => "upstream",
        }
    }
}

/// One audit event. Names follow Teleport's `kube.request` event where one exists; `verb` is the
/// Kubernetes verb (Teleport logs the HTTP method there), `http_method` the method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the chain, from 1; assigned when appended.
    #[serde(default)]
    pub seq: i64,
    /// `kube.request`, or `kube.session` for a recorded exec/attach session.
    pub event: String,
    /// RFC 3339, milliseconds, UTC.
    pub time: String,
    pub user: String,
    pub user_roles: Vec<String>,
    pub cert_serial: String,
    #[serde(rename = "addr.remote")]
    pub addr_remote: String,
    pub kubernetes_cluster: String,
    pub kubernetes_users: Vec<String>,
    pub kubernetes_groups: Vec<String>,
    pub http_method: String,
    pub request_path: String,
    pub verb: String,
    pub resource_api_group: String,
    pub resource_namespace: String,
    pub resource_kind: String,
    pub resource_name: String,
    pub response_code: u16,
    pub decision: Decision,
    /// Why the proxy refused, for `proxy_deny`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The recording of an exec/attach session started by this request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_id: String,
}

impl AuditEvent {
    /// The sentence the UI shows: "bob got 403 on list services".
    pub fn summary(&self) -> String {
        let what = if self.resource_kind.is_empty() {
            self.request_path.clone()
        } else {
            self.resource_kind.clone()
        };
        format!(
            "{} got {} on {} {}",
            self.user, self.response_code, self.verb, what
        )
    }
}

pub fn now_rfc3339() -> String {
    format_time(OffsetDateTime::now_utc())
}

pub fn format_time(time: OffsetDateTime) -> String {
    let ms = time.millisecond();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

fn chain_hash(prev_hash: &str, event_json: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(event_json.as_bytes());
    hex::encode(hasher.finalize())
}

/// Appends one event at the end of the chain and returns it with its `seq`. Several processes
/// may append to one database: `seq` is the primary key, so a racing writer's insert fails and
/// it retries on top of the winner's row.
pub async fn append(pool: &AnyPool, mut event: AuditEvent) -> Result<AuditEvent, ProxyError> {
    let mut attempts = 0;
    loop {
        let last = sqlx::query("SELECT seq, hash FROM proxy_audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
        let (last_seq, prev_hash) = match last {
            Some(row) => (row.try_get::<i64, _>(0)?, row.try_get::<String, _>(1)?),
            None => (0, GENESIS_HASH.to_owned()),
        };
        event.seq = last_seq + 1;
        let event_json = serde_json::to_string(&event)
            .map_err(|error| ProxyError::Internal(format!("audit event: {error}")))?;
        let hash = chain_hash(&prev_hash, &event_json);
        let time_ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let inserted = sqlx::query(
            "INSERT INTO proxy_audit (seq, time_ms, user_name, cluster, verb, resource, namespace, \
             response_code, decision, event_json, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(event.seq)
        .bind(i64::try_from(time_ms).unwrap_or(i64::MAX))
        .bind(&event.user)
        .bind(&event.kubernetes_cluster)
        .bind(&event.verb)
        .bind(&event.resource_kind)
        .bind(&event.resource_namespace)
        .bind(i64::from(event.response_code))
        .bind(event.decision.as_str())
        .bind(&event_json)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(pool)
        .await;
        match inserted {
            Ok(_) => return Ok(event),
            Err(error) if attempts < 20 && is_unique_violation(&error) => attempts += 1,
            Err(error) => return Err(error.into()),
        }
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Filters for listing and export; empty fields match everything.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditFilter {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub verb: String,
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub decision: String,
    /// Only events with this response code (e.g. 403).
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// Events matching the filter, newest first.
pub async fn list(pool: &AnyPool, filter: &AuditFilter) -> Result<Vec<AuditEvent>, ProxyError> {
    let mut sql = String::from("SELECT event_json FROM proxy_audit WHERE 1 = 1");
    let mut binds: Vec<String> = Vec::new();
    for (column, value) in [
        ("user_name", &filter.user),
        ("cluster", &filter.cluster),
        ("verb", &filter.verb),
        ("resource", &filter.resource),
        ("decision", &filter.decision),
    ] {
        if !value.is_empty() {
            binds.push(value.clone());
            sql.push_str(&format!(" AND {column} = ${}", binds.len()));
        }
    }
    if let Some(code) = filter.code {
        sql.push_str(&format!(" AND response_code = {}", i64::from(code)));
    }
    let limit = filter.limit.unwrap_or(500).clamp(1, 100_000);
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit}"));
    // Only fixed column names and numbered placeholders are spliced in; values are bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for value in &binds {
        query = query.bind(value);
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            let json: String = row.try_get(0)?;
            serde_json::from_str(&json)
                .map_err(|error| ProxyError::Internal(format!("stored audit event: {error}")))
        })
        .collect()
}

/// JSON lines, oldest first, as stored (the exact bytes the hashes cover).
pub async fn export_json_lines(pool: &AnyPool, filter: &AuditFilter) -> Result<String, ProxyError> {
    let mut events = list(pool, filter).await?;
    events.reverse();
    let mut out = String::new();
    for event in events {
        out.push_str(
            &serde_json::to_string(&event)
                .map_err(|error| ProxyError::Internal(format!("audit event: {error}")))?,
        );
        out.push('\n');
    }
    Ok(out)
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub events: i64,
    /// The first row that does not fit the chain, with what is wrong with it.
    pub broken_at: Option<(i64, String)>,
    pub head_hash: String,
}

/// Walks the chain from the first row: recomputes each hash, checks each row links to the one
/// before, that `seq` has no gaps, and that the filter columns say what the event says.
pub async fn verify(pool: &AnyPool) -> Result<Verification, ProxyError> {
    let rows = sqlx::query(
        "SELECT seq, user_name, cluster, verb, resource, namespace, response_code, decision, \
         event_json, prev_hash, hash FROM proxy_audit ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    let mut expected_prev = GENESIS_HASH.to_owned();
    let mut count = 0;
    for (expected_seq, row) in (1_i64..).zip(rows.iter()) {
        let seq: i64 = row.try_get(0)?;
        let event_json: String = row.try_get(8)?;
        let prev_hash: String = row.try_get(9)?;
        let hash: String = row.try_get(10)?;
        let broken = |why: String| Verification {
            events: count,
            broken_at: Some((seq, why)),
            head_hash: expected_prev.clone(),
        };
        if seq != expected_seq {
            return Ok(broken(format!(
                "expected event {expected_seq} here: events are missing or reordered"
            )));
        }
        if prev_hash != expected_prev {
            return Ok(broken(
                "prev_hash does not match the previous event's hash".into(),
            ));
        }
        if chain_hash(&prev_hash, &event_json) != hash {
            return Ok(broken("the event's contents do not match its hash".into()));
        }
        let Ok(event) = serde_json::from_str::<AuditEvent>(&event_json) else {
            return Ok(broken("the stored event is not valid JSON".into()));
        };
        let columns_match = event.seq == seq
            && row.try_get::<String, _>(1)? == event.user
            && row.try_get::<String, _>(2)? == event.kubernetes_cluster
            && row.try_get::<String, _>(3)? == event.verb
            && row.try_get::<String, _>(4)? == event.resource_kind
            && row.try_get::<String, _>(5)? == event.resource_namespace
            && row.try_get::<i64, _>(6)? == i64::from(event.response_code)
            && row.try_get::<String, _>(7)? == event.decision.as_str();
        if !columns_match {
            return Ok(broken(
                "the row's columns differ from the hashed event".into(),
            ));
        }
        expected_prev = hash;
        count += 1;
    }
    Ok(Verification {
        events: count,
        broken_at: None,
        head_hash: expected_prev,
    })
}

enum WriterMessage {
    Append(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

/// Appends events in the background, in order, so a request never waits for the database.
#[derive(Clone)]
pub struct AuditWriter {
    sender: mpsc::UnboundedSender<WriterMessage>,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter").finish_non_exhaustive()
    }
}

impl AuditWriter {
    pub fn spawn(pool: AnyPool) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel::<WriterMessage>();
        tokio::spawn(async move {
            while let Some(message) = receiver.recv().await {
                match message {
                    WriterMessage::Append(event) => {
                        if let Err(error) = append(&pool, *event).await {
                            tracing::error!(%error, "could not append an audit event");
                        }
                    }
                    WriterMessage::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Self { sender }
    }

    pub fn record(&self, event: AuditEvent) {
        if self
            .sender
            .send(WriterMessage::Append(Box::new(event)))
            .is_err()
        {
            tracing::error!("the audit writer has stopped; an event was lost");
        }
    }

    /// Waits until every event recorded before this call is in the database.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.sender.send(WriterMessage::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}
