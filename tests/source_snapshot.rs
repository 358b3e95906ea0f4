//! Task folders read from real git repositories (git2, temp dirs): several commits, a deleted
//! folder, a broken folder beside good ones, a symlink, a 2 MiB file, a force-push; each
//! revision's snapshot and the exact error messages.

mod source_support;

use orchestrator::source::{
    DigestCache, SourceError, SourceSnapshot, read_folder_snapshot, read_snapshot,
};
use pretty_assertions::assert_eq;
use source_support::{TestRepo, YAML_WEB};

fn snapshot(repo: &TestRepo, commit: git2::Oid, cache: &mut DigestCache) -> SourceSnapshot {
    read_snapshot(&repo.repo, commit, "main", "tasks", cache).unwrap()
}

fn ids(s: &SourceSnapshot) -> Vec<i64> {
    s.tasks.iter().map(|t| t.task_id).collect()
}

fn errors(s: &SourceSnapshot) -> Vec<String> {
    s.errors.iter().map(ToString::to_string).collect()
}

#[test]
fn every_revision_has_its_own_snapshot() {
    let repo = TestRepo::new();
    let mut cache = DigestCache::new();
    repo.task(
        "tasks/1-login",
        YAML_WEB,
        &[
            ("prompt.md", "Build the login page"),
            ("acceptance.md", "Tests pass"),
        ],
    )
    .task(
        "tasks/2-search",
        "serviceName: search\nagentName: codex\n",
        &[("prompt.md", "Index docs")],
    )
    .write("tasks/README.md", "not a task")
    .write("tasks/agents.yaml", "claude-code: {}\n")
    .write("src/main.rs", "fn main() {}");
    let first = repo.commit("two tasks");
    let s1 = snapshot(&repo, first, &mut cache);
    assert_eq!(s1.revision.to_string(), format!("main@sha1:{first}"));
    assert_eq!(s1.path, "tasks");
    assert_eq!(ids(&s1), vec![1, 2]);
    assert!(s1.errors.is_empty(), "{:?}", s1.errors);
    let login = &s1.tasks[0];
    assert_eq!(&*login.path, "tasks/1-login");
    assert_eq!(&*login.content.service_name, "web");
    assert_eq!(&*login.content.agent_name, "claude-code");
    let files: Vec<_> = login
        .content
        .markdown_files
        .iter()
        .map(|f| (f.filename.to_string(), f.text().unwrap().into_owned()))
        .collect();
    assert_eq!(
        files,
        // Reading order: prompt.md first.
        vec![
            ("prompt.md".to_string(), "Build the login page".to_string()),
            ("acceptance.md".to_string(), "Tests pass".to_string())
        ]
    );
    assert_eq!(cache.stats(), (0, 2));

    // Second commit: task 1 edited, task 3 added, task 2 untouched (served from the cache).
    repo.write("tasks/1-login/prompt.md", "Build the login page with SSO")
        .task(
            "tasks/3-export",
            "serviceName: reporting\nagentName: aider\n",
            &[("prompt.md", "CSV")],
        );
    let second = repo.commit("edit and add");
    let s2 = snapshot(&repo, second, &mut cache);
    assert_eq!(ids(&s2), vec![1, 2, 3]);
    assert_ne!(
        s2.tasks[0].content.digest, login.content.digest,
        "edited content, new digest"
    );
    assert_eq!(
        s2.tasks[1].content.digest, s1.tasks[1].content.digest,
        "untouched folder, same digest"
    );
    assert_eq!(
        cache.stats(),
        (1, 4),
        "only the changed and new folders were read"
    );

    // Third commit: task 2 deleted.
    repo.remove("tasks/2-search");
    let third = repo.commit("delete task 2");
    let s3 = snapshot(&repo, third, &mut cache);
    assert_eq!(ids(&s3), vec![1, 3]);

    // Old revisions still read as they were.
    let again = snapshot(&repo, first, &mut DigestCache::new());
    assert_eq!(again, s1);
}

#[test]
fn renaming_a_folder_keeps_the_digest_renaming_a_file_changes_it() {
    let repo = TestRepo::new();
    let mut cache = DigestCache::new();
    repo.task("tasks/1-login", YAML_WEB, &[("prompt.md", "x")]);
    let a = snapshot(&repo, repo.commit("a"), &mut cache);
    repo.remove("tasks/1-login")
        .task("tasks/1-sign-in", YAML_WEB, &[("prompt.md", "x")]);
    let b = snapshot(&repo, repo.commit("b"), &mut cache);
    assert_eq!(a.tasks[0].content.digest, b.tasks[0].content.digest);
    assert_eq!(&*b.tasks[0].path, "tasks/1-sign-in");
    repo.remove("tasks/1-sign-in/prompt.md")
        .write("tasks/1-sign-in/brief.md", "x");
    let c = snapshot(&repo, repo.commit("c"), &mut cache);
    assert_ne!(b.tasks[0].content.digest, c.tasks[0].content.digest);
}

