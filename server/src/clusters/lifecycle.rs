//! A cluster's life, persisted in the database: requested → creating (phase by phase) → ready →
//! expiring → deleted, or failed with a reason the learner can read. Time to live with extend,
//! idle reaping, a cap on concurrent clusters per host, a warm pool per lab, and adoption of
//! running clusters after a server restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use tokio::sync::{Mutex, broadcast};

use super::credentials::{ClusterCredentials, GradingAccess};
use super::{
    Bootstrap, ClusterProvider, ClusterSpec, Error, Ownership, Phase, Result, now_ms, random_name,
    validate_name,
};
use crate::db::seal::Sealer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    Requested,
    Creating,
    Ready,
    Expiring,
    Deleted,
    Failed,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Requested => "requested",
            ClusterState::Creating => "creating",
            ClusterState::Ready => "ready",
            ClusterState::Expiring => "expiring",
            ClusterState::Deleted => "deleted",
            ClusterState::Failed => "failed",
        }
    }
    pub fn parse(text: &str) -> Self {
        match text {
            "requested" => ClusterState::Requested,
            "creating" => ClusterState::Creating,
            "ready" => ClusterState::Ready,
            "expiring" => ClusterState::Expiring,
            "deleted" => ClusterState::Deleted,
            _ => ClusterState::Failed,
        }
    }
    /// Whether the cluster holds (or is about to hold) resources on the host.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            ClusterState::Requested
                | ClusterState::Creating
                | ClusterState::Ready
                | ClusterState::Expiring
        )
    }
}

/// A row of the `clusters` table.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRecord {
    pub id: String,
    pub owner_id: Option<String>,
    pub lab_id: String,
    pub session_id: Option<String>,
    pub image: String,
    pub state: ClusterState,
    pub phase: Option<String>,
    pub failure_reason: Option<String>,
    pub api_port: Option<i64>,
    pub pooled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
    pub last_active_at: i64,
}

impl ClusterRecord {
    fn from_row(row: &AnyRow) -> std::result::Result<Self, sqlx::Error> {
        Ok(ClusterRecord {
            id: row.try_get("id")?,
            owner_id: row.try_get("owner_id")?,
            lab_id: row.try_get("lab_id")?,
            session_id: row.try_get("session_id")?,
            image: row.try_get("image")?,
            state: ClusterState::parse(&row.try_get::<String, _>("state")?),
            phase: row.try_get("phase")?,
            failure_reason: row.try_get("failure_reason")?,
            api_port: row.try_get("api_port")?,
            pooled: row.try_get::<i64, _>("pooled")? != 0,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            expires_at: row.try_get("expires_at")?,
            last_active_at: row.try_get("last_active_at")?,
        })
    }

    /// The event the browser receives for this record.
    pub fn event(&self) -> ClusterEvent {
        let phase = self.phase.as_deref().and_then(Phase::parse);
        ClusterEvent {
            cluster: self.id.clone(),
            state: self.state,
            phase: self.phase.clone(),
            phase_text: phase.map(|p| p.describe().to_owned()),
            reason: self.failure_reason.clone(),
            expires_at: self.expires_at,
        }
    }
}

/// A state change, as sent to the browser with server-sent events.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterEvent {
    pub cluster: String,
    pub state: ClusterState,
    pub phase: Option<String>,
    pub phase_text: Option<String>,
    pub reason: Option<String>,
    pub expires_at: i64,
}

/// What a lab asks of its cluster (from `lab.yaml`'s `cluster:` section).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabClusterRequest {
    pub lab_id: String,
    pub apiserver_flags: BTreeMap<String, String>,
    /// The lab's `setup.sh`, run in the node once the API server answers, so a learner starts
    /// from the state the steps describe (a planted RoleBinding, a root workload, files to scan).
    pub setup: Option<std::path::PathBuf>,
    /// The steps' solution scripts, put in the node for `hardlab-solution NAME`.
    pub solutions: Vec<std::path::PathBuf>,
}

