//! A node container (kind, minikube's docker driver) read through the Docker Engine API.
//!
//! Both keep the static pod manifests in `/etc/kubernetes/manifests`; kind keeps certificates in
//! `/etc/kubernetes/pki`, minikube in `/var/lib/minikube/certs` (and its API server listens on
//! 8443). The grader follows the paths the manifests name, so both layouts are read the same way.
//!
//! The node is not trusted: whoever has a shell in it is root there. So files are read through
//! the engine's archive endpoint (`GET /containers/{id}/archive`, what `docker cp` uses), which
//! runs nothing inside the container: a `cat` or `sh` the learner replaced cannot change what the
//! grader sees. Symbolic links are followed here, inside the container's tree, and only to
//! regular files; every read has a byte limit and a deadline ([`NodeLimits`]), so `/dev/zero`
//! behind a manifest's name is an error, not the server's memory.

use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use bollard::query_parameters::DownloadFromContainerOptionsBuilder;
use futures::StreamExt;

use super::{CommandOutput, NodeAccess};
use crate::{Error, Result};

/// How much of a node the grader reads at most, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLimits {
    /// The largest file (and the largest folder listing, and a command's output) in bytes.
    pub max_bytes: usize,
    /// How long one read or command may take.
    pub deadline: Duration,
}

impl Default for NodeLimits {
    /// Manifests and certificates are a few KiB; 4 MiB leaves room for a large EncryptionConfiguration.
    fn default() -> Self {
        NodeLimits {
            max_bytes: 4 << 20,
            deadline: Duration::from_secs(20),
        }
    }
}

/// How many symbolic links one read follows, as the kernel's ELOOP guard does.
const MAX_LINKS: usize = 8;
const BLOCK: usize = 512;

pub struct DockerNode {
    docker: Docker,
    container: String,
    limits: NodeLimits,
}

