//! Session recording: the bytes of an exec/attach tunnel, each way, with their time offsets, so a
//! session can be replayed later. The proxy tunnels SPDY and WebSocket opaquely, so what is
//! stored is the wire stream; the replay decodes WebSocket channel frames (stdout/stderr) and
//! shows SPDY data frames' payloads.

use std::time::Instant;

use base64::Engine;
use serde::Serialize;
use sqlx::{AnyPool, Row};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::ProxyError;

/// Bytes of one session (both ways) kept by default; the rest is passed on but not stored.
pub const DEFAULT_SESSION_LIMIT_BYTES: usize = 8 * 1024 * 1024;

/// The per-session limit: `HARDLAB_PROXY_RECORDING_MAX_BYTES`, else the default.
pub fn session_limit_from_env() -> Result<usize, ProxyError> {
    match std::env::var("HARDLAB_PROXY_RECORDING_MAX_BYTES") {
        Ok(text) => text.trim().parse().map_err(|_| {
            ProxyError::Config(format!(
                "HARDLAB_PROXY_RECORDING_MAX_BYTES={text:?} is not a number of bytes"
            ))
        }),
        Err(_) => Ok(DEFAULT_SESSION_LIMIT_BYTES),
    }
}

/// The direction stored for the note that a recording stopped at its limit.
const NOTE: &str = "note";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Keystrokes and stdin: client to API server.
    ToCluster,
    /// Terminal output: API server to client.
    ToClient,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::ToCluster => "to_cluster",
            Direction::ToClient => "to_client",
        }
    }
}

enum Message {
    Start {
        id: String,
        tenant: String,
        user: String,
        cluster: String,
        path: String,
        protocol: String,
    },
    Chunk {
        id: String,
        seq: i64,
        offset_ms: i64,
        direction: Direction,
        data: Vec<u8>,
    },
    /// The recording reached its limit: later bytes are not stored.
    Truncated {
        id: String,
        seq: i64,
        offset_ms: i64,
        limit: usize,
    },
    End {
        id: String,
    },
}

/// Writes recordings to the database from one background task.
#[derive(Clone)]
pub struct Recorder {
    sender: Option<mpsc::UnboundedSender<Message>>,
    /// Bytes stored per session at most, both directions together.
    session_limit: usize,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("enabled", &self.sender.is_some())
            .finish()
    }
}

impl Recorder {
    pub fn spawn(pool: AnyPool) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(message) = receiver.recv().await {
                if let Err(error) = store(&pool, message).await {
                    tracing::error!(%error, "could not store part of a session recording");
                }
            }
        });
        Self {
            sender: Some(sender),
            session_limit: DEFAULT_SESSION_LIMIT_BYTES,
        }
    }

    /// Stores at most `bytes` of each session; a long `kubectl exec` that prints without end
    /// would otherwise fill the database (and this recorder's queue).
    pub fn with_session_limit(mut self, bytes: usize) -> Self {
        self.session_limit = bytes;
        self
    }

    /// A recorder that records nothing (a proxy without a database, e.g. in a benchmark).
    pub fn disabled() -> Self {
        Self {
            sender: None,
            session_limit: DEFAULT_SESSION_LIMIT_BYTES,
        }
    }

    pub fn start(
        &self,
        tenant: &super::tenant::Tenant,
        user: &str,
        cluster: &str,
        path: &str,
        protocol: &str,
    ) -> Option<Session> {
        let sender = self.sender.clone()?;
        let id = hex::encode(rand::random::<[u8; 12]>());
        let _ = sender.send(Message::Start {
            id: id.clone(),
            tenant: tenant.as_str().to_owned(),
            user: user.to_owned(),
            cluster: cluster.to_owned(),
            path: path.to_owned(),
            protocol: protocol.to_owned(),
        });
        Some(Session {
            id,
            started: Instant::now(),
            seq: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0)),
            stored: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            limit: self.session_limit,
            sender,
        })
    }
}

