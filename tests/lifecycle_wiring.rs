//! The task lifecycle as the controller carries it out, on the embedded API server with the
//! local Job runner: status from the Job's Pods (podName, Running only while a Pod runs, the
//! failed attempt's exit code, the agent's result), cancel and retry through the annotations.

mod controller_support;

use controller_support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use orchestrator::controller::operations::{ANNOTATION_CANCEL, ANNOTATION_RETRY, cancel_value};
use orchestrator::crd::TaskPhase;
use std::time::Duration;

const AGENTS: &str = r#"
defaults:
  activeDeadlineSeconds: 60
  backoffLimit: 0
agents:
  fails:
    image: local/shell
    command: ["sh", "-c", "echo about to fail; exit 3"]
  sleeps:
    image: local/shell
    command: ["sh", "-c", "sleep 40"]
  quick:
    image: local/shell
    command: ["sh", "-c", "echo done"]
"#;

const T: Duration = Duration::from_secs(20);

fn pods(cluster: &Cluster) -> Api<Pod> {
    Api::namespaced(cluster.client.clone(), NS)
}

async fn pods_of_job(cluster: &Cluster, job: &str) -> Vec<Pod> {
    pods(cluster)
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .expect("pods are listed")
        .items
}

async fn annotate(cluster: &Cluster, name: &str, key: &str, value: &str) {
    let body = serde_json::json!({"metadata": {"annotations": {key: value}}});
    cluster
        .task_runs()
        .patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .expect("annotation is written");
}

#[tokio::test]
async fn status_follows_the_pods_running_pod_name_and_the_failed_exit_code() {
    let cluster = Cluster::start(AGENTS).await;
    let controller = cluster.start_controller();

    // Running only once a Pod runs, naming it.
    cluster.create(&task_run(1, 1, "sleeps", "# wait\n")).await;
    let tr = cluster
        .wait_for("task-1", T, "Running", |t| {
            phase(t) == Some(TaskPhase::Running)
        })
        .await;
    let status = tr.status.unwrap();
    let pod_name = status
        .pod_name
        .clone()
        .expect("podName is set while Running");
    let listed = pods_of_job(&cluster, "web-1-v1").await;
    assert!(
        listed
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(&pod_name)),
        "podName {pod_name} names a Pod of the Job: {:?}",
        listed.iter().map(|p| &p.metadata.name).collect::<Vec<_>>()
    );
    assert_eq!(status.reason.as_deref(), Some("Running"));
    assert_eq!(
        status.message.as_deref(),
        Some(format!("Job web-1-v1 is running (Pod {pod_name})").as_str())
    );
    assert_eq!(status.result, None, "no result before the agent finished");

    // A failed Job says why its last attempt failed: the exit code, not only the limit.
    cluster.create(&task_run(2, 1, "fails", "# fail\n")).await;
    let tr = cluster
        .wait_for("task-2", T, "Failed", |t| {
            phase(t) == Some(TaskPhase::Failed)
        })
        .await;
    let status = tr.status.unwrap();
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.contains("exited with code 3") && message.contains("BackoffLimitExceeded"),
        "{message}"
    );
    assert_eq!(status.reason.as_deref(), Some("BackoffLimitExceeded"));
    let failed_pod = status
        .pod_name
        .clone()
        .expect("podName of the failed attempt");
    assert!(failed_pod.starts_with("web-2-v1-"), "{failed_pod}");
    controller.stop().await;
}

