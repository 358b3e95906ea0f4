//! The git source against real repositories: fetching into a bare mirror, branch moves and a
//! force-push, an unreachable remote (last good snapshot kept, backoff), a deleted or corrupt
//! mirror (cloned again), a plain local path whose objects the mirror shares instead of fetching,
//! credentials kept out of messages, and the refs watch.

mod source_support;

use orchestrator::source::{Credentials, GitSource, SourceConfig, SourceError, watch_refs};
use pretty_assertions::assert_eq;
use source_support::{TestRepo, YAML_WEB};
use std::sync::Arc;
use std::time::Duration;

fn source(url: String, mirrors: &std::path::Path) -> GitSource {
    source_support::git_source(url, mirrors, Credentials::none())
}

fn ids(s: &orchestrator::source::SourceSnapshot) -> Vec<i64> {
    s.tasks.iter().map(|t| t.task_id).collect()
}

#[tokio::test]
async fn follows_commits_and_force_pushes_through_the_mirror() {
    follows_commits_and_force_pushes(|p| format!("file://{}", p.display())).await;
}

/// A plain path shares the repository's objects (`git clone --shared`) instead of fetching them.
#[tokio::test]
async fn a_plain_local_path_is_followed_through_a_mirror_that_shares_its_objects() {
    let (src, _origin, _mirrors) =
        follows_commits_and_force_pushes(|p| p.display().to_string()).await;
    let alternates = src.mirror_path().join("objects/info/alternates");
    assert!(alternates.is_file(), "the mirror borrows the objects");
    let packs = std::fs::read_dir(src.mirror_path().join("objects/pack"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(packs, 0, "no object was copied");
}

/// A repository with one task and a linked worktree of it (`git worktree add`); the temp dir
/// holding the worktree must outlive it.
fn origin_with_a_linked_worktree() -> (TestRepo, tempfile::TempDir, std::path::PathBuf) {
    let origin = TestRepo::new();
    origin.task("tasks/1-a", YAML_WEB, &[("prompt.md", "one")]);
    origin.commit("one");
    let parent = tempfile::tempdir().unwrap();
    let worktree_dir = parent.path().join("linked");
    origin.repo.worktree("linked", &worktree_dir, None).unwrap();
    (origin, parent, worktree_dir)
}

/// `orchestrator run --repo .` inside a linked worktree (`git worktree add`): the objects live
/// in the main repository, not under the worktree's git directory.
#[tokio::test]
async fn a_linked_worktree_is_followed_through_the_main_repositorys_objects() {
    let (origin, _parent, worktree_dir) = origin_with_a_linked_worktree();
    let mirrors = tempfile::tempdir().unwrap();
    let mut src = source(worktree_dir.display().to_string(), mirrors.path());
    assert_eq!(ids(&src.fetch_snapshot().await.unwrap()), vec![1]);

    origin.task("tasks/2-b", YAML_WEB, &[("prompt.md", "two")]);
    let second = origin.commit("two");
    let s = src.fetch_snapshot().await.unwrap();
    assert_eq!(s.revision.commit, second.to_string());
    assert_eq!(ids(&s), vec![1, 2]);
}

#[tokio::test]
async fn a_fetch_over_file_url_copies_objects() {
    let origin = TestRepo::new();
    origin.task("tasks/1-a", YAML_WEB, &[("prompt.md", "one")]);
    origin.commit("one");
    let mirrors = tempfile::tempdir().unwrap();
    let mut src = source(
        format!("file://{}", origin.path().display()),
        mirrors.path(),
    );
    src.fetch_snapshot().await.unwrap();
    assert!(!src.mirror_path().join("objects/info/alternates").exists());
}

#[tokio::test]
async fn a_branch_deleted_in_a_plain_local_repository_leaves_the_mirror() {
    let origin = TestRepo::new();
    origin.task("tasks/1-a", YAML_WEB, &[("prompt.md", "one")]);
    let first = origin.commit("one");
    let commit = origin.repo.find_commit(first).unwrap();
    origin.repo.branch("old", &commit, false).unwrap();
    let mirrors = tempfile::tempdir().unwrap();
    let mut src = source(origin.path().display().to_string(), mirrors.path());
    src.fetch_snapshot().await.unwrap();
    let mirror = git2::Repository::open_bare(src.mirror_path()).unwrap();
    assert!(mirror.find_reference("refs/heads/old").is_ok());

    origin
        .repo
        .find_branch("old", git2::BranchType::Local)
        .unwrap()
        .delete()
        .unwrap();
    origin.task("tasks/2-b", YAML_WEB, &[("prompt.md", "two")]);
    origin.commit("two");
    src.fetch_snapshot().await.unwrap();
    assert!(mirror.find_reference("refs/heads/old").is_err());
    assert_eq!(
        mirror
            .find_reference("HEAD")
            .unwrap()
            .symbolic_target()
            .ok()
            .flatten(),
        Some("refs/heads/main")
    );
}

/// The source, and the repository and mirror directory it lives on.
async fn follows_commits_and_force_pushes(
    url: fn(&std::path::Path) -> String,
) -> (GitSource, TestRepo, tempfile::TempDir) {
    let origin = TestRepo::new();
    let mirrors = tempfile::tempdir().unwrap();
    origin.task("tasks/1-a", YAML_WEB, &[("prompt.md", "one")]);
    let first = origin.commit("one");
    let mut src = source(url(origin.path()), mirrors.path());

    let s1 = src.fetch_snapshot().await.unwrap();
    assert_eq!(s1.revision.to_string(), format!("main@sha1:{first}"));
    assert_eq!(ids(&s1), vec![1]);
    assert!(src.mirror_path().join("HEAD").exists(), "a bare mirror");
    assert!(!src.mirror_path().join(".git").exists());

    let again = src.fetch_snapshot().await.unwrap();
    assert!(Arc::ptr_eq(&s1, &again), "unchanged commit: not read again");

    origin.task("tasks/2-b", YAML_WEB, &[("prompt.md", "two")]);
    let second = origin.commit("two");
    let s2 = src.fetch_snapshot().await.unwrap();
    assert_eq!(s2.revision.commit, second.to_string());
    assert_eq!(ids(&s2), vec![1, 2]);
    assert!(
        Arc::ptr_eq(&s2.tasks[0].path, &s1.tasks[0].path),
        "an untouched folder's path is the previous snapshot's, not a copy"
    );

    // Force-push: history rewritten from the first commit; task 2 disappears, task 3 appears.
    origin
        .reset_hard(first)
        .task("tasks/3-c", YAML_WEB, &[("prompt.md", "three")]);
    let rewritten = origin.commit("rewritten");
    let s3 = src.fetch_snapshot().await.unwrap();
    assert_eq!(s3.revision.commit, rewritten.to_string());
    assert_eq!(ids(&s3), vec![1, 3]);
    (src, origin, mirrors)
}

#[tokio::test]
async fn unreachable_remote_keeps_the_last_good_snapshot_and_backs_off() {
    let parent = tempfile::tempdir().unwrap();
    let origin = TestRepo::new();
    origin.task("tasks/1-a", YAML_WEB, &[("prompt.md", "one")]);
    let first = origin.commit("one");
    let live = parent.path().join("origin");
    let moved = parent.path().join("moved-away");
    std::fs::rename(origin.path(), &live).unwrap();
    let mirrors = tempfile::tempdir().unwrap();
    let mut src = source(live.display().to_string(), mirrors.path());

    let good = src.fetch_snapshot().await.unwrap();
    assert_eq!(src.next_delay(), Duration::from_secs(30));

    std::fs::rename(&live, &moved).unwrap();
    for (attempt, delay) in [(1, 2), (2, 4), (3, 8)] {
        let err = src.fetch_snapshot().await.unwrap_err();
        assert!(matches!(err, SourceError::Fetch { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot fetch {} (attempt {attempt}): ",
                live.display()
            )),
            "{text}"
        );
        assert!(
            text.ends_with(&format!(
                "; check the URL, the network and the credentials; still using the last good snapshot main@sha1:{first}"
            )),
            "{text}"
        );
        assert_eq!(src.consecutive_failures(), attempt);
        assert_eq!(src.next_delay(), Duration::from_secs(delay));
        assert!(Arc::ptr_eq(&src.last_good().unwrap(), &good));
    }

    std::fs::rename(&moved, &live).unwrap();
    let back = src.fetch_snapshot().await.unwrap();
    assert!(Arc::ptr_eq(&back, &good), "same commit, same snapshot");
    assert_eq!(src.consecutive_failures(), 0);
    assert_eq!(src.next_delay(), Duration::from_secs(30));
}

#[tokio::test]
async fn first_fetch_failure_says_there_is_no_snapshot_yet() {
    let mirrors = tempfile::tempdir().unwrap();
    let missing = mirrors.path().join("no-such-repo");
    let mut src = source(missing.display().to_string(), mirrors.path());
    let text = src.fetch_snapshot().await.unwrap_err().to_string();
    assert!(text.ends_with("; no snapshot has been read yet"), "{text}");
    assert!(src.last_good().is_none());
}

#[tokio::test]
async fn a_deleted_mirror_is_cloned_again() {
    let origin = TestRepo::new();
    let mirrors = tempfile::tempdir().unwrap();
    origin.task("tasks/1-a", YAML_WEB, &[("prompt.md", "one")]);
    origin.commit("one");
    let mut src = source(origin.path().display().to_string(), mirrors.path());
    src.fetch_snapshot().await.unwrap();

    std::fs::remove_dir_all(src.mirror_path()).unwrap();
    origin.task("tasks/2-b", YAML_WEB, &[("prompt.md", "two")]);
    let second = origin.commit("two");
    let s = src.fetch_snapshot().await.unwrap();
    assert_eq!(s.revision.commit, second.to_string());
    assert_eq!(ids(&s), vec![1, 2]);
    assert!(src.mirror_path().join("objects").is_dir());
}

#[tokio::test]
async fn a_corrupt_mirror_is_cloned_again() {
    let origin = TestRepo::new();
    let mirrors = tempfile::tempdir().unwrap();
    origin.task("tasks/1-a", YAML_WEB, &[("prompt.md", "one")]);
    origin.commit("one");
    let mut src = source(origin.path().display().to_string(), mirrors.path());
    src.fetch_snapshot().await.unwrap();

    // Lose every object: the refs now point at commits the mirror does not have.
    let objects = src.mirror_path().join("objects");
    for entry in std::fs::read_dir(&objects).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap()
        } else {
            std::fs::remove_file(&path).unwrap()
        }
    }
    std::fs::create_dir_all(objects.join("pack")).unwrap();
    origin.task("tasks/2-b", YAML_WEB, &[("prompt.md", "two")]);
    let second = origin.commit("two");
    let s = src.fetch_snapshot().await.unwrap();
    assert_eq!(s.revision.commit, second.to_string());
    assert_eq!(ids(&s), vec![1, 2]);
    assert!(s.errors.is_empty(), "{:?}", s.errors);

    // A mirror that is not a repository at all.
    std::fs::remove_dir_all(src.mirror_path()).unwrap();
    std::fs::create_dir_all(src.mirror_path()).unwrap();
    std::fs::write(src.mirror_path().join("HEAD"), "garbage").unwrap();
    origin.task("tasks/3-c", YAML_WEB, &[("prompt.md", "three")]);
    origin.commit("three");
    assert_eq!(ids(&src.fetch_snapshot().await.unwrap()), vec![1, 2, 3]);
}

