//! The proxy's audit log: one event per request, append-only and chained under a key. Each row
//! stores the event as canonical JSON and `hash = HMAC-SHA256(chain key, prev_hash || "\n" ||
//! event_json)`. The key is derived from the server key, which is not in the database, so someone
//! who can write the database can neither edit a row nor rewrite the whole chain with hashes that
//! verify. Deleting the newest rows leaves a valid but shorter chain, so every append also writes
//! a checkpoint (sequence number and hash, signed with a second derived key) to a file next to
//! the server key: `hardlab audit verify` fails when a checkpointed event is missing or differs.
//! The filter columns are copies of event fields; verification checks them against the JSON too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::{AnyPool, Row};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::ProxyError;
use crate::db::seal::Sealer;

/// Where a server whose key is `key_file` writes its checkpoints: next to the key, named after
/// it (`data/secret.key` → `data/secret.key.audit-checkpoints`), so each key has its own.
pub fn checkpoint_file_for(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".audit-checkpoints");
    PathBuf::from(name)
}

/// The keys of the chain and its checkpoints, and where the checkpoints go.
#[derive(Clone)]
pub struct AuditKeys {
    chain: [u8; 32],
    checkpoint: [u8; 32],
    checkpoint_file: PathBuf,
    /// One writer at a time per process, so lines never interleave.
    file_lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys")
            .field("checkpoint_file", &self.checkpoint_file)
            .finish_non_exhaustive()
    }
}

impl AuditKeys {
    /// Keys derived from the server key; checkpoints in `checkpoint_file`, else next to the key
    /// ([`checkpoint_file_for`]).
    pub fn from_sealer(
        sealer: &Sealer,
        checkpoint_file: Option<PathBuf>,
    ) -> Result<Self, ProxyError> {
        let derive = |label: &str| {
            sealer
                .derive_key(label)
                .map_err(|error| ProxyError::Internal(format!("audit key: {error}")))
        };
        let checkpoint_file =
            checkpoint_file.unwrap_or_else(|| checkpoint_file_for(sealer.key_path()));
        Ok(Self {
            chain: derive("audit chain v1")?,
            checkpoint: derive("audit checkpoints v1")?,
            checkpoint_file,
            file_lock: Arc::new(Mutex::new(())),
        })
    }

    pub fn checkpoint_file(&self) -> &Path {
        &self.checkpoint_file
    }

    fn chain_hash(&self, prev_hash: &str, event_json: &str) -> String {
        hex::encode(hmac(
            &self.chain,
            &[prev_hash.as_bytes(), b"\n", event_json.as_bytes()],
        ))
    }

    fn checkpoint_mac(&self, seq: i64, hash: &str, time_ms: i64) -> String {
        hex::encode(hmac(
            &self.checkpoint,
            &[format!("{seq} {hash} {time_ms}").as_bytes()],
        ))
    }

