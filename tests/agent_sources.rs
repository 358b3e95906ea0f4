//! Agent profiles follow their source while `run` runs: a file edited under the loop, a
//! ConfigMap edited in the cluster, a file committed with the tasks. An invalid new version is
//! reported (log, /readyz) and the last good profiles stay in use.

mod support;

mod git_cli;

use git_cli::{git, write};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_orchestrator");

fn write_task(repo: &Path, id: u32, agent: &str) {
    let folder = repo.join("tasks").join(format!("{id}-task"));
    write(
        &folder.join("task.yaml"),
        &format!("serviceName: web\nagentName: {agent}\n"),
    );
    write(&folder.join("prompt.md"), &format!("task {id}"));
}

fn commit_all(repo: &Path) -> String {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "change"]);
    git(repo, &["rev-parse", "HEAD"])
}

fn new_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    write_task(dir.path(), 1, "claude-code");
    commit_all(dir.path());
    dir
}

fn profiles(agents: &[(&str, &str)]) -> String {
    let mut text =
        "defaults:\n  activeDeadlineSeconds: 30\n  backoffLimit: 0\nagents:\n".to_string();
    for (name, word) in agents {
        text.push_str(&format!(
            "  {name}:\n    image: local/shell\n    command: [\"sh\", \"-c\"]\n    args: ['echo \"{word} $TASK_ID\"']\n"
        ));
    }
    text
}

const INVALID: &str = "agents:\n  claude-code:\n    image: ''\n";

/// Polls `check` every 200 ms until it holds or `within` passed.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Whether `/readyz` of the loop's API reports the agents check as `ok`.
async fn agents_ready(addr: &str, ok: bool) -> bool {
    readyz_answer(addr)
        .await
        .1
        .contains(&format!("\"agents\":{ok}"))
}

/// `GET /readyz`: the status code and the whole answer.
async fn readyz_answer(addr: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, response)
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

async fn status_exit(repo: &Path, commit: &str) -> Option<i32> {
    tokio::process::Command::new(BIN)
        .args(["status", "--repo"])
        .arg(repo)
        .arg(commit)
        .output()
        .await
        .unwrap()
        .status
        .code()
}

fn stop(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: a plain signal to a child process this test started.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profiles_file_edited_while_the_loop_runs_takes_effect_and_an_invalid_edit_keeps_the_last_good()
 {
    let repo = new_repo();
    let work = repo.path();
    let files = tempfile::tempdir().unwrap();
    let agents = files.path().join("agents.yaml");
    write(&agents, &profiles(&[("claude-code", "done")]));
    let addr = free_addr();
    let child = tokio::process::Command::new(BIN)
        .args([
            "run",
            "--embedded",
            "--interval",
            "1s",
            "--path",
            "tasks",
            "--api",
            "--api-addr",
            &addr,
            "--repo",
        ])
        .arg(work)
        .arg("--agents")
        .arg(&agents)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let first = git(work, &["rev-parse", "HEAD"]);
    assert!(
        eventually(Duration::from_secs(60), async || status_exit(work, &first)
            .await
            == Some(0))
        .await,
        "task 1 ran with the first profiles"
    );
    let (code, answer) = readyz_answer(&addr).await;
    assert!(answer.contains("\"agents\":true"), "{answer}");
    // The branch is checked out here, so the API takes no writes, but the repository is
    // readable and the loop syncs it: ready.
    assert!(answer.contains("\"source\":true"), "{answer}");
    assert_eq!(code, 200, "{answer}");

    // An invalid version: reported, and the last good stay in use.
    write(&agents, INVALID);
    assert!(
        eventually(Duration::from_secs(20), async || agents_ready(&addr, false)
            .await)
        .await,
        "/readyz reports the invalid profiles"
    );
    let (code, _) = readyz_answer(&addr).await;
    assert_eq!(code, 503);
    write_task(work, 2, "claude-code");
    let second = commit_all(work);
    assert!(
        eventually(Duration::from_secs(60), async || status_exit(work, &second)
            .await
            == Some(0))
        .await,
        "task 2 ran with the last good profiles"
    );
    let note = git(work, &["notes", "--ref=orchestrator", "show", &second]);
    assert!(
        note.contains("agent-profiles") && note.contains("has no image"),
        "the note of the commit synced meanwhile names the problem: {note}"
    );

    // A valid version with a new agent: a task for it runs without a restart.
    write(
        &agents,
        &profiles(&[("claude-code", "done"), ("codex", "coded")]),
    );
    assert!(
        eventually(Duration::from_secs(20), async || agents_ready(&addr, true)
            .await)
        .await,
        "/readyz is ready again"
    );
    write_task(work, 3, "codex");
    let third = commit_all(work);
    assert!(
        eventually(Duration::from_secs(60), async || status_exit(work, &third)
            .await
            == Some(0))
        .await,
        "task 3 ran with the reloaded profiles"
    );
    stop(&child);
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("the new agent profiles are invalid").count(),
        1,
        "logged once: {stderr}"
    );
    assert!(
        stderr.contains("agent \\\"claude-code\\\" has no image")
            || stderr.contains("has no image"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configmap_edit_changes_the_profiles_without_a_restart() {
    let mut cluster = support::cluster().await;
    let kubeconfig = cluster.kubeconfig_path();
    let namespace = cluster.namespace.clone();
    let config_maps = cluster.api::<ConfigMap>();
    let name = "orchestrator-agents";
    let configmap = |text: String| -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"agents.yaml": text},
        }))
        .unwrap()
    };
    let repo = new_repo();
    let work = repo.path();

    // Missing: `run` fails at start and says how to create it.
    let out = tokio::process::Command::new(BIN)
        .args([
            "run",
            "--path",
            "tasks",
            "-n",
            &namespace,
            "--agents-configmap",
            name,
            "--repo",
        ])
        .arg(work)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("kubectl create configmap orchestrator-agents"),
        "{stderr}"
    );

    config_maps
        .create(
            &PostParams::default(),
            &configmap(profiles(&[("claude-code", "done")])),
        )
        .await
        .unwrap();
    let child = tokio::process::Command::new(BIN)
        .args([
            "run",
            "--interval",
            "1s",
            "--path",
            "tasks",
            "-n",
            &namespace,
            "--agents-configmap",
            name,
            "--repo",
        ])
        .arg(work)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let jobs = cluster.api::<Job>();
    let job_exists = |name: &'static str| {
        let jobs = jobs.clone();
        async move || jobs.get_opt(name).await.ok().flatten().is_some()
    };
    assert!(eventually(Duration::from_secs(60), job_exists("web-1-v1")).await);

    // A task for an agent the profiles do not know yet, then the ConfigMap edit that adds it.
    write_task(work, 2, "codex");
    commit_all(work);
    config_maps
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"agents.yaml": profiles(&[("claude-code", "done"), ("codex", "coded")])}})),
        )
        .await
        .unwrap();
    // An invalid edit afterwards keeps codex: a new codex task still gets its Job.
    tokio::time::sleep(Duration::from_secs(2)).await;
    config_maps
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"agents.yaml": INVALID}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    write_task(work, 3, "codex");
    commit_all(work);
    assert!(
        eventually(Duration::from_secs(60), job_exists("web-3-v1")).await,
        "task 3's Job: the last good profiles stayed after the invalid edit"
    );
    // `kubectl describe configmap` shows why the edit did not take.
    let events: kube::Api<k8s_openapi::api::events::v1::Event> = cluster.api();
    let warned = eventually(Duration::from_secs(10), async || {
        events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("InvalidAgentProfiles")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("has no image"))
            })
    })
    .await;
    assert!(warned, "a Warning event on the ConfigMap");
    stop(&child);
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the new agent profiles are invalid"),
        "{stderr}"
    );
}

