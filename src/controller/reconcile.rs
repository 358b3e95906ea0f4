//! One reconcile of one TaskRun: the TaskRun and the caches of its children in; the ConfigMap,
//! the Job, deletions of older versions, at most one status write and at most one event out.
//!
//! Decisions are made by the pure modules (`children`, `job_phase`, `status::decide`); this file
//! only gathers what they need, from memory ([`Caches`]), and carries out what they return. In
//! the steady state a reconcile makes no read request: a GET happens only when a create finds
//! the object already there (409), which a cache that is behind the server can cause.

use super::agents::{AgentProfiles, ResolvedProfile};
use super::backoff::Backoffs;
use super::caches::{CachedJob, Caches, slim_config_map};
use super::children::{
    self, build_attempt_job, build_config_map, is_controlled_by, owner_reference, spec_hash_of,
};
use super::error::Error;
use super::events::Recorder;
use super::events::{publish, related};
use super::job_phase::{format_time, job_phase};
use super::lifecycle::{Cancel, LifecycleInput, QueueSlot, lifecycle};
use super::metrics::ControllerMetrics;
use super::operations::{ANNOTATION_CANCEL, cancel_applies, plan_attempt};
use super::profiles::LiveProfiles;
use super::queue::{EntryState, Limits, QueueEntry, entry_state, plan_queue};
use super::queue_cache::{
    KICK_COALESCE, Kicks, PLAN_MAX_AGE, Placement, PlanCache, QUEUED_MAX_AGE, RefreshBudget,
    SharedPlan,
};
use super::reasons::EventReason;
use super::starts_first::StartsFirst;
use super::status::{Decision, Observation, Outcome, PENDING_GRACE, decide, stall_due};
use super::written::{Created, WrittenStatuses, freshest};
use crate::crd::{TaskPhase, TaskRun, TaskRunStatus};
use crate::names::{FIELD_MANAGER_CONTROLLER, FINALIZER};
use crate::outage_log::OutageLog;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, info, instrument, warn};

/// A TaskRun whose Job is still going is looked at again after this long even if nothing
/// changes; Job events normally trigger a reconcile long before.
pub const REQUEUE_ACTIVE: Duration = Duration::from_secs(300);
/// A reconcile that failed because the API server could not be reached is retried at least
/// this often (its own backoff may say sooner), so work resumes within this long after the
/// server is back.
pub const RETRY_WHILE_UNREACHABLE: Duration = Duration::from_secs(2);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub agents: LiveProfiles,
    pub recorder: Recorder,
    pub metrics: Arc<ControllerMetrics>,
    pub backoffs: Backoffs<ObjectRef<TaskRun>>,
    /// Jobs and ConfigMaps (and Pods) as the watches last saw them.
    pub caches: Caches,
    /// One line per lost or regained API server connection, not one per failed request; shared
    /// with the watches.
    pub outage: Arc<OutageLog>,
    /// Warning events about Jobs, as the events watch last saw them (see [`super::job_events`]).
    pub job_events: super::job_events::JobEvents,
    /// Jobs (by uid) already reported as built from different content, so the warning is given
    /// once per Job rather than on every reconcile.
    reported_outdated: Mutex<HashSet<String>>,
    /// Status writes the watch may not have delivered yet.
    written: WrittenStatuses,
    /// Jobs and ConfigMaps this controller created that the caches may not show yet, by
    /// namespace/name.
    created_jobs: Created<Job>,
    created_config_maps: Created<ConfigMap>,
    /// What the queue reads besides the caches (see [`super::queue`]).
    queue: QueueInputs,
    /// Held while the queue decides a start and reserves its slot (in `starting`), so that two
    /// reconciles never both take the last slot.
    start_lock: tokio::sync::Mutex<()>,
    /// Jobs (`namespace/name`) whose start the queue decided and whose create is in flight: they
    /// hold their slot until `created_jobs` or the cache shows them.
    starting: Mutex<HashSet<String>>,
    /// The queue's latest plan per namespace, shared by reconciles.
    plans: PlanCache,
    /// Freed slots, for the kicker.
    kicks: Kicks,
    /// Writes of a moved queue place allowed now.
    queue_refreshes: RefreshBudget,
    /// Reports wait while TaskRuns wait for their first look (see [`super::starts_first`]).
    pub starts_first: Arc<StartsFirst>,
}

/// The queue's inputs: every TaskRun (the controller's own store), the global cap, and where to
/// ask for the reconcile of a TaskRun that may start now that a slot is free.
#[derive(Clone, Default)]
pub struct QueueInputs {
    pub task_runs: Option<Store<TaskRun>>,
    /// `--max-running`: Jobs running at once over all agents.
    pub max_running: Option<u32>,
    pub kick: Option<tokio::sync::mpsc::UnboundedSender<ObjectRef<TaskRun>>>,
}

