//! `orchestrator run --until-done` as a user runs it: the real binary on a real git repository
//! with the embedded API server, the controller and the local Job runner; the status table,
//! the exit code and the git note on the synced commit.

mod sync_repo;

use std::process::Command;
use sync_repo::TaskRepo;

const AGENTS: &str = r#"defaults:
  activeDeadlineSeconds: 30
  backoffLimit: 0
agents:
  claude-code:
    image: local/shell
    command: ["sh", "-c"]
    args: ['echo "task $TASK_ID done"']
  failer:
    image: local/shell
    command: ["sh", "-c"]
    args: ['echo "cannot do task $TASK_ID" >&2; exit 3']
"#;

fn run_until_done(repo: &TaskRepo) -> (String, Option<i32>) {
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["run", "--embedded", "--repo"])
        .arg(repo.path())
        .args(["--path", sync_repo::TASKS, "--until-done", "--agents"])
        .arg(repo.path().join("agents.yaml"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("orchestrator runs");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (format!("{stdout}\n--- stderr\n{stderr}"), out.status.code())
}

#[test]
fn until_done_runs_every_task_prints_the_table_and_notes_the_commit() {
    let repo = TaskRepo::new();
    std::fs::write(repo.path().join("agents.yaml"), AGENTS).unwrap();
    repo.write_task(1, "first");
    repo.write_task(2, "second");
    let commit = repo.commit("two tasks");

    let (out, code) = run_until_done(&repo);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("talking to embedded API server"), "{out}");
    assert!(out.contains("TASK  TASKRUN  VERSION  PHASE"), "{out}");
    assert!(out.contains("task-1   1        Succeeded"), "{out}");
    assert!(out.contains("task-2   1        Succeeded"), "{out}");
    assert!(
        out.contains(&format!("revision main@sha1:{commit}: Synced")),
        "{out}"
    );
    let note = repo
        .repo
        .find_note(Some("refs/notes/orchestrator"), commit)
        .expect("the synced commit carries a note");
    let text = note.message().unwrap();
    assert!(text.contains("sync: Synced"), "{text}");
    assert!(text.contains("health: Healthy"), "{text}");
}

#[test]
fn until_done_exits_1_when_a_task_fails_and_2_when_a_folder_is_broken() {
    let repo = TaskRepo::new();
    std::fs::write(repo.path().join("agents.yaml"), AGENTS).unwrap();
    repo.write_task(1, "fine");
    repo.write_task(2, "doomed");
    repo.write_file(2, "task.yaml", "serviceName: web\nagentName: failer\n");
    repo.commit("one task fails");
    let (out, code) = run_until_done(&repo);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("task-2   1        Failed"), "{out}");

    let repo = TaskRepo::new();
    std::fs::write(repo.path().join("agents.yaml"), AGENTS).unwrap();
    repo.write_task(1, "fine");
    repo.write_task(2, "broken");
    repo.write_file(2, "task.yaml", "serviceName: web\n");
    repo.commit("one folder is broken");
    let (out, code) = run_until_done(&repo);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("task-1   1        Succeeded"), "{out}");
    assert!(out.contains("folder error: tasks/2-task"), "{out}");
}
