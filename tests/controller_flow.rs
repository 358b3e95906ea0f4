//! The controller end to end on the embedded API server with the local Job runner: real HTTP
//! between kube-rs and the server, real processes for the agents.

mod controller_support;

use controller_support::*;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use orchestrator::crd::{MarkdownFile, TaskPhase};
use orchestrator::names;
use std::time::Duration;

const AGENTS: &str = r#"
defaults:
  activeDeadlineSeconds: 30
  backoffLimit: 0
agents:
  echo:
    image: local/shell
    command: ["sh", "-c"]
    args: ['echo "task $TASK_ID v$TASK_CONTEXT_VERSION"; cat "$TASK_DIR/prompt.md"']
  flaky:
    image: local/shell
    command: ["sh", "-c", "echo failing; exit 3"]
    backoffLimit: 2
  sleepy:
    image: local/shell
    command: ["sh", "-c", "sleep 30"]
    activeDeadlineSeconds: 1
  by-content:
    image: local/shell
    command: ["sh", "-c"]
    args: ['if grep -q slow "$TASK_DIR/prompt.md"; then sleep 30; fi; echo finished']
  short:
    image: local/shell
    command: ["sh", "-c", "sleep 2; echo done"]
"#;

const T: Duration = Duration::from_secs(20);

fn terminal(tr: &orchestrator::crd::TaskRun) -> bool {
    phase(tr).is_some_and(TaskPhase::is_terminal)
}

