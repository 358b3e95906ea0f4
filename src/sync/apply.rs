//! The applier: a snapshot in, the cluster's TaskRuns brought in line (server-side apply, prune)
//! and a `SyncOutcome` out. Thin I/O: one list, the pure `desired` + `plan`, then only the writes
//! the plan names, a bounded number in flight.

use crate::crd::TaskRun;
use crate::desired::{
    DesiredCache, KnownTaskRuns, LiveInterner, LiveTaskRun, SourceIdentity, Token,
    desired_task_runs_reusing,
};
use crate::names;
use crate::outage_log::OutageLog;
use crate::progress::{Throttle, fraction};
use crate::source::snapshot::{Revision, SourceSnapshot};
use crate::sync::live_watch::{LiveWatch, merge_metadata, watched_metas};
use crate::sync::plan::{Action, PlanInput, PlanStep, Settled, SyncPlan, plan};
use crate::sync::report::{ApplyError, SyncReport, SyncedTask};
use futures::stream::{self, StreamExt};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, instrument, warn};

/// The API calls of the sync, for the RBAC check of deploy/. Applying a TaskRun that does not
/// exist yet is a create as far as the authorizer is concerned.
pub const API_ACCESS: &[crate::rbac::ApiAccess] = &[crate::rbac::ApiAccess {
    group: crate::names::GROUP,
    resource: "taskruns",
    verbs: &["get", "list", "watch", "create", "patch", "delete"],
}];

/// Writes in flight at once. Enough to hide loopback/cluster latency, few enough not to trip
/// API priority and fairness on a real cluster. Also what bounds the apply bodies held at once.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// TaskRuns per list request (client-go's pager uses the same): a full list holds one page of
/// whole TaskRuns at a time, never every TaskRun's markdown.
pub const LIST_PAGE_SIZE: u32 = 500;

/// How the applier writes.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// The namespace the TaskRuns live in.
    pub namespace: String,
    /// `false` keeps TaskRuns whose folder left Git (`--prune=false`).
    pub prune: bool,
    /// Writes in flight at once (at least 1).
    pub concurrency: usize,
    /// Apply the controller's finalizer with each TaskRun, as a field the sync owns, so that the
    /// controller needs no write of its own before the first reconcile. Set only where a
    /// controller runs (`orchestrator run` with agent profiles): without one, a finalizer would
    /// keep every pruned TaskRun Terminating. A controller adds it itself where it is missing.
    pub finalizer: bool,
}

impl SyncOptions {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            prune: true,
            concurrency: DEFAULT_CONCURRENCY,
            finalizer: false,
        }
    }
}

/// A sync that could not even compare; per-task write failures are not errors of the sync,
/// they are recorded in its report.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(
        "listing TaskRuns in namespace {namespace:?} failed: {source}; check that the cluster is \
         reachable, the namespace exists, and orchestrator may list taskruns.orchestrator.io"
    )]
    ListTaskRuns {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

impl SyncError {
    /// The API server could not be reached (rather than refusing the request).
    pub fn is_connection(&self) -> bool {
        match self {
            SyncError::ListTaskRuns { source, .. } => {
                crate::outage_log::is_connection_error(source)
            }
        }
    }

    /// A fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SyncError::ListTaskRuns { .. } => crate::sync::metrics::error_kind::LIST,
        }
    }
}

/// What one sync did: the plan it carried out, the report, and how long it took.
#[derive(Clone, Debug)]
pub struct SyncOutcome {
    pub plan: SyncPlan,
    pub report: SyncReport,
    pub took: Duration,
    /// Whether every write of the plan succeeded and nothing is waiting (a TaskRun still being
    /// deleted): a sync of the same revision right now would write nothing. Folder errors and
    /// conflicts do not block this; they need a person, not another sync.
    pub converged: bool,
}

/// Syncs one source into one namespace; remembers the last cleanly applied revision.
#[derive(Clone)]
pub struct Syncer {
    api: Api<TaskRun>,
    source: SourceIdentity,
    options: SyncOptions,
    applied: Option<Revision>,
    /// What the sync knows of the TaskRuns as the last sync left them (no markdown), so that a
    /// re-sync reads metadata only.
    known: Option<KnownTaskRuns>,
    /// Keeps the metadata current between syncs; started by the first sync.
    watch: Option<Arc<LiveWatch>>,
    /// The last sync's desired TaskRuns, rebuilt only where something changed.
    desired: DesiredCache,
    /// What the last sync left in place, not compared again until it moves.
    settled: Settled,
    /// The largest resourceVersion this syncer's own writes produced: the next sync waits
    /// (briefly) for its watch to reach it before planning.
    last_write: u64,
    /// The marks and file names `known` shares.
    interner: LiveInterner,
    /// The task list of the last report, shared by the next when it lists the same.
    last_tasks: Option<Arc<[SyncedTask]>>,
    /// Writes and lists that could not reach the API server are logged here, once per outage.
    outage: Arc<OutageLog>,
}

