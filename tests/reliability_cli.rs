//! The binary under conditions a user's shell creates: a reader that closes the pipe early
//! (`| head`), and a `run` that ends (cleanly or by SIGTERM) and must leave no temporary
//! directories behind. Real processes on real git repositories.

mod sync_repo;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use sync_repo::TaskRepo;

const AGENTS: &str = r#"agents:
  claude-code:
    image: local/shell
    command: ["sh", "-c"]
    args: ['echo "task $TASK_ID done"']
"#;

fn orchestrator(dir: &Path, tmp: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    command
        .current_dir(dir)
        .env("TMPDIR", tmp)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0");
    command
}

fn repo_with_two_tasks() -> TaskRepo {
    let repo = TaskRepo::new();
    std::fs::write(repo.path().join("agents.yaml"), AGENTS).unwrap();
    repo.write_task(1, "first");
    repo.write_task(2, "second");
    repo.commit("two tasks");
    repo
}

/// Runs `args` with stdout a pipe whose reading end is already closed (`| head -0`): the first
/// write fails with EPIPE. Returns the exit code and stderr.
fn with_closed_stdout(dir: &Path, tmp: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = orchestrator(dir, tmp)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_output_pipe_ends_the_output_quietly_with_the_commands_own_exit_code() {
    let repo = repo_with_two_tasks();
    let tmp = tempfile::tempdir().unwrap();
    // (arguments, the exit code the command has with an open stdout)
    let cases: &[(&[&str], i32)] = &[
        // No note yet: 3, as with an open pipe.
        (&["status", "-o", "json"], 3),
        (&["status"], 3),
        (&["validate", "--path", "tasks"], 0),
        (&["plan", "--offline", "--path", "tasks", "-o", "yaml"], 0),
        (&["plan", "--offline", "--path", "tasks"], 0),
        (&["crd"], 0),
    ];
    for (args, want) in cases {
        let open = orchestrator(repo.path(), tmp.path())
            .args(*args)
            .output()
            .unwrap();
        assert_eq!(
            open.status.code(),
            Some(*want),
            "{args:?} with an open pipe"
        );
        assert!(!open.stdout.is_empty(), "{args:?} prints something");

        let (code, stderr) = with_closed_stdout(repo.path(), tmp.path(), args);
        assert_eq!(code, Some(*want), "{args:?} with a closed pipe: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}

fn leftovers(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("orchestrator-"))
        .collect()
}

#[test]
fn run_removes_its_temporary_directories_on_a_clean_exit() {
    let repo = repo_with_two_tasks();
    let tmp = tempfile::tempdir().unwrap();
    let out = orchestrator(repo.path(), tmp.path())
        .args(["run", "--embedded", "--repo", ".", "--path", "tasks"])
        .args(["--until-done", "--agents", "agents.yaml"])
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("task-2   1        Succeeded"), "{text}");
    assert!(
        text.contains(&format!("logs in {}", tmp.path().display())),
        "the Job logs went to TMPDIR: {text}"
    );
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new(), "{text}");
}

#[test]
fn run_removes_its_temporary_directories_on_sigterm() {
    let repo = repo_with_two_tasks();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = orchestrator(repo.path(), tmp.path())
        .args(["run", "--embedded", "--repo", ".", "--path", "tasks"])
        .args(["--agents", "agents.yaml", "--interval", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Both directories exist while it runs (the mirror once the first fetch happened).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = leftovers(tmp.path());
    while seen.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        seen = leftovers(tmp.path());
    }
    seen.sort();
    let pid = child.id();
    assert_eq!(
        seen,
        [
            format!("orchestrator-logs-{pid}"),
            format!("orchestrator-mirrors-{pid}")
        ]
    );
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}
