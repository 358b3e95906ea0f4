//! A task's life as a team operates it, through the real binary, the HTTP API and kube-rs on the
//! embedded API server (or the cluster `KUBECONFIG` names): retry and cancel annotate the
//! TaskRun and never touch contextVersion; the sync never removes those annotations; `logs`
//! finds the latest attempt's Pod and says plainly when there is none.
mod api_common;
mod support;
mod sync_repo;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use orchestrator::controller::operations::{ANNOTATION_CANCEL, ANNOTATION_RETRY, parse_cancel};
use orchestrator::crd::{TaskPhase, TaskRun, TaskRunSpec};
use orchestrator::desired::SourceIdentity;
use orchestrator::sync::apply::{SyncOptions, Syncer};
use serde_json::json;
use std::path::Path;
use std::process::Output;
use support::TestCluster;

/// The binary, run without blocking the test's runtime (which serves the embedded API server).
async fn orchestrator(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        .output()
        .await
        .expect("the binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `orchestrator <command> <task> --kubeconfig K -n NS [extra…]`.
async fn on_cluster(
    kubeconfig: &Path,
    ns: &str,
    command: &str,
    task: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        command,
        task,
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "-n",
        ns,
    ];
    args.extend_from_slice(extra);
    orchestrator(&args).await
}

async fn task_run(c: &TestCluster, id: i64, phase: Option<TaskPhase>) -> TaskRun {
    let mut tr = TaskRun::new(
        &format!("task-{id}"),
        TaskRunSpec {
            task_id: id,
            service_name: "web".into(),
            agent_name: "claude-code".into(),
            context_version: 3,
            content_digest: "sha256:ab".into(),
            source_path: format!("tasks/{id}-x"),
            markdown_files: vec![],
            suspend: false,
            priority: 0,
        },
    );
    tr.metadata.namespace = Some(c.namespace.clone());
    let api: Api<TaskRun> = c.api();
    api.create(&PostParams::default(), &tr).await.unwrap();
    if let Some(phase) = phase {
        api.patch_status(
            &format!("task-{id}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": phase, "jobName": format!("web-{id}-v3")}})),
        )
        .await
        .unwrap();
    }
    api.get(&format!("task-{id}")).await.unwrap()
}

fn annotation(tr: &TaskRun, key: &str) -> Option<String> {
    tr.annotations().get(key).cloned()
}

