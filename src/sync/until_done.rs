//! `--until-done`: the latest sync report and the live TaskRuns in; whether every task reached
//! a terminal phase, the status table and the exit code out (pure), plus the wait that polls.

use crate::crd::{TaskPhase, TaskRun};
use crate::desired::LiveTaskRuns;
use crate::health::SyncStatus;
use crate::sync::report::SyncReport;
use std::fmt::Write as _;

/// Exit codes of `orchestrator run --until-done`.
pub const EXIT_OK: i32 = 0;
/// Some task Failed.
pub const EXIT_TASK_FAILED: i32 = 1;
/// The sync did not reach Synced (a broken folder, a conflict): the table lists the errors.
pub const EXIT_OUT_OF_SYNC: i32 = 2;
/// The revision could not be read on the first fetch (branch, path, URL): nothing was synced.
/// The same code as a broken folder: the repository is not in a state that can be synced.
pub const EXIT_SOURCE_ERROR: i32 = 2;
/// Nothing would run the tasks: no agent profiles, a task's agent without a profile, or no
/// controller picking the TaskRuns up.
pub const EXIT_NOT_RUNNABLE: i32 = 4;

/// Whether every task of the report has a TaskRun at the report's contextVersion: what a cache
/// that trails the sync shows once it has caught up.
pub fn all_applied(report: &SyncReport, live: &LiveTaskRuns) -> bool {
    report.tasks.iter().all(|task| {
        live.get(&*task.name)
            .is_some_and(|tr| tr.spec.context_version == task.context_version)
    })
}

/// Whether every task of the report has a TaskRun whose status describes its current
/// contextVersion and is Succeeded or Failed.
pub fn all_terminal(report: &SyncReport, live: &LiveTaskRuns) -> bool {
    report.tasks.iter().all(|task| {
        live.get(&*task.name)
            .and_then(|tr| tr.status.as_ref())
            .is_some_and(|s| {
                s.phase.is_some_and(TaskPhase::is_terminal)
                    && s.context_version.is_none_or(|v| v == task.context_version)
            })
    })
}

/// 1 when a task Failed, else 2 when the sync is not Synced, else 0.
pub fn exit_code(report: &SyncReport, live: &LiveTaskRuns) -> i32 {
    let failed = report
        .tasks
        .iter()
        .any(|t| phase_of(live.get(&*t.name)) == Some(TaskPhase::Failed));
    if failed {
        EXIT_TASK_FAILED
    } else if report.status != SyncStatus::Synced {
        EXIT_OUT_OF_SYNC
    } else {
        EXIT_OK
    }
}

fn phase_of(tr: Option<&TaskRun>) -> Option<TaskPhase> {
    tr.and_then(|tr| tr.status.as_ref()).and_then(|s| s.phase)
}

/// The RESULT column's width (the TaskRun's status.result has it whole).
pub const RESULT_WIDTH: usize = 40;
/// Lines of a Failed task's log printed after the table.
pub const FAILED_LOG_LINES: i64 = 20;

/// The TaskRuns of the report that Failed at the report's contextVersion, by task id: whose
/// log tail `--until-done` prints after the table.
pub fn failed_task_runs<'a>(report: &SyncReport, live: &'a LiveTaskRuns) -> Vec<&'a TaskRun> {
    report
        .tasks
        .iter()
        .filter_map(|t| live.get(&*t.name))
        .filter(|tr| phase_of(Some(tr)) == Some(TaskPhase::Failed))
        .collect()
}

