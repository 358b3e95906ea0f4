//! The Argo CD vocabulary shared by the sync, the notes and the API: task phases in, sync status
//! and health out.

use crate::controller::reasons::CONDITION_STALLED;
use crate::crd::TaskPhase;
use serde::{Deserialize, Serialize};

/// Whether the cluster holds exactly what a revision describes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncStatus {
    Synced,
    OutOfSync,
    Unknown,
}

/// How the tasks of a revision are doing.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// Every task Succeeded.
    Healthy,
    /// Some task is Pending or Running, none Failed.
    Progressing,
    /// Some task Failed.
    Degraded,
    /// A task has no TaskRun (or no status) yet.
    Missing,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Synced => "Synced",
            SyncStatus::OutOfSync => "OutOfSync",
            SyncStatus::Unknown => "Unknown",
        }
    }
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Progressing => "Progressing",
            Health::Degraded => "Degraded",
            Health::Missing => "Missing",
        }
    }
}

impl std::fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Health of a set of tasks; `None` stands for a task whose TaskRun or phase is not there yet.
/// Degraded wins over Missing, Missing over Progressing; no tasks at all is Healthy. A Stalled
/// task counts only through [`assess`].
pub fn health_of<I>(phases: I) -> Health
where
    I: IntoIterator<Item = Option<TaskPhase>>,
{
    assess(phases.into_iter().map(|phase| TaskHealth {
        phase,
        ..TaskHealth::default()
    }))
    .health
}

/// One task as its health counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskHealth<'a> {
    /// The TaskRun's name, for the reason.
    pub name: &'a str,
    /// `None`: no TaskRun, or no status for this contextVersion, yet.
    pub phase: Option<TaskPhase>,
    /// `status.reason` (BackoffLimitExceeded, FailedCreate, …).
    pub reason: Option<&'a str>,
    /// The Stalled condition is True on a run that has not ended: blocked past its profile's
    /// stallAfter, waiting for someone to fix what its reason names.
    pub stalled: bool,
}

/// The health of a set of tasks and, when Degraded, why: the tasks at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub health: Health,
    /// For Degraded: `task-3 Failed (BackoffLimitExceeded); task-5 Stalled (FailedCreate)`,
    /// at most [`MAX_NAMED`] tasks named.
    pub reason: Option<String>,
}

/// Tasks a Degraded reason names before it says how many more there are.
pub const MAX_NAMED: usize = 3;

/// Health of a set of tasks: Degraded when a task Failed or is Stalled (a Stalled task waits for
/// a person, as a failed one does), then Missing, Progressing, Healthy. Pure.
pub fn assess<'a, I>(tasks: I) -> Assessment
where
    I: IntoIterator<Item = TaskHealth<'a>>,
{
    let (mut missing, mut progressing) = (false, false);
    let mut faults = Vec::new();
    for task in tasks {
        let what = match task.phase {
            Some(TaskPhase::Failed) => Some("Failed"),
            Some(TaskPhase::Pending | TaskPhase::Running) if task.stalled => Some("Stalled"),
            None => {
                missing = true;
                None
            }
            Some(TaskPhase::Pending | TaskPhase::Running) => {
                progressing = true;
                None
            }
            Some(TaskPhase::Succeeded) => None,
        };
        if let Some(what) = what {
            faults.push(match task.reason.filter(|r| !r.is_empty() && *r != what) {
                Some(reason) => format!("{} {what} ({reason})", task.name),
                None => format!("{} {what}", task.name),
            });
        }
    }
    if !faults.is_empty() {
        let more = faults.len().saturating_sub(MAX_NAMED);
        faults.truncate(MAX_NAMED);
        let mut reason = faults.join("; ");
        if more > 0 {
            reason.push_str(&format!("; and {more} more"));
        }
        return Assessment {
            health: Health::Degraded,
            reason: Some(reason),
        };
    }
    let health = if missing {
        Health::Missing
    } else if progressing {
        Health::Progressing
    } else {
        Health::Healthy
    };
    Assessment {
        health,
        reason: None,
    }
}