/// How long a sync waits for its watch to show its own previous writes before it lists.
const CATCH_UP: Duration = Duration::from_secs(2);

/// Above this many TaskRuns whose spec changed since the last sync, one full list is cheaper
/// than reading each.
const REFETCH_ONE_BY_ONE: usize = 64;

impl Syncer {
    pub fn new(client: Client, source: SourceIdentity, options: SyncOptions) -> Self {
        Self {
            api: Api::namespaced(client, &options.namespace),
            source,
            options,
            applied: None,
            known: None,
            watch: None,
            desired: DesiredCache::new(),
            settled: Settled::default(),
            last_write: 0,
            interner: LiveInterner::default(),
            last_tasks: None,
            outage: Arc::new(OutageLog::new("sync", Duration::from_secs(2))),
        }
    }

    /// Where this syncer reports requests that could not reach the API server (the sync loop's,
    /// which states its own retry interval).
    pub fn set_outage_log(&mut self, outage: Arc<OutageLog>) {
        self.outage = outage;
    }

    /// See [`Self::set_outage_log`].
    pub fn outage_log(&self) -> &OutageLog {
        &self.outage
    }

    pub fn source(&self) -> &SourceIdentity {
        &self.source
    }

    pub fn options(&self) -> &SyncOptions {
        &self.options
    }

    /// What the sync needs of the live TaskRuns of the namespace: a list in pages of
    /// [`LIST_PAGE_SIZE`], each page reduced to [`LiveTaskRun`]s before the next is read.
    pub async fn list_live(&self) -> Result<KnownTaskRuns, SyncError> {
        self.list_live_and(|_| {}).await
    }

    /// [`Self::list_live`], showing each whole TaskRun (status included) to `also` before it
    /// is reduced: `plan` takes the live outcomes from it.
    pub async fn list_live_and(
        &self,
        mut also: impl FnMut(&TaskRun),
    ) -> Result<KnownTaskRuns, SyncError> {
        let mut known = KnownTaskRuns::new();
        let mut interner = LiveInterner::default();
        let mut params = ListParams::default().limit(LIST_PAGE_SIZE);
        loop {
            let page = self
                .api
                .list(&params)
                .await
                .map_err(|source| SyncError::ListTaskRuns {
                    namespace: self.options.namespace.clone(),
                    source,
                })?;
            let next = page.metadata.continue_.filter(|c| !c.is_empty());
            known.extend(page.items.into_iter().filter_map(|tr| {
                also(&tr);
                Some((
                    Arc::from(tr.metadata.name.as_deref()?),
                    interner.shared(LiveTaskRun::of(&tr)),
                ))
            }));
            match next {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(known),
            }
        }
    }

    /// Brings `known` up to date. The first time, one full list, and the metadata watch starts.
    /// After that the watch's metadata (or, while the watch may be behind, one metadata-only
    /// list) says which TaskRuns moved; only those are read again, one by one or, when many, by
    /// a full list. A no-op re-sync with a current watch makes no request.
    /// Waits until this syncer's watch has seen the change at `rv` (a hand edit or delete made
    /// through another client, say), so that the next sync plans against it; false after
    /// `timeout`. The syncer's own writes are waited for by [`Self::sync`] itself.
    pub async fn wait_until_seen(&self, rv: &str, timeout: Duration) -> bool {
        let (Some(watch), Ok(rv)) = (&self.watch, rv.parse::<u64>()) else {
            return false;
        };
        watch.wait_until_seen(rv, timeout).await
    }

    async fn refresh_live(&mut self) -> Result<(), SyncError> {
        let list_failed = |source| SyncError::ListTaskRuns {
            namespace: self.options.namespace.clone(),
            source,
        };
        let watch = self
            .watch
            .get_or_insert_with(|| Arc::new(LiveWatch::start(&self.api)))
            .clone();
        let Some(known) = self.known.as_mut() else {
            self.known = Some(self.list_live_shared().await?);
            return Ok(());
        };
        // A watch that has not shown this syncer's last writes yet is not trusted: list.
        let caught_up = watch.wait_until_seen(self.last_write, CATCH_UP).await;
        let merged = caught_up
            .then(|| watch.with_current(|metas| merge_metadata(known, metas)))
            .flatten();
        let stale = match merged {
            Some(stale) => stale,
            None => {
                let list = self
                    .api
                    .list_metadata(&ListParams::default())
                    .await
                    .map_err(list_failed)?;
                merge_metadata(
                    known,
                    &watched_metas(list.items.iter().map(|m| &m.metadata)),
                )
            }
        };
        if stale.len() > REFETCH_ONE_BY_ONE {
            self.known = Some(self.list_live_shared().await?);
            return Ok(());
        }
        for name in stale {
            match self.api.get_opt(&name).await.map_err(list_failed)? {
                Some(tr) => known.insert(name.into(), self.interner.shared(tr.into())),
                None => known.remove(name.as_str()),
            };
        }
        Ok(())
    }

