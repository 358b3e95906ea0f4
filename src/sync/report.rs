//! The outcome of one sync attempt, read by the notes writer, the API and the metrics.

use crate::desired::DesiredTaskRun;
use crate::health::SyncStatus;
use crate::source::snapshot::{ContentDigest, FolderError, Revision};
use crate::sync::plan::{Action, SyncPlan};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// What one sync of one revision did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// The revision this attempt tried to apply.
    pub revision: Revision,
    pub status: SyncStatus,
    /// The last revision that was applied without errors, if any.
    pub applied_revision: Option<Revision>,
    /// The TaskRuns this revision describes, by task id. A re-sync that left them as they were
    /// shares the previous report's list (see [`SyncReport::from_plan`]).
    pub tasks: Arc<[SyncedTask]>,
    /// Folders that did not parse.
    pub folder_errors: Vec<FolderError>,
    /// Writes that failed, one per task.
    pub apply_errors: Vec<ApplyError>,
    pub created: usize,
    pub updated: usize,
    pub pruned: usize,
    pub unchanged: usize,
    /// RFC 3339.
    pub synced_at: String,
}

/// One TaskRun a revision describes, as the sync left it. Its strings are the desired TaskRun's
/// own, not copies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedTask {
    pub task_id: i64,
    pub name: Arc<str>,
    pub context_version: i64,
    pub digest: ContentDigest,
    pub path: Arc<str>,
}

/// A write that failed for one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyError {
    pub name: String,
    pub message: String,
}

/// The latest report, published by the sync loop and read by the API and `--until-done` (the notes
/// writer reads every report through `LoopOutputs::every_report`).
/// `None` until the first sync finished.
pub type ReportReceiver = tokio::sync::watch::Receiver<Option<SyncReport>>;
pub type ReportSender = tokio::sync::watch::Sender<Option<SyncReport>>;

/// A channel holding no report yet.
pub fn report_channel() -> (ReportSender, ReportReceiver) {
    tokio::sync::watch::channel(None)
}

impl SyncReport {
    /// The report of a carried-out plan. `failures` are the writes that failed; conflicts and
    /// TaskRuns still being deleted are recorded as errors too, because the cluster does not
    /// hold what the revision describes. Synced means: no folder errors and no errors of any
    /// write; then `revision` becomes the applied revision, else `previously_applied` stays.
    /// After a report that listed `previous`, a plan that leaves the same TaskRuns (a no-op
    /// re-sync) shares that list instead of building another.
    pub fn from_plan(
        previous: Option<&Arc<[SyncedTask]>>,
        revision: &Revision,
        plan: &SyncPlan,
        folder_errors: &[FolderError],
        failures: Vec<ApplyError>,
        previously_applied: Option<Revision>,
        synced_at: String,
    ) -> Self {
        let failed: HashSet<&str> = failures.iter().map(|f| f.name.as_str()).collect();
        let ok = |pred: fn(&Action) -> bool| {
            plan.steps
                .iter()
                .filter(|s| pred(&s.action) && !failed.contains(&*s.name))
                .count()
        };
        let (created, updated, pruned, unchanged) = (
            ok(|a| matches!(a, Action::Create)),
            ok(|a| matches!(a, Action::Update(_))),
            ok(|a| matches!(a, Action::Prune { .. })),
            ok(|a| matches!(a, Action::Unchanged)),
        );
        let mut apply_errors = failures.clone();
        for step in &plan.steps {
            let message = match &step.action {
                Action::Conflict { owner } => format!(
                    "{} already exists and is owned by another source ({owner}); give the task \
                     another id, remove it from the other source, or adopt it here by removing its \
                     mark: kubectl label taskrun {} {}-",
                    step.name,
                    step.name,
                    crate::names::LABEL_SOURCE
                ),
                Action::WaitForDeletion => format!(
                    "{} is being deleted; the next sync creates it again once it is gone",
                    step.name
                ),
                _ => continue,
            };
            apply_errors.push(ApplyError {
                name: step.name.to_string(),
                message,
            });
        }
        apply_errors.sort_by(|a, b| a.name.cmp(&b.name));
        let status = if apply_errors.is_empty() && folder_errors.is_empty() {
            SyncStatus::Synced
        } else {
            SyncStatus::OutOfSync
        };
        let tasks = synced_tasks(plan, previous);
        SyncReport {
            revision: revision.clone(),
            status,
            applied_revision: match status {
                SyncStatus::Synced => Some(revision.clone()),
                _ => previously_applied,
            },
            tasks,
            folder_errors: folder_errors.to_vec(),
            apply_errors,
            created,
            updated,
            pruned,
            unchanged,
            synced_at,
        }
    }