    /// Appends `seq hash time mac` as one line (one `write` with O_APPEND).
    fn write_checkpoint(&self, seq: i64, hash: &str, time_ms: i64) -> Result<(), ProxyError> {
        let line = format!(
            "{seq} {hash} {time_ms} {}\n",
            self.checkpoint_mac(seq, hash, time_ms)
        );
        let _guard = self
            .file_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&self.checkpoint_file).map_err(|error| {
            ProxyError::Io(std::io::Error::new(
                error.kind(),
                format!(
                    "audit checkpoints {}: {error}",
                    self.checkpoint_file.display()
                ),
            ))
        })?;
        file.write_all(line.as_bytes())?;
        Ok(())
    }

    /// Whether a checkpoint could be appended now (the file opens for appending).
    fn check_writable(&self) -> Result<(), ProxyError> {
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        options
            .open(&self.checkpoint_file)
            .map(drop)
            .map_err(|error| {
                ProxyError::Io(std::io::Error::new(
                    error.kind(),
                    format!(
                        "audit checkpoints {}: {error}",
                        self.checkpoint_file.display()
                    ),
                ))
            })
    }

    /// The checkpoints in the file, each checked against its signature. `None`: no file.
    fn read_checkpoints(&self) -> Result<Option<Vec<Checkpoint>>, ProxyError> {
        let text = match std::fs::read_to_string(&self.checkpoint_file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let mut checkpoints = Vec::new();
        for (number, line) in (1..).zip(text.lines()) {
            let fields: Vec<&str> = line.split(' ').collect();
            let parsed = match fields.as_slice() {
                [seq, hash, time_ms, mac] => seq
                    .parse::<i64>()
                    .ok()
                    .zip(time_ms.parse::<i64>().ok())
                    .filter(|(seq, time_ms)| self.checkpoint_mac(*seq, hash, *time_ms) == *mac)
                    .map(|(seq, _)| Checkpoint {
                        line: number,
                        seq,
                        hash: (*hash).to_owned(),
                    }),
                _ => None,
            };
            checkpoints.push(parsed.ok_or_else(|| {
                ProxyError::Internal(format!(
                    "{} line {number}: not a checkpoint signed with this server's key",
                    self.checkpoint_file.display()
                ))
            })?);
        }
        Ok(Some(checkpoints))
    }
}

struct Checkpoint {
    line: usize,
    seq: i64,
    hash: String,
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this never fails; a zero MAC would fail to verify.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The proxy refused the request itself; the API server never saw it.
    ProxyDeny,
    /// The API server answered (its RBAC decided).
    Upstream,
    /// Not a cluster request: something done to an account (revocation, second-factor reset).
    Account,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::ProxyDeny => "proxy_deny",
            Decision::Upstream => "upstream",
            Decision::Account => "account",
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
    /// Whose proxy the event happened in; empty (and left out of the JSON) for the site's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant: String,
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
    /// An event for something done to an account rather than a cluster (a revocation, a reset
    /// second factor): `user` is who did it, `resource_name` whom it was done to.
    pub fn admin_action(event: &str, actor: &str, subject: &str) -> Self {
        AuditEvent {
            seq: 0,
            tenant: String::new(),
            event: event.to_owned(),
            time: now_rfc3339(),
            user: actor.to_owned(),
            user_roles: Vec::new(),
            cert_serial: String::new(),
            addr_remote: String::new(),
            kubernetes_cluster: String::new(),
            kubernetes_users: Vec::new(),
            kubernetes_groups: Vec::new(),
            http_method: String::new(),
            request_path: String::new(),
            verb: event.to_owned(),
            resource_api_group: String::new(),
            resource_namespace: String::new(),
            resource_kind: "users".to_owned(),
            resource_name: subject.to_owned(),
            response_code: 200,
            decision: Decision::Account,
            reason: String::new(),
            session_id: String::new(),
        }
    }

