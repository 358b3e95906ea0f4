//! The TaskRun controller: TaskRuns in, ConfigMaps, Jobs, events, metrics and TaskRun status out.
//!
//! A kube-runtime `Controller` that owns Jobs and ConfigMaps, so a Job's change reconciles its
//! TaskRun at once. Pure parts: [`agents`], [`children`], [`job_phase`], [`status`],
//! [`backoff`]; I/O: [`reconcile`].

pub mod agents;
pub mod backoff;
pub mod children;
pub mod error;
pub mod events;
pub mod job_phase;
pub mod lifecycle;
pub mod metrics;
pub mod operations;
pub mod queue;
pub mod reasons;
pub mod reconcile;
pub mod status;
pub mod written;

pub use agents::{AgentProfile, AgentProfiles};
pub use error::Error;
pub use metrics::ControllerMetrics;

use crate::crd::TaskRun;
use crate::names::{LABEL_MANAGED_BY, MANAGED_BY};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::controller::{Config as RuntimeConfig, Controller};
use kube::runtime::watcher;
use kube::{Api, Client};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The API calls of the controller, for the RBAC check of deploy/. Children are server-side
/// applied (a create when missing); `taskruns/finalizers` update is what clusters with
/// OwnerReferencesPermissionEnforcement demand for `blockOwnerDeletion` owner references.
pub const API_ACCESS: &[crate::rbac::ApiAccess] = &[
    crate::rbac::ApiAccess {
        group: crate::names::GROUP,
        resource: "taskruns",
        verbs: &["list", "watch", "patch"],
    },
    crate::rbac::ApiAccess {
        group: crate::names::GROUP,
        resource: "taskruns/status",
        verbs: &["patch"],
    },
    crate::rbac::ApiAccess {
        group: crate::names::GROUP,
        resource: "taskruns/finalizers",
        verbs: &["update"],
    },
    crate::rbac::ApiAccess {
        group: "batch",
        resource: "jobs",
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
    },
    crate::rbac::ApiAccess {
        group: "",
        resource: "configmaps",
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
    },
    crate::rbac::ApiAccess {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
    },
];

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Only TaskRuns (and children) in this namespace; `None` watches every namespace.
    pub namespace: Option<String>,
    pub agents: AgentProfiles,
    /// Reconciles that may run at once (kube-runtime never runs two for one TaskRun).
    pub concurrency: u16,
    /// Trailing-edge debounce of reconcile triggers per TaskRun: bursts of Job updates become
    /// one reconcile.
    pub debounce: Duration,
    /// First retry delay after a failed reconcile; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
}

impl ControllerConfig {
    pub fn new(namespace: Option<String>, agents: AgentProfiles) -> ControllerConfig {
        ControllerConfig {
            namespace,
            agents,
            concurrency: 16,
            debounce: Duration::from_millis(200),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(300),
        }
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `shutdown` resolves, then lets running reconciles finish.
/// Metrics go to `metrics` (create them with [`ControllerMetrics::register`] on the registry
/// that /metrics serves).
pub async fn run_controller(
    client: Client,
    config: ControllerConfig,
    metrics: Arc<ControllerMetrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = config.namespace.as_deref();
    let task_runs: Api<TaskRun> = api(&client, ns);
    let jobs: Api<Job> = api(&client, ns);
    let config_maps: Api<ConfigMap> = api(&client, ns);
    // Only children this project made are watched; owner references map them to TaskRuns.
    let children = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let ctx = Arc::new(reconcile::Context::new(
        client.clone(),
        config.agents.clone(),
        metrics,
        backoff::Backoffs::new(config.backoff_base, config.backoff_max),
    ));
    tracing::info!(
        namespace = ns.unwrap_or("<all>"),
        agents = ?config.agents.names(),
        concurrency = config.concurrency,
        "starting the TaskRun controller"
    );
    Controller::new(task_runs, watcher::Config::default())
        .owns(jobs, children.clone())
        .owns(config_maps, children)
        .with_config(
            RuntimeConfig::default()
                .concurrency(config.concurrency)
                .debounce(config.debounce),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                // Reconcile errors are logged by error_policy; these are watch/queue errors.
                tracing::debug!("controller: {e}");
            }
        })
        .await;
    tracing::info!("TaskRun controller stopped");
}
