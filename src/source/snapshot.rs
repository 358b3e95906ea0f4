//! What the source hands the rest of the flow: one revision's task folders, parsed, with their
//! digests and the errors of the folders that did not parse.

use super::markdown::TaskFile;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// `<branch>@sha1:<commit>`, as Flux writes revisions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revision {
    /// Branch or ref name as the user gave it (`main`, `refs/tags/v1`), or `HEAD`.
    pub branch: String,
    /// Full 40-hex commit id.
    pub commit: String,
}

impl Revision {
    /// The revision of a plain folder read from disk (`worktree@sha1:000…`): no commit.
    pub fn working_tree() -> Self {
        Revision {
            branch: "worktree".into(),
            commit: "0".repeat(40),
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@sha1:{}", self.branch, self.commit)
    }
}

/// `sha256:<hex>` over the canonical encoding of a task folder. One allocation, shared by the
/// folder cache, the snapshots and the desired TaskRuns that hold the folder.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContentDigest(pub Arc<str>);

impl From<&str> for ContentDigest {
    fn from(digest: &str) -> Self {
        ContentDigest(digest.into())
    }
}

impl fmt::Display for ContentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One valid task folder at one revision: where it is, and its content as the folder cache
/// holds it (one record per folder, shared by the snapshots of every commit where the folder is
/// the same and by the desired TaskRuns made from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFolder {
    /// The numeric prefix of the folder name.
    pub task_id: i64,
    /// The folder's path inside the repository, e.g. `tasks/42-login-page`; shared with the
    /// desired TaskRun and the sync's report.
    pub path: Arc<str>,
    pub content: Arc<FolderContent>,
}

/// A valid folder's content, independent of the folder's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderContent {
    /// The folder cache's own (interned across folders), not copies.
    pub service_name: Arc<str>,
    pub agent_name: Arc<str>,
    /// `suspend: true` in task.yaml: keep the TaskRun, run no Job (or suspend the running one).
    pub suspend: bool,
    /// `priority` in task.yaml: higher starts first when an agent's Jobs are limited.
    pub priority: i32,
    /// In reading order ([`crate::prompt::reading_order`]): `prompt.md` first, then natural order.
    /// Read from git, the files hold blob ids, not text ([`TaskFile`]).
    pub markdown_files: Arc<[TaskFile]>,
    pub digest: ContentDigest,
}

/// A folder (or one file in it) that could not become a task. The message says how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderError {
    /// The folder's path inside the repository.
    pub folder: String,
    /// The file at fault, relative to the folder, when one is.
    pub file: Option<String>,
    /// The task id, when the folder name carries one: the sync keeps that TaskRun as it is
    /// instead of pruning it.
    pub task_id: Option<i64>,
    pub message: String,
}

impl fmt::Display for FolderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}/{}: {}", self.folder, file, self.message),
            None => write!(f, "{}: {}", self.folder, self.message),
        }
    }
}

/// Every task folder of one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSnapshot {
    pub revision: Revision,
    /// The path inside the repository that holds the task folders ("" for the root).
    pub path: String,
    /// Valid tasks, sorted by task id.
    pub tasks: Vec<TaskFolder>,
    /// Broken folders, sorted by folder path.
    pub errors: Vec<FolderError>,
    /// The commit's time (committer, seconds since the epoch); none for a plain folder.
    pub committed_at: Option<i64>,
}

impl SourceSnapshot {
    /// Takes `previous`'s path of each task whose path did not change, so that this snapshot
    /// and the desired TaskRuns made from the previous one hold one copy: a commit then adds
    /// paths only for the folders it added or renamed. Both are sorted by task id.
    pub fn share_paths_with(&mut self, previous: &SourceSnapshot) {
        for task in &mut self.tasks {
            if let Ok(i) = previous
                .tasks
                .binary_search_by_key(&task.task_id, |t| t.task_id)
                && previous.tasks[i].path == task.path
            {
                task.path = previous.tasks[i].path.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_snapshot_takes_the_previous_ones_unchanged_paths() {
        let folder = |task_id, path: &str| TaskFolder {
            task_id,
            path: path.into(),
            content: crate::desired::tests::web_codex("sha256:ab"),
        };
        let previous = SourceSnapshot {
            revision: Revision::working_tree(),
            path: "tasks".into(),
            tasks: vec![folder(1, "tasks/1-a"), folder(2, "tasks/2-b")],
            errors: vec![],
            committed_at: None,
        };
        let mut next = SourceSnapshot {
            tasks: vec![
                folder(1, "tasks/1-a"),
                folder(2, "tasks/2-renamed"),
                folder(3, "tasks/3-c"),
            ],
            ..previous.clone()
        };
        next.share_paths_with(&previous);
        assert!(Arc::ptr_eq(&next.tasks[0].path, &previous.tasks[0].path));
        assert_eq!(
            &*next.tasks[1].path, "tasks/2-renamed",
            "a renamed folder keeps its own"
        );
        assert_eq!(&*next.tasks[2].path, "tasks/3-c");
        assert!(!Arc::ptr_eq(&next.tasks[1].path, &previous.tasks[1].path));
    }
}
