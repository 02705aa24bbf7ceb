//! The `hardlab-grade` command line.
//!
//! Exit codes (the contract CI depends on):
//! - 0: every check that ran passed (warnings and skips allowed);
//! - 1: at least one check reported `fail`, or `error` (its input could not be read, e.g. the
//!   kubeconfig lacks the rights: the cluster was not shown to be hardened), or `warn` with
//!   `--fail-on warn`;
//! - 2: the grader could not grade at all: bad arguments or input files, an unknown check or lab
//!   ID (in a suppression too), a bad configuration or baseline file, an unreachable cluster.
//!
//! Suppressed and baselined findings never fail the run; an expired suppression fails like the
//! finding (see [`crate::pipeline`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::context::{ApiEndpoint, Params};
use crate::inputs::documents;
use crate::pipeline::settings::{Graded, Settings};
use crate::report;
use crate::target::apipod::ApiPodNode;
use crate::target::docker::DockerNode;
use crate::target::etcd::{EtcdHttp, EtcdctlOnNode};
use crate::target::local::LocalNode;
use crate::target::{EtcdAccess, NodeAccess};
use crate::{Context, Error, Result, catalog, run_checks};

const EXIT_CODES: &str = "Exit codes: 0 nothing failed (warnings allowed; suppressed and baselined \
findings never fail); 1 a check failed, or could not read its input (error, e.g. forbidden), or \
warned with --fail-on warn, or a suppression expired; 2 could not grade (bad input, unknown check or \
lab ID, also in a suppression, a bad configuration or baseline file, unreachable cluster). \
Settings are read from .hardlab-grade.yaml in the working directory or a parent (see docs/ci.md).";

#[derive(Debug, Parser)]
#[command(
    name = "hardlab-grade",
    version,
    about = "Grades the hardening of a Kubernetes cluster: etcd and Secrets, network policies, mTLS, access, pod security",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// One variant per subcommand; each is dispatched in [`execute`].
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Grade a running cluster through its API server, and its node and etcd when given.
    Live(LiveArgs),
    /// Grade manifests and control-plane files (files, directories, `-` for stdin).
    Static(StaticArgs),
    /// List the check catalog (`--format text|json|markdown`).
    Checks,
    /// Print the network policy reachability matrix of a cluster or of manifests
    /// (`--format text|json`).
    Matrix(MatrixArgs),
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format (default: text, or `format:` in the configuration file); `markdown` is for
    /// `checks` only; `github` prints GitHub Actions annotations, `gitlab` GitLab Code Quality JSON.
    #[arg(long, global = true, value_enum)]
    pub format: Option<Format>,
    /// Write the report to FILE instead of standard output, or, as FORMAT=FILE (repeatable), also
    /// write that format to FILE, e.g. `--output sarif=hardlab.sarif --output junit=junit.xml`.
    #[arg(long, global = true, value_name = "[FORMAT=]FILE", value_parser = parse_output)]
    pub output: Vec<OutputTarget>,
    /// How long to wait for the cluster (connecting and each request): `10`, `10s`, `500ms`, `1m`.
    #[arg(long, global = true, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// The lowest status that fails the run (exit 1; default: fail); warnings never fail unless
    /// this is `warn`.
    #[arg(long, global = true, value_enum)]
    pub fail_on: Option<FailOnArg>,
}

impl OutputArgs {
    /// The format given on the command line, else text (`checks` and `matrix` read no
    /// configuration file).
    pub fn format(&self) -> Format {
        self.format.unwrap_or(Format::Text)
    }
}