#[tokio::test]
async fn the_result_is_the_pods_termination_message() {
    let cluster = Cluster::start(AGENTS).await;
    let controller = cluster.start_controller();
    cluster.create(&task_run(3, 1, "quick", "# quick\n")).await;
    let tr = cluster
        .wait_for("task-3", T, "Succeeded", |t| {
            phase(t) == Some(TaskPhase::Succeeded)
        })
        .await;
    let pod_name = tr.status.unwrap().pod_name.expect("podName");
    // What the kubelet writes when the container's termination message holds the result: the
    // Pod's status is patched here as a kubelet would (the local runner may already do it).
    let pod = pods(&cluster)
        .get(&pod_name)
        .await
        .expect("the Pod is there");
    let mut statuses = pod
        .status
        .and_then(|s| s.container_statuses)
        .expect("container statuses");
    let terminated = statuses[0]
        .state
        .as_mut()
        .and_then(|s| s.terminated.as_mut())
        .expect("terminated");
    terminated.message = Some("3 files changed; tests pass\n".to_string());
    let body = serde_json::json!({"status": {"containerStatuses": statuses}});
    pods(&cluster)
        .patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .expect("the Pod's status is patched");
    let tr = cluster
        .wait_for("task-3", T, "a result", |t| {
            t.status
                .as_ref()
                .and_then(|s| s.result.as_deref())
                .is_some()
        })
        .await;
    let status = tr.status.unwrap();
    assert_eq!(
        status.result.as_deref(),
        Some("3 files changed; tests pass")
    );
    assert_eq!(status.phase, Some(TaskPhase::Succeeded));
    controller.stop().await;
}

#[tokio::test]
async fn cancel_stops_the_job_and_retry_runs_a_new_attempt_of_the_same_version() {
    let cluster = Cluster::start(AGENTS).await;
    let controller = cluster.start_controller();
    cluster.create(&task_run(4, 1, "sleeps", "# long\n")).await;
    cluster
        .wait_for("task-4", T, "Running", |t| {
            phase(t) == Some(TaskPhase::Running)
        })
        .await;

    let value = cancel_value("ana@example.com", k8s_openapi::jiff::Timestamp::now());
    annotate(&cluster, "task-4", ANNOTATION_CANCEL, &value).await;
    let tr = cluster
        .wait_for("task-4", T, "Cancelled", |t| {
            t.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Cancelled")
        })
        .await;
    let status = tr.status.unwrap();
    assert_eq!(status.phase, Some(TaskPhase::Failed));
    let message = status.message.unwrap_or_default();
    assert!(
        message.starts_with("cancelled by ana@example.com at "),
        "{message}"
    );
    assert_eq!(
        condition(&tr_now(&cluster, "task-4").await, "Succeeded"),
        Some(("False".to_string(), "Cancelled".to_string()))
    );
    // The Job is gone and is not made again.
    let deadline = tokio::time::Instant::now() + T;
    while !cluster.jobs_of(4).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cancelled Job is deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watch_quiet().await;
    assert!(cluster.jobs_of(4).await.is_empty(), "no Job after a cancel");

    // A retry after the cancel runs attempt 2 of the same version, under its own Job name.
    annotate(&cluster, "task-4", ANNOTATION_RETRY, "t-1").await;
    let tr = cluster
        .wait_for("task-4", T, "attempt 2 running", |t| {
            t.status.as_ref().is_some_and(|s| {
                s.retries == 1
                    && s.job_name.as_deref() == Some("web-4-v1-r2")
                    && s.phase == Some(TaskPhase::Running)
            })
        })
        .await;
    let status = tr.status.unwrap();
    assert_eq!(status.context_version, Some(1));
    assert_eq!(status.retry_token.as_deref(), Some("t-1"));
    assert_eq!(tr.spec.context_version, 1);
    let jobs = cluster.jobs_of(4).await;
    assert_eq!(
        jobs.iter()
            .map(|j| j.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        ["web-4-v1-r2"]
    );
    assert_eq!(
        jobs[0].metadata.labels.as_ref().unwrap()["orchestrator.io/attempt"],
        "2"
    );
    controller.stop().await;
}

#[tokio::test]
async fn a_retry_of_a_failed_task_keeps_the_old_job_and_counts_retries() {
    let cluster = Cluster::start(AGENTS).await;
    let controller = cluster.start_controller();
    cluster.create(&task_run(5, 1, "fails", "# fail\n")).await;
    cluster
        .wait_for("task-5", T, "Failed", |t| {
            phase(t) == Some(TaskPhase::Failed)
        })
        .await;
    annotate(&cluster, "task-5", ANNOTATION_RETRY, "a").await;
    let tr = cluster
        .wait_for("task-5", T, "attempt 2 failed", |t| {
            t.status.as_ref().is_some_and(|s| {
                s.job_name.as_deref() == Some("web-5-v1-r2") && s.phase == Some(TaskPhase::Failed)
            })
        })
        .await;
    let status = tr.status.unwrap();
    assert_eq!(
        (status.retries, status.retry_token.as_deref()),
        (1, Some("a"))
    );
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("exited with code 3"),
        "{status:?}"
    );
    // The same token again asks for nothing; a new one runs attempt 3.
    annotate(&cluster, "task-5", ANNOTATION_RETRY, "a").await;
    watch_quiet().await;
    assert_eq!(
        cluster.jobs_of(5).await.len(),
        2,
        "web-5-v1 and web-5-v1-r2"
    );
    annotate(&cluster, "task-5", ANNOTATION_RETRY, "b").await;
    cluster
        .wait_for("task-5", T, "attempt 3 failed", |t| {
            t.status.as_ref().is_some_and(|s| {
                s.job_name.as_deref() == Some("web-5-v1-r3")
                    && s.retries == 2
                    && s.phase == Some(TaskPhase::Failed)
            })
        })
        .await;
    controller.stop().await;
}