    /// [`Self::list_live`], sharing marks and file names through the syncer's interner.
    async fn list_live_shared(&mut self) -> Result<KnownTaskRuns, SyncError> {
        self.known = None;
        let mut known = self.list_live().await?;
        self.interner.forget_unused();
        for live in known.values_mut() {
            self.interner.share(live);
        }
        Ok(known)
    }

    /// The plan for `snapshot` against the cluster as it is now; writes nothing.
    pub async fn plan(&self, snapshot: &SourceSnapshot) -> Result<SyncPlan, SyncError> {
        let live = self.list_live().await?;
        Ok(self.plan_against(snapshot, &live))
    }

    /// The plan for `snapshot` against `live` (pure; no request).
    pub fn plan_against(&self, snapshot: &SourceSnapshot, live: &KnownTaskRuns) -> SyncPlan {
        self.plan_reusing(snapshot, live, &mut DesiredCache::new(), None)
    }

    /// [`Self::plan_against`], reusing the desired TaskRuns of `cache` that did not change.
    fn plan_reusing(
        &self,
        snapshot: &SourceSnapshot,
        live: &KnownTaskRuns,
        cache: &mut DesiredCache,
        settled: Option<&Settled>,
    ) -> SyncPlan {
        let desired =
            desired_task_runs_reusing(snapshot, &self.source, &self.options.namespace, live, cache);
        plan(PlanInput {
            legacy_owner: Some(&self.source),
            desired: &desired,
            live,
            folder_errors: &snapshot.errors,
            source_label: &self.source.label_value(),
            prune: self.options.prune,
            settled,
        })
    }

    /// Reads what moved, plans and carries out the plan. A no-op re-sync makes no request while
    /// the metadata watch is current, else one (a metadata-only list).
    #[instrument(skip_all, fields(revision = %snapshot.revision, namespace = %self.options.namespace))]
    pub async fn sync(&mut self, snapshot: &SourceSnapshot) -> Result<SyncOutcome, SyncError> {
        let started = Instant::now();
        self.refresh_live().await?;
        // It listed, or its watch is current: the API server answers.
        self.outage.succeeded(Some(started));
        let empty = KnownTaskRuns::new();
        let mut cache = std::mem::take(&mut self.desired);
        let plan = self.plan_reusing(
            snapshot,
            self.known.as_ref().unwrap_or(&empty),
            &mut cache,
            Some(&self.settled),
        );
        self.desired = cache;
        // What the server answers is what is live now; a prune or a failed write is read again
        // next time. Each answer goes into `known` as it comes, so none is held twice.
        let mut known = self.known.as_mut();
        let writes_known = known.is_some();
        if let Some(known) = known.as_mut() {
            let mut created = 0;
            for step in plan.writes() {
                created += usize::from(step.action == Action::Create);
                known.remove(&*step.name);
            }
            // Room for every answer up front: growing by doubling would hold the old and the
            // new table at once (3 MiB of slots at 100,000 TaskRuns) halfway through a first
            // sync.
            known.reserve(created);
        }
        let last_write = &mut self.last_write;
        let interner = &mut self.interner;
        let failures = apply_plan(
            &self.api,
            &plan,
            self.options.concurrency,
            self.options.finalizer,
            &self.outage,
            |name, tr| {
                if let Some(rv) = tr.resource_version.as_ref().and_then(Token::number) {
                    *last_write = (*last_write).max(rv);
                }
                if let Some(known) = known.as_mut() {
                    known.insert(name.clone(), interner.shared(tr));
                }
            },
        )
        .await;
        self.interner.forget_unused();
        if writes_known && let Some(known) = self.known.as_ref() {
            // The old settlement first, so that two are never held at once.
            self.settled = Settled::default();
            self.settled = Settled::after(&plan, known);
        }
        let converged = failures.is_empty() && plan.count(|a| *a == Action::WaitForDeletion) == 0;
        let report = SyncReport::from_plan(
            self.last_tasks.as_ref(),
            &snapshot.revision,
            &plan,
            &snapshot.errors,
            failures,
            self.applied.clone(),
            now_rfc3339(),
        );
        self.applied = report.applied_revision.clone();
        self.last_tasks = Some(report.tasks.clone());
        let took = started.elapsed();
        info!(
            status = %report.status,
            created = report.created,
            updated = report.updated,
            pruned = report.pruned,
            unchanged = report.unchanged,
            errors = report.apply_errors.len() + report.folder_errors.len(),
            took_ms = took.as_millis() as u64,
            "sync finished"
        );
        Ok(SyncOutcome {
            plan,
            report,
            took,
            converged,
        })
    }
}