    /// The report of an attempt that could not compare at all (the cluster did not answer):
    /// status Unknown, nothing counted, the error recorded under `what`.
    pub fn unknown(
        revision: &Revision,
        what: &str,
        message: String,
        previously_applied: Option<Revision>,
        synced_at: String,
    ) -> Self {
        SyncReport {
            revision: revision.clone(),
            status: SyncStatus::Unknown,
            applied_revision: previously_applied,
            tasks: Arc::new([]),
            folder_errors: vec![],
            apply_errors: vec![ApplyError {
                name: what.to_string(),
                message,
            }],
            created: 0,
            updated: 0,
            pruned: 0,
            unchanged: 0,
            synced_at,
        }
    }
}

/// The TaskRuns `plan` leaves, as a report lists them: `previous` itself when it lists the same.
fn synced_tasks(plan: &SyncPlan, previous: Option<&Arc<[SyncedTask]>>) -> Arc<[SyncedTask]> {
    let desired = || plan.steps.iter().filter_map(|s| s.desired.as_ref());
    if let Some(previous) = previous
        && previous.len() == desired().count()
        && previous.iter().zip(desired()).all(|(task, d)| {
            task.task_id == d.task_id
                && task.context_version == d.context_version
                && task.name == d.name
                && task.digest == *d.digest()
                && task.path == d.source_path
        })
    {
        return previous.clone();
    }
    // Collected from a slice, so that the list is allocated once at its size: `collect` from
    // a filtering iterator would grow a `Vec` by doubling and then copy it (three lists' worth
    // at once, 15 MiB at 100,000 tasks, at the peak of a first sync).
    let mut desired_runs: Vec<&Arc<DesiredTaskRun>> = Vec::with_capacity(plan.steps.len());
    desired_runs.extend(desired());
    desired_runs
        .iter()
        .map(|d| SyncedTask {
            task_id: d.task_id,
            name: d.name.clone(),
            context_version: d.context_version,
            digest: d.digest().clone(),
            path: d.source_path.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::tests::{folder, live_after, revision, snapshot, source};
    use crate::desired::{KnownTaskRuns, desired_task_runs};
    use crate::sync::plan::{PlanInput, plan};

    fn planned(snap: &crate::source::snapshot::SourceSnapshot, live: &KnownTaskRuns) -> SyncPlan {
        let desired = desired_task_runs(snap, &source(), "default", live);
        plan(PlanInput {
            legacy_owner: None,
            desired: &desired,
            live,
            folder_errors: &snap.errors,
            source_label: &source().label_value(),
            prune: true,
            settled: None,
        })
    }

    #[test]
    fn a_report_that_lists_the_same_task_runs_shares_the_previous_list() {
        let snap = snapshot('1', vec![folder(1, "a"), folder(2, "b")]);
        let live = live_after(&snap, &KnownTaskRuns::new());
        let report = |plan: &SyncPlan, previous: Option<&Arc<[SyncedTask]>>| {
            SyncReport::from_plan(
                previous,
                &snap.revision,
                plan,
                &[],
                vec![],
                None,
                "t".into(),
            )
        };
        let first = report(&planned(&snap, &KnownTaskRuns::new()), None);
        // The re-sync plans against what the first one wrote: every task unchanged.
        let again = report(&planned(&snap, &live), Some(&first.tasks));
        assert!(Arc::ptr_eq(&first.tasks, &again.tasks));
        // Its strings are the desired TaskRuns' own.
        let plan = planned(&snap, &live);
        let desired = plan.steps[0].desired.as_ref().unwrap();
        let listed = report(&plan, None);
        assert!(Arc::ptr_eq(&listed.tasks[0].name, &desired.name));
        assert!(Arc::ptr_eq(&listed.tasks[0].path, &desired.source_path));
        assert!(Arc::ptr_eq(&listed.tasks[0].digest.0, &desired.digest().0));

        // A new version of one task, one task fewer or one more: a list of its own.
        for (changed, want) in [
            (vec![folder(1, "a2"), folder(2, "b")], vec![(1, 2), (2, 1)]),
            (vec![folder(1, "a")], vec![(1, 1)]),
            (
                vec![folder(1, "a"), folder(2, "b"), folder(3, "c")],
                vec![(1, 1), (2, 1), (3, 1)],
            ),
        ] {
            let changed = snapshot('2', changed);
            let next = SyncReport::from_plan(
                Some(&first.tasks),
                &changed.revision,
                &planned(&changed, &live),
                &[],
                vec![],
                None,
                "t".into(),
            );
            assert!(!Arc::ptr_eq(&first.tasks, &next.tasks));
            let versions: Vec<(i64, i64)> = next
                .tasks
                .iter()
                .map(|t| (t.task_id, t.context_version))
                .collect();
            assert_eq!(versions, want);
        }
    }

    #[test]
    fn a_clean_sync_is_synced_and_advances_the_applied_revision() {
        let live = live_after(
            &snapshot('1', vec![folder(1, "a"), folder(2, "b")]),
            &KnownTaskRuns::new(),
        );
        let snap = snapshot('2', vec![folder(1, "a2"), folder(3, "c")]);
        let report = SyncReport::from_plan(
            None,
            &snap.revision,
            &planned(&snap, &live),
            &snap.errors,
            vec![],
            Some(revision('1')),
            "t".into(),
        );
        assert_eq!(report.status, SyncStatus::Synced);
        assert_eq!(report.applied_revision, Some(revision('2')));
        assert_eq!(
            (
                report.created,
                report.updated,
                report.pruned,
                report.unchanged
            ),
            (1, 1, 1, 0)
        );
        let versions: Vec<(i64, i64)> = report
            .tasks
            .iter()
            .map(|t| (t.task_id, t.context_version))
            .collect();
        assert_eq!(versions, vec![(1, 2), (3, 1)]);
    }

    #[test]
    fn a_failed_write_or_a_broken_folder_is_out_of_sync_and_keeps_the_applied_revision() {
        let snap = snapshot('2', vec![folder(1, "a"), folder(2, "b")]);
        let plan = planned(&snap, &KnownTaskRuns::new());
        let failure = ApplyError {
            name: "task-2".into(),
            message: "denied".into(),
        };
        let report = SyncReport::from_plan(
            None,
            &snap.revision,
            &plan,
            &[],
            vec![failure.clone()],
            Some(revision('1')),
            "t".into(),
        );
        assert_eq!(report.status, SyncStatus::OutOfSync);
        assert_eq!(report.applied_revision, Some(revision('1')));
        assert_eq!(report.created, 1, "only the write that worked counts");
        assert_eq!(report.apply_errors, vec![failure]);

        let broken = FolderError {
            folder: "tasks/9-x".into(),
            file: None,
            task_id: Some(9),
            message: "no task.yaml".into(),
        };
        let report = SyncReport::from_plan(
            None,
            &snap.revision,
            &plan,
            &[broken],
            vec![],
            None,
            "t".into(),
        );
        assert_eq!(report.status, SyncStatus::OutOfSync);
        assert_eq!(report.applied_revision, None);
    }
}
