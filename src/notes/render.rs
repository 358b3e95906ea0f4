//! Pure: a sync report, TaskRun states and an optional successor revision in, the note document
//! (and its deterministic YAML text) out.

use super::model::{
    NOTE_API_VERSION, Note, NoteCounts, NoteError, NoteErrorKind, NoteTask, TaskState,
};
use crate::health::{TaskHealth, assess};
use crate::source::snapshot::Revision;
use crate::sync::report::SyncReport;
use std::collections::BTreeMap;

/// The note of `report`'s revision given the TaskRun states (keyed by TaskRun name).
/// A state that describes another contextVersion than the one this revision asks for does not
/// count: the task is shown without a phase until the controller catches up.
pub fn note_of(
    report: &SyncReport,
    task_states: &BTreeMap<String, TaskState>,
    superseded_by: Option<&Revision>,
) -> Note {
    let mut tasks: Vec<NoteTask> = report
        .tasks
        .iter()
        .map(|task| {
            let state = task_states.get(&*task.name);
            let current = state.filter(|s| {
                s.context_version
                    .is_none_or(|v| v == task.context_version)
            });
            let (phase, job_name, message) = match state {
                None => (None, None, Some("no TaskRun yet".to_string())),
                Some(s) => match s.context_version {
                    Some(v) if v != task.context_version => (
                        None,
                        None,
                        Some(format!(
                            "the status describes contextVersion {v}; waiting for the controller to run contextVersion {}",
                            task.context_version
                        )),
                    ),
                    _ => (s.phase, s.job_name.clone(), s.message.clone()),
                },
            };
            // Only a status of this contextVersion has a reason and result for it.
            let reason = current.and_then(|s| s.reason.clone());
            let result = current.and_then(|s| s.result.clone());
            let stalled = current.is_some_and(|s| s.stalled);
            NoteTask {
                task_id: task.task_id,
                name: task.name.to_string(),
                path: task.path.to_string(),
                context_version: task.context_version,
                digest: task.digest.to_string(),
                phase,
                job_name,
                message,
                reason,
                result,
                stalled,
            }
        })
        .collect();
    tasks.sort_by(|a, b| (a.task_id, &a.name).cmp(&(b.task_id, &b.name)));

    let mut folder_errors: Vec<NoteError> = report
        .folder_errors
        .iter()
        .map(|e| NoteError {
            kind: NoteErrorKind::Folder,
            at: match &e.file {
                Some(file) => format!("{}/{}", e.folder, file),
                None => e.folder.clone(),
            },
            message: e.message.clone(),
        })
        .collect();
    let mut apply_errors: Vec<NoteError> = report
        .apply_errors
        .iter()
        .map(|e| NoteError {
            kind: NoteErrorKind::Apply,
            at: e.name.clone(),
            message: e.message.clone(),
        })
        .collect();
    folder_errors.sort_by(|a, b| (&a.at, &a.message).cmp(&(&b.at, &b.message)));
    apply_errors.sort_by(|a, b| (&a.at, &a.message).cmp(&(&b.at, &b.message)));
    folder_errors.extend(apply_errors);

    let assessment = assess(tasks.iter().map(|t| TaskHealth {
        name: &t.name,
        phase: t.phase,
        reason: t.reason.as_deref(),
        stalled: t.stalled,
    }));
    Note {
        api_version: NOTE_API_VERSION.to_string(),
        revision: report.revision.to_string(),
        synced_at: report.synced_at.clone(),
        sync: report.status,
        health: assessment.health,
        health_reason: assessment.reason,
        superseded_by: superseded_by.map(Revision::to_string),
        counts: NoteCounts {
            created: report.created,
            updated: report.updated,
            pruned: report.pruned,
            unchanged: report.unchanged,
        },
        tasks,
        errors: folder_errors,
    }
}

/// The note as YAML text: same inputs, same bytes, so the writer can skip unchanged notes.
pub fn render_note(
    report: &SyncReport,
    task_states: &BTreeMap<String, TaskState>,
    superseded_by: Option<&Revision>,
) -> String {
    note_text(&note_of(report, task_states, superseded_by))
}