#[test]
fn broken_folders_are_reported_beside_good_ones() {
    let repo = TestRepo::new();
    let big = "# huge\n".repeat(2 * 1024 * 1024 / 7 + 1);
    repo.task("tasks/1-good", YAML_WEB, &[("prompt.md", "fine")])
        .task(
            "tasks/2-unknown-key",
            "serviceName: web\nagentName: codex\nowner: bob\n",
            &[("prompt.md", "x")],
        )
        .task("tasks/3-symlink", YAML_WEB, &[("prompt.md", "x")])
        .symlink("tasks/3-symlink/secrets.md", "/etc/passwd")
        .task(
            "tasks/4-big",
            YAML_WEB,
            &[("prompt.md", "x"), ("dump.md", &big)],
        )
        .task(
            "tasks/5-nested",
            YAML_WEB,
            &[("prompt.md", "x"), ("images/readme.md", "y")],
        )
        .task("tasks/6-dup-a", YAML_WEB, &[("prompt.md", "x")])
        .task("tasks/6-dup-b", YAML_WEB, &[("prompt.md", "y")])
        .write("tasks/7-binary/task.yaml", YAML_WEB)
        .write("tasks/7-binary/logo.md", b"\x89PNG\r\n\x1a\n\0\0")
        .write("tasks/8-no-markdown/task.yaml", YAML_WEB)
        .write("tasks/misc/notes.md", "x")
        .symlink("tasks/9-linked", "1-good")
        .task(
            "tasks/10-bad-service",
            "serviceName: Web_App\nagentName: codex\n",
            &[("p.md", "x")],
        )
        .task(
            "tasks/11-good-too",
            "serviceName: api\nagentName: aider\n",
            &[("p.md", "x")],
        );
    let commit = repo.commit("a mess");
    let s = snapshot(&repo, commit, &mut DigestCache::new());
    assert_eq!(ids(&s), vec![1, 11]);
    let size = big.len() + "dump.md".len() + 1 + "prompt.md".len();
    assert_eq!(
        errors(&s),
        vec![
            "tasks/10-bad-service/task.yaml: serviceName \"Web_App\" is not a valid DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters) and it becomes part of Kubernetes names and labels: use e.g. \"web-app\"".to_string(),
            "tasks/2-unknown-key/task.yaml: unknown key \"owner\": only serviceName, agentName, suspend and priority are allowed: remove or rename it".into(),
            "tasks/3-symlink/secrets.md: is a symbolic link; symlinks are never followed: replace it with a regular file".into(),
            format!("tasks/4-big/dump.md: the task's markdown totals 2.0 MiB ({size} bytes), over the 450 KiB limit that keeps its ConfigMap (every file plus the generated TASK.md) under Kubernetes' 1 MiB object limit; this is its largest file (2.0 MiB): shrink it or split the task"),
            "tasks/5-nested/images: nested folders are not allowed in a task folder: move its *.md files up into the task folder, or move it out of the tasks path".into(),
            "tasks/6-dup-a: task id 6 is also used by tasks/6-dup-b: give each task folder its own id".into(),
            "tasks/6-dup-b: task id 6 is also used by tasks/6-dup-a: give each task folder its own id".into(),
            "tasks/7-binary/logo.md: looks binary (NUL byte at offset 8); markdown files must be UTF-8 text: remove the file or save it as text".into(),
            "tasks/8-no-markdown: has no *.md files: add at least one markdown file, e.g. prompt.md".into(),
            "tasks/9-linked: is a symbolic link; symlinks are never followed: replace it with the task folder itself".into(),
            "tasks/misc: folder name must be <taskId>-<slug> with a numeric task id, e.g. 42-login-page: rename it, or move it out of the tasks path".into(),
        ]
    );
    let task_ids: Vec<Option<i64>> = s.errors.iter().map(|e| e.task_id).collect();
    assert_eq!(
        task_ids,
        vec![
            Some(10),
            Some(2),
            Some(3),
            Some(4),
            Some(5),
            Some(6),
            Some(6),
            Some(7),
            Some(8),
            Some(9),
            None
        ]
    );

    // The same working tree read as a plain folder gives the same tasks and errors.
    let plain = read_folder_snapshot(repo.path(), "tasks").unwrap();
    assert_eq!(plain.tasks, s.tasks);
    assert_eq!(errors(&plain), errors(&s));
}