    /// The sentence the UI shows: "bob got 403 on list services".
    /// The same event in `tenant`'s log.
    pub fn in_tenant(mut self, tenant: &super::tenant::Tenant) -> Self {
        self.tenant = tenant.as_str().to_owned();
        self
    }

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

/// Appends one event at the end of the chain, then its checkpoint, and returns it with its
/// `seq`. Several processes may append to one database: `seq` is the primary key, so a racing
/// writer's insert fails and it retries on top of the winner's row.
pub async fn append(
    pool: &AnyPool,
    keys: &AuditKeys,
    mut event: AuditEvent,
) -> Result<AuditEvent, ProxyError> {
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
        let hash = keys.chain_hash(&prev_hash, &event_json);
        let time_ms = i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(i64::MAX);
        let inserted = sqlx::query(
            "INSERT INTO proxy_audit (seq, time_ms, user_name, cluster, verb, resource, namespace, \
             response_code, decision, event_json, prev_hash, hash, tenant) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(event.seq)
        .bind(time_ms)
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
        .bind(&event.tenant)
        .execute(pool)
        .await;
        match inserted {
            Ok(_) => {
                keys.write_checkpoint(event.seq, &hash, time_ms)?;
                return Ok(event);
            }
            Err(error) if attempts < 20 && is_unique_violation(&error) => attempts += 1,
            Err(error) => return Err(error.into()),
        }
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Filters for listing and export; empty fields match everything except the tenant, which is
/// always matched (the site's is the empty one) and never taken from a client's query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditFilter {
    #[serde(skip)]
    pub tenant: super::tenant::Tenant,
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
    let mut sql = String::from("SELECT event_json FROM proxy_audit WHERE tenant = $1");
    let mut binds: Vec<String> = vec![filter.tenant.as_str().to_owned()];
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

/// Walks the chain from the first row: recomputes each keyed hash, checks each row links to the
/// one before, that `seq` has no gaps, and that the filter columns say what the event says; then
/// that every checkpoint in the file names an event that is there with the same hash, so events
/// deleted from the end (or a chain rebuilt from scratch) are found too.
pub async fn verify(pool: &AnyPool, keys: &AuditKeys) -> Result<Verification, ProxyError> {
    let rows = sqlx::query(
        "SELECT seq, user_name, cluster, verb, resource, namespace, response_code, decision, \
         event_json, prev_hash, hash, tenant FROM proxy_audit ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    let mut expected_prev = GENESIS_HASH.to_owned();
    let mut count = 0;
    let mut hashes = Vec::with_capacity(rows.len());
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
        if keys.chain_hash(&prev_hash, &event_json) != hash {
            return Ok(broken(
                "the event's contents do not match its keyed hash".into(),
            ));
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
            && row.try_get::<String, _>(7)? == event.decision.as_str()
            && row.try_get::<String, _>(11)? == event.tenant;
        if !columns_match {
            return Ok(broken(
                "the row's columns differ from the hashed event".into(),
            ));
        }
        hashes.push(hash.clone());
        expected_prev = hash;
        count += 1;
    }
    let file = keys.checkpoint_file.display().to_string();
    let anchored = |broken_at: Option<(i64, String)>| Verification {
        events: count,
        broken_at,
        head_hash: expected_prev.clone(),
    };
    let checkpoints = match keys.read_checkpoints() {
        Ok(Some(checkpoints)) => checkpoints,
        Ok(None) if count == 0 => return Ok(anchored(None)),
        Ok(None) => {
            return Ok(anchored(Some((
                count,
                format!(
                    "{file} is missing: nothing outside the database vouches for the chain's head"
                ),
            ))));
        }
        Err(error) => return Ok(anchored(Some((count, error.to_string())))),
    };
    for checkpoint in &checkpoints {
        let stored = usize::try_from(checkpoint.seq - 1)
            .ok()
            .and_then(|index| hashes.get(index));
        match stored {
            None => {
                return Ok(anchored(Some((
                    checkpoint.seq,
                    format!(
                        "{file} line {} vouches for event {}, which is not in the database: events were deleted from the end",
                        checkpoint.line, checkpoint.seq
                    ),
                ))));
            }
            Some(hash) if *hash != checkpoint.hash => {
                return Ok(anchored(Some((
                    checkpoint.seq,
                    format!(
                        "{file} line {} vouches for a different event {}: the chain was rewritten",
                        checkpoint.line, checkpoint.seq
                    ),
                ))));
            }
            Some(_) => {}
        }
    }
    Ok(anchored(None))
}

/// Takes over a chain written before the chain was keyed (plain SHA-256, no checkpoints): when
/// there is no checkpoint file yet and the rows form an intact unkeyed chain, they are rehashed
/// under the key and the head checkpointed. Runs once per key folder, at start.
pub async fn adopt_unkeyed_chain(pool: &AnyPool, keys: &AuditKeys) -> Result<u64, ProxyError> {
    if keys.checkpoint_file.exists() {
        return Ok(0);
    }
    let rows = sqlx::query("SELECT seq, event_json, prev_hash, hash FROM proxy_audit ORDER BY seq")
        .fetch_all(pool)
        .await?;
    let mut unkeyed_prev = GENESIS_HASH.to_owned();
    let mut keyed_prev = GENESIS_HASH.to_owned();
    let mut rehashed = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.try_get(0)?;
        let event_json: String = row.try_get(1)?;
        let prev_hash: String = row.try_get(2)?;
        let hash: String = row.try_get(3)?;
        if prev_hash != unkeyed_prev || unkeyed_hash(&prev_hash, &event_json) != hash {
            // Not an intact old chain (or already keyed): leave it for `verify` to judge.
            return Ok(0);
        }
        let keyed = keys.chain_hash(&keyed_prev, &event_json);
        rehashed.push((seq, keyed_prev.clone(), keyed.clone()));
        unkeyed_prev = hash;
        keyed_prev = keyed;
    }
    let mut tx = pool.begin().await?;
    for (seq, prev_hash, hash) in &rehashed {
        sqlx::query("UPDATE proxy_audit SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(prev_hash)
            .bind(hash)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    match rehashed.last() {
        Some((seq, _, hash)) => keys.write_checkpoint(*seq, hash, crate::db::now_ms())?,
        None => {
            // An empty file marks the folder as keyed from the start.
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&keys.checkpoint_file)?;
        }
    }
    if !rehashed.is_empty() {
        tracing::warn!(
            events = rehashed.len(),
            "audit: the unkeyed chain of an older version was rehashed under the server key"
        );
    }
    Ok(rehashed.len() as u64)
}

/// The chain hash before the chain was keyed (migration 0006).
fn unkeyed_hash(prev_hash: &str, event_json: &str) -> String {
    use sha2::Digest;
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(event_json.as_bytes());
    hex::encode(hasher.finalize())
}

type Ack = oneshot::Sender<Result<AuditEvent, String>>;

/// Appends events in order in one background task; each caller waits for its own event to be in
/// the database (and checkpointed) before it answers, so a request is never served unaudited.
#[derive(Clone)]
pub struct AuditWriter {
    sender: mpsc::UnboundedSender<(Box<AuditEvent>, Ack)>,
    pool: AnyPool,
    keys: AuditKeys,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter").finish_non_exhaustive()
    }
}

impl AuditWriter {
    pub fn spawn(pool: AnyPool, keys: AuditKeys) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel::<(Box<AuditEvent>, Ack)>();
        let writer = Self {
            sender,
            pool: pool.clone(),
            keys: keys.clone(),
        };
        tokio::spawn(async move {
            while let Some((event, ack)) = receiver.recv().await {
                let result = append(&pool, &keys, *event).await.map_err(|error| {
                    tracing::error!(%error, "could not append an audit event");
                    error.to_string()
                });
                let _ = ack.send(result);
            }
        });
        writer
    }

    /// Whether an event could be stored now: the database answers and the checkpoint file opens.
    /// Asked before a request that changes something is forwarded, since its event can only be
    /// written once the API server has answered, and by then the change is made.
    pub async fn ready(&self) -> Result<(), ProxyError> {
        if self.sender.is_closed() {
            return Err(ProxyError::Internal("the audit writer has stopped".into()));
        }
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        self.keys.check_writable()
    }

    /// Appends `event` and waits until it is stored. An error means the event is not in the log:
    /// the caller must refuse what it was about to do.
    pub async fn record(&self, event: AuditEvent) -> Result<AuditEvent, ProxyError> {
        let (ack, wait) = oneshot::channel();
        self.sender
            .send((Box::new(event), ack))
            .map_err(|_| ProxyError::Internal("the audit writer has stopped".into()))?;
        match wait.await {
            Ok(Ok(event)) => Ok(event),
            Ok(Err(error)) => Err(ProxyError::Internal(format!("audit: {error}"))),
            Err(_) => Err(ProxyError::Internal("the audit writer has stopped".into())),
        }
    }
}