/// A note document as the YAML text stored in Git.
pub fn note_text(note: &Note) -> String {
    // A struct of strings, integers and enums always serializes.
    serde_norway::to_string(note).unwrap_or_else(|e| format!("# unrenderable note: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TaskPhase;
    use crate::health::{Health, SyncStatus};
    use crate::source::snapshot::ContentDigest;
    use crate::source::snapshot::FolderError;
    use crate::sync::report::{ApplyError, SyncedTask};
    use pretty_assertions::assert_eq;
    use std::sync::Arc;

    fn report() -> SyncReport {
        SyncReport {
            revision: Revision {
                branch: "main".into(),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
            },
            status: SyncStatus::Synced,
            applied_revision: None,
            tasks: vec![task(43, "task-43", 1), task(42, "task-42", 2)].into(),
            folder_errors: vec![],
            apply_errors: vec![],
            created: 1,
            updated: 1,
            pruned: 0,
            unchanged: 0,
            synced_at: "2026-11-26T19:30:00Z".into(),
        }
    }

    fn task(id: i64, name: &str, version: i64) -> SyncedTask {
        SyncedTask {
            task_id: id,
            name: name.into(),
            context_version: version,
            digest: ContentDigest(format!("sha256:{id:064}").into()),
            path: format!("tasks/{id}-x").into(),
        }
    }

    fn state(phase: TaskPhase, version: i64) -> TaskState {
        TaskState {
            phase: Some(phase),
            job_name: Some(format!("web-v{version}")),
            message: None,
            context_version: Some(version),
            ..TaskState::default()
        }
    }

    fn stalled(phase: TaskPhase, version: i64) -> TaskState {
        TaskState {
            reason: Some("FailedCreate".into()),
            message: Some(
                "Job web-v2 cannot create its Pod: serviceaccount \"sa\" not found".into(),
            ),
            stalled: true,
            ..state(phase, version)
        }
    }

    #[test]
    fn a_stalled_task_makes_the_note_degraded_with_the_reason() {
        let states = BTreeMap::from([
            ("task-42".to_string(), stalled(TaskPhase::Pending, 2)),
            ("task-43".to_string(), state(TaskPhase::Running, 1)),
        ]);
        let note = note_of(&report(), &states, None);
        assert_eq!(note.health, Health::Degraded);
        assert_eq!(
            note.health_reason.as_deref(),
            Some("task-42 Stalled (FailedCreate)")
        );
        let text = note_text(&note);
        assert!(
            text.contains("health: Degraded\nhealthReason: task-42 Stalled (FailedCreate)\n"),
            "{text}"
        );
        assert!(
            text.contains("  reason: FailedCreate\n  stalled: true\n"),
            "{text}"
        );
        assert_eq!(Note::parse(&text).unwrap(), note);
        // Unblocked (the ServiceAccount was created): Progressing again, no reason.
        let states = BTreeMap::from([
            ("task-42".to_string(), state(TaskPhase::Running, 2)),
            ("task-43".to_string(), state(TaskPhase::Running, 1)),
        ]);
        let note = note_of(&report(), &states, None);
        assert_eq!(
            (note.health, note.health_reason.as_deref()),
            (Health::Progressing, None)
        );
        assert!(!note_text(&note).contains("stalled"));
    }

    #[test]
    fn renders_the_documented_format() {
        let mut r = report();
        r.status = SyncStatus::OutOfSync;
        r.folder_errors.push(FolderError {
            folder: "tasks/7-broken".into(),
            file: Some("task.yaml".into()),
            task_id: Some(7),
            message: "agentName is missing: add `agentName: <agent>`".into(),
        });
        r.apply_errors.push(ApplyError {
            name: "task-43".into(),
            message: "422: spec.serviceName invalid".into(),
        });
        let states = BTreeMap::from([(
            "task-42".to_string(),
            TaskState {
                reason: Some("Failed".into()),
                result: Some("3 tests fail:\nlogin_test, sso_test, session_test".into()),
                ..state(TaskPhase::Failed, 2)
            },
        )]);
        let superseded = Revision {
            branch: "main".into(),
            commit: "fedcba9876543210fedcba9876543210fedcba98".into(),
        };
        let text = render_note(&r, &states, Some(&superseded));
        assert_eq!(
            text,
            r#"apiVersion: orchestrator.io/notes/v1
revision: main@sha1:0123456789abcdef0123456789abcdef01234567
syncedAt: 2026-11-26T19:30:00Z
sync: OutOfSync
health: Degraded
healthReason: task-42 Failed
supersededBy: main@sha1:fedcba9876543210fedcba9876543210fedcba98
counts:
  created: 1
  updated: 1
  pruned: 0
  unchanged: 0
tasks:
- taskId: 42
  name: task-42
  path: tasks/42-x
  contextVersion: 2
  digest: sha256:0000000000000000000000000000000000000000000000000000000000000042
  phase: Failed
  jobName: web-v2
  reason: Failed
  result: |-
    3 tests fail:
    login_test, sso_test, session_test
- taskId: 43
  name: task-43
  path: tasks/43-x
  contextVersion: 1
  digest: sha256:0000000000000000000000000000000000000000000000000000000000000043
  message: no TaskRun yet
errors:
- kind: folder
  at: tasks/7-broken/task.yaml
  message: 'agentName is missing: add `agentName: <agent>`'
- kind: apply
  at: task-43
  message: '422: spec.serviceName invalid'
"#
        );
        assert_eq!(
            Note::parse(&text).unwrap(),
            note_of(&r, &states, Some(&superseded))
        );
    }

    #[test]
    fn a_result_of_an_older_context_version_is_not_shown() {
        let states = BTreeMap::from([(
            "task-42".to_string(),
            TaskState {
                result: Some("old".into()),
                reason: Some("Succeeded".into()),
                ..state(TaskPhase::Succeeded, 1)
            },
        )]);
        let note = note_of(&report(), &states, None);
        let task = note.tasks.iter().find(|t| t.name == "task-42").unwrap();
        assert_eq!(
            (task.result.as_deref(), task.reason.as_deref()),
            (None, None)
        );
    }

    #[test]
    fn health_follows_the_phases_of_this_revisions_context_versions() {
        use TaskPhase::*;
        let cases: &[(&[(&str, TaskState)], Health)] = &[
            (&[], Health::Missing),
            (&[("task-42", state(Pending, 2))], Health::Missing),
            (
                &[
                    ("task-42", state(Pending, 2)),
                    ("task-43", state(Running, 1)),
                ],
                Health::Progressing,
            ),
            (
                &[
                    ("task-42", state(Succeeded, 2)),
                    ("task-43", state(Succeeded, 1)),
                ],
                Health::Healthy,
            ),
            (
                &[
                    ("task-42", state(Failed, 2)),
                    ("task-43", state(Running, 1)),
                ],
                Health::Degraded,
            ),
            // Stalled: blocked past its stallAfter, as bad as Failed.
            (
                &[
                    ("task-42", stalled(Pending, 2)),
                    ("task-43", state(Succeeded, 1)),
                ],
                Health::Degraded,
            ),
            (
                &[
                    ("task-42", stalled(Running, 2)),
                    ("task-43", state(Running, 1)),
                ],
                Health::Degraded,
            ),
            // A Stalled flag of another contextVersion's run does not count.
            (
                &[
                    ("task-42", stalled(Pending, 1)),
                    ("task-43", state(Running, 1)),
                ],
                Health::Missing,
            ),
            // task-42 succeeded at contextVersion 1, but this revision asks for 2.
            (
                &[
                    ("task-42", state(Succeeded, 1)),
                    ("task-43", state(Succeeded, 1)),
                ],
                Health::Missing,
            ),
        ];
        for (states, want) in cases {
            let states: BTreeMap<String, TaskState> = states
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect();
            let note = note_of(&report(), &states, None);
            assert_eq!(note.health, *want, "{states:?}");
        }
    }

    #[test]
    fn a_commit_that_changed_no_task_is_healthy_with_no_tasks() {
        let mut r = report();
        r.tasks = Arc::new([]);
        let note = note_of(&r, &BTreeMap::new(), None);
        assert_eq!(
            (note.sync, note.health),
            (SyncStatus::Synced, Health::Healthy)
        );
        assert!(note.tasks.is_empty());
    }

    #[test]
    fn rendering_is_deterministic_whatever_the_input_order() {
        let states = BTreeMap::from([
            ("task-42".to_string(), state(TaskPhase::Running, 2)),
            ("task-43".to_string(), state(TaskPhase::Succeeded, 1)),
        ]);
        let mut reversed = report();
        reversed.tasks = reversed.tasks.iter().rev().cloned().collect();
        assert_eq!(
            render_note(&report(), &states, None),
            render_note(&reversed, &states, None)
        );
    }

    #[test]
    fn a_note_of_another_version_is_refused_with_advice() {
        let text = render_note(&report(), &BTreeMap::new(), None)
            .replace("orchestrator.io/notes/v1", "orchestrator.io/notes/v2");
        let err = Note::parse(&text).unwrap_err().to_string();
        assert!(err.contains("upgrade orchestrator"), "{err}");
        assert!(Note::parse("hello: [").is_err());
    }
}
