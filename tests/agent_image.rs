//! The example agent image (examples/agents/) without Docker: the Dockerfile's files exist, the
//! entrypoint is valid bash, and it keeps the contract of docs/agent-image.md when run with a
//! stub agent CLI on PATH: the prompt it passes, the result it writes, its exit codes, and a
//! branch pushed to a real (local) git repository without the token ever showing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agents")
}

#[test]
fn the_dockerfile_copies_files_that_exist_and_runs_the_entrypoint() {
    let dockerfile = std::fs::read_to_string(example_dir().join("Dockerfile")).unwrap();
    let copies: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .collect();
    assert!(!copies.is_empty(), "the Dockerfile copies nothing");
    for copy in copies {
        let words: Vec<&str> = copy.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(
                example_dir().join(source).is_file(),
                "the Dockerfile copies {source}, which is not in examples/agents/"
            );
        }
    }
    assert!(
        dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/agent-entrypoint\"]"),
        "{dockerfile}"
    );
    assert!(
        dockerfile.contains("npm install -g"),
        "a real CLI agent is installed"
    );
}

#[test]
fn the_entrypoint_is_valid_bash() {
    let out = Command::new("bash")
        .arg("-n")
        .arg(example_dir().join("entrypoint.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stub of the agent CLI: records its arguments and stdin, answers with $STUB_ANSWER (JSON)
/// and $STUB_EXIT, and writes $STUB_EDIT into the working directory when set.
const STUB_CLI: &str = r#"#!/usr/bin/env bash
printf '%s\n' "$@" > "$STUB_LOG.args"
cat > "$STUB_LOG.stdin"
pwd > "$STUB_LOG.cwd"
if [ -n "${STUB_EDIT:-}" ]; then printf '%s\n' "$STUB_EDIT" > CHANGED.md; fi
printf '%s\n' "$STUB_ANSWER"
exit "${STUB_EXIT:-0}"
"#;

struct Agent {
    dir: tempfile::TempDir,
}

struct Outcome {
    code: Option<i32>,
    log: String,
    result: String,
    stdin: String,
    cwd: String,
}

impl Agent {
    fn new(files: &[(&str, &str)]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["bin", "task", "home"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let stub = dir.path().join("bin/claude");
        std::fs::write(&stub, STUB_CLI).unwrap();
        let mut perms = std::fs::metadata(&stub).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&stub, perms).unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join("task").join(name), content).unwrap();
        }
        Agent { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(&self, env: &[(&str, &str)]) -> Outcome {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(example_dir().join("entrypoint.sh"));
        command
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.path("home"))
            .env("TASK_DIR", self.path("task"))
            .env("TASK_ID", "42")
            .env("TASK_CONTEXT_VERSION", "3")
            .env("TERMINATION_MESSAGE_PATH", self.path("result"))
            .env("STUB_LOG", self.path("stub"))
            .env(
                "STUB_ANSWER",
                r#"{"type":"result","is_error":false,"result":"Fixed the rounding\nsecond line"}"#,
            );
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        Outcome {
            code: out.status.code(),
            log: format!(
                "{}\n--- stderr\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            result: read(self.path("result")),
            stdin: read(self.path("stub.stdin")),
            cwd: read(self.path("stub.cwd")),
        }
    }
}

const KEY: (&str, &str) = ("ANTHROPIC_API_KEY", "sk-test-key");

#[test]
fn reads_task_md_and_writes_the_first_line_of_the_answer_as_the_result() {
    let agent = Agent::new(&[
        ("TASK.md", "# The whole task\n"),
        ("prompt.md", "# Only part\n"),
    ]);
    let out = agent.run(&[KEY]);
    assert_eq!(out.code, Some(0), "{}", out.log);
    assert_eq!(out.stdin, "# The whole task\n");
    assert_eq!(out.result, "Fixed the rounding\n");
    let args = std::fs::read_to_string(agent.path("stub.args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "-p",
            "Carry out the task given on stdin in the current directory. Finish with a one-line \
             summary of what you did.",
            "--output-format",
            "json",
            "--permission-mode",
            "acceptEdits"
        ]
    );
}

#[test]
fn without_task_md_the_prompt_comes_first_then_the_other_files() {
    let agent = Agent::new(&[
        ("acceptance.md", "Done when green.\n"),
        ("prompt.md", "# Fix it\n"),
    ]);
    let out = agent.run(&[KEY]);
    assert_eq!(out.code, Some(0), "{}", out.log);
    assert_eq!(
        out.stdin,
        "# Fix it\n\n\n# acceptance.md\n\nDone when green.\n"
    );
}

#[test]
fn exit_codes_say_what_went_wrong() {
    let agent = Agent::new(&[("prompt.md", "# Fix it\n")]);
    // No API key: a configuration error (2), named in the result.
    let out = agent.run(&[]);
    assert_eq!(out.code, Some(2), "{}", out.log);
    assert!(
        out.result.contains("ANTHROPIC_API_KEY is not set"),
        "{}",
        out.result
    );
    // The agent reports an error: a failed attempt (1).
    let out = agent.run(&[
        KEY,
        (
            "STUB_ANSWER",
            r#"{"type":"result","is_error":true,"result":"rate limited"}"#,
        ),
    ]);
    assert_eq!(out.code, Some(1), "{}", out.log);
    assert!(out.result.contains("rate limited"), "{}", out.result);
    // The CLI itself fails.
    let out = agent.run(&[KEY, ("STUB_EXIT", "7"), ("STUB_ANSWER", "boom")]);
    assert_eq!(out.code, Some(1), "{}", out.log);
    assert!(out.result.contains("exit 7"), "{}", out.result);
    // No task files: a configuration error.
    let empty = Agent::new(&[]);
    let out = empty.run(&[KEY]);
    assert_eq!(out.code, Some(2), "{}", out.log);
    assert!(out.result.contains("no task files"), "{}", out.result);
}

#[test]
fn the_result_fits_the_termination_message_limit() {
    let agent = Agent::new(&[("prompt.md", "# Fix it\n")]);
    // Large enough that the truncation always closes its pipe early (SIGPIPE for the writer).
    let long = "x".repeat(100_000);
    let answer = format!(r#"{{"is_error":false,"result":"{long}"}}"#);
    let out = agent.run(&[KEY, ("STUB_ANSWER", &answer)]);
    assert_eq!(out.code, Some(0), "{}", out.log);
    assert!(out.result.len() <= 4096, "{} bytes", out.result.len());
    assert!(out.result.starts_with("xxxx"));
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn changes_to_the_code_repository_are_pushed_to_a_task_branch_without_showing_the_token() {
    let agent = Agent::new(&[("prompt.md", "# Add a changelog entry\n")]);
    // The code repository: a bare repository with one commit on main.
    let seed = agent.path("seed");
    std::fs::create_dir(&seed).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    std::fs::write(seed.join("README.md"), "code\n").unwrap();
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "-q", "-m", "seed"]);
    let bare = agent.path("code.git");
    git(
        agent.dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            seed.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    let url = format!("file://{}", bare.display());
    let token = "ghp-secret-token-0123456789";
    let out = agent.run(&[
        KEY,
        ("CODE_REPO_URL", &url),
        ("CODE_REPO_BRANCH", "main"),
        ("GIT_TOKEN", token),
        ("STUB_EDIT", "the agent's change"),
    ]);
    assert_eq!(out.code, Some(0), "{}", out.log);
    assert_eq!(
        out.result,
        "pushed orchestrator/task-42-v3: Fixed the rounding\n"
    );
    // The agent ran inside the clone.
    assert!(out.cwd.trim().ends_with("/home/work"), "{}", out.cwd);
    let pushed = git(&bare, &["show", "orchestrator/task-42-v3:CHANGED.md"]);
    assert_eq!(pushed, "the agent's change\n");
    let message = git(
        &bare,
        &["log", "-1", "--format=%s", "orchestrator/task-42-v3"],
    );
    assert_eq!(
        message.trim(),
        "Task 42 (context version 3): Fixed the rounding"
    );
    for shown in [&out.log, &out.result] {
        assert!(!shown.contains(token), "the token leaked: {shown}");
    }
    let config = std::fs::read_to_string(agent.path("home/.gitconfig")).unwrap();
    assert!(!config.contains(token), "the token is in .gitconfig");

    // Nothing changed: no push, and the result says so.
    let out = agent.run(&[KEY, ("CODE_REPO_URL", &url)]);
    assert_eq!(out.code, Some(0), "{}", out.log);
    assert_eq!(out.result, "no changes: Fixed the rounding\n");
}