#[test]
fn profiles_committed_with_the_tasks_are_read_from_the_synced_revision() {
    let repo = new_repo();
    let work = repo.path();
    write(
        &work.join("tasks/agents.yaml"),
        &profiles(&[("claude-code", "done")]),
    );
    commit_all(work);
    let out = Command::new(BIN)
        .args([
            "run",
            "--embedded",
            "--path",
            "tasks",
            "--until-done",
            "--agents-from-repo",
            "tasks/agents.yaml",
            "--repo",
        ])
        .arg(format!("file://{}", work.display()))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("task-1   1        Succeeded"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_profiles_commit_keeps_the_last_good_and_the_note_says_why() {
    let repo = new_repo();
    let work = repo.path();
    write(
        &work.join("tasks/agents.yaml"),
        &profiles(&[("claude-code", "done")]),
    );
    let first = commit_all(work);
    let child = tokio::process::Command::new(BIN)
        .args([
            "run",
            "--embedded",
            "--interval",
            "1s",
            "--path",
            "tasks",
            "--agents-from-repo",
            "tasks/agents.yaml",
            "--repo",
        ])
        .arg(work)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(60), async || status_exit(work, &first)
            .await
            == Some(0))
        .await,
        "task 1 ran with the committed profiles"
    );
    // One commit breaks the profiles and adds a task: the task runs with the last good ones.
    write(&work.join("tasks/agents.yaml"), INVALID);
    write_task(work, 2, "claude-code");
    let second = commit_all(work);
    assert!(
        eventually(Duration::from_secs(60), async || status_exit(work, &second)
            .await
            == Some(0))
        .await,
        "task 2 ran with the last good profiles"
    );
    // The note of the next sync names the problem.
    write_task(work, 3, "claude-code");
    let third = commit_all(work);
    assert!(
        eventually(Duration::from_secs(60), async || status_exit(work, &third)
            .await
            == Some(0))
        .await
    );
    let note = git(work, &["notes", "--ref=orchestrator", "show", &third]);
    assert!(
        note.contains("agent-profiles") && note.contains("has no image"),
        "{note}"
    );
    stop(&child);
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("the new agent profiles are invalid").count(),
        1,
        "{stderr}"
    );
}