async fn tr_now(cluster: &Cluster, name: &str) -> orchestrator::crd::TaskRun {
    cluster.task_runs().get(name).await.expect("TaskRun")
}

async fn set_suspend(cluster: &Cluster, name: &str, suspend: bool) {
    let body = serde_json::json!({"spec": {"suspend": suspend}});
    cluster
        .task_runs()
        .patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .expect("spec.suspend is written");
}

#[tokio::test]
async fn suspend_runs_no_job_suspends_a_running_one_and_removing_it_resumes() {
    let cluster = Cluster::start(AGENTS).await;
    let controller = cluster.start_controller();
    let mut tr = task_run(6, 1, "sleeps", "# later\n");
    tr.spec.suspend = true;
    cluster.create(&tr).await;
    let tr = cluster
        .wait_for("task-6", T, "Suspended", |t| {
            t.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Suspended")
        })
        .await;
    assert_eq!(phase(&tr), Some(TaskPhase::Pending));
    watch_quiet().await;
    assert!(
        cluster.jobs_of(6).await.is_empty(),
        "no Job while suspended"
    );

    // Removing it starts the Job.
    set_suspend(&cluster, "task-6", false).await;
    cluster
        .wait_for("task-6", T, "Running", |t| {
            phase(t) == Some(TaskPhase::Running)
        })
        .await;

    // Suspending a running task suspends its Job (spec.suspend) and says Pending/Suspended.
    set_suspend(&cluster, "task-6", true).await;
    let tr = cluster
        .wait_for("task-6", T, "Suspended again", |t| {
            t.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Suspended")
        })
        .await;
    assert_eq!(phase(&tr), Some(TaskPhase::Pending));
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let job = cluster
            .jobs()
            .get("web-6-v1")
            .await
            .expect("the Job is kept");
        if job.spec.and_then(|s| s.suspend) == Some(true) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Job spec.suspend is set"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    set_suspend(&cluster, "task-6", false).await;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let job = cluster
            .jobs()
            .get("web-6-v1")
            .await
            .expect("the Job is kept");
        if job.spec.and_then(|s| s.suspend) == Some(false) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Job spec.suspend is cleared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tr = cluster
        .wait_for("task-6", T, "no longer Suspended", |t| {
            t.status.as_ref().and_then(|s| s.reason.as_deref()) != Some("Suspended")
        })
        .await;
    assert_eq!(cluster.jobs_of(6).await.len(), 1, "the same Job resumes");
    assert_eq!(tr.status.unwrap().job_name.as_deref(), Some("web-6-v1"));
    controller.stop().await;
}

const QUEUE_AGENTS: &str = r#"
defaults:
  activeDeadlineSeconds: 60
  backoffLimit: 0
agents:
  limited:
    image: local/shell
    command: ["sh", "-c", "sleep 2"]
    maxConcurrent: 2
  other:
    image: local/shell
    command: ["sh", "-c", "sleep 1"]