/// How long a lab's setup script may run in a new cluster.
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);
/// Where the setup script is copied in the node before it runs.
const SETUP_PATH: &str = "/root/.hardlab-lab-setup.sh";
/// Where a lab's step solutions go in the node.
const SOLUTIONS_DIR: &str = "/root/hardlab/solutions";
/// A short command for the lab page's "Run in terminal" on a solution, and for learners.
const SOLUTION_RUNNER: &str = "/usr/local/bin/hardlab-solution";
/// Runs a solution the way the lab harness does: in its own bash (its `set -e` cannot end the
/// learner's shell), with the admin kubeconfig and without the ETCDCTL_* variables lab 1 suggests
/// exporting (etcdctl refuses a flag and its variable together). The last line reports the exit code.
const SOLUTION_RUNNER_SCRIPT: &str = r#"#!/bin/sh
# hardlab-solution NAME: runs this lab's solution NAME (from /root/hardlab/solutions) as the lab harness does.
dir=/root/hardlab/solutions
if [ $# -ne 1 ]; then
  echo "usage: hardlab-solution NAME   (one of: $(cd "$dir" 2>/dev/null && ls | sed 's/\.sh$//' | tr '
' ' '))" >&2
  exit 2
fi
script="$dir/${1%.sh}.sh"
if [ ! -f "$script" ]; then
  echo "hardlab-solution: no solution named $1 in $dir" >&2
  exit 2
fi
unset ETCDCTL_ENDPOINTS ETCDCTL_CACERT ETCDCTL_CERT ETCDCTL_KEY
KUBECONFIG=/etc/kubernetes/admin.conf ETCDCTL_API=3 bash -euo pipefail "$script"
code=$?
echo "[script exited with $code]"
exit $code
"#;

#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub image: String,
    /// `None`: from the image's `io.hardlab.node.privileged` label (privileged unless it says false).
    pub privileged: Option<bool>,
    pub ttl: Duration,
    /// A learner's cluster with no terminal activity for this long is removed.
    pub idle_timeout: Duration,
    /// Clusters (any live state, pool included) this host runs at most.
    pub max_clusters: usize,
    pub memory_bytes: Option<i64>,
    /// Processes per node container.
    pub pids_limit: Option<i64>,
    /// CPU per node container, in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// Ready clusters kept per lab in `pool_labs`.
    pub pool_size: usize,
    pub pool_labs: Vec<LabClusterRequest>,
    pub reap_interval: Duration,
    /// How often the node containers of ready clusters are looked at, so one that exits or
    /// disappears turns `failed` within seconds.
    pub watch_interval: Duration,
    /// Live clusters one learner may have at once, over all labs.
    pub max_clusters_per_user: usize,
    /// How long a cluster may live in all, extensions included.
    pub max_lifetime: Duration,
    /// A row still `requested` or `creating` after this long is failed and its resources removed
    /// (a server that died mid-creation, a stuck engine).
    pub creation_timeout: Duration,
    /// Seals the captured credentials in the database.
    pub sealer: Arc<Sealer>,
    /// This server among those sharing the database: the name on the leases it holds. A server
    /// restarted under the same name takes its clusters back at once; another one waits until
    /// their leases run out.
    pub holder: String,
    /// How long a lease lasts unless renewed (renewed every third of it): how long the clusters
    /// of a server that died wait for another one to take them over.
    pub lease: Duration,
}

