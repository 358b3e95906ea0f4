//! One reconcile of one TaskRun: the TaskRun and what the cluster holds for it in; the ConfigMap,
//! the Job, deletions of older versions, events and one status write (only when it changes) out.
//!
//! Decisions are made by the pure modules (`children`, `job_phase`, `status`); this file only
//! reads what they need and carries out what they return.

use super::agents::ResolvedProfile;
use super::backoff::Backoffs;
use super::children::{
    self, build_config_map, build_job, is_controlled_by, owner_reference, spec_hash_of,
};
use super::error::Error;
use super::events::{publish, related};
use super::job_phase::{JobState, format_time, job_phase};
use super::metrics::ControllerMetrics;
use super::profiles::LiveProfiles;
use super::reasons::{self, EventReason};
use super::status::{Observation, Outcome, needs_write, task_run_status};
use super::written::{WrittenStatuses, freshest};
use crate::crd::{TaskPhase, TaskRun, TaskRunStatus};
use crate::names::{FIELD_MANAGER_CONTROLLER, FINALIZER, LABEL_TASK_ID};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, instrument, warn};

/// A TaskRun whose Job is still going is looked at again after this long even if nothing
/// changes; Job events normally trigger a reconcile long before.
pub const REQUEUE_ACTIVE: Duration = Duration::from_secs(300);
/// After creating a Job the controller waits for the Job's first status before writing the
/// TaskRun's; if no Job event arrives, it looks again after this long.
pub const REQUEUE_AFTER_CREATE: Duration = Duration::from_secs(5);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub agents: LiveProfiles,
    pub recorder: Recorder,
    pub metrics: Arc<ControllerMetrics>,
    pub backoffs: Backoffs<ObjectRef<TaskRun>>,
    /// Jobs (by uid) already reported as built from different content, so the warning is given
    /// once per Job rather than on every reconcile.
    reported_outdated: Mutex<HashSet<String>>,
    /// Status writes the watch may not have delivered yet.
    written: WrittenStatuses,
}

impl Context {
    pub fn new(
        client: Client,
        agents: LiveProfiles,
        metrics: Arc<ControllerMetrics>,
        backoffs: Backoffs<ObjectRef<TaskRun>>,
    ) -> Context {
        Context {
            recorder: super::events::recorder(client.clone()),
            client,
            agents,
            metrics,
            backoffs,
            reported_outdated: Mutex::new(HashSet::new()),
            written: WrittenStatuses::default(),
        }
    }
}

/// The reconciler handed to kube-runtime's Controller.
#[instrument(skip_all, fields(task_run = %tr.name_any(), version = tr.spec.context_version))]
pub async fn reconcile(tr: Arc<TaskRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.time_reconcile();
    let key = ObjectRef::from_obj(&*tr);
    let ns = tr
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(tr.name_any()))?;
    let api: Api<TaskRun> = Api::namespaced(ctx.client.clone(), &ns);
    let action = finalizer(&api, FINALIZER, tr, |event| async {
        match event {
            FinalizerEvent::Apply(tr) => apply(&tr, &ctx, &api).await,
            FinalizerEvent::Cleanup(tr) => cleanup(&tr, &ctx).await,
        }
    })
    .await?;
    ctx.backoffs.reset(&key);
    Ok(action)
}

/// Counts the error by kind and retries the object after its own exponential backoff.
pub fn error_policy(tr: Arc<TaskRun>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.count_error(error.kind());
    let key = ObjectRef::from_obj(&*tr);
    let delay = ctx.backoffs.next_delay(&key);
    warn!(
        task_run = %tr.name_any(),
        kind = error.kind(),
        failures = ctx.backoffs.failures(&key),
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed: {error}"
    );
    Action::requeue(delay)
}

struct Children {
    jobs: Api<Job>,
    config_maps: Api<ConfigMap>,
}