"#;

/// Jobs of `agent` not finished, as the API lists them now.
async fn active_jobs(cluster: &Cluster, agent_tasks: std::ops::RangeInclusive<i64>) -> usize {
    let jobs = cluster
        .jobs()
        .list(&ListParams::default())
        .await
        .expect("jobs");
    jobs.items
        .iter()
        .filter(|j| {
            let id: i64 = j.metadata.labels.as_ref().unwrap()["task-id"]
                .parse()
                .unwrap();
            agent_tasks.contains(&id)
        })
        .filter(|j| {
            !j.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed")
                    })
                })
        })
        .count()
}

#[tokio::test]
async fn max_concurrent_queues_the_rest_in_priority_then_task_order() {
    let cluster = Cluster::start(QUEUE_AGENTS).await;
    // Five tasks of the limited agent (task 15 has priority 1), one of another agent, all there
    // when the controller starts.
    for id in 11..=15 {
        let mut tr = task_run(id, 1, "limited", "# queued\n");
        if id == 15 {
            tr.spec.priority = 1;
        }
        cluster.create(&tr).await;
    }
    cluster.create(&task_run(20, 1, "other", "# free\n")).await;
    let controller = cluster.start_controller();
    let tr = cluster
        .wait_for("task-14", T, "Queued", |t| {
            t.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Queued")
        })
        .await;
    let status = tr.status.unwrap();
    assert_eq!(status.phase, Some(TaskPhase::Pending));
    assert_eq!(
        status.message.as_deref(),
        Some("queued: position 3 of 3 waiting; agent limited runs 2 of maxConcurrent 2"),
        "task 15 (priority 1) and task 11 start; 12, 13 and 14 wait in that order"
    );
    assert!(cluster.jobs_of(14).await.is_empty(), "no Job while queued");
    // The other agent has no limit of its own: not held back.
    assert!(!cluster.jobs_of(20).await.is_empty());
    let metrics = controller.metrics_text();
    assert_eq!(
        sample(&metrics, "taskrun_queued{agent=\"limited\"}"),
        Some(3.0),
        "{metrics}"
    );
    let mut jobs_15 = cluster.jobs_of(15).await;
    assert_eq!(jobs_15.len(), 1, "the priority task started first");
    let first = jobs_15.pop().unwrap().metadata.creation_timestamp.unwrap();

    // All finish; never more than 2 at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut max_seen = 0;
    loop {
        max_seen = max_seen.max(active_jobs(&cluster, 11..=15).await);
        let list = cluster
            .task_runs()
            .list(&ListParams::default())
            .await
            .unwrap();
        if list
            .items
            .iter()
            .all(|t| phase(t) == Some(TaskPhase::Succeeded))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "all tasks finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        (1..=2).contains(&max_seen),
        "at most maxConcurrent at once: {max_seen}"
    );
    let started_14 = cluster.jobs_of(14).await[0]
        .metadata
        .creation_timestamp
        .clone()
        .unwrap();
    assert!(started_14.0 > first.0, "task 14 waited for the queue");
    let metrics = controller.metrics_text();
    assert_eq!(
        sample(&metrics, "taskrun_queued{agent=\"limited\"}"),
        Some(0.0),
        "{metrics}"
    );
    controller.stop().await;
}

#[tokio::test]
async fn max_running_caps_all_agents() {
    let cluster = Cluster::start(QUEUE_AGENTS).await;
    let controller = cluster.start_controller_with(|c| c.max_running = Some(1));
    for id in [31, 32] {
        cluster
            .create(&task_run(id, 1, "other", "# one at a time\n"))
            .await;
    }
    let tr = cluster
        .wait_for("task-32", T, "Queued", |t| {
            t.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Queued")
        })
        .await;
    assert_eq!(
        tr.status.unwrap().message.as_deref(),
        Some("queued: position 1 of 1 waiting; all agents run 1 of --max-running 1")
    );
    cluster
        .wait_for("task-32", T, "Succeeded", |t| {
            phase(t) == Some(TaskPhase::Succeeded)
        })
        .await;
    controller.stop().await;
}

