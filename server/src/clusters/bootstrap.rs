//! kind's sequence inside a node (see [`super::kind`]) run through whichever runtime holds the
//! node: the Docker provider's `docker exec` and the Kubernetes provider's `pods/exec` both hand
//! the same commands to this module, so the two bring clusters up identically.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::kind::{self, KubeVersion, KubeadmInputs, NodeCommand};
use super::{ClusterSpec, Error, ExecOutput, Phase, PhaseSink, Result};

/// Runs a program (no shell) as root in a node and collects its output.
#[async_trait]
pub trait NodeRunner: Send + Sync {
    async fn run(&self, argv: &[String], stdin: Option<Vec<u8>>) -> Result<ExecOutput>;
}

/// Runs a command and turns a non-zero exit into [`Error::CommandFailed`].
pub async fn run_checked(node: &dyn NodeRunner, command: &NodeCommand) -> Result<ExecOutput> {
    let output = node
        .run(&command.argv, command.stdin.clone().map(String::into_bytes))
        .await?;
    if output.exit_code != 0 {
        return Err(Error::CommandFailed {
            command: command.argv.join(" "),
            code: output.exit_code,
            output: output.short_output(),
        });
    }
    Ok(output)
}

/// Where the node is, as the runtime sees it.
pub struct NodeIdentity<'a> {
    /// The node's host name, which kubeadm uses as its name and in the control-plane endpoint.
    pub node_name: &'a str,
    pub node_ip: &'a str,
    pub extra_sans: &'a [String],
    /// A registry the node's containerd asks first for Docker Hub images (`https://mirror:5000`).
    pub registry_mirror: Option<&'a str>,
}

/// Where the node image keeps the lab images it carries (docker/node/images.txt), as
/// `docker save` tarballs imported into containerd before kubeadm starts.
pub const PRELOADED_IMAGES_DIR: &str = "/kind/images/hardlab";

/// Imports every preloaded image tarball into containerd's Kubernetes namespace, so pods with
/// `imagePullPolicy: IfNotPresent` start without a registry. An image without the folder is fine.
fn import_preloaded_images() -> NodeCommand {
    NodeCommand {
        phase: Phase::WritingConfiguration,
        argv: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "for f in {PRELOADED_IMAGES_DIR}/*.tar; do [ -e \"$f\" ] || continue; \
                 ctr --namespace=k8s.io images import --all-platforms --digests \"$f\" >/dev/null || exit 1; done"
            ),
        ],
        stdin: None,
    }
}

/// containerd's hosts file for docker.io that puts the mirror first (kind's containerd reads
/// `/etc/containerd/certs.d`; the file is read at each pull, no restart needed).
pub fn registry_mirror_command(mirror: &str) -> NodeCommand {
    let hosts = format!(
        "server = \"https://registry-1.docker.io\"\n\n[host.{mirror:?}]\n  capabilities = [\"pull\", \"resolve\"]\n"
    );
    NodeCommand {
        phase: Phase::WritingConfiguration,
        argv: vec![
            "sh".into(),
            "-c".into(),
            "mkdir -p /etc/containerd/certs.d/docker.io && cat > /etc/containerd/certs.d/docker.io/hosts.toml".into(),
        ],
        stdin: Some(hosts),
    }
}

/// `kubeadm init` with kind's configuration, then the CNI and the storage class, once the node's
/// systemd is up.
pub async fn kind(
    node: &dyn NodeRunner,
    spec: &ClusterSpec,
    identity: &NodeIdentity<'_>,
    progress: PhaseSink<'_>,
) -> Result<()> {
    progress(Phase::WritingConfiguration);
    let cat = |phase: Phase, path: &str| NodeCommand {
        phase,
        argv: vec!["cat".into(), path.into()],
        stdin: None,
    };
    let version_text = run_checked(node, &cat(Phase::WritingConfiguration, "/kind/version"))
        .await?
        .stdout_text();
    let version = KubeVersion::parse(&version_text).ok_or_else(|| {
        Error::NotReady(format!("/kind/version in the image says {version_text:?}"))
    })?;
    let config = kind::kubeadm_config(&KubeadmInputs {
        version,
        cluster_name: &spec.name,
        node_name: identity.node_name,
        node_ip: identity.node_ip,
        apiserver_flags: &spec.apiserver_flags,
        apiserver_mounts: &spec.apiserver_mounts,
        extra_sans: identity.extra_sans,
    });
    run_checked(node, &import_preloaded_images()).await?;
    if let Some(mirror) = identity.registry_mirror {
        run_checked(node, &registry_mirror_command(mirror)).await?;
    }
    let mut current = Phase::WritingConfiguration;
    for command in kind::init_commands(&config, version) {
        if command.phase != current {
            current = command.phase;
            progress(current);
        }
        run_checked(node, &command).await?;
    }
    progress(Phase::InstallingCni);
    let cni = run_checked(node, &cat(Phase::InstallingCni, kind::CNI_MANIFEST))
        .await?
        .stdout_text();
    let endpoint = format!("{}:6443", identity.node_name);
    run_checked(node, &kind::cni_command(&cni, &endpoint)?).await?;
    progress(Phase::InstallingStorage);
    let storage = node
        .run(
            &cat(Phase::InstallingStorage, kind::STORAGE_MANIFEST).argv,
            None,
        )
        .await?;
    let storage = (storage.exit_code == 0).then(|| storage.stdout_text());
    run_checked(node, &kind::storage_command(storage.as_deref())).await?;
    Ok(())
}

