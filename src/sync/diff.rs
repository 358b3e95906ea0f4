//! Pure: a snapshot and its `SyncPlan` against the live cluster in; the per-TaskRun diff
//! (create / update old → new version with the files changed / prune) out, rendered as a table,
//! JSON, or markdown fit for a pull-request comment (like argocd-diff-preview).

use crate::source::snapshot::{FolderError, SourceSnapshot};
use crate::sync::plan::{Action, FileChange, FileChangeKind, KeepReason, SyncPlan, UpdateReason};
use serde::Serialize;
use std::fmt::Write as _;

/// The diff of one revision against the live TaskRuns of one namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDiff {
    pub revision: String,
    pub namespace: String,
    pub summary: DiffSummary,
    /// Every TaskRun the plan looked at, sorted by task id.
    pub task_runs: Vec<DiffEntry>,
    pub folder_errors: Vec<FolderError>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffSummary {
    pub create: usize,
    pub update: usize,
    pub prune: usize,
    pub unchanged: usize,
    /// Kept although gone from Git or broken, conflicts, and TaskRuns still being deleted.
    pub other: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffEntry {
    pub task_id: Option<i64>,
    pub name: String,
    /// `create`, `update`, `prune`, `unchanged`, `keep`, `conflict`, `wait`.
    pub action: &'static str,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    /// Why: `content changed`, `drift`, `adopt`, `folder broken`, `prune disabled`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileChange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<&'static str>,
    /// The live TaskRun's phase: the run this change replaces or leaves alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_phase: Option<String>,
    /// The live TaskRun's `status.result` (its agent's termination message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_result: Option<String>,
    /// The blocking reason of a live run that is Stalled (blocked past its stallAfter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_stalled: Option<String>,
}

/// Adds each live TaskRun's phase and result (`statuses`, by name) to its entry, so the
/// pull-request comment shows what a change replaces ("Failed: 3 tests fail").
pub fn with_live_outcomes(
    mut diff: PlanDiff,
    statuses: &std::collections::HashMap<String, crate::crd::TaskRunStatus>,
) -> PlanDiff {
    for entry in &mut diff.task_runs {
        let status = statuses.get(&entry.name);
        entry.current_phase = status.and_then(|s| s.phase).map(|p| p.to_string());
        entry.current_result = status.and_then(|s| s.result.clone());
        entry.current_stalled = status
            .and_then(crate::health::stalled_reason)
            .map(str::to_string);
    }
    diff
}

/// `Failed: <the result's last line, shortened>`, `Succeeded`, `Pending (Stalled: FailedCreate)`
/// or `-`.
fn outcome_cell(entry: &DiffEntry) -> String {
    if let (Some(phase), Some(reason)) = (&entry.current_phase, &entry.current_stalled) {
        return format!("{phase} (Stalled: {})", reason.replace('|', "\\|"));
    }
    match (&entry.current_phase, &entry.current_result) {
        (Some(phase), Some(result)) => format!(
            "{phase}: {}",
            crate::text_table::short_cell(Some(result), 60).replace('|', "\\|")
        ),
        (Some(phase), None) => phase.clone(),
        (None, _) => "-".into(),
    }
}

/// Pairs each plan step with the versions and files it changes.
pub fn plan_diff(snapshot: &SourceSnapshot, plan: &SyncPlan, namespace: &str) -> PlanDiff {
    let mut summary = DiffSummary::default();
    let task_runs = plan
        .steps
        .iter()
        .map(|step| {
            let to_version = step.desired.as_ref().map(|d| d.context_version);
            let mut entry = DiffEntry {
                task_id: Some(step.task_id),
                name: step.name.to_string(),
                action: "unchanged",
                from_version: None,
                to_version,
                reason: None,
                files: vec![],
                fields: vec![],
                current_phase: None,
                current_result: None,
                current_stalled: None,
            };
            match &step.action {
                Action::Create => {
                    summary.create += 1;
                    entry.action = "create";
                    entry.files = step
                        .desired
                        .iter()
                        .flat_map(|d| d.folder.markdown_files.iter())
                        .map(|f| FileChange {
                            filename: f.filename.to_string(),
                            change: FileChangeKind::Added,
                        })
                        .collect();
                }
                Action::Update(update) => {
                    summary.update += 1;
                    entry.action = "update";
                    entry.from_version = Some(update.from_version);
                    entry.reason = Some(
                        match update.reason {
                            UpdateReason::ContentChanged => "content changed",
                            UpdateReason::Drift => "drift: restores fields edited in the cluster",
                            UpdateReason::Adopt => "adopt: a TaskRun without a source mark",
                            UpdateReason::Migrate => {
                                "mark migrated from this source's earlier identity (no re-run)"
                            }
                        }
                        .to_string(),
                    );
                    entry.files = update.files.clone();
                    entry.fields = update.fields.clone();
                }
                Action::Unchanged => {
                    summary.unchanged += 1;
                    entry.from_version = to_version;
                }
                Action::Prune { .. } => {
                    summary.prune += 1;
                    entry.action = "prune";
                    entry.reason = Some("its folder left the revision".into());
                }
                Action::KeepBroken => {
                    summary.other += 1;
                    entry.action = "keep";
                    entry.reason = Some("its folder is broken in this revision: kept as is".into());
                }
                Action::KeepOrphan { reason } => {
                    summary.other += 1;
                    entry.action = "keep";
                    entry.reason = Some(
                        match reason {
                            KeepReason::Annotation => {
                                "gone from Git; orchestrator.io/prune: disabled"
                            }
                            KeepReason::PruneOff => "gone from Git; --prune=false",
                        }
                        .into(),
                    );
                }
                Action::Conflict { owner } => {
                    summary.other += 1;
                    entry.action = "conflict";
                    entry.reason = Some(format!(
                        "owned by another source ({owner}); to adopt it here, remove its mark: kubectl label taskrun {} {}-",
                        step.name,
                        crate::names::LABEL_SOURCE
                    ));
                }
                Action::WaitForDeletion => {
                    summary.other += 1;
                    entry.action = "wait";
                    entry.reason = Some("being deleted; created again afterwards".into());
                }
            }
            entry
        })
        .collect();
    PlanDiff {
        revision: snapshot.revision.to_string(),
        namespace: namespace.to_string(),
        summary,
        task_runs,
        folder_errors: snapshot.errors.clone(),
    }
}

fn version_cell(entry: &DiffEntry) -> String {
    match (entry.from_version, entry.to_version) {
        (Some(a), Some(b)) if a != b => format!("{a} → {b}"),
        (_, Some(b)) => b.to_string(),
        (Some(a), None) => format!("{a} → -"),
        (None, None) => "-".into(),
    }
}

fn files_cell(files: &[FileChange], code: bool) -> String {
    files
        .iter()
        .map(|f| {
            let sign = match f.change {
                FileChangeKind::Added => "+",
                FileChangeKind::Modified => "~",
                FileChangeKind::Removed => "-",
            };
            if code {
                format!("{sign}`{}`", f.filename)
            } else {
                format!("{sign}{}", f.filename)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn summary_line(s: &DiffSummary) -> String {
    let mut line = format!(
        "{} to create, {} to update, {} to prune, {} unchanged",
        s.create, s.update, s.prune, s.unchanged
    );
    if s.other > 0 {
        let _ = write!(line, ", {} kept or blocked", s.other);
    }
    line
}

/// A terminal table of the TaskRuns that change (unchanged ones are only counted).
pub fn render_table(diff: &PlanDiff) -> String {
    let mut out = format!(
        "Revision:  {}\nNamespace: {} (live diff)\n\n",
        diff.revision, diff.namespace
    );
    let mut rows = vec![["TASK", "TASKRUN", "ACTION", "VERSION", "FILES", "WHY"].map(String::from)];
    for e in diff.task_runs.iter().filter(|e| e.action != "unchanged") {
        rows.push([
            e.task_id.map_or("-".into(), |t| t.to_string()),
            e.name.clone(),
            e.action.to_string(),
            version_cell(e),
            files_cell(&e.files, false),
            e.reason.clone().unwrap_or_default(),
        ]);
    }
    if rows.len() > 1 {
        out.push_str(&crate::text_table::aligned(&rows));
        out.push('\n');
    } else {
        out.push_str("No changes: the cluster already holds this revision.\n\n");
    }
    let _ = writeln!(out, "{}.", summary_line(&diff.summary));
    for error in &diff.folder_errors {
        let _ = writeln!(out, "folder error: {error}");
    }
    out
}

/// Markdown for a pull-request comment: a summary, a table of changes, unchanged TaskRuns
/// folded away, and the folder errors.
pub fn render_markdown(diff: &PlanDiff) -> String {
    let mut out = format!(
        "### orchestrator plan for `{}`\n\nNamespace `{}` · **{}**\n\n",
        diff.revision,
        diff.namespace,
        summary_line(&diff.summary)
    );
    let changes: Vec<&DiffEntry> = diff
        .task_runs
        .iter()
        .filter(|e| e.action != "unchanged")
        .collect();
    if changes.is_empty() {
        out.push_str("No changes: the cluster already holds this revision.\n");
    } else {
        // The column of live outcomes only when the diff was made against a cluster with some.
        let outcomes = changes.iter().any(|e| e.current_phase.is_some());
        if outcomes {
            out.push_str(
                "| Task | TaskRun | Action | Version | Files | Why | Current run |\n|---:|---|---|---|---|---|---|\n",
            );
        } else {
            out.push_str(
                "| Task | TaskRun | Action | Version | Files | Why |\n|---:|---|---|---|---|---|\n",
            );
        }
        for e in changes {
            let icon = match e.action {
                "create" => "🆕 create",
                "update" => "✏️ update",
                "prune" => "🗑️ prune",
                "conflict" => "⚠️ conflict",
                other => other,
            };
            let _ = write!(
                out,
                "| {} | `{}` | {icon} | {} | {} | {} |",
                e.task_id.map_or("-".into(), |t| t.to_string()),
                e.name,
                version_cell(e),
                files_cell(&e.files, true),
                e.reason.as_deref().unwrap_or("").replace('|', "\\|")
            );
            if outcomes {
                let _ = write!(out, " {} |", outcome_cell(e));
            }
            out.push('\n');
        }
    }
    let unchanged: Vec<String> = diff
        .task_runs
        .iter()
        .filter(|e| e.action == "unchanged")
        .map(|e| format!("`{}` v{}", e.name, e.to_version.unwrap_or_default()))
        .collect();
    if !unchanged.is_empty() {
        let _ = write!(
            out,
            "\n<details><summary>{} unchanged</summary>\n\n{}\n</details>\n",
            unchanged.len(),
            unchanged.join(", ")
        );
    }
    if !diff.folder_errors.is_empty() {
        out.push_str("\n#### Folder errors\n\n");
        for error in &diff.folder_errors {
            let _ = writeln!(out, "- `{}`: {}", error.folder, error.message);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::tests::{folder, live_after, snapshot, source};
    use crate::desired::{KnownTaskRuns, desired_task_runs};
    use crate::sync::plan::{PlanInput, plan};
    use pretty_assertions::assert_eq;

    fn diff() -> PlanDiff {
        let live = live_after(
            &snapshot('1', vec![folder(1, "a"), folder(2, "b"), folder(3, "c")]),
            &KnownTaskRuns::new(),
        );
        let mut snap = snapshot('2', vec![folder(1, "a"), folder(2, "b2"), folder(4, "d")]);
        snap.errors.push(FolderError {
            folder: "tasks/9-x".into(),
            file: None,
            task_id: None,
            message: "no task.yaml".into(),
        });
        let desired = desired_task_runs(&snap, &source(), "default", &live);
        let p = plan(PlanInput {
            legacy_owner: None,
            desired: &desired,
            live: &live,
            folder_errors: &snap.errors,
            source_label: &source().label_value(),
            prune: true,
            settled: None,
        });
        plan_diff(&snap, &p, "default")
    }

    #[test]
    fn the_diff_names_versions_files_and_counts() {
        let d = diff();
        assert_eq!(
            d.summary,
            DiffSummary {
                create: 1,
                update: 1,
                prune: 1,
                unchanged: 1,
                other: 0
            }
        );
        let update = &d.task_runs[1];
        assert_eq!(
            (update.action, update.from_version, update.to_version),
            ("update", Some(1), Some(2))
        );
        assert_eq!(update.files[0].filename, "prompt.md");
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["taskRuns"][2]["action"], "prune");
        assert_eq!(json["taskRuns"][1]["files"][0]["change"], "modified");
    }

    #[test]
    fn table_and_markdown() {
        let d = diff();
        let table = render_table(&d);
        assert!(
            table.contains("2     task-2   update  1 → 2    ~prompt.md  content changed"),
            "{table}"
        );
        assert!(table.contains("3     task-3   prune   -"), "{table}");
        assert!(
            table.contains("1 to create, 1 to update, 1 to prune, 1 unchanged."),
            "{table}"
        );
        assert!(
            table.contains("folder error: tasks/9-x: no task.yaml"),
            "{table}"
        );
        let md = render_markdown(&d);
        assert!(
            md.contains("| 2 | `task-2` | ✏️ update | 1 → 2 | ~`prompt.md` | content changed |"),
            "{md}"
        );
        assert!(
            md.contains("| 4 | `task-4` | 🆕 create | 1 | +`prompt.md` |"),
            "{md}"
        );
        assert!(
            md.contains("<details><summary>1 unchanged</summary>\n\n`task-1` v1\n</details>"),
            "{md}"
        );
        assert!(md.contains("- `tasks/9-x`: no task.yaml"), "{md}");
    }

    #[test]
    fn the_pull_request_comment_shows_the_run_a_change_replaces() {
        let status = |phase, result: Option<&str>| crate::crd::TaskRunStatus {
            phase: Some(phase),
            result: result.map(str::to_string),
            ..Default::default()
        };
        let live = std::collections::HashMap::from([
            (
                "task-2".to_string(),
                status(
                    crate::crd::TaskPhase::Failed,
                    Some("log\n3 tests fail | login_test"),
                ),
            ),
            (
                "task-3".to_string(),
                status(crate::crd::TaskPhase::Succeeded, None),
            ),
        ]);
        let d = with_live_outcomes(diff(), &live);
        assert_eq!(
            d.task_runs[1].current_result.as_deref(),
            Some("log\n3 tests fail | login_test")
        );
        let md = render_markdown(&d);
        assert!(md.contains("| Why | Current run |"), "{md}");
        assert!(
            md.contains("| content changed | Failed: 3 tests fail \\| login_test |"),
            "{md}"
        );
        assert!(
            md.contains("| its folder left the revision | Succeeded |"),
            "{md}"
        );
        assert!(
            md.contains("| 4 | `task-4` | 🆕 create | 1 | +`prompt.md` |  | - |"),
            "{md}"
        );
        // Without a cluster's outcomes the table keeps its six columns.
        assert!(!render_markdown(&diff()).contains("Current run"));
        // A run blocked past its stallAfter says so, with what blocks it.
        let mut stalled = status(crate::crd::TaskPhase::Pending, None);
        stalled.conditions = vec![crate::crd::TaskRunCondition {
            type_: "Stalled".into(),
            status: "True".into(),
            last_transition_time: "2026-01-01T00:00:00Z".into(),
            reason: Some("FailedCreate".into()),
            message: None,
        }];
        let live = std::collections::HashMap::from([("task-2".to_string(), stalled)]);
        let md = render_markdown(&with_live_outcomes(diff(), &live));
        assert!(
            md.contains("| content changed | Pending (Stalled: FailedCreate) |"),
            "{md}"
        );
    }
}
