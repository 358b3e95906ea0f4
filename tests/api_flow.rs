//! The whole flow through the API on the embedded cluster: a task submitted over HTTP becomes a
//! commit, the sync (triggered by the API) creates its TaskRun at version 1 and the controller its
//! Job; added context becomes a second commit, version 2 and a new Job. Nothing but Git is
//! written by the API.

mod api_common;

use api_common::*;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use kube_envtest::runner::{JobRunner, RunnerConfig};
use kube_envtest::{ApiServer, ApiServerConfig};
use orchestrator::api::auth::ApiToken;
use orchestrator::api::{AppState, RepoWriter, Writes};
use orchestrator::controller::{
    AgentProfiles, ControllerConfig, ControllerMetrics, run_controller,
};
use orchestrator::crd::TaskRun;
use orchestrator::desired::SourceIdentity;
use orchestrator::source::{Credentials, GitSource, SourceConfig};
use orchestrator::sync::apply::{SyncOptions, Syncer};
use orchestrator::sync::crd_install::ensure_crd;
use orchestrator::sync::metrics::SyncMetrics;
use orchestrator::sync::report::report_channel;
use orchestrator::sync::run_loop::{LoopOutputs, LoopSettings, run_sync_loop};
use orchestrator::sync::trigger::{TriggerReason, sync_trigger};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NS: &str = "orchestrator";

const AGENTS: &str = r#"
defaults:
  activeDeadlineSeconds: 30
  backoffLimit: 0
agents:
  claude:
    image: local/shell
    command: ["sh", "-c", "cat \"$TASK_DIR\"/*.md"]
