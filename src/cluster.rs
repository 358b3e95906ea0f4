//! Which cluster to talk to: flags, environment and which files exist in; a [`ClusterChoice`]
//! (pure) and then a connected client out: in-cluster config, a kubeconfig, or the embedded
//! API server with the local Job runner.
//!
//! The order: `--embedded` forces the embedded server; then an explicit `--kubeconfig`; then
//! the in-cluster config inside a pod; then `KUBECONFIG`; then `~/.kube/config`; and when none
//! of these exists, the embedded server with the local Job runner.

pub use kube_envtest::runner::{JobRunner, RunnerConfig, heartbeat as runner_heartbeat};
use kube_envtest::runner::{RunnerHandle, RunnerMode};
pub use kube_envtest::{ApiServer, ApiServerConfig, EmbeddedError, RunningApiServer};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The command-line flags that choose a cluster; `#[command(flatten)]` them into a subcommand.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Start the embedded API server and local Job runner even when a cluster is configured,
    /// so that nothing touches your current cluster.
    #[arg(long, conflicts_with = "kubeconfig")]
    pub embedded: bool,
    /// Keep the embedded API server's objects in this directory across restarts (default: in
    /// memory).
    #[arg(long, value_name = "DIR")]
    pub embedded_data_dir: Option<PathBuf>,
    /// Where the local Job runner writes each Job's log (default: <data dir>/logs, or a
    /// directory under the system temp dir).
    #[arg(long, value_name = "DIR")]
    pub runner_log_dir: Option<PathBuf>,
    /// Write a kubeconfig for the embedded API server here, for kubectl in another terminal
    /// (default: <embedded data dir>/kubeconfig when --embedded-data-dir is given).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig_out: Option<PathBuf>,
}

/// Everything the choice depends on, gathered from the process's environment by
/// [`ClusterInputs::gather`] or written out in tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInputs {
    pub embedded_flag: bool,
    pub kubeconfig_flag: Option<PathBuf>,
    /// The raw `KUBECONFIG` value: a list of paths separated like `PATH`.
    pub kubeconfig_env: Option<OsString>,
    /// `KUBERNETES_SERVICE_HOST` is set and the service account token file exists.
    pub in_cluster: bool,
    /// `~/.kube/config`, when it exists.
    pub home_kubeconfig: Option<PathBuf>,
}

/// The service account token every pod gets (unless automounting is off).
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

impl ClusterInputs {
    /// Reads the flags, `KUBECONFIG`, `KUBERNETES_SERVICE_HOST`, `HOME` and which files exist.
    pub fn gather(args: &ClusterArgs) -> Self {
        let home_kubeconfig = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| Path::new(&h).join(".kube").join("config"))
            .filter(|p| p.is_file());
        ClusterInputs {
            embedded_flag: args.embedded,
            kubeconfig_flag: args.kubeconfig.clone(),
            kubeconfig_env: std::env::var_os("KUBECONFIG"),
            in_cluster: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty())
                && Path::new(SERVICE_ACCOUNT_TOKEN).is_file(),
            home_kubeconfig,
        }
    }
}

/// Where a kubeconfig came from (printed, so the user knows which file was read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeconfigSource {
    Flag,
    Env,
    Home,
}

/// Why the embedded server is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddedReason {
    /// `--embedded`.
    Forced,
    /// No in-cluster config and no kubeconfig was found.
    NoClusterConfigured,
}

impl EmbeddedReason {
    fn explain(self) -> &'static str {
        match self {
            EmbeddedReason::Forced => "--embedded was given",
            EmbeddedReason::NoClusterConfigured => {
                "no in-cluster config, KUBECONFIG or ~/.kube/config was found"
            }
        }
    }
}

/// The cluster to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterChoice {
    InCluster,
    /// One file, or the `KUBECONFIG` list merged in order.
    Kubeconfig {
        paths: Vec<PathBuf>,
        source: KubeconfigSource,
    },
    Embedded(EmbeddedReason),
}