/// Settings for grading in a pipeline: configuration file, suppressions, baseline, report layout.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Read settings from this file instead of looking for .hardlab-grade.yaml in the working
    /// directory and its parents; flags override what it says.
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "no_config")]
    pub config: Option<PathBuf>,
    /// Read no configuration file.
    #[arg(long, global = true)]
    pub no_config: bool,
    /// Accept every finding of this check (repeatable); reported as suppressed, never failing.
    #[arg(long = "skip-check", global = true, value_name = "ID")]
    pub skip_checks: Vec<String>,
    /// Fail only on findings not recorded in this baseline file; recorded ones that are gone are
    /// reported as fixed.
    #[arg(long, global = true, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Record the findings of this run in a baseline file (then they do not fail this run).
    #[arg(long, global = true, value_name = "FILE")]
    pub create_baseline: Option<PathBuf>,
    /// Arrange the text report by check (default) or by file and object.
    #[arg(long, global = true, value_enum)]
    pub group_by: Option<GroupByArg>,
    /// Run the checks that cover items of this framework and summarize by item: `cis` (CIS
    /// Kubernetes Benchmark) or `nsa` (NSA/CISA Kubernetes Hardening Guide).
    #[arg(long, global = true, value_enum)]
    pub framework: Option<FrameworkArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupByArg {
    Check,
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FrameworkArg {
    Cis,
    Nsa,
}

/// Where one report goes: `FILE` (the main format) or `FORMAT=FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputTarget {
    pub format: Option<Format>,
    pub path: PathBuf,
}

/// `FORMAT=FILE` when the part before `=` names a format, else a file name.
pub fn parse_output(spec: &str) -> std::result::Result<OutputTarget, String> {
    if let Some((format, path)) = spec.split_once('=')
        && let Ok(format) = Format::from_str(format, true)
    {
        if path.is_empty() {
            return Err(format!("{spec:?}: no file after {format:?}="));
        }
        return Ok(OutputTarget {
            format: Some(format),
            path: PathBuf::from(path),
        });
    }
    if spec.is_empty() {
        return Err("an empty file name".into());
    }
    Ok(OutputTarget {
        format: None,
        path: PathBuf::from(spec),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Junit,
    Sarif,
    Github,
    Gitlab,
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOnArg {
    Warn,
    Fail,
}

/// Which checks to run; with neither, every hardening check (lab-exercise checks run only with
/// `--lab` or `--check`).
#[derive(Debug, Args)]
pub struct Selection {
    /// Run this lab's checks (repeatable), its exercise checks included: etcd-secrets,
    /// network-policies, pod-mtls, secure-access, pod-security, access-proxy. Without --lab or
    /// --check, only the hardening checks run.
    #[arg(long = "lab", value_name = "ID")]
    pub labs: Vec<String>,
    /// Run this check (repeatable); see `hardlab-grade checks`.
    #[arg(long = "check", value_name = "ID")]
    pub checks: Vec<String>,
    /// The namespace the lab's workloads live in.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// A parameter a lab step sets for its checks (repeatable), e.g. `group=developer-read`.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
}

impl Selection {
    fn params(&self, secret: Option<String>) -> Params {
        Params {
            namespace: self.namespace.clone(),
            secret,
            extra: self.params.iter().cloned().collect(),
        }
    }
}

#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "P")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, value_name = "C")]
    pub context: Option<String>,
    #[command(flatten)]
    pub selection: Selection,
    /// How to read the control-plane node's files: `docker:NAME` (docker exec into a kind or
    /// minikube node container), `local[:DIR]` (this machine; DIR laid out like /etc/kubernetes,
    /// the default), or `api` (exec into the static pods through the API).
    #[arg(long, value_name = "SPEC", value_parser = parse_node)]
    pub node: Option<NodeSpec>,
    /// Read etcd directly at this URL instead of with `etcdctl` on the node (without either,
    /// the checks that read etcd are skipped).
    #[arg(long, value_name = "URL")]
    pub etcd: Option<String>,
    /// CA certificate for --etcd.
    #[arg(long, value_name = "F", requires = "etcd")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate for --etcd.
    #[arg(long, value_name = "F", requires = "etcd")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key for --etcd.
    #[arg(long, value_name = "F", requires = "etcd")]
    pub etcd_key: Option<PathBuf>,
    /// A Secret to read from etcd as NS/NAME; without it the grader writes (and deletes) a canary.
    #[arg(long, value_name = "NS/NAME", value_parser = parse_secret)]
    pub secret: Option<String>,
}

#[derive(Debug, Args)]
pub struct StaticArgs {
    /// Files, directories (read recursively) or `-` for standard input (default: `paths:` in the
    /// configuration file). Helm: `helm template RELEASE CHART | hardlab-grade static -`.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Leave out files and directories below a scanned directory that match this glob
    /// (repeatable; `*`, `**`, `?`; relative to the directory, or any name when it has no `/`),
    /// e.g. `--exclude 'charts/**' --exclude '*.tmpl.yaml'`. Each is listed as not graded.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Also grade this kustomize overlay, rendered with `kubectl kustomize DIR` (repeatable);
    /// findings point at source files where the overlay sets `buildMetadata: [originAnnotations]`.
    #[arg(long, value_name = "DIR")]
    pub kustomize: Vec<PathBuf>,
    #[command(flatten)]
    pub selection: Selection,
}

#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// Manifest files or directories (`-` for stdin); without any, the live cluster.
    #[arg(value_name = "PATH", conflicts_with_all = ["kubeconfig", "context"])]
    pub paths: Vec<PathBuf>,
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "P")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, value_name = "C")]
    pub context: Option<String>,
    /// Only pods in this namespace and connections to or from them (also the namespace of
    /// manifests that name none).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
}