/// A queued TaskRun is looked at again after this long even if no slot frees (its position in
/// the message is refreshed then); a freed slot asks for the next TaskRun's reconcile at once.
pub const REQUEUE_QUEUED: Duration = super::status::QUEUE_POSITION_REFRESH;

impl Context {
    pub fn new(
        client: Client,
        agents: LiveProfiles,
        metrics: Arc<ControllerMetrics>,
        backoffs: Backoffs<ObjectRef<TaskRun>>,
        caches: Caches,
    ) -> Context {
        Context {
            recorder: super::events::recorder(client.clone()),
            client,
            agents,
            metrics,
            backoffs,
            caches,
            outage: Arc::new(OutageLog::new("controller", RETRY_WHILE_UNREACHABLE)),
            job_events: Default::default(),
            reported_outdated: Mutex::new(HashSet::new()),
            written: WrittenStatuses::default(),
            created_jobs: Created::default(),
            created_config_maps: Created::default(),
            queue: QueueInputs::default(),
            start_lock: tokio::sync::Mutex::new(()),
            starting: Mutex::new(HashSet::new()),
            plans: PlanCache::default(),
            kicks: Kicks::default(),
            queue_refreshes: RefreshBudget::default(),
            starts_first: Arc::default(),
        }
    }

    /// Waits until the children's caches and the TaskRun store have been listed: before that,
    /// "not in the cache" would mean "not known yet", and the queue counts every TaskRun.
    pub async fn listed(&self) {
        self.caches.ready().await;
        if let Some(task_runs) = &self.queue.task_runs {
            let _ = task_runs.wait_until_ready().await;
        }
    }

    /// Turns the queue on: limits come from the profiles' `maxConcurrent` and `max_running`.
    pub fn with_queue(mut self, queue: QueueInputs) -> Context {
        self.queue = queue;
        self
    }
}

/// The reconciler handed to kube-runtime's Controller.
#[instrument(skip_all, fields(task_run = %tr.name_any(), version = tr.spec.context_version))]
pub async fn reconcile(tr: Arc<TaskRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    let mut timer = ctx.metrics.time_reconcile();
    ctx.listed().await;
    let key = ObjectRef::from_obj(&*tr);
    let ns = tr
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(tr.name_any()))?;
    let api: Api<TaskRun> = Api::namespaced(ctx.client.clone(), &ns);
    // The sync applies the finalizer with the TaskRun; for a TaskRun made by hand (or before
    // the sync did so) this adds it with one patch before anything else happens.
    let action = finalizer(&api, FINALIZER, tr, |event| async {
        match event {
            FinalizerEvent::Apply(tr) => {
                let action = apply(&tr, &ctx, &api).await;
                // Whatever it did (a Job created, queued, failed), this TaskRun no longer holds
                // reports back. (A reconcile that only added the finalizer started nothing.)
                ctx.starts_first.looked_at(&tr);
                action
            }
            FinalizerEvent::Cleanup(tr) => cleanup(&tr, &ctx).await,
        }
    })
    .await?;
    ctx.backoffs.reset(&key);
    timer.succeeded();
    Ok(action)
}

/// Counts the error by kind and retries the object after its own exponential backoff. While the
/// API server cannot be reached, the retry comes at least every [`RETRY_WHILE_UNREACHABLE`] and
/// the outage is logged once, not per TaskRun.
pub fn error_policy(tr: Arc<TaskRun>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.count_error(error.kind());
    let key = ObjectRef::from_obj(&*tr);
    let delay = ctx.backoffs.next_delay(&key);
    if error.is_connection() {
        ctx.outage.failed(error);
        return Action::requeue(delay.min(RETRY_WHILE_UNREACHABLE));
    }
    warn!(
        task_run = %tr.name_any(),
        kind = error.kind(),
        failures = ctx.backoffs.failures(&key),
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed: {error}"
    );
    Action::requeue(delay)
}