#[test]
fn force_push_replaces_history() {
    let repo = TestRepo::new();
    let mut cache = DigestCache::new();
    repo.task("tasks/1-a", YAML_WEB, &[("prompt.md", "v1")]);
    let base = repo.commit("base");
    repo.task("tasks/2-b", YAML_WEB, &[("prompt.md", "oops")]);
    let mistaken = repo.commit("mistake");
    assert_eq!(ids(&snapshot(&repo, mistaken, &mut cache)), vec![1, 2]);
    repo.reset_hard(base)
        .task("tasks/3-c", YAML_WEB, &[("prompt.md", "right")]);
    let rewritten = repo.commit("rewritten");
    let head = repo.repo.head().unwrap().peel_to_commit().unwrap().id();
    assert_eq!(head, rewritten);
    let s = snapshot(&repo, rewritten, &mut cache);
    assert_eq!(ids(&s), vec![1, 3]);
    assert!(
        repo.repo
            .graph_descendant_of(rewritten, mistaken)
            .is_ok_and(|d| !d)
    );
}

#[test]
fn missing_path_and_file_path_are_errors_not_empty_snapshots() {
    let repo = TestRepo::new();
    repo.task("tasks/1-a", YAML_WEB, &[("prompt.md", "x")])
        .write("notes.txt", "x");
    let commit = repo.commit("one");
    let mut cache = DigestCache::new();
    let err = read_snapshot(&repo.repo, commit, "main", "tsks", &mut cache).unwrap_err();
    assert!(matches!(err, SourceError::PathNotFound { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "path \"tsks\" does not exist at main@sha1:{commit}: check --path (the folder that holds the task folders)"
        )
    );
    let err = read_snapshot(&repo.repo, commit, "main", "notes.txt", &mut cache).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "path \"notes.txt\" at main@sha1:{commit} is a file, not a folder: --path must name the folder that holds the task folders"
        )
    );
    // The root works too: the task folder is found and `notes.txt` is ignored.
    let root = read_snapshot(&repo.repo, commit, "main", "", &mut cache).unwrap();
    assert_eq!(
        errors(&root),
        vec![
            "tasks: folder name must be <taskId>-<slug> with a numeric task id, e.g. 42-login-page: rename it, or move it out of the tasks path"
        ]
    );
}

#[test]
fn many_folders_are_read_in_parallel_with_the_same_result() {
    let repo = TestRepo::new();
    for i in 0..150 {
        repo.task(
            &format!("tasks/{i}-t"),
            YAML_WEB,
            &[("prompt.md", &format!("task {i}")), ("b.md", "same")],
        );
    }
    let commit = repo.commit("many");
    let mut cache = DigestCache::new();
    let s = snapshot(&repo, commit, &mut cache);
    assert_eq!(s.tasks.len(), 150);
    assert_eq!(
        s.tasks[42].content.markdown_files[0].text().unwrap(),
        "task 42"
    );
    let plain = read_folder_snapshot(repo.path(), "tasks").unwrap();
    assert_eq!(plain.tasks, s.tasks);
    let warm = snapshot(&repo, commit, &mut cache);
    assert_eq!(warm, s);
    assert_eq!(cache.stats(), (150, 150));
    // Every folder names service `web`: one allocation for all of them, read on any thread.
    assert!(s.tasks.iter().all(|t| std::sync::Arc::ptr_eq(
        &t.content.service_name,
        &s.tasks[0].content.service_name
    ) && std::sync::Arc::ptr_eq(
        &t.content.agent_name,
        &s.tasks[0].content.agent_name
    )));
}

#[test]
fn the_example_repository_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let s = read_folder_snapshot(dir, "example-repo").unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert!(s.tasks.len() >= 5);
    let agents: std::collections::BTreeSet<_> =
        s.tasks.iter().map(|t| &*t.content.agent_name).collect();
    assert_eq!(
        agents.into_iter().collect::<Vec<_>>(),
        vec!["aider", "claude-code", "codex"]
    );
    assert!(s.tasks.iter().all(|t| t.content.markdown_files.len() >= 2));
}

#[test]
fn shared_snapshots_are_handed_back_for_an_unchanged_revision() {
    use orchestrator::source::read_snapshot_shared;
    let repo = TestRepo::new();
    let mut cache = DigestCache::new();
    repo.task("tasks/1-a", YAML_WEB, &[("prompt.md", "x")]);
    let first = repo.commit("one");
    let a = read_snapshot_shared(&repo.repo, first, "main", "tasks", &mut cache).unwrap();
    let again = read_snapshot_shared(&repo.repo, first, "main", "/tasks/", &mut cache).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &again));
    let other_branch =
        read_snapshot_shared(&repo.repo, first, "release", "tasks", &mut cache).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&a, &other_branch));
    assert_eq!(other_branch.revision.branch, "release");
    repo.task("tasks/2-b", YAML_WEB, &[("prompt.md", "y")]);
    let second = repo.commit("two");
    let b = read_snapshot_shared(&repo.repo, second, "main", "tasks", &mut cache).unwrap();
    assert_eq!(ids(&b), vec![1, 2]);
    // A plain read in between invalidates the memo: it may have been of another commit.
    read_snapshot(&repo.repo, first, "main", "tasks", &mut cache).unwrap();
    let b2 = read_snapshot_shared(&repo.repo, second, "main", "tasks", &mut cache).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&b, &b2));
    assert_eq!(b, b2);
}