#[tokio::test]
async fn a_task_succeeds_with_its_files_mounted_and_says_so() {
    let cluster = Cluster::start(AGENTS).await;
    let controller = cluster.start_controller();
    let before = cluster.server.request_stats();
    let created = cluster
        .create(&task_run(1, 1, "echo", "# Build the login page\n"))
        .await;
    let tr = cluster
        .wait_for("task-1", T, "Ready", |t| {
            condition(t, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await;
    let status = tr.status.clone().unwrap();
    assert_eq!(status.phase, Some(TaskPhase::Succeeded));
    assert_eq!(status.attempts, 1);
    assert_eq!(status.job_name.as_deref(), Some("web-1-v1"));
    assert_eq!(status.config_map_name.as_deref(), Some("web-1-v1-files"));
    assert_eq!(status.context_version, Some(1));
    assert_eq!(status.observed_generation, tr.metadata.generation);
    assert!(
        status.start_time.is_some() && status.completion_time.is_some(),
        "{status:?}"
    );
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or("")
            .starts_with("Job web-1-v1 succeeded"),
        "{status:?}"
    );
    for (type_, want) in [
        ("Ready", ("True", "Succeeded")),
        ("Reconciling", ("False", "Succeeded")),
        ("Stalled", ("False", "Succeeded")),
        ("Succeeded", ("True", "Succeeded")),
    ] {
        assert_eq!(
            condition(&tr, type_),
            Some((want.0.to_string(), want.1.to_string())),
            "{type_}"
        );
    }
    assert!(tr.finalizers().iter().any(|f| f == names::FINALIZER));

    // The children: owned by the TaskRun, labelled, the markdown mounted into the process.
    let job = cluster.jobs().get("web-1-v1").await.unwrap();
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("TaskRun", "task-1")
    );
    assert_eq!(Some(owner.uid.clone()), created.metadata.uid);
    assert_eq!(owner.controller, Some(true));
    let labels = job.labels();
    assert_eq!(labels[names::LABEL_TASK_ID], "1");
    assert_eq!(labels[names::LABEL_SERVICE_NAME], "web");
    assert_eq!(labels[names::LABEL_CONTEXT_VERSION], "1");
    let cm = cluster.config_maps().get("web-1-v1-files").await.unwrap();
    assert_eq!(
        cm.data.as_ref().unwrap()["prompt.md"],
        "# Build the login page\n"
    );
    // The whole task in reading order, for `cat "$TASK_DIR/TASK.md"`.
    assert!(
        cm.data.as_ref().unwrap()["TASK.md"].starts_with("# prompt.md\n\n# Build the login page\n"),
        "{:?}",
        cm.data
    );
    let log_path = job.annotations()[names::ANNOTATION_LOG_PATH].clone();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("task 1 v1") && log.contains("# Build the login page"),
        "{log}"
    );

    // Events by content.
    let events = cluster.events_for("task-1").await;
    let reasons: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    // One event per transition a person cares about: the Job started, it succeeded.
    assert_eq!(reasons, ["JobCreated", "Succeeded"], "{events:?}");
    assert_eq!(
        events[0].1,
        "Created Job web-1-v1 running agent echo (local/shell)"
    );
    assert!(
        events[1].1.starts_with("Job web-1-v1 succeeded"),
        "{events:?}"
    );
    assert!(events.iter().all(|e| e.2 == "Normal"), "{events:?}");

    // Metrics by content.
    let text = controller.metrics_text();
    for (series, want) in [
        ("taskrun_total", 1.0),
        ("taskrun_active", 0.0),
        ("taskrun_phase{phase=\"Succeeded\"}", 1.0),
        ("taskrun_phase{phase=\"Running\"}", 0.0),
        ("controller_jobs_created_total", 1.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
    assert!(
        sample(
            &text,
            "controller_reconcile_duration_seconds_count{result=\"ok\"}"
        )
        .unwrap()
            >= 2.0,
        "{text}"
    );

    // Writes: the ConfigMap and the Job once each, the finalizer once (this TaskRun was made
    // by hand, without it), status at most twice (Running, Succeeded), nothing else.
    watch_quiet().await;
    let writes = cluster.server.request_stats().since(&before);
    assert_eq!(writes.writes_to("configmaps"), 1, "{writes:?}");
    assert_eq!(
        writes.count("jobs.batch", "patch") + writes.count("jobs.batch", "create"),
        2,
        "the controller's create and the runner's log-path annotation: {writes:?}"
    );
    assert_eq!(
        writes.writes_to("taskruns.orchestrator.io"),
        2,
        "create + finalizer: {writes:?}"
    );
    assert!(
        writes.writes_to("taskruns.orchestrator.io/status") <= 2,
        "{writes:?}"
    );
    controller.stop().await;
}

#[tokio::test]
async fn a_failing_task_is_retried_up_to_its_backoff_limit_then_fails() {
    let cluster = Cluster::start(AGENTS).await;
    let controller = cluster.start_controller();
    let recorder = StatusRecorder::start(&cluster, "task-2");
    cluster.create(&task_run(2, 1, "flaky", "# Fails\n")).await;
    let tr = cluster.wait_for("task-2", T, "finished", terminal).await;
    // Every status the TaskRun went through: the phase only moves forward and attempts only
    // grow, although between two attempts the Job has no active pod.
    watch_quiet().await;
    let seen = recorder.statuses();
    let rank = |p: Option<TaskPhase>| match p {
        None | Some(TaskPhase::Pending) => 0,
        Some(TaskPhase::Running) => 1,
        Some(_) => 2,
    };
    for pair in seen.windows(2) {
        assert!(
            rank(pair[0].phase) <= rank(pair[1].phase),
            "phase went back: {seen:#?}"
        );
        assert!(
            pair[0].attempts <= pair[1].attempts,
            "attempts went down: {seen:#?}"
        );
    }
    assert_eq!(seen.last().and_then(|s| s.phase), Some(TaskPhase::Failed));
    let status = tr.status.clone().unwrap();
    assert_eq!(status.phase, Some(TaskPhase::Failed), "{status:?}");
    assert_eq!(
        status.attempts, 3,
        "backoffLimit 2 = 3 attempts: {status:?}"
    );
    assert_eq!(
        condition(&tr, "Succeeded"),
        Some(("False".into(), "BackoffLimitExceeded".into()))
    );
    assert_eq!(
        condition(&tr, "Stalled"),
        Some(("True".into(), "BackoffLimitExceeded".into()))
    );
    assert_eq!(
        condition(&tr, "Ready"),
        Some(("False".into(), "BackoffLimitExceeded".into()))
    );
    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .contains("BackoffLimitExceeded"),
        "{status:?}"
    );
    let events = cluster.events_for("task-2").await;
    let failed = events
        .iter()
        .find(|e| e.0 == "Failed")
        .expect("a Failed event");
    assert_eq!(failed.2, "Warning");
    assert!(
        failed.1.contains("web-2-v1") && failed.1.contains("BackoffLimitExceeded"),
        "{failed:?}"
    );
    let text = controller.metrics_text();
    assert_eq!(
        sample(&text, "taskrun_phase{phase=\"Failed\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        cluster.jobs_of(2).await.len(),
        1,
        "retries are pods of one Job"
    );
    controller.stop().await;
}

#[tokio::test]
async fn a_task_that_runs_past_its_deadline_fails_with_deadline_exceeded() {
    let cluster = Cluster::start(AGENTS).await;
    let controller = cluster.start_controller();
    cluster
        .create(&task_run(3, 1, "sleepy", "# Sleeps\n"))
        .await;
    let job = cluster
        .wait_for("task-3", T, "Running", |t| phase(t).is_some())
        .await;
    assert_eq!(
        cluster
            .jobs()
            .get("web-3-v1")
            .await
            .unwrap()
            .spec
            .unwrap()
            .active_deadline_seconds,
        Some(1)
    );
    drop(job);
    let tr = cluster.wait_for("task-3", T, "finished", terminal).await;
    assert_eq!(phase(&tr), Some(TaskPhase::Failed));
    assert_eq!(
        condition(&tr, "Succeeded"),
        Some(("False".into(), "DeadlineExceeded".into()))
    );
    assert!(
        tr.status
            .unwrap()
            .message
            .unwrap()
            .contains("DeadlineExceeded")
    );
    controller.stop().await;
}

#[tokio::test]
async fn a_new_context_version_supersedes_the_running_job() {
    let cluster = Cluster::start(AGENTS).await;
    let controller = cluster.start_controller();
    // Another task's objects and an unowned ConfigMap with this task's label: never touched.
    let bystander = cluster
        .config_maps()
        .create(&PostParams::default(), &{
            let mut cm = k8s_openapi::api::core::v1::ConfigMap::default();
            cm.metadata.name = Some("hand-made".into());
            cm.metadata.labels = Some([(names::LABEL_TASK_ID.to_string(), "4".to_string())].into());
            cm
        })
        .await
        .unwrap();
    cluster
        .create(&task_run(5, 1, "by-content", "# slow, other task\n"))
        .await;
    cluster
        .create(&task_run(4, 1, "by-content", "# slow at first\n"))
        .await;
    cluster
        .wait_for("task-4", T, "Running", |t| {
            phase(t) == Some(TaskPhase::Running)
        })
        .await;
    cluster
        .wait_for("task-5", T, "Running", |t| {
            phase(t) == Some(TaskPhase::Running)
        })
        .await;

    let recorder = StatusRecorder::start(&cluster, "task-4");
    let patch = serde_json::json!({"spec": {
        "contextVersion": 2,
        "markdownFiles": [MarkdownFile { filename: "prompt.md".into(), content: "# fast now\n".into() }],
    }});
    cluster
        .task_runs()
        .patch("task-4", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let tr = cluster
        .wait_for("task-4", T, "v2 Succeeded", |t| {
            t.status
                .as_ref()
                .is_some_and(|s| s.context_version == Some(2))
                && terminal(t)
        })
        .await;
    let status = tr.status.unwrap();
    assert_eq!(status.phase, Some(TaskPhase::Succeeded), "{status:?}");
    assert_eq!(status.job_name.as_deref(), Some("web-4-v2"));
    // The first status of version 2 says why the old Job is gone.
    watch_quiet().await;
    let first_v2 = recorder
        .statuses()
        .into_iter()
        .find(|s| s.context_version == Some(2))
        .expect("a status for version 2");
    let reason = first_v2
        .conditions
        .iter()
        .find(|c| c.type_ == "Succeeded")
        .and_then(|c| c.reason.clone());
    assert_eq!(reason.as_deref(), Some("Superseded"), "{first_v2:#?}");
    assert_eq!(
        first_v2.message.as_deref(),
        Some("Job web-4-v2 replaces superseded Job web-4-v1; waiting for it to start")
    );
    assert_eq!(status.attempts, 1);

    let job_names = |jobs: Vec<k8s_openapi::api::batch::v1::Job>| {
        jobs.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    };
    assert_eq!(job_names(cluster.jobs_of(4).await), ["web-4-v2"]);
    let cms: Vec<String> = cluster
        .config_maps_of(4)
        .await
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(
        cms,
        ["hand-made", "web-4-v2-files"],
        "the unowned ConfigMap stays"
    );
    assert_eq!(
        job_names(cluster.jobs_of(5).await),
        ["web-5-v1"],
        "another task's Job stays"
    );
    assert_eq!(
        cluster
            .config_maps()
            .get("hand-made")
            .await
            .unwrap()
            .metadata
            .uid,
        bystander.metadata.uid
    );

    let events = cluster.events_for("task-4").await;
    let superseded = events
        .iter()
        .find(|e| e.0 == "JobSuperseded")
        .expect("JobSuperseded event");
    assert_eq!(
        superseded.1,
        "Stopped Job web-4-v1 (still running): superseded by context version 2; created Job web-4-v2"
    );
    // One event for the supersession, which names the new Job: no JobCreated of its own.
    assert_eq!(
        events.iter().filter(|e| e.0 == "JobCreated").count(),
        1,
        "{events:?}"
    );
    let text = controller.metrics_text();
    assert_eq!(
        sample(&text, "taskrun_total"),
        Some(3.0),
        "two tasks, one of them twice: {text}"
    );
    controller.stop().await;
}

#[tokio::test]
async fn deleting_a_task_run_removes_its_jobs_and_config_maps_then_the_task_run() {
    let cluster = Cluster::start(AGENTS).await;
    let controller = cluster.start_controller();
    let created = cluster
        .create(&task_run(6, 1, "by-content", "# slow\n"))
        .await;
    cluster
        .wait_for("task-6", T, "Running", |t| {
            phase(t) == Some(TaskPhase::Running)
        })
        .await;
    assert_eq!(cluster.jobs_of(6).await.len(), 1);
    cluster
        .task_runs()
        .delete("task-6", &DeleteParams::default())
        .await
        .unwrap();
    cluster
        .wait_deleted("task-6", &created.uid().unwrap(), T)
        .await;
    assert!(cluster.jobs_of(6).await.is_empty(), "Jobs are gone");
    assert!(
        cluster.config_maps_of(6).await.is_empty(),
        "ConfigMaps are gone"
    );
    let events = cluster.events_for("task-6").await;
    let cleanup = events
        .iter()
        .find(|e| e.0 == "CleanupDone")
        .expect("CleanupDone event");
    assert_eq!(
        cleanup.1,
        "Deleted Job web-6-v1, ConfigMap web-6-v1-files; releasing the finalizer"
    );
    let text = controller.metrics_text();
    assert_eq!(sample(&text, "taskrun_active"), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "taskrun_phase{phase=\"Running\"}"),
        Some(0.0),
        "{text}"
    );
    controller.stop().await;
}

#[tokio::test]
async fn an_unknown_agent_fails_the_task_run_and_creates_no_job() {
    let cluster = Cluster::start(AGENTS).await;
    let controller = cluster.start_controller();
    cluster
        .create(&task_run(7, 1, "gpt-9", "# Anything\n"))
        .await;
    let tr = cluster.wait_for("task-7", T, "finished", terminal).await;
    let status = tr.status.clone().unwrap();
    assert_eq!(status.phase, Some(TaskPhase::Failed));
    assert_eq!(
        status.message.as_deref(),
        Some(
            "agent \"gpt-9\" is not defined; known agents: by-content, echo, flaky, short, sleepy"
        )
    );
    assert_eq!(
        condition(&tr, "Succeeded"),
        Some(("False".into(), "AgentNotFound".into()))
    );
    assert_eq!(
        condition(&tr, "Stalled"),
        Some(("True".into(), "AgentNotFound".into()))
    );
    assert_eq!(status.job_name, None);
    watch_quiet().await;
    assert!(
        cluster.jobs_of(7).await.is_empty(),
        "no Job for an unknown agent"
    );
    assert!(
        cluster.config_maps_of(7).await.is_empty(),
        "no ConfigMap either"
    );
    let events = cluster.events_for("task-7").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "AgentNotFound");
    assert_eq!(events[0].2, "Warning");
    assert!(
        events[0].1.contains("gpt-9") && events[0].1.contains("echo"),
        "{events:?}"
    );
    let text = controller.metrics_text();
    assert_eq!(
        sample(&text, "controller_jobs_created_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "taskrun_phase{phase=\"Failed\"}"),
        Some(1.0),
        "{text}"
    );
    controller.stop().await;
}

#[tokio::test]
async fn a_controller_restarted_mid_run_creates_no_duplicate_job() {
    let cluster = Cluster::start(AGENTS).await;
    let first = cluster.start_controller();
    cluster
        .create(&task_run(8, 1, "short", "# Two seconds\n"))
        .await;
    cluster
        .wait_for("task-8", T, "Running", |t| {
            phase(t) == Some(TaskPhase::Running)
        })
        .await;
    let before = cluster.server.request_stats();
    first.stop().await;
    let second = cluster.start_controller();
    let tr = cluster.wait_for("task-8", T, "finished", terminal).await;
    assert_eq!(phase(&tr), Some(TaskPhase::Succeeded));
    assert_eq!(tr.status.unwrap().attempts, 1);
    let jobs = cluster.jobs_of(8).await;
    assert_eq!(jobs.len(), 1, "one Job");
    let writes = cluster.server.request_stats().since(&before);
    assert_eq!(writes.count("jobs.batch", "create"), 0, "{writes:?}");
    assert_eq!(writes.writes_to("configmaps"), 0, "{writes:?}");
    let text = second.metrics_text();
    assert_eq!(
        sample(&text, "controller_jobs_created_total"),
        Some(0.0),
        "{text}"
    );
    let events = cluster.events_for("task-8").await;
    assert_eq!(
        events.iter().filter(|e| e.0 == "JobCreated").count(),
        1,
        "{events:?}"
    );
    second.stop().await;
}

/// The sync applies the finalizer with the TaskRun: the controller then writes nothing to the
/// TaskRun but its status, and in the steady state reads nothing (its caches answer).
#[tokio::test]
async fn a_task_run_that_comes_with_its_finalizer_costs_no_extra_write_and_no_read() {
    let cluster = Cluster::start(AGENTS).await;
    let controller = cluster.start_controller();
    // Let the controller's watches list before counting.
    watch_quiet().await;
    let before = cluster.server.request_stats();
    let tr = orchestrator::crd::with_finalizer(&task_run(10, 1, "echo", "# Hello\n"));
    cluster.create(&tr).await;
    cluster.wait_for("task-10", T, "finished", terminal).await;
    watch_quiet().await;
    let stats = cluster.server.request_stats().since(&before);
    assert_eq!(
        stats.writes_to("taskruns.orchestrator.io"),
        1,
        "the create only, no finalizer patch: {stats:?}"
    );
    assert!(
        stats.writes_to("taskruns.orchestrator.io/status") <= 2,
        "{stats:?}"
    );
    for resource in ["jobs.batch", "pods"] {
        for verb in ["get", "list"] {
            assert_eq!(
                stats.count(resource, verb),
                0,
                "{verb} {resource}: {stats:?}"
            );
        }
    }
    // The GETs of the TaskRun are this test's wait_for polls, the one GET of the ConfigMap is
    // the runner mounting it; the controller lists nothing.
    assert_eq!(
        stats.count("taskruns.orchestrator.io", "list"),
        0,
        "{stats:?}"
    );
    assert_eq!(stats.count("configmaps", "get"), 1, "{stats:?}");
    assert_eq!(stats.count("configmaps", "list"), 0, "{stats:?}");
    let events = cluster.events_for("task-10").await;
    let reasons: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(reasons, ["JobCreated", "Succeeded"], "{events:?}");
    controller.stop().await;
}

/// A reconcile that works from a cache behind the server: seeded empty (as before the Job
/// existed) and, after a version change, seeded with the old version's children only. Neither
/// makes a second Job: a create that answers 409 is read once and taken as existing.
#[tokio::test]
async fn a_stale_cache_cannot_make_a_second_job() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    use orchestrator::controller::backoff::Backoffs;
    use orchestrator::controller::caches::{Caches, OwnedStore};
    use orchestrator::controller::reconcile::{Context, reconcile};
    use std::sync::Arc;

    let cluster = Cluster::start(AGENTS).await;
    let live = cluster.start_controller();
    cluster
        .create(&task_run(9, 1, "by-content", "# slow\n"))
        .await;
    cluster
        .wait_for("task-9", T, "Running", |t| {
            phase(t) == Some(TaskPhase::Running)
        })
        .await;
    live.stop().await;
    let v1 = cluster.jobs().get("web-9-v1").await.unwrap();

    let stale_context = |jobs: Vec<Job>, config_maps: Vec<ConfigMap>| {
        let mut registry = prometheus_client::registry::Registry::default();
        Arc::new(Context::new(
            cluster.client.clone(),
            orchestrator::controller::profiles::LiveProfiles::new(
                cluster.agents.clone(),
                "test agents",
            ),
            Arc::new(orchestrator::controller::ControllerMetrics::register(
                &mut registry,
            )),
            Backoffs::new(Duration::from_millis(100), Duration::from_secs(1)),
            Caches {
                jobs: OwnedStore::seeded(jobs),
                config_maps: OwnedStore::seeded(config_maps),
                pods: OwnedStore::seeded(Vec::<Pod>::new()),
            },
        ))
    };

    // 1. The cache has never seen the Job: five reconciles at once all try to create it.
    let ctx = stale_context(vec![], vec![]);
    let tr = Arc::new(cluster.task_runs().get("task-9").await.unwrap());
    let results =
        futures::future::join_all((0..5).map(|_| reconcile(tr.clone(), ctx.clone()))).await;
    for r in &results {
        assert!(r.is_ok(), "{results:?}");
    }
    let jobs = cluster.jobs_of(9).await;
    assert_eq!(jobs.len(), 1, "one Job for task 9 v1");
    assert_eq!(
        jobs[0].metadata.uid, v1.metadata.uid,
        "the same Job, untouched"
    );
    assert_eq!(ctx.metrics.jobs_created.get(), 0);

    // 2. Version 2 while the cache still holds only version 1's children.
    let v1_cm = cluster.config_maps().get("web-9-v1-files").await.unwrap();
    let patch = serde_json::json!({"spec": {"contextVersion": 2,
        "markdownFiles": [{"filename": "prompt.md", "content": "# fast now\n"}]}});
    cluster
        .task_runs()
        .patch("task-9", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let tr = Arc::new(cluster.task_runs().get("task-9").await.unwrap());
    let ctx = stale_context(vec![v1.clone()], vec![v1_cm]);
    // kube-runtime never runs two reconciles of one TaskRun at once: three in a row, from the
    // same stale TaskRun and cache.
    for _ in 0..3 {
        reconcile(tr.clone(), ctx.clone()).await.unwrap();
    }
    let names: Vec<String> = cluster
        .jobs_of(9)
        .await
        .iter()
        .map(|j| j.name_any())
        .collect();
    assert_eq!(names, ["web-9-v2"], "one Job for v2, v1's stopped");
    assert_eq!(ctx.metrics.jobs_created.get(), 1, "created once");
    let events = cluster.events_for("task-9").await;
    assert_eq!(
        events.iter().filter(|e| e.0 == "JobSuperseded").count(),
        1,
        "{events:?}"
    );
}

/// The API server goes away for six seconds and comes back on the same port with the same
/// data (watches cannot resume: their history is gone, so they relist). The controller's
/// watches retry at least every 2 s, so a TaskRun created after the restart has its Job within
/// a few seconds (kube-runtime's default backoff had grown to 6.4 s by then).
#[tokio::test]
async fn the_controller_resumes_within_seconds_after_the_api_server_restarts() {
    use kube_envtest::{ApiServer, ApiServerConfig};

    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let config = ApiServerConfig {
        data_dir: Some(dir.path().to_path_buf()),
        ..ApiServerConfig::default()
    };
    let server = ApiServer::start(config.clone()).await.unwrap();
    let port = server.port();
    let kube_config = server.config();
    let client = server.client();
    install_crd(&client).await;
    let mut ns = k8s_openapi::api::core::v1::Namespace::default();
    ns.metadata.name = Some(NS.into());
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let (controller, stop) = spawn_controller(client.clone());
    let task_runs: kube::Api<orchestrator::crd::TaskRun> =
        kube::Api::namespaced(client.clone(), NS);
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> =
        kube::Api::namespaced(client.clone(), NS);
    let job_within = |name: &'static str, limit: Duration| {
        let jobs = jobs.clone();
        async move {
            let t0 = std::time::Instant::now();
            while t0.elapsed() < limit {
                if jobs.get_opt(name).await.ok().flatten().is_some() {
                    return Some(t0.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        }
    };
    task_runs
        .create(&PostParams::default(), &task_run(1, 1, "echo", "# one\n"))
        .await
        .unwrap();
    assert!(
        job_within("web-1-v1", T).await.is_some(),
        "the controller works"
    );

    server.shutdown().await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let restarted = ApiServer::start(ApiServerConfig { port, ..config })
        .await
        .unwrap();
    // The same CA, token and port: the controller's client works again as it is.
    let client = kube::Client::try_from(kube_config).unwrap();
    let task_runs: kube::Api<orchestrator::crd::TaskRun> = kube::Api::namespaced(client, NS);
    let t0 = std::time::Instant::now();
    task_runs
        .create(&PostParams::default(), &task_run(2, 1, "echo", "# two\n"))
        .await
        .unwrap();
    let took = job_within("web-2-v1", Duration::from_secs(20)).await;
    let bound = Duration::from_secs(4);
    assert!(
        took.is_some_and(|t| t <= bound),
        "the Job of a TaskRun created after the restart came after {:?} (bound {bound:?}; {:?} since the restart)",
        took,
        t0.elapsed()
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
    restarted.shutdown().await;
}

/// SIGTERM can come before the controller's watches have listed anything (here: the TaskRun
/// CRD is not installed yet, so the TaskRun watch cannot list). kube-runtime's graceful shutdown
/// waits for the reconciles, which wait for the caches, which are no longer read once it
/// begins: `run --embedded` sometimes never exited. The controller now stops at once.
#[tokio::test]
async fn the_controller_stops_when_asked_before_its_caches_are_listed() {
    use kube_envtest::{ApiServer, ApiServerConfig};

    let server = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let (controller, stop) = spawn_controller(server.client());
    // Long enough for the watches to have failed and be backing off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(());
    let ended = tokio::time::timeout(Duration::from_secs(10), controller).await;
    assert!(
        ended.is_ok(),
        "the controller did not stop within 10 s of being asked"
    );
    server.shutdown().await;
}

/// `run_controller` for [`NS`] with the test agents, in a task of its own; it stops when the
/// returned sender is used (or dropped).
fn spawn_controller(
    client: kube::Client,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    use orchestrator::controller::{ControllerConfig, ControllerMetrics, run_controller};
    let agents = orchestrator::controller::AgentProfiles::parse(AGENTS, "test agents").unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = std::sync::Arc::new(ControllerMetrics::register(&mut registry));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run_controller(
        client,
        ControllerConfig::new(Some(NS.into()), agents),
        metrics,
        async move {
            let _ = stopped.await;
        },
    ));
    (controller, stop)
}

/// More TaskRuns than reconciles at once, all there when the controller starts: every Job is
/// created before any status is written, because a report waits while TaskRuns wait for their
/// first look (`controller::starts_first`). Without that, the reconciles of started Jobs mix
/// with the starts in no particular order. Order is by resourceVersion, which the server
/// increases with every write of any kind.
#[tokio::test]
async fn a_batch_of_task_runs_has_every_job_before_any_status_is_written() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    const TASKS: i64 = 24;
    let cluster = Cluster::start(AGENTS).await;
    for id in 1..=TASKS {
        cluster.create(&task_run(id, 1, "echo", "# go\n")).await;
    }
    // The resourceVersion at which each Job was first seen, and of the first status written.
    let job_created: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let first_status: Arc<Mutex<Option<u64>>> = Arc::default();
    let rv = |meta: &kube::api::ObjectMeta| -> u64 {
        meta.resource_version.as_deref().unwrap().parse().unwrap()
    };
    let jobs_seen = job_created.clone();
    let jobs = tokio::spawn(
        watcher(cluster.jobs(), watcher::Config::default())
            .applied_objects()
            .for_each(move |job| {
                if let Ok(job) = job {
                    let mut seen = jobs_seen.lock().unwrap();
                    let at = seen.entry(job.name_any()).or_insert(u64::MAX);
                    *at = (*at).min(rv(&job.metadata));
                }
                std::future::ready(())
            }),
    );
    let status_seen = first_status.clone();
    let statuses = tokio::spawn(
        watcher(cluster.task_runs(), watcher::Config::default())
            .applied_objects()
            .for_each(move |tr| {
                if let Ok(tr) = tr
                    && tr.status.is_some()
                {
                    let mut first = status_seen.lock().unwrap();
                    *first = Some(first.unwrap_or(u64::MAX).min(rv(&tr.metadata)));
                }
                std::future::ready(())
            }),
    );
    watch_quiet().await;
    let controller = cluster.start_controller_with(|c| c.concurrency = 2);
    for id in 1..=TASKS {
        cluster
            .wait_for(&format!("task-{id}"), T, "Succeeded", |t| {
                phase(t) == Some(TaskPhase::Succeeded)
            })
            .await;
    }
    watch_quiet().await;
    let deferred = sample(
        &controller.metrics_text(),
        "controller_reports_deferred_total",
    );
    controller.stop().await;
    jobs.abort();
    statuses.abort();
    assert!(
        deferred > Some(0.0),
        "reports were left for later: {deferred:?}"
    );

    let job_created = job_created.lock().unwrap().clone();
    assert_eq!(job_created.len(), TASKS as usize, "{job_created:?}");
    let (last_job, last_job_rv) = job_created.iter().max_by_key(|(_, rv)| **rv).unwrap();
    let first_status = first_status.lock().unwrap().expect("a status was written");
    assert!(
        *last_job_rv < first_status,
        "the last Job ({last_job}, resourceVersion {last_job_rv}) was created after the first \
         status was written (resourceVersion {first_status})"
    );
}