async fn apply(tr: &TaskRun, ctx: &Context, api: &Api<TaskRun>) -> Result<Action, Error> {
    let owner = owner_reference(tr)?;
    let ns = tr.namespace().unwrap_or_default();
    let version = tr.spec.context_version;
    let config_map_name = children::config_map_name(tr);
    let rv = tr.metadata.resource_version.as_deref();
    let pending_write = ctx.written.pending(&owner.uid, rv);
    let previous = freshest(tr.status.as_ref(), rv, pending_write.as_ref());
    let status_is_current = previous.is_some_and(|s| s.context_version == Some(version));
    let plan = plan_attempt(
        tr.metadata.annotations.as_ref(),
        previous,
        status_is_current,
    );
    let job_name = children::attempt_job_name(tr, plan.attempt);
    if plan.retried {
        forget_cancel(api, tr).await?;
    }

    let now = k8s_openapi::jiff::Timestamp::now();
    let superseded = if may_own_other_versions(previous, tr.metadata.generation, version) {
        delete_other_versions(ctx, &ns, &owner.uid, &job_name, &config_map_name).await?
    } else {
        Vec::new()
    };

    let agents = ctx.agents.current();
    let stall_after = agents
        .resolve(&tr.spec.agent_name)
        .ok()
        .map(|p| p.stall_after);
    let mut life = None;
    let mut queued = None;
    let outcome = match agents.resolve(&tr.spec.agent_name) {
        Err(unknown) => Outcome::AgentNotFound {
            message: unknown.to_string(),
        },
        Ok(_) if status_is_current && finished(previous, &job_name) => {
            // The Pod cache may show the agent's result after the Job cache showed the end.
            if let Some(job) = ctx.caches.job(&ns, &job_name) {
                life = Some(lifecycle(&LifecycleInput {
                    job: Some(&job),
                    pods: &pods_of(ctx, Some(&job)),
                    ..LifecycleInput::default()
                }));
            }
            Outcome::Finished
        }
        Ok(profile) => {
            ensure_config_map(tr, ctx, &ns, &owner).await?;
            let known = known_job(ctx, &ns, &job_name);
            // A cancel of this attempt (not of one before a retry, nor of another version)
            // stops its Job and creates none.
            let cancel = (!plan.retried && (known.is_some() || status_is_current))
                .then(|| {
                    cancel_applies(
                        tr.metadata.annotations.as_ref(),
                        known
                            .as_ref()
                            .and_then(|j| j.metadata.creation_timestamp.as_ref())
                            .map(|t| t.0),
                    )
                })
                .flatten();
            let (job, created) = match (&cancel, known) {
                (Some(cancel), Some(job)) => {
                    stop_cancelled(ctx, &ns, &job, cancel).await?;
                    (Some(job), false)
                }
                (Some(_), None) => (None, false),
                // suspend: true in task.yaml: no Job is started.
                (None, None) if tr.spec.suspend => (None, false),
                (None, None) if queue_limits(ctx, &agents, &profile).is_some() => {
                    match start_or_queue(tr, ctx, &ns, &agents, &job_name).await {
                        StartDecision::Exists(job) => (Some(job), false),
                        StartDecision::Queued(slot) => {
                            queued = Some(slot);
                            (None, false)
                        }
                        StartDecision::Start(key) => {
                            let result =
                                ensure_job(tr, ctx, &ns, &profile, &owner, plan.attempt).await;
                            // Created (and remembered), or failed: the reservation is done with.
                            ctx.starting
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&key);
                            let (job, created) = result?;
                            (Some(job), created)
                        }
                    }
                }
                (None, _) => {
                    let (job, created) =
                        ensure_job(tr, ctx, &ns, &profile, &owner, plan.attempt).await?;
                    follow_suspend(ctx, &ns, &job, tr.spec.suspend).await?;
                    (Some(job), created)
                }
            };
            life = Some(lifecycle(&LifecycleInput {
                suspend: tr.spec.suspend,
                cancel: cancel.as_ref(),
                queued: queued.as_ref(),
                job: job.as_deref(),
                pods: &pods_of(ctx, job.as_deref()),
                events: &events_of(ctx, job.as_deref()),
            }));
            let job = job.unwrap_or_default();
            Outcome::Job {
                state: job_phase(&job),
                superseded,
                created: created.then(|| format!("{} ({})", profile.name, profile.profile.image)),
                young: created || is_young(&job, now),
            }
        }
    };
    let observation = Observation {
        generation: tr.metadata.generation,
        context_version: version,
        job_name,
        config_map_name,
        outcome,
        life,
        retries: plan.retries,
        retry_token: plan.retry_token,
        stall_after,
    };
    let Decision {
        status,
        mut write,
        mut transition,
        deferred,
        place_only,
    } = decide(previous, &observation, &format_time(now));
    if write && place_only && !ctx.queue_refreshes.take(Instant::now()) {
        // Refreshed on a later look (see `RefreshBudget`).
        write = false;
    }
    let report_delay = (write || transition.is_some())
        .then(|| ctx.starts_first.report_delay(tr, Instant::now()))
        .flatten();
    if report_delay.is_some() {
        debug!("other TaskRuns wait to start: the report waits");
        ctx.metrics.reports_deferred.inc();
        write = false;
        transition = None;
    }
    if write {
        let stored = write_status(api, &tr.name_any(), &status).await?;
        ctx.written.remember(
            &owner.uid,
            stored.metadata.resource_version.as_deref(),
            status.clone(),
        );
        if !status_is_current {
            ctx.metrics.taskrun.inc();
        }
    }
    if let Some(t) = transition {
        let job = t.job.map(|name| job_reference(name, &ns));
        publish(&ctx.recorder, tr, t.reason, t.note, job).await;
    }
    let phase = status.phase.unwrap_or_default();
    ctx.metrics.observe_phase(&owner.uid, phase);
    if phase.is_terminal() || tr.spec.suspend {
        // This TaskRun holds no slot (any more): the next in the queue may start.
        kick_queue(ctx, &ns);
    }
    Ok(if let Some(delay) = report_delay {
        // Asked for sooner when no TaskRun waits any more.
        Action::requeue(delay)
    } else if deferred {
        // The Job's first status update normally comes first and triggers a reconcile.
        Action::requeue(PENDING_GRACE)
    } else if phase.is_terminal() {
        Action::await_change()
    } else if queued.is_some() {
        Action::requeue(REQUEUE_QUEUED)
    } else if let Some(due) = stall_after.and_then(|t| stall_due(&status, now, t)) {
        // Look again when a blocked run turns Stalled.
        Action::requeue(due.max(Duration::from_millis(100)).min(REQUEUE_ACTIVE))
    } else {
        Action::requeue(REQUEUE_ACTIVE)
    })
}