"#;

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn jobs_of(client: &Client, task_id: i64) -> Vec<String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let mut names: Vec<String> = jobs
        .list(&ListParams::default().labels(&format!("task-id={task_id}")))
        .await
        .expect("list Jobs")
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn submit_then_add_context_runs_version_one_then_two() {
    // The cluster: embedded server, CRD, namespace, local Job runner, controller.
    let server = ApiServer::start(ApiServerConfig::default())
        .await
        .expect("embedded API server starts");
    let client = server.client();
    ensure_crd(client.clone()).await.expect("CRD installed");
    let mut ns = Namespace::default();
    ns.metadata.name = Some(NS.into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let tmp = tempfile::tempdir().unwrap();
    let mut runner_config = RunnerConfig::new(tmp.path().join("logs"));
    runner_config.namespace = Some(NS.into());
    let _runner = JobRunner::start(client.clone(), runner_config);
    let mut controller_config = ControllerConfig::new(
        Some(NS.into()),
        AgentProfiles::parse(AGENTS, "test agents").unwrap(),
    );
    controller_config.debounce = Duration::from_millis(50);
    let mut registry = prometheus_client::registry::Registry::default();
    let controller_metrics = Arc::new(ControllerMetrics::register(&mut registry));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run_controller(
        client.clone(),
        controller_config,
        controller_metrics,
        async move {
            let _ = stop_rx.await;
        },
    ));

    // Git and the sync loop, polling only once a minute: every sync below is the API's trigger.
    let repo_dir = tmp.path().join("tasks.git");
    seeded_bare_repo(&repo_dir);
    let repo_url = repo_dir.to_string_lossy().to_string();
    let source = GitSource::new(SourceConfig {
        url: repo_url.clone(),
        branch: BRANCH.into(),
        path: ROOT.into(),
        mirror_dir: tmp.path().join("mirrors"),
        interval: Duration::from_secs(60),
        credentials: Credentials::none(),
    });
    let syncer = Syncer::new(
        client.clone(),
        SourceIdentity::new(&repo_url, ROOT),
        SyncOptions::new(NS),
    );
    let metrics = orchestrator::metrics::Metrics::new();
    let (reports_tx, reports_rx) = report_channel();
    let (state_tx, _state_rx) = tokio::sync::watch::channel(None);
    let (trigger, requests) = sync_trigger();
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut settings = LoopSettings::new(Duration::from_secs(60));
    settings.retry = Duration::from_millis(200);
    tokio::spawn(run_sync_loop(
        source,
        syncer,
        requests,
        None,
        LoopOutputs {
            reports: reports_tx,
            every_report: None,
            state: state_tx,
            metrics: SyncMetrics::register(&metrics),
        },
        settings,
        shutdown_rx,
    ));

    // The API, reading TaskRuns from a reflector cache.
    let (store, writer) = reflector::store::<TaskRun>();
    tokio::spawn(
        reflector(
            writer,
            watcher(
                Api::<TaskRun>::namespaced(client.clone(), NS),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .touched_objects()
        .for_each(|_| std::future::ready(())),
    );
    let mut state = AppState::new(
        Writes::To(RepoWriter::open(&repo_dir, writer_config()).unwrap()),
        store,
    );
    state.namespace = NS.into();
    state.reports = reports_rx;
    state.trigger = Arc::new(move || {
        trigger.request(TriggerReason::Api);
    });
    state.token = Some(ApiToken::new(TOKEN));
    state.known_agents = Some(Arc::new(vec!["claude".into()]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(orchestrator::api::serve_on(
        listener,
        state,
        std::future::pending(),
    ));
    let http = Http::new();

    // Let the first sync (of the seed) finish so that the next one is the API's.
    eventually("the seed's TaskRun", async || {
        let r = http.get(&format!("{base}/api/v1/tasks/1")).await;
        (r.status == 200).then_some(())
    })
    .await;

    let reply = http
        .post(&format!("{base}/api/v1/tasks"), &task_body(42))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let first_commit = reply.json()["data"]["commit"].as_str().unwrap().to_string();

    // The API's trigger makes the sync create task-42 at version 1, visible through GET /tasks.
    let task = eventually("task-42 at version 1", async || {
        let r = http.get(&format!("{base}/api/v1/tasks/42")).await;
        (r.status == 200).then(|| r.json()["data"].clone())
    })
    .await;
    assert_eq!(task["contextVersion"], json!(1));
    assert_eq!(task["sourcePath"], json!("tasks/42-web"));
    // In reading order: prompt.md first.
    assert_eq!(task["files"], json!(["prompt.md", "acceptance.md"]));
    let v1_jobs = eventually("the v1 Job", async || {
        let jobs = jobs_of(&client, 42).await;
        (!jobs.is_empty()).then_some(jobs)
    })
    .await;
    assert_eq!(v1_jobs, ["web-42-v1"]);

    let reply = http
        .post(
            &format!("{base}/api/v1/tasks/42/context"),
            &json!({"additionalContext": "Also support SSO.\n"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.json()["data"]["files"], json!(["context-v2.md"]));

    let task = eventually("task-42 at version 2", async || {
        let r = http.get(&format!("{base}/api/v1/tasks/42")).await;
        let data = r.json()["data"].clone();
        (data["contextVersion"] == json!(2)).then_some(data)
    })
    .await;
    assert_eq!(
        task["files"],
        json!(["prompt.md", "acceptance.md", "context-v2.md"])
    );
    eventually("a new Job for version 2", async || {
        let jobs = jobs_of(&client, 42).await;
        jobs.contains(&"web-42-v2".to_string()).then_some(())
    })
    .await;

    // The status endpoint reports the API's latest commit as synced.
    let status = eventually("the status of the context commit", async || {
        let r = http.get(&format!("{base}/api/v1/status")).await;
        let data = r.json()["data"].clone();
        let rev = data["revision"].as_str().unwrap_or_default().to_string();
        (!rev.ends_with(&first_commit) && data["sync"] == json!("Synced")).then_some(data)
    })
    .await;
    assert!(
        status["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == json!("task-42"))
    );

    let _ = shutdown_tx.send(true);
    let _ = stop_tx.send(());
}
