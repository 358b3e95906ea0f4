//! The note document (`orchestrator.io/notes/v1`): the versioned types a note is rendered from and
//! parsed into, and the TaskRun status snapshot the writer feeds in.

use crate::crd::{TaskPhase, TaskRun};
use crate::health::{Health, SyncStatus};
use serde::{Deserialize, Serialize};

/// The ref every note lives under; `git log --notes=orchestrator` reads it.
pub const NOTES_REF: &str = "refs/notes/orchestrator";

/// The environment whose note is [`NOTES_REF`].
pub const DEFAULT_ENVIRONMENT: &str = "default";

/// The notes ref of one environment (one cluster syncing the repository): `default` →
/// `refs/notes/orchestrator` (what `git log --notes=orchestrator` shows), `staging` →
/// `refs/notes/orchestrator-staging`. A separate ref per environment, so two clusters never
/// overwrite each other's note on a commit. (Not `refs/notes/orchestrator/NAME`: git cannot
/// hold that beside `refs/notes/orchestrator`.) Pure.
pub fn notes_ref_for(environment: &str) -> Result<String, String> {
    if environment == DEFAULT_ENVIRONMENT {
        return Ok(NOTES_REF.to_string());
    }
    if !crate::names::is_dns1123_label(environment) {
        return Err(format!(
            "--environment {environment:?}: use lowercase letters, digits and '-' (at most 63), like staging or prod-eu"
        ));
    }
    Ok(format!("{NOTES_REF}-{environment}"))
}
/// The version of the note document this build writes and reads.
pub const NOTE_API_VERSION: &str = "orchestrator.io/notes/v1";

/// What orchestrator did with one commit and how its tasks are doing. Field order is the
/// rendered key order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    pub api_version: String,
    /// `<branch>@sha1:<commit>`.
    pub revision: String,
    /// RFC 3339 time of the sync this note describes (taken from the sync, never from the writer).
    pub synced_at: String,
    pub sync: SyncStatus,
    pub health: Health,
    /// Why the health is Degraded: the tasks that Failed or are Stalled, with their reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_reason: Option<String>,
    /// The revision that replaced this one; the note is no longer updated once this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    #[serde(default)]
    pub counts: NoteCounts,
    /// Sorted by task id.
    #[serde(default)]
    pub tasks: Vec<NoteTask>,
    /// Folder errors first (by folder), then apply errors (by TaskRun name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<NoteError>,
}

/// What the sync wrote for this revision.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NoteCounts {
    pub created: usize,
    pub updated: usize,
    pub pruned: usize,
    pub unchanged: usize,
}

/// One task of the revision and the state of its TaskRun.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NoteTask {
    pub task_id: i64,
    /// The TaskRun's name.
    pub name: String,
    /// The task folder inside the repository.
    pub path: String,
    pub context_version: i64,
    pub digest: String,
    /// Absent while the TaskRun has no status for this contextVersion yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TaskPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why the task is in its phase (status.reason), when the controller says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The agent's result (status.result, its termination message, at most 4 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Blocked past its profile's stallAfter (the Stalled condition is True): `reason` says by
    /// what, and the note's health is Degraded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stalled: bool,
}

/// A sync error of the revision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NoteError {
    pub kind: NoteErrorKind,
    /// The folder (and file) for a folder error, the TaskRun name for an apply error.
    pub at: String,
    pub message: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum NoteErrorKind {
    /// A task folder that did not parse.
    Folder,
    /// A TaskRun the sync could not write.
    Apply,
}

/// The part of a TaskRun's status a note shows, keyed by TaskRun name when fed to the writer.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TaskState {
    pub phase: Option<TaskPhase>,
    pub job_name: Option<String>,
    pub message: Option<String>,
    /// The contextVersion the status describes, when the controller says.
    pub context_version: Option<i64>,
    /// `status.reason`: Queued, Suspended, ImagePullBackOff, Cancelled, …
    pub reason: Option<String>,
    /// `status.result`: the agent's termination message.
    pub result: Option<String>,
    /// The Stalled condition is True on a run that has not ended.
    pub stalled: bool,
}

impl TaskState {
    /// The state of a TaskRun as its status subresource reports it.
    pub fn of_task_run(task_run: &TaskRun) -> TaskState {
        let status = task_run.status.clone().unwrap_or_default();
        TaskState {
            stalled: crate::health::stalled_reason(&status).is_some(),
            phase: status.phase,
            job_name: status.job_name,
            message: status.message,
            context_version: status.context_version,
            reason: status.reason,
            result: status.result,
        }
    }
}

/// Why a note could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseNoteError {
    #[error("the note is not an orchestrator note document: {0}")]
    Malformed(#[source] serde_norway::Error),
    #[error(
        "the note has apiVersion {0:?}; this orchestrator reads {NOTE_API_VERSION}: upgrade orchestrator"
    )]
    UnsupportedVersion(String),
}

impl Note {
    /// Parses a rendered note (YAML, or JSON which is YAML too).
    pub fn parse(text: &str) -> Result<Note, ParseNoteError> {
        let note: Note = serde_norway::from_str(text).map_err(ParseNoteError::Malformed)?;
        if note.api_version != NOTE_API_VERSION {
            return Err(ParseNoteError::UnsupportedVersion(note.api_version));
        }
        Ok(note)
    }

    /// Whether every task reached Succeeded or Failed: nothing will change this note but a new
    /// sync of the revision.
    pub fn all_tasks_terminal(&self) -> bool {
        self.tasks
            .iter()
            .all(|t| t.phase.is_some_and(TaskPhase::is_terminal))
    }
}

#[cfg(test)]
mod environment_tests {
    use super::*;

    #[test]
    fn one_notes_ref_per_environment() {
        assert_eq!(notes_ref_for("default").unwrap(), "refs/notes/orchestrator");
        assert_eq!(
            notes_ref_for("staging").unwrap(),
            "refs/notes/orchestrator-staging"
        );
        assert!(notes_ref_for("Prod EU").is_err());
        assert!(notes_ref_for("").is_err());
    }
}