/// Decides which cluster to use. Pure.
pub fn choose_cluster(inputs: &ClusterInputs) -> ClusterChoice {
    if inputs.embedded_flag {
        return ClusterChoice::Embedded(EmbeddedReason::Forced);
    }
    if let Some(path) = &inputs.kubeconfig_flag {
        return ClusterChoice::Kubeconfig {
            paths: vec![path.clone()],
            source: KubeconfigSource::Flag,
        };
    }
    if inputs.in_cluster {
        return ClusterChoice::InCluster;
    }
    let env_paths: Vec<PathBuf> = inputs
        .kubeconfig_env
        .iter()
        .flat_map(std::env::split_paths)
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    if !env_paths.is_empty() {
        return ClusterChoice::Kubeconfig {
            paths: env_paths,
            source: KubeconfigSource::Env,
        };
    }
    if let Some(path) = &inputs.home_kubeconfig {
        return ClusterChoice::Kubeconfig {
            paths: vec![path.clone()],
            source: KubeconfigSource::Home,
        };
    }
    ClusterChoice::Embedded(EmbeddedReason::NoClusterConfigured)
}

impl fmt::Display for ClusterChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterChoice::InCluster => write!(f, "the in-cluster config (service account)"),
            ClusterChoice::Kubeconfig { paths, source } => {
                let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                let from = match source {
                    KubeconfigSource::Flag => "--kubeconfig",
                    KubeconfigSource::Env => "KUBECONFIG",
                    KubeconfigSource::Home => "the default location",
                };
                write!(f, "kubeconfig {} (from {from})", list.join(":"))
            }
            ClusterChoice::Embedded(reason) => {
                write!(f, "the embedded API server, because {}", reason.explain())
            }
        }
    }
}

/// A failure to reach the chosen cluster; each message names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "reading kubeconfig {path}: {source}; pass --kubeconfig with a valid file, or --embedded \
         to use the embedded API server"
    )]
    ReadKubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "loading {choice}: {source}; check its current-context, or pass --embedded to use the \
         embedded API server"
    )]
    LoadKubeconfig {
        choice: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("loading the in-cluster config: {source}; is the service account token mounted?")]
    InCluster {
        #[source]
        source: kube::config::InClusterError,
    },
    #[error("building a Kubernetes client for {choice}: {source}")]
    BuildClient {
        choice: String,
        #[source]
        source: kube::Error,
    },
    #[error("the embedded API server has no kube config to load; connect() starts it")]
    NoConfigForEmbedded,
    #[error("starting the embedded API server: {0}")]
    StartEmbedded(#[source] EmbeddedError),
    #[error("creating the Job log directory {path}: {source}; pass --runner-log-dir")]
    LogDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A client for the chosen cluster, and the embedded server and runner when they were started
/// (dropping them stops them; [`Connected::shutdown`] stops them cleanly).
pub struct Connected {
    pub client: kube::Client,
    /// Which cluster, for the line printed at start.
    pub description: String,
    pub embedded: Option<EmbeddedCluster>,
}

/// The embedded API server and the local Job runner beside it.
pub struct EmbeddedCluster {
    pub server: RunningApiServer,
    pub runner: RunnerHandle,
    /// The kubeconfig written for it (`--kubeconfig-out`, or next to the data dir).
    pub kubeconfig: Option<PathBuf>,
    /// The Job log directory when this process chose it (no `--runner-log-dir`, no data dir);
    /// removed on shutdown.
    pub scratch_logs: Option<crate::scratch::ScratchDir>,
}

/// How to start the embedded cluster when it is chosen.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedSettings {
    /// Keep the server's objects here; `None` keeps them in memory.
    pub data_dir: Option<PathBuf>,
    /// Where Job logs go; default `<data_dir>/logs`, or `<temp dir>/orchestrator-logs-<pid>`.
    pub log_dir: Option<PathBuf>,
    /// Run Jobs as processes (`None`) or simulate them.
    pub simulated: Option<RunnerMode>,
    /// Where to write the server's kubeconfig; default `<data_dir>/kubeconfig`, none without a
    /// data dir.
    pub kubeconfig_out: Option<PathBuf>,
}

impl EmbeddedSettings {
    pub fn from_args(args: &ClusterArgs) -> Self {
        EmbeddedSettings {
            data_dir: args.embedded_data_dir.clone(),
            log_dir: args.runner_log_dir.clone(),
            simulated: None,
            kubeconfig_out: args.kubeconfig_out.clone(),
        }
    }

    /// Where the kubeconfig goes, if anywhere.
    pub fn kubeconfig_path(&self) -> Option<PathBuf> {
        self.kubeconfig_out
            .clone()
            .or_else(|| self.data_dir.as_ref().map(|d| d.join("kubeconfig")))
    }

