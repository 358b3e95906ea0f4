//! Real git repositories for the notes tests: a bare "remote" in a temp dir, clones, commits,
//! and sync reports naming those commits.
#![allow(dead_code)]

use git2::{Oid, Repository, Signature};
use orchestrator::crd::TaskPhase;
use orchestrator::health::SyncStatus;
use orchestrator::notes::{NOTES_REF, Note, TaskState};
use orchestrator::source::snapshot::Revision;
use orchestrator::sync::report::{SyncReport, SyncedTask};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Commits `files` on top of `refs/heads/main` of `repo`; returns the commit id.
pub fn commit(repo: &Repository, files: &[(&str, &str)], message: &str) -> Oid {
    let sig = Signature::now("dev", "dev@example.com").unwrap();
    let parent = repo
        .refname_to_id("refs/heads/main")
        .ok()
        .map(|id| repo.find_commit(id).unwrap());
    let base = match &parent {
        Some(p) => p.tree().unwrap(),
        None => repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap(),
    };
    let mut update = git2::build::TreeUpdateBuilder::new();
    for (name, content) in files {
        let blob = repo.blob(content.as_bytes()).unwrap();
        update.upsert(*name, blob, git2::FileMode::Blob);
    }
    let tree = repo
        .find_tree(update.create_updated(repo, &base).unwrap())
        .unwrap();
    let parents: Vec<_> = parent.iter().collect();
    let id = repo
        .commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            message,
            &tree,
            &parents,
        )
        .unwrap();
    repo.set_head("refs/heads/main").unwrap();
    id
}

/// A bare remote with one commit on main, and `clones` bare clones of it.
pub fn remote_with_clones(dir: &Path, clones: usize) -> (Repository, Oid, Vec<Repository>) {
    let remote = Repository::init_bare(dir.join("remote.git")).unwrap();
    let first = commit(&remote, &[("README.md", "hello\n")], "first");
    let clones = (0..clones)
        .map(|i| {
            git2::build::RepoBuilder::new()
                .bare(true)
                .clone(
                    dir.join("remote.git").to_str().unwrap(),
                    &dir.join(format!("clone-{i}.git")),
                )
                .unwrap()
        })
        .collect();
    (remote, first, clones)
}

pub fn revision(commit: Oid) -> Revision {
    Revision {
        branch: "main".into(),
        commit: commit.to_string(),
    }
}

/// A report of `commit` describing TaskRuns `task-<id>` at contextVersion 1.
pub fn report(commit: Oid, task_ids: &[i64], synced_at: &str) -> SyncReport {
    SyncReport {
        revision: revision(commit),
        status: SyncStatus::Synced,
        applied_revision: Some(revision(commit)),
        tasks: task_ids
            .iter()
            .map(|id| SyncedTask {
                task_id: *id,
                name: format!("task-{id}").into(),
                context_version: 1,
                digest: format!("sha256:{id:064}").as_str().into(),
                path: format!("tasks/{id}-t").into(),
            })
            .collect(),
        folder_errors: vec![],
        apply_errors: vec![],
        created: task_ids.len(),
        updated: 0,
        pruned: 0,
        unchanged: 0,
        synced_at: synced_at.into(),
    }
}

/// TaskRun states a test changes while the writer reads them.
#[derive(Clone, Default)]
pub struct States(pub Arc<Mutex<BTreeMap<String, TaskState>>>);

impl States {
    pub fn set(&self, task_id: i64, phase: TaskPhase) {
        self.0.lock().unwrap().insert(
            format!("task-{task_id}"),
            TaskState {
                phase: Some(phase),
                job_name: Some(format!("svc-{task_id}-v1")),
                message: (phase == TaskPhase::Failed).then(|| "exit code 1".to_string()),
                context_version: Some(1),
                reason: Some(phase.to_string()),
                result: phase
                    .is_terminal()
                    .then(|| format!("agent result of task {task_id}")),
                stalled: false,
            },
        );
    }

    pub fn reader(&self) -> Arc<dyn orchestrator::notes::TaskStates> {
        let shared = self.0.clone();
        Arc::new(move || shared.lock().unwrap().clone())
    }
}

/// The note on `commit` in the repository at `path`, if any.
pub fn note_at(path: &Path, commit: Oid) -> Option<Note> {
    let repo = Repository::open(path).unwrap();
    orchestrator::notes::store::read_note_text(&repo, NOTES_REF, commit)
        .unwrap()
        .map(|text| Note::parse(&text).unwrap())
}

/// Polls until `check` holds for the note on `commit` (up to 20 s); returns that note.
pub async fn wait_for_note(
    path: &Path,
    commit: Oid,
    what: &str,
    check: impl Fn(&Note) -> bool,
) -> Note {
    let start = Instant::now();
    loop {
        if let Some(note) = note_at(path, commit)
            && check(&note)
        {
            return note;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what} on {commit} in {}; last note: {:?}",
            path.display(),
            note_at(path, commit)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Number of commits on the notes ref.
pub fn notes_commits(path: &Path) -> usize {
    let repo = Repository::open(path).unwrap();
    let Ok(tip) = repo.refname_to_id(NOTES_REF) else {
        return 0;
    };
    let mut walk = repo.revwalk().unwrap();
    walk.push(tip).unwrap();
    walk.count()
}
