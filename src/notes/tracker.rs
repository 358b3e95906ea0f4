//! Pure: sync reports and TaskRun states in, the notes that should be written next out. Knows
//! which revision is current, which revisions were superseded, and when a note is final.

use super::model::TaskState;
use super::render::{note_of, note_text};
use crate::sync::report::SyncReport;
use std::collections::BTreeMap;

/// One note to write: the annotated commit (40 hex) and the note text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedNote {
    pub commit: String,
    pub text: String,
    /// Whether this text is the last one its revision will get (every task terminal, or
    /// superseded by a newer revision).
    pub is_final: bool,
}

/// Which revisions still need notes.
#[derive(Debug, Default)]
pub struct Tracker {
    current: Option<Current>,
    /// Final notes of superseded revisions not yet written, by commit.
    superseded: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Current {
    report: SyncReport,
    /// The text last written for it.
    written: Option<String>,
    /// Every task was terminal in the last written note: stop re-rendering.
    done: bool,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// A sync finished. A report that repeats the current state (same status, tasks and errors)
    /// changes nothing: the note keeps the syncedAt and counts of the first sync that reached it; a report of another revision
    /// supersedes the current one, whose note is rendered one last time with `supersededBy`.
    pub fn observe(&mut self, report: SyncReport, states: &BTreeMap<String, TaskState>) {
        match self.current.take() {
            Some(mut current) if current.report.revision.commit == report.revision.commit => {
                if !same_state(&current.report, &report) {
                    current.report = report;
                    current.done = false;
                }
                self.current = Some(current);
            }
            previous => {
                if let Some(previous) = previous {
                    let text =
                        note_text(&note_of(&previous.report, states, Some(&report.revision)));
                    if previous.written.as_deref() != Some(text.as_str()) {
                        self.superseded
                            .insert(previous.report.revision.commit.clone(), text);
                    }
                }
                // A revision that comes back (a revert to it) is current again.
                self.superseded.remove(&report.revision.commit);
                self.current = Some(Current {
                    report,
                    written: None,
                    done: false,
                });
            }
        }
    }

    /// The notes whose text differs from what was last written for them.
    pub fn plan(&self, states: &BTreeMap<String, TaskState>) -> Vec<PlannedNote> {
        let mut out: Vec<PlannedNote> = self
            .superseded
            .iter()
            .map(|(commit, text)| PlannedNote {
                commit: commit.clone(),
                text: text.clone(),
                is_final: true,
            })
            .collect();
        if let Some(current) = self.current.as_ref().filter(|c| !c.done) {
            let note = note_of(&current.report, states, None);
            let text = note_text(&note);
            if current.written.as_deref() != Some(text.as_str()) {
                out.push(PlannedNote {
                    commit: current.report.revision.commit.clone(),
                    text,
                    is_final: note.all_tasks_terminal(),
                });
            }
        }
        out
    }

    /// `notes` (from [`Tracker::plan`]) are now in Git.
    pub fn wrote(&mut self, notes: &[PlannedNote]) {
        for note in notes {
            if self.superseded.get(&note.commit) == Some(&note.text) {
                self.superseded.remove(&note.commit);
            }
            if let Some(current) = self
                .current
                .as_mut()
                .filter(|c| c.report.revision.commit == note.commit)
            {
                current.written = Some(note.text.clone());
                current.done = note.is_final;
            }
        }
    }

    /// Nothing left to write until a new report arrives.
    pub fn is_idle(&self) -> bool {
        self.superseded.is_empty() && self.current.as_ref().is_none_or(|c| c.done)
    }
}

/// Whether two reports of one commit describe the same state: a re-sync that only repeats it
/// (new time, no writes) must not rewrite the note, so time and write counts are left out.
fn same_state(a: &SyncReport, b: &SyncReport) -> bool {
    a.revision == b.revision
        && a.status == b.status
        && a.tasks == b.tasks
        && a.folder_errors == b.folder_errors
        && a.apply_errors == b.apply_errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TaskPhase;
    use crate::health::SyncStatus;
    use crate::notes::model::Note;
    use crate::source::snapshot::Revision;
    use crate::sync::report::SyncedTask;

    fn report(commit: char, synced_at: &str) -> SyncReport {
        SyncReport {
            revision: Revision {
                branch: "main".into(),
                commit: commit.to_string().repeat(40),
            },
            status: SyncStatus::Synced,
            applied_revision: None,
            tasks: vec![SyncedTask {
                task_id: 1,
                name: "task-1".into(),
                context_version: 1,
                digest: "sha256:1".into(),
                path: "tasks/1-a".into(),
            }]
            .into(),
            folder_errors: vec![],
            apply_errors: vec![],
            created: 1,
            updated: 0,
            pruned: 0,
            unchanged: 0,
            synced_at: synced_at.into(),
        }
    }

    fn states(phase: Option<TaskPhase>) -> BTreeMap<String, TaskState> {
        phase
            .map(|p| {
                let state = TaskState {
                    phase: Some(p),
                    job_name: Some("svc-1-v1".into()),
                    message: None,
                    context_version: Some(1),
                    ..TaskState::default()
                };
                BTreeMap::from([("task-1".to_string(), state)])
            })
            .unwrap_or_default()
    }

    fn plan_and_write(t: &mut Tracker, s: &BTreeMap<String, TaskState>) -> Vec<(String, Note)> {
        let plan = t.plan(s);
        t.wrote(&plan);
        plan.into_iter()
            .map(|p| (p.commit[..1].to_string(), Note::parse(&p.text).unwrap()))
            .collect()
    }

    #[test]
    fn follows_phases_skips_unchanged_and_stops_when_terminal() {
        use TaskPhase::*;
        let mut t = Tracker::new();
        t.observe(report('a', "t1"), &states(None));
        let steps: &[(Option<TaskPhase>, Option<&str>)] = &[
            (None, Some("Missing")),
            (None, None),
            (Some(Pending), Some("Progressing")),
            (Some(Running), Some("Progressing")),
            (Some(Running), None),
            (Some(Succeeded), Some("Healthy")),
            // Final: a later change of the TaskRun no longer touches this note.
            (Some(Failed), None),
        ];
        for (phase, want) in steps {
            let wrote = plan_and_write(&mut t, &states(*phase));
            match want {
                Some(health) => {
                    assert_eq!(wrote.len(), 1, "{phase:?}");
                    assert_eq!(wrote[0].1.health.as_str(), *health, "{phase:?}");
                }
                None => assert!(wrote.is_empty(), "{phase:?}: {wrote:?}"),
            }
        }
        assert!(t.is_idle());
    }

    #[test]
    fn a_repeated_state_keeps_the_first_synced_at_and_counts_and_a_changed_one_reopens() {
        let mut t = Tracker::new();
        t.observe(report('a', "t1"), &states(None));
        let done = states(Some(TaskPhase::Succeeded));
        assert_eq!(plan_and_write(&mut t, &done)[0].1.synced_at, "t1");
        let mut resync = report('a', "t2");
        (resync.created, resync.unchanged) = (0, 1);
        t.observe(resync, &done);
        assert!(plan_and_write(&mut t, &done).is_empty());
        let mut changed = report('a', "t3");
        changed.status = SyncStatus::OutOfSync;
        t.observe(changed, &done);
        let wrote = plan_and_write(&mut t, &done);
        assert_eq!(
            (wrote[0].1.sync, wrote[0].1.synced_at.as_str()),
            (SyncStatus::OutOfSync, "t3")
        );
    }

    #[test]
    fn a_newer_revision_supersedes_and_finalizes_the_older_note() {
        let running = states(Some(TaskPhase::Running));
        let mut t = Tracker::new();
        t.observe(report('a', "t1"), &running);
        plan_and_write(&mut t, &running);
        t.observe(report('b', "t2"), &running);
        let wrote = plan_and_write(&mut t, &running);
        let commits: Vec<_> = wrote
            .iter()
            .map(|(c, n)| (c.as_str(), n.superseded_by.is_some()))
            .collect();
        assert_eq!(commits, [("a", true), ("b", false)]);
        assert_eq!(
            wrote[0].1.superseded_by.as_deref(),
            Some(format!("main@sha1:{}", "b".repeat(40)).as_str())
        );
        // The older note is never written again.
        let done = states(Some(TaskPhase::Succeeded));
        let wrote = plan_and_write(&mut t, &done);
        assert_eq!(wrote.len(), 1);
        assert_eq!(wrote[0].0, "b");
    }

    #[test]
    fn a_failed_write_is_planned_again() {
        let mut t = Tracker::new();
        t.observe(report('a', "t1"), &states(None));
        t.observe(report('b', "t2"), &states(None));
        assert_eq!(t.plan(&states(None)).len(), 2);
        assert_eq!(t.plan(&states(None)).len(), 2);
        assert!(!t.is_idle());
    }
}