#[tokio::test]
async fn retry_and_cancel_annotate_the_task_run_and_refuse_what_makes_no_sense() {
    let mut c = support::cluster().await;
    c.install_task_run_crd().await;
    let kubeconfig = c.kubeconfig_path();
    let ns = c.namespace.clone();
    let api: Api<TaskRun> = c.api();
    task_run(&c, 1, Some(TaskPhase::Failed)).await;
    task_run(&c, 2, Some(TaskPhase::Succeeded)).await;
    task_run(&c, 3, Some(TaskPhase::Running)).await;

    // A Failed task: retried by id; contextVersion and spec stay as they were.
    let out = on_cluster(&kubeconfig, &ns, "retry", "1", &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("task-1: retry requested (orchestrator.io/retry="),
        "{}",
        text(&out)
    );
    let tr = api.get("task-1").await.unwrap();
    let token = annotation(&tr, ANNOTATION_RETRY).expect("the retry annotation");
    assert_eq!(tr.spec.context_version, 3);
    // A second retry writes a new token: the controller tells them apart.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(
        on_cluster(&kubeconfig, &ns, "retry", "task-1", &[])
            .await
            .status
            .success()
    );
    let again = annotation(&api.get("task-1").await.unwrap(), ANNOTATION_RETRY).unwrap();
    assert_ne!(again, token);

    // A Succeeded task only with --force; a Running one not at all.
    let out = on_cluster(&kubeconfig, &ns, "retry", "2", &[]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("task-2 Succeeded; retry it anyway with --force"),
        "{}",
        text(&out)
    );
    assert_eq!(
        annotation(&api.get("task-2").await.unwrap(), ANNOTATION_RETRY),
        None
    );
    assert!(
        on_cluster(&kubeconfig, &ns, "retry", "2", &["--force"])
            .await
            .status
            .success()
    );
    assert!(annotation(&api.get("task-2").await.unwrap(), ANNOTATION_RETRY).is_some());
    let out = on_cluster(&kubeconfig, &ns, "retry", "3", &["--force"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("task-3 is Running; only a finished task can be retried"),
        "{}",
        text(&out)
    );

    // Cancel: a running task records who and when; a finished one is refused.
    let out = on_cluster(
        &kubeconfig,
        &ns,
        "cancel",
        "3",
        &["--by", "ana@example.com"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let value = annotation(&api.get("task-3").await.unwrap(), ANNOTATION_CANCEL).unwrap();
    let cancel = parse_cancel(&value).expect("who@time");
    assert_eq!(cancel.by, "ana@example.com");
    let out = on_cluster(&kubeconfig, &ns, "cancel", "1", &[]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("task-1 has already finished (Failed); there is nothing to cancel"),
        "{}",
        text(&out)
    );

    // A task that does not exist is named with the namespace.
    let out = on_cluster(&kubeconfig, &ns, "retry", "99", &[]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("no TaskRun task-99 in namespace {ns}")),
        "{}",
        text(&out)
    );
    // No cluster configured: says how to name one.
    let out = orchestrator(&["cancel", "3"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no cluster is configured: pass --kubeconfig"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn the_sync_never_removes_retry_or_cancel_annotations() {
    let c = support::cluster().await;
    c.install_task_run_crd().await;
    let repo = sync_repo::TaskRepo::new();
    repo.write_task(5, "first");
    repo.commit("one task");
    let mut syncer = Syncer::new(
        c.client.clone(),
        SourceIdentity::new("https://example.test/tasks.git", sync_repo::TASKS),
        SyncOptions::new(c.namespace.clone()),
    );
    syncer.sync(&repo.snapshot()).await.unwrap();
    let api: Api<TaskRun> = c.api();
    api.patch_status(
        "task-5",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Failed"}})),
    )
    .await
    .unwrap();
    let retried = orchestrator::operate::request_retry(
        &api,
        &c.namespace,
        "task-5",
        false,
        orchestrator::operate::FIELD_MANAGER_CLI,
        k8s_openapi::jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    assert_eq!(retried.context_version, 1);

    // A re-sync of the same commit, then a commit that changes the task (and suspends it).
    syncer.sync(&repo.snapshot()).await.unwrap();
    let tr = api.get("task-5").await.unwrap();
    assert_eq!(
        annotation(&tr, ANNOTATION_RETRY).as_deref(),
        Some(retried.value.as_str())
    );
    assert_eq!(tr.spec.context_version, 1, "a retry is not content");
    repo.write_task(5, "second");
    repo.commit("edit");
    syncer.sync(&repo.snapshot()).await.unwrap();
    let tr = api.get("task-5").await.unwrap();
    assert_eq!(tr.spec.context_version, 2);
    assert_eq!(
        annotation(&tr, ANNOTATION_RETRY).as_deref(),
        Some(retried.value.as_str())
    );
}

#[tokio::test]
async fn suspend_and_priority_come_from_a_commit_and_keep_the_version() {
    let c = support::cluster().await;
    c.install_task_run_crd().await;
    let repo = sync_repo::TaskRepo::new();
    repo.write_task(6, "do it");
    repo.commit("one task");
    let mut syncer = Syncer::new(
        c.client.clone(),
        SourceIdentity::new("https://example.test/tasks.git", sync_repo::TASKS),
        SyncOptions::new(c.namespace.clone()),
    );
    syncer.sync(&repo.snapshot()).await.unwrap();
    let api: Api<TaskRun> = c.api();
    let before = api.get("task-6").await.unwrap();
    assert_eq!((before.spec.suspend, before.spec.priority), (false, 0));

    repo.write_file(
        6,
        "task.yaml",
        "serviceName: web\nagentName: claude-code\nsuspend: true\npriority: 10\n",
    );
    repo.commit("suspend task 6, first in line");
    syncer.sync(&repo.snapshot()).await.unwrap();
    let after = api.get("task-6").await.unwrap();
    assert_eq!((after.spec.suspend, after.spec.priority), (true, 10));
    assert_eq!(
        after.spec.context_version, 1,
        "suspend is not a new version"
    );
    assert_eq!(after.spec.content_digest, before.spec.content_digest);

    // Removing it resumes: the field goes away again.
    repo.write_file(6, "task.yaml", "serviceName: web\nagentName: claude-code\n");
    repo.commit("resume");
    syncer.sync(&repo.snapshot()).await.unwrap();
    let resumed = api.get("task-6").await.unwrap();
    assert_eq!((resumed.spec.suspend, resumed.spec.priority), (false, 0));
    assert_eq!(resumed.spec.context_version, 1);
}

#[tokio::test]
async fn the_api_retries_and_cancels_with_the_write_token() {
    use api_common::{Http, Layout, TOKEN};
    let c = support::cluster().await;
    c.install_task_run_crd().await;
    task_run(&c, 1, Some(TaskPhase::Failed)).await;
    task_run(&c, 3, Some(TaskPhase::Running)).await;
    let (client, ns) = (c.client.clone(), c.namespace.clone());
    let api = api_common::start(Layout::Local, move |state| {
        state.client = Some(client);
        state.namespace = ns;
    })
    .await;
    let http = Http::new();
    let tasks: Api<TaskRun> = c.api();

    let anonymous = http
        .post_as(&api.url("/api/v1/tasks/1/retry"), None, String::new())
        .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    assert_eq!(
        annotation(&tasks.get("task-1").await.unwrap(), ANNOTATION_RETRY),
        None
    );

    let reply = http
        .post_as(
            &api.url("/api/v1/tasks/1/retry"),
            Some(TOKEN),
            String::new(),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let data = &reply.json()["data"];
    assert_eq!(data["annotation"], "orchestrator.io/retry");
    assert_eq!(data["contextVersion"], 3);
    let tr = tasks.get("task-1").await.unwrap();
    assert_eq!(
        annotation(&tr, ANNOTATION_RETRY).as_deref(),
        data["value"].as_str()
    );
    assert_eq!(tr.spec.context_version, 3);

    let running = http
        .post_as(
            &api.url("/api/v1/tasks/3/retry?force=true"),
            Some(TOKEN),
            String::new(),
        )
        .await;
    assert_eq!(running.status, 409, "{}", running.text());
    let missing = http
        .post_as(
            &api.url("/api/v1/tasks/77/cancel"),
            Some(TOKEN),
            String::new(),
        )
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text());

    let cancel = http
        .post_as(
            &api.url("/api/v1/tasks/3/cancel?by=release-bot"),
            Some(TOKEN),
            String::new(),
        )
        .await;
    assert_eq!(cancel.status, 202, "{}", cancel.text());
    let value = annotation(&tasks.get("task-3").await.unwrap(), ANNOTATION_CANCEL).unwrap();
    assert_eq!(parse_cancel(&value).unwrap().by, "release-bot");

    // Both are in the OpenAPI document, behind the bearer scheme.
    let doc = http.get(&api.url("/api/v1/openapi.json")).await.json();
    for path in ["/api/v1/tasks/{id}/retry", "/api/v1/tasks/{id}/cancel"] {
        let op = &doc["paths"][path]["post"];
        assert!(op.is_object(), "{path} missing");
        assert_eq!(op["security"][0]["bearer"], json!([]), "{path}");
    }
}

/// A Job and one Pod of it for task 7, version 3, as the Job controller labels them.
async fn job_and_pod(c: &TestCluster) -> String {
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "web-7-v3", "labels": {"task-id": "7", "context-version": "3", "orchestrator.io/attempt": "1"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "agent", "image": "busybox", "command": ["sh", "-c", "echo hello from the agent"]}]}}},
    }))
    .unwrap();
    let job = c
        .api::<Job>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-7-v3-abcde", "labels": {"job-name": "web-7-v3", "batch.kubernetes.io/job-name": "web-7-v3"},
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "web-7-v3", "uid": job.uid().unwrap(), "controller": true}]},
        "spec": {"containers": [{"name": "agent", "image": "busybox"}]},
    }))
    .unwrap();
    c.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    "web-7-v3-abcde".into()
}