async fn store(pool: &AnyPool, message: Message) -> Result<(), sqlx::Error> {
    let now = now_ms();
    match message {
        Message::Start {
            id,
            tenant,
            user,
            cluster,
            path,
            protocol,
        } => {
            sqlx::query(
                "INSERT INTO proxy_sessions (id, tenant, user_name, cluster, request_path, protocol, started_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(tenant)
            .bind(user)
            .bind(cluster)
            .bind(path)
            .bind(protocol)
            .bind(now)
            .execute(pool)
            .await?;
        }
        Message::Chunk {
            id,
            seq,
            offset_ms,
            direction,
            data,
        } => {
            sqlx::query(
                "INSERT INTO proxy_session_chunks (session_id, seq, offset_ms, direction, data_b64) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(seq)
            .bind(offset_ms)
            .bind(direction.as_str())
            .bind(base64::engine::general_purpose::STANDARD.encode(data))
            .execute(pool)
            .await?;
        }
        Message::Truncated {
            id,
            seq,
            offset_ms,
            limit,
        } => {
            let note = format!("\r\n[recording stopped: this session passed {limit} bytes]\r\n");
            sqlx::query(
                "INSERT INTO proxy_session_chunks (session_id, seq, offset_ms, direction, data_b64) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(seq)
            .bind(offset_ms)
            .bind(NOTE)
            .bind(base64::engine::general_purpose::STANDARD.encode(note))
            .execute(pool)
            .await?;
        }
        Message::End { id } => {
            sqlx::query("UPDATE proxy_sessions SET ended_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

/// One recording in progress.
#[derive(Clone)]
pub struct Session {
    id: String,
    started: Instant,
    seq: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// Bytes stored so far (both ways); past `limit` nothing more is.
    stored: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    limit: usize,
    sender: mpsc::UnboundedSender<Message>,
}

impl Session {
    pub fn id(&self) -> &str {
        &self.id
    }

    fn chunk(&self, direction: Direction, data: &[u8]) {
        use std::sync::atomic::Ordering;
        let before = self.stored.fetch_add(data.len(), Ordering::Relaxed);
        if before >= self.limit {
            // Already past the limit, and the note was sent by the chunk that crossed it.
            return;
        }
        let room = self.limit - before;
        let offset_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let kept = &data[..data.len().min(room)];
        if !kept.is_empty() {
            let _ = self.sender.send(Message::Chunk {
                id: self.id.clone(),
                seq: self.seq.fetch_add(1, Ordering::Relaxed),
                offset_ms,
                direction,
                data: kept.to_vec(),
            });
        }
        if data.len() >= room {
            tracing::info!(session = %self.id, limit = self.limit, "a session recording reached its limit; the rest is not stored");
            let _ = self.sender.send(Message::Truncated {
                id: self.id.clone(),
                seq: self.seq.fetch_add(1, Ordering::Relaxed),
                offset_ms,
                limit: self.limit,
            });
        }
    }

    pub fn finish(&self) {
        let _ = self.sender.send(Message::End {
            id: self.id.clone(),
        });
    }
}

/// Copies both ways until either side finishes, handing each chunk to the recording on the way.
pub async fn copy_both_ways<C, U>(
    client: C,
    upstream: U,
    session: Option<Session>,
) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let to_cluster = pump(
        &mut client_read,
        &mut upstream_write,
        session.as_ref(),
        Direction::ToCluster,
    );
    let to_client = pump(
        &mut upstream_read,
        &mut client_write,
        session.as_ref(),
        Direction::ToClient,
    );
    // When the API server ends the stream (the command exited) the session is over; when the
    // client stops sending, the output may still be coming.
    tokio::select! {
        result = to_client => result,
        result = async { to_cluster.await?; std::future::pending::<std::io::Result<()>>().await } => result,
    }
}

async fn pump<R, W>(
    reader: &mut R,
    writer: &mut W,
    session: Option<&Session>,
    direction: Direction,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            writer.shutdown().await?;
            return Ok(());
        }
        writer.write_all(&buffer[..read]).await?;
        writer.flush().await?;
        if let Some(session) = session {
            session.chunk(direction, &buffer[..read]);
        }
    }
}

/// A stored session for replay.
#[derive(Debug, Clone, Serialize)]
pub struct Recording {
    pub id: String,
    pub user: String,
    pub cluster: String,
    pub request_path: String,
    pub protocol: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// The session passed the recording limit: what came after is not stored.
    pub truncated: bool,
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Chunk {
    pub offset_ms: i64,
    /// `to_client`, `to_cluster`, or `note` (the recording stopped at its limit).
    pub direction: &'static str,
    pub data_b64: String,
    /// The terminal text this chunk carries, where the protocol could be decoded.
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    pub id: String,
    pub user: String,
    pub cluster: String,
    pub request_path: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
}

/// The tenant's newest sessions.
pub async fn list_sessions(
    pool: &AnyPool,
    tenant: &super::tenant::Tenant,
) -> Result<Vec<SessionSummary>, ProxyError> {
    let rows = sqlx::query(
        "SELECT id, user_name, cluster, request_path, started_at, ended_at FROM proxy_sessions \
         WHERE tenant = $1 ORDER BY started_at DESC LIMIT 200",
    )
    .bind(tenant.as_str())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(SessionSummary {
                id: row.try_get(0)?,
                user: row.try_get(1)?,
                cluster: row.try_get(2)?,
                request_path: row.try_get(3)?,
                started_at: row.try_get(4)?,
                ended_at: row.try_get(5)?,
            })
        })
        .collect()
}

/// One of the tenant's recordings (another tenant's is not found).
pub async fn load(
    pool: &AnyPool,
    tenant: &super::tenant::Tenant,
    id: &str,
) -> Result<Option<Recording>, ProxyError> {
    let Some(row) = sqlx::query(
        "SELECT id, user_name, cluster, request_path, protocol, started_at, ended_at \
         FROM proxy_sessions WHERE id = $1 AND tenant = $2",
    )
    .bind(id)
    .bind(tenant.as_str())
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let protocol: String = row.try_get(4)?;
    let websocket = protocol.eq_ignore_ascii_case("websocket");
    let chunk_rows = sqlx::query(
        "SELECT offset_ms, direction, data_b64 FROM proxy_session_chunks WHERE session_id = $1 \
         ORDER BY seq",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let mut chunks = Vec::new();
    let mut truncated = false;
    for chunk in &chunk_rows {
        let direction: String = chunk.try_get(1)?;
        let data_b64: String = chunk.try_get(2)?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(&data_b64)
            .unwrap_or_default();
        let to_client = direction == "to_client";
        if direction == NOTE {
            chunks.push(Chunk {
                offset_ms: chunk.try_get(0)?,
                direction: NOTE,
                text: String::from_utf8_lossy(
                    &base64::engine::general_purpose::STANDARD
                        .decode(&data_b64)
                        .unwrap_or_default(),
                )
                .into_owned(),
                data_b64,
            });
            truncated = true;
            continue;
        }
        let text = if to_client && websocket {
            websocket_output_text(&data)
        } else if to_client {
            spdy_data_text(&data)
        } else {
            String::new()
        };
        chunks.push(Chunk {
            offset_ms: chunk.try_get(0)?,
            direction: if to_client { "to_client" } else { "to_cluster" },
            data_b64,
            text,
        });
    }
    Ok(Some(Recording {
        id: row.try_get(0)?,
        user: row.try_get(1)?,
        cluster: row.try_get(2)?,
        request_path: row.try_get(3)?,
        protocol,
        started_at: row.try_get(5)?,
        ended_at: row.try_get(6)?,
        truncated,
        chunks,
    }))
}

/// stdout and stderr from server-to-client WebSocket frames of the `v4/v5.channel.k8s.io`
/// protocols: each binary frame's first byte is the channel (1 stdout, 2 stderr). Frames split
/// across chunks are skipped: replay is best effort, the raw bytes stay stored.
pub fn websocket_output_text(data: &[u8]) -> String {
    let mut text = String::new();
    let mut at = 0;
    while at + 2 <= data.len() {
        let opcode = data[at] & 0x0f;
        let masked = data[at + 1] & 0x80 != 0;
        let mut length = usize::from(data[at + 1] & 0x7f);
        let mut header = 2;
        if length == 126 {
            if at + 4 > data.len() {
                break;
            }
            length = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
            header = 4;
        } else if length == 127 {
            if at + 10 > data.len() {
                break;
            }
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&data[at + 2..at + 10]);
            length = usize::try_from(u64::from_be_bytes(bytes)).unwrap_or(usize::MAX);
            header = 10;
        }
        if masked {
            header += 4;
        }
        let Some(end) = (at + header).checked_add(length) else {
            break;
        };
        if end > data.len() {
            break;
        }
        let payload = &data[at + header..end];
        if opcode == 2 && !masked && matches!(payload.first(), Some(1 | 2)) {
            text.push_str(&String::from_utf8_lossy(&payload[1..]));
        }
        at = end;
    }
    text
}

/// Payloads of SPDY/3 data frames (control bit clear) found in a chunk.
pub fn spdy_data_text(data: &[u8]) -> String {
    let mut text = String::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let control = data[at] & 0x80 != 0;
        let length = usize::from(data[at + 5]) << 16
            | usize::from(data[at + 6]) << 8
            | usize::from(data[at + 7]);
        let end = at + 8 + length;
        if end > data.len() {
            break;
        }
        if !control {
            text.push_str(&String::from_utf8_lossy(&data[at + 8..end]));
        }
        at = end;
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn websocket_output_frames_yield_stdout_and_stderr_text() {
        let mut data = vec![0x82, 6, 1];
        data.extend_from_slice(b"hello");
        data.extend_from_slice(&[0x82, 4, 2]);
        data.extend_from_slice(b"err");
        data.extend_from_slice(&[0x82, 2, 3, b'x']);
        assert_eq!(websocket_output_text(&data), "helloerr");
    }

    #[test]
    fn spdy_data_frames_yield_their_payloads_and_control_frames_are_skipped() {
        let mut data = vec![0x80, 3, 0, 4, 0, 0, 0, 2, 9, 9];
        data.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 3]);
        data.extend_from_slice(b"ls\n");
        assert_eq!(spdy_data_text(&data), "ls\n");
    }

    #[tokio::test]
    async fn a_session_past_its_limit_stores_up_to_the_limit_and_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let pool = crate::db::connect(&url).await.unwrap();
        let recorder = Recorder::spawn(pool.clone()).with_session_limit(10);
        let session = recorder
            .start(
                &crate::proxy::tenant::Tenant::site(),
                "erin",
                "dev",
                "/exec",
                "websocket",
            )
            .unwrap();
        session.chunk(Direction::ToClient, b"123456");
        session.chunk(Direction::ToCluster, b"abcdef");
        session.chunk(Direction::ToClient, b"never stored");
        session.finish();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let recording = loop {
            let found = load(&pool, &crate::proxy::tenant::Tenant::site(), session.id())
                .await
                .unwrap();
            if let Some(recording) = found.filter(|r| r.ended_at.is_some()) {
                break recording;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the recording was never stored"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert!(recording.truncated);
        let stored: Vec<Vec<u8>> = recording
            .chunks
            .iter()
            .filter(|c| c.direction != NOTE)
            .map(|c| {
                base64::engine::general_purpose::STANDARD
                    .decode(&c.data_b64)
                    .unwrap()
            })
            .collect();
        assert_eq!(stored, vec![b"123456".to_vec(), b"abcd".to_vec()]);
        let notes: Vec<&Chunk> = recording
            .chunks
            .iter()
            .filter(|c| c.direction == NOTE)
            .collect();
        assert_eq!(notes.len(), 1, "one note, however much more came");
        assert!(
            notes[0].text.contains("passed 10 bytes"),
            "{}",
            notes[0].text
        );
        pool.close().await;
    }

    #[tokio::test]
    async fn the_tunnel_copies_both_ways_and_ends_when_the_cluster_side_closes() {
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (upstream, mut upstream_peer) = tokio::io::duplex(1024);
        let copying = tokio::spawn(copy_both_ways(client, upstream, None));
        client_peer.write_all(b"stdin").await.unwrap();
        let mut got = [0u8; 5];
        upstream_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"stdin");
        upstream_peer.write_all(b"stdout").await.unwrap();
        let mut got = [0u8; 6];
        client_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"stdout");
        drop(upstream_peer);
        copying.await.unwrap().unwrap();
    }
}