/// Waits until the API server answers `/readyz` from inside the node.
pub async fn wait_for_api_server(node: &dyn NodeRunner, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        let output = node.run(&kind::readyz_command(), None).await?;
        if output.exit_code == 0 {
            return Ok(());
        }
        last = output.short_output();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(Error::NotReady(format!(
        "the API server did not answer /readyz within {} s (last answer: {last})",
        timeout.as_secs()
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    /// Image references a lab script hands to the cluster: `image:` lines of the manifests it
    /// applies and `--image=` arguments of `kubectl run` / `kubectl debug`.
    fn images_named_in(script: &str) -> Vec<String> {
        let mut images = Vec::new();
        for line in script.lines() {
            let line = line.trim();
            if let Some(rest) = line
                .strip_prefix("image:")
                .or_else(|| line.strip_prefix("- image:"))
            {
                images.push(rest.trim().trim_matches('"').to_owned());
            }
            for (index, _) in line.match_indices("--image=") {
                let rest = &line[index + "--image=".len()..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '"')
                    .unwrap_or(rest.len());
                images.push(rest[..end].to_owned());
            }
        }
        images
    }

    /// The preload list: `image` lines, and `unloaded image: reason` lines for images a lab
    /// names that are not meant to run.
    fn preload_list() -> (BTreeSet<String>, BTreeSet<String>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/node/images.txt");
        let text = std::fs::read_to_string(path).unwrap();
        let (mut loaded, mut exempt) = (BTreeSet::new(), BTreeSet::new());
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("unloaded ") {
                let (image, reason) = rest.split_once(": ").unwrap_or((rest, ""));
                assert!(
                    !reason.trim().is_empty(),
                    "{line}: an unloaded image needs a reason"
                );
                exempt.insert(image.trim().to_owned());
            } else {
                loaded.insert(line.to_owned());
            }
        }
        (loaded, exempt)
    }

    #[test]
    fn every_image_the_lab_scripts_run_is_preloaded_in_the_node_image() {
        let labs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../labs");
        let (loaded, exempt) = preload_list();
        let mut named = BTreeSet::new();
        let mut scripts = Vec::new();
        for lab in std::fs::read_dir(&labs).unwrap() {
            let lab = lab.unwrap().path();
            scripts.push(lab.join("setup.sh"));
            if let Ok(solutions) = std::fs::read_dir(lab.join("solutions")) {
                scripts.extend(solutions.map(|entry| entry.unwrap().path()));
            }
        }
        for script in scripts.iter().filter(|path| path.exists()) {
            let text = std::fs::read_to_string(script).unwrap();
            for image in images_named_in(&text) {
                // An untagged image is `:latest`, which the kubelet pulls on every start unless
                // the manifest says IfNotPresent.
                let image = if image
                    .rsplit('/')
                    .next()
                    .is_some_and(|last| last.contains(':'))
                {
                    image
                } else {
                    assert!(
                        text.contains("imagePullPolicy: IfNotPresent"),
                        "{}: {image} has no tag and no imagePullPolicy: IfNotPresent",
                        script.display()
                    );
                    format!("{image}:latest")
                };
                assert!(
                    loaded.contains(&image) || exempt.contains(&image),
                    "{}: {image} is not in docker/node/images.txt",
                    script.display()
                );
                named.insert(image);
            }
        }
        let unused: Vec<_> = loaded.difference(&named).collect();
        assert!(
            unused.is_empty(),
            "preloaded but no lab runs them: {unused:?}"
        );
        assert!(
            loaded.contains("busybox:1.36") && loaded.contains("mysql:8.4"),
            "{loaded:?}"
        );
    }

    #[test]
    fn image_references_are_found_in_manifests_and_kubectl_arguments() {
        let script = "kubectl run x --image=busybox:1.36 --restart=Never\n      - image: \"mysql:8.4\"\n          image: nginx:1.27\n";
        assert_eq!(
            images_named_in(script),
            ["busybox:1.36", "mysql:8.4", "nginx:1.27"]
        );
    }

    #[test]
    fn the_mirror_is_written_as_containerds_hosts_file_for_docker_hub() {
        let command = registry_mirror_command("https://mirror.internal:5000");
        let hosts = command.stdin.unwrap();
        assert!(
            hosts.contains("[host.\"https://mirror.internal:5000\"]"),
            "{hosts}"
        );
        assert!(
            hosts.contains("capabilities = [\"pull\", \"resolve\"]"),
            "{hosts}"
        );
    }
}