/// Carries out the writes of `plan`, at most `concurrency` at once: only those exist as futures,
/// hold an apply body or a response (a future per write made up front would hold several KiB
/// per task for the whole sync). Every failure is returned for its task; none stops the others.
/// What the server answered goes to `written` as it comes, reduced to a [`LiveTaskRun`]. A
/// write that could not reach the API server goes to `outage` (one line per outage), any other
/// failure is logged on its own.
pub async fn apply_plan(
    api: &Api<TaskRun>,
    plan: &SyncPlan,
    concurrency: usize,
    finalizer: bool,
    outage: &OutageLog,
    mut written: impl FnMut(&Arc<str>, LiveTaskRun),
) -> Vec<ApplyError> {
    let steps: Vec<&PlanStep> = plan.writes().collect();
    let total = steps.len();
    // Indexes, not borrowed steps, go through the stream: a closure over `&PlanStep` trips the
    // compiler's Send inference when the caller spawns the sync.
    let steps = &steps;
    let mut results = stream::iter(0..total)
        .map(|i| async move {
            write_step(api, steps[i], finalizer, outage)
                .await
                .map(|written| written.map(|tr| (i, tr)))
        })
        .buffer_unordered(concurrency.max(1));
    let mut throttle = Throttle::starting_at(Instant::now());
    let (mut done, mut failures) = (0, Vec::new());
    while let Some(result) = results.next().await {
        done += 1;
        match result {
            Ok(Some((i, tr))) => written(&steps[i].name, tr),
            Ok(None) => {}
            Err(e) => failures.push(e),
        }
        if throttle.due(Instant::now()) || (done == total && throttle.logged()) {
            info!(writes = %fraction(done, total), failed = failures.len(), "applying");
        }
    }
    failures.sort_by(|a, b| a.name.cmp(&b.name));
    failures
}

/// One write; the applied TaskRun as the server answered it, `None` for a prune. The apply body
/// is built here (with the controller's finalizer when `finalizer`) and dropped when the write
/// is done.
async fn write_step(
    api: &Api<TaskRun>,
    step: &PlanStep,
    finalizer: bool,
    outage: &OutageLog,
) -> Result<Option<LiveTaskRun>, ApplyError> {
    let asked_at = Instant::now();
    let failed = |verb: &str, e: kube::Error| {
        if crate::outage_log::is_connection_error(&e) {
            outage.failed(&e);
        } else {
            warn!(task_run = %step.name, error = %e, "{verb} failed");
        }
        ApplyError {
            name: step.name.to_string(),
            message: format!("{verb} {} failed: {e}", step.name),
        }
    };
    match &step.action {
        Action::Create | Action::Update(_) => {
            let Some(desired) = &step.desired else {
                return Ok(None);
            };
            debug!(task_run = %step.name, version = desired.context_version, "apply");
            let params = PatchParams::apply(names::FIELD_MANAGER_SYNC).force();
            let mut body = desired.apply_body().map_err(|e| {
                warn!(task_run = %step.name, error = %e, "reading the markdown failed");
                ApplyError {
                    name: step.name.to_string(),
                    message: format!(
                        "apply {} failed before it was sent: {e}; the next sync reads the \
                         repository again",
                        step.name
                    ),
                }
            })?;
            if finalizer {
                crate::crd::add_finalizer(&mut body);
            }
            api.patch(&step.name, &params, &Patch::Apply(&body))
                .await
                .map(|applied| {
                    outage.succeeded(Some(asked_at));
                    Some(LiveTaskRun::from(applied))
                })
                .map_err(|e| failed("apply", e))
        }
        Action::Prune { uid } => {
            debug!(task_run = %step.name, "prune");
            let params = DeleteParams {
                preconditions: uid.as_ref().map(|uid| Preconditions {
                    uid: Some(uid.to_string()),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            match api.delete(&step.name, &params).await {
                Ok(_) => Ok(None),
                // Already gone: what the prune wanted.
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
                Err(e) => Err(failed("prune", e)),
            }
        }
        _ => Ok(None),
    }
}

/// RFC 3339 UTC, for reports.
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}
