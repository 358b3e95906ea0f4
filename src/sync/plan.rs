//! Pure: desired and live TaskRuns in, a `SyncPlan` (create / update / prune / unchanged / keep)
//! out. Only the fields this source owns are compared, never whole objects, so status, the
//! controller's finalizer and other managers' fields never cause a write.

use crate::desired::{
    ContentHash, DesiredTaskRun, FileFingerprint, KnownTaskRuns, LiveTaskRun, SourceIdentity, Token,
};
use crate::names;
use crate::source::snapshot::FolderError;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Everything the plan looks at.
#[derive(Clone, Copy, Debug)]
pub struct PlanInput<'a> {
    pub desired: &'a [Arc<DesiredTaskRun>],
    pub live: &'a KnownTaskRuns,
    /// Broken folders of the revision; those with a task id keep their TaskRun.
    pub folder_errors: &'a [FolderError],
    /// This source's [`names::LABEL_SOURCE`] value.
    pub source_label: &'a str,
    /// `--prune=false` keeps TaskRuns whose folder left Git.
    pub prune: bool,
    /// What earlier plans found in place; those TaskRuns are not compared again.
    pub settled: Option<&'a Settled>,
    /// This source, to recognise the marks it wrote under an earlier identity
    /// ([`SourceIdentity::owns_legacy_mark`]): those TaskRuns are its own, their mark rewritten.
    pub legacy_owner: Option<&'a SourceIdentity>,
}

/// The described TaskRuns a sync left as the revision wants them: by task id, the desired
/// TaskRun (the same `Arc` the desired cache hands out again while nothing it is made of
/// changed) and the live resourceVersion it was compared with or written at. Every change to an
/// object moves its resourceVersion, so the same desired against the same resourceVersion is
/// still in place and needs no field-by-field compare: a re-sync compares only what moved.
/// 24 bytes a task: a resourceVersion that is not a number (no server seen writes one) is not
/// settled, and compared each time.
#[derive(Clone, Debug, Default)]
pub struct Settled {
    by_task: HashMap<i64, (Arc<DesiredTaskRun>, u64)>,
}

impl Settled {
    /// The TaskRuns `plan` found unchanged or wrote successfully, as `live` (the cluster after
    /// the writes; a failed write is absent from it or at another resourceVersion) holds them.
    pub fn after(plan: &SyncPlan, live: &KnownTaskRuns) -> Self {
        let mut by_task = HashMap::with_capacity(plan.steps.len());
        by_task.extend(
            plan.steps
                .iter()
                .filter(|s| {
                    matches!(
                        s.action,
                        Action::Unchanged | Action::Create | Action::Update(_)
                    )
                })
                .filter_map(|step| {
                    let desired = step.desired.as_ref()?;
                    let rv = live.get(&*step.name)?.resource_version.as_ref()?.number()?;
                    Some((desired.task_id, (desired.clone(), rv)))
                }),
        );
        Self { by_task }
    }

    fn holds(&self, desired: &Arc<DesiredTaskRun>, live: &LiveTaskRun) -> bool {
        self.by_task
            .get(&desired.task_id)
            .is_some_and(|(settled, rv)| {
                Arc::ptr_eq(settled, desired)
                    && live.resource_version.as_ref().and_then(Token::number) == Some(*rv)
            })
    }
}

