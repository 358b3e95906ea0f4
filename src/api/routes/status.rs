//! `GET /api/v1/status[/{rev}]` and the badge: the latest sync report and the TaskRun cache in,
//! the sync and health of a revision out (JSON or SVG).

use crate::api::badge::render_badge;
use crate::api::error::{Answer, ApiError, ApiResponse};
use crate::api::state::AppState;
use crate::crd::TaskPhase;
use crate::health::{Health, SyncStatus, TaskHealth, assess, stalled_reason};
use crate::notes::NotesError;
use crate::notes::model::{Note, NoteErrorKind};
use crate::notes::read::{NoteLookup, NoteQuery, read_note};
use crate::source::snapshot::Revision;
use crate::sync::report::SyncReport;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The sync and health of one revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// `<branch>@sha1:<commit>`; absent before the first sync.
    pub revision: Option<String>,
    /// Synced, OutOfSync or Unknown.
    pub sync: String,
    /// Healthy, Progressing, Degraded or Missing.
    pub health: String,
    /// Why the health is Degraded: the tasks that Failed or are Stalled, with their reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_reason: Option<String>,
    /// The last revision applied without errors.
    pub applied_revision: Option<String>,
    pub synced_at: Option<String>,
    pub tasks: Vec<TaskState>,
    /// Folders that did not parse, with how to fix them.
    pub folder_errors: Vec<String>,
    /// Writes that failed, as `<name>: <message>`.
    pub apply_errors: Vec<String>,
    /// Where this state comes from: `sync` (the latest sync of this server, with live phases)
    /// or `note` (the git note the notes writer left on the commit).
    pub from: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskState {
    pub task_id: i64,
    pub name: String,
    pub context_version: i64,
    /// The TaskRun's phase; absent when it has none yet (health Missing).
    pub phase: Option<String>,
    /// `status.reason`: why the task is in its phase (Queued, FailedCreate, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Blocked past its profile's stallAfter (the Stalled condition is True): health Degraded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stalled: bool,
}

/// What the status view reads of a live TaskRun.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveTask {
    /// `spec.contextVersion`.
    pub context_version: i64,
    pub phase: Option<TaskPhase>,
    /// The contextVersion the status describes.
    pub status_version: Option<i64>,
    pub reason: Option<String>,
    pub stalled: bool,
}

/// The view of `report`, with each task's phase looked up by TaskRun name. A TaskRun whose status
/// still describes an older content version counts as Pending.
pub fn status_view(
    report: Option<&SyncReport>,
    live: impl Fn(&str) -> Option<LiveTask>,
) -> StatusView {
    let Some(report) = report else {
        return StatusView {
            revision: None,
            sync: SyncStatus::Unknown.to_string(),
            health: Health::Missing.to_string(),
            health_reason: None,
            applied_revision: None,
            synced_at: None,
            tasks: Vec::new(),
            folder_errors: Vec::new(),
            apply_errors: Vec::new(),
            from: "sync".into(),
        };
    };
    let tasks: Vec<(TaskState, Option<TaskPhase>)> = report
        .tasks
        .iter()
        .map(|t| {
            let live = live(&t.name);
            // A status of an older content version says nothing of this one's reason.
            let older = live
                .as_ref()
                .and_then(|l| l.status_version)
                .is_some_and(|v| v < t.context_version);
            let phase = live.as_ref().and_then(|l| match older {
                true => Some(TaskPhase::Pending),
                false => l.phase,
            });
            let current = live.filter(|_| !older);
            (
                TaskState {
                    task_id: t.task_id,
                    name: t.name.to_string(),
                    context_version: t.context_version,
                    phase: phase.map(|p| p.to_string()),
                    reason: current.as_ref().and_then(|l| l.reason.clone()),
                    stalled: current.is_some_and(|l| l.stalled),
                },
                phase,
            )
        })
        .collect();
    let assessment = assess(tasks.iter().map(|(t, phase)| TaskHealth {
        name: &t.name,
        phase: *phase,
        reason: t.reason.as_deref(),
        stalled: t.stalled,
    }));
    StatusView {
        revision: Some(report.revision.to_string()),
        sync: report.status.to_string(),
        health: assessment.health.to_string(),
        health_reason: assessment.reason,
        applied_revision: report.applied_revision.as_ref().map(Revision::to_string),
        synced_at: Some(report.synced_at.clone()),
        tasks: tasks.into_iter().map(|(t, _)| t).collect(),
        folder_errors: report.folder_errors.iter().map(|e| e.to_string()).collect(),
        apply_errors: report
            .apply_errors
            .iter()
            .map(|e| format!("{}: {}", e.name, e.message))
            .collect(),
        from: "sync".into(),
    }
}