/// The limits, when the queue is on and one applies to `profile` (its agent's maxConcurrent or
/// the global cap): `None` means start at once.
fn queue_limits(
    ctx: &Context,
    agents: &AgentProfiles,
    profile: &ResolvedProfile<'_>,
) -> Option<Limits> {
    ctx.queue.task_runs.as_ref()?;
    if profile.max_concurrent.is_none() && ctx.queue.max_running.is_none() {
        return None;
    }
    Some(limits_of(ctx, agents))
}

fn limits_of(ctx: &Context, agents: &AgentProfiles) -> Limits {
    Limits {
        per_agent: agents
            .names()
            .into_iter()
            .filter_map(|name| {
                let max = agents.resolve(&name).ok()?.max_concurrent?;
                Some((name, max))
            })
            .collect(),
        global: ctx.queue.max_running,
    }
}

/// The queue of namespace `ns` as the caches show it, computed now and kept as the latest plan;
/// also sets `taskrun_queued`. Only under the start lock (see [`super::queue_cache`]). `None`
/// when no limit applies.
fn plan_now(ctx: &Context, ns: &str, agents: &AgentProfiles) -> Option<Arc<SharedPlan>> {
    let store = ctx.queue.task_runs.as_ref()?;
    let limits = limits_of(ctx, agents);
    if limits.per_agent.is_empty() && limits.global.is_none() {
        return None;
    }
    let now = Instant::now();
    let entries: Vec<QueueEntry> = store
        .state()
        .iter()
        .filter(|tr| {
            tr.namespace().as_deref() == Some(ns) && tr.meta().deletion_timestamp.is_none()
        })
        .filter_map(|tr| queue_entry(ctx, ns, agents, tr, now))
        .collect();
    let plan = plan_queue(&entries, &limits);
    ctx.metrics.set_queued(
        limits.per_agent.keys().map(String::as_str),
        &plan.queued_per_agent(),
    );
    Some(ctx.plans.store(ns, SharedPlan::new(plan, now)))
}

/// One TaskRun as the queue sees it; `None` when it neither holds a slot nor wants one. Runs
/// for every TaskRun of each plan, so it reads the caches without copying a Job.
fn queue_entry(
    ctx: &Context,
    ns: &str,
    agents: &AgentProfiles,
    tr: &TaskRun,
    now: Instant,
) -> Option<QueueEntry> {
    let status = tr.status.as_ref();
    let current = status.is_some_and(|s| s.context_version == Some(tr.spec.context_version));
    let annotations = tr.metadata.annotations.as_ref();
    let plan = plan_attempt(annotations, status, current);
    let finished = current
        && !plan.retried
        && status
            .and_then(|s| s.phase)
            .is_some_and(TaskPhase::is_terminal);
    let cancelled = current && !plan.retried && cancel_applies(annotations, None).is_some();
    let unknown = agents.resolve(&tr.spec.agent_name).is_err();
    let held = tr.spec.suspend || finished || cancelled || unknown;
    let job_name = children::attempt_job_name(tr, plan.attempt);
    let state = match ctx.caches.job_holds_slot(ns, &job_name) {
        Some(true) => EntryState::Running,
        Some(false) => return None,
        None => {
            let key = format!("{ns}/{job_name}");
            match ctx.created_jobs.known(&key, None, now) {
                Some(job) => entry_state(Some(&job), held)?,
                None if is_starting(ctx, &key) => EntryState::Running,
                None => entry_state(None, held)?,
            }
        }
    };
    Some(QueueEntry {
        name: tr.name_any(),
        agent: tr.spec.agent_name.clone(),
        task_id: tr.spec.task_id,
        priority: tr.spec.priority,
        introduced: super::queue::introduced_at(
            annotations,
            tr.metadata.creation_timestamp.as_ref().map(|t| t.0),
        ),
        state,
    })
}

