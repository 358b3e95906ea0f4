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
    // After the table, the failed task's log tail, or (on the embedded server, which does not
    // serve pods/log yet) why there is none.
    assert!(
        out.contains("\n--- task-2 Failed: the last 20 lines of its log ---\ncannot do task 2")
            || out.contains("\n--- task-2 Failed: no log to show ("),
        "{out}"
    );
    assert!(!out.contains("--- task-1 Failed"), "{out}");

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

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_example_agents_read_task_md_and_write_a_one_line_result() {
    let repo = TaskRepo::new();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("example-repo");
    copy_dir(&example, &repo.path().join("example-repo"));
    repo.commit("the example repository");
    let scratch = tempfile::tempdir().unwrap();
    let logs = scratch.path().join("logs");
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["run", "--embedded", "--repo"])
        .arg(repo.path())
        .args(["--path", "example-repo", "--until-done", "--runner-log-dir"])
        .arg(&logs)
        .arg("--agents")
        .arg(repo.path().join("example-repo/agents.yaml"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("orchestrator runs");
    let text = format!(
        "{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    for id in 101..=106 {
        assert!(text.contains(&format!("task-{id}")), "{text}");
    }
    // claude-code prints the headings of TASK.md: prompt.md first, each file under its name.
    fn read_all(dir: &std::path::Path, into: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                read_all(&path, into);
            } else {
                into.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut logged = String::new();
    read_all(&logs, &mut logged);
    assert!(
        logged.contains(
            "# prompt.md\n# Fix rounding of multi-currency invoice totals\n# acceptance.md\n# Acceptance\n# context.md\n# Context\n"
        ),
        "{logged}"
    );
    // Each agent's one-line result is its termination message: the local runner points
    // TERMINATION_MESSAGE_PATH at a file of the Pod's own and copies it into the Pod's
    // terminated state (embedded/tests/runner_process.rs checks that); the table shows it.
    assert!(
        ["read task ", "summarised task ", "has "]
            .iter()
            .any(|w| text.contains(w)),
        "no agent's result in the table:\n{text}"
    );
}
