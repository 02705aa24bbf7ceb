//! Child processes that die with the test: each runs under `sh`, which waits on our end of a
//! pipe and kills the process when the pipe closes. A drop closes it, and so does the test
//! process exiting, which matters for the shared control plane (a static, never dropped).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{Error, Result};

pub(crate) struct Supervised {
    child: Child,
    pub(crate) log: PathBuf,
}

// `HARDLAB_REMOVE_AFTER`: a directory to delete once the process is gone, so the shared control
// plane's temporary directory does not outlive the test binary.
const SUPERVISOR: &str = "\"$@\" & pid=$!; read _; kill $pid 2>/dev/null; wait $pid; \
    if [ -n \"$HARDLAB_REMOVE_AFTER\" ]; then rm -rf \"$HARDLAB_REMOVE_AFTER\"; fi";

impl Supervised {
    pub(crate) fn spawn(program: &Path, args: &[String], log: &Path) -> Result<Self> {
        Self::spawn_removing(program, args, log, None)
    }

    /// Like `spawn`, and deletes `remove_after` when the process has stopped.
    pub(crate) fn spawn_removing(
        program: &Path,
        args: &[String],
        log: &Path,
        remove_after: Option<&Path>,
    ) -> Result<Self> {
        let io = |source| Error::Io {
            path: log.to_path_buf(),
            source,
        };
        let stdout = File::create(log).map_err(io)?;
        let stderr = stdout.try_clone().map_err(io)?;
        let child = Command::new("sh")
            .args(["-c", SUPERVISOR, "sh"])
            .arg(program)
            .args(args)
            .env(
                "HARDLAB_REMOVE_AFTER",
                remove_after.unwrap_or(Path::new("")),
            )
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| Error::Io {
                path: program.to_path_buf(),
                source,
            })?;
        Ok(Self {
            child,
            log: log.to_path_buf(),
        })
    }

    /// Whether the process has exited (it failed to start, or crashed).
    pub(crate) fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.reverse();
        tail.join("\n")
    }

    /// Stops the process and waits for it (SIGTERM through the supervisor).
    pub(crate) fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}
