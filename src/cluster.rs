//! Which cluster to talk to: flags, environment and which files exist in; a [`ClusterChoice`]
//! (pure) and then a connected client out: in-cluster config, a kubeconfig, or the embedded
//! API server with the local Job runner.
//!
//! The order: `--embedded` forces the embedded server; then an explicit `--kubeconfig`; then
//! the in-cluster config inside a pod; then `KUBECONFIG`; then `~/.kube/config`; and when none
//! of these exists, the embedded server with the local Job runner.

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
            ClusterChoice::Embedded(EmbeddedReason::Forced) => {
                write!(f, "the embedded API server (--embedded)")
            }
            ClusterChoice::Embedded(EmbeddedReason::NoClusterConfigured) => write!(
                f,
                "the embedded API server (no in-cluster config, KUBECONFIG or ~/.kube/config found)"
            ),
        }
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
            "the embedded API server (--embedded)"
        );
    }
}
