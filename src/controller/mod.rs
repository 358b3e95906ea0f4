//! The TaskRun controller: TaskRuns in, ConfigMaps, Jobs, events, metrics and TaskRun status out.
//!
//! A kube-runtime `Controller` that owns Jobs and ConfigMaps, so a Job's change reconciles its
//! TaskRun at once. Every watch feeds a store the reconciler reads ([`caches`]). Pure parts:
//! [`agents`], [`children`], [`job_phase`], [`status`], [`backoff`]; I/O: [`reconcile`].

pub mod agents;
pub mod backoff;
pub mod caches;
pub mod children;
pub mod error;
pub mod events;
pub mod job_events;
pub mod job_phase;
pub mod lifecycle;
pub mod metrics;
pub mod operations;
pub mod profiles;
pub mod queue;
pub mod queue_cache;
pub mod reasons;
pub mod reconcile;
pub mod slots;
pub mod starts_first;
pub mod status;
pub mod written;

pub use agents::{AgentProfile, AgentProfiles};
pub use error::Error;
pub use metrics::ControllerMetrics;

use crate::crd::TaskRun;
use crate::names::{LABEL_MANAGED_BY, MANAGED_BY};
use crate::outage_log::{OutageLog, WatchRequests};
use crate::watch_backoff::watch_backoff;
use caches::{
    CachedJob, CachedPod, Caches, OwnedStoreWriter, owned_store, slim_config_map, slim_job,
    slim_pod,
};
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PartialObjectMeta;
use kube::runtime::controller::{Config as RuntimeConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The API calls of the controller, for the RBAC check of deploy/. Children are created (a GET
/// only when the create answers 409), a ConfigMap whose content changed is server-side applied,
/// a Job is patched for `spec.suspend` and deleted on cancel; a TaskRun's done-with cancel
/// annotation is removed by a retry;
/// Pods are watched for the caches, Warning events about Jobs for why a Job has no Pod
/// ([`job_events`]); `taskruns/finalizers` update is what clusters with
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
        group: "",
        resource: "pods",
        verbs: &["list", "watch"],
    },
    crate::rbac::ApiAccess {
        group: "",
        resource: "events",
        verbs: &["list", "watch"],
    },
    crate::rbac::ApiAccess {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
    },
];

/// Reconciles at once by default. A steady-state reconcile makes at most one write and no read,
/// so this is the number of writes in flight: enough to keep the server busy without the
/// controller queueing behind itself, few enough not to trip a real server's priority and
/// fairness (the sync uses the same bound).
pub const DEFAULT_CONCURRENCY: u16 = 32;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Only TaskRuns (and children) in this namespace; `None` watches every namespace.
    pub namespace: Option<String>,
    /// The profiles in use; their source may replace them while the controller runs.
    pub agents: profiles::LiveProfiles,
    /// Reconciles that may run at once (kube-runtime never runs two for one TaskRun). kube-rs
    /// has no client-side rate limit (client-go's default is 5 QPS), so this is also the bound
    /// on the controller's requests in flight.
    pub concurrency: u16,
    /// Trailing-edge debounce of reconcile triggers per TaskRun: bursts of Job updates become
    /// one reconcile.
    pub debounce: Duration,
    /// First retry delay after a failed reconcile; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
    /// `--max-running`: Jobs running at once over all agents (each profile's `maxConcurrent`
    /// caps its own). Over the limit a TaskRun waits, Pending/Queued, with no Job.
    pub max_running: Option<u32>,
}

impl ControllerConfig {
    pub fn new(namespace: Option<String>, agents: AgentProfiles) -> ControllerConfig {
        Self::with_live_profiles(namespace, profiles::LiveProfiles::new(agents, "the start"))
    }