/// What the queue says of a TaskRun with no Job.
enum StartDecision {
    /// Its Job exists after all (another reconcile created it).
    Exists(Arc<Job>),
    /// It waits, here.
    Queued(QueueSlot),
    /// It may start: its slot is reserved under this `namespace/name`, until its Job is created.
    Start(String),
}

/// Decides whether `tr` starts its Job now. A TaskRun the latest plan has waiting is answered
/// without the lock (a queued TaskRun never waits for the starts of others); a start is decided
/// under the lock, which reserves the slot and is released before the Job's create, so the
/// creates of several starts are in flight at once. The plan is computed again only when the
/// latest is too old or does not know `tr` (see [`super::queue_cache`]).
async fn start_or_queue(
    tr: &TaskRun,
    ctx: &Context,
    ns: &str,
    agents: &AgentProfiles,
    job_name: &str,
) -> StartDecision {
    let name = tr.name_any();
    if let Some(Placement::Queued(slot)) =
        ctx.plans
            .placement(ns, &name, Instant::now(), QUEUED_MAX_AGE)
    {
        return StartDecision::Queued(slot);
    }
    let _start = ctx.start_lock.lock().await;
    if let Some(job) = known_job(ctx, ns, job_name) {
        return StartDecision::Exists(job);
    }
    let placement = match ctx.plans.placement(ns, &name, Instant::now(), PLAN_MAX_AGE) {
        Some(placement) => Some(placement),
        None => plan_now(ctx, ns, agents).and_then(|plan| plan.placement(&name)),
    };
    if let Some(Placement::Queued(slot)) = placement {
        return StartDecision::Queued(slot);
    }
    // Placed to start, or not placed at all (no limit applies any more, or it wants no Job:
    // the reconcile's own decision then stands, as without a queue).
    let key = format!("{ns}/{job_name}");
    ctx.starting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.clone());
    StartDecision::Start(key)
}

/// A Job (`namespace/name`) whose start is decided and whose create is in flight.
fn is_starting(ctx: &Context, key: &str) -> bool {
    ctx.starting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(key)
}

/// Asks for the reconcile of the TaskRuns that may start now that a slot was freed (by a
/// TaskRun that finished, or by a Job the Job watch saw end: see [`super::slots`]). Cheap: the
/// kicker ([`kick_queues`]) plans once for all the asks of a short while.
pub fn kick_queue(ctx: &Context, ns: &str) {
    if ctx.queue.kick.is_some() {
        ctx.kicks.ask(ns);
    }
}

/// A TaskRun a plan lets start is kicked again after this long if it is still waiting (its
/// reconcile failed, say); not sooner, because every trigger restarts the controller's debounce
/// of that TaskRun: kicked on every plan, the TaskRuns of a busy queue started only when the
/// plans paused.
const KICK_AGAIN_AFTER: Duration = Duration::from_secs(2);

/// Runs for as long as the controller, and never ends on its own: plans the queues that
/// [`kick_queue`] asked for and asks for the reconcile of the TaskRuns each plan lets start.
pub async fn kick_queues(ctx: Arc<Context>) {
    let Some(kick) = ctx.queue.kick.clone() else {
        // No queue: nothing to do, but never end (the controller stops when this ends).
        return std::future::pending().await;
    };
    let mut pause = KICK_COALESCE;
    // TaskRuns kicked lately (`namespace/name`), so each is kicked once per start.
    let mut kicked: std::collections::HashMap<String, Instant> = Default::default();
    loop {
        for ns in ctx.kicks.next(pause).await {
            let agents = ctx.agents.current();
            let plan = {
                let _start = ctx.start_lock.lock().await;
                let planning = Instant::now();
                let plan = plan_now(&ctx, &ns, &agents);
                pause = KICK_COALESCE.max(planning.elapsed() * 2);
                plan
            };
            let now = Instant::now();
            kicked.retain(|_, at| now.saturating_duration_since(*at) < KICK_AGAIN_AFTER);
            for name in plan.iter().flat_map(|p| &p.plan().start) {
                // A kick that is sent again restarts the TaskRun's debounce: kicked once.
                if let std::collections::hash_map::Entry::Vacant(entry) =
                    kicked.entry(format!("{ns}/{name}"))
                {
                    entry.insert(now);
                    let _ = kick.send(ObjectRef::new(name).within(&ns));
                }
            }
        }
    }
}