/// What to do with one TaskRun.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    /// Not in the cluster yet.
    Create,
    /// In the cluster, but a field this source owns differs.
    /// Boxed: most steps are not updates, and every step holds an `Action`.
    Update(Box<Update>),
    /// The cluster already holds what the revision describes: no write.
    Unchanged,
    /// Carries this source's mark and its folder left Git. The uid is a delete precondition,
    /// so a TaskRun recreated meanwhile under the same name is never deleted by mistake.
    Prune { uid: Option<Box<str>> },
    /// Its folder is broken in this revision: kept exactly as it is, neither updated nor pruned.
    KeepBroken,
    /// Its folder left Git but pruning is off (`--prune=false` or the opt-out annotation).
    KeepOrphan { reason: KeepReason },
    /// The revision describes it but another source's mark is on the live TaskRun.
    Conflict { owner: Box<str> },
    /// The revision describes it but the live TaskRun is being deleted; the next sync after it
    /// is gone creates it again.
    WaitForDeletion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KeepReason {
    /// `orchestrator.io/prune: disabled` on the TaskRun.
    Annotation,
    /// `--prune=false`.
    PruneOff,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Update {
    pub from_version: i64,
    pub to_version: i64,
    pub reason: UpdateReason,
    /// The owned fields that differ, e.g. `spec.markdownFiles`, `metadata.labels`.
    pub fields: Vec<&'static str>,
    /// Markdown files added, removed or modified between live and desired.
    pub files: Vec<FileChange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UpdateReason {
    /// The folder's content digest changed: a new contextVersion.
    ContentChanged,
    /// Same content, but someone edited a field this source owns: restored, same version.
    Drift,
    /// A TaskRun of the same name without any source mark: taken over by this source.
    Adopt,
    /// This source's TaskRun under the mark of an earlier identity: the mark is rewritten.
    Migrate,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChange {
    pub filename: String,
    pub change: FileChangeKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FileChangeKind {
    Added,
    Modified,
    Removed,
}

/// One TaskRun and what to do with it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanStep {
    /// Shared with the desired TaskRun and the report.
    pub name: Arc<str>,
    pub task_id: i64,
    /// 24 bytes (its strings boxed), like the name and the desired TaskRun: a plan holds one
    /// step for every task.
    pub action: Action,
    /// The desired TaskRun (its apply body is built when it is written), for the steps the
    /// revision describes.
    pub desired: Option<Arc<DesiredTaskRun>>,
}

impl PlanStep {
    /// Whether carrying out this step takes a write request.
    pub fn is_write(&self) -> bool {
        matches!(
            self.action,
            Action::Create | Action::Update(_) | Action::Prune { .. }
        )
    }
}

/// Every TaskRun the sync looked at, sorted by task id then name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncPlan {
    pub steps: Vec<PlanStep>,
}

impl SyncPlan {
    pub fn writes(&self) -> impl Iterator<Item = &PlanStep> {
        self.steps.iter().filter(|s| s.is_write())
    }

    /// No write needed.
    pub fn is_noop(&self) -> bool {
        self.writes().next().is_none()
    }

    pub fn count(&self, pred: impl Fn(&Action) -> bool) -> usize {
        self.steps.iter().filter(|s| pred(&s.action)).count()
    }
}

/// Pairs desired with live TaskRuns and decides one action for each.
pub fn plan(input: PlanInput<'_>) -> SyncPlan {
    let mut steps = Vec::with_capacity(input.desired.len());
    let mut live_described = 0;
    for desired in input.desired {
        let action = match input.live.get(&*desired.name) {
            None => Action::Create,
            Some(live) if input.settled.is_some_and(|s| s.holds(desired, live)) => {
                live_described += 1;
                Action::Unchanged
            }
            Some(live) => {
                live_described += 1;
                action_for_described(live, desired, &input)
            }
        };
        steps.push(PlanStep {
            name: desired.name.clone(),
            task_id: desired.task_id,
            action,
            desired: Some(desired.clone()),
        });
    }

    // Every live TaskRun is described (a first sync, a re-sync with nothing gone): no orphans,
    // and no table of 100,000 names to find them.
    if live_described == input.live.len() {
        return sorted(steps);
    }
    let desired_names: HashSet<&str> = input.desired.iter().map(|d| &*d.name).collect();
    let broken: HashSet<String> = input
        .folder_errors
        .iter()
        .filter_map(|e| e.task_id)
        .map(names::task_run_name)
        .collect();

    for (name, live) in input.live {
        if desired_names.contains(&**name) || !is_own(live, &input) {
            continue;
        }
        let action = if broken.contains(&**name) {
            Action::KeepBroken
        } else if live.deleting {
            continue;
        } else if live.marks.prune.as_deref() == Some(names::PRUNE_DISABLED) {
            Action::KeepOrphan {
                reason: KeepReason::Annotation,
            }
        } else if !input.prune {
            Action::KeepOrphan {
                reason: KeepReason::PruneOff,
            }
        } else {
            Action::Prune {
                uid: live.uid.as_ref().map(|uid| uid.to_string().into()),
            }
        };
        steps.push(PlanStep {
            name: name.clone(),
            task_id: live.spec.task_id,
            action,
            desired: None,
        });
    }

    sorted(steps)
}

/// By task id, then name. Names are unique, so an unstable sort gives the same order, without
/// a stable sort's buffer of half the steps.
fn sorted(mut steps: Vec<PlanStep>) -> SyncPlan {
    steps.sort_unstable_by(|a, b| (a.task_id, &a.name).cmp(&(b.task_id, &b.name)));
    SyncPlan { steps }
}

/// Whether `live` carries this source's mark, now or under an earlier identity.
fn is_own(live: &LiveTaskRun, input: &PlanInput<'_>) -> bool {
    source_of(live) == Some(input.source_label)
        || input.legacy_owner.is_some_and(|s| s.owns_legacy_mark(live))
}

/// Who owns a TaskRun with another source's mark, as a person reads it: the source it names
/// (annotation) and the mark itself.
pub fn owner_of(live: &LiveTaskRun) -> String {
    let mark = source_of(live).unwrap_or_default();
    let marks = &live.marks;
    match marks
        .source_display
        .as_deref()
        .or(marks.source_url.as_deref())
    {
        Some(source) => format!("{source}, mark {}={mark}", names::LABEL_SOURCE),
        None => format!("mark {}={mark}", names::LABEL_SOURCE),
    }
}

fn action_for_described(
    live: &LiveTaskRun,
    desired: &DesiredTaskRun,
    input: &PlanInput<'_>,
) -> Action {
    if source_of(live).is_some() && !is_own(live, input) {
        return Action::Conflict {
            owner: owner_of(live).into(),
        };
    }
    if live.deleting {
        return Action::WaitForDeletion;
    }
    let fields = drifted_fields(live, desired);
    if fields.is_empty() {
        return Action::Unchanged;
    }
    let reason = if !live.spec.content_digest.is(&desired.digest().0) {
        UpdateReason::ContentChanged
    } else if source_of(live).is_none() {
        UpdateReason::Adopt
    } else if source_of(live) != Some(input.source_label) {
        UpdateReason::Migrate
    } else {
        UpdateReason::Drift
    };
    Action::Update(Box::new(Update {
        from_version: live.spec.context_version,
        to_version: desired.context_version,
        reason,
        fields,
        files: file_changes(&live.spec.markdown_files, desired.files()),
    }))
}

/// The fields this source owns whose live value differs from the desired one. Labels and
/// annotations are compared key by key (those that differ from task to task by hash): other
/// writers' keys are theirs. Markdown is compared by fingerprint.
pub fn drifted_fields(live: &LiveTaskRun, desired: &DesiredTaskRun) -> Vec<&'static str> {
    let l = &live.spec;
    let mut fields = vec![];
    let mut differs = |changed: bool, field: &'static str| {
        if changed {
            fields.push(field);
        }
    };
    differs(l.task_id != desired.task_id, "spec.taskId");
    differs(
        !l.service_name.is(&desired.folder.service_name),
        "spec.serviceName",
    );
    differs(
        !l.agent_name.is(&desired.folder.agent_name),
        "spec.agentName",
    );
    differs(
        l.context_version != desired.context_version,
        "spec.contextVersion",
    );
    differs(
        !l.content_digest.is(&desired.digest().0),
        "spec.contentDigest",
    );
    differs(!l.source_path.is(&desired.source_path), "spec.sourcePath");
    differs(!desired.has_files_of(l), "spec.markdownFiles");
    differs(l.suspend != desired.folder.suspend, "spec.suspend");
    differs(l.priority != desired.folder.priority, "spec.priority");
    let marks = &live.marks;
    let target = &desired.target;
    differs(
        live.task_labels != desired.task_labels_hash()
            || marks.managed_by.as_deref() != Some(names::MANAGED_BY)
            || marks.source.as_deref() != Some(&target.source_label),
        "metadata.labels",
    );
    // The revision time and the source URL only where the desired TaskRun sets them.
    let optional = |live: &Option<Box<str>>, wanted: Option<&str>| {
        wanted.is_none_or(|wanted| live.as_deref() == Some(wanted))
    };
    differs(
        live.task_annotations != desired.task_annotations_hash()
            || marks.revision.as_deref() != Some(&desired.produced_by.revision)
            || marks.source_display.as_deref() != Some(&target.source_display)
            || !optional(&marks.revision_time, desired.produced_by.time.as_deref())
            || !optional(&marks.source_url, target.source_url.as_deref()),
        "metadata.annotations",
    );
    fields
}