    /// The Job log directory, and the guard that removes it when this process chose it.
    pub fn log_dir(&self) -> (PathBuf, Option<crate::scratch::ScratchDir>) {
        match (&self.log_dir, &self.data_dir) {
            (Some(dir), _) => (dir.clone(), None),
            (None, Some(data)) => (data.join("logs"), None),
            (None, None) => {
                let scratch = crate::scratch::ScratchDir::for_this_process("orchestrator-logs");
                (scratch.path().to_path_buf(), Some(scratch))
            }
        }
    }
}

/// How long a clean exit waits for the local Job runner to stop its Jobs.
const RUNNER_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects to the chosen cluster; for the embedded one, starts the API server and the local
/// Job runner and keeps them in [`Connected::embedded`].
pub async fn connect(
    choice: &ClusterChoice,
    settings: &EmbeddedSettings,
) -> Result<Connected, ClusterError> {
    if let ClusterChoice::Embedded(reason) = choice {
        return start_embedded(*reason, settings).await;
    }
    let (config, description) = load_config(choice).await?;
    let client = kube::Client::try_from(config).map_err(|source| ClusterError::BuildClient {
        choice: choice.to_string(),
        source,
    })?;
    Ok(Connected {
        client,
        description,
        embedded: None,
    })
}

async fn start_embedded(
    reason: EmbeddedReason,
    settings: &EmbeddedSettings,
) -> Result<Connected, ClusterError> {
    let server = ApiServer::start(ApiServerConfig {
        data_dir: settings.data_dir.clone(),
        ..ApiServerConfig::default()
    })
    .await
    .map_err(ClusterError::StartEmbedded)?;
    let client = server.client();
    let (log_dir, scratch_logs) = settings.log_dir();
    std::fs::create_dir_all(&log_dir).map_err(|source| ClusterError::LogDir {
        path: log_dir.clone(),
        source,
    })?;
    let mut runner_config = RunnerConfig::new(&log_dir);
    if let Some(mode) = settings.simulated {
        runner_config.mode = mode;
    }
    let runner = JobRunner::start(client.clone(), runner_config);
    let kubeconfig = match settings.kubeconfig_path() {
        Some(path) => {
            server
                .write_kubeconfig(&path)
                .map_err(ClusterError::StartEmbedded)?;
            Some(path)
        }
        None => None,
    };
    let storage = match &settings.data_dir {
        Some(dir) => format!("objects in {}", dir.display()),
        None => "objects in memory".to_string(),
    };
    let description = format!(
        "embedded API server at {} ({storage}; local Job runner, logs in {}), because {}",
        server.url(),
        log_dir.display(),
        reason.explain()
    );
    Ok(Connected {
        client,
        description,
        embedded: Some(EmbeddedCluster {
            server,
            runner,
            kubeconfig,
            scratch_logs,
        }),
    })
}

/// The line that points kubectl at a kubeconfig, as kind and k3d print it.
pub fn export_line(path: &Path) -> String {
    let shown = path
        .canonicalize()
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string();
    format!("export KUBECONFIG={shown}")
}

impl Connected {
    /// `export KUBECONFIG=…` for the embedded server's kubeconfig, when one was written.
    pub fn export_line(&self) -> Option<String> {
        let path = self.embedded.as_ref()?.kubeconfig.as_ref()?;
        Some(export_line(path))
    }

    /// A warning when the server is an embedded one (kube-envtest) without a local Job runner
    /// attached: Jobs would wait forever. `None` on any other cluster.
    pub async fn missing_runner_warning(&self) -> Option<String> {
        if self.embedded.is_some() {
            return None;
        }
        match kube_envtest::runner::runner_attached(&self.client).await {
            Some(false) => Some(
                "this is an embedded API server with no local Job runner attached: no Jobs \
                 will run; start the server with `orchestrator apiserver --runner`, or use \
                 `orchestrator run --embedded`"
                    .to_string(),
            ),
            _ => None,
        }
    }

    /// Stops the local runner (killing running Jobs' processes) and the embedded server.
    pub async fn shutdown(self) {
        if let Some(EmbeddedCluster {
            server,
            runner,
            scratch_logs,
            ..
        }) = self.embedded
        {
            // Bounded: a Job driver that does not stop (a process that ignores its signals, a
            // retry loop) must not keep the process from exiting; the runtime's shutdown ends it.
            if tokio::time::timeout(RUNNER_SHUTDOWN_TIMEOUT, runner.shutdown())
                .await
                .is_err()
            {
                tracing::warn!(
                    "the local Job runner did not stop within {RUNNER_SHUTDOWN_TIMEOUT:?}; leaving it"
                );
            }
            server.shutdown().await;
            drop(scratch_logs);
        }
    }
}

