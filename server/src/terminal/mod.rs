//! The web terminal: a WebSocket from the lab page to a login shell (TTY) in the learner's own
//! node, started by the runtime that holds it ([`ShellBackend`]: `docker exec`, or `pods/exec` on
//! a Kubernetes host). The shell outlives the WebSocket for a grace period, keyed by
//! user and cluster, so a reload or a dropped connection reconnects to the same shell (with the
//! recent output replayed). The Docker socket itself is never exposed.
//!
//! Wire protocol: browser → server binary frames are keystrokes, text frames are JSON control
//! messages (`{"type":"resize","cols":120,"rows":30}`); server → browser binary frames are
//! terminal output, text frames are JSON status (`{"type":"closed","reason":"..."}`).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, Notify, broadcast};

pub type Result<T, E = TerminalError> = std::result::Result<T, E>;

/// Why a terminal could not be opened or written to.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    /// One user's shells are capped ([`TerminalConfig::max_per_user`]).
    #[error("you already have {open} terminals open, the limit; close one first")]
    TooMany { open: usize },
    #[error("the shell is gone: {0}")]
    Gone(#[source] std::io::Error),
    /// The runtime that holds the node (a [`ShellBackend`]) could not start the shell.
    #[error("{0}")]
    Start(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// How much recent output a reconnecting browser gets back.
const SCROLLBACK_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct TerminalConfig {
    /// How long a shell stays alive with no browser attached.
    pub grace: Duration,
    /// A shell with no input for this long is closed.
    pub idle_timeout: Duration,
    /// Shells one user may have open at once (one per cluster).
    pub max_per_user: usize,
    /// The login shell.
    pub shell: Vec<String>,
    /// Run the shell in a tmux session in the node (where tmux is installed), named after the
    /// user: a terminal opened again, through this server or another one, attaches to it.
    pub persistent_shells: bool,
    /// The largest WebSocket message (and frame) a browser may send: keystrokes and pastes are
    /// small, and the socket would otherwise buffer whatever a client declares (tungstenite's
    /// default is 64 MiB). A bigger one closes the socket; the shell stays for a reconnect.
    pub max_message_bytes: usize,
}

impl Default for TerminalConfig {
    fn default() -> Self {
        TerminalConfig {
            grace: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(30 * 60),
            max_per_user: 3,
            shell: vec!["bash".to_owned(), "-l".to_owned()],
            persistent_shells: false,
            max_message_bytes: 64 * 1024,
        }
    }
}

pub type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// A shell just started in a node: its keyboard, its screen and its window size.
pub struct SpawnedShell {
    pub input: Input,
    /// Ends when the shell does.
    pub output: BoxStream<'static, Bytes>,
    pub resizer: Box<dyn Resizer>,
}

/// Tells a TTY its new size.
#[async_trait]
pub trait Resizer: Send + Sync {
    async fn resize(&self, cols: u16, rows: u16);
}

/// Starts programs with a TTY in a cluster's node, as root.
#[async_trait]
pub trait ShellBackend: Send + Sync {
    async fn spawn(&self, cluster: &str, argv: Vec<String>) -> Result<SpawnedShell>;
    /// Runs a short command in the node and waits for it (best effort: the node may be gone).
    async fn run_quietly(&self, cluster: &str, argv: Vec<String>);
}

/// One live shell.
pub struct Shell {
    resizer: Box<dyn Resizer>,
    /// In the node: holds the shell's PID, so closing can end its whole session.
    pid_file: String,
    input: Mutex<Input>,
    output: broadcast::Sender<Bytes>,
    scrollback: std::sync::Mutex<VecDeque<u8>>,
    attached: AtomicUsize,
    detached_at: std::sync::Mutex<Option<Instant>>,
    last_input: std::sync::Mutex<Instant>,
    closed: AtomicBool,
    closed_notify: Notify,
    close_reason: std::sync::Mutex<String>,
}

impl Shell {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn close(&self, reason: &str) {
        if let Ok(mut stored) = self.close_reason.lock()
            && stored.is_empty()
        {
            *stored = reason.to_owned();
        }
        self.closed.store(true, Ordering::SeqCst);
        self.closed_notify.notify_waiters();
    }

    fn reason(&self) -> String {
        self.close_reason
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    fn scrollback(&self) -> Vec<u8> {
        self.scrollback
            .lock()
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Sends keystrokes to the shell.
    pub async fn write(&self, bytes: &[u8]) -> Result<()> {
        if let Ok(mut last) = self.last_input.lock() {
            *last = Instant::now();
        }
        let mut input = self.input.lock().await;
        input.write_all(bytes).await.map_err(TerminalError::Gone)?;
        input.flush().await.map_err(TerminalError::Gone)
    }
}

type Key = (String, String);

/// Every open shell of this server.
pub struct TerminalHub {
    backend: Arc<dyn ShellBackend>,
    config: TerminalConfig,
    shells: Mutex<HashMap<Key, Arc<Shell>>>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Control {
    Resize { cols: u16, rows: u16 },
    Ping,
}

impl TerminalHub {
    pub fn new(backend: Arc<dyn ShellBackend>, config: TerminalConfig) -> Arc<Self> {
        Arc::new(TerminalHub {
            backend,
            config,
            shells: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &TerminalConfig {
        &self.config
    }

    /// The user's shell in the cluster's node: the live one, or a new login shell.
    pub async fn open(&self, user: &str, cluster: &str) -> Result<Arc<Shell>> {
        let key = (user.to_owned(), cluster.to_owned());
        let mut shells = self.shells.lock().await;
        shells.retain(|_, shell| !shell.is_closed());
        if let Some(shell) = shells.get(&key) {
            return Ok(Arc::clone(shell));
        }
        let open_for_user = shells.keys().filter(|(owner, _)| owner == user).count();
        if open_for_user >= self.config.max_per_user {
            return Err(TerminalError::TooMany {
                open: open_for_user,
            });
        }
        let shell = self.spawn_shell(user, cluster).await?;
        shells.insert(key, Arc::clone(&shell));
        Ok(shell)
    }

    async fn spawn_shell(&self, user: &str, cluster: &str) -> Result<Arc<Shell>> {
        // No runtime has a call that ends an exec. The wrapper notes the shell's PID first (the
        // `exec` keeps it), so closing can hang up its session, jobs and editors included.
        let pid_file = format!("/run/hardlab-terminal-{}.pid", crate::db::random_id());
        // The tmux server runs in a session of its own, so hanging up the client on close leaves
        // the shell alive for the next attach.
        let start = if self.config.persistent_shells {
            format!(
                "if command -v tmux >/dev/null 2>&1; then exec tmux new-session -A -s {} \"$@\"; else exec \"$@\"; fi",
                tmux_session(user)
            )
        } else {
            "exec \"$@\"".to_owned()
        };
        let mut command = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!(
                "echo $$ > {pid_file} && cd /root 2>/dev/null; export TERM=xterm-256color; {start}"
            ),
            "sh".to_owned(),
        ];
        command.extend(self.config.shell.iter().cloned());
        let SpawnedShell {
            input,
            mut output,
            resizer,
        } = self.backend.spawn(cluster, command).await?;
        let (sender, _) = broadcast::channel(1024);
        let shell = Arc::new(Shell {
            resizer,
            pid_file,
            input: Mutex::new(input),
            output: sender,
            scrollback: std::sync::Mutex::new(VecDeque::new()),
            attached: AtomicUsize::new(0),
            detached_at: std::sync::Mutex::new(Some(Instant::now())),
            last_input: std::sync::Mutex::new(Instant::now()),
            closed: AtomicBool::new(false),
            closed_notify: Notify::new(),
            close_reason: std::sync::Mutex::new(String::new()),
        });
        let reader = Arc::clone(&shell);
        let backend = Arc::clone(&self.backend);
        let cluster = cluster.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    chunk = output.next() => {
                        let Some(bytes) = chunk else { break };
                        if let Ok(mut back) = reader.scrollback.lock() {
                            back.extend(bytes.iter().copied());
                            let excess = back.len().saturating_sub(SCROLLBACK_BYTES);
                            back.drain(..excess);
                        }
                        let _ = reader.output.send(bytes);
                    }
                    _ = reader.closed_notify.notified() => break,
                }
            }
            reader.close("the shell exited");
            // Closing our end of the connection ends the exec's stdin, but a TTY shell running a
            // foreground program (vim, a watch) would not notice: hang up its session.
            let _ = reader.input.lock().await.shutdown().await;
            backend
                .run_quietly(&cluster, hang_up_command(&reader.pid_file))
                .await;
        });
        Ok(shell)
    }

    /// Closes shells whose browser has been gone longer than the grace period, and idle ones.
    pub async fn sweep(&self) {
        let now = Instant::now();
        let shells = self.shells.lock().await;
        for shell in shells.values() {
            let detached_for = shell
                .detached_at
                .lock()
                .ok()
                .and_then(|d| *d)
                .map(|at| now - at);
            let idle_for = shell
                .last_input
                .lock()
                .map(|at| now - *at)
                .unwrap_or_default();
            if shell.attached.load(Ordering::SeqCst) == 0
                && detached_for.is_some_and(|d| d >= self.config.grace)
            {
                shell.close("no browser was attached for the grace period");
            } else if idle_for >= self.config.idle_timeout {
                shell.close("the terminal was idle for too long; reload to open a new one");
            }
        }
    }

    /// Runs `sweep` every few seconds until the hub is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let Some(hub) = weak.upgrade() else { return };
                hub.sweep().await;
                hub.shells
                    .lock()
                    .await
                    .retain(|_, shell| !shell.is_closed());
            }
        })
    }

    /// Open shells: (user, cluster).
    pub async fn open_shells(&self) -> Vec<(String, String)> {
        let shells = self.shells.lock().await;
        shells
            .iter()
            .filter(|(_, s)| !s.is_closed())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Closes every shell of a cluster (it is being removed).
    pub async fn close_cluster(&self, cluster: &str) {
        for ((_, shell_cluster), shell) in self.shells.lock().await.iter() {
            if shell_cluster == cluster {
                shell.close("the cluster was removed");
            }
        }
    }

    async fn resize(&self, shell: &Shell, cols: u16, rows: u16) {
        if cols == 0 || rows == 0 {
            return;
        }
        shell.resizer.resize(cols, rows).await;
    }

    /// Pumps one WebSocket to and from the shell until either side goes away. `on_input` is
    /// called (at most every few seconds) when the learner types, to postpone idle reaping.
    pub async fn serve(
        self: Arc<Self>,
        socket: WebSocket,
        shell: Arc<Shell>,
        on_input: impl Fn() + Send + Sync + 'static,
    ) {
        let (mut sink, mut stream) = socket.split();
        let mut output = shell.output.subscribe();
        shell.attached.fetch_add(1, Ordering::SeqCst);
        let replay = shell.scrollback();
        if !replay.is_empty() && sink.send(Message::Binary(replay.into())).await.is_err() {
            self.detach(&shell);
            return;
        }
        let mut last_touch = Instant::now() - Duration::from_secs(60);
        loop {
            tokio::select! {
                chunk = output.recv() => match chunk {
                    Ok(bytes) => {
                        if sink.send(Message::Binary(bytes)).await.is_err() { break; }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                message = stream.next() => {
                    let Some(Ok(message)) = message else { break };
                    match message {
                        Message::Binary(bytes) => {
                            if shell.write(&bytes).await.is_err() { break; }
                            if last_touch.elapsed() > Duration::from_secs(5) {
                                last_touch = Instant::now();
                                on_input();
                            }
                        }
                        Message::Text(text) => match serde_json::from_str::<Control>(text.as_str()) {
                            Ok(Control::Resize { cols, rows }) => self.resize(&shell, cols, rows).await,
                            Ok(Control::Ping) => {}
                            Err(_) => {
                                // Text that is not a control message is typed input, for simple clients.
                                if shell.write(text.as_bytes()).await.is_err() { break; }
                            }
                        },
                        Message::Close(_) => break,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                _ = shell.closed_notify.notified() => break,
            }
        }
        if shell.is_closed() {
            let status =
                serde_json::json!({"type": "closed", "reason": shell.reason()}).to_string();
            let _ = sink.send(Message::Text(status.into())).await;
            let _ = sink.close().await;
        }
        self.detach(&shell);
    }

    fn detach(&self, shell: &Shell) {
        if shell.attached.fetch_sub(1, Ordering::SeqCst) == 1
            && let Ok(mut at) = shell.detached_at.lock()
        {
            *at = Some(Instant::now());
        }
    }
}

/// The tmux session of a user's shell: letters, digits, `-` and `_` only (it is part of a command).
fn tmux_session(user: &str) -> String {
    let safe: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("hardlab-{safe}")
}

/// Sends SIGHUP to every process of the shell's session in the node, as a terminal hang-up would,
/// then SIGKILL to what ignored it.
fn hang_up_command(pid_file: &str) -> Vec<String> {
    let script = format!(
        "p=$(cat {pid_file} 2>/dev/null) || exit 0; rm -f {pid_file}; \
         pkill -HUP -s \"$p\" 2>/dev/null || kill -HUP \"$p\" 2>/dev/null; sleep 1; \
         pkill -KILL -s \"$p\" 2>/dev/null || kill -KILL \"$p\" 2>/dev/null; exit 0"
    );
    vec!["sh".to_owned(), "-c".to_owned(), script]
}