/// The host's name, the default lease holder (a pod's name in a Deployment).
pub fn default_holder() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "hardlab".to_owned())
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            image: "hardlab/node:v1.36.1".to_owned(),
            privileged: None,
            ttl: Duration::from_secs(60 * 60),
            idle_timeout: Duration::from_secs(30 * 60),
            max_clusters: 20,
            memory_bytes: Some(2 << 30),
            pids_limit: Some(4096),
            nano_cpus: Some(2_000_000_000),
            pool_size: 0,
            pool_labs: Vec::new(),
            reap_interval: Duration::from_secs(15),
            watch_interval: Duration::from_secs(2),
            max_clusters_per_user: 3,
            max_lifetime: Duration::from_secs(4 * 60 * 60),
            creation_timeout: Duration::from_secs(20 * 60),
            sealer: Arc::new(Sealer::ephemeral()),
            holder: default_holder(),
            lease: Duration::from_secs(30),
        }
    }
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The `clusters` columns in `ClusterRecord`'s order; a macro so queries stay `&'static str`.
macro_rules! select_clusters {
    ($rest:literal) => {
        concat!(
            "SELECT id, owner_id, lab_id, session_id, image, state, phase, failure_reason, api_port, pooled, \
             created_at, updated_at, expires_at, last_active_at FROM clusters ",
            $rest
        )
    };
}

/// Owns every cluster of this server.
pub struct ClusterManager {
    db: AnyPool,
    provider: Arc<dyn ClusterProvider>,
    config: ManagerConfig,
    events: broadcast::Sender<ClusterEvent>,
    /// Serialises the capacity check with the insert, so two Starts cannot both take the last slot.
    admission: Mutex<()>,
    image_defaults: Mutex<HashMap<String, (Bootstrap, bool)>>,
    /// Set when the server stops: background rounds (lease renewal among them) end, so the
    /// clusters' leases run out and another server takes them over.
    stopped: std::sync::atomic::AtomicBool,
    /// Told when a learner's cluster is ready (see [`super::routes::Site::lab_ready`]).
    site: std::sync::OnceLock<Arc<dyn super::routes::Site>>,
}

impl ClusterManager {
    pub fn new(
        db: AnyPool,
        provider: Arc<dyn ClusterProvider>,
        config: ManagerConfig,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(256);
        Arc::new(ClusterManager {
            db,
            provider,
            config,
            events,
            admission: Mutex::new(()),
            image_defaults: Mutex::new(HashMap::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            site: std::sync::OnceLock::new(),
        })
    }

    /// The site to tell when a learner's cluster is ready; set once, at start.
    pub fn notify_site(&self, site: Arc<dyn super::routes::Site>) {
        let _ = self.site.set(site);
    }

    /// Tells the site a learner's cluster is ready and writes the files it returns into the node.
    async fn lab_ready(&self, id: &str) -> std::result::Result<(), String> {
        let Some(site) = self.site.get() else {
            return Ok(());
        };
        let Some(record) = self.get(id).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let (Some(owner), false) = (record.owner_id.as_deref(), record.lab_id.is_empty()) else {
            return Ok(());
        };
        let kubeconfig = self.kubeconfig(id).await.map_err(|e| e.to_string())?;
        let files = site.lab_ready(owner, &record.lab_id, &kubeconfig).await?;
        for file in files {
            self.write_into_node(id, &file.path, file.contents, false)
                .await?;
        }
        Ok(())
    }

    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    pub fn provider(&self) -> &Arc<dyn ClusterProvider> {
        &self.provider
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.events.subscribe()
    }

    /// Whether clusters can be created now: the Docker engine answers.
    pub async fn health(&self) -> Result<()> {
        self.provider.health().await
    }

    pub async fn get(&self, id: &str) -> Result<Option<ClusterRecord>> {
        let row = sqlx::query(select_clusters!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        Ok(row.as_ref().map(ClusterRecord::from_row).transpose()?)
    }

    /// Clusters in a live state, newest first.
    pub async fn list_live(&self) -> Result<Vec<ClusterRecord>> {
        let rows = sqlx::query(select_clusters!(
            "WHERE state IN ('requested', 'creating', 'ready', 'expiring') ORDER BY created_at DESC"
        ))
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .iter()
            .map(ClusterRecord::from_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    /// The learner's live cluster for a lab, if any.
    pub async fn find_for(&self, owner: &str, lab: &str) -> Result<Option<ClusterRecord>> {
        let row = sqlx::query(select_clusters!(
            "WHERE owner_id = $1 AND lab_id = $2 \
             AND state IN ('requested', 'creating', 'ready', 'expiring') ORDER BY created_at DESC"
        ))
        .bind(owner)
        .bind(lab)
        .fetch_optional(&self.db)
        .await?;
        Ok(row.as_ref().map(ClusterRecord::from_row).transpose()?)
    }

    async fn set_state(
        &self,
        id: &str,
        state: ClusterState,
        phase: Option<&str>,
        reason: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE clusters SET state = $1, phase = $2, failure_reason = $3, updated_at = $4 WHERE id = $5")
            .bind(state.as_str())
            .bind(phase)
            .bind(reason)
            .bind(now_ms())
            .bind(id)
            .execute(&self.db)
            .await?;
        self.publish(id).await;
        Ok(())
    }

    async fn publish(&self, id: &str) {
        if let Ok(Some(record)) = self.get(id).await {
            let _ = self.events.send(record.event());
        }
    }

    async fn image_defaults(&self, image: &str) -> (Bootstrap, bool) {
        if let Some(known) = self.image_defaults.lock().await.get(image) {
            return *known;
        }
        // An image that cannot be inspected is treated as kind's; creating it reports the real problem.
        let defaults = self
            .provider
            .image_defaults(image)
            .await
            .unwrap_or((Bootstrap::Kind, true));
        self.image_defaults
            .lock()
            .await
            .insert(image.to_owned(), defaults);
        defaults
    }

    async fn spec_for(
        &self,
        record: &ClusterRecord,
        request: &LabClusterRequest,
        privileged: Option<bool>,
    ) -> ClusterSpec {
        let (bootstrap, image_privileged) = self.image_defaults(&record.image).await;
        ClusterSpec {
            name: record.id.clone(),
            image: record.image.clone(),
            bootstrap,
            privileged: privileged
                .or(self.config.privileged)
                .unwrap_or(image_privileged),
            memory_bytes: self.config.memory_bytes,
            pids_limit: self.config.pids_limit,
            nano_cpus: self.config.nano_cpus,
            ownership: Ownership {
                owner: record.owner_id.clone().unwrap_or_default(),
                lab: record.lab_id.clone(),
                session: record.session_id.clone().unwrap_or_default(),
                expiry_ms: record.expires_at,
            },
            apiserver_flags: request.apiserver_flags.clone(),
            apiserver_mounts: Vec::new(),
        }
    }

    async fn live_count(&self) -> Result<usize> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM clusters WHERE state IN ('requested', 'creating', 'ready', 'expiring')",
        )
        .fetch_one(&self.db)
        .await?;
        Ok(usize::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    /// Inserts a `requested` row after checking the host's cap.
    async fn admit(
        &self,
        id: &str,
        owner: Option<&str>,
        lab: &str,
        session: Option<&str>,
        image: &str,
        pooled: bool,
    ) -> Result<ClusterRecord> {
        validate_name(id)?;
        let _guard = self.admission.lock().await;
        let live = self.live_count().await?;
        if live >= self.config.max_clusters {
            return Err(Error::AtCapacity(self.config.max_clusters));
        }
        if self.get(id).await?.is_some_and(|r| r.state.is_live()) {
            return Err(Error::AlreadyExists(id.to_owned()));
        }
        // A name reused after its cluster was deleted or failed starts a fresh row.
        sqlx::query("DELETE FROM clusters WHERE id = $1")
            .bind(id)
            .execute(&self.db)
            .await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO clusters (id, owner_id, lab_id, session_id, image, state, phase, failure_reason, api_port, \
             pooled, created_at, updated_at, expires_at, last_active_at, lease_holder, lease_expires_at) \
             VALUES ($1, $2, $3, $4, $5, 'requested', NULL, NULL, NULL, $6, $7, $7, $8, $7, $9, $10)",
        )
        .bind(id)
        .bind(owner)
        .bind(lab)
        .bind(session)
        .bind(image)
        .bind(i64::from(pooled))
        .bind(now)
        .bind(now + duration_ms(self.config.ttl))
        .bind(&self.config.holder)
        .bind(now + duration_ms(self.config.lease))
        .execute(&self.db)
        .await?;
        self.publish(id).await;
        self.get(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_owned()))
    }

    /// Creates the cluster of an admitted row, recording each phase; on failure the provider has
    /// already removed what it created and the row says why.
    async fn build(
        self: &Arc<Self>,
        record: ClusterRecord,
        request: LabClusterRequest,
        privileged: Option<bool>,
    ) -> Result<ClusterRecord> {
        let id = record.id.clone();
        self.set_state(
            &id,
            ClusterState::Creating,
            Some(Phase::PreparingNode.as_str()),
            None,
        )
        .await?;
        let spec = self.spec_for(&record, &request, privileged).await;
        let (phase_tx, mut phase_rx) = tokio::sync::mpsc::unbounded_channel::<Phase>();
        let recorder = {
            let manager = Arc::clone(self);
            let id = id.clone();
            tokio::spawn(async move {
                while let Some(phase) = phase_rx.recv().await {
                    let _ = manager
                        .set_state(&id, ClusterState::Creating, Some(phase.as_str()), None)
                        .await;
                }
            })
        };
        let progress = move |phase: Phase| {
            let _ = phase_tx.send(phase);
        };
        let created = self.provider.create(&spec, &progress).await;
        drop(progress);
        let _ = recorder.await;
        match created {
            Ok(created) => {
                let sealed = match self.config.sealer.seal(&created.credentials.to_json()) {
                    Ok(sealed) => sealed,
                    Err(error) => {
                        self.provider.delete(&id).await?;
                        let reason =
                            format!("the cluster's credentials could not be sealed: {error}");
                        self.set_state(&id, ClusterState::Failed, None, Some(&reason))
                            .await?;
                        return self
                            .get(&id)
                            .await?
                            .ok_or_else(|| Error::NotFound(id.clone()));
                    }
                };
                sqlx::query(
                    "UPDATE clusters SET api_port = $1, credentials_sealed = $2 WHERE id = $3",
                )
                .bind(created.node.api_port.map(i64::from))
                .bind(sealed)
                .bind(&id)
                .execute(&self.db)
                .await?;
                if request.setup.is_some() || !request.solutions.is_empty() {
                    self.set_state(
                        &id,
                        ClusterState::Creating,
                        Some(Phase::PreparingLab.as_str()),
                        None,
                    )
                    .await?;
                    if let Err(reason) = self.prepare_lab(&id, &request).await {
                        tracing::warn!(cluster = %id, %reason, "lab setup failed");
                        // A cluster without its starting state would grade the wrong thing.
                        self.provider.delete(&id).await?;
                        self.set_state(&id, ClusterState::Failed, None, Some(&reason))
                            .await?;
                        return self
                            .get(&id)
                            .await?
                            .ok_or_else(|| Error::NotFound(id.clone()));
                    }
                }
                if let Err(reason) = self.lab_ready(&id).await {
                    tracing::warn!(cluster = %id, %reason, "the site could not take the cluster");
                    self.provider.delete(&id).await?;
                    self.set_state(&id, ClusterState::Failed, None, Some(&reason))
                        .await?;
                    return self
                        .get(&id)
                        .await?
                        .ok_or_else(|| Error::NotFound(id.clone()));
                }
                // Removed while it was being created: do not resurrect it.
                if self
                    .get(&id)
                    .await?
                    .is_some_and(|r| r.state == ClusterState::Creating)
                {
                    self.set_state(&id, ClusterState::Ready, None, None).await?;
                } else {
                    self.provider.delete(&id).await?;
                }
            }
            Err(error) => {
                tracing::warn!(cluster = %id, %error, "cluster creation failed");
                self.set_state(&id, ClusterState::Failed, None, Some(&error.to_string()))
                    .await?;
            }
        }
        self.get(&id)
            .await?
            .ok_or_else(|| Error::NotFound(id.clone()))
    }

    /// Writes a file into the node (root's, mode from the shell's umask unless `executable`).
    async fn write_into_node(
        &self,
        id: &str,
        path: &str,
        bytes: Vec<u8>,
        executable: bool,
    ) -> std::result::Result<(), String> {
        let chmod = if executable {
            " && chmod 0755 \"$1\""
        } else {
            ""
        };
        let command = [
            "sh".to_owned(),
            "-c".to_owned(),
            format!("mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"{chmod}"),
            "sh".to_owned(),
            path.to_owned(),
        ];
        let written = self
            .provider
            .exec(id, &command, Some(bytes))
            .await
            .map_err(|e| format!("writing {path} into the node failed: {e}"))?;
        if written.exit_code != 0 {
            return Err(format!(
                "writing {path} into the node failed: {}",
                written.short_output()
            ));
        }
        Ok(())
    }

    /// Puts the lab's step solutions and their runner into the node, then runs the lab's setup
    /// script as the harness does; `Err` is the reason a learner reads.
    async fn prepare_lab(
        &self,
        id: &str,
        request: &LabClusterRequest,
    ) -> std::result::Result<(), String> {
        for solution in &request.solutions {
            let Some(name) = solution.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let text = tokio::fs::read(solution).await.map_err(|e| {
                format!(
                    "the lab's solution {} cannot be read: {e}",
                    solution.display()
                )
            })?;
            self.write_into_node(id, &format!("{SOLUTIONS_DIR}/{name}"), text, false)
                .await?;
        }
        if !request.solutions.is_empty() {
            self.write_into_node(id, SOLUTION_RUNNER, SOLUTION_RUNNER_SCRIPT.into(), true)
                .await?;
        }
        let Some(script) = &request.setup else {
            return Ok(());
        };
        let text = tokio::fs::read(script).await.map_err(|e| {
            format!(
                "the lab's setup script {} cannot be read: {e}",
                script.display()
            )
        })?;
        self.write_into_node(id, SETUP_PATH, text, false).await?;
        let run = super::lab_script_command(SETUP_PATH);
        let ran = tokio::time::timeout(SETUP_TIMEOUT, self.provider.exec(id, &run, None))
            .await
            .map_err(|_| {
                format!(
                    "the lab's setup did not finish within {} s",
                    SETUP_TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| format!("running the lab's setup failed: {e}"))?;
        if ran.exit_code != 0 {
            let mut output = ran.stdout_text();
            output.push_str(&String::from_utf8_lossy(&ran.stderr));
            let tail: Vec<&str> = output.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "the lab's setup exited with {}: {}",
                ran.exit_code,
                tail.join(" / ")
            ));
        }
        Ok(())
    }

    /// Creates a named cluster and waits for it (the admin CLI).
    pub async fn create_named(
        self: &Arc<Self>,
        name: &str,
        image: Option<&str>,
        privileged: Option<bool>,
        owner: Option<&str>,
    ) -> Result<ClusterRecord> {
        let image = image.unwrap_or(&self.config.image).to_owned();
        let record = self.admit(name, owner, "", None, &image, false).await?;
        self.build(record, LabClusterRequest::default(), privileged)
            .await
    }

    /// A learner's Start: their existing cluster for the lab, else a warm one from the pool
    /// (instant), else a new one created in the background (watch it with `subscribe`).
    pub async fn start(
        self: &Arc<Self>,
        owner: &str,
        session: Option<&str>,
        request: &LabClusterRequest,
    ) -> Result<ClusterRecord> {
        if let Some(existing) = self.find_for(owner, &request.lab_id).await? {
            return Ok(existing);
        }
        let owned = self.live_count_of(owner).await?;
        if owned >= self.config.max_clusters_per_user {
            return Err(Error::UserAtCapacity(self.config.max_clusters_per_user));
        }
        if let Some(claimed) = self.claim_pooled(owner, session, request).await? {
            let manager = Arc::clone(self);
            tokio::spawn(async move { manager.refill_pool().await });
            return Ok(claimed);
        }
        let record = self
            .admit(
                &random_name(),
                Some(owner),
                &request.lab_id,
                session,
                &self.config.image,
                false,
            )
            .await?;
        let manager = Arc::clone(self);
        let request = request.clone();
        let pending = record.clone();
        tokio::spawn(async move {
            if let Err(error) = manager.build(pending, request, None).await {
                tracing::error!(%error, "recording a cluster's creation failed");
            }
        });
        Ok(record)
    }

    async fn claim_pooled(
        &self,
        owner: &str,
        session: Option<&str>,
        request: &LabClusterRequest,
    ) -> Result<Option<ClusterRecord>> {
        let candidates = sqlx::query(
            "SELECT id FROM clusters WHERE pooled = 1 AND lab_id = $1 AND state = 'ready' ORDER BY created_at",
        )
        .bind(&request.lab_id)
        .fetch_all(&self.db)
        .await?;
        let now = now_ms();
        for row in candidates {
            let id: String = row.try_get("id")?;
            // The `pooled = 1` condition makes the claim atomic: a concurrent Start finds 0 rows.
            let claimed = sqlx::query(
                "UPDATE clusters SET pooled = 0, owner_id = $1, session_id = $2, expires_at = $3, last_active_at = $4, \
                 updated_at = $4 WHERE id = $5 AND pooled = 1 AND state = 'ready'",
            )
            .bind(owner)
            .bind(session)
            .bind(now + duration_ms(self.config.ttl))
            .bind(now)
            .bind(&id)
            .execute(&self.db)
            .await?;
            if claimed.rows_affected() == 1 {
                if let Err(reason) = self.lab_ready(&id).await {
                    // Ready for the lab but not for this learner: never handed over half-done.
                    tracing::warn!(cluster = %id, %reason, "the site could not take a pooled cluster");
                    self.provider.delete(&id).await?;
                    self.set_state(&id, ClusterState::Failed, None, Some(&reason))
                        .await?;
                }
                self.publish(&id).await;
                return self.get(&id).await;
            }
        }
        Ok(None)
    }

    /// Creates pool clusters until every pool lab has `pool_size` ready or on the way.
    pub async fn refill_pool(self: &Arc<Self>) {
        for request in &self.config.pool_labs {
            let row = sqlx::query(
                "SELECT COUNT(*) AS n FROM clusters WHERE pooled = 1 AND lab_id = $1 \
                 AND state IN ('requested', 'creating', 'ready')",
            )
            .bind(&request.lab_id)
            .fetch_one(&self.db)
            .await;
            let have = match row.and_then(|r| r.try_get::<i64, _>("n")) {
                Ok(n) => usize::try_from(n).unwrap_or(0),
                Err(error) => {
                    tracing::error!(%error, "counting the warm pool failed");
                    return;
                }
            };
            for _ in have..self.config.pool_size {
                match self
                    .admit(
                        &random_name(),
                        None,
                        &request.lab_id,
                        None,
                        &self.config.image,
                        true,
                    )
                    .await
                {
                    Ok(record) => {
                        let manager = Arc::clone(self);
                        let request = request.clone();
                        tokio::spawn(async move {
                            let _ = manager.build(record, request, None).await;
                        });
                    }
                    Err(error) => {
                        tracing::info!(%error, lab = %request.lab_id, "not refilling the warm pool now");
                        return;
                    }
                }
            }
        }
    }

    /// Gives the cluster another full TTL from now, up to `max_lifetime` after its creation.
    pub async fn extend(&self, id: &str) -> Result<ClusterRecord> {
        let now = now_ms();
        let record = self
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_owned()))?;
        let ceiling = record.created_at + duration_ms(self.config.max_lifetime);
        let wanted = (now + duration_ms(self.config.ttl)).min(ceiling);
        if wanted <= record.expires_at {
            return Err(Error::ExtendCeiling(
                self.config.max_lifetime.as_secs() / 60,
            ));
        }
        sqlx::query("UPDATE clusters SET expires_at = $1, updated_at = $2 WHERE id = $3 AND state = 'ready'")
            .bind(wanted)
            .bind(now)
            .bind(id)
            .execute(&self.db)
            .await?;
        self.publish(id).await;
        self.get(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_owned()))
    }

    /// Records activity (terminal input), which postpones idle reaping.
    pub async fn touch(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE clusters SET last_active_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Removes the cluster: expiring while its resources go, then deleted.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let Some(record) = self.get(id).await? else {
            // Not ours in the database, but maybe on the host (an orphan): remove it anyway.
            return self.provider.delete(id).await;
        };
        if record.state.is_live() {
            self.set_state(id, ClusterState::Expiring, None, None)
                .await?;
        }
        self.provider.delete(id).await?;
        if record.state != ClusterState::Failed {
            self.set_state(id, ClusterState::Deleted, None, None)
                .await?;
        }
        Ok(())
    }

    /// Removes expired clusters, idle learners' clusters and rows stuck in `requested` or
    /// `creating` past the creation timeout. Returns the removed IDs. One removal that fails is
    /// logged and tried again on the next round; it does not stop the others.
    pub async fn reap_once(&self) -> Result<Vec<String>> {
        let now = now_ms();
        let idle_before = now - duration_ms(self.config.idle_timeout);
        let stuck_before = now - duration_ms(self.config.creation_timeout);
        let rows = sqlx::query(
            "SELECT id, state FROM clusters WHERE (state IN ('ready', 'expiring') \
             AND (expires_at <= $1 OR (pooled = 0 AND last_active_at <= $2))) \
             OR (state IN ('requested', 'creating') AND updated_at <= $3)",
        )
        .bind(now)
        .bind(idle_before)
        .bind(stuck_before)
        .fetch_all(&self.db)
        .await?;
        let mut removed = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            let state = ClusterState::parse(&row.try_get::<String, _>("state")?);
            let outcome = if matches!(state, ClusterState::Requested | ClusterState::Creating) {
                tracing::warn!(cluster = %id, "removing a cluster stuck in {}", state.as_str());
                self.fail_and_remove(
                    &id,
                    "creating this cluster took too long and was stopped; start it again",
                )
                .await
            } else {
                tracing::info!(cluster = %id, "removing an expired or idle cluster");
                self.delete(&id).await
            };
            match outcome {
                Ok(()) => removed.push(id),
                Err(error) => {
                    tracing::warn!(cluster = %id, %error, "could not remove a cluster; trying again next round");
                }
            }
        }
        Ok(removed)
    }

    async fn fail_and_remove(&self, id: &str, reason: &str) -> Result<()> {
        self.set_state(id, ClusterState::Failed, None, Some(reason))
            .await?;
        self.provider.delete(id).await
    }

    /// Turns every ready cluster whose node container stopped or disappeared `failed`, with the
    /// reason, and removes what is left of it. Returns the clusters it failed.
    pub async fn watch_once(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM clusters WHERE state IN ('ready', 'expiring') AND credentials_sealed IS NOT NULL \
             AND (lease_holder = $1 OR lease_holder IS NULL)",
        )
        .bind(&self.config.holder)
        .fetch_all(&self.db)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let nodes: HashMap<String, bool> = self
            .provider
            .list_own()
            .await?
            .into_iter()
            .map(|node| (node.cluster, node.running))
            .collect();
        let mut failed = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            let reason = match nodes.get(&id) {
                Some(true) => continue,
                Some(false) => match self.provider.inspect(&id).await {
                    Ok(node) if node.running => continue,
                    Ok(node) => format!(
                        "the cluster's node container stopped{}; start a new cluster",
                        node.exit_code
                            .map(|code| format!(" (exit code {code})"))
                            .unwrap_or_default()
                    ),
                    Err(Error::NotFound(_)) => {
                        "the cluster's node container disappeared; start a new cluster".to_owned()
                    }
                    Err(error) => {
                        tracing::warn!(cluster = %id, %error, "cannot inspect a node");
                        continue;
                    }
                },
                None => "the cluster's node container disappeared; start a new cluster".to_owned(),
            };
            // Only a row that is still ready is taken over (a Remove in progress owns the rest).
            // What is left of the node goes first, so that `failed` means nothing remains.
            let claimed = sqlx::query(
                "UPDATE clusters SET state = 'expiring', updated_at = $1 WHERE id = $2 AND state = 'ready'",
            )
            .bind(now_ms())
            .bind(&id)
            .execute(&self.db)
            .await?;
            if claimed.rows_affected() == 1 {
                tracing::warn!(cluster = %id, %reason, "a cluster's node is gone");
                if let Err(error) = self.provider.delete(&id).await {
                    tracing::warn!(cluster = %id, %error, "could not remove what is left of a dead cluster; the next start-up removes it");
                }
                self.set_state(&id, ClusterState::Failed, None, Some(&reason))
                    .await?;
                failed.push(id);
            }
        }
        Ok(failed)
    }

    /// The credentials captured when the cluster was created.
    pub async fn credentials(&self, id: &str) -> Result<ClusterCredentials> {
        let row = sqlx::query("SELECT credentials_sealed FROM clusters WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_owned()))?;
        let sealed: Option<String> = row.try_get("credentials_sealed")?;
        let sealed = sealed.ok_or_else(|| {
            Error::Credentials(
                "none were captured (the cluster was made by an older hardlab)".into(),
            )
        })?;
        let opened = self
            .config
            .sealer
            .open(&sealed)
            .map_err(|e| Error::Credentials(e.to_string()))?;
        ClusterCredentials::from_json(&opened)
    }

    /// A kubeconfig for the cluster, written by the server from the captured certificates.
    pub async fn kubeconfig(&self, id: &str) -> Result<String> {
        let credentials = self.credentials(id).await?;
        let address = self.provider.address(id).await?;
        Ok(credentials.kubeconfig_yaml(id, &address))
    }

    /// Everything the grader uses to judge the cluster: a kube client and etcd's gateway built
    /// from the captured certificates and the address the runtime reports, and the node's files
    /// read without running anything in the node.
    pub async fn grading_access(&self, id: &str) -> Result<GradingAccess> {
        let credentials = self.credentials(id).await?;
        let address = self.provider.address(id).await?;
        let (client, endpoint) = credentials.kube_client(id, &address).await?;
        Ok(GradingAccess {
            client,
            endpoint,
            node: self.provider.node_files(id),
            etcd: credentials.etcd(&address)?,
        })
    }

    async fn live_count_of(&self, owner: &str) -> Result<usize> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM clusters WHERE owner_id = $1 \
             AND state IN ('requested', 'creating', 'ready', 'expiring')",
        )
        .bind(owner)
        .fetch_one(&self.db)
        .await?;
        Ok(usize::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    /// Clusters whose rows another live server holds: not this server's to adopt, fail or remove.
    async fn held_elsewhere(&self) -> Result<HashSet<String>> {
        let rows = sqlx::query(
            "SELECT id FROM clusters WHERE state IN ('requested', 'creating', 'ready', 'expiring') \
             AND lease_holder IS NOT NULL AND lease_holder <> $1 AND lease_expires_at > $2",
        )
        .bind(&self.config.holder)
        .bind(now_ms())
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|row| row.try_get::<String, _>("id"))
            .collect::<std::result::Result<_, _>>()
            .map_err(Into::into)
    }

    async fn take_lease(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE clusters SET lease_holder = $1, lease_expires_at = $2 WHERE id = $3")
            .bind(&self.config.holder)
            .bind(now_ms() + duration_ms(self.config.lease))
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Renews the leases of every live cluster this server holds.
    pub async fn renew_leases(&self) -> Result<u64> {
        let renewed = sqlx::query(
            "UPDATE clusters SET lease_expires_at = $1 WHERE lease_holder = $2 AND state IN ('requested', 'creating', 'ready', 'expiring')"
        )
        .bind(now_ms() + duration_ms(self.config.lease))
        .bind(&self.config.holder)
        .execute(&self.db)
        .await?;
        Ok(renewed.rows_affected())
    }

    /// Takes or renews the lease on a piece of work only one server does at a time; `true` while
    /// this server holds it.
    pub async fn lead(&self, work: &str) -> Result<bool> {
        let now = now_ms();
        let until = now + duration_ms(self.config.lease);
        let renewed = sqlx::query(
            "UPDATE leader_leases SET holder = $1, expires_at = $2 \
             WHERE name = $3 AND (holder = $1 OR expires_at <= $4)",
        )
        .bind(&self.config.holder)
        .bind(until)
        .bind(work)
        .bind(now)
        .execute(&self.db)
        .await?;
        if renewed.rows_affected() == 1 {
            return Ok(true);
        }
        let inserted = sqlx::query(
            "INSERT INTO leader_leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(work)
        .bind(&self.config.holder)
        .bind(until)
        .execute(&self.db)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Clusters of a server that stopped renewing its leases: ready ones are taken over (this
    /// server watches and serves them from now on), ones it was still creating are failed and
    /// removed, as after a restart. Returns (taken over, failed).
    pub async fn take_over_expired(&self) -> Result<(Vec<String>, Vec<String>)> {
        let rows = sqlx::query(
            "SELECT id, state FROM clusters WHERE state IN ('requested', 'creating', 'ready', 'expiring') \
             AND lease_holder IS NOT NULL AND lease_holder <> $1 AND lease_expires_at <= $2",
        )
        .bind(&self.config.holder)
        .bind(now_ms())
        .fetch_all(&self.db)
        .await?;
        let (mut taken, mut failed) = (Vec::new(), Vec::new());
        for row in rows {
            let id: String = row.try_get("id")?;
            let state = ClusterState::parse(&row.try_get::<String, _>("state")?);
            // Claimed with the expiry it was seen with, so two servers cannot both take it.
            let claimed = sqlx::query(
                "UPDATE clusters SET lease_holder = $1, lease_expires_at = $2 \
                 WHERE id = $3 AND lease_holder <> $1 AND lease_expires_at <= $4",
            )
            .bind(&self.config.holder)
            .bind(now_ms() + duration_ms(self.config.lease))
            .bind(&id)
            .bind(now_ms())
            .execute(&self.db)
            .await?;
            if claimed.rows_affected() != 1 {
                continue;
            }
            if matches!(state, ClusterState::Ready | ClusterState::Expiring) {
                tracing::info!(cluster = %id, "took over a cluster whose server stopped renewing its lease");
                taken.push(id);
            } else {
                tracing::warn!(cluster = %id, "the server creating this cluster stopped; removing it");
                self.fail_and_remove(
                    &id,
                    "the server creating this cluster stopped before it was ready; start it again",
                )
                .await?;
                failed.push(id);
            }
        }
        Ok((taken, failed))
    }

    /// After a restart: running clusters with a live, unexpired row are adopted; expired ones,
    /// ones whose creation was cut short and anything labelled without a row are removed.
    /// Clusters another live server holds (its lease is current) are left alone.
    pub async fn adopt(&self) -> Result<AdoptionReport> {
        let now = now_ms();
        let mut report = AdoptionReport::default();
        let nodes = self.provider.list_own().await?;
        let elsewhere = self.held_elsewhere().await?;
        let mut keep = elsewhere.clone();
        for node in &nodes {
            if elsewhere.contains(&node.cluster) {
                continue;
            }
            let record = self.get(&node.cluster).await?;
            match record {
                Some(record)
                    if record.state == ClusterState::Ready
                        && record.expires_at > now
                        && node.running =>
                {
                    sqlx::query("UPDATE clusters SET api_port = $1, updated_at = $2 WHERE id = $3")
                        .bind(node.api_port.map(i64::from))
                        .bind(now)
                        .bind(&node.cluster)
                        .execute(&self.db)
                        .await?;
                    self.take_lease(&node.cluster).await?;
                    keep.insert(node.cluster.clone());
                    report.adopted.push(node.cluster.clone());
                }
                Some(record) if record.state.is_live() && record.state != ClusterState::Ready => {
                    self.set_state(
                        &node.cluster,
                        ClusterState::Failed,
                        None,
                        Some("the server restarted while this cluster was being created; start it again"),
                    )
                    .await?;
                }
                Some(record) if record.state.is_live() => {
                    self.set_state(&node.cluster, ClusterState::Deleted, None, None)
                        .await?;
                }
                _ => {}
            }
        }
        report.removed = self.provider.remove_strays(&keep).await?;
        // Rows that claim a cluster the host no longer has.
        for record in self.list_live().await? {
            if !keep.contains(&record.id) {
                let reason = "the cluster's node container was gone after a server restart";
                self.set_state(&record.id, ClusterState::Failed, None, Some(reason))
                    .await?;
            }
        }
        Ok(report)
    }

    /// Reaps and refills the pool every `reap_interval`, and watches the nodes every
    /// `watch_interval`, until the manager is dropped.
    pub fn spawn_background(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.spawn_every(self.config.lease / 3, |manager| async move {
            if let Err(error) = manager.renew_leases().await {
                tracing::warn!(%error, "renewing cluster leases failed");
            }
        });
        self.spawn_every(self.config.watch_interval, |manager| async move {
            if let Err(error) = manager.watch_once().await {
                tracing::debug!(%error, "watching the nodes failed");
            }
        });
        self.spawn_every(self.config.reap_interval, |manager| async move {
            // One server at a time reaps, takes over what a stopped server held, and fills the
            // pool; the others only renew and watch their own clusters.
            match manager.lead("reaper").await {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(%error, "could not ask for the reaper's lease");
                    return;
                }
            }
            if let Err(error) = manager.take_over_expired().await {
                tracing::warn!(%error, "taking over expired cluster leases failed");
            }
            if let Err(error) = manager.reap_once().await {
                tracing::warn!(%error, "reaping clusters failed");
            }
            manager.refill_pool().await;
        })
    }

    /// Ends every background round (after the one running): what a stopping server does, and
    /// what a crashed one amounts to. Leases are not given back; they run out.
    pub fn stop_background(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Runs `round` every `interval` on a task that holds the manager only while a round runs,
    /// so dropping the manager (or [`Self::stop_background`]) ends the task.
    fn spawn_every<F, Fut>(
        self: &Arc<Self>,
        interval: Duration,
        round: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(manager) = weak.upgrade() else {
                    return;
                };
                if manager.stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                round(manager).await;
                tokio::time::sleep(interval).await;
            }
        })
    }
}

/// What `adopt` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AdoptionReport {
    pub adopted: Vec<String>,
    pub removed: Vec<String>,
}
