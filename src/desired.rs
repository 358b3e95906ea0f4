//! Pure: a snapshot and the live TaskRuns in, the TaskRuns that should exist out.

use crate::crd::{TaskRun, TaskRunSpec};
use crate::names;
use crate::source::{Revision, TaskFolder};
use std::collections::BTreeMap;

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