#[tokio::test]
async fn a_blocked_task_turns_stalled_after_stall_after_with_one_warning() {
    let agents = "agents:\n  slow-start:\n    image: local/shell\n    command: [\"true\"]\n    stallAfter: 1s\n";
    let mut cluster = Cluster::start(agents).await;
    // No runner: the Job never gets a Pod, as when nothing can start it.
    cluster.runner.take().expect("runner").shutdown().await;
    let controller = cluster.start_controller();
    cluster
        .create(&task_run(40, 1, "slow-start", "# blocked\n"))
        .await;
    let tr = cluster
        .wait_for("task-40", T, "Stalled", |t| {
            condition(t, "Stalled").is_some_and(|c| c.0 == "True")
        })
        .await;
    assert_eq!(phase(&tr), Some(TaskPhase::Pending));
    assert_eq!(
        condition(&tr, "Stalled"),
        Some(("True".to_string(), "JobCreated".to_string()))
    );
    let status = tr.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("JobCreated"));
    // One Warning event, not one per reconcile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stalled: Vec<_> = cluster
        .events_for("task-40")
        .await
        .into_iter()
        .filter(|(reason, _, _)| reason == "Stalled")
        .collect();
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    assert_eq!(stalled[0].2, "Warning");
    assert!(stalled[0].1.contains("web-40-v1"), "{stalled:?}");
    controller.stop().await;
}

/// The note of one synced revision holding `tr`, from the TaskRun as the server has it (the notes
/// writer feeds the same `TaskState::of_task_run` into the same `note_of`).
fn note_with(tr: &orchestrator::crd::TaskRun) -> orchestrator::notes::model::Note {
    use orchestrator::health::SyncStatus;
    use orchestrator::notes::model::TaskState;
    use orchestrator::source::snapshot::Revision;
    use orchestrator::sync::report::{SyncReport, SyncedTask};
    let revision = Revision {
        branch: "main".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
    };
    let name = tr.metadata.name.clone().unwrap();
    let report = SyncReport {
        revision: revision.clone(),
        status: SyncStatus::Synced,
        applied_revision: Some(revision),
        tasks: vec![SyncedTask {
            task_id: tr.spec.task_id,
            name: name.as_str().into(),
            context_version: tr.spec.context_version,
            digest: "sha256:x".into(),
            path: format!("tasks/{}-x", tr.spec.task_id).into(),
        }]
        .into(),
        folder_errors: vec![],
        apply_errors: vec![],
        created: 1,
        updated: 0,
        pruned: 0,
        unchanged: 0,
        synced_at: "2026-01-01T00:00:00Z".into(),
    };
    let states = std::collections::BTreeMap::from([(name, TaskState::of_task_run(tr))]);
    orchestrator::notes::render::note_of(&report, &states, None)
}

