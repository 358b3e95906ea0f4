//! The outcome of one sync attempt, read by the notes writer, the API and the metrics.

use crate::health::SyncStatus;
use crate::source::snapshot::{FolderError, Revision};
use serde::{Deserialize, Serialize};

/// What one sync of one revision did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// The revision this attempt tried to apply.
    pub revision: Revision,
    pub status: SyncStatus,
    /// The last revision that was applied without errors, if any.
    pub applied_revision: Option<Revision>,
    /// The TaskRuns this revision describes, by task id.
    pub tasks: Vec<SyncedTask>,
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

/// One TaskRun a revision describes, as the sync left it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedTask {
    pub task_id: i64,
    pub name: String,
    pub context_version: i64,
    pub digest: String,
    pub path: String,
}

/// A write that failed for one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyError {
    pub name: String,
    pub message: String,
}