#[tokio::test]
async fn unknown_branch_names_the_existing_ones() {
    let origin = TestRepo::new();
    let mirrors = tempfile::tempdir().unwrap();
    origin.task("tasks/1-a", YAML_WEB, &[("prompt.md", "one")]);
    origin.commit("one");
    let url = origin.path().display().to_string();
    let mut src = GitSource::new(SourceConfig {
        branch: "develop".into(),
        ..source(url.clone(), mirrors.path()).config().clone()
    });
    let err = src.fetch_snapshot().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("branch or ref \"develop\" does not exist in {url}; existing branches: main")
    );

    // HEAD means the remote's default branch, and the revision names it.
    let mut src = GitSource::new(SourceConfig {
        branch: "HEAD".into(),
        ..src.config().clone()
    });
    assert_eq!(src.fetch_snapshot().await.unwrap().revision.branch, "main");
}

#[tokio::test]
async fn credentials_in_the_url_never_reach_the_error() {
    let mirrors = tempfile::tempdir().unwrap();
    // Port 9 on loopback: nothing listens, the connection is refused at once.
    let mut src = source(
        "http://user:s3cret-token@127.0.0.1:9/tasks.git".into(),
        mirrors.path(),
    );
    let err = src.fetch_snapshot().await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("s3cret-token"), "{text}");
    assert!(text.contains("http://***@127.0.0.1:9/tasks.git"), "{text}");
    // Nor the mirror's config on disk.
    let config = std::fs::read_to_string(src.mirror_path().join("config")).unwrap();
    assert!(!config.contains("s3cret-token"), "{config}");
}