impl std::fmt::Debug for DockerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerNode")
            .field("container", &self.container)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl DockerNode {
    /// Connects to the local Docker engine (`DOCKER_HOST` or the default socket).
    pub fn new(container: impl Into<String>) -> Result<Self> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|error| Error::Node(format!("connecting to Docker: {error}")))?;
        Ok(Self::with_client(docker, container, NodeLimits::default()))
    }

    /// Reads through an engine connection the caller already holds (the server's, negotiated).
    pub fn with_client(docker: Docker, container: impl Into<String>, limits: NodeLimits) -> Self {
        Self {
            docker,
            container: container.into(),
            limits,
        }
    }

    pub fn limits(&self) -> NodeLimits {
        self.limits
    }

    /// Whether the container is a minikube node (its certificates live elsewhere).
    pub async fn is_minikube(&self) -> Result<bool> {
        Ok(self
            .read_file("/var/lib/minikube/certs/ca.crt")
            .await?
            .is_some())
    }

    /// The archive of `path` as the engine sends it, cut off past `budget` bytes.
    async fn archive(&self, path: &str, budget: usize) -> Result<Option<Vec<u8>>> {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut stream = self
            .docker
            .download_from_container(&self.container, Some(options));
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    if bytes.len() + chunk.len() > budget {
                        return Err(Error::Node(format!(
                            "{path} in {} is larger than the limit of {} bytes",
                            self.describe(),
                            self.limits.max_bytes
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    message,
                }) if !message.contains("No such container") => return Ok(None),
                Err(error) => {
                    return Err(Error::Node(format!(
                        "reading {path} in {}: {error}",
                        self.describe()
                    )));
                }
            }
        }
        Ok(Some(bytes))
    }

    async fn read_file_unbounded_in_time(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let mut current = normalize(path);
        for _ in 0..=MAX_LINKS {
            // The header blocks of one entry plus the file: a regular file's size is known from its
            // header, so the budget is the limit plus room for the tar framing.
            let budget = self.limits.max_bytes + 8 * BLOCK;
            let Some(archive) = self.archive(&current, budget).await? else {
                return Ok(None);
            };
            let entry = first_entry(&archive).map_err(|message| {
                Error::Node(format!(
                    "reading {current} in {}: {message}",
                    self.describe()
                ))
            })?;
            match entry.kind {
                EntryKind::File => {
                    if entry.size > self.limits.max_bytes {
                        return Err(Error::Node(format!(
                            "{current} in {} is larger than the limit of {} bytes",
                            self.describe(),
                            self.limits.max_bytes
                        )));
                    }
                    let end = entry.data_offset + entry.size;
                    let data = archive.get(entry.data_offset..end).ok_or_else(|| {
                        Error::Node(format!(
                            "reading {current} in {}: the archive ended early",
                            self.describe()
                        ))
                    })?;
                    return Ok(Some(data.to_vec()));
                }
                EntryKind::Symlink(target) => current = resolve_link(&current, &target),
                EntryKind::Directory => {
                    return Err(Error::Node(format!(
                        "{current} in {} is a folder, not a file",
                        self.describe()
                    )));
                }
                EntryKind::Other(kind) => {
                    return Err(Error::Node(format!(
                        "{current} in {} is not a regular file (it is a {kind}); the grader reads only regular files",
                        self.describe()
                    )));
                }
            }
        }
        Err(Error::Node(format!(
            "{path} in {} goes through more than {MAX_LINKS} symbolic links",
            self.describe()
        )))
    }

    async fn list_dir_unbounded_in_time(&self, path: &str) -> Result<Vec<String>> {
        let mut current = normalize(path);
        for _ in 0..=MAX_LINKS {
            let Some(archive) = self.archive(&current, self.limits.max_bytes).await? else {
                return Ok(Vec::new());
            };
            let entries = all_entries(&archive).map_err(|message| {
                Error::Node(format!(
                    "listing {current} in {}: {message}",
                    self.describe()
                ))
            })?;
            let Some(first) = entries.first() else {
                return Ok(Vec::new());
            };
            match &first.kind {
                EntryKind::Directory => {}
                EntryKind::Symlink(target) => {
                    current = resolve_link(&current, target);
                    continue;
                }
                _ => return Ok(Vec::new()),
            }
            // The archive holds `<folder>/` then `<folder>/<entry>` for everything below it.
            let root = first.name.trim_end_matches('/').to_owned();
            let mut names: Vec<String> = entries[1..]
                .iter()
                .filter_map(|entry| {
                    let rest = entry.name.strip_prefix(&root)?.strip_prefix('/')?;
                    let rest = rest.trim_end_matches('/');
                    (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_owned())
                })
                .collect();
            names.sort();
            names.dedup();
            return Ok(names);
        }
        Err(Error::Node(format!(
            "{path} in {} goes through more than {MAX_LINKS} symbolic links",
            self.describe()
        )))
    }

    async fn run(&self, argv: Vec<String>) -> Result<CommandOutput> {
        let docker_error = |what: &str, error: bollard::errors::Error| {
            Error::Node(format!("docker:{} {what}: {error}", self.container))
        };
        let created = self
            .docker
            .create_exec(
                &self.container,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(argv),
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| docker_error("exec", error))?;
        let mut output = CommandOutput::default();
        if let StartExecResults::Attached {
            output: mut stream, ..
        } = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(|error| docker_error("exec", error))?
        {
            while let Some(chunk) = stream.next().await {
                let message = match chunk.map_err(|error| docker_error("output", error))? {
                    LogOutput::StdErr { message } => {
                        output.stderr.extend_from_slice(&message);
                        message.len()
                    }
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        output.stdout.extend_from_slice(&message);
                        message.len()
                    }
                    LogOutput::StdIn { .. } => 0,
                };
                if message > 0 && output.stdout.len() + output.stderr.len() > self.limits.max_bytes
                {
                    return Err(Error::Node(format!(
                        "the output of a command in {} passed the limit of {} bytes",
                        self.describe(),
                        self.limits.max_bytes
                    )));
                }
            }
        }
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|error| docker_error("exec inspect", error))?;
        output.exit_code = inspected.exit_code.unwrap_or(-1);
        Ok(output)
    }

    fn too_slow(&self, what: &str) -> Error {
        Error::Node(format!(
            "{what} in {} did not finish within the limit of {} s",
            self.describe(),
            self.limits.deadline.as_secs()
        ))
    }
}

#[async_trait]
impl NodeAccess for DockerNode {
    fn describe(&self) -> String {
        format!("docker:{}", self.container)
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        tokio::time::timeout(self.limits.deadline, self.read_file_unbounded_in_time(path))
            .await
            .map_err(|_| self.too_slow(&format!("reading {path}")))?
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        tokio::time::timeout(self.limits.deadline, self.list_dir_unbounded_in_time(path))
            .await
            .map_err(|_| self.too_slow(&format!("listing {path}")))?
    }