/// Where the control-plane node's files are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeSpec {
    Docker(String),
    Local(PathBuf),
    Api,
}

fn parse_node(spec: &str) -> std::result::Result<NodeSpec, String> {
    match spec.split_once(':') {
        None if spec == "local" => Ok(NodeSpec::Local(PathBuf::from("/etc/kubernetes"))),
        None if spec == "api" => Ok(NodeSpec::Api),
        Some(("local", dir)) if !dir.is_empty() => Ok(NodeSpec::Local(PathBuf::from(dir))),
        Some(("docker", name)) if !name.is_empty() => Ok(NodeSpec::Docker(name.to_owned())),
        _ => Err(format!(
            "{spec:?} is not docker:NAME, local, local:DIR or api"
        )),
    }
}

fn parse_param(spec: &str) -> std::result::Result<(String, String), String> {
    match spec.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{spec:?} is not KEY=VALUE")),
    }
}

fn parse_secret(spec: &str) -> std::result::Result<String, String> {
    match spec.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok(spec.to_owned())
        }
        _ => Err(format!("{spec:?} is not NAMESPACE/NAME")),
    }
}

/// `10`, `10s`, `1.5s`, `500ms`, `2m`.
fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(index) => text.split_at(index),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s or m)")),
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("{text:?}: the timeout must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Runs the CLI and returns the process exit code (0 all passed, 1 findings, 2 could not grade).
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are "errors" to clap with exit code 0; usage errors exit 2.
            let _ = error.print();
            return error.exit_code();
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hardlab-grade: cannot start the async runtime: {error}");
            return 2;
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hardlab-grade: {error}");
            2
        }
    }
}

