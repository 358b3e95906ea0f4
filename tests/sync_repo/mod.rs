//! A real git repository of task folders for the sync flow tests: files in, commits and
//! snapshots out.
#![allow(dead_code)]

use git2::{IndexAddOption, Oid, Repository, ResetType, Signature};
use orchestrator::source::{DigestCache, SourceSnapshot, read_snapshot};
use std::path::{Path, PathBuf};

pub const TASKS: &str = "tasks";

pub struct TaskRepo {
    pub dir: tempfile::TempDir,
    pub repo: Repository,
}

impl TaskRepo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = Repository::init_opts(dir.path(), &opts).expect("git init");
        TaskRepo { dir, repo }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn folder(&self, id: i64) -> PathBuf {
        self.path().join(TASKS).join(format!("{id}-task"))
    }

    /// Writes `tasks/<id>-task/` with a task.yaml and one prompt.md.
    pub fn write_task(&self, id: i64, prompt: &str) {
        let folder = self.folder(id);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("task.yaml"),
            "serviceName: web\nagentName: claude-code\n",
        )
        .unwrap();
        std::fs::write(folder.join("prompt.md"), prompt).unwrap();
    }

    pub fn write_file(&self, id: i64, name: &str, content: &str) {
        std::fs::write(self.folder(id).join(name), content).unwrap();
    }

    pub fn remove_task(&self, id: i64) {
        std::fs::remove_dir_all(self.folder(id)).unwrap();
    }

    /// Stages everything (additions and deletions) and commits on main.
    pub fn commit(&self, message: &str) -> Oid {
        let mut index = self.repo.index().unwrap();
        index.add_all(["*"], IndexAddOption::DEFAULT, None).unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = Signature::now("t", "t@example.com").unwrap();
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap()
    }

    /// `git reset --hard <commit>`: what a force-push back looks like to the source.
    pub fn reset_hard(&self, commit: Oid) {
        let object = self.repo.find_object(commit, None).unwrap();
        self.repo.reset(&object, ResetType::Hard, None).unwrap();
    }

    /// The snapshot of HEAD, read from the object database like the sync's source does.
    pub fn snapshot(&self) -> SourceSnapshot {
        let head = self.repo.head().unwrap().peel_to_commit().unwrap().id();
        read_snapshot(&self.repo, head, "main", TASKS, &mut DigestCache::new())
            .expect("the snapshot is read")
    }
}