/// The view of a git note (the state recorded on the commit; phases as of the note).
pub fn note_view(note: &Note) -> StatusView {
    let errors = |kind: NoteErrorKind| {
        note.errors
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| format!("{}: {}", e.at, e.message))
            .collect()
    };
    StatusView {
        revision: Some(note.revision.clone()),
        sync: note.sync.to_string(),
        health: note.health.to_string(),
        health_reason: note.health_reason.clone(),
        applied_revision: None,
        synced_at: Some(note.synced_at.clone()),
        tasks: note
            .tasks
            .iter()
            .map(|t| TaskState {
                task_id: t.task_id,
                name: t.name.clone(),
                context_version: t.context_version,
                phase: t.phase.map(|p| p.to_string()),
                reason: t.reason.clone(),
                stalled: t.stalled,
            })
            .collect(),
        folder_errors: errors(NoteErrorKind::Folder),
        apply_errors: errors(NoteErrorKind::Apply),
        from: "note".into(),
    }
}

/// Whether `query` names `revision`: the full `<branch>@sha1:<commit>`, the branch, or a commit
/// id prefix of at least 7 hex digits.
pub fn revision_matches(query: &str, revision: &Revision) -> bool {
    let query = query.trim();
    let commit = query.rsplit_once("@sha1:").map_or(query, |(_, c)| c);
    query == revision.to_string()
        || query == revision.branch
        || (commit.len() >= 7
            && commit.len() <= 40
            && commit.bytes().all(|b| b.is_ascii_hexdigit())
            && revision.commit.starts_with(&commit.to_ascii_lowercase()))
}

fn current_view(state: &AppState) -> StatusView {
    let report = state.reports.borrow().clone();
    status_view(report.as_ref(), |name| live_task(state, name))
}

fn live_task(state: &AppState, name: &str) -> Option<LiveTask> {
    let tr = state.cached_task_run(name)?;
    let status = tr.status.as_ref();
    Some(LiveTask {
        context_version: tr.spec.context_version,
        phase: status.and_then(|s| s.phase),
        status_version: status.and_then(|s| s.context_version),
        reason: status.and_then(|s| s.reason.clone()),
        stalled: status.and_then(stalled_reason).is_some(),
    })
}

/// The sync and health of the latest synced revision.
#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "status",
    responses((status = 200, description = "data is a StatusView", body = ApiResponse))
)]
pub async fn get_status(State(state): State<AppState>) -> Answer {
    let view = current_view(&state);
    Answer(StatusCode::OK, view_response(view))
}

/// The sync and health of one revision (full revision, branch, or commit prefix): the latest
/// sync of this server when it is that revision, else the git note on the commit.
#[utoipa::path(
    get,
    path = "/api/v1/status/{rev}",
    tag = "status",
    params(("rev" = String, Path, description = "`main@sha1:<commit>`, `main`, or a commit prefix")),
    responses(
        (status = 200, description = "data is a StatusView", body = ApiResponse),
        (status = 404, description = "No sync state known for the revision", body = ApiResponse),
        (status = 503, description = "The repository holding the notes could not be read", body = ApiResponse),
    )
)]
pub async fn get_revision_status(
    State(state): State<AppState>,
    Path(rev): Path<String>,
) -> Result<Answer, ApiError> {
    let report = state.reports.borrow().clone();
    if let Some(r) = report
        .as_ref()
        .filter(|r| revision_matches(&rev, &r.revision))
    {
        return Ok(Answer(
            StatusCode::OK,
            view_response(status_view(Some(r), |name| live_task(&state, name))),
        ));
    }
    let Some(query) = state.notes.clone() else {
        return Err(ApiError::NotFound(match &report {
            Some(r) => format!(
                "no sync state for revision {rev:?} in this server: the latest sync was {}, and \
                 this server reads no git notes",
                r.revision
            ),
            None => format!("no sync state for revision {rev:?}: no sync has finished yet"),
        }));
    };
    let query = NoteQuery {
        revision: Some(rev.clone()),
        ..query
    };
    let lookup = tokio::task::spawn_blocking(move || read_note(&query))
        .await
        .map_err(|_| ApiError::Internal {
            step: "reading the git note",
        })?;
    match lookup {
        Ok(NoteLookup {
            note: Some(note), ..
        }) => Ok(Answer(StatusCode::OK, view_response(note_view(&note)))),
        Ok(lookup) => Err(ApiError::NotFound(format!(
            "commit {} has no orchestrator note: it was never synced, or its note is not \
             written yet",
            lookup.commit
        ))),
        Err(NotesError::ResolveRevision { .. }) => Err(ApiError::NotFound(format!(
            "{rev:?} is not a revision of the repository: give a commit id, a branch, or \
             <branch>@sha1:<commit>"
        ))),
        Err(e) => {
            tracing::warn!(step = e.kind(), error = %super::redact(&e.to_string()), "reading a note failed");
            Err(ApiError::Unavailable(format!(
                "the git notes could not be read ({}); retry later",
                e.kind()
            )))
        }
    }
}

