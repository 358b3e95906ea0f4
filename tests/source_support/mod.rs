//! Real git repositories in temp dirs for the source tests: write files, commit, force-push.
#![allow(dead_code)]

use git2::{Oid, Repository, Signature};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

pub struct TestRepo {
    pub dir: TempDir,
    pub repo: Repository,
}

pub const YAML_WEB: &str = "serviceName: web\nagentName: claude-code\n";

impl TestRepo {
    /// A non-bare repository whose branch is `main`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut options = git2::RepositoryInitOptions::new();
        options.initial_head("main");
        let repo = Repository::init_opts(dir.path(), &options).unwrap();
        TestRepo { dir, repo }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        let path = self.file(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    /// A task folder with task.yaml and the given markdown files.
    pub fn task(&self, folder: &str, yaml: &str, files: &[(&str, &str)]) -> &Self {
        self.write(&format!("{folder}/task.yaml"), yaml);
        for (name, content) in files {
            self.write(&format!("{folder}/{name}"), content);
        }
        self
    }

    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        let path = self.file(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
        self
    }

    pub fn remove(&self, rel: &str) -> &Self {
        let path = self.file(rel);
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
        self
    }

    /// Stages everything (additions, changes, deletions) and commits on HEAD.
    pub fn commit(&self, message: &str) -> Oid {
        let mut index = self.repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = Signature::now("Test", "test@example.com").unwrap();
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap()
    }

    /// Moves `main` back to `onto` and checks it out (untracked files removed): the start of a
    /// rewritten history that the next commit then force-pushes.
    pub fn reset_hard(&self, onto: Oid) -> &Self {
        let commit = self.repo.find_commit(onto).unwrap();
        self.repo
            .reference("refs/heads/main", onto, true, "reset")
            .unwrap();
        let mut checkout = git2::build::CheckoutBuilder::new();
        checkout.force().remove_untracked(true);
        self.repo
            .checkout_tree(commit.as_object(), Some(&mut checkout))
            .unwrap();
        self.repo.set_head("refs/heads/main").unwrap();
        self
    }
}

/// A git source on `url` (branch main, path tasks, a 30 s interval) with `credentials`,
/// mirrored under `mirrors`.
pub fn git_source(
    url: String,
    mirrors: &Path,
    credentials: orchestrator::source::Credentials,
) -> orchestrator::source::GitSource {
    orchestrator::source::GitSource::new(orchestrator::source::SourceConfig {
        url,
        branch: "main".into(),
        path: "tasks".into(),
        mirror_dir: mirrors.to_path_buf(),
        interval: std::time::Duration::from_secs(30),
        credentials,
    })
}