/// Loads the kube config for a kubeconfig or in-cluster choice.
async fn load_config(choice: &ClusterChoice) -> Result<(kube::Config, String), ClusterError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    match choice {
        ClusterChoice::InCluster => {
            let config =
                kube::Config::incluster().map_err(|source| ClusterError::InCluster { source })?;
            let description = format!("in-cluster API server {}", config.cluster_url);
            Ok((config, description))
        }
        ClusterChoice::Kubeconfig { paths, .. } => {
            let mut merged = Kubeconfig::default();
            for path in paths {
                let file =
                    Kubeconfig::read_from(path).map_err(|source| ClusterError::ReadKubeconfig {
                        path: path.clone(),
                        source,
                    })?;
                merged = merged
                    .merge(file)
                    .map_err(|source| ClusterError::ReadKubeconfig {
                        path: path.clone(),
                        source,
                    })?;
            }
            let context = merged.current_context.clone().unwrap_or_default();
            let config =
                kube::Config::from_custom_kubeconfig(merged, &KubeConfigOptions::default())
                    .await
                    .map_err(|source| ClusterError::LoadKubeconfig {
                        choice: choice.to_string(),
                        source,
                    })?;
            let description = format!(
                "API server {} (context {context:?}, {choice})",
                config.cluster_url
            );
            Ok((config, description))
        }
        ClusterChoice::Embedded(_) => Err(ClusterError::NoConfigForEmbedded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn kubeconfig(paths: &[&str], source: KubeconfigSource) -> ClusterChoice {
        ClusterChoice::Kubeconfig {
            paths: paths.iter().map(PathBuf::from).collect(),
            source,
        }
    }

    #[test]
    fn the_cluster_is_chosen_in_the_documented_order() {
        let everything = ClusterInputs {
            embedded_flag: false,
            kubeconfig_flag: Some(PathBuf::from("/flag/config")),
            kubeconfig_env: Some(OsString::from("/env/a:/env/b")),
            in_cluster: true,
            home_kubeconfig: Some(PathBuf::from("/home/me/.kube/config")),
        };
        let cases = [
            (
                "--embedded beats everything",
                ClusterInputs {
                    embedded_flag: true,
                    ..everything.clone()
                },
                ClusterChoice::Embedded(EmbeddedReason::Forced),
            ),
            (
                "--kubeconfig beats the pod's own config",
                everything.clone(),
                kubeconfig(&["/flag/config"], KubeconfigSource::Flag),
            ),
            (
                "inside a pod, the in-cluster config",
                ClusterInputs {
                    kubeconfig_flag: None,
                    ..everything.clone()
                },
                ClusterChoice::InCluster,
            ),
            (
                "KUBECONFIG, every listed file",
                ClusterInputs {
                    kubeconfig_flag: None,
                    in_cluster: false,
                    ..everything.clone()
                },
                kubeconfig(&["/env/a", "/env/b"], KubeconfigSource::Env),
            ),
            (
                "an empty KUBECONFIG is unset",
                ClusterInputs {
                    kubeconfig_flag: None,
                    in_cluster: false,
                    kubeconfig_env: Some(OsString::from("")),
                    ..everything.clone()
                },
                kubeconfig(&["/home/me/.kube/config"], KubeconfigSource::Home),
            ),
            (
                "~/.kube/config",
                ClusterInputs {
                    kubeconfig_flag: None,
                    in_cluster: false,
                    kubeconfig_env: None,
                    ..everything.clone()
                },
                kubeconfig(&["/home/me/.kube/config"], KubeconfigSource::Home),
            ),
            (
                "nothing configured: embedded",
                ClusterInputs::default(),
                ClusterChoice::Embedded(EmbeddedReason::NoClusterConfigured),
            ),
        ];
        for (name, inputs, expected) in cases {
            assert_eq!(choose_cluster(&inputs), expected, "{name}");
        }
    }

    #[test]
    fn the_choice_reads_as_a_sentence() {
        assert_eq!(
            kubeconfig(&["/env/a", "/env/b"], KubeconfigSource::Env).to_string(),
            "kubeconfig /env/a:/env/b (from KUBECONFIG)"
        );
        assert_eq!(
            ClusterChoice::Embedded(EmbeddedReason::Forced).to_string(),
            "the embedded API server, because --embedded was given"
        );
    }
}
