//! Whether a real component is available. Tests skip with a printed reason when one is absent,
//! except under `CI=true`, where CI must not go green by skipping.

use std::path::{Path, PathBuf};

/// A real part a test may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// etcd on PATH and kube-apiserver in `KUBEBUILDER_ASSETS`.
    ControlPlane,
    /// kube-controller-manager in `KUBEBUILDER_ASSETS` (besides the control plane).
    ControllerManager,
    /// etcd and etcdctl on PATH.
    Etcd,
    /// A Docker engine with the test node image (`HARDLAB_TEST_DOCKER=1`).
    Docker,
    /// chromium and chromedriver (`HARDLAB_TEST_CHROMIUM=1`).
    Chromium,
    /// A PostgreSQL server URL in `HARDLAB_TEST_POSTGRES_URL`.
    Postgres,
}

/// `true` when `component` is available. Otherwise prints why and returns `false`, or panics
/// when `CI=true`.
pub fn require(component: Component) -> bool {
    match missing(component) {
        None => true,
        Some(reason) => require_that(false, &format!("{component:?}: {reason}")),
    }
}

/// The general form: `available` or skip with `reason` (panic under `CI=true`).
pub fn require_that(available: bool, reason: &str) -> bool {
    if available {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but a required component is absent: {reason}"
    );
    eprintln!("skipping: {reason}");
    false
}

fn missing(component: Component) -> Option<String> {
    match component {
        Component::ControlPlane => {
            missing_asset("kube-apiserver").or_else(|| missing_on_path("etcd"))
        }
        Component::ControllerManager => {
            missing(Component::ControlPlane).or_else(|| missing_asset("kube-controller-manager"))
        }
        Component::Etcd => missing_on_path("etcd").or_else(|| missing_on_path("etcdctl")),
        Component::Docker => missing_flag("HARDLAB_TEST_DOCKER"),
        Component::Chromium => missing_flag("HARDLAB_TEST_CHROMIUM"),
        Component::Postgres => match std::env::var("HARDLAB_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => None,
            _ => Some("HARDLAB_TEST_POSTGRES_URL is not set (source .ci/env)".to_owned()),
        },
    }
}

fn missing_flag(variable: &str) -> Option<String> {
    match std::env::var(variable).as_deref() {
        Ok("1") => None,
        _ => Some(format!("{variable} is not 1 (source .ci/env)")),
    }
}

fn missing_asset(binary: &str) -> Option<String> {
    match std::env::var("KUBEBUILDER_ASSETS") {
        Err(_) => Some("KUBEBUILDER_ASSETS is not set (source .ci/env)".to_owned()),
        Ok(dir) if !Path::new(&dir).join(binary).is_file() => {
            Some(format!("{dir}/{binary} does not exist"))
        }
        Ok(_) => None,
    }
}

fn missing_on_path(program: &str) -> Option<String> {
    match on_path(program) {
        Some(_) => None,
        None => Some(format!("{program} is not on PATH")),
    }
}

pub(crate) fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

pub(crate) fn asset(binary: &str) -> Option<PathBuf> {
    let path = Path::new(&std::env::var_os("KUBEBUILDER_ASSETS")?).join(binary);
    path.is_file().then_some(path)
}