/// The table printed at the end: one row per task, then the sync's errors.
pub fn status_table(report: &SyncReport, live: &LiveTaskRuns) -> String {
    let mut rows = vec![[
        "TASK".to_string(),
        "TASKRUN".into(),
        "VERSION".into(),
        "PHASE".into(),
        "ATTEMPTS".into(),
        "JOB".into(),
        "RESULT".into(),
        "MESSAGE".into(),
    ]];
    for task in report.tasks.iter() {
        let status = live.get(&*task.name).and_then(|tr| tr.status.clone());
        let status = status.unwrap_or_default();
        rows.push([
            task.task_id.to_string(),
            task.name.to_string(),
            task.context_version.to_string(),
            status.phase.map_or("-".into(), |p| p.to_string()),
            status.attempts.to_string(),
            status.job_name.unwrap_or_else(|| "-".into()),
            crate::text_table::short_cell(status.result.as_deref(), RESULT_WIDTH),
            status.message.unwrap_or_default().replace('\n', " "),
        ]);
    }
    let mut out = crate::text_table::aligned(&rows);
    let _ = writeln!(
        out,
        "\nrevision {}: {} ({} created, {} updated, {} pruned, {} unchanged)",
        report.revision,
        report.status,
        report.created,
        report.updated,
        report.pruned,
        report.unchanged
    );
    for error in &report.folder_errors {
        let _ = writeln!(out, "folder error: {error}");
    }
    for error in &report.apply_errors {
        let _ = writeln!(out, "sync error: {}: {}", error.name, error.message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TaskRunStatus;
    use crate::desired::tests::{folder, snapshot, task_runs_after};
    use crate::desired::{KnownTaskRuns, LiveTaskRuns, desired_task_runs};
    use crate::sync::plan::{PlanInput, plan};

    fn synced(live: &LiveTaskRuns) -> SyncReport {
        let snap = snapshot('1', vec![folder(1, "a"), folder(2, "b")]);
        let source = crate::desired::tests::source();
        let live: KnownTaskRuns = live
            .iter()
            .map(|(name, tr)| (name.as_str().into(), tr.clone().into()))
            .collect();
        let desired = desired_task_runs(&snap, &source, "default", &live);
        let p = plan(PlanInput {
            legacy_owner: None,
            desired: &desired,
            live: &live,
            folder_errors: &[],
            source_label: &source.label_value(),
            prune: true,
            settled: None,
        });
        SyncReport::from_plan(None, &snap.revision, &p, &[], vec![], None, "t".into())
    }

    fn with_phases(phases: &[Option<(TaskPhase, i64)>]) -> LiveTaskRuns {
        let mut live = task_runs_after(
            &snapshot('1', vec![folder(1, "a"), folder(2, "b")]),
            &KnownTaskRuns::new(),
        );
        for (i, phase) in phases.iter().enumerate() {
            let tr = live.get_mut(&format!("task-{}", i + 1)).unwrap();
            tr.status = phase.map(|(p, v)| TaskRunStatus {
                phase: Some(p),
                context_version: Some(v),
                attempts: 1,
                job_name: Some(format!("web-{}-v{v}", i + 1)),
                ..Default::default()
            });
        }
        live
    }

    #[test]
    fn done_and_exit_code_table() {
        use TaskPhase::*;
        let cases = [
            ("no status yet", vec![None, None], false, EXIT_OK),
            (
                "one running",
                vec![Some((Succeeded, 1)), Some((Running, 1))],
                false,
                EXIT_OK,
            ),
            (
                "a terminal phase of an older version does not count",
                vec![Some((Succeeded, 1)), Some((Succeeded, 0))],
                false,
                EXIT_OK,
            ),
            (
                "all succeeded",
                vec![Some((Succeeded, 1)), Some((Succeeded, 1))],
                true,
                EXIT_OK,
            ),
            (
                "one failed",
                vec![Some((Succeeded, 1)), Some((Failed, 1))],
                true,
                EXIT_TASK_FAILED,
            ),
        ];
        for (what, phases, done, code) in cases {
            let live = with_phases(&phases);
            let report = synced(&live);
            assert_eq!(all_terminal(&report, &live), done, "{what}");
            assert_eq!(exit_code(&report, &live), code, "{what}");
        }
    }

    #[test]
    fn the_table_shows_each_result_shortened_and_failed_tasks_are_picked() {
        let mut live = with_phases(&[
            Some((TaskPhase::Succeeded, 1)),
            Some((TaskPhase::Failed, 1)),
        ]);
        live.get_mut("task-1")
            .unwrap()
            .status
            .as_mut()
            .unwrap()
            .result = Some("opened PR #12: the login page, its tests and the docs for it".into());
        let report = synced(&live);
        let table = status_table(&report, &live);
        let header = table.lines().next().unwrap();
        assert!(header.contains("JOB       RESULT"), "{table}");
        assert!(
            table.contains("opened PR #12: the login page, its test…"),
            "{table}"
        );
        let failed: Vec<_> = failed_task_runs(&report, &live)
            .iter()
            .map(|tr| tr.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(failed, ["task-2"]);
    }

    #[test]
    fn applied_means_every_task_at_the_reports_version() {
        let live = with_phases(&[None, None]);
        let report = synced(&live);
        let mut missing = live.clone();
        missing.remove("task-2");
        let mut older = live.clone();
        older.get_mut("task-2").unwrap().spec.context_version = 0;
        for (what, live, want) in [
            ("every TaskRun at its version", &live, true),
            ("one not in the cache yet", &missing, false),
            ("one at an older version", &older, false),
        ] {
            assert_eq!(all_applied(&report, live), want, "{what}");
        }
    }

    #[test]
    fn an_out_of_sync_report_exits_2_and_lists_its_errors() {
        let live = with_phases(&[
            Some((TaskPhase::Succeeded, 1)),
            Some((TaskPhase::Succeeded, 1)),
        ]);
        let mut report = synced(&live);
        report.status = SyncStatus::OutOfSync;
        report
            .folder_errors
            .push(crate::source::snapshot::FolderError {
                folder: "tasks/3-x".into(),
                file: Some("task.yaml".into()),
                task_id: Some(3),
                message: "agentName is missing".into(),
            });
        assert_eq!(exit_code(&report, &live), EXIT_OUT_OF_SYNC);
        let table = status_table(&report, &live);
        assert!(
            table.starts_with("TASK  TASKRUN  VERSION  PHASE"),
            "{table}"
        );
        assert!(
            table.contains("task-2   1        Succeeded  1         web-2-v1  -"),
            "{table}"
        );
        assert!(failed_task_runs(&report, &live).is_empty());
        assert!(
            table.contains("folder error: tasks/3-x/task.yaml: agentName is missing"),
            "{table}"
        );
    }
}