/// The Warning events about `job`, as the events watch shows them.
fn events_of(ctx: &Context, job: Option<&Job>) -> Vec<super::lifecycle::JobEvent> {
    job.and_then(|j| j.metadata.uid.as_deref())
        .map(|uid| ctx.job_events.of_job(uid))
        .unwrap_or_default()
}

/// The Pods of `job`, as the Pod cache shows them.
fn pods_of(ctx: &Context, job: Option<&Job>) -> Vec<Pod> {
    job.and_then(|j| j.metadata.uid.as_deref())
        .map(|uid| ctx.caches.pods_of_job(uid))
        .unwrap_or_default()
}

/// Whether this TaskRun may still own children of another context version, so that they must be
/// looked for: until a status for the current version has been written, unless the TaskRun's
/// spec never changed since it was created (generation 1: it never had another version).
fn may_own_other_versions(
    previous: Option<&TaskRunStatus>,
    generation: Option<i64>,
    version: i64,
) -> bool {
    match previous {
        Some(s) => s.context_version != Some(version),
        None => generation.unwrap_or(i64::MAX) > 1,
    }
}

/// The Job was created less than [`PENDING_GRACE`] before `now`.
fn is_young(job: &Job, now: k8s_openapi::jiff::Timestamp) -> bool {
    job.metadata.creation_timestamp.as_ref().is_some_and(|t| {
        now.as_millisecond() - t.0.as_millisecond() < PENDING_GRACE.as_millis() as i64
    })
}

/// The status already records a finished run of this very Job: nothing is (re)created, even if
/// the Job has since been removed by its ttlSecondsAfterFinished.
fn finished(previous: Option<&TaskRunStatus>, job_name: &str) -> bool {
    previous.is_some_and(|s| {
        s.job_name.as_deref() == Some(job_name) && s.phase.is_some_and(TaskPhase::is_terminal)
    })
}

fn job_reference(name: String, namespace: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".to_string()),
        kind: Some("Job".to_string()),
        name: Some(name),
        namespace: Some(namespace.to_string()),
        ..ObjectReference::default()
    }
}

async fn write_status(
    api: &Api<TaskRun>,
    name: &str,
    status: &TaskRunStatus,
) -> Result<TaskRun, Error> {
    let body = serde_json::json!({
        "apiVersion": TaskRun::api_version(&()),
        "kind": TaskRun::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER_CONTROLLER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| Error::WriteStatus {
        name: name.to_string(),
        source,
    })
}

fn create_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER_CONTROLLER.to_string()),
        ..PostParams::default()
    }
}

/// Creates `desired`; when it already exists (409: the cache was behind), reads it once and
/// returns it with `false`. Never replaces an existing object.
async fn create_or_read<K>(
    api: &Api<K>,
    kind: &'static str,
    desired: &K,
) -> Result<(K, bool), Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    match api.create(&create_params(), desired).await {
        Ok(created) => Ok((created, true)),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            info!(%kind, %name, "already exists (the cache was behind); reading it");
            let live = api.get(&name).await.map_err(|source| Error::GetChild {
                kind,
                name: name.clone(),
                source,
            })?;
            Ok((live, false))
        }
        Err(source) => Err(Error::CreateChild { kind, name, source }),
    }
}

async fn ensure_config_map(
    tr: &TaskRun,
    ctx: &Context,
    ns: &str,
    owner: &OwnerReference,
) -> Result<(), Error> {
    let desired = build_config_map(tr, owner);
    let name = desired.metadata.name.clone().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let key = format!("{ns}/{name}");
    let cached = ctx.caches.config_maps.get(ns, &name);
    let known = ctx.created_config_maps.known(&key, cached, Instant::now());
    let live = match known {
        Some(live) => live,
        None => match create_or_read(&api, "ConfigMap", &desired).await? {
            (mut live, true) => {
                slim_config_map(&mut live);
                ctx.created_config_maps
                    .remember(key, Arc::new(live), Instant::now());
                info!(config_map = %name, "created ConfigMap");
                return Ok(());
            }
            (live, false) => Arc::new(live),
        },
    };
    if !is_controlled_by(&live.metadata, &owner.uid) {
        return Err(Error::ForeignChild {
            kind: "ConfigMap",
            name,
            task_run: tr.name_any(),
        });
    }
    if spec_hash_of(&live.metadata) == spec_hash_of(&desired.metadata) {
        return Ok(());
    }
    // Ours, holding other content: server-side apply makes it exactly ours again.
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER_CONTROLLER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(|source| Error::ApplyChild {
        kind: "ConfigMap",
        name: name.clone(),
        source,
    })?;
    info!(config_map = %name, "replaced the content of ConfigMap");
    Ok(())
}