/// Runs one parsed command line; `Err` means "could not grade" (exit 2).
pub async fn execute(cli: Cli) -> Result<i32> {
    let output = &cli.output;
    match cli.command {
        Command::Checks => {
            let checks = catalog::all();
            let rendered = match output.format() {
                Format::Text => report::catalog::text(&checks),
                Format::Json => report::catalog::json(&checks),
                Format::Markdown => report::catalog::markdown(&checks),
                Format::Junit | Format::Sarif | Format::Github | Format::Gitlab => {
                    return Err(Error::Usage(
                        "`checks` prints text, json or markdown".into(),
                    ));
                }
            };
            write_output(output, &rendered)?;
            Ok(0)
        }
        Command::Live(args) => {
            let settings = Settings::resolve(output, &cli.pipeline, &args.selection, &[])?;
            let (graded, ctx) = grade_live(&args, output, &settings).await?;
            let report = settings.triage(graded, &ctx).await?;
            settings.write_reports(&report)
        }
        Command::Static(args) => {
            let settings = Settings::resolve(output, &cli.pipeline, &args.selection, &args.paths)?;
            let (graded, ctx) = grade_static(&args, &settings).await?;
            let report = settings.triage(graded, &ctx).await?;
            let code = settings.write_reports(&report);
            // The process ends with this run: the corpus's JSON trees are left for the exit to
            // release at once, since freeing them node by node costs more than some checks.
            std::mem::forget(ctx);
            std::mem::forget(report);
            code
        }
        Command::Matrix(args) => {
            let rendered = network_matrix(args, output).await?;
            write_output(output, &rendered)?;
            Ok(0)
        }
    }
}

async fn network_matrix(args: MatrixArgs, output: &OutputArgs) -> Result<String> {
    if !matches!(output.format(), Format::Text | Format::Json) {
        return Err(Error::Usage("`matrix` prints text or json".into()));
    }
    let params = Params {
        namespace: args.namespace.clone(),
        ..Params::default()
    };
    let ctx = if args.paths.is_empty() {
        let cluster = connect(
            args.kubeconfig.as_deref(),
            args.context.as_deref(),
            output.timeout,
        )
        .await?;
        Context::live(Some(cluster.client)).with_params(params)
    } else {
        let read = documents::read_paths(&args.paths)?;
        for skipped in &read.skipped {
            eprintln!("note: not graded: {skipped}");
        }
        Context::from_documents(read.documents).with_params(params)
    };
    let matrix = crate::checks::netpol::matrix(&ctx, args.namespace.as_deref()).await?;
    Ok(match output.format() {
        Format::Json => matrix.to_json(),
        _ => matrix.to_text(),
    })
}

async fn grade_static(args: &StaticArgs, settings: &Settings) -> Result<(Graded, Context)> {
    // Unknown IDs are refused before any file is read.
    let checks = settings.select()?;
    if settings.paths.is_empty() && args.kustomize.is_empty() {
        return Err(Error::Usage(
            "static needs a PATH (a file, a directory or - for stdin), --kustomize DIR, or `paths:` in .hardlab-grade.yaml"
                .into(),
        ));
    }
    let options = documents::ReadOptions {
        exclude: args.exclude.clone(),
    };
    let mut read = documents::read_paths_with(&settings.paths, &options)?;
    for dir in &args.kustomize {
        read.documents
            .extend(crate::pipeline::kustomize::render(dir)?);
    }
    let target = settings
        .paths
        .iter()
        .chain(&args.kustomize)
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if read.documents.is_empty() {
        let mut message = "no Kubernetes objects found (documents need a `kind`)".to_owned();
        if !read.skipped.is_empty() {
            let first: Vec<String> = read
                .skipped
                .iter()
                .take(3)
                .map(ToString::to_string)
                .collect();
            message.push_str(&format!(
                "; {} file(s) or document(s) not graded: {}{}",
                read.skipped.len(),
                first.join("; "),
                if read.skipped.len() > 3 { "; ..." } else { "" }
            ));
        }
        return Err(Error::invalid(target, message));
    }
    let ctx = Context::from_documents(read.documents).with_params(args.selection.params(None));
    let results = run_checks(&ctx, &checks).await;
    let graded = Graded {
        target,
        mode: "static".into(),
        results,
        skipped: read.skipped,
    };
    Ok((graded, ctx))
}

