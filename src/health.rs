//! The Argo CD vocabulary shared by the sync, the notes and the API: task phases in, sync status
//! and health out.

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
/// Degraded wins over Missing, Missing over Progressing; no tasks at all is Healthy.
pub fn health_of<I>(phases: I) -> Health
where
    I: IntoIterator<Item = Option<TaskPhase>>,
{
    let (mut failed, mut missing, mut progressing) = (false, false, false);
    for phase in phases {
        match phase {
            Some(TaskPhase::Failed) => failed = true,
            None => missing = true,
            Some(TaskPhase::Pending | TaskPhase::Running) => progressing = true,
            Some(TaskPhase::Succeeded) => {}
        }
    }
    if failed {
        Health::Degraded
    } else if missing {
        Health::Missing
    } else if progressing {
        Health::Progressing
    } else {
        Health::Healthy
    }
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
}