    /// A controller whose profiles follow their source (see [`profiles::LiveProfiles`]).
    pub fn with_live_profiles(
        namespace: Option<String>,
        agents: profiles::LiveProfiles,
    ) -> ControllerConfig {
        ControllerConfig {
            namespace,
            agents,
            concurrency: DEFAULT_CONCURRENCY,
            debounce: Duration::from_millis(200),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(300),
            max_running: None,
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

/// A watch (`events`, retried with the capped [`watch_backoff`]) whose objects are slimmed by
/// `slim` and kept in the store `writer` feeds; yields the objects that changed.
fn cached_watch<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    slim: fn(&mut K),
    mut writer: OwnedStoreWriter<K>,
    outage: Arc<OutageLog>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let mut requests = WatchRequests::default();
    events
        .backoff(watch_backoff())
        .inspect(move |result| outage.watch_result(&mut requests, result.as_ref().err()))
        .modify(slim)
        .map_ok(move |event| {
            writer.apply(&event);
            event
        })
        .touched_objects()
        .filter_map(|result| std::future::ready(result.ok().map(Ok)))
}

/// A ConfigMap of which only the metadata was read. ConfigMaps are watched by metadata: the
/// reconcile reads their owner and spec hash, and each holds a task's markdown (up to 1 MiB),
/// which the API server would otherwise send the controller with every change and relist.
fn config_map_of_metadata(
    event: watcher::Event<PartialObjectMeta<ConfigMap>>,
) -> watcher::Event<ConfigMap> {
    let config_map = |meta: PartialObjectMeta<ConfigMap>| ConfigMap {
        metadata: meta.metadata,
        ..ConfigMap::default()
    };
    match event {
        watcher::Event::Apply(meta) => watcher::Event::Apply(config_map(meta)),
        watcher::Event::Delete(meta) => watcher::Event::Delete(config_map(meta)),
        watcher::Event::InitApply(meta) => watcher::Event::InitApply(config_map(meta)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Keeps of a TaskRun what the reconcile reads: all but managedFields.
fn slim_task_run(tr: &mut TaskRun) {
    tr.metadata.managed_fields = None;
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
    // Only children this project made are watched; owner references map them to TaskRuns.
    let children = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let (jobs, jobs_writer) = owned_store::<CachedJob>();
    let (config_maps, config_maps_writer) = owned_store::<ConfigMap>();
    let (pods, pods_writer) = owned_store::<CachedPod>();
    let outage = Arc::new(OutageLog::new(
        "controller",
        reconcile::RETRY_WHILE_UNREACHABLE.max(crate::watch_backoff::WATCH_BACKOFF_MAX),
    ));
    let job_events = cached_watch(
        watcher(api(&client, ns), children.clone()),
        slim_job,
        jobs_writer,
        outage.clone(),
    );
    let config_map_events = cached_watch(
        watcher(
            api::<PartialObjectMeta<ConfigMap>>(&client, ns),
            children.clone(),
        )
        .map_ok(config_map_of_metadata),
        slim_config_map,
        config_maps_writer,
        outage.clone(),
    );
    let pod_events = cached_watch(
        watcher(api(&client, ns), children),
        slim_pod,
        pods_writer,
        outage.clone(),
    );
    let (task_runs, task_runs_writer) = reflector::store::<TaskRun>();
    let task_run_outage = outage.clone();
    let mut task_run_requests = WatchRequests::default();
    // Asks for reconciles: of TaskRuns a freed queue slot lets start, and of reports that waited
    // for the starts.
    let (kick, kicked) = tokio::sync::mpsc::unbounded_channel();
    let starts_first = Arc::new(starts_first::StartsFirst::new(kick.clone()));
    let watch_starts = starts_first.clone();
    // Errors are logged once per outage where they arise and not passed on, so that
    // kube-runtime's Controller does not pause every trigger with a backoff of its own: the
    // watch that failed retries with `watch_backoff`. The TaskRuns seen tell which wait to start.
    let task_run_events = watcher(api::<TaskRun>(&client, ns), watcher::Config::default())
        .backoff(watch_backoff())
        .inspect(move |result| {
            task_run_outage.watch_result(&mut task_run_requests, result.as_ref().err());
            if let Ok(event) = result {
                watch_starts.watch_event(event);
            }
        })
        .modify(slim_task_run)
        .reflect(task_runs_writer)
        .touched_objects()
        .filter_map(|result| std::future::ready(result.ok().map(Ok)));
    // Every agent's queue is exported from the start, at 0.
    let agent_names = config.agents.names();
    metrics.set_queued(
        agent_names.iter().map(String::as_str),
        &std::collections::BTreeMap::new(),
    );
    let mut ctx = reconcile::Context::new(
        client.clone(),
        config.agents.clone(),
        metrics,
        backoff::Backoffs::new(config.backoff_base, config.backoff_max),
        Caches {
            jobs,
            config_maps,
            pods,
        },
    )
    .with_queue(reconcile::QueueInputs {
        task_runs: Some(task_runs.clone()),
        max_running: config.max_running,
        kick: Some(kick),
    });
    // Warning events about Jobs (FailedCreate: a missing ServiceAccount, ...), kept small.
    let job_warnings = job_events::JobEvents::default();
    let warning_events = job_events::warning_events(
        api(&client, ns),
        job_warnings.clone(),
        ctx.caches.jobs.clone(),
        outage.clone(),
    );
    ctx.job_events = job_warnings;
    ctx.outage = outage;
    ctx.starts_first = starts_first;
    let ctx = Arc::new(ctx);
    tracing::info!(
        namespace = ns.unwrap_or("<all>"),
        agents = ?config.agents.names(),
        concurrency = config.concurrency,
        "starting the TaskRun controller"
    );
    // A Pod's change reconciles the TaskRun of its Job: Running, what blocks it, its result.
    let pod_jobs = ctx.caches.jobs.clone();
    let pod_trigger = move |pod: CachedPod| task_run_of_pod(&pod_jobs, &pod.metadata);
    // A Job that ends (or is suspended, or deleted) frees its queue slot: the next TaskRuns are
    // asked for at once, not after the finished TaskRun's own reconcile.
    let slots = slots::Slots::default();
    let slot_ctx = ctx.clone();
    let job_events = job_events.inspect(move |result| {
        if let Ok(job) = result {
            note_job_slot(&slot_ctx, &slots, job);
        }
    });
    let event_jobs = ctx.caches.jobs.clone();
    let event_trigger = move |event: k8s_openapi::api::core::v1::Event| {
        job_events::task_run_of_event(&event_jobs, &event)
    };
    let watch_ctx = ctx.clone();
    let kicker = reconcile::kick_queues(ctx.clone());
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    // Graceful shutdown waits for the reconciles in flight, and every reconcile first waits for
    // the caches to be listed (kube-runtime holds the runner until the TaskRun store is). Once
    // shutdown begins the watches are no longer read, so a cache not listed by then never will
    // be and the wait would never end. No reconcile has got past that wait, so nothing is lost
    // by stopping at once.
    let unlisted_at_shutdown = {
        let ctx = ctx.clone();
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
            if ctx.listed().now_or_never().is_some() {
                std::future::pending::<()>().await;
            }
        }
    };
    let mut queue_requests = WatchRequests::default();
    let controller = Controller::for_stream(task_run_events, task_runs)
        .owns_stream(job_events)
        .owns_stream(config_map_events)
        .watches_stream(pod_events, pod_trigger)
        .watches_stream(warning_events, event_trigger)
        .reconcile_on(tokio_stream::wrappers::UnboundedReceiverStream::new(kicked))
        // The streams above retry on their own and pass no error on; should one come through,
        // the pause is capped as theirs is.
        .trigger_backoff(watch_backoff())
        .with_config(
            RuntimeConfig::default()
                .concurrency(config.concurrency)
                .debounce(config.debounce),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(move |result| {
            // Reconcile errors are logged by error_policy; these are watch and queue errors.
            if let Err(kube::runtime::controller::Error::QueueError(e)) = &result {
                watch_ctx.outage.watch_result(&mut queue_requests, Some(e));
            } else if let Err(e) = &result {
                tracing::debug!("controller: {e}");
            }
            std::future::ready(())
        });
    // The kicker runs as long as the controller does (it never ends on its own).
    tokio::select! {
        () = controller => {}
        () = kicker => {}
        () = unlisted_at_shutdown => {
            tracing::info!("stopping before the caches were listed; no reconcile had started");
        }
    }
    tracing::info!("TaskRun controller stopped");
}

/// Follows which Jobs hold a queue slot; when `job`'s event freed one, asks for the TaskRuns that
/// may start now.
fn note_job_slot(ctx: &reconcile::Context, slots: &slots::Slots, job: &CachedJob) {
    let (Some(ns), Some(name), Some(uid)) = (
        job.metadata.namespace.as_deref(),
        job.metadata.name.as_deref(),
        job.metadata.uid.as_deref(),
    ) else {
        return;
    };
    // The cache already holds this event's state (or no longer holds a deleted Job).
    let cached = ctx
        .caches
        .jobs
        .get(ns, name)
        .filter(|j| j.metadata.uid.as_deref() == Some(uid));
    if slots.freed(uid, slots::holds_slot(cached.as_deref())) {
        tracing::debug!(job = name, "a queue slot is free");
        reconcile::kick_queue(ctx, ns);
    }
}

/// The TaskRun controlling the Job that controls the Pod with `pod` metadata, as the Job cache
/// knows it.
fn task_run_of_pod(
    jobs: &caches::OwnedStore<CachedJob>,
    pod: &ObjectMeta,
) -> Option<ObjectRef<TaskRun>> {
    let ns = pod.namespace.as_deref()?;
    let job = pod
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true) && r.kind == "Job")?;
    controlling_task_run(&jobs.get(ns, &job.name)?.metadata, ns)
}

/// The TaskRun that controls the Job with `job` metadata (its controller owner reference), in
/// `ns`.
fn controlling_task_run(job: &ObjectMeta, ns: &str) -> Option<ObjectRef<TaskRun>> {
    let owner = job
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true) && r.kind == TaskRun::kind(&()))?;
    Some(ObjectRef::new(&owner.name).within(ns))
}