async fn grade_live(
    args: &LiveArgs,
    output: &OutputArgs,
    settings: &Settings,
) -> Result<(Graded, Context)> {
    let checks = settings.select()?;
    let cluster = connect(
        args.kubeconfig.as_deref(),
        args.context.as_deref(),
        output.timeout,
    )
    .await?;
    let mut ctx = Context::live(Some(cluster.client.clone()))
        .with_endpoint(cluster.endpoint.clone())
        .with_params(args.selection.params(args.secret.clone()));
    let node = match &args.node {
        Some(spec) => Some(node_access(spec, &cluster.client)?),
        None => None,
    };
    if let Some(etcd) = etcd_access(args, node.as_ref()).await? {
        ctx = ctx.with_etcd(etcd);
    }
    if let Some(node) = node {
        ctx = ctx.with_node(node);
    }
    let results = run_checks(&ctx, &checks).await;
    let graded = Graded {
        target: cluster.describe,
        mode: "live".into(),
        results,
        skipped: Vec::new(),
    };
    Ok((graded, ctx))
}

fn node_access(spec: &NodeSpec, client: &kube::Client) -> Result<Arc<dyn NodeAccess>> {
    Ok(match spec {
        NodeSpec::Docker(container) => Arc::new(DockerNode::new(container.clone())?),
        NodeSpec::Local(dir) => Arc::new(LocalNode::new(dir)),
        NodeSpec::Api => Arc::new(ApiPodNode::new(client.clone())),
    })
}

/// etcd read directly at `--etcd`, or else with `etcdctl` on the node and the node's own
/// certificates (kubeadm's and minikube's layouts); none without either.
async fn etcd_access(
    args: &LiveArgs,
    node: Option<&Arc<dyn NodeAccess>>,
) -> Result<Option<Arc<dyn EtcdAccess>>> {
    if let Some(url) = &args.etcd {
        let etcd = EtcdHttp::new(
            url,
            args.etcd_ca.as_deref(),
            args.etcd_cert.as_deref(),
            args.etcd_key.as_deref(),
        )?;
        return Ok(Some(Arc::new(etcd)));
    }
    match node {
        Some(node) => Ok(Some(Arc::new(
            EtcdctlOnNode::kubeadm_defaults(Arc::clone(node)).await,
        ))),
        None => Ok(None),
    }
}

/// A client whose API server answered, and how to name it in reports.
struct Cluster {
    client: kube::Client,
    /// Where the API server listens, for the checks' unauthenticated probes.
    endpoint: ApiEndpoint,
    describe: String,
}

/// Loads the kubeconfig and proves the API server answers within the timeout, so an unreachable
/// cluster is "could not grade" (exit 2) rather than a page of `error` results.
async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    timeout: Duration,
) -> Result<Cluster> {
    let (kubeconfig, source) = load_kubeconfig(kubeconfig)?;
    let context_name = context
        .map(str::to_owned)
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_default();
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|error| Error::Usage(format!("kubeconfig {source}: {error}")))?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    let describe = format!(
        "{} (context {context_name:?} from {source})",
        config.cluster_url
    );
    let tried = format!("the API server at {describe}");
    let endpoint = ApiEndpoint::from_config(&config);
    let client = kube::Client::try_from(config).map_err(|error| Error::Unreachable {
        what: tried.clone(),
        message: error.to_string(),
    })?;
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Err(_) => Err(Error::Unreachable {
            what: tried,
            message: format!("no answer within {timeout:?} (GET /version)"),
        }),
        // Reachable, but the credentials were refused: no check could run with them.
        Ok(Err(kube::Error::Api(status))) if status.code == 401 => Err(Error::Unreachable {
            what: tried,
            message: format!("the credentials were refused (401 {})", status.message),
        }),
        // Some clusters hide /version from ordinary users; that still proves the server answers.
        Ok(Err(kube::Error::Api(status))) if status.code == 403 => Ok(Cluster {
            client,
            endpoint,
            describe,
        }),
        Ok(Err(error)) => Err(Error::Unreachable {
            what: tried,
            message: format!("GET /version: {}", with_causes(&error)),
        }),
        Ok(Ok(_)) => Ok(Cluster {
            client,
            endpoint,
            describe,
        }),
    }
}

