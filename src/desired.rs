//! Pure: a snapshot and the live TaskRuns in, the TaskRuns that should exist (with their
//! contextVersion) out.
//!
//! The cluster is the only memory of versions: the live TaskRun carries `spec.contextVersion`
//! and `spec.contentDigest`, so a restart of orchestrator or a lost local clone changes nothing.

use crate::crd::{TaskRun, TaskRunSpec};
use crate::names;
use crate::source::snapshot::{ContentDigest, Revision, SourceSnapshot, TaskFolder};
use std::collections::{BTreeMap, HashMap};

/// Which repository and path a sync reads: the identity behind the ownership label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceIdentity {
    /// The repository as it identifies the source: a URL without credentials, or the canonical
    /// absolute path of a local repository (so `--repo .` and `--repo /abs/path` agree).
    pub repo: String,
    /// The path inside the repository that holds the task folders ("" for the root).
    pub path: String,
}

impl SourceIdentity {
    /// Strips credentials from `repo` before they can reach a label, an annotation or a log.
    pub fn new(repo: &str, path: &str) -> Self {
        Self {
            repo: redact_url(repo),
            path: path.trim_matches('/').to_string(),
        }
    }

    /// The value of [`names::LABEL_SOURCE`] on every TaskRun this source creates.
    pub fn label_value(&self) -> String {
        names::source_label_value(&self.repo, &self.path)
    }
}

/// One TaskRun as this source wants it, ready to be server-side applied.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredTaskRun {
    pub task_id: i64,
    pub name: String,
    pub digest: ContentDigest,
    pub context_version: i64,
    /// Carries only the fields this source owns: the apply body.
    pub task_run: TaskRun,
}

/// The live TaskRuns of one namespace by name.
pub type LiveTaskRuns = HashMap<String, TaskRun>;

/// The contextVersion for content `digest` given the live TaskRun of the same name:
/// no live TaskRun → 1; the same digest → the live version; another digest → live version + 1.
/// Versions never go backwards: content that returns to an older digest still gets a new,
/// larger version, because only the live TaskRun is consulted, never history.
pub fn context_version(live: Option<&TaskRun>, digest: &ContentDigest) -> i64 {
    match live {
        None => 1,
        Some(live) if live.spec.content_digest == digest.0 => live.spec.context_version.max(1),
        Some(live) => live.spec.context_version.max(0) + 1,
    }
}

/// The revision annotation: the revision that produced the current content version. It is kept
/// while the content stays the same, so a commit that touches one task rewrites one TaskRun.
pub fn producing_revision(
    live: Option<&TaskRun>,
    digest: &ContentDigest,
    current: &Revision,
) -> String {
    live.filter(|live| live.spec.content_digest == digest.0)
        .and_then(|live| live.metadata.annotations.as_ref())
        .and_then(|a| a.get(names::ANNOTATION_REVISION))
        .cloned()
        .unwrap_or_else(|| current.to_string())
}

/// Every TaskRun the snapshot describes, sorted by task id.
pub fn desired_task_runs(
    snapshot: &SourceSnapshot,
    source: &SourceIdentity,
    namespace: &str,
    live: &LiveTaskRuns,
) -> Vec<DesiredTaskRun> {
    let source_label = source.label_value();
    snapshot
        .tasks
        .iter()
        .map(|task| {
            let name = names::task_run_name(task.task_id);
            let live = live.get(&name);
            let version = context_version(live, &task.digest);
            let revision = producing_revision(live, &task.digest, &snapshot.revision);
            DesiredTaskRun {
                task_id: task.task_id,
                task_run: task_run(
                    task,
                    namespace,
                    version,
                    &snapshot.revision,
                    &revision,
                    source,
                    &source_label,
                ),
                name,
                digest: task.digest.clone(),
                context_version: version,
            }
        })
        .collect()
}

fn task_run(
    task: &TaskFolder,
    namespace: &str,
    version: i64,
    current: &Revision,
    producing_revision: &str,
    source: &SourceIdentity,
    source_label: &str,
) -> TaskRun {
    let mut task_run = task_run_for(task, version, current, namespace);
    let meta = &mut task_run.metadata;
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(names::LABEL_SOURCE.to_string(), source_label.to_string());
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(
        names::ANNOTATION_SOURCE_URL.to_string(),
        source.repo.clone(),
    );
    annotations.insert(
        names::ANNOTATION_REVISION.to_string(),
        producing_revision.to_string(),
    );
    task_run
}