/// An SVG badge of the latest sync and health, for READMEs.
#[utoipa::path(
    get,
    path = "/api/v1/status/badge.svg",
    tag = "status",
    responses((status = 200, description = "image/svg+xml", content_type = "image/svg+xml", body = String))
)]
pub async fn badge(State(state): State<AppState>) -> Response {
    let view = current_view(&state);
    let sync = parse_sync(&view.sync);
    let health = parse_health(&view.health);
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache, max-age=0"),
        ],
        render_badge(sync, health),
    )
        .into_response()
}

fn view_response(view: StatusView) -> ApiResponse {
    let message = match &view.revision {
        Some(rev) => format!("{rev} is {} and {}", view.sync, view.health),
        None => "no sync has finished yet".to_string(),
    };
    ApiResponse::ok(message, serde_json::to_value(view).ok())
}

fn parse_sync(s: &str) -> SyncStatus {
    [SyncStatus::Synced, SyncStatus::OutOfSync]
        .into_iter()
        .find(|v| v.as_str() == s)
        .unwrap_or(SyncStatus::Unknown)
}

fn parse_health(s: &str) -> Health {
    [Health::Healthy, Health::Progressing, Health::Degraded]
        .into_iter()
        .find(|v| v.as_str() == s)
        .unwrap_or(Health::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::report::SyncedTask;

    fn revision() -> Revision {
        Revision {
            branch: "main".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
        }
    }

    fn report(tasks: &[(i64, i64)]) -> SyncReport {
        SyncReport {
            revision: revision(),
            status: SyncStatus::Synced,
            applied_revision: Some(revision()),
            tasks: tasks
                .iter()
                .map(|(id, v)| SyncedTask {
                    task_id: *id,
                    name: format!("task-{id}").into(),
                    context_version: *v,
                    digest: "sha256:x".into(),
                    path: format!("tasks/{id}-web").into(),
                })
                .collect(),
            folder_errors: vec![],
            apply_errors: vec![],
            created: 0,
            updated: 0,
            pruned: 0,
            unchanged: 0,
            synced_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn health_comes_from_the_live_phases() {
        let live = |version, phase, status_version| LiveTask {
            context_version: version,
            phase: Some(phase),
            status_version: Some(status_version),
            ..LiveTask::default()
        };
        let r = report(&[(1, 1), (2, 3)]);
        let view = status_view(Some(&r), |name| match name {
            "task-1" => Some(live(1, TaskPhase::Succeeded, 1)),
            "task-2" => Some(live(3, TaskPhase::Succeeded, 3)),
            _ => None,
        });
        assert_eq!(
            (view.sync.as_str(), view.health.as_str()),
            ("Synced", "Healthy")
        );
        let view = status_view(Some(&r), |name| match name {
            "task-1" => Some(live(1, TaskPhase::Succeeded, 1)),
            // Status still about version 2: the new content has not run yet.
            "task-2" => Some(live(3, TaskPhase::Succeeded, 2)),
            _ => None,
        });
        assert_eq!(view.health, "Progressing");
        assert_eq!(view.tasks[1].phase.as_deref(), Some("Pending"));
        // Stalled (blocked past stallAfter): Degraded with the reason, as the note says it.
        let stalled = |status_version| LiveTask {
            reason: Some("FailedCreate".into()),
            stalled: true,
            ..live(3, TaskPhase::Pending, status_version)
        };
        let view = status_view(Some(&r), |name| match name {
            "task-1" => Some(live(1, TaskPhase::Running, 1)),
            "task-2" => Some(stalled(3)),
            _ => None,
        });
        assert_eq!(
            (view.health.as_str(), view.health_reason.as_deref()),
            ("Degraded", Some("task-2 Stalled (FailedCreate)"))
        );
        assert!(view.tasks[1].stalled);
        // A Stalled flag of the older version's run says nothing of the new one.
        let view = status_view(Some(&r), |name| match name {
            "task-1" => Some(live(1, TaskPhase::Running, 1)),
            "task-2" => Some(stalled(2)),
            _ => None,
        });
        assert_eq!(
            (view.health.as_str(), view.health_reason),
            ("Progressing", None)
        );
        let view = status_view(Some(&r), |_| None);
        assert_eq!(view.health, "Missing");
        let view = status_view(None, |_| None);
        assert_eq!((view.sync.as_str(), view.revision), ("Unknown", None));
    }

    #[test]
    fn revisions_match_by_full_name_branch_or_prefix() {
        let rev = revision();
        for (query, matches) in [
            ("main@sha1:0123456789abcdef0123456789abcdef01234567", true),
            ("main", true),
            ("0123456", true),
            ("0123456789ABCDEF", true),
            ("012345", false),
            ("1234567", false),
            ("dev", false),
        ] {
            assert_eq!(revision_matches(query, &rev), matches, "{query}");
        }
    }
}