#[tokio::test]
async fn a_missing_service_account_is_failed_create_then_stalled_and_the_note_degraded() {
    // The ServiceAccount `no-such-sa` does not exist: the Pod is refused (as kube-apiserver's
    // ServiceAccount admission does), and the Job controller (here the local runner) records a
    // FailedCreate Warning on the Job.
    let agents = "agents:\n  needs-sa:\n    image: local/shell\n    command: [\"true\"]\n    serviceAccountName: no-such-sa\n    stallAfter: 8s\n";
    let cluster = Cluster::start(agents).await;
    let controller = cluster.start_controller();
    cluster
        .create(&task_run(41, 1, "needs-sa", "# needs a service account\n"))
        .await;
    let tr = cluster
        .wait_for("task-41", T, "Pending/FailedCreate", |t| {
            t.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("FailedCreate")
        })
        .await;
    let status = tr.status.clone().unwrap();
    assert_eq!(status.phase, Some(TaskPhase::Pending));
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("Job web-41-v1 cannot create its Pod: ")
            && message.contains("error looking up service account tasks/no-such-sa")
            && message.contains("serviceaccount \"no-such-sa\" not found"),
        "the message names the Job and the missing ServiceAccount: {message}"
    );
    assert_eq!(
        condition(&tr, "Stalled").map(|c| c.0),
        Some("False".to_string()),
        "blocked, not stalled yet"
    );
    let note = note_with(&tr);
    assert_eq!(note.health, orchestrator::health::Health::Progressing);

    let tr = cluster
        .wait_for("task-41", Duration::from_secs(30), "Stalled", |t| {
            condition(t, "Stalled").is_some_and(|c| c.0 == "True")
        })
        .await;
    assert_eq!(
        condition(&tr, "Stalled"),
        Some(("True".to_string(), "FailedCreate".to_string()))
    );
    let note = note_with(&tr);
    assert_eq!(note.health, orchestrator::health::Health::Degraded);
    assert_eq!(
        note.health_reason.as_deref(),
        Some("task-41 Stalled (FailedCreate)")
    );
    assert!(note.tasks[0].stalled);
    let text = orchestrator::notes::render::note_text(&note);
    assert!(text.contains("serviceaccount"), "{text}");
    let stalled: Vec<_> = cluster
        .events_for("task-41")
        .await
        .into_iter()
        .filter(|(reason, _, _)| reason == "Stalled")
        .collect();
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    assert!(stalled[0].1.contains("no-such-sa"), "{stalled:?}");
    controller.stop().await;
}

#[tokio::test]
async fn the_queue_starts_the_older_commits_tasks_first_also_after_a_restart() {
    let cluster = Cluster::start(QUEUE_AGENTS).await;
    // As the sync writes them: each TaskRun names the commit time of the revision that
    // introduced its version. Task 63's commit is older than task 62's.
    let at = |id: i64, time: &str| {
        let mut tr = task_run(id, 1, "limited", "# ordered\n");
        tr.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                orchestrator::names::ANNOTATION_REVISION_TIME.to_string(),
                time.to_string(),
            );
        tr
    };
    for (id, time) in [
        (60, "2026-01-01T10:00:00Z"),
        (61, "2026-01-01T10:00:00Z"),
        (62, "2026-01-01T12:00:00Z"),
        (63, "2026-01-01T11:00:00Z"),
        (64, "2026-01-01T11:00:00Z"),
    ] {
        cluster.create(&at(id, time)).await;
    }
    let queued_message = |t: &orchestrator::crd::TaskRun| {
        t.status
            .as_ref()
            .filter(|s| s.reason.as_deref() == Some("Queued"))
            .and_then(|s| s.message.clone())
    };
    let controller = cluster.start_controller();
    let want = [
        ("task-63", "queued: position 1 of 3 waiting"),
        ("task-64", "queued: position 2 of 3 waiting"),
        ("task-62", "queued: position 3 of 3 waiting"),
    ];
    for (name, prefix) in want {
        let tr = cluster
            .wait_for(name, T, prefix, |t| {
                queued_message(t).is_some_and(|m| m.starts_with(prefix))
            })
            .await;
        assert!(cluster.jobs_of(tr.spec.task_id).await.is_empty(), "{name}");
    }
    assert_eq!(cluster.jobs_of(60).await.len(), 1);
    assert_eq!(cluster.jobs_of(61).await.len(), 1);
    controller.stop().await;
    // A new controller (a restart) knows the order from the cluster alone: 63 and 64 (the
    // older commit) start before 62.
    let controller = cluster.start_controller();
    cluster
        .wait_for("task-62", Duration::from_secs(40), "Succeeded", |t| {
            phase(t) == Some(TaskPhase::Succeeded)
        })
        .await;
    let created = |jobs: Vec<k8s_openapi::api::batch::v1::Job>| {
        jobs[0].metadata.creation_timestamp.clone().unwrap().0
    };
    let (j62, j63, j64) = (
        created(cluster.jobs_of(62).await),
        created(cluster.jobs_of(63).await),
        created(cluster.jobs_of(64).await),
    );
    assert!(j63 <= j64 && j64 <= j62, "{j63} {j64} {j62}");
    controller.stop().await;
}