impl Children {
    fn new(client: &Client, ns: &str) -> Children {
        Children {
            jobs: Api::namespaced(client.clone(), ns),
            config_maps: Api::namespaced(client.clone(), ns),
        }
    }
}

async fn apply(tr: &TaskRun, ctx: &Context, api: &Api<TaskRun>) -> Result<Action, Error> {
    let owner = owner_reference(tr)?;
    let ns = tr.namespace().unwrap_or_default();
    let kids = Children::new(&ctx.client, &ns);
    let version = tr.spec.context_version;
    let job_name = children::job_name(tr);
    let config_map_name = children::config_map_name(tr);
    let rv = tr.metadata.resource_version.as_deref();
    let pending_write = ctx.written.pending(&owner.uid, rv);
    let previous = freshest(tr.status.as_ref(), rv, pending_write.as_ref());
    let status_is_current = previous.is_some_and(|s| s.context_version == Some(version));

    let superseded = if may_own_other_versions(previous, tr.metadata.generation, version) {
        delete_other_versions(tr, ctx, &kids, &owner.uid, &job_name, &config_map_name).await?
    } else {
        Vec::new()
    };

    let mut job_created = false;
    let agents = ctx.agents.current();
    let outcome = match agents.resolve(&tr.spec.agent_name) {
        Err(unknown) => Outcome::AgentNotFound {
            message: unknown.to_string(),
        },
        Ok(_) if status_is_current && finished(previous, &job_name) => Outcome::Finished,
        Ok(profile) => {
            ensure_config_map(tr, ctx, &kids, &owner).await?;
            let (state, created) = ensure_job(tr, ctx, &kids, &profile, &owner).await?;
            job_created = created;
            Outcome::Job { state, superseded }
        }
    };
    let deferred =
        job_created && matches!(&outcome, Outcome::Job { superseded, .. } if superseded.is_empty());
    let observation = Observation {
        generation: tr.metadata.generation,
        context_version: version,
        job_name,
        config_map_name,
        outcome,
    };
    let now = format_time(k8s_openapi::jiff::Timestamp::now());
    let next = task_run_status(previous, &observation, &now);
    let phase = next.phase.unwrap_or_default();
    if deferred {
        // A Job created a moment ago has no status yet: its controller's first update (a Job
        // event) triggers the next reconcile, which writes Pending or Running in one go.
        ctx.metrics.observe_phase(&owner.uid, phase);
        return Ok(Action::requeue(REQUEUE_AFTER_CREATE));
    }
    if needs_write(previous, &next) {
        let stored = write_status(api, &tr.name_any(), &next).await?;
        ctx.written.remember(
            &owner.uid,
            stored.metadata.resource_version.as_deref(),
            next.clone(),
        );
        if !status_is_current {
            ctx.metrics.taskrun.inc();
        }
        publish_outcome(tr, ctx, previous, &next, status_is_current).await;
    }
    ctx.metrics.observe_phase(&owner.uid, phase);
    Ok(if phase.is_terminal() {
        Action::await_change()
    } else {
        Action::requeue(REQUEUE_ACTIVE)
    })
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

/// The status already records a finished run of this very Job: nothing is (re)created, even if
/// the Job has since been removed by its ttlSecondsAfterFinished.
fn finished(previous: Option<&TaskRunStatus>, job_name: &str) -> bool {
    previous.is_some_and(|s| {
        s.job_name.as_deref() == Some(job_name) && s.phase.is_some_and(TaskPhase::is_terminal)
    })
}

async fn publish_outcome(
    tr: &TaskRun,
    ctx: &Context,
    previous: Option<&TaskRunStatus>,
    next: &TaskRunStatus,
    same_version: bool,
) {
    let was_terminal = same_version
        && previous.is_some_and(|s| s.phase.is_some_and(TaskPhase::is_terminal))
        && previous.and_then(|s| s.job_name.as_ref()) == next.job_name.as_ref();
    let Some(phase) = next.phase else { return };
    if !phase.is_terminal() || was_terminal {
        return;
    }
    let not_found = next.conditions.iter().any(|c| {
        c.type_ == reasons::CONDITION_SUCCEEDED
            && c.reason.as_deref() == Some(reasons::REASON_AGENT_NOT_FOUND)
    });
    let reason = match phase {
        _ if not_found => EventReason::AgentNotFound,
        TaskPhase::Succeeded => EventReason::Succeeded,
        _ => EventReason::Failed,
    };
    let note = next.message.clone().unwrap_or_else(|| phase.to_string());
    let job = next.job_name.as_ref().map(|name| ObjectReference {
        api_version: Some("batch/v1".to_string()),
        kind: Some("Job".to_string()),
        name: Some(name.clone()),
        namespace: tr.namespace(),
        ..ObjectReference::default()
    });
    publish(&ctx.recorder, tr, reason, note, job).await;
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

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER_CONTROLLER).force()
}

