//! `orchestrator plan` against a live cluster as a user runs it: the real binary, a kubeconfig
//! for the embedded API server (or KUBECONFIG's cluster), a real git repository.

mod support;
mod sync_repo;

use orchestrator::desired::SourceIdentity;
use orchestrator::sync::apply::{SyncOptions, Syncer};
use orchestrator::sync::crd_install::ensure_crd;
use std::path::Path;
use sync_repo::TaskRepo;

/// Runs `orchestrator plan` (async, so the embedded server on this runtime keeps answering).
async fn plan(repo: &Path, kubeconfig: &Path, namespace: &str, output: &str) -> (String, bool) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("plan")
        .arg("--repo")
        .arg(repo)
        .args(["--path", sync_repo::TASKS, "-n", namespace, "-o", output])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("orchestrator runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("no live diff"), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), out.status.success())
}

#[tokio::test]
async fn plan_diffs_a_new_commit_against_the_live_task_runs() {
    let mut cluster = support::cluster().await;
    ensure_crd(cluster.client.clone()).await.unwrap();
    let repo = TaskRepo::new();
    for id in [1, 2, 3] {
        repo.write_task(id, &format!("task {id}"));
    }
    repo.commit("three tasks");
    // `run` and `plan` identify a local repository by its canonical path.
    let canonical = repo.path().canonicalize().unwrap();
    let mut syncer = Syncer::new(
        cluster.client.clone(),
        SourceIdentity::new(&canonical.display().to_string(), sync_repo::TASKS),
        SyncOptions::new(cluster.namespace.clone()),
    );
    syncer.sync(&repo.snapshot()).await.unwrap();

    // The pull request: edit task 2 (and add a file), drop task 3, add task 4.
    repo.write_file(2, "prompt.md", "task 2, sharper");
    repo.write_file(2, "acceptance.md", "done when green");
    repo.remove_task(3);
    repo.write_task(4, "task 4");
    repo.commit("the pull request");
    let kubeconfig = cluster.kubeconfig_path();
    let namespace = cluster.namespace.clone();

    let (json, ok) = plan(repo.path(), &kubeconfig, &namespace, "json").await;
    assert!(ok, "{json}");
    let diff: serde_json::Value = serde_json::from_str(&json).unwrap();
    let actions: Vec<String> = diff["taskRuns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["name"].as_str().unwrap(),
                e["action"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "task-1 unchanged",
            "task-2 update",
            "task-3 prune",
            "task-4 create"
        ],
        "{json}"
    );
    let update = &diff["taskRuns"][1];
    assert_eq!(
        (update["fromVersion"].as_i64(), update["toVersion"].as_i64()),
        (Some(1), Some(2))
    );
    let files: Vec<&str> = update["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["acceptance.md", "prompt.md"]);

    let (markdown, ok) = plan(repo.path(), &kubeconfig, &namespace, "markdown").await;
    assert!(ok);
    assert!(
        markdown.contains("**1 to create, 1 to update, 1 to prune, 1 unchanged**"),
        "{markdown}"
    );
    assert!(
        markdown.contains(
            "| 2 | `task-2` | ✏️ update | 1 → 2 | +`acceptance.md` ~`prompt.md` | content changed |"
        ),
        "{markdown}"
    );
    let (table, _) = plan(repo.path(), &kubeconfig, &namespace, "table").await;
    assert!(table.contains("task-3   prune"), "{table}");
}