/// The TaskRun one task folder describes at content version `version`: spec from the folder,
/// the sketch's labels, and annotations that trace it back to the revision, path and digest.
pub fn task_run_for(
    folder: &TaskFolder,
    version: i64,
    revision: &Revision,
    namespace: &str,
) -> TaskRun {
    let mut task_run = TaskRun::new(
        &names::task_run_name(folder.task_id),
        TaskRunSpec {
            task_id: folder.task_id,
            service_name: folder.service_name.clone(),
            agent_name: folder.agent_name.clone(),
            context_version: version,
            content_digest: folder.digest.to_string(),
            source_path: folder.path.clone(),
            markdown_files: folder.markdown_files.clone(),
        },
    );
    task_run.metadata.namespace = Some(namespace.to_string());
    task_run.metadata.labels = Some(BTreeMap::from([
        (names::LABEL_TASK_ID.to_string(), folder.task_id.to_string()),
        (
            names::LABEL_SERVICE_NAME.to_string(),
            folder.service_name.clone(),
        ),
        (
            names::LABEL_CONTEXT_VERSION.to_string(),
            version.to_string(),
        ),
        (
            names::LABEL_MANAGED_BY.to_string(),
            names::MANAGED_BY.to_string(),
        ),
    ]));
    task_run.metadata.annotations = Some(BTreeMap::from([
        (names::ANNOTATION_REVISION.to_string(), revision.to_string()),
        (
            names::ANNOTATION_CONTENT_DIGEST.to_string(),
            folder.digest.to_string(),
        ),
        (
            names::ANNOTATION_SOURCE_PATH.to_string(),
            folder.path.clone(),
        ),
    ]));
    task_run
}

