//! examples/ci as a CI system runs it: the `orchestrator` lines of the GitHub Actions workflow
//! and of the GitLab CI job, run by `sh` in a fresh clone on a pull-request branch against the
//! embedded cluster a `run` left behind; the YAML of both files is parsed.

mod git_cli;

use git_cli::{git, write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_orchestrator");

const AGENTS: &str = r#"defaults:
  activeDeadlineSeconds: 30
  backoffLimit: 0
agents:
  claude-code:
    image: local/shell
    command: ["sh", "-c"]
    args: ['echo "task $TASK_ID done"']
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write_task(repo: &Path, id: u32) {
    let folder = repo.join("tasks").join(format!("{id}-task"));
    write(
        &folder.join("task.yaml"),
        "serviceName: web\nagentName: claude-code\n",
    );
    write(&folder.join("prompt.md"), &format!("task {id}"));
}

/// The `orchestrator …` lines of every `run` (GitHub) or `script` (GitLab) of a CI file.
fn orchestrator_lines(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join("examples/ci").join(file)).unwrap();
    let doc: serde_json::Value = serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("examples/ci/{file} is not valid YAML: {e}"));
    let mut scripts = vec![];
    for job in doc
        .get("jobs")
        .unwrap_or(&doc)
        .as_object()
        .unwrap()
        .values()
    {
        for step in job["steps"].as_array().into_iter().flatten() {
            scripts.extend(step["run"].as_str().map(str::to_string));
        }
        for line in job["script"].as_array().into_iter().flatten() {
            scripts.extend(line.as_str().map(str::to_string));
        }
    }
    scripts
        .iter()
        .flat_map(|s| s.lines())
        .map(str::trim)
        .filter(|l| l.starts_with("orchestrator "))
        .map(str::to_string)
        .collect()
}

struct ApiServer(Child);

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_ci_examples_validate_plan_and_gate_in_a_fresh_clone() {
    let github = orchestrator_lines("github-actions.yml");
    let gitlab = orchestrator_lines("gitlab-ci.yml");
    for lines in [&github, &gitlab] {
        for command in [
            "orchestrator validate",
            "orchestrator plan",
            "orchestrator wait",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(command)),
                "{command} in {lines:?}"
            );
        }
    }

    // The task repository (with the agent profiles the review checks names against), its bare
    // remote, and the loop that synced main and pushed its note there.
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    write_task(&work, 1);
    write(&work.join("agents.yaml"), AGENTS);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "one task"]);
    let main = git(&work, &["rev-parse", "HEAD"]);
    git(dir.path(), &["clone", "-q", "--bare", "work", "tasks.git"]);
    let url = format!("file://{}", dir.path().join("tasks.git").display());
    let data = dir.path().join("cluster");
    let out = Command::new(BIN)
        .args(["run", "--embedded", "--embedded-data-dir"])
        .arg(&data)
        .args([
            "--repo",
            &url,
            "--path",
            "tasks",
            "--until-done",
            "--agents",
        ])
        .arg(work.join("agents.yaml"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The cluster the CI job's kubeconfig points at.
    let kubeconfig = dir.path().join("kubeconfig");
    let _server = ApiServer(
        Command::new(BIN)
            .args(["apiserver", "--port", "0", "--data-dir"])
            .arg(&data)
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubeconfig.exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }

    // The pull request, in a fresh clone.
    let ci = dir.path().join("ci");
    git(dir.path(), &["clone", "-q", &url, "ci"]);
    git(&ci, &["checkout", "-q", "-b", "add-task-2"]);
    write_task(&ci, 2);
    git(&ci, &["add", "-A"]);
    git(&ci, &["commit", "-q", "-m", "task 2"]);

    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sh = |line: &str| {
        Command::new("sh")
            .args(["-c", line])
            .current_dir(&ci)
            .env("PATH", &path)
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "warn")
            .env("REPO_URL", &url)
            .env("GITHUB_SHA", &main)
            .env("CI_REPOSITORY_URL", &url)
            .env("CI_COMMIT_SHA", &main)
            .output()
            .unwrap()
    };
    for line in github.iter().chain(&gitlab) {
        let _ = std::fs::remove_file(ci.join("plan.md"));
        let out = sh(line);
        let all = format!(
            "{line}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{all}");
        if line.contains(" plan ") {
            let comment = std::fs::read_to_string(ci.join("plan.md")).unwrap();
            assert!(
                comment.contains("**1 to create, 0 to update, 0 to prune, 1 unchanged"),
                "{line}: {comment}"
            );
        }
        if line.contains(" wait ") {
            assert!(all.contains("Synced"), "{all}");
        }
    }
}