/// A retry starts a new attempt: a cancel of an earlier one is done with, and is removed so that
/// it cannot be taken for a cancel of the new attempt (Job creation times count in seconds).
async fn forget_cancel(api: &Api<TaskRun>, tr: &TaskRun) -> Result<(), Error> {
    if !tr.annotations().contains_key(ANNOTATION_CANCEL) {
        return Ok(());
    }
    let body = serde_json::json!({"metadata": {"annotations": {ANNOTATION_CANCEL: null}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER_CONTROLLER.to_string()),
        ..PatchParams::default()
    };
    api.patch(&tr.name_any(), &params, &Patch::Merge(&body))
        .await
        .map_err(|source| Error::WriteAnnotation {
            name: tr.name_any(),
            annotation: ANNOTATION_CANCEL,
            source,
        })?;
    Ok(())
}

/// The Job `name` as the cache shows it, or as this controller created it a moment ago.
fn known_job(ctx: &Context, ns: &str, name: &str) -> Option<Arc<Job>> {
    let cached = ctx.caches.job(ns, name);
    ctx.created_jobs
        .known(&format!("{ns}/{name}"), cached, Instant::now())
}

/// Stops a cancelled attempt's Job now: deleted with Background propagation, so its Pods go
/// (the Job controller, or the local runner, kills the agent). A finished Job is kept.
async fn stop_cancelled(ctx: &Context, ns: &str, job: &Job, cancel: &Cancel) -> Result<(), Error> {
    if job_phase(job).phase.is_terminal() {
        return Ok(());
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    delete(&api, "Job", &job.name_any()).await?;
    info!(job = %job.name_any(), by = %cancel.by, at = %cancel.at, "cancelled: deleted the Job");
    Ok(())
}

/// Gives a running Job the TaskRun's `suspend` (Job `spec.suspend`: the Job controller stops its
/// Pods, and starts them again when it is set back to false). A finished Job is left alone.
async fn follow_suspend(ctx: &Context, ns: &str, job: &Job, suspend: bool) -> Result<(), Error> {
    let now = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
    if now == suspend || job_phase(job).phase.is_terminal() {
        return Ok(());
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let body = serde_json::json!({"spec": {"suspend": suspend}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER_CONTROLLER.to_string()),
        ..PatchParams::default()
    };
    api.patch(&job.name_any(), &params, &Patch::Merge(&body))
        .await
        .map_err(|source| Error::ApplyChild {
            kind: "Job",
            name: job.name_any(),
            source,
        })?;
    info!(job = %job.name_any(), suspend, "set the Job's spec.suspend");
    Ok(())
}

/// The current attempt's Job as it is now, and whether this reconcile created it.
async fn ensure_job(
    tr: &TaskRun,
    ctx: &Context,
    ns: &str,
    profile: &ResolvedProfile<'_>,
    owner: &OwnerReference,
    attempt: u32,
) -> Result<(Arc<Job>, bool), Error> {
    let desired = build_attempt_job(tr, profile, owner, attempt);
    let name = desired.metadata.name.clone().unwrap_or_default();
    let key = format!("{ns}/{name}");
    let cached = ctx.caches.job(ns, &name);
    let live = match ctx.created_jobs.known(&key, cached, Instant::now()) {
        Some(live) => live,
        None => {
            let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
            let (mut job, created) = create_or_read(&api, "Job", &desired).await?;
            if created {
                // Held until the cache shows it: only what the cache would hold.
                job = CachedJob::from(job).to_job();
                job.metadata.managed_fields = None;
            }
            let job = Arc::new(job);
            if created {
                ctx.metrics.jobs_created.inc();
                ctx.created_jobs.remember(key, job.clone(), Instant::now());
                info!(job = %name, agent = profile.name, "created Job");
                return Ok((job, true));
            }
            job
        }
    };
    if !is_controlled_by(&live.metadata, &owner.uid) {
        return Err(Error::ForeignChild {
            kind: "Job",
            name,
            task_run: tr.name_any(),
        });
    }
    if spec_hash_of(&live.metadata) != spec_hash_of(&desired.metadata) {
        report_outdated(tr, ctx, &live, profile).await;
    }
    Ok((live, false))
}

/// A Job's pod template cannot change, and rerunning a task behind the user's back is worse than
/// keeping the Job: so a Job built from other content is kept and reported, once per Job.
async fn report_outdated(tr: &TaskRun, ctx: &Context, live: &Job, profile: &ResolvedProfile<'_>) {
    let uid = live.metadata.uid.clone().unwrap_or_default();
    let first = ctx
        .reported_outdated
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(uid);
    if first {
        publish(
            &ctx.recorder,
            tr,
            EventReason::JobOutdated,
            format!(
                "Job {} was built from other content than agent profile {} gives now; it is kept. Delete the Job to rerun the task with the current profile",
                live.name_any(),
                profile.name
            ),
            Some(related(live)),
        )
        .await;
    }
}

/// Deletes this TaskRun's Jobs and ConfigMaps other than the current version's, as the caches
/// know them; returns the names of Jobs that were still running and have been stopped. A child
/// the cache does not show yet is still owned by the TaskRun, so it goes with the TaskRun.
async fn delete_other_versions(
    ctx: &Context,
    ns: &str,
    uid: &str,
    job_name: &str,
    config_map_name: &str,
) -> Result<Vec<String>, Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let mut stopped = Vec::new();
    let mut deleted = Vec::new();
    for job in ctx.caches.jobs.owned_by(uid) {
        let name = job.name_any();
        if name == job_name {
            continue;
        }
        delete(&jobs, "Job", &name).await?;
        if job_phase(&job.to_job()).phase.is_terminal() {
            deleted.push(name);
        } else {
            stopped.push(name);
        }
    }
    for cm in ctx.caches.config_maps.owned_by(uid) {
        let name = cm.name_any();
        if name == config_map_name {
            continue;
        }
        delete(&config_maps, "ConfigMap", &name).await?;
        deleted.push(name);
    }
    if !deleted.is_empty() || !stopped.is_empty() {
        info!(
            ?stopped,
            ?deleted,
            "deleted children of older context versions"
        );
    }
    Ok(stopped)
}

/// Deletes with propagation Background, so a Job's pods go too; already gone is fine.
async fn delete<K>(api: &Api<K>, kind: &'static str, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => Err(Error::DeleteChild {
            kind,
            name: name.to_string(),
            source,
        }),
    }
}