/// The blocking reason of a run whose Stalled condition is True and that has not ended (a
/// Failed run's Stalled condition is kstatus's "will not progress", which its phase says
/// already).
pub fn stalled_reason(status: &crate::crd::TaskRunStatus) -> Option<&str> {
    if status.phase.is_some_and(TaskPhase::is_terminal) {
        return None;
    }
    status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_STALLED && c.status == "True")
        .map(|c| c.reason.as_deref().unwrap_or("Stalled"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskPhase::*;

    #[test]
    fn health_table() {
        let cases: &[(&[Option<TaskPhase>], Health)] = &[
            (&[], Health::Healthy),
            (&[Some(Succeeded), Some(Succeeded)], Health::Healthy),
            (&[Some(Succeeded), Some(Running)], Health::Progressing),
            (&[Some(Pending)], Health::Progressing),
            (&[Some(Running), None], Health::Missing),
            (&[None, Some(Failed)], Health::Degraded),
            (
                &[Some(Succeeded), Some(Failed), Some(Running)],
                Health::Degraded,
            ),
        ];
        for (phases, want) in cases {
            assert_eq!(health_of(phases.iter().copied()), *want, "{phases:?}");
        }
    }

    #[test]
    fn a_stalled_task_degrades_with_its_reason() {
        let t = |name, phase, reason, stalled| TaskHealth {
            name,
            phase,
            reason,
            stalled,
        };
        let stalled = t("task-5", Some(Pending), Some("FailedCreate"), true);
        let failed = t("task-3", Some(Failed), Some("BackoffLimitExceeded"), false);
        let blocked = t("task-6", Some(Pending), Some("FailedCreate"), false);
        let running = t("task-7", Some(Running), None, false);
        let done = t("task-8", Some(Succeeded), None, false);
        let none = t("task-9", None, None, false);
        let cases: Vec<(Vec<TaskHealth>, Health, Option<&str>)> = vec![
            // Blocked under the threshold is still Progressing.
            (vec![blocked, done], Health::Progressing, None),
            (
                vec![stalled, running],
                Health::Degraded,
                Some("task-5 Stalled (FailedCreate)"),
            ),
            // Stalled wins over Missing, as Failed does.
            (
                vec![none, stalled],
                Health::Degraded,
                Some("task-5 Stalled (FailedCreate)"),
            ),
            (
                vec![failed, stalled, done],
                Health::Degraded,
                Some("task-3 Failed (BackoffLimitExceeded); task-5 Stalled (FailedCreate)"),
            ),
            (
                vec![t("task-1", Some(Failed), None, false)],
                Health::Degraded,
                Some("task-1 Failed"),
            ),
            (
                vec![t("task-1", Some(Failed), Some("Failed"), false)],
                Health::Degraded,
                Some("task-1 Failed"),
            ),
            (
                vec![failed, failed, failed, stalled, stalled],
                Health::Degraded,
                Some(
                    "task-3 Failed (BackoffLimitExceeded); task-3 Failed (BackoffLimitExceeded); \
                     task-3 Failed (BackoffLimitExceeded); and 2 more",
                ),
            ),
            // A Succeeded run's leftover Stalled flag does not count.
            (
                vec![t("task-2", Some(Succeeded), None, true)],
                Health::Healthy,
                None,
            ),
            (vec![none, running], Health::Missing, None),
        ];
        for (tasks, health, reason) in cases {
            let got = assess(tasks.iter().copied());
            assert_eq!(
                (got.health, got.reason.as_deref()),
                (health, reason),
                "{tasks:?}"
            );
        }
    }

    #[test]
    fn only_a_run_that_has_not_ended_is_stalled() {
        use crate::crd::{TaskRunCondition, TaskRunStatus};
        let status = |phase, truth: &str| TaskRunStatus {
            phase: Some(phase),
            conditions: vec![TaskRunCondition {
                type_: CONDITION_STALLED.into(),
                status: truth.into(),
                reason: Some("ImagePullBackOff".into()),
                last_transition_time: "2026-01-01T00:00:00Z".into(),
                message: None,
            }],
            ..TaskRunStatus::default()
        };
        assert_eq!(
            stalled_reason(&status(Pending, "True")),
            Some("ImagePullBackOff")
        );
        assert_eq!(stalled_reason(&status(Pending, "False")), None);
        assert_eq!(stalled_reason(&status(Failed, "True")), None);
        assert_eq!(stalled_reason(&TaskRunStatus::default()), None);
    }
}