/// `https://user:token@host/repo.git` → `https://host/repo.git`; anything else unchanged.
pub fn redact_url(repo: &str) -> String {
    let Some((scheme, rest)) = repo.split_once("://") else {
        return repo.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => repo.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crd::MarkdownFile;

    pub(crate) fn revision(commit_char: char) -> Revision {
        Revision {
            branch: "main".into(),
            commit: commit_char.to_string().repeat(40),
        }
    }

    pub(crate) fn folder(task_id: i64, content: &str) -> TaskFolder {
        TaskFolder {
            task_id,
            path: format!("tasks/{task_id}-t"),
            service_name: "web".into(),
            agent_name: "claude".into(),
            markdown_files: vec![MarkdownFile {
                filename: "prompt.md".into(),
                content: content.into(),
            }],
            digest: ContentDigest(format!("sha256:{}", names::short_hash(content, 64))),
        }
    }

    pub(crate) fn snapshot(rev: char, tasks: Vec<TaskFolder>) -> SourceSnapshot {
        SourceSnapshot {
            revision: revision(rev),
            path: "tasks".into(),
            tasks,
            errors: vec![],
        }
    }

    pub(crate) fn source() -> SourceIdentity {
        SourceIdentity::new("https://example.com/tasks.git", "tasks")
    }

    /// The TaskRun a sync of `snapshot` over `live` would leave in the cluster.
    pub(crate) fn live_after(snapshot: &SourceSnapshot, live: &LiveTaskRuns) -> LiveTaskRuns {
        desired_task_runs(snapshot, &source(), "default", live)
            .into_iter()
            .map(|d| (d.name, d.task_run))
            .collect()
    }

    #[test]
    fn context_version_table() {
        let a = folder(1, "a");
        let live_a3 = live_after(&snapshot('1', vec![a.clone()]), &LiveTaskRuns::new());
        let mut at_3 = live_a3["task-1"].clone();
        at_3.spec.context_version = 3;
        let b = folder(1, "b");
        let cases = [
            ("no live TaskRun", None, &a.digest, 1),
            ("same digest keeps the version", Some(&at_3), &a.digest, 3),
            ("new digest is live + 1", Some(&at_3), &b.digest, 4),
        ];
        for (what, live, digest, want) in cases {
            assert_eq!(context_version(live, digest), want, "{what}");
        }
    }

    #[test]
    fn a_sequence_of_commits_never_moves_versions_backwards() {
        // a → b → a again (a force-push back) → restart (same live state) → a.
        let mut live = LiveTaskRuns::new();
        let mut seen = vec![];
        for (rev, content) in [('1', "a"), ('2', "b"), ('3', "a"), ('3', "a"), ('4', "a")] {
            live = live_after(&snapshot(rev, vec![folder(1, content)]), &live);
            seen.push(live["task-1"].spec.context_version);
        }
        assert_eq!(seen, [1, 2, 3, 3, 3]);
    }

    #[test]
    fn the_revision_annotation_names_the_commit_that_produced_the_content() {
        let first = live_after(
            &snapshot('1', vec![folder(1, "a"), folder(2, "x")]),
            &LiveTaskRuns::new(),
        );
        // Commit 2 changes only task 2.
        let second = live_after(&snapshot('2', vec![folder(1, "a"), folder(2, "y")]), &first);
        let rev = |live: &LiveTaskRuns, name: &str| {
            live[name].metadata.annotations.as_ref().unwrap()[names::ANNOTATION_REVISION].clone()
        };
        assert_eq!(rev(&second, "task-1"), revision('1').to_string());
        assert_eq!(rev(&second, "task-2"), revision('2').to_string());
    }

    #[test]
    fn desired_task_run_carries_names_labels_and_annotations() {
        let desired = desired_task_runs(
            &snapshot('1', vec![folder(42, "a")]),
            &source(),
            "team-a",
            &LiveTaskRuns::new(),
        );
        let tr = &desired[0].task_run;
        assert_eq!(tr.metadata.name.as_deref(), Some("task-42"));
        assert_eq!(tr.metadata.namespace.as_deref(), Some("team-a"));
        let labels = tr.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[names::LABEL_TASK_ID], "42");
        assert_eq!(labels[names::LABEL_CONTEXT_VERSION], "1");
        assert_eq!(labels[names::LABEL_SOURCE], source().label_value());
        assert!(names::is_dns1123_label(&labels[names::LABEL_SOURCE]));
        let annotations = tr.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            annotations[names::ANNOTATION_CONTENT_DIGEST],
            desired[0].digest.0
        );
        assert_eq!(tr.spec.content_digest, desired[0].digest.0);
        assert_eq!(tr.spec.source_path, "tasks/42-t");
        assert!(tr.status.is_none(), "the sync never writes status");
    }

    #[test]
    fn credentials_never_reach_the_source_identity() {
        for (input, want) in [
            (
                "https://user:tok@example.com/a.git",
                "https://example.com/a.git",
            ),
            ("https://example.com/a.git", "https://example.com/a.git"),
            ("ssh://git@example.com/a.git", "ssh://example.com/a.git"),
            ("/home/me/repo", "/home/me/repo"),
            ("https://example.com/a@b.git", "https://example.com/a@b.git"),
        ] {
            assert_eq!(redact_url(input), want, "{input}");
        }
        assert_eq!(
            SourceIdentity::new("https://u:p@example.com/tasks.git", "/tasks/").label_value(),
            source().label_value(),
            "rotating a token does not change which TaskRuns the source owns"
        );
    }
}

#[cfg(test)]
mod task_run_for_tests {
    use super::*;
    use crate::crd::MarkdownFile;
    use crate::source::ContentDigest;

    #[test]
    fn a_folder_becomes_a_traceable_task_run() {
        let folder = TaskFolder {
            task_id: 42,
            path: "tasks/42-login".into(),
            service_name: "web".into(),
            agent_name: "codex".into(),
            markdown_files: vec![MarkdownFile {
                filename: "p.md".into(),
                content: "x".into(),
            }],
            digest: ContentDigest("sha256:ab".into()),
        };
        let revision = Revision {
            branch: "main".into(),
            commit: "c".repeat(40),
        };
        let tr = task_run_for(&folder, 3, &revision, "agents");
        assert_eq!(tr.metadata.name.as_deref(), Some("task-42"));
        assert_eq!(tr.metadata.namespace.as_deref(), Some("agents"));
        assert_eq!(tr.spec.context_version, 3);
        assert_eq!(tr.spec.content_digest, "sha256:ab");
        assert_eq!(tr.spec.source_path, "tasks/42-login");
        let labels = tr.metadata.labels.unwrap();
        assert_eq!(labels["task-id"], "42");
        assert_eq!(labels["context-version"], "3");
        assert_eq!(labels["service-name"], "web");
        let annotations = tr.metadata.annotations.unwrap();
        assert_eq!(
            annotations[names::ANNOTATION_REVISION],
            format!("main@sha1:{}", "c".repeat(40))
        );
    }
}