/// The TaskRun is being deleted: remove its Jobs (and so their pods) and ConfigMaps as the caches
/// know them, then let the finalizer go. Children the caches do not show yet carry the
/// TaskRun's owner reference, so the garbage collector removes them with it.
async fn cleanup(tr: &TaskRun, ctx: &Context) -> Result<Action, Error> {
    let Some(uid) = tr.uid() else {
        return Ok(Action::await_change());
    };
    let ns = tr.namespace().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let config_maps_api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs = ctx.caches.jobs.owned_by(&uid);
    let config_maps = ctx.caches.config_maps.owned_by(&uid);
    for job in &jobs {
        delete(&jobs_api, "Job", &job.name_any()).await?;
    }
    for cm in &config_maps {
        delete(&config_maps_api, "ConfigMap", &cm.name_any()).await?;
    }
    let names: Vec<String> = jobs
        .iter()
        .map(|j| format!("Job {}", j.name_any()))
        .chain(
            config_maps
                .iter()
                .map(|c| format!("ConfigMap {}", c.name_any())),
        )
        .collect();
    let note = if names.is_empty() {
        "Nothing to clean up; releasing the finalizer".to_string()
    } else {
        format!("Deleted {}; releasing the finalizer", names.join(", "))
    };
    publish(&ctx.recorder, tr, EventReason::CleanupDone, note, None).await;
    ctx.metrics.forget(&uid);
    ctx.written.forget(&uid);
    info!(task_run = %tr.name_any(), "cleaned up");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_versions_are_looked_for_only_while_they_can_exist() {
        let at = |v: i64| TaskRunStatus {
            context_version: Some(v),
            ..TaskRunStatus::default()
        };
        let cases = [
            (None, Some(1), 1, false),
            (None, Some(2), 2, true),
            (None, None, 1, true),
            (Some(at(1)), Some(2), 2, true),
            (Some(at(2)), Some(2), 2, false),
            (Some(TaskRunStatus::default()), Some(1), 1, true),
        ];
        for (status, generation, version, want) in cases {
            assert_eq!(
                may_own_other_versions(status.as_ref(), generation, version),
                want,
                "{status:?} {generation:?} {version}"
            );
        }
    }
}