#[tokio::test]
async fn a_commit_in_a_watched_repository_wakes_the_source() {
    let origin = TestRepo::new();
    origin.task("tasks/1-a", YAML_WEB, &[("prompt.md", "one")]);
    origin.commit("one");
    let trigger = Arc::new(tokio::sync::Notify::new());
    let _watch = watch_refs(origin.path(), trigger.clone()).unwrap();
    origin.task("tasks/2-b", YAML_WEB, &[("prompt.md", "two")]);
    origin.commit("two");
    tokio::time::timeout(Duration::from_secs(10), trigger.notified())
        .await
        .expect("a commit triggers the watch within 10 s");

    // Writing a note (orchestrator's own) is not a trigger.
    let quiet = Arc::new(tokio::sync::Notify::new());
    let _watch2 = watch_refs(origin.path(), quiet.clone()).unwrap();
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    let head = origin.repo.head().unwrap().target().unwrap();
    origin
        .repo
        .note(
            &sig,
            &sig,
            Some("refs/notes/orchestrator"),
            head,
            "Synced",
            true,
        )
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), quiet.notified())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_commit_in_a_linked_worktree_wakes_the_source() {
    let (_origin, _parent, worktree_dir) = origin_with_a_linked_worktree();
    let trigger = Arc::new(tokio::sync::Notify::new());
    let _watch = watch_refs(&worktree_dir, trigger.clone()).unwrap();

    // A commit in the worktree moves refs/heads/linked, which lives in the main repository.
    let linked = git2::Repository::open(&worktree_dir).unwrap();
    let head = linked.head().unwrap().peel_to_commit().unwrap();
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    linked
        .commit(
            Some("HEAD"),
            &sig,
            &sig,
            "empty",
            &head.tree().unwrap(),
            &[&head],
        )
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), trigger.notified())
        .await
        .expect("a commit in the worktree triggers the watch within 10 s");
}

/// git2 builds without transports unless asked: https and ssh must be compiled in, so an
/// unreachable server is a connection error, never "unsupported URL protocol".
#[tokio::test]
async fn https_and_ssh_urls_are_supported_transports() {
    for url in [
        "https://127.0.0.1:1/tasks.git",
        "ssh://git@127.0.0.1:1/tasks.git",
    ] {
        let mirrors = tempfile::tempdir().unwrap();
        let mut src = source(url.to_string(), mirrors.path());
        let err = src.fetch_snapshot().await.unwrap_err().to_string();
        assert!(!err.contains("unsupported URL protocol"), "{url}: {err}");
        assert!(
            err.to_lowercase().contains("connect"),
            "the connection is what failed: {err}"
        );
    }
}