async fn ensure_config_map(
    tr: &TaskRun,
    ctx: &Context,
    kids: &Children,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Result<(), Error> {
    let desired = build_config_map(tr, owner);
    let name = desired.metadata.name.clone().unwrap_or_default();
    let live = kids
        .config_maps
        .get_opt(&name)
        .await
        .map_err(|source| Error::GetChild {
            kind: "ConfigMap",
            name: name.clone(),
            source,
        })?;
    let created = match &live {
        Some(live) if !is_controlled_by(&live.metadata, &owner.uid) => {
            return Err(Error::ForeignChild {
                kind: "ConfigMap",
                name,
                task_run: tr.name_any(),
            });
        }
        Some(live) if spec_hash_of(&live.metadata) == spec_hash_of(&desired.metadata) => {
            return Ok(());
        }
        Some(_) => false,
        None => true,
    };
    // Absent, or holding other content: server-side apply makes it exactly ours.
    let applied = kids
        .config_maps
        .patch(&name, &apply_params(), &Patch::Apply(&desired))
        .await
        .map_err(|source| Error::ApplyChild {
            kind: "ConfigMap",
            name: name.clone(),
            source,
        })?;
    let files = tr.spec.markdown_files.len();
    if created {
        info!(config_map = %name, "created ConfigMap");
        publish(
            &ctx.recorder,
            tr,
            EventReason::ConfigMapCreated,
            format!("Created ConfigMap {name} with {files} markdown file(s)"),
            Some(related(&applied)),
        )
        .await;
    } else {
        info!(config_map = %name, "replaced the content of ConfigMap");
    }
    Ok(())
}

/// The current version's Job as it is now, and whether this reconcile created it.
async fn ensure_job(
    tr: &TaskRun,
    ctx: &Context,
    kids: &Children,
    profile: &ResolvedProfile<'_>,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Result<(JobState, bool), Error> {
    let desired = build_job(tr, profile, owner);
    let name = desired.metadata.name.clone().unwrap_or_default();
    let live = kids
        .jobs
        .get_opt(&name)
        .await
        .map_err(|source| Error::GetChild {
            kind: "Job",
            name: name.clone(),
            source,
        })?;
    match live {
        Some(live) if !is_controlled_by(&live.metadata, &owner.uid) => Err(Error::ForeignChild {
            kind: "Job",
            name,
            task_run: tr.name_any(),
        }),
        Some(live) => {
            if spec_hash_of(&live.metadata) != spec_hash_of(&desired.metadata) {
                report_outdated(tr, ctx, &live, profile).await;
            }
            Ok((job_phase(&live), false))
        }
        None => {
            let created = kids
                .jobs
                .patch(&name, &apply_params(), &Patch::Apply(&desired))
                .await
                .map_err(|source| Error::ApplyChild {
                    kind: "Job",
                    name: name.clone(),
                    source,
                })?;
            ctx.metrics.jobs_created.inc();
            info!(job = %name, agent = profile.name, "created Job");
            publish(
                &ctx.recorder,
                tr,
                EventReason::JobCreated,
                format!(
                    "Created Job {name} running agent {} ({})",
                    profile.name, profile.profile.image
                ),
                Some(related(&created)),
            )
            .await;
            Ok((job_phase(&created), true))
        }
    }
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

/// Deletes this TaskRun's Jobs and ConfigMaps other than the current version's; returns the
/// names of Jobs that were still running and have been stopped.
async fn delete_other_versions(
    tr: &TaskRun,
    ctx: &Context,
    kids: &Children,
    uid: &str,
    job_name: &str,
    config_map_name: &str,
) -> Result<Vec<String>, Error> {
    let task_id = tr.spec.task_id;
    let old_jobs: Vec<Job> = owned(&kids.jobs, "Job", task_id, uid)
        .await?
        .into_iter()
        .filter(|j| j.name_any() != job_name)
        .collect();
    let old_config_maps: Vec<ConfigMap> = owned(&kids.config_maps, "ConfigMap", task_id, uid)
        .await?
        .into_iter()
        .filter(|c| c.name_any() != config_map_name)
        .collect();
    let mut stopped = Vec::new();
    let mut deleted = Vec::new();
    for job in &old_jobs {
        let name = job.name_any();
        delete(&kids.jobs, "Job", &name).await?;
        if !job_phase(job).phase.is_terminal() {
            let from = job
                .labels()
                .get(crate::names::LABEL_CONTEXT_VERSION)
                .cloned()
                .unwrap_or_default();
            publish(
                &ctx.recorder,
                tr,
                EventReason::JobSuperseded,
                format!(
                    "Stopped Job {name} (context version {from}): superseded by context version {}",
                    tr.spec.context_version
                ),
                Some(related(job)),
            )
            .await;
            stopped.push(name);
        } else {
            deleted.push(name);
        }
    }
    for cm in &old_config_maps {
        let name = cm.name_any();
        delete(&kids.config_maps, "ConfigMap", &name).await?;
        deleted.push(name);
    }
    if !deleted.is_empty() {
        publish(
            &ctx.recorder,
            tr,
            EventReason::OldVersionDeleted,
            format!("Deleted {} of older context versions", deleted.join(", ")),
            None,
        )
        .await;
    }
    Ok(stopped)
}

/// Children of this task (label task-id) that this very TaskRun controls; another task's
/// objects, or a same-id object someone else owns, never match.
async fn owned<K>(
    api: &Api<K>,
    kind: &'static str,
    task_id: i64,
    uid: &str,
) -> Result<Vec<K>, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let list = api
        .list(&ListParams::default().labels(&format!("{LABEL_TASK_ID}={task_id}")))
        .await
        .map_err(|source| Error::ListChildren {
            kind,
            task_id,
            source,
        })?;
    Ok(list
        .items
        .into_iter()
        .filter(|o| is_controlled_by(o.meta(), uid))
        .collect())
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

/// The TaskRun is being deleted: remove its Jobs (and so their pods) and ConfigMaps, then let the
/// finalizer go.
async fn cleanup(tr: &TaskRun, ctx: &Context) -> Result<Action, Error> {
    let Some(uid) = tr.uid() else {
        return Ok(Action::await_change());
    };
    let ns = tr.namespace().unwrap_or_default();
    let kids = Children::new(&ctx.client, &ns);
    let task_id = tr.spec.task_id;
    let jobs = owned(&kids.jobs, "Job", task_id, &uid).await?;
    let config_maps = owned(&kids.config_maps, "ConfigMap", task_id, &uid).await?;
    for job in &jobs {
        delete(&kids.jobs, "Job", &job.name_any()).await?;
    }
    for cm in &config_maps {
        delete(&kids.config_maps, "ConfigMap", &cm.name_any()).await?;
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