/// Markdown files added, removed or modified, sorted by file name.
pub fn file_changes<'a>(
    live: &'a [FileFingerprint],
    desired: impl Iterator<Item = (&'a str, &'a ContentHash)>,
) -> Vec<FileChange> {
    let live: BTreeMap<&str, &ContentHash> =
        live.iter().map(|f| (&*f.filename, &f.content)).collect();
    let desired: BTreeMap<&str, &ContentHash> = desired.collect();
    let all: BTreeSet<&str> = live.keys().chain(desired.keys()).copied().collect();
    all.into_iter()
        .filter_map(|filename| {
            let change = match (live.get(filename), desired.get(filename)) {
                (None, Some(_)) => FileChangeKind::Added,
                (Some(_), None) => FileChangeKind::Removed,
                (Some(a), Some(b)) if a != b => FileChangeKind::Modified,
                _ => return None,
            };
            Some(FileChange {
                filename: filename.to_string(),
                change,
            })
        })
        .collect()
}

/// The source mark on a live TaskRun.
pub fn source_of(live: &LiveTaskRun) -> Option<&str> {
    live.marks.source.as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MarkdownFile;
    use crate::crd::TaskRun;
    use crate::desired::desired_task_runs;
    use crate::desired::tests::{folder, live_after, snapshot, source, task_runs_after};
    use crate::desired::{LiveTaskRuns, TextHash};
    use crate::source::snapshot::SourceSnapshot;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn plan_of(snapshot: &SourceSnapshot, live: &KnownTaskRuns, prune: bool) -> SyncPlan {
        let desired = desired_task_runs(snapshot, &source(), "default", live);
        plan(PlanInput {
            legacy_owner: None,
            desired: &desired,
            live,
            folder_errors: &snapshot.errors,
            source_label: &source().label_value(),
            prune,
            settled: None,
        })
    }

    #[test]
    fn a_settled_task_run_is_compared_again_only_when_its_desired_or_its_resource_version_moved() {
        let snap = snapshot('1', vec![folder(1, "a")]);
        let mut live = live_after(&snap, &KnownTaskRuns::new());
        live.get_mut("task-1").unwrap().resource_version = Some(Token::Number(7));
        let desired = desired_task_runs(&snap, &source(), "default", &live);
        let input = |desired, live, settled| PlanInput {
            legacy_owner: None,
            desired,
            live,
            folder_errors: &[],
            source_label: "",
            prune: true,
            settled,
        };
        let label = source().label_value();
        let first = plan(PlanInput {
            legacy_owner: None,
            source_label: &label,
            ..input(&desired, &live, None)
        });
        assert_eq!(first.steps[0].action, Action::Unchanged);
        let settled = Settled::after(&first, &live);
        // A hand edit the settlement has not seen: only a moved resourceVersion reveals it.
        let mut edited = live.clone();
        edited.get_mut("task-1").unwrap().spec.agent_name = TextHash::of("edited");
        let mut edited_and_moved = edited.clone();
        edited_and_moved.get_mut("task-1").unwrap().resource_version = Some(Token::Number(8));
        let rebuilt = desired_task_runs(&snap, &source(), "default", &live);
        let cases = [
            (
                "same desired, same resourceVersion",
                &desired,
                &edited,
                "unchanged",
            ),
            (
                "same desired, resourceVersion moved",
                &desired,
                &edited_and_moved,
                "update",
            ),
            (
                "another desired of the same content",
                &rebuilt,
                &edited,
                "update",
            ),
        ];
        for (case, desired, live, want) in cases {
            let p = plan(PlanInput {
                legacy_owner: None,
                source_label: &label,
                ..input(desired, live, Some(&settled))
            });
            let got = match &p.steps[0].action {
                Action::Unchanged => "unchanged",
                Action::Update(_) => "update",
                other => panic!("{case}: {other:?}"),
            };
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn only_what_is_in_place_is_settled() {
        let snap = snapshot('1', vec![folder(1, "a"), folder(2, "b"), folder(3, "c")]);
        let mut live = live_after(
            &snapshot('0', vec![folder(1, "a"), folder(2, "old")]),
            &KnownTaskRuns::new(),
        );
        for tr in live.values_mut() {
            tr.resource_version = Some(Token::Number(1));
        }
        let p = plan_of(&snap, &live, true);
        // After the writes: task-2 updated (new resourceVersion), task-3's create failed.
        let mut after = live.clone();
        after.get_mut("task-2").unwrap().resource_version = Some(Token::Number(2));
        let settled = Settled::after(&p, &after);
        let mut ids: Vec<i64> = settled.by_task.keys().copied().collect();
        ids.sort();
        assert_eq!(ids, [1, 2]);
        assert_eq!(settled.by_task[&2].1, 2);
        // A resourceVersion that is not a number is compared each time, not settled.
        after.get_mut("task-1").unwrap().resource_version = Some(Token::Text("a1".into()));
        let settled = Settled::after(&p, &after);
        assert_eq!(settled.by_task.keys().collect::<Vec<_>>(), [&2]);
    }

    #[test]
    fn the_records_kept_for_every_task_stay_small() {
        use std::mem::size_of;
        // One of each per task: at 100,000 tasks, 8 bytes more is 0.8 MiB (a hash table's
        // slot, 1 MiB).
        assert!(size_of::<Action>() <= 24);
        assert!(size_of::<PlanStep>() <= 56);
        assert!(size_of::<DesiredTaskRun>() <= 80);
        assert!(size_of::<crate::sync::live_watch::WatchedMeta>() <= 32);
        assert_eq!(size_of::<Box<LiveTaskRun>>(), 8);
    }

    fn actions(plan: &SyncPlan) -> Vec<(String, Action)> {
        plan.steps
            .iter()
            .map(|s| (s.name.to_string(), s.action.clone()))
            .collect()
    }

    fn live_of(tasks: &[(i64, &str)]) -> KnownTaskRuns {
        let tasks = tasks.iter().map(|(id, c)| folder(*id, c)).collect();
        live_after(&snapshot('1', tasks), &KnownTaskRuns::new())
    }

    /// The TaskRuns a sync of these tasks leaves, whole, for [`edit`].
    fn whole_of(tasks: &[(i64, &str)]) -> LiveTaskRuns {
        let tasks = tasks.iter().map(|(id, c)| folder(*id, c)).collect();
        task_runs_after(&snapshot('1', tasks), &KnownTaskRuns::new())
    }

    /// What the sync knows of `live` after `f` edited TaskRun `name` (by hand, say).
    fn edit(mut live: LiveTaskRuns, name: &str, f: impl FnOnce(&mut TaskRun)) -> KnownTaskRuns {
        f(live.get_mut(name).unwrap());
        live.into_iter()
            .map(|(n, tr)| (n.into(), tr.into()))
            .collect()
    }

    /// (what, snapshot, live, prune, expected actions)
    type Case = (
        &'static str,
        SourceSnapshot,
        KnownTaskRuns,
        bool,
        Vec<(&'static str, Action)>,
    );

    #[test]
    fn plan_table() {
        let base = live_of(&[(1, "a"), (2, "b")]);
        let foreign = edit(whole_of(&[(3, "z")]), "task-3", |tr| {
            tr.metadata
                .labels
                .as_mut()
                .unwrap()
                .remove(names::LABEL_SOURCE);
        });
        let other_source = edit(whole_of(&[(1, "a")]), "task-1", |tr| {
            tr.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert(names::LABEL_SOURCE.into(), "src-other".into());
        });
        let opted_out = edit(whole_of(&[(1, "a"), (2, "b")]), "task-2", |tr| {
            tr.metadata
                .annotations
                .as_mut()
                .unwrap()
                .insert(names::ANNOTATION_PRUNE.into(), names::PRUNE_DISABLED.into());
        });
        let terminating = edit(whole_of(&[(1, "a"), (2, "b")]), "task-2", |tr| {
            tr.metadata.deletion_timestamp = Some(Time(Default::default()));
        });
        let status_and_finalizer_only = edit(whole_of(&[(1, "a"), (2, "b")]), "task-1", |tr| {
            tr.metadata.finalizers = Some(vec![names::FINALIZER.into()]);
            tr.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert("team".into(), "x".into());
        });
        let prune = |uid: Option<&str>| Action::Prune {
            uid: uid.map(Box::from),
        };
        let keep = |reason| Action::KeepOrphan { reason };

        let cases: Vec<Case> = vec![
            (
                "first sync creates everything",
                snapshot('1', vec![folder(1, "a"), folder(2, "b")]),
                KnownTaskRuns::new(),
                true,
                vec![("task-1", Action::Create), ("task-2", Action::Create)],
            ),
            (
                "same revision again changes nothing",
                snapshot('1', vec![folder(1, "a"), folder(2, "b")]),
                base.clone(),
                true,
                vec![("task-1", Action::Unchanged), ("task-2", Action::Unchanged)],
            ),
            (
                "a new commit with the same content changes nothing",
                snapshot('9', vec![folder(1, "a"), folder(2, "b")]),
                base.clone(),
                true,
                vec![("task-1", Action::Unchanged), ("task-2", Action::Unchanged)],
            ),
            (
                "status, finalizers and foreign labels are not ours to compare",
                snapshot('1', vec![folder(1, "a"), folder(2, "b")]),
                status_and_finalizer_only,
                true,
                vec![("task-1", Action::Unchanged), ("task-2", Action::Unchanged)],
            ),
            (
                "a deleted folder is pruned",
                snapshot('2', vec![folder(1, "a")]),
                base.clone(),
                true,
                vec![("task-1", Action::Unchanged), ("task-2", prune(None))],
            ),
            (
                "--prune=false keeps it",
                snapshot('2', vec![folder(1, "a")]),
                base.clone(),
                false,
                vec![
                    ("task-1", Action::Unchanged),
                    ("task-2", keep(KeepReason::PruneOff)),
                ],
            ),
            (
                "the opt-out annotation keeps it",
                snapshot('2', vec![folder(1, "a")]),
                opted_out,
                true,
                vec![
                    ("task-1", Action::Unchanged),
                    ("task-2", keep(KeepReason::Annotation)),
                ],
            ),
            (
                "a TaskRun already being deleted is left alone",
                snapshot('2', vec![folder(1, "a")]),
                terminating.clone(),
                true,
                vec![("task-1", Action::Unchanged)],
            ),
            (
                "a described TaskRun being deleted is waited for",
                snapshot('2', vec![folder(1, "a"), folder(2, "b")]),
                terminating,
                true,
                vec![
                    ("task-1", Action::Unchanged),
                    ("task-2", Action::WaitForDeletion),
                ],
            ),
            (
                "a TaskRun without the mark is never pruned",
                snapshot('2', vec![]),
                foreign,
                true,
                vec![],
            ),
            (
                "a TaskRun of another source is a conflict, not a write",
                snapshot('2', vec![folder(1, "a")]),
                other_source,
                true,
                vec![(
                    "task-1",
                    Action::Conflict {
                        owner: "https://example.com/tasks.git (path tasks), mark \
                                orchestrator.io/source=src-other"
                            .into(),
                    },
                )],
            ),
        ];
        for (what, snapshot, live, prune, want) in cases {
            let got = actions(&plan_of(&snapshot, &live, prune));
            let want: Vec<(String, Action)> =
                want.into_iter().map(|(n, a)| (n.to_string(), a)).collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn changed_content_is_an_update_to_the_next_version_naming_the_files() {
        let live = live_of(&[(1, "a"), (2, "b")]);
        let mut changed = folder(2, "b2");
        let content = Arc::make_mut(&mut changed.content);
        let mut files = content.markdown_files.to_vec();
        files.push(crate::source::TaskFile::held("notes.md", "n"));
        content.markdown_files = files.into();
        content.digest = crate::source::ContentDigest(format!("{}x", content.digest).into());
        let plan = plan_of(&snapshot('2', vec![folder(1, "a"), changed]), &live, true);
        assert_eq!(plan.writes().count(), 1, "exactly that task is written");
        let Action::Update(update) = &plan.steps[1].action else {
            panic!("{:?}", plan.steps[1]);
        };
        assert_eq!((update.from_version, update.to_version), (1, 2));
        assert_eq!(update.reason, UpdateReason::ContentChanged);
        assert_eq!(
            update.files,
            vec![
                FileChange {
                    filename: "notes.md".into(),
                    change: FileChangeKind::Added
                },
                FileChange {
                    filename: "prompt.md".into(),
                    change: FileChangeKind::Modified
                },
            ]
        );
    }

    #[test]
    fn a_hand_edited_spec_is_restored_at_the_same_version() {
        let live = edit(whole_of(&[(1, "a")]), "task-1", |tr| {
            tr.spec.markdown_files[0] = MarkdownFile {
                filename: "prompt.md".into(),
                content: "edited by hand".into(),
            };
            tr.spec.agent_name = "someone-else".into();
        });
        let plan = plan_of(&snapshot('1', vec![folder(1, "a")]), &live, true);
        let Action::Update(update) = &plan.steps[0].action else {
            panic!("{:?}", plan.steps[0]);
        };
        assert_eq!(update.reason, UpdateReason::Drift);
        assert_eq!((update.from_version, update.to_version), (1, 1));
        assert_eq!(update.fields, vec!["spec.agentName", "spec.markdownFiles"]);
        let body = plan.steps[0]
            .desired
            .as_ref()
            .unwrap()
            .apply_body()
            .unwrap();
        assert_eq!(body.spec.markdown_files[0].content, "a");
    }

    #[test]
    fn a_removed_label_is_drift_and_an_unmarked_twin_is_adopted() {
        let relabeled = edit(whole_of(&[(1, "a")]), "task-1", |tr| {
            tr.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert(names::LABEL_TASK_ID.into(), "7".into());
        });
        let plan1 = plan_of(&snapshot('1', vec![folder(1, "a")]), &relabeled, true);
        assert!(
            matches!(&plan1.steps[0].action, Action::Update(u) if u.reason == UpdateReason::Drift && u.fields == ["metadata.labels"]),
            "{plan1:?}"
        );
        let unmarked = edit(whole_of(&[(1, "a")]), "task-1", |tr| {
            tr.metadata.labels = None;
        });
        let plan2 = plan_of(&snapshot('1', vec![folder(1, "a")]), &unmarked, true);
        assert!(
            matches!(&plan2.steps[0].action, Action::Update(u) if u.reason == UpdateReason::Adopt),
            "{plan2:?}"
        );
    }

    #[test]
    fn a_broken_folder_keeps_its_task_run_and_does_not_stop_the_rest() {
        let live = live_of(&[(1, "a"), (2, "b")]);
        let mut snap = snapshot('2', vec![folder(1, "a2"), folder(3, "c")]);
        snap.errors.push(FolderError {
            folder: "tasks/2-t".into(),
            file: Some("task.yaml".into()),
            task_id: Some(2),
            message: "agentName is missing".into(),
        });
        let plan = plan_of(&snap, &live, true);
        let got: Vec<(String, &'static str)> = plan
            .steps
            .iter()
            .map(|s| {
                let kind = match s.action {
                    Action::Create => "create",
                    Action::Update(_) => "update",
                    Action::KeepBroken => "keep",
                    _ => "other",
                };
                (s.name.to_string(), kind)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("task-1".to_string(), "update"),
                ("task-2".to_string(), "keep"),
                ("task-3".to_string(), "create"),
            ]
        );
    }

    #[test]
    fn prune_carries_the_uid_precondition() {
        let live = edit(whole_of(&[(1, "a")]), "task-1", |tr| {
            tr.metadata.uid = Some("uid-1".into());
        });
        let plan = plan_of(&snapshot('2', vec![]), &live, true);
        assert_eq!(
            plan.steps[0].action,
            Action::Prune {
                uid: Some("uid-1".into())
            }
        );
    }
}