#[tokio::test]
async fn logs_name_the_pod_and_say_plainly_when_there_is_none() {
    let mut c = support::cluster().await;
    if !c.is_embedded() {
        eprintln!(
            "skipped on a real cluster: this test creates a bare Pod that a kubelet would try to run"
        );
        return;
    }
    c.install_task_run_crd().await;
    let kubeconfig = c.kubeconfig_path();
    let ns = c.namespace.clone();
    task_run(&c, 7, Some(TaskPhase::Failed)).await;

    // No Job of version 3 (removed after its TTL): said so, with where the outcome is kept.
    let out = on_cluster(&kubeconfig, &ns, "logs", "7", &[]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("task-7: no Job of contextVersion 3 exists any more; finished Jobs and their Pods are removed after the profile's ttlSecondsAfterFinished"),
        "{}",
        text(&out)
    );
    let out = on_cluster(&kubeconfig, &ns, "logs", "7", &["--version", "2"]).await;
    assert!(
        text(&out).contains("no Job of contextVersion 2"),
        "{}",
        text(&out)
    );

    // With a Job and its Pod: the Pod is found by the Job's labels and its log asked for.
    let pod = job_and_pod(&c).await;
    let out = on_cluster(&kubeconfig, &ns, "logs", "task-7", &["--tail", "20"]).await;
    let said = text(&out);
    assert!(said.contains(&format!("Pod {pod}")), "{said}");
    if out.status.success() {
        // A server that serves pods/log (a real one; the embedded one once it does).
        return;
    }
    // This bare Pod was started by no kubelet or local runner, so the server has no log for it
    // (400, as kube-apiserver answers for a Pod with no host): the error names the Pod and the
    // server's reason instead of failing obscurely.
    assert!(
        said.contains(&format!("Pod {pod}")) && (said.contains("400") || said.contains("404")),
        "{said}"
    );
    let out = on_cluster(&kubeconfig, &ns, "logs", "7", &["--previous-attempt"]).await;
    assert!(
        text(&out)
            .contains("task-7: Job web-7-v3 has had only one attempt; there is no previous one"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn logs_print_what_the_agent_wrote() {
    let mut c = support::cluster().await;
    if !c.is_embedded() {
        eprintln!(
            "skipped on a real cluster: the agent image of this test is a local shell command"
        );
        return;
    }
    c.install_task_run_crd().await;
    let kubeconfig = c.kubeconfig_path();
    let ns = c.namespace.clone();
    let logs = tempfile::tempdir().unwrap();
    let runner = kube_envtest::runner::JobRunner::start(
        c.client.clone(),
        kube_envtest::runner::RunnerConfig::new(logs.path()),
    );
    task_run(&c, 8, Some(TaskPhase::Running)).await;
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "web-8-v3", "labels": {"task-id": "8", "context-version": "3"}},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "agent", "image": "local/shell", "command": ["sh", "-c", "echo hello from the agent"]}]}}},
    }))
    .unwrap();
    c.api::<Job>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let pods: Api<Pod> = c.api();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pods
        .list(&kube::api::ListParams::default().labels("job-name=web-8-v3"))
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the runner made no Pod"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = on_cluster(&kubeconfig, &ns, "logs", "8", &[]).await;
    runner.shutdown().await;
    if text(&out).contains("(404") {
        eprintln!(
            "skipped: the embedded API server (kube-envtest) does not serve the pods/log subresource \
             yet (GET /api/v1/namespaces/{{ns}}/pods/{{name}}/log from the runner's log of the Pod); \
             this test checks the output as soon as it does"
        );
        return;
    }
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("hello from the agent"),
        "{}",
        text(&out)
    );
}