/// An error and its causes: kube's own message ("client error (Connect)") hides the useful part
/// ("Connection refused") in its sources.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    message
}

/// The kubeconfig from `--kubeconfig`, else `KUBECONFIG` (a path list, merged as kubectl does),
/// else `~/.kube/config`; with a description of where it came from for messages.
fn load_kubeconfig(path: Option<&Path>) -> Result<(Kubeconfig, String)> {
    if let Some(path) = path {
        let source = path.display().to_string();
        let kubeconfig = Kubeconfig::read_from(path)
            .map_err(|error| Error::Usage(format!("kubeconfig {source}: {error}")))?;
        return Ok((kubeconfig, source));
    }
    if let Some(paths) = std::env::var_os("KUBECONFIG").filter(|paths| !paths.is_empty()) {
        let source = format!("KUBECONFIG={}", paths.to_string_lossy());
        return match Kubeconfig::from_env() {
            Ok(Some(kubeconfig)) => Ok((kubeconfig, source)),
            Ok(None) => Err(Error::Usage(format!("{source}: no kubeconfig found"))),
            Err(error) => Err(Error::Usage(format!("{source}: {error}"))),
        };
    }
    let Some(home) = std::env::var_os("HOME").filter(|home| !home.is_empty()) else {
        return Err(Error::Usage(
            "no kubeconfig: pass --kubeconfig or set KUBECONFIG (HOME is not set either)".into(),
        ));
    };
    let path = PathBuf::from(home).join(".kube").join("config");
    if !path.exists() {
        return Err(Error::Usage(format!(
            "no kubeconfig: tried --kubeconfig (not given), KUBECONFIG (not set) and {}",
            path.display()
        )));
    }
    let source = path.display().to_string();
    let kubeconfig = Kubeconfig::read_from(&path)
        .map_err(|error| Error::Usage(format!("kubeconfig {source}: {error}")))?;
    Ok((kubeconfig, source))
}

/// Writes what `checks` and `matrix` print: to the one `--output FILE`, or standard output.
fn write_output(output: &OutputArgs, rendered: &str) -> Result<()> {
    if output.output.iter().any(|target| target.format.is_some()) || output.output.len() > 1 {
        return Err(Error::Usage(
            "`checks` and `matrix` write one file: --output FILE (FORMAT=FILE is for reports)"
                .into(),
        ));
    }
    match output.output.first().map(|target| &target.path) {
        Some(path) => std::fs::write(path, rendered).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        }),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(rendered.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|source| Error::Io {
                    path: PathBuf::from("<stdout>"),
                    source,
                })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn node_specs_parse_as_the_contract_spells_them() {
        assert_eq!(
            parse_node("docker:kind-control-plane"),
            Ok(NodeSpec::Docker("kind-control-plane".into()))
        );
        assert_eq!(
            parse_node("local"),
            Ok(NodeSpec::Local("/etc/kubernetes".into()))
        );
        assert_eq!(
            parse_node("local:/tmp/k"),
            Ok(NodeSpec::Local("/tmp/k".into()))
        );
        assert_eq!(parse_node("api"), Ok(NodeSpec::Api));
        assert!(parse_node("docker:").is_err());
        assert!(parse_node("ssh:host").is_err());
    }

    #[test]
    fn durations_accept_seconds_milliseconds_and_minutes() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn params_are_key_equals_value() {
        assert_eq!(
            parse_param("group=developer-read"),
            Ok(("group".into(), "developer-read".into()))
        );
        assert_eq!(parse_param("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_param("=x").is_err());
        assert!(parse_param("novalue").is_err());
    }

    #[test]
    fn a_secret_must_be_namespace_slash_name() {
        assert!(parse_secret("default/secret1").is_ok());
        assert!(parse_secret("secret1").is_err());
        assert!(parse_secret("a/b/c").is_err());
    }
}
