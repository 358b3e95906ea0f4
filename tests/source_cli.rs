//! `orchestrator validate` and `orchestrator plan` as a user runs them: the real binary on a
//! real git repository and on a plain folder, with exit codes and output.

mod source_support;

use source_support::{TestRepo, YAML_WEB};
use std::process::{Command, Output};

/// Runs the binary offline: no `KUBECONFIG`, no in-cluster config and a `HOME` without
/// `~/.kube/config`, so `plan` prints the offline plan also when the suite runs against a real
/// cluster.
fn orchestrator(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(args)
        .current_dir(dir)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", dir)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .expect("run orchestrator")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn validate_lists_every_error_and_fails_then_passes_once_fixed() {
    let repo = TestRepo::new();
    repo.task("tasks/1-good", YAML_WEB, &[("prompt.md", "x")])
        .task("tasks/2-bad", "serviceName: web\n", &[("prompt.md", "x")])
        .task("tasks/3-worse", YAML_WEB, &[("notes.txt", "x")]);
    let commit = repo.commit("broken");

    let out = orchestrator(&["validate", "--repo", ".", "--path", "tasks"], repo.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        format!(
            "3 error(s) in tasks at main@sha1:{commit} (1 valid task folder(s)):\n  \
             tasks/2-bad/task.yaml: agentName is missing: add e.g. \"agentName: claude-code\"\n  \
             tasks/3-worse: has no *.md files: add at least one markdown file, e.g. prompt.md\n  \
             tasks/3-worse/notes.txt: only task.yaml and *.md files may be in a task folder: remove it, or move it out of the tasks path\n"
        )
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 task folder error(s)"));

    // Fixed in the working tree, not committed yet: the plain-folder check passes, the
    // committed revision still fails.
    repo.write("tasks/2-bad/task.yaml", YAML_WEB)
        .remove("tasks/3-worse");
    let out = orchestrator(&["validate", "--path", "tasks"], repo.path());
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("ok: 2 task folder(s) in tasks at worktree@sha1:"),
        "{}",
        stdout(&out)
    );
    let out = orchestrator(
        &[
            "validate",
            "--repo",
            ".",
            "--revision",
            "main",
            "--path",
            "tasks",
        ],
        repo.path(),
    );
    assert_eq!(out.status.code(), Some(1));

    let fixed = repo.commit("fixed");
    let out = orchestrator(
        &[
            "validate",
            "--repo",
            &format!("file://{}", repo.path().display()),
            "--path",
            "tasks",
        ],
        repo.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out),
        format!("ok: 2 task folder(s) in tasks at main@sha1:{fixed} are valid\n")
    );

    // Through a URL: an older revision by its revision string, or by its commit id.
    let url = format!("file://{}", repo.path().display());
    let out = orchestrator(
        &[
            "validate",
            "--repo",
            &url,
            "--revision",
            &format!("main@sha1:{commit}"),
            "--path",
            "tasks",
        ],
        repo.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).starts_with(&format!("3 error(s) in tasks at main@sha1:{commit}")),
        "{}",
        stdout(&out)
    );
    let out = orchestrator(
        &[
            "validate",
            "--repo",
            &url,
            "--revision",
            &fixed.to_string()[..12],
            "--path",
            "tasks",
        ],
        repo.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = orchestrator(
        &[
            "validate",
            "--repo",
            &format!("{url}-missing"),
            "--path",
            "tasks",
        ],
        repo.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("; check the URL, the network and the credentials")
    );

    // An older revision by its full revision string.
    let out = orchestrator(
        &[
            "validate",
            "--repo",
            ".",
            "--revision",
            &format!("main@sha1:{commit}"),
            "--path",
            "tasks",
        ],
        repo.path(),
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn plan_prints_the_task_runs_of_a_revision() {
    let repo = TestRepo::new();
    repo.task(
        "tasks/7-login",
        YAML_WEB,
        &[("prompt.md", "x"), ("acceptance.md", "y")],
    );
    let commit = repo.commit("one");
    let out = orchestrator(&["plan", "--repo", ".", "--path", "tasks"], repo.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("Revision: main@sha1:{commit}\nPath:     tasks\n")),
        "{text}"
    );
    assert!(
        text.contains("7     task-7   web      claude-code  1*       2"),
        "{text}"
    );
    assert!(text.contains("contextVersion 1 is a placeholder"), "{text}");

    let out = orchestrator(
        &[
            "plan", "--repo", ".", "--path", "tasks", "-o", "json", "-n", "agents",
        ],
        repo.path(),
    );
    assert_eq!(out.status.code(), Some(0));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"][0]["metadata"]["name"], "task-7");
    assert_eq!(list["items"][0]["metadata"]["namespace"], "agents");
    // Reading order: prompt.md first.
    assert_eq!(
        list["items"][0]["spec"]["markdownFiles"][0]["filename"],
        "prompt.md"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("placeholder"));
}

#[test]
fn bad_flags_say_what_to_fix() {
    let repo = TestRepo::new();
    repo.task("tasks/1-a", YAML_WEB, &[("prompt.md", "x")]);
    repo.commit("one");
    let out = orchestrator(
        &[
            "validate",
            "--repo",
            ".",
            "--revision",
            "nope",
            "--path",
            "tasks",
        ],
        repo.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot resolve revision \"nope\""), "{err}");
    let out = orchestrator(&["plan", "--repo", ".", "--path", "taks"], repo.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("path \"taks\" does not exist at main@sha1:"),
        "{err}"
    );
}
