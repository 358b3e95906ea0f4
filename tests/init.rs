//! `orchestrator init` as a new user runs it: the real binary in a temp directory, then the
//! commands it prints and the quick start of docs/quick-start.md, verbatim, through bash with
//! `orchestrator` on PATH; the embedded cluster and the local Job runner run the example task.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The quick start of docs/quick-start.md, line by line; tests/docs_commands.rs checks that the
/// page shows exactly these lines and that this file holds them.
const QUICK_START: &[&str] = &[
    "orchestrator init my-tasks",
    "orchestrator run --embedded --repo my-tasks --until-done",
    "orchestrator status --repo my-tasks",
    "echo 'Then say goodbye.' >> my-tasks/1-hello/prompt.md",
    "git -C my-tasks commit -am 'Ask for a goodbye too'",
    "orchestrator run --embedded --repo my-tasks --until-done",
];

/// A temp directory with a `bin/orchestrator` link to the binary under test.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_orchestrator"),
            dir.path().join("bin/orchestrator"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        Sandbox { dir }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Runs one shell line in `work/`, as a user types it; returns the output and exit code.
    fn sh(&self, line: &str) -> (String, Option<i32>) {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", line])
            .current_dir(self.work())
            .env("PATH", path)
            .env("RUST_LOG", "warn")
            .env("GIT_AUTHOR_NAME", "Test User")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test User")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .output()
            .expect("bash runs");
        let text = format!(
            "$ {line}\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (text, out.status.code())
    }
}

/// The commands init prints under "Next:".
fn printed_commands(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.starts_with("Next:"))
        .skip(1)
        .take_while(|l| !l.starts_with("--- stderr"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn init_then_the_printed_commands_run_the_example_task() {
    let sandbox = Sandbox::new();
    let (out, code) = sandbox.sh("orchestrator init my-tasks");
    assert_eq!(code, Some(0), "{out}");
    let next = printed_commands(&out);
    assert_eq!(
        next,
        [
            "orchestrator run --embedded --repo my-tasks --until-done",
            "orchestrator status --repo my-tasks"
        ],
        "{out}"
    );
    let repo = git2::Repository::open(sandbox.work().join("my-tasks")).unwrap();
    let head = repo.head().unwrap();
    assert_eq!(head.shorthand().ok(), Some("main"));
    let tree = head.peel_to_tree().unwrap();
    for file in [
        "agents.yaml",
        "README.md",
        "1-hello/task.yaml",
        "1-hello/prompt.md",
    ] {
        assert!(
            tree.get_path(Path::new(file)).is_ok(),
            "{file} is not in the first commit"
        );
    }

    let (out, code) = sandbox.sh(&next[0]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("task-1"), "{out}");
    assert!(out.contains("Succeeded"), "{out}");
    assert!(out.contains(": Synced"), "{out}");

    let (out, code) = sandbox.sh(&next[1]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Synced"), "{out}");
    assert!(out.contains("Healthy"), "{out}");
}

#[test]
fn the_quick_start_runs_as_written() {
    let sandbox = Sandbox::new();
    let mut outputs = Vec::new();
    for line in QUICK_START {
        let (out, code) = sandbox.sh(line);
        assert_eq!(code, Some(0), "{}\n{out}", outputs.join("\n"));
        outputs.push(out);
    }
    let last = outputs.last().unwrap();
    assert!(last.contains("task-1"), "{last}");
    assert!(last.contains("Succeeded"), "{last}");
}

#[test]
fn init_overwrites_nothing_and_names_the_file() {
    let sandbox = Sandbox::new();
    let dir = sandbox.work().join("mine");
    std::fs::create_dir_all(dir.join("1-hello")).unwrap();
    std::fs::write(dir.join("1-hello/prompt.md"), "my own words\n").unwrap();
    let (out, code) = sandbox.sh("orchestrator init mine");
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("mine/1-hello/prompt.md already exists"),
        "the error names the file: {out}"
    );
    assert!(out.contains("never overwrites"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.join("1-hello/prompt.md")).unwrap(),
        "my own words\n"
    );
    assert!(!dir.join("agents.yaml").exists(), "init wrote nothing");
    assert!(!dir.join(".git").exists(), "init created no repository");

    // A file where the directory should be.
    std::fs::write(sandbox.work().join("plain-file"), "x").unwrap();
    let (out, code) = sandbox.sh("orchestrator init plain-file");
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("plain-file is a file, not a directory"),
        "{out}"
    );

    // A second init over a finished one is refused as well.
    let (out, code) = sandbox.sh("orchestrator init fresh && orchestrator init fresh");
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("fresh/agents.yaml already exists"), "{out}");
}

#[test]
fn init_inside_an_existing_repository_leaves_the_commit_to_the_user() {
    let sandbox = Sandbox::new();
    let (out, code) = sandbox.sh("git init -q -b main app && orchestrator init app/tasks");
    assert_eq!(code, Some(0), "{out}");
    let next = printed_commands(&out);
    assert_eq!(
        next,
        [
            "git -C app/tasks add . && git -C app/tasks commit -m \"Add task folders\"",
            "orchestrator run --embedded --repo app/tasks/.. --path tasks --until-done",
        ],
        "{out}"
    );
    for line in &next {
        let (out, code) = sandbox.sh(line);
        assert_eq!(code, Some(0), "{out}");
        if line.starts_with("orchestrator run") {
            assert!(out.contains("Succeeded"), "{out}");
        }
    }
}