    /// Runs a program in the node. What it prints is only as trustworthy as the node: the web
    /// app's Check does not use this (it reads files through the archive endpoint and etcd over
    /// its published port); `hardlab-grade live --node docker:NAME` on a cluster of one's own may.
    async fn exec(&self, argv: &[String]) -> Result<CommandOutput> {
        let what = argv.first().map_or("a command", String::as_str).to_owned();
        tokio::time::timeout(self.limits.deadline, self.run(argv.to_vec()))
            .await
            .map_err(|_| self.too_slow(&format!("`{what}`")))?
    }
}

/// `/a/./b//c/../d` → `/a/b/d`, never above `/`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Where a link at `link_path` pointing at `target` leads, inside the container's tree.
fn resolve_link(link_path: &str, target: &str) -> String {
    if target.starts_with('/') {
        return normalize(target);
    }
    let parent = link_path.rsplit_once('/').map_or("", |(parent, _)| parent);
    normalize(&format!("{parent}/{target}"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EntryKind {
    File,
    Directory,
    Symlink(String),
    /// A device, fifo, hard link or anything else, by name for the message.
    Other(&'static str),
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    kind: EntryKind,
    size: usize,
    data_offset: usize,
}

/// The first real entry of a tar archive (PAX and GNU long-name records applied).
fn first_entry(archive: &[u8]) -> std::result::Result<Entry, String> {
    entries(archive, true)?
        .into_iter()
        .next()
        .ok_or_else(|| "the archive is empty".to_owned())
}

fn all_entries(archive: &[u8]) -> std::result::Result<Vec<Entry>, String> {
    entries(archive, false)
}

/// A ustar/PAX/GNU reader for what Docker's archive endpoint writes; only the fields the grader
/// needs. Sizes come from headers and are checked against the archive's length.
fn entries(archive: &[u8], first_only: bool) -> std::result::Result<Vec<Entry>, String> {
    let mut found = Vec::new();
    let mut offset = 0;
    let mut long_name: Option<String> = None;
    let mut long_link: Option<String> = None;
    while offset + BLOCK <= archive.len() {
        let header = &archive[offset..offset + BLOCK];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let size = octal(&header[124..136]).ok_or("a tar header has an unreadable size")?;
        let data_offset = offset + BLOCK;
        let padded = size
            .checked_add(BLOCK - 1)
            .map(|n| n / BLOCK * BLOCK)
            .ok_or("a tar header has an impossible size")?;
        let next = data_offset
            .checked_add(padded)
            .ok_or("a tar header has an impossible size")?;
        let typeflag = header[156];
        let mut name = long_name.take().unwrap_or_else(|| {
            let prefix = text(&header[345..500]);
            let base = text(&header[0..100]);
            if prefix.is_empty() {
                base
            } else {
                format!("{prefix}/{base}")
            }
        });
        let link = long_link.take().unwrap_or_else(|| text(&header[157..257]));
        let body = || archive.get(data_offset..data_offset + size);
        match typeflag {
            b'x' => {
                let records = body().ok_or("the archive ended inside a PAX header")?;
                for (key, value) in pax_records(records) {
                    match key.as_str() {
                        "path" => long_name = Some(value),
                        "linkpath" => long_link = Some(value),
                        _ => {}
                    }
                }
                offset = next;
                continue;
            }
            b'g' => {
                offset = next;
                continue;
            }
            b'L' | b'K' => {
                let value = body().ok_or("the archive ended inside a long name")?;
                let value = text(value);
                if typeflag == b'L' {
                    long_name = Some(value);
                } else {
                    long_link = Some(value);
                }
                offset = next;
                continue;
            }
            _ => {}
        }
        let kind = match typeflag {
            b'0' | 0 | b'7' => EntryKind::File,
            b'5' => EntryKind::Directory,
            b'2' => EntryKind::Symlink(link),
            b'1' => EntryKind::Other("hard link"),
            b'3' => EntryKind::Other("character device"),
            b'4' => EntryKind::Other("block device"),
            b'6' => EntryKind::Other("named pipe"),
            _ => EntryKind::Other("special file"),
        };
        if kind == EntryKind::Directory && !name.ends_with('/') {
            name.push('/');
        }
        found.push(Entry {
            name,
            kind,
            size,
            data_offset,
        });
        if first_only {
            break;
        }
        offset = next;
    }
    Ok(found)
}

fn text(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// An octal number field, or GNU's base-256 form for large values.
fn octal(field: &[u8]) -> Option<usize> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut value: usize = 0;
        for (index, byte) in field.iter().enumerate() {
            let byte = if index == 0 { byte & 0x7f } else { *byte };
            value = value.checked_mul(256)?.checked_add(usize::from(byte))?;
        }
        return Some(value);
    }
    let digits = text(field);
    let digits = digits.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    usize::from_str_radix(digits, 8).ok()
}

/// `"<len> key=value\n"` records of a PAX extended header.
fn pax_records(bytes: &[u8]) -> Vec<(String, String)> {
    let mut records = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(space) = rest.iter().position(|b| *b == b' ') else {
            break;
        };
        let Some(length) = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
        else {
            break;
        };
        if length <= space || length > rest.len() {
            break;
        }
        let record = &rest[space + 1..length];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(equals) = record.iter().position(|b| *b == b'=') {
            records.push((
                String::from_utf8_lossy(&record[..equals]).into_owned(),
                String::from_utf8_lossy(&record[equals + 1..]).into_owned(),
            ));
        }
        rest = &rest[length..];
    }
    records
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header(name: &str, typeflag: u8, size: usize, link: &str) -> Vec<u8> {
        let mut block = vec![0u8; BLOCK];
        block[..name.len()].copy_from_slice(name.as_bytes());
        let size = format!("{size:011o}\0");
        block[124..136].copy_from_slice(size.as_bytes());
        block[156] = typeflag;
        block[157..157 + link.len()].copy_from_slice(link.as_bytes());
        block[257..263].copy_from_slice(b"ustar\0");
        block
    }

    fn padded(data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        out.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    #[test]
    fn paths_and_links_stay_inside_the_tree() {
        assert_eq!(normalize("/etc//kubernetes/./x/../y"), "/etc/kubernetes/y");
        assert_eq!(normalize("/../../etc"), "/etc");
        assert_eq!(resolve_link("/etc/k/m.yaml", "/dev/zero"), "/dev/zero");
        assert_eq!(resolve_link("/etc/k/m.yaml", "../x.yaml"), "/etc/x.yaml");
        assert_eq!(resolve_link("/m.yaml", "../../x"), "/x");
    }

    #[test]
    fn a_regular_file_a_link_and_a_device_are_told_apart() {
        let mut archive = header("a.yaml", b'0', 5, "");
        archive.extend(padded(b"hello"));
        archive.extend(vec![0u8; 2 * BLOCK]);
        let entry = first_entry(&archive).unwrap();
        assert_eq!(entry.kind, EntryKind::File);
        assert_eq!(
            &archive[entry.data_offset..entry.data_offset + entry.size],
            b"hello"
        );
        let link = header("m.yaml", b'2', 0, "/dev/zero");
        assert_eq!(
            first_entry(&link).unwrap().kind,
            EntryKind::Symlink("/dev/zero".into())
        );
        let device = header("zero", b'3', 0, "");
        assert_eq!(
            first_entry(&device).unwrap().kind,
            EntryKind::Other("character device")
        );
    }

    #[test]
    fn pax_paths_replace_the_short_name_and_folders_list_their_children() {
        let long = format!("manifests/{}", "n".repeat(150));
        let record = format!("path={long}\n");
        let length = record.len() + 4;
        let record = format!("{length} {record}");
        assert_eq!(record.len(), length);
        let mut archive = header("manifests/", b'5', 0, "");
        archive.extend(header("PaxHeader", b'x', record.len(), ""));
        archive.extend(padded(record.as_bytes()));
        archive.extend(header("short", b'0', 0, ""));
        archive.extend(header("manifests/etcd.yaml", b'0', 3, ""));
        archive.extend(padded(b"abc"));
        let entries = all_entries(&archive).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["manifests/", long.as_str(), "manifests/etcd.yaml"]);
    }

    #[test]
    fn sizes_in_base_256_and_broken_headers_are_handled() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[11] = 0x10;
        assert_eq!(octal(&field), Some(16));
        let mut bad = header("x", b'0', 0, "");
        bad[124..136].copy_from_slice(b"zzzzzzzzzzz\0");
        assert!(first_entry(&bad).is_err());
    }
}
