//! End to end: commit a task to a repository, run `orchestrator run` on the embedded default
//! (embedded API server + local Job runner), and the note on that commit reaches Healthy, as
//! `orchestrator wait`, `orchestrator status` and `git log --notes=orchestrator` all see.

mod notes_support;

use git2::Repository;
use notes_support::*;
use orchestrator::health::{Health, SyncStatus};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const AGENTS: &str = r#"defaults:
  activeDeadlineSeconds: 60
  backoffLimit: 0
agents:
  quick:
    image: local/shell
    command: ["sh", "-c"]
    args:
      - |
        echo "task $TASK_ID at version $TASK_CONTEXT_VERSION"
        ls "$TASK_DIR"
        sleep 1
        echo done
"#;

/// The `run` process; killed when the test ends, whatever happens.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn orchestrator(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(args)
        .env("TMPDIR", dir)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_committed_task_gets_a_note_that_reaches_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let repo_path = dir.path().join("tasks-repo");
    let repo = Repository::init(&repo_path).unwrap();
    let task = commit(
        &repo,
        &[
            (
                "tasks/1-hello/task.yaml",
                "serviceName: web\nagentName: quick\n",
            ),
            ("tasks/1-hello/prompt.md", "# Say hello\n\nPrint hello.\n"),
        ],
        "task 1: say hello",
    );
    let agents = dir.path().join("agents.yaml");
    std::fs::write(&agents, AGENTS).unwrap();
    let log = std::fs::File::create(dir.path().join("run.log")).unwrap();

    let _run = Running(
        Command::new(env!("CARGO_BIN_EXE_orchestrator"))
            .args(["run", "--embedded", "--repo"])
            .arg(&repo_path)
            .args(["--path", "tasks", "--interval", "1s", "--agents"])
            .arg(&agents)
            .arg("--embedded-data-dir")
            .arg(dir.path().join("apiserver"))
            .arg("--runner-log-dir")
            .arg(dir.path().join("runner-logs"))
            .env("TMPDIR", dir.path())
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    // The CI check: wait for this commit to be Synced and Healthy.
    let repo_arg = repo_path.to_str().unwrap();
    let out = orchestrator(
        dir.path(),
        &[
            "wait",
            "--repo",
            repo_arg,
            &task.to_string(),
            "--timeout",
            "120s",
            "--interval",
            "300ms",
        ],
    );
    let run_log = std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\nrun log:\n{run_log}",
        text(&out)
    );

    let note = note_at(&repo_path, task).expect("the commit has a note");
    assert_eq!(
        (note.sync, note.health),
        (SyncStatus::Synced, Health::Healthy),
        "{note:?}"
    );
    assert_eq!(note.tasks.len(), 1);
    // The first sync created the TaskRun; later re-syncs of the same state do not rewrite that.
    assert_eq!(note.counts.created, 1, "{note:?}");
    assert_eq!(note.tasks[0].name, "task-1");
    assert_eq!(note.tasks[0].context_version, 1);
    assert!(note.tasks[0].digest.starts_with("sha256:"), "{note:?}");
    assert!(note.tasks[0].job_name.is_some(), "{note:?}");

    let out = orchestrator(dir.path(), &["status", "--repo", repo_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Succeeded"),
        "{}",
        text(&out)
    );

    if let Ok(out) = Command::new("git")
        .args(["log", "--notes=orchestrator", "-1"])
        .current_dir(&repo_path)
        .output()
    {
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(log.contains("Notes (orchestrator):"), "{log}");
        assert!(log.contains("health: Healthy"), "{log}");
    } else {
        println!("skipping the `git log` check: git is not installed");
    }
}

#[test]
fn a_remote_repository_gets_the_note_pushed_and_status_reads_it_by_url() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, _first, _clones) = remote_with_clones(dir.path(), 0);
    let task = commit(
        &remote,
        &[
            (
                "tasks/2-remote/task.yaml",
                "serviceName: api\nagentName: quick\n",
            ),
            ("tasks/2-remote/prompt.md", "# Remote\n"),
        ],
        "task 2",
    );
    let url = format!("file://{}", dir.path().join("remote.git").display());
    let agents = dir.path().join("agents.yaml");
    std::fs::write(&agents, AGENTS).unwrap();
    let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
    let _run = Running(
        Command::new(env!("CARGO_BIN_EXE_orchestrator"))
            .args(["run", "--embedded", "--repo", &url])
            .args(["--path", "tasks", "--interval", "1s", "--agents"])
            .arg(&agents)
            .arg("--mirror-dir")
            .arg(dir.path().join("mirrors"))
            .arg("--embedded-data-dir")
            .arg(dir.path().join("apiserver"))
            .arg("--runner-log-dir")
            .arg(dir.path().join("runner-logs"))
            .env("TMPDIR", dir.path())
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    // The CI job has only the URL: no clone, no cluster.
    let out = orchestrator(
        dir.path(),
        &[
            "wait",
            "--repo",
            &url,
            "--timeout",
            "120s",
            "--interval",
            "500ms",
        ],
    );
    let run_log = std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\nrun log:\n{run_log}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&task.to_string()),
        "{}",
        text(&out)
    );

    let note = note_at(&dir.path().join("remote.git"), task).expect("the note was pushed");
    assert_eq!(
        (note.sync, note.health),
        (SyncStatus::Synced, Health::Healthy),
        "{note:?}"
    );
    // Only the notes ref was pushed.
    assert_eq!(remote.refname_to_id("refs/heads/main").unwrap(), task);
    let refs: Vec<String> = remote
        .references()
        .unwrap()
        .map(|r| r.unwrap().name().unwrap().to_string())
        .collect();
    assert_eq!(refs.len(), 2, "{refs:?}");
}
